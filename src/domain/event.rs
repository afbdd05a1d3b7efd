//! Events: facts the fund has recorded. They are never changed; a correction
//! is a new, compensating event. Their encoding is frozen by golden-bytes
//! tests (`tests/log.rs`): adding a variant at the end is compatible, any
//! other change needs a new schema version and an upcaster.

use super::access::Role;
use super::command::Applicant;
use super::ids::{ApplicationId, Date, PartnerId, PrincipalId, RoundId};
use super::money::{Amount, Currency};
use super::stream::StreamId;
use serde::{Deserialize, Serialize};

/// The schema version of every event type below.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// Every event type as recorded in the envelope ([`Event::type_name`]), in
/// the order of the variants: what a client may filter the log by.
pub const EVENT_TYPE_NAMES: [&str; 22] = [
    "FundOpened",
    "PartnerAdmitted",
    "ContributionPledged",
    "PledgeReduced",
    "ContributionReceived",
    "RoundOpened",
    "RoundClosed",
    "ApplicationSubmitted",
    "ApplicationWithdrawn",
    "ApplicationRejected",
    "GrantAwarded",
    "GrantReduced",
    "GrantWithdrawn",
    "GrantSettled",
    "PaymentMade",
    "RefundReceived",
    "ApprovalThresholdsSet",
    "AccessGranted",
    "AccessRevoked",
    "AwardProposed",
    "PaymentProposed",
    "ConflictDeclared",
];

/// A partner's money is kept in pots: the unrestricted pot (`earmark:
/// None`) and one pot per round it earmarked money for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PotKey {
    pub partner: PartnerId,
    pub earmark: Option<RoundId>,
}

/// The pots of one partner in a map keyed by pot, in pot order: its
/// unrestricted pot first, then one per earmarked round.
pub fn partner_pots<'a, P>(
    pots: &'a std::collections::BTreeMap<PotKey, P>,
    partner: &'a PartnerId,
) -> impl Iterator<Item = (&'a PotKey, &'a P)> + 'a {
    let first = PotKey { partner: partner.clone(), earmark: None };
    pots.range(first..).take_while(move |(key, _)| &key.partner == partner)
}

/// One partner pot's part of an amount that concerns a grant. The parts of
/// an attribution always add up exactly to the amount they split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub pot: PotKey,
    pub amount: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    FundOpened {
        name: String,
        currency: Currency,
    },
    PartnerAdmitted {
        partner: PartnerId,
        name: String,
        organisation_id: String,
    },
    ContributionPledged {
        pot: PotKey,
        amount: Amount,
        pledged_on: Date,
    },
    PledgeReduced {
        pot: PotKey,
        amount: Amount,
        reason: String,
        reduced_on: Date,
    },
    ContributionReceived {
        pot: PotKey,
        amount: Amount,
        value_date: Date,
        bank_reference: String,
    },
    RoundOpened {
        round: RoundId,
        name: String,
        budget_ceiling: Amount,
        grant_max: Amount,
        opens_on: Date,
        closes_on: Date,
    },
    RoundClosed {
        round: RoundId,
        closed_on: Date,
    },
    ApplicationSubmitted {
        application: ApplicationId,
        round: RoundId,
        applicant: Applicant,
        title: String,
        description: String,
        amount_requested: Amount,
        submitted_on: Date,
    },
    ApplicationWithdrawn {
        application: ApplicationId,
        reason: String,
        withdrawn_on: Date,
    },
    ApplicationRejected {
        application: ApplicationId,
        reason: String,
        decided_by: String,
        decided_on: Date,
    },
    /// `attribution` says whose money funds the grant; it is a fact computed
    /// once, at award time, and never recomputed on replay.
    GrantAwarded {
        application: ApplicationId,
        amount: Amount,
        attribution: Vec<Share>,
        reason: String,
        decided_by: String,
        decided_on: Date,
    },
    /// `released` goes back to the partners' available money.
    GrantReduced {
        application: ApplicationId,
        amount: Amount,
        released: Vec<Share>,
        reason: String,
        decided_by: String,
        decided_on: Date,
    },
    GrantWithdrawn {
        application: ApplicationId,
        released: Vec<Share>,
        reason: String,
        decided_by: String,
        decided_on: Date,
    },
    GrantSettled {
        application: ApplicationId,
        final_amount: Amount,
        released: Vec<Share>,
        reason: String,
        decided_by: String,
        decided_on: Date,
    },
    PaymentMade {
        application: ApplicationId,
        tranche: u32,
        amount: Amount,
        attribution: Vec<Share>,
        value_date: Date,
        bank_reference: String,
    },
    /// On an active grant a refund reopens the commitment; on a settled or
    /// withdrawn grant it also releases the money to the partners (`releases`).
    RefundReceived {
        application: ApplicationId,
        amount: Amount,
        attribution: Vec<Share>,
        releases: bool,
        value_date: Date,
        bank_reference: String,
    },
    // Variants below were added for access control. New variants go at the
    // end: the variant index is part of the stored format.
    ApprovalThresholdsSet {
        round: RoundId,
        award_above: Option<Amount>,
        payment_above: Option<Amount>,
    },
    /// Only the SHA-256 of the token is ever stored.
    AccessGranted {
        principal: PrincipalId,
        role: Role,
        token_sha256: [u8; 32],
    },
    AccessRevoked {
        principal: PrincipalId,
        reason: String,
    },
    AwardProposed {
        application: ApplicationId,
        amount: Amount,
        reason: String,
        proposed_by: String,
        proposed_on: Date,
    },
    PaymentProposed {
        application: ApplicationId,
        amount: Amount,
        value_date: Date,
        bank_reference: String,
        proposed_by: String,
    },
    ConflictDeclared {
        application: ApplicationId,
        officer: String,
        reason: String,
        declared_on: Date,
    },
}

