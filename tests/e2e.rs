//! End to end through a real gRPC server on 127.0.0.1:0.

use fundledger::api::pb;
use fundledger::ledger::LedgerConfig;
use support::{Cast, Client, TestServer};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

mod support;

fn meta() -> Option<pb::CommandMeta> {
    support::meta("req")
}

fn eur(value: &str) -> Option<pb::Money> {
    Some(pb::Money { value: value.into(), currency: "EUR".into() })
}

/// The head of the log, as the fund summary shows it to the auditor.
async fn head(cast: &Cast) -> u64 {
    cast.auditor().get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap().into_inner().head_seq
}

/// A fund with two partners who have paid in, and an open round; each
/// command sent by the role that may: the admin opens the fund, admits the
/// partners and opens the round, each partner's treasurer pledges, an
/// officer records the receipts.
async fn setup(server: &TestServer) -> Cast {
    let mut cast = server.cast().await;
    cast.admin()
        .open_fund(pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 })
        .await
        .unwrap();
    for (id, pledged) in [("bzk", "60000.00"), ("porticus", "40000.00")] {
        cast.admit_partner(id).await;
        cast.partner(id)
            .pledge_contribution(pb::PledgeContributionRequest {
                meta: meta(),
                partner_id: id.into(),
                amount: eur(pledged),
                earmark_round_id: None,
                pledged_on: "2024-01-10".into(),
            })
            .await
            .unwrap();
        cast.officer()
            .record_receipt(pb::RecordReceiptRequest {
                meta: meta(),
                partner_id: id.into(),
                amount: eur(pledged),
                earmark_round_id: None,
                value_date: "2024-01-20".into(),
                bank_reference: format!("NL-TRANSFER-{id}"),
            })
            .await
            .unwrap();
    }
    cast.admin()
        .open_round(pb::OpenRoundRequest {
            meta: meta(),
            round_id: "r1".into(),
            name: "Round 1".into(),
            budget_ceiling: eur("80000"),
            grant_max: eur("15000"),
            opens_on: "2024-02-01".into(),
            closes_on: "2024-03-31".into(),
        })
        .await
        .unwrap();
    cast
}

fn submit(id: &str, amount: &str) -> pb::SubmitApplicationRequest {
    pb::SubmitApplicationRequest {
        meta: meta(),
        application_id: id.into(),
        round_id: "r1".into(),
        applicant: Some(pb::Applicant {
            name: "Bewonersgroep Punda".into(),
            organisation_id: Default::default(),
            place: "Willemstad".into(),
            country: "CW".into(),
        }),
        title: "Dialoogtafels in Punda".into(),
        description: "Residents talk about their neighbourhood's future.".into(),
        amount_requested: eur(amount),
        submitted_on: "2024-02-15".into(),
    }
}

fn money_value(m: &Option<pb::Money>) -> &str {
    &m.as_ref().unwrap().value
}

#[tokio::test]
async fn a_full_grant_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let cast = setup(&server).await;
    let c = &mut cast.officer();
    c.submit_application(submit("app-1", "12000.00")).await.unwrap();
    let award = c
        .award_grant(pb::AwardGrantRequest {
            meta: meta(),
            application_id: "app-1".into(),
            amount: eur("10000.00"),
            reason: "Fits the call".into(),
            decided_on: "2024-04-10".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(award.events.len(), 1);
    let recorded = &award.events[0];
    assert_eq!(recorded.event_type, "GrantAwarded");
    assert_eq!(recorded.stream, "application/app-1");
    assert_eq!(recorded.hash.len(), 64);
    assert_eq!(recorded.actor, support::OFFICER, "the envelope names the officer who decided");
    let Some(pb::recorded_event::Payload::GrantAwarded(awarded)) = &recorded.payload else {
        panic!("expected a GrantAwarded payload, got {:?}", recorded.payload)
    };
    // Pro rata to available: 60,000 : 40,000.
    let shares: Vec<(&str, &str)> =
        awarded.attribution.iter().map(|s| (s.partner_id.as_str(), money_value(&s.amount))).collect();
    assert_eq!(shares, [("bzk", "6000.00"), ("porticus", "4000.00")]);

    c.make_payment(pb::MakePaymentRequest {
        meta: meta(),
        application_id: "app-1".into(),
        amount: eur("8000.00"),
        value_date: "2024-05-01".into(),
        bank_reference: "PAY-1".into(),
    })
    .await
    .unwrap();
    c.record_refund(pb::RecordRefundRequest {
        meta: meta(),
        application_id: "app-1".into(),
        amount: eur("500.00"),
        value_date: "2024-11-01".into(),
        bank_reference: "REFUND-1".into(),
    })
    .await
    .unwrap();
    c.settle_grant(pb::SettleGrantRequest {
        meta: meta(),
        application_id: "app-1".into(),
        final_amount: eur("7500.00"),
        reason: "Final report accepted".into(),
        decided_on: "2024-11-15".into(),
    })
    .await
    .unwrap();

    let grant = c.get_grant(pb::GetGrantRequest { application_id: "app-1".into() }).await.unwrap().into_inner();
    let position = grant.grant.unwrap();
    assert_eq!(money_value(&position.awarded), "10000.00");
    assert_eq!(money_value(&position.amount), "7500.00");
    assert_eq!(money_value(&position.net_paid), "7500.00");
    assert_eq!(money_value(&position.open), "0.00");
    assert_eq!(position.status, pb::GrantStatus::Settled as i32);
    let types: Vec<_> = grant.history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ApplicationSubmitted", "GrantAwarded", "PaymentMade", "RefundReceived", "GrantSettled"]);

    let balances = c
        .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: None })
        .await
        .unwrap()
        .into_inner();
    let bzk = balances.partners.iter().find(|p| p.partner_id == "bzk").unwrap().total.clone().unwrap();
    assert_eq!(money_value(&bzk.awarded), "4500.00");
    assert_eq!(money_value(&bzk.available), "55500.00");
    assert_eq!(money_value(&bzk.cash_held), "55500.00");

    let rounds =
        c.get_round_figures(pb::GetRoundFiguresRequest { round_id: Some("r1".into()), as_of: None }).await.unwrap();
    let r1 = &rounds.get_ref().rounds[0];
    assert_eq!((r1.applications_received, r1.applications_awarded, r1.applications_pending), (1, 1, 0));
    assert_eq!(money_value(&r1.amount_awarded), "10000.00");
    assert_eq!(money_value(&r1.budget_left), "72500.00");

    let page = c
        .list_applications(pb::ListApplicationsRequest {
            round_id: Some("r1".into()),
            status: Some(pb::ApplicationStatus::Awarded as i32),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.applications.len(), 1);
    // The auditor reads the same dossier.
    let audited = cast.auditor().get_grant(pb::GetGrantRequest { application_id: "app-1".into() }).await.unwrap();
    assert_eq!(audited.into_inner().history, grant.history);
    server.stop().await;
}

