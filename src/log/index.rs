//! The log's two indexes in stored format v3, held in memory: the events of
//! each stream, and the first event of the command each request id names.
//!
//! Format v2 kept both in sled, as two more keys per event (`s ‖ stream ‖
//! version` and `r ‖ request id`), scattered over the key space: sled's
//! costs are per key and per tree node, and those two keys made the writer
//! about half as fast, the disk three times the record and sled's open three
//! times as long (`docs/FORMAT-V3.md`). In v3 each event is one sled key,
//! and the indexes are projections of the log: built from the records'
//! envelopes (stream, request id), updated after each durable append, stored
//! beside the projections' checkpoint at the same head
//! (`CheckpointFile::store_index`), loaded
//! at start and caught up from the log; missing, damaged or not matching the
//! log, they are rebuilt by a scan of it. They know no business rules.
//!
//! As loaded they are flat sorted arrays ([`Base`]); what is added after
//! the load is in [`PersistentMap`]s, so that a snapshot for the checkpoint
//! thread is an O(1) clone and the writer goes on meanwhile.
//!
//! A request id is indexed by a 64-bit digest (the first bytes of its
//! SHA-256), not its text: 16 bytes per command, and 1 to 5 more in the
//! filter in front of it ([`RequestFilter`]). Two ids may share a digest;
//! a lookup reads the record at each candidate and compares the id, so a
//! collision costs a read, never a wrong answer. Request ids are chosen by
//! clients, but a second id with a given digest takes about 2^64 tries, and
//! a pair of colliding ids about 2^32, so nobody can pile many commands on
//! one digest.

