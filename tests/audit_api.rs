//! The Audit service through a real gRPC server on 127.0.0.1:0, and the
//! auditor's CLI (`checkpoint`, `verify`, `key`) as a user runs it.

use fundledger::api::pb;
use fundledger::ledger::{Ledger, LedgerConfig};
use std::process::Command;
use support::{AuditApi, Cast, Client, TestServer};
use tonic::Code;

mod support;

fn meta() -> Option<pb::CommandMeta> {
    support::meta("audit-req")
}

/// A fund with one partner and three pledges, on a ledger whose access is
/// set up (the admin, two officers, an auditor, the partner's treasurer);
/// returns the cast and the auditor's Audit client.
async fn setup(server: &TestServer) -> (Cast, AuditApi) {
    let mut cast = server.cast().await;
    cast.admin()
        .open_fund(pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 })
        .await
        .unwrap();
    cast.admit_partner("porticus").await;
    for _ in 0..3 {
        pledge(&mut cast.partner("porticus")).await;
    }
    let audit = server.audit(cast.token(support::AUDITOR));
    (cast, audit)
}

async fn pledge(c: &mut Client) {
    c.pledge_contribution(pb::PledgeContributionRequest {
        meta: meta(),
        partner_id: "porticus".into(),
        amount: Some(pb::Money { value: "1000.00".into(), currency: "EUR".into() }),
        earmark_round_id: None,
        pledged_on: "2024-01-10".into(),
    })
    .await
    .unwrap();
}

fn reason<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.unwrap_err();
    let reason = status.metadata().get("fundledger-reason").unwrap().to_str().unwrap().to_owned();
    (status.code(), reason)
}

#[tokio::test]
async fn get_checkpoint_refuses_an_empty_log_then_signs_the_head() {
    // An empty log has no principals, so nobody can ask: the call is
    // refused before the log is looked at.
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let mut server = TestServer::serve(ledger, String::new()).await;
    let stranger = fundledger::api::auth::new_token().unwrap();
    let empty = server.audit(&stranger).get_checkpoint(pb::GetCheckpointRequest {}).await;
    assert_eq!(reason(empty), (Code::Unauthenticated, "unauthenticated".into()));
    assert_eq!(server.ledger.head_seq(), 0);

    // Once `init` made the first admin, the log holds that event.
    server.admin_token = fundledger::api::auth::init_admin(
        &server.ledger,
        fundledger::domain::PrincipalId::new(support::ADMIN).unwrap(),
    )
    .await
    .unwrap();
    let (_cast, mut audit) = setup(&server).await;
    let head = server.ledger.head_seq();
    assert_eq!(head, 1 + 3 + 6, "init, the cast's three, fund, partner, treasurer and three pledges");
    let checkpoint = audit.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    let checkpoint = checkpoint.checkpoint.unwrap();
    assert_eq!(checkpoint.seq, head);
    assert_eq!(checkpoint.format, "fundledger-checkpoint-v1");
    assert_eq!(checkpoint.head_hash, hex::encode(server.ledger.projections().head_hash));
    assert_eq!(checkpoint.public_key, hex::encode(server.ledger.public_key().as_bytes()));
    let signed = fundledger::api::audit::checkpoint_from_pb(&checkpoint).unwrap();
    signed.verify_signature().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn verify_log_checks_a_running_ledger_while_it_takes_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let (cast, mut audit) = setup(&server).await;
    let start = server.ledger.head_seq();
    // Writers keep going while the log is verified.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let mut client = cast.partner("porticus");
            tokio::spawn(async move {
                for _ in 0..10 {
                    pledge(&mut client).await;
                }
            })
        })
        .collect();
    let mut verified_events = Vec::new();
    for _ in 0..3 {
        let report = audit.verify_log(pb::VerifyLogRequest::default()).await.unwrap().into_inner();
        assert!(report.verified, "{:?}", report.first_broken);
        assert!(report.live_projections_checked);
        assert_eq!(report.events, report.head_seq);
        assert_eq!(report.requests, report.events, "one event per command here");
        verified_events.push(report.events);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let report = audit.verify_log(pb::VerifyLogRequest::default()).await.unwrap().into_inner();
    assert!(report.verified);
    assert_eq!(report.events, start + 40);
    assert!(verified_events.iter().all(|&n| (start..=start + 40).contains(&n)), "{verified_events:?}");
    server.stop().await;
}

