//! One chunk of a checkpoint's applications (layout 5): the keys of the
//! pots that the chunk's grants draw on, each once, then the applications
//! in order, each grant's shares naming their pots by number in that list.
//!
//! A share's pot key is two ids. Written out with every share (layout 4),
//! each key was decoded, UTF-8 checked and matched to its one shared copy
//! again, share by share: a quarter of a start's CPU at 10 M events, for
//! about 9% of the checkpoint's bytes.
//!
//! The entries mirror [`Application`] and [`Grant`] field for field, in
//! their order, and encode each field as the state does. Both are taken
//! apart and built without `..`: a field added to either does not compile
//! until it has its place here. The layout's version (`CHECKPOINT_FORMAT`)
//! is bumped by hand, and `tests/log.rs` pins a checkpoint's bytes so that
//! a change that forgets it fails.

use crate::domain::state::{
    shared_pot_key, Application, ApplicationStatus, AwardProposal, Decision, Grant, GrantShare, GrantStatus,
    PaymentProposal, Shares,
};
use crate::domain::{Amount, Applicant, ApplicationId, Date, PotKey, RoundId};
use crate::log::codec::{self, CodecError};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The applications of one chunk, in the order they came.
pub(super) type Chunk = Vec<(ApplicationId, Arc<Application>)>;

/// Builds one chunk: its pots are numbered as its shares first name them.
#[derive(Default)]
pub(super) struct ChunkEncoder<'a> {
    pots: Vec<&'a PotKey>,
    numbers: HashMap<&'a PotKey, u32>,
    /// The number last given at each place in a grant's shares: grants one
    /// after another mostly draw on the same pots in the same order, and
    /// comparing two keys is cheaper than hashing one.
    last: Vec<u32>,
    shares: Vec<(u32, &'a GrantShare)>,
    entries: Vec<u8>,
    applications: usize,
}

impl<'a> ChunkEncoder<'a> {
    pub(super) fn push(&mut self, id: &'a ApplicationId, application: &'a Application) {
        let Application {
            round,
            applicant,
            title,
            description,
            amount_requested,
            submitted_on,
            status,
            decision,
            grant,
            award_proposal,
            conflicts,
        } = application;
        let grant = grant.as_ref().map(|grant| {
            let Grant {
                awarded,
                amount,
                status,
                shares,
                paid,
                refunded,
                tranches,
                awarded_on,
                settled_on,
                payment_proposal,
            } = grant;
            let mut numbered = std::mem::take(&mut self.shares);
            numbered.clear();
            for (place, (pot, share)) in shares.iter().enumerate() {
                numbered.push((self.number(place, pot), share));
            }
            GrantOut {
                awarded,
                amount,
                status,
                shares: numbered,
                paid,
                refunded,
                tranches,
                awarded_on,
                settled_on,
                payment_proposal,
            }
        });
        let entry = ApplicationOut {
            round,
            applicant,
            title,
            description,
            amount_requested,
            submitted_on,
            status,
            decision,
            grant,
            award_proposal,
            conflicts,
        };
        codec::encode_into(&(id, &entry), &mut self.entries);
        if let Some(grant) = entry.grant {
            self.shares = grant.shares;
        }
        self.applications += 1;
    }

    /// The number of `pot`, the share at `place` in its grant.
    fn number(&mut self, place: usize, pot: &'a PotKey) -> u32 {
        if let Some(&number) = self.last.get(place) {
            if self.pots[number as usize] == pot {
                return number;
            }
        }
        let next = u32::try_from(self.pots.len()).expect("a chunk's pots fit in its bytes");
        let number = *self.numbers.entry(pot).or_insert_with(|| {
            self.pots.push(pot);
            next
        });
        if place < self.last.len() {
            self.last[place] = number;
        } else if place == self.last.len() {
            self.last.push(number);
        }
        number
    }

    pub(super) fn applications(&self) -> usize {
        self.applications
    }

    pub(super) fn entry_bytes(&self) -> usize {
        self.entries.len()
    }

    /// Appends the chunk to `out`: its length (u64, big-endian), its pots,
    /// its applications.
    pub(super) fn write_to(self, out: &mut Vec<u8>) {
        let pots = codec::encode(&self.pots);
        out.extend_from_slice(&((pots.len() + self.entries.len()) as u64).to_be_bytes());
        out.extend_from_slice(&pots);
        out.extend_from_slice(&self.entries);
    }
}

