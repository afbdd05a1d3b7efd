//! Upgrade safety: a ledger written by fundledger 0.1.0, committed under
//! `tests/fixtures/ledger-v1/`, must be read by every later version.
//!
//! The fixture holds sled's files as this version left them (see
//! `tests/fixtures/README.md`). Each test works on a private copy, because
//! sled writes to a database as it opens it. The figures below were read
//! from the fixture when it was made; a change that cannot read old events
//! (a new variant in the middle of `Event`, a changed field, another codec
//! configuration, a new key layout) breaks one of them.
//!
//! `generate_the_fixture` (ignored) made the fixture once; it refuses to
//! overwrite it.

mod support;

use fundledger::api::auth;
use fundledger::domain::{
    Applicant, ApplicationId, ApplicationStatus, Command, Currency, Date, Event, MoneyInput, PartnerId, PotKey,
    PrincipalId, Role, RoundId,
};
use fundledger::ledger::{CommandRequest, Ledger, LedgerConfig};
use fundledger::log::codec;
use fundledger::projections::{decode_event, Projections};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger-v1")
}

// ------------------------------------------------------- what it must hold

/// Events in the fixture.
const EVENTS: u64 = 33;
/// The hash of its last event.
const HEAD_HASH: &str = "08f0876a77bd62ed1df42fdc1d2e5b311ffc1c7aba4ef8fb40f22556a4189d29";
/// Partner `porticus`'s unrestricted pot, in euro cents: EUR 40,000
/// received; awarded app-1 8,000 reduced by 1,000, app-2 12,000 settled at
/// 5,000, app-5 5,000 withdrawn: EUR 28,000 available.
const PORTICUS_RECEIVED_MINOR: i64 = 4_000_000;
const PORTICUS_AVAILABLE_MINOR: i64 = 2_800_000;
/// Event 6 (`PartnerAdmitted`) as stored: the record, byte for byte, in
/// hex: format version, previous hash, hash, then the bincode body.
const GOLDEN_RECORD_SEQ: u64 = 6;
const GOLDEN_RECORD_HEX: &str = concat!(
    "01",
    "e6881f8d65ac8d381f89b262efe07b9e475ccbd42a45018d9047f77f4d30d9ff",
    "1cd518ca66d0e35a9baf3f94e70debf72e55a0e38a7f21a4407b36a3a058c9ed",
    "0600000000000000100000000000000070617274",
    "6e65722f706f72746963757301000000000000000f00000000000000506172746e657241646d69747465640100255c15c76361060005000000",
    "0000000061646d696e0e0000000000000061646d69742d706f7274696375733b00000000000000010000000800000000000000706f727469",
    "6375730800000000000000506f7274696375730f000000000000004e4c2d4b564b2d3431313938373436",
);
/// Every event type, in the order the fixture first records it.
const EVENT_TYPES: [&str; 22] = [
    "AccessGranted",
    "FundOpened",
    "PartnerAdmitted",
    "ContributionPledged",
    "PledgeReduced",
    "ContributionReceived",
    "RoundOpened",
    "ApprovalThresholdsSet",
    "ApplicationSubmitted",
    "ApplicationWithdrawn",
    "ApplicationRejected",
    "GrantAwarded",
    "AwardProposed",
    "PaymentMade",
    "PaymentProposed",
    "GrantReduced",
    "RefundReceived",
    "GrantSettled",
    "ConflictDeclared",
    "GrantWithdrawn",
    "RoundClosed",
    "AccessRevoked",
];

// ---------------------------------------------------------------- the tests

