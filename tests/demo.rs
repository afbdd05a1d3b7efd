//! The Loket D demo, run as CI runs it: every figure the brief promises is
//! checked inside `demo::run` (322 handled, 159 awarded, more than EUR
//! 2,000,000, none above EUR 15,000, the log verifies, replay equals live),
//! which fails if any is off.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loket_d_demo_tells_its_story_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("ledger");
    fundledger::demo::run(fundledger::demo::DemoConfig { data_dir: Some(data_dir.clone()) }).await.unwrap();

    // The ledger stays behind for inspection, and a second demo refuses to
    // write over it.
    let again = fundledger::demo::run(fundledger::demo::DemoConfig { data_dir: Some(data_dir) }).await;
    assert!(again.unwrap_err().to_string().contains("already holds a ledger"));
}
