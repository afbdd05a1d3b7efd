//! Fail-stop on storage errors: writes, flushes and fsyncs made to fail on
//! purpose (`log::faults`, tests only) never yield a success, and after one
//! failure the ledger refuses every later command — even once the disk
//! "recovers", since retrying an fsync after a failure is unsafe
//! (PostgreSQL's fsyncgate) — while reads keep answering from the durable
//! state. After a restart the log verifies and holds every acknowledged
//! command exactly once; a command whose outcome was unknown is either in
//! the log (a retry with its request id replays it) or not (a retry applies
//! it, once).

use fundledger::api::pb;
use fundledger::domain::{Command, Currency, Date, MoneyInput, PartnerId};
use fundledger::ledger::{CommandError, CommandOutcome, CommandRequest, Ledger, LedgerConfig};
use fundledger::log::faults::{FaultPlan, Persistence, StorageOp};
use fundledger::log::StoreFormat;
use fundledger::projections::Projections;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

mod support;
use support::{request, SeededRng, TestServer};

fn eur(value: &str) -> MoneyInput {
    MoneyInput::parse(value, "EUR").unwrap()
}

fn partner(id: &str) -> PartnerId {
    PartnerId::new(id).unwrap()
}

fn pledge(id: &str, partner_id: &str, amount: &str) -> CommandRequest {
    request(
        id,
        Command::PledgeContribution {
            partner: partner(partner_id),
            amount: eur(amount),
            earmark: None,
            pledged_on: Date::parse("2024-01-10").unwrap(),
        },
    )
}

fn receipt(id: &str, partner_id: &str, amount: &str) -> CommandRequest {
    request(
        id,
        Command::RecordReceipt {
            partner: partner(partner_id),
            amount: eur(amount),
            earmark: None,
            value_date: Date::parse("2024-01-20").unwrap(),
            bank_reference: format!("NL91ABNA0417164300 {id}"),
        },
    )
}

/// A fund with the given partners, recorded before any fault is armed.
async fn setup(ledger: &Ledger, partners: &[String]) {
    let mut requests = vec![request("open", Command::OpenFund { name: "Loket D".into(), currency: Currency::eur() })];
    for p in partners {
        requests.push(request(
            &format!("admit-{p}"),
            Command::AdmitPartner {
                partner: partner(p),
                name: p.to_uppercase(),
                organisation_id: format!("NL-KVK-{p}"),
            },
        ));
    }
    for r in requests {
        ledger.submit(r).await.unwrap();
    }
}

fn faulty(dir: &Path, plan: &Arc<FaultPlan>) -> LedgerConfig {
    LedgerConfig { storage_faults: Some(plan.clone()), ..LedgerConfig::new(dir) }
}

/// The answer to a command whose batch failed to become durable.
#[track_caller]
fn assert_outcome_unknown(answer: Result<CommandOutcome, CommandError>) {
    match answer {
        Err(CommandError::Unavailable(message)) => {
            assert!(message.contains("outcome of this command is unknown"), "{message}");
            assert!(message.contains("injected"), "the message does not say what failed: {message}");
        }
        other => panic!("a command whose batch failed was answered {other:?}"),
    }
}

/// The answer to a command sent after the writer stopped.
#[track_caller]
fn assert_refused(answer: Result<CommandOutcome, CommandError>) {
    match answer {
        Err(CommandError::Unavailable(message)) => {
            assert!(message.contains("a storage failure stopped the writer"), "{message}");
            assert!(message.contains("does not retry"), "{message}");
        }
        other => panic!("a command after a storage failure was answered {other:?}"),
    }
}

fn calls(plan: &FaultPlan) -> [u64; 3] {
    [plan.calls(StorageOp::Write), plan.calls(StorageOp::Flush), plan.calls(StorageOp::Fsync)]
}

/// Stops a ledger and drops it, so that its directory can be opened again.
async fn close(ledger: Ledger) {
    ledger.shutdown().await;
    drop(ledger);
}

