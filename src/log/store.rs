use super::codec::{self, CodecError, DecodedRecord, Hash, RecordBodyRef, GENESIS_HASH};
use super::faults::{FaultPlan, StorageOp};
use super::index::LogIndex;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

// Key layout of the one sled tree (the default tree of the sled database in
// the data directory). One tree keeps every append a single atomic
// `apply_batch`. Integers are big-endian, so keys sort in sequence and
// version order; stream and request ids never contain a 0 byte.
//
// Stored format v3 keeps only the events (in record format 2, which
// carries the command's fingerprint): one key per event. Its stream and
// request indexes are projections of the log, in memory (`log::index`),
// stored beside the projections' checkpoint in `LOG_INDEX_FILE`. Format
// v2 keeps them in the tree, as the `r` and `s` keys below.
//
// Stored format v4 is v3 with the events in chunks: one key holds up to
// `CHUNK_RECORDS` consecutive records of one append, under the sequence
// number of its first (`docs/FORMAT-V4.md`). sled's costs are per key, so
// a chunk of 8 costs a fraction of 8 keys to write and to read.
const EVENT: u8 = b'e'; // e ‖ seq (u64 BE)               -> record (v2, v3)
                        // e ‖ first seq (u64 BE)         -> chunk (v4):
                        //   n ≥ 1 times: length L (u32 BE) ‖ L bytes record
const REQUEST: u8 = b'r'; // v2: r ‖ request id            -> fingerprint ‖ first seq ‖ count
const STREAM_INDEX: u8 = b's'; // v2: s ‖ stream ‖ 0 ‖ version (u64 BE) -> seq (u64 BE)

// Stored format v1 also kept every stream's head version under
// `v ‖ stream`: a fourth key per event, scattered over the key space, that
// cost a quarter of the write throughput. v2 reads a stream's version from
// its last index entry instead; opening a v1 log removes those entries.
const V1_STREAM_HEAD: u8 = b'v';
const META_FORMAT: &[u8] = b"m/format";
// Where ledgers before 0.2 kept the projections' checkpoint. Still read
// when there is no checkpoint file; removed once one is written.
const META_CHECKPOINT: &[u8] = b"m/checkpoint";
/// The projections' latest checkpoint: opaque bytes, written by the ledger,
/// in a file of its own beside sled's. A value of that size inside the sled
/// tree shares a leaf with the hot keys and is copied whenever sled
/// rewrites that leaf: at 200,000 events it cut durable throughput by 60%.
pub const CHECKPOINT_FILE: &str = "projections.checkpoint";
const STORE_FORMAT_V1: &[u8] = b"fundledger-log-v1";
/// Stored format v2: three keys per event (see the key layout above).
pub const STORE_FORMAT: &[u8] = b"fundledger-log-v2";
/// Stored format v3: one key per event, the indexes in memory.
pub const STORE_FORMAT_V3: &[u8] = b"fundledger-log-v3";
/// Stored format v4: v3 with up to [`CHUNK_RECORDS`] events per key.
pub const STORE_FORMAT_V4: &[u8] = b"fundledger-log-v4";
/// The most records a v4 writer puts under one key. A reader takes any
/// number: the layout is a count of frames, not of this constant.
pub const CHUNK_RECORDS: usize = 8;
/// Where a v3 log stores its indexes (`log::index`), beside the checkpoint.
pub const LOG_INDEX_FILE: &str = "log.index";

/// The stored formats this version writes. A log keeps the format it was
/// created in (a v1 log is upgraded to v2 as it opens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFormat {
    V2,
    V3,
    V4,
}

impl StoreFormat {
    /// The format of the logs [`EventLog::open`] creates.
    pub const NEW: StoreFormat = StoreFormat::V4;

    /// The marker that names it in a log (`fundledger-log-v4`, …).
    pub fn marker(self) -> &'static [u8] {
        match self {
            StoreFormat::V2 => STORE_FORMAT,
            StoreFormat::V3 => STORE_FORMAT_V3,
            StoreFormat::V4 => STORE_FORMAT_V4,
        }
    }

    /// Whether its stream and request indexes are projections held in
    /// memory, its records carrying each command's fingerprint (v3, v4),
    /// rather than keys in the tree (v2).
    pub fn indexes_in_memory(self) -> bool {
        self != StoreFormat::V2
    }

    /// Whether a key holds a chunk of records (v4) rather than one (v2, v3).
    pub fn chunked(self) -> bool {
        self == StoreFormat::V4
    }

    /// The format whose marker `found` is (a v1 log's reads as v2).
    fn of_marker(found: &[u8]) -> Option<StoreFormat> {
        [StoreFormat::V4, StoreFormat::V3, StoreFormat::V2]
            .into_iter()
            .find(|format| format.marker() == found)
            .or((found == STORE_FORMAT_V1).then_some(StoreFormat::V2))
    }
}

/// The envelope of a recorded event: everything but the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Gapless global order, from 1.
    pub seq: u64,
    pub stream: String,
    /// Position within the stream, from 1.
    pub stream_version: u64,
    pub event_type: String,
    pub schema_version: u16,
    /// When the event was recorded (microseconds since the Unix epoch, UTC).
    pub recorded_at_micros: i64,
    pub actor: String,
    pub request_id: String,
    pub prev_hash: Hash,
    pub hash: Hash,
    /// The fingerprint of the command that recorded it, as its record
    /// carries it (record format 2, written by stored format v3); `None`
    /// for a record of format 1, whose log keeps it in its idempotency
    /// entry.
    pub fingerprint: Option<Hash>,
}

impl Envelope {
    pub fn link(&self) -> Link {
        Link { seq: self.seq, prev_hash: self.prev_hash, hash: self.hash, recorded_at_micros: self.recorded_at_micros }
    }

    /// The record body of this envelope and `payload`, borrowed.
    pub fn body<'a>(&'a self, payload: &'a [u8]) -> RecordBodyRef<'a> {
        RecordBodyRef {
            seq: self.seq,
            stream: &self.stream,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            recorded_at_micros: self.recorded_at_micros,
            actor: &self.actor,
            request_id: &self.request_id,
            payload,
        }
    }

    /// The envelope of a record with this body and these hashes.
    fn of(body: &RecordBodyRef, prev_hash: Hash, hash: Hash, fingerprint: Option<Hash>) -> Envelope {
        Envelope {
            seq: body.seq,
            stream: body.stream.to_owned(),
            stream_version: body.stream_version,
            event_type: body.event_type.to_owned(),
            schema_version: body.schema_version,
            recorded_at_micros: body.recorded_at_micros,
            actor: body.actor.to_owned(),
            request_id: body.request_id.to_owned(),
            prev_hash,
            hash,
            fingerprint,
        }
    }
}

/// Where an event sits in the chain: all that folding it into the
/// projections needs of its envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub recorded_at_micros: i64,
}

impl CheckedRecord<'_> {
    pub fn link(&self) -> Link {
        Link {
            seq: self.body.seq,
            prev_hash: self.prev_hash,
            hash: self.hash,
            recorded_at_micros: self.body.recorded_at_micros,
        }
    }

    /// Its envelope and payload, copied out of storage.
    pub fn to_owned_parts(&self) -> (Envelope, Vec<u8>) {
        (Envelope::of(&self.body, self.prev_hash, self.hash, self.fingerprint), self.body.payload.to_vec())
    }
}

/// A stored record decoded with its body borrowed from the stored bytes; as
/// [`LogReader::read_each`] hands it out, checked against its key and hash.
pub type CheckedRecord<'a> = DecodedRecord<'a, RecordBodyRef<'a>>;

/// An event to append, before it has a place in the log.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub stream: String,
    pub event_type: String,
    pub schema_version: u16,
    pub payload: Vec<u8>,
}

/// The events of one accepted request, appended together.
#[derive(Clone, Debug)]
pub struct Entry {
    pub request_id: String,
    /// Digest of the request, to tell a retry from a reuse of the id.
    pub fingerprint: Hash,
    pub actor: String,
    pub events: Vec<NewEvent>,
}

/// What the log remembers of an accepted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub fingerprint: Hash,
    pub first_seq: u64,
    pub count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("no ledger here: {} {reason}; create one with `fundledger init --data-dir {}`", dir.display(), dir.display())]
    NoLedger { dir: PathBuf, reason: &'static str },
    #[error("cannot open the log in {}: {problem}", dir.display())]
    Open { dir: PathBuf, problem: String },
    #[error(
        "the ledger in {} is in use by another process (it holds the lock on {}): stop that process first, \
         or work through its --server",
        dir.display(),
        dir.join("db").display()
    )]
    InUse { dir: PathBuf },
    #[error("{} holds {found:?}, not a fundledger log", dir.display())]
    ForeignStore { dir: PathBuf, found: String },
    #[error(
        "{} holds a log in stored format {found:?}, which this fundledger cannot read (it reads {:?}, {:?}, {:?} \
         and {:?}): a newer fundledger wrote it; run that version",
        dir.display(),
        String::from_utf8_lossy(STORE_FORMAT_V4),
        String::from_utf8_lossy(STORE_FORMAT_V3),
        String::from_utf8_lossy(STORE_FORMAT),
        String::from_utf8_lossy(STORE_FORMAT_V1)
    )]
    UnknownStoreFormat { dir: PathBuf, found: String },
    #[error(
        "event {seq} is stored in record format version {found}, which this fundledger cannot read (it reads \
         versions {} and {}): a newer fundledger wrote it, or the record is corrupt (run `fundledger verify`)",
        codec::RECORD_FORMAT_V1,
        codec::RECORD_FORMAT_V2
    )]
    UnknownRecordFormat { seq: u64, found: u8 },
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("cannot make the log durable: {0}")]
    Sync(#[from] std::io::Error),
    #[error("event {seq} is corrupt: {problem}")]
    Corrupt { seq: u64, problem: String },
    #[error("stored entry {key} is malformed: {problem}")]
    MalformedEntry { key: String, problem: String },
    #[error("request {request_id:?} records no events: a log in stored format v3 or v4 keeps a command as its events")]
    EmptyEntry { request_id: String },
    #[error(
        "this reader of a log in stored format v3 or v4 was opened without its indexes (to verify a copy): it cannot \
         look up streams or requests"
    )]
    IndexNotLoaded,
}

impl LogError {
    /// The same error, naming `dir` as the data directory: for a log opened
    /// on a private copy (verification, exports), so that the message names
    /// the directory the user gave, not the temporary one.
    pub fn naming(self, dir: &Path) -> LogError {
        let dir = dir.to_owned();
        match self {
            LogError::NoLedger { reason, .. } => LogError::NoLedger { dir, reason },
            LogError::Open { problem, .. } => LogError::Open { dir, problem },
            LogError::InUse { .. } => LogError::InUse { dir },
            LogError::ForeignStore { found, .. } => LogError::ForeignStore { dir, found },
            LogError::UnknownStoreFormat { found, .. } => LogError::UnknownStoreFormat { dir, found },
            other => other,
        }
    }
}

