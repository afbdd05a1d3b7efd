//! Start-up in a hostile environment: the real `fundledger` binary on a
//! missing, read-only, full, corrupt, busy or newer-format data directory.
//!
//! Every case checks the same four things (`assert_refused`): a non-zero
//! exit, no panic, one line on stderr that says what is wrong and names the
//! directory, and — where the directory existed — nothing written to it
//! (`Files`: every file's bytes, before and after).
//!
//! sled brings its own snapshot file (`snap.*`) up to date whenever it
//! opens a database, whoever opens it. A directory prepared through sled is
//! therefore opened once more and closed (`with_db`) before its "before"
//! picture is taken, so that any later change is fundledger's.
//!
//! Nothing here depends on timing: children that must exit are waited for
//! with a generous bound (`CHILD_WAIT_MAX`) and killed, failing the test, if
//! they hang; a server that must come up is polled until it accepts.

mod support;

use fundledger::api::auth;
use fundledger::domain::{Command, Currency, PartnerId, PrincipalId};
use fundledger::ledger::{Ledger, LedgerConfig};
use fundledger::log::codec;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a child may take to exit (or a server to come up) before the
/// test calls it hung. Start-up takes well under a second; the bound is for
/// a loaded CI machine, and only a hang ever reaches it.
const CHILD_WAIT_MAX: Duration = Duration::from_secs(120);
/// How long sled may keep a closed database's lock (its I/O threads let go
/// of the file shortly after the handle is dropped).
const LOCK_RELEASE_WAIT_MAX: Duration = Duration::from_secs(30);

// ------------------------------------------------------------ the binary

fn fundledger() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_fundledger"));
    // No logs: stderr holds only the error line.
    command.env("RUST_LOG", "off").env_remove("FUNDLEDGER_DATA_DIR").stdin(Stdio::null());
    command
}

/// Runs `args` (with the data directory `dir` appended as `--data-dir DIR`)
/// to completion; a child that hangs is killed and the test fails.
fn run(args: &[&str], dir: &Path) -> Output {
    let mut command = fundledger();
    command.args(args).arg("--data-dir").arg(dir);
    finish(command)
}

/// `serve` on a port nobody listens on: it must refuse before binding.
fn serve(dir: &Path) -> Output {
    run(&["serve", "--listen", &format!("127.0.0.1:{}", free_port())], dir)
}

fn finish(mut command: std::process::Command) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match outcome.recv_timeout(CHILD_WAIT_MAX) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: signals our own child, still unreaped (the waiting
            // thread has not returned), so the pid is not reused.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{command:?} did not exit within {CHILD_WAIT_MAX:?}: it hangs");
        }
    }
}

/// Like [`run`], with every file the child writes limited to `bytes`:
/// writes beyond fail with EFBIG, as on a full disk (this works for root
/// too, unlike permissions). SIGXFSZ is ignored so the write fails instead
/// of killing the process.
fn run_with_file_size_max(args: &[&str], dir: &Path, bytes: u64) -> Output {
    let mut command = fundledger();
    command.args(args).arg("--data-dir").arg(dir);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    // stdout and stderr are pipes, which the limit does not apply to.
    finish(command)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The refusal every hostile case must end in.
#[track_caller]
fn assert_refused(output: &Output, what: &str, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{what}: exited successfully; stderr: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{what}: not a clean failure (a signal, or a panic's 101): {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: not one line on stderr: {stderr}");
    assert!(lines[0].starts_with("error: "), "{what}: {stderr}");
    for needle in expected {
        assert!(lines[0].contains(needle), "{what}: stderr does not say {needle:?}: {stderr}");
    }
}

// ------------------------------------------------------------ the data

/// Every file under a directory and its bytes (directories as `None`).
#[derive(Debug, PartialEq, Eq)]
struct Files(BTreeMap<PathBuf, Option<Vec<u8>>>);

impl Files {
    fn of(dir: &Path) -> Files {
        fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.strip_prefix(root).unwrap().to_owned();
                if path.is_dir() {
                    into.insert(name, None);
                    walk(root, &path, into);
                } else {
                    into.insert(name, Some(std::fs::read(&path).unwrap()));
                }
            }
        }
        let mut files = BTreeMap::new();
        if dir.is_dir() {
            walk(dir, dir, &mut files);
        } else if dir.exists() {
            files.insert(PathBuf::new(), Some(std::fs::read(dir).unwrap()));
        }
        Files(files)
    }

    fn names(&self) -> Vec<&PathBuf> {
        self.0.keys().collect()
    }
}

