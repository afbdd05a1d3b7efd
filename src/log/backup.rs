//! Backups: one file holding a log's events up to a head, byte for byte,
//! and the idempotency entries of the requests that recorded them.
//!
//! [`write_backup`] takes a backup of a log **while its writer goes on**:
//! events 1 to a durable head are never changed again, and the idempotency
//! entry of a request is written in the same atomic batch as its events, so
//! copying the events up to a head fixed at the start, and the entries whose
//! events all lie at or before it, gives the log exactly as it was at that
//! head. It checks the chain as it reads, so a log that is already broken
//! gives no backup instead of one that restore would refuse.
//!
//! [`restore`] builds a new log from a backup, in the stored format of the
//! log backed up: the same record bytes (so the same hashes), a v2 log's
//! idempotency entries as they were (its records do not carry the request
//! fingerprints, and a client's retry after a restore must still get its
//! original answer; a v3 log's records carry them, and its backup holds no
//! entries), and the indexes rebuilt from the records. It checks everything
//! before it trusts anything: the chain of every record, the head hash the
//! header promises, the form of every request entry, and the SHA-256 of the
//! whole file. Projections are not in a backup (a replay makes them), nor is
//! the ledger's signing key (a secret, kept apart; see docs/RELIABILITY.md).
//!
//! Format version 1; integers are big-endian:
//!
//! ```text
//! header    8   magic "FLBACKUP"
//!           2   format version (1)
//!           8   head seq: the number of event records that follow
//!          32   head hash: the hash of event `head seq` (32 zeros when 0)
//! events        head seq times, events 1, 2, … in order:
//!           4     length L of the record
//!           L     the stored record (layout in `codec`)
//! requests      any number of, in increasing request id order:
//!           4     length L = request id length + 44
//!         L-44    request id (UTF-8)
//!          32     request fingerprint
//!           8     first seq of the request's events
//!           4     number of its events
//!           4   a length of 0: the end of the requests
//! trailer   8   number of request entries
//!          32   SHA-256 of every byte of the file before it
//! ```
//!
//! The log knows no business rules, and neither does a backup: it is bytes,
//! sequence numbers, hashes and request ids.

use super::codec::{Hash, HASH_BYTES};
use super::store::{ChainCheck, Restorer};
use super::{BrokenEvent, EventLog, LogError, LogReader, RequestRecord, GENESIS_HASH};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"FLBACKUP";
pub const FORMAT_V1: u16 = 1;
pub const HEADER_BYTES: usize = 8 + 2 + 8 + HASH_BYTES;
pub const TRAILER_BYTES: usize = 8 + HASH_BYTES;
/// The longest record a backup may hold. Events are a few hundred bytes
/// (texts are bounded at 4000); a larger length is damage, and is refused
/// before anything is allocated for it.
pub const RECORD_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// The longest request id a backup may hold; the ledger's own bound is
/// lower. Same reason.
pub const REQUEST_ID_BYTES_MAX: usize = 1024;
/// A request entry after its id: fingerprint, first seq, count.
const REQUEST_VALUE_BYTES: usize = HASH_BYTES + 8 + 4;

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The number of events, i.e. the sequence number of the last one.
    pub head_seq: u64,
    pub head_hash: Hash,
    /// When event `head_seq` was recorded (0 for an empty log).
    pub head_recorded_at_micros: i64,
    /// Idempotency entries.
    pub requests: u64,
    /// Streams among the events.
    pub streams: u64,
    /// The size of the file.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a fundledger backup: it starts with {found}, not \"FLBACKUP\"")]
    NotABackup { found: String },
    #[error(
        "backup format version {found}, which this fundledger cannot read (it reads version {FORMAT_V1}): \
         a newer fundledger wrote it; restore with that version"
    )]
    UnknownFormat { found: u16 },
    #[error("the backup is truncated: it ends inside {inside}, after {offset} bytes")]
    Truncated { inside: String, offset: u64 },
    #[error("the backup is damaged or altered: {0}")]
    Broken(BrokenEvent),
    #[error(
        "the backup is damaged or altered: event record {seq} says it is {length} bytes long, more than a record \
         can be ({RECORD_BYTES_MAX})"
    )]
    RecordTooLarge { seq: u64, length: u32 },
    #[error(
        "the backup is damaged or altered: its header says event {seq} has hash {}, but the records end with hash {}",
        hex::encode(header),
        hex::encode(records)
    )]
    HeadMismatch { seq: u64, header: Hash, records: Hash },
    #[error("the backup is damaged or altered: request entry {index} (counting from 1) {problem}")]
    MalformedRequest { index: u64, problem: String },
    #[error("the backup is damaged or altered: its trailer counts {stored} request entries, but it holds {found}")]
    RequestCount { stored: u64, found: u64 },
    #[error(
        "the backup is damaged or altered: its contents have SHA-256 {}, but its trailer says {}",
        hex::encode(computed),
        hex::encode(stored)
    )]
    Checksum { stored: Hash, computed: Hash },
    #[error("the backup has {0} bytes after its trailer: it is damaged, or two files were run together")]
    TrailingBytes(u64),
    #[error("cannot read the backup: {0}")]
    Read(std::io::Error),
    #[error("cannot write the backup: {0}")]
    Write(std::io::Error),
    #[error("no backup was taken: the log itself is broken ({0}); run `fundledger verify`")]
    LogBroken(BrokenEvent),
    #[error(
        "no backup was taken: the head given, event {seq} with hash {}, is not in the log (it has {})",
        hex::encode(given),
        hex::encode(found)
    )]
    NotTheHead { seq: u64, given: Hash, found: Hash },
    #[error(transparent)]
    Log(#[from] LogError),
}

