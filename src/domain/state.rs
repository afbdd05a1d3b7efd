//! The fund's state: a pure fold over its events (`evolve`). It holds what
//! `decide` needs and what the read side shows. `evolve` applies facts and
//! checks nothing but its own consistency: a violated invariant here means a
//! programming error or a corrupt log, and panics.

use super::access::Role;
use super::applications::Applications;
use super::command::Applicant;
use super::event::{Event, PotKey, Share};
use super::ids::{ApplicationId, Date, PartnerId, PrincipalId, RoundId};
use super::money::{Amount, Currency};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundState {
    pub fund: Option<Fund>,
    pub partners: BTreeMap<PartnerId, Partner>,
    /// Every pot of every partner, in pot order (partner, then earmark).
    pub pots: BTreeMap<PotKey, Pot>,
    pub rounds: BTreeMap<RoundId, Round>,
    pub applications: Applications,
    /// Everyone who was ever given access, revoked or not.
    pub principals: BTreeMap<PrincipalId, Principal>,
    /// The token hashes of the principals whose access is not revoked.
    pub active_tokens: BTreeMap<[u8; 32], PrincipalId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub role: Role,
    pub token_sha256: [u8; 32],
    pub revoked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fund {
    pub name: String,
    pub currency: Currency,
    /// Net pledged total over all partners, bounded by the currency's
    /// `fund_pledged_max`.
    pub pledged: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    pub name: String,
    pub organisation_id: String,
}

/// One partner pot. All figures are running totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pot {
    /// Pledged, net of reductions.
    pub pledged: Amount,
    pub pledge_reduced: Amount,
    pub received: Amount,
    /// Attributed to grants, net of reductions, withdrawals, settlements and
    /// refunds on closed grants.
    pub awarded: Amount,
    pub paid: Amount,
    pub refunded: Amount,
}

