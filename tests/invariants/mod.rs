//! The invariants of the design, checked after every command of a
//! sequence: shares add up, no pot figure goes negative, earmarks are
//! respected, rounds stay within their ceiling and maximum, grants pay no
//! more than their amount and refund no more than was paid, the journal
//! balances and reconciles with the pots, replaying the log gives the same
//! state; a role that may not send a command is refused and changes
//! nothing; four eyes and conflicts of interest hold; the active tokens are
//! exactly those of the principals not revoked.
//!
//! Self-contained (it needs only `fundledger`), so that the fuzz targets
//! (`fuzz/`, through `tests/fuzzing/`) include it as well as the tests.
#![allow(dead_code)]

use fundledger::domain::journal::{self, Account};
use fundledger::domain::*;
use std::collections::{BTreeMap, BTreeSet};

/// Who may send a command, written down independently of the domain's
/// `may_send` so that the one checks the other. The match has no wildcard:
/// a new command does not compile until it is placed in a class here.
/// Shared by the domain tests and the property tests.
pub fn permitted_role(command: &Command) -> Role {
    use Command::*;
    match command {
        OpenFund { .. }
        | AdmitPartner { .. }
        | OpenRound { .. }
        | CloseRound { .. }
        | SetApprovalThresholds { .. }
        | GrantAccess { .. }
        | RevokeAccess { .. } => Role::Admin,
        PledgeContribution { partner, .. } | ReducePledge { partner, .. } => Role::Partner(partner.clone()),
        RecordReceipt { .. }
        | SubmitApplication { .. }
        | WithdrawApplication { .. }
        | RejectApplication { .. }
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
        | DeclareConflict { .. } => Role::Officer,
    }
}

/// The application a command decides, approves or pays on: an officer with
/// a conflict of interest on it may not send it. Submitting, withdrawing and
/// declaring a conflict are not deciding.
pub fn decided_application(command: &Command) -> Option<&ApplicationId> {
    use Command::*;
    match command {
        RejectApplication { application, .. }
        | AwardGrant { application, .. }
        | ProposeAward { application, .. }
        | ApproveAward { application, .. }
        | ReduceGrant { application, .. }
        | WithdrawGrant { application, .. }
        | SettleGrant { application, .. }
        | MakePayment { application, .. }
        | ProposePayment { application, .. }
        | ApprovePayment { application }
        | RecordRefund { application, .. } => Some(application),
        _ => None,
    }
}

type Proposal = (Amount, String);

/// One sequence of commands being checked: the state, the log, and the
/// journal so far; and, followed from the log alone, what the access rules
/// need to know. Shared by the property tests (`tests/properties.rs`) and
/// the command-path fuzz target (`tests/fuzzing/`), so that both hold the
/// ledger to the same invariants.
#[derive(Default)]
pub struct Invariants {
    pub state: FundState,
    pub log: Vec<Event>,
    balances: BTreeMap<Account, i64>,
    pub last_payments: usize,
    pub releasing_refunds: usize,
    pub four_eyes_awards: usize,
    pub four_eyes_payments: usize,
    /// Every principal ever given access: their token and whether revoked.
    principals: BTreeMap<PrincipalId, ([u8; 32], bool)>,
    /// Award proposals not yet followed by a decision on the application.
    award_proposals: BTreeMap<ApplicationId, Proposal>,
    /// Payment proposals not yet followed by a payment or a withdrawal.
    payment_proposals: BTreeMap<ApplicationId, Proposal>,
    /// The officers who declared a conflict of interest, per application.
    conflicts: BTreeMap<ApplicationId, BTreeSet<String>>,
}

