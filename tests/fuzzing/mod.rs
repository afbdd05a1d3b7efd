//! The bodies of the fuzz targets: what each one does with its input and
//! what it asserts. Shared, through `#[path]`, by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` (libFuzzer drives them) and by
//! `tests/fuzz_corpus.rs`, which replays the committed corpus and every
//! crash ever found through these same functions in `cargo test`.
//!
//! Hostile input must give an error, never a panic: each function panics
//! only when fundledger does, or when a property it checks does not hold.
#![allow(dead_code)]

#[path = "../invariants/mod.rs"]
pub mod invariants;

use arbitrary::{Arbitrary, Unstructured};
use fundledger::api::convert::{self, IntoCommand};
use fundledger::api::pb;
use fundledger::domain::money::{AmountError, AMOUNT_MAJOR_MAX};
use fundledger::domain::*;
use fundledger::log::{backup, codec, Envelope};
use fundledger::projections::{decode_event, Projections};
use prost::Message;
use rust_decimal::Decimal;

/// The targets, by the name of their directory under `fuzz/corpus/`.
pub const TARGETS: [&str; 5] = ["record_decode", "request_convert", "amount_parse", "command_path", "backup_decode"];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "record_decode" => record_decode(data),
        "request_convert" => request_convert(data),
        "amount_parse" => amount_parse(data),
        "command_path" => command_path(data),
        "backup_decode" => backup_decode(data),
        other => panic!("no fuzz target {other}"),
    }
}

// ------------------------------------------------------------------ stored bytes

/// Arbitrary bytes as a stored record, a record body, an event payload and
/// a projection checkpoint: each decodes or is refused. What decodes encodes
/// back to the same bytes: one event has one stored form, so one hash.
pub fn record_decode(data: &[u8]) {
    let borrowed = codec::decode_record_borrowed(data);
    assert_eq!(
        borrowed.as_ref().ok().map(|decoded| decoded.body.to_owned_body()),
        codec::decode_record(data).ok().map(|decoded| decoded.body),
        "RecordBodyRef and RecordBody take the same fields from the same bytes"
    );
    if let Ok(decoded) = codec::decode_record(data) {
        let _ = decoded.hash_matches();
        let body = &decoded.body;
        let fingerprint_bytes = decoded.fingerprint.map_or(0, |fingerprint| fingerprint.len());
        let body_bytes = &decoded.body_bytes[..decoded.body_bytes.len() - fingerprint_bytes];
        assert_eq!(codec::encode(body), body_bytes, "a record body has one encoding");
        let envelope = Envelope {
            seq: body.seq,
            stream: body.stream.clone(),
            stream_version: body.stream_version,
            event_type: body.event_type.clone(),
            schema_version: body.schema_version,
            recorded_at_micros: body.recorded_at_micros,
            actor: body.actor.clone(),
            request_id: body.request_id.clone(),
            prev_hash: decoded.prev_hash,
            hash: decoded.hash,
            fingerprint: decoded.fingerprint,
        };
        let _ = decode_event(&envelope, &body.payload);
    }
    // The reads' fast path takes only what serde takes, as serde does.
    if let Some(event) = fundledger::projections::decode_payload_fast(data) {
        assert_eq!(codec::decode::<Event>(data).ok(), Some(event), "the fast path and serde disagree");
    }
    if let Ok(event) = codec::decode::<Event>(data) {
        assert_eq!(codec::encode(&event), data, "an event has one encoding");
        let _ = (event.type_name(), event.stream().to_string());
    }
    let _ = Projections::decode_checkpoint(data);
}

/// Arbitrary bytes as a backup file: checked and refused, never a panic.
pub fn backup_decode(data: &[u8]) {
    if let Ok(summary) = backup::check(data) {
        assert_eq!(summary.bytes, data.len() as u64);
    }
}

// ------------------------------------------------------------------ requests