/// The result of walking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub head_hash: Hash,
}

/// The writer's handle on the log. There is exactly one per data directory
/// (sled locks the directory), owned by the single writer.
pub struct EventLog {
    reader: LogReader,
    dir: PathBuf,
    /// v3: the head of the indexes stored in [`LOG_INDEX_FILE`] when the
    /// log was opened (0 when they were rebuilt from the log).
    index_stored_seq: u64,
    /// The head of what is written to sled: what the next event links to.
    written_seq: u64,
    head_hash: Hash,
    head_recorded_at_micros: i64,
    /// The head of what is durable and indexed ([`EventLog::head_seq`]):
    /// behind `written_seq` only between [`EventLog::write`] and
    /// [`EventLog::made_durable`].
    durable_seq: u64,
    /// The version of each stream written to and not yet durable, with the
    /// seq of its last event written: the next batch's versions go on from
    /// them, while the index knows only the durable ones. An entry goes once
    /// that seq is durable.
    unsynced_versions: HashMap<String, (u64, u64)>,
    /// v2: current version of the streams written or looked up since the
    /// log was opened, read from their last index entry on first use (so
    /// that opening a log with millions of streams reads none of them). One
    /// entry per stream: it grows with the fund's entities, not its events.
    /// (v3 reads it from its index.)
    stream_versions: HashMap<String, u64>,
    syncer: Syncer,
    /// Injected storage failures; `None` outside tests (see `log::faults`).
    faults: Option<Arc<FaultPlan>>,
    /// Turns true once this handle writes to sled (marking or upgrading
    /// the format at the open, each batch it applies, dropping the legacy
    /// checkpoint): see [`EventLog::written_since_open`].
    written: Arc<AtomicBool>,
}

/// A read-only handle for concurrent readers. Reads are not bounded by
/// durability here: callers bound them by the durable head they were told.
#[derive(Clone)]
pub struct LogReader {
    db: sled::Db,
    /// The data directory, for the checkpoint file.
    dir: PathBuf,
    format: StoreFormat,
    /// Where its streams' and requests' indexes are.
    index: Indexes,
}

#[derive(Clone)]
enum Indexes {
    /// Stored format v2: in the sled tree.
    InTree,
    /// Stored formats v3 and v4: in memory, shared with the writer, which
    /// adds each append's events once it is durable.
    InMemory(Arc<RwLock<LogIndex>>),
    /// Stored formats v3 and v4, opened to verify a copy without them
    /// ([`LogReader::open_existing`]): the audit reads only events.
    NotLoaded,
}

/// How the log configures sled (also what the storage-limit benchmark
/// measures raw sled with).
pub fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        // We flush and fsync ourselves after every group commit.
        .flush_every_ms(None)
        .cache_capacity(256 * 1024 * 1024)
}

/// Fails `op` if the fault plan (tests only) says so.
fn injected(faults: &Option<Arc<FaultPlan>>, op: StorageOp) -> std::io::Result<()> {
    faults.as_ref().map_or(Ok(()), |plan| plan.check(op))
}

/// A stored checkpoint, opened for reading.
pub type StoredCheckpoint = Box<dyn std::io::Read + Send>;

/// The file beside the log that holds the projections' checkpoint.
#[derive(Clone)]
pub struct CheckpointFile {
    dir: PathBuf,
    /// Injected storage failures; `None` outside tests (see `log::faults`).
    faults: Option<Arc<FaultPlan>>,
}

impl CheckpointFile {
    /// Stores a checkpoint (opaque to the log) and makes it durable. A
    /// checkpoint only saves replay time: losing one is harmless. It is
    /// written to a new file, synced, and renamed over the old one, so that
    /// a crash leaves the old checkpoint or the new one, whole.
    pub fn store(&self, bytes: &[u8]) -> Result<(), LogError> {
        store_file(&self.dir, CHECKPOINT_FILE, bytes, &self.faults)
    }

    /// Stores a v3 log's indexes as they were at `index`'s head, in the
    /// same way ([`LOG_INDEX_FILE`]). Like a checkpoint, it only saves
    /// time: a start that finds none, or one that does not match the log,
    /// rebuilds the indexes from the log.
    pub fn store_index(&self, index: &LogIndex) -> Result<(), LogError> {
        store_file(&self.dir, LOG_INDEX_FILE, &index.to_bytes(), &self.faults)
    }
}

/// Writes `bytes` to a new file, syncs it, and renames it over `name` in
/// `dir`: a crash leaves the old file or the new one, whole.
fn store_file(dir: &Path, name: &str, bytes: &[u8], faults: &Option<Arc<FaultPlan>>) -> Result<(), LogError> {
    let new = unfinished(dir, name);
    {
        injected(faults, StorageOp::Write)?;
        let mut file = File::create(&new)?;
        std::io::Write::write_all(&mut file, bytes)?;
        injected(faults, StorageOp::Fsync)?;
        file.sync_all()?;
    }
    std::fs::rename(&new, dir.join(name))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Where [`CheckpointFile::store`] writes a checkpoint before renaming it
/// into place. One found at start is what a process killed mid-write left.
pub fn unfinished_checkpoint(dir: &Path) -> PathBuf {
    unfinished(dir, CHECKPOINT_FILE)
}

/// Where [`store_file`] writes file `name` before renaming it into place.
fn unfinished(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.new"))
}

/// The indexes stored in `dir`'s [`LOG_INDEX_FILE`], read and checked on
/// their own ([`LogIndex::from_bytes`]), or why they cannot be used;
/// `None` when there is no such file.
fn read_index(dir: &Path) -> Option<Result<LogIndex, String>> {
    match std::fs::read(dir.join(LOG_INDEX_FILE)) {
        Ok(bytes) => Some(LogIndex::from_bytes(&bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => Some(Err(io_problem(&error))),
    }
}

/// A v3 log's indexes at its head `head_seq`: those `stored` in
/// [`LOG_INDEX_FILE`] ([`read_index`]) if the file is whole and its head is
/// an event of this log (same sequence number, same hash), caught up from
/// the events after it; otherwise rebuilt from the whole log. A stale or
/// damaged file is never trusted: it is only ever a head start. Answers
/// the indexes and the head of those stored (0 when there were none that
/// matched).
fn load_index(
    reader: &LogReader,
    head_seq: u64,
    stored: Option<Result<LogIndex, String>>,
) -> Result<(LogIndex, u64), LogError> {
    let path = reader.dir.join(LOG_INDEX_FILE);
    let stored = match stored {
        None => None,
        Some(Err(problem)) => {
            tracing::warn!(path = %path.display(), problem, "the stored log index is unusable; rebuilding it from the log");
            None
        }
        Some(Ok(index)) => match index_head_in_log(reader, &index, head_seq)? {
            Ok(()) => Some(index),
            Err(problem) => {
                tracing::warn!(path = %path.display(), problem, "the stored log index does not match the log; rebuilding it");
                None
            }
        },
    };
    let mut index = stored.unwrap_or_default();
    let from = index.head_seq();
    if from < head_seq {
        let started = std::time::Instant::now();
        // Whether the previous event's command goes on: an event starts a
        // command when its request id differs from the previous event's
        // (a command's events are consecutive, and the writer never records
        // a request id twice).
        let mut previous = match from {
            0 => None,
            seq => reader.get(seq)?.map(|(envelope, _)| envelope.request_id),
        };
        reader.read_each(from + 1, head_seq, usize::MAX, |record| {
            if record.body.seq != index.head_seq() + 1 {
                let problem = "missing from the log, which goes on after it".into();
                return Err(LogError::Corrupt { seq: index.head_seq() + 1, problem });
            }
            let first = previous.as_deref() != Some(record.body.request_id);
            if first {
                previous = Some(record.body.request_id.to_owned());
            }
            index.add(record.body.seq, record.hash, record.body.stream, record.body.request_id, first);
            Ok(())
        })?;
        tracing::info!(from = from + 1, to = head_seq, took = ?started.elapsed(), "log index caught up from the log");
    }
    Ok((index, from))
}

/// Whether a stored index's head is an event of this log, at or before its
/// head `head_seq`.
fn index_head_in_log(reader: &LogReader, index: &LogIndex, head_seq: u64) -> Result<Result<(), String>, LogError> {
    let seq = index.head_seq();
    if seq > head_seq {
        return Ok(Err(format!("its head is event {seq}, after the log's last event {head_seq}")));
    }
    let hash = match seq {
        0 => GENESIS_HASH,
        seq => match reader.record_at(seq)? {
            // A damaged head record is not trusted either (a rebuild, or
            // an audit's walk, meets and reports it).
            Some(record) => match check_record(seq, &record) {
                Ok(record) => record.hash,
                Err(error) => return Ok(Err(format!("its head, event {seq}, does not read: {error}"))),
            },
            None => return Ok(Err(format!("its head, event {seq}, is not in the log"))),
        },
    };
    if hash != index.head_hash() {
        return Ok(Err(format!("its head, event {seq}, has another hash in the log")));
    }
    Ok(Ok(()))
}

/// Removes the snapshot files that sled left half-written (`snap.*.generating`)
/// in `dir`, before sled opens it. sled 0.34 writes a snapshot of its page
/// table to such a file, syncs it and renames it; but as it opens a tree it
/// reads whichever `snap.*` file sorts last, and a `.generating` one sorts
/// after the snapshot it was to replace. A process killed, or a disk that
/// filled, while sled was writing one (which it does while opening, and at
/// a clean stop: [`EventLog::refresh_sled_snapshot`]) left a ledger that
/// sled then refused as corrupt. Without it, sled reads the last whole
/// snapshot and catches up from its log, as after any crash. Only for a
/// directory no other process holds.
fn remove_unfinished_sled_snapshots(dir: &Path) -> Result<(), LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(LogError::Open { dir: dir.to_owned(), problem: io_problem(&error) }),
    };
    for entry in entries {
        let entry = entry.map_err(|error| LogError::Open { dir: dir.to_owned(), problem: io_problem(&error) })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("snap.") && name.ends_with(".generating")) {
            continue;
        }
        remove_left_unfinished(dir, &entry.path(), "a storage snapshot")?;
    }
    Ok(())
}

