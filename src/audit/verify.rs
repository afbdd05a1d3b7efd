//! Verification of a ledger's whole history, offline or online.
//!
//! [`verify_log`] reads the log once in sequence order and checks, for
//! every event: it is stored under its own sequence number with no gap
//! before it, it decodes, it links to the previous event's hash and its
//! hash covers its contents, its stream version follows the previous one,
//! its payload decodes and is of the type and stream its envelope says,
//! and folding it into the projections (the same fold the ledger runs)
//! accepts it. At the stored projection checkpoint's sequence the replay
//! must reproduce those projections byte for byte (`Projections::encoded`),
//! and at a signed checkpoint's sequence the event must still have the
//! signed hash. Then it checks the other stored entries against the events:
//! every idempotency entry claims events that carry its request id, and
//! together they cover every event once; every stream index entry names the
//! event at that version of that stream, with none missing; every stream
//! head is the stream's last version. A log of stored format v3 keeps no
//! such entries (its indexes are built from the events): there the walk
//! checks that every record carries its command's fingerprint, that a
//! command's events all carry the same one, and that no request id names
//! two commands.
//!
//! It reports the **first** broken event: the lowest sequence number at
//! which any check fails. A history rewritten consistently (every hash
//! recomputed from some event on) passes the chain checks by construction;
//! it is caught where a record of the old history remains: the stored
//! projection checkpoint (which the rewriter may also have replaced) and,
//! above all, a signed checkpoint kept outside the ledger. Those name the
//! checkpoint's sequence: the rewrite happened there or before.
//!
//! [`verify_data_dir`] runs it on a stopped ledger, **without modifying the
//! data directory**: sled 0.34 has no read-only mode and writes to its
//! files whenever it opens them, so it copies the directory to a temporary
//! one (without the secret signing key) and opens the copy. It refuses a
//! directory that holds no ledger or that a running server has open.
//! [`verify_ledger`] runs it on a running ledger, reading the durable log up
//! to the current durable head while the writer goes on: call it from a
//! blocking thread.

use super::checkpoint::{format_micros, SignedCheckpoint};
use super::key::{self, KeyError};
use crate::ledger::Ledger;
use crate::log::{ChainBreak, Envelope, EventLog, Hash, LogError, LogReader, StoreFormat, WalkError, GENESIS_HASH};
use crate::projections::{decode_event, Projections};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Events between two progress updates.
const PROGRESS_EVENTS_STEP: u64 = 1024;
/// How long offline verification waits for sled's lock on a ledger that
/// was just closed before concluding that a server has it open.
const LOCK_WAIT_MAX: Duration = Duration::from_secs(2);
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(50);
/// Events read per step when checking an idempotency entry's events.
const REQUEST_READ_EVENTS_MAX: usize = 4096;

/// What to verify, taken from the ledger before the walk starts.
#[derive(Clone, Debug)]
pub struct Target {
    /// Verify events 1 to `head_seq`.
    pub head_seq: u64,
    /// True for a stopped ledger: the log must end at `head_seq` and every
    /// stored entry must be accounted for. False for a running one: entries
    /// that the writer added after `head_seq` are not looked at.
    pub complete: bool,
    /// The stored projection checkpoint (`Projections::checkpoint_bytes`).
    pub stored_projections: Option<Vec<u8>>,
    /// A running ledger's projections (`Projections::encoded`) at `head_seq`.
    pub live_projections: Option<Vec<u8>>,
}

impl Target {
    /// A stopped ledger: everything stored, up to its last event.
    pub fn stopped(reader: &LogReader) -> Result<Target, LogError> {
        Ok(Target {
            head_seq: reader.last_seq()?,
            complete: true,
            stored_projections: reader.checkpoint()?,
            live_projections: None,
        })
    }
}

/// A signed checkpoint to check, and the keys to check its signer against.
#[derive(Clone, Debug)]
pub struct CheckpointClaim {
    pub checkpoint: SignedCheckpoint,
    /// The ledger's own public key, when known: the checkpoint must be
    /// signed by it. Proves the checkpoint came from this ledger, as far as
    /// the key files in its data directory can be trusted.
    pub ledger_key: Option<VerifyingKey>,
    /// A key the auditor trusts independently (published by the fund, or
    /// noted when the first checkpoint was taken): the checkpoint must be
    /// signed by it. The strongest check: it does not rely on the operator.
    pub trusted_key: Option<VerifyingKey>,
}

/// How the signed checkpoint was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointVerified {
    pub seq: u64,
    pub head_hash: Hash,
    pub public_key: String,
    /// Whether the ledger's own key was known (and so matched).
    pub ledger_key_checked: bool,
    /// Whether a trusted key was given (and so matched).
    pub trusted_key_checked: bool,
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Events that passed every check, from event 1 on.
    pub events: u64,
    /// Streams among those events.
    pub streams: u64,
    /// Idempotency entries checked (stored format v3: commands among the
    /// events that passed).
    pub requests: u64,
    /// The last event that passed: its sequence, hash and recording time.
    pub head_seq: u64,
    pub head_hash: Hash,
    pub head_recorded_at_micros: i64,
    /// The sequence of the stored projection checkpoint that the replay
    /// reproduced, if there was one.
    pub projections_checked_at: Option<u64>,
    /// Whether the replay was compared with a running ledger's projections.
    pub live_projections_checked: bool,
    /// The signed checkpoint, when one was given and held.
    pub checkpoint: Option<CheckpointVerified>,
    /// The first broken event, or `None` when everything verified.
    pub broken: Option<Broken>,
    pub elapsed: Duration,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.broken.is_none()
    }
}

