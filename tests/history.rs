//! Reading the history through a real gRPC server on 127.0.0.1:0: figures
//! as of a sequence number, a recording time and a business date, and the
//! event streams filtered by stream, event type and recording time.

use fundledger::api::convert;
use fundledger::api::pb;
use fundledger::ledger::LedgerConfig;
use fundledger::projections::Projections;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use support::{Cast, Client, TestServer};
use tokio_stream::StreamExt;
use tonic::{Code, Status};

mod support;

// ----- a server -----

/// A server over a new ledger, with the admin, two officers and an auditor.
async fn start(dir: &Path) -> (TestServer, Cast) {
    let mut config = LedgerConfig::new(dir);
    // Checkpoints every 40 events, so that points in time fall both
    // before and after the stored one.
    config.checkpoint_events_interval = 40;
    let server = TestServer::start_with(config).await;
    let cast = server.cast().await;
    (server, cast)
}

fn meta() -> Option<pb::CommandMeta> {
    support::meta("req")
}

fn eur(value: &str) -> Option<pb::Money> {
    Some(pb::Money { value: value.into(), currency: "EUR".into() })
}

/// Cents as a decimal text: 123456 → "1234.56".
fn euros(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn value(money: &Option<pb::Money>) -> &str {
    &money.as_ref().expect("an amount").value
}

fn check_status(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().starts_with(&format!("{reason}: ")), "{status:?}");
}

fn field_of(status: &Status) -> &str {
    status.metadata().get("fundledger-field").map(|v| v.to_str().unwrap()).unwrap_or("")
}

// ----- the three queries, live or as of a point -----

#[derive(Clone, Debug, PartialEq)]
struct Figures {
    balances: pb::GetPartnerBalancesResponse,
    summary: pb::GetFundSummaryResponse,
    rounds: pb::GetRoundFiguresResponse,
}

async fn figures(c: &mut Client, as_of: Option<pb::as_of::Point>) -> Result<Figures, Status> {
    let as_of = || as_of.clone().map(|point| pb::AsOf { point: Some(point) });
    Ok(Figures {
        balances: c
            .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: as_of() })
            .await?
            .into_inner(),
        summary: c.get_fund_summary(pb::GetFundSummaryRequest { as_of: as_of() }).await?.into_inner(),
        rounds: c.get_round_figures(pb::GetRoundFiguresRequest { round_id: None, as_of: as_of() }).await?.into_inner(),
    })
}

fn seq(n: u64) -> Option<pb::as_of::Point> {
    Some(pb::as_of::Point::Seq(n))
}

fn at(t: &prost_types::Timestamp) -> Option<pb::as_of::Point> {
    Some(pb::as_of::Point::RecordedAt(*t))
}

fn dated(date: &str) -> Option<pb::as_of::Point> {
    Some(pb::as_of::Point::BusinessDate(date.into()))
}

async fn read_all(c: &mut Client) -> Vec<pb::RecordedEvent> {
    read(c, 1, None, None).await.unwrap()
}

async fn read(
    c: &mut Client,
    from_seq: u64,
    limit: Option<u64>,
    filter: Option<pb::EventFilter>,
) -> Result<Vec<pb::RecordedEvent>, Status> {
    let mut stream = c.read_events(pb::ReadEventsRequest { from_seq, limit, filter }).await?.into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    Ok(events)
}

// ----- a generated ledger -----

/// SplitMix64: a fixed seed gives the same ledger every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A business date in 2024, in any order.
    fn date(&mut self) -> String {
        format!("2024-{:02}-{:02}", 1 + self.below(12), 1 + self.below(28))
    }
}

const PARTNERS: [&str; 3] = ["bzk", "porticus", "vfonds"];
const ROUNDS: [&str; 2] = ["r1", "r2"];

