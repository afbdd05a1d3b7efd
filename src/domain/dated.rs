//! Figures as of a business date: "what was the balance with value date D".
//!
//! That is a different question from "what did the ledger show at time T",
//! which is a replay cut at a sequence number (`projections`). Here every
//! event recorded so far counts when its own business date is on or before
//! D, whatever order it was recorded in: a payment recorded today with value
//! date 1 March counts as of 1 March. The business date of each event:
//!
//! | event | business date | what it moves |
//! |---|---|---|
//! | `ContributionPledged` | `pledged_on` | pot pledged |
//! | `PledgeReduced` | `reduced_on` | pot pledged (down), pledge reduced |
//! | `ContributionReceived` | `value_date` | pot received |
//! | `RoundClosed` | `closed_on` | the round shows as closed |
//! | `ApplicationSubmitted` | `submitted_on` | round received, pending, requested |
//! | `ApplicationWithdrawn` | `withdrawn_on` | round withdrawn, pending |
//! | `ApplicationRejected` | `decided_on` | round rejected, pending |
//! | `GrantAwarded` | `decided_on` | pot awarded by the stored attribution; round awarded, committed |
//! | `GrantReduced`, `GrantWithdrawn`, `GrantSettled` | `decided_on` | pot awarded and round committed (down), by the stored release |
//! | `PaymentMade` | `value_date` | pot paid, by the stored attribution |
//! | `RefundReceived` | `value_date` | pot refunded; when it releases, pot awarded and round committed (down) |
//!
//! `FundOpened`, `PartnerAdmitted` and `RoundOpened` carry no business date
//! of their own: the fund, the partners and the rounds recorded so far are
//! always in the view, with zero figures until something dated on or before
//! D moves them.
//!
//! It is a pure fold, like [`super::FundState::evolve`], but it asserts
//! nothing. The facts were checked when they were decided, in recording
//! order; taken in business-date order they may legitimately look out of
//! order. So the money figures are **signed** ([`SignedAmount`]), and a
//! negative figure says that, by business date, money moved before the fact
//! that allowed it: negative open commitments (or awarded) mean a payment
//! value-dated before its award's decision date, or a release dated before
//! its award; a negative available means awards decided before the money
//! they spend was value-dated in; negative outstanding pledges mean money
//! received before its pledge's date; a negative budget left means awards
//! dated before a release that made room for them. Counts never go
//! negative: an application is *pending* as of D when it was submitted on or
//! before D and not withdrawn or decided on or before D, so a decision dated
//! before its application's submission counts as a decision but never as a
//! negative pending one. A grant is *active* as of D when it was awarded on
//! or before D and not withdrawn or settled on or before D.
//!
//! Given a log that `evolve` accepts, it never panics; given anything else it
//! still does not panic, but its figures mean nothing.

use super::event::{Event, PotKey, Share};
use super::ids::{ApplicationId, Date, PartnerId, RoundId};
use super::money::{Amount, Currency, SignedAmount};
use super::state::Partner;
use std::collections::BTreeMap;

/// The business date of an event; `None` for the events that establish the
/// fund, its partners and its rounds.
pub fn business_date(event: &Event) -> Option<Date> {
    use Event::*;
    match event {
        FundOpened { .. } | PartnerAdmitted { .. } | RoundOpened { .. } => None,
        ContributionPledged { pledged_on, .. } => Some(*pledged_on),
        PledgeReduced { reduced_on, .. } => Some(*reduced_on),
        ContributionReceived { value_date, .. }
        | PaymentMade { value_date, .. }
        | RefundReceived { value_date, .. } => Some(*value_date),
        RoundClosed { closed_on, .. } => Some(*closed_on),
        ApplicationSubmitted { submitted_on, .. } => Some(*submitted_on),
        ApplicationWithdrawn { withdrawn_on, .. } => Some(*withdrawn_on),
        ApplicationRejected { decided_on, .. }
        | GrantAwarded { decided_on, .. }
        | GrantReduced { decided_on, .. }
        | GrantWithdrawn { decided_on, .. }
        | GrantSettled { decided_on, .. } => Some(*decided_on),
        ApprovalThresholdsSet { .. } | AccessGranted { .. } | AccessRevoked { .. } => None,
        AwardProposed { proposed_on, .. } => Some(*proposed_on),
        PaymentProposed { value_date, .. } => Some(*value_date),
        ConflictDeclared { declared_on, .. } => Some(*declared_on),
    }
}

/// The fund as of a business date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatedView {
    /// The business date D: events dated on or before it count.
    pub date: Date,
    pub fund: Option<DatedFund>,
    pub partners: BTreeMap<PartnerId, Partner>,
    /// The pots that an event dated on or before D touched, in pot order.
    pub pots: BTreeMap<PotKey, DatedPot>,
    pub rounds: BTreeMap<RoundId, DatedRound>,
    /// Grants awarded on or before D, and of those not withdrawn or settled
    /// on or before D.
    pub grants: u32,
    pub grants_active: u32,
    /// Every application recorded so far: its round (for the events that
    /// name only the application) and where it stands as of D.
    applications: BTreeMap<ApplicationId, DatedApplication>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatedFund {
    pub name: String,
    pub currency: Currency,
}