/// The first thing found broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The event concerned; `None` for a problem that is not one event's
    /// (a checkpoint's signature, a malformed entry).
    pub seq: Option<u64>,
    /// The event's stream, when known.
    pub stream: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.seq, &self.stream) {
            (Some(seq), Some(stream)) => write!(f, "event {seq} ({stream}): {}", self.problem),
            (Some(seq), None) => write!(f, "event {seq}: {}", self.problem),
            _ => write!(f, "{}", self.problem),
        }
    }
}

/// Everything verification can find wrong, with the figures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Chain(ChainBreak),
    #[error("missing: the log ends at event {last}, but the ledger's durable head is event {head}")]
    EndsEarly { last: u64, head: u64 },
    #[error("its payload does not match its envelope: {0}")]
    Payload(String),
    #[error("it contradicts the history before it (replaying it fails: {0})")]
    ContradictsState(String),
    #[error("the stored projection checkpoint cannot be read: {0}")]
    ProjectionsUnreadable(&'static str),
    #[error(
        "the stored projections were taken at this event when its hash was {}, but the log has {}: \
         the history up to here was rewritten",
        hex::encode(recorded),
        hex::encode(found)
    )]
    ProjectionsRewritten { recorded: Hash, found: Hash },
    #[error("missing: the stored projections were taken at event {checkpoint_seq}, but the log ends at event {last}")]
    ProjectionsBeyondLog { checkpoint_seq: u64, last: u64 },
    #[error("replaying events 1 to {seq} does not reproduce the projections stored at this event")]
    ProjectionsDiffer { seq: u64 },
    #[error("replaying events 1 to {seq} does not reproduce the running ledger's projections")]
    LiveProjectionsDiffer { seq: u64 },
    #[error(
        "the signed checkpoint says this event's hash is {}, but the log has {}: \
         the history up to here was rewritten after the checkpoint was signed",
        hex::encode(signed),
        hex::encode(found)
    )]
    CheckpointRewritten { signed: Hash, found: Hash },
    #[error("the signed checkpoint says this event was recorded at {}, but the log says {}", format_micros(*signed), format_micros(*found))]
    CheckpointTime { signed: i64, found: i64 },
    #[error("missing: the signed checkpoint vouches for {checkpoint_seq} events, but the log ends at event {last}")]
    CheckpointBeyondLog { checkpoint_seq: u64, last: u64 },
    #[error(
        "the checkpoint's signature does not verify under the key it names ({public_key}): \
         it was altered after signing, or was not signed by that key"
    )]
    CheckpointSignature { public_key: String },
    #[error(
        "the checkpoint is signed by key {checkpoint_key}, but this ledger's key is {ledger_key}: \
         it was not signed by this ledger, or the ledger's key was replaced"
    )]
    CheckpointForeignKey { checkpoint_key: String, ledger_key: String },
    #[error("the checkpoint is signed by key {checkpoint_key}, not by the key you trust ({trusted_key})")]
    CheckpointUntrustedKey { checkpoint_key: String, trusted_key: String },
    #[error(
        "missing: the idempotency entry of request {request_id:?} claims events {first_seq} to {last_seq}, \
         but the log ends at event {last}"
    )]
    RequestBeyondLog { request_id: String, first_seq: u64, last_seq: u64, last: u64 },
    #[error("the idempotency entry of request {request_id:?} claims this event, which carries request {carried:?}")]
    RequestMismatch { request_id: String, carried: String },
    #[error("it carries request {request_id:?}, which has no idempotency entry")]
    EventWithoutRequest { request_id: String },
    #[error("it carries request {request_id:?}, whose idempotency entry claims events {first_seq} to {last_seq}")]
    EventOutsideRequest { request_id: String, first_seq: u64, last_seq: u64 },
    #[error(
        "the stream index says version {version} of {stream} is event {points_at}, \
         which is version {found_version} of {found_stream}"
    )]
    IndexWrong { stream: String, version: u64, points_at: u64, found_stream: String, found_version: u64 },
    #[error("the stream index has no entry for version {version} of {stream}")]
    IndexMissing { stream: String, version: u64 },
    #[error(
        "the stream index says version {version} of {stream} is event {points_at}, but the log ends at event {last}"
    )]
    IndexBeyondLog { stream: String, version: u64, points_at: u64, last: u64 },
    #[error("stored entry {key} is malformed: {problem}")]
    MalformedEntry { key: String, problem: String },
    #[error(
        "it carries no request fingerprint (record format 1), but the log is of stored format v3 or v4, which keeps \
         each command's fingerprint in its records"
    )]
    FingerprintMissing,
    #[error("it carries another request fingerprint than the event before it, of the same request {request_id:?}")]
    FingerprintDiffers { request_id: String },
    #[error(
        "it carries request {request_id:?}, which event {first_seq} already began: a request id names one command"
    )]
    RequestRepeated { request_id: String, first_seq: u64 },
    #[error(
        "the log's index (the running ledger's, or log.index, which a start would use) {what}: remove log.index \
         from a stopped ledger to have it rebuilt from the log"
    )]
    LogIndexWrong { what: String },
}

