//! The auditor's subcommands: `verify` (offline on a data directory, or
//! online through the `Audit` service), `checkpoint` (a signed checkpoint
//! of a running ledger, as a JSON file) and `key` (the ledger's public key).
//!
//! `verify --data-dir` and `key` read a data directory and never write to
//! it; everything else speaks gRPC. Exit codes of `verify`: 0 when verified,
//! 3 when the log or the checkpoint does not verify ([`VerificationFailed`]),
//! 1 when the verification could not be carried out (no ledger, in use,
//! unreadable checkpoint file), 2 for a usage error (clap's).

use super::{emit, print_json};
use crate::api::audit::{checkpoint_from_pb, checkpoint_to_pb, report_to_pb};
use crate::api::pb::{self, audit_client::AuditClient};
use crate::audit::checkpoint::{format_micros, SignedCheckpoint, FILE_BYTES_MAX};
use crate::audit::key;
use crate::audit::verify::{self, CheckpointClaim, Progress, Report};
use anyhow::Context as _;
use clap::{ArgGroup, Args, Subcommand};
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify a ledger's whole history: offline on a stopped ledger's data
    /// directory (never modified), or online on a running server.
    Verify(VerifyArgs),
    /// Take a signed checkpoint of a running ledger's head and keep it as JSON.
    Checkpoint(CheckpointArgs),
    /// Print the public key (hex) that signs the ledger's checkpoints.
    Key(KeyArgs),
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("ledger").required(true).args(["data_dir", "server"])))]
pub struct VerifyArgs {
    /// A stopped ledger's data directory, or a copy of one. Never modified:
    /// it is copied to a temporary directory and the copy is opened.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Verify a running ledger online instead (the VerifyLog RPC).
    #[arg(long)]
    pub server: Option<String>,
    /// With --server: the bearer token of an auditor (or officer, admin).
    #[arg(long, env = "FUNDLEDGER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --server over TLS: trust this PEM CA certificate.
    #[arg(long, env = "FUNDLEDGER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// A checkpoint file from `fundledger checkpoint`: the log must still
    /// extend it, signed by the ledger's key.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A public key (64 hex digits) you trust, e.g. published by the fund:
    /// the checkpoint must be signed by it.
    #[arg(long, requires = "checkpoint")]
    pub public_key: Option<String>,
    /// Print the report as JSON (the VerifyLogResponse message).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    /// An auditor's (or officer's, admin's) connection.
    #[command(flatten)]
    pub connection: super::ServerArgs,
    /// Write the checkpoint to this file (it must not exist yet) instead of
    /// printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    /// The ledger's data directory.
    #[arg(long, env = "FUNDLEDGER_DATA_DIR", default_value = "./fundledger-data")]
    pub data_dir: PathBuf,
    /// Print `{"public_key": "…"}` instead of the bare key.
    #[arg(long)]
    pub json: bool,
}

/// The log or a checkpoint did not verify: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("verification failed: {0}")]
pub struct VerificationFailed(pub String);

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Checkpoint(args) => checkpoint(args).await,
        AuditCommand::Key(args) => print_key(&args),
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let checkpoint = args.checkpoint.as_deref().map(read_checkpoint).transpose()?;
    let trusted_key = args
        .public_key
        .as_deref()
        .map(|text| key::parse_public_hex(text).map_err(|problem| anyhow::anyhow!("--public-key: {problem}")))
        .transpose()?;
    let (response, report) = match (&args.data_dir, &args.server) {
        (Some(dir), _) => {
            let claim = checkpoint.map(|checkpoint| CheckpointClaim { checkpoint, ledger_key: None, trusted_key });
            let dir = dir.clone();
            let report = tokio::task::spawn_blocking(move || {
                let bar = Bar::new();
                let report = verify::verify_data_dir(&dir, claim, &bar);
                bar.0.finish_and_clear();
                report.with_context(|| format!("cannot verify {}", dir.display()))
            })
            .await??;
            (report_to_pb(&report), Some(report))
        }
        (None, Some(server)) => {
            let mut client = connect(server, args.token.as_deref(), args.ca_cert.as_deref()).await?;
            let request = pb::VerifyLogRequest {
                checkpoint: checkpoint.as_ref().map(checkpoint_to_pb),
                trusted_public_key: args.public_key.clone().unwrap_or_default(),
            };
            (client.verify_log(request).await?.into_inner(), None)
        }
        (None, None) => unreachable!("clap requires --data-dir or --server"),
    };
    if args.json {
        print_json(&response, "fundledger.v1.VerifyLogResponse")?;
    } else {
        print_summary(&args, &response, report.as_ref())?;
    }
    match response.first_broken {
        None => Ok(()),
        Some(broken) => Err(VerificationFailed(match broken.seq {
            Some(seq) if broken.stream.is_empty() => format!("event {seq}: {}", broken.problem),
            Some(seq) => format!("event {seq} ({}): {}", broken.stream, broken.problem),
            None => broken.problem,
        })
        .into()),
    }
}