impl Pot {
    /// Pledged but not yet received.
    pub fn outstanding(&self) -> Amount {
        self.pledged.minus(self.received)
    }
    /// Received and not attributed to any grant: what can still be granted.
    pub fn available(&self) -> Amount {
        self.received.minus(self.awarded)
    }
    /// Attributed to grants but not (net) paid out yet.
    pub fn open_commitments(&self) -> Amount {
        self.awarded.plus(self.refunded).minus(self.paid)
    }
    /// Money of this pot on the fund's account.
    pub fn cash_held(&self) -> Amount {
        self.received.plus(self.refunded).minus(self.paid)
    }
    /// Panics unless every derived figure is non-negative.
    fn check(&self) {
        let _ = (self.outstanding(), self.available(), self.open_commitments(), self.cash_held());
    }
    fn add(&mut self, other: &Pot) {
        self.pledged = self.pledged.plus(other.pledged);
        self.pledge_reduced = self.pledge_reduced.plus(other.pledge_reduced);
        self.received = self.received.plus(other.received);
        self.awarded = self.awarded.plus(other.awarded);
        self.paid = self.paid.plus(other.paid);
        self.refunded = self.refunded.plus(other.refunded);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub name: String,
    pub budget_ceiling: Amount,
    pub grant_max: Amount,
    pub opens_on: Date,
    pub closes_on: Date,
    pub closed_on: Option<Date>,
    pub applications_received: u32,
    pub applications_awarded: u32,
    pub applications_rejected: u32,
    pub applications_withdrawn: u32,
    pub amount_requested: Amount,
    /// Total of the awards as decided; reductions and releases do not lower it.
    pub amount_awarded: Amount,
    /// Current amount of the round's grants, after reductions, withdrawals,
    /// settlements below the award and refunds on closed grants: what the
    /// budget ceiling limits.
    pub amount_committed: Amount,
    /// Awards above this need a proposal and a second officer's approval.
    pub award_four_eyes_above: Option<Amount>,
    /// Payments above this need a proposal and a second officer's approval.
    pub payment_four_eyes_above: Option<Amount>,
}

impl Round {
    pub fn applications_pending(&self) -> u32 {
        self.applications_received
            - self.applications_awarded
            - self.applications_rejected
            - self.applications_withdrawn
    }
    pub fn applications_decided(&self) -> u32 {
        self.applications_awarded + self.applications_rejected
    }
    pub fn budget_left(&self) -> Amount {
        self.budget_ceiling.minus(self.amount_committed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ApplicationStatus {
    Pending,
    Withdrawn,
    Rejected,
    Awarded,
}

impl ApplicationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationStatus::Pending => "pending",
            ApplicationStatus::Withdrawn => "withdrawn",
            ApplicationStatus::Rejected => "rejected",
            ApplicationStatus::Awarded => "awarded",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub reason: CompactString,
    pub decided_by: CompactString,
    pub decided_on: Date,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub round: RoundId,
    pub applicant: Applicant,
    pub title: CompactString,
    pub description: CompactString,
    pub amount_requested: Amount,
    pub submitted_on: Date,
    pub status: ApplicationStatus,
    /// The withdrawal, rejection or award, once there is one.
    pub decision: Option<Decision>,
    pub grant: Option<Grant>,
    /// An award waiting for a second officer's approval. Boxed, as rarely
    /// present: inline it would add its size to every application.
    pub award_proposal: Option<Box<AwardProposal>>,
    /// Officers who declared a conflict of interest on this application.
    pub conflicts: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwardProposal {
    pub amount: Amount,
    pub reason: String,
    pub proposed_by: String,
    pub proposed_on: Date,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentProposal {
    pub amount: Amount,
    pub value_date: Date,
    pub bank_reference: String,
    pub proposed_by: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GrantStatus {
    Active,
    Settled,
    Withdrawn,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Settled => "settled",
            GrantStatus::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The amount as first awarded.
    pub awarded: Amount,
    /// The current amount: awarded less reductions and releases; after
    /// settlement the final amount.
    pub amount: Amount,
    pub status: GrantStatus,
    pub shares: Shares,
    pub paid: Amount,
    pub refunded: Amount,
    pub tranches: u32,
    pub awarded_on: Date,
    pub settled_on: Option<Date>,
    /// A payment waiting for a second officer's approval. Boxed, as
    /// `award_proposal`.
    pub payment_proposal: Option<Box<PaymentProposal>>,
}

impl Grant {
    /// Panics unless `0 <= net paid <= amount`.
    fn check(&self) {
        let _ = self.open();
    }
    pub fn net_paid(&self) -> Amount {
        self.paid.minus(self.refunded)
    }
    /// What may still be paid.
    pub fn open(&self) -> Amount {
        self.amount.minus(self.net_paid())
    }
    /// Each share's weight as `(pot, figure)`, in pot order, for splitting
    /// a payment, refund or release along the grant's attribution.
    pub fn weights(&self, figure: impl Fn(&GrantShare) -> Amount) -> Vec<(PotKey, Amount)> {
        self.shares.iter().map(|(pot, share)| (pot.clone(), figure(share))).collect()
    }
}

/// One pot's part of a grant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantShare {
    pub amount: Amount,
    pub paid: Amount,
    pub refunded: Amount,
}

/// A grant's shares by pot, in pot order. Behaves, compares and encodes as
/// the `BTreeMap<PotKey, GrantShare>` it replaced (a map in key order), but
/// is one exactly sized, sorted allocation: a B-tree leaf has room for 11
/// entries, and with millions of grants of a handful of shares each that
/// room was a fifth of a large fund's memory. The pot keys are shared
/// between grants (see [`interned`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Shares(Box<[(Arc<PotKey>, GrantShare)]>);

impl Shares {
    /// As a map is built from `entries` (room for `capacity` reserved):
    /// in pot order, a repeated pot keeping its last share, each pot's key
    /// shared ([`interned`]). In one allocation of its own size.
    fn interning(capacity: usize, entries: impl Iterator<Item = (PotKey, GrantShare)>) -> Shares {
        let mut shares = Vec::with_capacity(capacity);
        shares.extend(entries.enumerate().map(|(place, (pot, share))| (interned(place, pot), share)));
        Shares::of_shared(shares)
    }

    /// As a map is built from `shares`, whose pots' keys are already shared
    /// (a checkpoint's chunk shares each of its pots' keys once, see
    /// [`shared_pot_key`]): in pot order, a repeated pot keeping its last
    /// share.
    pub(crate) fn of_shared(mut shares: Vec<(Arc<PotKey>, GrantShare)>) -> Shares {
        // Shares come in pot order (that is how they are encoded): then
        // there is nothing to sort and no repeated pot to drop.
        if !shares.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            // Stable: equal pots keep their order, and the last of them is kept.
            shares.sort_by(|a, b| a.0.cmp(&b.0));
            shares.reverse();
            shares.dedup_by(|later, earlier| later.0 == earlier.0);
            shares.reverse();
        }
        // `into_boxed_slice` gives back any room left over; a vector
        // exactly as long as its shares is boxed without a copy.
        Shares(shares.into_boxed_slice())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, pot: &PotKey) -> Option<&GrantShare> {
        self.0.binary_search_by(|(key, _)| (**key).cmp(pot)).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, pot: &PotKey) -> Option<&mut GrantShare> {
        self.0.binary_search_by(|(key, _)| (**key).cmp(pot)).ok().map(|i| &mut self.0[i].1)
    }

    /// In pot order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&PotKey, &GrantShare)> + ExactSizeIterator + Clone + '_ {
        self.0.iter().map(|(pot, share)| (&**pot, share))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &PotKey> + ExactSizeIterator + Clone + '_ {
        self.0.iter().map(|(pot, _)| &**pot)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &GrantShare> + ExactSizeIterator + Clone + '_ {
        self.0.iter().map(|(_, share)| share)
    }
}

/// One shared copy of each pot's key for the shares of every grant: the
/// workload's grants have six shares each, and six keys of two ids each
/// were a third of a large fund's state. A cache per thread, so that it
/// needs no lock; it holds at most [`INTERNED_POTS_MAX`] keys (a fund has
/// partners × (rounds + 1) pots at most), and beyond that a key is shared
/// only while it is the last one at its place. One copy per pot *per
/// thread*: a state decoded on two threads holds two. Only sharing depends
/// on it, never a value.
///
/// `place` is the share's place in its grant: the key last shared at each
/// place is tried first (one comparison), then the set (a hash of two ids).
fn interned(place: usize, pot: PotKey) -> Arc<PotKey> {
    thread_local! {
        static POTS: std::cell::RefCell<std::collections::HashSet<Arc<PotKey>>> = Default::default();
        /// The key last shared at each place in a grant's shares: grants
        /// decoded one after another are mostly attributed to the same pots.
        static LAST: std::cell::RefCell<Vec<Arc<PotKey>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // `try_with`: a thread whose caches are already gone (it is exiting)
    // shares nothing; the pot's key is still right.
    let last = LAST.try_with(|last| last.borrow().get(place).filter(|last| ***last == pot).cloned()).ok().flatten();
    if let Some(last) = last {
        return last;
    }
    let shared = POTS.try_with(|pots| pots.borrow().get(&pot).cloned()).ok().flatten();
    let shared = shared.unwrap_or_else(|| {
        let shared = Arc::new(pot);
        let _ = POTS.try_with(|pots| {
            let mut pots = pots.borrow_mut();
            if pots.len() < INTERNED_POTS_MAX {
                pots.insert(shared.clone());
            }
        });
        shared
    });
    let _ = LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        if place < last.len() {
            last[place] = shared.clone();
        } else if place == last.len() && place < INTERNED_PLACES_MAX {
            last.push(shared.clone());
        }
    });
    shared
}

/// One shared copy of `pot`'s key, as [`interned`] shares them, for a
/// decoder that meets each pot once and then refers to it by number. At a
/// place beyond any [`interned`] remembers: the set alone.
pub(crate) fn shared_pot_key(pot: PotKey) -> Arc<PotKey> {
    interned(INTERNED_PLACES_MAX, pot)
}

/// The most places in a grant's shares that [`interned`] remembers the
/// last key of.
const INTERNED_PLACES_MAX: usize = 64;

/// The most pot keys [`interned`] keeps per thread.
const INTERNED_POTS_MAX: usize = 4096;

impl std::ops::Index<&PotKey> for Shares {
    type Output = GrantShare;

