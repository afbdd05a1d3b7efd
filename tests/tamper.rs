//! Tampering with a stopped ledger's stored bytes, and `verify` catching it.
//!
//! Each case builds a ledger through the `Ledger` API, stops it, changes its
//! sled database directly (the test-only path: the key layout is documented
//! in `src/log/store.rs`), and checks that `audit::verify` names the right
//! first broken event and the right reason. Signed checkpoints are taken
//! through `Ledger::signed_checkpoint` and checked the way `fundledger
//! verify --checkpoint` does.

use fundledger::audit::checkpoint::SignedCheckpoint;
use fundledger::audit::key;
use fundledger::audit::verify::{verify_data_dir, CheckpointClaim, NoProgress, Report, VerifyError};
use fundledger::domain::{
    Amount, Applicant, ApplicationId, Command, Currency, Date, Event, MoneyInput, PartnerId, RoundId,
};
use fundledger::ledger::{CommandRequest, Ledger, LedgerConfig};
use fundledger::log::codec::{self, Hash, RecordBody};
use fundledger::log::{LogReader, StoreFormat};
use std::path::Path;

// ---------------------------------------------------------------- the ledger

fn eur(value: &str) -> MoneyInput {
    MoneyInput::parse(value, "EUR").unwrap()
}

fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

mod support;
use support::stored;

/// Each command acts as the role that may send it (see `support::actor_for`).
use support::request;

fn receipt(id: &str, partner: &str, amount: &str) -> CommandRequest {
    request(
        id,
        Command::RecordReceipt {
            partner: PartnerId::new(partner).unwrap(),
            amount: eur(amount),
            earmark: None,
            value_date: date("2024-01-20"),
            bank_reference: format!("NL91 {id}"),
        },
    )
}

fn application(id: &str, app: &str) -> CommandRequest {
    request(
        id,
        Command::SubmitApplication {
            application: ApplicationId::new(app).unwrap(),
            round: RoundId::new("r1").unwrap(),
            applicant: Applicant {
                name: "Bewonersgroep Punda".into(),
                organisation_id: Default::default(),
                place: "Willemstad".into(),
                country: "CW".into(),
            },
            title: "Dialoogtafels".into(),
            description: String::new(),
            amount_requested: eur("12000.00"),
            submitted_on: date("2024-02-15"),
        },
    )
}

/// One command per event; the events, in order:
///
/// | seq | event                          | stream               |
/// |-----|--------------------------------|----------------------|
/// | 1   | FundOpened                     | fund                 |
/// | 2,3 | PartnerAdmitted, Pledged       | partner/porticus     |
/// | 4   | ContributionReceived 30,000    | partner/porticus     |
/// | 5,6 | PartnerAdmitted, Pledged       | partner/bzk          |
/// | 7   | ContributionReceived 40,000    | partner/bzk          |
/// | 8   | RoundOpened                    | round/r1             |
/// | 9   | ApplicationSubmitted           | application/app-1    |
/// | 10  | ApplicationSubmitted           | application/app-2    |
/// | 11  | GrantAwarded 12,000            | application/app-1    |
/// | 12  | ContributionReceived 20,000    | partner/porticus     |
/// | 13  | PaymentMade 6,000              | application/app-1    |
/// | 14  | ApplicationSubmitted           | application/app-3    |
fn commands() -> Vec<CommandRequest> {
    let partner = |id: &str, p: &str| {
        request(
            id,
            Command::AdmitPartner {
                partner: PartnerId::new(p).unwrap(),
                name: p.to_uppercase(),
                organisation_id: format!("NL-KVK-{p}"),
            },
        )
    };
    let pledge = |id: &str, p: &str| {
        request(
            id,
            Command::PledgeContribution {
                partner: PartnerId::new(p).unwrap(),
                amount: eur("60000"),
                earmark: None,
                pledged_on: date("2024-01-10"),
            },
        )
    };
    vec![
        request("open", Command::OpenFund { name: "Loket D".into(), currency: Currency::eur() }),
        partner("admit-porticus", "porticus"),
        pledge("pledge-porticus", "porticus"),
        receipt("receipt-porticus-1", "porticus", "30000.00"),
        partner("admit-bzk", "bzk"),
        pledge("pledge-bzk", "bzk"),
        receipt("receipt-bzk", "bzk", "40000.00"),
        request(
            "open-r1",
            Command::OpenRound {
                round: RoundId::new("r1").unwrap(),
                name: "Round 1".into(),
                budget_ceiling: eur("100000"),
                grant_max: eur("15000"),
                opens_on: date("2024-02-01"),
                closes_on: date("2024-03-31"),
            },
        ),
        application("submit-1", "app-1"),
        application("submit-2", "app-2"),
        request(
            "award-1",
            Command::AwardGrant {
                application: ApplicationId::new("app-1").unwrap(),
                amount: eur("12000.00"),
                reason: "fits the call".into(),
                decided_on: date("2024-04-10"),
            },
        ),
        receipt("receipt-porticus-2", "porticus", "20000.00"),
        request(
            "pay-1",
            Command::MakePayment {
                application: ApplicationId::new("app-1").unwrap(),
                amount: eur("6000.00"),
                value_date: date("2024-05-01"),
                bank_reference: "PAY-1".into(),
            },
        ),
        application("submit-3", "app-3"),
    ]
}

