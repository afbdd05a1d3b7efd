//! The read side: the fund state as of the last durable event, for queries.
//!
//! A projection is a pure fold over committed events. The live one is
//! updated by the writer after each group commit; [`Projections::replay`]
//! rebuilds it from the log, and the two must be identical — byte for byte
//! in [`Projections::encoded`]. It never sees an event that is not durable.

use crate::domain::applications::Applications;
use crate::domain::applications::Stored;
use crate::domain::{Event, FundState};
use crate::log::codec::{CodecError, RecordBodyRef};
use crate::log::{codec, Envelope, Hash, Link, LogError, LogReader, StoredCheckpoint, GENESIS_HASH};
use chunk::{decode_chunk, ChunkEncoder};

mod chunk;
mod event_decoder;

/// How many events a replay reads per step.
const REPLAY_BATCH_EVENTS_MAX: usize = 4096;
/// The layout version of a checkpoint, of its header and of the encoded
/// `FundState`: **bump it whenever `FundState` or `evolve` changes**, so that
/// a checkpoint of another version is ignored (and the projections replayed
/// from the first event), never misread or trusted with an older fold.
/// Version 3 added the checksum trailer; version 4 stores the applications
/// after the rest of the state, in chunks that a start decodes on two
/// threads (see [`Projections::read_checkpoint`]); version 5 stores a
/// chunk's pots' keys once, its shares naming them by number (`chunk`).
const CHECKPOINT_FORMAT: u8 = 5;
/// A checkpoint's chunk of applications ends after this many applications
/// or once it holds [`CHECKPOINT_CHUNK_BYTES`], whichever comes first.
/// A chunk is what a start decodes at the first use of one of its
/// applications (about 1 MB: a first lookup took 1.6–6.9 ms at 10 M
/// events, against 17–32 ms for the 16,384 applications a chunk held
/// before).
const CHECKPOINT_CHUNK_APPLICATIONS: usize = 2_048;
const CHECKPOINT_CHUNK_BYTES: usize = 1 << 20;
/// The most bytes of applications a chunk of any version of layout 5 was
/// cut at: earlier versions cut at 8 MiB, and their checkpoints still read.
const CHECKPOINT_CHUNK_BYTES_READ: usize = 8 << 20;
/// The longest chunk a checkpoint may claim: a full chunk plus one
/// application of the most a decoder accepts
/// ([`codec::CHECKPOINT_ENTRY_BYTES_MAX`]; a real one is kilobytes, which
/// leaves the room for the chunk's list of pots). A longer length is damage.
pub const CHECKPOINT_CHUNK_BYTES_MAX: u64 = (CHECKPOINT_CHUNK_BYTES_READ + codec::CHECKPOINT_ENTRY_BYTES_MAX) as u64;
/// format ‖ head seq ‖ head hash ‖ head recording time.
const CHECKPOINT_HEADER_BYTES: usize = 1 + 8 + 32 + 8;
/// CRC-32 (IEEE) of everything before it, big-endian. It finds damage (a
/// flipped bit that would still decode into other figures), not forgery:
/// whoever can rewrite the file can rewrite the log, which the chain and
/// signed checkpoints guard.
const CHECKPOINT_TRAILER_BYTES: usize = 4;
/// Why a checkpoint of an earlier layout is not used: a ledger replays and
/// then replaces it; an auditor's verification leaves it unchecked.
pub const CHECKPOINT_OLDER_FORMAT: &str = "checkpoint of an older format";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Projections {
    pub state: FundState,
    /// The last event folded in (0 before the first).
    pub head_seq: u64,
    pub head_hash: Hash,
    pub head_recorded_at_micros: i64,
}

impl Default for Projections {
    fn default() -> Self {
        Projections { state: FundState::default(), head_seq: 0, head_hash: GENESIS_HASH, head_recorded_at_micros: 0 }
    }
}

impl Projections {
    /// Folds in the next event. Events arrive exactly once, in order.
    pub fn apply(&mut self, link: &Link, event: &Event) {
        assert_eq!(link.seq, self.head_seq + 1, "projection fed out of order");
        assert_eq!(link.prev_hash, self.head_hash, "projection fed an event of another chain");
        self.state.evolve(event);
        self.head_seq = link.seq;
        self.head_hash = link.hash;
        self.head_recorded_at_micros = link.recorded_at_micros;
    }