/// Records a fund with random money, applications and decisions, one
/// command at a time (plus one burst of concurrent ones, so that some
/// events share a recording time), until the log holds `events_min` events.
/// Each command is sent by the role that may: the admin, a partner's
/// treasurer, an officer; the auditor reads the figures. Returns the live
/// figures seen after each acknowledged command, by the head they were
/// read at.
async fn generate(cast: &mut Cast, events_min: u64) -> BTreeMap<u64, Figures> {
    let mut rng = Rng(0x5EED_A0D1_7000);
    let mut seen = BTreeMap::new();
    let c = &mut cast.auditor();
    let officer = &mut cast.officer();
    let opened = cast
        .admin()
        .open_fund(pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 })
        .await
        .unwrap();
    seen.insert(opened.into_inner().events[0].seq, figures(c, None).await.unwrap());
    for p in PARTNERS {
        cast.admit_partner(p).await;
    }
    for r in ROUNDS {
        cast.admin()
            .open_round(pb::OpenRoundRequest {
                meta: meta(),
                round_id: r.into(),
                name: format!("Round {r}"),
                budget_ceiling: eur("120000.00"),
                grant_max: eur("15000.00"),
                opens_on: "2024-01-01".into(),
                closes_on: "2024-12-31".into(),
            })
            .await
            .unwrap();
    }
    let mut applications = 0u64;
    let mut burst_done = false;
    loop {
        let head = figures(c, None).await.unwrap().summary.head_seq;
        if head >= events_min {
            break;
        }
        if head >= events_min / 2 && !burst_done {
            burst_done = true;
            let calls: Vec<_> = (0..8)
                .map(|i| {
                    let mut c = cast.officer();
                    tokio::spawn(async move {
                        c.submit_application(submit(&format!("burst-{i}"), "r2", "2500.00", "2024-06-01")).await
                    })
                })
                .collect();
            for call in calls {
                call.await.unwrap().unwrap();
            }
            let after = figures(c, None).await.unwrap();
            seen.insert(after.summary.head_seq, after);
            continue;
        }
        let partner = PARTNERS[rng.below(3) as usize].to_string();
        let app = format!("app-{}", rng.below(applications.max(1)));
        let cents = 100 * (1 + rng.below(120)) * 100;
        let outcome = match rng.below(12) {
            0 | 1 => {
                cast.partner(&partner)
                    .pledge_contribution(pb::PledgeContributionRequest {
                        meta: meta(),
                        partner_id: partner,
                        amount: eur(&euros(cents * 3)),
                        earmark_round_id: None,
                        pledged_on: rng.date(),
                    })
                    .await
            }
            2 | 3 => {
                officer
                    .record_receipt(pb::RecordReceiptRequest {
                        meta: meta(),
                        partner_id: partner,
                        amount: eur(&euros(cents * 2)),
                        earmark_round_id: None,
                        value_date: rng.date(),
                        bank_reference: "NL-REF".into(),
                    })
                    .await
            }
            4 | 5 => {
                applications += 1;
                let round = ROUNDS[rng.below(2) as usize];
                officer
                    .submit_application(submit(&format!("app-{}", applications - 1), round, "15000.00", &rng.date()))
                    .await
            }
            6 | 7 => {
                officer
                    .award_grant(pb::AwardGrantRequest {
                        meta: meta(),
                        application_id: app,
                        amount: eur(&euros(cents.min(1_500_000))),
                        reason: "fits".into(),
                        decided_on: rng.date(),
                    })
                    .await
            }
            8 | 9 => {
                officer
                    .make_payment(pb::MakePaymentRequest {
                        meta: meta(),
                        application_id: app,
                        amount: eur(&euros(cents / 2)),
                        value_date: rng.date(),
                        bank_reference: "PAY".into(),
                    })
                    .await
            }
            10 => {
                officer
                    .record_refund(pb::RecordRefundRequest {
                        meta: meta(),
                        application_id: app,
                        amount: eur(&euros(cents / 8)),
                        value_date: rng.date(),
                        bank_reference: "BACK".into(),
                    })
                    .await
            }
            _ => {
                officer
                    .settle_grant(pb::SettleGrantRequest {
                        meta: meta(),
                        application_id: app,
                        final_amount: eur(&euros(cents / 2)),
                        reason: "final report".into(),
                        decided_on: rng.date(),
                    })
                    .await
            }
        };
        // Refusals record nothing; only acknowledged commands move the head.
        if outcome.is_ok() {
            let after = figures(c, None).await.unwrap();
            seen.insert(after.summary.head_seq, after);
        }
    }
    seen
}

