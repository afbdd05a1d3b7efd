//! The funding-status statement, per partner and for the fund, in the
//! layout multi-donor trust funds report in: for each period, the balance
//! held at the opening, contributions received, transfers to grants
//! (payments), refunds, the balance held at the closing; and the grant
//! commitments: awarded, released (reductions, withdrawals, settlements
//! below the award, refunds on closed grants), net, and at the closing the
//! open commitments (awarded, not yet paid) and the money still available
//! for new grants.
//!
//! Periods are by **business date** (the value date of money, the date of a
//! decision), not recording time. This is a pure fold over events: no I/O,
//! no clock. Amounts are `i64` minor units; the balances are signed, since
//! by value date a payment may precede the receipt that covers it.

use super::signed_plain;
use crate::domain::{Currency, Date, Event, PartnerId, Share};
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
}

/// Which statement: one partner's or every partner's and the fund's; one
/// period or every quarter from the first movement of money to the last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub partner: Option<PartnerId>,
    pub period: Option<Period>,
    pub format: Format,
}

/// A period of business dates, `start..end` (end exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// `2024-Q1`, `2024-03` or `2024`.
    pub label: String,
    pub start: Date,
    pub end: Date,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("period {text:?} is not a quarter (2024-Q1), a month (2024-03) or a year (2024)")]
pub struct PeriodError {
    pub text: String,
}

fn calendar(date: Date) -> time::Date {
    let epoch = time::macros::date!(1970 - 01 - 01).to_julian_day();
    time::Date::from_julian_day(date.days_since_epoch() + epoch).expect("dates are validated on the way in")
}

fn first_of(year: i32, month: u8) -> Option<Date> {
    let month = time::Month::try_from(month).ok()?;
    time::Date::from_calendar_date(year, month, 1).ok().map(Date::from_time)
}

impl Period {
    /// Parses `YYYY-Qn`, `YYYY-MM` or `YYYY`.
    pub fn parse(text: &str) -> Result<Period, PeriodError> {
        let error = || PeriodError { text: text.chars().take(40).collect() };
        let year = |y: &str| -> Result<i32, PeriodError> {
            if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()) {
                y.parse().map_err(|_| error())
            } else {
                Err(error())
            }
        };
        let period = match text.split_once('-') {
            None => {
                let y = year(text)?;
                Period {
                    label: text.into(),
                    start: first_of(y, 1).ok_or_else(error)?,
                    end: first_of(y + 1, 1).ok_or_else(error)?,
                }
            }
            Some((y, q)) if q.len() == 2 && (q.starts_with('Q') || q.starts_with('q')) => {
                let y = year(y)?;
                let quarter = match q.as_bytes()[1] {
                    b @ b'1'..=b'4' => b - b'0',
                    _ => return Err(error()),
                };
                Period::quarter(y, quarter).ok_or_else(error)?
            }
            Some((y, m)) if m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()) => {
                let y = year(y)?;
                let month: u8 = m.parse().map_err(|_| error())?;
                let start = first_of(y, month).ok_or_else(error)?;
                let end = if month == 12 { first_of(y + 1, 1) } else { first_of(y, month + 1) }.ok_or_else(error)?;
                Period { label: format!("{y:04}-{month:02}"), start, end }
            }
            Some(_) => return Err(error()),
        };
        Ok(period)
    }

    fn quarter(year: i32, quarter: u8) -> Option<Period> {
        let start = first_of(year, 3 * quarter - 2)?;
        let end = if quarter == 4 { first_of(year + 1, 1)? } else { first_of(year, 3 * quarter + 1)? };
        Some(Period { label: format!("{year:04}-Q{quarter}"), start, end })
    }

    /// The calendar quarter `date` falls in.
    pub fn quarter_of(date: Date) -> Period {
        let d = calendar(date);
        Period::quarter(d.year(), (u8::from(d.month()) - 1) / 3 + 1).expect("a quarter of a valid date")
    }

    fn next_quarter(&self) -> Period {
        Period::quarter_of(self.end)
    }

    /// The last day of the period.
    pub fn last_day(&self) -> Date {
        Date::from_days_since_epoch(self.end.days_since_epoch() - 1)
    }

    fn contains(&self, date: Date) -> bool {
        self.start <= date && date < self.end
    }
}

/// One movement of a partner's money or commitments, on a business date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Contribution,
    Transfer,
    Refund,
    Award,
    Release,
}