    /// Takes `state`, the state after a durable batch of events `first` to
    /// `last`, which must follow on from the current head, and returns the
    /// state it replaces (for the caller to drop outside any lock).
    pub fn advance(&mut self, state: FundState, first: &Envelope, last: &Envelope) -> FundState {
        assert_eq!(first.seq, self.head_seq + 1, "projection fed out of order");
        assert_eq!(first.prev_hash, self.head_hash, "projection fed an event of another chain");
        assert!(last.seq >= first.seq, "a batch ends before it starts");
        self.head_seq = last.seq;
        self.head_hash = last.hash;
        self.head_recorded_at_micros = last.recorded_at_micros;
        std::mem::replace(&mut self.state, state)
    }

    /// Rebuilds the projections from the log, events 1 to `to_seq`.
    pub fn replay(reader: &LogReader, to_seq: u64) -> Result<Projections, LogError> {
        let mut projections = Projections::default();
        projections.replay_onto(reader, to_seq)?;
        Ok(projections)
    }

    /// Loads the projections as of `head_seq`: from the stored checkpoint
    /// plus the events after it when the checkpoint verifies against the
    /// log, otherwise by a full replay. Says which in the second value.
    /// Every application of the checkpoint is decoded first (one that does
    /// not decode is a checkpoint not used); a start, which decodes them as
    /// they are used, goes through [`Projections::claim`] and
    /// [`Projections::load_claimed`].
    pub fn load(reader: &LogReader, head_seq: u64) -> Result<(Projections, Loaded), LogError> {
        Projections::load_checked(reader, head_seq, Projections::claim(reader)?, true)
    }

    /// What the log's stored checkpoint (if there is one) claims, read but
    /// for its applications, which are decoded as they are used.
    pub fn claim(reader: &LogReader) -> Result<Option<Claimed>, LogError> {
        Projections::claimed(reader.open_checkpoint()?)
    }

    /// What a stored checkpoint (if there is one) claims, read but for its
    /// applications.
    fn claimed(stored: Option<(StoredCheckpoint, u64)>) -> Result<Option<Claimed>, LogError> {
        stored.map(|(source, len)| Projections::read_checkpoint(source, len).map_err(LogError::Sync)).transpose()
    }

    /// The checkpoint file in data directory `dir`, read without the log
    /// (its applications not decoded): what it claims, not yet checked
    /// (`Err(reason)` if it does not read); `None` if there is no file. For
    /// a start, which reads it while the log opens, then hands it to
    /// [`Projections::load_claimed`].
    pub fn read_checkpoint_file(dir: &std::path::Path) -> Result<Option<Claimed>, LogError> {
        Projections::claimed(crate::log::open_checkpoint_file(dir)?)
    }

    /// [`Projections::load`] with the checkpoint already read: `claimed` is
    /// trusted only if it verifies against the log, as there, and its
    /// applications are left as they are (decoded as they are used, when
    /// read by [`Projections::claim`]). `None`: there is no checkpoint.
    pub fn load_claimed(
        reader: &LogReader,
        head_seq: u64,
        claimed: Option<Claimed>,
    ) -> Result<(Projections, Loaded), LogError> {
        Projections::load_checked(reader, head_seq, claimed, false)
    }

    /// [`Projections::load_claimed`]; with `decode_all`, a checkpoint that
    /// verifies against the log has all its applications decoded before it
    /// is used (after the check: one that is not used is not decoded), and
    /// is not used if one does not decode.
    fn load_checked(
        reader: &LogReader,
        head_seq: u64,
        claimed: Option<Claimed>,
        decode_all: bool,
    ) -> Result<(Projections, Loaded), LogError> {
        let Some(claimed) = claimed else {
            return Ok((Projections::replay(reader, head_seq)?, Loaded::Replayed { reason: "no checkpoint" }));
        };
        let trusted = match claimed {
            Ok(claimed) => Projections::checked_against(reader, claimed, head_seq)?,
            Err(reason) => Err(reason),
        };
        let trusted = trusted.and_then(|projections| match decode_all {
            true => projections.all_decoded(),
            false => Ok(projections),
        });
        match trusted {
            Ok(mut projections) => {
                let from = projections.head_seq;
                projections.replay_onto(reader, head_seq)?;
                Ok((projections, Loaded::FromCheckpoint { checkpoint_seq: from }))
            }
            Err(reason) => Ok((Projections::replay(reader, head_seq)?, Loaded::Replayed { reason })),
        }
    }

