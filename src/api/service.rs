//! The `fundledger.v1.Ledger` gRPC service over a [`Ledger`] handle.
//!
//! Commands are parsed by [`convert`], submitted to the single writer and
//! answered once durable. Queries read the projections under their lock and
//! convert what they need before letting go of it; asked as of an earlier
//! point, they answer from [`Ledger::as_of`] instead, which replays off the
//! async workers. The two event streams read the durable log in bounded
//! pages, in order, filter after reading, and hand the events to the client
//! through a bounded channel, so a slow client holds back only its own
//! stream.
//!
//! This module decides nothing: business rules are the domain's, ordering
//! and durability the ledger's. It only maps outcomes to gRPC statuses.

use super::auth::authenticate;
use super::convert::{self, ConvertError, IntoCommand};
use super::pb;
use crate::domain::access::{may_read, Read};
use crate::domain::dated::DatedView;
use crate::domain::{
    Actor, ApplicationId, Currency, FundState, PartnerId, Rejection, RejectionKind, Role, RoundId, StreamId,
};
use crate::ledger::{
    AsOf, AsOfError, CommandError, CommandOutcome, CommandRequest, Cursor, EventFilter, Ledger, PointInTime, Position,
    RecordedEvent, BATCH_COMMANDS_MAX,
};
use crate::log::LogError;
use crate::projections::Projections;
use std::fmt::Display;
use std::ops::Bound;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status};

/// Response metadata key carrying the stable reason code of a failure.
pub const REASON_METADATA_KEY: &str = "fundledger-reason";
/// Response metadata key naming the malformed request field.
pub const FIELD_METADATA_KEY: &str = "fundledger-field";

/// Events read from the log per step of `ReadEvents` and `Subscribe`.
pub const READ_PAGE_EVENTS_MAX: usize = 512;
/// Events converted and waiting for a streaming client; when the client
/// reads slower than that, its stream waits (and only its stream).
pub const STREAM_BUFFER_EVENTS_MAX: usize = 1024;

pub type EventStream = ReceiverStream<Result<pb::RecordedEvent, Status>>;

/// The service: a ledger handle and the server's stop signal.
#[derive(Clone)]
pub struct LedgerService {
    ledger: Ledger,
    /// Turns true when the server starts shutting down. Subscriptions never
    /// end by themselves, and graceful shutdown waits for every open call,
    /// so the event streams watch this and end when it turns.
    stopping: watch::Receiver<bool>,
}

impl LedgerService {
    pub fn new(ledger: Ledger, stopping: watch::Receiver<bool>) -> LedgerService {
        LedgerService { ledger, stopping }
    }

    /// Parses, submits and answers one command.
    async fn execute(&self, request: Request<impl IntoCommand>) -> Result<Response<pb::CommandResponse>, Status> {
        let actor = authenticate(&self.ledger, &request)?;
        let (request, answer) = command_request(request.into_inner(), &actor)?;
        let outcome = self.ledger.submit(request).await.map_err(|e| command_status(&e))?;
        Ok(Response::new(command_response(&self.ledger, &outcome, answer)?))
    }

