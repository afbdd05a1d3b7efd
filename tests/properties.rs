//! Property tests of the domain: random sequences of valid and invalid
//! commands over a small universe (three partners, two rounds, ten
//! applications) go through `decide`, and every accepted event through
//! `evolve`. After every step the design's invariants must hold: shares add
//! up, no pot figure goes negative, earmarks are respected, rounds stay
//! within their ceiling and maximum, grants pay no more than their amount and
//! refund no more than was paid, the journal balances and reconciles with
//! the pots, and replaying the log gives the same state.
//!
//! Amounts are often a fraction of the figure that bounds them (the open
//! amount of a grant, the outstanding pledge, …) so that a good share of the
//! commands is accepted; the test also asserts at the end that awards,
//! payments, refunds and settlements really happened.

// Amounts in cents are written as on a statement: `60_000_00` is
// EUR 60,000.00, euros grouped by thousands and then the cents.
#![allow(clippy::inconsistent_digit_grouping)]

use fundledger::domain::dated;
use fundledger::domain::journal::{self, Account};
use fundledger::domain::state::{Application, Grant, Pot};
use fundledger::domain::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestError, TestRunner};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

const PARTNERS: [&str; 3] = ["p0", "p1", "p2"];
const ROUNDS: [&str; 2] = ["r0", "r1"];
const APPLICATIONS_MAX: usize = 10;
/// Random commands after the opening ones, per sequence.
const SEQUENCE_COMMANDS_MAX: usize = 150;
/// Sequences per run: about 10 s in a debug build on a small machine.
const SEQUENCES: u32 = 600;
const ROUND_OPENS_ON: &str = "2024-01-01";
const ROUND_CLOSES_ON: &str = "2024-12-31";

// ----- what is generated -----

/// An amount as the generator chooses it.
#[derive(Clone, Debug)]
enum Figure {
    /// An absolute amount in cents.
    Cents(i64),
    /// Per mille of the figure that bounds the command (open amount, net
    /// paid, outstanding pledge, …); above 1000 it exceeds the bound.
    PerMille(u16),
    Bad(BadAmount),
}

#[derive(Clone, Copy, Debug)]
enum BadAmount {
    TooPrecise,
    Negative,
    Zero,
    TooLarge,
    WrongCurrency,
}

/// Which application an op is about. Most ops pick among the applications
/// where the op makes sense (pending ones for decisions, grants for
/// payments…), so that they are not all refused as unknown; some name any id.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// The n-th (modulo their number) of the applications the op fits.
    Fitting(usize),
    /// Application `app-n`, whatever its state.
    Any(usize),
}

#[derive(Clone, Debug)]
enum Op {
    OpenFund,
    Admit { partner: usize },
    Pledge { partner: usize, earmark: Option<usize>, amount: Figure },
    ReducePledge { partner: usize, earmark: Option<usize>, amount: Figure },
    Receive { partner: usize, earmark: Option<usize>, amount: Figure },
    OpenRound { round: usize, ceiling: Figure, grant_max: Figure, inverted_dates: bool },
    CloseRound { round: usize },
    Submit { app: usize, round: usize, amount: Figure, day: i32, blank_title: bool },
    WithdrawApplication { app: Pick },
    Reject { app: Pick, blank_reason: bool },
    Award { app: Pick, amount: Figure },
    Reduce { app: Pick, amount: Figure },
    WithdrawGrant { app: Pick },
    Settle { app: Pick, amount: Figure },
    Pay { app: Pick, amount: Figure },
    Refund { app: Pick, amount: Figure },
}

