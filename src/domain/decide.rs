//! `decide`: every business rule of the fund. Given the state and a command,
//! it returns the events to record or the reason for refusing. It is pure:
//! the acting principal comes in the [`Context`], there is no clock, no I/O.

use super::access::{may_send, Actor, Role};
use super::attribution::{self, split};
use super::command::{Applicant, Command};
use super::event::{Event, PotKey};
use super::ids::{ApplicationId, Date, PartnerId, RoundId};
use super::money::{Amount, Currency, MoneyInput};
use super::rejection::Rejection;
use super::state::{Application, ApplicationStatus, FundState, Grant, GrantStatus, Round};
use super::stream::StreamId;

/// The longest name or title, in bytes.
pub const NAME_BYTES_MAX: usize = 200;
/// The longest reason or description, in bytes.
pub const TEXT_BYTES_MAX: usize = 4000;
/// The longest bank reference, in bytes (a SEPA remittance field holds 140).
pub const REFERENCE_BYTES_MAX: usize = 140;

/// What a decision needs besides the state and the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The authenticated principal acting: their role decides what they may
    /// do, and their id is recorded as the decider of awards and rejections.
    pub actor: Actor,
}

/// Decides a command against the state: the events to record, or why not.
pub fn decide(state: &FundState, command: &Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    use Command::*;
    if !may_send(&ctx.actor.role, command) {
        return Err(Rejection::PermissionDenied {
            principal: ctx.actor.principal.to_string(),
            role: ctx.actor.role.to_string(),
            action: command.name().to_owned(),
        });
    }
    match command {
        GrantAccess { principal, role, token_sha256 } => {
            if let Some(p) = state.principals.get(principal) {
                if !p.revoked {
                    return Err(Rejection::PrincipalAlreadyActive { principal: principal.to_string() });
                }
            }
            // A token is never given twice, not even after its holder's
            // access was revoked: a revoked token may have leaked.
            if let Some((holder, _)) = state.principals.iter().find(|(_, p)| p.token_sha256 == *token_sha256) {
                return Err(Rejection::TokenInUse { principal: holder.to_string() });
            }
            if let super::access::Role::Partner(partner) = role {
                if !state.partners.contains_key(partner) {
                    return Err(Rejection::UnknownPartner { partner: partner.to_string() });
                }
            }
            return Ok(vec![Event::AccessGranted {
                principal: principal.clone(),
                role: role.clone(),
                token_sha256: *token_sha256,
            }]);
        }
        RevokeAccess { principal, reason } => {
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            let p = state
                .principals
                .get(principal)
                .ok_or_else(|| Rejection::UnknownPrincipal { principal: principal.to_string() })?;
            if p.revoked {
                return Err(Rejection::PrincipalAlreadyRevoked { principal: principal.to_string() });
            }
            // Without an admin nobody could grant access again.
            let active_admins = state.principals.values().filter(|q| !q.revoked && q.role == Role::Admin).count();
            if p.role == Role::Admin && active_admins == 1 {
                return Err(Rejection::LastAdmin { principal: principal.to_string() });
            }
            return Ok(vec![Event::AccessRevoked { principal: principal.clone(), reason }]);
        }
        _ => {}
    }
    if let StreamId::Application(application) = command.stream() {
        if decides_on_application(command) {
            let actor = ctx.actor.principal.as_str();
            if state.applications.get(&application).is_some_and(|app| app.conflicts.contains(actor)) {
                return Err(Rejection::ConflictOfInterest {
                    principal: actor.to_owned(),
                    application: application.to_string(),
                });
            }
        }
    }
    if let OpenFund { name, currency } = command {
        if let Some(fund) = &state.fund {
            return Err(Rejection::FundAlreadyOpened { name: fund.name.clone() });
        }
        let name = text("name", name, NAME_BYTES_MAX, true)?;
        let currency = Currency::new(&currency.code, currency.minor_units)
            .map_err(|problem| Rejection::InvalidText { field: "currency", problem })?;
        return Ok(vec![Event::FundOpened { name, currency }]);
    }
    let fund = state.fund.as_ref().ok_or(Rejection::FundNotOpened)?;
    let d = Decider { state, currency: &fund.currency };
    let event = match command {
        OpenFund { .. } | GrantAccess { .. } | RevokeAccess { .. } => unreachable!("handled above"),
        AdmitPartner { partner, name, organisation_id } => {
            if state.partners.contains_key(partner) {
                return Err(Rejection::PartnerAlreadyAdmitted { partner: partner.to_string() });
            }
            Event::PartnerAdmitted {
                partner: partner.clone(),
                name: text("name", name, NAME_BYTES_MAX, true)?,
                organisation_id: text("organisation_id", organisation_id, NAME_BYTES_MAX, true)?,
            }
        }
        PledgeContribution { partner, amount, earmark, pledged_on } => {
            let amount = d.amount("amount", amount)?;
            let pot = d.pot(partner, earmark)?;
            let max = d.currency.fund_pledged_max();
            if fund.pledged.plus(amount) > max {
                return Err(Rejection::FundPledgeLimit {
                    amount: d.money(amount),
                    pledged: d.money(fund.pledged),
                    max: d.money(max),
                });
            }
            Event::ContributionPledged { pot, amount, pledged_on: *pledged_on }
        }
        ReducePledge { partner, amount, earmark, reason, reduced_on } => {
            let amount = d.amount("amount", amount)?;
            // Unlike a pledge or a receipt, a reduction may name the earmark
            // of a closed round: writing off what will now never arrive is
            // exactly what happens once a round has closed.
            let pot = d.known_pot(partner, earmark)?;
            let outstanding = state.pots.get(&pot).map(|p| p.outstanding()).unwrap_or_default();
            if amount > outstanding {
                return Err(Rejection::PledgeReductionExceedsOutstanding {
                    pot: describe_pot(&pot),
                    amount: d.money(amount),
                    outstanding: d.money(outstanding),
                });
            }
            Event::PledgeReduced {
                pot,
                amount,
                reason: text("reason", reason, TEXT_BYTES_MAX, true)?,
                reduced_on: *reduced_on,
            }
        }
        RecordReceipt { partner, amount, earmark, value_date, bank_reference } => {
            let amount = d.amount("amount", amount)?;
            // Money the bank already holds must be bookable, even when its
            // earmarked round has closed.
            let pot = d.known_pot(partner, earmark)?;
            let outstanding = state.pots.get(&pot).map(|p| p.outstanding()).unwrap_or_default();
            if amount > outstanding {
                return Err(Rejection::ReceiptExceedsOutstandingPledge {
                    pot: describe_pot(&pot),
                    amount: d.money(amount),
                    outstanding: d.money(outstanding),
                });
            }
            Event::ContributionReceived {
                pot,
                amount,
                value_date: *value_date,
                bank_reference: text("bank_reference", bank_reference, REFERENCE_BYTES_MAX, true)?,
            }
        }
        OpenRound { round, name, budget_ceiling, grant_max, opens_on, closes_on } => {
            if state.rounds.contains_key(round) {
                return Err(Rejection::RoundAlreadyExists { round: round.to_string() });
            }
            let name = text("name", name, NAME_BYTES_MAX, true)?;
            let budget_ceiling = d.amount("budget_ceiling", budget_ceiling)?;
            let grant_max = d.amount("grant_max", grant_max)?;
            if closes_on < opens_on {
                return Err(Rejection::RoundDatesInverted {
                    round: round.to_string(),
                    opens_on: opens_on.to_string(),
                    closes_on: closes_on.to_string(),
                });
            }
            if grant_max > budget_ceiling {
                return Err(Rejection::GrantMaxAboveCeiling {
                    grant_max: d.money(grant_max),
                    budget_ceiling: d.money(budget_ceiling),
                });
            }
            Event::RoundOpened {
                round: round.clone(),
                name,
                budget_ceiling,
                grant_max,
                opens_on: *opens_on,
                closes_on: *closes_on,
            }
        }
        CloseRound { round, closed_on } => {
            d.open_round(round)?;
            Event::RoundClosed { round: round.clone(), closed_on: *closed_on }
        }
        SubmitApplication { application, round, applicant, title, description, amount_requested, submitted_on } => {
            if state.applications.contains_key(application) {
                return Err(Rejection::ApplicationAlreadyExists { application: application.to_string() });
            }
            let applicant = Applicant {
                name: text("applicant.name", &applicant.name, NAME_BYTES_MAX, true)?.into(),
                organisation_id: text("applicant.organisation_id", &applicant.organisation_id, NAME_BYTES_MAX, false)?
                    .into(),
                place: text("applicant.place", &applicant.place, NAME_BYTES_MAX, true)?.into(),
                country: country_code(&applicant.country)?.into(),
            };
            let title = text("title", title, NAME_BYTES_MAX, true)?;
            let description = text("description", description, TEXT_BYTES_MAX, false)?;
            let amount_requested = d.amount("amount_requested", amount_requested)?;
            let r = d.open_round(round)?;
            if *submitted_on < r.opens_on || *submitted_on > r.closes_on {
                return Err(Rejection::SubmissionOutsideRoundWindow {
                    round: round.to_string(),
                    submitted_on: submitted_on.to_string(),
                    opens_on: r.opens_on.to_string(),
                    closes_on: r.closes_on.to_string(),
                });
            }
            if amount_requested > r.grant_max {
                return Err(Rejection::RequestAboveGrantMax {
                    round: round.to_string(),
                    requested: d.money(amount_requested),
                    grant_max: d.money(r.grant_max),
                });
            }
            // Keeps the round's running total far inside i64 minor units.
            let requests_max = d.currency.fund_pledged_max();
            if r.amount_requested.plus(amount_requested) > requests_max {
                return Err(Rejection::RoundRequestsLimit {
                    round: round.to_string(),
                    requested: d.money(r.amount_requested),
                    max: d.money(requests_max),
                });
            }
            Event::ApplicationSubmitted {
                application: application.clone(),
                round: round.clone(),
                applicant,
                title,
                description,
                amount_requested,
                submitted_on: *submitted_on,
            }
        }
        WithdrawApplication { application, reason, withdrawn_on } => {
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            d.pending_application(application)?;
            Event::ApplicationWithdrawn { application: application.clone(), reason, withdrawn_on: *withdrawn_on }
        }
        RejectApplication { application, reason, decided_on } => {
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            let app = d.pending_application(application)?;
            d.open_round(&app.round)?;
            Event::ApplicationRejected {
                application: application.clone(),
                reason,
                decided_by: ctx.actor.principal.to_string(),
                decided_on: *decided_on,
            }
        }
        AwardGrant { application, amount, reason, decided_on } => {
            let amount = d.amount("amount", amount)?;
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            let attribution = d.award_attribution(application, amount)?;
            d.four_eyes_award(application, amount)?;
            Event::GrantAwarded {
                application: application.clone(),
                amount,
                attribution,
                reason,
                decided_by: ctx.actor.principal.to_string(),
                decided_on: *decided_on,
            }
        }
        ProposeAward { application, amount, reason, proposed_on } => {
            let amount = d.amount("amount", amount)?;
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            d.award_attribution(application, amount)?;
            let app = d.application(application)?;
            if let Some(p) = &app.award_proposal {
                return Err(Rejection::ProposalPending {
                    what: "award",
                    application: application.to_string(),
                    amount: d.money(p.amount),
                    proposed_by: p.proposed_by.clone(),
                });
            }
            Event::AwardProposed {
                application: application.clone(),
                amount,
                reason,
                proposed_by: ctx.actor.principal.to_string(),
                proposed_on: *proposed_on,
            }
        }
        ApproveAward { application, decided_on } => {
            let app = d.pending_application(application)?;
            let proposal = app
                .award_proposal
                .as_ref()
                .ok_or_else(|| Rejection::NoProposal { what: "award", application: application.to_string() })?;
            if app.conflicts.contains(&proposal.proposed_by) {
                return Err(Rejection::ConflictOfInterest {
                    principal: proposal.proposed_by.clone(),
                    application: application.to_string(),
                });
            }
            if proposal.proposed_by == ctx.actor.principal.as_str() {
                return Err(Rejection::SelfApproval {
                    what: "award",
                    principal: proposal.proposed_by.clone(),
                    application: application.to_string(),
                });
            }
            // The money, budget and limits are checked again now: they may
            // have changed since the proposal.
            let attribution = d.award_attribution(application, proposal.amount)?;
            Event::GrantAwarded {
                application: application.clone(),
                amount: proposal.amount,
                attribution,
                reason: proposal.reason.clone(),
                decided_by: ctx.actor.principal.to_string(),
                decided_on: *decided_on,
            }
        }
        ReduceGrant { application, amount, reason, decided_on } => {
            let amount = d.amount("amount", amount)?;
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            let grant = d.active_grant(application)?;
            if amount > grant.open() {
                return Err(Rejection::ReductionExceedsOpen {
                    application: application.to_string(),
                    amount: d.money(amount),
                    open: d.money(grant.open()),
                });
            }
            if amount == grant.amount {
                return Err(Rejection::ReductionEmptiesGrant {
                    application: application.to_string(),
                    amount: d.money(amount),
                    grant_amount: d.money(grant.amount),
                });
            }
            Event::GrantReduced {
                application: application.clone(),
                amount,
                released: split(amount, &grant.weights(|s| s.open())),
                reason,
                decided_by: ctx.actor.principal.to_string(),
                decided_on: *decided_on,
            }
        }
        WithdrawGrant { application, reason, decided_on } => {
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            let grant = d.active_grant(application)?;
            // Everything not paid goes back; the shares' open parts add up
            // to the grant's open amount exactly.
            let released = grant
                .shares
                .iter()
                .filter(|(_, s)| !s.open().is_zero())
                .map(|(pot, s)| super::event::Share { pot: pot.clone(), amount: s.open() })
                .collect();
            Event::GrantWithdrawn {
                application: application.clone(),
                released,
                reason,
                decided_by: ctx.actor.principal.to_string(),
                decided_on: *decided_on,
            }
        }
        SettleGrant { application, final_amount, reason, decided_on } => {
            let final_amount = d.amount_or_zero("final_amount", final_amount)?;
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            let grant = d.active_grant(application)?;
            if final_amount > grant.amount {
                return Err(Rejection::SettlementAboveGrant {
                    application: application.to_string(),
                    final_amount: d.money(final_amount),
                    grant_amount: d.money(grant.amount),
                });
            }
            if final_amount < grant.net_paid() {
                return Err(Rejection::SettlementBelowNetPaid {
                    application: application.to_string(),
                    final_amount: d.money(final_amount),
                    net_paid: d.money(grant.net_paid()),
                });
            }
            Event::GrantSettled {
                application: application.clone(),
                final_amount,
                released: split(grant.amount.minus(final_amount), &grant.weights(|s| s.open())),
                reason,
                decided_by: ctx.actor.principal.to_string(),
                decided_on: *decided_on,
            }
        }
        MakePayment { application, amount, value_date, bank_reference } => {
            let amount = d.amount("amount", amount)?;
            let bank_reference = text("bank_reference", bank_reference, REFERENCE_BYTES_MAX, true)?;
            let grant = d.payable_grant(application, amount)?;
            d.four_eyes_payment(application, amount)?;
            payment(application, grant, amount, *value_date, bank_reference)
        }
        ProposePayment { application, amount, value_date, bank_reference } => {
            let amount = d.amount("amount", amount)?;
            let bank_reference = text("bank_reference", bank_reference, REFERENCE_BYTES_MAX, true)?;
            let grant = d.payable_grant(application, amount)?;
            if let Some(p) = &grant.payment_proposal {
                return Err(Rejection::ProposalPending {
                    what: "payment",
                    application: application.to_string(),
                    amount: d.money(p.amount),
                    proposed_by: p.proposed_by.clone(),
                });
            }
            Event::PaymentProposed {
                application: application.clone(),
                amount,
                value_date: *value_date,
                bank_reference,
                proposed_by: ctx.actor.principal.to_string(),
            }
        }
        ApprovePayment { application } => {
            let conflicts = &d.application(application)?.conflicts;
            let proposal = d
                .grant(application)?
                .payment_proposal
                .as_ref()
                .ok_or_else(|| Rejection::NoProposal { what: "payment", application: application.to_string() })?;
            if conflicts.contains(&proposal.proposed_by) {
                return Err(Rejection::ConflictOfInterest {
                    principal: proposal.proposed_by.clone(),
                    application: application.to_string(),
                });
            }
            if proposal.proposed_by == ctx.actor.principal.as_str() {
                return Err(Rejection::SelfApproval {
                    what: "payment",
                    principal: proposal.proposed_by.clone(),
                    application: application.to_string(),
                });
            }
            let grant = d.payable_grant(application, proposal.amount)?;
            payment(application, grant, proposal.amount, proposal.value_date, proposal.bank_reference.clone())
        }
        SetApprovalThresholds { round, award_above, payment_above } => {
            let award_above = award_above.as_ref().map(|a| d.amount("award_above", a)).transpose()?;
            let payment_above = payment_above.as_ref().map(|a| d.amount("payment_above", a)).transpose()?;
            // Also for a closed round: its payments go on after it closes.
            if !state.rounds.contains_key(round) {
                return Err(Rejection::UnknownRound { round: round.to_string() });
            }
            Event::ApprovalThresholdsSet { round: round.clone(), award_above, payment_above }
        }
        DeclareConflict { application, reason, declared_on } => {
            let reason = text("reason", reason, TEXT_BYTES_MAX, true)?;
            let app = d.application(application)?;
            let officer = ctx.actor.principal.to_string();
            if app.conflicts.contains(&officer) {
                return Err(Rejection::ConflictAlreadyDeclared {
                    principal: officer,
                    application: application.to_string(),
                });
            }
            Event::ConflictDeclared { application: application.clone(), officer, reason, declared_on: *declared_on }
        }
        RecordRefund { application, amount, value_date, bank_reference } => {
            let amount = d.amount("amount", amount)?;
            let bank_reference = text("bank_reference", bank_reference, REFERENCE_BYTES_MAX, true)?;
            let grant = d.grant(application)?;
            if amount > grant.net_paid() {
                return Err(Rejection::RefundExceedsNetPaid {
                    application: application.to_string(),
                    amount: d.money(amount),
                    net_paid: d.money(grant.net_paid()),
                });
            }
            Event::RefundReceived {
                application: application.clone(),
                amount,
                attribution: split(amount, &grant.weights(|s| s.net_paid())),
                releases: grant.status != GrantStatus::Active,
                value_date: *value_date,
                bank_reference,
            }
        }
    };
    Ok(vec![event])
}