    /// Parses, submits and answers a batch of commands, each with its own
    /// outcome: a command that does not parse, or that the caller's role
    /// may never send, is refused on its own and the others go ahead.
    async fn execute_batch(
        &self,
        request: Request<pb::SubmitCommandsRequest>,
    ) -> Result<Response<pb::SubmitCommandsResponse>, Status> {
        let actor = authenticate(&self.ledger, &request)?;
        let pb::SubmitCommandsRequest { commands, positions_only } = request.into_inner();
        if commands.is_empty() {
            return Err(status(Code::InvalidArgument, "empty_batch", "a batch needs at least one command"));
        }
        if commands.len() > BATCH_COMMANDS_MAX {
            return Err(command_status(&CommandError::BatchTooLarge { commands: commands.len() }));
        }
        let mut refused: Vec<Option<Status>> = Vec::with_capacity(commands.len());
        let mut requests = Vec::with_capacity(commands.len());
        let mut answers_asked = Vec::with_capacity(commands.len());
        for command in commands {
            match command_request(command, &actor) {
                Err(refusal) => refused.push(Some(refusal)),
                Ok((request, answer)) => {
                    refused.push(None);
                    requests.push(request);
                    answers_asked.push(if positions_only { Answer::Position } else { answer });
                }
            }
        }
        let mut answers =
            self.ledger.submit_many(requests).await.map_err(|e| command_status(&e))?.into_iter().zip(answers_asked);
        let mut outcomes = Vec::with_capacity(refused.len());
        for refusal in refused {
            let (result, asked) = match refusal {
                Some(status) => (Err(status), Answer::Events),
                None => {
                    let (result, asked) = answers.next().expect("one answer per submitted command");
                    (result.map_err(|e| command_status(&e)), asked)
                }
            };
            let outcome = match (result, asked) {
                (Ok(outcome), Answer::Position) => pb::command_outcome::Outcome::Recorded(position_of(&outcome)?),
                (Ok(outcome), Answer::Events) => {
                    pb::command_outcome::Outcome::Accepted(command_response(&self.ledger, &outcome, Answer::Events)?)
                }
                (Err(status), _) => pb::command_outcome::Outcome::Refused(refusal_of(&status)),
            };
            outcomes.push(pb::CommandOutcome { outcome: Some(outcome) });
        }
        Ok(Response::new(pb::SubmitCommandsResponse { outcomes }))
    }

    /// Authenticates the caller and checks they may read `what`.
    fn reader<T>(&self, request: &Request<T>, what: Read<'_>) -> Result<Actor, Status> {
        let thing = match what {
            Read::PartnerBalances(p) => format!("the balances of partner {p}"),
            Read::AllPartnerBalances => "every partner's balances".to_owned(),
            Read::SharedFigures => "the fund's figures".to_owned(),
            Read::Details => "applications, grants and the event log".to_owned(),
            Read::Principals => "who has access".to_owned(),
            Read::Backup => "the whole ledger".to_owned(),
        };
        authorize_read(&self.ledger, request, what, &format!("read {thing}"))
    }

    /// The figures as of a point of the history (see `ledger::history`).
    async fn point_in_time(&self, point: AsOf) -> Result<PointInTime, Status> {
        self.ledger.as_of(point).await.map_err(|error| match error {
            AsOfError::BeyondHead { .. } => status(Code::InvalidArgument, "as_of_beyond_head", error),
            AsOfError::Log(error) => log_status(error),
            AsOfError::Replay(_) => {
                tracing::error!(%error, "a point-in-time replay failed");
                status(Code::Internal, "replay_failed", error)
            }
        })
    }

    /// The events of an application's stream up to `head_seq`, so that the
    /// history matches the position read from the projections at that head.
    fn history(&self, application: &ApplicationId, head_seq: u64) -> Result<Vec<pb::RecordedEvent>, Status> {
        let mut events = self.ledger.stream_events(&StreamId::Application(application.clone())).map_err(log_status)?;
        events.retain(|e| e.envelope.seq <= head_seq);
        events_out(&self.ledger, &events)
    }
}

/// Parses a command for the writer, sent by `actor`. What the role may never
/// send is refused here, before it takes a place in the queue or learns
/// anything (a stream's version, a request id's use); `decide` checks the
/// same rule again, authoritatively.
fn command_request(message: impl IntoCommand, actor: &Actor) -> Result<(CommandRequest, Answer), Status> {
    let parsed = message.into_command().map_err(|e| invalid_field(&e))?;
    if !crate::domain::access::may_send(&actor.role, &parsed.command) {
        return Err(permission_denied(actor, parsed.command.name()));
    }
    let request = CommandRequest {
        command: parsed.command,
        request_id: parsed.request_id,
        expected_version: parsed.expected_version,
        actor: actor.clone(),
    };
    Ok((request, if parsed.positions_only { Answer::Position } else { Answer::Events }))
}

/// What an accepted command is answered: its events and where they are,
/// or (`CommandMeta.positions_only`) only where they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Events,
    Position,
}

