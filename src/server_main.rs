//! `fundledger serve`: open the ledger, serve gRPC until SIGTERM or Ctrl-C,
//! then answer in-flight calls, commit what is queued and stop.

use crate::cli::ServeArgs;
use crate::ledger::{Ledger, LedgerConfig};
use anyhow::Context as _;

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
    let ledger = Ledger::open(LedgerConfig::new(&args.data_dir))
        .with_context(|| format!("cannot open the ledger in {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    crate::api::server::serve(ledger.clone(), listener, shutdown_signal()).await?;
    ledger.shutdown().await;
    tracing::info!(head = ledger.head_seq(), "stopped; every acknowledged command is on disk");
    Ok(())
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
pub async fn init(data_dir: &std::path::Path, admin: &str) -> anyhow::Result<()> {
    let admin = crate::domain::PrincipalId::new(admin)?;
    let ledger = Ledger::open(LedgerConfig::new(data_dir))
        .with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
    let token = crate::api::auth::init_admin(&ledger, admin.clone()).await;
    ledger.shutdown().await;
    let token = token?;
    println!("Created the ledger in {} with admin {admin}.", data_dir.display());
    println!("The admin token, shown only now (the ledger keeps only its SHA-256):");
    println!("{token}");
    Ok(())
}
