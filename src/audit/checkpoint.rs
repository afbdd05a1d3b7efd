//! Signed checkpoints: the ledger's signed statement that its log had `seq`
//! events, the last one with hash `head_hash`, recorded at a given time.
//!
//! An auditor who keeps one can later prove that the log still extends it:
//! the event at `seq` must still have `head_hash`, and since every hash
//! covers the previous one, nothing up to `seq` can have changed.
//!
//! The signature is Ed25519 (RFC 8032, no prehash) over the canonical
//! message, 73 bytes:
//!
//! ```text
//! [0..25]   "fundledger-checkpoint-v1\n"   ASCII, names the layout
//! [25..33]  seq                            u64, big-endian
//! [33..65]  head hash                      SHA-256 of event `seq`
//! [65..73]  recorded_at_micros             i64, big-endian: µs since the Unix epoch, UTC
//! ```
//!
//! Its JSON file (see [`SignedCheckpoint::to_json`]) carries the same fields
//! plus the public key and the signature in hex. This module checks
//! signatures; it never signs with a key it was not given.

use crate::log::Hash;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

/// Names the message layout and the JSON file's format.
pub const CHECKPOINT_FORMAT: &str = "fundledger-checkpoint-v1";
/// The length of the signed message.
pub const MESSAGE_BYTES: usize = CHECKPOINT_FORMAT.len() + 1 + 8 + 32 + 8;
/// The largest checkpoint file read; a real one is about 400 bytes.
pub const FILE_BYTES_MAX: u64 = 64 * 1024;

/// What a checkpoint states about the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The number of events, i.e. the sequence number of the last one.
    pub seq: u64,
    /// The hash of event `seq`.
    pub head_hash: Hash,
    /// When event `seq` was recorded (µs since the Unix epoch, UTC).
    pub recorded_at_micros: i64,
}

impl Checkpoint {
    /// The canonical bytes that are signed (layout in the module doc).
    pub fn message(&self) -> [u8; MESSAGE_BYTES] {
        let mut message = [0; MESSAGE_BYTES];
        let (domain, rest) = message.split_at_mut(CHECKPOINT_FORMAT.len() + 1);
        domain[..CHECKPOINT_FORMAT.len()].copy_from_slice(CHECKPOINT_FORMAT.as_bytes());
        domain[CHECKPOINT_FORMAT.len()] = b'\n';
        rest[..8].copy_from_slice(&self.seq.to_be_bytes());
        rest[8..40].copy_from_slice(&self.head_hash);
        rest[40..].copy_from_slice(&self.recorded_at_micros.to_be_bytes());
        message
    }
}

/// A checkpoint with the public key and the signature over its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub public_key: VerifyingKey,
    pub signature: Signature,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("checkpoint format {found:?} is not {CHECKPOINT_FORMAT:?}; this version cannot check it")]
    Format { found: String },
    #[error("checkpoint field {field}: {problem}")]
    Field { field: &'static str, problem: String },
    #[error(
        "checkpoint says it was recorded at {recorded_at} but its signed time is {recorded_at_micros} µs \
         ({signed}); the file was edited"
    )]
    TimeMismatch { recorded_at: String, recorded_at_micros: i64, signed: String },
    #[error(
        "the signature of the checkpoint of event {seq} does not verify under the public key {public_key} it names: \
         the file was altered after signing, or was not signed by that key"
    )]
    BadSignature { seq: u64, public_key: String },
}