const EVENTS: u64 = 14;

/// Builds the ledger in `dir` and stops it. Returns the checkpoints signed
/// after each of the events `checkpoints_at`.
fn build(dir: &Path, checkpoints_at: &[u64]) -> Vec<SignedCheckpoint> {
    build_in(StoreFormat::NEW, dir, checkpoints_at)
}

/// [`build`], in stored format `format`.
fn build_in(format: StoreFormat, dir: &Path, checkpoints_at: &[u64]) -> Vec<SignedCheckpoint> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = LedgerConfig { new_store_format: format, ..LedgerConfig::new(dir) };
        let ledger = Ledger::open(config).unwrap();
        let mut signed = Vec::new();
        // In v4, one group commit: chunks of several records, which the
        // tampering below cuts into.
        let at_once = format.chunked() && checkpoints_at.is_empty();
        if at_once {
            for outcome in ledger.submit_many(commands()).await.unwrap() {
                outcome.unwrap();
            }
        }
        for command in commands().into_iter().filter(|_| !at_once) {
            ledger.submit(command).await.unwrap();
            if checkpoints_at.contains(&ledger.head_seq()) {
                signed.push(ledger.signed_checkpoint().unwrap());
            }
        }
        assert_eq!(ledger.head_seq(), EVENTS);
        ledger.shutdown().await;
        signed
    })
}

fn verify(dir: &Path, checkpoint: Option<SignedCheckpoint>) -> Report {
    let claim = checkpoint.map(|checkpoint| CheckpointClaim { checkpoint, ledger_key: None, trusted_key: None });
    verify_data_dir(dir, claim, &NoProgress).unwrap()
}

#[track_caller]
fn assert_broken(report: &Report, seq: Option<u64>, code: &str) {
    let broken = report.broken.as_ref().unwrap_or_else(|| panic!("expected {code} at {seq:?}, but it verified"));
    assert_eq!((broken.seq, broken.problem.code()), (seq, code), "found: {broken}");
}

// ------------------------------------------------------ the test-only path

