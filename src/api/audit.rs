//! The `fundledger.v1.Audit` gRPC service: online verification of the log
//! and signed checkpoints of its head.
//!
//! Verification reads the whole log, so it runs on a blocking thread (the
//! writer and the async runtime go on) and one at a time. This module also
//! converts audit reports and checkpoints to and from their messages; they
//! are not domain types, so `convert` does not need to know them. It never
//! writes to the ledger.
//!
//! Every call authenticates, and only roles that may read the event log
//! (auditors, officers, admins) may verify it or have its head signed: a
//! partner sees its own balances, not the whole history.
//!
//! `Backup` streams a backup file (`log::backup`) of the log up to the
//! durable head fixed when the call arrives, written on a blocking thread
//! while the writer goes on. Only admins and auditors may take one
//! (`Read::Backup`): it holds who has access, which officers may not read.

use super::pb;
use super::service::{authorize_read, invalid_field, log_status, status};
use crate::api::convert::{timestamp, ConvertError};
use crate::audit::checkpoint::{Parts, SignedCheckpoint, CHECKPOINT_FORMAT};
use crate::audit::key::parse_public_hex;
use crate::audit::verify::{verify_ledger, CheckpointClaim, Report};
use crate::domain::access::Read;
use crate::ledger::Ledger;
use crate::log::backup::{self, BackupError};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

/// Verifications running at once: each reads the whole log and keeps a
/// core busy; more would only slow the ledger down.
pub const VERIFICATIONS_MAX: usize = 1;
/// Backups running at once, for the same reason.
pub const BACKUPS_MAX: usize = 1;
/// The size of a backup chunk (the last one may be smaller).
pub const BACKUP_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks written and waiting for a slow client: bounds the memory a backup
/// holds (4 MiB), whatever the size of the ledger.
const BACKUP_BUFFER_CHUNKS_MAX: usize = 64;
/// How long a blocked backup waits between looks at a full channel, a
/// client gone away, or a server stopping.
const SEND_RETRY_MS: u64 = 20;

pub type BackupStream = ReceiverStream<Result<pb::BackupChunk, Status>>;

#[derive(Clone)]
pub struct AuditService {
    ledger: Ledger,
    /// Permits for [`VERIFICATIONS_MAX`] verifications.
    verifications: Arc<Semaphore>,
    /// Permits for [`BACKUPS_MAX`] backups.
    backups: Arc<Semaphore>,
    /// Turns true when the server starts shutting down: a long backup ends
    /// then (as a failed call) instead of holding up the shutdown.
    stopping: watch::Receiver<bool>,
}

impl AuditService {
    pub fn new(ledger: Ledger, stopping: watch::Receiver<bool>) -> AuditService {
        AuditService {
            ledger,
            verifications: Arc::new(Semaphore::new(VERIFICATIONS_MAX)),
            backups: Arc::new(Semaphore::new(BACKUPS_MAX)),
            stopping,
        }
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn verify_log(
        &self,
        request: Request<pb::VerifyLogRequest>,
    ) -> Result<Response<pb::VerifyLogResponse>, Status> {
        authorize_read(&self.ledger, &request, Read::Details, "verify the log")?;
        let request = request.into_inner();
        let claim = claim_from_pb(request, &self.ledger).map_err(|e| invalid_field(&e))?;
        let permit = self.verifications.clone().try_acquire_owned().map_err(|_| {
            status(
                Code::ResourceExhausted,
                "verification_running",
                "another verification of this ledger is running; retry when it has finished",
            )
        })?;
        let ledger = self.ledger.clone();
        let report = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_ledger(&ledger, claim.as_ref())
        })
        .await
        .map_err(|e| status(Code::Internal, "verification_failed", format!("the verification stopped: {e}")))?
        .map_err(log_status)?;
        if let Some(broken) = &report.broken {
            tracing::error!(%broken, "the log does not verify");
        }
        Ok(Response::new(report_to_pb(&report)))
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        authorize_read(&self.ledger, &request, Read::Details, "take a signed checkpoint of the log")?;
        let checkpoint = self.ledger.signed_checkpoint().ok_or_else(|| {
            status(Code::FailedPrecondition, "log_empty", "the log has no events yet: there is nothing to vouch for")
        })?;
        Ok(Response::new(pb::GetCheckpointResponse { checkpoint: Some(checkpoint_to_pb(&checkpoint)) }))
    }

    type BackupStream = BackupStream;

    async fn backup(&self, request: Request<pb::BackupRequest>) -> Result<Response<BackupStream>, Status> {
        authorize_read(&self.ledger, &request, Read::Backup, "take a backup of the ledger")?;
        let permit = self.backups.clone().try_acquire_owned().map_err(|_| {
            status(
                Code::ResourceExhausted,
                "backup_running",
                "another backup of this ledger is running; retry when it has finished",
            )
        })?;
        // The head and its hash, read together: the backup is the log as it
        // was when this event had just become durable.
        let (head_seq, head_hash) = {
            let projections = self.ledger.projections();
            (projections.head_seq, projections.head_hash)
        };
        let (tx, rx) = mpsc::channel(BACKUP_BUFFER_CHUNKS_MAX);
        let reader = self.ledger.log_reader();
        let stopping = self.stopping.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let started = std::time::Instant::now();
            let mut out = ChunkSender { tx: &tx, stopping, buffer: Vec::with_capacity(BACKUP_CHUNK_BYTES) };
            match backup::write_backup(&reader, head_seq, head_hash, &mut out) {
                Ok(summary) => tracing::info!(
                    head_seq,
                    head_hash = %hex::encode(head_hash),
                    requests = summary.requests,
                    bytes = summary.bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "backup sent"
                ),
                // A client that went away (or a server stopping, which has
                // told the client) is nobody to tell.
                Err(BackupError::Write(error)) => tracing::warn!(%error, head_seq, "backup abandoned"),
                Err(error) => {
                    tracing::error!(%error, "backup failed");
                    let _ = out.send(Err(backup_status(error)));
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Hands a backup to the client in chunks of [`BACKUP_CHUNK_BYTES`].
struct ChunkSender<'a> {
    tx: &'a mpsc::Sender<Result<pb::BackupChunk, Status>>,
    stopping: watch::Receiver<bool>,
    buffer: Vec<u8>,
}

impl ChunkSender<'_> {
    /// Sends one item. Not `blocking_send`: a client that stops reading must
    /// not hold this thread, nor the server's graceful shutdown, for ever.
    fn send(&mut self, mut item: Result<pb::BackupChunk, Status>) -> std::io::Result<()> {
        let gone = |why| std::io::Error::new(std::io::ErrorKind::BrokenPipe, why);
        loop {
            if *self.stopping.borrow() {
                let _ = self.tx.try_send(Err(super::service::shutting_down()));
                return Err(gone("the server is shutting down"));
            }
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(gone("the client went away")),
                Err(mpsc::error::TrySendError::Full(back)) => {
                    item = back;
                    std::thread::sleep(std::time::Duration::from_millis(SEND_RETRY_MS));
                }
            }
        }
    }

    fn send_buffer(&mut self) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(BACKUP_CHUNK_BYTES));
        self.send(Ok(pb::BackupChunk { data }))
    }
}

