//! The gRPC server: the Ledger, Audit and Export services, health and
//! reflection on one listener, with graceful shutdown.
//!
//! The caller owns the listener (so tests can bind `127.0.0.1:0`) and the
//! ledger: after [`serve`] returns, every call has been answered, and the
//! caller shuts the ledger down.

use super::audit::AuditService;
use super::export_service::ExportService;
use super::pb;
use super::pb::audit_server::AuditServer;
use super::pb::export_server::ExportServer;
use super::pb::ledger_server::LedgerServer;
use super::service::LedgerService;
use crate::ledger::Ledger;
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The largest request the server decodes. The largest command (an
/// application with a 4000-byte description) is a few kilobytes; anything
/// near this bound is not a command but an attack or a bug.
pub const REQUEST_BYTES_MAX: usize = 1024 * 1024;

/// Concurrent calls (HTTP/2 streams) per client connection. Subscriptions
/// hold theirs for as long as they follow the log.
pub const CONNECTION_STREAMS_MAX: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the ledger on `listener` until `shutdown` completes, then stops
/// taking connections, ends the event streams (which would otherwise follow
/// the log forever) and returns once every call in flight is answered.
pub async fn serve(
    ledger: Ledger,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with(ledger, listener, shutdown, ServeOptions::default()).await
}

/// How [`serve_with`] serves.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// TLS certificate and key (PEM); plaintext when `None`.
    pub tls: Option<tonic::transport::Identity>,
}

/// The longest a unary call may take before it is answered
/// DEADLINE_EXCEEDED (a client's own `grpc-timeout` may be shorter). A
/// command waiting for its group commit takes milliseconds.
pub const CALL_TIMEOUT_SECS: u64 = 30;

/// [`serve`] with options.
pub async fn serve_with(
    ledger: Ledger,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LedgerServer<LedgerService>>().await;
    health.set_serving::<ExportServer<ExportService>>().await;
    health.set_serving::<AuditServer<AuditService>>().await;
    // A storage failure stops the writer: say so to health checkers, so
    // that a load balancer or operator notices instead of sending writes.
    {
        let mut failed = ledger.watch_failure();
        let health = health.clone();
        tokio::spawn(async move {
            if failed.wait_for(|failed| *failed).await.is_ok() {
                tracing::error!("the ledger's writer has stopped; reporting NOT_SERVING");
                health.set_not_serving::<LedgerServer<LedgerService>>().await;
                health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            }
        });
    }

    // Clients such as grpcurl discover the API from the server itself; the
    // health service's descriptors are registered too so that it can be
    // called the same way.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let (stopping_tx, stopping) = watch::channel(false);
    let export_service = ExportServer::new(ExportService::new(ledger.clone(), stopping.clone()))
        .max_decoding_message_size(REQUEST_BYTES_MAX);
    let ledger_service = LedgerServer::new(LedgerService::new(ledger.clone(), stopping.clone()))
        .max_decoding_message_size(REQUEST_BYTES_MAX);
    let audit_service =
        AuditServer::new(AuditService::new(ledger, stopping)).max_decoding_message_size(REQUEST_BYTES_MAX);

    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: answering the calls in flight, ending event streams");
        health.set_not_serving::<LedgerServer<LedgerService>>().await;
        health.set_not_serving::<ExportServer<ExportService>>().await;
        health.set_not_serving::<AuditServer<AuditService>>().await;
        stopping_tx.send_replace(true);
    };

    tracing::info!(address = ?listener.local_addr().ok(), "serving fundledger.v1.Ledger, Audit and Export");
    let mut builder = tonic::transport::Server::builder();
    if let Some(identity) = options.tls {
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder
        .timeout(std::time::Duration::from_secs(CALL_TIMEOUT_SECS))
        .max_concurrent_streams(CONNECTION_STREAMS_MAX)
        .add_service(ledger_service)
        .add_service(export_service)
        .add_service(audit_service)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a small answer can wait for the client's
            // delayed ACK: about 40 ms per sequential call.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        )
        .await?;
    tracing::info!("server stopped");
    Ok(())
}