/// The answer to an accepted command, in the form the caller asked for.
fn command_response(ledger: &Ledger, outcome: &CommandOutcome, answer: Answer) -> Result<pb::CommandResponse, Status> {
    let events = match answer {
        Answer::Events => events_out(ledger, &outcome.events)?,
        Answer::Position => Vec::new(),
    };
    Ok(pb::CommandResponse { events, replayed: outcome.replayed, position: Some(position_of(outcome)?) })
}

// ------------------------------------------------------------------ statuses

/// A status whose message starts with the stable reason code, which the
/// metadata also carries on its own.
pub(super) fn status(code: Code, reason: &'static str, message: impl Display) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(REASON_METADATA_KEY, MetadataValue::from_static(reason));
    Status::with_metadata(code, format!("{reason}: {message}"), metadata)
}

pub(super) fn invalid_field(error: &ConvertError) -> Status {
    let mut status = status(Code::InvalidArgument, "invalid_field", error);
    status.metadata_mut().insert(FIELD_METADATA_KEY, MetadataValue::from_static(error.field));
    status
}

/// A status as one command's refusal inside a batch answer.
fn refusal_of(status: &Status) -> pb::CommandRefusal {
    let text = |key: &str| status.metadata().get(key).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    pb::CommandRefusal {
        code: status.code() as i32,
        reason: text(REASON_METADATA_KEY),
        message: status.message().to_owned(),
        field: text(FIELD_METADATA_KEY),
    }
}

fn rejection_code(kind: RejectionKind) -> Code {
    match kind {
        RejectionKind::InvalidArgument => Code::InvalidArgument,
        RejectionKind::NotFound => Code::NotFound,
        RejectionKind::FailedPrecondition => Code::FailedPrecondition,
        RejectionKind::PermissionDenied => Code::PermissionDenied,
    }
}

/// PERMISSION_DENIED for a query: says who was refused what.
pub(super) fn permission_denied(actor: &Actor, action: &str) -> Status {
    rejection_status(&Rejection::PermissionDenied {
        principal: actor.principal.to_string(),
        role: actor.role.to_string(),
        action: action.to_owned(),
    })
}

/// Authenticates the caller and checks they may read `what`: UNAUTHENTICATED
/// without a valid token, PERMISSION_DENIED naming `action` when their role
/// may not. Every query of every service starts here.
pub(super) fn authorize_read<T>(
    ledger: &Ledger,
    request: &Request<T>,
    what: Read<'_>,
    action: &str,
) -> Result<Actor, Status> {
    let actor = authenticate(ledger, request)?;
    if !may_read(&actor.role, what) {
        return Err(permission_denied(&actor, action));
    }
    Ok(actor)
}

pub(super) fn rejection_status(rejection: &Rejection) -> Status {
    status(rejection_code(rejection.kind()), rejection.code(), rejection)
}

fn command_status(error: &CommandError) -> Status {
    match error {
        CommandError::Rejected(rejection) => rejection_status(rejection),
        CommandError::InvalidRequestId { .. } => status(Code::InvalidArgument, "invalid_request_id", error),
        CommandError::RequestIdConflict { .. } => status(Code::AlreadyExists, "request_id_conflict", error),
        CommandError::WrongExpectedVersion { .. } => status(Code::Aborted, "wrong_expected_version", error),
        CommandError::BatchTooLarge { .. } => status(Code::InvalidArgument, "batch_too_large", error),
        CommandError::QueueFull { .. } => status(Code::ResourceExhausted, "queue_full", error),
        CommandError::Unavailable(_) => status(Code::Unavailable, "unavailable", error),
    }
}

/// A failure to read the log. A corrupt event is data loss: the client must
/// not take the answer for the truth. Anything else is the server's fault.
pub(super) fn log_status(error: LogError) -> Status {
    tracing::error!(%error, "reading the log failed");
    match error {
        LogError::Corrupt { .. } | LogError::MalformedEntry { .. } => status(Code::DataLoss, "log_corrupt", error),
        _ => status(Code::Internal, "storage_error", error),
    }
}

