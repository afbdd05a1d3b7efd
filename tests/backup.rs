//! Backup and restore through the real binary against a real server on
//! 127.0.0.1:0: a backup taken while clients keep writing holds every
//! command acknowledged before it started, restores to a ledger with the
//! same hashes that verifies, serves, and answers as the original did at
//! the backup's head; a damaged backup, a restore over a ledger and a
//! backup by a role that may not take one are refused, leaving nothing.

use fundledger::api::pb;
use fundledger::audit::verify::{self, NoProgress};
use fundledger::ledger::LedgerConfig;
use fundledger::log::{backup, StoreFormat};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::{Cast, Client, TestServer};
use tonic::Code;

mod support;

fn meta() -> Option<pb::CommandMeta> {
    support::meta("b")
}

fn eur(value: &str) -> Option<pb::Money> {
    Some(pb::Money { value: value.into(), currency: "EUR".into() })
}

fn receipt(meta: Option<pb::CommandMeta>, partner: &str, amount: &str) -> pb::RecordReceiptRequest {
    pb::RecordReceiptRequest {
        meta,
        partner_id: partner.into(),
        amount: eur(amount),
        earmark_round_id: None,
        value_date: "2024-02-01".into(),
        bank_reference: "NL-REF".into(),
    }
}

fn application(id: &str) -> pb::SubmitApplicationRequest {
    support::punda_application(meta(), id, "r1", "1500.00", "2024-03-01")
}

/// A fund with two partners whose money is in, and an open round.
async fn fund(dir: &Path) -> (TestServer, Cast) {
    fund_in(StoreFormat::NEW, dir).await
}

/// [`fund`], in a ledger of stored format `format`.
async fn fund_in(format: StoreFormat, dir: &Path) -> (TestServer, Cast) {
    let server = TestServer::start_with(LedgerConfig { new_store_format: format, ..LedgerConfig::new(dir) }).await;
    let mut cast = server.cast().await;
    cast.admin()
        .open_fund(pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 2 })
        .await
        .unwrap();
    for partner in ["porticus", "bzk"] {
        cast.admit_partner(partner).await;
        cast.partner(partner)
            .pledge_contribution(pb::PledgeContributionRequest {
                meta: meta(),
                partner_id: partner.into(),
                amount: eur("900000.00"),
                earmark_round_id: None,
                pledged_on: "2024-01-10".into(),
            })
            .await
            .unwrap();
        cast.officer().record_receipt(receipt(meta(), partner, "500000.00")).await.unwrap();
    }
    cast.admin()
        .open_round(pb::OpenRoundRequest {
            meta: meta(),
            round_id: "r1".into(),
            name: "Round 1".into(),
            budget_ceiling: eur("800000.00"),
            grant_max: eur("15000.00"),
            opens_on: "2024-01-01".into(),
            closes_on: "2024-12-31".into(),
        })
        .await
        .unwrap();
    (server, cast)
}

fn fundledger(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fundledger")).args(args).output().unwrap()
}