    fn index(&self, pot: &PotKey) -> &GrantShare {
        self.get(pot).expect("no share of this pot")
    }
}

impl<'a> IntoIterator for &'a Shares {
    type Item = (&'a PotKey, &'a GrantShare);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Arc<PotKey>, GrantShare)>,
        fn(&'a (Arc<PotKey>, GrantShare)) -> Self::Item,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(pot, share)| (&**pot, share))
    }
}

/// As a `BTreeMap` collects: in key order, a repeated pot keeps its last share.
impl FromIterator<(PotKey, GrantShare)> for Shares {
    fn from_iter<I: IntoIterator<Item = (PotKey, GrantShare)>>(iter: I) -> Shares {
        let iter = iter.into_iter();
        Shares::interning(iter.size_hint().0, iter)
    }
}

impl std::fmt::Debug for Shares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Shares {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Shares {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Shares, D::Error> {
        struct SharesVisitor;

        impl<'de> serde::de::Visitor<'de> for SharesVisitor {
            type Value = Shares;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of grant shares by pot")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Shares, A::Error> {
                // Straight into the one allocation (no B-tree, no vector
                // of unshared keys on the way): a start decodes millions.
                let capacity = map.size_hint().unwrap_or(0).min(64);
                let mut failure = None;
                let entries = std::iter::from_fn(|| {
                    map.next_entry::<PotKey, GrantShare>().unwrap_or_else(|error| {
                        failure = Some(error);
                        None
                    })
                });
                let shares = Shares::interning(capacity, entries);
                failure.map_or(Ok(shares), Err)
            }
        }

