//! SIGTERM to a real `fundledger serve` while many clients write: every
//! command is either acknowledged and durable, or refused UNAVAILABLE and
//! not recorded, or left without an answer by the closing connection (and
//! then recorded at most once, and safe to retry with its request id).
//! Nothing in between: no INTERNAL, no hang, no half-recorded command. The
//! process exits 0 in bounded time and leaves a log that verifies, with
//! sled's snapshot brought up to date for the next start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::process::{self, ServerProcess};
use support::workload::{self, seqs, Cmd, Outcome};

/// Concurrent clients, each on connections of its own.
const CLIENTS: usize = 16;
/// Acknowledged commands before the SIGTERM, so that it lands mid-load.
const ACKNOWLEDGED_BEFORE_TERM: usize = 200;
/// Generous bounds, for a loaded 2-core machine; nothing asserts on timing
/// but these "it did not hang" limits.
const CALL_LIMIT: Duration = Duration::from_secs(60);
const EXIT_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_or_refuses_every_command_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = process::init(dir.path());
    let mut server = ServerProcess::start(dir.path());
    let fund = workload::set_up_fund(&server, &admin_token, CLIENTS).await;

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    // Half the clients have connections of their own; the other half share
    // one, so that the server's goodbye (GOAWAY) meets many calls at once.
    let shared = server.channel().await;
    for c in 0..CLIENTS {
        let (mut treasurer, mut officer) = if c % 2 == 0 {
            (server.client(&fund.treasurers[c]).await, server.client(&fund.officer).await)
        } else {
            (
                fundledger::api::auth::client(shared.clone(), &fund.treasurers[c]).unwrap(),
                fundledger::api::auth::client(shared.clone(), &fund.officer).unwrap(),
            )
        };
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(async move {
            // One command at a time, until the server stops answering.
            let mut answers = Vec::new();
            for n in 0.. {
                let cmd = Cmd::nth(c, n);
                let answer = tokio::time::timeout(CALL_LIMIT, cmd.send(&mut treasurer, &mut officer))
                    .await
                    .unwrap_or_else(|_| panic!("{} got no answer and no error: the call hung", cmd.request_id()));
                let outcome =
                    Outcome::of(answer).unwrap_or_else(|status| panic!("{} was answered {status:?}", cmd.request_id()));
                let done = !matches!(outcome, Outcome::Acknowledged(_));
                if !done {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                answers.push((cmd, outcome));
                if done {
                    return answers;
                }
            }
            unreachable!()
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.load(Ordering::Relaxed) < ACKNOWLEDGED_BEFORE_TERM {
        assert!(Instant::now() < deadline, "the clients were too slow to load the server");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.terminate();

    let status = tokio::task::block_in_place(|| server.wait_exit(EXIT_LIMIT))
        .unwrap_or_else(|| panic!("the server did not exit after SIGTERM: {}", server.log()));
    assert!(status.success(), "the server exited {status} after SIGTERM: {}", server.log());
    assert!(server.log().contains("every acknowledged command is on disk"), "{}", server.log());
    // On its way out the server brought sled's snapshot up to date: opening
    // the tree again finds nothing written after it, so writes no new one
    // (a start after a long run would otherwise read all the run wrote).
    assert!(server.log().contains("brought the storage engine's snapshot up to date"), "{}", server.log());
    let snapshots = support::sled_snapshots(dir.path());
    assert!(!snapshots.is_empty(), "sled keeps a snapshot");
    drop(fundledger::log::sled_config(dir.path()).open().unwrap());
    assert_eq!(support::sled_snapshots(dir.path()), snapshots, "the stop left sled's snapshot behind its log");
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    drop(server);
    process::verify(dir.path());

    // Restarted: read the whole log and hold every answer against it.
    let server = ServerProcess::start(dir.path());
    let mut auditor_view = server.client(&fund.admin).await;
    let logged = workload::events_by_request(&mut auditor_view).await;
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut retries = Vec::new();
    for (cmd, outcome) in &answers {
        let id = cmd.request_id();
        match outcome {
            Outcome::Acknowledged(response) => {
                *counts.entry("acknowledged").or_default() += 1;
                assert!(!response.replayed, "{id} was sent once");
                assert_eq!(logged.get(id), Some(&seqs(response)), "acknowledged {id} is not in the log as answered");
            }
            Outcome::Unavailable(status) => {
                // The server said it did not take the command.
                *counts.entry("unavailable").or_default() += 1;
                assert!(!logged.contains_key(id), "{id} was refused ({status:?}) but recorded");
                eprintln!("{id}: refused: {}", status.message());
                retries.push(cmd.clone());
            }
            Outcome::Transport(status) => {
                *counts.entry("no answer").or_default() += 1;
                eprintln!("{id}: no answer: {:?}: {}", status.code(), status.message());
                if logged.contains_key(id) {
                    *counts.entry("no answer, in the log").or_default() += 1;
                }
                retries.push(cmd.clone());
            }
        }
    }
    let sent_before_term = answers.iter().filter(|(_, o)| matches!(o, Outcome::Acknowledged(_))).count();
    assert!(sent_before_term >= ACKNOWLEDGED_BEFORE_TERM);
    // Nothing was recorded that no client sent.
    for id in logged.keys().filter(|id| id.starts_with('c')) {
        assert!(answers.iter().any(|(cmd, _)| cmd.request_id() == id), "{id} is in the log but was never sent");
    }

    // Each unanswered command, retried with its request id: replayed if it
    // was recorded, recorded once if not.
    for cmd in &retries {
        let c: usize = cmd.request_id()[1..].split('-').next().unwrap().parse().unwrap();
        let mut treasurer = server.client(&fund.treasurers[c]).await;
        let mut officer = server.client(&fund.officer).await;
        let retry = cmd.send(&mut treasurer, &mut officer).await.unwrap();
        match logged.get(cmd.request_id()) {
            Some(in_log) => {
                assert!(retry.replayed, "{} is in the log, but its retry was recorded again", cmd.request_id());
                assert_eq!(&seqs(&retry), in_log);
            }
            None => assert!(!retry.replayed, "{} is not in the log, but its retry says replayed", cmd.request_id()),
        }
    }
    let after = workload::events_by_request(&mut auditor_view).await;
    let client_requests = after.keys().filter(|id| id.starts_with('c')).count();
    assert_eq!(client_requests, counts["acknowledged"] + retries.len());
    eprintln!("SIGTERM under load: {counts:?}, {} retried", retries.len());

    drop(auditor_view);
    let mut server = server;
    server.terminate();
    let status = tokio::task::block_in_place(|| server.wait_exit(EXIT_LIMIT)).expect("the server exits");
    assert!(status.success(), "{status}: {}", server.log());
    drop(server);
    process::verify(dir.path());
}
