//! fundledger: an event-sourced ledger for a pooled grant fund.
//!
//! See `ARCHITECTURE.md` for the map. In short: [`domain`] is the pure core,
//! [`log`] the durable sled event log, [`projections`] the read side,
//! [`ledger`] the single writer that orders commands, [`audit`] verification
//! and signed checkpoints, [`export`] the auditors' exports, [`api`] the gRPC
//! shell.

pub mod api;
pub mod audit;
pub mod cli;
pub mod demo;
pub mod domain;
pub mod export;
pub mod ledger;
pub mod log;
mod merge;
pub mod persistent_map;
pub mod projections;
pub mod server_main;
pub mod workload;
