//! Property tests of the domain: random sequences of valid and invalid
//! commands over a small universe (three partners, two rounds, ten
//! applications, seven principals of every role including two officers),
//! each sent by a random actor, go through `decide`, and every accepted
//! event through `evolve`. After every step the design's invariants must
//! hold: shares add up, no pot figure goes negative, earmarks are respected,
//! rounds stay within their ceiling and maximum, grants pay no more than
//! their amount and refund no more than was paid, the journal balances and
//! reconciles with the pots, and replaying the log gives the same state.
//! And the access rules: a command whose actor's role may not send it is
//! refused and changes nothing; no award or payment above its round's
//! four-eyes threshold without a proposal by another officer; no decision,
//! approval or payment by an officer with a declared conflict of interest;
//! the active tokens are exactly those of the principals not revoked.
//!
//! Amounts are often a fraction of the figure that bounds them (the open
//! amount of a grant, the outstanding pledge, …) and most commands are sent
//! by someone allowed to, so that a good share of the commands is accepted;
//! the test also asserts at the end that awards, payments, refunds,
//! settlements, proposals, approvals and conflicts really happened.

// Amounts in cents are written as on a statement: `60_000_00` is
// EUR 60,000.00, euros grouped by thousands and then the cents.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use support::invariants::{decided_application, Invariants};
use support::permitted_role;

use fundledger::domain::dated;

use fundledger::domain::state::{Application, Grant, Pot};
use fundledger::domain::*;
use fundledger::projections::Projections;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestError, TestRunner};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

const PARTNERS: [&str; 3] = ["p0", "p1", "p2"];
const ROUNDS: [&str; 2] = ["r0", "r1"];
const APPLICATIONS_MAX: usize = 10;
/// Who acts: an admin, two officers (four eyes need two), a treasurer per
/// partner (in `PARTNERS` order) and an auditor. See `identity`.
const PRINCIPALS: [&str; 7] =
    ["admin", "officer-a", "officer-b", "treasurer-p0", "treasurer-p1", "treasurer-p2", "auditor"];
/// A principal id that the opening gives no access, for grants and
/// revocations of someone unknown.
const NEWCOMER: &str = "newcomer";
/// Token hashes are `[n; 32]` for `n` up to this: the opening hands out
/// 1 to 7, so a random grant often collides with a token in use.
const TOKEN_BYTE_MAX: u8 = 10;
/// Random commands after the opening ones, per sequence.
const SEQUENCE_COMMANDS_MAX: usize = 180;
/// Sequences per run: about 11 s in a debug build on a small machine.
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

/// Who sends an op's command.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// Someone whose role may send it; of the two officers, the one the
    /// number's parity picks, except that three approvals in four go to the
    /// officer who did not propose (the rest are self-approvals).
    Permitted(usize),
    /// The n-th of `PRINCIPALS`, whatever their role.
    Anyone(usize),
}

/// One step of a sequence: an op, and who sends it.
#[derive(Clone, Debug)]
struct Step {
    who: Who,
    op: Op,
}

/// What a step does. Thresholds are figures of the round's maximum per
/// grant; a grant of access names the `principal`-th of `PRINCIPALS` (one
/// past the end stands for `NEWCOMER`) and gives the role of the `role`-th.
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
    SetThresholds { round: usize, award_above: Option<Figure>, payment_above: Option<Figure> },
    GrantAccess { principal: usize, role: usize, token: u8 },
    RevokeAccess { principal: usize },
    ProposeAward { app: Pick, amount: Figure },
    ApproveAward { app: Pick },
    ProposePayment { app: Pick, amount: Figure },
    ApprovePayment { app: Pick },
    DeclareConflict { app: Pick },
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

/// Mostly a threshold somewhere below the maximum per grant; sometimes none.
fn threshold() -> impl Strategy<Value = Option<Figure>> {
    prop_oneof![4 => figure().prop_map(Some), 1 => Just(None)]
}

fn access() -> impl Strategy<Value = Op> {
    let principal = 0..=PRINCIPALS.len();
    prop_oneof![
        2 => (principal.clone(), 0..PRINCIPALS.len(), 1..=TOKEN_BYTE_MAX)
            .prop_map(|(principal, role, token)| Op::GrantAccess { principal, role, token }),
        1 => principal.prop_map(|principal| Op::RevokeAccess { principal }),
        1 => (round_index(), threshold(), threshold())
            .prop_map(|(round, award_above, payment_above)| Op::SetThresholds { round, award_above, payment_above }),
    ]
}

