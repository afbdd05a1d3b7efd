//! The event log as JSON Lines: one event a line, with every envelope field,
//! the decoded payload and the exact payload bytes. `docs/AUDIT.md` says how
//! an auditor recomputes every hash from a line and checks that the decoded
//! payload says what the hashed bytes say; `tools/verify_export.py` does it.
//!
//! A line's keys, in this order: `seq`, `stream`, `stream_version`,
//! `event_type`, `schema_version`, `recorded_at` (RFC 3339, UTC, with
//! microseconds), `recorded_at_micros`, `actor`, `request_id`, `prev_hash`,
//! `hash` (64 lowercase hex digits each), `fingerprint` (the request
//! fingerprint the hash covers after the body, 64 hex digits, or null for a
//! record that carries none), `payload`, `payload_hex`. In the
//! payload, amounts are `{"value": "12500.00", "currency": "EUR"}` (exact
//! decimal text with all the currency's digits), dates `YYYY-MM-DD`, pots
//! `{"partner": …, "earmark": round or null}`; field names are those of
//! [`crate::domain::Event`].

use super::{rfc3339_micros, ExportError, LoggedEvent};
use crate::domain::{Amount, Applicant, Currency, Date, Event, PotKey, Share};
use serde::Serialize;
use std::io::Write;

/// Writes one line per event.
pub fn write(
    events: impl Iterator<Item = Result<LoggedEvent, ExportError>>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let mut currency: Option<Currency> = None;
    // Access may be granted before the fund opens (`fundledger init`); those
    // events carry no amount, so no currency is needed to write them.
    let no_currency = Currency::none();
    for event in events {
        let event = event?;
        if let Event::FundOpened { currency: c, .. } = &event.event {
            currency = Some(c.clone());
        }
        let access = matches!(event.event, Event::AccessGranted { .. } | Event::AccessRevoked { .. });
        let currency = match &currency {
            Some(currency) => currency,
            None if access => &no_currency,
            None => {
                return Err(ExportError::FundNotOpened {
                    seq: event.envelope.seq,
                    event_type: event.envelope.event_type.clone(),
                })
            }
        };
        serde_json::to_writer(&mut *out, &line(currency, &event)?)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    stream: &'a str,
    stream_version: u64,
    event_type: &'a str,
    schema_version: u16,
    recorded_at: String,
    recorded_at_micros: i64,
    actor: &'a str,
    request_id: &'a str,
    prev_hash: String,
    hash: String,
    fingerprint: Option<String>,
    payload: Payload<'a>,
    payload_hex: String,
}

fn line<'a>(currency: &'a Currency, e: &'a LoggedEvent) -> Result<Line<'a>, ExportError> {
    let envelope = &e.envelope;
    Ok(Line {
        seq: envelope.seq,
        stream: &envelope.stream,
        stream_version: envelope.stream_version,
        event_type: &envelope.event_type,
        schema_version: envelope.schema_version,
        recorded_at: rfc3339_micros(envelope.recorded_at_micros)?,
        recorded_at_micros: envelope.recorded_at_micros,
        actor: &envelope.actor,
        request_id: &envelope.request_id,
        prev_hash: hex::encode(envelope.prev_hash),
        hash: hex::encode(envelope.hash),
        fingerprint: envelope.fingerprint.map(hex::encode),
        payload: payload(currency, &e.event),
        payload_hex: hex::encode(&e.payload),
    })
}

#[derive(Serialize)]
struct Money<'a> {
    value: String,
    currency: &'a str,
}

#[derive(Serialize)]
struct Pot<'a> {
    partner: &'a str,
    earmark: Option<&'a str>,
}

#[derive(Serialize)]
struct ShareJson<'a> {
    pot: Pot<'a>,
    amount: Money<'a>,
}

#[derive(Serialize)]
struct CurrencyJson<'a> {
    code: &'a str,
    minor_units: u8,
}

