//! The command line: `serve`, `demo`, and a client subcommand for every
//! command and query of the gRPC API. Output is a human-readable table by
//! default and the protobuf JSON mapping with `--json`, for scripts.
//!
//! The client only speaks gRPC: it never opens a data directory. The
//! auditor's `verify --data-dir` and `key` ([`audit`]) read one, and never
//! write to it.

pub mod audit;
pub mod backup;
pub mod export;
pub mod render;

use crate::api::auth::{self, Client};
use crate::api::pb;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::path::PathBuf;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[derive(Parser, Debug)]
#[command(name = "fundledger", version, about = "Event-sourced ledger for a pooled grant fund")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the ledger server.
    Serve(ServeArgs),
    /// Tell the Loket D story through the gRPC API of a server it starts itself.
    Demo {
        /// Keep the demo's ledger here (it must be empty or new) for inspection or `serve`.
        #[arg(long, env = "FUNDLEDGER_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Create a new ledger and print its first admin token (shown only once).
    Init {
        #[arg(long, env = "FUNDLEDGER_DATA_DIR", default_value = "./fundledger-data")]
        data_dir: PathBuf,
        /// The admin's principal id.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Export the ledger for auditors: events (JSON Lines), journal (CSV), 360giving.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// The funding-status statement per partner and for the fund, per period.
    Statement(export::StatementArgs),
    /// Take a consistent backup of a running ledger into a file (admin or auditor token).
    Backup(backup::BackupArgs),
    /// Create a new ledger from a backup file, and verify it.
    Restore(backup::RestoreArgs),
    #[command(flatten)]
    Client(Box<ClientCommand>),
    #[command(flatten)]
    Audit(audit::AuditCommand),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the ledger keeps its log.
    #[arg(long, env = "FUNDLEDGER_DATA_DIR", default_value = "./fundledger-data")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "FUNDLEDGER_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: std::net::SocketAddr,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "FUNDLEDGER_LOG_JSON")]
    pub log_json: bool,
    /// Serve over TLS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, env = "FUNDLEDGER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FUNDLEDGER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Options every client subcommand takes.
#[derive(Args, Clone)]
pub struct Connection {
    /// The server's URL.
    #[arg(long, global = true, env = "FUNDLEDGER_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Print the answer as JSON (the protobuf JSON mapping) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token of the principal calling (from `init` or `principal add`).
    #[arg(long, global = true, env = "FUNDLEDGER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust this PEM CA certificate for a TLS server (an https:// URL).
    #[arg(long, global = true, env = "FUNDLEDGER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// Where a command of its own (`checkpoint`, `backup`) finds the server:
/// [`Connection`] without its global flags.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(long, env = "FUNDLEDGER_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Bearer token of the principal calling (from `init` or `principal add`).
    #[arg(long, env = "FUNDLEDGER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Over TLS: trust this PEM CA certificate.
    #[arg(long, env = "FUNDLEDGER_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// Idempotency and concurrency options of every command.
#[derive(Args, Debug, Clone)]
pub struct Meta {
    /// Idempotency key; retrying with the same id never records twice. A
    /// fresh random id by default.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Refuse (ABORTED) unless the command's stream is at this version.
    #[arg(long)]
    pub expected_version: Option<u64>,
    /// Currency of the amounts given.
    #[arg(long, env = "FUNDLEDGER_CURRENCY", default_value = "EUR")]
    pub currency: String,
}

impl Meta {
    fn pb(&self) -> Option<pb::CommandMeta> {
        Some(pb::CommandMeta {
            request_id: self.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            expected_version: self.expected_version,
            positions_only: false,
        })
    }
    fn money(&self, value: &str) -> Option<pb::Money> {
        Some(pb::Money { value: value.to_string(), currency: self.currency.clone() })
    }
}

/// Which point of the history a query answers as of; none of them for the
/// live figures.
#[derive(Args, Debug, Clone)]
#[group(multiple = false)]
pub struct AsOfArgs {
    /// The figures after event N: exactly what a replay of events 1 to N gives.
    #[arg(long, value_name = "N")]
    pub as_of_seq: Option<u64>,
    /// What the ledger showed at this moment, RFC 3339 (e.g. 2024-03-01T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub as_of_time: Option<String>,
    /// The figures with value date D (YYYY-MM-DD): every event counts by its business date.
    #[arg(long, value_name = "DATE")]
    pub as_of_date: Option<String>,
}

impl AsOfArgs {
    fn pb(&self) -> anyhow::Result<Option<pb::AsOf>> {
        use pb::as_of::Point;
        let point = match (&self.as_of_seq, &self.as_of_time, &self.as_of_date) {
            (Some(seq), _, _) => Point::Seq(*seq),
            (_, Some(time), _) => Point::RecordedAt(rfc3339("--as-of-time", time)?),
            (_, _, Some(date)) => Point::BusinessDate(date.clone()),
            (None, None, None) => return Ok(None),
        };
        Ok(Some(pb::AsOf { point: Some(point) }))
    }

    fn given(&self) -> bool {
        self.as_of_seq.is_some() || self.as_of_time.is_some() || self.as_of_date.is_some()
    }
}

/// Which events `events` and `subscribe` print.
#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// Only this stream (`partner/porticus`, `fund`), or, ending in `/`, every
    /// stream that starts with it (`application/`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Only events of this type, e.g. GrantAwarded; repeat for several.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_types: Vec<String>,
    /// Only events recorded at or after this time, RFC 3339.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only events recorded before this time, RFC 3339; the output ends there.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

impl FilterArgs {
    fn pb(&self) -> anyhow::Result<Option<pb::EventFilter>> {
        use pb::event_filter::Streams;
        if self.stream.is_none() && self.event_types.is_empty() && self.since.is_none() && self.until.is_none() {
            return Ok(None);
        }
        let streams = self.stream.as_ref().map(|stream| {
            if stream.ends_with('/') {
                Streams::StreamPrefix(stream.clone())
            } else {
                Streams::Stream(stream.clone())
            }
        });
        Ok(Some(pb::EventFilter {
            streams,
            event_types: self.event_types.clone(),
            recorded_since: self.since.as_deref().map(|t| rfc3339("--since", t)).transpose()?,
            recorded_until: self.until.as_deref().map(|t| rfc3339("--until", t)).transpose()?,
        }))
    }
}

/// An RFC 3339 time as a protobuf timestamp.
fn rfc3339(flag: &str, text: &str) -> anyhow::Result<prost_types::Timestamp> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{flag} {text:?} is not an RFC 3339 time such as 2024-03-01T12:00:00Z"))?;
    let nanos = time.unix_timestamp_nanos();
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).context("time out of range")?;
    let nanos = i32::try_from(nanos.rem_euclid(1_000_000_000)).expect("below one second");
    Ok(prost_types::Timestamp { seconds, nanos })
}

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Open the fund (once per ledger).
    OpenFund {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "EUR")]
        fund_currency: String,
        #[arg(long, default_value_t = 2)]
        minor_units: u32,
    },
    /// Admit a partner fund.
    AdmitPartner {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        partner: String,
        #[arg(long)]
        name: String,
        /// e.g. NL-KVK-12345678
        #[arg(long)]
        organisation_id: String,
    },
    /// Record a partner's pledge, optionally earmarked for one round.
    Pledge {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        partner: String,
        /// Exact decimal, e.g. 100000.00
        #[arg(long)]
        amount: String,
        #[arg(long)]
        earmark: Option<String>,
        /// YYYY-MM-DD; today by default.
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Lower the outstanding part of a pledge.
    ReducePledge {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        partner: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        earmark: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Record money received from a partner.
    RecordReceipt {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        partner: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        earmark: Option<String>,
        #[arg(long, default_value_t = today())]
        value_date: String,
        #[arg(long)]
        bank_reference: String,
    },
    /// Open a round of the grant window.
    OpenRound {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        round: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        budget_ceiling: String,
        #[arg(long)]
        grant_max: String,
        #[arg(long)]
        opens_on: String,
        #[arg(long)]
        closes_on: String,
    },
    /// Close a round: no more applications or decisions in it.
    CloseRound {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        round: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Register an application.
    SubmitApplication {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        round: String,
        #[arg(long)]
        applicant_name: String,
        #[arg(long, default_value = "")]
        applicant_organisation_id: String,
        #[arg(long)]
        place: String,
        /// ISO 3166-1 alpha-2, e.g. NL or CW.
        #[arg(long, default_value = "NL")]
        country: String,
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        amount: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Record that the applicant withdrew a pending application.
    WithdrawApplication {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Reject a pending application, with a reason.
    RejectApplication {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Award a grant on a pending application.
    AwardGrant {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Reduce an active grant by an amount not yet paid.
    ReduceGrant {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Withdraw an active grant; what is unpaid goes back to the partners.
    WithdrawGrant {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Settle a grant at its final amount (vaststelling).
    SettleGrant {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        final_amount: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Record a payment (tranche) on a grant.
    MakePayment {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        amount: String,
        #[arg(long, default_value_t = today())]
        value_date: String,
        #[arg(long)]
        bank_reference: String,
    },
    /// Record money paid back on a grant.
    RecordRefund {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        amount: String,
        #[arg(long, default_value_t = today())]
        value_date: String,
        #[arg(long)]
        bank_reference: String,
    },
    /// Propose an award for a second officer to approve (four eyes).
    ProposeAward {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Approve another officer's award proposal.
    ApproveAward {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Propose a payment for a second officer to approve (four eyes).
    ProposePayment {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        amount: String,
        #[arg(long, default_value_t = today())]
        value_date: String,
        #[arg(long)]
        bank_reference: String,
    },
    /// Approve another officer's payment proposal.
    ApprovePayment {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
    },
    /// Declare your conflict of interest on an application.
    DeclareConflict {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        application: String,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value_t = today())]
        date: String,
    },
    /// Set a round's four-eyes thresholds (admins).
    SetThresholds {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        round: String,
        /// Awards above this need a second officer; omit for none.
        #[arg(long)]
        award_above: Option<String>,
        /// Payments above this need a second officer; omit for none.
        #[arg(long)]
        payment_above: Option<String>,
    },
    /// Manage who has access (admins).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Per-partner balances (all partners, or one), live or as of a point.
    Balances {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        partner: Option<String>,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// The fund's totals and head, live or as of a point.
    Summary {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// Per-round figures (all rounds, or one), live or as of a point.
    Rounds {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        round: Option<String>,
        #[command(flatten)]
        as_of: AsOfArgs,
    },
    /// One application with its grant and history.
    Application {
        #[command(flatten)]
        connection: Connection,
        id: String,
    },
    /// One grant with its position and history.
    Grant {
        #[command(flatten)]
        connection: Connection,
        id: String,
    },
    /// A page of applications, filtered by round and status.
    Applications {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        round: Option<String>,
        /// pending, withdrawn, rejected or awarded
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Print events from a sequence number on (resume with the last seq + 1).
    Events {
        #[command(flatten)]
        connection: Connection,
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// The most events to print (after filtering).
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Print events from a sequence number on, then follow new ones live.
    Subscribe {
        #[command(flatten)]
        connection: Connection,
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Give someone a role; prints their new token once.
    Add {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        principal: String,
        /// admin, officer, partner or auditor
        #[arg(long)]
        role: String,
        /// The partner a partner principal acts for.
        #[arg(long)]
        partner: Option<String>,
    },
    /// Revoke someone's access; their token stops working at once.
    Revoke {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        meta: Meta,
        #[arg(long)]
        principal: String,
        #[arg(long)]
        reason: String,
    },
    /// Everyone who was ever given access.
    List {
        #[command(flatten)]
        connection: Connection,
    },
}

fn role_of(role: &str, partner: Option<String>) -> anyhow::Result<pb::Role> {
    let kind = match role {
        "admin" => pb::RoleKind::Admin,
        "officer" => pb::RoleKind::Officer,
        "partner" => pb::RoleKind::Partner,
        "auditor" => pb::RoleKind::Auditor,
        other => anyhow::bail!("unknown role {other:?}; use admin, officer, partner or auditor"),
    };
    if (kind == pb::RoleKind::Partner) != partner.is_some() {
        anyhow::bail!("--partner goes with --role partner, and only with it");
    }
    Ok(pb::Role { kind: kind.into(), partner_id: partner })
}

/// Shows everything but the token, which must never end up in a log.
impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("json", &self.json)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

async fn connect(connection: &Connection) -> anyhow::Result<Client> {
    let channel = channel(&connection.server, connection.ca_cert.as_deref()).await?;
    Ok(auth::client(channel, token(connection.token.as_deref())?)?)
}

/// A channel to `server`: over TLS trusting `ca_cert` when given, or the
/// system's roots for an `https://` URL.
pub async fn channel(server: &str, ca_cert: Option<&std::path::Path>) -> anyhow::Result<Channel> {
    let mut endpoint =
        Channel::from_shared(server.to_owned()).with_context(|| format!("{server:?} is not a server URL"))?;
    if let Some(ca) = ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
        endpoint = endpoint.tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    } else if server.starts_with("https://") {
        endpoint = endpoint.tls_config(ClientTlsConfig::new().with_enabled_roots())?;
    }
    endpoint.connect().await.with_context(|| format!("cannot reach the ledger at {server}"))
}

/// The caller's token, or what to do without one.
pub fn token(token: Option<&str>) -> anyhow::Result<&str> {
    token.context("no token: pass --token or set FUNDLEDGER_TOKEN (an admin token comes from `fundledger init`)")
}

/// Prints a message as protobuf JSON.
fn print_json<M: prost::Message>(message: &M, full_name: &str) -> anyhow::Result<()> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).context("embedded descriptor set")?;
    let descriptor = pool.get_message_by_name(full_name).with_context(|| format!("no message {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(false);
    let mut serializer = serde_json::Serializer::pretty(std::io::stdout().lock());
    dynamic.serialize_with_options(&mut serializer, &options)?;
    emit("")
}

fn print_one_line_json<M: prost::Message>(message: &M, full_name: &str) -> anyhow::Result<()> {
    let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).context("embedded descriptor set")?;
    let descriptor = pool.get_message_by_name(full_name).with_context(|| format!("no message {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    emit(serde_json::to_string(&dynamic)?)
}

/// Writes a line to stdout. A closed pipe (`| head`) surfaces as an
/// `io::Error` of kind `BrokenPipe`, which `main` treats as a normal end.
fn emit(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

fn print_command_response(json: bool, response: &pb::CommandResponse) -> anyhow::Result<()> {
    if json {
        return print_json(response, "fundledger.v1.CommandResponse");
    }
    let verb = if response.replayed { "already recorded (retry)" } else { "recorded" };
    for e in &response.events {
        emit(format!("{verb}: #{} {} {} v{} hash {}", e.seq, e.event_type, e.stream, e.stream_version, e.hash))?;
    }
    Ok(())
}

fn print_event_line(e: &pb::RecordedEvent) -> anyhow::Result<()> {
    let at = e.recorded_at.as_ref().map(render::timestamp).unwrap_or_default();
    emit(format!(
        "#{:<6} {:<22} {:<28} v{:<3} {} {}",
        e.seq,
        e.event_type,
        e.stream,
        e.stream_version,
        at,
        &e.hash[..16.min(e.hash.len())]
    ))
}

fn status_of(text: &str) -> anyhow::Result<i32> {
    Ok(match text {
        "pending" => pb::ApplicationStatus::Pending,
        "withdrawn" => pb::ApplicationStatus::Withdrawn,
        "rejected" => pb::ApplicationStatus::Rejected,
        "awarded" => pb::ApplicationStatus::Awarded,
        other => anyhow::bail!("unknown status {other:?}; use pending, withdrawn, rejected or awarded"),
    } as i32)
}

/// Runs one client subcommand against the server.
pub async fn run_client(command: ClientCommand) -> anyhow::Result<()> {
    use ClientCommand as C;
    macro_rules! send {
        ($connection:expr, $method:ident, $request:expr) => {{
            let mut client = connect(&$connection).await?;
            let response = client.$method($request).await?.into_inner();
            print_command_response($connection.json, &response)
        }};
    }
    match command {
        C::OpenFund { connection, meta, name, fund_currency, minor_units } => send!(
            connection,
            open_fund,
            pb::OpenFundRequest { meta: meta.pb(), name, currency: fund_currency, minor_units }
        ),
        C::AdmitPartner { connection, meta, partner, name, organisation_id } => send!(
            connection,
            admit_partner,
            pb::AdmitPartnerRequest { meta: meta.pb(), partner_id: partner, name, organisation_id }
        ),
        C::Pledge { connection, meta, partner, amount, earmark, date } => send!(
            connection,
            pledge_contribution,
            pb::PledgeContributionRequest {
                meta: meta.pb(),
                partner_id: partner,
                amount: meta.money(&amount),
                earmark_round_id: earmark,
                pledged_on: date
            }
        ),
        C::ReducePledge { connection, meta, partner, amount, earmark, reason, date } => send!(
            connection,
            reduce_pledge,
            pb::ReducePledgeRequest {
                meta: meta.pb(),
                partner_id: partner,
                amount: meta.money(&amount),
                earmark_round_id: earmark,
                reason,
                reduced_on: date
            }
        ),
        C::RecordReceipt { connection, meta, partner, amount, earmark, value_date, bank_reference } => send!(
            connection,
            record_receipt,
            pb::RecordReceiptRequest {
                meta: meta.pb(),
                partner_id: partner,
                amount: meta.money(&amount),
                earmark_round_id: earmark,
                value_date,
                bank_reference
            }
        ),
        C::OpenRound { connection, meta, round, name, budget_ceiling, grant_max, opens_on, closes_on } => send!(
            connection,
            open_round,
            pb::OpenRoundRequest {
                meta: meta.pb(),
                round_id: round,
                name,
                budget_ceiling: meta.money(&budget_ceiling),
                grant_max: meta.money(&grant_max),
                opens_on,
                closes_on
            }
        ),
        C::CloseRound { connection, meta, round, date } => {
            send!(connection, close_round, pb::CloseRoundRequest { meta: meta.pb(), round_id: round, closed_on: date })
        }
        C::SubmitApplication {
            connection,
            meta,
            application,
            round,
            applicant_name,
            applicant_organisation_id,
            place,
            country,
            title,
            description,
            amount,
            date,
        } => send!(
            connection,
            submit_application,
            pb::SubmitApplicationRequest {
                meta: meta.pb(),
                application_id: application,
                round_id: round,
                applicant: Some(pb::Applicant {
                    name: applicant_name,
                    organisation_id: applicant_organisation_id,
                    place,
                    country
                }),
                title,
                description,
                amount_requested: meta.money(&amount),
                submitted_on: date
            }
        ),
        C::WithdrawApplication { connection, meta, application, reason, date } => send!(
            connection,
            withdraw_application,
            pb::WithdrawApplicationRequest { meta: meta.pb(), application_id: application, reason, withdrawn_on: date }
        ),
        C::RejectApplication { connection, meta, application, reason, date } => send!(
            connection,
            reject_application,
            pb::RejectApplicationRequest { meta: meta.pb(), application_id: application, reason, decided_on: date }
        ),
        C::AwardGrant { connection, meta, application, amount, reason, date } => send!(
            connection,
            award_grant,
            pb::AwardGrantRequest {
                meta: meta.pb(),
                application_id: application,
                amount: meta.money(&amount),
                reason,
                decided_on: date
            }
        ),
        C::ReduceGrant { connection, meta, application, amount, reason, date } => send!(
            connection,
            reduce_grant,
            pb::ReduceGrantRequest {
                meta: meta.pb(),
                application_id: application,
                amount: meta.money(&amount),
                reason,
                decided_on: date
            }
        ),
        C::WithdrawGrant { connection, meta, application, reason, date } => send!(
            connection,
            withdraw_grant,
            pb::WithdrawGrantRequest { meta: meta.pb(), application_id: application, reason, decided_on: date }
        ),
        C::SettleGrant { connection, meta, application, final_amount, reason, date } => send!(
            connection,
            settle_grant,
            pb::SettleGrantRequest {
                meta: meta.pb(),
                application_id: application,
                final_amount: meta.money(&final_amount),
                reason,
                decided_on: date
            }
        ),
        C::MakePayment { connection, meta, application, amount, value_date, bank_reference } => send!(
            connection,
            make_payment,
            pb::MakePaymentRequest {
                meta: meta.pb(),
                application_id: application,
                amount: meta.money(&amount),
                value_date,
                bank_reference
            }
        ),
        C::RecordRefund { connection, meta, application, amount, value_date, bank_reference } => send!(
            connection,
            record_refund,
            pb::RecordRefundRequest {
                meta: meta.pb(),
                application_id: application,
                amount: meta.money(&amount),
                value_date,
                bank_reference
            }
        ),
        C::ProposeAward { connection, meta, application, amount, reason, date } => send!(
            connection,
            propose_award,
            pb::ProposeAwardRequest {
                meta: meta.pb(),
                application_id: application,
                amount: meta.money(&amount),
                reason,
                proposed_on: date
            }
        ),
        C::ApproveAward { connection, meta, application, date } => send!(
            connection,
            approve_award,
            pb::ApproveAwardRequest { meta: meta.pb(), application_id: application, decided_on: date }
        ),
        C::ProposePayment { connection, meta, application, amount, value_date, bank_reference } => send!(
            connection,
            propose_payment,
            pb::ProposePaymentRequest {
                meta: meta.pb(),
                application_id: application,
                amount: meta.money(&amount),
                value_date,
                bank_reference
            }
        ),
        C::ApprovePayment { connection, meta, application } => send!(
            connection,
            approve_payment,
            pb::ApprovePaymentRequest { meta: meta.pb(), application_id: application }
        ),
        C::DeclareConflict { connection, meta, application, reason, date } => send!(
            connection,
            declare_conflict,
            pb::DeclareConflictRequest { meta: meta.pb(), application_id: application, reason, declared_on: date }
        ),
        C::SetThresholds { connection, meta, round, award_above, payment_above } => send!(
            connection,
            set_approval_thresholds,
            pb::SetApprovalThresholdsRequest {
                meta: meta.pb(),
                round_id: round,
                award_above: award_above.as_deref().and_then(|a| meta.money(a)),
                payment_above: payment_above.as_deref().and_then(|a| meta.money(a))
            }
        ),
        C::Principal(PrincipalCommand::Add { connection, meta, principal, role, partner }) => {
            let role = role_of(&role, partner)?;
            let token = auth::new_token()?;
            let mut client = connect(&connection).await?;
            let response = client
                .grant_access(pb::GrantAccessRequest {
                    meta: meta.pb(),
                    principal_id: principal.clone(),
                    role: Some(role),
                    token_sha256: hex::encode(auth::token_sha256(&token)),
                })
                .await?
                .into_inner();
            print_command_response(connection.json, &response)?;
            emit(format!("token for {principal} (shown only now; the ledger keeps only its hash):"))?;
            emit(token)
        }
        C::Principal(PrincipalCommand::Revoke { connection, meta, principal, reason }) => send!(
            connection,
            revoke_access,
            pb::RevokeAccessRequest { meta: meta.pb(), principal_id: principal, reason }
        ),
        C::Principal(PrincipalCommand::List { connection }) => {
            let mut client = connect(&connection).await?;
            let response = client.list_principals(pb::ListPrincipalsRequest {}).await?.into_inner();
            if connection.json {
                return print_json(&response, "fundledger.v1.ListPrincipalsResponse");
            }
            emit(render::principals(&response))
        }

        C::Balances { connection, partner, as_of } => {
            let request = pb::GetPartnerBalancesRequest { partner_id: partner, as_of: as_of.pb()? };
            let mut client = connect(&connection).await?;
            let response = client.get_partner_balances(request).await?.into_inner();
            if connection.json {
                return print_json(&response, "fundledger.v1.GetPartnerBalancesResponse");
            }
            if as_of.given() {
                emit(render::position(&response.position))?;
            }
            emit(render::partner_balances(&response))
        }
        C::Summary { connection, as_of } => {
            let request = pb::GetFundSummaryRequest { as_of: as_of.pb()? };
            let mut client = connect(&connection).await?;
            let response = client.get_fund_summary(request).await?.into_inner();
            if connection.json {
                return print_json(&response, "fundledger.v1.GetFundSummaryResponse");
            }
            if as_of.given() {
                emit(render::position(&response.position))?;
            }
            emit(render::fund_summary(&response))
        }
        C::Rounds { connection, round, as_of } => {
            let request = pb::GetRoundFiguresRequest { round_id: round, as_of: as_of.pb()? };
            let mut client = connect(&connection).await?;
            let response = client.get_round_figures(request).await?.into_inner();
            if connection.json {
                return print_json(&response, "fundledger.v1.GetRoundFiguresResponse");
            }
            if as_of.given() {
                emit(render::position(&response.position))?;
            }
            emit(render::round_figures(&response))
        }
        C::Application { connection, id } => {
            let mut client = connect(&connection).await?;
            let response = client.get_application(pb::GetApplicationRequest { application_id: id }).await?.into_inner();
            if connection.json {
                return print_json(&response, "fundledger.v1.GetApplicationResponse");
            }
            emit(render::application(&response))
        }
        C::Grant { connection, id } => {
            let mut client = connect(&connection).await?;
            let response = client.get_grant(pb::GetGrantRequest { application_id: id }).await?.into_inner();
            if connection.json {
                return print_json(&response, "fundledger.v1.GetGrantResponse");
            }
            emit(render::grant(&response))
        }
        C::Applications { connection, round, status, page_size, page_token } => {
            let status = status.as_deref().map(status_of).transpose()?;
            let mut client = connect(&connection).await?;
            let response = client
                .list_applications(pb::ListApplicationsRequest { round_id: round, status, page_size, page_token })
                .await?
                .into_inner();
            if connection.json {
                return print_json(&response, "fundledger.v1.ListApplicationsResponse");
            }
            emit(render::applications(&response))
        }
        C::Events { connection, from, limit, filter } => {
            let request = pb::ReadEventsRequest { from_seq: from, limit, filter: filter.pb()? };
            let mut client = connect(&connection).await?;
            let mut stream = client.read_events(request).await?.into_inner();
            while let Some(event) = stream.next().await {
                let event = event?;
                if connection.json {
                    print_one_line_json(&event, "fundledger.v1.RecordedEvent")?;
                } else {
                    print_event_line(&event)?;
                }
            }
            Ok(())
        }
        C::Subscribe { connection, from, filter } => {
            let request = pb::SubscribeRequest { from_seq: from, filter: filter.pb()? };
            let mut client = connect(&connection).await?;
            let mut stream = client.subscribe(request).await?.into_inner();
            while let Some(event) = stream.next().await {
                let event = event?;
                if connection.json {
                    print_one_line_json(&event, "fundledger.v1.RecordedEvent")?;
                } else {
                    print_event_line(&event)?;
                }
            }
            Ok(())
        }
    }
}