pub(super) fn shutting_down() -> Status {
    status(
        Code::Unavailable,
        "shutting_down",
        "the server is shutting down; resume from the next seq elsewhere or later",
    )
}

/// The fund's currency, or the refusal every query gives before the fund
/// has been opened.
fn fund_currency(state: &FundState) -> Result<Currency, Status> {
    state.currency().cloned().ok_or_else(|| rejection_status(&Rejection::FundNotOpened))
}

/// Where an accepted command's events are in the log: they are
/// consecutive, one command's events never interleave with another's.
fn position_of(outcome: &CommandOutcome) -> Result<pb::RecordedPosition, Status> {
    // The log refuses a command without events; this never answers one.
    let first = outcome.events.first().ok_or_else(|| Status::internal("an accepted command recorded no events"))?;
    Ok(pb::RecordedPosition {
        first_seq: first.envelope.seq,
        event_count: u32::try_from(outcome.events.len()).expect("a command records a handful of events"),
        replayed: outcome.replayed,
    })
}

/// Recorded events as messages, amounts in the fund's currency.
fn events_out(ledger: &Ledger, events: &[RecordedEvent]) -> Result<Vec<pb::RecordedEvent>, Status> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // Only access events (no amounts) can come before the fund is opened.
    let currency = ledger.projections().state.currency().cloned().unwrap_or_else(Currency::none);
    Ok(events.iter().map(|e| convert::recorded_event(&currency, e)).collect())
}

// ------------------------------------------------------------------ figures

/// What a balance, summary or round query answers from.
enum Figures<'a> {
    /// The live projections, as of the durable head.
    Live(&'a Projections),
    /// Projections replayed up to an earlier event.
    Replayed(&'a Projections),
    /// The events up to `through` counted by business date.
    Dated { view: &'a DatedView, through: &'a Position },
}

impl Figures<'_> {
    fn of(point: &PointInTime) -> Figures<'_> {
        match point {
            PointInTime::Replayed(projections) => Figures::Replayed(projections),
            PointInTime::Dated { view, through } => Figures::Dated { view, through },
        }
    }

    /// The fund's currency, or the refusal before the fund was opened.
    fn currency(&self) -> Result<Currency, Status> {
        let currency = match self {
            Figures::Live(p) | Figures::Replayed(p) => p.state.currency(),
            Figures::Dated { view, .. } => view.currency(),
        };
        currency.cloned().ok_or_else(|| self.not_opened())
    }

    fn not_opened(&self) -> Status {
        match self {
            Figures::Live(_) => rejection_status(&Rejection::FundNotOpened),
            Figures::Replayed(p) => status(
                Code::NotFound,
                Rejection::FundNotOpened.code(),
                format!("as of event {} the fund had not been opened yet; ask for a later point", p.head_seq),
            ),
            Figures::Dated { through, .. } => status(
                Code::NotFound,
                Rejection::FundNotOpened.code(),
                format!("the log holds no fund yet (event {})", through.seq),
            ),
        }
    }

    fn position(&self) -> pb::Position {
        match self {
            Figures::Live(p) | Figures::Replayed(p) => convert::position(&Position::of(p), None),
            Figures::Dated { view, through } => convert::position(through, Some(view.date)),
        }
    }
}

fn partner_balances(figures: Figures<'_>, only: Option<&PartnerId>) -> Result<pb::GetPartnerBalancesResponse, Status> {
    let currency = figures.currency()?;
    let unknown = |id: &PartnerId| rejection_status(&Rejection::UnknownPartner { partner: id.to_string() });
    let partners = match &figures {
        Figures::Live(p) | Figures::Replayed(p) => {
            let state = &p.state;
            match only {
                Some(id) => {
                    let partner = state.partners.get(id).ok_or_else(|| unknown(id))?;
                    vec![convert::partner_balance(state, &currency, id, partner)]
                }
                None => {
                    state.partners.iter().map(|(id, p)| convert::partner_balance(state, &currency, id, p)).collect()
                }
            }
        }
        Figures::Dated { view, .. } => match only {
            Some(id) => {
                let partner = view.partners.get(id).ok_or_else(|| unknown(id))?;
                vec![convert::dated_partner_balance(view, &currency, id, partner)]
            }
            None => {
                view.partners.iter().map(|(id, p)| convert::dated_partner_balance(view, &currency, id, p)).collect()
            }
        },
    };
    Ok(pb::GetPartnerBalancesResponse { partners, position: Some(figures.position()) })
}

