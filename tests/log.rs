//! The event log and the single writer: durability across reopen,
//! idempotency, optimistic concurrency, the hash chain, and the frozen
//! stored format.

use fundledger::domain::{
    Amount, Applicant, ApplicationId, Command, Currency, Date, Event, MoneyInput, PartnerId, PotKey, PrincipalId, Role,
    RoundId, Share,
};
use fundledger::ledger::{CommandError, CommandRequest, Ledger, LedgerConfig};
use fundledger::log::codec::{self, RecordBody, GENESIS_HASH};
use fundledger::log::StoreFormat;
use fundledger::projections::Projections;

fn eur(value: &str) -> MoneyInput {
    MoneyInput::parse(value, "EUR").unwrap()
}

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

mod support;

/// Each command acts as the role that may send it (see `support::actor_for`).
use support::request;

/// A fund with one partner who has paid in EUR 50,000 and an open round.
fn setup() -> Vec<CommandRequest> {
    let porticus = PartnerId::new("porticus").unwrap();
    vec![
        request("r1", Command::OpenFund { name: "Loket D".into(), currency: Currency::eur() }),
        request(
            "r2",
            Command::AdmitPartner {
                partner: porticus.clone(),
                name: "Porticus".into(),
                organisation_id: "NL-KVK-1".into(),
            },
        ),
        request(
            "r3",
            Command::PledgeContribution {
                partner: porticus.clone(),
                amount: eur("50000.00"),
                earmark: None,
                pledged_on: date("2024-01-10"),
            },
        ),
        request(
            "r4",
            Command::RecordReceipt {
                partner: porticus,
                amount: eur("50000.00"),
                earmark: None,
                value_date: date("2024-01-20"),
                bank_reference: "NL91ABNA0417164300 2024-01".into(),
            },
        ),
        request(
            "r5",
            Command::OpenRound {
                round: RoundId::new("r1").unwrap(),
                name: "Round 1".into(),
                budget_ceiling: eur("40000"),
                grant_max: eur("15000"),
                opens_on: date("2024-02-01"),
                closes_on: date("2024-03-31"),
            },
        ),
    ]
}

fn submit_application(id: &str, app: &str) -> CommandRequest {
    request(
        id,
        Command::SubmitApplication {
            application: ApplicationId::new(app).unwrap(),
            round: RoundId::new("r1").unwrap(),
            applicant: Applicant {
                name: "Buurtkracht Kanaleneiland".into(),
                organisation_id: Default::default(),
                place: "Utrecht".into(),
                country: "NL".into(),
            },
            title: "Neighbourhood dialogue evenings".into(),
            description: String::new(),
            amount_requested: eur("12000.00"),
            submitted_on: date("2024-02-15"),
        },
    )
}

/// Opens the ledger in `dir`, new or just closed by this test.
async fn open(dir: &std::path::Path) -> Ledger {
    open_in(StoreFormat::NEW, dir).await
}

/// [`open`], creating a ledger in stored format `format`: what depends on
/// the stored format is tested in both.
async fn open_in(format: StoreFormat, dir: &std::path::Path) -> Ledger {
    support::reopen(LedgerConfig { new_store_format: format, ..LedgerConfig::new(dir) })
}

#[tokio::test]
async fn reopen_keeps_every_acknowledged_event_and_identical_projections() {
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        reopen_keeps_every_acknowledged_event_and_identical_projections_in(format).await;
    }
}

async fn reopen_keeps_every_acknowledged_event_and_identical_projections_in(format: StoreFormat) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_in(format, dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    ledger.submit(submit_application("r6", "app-1")).await.unwrap();
    let live = ledger.projections().clone();
    let events_before = ledger.read_events(1, 100).unwrap();
    ledger.shutdown().await;
    drop(ledger);

    let ledger = open_in(format, dir.path()).await;
    assert_eq!(ledger.head_seq(), 6);
    assert_eq!(ledger.read_events(1, 100).unwrap(), events_before);
    assert_eq!(ledger.projections().encoded(), live.encoded(), "replayed projections must be byte-identical");
    let report = ledger.log_reader().verify().unwrap();
    assert_eq!(report.events, 6);
    assert_eq!(report.head_hash, live.head_hash);
}

#[tokio::test]
async fn a_retry_returns_the_original_outcome_and_records_nothing() {
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        a_retry_returns_the_original_outcome_and_records_nothing_in(format).await;
    }
}

async fn a_retry_returns_the_original_outcome_and_records_nothing_in(format: StoreFormat) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_in(format, dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    let first = ledger.submit(submit_application("submit-app-1", "app-1")).await.unwrap();
    assert!(!first.replayed);
    let retry = ledger.submit(submit_application("submit-app-1", "app-1")).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.events, first.events);
    assert_eq!(ledger.head_seq(), 6);

    // Also after a restart: idempotency is persistent.
    ledger.shutdown().await;
    drop(ledger);
    let ledger = open_in(format, dir.path()).await;
    let retry = ledger.submit(submit_application("submit-app-1", "app-1")).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.events, first.events);
    assert_eq!(ledger.head_seq(), 6);
}

#[tokio::test]
async fn reusing_a_request_id_for_another_request_is_refused() {
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        reusing_a_request_id_for_another_request_is_refused_in(format).await;
    }
}

async fn reusing_a_request_id_for_another_request_is_refused_in(format: StoreFormat) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_in(format, dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    ledger.submit(submit_application("same-id", "app-1")).await.unwrap();
    let err = ledger.submit(submit_application("same-id", "app-2")).await.unwrap_err();
    assert_eq!(err, CommandError::RequestIdConflict { request_id: "same-id".into() });
    assert_eq!(ledger.head_seq(), 6);
    assert!(!ledger.projections().state.applications.contains_key(&ApplicationId::new("app-2").unwrap()));
}

#[tokio::test]
async fn concurrent_duplicates_in_one_batch_record_once() {
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        concurrent_duplicates_in_one_batch_record_once_in(format).await;
    }
}

async fn concurrent_duplicates_in_one_batch_record_once_in(format: StoreFormat) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_in(format, dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.submit(submit_application("dup", "app-1")).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.events == outcomes[0].events));
    assert_eq!(ledger.head_seq(), 6);
}

#[tokio::test]
async fn a_wrong_expected_version_is_refused_and_a_right_one_accepted() {
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        a_wrong_expected_version_is_refused_and_a_right_one_accepted_in(format).await;
    }
}

async fn a_wrong_expected_version_is_refused_and_a_right_one_accepted_in(format: StoreFormat) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_in(format, dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    // partner/porticus has three events: admitted, pledged, received.
    let mut pledge = request(
        "pledge-2",
        Command::PledgeContribution {
            partner: PartnerId::new("porticus").unwrap(),
            amount: eur("1000"),
            earmark: None,
            pledged_on: date("2024-02-01"),
        },
    );
    pledge.expected_version = Some(2);
    let err = ledger.submit(pledge.clone()).await.unwrap_err();
    assert_eq!(err, CommandError::WrongExpectedVersion { stream: "partner/porticus".into(), expected: 2, actual: 3 });
    assert_eq!(ledger.head_seq(), 5);

    pledge.expected_version = Some(3);
    let outcome = ledger.submit(pledge.clone()).await.unwrap();
    assert_eq!(outcome.events[0].envelope.stream_version, 4);

    // A new stream is at version 0.
    let mut submit = submit_application("s-1", "app-9");
    submit.expected_version = Some(0);
    assert_eq!(ledger.submit(submit).await.unwrap().events[0].envelope.stream_version, 1);

    // In one batch, a command sees the versions after the commands before
    // it, whether or not they named a version.
    let pledge_in_batch = |id: &str, expected| {
        let mut pledge = pledge.clone();
        pledge.request_id = id.into();
        pledge.expected_version = expected;
        pledge
    };
    let answers = ledger
        .submit_many(vec![
            pledge_in_batch("pledge-3", None),
            pledge_in_batch("pledge-4", Some(5)),
            pledge_in_batch("pledge-5", Some(5)),
            pledge_in_batch("pledge-6", Some(6)),
        ])
        .await
        .unwrap();
    let versions: Vec<_> =
        answers.into_iter().map(|answer| answer.map(|outcome| outcome.events[0].envelope.stream_version)).collect();
    let stale = CommandError::WrongExpectedVersion { stream: "partner/porticus".into(), expected: 5, actual: 6 };
    assert_eq!(versions, [Ok(5), Ok(6), Err(stale), Ok(7)], "{format:?}");
}

