//! Storage fault injection, **for tests only**.
//!
//! A [`FaultPlan`] makes the log's writes, flushes or fsyncs fail on
//! purpose, so that tests can show what the ledger does when the disk does
//! (`tests/faults.rs`): a command whose batch did not become durable is
//! never answered success, and after a failed fsync the writer stops for
//! good, because retrying an fsync after a failure is unsafe (the kernel may
//! have dropped the dirty pages and marked them clean: PostgreSQL's
//! "fsyncgate").
//!
//! The log consults the plan at exactly three points, each just before the
//! real operation, and the plan fails the operation instead of letting it
//! run:
//! - [`StorageOp::Write`]: the atomic `apply_batch` of an append, and the
//!   writing of a projection checkpoint file;
//! - [`StorageOp::Flush`]: sled's `flush` after an append;
//! - [`StorageOp::Fsync`]: the `fdatasync` of sled's `db` file that follows
//!   the flush, and the fsync of a new checkpoint file.
//!
//! A production ledger has no plan (`LedgerConfig::storage_faults` is
//! `None`): the cost is one branch per operation. The plan never changes
//! data; it only refuses to run an operation, the way a failing disk would
//! answer `EIO`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A storage operation the log performs while appending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageOp {
    /// sled's `apply_batch` (an append) or writing a checkpoint file.
    Write,
    /// sled's `flush` (`sync_file_range` on Linux).
    Flush,
    /// The `fdatasync` of sled's `db` file, or the fsync of a checkpoint file.
    Fsync,
}

impl StorageOp {
    const ALL: [StorageOp; 3] = [StorageOp::Write, StorageOp::Flush, StorageOp::Fsync];

    fn index(self) -> usize {
        match self {
            StorageOp::Write => 0,
            StorageOp::Flush => 1,
            StorageOp::Fsync => 2,
        }
    }
}

impl std::fmt::Display for StorageOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageOp::Write => "write",
            StorageOp::Flush => "flush",
            StorageOp::Fsync => "fsync",
        })
    }
}

/// Whether an injected failure happens once or for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Only the chosen call fails; later ones run (a transient error).
    Once,
    /// The chosen call and every later one fail, until [`FaultPlan::heal`].
    Persistent,
}

/// Which calls of one operation fail.
#[derive(Debug, Default)]
struct OpFaults {
    /// Calls so far (failed ones included), from 1.
    calls: AtomicU64,
    /// Calls that were made to fail.
    failed: AtomicU64,
    /// The first call to fail, and whether later ones fail too.
    rule: Mutex<Option<(u64, Persistence)>>,
}

/// Failures to inject into a log's storage operations; see the module
/// documentation. Shared (`Arc`) between the test and the ledger.
#[derive(Debug, Default)]
pub struct FaultPlan {
    ops: [OpFaults; 3],
}

impl FaultPlan {
    /// A plan that fails nothing until told to.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// Makes the `nth` call of `op` counted from now fail (1: the next one),
    /// and with [`Persistence::Persistent`] every call after it too.
    /// Replaces an earlier rule for `op`.
    pub fn fail(&self, op: StorageOp, nth: u64, persistence: Persistence) {
        let faults = &self.ops[op.index()];
        let at = faults.calls.load(Ordering::SeqCst) + nth.max(1);
        *faults.rule.lock().expect("fault plan lock") = Some((at, persistence));
    }

    /// The disk "recovers": no call of any operation fails any more.
    pub fn heal(&self) {
        for op in StorageOp::ALL {
            *self.ops[op.index()].rule.lock().expect("fault plan lock") = None;
        }
    }

    /// How many times the log has attempted `op` since the plan was made.
    pub fn calls(&self, op: StorageOp) -> u64 {
        self.ops[op.index()].calls.load(Ordering::SeqCst)
    }

    /// How many calls of `op` the plan made fail.
    pub fn failures(&self, op: StorageOp) -> u64 {
        self.ops[op.index()].failed.load(Ordering::SeqCst)
    }

    /// Counts a call of `op` and says whether it fails: an I/O error in
    /// place of the operation, which then must not run.
    pub(crate) fn check(&self, op: StorageOp) -> std::io::Result<()> {
        let faults = &self.ops[op.index()];
        let rule = faults.rule.lock().expect("fault plan lock");
        let call = faults.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fails = match *rule {
            Some((at, Persistence::Once)) => call == at,
            Some((at, Persistence::Persistent)) => call >= at,
            None => false,
        };
        if !fails {
            return Ok(());
        }
        faults.failed.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::other(format!("input/output error injected into {op} call {call} by a test's FaultPlan")))
    }
}