impl Invariants {
    /// Decides `command` sent by `actor` against the state, checks the
    /// outcome and every accepted event, applies them, and checks the whole
    /// state afterwards. Panics on a broken invariant; returns the outcome.
    pub fn apply(&mut self, command: &Command, actor: &Actor) -> Result<Vec<Event>, Rejection> {
        let ctx = Context { actor: actor.clone() };
        let before = self.state.clone();
        let outcome = decide(&self.state, command, &ctx);
        assert_eq!(decide(&self.state, command, &ctx), outcome, "decide depends on nothing but its arguments");

        // Permission comes first: a role that may not send the command is
        // refused, whatever the state.
        let denied = Err(Rejection::PermissionDenied {
            principal: actor.principal.to_string(),
            role: actor.role.to_string(),
            action: command.name().into(),
        });
        if actor.role == permitted_role(command) {
            assert_ne!(outcome, denied, "{} may send {command:?}", actor.role);
        } else {
            assert_eq!(outcome, denied, "{} may not send {command:?}", actor.role);
        }
        let decides_on = decided_application(command);
        if let Some(application) = decides_on.filter(|_| actor.role == permitted_role(command)) {
            if self.conflicts.get(application).is_some_and(|c| c.contains(actor.principal.as_str())) {
                let conflict = Rejection::ConflictOfInterest {
                    principal: actor.principal.to_string(),
                    application: application.to_string(),
                };
                assert_eq!(outcome, Err(conflict), "{command:?} by a conflicted officer");
            }
        }

        match &outcome {
            Ok(events) => {
                for event in events {
                    assert_eq!(
                        event.stream(),
                        command.stream(),
                        "{} recorded in its command's stream",
                        event.type_name()
                    );
                    self.check_event(event, actor);
                    self.state.evolve(event);
                    self.follow(event);
                    self.log.push(event.clone());
                    let postings = journal::postings(event);
                    assert_eq!(postings.iter().map(|p| p.amount).sum::<i64>(), 0, "{} balances", event.type_name());
                    for posting in postings {
                        *self.balances.entry(posting.account).or_default() += posting.amount;
                    }
                }
            }
            Err(rejection) => {
                assert_eq!(self.state, before, "a refused command changes nothing");
                assert!(!rejection.to_string().is_empty());
            }
        }
        self.check_state();
        outcome
    }

    /// Follows an accepted event in the access records kept from the log.
    fn follow(&mut self, event: &Event) {
        match event {
            Event::AccessGranted { principal, token_sha256, .. } => {
                self.principals.insert(principal.clone(), (*token_sha256, false));
            }
            Event::AccessRevoked { principal, .. } => {
                self.principals.get_mut(principal).expect("revoked after granted").1 = true;
            }
            Event::AwardProposed { application, amount, proposed_by, .. } => {
                self.award_proposals.insert(application.clone(), (*amount, proposed_by.clone()));
            }
            Event::ApplicationRejected { application, .. }
            | Event::ApplicationWithdrawn { application, .. }
            | Event::GrantAwarded { application, .. } => {
                self.award_proposals.remove(application);
            }
            Event::PaymentProposed { application, amount, proposed_by, .. } => {
                self.payment_proposals.insert(application.clone(), (*amount, proposed_by.clone()));
            }
            Event::PaymentMade { application, .. } | Event::GrantWithdrawn { application, .. } => {
                self.payment_proposals.remove(application);
            }
            Event::ConflictDeclared { application, officer, .. } => {
                self.conflicts.entry(application.clone()).or_default().insert(officer.clone());
            }
            _ => {}
        }
    }

