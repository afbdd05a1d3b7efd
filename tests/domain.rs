//! Given/when/then tests of the pure domain: every rule of `decide` and every
//! rejection with its figures, who may send what (roles, four eyes,
//! conflicts of interest), the attribution of money to partner pots to the
//! cent, the state's figures after sequences of events, and the journal's
//! double entry.
//!
//! Tests are data: a history of events, a command, and the exact events or
//! the exact rejection expected. No disk, no network, no clock.

// Amounts in cents are written as on a statement: `60_000_00` is
// EUR 60,000.00, euros grouped by thousands and then the cents.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use support::permitted_role;

use fundledger::domain::attribution::{self, split};
use fundledger::domain::journal::{self, Account, Posting};
use fundledger::domain::*;
use std::collections::{BTreeMap, BTreeSet};

// ----- vocabulary -----

/// The officer who sends officer commands unless a case names another.
const ACTOR: &str = "officer.jansen";
/// A second officer: the other pair of eyes.
const SECOND_OFFICER: &str = "officer.bakker";
/// A third officer, for proposals that neither of the first two made.
const THIRD_OFFICER: &str = "officer.visser";
const ADMIN: &str = "admin.devries";
const AUDITOR: &str = "auditor.smit";
const REASON: &str = "fits the aims of the window";
const FUND: &str = "Alliance for Democratic Citizenship";
const OPENS: &str = "2024-01-01";
const CLOSES: &str = "2024-06-30";
/// The business date of everything that is not a round boundary.
const TODAY: &str = "2024-03-01";
const BANK_REF: &str = "NL91ABNA0417164300-0001";

fn principal(id: &str) -> PrincipalId {
    PrincipalId::new(id).expect("valid principal id")
}

fn officer(id: &str) -> Actor {
    Actor { principal: principal(id), role: Role::Officer }
}

fn admin() -> Actor {
    Actor { principal: principal(ADMIN), role: Role::Admin }
}

/// The principal acting for a partner fund: `porticus.treasurer`.
fn treasurer(partner_id: &str) -> Actor {
    Actor { principal: principal(&format!("{partner_id}.treasurer")), role: Role::Partner(partner(partner_id)) }
}

fn auditor() -> Actor {
    Actor { principal: principal(AUDITOR), role: Role::Auditor }
}

/// An actor whose role may send `command`: the admin, the partner's own
/// treasurer, or officer Jansen. Cases that are not about access control
/// are sent by them, so that they keep their meaning.
fn permitted(command: &Command) -> Actor {
    match permitted_role(command) {
        Role::Admin => admin(),
        Role::Partner(p) => treasurer(p.as_str()),
        Role::Officer => officer(ACTOR),
        Role::Auditor => auditor(),
    }
}

fn ctx(actor: Actor) -> Context {
    Context { actor }
}

/// The SHA-256 of a test token: `n` in every byte.
fn token(n: u8) -> [u8; 32] {
    [n; 32]
}

fn eur(value: &str) -> MoneyInput {
    MoneyInput::parse(value, "EUR").expect("test amounts are well formed")
}

fn cents(minor: i64) -> Amount {
    Amount::from_minor(minor).expect("test amounts are not negative")
}

/// An amount as the fund shows it to people: `EUR 12,000.00`.
fn shown(minor: i64) -> String {
    Currency::eur().display(cents(minor))
}

fn day(text: &str) -> Date {
    Date::parse(text).expect("test dates are calendar dates")
}

fn today() -> Date {
    day(TODAY)
}

fn partner(id: &str) -> PartnerId {
    PartnerId::new(id).expect("valid partner id")
}

fn round(id: &str) -> RoundId {
    RoundId::new(id).expect("valid round id")
}

fn app(id: &str) -> ApplicationId {
    ApplicationId::new(id).expect("valid application id")
}

fn pot(partner_id: &str, earmark: Option<&str>) -> PotKey {
    PotKey { partner: partner(partner_id), earmark: earmark.map(round) }
}

fn share(partner_id: &str, earmark: Option<&str>, minor: i64) -> Share {
    Share { pot: pot(partner_id, earmark), amount: cents(minor) }
}

/// An unrestricted pot's share.
fn free(partner_id: &str, minor: i64) -> Share {
    share(partner_id, None, minor)
}

fn applicant() -> Applicant {
    Applicant {
        name: "Buurtkracht Oost".into(),
        organisation_id: "NL-KVK-12345678".into(),
        place: "Utrecht".into(),
        country: "NL".into(),
    }
}

// ----- events, as a history is made of them -----

fn fund_opened() -> Event {
    Event::FundOpened { name: FUND.into(), currency: Currency::eur() }
}

fn admitted(id: &str) -> Event {
    Event::PartnerAdmitted {
        partner: partner(id),
        name: format!("{id} fund"),
        organisation_id: "NL-KVK-00000001".into(),
    }
}

fn pledged(id: &str, earmark: Option<&str>, minor: i64) -> Event {
    Event::ContributionPledged { pot: pot(id, earmark), amount: cents(minor), pledged_on: today() }
}

fn pledge_reduced(id: &str, earmark: Option<&str>, minor: i64) -> Event {
    Event::PledgeReduced { pot: pot(id, earmark), amount: cents(minor), reason: REASON.into(), reduced_on: today() }
}

fn received(id: &str, earmark: Option<&str>, minor: i64) -> Event {
    Event::ContributionReceived {
        pot: pot(id, earmark),
        amount: cents(minor),
        value_date: today(),
        bank_reference: BANK_REF.into(),
    }
}

fn round_opened(id: &str, ceiling: i64, grant_max: i64) -> Event {
    Event::RoundOpened {
        round: round(id),
        name: format!("Loket D {id}"),
        budget_ceiling: cents(ceiling),
        grant_max: cents(grant_max),
        opens_on: day(OPENS),
        closes_on: day(CLOSES),
    }
}

fn round_closed(id: &str) -> Event {
    Event::RoundClosed { round: round(id), closed_on: today() }
}

fn submitted(id: &str, round_id: &str, requested: i64) -> Event {
    Event::ApplicationSubmitted {
        application: app(id),
        round: round(round_id),
        applicant: applicant(),
        title: "Street festival".into(),
        description: "Neighbours meet neighbours".into(),
        amount_requested: cents(requested),
        submitted_on: today(),
    }
}

fn application_withdrawn(id: &str) -> Event {
    Event::ApplicationWithdrawn { application: app(id), reason: REASON.into(), withdrawn_on: today() }
}

fn application_rejected(id: &str) -> Event {
    Event::ApplicationRejected {
        application: app(id),
        reason: REASON.into(),
        decided_by: ACTOR.into(),
        decided_on: today(),
    }
}

fn awarded(id: &str, minor: i64, attribution: Vec<Share>) -> Event {
    awarded_by(id, minor, attribution, ACTOR)
}

fn awarded_by(id: &str, minor: i64, attribution: Vec<Share>, decided_by: &str) -> Event {
    Event::GrantAwarded {
        application: app(id),
        amount: cents(minor),
        attribution,
        reason: REASON.into(),
        decided_by: decided_by.into(),
        decided_on: today(),
    }
}

fn reduced(id: &str, minor: i64, released: Vec<Share>) -> Event {
    Event::GrantReduced {
        application: app(id),
        amount: cents(minor),
        released,
        reason: REASON.into(),
        decided_by: ACTOR.into(),
        decided_on: today(),
    }
}

fn grant_withdrawn(id: &str, released: Vec<Share>) -> Event {
    Event::GrantWithdrawn {
        application: app(id),
        released,
        reason: REASON.into(),
        decided_by: ACTOR.into(),
        decided_on: today(),
    }
}

fn settled(id: &str, final_amount: i64, released: Vec<Share>) -> Event {
    Event::GrantSettled {
        application: app(id),
        final_amount: cents(final_amount),
        released,
        reason: REASON.into(),
        decided_by: ACTOR.into(),
        decided_on: today(),
    }
}

fn paid(id: &str, tranche: u32, minor: i64, attribution: Vec<Share>) -> Event {
    Event::PaymentMade {
        application: app(id),
        tranche,
        amount: cents(minor),
        attribution,
        value_date: today(),
        bank_reference: BANK_REF.into(),
    }
}

fn refunded(id: &str, minor: i64, attribution: Vec<Share>, releases: bool) -> Event {
    Event::RefundReceived {
        application: app(id),
        amount: cents(minor),
        attribution,
        releases,
        value_date: today(),
        bank_reference: BANK_REF.into(),
    }
}

fn access_granted(id: &str, role: Role, token_byte: u8) -> Event {
    Event::AccessGranted { principal: principal(id), role, token_sha256: token(token_byte) }
}

fn access_revoked(id: &str) -> Event {
    Event::AccessRevoked { principal: principal(id), reason: REASON.into() }
}

fn thresholds_set(round_id: &str, award_above: Option<i64>, payment_above: Option<i64>) -> Event {
    Event::ApprovalThresholdsSet {
        round: round(round_id),
        award_above: award_above.map(cents),
        payment_above: payment_above.map(cents),
    }
}

fn award_proposed(id: &str, minor: i64, by: &str) -> Event {
    Event::AwardProposed {
        application: app(id),
        amount: cents(minor),
        reason: REASON.into(),
        proposed_by: by.into(),
        proposed_on: today(),
    }
}

fn payment_proposed(id: &str, minor: i64, by: &str) -> Event {
    Event::PaymentProposed {
        application: app(id),
        amount: cents(minor),
        value_date: today(),
        bank_reference: BANK_REF.into(),
        proposed_by: by.into(),
    }
}

fn conflict_declared(id: &str, by: &str) -> Event {
    Event::ConflictDeclared { application: app(id), officer: by.into(), reason: REASON.into(), declared_on: today() }
}

// ----- commands, as a client sends them -----

fn open_fund() -> Command {
    Command::OpenFund { name: FUND.into(), currency: Currency::eur() }
}

fn admit(id: &str) -> Command {
    Command::AdmitPartner {
        partner: partner(id),
        name: format!("{id} fund"),
        organisation_id: "NL-KVK-00000001".into(),
    }
}

fn pledge(id: &str, earmark: Option<&str>, amount: MoneyInput) -> Command {
    Command::PledgeContribution { partner: partner(id), amount, earmark: earmark.map(round), pledged_on: today() }
}

fn reduce_pledge(id: &str, earmark: Option<&str>, amount: MoneyInput) -> Command {
    Command::ReducePledge {
        partner: partner(id),
        amount,
        earmark: earmark.map(round),
        reason: REASON.into(),
        reduced_on: today(),
    }
}

fn receive(id: &str, earmark: Option<&str>, amount: MoneyInput) -> Command {
    Command::RecordReceipt {
        partner: partner(id),
        amount,
        earmark: earmark.map(round),
        value_date: today(),
        bank_reference: BANK_REF.into(),
    }
}

fn open_round(id: &str, ceiling: MoneyInput, grant_max: MoneyInput) -> Command {
    Command::OpenRound {
        round: round(id),
        name: format!("Loket D {id}"),
        budget_ceiling: ceiling,
        grant_max,
        opens_on: day(OPENS),
        closes_on: day(CLOSES),
    }
}

fn close_round(id: &str) -> Command {
    Command::CloseRound { round: round(id), closed_on: today() }
}

fn submit(id: &str, round_id: &str, requested: MoneyInput) -> Command {
    submit_on(id, round_id, requested, TODAY)
}

fn submit_on(id: &str, round_id: &str, requested: MoneyInput, date: &str) -> Command {
    Command::SubmitApplication {
        application: app(id),
        round: round(round_id),
        applicant: applicant(),
        title: "Street festival".into(),
        description: "Neighbours meet neighbours".into(),
        amount_requested: requested,
        submitted_on: day(date),
    }
}

fn withdraw_application(id: &str) -> Command {
    Command::WithdrawApplication { application: app(id), reason: REASON.into(), withdrawn_on: today() }
}

fn reject(id: &str) -> Command {
    Command::RejectApplication { application: app(id), reason: REASON.into(), decided_on: today() }
}

fn award(id: &str, amount: MoneyInput) -> Command {
    Command::AwardGrant { application: app(id), amount, reason: REASON.into(), decided_on: today() }
}

fn reduce(id: &str, amount: MoneyInput) -> Command {
    Command::ReduceGrant { application: app(id), amount, reason: REASON.into(), decided_on: today() }
}

fn withdraw_grant(id: &str) -> Command {
    Command::WithdrawGrant { application: app(id), reason: REASON.into(), decided_on: today() }
}

fn settle(id: &str, final_amount: MoneyInput) -> Command {
    Command::SettleGrant { application: app(id), final_amount, reason: REASON.into(), decided_on: today() }
}

fn pay(id: &str, amount: MoneyInput) -> Command {
    Command::MakePayment { application: app(id), amount, value_date: today(), bank_reference: BANK_REF.into() }
}

fn refund(id: &str, amount: MoneyInput) -> Command {
    Command::RecordRefund { application: app(id), amount, value_date: today(), bank_reference: BANK_REF.into() }
}

fn grant_access(id: &str, role: Role, token_byte: u8) -> Command {
    Command::GrantAccess { principal: principal(id), role, token_sha256: token(token_byte) }
}

fn revoke_access(id: &str) -> Command {
    Command::RevokeAccess { principal: principal(id), reason: REASON.into() }
}

fn set_thresholds(round_id: &str, award_above: Option<MoneyInput>, payment_above: Option<MoneyInput>) -> Command {
    Command::SetApprovalThresholds { round: round(round_id), award_above, payment_above }
}

fn propose_award(id: &str, amount: MoneyInput) -> Command {
    Command::ProposeAward { application: app(id), amount, reason: REASON.into(), proposed_on: today() }
}

fn approve_award(id: &str) -> Command {
    Command::ApproveAward { application: app(id), decided_on: today() }
}

fn propose_payment(id: &str, amount: MoneyInput) -> Command {
    Command::ProposePayment { application: app(id), amount, value_date: today(), bank_reference: BANK_REF.into() }
}

fn approve_payment(id: &str) -> Command {
    Command::ApprovePayment { application: app(id) }
}

fn declare_conflict(id: &str) -> Command {
    Command::DeclareConflict { application: app(id), reason: REASON.into(), declared_on: today() }
}

// ----- histories -----

/// A fund with partners bzk, porticus and vfonds and two open rounds: r1
/// (ceiling 100,000.00, at most 15,000.00 per grant) and r2 (50,000.00 and
/// 10,000.00). No money yet.
fn opened() -> Vec<Event> {
    vec![
        fund_opened(),
        admitted("bzk"),
        admitted("porticus"),
        admitted("vfonds"),
        round_opened("r1", 100_000_00, 15_000_00),
        round_opened("r2", 50_000_00, 10_000_00),
    ]
}

/// `opened` plus money: bzk 60,000.00 unrestricted, received; porticus
/// 50,000.00 unrestricted, 40,000.00 of it received; vfonds 10,000.00
/// earmarked for r2, received. So r1 may use 60,000 : 40,000 = 3 : 2, and
/// r2 60,000 : 40,000 : 10,000.
fn funded() -> Vec<Event> {
    [
        opened(),
        vec![
            pledged("bzk", None, 60_000_00),
            received("bzk", None, 60_000_00),
            pledged("porticus", None, 50_000_00),
            received("porticus", None, 40_000_00),
            pledged("vfonds", Some("r2"), 10_000_00),
            received("vfonds", Some("r2"), 10_000_00),
        ],
    ]
    .concat()
}

/// `funded` plus application a1 in r1, asking 10,000.00.
fn applied() -> Vec<Event> {
    [funded(), vec![submitted("a1", "r1", 10_000_00)]].concat()
}

/// `applied` plus a1 awarded 10,000.00: bzk 6,000.00, porticus 4,000.00.
fn granted() -> Vec<Event> {
    [applied(), vec![awarded("a1", 10_000_00, vec![free("bzk", 6_000_00), free("porticus", 4_000_00)])]].concat()
}

/// `granted` plus a first tranche of 2,500.00 paid on a1.
fn partly_paid() -> Vec<Event> {
    [granted(), vec![paid("a1", 1, 2_500_00, vec![free("bzk", 1_500_00), free("porticus", 1_000_00)])]].concat()
}

/// `applied` with four eyes in r1: awards above 5,000.00 and payments above
/// 2,000.00 need a proposal and a second officer's approval.
fn four_eyes() -> Vec<Event> {
    and(applied(), vec![thresholds_set("r1", Some(5_000_00), Some(2_000_00))])
}

/// `granted` with four eyes on payments above 2,000.00 in r1.
fn four_eyes_granted() -> Vec<Event> {
    and(granted(), vec![thresholds_set("r1", None, Some(2_000_00))])
}

/// A history and more events after it.
fn and(history: Vec<Event>, more: Vec<Event>) -> Vec<Event> {
    [history, more].concat()
}

// ----- the checks -----

/// The state a history leaves: a fold of `evolve` from the empty state.
fn given(history: &[Event]) -> FundState {
    let mut state = FundState::default();
    for event in history {
        state.evolve(event);
    }
    state
}

/// Decides `command`, sent by an actor permitted to, after `history` and
/// expects exactly the events `then`, which must also apply to that state.
fn check(history: &[Event], command: Command, then: Vec<Event>) -> FundState {
    check_by(history, permitted(&command), command, then)
}

/// `check`, with the command sent by `actor`; returns the state after it.
fn check_by(history: &[Event], actor: Actor, command: Command, then: Vec<Event>) -> FundState {
    let mut state = given(history);
    let events = match decide(&state, &command, &ctx(actor)) {
        Ok(events) => events,
        Err(rejection) => panic!("{} was refused: {rejection}", command.name()),
    };
    assert_eq!(events, then, "events of {}", command.name());
    for event in &events {
        assert_eq!(event.stream(), command.stream(), "an event is recorded in its command's stream");
        state.evolve(event);
    }
    state
}

