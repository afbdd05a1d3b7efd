//! The `fundledger.v1.Export` gRPC service: the auditors' exports of a
//! running ledger, streamed as text chunks.
//!
//! Each call fixes the durable head when it arrives, then runs the same
//! generator as the offline command ([`crate::export::write`]) over the log
//! up to that head, on a blocking thread, handing the text to the client
//! through a bounded channel: a slow client holds back only its own export.
//! It writes nothing and decides nothing.
//!
//! Every call authenticates, and only roles that may read the event log
//! (auditors, officers, admins) may export it: an export is the whole
//! history, every partner's included.

use super::convert;
use super::pb;
use super::service::{authorize_read, invalid_field, log_status, rejection_status, shutting_down, status};
use crate::domain::access::Read;
use crate::domain::Rejection;
use crate::export::{self, Export, ExportError, LogEvents};
use crate::ledger::Ledger;
use std::io::Write;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

/// Chunks converted and waiting for a client.
pub const EXPORT_BUFFER_CHUNKS_MAX: usize = 256;
/// A chunk of CSV or JSON is cut at the first line break past this size.
pub const CHUNK_BYTES_TARGET: usize = 32 * 1024;
/// Exports running at once; each reads the whole log on a blocking thread.
pub const EXPORTS_MAX: usize = 2;
/// How long a new export waits for a running one to end before it is
/// refused with RESOURCE_EXHAUSTED.
const EXPORT_WAIT_SECS: u64 = 5;
/// How long a blocked export waits between looks at a full channel, a
/// client gone away, or a server stopping.
const SEND_RETRY_MS: u64 = 20;

pub type ChunkStream = ReceiverStream<Result<pb::ExportChunk, Status>>;

#[derive(Clone)]
pub struct ExportService {
    ledger: Ledger,
    /// Turns true when the server starts shutting down: a long export ends
    /// then instead of holding up the graceful shutdown.
    stopping: watch::Receiver<bool>,
    /// Permits for running exports ([`EXPORTS_MAX`]).
    running: std::sync::Arc<tokio::sync::Semaphore>,
}

impl ExportService {
    pub fn new(ledger: Ledger, stopping: watch::Receiver<bool>) -> ExportService {
        ExportService { ledger, stopping, running: std::sync::Arc::new(tokio::sync::Semaphore::new(EXPORTS_MAX)) }
    }