fn four_eyes() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (pick(), figure()).prop_map(|(app, amount)| Op::ProposeAward { app, amount }),
        4 => pick().prop_map(|app| Op::ApproveAward { app }),
        4 => (pick(), figure()).prop_map(|(app, amount)| Op::ProposePayment { app, amount }),
        4 => pick().prop_map(|app| Op::ApprovePayment { app }),
        1 => pick().prop_map(|app| Op::DeclareConflict { app }),
    ]
}

/// Boxed, arm by arm: the nested strategy types are otherwise large enough
/// to overflow the test thread's stack in a debug build.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        11 => money_in().boxed(),
        2 => set_up().boxed(),
        19 => applications().boxed(),
        18 => grants().boxed(),
        2 => access().boxed(),
        6 => four_eyes().boxed(),
    ]
}

/// Nineteen times in twenty someone allowed to send the command.
fn who() -> impl Strategy<Value = Who> {
    prop_oneof![19 => (0..4usize).prop_map(Who::Permitted), 1 => (0..PRINCIPALS.len()).prop_map(Who::Anyone)]
}

fn step(op: impl Strategy<Value = Op>) -> impl Strategy<Value = Step> {
    (who(), op).prop_map(|(who, op)| Step { who, op })
}

/// A proposal right away followed by an approval, most often by the other
/// officer: without them, approvals would mostly find nothing to approve.
fn proposal_and_approval() -> impl Strategy<Value = Vec<Step>> {
    let award =
        (pick(), figure()).prop_map(|(app, amount)| [Op::ProposeAward { app, amount }, Op::ApproveAward { app }]);
    let payment =
        (pick(), figure()).prop_map(|(app, amount)| [Op::ProposePayment { app, amount }, Op::ApprovePayment { app }]);
    (who(), who(), prop_oneof![award, payment]).prop_map(|(proposer, approver, [propose, approve])| {
        vec![Step { who: proposer, op: propose }, Step { who: approver, op: approve }]
    })
}

/// Mostly one step; now and then a proposal and its approval.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop_oneof![15 => step(op()).prop_map(|step| vec![step]), 2 => proposal_and_approval()]
}

/// The opening commands most sequences start with; a few sequences start
/// without them, so that commands on an unopened fund are tried as well.
/// Everyone gets access (token `[n + 1; 32]` for the n-th), and round 0
/// needs four eyes on awards above 5,000.00 and payments above 2,500.00;
/// round 1 starts without (random ops may set thresholds on either).
fn opening() -> Vec<Step> {
    let mut ops = vec![Op::OpenFund];
    ops.extend((0..PARTNERS.len()).map(|partner| Op::Admit { partner }));
    ops.extend((0..PRINCIPALS.len()).map(|n| Op::GrantAccess { principal: n, role: n, token: n as u8 + 1 }));
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
    ops.push(Op::SetThresholds {
        round: 0,
        award_above: Some(Figure::Cents(5_000_00)),
        payment_above: Some(Figure::Cents(2_500_00)),
    });
    ops.into_iter().map(|op| Step { who: Who::Permitted(0), op }).collect()
}

/// Mostly: the opening, some money coming in, some applications, then anything.
fn sequence() -> impl Strategy<Value = Vec<Step>> {
    (
        proptest::bool::weighted(0.95),
        proptest::collection::vec((who(), who(), contribution()), 0..6),
        proptest::collection::vec(step(submission()), 0..10),
        proptest::collection::vec(steps(), 1..SEQUENCE_COMMANDS_MAX),
    )
        .prop_map(|(opened, money, submissions, ops)| {
            let start = if opened { opening() } else { Vec::new() };
            let money = money.into_iter().flat_map(|(pledger, receiver, ops)| {
                [pledger, receiver].into_iter().zip(ops).map(|(who, op)| Step { who, op })
            });
            [start, money.collect(), submissions, ops.concat()].concat()
        })
}

// ----- from generated ops to commands -----

fn partner(index: usize) -> PartnerId {
    PartnerId::new(PARTNERS[index]).unwrap()
}

fn principal(index: usize) -> PrincipalId {
    PrincipalId::new(PRINCIPALS.get(index).copied().unwrap_or(NEWCOMER)).unwrap()
}

