//! The load generator and benchmark of issue 5: every figure and its
//! baseline, measured in one run on the same machine, printed as the
//! Markdown tables of `docs/BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release --example loadgen                 # the full run (about 2¾ minutes once built)
//! cargo run --release --example loadgen -- --smoke      # seconds; what CI runs
//! cargo run --release --example loadgen -- --restart-events 10000000 --data-dir /var/tmp/fl10m
//! cargo run --release --example loadgen -- --server http://host:50051 --token ADMIN_TOKEN --only grpc
//! ```
//!
//! Sections (all by default; `--only` picks some):
//! - `state`: the memory the fund's state takes, folded in memory from the
//!   workload (bytes per application and per event), before anything else
//!   has used this process's memory.
//! - `writer`: durable commands/s through the ledger's single writer in
//!   process (decide, encode, hash, append, fsync), 256 commands in flight.
//! - `storage`: the storage limit, raw sled 0.34.7 writing records of the
//!   ledger's own average size in batches, flush + fdatasync per batch.
//! - `replay`: rebuilding the projections from the log, against the scan
//!   limit (raw sled iteration plus decoding of every record and payload,
//!   on one thread, and on two as replay reads), restart time of that
//!   ledger, and disk bytes per event.
//! - `layout`: an experiment for a later stored format: the writer
//!   section's records written to raw sled and read back with several
//!   records under one key, against one per key (what sled costs per key).
//! - `grpc`: a real gRPC server over loopback: the RPC limit (health Check,
//!   a trivial unary call) and one command per call at each number in
//!   flight, with p50/p99/p999 latency; then the batch call.
//! - `postgres`: the usual alternative: the same commands as rows of an
//!   event table (global sequence, per-stream version, unique request id),
//!   one committed transaction per command, `synchronous_commit = on`, on a
//!   throw-away PostgreSQL 15 cluster this program starts and removes.
//!
//! The `writer`, `storage` and `grpc` sections also report the CPU time
//! this process used per command (or per record, per health call), in all
//! and by thread (the writer thread, the tokio workers, the rest), and how
//! many cores were busy: a throughput ratio is a CPU budget when the cores
//! are all busy, and a matter of waiting when they are not.
//!
//! The workload is `fundledger::workload`: receipts, applications, awards
//! (each attributed over the six partners' pots) and payments by officers, and
//! partners' pledges.

use clap::Parser;
use fundledger::api::convert::batch_command;
use fundledger::api::pb;
use fundledger::domain::{Event, PrincipalId};
use fundledger::ledger::{CommandRequest, Ledger, LedgerConfig};
use fundledger::log::{codec, EventLog, StoreFormat};
use fundledger::projections::Projections;
use fundledger::workload::{self, ClientKind, Step, WorkloadClient};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator the `fundledger` binary runs with, so that the figures are
/// the server's (see `src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug, Clone)]
#[command(about = "fundledger's load generator and benchmark (issue 5)")]
struct Args {
    /// A short run of every section (seconds, small counts): CI's smoke
    /// test, so that this program cannot rot. Its figures mean little.
    #[arg(long)]
    smoke: bool,
    /// Only these sections (comma separated): state, writer, storage, replay,
    /// layout, grpc, postgres.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Commands the in-process writer run records (the log the replay and
    /// storage sections then measure).
    #[arg(long, default_value_t = 400_000)]
    commands: u64,
    /// Seconds each gRPC or PostgreSQL point runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Commands in flight for the gRPC curve.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256")]
    in_flight: Vec<usize>,
    /// Commands per batch call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Batch calls in flight.
    #[arg(long, default_value_t = 4)]
    batch_in_flight: usize,
    /// The batch call's answers to measure, in this order: `full` (every
    /// accepted command's events) and `positions` (`positions_only`).
    #[arg(long, value_delimiter = ',', default_value = "full,positions", value_parser = ["full", "positions"])]
    batch_answers: Vec<String>,
    /// Aim the gRPC section at this server instead of starting one. It must
    /// hold a new ledger (`fundledger init`, nothing else): the workload
    /// opens the fund.
    #[arg(long, requires = "token")]
    server: Option<String>,
    /// The admin's token for `--server`.
    #[arg(long, env = "FUNDLEDGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Build a ledger of this many events in `--data-dir` (or reuse the one
    /// there) and measure restart to serving and resident memory.
    #[arg(long, requires = "data_dir")]
    restart_events: Option<u64>,
    /// Starts from the checkpoint to measure with `--restart-events`
    /// (their median is the figure; the machine is noisy).
    #[arg(long, default_value_t = 5)]
    starts: usize,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: open the ledger in this directory, serve it, and report.
    #[arg(long, hide = true)]
    probe: Option<PathBuf>,
    /// Internal: open only sled's tree in this directory, as the log opens
    /// it, find its last event, print the seconds that took, and exit.
    #[arg(long, hide = true)]
    sled_open: Option<PathBuf>,
    /// Internal: grow the log in `--data-dir` to this many events, then exit.
    #[arg(long, hide = true, requires = "data_dir")]
    build_until: Option<u64>,
    /// The stored format of the ledgers this run creates: v4 (what
    /// `fundledger init` creates), or v3 or v2 (earlier ones, to compare).
    #[arg(long, default_value = "v4", value_parser = ["v2", "v3", "v4"])]
    store_format: String,
}

/// The stored format of the ledgers this run creates (`--store-format`).
static STORE_FORMAT: std::sync::OnceLock<StoreFormat> = std::sync::OnceLock::new();

/// A ledger's configuration, created in `--store-format`.
fn ledger_config(dir: impl Into<PathBuf>) -> LedgerConfig {
    LedgerConfig { new_store_format: store_format(), ..LedgerConfig::new(dir) }
}