/// Checks a reopened ledger's whole log — the chain verifies, the stored
/// projections equal a full replay, every request's events are one
/// contiguous run — and returns the sequence numbers of each request's
/// events.
fn check_log(ledger: &Ledger) -> BTreeMap<String, Vec<u64>> {
    let report = ledger.log_reader().verify().expect("the log verifies");
    assert_eq!(report.events, ledger.head_seq());
    let replayed = Projections::replay(&ledger.log_reader(), report.events).unwrap();
    assert_eq!(replayed.encoded(), ledger.projections().encoded(), "the projections differ from a full replay");
    let mut by_request: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut last_request = String::new();
    for event in ledger.read_events(1, usize::MAX).unwrap() {
        let id = event.envelope.request_id.clone();
        let seqs = by_request.entry(id.clone()).or_default();
        assert!(seqs.is_empty() || last_request == id, "request {id} was recorded twice");
        seqs.push(event.envelope.seq);
        last_request = id;
    }
    by_request
}

fn seqs(outcome: &CommandOutcome) -> Vec<u64> {
    outcome.events.iter().map(|e| e.envelope.seq).collect()
}

/// Retries, on a reopened ledger, a command whose outcome was unknown: if
/// the log holds it, the retry replays exactly those events; if not, the
/// retry records it and a second retry replays that. Returns whether it
/// was in the log.
async fn retry_unknown(ledger: &Ledger, logged: &BTreeMap<String, Vec<u64>>, request: CommandRequest) -> bool {
    let head = ledger.head_seq();
    let first = ledger.submit(request.clone()).await.unwrap();
    match logged.get(&request.request_id) {
        Some(in_log) => {
            assert!(first.replayed, "{} is in the log but its retry was recorded again", request.request_id);
            assert_eq!(&seqs(&first), in_log);
            assert_eq!(ledger.head_seq(), head, "a replayed retry recorded something");
            true
        }
        None => {
            assert!(!first.replayed, "{} is not in the log but its retry says replayed", request.request_id);
            let again = ledger.submit(request.clone()).await.unwrap();
            assert!(again.replayed);
            assert_eq!(again.events, first.events);
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_not_acknowledged_and_not_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::new());
    let ledger = Ledger::open(faulty(dir.path(), &plan)).unwrap();
    setup(&ledger, &["porticus".into()]).await;
    ledger.submit(pledge("p1", "porticus", "1000.00")).await.unwrap();
    let head = ledger.head_seq();

    // A transient failure: only this one write fails.
    plan.fail(StorageOp::Write, 1, Persistence::Once);
    assert_outcome_unknown(ledger.submit(pledge("p2", "porticus", "2000.00")).await);
    assert_eq!(plan.failures(StorageOp::Write), 1);
    // The disk would work again, but the ledger does not trust it.
    let before = calls(&plan);
    assert_refused(ledger.submit(pledge("p3", "porticus", "3000.00")).await);
    assert_eq!(calls(&plan), before, "the ledger touched the disk again after a failure");
    assert_eq!(ledger.head_seq(), head);
    assert_eq!(ledger.read_events(1, usize::MAX).unwrap().len() as u64, head);
    close(ledger).await;

    // The write never ran: the command is not there, and a retry records it once.
    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    assert_eq!(ledger.head_seq(), head);
    let logged = check_log(&ledger);
    assert!(!retry_unknown(&ledger, &logged, pledge("p2", "porticus", "2000.00")).await);
    assert!(!retry_unknown(&ledger, &logged, pledge("p3", "porticus", "3000.00")).await);
    let logged = check_log(&ledger);
    assert_eq!(logged.len(), 5, "open, admit, p1, p2, p3: {logged:?}");
    let pledged = ledger.projections().state.fund.as_ref().unwrap().pledged.minor();
    assert_eq!(pledged, 600_000, "EUR 1000 + 2000 + 3000, each once, in cents");
    close(ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_fsync_every_command_is_refused_even_when_the_disk_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::new());
    let ledger = Ledger::open(faulty(dir.path(), &plan)).unwrap();
    setup(&ledger, &["porticus".into()]).await;
    let acknowledged = ledger.submit(pledge("p1", "porticus", "1000.00")).await.unwrap();
    let head = ledger.head_seq();
    let before_failure = ledger.projections().encoded();
    let mut failed = ledger.watch_failure();
    assert!(!*failed.borrow());

    plan.fail(StorageOp::Fsync, 1, Persistence::Once);
    assert_outcome_unknown(ledger.submit(pledge("p2", "porticus", "2000.00")).await);
    tokio::time::timeout(Duration::from_secs(20), failed.wait_for(|f| *f)).await.unwrap().unwrap();
    plan.heal();
    // No fsync is retried, nothing more is written, whatever comes.
    let after_failure = calls(&plan);
    for n in 3..8 {
        assert_refused(ledger.submit(pledge(&format!("p{n}"), "porticus", "1.00")).await);
    }
    assert_eq!(calls(&plan), after_failure, "the ledger touched the disk again after a failed fsync");
    // Reads answer from the durable state: the failed batch is not visible.
    assert_eq!(ledger.head_seq(), head);
    assert_eq!(ledger.projections().encoded(), before_failure);
    let events = ledger.read_events(1, usize::MAX).unwrap();
    assert_eq!(events.last().unwrap().envelope.seq, head);
    assert_eq!(events.last().unwrap().envelope.request_id, "p1");
    close(ledger).await;

    // The batch had been written and flushed to the OS before its fsync
    // failed, and nothing lost power: here it is in the log, unacknowledged,
    // and its retry replays it instead of recording it again.
    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    let logged = check_log(&ledger);
    assert_eq!(logged["p1"], seqs(&acknowledged));
    assert!(retry_unknown(&ledger, &logged, pledge("p2", "porticus", "2000.00")).await);
    assert!(!retry_unknown(&ledger, &logged, pledge("p3", "porticus", "1.00")).await);
    check_log(&ledger);
    close(ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_storage_failure_the_stop_leaves_sleds_snapshot_alone() {
    // Without a failure, the stop brings sled's snapshot up to date: the
    // run wrote events since sled last wrote one.
    let healthy = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(healthy.path())).unwrap();
    setup(&ledger, &["porticus".into()]).await;
    ledger.shutdown().await;
    let before = support::sled_snapshots(healthy.path());
    let refreshed = fundledger::server_main::refresh_after_stop(ledger, healthy.path()).await;
    assert!(matches!(refreshed, Some(Ok(_))), "{refreshed:?}");
    assert_ne!(support::sled_snapshots(healthy.path()), before, "the stop wrote sled's snapshot");

    // After a failed fsync nothing more is written to that disk, the
    // snapshot included.
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::new());
    let ledger = Ledger::open(faulty(dir.path(), &plan)).unwrap();
    setup(&ledger, &["porticus".into()]).await;
    let mut failed = ledger.watch_failure();
    plan.fail(StorageOp::Fsync, 1, Persistence::Once);
    assert_outcome_unknown(ledger.submit(pledge("p1", "porticus", "1000.00")).await);
    tokio::time::timeout(Duration::from_secs(20), failed.wait_for(|f| *f)).await.unwrap().unwrap();
    ledger.shutdown().await;
    let before = support::sled_snapshots(dir.path());
    assert!(fundledger::server_main::refresh_after_stop(ledger, dir.path()).await.is_none());
    assert_eq!(support::sled_snapshots(dir.path()), before, "the stop wrote to a disk that had failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_after_a_run_that_wrote_nothing_leaves_sleds_snapshot_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    setup(&ledger, &["porticus".into()]).await;
    ledger.shutdown().await;
    assert!(ledger.log_written_since_open());
    assert!(matches!(fundledger::server_main::refresh_after_stop(ledger, dir.path()).await, Some(Ok(_))));

    // A run that only reads, and is refused a command (a rejection records
    // nothing), writes nothing: its stop skips the refresh, a second sled
    // open of seconds at millions of events.
    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    assert_eq!(ledger.projections().state.partners.len(), 1);
    let refused = ledger.submit(pledge("p1", "nobody", "1000.00")).await;
    assert!(matches!(refused, Err(CommandError::Rejected(_))), "{refused:?}");
    ledger.shutdown().await;
    assert!(!ledger.log_written_since_open());
    let before = support::sled_snapshots(dir.path());
    assert!(fundledger::server_main::refresh_after_stop(ledger, dir.path()).await.is_none());
    assert_eq!(support::sled_snapshots(dir.path()), before);
    // And the snapshot was up to date: sled's next open finds nothing to
    // bring into it.
    drop(support::open_retrying(|| fundledger::log::sled_config(dir.path()).open().map_err(|e| e.to_string())));
    assert_eq!(support::sled_snapshots(dir.path()), before, "the run left sled's snapshot behind its log");

    // One event is enough to need the refresh.
    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    ledger.submit(pledge("p2", "porticus", "1000.00")).await.unwrap();
    ledger.shutdown().await;
    assert!(ledger.log_written_since_open());
    assert!(matches!(fundledger::server_main::refresh_after_stop(ledger, dir.path()).await, Some(Ok(_))));
    assert_ne!(support::sled_snapshots(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_flush_is_never_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::new());
    let ledger = Ledger::open(faulty(dir.path(), &plan)).unwrap();
    setup(&ledger, &["porticus".into()]).await;
    plan.fail(StorageOp::Flush, 1, Persistence::Persistent);
    assert_outcome_unknown(ledger.submit(pledge("p1", "porticus", "1000.00")).await);
    assert_refused(ledger.submit(pledge("p2", "porticus", "1000.00")).await);
    assert_eq!(plan.failures(StorageOp::Flush), 1, "the flush was tried again");
    close(ledger).await;

    // The batch was applied in sled's memory; whether sled wrote it out as
    // it closed is sled's business. Either way the retry is right.
    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    let logged = check_log(&ledger);
    retry_unknown(&ledger, &logged, pledge("p1", "porticus", "1000.00")).await;
    check_log(&ledger);
    close(ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_fsync_stops_the_writer_after_its_batch_was_answered() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::new());
    let config = LedgerConfig { checkpoint_events_interval: 4, ..faulty(dir.path(), &plan) };
    let ledger = Ledger::open(config).unwrap();
    // Events 1 and 2, then 3.
    setup(&ledger, &["porticus".into()]).await;
    ledger.submit(pledge("p1", "porticus", "1.00")).await.unwrap();
    // Event 4 is due for a checkpoint: the append's fsync works (the command
    // is durable and acknowledged), the checkpoint's, right after, fails.
    plan.fail(StorageOp::Fsync, 2, Persistence::Once);
    let acknowledged = ledger.submit(pledge("p2", "porticus", "2.00")).await.unwrap();
    assert_eq!(seqs(&acknowledged), [4]);
    let mut failed = ledger.watch_failure();
    tokio::time::timeout(Duration::from_secs(20), failed.wait_for(|f| *f)).await.unwrap().unwrap();
    assert_eq!(plan.failures(StorageOp::Fsync), 1);
    assert_refused(ledger.submit(pledge("p3", "porticus", "3.00")).await);
    close(ledger).await;

    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    let logged = check_log(&ledger);
    assert_eq!(logged["p2"], [4]);
    assert!(!logged.contains_key("p3"));
    close(ledger).await;
}

/// One run of concurrent clients against a ledger whose `nth` call of `op`
/// (after set-up) fails. Each client sends `per_call` commands at a time,
/// `calls` times: with a few hundred per call, each group commit is synced
/// on the writer's sync thread while the next is decided and written.
async fn concurrent_run(seed: u64, per_call: usize, calls_per_client: usize) {
    let mut rng = SeededRng::new(seed);
    let op = [StorageOp::Write, StorageOp::Flush, StorageOp::Fsync][rng.between(0, 2) as usize];
    let nth = rng.between(1, 12);
    let persistence = if rng.between(0, 1) == 0 { Persistence::Once } else { Persistence::Persistent };
    // Every stored format: v3 and v4 find the commands of events written
    // past the durable head by catching their index up from the log at the
    // restart.
    let format = [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4][(seed % 3) as usize];
    let context = format!("seed {seed}, {per_call} per call: {op} call {nth} fails, {persistence:?}, {format:?}");
    eprintln!("{context}");

    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::new());
    // Two clients' calls per group commit: the clients' calls make four
    // groups at a time, each written while the one before is synced.
    let batch_commands_max = if per_call > 1 { 2 * per_call } else { LedgerConfig::new(dir.path()).batch_commands_max };
    let config = LedgerConfig { new_store_format: format, batch_commands_max, ..faulty(dir.path(), &plan) };
    let ledger = Ledger::open(config).unwrap();
    let partners: Vec<String> = (0..8).map(|n| format!("partner{n}")).collect();
    setup(&ledger, &partners).await;
    let mut failed = ledger.watch_failure();
    plan.fail(op, nth, persistence);

    // Each client is one partner's treasurer and officer: a pledge, then
    // its receipt, `per_call` commands at a time, until the ledger refuses.
    let clients: Vec<_> = partners
        .iter()
        .map(|p| {
            let ledger = ledger.clone();
            let p = p.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for call in 0..calls_per_client {
                    let commands: Vec<CommandRequest> = (call * per_call..(call + 1) * per_call)
                        .map(|i| {
                            let id = format!("{p}-{i}");
                            if i % 2 == 0 {
                                pledge(&id, &p, "100.00")
                            } else {
                                receipt(&id, &p, "100.00")
                            }
                        })
                        .collect();
                    let call_answers = match ledger.submit_many(commands.clone()).await {
                        Ok(call_answers) => call_answers,
                        Err(refused) => vec![Err(refused); commands.len()],
                    };
                    assert_eq!(call_answers.len(), commands.len());
                    let stop = call_answers.iter().any(Result::is_err);
                    answers.extend(commands.into_iter().zip(call_answers));
                    if stop {
                        break;
                    }
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    let fired = plan.failures(op) > 0;
    let durable_head = ledger.head_seq();
    let mut acknowledged = Vec::new();
    let mut unknown = Vec::new();
    for (command, answer) in answers {
        match answer {
            Ok(outcome) => {
                assert!(!outcome.replayed, "{context}: {} was new", command.request_id);
                assert!(seqs(&outcome).iter().all(|&s| s <= durable_head), "{context}: acknowledged past the head");
                acknowledged.push((command, outcome));
            }
            Err(CommandError::Unavailable(message)) => {
                assert!(fired, "{context}: refused without a failure: {message}");
                assert!(message.contains("storage failure"), "{context}: {message}");
                unknown.push(command);
            }
            Err(other) => panic!("{context}: {} was answered {other:?}", command.request_id),
        }
    }
    if fired {
        tokio::time::timeout(Duration::from_secs(20), failed.wait_for(|f| *f)).await.unwrap().unwrap();
        plan.heal();
        let after = calls(&plan);
        assert_refused(ledger.submit(pledge("late", "partner0", "1.00")).await);
        assert_eq!(calls(&plan), after, "{context}: the disk was touched after the failure");
        assert!(!unknown.is_empty(), "{context}: a failure that nobody was told about");
    } else {
        assert!(unknown.is_empty());
    }
    close(ledger).await;

    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    let logged = check_log(&ledger);
    for (command, outcome) in &acknowledged {
        assert_eq!(logged.get(&command.request_id), Some(&seqs(outcome)), "{context}: {}", command.request_id);
    }
    // Whatever is in the log beyond the durable head belongs to a command
    // whose outcome the client was told is unknown.
    for (id, in_log) in &logged {
        if in_log[0] > durable_head {
            assert!(unknown.iter().any(|c| &c.request_id == id), "{context}: {id} is beyond the durable head");
        }
    }
    let mut present = 0;
    for command in unknown.iter().cloned() {
        present += usize::from(retry_unknown(&ledger, &logged, command).await);
    }
    let logged = check_log(&ledger);
    assert_eq!(logged.len(), 1 + partners.len() + acknowledged.len() + unknown.len(), "{context}");
    eprintln!(
        "{context}: {} acknowledged, {} unknown ({present} of them in the log after the restart)",
        acknowledged.len(),
        unknown.len()
    );
    close(ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_never_see_success_for_a_batch_whose_storage_call_failed() {
    let seed = support::seed_from_env("FAULT_SEED");
    for run in 0..6 {
        concurrent_run(seed.wrapping_add(run), 1, 40).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_calls_never_see_success_for_a_group_whose_storage_call_failed_while_the_next_was_written() {
    let seed = support::seed_from_env("FAULT_SEED");
    for run in 0..3 {
        concurrent_run(seed.wrapping_add(run), 300, 3).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_repeating_one_of_a_group_still_being_synced_is_replayed_not_recorded_twice() {
    let dir = tempfile::tempdir().unwrap();
    // A group commit per call: the first call's group is synced on the
    // sync thread while the writer takes the next.
    let config = LedgerConfig { batch_commands_max: 300, ..LedgerConfig::new(dir.path()) };
    let ledger = Ledger::open(config).unwrap();
    setup(&ledger, &["porticus".into()]).await;
    let first: Vec<CommandRequest> = (0..300).map(|i| pledge(&format!("p{i}"), "porticus", "1.00")).collect();
    // The same ids: the same commands, then other commands.
    let same = first.clone();
    let other: Vec<CommandRequest> = (0..300).map(|i| pledge(&format!("p{i}"), "porticus", "2.00")).collect();
    let (a, b, c) = tokio::join!(ledger.submit_many(first), ledger.submit_many(same), ledger.submit_many(other));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let head = ledger.head_seq();
    for ((a, b), c) in a.into_iter().zip(b).zip(c) {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(!a.replayed && b.replayed);
        assert_eq!(seqs(&a), seqs(&b));
        assert!(matches!(c, Err(CommandError::RequestIdConflict { .. })), "{c:?}");
    }
    assert_eq!(head, 2 + 300);
    let pledged = ledger.projections().state.fund.as_ref().unwrap().pledged.minor();
    assert_eq!(pledged, 300 * 100);
    assert!(ledger.writer_counters().overlapped >= 1, "no group was synced on the sync thread");
    close(ledger).await;
    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    assert_eq!(check_log(&ledger).len(), 2 + 300);
    close(ledger).await;
}

// ------------------------------------------------------------------ through gRPC

async fn health(server: &TestServer, service: &str) -> i32 {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status
}

fn grpc_pledge(id: &str, amount: &str) -> pb::PledgeContributionRequest {
    pb::PledgeContributionRequest {
        meta: Some(pb::CommandMeta { request_id: id.into(), expected_version: None, positions_only: false }),
        partner_id: "porticus".into(),
        amount: Some(pb::Money { value: amount.into(), currency: "EUR".into() }),
        earmark_round_id: None,
        pledged_on: "2024-01-10".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_server_a_failed_fsync_is_unavailable_not_serving_and_reads_go_on() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(FaultPlan::new());
    let server = TestServer::start_with(faulty(dir.path(), &plan)).await;
    let mut cast = server.cast().await;
    cast.admin()
        .open_fund(pb::OpenFundRequest {
            meta: support::meta("open"),
            name: "Loket D".into(),
            currency: "EUR".into(),
            minor_units: 2,
        })
        .await
        .unwrap();
    cast.admit_partner("porticus").await;
    let mut treasurer = cast.partner("porticus");
    treasurer.pledge_contribution(grpc_pledge("pledge-1", "1000.00")).await.unwrap();
    let mut auditor = cast.auditor();
    let balances = |mut client: support::Client| async move {
        client.get_partner_balances(pb::GetPartnerBalancesRequest::default()).await.unwrap().into_inner()
    };
    let before = balances(cast.auditor()).await;
    assert_eq!(health(&server, "fundledger.v1.Ledger").await, ServingStatus::Serving as i32);

    plan.fail(StorageOp::Fsync, 1, Persistence::Once);
    let status = treasurer.pledge_contribution(grpc_pledge("pledge-2", "2000.00")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("outcome of this command is unknown"), "{}", status.message());
    assert!(status.message().contains("same request id"), "{}", status.message());

    // Health checkers are told, so that writes go elsewhere.
    let deadline = Instant::now() + Duration::from_secs(20);
    while health(&server, "fundledger.v1.Ledger").await != ServingStatus::NotServing as i32 {
        assert!(Instant::now() < deadline, "health never turned NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health(&server, "").await, ServingStatus::NotServing as i32);

    // The disk "recovers"; the ledger still refuses, and says why.
    plan.heal();
    let status = treasurer.pledge_contribution(grpc_pledge("pledge-3", "3000.00")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("a storage failure stopped the writer"), "{}", status.message());
    assert!(status.message().contains("does not retry"), "{}", status.message());
    assert!(status.message().contains("injected into fsync"), "{}", status.message());

    // Reads keep working on the durable state.
    assert_eq!(balances(cast.auditor()).await, before);
    let mut stream = auditor
        .read_events(pb::ReadEventsRequest { from_seq: 1, limit: None, filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.request_id, "pledge-1");
    let summary = auditor.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap().into_inner();
    assert_eq!(summary.head_seq, last.seq);
    let admin_token = server.admin_token.clone();
    drop((treasurer, auditor));
    server.stop().await;

    // Restarted: the batch whose fsync failed had reached the OS (see the
    // in-process test), so its retry replays it; the refused one is new.
    let server = TestServer::resume(LedgerConfig::new(dir.path()), &admin_token).await;
    let cast = cast.on(&server);
    let mut treasurer = cast.partner("porticus");
    let retry = treasurer.pledge_contribution(grpc_pledge("pledge-2", "2000.00")).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.events[0].seq, last.seq + 1);
    let retry = treasurer.pledge_contribution(grpc_pledge("pledge-3", "3000.00")).await.unwrap().into_inner();
    assert!(!retry.replayed);
    assert_eq!(retry.events[0].seq, last.seq + 2);
    assert_eq!(health(&server, "fundledger.v1.Ledger").await, ServingStatus::Serving as i32);
    check_log(&server.ledger);
    drop(treasurer);
    server.stop().await;
}
