//! Auditing: proof that the history was not tampered with.
//!
//! - [`verify`] walks the whole log and checks everything that can be
//!   checked — decoding, gapless sequence, stream versions, the hash chain,
//!   payloads against their envelopes, idempotency entries, the stream index,
//!   a replay against the stored projections and, if given, a signed
//!   checkpoint — and names the **first** broken event.
//! - [`key`] keeps the ledger's Ed25519 signing key beside its data.
//! - [`checkpoint`] is the signed statement "the log had `seq` events and
//!   its head hash was `h`", its canonical message and its JSON file.
//!
//! This module **never writes to a ledger's data**: offline verification
//! works on a copy of the data directory (sled writes whenever it opens a
//! database), online verification only reads the durable log. It knows the
//! log and the projections, not gRPC; it holds no business rules.

pub mod checkpoint;
pub mod key;
pub mod verify;
