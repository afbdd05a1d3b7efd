//! Reading the history: the figures as of an earlier point, and the log
//! filtered by stream, event type and recording time.
//!
//! Both read only the durable log, through their own [`LogReader`]; neither
//! holds the projections' lock longer than a clone, so neither holds back
//! the writer.
//!
//! **Cost.** An answer as of a sequence number below the head replays up to
//! that many events: from the stored projection checkpoint when it is at or
//! below the sequence (so at most `checkpoint_events_interval` events in a
//! long-running ledger), from the first event otherwise. An answer as of a
//! recording time first finds its sequence number by a binary search of
//! about log2(head) reads. An answer as of a business date folds every event
//! up to the head, because an event recorded last may be dated first. Each
//! runs on tokio's blocking pool, never on the async workers, and at most
//! `as_of_queries_max` of them at a time; further ones wait their turn. A
//! filtered read looks at each event once: a stream filter reads the stream
//! index, other filters the events after the reader's position, never what
//! it looked at before.

use super::{recorded, Ledger, RecordedEvent};
use crate::domain::dated::DatedView;
use crate::domain::Date;
use crate::log::{Envelope, Hash, Link, LogError, GENESIS_HASH};
use crate::projections::{for_each_event, Projections};
use std::collections::BTreeSet;

/// A point of the history to answer as of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// After event `seq` (0: before the first event).
    Seq(u64),
    /// After the last event recorded at or before this time (microseconds
    /// since the Unix epoch, UTC).
    RecordedBy(i64),
    /// Counting every event up to the head by its business date.
    BusinessDate(Date),
}

/// An event of the log, as the point an answer reflects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// 0 before the first event.
    pub seq: u64,
    pub hash: Hash,
    pub recorded_at_micros: i64,
}

impl Position {
    pub fn of(projections: &Projections) -> Position {
        Position {
            seq: projections.head_seq,
            hash: projections.head_hash,
            recorded_at_micros: projections.head_recorded_at_micros,
        }
    }

    fn of_link(link: &Link) -> Position {
        Position { seq: link.seq, hash: link.hash, recorded_at_micros: link.recorded_at_micros }
    }
}

/// The figures as of a point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PointInTime {
    /// The projections after event `head_seq`: exactly what a replay of
    /// events 1 to `head_seq` gives.
    Replayed(Projections),
    /// Events 1 to `through.seq` counted by their business date.
    Dated { view: DatedView, through: Position },
}

#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error("as of event {seq}: the log holds only {head} events so far; ask for {head} or less, or leave the point out for the live figures")]
    BeyondHead { seq: u64, head: u64 },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the replay failed: {0}")]
    Replay(String),
}

impl Ledger {
    /// The figures as of `point`, computed on the blocking pool (see the
    /// module's cost note). A sequence number beyond the durable head is
    /// refused: those figures do not exist yet. A recording time at or after
    /// the head's gives the live figures.
    pub async fn as_of(&self, point: AsOf) -> Result<PointInTime, AsOfError> {
        let head = self.head_seq();
        if let AsOf::Seq(seq) = point {
            if seq > head {
                return Err(AsOfError::BeyondHead { seq, head });
            }
        }
        let _permit = self.shared.as_of_queries.acquire().await.expect("the semaphore is never closed");
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || ledger.as_of_blocking(point, head))
            .await
            .map_err(|e| AsOfError::Replay(e.to_string()))?
    }

    fn as_of_blocking(&self, point: AsOf, head: u64) -> Result<PointInTime, AsOfError> {
        let reader = &self.shared.reader;
        let seq = match point {
            AsOf::Seq(seq) => seq,
            AsOf::RecordedBy(micros) => reader.last_seq_recorded_by(micros, head)?,
            AsOf::BusinessDate(date) => {
                let mut view = DatedView::new(date);
                let mut through = Position { seq: 0, hash: GENESIS_HASH, recorded_at_micros: 0 };
                for_each_event(reader, 1, head, |link, event| {
                    view.apply(event);
                    through = Position::of_link(link);
                })?;
                return Ok(PointInTime::Dated { view, through });
            }
        };
        {
            let live = self.projections();
            if live.head_seq == seq {
                return Ok(PointInTime::Replayed(live.clone()));
            }
        }
        let (projections, _) = Projections::load(reader, seq)?;
        Ok(PointInTime::Replayed(projections))
    }
}

/// Which streams a filtered read keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamSelector {
    All,
    /// One stream, e.g. `partner/porticus`: read through the stream index.
    Exact(String),
    /// Every stream whose id starts with this, e.g. `application/`.
    Prefix(String),
}

/// What a filtered read keeps: every condition must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    pub stream: StreamSelector,
    /// Event types to keep; empty keeps every type.
    pub event_types: BTreeSet<&'static str>,
    /// Keep events recorded at or after this time (microseconds, UTC).
    pub recorded_since_micros: Option<i64>,
    /// Keep events recorded before this time: the range is half-open, so
    /// consecutive ranges neither overlap nor leave gaps.
    pub recorded_until_micros: Option<i64>,
}