/// The state a decision reads, with the fund's currency at hand.
struct Decider<'a> {
    state: &'a FundState,
    currency: &'a Currency,
}

impl Decider<'_> {
    fn money(&self, amount: Amount) -> String {
        self.currency.display(amount)
    }

    fn amount(&self, field: &'static str, input: &MoneyInput) -> Result<Amount, Rejection> {
        self.currency.to_amount(input, false).map_err(|error| Rejection::InvalidAmount { field, error })
    }

    fn amount_or_zero(&self, field: &'static str, input: &MoneyInput) -> Result<Amount, Rejection> {
        self.currency.to_amount(input, true).map_err(|error| Rejection::InvalidAmount { field, error })
    }

    /// The pot of an admitted partner; an earmark must name a round still open.
    fn pot(&self, partner: &PartnerId, earmark: &Option<RoundId>) -> Result<PotKey, Rejection> {
        let pot = self.known_pot(partner, earmark)?;
        if let Some(round) = earmark {
            self.open_round(round)?;
        }
        Ok(pot)
    }

    /// The pot of an admitted partner; an earmark must name a round that
    /// exists, open or closed.
    fn known_pot(&self, partner: &PartnerId, earmark: &Option<RoundId>) -> Result<PotKey, Rejection> {
        if !self.state.partners.contains_key(partner) {
            return Err(Rejection::UnknownPartner { partner: partner.to_string() });
        }
        if let Some(round) = earmark {
            if !self.state.rounds.contains_key(round) {
                return Err(Rejection::UnknownRound { round: round.to_string() });
            }
        }
        Ok(PotKey { partner: partner.clone(), earmark: earmark.clone() })
    }

    fn open_round(&self, round: &RoundId) -> Result<&Round, Rejection> {
        let r = self.state.rounds.get(round).ok_or_else(|| Rejection::UnknownRound { round: round.to_string() })?;
        if let Some(closed_on) = r.closed_on {
            return Err(Rejection::RoundClosed { round: round.to_string(), closed_on: closed_on.to_string() });
        }
        Ok(r)
    }

    fn application(&self, application: &ApplicationId) -> Result<&Application, Rejection> {
        self.state
            .applications
            .get(application)
            .ok_or_else(|| Rejection::UnknownApplication { application: application.to_string() })
    }

    fn pending_application(&self, application: &ApplicationId) -> Result<&Application, Rejection> {
        let app = self.application(application)?;
        if app.status != ApplicationStatus::Pending {
            return Err(Rejection::ApplicationNotPending {
                application: application.to_string(),
                status: app.status.as_str().into(),
            });
        }
        Ok(app)
    }

    fn grant(&self, application: &ApplicationId) -> Result<&Grant, Rejection> {
        let app = self.application(application)?;
        app.grant.as_ref().ok_or_else(|| Rejection::NotAwarded {
            application: application.to_string(),
            status: app.status.as_str().into(),
        })
    }

    fn active_grant(&self, application: &ApplicationId) -> Result<&Grant, Rejection> {
        let grant = self.grant(application)?;
        if grant.status != GrantStatus::Active {
            return Err(Rejection::GrantNotActive {
                application: application.to_string(),
                status: grant.status.as_str().into(),
            });
        }
        Ok(grant)
    }

    /// Checks every rule of an award of `amount` on a pending application
    /// and returns its attribution to the partners' pots.
    fn award_attribution(
        &self,
        application: &ApplicationId,
        amount: Amount,
    ) -> Result<Vec<super::event::Share>, Rejection> {
        let app = self.pending_application(application)?;
        let round_id = &app.round;
        let round = self.open_round(round_id)?;
        if amount > app.amount_requested {
            return Err(Rejection::AwardAboveRequested {
                application: application.to_string(),
                amount: self.money(amount),
                requested: self.money(app.amount_requested),
            });
        }
        if amount > round.grant_max {
            return Err(Rejection::AwardAboveGrantMax {
                round: round_id.to_string(),
                amount: self.money(amount),
                grant_max: self.money(round.grant_max),
            });
        }
        if amount > round.budget_left() {
            return Err(Rejection::AwardExceedsRoundBudget {
                round: round_id.to_string(),
                amount: self.money(amount),
                budget_left: self.money(round.budget_left()),
                budget_ceiling: self.money(round.budget_ceiling),
            });
        }
        let eligible = self.state.eligible_pots(round_id);
        let available: Amount = eligible.iter().map(|(_, a)| *a).sum();
        if amount > available {
            return Err(Rejection::InsufficientAvailable {
                round: round_id.to_string(),
                amount: self.money(amount),
                available: self.money(available),
            });
        }
        let attribution = split(amount, &eligible);
        debug_assert_eq!(attribution::total(&attribution), amount);
        Ok(attribution)
    }

    /// Refuses a direct award above the round's four-eyes threshold.
    fn four_eyes_award(&self, application: &ApplicationId, amount: Amount) -> Result<(), Rejection> {
        let round_id = &self.application(application)?.round;
        let round = &self.state.rounds[round_id];
        match round.award_four_eyes_above {
            Some(threshold) if amount > threshold => Err(Rejection::FourEyesRequired {
                what: "award",
                application: application.to_string(),
                round: round_id.to_string(),
                amount: self.money(amount),
                threshold: self.money(threshold),
            }),
            _ => Ok(()),
        }
    }

    /// Refuses a direct payment above the round's four-eyes threshold.
    ///
    /// What counts is the total paid (net) on the grant with this payment,
    /// so that splitting a payment into tranches does not avoid it.
    fn four_eyes_payment(&self, application: &ApplicationId, amount: Amount) -> Result<(), Rejection> {
        let app = self.application(application)?;
        let round_id = &app.round;
        let round = &self.state.rounds[round_id];
        let paid_after = app.grant.as_ref().map_or(amount, |g| g.net_paid().plus(amount));
        match round.payment_four_eyes_above {
            Some(threshold) if paid_after > threshold => Err(Rejection::FourEyesRequired {
                what: "total paid with this payment",
                application: application.to_string(),
                round: round_id.to_string(),
                amount: self.money(paid_after),
                threshold: self.money(threshold),
            }),
            _ => Ok(()),
        }
    }

    /// A grant that can take a payment of `amount`.
    fn payable_grant(&self, application: &ApplicationId, amount: Amount) -> Result<&Grant, Rejection> {
        let grant = self.grant(application)?;
        if grant.status == GrantStatus::Withdrawn {
            return Err(Rejection::PaymentOnWithdrawnGrant { application: application.to_string() });
        }
        if amount > grant.open() {
            return Err(Rejection::PaymentExceedsOpen {
                application: application.to_string(),
                amount: self.money(amount),
                open: self.money(grant.open()),
            });
        }
        Ok(grant)
    }
}