/// Decides `command`, sent by an actor permitted to, after `history` and
/// expects exactly the rejection `then`.
fn check_rejected(history: &[Event], command: Command, then: Rejection) {
    check_rejected_by(history, permitted(&command), command, then);
}

/// `check_rejected`, with the command sent by `actor`.
fn check_rejected_by(history: &[Event], actor: Actor, command: Command, then: Rejection) {
    assert_eq!(decide(&given(history), &command, &ctx(actor)), Err(then), "decision on {}", command.name());
}

/// Runs commands one after the other from the empty state, each sent by an
/// actor permitted to and each accepted; returns the state and every event
/// recorded.
fn run(commands: Vec<Command>) -> (FundState, Vec<Event>) {
    let mut state = FundState::default();
    let mut log = Vec::new();
    for command in commands {
        let events = decide(&state, &command, &ctx(permitted(&command)))
            .unwrap_or_else(|rejection| panic!("{} was refused: {rejection}", command.name()));
        for event in events {
            state.evolve(&event);
            log.push(event);
        }
    }
    (state, log)
}

// ----- happy paths, one per command -----

#[test]
fn open_fund_records_its_name_and_currency() {
    check(&[], open_fund(), vec![fund_opened()]);
}

#[test]
fn open_fund_trims_the_name() {
    let command = Command::OpenFund { name: format!("  {FUND}\t"), currency: Currency::eur() };
    check(&[], command, vec![fund_opened()]);
}

#[test]
fn admit_partner() {
    check(&[fund_opened()], admit("porticus"), vec![admitted("porticus")]);
}

#[test]
fn pledge_unrestricted() {
    check(&opened(), pledge("porticus", None, eur("25000.00")), vec![pledged("porticus", None, 25_000_00)]);
}

#[test]
fn pledge_earmarked_for_an_open_round() {
    check(&opened(), pledge("vfonds", Some("r2"), eur("10000")), vec![pledged("vfonds", Some("r2"), 10_000_00)]);
}

#[test]
fn pledge_of_the_largest_amount_one_command_may_carry() {
    check(&opened(), pledge("bzk", None, eur("1000000000")), vec![pledged("bzk", None, 100_000_000_000)]);
}

#[test]
fn reduce_pledge_by_what_is_outstanding() {
    // porticus pledged 50,000.00 and paid 40,000.00 of it.
    check(
        &funded(),
        reduce_pledge("porticus", None, eur("10000.00")),
        vec![pledge_reduced("porticus", None, 10_000_00)],
    );
}

#[test]
fn reduce_an_earmarked_pledge_after_its_round_closed() {
    // What was promised for a round that has closed will never be needed:
    // writing it off must stay possible.
    let history = and(opened(), vec![pledged("vfonds", Some("r2"), 5_000_00), round_closed("r2")]);
    check(
        &history,
        reduce_pledge("vfonds", Some("r2"), eur("5000")),
        vec![pledge_reduced("vfonds", Some("r2"), 5_000_00)],
    );
}

#[test]
fn receive_part_of_a_pledge() {
    check(&funded(), receive("porticus", None, eur("2500.50")), vec![received("porticus", None, 2_500_50)]);
}

#[test]
fn receive_earmarked_money() {
    let history = and(opened(), vec![pledged("vfonds", Some("r2"), 5_000_00)]);
    check(&history, receive("vfonds", Some("r2"), eur("5000")), vec![received("vfonds", Some("r2"), 5_000_00)]);
}

#[test]
fn open_round_records_budget_maximum_and_dates() {
    check(
        &[fund_opened()],
        open_round("r1", eur("100000"), eur("15000")),
        vec![round_opened("r1", 100_000_00, 15_000_00)],
    );
}

#[test]
fn open_round_whose_maximum_equals_its_ceiling_and_which_lasts_one_day() {
    let command = Command::OpenRound {
        round: round("r9"),
        name: "One day".into(),
        budget_ceiling: eur("15000"),
        grant_max: eur("15000"),
        opens_on: today(),
        closes_on: today(),
    };
    let then = Event::RoundOpened {
        round: round("r9"),
        name: "One day".into(),
        budget_ceiling: cents(15_000_00),
        grant_max: cents(15_000_00),
        opens_on: today(),
        closes_on: today(),
    };
    check(&[fund_opened()], command, vec![then]);
}

#[test]
fn close_round_records_the_date() {
    check(&opened(), close_round("r1"), vec![round_closed("r1")]);
}

#[test]
fn submit_application() {
    check(&funded(), submit("a1", "r1", eur("10000")), vec![submitted("a1", "r1", 10_000_00)]);
}

#[test]
fn submit_application_on_the_first_and_last_day_asking_the_maximum() {
    for date in [OPENS, CLOSES] {
        let mut then = submitted("a1", "r1", 15_000_00);
        if let Event::ApplicationSubmitted { submitted_on, .. } = &mut then {
            *submitted_on = day(date);
        }
        check(&opened(), submit_on("a1", "r1", eur("15000.00"), date), vec![then]);
    }
}

#[test]
fn submit_application_from_curacao_by_an_informal_group() {
    let applicant = Applicant {
        name: " Bario Otrobanda ".into(),
        organisation_id: "".into(),
        place: "Willemstad".into(),
        country: "CW".into(),
    };
    let command = Command::SubmitApplication {
        application: app("a7"),
        round: round("r2"),
        applicant: applicant.clone(),
        title: "Kas di kultura".into(),
        description: "".into(),
        amount_requested: eur("750"),
        submitted_on: today(),
    };
    let then = Event::ApplicationSubmitted {
        application: app("a7"),
        round: round("r2"),
        applicant: Applicant { name: "Bario Otrobanda".into(), ..applicant },
        title: "Kas di kultura".into(),
        description: "".into(),
        amount_requested: cents(750_00),
        submitted_on: today(),
    };
    check(&opened(), command, vec![then]);
}

#[test]
fn withdraw_a_pending_application() {
    check(&applied(), withdraw_application("a1"), vec![application_withdrawn("a1")]);
}

#[test]
fn withdraw_application_after_its_round_closed() {
    // Only decisions need an open round; an applicant may always step back.
    let history = and(applied(), vec![round_closed("r1")]);
    check(&history, withdraw_application("a1"), vec![application_withdrawn("a1")]);
}

#[test]
fn reject_application_records_who_decided() {
    check(&applied(), reject("a1"), vec![application_rejected("a1")]);
}

#[test]
fn award_grant_pro_rata_to_available_money() {
    check(
        &applied(),
        award("a1", eur("10000")),
        vec![awarded("a1", 10_000_00, vec![free("bzk", 6_000_00), free("porticus", 4_000_00)])],
    );
}

#[test]
fn award_less_than_requested() {
    check(
        &applied(),
        award("a1", eur("5000")),
        vec![awarded("a1", 5_000_00, vec![free("bzk", 3_000_00), free("porticus", 2_000_00)])],
    );
}

#[test]
fn reduce_grant_releases_along_the_open_shares() {
    check(
        &granted(),
        reduce("a1", eur("1000.01")),
        vec![reduced("a1", 1_000_01, vec![free("bzk", 600_01), free("porticus", 400_00)])],
    );
}

#[test]
fn reduce_grant_by_everything_still_open() {
    let history = partly_paid();
    check(
        &history,
        reduce("a1", eur("7500")),
        vec![reduced("a1", 7_500_00, vec![free("bzk", 4_500_00), free("porticus", 3_000_00)])],
    );
}

#[test]
fn withdraw_grant_releases_what_was_not_paid() {
    check(
        &partly_paid(),
        withdraw_grant("a1"),
        vec![grant_withdrawn("a1", vec![free("bzk", 4_500_00), free("porticus", 3_000_00)])],
    );
}

#[test]
fn withdraw_a_fully_paid_grant_releases_nothing() {
    let history =
        and(granted(), vec![paid("a1", 1, 10_000_00, vec![free("bzk", 6_000_00), free("porticus", 4_000_00)])]);
    check(&history, withdraw_grant("a1"), vec![grant_withdrawn("a1", vec![])]);
}

#[test]
fn settle_grant_below_the_award_releases_the_difference() {
    check(
        &partly_paid(),
        settle("a1", eur("8000")),
        vec![settled("a1", 8_000_00, vec![free("bzk", 1_200_00), free("porticus", 800_00)])],
    );
}

#[test]
fn settle_grant_at_the_full_amount_releases_nothing() {
    check(&partly_paid(), settle("a1", eur("10000")), vec![settled("a1", 10_000_00, vec![])]);
}

#[test]
fn settle_grant_at_zero() {
    // Zero is a valid final amount: the initiative did not take place.
    check(
        &granted(),
        settle("a1", eur("0")),
        vec![settled("a1", 0, vec![free("bzk", 6_000_00), free("porticus", 4_000_00)])],
    );
}

#[test]
fn settle_grant_at_exactly_what_was_paid() {
    check(
        &partly_paid(),
        settle("a1", eur("2500.00")),
        vec![settled("a1", 2_500_00, vec![free("bzk", 4_500_00), free("porticus", 3_000_00)])],
    );
}

#[test]
fn make_payment_numbers_its_tranches() {
    check(
        &granted(),
        pay("a1", eur("2500")),
        vec![paid("a1", 1, 2_500_00, vec![free("bzk", 1_500_00), free("porticus", 1_000_00)])],
    );
    check(
        &partly_paid(),
        pay("a1", eur("100")),
        vec![paid("a1", 2, 100_00, vec![free("bzk", 60_00), free("porticus", 40_00)])],
    );
}

#[test]
fn make_payment_of_the_rest_after_settlement() {
    // Settled at 8,000.00 after 2,500.00 was paid: 5,500.00 remain to be paid.
    let history =
        and(partly_paid(), vec![settled("a1", 8_000_00, vec![free("bzk", 1_200_00), free("porticus", 800_00)])]);
    check(
        &history,
        pay("a1", eur("5500")),
        vec![paid("a1", 2, 5_500_00, vec![free("bzk", 3_300_00), free("porticus", 2_200_00)])],
    );
}

#[test]
fn refund_on_an_active_grant_reopens_the_commitment() {
    check(
        &partly_paid(),
        refund("a1", eur("100")),
        vec![refunded("a1", 100_00, vec![free("bzk", 60_00), free("porticus", 40_00)], false)],
    );
}

#[test]
fn refund_on_a_settled_grant_releases_the_money() {
    let history =
        and(partly_paid(), vec![settled("a1", 2_500_00, vec![free("bzk", 4_500_00), free("porticus", 3_000_00)])]);
    check(
        &history,
        refund("a1", eur("500")),
        vec![refunded("a1", 500_00, vec![free("bzk", 300_00), free("porticus", 200_00)], true)],
    );
}

#[test]
fn refund_on_a_withdrawn_grant_releases_the_money() {
    let history =
        and(partly_paid(), vec![grant_withdrawn("a1", vec![free("bzk", 4_500_00), free("porticus", 3_000_00)])]);
    check(
        &history,
        refund("a1", eur("2500")),
        vec![refunded("a1", 2_500_00, vec![free("bzk", 1_500_00), free("porticus", 1_000_00)], true)],
    );
}

// ----- access control: roles, four eyes, conflicts of interest -----

/// A representative command of each class (admin, partner, officer), sent
/// by each role: allowed, or refused with a message that says who was
/// refused what.
#[test]
fn each_role_sends_only_its_own_class_of_command() {
    const ALLOWED: Option<&str> = None;
    let commands =
        [open_round("r3", eur("1000"), eur("100")), pledge("porticus", None, eur("1000")), award("a1", eur("5000"))];
    let table = [
        (
            admin(),
            [
                ALLOWED,
                Some("admin.devries (admin) may not PledgeContribution"),
                Some("admin.devries (admin) may not AwardGrant"),
            ],
        ),
        (
            officer(ACTOR),
            [
                Some("officer.jansen (officer) may not OpenRound"),
                Some("officer.jansen (officer) may not PledgeContribution"),
                ALLOWED,
            ],
        ),
        (
            treasurer("porticus"),
            [
                Some("porticus.treasurer (partner porticus) may not OpenRound"),
                ALLOWED,
                Some("porticus.treasurer (partner porticus) may not AwardGrant"),
            ],
        ),
        (
            // A partner may pledge, but only for itself.
            treasurer("bzk"),
            [
                Some("bzk.treasurer (partner bzk) may not OpenRound"),
                Some("bzk.treasurer (partner bzk) may not PledgeContribution"),
                Some("bzk.treasurer (partner bzk) may not AwardGrant"),
            ],
        ),
        (
            auditor(),
            [
                Some("auditor.smit (auditor) may not OpenRound"),
                Some("auditor.smit (auditor) may not PledgeContribution"),
                Some("auditor.smit (auditor) may not AwardGrant"),
            ],
        ),
    ];
    let state = given(&applied());
    for (actor, expected) in table {
        for (command, expected) in commands.iter().zip(expected) {
            let outcome = decide(&state, command, &ctx(actor.clone()));
            let Some(message) = expected else {
                assert!(outcome.is_ok(), "{} by {}: {outcome:?}", command.name(), actor.role);
                continue;
            };
            let denied = Rejection::PermissionDenied {
                principal: actor.principal.to_string(),
                role: actor.role.to_string(),
                action: command.name().into(),
            };
            assert_eq!(outcome, Err(denied.clone()), "{} by {}", command.name(), actor.role);
            assert_eq!(denied.to_string(), message);
            assert_eq!(denied.kind(), RejectionKind::PermissionDenied);
        }
    }
}

/// One of every command, each one that `granted` could accept.
fn one_of_every_command() -> Vec<Command> {
    vec![
        open_fund(),
        admit("cirrus"),
        pledge("porticus", None, eur("1000")),
        reduce_pledge("porticus", None, eur("1000")),
        receive("porticus", None, eur("1000")),
        open_round("r3", eur("1000"), eur("100")),
        close_round("r2"),
        submit("a2", "r1", eur("1000")),
        withdraw_application("a1"),
        reject("a1"),
        award("a1", eur("1000")),
        reduce("a1", eur("1000")),
        withdraw_grant("a1"),
        settle("a1", eur("9000")),
        pay("a1", eur("1000")),
        refund("a1", eur("1")),
        set_thresholds("r1", Some(eur("5000")), None),
        grant_access(SECOND_OFFICER, Role::Officer, 2),
        revoke_access(ACTOR),
        propose_award("a1", eur("1000")),
        approve_award("a1"),
        propose_payment("a1", eur("1000")),
        approve_payment("a1"),
        declare_conflict("a1"),
    ]
}

/// The whole matrix of role × command: exactly one of these actors may send
/// each command; every other one is refused before anything else is looked
/// at, and the domain's `may_send` (which the API uses) agrees.
#[test]
fn every_command_is_refused_to_every_role_but_its_own() {
    let actors = [admin(), officer(ACTOR), treasurer("porticus"), treasurer("bzk"), auditor()];
    let state = given(&and(granted(), vec![access_granted(ACTOR, Role::Officer, 1)]));
    let commands = one_of_every_command();
    let names: BTreeSet<&str> = commands.iter().map(Command::name).collect();
    assert_eq!(names.len(), 24, "one of each of the 24 commands");
    for command in &commands {
        let mut senders = Vec::new();
        for actor in &actors {
            let may = actor.role == permitted_role(command);
            assert_eq!(access::may_send(&actor.role, command), may, "may {} send {}?", actor.role, command.name());
            let outcome = decide(&state, command, &ctx(actor.clone()));
            let denied = Err(Rejection::PermissionDenied {
                principal: actor.principal.to_string(),
                role: actor.role.to_string(),
                action: command.name().into(),
            });
            if may {
                assert_ne!(outcome, denied, "{} by {}", command.name(), actor.role);
                senders.push(actor.principal.to_string());
            } else {
                assert_eq!(outcome, denied, "{} by {}", command.name(), actor.role);
            }
        }
        assert_eq!(senders.len(), 1, "{} is sent by {senders:?}", command.name());
    }
}

#[test]
fn each_role_reads_what_it_may() {
    use access::{may_read, Read};
    let (porticus, bzk) = (partner("porticus"), partner("bzk"));
    let reads = [
        Read::PartnerBalances(&porticus),
        Read::PartnerBalances(&bzk),
        Read::AllPartnerBalances,
        Read::SharedFigures,
        Read::Details,
        Read::Principals,
        Read::Backup,
    ];
    let table = [
        (Role::Admin, [true, true, true, true, true, true, true]),
        (Role::Auditor, [true, true, true, true, true, true, true]),
        (Role::Officer, [true, true, true, true, true, false, false]),
        (Role::Partner(porticus.clone()), [true, false, false, true, false, false, false]),
    ];
    for (role, expected) in table {
        for (read, may) in reads.iter().zip(expected) {
            assert_eq!(may_read(&role, *read), may, "may {role} read {read:?}?");
        }
    }
}

#[test]
fn grant_access_records_only_the_token_hash() {
    let state = check(
        &opened(),
        grant_access(SECOND_OFFICER, Role::Officer, 2),
        vec![access_granted(SECOND_OFFICER, Role::Officer, 2)],
    );
    assert_eq!(state.active_tokens, BTreeMap::from([(token(2), principal(SECOND_OFFICER))]));
}

#[test]
fn the_first_admin_is_given_access_before_the_fund_opens() {
    // `fundledger init` records the admin first; the admin then opens the fund.
    check(&[], grant_access(ADMIN, Role::Admin, 1), vec![access_granted(ADMIN, Role::Admin, 1)]);
}

#[test]
fn grant_partner_access_to_an_admitted_partner() {
    let role = Role::Partner(partner("porticus"));
    check(
        &opened(),
        grant_access("porticus.treasurer", role.clone(), 5),
        vec![access_granted("porticus.treasurer", role, 5)],
    );
}

