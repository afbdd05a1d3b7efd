//! The ledger: one fund's log, its single writer, and its projections.
//!
//! Every command goes through **one writer thread**, which takes a batch of
//! queued commands, decides each against the in-memory state (later
//! commands see the effects of earlier ones), appends all their events in
//! one atomic sled batch, makes it durable with one flush + fdatasync, and
//! only then updates the projections, moves the durable head and answers.
//! This gives a gapless total order and cross-entity rules checked
//! atomically, for one fsync per batch. The queue is bounded: when it is
//! full, [`Ledger::submit`] says so instead of waiting.
//!
//! The ledger also holds its Ed25519 signing key (`audit::key`), created at
//! the first [`Ledger::open`] of a data directory, to sign checkpoints of
//! its durable head.
//!
//! This module knows the domain and the log; it knows nothing of gRPC.

mod history;
mod writer;

use crate::audit::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::audit::key::KeyError;
pub use history::{AsOf, AsOfError, Cursor, EventFilter, PointInTime, Position, StreamSelector};

use crate::domain::applications::Stored;
use crate::domain::{Actor, Command, Event, Rejection, StreamId};
use crate::log::faults::FaultPlan;
use crate::log::{Envelope, EventLog, LogError, LogReader, StoreFormat};
use crate::projections::{decode_event, Claimed, Loaded, Projections};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{mpsc, oneshot, watch};

/// The longest request id, in bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 128;
/// The most commands one [`Ledger::submit_many`] (one batch call) takes.
pub const BATCH_COMMANDS_MAX: usize = 4096;
/// The most events a stream's history query returns.
pub const STREAM_HISTORY_EVENTS_MAX: usize = 10_000;

#[derive(Clone, Debug)]
pub struct LedgerConfig {
    pub data_dir: PathBuf,
    /// Commands waiting for the writer; beyond this, submit is refused.
    pub queue_commands_max: usize,
    /// Commands decided and committed together in one group commit.
    pub batch_commands_max: usize,
    /// Events between two projection checkpoints (one is also written at
    /// shutdown): a restart replays at most this many events.
    pub checkpoint_events_interval: u64,
    /// Point-in-time queries replaying the log at the same time; further
    /// ones wait. Each may replay the whole log (see `history`).
    pub as_of_queries_max: usize,
    /// The stored format of a ledger created by this open (an existing one
    /// keeps its own): [`StoreFormat::NEW`] unless an older fundledger,
    /// which reads only v2, must still open it.
    pub new_store_format: StoreFormat,
    /// **Tests only**: storage failures to inject into the log's writes,
    /// flushes and fsyncs once it is open (see `log::faults`). `None`, the
    /// default, injects nothing.
    #[doc(hidden)]
    pub storage_faults: Option<Arc<FaultPlan>>,
}

impl LedgerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> LedgerConfig {
        LedgerConfig {
            data_dir: data_dir.into(),
            queue_commands_max: 16_384,
            batch_commands_max: 4096,
            checkpoint_events_interval: 100_000,
            as_of_queries_max: 2,
            new_store_format: StoreFormat::NEW,
            storage_faults: None,
        }
    }
}

/// A command as the writer receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRequest {
    pub command: Command,
    /// Client-chosen idempotency key: a retry with the same id and the same
    /// request gets the original outcome and records nothing new.
    pub request_id: String,
    /// If set, the version the command's stream must be at.
    pub expected_version: Option<u64>,
    /// The authenticated principal acting; their id goes in the envelope.
    pub actor: Actor,
}

/// A durable event with its envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub envelope: Envelope,
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutcome {
    pub events: Vec<RecordedEvent>,
    /// True when this answers a retry: the events were recorded earlier.
    pub replayed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Rejected(Rejection),
    #[error(
        "request id {request_id:?} is too long or empty or not printable ASCII (1 to {REQUEST_ID_BYTES_MAX} bytes)"
    )]
    InvalidRequestId { request_id: String },
    #[error("request id {request_id:?} was already used for a different request; use a new id for a new request")]
    RequestIdConflict { request_id: String },
    #[error("stream {stream} is at version {actual}, not the expected {expected}; read it again and decide anew")]
    WrongExpectedVersion { stream: String, expected: u64, actual: u64 },
    #[error("a batch takes at most {BATCH_COMMANDS_MAX} commands, not {commands}; split it")]
    BatchTooLarge { commands: usize },
    #[error("the ledger's queue is full ({capacity} commands waiting); retry shortly")]
    QueueFull { capacity: usize },
    #[error("the ledger is not accepting commands: {0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the ledger's signing key: {0}")]
    Key(#[from] KeyError),
}