    /// Checks an accepted event, sent by `actor`, against the state it is
    /// about to change.
    fn check_event(&mut self, event: &Event, actor: &Actor) {
        // The access rules: the recorded decider is the actor; no officer
        // acts on an application they declared a conflict on.
        let acting = actor.principal.as_str();
        let recorded = match event {
            Event::ApplicationRejected { decided_by, .. }
            | Event::GrantAwarded { decided_by, .. }
            | Event::GrantReduced { decided_by, .. }
            | Event::GrantWithdrawn { decided_by, .. }
            | Event::GrantSettled { decided_by, .. } => Some(decided_by),
            Event::AwardProposed { proposed_by, .. } | Event::PaymentProposed { proposed_by, .. } => Some(proposed_by),
            Event::ConflictDeclared { officer, .. } => Some(officer),
            _ => None,
        };
        if let Some(recorded) = recorded {
            assert_eq!(recorded, acting, "{} records who acted", event.type_name());
        }
        // Submitting, withdrawing and declaring a conflict are not deciding.
        let deciding = !matches!(
            event,
            Event::ApplicationSubmitted { .. } | Event::ApplicationWithdrawn { .. } | Event::ConflictDeclared { .. }
        );
        if let (StreamId::Application(application), true) = (event.stream(), deciding) {
            let conflicts = self.conflicts.get(&application);
            assert!(
                conflicts.is_none_or(|c| !c.contains(acting)),
                "{} on {application} by {acting}, who declared a conflict of interest",
                event.type_name()
            );
        }
        let state = &self.state;
        let round_of = |a: &ApplicationId| &state.rounds[&state.applications[a].round];
        match event {
            // Four eyes: above the round's threshold, only what another
            // officer proposed, for exactly the amount proposed.
            Event::GrantAwarded { application, amount, decided_by, .. }
                if round_of(application).award_four_eyes_above.is_some_and(|t| *amount > t) =>
            {
                let proposal = self.award_proposals.get(application);
                assert!(
                    proposal.is_some_and(|(a, by)| a == amount && by != decided_by),
                    "award of {amount:?} on {application} by {decided_by} above the threshold, proposed {proposal:?}"
                );
                self.four_eyes_awards += 1;
            }
            Event::PaymentMade { application, amount, .. }
                if round_of(application).payment_four_eyes_above.is_some_and(|t| {
                    let paid = state.applications[application].grant.as_ref().map_or(Amount::ZERO, |g| g.net_paid());
                    paid.plus(*amount) > t
                }) =>
            {
                let proposal = self.payment_proposals.get(application);
                assert!(
                    proposal.is_some_and(|(a, by)| a == amount && by != acting),
                    "payment of {amount:?} on {application} by {acting} above the threshold, proposed {proposal:?}"
                );
                self.four_eyes_payments += 1;
            }
            Event::AwardProposed { application, amount, .. } => {
                let app = &state.applications[application];
                assert_eq!(app.status, ApplicationStatus::Pending, "proposal on a decided application");
                assert!(*amount <= app.amount_requested);
                assert!(!self.award_proposals.contains_key(application), "one award proposal at a time");
            }
            Event::PaymentProposed { application, amount, .. } => {
                let grant = state.applications[application].grant.as_ref().expect("a grant");
                assert!(grant.status != GrantStatus::Withdrawn && *amount <= grant.open());
                assert!(!self.payment_proposals.contains_key(application), "one payment proposal at a time");
            }
            Event::ConflictDeclared { application, officer, .. } => {
                assert!(!self.conflicts.get(application).is_some_and(|c| c.contains(officer)), "declared once");
            }
            _ => {}
        }
        let state = &self.state;
        let grant = |a: &ApplicationId| state.applications[a].grant.as_ref().expect("a grant");
        let total = |shares: &[Share]| shares.iter().map(|s| s.amount).sum::<Amount>();
        let well_formed = |shares: &[Share]| {
            assert!(shares.windows(2).all(|w| w[0].pot < w[1].pot), "shares in pot order, each pot once");
            assert!(shares.iter().all(|s| !s.amount.is_zero()), "no zero shares");
        };
        match event {
            Event::GrantAwarded { application, amount, attribution, .. } => {
                well_formed(attribution);
                assert_eq!(total(attribution), *amount, "attribution adds up");
                let round = &state.applications[application].round;
                for share in attribution {
                    assert!(share.pot.earmark.as_ref().is_none_or(|r| r == round), "earmark respected: {share:?}");
                    assert!(share.amount <= state.pots[&share.pot].available(), "only available money");
                }
            }
            Event::GrantReduced { application, amount, released, .. } => {
                well_formed(released);
                assert_eq!(total(released), *amount, "release adds up");
                let g = grant(application);
                assert!(released.iter().all(|s| s.amount <= g.shares[&s.pot].open()));
            }
            Event::GrantWithdrawn { application, released, .. } => {
                well_formed(released);
                assert_eq!(total(released), grant(application).open(), "withdrawal releases all that is open");
            }
            Event::GrantSettled { application, final_amount, released, .. } => {
                well_formed(released);
                let g = grant(application);
                assert_eq!(total(released), g.amount.minus(*final_amount), "settlement releases the difference");
                assert!(released.iter().all(|s| s.amount <= g.shares[&s.pot].open()));
            }
            Event::PaymentMade { application, amount, attribution, tranche, .. } => {
                well_formed(attribution);
                assert_eq!(total(attribution), *amount, "payment adds up");
                let g = grant(application);
                assert_eq!(*tranche, g.tranches + 1);
                for share in attribution {
                    assert!(share.amount <= g.shares[&share.pot].open(), "payment along open shares");
                }
                if *amount == g.open() {
                    // The last payment settles each share's exact remainder.
                    let open: Vec<Share> = g
                        .shares
                        .iter()
                        .filter(|(_, s)| !s.open().is_zero())
                        .map(|(pot, s)| Share { pot: pot.clone(), amount: s.open() })
                        .collect();
                    assert_eq!(*attribution, open);
                    self.last_payments += 1;
                }
            }
            Event::RefundReceived { application, amount, attribution, releases, .. } => {
                well_formed(attribution);
                assert_eq!(total(attribution), *amount, "refund adds up");
                let g = grant(application);
                assert_eq!(*releases, g.status != GrantStatus::Active);
                for share in attribution {
                    assert!(share.amount <= g.shares[&share.pot].net_paid(), "refund along what was paid");
                }
                if *releases {
                    self.releasing_refunds += 1;
                }
            }
            _ => {}
        }
    }

