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

use super::pb;
use super::service::{authorize_read, invalid_field, log_status, status};
use crate::api::convert::{timestamp, ConvertError};
use crate::audit::checkpoint::{Parts, SignedCheckpoint, CHECKPOINT_FORMAT};
use crate::audit::key::parse_public_hex;
use crate::audit::verify::{verify_ledger, CheckpointClaim, Report};
use crate::domain::access::Read;
use crate::ledger::Ledger;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};

/// Verifications running at once: each reads the whole log and keeps a
/// core busy; more would only slow the ledger down.
pub const VERIFICATIONS_MAX: usize = 1;

#[derive(Clone)]
pub struct AuditService {
    ledger: Ledger,
    /// Permits for [`VERIFICATIONS_MAX`] verifications.
    verifications: Arc<Semaphore>,
}

impl AuditService {
    pub fn new(ledger: Ledger) -> AuditService {
        AuditService { ledger, verifications: Arc::new(Semaphore::new(VERIFICATIONS_MAX)) }
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
