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
//! `examples/make_upgrade_fixture.rs` made the fixture once; it refuses to
//! overwrite it.

mod support;

use fundledger::domain::{ApplicationId, ApplicationStatus, Event, PartnerId, PotKey, PrincipalId, RoundId};
use fundledger::ledger::{Ledger, LedgerConfig};
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
