//! Identifiers chosen by clients (`porticus`, `round-2`, `app-0042`) and
//! business dates. Both are validated once, here, so that the rest of the
//! domain can take them as given.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// The longest identifier, in bytes.
pub const ID_BYTES_MAX: usize = 64;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name(CompactString);

        /// The order of `str`: byte by byte ([`compare_ids`]).
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                compare_ids(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            /// Validates an identifier: 1 to 64 characters of `a-z`, `A-Z`,
            /// `0-9`, `-`, `_`, `.`; it starts with a letter or digit.
            pub fn new(id: &str) -> Result<Self, IdError> {
                validate_id(id, $what).map(|()| $name(CompactString::from(id)))
            }

            /// An id as decoded from stored bytes, not validated again:
            /// what serde's `Deserialize` (derived) makes of the same text.
            /// For decoders that must give exactly serde's value.
            pub(crate) fn from_stored(id: &str) -> Self {
                $name(CompactString::from(id))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A partner fund, e.g. `porticus`.
    PartnerId, "partner id"
);
id_type!(
    /// A round of the grant window, e.g. `2023-1`.
    RoundId, "round id"
);
id_type!(
    /// An application; the grant awarded on it has the same id.
    ApplicationId, "application id"
);
id_type!(
    /// Someone (or a system) holding a token: `anna`, `porticus-treasurer`.
    PrincipalId, "principal id"
);

/// `a.cmp(b)` for two ids' bytes, the order of `str`, eight bytes at a
/// time. Ids are short (at most 64 bytes, most under 16), and the maps
/// keyed by them (applications, pots, partners) compare ids a few dozen
/// times per event folded: through `memcmp`, that call was a fifth of a
/// replay's fold (eighteenth session, `docs/BENCHMARKS.md`).
#[inline]
fn compare_ids(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    let (mut a_words, mut b_words) = (a[..common].chunks_exact(8), b[..common].chunks_exact(8));
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        let (x, y) =
            (u64::from_be_bytes(x.try_into().expect("8 bytes")), u64::from_be_bytes(y.try_into().expect("8 bytes")));
        if x != y {
            return x.cmp(&y);
        }
    }
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

fn validate_id(id: &str, what: &'static str) -> Result<(), IdError> {
    let problem = if id.is_empty() {
        "must not be empty"
    } else if id.len() > ID_BYTES_MAX {
        "is longer than 64 characters"
    } else if !id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) {
        "must start with a letter or digit"
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        "may only contain letters, digits, '-', '_' and '.'"
    } else {
        return Ok(());
    };
    Err(IdError { what, id: id.chars().take(80).collect(), problem })
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {id:?} {problem}")]
pub struct IdError {
    pub what: &'static str,
    pub id: String,
    pub problem: &'static str,
}

/// A business date (value date of a transfer, date of a decision), distinct
/// from the time an event was recorded. Stored as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date(i32);

impl Date {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Date, DateError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text, format).map_err(|_| DateError { text: text.chars().take(40).collect() })?;
        Ok(Date::from_time(date))
    }

    pub fn from_time(date: time::Date) -> Date {
        Date(date.to_julian_day() - time::macros::date!(1970 - 01 - 01).to_julian_day())
    }

    pub fn days_since_epoch(self) -> i32 {
        self.0
    }

    pub fn from_days_since_epoch(days: i32) -> Date {
        Date(days)
    }

    fn to_time(self) -> time::Date {
        time::Date::from_julian_day(self.0 + time::macros::date!(1970 - 01 - 01).to_julian_day())
            .expect("dates are validated on the way in")
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.to_time();
        write!(f, "{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("date {text:?} is not a calendar date in the form YYYY-MM-DD")]
pub struct DateError {
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Ids order as their text does: maps keyed by them list in the
        /// same order as before `compare_ids`, and as `str` sorts.
        #[test]
        fn ids_order_as_their_text(
            prefix in "[a-z0-9]{0,40}",
            a in "[a-zA-Z0-9._-]{0,23}",
            b in "[a-zA-Z0-9._-]{0,23}",
        ) {
            // A shared prefix of any length, so that the words compared
            // eight bytes at a time differ anywhere, or nowhere.
            let (a, b) = (format!("x{prefix}{a}"), format!("x{prefix}{b}"));
            let (x, y) = (ApplicationId::new(&a).unwrap(), ApplicationId::new(&b).unwrap());
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x.partial_cmp(&y), Some(a.cmp(&b)));
        }

        #[test]
        fn compare_ids_is_the_order_of_bytes(
            a in proptest::collection::vec(any::<u8>(), 0..70),
            b in proptest::collection::vec(any::<u8>(), 0..70),
        ) {
            prop_assert_eq!(compare_ids(&a, &b), a.cmp(&b));
            let mut c = a.clone();
            c.extend_from_slice(&b);
            prop_assert_eq!(compare_ids(&a, &c), a.cmp(&c));
        }
    }
}