fn with_db(dir: &Path, tamper: impl FnOnce(&sled::Db)) {
    // sled lets go of its lock on a database that was just closed only when
    // its last I/O thread drops the file: retry for a moment.
    let open = || fundledger::log::sled_config(dir).open();
    let started = std::time::Instant::now();
    let db = loop {
        match open() {
            Ok(db) => break db,
            Err(error) if started.elapsed() > std::time::Duration::from_secs(2) => panic!("{error}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    tamper(&db);
    db.flush().unwrap();
}

fn stream_index_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = vec![b's'];
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// The stored record of event `seq`: previous hash, hash, body.
fn record(db: &sled::Db, seq: u64) -> (Hash, Hash, RecordBody) {
    let bytes = stored::record(db, seq);
    let decoded = codec::decode_record(&bytes).unwrap();
    (decoded.prev_hash, decoded.hash, decoded.body)
}

/// The body with the payload's amount replaced (a `ContributionReceived`).
fn with_amount(body: &RecordBody, minor: i64) -> RecordBody {
    let mut event: Event = codec::decode(&body.payload).unwrap();
    let Event::ContributionReceived { amount, .. } = &mut event else { panic!("not a receipt: {event:?}") };
    *amount = Amount::from_minor(minor).unwrap();
    RecordBody { payload: codec::encode(&event), ..body.clone() }
}

/// The body with the receipt's amount made negative, bytes that `decide`
/// never records (`Amount` cannot hold one, so they are patched in).
fn with_negative_amount(body: &RecordBody) -> RecordBody {
    let event: Event = codec::decode(&body.payload).unwrap();
    let Event::ContributionReceived { amount, .. } = &event else { panic!("not a receipt: {event:?}") };
    let mut payload = body.payload.clone();
    let at = payload.windows(8).position(|w| w == amount.minor().to_le_bytes()).expect("the amount's bytes");
    payload[at..at + 8].copy_from_slice(&(-amount.minor()).to_le_bytes());
    RecordBody { payload, ..body.clone() }
}

/// The request fingerprint event `seq`'s record carries (record format 2,
/// stored format v3), if any.
fn fingerprint(db: &sled::Db, seq: u64) -> Option<Hash> {
    codec::decode_record(&stored::record(db, seq)).unwrap().fingerprint
}

/// The record of `body` after `prev_hash`, with `fingerprint` (format 2)
/// or without (format 1), and its hash.
fn encode(prev_hash: &Hash, body: &RecordBody, fingerprint: Option<Hash>) -> (Vec<u8>, Hash) {
    match fingerprint {
        Some(fingerprint) => codec::encode_record_v2(prev_hash, body, &fingerprint),
        None => codec::encode_record(prev_hash, body),
    }
}

/// Stores a record with the given hashes, whatever its body, in the record
/// format event `seq` has.
fn put_record(db: &sled::Db, seq: u64, prev_hash: &Hash, hash: &Hash, body: &RecordBody) {
    let fingerprint = fingerprint(db, seq);
    let mut bytes = vec![if fingerprint.is_some() { 2 } else { 1 }];
    bytes.extend_from_slice(prev_hash);
    bytes.extend_from_slice(hash);
    bytes.extend_from_slice(&codec::encode(body));
    bytes.extend_from_slice(fingerprint.as_ref().map_or(&[][..], |fingerprint| &fingerprint[..]));
    stored::put(db, seq, bytes);
}

/// Rewrites event `from` with `change` and re-hashes every event from it
/// on, consistently: the chain itself verifies afterwards.
fn rewrite_from(db: &sled::Db, from: u64, change: impl FnOnce(&RecordBody) -> RecordBody) {
    rewrite_with_fingerprint(db, from, |body, fingerprint| (change(body), fingerprint));
}

/// [`rewrite_from`], changing event `from`'s fingerprint too.
fn rewrite_with_fingerprint(
    db: &sled::Db,
    from: u64,
    change: impl FnOnce(&RecordBody, Option<Hash>) -> (RecordBody, Option<Hash>),
) {
    let (mut prev_hash, _, body) = record(db, from);
    let (mut body, mut fingerprint) = change(&body, self::fingerprint(db, from));
    for seq in from..=EVENTS {
        if seq > from {
            body = record(db, seq).2;
            fingerprint = self::fingerprint(db, seq);
        }
        let (bytes, hash) = encode(&prev_hash, &body, fingerprint);
        stored::put(db, seq, bytes);
        prev_hash = hash;
    }
}

// --------------------------------------------------------------- the tests

#[test]
fn an_untouched_ledger_verifies_with_every_check() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &[]);
    let report = verify(dir.path(), None);
    assert!(report.verified(), "{:?}", report.broken);
    assert_eq!((report.events, report.streams, report.requests), (EVENTS, 7, EVENTS));
    assert_eq!(report.head_seq, EVENTS);
    // The ledger stores its projections at shutdown; the replay reproduces them.
    assert_eq!(report.projections_checked_at, Some(EVENTS));
}

#[test]
fn tampering_is_detected_at_the_first_broken_event() {
    type Tamper = fn(&sled::Db);
    let cases: &[(&str, Tamper, u64, &str)] = &[
        (
            "an amount changed, hash left as is",
            |db| {
                let (prev, hash, body) = record(db, 4);
                put_record(db, 4, &prev, &hash, &with_amount(&body, 3_500_000));
            },
            4,
            "hash_mismatch",
        ),
        (
            "an event removed",
            |db| {
                stored::remove(db, 6);
            },
            6,
            "event_missing",
        ),
        (
            "the first event removed",
            |db| {
                stored::remove(db, 1);
            },
            1,
            "event_missing",
        ),
        (
            "the last event removed",
            |db| {
                stored::remove(db, EVENTS);
            },
            EVENTS,
            "projections_beyond_log",
        ),
        (
            "two events swapped",
            |db| {
                let a = stored::record(db, 9);
                let b = stored::record(db, 10);
                stored::put(db, 9, b);
                stored::put(db, 10, a);
            },
            9,
            "event_misplaced",
        ),
        (
            "the chain re-hashed from the middle",
            |db| {
                rewrite_from(db, 7, |body| with_amount(body, 5_000_000));
            },
            EVENTS,
            "projections_rewritten",
        ),
        (
            "a negative amount, the chain re-hashed",
            |db| {
                rewrite_from(db, 4, with_negative_amount);
            },
            4,
            "payload_mismatch",
        ),
        (
            "a re-hashed receipt that the history cannot hold",
            |db| {
                // EUR 90,000 received on a pledge of EUR 60,000: the fold refuses it.
                rewrite_from(db, 7, |body| with_amount(body, 9_000_000));
            },
            7,
            "contradicts_state",
        ),
        (
            "an event re-linked to a forged predecessor",
            |db| {
                let (_, _, body) = record(db, 5);
                let (bytes, _) = encode(&[7; 32], &body, fingerprint(db, 5));
                stored::put(db, 5, bytes);
            },
            5,
            "broken_link",
        ),
        (
            "a record that does not decode",
            |db| {
                let (prev, hash, _) = record(db, 8);
                let mut bytes = vec![1];
                bytes.extend_from_slice(&prev);
                bytes.extend_from_slice(&hash);
                bytes.extend_from_slice(b"not bincode");
                stored::put(db, 8, bytes);
            },
            8,
            "event_undecodable",
        ),
        (
            "a payload of another stream, re-hashed",
            |db| {
                // Event 12 (porticus's second receipt) claims to be bzk's.
                rewrite_from(db, 12, |body| RecordBody {
                    stream: "partner/bzk".into(),
                    stream_version: 4,
                    ..body.clone()
                });
            },
            12,
            "payload_mismatch",
        ),
    ];
    // Stored format v2 keeps idempotency and stream index entries beside
    // the events, which must agree with them.
    let v2_cases: &[(&str, Tamper, u64, &str)] = &[
        (
            "a request entry pointing at another event",
            |db| {
                let mut value = db.get(b"rsubmit-2").unwrap().unwrap().to_vec();
                value[32..40].copy_from_slice(&14u64.to_be_bytes());
                db.insert(b"rsubmit-2", value).unwrap();
            },
            10,
            "event_outside_request",
        ),
        (
            "a request entry removed",
            |db| {
                db.remove(b"raward-1").unwrap();
            },
            11,
            "event_without_request",
        ),
        (
            "a request entry claiming events past the end",
            |db| {
                let mut value = db.get(b"rsubmit-3").unwrap().unwrap().to_vec();
                value[40..44].copy_from_slice(&3u32.to_be_bytes());
                db.insert(b"rsubmit-3", value).unwrap();
            },
            EVENTS + 1,
            "request_beyond_log",
        ),
        (
            "a stream index entry removed",
            |db| {
                db.remove(stream_index_key("application/app-1", 2)).unwrap();
            },
            11,
            "index_missing",
        ),
        (
            "a stream index entry pointing at another event",
            |db| {
                db.insert(stream_index_key("partner/bzk", 2), &8u64.to_be_bytes()[..]).unwrap();
            },
            6,
            "index_wrong",
        ),
    ];
    // Stored format v3 keeps each command's fingerprint in its records.
    let v3_cases: &[(&str, Tamper, u64, &str)] = &[
        (
            "an event of format 1, without a fingerprint, re-hashed",
            |db| rewrite_with_fingerprint(db, 6, |body, _| (body.clone(), None)),
            6,
            "fingerprint_missing",
        ),
        (
            "an event joined to the command before it, with its own fingerprint, re-hashed",
            |db| {
                // Events 2 and 3 now both carry "admit-porticus", with two
                // fingerprints: one command cannot have two.
                rewrite_from(db, 3, |body| RecordBody { request_id: "admit-porticus".into(), ..body.clone() })
            },
            3,
            "fingerprint_differs",
        ),
        (
            "a request id used again by a later command, re-hashed",
            |db| rewrite_from(db, 12, |body| RecordBody { request_id: "submit-1".into(), ..body.clone() }),
            12,
            "request_repeated",
        ),
    ];
    // Stored format v4 keeps chunks of records under one key: the events
    // above were built in one group commit, so events 1 to 8 share a key,
    // and 9 to 14 another.
    fn chunk_key(first: u64) -> Vec<u8> {
        [&b"e"[..], &first.to_be_bytes()].concat()
    }
    let v4_cases: &[(&str, Tamper, u64, &str)] = &[
        (
            "a record's frame in a chunk saying more bytes than the chunk holds",
            |db| {
                let mut chunk = db.get(chunk_key(9)).unwrap().unwrap().to_vec();
                let second = 4 + u32::from_be_bytes(chunk[..4].try_into().unwrap()) as usize;
                chunk[second..second + 4].copy_from_slice(&u32::MAX.to_be_bytes());
                db.insert(chunk_key(9), chunk).unwrap();
            },
            10,
            "event_undecodable",
        ),
        (
            "a chunk with bytes after its last record",
            |db| {
                let mut chunk = db.get(chunk_key(9)).unwrap().unwrap().to_vec();
                chunk.extend_from_slice(&[0, 0]);
                db.insert(chunk_key(9), chunk).unwrap();
            },
            15,
            "event_undecodable",
        ),
        (
            "an empty chunk in place of one",
            |db| {
                db.insert(chunk_key(9), &[][..]).unwrap();
            },
            9,
            "event_undecodable",
        ),
        (
            "a chunk moved to the key after its own",
            |db| {
                let chunk = db.remove(chunk_key(9)).unwrap().unwrap();
                db.insert(chunk_key(10), chunk).unwrap();
            },
            9,
            "event_missing",
        ),
        (
            "events stored twice: a chunk that goes on over the next one's",
            |db| {
                // Events 1 to 14 under the first key, 9 to 14 still under
                // the second: a walk of the first alone would see a whole
                // chain, and a read of event 9 would find the second.
                let mut first = db.get(chunk_key(1)).unwrap().unwrap().to_vec();
                first.extend_from_slice(&db.get(chunk_key(9)).unwrap().unwrap());
                db.insert(chunk_key(1), first).unwrap();
            },
            9,
            "event_undecodable",
        ),
    ];
    let v4_cases: Vec<_> = v3_cases.iter().chain(v4_cases).copied().collect();
    for (format, specific) in [(StoreFormat::V2, v2_cases), (StoreFormat::V3, v3_cases), (StoreFormat::V4, &v4_cases)] {
        for (name, tamper, seq, code) in cases.iter().chain(specific) {
            let dir = tempfile::tempdir().unwrap();
            build_in(format, dir.path(), &[]);
            with_db(dir.path(), tamper);
            let report = verify(dir.path(), None);
            let broken = report.broken.as_ref().unwrap_or_else(|| panic!("{format:?}, {name}: not detected"));
            let found = (broken.seq, broken.problem.code());
            assert_eq!(found, (Some(*seq), *code), "{format:?}, {name}: found {broken}");
            // Only events before the broken one count as verified.
            assert!(report.events < *seq, "{format:?}, {name}: {} events verified", report.events);
        }
    }
}

#[test]
fn altered_stored_projections_are_found() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &[]);
    // The checkpoint's recording time (bytes 41..49 of its layout).
    let path = dir.path().join(fundledger::log::CHECKPOINT_FILE);
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    bytes[48] ^= 1;
    // Damage: the checksum trailer (CRC-32 of the rest) no longer matches.
    std::fs::write(&path, &bytes).unwrap();
    let report = verify(dir.path(), None);
    let broken = report.broken.as_ref().expect("not detected");
    assert_eq!((broken.seq, broken.problem.code()), (None, "projections_unreadable"), "found {broken}");
    assert!(broken.to_string().contains("checksum does not match"), "{broken}");

    // A forger who recomputes the checksum is found by the replay.
    let body = bytes.len() - 4;
    let checksum = crc32fast::hash(&bytes[..body]).to_be_bytes();
    bytes[body..].copy_from_slice(&checksum);
    std::fs::write(&path, &bytes).unwrap();
    let report = verify(dir.path(), None);
    let broken = report.broken.as_ref().expect("not detected");
    assert_eq!((broken.seq, broken.problem.code()), (Some(EVENTS), "projections_differ"), "found {broken}");
}

