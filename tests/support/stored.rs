//! The test-only path into a log's sled tree, one event record at a time,
//! whatever the stored format: in v2 and v3 each record is a key of its
//! own; in v4 a key holds a chunk of consecutive records, which these
//! helpers cut up and put back together (as a forger with the disk in
//! hand would), keeping every other record of the chunk as it was.

use fundledger::log::{frame_record, split_chunk, STORE_FORMAT_V4};

fn event_key(seq: u64) -> Vec<u8> {
    let mut key = vec![b'e'];
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn chunked(db: &sled::Db) -> bool {
    db.get(b"m/format").unwrap().is_some_and(|marker| marker.as_ref() == STORE_FORMAT_V4)
}

/// The chunk holding event `seq` (v4): its first event, and its records.
fn chunk_of(db: &sled::Db, seq: u64) -> (u64, Vec<Vec<u8>>) {
    let (key, value) = db.range(event_key(0)..=event_key(seq)).next_back().unwrap().unwrap();
    let first = u64::from_be_bytes(key[1..9].try_into().unwrap());
    let records = split_chunk(&value).map(|frame| frame.unwrap()).map(|(at, len)| value[at..at + len].to_vec());
    (first, records.collect())
}

/// Stores `records` as the chunk of events from `first` on (nothing for none).
fn put_chunk(db: &sled::Db, first: u64, records: &[Vec<u8>]) {
    if records.is_empty() {
        return;
    }
    let mut bytes = Vec::new();
    for record in records {
        frame_record(&mut bytes, record);
    }
    db.insert(event_key(first), bytes).unwrap();
}

/// Where event `seq` is in its chunk (v4).
fn place(db: &sled::Db, seq: u64) -> (u64, Vec<Vec<u8>>, usize) {
    let (first, records) = chunk_of(db, seq);
    let at = usize::try_from(seq - first).unwrap();
    assert!(at < records.len(), "event {seq} is not stored");
    (first, records, at)
}

/// The stored record of event `seq`.
pub fn record(db: &sled::Db, seq: u64) -> Vec<u8> {
    if !chunked(db) {
        return db.get(event_key(seq)).unwrap().unwrap().to_vec();
    }
    let (_, mut records, at) = place(db, seq);
    records.swap_remove(at)
}

/// Stores `bytes` as the record of event `seq`, in its place.
pub fn put(db: &sled::Db, seq: u64, bytes: Vec<u8>) {
    if !chunked(db) {
        db.insert(event_key(seq), bytes).unwrap();
        return;
    }
    let (first, mut records, at) = place(db, seq);
    records[at] = bytes;
    put_chunk(db, first, &records);
}

/// Removes event `seq`'s record: the events after it keep their places
/// (in v4, its chunk is cut in two around it).
pub fn remove(db: &sled::Db, seq: u64) {
    if !chunked(db) {
        db.remove(event_key(seq)).unwrap();
        return;
    }
    let (first, records, at) = place(db, seq);
    db.remove(event_key(first)).unwrap();
    put_chunk(db, first, &records[..at]);
    put_chunk(db, seq + 1, &records[at + 1..]);
}