/// A payment on a grant, split along what each share still has open: the
/// last payment settles each share's exact remainder.
fn payment(
    application: &ApplicationId,
    grant: &Grant,
    amount: Amount,
    value_date: Date,
    bank_reference: String,
) -> Event {
    Event::PaymentMade {
        application: application.clone(),
        tranche: grant.tranches + 1,
        amount,
        attribution: split(amount, &grant.weights(|s| s.open())),
        value_date,
        bank_reference,
    }
}

/// Commands that decide, approve or pay on an application: an officer with
/// a declared conflict of interest on it may send none of them.
fn decides_on_application(command: &Command) -> bool {
    use Command::*;
    matches!(
        command,
        RejectApplication { .. }
            | WithdrawApplication { .. }
            | AwardGrant { .. }
            | ProposeAward { .. }
            | ApproveAward { .. }
            | ReduceGrant { .. }
            | WithdrawGrant { .. }
            | SettleGrant { .. }
            | MakePayment { .. }
            | ProposePayment { .. }
            | ApprovePayment { .. }
            | RecordRefund { .. }
    )
}

/// A pot as people read it: `porticus (unrestricted)` or `porticus (earmarked for round 2024)`.
pub fn describe_pot(pot: &PotKey) -> String {
    match &pot.earmark {
        None => format!("{} (unrestricted)", pot.partner),
        Some(round) => format!("{} (earmarked for round {round})", pot.partner),
    }
}

/// Checks free text: trimmed of surrounding white space, bounded, without
/// control characters, and present where `required`.
fn text(field: &'static str, value: &str, bytes_max: usize, required: bool) -> Result<String, Rejection> {
    let value = value.trim();
    let problem = if required && value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > bytes_max {
        format!("is {} bytes long; at most {bytes_max} are allowed", value.len())
    } else if value.chars().any(|c| c.is_control() && c != '\n') {
        "must not contain control characters".to_string()
    } else {
        return Ok(value.to_owned());
    };
    Err(Rejection::InvalidText { field, problem })
}

/// An ISO 3166-1 alpha-2 country code such as `NL` or `CW`.
fn country_code(value: &str) -> Result<String, Rejection> {
    let value = value.trim();
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(value.to_owned())
    } else {
        Err(Rejection::InvalidText {
            field: "applicant.country",
            problem: format!("{value:?} is not a two-letter ISO 3166-1 country code such as NL or CW"),
        })
    }
}
