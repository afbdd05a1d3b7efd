//! Streams group the events of one entity: the fund, a partner, a round, or
//! an application together with the grant awarded on it (its dossier), or a
//! principal (their access).

use super::ids::{ApplicationId, PartnerId, PrincipalId, RoundId};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamId {
    Fund,
    Partner(PartnerId),
    Round(RoundId),
    Application(ApplicationId),
    Principal(PrincipalId),
}

impl StreamId {
    /// Parses the text form, `fund`, `partner/ID`, `round/ID` or `application/ID`.
    pub fn parse(text: &str) -> Option<StreamId> {
        if text == "fund" {
            return Some(StreamId::Fund);
        }
        let (kind, id) = text.split_once('/')?;
        match kind {
            "partner" => PartnerId::new(id).ok().map(StreamId::Partner),
            "round" => RoundId::new(id).ok().map(StreamId::Round),
            "application" => ApplicationId::new(id).ok().map(StreamId::Application),
            "principal" => PrincipalId::new(id).ok().map(StreamId::Principal),
            _ => None,
        }
    }

    /// Whether `text` is this stream's text form (its `Display`), compared
    /// without building that text: a replay checks it for every event.
    pub fn is(&self, text: &str) -> bool {
        let (kind, id) = match self {
            StreamId::Fund => return text == "fund",
            StreamId::Partner(id) => ("partner/", id.as_str()),
            StreamId::Round(id) => ("round/", id.as_str()),
            StreamId::Application(id) => ("application/", id.as_str()),
            StreamId::Principal(id) => ("principal/", id.as_str()),
        };
        text.strip_prefix(kind) == Some(id)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Fund => f.write_str("fund"),
            StreamId::Partner(id) => write!(f, "partner/{id}"),
            StreamId::Round(id) => write!(f, "round/{id}"),
            StreamId::Application(id) => write!(f, "application/{id}"),
            StreamId::Principal(id) => write!(f, "principal/{id}"),
        }
    }
}
