//! Upgrade safety: a ledger written in each stored format, committed under
//! `tests/fixtures/ledger-v1/` (fundledger 0.1.0), `ledger-v2/`,
//! `ledger-v3/` and `ledger-v4/`, must be read by every later version; a
//! v1 ledger is upgraded to v2 in place.
//!
//! A fixture holds sled's files as its version left them (see
//! `tests/fixtures/README.md`). Each test works on a private copy, because
//! sled writes to a database as it opens it. The figures below were read
//! from the fixture when it was made; a change that cannot read old events
//! (a new variant in the middle of `Event`, a changed field, another codec
//! configuration, a new key layout) breaks one of them.
//!
//! `examples/make_upgrade_fixture.rs` made each fixture once; it refuses to
//! overwrite one.

mod support;

use fundledger::domain::{
    ApplicationId, ApplicationStatus, Command, Date, Event, MoneyInput, PartnerId, PotKey, PrincipalId, RoundId,
};
use fundledger::ledger::{Ledger, LedgerConfig};
use fundledger::log::{codec, EventLog};
use fundledger::projections::{decode_event, Loaded, Projections};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

// ------------------------------------------------------- what it must hold

/// Events in each fixture: the same commands (`make_upgrade_fixture`).
const EVENTS: u64 = 33;
/// The hash of the v1 fixture's last event.
const HEAD_HASH: &str = "08f0876a77bd62ed1df42fdc1d2e5b311ffc1c7aba4ef8fb40f22556a4189d29";
/// The v2 fixture's: the same events, recorded at other times.
const HEAD_HASH_V2: &str = "d711e811774b96a33ffbefb556678b2850c0e207ccf6eabbbef4b2ac11b7e2b3";
/// The v3 fixture's: the same events again, each record carrying its
/// command's fingerprint.
const HEAD_HASH_V3: &str = "097c9682cdfd9385ee822d53930fa74cd674015905d3581770f5dae5d2d61b4d";
/// The v4 fixture's: the same events again, recorded in batches of ten
/// commands, so that its keys hold up to eight records each.
const HEAD_HASH_V4: &str = "fe8e67a6ab2cc2f20242496dd200acb77a400a2712b47d307c56f603a91705c3";
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
fn copy_of_fixture(name: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&fixture(name), copy.path());
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
    // Its checkpoint (format 2, inside sled) has no checksum: replayed.
    let how = Loaded::Replayed { reason: fundledger::projections::CHECKPOINT_OLDER_FORMAT };
    opens_decodes_verifies_and_replays("ledger-v1", HEAD_HASH, how).await;
}

#[tokio::test]
async fn the_v2_fixture_opens_decodes_verifies_and_replays_to_the_same_figures() {
    // Its checkpoint (layout 3: the applications not yet in chunks) is of an
    // older format now: replayed, and replaced.
    let how = Loaded::Replayed { reason: fundledger::projections::CHECKPOINT_OLDER_FORMAT };
    opens_decodes_verifies_and_replays("ledger-v2", HEAD_HASH_V2, how).await;
}

#[tokio::test]
async fn the_v3_fixture_opens_decodes_verifies_and_replays_to_the_same_figures() {
    // Its checkpoint is of the current layout: loaded as stored.
    let how = Loaded::FromCheckpoint { checkpoint_seq: EVENTS };
    opens_decodes_verifies_and_replays("ledger-v3", HEAD_HASH_V3, how).await;
}

#[tokio::test]
async fn the_v4_fixture_opens_decodes_verifies_and_replays_to_the_same_figures() {
    let how = Loaded::FromCheckpoint { checkpoint_seq: EVENTS };
    opens_decodes_verifies_and_replays("ledger-v4", HEAD_HASH_V4, how).await;
}

/// Every record of the v3 and v4 fixtures, rebuilt from its parts with
/// this version's codec (record format 2: the body, then the command's
/// fingerprint), has the hash it was stored with; and its stored log index
/// is loaded as it is, with the command of each request id found.
#[test]
fn the_v3_and_v4_fixtures_records_and_index_read_as_written() {
    use fundledger::log::StoreFormat;
    for (name, format) in [("ledger-v3", StoreFormat::V3), ("ledger-v4", StoreFormat::V4)] {
        records_and_index_read_as_written(name, format);
    }
    // The v4 fixture's keys hold several records: its 33 events are in 8
    // keys (the first admin's access alone, then each batch of ten
    // commands in chunks of up to eight records).
    let copy = copy_of_fixture("ledger-v4");
    let db = fundledger::log::sled_config(copy.path()).open().unwrap();
    assert_eq!(db.scan_prefix(b"e").count(), 8);
}