/// The n-th of `PRINCIPALS` with its role.
fn identity(index: usize) -> Actor {
    let role = match index {
        0 => Role::Admin,
        1 | 2 => Role::Officer,
        3..=5 => Role::Partner(partner(index - 3)),
        _ => Role::Auditor,
    };
    Actor { principal: principal(index), role }
}

/// Whether `actor` declared a conflict of interest on the application
/// `command` decides on.
fn conflicted(state: &FundState, actor: &Actor, command: &Command) -> bool {
    decided_application(command)
        .and_then(|a| state.applications.get(a))
        .is_some_and(|a| a.conflicts.contains(actor.principal.as_str()))
}

/// The actor who sends `command` in the current state.
fn actor(state: &FundState, who: Who, command: &Command) -> Actor {
    let application = |a: &ApplicationId| state.applications.get(a);
    let proposer = match command {
        Command::ApproveAward { application: a, .. } => {
            application(a).and_then(|a| a.award_proposal.as_ref()).map(|p| p.proposed_by.clone())
        }
        Command::ApprovePayment { application: a } => application(a)
            .and_then(|a| a.grant.as_ref())
            .and_then(|g| g.payment_proposal.as_ref())
            .map(|p| p.proposed_by.clone()),
        _ => None,
    };
    match who {
        Who::Anyone(n) => identity(n),
        Who::Permitted(n) => match permitted_role(command) {
            Role::Admin => identity(0),
            Role::Officer => match proposer {
                Some(proposer) if n % 4 != 0 => {
                    let other = if proposer == PRINCIPALS[1] { 2 } else { 1 };
                    identity(other)
                }
                _ => identity(1 + n % 2),
            },
            Role::Partner(p) => identity(3 + PARTNERS.iter().position(|id| *id == p.as_str()).unwrap()),
            Role::Auditor => identity(6),
        },
    }
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
                    name: format!("Initiative {a}").into(),
                    organisation_id: Default::default(),
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
            // An application with an award proposal waits for its approval;
            // `Pick::Any` still tries a direct award on one now and then.
            let application = resolve(state, pick, |a| pending(a) && a.award_proposal.is_none());
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
            let application =
                resolve(state, pick, |a| with_grant(a, |g| !g.open().is_zero() && g.payment_proposal.is_none()));
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
        Op::SetThresholds { round: r, award_above, payment_above } => {
            let grant_max = state.rounds.get(&round(r)).map_or(eur(15_000), |r| r.grant_max);
            Command::SetApprovalThresholds {
                round: round(r),
                award_above: award_above.map(|f| money(&f, grant_max)),
                payment_above: payment_above.map(|f| money(&f, grant_max)),
            }
        }
        Op::GrantAccess { principal: p, role, token } => {
            Command::GrantAccess { principal: principal(p), role: identity(role).role, token_sha256: [token; 32] }
        }
        Op::RevokeAccess { principal: p } => Command::RevokeAccess { principal: principal(p), reason: reason() },
        Op::ProposeAward { app: pick, amount } => {
            let application = resolve(state, pick, |a| pending(a) && a.award_proposal.is_none());
            let requested = state.applications.get(&application).map_or(eur(10_000), |a| a.amount_requested);
            Command::ProposeAward {
                application,
                amount: money(&amount, requested),
                reason: reason(),
                proposed_on: today,
            }
        }
        Op::ApproveAward { app: pick } => Command::ApproveAward {
            application: resolve(state, pick, |a| a.award_proposal.is_some()),
            decided_on: today,
        },
        Op::ProposePayment { app: pick, amount } => {
            let application =
                resolve(state, pick, |a| with_grant(a, |g| !g.open().is_zero() && g.payment_proposal.is_none()));
            let open = grant(&application).map_or(eur(1_000), |g| g.open());
            Command::ProposePayment {
                bank_reference: format!("PAY-{application}"),
                application,
                amount: money(&amount, open),
                value_date: today,
            }
        }
        Op::ApprovePayment { app: pick } => Command::ApprovePayment {
            application: resolve(state, pick, |a| with_grant(a, |g| g.payment_proposal.is_some())),
        },
        Op::DeclareConflict { app: pick } => Command::DeclareConflict {
            application: resolve(state, pick, |_| true),
            reason: reason(),
            declared_on: today,
        },
    }
}