fn fund_summary(figures: Figures<'_>) -> Result<pb::GetFundSummaryResponse, Status> {
    let summary = match &figures {
        Figures::Live(p) | Figures::Replayed(p) => convert::fund_summary(p),
        Figures::Dated { view, through } => convert::dated_fund_summary(view, through),
    };
    summary.ok_or_else(|| figures.not_opened())
}

fn round_figures(figures: Figures<'_>, only: Option<&RoundId>) -> Result<pb::GetRoundFiguresResponse, Status> {
    let currency = figures.currency()?;
    let unknown = |id: &RoundId| rejection_status(&Rejection::UnknownRound { round: id.to_string() });
    let rounds = match &figures {
        Figures::Live(p) | Figures::Replayed(p) => {
            let state = &p.state;
            match only {
                Some(id) => {
                    vec![convert::round_figures(&currency, id, state.rounds.get(id).ok_or_else(|| unknown(id))?)]
                }
                None => state.rounds.iter().map(|(id, r)| convert::round_figures(&currency, id, r)).collect(),
            }
        }
        Figures::Dated { view, .. } => match only {
            Some(id) => {
                vec![convert::dated_round_figures(&currency, id, view.rounds.get(id).ok_or_else(|| unknown(id))?)]
            }
            None => view.rounds.iter().map(|(id, r)| convert::dated_round_figures(&currency, id, r)).collect(),
        },
    };
    Ok(pb::GetRoundFiguresResponse { rounds, position: Some(figures.position()) })
}

// ------------------------------------------------------------------ streams

/// Why a stream ended early.
enum StreamEnd {
    /// The client went away: nobody to tell.
    ClientGone,
    /// The filter's time range is over: the stream ends with OK.
    RangeOver,
    /// The server is stopping, or the log failed: the client is told.
    Failed(Status),
}

/// Waits until the server is stopping (or gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Sends the durable events from the cursor up to `last` that match the
/// filter, in pages, until `last` is reached or `remaining` (if any) runs
/// out. The cursor moves past every event looked at, sent or not, so that
/// the next call looks only at what is new.
async fn send_matching(
    ledger: &Ledger,
    tx: &mpsc::Sender<Result<pb::RecordedEvent, Status>>,
    stopping: &mut watch::Receiver<bool>,
    filter: &EventFilter,
    cursor: &mut Cursor,
    last: u64,
    remaining: &mut Option<u64>,
) -> Result<(), StreamEnd> {
    while !cursor.reached(last) && *remaining != Some(0) {
        // A filter may match nothing for a long stretch of the log: between
        // pages, let other tasks run and notice a client gone or a stop.
        tokio::task::yield_now().await;
        if tx.is_closed() {
            return Err(StreamEnd::ClientGone);
        }
        if *stopping.borrow() {
            return Err(StreamEnd::Failed(shutting_down()));
        }
        let page = ledger
            .read_filtered(filter, cursor, last, READ_PAGE_EVENTS_MAX)
            .map_err(|e| StreamEnd::Failed(log_status(e)))?;
        for event in events_out(ledger, &page).map_err(StreamEnd::Failed)? {
            if *remaining == Some(0) {
                return Ok(());
            }
            tokio::select! {
                sent = tx.send(Ok(event)) => sent.map_err(|_| StreamEnd::ClientGone)?,
                () = stopped(stopping) => return Err(StreamEnd::Failed(shutting_down())),
            }
            if let Some(n) = remaining {
                *n -= 1;
            }
        }
    }
    Ok(())
}