use super::codec::{Hash, HASH_BYTES};
use crate::merge::merge_sorted;
use crate::persistent_map::PersistentMap;
use compact_str::CompactString;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The digest a request id is indexed by.
pub fn request_digest(request_id: &str) -> u64 {
    let digest = Sha256::digest(request_id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

/// The indexes of a log's events 1 to `head_seq`: those loaded from
/// [`LOG_INDEX_FILE`](super::LOG_INDEX_FILE) at start, as flat sorted
/// arrays ([`Base`]: a handful of allocations, whatever the log's size),
/// and what was added since, in [`PersistentMap`]s (a stream changed since
/// the load is there with all its seqs).
#[derive(Clone, Debug, Default)]
pub struct LogIndex {
    base: Arc<Base>,
    /// `(request digest, first seq)` of every command since the base.
    requests: PersistentMap<(u64, u64), ()>,
    /// Every stream with an event since the base: its events' sequence
    /// numbers, in stream order (a stream's version is their count).
    /// Keyed inline ([`CompactString`] holds up to 24 bytes in place): a
    /// lookup compares names in the map's own nodes instead of following a
    /// pointer to each name on its way down.
    streams: PersistentMap<CompactString, Vec<u64>>,
    /// Streams of the base that are not among `streams`.
    base_streams_unchanged: usize,
    head_seq: u64,
    head_hash: Hash,
    /// Every command's digest, base and since, as a filter: a lookup of a
    /// new id, almost every lookup, ends at one bit.
    filter: RequestFilter,
    /// A larger filter being filled, a few digests per command, once the
    /// commands outgrew `filter`: it takes `filter`'s place when full.
    growing: Option<Growing>,
}

/// A Bloom filter with one bit per digest (the digest is the first bytes of
/// a SHA-256, as good as a random hash): a clear bit says no command has
/// the digest; a set one says perhaps. It saves the writer the descent of
/// the requests' map for each new id, a walk of several cache misses that
/// a profile of the batch call put at a tenth of the writer thread's
/// samples (`docs/BENCHMARKS.md`, nineteenth session). It is built for
/// at least 16 bits per command (rounded up to a power of two); once the
/// commands pass twice what it was built for, one four times larger is
/// filled to replace it (see [`Growing`]), swapped in at about 4/3 of
/// that. So the one in use holds 6 to 32 bits per command and lets 3–15%
/// of new ids through to the walk; while the next is being filled, the two
/// take up to 5 bytes per command (32 MiB at 10 M commands once loaded, 40
/// MiB in a process that grew there). The larger one is filled alongside,
/// not in one pass on the writer thread (only its zeroed memory is
/// allocated there): walking the index at 8 M commands took over a
/// second.
/// A digest's bit is its top bits, so that digests in order (the index's
/// order) set bits in order: the build from a loaded index (at start, on
/// the index's own loading thread) is one sequential pass, 64 ms for 8.4
/// M commands. Its bits are atomic so that clones of the index (the
/// checkpoint thread's snapshot, the audit's copy) share it (`Arc`)
/// instead of copying it: bits set after a clone only make the clone's
/// filter say "perhaps" more often, never "no" to a command it holds.
#[derive(Clone)]
struct RequestFilter {
    /// A `Vec` behind the `Arc`: collected straight into an `Arc<[_]>`,
    /// the bits are built and then copied. Measured at a start with 10 M
    /// events, the resident memory at serving was 40–100 MiB over a build
    /// without the filter that way, 19–27 MiB over it this way (medians of
    /// five starts, alternated).
    bits: Arc<Vec<AtomicU64>>,
    /// The bit of a digest is `digest >> shift` (`64 - log2(bits)`).
    shift: u32,
    /// Commands it was sized for: past twice that, a larger one is filled
    /// to replace it ([`Growing`]).
    capacity: usize,
}

impl RequestFilter {
    /// Bits per command when built.
    const BITS_PER_COMMAND: usize = 16;
    /// The least size, in bits (8 KiB).
    const BITS_MIN: usize = 1 << 16;

    fn with_capacity(commands: usize) -> RequestFilter {
        let bits = commands.saturating_mul(Self::BITS_PER_COMMAND).max(Self::BITS_MIN).next_power_of_two();
        RequestFilter {
            bits: Arc::new((0..bits / 64).map(|_| AtomicU64::new(0)).collect()),
            shift: 64 - bits.trailing_zeros(),
            capacity: bits / Self::BITS_PER_COMMAND,
        }
    }

    fn word_and_bit(&self, digest: u64) -> (usize, u64) {
        let bit = digest >> self.shift;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn insert(&self, digest: u64) {
        let (word, bit) = self.word_and_bit(digest);
        self.bits[word].fetch_or(bit, Ordering::Relaxed);
    }

    fn may_contain(&self, digest: u64) -> bool {
        let (word, bit) = self.word_and_bit(digest);
        self.bits[word].load(Ordering::Relaxed) & bit != 0
    }

    /// A filter of every digest in `digests` (`commands` of them), sized
    /// for them.
    fn of(commands: usize, digests: impl Iterator<Item = u64>) -> RequestFilter {
        let filter = RequestFilter::with_capacity(commands);
        digests.for_each(|digest| filter.insert(digest));
        filter
    }
}

/// A filter for twice the commands or more, filled from the index a slice
/// at a time ([`Growing::STEP`] digests every [`Growing::EVERY`] commands,
/// four per command on average), while every new digest goes into both
/// filters. It walks the base, which never changes, then the map of
/// commands since by position: an insert before its position moves the
/// entries after it one place on, so an entry may be visited twice but
/// never skipped. Started when the index held `n` commands, it has walked
/// all of them and those added since once the index holds about `4n / 3`;
/// the next replacement is due only past `2n`.
#[derive(Clone, Debug)]
struct Growing {
    next: RequestFilter,
    /// Entries of the base, then of the map since, already in `next`.
    base_done: usize,
    since_done: usize,
}

impl Growing {
    const STEP: usize = 128;
    const EVERY: usize = 32;
}

impl Default for RequestFilter {
    fn default() -> RequestFilter {
        RequestFilter::with_capacity(0)
    }
}

impl std::fmt::Debug for RequestFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestFilter({} bits)", self.bits.len() * 64)
    }
}

/// An index as loaded: every array sorted, each in one allocation.
#[derive(Debug, Default)]
struct Base {
    /// `(request digest, first seq)`, in order.
    requests: Vec<(u64, u64)>,
    /// The streams' names, one after the other, in name order.
    names: String,
    /// Where each stream's name ends in `names`.
    name_ends: Vec<usize>,
    /// Where each stream's seqs end in `seqs`.
    seq_ends: Vec<usize>,
    seqs: Vec<u64>,
}

impl Base {
    fn name(&self, at: usize) -> &str {
        let start = if at == 0 { 0 } else { self.name_ends[at - 1] };
        &self.names[start..self.name_ends[at]]
    }

    fn seqs(&self, at: usize) -> &[u64] {
        let start = if at == 0 { 0 } else { self.seq_ends[at - 1] };
        &self.seqs[start..self.seq_ends[at]]
    }

    /// A stream's seqs, if the base has it.
    fn stream(&self, stream: &str) -> Option<&[u64]> {
        self.find(stream).map(|at| self.seqs(at))
    }

    /// Where `stream` is among the names (a binary search), if it is.
    fn find(&self, stream: &str) -> Option<usize> {
        let (mut low, mut high) = (0, self.name_ends.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.name(middle).cmp(stream) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(middle),
            }
        }
        None
    }
}