#[track_caller]
fn assert_unchanged(dir: &Path, before: &Files, what: &str) {
    let after = Files::of(dir);
    assert_eq!(after.names(), before.names(), "{what}: files were added or removed in {}", dir.display());
    assert!(after == *before, "{what}: files in {} changed", dir.display());
}

/// A stopped ledger of three events, made in process:
///
/// | seq | event           | stream             |
/// |-----|-----------------|--------------------|
/// | 1   | AccessGranted   | principal/admin    |
/// | 2   | FundOpened      | fund               |
/// | 3   | PartnerAdmitted | partner/porticus   |
fn ledger(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ledger = Ledger::open(LedgerConfig::new(dir)).unwrap();
        auth::init_admin(&ledger, PrincipalId::new(support::ADMIN).unwrap()).await.unwrap();
        ledger
            .submit(support::request("open", Command::OpenFund { name: "Loket D".into(), currency: Currency::eur() }))
            .await
            .unwrap();
        let porticus = PartnerId::new("porticus").unwrap();
        let admit = Command::AdmitPartner {
            partner: porticus,
            name: "Porticus".into(),
            organisation_id: "NL-KVK-41198746".into(),
        };
        ledger.submit(support::request("admit", admit)).await.unwrap();
        assert_eq!(ledger.head_seq(), 3);
        ledger.shutdown().await;
    });
    wait_unlocked(dir);
}

