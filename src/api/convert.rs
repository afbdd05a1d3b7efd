//! The one place where protobuf types meet domain types.
//!
//! Inbound, it parses request messages into domain commands and query
//! arguments: ids with the domain's id types, dates with [`Date::parse`],
//! amounts with [`MoneyInput::parse`]. A failure is a [`ConvertError`] that
//! names the field; the service answers it with `INVALID_ARGUMENT`.
//!
//! Parsing is all it does. Whether an amount fits the fund's currency (its
//! decimals, its sign, its code) is a business rule that only `decide` can
//! check, because only the state knows the currency; so is whether a name is
//! too long. This module never decides anything and never rounds.
//!
//! Outbound, it formats events and state figures as messages, amounts with
//! the fund's [`Currency::plain`] and its code.

use super::pb;
use crate::domain::dated::{DatedPot, DatedRound, DatedView};
use crate::domain::event::{partner_pots, Event, PotKey, Share, EVENT_TYPE_NAMES};
use crate::domain::ids::{ApplicationId, Date, PartnerId, PrincipalId, RoundId};
use crate::domain::money::{Amount, Currency, MoneyInput, SignedAmount};
use crate::domain::state::{
    Application, ApplicationStatus, Decision, FundState, Grant, GrantStatus, Partner, Pot, Round,
};
use crate::domain::{Applicant, Command, Role, StreamId};
use crate::ledger::{AsOf, EventFilter, Position, RecordedEvent, StreamSelector};
use crate::log::codec::{Hash, HASH_BYTES};
use crate::projections::Projections;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

/// Applications per page of `ListApplications` when the client names none.
pub const PAGE_SIZE_DEFAULT: usize = 50;
/// The most applications per page of `ListApplications`.
pub const PAGE_SIZE_MAX: usize = 500;

/// A request field that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvertError {
    /// The field as named in the proto, e.g. `amount` or `meta.request_id`.
    pub field: &'static str,
    /// What is wrong with it, for people.
    pub message: String,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConvertError {}

fn invalid(field: &'static str, message: impl fmt::Display) -> ConvertError {
    ConvertError { field, message: message.to_string() }
}

// ------------------------------------------------------------------ inbound

/// The longest stream prefix a filter may carry, in bytes.
pub const STREAM_PREFIX_BYTES_MAX: usize = 200;

/// The earliest and latest instants a `google.protobuf.Timestamp` may
/// carry: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS_MIN: i64 = -62_135_596_800;
const TIMESTAMP_SECONDS_MAX: i64 = 253_402_300_799;

/// Which way a timestamp between two microseconds goes.
#[derive(Clone, Copy)]
enum Rounding {
    /// To the microsecond at or before it: for "recorded at or before".
    Down,
    /// To the microsecond at or after it: for "recorded at or after" and
    /// "recorded before".
    Up,
}

/// A timestamp as microseconds since the Unix epoch, the resolution of
/// recording times.
fn micros(field: &'static str, timestamp: &prost_types::Timestamp, round: Rounding) -> Result<i64, ConvertError> {
    let prost_types::Timestamp { seconds, nanos } = *timestamp;
    if !(TIMESTAMP_SECONDS_MIN..=TIMESTAMP_SECONDS_MAX).contains(&seconds) {
        return Err(invalid(field, format!("{seconds} seconds is outside the years 1 to 9999")));
    }
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(invalid(field, format!("nanos {nanos} is not between 0 and 999,999,999")));
    }
    let sub_micros = match round {
        Rounding::Down => nanos / 1_000,
        Rounding::Up => (nanos + 999) / 1_000,
    };
    Ok(seconds * 1_000_000 + i64::from(sub_micros))
}

/// The point of the history a query asks for; `None` for the live figures.
pub fn as_of(as_of: Option<pb::AsOf>) -> Result<Option<AsOf>, ConvertError> {
    use pb::as_of::Point;
    let Some(as_of) = as_of else { return Ok(None) };
    match as_of.point {
        None => Err(invalid(
            "as_of",
            "sets none of seq, recorded_at and business_date; set one, or leave as_of out for the live figures",
        )),
        Some(Point::Seq(seq)) => Ok(Some(AsOf::Seq(seq))),
        Some(Point::RecordedAt(at)) => Ok(Some(AsOf::RecordedBy(micros("as_of.recorded_at", &at, Rounding::Down)?))),
        Some(Point::BusinessDate(text)) => Ok(Some(AsOf::BusinessDate(date("as_of.business_date", &text)?))),
    }
}

/// The filter of `ReadEvents` or `Subscribe`; absent keeps every event.
pub fn event_filter(filter: Option<pb::EventFilter>) -> Result<EventFilter, ConvertError> {
    use pb::event_filter::Streams;
    let Some(filter) = filter else { return Ok(EventFilter::everything()) };
    let stream = match filter.streams {
        None => StreamSelector::All,
        Some(Streams::Stream(text)) => match StreamId::parse(&text) {
            Some(id) => StreamSelector::Exact(id.to_string()),
            None => {
                return Err(invalid(
                    "filter.stream",
                    format!(
                        "{:?} is not a stream id (fund, partner/ID, round/ID or application/ID); \
                         use stream_prefix for every stream that starts with it",
                        text.chars().take(80).collect::<String>()
                    ),
                ))
            }
        },
        Some(Streams::StreamPrefix(prefix)) => {
            if prefix.is_empty() || prefix.len() > STREAM_PREFIX_BYTES_MAX {
                return Err(invalid(
                    "filter.stream_prefix",
                    format!("must be 1 to {STREAM_PREFIX_BYTES_MAX} bytes, got {}", prefix.len()),
                ));
            }
            StreamSelector::Prefix(prefix)
        }
    };
    let mut event_types = BTreeSet::new();
    for name in &filter.event_types {
        let known = EVENT_TYPE_NAMES.iter().find(|known| **known == name.as_str()).ok_or_else(|| {
            invalid(
                "filter.event_types",
                format!(
                    "{:?} is not an event type; the types are {}",
                    name.chars().take(80).collect::<String>(),
                    EVENT_TYPE_NAMES.join(", ")
                ),
            )
        })?;
        event_types.insert(*known);
    }
    let since = filter.recorded_since.map(|t| micros("filter.recorded_since", &t, Rounding::Up)).transpose()?;
    let until = filter.recorded_until.map(|t| micros("filter.recorded_until", &t, Rounding::Up)).transpose()?;
    if let (Some(since), Some(until)) = (since, until) {
        if until <= since {
            return Err(invalid(
                "filter.recorded_until",
                format!(
                    "{} is not after recorded_since {}: the range is empty",
                    timestamp_text(until),
                    timestamp_text(since)
                ),
            ));
        }
    }
    Ok(EventFilter { stream, event_types, recorded_since_micros: since, recorded_until_micros: until })
}

/// A time in microseconds as RFC 3339 text, for messages.
fn timestamp_text(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{micros} µs"))
}

/// A command as the ledger takes it, without the acting principal (which
/// comes from authentication, not from the message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCommand {
    pub command: Command,
    pub request_id: String,
    pub expected_version: Option<u64>,
    /// The caller asked to be answered only where the events are
    /// (`CommandMeta.positions_only`): the answer's form, not part of the
    /// request the ledger records.
    pub positions_only: bool,
}

/// A command request message: it turns into a domain command.
pub trait IntoCommand {
    fn into_command(self) -> Result<ParsedCommand, ConvertError>;
}

/// Parses the metadata every command carries and puts it together with the
/// command. `request_id` is required: without it a retry could not be told
/// from a new command. (In proto3 an empty string is an absent one; what
/// else makes a valid request id is the ledger's to check, in one place.)
fn with_meta(meta: Option<pb::CommandMeta>, command: Command) -> Result<ParsedCommand, ConvertError> {
    let meta = meta.ok_or_else(|| invalid("meta", "is required: every command carries a request_id"))?;
    if meta.request_id.is_empty() {
        return Err(invalid("meta.request_id", "is required: a client-generated idempotency key such as a UUID"));
    }
    Ok(ParsedCommand {
        command,
        request_id: meta.request_id,
        expected_version: meta.expected_version,
        positions_only: meta.positions_only,
    })
}