fn submit(id: &str, round: &str, amount: &str, on: &str) -> pb::SubmitApplicationRequest {
    support::punda_application(meta(), id, round, amount, on)
}

// ----- point in time -----

/// As of every sequence number of a generated ledger, the three queries
/// answer exactly what the live server answered when the head was there,
/// and the summary is exactly that of a replay cut at that sequence (from
/// the first event, whatever checkpoint is stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_as_of_every_sequence_equal_a_replay_cut_there() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = start(dir.path()).await;
    let seen = generate(&mut cast, 160).await;
    let c = &mut cast.auditor();
    let live = figures(c, None).await.unwrap();
    let head = live.summary.head_seq;
    let reader = server.ledger.log_reader();
    assert!(reader.checkpoint().unwrap().is_some(), "a checkpoint was stored below the head");
    let all = read_all(c).await;
    let seq_of = |event_type: &str, stream: &str| {
        let event = all.iter().find(|e| e.event_type == event_type && e.stream == stream);
        event.unwrap_or_else(|| panic!("no {event_type} on {stream} in the log")).seq
    };
    // Access comes first: the fund is opened after `init` and the cast.
    let opened = seq_of("FundOpened", "fund");
    let types: std::collections::BTreeSet<_> = all.iter().map(|e| e.event_type.clone()).collect();
    for kind in ["GrantAwarded", "PaymentMade", "RefundReceived", "GrantSettled", "ContributionReceived"] {
        assert!(types.contains(kind), "the generated ledger has no {kind}: {types:?}");
    }
    assert!(seen.len() as u64 > head / 2, "live figures seen at {} of {head} points", seen.len());

    for n in 0..opened {
        check_status(&figures(c, seq(n)).await.unwrap_err(), Code::NotFound, "fund_not_opened");
    }
    for n in opened..=head {
        let as_of = figures(c, seq(n)).await.unwrap();
        if let Some(then) = seen.get(&n) {
            assert_eq!(as_of, *then, "as of event {n}, against the live answer then");
        }
        let replayed = Projections::replay(&reader, n).unwrap();
        assert_eq!(Some(as_of.summary.clone()), convert::fund_summary(&replayed), "as of event {n}, against a replay");
        let position = as_of.balances.position.as_ref().unwrap();
        assert_eq!((position.seq, position.hash.as_str()), (n, hex::encode(replayed.head_hash).as_str()));
        assert_eq!(as_of.rounds.position, as_of.balances.position);
    }
    // At the head: the live figures. Past it: refused, with the figures.
    assert_eq!(figures(c, seq(head)).await.unwrap(), live);
    let err = figures(c, seq(head + 1)).await.unwrap_err();
    check_status(&err, Code::InvalidArgument, "as_of_beyond_head");
    assert!(err.message().contains(&format!("as of event {}", head + 1)), "{err:?}");
    assert!(err.message().contains(&format!("only {head} events")), "{err:?}");
    // A partner is unknown as of the event before its admission.
    let admitted = seq_of("PartnerAdmitted", &format!("partner/{}", PARTNERS[0]));
    assert!(admitted > opened);
    let err = c
        .get_partner_balances(pb::GetPartnerBalancesRequest {
            partner_id: Some(PARTNERS[0].into()),
            as_of: Some(pb::AsOf { point: seq(admitted - 1) }),
        })
        .await
        .unwrap_err();
    check_status(&err, Code::NotFound, "unknown_partner");
    server.stop().await;
}