impl Problem {
    /// A stable, machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            Problem::Chain(ChainBreak::Missing { .. }) => "event_missing",
            Problem::Chain(ChainBreak::Misplaced { .. }) => "event_misplaced",
            Problem::Chain(ChainBreak::Undecodable(_)) => "event_undecodable",
            Problem::Chain(ChainBreak::BrokenLink { .. }) => "broken_link",
            Problem::Chain(ChainBreak::HashMismatch { .. }) => "hash_mismatch",
            Problem::Chain(ChainBreak::StreamVersion { .. }) => "stream_version",
            Problem::EndsEarly { .. } => "log_ends_early",
            Problem::Payload(_) => "payload_mismatch",
            Problem::ContradictsState(_) => "contradicts_state",
            Problem::ProjectionsUnreadable(_) => "projections_unreadable",
            Problem::ProjectionsRewritten { .. } => "projections_rewritten",
            Problem::ProjectionsBeyondLog { .. } => "projections_beyond_log",
            Problem::ProjectionsDiffer { .. } => "projections_differ",
            Problem::LiveProjectionsDiffer { .. } => "live_projections_differ",
            Problem::CheckpointRewritten { .. } => "checkpoint_rewritten",
            Problem::CheckpointTime { .. } => "checkpoint_time",
            Problem::CheckpointBeyondLog { .. } => "checkpoint_beyond_log",
            Problem::CheckpointSignature { .. } => "checkpoint_signature",
            Problem::CheckpointForeignKey { .. } => "checkpoint_foreign_key",
            Problem::CheckpointUntrustedKey { .. } => "checkpoint_untrusted_key",
            Problem::RequestBeyondLog { .. } => "request_beyond_log",
            Problem::RequestMismatch { .. } => "request_mismatch",
            Problem::EventWithoutRequest { .. } => "event_without_request",
            Problem::EventOutsideRequest { .. } => "event_outside_request",
            Problem::IndexWrong { .. } => "index_wrong",
            Problem::IndexMissing { .. } => "index_missing",
            Problem::IndexBeyondLog { .. } => "index_beyond_log",
            Problem::MalformedEntry { .. } => "malformed_entry",
            Problem::FingerprintMissing => "fingerprint_missing",
            Problem::FingerprintDiffers { .. } => "fingerprint_differs",
            Problem::LogIndexWrong { .. } => "log_index_wrong",
            Problem::RequestRepeated { .. } => "request_repeated",
        }
    }
}

/// Told how far a long verification has come; the CLI draws a bar.
pub trait Progress {
    /// A new phase starts, of `total` steps.
    fn phase(&self, _name: &'static str, _total: u64) {}
    /// `steps` more are done.
    fn advance(&self, _steps: u64) {}
}

/// No progress reports.
pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{} holds no fundledger ledger: {reason}", dir.display())]
    NotALedger { dir: PathBuf, reason: String },
    #[error(
        "the ledger in {} is open (a server is running on it): stop it first, verify a copy, \
         or verify it online (`fundledger verify --server URL`)",
        dir.display()
    )]
    InUse { dir: PathBuf },
    #[error("cannot copy {} to a temporary directory for verification: {source}", path.display())]
    Copy { path: PathBuf, source: std::io::Error },
    #[error("cannot read the ledger's public key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Verifies a stopped ledger in `dir` without modifying it. `claim`'s
/// `ledger_key` is filled from `dir/signing-key.pub` when that exists.
pub fn verify_data_dir(
    dir: &Path,
    claim: Option<CheckpointClaim>,
    progress: &dyn Progress,
) -> Result<Report, VerifyError> {
    let not_a_ledger = |reason: &str| VerifyError::NotALedger { dir: dir.to_owned(), reason: reason.to_owned() };
    EventLog::check_present(dir).map_err(|error| match error {
        LogError::NoLedger { reason, .. } => not_a_ledger(&format!("it {reason}")),
        other => VerifyError::Log(other),
    })?;
    let db = dir.join("db");
    // sled holds an exclusive lock on `db` while a ledger is open; a shared
    // lock, held while copying, refuses a running server and keeps one from
    // starting half-way through the copy. Locking writes nothing.
    let lock = std::fs::File::open(&db).map_err(|source| VerifyError::Copy { path: db.clone(), source })?;
    lock_shared(&lock).map_err(|_| VerifyError::InUse { dir: dir.to_owned() })?;
    let ledger_key = key::read_public(dir)?;
    let copy = tempfile::Builder::new()
        .prefix("fundledger-verify-")
        .tempdir()
        .map_err(|source| VerifyError::Copy { path: std::env::temp_dir(), source })?;
    copy_ledger(dir, copy.path())?;
    drop(lock);

    let reader = LogReader::open_existing(copy.path()).map_err(|error| match error {
        LogError::ForeignStore { found, .. } => not_a_ledger(&format!("it holds {found}")),
        // The copy was opened; the user gave `dir`.
        other => VerifyError::Log(other.naming(dir)),
    })?;
    let target = Target::stopped(&reader)?;
    let claim = claim.map(|claim| CheckpointClaim { ledger_key: claim.ledger_key.or(ledger_key), ..claim });
    Ok(verify_log(&reader, target, claim.as_ref(), progress)?)
}

/// Takes a shared lock on sled's `db` file, waiting a little: sled lets go
/// of its exclusive lock only when the last of its I/O threads drops the
/// file, shortly after the ledger closed (in this process or another).
fn lock_shared(file: &std::fs::File) -> std::io::Result<()> {
    let started = Instant::now();
    loop {
        match fs2::FileExt::try_lock_shared(file) {
            Ok(()) => return Ok(()),
            Err(error) if started.elapsed() >= LOCK_WAIT_MAX => return Err(error),
            Err(_) => std::thread::sleep(LOCK_RETRY_INTERVAL),
        }
    }
}