fn command<M: Message + Default + IntoCommand>(bytes: &[u8]) {
    if let Ok(message) = M::decode(bytes) {
        if let Ok(parsed) = message.into_command() {
            assert!(!parsed.request_id.is_empty(), "a command without a request id was taken");
            let _ = (parsed.command.name(), parsed.command.stream().to_string());
        }
    }
}

fn query<M: Message + Default>(bytes: &[u8], convert: impl FnOnce(M)) {
    if let Ok(message) = M::decode(bytes) {
        convert(message);
    }
}

/// The first byte picks a request message, the rest is decoded as it with
/// prost and, when it decodes, converted as the service converts it.
pub fn request_convert(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else { return };
    match pick % 32 {
        0 => command::<pb::OpenFundRequest>(bytes),
        1 => command::<pb::AdmitPartnerRequest>(bytes),
        2 => command::<pb::PledgeContributionRequest>(bytes),
        3 => command::<pb::ReducePledgeRequest>(bytes),
        4 => command::<pb::RecordReceiptRequest>(bytes),
        5 => command::<pb::OpenRoundRequest>(bytes),
        6 => command::<pb::CloseRoundRequest>(bytes),
        7 => command::<pb::SubmitApplicationRequest>(bytes),
        8 => command::<pb::WithdrawApplicationRequest>(bytes),
        9 => command::<pb::RejectApplicationRequest>(bytes),
        10 => command::<pb::AwardGrantRequest>(bytes),
        11 => command::<pb::ReduceGrantRequest>(bytes),
        12 => command::<pb::WithdrawGrantRequest>(bytes),
        13 => command::<pb::SettleGrantRequest>(bytes),
        14 => command::<pb::MakePaymentRequest>(bytes),
        15 => command::<pb::RecordRefundRequest>(bytes),
        16 => command::<pb::ProposeAwardRequest>(bytes),
        17 => command::<pb::ApproveAwardRequest>(bytes),
        18 => command::<pb::ProposePaymentRequest>(bytes),
        19 => command::<pb::ApprovePaymentRequest>(bytes),
        20 => command::<pb::DeclareConflictRequest>(bytes),
        21 => command::<pb::SetApprovalThresholdsRequest>(bytes),
        22 => command::<pb::GrantAccessRequest>(bytes),
        23 => command::<pb::RevokeAccessRequest>(bytes),
        24 => query(bytes, |m: pb::GetPartnerBalancesRequest| {
            let _ = convert::as_of(m.as_of);
            let _ = m.partner_id.map(|p| convert::partner_id("partner_id", &p));
        }),
        25 => query(bytes, |m: pb::ReadEventsRequest| {
            let _ = convert::event_filter(m.filter);
        }),
        26 => query(bytes, |m: pb::SubscribeRequest| {
            let _ = convert::event_filter(m.filter);
        }),
        27 => query(bytes, |m: pb::ListApplicationsRequest| {
            let _ = convert::application_query(m);
        }),
        28 => query(bytes, |m: pb::Export360GivingRequest| {
            let _ = convert::three_sixty_giving_options(m);
        }),
        29 => query(bytes, |m: pb::ExportStatementRequest| {
            let _ = convert::statement_request(m);
        }),
        30 => query(bytes, |m: pb::VerifyLogRequest| {
            if let Some(checkpoint) = m.checkpoint {
                let _ = fundledger::api::audit::checkpoint_from_pb(&checkpoint);
            }
        }),
        _ => query(bytes, |m: pb::GetRoundFiguresRequest| {
            let _ = convert::as_of(m.as_of);
            let _ = m.round_id.map(|r| convert::round_id("round_id", &r));
        }),
    }
}

// ------------------------------------------------------------------ amounts

/// What the amount text must come to, worked out digit by digit with
/// integers, independently of `rust_decimal`: the minor units, or why not.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Minor(i64),
    Malformed,
    NotPositive,
    TooPrecise,
    /// Too large, or more digits than an exact decimal carries: refused
    /// either way, and `MoneyInput::parse` tells the two apart by digits.
    TooBig,
}