/// One pot's figures as of D; see the module documentation for what a
/// negative figure means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatedPot {
    /// Pledged, net of reductions.
    pub pledged: SignedAmount,
    pub pledge_reduced: SignedAmount,
    pub received: SignedAmount,
    /// Attributed to grants, net of releases.
    pub awarded: SignedAmount,
    pub paid: SignedAmount,
    pub refunded: SignedAmount,
}

impl DatedPot {
    /// Pledged but not yet received.
    pub fn outstanding(&self) -> SignedAmount {
        self.pledged.minus(self.received)
    }
    /// Received and not attributed to any grant.
    pub fn available(&self) -> SignedAmount {
        self.received.minus(self.awarded)
    }
    /// Attributed to grants but not (net) paid out.
    pub fn open_commitments(&self) -> SignedAmount {
        self.awarded.plus(self.refunded).minus(self.paid)
    }
    /// Money of this pot on the fund's account.
    pub fn cash_held(&self) -> SignedAmount {
        self.received.plus(self.refunded).minus(self.paid)
    }
    fn add(&mut self, other: &DatedPot) {
        self.pledged = self.pledged.plus(other.pledged);
        self.pledge_reduced = self.pledge_reduced.plus(other.pledge_reduced);
        self.received = self.received.plus(other.received);
        self.awarded = self.awarded.plus(other.awarded);
        self.paid = self.paid.plus(other.paid);
        self.refunded = self.refunded.plus(other.refunded);
    }
}

/// One round's figures as of D.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatedRound {
    pub name: String,
    pub budget_ceiling: Amount,
    pub grant_max: Amount,
    pub opens_on: Date,
    pub closes_on: Date,
    /// The closing date, when it is on or before D.
    pub closed_on: Option<Date>,
    pub applications_received: u32,
    pub applications_awarded: u32,
    pub applications_rejected: u32,
    pub applications_withdrawn: u32,
    /// Submitted on or before D, not withdrawn or decided on or before D.
    pub applications_pending: u32,
    /// Requested by the applications submitted on or before D. Only ever
    /// added to, and at most the live figure, so it is an [`Amount`].
    pub amount_requested: Amount,
    /// Total of the awards decided on or before D, as decided.
    pub amount_awarded: Amount,
    /// Awards less releases, each by its own date.
    pub amount_committed: SignedAmount,
}

