//! Why a command was refused: one variant per reason, each carrying the
//! figures that explain it. Amounts are already formatted in the fund's
//! currency (`EUR 12,000.00`) so that the message can be shown as it is.
//! A rejection records nothing.

use super::money::AmountError;

/// How the API should classify a rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// The command itself is malformed, whatever the state.
    InvalidArgument,
    /// It names something the fund does not have.
    NotFound,
    /// It is well formed but the fund's rules forbid it in the current state.
    FailedPrecondition,
    /// The acting principal's role may not do this.
    PermissionDenied,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    // ----- malformed input -----
    #[error("{field} {error}")]
    InvalidAmount { field: &'static str, error: AmountError },
    #[error("{field}: {problem}")]
    InvalidText { field: &'static str, problem: String },

    // ----- unknown things -----
    #[error("the fund has not been opened yet; open it first")]
    FundNotOpened,
    #[error("partner {partner:?} has not been admitted")]
    UnknownPartner { partner: String },
    #[error("round {round:?} does not exist")]
    UnknownRound { round: String },
    #[error("application {application:?} does not exist")]
    UnknownApplication { application: String },

    // ----- business rules -----
    #[error("the fund is already open as {name:?}; a ledger holds one fund")]
    FundAlreadyOpened { name: String },
    #[error("partner {partner:?} has already been admitted")]
    PartnerAlreadyAdmitted { partner: String },
    #[error("round {round:?} already exists")]
    RoundAlreadyExists { round: String },
    #[error("application {application:?} already exists")]
    ApplicationAlreadyExists { application: String },
    #[error("round {round:?} would close on {closes_on}, before it opens on {opens_on}")]
    RoundDatesInverted { round: String, opens_on: String, closes_on: String },
    #[error("maximum per grant of {grant_max} exceeds the round's budget ceiling of {budget_ceiling}")]
    GrantMaxAboveCeiling { grant_max: String, budget_ceiling: String },
    #[error("round {round:?} was closed on {closed_on}; it takes no more applications, decisions or earmarks")]
    RoundClosed { round: String, closed_on: String },
    #[error("pledge of {amount} would bring the fund's pledged total from {pledged} above the limit of {max}")]
    FundPledgeLimit { amount: String, pledged: String, max: String },
    #[error("reduction of {amount} exceeds the {outstanding} still outstanding on {pot}")]
    PledgeReductionExceedsOutstanding { pot: String, amount: String, outstanding: String },
    #[error("receipt of {amount} exceeds the {outstanding} still outstanding on {pot}; record the pledge first")]
    ReceiptExceedsOutstandingPledge { pot: String, amount: String, outstanding: String },
    #[error("application dated {submitted_on} falls outside round {round:?}, open from {opens_on} to {closes_on}")]
    SubmissionOutsideRoundWindow { round: String, submitted_on: String, opens_on: String, closes_on: String },
    #[error("request of {requested} exceeds round {round:?}'s maximum per grant of {grant_max}")]
    RequestAboveGrantMax { round: String, requested: String, grant_max: String },
    #[error("application {application:?} is {status}, not pending; it can no longer be decided or withdrawn")]
    ApplicationNotPending { application: String, status: String },
    #[error("award of {amount} exceeds the {requested} requested in application {application:?}")]
    AwardAboveRequested { application: String, amount: String, requested: String },
    #[error("award of {amount} exceeds round {round:?}'s maximum per grant of {grant_max}")]
    AwardAboveGrantMax { round: String, amount: String, grant_max: String },
    #[error("award of {amount} exceeds the {budget_left} left of round {round:?}'s budget of {budget_ceiling}")]
    AwardExceedsRoundBudget { round: String, amount: String, budget_left: String, budget_ceiling: String },
    #[error("award of {amount} exceeds the {available} the partners have available for round {round:?}")]
    InsufficientAvailable { round: String, amount: String, available: String },
    #[error("application {application:?} is {status}; there is no grant on it")]
    NotAwarded { application: String, status: String },
    #[error("the grant on application {application:?} is {status}; only an active grant can be reduced, withdrawn or settled")]
    GrantNotActive { application: String, status: String },
    #[error("the grant on application {application:?} was withdrawn; nothing more can be paid on it")]
    PaymentOnWithdrawnGrant { application: String },
    #[error("payment of {amount} exceeds the {open} still open on the grant on application {application:?}")]
    PaymentExceedsOpen { application: String, amount: String, open: String },
    #[error("refund of {amount} exceeds the {net_paid} paid (net) on the grant on application {application:?}")]
    RefundExceedsNetPaid { application: String, amount: String, net_paid: String },
    #[error("reduction of {amount} exceeds the {open} not yet paid on the grant on application {application:?}")]
    ReductionExceedsOpen { application: String, amount: String, open: String },
    #[error("reduction of {amount} would leave nothing of the {grant_amount} grant on application {application:?}; withdraw the grant instead")]
    ReductionEmptiesGrant { application: String, amount: String, grant_amount: String },
    #[error("final amount of {final_amount} exceeds the grant's {grant_amount} on application {application:?}")]
    SettlementAboveGrant { application: String, final_amount: String, grant_amount: String },
    #[error("final amount of {final_amount} is below the {net_paid} already paid on application {application:?}; record the refund first")]
    SettlementBelowNetPaid { application: String, final_amount: String, net_paid: String },

    // ----- access control -----
    #[error("{principal} ({role}) may not {action}")]
    PermissionDenied { principal: String, role: String, action: String },
    #[error("principal {principal:?} does not exist")]
    UnknownPrincipal { principal: String },
    #[error("principal {principal:?} already has access; revoke it first to give a new role or token")]
    PrincipalAlreadyActive { principal: String },
    #[error("the access of principal {principal:?} was already revoked")]
    PrincipalAlreadyRevoked { principal: String },
    #[error("this token was already given to principal {principal:?}; generate a new one")]
    TokenInUse { principal: String },
    #[error("{principal:?} is the last admin; grant another admin first, or nobody could grant access again")]
    LastAdmin { principal: String },
    #[error("round {round:?} already has {requested} requested, at the limit of {max}; open another round")]
    RoundRequestsLimit { round: String, requested: String, max: String },
    #[error("{what} of {amount} on application {application:?} is above round {round:?}'s four-eyes threshold of {threshold}: propose it, and have a second officer approve it")]
    FourEyesRequired { what: &'static str, application: String, round: String, amount: String, threshold: String },
    #[error(
        "application {application:?} already has a {what} proposal of {amount} by {proposed_by}, waiting for approval"
    )]
    ProposalPending { what: &'static str, application: String, amount: String, proposed_by: String },
    #[error("application {application:?} has no {what} proposal to approve")]
    NoProposal { what: &'static str, application: String },
    #[error("{principal} proposed this {what} on application {application:?} and cannot also approve it; another officer must")]
    SelfApproval { what: &'static str, principal: String, application: String },
    #[error("{principal} declared a conflict of interest on application {application:?} and cannot decide, approve or pay on it")]
    ConflictOfInterest { principal: String, application: String },
    #[error("{principal} already declared a conflict of interest on application {application:?}")]
    ConflictAlreadyDeclared { principal: String, application: String },
}

impl Rejection {
    pub fn kind(&self) -> RejectionKind {
        use Rejection::*;
        match self {
            InvalidAmount { .. } | InvalidText { .. } => RejectionKind::InvalidArgument,
            FundNotOpened
            | UnknownPartner { .. }
            | UnknownRound { .. }
            | UnknownApplication { .. }
            | UnknownPrincipal { .. } => RejectionKind::NotFound,
            PermissionDenied { .. } => RejectionKind::PermissionDenied,
            _ => RejectionKind::FailedPrecondition,
        }
    }

    /// A stable, machine-readable reason code.
    pub fn code(&self) -> &'static str {
        use Rejection::*;
        match self {
            InvalidAmount { .. } => "invalid_amount",
            InvalidText { .. } => "invalid_text",
            FundNotOpened => "fund_not_opened",
            UnknownPartner { .. } => "unknown_partner",
            UnknownRound { .. } => "unknown_round",
            UnknownApplication { .. } => "unknown_application",
            FundAlreadyOpened { .. } => "fund_already_opened",
            PartnerAlreadyAdmitted { .. } => "partner_already_admitted",
            RoundAlreadyExists { .. } => "round_already_exists",
            ApplicationAlreadyExists { .. } => "application_already_exists",
            RoundDatesInverted { .. } => "round_dates_inverted",
            GrantMaxAboveCeiling { .. } => "grant_max_above_ceiling",
            RoundClosed { .. } => "round_closed",
            FundPledgeLimit { .. } => "fund_pledge_limit",
            PledgeReductionExceedsOutstanding { .. } => "pledge_reduction_exceeds_outstanding",
            ReceiptExceedsOutstandingPledge { .. } => "receipt_exceeds_outstanding_pledge",
            SubmissionOutsideRoundWindow { .. } => "submission_outside_round_window",
            RequestAboveGrantMax { .. } => "request_above_grant_max",
            ApplicationNotPending { .. } => "application_not_pending",
            AwardAboveRequested { .. } => "award_above_requested",
            AwardAboveGrantMax { .. } => "award_above_grant_max",
            AwardExceedsRoundBudget { .. } => "award_exceeds_round_budget",
            InsufficientAvailable { .. } => "insufficient_available",
            NotAwarded { .. } => "not_awarded",
            GrantNotActive { .. } => "grant_not_active",
            PaymentOnWithdrawnGrant { .. } => "payment_on_withdrawn_grant",
            PaymentExceedsOpen { .. } => "payment_exceeds_open",
            RefundExceedsNetPaid { .. } => "refund_exceeds_net_paid",
            ReductionExceedsOpen { .. } => "reduction_exceeds_open",
            ReductionEmptiesGrant { .. } => "reduction_empties_grant",
            SettlementAboveGrant { .. } => "settlement_above_grant",
            SettlementBelowNetPaid { .. } => "settlement_below_net_paid",
            PermissionDenied { .. } => "permission_denied",
            UnknownPrincipal { .. } => "unknown_principal",
            PrincipalAlreadyActive { .. } => "principal_already_active",
            PrincipalAlreadyRevoked { .. } => "principal_already_revoked",
            TokenInUse { .. } => "token_in_use",
            LastAdmin { .. } => "last_admin",
            RoundRequestsLimit { .. } => "round_requests_limit",
            FourEyesRequired { .. } => "four_eyes_required",
            ProposalPending { .. } => "proposal_pending",
            NoProposal { .. } => "no_proposal",
            SelfApproval { .. } => "self_approval",
            ConflictOfInterest { .. } => "conflict_of_interest",
            ConflictAlreadyDeclared { .. } => "conflict_already_declared",
        }
    }
}