#[test]
fn the_first_broken_event_is_named_with_its_stream_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &[]);
    with_db(dir.path(), |db| {
        let (prev, hash, body) = record(db, 4);
        put_record(db, 4, &prev, &hash, &with_amount(&body, 3_500_000));
        // A second, later break: the first one is reported.
        stored::remove(db, 9);
    });
    let report = verify(dir.path(), None);
    let broken = report.broken.unwrap();
    let text = broken.to_string();
    assert!(text.starts_with("event 4 (partner/porticus): its contents do not match its hash: stored "), "{text}");
    assert_eq!(report.events, 3);
}

#[test]
fn a_rehashed_chain_passes_the_chain_check_but_not_a_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let signed = build(dir.path(), &[10]).remove(0);
    assert_eq!(signed.checkpoint.seq, 10);
    with_db(dir.path(), |db| {
        rewrite_from(db, 7, |body| with_amount(body, 5_000_000));
    });
    // A careful forger also drops the stored projections, which would have
    // given the rewrite away.
    std::fs::remove_file(dir.path().join(fundledger::log::CHECKPOINT_FILE)).unwrap();

    // The chain alone is consistent again...
    let copy = tempfile::tempdir().unwrap();
    for name in ["conf", "db"] {
        std::fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
    }
    LogReader::open_existing(copy.path()).unwrap().verify().expect("a consistent rewrite passes the chain check");
    // ...and without a signed checkpoint nothing is left to tell.
    assert!(verify(dir.path(), None).verified());

    // The checkpoint signed before the rewrite names it.
    let report = verify(dir.path(), Some(signed));
    assert_broken(&report, Some(10), "checkpoint_rewritten");
    assert!(report.broken.unwrap().to_string().contains("rewritten after the checkpoint was signed"));
    assert_eq!(report.events, 9);
}