/// The JSON file: every field a string or an integer, hashes and keys in
/// lowercase hex. `recorded_at` is `recorded_at_micros` in RFC 3339, for
/// people; both must agree.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    format: String,
    seq: u64,
    head_hash: String,
    recorded_at: String,
    recorded_at_micros: i64,
    public_key: String,
    signature: String,
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the ledger's key.
    pub fn sign(checkpoint: Checkpoint, key: &SigningKey) -> SignedCheckpoint {
        SignedCheckpoint { checkpoint, public_key: key.verifying_key(), signature: key.sign(&checkpoint.message()) }
    }

    /// Checks the signature against the checkpoint's own public key. This
    /// proves only that the holder of that key signed exactly these figures;
    /// whose key it is must be checked separately (the ledger's key, or one
    /// the auditor trusts).
    pub fn verify_signature(&self) -> Result<(), CheckpointError> {
        self.public_key.verify_strict(&self.checkpoint.message(), &self.signature).map_err(|_| {
            CheckpointError::BadSignature {
                seq: self.checkpoint.seq,
                public_key: hex::encode(self.public_key.as_bytes()),
            }
        })
    }

    /// The JSON file, pretty-printed with a final newline.
    pub fn to_json(&self) -> String {
        let file = CheckpointFile {
            format: CHECKPOINT_FORMAT.to_owned(),
            seq: self.checkpoint.seq,
            head_hash: hex::encode(self.checkpoint.head_hash),
            recorded_at: format_micros(self.checkpoint.recorded_at_micros),
            recorded_at_micros: self.checkpoint.recorded_at_micros,
            public_key: hex::encode(self.public_key.as_bytes()),
            signature: hex::encode(self.signature.to_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&file).expect("plain fields serialize");
        text.push('\n');
        text
    }

    /// Reads a JSON file written by [`SignedCheckpoint::to_json`]. Checks the
    /// form of every field, not the signature.
    pub fn from_json(text: &str) -> Result<SignedCheckpoint, CheckpointError> {
        let file: CheckpointFile = serde_json::from_str(text)?;
        let checkpoint = SignedCheckpoint::from_parts(Parts {
            format: &file.format,
            seq: file.seq,
            head_hash: &file.head_hash,
            recorded_at_micros: file.recorded_at_micros,
            public_key: &file.public_key,
            signature: &file.signature,
        })?;
        let recorded_at =
            time::OffsetDateTime::parse(&file.recorded_at, &Rfc3339).map_err(|e| CheckpointError::Field {
                field: "recorded_at",
                problem: format!("{:?} is not an RFC 3339 time: {e}", file.recorded_at),
            })?;
        if recorded_at.unix_timestamp_nanos() != i128::from(file.recorded_at_micros) * 1000 {
            return Err(CheckpointError::TimeMismatch {
                recorded_at: file.recorded_at,
                recorded_at_micros: file.recorded_at_micros,
                signed: format_micros(file.recorded_at_micros),
            });
        }
        Ok(checkpoint)
    }

    /// A checkpoint from its fields as text (the JSON file, the gRPC
    /// message). Checks the form of every field, not the signature.
    pub fn from_parts(parts: Parts<'_>) -> Result<SignedCheckpoint, CheckpointError> {
        if parts.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Format { found: parts.format.to_owned() });
        }
        let field = |field, problem| CheckpointError::Field { field, problem };
        let head_hash = crate::audit::key::parse_hex32(parts.head_hash).map_err(|p| field("head_hash", p))?;
        let public_key = crate::audit::key::parse_public_hex(parts.public_key).map_err(|p| field("public_key", p))?;
        let mut signature = [0u8; 64];
        if parts.signature.len() != 128 {
            return Err(field("signature", format!("{} characters, expected 128 hex digits", parts.signature.len())));
        }
        hex::decode_to_slice(parts.signature, &mut signature)
            .map_err(|e| field("signature", format!("not hex: {e}")))?;
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint { seq: parts.seq, head_hash, recorded_at_micros: parts.recorded_at_micros },
            public_key,
            signature: Signature::from_bytes(&signature),
        })
    }
}

/// A checkpoint's fields as they travel: hashes, keys and the signature in
/// hex.
pub struct Parts<'a> {
    pub format: &'a str,
    pub seq: u64,
    pub head_hash: &'a str,
    pub recorded_at_micros: i64,
    pub public_key: &'a str,
    pub signature: &'a str,
}

/// Microseconds since the Unix epoch as RFC 3339 UTC, e.g.
/// `2024-05-01T10:00:00.123456Z`; the raw number when out of range.
pub fn format_micros(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{micros} µs after the Unix epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> SignedCheckpoint {
        let key = SigningKey::from_bytes(&[42; 32]);
        SignedCheckpoint::sign(
            Checkpoint { seq: 1234, head_hash: [0xab; 32], recorded_at_micros: 1_714_557_600_123_456 },
            &key,
        )
    }

    #[test]
    fn the_message_layout_is_frozen() {
        let message = signed().checkpoint.message();
        let mut expected = b"fundledger-checkpoint-v1\n".to_vec();
        expected.extend_from_slice(&1234u64.to_be_bytes());
        expected.extend_from_slice(&[0xab; 32]);
        expected.extend_from_slice(&1_714_557_600_123_456i64.to_be_bytes());
        assert_eq!(message.to_vec(), expected);
        assert_eq!(MESSAGE_BYTES, 73);
    }

    #[test]
    fn a_checkpoint_survives_its_json_file_and_verifies() {
        let checkpoint = signed();
        let json = checkpoint.to_json();
        assert!(json.contains("\"recorded_at\": \"2024-05-01T10:00:00.123456Z\""), "{json}");
        let read = SignedCheckpoint::from_json(&json).unwrap();
        assert_eq!(read, checkpoint);
        read.verify_signature().unwrap();
    }

    #[test]
    fn a_changed_figure_breaks_the_signature() {
        let mut checkpoint = signed();
        checkpoint.checkpoint.seq += 1;
        let error = checkpoint.verify_signature().unwrap_err();
        assert!(matches!(error, CheckpointError::BadSignature { seq: 1235, .. }), "{error}");
    }

    #[test]
    fn malformed_files_say_which_field_is_wrong() {
        let json = signed().to_json();
        let check = |from: &str, to: &str, expect: &str| {
            let edited = json.replace(from, to);
            assert_ne!(edited, json, "the edit {from:?} must apply");
            let error = SignedCheckpoint::from_json(&edited).unwrap_err().to_string();
            assert!(error.contains(expect), "{error} should mention {expect}");
        };
        check("fundledger-checkpoint-v1", "fundledger-checkpoint-v9", "format");
        check(&"ab".repeat(32), "abcd", "head_hash");
        check("2024-05-01T10:00:00.123456Z", "2024-05-01T10:00:01.123456Z", "was edited");
        check("2024-05-01T10:00:00.123456Z", "yesterday", "recorded_at");
        check("\"seq\": 1234", "\"seq\": -1", "not a checkpoint file");
        check("\"seq\": 1234", "\"seq\": 1234, \"extra\": 1", "unknown field");
    }
}
