//! The fund's applications: an ordered map with copy-on-write sharing.
//!
//! Applications are most of a fund's state (2.5 million of them, with their
//! grants, in a ledger of 10 million events). The ledger keeps two views of
//! the state: the writer's, which runs ahead during a group commit, and the
//! published one that queries read. With a plain `BTreeMap` they were two
//! whole copies. Here a clone is O(1): both views share every application
//! that neither has changed since, and a change copies one application and
//! the map's path to it ([`PersistentMap`], a B+ tree of reference-counted
//! nodes).
//!
//! A start from a checkpoint does not decode its applications before it
//! serves: decoding them was most of a start's CPU at 10 M events. They
//! come as [`Stored`] chunks in id order, each decoded the first time an
//! application of it is asked for (and by a background thread that the
//! ledger starts, so that all of them are soon decoded). What changes or is
//! added after the start goes into the persistent map, which is looked at
//! first; a stored application that changes is copied there, and its
//! stored copy stays, unused, until the next start.
//!
//! It behaves as a `BTreeMap<ApplicationId, Application>`: the same order,
//! equality, `Debug`, and serde form (a map in key order), so checkpoints and
//! the canonical state bytes are unchanged.

use super::ids::ApplicationId;
use super::state::Application;
use crate::merge::merge_sorted;
use crate::persistent_map::PersistentMap;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Bound, Index, RangeBounds};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Room in the nodes of [`Applications`]' persistent map: at most 16
/// applications per leaf, where the log's indexes keep 64. After each
/// publish the writer copies the leaf of every application a command
/// changes, and the leaf's copy touches the reference count of each
/// application in it, each in a block of memory of its own, mostly out of
/// the cache; the published state's old leaves, once freed, touch them
/// again. A profile of the in-process writer put 24% of the writer
/// thread there with leaves of 64 (`docs/BENCHMARKS.md`, twenty-first
/// session). Lookups walk a deeper tree; a start is not slowed: a
/// checkpoint's applications are not in this map.
const APPLICATIONS_ROOM: usize = if cfg!(test) { crate::persistent_map::ROOM_DEFAULT } else { 17 };

#[derive(Clone, Default)]
pub struct Applications {
    /// A checkpoint's applications, decoded as they are asked for.
    stored: Option<Arc<Stored>>,
    /// Every application added or changed since the checkpoint (all of
    /// them when there was none): it wins over `stored`.
    changed: PersistentMap<ApplicationId, Arc<Application>, APPLICATIONS_ROOM>,
    /// How many of `changed` are not in `stored`.
    added: usize,
}

impl Applications {
    pub fn new() -> Applications {
        Applications::default()
    }

    /// A checkpoint's applications, none decoded yet.
    pub fn from_stored(stored: Stored) -> Applications {
        Applications { stored: Some(Arc::new(stored)), changed: PersistentMap::new(), added: 0 }
    }

    /// The checkpoint's applications these started from, if any: for a
    /// thread that decodes them all ahead of use ([`Stored::decode_all`]).
    pub fn stored(&self) -> Option<Arc<Stored>> {
        self.stored.clone()
    }

    /// Decodes the stored applications not decoded yet: the error of the
    /// first chunk that does not decode.
    pub fn decode_stored(&self) -> Result<(), String> {
        self.stored.as_ref().map_or(Ok(()), |stored| stored.decode_all())
    }

