//! A fast path for decoding a stored event's payload: the bytes that
//! `codec::decode::<Event>` reads (bincode's legacy layout of [`Event`]'s
//! serde form: little-endian fixed-width integers, a `u32` variant index,
//! a `u64` length before each text and list, a one-byte tag before an
//! option), read field by field without serde's visitors.
//!
//! Every read of the log decodes every event it hands on, and a replay
//! reads the whole log: in a profile of the replay's reading threads,
//! decoding through serde was 40% of their samples (`docs/BENCHMARKS.md`,
//! twenty-first session). This reads the same bytes directly.
//!
//! It is only a fast path: [`decode`] answers `None` for anything it does
//! not take whole (bytes that end early or run on, a tag or text out of
//! range, a negative amount, a variant it does not know), and the caller
//! (`projections::decode_payload`) then decodes with serde, which gives
//! the value or the error (a negative amount is serde's error too:
//! `Amount` refuses one when decoded). So what it accepts must be exactly
//! what serde would make of the same bytes; the tests check that on every
//! variant and on every cut and one-byte change of their encodings.

use crate::domain::{
    Amount, Applicant, ApplicationId, Currency, Date, Event, PartnerId, PotKey, PrincipalId, Role, RoundId, Share,
};
use crate::log::codec::DECODE_BYTES_MAX;

/// `bytes` as [`Event`], or `None` where serde must decide.
pub(super) fn decode(bytes: &[u8]) -> Option<Event> {
    if bytes.len() > DECODE_BYTES_MAX {
        return None;
    }
    let mut input = Input { rest: bytes };
    let event = input.event()?;
    input.rest.is_empty().then_some(event)
}

struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn option<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => value(self).map(Some),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let length = usize::try_from(self.u64()?).ok()?;
        std::str::from_utf8(self.take(length)?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn amount(&mut self) -> Option<Amount> {
        Amount::from_minor(i64::from_le_bytes(self.array()?))
    }

    fn date(&mut self) -> Option<Date> {
        Some(Date::from_days_since_epoch(i32::from_le_bytes(self.array()?)))
    }

    fn application(&mut self) -> Option<ApplicationId> {
        self.str().map(ApplicationId::from_stored)
    }

    fn round(&mut self) -> Option<RoundId> {
        self.str().map(RoundId::from_stored)
    }

    fn partner(&mut self) -> Option<PartnerId> {
        self.str().map(PartnerId::from_stored)
    }

    fn principal(&mut self) -> Option<PrincipalId> {
        self.str().map(PrincipalId::from_stored)
    }

    fn pot(&mut self) -> Option<PotKey> {
        Some(PotKey { partner: self.partner()?, earmark: self.option(Self::round)? })
    }

    fn shares(&mut self) -> Option<Vec<Share>> {
        let count = usize::try_from(self.u64()?).ok()?;
        // A share takes at least 17 bytes (a length, a tag, an amount): a
        // count beyond the bytes left allocates no more than they could hold.
        let mut shares = Vec::with_capacity(count.min(self.rest.len() / 17));
        for _ in 0..count {
            shares.push(Share { pot: self.pot()?, amount: self.amount()? });
        }
        Some(shares)
    }

    fn currency(&mut self) -> Option<Currency> {
        Some(Currency { code: self.string()?, minor_units: self.u8()? })
    }

    fn applicant(&mut self) -> Option<Applicant> {
        Some(Applicant {
            name: self.str()?.into(),
            organisation_id: self.str()?.into(),
            place: self.str()?.into(),
            country: self.str()?.into(),
        })
    }

    fn role(&mut self) -> Option<Role> {
        match self.u32()? {
            0 => Some(Role::Admin),
            1 => Some(Role::Officer),
            2 => Some(Role::Partner(self.partner()?)),
            3 => Some(Role::Auditor),
            _ => None,
        }
    }

    /// The fields of each variant in their declared order (struct
    /// expressions evaluate their fields in the order written).
    fn event(&mut self) -> Option<Event> {
        Some(match self.u32()? {
            0 => Event::FundOpened { name: self.string()?, currency: self.currency()? },
            1 => Event::PartnerAdmitted {
                partner: self.partner()?,
                name: self.string()?,
                organisation_id: self.string()?,
            },
            2 => Event::ContributionPledged { pot: self.pot()?, amount: self.amount()?, pledged_on: self.date()? },
            3 => Event::PledgeReduced {
                pot: self.pot()?,
                amount: self.amount()?,
                reason: self.string()?,
                reduced_on: self.date()?,
            },
            4 => Event::ContributionReceived {
                pot: self.pot()?,
                amount: self.amount()?,
                value_date: self.date()?,
                bank_reference: self.string()?,
            },
            5 => Event::RoundOpened {
                round: self.round()?,
                name: self.string()?,
                budget_ceiling: self.amount()?,
                grant_max: self.amount()?,
                opens_on: self.date()?,
                closes_on: self.date()?,
            },
            6 => Event::RoundClosed { round: self.round()?, closed_on: self.date()? },
            7 => Event::ApplicationSubmitted {
                application: self.application()?,
                round: self.round()?,
                applicant: self.applicant()?,
                title: self.string()?,
                description: self.string()?,
                amount_requested: self.amount()?,
                submitted_on: self.date()?,
            },
            8 => Event::ApplicationWithdrawn {
                application: self.application()?,
                reason: self.string()?,
                withdrawn_on: self.date()?,
            },
            9 => Event::ApplicationRejected {
                application: self.application()?,
                reason: self.string()?,
                decided_by: self.string()?,
                decided_on: self.date()?,
            },
            10 => Event::GrantAwarded {
                application: self.application()?,
                amount: self.amount()?,
                attribution: self.shares()?,
                reason: self.string()?,
                decided_by: self.string()?,
                decided_on: self.date()?,
            },
            11 => Event::GrantReduced {
                application: self.application()?,
                amount: self.amount()?,
                released: self.shares()?,
                reason: self.string()?,
                decided_by: self.string()?,
                decided_on: self.date()?,
            },
            12 => Event::GrantWithdrawn {
                application: self.application()?,
                released: self.shares()?,
                reason: self.string()?,
                decided_by: self.string()?,
                decided_on: self.date()?,
            },
            13 => Event::GrantSettled {
                application: self.application()?,
                final_amount: self.amount()?,
                released: self.shares()?,
                reason: self.string()?,
                decided_by: self.string()?,
                decided_on: self.date()?,
            },
            14 => Event::PaymentMade {
                application: self.application()?,
                tranche: self.u32()?,
                amount: self.amount()?,
                attribution: self.shares()?,
                value_date: self.date()?,
                bank_reference: self.string()?,
            },
            15 => Event::RefundReceived {
                application: self.application()?,
                amount: self.amount()?,
                attribution: self.shares()?,
                releases: self.bool()?,
                value_date: self.date()?,
                bank_reference: self.string()?,
            },
            16 => Event::ApprovalThresholdsSet {
                round: self.round()?,
                award_above: self.option(Self::amount)?,
                payment_above: self.option(Self::amount)?,
            },
            17 => {
                Event::AccessGranted { principal: self.principal()?, role: self.role()?, token_sha256: self.array()? }
            }
            18 => Event::AccessRevoked { principal: self.principal()?, reason: self.string()? },
            19 => Event::AwardProposed {
                application: self.application()?,
                amount: self.amount()?,
                reason: self.string()?,
                proposed_by: self.string()?,
                proposed_on: self.date()?,
            },
            20 => Event::PaymentProposed {
                application: self.application()?,
                amount: self.amount()?,
                value_date: self.date()?,
                bank_reference: self.string()?,
                proposed_by: self.string()?,
            },
            21 => Event::ConflictDeclared {
                application: self.application()?,
                officer: self.string()?,
                reason: self.string()?,
                declared_on: self.date()?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::codec;

    fn id<T>(make: fn(&str) -> Result<T, crate::domain::ids::IdError>, text: &str) -> T {
        make(text).expect("a valid id")
    }

    /// Every variant, and every form of each field: both earmarks, both
    /// option tags, every role, lists of none, one and several.
    fn every_variant() -> Vec<Event> {
        let application = id(ApplicationId::new, "2024-0042");
        let round = id(RoundId::new, "r-2");
        let partner = id(PartnerId::new, "porticus");
        let principal = id(PrincipalId::new, "officer.7");
        let amount = |minor| Amount::from_minor(minor).expect("a valid amount");
        let date = Date::from_days_since_epoch(19_876);
        let unrestricted = PotKey { partner: partner.clone(), earmark: None };
        let earmarked =
            PotKey { partner: id(PartnerId::new, "a-partner-fund-with-a-long-name"), earmark: Some(round.clone()) };
        let shares = vec![
            Share { pot: unrestricted.clone(), amount: amount(60_001) },
            Share { pot: earmarked.clone(), amount: amount(39_999) },
        ];
        let one = vec![Share { pot: earmarked.clone(), amount: amount(5) }];
        let text = |t: &str| t.to_owned();
        let mut events = vec![
            Event::FundOpened { name: text("Fonds"), currency: Currency::eur() },
            Event::PartnerAdmitted { partner: partner.clone(), name: text("Porticus"), organisation_id: text("NL-1") },
            Event::ContributionPledged { pot: unrestricted.clone(), amount: amount(1), pledged_on: date },
            Event::PledgeReduced { pot: earmarked.clone(), amount: amount(2), reason: text("ü"), reduced_on: date },
            Event::ContributionReceived {
                pot: earmarked.clone(),
                amount: amount(i64::MAX),
                value_date: Date::from_days_since_epoch(-3),
                bank_reference: String::new(),
            },
            Event::RoundOpened {
                round: round.clone(),
                name: text("Round 2"),
                budget_ceiling: amount(10),
                grant_max: amount(5),
                opens_on: date,
                closes_on: date,
            },
            Event::RoundClosed { round: round.clone(), closed_on: date },
            Event::ApplicationSubmitted {
                application: application.clone(),
                round: round.clone(),
                applicant: Applicant {
                    name: "Buurtinitiatief met een naam langer dan vierentwintig tekens".into(),
                    organisation_id: "".into(),
                    place: "Willemstad".into(),
                    country: "CW".into(),
                },
                title: text("t"),
                description: text("d"),
                amount_requested: amount(100_000),
                submitted_on: date,
            },
            Event::ApplicationWithdrawn { application: application.clone(), reason: text("r"), withdrawn_on: date },
            Event::ApplicationRejected {
                application: application.clone(),
                reason: text("r"),
                decided_by: text("o"),
                decided_on: date,
            },
            Event::GrantAwarded {
                application: application.clone(),
                amount: amount(100_000),
                attribution: shares.clone(),
                reason: text("r"),
                decided_by: text("o"),
                decided_on: date,
            },
            Event::GrantReduced {
                application: application.clone(),
                amount: amount(3),
                released: one.clone(),
                reason: text("r"),
                decided_by: text("o"),
                decided_on: date,
            },
            Event::GrantWithdrawn {
                application: application.clone(),
                released: Vec::new(),
                reason: text("r"),
                decided_by: text("o"),
                decided_on: date,
            },
            Event::GrantSettled {
                application: application.clone(),
                final_amount: amount(0),
                released: shares.clone(),
                reason: text("r"),
                decided_by: text("o"),
                decided_on: date,
            },
            Event::PaymentMade {
                application: application.clone(),
                tranche: 7,
                amount: amount(4),
                attribution: shares.clone(),
                value_date: date,
                bank_reference: text("NL91"),
            },
            Event::ApprovalThresholdsSet { round: round.clone(), award_above: None, payment_above: Some(amount(9)) },
            Event::ApprovalThresholdsSet { round: round.clone(), award_above: Some(amount(8)), payment_above: None },
            Event::AccessRevoked { principal: principal.clone(), reason: text("left") },
            Event::AwardProposed {
                application: application.clone(),
                amount: amount(6),
                reason: text("r"),
                proposed_by: text("o"),
                proposed_on: date,
            },
            Event::PaymentProposed {
                application: application.clone(),
                amount: amount(6),
                value_date: date,
                bank_reference: text("b"),
                proposed_by: text("o"),
            },
            Event::ConflictDeclared {
                application: application.clone(),
                officer: text("o"),
                reason: text("r"),
                declared_on: date,
            },
        ];
        for releases in [false, true] {
            events.push(Event::RefundReceived {
                application: application.clone(),
                amount: amount(1),
                attribution: one.clone(),
                releases,
                value_date: date,
                bank_reference: text("b"),
            });
        }
        for role in [Role::Admin, Role::Officer, Role::Partner(partner.clone()), Role::Auditor] {
            events.push(Event::AccessGranted { principal: principal.clone(), role, token_sha256: [0xa5; 32] });
        }
        events
    }

    #[test]
    fn every_variant_decodes_as_serde_decodes_it() {
        let events = every_variant();
        let names: std::collections::BTreeSet<_> = events.iter().map(Event::type_name).collect();
        assert_eq!(names.len(), crate::domain::EVENT_TYPE_NAMES.len(), "a variant is missing here");
        for event in events {
            let bytes = codec::encode(&event);
            assert_eq!(codec::decode::<Event>(&bytes).ok().as_ref(), Some(&event));
            assert_eq!(decode(&bytes).as_ref(), Some(&event), "{}", event.type_name());
        }
    }

    /// Whatever it accepts of an encoding cut short, run on, or with any
    /// one byte changed is what serde makes of it.
    #[test]
    fn what_it_accepts_of_damaged_bytes_serde_reads_the_same() {
        let mut accepted = 0;
        let mut check = |bytes: &[u8]| {
            if let Some(event) = decode(bytes) {
                accepted += 1;
                assert_eq!(codec::decode::<Event>(bytes).ok().as_ref(), Some(&event), "{bytes:?}");
            }
        };
        for event in every_variant() {
            let bytes = codec::encode(&event);
            for end in 0..bytes.len() {
                check(&bytes[..end]);
            }
            check(&[bytes.as_slice(), &[0]].concat());
            for at in 0..bytes.len() {
                for change in [0u8, 1, 2, 3, 0x16, 0x7f, 0x80, 0xff, bytes[at] ^ 1, bytes[at].wrapping_add(1)] {
                    let mut changed = bytes.clone();
                    changed[at] = change;
                    check(&changed);
                }
            }
        }
        // Most one-byte changes inside texts and amounts still decode.
        assert!(accepted > 1000, "only {accepted} accepted: the comparison proves little");
    }

    /// A negative amount in stored bytes (which `decide` never records) is
    /// refused by both paths, with the reason, in every amount an event
    /// carries.
    #[test]
    fn a_negative_stored_amount_is_refused() {
        let marker = 0x0123_4567_89ab_cdef_i64;
        let amount = Amount::from_minor(marker).expect("a valid amount");
        let pot = PotKey { partner: id(PartnerId::new, "bzk"), earmark: None };
        let date = Date::from_days_since_epoch(19_876);
        let events = [
            Event::ContributionReceived { pot: pot.clone(), amount, value_date: date, bank_reference: "NL-1".into() },
            Event::GrantAwarded {
                application: id(ApplicationId::new, "app-1"),
                amount,
                attribution: vec![Share { pot, amount }; 3],
                reason: "fits".into(),
                decided_by: "officer".into(),
                decided_on: date,
            },
        ];
        let mut cases = 0;
        for event in events {
            let bytes = codec::encode(&event);
            assert!(crate::projections::decode_payload(&bytes).is_ok());
            let at: Vec<usize> = (0..=bytes.len() - 8).filter(|&i| bytes[i..i + 8] == marker.to_le_bytes()).collect();
            assert!(!at.is_empty(), "{}: the amount is not where it was looked for", event.type_name());
            for i in at {
                let mut negative = bytes.clone();
                negative[i..i + 8].copy_from_slice(&(-marker).to_le_bytes());
                assert_eq!(decode(&negative), None, "{} at {i}", event.type_name());
                let error = crate::projections::decode_payload(&negative).expect_err("a negative amount").to_string();
                assert!(error.contains("negative"), "{}: {error}", event.type_name());
                cases += 1;
            }
        }
        // The receipt's amount, the award's and its three shares'.
        assert_eq!(cases, 5);
    }
}