/// Removes `path`, `what` a process that stopped while writing it left
/// unfinished in data directory `dir` (nothing reads it, and no other
/// process holds the directory); absent is fine. What cannot be removed (a
/// directory of that name, a read-only directory) refuses the open, naming
/// the file.
fn remove_left_unfinished(dir: &Path, path: &Path, what: &str) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed {what} left unfinished by an earlier process");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(LogError::Open {
            dir: dir.to_owned(),
            problem: format!(
                "cannot remove {}, {what} left unfinished by an earlier process ({}): remove it, then start again",
                path.display(),
                io_problem(&error)
            ),
        }),
    }
}

/// The checkpoint file in data directory `dir`, opened for reading, with
/// its length; `None` if there is none. Needs no open log: a start reads it
/// while sled opens (`Ledger::open`). A ledger that never stored its
/// checkpoint in a file keeps it in the sled tree:
/// [`LogReader::open_checkpoint`] finds both.
pub fn open_checkpoint_file(dir: &Path) -> Result<Option<(StoredCheckpoint, u64)>, LogError> {
    match File::open(dir.join(CHECKPOINT_FILE)) {
        Ok(file) => {
            let len = file.metadata().map_err(LogError::Sync)?.len();
            Ok(Some((Box::new(file), len)))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(LogError::Sync(error)),
    }
}

impl EventLog {
    /// Whether the log in `dir` is free to open: no other process holds
    /// it. sled's own refusal of a directory in use is an `Other` I/O error
    /// with text only; taking its lock for a moment tells a ledger in use
    /// apart from a broken one. A log that does not exist yet is free.
    pub fn check_free(dir: &Path) -> Result<(), LogError> {
        let db = match File::open(dir.join("db")) {
            Ok(db) => db,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(LogError::Open { dir: dir.to_owned(), problem: io_problem(&error) }),
        };
        if fs2::FileExt::try_lock_exclusive(&db).is_err() {
            return Err(LogError::InUse { dir: dir.to_owned() });
        }
        Ok(())
    }

    /// Brings sled's snapshot of its page table up to date, for a log that
    /// no handle in this process holds any more. Waits up to 5 s for the
    /// last handles to let go (a call still running, such as an export
    /// stream, may hold one); a log still held after that is an
    /// [`LogError::InUse`], and nothing is done. Answers how long it took.
    ///
    /// sled 0.34 writes that snapshot only while it opens a tree: an open
    /// reads the last snapshot, then every log segment written after it,
    /// and stores a new one. A start after a run that wrote paid for every
    /// write of that run: at 10.5–11.7 M events, sled's open took 2.05–2.63
    /// s after a process had written 0.2 M events and stopped, against
    /// 1.55–1.73 s for the open after that one (`docs/BENCHMARKS.md`,
    /// eleventh session). A clean stop calls this, so that the work is done
    /// on the way out and the next start reads the snapshot alone. It
    /// writes no event and changes nothing the log holds. A stop cut short
    /// while sled writes the snapshot leaves a `snap.*.generating` file,
    /// which the next open removes before sled could mistake it for the
    /// newest snapshot; sled then reads the previous one and catches up, as
    /// after any crash.
    pub fn refresh_sled_snapshot(dir: &Path) -> Result<std::time::Duration, LogError> {
        let started = std::time::Instant::now();
        loop {
            match EventLog::check_free(dir) {
                Ok(()) => break,
                Err(LogError::InUse { .. }) if started.elapsed() < std::time::Duration::from_secs(5) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(error) => return Err(error),
            }
        }
        remove_unfinished_sled_snapshots(dir)?;
        let db = sled_config(dir)
            .open()
            .map_err(|error| LogError::Open { dir: dir.to_owned(), problem: sled_problem(&error) })?;
        drop(db);
        Ok(started.elapsed())
    }

    /// Whether `dir` holds a log, looked at without opening it: sled writes
    /// to a directory as it opens it, and would make an empty one.
    pub fn check_present(dir: &Path) -> Result<(), LogError> {
        let absent = |reason| Err(LogError::NoLedger { dir: dir.to_owned(), reason });
        match std::fs::metadata(dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => absent("does not exist"),
            Err(error) => Err(LogError::Open { dir: dir.to_owned(), problem: io_problem(&error) }),
            Ok(meta) if !meta.is_dir() => absent("is not a directory"),
            Ok(_) if !dir.join("db").is_file() => absent("has no sled `db` file"),
            Ok(_) => Ok(()),
        }
    }

    /// Opens (or creates, in [`StoreFormat::NEW`]) the log in `dir`.
    /// Nothing is written before the stored format marker was read and
    /// found to be v4, v3, v2 or v1, which is upgraded to v2 in place (sled
    /// itself may bring its own snapshot file up to date as it opens).
    pub fn open(dir: &Path) -> Result<EventLog, LogError> {
        EventLog::open_with(dir, StoreFormat::NEW)
    }

    /// [`open`](Self::open), creating a log that does not exist yet in
    /// `new_format` (an existing log keeps its own).
    pub fn open_with(dir: &Path, new_format: StoreFormat) -> Result<EventLog, LogError> {
        let fresh = !dir.join("db").exists();
        if !fresh {
            EventLog::check_free(dir)?;
            remove_unfinished_sled_snapshots(dir)?;
        }
        let opened = std::thread::scope(|scope| {
            // A v3 log's stored indexes are read and parsed while sled
            // opens (a few hundred megabytes at 10 M events).
            let reading = (!fresh && dir.join(LOG_INDEX_FILE).is_file())
                .then(|| std::thread::Builder::new().name("index-read".into()).spawn_scoped(scope, || read_index(dir)))
                .and_then(Result::ok);
            (|| {
                std::fs::create_dir_all(dir)?;
                let db = sled_config(dir).open()?;
                let (format, marked) = check_format(dir, &db, new_format)?;
                let stored = match reading {
                    Some(reading) => reading.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    None if format.indexes_in_memory() => read_index(dir),
                    None => None,
                };
                let log = EventLog::start(dir, db, fresh, format, stored)?;
                if marked {
                    log.written.store(true, Ordering::Relaxed);
                }
                Ok(log)
            })()
        });
        // Failures to open, mark or sync say which directory and why.
        opened.map_err(|error| match error {
            LogError::Storage(error) => LogError::Open { dir: dir.to_owned(), problem: sled_problem(&error) },
            LogError::Sync(error) => LogError::Open { dir: dir.to_owned(), problem: io_problem(&error) },
            other => other,
        })
    }

    /// The log in `dir`, opened as `db`, with its head read back and
    /// checked; a v3 log's indexes loaded from `stored`, what was read of
    /// its index file (`None`: no file), and caught up.
    fn start(
        dir: &Path,
        db: sled::Db,
        fresh: bool,
        format: StoreFormat,
        stored: Option<Result<LogIndex, String>>,
    ) -> Result<EventLog, LogError> {
        let mut log = EventLog {
            reader: LogReader { db: db.clone(), dir: dir.to_owned(), format, index: Indexes::InTree },
            dir: dir.to_owned(),
            index_stored_seq: 0,
            written_seq: 0,
            head_hash: GENESIS_HASH,
            head_recorded_at_micros: 0,
            durable_seq: 0,
            unsynced_versions: HashMap::new(),
            stream_versions: HashMap::new(),
            syncer: Syncer {
                db: db.clone(),
                dir: dir.to_owned(),
                synced_blobs: Arc::new(Mutex::new(HashSet::new())),
                faults: None,
                failed: Arc::new(AtomicBool::new(false)),
            },
            faults: None,
            written: Arc::new(AtomicBool::new(false)),
        };
        if let Some((seq, record)) = log.reader.last_record()? {
            // The head is what the next event links to: check it right
            // after reading it back, hash included.
            let head = check_record(seq, &record)?.link();
            log.written_seq = head.seq;
            log.durable_seq = head.seq;
            log.head_hash = head.hash;
            log.head_recorded_at_micros = head.recorded_at_micros;
        }
        if format.indexes_in_memory() {
            let (index, stored_seq) = load_index(&log.reader, log.written_seq, stored)?;
            log.index_stored_seq = stored_seq;
            log.reader.index = Indexes::InMemory(Arc::new(RwLock::new(index)));
        }
        log.sync()?;
        log.remove_unfinished_checkpoint()?;
        remove_left_unfinished(dir, &unfinished(dir, LOG_INDEX_FILE), "an index file")?;
        if fresh {
            // The directory entries of sled's new files, and of the data
            // directory itself, must survive a crash too.
            File::open(dir)?.sync_all()?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(log)
    }

    /// Removes a checkpoint that a process killed while storing it left
    /// half-written (up to the size of a whole checkpoint, about a gigabyte
    /// at 10 M events). It was never renamed into place, so nothing reads
    /// it; the log's lock is held, so no other process is writing it. What
    /// cannot be removed (a directory of that name, a read-only directory)
    /// would fail the next checkpoint, which stops the writer: the start
    /// refuses now instead, naming the file.
    fn remove_unfinished_checkpoint(&self) -> Result<(), LogError> {
        remove_left_unfinished(&self.dir, &unfinished_checkpoint(&self.dir), "a checkpoint")
    }

    /// **Tests only**: from now on, consults `plan` before every write,
    /// flush and fsync, and fails the ones it says (see `log::faults`).
    #[doc(hidden)]
    pub fn inject_faults(&mut self, plan: Arc<FaultPlan>) {
        self.syncer.faults = Some(plan.clone());
        self.faults = Some(plan);
    }

    /// Whether the fault plan, if any, fails this call of `op`.
    fn injected(&self, op: StorageOp) -> std::io::Result<()> {
        injected(&self.faults, op)
    }

    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// The head of what is durable (and, in v3 and v4, indexed).
    pub fn head_seq(&self) -> u64 {
        self.durable_seq
    }

    /// What makes the log's writes durable, as a handle that another
    /// thread can use ([`Syncer`]).
    pub fn syncer(&self) -> Syncer {
        self.syncer.clone()
    }

    /// A flag that turns true when this handle first writes to sled (and
    /// stays so). A run that leaves it false wrote nothing since sled's
    /// open, which brought sled's snapshot up to date: at most sled's own
    /// few page writes are left behind it (a read may finish a leaf split
    /// that a write began), so [`EventLog::refresh_sled_snapshot`] would
    /// save the next start next to nothing. Shared, so that it can be read
    /// after the writer that owns the log has ended.
    pub fn written_since_open(&self) -> Arc<AtomicBool> {
        self.written.clone()
    }

    /// Applies `batch` to sled, marking the log written first.
    fn apply_batch(&self, batch: sled::Batch) -> Result<(), LogError> {
        self.written.store(true, Ordering::Relaxed);
        self.reader.db.apply_batch(batch)?;
        Ok(())
    }

    /// The hash of the last event written: what the next one links to (the
    /// durable head's, except between [`EventLog::write`] and
    /// [`EventLog::made_durable`]).
    pub fn head_hash(&self) -> Hash {
        self.head_hash
    }

    /// The recording time of the last event written (0 for an empty log).
    pub fn head_recorded_at_micros(&self) -> i64 {
        self.head_recorded_at_micros
    }

    /// The stored format of this log.
    pub fn format(&self) -> StoreFormat {
        self.reader.format
    }

    /// v3: the head of the indexes stored beside the checkpoint when the
    /// log was opened (0 if there were none that matched the log, and they
    /// were rebuilt from it); `None` in v2.
    pub fn index_stored_seq(&self) -> Option<u64> {
        self.reader.format.indexes_in_memory().then_some(self.index_stored_seq)
    }

    /// A v3 log's indexes as they are now, at its head (an O(1) copy that
    /// shares them, for the checkpoint thread to store); `None` in v2.
    pub fn index_snapshot(&self) -> Option<LogIndex> {
        match &self.reader.index {
            Indexes::InMemory(index) => Some(index.read().expect("index lock").clone()),
            Indexes::InTree | Indexes::NotLoaded => None,
        }
    }

    /// The current version of a stream (0 for a stream without events).
    /// Counts what is written and not yet durable.
    pub fn stream_version(&mut self, stream: &str) -> Result<u64, LogError> {
        if let Some(&(version, _)) = self.unsynced_versions.get(stream) {
            return Ok(version);
        }
        if let Some(index) = self.reader.memory_index()? {
            return Ok(index.read().expect("index lock").stream_version(stream));
        }
        if let Some(&version) = self.stream_versions.get(stream) {
            return Ok(version);
        }
        // The stream's last index entry: its events are indexed in the same
        // atomic batch that stores them, so this is its head.
        let prefix = stream_index_prefix(stream);
        let version = match self.reader.db.scan_prefix(&prefix).next_back().transpose()? {
            None => 0,
            Some((key, _)) if key.len() == prefix.len() + 8 => u64_of(&key[prefix.len()..]),
            Some((key, _)) => {
                return Err(LogError::MalformedEntry {
                    key: key_text(&key),
                    problem: "not stream ‖ 0 ‖ version".into(),
                })
            }
        };
        self.stream_versions.insert(stream.to_owned(), version);
        Ok(version)
    }

    pub fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, LogError> {
        self.reader.request(request_id)
    }

    /// Where the projections' checkpoint is stored, as a handle of its own:
    /// the writer stores checkpoints on a thread of their own, so that
    /// writing a large one never holds up a commit.
    pub fn checkpoint_file(&self) -> CheckpointFile {
        CheckpointFile { dir: self.dir.clone(), faults: self.faults.clone() }
    }

    /// Stores the projections' checkpoint ([`CheckpointFile::store`]) and,
    /// in a v3 log, its indexes as they are at its head
    /// ([`CheckpointFile::store_index`]; the next start loads them instead
    /// of scanning the log), then drops the checkpoint that older versions
    /// kept inside sled, if any. For callers without a writer (a restore, a
    /// builder); the writer stores both on its checkpoint thread.
    pub fn put_checkpoint(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        let file = self.checkpoint_file();
        file.store(bytes)?;
        if let Some(index) = self.index_snapshot() {
            file.store_index(&index)?;
        }
        self.drop_legacy_checkpoint()
    }

    /// Removes the checkpoint that older versions kept inside sled (never
    /// used now: its layout is older than the checksummed one), once a
    /// checkpoint file has replaced it.
    pub fn drop_legacy_checkpoint(&mut self) -> Result<(), LogError> {
        if self.reader.db.remove(META_CHECKPOINT)?.is_some() {
            self.written.store(true, Ordering::Relaxed);
            self.sync()?;
        }
        Ok(())
    }

    /// Appends the entries in order as one atomic batch and makes it durable
    /// (flush + fdatasync) before returning their envelopes.
    pub fn append(&mut self, recorded_at_micros: i64, entries: &[Entry]) -> Result<Vec<Vec<Envelope>>, LogError> {
        let envelopes = self.write(recorded_at_micros, entries)?;
        self.sync()?;
        self.made_durable(entries, &envelopes);
        Ok(envelopes)
    }

    /// Writes the entries in order as one atomic sled batch, chained to
    /// what was written before, and returns their envelopes. Not durable
    /// yet: nothing may be shown or acknowledged until a [`Syncer::sync`]
    /// that began after this returned has succeeded, and then
    /// [`EventLog::made_durable`] has indexed it. A later `write` may come
    /// first: it chains to this one, and its streams' versions go on from
    /// this one's. After a failed sync, nothing more may be written.
    pub fn write(&mut self, recorded_at_micros: i64, entries: &[Entry]) -> Result<Vec<Vec<Envelope>>, LogError> {
        // Recording time never goes backwards, whatever the wall clock does.
        let recorded_at_micros = recorded_at_micros.max(self.head_recorded_at_micros);
        let mut batch = sled::Batch::default();
        let mut seq = self.written_seq;
        let mut hash = self.head_hash;
        let mut versions: HashMap<&str, u64> = HashMap::with_capacity(entries.len());
        let mut out = Vec::with_capacity(entries.len());
        let format = self.reader.format;
        let mut chunk = Chunk::default();
        for entry in entries {
            let first_seq = seq + 1;
            let mut envelopes = Vec::with_capacity(entry.events.len());
            for event in &entry.events {
                seq += 1;
                if !versions.contains_key(event.stream.as_str()) {
                    let current = self.stream_version(&event.stream)?;
                    versions.insert(event.stream.as_str(), current);
                }
                let version = versions.get_mut(event.stream.as_str()).expect("inserted above");
                *version += 1;
                let body = RecordBodyRef {
                    seq,
                    stream: &event.stream,
                    stream_version: *version,
                    event_type: &event.event_type,
                    schema_version: event.schema_version,
                    recorded_at_micros,
                    actor: &entry.actor,
                    request_id: &entry.request_id,
                    payload: &event.payload,
                };
                let (record, new_hash, fingerprint) = match format {
                    StoreFormat::V2 => {
                        let (record, new_hash) = codec::encode_record_ref(&hash, &body);
                        (record, new_hash, None)
                    }
                    StoreFormat::V3 | StoreFormat::V4 => {
                        let (record, new_hash) = codec::encode_record_v2(&hash, &body, &entry.fingerprint);
                        (record, new_hash, Some(entry.fingerprint))
                    }
                };
                match format {
                    StoreFormat::V2 => {
                        batch.insert(&event_key(seq)[..], record);
                        batch.insert(stream_index_key(&event.stream, *version), &seq.to_be_bytes()[..]);
                    }
                    StoreFormat::V3 => batch.insert(&event_key(seq)[..], record),
                    StoreFormat::V4 => chunk.push(seq, &record, &mut batch),
                }
                envelopes.push(Envelope::of(&body, hash, new_hash, fingerprint));
                hash = new_hash;
            }
            match format {
                StoreFormat::V2 => {
                    let count = u32::try_from(entry.events.len()).expect("a request records few events");
                    batch.insert(request_key(&entry.request_id), request_value(&entry.fingerprint, first_seq, count));
                }
                // The log keeps a command as its events, the first of
                // which its index points to.
                StoreFormat::V3 | StoreFormat::V4 if entry.events.is_empty() => {
                    return Err(LogError::EmptyEntry { request_id: entry.request_id.clone() })
                }
                StoreFormat::V3 | StoreFormat::V4 => {}
            }
            out.push(envelopes);
        }
        chunk.finish(&mut batch);
        // A sync on another thread may have failed since the caller last
        // looked: nothing more is written then (a write already under way
        // when it fails is never synced).
        if self.syncer.failed.load(Ordering::SeqCst) {
            return Err(LogError::Sync(std::io::Error::other("an earlier sync of the log failed")));
        }
        self.injected(StorageOp::Write).map_err(sled::Error::Io)?;
        self.apply_batch(batch)?;
        for (stream, version) in versions {
            self.unsynced_versions.insert(stream.to_owned(), (version, seq));
        }
        self.written_seq = seq;
        self.head_hash = hash;
        self.head_recorded_at_micros = recorded_at_micros;
        Ok(out)
    }

    /// After a sync that covered their [`EventLog::write`], the oldest
    /// entries written and not yet durable, with the envelopes it
    /// returned: indexes them and moves the durable head past them.
    pub fn made_durable(&mut self, entries: &[Entry], envelopes: &[Vec<Envelope>]) {
        let Some(last) = envelopes.iter().flatten().next_back() else { return };
        assert!(
            last.seq > self.durable_seq && last.seq <= self.written_seq,
            "made durable out of order: seq {} with the durable head at {} and the written one at {}",
            last.seq,
            self.durable_seq,
            self.written_seq
        );
        if let Indexes::InMemory(index) = &self.reader.index {
            let mut index = index.write().expect("index lock");
            for (entry, envelopes) in entries.iter().zip(envelopes) {
                for (at, envelope) in envelopes.iter().enumerate() {
                    index.add(envelope.seq, envelope.hash, &envelope.stream, &entry.request_id, at == 0);
                }
            }
        }
        self.durable_seq = last.seq;
        // The versions now durable are the index's (or, in v2, the stream
        // versions' cache's) again.
        let durable = self.durable_seq;
        let v2 = self.reader.format == StoreFormat::V2;
        let cache = &mut self.stream_versions;
        self.unsynced_versions.retain(|stream, &mut (version, seq)| {
            if seq > durable {
                return true;
            }
            if v2 {
                cache.insert(stream.clone(), version);
            }
            false
        });
    }

    /// Makes everything written so far durable ([`Syncer::sync`]).
    fn sync(&mut self) -> Result<(), LogError> {
        self.syncer.sync()
    }
}

/// Makes everything applied to the log's sled tree before the call
/// durable. A handle of its own, so that the writer can have one group
/// commit synced on another thread while it decides the next
/// (`ledger::writer`).
#[derive(Clone)]
pub struct Syncer {
    db: sled::Db,
    dir: PathBuf,
    /// sled blob files already fsynced (large values live outside `db`).
    synced_blobs: Arc<Mutex<HashSet<OsString>>>,
    faults: Option<Arc<FaultPlan>>,
    /// Set by a failed sync: [`EventLog::write`] writes nothing after it.
    failed: Arc<AtomicBool>,
}

impl Syncer {
    /// Flush, then fdatasync the files sled wrote: `flush` alone uses
    /// `sync_file_range`, which neither persists file metadata nor orders
    /// writes against a power failure.
    pub fn sync(&self) -> Result<(), LogError> {
        self.sync_marking(None)
    }

    /// The names of sled's blob files now (it keeps values over about 128
    /// KiB in files of their own): those that the writes before this call
    /// wrote are whole. For [`Syncer::sync_marking`].
    pub fn blobs(&self) -> Result<HashSet<OsString>, LogError> {
        let blobs = self.dir.join("blobs");
        if !blobs.exists() {
            return Ok(HashSet::new());
        }
        let mut names = HashSet::new();
        for entry in std::fs::read_dir(&blobs)? {
            names.insert(entry?.file_name());
        }
        Ok(names)
    }

    /// [`Syncer::sync`] on a thread other than the writer's: it syncs every
    /// blob file it finds, but remembers as synced only those in `whole`
    /// (from [`Syncer::blobs`] after the writes it covers), since one it
    /// finds besides may be a later write's, still being written, which
    /// that write's own sync must sync again.
    pub fn sync_marking(&self, whole: Option<&HashSet<OsString>>) -> Result<(), LogError> {
        let synced = self.sync_files(whole);
        if synced.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        synced
    }

    fn sync_files(&self, whole: Option<&HashSet<OsString>>) -> Result<(), LogError> {
        injected(&self.faults, StorageOp::Flush).map_err(sled::Error::Io)?;
        self.db.flush()?;
        injected(&self.faults, StorageOp::Fsync)?;
        File::open(self.dir.join("db"))?.sync_data()?;
        let blobs = self.dir.join("blobs");
        if blobs.exists() {
            let mut synced_blobs = self.synced_blobs.lock().unwrap_or_else(PoisonError::into_inner);
            let mut new_blob = false;
            for entry in std::fs::read_dir(&blobs)? {
                let entry = entry?;
                if !synced_blobs.contains(&entry.file_name()) {
                    File::open(entry.path())?.sync_data()?;
                    if whole.is_none_or(|whole| whole.contains(&entry.file_name())) {
                        synced_blobs.insert(entry.file_name());
                    }
                    new_blob = true;
                }
            }
            if new_blob {
                File::open(&blobs)?.sync_all()?;
            }
        }
        Ok(())
    }
}

impl LogReader {
    /// The stored format of the log it reads.
    pub fn format(&self) -> StoreFormat {
        self.format
    }

    /// The indexes a start of this log would use, for an audit to check
    /// against the events: an open v3 log's live ones; for a v3 log opened
    /// to verify a copy, those stored in its [`LOG_INDEX_FILE`] if a start
    /// would trust them (their checksum holds and their head is an event
    /// of this log, hash included). `None` in v2, and when a start would
    /// rebuild them from the log.
    pub fn index_to_check(&self) -> Result<Option<LogIndex>, LogError> {
        let stored = match &self.index {
            Indexes::InTree => return Ok(None),
            Indexes::InMemory(index) => return Ok(Some(index.read().expect("index lock").clone())),
            Indexes::NotLoaded => match read_index(&self.dir) {
                Some(Ok(stored)) => stored,
                None | Some(Err(_)) => return Ok(None),
            },
        };
        Ok(index_head_in_log(self, &stored, self.last_seq()?)?.is_ok().then_some(stored))
    }

    /// A v3 log's indexes in memory; `None` in v2, which keeps them in
    /// the tree.
    fn memory_index(&self) -> Result<Option<&Arc<RwLock<LogIndex>>>, LogError> {
        match &self.index {
            Indexes::InTree => Ok(None),
            Indexes::InMemory(index) => Ok(Some(index)),
            Indexes::NotLoaded => Err(LogError::IndexNotLoaded),
        }
    }

    /// Up to `limit` events with `from_seq <= seq <= to_seq`, in order.
    pub fn read(&self, from_seq: u64, to_seq: u64, limit: usize) -> Result<Vec<(Envelope, Vec<u8>)>, LogError> {
        // Room for the events asked for (a bounded guess: the range may
        // have gaps, and `limit` may be "all").
        let expected = to_seq.saturating_sub(from_seq.max(1)).saturating_add(1);
        let mut out = Vec::with_capacity(limit.min(READ_CAPACITY_MAX).min(expected.try_into().unwrap_or(usize::MAX)));
        self.read_each(from_seq, to_seq, limit, |record| {
            out.push(record.to_owned_parts());
            Ok(())
        })?;
        Ok(out)
    }

    /// [`read`](Self::read) without copying: hands each event, checked
    /// against its key and hash, to `f` as it is read, its texts and
    /// payload borrowed from storage. Stops at the first error, `f`'s own
    /// included.
    pub fn read_each(
        &self,
        from_seq: u64,
        to_seq: u64,
        limit: usize,
        mut f: impl FnMut(&CheckedRecord) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        if from_seq > to_seq {
            return Ok(());
        }
        for item in self.records(from_seq, to_seq)?.take(limit) {
            let (seq, record) = item?;
            f(&check_record(seq, &record)?)?;
        }
        Ok(())
    }

    /// The stored records of events `from_seq` to `to_seq`, in order, each
    /// with the sequence number its place gives it (its key in v2 and v3;
    /// its chunk's key and its place in the chunk in v4), unchecked.
    fn records(&self, from_seq: u64, to_seq: u64) -> Result<StoredRecords, LogError> {
        let from_seq = from_seq.max(1);
        let start = if self.format.chunked() && from_seq <= to_seq {
            // The chunk that holds `from_seq` begins at or before it.
            // (A malformed key there is met, and reported, by the range
            // from `from_seq`.)
            let before = self.db.range(event_key(0)..=event_key(from_seq)).next_back().transpose()?;
            before.and_then(|(key, _)| event_seq(&key)).unwrap_or(from_seq)
        } else {
            from_seq
        };
        let keys = (start <= to_seq).then(|| self.db.range(event_key(start)..=event_key(to_seq)));
        Ok(StoredRecords::new(keys, self.format.chunked(), from_seq, to_seq))
    }

    /// The stored record of event `seq`, unchecked.
    fn record_at(&self, seq: u64) -> Result<Option<sled::IVec>, LogError> {
        if !self.format.chunked() {
            return Ok(self.db.get(event_key(seq))?);
        }
        Ok(self.records(seq, seq)?.next().transpose()?.map(|(_, record)| record))
    }

    /// The last stored record and the sequence number its place gives it.
    /// A last chunk that cannot be cut into records is an error, never an
    /// empty log: the next append would write over the log's first events.
    fn last_record(&self) -> Result<Option<(u64, sled::IVec)>, LogError> {
        let Some((key, value)) = self.db.scan_prefix([EVENT]).next_back().transpose()? else { return Ok(None) };
        let first_seq = last_event_seq(&key)?;
        if !self.format.chunked() {
            return Ok(Some((first_seq, value)));
        }
        let mut last = None;
        for record in self.records(first_seq, u64::MAX)? {
            last = Some(record?);
        }
        Ok(last)
    }

    /// The sequence numbers of a stream's events, in stream order.
    pub fn stream_seqs(&self, stream: &str, limit: usize) -> Result<Vec<u64>, LogError> {
        if self.memory_index()?.is_some() {
            return Ok(self.stream_entries(stream, 1, limit)?.into_iter().map(|(_, seq)| seq).collect());
        }
        self.db.scan_prefix(stream_index_prefix(stream)).take(limit).map(|item| Ok(u64_of(&item?.1))).collect()
    }

    /// Up to `limit` entries `(stream version, seq)` of a stream's index,
    /// from `from_version` on, in stream order. A follower of one stream
    /// reads on from the version after the last one it saw, so it never
    /// scans what it has seen, nor other streams' events.
    pub fn stream_entries(&self, stream: &str, from_version: u64, limit: usize) -> Result<Vec<(u64, u64)>, LogError> {
        if let Some(index) = self.memory_index()? {
            return Ok(index.read().expect("index lock").stream_entries(stream, from_version, limit));
        }
        let prefix = stream_index_prefix(stream);
        let start = stream_index_key(stream, from_version.max(1));
        self.db
            .range(start..)
            .take_while(|item| item.as_ref().map_or(true, |(key, _)| key.starts_with(&prefix)))
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                Ok((u64_of(&key[prefix.len()..]), u64_of(&value)))
            })
            .collect()
    }

    /// The last event recorded at or before `at_micros`, among events 1 to
    /// `head_seq`; 0 when the first event was recorded later. Recording
    /// times never decrease along the sequence ([`EventLog::append`]), so
    /// this is a binary search: about log2(`head_seq`) reads.
    pub fn last_seq_recorded_by(&self, at_micros: i64, head_seq: u64) -> Result<u64, LogError> {
        // Invariant: event `found` (or the start, 0) was recorded by then;
        // every event after `beyond` - 1 was recorded later.
        let (mut found, mut beyond) = (0u64, head_seq + 1);
        while beyond - found > 1 {
            let middle = found + (beyond - found) / 2;
            let (envelope, _) = self
                .get(middle)?
                .ok_or_else(|| LogError::Corrupt { seq: middle, problem: "missing from the log".into() })?;
            if envelope.recorded_at_micros <= at_micros {
                found = middle;
            } else {
                beyond = middle;
            }
        }
        Ok(found)
    }

    /// One event by sequence number.
    pub fn get(&self, seq: u64) -> Result<Option<(Envelope, Vec<u8>)>, LogError> {
        match self.record_at(seq)? {
            Some(record) => Ok(Some(check_record(seq, &record)?.to_owned_parts())),
            None => Ok(None),
        }
    }

    /// The last checkpoint stored, opened for reading, with its length: the
    /// file, or in a ledger that never stored one in a file, the value in
    /// the sled tree. Read once, without holding all of it in memory.
    pub fn open_checkpoint(&self) -> Result<Option<(StoredCheckpoint, u64)>, LogError> {
        if let Some(file) = open_checkpoint_file(&self.dir)? {
            return Ok(Some(file));
        }
        Ok(self.db.get(META_CHECKPOINT)?.map(|value| {
            let len = value.len() as u64;
            (Box::new(std::io::Cursor::new(value)) as StoredCheckpoint, len)
        }))
    }

    /// The last checkpoint stored with [`EventLog::put_checkpoint`] (or,
    /// in a ledger that never stored one in a file, in the sled tree).
    /// Whole, in memory: for checks that compare it byte for byte.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, LogError> {
        let Some((mut source, len)) = self.open_checkpoint()? else { return Ok(None) };
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        std::io::Read::read_to_end(&mut source, &mut bytes).map_err(LogError::Sync)?;
        Ok(Some(bytes))
    }

    pub fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, LogError> {
        let Some(index) = self.memory_index()? else {
            let key = request_key(request_id);
            return self.db.get(&key)?.map(|value| parse_request_value(&key, &value)).transpose();
        };
        let (candidates, head_seq) = {
            let index = index.read().expect("index lock");
            (index.request_candidates(request_id), index.head_seq())
        };
        // Each candidate is the first event of a command whose request id
        // has the same digest: the one that carries this id, if any, is it.
        for first_seq in candidates {
            let record = self.record_at(first_seq)?.ok_or_else(|| LogError::Corrupt {
                seq: first_seq,
                problem: "missing from the log, though its index names it".into(),
            })?;
            let first = check_record(first_seq, &record)?;
            if first.body.request_id != request_id {
                continue;
            }
            let fingerprint = fingerprint_of(&first)?;
            // Its events are the consecutive ones that carry its id.
            let mut count = 1u32;
            for item in self.records(first_seq + 1, head_seq)? {
                let (seq, record) = item?;
                if check_record(seq, &record)?.body.request_id != request_id {
                    break;
                }
                count += 1;
            }
            return Ok(Some(RequestRecord { fingerprint, first_seq, count }));
        }
        Ok(None)
    }

    /// Walks the whole log: every record decodes, sequence numbers are
    /// gapless from 1, every hash is right and links to the previous one,
    /// stream versions are consecutive. Stops at the first broken event.
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        let mut walk = self.walk(u64::MAX);
        let mut report = VerifyReport { events: 0, streams: 0, head_hash: GENESIS_HASH };
        for item in &mut walk {
            let (envelope, _) = item?;
            report.events = envelope.seq;
            report.head_hash = envelope.hash;
        }
        report.streams = walk.stream_versions().len() as u64;
        Ok(report)
    }

    /// Walks the chain from event 1 to `to_seq` (or the last event), in
    /// order, checking each record as [`LogReader::verify`] does, and yields
    /// every event that passed. It ends after the first broken event. It
    /// cannot see events missing after the last stored one: callers compare
    /// with what else they know (request entries, the stream index,
    /// checkpoints).
    pub fn walk(&self, to_seq: u64) -> ChainWalk {
        ChainWalk {
            events: StoredRecords::new(
                Some(self.db.range(event_key(1)..=event_key(to_seq.max(1)))),
                self.format.chunked(),
                1,
                to_seq.max(1),
            ),
            to_seq,
            chain: ChainCheck::default(),
            done: to_seq == 0,
        }
    }

    /// The sequence number of the last stored event (0 for an empty log).
    pub fn last_seq(&self) -> Result<u64, LogError> {
        let Some((key, value)) = self.db.scan_prefix([EVENT]).next_back().transpose()? else { return Ok(0) };
        let first_seq = last_event_seq(&key)?;
        if !self.format.chunked() {
            return Ok(first_seq);
        }
        // A broken frame counts as the record it was to be (a walk of the
        // log reports it), and ends what can be counted.
        let records = split_chunk(&value).count() as u64;
        Ok(first_seq.saturating_add(records.saturating_sub(1)))
    }

    /// The stored format's idempotency entries (v2; a v3 log has none),
    /// in request id order. A malformed entry is a
    /// [`LogError::MalformedEntry`].
    pub fn requests(&self) -> impl Iterator<Item = Result<(String, RequestRecord), LogError>> + '_ {
        self.db.scan_prefix([REQUEST]).map(|item| {
            let (key, value) = item?;
            let record = parse_request_value(&key, &value)?;
            Ok((String::from_utf8_lossy(&key[1..]).into_owned(), record))
        })
    }

    /// The stored format's stream index entries (stream, version, seq; v2:
    /// a v3 log has none), in stream and version order.
    pub fn stream_index(&self) -> impl Iterator<Item = Result<(String, u64, u64), LogError>> + '_ {
        self.db.scan_prefix([STREAM_INDEX]).map(|item| {
            let (key, value) = item?;
            let malformed = |problem: &str| LogError::MalformedEntry { key: key_text(&key), problem: problem.into() };
            if key.len() < 1 + 1 + 8 || key[key.len() - 9] != 0 {
                return Err(malformed("not stream ‖ 0 ‖ version"));
            }
            if value.len() != 8 {
                return Err(malformed("the sequence number is not 8 bytes"));
            }
            let stream = String::from_utf8_lossy(&key[1..key.len() - 9]).into_owned();
            Ok((stream, u64_of(&key[key.len() - 8..]), u64_of(&value)))
        })
    }
}

