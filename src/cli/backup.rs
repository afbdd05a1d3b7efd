//! The operator's `backup` and `restore`.
//!
//! `backup` asks a running server for a backup (the `Audit/Backup` RPC, as
//! an admin or auditor), writes it to a temporary file beside `--out`,
//! fsyncs it, reads it back through the same checks `restore` runs, and only
//! then renames it into place: a file at `--out` is always a whole backup.
//!
//! `restore` builds a ledger from a backup file in a temporary directory
//! beside `--data-dir`: the log from the file (`log::backup::restore`), then
//! the verification of the whole history (`audit::verify`), then the
//! projections by replay, stored as their checkpoint; only a ledger that
//! verifies is renamed into place. Anything wrong with the file — truncated,
//! altered, not a backup — is refused, and leaves nothing behind. It never
//! writes into an existing ledger, nor into any directory that holds files.
//!
//! The restored ledger has no signing key: a backup never holds the secret
//! key. The first `serve` creates a new one, unless the original key pair
//! (`signing-key`, `signing-key.pub`, kept apart like any secret) is put
//! into the directory before it (see docs/RELIABILITY.md).

use crate::api::pb;
use crate::audit::checkpoint::format_micros;
use crate::audit::verify::{self, NoProgress, Target};
use crate::log::backup::{self, BackupSummary};
use crate::log::StoreFormat;
use crate::projections::Projections;
use anyhow::Context as _;
use clap::Args;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// An admin's or auditor's connection.
    #[command(flatten)]
    pub connection: super::ServerArgs,
    /// Write the backup to this file. It must not exist yet: a backup is
    /// never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file, from `fundledger backup`.
    pub file: PathBuf,
    /// Where to create the restored ledger: a directory that does not exist
    /// yet (or is empty). An existing ledger is never overwritten.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// `fundledger backup`.
pub async fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let out = &args.out;
    if std::fs::symlink_metadata(out).is_ok() {
        anyhow::bail!("{} exists: a backup is never overwritten; choose a new name", out.display());
    }
    let parent = parent_of(out);
    let mut building = tempfile::Builder::new()
        .prefix(".fundledger-backup-")
        .suffix(".partial")
        .tempfile_in(parent)
        .with_context(|| format!("cannot create a temporary file beside {}", out.display()))?;

    let mut client = super::audit::connect_to(&args.connection).await?;
    let mut stream = client.backup(pb::BackupRequest {}).await?.into_inner();
    {
        let mut file = BufWriter::new(building.as_file_mut());
        while let Some(chunk) = stream.message().await? {
            file.write_all(&chunk.data).with_context(|| format!("cannot write the backup beside {}", out.display()))?;
        }
        file.flush().with_context(|| format!("cannot write the backup beside {}", out.display()))?;
    }
    building.as_file().sync_all().with_context(|| format!("cannot sync the backup beside {}", out.display()))?;

    // What arrived is checked as a restore would check it before it is kept.
    let path = building.path().to_owned();
    let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<BackupSummary> {
        let file = std::fs::File::open(&path)?;
        Ok(backup::check(BufReader::new(file))?)
    })
    .await?
    .with_context(|| {
        format!("the backup received from {} does not check, so it was not kept", args.connection.server)
    })?;

    building.persist_noclobber(out).map_err(|e| e.error).with_context(|| {
        format!("cannot move the backup into place at {} (an existing file is never overwritten)", out.display())
    })?;
    sync_dir(parent)?;
    let elapsed = started.elapsed();
    super::emit(format!(
        "backup of events 1 to {} (head hash {}, recorded {}), {} request entries: {}, {} bytes, in {}.{:03} s",
        summary.head_seq,
        hex::encode(summary.head_hash),
        format_micros(summary.head_recorded_at_micros),
        summary.requests,
        out.display(),
        summary.bytes,
        elapsed.as_secs(),
        elapsed.subsec_millis()
    ))
}

/// What `restore` made.
#[derive(Clone, Debug)]
pub struct Restored {
    pub backup: BackupSummary,
    pub report: verify::Report,
    /// The stored format of the log restored: v2 for a v2 log's backup,
    /// v4 (the new logs' format) for a v3 or v4 log's.
    pub format: StoreFormat,
}