    /// A decoded checkpoint, trusted only if its head is an event of this
    /// log, with this hash, at or before `head_seq`. `Ok(Err(reason))` when
    /// it cannot be trusted.
    fn checked_against(
        reader: &LogReader,
        projections: Projections,
        head_seq: u64,
    ) -> Result<Result<Projections, &'static str>, LogError> {
        let (seq, hash) = (projections.head_seq, projections.head_hash);
        if seq > head_seq {
            return Ok(Err("checkpoint ahead of the log"));
        }
        let matches = match seq {
            0 => hash == GENESIS_HASH,
            _ => reader.get(seq)?.is_some_and(|(envelope, _)| envelope.hash == hash),
        };
        if !matches {
            return Ok(Err("checkpoint does not match the log's hash at its sequence"));
        }
        Ok(Ok(projections))
    }

    /// Decodes a checkpoint without looking at the log: what it claims, not
    /// yet checked, every application decoded (a start decodes them as they
    /// are used: [`Projections::read_checkpoint`]). `Err(reason)` when it is
    /// of an unknown format or does not decode.
    pub fn decode_checkpoint(bytes: &[u8]) -> Result<Projections, &'static str> {
        Projections::read_checkpoint(bytes, bytes.len() as u64).expect("reading from memory cannot fail")?.all_decoded()
    }

    /// These projections with every application of their checkpoint
    /// decoded; a checkpoint whose applications do not all decode is not
    /// used.
    fn all_decoded(self) -> Result<Projections, &'static str> {
        match self.state.applications.decode_stored() {
            Ok(()) => Ok(self),
            Err(_) => Err("checkpoint state does not decode"),
        }
    }

    /// A checkpoint from a reader of `len` bytes, read once, its
    /// applications kept as encoded chunks to be decoded as they are used
    /// (about half the size of the decoded applications; each chunk's
    /// bytes are freed once it is decoded), the rest of the state decoded.
    /// The CRC-32 is computed as the bytes go by; a state read from bytes
    /// whose checksum does not match is dropped, and the checksum is
    /// reported before any decoding error. The outer error is an I/O error
    /// of the reader. [`Projections::decode_checkpoint`] also decodes the
    /// applications.
    pub fn read_checkpoint(
        mut source: impl std::io::Read,
        len: u64,
    ) -> std::io::Result<Result<Projections, &'static str>> {
        use std::io::Read as _;
        let header_and_trailer = (CHECKPOINT_HEADER_BYTES + CHECKPOINT_TRAILER_BYTES) as u64;
        let mut format = [0u8; 1];
        if len == 0 {
            return Ok(Err("checkpoint of an unknown format"));
        }
        source.read_exact(&mut format)?;
        if (1..CHECKPOINT_FORMAT).contains(&format[0]) {
            return Ok(Err(CHECKPOINT_OLDER_FORMAT));
        }
        if len < header_and_trailer || format[0] != CHECKPOINT_FORMAT {
            return Ok(Err("checkpoint of an unknown format"));
        }
        let mut hashed = Crc32Reader {
            inner: (&mut source).take(len - 1 - CHECKPOINT_TRAILER_BYTES as u64),
            crc: crc32fast::Hasher::new(),
        };
        hashed.crc.update(&format);
        let (header, state, leftover) = {
            let mut buffered = std::io::BufReader::with_capacity(1 << 20, &mut hashed);
            let mut header = [0u8; CHECKPOINT_HEADER_BYTES - 1];
            buffered.read_exact(&mut header)?;
            let state = decode_state(&mut buffered)?;
            // What the decoder left (after an error, or trailing bytes):
            // read to the end all the same, for the checksum.
            let leftover = std::io::copy(&mut buffered, &mut std::io::sink())?;
            (header, state, leftover)
        };
        let checksum = hashed.crc.finalize();
        let mut trailer = [0u8; CHECKPOINT_TRAILER_BYTES];
        source.read_exact(&mut trailer)?;
        if checksum.to_be_bytes() != trailer {
            return Ok(Err("checkpoint damaged: its checksum does not match"));
        }
        let (Ok(state), 0) = (state, leftover) else {
            return Ok(Err("checkpoint state does not decode"));
        };
        let seq = u64::from_be_bytes(header[0..8].try_into().expect("sized"));
        let hash: Hash = header[8..40].try_into().expect("sized");
        let recorded_at = i64::from_be_bytes(header[40..48].try_into().expect("sized"));
        Ok(Ok(Projections { state, head_seq: seq, head_hash: hash, head_recorded_at_micros: recorded_at }))
    }

    /// The checkpoint of these projections, for [`Projections::read_checkpoint`]:
    /// header ‖ the state without its applications ‖ the applications in
    /// chunks, each `length (u64 BE) ‖ the chunk's pots ‖ (id, application)
    /// ‖ (id, application) ‖ …` with shares naming their pots by number
    /// (`chunk`), in id order ‖ a zero length ‖ CRC-32.
    pub fn checkpoint_bytes(&self) -> Vec<u8> {
        self.checkpoint_bytes_in_chunks(CHECKPOINT_CHUNK_APPLICATIONS)
    }

    /// **Tests only**: [`Projections::checkpoint_bytes`] with chunks of
    /// `applications_per_chunk` applications.
    #[doc(hidden)]
    pub fn checkpoint_bytes_in_chunks(&self, applications_per_chunk: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(CHECKPOINT_HEADER_BYTES + 4096);
        bytes.push(CHECKPOINT_FORMAT);
        bytes.extend_from_slice(&self.head_seq.to_be_bytes());
        bytes.extend_from_slice(&self.head_hash);
        bytes.extend_from_slice(&self.head_recorded_at_micros.to_be_bytes());
        // The state's other maps are small; its applications clone in O(1).
        let mut rest = self.state.clone();
        let applications = std::mem::take(&mut rest.applications);
        bytes.extend_from_slice(&codec::encode(&rest));
        let mut chunk = ChunkEncoder::default();
        for (id, application) in applications.iter() {
            chunk.push(id, application);
            if chunk.applications() >= applications_per_chunk || chunk.entry_bytes() >= CHECKPOINT_CHUNK_BYTES {
                std::mem::take(&mut chunk).write_to(&mut bytes);
            }
        }
        if chunk.applications() > 0 {
            chunk.write_to(&mut bytes);
        }
        // The zero length that ends the chunks.
        bytes.extend_from_slice(&0u64.to_be_bytes());
        let checksum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&checksum.to_be_bytes());
        bytes
    }

    /// Folds in the events after the current head, up to `to_seq`.
    fn replay_onto(&mut self, reader: &LogReader, to_seq: u64) -> Result<(), LogError> {
        for_each_event(reader, self.head_seq + 1, to_seq, |link, event| self.apply(link, event))
    }

    /// The canonical bytes of the projected state and head, for comparing
    /// a live projection with a replayed one.
    pub fn encoded(&self) -> Vec<u8> {
        let mut bytes = codec::encode(&self.state);
        bytes.extend_from_slice(&self.head_seq.to_be_bytes());
        bytes.extend_from_slice(&self.head_hash);
        bytes
    }
}