/// `ReadEvents`: the matching events from `from` up to `last`, at most
/// `limit` of them, then the end of the stream.
async fn read_range(
    ledger: Ledger,
    tx: mpsc::Sender<Result<pb::RecordedEvent, Status>>,
    mut stopping: watch::Receiver<bool>,
    filter: EventFilter,
    from: u64,
    last: u64,
    mut limit: Option<u64>,
) {
    let mut cursor = Cursor::new(from);
    if let Err(StreamEnd::Failed(status)) =
        send_matching(&ledger, &tx, &mut stopping, &filter, &mut cursor, last, &mut limit).await
    {
        let _ = tx.send(Err(status)).await;
    }
}

/// `Subscribe`: catches up to the durable head, then follows it, sending the
/// events that match the filter.
///
/// The head is marked as seen *before* the events up to it are read, so a
/// head that moves during the read wakes the next wait: no event is missed
/// at the hand-over. The cursor only ever advances past events looked at,
/// in order, and the filter is applied after reading, so none is sent twice
/// either. Once the filter's time range is over, the stream ends (OK).
async fn follow(
    ledger: Ledger,
    tx: mpsc::Sender<Result<pb::RecordedEvent, Status>>,
    mut stopping: watch::Receiver<bool>,
    filter: EventFilter,
    from: u64,
    actor: Actor,
) {
    let mut head = ledger.watch_head();
    let mut cursor = Cursor::new(from);
    let end = loop {
        // A subscription lives long: it ends as soon as its principal's
        // access is revoked (or their role changed), like a new call would.
        if !still_granted(&ledger, &actor) {
            break StreamEnd::Failed(status(
                Code::Unauthenticated,
                "unauthenticated",
                format!("the access of {} was revoked or changed; the subscription ends", actor.principal),
            ));
        }
        let last = *head.borrow_and_update();
        if let Err(end) = send_matching(&ledger, &tx, &mut stopping, &filter, &mut cursor, last, &mut None).await {
            break end;
        }
        if cursor.exhausted() {
            break StreamEnd::RangeOver;
        }
        tokio::select! {
            moved = head.changed() => {
                if moved.is_err() {
                    break StreamEnd::Failed(shutting_down());
                }
            }
            () = tx.closed() => break StreamEnd::ClientGone,
            () = stopped(&mut stopping) => break StreamEnd::Failed(shutting_down()),
        }
    };
    if let StreamEnd::Failed(status) = end {
        let _ = tx.send(Err(status)).await;
    }
}

/// Whether `actor` still holds its role: not revoked, not changed.
fn still_granted(ledger: &Ledger, actor: &Actor) -> bool {
    let projections = ledger.projections();
    projections.state.principals.get(&actor.principal).is_some_and(|p| !p.revoked && p.role == actor.role)
}

