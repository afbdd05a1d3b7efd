//! The service against a real ledger on a temporary directory: commands and
//! their statuses, queries, the event streams, and the server over TCP.
//! Every call carries the bearer token of the role that may make it.

use super::auth;
use super::pb;
use super::pb::ledger_server::Ledger as _;
use super::service::{LedgerService, FIELD_METADATA_KEY, REASON_METADATA_KEY};
use crate::domain::PrincipalId;
use crate::ledger::{Ledger, LedgerConfig};
use std::collections::BTreeMap;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Status};

const ADMIN: &str = "admin";
const OFFICER: &str = "officer-anna";
const AUDITOR: &str = "auditor-carla";

struct Fixture {
    service: LedgerService,
    ledger: Ledger,
    stop: watch::Sender<bool>,
    /// Bearer token per principal id.
    tokens: BTreeMap<String, String>,
    /// Events before the fund: the admin's, the officer's and the
    /// auditor's access.
    access_events: u64,
    _dir: tempfile::TempDir,
}

/// A new ledger with its first admin (as `fundledger init` makes it), an
/// officer and an auditor given access through the service.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let admin = auth::init_admin(&ledger, PrincipalId::new(ADMIN).unwrap()).await.unwrap();
    let (stop, stopping) = watch::channel(false);
    let mut f = Fixture {
        service: LedgerService::new(ledger.clone(), stopping),
        ledger,
        stop,
        tokens: BTreeMap::from([(ADMIN.to_owned(), admin)]),
        access_events: 0,
        _dir: dir,
    };
    f.grant(OFFICER, pb::RoleKind::Officer, None).await;
    f.grant(AUDITOR, pb::RoleKind::Auditor, None).await;
    f.access_events = f.ledger.head_seq();
    f
}

/// `message` with `authorization: Bearer <token>`.
fn with_token<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(auth::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    request
}

impl Fixture {
    /// `message` as `principal` sends it: with their bearer token.
    fn by<T>(&self, principal: &str, message: T) -> Request<T> {
        with_token(self.token(principal), message)
    }

    fn token(&self, principal: &str) -> &str {
        self.tokens.get(principal).unwrap_or_else(|| panic!("{principal} has no token"))
    }

    fn admin<T>(&self, message: T) -> Request<T> {
        self.by(ADMIN, message)
    }

    fn officer<T>(&self, message: T) -> Request<T> {
        self.by(OFFICER, message)
    }

    fn auditor<T>(&self, message: T) -> Request<T> {
        self.by(AUDITOR, message)
    }

    /// As the treasurer of `partner`.
    fn partner<T>(&self, partner: &str, message: T) -> Request<T> {
        self.by(&format!("treasurer-{partner}"), message)
    }

    /// Gives `principal` a role and a new token, as the admin.
    async fn grant(&mut self, principal: &str, kind: pb::RoleKind, partner: Option<&str>) {
        let token = auth::new_token().unwrap();
        let request = self.admin(pb::GrantAccessRequest {
            meta: meta(&format!("grant-{principal}")),
            principal_id: principal.into(),
            role: Some(pb::Role { kind: kind as i32, partner_id: partner.map(str::to_owned) }),
            token_sha256: hex::encode(auth::token_sha256(&token)),
        });
        self.service.grant_access(request).await.unwrap();
        self.tokens.insert(principal.to_owned(), token);
    }
}

fn meta(request_id: &str) -> Option<pb::CommandMeta> {
    Some(pb::CommandMeta { request_id: request_id.into(), expected_version: None, positions_only: false })
}

fn eur(value: &str) -> Option<pb::Money> {
    Some(pb::Money { value: value.into(), currency: "EUR".into() })
}

fn value(money: &Option<pb::Money>) -> &str {
    &money.as_ref().expect("amount present").value
}

