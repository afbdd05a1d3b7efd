//! A hard kill (SIGKILL) of a real `fundledger serve` process in the middle
//! of concurrent writes loses no acknowledged command, and the log it
//! leaves verifies and replays.
//!
//! The ledger is set up as an operator does: `fundledger init` prints the
//! admin token (its last line), the admin gives an officer access through
//! the API, and the officer writes.

use fundledger::api::auth::{self, Client};
use fundledger::api::pb;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// `fundledger init --data-dir DIR`: a new ledger; returns the admin token,
/// the last line of its output.
fn init(dir: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fundledger"))
        .args(["init", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "fundledger init failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let token = stdout.lines().last().expect("init prints the token last").trim().to_owned();
    assert!(token.starts_with(auth::TOKEN_PREFIX), "the last line of init is not a token: {stdout}");
    token
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(dir: &std::path::Path) -> ServerProcess {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_fundledger"))
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ServerProcess { child, url: format!("http://127.0.0.1:{port}") }
    }

    /// A client calling with `token`, once the server accepts connections.
    async fn client(&self, token: &str) -> Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Channel::from_shared(self.url.clone()).unwrap().connect().await {
                Ok(channel) => return auth::client(channel, token).unwrap(),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(error) => panic!("server at {} did not come up: {error}", self.url),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn meta(id: String) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta { request_id: id, expected_version: None })
}

fn submit(id: &str) -> pb::SubmitApplicationRequest {
    pb::SubmitApplicationRequest {
        meta: meta(format!("submit-{id}")),
        application_id: id.into(),
        round_id: "r1".into(),
        applicant: Some(pb::Applicant {
            name: "Bewonersgroep".into(),
            organisation_id: String::new(),
            place: "Groningen".into(),
            country: "NL".into(),
        }),
        title: "Buurtgesprekken".into(),
        description: String::new(),
        amount_requested: Some(pb::Money { value: "1000.00".into(), currency: "EUR".into() }),
        submitted_on: "2024-02-15".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_kill_during_writes_loses_no_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let admin_token = init(dir.path());
    let server = ServerProcess::start(dir.path());
    let mut admin = server.client(&admin_token).await;
    let officer_token = auth::new_token().unwrap();
    admin
        .grant_access(pb::GrantAccessRequest {
            meta: meta("grant-officer".into()),
            principal_id: "officer-anna".into(),
            role: Some(pb::Role { kind: pb::RoleKind::Officer as i32, partner_id: None }),
            token_sha256: hex::encode(auth::token_sha256(&officer_token)),
        })
        .await
        .unwrap();
    let client = server.client(&officer_token).await;
    admin
        .open_fund(pb::OpenFundRequest {
            meta: meta("open".into()),
            name: "Loket D".into(),
            currency: "EUR".into(),
            minor_units: 2,
        })
        .await
        .unwrap();
    admin
        .open_round(pb::OpenRoundRequest {
            meta: meta("round".into()),
            round_id: "r1".into(),
            name: "Round 1".into(),
            budget_ceiling: Some(pb::Money { value: "100000".into(), currency: "EUR".into() }),
            grant_max: Some(pb::Money { value: "15000".into(), currency: "EUR".into() }),
            opens_on: "2024-02-01".into(),
            closes_on: "2024-03-31".into(),
        })
        .await
        .unwrap();

    // Eight writers, each one command at a time, remember what was acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut client = client.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                for i in 0..100_000 {
                    let id = format!("w{w}-{i}");
                    match client.submit_application(submit(&id)).await {
                        Ok(_) => acknowledged.lock().unwrap().push(id),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Let them write for a while, then pull the plug.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acknowledged.lock().unwrap().len() < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no graceful shutdown
    server.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 300, "the writers were too slow to make the test meaningful");
    drop(server);

    // Restart on the same directory: every acknowledged command is there.
    let server = ServerProcess::start(dir.path());
    let mut client = server.client(&officer_token).await;
    for id in &acknowledged {
        let answer = client.get_application(pb::GetApplicationRequest { application_id: id.clone() }).await;
        assert!(answer.is_ok(), "acknowledged application {id} was lost: {answer:?}");
        // A retry is recognised as the same request, not recorded again.
        let retry = client.submit_application(submit(id)).await.unwrap().into_inner();
        assert!(retry.replayed, "{id} was recorded twice");
    }
    let summary = client.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap().into_inner();
    // Commands in flight at the kill may or may not have made it; nothing else.
    assert!(summary.applications as usize >= acknowledged.len());
    assert!(summary.applications as usize <= acknowledged.len() + 8);
    drop(client);
    drop(admin);
    drop(server);

    // The log left behind verifies and replays to the same projections.
    let ledger = fundledger::ledger::Ledger::open(fundledger::ledger::LedgerConfig::new(dir.path())).unwrap();
    let report = ledger.log_reader().verify().unwrap();
    assert_eq!(report.events, summary.head_seq);
    let replayed = fundledger::projections::Projections::replay(&ledger.log_reader(), report.events).unwrap();
    assert_eq!(replayed.encoded(), ledger.projections().encoded());
    ledger.shutdown().await;
}