impl LogReader {
    /// Opens an existing log for reading, without creating or marking
    /// anything. sled 0.34 has no read-only mode and writes to its files when
    /// it opens them, so **only call this on a copy** of a data directory
    /// that must stay untouched (`audit::verify` does). A v3 log's indexes
    /// are not loaded: what verification reads is the events, and their
    /// head may be the damage it is to report.
    pub fn open_existing(dir: &Path) -> Result<LogReader, LogError> {
        remove_unfinished_sled_snapshots(dir)?;
        let db = sled_config(dir)
            .create_new(false)
            .open()
            .map_err(|error| LogError::Open { dir: dir.to_owned(), problem: sled_problem(&error) })?;
        match db.get(META_FORMAT)? {
            // A v1 log reads as v2: its stream head entries are ignored.
            Some(found) => match StoreFormat::of_marker(&found) {
                Some(format) => {
                    let index = if format.indexes_in_memory() { Indexes::NotLoaded } else { Indexes::InTree };
                    Ok(LogReader { db, dir: dir.to_owned(), format, index })
                }
                None => Err(format_error(dir, &found)),
            },
            None => Err(LogError::ForeignStore { dir: dir.to_owned(), found: "an unmarked sled database".into() }),
        }
    }
}

impl LogReader {
    /// The stored bytes of events `from_seq` to `to_seq`, in order, exactly
    /// as they are on disk (for backups, which copy them unchanged).
    pub(super) fn raw_events(
        &self,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, sled::IVec), LogError>> + 'static, LogError> {
        Ok(self.records(from_seq, to_seq)?.map(|item| item.map_err(LogError::from)))
    }

    /// Every idempotency entry as request id bytes and record, in request id
    /// order (for backups).
    pub(super) fn raw_requests(&self) -> impl Iterator<Item = Result<(Vec<u8>, RequestRecord), LogError>> + 'static {
        self.db.scan_prefix([REQUEST]).map(|item| {
            let (key, value) = item?;
            Ok((key[1..].to_vec(), parse_request_value(&key, &value)?))
        })
    }
}