#[tokio::test]
async fn a_rejected_command_records_nothing_and_does_not_disturb_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    let good = submit_application("good", "app-1");
    let mut bad = submit_application("bad", "app-2");
    if let Command::SubmitApplication { amount_requested, .. } = &mut bad.command {
        *amount_requested = eur("15000.01");
    }
    let (a, b) = tokio::join!(ledger.submit(good), ledger.submit(bad));
    assert!(a.is_ok());
    let Err(CommandError::Rejected(rejection)) = b else { panic!("expected a rejection, got {b:?}") };
    assert_eq!(rejection.code(), "request_above_grant_max");
    assert_eq!(ledger.head_seq(), 6);
    // The rejected request id is not burnt: it may be used once corrected.
    assert!(ledger.log_reader().request("bad").unwrap().is_none());
}

#[tokio::test]
async fn the_hash_chain_links_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    let events = ledger.read_events(1, 100).unwrap();
    assert_eq!(events.len(), 5);
    let mut prev = GENESIS_HASH;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.envelope.seq, i as u64 + 1, "gapless from 1");
        assert_eq!(e.envelope.prev_hash, prev);
        let body = RecordBody {
            seq: e.envelope.seq,
            stream: e.envelope.stream.clone(),
            stream_version: e.envelope.stream_version,
            event_type: e.envelope.event_type.clone(),
            schema_version: e.envelope.schema_version,
            recorded_at_micros: e.envelope.recorded_at_micros,
            actor: e.envelope.actor.clone(),
            request_id: e.envelope.request_id.clone(),
            payload: codec::encode(&e.event),
        };
        // A new ledger is of stored format v3: the hash covers the
        // command's fingerprint after the body.
        let fingerprint = e.envelope.fingerprint.expect("record format 2");
        assert_eq!(codec::chain_hash(&prev, &[codec::encode(&body), fingerprint.to_vec()].concat()), e.envelope.hash);
        prev = e.envelope.hash;
    }
    assert_eq!(ledger.projections().head_hash, prev);
    assert!(events.windows(2).all(|w| w[0].envelope.recorded_at_micros <= w[1].envelope.recorded_at_micros));
    // The envelope names who acted: the admin opened the fund, admitted the
    // partner and opened the round, its treasurer pledged, an officer
    // recorded the receipt.
    let actors: Vec<&str> = events.iter().map(|e| e.envelope.actor.as_str()).collect();
    assert_eq!(actors, ["admin", "admin", "treasurer-porticus", "officer-anna", "admin"]);
    let expected: Vec<String> = setup().iter().map(|r| r.actor.principal.to_string()).collect();
    assert_eq!(actors, expected, "each event names the principal whose command recorded it");
    let replayed = Projections::replay(&ledger.log_reader(), 5).unwrap();
    assert_eq!(replayed.encoded(), ledger.projections().encoded());
}

#[tokio::test]
async fn stream_history_lists_a_dossier_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path()).await;
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    ledger.submit(submit_application("s1", "app-1")).await.unwrap();
    ledger.submit(submit_application("s2", "app-2")).await.unwrap();
    ledger
        .submit(request(
            "a1",
            Command::AwardGrant {
                application: ApplicationId::new("app-1").unwrap(),
                amount: eur("10000"),
                reason: "fits the call".into(),
                decided_on: date("2024-04-10"),
            },
        ))
        .await
        .unwrap();
    let stream = fundledger::domain::StreamId::Application(ApplicationId::new("app-1").unwrap());
    let history = ledger.stream_events(&stream).unwrap();
    let types: Vec<_> = history.iter().map(|e| e.envelope.event_type.as_str()).collect();
    assert_eq!(types, ["ApplicationSubmitted", "GrantAwarded"]);
    assert_eq!(history[1].envelope.stream_version, 2);
}

// ----- golden bytes: the stored format is frozen -----

fn golden_event() -> Event {
    let pot = |p: &str, r: Option<&str>| PotKey {
        partner: PartnerId::new(p).unwrap(),
        earmark: r.map(|r| RoundId::new(r).unwrap()),
    };
    Event::GrantAwarded {
        application: ApplicationId::new("app-7").unwrap(),
        amount: Amount::from_minor(1_250_000).unwrap(),
        attribution: vec![
            Share { pot: pot("bzk", None), amount: Amount::from_minor(1_000_000).unwrap() },
            Share { pot: pot("vfonds", Some("r2")), amount: Amount::from_minor(250_000).unwrap() },
        ],
        reason: "ok".into(),
        decided_by: "anna".into(),
        decided_on: date("2023-05-01"),
    }
}

#[test]
fn golden_bytes_of_an_event_payload() {
    let bytes = codec::encode(&golden_event());
    assert_eq!(hex::encode(&bytes), GOLDEN_EVENT_HEX, "the stored event encoding changed");
    let back: Event = codec::decode(&bytes).unwrap();
    assert_eq!(back, golden_event());
}

/// Access is granted with the token's SHA-256 only; the role of a partner
/// carries its partner id.
fn golden_access_event() -> Event {
    Event::AccessGranted {
        principal: PrincipalId::new("treasurer-bzk").unwrap(),
        role: Role::Partner(PartnerId::new("bzk").unwrap()),
        token_sha256: [0xab; 32],
    }
}

#[test]
fn golden_bytes_of_an_access_event_payload() {
    let bytes = codec::encode(&golden_access_event());
    assert_eq!(hex::encode(&bytes), GOLDEN_ACCESS_EVENT_HEX, "the stored encoding of AccessGranted changed");
    let back: Event = codec::decode(&bytes).unwrap();
    assert_eq!(back, golden_access_event());
}

#[test]
fn golden_bytes_of_a_stored_record_and_its_hash() {
    let body = RecordBody {
        seq: 42,
        stream: "application/app-7".into(),
        stream_version: 2,
        event_type: "GrantAwarded".into(),
        schema_version: 1,
        recorded_at_micros: 1_700_000_000_000_000,
        actor: "anna".into(),
        request_id: "req-42".into(),
        payload: codec::encode(&golden_event()),
    };
    let prev = [7u8; 32];
    let (record, hash) = codec::encode_record(&prev, &body);
    assert_eq!(hex::encode(&record), GOLDEN_RECORD_HEX, "the stored record layout changed");
    assert_eq!(hex::encode(hash), GOLDEN_HASH_HEX);
    let decoded = codec::decode_record(&record).unwrap();
    assert!(decoded.hash_matches());
    assert_eq!(decoded.body, body);
    // The borrowed body the log reads and writes with: the same bytes both
    // ways, its texts and payload pointing into the record.
    let borrowed = codec::decode_record_borrowed(&record).unwrap();
    assert!(borrowed.hash_matches());
    assert_eq!(borrowed.body.to_owned_body(), body);
    assert_eq!(codec::encode_record_ref(&prev, &borrowed.body), (record.clone(), hash));
    let stored = record.as_ptr_range();
    assert!(stored.contains(&borrowed.body.payload.as_ptr()) && stored.contains(&borrowed.body.stream.as_ptr()));
}

#[test]
fn every_event_variant_round_trips_through_the_codec() {
    let pot = PotKey { partner: PartnerId::new("p").unwrap(), earmark: None };
    let a = Amount::from_minor(100).unwrap();
    let app = ApplicationId::new("a").unwrap();
    let round = RoundId::new("r").unwrap();
    let d = date("2024-01-01");
    let share = vec![Share { pot: pot.clone(), amount: a }];
    let events = vec![
        Event::FundOpened { name: "F".into(), currency: Currency::eur() },
        Event::PartnerAdmitted { partner: pot.partner.clone(), name: "P".into(), organisation_id: "o".into() },
        Event::ContributionPledged { pot: pot.clone(), amount: a, pledged_on: d },
        Event::PledgeReduced { pot: pot.clone(), amount: a, reason: "x".into(), reduced_on: d },
        Event::ContributionReceived { pot: pot.clone(), amount: a, value_date: d, bank_reference: "b".into() },
        Event::RoundOpened {
            round: round.clone(),
            name: "R".into(),
            budget_ceiling: a,
            grant_max: a,
            opens_on: d,
            closes_on: d,
        },
        Event::RoundClosed { round: round.clone(), closed_on: d },
        Event::ApplicationSubmitted {
            application: app.clone(),
            round,
            applicant: Applicant {
                name: "n".into(),
                organisation_id: Default::default(),
                place: "Willemstad".into(),
                country: "CW".into(),
            },
            title: "t".into(),
            description: "d".into(),
            amount_requested: a,
            submitted_on: d,
        },
        Event::ApplicationWithdrawn { application: app.clone(), reason: "x".into(), withdrawn_on: d },
        Event::ApplicationRejected {
            application: app.clone(),
            reason: "x".into(),
            decided_by: "o".into(),
            decided_on: d,
        },
        golden_event(),
        Event::GrantReduced {
            application: app.clone(),
            amount: a,
            released: share.clone(),
            reason: "x".into(),
            decided_by: "o".into(),
            decided_on: d,
        },
        Event::GrantWithdrawn {
            application: app.clone(),
            released: share.clone(),
            reason: "x".into(),
            decided_by: "o".into(),
            decided_on: d,
        },
        Event::GrantSettled {
            application: app.clone(),
            final_amount: a,
            released: vec![],
            reason: "x".into(),
            decided_by: "o".into(),
            decided_on: d,
        },
        Event::PaymentMade {
            application: app.clone(),
            tranche: 1,
            amount: a,
            attribution: share.clone(),
            value_date: d,
            bank_reference: "b".into(),
        },
        Event::RefundReceived {
            application: app.clone(),
            amount: a,
            attribution: share,
            releases: true,
            value_date: d,
            bank_reference: "b".into(),
        },
        Event::ApprovalThresholdsSet { round: RoundId::new("r").unwrap(), award_above: Some(a), payment_above: None },
        golden_access_event(),
        Event::AccessRevoked { principal: PrincipalId::new("o").unwrap(), reason: "left".into() },
        Event::AwardProposed {
            application: app.clone(),
            amount: a,
            reason: "x".into(),
            proposed_by: "o".into(),
            proposed_on: d,
        },
        Event::PaymentProposed {
            application: app.clone(),
            amount: a,
            value_date: d,
            bank_reference: "b".into(),
            proposed_by: "o".into(),
        },
        Event::ConflictDeclared { application: app, officer: "o".into(), reason: "x".into(), declared_on: d },
    ];
    // The names a client may filter the log by are exactly the types recorded.
    let names: Vec<&str> = events.iter().map(Event::type_name).collect();
    assert_eq!(names, fundledger::domain::EVENT_TYPE_NAMES);
    for event in events {
        let back: Event = codec::decode(&codec::encode(&event)).unwrap();
        assert_eq!(back, event);
    }
}

