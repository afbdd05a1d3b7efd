//! The stored format: the one place that knows bincode.
//!
//! bincode 2.0.1 is pinned (3.0.0 is a stub that does not compile, and the
//! project has stopped). With `config::legacy()` its bytes are those of
//! bincode 1.x, which the maintained `wincode` crate also reads, so the
//! codec can be swapped without rewriting any data. Golden-bytes tests in
//! `tests/log.rs` freeze the format.
//!
//! A stored record is laid out as
//!
//! ```text
//! [0]       record format version (1 or 2)
//! [1..33]   previous event's hash (32 zero bytes before the first event)
//! [33..65]  this event's hash = SHA-256(previous hash ‖ body)
//! [65..]    body: bincode-legacy(RecordBody)
//!           in format 2, followed by the command's fingerprint (32 bytes)
//! ```
//!
//! so that the chain can be checked with nothing but SHA-256. Format 2
//! (written by stored format v3, `log::store`) carries the fingerprint of
//! the command that recorded the event, which format 1 kept only in the
//! log's idempotency entry: a v3 log answers a retry from its records
//! alone. The hash covers the fingerprint too.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const RECORD_FORMAT_V1: u8 = 1;
/// Format 2: the body is followed by the command's fingerprint.
pub const RECORD_FORMAT_V2: u8 = 2;
pub const HASH_BYTES: usize = 32;
const HEADER_BYTES: usize = 1 + 2 * HASH_BYTES;

/// A SHA-256 digest.
pub type Hash = [u8; HASH_BYTES];

/// The hash before the first event.
pub const GENESIS_HASH: Hash = [0; HASH_BYTES];

/// Everything about an event that its hash covers, except the previous hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    pub seq: u64,
    pub stream: String,
    pub stream_version: u64,
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at_micros: i64,
    pub actor: String,
    pub request_id: String,
    /// The event itself, encoded with [`encode`]. Stored as bincode stores
    /// any `Vec<u8>` (u64 length, then the bytes), but read and written as
    /// one block rather than byte by byte.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// [`RecordBody`] borrowed: the same fields in the same order, so the same
/// bytes (`tests/log.rs` pins both to the golden record). Reading the log
/// decodes into it, straight from the stored value, so that a replay
/// copies no envelope text and no payload; the writer encodes from it
/// without cloning a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBodyRef<'a> {
    pub seq: u64,
    pub stream: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub recorded_at_micros: i64,
    pub actor: &'a str,
    pub request_id: &'a str,
    #[serde(with = "serde_bytes", borrow)]
    pub payload: &'a [u8],
}

impl RecordBodyRef<'_> {
    pub fn to_owned_body(&self) -> RecordBody {
        RecordBody {
            seq: self.seq,
            stream: self.stream.to_owned(),
            stream_version: self.stream_version,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            recorded_at_micros: self.recorded_at_micros,
            actor: self.actor.to_owned(),
            request_id: self.request_id.to_owned(),
            payload: self.payload.to_vec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record of {0} bytes is shorter than its {HEADER_BYTES}-byte header")]
    Truncated(usize),
    #[error("unknown record format version {0}")]
    UnknownFormat(u8),
    #[error("cannot decode: {0}")]
    Decode(String),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// The most bytes one decode of a stored value may claim for its strings
/// and byte vectors. bincode 2.0.1 allocates a string's or a vector's
/// claimed length before it reads the bytes; without a limit, one corrupt
/// length (a flipped bit on disk, a hostile backup file) made it try to
/// allocate up to 2^64 bytes and abort the whole process, instead of the
/// record being refused as corrupt (found by the `record_decode` fuzz
/// target). A stored record is far smaller: texts are at most 4000 bytes.
pub const DECODE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The same for the projections' checkpoint: for the state without its
/// applications (partners, pots, rounds, principals: kilobytes in a real
/// fund), read as a stream. The applications follow in chunks, each
/// application decoded on its own ([`CHECKPOINT_ENTRY_BYTES_MAX`]). A
/// checkpoint beyond either is not trusted, and the projections are
/// replayed from the log instead.
pub const CHECKPOINT_DECODE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// The most one entry of a checkpoint's chunk may claim: an application
/// (its texts and officers' names are bounded; 64 MiB is thousands of times
/// a real one) or the chunk's list of pots.
pub const CHECKPOINT_ENTRY_BYTES_MAX: usize = 64 * 1024 * 1024;

fn config(
) -> bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Fixint, bincode::config::NoLimit> {
    bincode::config::legacy()
}

/// Encodes a value in the stored format.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Room up front for what the writer encodes per command (payloads,
    // request fingerprints, record bodies: a few hundred bytes), instead of
    // bincode's growing from empty by doubling (five copies on the way).
    let mut bytes = Vec::with_capacity(ENCODE_CAPACITY);
    encode_into(value, &mut bytes);
    bytes
}

/// [`encode`], appending to `bytes`.
pub fn encode_into<T: Serialize>(value: &T, bytes: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(value, bytes, config()).expect("writing into a Vec cannot fail");
}

/// The capacity [`encode`] starts with.
const ENCODE_CAPACITY: usize = 512;

/// Decodes a value in the stored format; all bytes must be used, and it may
/// claim at most [`DECODE_BYTES_MAX`] bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_borrowed(bytes)
}

/// [`decode`] into a value that may borrow from `bytes` (its `&str` and
/// `&[u8]` fields point into them instead of being copied).
fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    let (value, used) = decode_within::<T, DECODE_BYTES_MAX>(bytes)?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// One entry of a checkpoint's chunk (an application, or the chunk's list
/// of pots) from the start of `bytes` (up to
/// [`CHECKPOINT_ENTRY_BYTES_MAX`]), with the bytes it used.
pub fn decode_checkpoint_entry<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    decode_within::<T, CHECKPOINT_ENTRY_BYTES_MAX>(bytes)
}

