//! The read side: the fund state as of the last durable event, for queries.
//!
//! A projection is a pure fold over committed events. The live one is
//! updated by the writer after each group commit; [`Projections::replay`]
//! rebuilds it from the log, and the two must be identical — byte for byte
//! in [`Projections::encoded`]. It never sees an event that is not durable.

use crate::domain::{Event, FundState};
use crate::log::{codec, Envelope, Hash, LogError, LogReader, GENESIS_HASH};

/// How many events a replay reads per step.
const REPLAY_BATCH_EVENTS_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Projections {
    pub state: FundState,
    /// The last event folded in (0 before the first).
    pub head_seq: u64,
    pub head_hash: Hash,
    pub head_recorded_at_micros: i64,
}

impl Default for Projections {
    fn default() -> Self {
        Projections { state: FundState::default(), head_seq: 0, head_hash: GENESIS_HASH, head_recorded_at_micros: 0 }
    }
}

impl Projections {
    /// Folds in the next event. Events arrive exactly once, in order.
    pub fn apply(&mut self, envelope: &Envelope, event: &Event) {
        assert_eq!(envelope.seq, self.head_seq + 1, "projection fed out of order");
        assert_eq!(envelope.prev_hash, self.head_hash, "projection fed an event of another chain");
        self.state.evolve(event);
        self.head_seq = envelope.seq;
        self.head_hash = envelope.hash;
        self.head_recorded_at_micros = envelope.recorded_at_micros;
    }

    /// Rebuilds the projections from the log, events 1 to `to_seq`.
    pub fn replay(reader: &LogReader, to_seq: u64) -> Result<Projections, LogError> {
        let mut projections = Projections::default();
        while projections.head_seq < to_seq {
            let page = reader.read(projections.head_seq + 1, to_seq, REPLAY_BATCH_EVENTS_MAX)?;
            if page.is_empty() {
                return Err(LogError::Corrupt {
                    seq: projections.head_seq + 1,
                    problem: "missing from the log".into(),
                });
            }
            for (envelope, payload) in page {
                let event = decode_event(&envelope, &payload)?;
                projections.apply(&envelope, &event);
            }
        }
        Ok(projections)
    }

    /// The canonical bytes of the projected state and head, for comparing
    /// a live projection with a replayed one.
    pub fn encoded(&self) -> Vec<u8> {
        let mut bytes = codec::encode(&self.state);
        bytes.extend_from_slice(&self.head_seq.to_be_bytes());
        bytes.extend_from_slice(&self.head_hash);
        bytes
    }
}

/// Decodes an event's payload, checking it against its envelope.
pub fn decode_event(envelope: &Envelope, payload: &[u8]) -> Result<Event, LogError> {
    let corrupt = |problem: String| LogError::Corrupt { seq: envelope.seq, problem };
    if envelope.schema_version != crate::domain::EVENT_SCHEMA_VERSION {
        return Err(corrupt(format!("unknown schema version {}", envelope.schema_version)));
    }
    let event: Event = codec::decode(payload).map_err(|e| corrupt(e.to_string()))?;
    if event.type_name() != envelope.event_type || event.stream().to_string() != envelope.stream {
        return Err(corrupt(format!(
            "payload is a {} of {}, envelope says {} of {}",
            event.type_name(),
            event.stream(),
            envelope.event_type,
            envelope.stream
        )));
    }
    Ok(event)
}