    fn check_state(&self) {
        let state = &self.state;
        let at = |account: Account| self.balances.get(&account).copied().unwrap_or(0);

        // Pots: the figures exist (they panic below zero) and match the grants.
        let mut from_grants: BTreeMap<&PotKey, (Amount, Amount, Amount)> = BTreeMap::new();
        for (id, application) in &state.applications {
            let round = &state.rounds[&application.round];
            assert_eq!(application.grant.is_some(), application.status == ApplicationStatus::Awarded, "{id}");
            let Some(grant) = &application.grant else { continue };
            assert!(grant.awarded <= round.grant_max, "{id} above the maximum per grant");
            assert!(grant.amount <= grant.awarded, "{id} grew");
            assert!(grant.net_paid() <= grant.amount, "{id} paid more than its amount");
            assert!(grant.refunded <= grant.paid, "{id} refunded more than paid");
            let _ = grant.open();
            if grant.status == GrantStatus::Withdrawn {
                assert!(grant.open().is_zero(), "{id} withdrawn with money open");
            }
            let shares = grant.shares.values();
            assert_eq!(shares.clone().map(|s| s.amount).sum::<Amount>(), grant.amount, "{id} shares add up");
            assert_eq!(shares.clone().map(|s| s.paid).sum::<Amount>(), grant.paid, "{id} paid shares add up");
            assert_eq!(shares.map(|s| s.refunded).sum::<Amount>(), grant.refunded, "{id} refunded shares add up");
            for (key, share) in &grant.shares {
                assert!(key.earmark.as_ref().is_none_or(|r| *r == application.round), "{id} uses {key:?}");
                let _ = share.open();
                let entry = from_grants.entry(key).or_default();
                *entry = (entry.0.plus(share.amount), entry.1.plus(share.paid), entry.2.plus(share.refunded));
            }
            assert_eq!(-at(Account::GrantsPayable(id.clone())), grant.open().minor(), "{id} payable");
        }
        let mut pledged = Amount::ZERO;
        let mut cash = Amount::ZERO;
        for (key, pot) in &state.pots {
            let (outstanding, available, _, cash_held) =
                (pot.outstanding(), pot.available(), pot.open_commitments(), pot.cash_held());
            let (awarded, paid, refunded) = from_grants.get(key).copied().unwrap_or_default();
            assert_eq!((pot.awarded, pot.paid, pot.refunded), (awarded, paid, refunded), "{key:?} against its grants");
            let receivable = at(Account::PledgesReceivable(key.clone()));
            let partner_funds = -at(Account::PartnerFunds(key.clone()));
            assert_eq!(receivable, outstanding.minor(), "{key:?} receivable");
            assert_eq!(partner_funds - receivable, available.minor(), "{key:?} available");
            pledged = pledged.plus(pot.pledged);
            cash = cash.plus(cash_held);
        }
        assert_eq!(at(Account::Cash), cash.minor(), "cash");
        assert_eq!(self.balances.values().sum::<i64>(), 0, "trial balance");
        if let Some(fund) = &state.fund {
            assert_eq!(fund.pledged, pledged);
            assert!(fund.pledged <= fund.currency.fund_pledged_max());
        }

        // Rounds: within their ceiling, and their counters match the applications.
        for (id, round) in &state.rounds {
            assert!(round.grant_max <= round.budget_ceiling, "{id}");
            assert!(round.amount_committed <= round.budget_ceiling, "{id} above its ceiling");
            let _ = round.budget_left();
            let apps: Vec<_> = state.applications.values().filter(|a| a.round == *id).collect();
            let count = |status| apps.iter().filter(|a| a.status == status).count() as u32;
            assert_eq!(round.applications_received as usize, apps.len());
            assert_eq!(round.applications_awarded, count(ApplicationStatus::Awarded));
            assert_eq!(round.applications_rejected, count(ApplicationStatus::Rejected));
            assert_eq!(round.applications_withdrawn, count(ApplicationStatus::Withdrawn));
            assert_eq!(round.applications_pending(), count(ApplicationStatus::Pending));
            assert_eq!(round.amount_requested, apps.iter().map(|a| a.amount_requested).sum::<Amount>());
            let awarded: Amount = apps.iter().filter_map(|a| a.grant.as_ref()).map(|g| g.amount).sum();
            assert_eq!(round.amount_committed, awarded, "{id} awarded");
        }

        // Access: the active tokens are exactly the tokens of the principals
        // not revoked, as the log tells; and no two of them share one.
        let active: BTreeMap<[u8; 32], PrincipalId> = self
            .principals
            .iter()
            .filter(|(_, (_, revoked))| !revoked)
            .map(|(id, (token, _))| (*token, id.clone()))
            .collect();
        let active_count = self.principals.values().filter(|(_, revoked)| !revoked).count();
        assert_eq!(active.len(), active_count, "two active principals share a token");
        assert_eq!(state.active_tokens, active, "active tokens");
        let principals: BTreeMap<PrincipalId, ([u8; 32], bool)> =
            state.principals.iter().map(|(id, p)| (id.clone(), (p.token_sha256, p.revoked))).collect();
        assert_eq!(principals, self.principals, "principals");

        // Proposals wait on undecided applications and payable grants, and
        // conflicts stay declared, as the log tells.
        let mut award_proposals = BTreeMap::new();
        let mut payment_proposals = BTreeMap::new();
        for (id, application) in &state.applications {
            if let Some(p) = &application.award_proposal {
                assert_eq!(application.status, ApplicationStatus::Pending, "{id} proposal on a decided application");
                award_proposals.insert(id.clone(), (p.amount, p.proposed_by.clone()));
            }
            if let Some(grant) = &application.grant {
                if let Some(p) = &grant.payment_proposal {
                    assert!(grant.status != GrantStatus::Withdrawn, "{id} payment proposal on a withdrawn grant");
                    payment_proposals.insert(id.clone(), (p.amount, p.proposed_by.clone()));
                }
            }
            let conflicts = self.conflicts.get(id).cloned().unwrap_or_default();
            assert_eq!(application.conflicts, conflicts, "{id} conflicts");
        }
        assert_eq!(award_proposals, self.award_proposals, "award proposals");
        assert_eq!(payment_proposals, self.payment_proposals, "payment proposals");

        // Replay from nothing gives the same state.
        let mut replayed = FundState::default();
        for event in &self.log {
            replayed.evolve(event);
        }
        assert!(replayed == *state, "replay differs from the state built step by step");
    }
}