fn decode_within<'a, T: Deserialize<'a>, const LIMIT: usize>(bytes: &'a [u8]) -> Result<(T, usize), CodecError> {
    bincode::serde::borrow_decode_from_slice(bytes, config().with_limit::<LIMIT>())
        .map_err(|e| CodecError::Decode(e.to_string()))
}

/// [`decode`] for the state at the start of the projections' checkpoint
/// (all of it but the applications, which follow in chunks), from a reader
/// (up to [`CHECKPOINT_DECODE_BYTES_MAX`]): the checkpoint is read once, and
/// never held whole in memory. Whether all of it was used is the caller's to
/// check.
pub fn decode_checkpoint_from<T: DeserializeOwned>(reader: &mut impl std::io::Read) -> Result<T, CodecError> {
    bincode::serde::decode_from_std_read(reader, config().with_limit::<CHECKPOINT_DECODE_BYTES_MAX>())
        .map_err(|e| CodecError::Decode(e.to_string()))
}

/// The hash of an event: SHA-256 over the previous hash and the body bytes.
pub fn chain_hash(prev_hash: &Hash, body: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(body);
    hasher.finalize().into()
}

/// A SHA-256 over arbitrary bytes (request fingerprints).
pub fn digest(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Builds a stored record; returns it with its hash.
pub fn encode_record(prev_hash: &Hash, body: &RecordBody) -> (Vec<u8>, Hash) {
    record_of(prev_hash, encode(body))
}

/// [`encode_record`] from a borrowed body.
pub fn encode_record_ref(prev_hash: &Hash, body: &RecordBodyRef) -> (Vec<u8>, Hash) {
    record_of(prev_hash, encode(body))
}

/// A stored record in format 2 (the body, then the fingerprint of the
/// command that records it), with its hash.
pub fn encode_record_v2<B: Serialize>(prev_hash: &Hash, body: &B, fingerprint: &Hash) -> (Vec<u8>, Hash) {
    let mut record = Vec::with_capacity(ENCODE_CAPACITY);
    record.push(RECORD_FORMAT_V2);
    record.extend_from_slice(prev_hash);
    record.extend_from_slice(&GENESIS_HASH); // The hash, once it is known.
    encode_into(body, &mut record);
    record.extend_from_slice(fingerprint);
    let hash = chain_hash(prev_hash, &record[HEADER_BYTES..]);
    record[1 + HASH_BYTES..HEADER_BYTES].copy_from_slice(&hash);
    (record, hash)
}

/// The stored record of an encoded body, and its hash.
fn record_of(prev_hash: &Hash, body_bytes: Vec<u8>) -> (Vec<u8>, Hash) {
    let hash = chain_hash(prev_hash, &body_bytes);
    let mut record = Vec::with_capacity(HEADER_BYTES + body_bytes.len());
    record.push(RECORD_FORMAT_V1);
    record.extend_from_slice(prev_hash);
    record.extend_from_slice(&hash);
    record.extend_from_slice(&body_bytes);
    (record, hash)
}

/// A stored record taken apart, not yet checked: its body owned
/// ([`decode_record`]) or borrowed from the stored bytes
/// ([`decode_record_borrowed`]).
pub struct DecodedRecord<'a, B = RecordBody> {
    pub prev_hash: Hash,
    pub hash: Hash,
    /// What the hash covers: the encoded body, and in format 2 the
    /// fingerprint after it.
    pub body_bytes: &'a [u8],
    pub body: B,
    /// The recording command's fingerprint (format 2; `None` in format 1).
    pub fingerprint: Option<Hash>,
}

impl<B> DecodedRecord<'_, B> {
    /// Whether the stored hash is the hash of the stored previous hash and body.
    pub fn hash_matches(&self) -> bool {
        chain_hash(&self.prev_hash, self.body_bytes) == self.hash
    }
}

pub fn decode_record(record: &[u8]) -> Result<DecodedRecord<'_>, CodecError> {
    decode_record_as(record)
}

/// [`decode_record`] without copying the body's texts and payload.
pub fn decode_record_borrowed(record: &[u8]) -> Result<DecodedRecord<'_, RecordBodyRef<'_>>, CodecError> {
    decode_record_as(record)
}

fn decode_record_as<'a, B: Deserialize<'a>>(record: &'a [u8]) -> Result<DecodedRecord<'a, B>, CodecError> {
    if record.len() < HEADER_BYTES {
        return Err(CodecError::Truncated(record.len()));
    }
    let prev_hash: Hash = record[1..1 + HASH_BYTES].try_into().expect("sized");
    let hash: Hash = record[1 + HASH_BYTES..HEADER_BYTES].try_into().expect("sized");
    let body_bytes = &record[HEADER_BYTES..];
    let (body, fingerprint) = match record[0] {
        RECORD_FORMAT_V1 => (decode_borrowed(body_bytes)?, None),
        RECORD_FORMAT_V2 => {
            let Some(split) = body_bytes.len().checked_sub(HASH_BYTES) else {
                return Err(CodecError::Decode(format!(
                    "a format 2 record's body of {} bytes has no room for its {HASH_BYTES}-byte fingerprint",
                    body_bytes.len()
                )));
            };
            let fingerprint: Hash = body_bytes[split..].try_into().expect("sized");
            (decode_borrowed(&body_bytes[..split])?, Some(fingerprint))
        }
        other => return Err(CodecError::UnknownFormat(other)),
    };
    Ok(DecodedRecord { prev_hash, hash, body_bytes, body, fingerprint })
}