fn figure() -> impl Strategy<Value = Figure> {
    let bad = prop_oneof![
        Just(BadAmount::TooPrecise),
        Just(BadAmount::Negative),
        Just(BadAmount::Zero),
        Just(BadAmount::TooLarge),
        Just(BadAmount::WrongCurrency),
    ];
    prop_oneof![
        // All of the bound (a last payment, a full refund) is worth trying often.
        10 => (1u16..=1000).prop_map(Figure::PerMille),
        3 => Just(Figure::PerMille(1000)),
        1 => (1001u16..=1100).prop_map(Figure::PerMille),
        1 => Just(Figure::PerMille(0)),
        4 => (1i64..=60_000_00).prop_map(Figure::Cents),
        1 => bad.prop_map(Figure::Bad),
    ]
}

fn partner_index() -> impl Strategy<Value = usize> {
    0..PARTNERS.len()
}

fn round_index() -> impl Strategy<Value = usize> {
    0..ROUNDS.len()
}

fn app_index() -> impl Strategy<Value = usize> {
    0..APPLICATIONS_MAX
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![6 => app_index().prop_map(Pick::Fitting), 1 => app_index().prop_map(Pick::Any)]
}

/// Mostly unrestricted money; sometimes earmarked for one of the rounds.
fn earmark() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![3 => Just(None), 1 => round_index().prop_map(Some)]
}

fn money_in() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (partner_index(), earmark(), figure()).prop_map(|(partner, earmark, amount)| Op::Pledge { partner, earmark, amount }),
        6 => (partner_index(), earmark(), figure()).prop_map(|(partner, earmark, amount)| Op::Receive { partner, earmark, amount }),
        1 => (partner_index(), earmark(), figure())
            .prop_map(|(partner, earmark, amount)| Op::ReducePledge { partner, earmark, amount }),
    ]
}

/// A pledge and a receipt into the same pot.
fn contribution() -> impl Strategy<Value = Vec<Op>> {
    (partner_index(), earmark(), figure(), figure()).prop_map(|(partner, earmark, pledged, received)| {
        vec![Op::Pledge { partner, earmark, amount: pledged }, Op::Receive { partner, earmark, amount: received }]
    })
}

fn set_up() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::OpenFund),
        1 => partner_index().prop_map(|partner| Op::Admit { partner }),
        1 => (round_index(), figure(), figure(), proptest::bool::weighted(0.2))
            .prop_map(|(round, ceiling, grant_max, inverted_dates)| Op::OpenRound { round, ceiling, grant_max, inverted_dates }),
        1 => round_index().prop_map(|round| Op::CloseRound { round }),
    ]
}

fn submission() -> impl Strategy<Value = Op> {
    (app_index(), round_index(), figure(), -20i32..400, proptest::bool::weighted(0.05))
        .prop_map(|(app, round, amount, day, blank_title)| Op::Submit { app, round, amount, day, blank_title })
}

fn applications() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => submission(),
        1 => pick().prop_map(|app| Op::WithdrawApplication { app }),
        2 => (pick(), proptest::bool::weighted(0.1)).prop_map(|(app, blank_reason)| Op::Reject { app, blank_reason }),
        8 => (pick(), figure()).prop_map(|(app, amount)| Op::Award { app, amount }),
    ]
}

fn grants() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (pick(), figure()).prop_map(|(app, amount)| Op::Reduce { app, amount }),
        1 => pick().prop_map(|app| Op::WithdrawGrant { app }),
        3 => (pick(), figure()).prop_map(|(app, amount)| Op::Settle { app, amount }),
        8 => (pick(), figure()).prop_map(|(app, amount)| Op::Pay { app, amount }),
        4 => (pick(), figure()).prop_map(|(app, amount)| Op::Refund { app, amount }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        11 => money_in(),
        2 => set_up(),
        19 => applications(),
        18 => grants(),
    ]
}

/// The opening commands most sequences start with; a few sequences start
/// without them, so that commands on an unopened fund are tried as well.
fn opening() -> Vec<Op> {
    let mut ops = vec![Op::OpenFund];
    ops.extend((0..PARTNERS.len()).map(|partner| Op::Admit { partner }));
    ops.push(Op::OpenRound {
        round: 0,
        ceiling: Figure::Cents(150_000_00),
        grant_max: Figure::Cents(15_000_00),
        inverted_dates: false,
    });
    ops.push(Op::OpenRound {
        round: 1,
        ceiling: Figure::Cents(25_000_00),
        grant_max: Figure::Cents(10_000_00),
        inverted_dates: false,
    });
    ops
}

