//! Audit exports: the event log as JSON Lines ([`events`]), the double-entry
//! journal as CSV ([`journal`]), the grants in the 360Giving Data Standard
//! ([`three_sixty_giving`]) and the funding-status statement
//! ([`statement`]). Each is a function of the log up to one head: the
//! generators read the events in order and write text, so the offline
//! command (over a private copy of a stopped ledger's directory, see
//! [`OfflineLog`]) and the `fundledger.v1.Export` service (over a running
//! ledger) write byte-identical output.
//!
//! **This module never writes to a ledger** and never opens one in place:
//! sled writes to a directory when it opens it, so the offline path copies
//! the directory first, under a shared lock that a running ledger's own lock
//! excludes. **Amounts leave as exact decimal text**, never as floats; the
//! figures are folds over events, with no clock: exporting the same log
//! twice gives the same bytes.

pub mod events;
pub mod journal;
pub mod statement;
pub mod three_sixty_giving;

use crate::domain::Event;
use crate::log::{Envelope, EventLog, Hash, LogError, LogReader, GENESIS_HASH};
use crate::projections::decode_event;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Events read from the log per step.
pub const READ_PAGE_EVENTS_MAX: usize = 512;

/// A recorded event as an export needs it: the envelope, the exact payload
/// bytes that the hash covers, and the decoded fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    pub envelope: Envelope,
    pub payload: Vec<u8>,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write the CSV: {0}")]
    Csv(String),
    #[error("cannot write the JSON: {0}")]
    Json(String),
    #[error("event {seq} does not link to the previous event's hash; the log was altered (run `fundledger verify`)")]
    BrokenChain { seq: u64 },
    #[error("event {seq} is a {event_type} before the fund was opened; the log is not a fundledger fund's")]
    FundNotOpened { seq: u64, event_type: String },
    #[error("the ledger holds no events yet: open the fund first")]
    EmptyLedger,
    #[error("no grant has been awarded yet, and a 360Giving package holds at least one grant")]
    NoGrants,
    #[error("the fund has no partner {partner:?}")]
    UnknownPartner { partner: String },
    #[error("{0}")]
    Period(#[from] statement::PeriodError),
    #[error("recording time {micros} µs since 1970 is out of the calendar's range")]
    Time { micros: i64 },
    #[error("{dir} holds no fundledger ledger (there is no {dir}/db)")]
    NoLedger { dir: PathBuf },
    #[error(
        "the ledger in {dir} is running (sled holds its lock): stop it first, or export through the server with --server URL"
    )]
    LedgerRunning { dir: PathBuf },
    #[error("cannot copy {from} to a private directory: {source}")]
    Copy { from: PathBuf, source: std::io::Error },
}

// Failures to write are I/O errors, whichever encoder met them, so that a
// closed pipe (`| head`) is recognised as one.
impl From<csv::Error> for ExportError {
    fn from(error: csv::Error) -> ExportError {
        match error.into_kind() {
            csv::ErrorKind::Io(error) => ExportError::Io(error),
            other => ExportError::Csv(format!("{other:?}")),
        }
    }
}

impl From<serde_json::Error> for ExportError {
    fn from(error: serde_json::Error) -> ExportError {
        if error.is_io() {
            ExportError::Io(error.into())
        } else {
            ExportError::Json(error.to_string())
        }
    }
}

/// What to export, with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Export {
    /// Every event with its full envelope, one JSON object a line.
    Events,
    /// One CSV line per journal posting.
    Journal,
    /// The grants as a 360Giving package (JSON) or spreadsheet (CSV).
    ThreeSixtyGiving(three_sixty_giving::Options),
    /// The funding-status statement, per period.
    Statement(statement::Request),
}

/// Writes `export` of `events` (which must start at the first event) to `out`.
pub fn write(
    export: &Export,
    events: impl Iterator<Item = Result<LoggedEvent, ExportError>>,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    match export {
        Export::Events => events::write(events, out),
        Export::Journal => journal::write(events, out),
        Export::ThreeSixtyGiving(options) => three_sixty_giving::write(options, events, out),
        Export::Statement(request) => {
            let events: Vec<Event> = events.map(|e| e.map(|e| e.event)).collect::<Result<_, _>>()?;
            let statement = statement::Statement::from_events(&events, request)?;
            match request.format {
                statement::Format::Table => writeln!(out, "{}", statement.table())?,
                statement::Format::Csv => statement.write_csv(out)?,
            }
            Ok(())
        }
    }
}