/// As of a recording time: the figures after the last event recorded at or
/// before it, for the time of every event, a microsecond before it, and a
/// fraction of a microsecond after it; the live figures after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_as_of_a_recording_time_are_those_after_the_last_event_recorded_by_then() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = start(dir.path()).await;
    generate(&mut cast, 60).await;
    let c = &mut cast.auditor();
    let events = read_all(c).await;
    let opened = events.iter().find(|e| e.event_type == "FundOpened").unwrap().seq;
    let micros = |e: &pb::RecordedEvent| {
        let t = e.recorded_at.unwrap();
        t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000
    };
    let timestamp = |micros: i64, nanos: i32| prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32 + nanos,
    };
    let shared = events.windows(2).filter(|w| micros(&w[0]) == micros(&w[1])).count();
    assert!(shared > 0, "the burst recorded several events at one time");
    // The expected answer, from the events themselves.
    let last_by = |t: i64| events.iter().filter(|e| micros(e) <= t).map(|e| e.seq).max().unwrap_or(0);

    for event in &events {
        let t = micros(event);
        for (probe, nanos) in [(t, 0), (t - 1, 0), (t, 999)] {
            let expected = last_by(probe);
            let asked = c
                .get_fund_summary(pb::GetFundSummaryRequest {
                    as_of: Some(pb::AsOf { point: at(&timestamp(probe, nanos)) }),
                })
                .await;
            match expected {
                // Before the fund: nothing yet, or only access events.
                n if n < opened => check_status(&asked.unwrap_err(), Code::NotFound, "fund_not_opened"),
                _ => {
                    let summary = asked.unwrap().into_inner();
                    assert_eq!(summary.head_seq, expected, "as of {probe} µs + {nanos} ns");
                    assert_eq!(summary.position.unwrap().seq, expected);
                }
            }
        }
    }
    let later = timestamp(micros(events.last().unwrap()) + 3_600_000_000, 0);
    let mut as_of_later = figures(c, at(&later)).await.unwrap();
    let live = figures(c, None).await.unwrap();
    assert_eq!(as_of_later, live, "a time after the last event gives the live figures");
    as_of_later.summary.head_seq = 0;
    assert_ne!(as_of_later, live, "the comparison can fail");
    server.stop().await;
}