    /// (Decodes every stored application.)
    pub fn len(&self) -> usize {
        self.stored.as_ref().map_or(0, |stored| stored.len()) + self.added
    }

    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.stored.as_ref().is_none_or(|stored| stored.is_empty())
    }

    pub fn contains_key(&self, id: &ApplicationId) -> bool {
        self.get(id).is_some()
    }

    pub fn get(&self, id: &ApplicationId) -> Option<&Application> {
        let shared = self.changed.get(id).or_else(|| self.stored.as_ref()?.get(id));
        shared.map(|application| &**application)
    }

    /// The application to change: copied first if another view shares it
    /// (or it is still the checkpoint's).
    pub fn get_mut(&mut self, id: &ApplicationId) -> Option<&mut Application> {
        // (Without a checkpoint's applications, one walk of the map, as
        // before there were any.)
        if let Some(stored) = &self.stored {
            if !self.changed.contains_key(id) {
                let stored = stored.get(id)?.clone();
                self.changed.insert(id.clone(), stored);
            }
        }
        self.changed.get_mut(id).map(Arc::make_mut)
    }

    pub fn insert(&mut self, id: ApplicationId, application: Application) -> Option<Application> {
        let Some(stored) = &self.stored else {
            let earlier = self.changed.insert(id, Arc::new(application));
            if earlier.is_none() {
                self.added += 1;
            }
            return earlier.map(Arc::unwrap_or_clone);
        };
        if let Some(earlier) = self.changed.get_mut(&id) {
            return Some(Arc::unwrap_or_clone(std::mem::replace(earlier, Arc::new(application))));
        }
        let stored = stored.get(&id).cloned();
        if stored.is_none() {
            self.added += 1;
        }
        self.changed.insert(id, Arc::new(application));
        stored.map(Arc::unwrap_or_clone)
    }

    /// In id order.
    pub fn iter(&self) -> impl Iterator<Item = (&ApplicationId, &Application)> + '_ {
        self.range(..)
    }

    pub fn keys(&self) -> impl Iterator<Item = &ApplicationId> + '_ {
        self.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &Application> + '_ {
        self.iter().map(|(_, application)| application)
    }

    pub fn range<R: RangeBounds<ApplicationId> + Clone>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (&ApplicationId, &Application)> + '_ {
        let stored = self.stored.as_deref().map(|stored| stored.range(range.clone())).into_iter().flatten();
        merge_sorted(stored, self.changed.range(range), |a, b| a.0.cmp(b.0))
            .map(|(id, application)| (id, &**application))
    }
}

/// Decodes one stored chunk: its applications in the order stored.
pub type DecodeChunk = dyn Fn(&[u8]) -> Result<Vec<(ApplicationId, Arc<Application>)>, String> + Send + Sync;

/// What to do when a chunk does not decode where the state is used (a
/// lookup cannot answer an error): set by the ledger, which cannot go on
/// serving from such a state. Without one, the lookup panics.
pub type OnUndecodable = dyn Fn(&str) + Send + Sync;

/// A checkpoint's applications: chunks of encoded applications in id order,
/// each decoded once, on first use, and then kept decoded (its encoded
/// bytes freed). Shared by every view of the state started from it, and
/// never changed but for that decoding.
pub struct Stored {
    chunks: Vec<StoredChunk>,
    decode: Box<DecodeChunk>,
    on_undecodable: OnceLock<Box<OnUndecodable>>,
}

struct StoredChunk {
    /// The chunk's first application: chunk `k` holds the ids from its
    /// first up to (not including) chunk `k + 1`'s first.
    first: ApplicationId,
    /// Until decoded. Taken out of the lock to be decoded, so that no
    /// thread waits on another's decoding (a background thread at a low
    /// priority decodes them too); two threads may decode a chunk at the
    /// same time, and the first to finish sets it.
    /// (An `Arc` of the box: `Arc<[u8]>` would copy the bytes in.)
    encoded: Mutex<Option<Arc<Box<[u8]>>>>,
    decoded: OnceLock<Vec<(ApplicationId, Arc<Application>)>>,
}