#[tokio::test]
async fn bad_amounts_are_invalid_arguments_and_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let cast = setup(&server).await;
    let before = head(&cast).await;
    for bad in ["1.234", "-5", "0", "abc", "1e30", "", "1,000.00", "99999999999999999999999999999"] {
        let status = cast
            .partner("bzk")
            .pledge_contribution(pb::PledgeContributionRequest {
                meta: meta(),
                partner_id: "bzk".into(),
                amount: eur(bad),
                earmark_round_id: None,
                pledged_on: "2024-02-01".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        assert!(status.message().contains("amount"), "{bad:?}: message should name the field: {}", status.message());
    }
    // A currency the fund does not keep.
    let status = cast
        .partner("bzk")
        .pledge_contribution(pb::PledgeContributionRequest {
            meta: meta(),
            partner_id: "bzk".into(),
            amount: Some(pb::Money { value: "10.00".into(), currency: "USD".into() }),
            earmark_round_id: None,
            pledged_on: "2024-02-01".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(head(&cast).await, before, "nothing may be recorded on an error");
    server.stop().await;
}

#[tokio::test]
async fn errors_carry_the_right_status_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let cast = setup(&server).await;
    let c = &mut cast.officer();
    // A business rule: FAILED_PRECONDITION with a stable reason code and the figures.
    c.submit_application(submit("app-1", "15000.00")).await.unwrap();
    c.submit_application(submit("app-2", "15000.00")).await.unwrap();
    let head = c.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap().into_inner().head_seq;
    let status = c
        .award_grant(pb::AwardGrantRequest {
            meta: meta(),
            application_id: "app-1".into(),
            amount: eur("15000.01"),
            reason: "too much".into(),
            decided_on: "2024-04-01".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("award_above_requested"), "{}", status.message());
    assert!(status.message().contains("EUR 15,000.01"), "{}", status.message());
    assert_eq!(status.metadata().get("fundledger-reason").unwrap(), "award_above_requested");

    // NOT_FOUND.
    let status = c.get_application(pb::GetApplicationRequest { application_id: "nope".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = c.get_grant(pb::GetGrantRequest { application_id: "app-2".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "no grant on a pending application");

    // ALREADY_EXISTS: same request id, different request.
    let mut first = submit("app-3", "1000.00");
    first.meta = Some(pb::CommandMeta { request_id: "fixed-id".into(), expected_version: None, positions_only: false });
    c.submit_application(first.clone()).await.unwrap();
    let retry = c.submit_application(first.clone()).await.unwrap().into_inner();
    assert!(retry.replayed);
    let mut other = submit("app-4", "1000.00");
    other.meta = first.meta.clone();
    let status = c.submit_application(other).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    // ABORTED: a wrong expected version.
    let mut award = pb::AwardGrantRequest {
        meta: Some(pb::CommandMeta {
            request_id: "award-app-2".into(),
            expected_version: Some(0),
            positions_only: false,
        }),
        application_id: "app-2".into(),
        amount: eur("100.00"),
        reason: "ok".into(),
        decided_on: "2024-04-01".into(),
    };
    let status = c.award_grant(award.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);

    // INVALID_ARGUMENT: no request id, a bad id, a bad date.
    let mut no_id = submit("app-5", "100.00");
    no_id.meta = None;
    assert_eq!(c.submit_application(no_id).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(c.submit_application(submit("bad id!", "100.00")).await.unwrap_err().code(), Code::InvalidArgument);
    let mut bad_date = submit("app-6", "100.00");
    bad_date.submitted_on = "2024-02-30".into();
    assert_eq!(c.submit_application(bad_date).await.unwrap_err().code(), Code::InvalidArgument);

    let after = c.get_fund_summary(pb::GetFundSummaryRequest { as_of: None }).await.unwrap().into_inner().head_seq;
    assert_eq!(after, head + 1, "only app-3 was recorded");

    // The right expected version goes through.
    award.meta =
        Some(pb::CommandMeta { request_id: "award-app-2b".into(), expected_version: Some(1), positions_only: false });
    c.award_grant(award).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_restart_serves_every_acknowledged_event_and_identical_balances() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let cast = setup(&server).await;
    for i in 0..20 {
        cast.officer().submit_application(submit(&format!("app-{i}"), "5000.00")).await.unwrap();
    }
    let before = head(&cast).await;
    let c = &mut cast.auditor();
    let balances =
        c.get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: None }).await.unwrap();
    let rounds = c.get_round_figures(pb::GetRoundFiguresRequest { round_id: None, as_of: None }).await.unwrap();
    let events = read_all(c).await;
    let admin_token = server.admin_token.clone();
    server.stop().await;

    // The same tokens work after the restart: access is in the log.
    let server = TestServer::resume(LedgerConfig::new(dir.path()), &admin_token).await;
    let cast = cast.on(&server);
    assert_eq!(head(&cast).await, before);
    let c = &mut cast.auditor();
    let again = c.get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: None }).await.unwrap();
    assert_eq!(again.into_inner(), balances.into_inner());
    let again = c.get_round_figures(pb::GetRoundFiguresRequest { round_id: None, as_of: None }).await.unwrap();
    assert_eq!(again.into_inner(), rounds.into_inner());
    assert_eq!(read_all(c).await, events);
    server.stop().await;
}

async fn read_all(c: &mut Client) -> Vec<pb::RecordedEvent> {
    let mut stream =
        c.read_events(pb::ReadEventsRequest { from_seq: 1, limit: None, filter: None }).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e.unwrap());
    }
    events
}

#[tokio::test]
async fn a_subscriber_stays_live_across_concurrent_writes_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let cast = setup(&server).await;
    let mut subscription =
        cast.auditor().subscribe(pb::SubscribeRequest { from_seq: 1, filter: None }).await.unwrap().into_inner();
    // The setup's events: access for four principals and two treasurers,
    // the fund, 2 × (admit, pledge, receipt) and the round.
    let setup_events = head(&cast).await;
    assert_eq!(setup_events, 1 + 3 + 1 + 2 * 4 + 1);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = cast.officer();
            tokio::spawn(async move {
                for i in 0..40 {
                    c.submit_application(submit(&format!("w{w}-{i}"), "100.00")).await.unwrap();
                }
            })
        })
        .collect();
    let expected_head: u64 = setup_events + 4 * 40;
    let mut seen = Vec::new();
    while seen.len() < expected_head as usize {
        let event = tokio::time::timeout(std::time::Duration::from_secs(20), subscription.next())
            .await
            .expect("the subscription went quiet before the last event")
            .unwrap()
            .unwrap();
        seen.push(event.seq);
    }
    for w in writers {
        w.await.unwrap();
    }
    let expected: Vec<u64> = (1..=expected_head).collect();
    assert_eq!(seen, expected, "every event exactly once, in order");
    assert_eq!(head(&cast).await, expected_head);
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_resource_exhausted_and_records_only_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LedgerConfig::new(dir.path());
    config.queue_commands_max = 1;
    config.batch_commands_max = 1;
    let server = TestServer::start_with(config).await;
    let cast = setup(&server).await;
    let before = head(&cast).await;
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let mut c = cast.officer();
            tokio::spawn(async move { c.submit_application(submit(&format!("q-{i}"), "100.00")).await })
        })
        .collect();
    let (mut ok, mut exhausted) = (0u64, 0u64);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                exhausted += 1;
            }
        }
    }
    assert!(exhausted > 0, "200 concurrent calls into a queue of one must overflow");
    assert_eq!(head(&cast).await, before + ok);
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_serve_generic_tools() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    // No token: health and reflection are open to generic tools.
    let channel = Channel::from_shared(format!("http://{}", server.address)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest { service: "fundledger.v1.Ledger".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"fundledger.v1.Ledger"), "{names:?}");
    server.stop().await;
}