#[test]
fn an_early_checkpoint_still_verifies_after_more_writes() {
    let dir = tempfile::tempdir().unwrap();
    let signed = build(dir.path(), &[5]).remove(0);
    // Reopen and write more: the log extends the checkpoint.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ledger = support::reopen(LedgerConfig::new(dir.path()));
        ledger.submit(application("submit-4", "app-4")).await.unwrap();
        ledger.shutdown().await;
    });
    let ledger_key = key::read_public(dir.path()).unwrap().unwrap();
    let claim = CheckpointClaim { checkpoint: signed.clone(), ledger_key: None, trusted_key: Some(ledger_key) };
    let report = verify_data_dir(dir.path(), Some(claim), &NoProgress).unwrap();
    assert!(report.verified(), "{:?}", report.broken);
    assert_eq!(report.events, EVENTS + 1);
    let checked = report.checkpoint.unwrap();
    assert_eq!((checked.seq, checked.head_hash), (5, signed.checkpoint.head_hash));
    // The ledger's own key was read from signing-key.pub; the trusted key was given.
    assert!(checked.ledger_key_checked && checked.trusted_key_checked);
}

#[test]
fn a_checkpoint_fails_after_a_rewrite_of_an_event_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let signed = build(dir.path(), &[12]).remove(0);
    with_db(dir.path(), |db| rewrite_from(db, 4, |body| with_amount(body, 2_900_000)));
    assert_broken(&verify(dir.path(), Some(signed)), Some(12), "checkpoint_rewritten");
}