impl LogIndex {
    /// The last event indexed (0 for none).
    pub fn head_seq(&self) -> u64 {
        self.head_seq
    }

    /// The hash of event [`head_seq`](Self::head_seq).
    pub fn head_hash(&self) -> Hash {
        self.head_hash
    }

    /// How many commands and streams it holds.
    pub fn commands(&self) -> usize {
        self.base.requests.len() + self.requests.len()
    }

    pub fn streams(&self) -> usize {
        self.base_streams_unchanged + self.streams.len()
    }

    /// A stream's seqs.
    fn stream(&self, stream: &str) -> Option<&[u64]> {
        match self.streams.get(stream) {
            Some(seqs) => Some(seqs),
            None => self.base.stream(stream),
        }
    }

    /// Indexes event `seq` of `stream`, which has hash `hash`; `first`
    /// when it is the first event of its command, recorded under
    /// `request_id`. Events come in order, each once.
    pub(super) fn add(&mut self, seq: u64, hash: Hash, stream: &str, request_id: &str, first: bool) {
        debug_assert_eq!(seq, self.head_seq + 1, "events are indexed in order");
        if first {
            let digest = request_digest(request_id);
            self.requests.insert((digest, seq), ());
            self.filter.insert(digest);
            if let Some(growing) = &self.growing {
                growing.next.insert(digest);
            }
            self.grow_filter();
        }
        match self.streams.get_mut(stream) {
            Some(seqs) => seqs.push(seq),
            None => {
                let mut seqs = Vec::new();
                if let Some(earlier) = self.base.stream(stream) {
                    seqs.extend_from_slice(earlier);
                    self.base_streams_unchanged -= 1;
                }
                seqs.push(seq);
                self.streams.insert(stream.into(), seqs);
            }
        }
        self.head_seq = seq;
        self.head_hash = hash;
    }

    /// The first seqs of the commands whose request id has the digest of
    /// `request_id`: the command recorded under it, if any, is one of them.
    pub fn request_candidates(&self, request_id: &str) -> Vec<u64> {
        let digest = request_digest(request_id);
        if !self.filter.may_contain(digest) {
            return Vec::new();
        }
        let base = &self.base.requests;
        let from = base.partition_point(|&(d, _)| d < digest);
        let loaded = base[from..].iter().take_while(|&&(d, _)| d == digest).map(|&(_, seq)| seq);
        // Most digests the filter lets through are not in the map either:
        // one walk down it says so, before a range walks it twice to place
        // its ends.
        let any_since = self.requests.first_key_from(&(digest, 0)).is_some_and(|&(d, _)| d == digest);
        let since = any_since
            .then(|| self.requests.range((digest, 0)..=(digest, u64::MAX)).map(|((_, seq), ())| *seq))
            .into_iter()
            .flatten();
        loaded.chain(since).collect()
    }

    /// Starts a larger request filter once the commands pass twice what the
    /// current one was built for, and fills it a slice at a time
    /// ([`Growing`]).
    fn grow_filter(&mut self) {
        let commands = self.commands();
        let growing = match &mut self.growing {
            Some(growing) => growing,
            None if commands > self.filter.capacity * 2 => self.growing.insert(Growing {
                next: RequestFilter::with_capacity(commands),
                base_done: 0,
                since_done: 0,
            }),
            None => return,
        };
        if commands % Growing::EVERY != 0 {
            return;
        }
        let base = &self.base.requests[growing.base_done.min(self.base.requests.len())..];
        let from_base = base.len().min(Growing::STEP);
        base[..from_base].iter().for_each(|&(digest, _)| growing.next.insert(digest));
        growing.base_done += from_base;
        let from_since = Growing::STEP - from_base;
        let mut walked = 0;
        for ((digest, _), ()) in self.requests.iter_from(growing.since_done).take(from_since) {
            growing.next.insert(*digest);
            walked += 1;
        }
        growing.since_done += walked;
        if growing.base_done >= self.base.requests.len() && growing.since_done >= self.requests.len() {
            let full = self.growing.take().expect("growing");
            self.filter = full.next;
        }
    }