/// The state of a checkpoint (format 5), read from `source`: the rest of
/// the state, then the applications' chunks up to the zero length.
///
/// The chunks are read, not decoded: each is kept as bytes, with the first
/// application id it holds, and decoded when first used
/// ([`crate::domain::applications::Stored`]; the ledger starts a thread
/// that decodes them all once it serves). At 10 M events decoding them was
/// 70% of a start's CPU, and a start is now bound by sled's open instead.
/// What is checked here: the framing (every length within bounds, the zero
/// length that ends them, nothing after it), each chunk's list of pots and
/// first id, and that the chunks' first ids rise; the rest of a chunk when
/// it is decoded.
///
/// `Ok(Err)` when the bytes do not decode (or end early); `Err` is an I/O
/// error of the reader.
fn decode_state(source: &mut impl std::io::Read) -> std::io::Result<Result<FundState, CodecError>> {
    let mut state: FundState = match codec::decode_checkpoint_from(source) {
        Ok(state) => state,
        Err(error) => return Ok(Err(error)),
    };
    if !state.applications.is_empty() {
        return undecodable("applications before their chunks");
    }
    // Every grant's share draws on one of the fund's pots.
    let pots_max = state.pots.len();
    let mut chunks = Vec::new();
    loop {
        let mut length = [0u8; 8];
        if let Err(error) = source.read_exact(&mut length) {
            return eof_is_undecodable(error, "the checkpoint ends early");
        }
        let length = u64::from_be_bytes(length);
        if length == 0 {
            break;
        }
        if length > CHECKPOINT_CHUNK_BYTES_MAX {
            return undecodable("a chunk longer than a chunk can be");
        }
        // Grown a step at a time as the bytes come (a step is a chunk of the
        // most any version cuts), so that a damaged length allocates no more
        // than the bytes there are, and a step. The first step's pages come
        // zeroed from the allocator's fresh memory.
        let length = length as usize;
        let mut bytes = vec![0u8; length.min(CHECKPOINT_CHUNK_BYTES_READ)];
        let mut read = 0;
        loop {
            if let Err(error) = source.read_exact(&mut bytes[read..]) {
                return eof_is_undecodable(error, "the checkpoint ends inside a chunk");
            }
            read = bytes.len();
            if read == length {
                break;
            }
            let step = length.min(read + CHECKPOINT_CHUNK_BYTES_READ);
            // Exactly: a chunk of 8 MiB and a few bytes (as earlier versions
            // cut them) would otherwise double its room, then copy it out.
            bytes.reserve_exact(step - read);
            bytes.resize(step, 0);
        }
        let bytes = bytes.into_boxed_slice();
        match chunk::first_id(&bytes, pots_max) {
            Ok(first) => chunks.push((first, bytes)),
            Err(error) => return Ok(Err(error)),
        }
    }
    let decode = move |bytes: &[u8]| decode_chunk(bytes, pots_max).map_err(|error| error.to_string());
    match Stored::new(chunks, Box::new(decode)) {
        Ok(stored) => {
            state.applications = Applications::from_stored(stored);
            Ok(Ok(state))
        }
        Err(problem) => Ok(Err(CodecError::Decode(problem))),
    }
}