/// What the writer and the readers share.
struct Shared {
    projections: RwLock<Projections>,
    /// The durable head: readers never look past it.
    head: watch::Sender<u64>,
    reader: LogReader,
    /// Set when a storage failure stopped the writer.
    failure: Mutex<Option<String>>,
    /// Turns true when the writer stopped on a storage failure, so that the
    /// server can report NOT_SERVING.
    failed: watch::Sender<bool>,
    /// Signs checkpoints of the durable head.
    signing_key: ed25519_dalek::SigningKey,
    /// Permits for point-in-time replays (`as_of_queries_max`).
    as_of_queries: tokio::sync::Semaphore,
    /// What the writer has done, for benchmarks and operators.
    stats: WriterStats,
    /// How the projections were loaded when the ledger opened.
    loaded: Loaded,
    /// [`EventLog::written_since_open`] of the writer's log.
    log_written: Arc<std::sync::atomic::AtomicBool>,
}

/// Counters of the writer's work since the ledger was opened.
#[derive(Debug, Default)]
struct WriterStats {
    batches: AtomicU64,
    commands: AtomicU64,
    events: AtomicU64,
    overlapped: AtomicU64,
}

impl WriterStats {
    fn record_commit(&self, commands: u64, events: u64, overlapped: bool) {
        self.overlapped.fetch_add(u64::from(overlapped), Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
    }
}

/// A reading of the writer's counters since the ledger was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterCounters {
    /// Group commits: batches of queued commands decided together (and,
    /// when any was accepted, made durable with one fsync).
    pub batches: u64,
    /// Commands answered, accepted or refused.
    pub commands: u64,
    /// Events recorded.
    pub events: u64,
    /// Group commits made durable on the writer's sync thread while the
    /// writer decided the next (`writer::OVERLAP_COMMANDS_MIN` commands or
    /// more).
    pub overlapped: u64,
}

impl WriterCounters {
    /// The counts between `earlier` and this reading.
    pub fn since(self, earlier: WriterCounters) -> WriterCounters {
        WriterCounters {
            batches: self.batches - earlier.batches,
            commands: self.commands - earlier.commands,
            events: self.events - earlier.events,
            overlapped: self.overlapped - earlier.overlapped,
        }
    }
}

/// A handle on an open ledger; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
    control: Arc<Control>,
}

struct Control {
    queue: Mutex<Option<mpsc::Sender<writer::Message>>>,
    /// One permit per command waiting for (or in) the writer: the queue's
    /// bound counts commands, whether they come alone or in a batch call.
    queue_places: Arc<tokio::sync::Semaphore>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    queue_commands_max: usize,
}

/// Lowers this thread's scheduling priority; best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// Opens the log in `dir` and, meanwhile, reads its checkpoint file on a
/// thread of its own (the applications kept encoded, decoded as they are
/// used). The second value is what the checkpoint file claims, not yet
/// checked against the log ([`Projections::load_claimed`] does that);
/// `None` when nothing was read early: a new ledger, one in use (its
/// refusal is not held up by a decode it does not need), no checkpoint
/// file (an older ledger may keep its checkpoint in the sled tree), no
/// thread to be had, or an error reading the file. The caller then reads
/// it with [`Projections::claim`], which meets and reports any error.
/// (An open that fails for another reason once the read has started waits
/// for the read to end before it reports.)
fn open_reading_checkpoint(
    dir: &std::path::Path,
    new_format: StoreFormat,
) -> (Result<EventLog, LogError>, Option<Claimed>) {
    std::thread::scope(|scope| {
        let early = (EventLog::check_present(dir).is_ok() && EventLog::check_free(dir).is_ok())
            .then(|| {
                std::thread::Builder::new()
                    .name("checkpoint-read".into())
                    .spawn_scoped(scope, || {
                        // A start waits for sled's open, on this thread's
                        // caller, which cannot be split (0.5–0.8 s of one
                        // core for a v3 log at 10 M events, 1.5 s for v2):
                        // the checkpoint's reading runs on what it leaves.
                        lower_priority();
                        Projections::read_checkpoint_file(dir).ok().flatten()
                    })
                    .ok()
            })
            .flatten();
        let log = EventLog::open_with(dir, new_format);
        let early = early.and_then(|reading| reading.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        (log, early)
    })
}

/// Decodes a checkpoint's applications on a thread of its own, at a lower
/// priority, once the ledger serves: until then each chunk of them is
/// decoded when first used. A chunk that does not decode (its checksum held:
/// the version that wrote it has a bug) stops the process
/// ([`stop_on_undecodable`]), here as anywhere else it is met.
fn decode_in_background(stored: Arc<Stored>, dir: &std::path::Path) {
    let dir = dir.to_owned();
    let decoding = std::thread::Builder::new().name("checkpoint-decode".into()).spawn(move || {
        lower_priority();
        let started = std::time::Instant::now();
        match stored.decode_all() {
            Ok(()) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "decoded the checkpoint's applications"
            ),
            Err(problem) => stop_on_undecodable(&dir, &problem),
        }
    });
    // Without a thread, each chunk is decoded when first used.
    if let Err(error) = decoding {
        tracing::warn!(%error, "no thread to decode the checkpoint's applications ahead of use");
    }
}