/// Asserts the status code, the reason in the metadata, and that the
/// message starts with the reason.
fn check_status(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.metadata().get(REASON_METADATA_KEY).unwrap().to_str().unwrap(), reason, "{status:?}");
    assert!(status.message().starts_with(&format!("{reason}: ")), "{status:?}");
}

fn open_fund(id: &str) -> pb::OpenFundRequest {
    pb::OpenFundRequest { meta: meta(id), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 }
}

fn pledge(id: &str, partner: &str, amount: &str) -> pb::PledgeContributionRequest {
    pb::PledgeContributionRequest {
        meta: meta(id),
        partner_id: partner.into(),
        amount: eur(amount),
        earmark_round_id: None,
        pledged_on: "2023-01-10".into(),
    }
}

fn submit(id: &str, application: &str) -> pb::SubmitApplicationRequest {
    pb::SubmitApplicationRequest {
        meta: meta(id),
        application_id: application.into(),
        round_id: "2023-1".into(),
        applicant: Some(pb::Applicant {
            name: "Buurtvereniging De Linde".into(),
            organisation_id: String::new(),
            place: "Willemstad".into(),
            country: "CW".into(),
        }),
        title: "Buurtgesprekken".into(),
        description: "Gesprekken over de buurt".into(),
        amount_requested: eur("10000.00"),
        submitted_on: "2023-02-01".into(),
    }
}

/// A fund with two partners (each with a treasurer) who paid in, one open
/// round and three pending applications `app-1` to `app-3`: 13 events.
async fn fund_with_applications(f: &mut Fixture) {
    f.service.open_fund(f.admin(open_fund("r-open"))).await.unwrap();
    for partner in ["porticus", "janivo"] {
        let request = f.admin(pb::AdmitPartnerRequest {
            meta: meta(&format!("r-admit-{partner}")),
            partner_id: partner.into(),
            name: partner.to_uppercase(),
            organisation_id: format!("NL-KVK-{partner}"),
        });
        f.service.admit_partner(request).await.unwrap();
        f.grant(&format!("treasurer-{partner}"), pb::RoleKind::Partner, Some(partner)).await;
    }
    let s = &f.service;
    s.pledge_contribution(f.partner("porticus", pledge("r-pledge-p", "porticus", "30000.00"))).await.unwrap();
    s.pledge_contribution(f.partner("janivo", pledge("r-pledge-j", "janivo", "10000.00"))).await.unwrap();
    for (partner, amount) in [("porticus", "30000.00"), ("janivo", "10000.00")] {
        s.record_receipt(f.officer(pb::RecordReceiptRequest {
            meta: meta(&format!("r-receipt-{partner}")),
            partner_id: partner.into(),
            amount: eur(amount),
            earmark_round_id: None,
            value_date: "2023-01-20".into(),
            bank_reference: format!("SEPA-{partner}"),
        }))
        .await
        .unwrap();
    }
    s.open_round(f.admin(pb::OpenRoundRequest {
        meta: meta("r-round"),
        round_id: "2023-1".into(),
        name: "Ronde 1".into(),
        budget_ceiling: eur("1000000.00"),
        grant_max: eur("15000.00"),
        opens_on: "2023-01-01".into(),
        closes_on: "2023-03-31".into(),
    }))
    .await
    .unwrap();
    for n in 1..=3 {
        s.submit_application(f.officer(submit(&format!("r-submit-{n}"), &format!("app-{n}")))).await.unwrap();
    }
}