/// Verifies a running ledger up to its current durable head, while the
/// writer goes on. Blocking: run it on a blocking thread.
pub fn verify_ledger(ledger: &Ledger, claim: Option<&CheckpointClaim>) -> Result<Report, LogError> {
    let reader = ledger.log_reader();
    // The writer stores a projection checkpoint only after the projections
    // moved past it, so reading the checkpoint first and the projections
    // second always gives a checkpoint at or before the head.
    let stored_projections = reader.checkpoint()?;
    // Encoded from a copy: encoding every application (decoding them first
    // after a start) must not hold the lock the writer publishes under.
    let projections = ledger.snapshot();
    let (live, head_seq) = (projections.encoded(), projections.head_seq);
    drop(projections);
    let target = Target { head_seq, complete: false, stored_projections, live_projections: Some(live) };
    verify_log(&reader, target, claim, &NoProgress)
}

/// Copies sled's files from `from` to `to`, leaving out the secret signing
/// key (which verification never needs) and half-written key files.
fn copy_ledger(from: &Path, to: &Path) -> Result<(), VerifyError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| VerifyError::Copy { path, source }
    };
    for entry in std::fs::read_dir(from).map_err(failed(from))? {
        let entry = entry.map_err(failed(from))?;
        let name = entry.file_name();
        if name == key::SECRET_KEY_FILE || name.to_string_lossy().ends_with(".new") {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        let kind = entry.file_type().map_err(failed(&source))?;
        if kind.is_dir() {
            std::fs::create_dir(&target).map_err(failed(&target))?;
            copy_ledger(&source, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).map_err(failed(&source))?;
        } else {
            let error = std::io::Error::other("not a regular file or directory; a ledger holds none");
            return Err(VerifyError::Copy { path: source, source: error });
        }
    }
    Ok(())
}

/// The core: walks and checks `target` in `reader` (see the module doc).
/// `Err` only when the storage cannot be read; whatever is wrong with the
/// data is in [`Report::broken`].
pub fn verify_log(
    reader: &LogReader,
    target: Target,
    claim: Option<&CheckpointClaim>,
    progress: &dyn Progress,
) -> Result<Report, LogError> {
    let started = Instant::now();
    let mut run = Run::new(reader, progress);
    let report = run.check(&target, claim);
    let mut report = report?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One verification's state.
struct Run<'a> {
    reader: &'a LogReader,
    progress: &'a dyn Progress,
    replay: Projections,
    /// The last event that passed every check: sequence, hash, recording
    /// time. The replay may be one event further, at a broken one.
    passed: (u64, Hash, i64),
    /// Per stream, over the events that passed every check: its last
    /// version, that event's sequence, and its first event's sequence.
    streams: HashMap<String, (u64, u64, u64)>,
    /// Per (stream, version): its sequence number; built only when an index
    /// problem has to be placed.
    locator: Option<HashMap<(String, u64), u64>>,
    /// Stored format v3: the commands among the events that passed.
    commands: Commands,
    /// Stored format v3: the index a start would use, if any.
    index: Option<IndexCheck>,
}

/// The commands a v3 log's walk has met: each request id's first event, by
/// the digest of the id (a second id with the same digest is told apart by
/// reading the first one's record). About 20 bytes per command.
#[derive(Default)]
struct Commands {
    first_seqs: HashMap<u64, u64>,
    /// First seqs of commands whose id's digest another id had already.
    collided: HashMap<u64, Vec<u64>>,
    /// The last event's request id and fingerprint.
    last: Option<(String, Option<Hash>)>,
    /// The first events of the commands met: their count, and the last
    /// one's seq.
    count: u64,
    last_first_seq: u64,
}

impl Commands {
    /// Takes the next event that passed the chain checks, or says what is
    /// wrong with it. Answers whether it begins a command.
    fn check(&mut self, reader: &LogReader, envelope: &Envelope) -> Result<Result<bool, Problem>, LogError> {
        if envelope.fingerprint.is_none() {
            return Ok(Err(Problem::FingerprintMissing));
        }
        if let Some((request_id, fingerprint)) = &self.last {
            if *request_id == envelope.request_id {
                if *fingerprint != envelope.fingerprint {
                    return Ok(Err(Problem::FingerprintDiffers { request_id: request_id.clone() }));
                }
                return Ok(Ok(false));
            }
        }
        let digest = crate::log::request_digest(&envelope.request_id);
        let earlier = self.first_seqs.get(&digest).into_iter().chain(self.collided.get(&digest).into_iter().flatten());
        for &first_seq in earlier {
            let (earlier, _) = reader
                .get(first_seq)?
                .ok_or_else(|| LogError::Corrupt { seq: first_seq, problem: "missing from the log".into() })?;
            if earlier.request_id == envelope.request_id {
                return Ok(Err(Problem::RequestRepeated { request_id: earlier.request_id, first_seq }));
            }
        }
        match self.first_seqs.entry(digest) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.entry(digest).or_default().push(envelope.seq)
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(envelope.seq);
            }
        }
        self.last = Some((envelope.request_id.clone(), envelope.fingerprint));
        self.count += 1;
        self.last_first_seq = envelope.seq;
        Ok(Ok(true))
    }

    /// Commands whose first event is at or before `seq`.
    fn up_to(&self, seq: u64) -> u64 {
        self.count - u64::from(self.last_first_seq > seq)
    }
}

/// A v3 log's index (the one a start would use) against the events: each
/// event is in its stream at its version, each command's first event is a
/// candidate of its request id, and (after the walk) the index holds no
/// more commands and streams than the events up to its head.
struct IndexCheck {
    index: crate::log::LogIndex,
    /// Streams whose first event is at or before the index's head.
    streams: u64,
    /// Commands whose first event is at or before the index's head.
    commands: u64,
}