/// `fundledger restore`.
pub async fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let (file, dir) = (args.file.clone(), args.data_dir.clone());
    let restored = tokio::task::spawn_blocking(move || restore_data_dir(&file, &dir)).await??;
    let (backup, report) = (&restored.backup, &restored.report);
    super::emit(format!("restored {} into {}", args.file.display(), args.data_dir.display()))?;
    super::emit(format!(
        "  {} events, {} streams, {} requests; head: event {}, hash {}, recorded {}",
        report.events,
        report.streams,
        report.requests,
        report.head_seq,
        hex::encode(report.head_hash),
        format_micros(report.head_recorded_at_micros)
    ))?;
    let entries = match restored.format {
        StoreFormat::V2 => "the idempotency entries and the stream index",
        StoreFormat::V3 | StoreFormat::V4 => "each command's fingerprint and request id",
    };
    super::emit(format!(
        "  verified: the hash chain, {entries}; projections rebuilt by replay ({} bytes of backup)",
        backup.bytes
    ))?;
    super::emit(format!("  stored format: {}", String::from_utf8_lossy(restored.format.marker())))?;
    super::emit(
        "  signing key: none (a backup never holds it). Put the original `signing-key` and `signing-key.pub` \
         into the directory before the first `serve` to keep it; otherwise `serve` creates a new one",
    )
}

/// Restores the backup `file` as a new ledger at `data_dir`; see the module
/// doc. Blocking.
pub fn restore_data_dir(file: &Path, data_dir: &Path) -> anyhow::Result<Restored> {
    check_target(data_dir)?;
    let input = std::fs::File::open(file).with_context(|| format!("cannot open the backup {}", file.display()))?;
    let parent = parent_of(data_dir);
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".fundledger-restore-");
    // As `init` does: what `mkdir` gives under the usual umask.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755));
    let building = builder.tempdir_in(parent).with_context(|| format!("cannot restore into {}", data_dir.display()))?;

    let refused = || format!("cannot restore {} (nothing was written to {})", file.display(), data_dir.display());
    let (mut log, summary) = backup::restore(BufReader::new(input), building.path()).with_context(refused)?;
    let reader = log.reader();
    let report = verify::verify_log(&reader, Target::stopped(&reader)?, None, &NoProgress).with_context(refused)?;
    if let Some(broken) = &report.broken {
        anyhow::bail!("{}: the restored ledger does not verify: {broken}", refused());
    }
    // The same fold has just run through every event without complaint.
    let projections = Projections::replay(&reader, summary.head_seq).with_context(refused)?;
    // With a v3 or v4 log's indexes, built as the records came, at the same head.
    log.put_checkpoint(&projections.checkpoint_bytes()).with_context(refused)?;
    let format = log.format();
    drop(reader);
    drop(log);

    match std::fs::rename(building.path(), data_dir) {
        Ok(()) => {}
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot move the restored ledger into place at {}", data_dir.display()))
        }
    }
    // Renamed away: nothing is left for the guard to remove.
    let _ = building.keep();
    sync_dir(parent)?;
    Ok(Restored { backup: summary, report, format })
}

/// A restore goes into a new directory, or an empty one: never over a
/// ledger, nor over anything else.
fn check_target(data_dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(data_dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot look at {}", data_dir.display())),
        Ok(meta) if !meta.is_dir() => {
            anyhow::bail!("{} exists and is not a directory: restore into a new directory", data_dir.display())
        }
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(data_dir).with_context(|| format!("cannot look into {}", data_dir.display()))?;
            match entries.next() {
                None => Ok(()),
                Some(_) if data_dir.join("db").exists() => anyhow::bail!(
                    "{} holds a ledger: a restore never overwrites one; restore into a new directory",
                    data_dir.display()
                ),
                Some(_) => anyhow::bail!(
                    "{} is not empty: a restore never overwrites anything; restore into a new directory",
                    data_dir.display()
                ),
            }
        }
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A rename must survive a crash: sync the directory that holds it.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}
