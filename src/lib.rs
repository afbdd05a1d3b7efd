//! fundledger: an event-sourced ledger for a pooled grant fund.
//!
//! See `ARCHITECTURE.md` for the map. In short: [`domain`] is the pure core,
//! [`log`] the durable sled event log, [`projections`] the read side,
//! [`ledger`] the single writer that orders commands, [`api`] the gRPC shell,
//! [`export`] the auditors' exports.

pub mod api;
pub mod cli;
pub mod demo;
pub mod domain;
pub mod export;
pub mod ledger;
pub mod log;
pub mod projections;
pub mod server_main;