fn records_and_index_read_as_written(name: &str, format: fundledger::log::StoreFormat) {
    let copy = copy_of_fixture(name);
    let log = EventLog::open(copy.path()).unwrap();
    assert_eq!(log.format(), format);
    assert_eq!(log.index_stored_seq(), Some(EVENTS), "the stored index is trusted and used");
    let reader = log.reader();
    for (envelope, payload) in reader.read(1, EVENTS, usize::MAX).unwrap() {
        let fingerprint = envelope.fingerprint.expect("record format 2");
        let (record, hash) = codec::encode_record_v2(&envelope.prev_hash, &envelope.body(&payload), &fingerprint);
        assert_eq!((record[0], hash), (codec::RECORD_FORMAT_V2, envelope.hash), "event {}", envelope.seq);
        let command = reader.request(&envelope.request_id).unwrap().expect("every command is found");
        assert_eq!((command.first_seq, command.fingerprint), (envelope.seq, fingerprint));
        let entries = reader.stream_entries(&envelope.stream, envelope.stream_version, 1).unwrap();
        assert_eq!(entries, [(envelope.stream_version, envelope.seq)]);
    }
}

async fn opens_decodes_verifies_and_replays(name: &str, head_hash: &str, how: Loaded) {
    let copy = copy_of_fixture(name);
    let ledger = Ledger::open(LedgerConfig::new(copy.path())).unwrap_or_else(|e| panic!("{name} opens: {e}"));
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
    assert_eq!((report.events, hex::encode(report.head_hash)), (EVENTS, head_hash.to_owned()));

    // The projections (from the stored checkpoint if it can be trusted)
    // equal a replay.
    assert_eq!(Projections::load(&reader, EVENTS).unwrap().1, how);
    let replayed = Projections::replay(&reader, EVENTS).unwrap();
    assert_eq!(replayed.encoded(), ledger.projections().encoded());
    assert_eq!(hex::encode(ledger.projections().head_hash), head_hash);

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

#[tokio::test]
async fn opening_a_v1_ledger_upgrades_it_to_v2_in_place() {
    let copy = copy_of_fixture("ledger-v1");
    // What v1 kept as stream heads (`v ‖ stream` -> version), read with sled.
    let heads: HashMap<String, u64> = {
        let db = fundledger::log::sled_config(copy.path()).open().unwrap();
        assert_eq!(db.get(b"m/format").unwrap().unwrap().as_ref(), b"fundledger-log-v1");
        let heads = db.scan_prefix(b"v").map(|item| {
            let (key, value) = item.unwrap();
            (String::from_utf8(key[1..].to_vec()).unwrap(), u64::from_be_bytes(value.as_ref().try_into().unwrap()))
        });
        heads.collect()
    };
    assert!(heads.len() > 10 && heads.contains_key("partner/porticus"), "{heads:?}");

    // Opened, it takes a command on an existing stream at the next version.
    // sled lets go of its directory lock a moment after the handle above
    // is dropped.
    let ledger = support::reopen(LedgerConfig::new(copy.path()));
    let pledge = Command::PledgeContribution {
        partner: PartnerId::new("porticus").unwrap(),
        amount: MoneyInput::parse("10.00", "EUR").unwrap(),
        earmark: None,
        pledged_on: Date::parse("2024-06-01").unwrap(),
    };
    let outcome = ledger.submit(support::request("after-upgrade", pledge)).await.unwrap();
    let envelope = &outcome.events[0].envelope;
    assert_eq!((envelope.seq, envelope.stream.as_str()), (EVENTS + 1, "partner/porticus"));
    assert_eq!(envelope.stream_version, heads["partner/porticus"] + 1);
    let report = ledger.log_reader().verify().unwrap();
    assert_eq!(report.events, EVENTS + 1);
    ledger.shutdown().await;
    drop(ledger);

    // The log is marked v2, its heads are gone, and every stream's version
    // (now its last index entry) is what v1 stored, porticus one on.
    let mut log = support::open_retrying(|| EventLog::open(copy.path()).map_err(|e| e.to_string()));
    for (stream, &version) in &heads {
        let expected = version + u64::from(stream == "partner/porticus");
        assert_eq!(log.stream_version(stream).unwrap(), expected, "{stream}");
    }
    assert_eq!(log.stream_version("application/never-submitted").unwrap(), 0);
    drop(log);
    let db = support::open_retrying(|| fundledger::log::sled_config(copy.path()).open().map_err(|e| e.to_string()));
    assert_eq!(db.get(b"m/format").unwrap().unwrap().as_ref(), fundledger::log::STORE_FORMAT);
    assert_eq!(db.scan_prefix(b"v").count(), 0, "v1's stream heads are removed");
}

#[test]
fn a_stored_record_of_the_v1_fixture_has_the_golden_bytes() {
    let copy = copy_of_fixture("ledger-v1");
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
fn the_binary_verifies_every_fixture() {
    let fixtures = [
        ("ledger-v1", HEAD_HASH),
        ("ledger-v2", HEAD_HASH_V2),
        ("ledger-v3", HEAD_HASH_V3),
        ("ledger-v4", HEAD_HASH_V4),
    ];
    for (name, head_hash) in fixtures {
        binary_verifies(name, head_hash);
    }
}

fn binary_verifies(name: &str, head_hash: &str) {
    // `verify` reads a copy of the directory it is given; the fixture
    // itself is never opened by sled.
    let copy = copy_of_fixture(name);
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
    assert_eq!(report["headHash"], head_hash, "{stdout}");
    assert_eq!(report["events"].as_str().map(str::to_owned), Some(EVENTS.to_string()), "{stdout}");
}

// -------------------------------------------------------------- the maker

/// A v1 ledger kept its (older-layout) checkpoint inside sled. Once this
/// version has stored a checkpoint file, it removes that key and syncs the
/// log: a failure of that sync stops the writer like any storage failure
/// (nothing is synced again, fsyncgate), while what was acknowledged
/// before stays in the log. Without a failure, the key is gone after a run.
#[tokio::test]
async fn removing_v1s_checkpoint_from_sled_syncs_the_log_and_a_failure_stops_the_writer() {
    use fundledger::log::faults::{FaultPlan, Persistence, StorageOp};
    let pledge = |id: &str, amount: &str| {
        let command = Command::PledgeContribution {
            partner: PartnerId::new("porticus").unwrap(),
            amount: MoneyInput::parse(amount, "EUR").unwrap(),
            earmark: None,
            pledged_on: Date::parse("2024-06-01").unwrap(),
        };
        support::request(id, command)
    };
    let legacy_key = |dir: &Path| {
        let db = support::open_retrying(|| fundledger::log::sled_config(dir).open().map_err(|e| e.to_string()));
        db.get(b"m/checkpoint").unwrap().is_some()
    };

    // No failure: the in-sled checkpoint is gone once a file replaced it.
    let copy = copy_of_fixture("ledger-v1");
    assert!(legacy_key(copy.path()), "the v1 fixture keeps its checkpoint inside sled");
    let ledger = support::reopen(LedgerConfig { checkpoint_events_interval: 1, ..LedgerConfig::new(copy.path()) });
    ledger.submit(pledge("p1", "1.00")).await.unwrap();
    ledger.shutdown().await;
    drop(ledger);
    assert!(!legacy_key(copy.path()), "removed after the run that stored a checkpoint file");

    // The removal's fsync fails.
    let copy = copy_of_fixture("ledger-v1");
    let plan = Arc::new(FaultPlan::new());
    let config = LedgerConfig {
        checkpoint_events_interval: 1,
        storage_faults: Some(plan.clone()),
        ..LedgerConfig::new(copy.path())
    };
    let ledger = Ledger::open(config).unwrap();
    // The start replayed the fixture's 33 events (its checkpoint is of an
    // older layout), so the checkpoint thread stores a file at event 33
    // right away; the writer learns of it a moment later and removes the
    // old key after its next commit.
    let file = copy.path().join(fundledger::log::CHECKPOINT_FILE);
    support::open_retrying(|| {
        let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
        let stored = Projections::decode_checkpoint(&bytes).map_err(str::to_owned)?;
        (stored.head_seq == EVENTS).then_some(()).ok_or("not yet".to_owned())
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The next command's own fsync works (acknowledged); the removal's fails.
    plan.fail(StorageOp::Fsync, 2, Persistence::Once);
    let acknowledged = ledger.submit(pledge("p1", "1.00")).await.unwrap();
    assert_eq!(acknowledged.events[0].envelope.seq, EVENTS + 1);
    let mut failed = ledger.watch_failure();
    tokio::time::timeout(std::time::Duration::from_secs(20), failed.wait_for(|f| *f)).await.unwrap().unwrap();
    assert_eq!(plan.failures(StorageOp::Fsync), 1);
    let refused = ledger.submit(pledge("p2", "2.00")).await.unwrap_err().to_string();
    assert!(refused.contains("removing the in-sled checkpoint"), "{refused}");
    ledger.shutdown().await;
    drop(ledger);

    let ledger = support::reopen(LedgerConfig::new(copy.path()));
    assert_eq!(ledger.head_seq(), EVENTS + 1, "p1 is in the log, p2 is not");
    ledger.shutdown().await;
}