/// Fills a new log from a backup's records and request entries
/// (`log::backup`), rebuilding the stream index from the records. The new
/// log's stored format is told by the records: for records in format 2
/// (which carry their request fingerprints, so the backup holds no
/// idempotency entries), the new logs' format, v4, whether the backup was
/// taken of a v3 or a v4 log (the records are the same; only how many
/// share a key differs), or v3 if the empty log restored into is v3; v2
/// for format 1 (idempotency entries included); the new logs' format for
/// a backup of no events. Writes in large unsynced batches and makes
/// everything durable once, in [`Restorer::finish`]: a restore that fails
/// half-way is thrown away with its directory, never used.
pub(super) struct Restorer {
    dir: PathBuf,
    /// Opened at the first record, in the format it tells.
    log: Option<EventLog>,
    batch: sled::Batch,
    /// v4: the chunk being filled.
    chunk: Chunk,
    pending: usize,
    head_recorded_at_micros: i64,
    /// A v3 log's indexes, built as the records come.
    index: LogIndex,
    /// The request id of the last record (v3: a record with another one
    /// starts a command).
    last_request_id: Option<String>,
}

/// Records per sled batch while restoring.
const RESTORE_BATCH_EVENTS: usize = 4096;

impl Restorer {
    /// A new, empty log in `dir` (which must not hold one yet).
    pub(super) fn create(dir: &Path) -> Result<Restorer, LogError> {
        let mut restorer = Restorer {
            dir: dir.to_owned(),
            log: None,
            batch: sled::Batch::default(),
            chunk: Chunk::default(),
            pending: 0,
            head_recorded_at_micros: 0,
            index: LogIndex::default(),
            last_request_id: None,
        };
        if dir.join("db").exists() {
            restorer.open(None)?; // Refused now if it is not empty.
        }
        Ok(restorer)
    }