fn award(id: &str, application: &str, amount: &str) -> pb::AwardGrantRequest {
    pb::AwardGrantRequest {
        meta: meta(id),
        application_id: application.into(),
        amount: eur(amount),
        reason: "past alles".into(),
        decided_on: "2023-03-01".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn award_answers_the_recorded_event_with_its_attribution() {
    let mut f = fixture().await;
    fund_with_applications(&mut f).await;
    let response = f.service.award_grant(f.officer(award("r-award", "app-1", "8000.00"))).await.unwrap().into_inner();
    assert!(!response.replayed);
    let [event] = response.events.as_slice() else { panic!("one event expected: {response:?}") };
    assert_eq!(
        (event.stream.as_str(), event.stream_version, event.event_type.as_str()),
        ("application/app-1", 2, "GrantAwarded")
    );
    assert_eq!((event.actor.as_str(), event.request_id.as_str()), (OFFICER, "r-award"));
    assert_eq!(event.hash.len(), 64);
    let Some(pb::recorded_event::Payload::GrantAwarded(awarded)) = &event.payload else { panic!("{event:?}") };
    assert_eq!(value(&awarded.amount), "8000.00");
    // Pro rata to 30,000 and 10,000 available.
    let shares: Vec<_> = awarded.attribution.iter().map(|s| (s.partner_id.as_str(), value(&s.amount))).collect();
    assert_eq!(shares, [("janivo", "2000.00"), ("porticus", "6000.00")]);

    // A retry answers the same events and records nothing.
    let head = f.ledger.head_seq();
    let retry = f.service.award_grant(f.officer(award("r-award", "app-1", "8000.00"))).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.events, response.events);
    assert_eq!(f.ledger.head_seq(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_map_to_statuses_with_reasons() {
    let mut f = fixture().await;
    let s = &f.service;

    let err = s.get_fund_summary(f.auditor(pb::GetFundSummaryRequest { as_of: None })).await.unwrap_err();
    check_status(&err, Code::NotFound, "fund_not_opened");
    let err = s.admit_partner(f.admin(pb::AdmitPartnerRequest {
        meta: meta("r-0"),
        partner_id: "porticus".into(),
        name: "Porticus".into(),
        organisation_id: "NL".into(),
    }));
    check_status(&err.await.unwrap_err(), Code::NotFound, "fund_not_opened");

    fund_with_applications(&mut f).await;
    let s = &f.service;

    // Malformed fields are named, in the message and in the metadata.
    let err = s.pledge_contribution(f.partner("porticus", pledge("r-1", "porticus", "1e30"))).await.unwrap_err();
    check_status(&err, Code::InvalidArgument, "invalid_field");
    assert_eq!(err.metadata().get(FIELD_METADATA_KEY).unwrap(), "amount");
    assert!(err.message().contains("amount"), "{err:?}");
    let err = s.pledge_contribution(f.partner("porticus", pledge("", "porticus", "1.00"))).await.unwrap_err();
    check_status(&err, Code::InvalidArgument, "invalid_field");
    assert_eq!(err.metadata().get(FIELD_METADATA_KEY).unwrap(), "meta.request_id");
    let err = s.pledge_contribution(f.partner("porticus", pledge("bad id", "porticus", "1.00"))).await.unwrap_err();
    check_status(&err, Code::InvalidArgument, "invalid_request_id");

    // Precision is the domain's to judge.
    let err = s.pledge_contribution(f.partner("porticus", pledge("r-2", "porticus", "0.001"))).await.unwrap_err();
    check_status(&err, Code::InvalidArgument, "invalid_amount");
    // Only a partner the fund has can have a treasurer, so it is a receipt
    // that names an unknown one.
    let err = s.record_receipt(f.officer(pb::RecordReceiptRequest {
        meta: meta("r-3"),
        partner_id: "cirrus".into(),
        amount: eur("1.00"),
        earmark_round_id: None,
        value_date: "2023-01-20".into(),
        bank_reference: "SEPA-cirrus".into(),
    }));
    check_status(&err.await.unwrap_err(), Code::NotFound, "unknown_partner");
    let err = s.award_grant(f.officer(award("r-4", "app-1", "20000.00"))).await.unwrap_err();
    check_status(&err, Code::FailedPrecondition, "award_above_requested");
    assert!(err.message().contains("EUR 20,000.00"), "{err:?}");

    // The same request id for a different request.
    let err = s.award_grant(f.officer(award("r-open", "app-1", "100.00"))).await.unwrap_err();
    check_status(&err, Code::AlreadyExists, "request_id_conflict");

    // A stale expected version.
    let mut stale = award("r-5", "app-1", "100.00");
    stale.meta.as_mut().unwrap().expected_version = Some(7);
    let err = s.award_grant(f.officer(stale)).await.unwrap_err();
    check_status(&err, Code::Aborted, "wrong_expected_version");
    let mut current = award("r-6", "app-1", "100.00");
    current.meta.as_mut().unwrap().expected_version = Some(1);
    s.award_grant(f.officer(current)).await.unwrap();

    // Queries.
    let err = s.get_grant(f.auditor(pb::GetGrantRequest { application_id: "app-2".into() })).await.unwrap_err();
    check_status(&err, Code::NotFound, "not_awarded");
    let err = s.get_application(f.auditor(pb::GetApplicationRequest { application_id: "app-9".into() }));
    check_status(&err.await.unwrap_err(), Code::NotFound, "unknown_application");
    let err = s.get_round_figures(f.auditor(pb::GetRoundFiguresRequest { round_id: Some("2099".into()), as_of: None }));
    check_status(&err.await.unwrap_err(), Code::NotFound, "unknown_round");
    let err = s
        .get_partner_balances(f.auditor(pb::GetPartnerBalancesRequest { partner_id: Some("x y".into()), as_of: None }));
    check_status(&err.await.unwrap_err(), Code::InvalidArgument, "invalid_field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_show_balances_rounds_and_dossiers() {
    let mut f = fixture().await;
    fund_with_applications(&mut f).await;
    let s = &f.service;
    s.award_grant(f.officer(award("r-award", "app-1", "8000.00"))).await.unwrap();
    s.make_payment(f.officer(pb::MakePaymentRequest {
        meta: meta("r-pay"),
        application_id: "app-1".into(),
        amount: eur("4000.00"),
        value_date: "2023-03-15".into(),
        bank_reference: "PAY-1".into(),
    }))
    .await
    .unwrap();
    s.reject_application(f.officer(pb::RejectApplicationRequest {
        meta: meta("r-reject"),
        application_id: "app-2".into(),
        reason: "buiten de doelstelling".into(),
        decided_on: "2023-03-02".into(),
    }))
    .await
    .unwrap();

    let balances = s
        .get_partner_balances(
            f.auditor(pb::GetPartnerBalancesRequest { partner_id: Some("porticus".into()), as_of: None }),
        )
        .await
        .unwrap()
        .into_inner();
    let [porticus] = balances.partners.as_slice() else { panic!("{balances:?}") };
    let total = porticus.total.as_ref().unwrap();
    let figures = [
        value(&total.received),
        value(&total.awarded),
        value(&total.paid),
        value(&total.open_commitments),
        value(&total.available),
        value(&total.cash_held),
    ];
    assert_eq!(figures, ["30000.00", "6000.00", "3000.00", "3000.00", "24000.00", "27000.00"]);
    assert_eq!(porticus.pots.len(), 1);
    assert_eq!(porticus.pots[0].earmark_round_id, None);

    let summary = s.get_fund_summary(f.auditor(pb::GetFundSummaryRequest { as_of: None })).await.unwrap().into_inner();
    assert_eq!((summary.name.as_str(), summary.currency.as_str(), summary.minor_units), ("Loket D", "EUR", 2));
    assert_eq!((summary.partners, summary.applications, summary.applications_pending, summary.grants), (2, 3, 1, 1));
    assert_eq!(value(&summary.totals.as_ref().unwrap().paid), "4000.00");
    assert_eq!(summary.head_seq, f.ledger.head_seq());
    assert_eq!(summary.head_hash, hex::encode(f.ledger.projections().head_hash));

    let rounds =
        s.get_round_figures(f.auditor(pb::GetRoundFiguresRequest { round_id: None, as_of: None })).await.unwrap();
    let [round] = rounds.get_ref().rounds.as_slice() else { panic!("{rounds:?}") };
    let counts = (round.applications_received, round.applications_decided, round.applications_awarded);
    assert_eq!(counts, (3, 2, 1));
    assert_eq!((round.applications_rejected, round.applications_pending), (1, 1));
    assert_eq!((value(&round.amount_requested), value(&round.amount_awarded)), ("30000.00", "8000.00"));
    assert_eq!(value(&round.budget_left), "992000.00");

    let dossier = s
        .get_application(f.auditor(pb::GetApplicationRequest { application_id: "app-1".into() }))
        .await
        .unwrap()
        .into_inner();
    let app = dossier.application.unwrap();
    assert_eq!((app.status, app.applicant.unwrap().country.as_str()), (pb::ApplicationStatus::Awarded as i32, "CW"));
    let grant = dossier.grant.unwrap();
    assert_eq!((value(&grant.paid), value(&grant.open), grant.tranches), ("4000.00", "4000.00", 1));
    let types: Vec<_> = dossier.history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["ApplicationSubmitted", "GrantAwarded", "PaymentMade"]);

    let grant = s.get_grant(f.auditor(pb::GetGrantRequest { application_id: "app-1".into() })).await.unwrap();
    assert_eq!(grant.get_ref().history.len(), 3);
    assert_eq!(grant.get_ref().grant.as_ref().unwrap().status, pb::GrantStatus::Active as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_are_listed_in_pages() {
    let mut f = fixture().await;
    fund_with_applications(&mut f).await;
    let s = &f.service;
    for n in 4..=7 {
        s.submit_application(f.officer(submit(&format!("r-submit-{n}"), &format!("app-{n}")))).await.unwrap();
    }
    s.award_grant(f.officer(award("r-award", "app-5", "100.00"))).await.unwrap();

    let list = |page_token: String, status: Option<pb::ApplicationStatus>| {
        s.list_applications(f.officer(pb::ListApplicationsRequest {
            round_id: Some("2023-1".into()),
            status: status.map(|s| s as i32),
            page_size: 3,
            page_token,
        }))
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(token, None).await.unwrap().into_inner();
        assert!(page.applications.len() <= 3);
        seen.extend(page.applications.into_iter().map(|a| a.application_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["app-1", "app-2", "app-3", "app-4", "app-5", "app-6", "app-7"]);

    let awarded = list(String::new(), Some(pb::ApplicationStatus::Awarded)).await.unwrap().into_inner();
    assert_eq!(awarded.next_page_token, "");
    let [app] = awarded.applications.as_slice() else { panic!("{awarded:?}") };
    assert_eq!((app.application_id.as_str(), value(&app.grant_amount)), ("app-5", "100.00"));
    assert_eq!(app.grant_status, pb::GrantStatus::Active as i32);

    let err = s.list_applications(
        f.officer(pb::ListApplicationsRequest { round_id: Some("2099".into()), ..Default::default() }),
    );
    check_status(&err.await.unwrap_err(), Code::NotFound, "unknown_round");
}

async fn next_seq(stream: &mut (impl tokio_stream::Stream<Item = Result<pb::RecordedEvent, Status>> + Unpin)) -> u64 {
    stream.next().await.expect("stream open").expect("an event").seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_events_ends_at_the_head_or_the_limit() {
    let mut f = fixture().await;
    fund_with_applications(&mut f).await;
    let s = &f.service;
    let head = f.ledger.head_seq();
    assert_eq!(head, f.access_events + 13);

    let all = s.read_events(f.auditor(pb::ReadEventsRequest { from_seq: 0, limit: None, filter: None })).await.unwrap();
    let all: Vec<u64> = all.into_inner().map(|e| e.unwrap().seq).collect().await;
    assert_eq!(all, (1..=head).collect::<Vec<_>>());

    let some =
        s.read_events(f.auditor(pb::ReadEventsRequest { from_seq: 4, limit: Some(3), filter: None })).await.unwrap();
    let some: Vec<u64> = some.into_inner().map(|e| e.unwrap().seq).collect().await;
    assert_eq!(some, [4, 5, 6]);

    for (from_seq, limit) in [(head + 1, None), (1, Some(0))] {
        let none = s.read_events(f.auditor(pb::ReadEventsRequest { from_seq, limit, filter: None })).await.unwrap();
        assert_eq!(none.into_inner().collect::<Vec<_>>().await.len(), 0);
    }
}

/// Commands keep coming while a subscriber catches up: it sees every event
/// exactly once, in order, across the hand-over from the log to following
/// the head; and it ends with UNAVAILABLE when the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_catches_up_then_follows_without_gaps_or_repeats() {
    let mut f = fixture().await;
    fund_with_applications(&mut f).await;
    let s = f.service.clone();
    let before = f.ledger.head_seq();

    let mut stream =
        s.subscribe(f.auditor(pb::SubscribeRequest { from_seq: 2, filter: None })).await.unwrap().into_inner();
    let writer = {
        let s = s.clone();
        let token = f.token(OFFICER).to_owned();
        tokio::spawn(async move {
            for n in 100..160 {
                s.submit_application(with_token(&token, submit(&format!("r-submit-{n}"), &format!("app-{n}"))))
                    .await
                    .unwrap();
            }
        })
    };
    let expected_last = before + 60;
    for seq in 2..=expected_last {
        assert_eq!(next_seq(&mut stream).await, seq);
    }
    writer.await.unwrap();
    assert_eq!(f.ledger.head_seq(), expected_last);

    // Following live: one more command, one more event.
    s.withdraw_application(f.officer(pb::WithdrawApplicationRequest {
        meta: meta("r-withdraw"),
        application_id: "app-100".into(),
        reason: "verhuisd".into(),
        withdrawn_on: "2023-02-10".into(),
    }))
    .await
    .unwrap();
    assert_eq!(next_seq(&mut stream).await, expected_last + 1);

    f.stop.send_replace(true);
    let end = stream.next().await.expect("a final status").unwrap_err();
    check_status(&end, Code::Unavailable, "shutting_down");
    assert!(stream.next().await.is_none());
}

/// The whole server over TCP: a command, health, a subscription that the
/// graceful shutdown ends, and `serve` returning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_over_tcp_and_shuts_down_gracefully() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let admin = auth::init_admin(&ledger, PrincipalId::new(ADMIN).unwrap()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::server::serve(ledger.clone(), listener, async {
        let _ = shutdown_rx.await;
    }));

    let channel = tonic::transport::Endpoint::from_shared(address).unwrap().connect().await.unwrap();
    let mut client = auth::client(channel.clone(), &admin).unwrap();
    // Health needs no token.
    let mut health = HealthClient::new(channel);

    let status =
        health.check(HealthCheckRequest { service: "fundledger.v1.Ledger".into() }).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let opened = client.open_fund(open_fund("r-open")).await.unwrap().into_inner();
    assert_eq!(opened.events[0].event_type, "FundOpened");
    let err = client.open_fund(open_fund("r-open-again")).await.unwrap_err();
    check_status(&err, Code::FailedPrecondition, "fund_already_opened");

    // Following the log from the fund on: the admin's own access came first.
    let fund_seq = opened.events[0].seq;
    let mut events =
        client.subscribe(pb::SubscribeRequest { from_seq: fund_seq, filter: None }).await.unwrap().into_inner();
    assert_eq!(events.message().await.unwrap().unwrap().seq, fund_seq);

    shutdown_tx.send(()).unwrap();
    let end = events.message().await.unwrap_err();
    check_status(&end, Code::Unavailable, "shutting_down");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("serve returns once the calls are answered")
        .unwrap()
        .unwrap();
    ledger.shutdown().await;
}