fn undecodable<T>(problem: &str) -> std::io::Result<Result<T, CodecError>> {
    Ok(Err(CodecError::Decode(problem.to_owned())))
}

/// A checkpoint that ends early does not decode (`problem`); other read
/// errors are I/O.
fn eof_is_undecodable<T>(error: std::io::Error, problem: &str) -> std::io::Result<Result<T, CodecError>> {
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => undecodable(problem),
        _ => Err(error),
    }
}

/// A reader that computes the CRC-32 of what it reads.
struct Crc32Reader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: std::io::Read> std::io::Read for Crc32Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads events `from_seq` to `to_seq` of the log in order, in bounded
/// pages, decodes each and hands it to `f`. A missing event is corruption.
///
/// Pipelined: [`REPLAY_READERS`] scoped reading threads walk sled, check
/// every record against its hash and decode its payload, page `k` by
/// reader `k mod REPLAY_READERS`, each at most [`REPLAY_PAGES_AHEAD`] pages
/// ahead, while this thread folds the pages in order. Reading is most of a
/// replay, so two readers and the fold keep both cores busy
/// (`docs/BENCHMARKS.md`). Nothing is handed to `f` out of order or twice,
/// and a page with a missing or broken event is handed over not at all:
/// the first such page in log order gives the error instead (within that
/// page, the first event that is missing, or whose record or payload is
/// broken, in log order).
pub fn for_each_event(
    reader: &LogReader,
    from_seq: u64,
    to_seq: u64,
    mut f: impl FnMut(&Link, &Event),
) -> Result<(), LogError> {
    let from_seq = from_seq.max(1);
    if from_seq > to_seq {
        return Ok(());
    }
    let page_events = REPLAY_BATCH_EVENTS_MAX as u64;
    let pages = (to_seq - from_seq) / page_events + 1;
    // The events of page `n`: it starts at a fixed place, so that readers
    // can split the log between them without talking to each other.
    let page = move |n: u64| {
        let first = from_seq + n * page_events;
        (first, first.saturating_add(page_events - 1).min(to_seq))
    };
    let readers = REPLAY_READERS.min(pages);
    std::thread::scope(|scope| {
        let queues: Vec<_> = (0..readers)
            .map(|offset| {
                let (send, queue) = std::sync::mpsc::sync_channel(REPLAY_PAGES_AHEAD);
                // Folded pages come back to be dropped here: the reader
                // allocated them, and frees by the thread that allocated are
                // the cheap ones; the folding thread is the replay's
                // bottleneck once two threads read.
                let (give_back, folded) = std::sync::mpsc::channel::<Vec<(Link, Event)>>();
                let reading = std::thread::Builder::new().name(format!("replay-read-{offset}"));
                let started = reading.spawn_scoped(scope, move || {
                    for n in (offset..pages).step_by(readers as usize) {
                        let (first, last) = page(n);
                        let read = read_page(reader, first, last);
                        let failed = read.is_err();
                        // After an error, or once the folding side has
                        // stopped listening (it saw an error, or `f`
                        // panicked), stop.
                        if send.send(read).is_err() || failed {
                            return;
                        }
                        folded.try_iter().for_each(drop);
                    }
                });
                // As `scope.spawn` would, but the thread has a name (for
                // `top -H`, `perf` and panics).
                started.expect("the system starts a replay thread");
                (queue, give_back)
            })
            .collect();
        for n in 0..pages {
            let (queue, give_back) = &queues[(n % readers) as usize];
            let events = queue.recv().expect("each reader sends its pages or an error")?;
            for (link, event) in &events {
                f(link, event);
            }
            // A reader that has finished no longer takes it: dropped here.
            let _ = give_back.send(events);
        }
        Ok(())
    })
}