    /// Streams `export` of the log up to the current durable head.
    /// `one_line_per_chunk` for JSON Lines, whose chunks are single events.
    async fn stream(&self, export: Export, one_line_per_chunk: bool) -> Result<Response<ChunkStream>, Status> {
        let head = self.ledger.head_seq();
        {
            let projections = self.ledger.snapshot();
            let state = &projections.state;
            if state.fund.is_none() {
                return Err(rejection_status(&Rejection::FundNotOpened));
            }
            if let Export::Statement(export::statement::Request { partner: Some(partner), .. }) = &export {
                if !state.partners.contains_key(partner) {
                    return Err(rejection_status(&Rejection::UnknownPartner { partner: partner.to_string() }));
                }
            }
            if matches!(export, Export::ThreeSixtyGiving(_)) && !state.applications.values().any(|a| a.grant.is_some())
            {
                return Err(export_status(ExportError::NoGrants));
            }
        }
        // Wait a little for a running export to end (one whose client just
        // went away ends within milliseconds), then say the server is busy.
        let waited = std::time::Duration::from_secs(EXPORT_WAIT_SECS);
        let permit = tokio::time::timeout(waited, self.running.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                status(
                    Code::ResourceExhausted,
                    "exports_busy",
                    format!(
                        "{EXPORTS_MAX} exports have been running for {EXPORT_WAIT_SECS} s; retry when one has finished"
                    ),
                )
            })?;
        let (tx, rx) = mpsc::channel(EXPORT_BUFFER_CHUNKS_MAX);
        let ledger = self.ledger.clone();
        let stopping = self.stopping.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let reader = ledger.log_reader();
            let mut out = ChunkWriter { tx: &tx, stopping, buffer: Vec::new(), one_line_per_chunk };
            let result = export::write(&export, LogEvents::new(&reader, head), &mut out).and_then(|()| out.finish());
            if let Err(error) = result {
                // A client that went away is nobody to tell.
                if !is_broken_pipe(&error) {
                    let _ = tx.try_send(Err(export_status(error)));
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Hands text to the client in chunks that end at line breaks.
struct ChunkWriter<'a> {
    tx: &'a mpsc::Sender<Result<pb::ExportChunk, Status>>,
    stopping: watch::Receiver<bool>,
    buffer: Vec<u8>,
    one_line_per_chunk: bool,
}

impl ChunkWriter<'_> {
    fn send(&mut self, upto: usize) -> std::io::Result<()> {
        if *self.stopping.borrow() {
            let _ = self.tx.try_send(Err(shutting_down()));
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the server is shutting down"));
        }
        let rest = self.buffer.split_off(upto);
        let chunk = std::mem::replace(&mut self.buffer, rest);
        // Generators write UTF-8 text, and a line break is never inside a
        // multi-byte character.
        let text = String::from_utf8(chunk).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        // Not `blocking_send`: a client that stops reading must not hold
        // this thread, nor the server's graceful shutdown, for ever.
        let mut item = Ok(pb::ExportChunk { text });
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
                }
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if *self.stopping.borrow() {
                        return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the server is shutting down"));
                    }
                    item = back;
                    std::thread::sleep(std::time::Duration::from_millis(SEND_RETRY_MS));
                }
            }
        }
    }

    fn finish(&mut self) -> Result<(), ExportError> {
        if !self.buffer.is_empty() {
            self.send(self.buffer.len())?;
        }
        Ok(())
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        loop {
            let cut = if self.one_line_per_chunk {
                self.buffer.iter().position(|&b| b == b'\n')
            } else if self.buffer.len() >= CHUNK_BYTES_TARGET {
                self.buffer.iter().rposition(|&b| b == b'\n')
            } else {
                None
            };
            match cut {
                Some(newline) => self.send(newline + 1)?,
                None => break,
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn is_broken_pipe(error: &ExportError) -> bool {
    matches!(error, ExportError::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn export_status(error: ExportError) -> Status {
    match error {
        ExportError::Log(error) => log_status(error),
        ExportError::BrokenChain { .. } => status(Code::DataLoss, "log_corrupt", error),
        ExportError::FundNotOpened { .. } | ExportError::EmptyLedger => rejection_status(&Rejection::FundNotOpened),
        ExportError::UnknownPartner { partner } => rejection_status(&Rejection::UnknownPartner { partner }),
        ExportError::NoGrants => status(Code::FailedPrecondition, "no_grants", error),
        ExportError::Period(_) => status(Code::InvalidArgument, "invalid_field", error),
        _ => {
            tracing::error!(%error, "an export failed");
            status(Code::Internal, "export_failed", error)
        }
    }
}

#[tonic::async_trait]
impl pb::export_server::Export for ExportService {
    type ExportEventsStream = ChunkStream;
    type ExportJournalStream = ChunkStream;
    type Export360GivingStream = ChunkStream;
    type ExportStatementStream = ChunkStream;

    async fn export_events(&self, request: Request<pb::ExportEventsRequest>) -> Result<Response<ChunkStream>, Status> {
        authorize_read(&self.ledger, &request, Read::Details, "export the event log")?;
        self.stream(Export::Events, true).await
    }

    async fn export_journal(
        &self,
        request: Request<pb::ExportJournalRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        authorize_read(&self.ledger, &request, Read::Details, "export the journal")?;
        self.stream(Export::Journal, false).await
    }

    async fn export360_giving(
        &self,
        request: Request<pb::Export360GivingRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        authorize_read(&self.ledger, &request, Read::Details, "export the grants in the 360Giving standard")?;
        let options = convert::three_sixty_giving_options(request.into_inner()).map_err(|e| invalid_field(&e))?;
        self.stream(Export::ThreeSixtyGiving(options), false).await
    }

    async fn export_statement(
        &self,
        request: Request<pb::ExportStatementRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        authorize_read(&self.ledger, &request, Read::Details, "export the funding-status statement")?;
        let request = convert::statement_request(request.into_inner()).map_err(|e| invalid_field(&e))?;
        self.stream(Export::Statement(request), false).await
    }
}