/// The binary, run on a blocking thread so that the server in this process
/// goes on serving it.
async fn fundledger_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fundledger")).args(&args).output().unwrap()
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything in a directory, by relative path, with its bytes.
fn listing(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The names in `dir` (not recursive).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A command the server acknowledged: its request id and its events.
#[derive(Clone, Debug)]
struct Acked {
    request_id: String,
    first_seq: u64,
    last_seq: u64,
}

type AckLog = Arc<Mutex<Vec<Acked>>>;

fn note(acked: &AckLog, request_id: &str, response: &pb::CommandResponse) {
    let first_seq = response.events.first().unwrap().seq;
    let last_seq = response.events.last().unwrap().seq;
    acked.lock().unwrap().push(Acked { request_id: request_id.to_owned(), first_seq, last_seq });
}

/// One client writing until told to stop: applications and awards (an
/// officer), receipts (an officer), pledges (a partner). Only what the
/// server acknowledged goes in `acked`; a rule's refusal is not an error
/// here (none is expected, but the figures would not care).
async fn writer(kind: usize, mut client: Client, acked: AckLog, stop: Arc<AtomicBool>) -> u64 {
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        sent += 1;
        let meta = meta();
        let id = meta.as_ref().unwrap().request_id.clone();
        let answer = match kind {
            0 => {
                let app = format!("app-{sent}");
                let mut request = application(&app);
                request.meta = meta;
                let submitted = client.submit_application(request).await;
                if let Ok(response) = &submitted {
                    note(&acked, &id, response.get_ref());
                }
                let award_meta = support::meta("award");
                let award_id = award_meta.as_ref().unwrap().request_id.clone();
                let award = client
                    .award_grant(pb::AwardGrantRequest {
                        meta: award_meta,
                        application_id: app,
                        amount: eur(&format!("{}.{:02}", 100 + sent, sent % 100)),
                        reason: "fits the round".into(),
                        decided_on: "2024-04-01".into(),
                    })
                    .await;
                if let Ok(response) = &award {
                    note(&acked, &award_id, response.get_ref());
                }
                continue;
            }
            1 => {
                let partner = if sent % 2 == 0 { "porticus" } else { "bzk" };
                client.record_receipt(receipt(meta, partner, &format!("{sent}.{:02}", sent % 100))).await
            }
            _ => {
                client
                    .pledge_contribution(pb::PledgeContributionRequest {
                        meta,
                        partner_id: "porticus".into(),
                        amount: eur(&format!("{sent}.50")),
                        earmark_round_id: None,
                        pledged_on: "2024-01-20".into(),
                    })
                    .await
            }
        };
        if let Ok(response) = &answer {
            note(&acked, &id, response.get_ref());
        }
    }
    sent
}

#[derive(Clone, Debug, PartialEq)]
struct Figures {
    balances: pb::GetPartnerBalancesResponse,
    summary: pb::GetFundSummaryResponse,
    rounds: pb::GetRoundFiguresResponse,
}

async fn figures(c: &mut Client, as_of_seq: Option<u64>) -> Figures {
    let as_of = || as_of_seq.map(|seq| pb::AsOf { point: Some(pb::as_of::Point::Seq(seq)) });
    Figures {
        balances: c
            .get_partner_balances(pb::GetPartnerBalancesRequest { partner_id: None, as_of: as_of() })
            .await
            .unwrap()
            .into_inner(),
        summary: c.get_fund_summary(pb::GetFundSummaryRequest { as_of: as_of() }).await.unwrap().into_inner(),
        rounds: c
            .get_round_figures(pb::GetRoundFiguresRequest { round_id: None, as_of: as_of() })
            .await
            .unwrap()
            .into_inner(),
    }
}

/// The whole story: writers keep writing while the binary takes a backup
/// as the auditor; the backup holds everything acknowledged before it
/// started and stops at one head; the binary restores it; the restored
/// ledger verifies, has the same hash at that head, and a server on it
/// answers as the original answered as of that head, tokens and
/// idempotency included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_to_the_ledger_at_its_head() {
    // A restored log takes the stored format of the one backed up, but
    // for v3, which restores into the new logs' v4: the same records,
    // chunked.
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        backup_under_load_restores(format).await;
    }
}