fn store_format() -> StoreFormat {
    *STORE_FORMAT.get().unwrap_or(&StoreFormat::NEW)
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// The report, printed as it grows.
#[derive(Default)]
struct Report {
    text: String,
    figures: BTreeMap<&'static str, f64>,
}

impl Report {
    fn line(&mut self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    fn figure(&mut self, name: &'static str, value: f64) {
        self.figures.insert(name, value);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.figures.get(name).copied()
    }
}

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// Operations per second on this machine if every core were busy and each
/// operation cost `cpu_us` microseconds of CPU: a ceiling.
fn ceiling_per_s(cpu_us: f64) -> f64 {
    cores() as f64 * 1e6 / cpu_us
}

fn main() -> anyhow::Result<()> {
    // As the `fundledger` binary runs (the restart probe is this program).
    fundledger::server_main::disable_transparent_huge_pages();
    let mut args = Args::parse();
    let format = match args.store_format.as_str() {
        "v2" => StoreFormat::V2,
        "v3" => StoreFormat::V3,
        _ => StoreFormat::V4,
    };
    STORE_FORMAT.set(format).expect("set once");
    if let Some(dir) = args.probe.clone() {
        return probe(&dir);
    }
    if let Some(dir) = args.sled_open.clone() {
        return sled_open_only(&dir);
    }
    if let Some(until) = args.build_until {
        return build_log(args.data_dir.as_deref().expect("clap requires it"), until);
    }
    if args.smoke {
        args.commands = args.commands.min(20_000);
        args.seconds = args.seconds.min(0.5);
        args.in_flight = vec![1, 16, 64];
        args.batch = args.batch.min(200);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut report = Report::default();
    report.line(format!(
        "# fundledger benchmark run\n\nmachine: {} cores, {}; fundledger {}; {}",
        cores(),
        cpu_model(),
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) { "DEBUG build: figures are meaningless" } else { "release build" },
    ));
    if let Some(events) = args.restart_events {
        let dir = args.data_dir.clone().expect("clap requires it");
        runtime.block_on(restart_section(&mut report, &dir, events, args.starts))?;
    } else {
        if args.wants("state") {
            state_section(&mut report, args.commands);
        }
        let work = tempfile::tempdir()?;
        let ledger_dir = work.path().join("ledger");
        if ["writer", "storage", "replay", "layout"].iter().any(|section| args.wants(section)) {
            runtime.block_on(writer_section(&mut report, &ledger_dir, args.commands))?;
        }
        if args.wants("replay") {
            replay_section(&mut report, &ledger_dir)?;
        }
        if args.wants("storage") {
            storage_section(&mut report, work.path(), args.commands.max(50_000))?;
        }
        if args.wants("layout") {
            layout_section(&mut report, &ledger_dir, work.path())?;
        }
        if args.wants("grpc") {
            runtime.block_on(grpc_section(&mut report, &args))?;
        }
        if args.wants("postgres") {
            runtime.block_on(postgres_section(&mut report, &args))?;
        }
        summary(&mut report);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, &report.text)?;
    }
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

// ------------------------------------------------------------------ helpers

fn request(step: Step, request_id: String) -> CommandRequest {
    CommandRequest { command: step.command, request_id, expected_version: None, actor: step.actor }
}

/// Sets the workload's fund up in process.
async fn setup_in_process(ledger: &Ledger) -> anyhow::Result<()> {
    let requests: Vec<CommandRequest> =
        workload::setup().into_iter().enumerate().map(|(n, step)| request(step, format!("setup-{n}"))).collect();
    for answer in ledger.submit_many(requests).await? {
        answer?;
    }
    Ok(())
}

/// Latencies in microseconds, and percentiles of them.
#[derive(Default)]
struct Latencies(Vec<u32>);

impl Latencies {
    fn add(&mut self, elapsed: Duration) {
        self.0.push(elapsed.as_micros().min(u32::MAX as u128) as u32);
    }

    fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The `p`-th percentile in milliseconds.
    fn ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let index = ((self.0.len() as f64 * p / 100.0).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[index] as f64 / 1000.0
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn thousands(value: f64) -> String {
    let whole = value.round() as u64;
    let text = whole.to_string();
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i > 0 && (text.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The log's head, read with a handle that is closed again before the next
/// process (or the next open here) needs the directory.
fn log_head(dir: &Path) -> anyhow::Result<u64> {
    wait_released(dir)?;
    let head = EventLog::open(dir)?.head_seq();
    wait_released(dir)?;
    Ok(head)
}

/// Waits until no handle of this process holds sled's lock on `dir`: sled
/// lets go of it a moment after its last handle is dropped, and a child
/// started at once would find the ledger "in use".
fn wait_released(dir: &Path) -> anyhow::Result<()> {
    let db = std::fs::File::open(dir.join("db"))?;
    let started = Instant::now();
    while fs2::FileExt::try_lock_exclusive(&db).is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "{} stays locked", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    fs2::FileExt::unlock(&db)?;
    Ok(())
}

/// Bytes the files under `dir` take on disk (allocated blocks).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() { disk_bytes(&entry.path()) } else { meta.blocks() * 512 };
    }
    total
}

// ------------------------------------------------------------------ state

/// The memory of the fund's state: `commands` workload commands decided and
/// folded in memory (no log), the resident memory this process gained,
/// per application (most of the state) and per event. First in a run, so
/// that no earlier section's freed memory hides what the state takes.
fn state_section(report: &mut Report, commands: u64) {
    use fundledger::domain::{decide, Context, FundState};
    let fold = |state: &mut FundState, step: Step| {
        let events = decide(state, &step.command, &Context { actor: step.actor }).expect("the workload is accepted");
        events.iter().for_each(|event| state.evolve(event));
        events.len() as u64
    };
    let set_up = || {
        let mut state = FundState::default();
        for step in workload::setup() {
            fold(&mut state, step);
        }
        state
    };
    let mut state = set_up();
    let (before, _) = resident_kib();
    let events: u64 = workload::in_turn("s", 64, commands).map(|step| fold(&mut state, step)).sum();
    let (after, _) = resident_kib();
    let bytes = after.saturating_sub(before) as f64 * 1024.0;
    let applications = state.applications.len() as f64;
    drop(state);
    // The domain's CPU per command, on one thread: the same commands again,
    // made beforehand (after the memory above was measured, so that it
    // stays the state's alone), then decided and folded.
    let mut state = set_up();
    let steps: Vec<Step> = workload::in_turn("s", 64, commands).collect();
    let cpu = Cpu::now();
    steps.into_iter().for_each(|step| {
        fold(&mut state, step);
    });
    let decide_fold = Cpu::now().since(cpu).per(commands).total;
    report.figure("decide_fold_cpu_us", decide_fold);
    report.line(format!(
        "\n## State in memory\n\n{} commands ({} events) folded in memory: {} applications, \
         **{:.0} bytes of resident memory per application** ({:.0} per event). \
         Deciding and folding them took {decide_fold:.2} µs of CPU per command (one thread).",
        thousands(commands as f64),
        thousands(events as f64),
        thousands(applications),
        bytes / applications.max(1.0),
        bytes / events.max(1) as f64,
    ));
}

// ------------------------------------------------------------------ writer

/// Durable commands/s through the single writer, in process.
async fn writer_section(report: &mut Report, dir: &Path, commands: u64) -> anyhow::Result<()> {
    const IN_FLIGHT: u64 = 256;
    let mut config = ledger_config(dir);
    if let Ok(interval) = std::env::var("LOADGEN_CHECKPOINT_INTERVAL") {
        config.checkpoint_events_interval = interval.parse()?;
    }
    let ledger = Ledger::open(config)?;
    setup_in_process(&ledger).await?;
    let remaining = Arc::new(AtomicU64::new(commands));
    let before = ledger.writer_counters();
    let started = Instant::now();
    let cpu = Cpu::now();
    let mut tasks = Vec::new();
    for c in 0..IN_FLIGHT {
        let ledger = ledger.clone();
        let remaining = remaining.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = WorkloadClient::new("w", c);
            let mut latencies = Latencies::default();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let id = client.request_id();
                let step = client.next_step();
                let sent = Instant::now();
                ledger.submit(request(step, id)).await.map_err(|e| anyhow::anyhow!("refused: {e}"))?;
                latencies.add(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.merge(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu = Cpu::now().since(cpu);
    let counters = ledger.writer_counters().since(before);
    ledger.shutdown().await;
    drop(ledger);
    let rate = per_second(counters.commands, elapsed);
    let batch = counters.commands as f64 / counters.batches.max(1) as f64;
    let (resident, _) = resident_kib();
    report.figure("writer_commands_per_s", rate);
    report.figure("writer_batch", batch);
    report.figure("writer_events_per_command", counters.events as f64 / counters.commands.max(1) as f64);
    let per = cpu.per(counters.commands);
    report.figure("writer_cpu_us", per.total);
    report.line(format!(
        "\n## In-process writer\n\n{} commands ({} events), {IN_FLIGHT} in flight, in {:.2} s: **{} durable commands/s**; \
         group commit of {:.0} commands on average ({} fsyncs); latency p50 {:.2} ms, p99 {:.2} ms; \
         {:.2} cores busy: {:.1} µs of CPU per command, of which the writer thread {:.1} (busy {:.0}% of the run), \
         the submitting tasks (tokio workers) {:.1}, other threads (sled's I/O threads, the checkpoint thread) {:.1}; \
         this process's resident memory afterwards {} MiB.",
        thousands(counters.commands as f64),
        thousands(counters.events as f64),
        elapsed.as_secs_f64(),
        thousands(rate),
        batch,
        counters.batches,
        latencies.ms(50.0),
        latencies.ms(99.0),
        cpu.cores(elapsed),
        per.total,
        per.writer,
        100.0 * cpu.writer / elapsed.as_secs_f64(),
        per.tokio,
        per.other(),
        thousands(resident as f64 / 1024.0),
    ));
    Ok(())
}

// ------------------------------------------------------------------ storage

/// Keys the log writes per event (stored format v2): the record, its stream
/// index entry, and its command's request entry.
const LOG_KEYS: u64 = 3;

/// The storage limit: raw sled, records of the ledger's average size, one
/// key each, `apply_batch` + flush + fdatasync per batch, exactly as the
/// log syncs.
fn storage_section(report: &mut Report, work: &Path, records: u64) -> anyhow::Result<()> {
    let size = report.get("record_bytes").unwrap_or(400.0).round() as usize;
    let achieved = report.get("writer_batch").map(|b| b.round() as u64).unwrap_or(0);
    report.line(format!(
        "\n## Storage limit: raw sled\n\n{} records of {size} bytes (the ledger's average record) per run.\n\n\
         | batch | sled keys per record | records/s | fsyncs | CPU µs per record |\n|---:|---:|---:|---:|---:|",
        thousands(records as f64)
    ));
    let mut sizes = vec![(100, 1), (1000, 1)];
    if achieved > 1 && achieved != 100 && achieved != 1000 {
        sizes.push((achieved, 1));
    }
    // And this design's own limit: the keys the log writes per event
    // (stored format v2: the record at the end of the key space; a stream
    // index entry and a request entry scattered across it), nothing else;
    // and format v1's four (a stream head as well), for comparison.
    sizes.push((achieved.max(100), LOG_KEYS));
    sizes.push((achieved.max(100), 4));
    for (batch_size, keys) in sizes {
        let dir = work.join(format!("raw-sled-{batch_size}-{keys}"));
        let db = fundledger::log::sled_config(&dir).open()?;
        let db_file = std::fs::File::open(dir.join("db"))?;
        let value = vec![0xA5u8; size];
        let started = Instant::now();
        let cpu = Cpu::now();
        let mut seq = 0u64;
        let mut fsyncs = 0;
        while seq < records {
            let mut batch = sled::Batch::default();
            for _ in 0..batch_size.min(records - seq) {
                seq += 1;
                batch.insert(&event_key(seq)[..], &value[..]);
                if keys > 1 {
                    // Where an application's stream and a client's request
                    // id land: anywhere (a multiplicative hash of seq).
                    let scattered = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
                    let index = [&b"sapplication/"[..], &scattered, &[0], &1u64.to_be_bytes()].concat();
                    let request = [&b"r"[..], &scattered, &b"-request"[..]].concat();
                    batch.insert(index, &seq.to_be_bytes()[..]);
                    batch.insert(request, &[0u8; 44][..]);
                    if keys == 4 {
                        batch.insert([&b"vapplication/"[..], &scattered].concat(), &1u64.to_be_bytes()[..]);
                    }
                }
            }
            apply_durably(&db, &db_file, batch)?;
            fsyncs += 1;
        }
        let rate = per_second(records, started.elapsed());
        let cpu = Cpu::now().since(cpu).per(records).total;
        match (batch_size, keys) {
            (_, LOG_KEYS) => report.figure("storage_per_s_log_keys", rate),
            (1000, 1) => {
                report.figure("storage_per_s_1000", rate);
                report.figure("storage_cpu_us_1000", cpu);
            }
            (100, 1) => {
                report.figure("storage_per_s_100", rate);
                report.figure("storage_cpu_us_100", cpu);
            }
            _ => {}
        }
        if batch_size == achieved && keys == 1 {
            report.figure("storage_per_s_achieved", rate);
            report.figure("storage_cpu_us_achieved", cpu);
        }
        let label =
            if batch_size == achieved { format!("{batch_size} (the writer's)") } else { batch_size.to_string() };
        let keys_label = match keys {
            LOG_KEYS => format!("{keys} (the log's, format v2)"),
            4 => format!("{keys} (format v1)"),
            _ => keys.to_string(),
        };
        report.line(format!("| {label} | {keys_label} | {} | {fsyncs} | {cpu:.1} |", thousands(rate)));
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

// ------------------------------------------------------------------ replay

/// Scan limit, replay, restart and disk use of the writer section's log.
fn replay_section(report: &mut Report, dir: &Path) -> anyhow::Result<()> {
    // Scan limit: sled's own iteration plus decoding every record and
    // payload, nothing else (no hash check, no fold); then the same scan on
    // two threads, each over half of the events: a replay reads on two
    // threads, so that is its ratio in context.
    let (events, record_bytes, scan, scan_two, scan_cpu) = {
        // Opened as the log opens it (same cache), so that the two differ
        // only in what they do with each record.
        let db = fundledger::log::sled_config(dir).open()?;
        let chunked = store_format().chunked();
        let started = Instant::now();
        let cpu = Cpu::now();
        let (events, bytes) = scan_records(db.scan_prefix(b"e"), chunked)?;
        let scan = started.elapsed();
        let scan_cpu = Cpu::now().since(cpu).per(events).total;
        let half = events / 2;
        let started = Instant::now();
        let db = &db;
        let scanned = std::thread::scope(|scope| {
            let halves = [1..=half, half + 1..=events].map(|range| {
                scope
                    .spawn(move || scan_records(db.range(event_key(*range.start())..=event_key(*range.end())), chunked))
            });
            halves.into_iter().map(|h| Ok(h.join().expect("a scan does not panic")?.0)).sum::<anyhow::Result<u64>>()
        })?;
        anyhow::ensure!(scanned == events, "the two-thread scan read {scanned} of {events} events");
        (events, bytes, scan, started.elapsed(), scan_cpu)
    };
    let average = record_bytes as f64 / events.max(1) as f64;
    report.figure("record_bytes", average);
    // Replay: what a restart without a checkpoint does (read, check each
    // hash and its link, decode, fold into the projections).
    let (replay, checkpoint_bytes, fold_cpu) = {
        let log = EventLog::open(dir)?;
        let started = Instant::now();
        let projections = Projections::replay(&log.reader(), log.head_seq())?;
        let elapsed = started.elapsed();
        // The fold alone, on one thread, of the same events read and
        // decoded beforehand: with the scan limit's CPU per event, the least
        // work a replay reading through sled does per event.
        let mut read = Vec::with_capacity(events as usize);
        fundledger::projections::for_each_event(&log.reader(), 1, log.head_seq(), |link, event| {
            read.push((*link, event.clone()))
        })?;
        let cpu = Cpu::now();
        let mut folded = Projections::default();
        for (link, event) in &read {
            folded.apply(link, event);
        }
        let fold_cpu = Cpu::now().since(cpu).per(read.len() as u64).total;
        anyhow::ensure!(folded == projections, "the fold alone and the replay disagree");
        drop((read, folded));
        (elapsed, projections.checkpoint_bytes().len(), fold_cpu)
    };
    wait_released(dir)?;
    // Restart: open, check the stored checkpoint against the log, load it.
    let started = Instant::now();
    let ledger = Ledger::open(ledger_config(dir))?;
    let restart = started.elapsed();
    drop(ledger);
    let scan_rate = per_second(events, scan);
    let replay_rate = per_second(events, replay);
    let scan_two_rate = per_second(events, scan_two);
    // The most a replay reading through sled could do on this machine: every
    // core busy, and nothing per event but the scan limit's work (sled's
    // iteration, decoding) and the fold (no hash check, no hand-over).
    let ceiling = ceiling_per_s(scan_cpu + fold_cpu);
    report.figure("fold_cpu_us", fold_cpu);
    report.figure("replay_ceiling_per_s", ceiling);
    let disk = disk_bytes(dir);
    report.figure("scan_per_s", scan_rate);
    report.figure("replay_per_s", replay_rate);
    report.figure("scan_two_per_s", scan_two_rate);
    report.figure("disk_per_event", disk as f64 / events.max(1) as f64);
    report.line(format!(
        "\n## Replay, restart, disk\n\n| figure | value |\n|---|---:|\n\
         | events in the log | {} |\n| average stored record | {average:.0} bytes |\n\
         | scan limit (sled iteration + decoding) | {} events/s |\n\
         | the same scan on two threads (half the events each) | {} events/s |\n\
         | replay (read on two threads, check hashes, decode, fold) | {} events/s |\n\
         | CPU per event: the scan limit's · the fold alone's (one thread) | {:.2} µs · {:.2} µs |\n\
         | replay ceiling: {} cores ÷ the two together | {} events/s |\n\
         | restart from the stored checkpoint ({} bytes) | {:.0} ms |\n\
         | disk | {} bytes, {:.0} bytes per event ({:.1}x the record) |",
        thousands(events as f64),
        thousands(scan_rate),
        thousands(scan_two_rate),
        thousands(replay_rate),
        scan_cpu,
        fold_cpu,
        cores(),
        thousands(ceiling),
        thousands(checkpoint_bytes as f64),
        restart.as_secs_f64() * 1000.0,
        thousands(disk as f64),
        disk as f64 / events.max(1) as f64,
        disk as f64 / events.max(1) as f64 / average,
    ));
    Ok(())
}

/// Decodes every record and its payload (what the scan limit measures);
/// answers how many records and how many bytes. `chunked`: the values are
/// stored format v4's chunks of records.
fn scan_records(values: sled::Iter, chunked: bool) -> anyhow::Result<(u64, u64)> {
    let (mut events, mut bytes) = (0u64, 0u64);
    for item in values {
        let (_, value) = item?;
        for_each_record(&value, chunked, |record| {
            decode_scanned(record)?;
            events += 1;
            bytes += record.len() as u64;
            Ok(())
        })?;
    }
    Ok((events, bytes))
}

/// Hands `f` each record a stored value holds: itself, or in v4
/// (`chunked`) each record of its chunk.
fn for_each_record(value: &[u8], chunked: bool, mut f: impl FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    if !chunked {
        return f(value);
    }
    for frame in fundledger::log::split_chunk(value) {
        let (at, len) = frame.map_err(|problem| anyhow::anyhow!(problem))?;
        f(&value[at..at + len])?;
    }
    Ok(())
}

/// The log's key of event `seq` (`e` ‖ seq, big-endian), as raw sled is
/// written and read here.
fn event_key(seq: u64) -> [u8; 9] {
    let mut key = [b'e'; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// What the scan limit does with each record it reads: decodes it and its
/// event's payload.
fn decode_scanned(record: &[u8]) -> anyhow::Result<()> {
    let decoded = codec::decode_record(record)?;
    // As the log's reads decode it.
    let _event: Event = fundledger::projections::decode_payload(&decoded.body.payload)?;
    Ok(())
}

/// Writes `batch` to raw sled and makes it durable exactly as the log syncs
/// a group commit: `apply_batch`, sled's flush, fdatasync of its file.
fn apply_durably(db: &sled::Db, db_file: &std::fs::File, batch: sled::Batch) -> anyhow::Result<()> {
    db.apply_batch(batch)?;
    db.flush()?;
    db_file.sync_data()?;
    Ok(())
}

// ------------------------------------------------------------------ layout

/// Records per sled key in the layout experiment: one (stored formats v2
/// and v3), eight (v4's chunks, `fundledger::log::CHUNK_RECORDS`), and more.
const LAYOUT_GROUPS: [usize; 3] = [1, 8, 32];

/// Raw sled with several records per key: the writer section's own records
/// written to raw sled again, `group` of them under one key (each with its
/// length before it, as in a v4 chunk), in batches of the writer's group
/// commit with flush + fdatasync per batch; then read back on one thread
/// from a new handle, every record and payload decoded, as the scan limit
/// reads. sled's cost is per key: with 8 per key this is the storage limit
/// of stored format v4's layout (the experiment that led to it).
fn layout_section(report: &mut Report, ledger_dir: &Path, work: &Path) -> anyhow::Result<()> {
    // A section before may have just closed the ledger: its threads let go
    // of sled's lock a moment later.
    wait_released(ledger_dir)?;
    let records: Vec<Vec<u8>> = {
        let db = fundledger::log::sled_config(ledger_dir).open()?;
        let mut records = Vec::new();
        for value in db.scan_prefix(b"e").values() {
            for_each_record(&value?, store_format().chunked(), |record| {
                records.push(record.to_vec());
                Ok(())
            })?;
        }
        records
    };
    wait_released(ledger_dir)?;
    let batch = report.get("writer_batch").map_or(100, |b| b.round().max(1.0) as usize);
    report.line(format!(
        "\n## Layout experiment: records grouped under one sled key\n\n\
         The writer section's {} records, written again to raw sled {batch} per \
         flush + fdatasync, then read back from a new handle on one thread \
         (every record and payload decoded, as the scan limit reads).\n\n\
         | records per key | written records/s | CPU µs per record written | read events/s | CPU µs per event read | disk bytes per record |\n\
         |---:|---:|---:|---:|---:|---:|",
        thousands(records.len() as f64)
    ));
    for group in LAYOUT_GROUPS {
        let dir = work.join(format!("layout-{group}"));
        let (written, write_cpu) = {
            let db = fundledger::log::sled_config(&dir).open()?;
            let db_file = std::fs::File::open(dir.join("db"))?;
            let started = Instant::now();
            let cpu = Cpu::now();
            for (b, in_batch) in records.chunks(batch).enumerate() {
                let mut sled_batch = sled::Batch::default();
                for (k, chunk) in in_batch.chunks(group).enumerate() {
                    let key = event_key((b * batch + k * group + 1) as u64);
                    let mut value = Vec::with_capacity(chunk.iter().map(|r| r.len() + 4).sum());
                    for record in chunk {
                        fundledger::log::frame_record(&mut value, record);
                    }
                    sled_batch.insert(&key[..], value);
                }
                apply_durably(&db, &db_file, sled_batch)?;
            }
            (started.elapsed(), Cpu::now().since(cpu).per(records.len() as u64).total)
        };
        wait_released(&dir)?;
        let (read, read_cpu) = {
            let db = fundledger::log::sled_config(&dir).open()?;
            let started = Instant::now();
            let cpu = Cpu::now();
            // Every value is a chunk here, even of one record.
            let (events, _) = scan_records(db.scan_prefix(b"e"), true)?;
            anyhow::ensure!(events == records.len() as u64, "read {events} of {} records", records.len());
            (started.elapsed(), Cpu::now().since(cpu).per(events).total)
        };
        wait_released(&dir)?;
        let count = records.len() as u64;
        report.figure(leak(format!("layout_write_cpu_us_{group}")), write_cpu);
        report.figure(leak(format!("layout_write_per_s_{group}")), per_second(count, written));
        report.figure(leak(format!("layout_read_cpu_us_{group}")), read_cpu);
        report.line(format!(
            "| {group} | {} | {write_cpu:.1} | {} | {read_cpu:.2} | {:.0} |",
            thousands(per_second(count, written)),
            thousands(per_second(count, read)),
            disk_bytes(&dir) as f64 / count.max(1) as f64,
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ gRPC

/// Where the gRPC section sends its calls, and the tokens of the
/// workload's principals there.
struct Target {
    channels: Vec<tonic::transport::Channel>,
    officer: String,
    treasurers: Vec<String>,
    /// The ledger, when this program serves it: for its writer counters.
    ledger: Option<Ledger>,
    _server: Option<(tokio::sync::oneshot::Sender<()>, tempfile::TempDir)>,
}

impl Target {
    fn client(&self, n: usize, token: &str) -> fundledger::api::auth::Client {
        // 16 calls share a connection, as a pool of clients would.
        fundledger::api::auth::client(self.channels[(n / 16) % self.channels.len()].clone(), token).expect("token")
    }

    fn token_of(&self, kind: ClientKind) -> &str {
        match kind {
            ClientKind::Officer => &self.officer,
            ClientKind::Treasurer { partner } => &self.treasurers[partner],
        }
    }
}

async fn connect(url: &str, connections: usize) -> anyhow::Result<Vec<tonic::transport::Channel>> {
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(tonic::transport::Endpoint::from_shared(url.to_owned())?.tcp_nodelay(true).connect().await?);
    }
    Ok(channels)
}

async fn grpc_target(args: &Args) -> anyhow::Result<Target> {
    let connections = args.in_flight.iter().max().copied().unwrap_or(1).div_ceil(16).max(1);
    let (url, admin_token, ledger, server) = match &args.server {
        Some(url) => (url.clone(), args.token.clone().expect("clap requires it"), None, None),
        None => {
            let dir = tempfile::tempdir()?;
            let ledger = Ledger::open(ledger_config(dir.path().join("ledger")))?;
            let admin = fundledger::api::auth::init_admin(&ledger, PrincipalId::new("admin")?).await?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let served = ledger.clone();
            tokio::spawn(async move {
                let _ = fundledger::api::server::serve(served, listener, async {
                    let _ = stopped.await;
                })
                .await;
            });
            (url, admin, Some(ledger), Some((stop, dir)))
        }
    };
    let channels = connect(&url, connections).await?;
    let mut admin = fundledger::api::auth::client(channels[0].clone(), &admin_token)?;
    let grant = |principal: String, role: pb::Role| {
        let token = fundledger::api::auth::new_token().expect("randomness");
        let command = pb::GrantAccessRequest {
            meta: Some(pb::CommandMeta {
                request_id: format!("grant-{principal}"),
                expected_version: None,
                positions_only: false,
            }),
            principal_id: principal,
            role: Some(role),
            token_sha256: hex::encode(fundledger::api::auth::token_sha256(&token)),
        };
        (command, token)
    };
    // The admin's part of the setup in one batch call, then each partner's
    // pledge by its treasurer.
    let (admin_steps, pledges): (Vec<Step>, Vec<Step>) =
        workload::setup().into_iter().partition(|s| s.actor == workload::admin());
    submit_all(&mut admin, &admin_steps, "setup").await?;
    let (command, officer) = grant(workload::officer().principal.to_string(), role(pb::RoleKind::Officer, None));
    admin.grant_access(command).await?;
    let mut treasurers = Vec::new();
    for (p, pledge) in pledges.iter().enumerate() {
        let (command, token) = grant(
            pledge.actor.principal.to_string(),
            role(pb::RoleKind::Partner, Some(workload::partner_id(p).to_string())),
        );
        admin.grant_access(command).await?;
        let mut treasurer = fundledger::api::auth::client(channels[0].clone(), &token)?;
        submit_all(&mut treasurer, std::slice::from_ref(pledge), &format!("pledge-{p}")).await?;
        treasurers.push(token);
    }
    Ok(Target { channels, officer, treasurers, ledger, _server: server })
}

fn role(kind: pb::RoleKind, partner: Option<String>) -> pb::Role {
    pb::Role { kind: kind as i32, partner_id: partner }
}

/// Sends `steps` as one batch call; every command must be accepted.
async fn submit_all(client: &mut fundledger::api::auth::Client, steps: &[Step], prefix: &str) -> anyhow::Result<()> {
    let commands = steps
        .iter()
        .enumerate()
        .map(|(n, s)| {
            batch_command(
                &s.command,
                pb::CommandMeta { request_id: format!("{prefix}-{n}"), expected_version: None, positions_only: false },
            )
        })
        .collect();
    let answer =
        client.submit_commands(pb::SubmitCommandsRequest { commands, positions_only: false }).await?.into_inner();
    for outcome in answer.outcomes {
        if let Some(pb::command_outcome::Outcome::Refused(refusal)) = outcome.outcome {
            anyhow::bail!("the setup was refused: {}", refusal.message);
        }
    }
    Ok(())
}

/// One point of a curve: `in_flight` loops calling `call` for `seconds`.
struct Point {
    calls: u64,
    elapsed: Duration,
    latencies: Latencies,
    /// This process's CPU time during the point.
    cpu: Cpu,
}

async fn run_point<F, Fut>(in_flight: usize, seconds: f64, make: F) -> anyhow::Result<Point>
where
    F: Fn(usize) -> Box<dyn FnMut() -> Fut + Send>,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let cpu = Cpu::now();
    let mut tasks = Vec::new();
    for n in 0..in_flight {
        let mut call = make(n);
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut calls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                calls += call().await?;
                latencies.add(sent.elapsed());
            }
            anyhow::Ok((calls, latencies))
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut point = Point { calls: 0, elapsed: Duration::ZERO, latencies: Latencies::default(), cpu: Cpu::default() };
    for task in tasks {
        let (calls, latencies) = task.await??;
        point.calls += calls;
        point.latencies.merge(latencies);
    }
    point.elapsed = started.elapsed();
    point.cpu = Cpu::now().since(cpu);
    Ok(point)
}

async fn grpc_section(report: &mut Report, args: &Args) -> anyhow::Result<()> {
    let target = Arc::new(grpc_target(args).await?);
    report.line(format!(
        "\n## gRPC over loopback\n\n{}, {} s per point, 16 calls per HTTP/2 connection.\n\n\
         Each command is answered with its events in full; the last three columns are a point after it \
         whose commands ask for their position only (`CommandMeta.positions_only`), on the ledger the points \
         before it made larger.\n\n\
         | in flight | RPC limit (health Check) calls/s | commands/s, one per call | p50 ms | p99 ms | p999 ms | ratio to RPC limit | group commit | \
         CPU µs per health call | CPU µs per command (writer thread · tokio workers · other threads) | \
         positions only: commands/s | its ratio to RPC limit | its CPU µs per command (writer thread · tokio workers · other threads) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        if args.server.is_some() {
            "against the given server (the CPU columns are this process's, the client's only)"
        } else {
            "a server in this process (its own tokio workers; the CPU columns are client and server together)"
        },
        args.seconds
    ));
    for &in_flight in &args.in_flight {
        let health_target = target.clone();
        let health = run_point(in_flight, args.seconds, move |n| {
            let client = tonic_health::pb::health_client::HealthClient::new(
                health_target.channels[(n / 16) % health_target.channels.len()].clone(),
            );
            Box::new(move || {
                let mut client = client.clone();
                async move {
                    client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
                    Ok(1)
                }
            })
        })
        .await?;
        let before = target.ledger.as_ref().map(|l| l.writer_counters());
        let mut commands = one_per_call_point(&target, in_flight, args.seconds, false).await?;
        let batch = target.ledger.as_ref().map(|l| {
            let c = l.writer_counters().since(before.expect("same ledger"));
            format!("{:.1}", c.commands as f64 / c.batches.max(1) as f64)
        });
        let positions = one_per_call_point(&target, in_flight, args.seconds, true).await?;
        let rpc_rate = per_second(health.calls, health.elapsed);
        let rate = per_second(commands.calls, commands.elapsed);
        let positions_rate = per_second(positions.calls, positions.elapsed);
        report.figure(leak(format!("grpc_positions_commands_{in_flight}")), positions_rate);
        let positions_cpu = positions.cpu.per(positions.calls);
        report.figure(leak(format!("rpc_limit_{in_flight}")), rpc_rate);
        report.figure(leak(format!("grpc_commands_{in_flight}")), rate);
        report.figure(leak(format!("grpc_p99_{in_flight}")), commands.latencies.ms(99.0));
        let (health_cpu, command_cpu) = (health.cpu.per(health.calls), commands.cpu.per(commands.calls));
        report.figure(leak(format!("rpc_cpu_us_{in_flight}")), health_cpu.total);
        report.figure(leak(format!("grpc_cpu_us_{in_flight}")), command_cpu.total);
        report.figure(leak(format!("rpc_cores_{in_flight}")), health.cpu.cores(health.elapsed));
        report.figure(leak(format!("grpc_cores_{in_flight}")), commands.cpu.cores(commands.elapsed));
        report.line(format!(
            "| {in_flight} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0}% | {} | {:.0} | {:.0} ({:.0} · {:.0} · {:.0}) \
             | {} | {:.0}% | {:.0} ({:.0} · {:.0} · {:.0}) |",
            thousands(rpc_rate),
            thousands(rate),
            commands.latencies.ms(50.0),
            commands.latencies.ms(99.0),
            commands.latencies.ms(99.9),
            100.0 * rate / rpc_rate,
            batch.unwrap_or_else(|| "n/a".into()),
            health_cpu.total,
            command_cpu.total,
            command_cpu.writer,
            command_cpu.tokio,
            command_cpu.other(),
            thousands(positions_rate),
            100.0 * positions_rate / rpc_rate,
            positions_cpu.total,
            positions_cpu.writer,
            positions_cpu.tokio,
            positions_cpu.other(),
        ));
    }
    // The batch call, answered in full and then with positions only.
    for answer in &args.batch_answers {
        batch_point(report, args, &target, answer == "positions").await?;
    }
    if let Some(ledger) = &target.ledger {
        // Every acknowledged command is in the log: a quick self-check.
        let head = ledger.head_seq();
        anyhow::ensure!(head > 0, "nothing was recorded");
    }
    Ok(())
}

/// The batch call: officers sending `--batch` commands per call, asking for
/// their events back (`positions_only` false) or only their positions.
async fn batch_point(
    report: &mut Report,
    args: &Args,
    target: &Arc<Target>,
    positions_only: bool,
) -> anyhow::Result<()> {
    let batch_size = args.batch;
    let batch_target = target.clone();
    let prefix = if positions_only { "bp-" } else { "b-" };
    let before = target.ledger.as_ref().map(|l| l.writer_counters());
    let mut point = run_point(args.batch_in_flight, args.seconds, move |n| {
        let mut workload = WorkloadClient::of_kind(prefix, n as u64, ClientKind::Officer);
        let client = batch_target.client(n, &batch_target.officer);
        Box::new(move || {
            let mut client = client.clone();
            let commands: Vec<pb::BatchCommand> = (0..batch_size)
                .map(|_| {
                    let id = workload.request_id();
                    batch_command(
                        &workload.next_step().command,
                        pb::CommandMeta { request_id: id, expected_version: None, positions_only: false },
                    )
                })
                .collect();
            async move {
                let request = pb::SubmitCommandsRequest { commands, positions_only };
                let answer = client.submit_commands(request).await?.into_inner();
                for outcome in &answer.outcomes {
                    use pb::command_outcome::Outcome;
                    match &outcome.outcome {
                        Some(Outcome::Refused(refusal)) => {
                            anyhow::bail!("a batched command was refused: {}", refusal.message)
                        }
                        Some(Outcome::Accepted(_)) if !positions_only => {}
                        Some(Outcome::Recorded(_)) if positions_only => {}
                        other => anyhow::bail!("an unexpected answer to a batched command: {other:?}"),
                    }
                }
                Ok(answer.outcomes.len() as u64)
            }
        })
    })
    .await?;
    let rate = per_second(point.calls, point.elapsed);
    report.figure(if positions_only { "grpc_batch_positions_commands" } else { "grpc_batch_commands" }, rate);
    let batch_cpu = point.cpu.per(point.calls);
    let group = target.ledger.as_ref().map(|l| {
        let c = l.writer_counters().since(before.expect("same ledger"));
        format!(
            "; group commit of {:.0} commands on average, {} of {} synced while the writer wrote the next",
            c.commands as f64 / c.batches.max(1) as f64,
            c.overlapped,
            c.batches
        )
    });
    report.line(format!(
        "\nBatch call, {}: {} calls of {batch_size} commands in flight: **{} durable commands/s**; \
         call latency p50 {:.1} ms, p99 {:.1} ms{}; {:.2} cores busy, {:.1} µs of CPU per command \
         (writer thread {:.1}, tokio workers {:.1}, other threads {:.1}).",
        if positions_only { "answered with positions only" } else { "answered with the events in full" },
        args.batch_in_flight,
        thousands(rate),
        point.latencies.ms(50.0),
        point.latencies.ms(99.0),
        group.unwrap_or_default(),
        point.cpu.cores(point.elapsed),
        batch_cpu.total,
        batch_cpu.writer,
        batch_cpu.tokio,
        batch_cpu.other(),
    ));
    Ok(())
}

/// `in_flight` clients sending one command per call, each asking for its
/// events back or (`positions_only`) only where they are.
async fn one_per_call_point(
    target: &Arc<Target>,
    in_flight: usize,
    seconds: f64,
    positions_only: bool,
) -> anyhow::Result<Point> {
    let command_target = target.clone();
    let prefix = if positions_only { format!("gp{in_flight}-") } else { format!("g{in_flight}-") };
    run_point(in_flight, seconds, move |n| {
        let mut workload = WorkloadClient::new(&prefix, n as u64);
        let client = command_target.client(n, command_target.token_of(workload.kind()));
        Box::new(move || {
            let mut client = client.clone();
            let id = workload.request_id();
            let command = batch_command(
                &workload.next_step().command,
                pb::CommandMeta { request_id: id, expected_version: None, positions_only },
            );
            async move {
                let answer = send_one(&mut client, command).await?;
                anyhow::ensure!(answer.position.is_some(), "an answer without its position: {answer:?}");
                anyhow::ensure!(
                    answer.events.is_empty() == positions_only,
                    "an answer of {} events, positions only {positions_only}",
                    answer.events.len()
                );
                Ok(1)
            }
        })
    })
    .await
}

async fn send_one(
    client: &mut fundledger::api::auth::Client,
    command: pb::BatchCommand,
) -> anyhow::Result<pb::CommandResponse> {
    use pb::batch_command::Command as C;
    let answer = match command.command.expect("a command") {
        C::PledgeContribution(r) => client.pledge_contribution(r).await,
        C::RecordReceipt(r) => client.record_receipt(r).await,
        C::SubmitApplication(r) => client.submit_application(r).await,
        C::AwardGrant(r) => client.award_grant(r).await,
        C::MakePayment(r) => client.make_payment(r).await,
        other => anyhow::bail!("the workload does not send {other:?} one at a time"),
    };
    Ok(answer?.into_inner())
}

fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

// ------------------------------------------------------------------ PostgreSQL

/// A throw-away PostgreSQL cluster in a temporary directory, stopped and
/// removed on drop.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

impl Postgres {
    fn start() -> anyhow::Result<Postgres> {
        let bin = postgres_bin()?;
        let dir = tempfile::Builder::new().prefix("fundledger-pg-").tempdir()?;
        // initdb refuses to run as root: run the cluster as `postgres`.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            run(std::process::Command::new("chown").arg("postgres:postgres").arg(dir.path()))?;
        }
        let pg = Postgres { bin, dir, as_postgres };
        let data = pg.dir.path().join("data");
        run(pg.command("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]))?;
        let options = format!(
            "-c listen_addresses='' -k {} -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
             -c shared_buffers=256MB -c max_connections=400 -c wal_buffers=16MB",
            pg.dir.path().display()
        );
        run(pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(pg.dir.path().join("log"))
            .args(["-w", "start"]))?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn config(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.path().display())
    }

    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.config(), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl").arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).output();
    }
}

fn postgres_bin() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("FUNDLEDGER_PG_BIN") {
        return Ok(dir.into());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| anyhow::anyhow!("PostgreSQL is not installed (/usr/lib/postgresql: {e}); set FUNDLEDGER_PG_BIN"))?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| anyhow::anyhow!("no PostgreSQL server under /usr/lib/postgresql; set FUNDLEDGER_PG_BIN"))
}

fn run(command: &mut std::process::Command) -> anyhow::Result<()> {
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The event table as event-sourced services usually keep it.
const EVENT_TABLE: &str = "
    CREATE TABLE events (
        seq            bigserial   PRIMARY KEY,
        stream         text        NOT NULL,
        stream_version bigint      NOT NULL,
        event_type     text        NOT NULL,
        payload        bytea       NOT NULL,
        request_id     text        NOT NULL UNIQUE,
        recorded_at    timestamptz NOT NULL DEFAULT now(),
        UNIQUE (stream, stream_version)
    )";

/// One command = one committed transaction inserting its event at the
/// stream's next version; a concurrent writer to the same stream makes it
/// retry (optimistic concurrency, as fundledger's expected versions).
const INSERT_EVENT: &str = "
    INSERT INTO events (stream, stream_version, event_type, payload, request_id)
    VALUES ($1, (SELECT coalesce(max(stream_version), 0) + 1 FROM events WHERE stream = $1), $2, $3, $4)";

async fn postgres_section(report: &mut Report, args: &Args) -> anyhow::Result<()> {
    let pg = Arc::new(Postgres::start()?);
    pg.connect().await?.batch_execute(EVENT_TABLE).await?;
    let levels: Vec<usize> = args.in_flight.iter().copied().filter(|&n| n <= 256).collect();
    report.line(format!(
        "\n## PostgreSQL 15 event table\n\nA throw-away cluster (fsync on, synchronous_commit on, shared_buffers 256MB), \
         unix socket, one connection per client; each command of the same workload is one row (its encoded command \
         as the payload: no business rules at all), one committed transaction per command, {} s per point.\n\n\
         | clients | commands/s | p50 ms | p99 ms | stream conflicts retried |\n|---:|---:|---:|---:|---:|",
        args.seconds
    ));
    for in_flight in levels {
        let mut clients = Vec::new();
        for _ in 0..in_flight {
            clients.push(Arc::new(pg.connect().await?));
        }
        let retries = Arc::new(AtomicU64::new(0));
        let counted = retries.clone();
        let mut point = run_point(in_flight, args.seconds, move |n| {
            let client = clients[n].clone();
            let retries = counted.clone();
            let mut workload = WorkloadClient::new(&format!("pg{in_flight}-"), n as u64);
            Box::new(move || {
                let client = client.clone();
                let retries = retries.clone();
                let id = workload.request_id();
                let Step { command, actor: _ }: Step = workload.next_step();
                async move {
                    let stream = command.stream().to_string();
                    let payload = codec::encode(&command);
                    loop {
                        match client.execute(INSERT_EVENT, &[&stream, &command.name(), &payload, &id]).await {
                            Ok(_) => return Ok(1),
                            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            })
        })
        .await?;
        let rate = per_second(point.calls, point.elapsed);
        report.figure(leak(format!("postgres_{in_flight}")), rate);
        report.line(format!(
            "| {in_flight} | {} | {:.2} | {:.2} | {} |",
            thousands(rate),
            point.latencies.ms(50.0),
            point.latencies.ms(99.0),
            thousands(retries.load(Ordering::Relaxed) as f64)
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ summary

fn summary(report: &mut Report) {
    let mut rows = Vec::new();
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let mut row = |figure: &str, value: Option<f64>, target: f64, what: &str| {
        if let Some(value) = value {
            let verdict = if value >= target { "met" } else { "**missed**" };
            rows.push(format!("| {figure} | {value:.2} | ≥ {target} {what} | {verdict} |"));
        }
    };
    let r = |name: &str| report.get(name);
    let storage = r("storage_per_s_achieved").or(r("storage_per_s_1000"));
    row("in-process writer / storage limit (same batch size)", ratio(r("writer_commands_per_s"), storage), 0.8, "");
    for (answer, figure) in [("", "grpc_commands_64"), ("positions only, ", "grpc_positions_commands_64")] {
        row(
            &format!("gRPC one per call, {answer}64 in flight / RPC limit at 64"),
            ratio(r(figure), r("rpc_limit_64")),
            0.6,
            "",
        );
        row(
            &format!("gRPC one per call, {answer}64 in flight / PostgreSQL at 64"),
            ratio(r(figure), r("postgres_64")),
            2.0,
            "",
        );
    }
    for (answer, figure) in
        [("events in full", "grpc_batch_commands"), ("positions only", "grpc_batch_positions_commands")]
    {
        row(
            &format!("gRPC batch call, {answer} / storage limit (batch 1000)"),
            ratio(r(figure), r("storage_per_s_1000")),
            0.6,
            "",
        );
        row(&format!("gRPC batch call, {answer} / PostgreSQL at 64"), ratio(r(figure), r("postgres_64")), 4.0, "");
    }
    row("replay / scan limit", ratio(r("replay_per_s"), r("scan_per_s")), 0.5, "");
    row("replay, million events/s", r("replay_per_s").map(|v| v / 1e6), 1.0, "");
    if let Some(v) = r("replay_ceiling_per_s") {
        rows.push(format!(
            "| replay ceiling here (cores ÷ CPU per event of the scan limit and the fold), million events/s | {:.2} | (context) | |",
            v / 1e6
        ));
    }
    // Like for like: both from the layout experiment's reads (its tree of
    // one record per key is not the log's, so its read costs differ a
    // little from the scan limit's).
    if let (Some(one), Some(eight), Some(fold)) =
        (r("layout_read_cpu_us_1"), r("layout_read_cpu_us_8"), r("fold_cpu_us"))
    {
        rows.push(format!(
            "| replay ceiling from the layout experiment's reads + the fold, 1 · 8 records per sled key, million events/s | {:.2} · {:.2} | (context) | |",
            ceiling_per_s(one + fold) / 1e6,
            ceiling_per_s(eight + fold) / 1e6
        ));
    }
    if let Some(v) = ratio(r("replay_per_s"), r("scan_two_per_s")) {
        rows.push(format!("| replay / the same scan on two threads | {v:.2} | (context) | |"));
    }
    // Stored format v4 writes up to 8 records per key: beside the storage
    // limit of one record per key (the target's baseline), raw sled with
    // v4's layout at the same batch size, from the layout section.
    if let Some(v) = ratio(r("writer_commands_per_s"), r("layout_write_per_s_8")) {
        rows.push(format!(
            "| in-process writer / raw sled with 8 records per key (v4's layout), same batch size | {v:.2} | (context) | |"
        ));
    }
    if let Some(v) = ratio(r("writer_commands_per_s"), r("storage_per_s_log_keys")) {
        rows.push(format!(
            "| in-process writer / raw sled with the log's {LOG_KEYS} keys per event | {v:.2} | (context) | |"
        ));
    }
    // What limits the throughput ratios: CPU per command against the
    // baseline's per operation, and whether the CPUs were all busy.
    if let Some(v) = ratio(r("writer_cpu_us"), r("storage_cpu_us_achieved")) {
        rows.push(format!(
            "| CPU per command, in-process writer / CPU per record, raw sled at the same batch size | {v:.2} | (context) | |"
        ));
    }
    if let Some(v) = ratio(r("grpc_cpu_us_64"), r("rpc_cpu_us_64")) {
        rows.push(format!(
            "| CPU per command, gRPC at 64 in flight / CPU per health call at 64 | {v:.2} | (context) | |"
        ));
    }
    if let (Some(commands), Some(health)) = (r("grpc_cores_64"), r("rpc_cores_64")) {
        rows.push(format!(
            "| cores busy at 64 in flight: commands · health calls | {commands:.2} · {health:.2} | (context) | |"
        ));
    }
    // The most each throughput ratio could be on this machine if every
    // core were busy and a command cost no CPU but its baselines' (the RPC
    // limit's call, raw sled's record at a batch size the target's own or
    // larger) and the domain's decide and fold: what the machine allows,
    // beside what the ledger does.
    let ceiling = |floors: &[Option<f64>], baseline: Option<f64>| -> Option<f64> {
        Some(ceiling_per_s(floors.iter().copied().sum::<Option<f64>>()?) / baseline?)
    };
    let decide_fold = r("decide_fold_cpu_us");
    for (figure, value) in [
        ("in-process writer / storage limit", ceiling(&[r("storage_cpu_us_achieved"), decide_fold], storage)),
        (
            "gRPC one per call, 64 in flight / RPC limit (raw sled's CPU at batches of 100)",
            ceiling(&[r("rpc_cpu_us_64"), r("storage_cpu_us_100"), decide_fold], r("rpc_limit_64")),
        ),
        (
            "gRPC batch call / storage limit (batch 1000)",
            ceiling(&[r("storage_cpu_us_1000"), decide_fold], r("storage_per_s_1000")),
        ),
    ] {
        if let Some(v) = value {
            rows.push(format!(
                "| ceiling here: {figure}, with cores ÷ CPU per command of the baselines + decide and fold | {v:.2} | (context) | |"
            ));
        }
    }
    if let Some(p99) = r("grpc_p99_16") {
        let verdict = if p99 <= 5.0 { "met" } else { "**missed**" };
        rows.push(format!("| p99 latency at 16 in flight, ms | {p99:.2} | ≤ 5 | {verdict} |"));
    }
    if let Some(disk) = ratio(r("disk_per_event"), r("record_bytes")) {
        let verdict = if disk <= 3.0 { "met" } else { "**missed**" };
        rows.push(format!("| disk bytes per event / encoded record | {disk:.2} | ≤ 3 | {verdict} |"));
    }
    if rows.is_empty() {
        return;
    }
    let mut text =
        String::from("\n## Ratios against the targets\n\n| figure | measured | target | |\n|---|---:|---|---|\n");
    for row in rows {
        let _ = writeln!(text, "{row}");
    }
    report.line(text.trim_end());
}

// ------------------------------------------------------------------ restart

/// Builds (or reuses) a ledger of `events` events in `dir`, then measures a
/// restart to serving in a child process, with and without the checkpoint.
async fn restart_section(report: &mut Report, dir: &Path, events: u64, starts: usize) -> anyhow::Result<()> {
    let existing = if dir.join("db").exists() { log_head(dir)? } else { 0 };
    // In steps of a million events, each in a process of its own: sled
    // 0.34 keeps much of what a long run of large batches wrote in memory
    // (about 7 KiB per event here), which a restart gives back.
    let mut head = existing;
    // At least one step, even for a ledger that is big enough: it stores a
    // checkpoint in this build's layout (one of an older layout would make
    // every start below a full replay).
    let mut first = true;
    while std::mem::take(&mut first) || head < events {
        let until = (head + 1_000_000).min(events);
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(["--store-format", &format!("{:?}", store_format()).to_lowercase()])
            .arg("--build-until")
            .arg(until.to_string())
            .arg("--data-dir")
            .arg(dir)
            .status()?;
        anyhow::ensure!(status.success(), "building the log stopped: {status}");
        head = log_head(dir)?;
    }
    let head = log_head(dir)?;
    report.line(format!(
        "\n## Restart with {} events\n\n{}; disk {} bytes ({:.0} per event).\n\n\
         | start | to serving (health SERVING), s | ledger open, s | first application lookup, ms | checkpoint's applications all decoded, s | resident memory at serving | resident memory once decoded | peak resident memory |\n|---|---:|---:|---:|---:|---:|---:|---:|",
        thousands(head as f64),
        dir.display(),
        thousands(disk_bytes(dir) as f64),
        disk_bytes(dir) as f64 / head as f64,
    ));
    let runs = std::iter::repeat_n(("from the stored checkpoint", false), starts.max(1))
        .chain([("full replay (checkpoint removed)", true)]);
    let mut opens = Vec::new();
    let mut ledger_opens = Vec::new();
    // The storage engine's own part of a start, alternated with the starts:
    // a process that only opens sled's tree and finds its head.
    let mut engine = Vec::new();
    for (label, drop_checkpoint) in runs {
        if !drop_checkpoint {
            engine.push(sled_open_once(dir)?);
        }
        let checkpoint = dir.join(fundledger::log::CHECKPOINT_FILE);
        let aside = dir.with_extension("checkpoint-aside");
        if drop_checkpoint {
            // What a missing or unverifiable checkpoint costs; put back
            // afterwards (the probe is killed, so it stores none).
            std::fs::rename(&checkpoint, &aside)?;
        }
        let measured = restart_once(dir).await;
        if drop_checkpoint {
            std::fs::rename(&aside, &checkpoint)?;
        }
        let Started { ready, open, lookup_ms, decoded, rss, decoded_rss, peak } = measured?;
        if !drop_checkpoint {
            opens.push(ready);
            ledger_opens.push(open);
        }
        let mib = |kib: u64| format!("{} MiB", thousands(kib as f64 / 1024.0));
        report.line(format!(
            "| {label} | {ready:.2} | {open:.2} | {lookup_ms:.1} | {decoded:.2} | {} | {} | {} |",
            mib(rss),
            mib(decoded_rss),
            mib(peak)
        ));
    }
    let in_run_order = engine.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(" · ");
    let median = median_of(&mut opens);
    let ledger_open = median_of(&mut ledger_opens);
    let engine_median = median_of(&mut engine);
    report.line(format!(
        "\nStart from the checkpoint to serving: **median {median:.2} s** of {} starts.\n\n\
         sled's own open of this tree (in a process of its own before each start: sled opened as the \
         log opens it and its last event read, timed inside that process): {in_run_order}, median \
         {engine_median:.2} s. The ledger's open (the table's third column, median {ledger_open:.2} s: \
         sled's open beside the checkpoint's reading) takes **{:.2}×** that.",
        opens.len(),
        ledger_open / engine_median,
    ));
    Ok(())
}

/// The median of `values` (sorted in place); NaN for none.
fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Runs this program as `--sled-open DIR`; answers the seconds it took to
/// open sled's tree and read its last event, as that process timed it (as
/// the probe times the ledger's open).
fn sled_open_once(dir: &Path) -> anyhow::Result<f64> {
    let output = std::process::Command::new(std::env::current_exe()?).arg("--sled-open").arg(dir).output()?;
    anyhow::ensure!(output.status.success(), "opening sled alone failed: {}", String::from_utf8_lossy(&output.stderr));
    let seconds = String::from_utf8_lossy(&output.stdout).trim().parse()?;
    std::thread::sleep(Duration::from_secs(1));
    Ok(seconds)
}

/// The child of [`sled_open_once`].
fn sled_open_only(dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = fundledger::log::sled_config(dir).open()?;
    let last = db.scan_prefix(b"e").next_back().transpose()?;
    anyhow::ensure!(last.is_some(), "no events in {}", dir.display());
    println!("{:.3}", started.elapsed().as_secs_f64());
    Ok(())
}

/// Writes the workload's commands into the log in `dir` until it holds
/// `events` events: decided with the domain's `decide` and appended with
/// `EventLog::append` in batches of 4,096 commands, exactly as the writer
/// does, without the writer's queue and second copy of the state (this is
/// about the ledger it leaves, not about how fast it was written), and a
/// projection checkpoint at the end, as a clean shutdown leaves one.
fn build_log(dir: &Path, events: u64) -> anyhow::Result<()> {
    use fundledger::domain::{Context, EVENT_SCHEMA_VERSION};
    use fundledger::log::{Entry, NewEvent};
    let started = Instant::now();
    let mut log = EventLog::open_with(dir, store_format())?;
    let (mut projections, _) = Projections::load(&log.reader(), log.head_seq())?;
    let mut steps: Vec<(Step, String)> = Vec::new();
    if log.head_seq() == 0 {
        steps.extend(workload::setup().into_iter().enumerate().map(|(n, s)| (s, format!("setup-{n}"))));
    }
    // Eight clients, their commands interleaved; a new run's ids are its own.
    let run = format!("r{}-", log.head_seq());
    let mut clients: Vec<WorkloadClient> = (0..8).map(|c| WorkloadClient::new(&run, c)).collect();
    let mut next_report = 0;
    while log.head_seq() < events {
        // Past about 12 M events the setup's pledges would run out.
        for step in workload::top_up_pledges(&projections.state) {
            let id = format!("{run}top-up-{}-{}", log.head_seq(), step.actor.principal);
            steps.push((step, id));
        }
        while steps.len() < 4096 {
            let client = &mut clients[steps.len() % 8];
            let id = client.request_id();
            steps.push((client.next_step(), id));
        }
        let mut entries = Vec::with_capacity(steps.len());
        for (step, request_id) in steps.drain(..) {
            let decided =
                fundledger::domain::decide(&projections.state, &step.command, &Context { actor: step.actor.clone() })
                    .map_err(|r| anyhow::anyhow!("the workload was refused: {r}"))?;
            let mut new_events = Vec::with_capacity(decided.len());
            for event in &decided {
                projections.state.evolve(event);
                new_events.push(NewEvent {
                    stream: event.stream().to_string(),
                    event_type: event.type_name().to_owned(),
                    schema_version: EVENT_SCHEMA_VERSION,
                    payload: codec::encode(event),
                });
            }
            entries.push(Entry {
                fingerprint: codec::digest(request_id.as_bytes()),
                request_id,
                actor: step.actor.principal.to_string(),
                events: new_events,
            });
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
        let envelopes = log.append(now, &entries)?;
        let last = envelopes.iter().flatten().last().expect("events were appended");
        (projections.head_seq, projections.head_hash, projections.head_recorded_at_micros) =
            (last.seq, last.hash, last.recorded_at_micros);
        if log.head_seq() >= next_report {
            eprintln!(
                "{} events, {:.0} s, resident {} MiB",
                log.head_seq(),
                started.elapsed().as_secs_f64(),
                resident_kib().0 / 1024
            );
            next_report = log.head_seq() + 250_000;
        }
    }
    log.put_checkpoint(&projections.checkpoint_bytes())?;
    let head = log.head_seq();
    drop(log);
    // As a server's clean stop does; the log is complete either way.
    let refresh = match EventLog::refresh_sled_snapshot(dir) {
        Ok(took) => format!("sled's snapshot brought up to date in {:.1} s", took.as_secs_f64()),
        Err(error) => format!("sled's snapshot not brought up to date: {error}"),
    };
    eprintln!("built {head} events in {:.0} s ({refresh})", started.elapsed().as_secs_f64());
    Ok(())
}

/// This process's resident memory now and at its peak, in KiB.
fn resident_kib() -> (u64, u64) {
    resident_kib_of("self")
}

/// A process's resident memory (`VmRSS`) and its peak (`VmHWM`), in KiB,
/// from `/proc/{pid}/status`; zeros where it cannot be read.
fn resident_kib_of(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

/// CPU time this process has used, in seconds: in all (`getrusage`,
/// threads that ended included), on the ledger's writer thread and on the
/// tokio workers (`/proc/self/task`, by thread name). What the load
/// generator's own clients use is in the tokio workers' share (they run
/// on the same runtime as the server in this process).
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    total: f64,
    writer: f64,
    tokio: f64,
}

impl Cpu {
    fn now() -> Cpu {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let total = if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            seconds(usage.ru_utime) + seconds(usage.ru_stime)
        } else {
            0.0
        };
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut cpu = Cpu { total, ..Cpu::default() };
        for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the name, which is in parentheses: utime and
            // stime are the 14th and 15th of the line.
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let used = |at: usize| fields.get(at).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let seconds = (used(11) + used(12)) / ticks;
            match name.trim() {
                // Thread names are cut to 15 bytes: "fundledger-writer".
                "fundledger-writ" => cpu.writer += seconds,
                n if n.starts_with("tokio-") => cpu.tokio += seconds,
                _ => {}
            }
        }
        cpu
    }

    /// How many cores were busy on average over `elapsed`, in all.
    fn cores(self, elapsed: Duration) -> f64 {
        self.total / elapsed.as_secs_f64()
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            total: self.total - earlier.total,
            writer: self.writer - earlier.writer,
            tokio: self.tokio - earlier.tokio,
        }
    }

    /// Microseconds of CPU per operation, in all and by kind of thread.
    fn per(self, operations: u64) -> CpuPer {
        let us = |seconds: f64| seconds * 1e6 / operations.max(1) as f64;
        CpuPer { total: us(self.total), writer: us(self.writer), tokio: us(self.tokio) }
    }
}

/// [`Cpu`] per operation, in microseconds.
#[derive(Clone, Copy, Debug)]
struct CpuPer {
    total: f64,
    writer: f64,
    tokio: f64,
}

impl CpuPer {
    /// What neither the writer nor the tokio workers used: sled's I/O
    /// threads, the checkpoint thread and the rest.
    fn other(self) -> f64 {
        (self.total - self.writer - self.tokio).max(0.0)
    }
}

/// Starts this program as `--probe DIR` and waits until its server says
/// SERVING, and then until it has decoded the checkpoint's applications.
async fn restart_once(dir: &Path) -> anyhow::Result<Started> {
    use tokio::io::AsyncBufReadExt;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--probe")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = lines.next_line().await?.ok_or_else(|| anyhow::anyhow!("the probe said nothing"))?;
    // "URL OPEN_SECONDS LOOKUP_MS FOUND"
    let mut parts = first.split_whitespace();
    let url = parts.next().unwrap_or_default().to_owned();
    let open: f64 = parts.next().unwrap_or("nan").parse()?;
    let lookup_ms: f64 = parts.next().unwrap_or("nan").parse()?;
    let channel = tonic::transport::Endpoint::from_shared(url)?.connect().await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    loop {
        let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
        if answer.is_ok_and(|a| {
            a.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready = started.elapsed().as_secs_f64();
    let pid = child.id().unwrap_or(0).to_string();
    let (rss, _) = resident_kib_of(&pid);
    // "decoded SECONDS", timed by the probe from its start.
    let decoded = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await??;
    let decoded: f64 = decoded.as_deref().and_then(|l| l.strip_prefix("decoded ")).unwrap_or("nan").parse()?;
    let (decoded_rss, peak) = resident_kib_of(&pid);
    child.kill().await?;
    Ok(Started { ready, open, lookup_ms, decoded, rss, decoded_rss, peak })
}

/// One start of [`restart_once`]: seconds to serving and to the ledger's
/// open, the first lookup of an application in milliseconds, seconds from
/// the probe's start until the checkpoint's applications were all decoded,
/// resident memory (KiB) at serving and once decoded, and its peak.
struct Started {
    ready: f64,
    open: f64,
    lookup_ms: f64,
    decoded: f64,
    rss: u64,
    decoded_rss: u64,
    peak: u64,
}

/// The child of [`restart_once`]: opens the ledger, serves it on
/// 127.0.0.1:0, prints its URL and how long the open took, serves until
/// killed.
fn probe(dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let ledger = Ledger::open(ledger_config(dir))?;
        let open = started.elapsed().as_secs_f64();
        // An application looked up as a command would: its chunk of the
        // checkpoint is decoded on this first use (the workload's ids; one
        // that is not there costs the same search).
        let id = fundledger::domain::ApplicationId::new("r0-c3-a100000")?;
        let lookup = Instant::now();
        let found = ledger.projections().state.applications.get(&id).is_some();
        let lookup_ms = lookup.elapsed().as_secs_f64() * 1e3;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("http://{} {open:.3} {lookup_ms:.2} {found}", listener.local_addr()?);
        // When the checkpoint's applications are all decoded (a thread of
        // the ledger's does it in the background once it serves).
        let stored = ledger.projections().state.applications.stored();
        std::thread::spawn(move || {
            while stored.as_ref().is_some_and(|stored| !stored.is_decoded()) {
                std::thread::sleep(Duration::from_millis(10));
            }
            println!("decoded {:.3}", started.elapsed().as_secs_f64());
        });
        fundledger::api::server::serve(ledger, listener, std::future::pending()).await?;
        anyhow::Ok(())
    })
}