    /// The log restored into, opened (or created in `format`, or the new
    /// logs' format) the first time.
    fn open(&mut self, format: Option<StoreFormat>) -> Result<&mut EventLog, LogError> {
        if self.log.is_none() {
            let log = EventLog::open_with(&self.dir, format.unwrap_or(StoreFormat::NEW))?;
            if log.written_seq != 0 || log.reader.db.scan_prefix([REQUEST]).next().is_some() {
                let problem = "a restore needs an empty directory".into();
                return Err(LogError::Open { dir: self.dir.clone(), problem });
            }
            self.log = Some(log);
        }
        let log = self.log.as_mut().expect("opened above");
        if let Some(format) = format.filter(|&format| format != log.format()) {
            let problem = format!(
                "the backup's records are of stored format {format:?}, but the empty log there is of {:?}: restore \
                 into a new directory",
                log.format()
            );
            return Err(LogError::Open { dir: self.dir.clone(), problem });
        }
        Ok(log)
    }

    /// Stores one record, already checked against the chain (it is
    /// `envelope`), and indexes it.
    pub(super) fn event(&mut self, envelope: &Envelope, record: &[u8]) -> Result<(), LogError> {
        let first_format = self.log.as_ref().map(EventLog::format);
        let format = match envelope.fingerprint {
            None => StoreFormat::V2,
            // An empty v3 log restored into stays v3.
            Some(_) if first_format == Some(StoreFormat::V3) => StoreFormat::V3,
            Some(_) => StoreFormat::NEW,
        };
        // After the first record the log's format is the records' (before
        // it, `open` names a target of another format).
        let restored_before = envelope.seq > 1;
        if restored_before && first_format.is_some_and(|first| first.indexes_in_memory() != format.indexes_in_memory())
        {
            let problem = "its record format differs from the backup's first record's: a log holds one".into();
            return Err(LogError::Corrupt { seq: envelope.seq, problem });
        }
        self.open(Some(format))?;
        match format {
            StoreFormat::V2 => {
                self.batch.insert(&event_key(envelope.seq)[..], record);
                self.batch.insert(
                    stream_index_key(&envelope.stream, envelope.stream_version),
                    &envelope.seq.to_be_bytes()[..],
                )
            }
            StoreFormat::V3 => self.batch.insert(&event_key(envelope.seq)[..], record),
            StoreFormat::V4 => self.chunk.push(envelope.seq, record, &mut self.batch),
        }
        if format.indexes_in_memory() {
            let first = self.last_request_id.as_deref() != Some(&envelope.request_id);
            if first {
                self.last_request_id = Some(envelope.request_id.clone());
            }
            self.index.add(envelope.seq, envelope.hash, &envelope.stream, &envelope.request_id, first);
        }
        self.head_recorded_at_micros = envelope.recorded_at_micros;
        self.count_one()
    }