/// The applications of one chunk, each moved into its shared allocation as
/// it is decoded (no chunk-sized buffer of applications), its shares
/// holding the chunk's one shared copy of each pot's key. A chunk lists
/// each pot once, and every share's pot is one of the fund's: a list of
/// more than `pots_max` (the fund's pots) is damage, refused before a key
/// of it is shared.
pub(super) fn decode_chunk(bytes: &[u8], pots_max: usize) -> Result<Chunk, CodecError> {
    let (pots, used) = codec::decode_checkpoint_entry::<Vec<PotKey>>(bytes)?;
    if pots.len() > pots_max {
        return Err(CodecError::Decode(format!("a chunk lists {} pots, and the fund has {pots_max}", pots.len())));
    }
    let pots: Vec<Arc<PotKey>> = pots.into_iter().map(shared_pot_key).collect();
    let mut bytes = &bytes[used..];
    // Room for a guess of the applications (an entry takes well over 64
    // bytes), never more than a chunk of this version holds.
    let mut applications = Vec::with_capacity(super::CHECKPOINT_CHUNK_APPLICATIONS.min(bytes.len() / 64));
    while !bytes.is_empty() {
        let ((id, entry), used) = codec::decode_checkpoint_entry::<(ApplicationId, ApplicationIn)>(bytes)?;
        applications.push((id, Arc::new(entry.into_application(&pots)?)));
        bytes = &bytes[used..];
    }
    Ok(applications)
}

/// The id of a chunk's first application, read without decoding the rest:
/// its list of pots is decoded (and bounded by `pots_max`, as
/// [`decode_chunk`] does) to find where its applications begin.
pub(super) fn first_id(bytes: &[u8], pots_max: usize) -> Result<ApplicationId, CodecError> {
    let (pots, used) = codec::decode_checkpoint_entry::<Vec<PotKey>>(bytes)?;
    if pots.len() > pots_max {
        return Err(CodecError::Decode(format!("a chunk lists {} pots, and the fund has {pots_max}", pots.len())));
    }
    let (first, _) = codec::decode_checkpoint_entry::<ApplicationId>(&bytes[used..])?;
    Ok(first)
}

#[derive(Serialize)]
struct ApplicationOut<'a> {
    round: &'a RoundId,
    applicant: &'a Applicant,
    title: &'a CompactString,
    description: &'a CompactString,
    amount_requested: &'a Amount,
    submitted_on: &'a Date,
    status: &'a ApplicationStatus,
    decision: &'a Option<Decision>,
    grant: Option<GrantOut<'a>>,
    award_proposal: &'a Option<Box<AwardProposal>>,
    conflicts: &'a BTreeSet<String>,
}

#[derive(Serialize)]
struct GrantOut<'a> {
    awarded: &'a Amount,
    amount: &'a Amount,
    status: &'a GrantStatus,
    /// In pot order, each pot by its number in the chunk.
    shares: Vec<(u32, &'a GrantShare)>,
    paid: &'a Amount,
    refunded: &'a Amount,
    tranches: &'a u32,
    awarded_on: &'a Date,
    settled_on: &'a Option<Date>,
    payment_proposal: &'a Option<Box<PaymentProposal>>,
}

#[derive(Deserialize)]
struct ApplicationIn {
    round: RoundId,
    applicant: Applicant,
    title: CompactString,
    description: CompactString,
    amount_requested: Amount,
    submitted_on: Date,
    status: ApplicationStatus,
    decision: Option<Decision>,
    grant: Option<GrantIn>,
    award_proposal: Option<Box<AwardProposal>>,
    conflicts: BTreeSet<String>,
}

#[derive(Deserialize)]
struct GrantIn {
    awarded: Amount,
    amount: Amount,
    status: GrantStatus,
    shares: Vec<(u32, GrantShare)>,
    paid: Amount,
    refunded: Amount,
    tranches: u32,
    awarded_on: Date,
    settled_on: Option<Date>,
    payment_proposal: Option<Box<PaymentProposal>>,
}