        deserializer.deserialize_map(SharesVisitor)
    }
}

impl GrantShare {
    /// Panics unless `0 <= net paid <= amount`.
    fn check(&self) {
        let _ = self.open();
    }
    pub fn net_paid(&self) -> Amount {
        self.paid.minus(self.refunded)
    }
    pub fn open(&self) -> Amount {
        self.amount.minus(self.net_paid())
    }
}

impl FundState {
    pub fn currency(&self) -> Option<&Currency> {
        self.fund.as_ref().map(|f| &f.currency)
    }

    /// The partner's pots added together.
    pub fn partner_totals(&self, partner: &PartnerId) -> Pot {
        let mut total = Pot::default();
        for (_, pot) in super::event::partner_pots(&self.pots, partner) {
            total.add(pot);
        }
        total
    }

    /// All pots added together: the fund's totals.
    pub fn fund_totals(&self) -> Pot {
        let mut total = Pot::default();
        for pot in self.pots.values() {
            total.add(pot);
        }
        total
    }

    /// Pots whose money may fund a grant in `round`: unrestricted pots and
    /// pots earmarked for `round`, with their available money, in pot order.
    pub fn eligible_pots(&self, round: &RoundId) -> Vec<(PotKey, Amount)> {
        self.pots
            .iter()
            .filter(|(key, _)| key.earmark.as_ref().is_none_or(|r| r == round))
            .map(|(key, pot)| (key.clone(), pot.available()))
            .filter(|(_, available)| !available.is_zero())
            .collect()
    }

