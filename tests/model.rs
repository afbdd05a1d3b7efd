//! A reference model of the fund's money, compared with the ledger after
//! every command of long random sequences, invalid commands included.
//!
//! The model is written from the product brief, not from `decide`: plain
//! maps and `i128` cents, one rule per line, no attribution (it keeps fund
//! totals, which do not depend on how an award is split over the partners,
//! and per partner only what a partner alone moves: pledged and received).
//! It predicts whether each command is accepted — amounts (positive, at
//! most two decimals, at most EUR 1,000,000,000.00, in euros), overdrafts
//! (a receipt or reduction beyond the outstanding pledge, an award beyond
//! the money available, the round's ceiling or maximum or the amount
//! requested, a payment beyond what is open, a refund beyond what was paid,
//! a settlement outside net paid … amount), unknown partners, rounds and
//! applications, and the state machine of an application and its grant —
//! and what every figure is afterwards.
//!
//! Sequences run through the pure domain fold (`decide` + `evolve`, as the
//! writer runs them), and one long sequence through a real `Ledger` in a
//! temporary directory, compared with its projections after every
//! acknowledged or refused command and with a replay at the end.

// Amounts in cents are written as on a statement: `15_000_00` is
// EUR 15,000.00, euros grouped by thousands and then the cents.
#![allow(clippy::inconsistent_digit_grouping)]

use fundledger::domain::state::{ApplicationStatus, FundState, GrantStatus};
use fundledger::domain::*;
use fundledger::ledger::{CommandError, CommandRequest, Ledger, LedgerConfig};
use fundledger::projections::Projections;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, FileFailurePersistence, TestError, TestRunner};
use std::collections::BTreeMap;

const PARTNERS: [&str; 3] = ["p0", "p1", "p2"];
const ROUNDS: [&str; 2] = ["r0", "r1"];
const APPLICATIONS: usize = 16;
/// Random sequences through the pure fold, and their longest length.
const SEQUENCES: u32 = 150;
const COMMANDS_MAX: usize = 200;
/// The sequence through a real ledger (one fsync per command).
const LEDGER_COMMANDS: usize = 300;
/// The largest amount one command may carry, in cents (the brief's "absurd
/// magnitudes" start above EUR 1,000,000,000.00).
const AMOUNT_MAX_CENTS: i128 = 1_000_000_000 * 100;