impl Stored {
    /// Chunks given as (first application id, encoded bytes) in id order:
    /// an error if their first ids are not in strictly rising order.
    pub fn new(chunks: Vec<(ApplicationId, Box<[u8]>)>, decode: Box<DecodeChunk>) -> Result<Stored, String> {
        if let Some(pair) = chunks.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(format!("chunks out of order: {:?} before {:?}", pair[0].0, pair[1].0));
        }
        let chunks = chunks
            .into_iter()
            .map(|(first, bytes)| StoredChunk {
                first,
                encoded: Mutex::new(Some(Arc::new(bytes))),
                decoded: OnceLock::new(),
            })
            .collect();
        Ok(Stored { chunks, decode, on_undecodable: OnceLock::new() })
    }

    /// Sets what a lookup does when its chunk does not decode, instead of
    /// panicking (once; a second call changes nothing).
    pub fn on_undecodable(&self, f: Box<OnUndecodable>) {
        let _ = self.on_undecodable.set(f);
    }

    /// Decodes every chunk not decoded yet: the error of the first one that
    /// does not decode.
    pub fn decode_all(&self) -> Result<(), String> {
        (0..self.chunks.len()).try_for_each(|k| self.decoded(k).map(drop))
    }

    /// Whether every chunk is decoded.
    pub fn is_decoded(&self) -> bool {
        self.chunks.iter().all(|chunk| chunk.decoded.get().is_some())
    }

    /// (Decodes every chunk.)
    fn len(&self) -> usize {
        (0..self.chunks.len()).map(|k| self.chunk(k).len()).sum()
    }

    /// Every chunk holds at least one application (checked as it decodes).
    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn get(&self, id: &ApplicationId) -> Option<&Arc<Application>> {
        let k = self.chunks.partition_point(|chunk| chunk.first <= *id).checked_sub(1)?;
        let chunk = self.chunk(k);
        chunk.binary_search_by(|(stored, _)| stored.cmp(id)).ok().map(|at| &chunk[at].1)
    }

    fn range<R: RangeBounds<ApplicationId>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (&ApplicationId, &Arc<Application>)> + '_ {
        // The chunks that can hold ids in the range; its ends filtered.
        let from = match range.start_bound() {
            Bound::Included(id) | Bound::Excluded(id) => {
                self.chunks.partition_point(|chunk| chunk.first <= *id).saturating_sub(1)
            }
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(id) => self.chunks.partition_point(|chunk| chunk.first <= *id),
            Bound::Excluded(id) => self.chunks.partition_point(|chunk| chunk.first < *id),
            Bound::Unbounded => self.chunks.len(),
        };
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        (from..to.max(from))
            .flat_map(move |k| self.chunk(k).iter())
            .filter(move |(id, _)| bounds.contains(id))
            .map(|(id, application)| (id, application))
    }

    /// Chunk `k`, decoded. A chunk that does not decode is a broken
    /// checkpoint that its checksum did not catch (a bug of the version
    /// that wrote it): the state cannot be answered from, so this calls
    /// [`Stored::on_undecodable`]'s function (the ledger's moves the
    /// checkpoint aside and stops the process), or panics.
    fn chunk(&self, k: usize) -> &[(ApplicationId, Arc<Application>)] {
        self.decoded(k).unwrap_or_else(|problem| {
            if let Some(on_undecodable) = self.on_undecodable.get() {
                on_undecodable(&problem);
            }
            panic!("the checkpoint's applications do not decode: {problem}")
        })
    }

    fn decoded(&self, k: usize) -> Result<&[(ApplicationId, Arc<Application>)], String> {
        let chunk = &self.chunks[k];
        if let Some(decoded) = chunk.decoded.get() {
            return Ok(decoded);
        }
        let encoded = chunk.encoded.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(bytes) = encoded else {
            // Freed once decoded: another thread decoded it meanwhile.
            return Ok(chunk.decoded.get().expect("a chunk's bytes are freed once it is decoded"));
        };
        let applications = (self.decode)(&bytes).map_err(|problem| format!("chunk {k}: {problem}"))?;
        let next = self.chunks.get(k + 1).map(|next| &next.first);
        let in_order = applications.first().is_some_and(|(id, _)| *id == chunk.first)
            && applications.windows(2).all(|pair| pair[0].0 < pair[1].0)
            && next.is_none_or(|next| applications.last().is_some_and(|(id, _)| id < next));
        if !in_order {
            return Err(format!("chunk {k}: its applications are not in order, from {:?}", chunk.first));
        }
        // The first thread to finish sets it; a second's copy is dropped.
        let decoded = chunk.decoded.get_or_init(|| applications);
        *chunk.encoded.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(decoded)
    }
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decoded = self.chunks.iter().filter(|chunk| chunk.decoded.get().is_some()).count();
        write!(f, "Stored {{ chunks: {}, decoded: {decoded} }}", self.chunks.len())
    }
}