/// Commands that the rules must accept: the check that `decide` does not
/// refuse too much, where the invariants check that it does not accept too
/// much.
fn must_accept(state: &FundState, actor: &Actor, command: &Command) -> bool {
    if actor.role != permitted_role(command) || conflicted(state, actor, command) {
        return false;
    }
    let active = |p: &PrincipalId| state.principals.get(p).is_some_and(|p| !p.revoked);
    match command {
        // Access is given before the fund opens: `init` records the first admin.
        Command::GrantAccess { principal, role, token_sha256 } => {
            let partner_known = match role {
                Role::Partner(p) => state.partners.contains_key(p),
                _ => true,
            };
            // A token is never given twice, even after a revocation.
            let token_fresh = state.principals.values().all(|p| p.token_sha256 != *token_sha256);
            return !active(principal) && token_fresh && partner_known;
        }
        Command::RevokeAccess { principal, .. } => {
            let admins = state.principals.values().filter(|p| !p.revoked && p.role == Role::Admin).count();
            let last_admin = state.principals.get(principal).is_some_and(|p| p.role == Role::Admin) && admins == 1;
            return active(principal) && !last_admin;
        }
        _ => {}
    }
    let Some(currency) = state.currency() else { return false };
    let amount = |input: &MoneyInput| currency.to_amount(input, false).ok();
    let grant = |a: &ApplicationId| state.applications.get(a).and_then(|a| a.grant.as_ref());
    let round_of = |a: &ApplicationId| &state.rounds[&state.applications[a].round];
    let payable = |g: &Grant, a: Amount| g.status != GrantStatus::Withdrawn && a <= g.open();
    let within = |threshold: Option<Amount>, a: Amount| threshold.is_none_or(|t| a <= t);
    match command {
        Command::MakePayment { application, amount: input, .. } => {
            // The threshold counts the total paid (net) with this payment.
            matches!((grant(application), amount(input)), (Some(g), Some(a))
                if payable(g, a) && within(round_of(application).payment_four_eyes_above, g.net_paid().plus(a)))
        }
        Command::ProposePayment { application, amount: input, .. } => {
            matches!((grant(application), amount(input)), (Some(g), Some(a))
                if payable(g, a) && g.payment_proposal.is_none())
        }
        Command::ApprovePayment { application } => {
            let proposer_conflicted = |p: &str| state.applications[application].conflicts.contains(p);
            matches!(grant(application).and_then(|g| g.payment_proposal.as_ref().map(|p| (g, p))), Some((g, p))
                if p.proposed_by != actor.principal.as_str() && !proposer_conflicted(&p.proposed_by)
                    && payable(g, p.amount))
        }
        Command::RecordRefund { application, amount: input, .. } => {
            matches!((grant(application), amount(input)), (Some(g), Some(a)) if a <= g.net_paid())
        }
        Command::RecordReceipt { partner, amount: input, earmark, .. } => {
            let key = PotKey { partner: partner.clone(), earmark: earmark.clone() };
            let outstanding = state.pots.get(&key).map(Pot::outstanding).unwrap_or_default();
            // Money for a closed round's earmark is still received.
            earmark.as_ref().is_none_or(|r| state.rounds.contains_key(r))
                && amount(input).is_some_and(|a| a <= outstanding)
        }
        Command::AwardGrant { application, amount: input, .. } => amount(input).is_some_and(|a| {
            affordable(state, application, a) && within(round_of(application).award_four_eyes_above, a)
        }),
        Command::ProposeAward { application, amount: input, .. } => amount(input).is_some_and(|a| {
            affordable(state, application, a) && state.applications[application].award_proposal.is_none()
        }),
        Command::ApproveAward { application, .. } => {
            let app = state.applications.get(application);
            let proposal = app.and_then(|a| a.award_proposal.as_ref());
            proposal.is_some_and(|p| {
                p.proposed_by != actor.principal.as_str()
                    && !app.is_some_and(|a| a.conflicts.contains(&p.proposed_by))
                    && affordable(state, application, p.amount)
            })
        }
        Command::SetApprovalThresholds { round, award_above, payment_above } => {
            state.rounds.contains_key(round)
                && award_above.as_ref().is_none_or(|a| amount(a).is_some())
                && payment_above.as_ref().is_none_or(|a| amount(a).is_some())
        }
        Command::DeclareConflict { application, .. } => {
            state.applications.get(application).is_some_and(|a| !a.conflicts.contains(actor.principal.as_str()))
        }
        _ => false,
    }
}