/// A checkpoint's applications do not decode (`problem`): the state cannot
/// be answered from. Moves the checkpoint aside, so that the next start
/// replays the log, says so, and stops the process, as when the writer
/// panics (a restart that met the same chunk again would loop).
fn stop_on_undecodable(dir: &std::path::Path, problem: &str) -> ! {
    // Once: a second thread that meets a bad chunk waits here for the
    // first to move the checkpoint aside and stop the process.
    static STOPPING: Mutex<()> = Mutex::new(());
    let _stopping = STOPPING.lock();
    eprintln!("fundledger: {}; stopping the process", set_checkpoint_aside(dir, problem));
    std::process::abort();
}

/// Moves the checkpoint file of the ledger in `dir` aside, to
/// `projections.checkpoint.undecodable`, so that the next start replays
/// the log: what to report of a checkpoint whose applications do not decode
/// (`problem`).
fn set_checkpoint_aside(dir: &std::path::Path, problem: &str) -> String {
    let checkpoint = dir.join(crate::log::CHECKPOINT_FILE);
    let aside = dir.join(format!("{}.undecodable", crate::log::CHECKPOINT_FILE));
    let moved = match std::fs::rename(&checkpoint, &aside) {
        // The rename made durable (best effort: the process stops next).
        Ok(()) => match std::fs::File::open(dir).and_then(|dir| dir.sync_all()) {
            Ok(()) => format!("moved to {}", aside.display()),
            Err(error) => format!("moved to {} (the directory not synced: {error})", aside.display()),
        },
        Err(error) => format!("could not be moved aside ({error}): remove {}", checkpoint.display()),
    };
    format!(
        "the checkpoint's applications do not decode ({problem}); the checkpoint {moved}, so that the next \
         start replays the log"
    )
}