impl Event {
    pub fn stream(&self) -> StreamId {
        use Event::*;
        match self {
            FundOpened { .. } => StreamId::Fund,
            PartnerAdmitted { partner, .. } => StreamId::Partner(partner.clone()),
            ContributionPledged { pot, .. } | PledgeReduced { pot, .. } | ContributionReceived { pot, .. } => {
                StreamId::Partner(pot.partner.clone())
            }
            RoundOpened { round, .. } | RoundClosed { round, .. } | ApprovalThresholdsSet { round, .. } => {
                StreamId::Round(round.clone())
            }
            AccessGranted { principal, .. } | AccessRevoked { principal, .. } => StreamId::Principal(principal.clone()),
            ApplicationSubmitted { application, .. }
            | ApplicationWithdrawn { application, .. }
            | ApplicationRejected { application, .. }
            | GrantAwarded { application, .. }
            | GrantReduced { application, .. }
            | GrantWithdrawn { application, .. }
            | GrantSettled { application, .. }
            | PaymentMade { application, .. }
            | RefundReceived { application, .. }
            | AwardProposed { application, .. }
            | PaymentProposed { application, .. }
            | ConflictDeclared { application, .. } => StreamId::Application(application.clone()),
        }
    }

    /// The event type as recorded in the envelope.
    pub fn type_name(&self) -> &'static str {
        use Event::*;
        match self {
            FundOpened { .. } => "FundOpened",
            PartnerAdmitted { .. } => "PartnerAdmitted",
            ContributionPledged { .. } => "ContributionPledged",
            PledgeReduced { .. } => "PledgeReduced",
            ContributionReceived { .. } => "ContributionReceived",
            RoundOpened { .. } => "RoundOpened",
            RoundClosed { .. } => "RoundClosed",
            ApplicationSubmitted { .. } => "ApplicationSubmitted",
            ApplicationWithdrawn { .. } => "ApplicationWithdrawn",
            ApplicationRejected { .. } => "ApplicationRejected",
            GrantAwarded { .. } => "GrantAwarded",
            GrantReduced { .. } => "GrantReduced",
            GrantWithdrawn { .. } => "GrantWithdrawn",
            GrantSettled { .. } => "GrantSettled",
            PaymentMade { .. } => "PaymentMade",
            RefundReceived { .. } => "RefundReceived",
            ApprovalThresholdsSet { .. } => "ApprovalThresholdsSet",
            AccessGranted { .. } => "AccessGranted",
            AccessRevoked { .. } => "AccessRevoked",
            AwardProposed { .. } => "AwardProposed",
            PaymentProposed { .. } => "PaymentProposed",
            ConflictDeclared { .. } => "ConflictDeclared",
        }
    }
}