/// The payload's fields, in the order of the stored encoding.
#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    FundOpened {
        name: &'a str,
        currency: CurrencyJson<'a>,
    },
    PartnerAdmitted {
        partner: &'a str,
        name: &'a str,
        organisation_id: &'a str,
    },
    ContributionPledged {
        pot: Pot<'a>,
        amount: Money<'a>,
        pledged_on: String,
    },
    PledgeReduced {
        pot: Pot<'a>,
        amount: Money<'a>,
        reason: &'a str,
        reduced_on: String,
    },
    ContributionReceived {
        pot: Pot<'a>,
        amount: Money<'a>,
        value_date: String,
        bank_reference: &'a str,
    },
    RoundOpened {
        round: &'a str,
        name: &'a str,
        budget_ceiling: Money<'a>,
        grant_max: Money<'a>,
        opens_on: String,
        closes_on: String,
    },
    RoundClosed {
        round: &'a str,
        closed_on: String,
    },
    ApplicationSubmitted {
        application: &'a str,
        round: &'a str,
        applicant: &'a Applicant,
        title: &'a str,
        description: &'a str,
        amount_requested: Money<'a>,
        submitted_on: String,
    },
    ApplicationWithdrawn {
        application: &'a str,
        reason: &'a str,
        withdrawn_on: String,
    },
    ApplicationRejected {
        application: &'a str,
        reason: &'a str,
        decided_by: &'a str,
        decided_on: String,
    },
    GrantAwarded {
        application: &'a str,
        amount: Money<'a>,
        attribution: Vec<ShareJson<'a>>,
        reason: &'a str,
        decided_by: &'a str,
        decided_on: String,
    },
    GrantReduced {
        application: &'a str,
        amount: Money<'a>,
        released: Vec<ShareJson<'a>>,
        reason: &'a str,
        decided_by: &'a str,
        decided_on: String,
    },
    GrantWithdrawn {
        application: &'a str,
        released: Vec<ShareJson<'a>>,
        reason: &'a str,
        decided_by: &'a str,
        decided_on: String,
    },
    GrantSettled {
        application: &'a str,
        final_amount: Money<'a>,
        released: Vec<ShareJson<'a>>,
        reason: &'a str,
        decided_by: &'a str,
        decided_on: String,
    },
    PaymentMade {
        application: &'a str,
        tranche: u32,
        amount: Money<'a>,
        attribution: Vec<ShareJson<'a>>,
        value_date: String,
        bank_reference: &'a str,
    },
    RefundReceived {
        application: &'a str,
        amount: Money<'a>,
        attribution: Vec<ShareJson<'a>>,
        releases: bool,
        value_date: String,
        bank_reference: &'a str,
    },
    ApprovalThresholdsSet {
        round: &'a str,
        award_above: Option<Money<'a>>,
        payment_above: Option<Money<'a>>,
    },
    AccessGranted {
        principal: &'a str,
        role: RoleJson<'a>,
        token_sha256: String,
    },
    AccessRevoked {
        principal: &'a str,
        reason: &'a str,
    },
    AwardProposed {
        application: &'a str,
        amount: Money<'a>,
        reason: &'a str,
        proposed_by: &'a str,
        proposed_on: String,
    },
    PaymentProposed {
        application: &'a str,
        amount: Money<'a>,
        value_date: String,
        bank_reference: &'a str,
        proposed_by: &'a str,
    },
    ConflictDeclared {
        application: &'a str,
        officer: &'a str,
        reason: &'a str,
        declared_on: String,
    },
}

/// A role: `{"kind": "partner", "partner": "porticus"}`.
#[derive(Serialize)]
struct RoleJson<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partner: Option<&'a str>,
}

fn role_json(role: &crate::domain::Role) -> RoleJson<'_> {
    use crate::domain::Role;
    match role {
        Role::Admin => RoleJson { kind: "admin", partner: None },
        Role::Officer => RoleJson { kind: "officer", partner: None },
        Role::Auditor => RoleJson { kind: "auditor", partner: None },
        Role::Partner(p) => RoleJson { kind: "partner", partner: Some(p.as_str()) },
    }
}