impl EventFilter {
    /// Keeps every event.
    pub fn everything() -> EventFilter {
        EventFilter {
            stream: StreamSelector::All,
            event_types: BTreeSet::new(),
            recorded_since_micros: None,
            recorded_until_micros: None,
        }
    }

    pub fn matches(&self, envelope: &Envelope) -> bool {
        let stream = match &self.stream {
            StreamSelector::All => true,
            StreamSelector::Exact(id) => envelope.stream == *id,
            StreamSelector::Prefix(prefix) => envelope.stream.starts_with(prefix.as_str()),
        };
        stream
            && (self.event_types.is_empty() || self.event_types.contains(envelope.event_type.as_str()))
            && self.recorded_since_micros.is_none_or(|since| envelope.recorded_at_micros >= since)
            && !self.past_until(envelope)
    }

    /// Whether the event was recorded at or after the end of the range: then
    /// so was every later one, since recording times never decrease.
    fn past_until(&self, envelope: &Envelope) -> bool {
        self.recorded_until_micros.is_some_and(|until| envelope.recorded_at_micros >= until)
    }
}

/// Where a filtered read stands: every event before `next_seq` has been
/// looked at, so the next read starts there and only there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    next_seq: u64,
    /// For a stream filter: the next version of the stream's index to read.
    next_version: u64,
    /// Whether the jump to `recorded_since` has been made.
    since_sought: bool,
    /// An event recorded at or after `recorded_until` was reached: no later
    /// event can match.
    exhausted: bool,
}

impl Cursor {
    /// A read that starts at `from_seq` (0 and 1 both mean the first event).
    pub fn new(from_seq: u64) -> Cursor {
        Cursor { next_seq: from_seq.max(1), next_version: 1, since_sought: false, exhausted: false }
    }

    /// The first event not looked at yet.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// No event can match any more (the time range is over).
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// Whether every event up to `last` has been looked at (or none can match).
    pub fn reached(&self, last: u64) -> bool {
        self.exhausted || self.next_seq > last
    }
}

impl Ledger {
    /// The events matching `filter` among the next durable events from the
    /// cursor on, up to `last` (at most the durable head), looking at no more
    /// than `examine_max` events; advances the cursor past every event looked
    /// at, matching or not. The answer may be empty while more remain: call
    /// again until [`Cursor::reached`] `last`.
    pub fn read_filtered(
        &self,
        filter: &EventFilter,
        cursor: &mut Cursor,
        last: u64,
        examine_max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let last = last.min(self.head_seq());
        let reader = &self.shared.reader;
        if !cursor.since_sought {
            if let Some(since) = filter.recorded_since_micros {
                let before = reader.last_seq_recorded_by(since.saturating_sub(1), last)?;
                cursor.next_seq = cursor.next_seq.max(before + 1);
            }
            cursor.since_sought = true;
        }
        if cursor.reached(last) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut keep = |envelope: Envelope, payload: &[u8], cursor: &mut Cursor| -> Result<bool, LogError> {
            cursor.next_seq = envelope.seq + 1;
            if filter.past_until(&envelope) {
                cursor.exhausted = true;
                return Ok(false);
            }
            if filter.matches(&envelope) {
                out.push(recorded(envelope, payload)?);
            }
            Ok(true)
        };
        match &filter.stream {
            StreamSelector::Exact(stream) => {
                let entries = reader.stream_entries(stream, cursor.next_version, examine_max)?;
                let complete = entries.len() < examine_max;
                for (version, seq) in entries {
                    if seq > last {
                        // Indexed but not durable yet: the next read takes it.
                        cursor.next_seq = last + 1;
                        return Ok(out);
                    }
                    cursor.next_version = version + 1;
                    if seq < cursor.next_seq {
                        continue;
                    }
                    let (envelope, payload) = reader
                        .get(seq)?
                        .ok_or_else(|| LogError::Corrupt { seq, problem: "indexed but missing from the log".into() })?;
                    if !keep(envelope, &payload, cursor)? {
                        return Ok(out);
                    }
                }
                if complete {
                    // The stream has no other event up to `last`.
                    cursor.next_seq = last + 1;
                    // Whether the time range is over shows in any stream:
                    // the last event is the latest recorded.
                    if filter.recorded_until_micros.is_some() && last > 0 {
                        let (envelope, _) = reader
                            .get(last)?
                            .ok_or_else(|| LogError::Corrupt { seq: last, problem: "missing from the log".into() })?;
                        cursor.exhausted = filter.past_until(&envelope);
                    }
                }
            }
            StreamSelector::All | StreamSelector::Prefix(_) => {
                let from = cursor.next_seq;
                let page = reader.read(from, last, examine_max)?;
                for (i, (envelope, payload)) in page.into_iter().enumerate() {
                    // Everything up to the durable head is in the log: a hole
                    // is corruption, never something to skip over.
                    if envelope.seq != from + i as u64 {
                        return Err(LogError::Corrupt { seq: from + i as u64, problem: "missing from the log".into() });
                    }
                    if !keep(envelope, &payload, cursor)? {
                        return Ok(out);
                    }
                }
                if cursor.next_seq == from {
                    return Err(LogError::Corrupt {
                        seq: from,
                        problem: format!("missing from the log below the durable head {last}"),
                    });
                }
            }
        }
        Ok(out)
    }
}
