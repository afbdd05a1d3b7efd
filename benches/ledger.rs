//! Criterion benches of the hot paths, each beside its baseline:
//!
//! - `domain`: decide + evolve of the workload's commands, in memory;
//! - `record`: encoding an event and its record, and the chain hash;
//! - `append`: one durable append of a batch of 1,000 commands' events
//!   (EventLog::append: encode, hash, three sled keys each, flush +
//!   fdatasync) against raw sled writing 1,000 records of the same size
//!   with the same flush + fdatasync (the storage limit);
//! - `replay`: rebuilding the projections from a 20,000-event log against
//!   the scan limit (sled iteration + decoding, nothing else);
//! - `checkpoint`: decoding a checkpoint (what a start does) beside
//!   encoding it (what a checkpoint costs the checkpoint thread).
//!
//! Run: `cargo bench --bench ledger`. The load generator
//! (`examples/loadgen.rs`) measures the whole service; see
//! docs/BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fundledger::domain::{decide, Context, Currency, Event, FundState, EVENT_SCHEMA_VERSION};
use fundledger::ledger::{CommandRequest, Ledger, LedgerConfig, RecordedEvent};
use fundledger::log::{codec, Entry, EventLog, NewEvent, GENESIS_HASH};
use fundledger::projections::Projections;
use fundledger::workload::{self, ClientKind, Step, WorkloadClient};

/// The allocator the `fundledger` binary runs with (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1000;

/// The fund after the workload's setup, and `n` officer steps after it.
fn state_and_steps(n: usize) -> (FundState, Vec<Step>) {
    let mut state = FundState::default();
    for step in workload::setup() {
        for event in decide(&state, &step.command, &Context { actor: step.actor }).unwrap() {
            state.evolve(&event);
        }
    }
    let mut client = WorkloadClient::of_kind("bench", 0, ClientKind::Officer);
    (state, (0..n).map(|_| client.next_step()).collect())
}

/// The events `steps` record, decided in order from `state`.
fn events_of(mut state: FundState, steps: &[Step]) -> Vec<Vec<Event>> {
    steps
        .iter()
        .map(|step| {
            let events = decide(&state, &step.command, &Context { actor: step.actor.clone() }).unwrap();
            events.iter().for_each(|e| state.evolve(e));
            events
        })
        .collect()
}