/// Mostly: the opening, some money coming in, some applications, then anything.
fn sequence() -> impl Strategy<Value = Vec<Op>> {
    (
        proptest::bool::weighted(0.95),
        proptest::collection::vec(contribution(), 0..6),
        proptest::collection::vec(submission(), 0..10),
        proptest::collection::vec(op(), 1..SEQUENCE_COMMANDS_MAX),
    )
        .prop_map(|(opened, money, submissions, ops)| {
            let start = if opened { opening() } else { Vec::new() };
            [start, money.concat(), submissions, ops].concat()
        })
}

// ----- from generated ops to commands -----

fn ctx() -> Context {
    Context { actor: "property.test".into() }
}

fn partner(index: usize) -> PartnerId {
    PartnerId::new(PARTNERS[index]).unwrap()
}

fn round(index: usize) -> RoundId {
    RoundId::new(ROUNDS[index]).unwrap()
}

fn app(index: usize) -> ApplicationId {
    ApplicationId::new(&format!("app-{index}")).unwrap()
}

/// The application a pick stands for: among those that `fits`, if any.
fn resolve(state: &FundState, pick: Pick, fits: impl Fn(&Application) -> bool) -> ApplicationId {
    match pick {
        Pick::Any(n) => app(n),
        Pick::Fitting(n) => {
            let fitting: Vec<&ApplicationId> =
                state.applications.iter().filter(|(_, a)| fits(a)).map(|(id, _)| id).collect();
            if fitting.is_empty() {
                app(n)
            } else {
                fitting[n % fitting.len()].clone()
            }
        }
    }
}

fn pending(application: &Application) -> bool {
    application.status == ApplicationStatus::Pending
}

fn with_grant(application: &Application, fits: impl Fn(&Grant) -> bool) -> bool {
    application.grant.as_ref().is_some_and(fits)
}