/// Threads that read and decode the log for [`for_each_event`].
const REPLAY_READERS: u64 = 2;

/// Decoded pages each reading thread of [`for_each_event`] may hold ready.
/// With the page being read, the one being folded and the folded ones not
/// yet taken back (the reader frees them after each page it sends), a
/// replay holds at most about a dozen pages of
/// [`REPLAY_BATCH_EVENTS_MAX`] events at once, however long the log.
const REPLAY_PAGES_AHEAD: usize = 2;

/// Events `first` to `last`, each checked and decoded: all of them, in
/// order, or an error. Each is decoded straight from the stored record:
/// of its envelope only its place in the chain is kept.
fn read_page(reader: &LogReader, first: u64, last: u64) -> Result<Vec<(Link, Event)>, LogError> {
    let missing = |seq| LogError::Corrupt { seq, problem: "missing from the log".into() };
    // A page holds at most REPLAY_BATCH_EVENTS_MAX events; a catch-up after
    // a checkpoint or an answer as of an event is often far fewer.
    let asked = (last - first).min(REPLAY_BATCH_EVENTS_MAX as u64 - 1) as usize + 1;
    let mut out = Vec::with_capacity(asked);
    let mut expected = first;
    reader.read_each(first, last, REPLAY_BATCH_EVENTS_MAX, |record| {
        if record.body.seq != expected {
            return Err(missing(expected));
        }
        out.push((record.link(), decode_body_event(&record.body)?));
        // Wrapping: the event after one stored at u64::MAX is never asked for.
        expected = expected.wrapping_add(1);
        Ok(())
    })?;
    // Written so that a page ending at u64::MAX cannot overflow.
    let read = out.len() as u64;
    if read <= last - first {
        return Err(missing(first + read));
    }
    Ok(out)
}

/// A decoded checkpoint, not yet checked against the log: the projections
/// it claims, or why it cannot be used.
pub type Claimed = Result<Projections, &'static str>;

/// How [`Projections::load`] got the projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loaded {
    FromCheckpoint { checkpoint_seq: u64 },
    Replayed { reason: &'static str },
}

/// An event's payload, as every read decodes it: by the fast path
/// (`projections/event_decoder.rs`), or by serde where that declines
/// (serde then gives the value or the error).
pub fn decode_payload(payload: &[u8]) -> Result<Event, codec::CodecError> {
    match event_decoder::decode(payload) {
        Some(event) => Ok(event),
        None => codec::decode(payload),
    }
}

/// The fast path of [`decode_payload`] alone, for the benchmarks and the
/// fuzz target: `None` where it leaves the payload to serde.
#[doc(hidden)]
pub fn decode_payload_fast(payload: &[u8]) -> Option<Event> {
    event_decoder::decode(payload)
}

/// Decodes an event's payload, checking it against its envelope.
pub fn decode_event(envelope: &Envelope, payload: &[u8]) -> Result<Event, LogError> {
    decode_body_event(&envelope.body(payload))
}

/// [`decode_event`] of a record's body.
fn decode_body_event(body: &RecordBodyRef) -> Result<Event, LogError> {
    let corrupt = |problem: String| LogError::Corrupt { seq: body.seq, problem };
    if body.schema_version != crate::domain::EVENT_SCHEMA_VERSION {
        return Err(corrupt(format!("unknown schema version {}", body.schema_version)));
    }
    let event = decode_payload(body.payload).map_err(|e| corrupt(e.to_string()))?;
    if event.type_name() != body.event_type || !event.stream().is(body.stream) {
        return Err(corrupt(format!(
            "payload is a {} of {}, envelope says {} of {}",
            event.type_name(),
            event.stream(),
            body.event_type,
            body.stream
        )));
    }
    Ok(event)
}