impl ApplicationIn {
    fn into_application(self, pots: &[Arc<PotKey>]) -> Result<Application, CodecError> {
        let ApplicationIn {
            round,
            applicant,
            title,
            description,
            amount_requested,
            submitted_on,
            status,
            decision,
            grant,
            award_proposal,
            conflicts,
        } = self;
        let grant = match grant {
            None => None,
            Some(GrantIn {
                awarded,
                amount,
                status,
                shares,
                paid,
                refunded,
                tranches,
                awarded_on,
                settled_on,
                payment_proposal,
            }) => {
                let shares = shares
                    .into_iter()
                    .map(|(number, share)| {
                        let pot = pots.get(number as usize).ok_or_else(|| {
                            CodecError::Decode(format!(
                                "a grant's share names pot {number} of a chunk of {} pots",
                                pots.len()
                            ))
                        })?;
                        Ok((pot.clone(), share))
                    })
                    .collect::<Result<Vec<_>, CodecError>>()?;
                Some(Grant {
                    awarded,
                    amount,
                    status,
                    shares: Shares::of_shared(shares),
                    paid,
                    refunded,
                    tranches,
                    awarded_on,
                    settled_on,
                    payment_proposal,
                })
            }
        };
        Ok(Application {
            round,
            applicant,
            title,
            description,
            amount_requested,
            submitted_on,
            status,
            decision,
            grant,
            award_proposal,
            conflicts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{decide, Context, FundState, PartnerId};
    use crate::workload::{self, ClientKind, WorkloadClient};

    /// The workload's fund after ten applications: the number of its pots,
    /// and its applications, the first of them one whose grant draws on
    /// six pots.
    fn workload_applications() -> (usize, Vec<(ApplicationId, Application)>) {
        let mut state = FundState::default();
        let mut client = WorkloadClient::of_kind("chunk", 0, ClientKind::Officer);
        for step in workload::setup().into_iter().chain((0..40).map(|_| client.next_step())) {
            for event in decide(&state, &step.command, &Context { actor: step.actor }).unwrap() {
                state.evolve(&event);
            }
        }
        let mut applications: Vec<_> = state.applications.iter().map(|(id, a)| (id.clone(), a.clone())).collect();
        let six = applications
            .iter()
            .position(|(_, a)| a.grant.as_ref().is_some_and(|grant| grant.shares.len() == 6))
            .expect("a grant over six pots");
        applications.swap(0, six);
        (state.pots.len(), applications)
    }

    /// One chunk of `applications`: its bytes after the length, and the
    /// pots it lists.
    fn encoded(applications: &[(ApplicationId, Application)]) -> (Vec<u8>, Vec<PotKey>) {
        let mut encoder = ChunkEncoder::default();
        for (id, application) in applications {
            encoder.push(id, application);
        }
        let mut out = Vec::new();
        encoder.write_to(&mut out);
        assert_eq!(u64::from_be_bytes(out[..8].try_into().unwrap()) as usize, out.len() - 8);
        let bytes = out[8..].to_vec();
        let pots = codec::decode_checkpoint_entry::<Vec<PotKey>>(&bytes).unwrap().0;
        (bytes, pots)
    }

    fn with_shares(application: &mut Application, pots: &[PotKey]) {
        let grant = application.grant.as_mut().expect("awarded");
        grant.shares = pots
            .iter()
            .enumerate()
            .map(|(n, pot)| {
                (pot.clone(), GrantShare { amount: Amount::from_minor(100 + n as i64).unwrap(), ..Default::default() })
            })
            .collect();
    }

    #[test]
    fn every_share_decodes_to_its_pot_wherever_its_place_and_whatever_the_last_grant_drew_on() {
        let (fund_pots, mut applications) = workload_applications();
        assert_eq!(applications.len(), 10);
        let six: Vec<PotKey> = applications[0].1.grant.as_ref().unwrap().shares.keys().cloned().collect();
        assert_eq!(six.len(), 6);
        let earmarked =
            PotKey { partner: PartnerId::new("elsewhere").unwrap(), earmark: Some(applications[0].1.round.clone()) };
        // Pots at other places than the grant before drew on them, fewer
        // and more of them, one no grant before named, then the six again.
        with_shares(&mut applications[1].1, &six[3..5]);
        with_shares(&mut applications[2].1, &[six[4].clone(), earmarked.clone(), six[0].clone()]);
        with_shares(&mut applications[3].1, std::slice::from_ref(&earmarked));
        with_shares(&mut applications[5].1, &[six[5].clone(), six[1].clone()]);
        let (bytes, listed) = encoded(&applications);
        // Each pot listed once, in the order shares first named them.
        let mut expected = six.clone();
        expected.push(earmarked.clone());
        let mut sorted = listed.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
        let decoded = decode_chunk(&bytes, fund_pots + 1).unwrap();
        assert_eq!(decoded.len(), applications.len());
        for ((id, application), (decoded_id, decoded)) in applications.iter().zip(&decoded) {
            assert_eq!(decoded_id, id);
            assert_eq!(**decoded, *application, "{id}");
        }
        // The first grant's pots are the first six listed, the earmarked
        // one the seventh.
        assert_eq!(listed[..6], six[..]);
        assert_eq!(listed[6], earmarked);
    }

    /// The workload's first grant with every optional field set, and an
    /// application with none of them.
    fn every_field() -> (usize, [(ApplicationId, Application); 2]) {
        let (fund_pots, applications) = workload_applications();
        let (id, mut full) = applications[0].clone();
        let day = |text| Date::parse(text).unwrap();
        let amount = |minor| Amount::from_minor(minor).unwrap();
        full.title = "Buurtgesprekken in Zuilen — één keer per maand".into();
        full.applicant.organisation_id = "NL-KVK-12345678".into();
        full.decision = Some(Decision {
            reason: "past in het programma".into(),
            decided_by: "anna".into(),
            decided_on: day("2024-03-01"),
        });
        full.award_proposal = Some(Box::new(AwardProposal {
            amount: amount(123_456),
            reason: "tweede ronde".into(),
            proposed_by: "bram".into(),
            proposed_on: day("2024-03-02"),
        }));
        full.conflicts = ["bram".to_owned(), "cor".to_owned()].into();
        let grant = full.grant.as_mut().unwrap();
        // Every figure differs from every other, so that two fields read
        // in each other's place show.
        grant.awarded = amount(500_000);
        grant.amount = amount(400_000);
        let pots: Vec<PotKey> = grant.shares.keys().cloned().collect();
        grant.shares = (pots.into_iter().enumerate())
            .map(|(n, pot)| {
                let n = n as i64;
                (pot, GrantShare { amount: amount(1_000 + n), paid: amount(200 + n), refunded: amount(30 + n) })
            })
            .collect();
        grant.status = GrantStatus::Settled;
        grant.paid = amount(7);
        grant.refunded = amount(3);
        grant.tranches = 70_000;
        grant.settled_on = Some(day("2024-12-31"));
        grant.payment_proposal = Some(Box::new(PaymentProposal {
            amount: amount(99),
            value_date: day("2024-04-01"),
            bank_reference: "NL91ABNA0417164300".into(),
            proposed_by: "dirk".into(),
        }));
        let bare = Application {
            round: full.round.clone(),
            applicant: Applicant {
                name: String::new().into(),
                organisation_id: String::new().into(),
                place: String::new().into(),
                country: String::new().into(),
            },
            title: String::new().into(),
            description: String::new().into(),
            amount_requested: Amount::ZERO,
            submitted_on: Date::from_days_since_epoch(-1),
            status: ApplicationStatus::Withdrawn,
            decision: None,
            grant: None,
            award_proposal: None,
            conflicts: BTreeSet::new(),
        };
        (fund_pots, [(id, full), (ApplicationId::new("z.9").unwrap(), bare)])
    }

    #[test]
    fn every_field_survives_a_round_trip() {
        let (fund_pots, applications) = every_field();
        let (bytes, _) = encoded(&applications);
        let decoded = decode_chunk(&bytes, fund_pots).unwrap();
        assert_eq!(decoded.len(), 2);
        for ((id, application), (decoded_id, decoded)) in applications.iter().zip(&decoded) {
            assert_eq!((decoded_id, &**decoded), (id, application));
        }
    }

    #[test]
    fn an_entry_cut_anywhere_is_refused() {
        let (fund_pots, applications) = every_field();
        let (bytes, _) = encoded(&applications[..1]);
        let (_, list_ends) = codec::decode_checkpoint_entry::<Vec<PotKey>>(&bytes).unwrap();
        assert!(decode_chunk(&bytes, fund_pots).is_ok());
        // An error, never a panic or a shorter application: cut inside the
        // pots' list or inside the entry (cut right after the list, it is a
        // chunk of no applications).
        for end in (0..bytes.len()).filter(|&end| end != list_ends) {
            assert!(decode_chunk(&bytes[..end], fund_pots).is_err(), "cut at {end} of {}", bytes.len());
        }
    }

    #[test]
    fn a_share_beyond_its_chunks_pots_and_a_list_longer_than_the_funds_are_refused() {
        let (fund_pots, applications) = workload_applications();
        let (bytes, listed) = encoded(&applications[..1]);
        assert_eq!(listed.len(), 6);
        let (_, list_ends) = codec::decode_checkpoint_entry::<Vec<PotKey>>(&bytes).unwrap();
        assert!(decode_chunk(&bytes, fund_pots).is_ok());

        // The list cut to its first pot: the grant's second share names a
        // pot the chunk does not list.
        let mut cut = codec::encode(&listed[..1].to_vec());
        cut.extend_from_slice(&bytes[list_ends..]);
        match decode_chunk(&cut, fund_pots) {
            Err(CodecError::Decode(problem)) => {
                assert_eq!(problem, "a grant's share names pot 1 of a chunk of 1 pots")
            }
            other => panic!("decoded: {other:?}"),
        }

        // A list of more pots than the fund has.
        match decode_chunk(&bytes, 5) {
            Err(CodecError::Decode(problem)) => assert_eq!(problem, "a chunk lists 6 pots, and the fund has 5"),
            other => panic!("decoded: {other:?}"),
        }
    }
}