impl IndexCheck {
    fn event(&mut self, envelope: &Envelope, begins_command: bool) -> Result<(), Problem> {
        if envelope.seq > self.index.head_seq() {
            return Ok(());
        }
        let wrong = |what| Err(Problem::LogIndexWrong { what });
        let at = self.index.stream_entries(&envelope.stream, envelope.stream_version, 1);
        if at.first() != Some(&(envelope.stream_version, envelope.seq)) {
            let found = at.first().map_or("nothing".to_owned(), |(_, seq)| format!("event {seq}"));
            return wrong(format!(
                "has {found} as version {} of {}, not this event",
                envelope.stream_version, envelope.stream
            ));
        }
        self.streams += u64::from(envelope.stream_version == 1);
        if begins_command {
            self.commands += 1;
            if !self.index.request_candidates(&envelope.request_id).contains(&envelope.seq) {
                return wrong(format!("does not find request {:?}, which this event begins", envelope.request_id));
            }
        }
        Ok(())
    }

    /// After a clean walk of at least the index's head.
    fn totals(&self) -> Result<(), Problem> {
        let (commands, streams) = (self.index.commands() as u64, self.index.streams() as u64);
        if (commands, streams) != (self.commands, self.streams) {
            return Err(Problem::LogIndexWrong {
                what: format!(
                    "holds {commands} commands and {streams} streams, but events 1 to {} hold {} and {}",
                    self.index.head_seq(),
                    self.commands,
                    self.streams
                ),
            });
        }
        Ok(())
    }
}

/// A problem at an event, for picking the first one.
struct Finding {
    seq: Option<u64>,
    stream: Option<String>,
    problem: Problem,
}

impl Finding {
    fn at(envelope: &Envelope, problem: Problem) -> Finding {
        Finding { seq: Some(envelope.seq), stream: Some(envelope.stream.clone()), problem }
    }
    fn rank(&self) -> u64 {
        self.seq.unwrap_or(u64::MAX)
    }
}

/// Keeps the finding at the lowest sequence; the earlier one on a tie.
fn keep_first(first: &mut Option<Finding>, found: Finding) {
    if first.as_ref().is_none_or(|f| found.rank() < f.rank()) {
        *first = Some(found);
    }
}