/// The events `1..=last` of a log, in order. It checks what it reads: the
/// sequence is gapless and every event links to the previous one's hash
/// (each record's own hash is checked by the log reader). The first failure
/// ends the iteration.
pub struct LogEvents<'a> {
    reader: &'a LogReader,
    next: u64,
    last: u64,
    page: VecDeque<(Envelope, Vec<u8>)>,
    prev_hash: Hash,
    failed: bool,
}

impl<'a> LogEvents<'a> {
    pub fn new(reader: &'a LogReader, last: u64) -> LogEvents<'a> {
        LogEvents { reader, next: 1, last, page: VecDeque::new(), prev_hash: GENESIS_HASH, failed: false }
    }

    fn next_event(&mut self) -> Result<Option<LoggedEvent>, ExportError> {
        if self.next > self.last {
            return Ok(None);
        }
        if self.page.is_empty() {
            self.page = self.reader.read(self.next, self.last, READ_PAGE_EVENTS_MAX)?.into();
        }
        let Some((envelope, payload)) = self.page.pop_front() else {
            return Err(LogError::Corrupt { seq: self.next, problem: "missing from the log".into() }.into());
        };
        if envelope.seq != self.next {
            return Err(LogError::Corrupt { seq: self.next, problem: "missing from the log".into() }.into());
        }
        if envelope.prev_hash != self.prev_hash {
            return Err(ExportError::BrokenChain { seq: envelope.seq });
        }
        let event = decode_event(&envelope, &payload)?;
        self.prev_hash = envelope.hash;
        self.next += 1;
        Ok(Some(LoggedEvent { envelope, payload, event }))
    }
}

impl Iterator for LogEvents<'_> {
    type Item = Result<LoggedEvent, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_event().transpose();
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

/// A stopped ledger's log, opened from a private copy of its directory, so
/// that the directory itself is never written to.
pub struct OfflineLog {
    log: EventLog,
    /// Removed when the export is done.
    _copy: tempfile::TempDir,
}

impl OfflineLog {
    /// Copies `dir` to a temporary directory and opens the copy. While it
    /// copies it holds a shared lock on the ledger's `db` file, which a
    /// running ledger holds exclusively: a running ledger is refused, never
    /// copied half-written, and no ledger can start in the middle of the copy.
    pub fn open(dir: &Path) -> Result<OfflineLog, ExportError> {
        let db = dir.join("db");
        let lock = std::fs::File::open(&db).map_err(|_| ExportError::NoLedger { dir: dir.to_owned() })?;
        // fs2's flock, the lock sled takes (std's own `try_lock_shared` needs a
        // newer Rust than the crate's minimum).
        if let Err(error) = fs2::FileExt::try_lock_shared(&lock) {
            return Err(if error.kind() == fs2::lock_contended_error().kind() {
                ExportError::LedgerRunning { dir: dir.to_owned() }
            } else {
                ExportError::Io(error)
            });
        }
        let copy = tempfile::Builder::new()
            .prefix("fundledger-export-")
            .tempdir()
            .map_err(|source| ExportError::Copy { from: dir.to_owned(), source })?;
        copy_dir(dir, copy.path()).map_err(|source| ExportError::Copy { from: dir.to_owned(), source })?;
        drop(lock);
        // The copy was opened; the user gave `dir`.
        let log = EventLog::open(copy.path()).map_err(|error| error.naming(dir))?;
        Ok(OfflineLog { log, _copy: copy })
    }

    pub fn reader(&self) -> LogReader {
        self.log.reader()
    }

    pub fn head_seq(&self) -> u64 {
        self.log.head_seq()
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A recording time as RFC 3339 in UTC with microseconds,
/// `2024-05-01T09:30:00.123456Z`.
pub fn rfc3339_micros(micros: i64) -> Result<String, ExportError> {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .ok_or(ExportError::Time { micros })
}

/// An amount in minor units as exact decimal text with the currency's
/// digits; negative amounts (net figures) get a leading `-`.
pub fn signed_plain(currency: &crate::domain::Currency, minor: i64) -> String {
    let magnitude = crate::domain::Amount::from_minor(minor.saturating_abs()).expect("non-negative");
    let text = currency.plain(magnitude);
    if minor < 0 {
        format!("-{text}")
    } else {
        text
    }
}