/// By business date, through the API: amounts count by their own dates,
/// a payment value-dated before its award shows as negative open
/// commitments in between, and after the last date the figures are the
/// live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_as_of_a_business_date_count_each_event_by_its_own_date() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = start(dir.path()).await;
    let mut c = cast.auditor();
    cast.admin()
        .open_fund(pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 })
        .await
        .unwrap();
    cast.admit_partner("bzk").await;
    cast.partner("bzk")
        .pledge_contribution(pb::PledgeContributionRequest {
            meta: meta(),
            partner_id: "bzk".into(),
            amount: eur("50000.00"),
            earmark_round_id: None,
            pledged_on: "2024-01-10".into(),
        })
        .await
        .unwrap();
    let officer = &mut cast.officer();
    officer
        .record_receipt(pb::RecordReceiptRequest {
            meta: meta(),
            partner_id: "bzk".into(),
            amount: eur("50000.00"),
            earmark_round_id: None,
            value_date: "2024-01-20".into(),
            bank_reference: "IN-1".into(),
        })
        .await
        .unwrap();
    cast.admin()
        .open_round(pb::OpenRoundRequest {
            meta: meta(),
            round_id: "r1".into(),
            name: "Round 1".into(),
            budget_ceiling: eur("100000.00"),
            grant_max: eur("15000.00"),
            opens_on: "2024-02-01".into(),
            closes_on: "2024-03-31".into(),
        })
        .await
        .unwrap();
    officer.submit_application(submit("app-1", "r1", "12000.00", "2024-02-15")).await.unwrap();
    officer
        .award_grant(pb::AwardGrantRequest {
            meta: meta(),
            application_id: "app-1".into(),
            amount: eur("10000.00"),
            reason: "fits".into(),
            decided_on: "2024-04-10".into(),
        })
        .await
        .unwrap();
    // Recorded after the award, value-dated before it.
    officer
        .make_payment(pb::MakePaymentRequest {
            meta: meta(),
            application_id: "app-1".into(),
            amount: eur("3000.00"),
            value_date: "2024-04-01".into(),
            bank_reference: "OUT-1".into(),
        })
        .await
        .unwrap();

    let total = |f: &Figures| f.balances.partners[0].total.clone().unwrap();
    let early = figures(&mut c, dated("2024-01-15")).await.unwrap();
    let b = total(&early);
    assert_eq!(
        [value(&b.pledged), value(&b.received), value(&b.outstanding_pledges)],
        ["50000.00", "0.00", "50000.00"]
    );
    assert_eq!(early.rounds.rounds[0].applications_received, 0);

    let between = figures(&mut c, dated("2024-04-05")).await.unwrap();
    let b = total(&between);
    assert_eq!(
        [value(&b.awarded), value(&b.paid), value(&b.open_commitments), value(&b.available), value(&b.cash_held)],
        ["0.00", "3000.00", "-3000.00", "50000.00", "47000.00"]
    );
    let r1 = &between.rounds.rounds[0];
    assert_eq!((r1.applications_received, r1.applications_pending, r1.applications_awarded), (1, 1, 0));
    assert_eq!(value(&r1.budget_left), "100000.00");
    let position = between.summary.position.clone().unwrap();
    let head = server.ledger.head_seq();
    assert_eq!((position.seq, position.business_date.as_deref()), (head, Some("2024-04-05")));
    assert_eq!(between.balances.position, Some(position));
    assert_eq!((between.summary.grants, between.summary.applications_pending), (0, 1));

    let after = figures(&mut c, dated("2024-12-31")).await.unwrap();
    let live = figures(&mut c, None).await.unwrap();
    assert_eq!(after.balances.partners, live.balances.partners);
    assert_eq!(after.rounds.rounds, live.rounds.rounds);
    let mut summary = after.summary.clone();
    summary.position = live.summary.position.clone();
    assert_eq!(summary, live.summary);

    // Malformed points name their field; none of them is a figure.
    let ask = |as_of: pb::AsOf| {
        let mut c = c.clone();
        async move { c.get_fund_summary(pb::GetFundSummaryRequest { as_of: Some(as_of) }).await.unwrap_err() }
    };
    for (as_of, field) in [
        (pb::AsOf { point: None }, "as_of"),
        (pb::AsOf { point: dated("2024-02-30") }, "as_of.business_date"),
        (pb::AsOf { point: at(&prost_types::Timestamp { seconds: 1, nanos: -1 }) }, "as_of.recorded_at"),
        (pb::AsOf { point: at(&prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }) }, "as_of.recorded_at"),
    ] {
        let err = ask(as_of).await;
        check_status(&err, Code::InvalidArgument, "invalid_field");
        assert_eq!(field_of(&err), field, "{err:?}");
    }
    server.stop().await;
}

// ----- filtered streams -----

/// The filter as the test understands it, applied to an event the server
/// sent: the oracle the server's answers are checked against.
#[derive(Clone, Default)]
struct Want {
    stream: Option<String>,
    prefix: Option<String>,
    types: Vec<&'static str>,
    since: Option<prost_types::Timestamp>,
    until: Option<prost_types::Timestamp>,
}

impl Want {
    fn filter(&self) -> Option<pb::EventFilter> {
        use pb::event_filter::Streams;
        let streams = match (&self.stream, &self.prefix) {
            (Some(s), _) => Some(Streams::Stream(s.clone())),
            (_, Some(p)) => Some(Streams::StreamPrefix(p.clone())),
            _ => None,
        };
        Some(pb::EventFilter {
            streams,
            event_types: self.types.iter().map(|t| t.to_string()).collect(),
            recorded_since: self.since,
            recorded_until: self.until,
        })
    }