impl<'a> Run<'a> {
    fn new(reader: &'a LogReader, progress: &'a dyn Progress) -> Run<'a> {
        Run {
            reader,
            progress,
            replay: Projections::default(),
            passed: (0, GENESIS_HASH, 0),
            streams: HashMap::new(),
            locator: None,
            commands: Commands::default(),
            index: None,
        }
    }

    fn check(&mut self, target: &Target, claim: Option<&CheckpointClaim>) -> Result<Report, LogError> {
        let mut report = Report {
            events: 0,
            streams: 0,
            requests: 0,
            head_seq: 0,
            head_hash: GENESIS_HASH,
            head_recorded_at_micros: 0,
            projections_checked_at: None,
            live_projections_checked: false,
            checkpoint: None,
            broken: None,
            elapsed: Duration::ZERO,
        };
        let broken = |finding: Finding| Broken { seq: finding.seq, stream: finding.stream, problem: finding.problem };
        let unplaced = |problem| Some(Broken { seq: None, stream: None, problem });

        let checkpoint = match claim.map(check_signature).transpose() {
            Ok(checkpoint) => checkpoint,
            Err(problem) => {
                report.broken = unplaced(problem);
                return Ok(report);
            }
        };
        let stored = match target.stored_projections.as_deref().map(Projections::decode_checkpoint).transpose() {
            Ok(stored) => stored,
            // An earlier release's checkpoint: the ledger never loads it (it
            // replays, then writes its own), so there is nothing to check.
            Err(crate::projections::CHECKPOINT_OLDER_FORMAT) => None,
            Err(reason) => {
                report.broken = unplaced(Problem::ProjectionsUnreadable(reason));
                return Ok(report);
            }
        };
        if let Some(stored) = stored.as_ref().filter(|s| s.head_seq == 0) {
            // Taken before the first event: it must be the empty state.
            if stored.head_hash != GENESIS_HASH || stored.encoded() != Projections::default().encoded() {
                report.broken = unplaced(Problem::ProjectionsDiffer { seq: 0 });
                return Ok(report);
            }
            report.projections_checked_at = Some(0);
        }

        self.index = self.reader.index_to_check()?.map(|index| IndexCheck { index, streams: 0, commands: 0 });
        let mut first = self.walk(target, stored.as_ref(), checkpoint.as_ref().map(|c| c.checkpoint))?;
        let walk_clean = first.is_none();
        // The other entries are checked against the events that passed;
        // only a clean walk of a stopped ledger must account for all of them.
        let limit = self.passed.0;
        let complete = target.complete && walk_clean;
        if walk_clean {
            first = self.after_walk(target, stored.as_ref(), checkpoint.as_ref().map(|c| c.checkpoint.seq));
        }
        let requests = match self.reader.format() {
            // The walk checked the commands and the index against the
            // events; there are no stored entries.
            StoreFormat::V3 | StoreFormat::V4 => {
                let index = self.index.as_ref().filter(|index| walk_clean && index.index.head_seq() <= limit);
                if let Some(Err(problem)) = index.map(IndexCheck::totals) {
                    keep_first(&mut first, Finding { seq: None, stream: None, problem });
                }
                self.commands.up_to(self.passed.0)
            }
            StoreFormat::V2 => {
                self.progress.phase("stream index", limit);
                if let Some(found) = self.check_index(limit, complete)? {
                    keep_first(&mut first, found);
                }
                self.progress.phase("requests", limit);
                let (requests, found) = self.check_requests(limit, complete, walk_clean)?;
                if let Some(found) = found {
                    keep_first(&mut first, found);
                }
                requests
            }
        };

        // Events from the first broken one on do not count as verified, even
        // when the walk passed them and another entry gave them away.
        if let Some(seq) = first.as_ref().and_then(|f| f.seq).filter(|&seq| seq <= self.passed.0) {
            self.passed = match seq - 1 {
                0 => (0, GENESIS_HASH, 0),
                before => reader_head(self.reader, before)?,
            };
        }
        (report.head_seq, report.head_hash, report.head_recorded_at_micros) = self.passed;
        report.events = self.passed.0;
        report.streams = self.streams.values().filter(|&&(_, _, first)| first <= self.passed.0).count() as u64;
        report.requests = requests;
        let verified_to = self.passed.0;
        report.projections_checked_at =
            report.projections_checked_at.or(stored.map(|s| s.head_seq).filter(|&seq| seq > 0 && seq <= verified_to));
        report.live_projections_checked = target.live_projections.is_some() && first.is_none();
        report.checkpoint = checkpoint.filter(|c| c.checkpoint.seq <= verified_to).map(|c| c.verified);
        report.broken = first.map(broken);
        Ok(report)
    }

    /// The walk over the events, with the replay and the checkpoints.
    fn walk(
        &mut self,
        target: &Target,
        stored: Option<&Projections>,
        signed: Option<super::checkpoint::Checkpoint>,
    ) -> Result<Option<Finding>, LogError> {
        self.progress.phase("events", target.head_seq);
        let mut walk = self.reader.walk(target.head_seq);
        for item in &mut walk {
            let (envelope, payload) = match item {
                Ok(event) => event,
                Err(WalkError::Broken(b)) => {
                    return Ok(Some(Finding { seq: Some(b.seq), stream: b.stream, problem: Problem::Chain(b.problem) }))
                }
                Err(WalkError::Storage(error)) => return Err(LogError::Storage(error)),
            };
            if self.reader.format().indexes_in_memory() {
                let begins_command = match self.commands.check(self.reader, &envelope)? {
                    Ok(begins) => begins,
                    Err(problem) => return Ok(Some(Finding::at(&envelope, problem))),
                };
                if let Some(Err(problem)) = self.index.as_mut().map(|index| index.event(&envelope, begins_command)) {
                    return Ok(Some(Finding::at(&envelope, problem)));
                }
            }
            if let Err(problem) = fold(&mut self.replay, &envelope, &payload) {
                return Ok(Some(Finding::at(&envelope, problem)));
            }
            if let Some(stored) = stored.filter(|s| s.head_seq == envelope.seq) {
                if stored.head_hash != envelope.hash {
                    let problem = Problem::ProjectionsRewritten { recorded: stored.head_hash, found: envelope.hash };
                    return Ok(Some(Finding::at(&envelope, problem)));
                }
                if stored.encoded() != self.replay.encoded()
                    || stored.head_recorded_at_micros != self.replay.head_recorded_at_micros
                {
                    return Ok(Some(Finding::at(&envelope, Problem::ProjectionsDiffer { seq: envelope.seq })));
                }
            }
            if let Some(signed) = signed.filter(|s| s.seq == envelope.seq) {
                if signed.head_hash != envelope.hash {
                    let problem = Problem::CheckpointRewritten { signed: signed.head_hash, found: envelope.hash };
                    return Ok(Some(Finding::at(&envelope, problem)));
                }
                if signed.recorded_at_micros != envelope.recorded_at_micros {
                    let problem = Problem::CheckpointTime {
                        signed: signed.recorded_at_micros,
                        found: envelope.recorded_at_micros,
                    };
                    return Ok(Some(Finding::at(&envelope, problem)));
                }
            }
            // Only an event that passed everything counts.
            self.passed = (envelope.seq, envelope.hash, envelope.recorded_at_micros);
            let first_seq = self.streams.get(&envelope.stream).map_or(envelope.seq, |&(_, _, first)| first);
            self.streams.insert(envelope.stream, (envelope.stream_version, envelope.seq, first_seq));
            if envelope.seq % PROGRESS_EVENTS_STEP == 0 {
                self.progress.advance(PROGRESS_EVENTS_STEP);
            }
        }
        self.progress.advance(self.passed.0 % PROGRESS_EVENTS_STEP);
        Ok(None)
    }

    /// What a clean walk still has to hold: it reached the head, and the
    /// checkpoints do not vouch for more events than there are.
    fn after_walk(&self, target: &Target, stored: Option<&Projections>, signed_seq: Option<u64>) -> Option<Finding> {
        let last = self.passed.0;
        let missing = |problem| Some(Finding { seq: Some(last + 1), stream: None, problem });
        if last < target.head_seq {
            return missing(Problem::EndsEarly { last, head: target.head_seq });
        }
        if let Some(checkpoint_seq) = stored.map(|s| s.head_seq).filter(|&seq| seq > last) {
            return missing(Problem::ProjectionsBeyondLog { checkpoint_seq, last });
        }
        if let Some(checkpoint_seq) = signed_seq.filter(|&seq| seq > last) {
            return missing(Problem::CheckpointBeyondLog { checkpoint_seq, last });
        }
        if let Some(live) = &target.live_projections {
            if *live != self.replay.encoded() {
                return Some(Finding {
                    seq: Some(last),
                    stream: None,
                    problem: Problem::LiveProjectionsDiffer { seq: last },
                });
            }
        }
        None
    }

    /// The stream index against the events up to `limit`. (A stream's
    /// version is its last index entry: stored format v2 keeps no separate
    /// head.)
    fn check_index(&mut self, limit: u64, complete: bool) -> Result<Option<Finding>, LogError> {
        let reader = self.reader;
        let mut first = None;
        let malformed =
            |key, problem| Finding { seq: None, stream: None, problem: Problem::MalformedEntry { key, problem } };
        let mut indexed: HashMap<String, u64> = HashMap::new();
        for entry in reader.stream_index() {
            let (stream, version, points_at) = match entry {
                Ok(entry) => entry,
                Err(LogError::MalformedEntry { key, problem }) => {
                    keep_first(&mut first, malformed(key, problem));
                    continue;
                }
                Err(error) => return Err(error),
            };
            if points_at > limit {
                if complete {
                    let problem = Problem::IndexBeyondLog { stream: stream.clone(), version, points_at, last: limit };
                    let seq = self.locate(&stream, version, limit)?.unwrap_or(points_at);
                    keep_first(&mut first, Finding { seq: Some(seq), stream: Some(stream), problem });
                }
                continue;
            }
            let count = indexed.entry(stream.clone()).or_insert(0);
            *count += 1;
            if version != *count {
                // Entries come in version order: the versions skipped have none.
                let missing = *count;
                *count = version;
                let seq = self.locate(&stream, missing, limit)?;
                let problem = Problem::IndexMissing { stream: stream.clone(), version: missing };
                keep_first(&mut first, Finding { seq, stream: Some(stream.clone()), problem });
            }
            // At or below the limit every event exists: the walk passed it.
            if let Some((envelope, _)) = reader.get(points_at)? {
                if envelope.stream != stream || envelope.stream_version != version {
                    let seq = self.locate(&stream, version, limit)?.map_or(points_at, |seq| seq.min(points_at));
                    let problem = Problem::IndexWrong {
                        stream: stream.clone(),
                        version,
                        points_at,
                        found_stream: envelope.stream,
                        found_version: envelope.stream_version,
                    };
                    keep_first(&mut first, Finding { seq: Some(seq), stream: Some(stream), problem });
                }
            }
            self.progress.advance(1);
        }
        let streams: Vec<(String, u64, u64)> =
            self.streams.iter().map(|(s, &(v, seq, _))| (s.clone(), v, seq)).collect();
        for (stream, version, last_seq) in &streams {
            let count = indexed.get(stream).copied().unwrap_or(0);
            if count < *version {
                let seq = self.locate(stream, count + 1, limit)?.unwrap_or(*last_seq);
                let problem = Problem::IndexMissing { stream: stream.clone(), version: count + 1 };
                keep_first(&mut first, Finding { seq: Some(seq), stream: Some(stream.clone()), problem });
            }
        }

        Ok(first)
    }

    /// The idempotency entries against the events up to `limit`. Returns
    /// how many were checked.
    fn check_requests(
        &mut self,
        limit: u64,
        complete: bool,
        walk_clean: bool,
    ) -> Result<(u64, Option<Finding>), LogError> {
        let mut first = None;
        let mut checked = 0;
        let mut covered = 0u64;
        for item in self.reader.requests() {
            let (request_id, record) = match item {
                Ok(item) => item,
                Err(LogError::MalformedEntry { key, problem }) => {
                    keep_first(
                        &mut first,
                        Finding { seq: None, stream: None, problem: Problem::MalformedEntry { key, problem } },
                    );
                    continue;
                }
                Err(error) => return Err(error),
            };
            let first_seq = record.first_seq;
            let Some(last_seq) = first_seq.checked_add(u64::from(record.count)).and_then(|end| end.checked_sub(1))
            else {
                let problem = format!("it claims {} events from event {first_seq}", record.count);
                let problem = Problem::MalformedEntry { key: format!("r{request_id}"), problem };
                keep_first(&mut first, Finding { seq: None, stream: None, problem });
                continue;
            };
            if record.count == 0 || first_seq == 0 {
                let problem = format!("it claims {} events from event {first_seq}", record.count);
                let problem = Problem::MalformedEntry { key: format!("r{request_id}"), problem };
                keep_first(&mut first, Finding { seq: None, stream: None, problem });
                continue;
            }
            if last_seq > limit {
                if complete {
                    let problem = Problem::RequestBeyondLog { request_id, first_seq, last_seq, last: limit };
                    keep_first(&mut first, Finding { seq: Some(first_seq.max(limit + 1)), stream: None, problem });
                    continue;
                }
                if first_seq > limit {
                    continue; // Written after the head this run verifies.
                }
            }
            checked += 1;
            covered += u64::from(record.count);
            let mut next = first_seq;
            while next <= last_seq.min(limit) {
                let page = self.reader.read(next, last_seq.min(limit), REQUEST_READ_EVENTS_MAX)?;
                let Some(last_read) = page.last().map(|(e, _)| e.seq) else { break };
                for (envelope, _) in page {
                    if envelope.request_id != request_id {
                        let problem = Problem::RequestMismatch {
                            request_id: request_id.clone(),
                            carried: envelope.request_id.clone(),
                        };
                        keep_first(&mut first, Finding::at(&envelope, problem));
                        break;
                    }
                }
                next = last_read + 1;
            }
            self.progress.advance(u64::from(record.count));
        }
        // Every entry claims only events that carry its id, and an event
        // carries one id: so entries never overlap, and if they claim fewer
        // events than there are, some event has no entry. Find the first
        // (also when an entry is wrong: the event it should claim may come
        // before the one it claims).
        if walk_clean && (first.is_some() || covered != limit) {
            if let Some(found) = self.uncovered_event(limit)? {
                keep_first(&mut first, found);
            }
        }
        Ok((checked, first))
    }

    /// The first event whose request id has no idempotency entry claiming
    /// it (a slow scan, only when one is known to exist).
    fn uncovered_event(&self, limit: u64) -> Result<Option<Finding>, LogError> {
        let mut next = 1;
        while next <= limit {
            let page = self.reader.read(next, limit, REQUEST_READ_EVENTS_MAX)?;
            let Some(last_read) = page.last().map(|(e, _)| e.seq) else { break };
            for (envelope, _) in page {
                let request_id = envelope.request_id.clone();
                let problem = match self.reader.request(&request_id) {
                    Ok(None) => Problem::EventWithoutRequest { request_id },
                    Ok(Some(record)) => {
                        let last_seq = record.first_seq.saturating_add(u64::from(record.count)).saturating_sub(1);
                        if (record.first_seq..=last_seq).contains(&envelope.seq) {
                            continue;
                        }
                        Problem::EventOutsideRequest { request_id, first_seq: record.first_seq, last_seq }
                    }
                    Err(LogError::MalformedEntry { .. }) => continue, // Reported on its own.
                    Err(error) => return Err(error),
                };
                return Ok(Some(Finding::at(&envelope, problem)));
            }
            next = last_read + 1;
        }
        Ok(None)
    }

    /// The sequence number of `version` of `stream` among the events up to
    /// `limit`. Builds a map of all of them on first use: only a broken
    /// index needs it.
    fn locate(&mut self, stream: &str, version: u64, limit: u64) -> Result<Option<u64>, LogError> {
        if self.locator.is_none() {
            let mut locator = HashMap::new();
            for item in self.reader.walk(limit) {
                let (envelope, _) = item?;
                locator.insert((envelope.stream, envelope.stream_version), envelope.seq);
            }
            self.locator = Some(locator);
        }
        let locator = self.locator.as_ref().expect("built above");
        Ok(locator.get(&(stream.to_owned(), version)).copied())
    }
}