const GOLDEN_EVENT_HEX: &str = "0a00000005000000000000006170702d37d01213000000000002000000000000000300000000000000627a6b0040420f0000000000060000000000000076666f6e6473010200000000000000723290d003000000000002000000000000006f6b0400000000000000616e6e61164c0000";
const GOLDEN_RECORD_HEX: &str = concat!(
    "01",
    "0707070707070707070707070707070707070707070707070707070707070707",
    "7f589c76355022071aeb2804dc5d4a11d4d46f05ae43bd452fb63d5e0840f042",
    "2a0000000000000011000000000000006170706c69636174696f6e2f6170702d3702000000000000000c000000000000004772616e7441776172646564010000401e18240a06000400000000000000616e6e6106000000000000007265712d343270000000000000000a00000005000000000000006170702d37d01213000000000002000000000000000300000000000000627a6b0040420f0000000000060000000000000076666f6e6473010200000000000000723290d003000000000002000000000000006f6b0400000000000000616e6e61164c0000"
);
const GOLDEN_ACCESS_EVENT_HEX: &str = "110000000d000000000000007472656173757265722d627a6b020000000300000000000000627a6babababababababababababababababababababababababababababababababab";
const GOLDEN_HASH_HEX: &str = "7f589c76355022071aeb2804dc5d4a11d4d46f05ae43bd452fb63d5e0840f042";

// ----- projection checkpoints -----

/// A checkpoint's body sealed with its checksum (CRC-32, big-endian), as
/// the ledger stores it: for tests that damage a checkpoint under a
/// checksum that still holds.
fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let checksum = crc32fast::hash(&body);
    body.extend_from_slice(&checksum.to_be_bytes());
    body
}

/// A ledger in `dir` that is due for a checkpoint every 3 events, with the
/// fund set up; and its configuration, to reopen it.
async fn set_up_checkpointing_every_3_events(dir: &std::path::Path) -> (Ledger, LedgerConfig) {
    let mut config = LedgerConfig::new(dir);
    config.checkpoint_events_interval = 3;
    let ledger = Ledger::open(config.clone()).unwrap();
    for r in setup() {
        ledger.submit(r).await.unwrap();
    }
    (ledger, config)
}

/// Six events, then a clean shutdown (which stores a checkpoint at the
/// head): the projections it left, and the ledger's configuration.
async fn six_events_then_shut_down(dir: &std::path::Path) -> (Projections, LedgerConfig) {
    let (ledger, config) = set_up_checkpointing_every_3_events(dir).await;
    ledger.submit(submit_application("s1", "app-1")).await.unwrap();
    let live = ledger.projections().clone();
    ledger.shutdown().await;
    (live, config)
}

/// A checkpoint whose CRC holds and whose chunks' framing, pots and first
/// ids read, but whose application does not decode: a start (which
/// decodes applications as they are used) trusts it, and meets the damage
/// where the application is first used, which calls the function the
/// ledger sets (it moves the checkpoint aside and stops the process);
/// `Projections::load`, which decodes everything first, replays instead.
#[tokio::test]
async fn a_checkpoint_whose_application_does_not_decode_is_met_where_it_is_used() {
    use fundledger::domain::{ApplicationId, PotKey};
    use fundledger::log::EventLog;
    use fundledger::projections::Loaded;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let (live, _) = six_events_then_shut_down(dir.path()).await;
    assert_eq!(live.state.applications.len(), 1);
    let mut log = support::open_retrying(|| EventLog::open(dir.path()).map_err(|e| e.to_string()));
    let reader = log.reader();

    // The one chunk, its application cut to its id and three bad bytes.
    let bytes = live.checkpoint_bytes();
    let rest = fundledger::domain::FundState { applications: Default::default(), ..live.state.clone() };
    let rest_ends = 1 + 8 + 32 + 8 + codec::encode(&rest).len();
    let chunk = &bytes[rest_ends + 8..bytes.len() - 12];
    let (pots, pots_end) = codec::decode_checkpoint_entry::<Vec<PotKey>>(chunk).unwrap();
    let (id, _) = codec::decode_checkpoint_entry::<ApplicationId>(&chunk[pots_end..]).unwrap();
    assert_eq!(id.as_str(), "app-1");
    let mut damaged_chunk = codec::encode(&pots);
    damaged_chunk.extend_from_slice(&codec::encode(&id));
    damaged_chunk.extend_from_slice(&[0xff; 3]);
    let mut damaged = bytes[..rest_ends].to_vec();
    damaged.extend_from_slice(&(damaged_chunk.len() as u64).to_be_bytes());
    damaged.extend_from_slice(&damaged_chunk);
    damaged.extend_from_slice(&0u64.to_be_bytes());
    let damaged = with_checksum(damaged);
    log.put_checkpoint(&damaged).unwrap();

    // Loaded with everything decoded first: not used, the log replayed.
    let (loaded, how) = Projections::load(&reader, 6).unwrap();
    assert_eq!(how, Loaded::Replayed { reason: "checkpoint state does not decode" });
    assert_eq!(loaded.encoded(), live.encoded());
    assert_eq!(Projections::decode_checkpoint(&damaged), Err("checkpoint state does not decode"));

    // As a start reads it: trusted, the application not decoded yet.
    let claimed = Projections::claim(&reader).unwrap().unwrap().unwrap();
    let (started, how) = Projections::load_claimed(&reader, 6, Some(Ok(claimed))).unwrap();
    assert_eq!(how, Loaded::FromCheckpoint { checkpoint_seq: 6 });
    let stored = started.state.applications.stored().expect("started from the checkpoint");
    assert!(!stored.is_decoded());
    assert!(stored.decode_all().unwrap_err().contains("chunk 0"));
    // The first use of the application calls the ledger's function, then
    // panics (the ledger's does not return: it stops the process).
    let met = Arc::new(Mutex::new(Vec::new()));
    let seen = met.clone();
    stored.on_undecodable(Box::new(move |problem| seen.lock().unwrap().push(problem.to_owned())));
    let lookup =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| started.state.applications.get(&id).is_some()));
    assert!(lookup.is_err());
    let met = met.lock().unwrap();
    assert_eq!(met.len(), 1);
    assert!(met[0].starts_with("chunk 0: "), "{met:?}");
}