#[test]
fn a_checkpoint_fails_when_its_events_were_removed() {
    let dir = tempfile::tempdir().unwrap();
    let signed = build(dir.path(), &[EVENTS]).remove(0);
    with_db(dir.path(), |db| {
        for seq in 12..=EVENTS {
            stored::remove(db, seq);
        }
    });
    std::fs::remove_file(dir.path().join(fundledger::log::CHECKPOINT_FILE)).unwrap();
    let report = verify(dir.path(), Some(signed));
    assert_broken(&report, Some(12), "checkpoint_beyond_log");
    assert_eq!(report.events, 11);
}

#[test]
fn a_checkpoint_with_a_bad_signature_fails() {
    let dir = tempfile::tempdir().unwrap();
    let signed = build(dir.path(), &[8]).remove(0);
    // Claiming an extra event: figures no longer match the signature.
    let mut forged = signed.clone();
    forged.checkpoint.seq = 9;
    assert_broken(&verify(dir.path(), Some(forged)), None, "checkpoint_signature");
    // The same through the JSON file.
    let json = signed.to_json().replace("\"seq\": 8", "\"seq\": 9");
    let from_file = SignedCheckpoint::from_json(&json).unwrap();
    let report = verify(dir.path(), Some(from_file));
    assert_broken(&report, None, "checkpoint_signature");
    assert_eq!(report.events, 0, "nothing is verified against a forged checkpoint");
}