/// The sequence, hash and recording time of an event that passed.
fn reader_head(reader: &LogReader, seq: u64) -> Result<(u64, Hash, i64), LogError> {
    let (envelope, _) =
        reader.get(seq)?.ok_or_else(|| LogError::Corrupt { seq, problem: "missing from the log".into() })?;
    Ok((envelope.seq, envelope.hash, envelope.recorded_at_micros))
}

/// Checks a claim's signature and signer, before any event is read.
struct CheckedClaim {
    checkpoint: super::checkpoint::Checkpoint,
    verified: CheckpointVerified,
}

fn check_signature(claim: &CheckpointClaim) -> Result<CheckedClaim, Problem> {
    let signed = &claim.checkpoint;
    let checkpoint_key = hex::encode(signed.public_key.as_bytes());
    if signed.verify_signature().is_err() {
        return Err(Problem::CheckpointSignature { public_key: checkpoint_key });
    }
    if let Some(ledger_key) = claim.ledger_key.filter(|k| *k != signed.public_key) {
        return Err(Problem::CheckpointForeignKey { checkpoint_key, ledger_key: hex::encode(ledger_key.as_bytes()) });
    }
    if let Some(trusted_key) = claim.trusted_key.filter(|k| *k != signed.public_key) {
        return Err(Problem::CheckpointUntrustedKey {
            checkpoint_key,
            trusted_key: hex::encode(trusted_key.as_bytes()),
        });
    }
    Ok(CheckedClaim {
        checkpoint: signed.checkpoint,
        verified: CheckpointVerified {
            seq: signed.checkpoint.seq,
            head_hash: signed.checkpoint.head_hash,
            public_key: checkpoint_key,
            ledger_key_checked: claim.ledger_key.is_some(),
            trusted_key_checked: claim.trusted_key.is_some(),
        },
    })
}

