//! The hot paths that run on one thread, each in a function of its own,
//! for `valgrind --tool=callgrind`: instruction counts do not drift with
//! this machine's noise, so two builds can be compared from one run each
//! (`tools/profile.sh instructions`; the figures in `docs/BENCHMARKS.md`).
//!
//! ```text
//! cargo build --release --example instructions
//! valgrind --tool=callgrind target/release/examples/instructions 100000
//! ```
//!
//! Phases, on the workload of the load generator (`fundledger::workload`),
//! after `workload_steps` has made its commands:
//! - `decide_and_fold`: each command decided against the state and its
//!   events folded in (what the writer does per command, without the log);
//! - `encode_and_hash`: each event's payload encoded, its record built and
//!   hashed into the chain (what the log does per event before sled);
//! - `checkpoint_encode` and `checkpoint_decode`: the projections'
//!   checkpoint of that state (what the checkpoint thread and a start do).
//!
//! The writer's sled append and a replay are left out: sled's threads spin
//! while they wait for each other, and valgrind runs one thread at a time,
//! so their counts would measure the waiting. The checkpoint's decoding
//! hands chunks to a helper thread; the script counts everything executed
//! between the phase boundaries, on any thread, so the count does not
//! depend on which thread decoded which chunk. Under valgrind, `sha2`
//! hashes with its portable code (valgrind does not report the CPU's SHA
//! extensions), so `encode_and_hash` counts that code, not SHA-NI.

use fundledger::domain::{decide, Context, Event, FundState, EVENT_SCHEMA_VERSION};
use fundledger::log::codec::{self, RecordBodyRef, GENESIS_HASH};
use fundledger::projections::Projections;
use fundledger::workload::{self, Step};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    fundledger::server_main::disable_transparent_huge_pages();
    let commands: u64 = match std::env::args().nth(1) {
        None => 100_000,
        Some(text) => text.parse().unwrap_or_else(|_| panic!("usage: instructions [COMMANDS], not {text:?}")),
    };
    let steps = workload_steps(commands);
    let (state, events) = decide_and_fold(&steps);
    let head = encode_and_hash(&events);
    let projections = Projections { state, head_seq: events.len() as u64, head_hash: head, head_recorded_at_micros: 0 };
    let bytes = checkpoint_encode(&projections);
    let decoded = checkpoint_decode(&bytes);
    assert!(decoded.state == projections.state, "the checkpoint decodes to the state it was made of");
    // The units each phase's count is divided by (tools/profile.sh).
    println!(
        "commands {} events {} applications {} checkpoint_bytes {}",
        steps.len(),
        events.len(),
        projections.state.applications.len(),
        bytes.len()
    );
}

/// The fund's set-up, then `commands` of 64 workload clients in turn.
#[inline(never)]
fn workload_steps(commands: u64) -> Vec<Step> {
    workload::setup().into_iter().chain(workload::in_turn("i", 64, commands)).collect()
}

#[inline(never)]
fn decide_and_fold(steps: &[Step]) -> (FundState, Vec<Event>) {
    let mut state = FundState::default();
    let mut all = Vec::new();
    for step in steps {
        let events = decide(&state, &step.command, &Context { actor: step.actor.clone() })
            .unwrap_or_else(|rejection| panic!("the workload is accepted: {rejection}"));
        events.iter().for_each(|event| state.evolve(event));
        all.extend(events);
    }
    (state, all)
}

#[inline(never)]
fn encode_and_hash(events: &[Event]) -> codec::Hash {
    let mut hash = GENESIS_HASH;
    for (n, event) in events.iter().enumerate() {
        let payload = codec::encode(event);
        let stream = event.stream().to_string();
        let body = RecordBodyRef {
            seq: n as u64 + 1,
            stream: &stream,
            stream_version: 1,
            event_type: event.type_name(),
            schema_version: EVENT_SCHEMA_VERSION,
            recorded_at_micros: 0,
            actor: "officer",
            request_id: "request",
            payload: &payload,
        };
        hash = codec::encode_record_ref(&hash, &body).1;
    }
    hash
}

#[inline(never)]
fn checkpoint_encode(projections: &Projections) -> Vec<u8> {
    projections.checkpoint_bytes()
}

#[inline(never)]
fn checkpoint_decode(bytes: &[u8]) -> Projections {
    Projections::decode_checkpoint(bytes).expect("a checkpoint just made decodes")
}