impl Ledger {
    /// Opens the ledger in `config.data_dir` (creating it if needed),
    /// rebuilds the projections from the log and starts the writer.
    pub fn open(config: LedgerConfig) -> Result<Ledger, LedgerError> {
        let started = std::time::Instant::now();
        let (log, early_checkpoint) = open_reading_checkpoint(&config.data_dir, config.new_store_format);
        let mut log = log?;
        if let Some(plan) = &config.storage_faults {
            log.inject_faults(plan.clone());
        }
        // After the log: sled's lock on the directory keeps two processes
        // from creating two keys.
        let (signing_key, created) = crate::audit::key::load_or_create(&config.data_dir)?;
        if created {
            tracing::info!(
                public_key = %hex::encode(signing_key.verifying_key().as_bytes()),
                "created the ledger's checkpoint signing key"
            );
        }
        let reader = log.reader();
        let claimed = match early_checkpoint {
            Some(claimed) => Some(claimed),
            None => Projections::claim(&reader)?,
        };
        // From here on, the checkpoint's applications are decoded as they
        // are used: by the catch-up below, the writer, queries, and the
        // thread that decodes the rest. One that does not decode stops the
        // process wherever it is met, the checkpoint set aside first.
        if let Some(stored) = claimed.as_ref().and_then(|c| c.as_ref().ok()).and_then(|c| c.state.applications.stored())
        {
            let dir = config.data_dir.clone();
            stored.on_undecodable(Box::new(move |problem| stop_on_undecodable(&dir, problem)));
        }
        let (projections, loaded) = Projections::load_claimed(&reader, log.head_seq(), claimed)?;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            events = projections.head_seq,
            head_hash = %hex::encode(projections.head_hash),
            ?loaded,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ledger opened"
        );
        if let Some(stored) = projections.state.applications.stored() {
            decode_in_background(stored, &config.data_dir);
        }
        let (head, _) = watch::channel(projections.head_seq);
        let state = projections.state.clone();
        let shared = Arc::new(Shared {
            projections: RwLock::new(projections),
            head,
            reader,
            failure: Mutex::new(None),
            failed: watch::channel(false).0,
            signing_key,
            as_of_queries: tokio::sync::Semaphore::new(config.as_of_queries_max.max(1)),
            stats: WriterStats::default(),
            loaded,
            log_written: log.written_since_open(),
        });
        let (tx, rx) = mpsc::channel(config.queue_commands_max);
        let checkpoint_seq = match loaded {
            Loaded::FromCheckpoint { checkpoint_seq } => checkpoint_seq,
            Loaded::Replayed { .. } => 0,
        };
        let writer = writer::Writer::new(
            log,
            state,
            shared.clone(),
            writer::Limits {
                batch_commands_max: config.batch_commands_max,
                checkpoint_events_interval: config.checkpoint_events_interval,
            },
            checkpoint_seq,
            tx.downgrade(),
        )
        .map_err(LedgerError::Thread)?;
        let handle = std::thread::Builder::new()
            .name("fundledger-writer".into())
            .spawn(move || {
                // A panic in the writer is a broken invariant (a bug or a
                // corrupt log): stop the whole process rather than serve
                // from state that may be ahead of, or beside, the disk.
                let run = std::panic::AssertUnwindSafe(move || writer.run(rx));
                if std::panic::catch_unwind(run).is_err() {
                    eprintln!("fundledger: the writer panicked; stopping the process (the log on disk is intact)");
                    std::process::abort();
                }
            })
            .map_err(LedgerError::Thread)?;
        Ok(Ledger {
            shared,
            control: Arc::new(Control {
                queue: Mutex::new(Some(tx)),
                queue_places: Arc::new(tokio::sync::Semaphore::new(config.queue_commands_max)),
                writer: Mutex::new(Some(handle)),
                queue_commands_max: config.queue_commands_max,
            }),
        })
    }

    /// Queues a command and waits until it is durable (or refused).
    pub async fn submit(&self, request: CommandRequest) -> Result<CommandOutcome, CommandError> {
        let mut answers = self.submit_many(vec![request]).await?;
        answers.pop().expect("one answer per command")
    }

    /// Queues several commands at once (at most [`BATCH_COMMANDS_MAX`]) and
    /// waits until they are durable (or refused). They are decided in
    /// order, later ones seeing the effects of earlier ones, and committed
    /// in the same group commit; each is accepted or refused on its own
    /// (this is not a transaction). The outer error refuses them all: the
    /// queue has no room for every one of them, or the ledger is stopping.
    pub async fn submit_many(
        &self,
        requests: Vec<CommandRequest>,
    ) -> Result<Vec<Result<CommandOutcome, CommandError>>, CommandError> {
        if requests.len() > BATCH_COMMANDS_MAX {
            return Err(CommandError::BatchTooLarge { commands: requests.len() });
        }
        // An invalid request id is refused on its own, before the queue.
        let mut answers: Vec<Option<Result<CommandOutcome, CommandError>>> = Vec::with_capacity(requests.len());
        let mut valid = Vec::with_capacity(requests.len());
        for request in requests {
            let id = &request.request_id;
            if id.is_empty() || id.len() > REQUEST_ID_BYTES_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
                let request_id = id.chars().take(REQUEST_ID_BYTES_MAX).collect();
                answers.push(Some(Err(CommandError::InvalidRequestId { request_id })));
            } else {
                answers.push(None);
                valid.push(request);
            }
        }
        if valid.is_empty() {
            return Ok(answers.into_iter().flatten().collect());
        }
        let (reply, answer) = oneshot::channel();
        {
            let queue = self.control.queue.lock().expect("queue lock");
            let Some(queue) = queue.as_ref() else {
                return Err(CommandError::Unavailable("the ledger is shutting down".into()));
            };
            let places = u32::try_from(valid.len()).expect("bounded by BATCH_COMMANDS_MAX");
            let permit = self
                .control
                .queue_places
                .clone()
                .try_acquire_many_owned(places)
                .map_err(|_| CommandError::QueueFull { capacity: self.control.queue_commands_max })?;
            let submission = writer::Submission { requests: valid, reply, _places: permit };
            queue.try_send(writer::Message::Commands(submission)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    CommandError::QueueFull { capacity: self.control.queue_commands_max }
                }
                mpsc::error::TrySendError::Closed(_) => CommandError::Unavailable(self.failure_message()),
            })?;
        }
        let mut decided = answer.await.map_err(|_| CommandError::Unavailable(self.failure_message()))?.into_iter();
        Ok(answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| decided.next().expect("one answer per queued command")))
            .collect())
    }

    /// The writer's counters since the ledger was opened.
    pub fn writer_counters(&self) -> WriterCounters {
        let stats = &self.shared.stats;
        WriterCounters {
            batches: stats.batches.load(Ordering::Relaxed),
            commands: stats.commands.load(Ordering::Relaxed),
            events: stats.events.load(Ordering::Relaxed),
            overlapped: stats.overlapped.load(Ordering::Relaxed),
        }
    }

    /// Turns true once a storage failure has stopped the writer.
    pub fn watch_failure(&self) -> watch::Receiver<bool> {
        self.shared.failed.subscribe()
    }

    fn failure_message(&self) -> String {
        self.shared.failure.lock().expect("failure lock").clone().unwrap_or_else(|| "the writer has stopped".into())
    }

    /// The projections as of the durable head, as a copy of their own
    /// (cheap: it shares every application, see `domain::applications`;
    /// the fund's few partners, pots, rounds and principals are copied),
    /// for a query that reads much of the state: it holds no lock while it
    /// works, so the writer's publishing and other readers do not wait
    /// for it (after a start, such a query may first decode every
    /// application of the checkpoint).
    pub fn snapshot(&self) -> Projections {
        self.shared.projections.read().expect("projection lock").clone()
    }

    /// The projections as of the durable head. Hold the guard briefly.
    pub fn projections(&self) -> RwLockReadGuard<'_, Projections> {
        self.shared.projections.read().expect("projection lock")
    }

    /// The sequence number of the last durable event.
    pub fn head_seq(&self) -> u64 {
        *self.shared.head.borrow()
    }

    /// Notified whenever the durable head moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    /// Up to `limit` durable events from `from_seq` on.
    pub fn read_events(&self, from_seq: u64, limit: usize) -> Result<Vec<RecordedEvent>, LogError> {
        let head = self.head_seq();
        self.shared.reader.read(from_seq, head, limit)?.into_iter().map(|(e, p)| recorded(e, &p)).collect()
    }

    /// The durable events of one stream, oldest first (at most
    /// [`STREAM_HISTORY_EVENTS_MAX`]).
    pub fn stream_events(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, LogError> {
        let head = self.head_seq();
        let mut events = Vec::new();
        for seq in self.shared.reader.stream_seqs(&stream.to_string(), STREAM_HISTORY_EVENTS_MAX)? {
            if seq > head {
                break;
            }
            let (envelope, payload) = self
                .shared
                .reader
                .get(seq)?
                .ok_or_else(|| LogError::Corrupt { seq, problem: "indexed but missing".into() })?;
            events.push(recorded(envelope, &payload)?);
        }
        Ok(events)
    }

    /// The public half of the key that signs checkpoints.
    pub fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.shared.signing_key.verifying_key()
    }

    /// A signed checkpoint of the durable head: its sequence, hash and
    /// recording time, taken together from the projections. `None` while
    /// the log is empty.
    pub fn signed_checkpoint(&self) -> Option<SignedCheckpoint> {
        let checkpoint = {
            let projections = self.projections();
            Checkpoint {
                seq: projections.head_seq,
                head_hash: projections.head_hash,
                recorded_at_micros: projections.head_recorded_at_micros,
            }
        };
        (checkpoint.seq > 0).then(|| SignedCheckpoint::sign(checkpoint, &self.shared.signing_key))
    }

    /// A read-only handle on the log, for verification and replay.
    pub fn log_reader(&self) -> LogReader {
        self.shared.reader.clone()
    }

    /// How the projections were loaded when the ledger opened: from the
    /// checkpoint (which verified against the log), or replayed, and why.
    pub fn loaded(&self) -> Loaded {
        self.shared.loaded
    }

    /// Whether anything was written to the log's storage since the ledger
    /// opened (events, a change of its stored format, the removal of the
    /// checkpoint older versions kept in sled). Final once
    /// [`Ledger::shutdown`] has returned.
    pub fn log_written_since_open(&self) -> bool {
        self.shared.log_written.load(Ordering::Relaxed)
    }

    /// Stops taking commands, lets the writer answer and commit everything
    /// already queued, and waits for it.
    pub async fn shutdown(&self) {
        self.control.queue.lock().expect("queue lock").take();
        let handle = self.control.writer.lock().expect("writer lock").take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

fn recorded(envelope: Envelope, payload: &[u8]) -> Result<RecordedEvent, LogError> {
    let event = decode_event(&envelope, payload)?;
    Ok(RecordedEvent { envelope, event })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens with [`open_reading_checkpoint`], retrying while sled still
    /// holds the directory a moment after the last handle was dropped.
    fn open_again(dir: &std::path::Path) -> (EventLog, Option<Claimed>) {
        let started = std::time::Instant::now();
        loop {
            match open_reading_checkpoint(dir, StoreFormat::NEW) {
                (Ok(log), early) => return (log, early),
                (Err(LogError::InUse { .. }), _) if started.elapsed() < std::time::Duration::from_secs(10) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                (Err(error), _) => panic!("does not open: {error}"),
            }
        }
    }

    #[test]
    fn a_start_reads_the_checkpoint_file_early_only_for_a_ledger_it_may_open() {
        let dir = tempfile::tempdir().unwrap();
        // A new ledger: nothing to read.
        let (mut log, early) = open_reading_checkpoint(dir.path(), StoreFormat::NEW);
        assert!(early.is_none());
        let checkpoint = Projections::default();
        log.as_mut().unwrap().put_checkpoint(&checkpoint.checkpoint_bytes()).unwrap();

        // In use: refused, and nothing read.
        let (refused, early) = open_reading_checkpoint(dir.path(), StoreFormat::NEW);
        assert!(matches!(refused, Err(LogError::InUse { .. })), "{:?}", refused.err());
        assert!(early.is_none());
        drop(log);

        // Closed, with a checkpoint file: read while the log opened, as
        // claimed (the caller checks it against the log).
        let (log, early) = open_again(dir.path());
        assert_eq!(early, Some(Ok(checkpoint)));
        drop(log);

        // A damaged file is read too, and says why it cannot be used.
        std::fs::write(dir.path().join(crate::log::CHECKPOINT_FILE), b"damaged").unwrap();
        let (log, early) = open_again(dir.path());
        assert!(matches!(early, Some(Err(_))), "{early:?}");
        drop(log);

        // No file: nothing read early (`Projections::claim` also looks inside sled).
        std::fs::remove_file(dir.path().join(crate::log::CHECKPOINT_FILE)).unwrap();
        let (_log, early) = open_again(dir.path());
        assert!(early.is_none());
    }

    /// A checkpoint whose applications do not decode is moved aside (the
    /// next start finds none and replays), and the report says so.
    #[test]
    fn a_checkpoint_that_does_not_decode_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(crate::log::CHECKPOINT_FILE);
        std::fs::write(&file, b"the checkpoint").unwrap();
        let report = set_checkpoint_aside(dir.path(), "chunk 3: broken");
        assert!(!file.exists());
        let aside = dir.path().join("projections.checkpoint.undecodable");
        assert_eq!(std::fs::read(&aside).unwrap(), b"the checkpoint");
        assert_eq!(
            report,
            format!(
                "the checkpoint's applications do not decode (chunk 3: broken); the checkpoint moved to {}, so \
                 that the next start replays the log",
                aside.display()
            )
        );
        // Gone already: the report says to remove it.
        let report = set_checkpoint_aside(dir.path(), "chunk 3: broken");
        assert!(report.contains("could not be moved aside"), "{report}");
        assert!(report.contains(&format!("remove {}", file.display())), "{report}");
    }
}
