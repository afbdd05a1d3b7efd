//! The append-only event log, on sled 0.34.7.
//!
//! It knows bytes, sequence numbers, streams, hashes and request ids — **not
//! business rules**: payloads are opaque bytes encoded by the caller with
//! [`codec::encode`]. Every append is atomic (one sled batch) and durable
//! when it returns: sled's `flush` writes with `sync_file_range`, which does
//! not make the data durable, so [`EventLog::append`] also `fdatasync`s
//! sled's files. It never rewrites or deletes an event.

pub mod backup;
pub mod codec;
#[doc(hidden)]
pub mod faults;
mod index;
mod store;

pub use codec::{Hash, GENESIS_HASH};
pub use index::{request_digest, LogIndex};
pub use store::{frame_record, split_chunk};
pub use store::{
    open_checkpoint_file, sled_config, unfinished_checkpoint, BrokenEvent, ChainBreak, ChainWalk, CheckedRecord,
    CheckpointFile, Entry, Envelope, EventLog, Link, LogError, LogReader, NewEvent, RequestRecord, StoreFormat,
    StoredCheckpoint, Syncer, VerifyReport, WalkError, CHECKPOINT_FILE, CHUNK_RECORDS, LOG_INDEX_FILE, STORE_FORMAT,
    STORE_FORMAT_V3, STORE_FORMAT_V4,
};