#[tokio::test]
async fn verify_log_checks_a_checkpoint_against_the_ledgers_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let (cast, mut audit) = setup(&server).await;
    let checkpoint = audit.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner().checkpoint.unwrap();
    pledge(&mut cast.partner("porticus")).await;

    let verify = |checkpoint: pb::Checkpoint, trusted_public_key: &str| pb::VerifyLogRequest {
        checkpoint: Some(checkpoint),
        trusted_public_key: trusted_public_key.into(),
    };
    let own_key = checkpoint.public_key.clone();
    let report = audit.verify_log(verify(checkpoint.clone(), &own_key)).await.unwrap().into_inner();
    assert!(report.verified && report.checkpoint_verified, "{:?}", report.first_broken);
    assert_eq!(report.events, checkpoint.seq + 1, "the log extends the checkpoint of the event before");

    // Figures changed after signing.
    let forged = pb::Checkpoint { seq: checkpoint.seq - 1, ..checkpoint.clone() };
    let report = audit.verify_log(verify(forged, "")).await.unwrap().into_inner();
    assert!(!report.verified && !report.checkpoint_verified);
    let broken = report.first_broken.unwrap();
    assert_eq!((broken.seq, broken.reason.as_str()), (None, "checkpoint_signature"));

    // Another key than the one the auditor trusts.
    let other = hex::encode(ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key().as_bytes());
    let report = audit.verify_log(verify(checkpoint.clone(), &other)).await.unwrap().into_inner();
    assert_eq!(report.first_broken.unwrap().reason, "checkpoint_untrusted_key");

    // Malformed input is refused before anything is read.
    let malformed = pb::Checkpoint { head_hash: "xyz".into(), ..checkpoint.clone() };
    let status = audit.verify_log(verify(malformed, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.metadata().get("fundledger-field").unwrap(), "checkpoint");
    assert!(status.message().contains("head_hash"), "{}", status.message());
    let shifted = pb::Checkpoint { recorded_at_micros: checkpoint.recorded_at_micros + 1, ..checkpoint };
    let status = audit.verify_log(verify(shifted, "")).await.unwrap_err();
    assert_eq!(status.metadata().get("fundledger-field").unwrap(), "checkpoint.recorded_at");
    let alone = pb::VerifyLogRequest { checkpoint: None, trusted_public_key: own_key };
    let status = audit.verify_log(alone).await.unwrap_err();
    assert_eq!(status.metadata().get("fundledger-field").unwrap(), "trusted_public_key");
    server.stop().await;
}

#[tokio::test]
async fn the_audit_service_has_health_and_reflection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: "fundledger.v1.Audit".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tokio_stream::StreamExt as _;
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"fundledger.v1.Audit") && names.contains(&"fundledger.v1.Ledger"), "{names:?}");
    server.stop().await;
}

/// Runs the binary; returns its exit code, stdout and stderr.
async fn fundledger(args: Vec<String>) -> (i32, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fundledger")).args(&args).output().unwrap()
    })
    .await
    .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap(), text(&output.stdout), text(&output.stderr))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_cli_keeps_a_checkpoint_and_verify_exits_by_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let early = files.path().join("early.json");
    let early = early.to_str().unwrap();

    let server = TestServer::start(dir.path()).await;
    let (cast, _) = setup(&server).await;
    let seq = server.ledger.head_seq();
    let token = cast.token(support::AUDITOR);
    let (code, out, err) =
        fundledger(args(&["checkpoint", "--server", &server.url, "--token", token, "--out", early])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("checkpoint of event {seq} ")), "{out}");
    // Without a token the server refuses, and the CLI says how to get one.
    let (code, _, err) = fundledger(args(&["checkpoint", "--server", &server.url, "--out", early])).await;
    assert_eq!(code, 1);
    assert!(err.contains("--token"), "{err}");
    // An earlier checkpoint is never overwritten.
    let (code, _, err) =
        fundledger(args(&["checkpoint", "--server", &server.url, "--token", token, "--out", early])).await;
    assert_eq!(code, 1);
    assert!(err.contains("never overwritten"), "{err}");
    // Online, against the running server.
    let (code, out, err) =
        fundledger(args(&["verify", "--server", &server.url, "--token", token, "--checkpoint", early])).await;
    assert_eq!(code, 0, "{out}{err}");
    // Offline refuses a ledger that is open.
    let (code, _, err) = fundledger(args(&["verify", "--data-dir", data_dir])).await;
    assert_eq!(code, 1);
    assert!(err.contains("is open"), "{err}");
    pledge(&mut cast.partner("porticus")).await;
    let public_key = hex::encode(server.ledger.public_key().as_bytes());
    server.stop().await;

    let (code, out, _) = fundledger(args(&["key", "--data-dir", data_dir])).await;
    assert_eq!((code, out.trim()), (0, public_key.as_str()));

    let verify = |checkpoint: &str| args(&["verify", "--data-dir", data_dir, "--checkpoint", checkpoint]);
    let (code, out, err) = fundledger(verify(early)).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("verified: "), "{out}");
    assert!(
        out.contains(&format!("{} events", seq + 1))
            && out.contains(&format!("checkpoint: event {seq} still has hash")),
        "{out}"
    );

    let edited = files.path().join("edited.json");
    let text = std::fs::read_to_string(early).unwrap();
    let changed = text.replace(&format!("\"seq\": {seq}"), &format!("\"seq\": {}", seq + 1));
    assert_ne!(changed, text, "the checkpoint file names its seq");
    std::fs::write(&edited, changed).unwrap();
    let (code, _, err) = fundledger(verify(edited.to_str().unwrap())).await;
    assert_eq!(code, 3, "a checkpoint that does not verify: {err}");
    assert!(err.contains("signature does not verify"), "{err}");

    let (code, out, _) = fundledger(args(&["verify", "--data-dir", data_dir, "--json"])).await;
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let events = (seq + 1).to_string();
    assert_eq!((json["verified"].as_bool(), json["events"].as_str()), (Some(true), Some(events.as_str())));

    let (code, _, err) = fundledger(args(&["verify", "--data-dir", files.path().to_str().unwrap()])).await;
    assert_eq!(code, 1);
    assert!(err.contains("holds no fundledger ledger"), "{err}");
}