fn print_summary(args: &VerifyArgs, response: &pb::VerifyLogResponse, report: Option<&Report>) -> anyhow::Result<()> {
    let source = match (&args.data_dir, &args.server) {
        (Some(dir), _) => format!("{} (offline, on a temporary copy)", dir.display()),
        (_, server) => format!("{} (online, up to its durable head)", server.as_deref().unwrap_or_default()),
    };
    let verdict = if response.verified { "verified" } else { "NOT verified" };
    emit(format!("{verdict}: {source}"))?;
    let at = response.head_recorded_at.as_ref().map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000);
    let passed = if response.verified { "events" } else { "events before the first broken one" };
    // A checkpoint that fails its signature stops everything before the log is read.
    if response.verified || response.events > 0 || response.first_broken.as_ref().is_some_and(|b| b.seq.is_some()) {
        emit(format!(
            "  {} {passed}, in {} streams, {} request ids",
            response.events, response.streams, response.requests
        ))?;
    }
    if response.head_seq > 0 {
        emit(format!(
            "  head: event {}, hash {}, recorded {}",
            response.head_seq,
            response.head_hash,
            at.map(format_micros).unwrap_or_default()
        ))?;
    }
    match response.projections_checked_at {
        Some(seq) => emit(format!("  projections: a replay reproduces those stored at event {seq}"))?,
        None if response.verified => emit("  projections: none stored yet; the replay completed")?,
        None => {}
    }
    if response.live_projections_checked {
        emit("  projections: a replay reproduces the running ledger's")?;
    }
    if let Some(checked) = report.and_then(|r| r.checkpoint.as_ref()) {
        emit(format!(
            "  checkpoint: event {} still has hash {}; signed by {}",
            checked.seq,
            hex::encode(checked.head_hash),
            checked.public_key
        ))?;
        emit(format!(
            "  checkpoint key: {}; {}",
            if checked.ledger_key_checked {
                "the ledger's own (signing-key.pub)"
            } else {
                "the ledger's own key was not available to compare"
            },
            if checked.trusted_key_checked { "the key you trust" } else { "no trusted key given (--public-key)" }
        ))?;
    } else if response.checkpoint_verified {
        emit("  checkpoint: the log extends it, and the ledger's key signed it")?;
    }
    emit(format!("  elapsed: {}.{:03} s", response.elapsed_ms / 1000, response.elapsed_ms % 1000))
}

async fn checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
    let mut client = connect_to(&args.connection).await?;
    let response = client.get_checkpoint(pb::GetCheckpointRequest {}).await?.into_inner();
    let message = response.checkpoint.context("the server answered without a checkpoint")?;
    let signed = checkpoint_from_pb(&message).map_err(|e| anyhow::anyhow!("the server's checkpoint: {e}"))?;
    // A checkpoint is only worth keeping if it verifies now.
    signed.verify_signature().context("the server's checkpoint")?;
    let json = signed.to_json();
    let Some(path) = args.out else {
        return emit(json.trim_end());
    };
    // An earlier checkpoint is evidence: never overwrite one.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).with_context(|| {
        format!("cannot create {} (an existing checkpoint is never overwritten; choose a new name)", path.display())
    })?;
    file.write_all(json.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    emit(format!(
        "checkpoint of event {} (hash {}, recorded {}) signed by {}: {}",
        signed.checkpoint.seq,
        hex::encode(signed.checkpoint.head_hash),
        format_micros(signed.checkpoint.recorded_at_micros),
        hex::encode(signed.public_key.as_bytes()),
        path.display()
    ))
}

fn print_key(args: &KeyArgs) -> anyhow::Result<()> {
    let public = key::read_public(&args.data_dir)?.with_context(|| {
        format!(
            "{} has no {}: the ledger creates its signing key when it first opens the directory (`fundledger serve`)",
            args.data_dir.display(),
            key::PUBLIC_KEY_FILE
        )
    })?;
    let hex = hex::encode(public.as_bytes());
    match args.json {
        true => emit(serde_json::json!({ "public_key": hex })),
        false => emit(hex),
    }
}

fn read_checkpoint(path: &Path) -> anyhow::Result<SignedCheckpoint> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open the checkpoint {}", path.display()))?;
    let mut text = String::new();
    file.take(FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= FILE_BYTES_MAX,
        "{} is larger than {FILE_BYTES_MAX} bytes: not a checkpoint",
        path.display()
    );
    SignedCheckpoint::from_json(&text).with_context(|| format!("checkpoint {}", path.display()))
}

pub(super) type Client =
    AuditClient<tonic::service::interceptor::InterceptedService<Channel, crate::api::auth::Bearer>>;

/// An Audit client calling `server` as the holder of `token`.
/// [`connect`] with a command's [`super::ServerArgs`].
pub(super) async fn connect_to(args: &super::ServerArgs) -> anyhow::Result<Client> {
    connect(&args.server, args.token.as_deref(), args.ca_cert.as_deref()).await
}

pub(super) async fn connect(
    server: &str,
    token: Option<&str>,
    ca_cert: Option<&std::path::Path>,
) -> anyhow::Result<Client> {
    let channel = super::channel(server, ca_cert).await?;
    let bearer = crate::api::auth::Bearer::new(super::token(token)?)?;
    Ok(AuditClient::with_interceptor(channel, bearer))
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar(indicatif::ProgressBar::hidden());
        }
        let style = indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({eta} left)")
            .expect("a valid template")
            .progress_chars("=> ");
        Bar(indicatif::ProgressBar::new(0).with_style(style))
    }
}

impl Progress for Bar {
    fn phase(&self, name: &'static str, total: u64) {
        self.0.set_message(name);
        self.0.set_length(total);
        self.0.set_position(0);
    }
    fn advance(&self, steps: u64) {
        self.0.inc(steps);
    }
}