    fn matches(&self, e: &pb::RecordedEvent) -> bool {
        let t = e.recorded_at.unwrap();
        let key = |t: &prost_types::Timestamp| (t.seconds, t.nanos);
        self.stream.as_ref().is_none_or(|s| e.stream == *s)
            && self.prefix.as_ref().is_none_or(|p| e.stream.starts_with(p.as_str()))
            && (self.types.is_empty() || self.types.contains(&e.event_type.as_str()))
            && self.since.is_none_or(|s| key(&t) >= key(&s))
            && self.until.is_none_or(|u| key(&t) < key(&u))
    }
}

/// `ReadEvents` with every kind of filter sends exactly the matching events
/// in order, counts its limit in sent events, and resumes from any seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_events_sends_exactly_the_matching_events_and_resumes_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = start(dir.path()).await;
    generate(&mut cast, 80).await;
    let c = &mut cast.auditor();
    let all = read_all(c).await;
    let head = all.len() as u64;
    let time_of = |n: usize| all[n].recorded_at.unwrap();
    let second_round = all.iter().position(|e| e.stream == "round/r2").unwrap();
    let wants = [
        Want::default(),
        Want { stream: Some("partner/porticus".into()), ..Want::default() },
        Want { stream: Some("fund".into()), ..Want::default() },
        Want { stream: Some("application/burst-3".into()), ..Want::default() },
        Want { prefix: Some("partner/".into()), ..Want::default() },
        Want {
            prefix: Some("application/app-1".into()),
            types: vec!["GrantAwarded", "PaymentMade"],
            ..Want::default()
        },
        Want { types: vec!["ApplicationSubmitted"], ..Want::default() },
        Want { since: Some(time_of(20)), until: Some(time_of(50)), ..Want::default() },
        Want { stream: Some("partner/bzk".into()), since: Some(time_of(10)), ..Want::default() },
        Want {
            prefix: Some("round/".into()),
            types: vec!["RoundOpened"],
            until: Some(time_of(second_round)),
            ..Want::default()
        },
    ];
    for (i, want) in wants.iter().enumerate() {
        let expected: Vec<_> = all.iter().filter(|e| want.matches(e)).cloned().collect();
        assert!(!expected.is_empty(), "filter {i} matches something");
        assert_eq!(read(c, 1, None, want.filter()).await.unwrap(), expected, "filter {i}");
        // Three at a time, each read resuming one past the last seq seen.
        let mut resumed = Vec::new();
        let mut from = 1;
        loop {
            let page = read(c, from, Some(3), want.filter()).await.unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            resumed.extend(page);
        }
        assert_eq!(resumed, expected, "filter {i}, resumed in pages of three");
        // From the middle of the log.
        let from = head / 2;
        let tail: Vec<_> = expected.iter().filter(|e| e.seq >= from).cloned().collect();
        assert_eq!(read(c, from, None, want.filter()).await.unwrap(), tail, "filter {i} from {from}");
    }

    // Filters that can never be right are refused, naming the field.
    use pb::event_filter::Streams;
    let t = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    for (filter, field) in [
        (pb::EventFilter { event_types: vec!["GrantAward".into()], ..Default::default() }, "filter.event_types"),
        (pb::EventFilter { streams: Some(Streams::Stream("partner/".into())), ..Default::default() }, "filter.stream"),
        (
            pb::EventFilter { streams: Some(Streams::Stream("grant/app-1".into())), ..Default::default() },
            "filter.stream",
        ),
        (
            pb::EventFilter { streams: Some(Streams::StreamPrefix(String::new())), ..Default::default() },
            "filter.stream_prefix",
        ),
        (
            pb::EventFilter { recorded_since: t(20), recorded_until: t(10), ..Default::default() },
            "filter.recorded_until",
        ),
    ] {
        let err = read(c, 1, None, Some(filter.clone())).await.unwrap_err();
        check_status(&err, Code::InvalidArgument, "invalid_field");
        assert_eq!(field_of(&err), field, "{filter:?}");
        let err = c.subscribe(pb::SubscribeRequest { from_seq: 1, filter: Some(filter) }).await.unwrap_err();
        assert_eq!(field_of(&err), field);
    }
    server.stop().await;
}

