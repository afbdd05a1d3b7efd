//! `fundledger serve`: open the ledger, serve gRPC until SIGTERM or Ctrl-C,
//! then answer in-flight calls, commit what is queued and stop.

use crate::cli::ServeArgs;
use crate::ledger::{Ledger, LedgerConfig, LedgerError};
use crate::log::EventLog;
use anyhow::Context as _;
use std::path::Path;

/// Turns transparent huge pages off for this process (Linux; elsewhere it
/// does nothing). The binaries call it first thing in `main`: from then on
/// no new page of the process is a huge one (those that already are stay).
///
/// mimalloc marks the memory it maps for huge pages (`MADV_HUGEPAGE`; the
/// same prctl is what its `MIMALLOC_ALLOW_THP=0` does), and a fresh huge
/// page is 2 MiB zeroed at its first touch, often after the kernel compacts
/// memory to find one. A start decodes gigabytes of state into fresh memory: on the
/// virtual machines measured here, touching 2.5 GiB took 2.7–5.1 s with huge
/// pages and 1.2–1.4 s without, and a start at 10 M events ran up to 1.7×
/// faster without them. The price: a full replay at 10 M events, folding
/// through 4 KiB pages, runs about 8% slower (docs/BENCHMARKS.md). Best
/// effort: a kernel that refuses leaves the default.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Structured logs to stderr; `RUST_LOG` overrides the default level.
pub fn init_tracing(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json, "info");
    // `init` makes a ledger; `serve` only serves one. Opening would create
    // an empty ledger that nobody can use, in a directory that may be a typo.
    EventLog::check_present(&args.data_dir)?;
    let ledger = Ledger::open(LedgerConfig::new(&args.data_dir))
        .with_context(|| format!("cannot open the ledger in {}", args.data_dir.display()))?;
    if ledger.projections().state.principals.is_empty() {
        ledger.shutdown().await;
        anyhow::bail!(
            "the ledger in {dir} has no admin: its `fundledger init` did not finish; \
             run `fundledger init --data-dir {dir}` again",
            dir = args.data_dir.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    crate::api::server::serve(ledger.clone(), listener, shutdown_signal()).await?;
    ledger.shutdown().await;
    tracing::info!(head = ledger.head_seq(), "stopped; every acknowledged command is on disk");
    refresh_after_stop(ledger, &args.data_dir).await;
    Ok(())
}

/// After the ledger has stopped: brings sled's snapshot up to date, so that
/// the next start reads it alone instead of every log segment this run
/// wrote (`EventLog::refresh_sled_snapshot`). Not after a storage failure
/// stopped the writer: nothing more is written to that disk then, and the
/// next start catches up as after a crash. Nor after a run that wrote
/// nothing: sled's open brought the snapshot up to date (but for sled's
/// own few page writes), and a refresh would cost a second open (seconds
/// at millions of events) for next to nothing.
/// Answers what was done (`None`: skipped); failures are logged, and lose
/// nothing.
pub async fn refresh_after_stop(
    ledger: Ledger,
    data_dir: &Path,
) -> Option<Result<std::time::Duration, crate::log::LogError>> {
    if *ledger.watch_failure().borrow() {
        tracing::warn!(
            "a storage failure stopped the writer: nothing more is written to this disk, so the storage \
             engine's snapshot is left for the next start to bring up to date"
        );
        return None;
    }
    if !ledger.log_written_since_open() {
        tracing::info!("nothing was written since the start: the storage engine's snapshot is up to date");
        return None;
    }
    drop(ledger);
    let dir = data_dir.to_owned();
    let refreshed = tokio::task::spawn_blocking(move || EventLog::refresh_sled_snapshot(&dir))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
    match &refreshed {
        Ok(took) => tracing::info!(
            elapsed_ms = took.as_millis() as u64,
            "brought the storage engine's snapshot up to date, so that the next start is fast"
        ),
        Err(error) => tracing::warn!(
            %error,
            "did not bring the storage engine's snapshot up to date; nothing is lost, but the next start \
             reads what this run wrote"
        ),
    }
    Some(refreshed)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: answering in-flight calls");
}

/// `fundledger init`: a new ledger and its first admin.
///
/// A new directory is made whole or not at all: the ledger is built in a
/// temporary directory beside it and renamed into place once its admin is
/// durable, so a failure (a full disk, a killed process) leaves nothing
/// that `serve` could mistake for a ledger. An existing directory (empty,
/// or a ledger whose `init` did not finish) is set up in place; `serve`
/// refuses it until it has an admin.
pub async fn init(data_dir: &Path, admin: &str) -> anyhow::Result<()> {
    let admin = crate::domain::PrincipalId::new(admin)?;
    let token = match std::fs::symlink_metadata(data_dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => init_new(data_dir, admin.clone()).await?,
        Err(error) => anyhow::bail!("cannot look at {}: {error}", data_dir.display()),
        Ok(meta) if !meta.is_dir() => {
            anyhow::bail!("{} is not a directory: give a new or empty directory for the ledger", data_dir.display())
        }
        Ok(_) => init_in(data_dir, data_dir, admin.clone()).await?,
    };
    println!("Created the ledger in {} with admin {admin}.", data_dir.display());
    println!("The admin token, shown only now (the ledger keeps only its SHA-256):");
    println!("{token}");
    Ok(())
}

async fn init_new(data_dir: &Path, admin: crate::domain::PrincipalId) -> anyhow::Result<String> {
    let parent = match data_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".fundledger-init-");
    // What `mkdir` gives under the usual umask: tempfile's own 0700 would
    // keep an auditor's account from reading `signing-key.pub` (the secret
    // key file is 0600 whatever the directory's mode).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755));
    let building =
        builder.tempdir_in(parent).with_context(|| format!("cannot create the ledger in {}", data_dir.display()))?;
    let token = init_in(building.path(), data_dir, admin).await?;
    std::fs::rename(building.path(), data_dir)
        .with_context(|| format!("cannot move the new ledger into place at {}", data_dir.display()))?;
    // The rename must survive a crash; the temporary directory is gone.
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", parent.display()))?;
    // Renamed away: nothing is left for the guard to remove.
    let _ = building.keep();
    Ok(token)
}

/// Sets up a ledger in `open_at`; errors name `named`, the directory the
/// user gave (`open_at` may be the temporary directory it is built in).
async fn init_in(open_at: &Path, named: &Path, admin: crate::domain::PrincipalId) -> anyhow::Result<String> {
    let ledger = Ledger::open(LedgerConfig::new(open_at))
        .map_err(|error| match error {
            LedgerError::Log(error) => LedgerError::Log(error.naming(named)),
            other => other,
        })
        .with_context(|| format!("cannot create the ledger in {}", named.display()))?;
    let token = crate::api::auth::init_admin(&ledger, admin).await;
    ledger.shutdown().await;
    token.with_context(|| format!("cannot create the ledger in {}", named.display()))
}