// ------------------------------------------------------------------ writing

/// Writes a backup of events 1 to `head_seq` of `reader` to `out`; `head_hash`
/// must be the hash of event `head_seq` (the durable head the caller read).
/// Events after it, and their request entries, are left out, so the writer
/// may go on appending meanwhile. Flushes `out` at the end.
pub fn write_backup(
    reader: &LogReader,
    head_seq: u64,
    head_hash: Hash,
    out: impl Write,
) -> Result<BackupSummary, BackupError> {
    let mut out = Hashing::new(out);
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_V1.to_be_bytes());
    header.extend_from_slice(&head_seq.to_be_bytes());
    header.extend_from_slice(&head_hash);
    out.write_all(&header).map_err(BackupError::Write)?;

    let mut chain = ChainCheck::default();
    let mut head_recorded_at_micros = 0;
    for item in reader.raw_events(1, head_seq)? {
        let (seq, record) = item?;
        let (envelope, _) = chain.check(seq, &record).map_err(BackupError::LogBroken)?;
        head_recorded_at_micros = envelope.recorded_at_micros;
        let length = u32::try_from(record.len()).ok().filter(|&l| l <= RECORD_BYTES_MAX).ok_or_else(|| {
            BackupError::LogBroken(BrokenEvent {
                seq,
                stream: Some(envelope.stream.clone()),
                problem: super::ChainBreak::Undecodable(format!("{} bytes: too large for a backup", record.len())),
            })
        })?;
        out.write_all(&length.to_be_bytes()).and_then(|()| out.write_all(&record)).map_err(BackupError::Write)?;
    }
    if chain.expected_seq() != head_seq + 1 {
        return Err(BackupError::LogBroken(BrokenEvent {
            seq: chain.expected_seq(),
            stream: None,
            problem: super::ChainBreak::Missing { previous: chain.expected_seq() - 1, next: head_seq + 1 },
        }));
    }
    if chain.head_hash() != head_hash {
        return Err(BackupError::NotTheHead { seq: head_seq, given: head_hash, found: chain.head_hash() });
    }

    let mut requests = 0u64;
    for item in reader.raw_requests() {
        let (request_id, record) = item?;
        // Entries of requests recorded after the head (by the writer, while
        // this backup runs) are not part of the log at that head.
        let within = match record.count {
            0 => record.first_seq <= head_seq,
            count => record.first_seq.saturating_add(u64::from(count) - 1) <= head_seq,
        };
        if !within {
            continue;
        }
        let length = u32::try_from(request_id.len() + REQUEST_VALUE_BYTES).expect("request ids are short");
        let mut entry = Vec::with_capacity(4 + length as usize);
        entry.extend_from_slice(&length.to_be_bytes());
        entry.extend_from_slice(&request_id);
        entry.extend_from_slice(&record.fingerprint);
        entry.extend_from_slice(&record.first_seq.to_be_bytes());
        entry.extend_from_slice(&record.count.to_be_bytes());
        out.write_all(&entry).map_err(BackupError::Write)?;
        requests += 1;
    }
    out.write_all(&0u32.to_be_bytes())
        .and_then(|()| out.write_all(&requests.to_be_bytes()))
        .map_err(BackupError::Write)?;
    let digest: Hash = out.hasher.clone().finalize().into();
    out.write_all(&digest).and_then(|()| out.flush()).map_err(BackupError::Write)?;
    Ok(BackupSummary {
        head_seq,
        head_hash,
        head_recorded_at_micros,
        requests,
        streams: chain.stream_versions().len() as u64,
        bytes: out.bytes,
    })
}

