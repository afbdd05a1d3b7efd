//! Commands: what a client asks the fund to do. A command is a request, not a
//! fact; `decide` turns it into events or a rejection.

use super::access::Role;
use super::ids::{ApplicationId, Date, PartnerId, PrincipalId, RoundId};
use super::money::{Currency, MoneyInput};
use super::stream::StreamId;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens the fund; a ledger holds exactly one fund, opened once.
    OpenFund {
        name: String,
        currency: Currency,
    },
    AdmitPartner {
        partner: PartnerId,
        name: String,
        organisation_id: String,
    },
    /// A partner promises money, unrestricted or earmarked for one round.
    PledgeContribution {
        partner: PartnerId,
        amount: MoneyInput,
        earmark: Option<RoundId>,
        pledged_on: Date,
    },
    /// Lowers the part of a pledge that has not been received yet.
    ReducePledge {
        partner: PartnerId,
        amount: MoneyInput,
        earmark: Option<RoundId>,
        reason: String,
        reduced_on: Date,
    },
    /// Money from a partner arrived on the fund's account.
    RecordReceipt {
        partner: PartnerId,
        amount: MoneyInput,
        earmark: Option<RoundId>,
        value_date: Date,
        bank_reference: String,
    },
    OpenRound {
        round: RoundId,
        name: String,
        budget_ceiling: MoneyInput,
        grant_max: MoneyInput,
        opens_on: Date,
        closes_on: Date,
    },
    CloseRound {
        round: RoundId,
        closed_on: Date,
    },
    SubmitApplication {
        application: ApplicationId,
        round: RoundId,
        applicant: Applicant,
        title: String,
        description: String,
        amount_requested: MoneyInput,
        submitted_on: Date,
    },
    WithdrawApplication {
        application: ApplicationId,
        reason: String,
        withdrawn_on: Date,
    },
    RejectApplication {
        application: ApplicationId,
        reason: String,
        decided_on: Date,
    },
    AwardGrant {
        application: ApplicationId,
        amount: MoneyInput,
        reason: String,
        decided_on: Date,
    },
    ReduceGrant {
        application: ApplicationId,
        amount: MoneyInput,
        reason: String,
        decided_on: Date,
    },
    WithdrawGrant {
        application: ApplicationId,
        reason: String,
        decided_on: Date,
    },
    /// The final amount of a grant (the Dutch *vaststelling*).
    SettleGrant {
        application: ApplicationId,
        final_amount: MoneyInput,
        reason: String,
        decided_on: Date,
    },
    MakePayment {
        application: ApplicationId,
        amount: MoneyInput,
        value_date: Date,
        bank_reference: String,
    },
    RecordRefund {
        application: ApplicationId,
        amount: MoneyInput,
        value_date: Date,
        bank_reference: String,
    },
    /// Awards and payments above these amounts need a second officer
    /// (four eyes); `None` means no threshold.
    SetApprovalThresholds {
        round: RoundId,
        award_above: Option<MoneyInput>,
        payment_above: Option<MoneyInput>,
    },
    /// Gives a principal a role; only the SHA-256 of its token is recorded.
    GrantAccess {
        principal: PrincipalId,
        role: Role,
        token_sha256: [u8; 32],
    },
    RevokeAccess {
        principal: PrincipalId,
        reason: String,
    },
    /// The first half of a four-eyes award: a second officer approves it.
    ProposeAward {
        application: ApplicationId,
        amount: MoneyInput,
        reason: String,
        proposed_on: Date,
    },
    ApproveAward {
        application: ApplicationId,
        decided_on: Date,
    },
    /// The first half of a four-eyes payment.
    ProposePayment {
        application: ApplicationId,
        amount: MoneyInput,
        value_date: Date,
        bank_reference: String,
    },
    ApprovePayment {
        application: ApplicationId,
    },
    /// The acting officer declares a conflict of interest on an application:
    /// from then on they cannot decide, approve or pay on it.
    DeclareConflict {
        application: ApplicationId,
        reason: String,
        declared_on: Date,
    },
}

/// Who applies, and where the initiative takes place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    pub name: CompactString,
    /// e.g. `NL-KVK-12345678`; empty for an informal group of residents.
    pub organisation_id: CompactString,
    /// Town or city, e.g. `Utrecht` or `Willemstad`.
    pub place: CompactString,
    /// ISO 3166-1 alpha-2 code, e.g. `NL` or `CW` (Curaçao).
    pub country: CompactString,
}

impl Command {
    /// The stream this command acts on: the one whose version an expected
    /// version refers to, and the one its events are recorded in.
    pub fn stream(&self) -> StreamId {
        use Command::*;
        match self {
            OpenFund { .. } => StreamId::Fund,
            AdmitPartner { partner, .. }
            | PledgeContribution { partner, .. }
            | ReducePledge { partner, .. }
            | RecordReceipt { partner, .. } => StreamId::Partner(partner.clone()),
            OpenRound { round, .. } | CloseRound { round, .. } | SetApprovalThresholds { round, .. } => {
                StreamId::Round(round.clone())
            }
            GrantAccess { principal, .. } | RevokeAccess { principal, .. } => StreamId::Principal(principal.clone()),
            SubmitApplication { application, .. }
            | WithdrawApplication { application, .. }
            | RejectApplication { application, .. }
            | AwardGrant { application, .. }
            | ReduceGrant { application, .. }
            | WithdrawGrant { application, .. }
            | SettleGrant { application, .. }
            | MakePayment { application, .. }
            | RecordRefund { application, .. }
            | ProposeAward { application, .. }
            | ApproveAward { application, .. }
            | ProposePayment { application, .. }
            | ApprovePayment { application }
            | DeclareConflict { application, .. } => StreamId::Application(application.clone()),
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        use Command::*;
        match self {
            OpenFund { .. } => "OpenFund",
            AdmitPartner { .. } => "AdmitPartner",
            PledgeContribution { .. } => "PledgeContribution",
            ReducePledge { .. } => "ReducePledge",
            RecordReceipt { .. } => "RecordReceipt",
            OpenRound { .. } => "OpenRound",
            CloseRound { .. } => "CloseRound",
            SubmitApplication { .. } => "SubmitApplication",
            WithdrawApplication { .. } => "WithdrawApplication",
            RejectApplication { .. } => "RejectApplication",
            AwardGrant { .. } => "AwardGrant",
            ReduceGrant { .. } => "ReduceGrant",
            WithdrawGrant { .. } => "WithdrawGrant",
            SettleGrant { .. } => "SettleGrant",
            MakePayment { .. } => "MakePayment",
            RecordRefund { .. } => "RecordRefund",
            SetApprovalThresholds { .. } => "SetApprovalThresholds",
            GrantAccess { .. } => "GrantAccess",
            RevokeAccess { .. } => "RevokeAccess",
            ProposeAward { .. } => "ProposeAward",
            ApproveAward { .. } => "ApproveAward",
            ProposePayment { .. } => "ProposePayment",
            ApprovePayment { .. } => "ApprovePayment",
            DeclareConflict { .. } => "DeclareConflict",
        }
    }
}