impl PartialEq for Applications {
    fn eq(&self, other: &Applications) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Applications {}

impl Index<&ApplicationId> for Applications {
    type Output = Application;

    fn index(&self, id: &ApplicationId) -> &Application {
        self.get(id).expect("no application with this id")
    }
}

impl<'a> IntoIterator for &'a Applications {
    type Item = (&'a ApplicationId, &'a Application);
    type IntoIter = Box<dyn Iterator<Item = (&'a ApplicationId, &'a Application)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl FromIterator<(ApplicationId, Application)> for Applications {
    fn from_iter<I: IntoIterator<Item = (ApplicationId, Application)>>(iter: I) -> Applications {
        let mut applications = Applications::new();
        for (id, application) in iter {
            applications.insert(id, application);
        }
        applications
    }
}

impl fmt::Debug for Applications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Applications {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // The length first (bincode writes it ahead of the entries).
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (id, application) in self.iter() {
            map.serialize_entry(id, application)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Applications {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Applications, D::Error> {
        struct MapVisitor;

        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Applications;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of applications by id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Applications, A::Error> {
                let mut applications = Applications::new();
                while let Some((id, application)) = map.next_entry::<ApplicationId, Application>()? {
                    // As a BTreeMap: a repeated key keeps the last value.
                    applications.insert(id, application);
                }
                Ok(applications)
            }
        }

        deserializer.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{decide, Context, FundState};
    use crate::workload::{self, ClientKind, WorkloadClient};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// An application of the workload, to be told apart by its title.
    fn template() -> Application {
        let mut state = FundState::default();
        let mut client = WorkloadClient::of_kind("apps", 0, ClientKind::Officer);
        for step in workload::setup().into_iter().chain((0..4).map(|_| client.next_step())) {
            for event in decide(&state, &step.command, &Context { actor: step.actor }).unwrap() {
                state.evolve(&event);
            }
        }
        let first = state.applications.values().next().expect("the workload submitted one").clone();
        first
    }

    fn id(n: u16) -> ApplicationId {
        ApplicationId::new(&format!("a{n:05}")).unwrap()
    }

    fn titled(template: &Application, title: String) -> Application {
        Application { title: title.into(), ..template.clone() }
    }

    /// Stored chunks of `ids` (sorted, distinct) cut before each place in
    /// `cuts`; a chunk's bytes are its number, decoded from a copy kept here.
    fn stored(template: &Application, ids: &[u16], cuts: &[usize]) -> Stored {
        let mut chunks: Vec<Vec<(ApplicationId, Arc<Application>)>> = vec![Vec::new()];
        for (place, &n) in ids.iter().enumerate() {
            if cuts.contains(&place) && !chunks.last().unwrap().is_empty() {
                chunks.push(Vec::new());
            }
            chunks.last_mut().unwrap().push((id(n), Arc::new(titled(template, format!("stored {n}")))));
        }
        chunks.retain(|chunk| !chunk.is_empty());
        let encoded = chunks.iter().enumerate().map(|(k, chunk)| (chunk[0].0.clone(), Box::from(k.to_be_bytes())));
        let encoded = encoded.collect();
        let decode = move |bytes: &[u8]| Ok(chunks[usize::from_be_bytes(bytes.try_into().unwrap())].clone());
        Stored::new(encoded, Box::new(decode)).unwrap()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16),
        Change(u16),
        /// A clone taken now must not see later changes.
        Snapshot,
        Range(u16, u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..200).prop_map(Op::Insert),
            3 => (0u16..200).prop_map(Op::Change),
            1 => Just(Op::Snapshot),
            1 => (0u16..200, 0u16..200).prop_map(|(a, b)| Op::Range(a, b)),
        ]
    }

