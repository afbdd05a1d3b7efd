//! One chunk of a checkpoint's applications (layout 5): the keys of the
//! pots that the chunk's grants draw on, each once, then the applications
//! in order, each grant's shares naming their pots by number in that list.
//!
//! A share's pot key is two ids. Written out with every share (layout 4),
//! the keys were about 60% of a checkpoint's bytes, and decoding them and
//! finding their shared copy again a quarter of a start at 10 M events.
//!
//! The entries mirror [`Application`] and [`Grant`] field for field, in
//! their order, and encode each field as the state does. Both are taken
//! apart and built without `..`: a field added to either does not compile
//! until it has its place here (and the layout its new version).

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
    /// The numbers of the last grant's pots, place by place: grants one
    /// after another mostly draw on the same pots, and comparing two keys
    /// is cheaper than hashing one.
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

    /// The chunk's bytes: its pots, then its applications.
    pub(super) fn finish(self) -> Vec<u8> {
        let mut bytes = codec::encode(&self.pots);
        bytes.extend_from_slice(&self.entries);
        bytes
    }
}

/// The applications of one chunk, each moved into its shared allocation as
/// it is decoded (no chunk-sized buffer of applications), its shares
/// holding the chunk's one shared copy of each pot's key.
pub(super) fn decode_chunk(bytes: &[u8], capacity: usize) -> Result<Chunk, CodecError> {
    let (pots, used) = codec::decode_checkpoint_entry::<Vec<PotKey>>(bytes)?;
    let pots: Vec<Arc<PotKey>> = pots.into_iter().map(shared_pot_key).collect();
    let mut bytes = &bytes[used..];
    let mut applications = Vec::with_capacity(capacity);
    while !bytes.is_empty() {
        let ((id, entry), used) = codec::decode_checkpoint_entry::<(ApplicationId, ApplicationIn)>(bytes)?;
        applications.push((id, Arc::new(entry.into_application(&pots)?)));
        bytes = &bytes[used..];
    }
    Ok(applications)
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