/// What the text must come to, and whether it is in the grey zone of more
/// than 28 digits, where an exact decimal may or may not hold it (it holds
/// mantissas below 2^96 with at most 28 decimals): there, a refusal for too
/// many digits is right as well.
fn expected(text: &str, minor_units: u8, allow_zero: bool) -> (Expected, bool) {
    let text = text.trim();
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let negative = unsigned.len() != text.len();
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if text.is_empty() || text.len() > 40 || !digits(int) || (unsigned.contains('.') && !digits(frac)) {
        return (Expected::Malformed, false);
    }
    let grey = format!("{int}{frac}").trim_start_matches('0').len() > 28 || frac.len() > 28;
    let frac_kept = frac.trim_end_matches('0');
    let int_value: i128 = match int.trim_start_matches('0') {
        "" => 0,
        digits if digits.len() > 30 => return (Expected::TooBig, true),
        digits => digits.parse().expect("digits"),
    };
    let zero = int_value == 0 && frac_kept.is_empty();
    if negative && !zero || !allow_zero && zero {
        return (Expected::NotPositive, grey);
    }
    if frac_kept.len() > usize::from(minor_units) {
        return (Expected::TooPrecise, grey);
    }
    let scale = 10i128.pow(u32::from(minor_units));
    let frac_minor: i128 = if frac_kept.is_empty() {
        0
    } else {
        format!("{frac_kept:0<width$}", width = usize::from(minor_units)).parse().expect("digits")
    };
    let minor = int_value * scale + frac_minor;
    if minor > i128::from(AMOUNT_MAJOR_MAX) * scale {
        return (Expected::TooBig, grey);
    }
    (Expected::Minor(i64::try_from(minor).expect("bounded")), grey)
}

/// Amount parsing: decimal text into minor units of a currency with 0 to 4
/// of them, exactly or not at all, agreeing with a digit-by-digit reading of
/// the text; and formatting then parsing any amount gives it back.
pub fn amount_parse(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(minor_units) = u.int_in_range(0..=4u8) else { return };
    let Ok(allow_zero) = u.arbitrary::<bool>() else { return };
    let Ok(minor) = u.int_in_range(0..=AMOUNT_MAJOR_MAX * 10i64.pow(u32::from(minor_units))) else { return };
    let text = String::from_utf8_lossy(u.take_rest()).into_owned();
    let currency = Currency::new("EUR", minor_units).expect("a valid currency");

    // Format, then parse: the same amount, and the text is what
    // `plain_signed` writes too.
    let amount = Amount::from_minor(minor).expect("not negative");
    let plain = currency.plain(amount);
    assert_eq!(plain, currency.plain_signed(amount.into()), "two ways of writing {minor}");
    let back = MoneyInput::parse(&plain, "EUR").unwrap_or_else(|e| panic!("{plain:?} does not parse: {e}"));
    assert_eq!(currency.to_amount(&back, true), Ok(amount), "{plain:?} back");
    let _ = currency.display(amount);

    // Parse arbitrary text.
    let outcome = MoneyInput::parse(&text, "EUR").and_then(|input| {
        let amount = currency.to_amount(&input, allow_zero)?;
        assert_eq!(Decimal::new(amount.minor(), u32::from(minor_units)), input.value, "{text:?} taken exactly");
        Ok(amount)
    });
    let (want, grey) = expected(&text, minor_units, allow_zero);
    match (&outcome, &want) {
        (Ok(amount), Expected::Minor(minor)) if amount.minor() == *minor => {}
        (Err(AmountError::Malformed { .. }), Expected::Malformed)
        | (Err(AmountError::NotPositive { .. }), Expected::NotPositive)
        | (Err(AmountError::TooPrecise { .. }), Expected::TooPrecise)
        | (Err(AmountError::TooLarge { .. } | AmountError::TooManyDigits { .. }), Expected::TooBig) => {}
        (Err(AmountError::TooLarge { .. } | AmountError::TooManyDigits { .. }), _) if grey => {}
        _ => panic!(
            "{text:?} with {minor_units} minor units (zero allowed: {allow_zero}): got {outcome:?}, expected {want:?}"
        ),
    }
}