fn domain(c: &mut Criterion) {
    let (base, steps) = state_and_steps(BATCH);
    let mut group = c.benchmark_group("domain");
    group.throughput(Throughput::Elements(steps.len() as u64));
    group.bench_function("decide+evolve 1000 workload commands", |b| {
        b.iter_batched(
            || base.clone(),
            |mut state| {
                for step in &steps {
                    let ctx = Context { actor: step.actor.clone() };
                    for event in decide(&state, &step.command, &ctx).unwrap() {
                        state.evolve(&event);
                    }
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn entries(events: &[Vec<Event>], prefix: &str) -> Vec<Entry> {
    events
        .iter()
        .enumerate()
        .map(|(n, events)| Entry {
            request_id: format!("{prefix}-{n}"),
            fingerprint: codec::digest(prefix.as_bytes()),
            actor: "wl-officer".into(),
            events: events
                .iter()
                .map(|event| NewEvent {
                    stream: event.stream().to_string(),
                    event_type: event.type_name().to_owned(),
                    schema_version: EVENT_SCHEMA_VERSION,
                    payload: codec::encode(event),
                })
                .collect(),
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let (state, steps) = state_and_steps(4);
    let events: Vec<Event> = events_of(state, &steps).into_iter().flatten().collect();
    let award = events.iter().find(|e| e.type_name() == "GrantAwarded").expect("an award").clone();
    let entry = entries(&[vec![award.clone()]], "r").remove(0);
    let event = &entry.events[0];
    let body = codec::RecordBody {
        seq: 1,
        stream: event.stream.clone(),
        stream_version: 3,
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        recorded_at_micros: 1_700_000_000_000_000,
        actor: entry.actor.clone(),
        request_id: entry.request_id.clone(),
        payload: event.payload.clone(),
    };
    let (stored, _) = codec::encode_record(&GENESIS_HASH, &body);
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode an award event (payload)", |b| b.iter(|| codec::encode(&award)));
    group.bench_function("encode + chain-hash its record", |b| b.iter(|| codec::encode_record(&GENESIS_HASH, &body)));
    let payload = codec::encode(&award);
    group.bench_function("decode an award event's payload: serde", |b| {
        b.iter(|| codec::decode::<Event>(&payload).unwrap())
    });
    group.bench_function("decode an award event's payload: the reads' fast path", |b| {
        b.iter(|| fundledger::projections::decode_payload_fast(&payload).unwrap())
    });
    group.bench_function("decode + check its record", |b| {
        b.iter(|| {
            let decoded = codec::decode_record(&stored).unwrap();
            assert!(decoded.hash_matches());
            codec::decode::<Event>(&decoded.body.payload).unwrap()
        })
    });
    // What an answer in full costs the server per event: the recorded
    // event as its protobuf message, then encoded.
    let (envelope, _) = codec::decode_record_borrowed(&stored).unwrap().to_owned_parts();
    let recorded = RecordedEvent { envelope, event: award.clone() };
    let eur = Currency::eur();
    group.bench_function("answer an award event: to protobuf", |b| {
        b.iter(|| fundledger::api::convert::recorded_event(&eur, &recorded))
    });
    group.bench_function("answer an award event: to protobuf + encode", |b| {
        b.iter(|| prost::Message::encode_to_vec(&fundledger::api::convert::recorded_event(&eur, &recorded)))
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let (state, steps) = state_and_steps(BATCH);
    let events = events_of(state, &steps);
    let mut group = c.benchmark_group("append");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BATCH as u64));

    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path()).unwrap();
    let mut round = 0u64;
    group.bench_function("EventLog::append of 1000 commands, durable", |b| {
        b.iter_batched(
            || {
                round += 1;
                entries(&events, &format!("a{round}"))
            },
            |entries| log.append(1_700_000_000_000_000, &entries).unwrap(),
            BatchSize::LargeInput,
        )
    });
    drop(log);
    let record_bytes = {
        let all = entries(&events, "size");
        let stored: usize = all.iter().flat_map(|e| &e.events).map(|e| e.payload.len() + 150).sum();
        stored / all.iter().map(|e| e.events.len()).sum::<usize>()
    };

    // The storage limit: the same number of records of about the same size,
    // one key each, the same sled configuration and sync.
    let raw = tempfile::tempdir().unwrap();
    let db = fundledger::log::sled_config(raw.path()).open().unwrap();
    let db_file = std::fs::File::open(raw.path().join("db")).unwrap();
    // The payload plus about 150 bytes of envelope, hashes and keys.
    let value = vec![0xA5u8; record_bytes];
    let mut seq = 0u64;
    group.bench_function("raw sled: 1000 records, flush + fdatasync", |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..BATCH {
                seq += 1;
                let mut key = [b'e'; 9];
                key[1..].copy_from_slice(&seq.to_be_bytes());
                batch.insert(&key[..], &value[..]);
            }
            db.apply_batch(batch).unwrap();
            db.flush().unwrap();
            db_file.sync_data().unwrap();
        })
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    const EVENTS: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
        let request = |step: Step, id: String| CommandRequest {
            command: step.command,
            request_id: id,
            expected_version: None,
            actor: step.actor,
        };
        let setup = workload::setup().into_iter().enumerate().map(|(n, s)| request(s, format!("s{n}"))).collect();
        ledger.submit_many(setup).await.unwrap().into_iter().for_each(|a| drop(a.unwrap()));
        let mut client = WorkloadClient::of_kind("replay", 0, ClientKind::Officer);
        while ledger.head_seq() < EVENTS as u64 {
            let batch = (0..BATCH)
                .map(|_| {
                    let id = client.request_id();
                    request(client.next_step(), id)
                })
                .collect();
            ledger.submit_many(batch).await.unwrap().into_iter().for_each(|a| drop(a.unwrap()));
        }
        ledger.shutdown().await;
    });
    let log = EventLog::open(dir.path()).unwrap();
    let (reader, head) = (log.reader(), log.head_seq());
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(head));
    group.bench_function("Projections::replay (read, check, decode, fold)", |b| {
        b.iter(|| Projections::replay(&reader, head).unwrap())
    });
    group.bench_function("scan limit: read + check + decode, no fold", |b| {
        b.iter(|| {
            let mut n = 0;
            fundledger::projections::for_each_event(&reader, 1, head, |_, _| n += 1).unwrap();
            n
        })
    });
    group.finish();
}

fn checkpoint(c: &mut Criterion) {
    // 40,000 officer steps: 10,000 applications, each awarded and paid
    // with its six shares, as in a large fund.
    let (mut state, steps) = state_and_steps(40_000);
    for events in events_of(state.clone(), &steps) {
        events.iter().for_each(|e| state.evolve(e));
    }
    let applications = state.applications.len() as u64;
    let projections = Projections { state, head_seq: 40_000, ..Projections::default() };
    let bytes = projections.checkpoint_bytes();
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(20);
    group.throughput(Throughput::Elements(applications));
    group.bench_function("decode (a start), per application", |b| {
        b.iter(|| Projections::decode_checkpoint(&bytes).unwrap())
    });
    group.bench_function("encode, per application", |b| b.iter(|| projections.checkpoint_bytes()));
    group.finish();
}

criterion_group!(benches, domain, record, append, replay, checkpoint);
criterion_main!(benches);