    /// The current version of a stream (0 for one without events).
    pub(super) fn stream_version(&self, stream: &str) -> u64 {
        self.stream(stream).map_or(0, |seqs| seqs.len() as u64)
    }

    /// Up to `limit` entries `(stream version, seq)` of a stream, from
    /// `from_version` on.
    pub fn stream_entries(&self, stream: &str, from_version: u64, limit: usize) -> Vec<(u64, u64)> {
        let Some(seqs) = self.stream(stream) else { return Vec::new() };
        let skip = usize::try_from(from_version.max(1) - 1).unwrap_or(usize::MAX);
        seqs.iter().enumerate().skip(skip).take(limit).map(|(at, &seq)| (at as u64 + 1, seq)).collect()
    }

    /// Every command in order, the base's and those since merged.
    fn all_requests(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        // A command's first seq is its own: no key is in both.
        let since = self.requests.iter().map(|(key, ())| *key);
        merge_sorted(self.base.requests.iter().copied(), since, |a, b| a.cmp(b))
    }

    /// Every stream in name order with its seqs: the base's, unless it
    /// changed since.
    fn all_streams(&self) -> impl Iterator<Item = (&str, &[u64])> + '_ {
        let base = &self.base;
        let loaded = (0..base.name_ends.len()).map(|at| (base.name(at), base.seqs(at)));
        let since = self.streams.iter().map(|(name, seqs)| (name.as_str(), seqs.as_slice()));
        merge_sorted(loaded, since, |a, b| a.0.cmp(b.0))
    }

    /// The index's bytes, as `CheckpointFile::store_index` stores them
    /// (layout at [`MAGIC`]).
    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let names: usize = self.all_streams().map(|(name, _)| name.len()).sum();
        let capacity =
            HEADER_BYTES + 8 + self.commands() * 16 + 8 + self.streams() * 12 + names + self.head_seq as usize * 8 + 4;
        let mut bytes = Vec::with_capacity(capacity);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.head_seq.to_le_bytes());
        bytes.extend_from_slice(&self.head_hash);
        bytes.extend_from_slice(&(self.commands() as u64).to_le_bytes());
        for (digest, seq) in self.all_requests() {
            bytes.extend_from_slice(&digest.to_le_bytes());
            bytes.extend_from_slice(&seq.to_le_bytes());
        }
        bytes.extend_from_slice(&(self.streams() as u64).to_le_bytes());
        for (name, seqs) in self.all_streams() {
            bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(&(seqs.len() as u64).to_le_bytes());
            for seq in seqs {
                bytes.extend_from_slice(&seq.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// An index from [`to_bytes`](Self::to_bytes)' bytes, checked: its
    /// checksum, its form, keys in order, every stream's seqs increasing
    /// and at most the head, every event 1 to the head in exactly one
    /// stream. Whether its head is in the log is the caller's to check.
    /// It becomes the base: flat arrays, filled in one pass.
    pub(super) fn from_bytes(bytes: &[u8]) -> Result<LogIndex, String> {
        let Some(body_len) = bytes.len().checked_sub(4).filter(|&len| len >= HEADER_BYTES) else {
            return Err(format!("{} bytes, shorter than its header", bytes.len()));
        };
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err("it does not start with the index file's magic".into());
        }
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("its checksum does not match its contents".into());
        }
        let mut input = Input { bytes: body, at: MAGIC.len() };
        let head_seq = input.u64()?;
        let head_hash: Hash = input.take(HASH_BYTES)?.try_into().expect("sized");
        let requests = input.u64()?;
        if requests > (input.left() / 16) as u64 {
            return Err(format!("it claims {requests} commands, more than its bytes hold"));
        }
        let mut base = Base { requests: Vec::with_capacity(requests as usize), ..Base::default() };
        for _ in 0..requests {
            let key = (input.u64()?, input.u64()?);
            if base.requests.last().is_some_and(|&last| last >= key) || key.1 == 0 || key.1 > head_seq {
                return Err(format!("command entry {key:?} is out of order or beyond the head"));
            }
            base.requests.push(key);
        }
        let streams = input.u64()?;
        // Each stream takes at least 4 + 8 + 8 bytes.
        if streams > (input.left() / 20) as u64 {
            return Err(format!("it claims {streams} streams, more than its bytes hold"));
        }
        // Every event is in exactly one stream (8 bytes each): one bit per
        // event, allocated only for as many events as the bytes can hold.
        if head_seq > (input.left() / 8) as u64 {
            return Err(format!("its head is event {head_seq}, more events than its bytes hold"));
        }
        let mut seen = vec![0u64; usize::try_from(head_seq / 64 + 1).map_err(|_| "its head is too far")?];
        base.name_ends.reserve_exact(streams as usize);
        base.seq_ends.reserve_exact(streams as usize);
        base.seqs.reserve_exact(head_seq.min((input.left() / 8) as u64) as usize);
        for at in 0..streams as usize {
            let name_len = input.u32()? as usize;
            let name =
                std::str::from_utf8(input.take(name_len)?).map_err(|_| "a stream's name is not text".to_owned())?;
            if at > 0 && base.name(at - 1) >= name {
                return Err(format!("stream {name:?} is out of order or repeated"));
            }
            base.names.push_str(name);
            base.name_ends.push(base.names.len());
            let count = input.u64()?;
            if count == 0 || count > (input.left() / 8) as u64 {
                return Err(format!("stream {name:?} claims {count} events"));
            }
            let mut last = 0;
            for _ in 0..count {
                let seq = input.u64()?;
                if seq <= last || seq > head_seq {
                    return Err(format!("stream {name:?}'s events are out of order or beyond the head"));
                }
                let (word, bit) = ((seq / 64) as usize, 1 << (seq % 64));
                if seen[word] & bit != 0 {
                    return Err(format!("event {seq} is in two streams"));
                }
                seen[word] |= bit;
                base.seqs.push(seq);
                last = seq;
            }
            base.seq_ends.push(base.seqs.len());
        }
        if input.left() != 0 {
            return Err(format!("{} bytes after its streams", input.left()));
        }
        let events = base.seqs.len() as u64;
        if events != head_seq {
            return Err(format!("its streams hold {events} events, but its head is event {head_seq}"));
        }
        Ok(LogIndex {
            base_streams_unchanged: base.name_ends.len(),
            filter: RequestFilter::of(base.requests.len(), base.requests.iter().map(|&(digest, _)| digest)),
            base: Arc::new(base),
            head_seq,
            head_hash,
            ..LogIndex::default()
        })
    }
}