// ------------------------------------------------------------------ the command path

const PARTNERS: [&str; 3] = ["p0", "p1", "p2"];
const ROUNDS: [&str; 2] = ["r0", "r1"];
const APPLICATIONS: usize = 6;
const PRINCIPALS: [&str; 8] =
    ["admin", "officer-a", "officer-b", "treasurer-p0", "treasurer-p1", "treasurer-p2", "auditor", "newcomer"];
/// Commands per input after the opening: enough for every state of an
/// application, few enough that each input runs in milliseconds.
const STEPS_MAX: usize = 64;

/// An amount as the fuzzer chooses it: cents, mostly well-formed.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Amt {
    cents: u32,
    kind: u8,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    OpenFund,
    Admit { partner: u8 },
    Pledge { partner: u8, earmark: Option<u8>, amount: Amt },
    ReducePledge { partner: u8, earmark: Option<u8>, amount: Amt },
    Receipt { partner: u8, earmark: Option<u8>, amount: Amt },
    OpenRound { round: u8, ceiling: Amt, grant_max: Amt, inverted: bool },
    CloseRound { round: u8 },
    Submit { app: u8, round: u8, amount: Amt },
    Withdraw { app: u8 },
    Reject { app: u8 },
    Award { app: u8, amount: Amt },
    ReduceGrant { app: u8, amount: Amt },
    WithdrawGrant { app: u8 },
    Settle { app: u8, amount: Amt },
    Pay { app: u8, amount: Amt },
    Refund { app: u8, amount: Amt },
    Thresholds { round: u8, award: Option<Amt>, payment: Option<Amt> },
    Grant { principal: u8, role: u8, token: u8 },
    Revoke { principal: u8 },
    ProposeAward { app: u8, amount: Amt },
    ApproveAward { app: u8 },
    ProposePayment { app: u8, amount: Amt },
    ApprovePayment { app: u8 },
    Declare { app: u8 },
}

/// One command and who sends it: below 128 anyone (by index), from 128 on
/// someone whose role may send it.
#[derive(Arbitrary, Debug, Clone)]
pub struct Step {
    who: u8,
    op: Op,
}

fn partner(n: u8) -> PartnerId {
    PartnerId::new(PARTNERS[usize::from(n) % PARTNERS.len()]).expect("valid")
}

fn round(n: u8) -> RoundId {
    RoundId::new(ROUNDS[usize::from(n) % ROUNDS.len()]).expect("valid")
}

fn app(n: u8) -> ApplicationId {
    ApplicationId::new(&format!("app-{}", usize::from(n) % APPLICATIONS)).expect("valid")
}

fn principal(n: u8) -> PrincipalId {
    PrincipalId::new(PRINCIPALS[usize::from(n) % PRINCIPALS.len()]).expect("valid")
}

fn role_of(n: u8) -> Role {
    match usize::from(n) % PRINCIPALS.len() {
        0 => Role::Admin,
        1 | 2 => Role::Officer,
        i @ 3..=5 => Role::Partner(partner(i as u8 - 3)),
        _ => Role::Auditor,
    }
}

fn money(amount: Amt) -> MoneyInput {
    let cents = amount.cents % 50_000_000;
    let text = format!("{}.{:02}", cents / 100, cents % 100);
    let parse = |text: &str, currency: &str| MoneyInput::parse(text, currency).expect("well-formed");
    match amount.kind % 12 {
        0..=7 => parse(&text, "EUR"),
        8 => parse(&format!("{text}1"), "EUR"),
        9 => parse(&format!("-{text}"), "EUR"),
        10 => parse("0", "EUR"),
        _ => parse(&text, "USD"),
    }
}

fn day() -> Date {
    Date::parse("2024-03-01").expect("a date")
}

