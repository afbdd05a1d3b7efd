//! Hard kills (SIGKILL) of a real `fundledger serve` at random moments
//! during concurrent writes lose no acknowledged command and record no
//! command twice, and every log they leave verifies and replays: the crash
//! harness of `support::crash_harness`, in its short mode.
//!
//! The long mode is the same test with more kills (and, to reproduce a run,
//! its seed):
//!
//!     CRASH_KILLS=300 CRASH_SEED=42 cargo test --test crash -- --nocapture
//!
//! `CRASH_CLIENTS` sets the number of concurrent clients (8 by default).

mod support;
use support::crash_harness::{self, CrashConfig};

/// Kills in the short mode, which runs in CI.
const SHORT_MODE_KILLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_command_and_doubles_none() {
    let config = CrashConfig::from_env(SHORT_MODE_KILLS);
    let report = crash_harness::run(&config).await;
    eprintln!("crash harness: {report}");
    assert_eq!(report.kills, config.kills);
    // Each retry was either found recorded or recorded by itself, once.
    assert_eq!(report.retries, report.retries_replayed + report.retries_recorded);
}