/// A private copy of the fixture. git does not keep file modes, and the
/// ledger refuses a secret key that others may read: the copy's is 0600.
fn copy_of_fixture() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), copy.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let secret = copy.path().join(fundledger::audit::key::SECRET_KEY_FILE);
        std::fs::set_permissions(secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    copy
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn the_v1_fixture_opens_decodes_verifies_and_replays_to_the_same_figures() {
    let copy = copy_of_fixture();
    let ledger = Ledger::open(LedgerConfig::new(copy.path())).expect("the v1 fixture opens");
    let reader = ledger.log_reader();

    // Every event decodes, and every event type is there.
    let events = reader.read(1, u64::MAX, usize::MAX).unwrap();
    assert_eq!(events.len() as u64, EVENTS);
    let mut first_seen: Vec<String> = Vec::new();
    for (envelope, payload) in &events {
        let event = decode_event(envelope, payload).unwrap_or_else(|e| panic!("event {}: {e}", envelope.seq));
        assert_eq!(event.type_name(), envelope.event_type, "event {}", envelope.seq);
        if !first_seen.contains(&envelope.event_type) {
            first_seen.push(envelope.event_type.clone());
        }
    }
    assert_eq!(first_seen, EVENT_TYPES);

    // The chain verifies, up to the same head.
    let report = reader.verify().unwrap();
    assert_eq!((report.events, hex::encode(report.head_hash)), (EVENTS, HEAD_HASH.to_owned()));

    // The projections (loaded from the stored checkpoint) equal a replay.
    let replayed = Projections::replay(&reader, EVENTS).unwrap();
    assert_eq!(replayed.encoded(), ledger.projections().encoded());
    assert_eq!(hex::encode(ledger.projections().head_hash), HEAD_HASH);

    // A few figures, exactly.
    let state = ledger.projections().state.clone();
    let porticus = &state.pots[&PotKey { partner: PartnerId::new("porticus").unwrap(), earmark: None }];
    assert_eq!(porticus.received.minor(), PORTICUS_RECEIVED_MINOR);
    assert_eq!(porticus.available().minor(), PORTICUS_AVAILABLE_MINOR);
    let status = |app: &str| state.applications[&ApplicationId::new(app).unwrap()].status;
    assert_eq!(
        ["app-1", "app-2", "app-3", "app-4", "app-5"].map(status),
        [
            ApplicationStatus::Awarded,
            ApplicationStatus::Awarded,
            ApplicationStatus::Withdrawn,
            ApplicationStatus::Rejected,
            ApplicationStatus::Awarded
        ]
    );
    assert!(state.rounds[&RoundId::new("r1").unwrap()].closed_on.is_some());
    assert!(state.principals[&PrincipalId::new(support::AUDITOR).unwrap()].revoked);
    ledger.shutdown().await;
}

#[test]
fn a_stored_record_of_the_v1_fixture_has_the_golden_bytes() {
    let copy = copy_of_fixture();
    let reader = fundledger::log::LogReader::open_existing(copy.path()).unwrap();
    let (envelope, payload) = reader.get(GOLDEN_RECORD_SEQ).unwrap().unwrap();
    // Rebuilt from its parts with this version's codec, the record is the
    // same, byte for byte, as the one written by 0.1.0.
    let body = codec::RecordBody {
        seq: envelope.seq,
        stream: envelope.stream.clone(),
        stream_version: envelope.stream_version,
        event_type: envelope.event_type.clone(),
        schema_version: envelope.schema_version,
        recorded_at_micros: envelope.recorded_at_micros,
        actor: envelope.actor.clone(),
        request_id: envelope.request_id.clone(),
        payload: payload.clone(),
    };
    let (record, hash) = codec::encode_record(&envelope.prev_hash, &body);
    assert_eq!(hex::encode(&record), GOLDEN_RECORD_HEX);
    assert_eq!(hash, envelope.hash);
    let event: Event = codec::decode(&payload).unwrap();
    let expected = Event::PartnerAdmitted {
        partner: PartnerId::new("porticus").unwrap(),
        name: "Porticus".into(),
        organisation_id: "NL-KVK-41198746".into(),
    };
    assert_eq!(event, expected);
    assert_eq!(codec::encode(&event), payload);
}

#[test]
fn the_binary_verifies_the_v1_fixture() {
    // `verify` reads a copy of the directory it is given; the fixture
    // itself is never opened by sled.
    let copy = copy_of_fixture();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundledger"))
        .args(["verify", "--json", "--data-dir"])
        .arg(copy.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verified"], true, "{stdout}");
    assert_eq!(report["headHash"], HEAD_HASH, "{stdout}");
    assert_eq!(report["events"].as_str().map(str::to_owned), Some(EVENTS.to_string()), "{stdout}");
}

// -------------------------------------------------------------- the maker

fn eur(value: &str) -> MoneyInput {
    MoneyInput::parse(value, "EUR").unwrap()
}

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn app(id: &str) -> ApplicationId {
    ApplicationId::new(id).unwrap()
}

/// As `actor` (a principal of the cast in `tests/support`).
fn by(actor: &str, role: Role, id: &str, command: Command) -> CommandRequest {
    let actor = fundledger::domain::Actor { principal: PrincipalId::new(actor).unwrap(), role };
    CommandRequest { command, request_id: id.into(), expected_version: None, actor }
}

/// Every command the fixture records after `init_admin`, in order. The
/// tokens are fixed (their hashes are what is stored), so that a test may
/// one day call the fixture's ledger through the API.
fn fixture_commands() -> Vec<CommandRequest> {
    use support::request;
    let grant = |id: &str, principal: &str, role: Role| {
        request(
            id,
            Command::GrantAccess {
                principal: PrincipalId::new(principal).unwrap(),
                role,
                token_sha256: auth::token_sha256(&format!("fixture-token-{principal}")),
            },
        )
    };
    let porticus = PartnerId::new("porticus").unwrap();
    let r1 = RoundId::new("r1").unwrap();
    let submit = |n: u32, amount: &str| {
        request(
            &format!("submit-{n}"),
            Command::SubmitApplication {
                application: app(&format!("app-{n}")),
                round: r1.clone(),
                applicant: Applicant {
                    name: format!("Bewonersgroep {n}"),
                    organisation_id: String::new(),
                    place: "Willemstad".into(),
                    country: "CW".into(),
                },
                title: "Dialoogtafels".into(),
                description: String::new(),
                amount_requested: eur(amount),
                submitted_on: date("2024-02-15"),
            },
        )
    };
    let bram = |id: &str, command| by(support::SECOND_OFFICER, Role::Officer, id, command);
    vec![
        grant("grant-anna", support::OFFICER, Role::Officer),
        grant("grant-bram", support::SECOND_OFFICER, Role::Officer),
        grant("grant-carla", support::AUDITOR, Role::Auditor),
        request("open", Command::OpenFund { name: "Loket D".into(), currency: Currency::eur() }),
        request(
            "admit-porticus",
            Command::AdmitPartner {
                partner: porticus.clone(),
                name: "Porticus".into(),
                organisation_id: "NL-KVK-41198746".into(),
            },
        ),
        grant("grant-porticus", &support::treasurer("porticus"), Role::Partner(porticus.clone())),
        request(
            "pledge",
            Command::PledgeContribution {
                partner: porticus.clone(),
                amount: eur("50000.00"),
                earmark: None,
                pledged_on: date("2024-01-10"),
            },
        ),
        request(
            "reduce-pledge",
            Command::ReducePledge {
                partner: porticus.clone(),
                amount: eur("10000.00"),
                earmark: None,
                reason: "budget cut".into(),
                reduced_on: date("2024-01-15"),
            },
        ),
        request(
            "receipt",
            Command::RecordReceipt {
                partner: porticus.clone(),
                amount: eur("40000.00"),
                earmark: None,
                value_date: date("2024-01-20"),
                bank_reference: "NL91 receipt".into(),
            },
        ),
        request(
            "open-r1",
            Command::OpenRound {
                round: r1.clone(),
                name: "Round 1".into(),
                budget_ceiling: eur("100000"),
                grant_max: eur("15000"),
                opens_on: date("2024-02-01"),
                closes_on: date("2024-03-31"),
            },
        ),
        request(
            "thresholds",
            Command::SetApprovalThresholds {
                round: r1.clone(),
                award_above: Some(eur("10000.00")),
                payment_above: Some(eur("5000.00")),
            },
        ),
        submit(1, "8000.00"),
        submit(2, "12000.00"),
        submit(3, "3000.00"),
        submit(4, "3000.00"),
        submit(5, "5000.00"),
        request(
            "withdraw-3",
            Command::WithdrawApplication {
                application: app("app-3"),
                reason: "applied twice".into(),
                withdrawn_on: date("2024-03-01"),
            },
        ),
        request(
            "reject-4",
            Command::RejectApplication {
                application: app("app-4"),
                reason: "outside the call".into(),
                decided_on: date("2024-04-10"),
            },
        ),
        request(
            "award-1",
            Command::AwardGrant {
                application: app("app-1"),
                amount: eur("8000.00"),
                reason: "fits the call".into(),
                decided_on: date("2024-04-10"),
            },
        ),
        request(
            "propose-award-2",
            Command::ProposeAward {
                application: app("app-2"),
                amount: eur("12000.00"),
                reason: "fits the call".into(),
                proposed_on: date("2024-04-10"),
            },
        ),
        bram("approve-award-2", Command::ApproveAward { application: app("app-2"), decided_on: date("2024-04-11") }),
        request(
            "pay-1",
            Command::MakePayment {
                application: app("app-1"),
                amount: eur("4000.00"),
                value_date: date("2024-05-01"),
                bank_reference: "PAY-1".into(),
            },
        ),
        request(
            "propose-pay-2",
            Command::ProposePayment {
                application: app("app-2"),
                amount: eur("6000.00"),
                value_date: date("2024-05-01"),
                bank_reference: "PAY-2".into(),
            },
        ),
        bram("approve-pay-2", Command::ApprovePayment { application: app("app-2") }),
        request(
            "reduce-1",
            Command::ReduceGrant {
                application: app("app-1"),
                amount: eur("1000.00"),
                reason: "smaller venue".into(),
                decided_on: date("2024-06-01"),
            },
        ),
        request(
            "refund-2",
            Command::RecordRefund {
                application: app("app-2"),
                amount: eur("1000.00"),
                value_date: date("2024-07-01"),
                bank_reference: "REFUND-2".into(),
            },
        ),
        request(
            "settle-2",
            Command::SettleGrant {
                application: app("app-2"),
                final_amount: eur("5000.00"),
                reason: "final report".into(),
                decided_on: date("2024-09-01"),
            },
        ),
        bram(
            "conflict-5",
            Command::DeclareConflict {
                application: app("app-5"),
                reason: "board member of the applicant".into(),
                declared_on: date("2024-04-01"),
            },
        ),
        request(
            "award-5",
            Command::AwardGrant {
                application: app("app-5"),
                amount: eur("5000.00"),
                reason: "fits the call".into(),
                decided_on: date("2024-04-12"),
            },
        ),
        request(
            "withdraw-grant-5",
            Command::WithdrawGrant {
                application: app("app-5"),
                reason: "the project did not start".into(),
                decided_on: date("2024-10-01"),
            },
        ),
        request("close-r1", Command::CloseRound { round: r1.clone(), closed_on: date("2024-12-31") }),
        request(
            "revoke-carla",
            Command::RevokeAccess {
                principal: PrincipalId::new(support::AUDITOR).unwrap(),
                reason: "audit done".into(),
            },
        ),
    ]
}

/// Makes the fixture: `cargo test --test upgrade -- --ignored generate_the_fixture`.
/// Run once, by 0.1.0; never again (see `tests/fixtures/README.md`).
#[tokio::test]
#[ignore = "makes tests/fixtures/ledger-v1 once; it must never be regenerated"]
async fn generate_the_fixture() {
    let target = fixture();
    assert!(!target.exists(), "{} exists: a fixture is never regenerated, only added to", target.display());
    let building = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(building.path())).unwrap();
    auth::init_admin(&ledger, PrincipalId::new(support::ADMIN).unwrap()).await.unwrap();
    for command in fixture_commands() {
        let id = command.request_id.clone();
        ledger.submit(command).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    assert_eq!(ledger.head_seq(), EVENTS);
    // Stopped as a server stops: the projections' checkpoint is stored.
    ledger.shutdown().await;
    drop(ledger);
    // sled's files and the key pair; sled makes `blobs/` again when it is
    // missing (and holds no blobs for records this small).
    copy_dir(building.path(), &target);
}
