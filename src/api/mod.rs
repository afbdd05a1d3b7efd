//! The gRPC shell: the `fundledger.v1.Ledger` service over the single-writer
//! ledger, with health and reflection.
//!
//! - [`pb`]: the types generated from `proto/fundledger/v1/ledger.proto`.
//! - [`convert`]: **the only place where protobuf types meet domain types.**
//!   Requests become domain commands, events and state figures become
//!   messages. No other module of the crate builds one from the other.
//! - [`service`]: the `Ledger` service over a [`crate::ledger::Ledger`]
//!   handle; maps outcomes to gRPC statuses.
//! - [`server`]: [`server::serve`] puts the service, health and reflection
//!   on a listener, with graceful shutdown.
//!
//! This module holds no business rules: it parses, hands commands to the
//! ledger, and maps outcomes to gRPC statuses.

pub mod auth;
pub mod convert;
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