fn day(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn money(figure: &Figure, bound: Amount) -> MoneyInput {
    let eur = |text: &str| MoneyInput::parse(text, "EUR").unwrap();
    let text = |minor: i64| Currency::eur().plain(Amount::from_minor(minor).unwrap());
    match figure {
        Figure::Cents(minor) => eur(&text(*minor)),
        Figure::PerMille(per_mille) => {
            let minor = i128::from(bound.minor()) * i128::from(*per_mille) / 1000;
            eur(&text(i64::try_from(minor).unwrap()))
        }
        Figure::Bad(BadAmount::TooPrecise) => eur("12.345"),
        Figure::Bad(BadAmount::Negative) => eur("-5.00"),
        Figure::Bad(BadAmount::Zero) => eur("0"),
        Figure::Bad(BadAmount::TooLarge) => eur("1000000000.01"),
        Figure::Bad(BadAmount::WrongCurrency) => MoneyInput::parse("5", "USD").unwrap(),
    }
}

fn eur(major: i64) -> Amount {
    Amount::from_minor(major * 100).unwrap()
}

/// The command an op stands for in the current state: per-mille figures are
/// taken of the figure that bounds the command.
fn command(state: &FundState, op: &Op) -> Command {
    let today = day("2024-03-01");
    let reason = || "because".to_string();
    let grant = |id: &ApplicationId| state.applications.get(id).and_then(|a| a.grant.as_ref());
    let pot = |p: usize, earmark: &Option<usize>| {
        state.pots.get(&PotKey { partner: partner(p), earmark: earmark.map(round) }).cloned().unwrap_or_default()
    };
    match op.clone() {
        Op::OpenFund => Command::OpenFund { name: "Gemeenschapsfonds".into(), currency: Currency::eur() },
        Op::Admit { partner: p } => Command::AdmitPartner {
            partner: partner(p),
            name: format!("Partner {p}"),
            organisation_id: format!("NL-KVK-{p:08}"),
        },
        Op::Pledge { partner: p, earmark, amount } => Command::PledgeContribution {
            partner: partner(p),
            amount: money(&amount, eur(100_000)),
            earmark: earmark.map(round),
            pledged_on: today,
        },
        Op::ReducePledge { partner: p, earmark, amount } => Command::ReducePledge {
            partner: partner(p),
            amount: money(&amount, pot(p, &earmark).outstanding()),
            earmark: earmark.map(round),
            reason: reason(),
            reduced_on: today,
        },
        Op::Receive { partner: p, earmark, amount } => Command::RecordReceipt {
            partner: partner(p),
            amount: money(&amount, pot(p, &earmark).outstanding()),
            earmark: earmark.map(round),
            value_date: today,
            bank_reference: "NL-REF".into(),
        },
        Op::OpenRound { round: r, ceiling, grant_max, inverted_dates } => {
            let (opens_on, closes_on) = if inverted_dates {
                (day(ROUND_CLOSES_ON), day(ROUND_OPENS_ON))
            } else {
                (day(ROUND_OPENS_ON), day(ROUND_CLOSES_ON))
            };
            Command::OpenRound {
                round: round(r),
                name: format!("Round {r}"),
                budget_ceiling: money(&ceiling, eur(200_000)),
                grant_max: money(&grant_max, eur(20_000)),
                opens_on,
                closes_on,
            }
        }
        Op::CloseRound { round: r } => Command::CloseRound { round: round(r), closed_on: today },
        Op::Submit { app: a, round: r, amount, day: offset, blank_title } => {
            let grant_max = state.rounds.get(&round(r)).map_or(eur(15_000), |r| r.grant_max);
            Command::SubmitApplication {
                application: app(a),
                round: round(r),
                applicant: Applicant {
                    name: format!("Initiative {a}"),
                    organisation_id: String::new(),
                    place: if a % 3 == 0 { "Willemstad".into() } else { "Utrecht".into() },
                    country: if a % 3 == 0 { "CW".into() } else { "NL".into() },
                },
                title: if blank_title { " ".into() } else { format!("Plan {a}") },
                description: String::new(),
                amount_requested: money(&amount, grant_max),
                submitted_on: Date::from_days_since_epoch(day(ROUND_OPENS_ON).days_since_epoch() + offset),
            }
        }
        Op::WithdrawApplication { app: pick } => Command::WithdrawApplication {
            application: resolve(state, pick, pending),
            reason: reason(),
            withdrawn_on: today,
        },
        Op::Reject { app: pick, blank_reason } => Command::RejectApplication {
            application: resolve(state, pick, pending),
            reason: if blank_reason { String::new() } else { reason() },
            decided_on: today,
        },
        Op::Award { app: pick, amount } => {
            let application = resolve(state, pick, pending);
            let requested = state.applications.get(&application).map_or(eur(10_000), |a| a.amount_requested);
            Command::AwardGrant { application, amount: money(&amount, requested), reason: reason(), decided_on: today }
        }
        Op::Reduce { app: pick, amount } => {
            let application = resolve(state, pick, |a| with_grant(a, |g| g.status == GrantStatus::Active));
            let open = grant(&application).map_or(eur(1_000), |g| g.open());
            Command::ReduceGrant { application, amount: money(&amount, open), reason: reason(), decided_on: today }
        }
        Op::WithdrawGrant { app: pick } => Command::WithdrawGrant {
            application: resolve(state, pick, |a| with_grant(a, |g| g.status == GrantStatus::Active)),
            reason: reason(),
            decided_on: today,
        },
        Op::Settle { app: pick, amount } => {
            // Per mille of the amount: most settlements are possible, some
            // fall below what was already paid.
            let application = resolve(state, pick, |a| with_grant(a, |g| g.status == GrantStatus::Active));
            let bound = grant(&application).map_or(eur(1_000), |g| g.amount);
            Command::SettleGrant {
                application,
                final_amount: money(&amount, bound),
                reason: reason(),
                decided_on: today,
            }
        }
        Op::Pay { app: pick, amount } => {
            let application = resolve(state, pick, |a| with_grant(a, |g| !g.open().is_zero()));
            let open = grant(&application).map_or(eur(1_000), |g| g.open());
            Command::MakePayment {
                bank_reference: format!("PAY-{application}"),
                application,
                amount: money(&amount, open),
                value_date: today,
            }
        }
        Op::Refund { app: pick, amount } => {
            let application = resolve(state, pick, |a| with_grant(a, |g| !g.net_paid().is_zero()));
            let net_paid = grant(&application).map_or(eur(1_000), |g| g.net_paid());
            Command::RecordRefund {
                bank_reference: format!("REFUND-{application}"),
                application,
                amount: money(&amount, net_paid),
                value_date: today,
            }
        }
    }
}

/// Commands that the rules must accept: the check that `decide` does not
/// refuse too much, where the invariants check that it does not accept too
/// much.
fn must_accept(state: &FundState, command: &Command) -> bool {
    let Some(currency) = state.currency() else { return false };
    let amount = |input: &MoneyInput| currency.to_amount(input, false).ok();
    let grant = |a: &ApplicationId| state.applications.get(a).and_then(|a| a.grant.as_ref());
    let round_open = |r: &RoundId| state.rounds.get(r).is_some_and(|r| r.closed_on.is_none());
    match command {
        Command::MakePayment { application, amount: input, .. } => {
            matches!((grant(application), amount(input)), (Some(g), Some(a)) if g.status != GrantStatus::Withdrawn && a <= g.open())
        }
        Command::RecordRefund { application, amount: input, .. } => {
            matches!((grant(application), amount(input)), (Some(g), Some(a)) if a <= g.net_paid())
        }
        Command::RecordReceipt { partner, amount: input, earmark, .. } => {
            let key = PotKey { partner: partner.clone(), earmark: earmark.clone() };
            let outstanding = state.pots.get(&key).map(Pot::outstanding).unwrap_or_default();
            earmark.as_ref().is_none_or(round_open) && amount(input).is_some_and(|a| a <= outstanding)
        }
        Command::AwardGrant { application, amount: input, .. } => {
            let Some((app, a)) = state.applications.get(application).zip(amount(input)) else { return false };
            let r = &state.rounds[&app.round];
            let available: Amount = state.eligible_pots(&app.round).iter().map(|(_, a)| *a).sum();
            app.status == ApplicationStatus::Pending
                && r.closed_on.is_none()
                && a <= app.amount_requested
                && a <= r.grant_max
                && a <= r.budget_left()
                && a <= available
        }
        _ => false,
    }
}

// ----- the invariants -----

/// What the sequences exercised, over all of them.
#[derive(Default)]
struct Tally {
    accepted: BTreeMap<&'static str, usize>,
    rejected: BTreeMap<&'static str, usize>,
    /// Sequences in which at least one award, payment, refund and settlement was accepted.
    full_sequences: usize,
    last_payments: usize,
    releasing_refunds: usize,
}

/// One sequence being played: the state, the log, and the journal so far.
#[derive(Default)]
struct Play {
    state: FundState,
    log: Vec<Event>,
    balances: BTreeMap<Account, i64>,
    last_payments: usize,
    releasing_refunds: usize,
}

impl Play {
    fn step(&mut self, op: &Op, tally: &mut Tally) {
        let command = command(&self.state, op);
        let before = self.state.clone();
        let outcome = decide(&self.state, &command, &ctx());
        assert_eq!(decide(&self.state, &command, &ctx()), outcome, "decide depends on nothing but its arguments");
        match outcome {
            Ok(events) => {
                *tally.accepted.entry(command.name()).or_default() += 1;
                for event in &events {
                    assert_eq!(
                        event.stream(),
                        command.stream(),
                        "{} recorded in its command's stream",
                        event.type_name()
                    );
                    self.check_event(event);
                    self.state.evolve(event);
                    self.log.push(event.clone());
                    let postings = journal::postings(event);
                    assert_eq!(postings.iter().map(|p| p.amount).sum::<i64>(), 0, "{} balances", event.type_name());
                    for posting in postings {
                        *self.balances.entry(posting.account).or_default() += posting.amount;
                    }
                }
            }
            Err(rejection) => {
                assert!(!must_accept(&self.state, &command), "{command:?} refused: {rejection}");
                assert_eq!(self.state, before, "a refused command changes nothing");
                assert!(!rejection.to_string().is_empty());
                *tally.rejected.entry(rejection.code()).or_default() += 1;
            }
        }
        self.check_state();
    }

    /// Checks an accepted event against the state it is about to change.
    fn check_event(&mut self, event: &Event) {
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

        // Replay from nothing gives the same state.
        let mut replayed = FundState::default();
        for event in &self.log {
            replayed.evolve(event);
        }
        assert!(replayed == *state, "replay differs from the state built step by step");
    }
}

fn play(ops: &[Op], tally: &mut Tally) {
    let mut play = Play::default();
    for op in ops {
        play.step(op, tally);
    }
    let accepted = |event: fn(&Event) -> bool| play.log.iter().any(event);
    if accepted(|e| matches!(e, Event::GrantAwarded { .. }))
        && accepted(|e| matches!(e, Event::PaymentMade { .. }))
        && accepted(|e| matches!(e, Event::RefundReceived { .. }))
        && accepted(|e| matches!(e, Event::GrantSettled { .. }))
    {
        tally.full_sequences += 1;
    }
    tally.last_payments += play.last_payments;
    tally.releasing_refunds += play.releasing_refunds;
}

#[test]
fn random_command_sequences_keep_every_invariant() {
    let config = Config {
        cases: SEQUENCES,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::with_source_file(file!())
    };
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&sequence(), |ops| {
        play(&ops, &mut tally.borrow_mut());
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!("{reason}\nminimal failing sequence: {ops:#?}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }

    // A property that only ever saw rejections would prove nothing.
    let tally = tally.into_inner();
    eprintln!("accepted: {:?}", tally.accepted);
    eprintln!("rejected: {:?}", tally.rejected);
    eprintln!(
        "sequences with award, payment, refund and settlement: {} of {SEQUENCES}; last payments: {}; releasing refunds: {}",
        tally.full_sequences, tally.last_payments, tally.releasing_refunds
    );
    let sequences = SEQUENCES as usize;
    for name in [
        "PledgeContribution",
        "RecordReceipt",
        "ReducePledge",
        "SubmitApplication",
        "AwardGrant",
        "RejectApplication",
        "WithdrawApplication",
        "ReduceGrant",
        "WithdrawGrant",
        "SettleGrant",
        "MakePayment",
        "RecordRefund",
        "CloseRound",
    ] {
        let accepted = tally.accepted.get(name).copied().unwrap_or(0);
        assert!(accepted >= sequences / 4, "only {accepted} {name} accepted in {sequences} sequences");
    }
    assert!(tally.full_sequences >= sequences / 4, "too few sequences went the whole way");
    assert!(tally.last_payments >= sequences / 8, "too few grants were paid in full");
    assert!(tally.releasing_refunds >= sequences / 8, "too few refunds on settled or withdrawn grants");
    let codes: BTreeSet<_> = tally.rejected.keys().collect();
    assert!(codes.len() >= 20, "only {} kinds of rejection seen: {codes:?}", codes.len());
}

// ----- figures as of a business date -----

/// Business-date views per sequence: one sequence is a few milliseconds.
const DATED_SEQUENCES: u32 = 200;

/// The accepted events of a sequence, without the per-step checks above.
fn accepted_events(ops: &[Op]) -> Vec<Event> {
    let mut state = FundState::default();
    let mut log = Vec::new();
    for op in ops {
        if let Ok(events) = decide(&state, &command(&state, op), &ctx()) {
            for event in events {
                state.evolve(&event);
                log.push(event);
            }
        }
    }
    log
}

/// The event with its business date (if it has one) set to `date`.
fn redate(mut event: Event, date: Date) -> Event {
    match &mut event {
        Event::ContributionPledged { pledged_on: at, .. }
        | Event::PledgeReduced { reduced_on: at, .. }
        | Event::ContributionReceived { value_date: at, .. }
        | Event::RoundClosed { closed_on: at, .. }
        | Event::ApplicationSubmitted { submitted_on: at, .. }
        | Event::ApplicationWithdrawn { withdrawn_on: at, .. }
        | Event::ApplicationRejected { decided_on: at, .. }
        | Event::GrantAwarded { decided_on: at, .. }
        | Event::GrantReduced { decided_on: at, .. }
        | Event::GrantWithdrawn { decided_on: at, .. }
        | Event::GrantSettled { decided_on: at, .. }
        | Event::PaymentMade { value_date: at, .. }
        | Event::RefundReceived { value_date: at, .. } => *at = date,
        Event::FundOpened { .. } | Event::PartnerAdmitted { .. } | Event::RoundOpened { .. } => {}
    }
    event
}

/// A round's counts (received, awarded, rejected, withdrawn, pending), its
/// amounts in cents (requested, awarded, committed) and its closing date.
type RoundFigures = ([u32; 5], [i128; 3], Option<Date>);

/// The figures a business-date view and a state have in common, as signed
/// cents: per pot, per round, and the grant counts.
#[derive(Debug, PartialEq, Eq)]
struct Figures {
    pots: BTreeMap<PotKey, [i128; 6]>,
    rounds: BTreeMap<RoundId, RoundFigures>,
    grants: (u32, u32),
}

fn figures_of_state(state: &FundState) -> Figures {
    let signed = |a: Amount| i128::from(a.minor());
    let pots = state
        .pots
        .iter()
        .map(|(k, p)| (k.clone(), [p.pledged, p.pledge_reduced, p.received, p.awarded, p.paid, p.refunded].map(signed)))
        .collect();
    let rounds = state
        .rounds
        .iter()
        .map(|(id, r)| {
            let counts = [
                r.applications_received,
                r.applications_awarded,
                r.applications_rejected,
                r.applications_withdrawn,
                r.applications_pending(),
            ];
            (id.clone(), (counts, [r.amount_requested, r.amount_awarded, r.amount_committed].map(signed), r.closed_on))
        })
        .collect();
    let grants: Vec<&Grant> = state.applications.values().filter_map(|a| a.grant.as_ref()).collect();
    let active = grants.iter().filter(|g| g.status == GrantStatus::Active).count();
    Figures { pots, rounds, grants: (grants.len() as u32, active as u32) }
}

fn figures_of_view(view: &dated::DatedView) -> Figures {
    let pots = view
        .pots
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                [p.pledged, p.pledge_reduced, p.received, p.awarded, p.paid, p.refunded].map(SignedAmount::minor),
            )
        })
        .collect();
    let rounds = view
        .rounds
        .iter()
        .map(|(id, r)| {
            let counts = [
                r.applications_received,
                r.applications_awarded,
                r.applications_rejected,
                r.applications_withdrawn,
                r.applications_pending,
            ];
            let money =
                [SignedAmount::from(r.amount_requested), SignedAmount::from(r.amount_awarded), r.amount_committed]
                    .map(SignedAmount::minor);
            (id.clone(), (counts, money, r.closed_on))
        })
        .collect();
    Figures { pots, rounds, grants: (view.grants, view.grants_active) }
}