/// Whether an award of `amount` on `application` fits every rule of money,
/// budget and limits.
fn affordable(state: &FundState, application: &ApplicationId, amount: Amount) -> bool {
    let Some(app) = state.applications.get(application) else { return false };
    let r = &state.rounds[&app.round];
    let available: Amount = state.eligible_pots(&app.round).iter().map(|(_, a)| *a).sum();
    app.status == ApplicationStatus::Pending
        && r.closed_on.is_none()
        && amount <= app.amount_requested
        && amount <= r.grant_max
        && amount <= r.budget_left()
        && amount <= available
}

// ----- the invariants -----

/// What the sequences exercised, over all of them.
#[derive(Default)]
struct Tally {
    accepted: BTreeMap<&'static str, usize>,
    rejected: BTreeMap<&'static str, usize>,
    /// Sequences in which at least one award, payment, refund and settlement was accepted.
    full_sequences: usize,
    /// Sequences in which at least one award approval, payment approval and
    /// conflict declaration was accepted.
    four_eyes_sequences: usize,
    last_payments: usize,
    releasing_refunds: usize,
    /// Awards and payments above their round's threshold, made on approval.
    four_eyes_awards: usize,
    four_eyes_payments: usize,
}

/// A proposal waiting for approval: its amount and who proposed it.
/// One sequence being played: the invariants' checker, and what the tally
/// needs.
#[derive(Default)]
struct Play {
    checked: Invariants,
    accepted: BTreeSet<&'static str>,
    /// From the middle of the sequence on: the state as a start from a
    /// checkpoint taken there has it (its applications still encoded, each
    /// chunk decoded when first used), deciding the same commands.
    restarted: Option<FundState>,
}

impl Play {
    fn step(&mut self, step: &Step, tally: &mut Tally) {
        let command = command(&self.checked.state, &step.op);
        let actor = actor(&self.checked.state, step.who, &command);
        if let Some(restarted) = &mut self.restarted {
            let decided = decide(restarted, &command, &Context { actor: actor.clone() });
            assert_eq!(decided, decide(&self.checked.state, &command, &Context { actor: actor.clone() }));
            for event in decided.iter().flatten() {
                restarted.evolve(event);
            }
        }
        match self.checked.apply(&command, &actor) {
            Ok(_) => {
                *tally.accepted.entry(command.name()).or_default() += 1;
                self.accepted.insert(command.name());
                // A proposal or conflict is pending now: the checkpoint must
                // keep it.
                if matches!(command.name(), "ProposeAward" | "ProposePayment" | "DeclareConflict") {
                    checkpoint_round_trip(&self.checked.state);
                }
            }
            Err(rejection) => {
                let state = &self.checked.state;
                assert!(!must_accept(state, &actor, &command), "{command:?} by {actor:?} refused: {rejection}");
                *tally.rejected.entry(rejection.code()).or_default() += 1;
            }
        }
    }
}

/// Checks that the projections' checkpoint of `state`, in chunks of three
/// applications, reads back as `state`.
fn checkpoint_round_trip(state: &FundState) {
    let projections = Projections { state: state.clone(), head_seq: 1, head_hash: [7; 32], head_recorded_at_micros: 0 };
    let read =
        Projections::decode_checkpoint(&projections.checkpoint_bytes_in_chunks(3)).expect("the checkpoint reads");
    assert!(read.state == *state, "the checkpoint read back differs from the state it was made of");
}

/// `state` as a start reads it from its checkpoint (in chunks of three
/// applications): none of the applications decoded yet.
fn started_from_checkpoint(state: &FundState) -> FundState {
    let projections = Projections { state: state.clone(), head_seq: 1, head_hash: [7; 32], head_recorded_at_micros: 0 };
    let bytes = projections.checkpoint_bytes_in_chunks(3);
    let read = Projections::read_checkpoint(&bytes[..], bytes.len() as u64).unwrap().expect("the checkpoint reads");
    let stored = read.state.applications.stored();
    assert!(stored.is_none_or(|stored| !stored.is_decoded()) || state.applications.is_empty());
    read.state
}