pub fn partner_id(field: &'static str, text: &str) -> Result<PartnerId, ConvertError> {
    PartnerId::new(text).map_err(|e| invalid(field, e))
}

pub fn round_id(field: &'static str, text: &str) -> Result<RoundId, ConvertError> {
    RoundId::new(text).map_err(|e| invalid(field, e))
}

pub fn application_id(field: &'static str, text: &str) -> Result<ApplicationId, ConvertError> {
    ApplicationId::new(text).map_err(|e| invalid(field, e))
}

fn earmark(field: &'static str, text: Option<String>) -> Result<Option<RoundId>, ConvertError> {
    text.map(|t| round_id(field, &t)).transpose()
}

fn date(field: &'static str, text: &str) -> Result<Date, ConvertError> {
    Date::parse(text).map_err(|e| invalid(field, e))
}

/// Parses the text of an amount; whether it fits the fund's currency is for
/// `decide` to say.
fn money(field: &'static str, money: Option<pb::Money>) -> Result<MoneyInput, ConvertError> {
    let money = money.ok_or_else(|| invalid(field, "is required"))?;
    MoneyInput::parse(&money.value, &money.currency).map_err(|e| invalid(field, e))
}

impl IntoCommand for pb::OpenFundRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        // The domain validates the currency itself; here the number only has
        // to fit the domain's type.
        let minor_units = u8::try_from(self.minor_units)
            .map_err(|_| invalid("minor_units", format!("{} is not a number of minor units", self.minor_units)))?;
        let command = Command::OpenFund { name: self.name, currency: Currency { code: self.currency, minor_units } };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::AdmitPartnerRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::AdmitPartner {
            partner: partner_id("partner_id", &self.partner_id)?,
            name: self.name,
            organisation_id: self.organisation_id,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::PledgeContributionRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::PledgeContribution {
            partner: partner_id("partner_id", &self.partner_id)?,
            amount: money("amount", self.amount)?,
            earmark: earmark("earmark_round_id", self.earmark_round_id)?,
            pledged_on: date("pledged_on", &self.pledged_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::ReducePledgeRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::ReducePledge {
            partner: partner_id("partner_id", &self.partner_id)?,
            amount: money("amount", self.amount)?,
            earmark: earmark("earmark_round_id", self.earmark_round_id)?,
            reason: self.reason,
            reduced_on: date("reduced_on", &self.reduced_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::RecordReceiptRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::RecordReceipt {
            partner: partner_id("partner_id", &self.partner_id)?,
            amount: money("amount", self.amount)?,
            earmark: earmark("earmark_round_id", self.earmark_round_id)?,
            value_date: date("value_date", &self.value_date)?,
            bank_reference: self.bank_reference,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::OpenRoundRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::OpenRound {
            round: round_id("round_id", &self.round_id)?,
            name: self.name,
            budget_ceiling: money("budget_ceiling", self.budget_ceiling)?,
            grant_max: money("grant_max", self.grant_max)?,
            opens_on: date("opens_on", &self.opens_on)?,
            closes_on: date("closes_on", &self.closes_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::CloseRoundRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::CloseRound {
            round: round_id("round_id", &self.round_id)?,
            closed_on: date("closed_on", &self.closed_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::SubmitApplicationRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let applicant = self.applicant.ok_or_else(|| invalid("applicant", "is required"))?;
        let command = Command::SubmitApplication {
            application: application_id("application_id", &self.application_id)?,
            round: round_id("round_id", &self.round_id)?,
            applicant: Applicant {
                name: applicant.name.into(),
                organisation_id: applicant.organisation_id.into(),
                place: applicant.place.into(),
                country: applicant.country.into(),
            },
            title: self.title,
            description: self.description,
            amount_requested: money("amount_requested", self.amount_requested)?,
            submitted_on: date("submitted_on", &self.submitted_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::WithdrawApplicationRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::WithdrawApplication {
            application: application_id("application_id", &self.application_id)?,
            reason: self.reason,
            withdrawn_on: date("withdrawn_on", &self.withdrawn_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::RejectApplicationRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::RejectApplication {
            application: application_id("application_id", &self.application_id)?,
            reason: self.reason,
            decided_on: date("decided_on", &self.decided_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::AwardGrantRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::AwardGrant {
            application: application_id("application_id", &self.application_id)?,
            amount: money("amount", self.amount)?,
            reason: self.reason,
            decided_on: date("decided_on", &self.decided_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::ReduceGrantRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::ReduceGrant {
            application: application_id("application_id", &self.application_id)?,
            amount: money("amount", self.amount)?,
            reason: self.reason,
            decided_on: date("decided_on", &self.decided_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::WithdrawGrantRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::WithdrawGrant {
            application: application_id("application_id", &self.application_id)?,
            reason: self.reason,
            decided_on: date("decided_on", &self.decided_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::SettleGrantRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::SettleGrant {
            application: application_id("application_id", &self.application_id)?,
            final_amount: money("final_amount", self.final_amount)?,
            reason: self.reason,
            decided_on: date("decided_on", &self.decided_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::MakePaymentRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::MakePayment {
            application: application_id("application_id", &self.application_id)?,
            amount: money("amount", self.amount)?,
            value_date: date("value_date", &self.value_date)?,
            bank_reference: self.bank_reference,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::RecordRefundRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::RecordRefund {
            application: application_id("application_id", &self.application_id)?,
            amount: money("amount", self.amount)?,
            value_date: date("value_date", &self.value_date)?,
            bank_reference: self.bank_reference,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::ProposeAwardRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::ProposeAward {
            application: application_id("application_id", &self.application_id)?,
            amount: money("amount", self.amount)?,
            reason: self.reason,
            proposed_on: date("proposed_on", &self.proposed_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::ApproveAwardRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::ApproveAward {
            application: application_id("application_id", &self.application_id)?,
            decided_on: date("decided_on", &self.decided_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::ProposePaymentRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::ProposePayment {
            application: application_id("application_id", &self.application_id)?,
            amount: money("amount", self.amount)?,
            value_date: date("value_date", &self.value_date)?,
            bank_reference: self.bank_reference,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::ApprovePaymentRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::ApprovePayment { application: application_id("application_id", &self.application_id)? };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::DeclareConflictRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::DeclareConflict {
            application: application_id("application_id", &self.application_id)?,
            reason: self.reason,
            declared_on: date("declared_on", &self.declared_on)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::SetApprovalThresholdsRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::SetApprovalThresholds {
            round: round_id("round_id", &self.round_id)?,
            award_above: self.award_above.map(|m| money("award_above", Some(m))).transpose()?,
            payment_above: self.payment_above.map(|m| money("payment_above", Some(m))).transpose()?,
        };
        with_meta(self.meta, command)
    }
}

pub fn principal_id(field: &'static str, text: &str) -> Result<PrincipalId, ConvertError> {
    PrincipalId::new(text).map_err(|e| invalid(field, e))
}

/// A role as the wire carries it.
pub fn role_in(role: Option<pb::Role>) -> Result<Role, ConvertError> {
    let role = role.ok_or_else(|| invalid("role", "is required"))?;
    let kind = pb::RoleKind::try_from(role.kind).map_err(|_| invalid("role.kind", "is not a known role"))?;
    let partner = |kind_name: &str| match &role.partner_id {
        Some(_) => Err(invalid("role.partner_id", format!("is only for a partner role, not {kind_name}"))),
        None => Ok(()),
    };
    match kind {
        pb::RoleKind::Admin => partner("admin").map(|()| Role::Admin),
        pb::RoleKind::Officer => partner("officer").map(|()| Role::Officer),
        pb::RoleKind::Auditor => partner("auditor").map(|()| Role::Auditor),
        pb::RoleKind::Partner => {
            let id = role.partner_id.ok_or_else(|| invalid("role.partner_id", "is required for a partner role"))?;
            Ok(Role::Partner(partner_id("role.partner_id", &id)?))
        }
        pb::RoleKind::Unspecified => Err(invalid("role.kind", "is required")),
    }
}

pub fn role_out(role: &Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role { kind: pb::RoleKind::Admin.into(), partner_id: None },
        Role::Officer => pb::Role { kind: pb::RoleKind::Officer.into(), partner_id: None },
        Role::Auditor => pb::Role { kind: pb::RoleKind::Auditor.into(), partner_id: None },
        Role::Partner(p) => pb::Role { kind: pb::RoleKind::Partner.into(), partner_id: Some(p.to_string()) },
    }
}

/// A SHA-256 in 64 hex digits.
fn sha256_in(field: &'static str, text: &str) -> Result<[u8; 32], ConvertError> {
    let bytes = hex::decode(text).map_err(|_| invalid(field, "is not hexadecimal"))?;
    bytes.try_into().map_err(|_| invalid(field, "must be 32 bytes (64 hex digits), a SHA-256"))
}

impl IntoCommand for pb::GrantAccessRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command = Command::GrantAccess {
            principal: principal_id("principal_id", &self.principal_id)?,
            role: role_in(self.role)?,
            token_sha256: sha256_in("token_sha256", &self.token_sha256)?,
        };
        with_meta(self.meta, command)
    }
}

impl IntoCommand for pb::RevokeAccessRequest {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        let command =
            Command::RevokeAccess { principal: principal_id("principal_id", &self.principal_id)?, reason: self.reason };
        with_meta(self.meta, command)
    }
}

/// One command of a batch call: parsed exactly as its own RPC's request.
impl IntoCommand for pb::BatchCommand {
    fn into_command(self) -> Result<ParsedCommand, ConvertError> {
        use pb::batch_command::Command as C;
        match self.command.ok_or_else(|| invalid("command", "is required: one of the command requests"))? {
            C::OpenFund(r) => r.into_command(),
            C::AdmitPartner(r) => r.into_command(),
            C::PledgeContribution(r) => r.into_command(),
            C::ReducePledge(r) => r.into_command(),
            C::RecordReceipt(r) => r.into_command(),
            C::OpenRound(r) => r.into_command(),
            C::CloseRound(r) => r.into_command(),
            C::SubmitApplication(r) => r.into_command(),
            C::WithdrawApplication(r) => r.into_command(),
            C::RejectApplication(r) => r.into_command(),
            C::AwardGrant(r) => r.into_command(),
            C::ReduceGrant(r) => r.into_command(),
            C::WithdrawGrant(r) => r.into_command(),
            C::SettleGrant(r) => r.into_command(),
            C::MakePayment(r) => r.into_command(),
            C::RecordRefund(r) => r.into_command(),
            C::ProposeAward(r) => r.into_command(),
            C::ApproveAward(r) => r.into_command(),
            C::ProposePayment(r) => r.into_command(),
            C::ApprovePayment(r) => r.into_command(),
            C::DeclareConflict(r) => r.into_command(),
            C::SetApprovalThresholds(r) => r.into_command(),
            C::GrantAccess(r) => r.into_command(),
            C::RevokeAccess(r) => r.into_command(),
        }
    }
}

/// A domain command as the request message a client sends, inside a
/// [`pb::BatchCommand`]: for clients written in Rust (the load generator,
/// imports). Parsing it back with [`IntoCommand`] gives the same command.
pub fn batch_command(command: &Command, meta: pb::CommandMeta) -> pb::BatchCommand {
    use pb::batch_command::Command as C;
    let meta = Some(meta);
    let money = |m: &MoneyInput| Some(pb::Money { value: m.value.to_string(), currency: m.currency.clone() });
    let id = |i: &ApplicationId| i.to_string();
    let command = match command.clone() {
        Command::OpenFund { name, currency } => C::OpenFund(pb::OpenFundRequest {
            meta,
            name,
            currency: currency.code,
            minor_units: currency.minor_units.into(),
        }),
        Command::AdmitPartner { partner, name, organisation_id } => {
            C::AdmitPartner(pb::AdmitPartnerRequest { meta, partner_id: partner.to_string(), name, organisation_id })
        }
        Command::PledgeContribution { partner, amount, earmark, pledged_on } => {
            C::PledgeContribution(pb::PledgeContributionRequest {
                meta,
                partner_id: partner.to_string(),
                amount: money(&amount),
                earmark_round_id: earmark.map(|r| r.to_string()),
                pledged_on: pledged_on.to_string(),
            })
        }
        Command::ReducePledge { partner, amount, earmark, reason, reduced_on } => {
            C::ReducePledge(pb::ReducePledgeRequest {
                meta,
                partner_id: partner.to_string(),
                amount: money(&amount),
                earmark_round_id: earmark.map(|r| r.to_string()),
                reason,
                reduced_on: reduced_on.to_string(),
            })
        }
        Command::RecordReceipt { partner, amount, earmark, value_date, bank_reference } => {
            C::RecordReceipt(pb::RecordReceiptRequest {
                meta,
                partner_id: partner.to_string(),
                amount: money(&amount),
                earmark_round_id: earmark.map(|r| r.to_string()),
                value_date: value_date.to_string(),
                bank_reference,
            })
        }
        Command::OpenRound { round, name, budget_ceiling, grant_max, opens_on, closes_on } => {
            C::OpenRound(pb::OpenRoundRequest {
                meta,
                round_id: round.to_string(),
                name,
                budget_ceiling: money(&budget_ceiling),
                grant_max: money(&grant_max),
                opens_on: opens_on.to_string(),
                closes_on: closes_on.to_string(),
            })
        }
        Command::CloseRound { round, closed_on } => {
            C::CloseRound(pb::CloseRoundRequest { meta, round_id: round.to_string(), closed_on: closed_on.to_string() })
        }
        Command::SubmitApplication {
            application,
            round,
            applicant,
            title,
            description,
            amount_requested,
            submitted_on,
        } => C::SubmitApplication(pb::SubmitApplicationRequest {
            meta,
            application_id: id(&application),
            round_id: round.to_string(),
            applicant: Some(pb::Applicant {
                name: applicant.name.into(),
                organisation_id: applicant.organisation_id.into(),
                place: applicant.place.into(),
                country: applicant.country.into(),
            }),
            title,
            description,
            amount_requested: money(&amount_requested),
            submitted_on: submitted_on.to_string(),
        }),
        Command::WithdrawApplication { application, reason, withdrawn_on } => {
            C::WithdrawApplication(pb::WithdrawApplicationRequest {
                meta,
                application_id: id(&application),
                reason,
                withdrawn_on: withdrawn_on.to_string(),
            })
        }
        Command::RejectApplication { application, reason, decided_on } => {
            C::RejectApplication(pb::RejectApplicationRequest {
                meta,
                application_id: id(&application),
                reason,
                decided_on: decided_on.to_string(),
            })
        }
        Command::AwardGrant { application, amount, reason, decided_on } => C::AwardGrant(pb::AwardGrantRequest {
            meta,
            application_id: id(&application),
            amount: money(&amount),
            reason,
            decided_on: decided_on.to_string(),
        }),
        Command::ReduceGrant { application, amount, reason, decided_on } => C::ReduceGrant(pb::ReduceGrantRequest {
            meta,
            application_id: id(&application),
            amount: money(&amount),
            reason,
            decided_on: decided_on.to_string(),
        }),
        Command::WithdrawGrant { application, reason, decided_on } => C::WithdrawGrant(pb::WithdrawGrantRequest {
            meta,
            application_id: id(&application),
            reason,
            decided_on: decided_on.to_string(),
        }),
        Command::SettleGrant { application, final_amount, reason, decided_on } => {
            C::SettleGrant(pb::SettleGrantRequest {
                meta,
                application_id: id(&application),
                final_amount: money(&final_amount),
                reason,
                decided_on: decided_on.to_string(),
            })
        }
        Command::MakePayment { application, amount, value_date, bank_reference } => {
            C::MakePayment(pb::MakePaymentRequest {
                meta,
                application_id: id(&application),
                amount: money(&amount),
                value_date: value_date.to_string(),
                bank_reference,
            })
        }
        Command::RecordRefund { application, amount, value_date, bank_reference } => {
            C::RecordRefund(pb::RecordRefundRequest {
                meta,
                application_id: id(&application),
                amount: money(&amount),
                value_date: value_date.to_string(),
                bank_reference,
            })
        }
        Command::SetApprovalThresholds { round, award_above, payment_above } => {
            C::SetApprovalThresholds(pb::SetApprovalThresholdsRequest {
                meta,
                round_id: round.to_string(),
                award_above: award_above.as_ref().and_then(money),
                payment_above: payment_above.as_ref().and_then(money),
            })
        }
        Command::GrantAccess { principal, role, token_sha256 } => C::GrantAccess(pb::GrantAccessRequest {
            meta,
            principal_id: principal.to_string(),
            role: Some(role_out(&role)),
            token_sha256: hash_text(&token_sha256),
        }),
        Command::RevokeAccess { principal, reason } => {
            C::RevokeAccess(pb::RevokeAccessRequest { meta, principal_id: principal.to_string(), reason })
        }
        Command::ProposeAward { application, amount, reason, proposed_on } => {
            C::ProposeAward(pb::ProposeAwardRequest {
                meta,
                application_id: id(&application),
                amount: money(&amount),
                reason,
                proposed_on: proposed_on.to_string(),
            })
        }
        Command::ApproveAward { application, decided_on } => C::ApproveAward(pb::ApproveAwardRequest {
            meta,
            application_id: id(&application),
            decided_on: decided_on.to_string(),
        }),
        Command::ProposePayment { application, amount, value_date, bank_reference } => {
            C::ProposePayment(pb::ProposePaymentRequest {
                meta,
                application_id: id(&application),
                amount: money(&amount),
                value_date: value_date.to_string(),
                bank_reference,
            })
        }
        Command::ApprovePayment { application } => {
            C::ApprovePayment(pb::ApprovePaymentRequest { meta, application_id: id(&application) })
        }
        Command::DeclareConflict { application, reason, declared_on } => {
            C::DeclareConflict(pb::DeclareConflictRequest {
                meta,
                application_id: id(&application),
                reason,
                declared_on: declared_on.to_string(),
            })
        }
    };
    pb::BatchCommand { command: Some(command) }
}

/// The principals of the fund, in id order.
pub fn principals(state: &FundState) -> pb::ListPrincipalsResponse {
    pb::ListPrincipalsResponse {
        principals: state
            .principals
            .iter()
            .map(|(id, p)| pb::PrincipalInfo {
                principal_id: id.to_string(),
                role: Some(role_out(&p.role)),
                revoked: p.revoked,
            })
            .collect(),
    }
}

/// The arguments of `ListApplications`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationQuery {
    pub round: Option<RoundId>,
    pub status: Option<ApplicationStatus>,
    /// Between 1 and [`PAGE_SIZE_MAX`].
    pub page_size: usize,
    /// Start after this application (the last one of the previous page).
    pub after: Option<ApplicationId>,
}

pub fn application_query(request: pb::ListApplicationsRequest) -> Result<ApplicationQuery, ConvertError> {
    let page_size = match usize::try_from(request.page_size).unwrap_or(usize::MAX) {
        0 => PAGE_SIZE_DEFAULT,
        n if n <= PAGE_SIZE_MAX => n,
        n => return Err(invalid("page_size", format!("{n} exceeds the maximum of {PAGE_SIZE_MAX}"))),
    };
    let status = match request.status {
        None => None,
        Some(raw) => match pb::ApplicationStatus::try_from(raw) {
            Ok(pb::ApplicationStatus::Pending) => Some(ApplicationStatus::Pending),
            Ok(pb::ApplicationStatus::Withdrawn) => Some(ApplicationStatus::Withdrawn),
            Ok(pb::ApplicationStatus::Rejected) => Some(ApplicationStatus::Rejected),
            Ok(pb::ApplicationStatus::Awarded) => Some(ApplicationStatus::Awarded),
            Ok(pb::ApplicationStatus::Unspecified) | Err(_) => {
                return Err(invalid("status", format!("{raw} is not an application status; leave it out for all")))
            }
        },
    };
    // The token is the last application id of the previous page. Clients
    // must treat it as opaque, so that it can change form later.
    let after = match request.page_token.as_str() {
        "" => None,
        token => {
            Some(ApplicationId::new(token).map_err(|_| invalid("page_token", "is not a token this server issued"))?)
        }
    };
    Ok(ApplicationQuery {
        round: request.round_id.map(|r| round_id("round_id", &r)).transpose()?,
        status,
        page_size,
        after,
    })
}

/// The `page_token` that continues a listing after `last`.
pub fn page_token(last: &ApplicationId) -> String {
    last.as_str().to_owned()
}

// ------------------------------------------------------------------ outbound

/// An amount in the fund's currency, as exact decimal text.
pub fn money_out(currency: &Currency, amount: Amount) -> pb::Money {
    pb::Money { value: currency.plain(amount), currency: currency.code.clone() }
}

fn share(currency: &Currency, share: &Share) -> pb::Share {
    pb::Share {
        partner_id: share.pot.partner.to_string(),
        earmark_round_id: share.pot.earmark.as_ref().map(RoundId::to_string),
        amount: Some(money_out(currency, share.amount)),
    }
}

fn shares(currency: &Currency, shares: &[Share]) -> Vec<pb::Share> {
    shares.iter().map(|s| share(currency, s)).collect()
}

fn applicant_out(applicant: &Applicant) -> pb::Applicant {
    pb::Applicant {
        name: applicant.name.to_string(),
        organisation_id: applicant.organisation_id.to_string(),
        place: applicant.place.to_string(),
        country: applicant.country.to_string(),
    }
}

/// The event as the payload of a `RecordedEvent`. `currency` is the fund's;
/// `FundOpened` carries its own.
pub fn event_payload(currency: &Currency, event: &Event) -> pb::recorded_event::Payload {
    use pb::recorded_event::Payload;
    let m = |amount: &Amount| Some(money_out(currency, *amount));
    let earmark = |pot: &PotKey| pot.earmark.as_ref().map(RoundId::to_string);
    match event {
        Event::FundOpened { name, currency } => Payload::FundOpened(pb::FundOpened {
            name: name.clone(),
            currency: currency.code.clone(),
            minor_units: u32::from(currency.minor_units),
        }),
        Event::PartnerAdmitted { partner, name, organisation_id } => Payload::PartnerAdmitted(pb::PartnerAdmitted {
            partner_id: partner.to_string(),
            name: name.clone(),
            organisation_id: organisation_id.clone(),
        }),
        Event::ContributionPledged { pot, amount, pledged_on } => {
            Payload::ContributionPledged(pb::ContributionPledged {
                partner_id: pot.partner.to_string(),
                earmark_round_id: earmark(pot),
                amount: m(amount),
                pledged_on: pledged_on.to_string(),
            })
        }
        Event::PledgeReduced { pot, amount, reason, reduced_on } => Payload::PledgeReduced(pb::PledgeReduced {
            partner_id: pot.partner.to_string(),
            earmark_round_id: earmark(pot),
            amount: m(amount),
            reason: reason.clone(),
            reduced_on: reduced_on.to_string(),
        }),
        Event::ContributionReceived { pot, amount, value_date, bank_reference } => {
            Payload::ContributionReceived(pb::ContributionReceived {
                partner_id: pot.partner.to_string(),
                earmark_round_id: earmark(pot),
                amount: m(amount),
                value_date: value_date.to_string(),
                bank_reference: bank_reference.clone(),
            })
        }
        Event::RoundOpened { round, name, budget_ceiling, grant_max, opens_on, closes_on } => {
            Payload::RoundOpened(pb::RoundOpened {
                round_id: round.to_string(),
                name: name.clone(),
                budget_ceiling: m(budget_ceiling),
                grant_max: m(grant_max),
                opens_on: opens_on.to_string(),
                closes_on: closes_on.to_string(),
            })
        }
        Event::RoundClosed { round, closed_on } => {
            Payload::RoundClosed(pb::RoundClosed { round_id: round.to_string(), closed_on: closed_on.to_string() })
        }
        Event::ApplicationSubmitted {
            application,
            round,
            applicant,
            title,
            description,
            amount_requested,
            submitted_on,
        } => Payload::ApplicationSubmitted(pb::ApplicationSubmitted {
            application_id: application.to_string(),
            round_id: round.to_string(),
            applicant: Some(applicant_out(applicant)),
            title: title.clone(),
            description: description.clone(),
            amount_requested: m(amount_requested),
            submitted_on: submitted_on.to_string(),
        }),
        Event::ApplicationWithdrawn { application, reason, withdrawn_on } => {
            Payload::ApplicationWithdrawn(pb::ApplicationWithdrawn {
                application_id: application.to_string(),
                reason: reason.clone(),
                withdrawn_on: withdrawn_on.to_string(),
            })
        }
        Event::ApplicationRejected { application, reason, decided_by, decided_on } => {
            Payload::ApplicationRejected(pb::ApplicationRejected {
                application_id: application.to_string(),
                reason: reason.clone(),
                decided_by: decided_by.clone(),
                decided_on: decided_on.to_string(),
            })
        }
        Event::GrantAwarded { application, amount, attribution, reason, decided_by, decided_on } => {
            Payload::GrantAwarded(pb::GrantAwarded {
                application_id: application.to_string(),
                amount: m(amount),
                attribution: shares(currency, attribution),
                reason: reason.clone(),
                decided_by: decided_by.clone(),
                decided_on: decided_on.to_string(),
            })
        }
        Event::GrantReduced { application, amount, released, reason, decided_by, decided_on } => {
            Payload::GrantReduced(pb::GrantReduced {
                application_id: application.to_string(),
                amount: m(amount),
                released: shares(currency, released),
                reason: reason.clone(),
                decided_by: decided_by.clone(),
                decided_on: decided_on.to_string(),
            })
        }
        Event::GrantWithdrawn { application, released, reason, decided_by, decided_on } => {
            Payload::GrantWithdrawn(pb::GrantWithdrawn {
                application_id: application.to_string(),
                released: shares(currency, released),
                reason: reason.clone(),
                decided_by: decided_by.clone(),
                decided_on: decided_on.to_string(),
            })
        }
        Event::GrantSettled { application, final_amount, released, reason, decided_by, decided_on } => {
            Payload::GrantSettled(pb::GrantSettled {
                application_id: application.to_string(),
                final_amount: m(final_amount),
                released: shares(currency, released),
                reason: reason.clone(),
                decided_by: decided_by.clone(),
                decided_on: decided_on.to_string(),
            })
        }
        Event::PaymentMade { application, tranche, amount, attribution, value_date, bank_reference } => {
            Payload::PaymentMade(pb::PaymentMade {
                application_id: application.to_string(),
                tranche: *tranche,
                amount: m(amount),
                attribution: shares(currency, attribution),
                value_date: value_date.to_string(),
                bank_reference: bank_reference.clone(),
            })
        }
        Event::RefundReceived { application, amount, attribution, releases, value_date, bank_reference } => {
            Payload::RefundReceived(pb::RefundReceived {
                application_id: application.to_string(),
                amount: m(amount),
                attribution: shares(currency, attribution),
                releases: *releases,
                value_date: value_date.to_string(),
                bank_reference: bank_reference.clone(),
            })
        }
        Event::ApprovalThresholdsSet { round, award_above, payment_above } => {
            Payload::ApprovalThresholdsSet(pb::ApprovalThresholdsSet {
                round_id: round.to_string(),
                award_above: award_above.as_ref().and_then(m),
                payment_above: payment_above.as_ref().and_then(m),
            })
        }
        Event::AccessGranted { principal, role, token_sha256 } => Payload::AccessGranted(pb::AccessGranted {
            principal_id: principal.to_string(),
            role: Some(role_out(role)),
            token_sha256: hash_text(token_sha256),
        }),
        Event::AccessRevoked { principal, reason } => {
            Payload::AccessRevoked(pb::AccessRevoked { principal_id: principal.to_string(), reason: reason.clone() })
        }
        Event::AwardProposed { application, amount, reason, proposed_by, proposed_on } => {
            Payload::AwardProposed(pb::AwardProposed {
                application_id: application.to_string(),
                amount: m(amount),
                reason: reason.clone(),
                proposed_by: proposed_by.clone(),
                proposed_on: proposed_on.to_string(),
            })
        }
        Event::PaymentProposed { application, amount, value_date, bank_reference, proposed_by } => {
            Payload::PaymentProposed(pb::PaymentProposed {
                application_id: application.to_string(),
                amount: m(amount),
                value_date: value_date.to_string(),
                bank_reference: bank_reference.clone(),
                proposed_by: proposed_by.clone(),
            })
        }
        Event::ConflictDeclared { application, officer, reason, declared_on } => {
            Payload::ConflictDeclared(pb::ConflictDeclared {
                application_id: application.to_string(),
                officer: officer.clone(),
                reason: reason.clone(),
                declared_on: declared_on.to_string(),
            })
        }
    }
}

/// A durable event with its envelope. `currency` is the fund's.
pub fn recorded_event(currency: &Currency, recorded: &RecordedEvent) -> pb::RecordedEvent {
    let envelope = &recorded.envelope;
    pb::RecordedEvent {
        seq: envelope.seq,
        stream: envelope.stream.clone(),
        stream_version: envelope.stream_version,
        event_type: envelope.event_type.clone(),
        schema_version: u32::from(envelope.schema_version),
        recorded_at: Some(timestamp(envelope.recorded_at_micros)),
        actor: envelope.actor.clone(),
        request_id: envelope.request_id.clone(),
        prev_hash: hash_text(&envelope.prev_hash),
        hash: hash_text(&envelope.hash),
        payload: Some(event_payload(currency, &recorded.event)),
    }
}

/// A hash (or a token's SHA-256) as 64 lowercase hex digits, for every
/// message that carries one. Through a table into a buffer: `hex::encode`
/// pushes one `char` at a time, and every event of an answer in full
/// carries two hashes.
fn hash_text(hash: &Hash) -> String {
    let mut text = [0u8; 2 * HASH_BYTES];
    hex::encode_to_slice(hash, &mut text).expect("twice the hash's bytes");
    String::from_utf8(text.to_vec()).expect("hex digits are ASCII")
}

/// A recording time in microseconds since the Unix epoch, as a timestamp.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    let nanos = i32::try_from(micros.rem_euclid(1_000_000) * 1_000).expect("below one second");
    prost_types::Timestamp { seconds: micros.div_euclid(1_000_000), nanos }
}

/// The figures of a pot (or of pots added together).
pub fn balance(currency: &Currency, pot: &Pot) -> pb::Balance {
    let m = |amount: Amount| Some(money_out(currency, amount));
    pb::Balance {
        pledged: m(pot.pledged),
        pledge_reduced: m(pot.pledge_reduced),
        received: m(pot.received),
        outstanding_pledges: m(pot.outstanding()),
        awarded: m(pot.awarded),
        paid: m(pot.paid),
        refunded: m(pot.refunded),
        open_commitments: m(pot.open_commitments()),
        available: m(pot.available()),
        cash_held: m(pot.cash_held()),
    }
}

/// One partner's totals and its pots, unrestricted first, then by round.
pub fn partner_balance(
    state: &FundState,
    currency: &Currency,
    id: &PartnerId,
    partner: &Partner,
) -> pb::PartnerBalance {
    partner_message(id, partner, &state.pots, &state.partner_totals(id), |pot| balance(currency, pot))
}

/// A partner's message from its pots and totals, live or dated alike.
fn partner_message<P>(
    id: &PartnerId,
    partner: &Partner,
    pots: &BTreeMap<PotKey, P>,
    total: &P,
    balance: impl Fn(&P) -> pb::Balance,
) -> pb::PartnerBalance {
    let pots = partner_pots(pots, id)
        .map(|(key, pot)| pb::PotBalance {
            earmark_round_id: key.earmark.as_ref().map(RoundId::to_string),
            balance: Some(balance(pot)),
        })
        .collect();
    pb::PartnerBalance {
        partner_id: id.to_string(),
        name: partner.name.clone(),
        organisation_id: partner.organisation_id.clone(),
        total: Some(balance(total)),
        pots,
    }
}

/// Counts of one kind of thing, as the wire carries them. No fund comes near
/// four billion of anything; reaching it would be a corrupt state.
fn count(n: usize) -> u32 {
    u32::try_from(n).expect("count fits in u32")
}

/// The fund as a whole, as of the projections' head; `None` before the fund
/// has been opened.
pub fn fund_summary(projections: &Projections) -> Option<pb::GetFundSummaryResponse> {
    let state = &projections.state;
    let fund = state.fund.as_ref()?;
    let grants = || state.applications.values().filter_map(|a| a.grant.as_ref());
    Some(pb::GetFundSummaryResponse {
        name: fund.name.clone(),
        currency: fund.currency.code.clone(),
        minor_units: u32::from(fund.currency.minor_units),
        totals: Some(balance(&fund.currency, &state.fund_totals())),
        partners: count(state.partners.len()),
        rounds: count(state.rounds.len()),
        rounds_open: count(state.rounds.values().filter(|r| r.closed_on.is_none()).count()),
        applications: count(state.applications.len()),
        applications_pending: count(
            state.applications.values().filter(|a| a.status == ApplicationStatus::Pending).count(),
        ),
        grants: count(grants().count()),
        grants_active: count(grants().filter(|g| g.status == GrantStatus::Active).count()),
        head_seq: projections.head_seq,
        head_hash: hash_text(&projections.head_hash),
        head_recorded_at: Some(timestamp(projections.head_recorded_at_micros)),
        position: Some(position(&Position::of(projections), None)),
    })
}

/// The event an answer reflects; `business_date` for an answer as of one.
pub fn position(position: &Position, business_date: Option<Date>) -> pb::Position {
    pb::Position {
        seq: position.seq,
        hash: hash_text(&position.hash),
        recorded_at: Some(timestamp(position.recorded_at_micros)),
        business_date: business_date.map(|d| d.to_string()),
    }
}

// ----- as of a business date

/// A signed figure in the fund's currency, as exact decimal text.
pub fn signed_money_out(currency: &Currency, amount: SignedAmount) -> pb::Money {
    pb::Money { value: currency.plain_signed(amount), currency: currency.code.clone() }
}

/// The figures of a pot (or of pots added together) as of a business date.
pub fn dated_balance(currency: &Currency, pot: &DatedPot) -> pb::Balance {
    let m = |amount: SignedAmount| Some(signed_money_out(currency, amount));
    pb::Balance {
        pledged: m(pot.pledged),
        pledge_reduced: m(pot.pledge_reduced),
        received: m(pot.received),
        outstanding_pledges: m(pot.outstanding()),
        awarded: m(pot.awarded),
        paid: m(pot.paid),
        refunded: m(pot.refunded),
        open_commitments: m(pot.open_commitments()),
        available: m(pot.available()),
        cash_held: m(pot.cash_held()),
    }
}

/// One partner's totals and pots as of a business date.
pub fn dated_partner_balance(
    view: &DatedView,
    currency: &Currency,
    id: &PartnerId,
    partner: &Partner,
) -> pb::PartnerBalance {
    partner_message(id, partner, &view.pots, &view.partner_totals(id), |pot| dated_balance(currency, pot))
}

/// The figures of one round as of a business date.
pub fn dated_round_figures(currency: &Currency, id: &RoundId, round: &DatedRound) -> pb::RoundFigures {
    let m = |amount: Amount| Some(money_out(currency, amount));
    let signed = |amount: SignedAmount| Some(signed_money_out(currency, amount));
    pb::RoundFigures {
        round_id: id.to_string(),
        name: round.name.clone(),
        opens_on: round.opens_on.to_string(),
        closes_on: round.closes_on.to_string(),
        closed_on: round.closed_on.map(|d| d.to_string()),
        budget_ceiling: m(round.budget_ceiling),
        grant_max: m(round.grant_max),
        applications_received: round.applications_received,
        applications_decided: round.applications_decided(),
        applications_awarded: round.applications_awarded,
        applications_rejected: round.applications_rejected,
        applications_withdrawn: round.applications_withdrawn,
        applications_pending: round.applications_pending,
        amount_requested: m(round.amount_requested),
        amount_awarded: m(round.amount_awarded),
        amount_committed: signed(round.amount_committed),
        budget_left: signed(round.budget_left()),
        // Thresholds are configuration, not dated figures.
        award_four_eyes_above: None,
        payment_four_eyes_above: None,
    }
}

/// The fund as a whole as of a business date, counting events 1 to
/// `through.seq`; `None` before the fund has been opened.
pub fn dated_fund_summary(view: &DatedView, through: &Position) -> Option<pb::GetFundSummaryResponse> {
    let fund = view.fund.as_ref()?;
    let rounds = view.rounds.values();
    Some(pb::GetFundSummaryResponse {
        name: fund.name.clone(),
        currency: fund.currency.code.clone(),
        minor_units: u32::from(fund.currency.minor_units),
        totals: Some(dated_balance(&fund.currency, &view.fund_totals())),
        partners: count(view.partners.len()),
        rounds: count(view.rounds.len()),
        rounds_open: count(rounds.clone().filter(|r| r.closed_on.is_none()).count()),
        applications: rounds.clone().map(|r| r.applications_received).sum(),
        applications_pending: rounds.map(|r| r.applications_pending).sum(),
        grants: view.grants,
        grants_active: view.grants_active,
        head_seq: through.seq,
        head_hash: hash_text(&through.hash),
        head_recorded_at: Some(timestamp(through.recorded_at_micros)),
        position: Some(position(through, Some(view.date))),
    })
}

pub fn round_figures(currency: &Currency, id: &RoundId, round: &Round) -> pb::RoundFigures {
    let m = |amount: Amount| Some(money_out(currency, amount));
    pb::RoundFigures {
        round_id: id.to_string(),
        name: round.name.clone(),
        opens_on: round.opens_on.to_string(),
        closes_on: round.closes_on.to_string(),
        closed_on: round.closed_on.map(|d| d.to_string()),
        budget_ceiling: m(round.budget_ceiling),
        grant_max: m(round.grant_max),
        applications_received: round.applications_received,
        applications_decided: round.applications_decided(),
        applications_awarded: round.applications_awarded,
        applications_rejected: round.applications_rejected,
        applications_withdrawn: round.applications_withdrawn,
        applications_pending: round.applications_pending(),
        amount_requested: m(round.amount_requested),
        amount_awarded: m(round.amount_awarded),
        amount_committed: m(round.amount_committed),
        budget_left: m(round.budget_left()),
        award_four_eyes_above: round.award_four_eyes_above.and_then(m),
        payment_four_eyes_above: round.payment_four_eyes_above.and_then(m),
    }
}

fn application_status(status: ApplicationStatus) -> pb::ApplicationStatus {
    match status {
        ApplicationStatus::Pending => pb::ApplicationStatus::Pending,
        ApplicationStatus::Withdrawn => pb::ApplicationStatus::Withdrawn,
        ApplicationStatus::Rejected => pb::ApplicationStatus::Rejected,
        ApplicationStatus::Awarded => pb::ApplicationStatus::Awarded,
    }
}

fn grant_status(status: GrantStatus) -> pb::GrantStatus {
    match status {
        GrantStatus::Active => pb::GrantStatus::Active,
        GrantStatus::Settled => pb::GrantStatus::Settled,
        GrantStatus::Withdrawn => pb::GrantStatus::Withdrawn,
    }
}

fn decision(decision: &Decision) -> pb::Decision {
    pb::Decision {
        reason: decision.reason.to_string(),
        decided_by: decision.decided_by.to_string(),
        decided_on: decision.decided_on.to_string(),
    }
}

pub fn application(currency: &Currency, id: &ApplicationId, app: &Application) -> pb::Application {
    pb::Application {
        application_id: id.to_string(),
        round_id: app.round.to_string(),
        applicant: Some(applicant_out(&app.applicant)),
        title: app.title.to_string(),
        description: app.description.to_string(),
        amount_requested: Some(money_out(currency, app.amount_requested)),
        submitted_on: app.submitted_on.to_string(),
        status: application_status(app.status).into(),
        decision: app.decision.as_ref().map(decision),
        award_proposal: app.award_proposal.as_ref().map(|p| pb::AwardProposed {
            application_id: id.to_string(),
            amount: Some(money_out(currency, p.amount)),
            reason: p.reason.clone(),
            proposed_by: p.proposed_by.clone(),
            proposed_on: p.proposed_on.to_string(),
        }),
        conflicts: app.conflicts.iter().cloned().collect(),
    }
}

pub fn grant_position(currency: &Currency, grant: &Grant) -> pb::GrantPosition {
    let m = |amount: Amount| Some(money_out(currency, amount));
    pb::GrantPosition {
        awarded: m(grant.awarded),
        amount: m(grant.amount),
        status: grant_status(grant.status).into(),
        paid: m(grant.paid),
        refunded: m(grant.refunded),
        net_paid: m(grant.net_paid()),
        open: m(grant.open()),
        tranches: grant.tranches,
        awarded_on: grant.awarded_on.to_string(),
        settled_on: grant.settled_on.map(|d| d.to_string()),
        shares: grant
            .shares
            .iter()
            .map(|(pot, s)| pb::GrantShare {
                partner_id: pot.partner.to_string(),
                earmark_round_id: pot.earmark.as_ref().map(RoundId::to_string),
                amount: m(s.amount),
                paid: m(s.paid),
                refunded: m(s.refunded),
                net_paid: m(s.net_paid()),
                open: m(s.open()),
            })
            .collect(),
        payment_proposal: grant.payment_proposal.as_ref().map(|p| pb::PaymentProposed {
            application_id: String::new(),
            amount: m(p.amount),
            value_date: p.value_date.to_string(),
            bank_reference: p.bank_reference.clone(),
            proposed_by: p.proposed_by.clone(),
        }),
    }
}

pub fn application_summary(currency: &Currency, id: &ApplicationId, app: &Application) -> pb::ApplicationSummary {
    pb::ApplicationSummary {
        application_id: id.to_string(),
        round_id: app.round.to_string(),
        applicant_name: app.applicant.name.to_string(),
        place: app.applicant.place.to_string(),
        country: app.applicant.country.to_string(),
        title: app.title.to_string(),
        amount_requested: Some(money_out(currency, app.amount_requested)),
        status: application_status(app.status).into(),
        grant_amount: app.grant.as_ref().map(|g| money_out(currency, g.amount)),
        grant_status: app.grant.as_ref().map_or(pb::GrantStatus::Unspecified, |g| grant_status(g.status)).into(),
    }
}

// ------------------------------------------------------------------ exports

/// The 360Giving export a request asks for.
pub fn three_sixty_giving_options(
    request: pb::Export360GivingRequest,
) -> Result<crate::export::three_sixty_giving::Options, ConvertError> {
    use crate::export::three_sixty_giving::{Format, Options, PREFIX_DEFAULT};
    let format = match request.format.as_str() {
        "" | "json" => Format::Json,
        "csv" => Format::Csv,
        other => return Err(invalid("format", format!("{other:?} is not a format; use json or csv"))),
    };
    let prefix = if request.prefix.is_empty() { PREFIX_DEFAULT.to_owned() } else { request.prefix };
    if prefix.len() > crate::domain::ids::ID_BYTES_MAX || prefix.chars().any(char::is_whitespace) {
        return Err(invalid("prefix", "must be at most 64 characters without spaces, e.g. 360G-EXAMPLE-"));
    }
    Ok(Options { prefix, format })
}

/// The funding-status statement a request asks for.
pub fn statement_request(
    request: pb::ExportStatementRequest,
) -> Result<crate::export::statement::Request, ConvertError> {
    use crate::export::statement::{Format, Period, Request};
    let format = match request.format.as_str() {
        "" | "table" => Format::Table,
        "csv" => Format::Csv,
        other => return Err(invalid("format", format!("{other:?} is not a format; use table or csv"))),
    };
    Ok(Request {
        partner: request.partner_id.map(|id| partner_id("partner_id", &id)).transpose()?,
        period: request.period.map(|p| Period::parse(&p).map_err(|e| invalid("period", e))).transpose()?,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Option<pb::CommandMeta> {
        Some(pb::CommandMeta { request_id: "req-1".into(), expected_version: Some(3), positions_only: false })
    }

    fn eur(value: &str) -> Option<pb::Money> {
        Some(pb::Money { value: value.into(), currency: "EUR".into() })
    }

    fn pledge(partner: &str, amount: &str, earmark: Option<&str>, on: &str) -> pb::PledgeContributionRequest {
        pb::PledgeContributionRequest {
            meta: meta(),
            partner_id: partner.into(),
            amount: eur(amount),
            earmark_round_id: earmark.map(Into::into),
            pledged_on: on.into(),
        }
    }

    /// Asserts that converting `request` fails on `field`, with a message
    /// that contains `needle`.
    fn check_err(request: impl IntoCommand, field: &str, needle: &str) {
        let err = request.into_command().expect_err("conversion should fail");
        assert_eq!(err.field, field, "{err}");
        assert!(err.message.contains(needle), "{err:?} should mention {needle:?}");
    }

    #[test]
    fn pledge_converts_to_command_with_meta() {
        let parsed = pledge("porticus", "12500.00", Some("2023-1"), "2023-02-01").into_command().unwrap();
        assert_eq!(parsed.request_id, "req-1");
        assert_eq!(parsed.expected_version, Some(3));
        assert!(!parsed.positions_only);
        assert_eq!(
            parsed.command,
            Command::PledgeContribution {
                partner: PartnerId::new("porticus").unwrap(),
                amount: MoneyInput::parse("12500.00", "EUR").unwrap(),
                earmark: Some(RoundId::new("2023-1").unwrap()),
                pledged_on: Date::parse("2023-02-01").unwrap(),
            }
        );
    }

    #[test]
    fn the_answer_asked_for_is_carried_beside_the_command() {
        let mut request = pledge("porticus", "12500.00", None, "2023-02-01");
        request.meta.as_mut().unwrap().positions_only = true;
        let parsed = request.into_command().unwrap();
        assert!(parsed.positions_only);
        let plain = pledge("porticus", "12500.00", None, "2023-02-01").into_command().unwrap();
        assert_eq!(parsed.command, plain.command, "the answer's form is not part of the command");
    }

    #[test]
    fn malformed_fields_are_named() {
        let ok = || pledge("porticus", "100.00", None, "2023-02-01");
        check_err(pledge("", "100.00", None, "2023-02-01"), "partner_id", "must not be empty");
        check_err(pledge("port icus", "100.00", None, "2023-02-01"), "partner_id", "may only contain");
        check_err(pledge("-porticus", "100.00", None, "2023-02-01"), "partner_id", "must start with");
        check_err(pledge(&"p".repeat(65), "100.00", None, "2023-02-01"), "partner_id", "longer than 64");
        check_err(pledge("porticus", "100.00", Some("round 1"), "2023-02-01"), "earmark_round_id", "round id");
        check_err(pledge("porticus", "100.00", None, "2023-02-30"), "pledged_on", "YYYY-MM-DD");
        check_err(pledge("porticus", "100.00", None, "01-02-2023"), "pledged_on", "YYYY-MM-DD");
        check_err(pledge("porticus", "100.00", None, ""), "pledged_on", "YYYY-MM-DD");
        check_err(pledge("porticus", "abc", None, "2023-02-01"), "amount", "not a decimal");
        check_err(pledge("porticus", "1e30", None, "2023-02-01"), "amount", "not a decimal");
        check_err(pledge("porticus", "1,000.00", None, "2023-02-01"), "amount", "not a decimal");
        check_err(pledge("porticus", "+5", None, "2023-02-01"), "amount", "not a decimal");
        check_err(pledge("porticus", "", None, "2023-02-01"), "amount", "not a decimal");
        check_err(pledge("porticus", &"9".repeat(35), None, "2023-02-01"), "amount", "exceeds");
        check_err(pb::PledgeContributionRequest { amount: None, ..ok() }, "amount", "required");
        check_err(pb::PledgeContributionRequest { meta: None, ..ok() }, "meta", "request_id");
        let no_id = Some(pb::CommandMeta { request_id: String::new(), expected_version: None, positions_only: false });
        check_err(pb::PledgeContributionRequest { meta: no_id, ..ok() }, "meta.request_id", "required");
    }

    /// Precision, sign and currency are the domain's to judge (only it knows
    /// the fund's currency); convert lets them through untouched.
    #[test]
    fn amounts_are_parsed_not_judged() {
        for (value, currency) in [("0.001", "EUR"), ("-5.00", "EUR"), ("0", "EUR"), ("10.00", "USD")] {
            let request = pb::MakePaymentRequest {
                meta: meta(),
                application_id: "app-1".into(),
                amount: Some(pb::Money { value: value.into(), currency: currency.into() }),
                value_date: "2023-05-01".into(),
                bank_reference: "ref".into(),
            };
            let parsed = request.into_command().unwrap();
            let Command::MakePayment { amount, .. } = parsed.command else { panic!("wrong command") };
            assert_eq!(amount, MoneyInput::parse(value, currency).unwrap());
        }
    }

    #[test]
    fn other_commands_name_their_fields() {
        check_err(
            pb::OpenFundRequest { meta: meta(), name: "Loket D".into(), currency: "EUR".into(), minor_units: 256 },
            "minor_units",
            "256",
        );
        check_err(
            pb::OpenRoundRequest {
                meta: meta(),
                round_id: "2023-1".into(),
                name: "Ronde 1".into(),
                budget_ceiling: eur("1000000.00"),
                grant_max: eur("15000.00"),
                opens_on: "2023-01-01".into(),
                closes_on: "2023-13-01".into(),
            },
            "closes_on",
            "YYYY-MM-DD",
        );
        check_err(
            pb::OpenRoundRequest {
                meta: meta(),
                round_id: "2023-1".into(),
                name: "Ronde 1".into(),
                budget_ceiling: eur("1000000.00"),
                grant_max: eur("15k"),
                opens_on: "2023-01-01".into(),
                closes_on: "2023-03-01".into(),
            },
            "grant_max",
            "15k",
        );
        check_err(
            pb::SubmitApplicationRequest {
                meta: meta(),
                application_id: "app-1".into(),
                round_id: "2023-1".into(),
                applicant: None,
                title: "Buurtfeest".into(),
                description: String::new(),
                amount_requested: eur("5000.00"),
                submitted_on: "2023-02-01".into(),
            },
            "applicant",
            "required",
        );
        check_err(
            pb::SettleGrantRequest {
                meta: meta(),
                application_id: "app/1".into(),
                final_amount: eur("0"),
                reason: "r".into(),
                decided_on: "2023-02-01".into(),
            },
            "application_id",
            "application id",
        );
    }

    fn query(round: Option<&str>, status: Option<i32>, page_size: u32, token: &str) -> pb::ListApplicationsRequest {
        pb::ListApplicationsRequest { round_id: round.map(Into::into), status, page_size, page_token: token.into() }
    }

    #[test]
    fn application_query_bounds_and_filters() {
        let q = application_query(query(None, None, 0, "")).unwrap();
        assert_eq!((q.page_size, q.round, q.status, q.after), (PAGE_SIZE_DEFAULT, None, None, None));
        let q = application_query(query(Some("2023-1"), Some(pb::ApplicationStatus::Awarded as i32), 500, "app-7"))
            .unwrap();
        assert_eq!(q.page_size, 500);
        assert_eq!(q.round, Some(RoundId::new("2023-1").unwrap()));
        assert_eq!(q.status, Some(ApplicationStatus::Awarded));
        assert_eq!(q.after, Some(ApplicationId::new("app-7").unwrap()));
        assert_eq!(page_token(&ApplicationId::new("app-7").unwrap()), "app-7");

        let field = |r| application_query(r).unwrap_err().field;
        assert_eq!(field(query(None, None, 501, "")), "page_size");
        assert_eq!(field(query(None, Some(0), 10, "")), "status");
        assert_eq!(field(query(None, Some(99), 10, "")), "status");
        assert_eq!(field(query(None, None, 10, "not a token")), "page_token");
        assert_eq!(field(query(Some(""), None, 10, "")), "round_id");
    }

    /// Recording times have microseconds: "at or before" a time between two
    /// of them rounds down, "at or after" and "before" round up, so that no
    /// event is counted on the wrong side of the time asked for.
    #[test]
    fn times_round_to_the_recording_resolution_on_the_right_side() {
        let t = |nanos| Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos });
        let base = 1_700_000_000_000_000;
        let point = |nanos| as_of(Some(pb::AsOf { point: t(nanos).map(pb::as_of::Point::RecordedAt) })).unwrap();
        assert_eq!(point(1_500), Some(AsOf::RecordedBy(base + 1)));
        assert_eq!(point(2_000), Some(AsOf::RecordedBy(base + 2)));
        let filter = |nanos| {
            event_filter(Some(pb::EventFilter {
                recorded_since: t(nanos),
                recorded_until: t(nanos + 5_000),
                ..Default::default()
            }))
            .unwrap()
        };
        let f = filter(1_500);
        assert_eq!((f.recorded_since_micros, f.recorded_until_micros), (Some(base + 2), Some(base + 7)));
        let f = filter(2_000);
        assert_eq!((f.recorded_since_micros, f.recorded_until_micros), (Some(base + 2), Some(base + 7)));
        assert_eq!(as_of(None).unwrap(), None);
        assert_eq!(as_of(Some(pb::AsOf { point: Some(pb::as_of::Point::Seq(7)) })).unwrap(), Some(AsOf::Seq(7)));
        let types = event_filter(Some(pb::EventFilter {
            event_types: vec!["PaymentMade".into(), "GrantAwarded".into(), "PaymentMade".into()],
            ..Default::default()
        }))
        .unwrap()
        .event_types;
        assert_eq!(types.into_iter().collect::<Vec<_>>(), ["GrantAwarded", "PaymentMade"]);
    }

    #[test]
    fn money_is_formatted_with_all_minor_digits() {
        let eur = Currency::eur();
        let m = |minor| money_out(&eur, Amount::from_minor(minor).unwrap());
        assert_eq!(m(1_250_000), pb::Money { value: "12500.00".into(), currency: "EUR".into() });
        assert_eq!(m(5).value, "0.05");
        assert_eq!(m(0).value, "0.00");
        let jpy = Currency::new("JPY", 0).unwrap();
        assert_eq!(money_out(&jpy, Amount::from_minor(1500).unwrap()).value, "1500");
    }

    #[test]
    fn timestamps_split_micros() {
        assert_eq!(
            timestamp(1_700_000_000_123_456),
            prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_456_000 }
        );
        assert_eq!(timestamp(-1), prost_types::Timestamp { seconds: -1, nanos: 999_999_000 });
    }

    #[test]
    fn award_event_carries_its_attribution() {
        let eur = Currency::eur();
        let pot = |p: &str, e: Option<&str>| PotKey {
            partner: PartnerId::new(p).unwrap(),
            earmark: e.map(|r| RoundId::new(r).unwrap()),
        };
        let amount = |minor| Amount::from_minor(minor).unwrap();
        let event = Event::GrantAwarded {
            application: ApplicationId::new("app-1").unwrap(),
            amount: amount(1_000_001),
            attribution: vec![
                Share { pot: pot("janivo", None), amount: amount(500_000) },
                Share { pot: pot("porticus", Some("2023-1")), amount: amount(500_001) },
            ],
            reason: "good plan".into(),
            decided_by: "officer".into(),
            decided_on: Date::parse("2023-03-01").unwrap(),
        };
        let pb::recorded_event::Payload::GrantAwarded(award) = event_payload(&eur, &event) else {
            panic!("wrong payload")
        };
        assert_eq!(award.amount.unwrap().value, "10000.01");
        assert_eq!(award.decided_on, "2023-03-01");
        let parts: Vec<_> = award
            .attribution
            .iter()
            .map(|s| (s.partner_id.as_str(), s.earmark_round_id.as_deref(), s.amount.as_ref().unwrap().value.as_str()))
            .collect();
        assert_eq!(parts, [("janivo", None, "5000.00"), ("porticus", Some("2023-1"), "5000.01")]);
    }
}