#[tokio::test]
async fn a_restart_loads_the_checkpoint_and_equals_a_full_replay() {
    use fundledger::log::EventLog;
    use fundledger::projections::Loaded;
    let dir = tempfile::tempdir().unwrap();
    let (live, _) = six_events_then_shut_down(dir.path()).await;

    // The shutdown stored a checkpoint at the head: nothing is left to replay.
    // (sled lets go of the directory a moment after the ledger is dropped.)
    let mut log = support::open_retrying(|| EventLog::open(dir.path()).map_err(|e| e.to_string()));
    let reader = log.reader();
    let (loaded, how) = Projections::load(&reader, log.head_seq()).unwrap();
    assert_eq!(how, Loaded::FromCheckpoint { checkpoint_seq: 6 });
    assert_eq!(loaded.encoded(), live.encoded());
    assert_eq!(Projections::replay(&reader, 6).unwrap().encoded(), live.encoded());

    // An older checkpoint is topped up from the log.
    let older = Projections::replay(&reader, 4).unwrap();
    log.put_checkpoint(&older.checkpoint_bytes()).unwrap();
    let (loaded, how) = Projections::load(&reader, 6).unwrap();
    assert_eq!(how, Loaded::FromCheckpoint { checkpoint_seq: 4 });
    assert_eq!(loaded.encoded(), live.encoded());

    // A checkpoint that does not match the log is never trusted.
    let mut forged = older.clone();
    forged.head_hash = [9; 32];
    log.put_checkpoint(&forged.checkpoint_bytes()).unwrap();
    let (loaded, how) = Projections::load(&reader, 6).unwrap();
    assert!(matches!(how, Loaded::Replayed { .. }), "{how:?}");
    assert_eq!(loaded.encoded(), live.encoded());

    // Nor is one cut short.
    let mut garbage = older.checkpoint_bytes();
    garbage.truncate(garbage.len() - 3);
    log.put_checkpoint(&garbage).unwrap();
    let (loaded, how) = Projections::load(&reader, 6).unwrap();
    assert_eq!(how, Loaded::Replayed { reason: "checkpoint damaged: its checksum does not match" });
    assert_eq!(loaded.encoded(), live.encoded());

    // Nor one damaged on disk where it still decodes, with the right head:
    // a pot's received money changed under the original checksum.
    let good = older.checkpoint_bytes();
    let mut altered = older.clone();
    let pot = altered.state.pots.values_mut().find(|pot| !pot.received.is_zero()).expect("a pot received money");
    pot.received = fundledger::domain::Amount::from_minor(pot.received.minor() + 100_000).unwrap();
    let mut damaged = altered.checkpoint_bytes();
    assert_eq!(damaged.len(), good.len());
    let trailer = damaged.len() - 4;
    damaged[trailer..].copy_from_slice(&good[trailer..]);
    assert!(Projections::decode_checkpoint(&damaged[..]).is_err());
    log.put_checkpoint(&damaged).unwrap();
    let (loaded, how) = Projections::load(&reader, 6).unwrap();
    assert_eq!(how, Loaded::Replayed { reason: "checkpoint damaged: its checksum does not match" });
    assert_eq!(loaded.encoded(), live.encoded());

    // Nor one with bytes after the state, even under a matching checksum
    // (the checkpoint is read as a stream: what the decoder leaves counts).
    let mut padded = older.checkpoint_bytes();
    padded.truncate(padded.len() - 4);
    padded.extend_from_slice(&[0, 0, 0]);
    log.put_checkpoint(&with_checksum(padded)).unwrap();
    let (loaded, how) = Projections::load(&reader, 6).unwrap();
    assert_eq!(how, Loaded::Replayed { reason: "checkpoint state does not decode" });
    assert_eq!(loaded.encoded(), live.encoded());

    // The checkpoint is a file of its own beside sled's; one cut short by a
    // crash while it was written (`.new`) is never read.
    log.put_checkpoint(&older.checkpoint_bytes()).unwrap();
    let file = dir.path().join(fundledger::log::CHECKPOINT_FILE);
    assert_eq!(std::fs::read(&file).unwrap(), older.checkpoint_bytes());
    std::fs::write(dir.path().join(format!("{}.new", fundledger::log::CHECKPOINT_FILE)), &garbage).unwrap();
    let (_, how) = Projections::load(&reader, 6).unwrap();
    assert_eq!(how, Loaded::FromCheckpoint { checkpoint_seq: 4 });
    // Without it, the ledger replays everything.
    std::fs::remove_file(&file).unwrap();
    let (loaded, how) = Projections::load(&reader, 6).unwrap();
    assert_eq!(how, Loaded::Replayed { reason: "no checkpoint" });
    assert_eq!(loaded.encoded(), live.encoded());
}

/// A start reads the checkpoint file while the log opens (on a thread of
/// its own), and trusts it only once it verified against the opened log,
/// exactly as `Projections::load` does.
#[tokio::test]
async fn a_start_reads_the_checkpoint_while_the_log_opens_and_trusts_only_what_verifies() {
    use fundledger::projections::Loaded;
    let dir = tempfile::tempdir().unwrap();
    let (live, config) = six_events_then_shut_down(dir.path()).await;
    let file = dir.path().join(fundledger::log::CHECKPOINT_FILE);
    let restart = |expected: Loaded| {
        let ledger = support::reopen(config.clone());
        assert_eq!(ledger.loaded(), expected);
        assert_eq!(ledger.projections().encoded(), live.encoded());
        ledger
    };

    // The checkpoint the shutdown stored, at the head.
    let ledger = restart(Loaded::FromCheckpoint { checkpoint_seq: 6 });
    ledger.shutdown().await;
    drop(ledger);

    // One that claims another chain's head: replayed, then replaced right
    // away (the log holds more than a checkpoint interval), before any
    // command or shutdown.
    let mut forged = live.clone();
    forged.head_hash = [9; 32];
    std::fs::write(&file, forged.checkpoint_bytes()).unwrap();
    let ledger = restart(Loaded::Replayed { reason: "checkpoint does not match the log's hash at its sequence" });
    support::open_retrying(|| {
        let stored = std::fs::read(&file).map_err(|e| e.to_string())?;
        (stored == live.checkpoint_bytes()).then_some(()).ok_or_else(|| "not replaced yet".to_owned())
    });
    ledger.shutdown().await;
    drop(ledger);
    assert_eq!(std::fs::read(&file).unwrap(), live.checkpoint_bytes());

    // One damaged on disk: replayed.
    let mut damaged = live.checkpoint_bytes();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    std::fs::write(&file, &damaged).unwrap();
    let ledger = restart(Loaded::Replayed { reason: "checkpoint damaged: its checksum does not match" });

    // A second open of a ledger in use is refused.
    match Ledger::open(config.clone()) {
        Err(fundledger::ledger::LedgerError::Log(fundledger::log::LogError::InUse { .. })) => {}
        Err(other) => panic!("refused, but as {other}"),
        Ok(_) => panic!("a ledger in use opened twice"),
    }
    ledger.shutdown().await;
    drop(ledger);

    // None at all: replayed.
    std::fs::remove_file(&file).unwrap();
    restart(Loaded::Replayed { reason: "no checkpoint" }).shutdown().await;
}

/// The workload's fund after ten applications, awarded and paid, as the
/// projections at a made-up head.
fn workload_projections() -> Projections {
    use fundledger::domain::{decide, Context, FundState};
    use fundledger::workload::{self, ClientKind, WorkloadClient};
    let mut state = FundState::default();
    let mut client = WorkloadClient::of_kind("chunks", 0, ClientKind::Officer);
    let steps = workload::setup().into_iter().chain((0..40).map(|_| client.next_step()));
    for step in steps {
        for event in decide(&state, &step.command, &Context { actor: step.actor }).unwrap() {
            state.evolve(&event);
        }
    }
    Projections { state, head_seq: 77, head_hash: [7; 32], head_recorded_at_micros: 1_000 }
}

/// A checkpoint's bytes are pinned. A change to `FundState`, to `evolve` or
/// to the layout of the chunks changes them, and must come with a new
/// `CHECKPOINT_FORMAT` in `src/projections.rs` (so that a checkpoint of the
/// old layout is replayed and replaced, never misread) and a new hash here.
#[test]
fn a_checkpoints_bytes_are_pinned_to_its_layout_version() {
    use sha2::Digest as _;
    let bytes = workload_projections().checkpoint_bytes_in_chunks(3);
    assert_eq!(bytes[0], 5, "the layout version");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        PINNED_CHECKPOINT_SHA256,
        "the checkpoint's bytes changed: bump CHECKPOINT_FORMAT, then pin the new bytes"
    );
}

const PINNED_CHECKPOINT_SHA256: &str = "19b93b0f880dea7ce481bbd4d7cacf2525b6c06531b369a6be717fa48527470a";