#[test]
fn revoke_access_retires_the_token() {
    let history = and(opened(), vec![access_granted(ADMIN, Role::Admin, 1), access_granted(ACTOR, Role::Officer, 2)]);
    let state = check(&history, revoke_access(ACTOR), vec![access_revoked(ACTOR)]);
    assert_eq!(state.active_tokens, BTreeMap::from([(token(1), principal(ADMIN))]));
    assert!(state.principals[&principal(ACTOR)].revoked);
    assert!(!state.principals[&principal(ADMIN)].revoked);
}

#[test]
fn access_may_be_given_again_after_revocation() {
    // A new role and a new token; the old token stays retired.
    let history = and(opened(), vec![access_granted(ACTOR, Role::Officer, 2), access_revoked(ACTOR)]);
    let state = check(&history, grant_access(ACTOR, Role::Auditor, 3), vec![access_granted(ACTOR, Role::Auditor, 3)]);
    assert_eq!(state.active_tokens, BTreeMap::from([(token(3), principal(ACTOR))]));
    assert_eq!(state.principals[&principal(ACTOR)].role, Role::Auditor);
    assert!(!state.principals[&principal(ACTOR)].revoked);
}

#[test]
fn active_tokens_are_exactly_those_of_principals_not_revoked() {
    let history = and(
        opened(),
        vec![
            access_granted(ADMIN, Role::Admin, 1),
            access_granted(ACTOR, Role::Officer, 2),
            access_granted(SECOND_OFFICER, Role::Officer, 3),
            access_granted("porticus.treasurer", Role::Partner(partner("porticus")), 4),
            access_revoked(ACTOR),
            access_revoked("porticus.treasurer"),
            access_granted("porticus.treasurer", Role::Partner(partner("porticus")), 6),
        ],
    );
    let state = given(&history);
    let expected: BTreeMap<[u8; 32], PrincipalId> = [(1, ADMIN), (3, SECOND_OFFICER), (6, "porticus.treasurer")]
        .into_iter()
        .map(|(n, id)| (token(n), principal(id)))
        .collect();
    assert_eq!(state.active_tokens, expected);
    assert_eq!(state.principals.len(), 4, "a revoked principal stays on record");
}

#[test]
fn set_approval_thresholds_per_round() {
    let state = check(
        &opened(),
        set_thresholds("r1", Some(eur("5000")), Some(eur("2000.50"))),
        vec![thresholds_set("r1", Some(5_000_00), Some(2_000_50))],
    );
    let r1 = &state.rounds[&round("r1")];
    assert_eq!((r1.award_four_eyes_above, r1.payment_four_eyes_above), (Some(cents(5_000_00)), Some(cents(2_000_50))));
    assert_eq!(state.rounds[&round("r2")].award_four_eyes_above, None, "thresholds are per round");
}

#[test]
fn set_approval_thresholds_to_none_lifts_them() {
    let state = check(&four_eyes(), set_thresholds("r1", None, None), vec![thresholds_set("r1", None, None)]);
    let r1 = &state.rounds[&round("r1")];
    assert_eq!((r1.award_four_eyes_above, r1.payment_four_eyes_above), (None, None));
}

#[test]
fn an_award_at_the_threshold_needs_one_officer() {
    check(
        &four_eyes(),
        award("a1", eur("5000")),
        vec![awarded("a1", 5_000_00, vec![free("bzk", 3_000_00), free("porticus", 2_000_00)])],
    );
}

#[test]
fn a_large_award_is_proposed_by_one_officer_and_approved_by_another() {
    let state = check_by(
        &four_eyes(),
        officer(ACTOR),
        propose_award("a1", eur("8000")),
        vec![award_proposed("a1", 8_000_00, ACTOR)],
    );
    let proposal = state.applications[&app("a1")].award_proposal.as_ref().expect("a proposal waits");
    assert_eq!((proposal.amount, proposal.proposed_by.as_str()), (cents(8_000_00), ACTOR));
    assert_eq!(state.applications[&app("a1")].status, ApplicationStatus::Pending);

    // Both names are in the log: the proposer's and the approver's.
    let history = and(four_eyes(), vec![award_proposed("a1", 8_000_00, ACTOR)]);
    let state = check_by(
        &history,
        officer(SECOND_OFFICER),
        approve_award("a1"),
        vec![awarded_by("a1", 8_000_00, vec![free("bzk", 4_800_00), free("porticus", 3_200_00)], SECOND_OFFICER)],
    );
    let application = &state.applications[&app("a1")];
    assert_eq!(application.status, ApplicationStatus::Awarded);
    assert_eq!(application.award_proposal, None);
    assert_eq!(application.decision.as_ref().unwrap().decided_by, SECOND_OFFICER);
}

#[test]
fn an_approved_award_keeps_the_proposals_amount_and_reason() {
    let history = and(
        four_eyes(),
        vec![Event::AwardProposed {
            application: app("a1"),
            amount: cents(6_000_00),
            reason: "a large plan, well prepared".into(),
            proposed_by: ACTOR.into(),
            proposed_on: day("2024-02-15"),
        }],
    );
    check_by(
        &history,
        officer(SECOND_OFFICER),
        approve_award("a1"),
        vec![Event::GrantAwarded {
            application: app("a1"),
            amount: cents(6_000_00),
            attribution: vec![free("bzk", 3_600_00), free("porticus", 2_400_00)],
            reason: "a large plan, well prepared".into(),
            decided_by: SECOND_OFFICER.into(),
            decided_on: today(),
        }],
    );
}

#[test]
fn an_award_may_be_proposed_without_a_threshold() {
    check(&applied(), propose_award("a1", eur("1000")), vec![award_proposed("a1", 1_000_00, ACTOR)]);
}

#[test]
fn deciding_an_application_otherwise_clears_its_award_proposal() {
    let history = and(four_eyes(), vec![award_proposed("a1", 8_000_00, SECOND_OFFICER)]);
    for (command, then) in [
        (reject("a1"), application_rejected("a1")),
        (withdraw_application("a1"), application_withdrawn("a1")),
        (award("a1", eur("1000")), awarded("a1", 1_000_00, vec![free("bzk", 600_00), free("porticus", 400_00)])),
    ] {
        let name = command.name();
        let state = check(&history, command, vec![then]);
        assert_eq!(state.applications[&app("a1")].award_proposal, None, "after {name}");
    }
}

#[test]
fn a_payment_at_the_threshold_needs_one_officer() {
    check(
        &four_eyes_granted(),
        pay("a1", eur("2000")),
        vec![paid("a1", 1, 2_000_00, vec![free("bzk", 1_200_00), free("porticus", 800_00)])],
    );
}

#[test]
fn a_large_payment_is_proposed_by_one_officer_and_approved_by_another() {
    let state = check_by(
        &four_eyes_granted(),
        officer(ACTOR),
        propose_payment("a1", eur("2500")),
        vec![payment_proposed("a1", 2_500_00, ACTOR)],
    );
    let grant = state.applications[&app("a1")].grant.as_ref().unwrap();
    assert_eq!(
        grant.payment_proposal.as_ref().map(|p| (p.amount, p.proposed_by.as_str())),
        Some((cents(2_500_00), ACTOR))
    );
    assert_eq!(grant.paid, Amount::ZERO, "a proposal pays nothing");

    // The payment is made as proposed: value date and bank reference too.
    let history = and(
        four_eyes_granted(),
        vec![Event::PaymentProposed {
            application: app("a1"),
            amount: cents(2_500_00),
            value_date: day("2024-03-15"),
            bank_reference: "NL91ABNA0417164300-0002".into(),
            proposed_by: ACTOR.into(),
        }],
    );
    let state = check_by(
        &history,
        officer(SECOND_OFFICER),
        approve_payment("a1"),
        vec![Event::PaymentMade {
            application: app("a1"),
            tranche: 1,
            amount: cents(2_500_00),
            attribution: vec![free("bzk", 1_500_00), free("porticus", 1_000_00)],
            value_date: day("2024-03-15"),
            bank_reference: "NL91ABNA0417164300-0002".into(),
        }],
    );
    let grant = state.applications[&app("a1")].grant.as_ref().unwrap();
    assert_eq!((grant.paid, grant.payment_proposal.as_ref()), (cents(2_500_00), None));
}

#[test]
fn withdrawing_a_grant_clears_its_payment_proposal() {
    let history = and(four_eyes_granted(), vec![payment_proposed("a1", 2_500_00, ACTOR)]);
    let state = check(
        &history,
        withdraw_grant("a1"),
        vec![grant_withdrawn("a1", vec![free("bzk", 6_000_00), free("porticus", 4_000_00)])],
    );
    assert_eq!(state.applications[&app("a1")].grant.as_ref().unwrap().payment_proposal, None);
}

#[test]
fn declare_conflict_records_the_officer() {
    let state = check_by(
        &applied(),
        officer(SECOND_OFFICER),
        declare_conflict("a1"),
        vec![conflict_declared("a1", SECOND_OFFICER)],
    );
    assert_eq!(state.applications[&app("a1")].conflicts, BTreeSet::from([SECOND_OFFICER.to_string()]));
}

/// Every command that decides, approves or pays on an application, in a
/// history where it would be accepted: after officer Jansen declares a
/// conflict of interest they are refused, while officer Bakker may still.
#[test]
fn a_conflicted_officer_may_not_decide_approve_or_pay_but_another_officer_may() {
    let cases = [
        (applied(), reject("a1")),
        (applied(), award("a1", eur("5000"))),
        (applied(), propose_award("a1", eur("5000"))),
        (and(applied(), vec![award_proposed("a1", 5_000_00, THIRD_OFFICER)]), approve_award("a1")),
        (granted(), reduce("a1", eur("1000"))),
        (granted(), withdraw_grant("a1")),
        (granted(), settle("a1", eur("9000"))),
        (granted(), pay("a1", eur("1000"))),
        (granted(), propose_payment("a1", eur("1000"))),
        (and(granted(), vec![payment_proposed("a1", 1_000_00, THIRD_OFFICER)]), approve_payment("a1")),
        (partly_paid(), refund("a1", eur("100"))),
    ];
    let names: BTreeSet<&str> = cases.iter().map(|(_, command)| command.name()).collect();
    assert_eq!(names.len(), cases.len(), "each deciding command once");
    for (history, command) in cases {
        let history = and(history, vec![conflict_declared("a1", ACTOR)]);
        check_rejected_by(
            &history,
            officer(ACTOR),
            command.clone(),
            Rejection::ConflictOfInterest { principal: ACTOR.into(), application: "a1".into() },
        );
        let other = decide(&given(&history), &command, &ctx(officer(SECOND_OFFICER)));
        assert!(other.is_ok(), "{} by another officer: {other:?}", command.name());
    }
}

#[test]
fn a_conflicted_officer_may_still_submit_but_not_withdraw() {
    let history = and(applied(), vec![conflict_declared("a1", ACTOR)]);
    // Recording a withdrawal ends the application: that is deciding on it.
    check_rejected_by(
        &history,
        officer(ACTOR),
        withdraw_application("a1"),
        Rejection::ConflictOfInterest { principal: ACTOR.into(), application: "a1".into() },
    );
    check_by(&history, officer(SECOND_OFFICER), withdraw_application("a1"), vec![application_withdrawn("a1")]);
    // Submitting is not deciding: the submission gets past the conflict to
    // the ordinary rules.
    check_rejected_by(
        &history,
        officer(ACTOR),
        submit("a1", "r2", eur("1")),
        Rejection::ApplicationAlreadyExists { application: "a1".into() },
    );
    check_by(&history, officer(ACTOR), submit("a2", "r1", eur("1000")), vec![submitted("a2", "r1", 1_000_00)]);
}

#[test]
fn money_for_a_closed_rounds_earmark_can_still_be_received() {
    // The bank holds it: the ledger must be able to book it.
    let history = and(opened(), vec![pledged("vfonds", Some("r2"), 100_00), round_closed("r2")]);
    check(&history, receive("vfonds", Some("r2"), eur("1")), vec![received("vfonds", Some("r2"), 1_00)]);
}

#[test]
fn thresholds_can_be_set_on_a_closed_round_whose_payments_go_on() {
    let history = and(opened(), vec![round_closed("r1")]);
    check_by(
        &history,
        admin(),
        set_thresholds("r1", None, Some(eur("5000"))),
        vec![thresholds_set("r1", None, Some(5_000_00))],
    );
}

#[test]
fn a_conflicted_proposers_proposal_cannot_be_approved() {
    let history =
        and(applied(), vec![award_proposed("a1", 1_000_00, SECOND_OFFICER), conflict_declared("a1", SECOND_OFFICER)]);
    check_rejected_by(
        &history,
        officer(ACTOR),
        approve_award("a1"),
        Rejection::ConflictOfInterest { principal: SECOND_OFFICER.into(), application: "a1".into() },
    );
}

#[test]
fn a_conflict_binds_only_its_own_application() {
    let history = and(applied(), vec![submitted("a2", "r1", 1_000_00), conflict_declared("a1", ACTOR)]);
    check_by(&history, officer(ACTOR), reject("a2"), vec![application_rejected("a2")]);
}

// ----- amounts: exact or refused -----

#[test]
fn parse_takes_exact_decimals() {
    let cases =
        [("12500.00", "12500.00"), ("0.01", "0.01"), ("1.230", "1.230"), (" 7 ", "7"), ("-5", "-5"), ("0", "0")];
    for (text, value) in cases {
        let input = MoneyInput::parse(text, "EUR").unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(input.value.to_string(), value, "{text:?}");
        assert_eq!(input.currency, "EUR");
    }
}

#[test]
fn parse_refuses_what_is_not_a_plain_decimal() {
    for text in [
        "abc", "1e30", "1E3", "", " ", "-", "+5", "1.", ".5", "12,50", "1 000", "1_000", "0x10", "--5", "1.2.3", "NaN",
        "∞",
    ] {
        assert_eq!(MoneyInput::parse(text, "EUR"), Err(AmountError::Malformed { value: text.into() }), "{text:?}");
    }
}

#[test]
fn parse_refuses_numbers_too_large_to_hold() {
    let text = "99999999999999999999999999999";
    assert_eq!(
        MoneyInput::parse(text, "EUR"),
        Err(AmountError::TooLarge { value: text.into(), max: "EUR 1,000,000,000".into() })
    );
    // A long fraction is not "large": it is refused as too many digits.
    let text = "1.00000000000000000000000000001";
    assert_eq!(MoneyInput::parse(text, "EUR"), Err(AmountError::TooManyDigits { value: text.into() }));
}

#[test]
fn conversion_to_euro_cents() {
    let eur_currency = Currency::eur();
    let cases = [("12500.00", 12_500_00), ("0.01", 1), ("1.230", 1_23), ("7", 7_00), ("1000000000", 100_000_000_000)];
    for (text, minor) in cases {
        assert_eq!(eur_currency.to_amount(&eur(text), false), Ok(cents(minor)), "{text:?}");
    }
}

#[test]
fn conversion_refuses_with_the_reason() {
    let eur_currency = Currency::eur();
    let too_precise =
        |value: &str| AmountError::TooPrecise { value: value.into(), currency: "EUR".into(), minor_units: 2 };
    let not_positive = |value: &str| AmountError::NotPositive { value: value.into(), zero_allowed: false };
    let cases = [
        (eur("1.234"), too_precise("1.234")),
        (eur("0.001"), too_precise("0.001")),
        (eur("-5"), not_positive("-5")),
        (eur("-1.234"), not_positive("-1.234")),
        (eur("0"), not_positive("0")),
        (eur("0.00"), not_positive("0.00")),
        (
            eur("1000000000.01"),
            AmountError::TooLarge { value: "1000000000.01".into(), max: "EUR 1,000,000,000.00".into() },
        ),
        (eur("5000000000"), AmountError::TooLarge { value: "5000000000".into(), max: "EUR 1,000,000,000.00".into() }),
        (
            MoneyInput::parse("100", "USD").unwrap(),
            AmountError::CurrencyMismatch { given: "USD".into(), expected: "EUR".into() },
        ),
        (
            MoneyInput::parse("100", "eur").unwrap(),
            AmountError::CurrencyMismatch { given: "eur".into(), expected: "EUR".into() },
        ),
    ];
    for (input, error) in cases {
        assert_eq!(eur_currency.to_amount(&input, false), Err(error), "{input:?}");
    }
}

#[test]
fn zero_is_allowed_only_where_asked_for() {
    let eur_currency = Currency::eur();
    assert_eq!(eur_currency.to_amount(&eur("0"), true), Ok(Amount::ZERO));
    assert_eq!(eur_currency.to_amount(&eur("0.00"), true), Ok(Amount::ZERO));
    assert_eq!(
        eur_currency.to_amount(&eur("-5"), true),
        Err(AmountError::NotPositive { value: "-5".into(), zero_allowed: true })
    );
}

#[test]
fn a_currency_without_minor_units_refuses_cents() {
    let yen = Currency::new("JPY", 0).unwrap();
    let input = MoneyInput::parse("1500.5", "JPY").unwrap();
    assert_eq!(
        yen.to_amount(&input, false),
        Err(AmountError::TooPrecise { value: "1500.5".into(), currency: "JPY".into(), minor_units: 0 })
    );
    assert_eq!(yen.to_amount(&MoneyInput::parse("1500.000", "JPY").unwrap(), false), Ok(cents(1500)));
    assert_eq!(yen.display(cents(1_234_567)), "JPY 1,234,567");
}