fn payload<'a>(currency: &'a Currency, event: &'a Event) -> Payload<'a> {
    let money = |amount: &Amount| Money { value: currency.plain(*amount), currency: &currency.code };
    let pot =
        |pot: &'a PotKey| Pot { partner: pot.partner.as_str(), earmark: pot.earmark.as_ref().map(|r| r.as_str()) };
    let shares = |shares: &'a [Share]| -> Vec<ShareJson<'a>> {
        shares.iter().map(|s| ShareJson { pot: pot(&s.pot), amount: money(&s.amount) }).collect()
    };
    let day = |date: &Date| date.to_string();
    use Event as E;
    match event {
        E::FundOpened { name, currency } => Payload::FundOpened {
            name,
            currency: CurrencyJson { code: &currency.code, minor_units: currency.minor_units },
        },
        E::PartnerAdmitted { partner, name, organisation_id } => {
            Payload::PartnerAdmitted { partner: partner.as_str(), name, organisation_id }
        }
        E::ContributionPledged { pot: p, amount, pledged_on } => {
            Payload::ContributionPledged { pot: pot(p), amount: money(amount), pledged_on: day(pledged_on) }
        }
        E::PledgeReduced { pot: p, amount, reason, reduced_on } => {
            Payload::PledgeReduced { pot: pot(p), amount: money(amount), reason, reduced_on: day(reduced_on) }
        }
        E::ContributionReceived { pot: p, amount, value_date, bank_reference } => Payload::ContributionReceived {
            pot: pot(p),
            amount: money(amount),
            value_date: day(value_date),
            bank_reference,
        },
        E::RoundOpened { round, name, budget_ceiling, grant_max, opens_on, closes_on } => Payload::RoundOpened {
            round: round.as_str(),
            name,
            budget_ceiling: money(budget_ceiling),
            grant_max: money(grant_max),
            opens_on: day(opens_on),
            closes_on: day(closes_on),
        },
        E::RoundClosed { round, closed_on } => {
            Payload::RoundClosed { round: round.as_str(), closed_on: day(closed_on) }
        }
        E::ApplicationSubmitted {
            application,
            round,
            applicant,
            title,
            description,
            amount_requested,
            submitted_on,
        } => Payload::ApplicationSubmitted {
            application: application.as_str(),
            round: round.as_str(),
            applicant,
            title,
            description,
            amount_requested: money(amount_requested),
            submitted_on: day(submitted_on),
        },
        E::ApplicationWithdrawn { application, reason, withdrawn_on } => {
            Payload::ApplicationWithdrawn { application: application.as_str(), reason, withdrawn_on: day(withdrawn_on) }
        }
        E::ApplicationRejected { application, reason, decided_by, decided_on } => Payload::ApplicationRejected {
            application: application.as_str(),
            reason,
            decided_by,
            decided_on: day(decided_on),
        },
        E::GrantAwarded { application, amount, attribution, reason, decided_by, decided_on } => Payload::GrantAwarded {
            application: application.as_str(),
            amount: money(amount),
            attribution: shares(attribution),
            reason,
            decided_by,
            decided_on: day(decided_on),
        },
        E::GrantReduced { application, amount, released, reason, decided_by, decided_on } => Payload::GrantReduced {
            application: application.as_str(),
            amount: money(amount),
            released: shares(released),
            reason,
            decided_by,
            decided_on: day(decided_on),
        },
        E::GrantWithdrawn { application, released, reason, decided_by, decided_on } => Payload::GrantWithdrawn {
            application: application.as_str(),
            released: shares(released),
            reason,
            decided_by,
            decided_on: day(decided_on),
        },
        E::GrantSettled { application, final_amount, released, reason, decided_by, decided_on } => {
            Payload::GrantSettled {
                application: application.as_str(),
                final_amount: money(final_amount),
                released: shares(released),
                reason,
                decided_by,
                decided_on: day(decided_on),
            }
        }
        E::PaymentMade { application, tranche, amount, attribution, value_date, bank_reference } => {
            Payload::PaymentMade {
                application: application.as_str(),
                tranche: *tranche,
                amount: money(amount),
                attribution: shares(attribution),
                value_date: day(value_date),
                bank_reference,
            }
        }
        E::RefundReceived { application, amount, attribution, releases, value_date, bank_reference } => {
            Payload::RefundReceived {
                application: application.as_str(),
                amount: money(amount),
                attribution: shares(attribution),
                releases: *releases,
                value_date: day(value_date),
                bank_reference,
            }
        }
        E::ApprovalThresholdsSet { round, award_above, payment_above } => Payload::ApprovalThresholdsSet {
            round: round.as_str(),
            award_above: award_above.as_ref().map(money),
            payment_above: payment_above.as_ref().map(money),
        },
        E::AccessGranted { principal, role, token_sha256 } => Payload::AccessGranted {
            principal: principal.as_str(),
            role: role_json(role),
            token_sha256: hex::encode(token_sha256),
        },
        E::AccessRevoked { principal, reason } => Payload::AccessRevoked { principal: principal.as_str(), reason },
        E::AwardProposed { application, amount, reason, proposed_by, proposed_on } => Payload::AwardProposed {
            application: application.as_str(),
            amount: money(amount),
            reason,
            proposed_by,
            proposed_on: day(proposed_on),
        },
        E::PaymentProposed { application, amount, value_date, bank_reference, proposed_by } => {
            Payload::PaymentProposed {
                application: application.as_str(),
                amount: money(amount),
                value_date: day(value_date),
                bank_reference,
                proposed_by,
            }
        }
        E::ConflictDeclared { application, officer, reason, declared_on } => Payload::ConflictDeclared {
            application: application.as_str(),
            officer,
            reason,
            declared_on: day(declared_on),
        },
    }
}