#[test]
fn a_checkpoint_signed_by_another_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let signed = build(dir.path(), &[8]).remove(0);
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let foreign = SignedCheckpoint::sign(signed.checkpoint, &other);
    // Valid on its own, but the ledger's key (signing-key.pub) is another.
    assert_broken(&verify(dir.path(), Some(foreign.clone())), None, "checkpoint_foreign_key");
    // Against a key the auditor trusts.
    let claim = CheckpointClaim { checkpoint: signed, ledger_key: None, trusted_key: Some(other.verifying_key()) };
    let report = verify_data_dir(dir.path(), Some(claim), &NoProgress).unwrap();
    assert_broken(&report, None, "checkpoint_untrusted_key");
}

// ------------------------------------------------------------ the guarantees

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime, u32)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = metadata.permissions().mode();
                files.push((entry.path(), std::fs::read(entry.path()).unwrap(), metadata.modified().unwrap(), mode));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn verify_never_modifies_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let signed = build(dir.path(), &[3]).remove(0);
    let before = snapshot(dir.path());
    assert!(before.iter().any(|(path, ..)| path.ends_with("db")));
    assert!(verify(dir.path(), Some(signed)).verified());
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn verify_refuses_a_directory_without_a_ledger() {
    let empty = tempfile::tempdir().unwrap();
    let error = verify_data_dir(empty.path(), None, &NoProgress).unwrap_err();
    assert!(matches!(error, VerifyError::NotALedger { .. }), "{error}");
    assert!(error.to_string().contains("no sled `db` file"), "{error}");
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none(), "nothing may be created");

    let missing = empty.path().join("nowhere");
    let error = verify_data_dir(&missing, None, &NoProgress).unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(!missing.exists());

    // A sled database that is not a ledger.
    let foreign = tempfile::tempdir().unwrap();
    with_db(foreign.path(), |db| {
        db.insert(b"k", b"v").unwrap();
    });
    let error = verify_data_dir(foreign.path(), None, &NoProgress).unwrap_err();
    assert!(error.to_string().contains("holds no fundledger ledger"), "{error}");
}