    fn same(applications: &Applications, model: &BTreeMap<ApplicationId, Application>) -> Result<(), TestCaseError> {
        prop_assert_eq!(applications.len(), model.len());
        prop_assert!(applications.iter().eq(model.iter()));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Stored chunks with changes over them behave as a `BTreeMap`:
        /// lookups, changes, additions, ranges, length, order and clones.
        #[test]
        fn stored_applications_with_changes_behave_as_a_map(
            stored_ids in proptest::collection::btree_set(0u16..200, 0..60),
            cuts in proptest::collection::vec(0usize..60, 0..12),
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let template = template();
            let ids: Vec<u16> = stored_ids.into_iter().collect();
            let mut applications = Applications::from_stored(stored(&template, &ids, &cuts));
            let mut model: BTreeMap<ApplicationId, Application> =
                ids.iter().map(|&n| (id(n), titled(&template, format!("stored {n}")))).collect();
            let mut snapshots = Vec::new();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(n) => {
                        let new = titled(&template, format!("inserted {step}"));
                        let earlier = applications.insert(id(n), new.clone());
                        prop_assert_eq!(earlier, model.insert(id(n), new));
                    }
                    Op::Change(n) => {
                        let title = format!("changed {step}");
                        let changed = applications.get_mut(&id(n)).map(|a| a.title = title.as_str().into());
                        let expected = model.get_mut(&id(n)).map(|a| a.title = title.as_str().into());
                        prop_assert_eq!(changed, expected);
                    }
                    Op::Snapshot => snapshots.push((applications.clone(), model.clone())),
                    Op::Range(a, b) => {
                        let (from, to) = (id(a.min(b)), id(a.max(b)));
                        prop_assert!(applications.range(from.clone()..to.clone()).eq(model.range(from.clone()..to.clone())));
                        prop_assert!(applications.range(from.clone()..=to.clone()).eq(model.range(from.clone()..=to.clone())));
                        let after = (Bound::Excluded(from.clone()), Bound::Unbounded);
                        prop_assert!(applications.range(after).eq(model.range(after_of(&from))));
                    }
                }
                for n in [0, 100, 199] {
                    prop_assert_eq!(applications.get(&id(n)), model.get(&id(n)));
                    prop_assert_eq!(applications.contains_key(&id(n)), model.contains_key(&id(n)));
                }
            }
            same(&applications, &model)?;
            for (snapshot, model) in &snapshots {
                same(snapshot, model)?;
            }
            // Equal to the same map built without stored chunks, and the
            // same bytes.
            let plain: Applications = model.clone().into_iter().collect();
            prop_assert_eq!(&applications, &plain);
            prop_assert_eq!(crate::log::codec::encode(&applications), crate::log::codec::encode(&plain));
        }
    }

    fn after_of(id: &ApplicationId) -> (Bound<ApplicationId>, Bound<ApplicationId>) {
        (Bound::Excluded(id.clone()), Bound::Unbounded)
    }