fn play(steps: &[Step], tally: &mut Tally) {
    let mut play = Play::default();
    let middle = steps.len() / 2;
    for (n, step) in steps.iter().enumerate() {
        if n == middle {
            play.restarted = Some(started_from_checkpoint(&play.checked.state));
        }
        play.step(step, tally);
    }
    checkpoint_round_trip(&play.checked.state);
    if let Some(restarted) = &play.restarted {
        assert!(*restarted == play.checked.state, "a start from the checkpoint went elsewhere");
        assert_eq!(fundledger::log::codec::encode(restarted), fundledger::log::codec::encode(&play.checked.state));
    }
    let accepted = |event: fn(&Event) -> bool| play.checked.log.iter().any(event);
    if accepted(|e| matches!(e, Event::GrantAwarded { .. }))
        && accepted(|e| matches!(e, Event::PaymentMade { .. }))
        && accepted(|e| matches!(e, Event::RefundReceived { .. }))
        && accepted(|e| matches!(e, Event::GrantSettled { .. }))
    {
        tally.full_sequences += 1;
    }
    if ["ApproveAward", "ApprovePayment", "DeclareConflict"].iter().all(|name| play.accepted.contains(name)) {
        tally.four_eyes_sequences += 1;
    }
    tally.last_payments += play.checked.last_payments;
    tally.releasing_refunds += play.checked.releasing_refunds;
    tally.four_eyes_awards += play.checked.four_eyes_awards;
    tally.four_eyes_payments += play.checked.four_eyes_payments;
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
    let result = runner.run(&sequence(), |steps| {
        play(&steps, &mut tally.borrow_mut());
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, steps)) => panic!("{reason}\nminimal failing sequence: {steps:#?}"),
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
    eprintln!(
        "sequences with award approval, payment approval and conflict: {} of {SEQUENCES}; \
         awards above the threshold: {}; payments above the threshold: {}",
        tally.four_eyes_sequences, tally.four_eyes_awards, tally.four_eyes_payments
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
        "SetApprovalThresholds",
        "GrantAccess",
        "RevokeAccess",
        "ProposeAward",
        "ApproveAward",
        "ProposePayment",
        "ApprovePayment",
        "DeclareConflict",
    ] {
        let accepted = tally.accepted.get(name).copied().unwrap_or(0);
        assert!(accepted >= sequences / 4, "only {accepted} {name} accepted in {sequences} sequences");
    }
    assert!(tally.full_sequences >= sequences / 4, "too few sequences went the whole way");
    assert!(tally.last_payments >= sequences / 8, "too few grants were paid in full");
    assert!(tally.releasing_refunds >= sequences / 8, "too few refunds on settled or withdrawn grants");
    assert!(
        tally.four_eyes_sequences >= sequences / 16,
        "too few sequences approved awards and payments and declared conflicts"
    );
    assert!(tally.four_eyes_awards >= sequences / 8, "too few awards above the threshold went through four eyes");
    assert!(tally.four_eyes_payments >= sequences / 16, "too few payments above the threshold went through four eyes");
    let codes: BTreeSet<&str> = tally.rejected.keys().copied().collect();
    assert!(codes.len() >= 30, "only {} kinds of rejection seen: {codes:?}", codes.len());
    for code in [
        "permission_denied",
        "four_eyes_required",
        "self_approval",
        "no_proposal",
        "conflict_of_interest",
        "token_in_use",
        "principal_already_active",
        "unknown_principal",
    ] {
        assert!(codes.contains(code), "no {code} seen: {codes:?}");
    }
}

// ----- figures as of a business date -----

/// Business-date views per sequence: one sequence is a few milliseconds.
const DATED_SEQUENCES: u32 = 200;

/// The accepted events of a sequence, without the per-step checks above.
fn accepted_events(steps: &[Step]) -> Vec<Event> {
    let mut state = FundState::default();
    let mut log = Vec::new();
    for step in steps {
        let command = command(&state, &step.op);
        let ctx = Context { actor: actor(&state, step.who, &command) };
        if let Ok(events) = decide(&state, &command, &ctx) {
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
        | Event::RefundReceived { value_date: at, .. }
        | Event::AwardProposed { proposed_on: at, .. }
        | Event::PaymentProposed { value_date: at, .. }
        | Event::ConflictDeclared { declared_on: at, .. } => *at = date,
        Event::FundOpened { .. }
        | Event::PartnerAdmitted { .. }
        | Event::RoundOpened { .. }
        | Event::ApprovalThresholdsSet { .. }
        | Event::AccessGranted { .. }
        | Event::AccessRevoked { .. } => {}
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