/// A writer that counts and hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing { inner, hasher: Sha256::new(), bytes: 0 }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

// ------------------------------------------------------------------ reading

/// Reads a whole backup and checks it, writing nothing: what `fundledger
/// backup` runs on the file it received before keeping it.
pub fn check(input: impl Read) -> Result<BackupSummary, BackupError> {
    read(input, |_, _| Ok(()), |_, _| Ok(())).map(|(summary, _)| summary)
}

/// Builds a new log in `dir` (a new or empty directory) from a backup,
/// checking the backup as it goes, and returns it open and durable. On an
/// error `dir` holds a partial log: the caller builds in a temporary
/// directory and throws it away.
pub fn restore(input: impl Read, dir: &Path) -> Result<(EventLog, BackupSummary), BackupError> {
    let restorer = std::cell::RefCell::new(Restorer::create(dir)?);
    let (summary, chain) = read(
        input,
        |envelope, record| Ok(restorer.borrow_mut().event(envelope, record)?),
        |request_id, record| Ok(restorer.borrow_mut().request(request_id, record)?),
    )?;
    let log = restorer.into_inner().finish(&chain)?;
    Ok((log, summary))
}

/// Parses and checks a backup, handing every checked record and request
/// entry on. Nothing it handed on may be trusted until it returns `Ok`: the
/// file's checksum is only known at its end.
fn read(
    input: impl Read,
    mut on_event: impl FnMut(&super::Envelope, &[u8]) -> Result<(), BackupError>,
    mut on_request: impl FnMut(&str, &RequestRecord) -> Result<(), BackupError>,
) -> Result<(BackupSummary, ChainCheck), BackupError> {
    let mut input = Counting { inner: input, hasher: Sha256::new(), offset: 0 };
    let mut header = [0u8; HEADER_BYTES];
    input.exact(&mut header, || "the header".into())?;
    if &header[..8] != MAGIC {
        let found: String =
            header[..8].iter().map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '.' }).collect();
        return Err(BackupError::NotABackup { found: format!("{found:?}") });
    }
    let version = u16::from_be_bytes([header[8], header[9]]);
    if version != FORMAT_V1 {
        return Err(BackupError::UnknownFormat { found: version });
    }
    let head_seq = u64::from_be_bytes(header[10..18].try_into().expect("sized"));
    let head_hash: Hash = header[18..HEADER_BYTES].try_into().expect("sized");

    let mut chain = ChainCheck::default();
    let mut head_recorded_at_micros = 0;
    let mut record = Vec::new();
    for seq in 1..=head_seq {
        let inside = || format!("event record {seq} of {head_seq}");
        let length = input.u32(inside)?;
        if length > RECORD_BYTES_MAX {
            return Err(BackupError::RecordTooLarge { seq, length });
        }
        record.resize(length as usize, 0);
        input.exact(&mut record, inside)?;
        let (envelope, _) = chain.check(seq, &record).map_err(BackupError::Broken)?;
        head_recorded_at_micros = envelope.recorded_at_micros;
        on_event(&envelope, &record)?;
    }
    if chain.head_hash() != head_hash {
        return Err(BackupError::HeadMismatch { seq: head_seq, header: head_hash, records: chain.head_hash() });
    }

    let mut requests = 0u64;
    let mut previous_id: Option<Vec<u8>> = None;
    loop {
        let index = requests + 1;
        let length = input.u32(|| format!("request entry {index}"))? as usize;
        if length == 0 {
            break;
        }
        let malformed = |problem: String| BackupError::MalformedRequest { index, problem };
        if length <= REQUEST_VALUE_BYTES || length > REQUEST_ID_BYTES_MAX + REQUEST_VALUE_BYTES {
            return Err(malformed(format!("says it is {length} bytes long, not 45 to {}", REQUEST_ID_BYTES_MAX + 44)));
        }
        let mut entry = vec![0u8; length];
        input.exact(&mut entry, || format!("request entry {index}"))?;
        let (id, value) = entry.split_at(length - REQUEST_VALUE_BYTES);
        let request_id = std::str::from_utf8(id)
            .ok()
            .filter(|id| !id.contains('\0'))
            .ok_or_else(|| malformed("has a request id that is not text".into()))?;
        if previous_id.as_deref().is_some_and(|previous| previous >= id) {
            return Err(malformed(format!("{request_id:?} is out of order or repeated")));
        }
        let record = RequestRecord {
            fingerprint: value[..HASH_BYTES].try_into().expect("sized"),
            first_seq: u64::from_be_bytes(value[HASH_BYTES..HASH_BYTES + 8].try_into().expect("sized")),
            count: u32::from_be_bytes(value[HASH_BYTES + 8..].try_into().expect("sized")),
        };
        // Checked: a damaged first seq near 2^64 must be refused, not
        // overflow (found by the `backup_decode` fuzz target).
        let end = record.first_seq.checked_add(u64::from(record.count));
        if record.first_seq == 0 || end.is_none_or(|end| end.saturating_sub(1) > head_seq) {
            return Err(malformed(format!(
                "({request_id:?}) claims {} events from event {} on, but the backup holds events 1 to {head_seq}",
                record.count, record.first_seq
            )));
        }
        on_request(request_id, &record)?;
        previous_id = Some(id.to_vec());
        requests = index;
    }

    let mut count = [0u8; 8];
    input.exact(&mut count, || "the trailer".into())?;
    let computed: Hash = input.hasher.clone().finalize().into();
    let mut stored = [0u8; HASH_BYTES];
    input.exact(&mut stored, || "the trailer".into())?;
    if stored != computed {
        return Err(BackupError::Checksum { stored, computed });
    }
    let stored_count = u64::from_be_bytes(count);
    if stored_count != requests {
        return Err(BackupError::RequestCount { stored: stored_count, found: requests });
    }
    let bytes = input.offset;
    let trailing = std::io::copy(&mut input.inner, &mut std::io::sink()).map_err(BackupError::Read)?;
    if trailing > 0 {
        return Err(BackupError::TrailingBytes(trailing));
    }
    let streams = chain.stream_versions().len() as u64;
    debug_assert!(head_seq > 0 || head_hash == GENESIS_HASH);
    Ok((BackupSummary { head_seq, head_hash, head_recorded_at_micros, requests, streams, bytes }, chain))
}

/// A reader that hashes what it reads and knows where it is, to say where
/// a truncated file ends.
struct Counting<R> {
    inner: R,
    hasher: Sha256,
    offset: u64,
}

impl<R: Read> Counting<R> {
    fn exact(&mut self, buf: &mut [u8], inside: impl FnOnce() -> String) -> Result<(), BackupError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => return Err(BackupError::Truncated { inside: inside(), offset: self.offset + filled as u64 }),
                Ok(n) => filled += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(BackupError::Read(error)),
            }
        }
        self.hasher.update(&*buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, inside: impl FnOnce() -> String) -> Result<u32, BackupError> {
        let mut bytes = [0u8; 4];
        self.exact(&mut bytes, inside)?;
        Ok(u32::from_be_bytes(bytes))
    }
}