    /// Ten chunks of ten applications (ids 0 to 99), counting decodes.
    fn counted(template: &Application) -> (Applications, Arc<std::sync::atomic::AtomicUsize>) {
        let chunks: Vec<Vec<(ApplicationId, Arc<Application>)>> = (0..10u16)
            .map(|k| (0..10).map(|n| (id(k * 10 + n), Arc::new(titled(template, format!("{}", k * 10 + n))))).collect())
            .collect();
        let decodes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = decodes.clone();
        let encoded = (0..10u16).map(|k| (id(k * 10), Box::from(usize::from(k).to_be_bytes()))).collect();
        let decode = move |bytes: &[u8]| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(chunks[usize::from_be_bytes(bytes.try_into().unwrap())].clone())
        };
        (Applications::from_stored(Stored::new(encoded, Box::new(decode)).unwrap()), decodes)
    }

    #[test]
    fn stored_chunks_are_decoded_only_when_used_and_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let template = template();
        let (mut applications, decodes) = counted(&template);
        assert!(!applications.is_empty());
        assert_eq!(decodes.load(SeqCst), 0, "nothing decoded before use");
        assert_eq!(applications.get(&id(42)).unwrap().title, "42");
        assert_eq!(applications.get(&id(47)).unwrap().title, "47");
        assert_eq!(decodes.load(SeqCst), 1, "one chunk, once");
        let in_range: Vec<_> = applications.range(id(55)..=id(63)).map(|(id, _)| id.clone()).collect();
        assert_eq!(in_range, (55..=63).map(id).collect::<Vec<_>>());
        assert_eq!(decodes.load(SeqCst), 3, "the chunks of 50 and 60 too");
        applications.get_mut(&id(5)).unwrap().title = "changed".into();
        applications.insert(id(100), titled(&template, "new".into()));
        assert_eq!(decodes.load(SeqCst), 5, "the chunks of 0 and 90 (where 100 would be)");
        assert_eq!(applications.len(), 101);
        assert_eq!(decodes.load(SeqCst), 10);
        assert_eq!(applications.get(&id(5)).unwrap().title, "changed");
        assert!(applications.stored().unwrap().is_decoded());
    }

    #[test]
    fn threads_decoding_at_once_all_read_the_same_applications() {
        let template = template();
        let (applications, decodes) = counted(&template);
        let stored = applications.stored().unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| stored.decode_all().unwrap());
            for offset in 0..4u16 {
                let applications = &applications;
                scope.spawn(move || {
                    for n in (0..100u16).map(|n| (n * 7 + offset * 13) % 100) {
                        assert_eq!(applications.get(&id(n)).unwrap().title, format!("{n}"));
                    }
                    assert_eq!(applications.len(), 100);
                });
            }
        });
        assert!(stored.is_decoded());
        // Two threads may decode a chunk at the same time; never more than
        // the threads there are.
        let decodes = decodes.load(std::sync::atomic::Ordering::SeqCst);
        assert!((10..=50).contains(&decodes), "{decodes}");
    }

    #[test]
    fn a_chunk_that_does_not_decode_or_is_out_of_order_is_an_error_and_stays_encoded() {
        let template = template();
        let chunk = vec![(id(5), Arc::new(template.clone())), (id(9), Arc::new(template))];
        let decode = move |bytes: &[u8]| match bytes {
            [0] => Ok(chunk.clone()),
            _ => Err("broken".to_owned()),
        };
        // Chunk 0 holds ids 5 and 9, and the next chunk begins at 7.
        let stored = Stored::new(vec![(id(5), Box::from([0u8])), (id(7), Box::from([1u8]))], Box::new(decode)).unwrap();
        assert!(stored.decode_all().unwrap_err().contains("not in order"));
        assert!(!stored.is_decoded());
        let broken = Stored::new(vec![(id(5), Box::from([1u8]))], Box::new(|_: &[u8]| Err("broken".to_owned())));
        assert_eq!(broken.unwrap().decode_all(), Err("chunk 0: broken".to_owned()));
        let unordered =
            Stored::new(vec![(id(7), Box::from([0u8])), (id(5), Box::from([0u8]))], Box::new(|_: &[u8]| Ok(vec![])));
        assert!(unordered.is_err());
    }
}