/// The figures of one period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub opening_held: i64,
    pub contributions: i64,
    pub transfers: i64,
    pub refunds: i64,
    pub closing_held: i64,
    pub awards: i64,
    pub releases: i64,
    /// Awarded (net of releases) less net paid, at the closing.
    pub open_commitments: i64,
    /// Received less awarded (net of releases), at the closing.
    pub available: i64,
}

impl Row {
    pub fn net_commitments(&self) -> i64 {
        self.awards - self.releases
    }
}

/// Whose figures a section shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Partner { id: PartnerId, name: String },
    Fund,
}

impl Scope {
    fn label(&self) -> &str {
        match self {
            Scope::Partner { id, .. } => id.as_str(),
            Scope::Fund => "fund",
        }
    }
    fn name(&self) -> &str {
        match self {
            Scope::Partner { name, .. } => name,
            Scope::Fund => "all partners",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub scope: Scope,
    /// One row per period, in order.
    pub rows: Vec<(Period, Row)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub currency: Currency,
    pub sections: Vec<Section>,
}

impl Statement {
    /// Folds the events (from the first) into the requested statement.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        request: &Request,
    ) -> Result<Statement, super::ExportError> {
        let mut currency = None;
        let mut partners: BTreeMap<PartnerId, String> = BTreeMap::new();
        let mut flows: Vec<(Date, PartnerId, Flow, i64)> = Vec::new();
        let mut add = |shares: &[Share], date: Date, flow: Flow| {
            for share in shares {
                flows.push((date, share.pot.partner.clone(), flow, share.amount.minor()));
            }
        };
        use Event as E;
        for event in events {
            match event {
                E::FundOpened { currency: c, .. } => currency = Some(c.clone()),
                E::PartnerAdmitted { partner, name, .. } => {
                    partners.insert(partner.clone(), name.clone());
                }
                E::ContributionReceived { pot, amount, value_date, .. } => {
                    let share = Share { pot: pot.clone(), amount: *amount };
                    add(std::slice::from_ref(&share), *value_date, Flow::Contribution)
                }
                E::PaymentMade { attribution, value_date, .. } => add(attribution, *value_date, Flow::Transfer),
                E::RefundReceived { attribution, releases, value_date, .. } => {
                    add(attribution, *value_date, Flow::Refund);
                    if *releases {
                        add(attribution, *value_date, Flow::Release);
                    }
                }
                E::GrantAwarded { attribution, decided_on, .. } => add(attribution, *decided_on, Flow::Award),
                E::GrantReduced { released, decided_on, .. }
                | E::GrantWithdrawn { released, decided_on, .. }
                | E::GrantSettled { released, decided_on, .. } => add(released, *decided_on, Flow::Release),
                E::ContributionPledged { .. }
                | E::PledgeReduced { .. }
                | E::RoundOpened { .. }
                | E::RoundClosed { .. }
                | E::ApplicationSubmitted { .. }
                | E::ApplicationWithdrawn { .. }
                | E::ApplicationRejected { .. }
                | E::ApprovalThresholdsSet { .. }
                | E::AccessGranted { .. }
                | E::AccessRevoked { .. }
                | E::AwardProposed { .. }
                | E::PaymentProposed { .. }
                | E::ConflictDeclared { .. } => {}
            }
        }
        let currency = currency.ok_or(super::ExportError::EmptyLedger)?;
        let periods = match &request.period {
            Some(period) => vec![period.clone()],
            None => quarters(flows.iter().map(|f| f.0)),
        };
        let mut scopes = Vec::new();
        match &request.partner {
            Some(id) => {
                let name =
                    partners.get(id).ok_or_else(|| super::ExportError::UnknownPartner { partner: id.to_string() })?;
                scopes.push(Scope::Partner { id: id.clone(), name: name.clone() });
            }
            None => {
                scopes.extend(partners.iter().map(|(id, name)| Scope::Partner { id: id.clone(), name: name.clone() }));
                scopes.push(Scope::Fund);
            }
        }
        let sections = scopes
            .into_iter()
            .map(|scope| {
                let mine: Vec<_> = flows
                    .iter()
                    .filter(|(_, partner, _, _)| match &scope {
                        Scope::Partner { id, .. } => partner == id,
                        Scope::Fund => true,
                    })
                    .map(|(date, _, flow, amount)| (*date, *flow, *amount))
                    .collect();
                let rows = periods.iter().map(|p| (p.clone(), row(&mine, p))).collect();
                Section { scope, rows }
            })
            .collect();
        Ok(Statement { currency, sections })
    }

    /// The statement as a table for people, amounts grouped by thousands.
    pub fn table(&self) -> String {
        use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
        let c = &self.currency;
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(
            [
                "partner".to_string(),
                "period".into(),
                format!("opening held ({})", c.code),
                "contributions".into(),
                "transfers to grants".into(),
                "refunds".into(),
                "closing held".into(),
                "awarded".into(),
                "released".into(),
                "net commitments".into(),
                "open commitments".into(),
                "available".into(),
            ]
            .into_iter()
            .map(Cell::new),
        );
        let amount = |minor: i64| crate::cli::render::amount(&signed_plain(c, minor));
        for section in &self.sections {
            for (period, row) in &section.rows {
                t.add_row(vec![
                    section.scope.label().to_string(),
                    period.label.clone(),
                    amount(row.opening_held),
                    amount(row.contributions),
                    amount(row.transfers),
                    amount(row.refunds),
                    amount(row.closing_held),
                    amount(row.awards),
                    amount(row.releases),
                    amount(row.net_commitments()),
                    amount(row.open_commitments),
                    amount(row.available),
                ]);
            }
        }
        for i in 2..t.column_count() {
            if let Some(column) = t.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        if self.sections.iter().all(|s| s.rows.is_empty()) {
            return format!("{t}\nno money has moved yet: there is no period to report");
        }
        t.to_string()
    }

    /// The statement as CSV, one line per scope and period; amounts exact,
    /// without grouping.
    pub fn write_csv(&self, out: &mut dyn Write) -> Result<(), super::ExportError> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(CSV_HEADER)?;
        let c = &self.currency;
        for section in &self.sections {
            for (period, row) in &section.rows {
                let mut record = vec![
                    section.scope.label().to_string(),
                    section.scope.name().to_string(),
                    period.label.clone(),
                    period.start.to_string(),
                    period.last_day().to_string(),
                ];
                record.extend(
                    [
                        row.opening_held,
                        row.contributions,
                        row.transfers,
                        row.refunds,
                        row.closing_held,
                        row.awards,
                        row.releases,
                        row.net_commitments(),
                        row.open_commitments,
                        row.available,
                    ]
                    .map(|minor| signed_plain(c, minor)),
                );
                record.push(c.code.clone());
                csv.write_record(&record)?;
            }
        }
        csv.flush()?;
        Ok(())
    }
}

pub const CSV_HEADER: [&str; 16] = [
    "partner",
    "partner_name",
    "period",
    "period_start",
    "period_end",
    "opening_held",
    "contributions_received",
    "transfers_to_grants",
    "refunds",
    "closing_held",
    "commitments_awarded",
    "commitments_released",
    "commitments_net",
    "open_commitments",
    "available",
    "currency",
];

/// Every quarter from the first date to the last.
fn quarters(dates: impl Iterator<Item = Date>) -> Vec<Period> {
    let (mut first, mut last) = (None::<Date>, None::<Date>);
    for date in dates {
        first = Some(first.map_or(date, |f| f.min(date)));
        last = Some(last.map_or(date, |l| l.max(date)));
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let mut periods = vec![Period::quarter_of(first)];
    while periods.last().expect("one at least").end <= last {
        let next = periods.last().expect("one at least").next_quarter();
        periods.push(next);
    }
    periods
}

/// One period's row from a scope's flows. The closing figures are summed
/// from the first flow on, independently of the opening and the period's
/// own flows, so that `closing = opening + in − out` is a check, not an
/// identity.
fn row(flows: &[(Date, Flow, i64)], period: &Period) -> Row {
    let mut row = Row::default();
    let (mut received, mut paid, mut refunded, mut awarded, mut released) = (0i64, 0i64, 0i64, 0i64, 0i64);
    for &(date, flow, amount) in flows {
        if date < period.start {
            row.opening_held += match flow {
                Flow::Contribution | Flow::Refund => amount,
                Flow::Transfer => -amount,
                Flow::Award | Flow::Release => 0,
            };
        }
        if period.contains(date) {
            match flow {
                Flow::Contribution => row.contributions += amount,
                Flow::Transfer => row.transfers += amount,
                Flow::Refund => row.refunds += amount,
                Flow::Award => row.awards += amount,
                Flow::Release => row.releases += amount,
            }
        }
        if date < period.end {
            match flow {
                Flow::Contribution => received += amount,
                Flow::Transfer => paid += amount,
                Flow::Refund => refunded += amount,
                Flow::Award => awarded += amount,
                Flow::Release => released += amount,
            }
        }
    }
    row.closing_held = received - paid + refunded;
    row.open_commitments = awarded - released - paid + refunded;
    row.available = received - (awarded - released);
    row
}