/// The file's first bytes; the version is part of it. The layout
/// (`log.index`), integers little-endian:
///
/// ```text
/// 16   magic "fundledger-idx1\n"
///  8   head seq: the last event indexed
/// 32   head hash: that event's hash
///  8   commands, then per command, by (digest, first seq):
///        8  the request id's digest (first 8 bytes of its SHA-256, big-endian)
///        8  the command's first seq
///  8   streams, then per stream, by name:
///        4  name length, then the name (UTF-8)
///        8  events, then each event's seq, in stream order (8 each)
///  4   CRC-32 of every byte before it
/// ```
const MAGIC: &[u8; 16] = b"fundledger-idx1\n";
const HEADER_BYTES: usize = MAGIC.len() + 8 + HASH_BYTES;

/// Reads the file's little-endian fields in order.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!("it ends inside an entry, after {} bytes", self.bytes.len()));
        }
        self.at += n;
        Ok(&self.bytes[self.at - n..self.at])
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("sized")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("sized")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds `events` (stream, request id, whether it begins its command)
    /// from `first_seq` on, event `n` with hash `[n; 32]`.
    fn add_events(index: &mut LogIndex, first_seq: u64, events: &[(&str, &str, bool)]) {
        for (seq, &(stream, request, first)) in (first_seq..).zip(events) {
            index.add(seq, [seq as u8; 32], stream, request, first);
        }
    }

    /// Events 1 to 7: commands of one or two events on three streams.
    fn sample() -> LogIndex {
        let mut index = LogIndex::default();
        let events = [
            ("fund", "open", true),
            ("partner/a", "admit-a", true),
            ("partner/a", "admit-a", false),
            ("application/x", "submit-x", true),
            ("partner/a", "receipt-1", true),
            ("application/x", "award-x", true),
            ("fund", "award-x", false),
        ];
        add_events(&mut index, 1, &events);
        index
    }

    #[test]
    fn it_answers_streams_and_requests() {
        let index = sample();
        assert_eq!((index.head_seq(), index.head_hash()), (7, [7; 32]));
        assert_eq!((index.commands(), index.streams()), (5, 3));
        assert_eq!(index.stream_version("partner/a"), 3);
        assert_eq!(index.stream_version("partner/b"), 0);
        assert_eq!(index.stream_entries("partner/a", 1, 10), [(1, 2), (2, 3), (3, 5)]);
        assert_eq!(index.stream_entries("partner/a", 2, 1), [(2, 3)]);
        assert_eq!(index.stream_entries("partner/a", 0, 10).len(), 3, "version 0 reads from the first");
        assert!(index.stream_entries("partner/a", 4, 10).is_empty());
        assert!(index.stream_entries("nobody", 1, 10).is_empty());
        assert_eq!(index.request_candidates("admit-a"), [2]);
        assert_eq!(index.request_candidates("award-x"), [6]);
        assert!(index.request_candidates("never").is_empty());
    }

    /// Every id in `ids` (recorded at seqs from 1) is found at its seq.
    fn all_found(index: &LogIndex, ids: &[String], stride: usize) {
        for (seq, id) in (1..).zip(ids).step_by(stride) {
            assert_eq!(index.request_candidates(id), [seq], "{id}, {:?}", index.filter);
        }
    }

    /// Of 10,000 ids never recorded, how many the filter lets through; it
    /// must find none of them.
    fn new_ids_let_through(index: &LogIndex) -> usize {
        let new_ids: Vec<String> = (0..10_000).map(|n| format!("new-{n}")).collect();
        assert!(new_ids.iter().all(|id| index.request_candidates(id).is_empty()));
        new_ids.iter().filter(|id| index.filter.may_contain(request_digest(id))).count()
    }

    #[test]
    fn the_request_filter_grows_and_never_hides_a_command() {
        let ids: Vec<String> = (0..120_000).map(|n| format!("req-{n}")).collect();
        let mut index = LogIndex::default();
        let mut replaced = 0;
        for (seq, id) in (1..).zip(&ids[..20_000]) {
            let capacity = index.filter.capacity;
            index.add(seq, [0; 32], "s", id, true);
            replaced += usize::from(index.filter.capacity != capacity);
            if seq % 6_000 == 0 {
                // Also while a larger filter is being filled.
                all_found(&index, &ids[..seq as usize], 7);
            }
        }
        // Built for 4,096 commands, replaced past 8,192.
        assert!(replaced >= 1 && index.filter.capacity >= 8_192, "{replaced} replacements, {:?}", index.filter);
        all_found(&index, &ids[..20_000], 1);
        let through = new_ids_let_through(&index);
        assert!(through < 1_000, "{through} of 10,000 new ids let through by {:?}", index.filter);

        // Loaded, the 20,000 are the base; 100,000 more outgrow the filter
        // it was loaded with (built for 32,768), and the larger one must
        // hold the base's digests too.
        let mut loaded = LogIndex::from_bytes(&index.to_bytes()).unwrap();
        let loaded_capacity = loaded.filter.capacity;
        all_found(&loaded, &ids[..20_000], 1);
        for (seq, id) in (1..).zip(&ids).skip(20_000) {
            loaded.add(seq, [0; 32], "s", id, true);
            if seq % 25_000 == 0 {
                all_found(&loaded, &ids[..seq as usize], 7);
            }
        }
        assert!(loaded.growing.is_none(), "filled by now: {:?}", loaded.growing);
        assert!(loaded.filter.capacity > loaded_capacity, "{:?}", loaded.filter);
        all_found(&loaded, &ids, 1);
        let through = new_ids_let_through(&loaded);
        assert!(through < 1_000, "{through} of 10,000 new ids let through by {:?}", loaded.filter);
    }

    #[test]
    fn ids_with_one_digest_are_all_candidates() {
        let mut index = sample();
        // Other commands whose ids have the digest of "open" (forged here:
        // finding such an id takes about 2^64 tries), in the loaded base
        // and since. Put straight into the map, past the filter: it
        // already lets the digest of "open" through.
        index.requests.insert((request_digest("open"), 6), ());
        let mut loaded = LogIndex::from_bytes(&index.to_bytes()).unwrap();
        loaded.add(8, [8; 32], "fund", "open", true);
        assert_eq!(index.request_candidates("open"), [1, 6]);
        assert_eq!(loaded.request_candidates("open"), [1, 6, 8]);
    }

    /// What an index answers, for comparing two: candidates per request
    /// id, entries per stream, head, commands, streams.
    type Answers = (Vec<Vec<u64>>, Vec<Vec<(u64, u64)>>, u64, usize, usize);

    fn answers(index: &LogIndex) -> Answers {
        let requests = ["open", "admit-a", "submit-x", "receipt-1", "award-x", "later", "never"];
        let streams = ["fund", "partner/a", "partner/b", "application/x", "application/y", "nobody"];
        (
            requests.iter().map(|id| index.request_candidates(id)).collect(),
            streams.iter().map(|stream| index.stream_entries(stream, 1, 100)).collect(),
            index.head_seq(),
            index.commands(),
            index.streams(),
        )
    }

    #[test]
    fn its_bytes_round_trip() {
        for index in [LogIndex::default(), sample()] {
            let loaded = LogIndex::from_bytes(&index.to_bytes()).unwrap();
            assert_eq!(loaded.to_bytes(), index.to_bytes());
            assert_eq!(answers(&loaded), answers(&index));
        }
    }

    /// A loaded index goes on as the one it was stored from: streams of
    /// the base, new streams, new commands; and stores the same bytes.
    #[test]
    fn a_loaded_index_goes_on_as_the_one_it_was_stored_from() {
        let mut built = sample();
        let mut loaded = LogIndex::from_bytes(&built.to_bytes()).unwrap();
        let more = [
            ("partner/a", "receipt-2", true),
            ("application/y", "submit-y", true),
            ("partner/b", "later", true),
            ("partner/a", "later", false),
            ("application/x", "pay-x", true),
        ];
        for index in [&mut built, &mut loaded] {
            add_events(index, 8, &more);
        }
        assert_eq!(answers(&loaded), answers(&built));
        assert_eq!(loaded.stream_entries("partner/a", 1, 10), [(1, 2), (2, 3), (3, 5), (4, 8), (5, 11)]);
        assert_eq!((loaded.commands(), loaded.streams()), (9, 5));
        assert_eq!(loaded.to_bytes(), built.to_bytes());
        // Stored and loaded again, twice over.
        let again = LogIndex::from_bytes(&loaded.to_bytes()).unwrap();
        assert_eq!(answers(&again), answers(&built));
    }

    #[test]
    fn a_damaged_or_cut_file_is_refused() {
        let bytes = sample().to_bytes();
        for cut in 0..bytes.len() {
            assert!(LogIndex::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(LogIndex::from_bytes(&damaged).is_err(), "byte {at} changed");
        }
    }

    /// Bytes that are whole (their checksum holds) but say what no log can.
    #[test]
    fn a_whole_file_that_contradicts_itself_is_refused() {
        let resealed = |mut bytes: Vec<u8>| {
            let body = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_le_bytes());
            LogIndex::from_bytes(&bytes).unwrap_err()
        };
        let bytes = sample().to_bytes();
        let requests_at = HEADER_BYTES + 8;
        // The first command's first seq beyond the head.
        let mut beyond = bytes.clone();
        beyond[requests_at + 8..requests_at + 16].copy_from_slice(&99u64.to_le_bytes());
        assert!(resealed(beyond).contains("beyond the head"));
        // The head moved back: the streams hold more events than it.
        let mut head = bytes.clone();
        head[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&8u64.to_le_bytes());
        assert!(resealed(head).contains("hold 7 events, but its head is event 8"));
        // Commands out of order.
        let mut swapped = bytes.clone();
        let (first, second) = (requests_at..requests_at + 16, requests_at + 16..requests_at + 32);
        let a = swapped[first.clone()].to_vec();
        let b = swapped[second.clone()].to_vec();
        swapped[first].copy_from_slice(&b);
        swapped[second].copy_from_slice(&a);
        assert!(resealed(swapped).contains("out of order"));
        // Event 7 (the fund's second) said to be partner/a's third too, in
        // place of event 5: every stream still counts and orders its own.
        let mut twice = sample().to_bytes();
        let five = 5u64.to_le_bytes();
        let at = twice.windows(8).rposition(|w| w == five).unwrap();
        twice[at..at + 8].copy_from_slice(&7u64.to_le_bytes());
        assert!(resealed(twice).contains("event 7 is in two streams"));
    }
}