fn to_command(op: &Op) -> Command {
    let reason = || "because".to_string();
    match op.clone() {
        Op::OpenFund => Command::OpenFund { name: "Gemeenschapsfonds".into(), currency: Currency::eur() },
        Op::Admit { partner: p } => Command::AdmitPartner {
            partner: partner(p),
            name: format!("Partner {p}"),
            organisation_id: "NL-KVK-12345678".into(),
        },
        Op::Pledge { partner: p, earmark, amount } => Command::PledgeContribution {
            partner: partner(p),
            amount: money(amount),
            earmark: earmark.map(round),
            pledged_on: day(),
        },
        Op::ReducePledge { partner: p, earmark, amount } => Command::ReducePledge {
            partner: partner(p),
            amount: money(amount),
            earmark: earmark.map(round),
            reason: reason(),
            reduced_on: day(),
        },
        Op::Receipt { partner: p, earmark, amount } => Command::RecordReceipt {
            partner: partner(p),
            amount: money(amount),
            earmark: earmark.map(round),
            value_date: day(),
            bank_reference: "NL-REF".into(),
        },
        Op::OpenRound { round: r, ceiling, grant_max, inverted } => {
            let (opens, closes) = if inverted { ("2024-12-31", "2024-01-01") } else { ("2024-01-01", "2024-12-31") };
            Command::OpenRound {
                round: round(r),
                name: format!("Round {r}"),
                budget_ceiling: money(ceiling),
                grant_max: money(grant_max),
                opens_on: Date::parse(opens).expect("a date"),
                closes_on: Date::parse(closes).expect("a date"),
            }
        }
        Op::CloseRound { round: r } => Command::CloseRound { round: round(r), closed_on: day() },
        Op::Submit { app: a, round: r, amount } => Command::SubmitApplication {
            application: app(a),
            round: round(r),
            applicant: Applicant {
                name: "Bewonersgroep".into(),
                organisation_id: Default::default(),
                place: "Willemstad".into(),
                country: "CW".into(),
            },
            title: "Dialoogtafels".into(),
            description: String::new(),
            amount_requested: money(amount),
            submitted_on: day(),
        },
        Op::Withdraw { app: a } => {
            Command::WithdrawApplication { application: app(a), reason: reason(), withdrawn_on: day() }
        }
        Op::Reject { app: a } => {
            Command::RejectApplication { application: app(a), reason: reason(), decided_on: day() }
        }
        Op::Award { app: a, amount } => {
            Command::AwardGrant { application: app(a), amount: money(amount), reason: reason(), decided_on: day() }
        }
        Op::ReduceGrant { app: a, amount } => {
            Command::ReduceGrant { application: app(a), amount: money(amount), reason: reason(), decided_on: day() }
        }
        Op::WithdrawGrant { app: a } => {
            Command::WithdrawGrant { application: app(a), reason: reason(), decided_on: day() }
        }
        Op::Settle { app: a, amount } => Command::SettleGrant {
            application: app(a),
            final_amount: money(amount),
            reason: reason(),
            decided_on: day(),
        },
        Op::Pay { app: a, amount } => Command::MakePayment {
            application: app(a),
            amount: money(amount),
            value_date: day(),
            bank_reference: "PAY".into(),
        },
        Op::Refund { app: a, amount } => Command::RecordRefund {
            application: app(a),
            amount: money(amount),
            value_date: day(),
            bank_reference: "BACK".into(),
        },
        Op::Thresholds { round: r, award, payment } => Command::SetApprovalThresholds {
            round: round(r),
            award_above: award.map(money),
            payment_above: payment.map(money),
        },
        Op::Grant { principal: p, role, token } => {
            Command::GrantAccess { principal: principal(p), role: role_of(role), token_sha256: [token % 12; 32] }
        }
        Op::Revoke { principal: p } => Command::RevokeAccess { principal: principal(p), reason: reason() },
        Op::ProposeAward { app: a, amount } => {
            Command::ProposeAward { application: app(a), amount: money(amount), reason: reason(), proposed_on: day() }
        }
        Op::ApproveAward { app: a } => Command::ApproveAward { application: app(a), decided_on: day() },
        Op::ProposePayment { app: a, amount } => Command::ProposePayment {
            application: app(a),
            amount: money(amount),
            value_date: day(),
            bank_reference: "PAY".into(),
        },
        Op::ApprovePayment { app: a } => Command::ApprovePayment { application: app(a) },
        Op::Declare { app: a } => {
            Command::DeclareConflict { application: app(a), reason: reason(), declared_on: day() }
        }
    }
}