/// A checkpoint stores the applications in chunks, which a start decodes
/// as they are used: any number of chunks decodes to the same projections,
/// in id order; a damaged chunk length is refused (room for more than the
/// bytes there are is never made), and so are a checkpoint that ends inside
/// a chunk and a chunk that does not decode.
#[test]
fn a_checkpoint_in_any_number_of_chunks_decodes_to_the_same_projections() {
    let projections = workload_projections();
    let applications = projections.state.applications.len();
    assert_eq!(applications, 10);
    for per_chunk in [1, 2, 3, 9, 10, 11, 2_048] {
        let bytes = projections.checkpoint_bytes_in_chunks(per_chunk);
        let decoded = Projections::decode_checkpoint(&bytes).unwrap();
        assert_eq!(decoded, projections, "{per_chunk} per chunk");
        assert_eq!(decoded.encoded(), projections.encoded());
    }
    assert_eq!(projections.checkpoint_bytes(), projections.checkpoint_bytes_in_chunks(2_048));
    let empty = Projections::default();
    assert_eq!(Projections::decode_checkpoint(&empty.checkpoint_bytes()).unwrap(), empty);

    // Under a recomputed checksum: the last chunk's length made huge, then
    // the zero length that ends the chunks cut off.
    let bytes = projections.checkpoint_bytes_in_chunks(3);
    let body = &bytes[..bytes.len() - 4];
    // Walk the chunks, from where the rest of the state ends, to the zero
    // length: each chunk's bytes, its length included.
    let rest = fundledger::domain::FundState { applications: Default::default(), ..projections.state.clone() };
    let rest_ends = 1 + 8 + 32 + 8 + codec::encode(&rest).len();
    let chunks_of = |body: &[u8]| {
        let mut at = rest_ends;
        let mut chunks = Vec::new();
        while at < body.len() - 8 {
            let end = at + 8 + u64::from_be_bytes(body[at..at + 8].try_into().unwrap()) as usize;
            chunks.push(at..end);
            at = end;
        }
        assert_eq!(at, body.len() - 8, "the chunks end at the zero length");
        chunks
    };
    let chunks = chunks_of(body);
    assert_eq!(chunks.len(), 4, "10 applications in chunks of 3");
    let last_chunk = chunks.last().unwrap().start;
    let prefix = &body[..rest_ends];

    // Chunks hold rising ids, each chunk's beyond the last one's: the same
    // application twice (in one order or the other), or chunks out of
    // order, are refused, not decoded into one of the two.
    let one_per_chunk = projections.checkpoint_bytes_in_chunks(1);
    let body_of_ones = &one_per_chunk[..one_per_chunk.len() - 4];
    let ones: Vec<&[u8]> = chunks_of(body_of_ones).into_iter().map(|chunk| &body_of_ones[chunk]).collect();
    assert_eq!(ones.len(), applications);
    let (first_id, first) = projections.state.applications.iter().next().unwrap();
    let mut changed = first.clone();
    changed.title = "changed".into();
    let mut altered = projections.clone();
    altered.state.applications.insert(first_id.clone(), changed);
    let altered_ones = altered.checkpoint_bytes_in_chunks(1);
    let altered_body = &altered_ones[..altered_ones.len() - 4];
    let changed_chunk = altered_body[chunks_of(altered_body)[0].clone()].to_vec();
    let with_chunks = |chunks: &[&[u8]]| {
        let mut body = prefix.to_vec();
        chunks.iter().for_each(|chunk| body.extend_from_slice(chunk));
        body.extend_from_slice(&0u64.to_be_bytes());
        Projections::decode_checkpoint(&with_checksum(body))
    };
    let in_order: Vec<&[u8]> = ones.clone();
    assert_eq!(with_chunks(&in_order).unwrap(), projections);
    let mut with_changed = vec![&changed_chunk[..]];
    with_changed.extend(&ones[1..]);
    assert_eq!(with_chunks(&with_changed).unwrap(), altered);
    for twice in [[&changed_chunk[..], ones[0]], [ones[0], &changed_chunk[..]]] {
        let mut chunks = twice.to_vec();
        chunks.extend(&ones[1..]);
        assert_eq!(with_chunks(&chunks), Err("checkpoint state does not decode"));
    }
    let mut swapped = ones.clone();
    swapped.swap(3, 4);
    assert_eq!(with_chunks(&swapped), Err("checkpoint state does not decode"));
    // Two applications in one chunk, the second's id not below the next
    // chunk's first, is refused when the chunk is decoded.
    let pairs = projections.checkpoint_bytes_in_chunks(2);
    let pairs_body = &pairs[..pairs.len() - 4];
    let pair_chunks: Vec<&[u8]> = chunks_of(pairs_body).into_iter().map(|chunk| &pairs_body[chunk]).collect();
    let mut overlapping = vec![pair_chunks[0], ones[1]];
    overlapping.extend(&ones[2..]);
    assert_eq!(with_chunks(&overlapping), Err("checkpoint state does not decode"));

    // A chunk in the middle that does not decode (its list of pots claims
    // more than there are), between chunks that do: refused.
    let mut undecodable = body_of_ones.to_vec();
    let middle = chunks_of(body_of_ones)[applications / 2].start;
    undecodable[middle + 8..middle + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(Projections::decode_checkpoint(&with_checksum(undecodable)), Err("checkpoint state does not decode"));

    // A grant's share names its pot by its number in the chunk's list of
    // pots, and a number beyond the list does not decode. The last chunk of
    // ones holds one application, whose grant draws on six pots: with the
    // list cut to its first pot, shares 1 to 5 name pots that are not there.
    let last = chunks_of(body_of_ones).last().unwrap().clone();
    let chunk = &body_of_ones[last.start + 8..last.end];
    let (pots, pots_end) = codec::decode_checkpoint_entry::<Vec<fundledger::domain::PotKey>>(chunk).unwrap();
    assert_eq!(pots.len(), 6, "the workload's grants draw on six pots");
    // The checkpoint with its last chunk listing `listed` before its entries.
    let with_last_listing = |listed: &[fundledger::domain::PotKey]| {
        let mut last_chunk = codec::encode(&listed.to_vec());
        last_chunk.extend_from_slice(&chunk[pots_end..]);
        let mut body = body_of_ones[..last.start].to_vec();
        body.extend_from_slice(&(last_chunk.len() as u64).to_be_bytes());
        body.extend_from_slice(&last_chunk);
        body.extend_from_slice(&0u64.to_be_bytes());
        Projections::decode_checkpoint(&with_checksum(body))
    };
    assert_eq!(with_last_listing(&pots[..1]), Err("checkpoint state does not decode"));
    // Built the same way with the whole list, it decodes.
    assert_eq!(with_last_listing(&pots).unwrap(), projections);

    // A checkpoint of layout 4 (pots' keys written out in every share) is
    // of an older format: replayed and replaced, never misread.
    let mut layout_4 = body.to_vec();
    layout_4[0] = 4;
    assert_eq!(
        Projections::decode_checkpoint(&with_checksum(layout_4)),
        Err(fundledger::projections::CHECKPOINT_OLDER_FORMAT)
    );

    let mut huge = body.to_vec();
    huge[last_chunk..last_chunk + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(Projections::decode_checkpoint(&with_checksum(huge)), Err("checkpoint state does not decode"));
    let mut over_the_bound = body.to_vec();
    let bound = fundledger::projections::CHECKPOINT_CHUNK_BYTES_MAX;
    over_the_bound[last_chunk..last_chunk + 8].copy_from_slice(&(bound + 1).to_be_bytes());
    assert_eq!(Projections::decode_checkpoint(&with_checksum(over_the_bound)), Err("checkpoint state does not decode"));
    let mut too_long = body.to_vec();
    too_long[last_chunk..last_chunk + 8].copy_from_slice(&bound.to_be_bytes());
    assert_eq!(Projections::decode_checkpoint(&with_checksum(too_long)), Err("checkpoint state does not decode"));
    let unterminated = body[..body.len() - 8].to_vec();
    assert_eq!(Projections::decode_checkpoint(&with_checksum(unterminated)), Err("checkpoint state does not decode"));
}

// ----- replay across pages (the pipelined reader) -----

#[tokio::test]
async fn replay_across_pages_hands_over_every_event_once_in_order_and_stops_at_a_missing_one() {
    use fundledger::projections::for_each_event;
    use fundledger::workload::{self, WorkloadClient};
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let as_request = |step: workload::Step, request_id: String| CommandRequest {
        command: step.command,
        request_id,
        expected_version: None,
        actor: step.actor,
    };
    let setup = workload::setup().into_iter().enumerate().map(|(n, step)| as_request(step, format!("setup-{n}")));
    for answer in ledger.submit_many(setup.collect()).await.unwrap() {
        answer.unwrap();
    }
    // More than eight pages of 4,096 events, from 16 clients: enough for
    // both reading threads to fill their queues and wait to hand over more.
    let mut clients: Vec<WorkloadClient> = (0..16).map(|c| WorkloadClient::new("p", c)).collect();
    while ledger.head_seq() < 34_000 {
        let batch = (0..4096).map(|i| {
            let client = &mut clients[i % 16];
            let id = client.request_id();
            as_request(client.next_step(), id)
        });
        for answer in ledger.submit_many(batch.collect()).await.unwrap() {
            answer.unwrap();
        }
    }
    let head = ledger.head_seq();
    let reader = ledger.log_reader();
    let seen = |from: u64, to: u64| {
        let mut seqs = Vec::new();
        let outcome = for_each_event(&reader, from, to, |envelope, _| seqs.push(envelope.seq));
        (seqs, outcome)
    };
    let (all, outcome) = seen(1, head);
    outcome.unwrap();
    assert_eq!(all, (1..=head).collect::<Vec<_>>());
    let (middle, outcome) = seen(4_000, 12_345);
    outcome.unwrap();
    assert_eq!(middle, (4_000..=12_345).collect::<Vec<_>>());
    assert_eq!(seen(10, 9).0, Vec::<u64>::new());
    assert_eq!(Projections::replay(&reader, head).unwrap().encoded(), ledger.projections().encoded());

    // A fold that panics on the first event: the panic comes out, and the
    // reading threads, waiting to hand over more pages, stop instead of
    // hanging the call.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for_each_event(&reader, 1, head, |_, _| panic!("the fold fails"))
    }));
    assert!(panicked.is_err());
    // An event after the head is missing too.
    let (_, outcome) = seen(head - 2, head + 1);
    assert!(matches!(outcome, Err(fundledger::log::LogError::Corrupt { seq, .. }) if seq == head + 1), "{outcome:?}");
    ledger.shutdown().await;
    drop((ledger, reader));

    // Pages are read by two threads (the third page, 8,193 to 12,288, by
    // one, the fourth by the other); events go missing, and the error is
    // always the first missing one in log order, with nothing handed over
    // at or after it.
    let missing_after = |removed: &[u64]| {
        let db = support::open_retrying(|| fundledger::log::sled_config(dir.path()).open().map_err(|e| e.to_string()));
        for &seq in removed {
            support::stored::remove(&db, seq);
        }
        drop(db);
        let log = support::open_retrying(|| fundledger::log::EventLog::open(dir.path()).map_err(|e| e.to_string()));
        let mut seqs = Vec::new();
        let error = for_each_event(&log.reader(), 1, head, |envelope, _| seqs.push(envelope.seq)).unwrap_err();
        match error {
            fundledger::log::LogError::Corrupt { seq, .. } => (seqs, seq),
            other => panic!("{other}"),
        }
    };
    // The last event of the third page, and one in the fourth.
    let (seqs, first_missing) = missing_after(&[12_288, 14_000]);
    assert_eq!(first_missing, 12_288);
    assert_eq!(seqs, (1..=8_192).collect::<Vec<_>>());
    // And one inside the third page, before those two.
    let (seqs, first_missing) = missing_after(&[9_000]);
    assert_eq!(first_missing, 9_000);
    assert_eq!(seqs, (1..=8_192).collect::<Vec<_>>());
    // And one in the first page: nothing is handed over, and the call
    // returns while both readers still have pages to hand over.
    let (seqs, first_missing) = missing_after(&[100]);
    assert_eq!(first_missing, 100);
    assert!(seqs.is_empty());
}

