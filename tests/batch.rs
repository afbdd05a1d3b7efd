//! The batch command call (`SubmitCommands`) through a real gRPC server:
//! commands decided in order, each with its own outcome, committed through
//! the group commit, idempotent per command, and bounded.

use fundledger::api::convert::batch_command;
use fundledger::api::pb;
use fundledger::ledger::LedgerConfig;
use fundledger::workload::{self, Step, WorkloadClient};
use support::{Client, TestServer};
use tonic::Code;

mod support;

fn batch(steps: &[Step], prefix: &str) -> pb::SubmitCommandsRequest {
    let commands = steps
        .iter()
        .enumerate()
        .map(|(n, step)| {
            batch_command(
                &step.command,
                pb::CommandMeta { request_id: format!("{prefix}-{n}"), expected_version: None, positions_only: false },
            )
        })
        .collect();
    pb::SubmitCommandsRequest { commands, positions_only: false }
}

fn accepted(outcome: &pb::CommandOutcome) -> &pb::CommandResponse {
    match &outcome.outcome {
        Some(pb::command_outcome::Outcome::Accepted(response)) => response,
        other => panic!("expected an accepted command, got {other:?}"),
    }
}

fn refused(outcome: &pb::CommandOutcome) -> &pb::CommandRefusal {
    match &outcome.outcome {
        Some(pb::command_outcome::Outcome::Refused(refusal)) => refusal,
        other => panic!("expected a refused command, got {other:?}"),
    }
}

/// A workload client's first step, a receipt, as its own RPC's request.
fn receipt_of(step: &Step, meta: pb::CommandMeta) -> pb::RecordReceiptRequest {
    match batch_command(&step.command, meta).command {
        Some(pb::batch_command::Command::RecordReceipt(receipt)) => receipt,
        other => panic!("a workload client's first step is a receipt, not {other:?}"),
    }
}

async fn head(admin: &mut Client) -> u64 {
    admin.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap().into_inner().head_seq
}

/// The workload's fund, set up through batch calls by the roles that may:
/// the admin's commands in one call, each treasurer's pledge in another.
/// Answers the officer's client.
async fn workload_fund(server: &TestServer) -> Client {
    let setup = workload::setup();
    let (admin_steps, pledges): (Vec<Step>, Vec<Step>) =
        setup.into_iter().partition(|step| step.actor == workload::admin());
    let answer = server.admin().submit_commands(batch(&admin_steps, "setup")).await.unwrap().into_inner();
    assert_eq!(answer.outcomes.len(), admin_steps.len());
    answer.outcomes.iter().for_each(|o| assert!(!accepted(o).replayed));
    for (p, pledge) in pledges.iter().enumerate() {
        let token = server
            .grant(pledge.actor.principal.as_str(), support::role(pb::RoleKind::Partner, Some(&format!("p{p:02}"))))
            .await;
        let answer = server
            .client(&token)
            .submit_commands(batch(std::slice::from_ref(pledge), &format!("pledge{p}")))
            .await
            .unwrap();
        accepted(&answer.into_inner().outcomes[0]);
    }
    let token = server.grant("wl-officer", support::role(pb::RoleKind::Officer, None)).await;
    server.client(&token)
}