    /// Applies one recorded event. Panics if the event contradicts the
    /// state: `decide` never produces such an event, so the log is corrupt.
    pub fn evolve(&mut self, event: &Event) {
        use Event::*;
        match event {
            FundOpened { name, currency } => {
                assert!(self.fund.is_none(), "fund opened twice");
                self.fund = Some(Fund { name: name.clone(), currency: currency.clone(), pledged: Amount::ZERO });
            }
            PartnerAdmitted { partner, name, organisation_id } => {
                let previous = self
                    .partners
                    .insert(partner.clone(), Partner { name: name.clone(), organisation_id: organisation_id.clone() });
                assert!(previous.is_none(), "partner {partner} admitted twice");
            }
            ContributionPledged { pot, amount, .. } => {
                let fund = self.fund.as_mut().expect("pledge before the fund opened");
                fund.pledged = fund.pledged.plus(*amount);
                let p = self.pots.entry(pot.clone()).or_default();
                p.pledged = p.pledged.plus(*amount);
            }
            PledgeReduced { pot, amount, .. } => {
                let fund = self.fund.as_mut().expect("pledge reduced before the fund opened");
                fund.pledged = fund.pledged.minus(*amount);
                let p = self.pot_mut(pot);
                p.pledged = p.pledged.minus(*amount);
                p.pledge_reduced = p.pledge_reduced.plus(*amount);
                p.check();
            }
            ContributionReceived { pot, amount, .. } => {
                let p = self.pot_mut(pot);
                p.received = p.received.plus(*amount);
                p.check();
            }
            RoundOpened { round, name, budget_ceiling, grant_max, opens_on, closes_on } => {
                let previous = self.rounds.insert(
                    round.clone(),
                    Round {
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
                        amount_requested: Amount::ZERO,
                        amount_awarded: Amount::ZERO,
                        amount_committed: Amount::ZERO,
                        award_four_eyes_above: None,
                        payment_four_eyes_above: None,
                    },
                );
                assert!(previous.is_none(), "round {round} opened twice");
            }
            RoundClosed { round, closed_on } => {
                let r = self.rounds.get_mut(round).expect("closing an unknown round");
                assert!(r.closed_on.is_none(), "round {round} closed twice");
                r.closed_on = Some(*closed_on);
            }
            ApplicationSubmitted {
                application,
                round,
                applicant,
                title,
                description,
                amount_requested,
                submitted_on,
            } => {
                let r = self.rounds.get_mut(round).expect("application to an unknown round");
                r.applications_received += 1;
                r.amount_requested = r.amount_requested.plus(*amount_requested);
                let previous = self.applications.insert(
                    application.clone(),
                    Application {
                        round: round.clone(),
                        applicant: applicant.clone(),
                        title: title.as_str().into(),
                        description: description.as_str().into(),
                        amount_requested: *amount_requested,
                        submitted_on: *submitted_on,
                        status: ApplicationStatus::Pending,
                        decision: None,
                        grant: None,
                        award_proposal: None,
                        conflicts: BTreeSet::new(),
                    },
                );
                assert!(previous.is_none(), "application {application} submitted twice");
            }
            ApplicationWithdrawn { application, reason, withdrawn_on } => {
                let round = self.decide_application(
                    application,
                    ApplicationStatus::Withdrawn,
                    reason,
                    "applicant",
                    *withdrawn_on,
                );
                self.rounds.get_mut(&round).expect("known round").applications_withdrawn += 1;
            }
            ApplicationRejected { application, reason, decided_by, decided_on } => {
                let round =
                    self.decide_application(application, ApplicationStatus::Rejected, reason, decided_by, *decided_on);
                self.rounds.get_mut(&round).expect("known round").applications_rejected += 1;
            }
            GrantAwarded { application, amount, attribution, reason, decided_by, decided_on } => {
                assert_eq!(super::attribution::total(attribution), *amount, "attribution must add up to the award");
                let round =
                    self.decide_application(application, ApplicationStatus::Awarded, reason, decided_by, *decided_on);
                let r = self.rounds.get_mut(&round).expect("known round");
                r.applications_awarded += 1;
                r.amount_awarded = r.amount_awarded.plus(*amount);
                r.amount_committed = r.amount_committed.plus(*amount);
                assert!(r.amount_committed <= r.budget_ceiling, "round {round} over its ceiling");
                for share in attribution {
                    let pot = self.pot_mut(&share.pot);
                    pot.awarded = pot.awarded.plus(share.amount);
                    pot.check();
                }
                let shares = attribution
                    .iter()
                    .map(|share| (share.pot.clone(), GrantShare { amount: share.amount, ..GrantShare::default() }))
                    .collect();
                let app = self.applications.get_mut(application).expect("known application");
                app.grant = Some(Grant {
                    awarded: *amount,
                    amount: *amount,
                    status: GrantStatus::Active,
                    shares,
                    paid: Amount::ZERO,
                    refunded: Amount::ZERO,
                    tranches: 0,
                    awarded_on: *decided_on,
                    settled_on: None,
                    payment_proposal: None,
                });
            }
            GrantReduced { application, amount, released, .. } => {
                assert_eq!(super::attribution::total(released), *amount, "release must add up to the reduction");
                self.release(application, released);
            }
            GrantWithdrawn { application, released, .. } => {
                self.release(application, released);
                let grant = self.grant_mut(application);
                grant.status = GrantStatus::Withdrawn;
                grant.payment_proposal = None;
            }
            GrantSettled { application, final_amount, released, decided_on, .. } => {
                self.release(application, released);
                let grant = self.grant_mut(application);
                assert_eq!(grant.amount, *final_amount, "settlement release must leave the final amount");
                grant.status = GrantStatus::Settled;
                grant.settled_on = Some(*decided_on);
            }
            PaymentMade { application, tranche, amount, attribution, .. } => {
                assert_eq!(super::attribution::total(attribution), *amount, "payment attribution must add up");
                for share in attribution {
                    let pot = self.pot_mut(&share.pot);
                    pot.paid = pot.paid.plus(share.amount);
                    pot.check();
                }
                let grant = self.grant_mut(application);
                for share in attribution {
                    let s = grant.shares.get_mut(&share.pot).expect("payment along the grant's shares");
                    s.paid = s.paid.plus(share.amount);
                    s.check();
                }
                grant.paid = grant.paid.plus(*amount);
                grant.tranches = *tranche;
                grant.payment_proposal = None;
                grant.check();
            }
            RefundReceived { application, amount, attribution, releases, .. } => {
                assert_eq!(super::attribution::total(attribution), *amount, "refund attribution must add up");
                let grant = self.grant_mut(application);
                for share in attribution {
                    let s = grant.shares.get_mut(&share.pot).expect("refund along the grant's shares");
                    s.refunded = s.refunded.plus(share.amount);
                    if *releases {
                        s.amount = s.amount.minus(share.amount);
                    }
                    s.check();
                }
                grant.refunded = grant.refunded.plus(*amount);
                if *releases {
                    grant.amount = grant.amount.minus(*amount);
                }
                grant.check();
                for share in attribution {
                    let pot = self.pot_mut(&share.pot);
                    pot.refunded = pot.refunded.plus(share.amount);
                    if *releases {
                        pot.awarded = pot.awarded.minus(share.amount);
                    }
                    pot.check();
                }
                if *releases {
                    let round = self.applications[application].round.clone();
                    let r = self.rounds.get_mut(&round).expect("known round");
                    r.amount_committed = r.amount_committed.minus(*amount);
                }
            }
            ApprovalThresholdsSet { round, award_above, payment_above } => {
                let r = self.rounds.get_mut(round).expect("thresholds for an unknown round");
                r.award_four_eyes_above = *award_above;
                r.payment_four_eyes_above = *payment_above;
            }
            AccessGranted { principal, role, token_sha256 } => {
                let previous = self.principals.insert(
                    principal.clone(),
                    Principal { role: role.clone(), token_sha256: *token_sha256, revoked: false },
                );
                assert!(previous.is_none_or(|p| p.revoked), "access granted twice to {principal}");
                let clash = self.active_tokens.insert(*token_sha256, principal.clone());
                assert!(clash.is_none(), "token of {principal} already in use");
            }
            AccessRevoked { principal, .. } => {
                let p = self.principals.get_mut(principal).expect("revoking an unknown principal");
                assert!(!p.revoked, "access of {principal} revoked twice");
                p.revoked = true;
                self.active_tokens.remove(&p.token_sha256);
            }
            AwardProposed { application, amount, reason, proposed_by, proposed_on } => {
                let app = self.applications.get_mut(application).expect("proposal on an unknown application");
                assert_eq!(app.status, ApplicationStatus::Pending, "proposal on a decided application");
                app.award_proposal = Some(Box::new(AwardProposal {
                    amount: *amount,
                    reason: reason.clone(),
                    proposed_by: proposed_by.clone(),
                    proposed_on: *proposed_on,
                }));
            }
            PaymentProposed { application, amount, value_date, bank_reference, proposed_by } => {
                let grant = self.grant_mut(application);
                assert!(*amount <= grant.open(), "payment proposal above what is open");
                grant.payment_proposal = Some(Box::new(PaymentProposal {
                    amount: *amount,
                    value_date: *value_date,
                    bank_reference: bank_reference.clone(),
                    proposed_by: proposed_by.clone(),
                }));
            }
            ConflictDeclared { application, officer, .. } => {
                let app = self.applications.get_mut(application).expect("conflict on an unknown application");
                app.conflicts.insert(officer.clone());
            }
        }
    }