/// Decodes an event and folds it into the replay. The fold is the ledger's
/// own (`FundState::evolve`), which asserts that every fact fits the state
/// before it: a corrupt or forged event makes it panic. Here that is a
/// finding, not a crash, so the panic is caught and reported.
fn fold(replay: &mut Projections, envelope: &Envelope, payload: &[u8]) -> Result<(), Problem> {
    let event = decode_event(envelope, payload).map_err(|error| match error {
        LogError::Corrupt { problem, .. } => Problem::Payload(problem),
        other => Problem::Payload(other.to_string()),
    })?;
    quiet_panics::catch(|| replay.apply(&envelope.link(), &event)).map_err(Problem::ContradictsState)
}

/// Catching the fold's panics without printing them: the report says what
/// went wrong. The panic hook is process-wide, so it is wrapped once, and
/// stays silent only on the thread that is folding, only while it folds;
/// every other panic is reported as before.
mod quiet_panics {
    use std::cell::Cell;
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::Once;

    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    static WRAP_HOOK: Once = Once::new();

    pub fn catch(f: impl FnOnce()) -> Result<(), String> {
        WRAP_HOOK.call_once(|| {
            let previous = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if !QUIET.with(Cell::get) {
                    previous(info);
                }
            }));
        });
        QUIET.with(|q| q.set(true));
        // The replay is abandoned after a panic, so a half-updated state is
        // never looked at again.
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        QUIET.with(|q| q.set(false));
        result.map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "the fold panicked".to_owned())
        })
    }
}