    /// Stores one idempotency entry (v2: a v3 log derives them from its
    /// records, and refuses them).
    pub(super) fn request(&mut self, request_id: &str, record: &RequestRecord) -> Result<(), LogError> {
        let format = self.open(None)?.format();
        if format.indexes_in_memory() {
            let problem = format!(
                "the backup holds an idempotency entry ({request_id:?}), which a log of stored format {format:?} \
                 keeps in its records"
            );
            return Err(LogError::Open { dir: self.dir.clone(), problem });
        }
        self.batch.insert(request_key(request_id), request_value(&record.fingerprint, record.first_seq, record.count));
        self.count_one()
    }

    fn count_one(&mut self) -> Result<(), LogError> {
        self.pending += 1;
        if self.pending >= RESTORE_BATCH_EVENTS {
            let batch = std::mem::take(&mut self.batch);
            self.open(None)?.apply_batch(batch)?;
            self.pending = 0;
        }
        Ok(())
    }

    /// Makes the whole log durable (flush + fdatasync) and hands it over
    /// as an open log.
    pub(super) fn finish(mut self, chain: &ChainCheck) -> Result<EventLog, LogError> {
        self.chunk.finish(&mut self.batch);
        let batch = std::mem::take(&mut self.batch);
        self.open(None)?;
        let mut log = self.log.expect("opened above");
        log.apply_batch(batch)?;
        log.sync()?;
        log.written_seq = chain.expected_seq() - 1;
        log.durable_seq = log.written_seq;
        log.head_hash = chain.head_hash();
        log.head_recorded_at_micros = self.head_recorded_at_micros;
        match log.format() {
            StoreFormat::V2 => log.stream_versions = chain.stream_versions().clone(),
            StoreFormat::V3 | StoreFormat::V4 => {
                log.reader.index = Indexes::InMemory(Arc::new(RwLock::new(self.index)))
            }
        }
        Ok(log)
    }
}

/// Reads the stored format marker; marks a new, empty database as
/// `new_format` and upgrades a v1 log to v2 in place. Anything else is
/// refused before it is written to. The caller makes the change durable.
/// Answers the log's format, and whether it wrote.
fn check_format(dir: &Path, db: &sled::Db, new_format: StoreFormat) -> Result<(StoreFormat, bool), LogError> {
    match db.get(META_FORMAT)? {
        Some(found) if found.as_ref() == STORE_FORMAT_V1 => upgrade_from_v1(dir, db).map(|()| (StoreFormat::V2, true)),
        Some(found) => {
            StoreFormat::of_marker(&found).map(|format| (format, false)).ok_or_else(|| format_error(dir, &found))
        }
        None if db.first()?.is_some() => {
            Err(LogError::ForeignStore { dir: dir.to_owned(), found: "an unmarked sled database".into() })
        }
        None => {
            db.insert(META_FORMAT, new_format.marker())?;
            Ok((new_format, true))
        }
    }
}

/// v1 to v2: removes the stream head entries (v2 derives a stream's
/// version from its index) and marks the log v2, in one atomic batch: a
/// crash leaves the log v1, whole, or v2. Events, hashes, index and
/// idempotency entries are unchanged, so the chain and an auditor's signed
/// checkpoints stay valid. One entry per stream: seconds for millions.
fn upgrade_from_v1(dir: &Path, db: &sled::Db) -> Result<(), LogError> {
    let mut batch = sled::Batch::default();
    let mut heads = 0u64;
    for item in db.scan_prefix([V1_STREAM_HEAD]) {
        batch.remove(item?.0);
        heads += 1;
    }
    batch.insert(META_FORMAT, STORE_FORMAT);
    db.apply_batch(batch)?;
    tracing::info!(dir = %dir.display(), stream_heads_removed = heads, "upgraded the stored format from v1 to v2");
    Ok(())
}

/// A marker other than ours: a later fundledger's format, or another program's.
fn format_error(dir: &Path, found: &[u8]) -> LogError {
    let found = String::from_utf8_lossy(found).into_owned();
    if found.starts_with("fundledger-log-") {
        LogError::UnknownStoreFormat { dir: dir.to_owned(), found }
    } else {
        LogError::ForeignStore { dir: dir.to_owned(), found }
    }
}

/// What went wrong opening sled, and what to do about it.
fn sled_problem(error: &sled::Error) -> String {
    match error {
        sled::Error::Io(error) => io_problem(error),
        sled::Error::Corruption { at, .. } => format!(
            "sled finds its database file corrupt{}; it cannot be read: restore the directory from a backup",
            at.map(|at| format!(" (at {at:?})")).unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

fn io_problem(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let hint = match error.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            "; the user running fundledger must be able to read and write the directory and its files"
        }
        ErrorKind::StorageFull | ErrorKind::FileTooLarge | ErrorKind::QuotaExceeded => {
            "; the disk is full or a file size limit was reached: make room and try again"
        }
        _ => "",
    };
    format!("{error}{hint}")
}

/// What is wrong with a stored event, as a chain walk finds it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("missing: {}", match previous {
        0 => format!("the log starts at event {next}"),
        _ => format!("the log goes from event {previous} straight to event {next}"),
    })]
    Missing { previous: u64, next: u64 },
    #[error("the record stored as event {stored_as} says it is event {says}")]
    Misplaced { stored_as: u64, says: u64 },
    #[error("the record does not decode: {0}")]
    Undecodable(String),
    #[error(
        "does not link to the previous event: it names {} as the previous hash, but the previous event's hash is {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    BrokenLink { expected: Hash, found: Hash },
    #[error("its contents do not match its hash: stored {}, computed {}", hex::encode(stored), hex::encode(computed))]
    HashMismatch { stored: Hash, computed: Hash },
    #[error("stream {stream} goes to version {found}, expected version {expected}")]
    StreamVersion { stream: String, found: u64, expected: u64 },
}

/// The first broken event of a chain walk.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event {seq} is corrupt: {problem}")]
pub struct BrokenEvent {
    pub seq: u64,
    /// The stream the record names, when it decodes.
    pub stream: Option<String>,
    pub problem: ChainBreak,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(transparent)]
    Broken(BrokenEvent),
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
}

impl From<WalkError> for LogError {
    fn from(error: WalkError) -> LogError {
        match error {
            WalkError::Broken(broken) => LogError::Corrupt { seq: broken.seq, problem: broken.problem.to_string() },
            WalkError::Storage(error) => LogError::Storage(error),
        }
    }
}

/// An iterator over the chain; see [`LogReader::walk`].
pub struct ChainWalk {
    events: StoredRecords,
    to_seq: u64,
    chain: ChainCheck,
    done: bool,
}

impl ChainWalk {
    /// The last version of every stream seen so far.
    pub fn stream_versions(&self) -> &HashMap<String, u64> {
        &self.chain.versions
    }
}

/// The checks of a chain walk, one record after the other from event 1:
/// shared by [`ChainWalk`] and by backups (`log::backup`), which walk records
/// that are not in a sled tree.
pub(super) struct ChainCheck {
    expected_seq: u64,
    prev_hash: Hash,
    /// The version each stream has reached so far: one entry per stream.
    versions: HashMap<String, u64>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck { expected_seq: 1, prev_hash: GENESIS_HASH, versions: HashMap::new() }
    }
}

impl ChainCheck {
    /// The sequence number the next record must have.
    pub(super) fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    /// The hash of the last record that passed (the genesis hash before).
    pub(super) fn head_hash(&self) -> Hash {
        self.prev_hash
    }

    pub(super) fn stream_versions(&self) -> &HashMap<String, u64> {
        &self.versions
    }

    /// Checks the record stored as event `seq` and takes it as the new head.
    pub(super) fn check(&mut self, seq: u64, record: &[u8]) -> Result<(Envelope, Vec<u8>), BrokenEvent> {
        let broken = |stream: Option<&str>, problem| BrokenEvent { seq, stream: stream.map(str::to_owned), problem };
        if seq != self.expected_seq {
            return Err(BrokenEvent {
                seq: self.expected_seq,
                stream: None,
                problem: ChainBreak::Missing { previous: self.expected_seq - 1, next: seq },
            });
        }
        let decoded =
            codec::decode_record_borrowed(record).map_err(|e| broken(None, ChainBreak::Undecodable(e.to_string())))?;
        let stream = Some(decoded.body.stream);
        if decoded.body.seq != seq {
            return Err(broken(stream, ChainBreak::Misplaced { stored_as: seq, says: decoded.body.seq }));
        }
        if decoded.prev_hash != self.prev_hash {
            return Err(broken(stream, ChainBreak::BrokenLink { expected: self.prev_hash, found: decoded.prev_hash }));
        }
        let computed = codec::chain_hash(&decoded.prev_hash, decoded.body_bytes);
        if computed != decoded.hash {
            return Err(broken(stream, ChainBreak::HashMismatch { stored: decoded.hash, computed }));
        }
        let expected = self.versions.get(decoded.body.stream).map_or(1, |v| v + 1);
        if decoded.body.stream_version != expected {
            let problem = ChainBreak::StreamVersion {
                stream: decoded.body.stream.to_owned(),
                found: decoded.body.stream_version,
                expected,
            };
            return Err(broken(stream, problem));
        }
        self.versions.insert(decoded.body.stream.to_owned(), expected);
        self.prev_hash = decoded.hash;
        self.expected_seq += 1;
        Ok(decoded.to_owned_parts())
    }
}

impl Iterator for ChainWalk {
    type Item = Result<(Envelope, Vec<u8>), WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.chain.expected_seq > self.to_seq {
            return None;
        }
        let item = match self.events.next()? {
            Ok((seq, record)) => self.chain.check(seq, &record).map_err(WalkError::Broken),
            Err(RecordsError::Storage(error)) => Err(WalkError::Storage(error)),
            Err(RecordsError::Framing { seq, problem }) => {
                Err(WalkError::Broken(BrokenEvent { seq, stream: None, problem: ChainBreak::Undecodable(problem) }))
            }
        };
        // A walk ends at the first broken event: what follows it has no
        // trustworthy predecessor.
        self.done = item.is_err();
        Some(item)
    }
}

/// The stored records of a range of events, in order, each with the
/// sequence number its place gives it: see [`LogReader::records`]. In v4
/// it splits each chunk ([`split_chunk`]), handing out its records as
/// slices of it, skips those before the range (the first chunk may begin
/// before it) and ends at the first after it. It reads one key ahead: a
/// chunk must begin after the last record of the chunk before it, or the
/// records of both from there on would be stored twice, one of them
/// never read by a walk of the chain.
struct StoredRecords {
    /// `None`: an empty range, or one that has ended.
    keys: Option<sled::Iter>,
    chunked: bool,
    /// v4: the chunk being split.
    chunk: Option<ChunkCursor>,
    /// v4: the key after the chunk being split, read ahead.
    ahead: Option<(sled::IVec, sled::IVec)>,
    from_seq: u64,
    to_seq: u64,
    /// The sequence number of the next record (for naming a bad key).
    next_seq: u64,
}

