//! The double-entry journal as CSV: one line per posting of
//! [`crate::domain::journal::postings`], in event order, with the event's
//! sequence number and hash so that every line can be traced to the hashed
//! log. Columns: `seq, event_hash, recorded_at, business_date, event_type,
//! stream, account, debit, credit, currency`. A line has either a debit or
//! a credit (exact decimal text, positive); the other column is empty. The
//! chart of accounts is documented in `docs/AUDIT.md`.

use super::{rfc3339_micros, ExportError, LoggedEvent};
use crate::domain::dated::business_date;
use crate::domain::journal::postings;
use crate::domain::{Amount, Currency, Event};
use std::io::Write;

pub const HEADER: [&str; 10] = [
    "seq",
    "event_hash",
    "recorded_at",
    "business_date",
    "event_type",
    "stream",
    "account",
    "debit",
    "credit",
    "currency",
];

/// Writes the header and one line per posting.
pub fn write(
    events: impl Iterator<Item = Result<LoggedEvent, ExportError>>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(HEADER)?;
    let mut currency: Option<Currency> = None;
    for event in events {
        let event = event?;
        if let Event::FundOpened { currency: c, .. } = &event.event {
            currency = Some(c.clone());
        }
        let lines = postings(&event.event);
        if lines.is_empty() {
            continue;
        }
        let Some(currency) = &currency else {
            return Err(ExportError::FundNotOpened {
                seq: event.envelope.seq,
                event_type: event.envelope.event_type.clone(),
            });
        };
        let envelope = &event.envelope;
        let seq = envelope.seq.to_string();
        let hash = hex::encode(envelope.hash);
        let recorded_at = rfc3339_micros(envelope.recorded_at_micros)?;
        let date = business_date(&event.event).map(|d| d.to_string()).unwrap_or_default();
        for posting in lines {
            let amount = Amount::from_minor(posting.amount.saturating_abs()).expect("non-negative");
            let (debit, credit) = if posting.amount >= 0 {
                (currency.plain(amount), String::new())
            } else {
                (String::new(), currency.plain(amount))
            };
            csv.write_record([
                seq.as_str(),
                &hash,
                &recorded_at,
                &date,
                &envelope.event_type,
                &envelope.stream,
                &posting.account.to_string(),
                &debit,
                &credit,
                &currency.code,
            ])?;
        }
    }
    csv.flush()?;
    Ok(())
}