impl DatedRound {
    pub fn applications_decided(&self) -> u32 {
        self.applications_awarded + self.applications_rejected
    }
    pub fn budget_left(&self) -> SignedAmount {
        SignedAmount::from(self.budget_ceiling).minus(self.amount_committed)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct DatedApplication {
    round: RoundId,
    /// Submitted on or before D and not (yet) withdrawn or decided on or
    /// before D.
    pending: bool,
    /// Awarded on or before D and not (yet) withdrawn or settled on or
    /// before D.
    grant_active: bool,
}

impl DatedView {
    /// The empty view as of `date`; feed it the log with [`DatedView::apply`].
    pub fn new(date: Date) -> DatedView {
        DatedView {
            date,
            fund: None,
            partners: BTreeMap::new(),
            pots: BTreeMap::new(),
            rounds: BTreeMap::new(),
            grants: 0,
            grants_active: 0,
            applications: BTreeMap::new(),
        }
    }

    /// The view as of `date` of a whole log.
    pub fn fold<'a>(date: Date, events: impl IntoIterator<Item = &'a Event>) -> DatedView {
        let mut view = DatedView::new(date);
        for event in events {
            view.apply(event);
        }
        view
    }

    pub fn currency(&self) -> Option<&Currency> {
        self.fund.as_ref().map(|f| &f.currency)
    }

    /// The partner's pots added together.
    pub fn partner_totals(&self, partner: &PartnerId) -> DatedPot {
        let mut total = DatedPot::default();
        for (_, pot) in super::event::partner_pots(&self.pots, partner) {
            total.add(pot);
        }
        total
    }

    /// All pots added together.
    pub fn fund_totals(&self) -> DatedPot {
        let mut total = DatedPot::default();
        for pot in self.pots.values() {
            total.add(pot);
        }
        total
    }

    /// Folds in the next event of the log, in recording order.
    pub fn apply(&mut self, event: &Event) {
        use Event::*;
        let counts = business_date(event).is_none_or(|date| date <= self.date);
        match event {
            FundOpened { name, currency } => {
                self.fund = Some(DatedFund { name: name.clone(), currency: currency.clone() });
            }
            PartnerAdmitted { partner, name, organisation_id } => {
                self.partners
                    .insert(partner.clone(), Partner { name: name.clone(), organisation_id: organisation_id.clone() });
            }
            RoundOpened { round, name, budget_ceiling, grant_max, opens_on, closes_on } => {
                self.rounds.insert(
                    round.clone(),
                    DatedRound {
                        name: name.clone(),
                        budget_ceiling: *budget_ceiling,
                        grant_max: *grant_max,
                        opens_on: *opens_on,
                        closes_on: *closes_on,
                        closed_on: None,
                        applications_received: 0,
                        applications_awarded: 0,
                        applications_rejected: 0,
                        applications_withdrawn: 0,
                        applications_pending: 0,
                        amount_requested: Amount::ZERO,
                        amount_awarded: Amount::ZERO,
                        amount_committed: SignedAmount::ZERO,
                    },
                );
            }
            ApplicationSubmitted { application, round, amount_requested, .. } => {
                self.applications.insert(
                    application.clone(),
                    DatedApplication { round: round.clone(), pending: counts, grant_active: false },
                );
                if let (true, Some(r)) = (counts, self.rounds.get_mut(round)) {
                    r.applications_received += 1;
                    r.applications_pending += 1;
                    r.amount_requested = r.amount_requested.plus(*amount_requested);
                }
            }
            _ if !counts => {}
            ContributionPledged { pot, amount, .. } => {
                let p = self.pots.entry(pot.clone()).or_default();
                p.pledged = p.pledged.plus(*amount);
            }
            PledgeReduced { pot, amount, .. } => {
                let p = self.pots.entry(pot.clone()).or_default();
                p.pledged = p.pledged.minus(*amount);
                p.pledge_reduced = p.pledge_reduced.plus(*amount);
            }
            ContributionReceived { pot, amount, .. } => {
                let p = self.pots.entry(pot.clone()).or_default();
                p.received = p.received.plus(*amount);
            }
            RoundClosed { round, closed_on } => {
                if let Some(r) = self.rounds.get_mut(round) {
                    r.closed_on = Some(*closed_on);
                }
            }
            ApplicationWithdrawn { application, .. } => {
                if let Some(r) = self.end_pending(application) {
                    r.applications_withdrawn += 1;
                }
            }
            ApplicationRejected { application, .. } => {
                if let Some(r) = self.end_pending(application) {
                    r.applications_rejected += 1;
                }
            }
            GrantAwarded { application, amount, attribution, .. } => {
                if let Some(r) = self.end_pending(application) {
                    r.applications_awarded += 1;
                    r.amount_awarded = r.amount_awarded.plus(*amount);
                    r.amount_committed = r.amount_committed.plus(*amount);
                }
                if let Some(app) = self.applications.get_mut(application) {
                    app.grant_active = true;
                }
                self.grants += 1;
                self.grants_active += 1;
                for share in attribution {
                    let p = self.pots.entry(share.pot.clone()).or_default();
                    p.awarded = p.awarded.plus(share.amount);
                }
            }
            GrantReduced { application, released, .. } => self.release(application, released),
            GrantWithdrawn { application, released, .. } | GrantSettled { application, released, .. } => {
                self.release(application, released);
                if let Some(app) = self.applications.get_mut(application) {
                    if std::mem::take(&mut app.grant_active) {
                        self.grants_active -= 1;
                    }
                }
            }
            PaymentMade { attribution, .. } => {
                for share in attribution {
                    let p = self.pots.entry(share.pot.clone()).or_default();
                    p.paid = p.paid.plus(share.amount);
                }
            }
            RefundReceived { application, attribution, releases, .. } => {
                for share in attribution {
                    let p = self.pots.entry(share.pot.clone()).or_default();
                    p.refunded = p.refunded.plus(share.amount);
                }
                if *releases {
                    self.release(application, attribution);
                }
            }
            // Access control and proposals move no money and decide nothing
            // the figures count.
            ApprovalThresholdsSet { .. }
            | AccessGranted { .. }
            | AccessRevoked { .. }
            | AwardProposed { .. }
            | PaymentProposed { .. }
            | ConflictDeclared { .. } => {}
        }
    }

    /// The application is withdrawn or decided as of D: it stops being
    /// pending if it was. Returns its round, to count the outcome.
    fn end_pending(&mut self, application: &ApplicationId) -> Option<&mut DatedRound> {
        let app = self.applications.get_mut(application)?;
        let r = self.rounds.get_mut(&app.round)?;
        if std::mem::take(&mut app.pending) {
            r.applications_pending -= 1;
        }
        Some(r)
    }

    /// Gives `released` back to the pots and takes it off the round's
    /// commitments.
    fn release(&mut self, application: &ApplicationId, released: &[Share]) {
        let mut total = SignedAmount::ZERO;
        for share in released {
            let p = self.pots.entry(share.pot.clone()).or_default();
            p.awarded = p.awarded.minus(share.amount);
            total = total.plus(share.amount);
        }
        let round = self.applications.get(application).map(|a| a.round.clone());
        if let Some(r) = round.and_then(|round| self.rounds.get_mut(&round)) {
            r.amount_committed = r.amount_committed.minus(total);
        }
    }
}