/// Where [`StoredRecords`] is in a v4 chunk.
struct ChunkCursor {
    bytes: sled::IVec,
    /// Its key: the sequence number of its first record.
    first_seq: u64,
    /// The sequence number of its next record (0 past `u64::MAX`), and
    /// where that record's frame begins.
    seq: u64,
    at: usize,
    /// Where the next chunk begins, if that is at or before this chunk's
    /// last record.
    overlap_at: Option<u64>,
}

/// Why [`StoredRecords`] could not hand out the next record.
#[derive(Debug)]
enum RecordsError {
    Storage(sled::Error),
    /// A key among the events that is not `e ‖ seq`, or a v4 chunk that
    /// cannot be cut into records there: the record that would be event
    /// `seq` cannot be placed.
    Framing {
        seq: u64,
        problem: String,
    },
}

impl From<RecordsError> for LogError {
    fn from(error: RecordsError) -> LogError {
        match error {
            RecordsError::Storage(error) => LogError::Storage(error),
            RecordsError::Framing { seq, problem } => LogError::Corrupt { seq, problem },
        }
    }
}

impl StoredRecords {
    fn new(keys: Option<sled::Iter>, chunked: bool, from_seq: u64, to_seq: u64) -> StoredRecords {
        StoredRecords { keys, chunked, chunk: None, ahead: None, from_seq, to_seq, next_seq: from_seq }
    }

    /// Ends the iteration: nothing more is read.
    fn end(&mut self) {
        (self.keys, self.chunk, self.ahead) = (None, None, None);
    }

    /// Ends the iteration with `error`: nothing after a record that cannot
    /// be placed can be placed either.
    fn broken(&mut self, seq: u64, problem: String) -> Option<Result<(u64, sled::IVec), RecordsError>> {
        self.end();
        Some(Err(RecordsError::Framing { seq, problem }))
    }

    fn next_key(&mut self) -> Option<Result<(sled::IVec, sled::IVec), RecordsError>> {
        if let Some(ahead) = self.ahead.take() {
            return Some(Ok(ahead));
        }
        Some(self.keys.as_mut()?.next()?.map_err(RecordsError::Storage))
    }
}

impl Iterator for StoredRecords {
    type Item = Result<(u64, sled::IVec), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(chunk) = &mut self.chunk {
                if chunk.at < chunk.bytes.len() {
                    let this = chunk.seq;
                    if this > self.to_seq {
                        self.end();
                        return None;
                    }
                    if this == 0 {
                        return self.broken(u64::MAX, "its chunk goes on past the last sequence number".into());
                    }
                    if chunk.overlap_at == Some(this) {
                        let problem = format!(
                            "it is stored twice: in the chunk of events from {} on, and in the one from {this} on",
                            chunk.first_seq
                        );
                        return self.broken(this, problem);
                    }
                    let (start, len) = match frame_at(&chunk.bytes, chunk.at) {
                        Ok(frame) => frame,
                        Err(problem) => return self.broken(this, problem),
                    };
                    chunk.at = start + len;
                    chunk.seq = this.wrapping_add(1);
                    self.next_seq = chunk.seq;
                    if this >= self.from_seq {
                        return Some(Ok((this, chunk.bytes.subslice(start, len))));
                    }
                    continue;
                }
                self.chunk = None;
            }
            let (key, value) = match self.next_key()? {
                Ok(item) => item,
                Err(error) => return Some(Err(error)),
            };
            let Some(seq) = event_seq(&key) else {
                let problem = format!("a key among the events is not `e` and a sequence number: {}", key_text(&key));
                return self.broken(self.next_seq, problem);
            };
            if !self.chunked {
                self.next_seq = seq.wrapping_add(1);
                return Some(Ok((seq, value)));
            }
            if value.is_empty() {
                return self.broken(seq, "its chunk holds no record".into());
            }
            // The next chunk must begin after this one's last record.
            let records = split_chunk(&value).take_while(Result::is_ok).count() as u64;
            self.ahead = match self.keys.as_mut().and_then(Iterator::next) {
                Some(Ok(item)) => Some(item),
                Some(Err(error)) => return Some(Err(RecordsError::Storage(error))),
                None => None,
            };
            let overlap_at = self
                .ahead
                .as_ref()
                .and_then(|(key, _)| event_seq(key))
                .filter(|&next| next < seq.saturating_add(records));
            self.chunk = Some(ChunkCursor { bytes: value, first_seq: seq, seq, at: 0, overlap_at });
        }
    }
}

/// The records of a v4 chunk, as (start, length) in it, in order; an
/// error for a frame that does not fit, and nothing after it.
pub fn split_chunk(chunk: &[u8]) -> impl Iterator<Item = Result<(usize, usize), String>> + '_ {
    let mut at = Some(0);
    std::iter::from_fn(move || {
        let here = at.filter(|&here| here < chunk.len())?;
        let frame = frame_at(chunk, here);
        at = frame.as_ref().ok().map(|&(start, len)| start + len);
        Some(frame)
    })
}

/// The frame of a v4 chunk at `at`: where its record starts, and its length.
fn frame_at(chunk: &[u8], at: usize) -> Result<(usize, usize), String> {
    let rest = chunk.len() - at;
    let Some(length) = chunk.get(at..at + 4) else {
        return Err(format!("its chunk ends in {rest} bytes that are not a record's 4-byte length"));
    };
    let len = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
    if len == 0 || len > rest - 4 {
        return Err(format!("its chunk says it is {len} bytes long, but {} bytes are left", rest - 4));
    }
    Ok((at + 4, len))
}

/// Appends `record` to a v4 chunk: its length (u32 BE), then its bytes
/// (what [`split_chunk`] cuts apart again).
pub fn frame_record(chunk: &mut Vec<u8>, record: &[u8]) {
    let len = u32::try_from(record.len()).expect("a record is far smaller than 4 GiB");
    chunk.extend_from_slice(&len.to_be_bytes());
    chunk.extend_from_slice(record);
}

/// A v4 chunk being filled with consecutive records.
#[derive(Default)]
struct Chunk {
    first_seq: u64,
    records: usize,
    bytes: Vec<u8>,
}

impl Chunk {
    /// Adds the record of event `seq` (the one after the last added), and
    /// puts the chunk in `batch` once it holds [`CHUNK_RECORDS`].
    fn push(&mut self, seq: u64, record: &[u8], batch: &mut sled::Batch) {
        if self.records == 0 {
            self.first_seq = seq;
            self.bytes.reserve(CHUNK_RECORDS * (4 + record.len()));
        }
        frame_record(&mut self.bytes, record);
        self.records += 1;
        if self.records == CHUNK_RECORDS {
            self.finish(batch);
        }
    }

    /// Puts what the chunk holds, if anything, in `batch`.
    fn finish(&mut self, batch: &mut sled::Batch) {
        if self.records > 0 {
            batch.insert(&event_key(self.first_seq)[..], std::mem::take(&mut self.bytes));
            self.records = 0;
        }
    }
}

/// The most [`LogReader::read`] reserves room for up front.
const READ_CAPACITY_MAX: usize = 4096;

/// The record stored as event `seq`, decoded and checked right after
/// reading it back: it must say it is event `seq`, and match its hash.
fn check_record(seq: u64, record: &[u8]) -> Result<CheckedRecord<'_>, LogError> {
    let decoded = codec::decode_record_borrowed(record).map_err(|e| match e {
        CodecError::UnknownFormat(found) => LogError::UnknownRecordFormat { seq, found },
        e => corrupt(seq, e),
    })?;
    if decoded.body.seq != seq || !decoded.hash_matches() {
        return Err(LogError::Corrupt { seq, problem: "record does not match its key or hash".into() });
    }
    Ok(decoded)
}

/// The fingerprint a v3 log's record carries (record format 2).
fn fingerprint_of(record: &CheckedRecord) -> Result<Hash, LogError> {
    record.fingerprint.ok_or_else(|| LogError::Corrupt {
        seq: record.body.seq,
        problem: "in record format 1, which carries no request fingerprint, in a log of stored format v3 or v4".into(),
    })
}

fn corrupt(seq: u64, error: CodecError) -> LogError {
    LogError::Corrupt { seq, problem: error.to_string() }
}

fn event_key(seq: u64) -> [u8; 9] {
    let mut key = [EVENT; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number an event key names; `None` for a key among the
/// events that is not one (damage).
fn event_seq(key: &[u8]) -> Option<u64> {
    (key.len() == 9 && key[0] == EVENT).then(|| u64_of(&key[1..9]))
}

/// [`event_seq`] of the last key among the events.
fn last_event_seq(key: &[u8]) -> Result<u64, LogError> {
    event_seq(key).ok_or_else(|| LogError::MalformedEntry {
        key: key_text(key),
        problem: "the last key among the events is not `e` and a sequence number".into(),
    })
}

fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn request_key(request_id: &str) -> Vec<u8> {
    let mut key = vec![REQUEST];
    key.extend_from_slice(request_id.as_bytes());
    key
}

fn parse_request_value(key: &[u8], value: &[u8]) -> Result<RequestRecord, LogError> {
    if value.len() != 44 {
        return Err(LogError::MalformedEntry {
            key: key_text(key),
            problem: format!("{} bytes, not fingerprint ‖ first seq ‖ count (44 bytes)", value.len()),
        });
    }
    Ok(RequestRecord {
        fingerprint: value[..32].try_into().expect("sized above"),
        first_seq: u64_of(&value[32..40]),
        count: u32::from_be_bytes(value[40..44].try_into().expect("sized above")),
    })
}

/// A key for messages: its prefix letter and the printable rest.
fn key_text(key: &[u8]) -> String {
    key.iter().map(|&b| if b.is_ascii_graphic() { char::from(b).to_string() } else { format!("\\x{b:02x}") }).collect()
}

fn request_value(fingerprint: &Hash, first_seq: u64, count: u32) -> Vec<u8> {
    let mut value = Vec::with_capacity(44);
    value.extend_from_slice(fingerprint);
    value.extend_from_slice(&first_seq.to_be_bytes());
    value.extend_from_slice(&count.to_be_bytes());
    value
}

/// `s ‖ stream ‖ 0`: where a stream's index entries begin.
fn stream_index_prefix(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 10);
    key.push(STREAM_INDEX);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key
}

fn stream_index_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = stream_index_prefix(stream);
    key.extend_from_slice(&version.to_be_bytes());
    key
}