#[test]
fn verify_refuses_a_ledger_that_is_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ledger = support::reopen(LedgerConfig::new(dir.path()));
        let error = verify_data_dir(dir.path(), None, &NoProgress).unwrap_err();
        assert!(matches!(error, VerifyError::InUse { .. }), "{error}");
        ledger.shutdown().await;
    });
}

/// Changes the stored log index of the stopped ledger in `dir`, then makes
/// its checksum whole again, as a forger would.
fn with_index(dir: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(fundledger::log::LOG_INDEX_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    change(&mut bytes);
    let body = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..body]).to_le_bytes();
    bytes[body..].copy_from_slice(&crc);
    std::fs::write(&path, bytes).unwrap();
}

/// Where, in a stored log index, `stream`'s first seq is.
fn first_seq_of_stream(bytes: &[u8], stream: &str) -> usize {
    let entry = [&(stream.len() as u32).to_le_bytes()[..], stream.as_bytes()].concat();
    let at = bytes.windows(entry.len()).position(|w| w == entry).unwrap();
    at + entry.len() + 8
}

#[test]
fn a_stored_index_that_disagrees_with_the_events_is_found() {
    type Change = fn(&mut Vec<u8>);
    let cases: &[(&str, Change, u64, &str)] = &[
        (
            "two streams' first events swapped",
            |bytes| {
                let (one, two) =
                    (first_seq_of_stream(bytes, "application/app-1"), first_seq_of_stream(bytes, "application/app-2"));
                bytes[one..one + 8].copy_from_slice(&10u64.to_le_bytes());
                bytes[two..two + 8].copy_from_slice(&9u64.to_le_bytes());
            },
            9,
            "has event 10 as version 1 of application/app-1, not this event",
        ),
        (
            "a request pointed at another command's event",
            |bytes| {
                let entry = fundledger::log::request_digest("submit-3").to_le_bytes();
                let at = bytes.windows(8).position(|w| w == entry).unwrap();
                bytes[at + 8..at + 16].copy_from_slice(&13u64.to_le_bytes());
            },
            14,
            "does not find request \"submit-3\", which this event begins",
        ),
    ];
    for (name, change, seq, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        build_in(StoreFormat::V3, dir.path(), &[]);
        assert!(verify(dir.path(), None).verified(), "{name}: the untouched index verifies");
        with_index(dir.path(), change);
        let report = verify(dir.path(), None);
        assert_broken(&report, Some(*seq), "log_index_wrong");
        let broken = report.broken.unwrap().to_string();
        assert!(broken.contains(says), "{name}: {broken}");
    }
}