#[test]
fn amount_errors_read_well() {
    let eur_currency = Currency::eur();
    let message = |input: &MoneyInput| eur_currency.to_amount(input, false).unwrap_err().to_string();
    assert_eq!(message(&eur("1.234")), "1.234 has more decimals than EUR has (2); it is refused, not rounded");
    assert_eq!(message(&eur("-5")), "-5 must be greater than zero");
    assert_eq!(message(&eur("0")), "0 must be greater than zero");
    assert_eq!(
        message(&eur("1000000000.01")),
        "1000000000.01 exceeds the largest amount one command may carry, EUR 1,000,000,000.00"
    );
    assert_eq!(message(&MoneyInput::parse("100", "USD").unwrap()), "is in USD but this fund keeps its books in EUR");
    assert_eq!(
        MoneyInput::parse("1e30", "EUR").unwrap_err().to_string(),
        "\"1e30\" is not a decimal number such as \"12500.00\""
    );
    assert_eq!(eur_currency.to_amount(&eur("-5"), true).unwrap_err().to_string(), "-5 must be zero or more");
}

#[test]
fn money_input_deserializes_exactly_or_not_at_all() {
    let json = |value: &str| format!(r#"{{"value":"{value}","currency":"EUR"}}"#);
    let input: MoneyInput = serde_json::from_str(&json("12500.50")).unwrap();
    assert_eq!(input, eur("12500.50"));
    assert_eq!(serde_json::to_string(&input).unwrap(), json("12500.50"), "the text round-trips as it was sent");
    // The stored form (bincode over serde) reads back what it wrote, to the
    // last of 28 decimals.
    for text in ["12500.50", "-5", "0.0000000000000000000000000001", "79228162514264337593543950335"] {
        let input = eur(text);
        let bytes = bincode::serde::encode_to_vec(&input, bincode::config::legacy()).unwrap();
        let (back, _): (MoneyInput, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::legacy()).unwrap();
        assert_eq!(back, input);
        assert_eq!(back.value.to_string(), text);
    }
    // `Decimal`'s own parser would round this to 1.0000000000000000000000000000,
    // which the fund would then take as EUR 1.00.
    for text in ["1.00000000000000000000000000001", "abc", "1e30", "1_000", ""] {
        assert!(serde_json::from_str::<MoneyInput>(&json(text)).is_err(), "{text:?} must be refused");
    }
}

#[test]
fn amounts_are_shown_with_the_currency_and_grouped_thousands() {
    let cases =
        [(0, "EUR 0.00"), (5, "EUR 0.05"), (1_00, "EUR 1.00"), (999_99, "EUR 999.99"), (1_000_00, "EUR 1,000.00")];
    for (minor, text) in cases {
        assert_eq!(shown(minor), text);
    }
    assert_eq!(shown(12_000_00), "EUR 12,000.00");
    assert_eq!(shown(123_456_789_01), "EUR 123,456,789.01");
    assert_eq!(Currency::eur().plain(cents(12_500_00)), "12500.00");
}

#[test]
fn currencies_are_validated() {
    assert_eq!(Currency::new("EUR", 2), Ok(Currency::eur()));
    assert!(Currency::new("eur", 2).is_err());
    assert!(Currency::new("EURO", 2).is_err());
    assert!(Currency::new("EUR", 5).is_err());
}

/// A command with one amount left open.
type AmountCommand = fn(MoneyInput) -> Command;

/// Every amount-bearing command refuses a bad amount before anything else,
/// naming the field; only a settlement's final amount may be zero.
#[test]
fn every_amount_field_is_converted_exactly() {
    let amount_commands: Vec<(&str, AmountCommand)> = vec![
        ("amount", |m| pledge("bzk", None, m)),
        ("amount", |m| reduce_pledge("bzk", None, m)),
        ("amount", |m| receive("bzk", None, m)),
        ("budget_ceiling", |m| open_round("r9", m, eur("1"))),
        ("grant_max", |m| open_round("r9", eur("100000"), m)),
        ("amount_requested", |m| submit("a9", "r1", m)),
        ("amount", |m| award("a9", m)),
        ("amount", |m| reduce("a9", m)),
        ("amount", |m| pay("a9", m)),
        ("amount", |m| refund("a9", m)),
        ("final_amount", |m| settle("a9", m)),
        ("amount", |m| propose_award("a9", m)),
        ("amount", |m| propose_payment("a9", m)),
        ("award_above", |m| set_thresholds("r1", Some(m), None)),
        ("payment_above", |m| set_thresholds("r1", None, Some(m))),
    ];
    for (field, command) in amount_commands {
        let zero_allowed = field == "final_amount";
        let refusals = [
            (eur("1.234"), AmountError::TooPrecise { value: "1.234".into(), currency: "EUR".into(), minor_units: 2 }),
            (eur("-5"), AmountError::NotPositive { value: "-5".into(), zero_allowed }),
            (
                eur("1000000000.01"),
                AmountError::TooLarge { value: "1000000000.01".into(), max: "EUR 1,000,000,000.00".into() },
            ),
            (
                MoneyInput::parse("5", "USD").unwrap(),
                AmountError::CurrencyMismatch { given: "USD".into(), expected: "EUR".into() },
            ),
        ];
        for (input, error) in refusals {
            check_rejected(&opened(), command(input), Rejection::InvalidAmount { field, error });
        }
        let zero = command(eur("0"));
        let zero = decide(&given(&opened()), &zero, &ctx(permitted(&zero)));
        if zero_allowed {
            // Past the amount, the settlement fails on the unknown application.
            assert_eq!(zero, Err(Rejection::UnknownApplication { application: "a9".into() }));
        } else {
            assert_eq!(
                zero,
                Err(Rejection::InvalidAmount {
                    field,
                    error: AmountError::NotPositive { value: "0".into(), zero_allowed }
                })
            );
        }
    }
}

// ----- every rejection -----

/// The stable code and the API classification of every rejection. The match
/// has no wildcard, so a new variant does not compile until it is listed
/// here and in `REJECTION_CODES`, and then `every_rejection_is_produced`
/// fails until a case in `rejection_cases` produces it.
fn expected_code_and_kind(rejection: &Rejection) -> (&'static str, RejectionKind) {
    use Rejection::*;
    use RejectionKind::*;
    match rejection {
        InvalidAmount { .. } => ("invalid_amount", InvalidArgument),
        InvalidText { .. } => ("invalid_text", InvalidArgument),
        FundNotOpened => ("fund_not_opened", NotFound),
        UnknownPartner { .. } => ("unknown_partner", NotFound),
        UnknownRound { .. } => ("unknown_round", NotFound),
        UnknownApplication { .. } => ("unknown_application", NotFound),
        FundAlreadyOpened { .. } => ("fund_already_opened", FailedPrecondition),
        PartnerAlreadyAdmitted { .. } => ("partner_already_admitted", FailedPrecondition),
        RoundAlreadyExists { .. } => ("round_already_exists", FailedPrecondition),
        ApplicationAlreadyExists { .. } => ("application_already_exists", FailedPrecondition),
        RoundDatesInverted { .. } => ("round_dates_inverted", FailedPrecondition),
        GrantMaxAboveCeiling { .. } => ("grant_max_above_ceiling", FailedPrecondition),
        RoundClosed { .. } => ("round_closed", FailedPrecondition),
        FundPledgeLimit { .. } => ("fund_pledge_limit", FailedPrecondition),
        PledgeReductionExceedsOutstanding { .. } => ("pledge_reduction_exceeds_outstanding", FailedPrecondition),
        ReceiptExceedsOutstandingPledge { .. } => ("receipt_exceeds_outstanding_pledge", FailedPrecondition),
        SubmissionOutsideRoundWindow { .. } => ("submission_outside_round_window", FailedPrecondition),
        RequestAboveGrantMax { .. } => ("request_above_grant_max", FailedPrecondition),
        ApplicationNotPending { .. } => ("application_not_pending", FailedPrecondition),
        AwardAboveRequested { .. } => ("award_above_requested", FailedPrecondition),
        AwardAboveGrantMax { .. } => ("award_above_grant_max", FailedPrecondition),
        AwardExceedsRoundBudget { .. } => ("award_exceeds_round_budget", FailedPrecondition),
        InsufficientAvailable { .. } => ("insufficient_available", FailedPrecondition),
        NotAwarded { .. } => ("not_awarded", FailedPrecondition),
        GrantNotActive { .. } => ("grant_not_active", FailedPrecondition),
        PaymentOnWithdrawnGrant { .. } => ("payment_on_withdrawn_grant", FailedPrecondition),
        PaymentExceedsOpen { .. } => ("payment_exceeds_open", FailedPrecondition),
        RefundExceedsNetPaid { .. } => ("refund_exceeds_net_paid", FailedPrecondition),
        ReductionExceedsOpen { .. } => ("reduction_exceeds_open", FailedPrecondition),
        ReductionEmptiesGrant { .. } => ("reduction_empties_grant", FailedPrecondition),
        SettlementAboveGrant { .. } => ("settlement_above_grant", FailedPrecondition),
        SettlementBelowNetPaid { .. } => ("settlement_below_net_paid", FailedPrecondition),
        // `RejectionKind` has a variant of the same name.
        Rejection::PermissionDenied { .. } => ("permission_denied", RejectionKind::PermissionDenied),
        UnknownPrincipal { .. } => ("unknown_principal", NotFound),
        PrincipalAlreadyActive { .. } => ("principal_already_active", FailedPrecondition),
        PrincipalAlreadyRevoked { .. } => ("principal_already_revoked", FailedPrecondition),
        TokenInUse { .. } => ("token_in_use", FailedPrecondition),
        FourEyesRequired { .. } => ("four_eyes_required", FailedPrecondition),
        ProposalPending { .. } => ("proposal_pending", FailedPrecondition),
        NoProposal { .. } => ("no_proposal", FailedPrecondition),
        SelfApproval { .. } => ("self_approval", FailedPrecondition),
        ConflictOfInterest { .. } => ("conflict_of_interest", FailedPrecondition),
        ConflictAlreadyDeclared { .. } => ("conflict_already_declared", FailedPrecondition),
        LastAdmin { .. } => ("last_admin", FailedPrecondition),
        RoundRequestsLimit { .. } => ("round_requests_limit", FailedPrecondition),
    }
}

const REJECTION_CODES: [&str; 45] = [
    "invalid_amount",
    "invalid_text",
    "fund_not_opened",
    "unknown_partner",
    "unknown_round",
    "unknown_application",
    "fund_already_opened",
    "partner_already_admitted",
    "round_already_exists",
    "application_already_exists",
    "round_dates_inverted",
    "grant_max_above_ceiling",
    "round_closed",
    "fund_pledge_limit",
    "pledge_reduction_exceeds_outstanding",
    "receipt_exceeds_outstanding_pledge",
    "submission_outside_round_window",
    "request_above_grant_max",
    "application_not_pending",
    "award_above_requested",
    "award_above_grant_max",
    "award_exceeds_round_budget",
    "insufficient_available",
    "not_awarded",
    "grant_not_active",
    "payment_on_withdrawn_grant",
    "payment_exceeds_open",
    "refund_exceeds_net_paid",
    "reduction_exceeds_open",
    "reduction_empties_grant",
    "settlement_above_grant",
    "settlement_below_net_paid",
    "permission_denied",
    "unknown_principal",
    "principal_already_active",
    "principal_already_revoked",
    "token_in_use",
    "four_eyes_required",
    "proposal_pending",
    "no_proposal",
    "self_approval",
    "conflict_of_interest",
    "conflict_already_declared",
    "last_admin",
    "round_requests_limit",
];

struct RejectionCase {
    name: &'static str,
    given: Vec<Event>,
    by: Actor,
    when: Command,
    then: Rejection,
}

/// A case whose command is sent by an actor permitted to send it.
fn case(name: &'static str, given: Vec<Event>, when: Command, then: Rejection) -> RejectionCase {
    case_by(name, given, permitted(&when), when, then)
}

fn case_by(name: &'static str, given: Vec<Event>, by: Actor, when: Command, then: Rejection) -> RejectionCase {
    RejectionCase { name, given, by, when, then }
}

fn rejection_cases() -> Vec<RejectionCase> {
    use Rejection::*;
    let text = |field: &'static str, problem: &str| InvalidText { field, problem: problem.into() };
    let closed = |round: &str| RoundClosed { round: round.into(), closed_on: TODAY.into() };
    let too_precise = AmountError::TooPrecise { value: "1.234".into(), currency: "EUR".into(), minor_units: 2 };
    let settled_a1 =
        and(partly_paid(), vec![settled("a1", 8_000_00, vec![free("bzk", 1_200_00), free("porticus", 800_00)])]);
    let withdrawn_a1 =
        and(partly_paid(), vec![grant_withdrawn("a1", vec![free("bzk", 4_500_00), free("porticus", 3_000_00)])]);
    vec![
        // malformed input
        case(
            "amount too precise",
            opened(),
            pledge("bzk", None, eur("1.234")),
            InvalidAmount { field: "amount", error: too_precise },
        ),
        case(
            "fund name empty",
            vec![],
            Command::OpenFund { name: "  ".into(), currency: Currency::eur() },
            text("name", "must not be empty"),
        ),
        case(
            "fund currency in lower case",
            vec![],
            Command::OpenFund { name: FUND.into(), currency: Currency { code: "eur".into(), minor_units: 2 } },
            text("currency", "currency code must be three capital letters (ISO 4217), got \"eur\""),
        ),
        case(
            "currency with too many minor units",
            vec![],
            Command::OpenFund { name: FUND.into(), currency: Currency { code: "XYZ".into(), minor_units: 5 } },
            text("currency", "a currency has at most 4 minor units, got 5"),
        ),
        case(
            "partner name too long",
            vec![fund_opened()],
            Command::AdmitPartner { partner: partner("p"), name: "x".repeat(201), organisation_id: "NL-KVK-1".into() },
            text("name", "is 201 bytes long; at most 200 are allowed"),
        ),
        case(
            "partner without organisation id",
            vec![fund_opened()],
            Command::AdmitPartner { partner: partner("p"), name: "P".into(), organisation_id: "".into() },
            text("organisation_id", "must not be empty"),
        ),
        case(
            "control character in a bank reference",
            funded(),
            Command::RecordReceipt {
                partner: partner("porticus"),
                amount: eur("1"),
                earmark: None,
                value_date: today(),
                bank_reference: "REF\u{7}1".into(),
            },
            text("bank_reference", "must not contain control characters"),
        ),
        case(
            "country spelled out",
            opened(),
            Command::SubmitApplication {
                application: app("a1"),
                round: round("r1"),
                applicant: Applicant { country: "Netherlands".into(), ..applicant() },
                title: "T".into(),
                description: "".into(),
                amount_requested: eur("1"),
                submitted_on: today(),
            },
            text("applicant.country", "\"Netherlands\" is not a two-letter ISO 3166-1 country code such as NL or CW"),
        ),
        case(
            "rejection without a reason",
            applied(),
            Command::RejectApplication { application: app("a1"), reason: " \n ".into(), decided_on: today() },
            text("reason", "must not be empty"),
        ),
        // unknown things
        case("partner before the fund", vec![], admit("bzk"), FundNotOpened),
        case("payment before the fund", vec![], pay("a1", eur("1")), FundNotOpened),
        case(
            "pledge of a stranger",
            opened(),
            pledge("cirrus", None, eur("1")),
            UnknownPartner { partner: "cirrus".into() },
        ),
        case(
            "earmark for no round",
            opened(),
            pledge("bzk", Some("r9"), eur("1")),
            UnknownRound { round: "r9".into() },
        ),
        case(
            "reduction of an earmark for no round",
            opened(),
            reduce_pledge("bzk", Some("r9"), eur("1")),
            UnknownRound { round: "r9".into() },
        ),
        case("application to no round", opened(), submit("a1", "r9", eur("1")), UnknownRound { round: "r9".into() }),
        case("closing no round", opened(), close_round("r9"), UnknownRound { round: "r9".into() }),
        case(
            "award on no application",
            funded(),
            award("a9", eur("1")),
            UnknownApplication { application: "a9".into() },
        ),
        case(
            "refund on no application",
            funded(),
            refund("a9", eur("1")),
            UnknownApplication { application: "a9".into() },
        ),
        // business rules
        case("second fund", vec![fund_opened()], open_fund(), FundAlreadyOpened { name: FUND.into() }),
        case("partner twice", opened(), admit("bzk"), PartnerAlreadyAdmitted { partner: "bzk".into() }),
        case("round twice", opened(), open_round("r1", eur("1"), eur("1")), RoundAlreadyExists { round: "r1".into() }),
        case(
            "application twice",
            applied(),
            submit("a1", "r2", eur("1")),
            ApplicationAlreadyExists { application: "a1".into() },
        ),
        case(
            "round closing before it opens",
            vec![fund_opened()],
            Command::OpenRound {
                round: round("r3"),
                name: "Backwards".into(),
                budget_ceiling: eur("1000"),
                grant_max: eur("100"),
                opens_on: day("2024-07-01"),
                closes_on: day("2024-06-30"),
            },
            RoundDatesInverted { round: "r3".into(), opens_on: "2024-07-01".into(), closes_on: "2024-06-30".into() },
        ),
        case(
            "grant maximum above the ceiling",
            vec![fund_opened()],
            open_round("r3", eur("10000"), eur("15000.01")),
            GrantMaxAboveCeiling { grant_max: "EUR 15,000.01".into(), budget_ceiling: "EUR 10,000.00".into() },
        ),
        case("closing a closed round", and(opened(), vec![round_closed("r1")]), close_round("r1"), closed("r1")),
        case(
            "earmark for a closed round",
            and(opened(), vec![round_closed("r2")]),
            pledge("vfonds", Some("r2"), eur("1")),
            closed("r2"),
        ),
        case(
            "application beyond a round's total of requests",
            and(
                opened(),
                vec![round_opened("r9", 1_000_000_00, 15_000_00), submitted("huge", "r9", 100_000_000_000_000)],
            ),
            submit("a9", "r9", eur("0.01")),
            RoundRequestsLimit {
                round: "r9".into(),
                requested: "EUR 1,000,000,000,000.00".into(),
                max: "EUR 1,000,000,000,000.00".into(),
            },
        ),
        case(
            "application to a closed round",
            and(opened(), vec![round_closed("r1")]),
            submit("a1", "r1", eur("1")),
            closed("r1"),
        ),
        case("award in a closed round", and(applied(), vec![round_closed("r1")]), award("a1", eur("1")), closed("r1")),
        case("rejection in a closed round", and(applied(), vec![round_closed("r1")]), reject("a1"), closed("r1")),
        case(
            "pledge beyond the fund's limit",
            and(opened(), vec![pledged("bzk", None, 100_000_000_000_000)]),
            pledge("porticus", None, eur("0.01")),
            FundPledgeLimit {
                amount: "EUR 0.01".into(),
                pledged: "EUR 1,000,000,000,000.00".into(),
                max: "EUR 1,000,000,000,000.00".into(),
            },
        ),
        case(
            "pledge reduction beyond what is outstanding",
            funded(),
            reduce_pledge("porticus", None, eur("10000.01")),
            PledgeReductionExceedsOutstanding {
                pot: "porticus (unrestricted)".into(),
                amount: "EUR 10,000.01".into(),
                outstanding: "EUR 10,000.00".into(),
            },
        ),
        case(
            "reduction of a pledge never made",
            opened(),
            reduce_pledge("vfonds", Some("r1"), eur("1")),
            PledgeReductionExceedsOutstanding {
                pot: "vfonds (earmarked for round r1)".into(),
                amount: "EUR 1.00".into(),
                outstanding: "EUR 0.00".into(),
            },
        ),
        case(
            "receipt beyond the pledge",
            funded(),
            receive("porticus", None, eur("10000.01")),
            ReceiptExceedsOutstandingPledge {
                pot: "porticus (unrestricted)".into(),
                amount: "EUR 10,000.01".into(),
                outstanding: "EUR 10,000.00".into(),
            },
        ),
        case(
            "receipt into the wrong pot",
            funded(),
            // vfonds pledged for r2 only; nothing is outstanding unrestricted.
            receive("vfonds", None, eur("5")),
            ReceiptExceedsOutstandingPledge {
                pot: "vfonds (unrestricted)".into(),
                amount: "EUR 5.00".into(),
                outstanding: "EUR 0.00".into(),
            },
        ),
        case(
            "application before the round opens",
            opened(),
            submit_on("a1", "r1", eur("1"), "2023-12-31"),
            SubmissionOutsideRoundWindow {
                round: "r1".into(),
                submitted_on: "2023-12-31".into(),
                opens_on: OPENS.into(),
                closes_on: CLOSES.into(),
            },
        ),
        case(
            "application after the round closes",
            opened(),
            submit_on("a1", "r1", eur("1"), "2024-07-01"),
            SubmissionOutsideRoundWindow {
                round: "r1".into(),
                submitted_on: "2024-07-01".into(),
                opens_on: OPENS.into(),
                closes_on: CLOSES.into(),
            },
        ),
        case(
            "request above the maximum per grant",
            opened(),
            submit("a1", "r1", eur("15000.01")),
            RequestAboveGrantMax {
                round: "r1".into(),
                requested: "EUR 15,000.01".into(),
                grant_max: "EUR 15,000.00".into(),
            },
        ),
        case(
            "withdrawing an awarded application",
            granted(),
            withdraw_application("a1"),
            ApplicationNotPending { application: "a1".into(), status: "awarded".into() },
        ),
        case(
            "rejecting a withdrawn application",
            and(applied(), vec![application_withdrawn("a1")]),
            reject("a1"),
            ApplicationNotPending { application: "a1".into(), status: "withdrawn".into() },
        ),
        case(
            "awarding a rejected application",
            and(applied(), vec![application_rejected("a1")]),
            award("a1", eur("1")),
            ApplicationNotPending { application: "a1".into(), status: "rejected".into() },
        ),
        case(
            "awarding twice",
            granted(),
            award("a1", eur("1")),
            ApplicationNotPending { application: "a1".into(), status: "awarded".into() },
        ),
        case(
            "award above the request",
            applied(),
            award("a1", eur("10000.01")),
            AwardAboveRequested {
                application: "a1".into(),
                amount: "EUR 10,000.01".into(),
                requested: "EUR 10,000.00".into(),
            },
        ),
        case(
            // `decide` refuses such a request at submission; the award checks
            // again in case the history holds one (an older schema, say).
            "award above the maximum per grant",
            and(funded(), vec![submitted("a1", "r2", 12_000_00)]),
            award("a1", eur("12000")),
            AwardAboveGrantMax {
                round: "r2".into(),
                amount: "EUR 12,000.00".into(),
                grant_max: "EUR 10,000.00".into(),
            },
        ),
        case(
            "award beyond the round's budget",
            and(
                funded(),
                vec![
                    round_opened("small", 15_000_00, 10_000_00),
                    submitted("a1", "small", 10_000_00),
                    submitted("a2", "small", 8_000_00),
                    awarded("a1", 10_000_00, vec![free("bzk", 6_000_00), free("porticus", 4_000_00)]),
                ],
            ),
            award("a2", eur("5000.01")),
            AwardExceedsRoundBudget {
                round: "small".into(),
                amount: "EUR 5,000.01".into(),
                budget_left: "EUR 5,000.00".into(),
                budget_ceiling: "EUR 15,000.00".into(),
            },
        ),
        case(
            "award beyond the money available to the round",
            // vfonds's money is earmarked for r2, so r1 has only bzk's 5,000.00.
            and(
                opened(),
                vec![
                    pledged("bzk", None, 5_000_00),
                    received("bzk", None, 5_000_00),
                    pledged("vfonds", Some("r2"), 10_000_00),
                    received("vfonds", Some("r2"), 10_000_00),
                    pledged("porticus", None, 10_000_00),
                    submitted("a1", "r1", 6_000_00),
                ],
            ),
            award("a1", eur("6000")),
            InsufficientAvailable {
                round: "r1".into(),
                amount: "EUR 6,000.00".into(),
                available: "EUR 5,000.00".into(),
            },
        ),
        case(
            "payment on a pending application",
            applied(),
            pay("a1", eur("1")),
            NotAwarded { application: "a1".into(), status: "pending".into() },
        ),
        case(
            "reduction of a rejected application",
            and(applied(), vec![application_rejected("a1")]),
            reduce("a1", eur("1")),
            NotAwarded { application: "a1".into(), status: "rejected".into() },
        ),
        case(
            "reducing a settled grant",
            settled_a1.clone(),
            reduce("a1", eur("1")),
            GrantNotActive { application: "a1".into(), status: "settled".into() },
        ),
        case(
            "settling a withdrawn grant",
            withdrawn_a1.clone(),
            settle("a1", eur("2500")),
            GrantNotActive { application: "a1".into(), status: "withdrawn".into() },
        ),
        case(
            "withdrawing a withdrawn grant",
            withdrawn_a1.clone(),
            withdraw_grant("a1"),
            GrantNotActive { application: "a1".into(), status: "withdrawn".into() },
        ),
        case(
            "payment on a withdrawn grant",
            withdrawn_a1,
            pay("a1", eur("1")),
            PaymentOnWithdrawnGrant { application: "a1".into() },
        ),
        case(
            "payment beyond the open amount",
            partly_paid(),
            pay("a1", eur("7500.01")),
            PaymentExceedsOpen { application: "a1".into(), amount: "EUR 7,500.01".into(), open: "EUR 7,500.00".into() },
        ),
        case(
            "payment beyond a settled grant",
            settled_a1,
            pay("a1", eur("5500.01")),
            PaymentExceedsOpen { application: "a1".into(), amount: "EUR 5,500.01".into(), open: "EUR 5,500.00".into() },
        ),
        case(
            "refund beyond what was paid",
            partly_paid(),
            refund("a1", eur("2500.01")),
            RefundExceedsNetPaid {
                application: "a1".into(),
                amount: "EUR 2,500.01".into(),
                net_paid: "EUR 2,500.00".into(),
            },
        ),
        case(
            "refund beyond what was paid net of refunds",
            and(
                partly_paid(),
                vec![refunded("a1", 2_000_00, vec![free("bzk", 1_200_00), free("porticus", 800_00)], false)],
            ),
            refund("a1", eur("500.01")),
            RefundExceedsNetPaid {
                application: "a1".into(),
                amount: "EUR 500.01".into(),
                net_paid: "EUR 500.00".into(),
            },
        ),
        case(
            "reduction beyond what is not yet paid",
            partly_paid(),
            reduce("a1", eur("7500.01")),
            ReductionExceedsOpen {
                application: "a1".into(),
                amount: "EUR 7,500.01".into(),
                open: "EUR 7,500.00".into(),
            },
        ),
        case(
            "reduction to nothing",
            granted(),
            reduce("a1", eur("10000")),
            ReductionEmptiesGrant {
                application: "a1".into(),
                amount: "EUR 10,000.00".into(),
                grant_amount: "EUR 10,000.00".into(),
            },
        ),
        case(
            "settlement above the grant",
            partly_paid(),
            settle("a1", eur("10000.01")),
            SettlementAboveGrant {
                application: "a1".into(),
                final_amount: "EUR 10,000.01".into(),
                grant_amount: "EUR 10,000.00".into(),
            },
        ),
        case(
            "settlement below what was paid",
            partly_paid(),
            settle("a1", eur("2499.99")),
            SettlementBelowNetPaid {
                application: "a1".into(),
                final_amount: "EUR 2,499.99".into(),
                net_paid: "EUR 2,500.00".into(),
            },
        ),
        // access control: who may send what
        case_by(
            "auditor deciding",
            applied(),
            auditor(),
            reject("a1"),
            PermissionDenied { principal: AUDITOR.into(), role: "auditor".into(), action: "RejectApplication".into() },
        ),
        case_by(
            // Permission comes first: an auditor learns nothing about the state.
            "auditor paying before the fund exists",
            vec![],
            auditor(),
            pay("a1", eur("1")),
            PermissionDenied { principal: AUDITOR.into(), role: "auditor".into(), action: "MakePayment".into() },
        ),
        case_by(
            "officer opening a round",
            opened(),
            officer(ACTOR),
            open_round("r3", eur("1000"), eur("100")),
            PermissionDenied { principal: ACTOR.into(), role: "officer".into(), action: "OpenRound".into() },
        ),
        case_by(
            "admin awarding",
            applied(),
            admin(),
            award("a1", eur("1")),
            PermissionDenied { principal: ADMIN.into(), role: "admin".into(), action: "AwardGrant".into() },
        ),
        case_by(
            "partner pledging for another partner",
            opened(),
            treasurer("bzk"),
            pledge("porticus", None, eur("1")),
            PermissionDenied {
                principal: "bzk.treasurer".into(),
                role: "partner bzk".into(),
                action: "PledgeContribution".into(),
            },
        ),
        case_by(
            "partner reducing another partner's pledge",
            funded(),
            treasurer("bzk"),
            reduce_pledge("porticus", None, eur("1")),
            PermissionDenied {
                principal: "bzk.treasurer".into(),
                role: "partner bzk".into(),
                action: "ReducePledge".into(),
            },
        ),
        case_by(
            "partner giving access",
            opened(),
            treasurer("porticus"),
            grant_access("porticus.intern", Role::Partner(partner("porticus")), 9),
            PermissionDenied {
                principal: "porticus.treasurer".into(),
                role: "partner porticus".into(),
                action: "GrantAccess".into(),
            },
        ),
        // access control: principals
        case(
            "access given twice",
            and(opened(), vec![access_granted(SECOND_OFFICER, Role::Officer, 2)]),
            grant_access(SECOND_OFFICER, Role::Auditor, 3),
            PrincipalAlreadyActive { principal: SECOND_OFFICER.into() },
        ),
        case(
            "token already in use",
            and(opened(), vec![access_granted(SECOND_OFFICER, Role::Officer, 2)]),
            grant_access(THIRD_OFFICER, Role::Officer, 2),
            TokenInUse { principal: SECOND_OFFICER.into() },
        ),
        case(
            "partner role for a partner not admitted",
            opened(),
            grant_access("cirrus.treasurer", Role::Partner(partner("cirrus")), 4),
            UnknownPartner { partner: "cirrus".into() },
        ),
        case("revoking no one", opened(), revoke_access("nobody"), UnknownPrincipal { principal: "nobody".into() }),
        case(
            "revoking the last admin",
            and(opened(), vec![access_granted(ADMIN, Role::Admin, 1)]),
            revoke_access(ADMIN),
            LastAdmin { principal: ADMIN.into() },
        ),
        case(
            "a revoked principal's token given again",
            and(opened(), vec![access_granted(SECOND_OFFICER, Role::Officer, 2), access_revoked(SECOND_OFFICER)]),
            grant_access("newcomer", Role::Officer, 2),
            TokenInUse { principal: SECOND_OFFICER.into() },
        ),
        case(
            "revoking twice",
            and(opened(), vec![access_granted(SECOND_OFFICER, Role::Officer, 2), access_revoked(SECOND_OFFICER)]),
            revoke_access(SECOND_OFFICER),
            PrincipalAlreadyRevoked { principal: SECOND_OFFICER.into() },
        ),
        case(
            "revocation without a reason",
            and(opened(), vec![access_granted(SECOND_OFFICER, Role::Officer, 2)]),
            Command::RevokeAccess { principal: principal(SECOND_OFFICER), reason: "".into() },
            text("reason", "must not be empty"),
        ),
        // access control: four-eyes thresholds
        case(
            "thresholds for no round",
            opened(),
            set_thresholds("r9", None, Some(eur("5000"))),
            UnknownRound { round: "r9".into() },
        ),
        case(
            "award threshold of zero",
            opened(),
            set_thresholds("r1", Some(eur("0")), None),
            InvalidAmount {
                field: "award_above",
                error: AmountError::NotPositive { value: "0".into(), zero_allowed: false },
            },
        ),
        case(
            "payment threshold too precise",
            opened(),
            set_thresholds("r1", Some(eur("5000")), Some(eur("1.234"))),
            InvalidAmount {
                field: "payment_above",
                error: AmountError::TooPrecise { value: "1.234".into(), currency: "EUR".into(), minor_units: 2 },
            },
        ),
        // access control: four eyes
        case(
            "award above the four-eyes threshold by one officer",
            four_eyes(),
            award("a1", eur("5000.01")),
            FourEyesRequired {
                what: "award",
                application: "a1".into(),
                round: "r1".into(),
                amount: "EUR 5,000.01".into(),
                threshold: "EUR 5,000.00".into(),
            },
        ),
        case(
            "a payment split in tranches to stay under the four-eyes threshold",
            and(four_eyes_granted(), vec![paid("a1", 1, 1_500_00, vec![free("porticus", 1_500_00)])]),
            pay("a1", eur("500.01")),
            FourEyesRequired {
                what: "total paid with this payment",
                application: "a1".into(),
                round: "r1".into(),
                amount: "EUR 2,000.01".into(),
                threshold: "EUR 2,000.00".into(),
            },
        ),
        case(
            "payment above the four-eyes threshold by one officer",
            four_eyes_granted(),
            pay("a1", eur("2000.01")),
            FourEyesRequired {
                what: "total paid with this payment",
                application: "a1".into(),
                round: "r1".into(),
                amount: "EUR 2,000.01".into(),
                threshold: "EUR 2,000.00".into(),
            },
        ),
        case_by(
            "second award proposal",
            and(four_eyes(), vec![award_proposed("a1", 8_000_00, ACTOR)]),
            officer(SECOND_OFFICER),
            propose_award("a1", eur("6000")),
            ProposalPending {
                what: "award",
                application: "a1".into(),
                amount: "EUR 8,000.00".into(),
                proposed_by: ACTOR.into(),
            },
        ),
        case_by(
            "second payment proposal",
            and(four_eyes_granted(), vec![payment_proposed("a1", 2_500_00, ACTOR)]),
            officer(SECOND_OFFICER),
            propose_payment("a1", eur("100")),
            ProposalPending {
                what: "payment",
                application: "a1".into(),
                amount: "EUR 2,500.00".into(),
                proposed_by: ACTOR.into(),
            },
        ),
        case(
            "approving no award proposal",
            four_eyes(),
            approve_award("a1"),
            NoProposal { what: "award", application: "a1".into() },
        ),
        case(
            "approving no payment proposal",
            four_eyes_granted(),
            approve_payment("a1"),
            NoProposal { what: "payment", application: "a1".into() },
        ),
        case_by(
            "approving a payment proposal that withdrawing the grant cleared",
            and(
                four_eyes_granted(),
                vec![
                    payment_proposed("a1", 2_500_00, ACTOR),
                    grant_withdrawn("a1", vec![free("bzk", 6_000_00), free("porticus", 4_000_00)]),
                ],
            ),
            officer(SECOND_OFFICER),
            approve_payment("a1"),
            NoProposal { what: "payment", application: "a1".into() },
        ),
        case_by(
            "approving an award proposal of an application rejected since",
            and(four_eyes(), vec![award_proposed("a1", 8_000_00, ACTOR), application_rejected("a1")]),
            officer(SECOND_OFFICER),
            approve_award("a1"),
            ApplicationNotPending { application: "a1".into(), status: "rejected".into() },
        ),
        case_by(
            "approving one's own award",
            and(four_eyes(), vec![award_proposed("a1", 8_000_00, ACTOR)]),
            officer(ACTOR),
            approve_award("a1"),
            SelfApproval { what: "award", principal: ACTOR.into(), application: "a1".into() },
        ),
        case_by(
            "approving one's own payment",
            and(four_eyes_granted(), vec![payment_proposed("a1", 2_500_00, SECOND_OFFICER)]),
            officer(SECOND_OFFICER),
            approve_payment("a1"),
            SelfApproval { what: "payment", principal: SECOND_OFFICER.into(), application: "a1".into() },
        ),
        case(
            "award proposal beyond the money available",
            and(
                opened(),
                vec![pledged("bzk", None, 7_000_00), received("bzk", None, 7_000_00), submitted("a1", "r1", 10_000_00)],
            ),
            propose_award("a1", eur("10000")),
            InsufficientAvailable {
                round: "r1".into(),
                amount: "EUR 10,000.00".into(),
                available: "EUR 7,000.00".into(),
            },
        ),
        case_by(
            // The money is checked again at approval: another award took it
            // while the proposal waited.
            "award that became unaffordable before its approval",
            and(
                opened(),
                vec![
                    pledged("bzk", None, 12_000_00),
                    received("bzk", None, 12_000_00),
                    submitted("a1", "r1", 10_000_00),
                    submitted("a2", "r1", 5_000_00),
                    thresholds_set("r1", Some(5_000_00), None),
                    award_proposed("a1", 10_000_00, ACTOR),
                    awarded("a2", 5_000_00, vec![free("bzk", 5_000_00)]),
                ],
            ),
            officer(SECOND_OFFICER),
            approve_award("a1"),
            InsufficientAvailable {
                round: "r1".into(),
                amount: "EUR 10,000.00".into(),
                available: "EUR 7,000.00".into(),
            },
        ),
        case_by(
            "award approval after the round closed",
            and(four_eyes(), vec![award_proposed("a1", 8_000_00, ACTOR), round_closed("r1")]),
            officer(SECOND_OFFICER),
            approve_award("a1"),
            closed("r1"),
        ),
        case_by(
            // The grant was reduced while the proposal waited.
            "payment that no longer fits the grant at its approval",
            and(
                four_eyes_granted(),
                vec![
                    payment_proposed("a1", 2_500_00, ACTOR),
                    reduced("a1", 8_000_00, vec![free("bzk", 4_800_00), free("porticus", 3_200_00)]),
                ],
            ),
            officer(SECOND_OFFICER),
            approve_payment("a1"),
            PaymentExceedsOpen { application: "a1".into(), amount: "EUR 2,500.00".into(), open: "EUR 2,000.00".into() },
        ),
        // access control: conflicts of interest
        case(
            "award by an officer with a conflict of interest",
            and(applied(), vec![conflict_declared("a1", ACTOR)]),
            award("a1", eur("1000")),
            ConflictOfInterest { principal: ACTOR.into(), application: "a1".into() },
        ),
        case(
            "conflict declared twice",
            and(applied(), vec![conflict_declared("a1", ACTOR)]),
            declare_conflict("a1"),
            ConflictAlreadyDeclared { principal: ACTOR.into(), application: "a1".into() },
        ),
        case(
            "conflict on no application",
            applied(),
            declare_conflict("a9"),
            UnknownApplication { application: "a9".into() },
        ),
    ]
}

#[test]
fn every_rejection_case() {
    let mut failures = Vec::new();
    for RejectionCase { name, given: history, by, when, then } in rejection_cases() {
        let state = given(&history);
        let outcome = decide(&state, &when, &ctx(by));
        if outcome.as_ref() != Err(&then) {
            failures.push(format!("{name}: expected {then:?}, got {outcome:?}"));
            continue;
        }
        let (code, kind) = expected_code_and_kind(&then);
        if then.code() != code || then.kind() != kind {
            failures.push(format!("{name}: code {} / {:?}, expected {code} / {kind:?}", then.code(), then.kind()));
        }
        // A refusal says something, and does not leak Debug formatting.
        let message = then.to_string();
        if message.is_empty() || message.contains("Some(") || message.contains("Amount(") {
            failures.push(format!("{name}: message {message:?}"));
        }
    }
    assert!(failures.is_empty(), "{} rejection cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_rejection_is_produced() {
    let produced: BTreeSet<&str> = rejection_cases().iter().map(|c| expected_code_and_kind(&c.then).0).collect();
    let all: BTreeSet<&str> = REJECTION_CODES.into_iter().collect();
    assert_eq!(all.len(), REJECTION_CODES.len(), "codes are unique");
    let missing: Vec<_> = all.difference(&produced).collect();
    assert!(missing.is_empty(), "no case produces {missing:?}");
}

/// The message of the rejection of `command`, sent by `actor` after `history`.
fn message_by(history: &[Event], actor: Actor, command: Command) -> String {
    decide(&given(history), &command, &ctx(actor)).unwrap_err().to_string()
}

#[test]
fn rejections_read_well() {
    let message = |history: &[Event], command: Command| message_by(history, permitted(&command), command);
    let short = and(
        opened(),
        vec![pledged("bzk", None, 9_310_55), received("bzk", None, 9_310_55), submitted("a1", "r2", 10_000_00)],
    );
    assert_eq!(
        message(&short, award("a1", eur("10000"))),
        "award of EUR 10,000.00 exceeds the EUR 9,310.55 the partners have available for round \"r2\""
    );
    assert_eq!(
        message(&opened(), pledge("bzk", None, eur("1.234"))),
        "amount 1.234 has more decimals than EUR has (2); it is refused, not rounded"
    );
    assert_eq!(
        message(&partly_paid(), settle("a1", eur("2000"))),
        "final amount of EUR 2,000.00 is below the EUR 2,500.00 already paid on application \"a1\"; record the refund first"
    );
    assert_eq!(
        message(&and(opened(), vec![round_closed("r1")]), submit("a1", "r1", eur("1"))),
        "round \"r1\" was closed on 2024-03-01; it takes no more applications, decisions or earmarks"
    );
    assert_eq!(
        message(&funded(), receive("porticus", None, eur("20000"))),
        "receipt of EUR 20,000.00 exceeds the EUR 10,000.00 still outstanding on porticus (unrestricted); record the pledge first"
    );
    assert_eq!(message(&[], admit("bzk")), "the fund has not been opened yet; open it first");
    assert_eq!(
        message_by(&opened(), treasurer("bzk"), pledge("porticus", None, eur("1"))),
        "bzk.treasurer (partner bzk) may not PledgeContribution"
    );
    assert_eq!(
        message(&four_eyes(), award("a1", eur("5000.01"))),
        "award of EUR 5,000.01 on application \"a1\" is above round \"r1\"'s four-eyes threshold of EUR 5,000.00: \
         propose it, and have a second officer approve it"
    );
    assert_eq!(
        message(&and(four_eyes(), vec![award_proposed("a1", 8_000_00, ACTOR)]), approve_award("a1")),
        "officer.jansen proposed this award on application \"a1\" and cannot also approve it; another officer must"
    );
    assert_eq!(
        message(&and(applied(), vec![conflict_declared("a1", ACTOR)]), reject("a1")),
        "officer.jansen declared a conflict of interest on application \"a1\" and cannot decide, approve or pay on it"
    );
}

#[test]
fn a_refused_command_can_be_decided_again_with_the_same_answer() {
    // `decide` reads the state and nothing else: no clock, no counter.
    let state = given(&partly_paid());
    let command = pay("a1", eur("9000"));
    let first = decide(&state, &command, &ctx(permitted(&command)));
    assert!(first.is_err());
    assert_eq!(decide(&state, &command, &ctx(permitted(&command))), first);
    assert_eq!(state, given(&partly_paid()));
}

// ----- attribution -----

/// Three partners with 100.00 each, unrestricted, and a1 asking 15,000.00 in r1.
fn equal_pots() -> Vec<Event> {
    let mut history = opened();
    for id in ["bzk", "porticus", "vfonds"] {
        history.push(pledged(id, None, 100_00));
        history.push(received(id, None, 100_00));
    }
    history.push(submitted("a1", "r1", 15_000_00));
    history
}

#[test]
fn award_ties_go_to_the_pot_that_sorts_first() {
    let cases = [
        ("0.10", vec![free("bzk", 4), free("porticus", 3), free("vfonds", 3)]),
        ("0.02", vec![free("bzk", 1), free("porticus", 1)]),
        ("0.01", vec![free("bzk", 1)]),
        ("100.00", vec![free("bzk", 33_34), free("porticus", 33_33), free("vfonds", 33_33)]),
        ("300.00", vec![free("bzk", 100_00), free("porticus", 100_00), free("vfonds", 100_00)]),
    ];
    for (amount, attribution) in cases {
        let minor = attribution.iter().map(|s| s.amount.minor()).sum();
        check(&equal_pots(), award("a1", eur(amount)), vec![awarded("a1", minor, attribution)]);
    }
}

#[test]
fn award_gives_the_spare_cent_to_the_largest_remainder() {
    // Available 20 : 30 : 50; 0.07 gives exact quotas 1.4, 2.1 and 3.5 cents.
    let history = and(
        opened(),
        vec![
            pledged("bzk", None, 20_00),
            received("bzk", None, 20_00),
            pledged("porticus", None, 30_00),
            received("porticus", None, 30_00),
            pledged("vfonds", None, 50_00),
            received("vfonds", None, 50_00),
            submitted("a1", "r1", 100_00),
        ],
    );
    check(
        &history,
        award("a1", eur("0.07")),
        vec![awarded("a1", 7, vec![free("bzk", 1), free("porticus", 2), free("vfonds", 4)])],
    );
}

#[test]
fn award_uses_money_earmarked_for_its_own_round_only() {
    // In r2 vfonds's earmarked 10,000.00 joins: 60,000 : 40,000 : 10,000.
    let history = and(funded(), vec![submitted("a2", "r2", 5_500_00)]);
    check(
        &history,
        award("a2", eur("5500")),
        vec![awarded(
            "a2",
            5_500_00,
            vec![free("bzk", 3_000_00), free("porticus", 2_000_00), share("vfonds", Some("r2"), 500_00)],
        )],
    );
    // In r1 it does not.
    check(
        &applied(),
        award("a1", eur("5500")),
        vec![awarded("a1", 5_500_00, vec![free("bzk", 3_300_00), free("porticus", 2_200_00)])],
    );
}

#[test]
fn a_partners_unrestricted_pot_sorts_before_its_earmarked_pot() {
    let history = and(
        opened(),
        vec![
            pledged("porticus", Some("r1"), 100_00),
            received("porticus", Some("r1"), 100_00),
            pledged("porticus", None, 100_00),
            received("porticus", None, 100_00),
            submitted("a1", "r1", 100_00),
        ],
    );
    check(&history, award("a1", eur("0.01")), vec![awarded("a1", 1, vec![free("porticus", 1)])]);
    check(
        &history,
        award("a1", eur("0.03")),
        vec![awarded("a1", 3, vec![free("porticus", 2), share("porticus", Some("r1"), 1)])],
    );
}

#[test]
fn award_follows_what_is_available_now_not_what_was_pledged() {
    // a1 took 6,000 of bzk and 4,000 of porticus: 54,000 : 36,000 remain.
    let history = and(granted(), vec![submitted("a2", "r1", 1_000_00)]);
    check(
        &history,
        award("a2", eur("1000")),
        vec![awarded("a2", 1_000_00, vec![free("bzk", 600_00), free("porticus", 400_00)])],
    );
    let history = and(granted(), vec![submitted("a2", "r1", 15_000_00)]);
    check(&history, award("a2", eur("0.05")), vec![awarded("a2", 5, vec![free("bzk", 3), free("porticus", 2)])]);
}

#[test]
fn award_of_everything_available_takes_every_pot_whole() {
    let history = and(
        opened(),
        vec![
            pledged("bzk", None, 1_234_56),
            received("bzk", None, 1_234_56),
            pledged("vfonds", Some("r1"), 765_43),
            received("vfonds", Some("r1"), 765_43),
            submitted("a1", "r1", 10_000_00),
        ],
    );
    check(
        &history,
        award("a1", eur("1999.99")),
        vec![awarded("a1", 1_999_99, vec![free("bzk", 1_234_56), share("vfonds", Some("r1"), 765_43)])],
    );
}

#[test]
fn payments_follow_the_open_shares_and_the_last_one_settles_the_exact_remainder() {
    let history = and(
        granted(),
        vec![
            paid("a1", 1, 1, vec![free("bzk", 1)]),
            // Open now 5,999.99 : 4,000.00; 0.01 goes to bzk again (quota 0.599999).
            paid("a1", 2, 1, vec![free("bzk", 1)]),
        ],
    );
    // Pro rata 60 : 40 would give 5,999.99 : 3,999.99; the last payment takes
    // each share's exact remainder instead.
    check(
        &history,
        pay("a1", eur("9999.98")),
        vec![paid("a1", 3, 9_999_98, vec![free("bzk", 5_999_98), free("porticus", 4_000_00)])],
    );
}

#[test]
fn payment_spare_cent_goes_to_the_largest_remainder() {
    // 33.33 at 60 : 40 is 19.998 : 13.332.
    check(
        &granted(),
        pay("a1", eur("33.33")),
        vec![paid("a1", 1, 33_33, vec![free("bzk", 20_00), free("porticus", 13_33)])],
    );
}

#[test]
fn three_tranches_pay_each_share_in_full() {
    let (state, log) = run([
        vec![open_fund(), admit("bzk"), admit("porticus"), open_round("r1", eur("100000"), eur("15000"))],
        vec![pledge("bzk", None, eur("60000")), receive("bzk", None, eur("60000"))],
        vec![pledge("porticus", None, eur("40000")), receive("porticus", None, eur("40000"))],
        vec![submit("a1", "r1", eur("10000")), award("a1", eur("10000"))],
        vec![pay("a1", eur("3333.33")), pay("a1", eur("3333.33")), pay("a1", eur("3333.34"))],
    ]
    .concat());
    let payments: Vec<&Event> = log.iter().filter(|e| matches!(e, Event::PaymentMade { .. })).collect();
    assert_eq!(
        payments,
        [
            &paid("a1", 1, 3_333_33, vec![free("bzk", 2_000_00), free("porticus", 1_333_33)]),
            &paid("a1", 2, 3_333_33, vec![free("bzk", 2_000_00), free("porticus", 1_333_33)]),
            &paid("a1", 3, 3_333_34, vec![free("bzk", 2_000_00), free("porticus", 1_333_34)]),
        ]
    );
    let grant = state.applications[&app("a1")].grant.as_ref().unwrap();
    assert_eq!((grant.paid, grant.open(), grant.tranches), (cents(10_000_00), Amount::ZERO, 3));
    for share in grant.shares.values() {
        assert_eq!(share.paid, share.amount);
    }
}

#[test]
fn refunds_follow_what_each_share_paid_net() {
    check(&partly_paid(), refund("a1", eur("0.01")), vec![refunded("a1", 1, vec![free("bzk", 1)], false)]);
    // After a refund of 1,500.00 (900 : 600), 600 : 400 is left paid.
    let history =
        and(partly_paid(), vec![refunded("a1", 1_500_00, vec![free("bzk", 900_00), free("porticus", 600_00)], false)]);
    check(
        &history,
        refund("a1", eur("1000")),
        vec![refunded("a1", 1_000_00, vec![free("bzk", 600_00), free("porticus", 400_00)], false)],
    );
}

#[test]
fn a_refund_can_be_paid_out_again_on_an_active_grant() {
    let history = and(
        partly_paid(),
        vec![refunded("a1", 2_500_00, vec![free("bzk", 1_500_00), free("porticus", 1_000_00)], false)],
    );
    check(
        &history,
        pay("a1", eur("10000")),
        vec![paid("a1", 2, 10_000_00, vec![free("bzk", 6_000_00), free("porticus", 4_000_00)])],
    );
}

#[test]
fn split_keeps_its_guarantees() {
    let weights = vec![(pot("a", None), cents(1)), (pot("b", None), cents(0)), (pot("c", Some("r1")), cents(2))];
    assert_eq!(split(Amount::ZERO, &weights), vec![]);
    assert_eq!(split(cents(1), &weights), vec![share("c", Some("r1"), 1)]);
    assert_eq!(split(cents(2), &weights), vec![share("a", None, 1), share("c", Some("r1"), 1)]);
    assert_eq!(split(cents(3), &weights), vec![share("a", None, 1), share("c", Some("r1"), 2)]);
    // Large figures do not overflow: the products are taken in 128 bits.
    let big = vec![(pot("a", None), cents(i64::MAX / 2)), (pot("b", None), cents(i64::MAX / 2))];
    let parts = split(cents(i64::MAX / 2), &big);
    assert_eq!(attribution::total(&parts), cents(i64::MAX / 2));
}

#[test]
fn split_adds_up_for_many_awkward_figures() {
    let pots = ["a", "b", "c", "d", "e", "f", "g"];
    for seed in 1..200i64 {
        let weights: Vec<(PotKey, Amount)> = pots
            .iter()
            .enumerate()
            .map(|(i, p)| (pot(p, None), cents((seed * 7919 + i as i64 * 104_729) % 9973)))
            .collect();
        let weight_sum: i64 = weights.iter().map(|(_, w)| w.minor()).sum();
        for total in [0, 1, 2, 3, weight_sum / 3, weight_sum - 1, weight_sum] {
            let parts = split(cents(total), &weights);
            assert_eq!(attribution::total(&parts), cents(total));
            for part in &parts {
                let weight = weights.iter().find(|(p, _)| *p == part.pot).unwrap().1;
                assert!(!part.amount.is_zero() && part.amount <= weight);
                // Within one unit of the exact quota.
                let exact = i128::from(total) * i128::from(weight.minor());
                let unit = i128::from(weight_sum);
                let got = i128::from(part.amount.minor()) * unit;
                assert!((got - exact).abs() < unit, "{part:?} of {total} over {weights:?}");
            }
        }
    }
}

#[test]
#[should_panic(expected = "split of 4 over weights of only 3")]
fn split_of_more_than_the_weights_is_a_programming_error() {
    split(cents(4), &[(pot("a", None), cents(1)), (pot("b", None), cents(2))]);
}

// ----- state figures after sequences -----

#[test]
fn pot_figures_through_a_grants_life() {
    let history = and(
        partly_paid(),
        vec![
            // Refund on the active grant: 100.00 comes back, 60 : 40.
            refunded("a1", 100_00, vec![free("bzk", 60_00), free("porticus", 40_00)], false),
        ],
    );
    let state = given(&history);
    let bzk = &state.pots[&pot("bzk", None)];
    let porticus = &state.pots[&pot("porticus", None)];
    let figures = |p: &fundledger::domain::state::Pot| {
        [
            p.pledged,
            p.received,
            p.outstanding(),
            p.awarded,
            p.paid,
            p.refunded,
            p.available(),
            p.open_commitments(),
            p.cash_held(),
        ]
        .map(Amount::minor)
    };
    // pledged, received, outstanding, awarded, paid, refunded, available, open, cash
    assert_eq!(figures(bzk), [60_000_00, 60_000_00, 0, 6_000_00, 1_500_00, 60_00, 54_000_00, 4_560_00, 58_560_00]);
    assert_eq!(
        figures(porticus),
        [50_000_00, 40_000_00, 10_000_00, 4_000_00, 1_000_00, 40_00, 36_000_00, 3_040_00, 39_040_00]
    );

    // Settled at 9,000.00: 1,000.00 goes back along the open 4,560 : 3,040.
    let history = and(history, vec![settled("a1", 9_000_00, vec![free("bzk", 600_00), free("porticus", 400_00)])]);
    check(&history[..history.len() - 1], settle("a1", eur("9000")), vec![history.last().unwrap().clone()]);
    let state = given(&history);
    let bzk = &state.pots[&pot("bzk", None)];
    assert_eq!(figures(bzk), [60_000_00, 60_000_00, 0, 5_400_00, 1_500_00, 60_00, 54_600_00, 3_960_00, 58_560_00]);
    assert_eq!(state.rounds[&round("r1")].amount_committed, cents(9_000_00));

    // A refund on the settled grant releases: net paid is 1,440 : 960.
    let history = and(history, vec![refunded("a1", 200_00, vec![free("bzk", 120_00), free("porticus", 80_00)], true)]);
    check(&history[..history.len() - 1], refund("a1", eur("200")), vec![history.last().unwrap().clone()]);
    let state = given(&history);
    let bzk = &state.pots[&pot("bzk", None)];
    assert_eq!(figures(bzk), [60_000_00, 60_000_00, 0, 5_280_00, 1_500_00, 180_00, 54_720_00, 3_960_00, 58_680_00]);
    let grant = state.applications[&app("a1")].grant.as_ref().unwrap();
    assert_eq!(
        (grant.awarded, grant.amount, grant.paid, grant.refunded, grant.net_paid(), grant.open(), grant.status),
        (
            cents(10_000_00),
            cents(8_800_00),
            cents(2_500_00),
            cents(300_00),
            cents(2_200_00),
            cents(6_600_00),
            GrantStatus::Settled
        )
    );
    assert_eq!(state.rounds[&round("r1")].amount_committed, cents(8_800_00));
    assert_eq!(state.rounds[&round("r1")].budget_left(), cents(91_200_00));
}

#[test]
fn reductions_and_withdrawals_give_money_back_to_the_pots() {
    let (state, _) = run(vec![
        open_fund(),
        admit("bzk"),
        admit("porticus"),
        open_round("r1", eur("100000"), eur("15000")),
        pledge("bzk", None, eur("3000")),
        receive("bzk", None, eur("3000")),
        pledge("porticus", None, eur("1000")),
        receive("porticus", None, eur("1000")),
        submit("a1", "r1", eur("2000")),
        submit("a2", "r1", eur("2000")),
        award("a1", eur("2000")),
        award("a2", eur("2000")),
    ]);
    assert_eq!(state.eligible_pots(&round("r1")), vec![]);
    let after = |commands: Vec<Command>| {
        let mut state = state.clone();
        for command in commands {
            for event in decide(&state, &command, &ctx(permitted(&command))).unwrap() {
                state.evolve(&event);
            }
        }
        state
    };
    let reduced_state = after(vec![reduce("a1", eur("400"))]);
    assert_eq!(
        reduced_state.eligible_pots(&round("r1")),
        vec![(pot("bzk", None), cents(300_00)), (pot("porticus", None), cents(100_00))]
    );
    assert_eq!(reduced_state.rounds[&round("r1")].amount_committed, cents(3_600_00));
    let withdrawn_state = after(vec![pay("a2", eur("500")), withdraw_grant("a2")]);
    assert_eq!(
        withdrawn_state.eligible_pots(&round("r1")),
        vec![(pot("bzk", None), cents(1_125_00)), (pot("porticus", None), cents(375_00))]
    );
    let grant = withdrawn_state.applications[&app("a2")].grant.as_ref().unwrap();
    assert_eq!((grant.status, grant.amount, grant.open()), (GrantStatus::Withdrawn, cents(500_00), Amount::ZERO));
    assert_eq!(withdrawn_state.rounds[&round("r1")].amount_committed, cents(2_500_00));
    assert_eq!(withdrawn_state.rounds[&round("r1")].budget_left(), cents(97_500_00));
    // The 500.00 paid comes back as a refund and is released too.
    let refunded_state = after(vec![pay("a2", eur("500")), withdraw_grant("a2"), refund("a2", eur("500"))]);
    assert_eq!(refunded_state.fund_totals().available(), cents(2_000_00));
    assert_eq!(refunded_state.fund_totals().cash_held(), cents(4_000_00));
    assert_eq!(refunded_state.fund_totals().open_commitments(), cents(2_000_00));
}

/// Two views of the state (the writer's and the published one) share every
/// application neither changed; a change to one is never seen by the other.
/// The map still encodes byte for byte as the `BTreeMap` it replaced, so
/// checkpoints and the canonical state bytes did not change.
#[test]
fn applications_are_copied_on_write_and_encode_as_a_btree_map() {
    let (state, _) = run(vec![
        open_fund(),
        admit("bzk"),
        open_round("r1", eur("50000"), eur("15000")),
        pledge("bzk", None, eur("100000")),
        receive("bzk", None, eur("100000")),
        submit("a1", "r1", eur("10000")),
        submit("a2", "r1", eur("5000")),
        submit("a3", "r1", eur("2500.50")),
        award("a2", eur("5000")),
    ]);
    let published = state.clone();
    let mut writer = state.clone();
    writer.applications.get_mut(&app("a2")).unwrap().grant.as_mut().unwrap().paid = cents(1_00);
    writer.applications.get_mut(&app("a3")).unwrap().title = "changed".into();
    assert_eq!(published, state, "a change to one view leaked into the other");
    assert_eq!(published.applications[&app("a2")].grant.as_ref().unwrap().paid, Amount::ZERO);
    assert_eq!(writer.applications[&app("a2")].grant.as_ref().unwrap().paid, cents(1_00));
    assert_eq!(writer.applications[&app("a3")].title, "changed");
    assert_eq!(writer.applications[&app("a1")], published.applications[&app("a1")]);
    assert_ne!(writer, published);

    let as_btree: BTreeMap<ApplicationId, state::Application> =
        writer.applications.iter().map(|(id, a)| (id.clone(), a.clone())).collect();
    let bytes = fundledger::log::codec::encode(&writer.applications);
    assert_eq!(bytes, fundledger::log::codec::encode(&as_btree));
    let decoded: Applications = fundledger::log::codec::decode(&bytes).unwrap();
    assert_eq!(decoded, writer.applications);
    assert_eq!(decoded.keys().collect::<Vec<_>>(), [&app("a1"), &app("a2"), &app("a3")]);
    assert_eq!(decoded.range(app("a2")..).count(), 2);
    assert_eq!(format!("{decoded:?}"), format!("{as_btree:?}"));
}

/// A grant's shares: one sorted allocation that collects, looks up and
/// encodes exactly as the `BTreeMap<PotKey, GrantShare>` it replaced.
#[test]
fn grant_shares_behave_and_encode_as_a_btree_map() {
    let share = |amount: i64| state::GrantShare { amount: cents(amount), ..Default::default() };
    let entries = vec![
        (pot("vfonds", None), share(3)),
        (pot("bzk", Some("r2")), share(2)),
        (pot("bzk", None), share(1)),
        (pot("vfonds", None), share(4)),
    ];
    let shares: state::Shares = entries.clone().into_iter().collect();
    // A sequence of pairs is encoded as a map with its entries in that
    // order: out of order and with a repeated pot, it decodes as a map would.
    let unsorted = fundledger::log::codec::encode(&entries);
    assert_eq!(fundledger::log::codec::decode::<state::Shares>(&unsorted).unwrap(), shares);
    let as_btree: BTreeMap<PotKey, state::GrantShare> = entries.into_iter().collect();
    assert_eq!(shares.len(), 3, "a repeated pot keeps one share");
    assert_eq!(shares[&pot("vfonds", None)].amount, cents(4), "the last one, as in a BTreeMap");
    assert_eq!(shares.keys().collect::<Vec<_>>(), as_btree.keys().collect::<Vec<_>>());
    assert_eq!(shares.get(&pot("porticus", None)), None);
    let bytes = fundledger::log::codec::encode(&shares);
    assert_eq!(bytes, fundledger::log::codec::encode(&as_btree));
    let decoded: state::Shares = fundledger::log::codec::decode(&bytes).unwrap();
    assert_eq!(decoded, shares);
    assert_eq!(format!("{decoded:?}"), format!("{as_btree:?}"));
    let mut changed = decoded.clone();
    changed.get_mut(&pot("bzk", None)).unwrap().paid = cents(1);
    assert_ne!(changed, decoded);
}

#[test]
fn round_counters() {
    let (state, _) = run(vec![
        open_fund(),
        admit("bzk"),
        open_round("r1", eur("50000"), eur("15000")),
        open_round("r2", eur("50000"), eur("15000")),
        pledge("bzk", None, eur("100000")),
        receive("bzk", None, eur("100000")),
        submit("a1", "r1", eur("10000")),
        submit("a2", "r1", eur("5000")),
        submit("a3", "r1", eur("2500.50")),
        submit("a4", "r1", eur("1000")),
        submit("a5", "r1", eur("15000")),
        submit("b1", "r2", eur("7")),
        award("a1", eur("8000")),
        award("a5", eur("15000")),
        reject("a2"),
        withdraw_application("a3"),
        reduce("a5", eur("1000")),
    ]);
    let r1 = &state.rounds[&round("r1")];
    assert_eq!(
        (
            r1.applications_received,
            r1.applications_awarded,
            r1.applications_rejected,
            r1.applications_withdrawn,
            r1.applications_pending(),
            r1.applications_decided()
        ),
        (5, 2, 1, 1, 1, 3)
    );
    assert_eq!(r1.amount_requested, cents(33_500_50));
    assert_eq!(r1.amount_awarded, cents(23_000_00), "as decided");
    assert_eq!(r1.amount_committed, cents(22_000_00), "after the reduction");
    assert_eq!(r1.budget_left(), cents(28_000_00));
    let r2 = &state.rounds[&round("r2")];
    assert_eq!((r2.applications_received, r2.applications_pending(), r2.amount_requested), (1, 1, cents(7_00)));
    assert_eq!(state.applications[&app("a2")].status, ApplicationStatus::Rejected);
    assert_eq!(state.applications[&app("a3")].status, ApplicationStatus::Withdrawn);
    let decision = state.applications[&app("a3")].decision.as_ref().unwrap();
    assert_eq!((decision.decided_by.as_str(), decision.reason.as_str()), ("applicant", REASON));
    let decision = state.applications[&app("a2")].decision.as_ref().unwrap();
    assert_eq!(decision.decided_by, ACTOR);
}

#[test]
fn partner_and_fund_totals_add_the_pots() {
    let history = and(
        funded(),
        vec![
            pledged("porticus", Some("r2"), 5_000_00),
            received("porticus", Some("r2"), 2_000_00),
            pledge_reduced("porticus", None, 4_000_00),
        ],
    );
    let state = given(&history);
    let porticus = state.partner_totals(&partner("porticus"));
    assert_eq!(porticus.pledged, cents(51_000_00));
    assert_eq!(porticus.pledge_reduced, cents(4_000_00));
    assert_eq!(porticus.received, cents(42_000_00));
    assert_eq!(porticus.outstanding(), cents(9_000_00));
    assert_eq!(state.partner_totals(&partner("vfonds")).received, cents(10_000_00));
    assert_eq!(state.partner_totals(&partner("nobody")), Default::default());
    let fund = state.fund_totals();
    assert_eq!(
        (fund.pledged, fund.received, fund.available()),
        (cents(121_000_00), cents(112_000_00), cents(112_000_00))
    );
    assert_eq!(state.fund.as_ref().unwrap().pledged, cents(121_000_00));
}

#[test]
fn replay_gives_the_same_state() {
    let (state, log) = run(vec![
        open_fund(),
        admit("bzk"),
        admit("porticus"),
        open_round("r1", eur("100000"), eur("15000")),
        pledge("bzk", None, eur("30000")),
        receive("bzk", None, eur("30000")),
        pledge("porticus", Some("r1"), eur("20000")),
        receive("porticus", Some("r1"), eur("15000")),
        submit("a1", "r1", eur("12000")),
        award("a1", eur("12000")),
        pay("a1", eur("6000")),
        refund("a1", eur("1000")),
        settle("a1", eur("9000")),
        pay("a1", eur("4000")),
        close_round("r1"),
    ]);
    assert_eq!(given(&log), state);
    assert_eq!(state.rounds[&round("r1")].closed_on, Some(today()));
}

// ----- journal -----

fn balances(events: &[Event]) -> BTreeMap<Account, i64> {
    let mut balances = BTreeMap::new();
    for event in events {
        for Posting { account, amount } in journal::postings(event) {
            *balances.entry(account).or_insert(0) += amount;
        }
    }
    balances
}

#[test]
fn postings_of_each_money_event() {
    use Account::*;
    let line = |account: Account, amount: i64| Posting { account, amount };
    let porticus = pot("porticus", None);
    let vfonds = pot("vfonds", Some("r2"));
    let cases = [
        (
            pledged("vfonds", Some("r2"), 5_00),
            vec![line(PledgesReceivable(vfonds.clone()), 5_00), line(PartnerFunds(vfonds.clone()), -5_00)],
        ),
        (
            pledge_reduced("vfonds", Some("r2"), 5_00),
            vec![line(PartnerFunds(vfonds.clone()), 5_00), line(PledgesReceivable(vfonds.clone()), -5_00)],
        ),
        (received("vfonds", Some("r2"), 5_00), vec![line(Cash, 5_00), line(PledgesReceivable(vfonds.clone()), -5_00)]),
        (
            awarded("a1", 3_00, vec![free("porticus", 2_00), share("vfonds", Some("r2"), 1_00)]),
            vec![
                line(PartnerFunds(porticus.clone()), 2_00),
                line(GrantsPayable(app("a1")), -2_00),
                line(PartnerFunds(vfonds.clone()), 1_00),
                line(GrantsPayable(app("a1")), -1_00),
            ],
        ),
        (
            reduced("a1", 1_00, vec![free("porticus", 1_00)]),
            vec![line(GrantsPayable(app("a1")), 1_00), line(PartnerFunds(porticus.clone()), -1_00)],
        ),
        (
            grant_withdrawn("a1", vec![free("porticus", 1_00)]),
            vec![line(GrantsPayable(app("a1")), 1_00), line(PartnerFunds(porticus.clone()), -1_00)],
        ),
        (
            settled("a1", 2_00, vec![free("porticus", 1_00)]),
            vec![line(GrantsPayable(app("a1")), 1_00), line(PartnerFunds(porticus.clone()), -1_00)],
        ),
        (
            paid("a1", 1, 3_00, vec![free("porticus", 2_00), share("vfonds", Some("r2"), 1_00)]),
            vec![line(GrantsPayable(app("a1")), 3_00), line(Cash, -3_00)],
        ),
        (
            refunded("a1", 3_00, vec![free("porticus", 3_00)], false),
            vec![line(Cash, 3_00), line(GrantsPayable(app("a1")), -3_00)],
        ),
        (
            refunded("a1", 3_00, vec![free("porticus", 3_00)], true),
            vec![line(Cash, 3_00), line(PartnerFunds(porticus.clone()), -3_00)],
        ),
    ];
    for (event, lines) in cases {
        let postings = journal::postings(&event);
        assert_eq!(postings, lines, "{}", event.type_name());
        assert_eq!(postings.iter().map(|p| p.amount).sum::<i64>(), 0, "{} balances", event.type_name());
    }
}

#[test]
fn events_that_move_no_money_post_nothing() {
    for event in [
        fund_opened(),
        admitted("bzk"),
        round_opened("r1", 1_00, 1_00),
        round_closed("r1"),
        submitted("a1", "r1", 1_00),
        application_withdrawn("a1"),
        application_rejected("a1"),
        thresholds_set("r1", Some(1_00), Some(1_00)),
        access_granted(ACTOR, Role::Officer, 1),
        access_revoked(ACTOR),
        award_proposed("a1", 1_00, ACTOR),
        payment_proposed("a1", 1_00, ACTOR),
        conflict_declared("a1", ACTOR),
    ] {
        assert_eq!(journal::postings(&event), vec![], "{}", event.type_name());
    }
}

#[test]
fn accounts_are_named_for_people() {
    assert_eq!(Account::Cash.to_string(), "cash");
    assert_eq!(Account::PledgesReceivable(pot("bzk", None)).to_string(), "pledges_receivable/bzk");
    assert_eq!(Account::PartnerFunds(pot("vfonds", Some("r2"))).to_string(), "partner_funds/vfonds/earmark/r2");
    assert_eq!(Account::GrantsPayable(app("a1")).to_string(), "grants_payable/a1");
}

#[test]
fn trial_balance_is_zero_and_accounts_reconcile_with_the_state() {
    let (state, log) = run(vec![
        open_fund(),
        admit("bzk"),
        admit("porticus"),
        admit("vfonds"),
        open_round("r1", eur("100000"), eur("15000")),
        pledge("bzk", None, eur("50000")),
        receive("bzk", None, eur("35000")),
        pledge("porticus", None, eur("20000")),
        receive("porticus", None, eur("20000")),
        pledge("vfonds", Some("r1"), eur("10000")),
        receive("vfonds", Some("r1"), eur("10000")),
        reduce_pledge("bzk", None, eur("5000")),
        submit("a1", "r1", eur("15000")),
        submit("a2", "r1", eur("9999.99")),
        submit("a3", "r1", eur("3333.33")),
        award("a1", eur("15000")),
        award("a2", eur("9999.99")),
        award("a3", eur("3333.33")),
        pay("a1", eur("7777.77")),
        pay("a2", eur("9999.99")),
        refund("a2", eur("1999.99")),
        reduce("a1", eur("1000")),
        settle("a2", eur("8000")),
        refund("a2", eur("765.43")),
        withdraw_grant("a3"),
        pay("a1", eur("6222.23")),
    ]);
    let mut running = BTreeMap::new();
    for event in &log {
        let lines = journal::postings(event);
        assert_eq!(lines.iter().map(|p| p.amount).sum::<i64>(), 0, "{} balances", event.type_name());
        for line in lines {
            *running.entry(line.account).or_insert(0) += line.amount;
        }
        assert_eq!(running.values().sum::<i64>(), 0, "trial balance after {}", event.type_name());
    }
    let balances = balances(&log);
    let at = |account: Account| balances.get(&account).copied().unwrap_or(0);
    for (key, p) in &state.pots {
        let receivable = at(Account::PledgesReceivable(key.clone()));
        let partner_funds = -at(Account::PartnerFunds(key.clone()));
        assert_eq!(receivable, p.outstanding().minor(), "{key:?} receivable");
        assert_eq!(partner_funds, p.pledged.minor() - p.awarded.minor(), "{key:?} partner funds");
        assert_eq!(partner_funds - receivable, p.available().minor(), "{key:?} available");
    }
    assert_eq!(at(Account::Cash), state.fund_totals().cash_held().minor());
    assert_eq!(at(Account::Cash), state.pots.values().map(|p| p.cash_held().minor()).sum::<i64>());
    for (id, application) in &state.applications {
        let grant = application.grant.as_ref().unwrap();
        assert_eq!(-at(Account::GrantsPayable(id.clone())), grant.open().minor(), "{id} payable");
    }
    // The figures themselves, so that the reconciliation does not hold by accident.
    assert_eq!(at(Account::Cash), (35_000_00 + 20_000_00 + 10_000_00) - (14_000_00 + 9_999_99) + (1_999_99 + 765_43));
    assert_eq!(-at(Account::GrantsPayable(app("a1"))), 0);
    assert_eq!(-at(Account::GrantsPayable(app("a2"))), 0);
}

// ----- identifiers and dates -----

#[test]
fn identifiers_and_dates_are_validated() {
    assert!(PartnerId::new("porticus").is_ok());
    assert!(ApplicationId::new("2023-1.app_0042").is_ok());
    for bad in ["", "-x", "a b", "é", &"x".repeat(65)] {
        assert!(PartnerId::new(bad).is_err(), "{bad:?}");
    }
    assert_eq!(RoundId::new("").unwrap_err().to_string(), "round id \"\" must not be empty");
    assert_eq!(day("2024-02-29").to_string(), "2024-02-29");
    assert!(Date::parse("2023-02-29").is_err());
    assert!(day("2024-01-01") < day("2024-01-02"));
    assert_eq!(Date::from_days_since_epoch(0).to_string(), "1970-01-01");
}

// ----- figures as of a business date -----

/// The event with its business date set to `date`.
fn on(date: &str, mut event: Event) -> Event {
    let d = day(date);
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
        | Event::ConflictDeclared { declared_on: at, .. } => *at = d,
        Event::FundOpened { .. }
        | Event::PartnerAdmitted { .. }
        | Event::RoundOpened { .. }
        | Event::ApprovalThresholdsSet { .. }
        | Event::AccessGranted { .. }
        | Event::AccessRevoked { .. } => {
            panic!("{} has no business date", event.type_name())
        }
    }
    event
}

/// A history recorded in one order and dated in another: a payment
/// value-dated before its award, a rejection dated before its application,
/// money received before its pledge's date, then a settlement and a refund.
fn dated_history() -> Vec<Event> {
    vec![
        fund_opened(),
        admitted("janivo"),
        admitted("porticus"),
        on("2024-01-10", pledged("porticus", None, 30_000_00)),
        on("2024-01-15", pledged("janivo", None, 10_000_00)),
        on("2024-01-20", received("porticus", None, 30_000_00)),
        on("2024-02-05", received("janivo", None, 10_000_00)),
        round_opened("r1", 100_000_00, 15_000_00),
        on("2024-02-01", submitted("a1", "r1", 8_000_00)),
        on("2024-02-10", submitted("a2", "r1", 5_000_00)),
        on("2024-03-01", awarded("a1", 8_000_00, vec![free("janivo", 2_000_00), free("porticus", 6_000_00)])),
        on("2024-02-25", paid("a1", 1, 4_000_00, vec![free("janivo", 1_000_00), free("porticus", 3_000_00)])),
        on("2024-02-05", application_rejected("a2")),
        on("2024-04-01", pledged("porticus", None, 5_000_00)),
        on("2024-03-15", received("porticus", None, 5_000_00)),
        on("2024-04-10", settled("a1", 6_000_00, vec![free("janivo", 500_00), free("porticus", 1_500_00)])),
        on("2024-04-20", refunded("a1", 1_000_00, vec![free("janivo", 250_00), free("porticus", 750_00)], true)),
    ]
}

/// A pot as of a date: pledged, received, awarded, paid, refunded, then
/// outstanding, available, open commitments, cash held; in cents.
fn dated_pot(view: &dated::DatedView, partner_id: &str) -> [i128; 9] {
    let p = view.pots.get(&pot(partner_id, None)).copied().unwrap_or_default();
    [
        p.pledged,
        p.received,
        p.awarded,
        p.paid,
        p.refunded,
        p.outstanding(),
        p.available(),
        p.open_commitments(),
        p.cash_held(),
    ]
    .map(SignedAmount::minor)
}

#[test]
fn business_date_views_count_every_event_by_its_own_date() {
    let history = dated_history();
    let view = |date: &str| dated::DatedView::fold(day(date), &history);
    #[rustfmt::skip]
    let pots: &[(&str, &str, [i128; 9])] = &[
        // date,        partner,     pledged,   received,  awarded,  paid,     refunded, outstanding, available, open,     cash
        ("2023-12-31", "porticus", [0,         0,         0,        0,        0,        0,           0,         0,        0]),
        ("2024-01-31", "porticus", [30_000_00, 30_000_00, 0,        0,        0,        0,           30_000_00, 0,        30_000_00]),
        ("2024-01-31", "janivo",   [10_000_00, 0,         0,        0,        0,        10_000_00,   0,         0,        0]),
        ("2024-02-05", "janivo",   [10_000_00, 10_000_00, 0,        0,        0,        0,           10_000_00, 0,        10_000_00]),
        // Paid on 25 February, awarded on 1 March: the commitment is negative in between.
        ("2024-02-28", "porticus", [30_000_00, 30_000_00, 0,        3_000_00, 0,        0,           30_000_00, -3_000_00, 27_000_00]),
        ("2024-02-28", "janivo",   [10_000_00, 10_000_00, 0,        1_000_00, 0,        0,           10_000_00, -1_000_00, 9_000_00]),
        ("2024-03-01", "porticus", [30_000_00, 30_000_00, 6_000_00, 3_000_00, 0,        0,           24_000_00, 3_000_00, 27_000_00]),
        // Received on 15 March what is pledged only on 1 April.
        ("2024-03-20", "porticus", [30_000_00, 35_000_00, 6_000_00, 3_000_00, 0,        -5_000_00,   29_000_00, 3_000_00, 32_000_00]),
        ("2024-04-10", "porticus", [35_000_00, 35_000_00, 4_500_00, 3_000_00, 0,        0,           30_500_00, 1_500_00, 32_000_00]),
        ("2024-04-30", "porticus", [35_000_00, 35_000_00, 3_750_00, 3_000_00, 750_00,   0,           31_250_00, 1_500_00, 32_750_00]),
        ("2024-04-30", "janivo",   [10_000_00, 10_000_00, 1_250_00, 1_000_00, 250_00,   0,           8_750_00,  500_00,   9_250_00]),
    ];
    for (date, partner_id, expected) in pots {
        assert_eq!(dated_pot(&view(date), partner_id), *expected, "{partner_id} as of {date}");
    }

    #[rustfmt::skip]
    let rounds: &[(&str, [u32; 6], [i128; 4])] = &[
        // date,       received, decided, awarded, rejected, withdrawn, pending; requested, awarded, committed, budget left
        ("2023-12-31", [0, 0, 0, 0, 0, 0], [0,         0,        0,        100_000_00]),
        // Rejected on 5 February, submitted on 10 February: a decision, never a negative pending.
        ("2024-02-05", [1, 1, 0, 1, 0, 1], [8_000_00,  0,        0,        100_000_00]),
        ("2024-02-28", [2, 1, 0, 1, 0, 1], [13_000_00, 0,        0,        100_000_00]),
        ("2024-03-01", [2, 2, 1, 1, 0, 0], [13_000_00, 8_000_00, 8_000_00, 92_000_00]),
        ("2024-04-10", [2, 2, 1, 1, 0, 0], [13_000_00, 8_000_00, 6_000_00, 94_000_00]),
        ("2024-04-30", [2, 2, 1, 1, 0, 0], [13_000_00, 8_000_00, 5_000_00, 95_000_00]),
    ];
    for (date, counts, money) in rounds {
        let view = view(date);
        let r = &view.rounds[&round("r1")];
        let got = [
            r.applications_received,
            r.applications_decided(),
            r.applications_awarded,
            r.applications_rejected,
            r.applications_withdrawn,
            r.applications_pending,
        ];
        assert_eq!(got, *counts, "round counts as of {date}");
        let got = [
            SignedAmount::from(r.amount_requested),
            SignedAmount::from(r.amount_awarded),
            r.amount_committed,
            r.budget_left(),
        ]
        .map(SignedAmount::minor);
        assert_eq!(got, *money, "round amounts as of {date}");
    }

    // Grants: awarded on 1 March, settled on 10 April.
    let grants = |date| (view(date).grants, view(date).grants_active);
    assert_eq!(
        [grants("2024-02-28"), grants("2024-03-01"), grants("2024-04-09"), grants("2024-04-10")],
        [(0, 0), (1, 1), (1, 1), (1, 0)]
    );
    // The structure is there from the start: the fund, both partners, the round.
    let early = view("2000-01-01");
    assert_eq!(early.fund.as_ref().map(|f| f.name.as_str()), Some(FUND));
    assert_eq!(early.partners.len(), 2);
    assert!(early.pots.is_empty());
    assert_eq!(early.fund_totals(), dated::DatedPot::default());
}

/// On a date after every event, the business-date view and the live state
/// agree to the cent: they fold the same facts.
#[test]
fn a_business_date_after_everything_gives_the_live_figures() {
    let history = dated_history();
    let state = given(&history);
    let view = dated::DatedView::fold(day("2099-12-31"), &history);
    assert_eq!(view.pots.keys().collect::<Vec<_>>(), state.pots.keys().collect::<Vec<_>>());
    for (key, live) in &state.pots {
        let dated = view.pots[key];
        let signed = |a: Amount| SignedAmount::from(a);
        assert_eq!(
            [dated.pledged, dated.received, dated.awarded, dated.paid, dated.refunded, dated.cash_held()],
            [live.pledged, live.received, live.awarded, live.paid, live.refunded, live.cash_held()].map(signed),
            "{key:?}"
        );
    }
    let (live, dated) = (&state.rounds[&round("r1")], &view.rounds[&round("r1")]);
    assert_eq!(dated.applications_pending, live.applications_pending());
    assert_eq!(dated.amount_committed, SignedAmount::from(live.amount_committed));
    assert_eq!(dated.closed_on, live.closed_on);

    // A closing dated in the future shows only from that date on.
    let mut closing = history.clone();
    closing.push(on("2024-07-01", round_closed("r1")));
    let closed = |date| dated::DatedView::fold(day(date), &closing).rounds[&round("r1")].closed_on;
    assert_eq!((closed("2024-06-30"), closed("2024-07-01")), (None, Some(day("2024-07-01"))));
}

#[test]
fn signed_figures_keep_their_sign_and_every_digit() {
    let eur = Currency::eur();
    let signed = |minor: i64| SignedAmount::from(cents(minor.abs()));
    let negative = |minor: i64| SignedAmount::ZERO.minus(cents(minor));
    assert_eq!(eur.plain_signed(signed(1_250_000)), "12500.00");
    assert_eq!(eur.plain_signed(signed(5)), "0.05");
    assert_eq!(eur.plain_signed(SignedAmount::ZERO), "0.00");
    assert_eq!(eur.plain_signed(negative(300_000)), "-3000.00");
    assert_eq!(eur.plain_signed(negative(7)), "-0.07");
    let jpy = Currency::new("JPY", 0).unwrap();
    assert_eq!(jpy.plain_signed(negative(1500)), "-1500");
    // Where both apply, the signed text is the unsigned one.
    for minor in [0, 1, 99, 100, 123_456_789] {
        assert_eq!(eur.plain_signed(signed(minor)), eur.plain(cents(minor)));
    }
}

/// Ids and short texts are inline strings (`CompactString`) and the rarely
/// present proposals are boxed, to keep a large fund's state small: each
/// still encodes, decodes, orders and prints exactly as the `String` or
/// inline value it replaced, so checkpoints and event payloads are
/// unchanged.
#[test]
fn compact_ids_texts_and_boxed_proposals_encode_as_what_they_replaced() {
    use fundledger::log::codec::{decode, encode};
    // Short ids are stored inline, long ones (up to 64 bytes) on the heap.
    let texts = ["porticus", "2023-1", "a", "z.y_x-w", &"x".repeat(24), &"y".repeat(25), &"0".repeat(64)];
    for text in texts {
        let id = PartnerId::new(text).unwrap();
        assert_eq!(encode(&id), encode(&text.to_string()), "{text}");
        assert_eq!(decode::<PartnerId>(&encode(&text.to_string())).unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("PartnerId({text:?})"));
        assert_eq!(id.to_string(), text);
    }
    let mut ids: Vec<RoundId> = texts.iter().map(|t| RoundId::new(t).unwrap()).collect();
    let mut strings: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    ids.sort();
    strings.sort();
    assert_eq!(ids.iter().map(RoundId::as_str).collect::<Vec<_>>(), strings);

    #[derive(serde::Serialize)]
    struct ApplicantWithStrings {
        name: String,
        organisation_id: String,
        place: String,
        country: String,
    }
    let long_name = "Stichting Buurtinitiatief De Nieuwe Wijk (Utrecht-Oost)";
    let applicant = Applicant {
        name: long_name.into(),
        organisation_id: "NL-KVK-12345678".into(),
        place: "Willemstad".into(),
        country: "CW".into(),
    };
    let with_strings = ApplicantWithStrings {
        name: long_name.into(),
        organisation_id: "NL-KVK-12345678".into(),
        place: "Willemstad".into(),
        country: "CW".into(),
    };
    assert_eq!(encode(&applicant), encode(&with_strings));
    assert_eq!(decode::<Applicant>(&encode(&with_strings)).unwrap(), applicant);

    let proposal = state::AwardProposal {
        amount: cents(5_000_00),
        reason: "meets the criteria".into(),
        proposed_by: "anna".into(),
        proposed_on: Date::parse("2023-05-01").unwrap(),
    };
    let boxed: Option<Box<state::AwardProposal>> = Some(Box::new(proposal.clone()));
    assert_eq!(encode(&boxed), encode(&Some(proposal)));
    assert_eq!(encode(&None::<Box<state::AwardProposal>>), encode(&None::<state::AwardProposal>));
}

/// `StreamId::is` (what a replay checks every event's envelope against)
/// agrees with the text form, and with nothing else.
#[test]
fn a_stream_is_its_text_form_and_nothing_else() {
    let streams = [
        StreamId::Fund,
        StreamId::Partner(PartnerId::new("porticus").unwrap()),
        StreamId::Round(RoundId::new("r1").unwrap()),
        StreamId::Application(ApplicationId::new("app-0001-with-an-id-longer-than-24").unwrap()),
        StreamId::Principal(PrincipalId::new("officer-1").unwrap()),
    ];
    for stream in &streams {
        let text = stream.to_string();
        assert!(stream.is(&text), "{text}");
        assert_eq!(StreamId::parse(&text).as_ref(), Some(stream));
        for other in &streams {
            assert_eq!(other.is(&text), other == stream, "{other} against {text}");
        }
        for near in [format!("{text}x"), text[..text.len() - 1].to_owned(), format!("/{text}"), String::new()] {
            assert!(!stream.is(&near), "{stream} is not {near:?}");
        }
    }
    assert!(!StreamId::Partner(PartnerId::new("r1").unwrap()).is("round/r1"));
}