#[tokio::test]
async fn a_batch_is_decided_in_order_and_each_command_has_its_own_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut officer = workload_fund(&server).await;
    let mut admin = server.admin();

    // Three cycles of receipt, application, award and payment: each award
    // and payment needs the application submitted earlier in this batch.
    let mut client = WorkloadClient::of_kind("t", 0, workload::ClientKind::Officer);
    let steps: Vec<Step> = (0..12).map(|_| client.next_step()).collect();
    let mut request = batch(&steps, "cycle");
    // Command 5 (the second application) does not parse: its refusal names
    // the field, and its award and payment (6, 7) are refused in turn.
    if let Some(pb::batch_command::Command::SubmitApplication(r)) = &mut request.commands[5].command {
        r.application_id = "not an id".into();
    } else {
        panic!("command 5 is the second cycle's application");
    }
    // An officer may not pledge for a partner: refused on its own.
    request.commands.insert(
        8,
        batch_command(
            &workload::setup().last().unwrap().command,
            pb::CommandMeta { request_id: "cycle-pledge".into(), expected_version: None, positions_only: false },
        ),
    );
    // An award above the amount requested: a business rule.
    if let Some(pb::batch_command::Command::AwardGrant(r)) = &mut request.commands[11].command {
        r.amount = Some(pb::Money { value: "5000.00".into(), currency: "EUR".into() });
    } else {
        panic!("command 11 is the third cycle's award");
    }
    let head_before = head(&mut admin).await;
    let answer = officer.submit_commands(request.clone()).await.unwrap().into_inner();
    assert_eq!(answer.outcomes.len(), 13);

    let invalid = refused(&answer.outcomes[5]);
    assert_eq!(
        (invalid.code, invalid.reason.as_str(), invalid.field.as_str()),
        (Code::InvalidArgument as i32, "invalid_field", "application_id")
    );
    for n in [6, 7] {
        assert_eq!(refused(&answer.outcomes[n]).reason, "unknown_application", "command {n}");
    }
    let denied = refused(&answer.outcomes[8]);
    assert_eq!((denied.code, denied.reason.as_str()), (Code::PermissionDenied as i32, "permission_denied"));
    let above = refused(&answer.outcomes[11]);
    assert_eq!((above.code, above.reason.as_str()), (Code::FailedPrecondition as i32, "award_above_requested"));
    assert!(above.message.contains("EUR 5,000.00"), "{}", above.message);
    // The payment after the refused award finds no grant to pay.
    assert_eq!(refused(&answer.outcomes[12]).code, Code::FailedPrecondition as i32);

    // The accepted ones were recorded in the order given, without gaps.
    let accepted_at = [0, 1, 2, 3, 4, 9, 10];
    let seqs: Vec<u64> =
        accepted_at.iter().flat_map(|&n| accepted(&answer.outcomes[n]).events.iter().map(|e| e.seq)).collect();
    assert_eq!(seqs, ((head_before + 1)..=(head_before + seqs.len() as u64)).collect::<Vec<_>>());
    assert_eq!(head(&mut admin).await, head_before + seqs.len() as u64);

    // The same batch again: the accepted ones answer their original events,
    // recording nothing; the refused ones are refused again.
    let again = officer.submit_commands(request.clone()).await.unwrap().into_inner();
    for (n, (first, second)) in answer.outcomes.iter().zip(&again.outcomes).enumerate() {
        if accepted_at.contains(&n) {
            assert!(accepted(second).replayed, "command {n}");
            assert_eq!(accepted(first).events, accepted(second).events, "command {n}");
        } else {
            assert_eq!(refused(first).code, refused(second).code, "command {n}");
        }
    }
    // Once more asking for positions only (as a client whose answer in
    // full was too large for it would): where the original events are.
    let positions = officer
        .submit_commands(pb::SubmitCommandsRequest { positions_only: true, ..request })
        .await
        .unwrap()
        .into_inner();
    for &n in &accepted_at {
        let (events, position) = (&accepted(&answer.outcomes[n]).events, recorded(&positions.outcomes[n]));
        assert!(position.replayed, "command {n}");
        assert_eq!((position.first_seq, position.event_count as usize), (events[0].seq, events.len()), "command {n}");
    }
    assert_eq!(head(&mut admin).await, head_before + seqs.len() as u64);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_call_is_refused_whole_when_empty_too_large_full_or_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LedgerConfig::new(dir.path());
    config.queue_commands_max = 40;
    let server = TestServer::start_with(config).await;
    let mut officer = workload_fund(&server).await;
    let mut admin = server.admin();
    let head_before = head(&mut admin).await;

    let empty = officer
        .submit_commands(pb::SubmitCommandsRequest { commands: vec![], positions_only: false })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().starts_with("empty_batch"), "{}", empty.message());

    let mut client = WorkloadClient::of_kind("big", 0, workload::ClientKind::Officer);
    let steps: Vec<Step> = (0..fundledger::ledger::BATCH_COMMANDS_MAX + 1).map(|_| client.next_step()).collect();
    let too_large = officer.submit_commands(batch(&steps, "big")).await.unwrap_err();
    assert_eq!(too_large.code(), Code::InvalidArgument);
    assert!(too_large.message().starts_with("batch_too_large"), "{}", too_large.message());

    // More commands than the queue has places: none is queued.
    let full = officer.submit_commands(batch(&steps[..41], "full")).await.unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert!(full.message().starts_with("queue_full"), "{}", full.message());

    let mut anonymous = pb::ledger_client::LedgerClient::new(server.channel.clone());
    let refused = anonymous.submit_commands(batch(&steps[..1], "anon")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    assert_eq!(head(&mut admin).await, head_before, "nothing was recorded");
    // Forty fit.
    let answer = officer.submit_commands(batch(&steps[..40], "fits")).await.unwrap().into_inner();
    answer.outcomes.iter().for_each(|o| assert!(!accepted(o).replayed));
    server.stop().await;
}