/// The writer hands checkpoints to a thread of their own and goes on: while
/// the ledger runs (no shutdown), checkpoints appear, and each one stored is
/// exactly a replay of the log up to its head.
#[tokio::test]
async fn checkpoints_are_stored_while_the_ledger_runs_and_each_equals_a_replay_to_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, _) = set_up_checkpointing_every_3_events(dir.path()).await;
    let file = dir.path().join(fundledger::log::CHECKPOINT_FILE);
    let mut heads = std::collections::BTreeSet::new();
    for n in 0..40 {
        let id = format!("running-{n}");
        ledger.submit(submit_application(&id, &id)).await.unwrap();
        // Read as the writer's thread may be renaming a new one in place.
        let Ok(bytes) = std::fs::read(&file) else { continue };
        let stored = Projections::decode_checkpoint(&bytes).expect("a stored checkpoint is whole");
        assert!(stored.head_seq <= ledger.head_seq());
        if heads.insert(stored.head_seq) {
            let replayed = Projections::replay(&ledger.log_reader(), stored.head_seq).unwrap();
            assert_eq!(stored.encoded(), replayed.encoded(), "checkpoint at {}", stored.head_seq);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(heads.len() >= 2, "checkpoints stored while running, at heads {heads:?}");
    let head = ledger.head_seq();
    ledger.shutdown().await;
    drop(ledger);
    let stored = Projections::decode_checkpoint(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored.head_seq, head, "a clean stop stores the last one");
}

#[tokio::test]
async fn a_ledger_opens_from_its_checkpoint_or_past_a_damaged_one_and_decides_on_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = set_up_and_stop(dir.path()).await;
    let file = dir.path().join(fundledger::log::CHECKPOINT_FILE);
    let good = std::fs::read(&file).unwrap();

    // From the checkpoint, and past one with a flipped bit (replayed): the
    // writer's copy of the state equals the projections (the writer checks
    // that after every commit in debug builds), so later commands decide
    // on the same figures the queries show.
    let mut damaged = good.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x10;
    for (name, bytes) in [("checkpoint", &good), ("damaged checkpoint", &damaged)] {
        std::fs::write(&file, bytes).unwrap();
        let ledger = support::reopen(config.clone());
        let replayed = Projections::replay(&ledger.log_reader(), ledger.head_seq()).unwrap();
        assert_eq!(ledger.projections().encoded(), replayed.encoded(), "{name}");
        let id = format!("after-{}", name.replace(' ', "-"));
        ledger.submit(submit_application(&id, &id)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let replayed = Projections::replay(&ledger.log_reader(), ledger.head_seq()).unwrap();
        assert_eq!(ledger.projections().encoded(), replayed.encoded(), "{name}");
        ledger.shutdown().await;
        drop(ledger);
    }
}

/// [`set_up_checkpointing_every_3_events`], stopped cleanly (so that its
/// checkpoint is stored); the configuration to open it again.
async fn set_up_and_stop(dir: &std::path::Path) -> LedgerConfig {
    let (ledger, config) = set_up_checkpointing_every_3_events(dir).await;
    ledger.shutdown().await;
    drop(ledger);
    config
}

#[tokio::test]
async fn a_start_removes_a_checkpoint_left_unfinished_and_keeps_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = set_up_and_stop(dir.path()).await;
    let file = dir.path().join(fundledger::log::CHECKPOINT_FILE);
    let stored = std::fs::read(&file).unwrap();
    // What a process killed while storing a checkpoint leaves behind.
    let unfinished = fundledger::log::unfinished_checkpoint(dir.path());
    std::fs::write(&unfinished, &stored[..stored.len() / 2]).unwrap();

    let ledger = support::reopen(config);
    assert!(!unfinished.exists(), "the unfinished checkpoint is removed at start");
    assert!(
        matches!(ledger.loaded(), fundledger::projections::Loaded::FromCheckpoint { .. }),
        "the stored checkpoint is still the one loaded: {:?}",
        ledger.loaded()
    );
    assert_eq!(std::fs::read(&file).unwrap(), stored, "and it is untouched");
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_start_refuses_when_the_unfinished_checkpoint_cannot_be_removed_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = set_up_and_stop(dir.path()).await;
    // Something of that name that is not a file: the next checkpoint could
    // not be written there either.
    let unfinished = fundledger::log::unfinished_checkpoint(dir.path());
    std::fs::create_dir(&unfinished).unwrap();
    let error = Ledger::open(config.clone()).err().expect("the start refuses").to_string();
    assert!(
        error.contains(&unfinished.display().to_string()) && error.contains("remove it, then start again"),
        "{error}"
    );
    std::fs::remove_dir(&unfinished).unwrap();
    let ledger = support::reopen(config);
    assert!(matches!(ledger.loaded(), fundledger::projections::Loaded::FromCheckpoint { .. }));
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_start_removes_a_storage_snapshot_left_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = set_up_and_stop(dir.path()).await;
    // What a process killed while sled wrote its snapshot leaves (sled
    // writes `snap.<position>.generating`, then renames it). sled reads the
    // `snap.` file that sorts last, which this one does: without its
    // removal, the start failed with "sled finds its database file corrupt".
    let half = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&half, [7u8; 100]).unwrap();

    let ledger = support::reopen(config);
    assert!(!half.exists(), "the half-written snapshot is removed at start");
    assert!(matches!(ledger.loaded(), fundledger::projections::Loaded::FromCheckpoint { .. }), "{:?}", ledger.loaded());
    ledger.shutdown().await;
}

// ----- stored format v3: the log's indexes -----

/// What a v3 log's indexes must answer, worked out from its events alone:
/// each request id's command (first event, count, fingerprint) and each
/// stream's events in order.
type IndexAnswers =
    (std::collections::BTreeMap<String, fundledger::log::RequestRecord>, std::collections::BTreeMap<String, Vec<u64>>);