/// Business-date views of random histories: with business dates in
/// recording order, the view as of any date equals a replay of the events
/// up to that date; with dates in any order, no view panics, the awards
/// attributed to pots always equal the rounds' commitments, and the views
/// before the first date and after the last are empty and live.
#[test]
fn business_date_views_agree_with_replay_and_never_panic() {
    let config = Config {
        cases: DATED_SEQUENCES,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::with_source_file(file!())
    };
    let steps = proptest::collection::vec(0i32..4, 256);
    let mut runner = TestRunner::new(config);
    let negative_seen = RefCell::new(false);
    let result = runner.run(&(sequence(), steps, proptest::bool::ANY), |(ops, steps, ordered)| {
        let log = accepted_events(&ops);
        let start = day("2024-01-01").days_since_epoch();
        // Ordered: each event a few days after the one before (or the same
        // day). Otherwise: any day within about three months.
        let mut offset = 0;
        let dates: Vec<Date> = (0..log.len())
            .map(|i| {
                offset = if ordered {
                    offset + steps[i % steps.len()]
                } else {
                    steps[i % steps.len()] * 29 + (i as i32 % 7)
                };
                Date::from_days_since_epoch(start + offset)
            })
            .collect();
        let log: Vec<Event> = log.into_iter().zip(&dates).map(|(e, d)| redate(e, *d)).collect();
        // Dates are facts like any other: the live state carries them too.
        let mut state = FundState::default();
        for event in &log {
            state.evolve(event);
        }
        let last = Date::from_days_since_epoch(start + offset.max(120) + 1);

        // After every date: the live figures. Before every date: nothing moved.
        prop_assert_eq!(figures_of_view(&dated::DatedView::fold(last, &log)), figures_of_state(&state));
        let before = dated::DatedView::fold(Date::from_days_since_epoch(start - 1), &log);
        prop_assert!(before.pots.is_empty());
        prop_assert_eq!(before.grants, 0);
        prop_assert!(before.rounds.values().all(|r| r.applications_received == 0 && r.amount_committed.minor() == 0));

        for d in (start - 1)..=(start + offset + 1) {
            let date = Date::from_days_since_epoch(d);
            let view = dated::DatedView::fold(date, &log);
            let attributed: i128 = view.pots.values().map(|p| p.awarded.minor()).sum();
            let committed: i128 = view.rounds.values().map(|r| r.amount_committed.minor()).sum();
            prop_assert_eq!(attributed, committed, "awards on pots and on rounds as of {}", date);
            prop_assert!(view.grants_active <= view.grants);
            for r in view.rounds.values() {
                prop_assert!(r.applications_pending <= r.applications_received);
            }
            if view.pots.values().any(|p| p.open_commitments().is_negative() || p.available().is_negative()) {
                *negative_seen.borrow_mut() = true;
            }
            if ordered {
                // The events dated on or before D are a prefix of the log
                // (events without a date go with the ones before them).
                let cut = log.iter().zip(&dates).position(|(e, at)| dated::business_date(e).is_some() && *at > date);
                let mut replayed = FundState::default();
                for event in &log[..cut.unwrap_or(log.len())] {
                    replayed.evolve(event);
                }
                let mut expected = figures_of_state(&replayed);
                // Rounds opened after the cut are listed, with nothing in them yet.
                for (id, r) in &view.rounds {
                    expected.rounds.entry(id.clone()).or_insert(([0; 5], [0; 3], None));
                    prop_assert!(r.applications_received == 0 || replayed.rounds.contains_key(id));
                }
                prop_assert_eq!(figures_of_view(&view), expected, "as of {}", date);
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => panic!("{reason}\nminimal failing input: {input:#?}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
    assert!(negative_seen.into_inner(), "no history ever showed a figure out of order; the dates are not mixed enough");
}