/// Who sends `command`: anyone, or (from 128 on) one whose role may; for an
/// approval, an officer other than the proposer unless `who` says otherwise.
fn actor(state: &FundState, who: u8, command: &Command) -> Actor {
    if who < 128 {
        return Actor { principal: principal(who), role: role_of(who) };
    }
    let identity = |n: u8| Actor { principal: principal(n), role: role_of(n) };
    let proposer = match command {
        Command::ApproveAward { application, .. } => {
            state.applications.get(application).and_then(|a| a.award_proposal.as_ref()).map(|p| p.proposed_by.clone())
        }
        Command::ApprovePayment { application } => state
            .applications
            .get(application)
            .and_then(|a| a.grant.as_ref())
            .and_then(|g| g.payment_proposal.as_ref())
            .map(|p| p.proposed_by.clone()),
        _ => None,
    };
    match invariants::permitted_role(command) {
        Role::Admin => identity(0),
        Role::Officer => match proposer {
            Some(proposer) if who % 4 != 0 => identity(if proposer == PRINCIPALS[1] { 2 } else { 1 }),
            _ => identity(1 + who % 2),
        },
        Role::Partner(p) => identity(3 + PARTNERS.iter().position(|id| *id == p.as_str()).expect("ours") as u8),
        Role::Auditor => identity(6),
    }
}

/// The commands an input mostly starts with: access for everyone, the fund,
/// its partners, money in, two rounds.
fn opening() -> Vec<Step> {
    let permitted = |op| Step { who: 128, op };
    let eur = |cents| Amt { cents, kind: 0 };
    let mut steps: Vec<Step> = (0..7u8).map(|n| permitted(Op::Grant { principal: n, role: n, token: n + 1 })).collect();
    steps.push(permitted(Op::OpenFund));
    for p in 0..3 {
        steps.push(permitted(Op::Admit { partner: p }));
        steps.push(permitted(Op::Pledge { partner: p, earmark: None, amount: eur(20_000_000) }));
        steps.push(permitted(Op::Receipt { partner: p, earmark: None, amount: eur(10_000_000) }));
    }
    steps.push(permitted(Op::OpenRound {
        round: 0,
        ceiling: eur(15_000_000),
        grant_max: eur(1_500_000),
        inverted: false,
    }));
    steps.push(permitted(Op::OpenRound {
        round: 1,
        ceiling: eur(2_500_000),
        grant_max: eur(1_000_000),
        inverted: false,
    }));
    steps
}

/// The command path as a whole, on the pure domain: the first byte says
/// whether the opening runs first, the rest becomes up to [`STEPS_MAX`]
/// commands, each sent by someone; every one goes through `decide`, every
/// accepted event through `evolve`, and all the invariants of
/// `tests/invariants/` are checked after each step.
pub fn command_path(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let opened = u.arbitrary::<u8>().map_or(true, |b| b % 8 != 0);
    let mut steps = if opened { opening() } else { Vec::new() };
    for step in u.arbitrary_iter::<Step>().into_iter().flatten().take(STEPS_MAX) {
        match step {
            Ok(step) => steps.push(step),
            Err(_) => break,
        }
    }
    let mut checked = invariants::Invariants::default();
    for step in &steps {
        let command = to_command(&step.op);
        let actor = actor(&checked.state, step.who, &command);
        let _ = checked.apply(&command, &actor);
    }
}