async fn backup_under_load_restores(format: StoreFormat) {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund_in(format, &dir.path().join("original")).await;
    // A request to retry after the restore: its answer must be the original one.
    let known = receipt(
        Some(pb::CommandMeta { request_id: "known-receipt".into(), expected_version: None, positions_only: false }),
        "bzk",
        "77.70",
    );
    let known_answer = cast.officer().record_receipt(known.clone()).await.unwrap().into_inner();

    let acked: AckLog = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [(0, support::OFFICER), (1, support::SECOND_OFFICER), (2, "treasurer-porticus")]
        .into_iter()
        .map(|(kind, who)| tokio::spawn(writer(kind, cast.client(who), acked.clone(), stop.clone())))
        .collect();
    // Let the writers build some history first.
    while server.ledger.head_seq() < 150 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Everything acknowledged up to now was acknowledged before the backup started.
    let before: Vec<Acked> = acked.lock().unwrap().clone();
    let file = dir.path().join("fund.flbackup");
    let output = fundledger_async(vec![
        "backup".into(),
        "--server".into(),
        server.url.clone(),
        "--token".into(),
        cast.token(support::AUDITOR).into(),
        "--out".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(output.status.success(), "backup failed: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    // Writes go on after the backup: wait for one more acknowledgement.
    let acked_after_backup = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() == acked_after_backup {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for writer in writers {
        sent += writer.await.unwrap();
    }
    assert!(sent > 0);

    // What the backup holds: one head of the original log.
    let summary = backup::check(std::fs::File::open(&file).unwrap()).expect("the backup checks");
    let head = summary.head_seq;
    let original = server.ledger.log_reader();
    assert!(server.ledger.head_seq() > head, "the writers went on past the backup's head");
    let (envelope, _) = original.get(head).unwrap().unwrap();
    assert_eq!(summary.head_hash, envelope.hash, "the backup's head hash is the log's hash at that seq");
    assert_eq!(summary.bytes, std::fs::metadata(&file).unwrap().len());
    assert!(
        stdout.contains(&format!("events 1 to {head} (head hash {}", hex::encode(envelope.hash))),
        "the backup names its head: {stdout}"
    );
    assert!(before.len() > 20, "the writers had written before the backup: {}", before.len());
    for ack in &before {
        assert!(ack.last_seq <= head, "{ack:?} was acknowledged before the backup started, its head is {head}");
    }
    // No temporary file is left beside the backup.
    assert_eq!(names(dir.path()), ["fund.flbackup", "original"]);

    // Restore with the binary.
    let restored_dir = dir.path().join("restored");
    let output =
        fundledger(&["restore", &file.display().to_string(), "--data-dir", &restored_dir.display().to_string()]);
    assert!(output.status.success(), "restore failed: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&format!("{head} events")), "{stdout}");
    assert!(stdout.contains(&hex::encode(summary.head_hash)), "{stdout}");
    let restored_format = if format == StoreFormat::V2 { format } else { StoreFormat::V4 };
    let marker = String::from_utf8_lossy(restored_format.marker());
    assert!(stdout.contains(&format!("stored format: {marker}")), "{stdout}");
    assert_eq!(names(dir.path()), ["fund.flbackup", "original", "restored"], "no temporary directory is left");
    assert!(!restored_dir.join("signing-key").exists(), "a backup never holds the signing key");

    // The restored ledger verifies on its own, with the same head.
    let report = verify::verify_data_dir(&restored_dir, None, &NoProgress).unwrap();
    assert!(report.verified(), "{:?}", report.broken);
    assert_eq!((report.events, report.head_hash), (head, summary.head_hash));
    assert_eq!(report.projections_checked_at, Some(head), "the restore stored the projections, and they replay");
    // A v3 or v4 log's indexes too, built from the records (and checked by
    // the verification above, which takes the index a start would use).
    assert_eq!(restored_dir.join(fundledger::log::LOG_INDEX_FILE).exists(), format.indexes_in_memory());
    if format.indexes_in_memory() {
        let log = fundledger::log::EventLog::open(&restored_dir).unwrap();
        assert_eq!(log.index_stored_seq(), Some(head), "the first start loads the index the restore stored");
    }

    // A server on the restored ledger: the original's tokens work, the
    // figures are the original's as of the backup's head.
    let restored = TestServer::resume(LedgerConfig::new(&restored_dir), &server.admin_token).await;
    let restored_cast = cast.on(&restored);
    assert_eq!(restored.ledger.head_seq(), head);
    let restored_log = restored.ledger.log_reader();
    for seq in [1, head / 2, head] {
        assert_eq!(restored_log.get(seq).unwrap(), original.get(seq).unwrap(), "event {seq}");
    }
    // Every command acknowledged before the backup: the same request entry,
    // and its events carry its id.
    for ack in &before {
        let entry = restored_log.request(&ack.request_id).unwrap().unwrap_or_else(|| panic!("{ack:?} is missing"));
        assert_eq!(Some(entry), original.request(&ack.request_id).unwrap(), "{ack:?}");
        assert_eq!((entry.first_seq, entry.first_seq + u64::from(entry.count) - 1), (ack.first_seq, ack.last_seq));
        for (envelope, _) in restored_log.read(ack.first_seq, ack.last_seq, 100).unwrap() {
            assert_eq!(envelope.request_id, ack.request_id);
        }
    }
    // Every request entry of the original up to the head, and nothing after it.
    let within: Vec<_> =
        original.requests().map(Result::unwrap).filter(|(_, r)| r.first_seq + u64::from(r.count) - 1 <= head).collect();
    let all: Vec<_> = restored_log.requests().map(Result::unwrap).collect();
    assert_eq!(restored_log.format(), restored_format);
    assert_eq!(all, within);
    let live = figures(&mut restored_cast.auditor(), None).await;
    let then = figures(&mut cast.auditor(), Some(head)).await;
    assert_eq!(live, then, "the restored ledger answers as the original did at event {head}");
    assert_ne!(then, figures(&mut cast.auditor(), None).await, "the original moved on since");

    // Idempotency survived: the retry gets the original answer, a reused id is refused.
    let retry = restored_cast.officer().record_receipt(known.clone()).await.unwrap().into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.events, known_answer.events);
    let mut reused = known.clone();
    reused.amount = eur("1.00");
    let refused = restored_cast.officer().record_receipt(reused).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert_eq!(restored.ledger.head_seq(), head, "a retry records nothing");

    // The restored ledger takes new commands, chained to the old head.
    let next = restored_cast.officer().record_receipt(receipt(meta(), "porticus", "5.00")).await.unwrap().into_inner();
    assert_eq!(next.events[0].seq, head + 1);
    assert_eq!(next.events[0].prev_hash, hex::encode(summary.head_hash));

    restored.stop().await;
    server.stop().await;
}

/// A small ledger's backup, taken by the binary as the admin.
async fn small_backup(dir: &Path) -> (PathBuf, TestServer, Cast) {
    small_backup_in(StoreFormat::NEW, dir).await
}

/// [`small_backup`] of a ledger of stored format `format`.
async fn small_backup_in(format: StoreFormat, dir: &Path) -> (PathBuf, TestServer, Cast) {
    let (server, cast) = fund_in(format, &dir.join("original")).await;
    let file = dir.join("small.flbackup");
    let output = fundledger_async(vec![
        "backup".into(),
        "--server".into(),
        server.url.clone(),
        "--token".into(),
        server.admin_token.clone(),
        "--out".into(),
        file.display().to_string(),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    (file, server, cast)
}

/// Restores `bytes` as a backup file with the binary; must be refused with
/// one line naming `expected`, leaving nothing where it would have gone.
fn refused(dir: &Path, name: &str, bytes: &[u8], expected: &str) {
    let file = dir.join(format!("{name}.flbackup"));
    std::fs::write(&file, bytes).unwrap();
    let target = dir.join(format!("restored-{name}"));
    let before = names(dir);
    let output = fundledger(&["restore", &file.display().to_string(), "--data-dir", &target.display().to_string()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
    assert!(stderr.contains(expected), "{name}: expected {expected:?} in {stderr:?}");
    assert!(stderr.contains(&file.display().to_string()), "{name}: the message names the file: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    assert!(!target.exists(), "{name}: a refused restore leaves nothing");
    assert_eq!(names(dir), before, "{name}: no temporary directory is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_altered_backup_is_refused_and_leaves_nothing() {
    for format in [StoreFormat::V2, StoreFormat::V3, StoreFormat::V4] {
        truncated_or_altered_backups_are_refused(format).await;
    }
}

async fn truncated_or_altered_backups_are_refused(format: StoreFormat) {
    let dir = tempfile::tempdir().unwrap();
    let (file, server, _cast) = small_backup_in(format, dir.path()).await;
    server.stop().await;
    let good = std::fs::read(&file).unwrap();
    let summary = backup::check(&good[..]).unwrap();
    // A v3 log keeps each command's fingerprint in its records: its
    // backup holds no idempotency entries.
    assert_eq!(summary.requests > 0, format == StoreFormat::V2, "{format:?}: {summary:?}");
    let head = summary.head_seq;
    // Where things are: the header, then `u32 length ‖ record` per event.
    let mut offsets = Vec::new();
    let mut at = backup::HEADER_BYTES;
    for _ in 0..head {
        offsets.push(at);
        at += 4 + u32::from_be_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    }
    let requests_at = at;
    let trailer_at = good.len() - backup::TRAILER_BYTES;
    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).unwrap();

    // Truncated: in the header, inside a record, in the requests, in the trailer, empty.
    refused(&cases, "cut-header", &good[..20], "truncated: it ends inside the header, after 20 bytes");
    let mid = offsets[5] + 30;
    refused(&cases, "cut-record", &good[..mid], &format!("truncated: it ends inside event record 6 of {head}"));
    if format == StoreFormat::V2 {
        refused(&cases, "cut-requests", &good[..requests_at + 10], "truncated: it ends inside request entry 1");
    }
    refused(&cases, "cut-trailer", &good[..good.len() - 5], "truncated: it ends inside the trailer");
    refused(&cases, "empty", b"", "truncated: it ends inside the header, after 0 bytes");

    // Altered: a record's body, a record's length, the header's head hash,
    // a request entry, the trailer's checksum, bytes appended.
    let mut altered = good.clone();
    altered[offsets[3] + 4 + 70] ^= 0x01;
    refused(&cases, "record", &altered, "damaged or altered: event 4 is corrupt");
    let mut altered = good.clone();
    altered[offsets[2]..offsets[2] + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    refused(&cases, "length", &altered, "damaged or altered: event record 3 says it is 4294967295 bytes long");
    let mut altered = good.clone();
    altered[20] ^= 0x80;
    refused(&cases, "head-hash", &altered, &format!("damaged or altered: its header says event {head} has hash"));
    if format == StoreFormat::V2 {
        let mut altered = good.clone();
        altered[requests_at + 6] ^= 0x01;
        refused(&cases, "request", &altered, "damaged or altered: its contents have SHA-256");
    }
    let mut altered = good.clone();
    altered[trailer_at + 8] ^= 0x01;
    refused(&cases, "checksum", &altered, "damaged or altered: its contents have SHA-256");
    let mut altered = good.clone();
    altered.extend_from_slice(b"more");
    refused(&cases, "appended", &altered, "4 bytes after its trailer");
    // Not a backup at all; a newer format.
    refused(
        &cases,
        "foreign",
        b"PK\x03\x04 a zip file, not a backup at all ...............",
        "not a fundledger backup",
    );
    let mut newer = good.clone();
    newer[9] = 2;
    refused(&cases, "newer", &newer, "backup format version 2");

    // The good file still restores (the cases above did not depend on luck).
    let output =
        fundledger(&["restore", &file.display().to_string(), "--data-dir", &cases.join("good").display().to_string()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_never_writes_over_a_ledger_or_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let (file, server, _cast) = small_backup(dir.path()).await;
    server.stop().await;
    let original = dir.path().join("original");
    let before = listing(&original);
    let output = fundledger(&["restore", &file.display().to_string(), "--data-dir", &original.display().to_string()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds a ledger: a restore never overwrites one"), "{stderr}");
    assert_eq!(listing(&original), before, "the ledger is untouched");

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let output = fundledger(&["restore", &file.display().to_string(), "--data-dir", &other.display().to_string()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not empty: a restore never overwrites anything"), "{stderr}");
    assert_eq!(names(&other), ["notes.txt"]);

    // An empty directory is fine: it becomes the ledger.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = fundledger(&["restore", &file.display().to_string(), "--data-dir", &empty.display().to_string()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(verify::verify_data_dir(&empty, None, &NoProgress).unwrap().verified());
    assert_eq!(names(dir.path()), ["empty", "original", "other", "small.flbackup"]);
}

/// A backup holds who has access: officers and partners are refused, by the
/// RPC and by the binary, and no file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_and_auditors_may_take_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cast) = fund(&dir.path().join("original")).await;
    for who in [support::OFFICER, "treasurer-porticus"] {
        let status = server.audit(cast.token(who)).backup(pb::BackupRequest {}).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
        assert!(status.message().starts_with(&format!("permission_denied: {who} (")), "{status:?}");
        assert!(status.message().ends_with("may not take a backup of the ledger"), "{status:?}");

        let out = dir.path().join(format!("{who}.flbackup"));
        let output = fundledger_async(vec![
            "backup".into(),
            "--server".into(),
            server.url.clone(),
            "--token".into(),
            cast.token(who).into(),
            "--out".into(),
            out.display().to_string(),
        ])
        .await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("PermissionDenied") && stderr.contains("permission_denied"), "{stderr}");
    }
    assert_eq!(names(dir.path()), ["original"], "a refused backup leaves no file");
    // The auditor may.
    let mut stream =
        server.audit(cast.token(support::AUDITOR)).backup(pb::BackupRequest {}).await.unwrap().into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend_from_slice(&chunk.data);
    }
    assert_eq!(backup::check(&bytes[..]).unwrap().head_seq, server.ledger.head_seq());
    server.stop().await;
}

/// A restore into an empty log (the library's; the binary always builds a
/// new directory) keeps that log's stored format when the records allow
/// it: a v3 log's backup stays v3 in an empty v3 log and becomes v4 in an
/// empty v4 one. An empty v2 log cannot take records that carry
/// fingerprints: the refusal names the log there, not the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_an_empty_log_keeps_its_format_or_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (file, server, _cast) = small_backup_in(StoreFormat::V3, dir.path()).await;
    server.stop().await;
    let bytes = std::fs::read(&file).unwrap();
    for (there, expected) in [
        (StoreFormat::V3, Ok(StoreFormat::V3)),
        (StoreFormat::V4, Ok(StoreFormat::V4)),
        (StoreFormat::V2, Err("but the empty log there is of V2")),
    ] {
        let target = dir.path().join(format!("{there:?}"));
        drop(fundledger::log::EventLog::open_with(&target, there).unwrap());
        // sled lets go of its lock a moment after the last handle is dropped.
        let restored = support::open_retrying(|| match backup::restore(&bytes[..], &target) {
            Err(error) if error.to_string().contains("in use") => Err(error.to_string()),
            other => Ok(other),
        });
        match (restored, expected) {
            (Ok((log, summary)), Ok(format)) => {
                assert_eq!((log.format(), log.head_seq()), (format, summary.head_seq), "into {there:?}");
            }
            (Err(error), Err(says)) => assert!(error.to_string().contains(says), "into {there:?}: {error}"),
            (Ok((log, _)), Err(_)) => panic!("into {there:?}: restored as {:?}", log.format()),
            (Err(error), Ok(_)) => panic!("into {there:?}: {error}"),
        }
    }
}