/// Waits until no handle of this process holds sled's lock on `dir/db`, so
/// that the binary started next sees a stopped ledger.
fn wait_unlocked(dir: &Path) {
    let db = std::fs::File::open(dir.join("db")).unwrap();
    let started = Instant::now();
    while fs2::FileExt::try_lock_exclusive(&db).is_err() {
        assert!(started.elapsed() < LOCK_RELEASE_WAIT_MAX, "sled kept the lock on {}", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    fs2::FileExt::unlock(&db).unwrap();
}

/// Changes the stopped ledger in `dir` through sled directly (the test-only
/// path; the key layout is in `src/log/store.rs`), then opens and closes it
/// once more so that sled's snapshot is current (see the top of this file).
fn with_db(dir: &Path, change: impl FnOnce(&sled::Db)) {
    for change in [Some(change), None] {
        let db = fundledger::log::sled_config(dir).open().unwrap();
        if let Some(change) = change {
            change(&db);
        }
        db.flush().unwrap();
        drop(db);
        wait_unlocked(dir);
    }
}

/// Event `seq` with its body changed but its stored hashes kept.
fn tamper_event(db: &sled::Db, seq: u64) {
    let bytes = support::stored::record(db, seq);
    let decoded = codec::decode_record(&bytes).unwrap();
    let mut body = decoded.body.clone();
    body.recorded_at_micros += 1;
    let mut record = bytes[..65].to_vec();
    record.extend_from_slice(&codec::encode(&body));
    record.extend_from_slice(decoded.fingerprint.as_ref().map_or(&[][..], |fingerprint| &fingerprint[..]));
    support::stored::put(db, seq, record);
}

fn euid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ------------------------------------------------------------ the cases

#[test]
fn a_missing_data_dir_is_refused_and_not_created() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("typo");
    let shown = dir.display().to_string();
    assert_refused(&serve(&dir), "serve", &["no ledger here", &shown, "does not exist", "fundledger init"]);
    assert!(!dir.exists(), "serve created {shown}");
    assert_refused(&run(&["verify"], &dir), "verify", &[&shown, "does not exist"]);
    assert_refused(&run(&["export", "events"], &dir), "export", &[&shown, "no fundledger ledger"]);
    assert!(Files::of(parent.path()).0.is_empty(), "something was written beside the missing directory");

    // A directory without a ledger in it is no better.
    std::fs::create_dir(&dir).unwrap();
    assert_refused(&serve(&dir), "serve on an empty directory", &["no ledger here", &shown, "no sled `db` file"]);
    assert!(Files::of(&dir).0.is_empty(), "serve wrote into the empty directory");
}

#[test]
fn a_data_dir_that_is_a_file_is_refused() {
    // Meaningful as root too: no permission bit is involved.
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("ledger");
    std::fs::write(&file, b"not a directory\n").unwrap();
    let shown = file.display().to_string();
    let before = Files::of(parent.path());
    assert_refused(&serve(&file), "serve", &["no ledger here", &shown, "is not a directory"]);
    assert_refused(&run(&["init"], &file), "init", &[&shown, "is not a directory"]);
    assert_refused(&run(&["verify"], &file), "verify", &[&shown, "is not a directory"]);
    assert_refused(&run(&["export", "events"], &file), "export", &[&shown]);
    // A data directory below a file cannot be created either.
    let below = file.join("data");
    assert_refused(&run(&["init"], &below), "init below a file", &[&shown]);
    assert_unchanged(parent.path(), &before, "a file in the data directory's place");
}

#[test]
fn a_read_only_data_dir_is_refused() {
    if euid_is_root() {
        // Permissions do not stop root: a_data_dir_that_is_a_file_is_refused
        // and a_full_disk_* cover unwritable places then.
        eprintln!("skipped: running as root, which permission bits do not stop");
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let parent = tempfile::tempdir().unwrap();

    // A ledger restored read-only: directories 0555, files 0444.
    let dir = parent.path().join("ledger");
    ledger(&dir);
    with_db(&dir, |_| {});
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        mode(&path, if path.is_dir() { 0o555 } else { 0o444 });
    }
    mode(&dir, 0o555);
    let before = Files::of(&dir);
    let shown = dir.display().to_string();
    assert_refused(&serve(&dir), "serve", &[&shown, "Permission denied", "must be able to read and write"]);
    assert_refused(&run(&["init"], &dir), "init", &[&shown, "Permission denied"]);
    assert_unchanged(&dir, &before, "a read-only ledger");

    // An empty directory nobody may write to.
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    mode(&empty, 0o555);
    assert_refused(&run(&["init"], &empty), "init", &[&empty.display().to_string(), "Permission denied"]);
    assert!(Files::of(&empty).0.is_empty());

    // Let the temporary directory be removed.
    mode(&dir, 0o755);
    mode(&empty, 0o755);
}

#[test]
fn a_full_disk_during_init_leaves_nothing_that_serve_accepts() {
    let parent = tempfile::tempdir().unwrap();
    // Each limit stops `init` at another step: sled's first files (0), the
    // format marker (64), the admin's event (200).
    for bytes in [0, 64, 200] {
        let dir = parent.path().join(format!("new-{bytes}"));
        let shown = dir.display().to_string();
        let output = run_with_file_size_max(&["init"], &dir, bytes);
        assert_refused(&output, &format!("init with files of at most {bytes} bytes"), &[&shown, "File too large"]);
        assert!(output.stdout.is_empty(), "init printed a token although it failed");
        // A new directory is built aside and renamed into place only whole.
        assert!(Files::of(parent.path()).0.is_empty(), "init left {:?}", Files::of(parent.path()).names());
        assert_refused(&serve(&dir), "serve after a failed init", &["no ledger here", &shown]);
    }

    // In a directory that already exists, init works in place: what a
    // failed init leaves is refused by serve, and init can be run again.
    let dir = parent.path().join("existing");
    std::fs::create_dir(&dir).unwrap();
    let shown = dir.display().to_string();
    let output = run_with_file_size_max(&["init"], &dir, 200);
    assert_refused(&output, "init in an existing directory, full disk", &[&shown, "File too large"]);
    // (serve opens the ledger to find that out, and sled, opening, repairs
    // the db file's torn end as after a crash.)
    assert_refused(&serve(&dir), "serve after a failed init", &[&shown, "has no admin", "fundledger init"]);
    let again = run(&["init"], &dir);
    assert!(again.status.success(), "init again: {}", String::from_utf8_lossy(&again.stderr));
    let token = String::from_utf8(again.stdout).unwrap();
    assert!(token.lines().last().unwrap().starts_with(auth::TOKEN_PREFIX), "{token}");
}

#[test]
fn a_corrupt_db_file_is_refused_by_every_command() {
    let parent = tempfile::tempdir().unwrap();
    let original = parent.path().join("original");
    ledger(&original);
    with_db(&original, |_| {});
    let db_bytes = std::fs::read(original.join("db")).unwrap();
    // Deterministic garbage: an xorshift sequence.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let garbage: Vec<u8> = (0..db_bytes.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let cases: [(&str, Vec<u8>); 3] =
        [("garbage", garbage), ("zeros", vec![0; db_bytes.len()]), ("truncated to nothing", Vec::new())];
    for (name, bytes) in cases {
        let dir = parent.path().join(name.replace(' ', "-"));
        copy_dir(&original, &dir);
        std::fs::write(dir.join("db"), bytes).unwrap();
        let shown = dir.display().to_string();
        let before = Files::of(&dir);
        let expected = [shown.as_str(), "corrupt", "restore the directory from a backup"];
        assert_refused(&serve(&dir), &format!("serve, db {name}"), &expected);
        assert_refused(&run(&["verify"], &dir), &format!("verify, db {name}"), &expected);
        assert_refused(&run(&["export", "events"], &dir), &format!("export, db {name}"), &expected);
        assert_refused(&run(&["init"], &dir), &format!("init, db {name}"), &expected);
        assert_unchanged(&dir, &before, &format!("db {name}"));
    }

    // Cut in the middle of a record: sled takes the torn end for a write
    // interrupted by a crash and zeroes it (its crash recovery), then finds
    // the rest unreadable. The refusal is fundledger's to check; the
    // zeroing is sled's, so only the set of files is compared here.
    let dir = parent.path().join("truncated-mid-record");
    copy_dir(&original, &dir);
    std::fs::write(dir.join("db"), &db_bytes[..100]).unwrap();
    let shown = dir.display().to_string();
    let before = Files::of(&dir);
    assert_refused(&serve(&dir), "serve, db truncated", &[&shown, "corrupt", "restore the directory from a backup"]);
    assert_eq!(Files::of(&dir).names(), before.names());
}

#[test]
fn a_tampered_event_is_named_by_verify_and_a_tampered_head_stops_serve() {
    let parent = tempfile::tempdir().unwrap();
    let original = parent.path().join("original");
    ledger(&original);

    // The last event is what the next one would link to: serve checks it
    // (hash included) and refuses.
    let head = parent.path().join("head");
    copy_dir(&original, &head);
    with_db(&head, |db| tamper_event(db, 3));
    let before = Files::of(&head);
    assert_refused(&serve(&head), "serve, head tampered", &["event 3 is corrupt", "does not match its key or hash"]);
    let verify = run(&["verify"], &head);
    assert_eq!(verify.status.code(), Some(3), "{}", String::from_utf8_lossy(&verify.stderr));
    assert!(String::from_utf8_lossy(&verify.stderr).contains("event 3"));
    assert_unchanged(&head, &before, "a tampered head");

    // An earlier event: serve starts — it loads the stored projections and
    // checks the head, not the whole chain at every start (`verify` does
    // that; reading the event fails with "event 2 is corrupt"). verify
    // names the event and exits 3.
    let middle = parent.path().join("middle");
    copy_dir(&original, &middle);
    with_db(&middle, |db| tamper_event(db, 2));
    let verify = run(&["verify"], &middle);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert_eq!(verify.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("event 2 (fund)") && stderr.contains("do not match its hash"), "{stderr}");
    let server = Server::start(&middle);
    server.kill();
}

#[test]
fn a_data_dir_in_use_is_refused_naming_the_lock() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("ledger");
    ledger(&dir);
    let server = Server::start(&dir);
    let shown = dir.display().to_string();
    let lock = dir.join("db").display().to_string();
    assert_refused(&serve(&dir), "a second serve", &[&shown, "in use by another process", "lock", &lock]);
    assert_refused(&run(&["init"], &dir), "init", &[&shown, "in use by another process", &lock]);
    assert_refused(&run(&["verify"], &dir), "verify", &[&shown, "is open (a server is running on it)"]);
    assert_refused(&run(&["export", "events"], &dir), "export", &[&shown, "is running (sled holds its lock)"]);
    server.kill();
}

