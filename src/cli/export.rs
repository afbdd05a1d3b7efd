//! `fundledger export events|journal|360giving` and `fundledger statement`:
//! the auditors' exports, offline from a stopped ledger's directory
//! (`--data-dir`, read from a private copy: the directory is never written
//! to) or through the `Export` service of a running server (`--server`).
//! Both paths run the same generator and write the same bytes.

use crate::api::auth::Bearer;
use crate::api::pb::{self, export_client::ExportClient};
use crate::domain::PartnerId;
use crate::export::{self, statement, three_sixty_giving, Export, LogEvents, OfflineLog};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Every event as JSON Lines, with its whole envelope, decoded payload and
    /// exact payload bytes: enough to re-verify the hash chain (docs/AUDIT.md).
    Events {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        output: Output,
    },
    /// The double-entry journal as CSV, one line per posting.
    Journal {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        output: Output,
    },
    /// The awarded grants in the 360Giving Data Standard (JSON package or CSV).
    #[command(name = "360giving")]
    ThreeSixtyGiving {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        output: Output,
        /// Your 360Giving prefix; grant ids are the prefix and the application id.
        #[arg(long, default_value = three_sixty_giving::PREFIX_DEFAULT)]
        prefix: String,
        #[arg(long, value_enum, default_value_t = GivingFormat::Json)]
        format: GivingFormat,
    },
}

/// Where the ledger is: exactly one of `--data-dir` and `--server`.
#[derive(Args, Debug, Clone)]
pub struct Source {
    /// A stopped ledger's directory. It is copied to a private temporary
    /// directory and read there, so it is never modified; a running ledger
    /// is refused (use --server).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A running server's URL, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    pub server: Option<String>,
    /// With --server: the bearer token of an auditor, officer or admin.
    #[arg(long, env = "FUNDLEDGER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --server over TLS: trust this PEM CA certificate.
    #[arg(long, env = "FUNDLEDGER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct Output {
    /// Write here instead of to standard output (the file appears only once
    /// the export is complete).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GivingFormat {
    Json,
    Csv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatementFormat {
    Table,
    Csv,
}

/// The funding-status statement, per partner and for the fund, per period.
#[derive(Args, Debug)]
pub struct StatementArgs {
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub output: Output,
    /// One partner's statement; every partner's and the fund's by default.
    #[arg(long)]
    pub partner: Option<String>,
    /// One period: 2024-Q1, 2024-03 or 2024. By default every quarter from
    /// the first movement of money to the last.
    #[arg(long)]
    pub period: Option<String>,
    #[arg(long, value_enum, default_value_t = StatementFormat::Table)]
    pub format: StatementFormat,
}

pub async fn run_export(command: ExportCommand) -> anyhow::Result<()> {
    match command {
        ExportCommand::Events { source, output } => {
            run(&source, &output, Export::Events, |mut client| async move {
                Ok(client.export_events(pb::ExportEventsRequest {}).await?.into_inner())
            })
            .await
        }
        ExportCommand::Journal { source, output } => {
            run(&source, &output, Export::Journal, |mut client| async move {
                Ok(client.export_journal(pb::ExportJournalRequest {}).await?.into_inner())
            })
            .await
        }
        ExportCommand::ThreeSixtyGiving { source, output, prefix, format } => {
            let (format, name) = match format {
                GivingFormat::Json => (three_sixty_giving::Format::Json, "json"),
                GivingFormat::Csv => (three_sixty_giving::Format::Csv, "csv"),
            };
            let request = pb::Export360GivingRequest { prefix: prefix.clone(), format: name.into() };
            let export = Export::ThreeSixtyGiving(three_sixty_giving::Options { prefix, format });
            run(&source, &output, export, |mut client| async move {
                Ok(client.export360_giving(request).await?.into_inner())
            })
            .await
        }
    }
}

pub async fn run_statement(args: StatementArgs) -> anyhow::Result<()> {
    let (format, name) = match args.format {
        StatementFormat::Table => (statement::Format::Table, "table"),
        StatementFormat::Csv => (statement::Format::Csv, "csv"),
    };
    let request = statement::Request {
        partner: args.partner.as_deref().map(PartnerId::new).transpose()?,
        period: args.period.as_deref().map(statement::Period::parse).transpose()?,
        format,
    };
    let pb_request = pb::ExportStatementRequest { partner_id: args.partner, period: args.period, format: name.into() };
    run(&args.source, &args.output, Export::Statement(request), |mut client| async move {
        Ok(client.export_statement(pb_request).await?.into_inner())
    })
    .await
}

/// Runs one export from either source into the output.
async fn run<F, Fut>(source: &Source, output: &Output, export: Export, call: F) -> anyhow::Result<()>
where
    F: FnOnce(ExportClient<InterceptedService<tonic::transport::Channel, Bearer>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<tonic::Streaming<pb::ExportChunk>>>,
{
    let mut sink = Sink::open(output.out.as_deref())?;
    match (&source.data_dir, &source.server) {
        (Some(_), Some(_)) => anyhow::bail!("give either --data-dir DIR or --server URL, not both"),
        (Some(dir), None) => {
            let log = OfflineLog::open(dir)?;
            let reader = log.reader();
            if log.head_seq() == 0 {
                return Err(export::ExportError::EmptyLedger.into());
            }
            export::write(&export, LogEvents::new(&reader, log.head_seq()), &mut sink)?;
        }
        (None, Some(server)) => {
            let channel = super::channel(server, source.ca_cert.as_deref()).await?;
            let bearer = Bearer::new(super::token(source.token.as_deref())?)?;
            let client = ExportClient::with_interceptor(channel, bearer);
            let mut chunks = call(client).await?;
            while let Some(chunk) = chunks.next().await {
                sink.write_all(chunk?.text.as_bytes())?;
            }
        }
        (None, None) => anyhow::bail!("say where the ledger is: --data-dir DIR or --server URL"),
    }
    sink.finish()
}

/// Standard output, or a file that appears under its name only when the
/// export is complete (a failed export leaves no half-written file).
enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File { file: std::io::BufWriter<tempfile::NamedTempFile>, path: PathBuf },
}

impl Sink {
    fn open(path: Option<&Path>) -> anyhow::Result<Sink> {
        let Some(path) = path else {
            return Ok(Sink::Stdout(std::io::BufWriter::new(std::io::stdout())));
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let file = tempfile::NamedTempFile::new_in(parent)
            .with_context(|| format!("cannot create a file in {}", parent.display()))?;
        Ok(Sink::File { file: std::io::BufWriter::new(file), path: path.to_owned() })
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(mut out) => Ok(out.flush()?),
            Sink::File { file, path } => {
                let file = file.into_inner().map_err(|e| e.into_error())?;
                file.as_file().sync_all()?;
                file.persist(&path).with_context(|| format!("cannot write {}", path.display()))?;
                Ok(())
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(bytes),
            Sink::File { file, .. } => file.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}