// ------------------------------------------------------------------ the model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppStatus {
    Pending,
    Withdrawn,
    Rejected,
    Awarded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GrantState {
    Active,
    Settled,
    Withdrawn,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GrantM {
    amount: i128,
    paid: i128,
    refunded: i128,
    state: GrantState,
}

impl GrantM {
    fn net_paid(&self) -> i128 {
        self.paid - self.refunded
    }
    fn open(&self) -> i128 {
        self.amount - self.net_paid()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct AppM {
    round: String,
    requested: i128,
    status: AppStatus,
    grant: Option<GrantM>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RoundM {
    ceiling: i128,
    grant_max: i128,
    closed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PartnerM {
    pledged: i128,
    received: i128,
}

#[derive(Clone, Debug, Default)]
struct Model {
    opened: bool,
    partners: BTreeMap<String, PartnerM>,
    rounds: BTreeMap<String, RoundM>,
    apps: BTreeMap<String, AppM>,
}

impl Model {
    fn received(&self) -> i128 {
        self.partners.values().map(|p| p.received).sum()
    }
    fn grants(&self) -> impl Iterator<Item = &GrantM> {
        self.apps.values().filter_map(|a| a.grant.as_ref())
    }
    /// Awarded and not released: the grants' current amounts.
    fn awarded(&self) -> i128 {
        self.grants().map(|g| g.amount).sum()
    }
    /// Received and not awarded: what can still be granted.
    fn available(&self) -> i128 {
        self.received() - self.awarded()
    }
    fn committed(&self, round: &str) -> i128 {
        self.apps.values().filter(|a| a.round == round).filter_map(|a| a.grant.as_ref()).map(|g| g.amount).sum()
    }

    /// Whether `op` (with its amount resolved to `cents`, `None` when the
    /// amount is malformed) is accepted; applies it if so.
    fn apply(&mut self, op: &Op, cents: Option<i128>) -> bool {
        if let Op::OpenFund = op {
            let accepted = !self.opened;
            self.opened = true;
            return accepted;
        }
        if !self.opened {
            return false;
        }
        // A positive amount within bounds, exactly in cents.
        let amount = cents.filter(|&c| c > 0 && c <= AMOUNT_MAX_CENTS);
        let amount_or_zero = cents.filter(|&c| (0..=AMOUNT_MAX_CENTS).contains(&c));
        match op {
            Op::OpenFund => unreachable!(),
            // A partner is admitted once.
            Op::Admit(p) if self.partners.contains_key(PARTNERS[*p]) => false,
            Op::Admit(p) => {
                self.partners.insert(PARTNERS[*p].into(), PartnerM::default());
                true
            }
            Op::Pledge(p, _) => {
                let (Some(partner), Some(a)) = (self.partners.get_mut(PARTNERS[*p]), amount) else { return false };
                partner.pledged += a;
                true
            }
            Op::ReducePledge(p, _) | Op::Receipt(p, _) => {
                let Some(partner) = self.partners.get_mut(PARTNERS[*p]) else { return false };
                let Some(a) = amount.filter(|&a| a <= partner.pledged - partner.received) else { return false };
                match op {
                    Op::ReducePledge(..) => partner.pledged -= a,
                    _ => partner.received += a,
                }
                true
            }
            Op::OpenRound(r, ..) => {
                // The grant maximum comes in `cents`, the ceiling in the op.
                let Op::OpenRound(_, ceiling, _) = op else { unreachable!() };
                let ceiling = Some(*ceiling).filter(|&c| c > 0 && c <= AMOUNT_MAX_CENTS);
                match (self.rounds.contains_key(ROUNDS[*r]), ceiling, amount) {
                    (false, Some(ceiling), Some(grant_max)) if grant_max <= ceiling => {
                        self.rounds.insert(ROUNDS[*r].into(), RoundM { ceiling, grant_max, closed: false });
                        true
                    }
                    _ => false,
                }
            }
            Op::CloseRound(r) => match self.rounds.get_mut(ROUNDS[*r]) {
                Some(round) if !round.closed => {
                    round.closed = true;
                    true
                }
                _ => false,
            },
            Op::Submit(a, r, _) => {
                let id = app_id(*a);
                let Some(round) = self.rounds.get(ROUNDS[*r]) else { return false };
                match amount {
                    Some(requested)
                        if !self.apps.contains_key(&id) && !round.closed && requested <= round.grant_max =>
                    {
                        let app = AppM { round: ROUNDS[*r].into(), requested, status: AppStatus::Pending, grant: None };
                        self.apps.insert(id, app);
                        true
                    }
                    _ => false,
                }
            }
            Op::Withdraw(a) | Op::Reject(a) => {
                let Some(app) = self.apps.get(&app_id(*a)) else { return false };
                let round_open = !self.rounds[&app.round].closed;
                if app.status != AppStatus::Pending || matches!(op, Op::Reject(_)) && !round_open {
                    return false;
                }
                let app = self.apps.get_mut(&app_id(*a)).expect("there");
                app.status = if matches!(op, Op::Reject(_)) { AppStatus::Rejected } else { AppStatus::Withdrawn };
                true
            }
            Op::Award(a, _) => {
                let Some(app) = self.apps.get(&app_id(*a)) else { return false };
                let round = &self.rounds[&app.round];
                let Some(x) = amount else { return false };
                let fits = app.status == AppStatus::Pending
                    && !round.closed
                    && x <= app.requested
                    && x <= round.grant_max
                    && x <= round.ceiling - self.committed(&app.round)
                    && x <= self.available();
                if fits {
                    let app = self.apps.get_mut(&app_id(*a)).expect("there");
                    app.status = AppStatus::Awarded;
                    app.grant = Some(GrantM { amount: x, paid: 0, refunded: 0, state: GrantState::Active });
                }
                fits
            }
            Op::ReduceGrant(a, _) | Op::WithdrawGrant(a) | Op::Settle(a, _) | Op::Pay(a, _) | Op::Refund(a, _) => {
                let Some(grant) = self.apps.get_mut(&app_id(*a)).and_then(|app| app.grant.as_mut()) else {
                    return false;
                };
                let active = grant.state == GrantState::Active;
                match op {
                    // Less money for the grant, never all of it: that is a withdrawal.
                    Op::ReduceGrant(..) => match amount {
                        Some(x) if active && x <= grant.open() && x != grant.amount => grant.amount -= x,
                        _ => return false,
                    },
                    // What is not paid goes back to the partners.
                    Op::WithdrawGrant(_) if active => {
                        grant.amount = grant.net_paid();
                        grant.state = GrantState::Withdrawn;
                    }
                    // The final amount: no more than awarded, no less than paid.
                    Op::Settle(..) => match amount_or_zero {
                        Some(f) if active && f <= grant.amount && f >= grant.net_paid() => {
                            grant.amount = f;
                            grant.state = GrantState::Settled;
                        }
                        _ => return false,
                    },
                    // No payment on a withdrawn grant, nor beyond what is open.
                    Op::Pay(..) => match amount {
                        Some(x) if grant.state != GrantState::Withdrawn && x <= grant.open() => grant.paid += x,
                        _ => return false,
                    },
                    // No refund beyond what was paid; on a closed grant it
                    // goes back to the partners.
                    Op::Refund(..) => match amount {
                        Some(x) if x <= grant.net_paid() => {
                            grant.refunded += x;
                            if !active {
                                grant.amount -= x;
                            }
                        }
                        _ => return false,
                    },
                    _ => return false,
                }
                true
            }
        }
    }
}

fn app_id(n: usize) -> String {
    format!("a{n}")
}

// ------------------------------------------------------------------ what is generated

/// An amount: cents, per mille of the figure that bounds the command in
/// the model, or malformed.
#[derive(Clone, Copy, Debug)]
enum Amt {
    Cents(i64),
    PerMille(u16),
    Bad(u8),
}

#[derive(Clone, Debug)]
enum Op {
    OpenFund,
    Admit(usize),
    Pledge(usize, Amt),
    ReducePledge(usize, Amt),
    Receipt(usize, Amt),
    /// Round, ceiling in cents, grant maximum.
    OpenRound(usize, i128, Amt),
    CloseRound(usize),
    Submit(usize, usize, Amt),
    Withdraw(usize),
    Reject(usize),
    Award(usize, Amt),
    ReduceGrant(usize, Amt),
    WithdrawGrant(usize),
    Settle(usize, Amt),
    Pay(usize, Amt),
    Refund(usize, Amt),
}

fn amt() -> impl Strategy<Value = Amt> {
    prop_oneof![
        6 => (0u16..=1100).prop_map(Amt::PerMille),
        2 => prop_oneof![Just(1i64), 1i64..=2_000_000, Just(100_000_000_000), Just(100_000_000_001)].prop_map(Amt::Cents),
        1 => (0u8..5).prop_map(Amt::Bad),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PARTNERS.len();
    let r = 0..ROUNDS.len();
    // From APPLICATIONS on: one the command fits (see `resolve`).
    let a = 0..2 * APPLICATIONS;
    prop_oneof![
        1 => Just(Op::OpenFund),
        1 => p.clone().prop_map(Op::Admit),
        12 => (p.clone(), amt()).prop_map(|(p, x)| Op::Pledge(p, x)),
        6 => (p.clone(), amt()).prop_map(|(p, x)| Op::ReducePledge(p, x)),
        12 => (p, amt()).prop_map(|(p, x)| Op::Receipt(p, x)),
        3 => (r.clone(), prop_oneof![Just(3_000_000i128), 1i128..=10_000_000], amt())
            .prop_map(|(r, c, x)| Op::OpenRound(r, c, x)),
        1 => r.clone().prop_map(Op::CloseRound),
        18 => (a.clone(), r, amt()).prop_map(|(a, r, x)| Op::Submit(a, r, x)),
        6 => a.clone().prop_map(Op::Withdraw),
        6 => a.clone().prop_map(Op::Reject),
        24 => (a.clone(), amt()).prop_map(|(a, x)| Op::Award(a, x)),
        9 => (a.clone(), amt()).prop_map(|(a, x)| Op::ReduceGrant(a, x)),
        6 => a.clone().prop_map(Op::WithdrawGrant),
        9 => (a.clone(), amt()).prop_map(|(a, x)| Op::Settle(a, x)),
        18 => (a.clone(), amt()).prop_map(|(a, x)| Op::Pay(a, x)),
        15 => (a, amt()).prop_map(|(a, x)| Op::Refund(a, x)),
    ]
}

/// Mostly an opened fund with partners and money; sometimes nothing at all.
fn sequence() -> impl Strategy<Value = Vec<Op>> {
    (proptest::bool::weighted(0.9), proptest::collection::vec(op(), 1..COMMANDS_MAX)).prop_map(|(opened, ops)| {
        let mut start = Vec::new();
        if opened {
            start.push(Op::OpenFund);
            for p in 0..2 {
                start.push(Op::Admit(p));
                start.push(Op::Pledge(p, Amt::Cents(100_000_00)));
                start.push(Op::Receipt(p, Amt::PerMille(800)));
            }
            start.push(Op::OpenRound(0, 100_000_00, Amt::Cents(15_000_00)));
            start.push(Op::OpenRound(1, 30_000_00, Amt::Cents(10_000_00)));
        }
        [start, ops].concat()
    })
}

// ------------------------------------------------------------------ from ops to commands

/// The figure a per-mille amount is taken of, in the model's state.
fn bound(model: &Model, op: &Op) -> i128 {
    let partner = |p: usize| model.partners.get(PARTNERS[p]).cloned().unwrap_or_default();
    let grant = |a: usize| model.apps.get(&app_id(a)).and_then(|app| app.grant.clone());
    match op {
        Op::Pledge(..) => 50_000_00,
        Op::ReducePledge(p, _) | Op::Receipt(p, _) => partner(*p).pledged - partner(*p).received,
        Op::OpenRound(_, ceiling, _) => *ceiling,
        Op::Submit(_, r, _) => model.rounds.get(ROUNDS[*r]).map_or(10_000_00, |r| r.grant_max),
        Op::Award(a, _) => model.apps.get(&app_id(*a)).map_or(5_000_00, |app| app.requested),
        Op::ReduceGrant(a, _) | Op::Pay(a, _) => grant(*a).map_or(1_000_00, |g| g.open()),
        Op::Settle(a, _) => grant(*a).map_or(1_000_00, |g| g.amount),
        Op::Refund(a, _) => grant(*a).map_or(1_000_00, |g| g.net_paid()),
        _ => 0,
    }
}

/// An application index from `APPLICATIONS` on stands for one the command
/// fits in the model: a pending one to decide, one with a grant to pay,
/// refund, reduce, settle or withdraw (any, when none fits).
fn resolve(model: &Model, op: &Op) -> Op {
    let pick = |n: usize, fits: &dyn Fn(&AppM) -> bool| -> usize {
        if n < APPLICATIONS {
            return n;
        }
        let fitting: Vec<usize> = (0..APPLICATIONS).filter(|&i| model.apps.get(&app_id(i)).is_some_and(fits)).collect();
        if fitting.is_empty() {
            n % APPLICATIONS
        } else {
            fitting[n % fitting.len()]
        }
    };
    let pending = |a: &AppM| a.status == AppStatus::Pending;
    let granted = |a: &AppM| a.grant.is_some();
    let mut op = op.clone();
    match &mut op {
        Op::Submit(a, ..) => *a = pick(*a, &|_| false),
        Op::Withdraw(a) | Op::Reject(a) | Op::Award(a, _) => *a = pick(*a, &pending),
        Op::ReduceGrant(a, _) | Op::WithdrawGrant(a) | Op::Settle(a, _) | Op::Pay(a, _) | Op::Refund(a, _) => {
            *a = pick(*a, &granted)
        }
        _ => {}
    }
    op
}

fn amount_of(op: &Op) -> Option<Amt> {
    match op {
        Op::Pledge(_, x)
        | Op::ReducePledge(_, x)
        | Op::Receipt(_, x)
        | Op::OpenRound(_, _, x)
        | Op::Submit(_, _, x)
        | Op::Award(_, x)
        | Op::ReduceGrant(_, x)
        | Op::Settle(_, x)
        | Op::Pay(_, x)
        | Op::Refund(_, x) => Some(*x),
        _ => None,
    }
}

/// The amount as the client sends it, and what it is in cents (`None`
/// when it is not an amount in euro cents at all).
fn money(model: &Model, op: &Op) -> (MoneyInput, Option<i128>) {
    let eur = |text: &str| MoneyInput::parse(text, "EUR").expect("well-formed");
    let cents =
        |c: i128| (eur(&format!("{}{}.{:02}", if c < 0 { "-" } else { "" }, c.abs() / 100, c.abs() % 100)), Some(c));
    match amount_of(op).unwrap_or(Amt::Cents(1)) {
        Amt::Cents(c) => cents(i128::from(c)),
        Amt::PerMille(m) => cents(bound(model, op) * i128::from(m) / 1000),
        Amt::Bad(0) => (eur("12.345"), None),
        Amt::Bad(1) => (eur("-5.00"), Some(-500)),
        Amt::Bad(2) => (eur("0"), Some(0)),
        Amt::Bad(3) => (eur("1000000000.01"), Some(AMOUNT_MAX_CENTS + 1)),
        Amt::Bad(_) => (MoneyInput::parse("5.00", "USD").expect("well-formed"), None),
    }
}

fn date(text: &str) -> Date {
    Date::parse(text).expect("a date")
}

fn command(op: &Op, amount: MoneyInput) -> Command {
    let partner = |p: usize| PartnerId::new(PARTNERS[p]).expect("valid");
    let round = |r: usize| RoundId::new(ROUNDS[r]).expect("valid");
    let app = |a: usize| ApplicationId::new(&app_id(a)).expect("valid");
    let today = date("2024-03-01");
    let reason = || "because".to_string();
    match op {
        Op::OpenFund => Command::OpenFund { name: "Loket D".into(), currency: Currency::eur() },
        Op::Admit(p) => Command::AdmitPartner {
            partner: partner(*p),
            name: PARTNERS[*p].to_uppercase(),
            organisation_id: "NL-KVK-41179132".into(),
        },
        Op::Pledge(p, _) => {
            Command::PledgeContribution { partner: partner(*p), amount, earmark: None, pledged_on: today }
        }
        Op::ReducePledge(p, _) => {
            Command::ReducePledge { partner: partner(*p), amount, earmark: None, reason: reason(), reduced_on: today }
        }
        Op::Receipt(p, _) => Command::RecordReceipt {
            partner: partner(*p),
            amount,
            earmark: None,
            value_date: today,
            bank_reference: "NL-REF".into(),
        },
        Op::OpenRound(r, ceiling, _) => Command::OpenRound {
            round: round(*r),
            name: format!("Round {r}"),
            budget_ceiling: MoneyInput::parse(&format!("{}.{:02}", ceiling / 100, ceiling % 100), "EUR")
                .expect("well-formed"),
            grant_max: amount,
            opens_on: date("2024-01-01"),
            closes_on: date("2024-12-31"),
        },
        Op::CloseRound(r) => Command::CloseRound { round: round(*r), closed_on: today },
        Op::Submit(a, r, _) => Command::SubmitApplication {
            application: app(*a),
            round: round(*r),
            applicant: Applicant {
                name: "Stichting Buurtkracht".into(),
                organisation_id: Default::default(),
                place: "Zwolle".into(),
                country: "NL".into(),
            },
            title: "Buurtgesprekken".into(),
            description: String::new(),
            amount_requested: amount,
            submitted_on: today,
        },
        Op::Withdraw(a) => Command::WithdrawApplication { application: app(*a), reason: reason(), withdrawn_on: today },
        Op::Reject(a) => Command::RejectApplication { application: app(*a), reason: reason(), decided_on: today },
        Op::Award(a, _) => Command::AwardGrant { application: app(*a), amount, reason: reason(), decided_on: today },
        Op::ReduceGrant(a, _) => {
            Command::ReduceGrant { application: app(*a), amount, reason: reason(), decided_on: today }
        }
        Op::WithdrawGrant(a) => Command::WithdrawGrant { application: app(*a), reason: reason(), decided_on: today },
        Op::Settle(a, _) => {
            Command::SettleGrant { application: app(*a), final_amount: amount, reason: reason(), decided_on: today }
        }
        Op::Pay(a, _) => {
            Command::MakePayment { application: app(*a), amount, value_date: today, bank_reference: "PAY".into() }
        }
        Op::Refund(a, _) => {
            Command::RecordRefund { application: app(*a), amount, value_date: today, bank_reference: "BACK".into() }
        }
    }
}

/// The role that may send the command: the model is about money and the
/// state machine, not about access (tests/access.rs, tests/properties.rs).
fn actor(command: &Command) -> Actor {
    let role = match command {
        Command::OpenFund { .. }
        | Command::AdmitPartner { .. }
        | Command::OpenRound { .. }
        | Command::CloseRound { .. } => Role::Admin,
        Command::PledgeContribution { partner, .. } | Command::ReducePledge { partner, .. } => {
            Role::Partner(partner.clone())
        }
        _ => Role::Officer,
    };
    let principal = match &role {
        Role::Admin => "admin".to_string(),
        Role::Partner(p) => format!("treasurer-{p}"),
        _ => "officer-anna".to_string(),
    };
    Actor { principal: PrincipalId::new(&principal).expect("valid"), role }
}

// ------------------------------------------------------------------ comparing

/// The figures both sides can state, in cents.
#[derive(Debug, PartialEq, Eq)]
struct View {
    opened: bool,
    /// Per partner: pledged, received.
    partners: BTreeMap<String, (i128, i128)>,
    /// Fund totals: pledged, received, outstanding, awarded, paid, refunded,
    /// available, cash held.
    totals: [i128; 8],
    /// Per round: ceiling, maximum, closed, committed, and the applications
    /// received, pending, awarded, rejected, withdrawn.
    rounds: BTreeMap<String, (i128, i128, bool, i128, [u32; 5])>,
    /// Per application: status, amount requested, and its grant: amount,
    /// paid, refunded, state.
    apps: BTreeMap<String, (AppStatus, i128, Option<GrantFigures>)>,
}

/// A grant's amount, paid, refunded, and state.
type GrantFigures = (i128, i128, i128, GrantState);

fn view_of_model(m: &Model) -> View {
    let pledged: i128 = m.partners.values().map(|p| p.pledged).sum();
    let received = m.received();
    let paid: i128 = m.grants().map(|g| g.paid).sum();
    let refunded: i128 = m.grants().map(|g| g.refunded).sum();
    let awarded = m.awarded();
    let count = |round: &str, status: Option<AppStatus>| {
        m.apps.values().filter(|a| a.round == round && status.is_none_or(|s| a.status == s)).count() as u32
    };
    View {
        opened: m.opened,
        partners: m.partners.iter().map(|(id, p)| (id.clone(), (p.pledged, p.received))).collect(),
        totals: [
            pledged,
            received,
            pledged - received,
            awarded,
            paid,
            refunded,
            received - awarded,
            received - paid + refunded,
        ],
        rounds: m
            .rounds
            .iter()
            .map(|(id, r)| {
                let counts = [
                    count(id, None),
                    count(id, Some(AppStatus::Pending)),
                    count(id, Some(AppStatus::Awarded)),
                    count(id, Some(AppStatus::Rejected)),
                    count(id, Some(AppStatus::Withdrawn)),
                ];
                (id.clone(), (r.ceiling, r.grant_max, r.closed, m.committed(id), counts))
            })
            .collect(),
        apps: m
            .apps
            .iter()
            .map(|(id, a)| {
                let grant = a.grant.as_ref().map(|g| (g.amount, g.paid, g.refunded, g.state));
                (id.clone(), (a.status, a.requested, grant))
            })
            .collect(),
    }
}

fn view_of_state(s: &FundState) -> View {
    let c = |a: Amount| i128::from(a.minor());
    let pots = s.pots.values();
    let sum = |f: fn(&fundledger::domain::state::Pot) -> Amount| pots.clone().map(|p| c(f(p))).sum::<i128>();
    View {
        opened: s.fund.is_some(),
        partners: s
            .partners
            .keys()
            .map(|p| {
                let pot = s.pots.get(&PotKey { partner: p.clone(), earmark: None }).cloned().unwrap_or_default();
                (p.to_string(), (c(pot.pledged), c(pot.received)))
            })
            .collect(),
        totals: [
            sum(|p| p.pledged),
            sum(|p| p.received),
            sum(|p| p.outstanding()),
            sum(|p| p.awarded),
            sum(|p| p.paid),
            sum(|p| p.refunded),
            sum(|p| p.available()),
            sum(|p| p.cash_held()),
        ],
        rounds: s
            .rounds
            .iter()
            .map(|(id, r)| {
                let counts = [
                    r.applications_received,
                    r.applications_pending(),
                    r.applications_awarded,
                    r.applications_rejected,
                    r.applications_withdrawn,
                ];
                let figures =
                    (c(r.budget_ceiling), c(r.grant_max), r.closed_on.is_some(), c(r.amount_committed), counts);
                (id.to_string(), figures)
            })
            .collect(),
        apps: s
            .applications
            .iter()
            .map(|(id, a)| {
                let status = match a.status {
                    ApplicationStatus::Pending => AppStatus::Pending,
                    ApplicationStatus::Withdrawn => AppStatus::Withdrawn,
                    ApplicationStatus::Rejected => AppStatus::Rejected,
                    ApplicationStatus::Awarded => AppStatus::Awarded,
                };
                let grant = a.grant.as_ref().map(|g| {
                    let state = match g.status {
                        GrantStatus::Active => GrantState::Active,
                        GrantStatus::Settled => GrantState::Settled,
                        GrantStatus::Withdrawn => GrantState::Withdrawn,
                    };
                    (c(g.amount), c(g.paid), c(g.refunded), state)
                });
                (id.to_string(), (status, c(a.amount_requested), grant))
            })
            .collect(),
    }
}

/// Counts of what happened, so that a model that only ever saw refusals
/// cannot pass.
#[derive(Default)]
struct Tally {
    accepted: BTreeMap<&'static str, usize>,
    rejected: usize,
}

fn play(ops: &[Op], tally: &mut Tally) {
    let mut model = Model::default();
    let mut state = FundState::default();
    for (step, op) in ops.iter().enumerate() {
        let op = &resolve(&model, op);
        let (amount, cents) = money(&model, op);
        let command = command(op, amount);
        let expected = model.apply(op, cents);
        let outcome = decide(&state, &command, &Context { actor: actor(&command) });
        match &outcome {
            Ok(events) => events.iter().for_each(|e| state.evolve(e)),
            Err(_) => tally.rejected += 1,
        }
        assert_eq!(outcome.is_ok(), expected, "step {step}: {op:?} ({command:?}): the ledger says {outcome:?}");
        if expected {
            *tally.accepted.entry(command.name()).or_default() += 1;
        }
        assert_eq!(view_of_state(&state), view_of_model(&model), "step {step}: {op:?}");
    }
}

#[test]
fn the_domain_fold_agrees_with_the_reference_model() {
    let config = Config {
        cases: SEQUENCES,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::with_source_file(file!())
    };
    let tally = std::cell::RefCell::new(Tally::default());
    let result = TestRunner::new(config).run(&sequence(), |ops| {
        play(&ops, &mut tally.borrow_mut());
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!("{reason}\nminimal failing sequence: {ops:#?}"),
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
    let tally = tally.into_inner();
    eprintln!("accepted: {:?}; rejected: {}", tally.accepted, tally.rejected);
    for name in [
        "PledgeContribution",
        "ReducePledge",
        "RecordReceipt",
        "OpenRound",
        "CloseRound",
        "SubmitApplication",
        "WithdrawApplication",
        "RejectApplication",
        "AwardGrant",
        "ReduceGrant",
        "WithdrawGrant",
        "SettleGrant",
        "MakePayment",
        "RecordRefund",
    ] {
        let accepted = tally.accepted.get(name).copied().unwrap_or(0);
        assert!(accepted >= SEQUENCES as usize / 4, "only {accepted} {name} accepted in {SEQUENCES} sequences");
    }
    assert!(tally.rejected >= SEQUENCES as usize * 20, "too few refusals: {}", tally.rejected);
}

/// One long sequence through a real ledger: the writer, the log and the
/// projections agree with the model after every command, and a replay of
/// the log at the end gives the same figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_ledger_agrees_with_the_reference_model() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    // A fixed seed: the same sequence every run.
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut ops = Vec::new();
    while ops.len() < LEDGER_COMMANDS {
        let mut sequence = sequence().new_tree(&mut runner).unwrap().current();
        if ops.is_empty() && !matches!(sequence.first(), Some(Op::OpenFund)) {
            continue;
        }
        if !ops.is_empty() {
            sequence.retain(|op| !matches!(op, Op::OpenFund));
        }
        ops.extend(sequence);
    }
    let mut model = Model::default();
    let (mut accepted, mut rejected) = (0, 0);
    for (step, op) in ops.iter().enumerate() {
        let op = &resolve(&model, op);
        let (amount, cents) = money(&model, op);
        let command = command(op, amount);
        let expected = model.apply(op, cents);
        let actor = actor(&command);
        let request =
            CommandRequest { command: command.clone(), request_id: format!("m-{step}"), expected_version: None, actor };
        let outcome = ledger.submit(request).await;
        match &outcome {
            Ok(_) => accepted += 1,
            Err(CommandError::Rejected(_)) => rejected += 1,
            Err(other) => panic!("step {step}: {op:?}: not a business answer: {other}"),
        }
        assert_eq!(outcome.is_ok(), expected, "step {step}: {op:?} ({command:?}): the ledger says {outcome:?}");
        let live = view_of_state(&ledger.projections().state);
        assert_eq!(live, view_of_model(&model), "step {step}: {op:?}");
    }
    assert!(
        accepted > LEDGER_COMMANDS / 4 && rejected > LEDGER_COMMANDS / 10,
        "{accepted} accepted, {rejected} refused"
    );
    let replayed = Projections::replay(&ledger.log_reader(), ledger.head_seq()).unwrap();
    assert_eq!(view_of_state(&replayed.state), view_of_model(&model), "a replay of the log");
    ledger.shutdown().await;
}