fn recorded(outcome: &pb::CommandOutcome) -> &pb::RecordedPosition {
    match &outcome.outcome {
        Some(pb::command_outcome::Outcome::Recorded(position)) => position,
        other => panic!("expected a recorded position, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_asking_for_positions_only_is_answered_with_where_its_events_are() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut officer = workload_fund(&server).await;
    let mut admin = server.admin();

    let mut client = WorkloadClient::of_kind("pos", 0, workload::ClientKind::Officer);
    let steps: Vec<Step> = (0..8).map(|_| client.next_step()).collect();
    let mut request = batch(&steps, "pos");
    request.positions_only = true;
    // An award above the amount requested is refused as in a full answer.
    if let Some(pb::batch_command::Command::AwardGrant(r)) = &mut request.commands[6].command {
        r.amount = Some(pb::Money { value: "5000.00".into(), currency: "EUR".into() });
    } else {
        panic!("command 6 is the second cycle's award");
    }
    // Command 0 again, under its request id, later in the same batch.
    request.commands.push(request.commands[0].clone());
    let head_before = head(&mut admin).await;
    let answer = officer.submit_commands(request.clone()).await.unwrap().into_inner();
    assert_eq!(answer.outcomes.len(), 9);
    assert_eq!(refused(&answer.outcomes[6]).reason, "award_above_requested");
    assert_eq!(refused(&answer.outcomes[7]).code, Code::FailedPrecondition as i32);
    let (first, again_in_batch) = (recorded(&answer.outcomes[0]), recorded(&answer.outcomes[8]));
    assert!(again_in_batch.replayed);
    assert_eq!((again_in_batch.first_seq, again_in_batch.event_count), (first.first_seq, first.event_count));

    // The accepted ones' positions follow each other without gaps from the
    // head before the call, and end at the head after it.
    let accepted_at = [0, 1, 2, 3, 4, 5];
    let mut next = head_before + 1;
    for &n in &accepted_at {
        let position = recorded(&answer.outcomes[n]);
        assert!(!position.replayed, "command {n}");
        assert_eq!(position.first_seq, next, "command {n}");
        assert!(position.event_count >= 1, "command {n}");
        next += u64::from(position.event_count);
    }
    assert_eq!(head(&mut admin).await, next - 1);

    // The same batch again, answered in full: the original events, at the
    // positions the first answer gave.
    let mut in_full = request.clone();
    in_full.positions_only = false;
    let again = officer.submit_commands(in_full).await.unwrap().into_inner();
    for &n in &accepted_at {
        let (position, response) = (recorded(&answer.outcomes[n]), accepted(&again.outcomes[n]));
        assert!(response.replayed, "command {n}");
        let seqs: Vec<u64> = response.events.iter().map(|e| e.seq).collect();
        let expected: Vec<u64> = (position.first_seq..position.first_seq + u64::from(position.event_count)).collect();
        assert_eq!(seqs, expected, "command {n}");
        assert!(response.events.iter().all(|e| e.request_id == format!("pos-{n}")), "command {n}");
    }
    // And once more with positions only: the same positions, replayed.
    let third = officer.submit_commands(request).await.unwrap().into_inner();
    for &n in &accepted_at {
        let (first, retry) = (recorded(&answer.outcomes[n]), recorded(&third.outcomes[n]));
        assert!(retry.replayed, "command {n}");
        assert_eq!((retry.first_seq, retry.event_count), (first.first_seq, first.event_count), "command {n}");
    }
    assert_eq!(refused(&third.outcomes[6]).reason, "award_above_requested");
    assert_eq!(head(&mut admin).await, next - 1, "the retries recorded nothing");

    // A command recorded through its own RPC, retried in a batch asking
    // for positions: the position of the events its own answer gave.
    let mut own = WorkloadClient::of_kind("own", 0, workload::ClientKind::Officer);
    let step = own.next_step();
    let meta = pb::CommandMeta { request_id: "own-0".into(), expected_version: None, positions_only: false };
    let receipt = receipt_of(&step, meta.clone());
    let events = officer.record_receipt(receipt).await.unwrap().into_inner().events;
    let retry = pb::SubmitCommandsRequest { commands: vec![batch_command(&step.command, meta)], positions_only: true };
    let answer = officer.submit_commands(retry).await.unwrap().into_inner();
    let position = recorded(&answer.outcomes[0]);
    assert!(position.replayed);
    assert_eq!((position.first_seq, position.event_count as usize), (events[0].seq, events.len()));
    server.stop().await;
}

#[tokio::test]
async fn a_command_asking_for_positions_only_is_answered_with_where_its_events_are() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut officer = workload_fund(&server).await;
    let mut admin = server.admin();

    // Through its own RPC: no events, only where they are.
    let mut client = WorkloadClient::of_kind("one", 0, workload::ClientKind::Officer);
    let step = client.next_step();
    let meta = pb::CommandMeta { request_id: "one-0".into(), expected_version: None, positions_only: true };
    let mut receipt = receipt_of(&step, meta);
    let head_before = head(&mut admin).await;
    let answer = officer.record_receipt(receipt.clone()).await.unwrap().into_inner();
    assert!(answer.events.is_empty(), "{answer:?}");
    assert!(!answer.replayed);
    let position = pb::RecordedPosition { first_seq: head_before + 1, event_count: 1, replayed: false };
    assert_eq!(answer.position, Some(position));
    assert_eq!(head(&mut admin).await, head_before + 1);

    // The answer's form is not part of the request: retried in full, it is
    // the same request, answered with the original event where the first
    // answer said it was.
    receipt.meta.as_mut().unwrap().positions_only = false;
    let again = officer.record_receipt(receipt.clone()).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(
        again.events.iter().map(|e| (e.seq, e.request_id.as_str())).collect::<Vec<_>>(),
        [(head_before + 1, "one-0")]
    );
    assert_eq!(again.position, Some(pb::RecordedPosition { replayed: true, ..position }));
    // A different request under the same id is refused whatever the form.
    receipt.bank_reference.push_str("-other");
    receipt.meta.as_mut().unwrap().positions_only = true;
    assert_eq!(officer.record_receipt(receipt).await.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(head(&mut admin).await, head_before + 1, "the retries recorded nothing");

    // In a batch answered in full, the command whose meta asks for
    // positions only is answered `recorded`; the others carry their events
    // and their position.
    let steps: Vec<Step> = (0..4).map(|_| client.next_step()).collect();
    let commands = steps
        .iter()
        .enumerate()
        .map(|(n, step)| {
            let meta =
                pb::CommandMeta { request_id: format!("mixed-{n}"), expected_version: None, positions_only: n == 1 };
            batch_command(&step.command, meta)
        })
        .collect();
    let answer = officer.submit_commands(pb::SubmitCommandsRequest { commands, positions_only: false }).await.unwrap();
    let outcomes = answer.into_inner().outcomes;
    let first = head_before + 2;
    assert_eq!(recorded(&outcomes[1]), &pb::RecordedPosition { first_seq: first + 1, event_count: 1, replayed: false });
    for n in [0, 2, 3] {
        let response = accepted(&outcomes[n]);
        let seq = first + n as u64;
        assert_eq!(response.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [seq], "command {n}");
        assert_eq!(response.position, Some(pb::RecordedPosition { first_seq: seq, event_count: 1, replayed: false }));
    }
    assert_eq!(head(&mut admin).await, first + 3);
    server.stop().await;
}