// ------------------------------------------------------------------ the service

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn open_fund(&self, r: Request<pb::OpenFundRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn admit_partner(
        &self,
        r: Request<pb::AdmitPartnerRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn pledge_contribution(
        &self,
        r: Request<pb::PledgeContributionRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn reduce_pledge(
        &self,
        r: Request<pb::ReducePledgeRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn record_receipt(
        &self,
        r: Request<pb::RecordReceiptRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn open_round(&self, r: Request<pb::OpenRoundRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn close_round(&self, r: Request<pb::CloseRoundRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn submit_application(
        &self,
        r: Request<pb::SubmitApplicationRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn withdraw_application(
        &self,
        r: Request<pb::WithdrawApplicationRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn reject_application(
        &self,
        r: Request<pb::RejectApplicationRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn award_grant(&self, r: Request<pb::AwardGrantRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn reduce_grant(&self, r: Request<pb::ReduceGrantRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn withdraw_grant(
        &self,
        r: Request<pb::WithdrawGrantRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn settle_grant(&self, r: Request<pb::SettleGrantRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn make_payment(&self, r: Request<pb::MakePaymentRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn record_refund(
        &self,
        r: Request<pb::RecordRefundRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn propose_award(
        &self,
        r: Request<pb::ProposeAwardRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn approve_award(
        &self,
        r: Request<pb::ApproveAwardRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn propose_payment(
        &self,
        r: Request<pb::ProposePaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn approve_payment(
        &self,
        r: Request<pb::ApprovePaymentRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn declare_conflict(
        &self,
        r: Request<pb::DeclareConflictRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn set_approval_thresholds(
        &self,
        r: Request<pb::SetApprovalThresholdsRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn grant_access(&self, r: Request<pb::GrantAccessRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn revoke_access(
        &self,
        r: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        self.execute(r).await
    }

    async fn submit_commands(
        &self,
        request: Request<pb::SubmitCommandsRequest>,
    ) -> Result<Response<pb::SubmitCommandsResponse>, Status> {
        self.execute_batch(request).await
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        self.reader(&request, Read::Principals)?;
        Ok(Response::new(convert::principals(&self.ledger.projections().state)))
    }

    async fn get_partner_balances(
        &self,
        request: Request<pb::GetPartnerBalancesRequest>,
    ) -> Result<Response<pb::GetPartnerBalancesResponse>, Status> {
        let actor = authenticate(&self.ledger, &request)?;
        let request = request.into_inner();
        let partner = request
            .partner_id
            .map(|id| convert::partner_id("partner_id", &id))
            .transpose()
            .map_err(|e| invalid_field(&e))?;
        // A partner asking for "all" gets its own: all it may see.
        let partner = match (&actor.role, partner) {
            (Role::Partner(own), None) => Some(own.clone()),
            (_, partner) => partner,
        };
        let what = partner.as_ref().map_or(Read::AllPartnerBalances, Read::PartnerBalances);
        if !may_read(&actor.role, what) {
            let whose = partner.as_ref().map_or("every partner".to_owned(), |p| format!("partner {p}"));
            return Err(permission_denied(&actor, &format!("read the balances of {whose}")));
        }
        let as_of = convert::as_of(request.as_of).map_err(|e| invalid_field(&e))?;
        let answer = match as_of {
            None => partner_balances(Figures::Live(&self.ledger.snapshot()), partner.as_ref()),
            Some(point) => partner_balances(Figures::of(&self.point_in_time(point).await?), partner.as_ref()),
        };
        answer.map(Response::new)
    }

    async fn get_fund_summary(
        &self,
        request: Request<pb::GetFundSummaryRequest>,
    ) -> Result<Response<pb::GetFundSummaryResponse>, Status> {
        self.reader(&request, Read::SharedFigures)?;
        let as_of = convert::as_of(request.into_inner().as_of).map_err(|e| invalid_field(&e))?;
        let answer = match as_of {
            // Every application is read (after a start, maybe decoded first):
            // on a blocking thread, not on one of the server's workers.
            None => {
                let snapshot = self.ledger.snapshot();
                tokio::task::spawn_blocking(move || fund_summary(Figures::Live(&snapshot)))
                    .await
                    .map_err(|e| status(Code::Internal, "summary_failed", format!("the fund summary stopped: {e}")))?
            }
            Some(point) => fund_summary(Figures::of(&self.point_in_time(point).await?)),
        };
        answer.map(Response::new)
    }

    async fn get_round_figures(
        &self,
        request: Request<pb::GetRoundFiguresRequest>,
    ) -> Result<Response<pb::GetRoundFiguresResponse>, Status> {
        self.reader(&request, Read::SharedFigures)?;
        let request = request.into_inner();
        let round =
            request.round_id.map(|id| convert::round_id("round_id", &id)).transpose().map_err(|e| invalid_field(&e))?;
        let as_of = convert::as_of(request.as_of).map_err(|e| invalid_field(&e))?;
        let answer = match as_of {
            None => round_figures(Figures::Live(&self.ledger.snapshot()), round.as_ref()),
            Some(point) => round_figures(Figures::of(&self.point_in_time(point).await?), round.as_ref()),
        };
        answer.map(Response::new)
    }

    async fn get_application(
        &self,
        request: Request<pb::GetApplicationRequest>,
    ) -> Result<Response<pb::GetApplicationResponse>, Status> {
        self.reader(&request, Read::Details)?;
        let id = convert::application_id("application_id", &request.into_inner().application_id)
            .map_err(|e| invalid_field(&e))?;
        let (application, grant, head_seq) = {
            let projections = self.ledger.projections();
            let state = &projections.state;
            let currency = fund_currency(state)?;
            let app = state
                .applications
                .get(&id)
                .ok_or_else(|| rejection_status(&Rejection::UnknownApplication { application: id.to_string() }))?;
            let grant = app.grant.as_ref().map(|g| convert::grant_position(&currency, g));
            (convert::application(&currency, &id, app), grant, projections.head_seq)
        };
        let history = self.history(&id, head_seq)?;
        Ok(Response::new(pb::GetApplicationResponse { application: Some(application), grant, history }))
    }

    async fn get_grant(&self, request: Request<pb::GetGrantRequest>) -> Result<Response<pb::GetGrantResponse>, Status> {
        self.reader(&request, Read::Details)?;
        let id = convert::application_id("application_id", &request.into_inner().application_id)
            .map_err(|e| invalid_field(&e))?;
        let (grant, head_seq) = {
            let projections = self.ledger.projections();
            let state = &projections.state;
            let currency = fund_currency(state)?;
            let app = state
                .applications
                .get(&id)
                .ok_or_else(|| rejection_status(&Rejection::UnknownApplication { application: id.to_string() }))?;
            let Some(grant) = &app.grant else {
                // For a query, "no grant" is a thing not found, whatever the
                // status of the application.
                let rejection =
                    Rejection::NotAwarded { application: id.to_string(), status: app.status.as_str().into() };
                return Err(status(Code::NotFound, rejection.code(), rejection));
            };
            (convert::grant_position(&currency, grant), projections.head_seq)
        };
        let history = self.history(&id, head_seq)?;
        Ok(Response::new(pb::GetGrantResponse { application_id: id.to_string(), grant: Some(grant), history }))
    }

    async fn list_applications(
        &self,
        request: Request<pb::ListApplicationsRequest>,
    ) -> Result<Response<pb::ListApplicationsResponse>, Status> {
        self.reader(&request, Read::Details)?;
        let query = convert::application_query(request.into_inner()).map_err(|e| invalid_field(&e))?;
        let projections = self.ledger.snapshot();
        let state = &projections.state;
        let currency = fund_currency(state)?;
        if let Some(round) = &query.round {
            if !state.rounds.contains_key(round) {
                return Err(rejection_status(&Rejection::UnknownRound { round: round.to_string() }));
            }
        }
        let start = query.after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let mut matching = state.applications.range((start, Bound::Unbounded)).filter(|(_, app)| {
            query.round.as_ref().is_none_or(|r| &app.round == r) && query.status.is_none_or(|s| app.status == s)
        });
        let page: Vec<_> = matching.by_ref().take(query.page_size).collect();
        let next_page_token = match (page.last(), matching.next()) {
            (Some((last, _)), Some(_)) => convert::page_token(last),
            _ => String::new(),
        };
        let applications = page.into_iter().map(|(id, app)| convert::application_summary(&currency, id, app)).collect();
        Ok(Response::new(pb::ListApplicationsResponse { applications, next_page_token }))
    }

    type ReadEventsStream = EventStream;

    async fn read_events(&self, request: Request<pb::ReadEventsRequest>) -> Result<Response<EventStream>, Status> {
        self.reader(&request, Read::Details)?;
        let request = request.into_inner();
        let filter = convert::event_filter(request.filter).map_err(|e| invalid_field(&e))?;
        // The end is fixed when the call arrives, so that the stream ends
        // even while commands keep coming in.
        let last = self.ledger.head_seq();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_EVENTS_MAX);
        tokio::spawn(read_range(
            self.ledger.clone(),
            tx,
            self.stopping.clone(),
            filter,
            request.from_seq,
            last,
            request.limit,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let actor = self.reader(&request, Read::Details)?;
        let request = request.into_inner();
        let filter = convert::event_filter(request.filter).map_err(|e| invalid_field(&e))?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_EVENTS_MAX);
        tokio::spawn(follow(self.ledger.clone(), tx, self.stopping.clone(), filter, request.from_seq, actor));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