fn expected_answers(reader: &fundledger::log::LogReader, head: u64) -> IndexAnswers {
    let (mut requests, mut streams) = IndexAnswers::default();
    for (envelope, _) in reader.read(1, head, usize::MAX).unwrap() {
        let fingerprint = envelope.fingerprint.expect("a v3 log's records carry their fingerprints");
        let entry = requests.entry(envelope.request_id.clone()).or_insert(fundledger::log::RequestRecord {
            fingerprint,
            first_seq: envelope.seq,
            count: 0,
        });
        assert_eq!(entry.fingerprint, fingerprint);
        entry.count += 1;
        streams.entry(envelope.stream.clone()).or_insert_with(Vec::new).push(envelope.seq);
    }
    (requests, streams)
}

fn answers(log: &mut fundledger::log::EventLog, expected: &IndexAnswers) -> IndexAnswers {
    let reader = log.reader();
    let requests = expected.0.keys().map(|id| (id.clone(), reader.request(id).unwrap().unwrap())).collect();
    let streams = expected
        .1
        .keys()
        .map(|stream| {
            let entries = reader.stream_entries(stream, 1, usize::MAX).unwrap();
            assert_eq!(log.stream_version(stream).unwrap(), entries.len() as u64);
            assert!(entries.iter().enumerate().all(|(at, &(version, _))| version == at as u64 + 1));
            (stream.clone(), entries.into_iter().map(|(_, seq)| seq).collect())
        })
        .collect();
    assert!(reader.request("never-sent").unwrap().is_none());
    (requests, streams)
}

#[tokio::test]
async fn a_new_log_starts_from_its_stored_index_and_rebuilds_one_it_cannot_trust() {
    use fundledger::log::{EventLog, StoreFormat, LOG_INDEX_FILE};
    let dir = tempfile::tempdir().unwrap();
    let index_file = dir.path().join(LOG_INDEX_FILE);
    // Stored at the checkpoint of event 3 and at the shutdown, event 6.
    let (ledger, config) = set_up_checkpointing_every_3_events(dir.path()).await;
    ledger.shutdown().await;
    drop(ledger);
    let older = std::fs::read(&index_file).unwrap();
    let ledger = support::reopen(config);
    ledger.submit(submit_application("s1", "app-1")).await.unwrap();
    ledger.submit(submit_application("s2", "app-2")).await.unwrap();
    let head = ledger.head_seq();
    ledger.shutdown().await;
    drop(ledger);
    let stored = std::fs::read(&index_file).unwrap();
    assert_ne!(older, stored);

    let open = || support::open_retrying(|| EventLog::open(dir.path()).map_err(|e| e.to_string()));
    let mut log = open();
    assert_eq!(log.format(), StoreFormat::V4);
    let expected = expected_answers(&log.reader(), head);
    // The shutdown stored the index at the head.
    assert_eq!(log.index_stored_seq(), Some(head));
    assert_eq!(answers(&mut log, &expected), expected);
    drop(log);

    // An older one is caught up from the log.
    std::fs::write(&index_file, &older).unwrap();
    let mut log = open();
    let older_head = log.index_stored_seq().unwrap();
    assert!(0 < older_head && older_head < head, "{older_head}");
    assert_eq!(answers(&mut log, &expected), expected);
    drop(log);

    // One whose head is not this log's event (its hash differs; the
    // checksum made whole again), one damaged, none: rebuilt from the log.
    let mut foreign = stored.clone();
    foreign[16 + 8] ^= 1; // The head hash, after the magic and the head seq.
    let body = foreign.len() - 4;
    let crc = crc32fast::hash(&foreign[..body]).to_le_bytes();
    foreign[body..].copy_from_slice(&crc);
    let mut damaged = stored.clone();
    damaged[40] ^= 1;
    for (case, bytes) in [("foreign", Some(foreign)), ("damaged", Some(damaged)), ("missing", None)] {
        match bytes {
            Some(bytes) => std::fs::write(&index_file, bytes).unwrap(),
            None => std::fs::remove_file(&index_file).unwrap(),
        }
        let mut log = open();
        assert_eq!(log.index_stored_seq(), Some(0), "{case}");
        assert_eq!(answers(&mut log, &expected), expected, "{case}");
    }

    // A run after a rebuild stores the index again (at its first
    // checkpoint, due at once, or at the latest at its shutdown).
    let ledger = support::reopen(LedgerConfig::new(dir.path()));
    ledger.shutdown().await;
    drop(ledger);
    assert_eq!(std::fs::read(&index_file).unwrap(), stored);
}

#[test]
fn a_v3_or_v4_log_finds_a_command_of_several_events_by_its_request_id_after_a_rebuild_too() {
    for format in [fundledger::log::StoreFormat::V3, fundledger::log::StoreFormat::V4] {
        finds_a_command_of_several_events_in(format);
    }
}

/// An event of an opaque payload on `stream`, for tests of the log alone.
fn event(stream: &str) -> fundledger::log::NewEvent {
    fundledger::log::NewEvent {
        stream: stream.into(),
        event_type: "Opaque".into(),
        schema_version: 1,
        payload: vec![1, 2, 3],
    }
}

/// A command's entry in the log, with a fingerprint of `fingerprint` bytes.
fn entry(id: &str, fingerprint: u8, events: Vec<fundledger::log::NewEvent>) -> fundledger::log::Entry {
    fundledger::log::Entry { request_id: id.into(), fingerprint: [fingerprint; 32], actor: "someone".into(), events }
}

fn finds_a_command_of_several_events_in(format: fundledger::log::StoreFormat) {
    use fundledger::log::{EventLog, LogError, RequestRecord};
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open_with(dir.path(), format).unwrap();
    let entries = [entry("a", 1, vec![event("s/1"), event("s/2"), event("s/1")]), entry("b", 2, vec![event("s/2")])];
    log.append(1, &entries).unwrap();
    // The log keeps a command as its events: one without any is refused,
    // and nothing of its batch is written.
    let refused = log.append(2, &[entry("c", 3, vec![event("s/3")]), entry("empty", 4, vec![])]);
    assert!(matches!(refused, Err(LogError::EmptyEntry { ref request_id }) if request_id == "empty"), "{refused:?}");
    assert_eq!(log.head_seq(), 4);
    drop(log);
    // No index was stored (no checkpoint was taken): rebuilt from the log.
    let mut log = support::open_retrying(|| EventLog::open(dir.path()).map_err(|e| e.to_string()));
    assert_eq!(log.index_stored_seq(), Some(0));
    let reader = log.reader();
    assert_eq!(reader.request("a").unwrap(), Some(RequestRecord { fingerprint: [1; 32], first_seq: 1, count: 3 }));
    assert_eq!(reader.request("b").unwrap(), Some(RequestRecord { fingerprint: [2; 32], first_seq: 4, count: 1 }));
    assert_eq!(reader.request("c").unwrap(), None);
    assert_eq!(reader.stream_entries("s/1", 1, 10).unwrap(), [(1, 1), (2, 3)]);
    assert_eq!(reader.stream_entries("s/2", 1, 10).unwrap(), [(1, 2), (2, 4)]);
    assert_eq!((log.stream_version("s/1").unwrap(), log.stream_version("s/3").unwrap()), (2, 0));
    assert_eq!(log.format(), format);
}

/// A batch written and not yet durable (the writer syncs a large group
/// commit on another thread while it writes the next): the next batch
/// chains to it and its streams' versions go on from it, but the durable
/// head, the index and the requests move only once it is made durable, in
/// order.
#[test]
fn a_batch_written_behind_one_not_yet_durable_chains_to_it_and_is_indexed_only_once_durable() {
    use fundledger::log::{EventLog, RequestRecord, StoreFormat};
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open_with(dir.path(), format).unwrap();
        let first = [entry("a", 1, vec![event("s/1"), event("s/2")])];
        let first_envelopes = log.write(1, &first).unwrap();
        assert_eq!(log.head_seq(), 0, "{format:?}: written is not durable");
        assert_eq!(log.stream_version("s/1").unwrap(), 1, "{format:?}: versions count what is written");
        let second = [entry("b", 2, vec![event("s/1")])];
        let second_envelopes = log.write(2, &second).unwrap();
        let b = &second_envelopes[0][0];
        assert_eq!((b.seq, b.stream_version), (3, 2), "{format:?}");
        assert_eq!(b.prev_hash, first_envelopes[0][1].hash, "{format:?}: chained to the batch written before");
        log.syncer().sync().unwrap();
        log.made_durable(&first, &first_envelopes);
        assert_eq!(log.head_seq(), 2, "{format:?}");
        log.made_durable(&second, &second_envelopes);
        assert_eq!(log.head_seq(), 3, "{format:?}");
        assert_eq!(log.stream_version("s/1").unwrap(), 2, "{format:?}");
        let reader = log.reader();
        assert_eq!(reader.request("a").unwrap(), Some(RequestRecord { fingerprint: [1; 32], first_seq: 1, count: 2 }));
        assert_eq!(reader.request("b").unwrap(), Some(RequestRecord { fingerprint: [2; 32], first_seq: 3, count: 1 }));
        assert_eq!(reader.stream_entries("s/1", 1, 10).unwrap(), [(1, 1), (2, 3)], "{format:?}");
        drop((reader, log));
        let log = support::open_retrying(|| EventLog::open(dir.path()).map_err(|e| e.to_string()));
        assert_eq!(log.head_seq(), 3, "{format:?}");
        assert_eq!(log.reader().verify().unwrap().events, 3, "{format:?}");
    }
}