/// The server runs with transparent huge pages off: fresh huge pages made
/// a start at 10 M events up to 1.7× slower here (docs/BENCHMARKS.md).
#[cfg(target_os = "linux")]
#[test]
fn serve_runs_without_transparent_huge_pages() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("ledger");
    ledger(&dir);
    let server = Server::start(&dir);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    assert!(status.lines().any(|line| line.split_whitespace().eq(["THP_enabled:", "0"])), "{status}");
    server.kill();
}

#[test]
fn a_newer_stored_format_is_refused_naming_the_version() {
    let parent = tempfile::tempdir().unwrap();
    let original = parent.path().join("original");
    ledger(&original);

    let marker = parent.path().join("marker-v5");
    copy_dir(&original, &marker);
    with_db(&marker, |db| {
        db.insert(b"m/format", &b"fundledger-log-v5"[..]).unwrap();
    });
    let before = Files::of(&marker);
    let shown = marker.display().to_string();
    let expected = [shown.as_str(), "\"fundledger-log-v5\"", "cannot read", "\"fundledger-log-v4\""];
    assert_refused(&serve(&marker), "serve, format marker v5", &expected);
    assert_refused(&run(&["init"], &marker), "init, format marker v5", &expected);
    assert_refused(&run(&["export", "events"], &marker), "export, format marker v5", &expected);
    assert_refused(&run(&["verify"], &marker), "verify, format marker v5", &[&shown, "fundledger-log-v5"]);
    assert_unchanged(&marker, &before, "format marker v5");

    // A record in a format version this build does not know, at the head
    // (where a newer fundledger's first new record would be).
    let record = parent.path().join("record-v3");
    copy_dir(&original, &record);
    with_db(&record, |db| {
        let mut bytes = support::stored::record(db, 3);
        bytes[0] = 3;
        support::stored::put(db, 3, bytes);
    });
    let before = Files::of(&record);
    let expected = ["event 3", "record format version 3", "cannot read", "versions 1 and 2"];
    assert_refused(&serve(&record), "serve, record format 3", &expected);
    assert_refused(&run(&["init"], &record), "init, record format 3", &expected);
    assert_unchanged(&record, &before, "record format 3");
}

// ------------------------------------------------------------ helpers

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
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

/// A `fundledger serve` child that came up.
struct Server {
    child: Child,
}

impl Server {
    /// Starts `serve` on `dir` and waits until it accepts connections.
    fn start(dir: &Path) -> Server {
        let port = free_port();
        let child = fundledger()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Server { child };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(server.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                panic!("serve on {} exited with {status}: {stderr}", dir.display());
            }
            assert!(started.elapsed() < CHILD_WAIT_MAX, "serve on {} did not come up", dir.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Checks that it is still serving, then kills it (SIGKILL: a SIGTERM
    /// could arrive before serve listens for it, and kill it anyway).
    fn kill(mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "serve exited while it should be serving");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
