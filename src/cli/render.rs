//! Human-readable tables of query answers, shared by the CLI and the demo.
//! Amounts are shown exactly as the server sent them, with thousands
//! separators added; nothing is rounded.

use crate::api::pb;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use rust_decimal::Decimal;
use std::str::FromStr;

/// `1234567.50` → `1,234,567.50`; the text is otherwise untouched.
pub fn amount(value: &str) -> String {
    let (sign, digits) = value.strip_prefix('-').map_or(("", value), |rest| ("-", rest));
    let (int, frac) = digits.split_once('.').map_or((digits, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn money(m: &Option<pb::Money>) -> String {
    m.as_ref().map(|m| amount(&m.value)).unwrap_or_default()
}

fn decimal(m: &Option<pb::Money>) -> Decimal {
    m.as_ref().and_then(|m| Decimal::from_str(&m.value).ok()).unwrap_or_default()
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new));
    t
}

fn right_align(t: &mut Table, from_column: usize) {
    let columns = t.column_count();
    for i in from_column..columns {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn currency_of(balances: &[&pb::Balance]) -> String {
    balances.iter().find_map(|b| b.pledged.as_ref().map(|m| m.currency.clone())).unwrap_or_else(|| "EUR".into())
}

const BALANCE_HEADER: [&str; 9] =
    ["pledged", "received", "outstanding", "awarded", "paid", "refunded", "open commitments", "available", "cash held"];

fn balance_cells(b: &pb::Balance) -> Vec<String> {
    [
        &b.pledged,
        &b.received,
        &b.outstanding_pledges,
        &b.awarded,
        &b.paid,
        &b.refunded,
        &b.open_commitments,
        &b.available,
        &b.cash_held,
    ]
    .into_iter()
    .map(money)
    .collect()
}

/// Which event an as-of answer reflects, in one line.
pub fn position(position: &Option<pb::Position>) -> String {
    let Some(p) = position else { return String::new() };
    let hash: String = p.hash.chars().take(16).collect();
    let at = p.recorded_at.as_ref().map(timestamp).unwrap_or_default();
    match &p.business_date {
        Some(date) => format!(
            "As of business date {date}: events 1 to {} counted by their own dates (head {hash}…, recorded {at})",
            p.seq
        ),
        None => format!("As of event {} (hash {hash}…, recorded {at})", p.seq),
    }
}

/// A timestamp as RFC 3339 text.
pub fn timestamp(t: &prost_types::Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.seconds)
        .ok()
        .and_then(|at| at.replace_nanosecond(u32::try_from(t.nanos).unwrap_or(0)).ok())
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Per-partner balances with a total row.
pub fn partner_balances(response: &pb::GetPartnerBalancesResponse) -> String {
    let totals: Vec<&pb::Balance> = response.partners.iter().filter_map(|p| p.total.as_ref()).collect();
    let currency = currency_of(&totals);
    let mut header = vec!["partner"];
    header.extend(BALANCE_HEADER);
    let mut t = table(&header);
    for partner in &response.partners {
        let mut row = vec![partner.partner_id.clone()];
        row.extend(partner.total.as_ref().map(balance_cells).unwrap_or_default());
        t.add_row(row);
    }
    let mut sums = [Decimal::ZERO; 9];
    for b in &totals {
        let figures = [
            &b.pledged,
            &b.received,
            &b.outstanding_pledges,
            &b.awarded,
            &b.paid,
            &b.refunded,
            &b.open_commitments,
            &b.available,
            &b.cash_held,
        ];
        for (sum, figure) in sums.iter_mut().zip(figures) {
            *sum += decimal(figure);
        }
    }
    let mut row = vec!["total".to_string()];
    row.extend(sums.iter().map(|d| amount(&d.to_string())));
    t.add_row(row);
    right_align(&mut t, 1);
    format!("Partner balances ({currency})\n{t}\n")
}

/// Per-round figures.
pub fn round_figures(response: &pb::GetRoundFiguresResponse) -> String {
    let mut t = table(&[
        "round",
        "opens",
        "closes",
        "closed",
        "received",
        "decided",
        "awarded",
        "rejected",
        "withdrawn",
        "pending",
        "requested",
        "amount awarded",
        "committed",
        "budget left",
    ]);
    let mut currency = "EUR".to_string();
    for r in &response.rounds {
        if let Some(m) = &r.budget_ceiling {
            currency = m.currency.clone();
        }
        t.add_row(vec![
            r.round_id.clone(),
            r.opens_on.clone(),
            r.closes_on.clone(),
            r.closed_on.clone().unwrap_or_else(|| "open".into()),
            r.applications_received.to_string(),
            r.applications_decided.to_string(),
            r.applications_awarded.to_string(),
            r.applications_rejected.to_string(),
            r.applications_withdrawn.to_string(),
            r.applications_pending.to_string(),
            money(&r.amount_requested),
            money(&r.amount_awarded),
            money(&r.amount_committed),
            money(&r.budget_left),
        ]);
    }
    right_align(&mut t, 4);
    format!("Rounds ({currency})\n{t}\n")
}

/// The fund's name, totals and head.
pub fn fund_summary(s: &pb::GetFundSummaryResponse) -> String {
    let mut t = table(&["figure", "value"]);
    let totals = s.totals.clone().unwrap_or_default();
    for (name, value) in BALANCE_HEADER.iter().zip(balance_cells(&totals)) {
        t.add_row(vec![format!("{name} ({})", s.currency), value]);
    }
    for (name, value) in [
        ("partners", s.partners),
        ("rounds", s.rounds),
        ("rounds open", s.rounds_open),
        ("applications", s.applications),
        ("applications pending", s.applications_pending),
        ("grants", s.grants),
        ("grants active", s.grants_active),
    ] {
        t.add_row(vec![name.to_string(), value.to_string()]);
    }
    t.add_row(vec!["events".to_string(), s.head_seq.to_string()]);
    t.add_row(vec!["head hash".to_string(), s.head_hash.clone()]);
    right_align(&mut t, 1);
    format!("Fund: {}\n{t}\n", s.name)
}

fn application_status(status: i32) -> &'static str {
    match pb::ApplicationStatus::try_from(status) {
        Ok(pb::ApplicationStatus::Pending) => "pending",
        Ok(pb::ApplicationStatus::Withdrawn) => "withdrawn",
        Ok(pb::ApplicationStatus::Rejected) => "rejected",
        Ok(pb::ApplicationStatus::Awarded) => "awarded",
        _ => "unknown",
    }
}

fn grant_status(status: i32) -> &'static str {
    match pb::GrantStatus::try_from(status) {
        Ok(pb::GrantStatus::Active) => "active",
        Ok(pb::GrantStatus::Settled) => "settled",
        Ok(pb::GrantStatus::Withdrawn) => "withdrawn",
        _ => "",
    }
}

fn history(events: &[pb::RecordedEvent]) -> String {
    let mut t = table(&["seq", "version", "event", "actor", "hash"]);
    for e in events {
        t.add_row(vec![
            e.seq.to_string(),
            e.stream_version.to_string(),
            e.event_type.clone(),
            e.actor.clone(),
            e.hash.chars().take(16).collect(),
        ]);
    }
    format!("History\n{t}\n")
}

fn grant_position(g: &pb::GrantPosition) -> String {
    let mut t = table(&["figure", "value"]);
    for (name, value) in [
        ("status", grant_status(g.status).to_string()),
        ("awarded on", g.awarded_on.clone()),
        ("awarded", money(&g.awarded)),
        ("current amount", money(&g.amount)),
        ("paid", money(&g.paid)),
        ("refunded", money(&g.refunded)),
        ("net paid", money(&g.net_paid)),
        ("open", money(&g.open)),
        ("tranches", g.tranches.to_string()),
        ("settled on", g.settled_on.clone().unwrap_or_default()),
    ] {
        t.add_row(vec![name.to_string(), value]);
    }
    let mut shares = table(&["partner", "earmark", "amount", "paid", "refunded", "open"]);
    for s in &g.shares {
        shares.add_row(vec![
            s.partner_id.clone(),
            s.earmark_round_id.clone().unwrap_or_default(),
            money(&s.amount),
            money(&s.paid),
            money(&s.refunded),
            money(&s.open),
        ]);
    }
    right_align(&mut shares, 2);
    format!("Grant\n{t}\nAttribution to partners\n{shares}\n")
}

/// One application, its grant and its history.
pub fn application(response: &pb::GetApplicationResponse) -> String {
    let mut out = String::new();
    if let Some(a) = &response.application {
        let applicant = a.applicant.clone().unwrap_or_default();
        let mut t = table(&["field", "value"]);
        for (name, value) in [
            ("application", a.application_id.clone()),
            ("round", a.round_id.clone()),
            ("title", a.title.clone()),
            ("applicant", applicant.name),
            ("organisation", applicant.organisation_id),
            ("place", format!("{} ({})", applicant.place, applicant.country)),
            ("requested", money(&a.amount_requested)),
            ("submitted on", a.submitted_on.clone()),
            ("status", application_status(a.status).to_string()),
        ] {
            t.add_row(vec![name.to_string(), value]);
        }
        if let Some(d) = &a.decision {
            t.add_row(vec!["decided".to_string(), format!("{} by {}: {}", d.decided_on, d.decided_by, d.reason)]);
        }
        out.push_str(&format!("Application\n{t}\n"));
    }
    if let Some(g) = &response.grant {
        out.push_str(&grant_position(g));
    }
    out.push_str(&history(&response.history));
    out
}

/// One grant and its history.
pub fn grant(response: &pb::GetGrantResponse) -> String {
    let mut out = format!("Application {}\n", response.application_id);
    if let Some(g) = &response.grant {
        out.push_str(&grant_position(g));
    }
    out.push_str(&history(&response.history));
    out
}

/// A page of applications.
pub fn applications(response: &pb::ListApplicationsResponse) -> String {
    let mut t = table(&["application", "round", "applicant", "place", "requested", "status", "grant", "grant status"]);
    for a in &response.applications {
        t.add_row(vec![
            a.application_id.clone(),
            a.round_id.clone(),
            a.applicant_name.clone(),
            format!("{} ({})", a.place, a.country),
            money(&a.amount_requested),
            application_status(a.status).to_string(),
            money(&a.grant_amount),
            grant_status(a.grant_status).to_string(),
        ]);
    }
    let more = if response.next_page_token.is_empty() {
        String::new()
    } else {
        format!("more: --page-token {}\n", response.next_page_token)
    };
    format!("{t}\n{more}")
}

/// Who has access.
pub fn principals(response: &pb::ListPrincipalsResponse) -> String {
    let mut t = table(&["principal", "role", "partner", "access"]);
    for p in &response.principals {
        let role = p.role.clone().unwrap_or_default();
        let kind = match pb::RoleKind::try_from(role.kind) {
            Ok(pb::RoleKind::Admin) => "admin",
            Ok(pb::RoleKind::Officer) => "officer",
            Ok(pb::RoleKind::Partner) => "partner",
            Ok(pb::RoleKind::Auditor) => "auditor",
            _ => "unknown",
        };
        t.add_row(vec![
            p.principal_id.clone(),
            kind.to_string(),
            role.partner_id.unwrap_or_default(),
            if p.revoked { "revoked" } else { "active" }.to_string(),
        ]);
    }
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::amount;

    #[test]
    fn amounts_get_thousands_separators_and_keep_every_digit() {
        for (input, expected) in [
            ("0.00", "0.00"),
            ("999.99", "999.99"),
            ("1000.00", "1,000.00"),
            ("1234567.5", "1,234,567.5"),
            ("-12500.00", "-12,500.00"),
            ("100000", "100,000"),
        ] {
            assert_eq!(amount(input), expected);
        }
    }
}