/// Stored format v4 keeps up to `CHUNK_RECORDS` records of one append under
/// one key. Whatever the chunks, the log reads as one record per event:
/// every range, every single event, the head after a restart, a command
/// whose events span two chunks.
#[test]
fn a_v4_log_reads_its_chunks_as_one_event_after_the_other() {
    use fundledger::log::{Entry, EventLog, NewEvent, RequestRecord, StoreFormat, CHUNK_RECORDS};
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0u64;
    let mut entry = |id: String, events: u64| {
        let events = (0..events)
            .map(|_| {
                n += 1;
                NewEvent {
                    stream: format!("s/{}", n % 3),
                    event_type: "Opaque".into(),
                    schema_version: 1,
                    payload: n.to_be_bytes().to_vec(),
                }
            })
            .collect();
        Entry { request_id: id, fingerprint: [7; 32], actor: "someone".into(), events }
    };
    let mut log = EventLog::open_with(dir.path(), StoreFormat::V4).unwrap();
    // Appends of 1, 3, 8, 9, 17 and 2 events, in commands of 1 to 5:
    // chunks full and partial, commands across chunk boundaries.
    let appends = [vec![1], vec![3], vec![5, 3], vec![4, 5], vec![5, 5, 5, 2], vec![2]];
    let mut commands = Vec::new();
    for (append, sizes) in appends.into_iter().enumerate() {
        let entries: Vec<Entry> =
            sizes.iter().enumerate().map(|(at, &size)| entry(format!("c-{append}-{at}"), size)).collect();
        let mut seq = log.head_seq() + 1;
        log.append(append as i64 + 1, &entries).unwrap();
        for e in &entries {
            commands.push((e.request_id.clone(), seq, e.events.len() as u32));
            seq += e.events.len() as u64;
        }
    }
    let head = log.head_seq();
    assert_eq!(head, 40);
    let check = |log: &EventLog| {
        let reader = log.reader();
        assert_eq!(reader.last_seq().unwrap(), head);
        let all = reader.read(1, head, usize::MAX).unwrap();
        assert_eq!(all.iter().map(|(e, _)| e.seq).collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>());
        for (envelope, payload) in &all {
            assert_eq!(payload, &envelope.seq.to_be_bytes(), "event {}", envelope.seq);
            assert_eq!(reader.get(envelope.seq).unwrap().as_ref(), Some(&(envelope.clone(), payload.clone())));
        }
        for from in 0..=head + 1 {
            for to in from.saturating_sub(1)..=head + 1 {
                let read: Vec<u64> = reader.read(from, to, usize::MAX).unwrap().iter().map(|(e, _)| e.seq).collect();
                let expected: Vec<u64> = (from.max(1)..=to.min(head)).collect();
                assert_eq!(read, expected, "read({from}, {to})");
            }
            let limited: Vec<u64> = reader.read(from, head, 3).unwrap().iter().map(|(e, _)| e.seq).collect();
            assert_eq!(limited, (from.max(1)..=head).take(3).collect::<Vec<_>>(), "read({from}, …, 3)");
        }
        assert_eq!(reader.get(head + 1).unwrap(), None);
        for (id, first_seq, count) in &commands {
            let found = reader.request(id).unwrap();
            assert_eq!(
                found,
                Some(RequestRecord { fingerprint: [7; 32], first_seq: *first_seq, count: *count }),
                "{id}"
            );
        }
        assert_eq!(reader.verify().unwrap().events, head);
    };
    check(&log);
    drop(log);
    // Each append in chunks of up to CHUNK_RECORDS (8): 1, 3, 8, 8 + 1,
    // 8 + 8 + 1 and 2 records, 9 keys.
    assert_eq!(CHUNK_RECORDS, 8);
    let db = support::open_retrying(|| fundledger::log::sled_config(dir.path()).open().map_err(|e| e.to_string()));
    assert_eq!(db.scan_prefix(b"e").count(), 9);
    drop(db);
    // After a restart: the head read back from the last chunk, the index
    // rebuilt from the chunks.
    let mut log = support::open_retrying(|| EventLog::open(dir.path()).map_err(|e| e.to_string()));
    assert_eq!((log.format(), log.head_seq()), (StoreFormat::V4, head));
    check(&log);
    log.append(99, &[entry("after".into(), 1)]).unwrap();
    let reader = log.reader();
    assert_eq!(reader.get(head + 1).unwrap().unwrap().0.prev_hash, reader.get(head).unwrap().unwrap().0.hash);
}

/// A v4 chunk that cannot be cut into records is found at the record where
/// it breaks: reads before it still work, a walk stops there; and a last
/// chunk without records refuses the log's open (were it taken for an
/// empty log, the next append would write over its first events).
#[test]
fn a_v4_chunk_that_cannot_be_cut_is_found_where_it_breaks() {
    use fundledger::log::{Entry, EventLog, LogError, LogReader, NewEvent, StoreFormat};
    let dir = tempfile::tempdir().unwrap();
    let entry = |id: &str, events: usize| Entry {
        request_id: id.into(),
        fingerprint: [1; 32],
        actor: "someone".into(),
        events: (0..events)
            .map(|_| NewEvent {
                stream: "s/1".into(),
                event_type: "Opaque".into(),
                schema_version: 1,
                payload: vec![1, 2, 3],
            })
            .collect(),
    };
    let mut log = EventLog::open_with(dir.path(), StoreFormat::V4).unwrap();
    log.append(1, &[entry("a", 3)]).unwrap(); // events 1 to 3, under e ‖ 1
    log.append(2, &[entry("b", 2)]).unwrap(); // events 4 and 5, under e ‖ 4
    drop(log);
    let key = |seq: u64| [&b"e"[..], &seq.to_be_bytes()].concat();
    let with_db = |change: &dyn Fn(&sled::Db)| {
        let db = support::open_retrying(|| fundledger::log::sled_config(dir.path()).open().map_err(|e| e.to_string()));
        change(&db);
        db.flush().unwrap();
    };
    // The first chunk loses its last byte: event 3's frame no longer fits.
    with_db(&|db| {
        let chunk = db.get(key(1)).unwrap().unwrap();
        db.insert(key(1), &chunk[..chunk.len() - 1]).unwrap();
    });
    let reader = support::open_retrying(|| LogReader::open_existing(dir.path()).map_err(|e| e.to_string()));
    assert_eq!(reader.read(1, 2, usize::MAX).unwrap().len(), 2, "the records before it read");
    assert!(matches!(reader.read(1, 5, usize::MAX), Err(LogError::Corrupt { seq: 3, .. })));
    assert!(matches!(reader.get(3), Err(LogError::Corrupt { seq: 3, .. })));
    assert_eq!(reader.get(4).unwrap().unwrap().0.seq, 4, "the next chunk reads on its own");
    let walked: Vec<_> = reader.walk(5).collect();
    assert_eq!(walked.len(), 3);
    assert!(matches!(&walked[2], Err(fundledger::log::WalkError::Broken(broken)) if broken.seq == 3), "{walked:?}");
    assert_eq!(reader.last_seq().unwrap(), 5);
    drop((reader, walked));

    // The last chunk emptied: the log does not open.
    with_db(&|db| {
        db.insert(key(4), &[][..]).unwrap();
    });
    let refused = support::open_retrying(|| match EventLog::open(dir.path()) {
        Err(LogError::InUse { .. }) => Err("in use".to_owned()),
        other => Ok(other),
    });
    assert!(
        matches!(refused, Err(LogError::Corrupt { seq: 4, ref problem }) if problem.contains("no record")),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn a_start_removes_an_index_file_left_unfinished_and_keeps_the_stored_one() {
    use fundledger::log::{EventLog, LOG_INDEX_FILE};
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = six_events_then_shut_down(dir.path()).await;
    // What a process killed while storing the index leaves beside it.
    let unfinished = dir.path().join(format!("{LOG_INDEX_FILE}.new"));
    std::fs::write(&unfinished, b"half an index").unwrap();
    let log = support::open_retrying(|| EventLog::open(dir.path()).map_err(|e| e.to_string()));
    assert!(!unfinished.exists(), "the unfinished file is removed");
    assert_eq!(log.index_stored_seq(), Some(6), "the stored index, whole, is used");
}
