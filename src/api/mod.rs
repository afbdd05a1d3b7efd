//! The gRPC shell: the `fundledger.v1.Ledger` and `fundledger.v1.Audit`
//! services over the single-writer ledger, with health and reflection.
//!
//! - [`pb`]: the types generated from `proto/fundledger/v1/*.proto`.
//! - [`convert`]: **the only place where protobuf types meet domain types.**
//!   Requests become domain commands, events and state figures become
//!   messages. No other module of the crate builds one from the other.
//! - [`service`]: the `Ledger` service over a [`crate::ledger::Ledger`]
//!   handle; maps outcomes to gRPC statuses.
//! - [`export_service`]: the `Export` service, the auditors' exports
//!   (`proto/fundledger/v1/export.proto`) over the same ledger handle.
//! - [`audit`]: the `Audit` service (online verification, signed
//!   checkpoints) and the conversions of its reports and checkpoints, which
//!   are not domain types.
//! - [`server`]: [`server::serve`] puts the services, health and reflection
//!   on a listener, with graceful shutdown.
//!
//! This module holds no business rules: it parses, hands commands to the
//! ledger, and maps outcomes to gRPC statuses.

pub mod audit;
pub mod auth;
pub mod convert;
pub mod export_service;
pub mod server;
pub mod service;

/// Types and service stubs generated from the protobuf contract.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("fundledger.v1");

    /// The encoded descriptors of the contract and its imports, for server
    /// reflection (written by `build.rs`).
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fundledger_descriptor");
}

#[cfg(test)]
mod tests;