/// Subscribers with filters, started before concurrent writers, receive
/// every matching event exactly once and in order, and nothing else: after
/// the writers, one more event that does not match and one that does are
/// recorded, and the next thing each subscriber receives is the one that
/// matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_subscribers_miss_nothing_that_matches_across_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = start(dir.path()).await;
    generate(&mut cast, 30).await;
    let c = cast.auditor();
    let start = read_all(&mut c.clone()).await.len() as u64 + 1;
    let wants = [
        Want { prefix: Some("application/w1-".into()), ..Want::default() },
        Want { stream: Some("application/w2-7".into()), ..Want::default() },
        Want { stream: Some("partner/vfonds".into()), ..Want::default() },
        Want { types: vec!["ContributionPledged"], ..Want::default() },
        Want { prefix: Some("application/".into()), types: vec!["ApplicationWithdrawn"], ..Want::default() },
    ];
    let mut subscriptions = Vec::new();
    for want in &wants {
        let request = pb::SubscribeRequest { from_seq: start, filter: want.filter() };
        subscriptions.push(c.clone().subscribe(request).await.unwrap().into_inner());
    }

    let writers: Vec<_> = (0..3)
        .map(|w| {
            let mut c = cast.officer();
            let cast = cast.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let id = format!("w{w}-{i}");
                    c.submit_application(submit(&id, "r1", "1000.00", "2024-05-01")).await.unwrap();
                    if i % 3 == 0 {
                        c.withdraw_application(pb::WithdrawApplicationRequest {
                            meta: meta(),
                            application_id: id,
                            reason: "moved away".into(),
                            withdrawn_on: "2024-05-02".into(),
                        })
                        .await
                        .unwrap();
                    }
                    if i % 4 == 0 {
                        let partner = PARTNERS[(w + i) % 3];
                        cast.partner(partner)
                            .pledge_contribution(pb::PledgeContributionRequest {
                                meta: meta(),
                                partner_id: partner.into(),
                                amount: eur("10.00"),
                                earmark_round_id: None,
                                pledged_on: "2024-05-01".into(),
                            })
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let all = read_all(&mut c.clone()).await;
    for (i, (want, subscription)) in wants.iter().zip(&mut subscriptions).enumerate() {
        let expected: Vec<_> = all.iter().filter(|e| e.seq >= start && want.matches(e)).cloned().collect();
        assert!(!expected.is_empty(), "subscriber {i} expects something");
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.push(next_event(subscription).await);
        }
        assert_eq!(got, expected, "subscriber {i}: every matching event once, in order");
    }

    // One event that matches no subscriber, then one that matches each.
    let mut c2 = cast.officer();
    cast.admin()
        .open_round(pb::OpenRoundRequest {
            meta: meta(),
            round_id: "r9".into(),
            name: "Round 9".into(),
            budget_ceiling: eur("1000.00"),
            grant_max: eur("1000.00"),
            opens_on: "2024-01-01".into(),
            closes_on: "2024-12-31".into(),
        })
        .await
        .unwrap();
    c2.submit_application(submit("w1-final", "r1", "1000.00", "2024-05-01")).await.unwrap();
    c2.submit_application(submit("w2-7b", "r1", "1000.00", "2024-05-01")).await.unwrap();
    c2.withdraw_application(pb::WithdrawApplicationRequest {
        meta: meta(),
        application_id: "w1-final".into(),
        reason: "moved away".into(),
        withdrawn_on: "2024-05-02".into(),
    })
    .await
    .unwrap();
    cast.partner("vfonds")
        .pledge_contribution(pb::PledgeContributionRequest {
            meta: meta(),
            partner_id: "vfonds".into(),
            amount: eur("10.00"),
            earmark_round_id: None,
            pledged_on: "2024-05-01".into(),
        })
        .await
        .unwrap();
    let e = next_event(&mut subscriptions[0]).await;
    assert_eq!((e.stream.as_str(), e.event_type.as_str()), ("application/w1-final", "ApplicationSubmitted"));
    let e = next_event(&mut subscriptions[2]).await;
    assert_eq!((e.stream.as_str(), e.event_type.as_str()), ("partner/vfonds", "ContributionPledged"));
    let e = next_event(&mut subscriptions[3]).await;
    assert_eq!((e.stream.as_str(), e.event_type.as_str()), ("partner/vfonds", "ContributionPledged"));
    let e = next_event(&mut subscriptions[4]).await;
    assert_eq!((e.stream.as_str(), e.event_type.as_str()), ("application/w1-final", "ApplicationWithdrawn"));
    // `application/w2-7` is a stream of its own: `application/w2-7b` is not in it.
    let quiet = tokio::time::timeout(Duration::from_millis(300), subscriptions[1].next()).await;
    assert!(quiet.is_err(), "the exact-stream subscriber received {quiet:?}");
    server.stop().await;
}

async fn next_event(stream: &mut tonic::Streaming<pb::RecordedEvent>) -> pb::RecordedEvent {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the subscription went quiet")
        .expect("the subscription is open")
        .expect("an event")
}

/// A subscription with a time range ends (OK) once the log has moved past
/// it, having sent exactly the events recorded within it; one that starts
/// in the middle of a stream sends only the rest of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_time_range_is_over_and_resumes_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut cast) = start(dir.path()).await;
    generate(&mut cast, 60).await;
    let mut c = cast.auditor();
    let all = read_all(&mut c).await;
    let until = all[30].recorded_at;
    // The partner with the longest history.
    let busiest = PARTNERS
        .into_iter()
        .map(|p| format!("partner/{p}"))
        .max_by_key(|stream| all.iter().filter(|e| e.stream == *stream).count())
        .unwrap();
    let want = Want { until, prefix: Some("partner/".into()), ..Want::default() };
    let expected: Vec<_> = all.iter().filter(|e| want.matches(e)).cloned().collect();
    let mut stream =
        c.subscribe(pb::SubscribeRequest { from_seq: 1, filter: want.filter() }).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.unwrap() {
        got.push(event.unwrap());
    }
    assert_eq!(got, expected, "the subscription ended after the range, with an OK end of stream");
    // Also when it follows one stream, whose own events may all lie before
    // the end of the range.
    let want = Want { until, stream: Some(busiest.clone()), ..Want::default() };
    let expected: Vec<_> = all.iter().filter(|e| want.matches(e)).cloned().collect();
    assert!(!expected.is_empty());
    let mut stream =
        c.subscribe(pb::SubscribeRequest { from_seq: 1, filter: want.filter() }).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.unwrap() {
        got.push(event.unwrap());
    }
    assert_eq!(got, expected, "the stream subscription ended after the range too");

    let history: Vec<_> = all.iter().filter(|e| e.stream == busiest).cloned().collect();
    assert!(history.len() >= 3, "{busiest} has a history: {history:?}");
    let from = history[1].seq + 1;
    let filter = Want { stream: Some(busiest.clone()), ..Want::default() }.filter();
    let mut stream = c.subscribe(pb::SubscribeRequest { from_seq: from, filter }).await.unwrap().into_inner();
    for expected in &history[2..] {
        assert_eq!(&next_event(&mut stream).await, expected);
    }
    drop(stream);
    server.stop().await;
}