impl Write for ChunkSender<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = BACKUP_CHUNK_BYTES - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == BACKUP_CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.send_buffer()
    }
}

/// A backup that could not be taken: a broken log is data loss, as for any
/// read of it; anything else is the server's fault.
fn backup_status(error: BackupError) -> Status {
    match error {
        BackupError::Log(error) => log_status(error),
        BackupError::LogBroken(_) | BackupError::NotTheHead { .. } => status(Code::DataLoss, "log_corrupt", error),
        _ => status(Code::Internal, "backup_failed", error),
    }
}

/// The message of a signed checkpoint.
pub fn checkpoint_to_pb(signed: &SignedCheckpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        format: CHECKPOINT_FORMAT.to_owned(),
        seq: signed.checkpoint.seq,
        head_hash: hex::encode(signed.checkpoint.head_hash),
        recorded_at: Some(timestamp(signed.checkpoint.recorded_at_micros)),
        recorded_at_micros: signed.checkpoint.recorded_at_micros,
        public_key: hex::encode(signed.public_key.as_bytes()),
        signature: hex::encode(signed.signature.to_bytes()),
    }
}

/// A signed checkpoint from its message; checks the form of every field
/// (not the signature) and that `recorded_at` agrees with the signed
/// `recorded_at_micros`.
pub fn checkpoint_from_pb(message: &pb::Checkpoint) -> Result<SignedCheckpoint, ConvertError> {
    let signed = SignedCheckpoint::from_parts(Parts {
        format: &message.format,
        seq: message.seq,
        head_hash: &message.head_hash,
        recorded_at_micros: message.recorded_at_micros,
        public_key: &message.public_key,
        signature: &message.signature,
    })
    .map_err(|e| ConvertError { field: "checkpoint", message: e.to_string() })?;
    if let Some(recorded_at) = &message.recorded_at {
        if *recorded_at != timestamp(message.recorded_at_micros) {
            return Err(ConvertError {
                field: "checkpoint.recorded_at",
                message: format!(
                    "{}.{:09} s does not agree with recorded_at_micros {}",
                    recorded_at.seconds, recorded_at.nanos, message.recorded_at_micros
                ),
            });
        }
    }
    Ok(signed)
}

fn claim_from_pb(request: pb::VerifyLogRequest, ledger: &Ledger) -> Result<Option<CheckpointClaim>, ConvertError> {
    let trusted_key = match request.trusted_public_key.as_str() {
        "" => None,
        text => Some(parse_public_hex(text).map_err(|message| ConvertError { field: "trusted_public_key", message })?),
    };
    let Some(checkpoint) = request.checkpoint else {
        return match trusted_key {
            None => Ok(None),
            Some(_) => Err(ConvertError {
                field: "trusted_public_key",
                message: "a trusted key is checked against a checkpoint; give the checkpoint too".into(),
            }),
        };
    };
    Ok(Some(CheckpointClaim {
        checkpoint: checkpoint_from_pb(&checkpoint)?,
        ledger_key: Some(ledger.public_key()),
        trusted_key,
    }))
}

/// The message of a verification report.
pub fn report_to_pb(report: &Report) -> pb::VerifyLogResponse {
    pb::VerifyLogResponse {
        verified: report.verified(),
        events: report.events,
        streams: report.streams,
        requests: report.requests,
        head_seq: report.head_seq,
        head_hash: hex::encode(report.head_hash),
        head_recorded_at: Some(timestamp(report.head_recorded_at_micros)),
        projections_checked_at: report.projections_checked_at,
        live_projections_checked: report.live_projections_checked,
        checkpoint_verified: report.checkpoint.is_some(),
        first_broken: report.broken.as_ref().map(|broken| pb::BrokenEvent {
            seq: broken.seq,
            stream: broken.stream.clone().unwrap_or_default(),
            reason: broken.problem.code().to_owned(),
            problem: broken.problem.to_string(),
        }),
        elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
    }
}