    fn pot_mut(&mut self, pot: &PotKey) -> &mut Pot {
        self.pots.get_mut(pot).unwrap_or_else(|| panic!("unknown pot {pot:?}"))
    }

    fn grant_mut(&mut self, application: &ApplicationId) -> &mut Grant {
        self.applications
            .get_mut(application)
            .and_then(|a| a.grant.as_mut())
            .unwrap_or_else(|| panic!("no grant on application {application}"))
    }

    /// Records a decision on a pending application; returns its round.
    fn decide_application(
        &mut self,
        application: &ApplicationId,
        status: ApplicationStatus,
        reason: &str,
        decided_by: &str,
        decided_on: Date,
    ) -> RoundId {
        let app = self.applications.get_mut(application).expect("decision on an unknown application");
        assert_eq!(app.status, ApplicationStatus::Pending, "decision on application {application} that is not pending");
        app.status = status;
        app.decision = Some(Decision { reason: reason.into(), decided_by: decided_by.into(), decided_on });
        app.award_proposal = None;
        app.round.clone()
    }

    /// Gives `released` back to the partners' available money.
    fn release(&mut self, application: &ApplicationId, released: &[Share]) {
        let amount = super::attribution::total(released);
        let grant = self.grant_mut(application);
        for share in released {
            let s = grant.shares.get_mut(&share.pot).expect("release along the grant's shares");
            s.amount = s.amount.minus(share.amount);
            s.check();
        }
        grant.amount = grant.amount.minus(amount);
        grant.check();
        for share in released {
            let pot = self.pot_mut(&share.pot);
            pot.awarded = pot.awarded.minus(share.amount);
        }
        let round = self.applications[application].round.clone();
        let r = self.rounds.get_mut(&round).expect("known round");
        r.amount_committed = r.amount_committed.minus(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pot(partner: &str, earmark: Option<&str>) -> PotKey {
        PotKey { partner: PartnerId::new(partner).unwrap(), earmark: earmark.map(|r| RoundId::new(r).unwrap()) }
    }

    fn shares(pots: &[PotKey]) -> Shares {
        pots.iter()
            .map(|p| (p.clone(), GrantShare { amount: Amount::from_minor(1).unwrap(), ..Default::default() }))
            .collect()
    }

    /// Grants' shares of the same pot hold one copy of its key, whether
    /// they were collected by the fold or decoded from a checkpoint.
    #[test]
    fn shares_of_the_same_pot_share_its_key() {
        let pots = [pot("bzk", None), pot("vfonds", Some("r2"))];
        let first = shares(&pots);
        let second = shares(&pots);
        let decoded: Shares = crate::log::codec::decode(&crate::log::codec::encode(&first)).unwrap();
        for i in 0..pots.len() {
            assert!(Arc::ptr_eq(&first.0[i].0, &second.0[i].0));
            assert!(Arc::ptr_eq(&first.0[i].0, &decoded.0[i].0));
        }
        assert_eq!(decoded, first);
    }

    /// Past its bound the cache stops taking keys: shares stay right, only
    /// unshared.
    #[test]
    fn the_pot_key_cache_is_bounded() {
        std::thread::spawn(|| {
            let many: Vec<PotKey> = (0..INTERNED_POTS_MAX + 10).map(|i| pot(&format!("p{i}"), None)).collect();
            let all = shares(&many);
            let again = shares(&many);
            assert_eq!(all, again);
            assert_eq!(all.len(), many.len());
            let shared = (0..many.len()).filter(|&i| Arc::ptr_eq(&all.0[i].0, &again.0[i].0)).count();
            assert_eq!(shared, INTERNED_POTS_MAX);
            assert_eq!(all.keys().cloned().collect::<Vec<_>>(), {
                let mut sorted = many.clone();
                sorted.sort();
                sorted
            });
        })
        .join()
        .unwrap();
    }
}
