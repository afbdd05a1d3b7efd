//! The fuzz corpus, replayed in `cargo test`: every input committed under
//! `fuzz/corpus/<target>/` (the seeds and what the fuzzers found
//! interesting) and `fuzz/regressions/<target>/` (every input that ever
//! crashed a target, kept after the fix) goes through the same function the
//! fuzz target runs (`tests/fuzzing/`). So the corpus cannot rot: a change
//! that breaks on an input the fuzzers once found fails here, on the stable
//! toolchain, without cargo-fuzz.

mod fuzzing;

use std::path::Path;

#[test]
fn every_committed_fuzz_input_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for target in fuzzing::TARGETS {
        let mut inputs = 0;
        for kind in ["corpus", "regressions"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                inputs += 1;
                if std::panic::catch_unwind(|| fuzzing::run(target, &data)).is_err() {
                    failures.push(path.display().to_string());
                }
            }
        }
        assert!(inputs > 0, "no committed corpus for fuzz target {target} under {}", root.display());
    }
    assert!(failures.is_empty(), "fuzz inputs that fail:\n{}", failures.join("\n"));
}

// ------------------------------------------------------------------ crashes found, as regressions

use fundledger::log::codec::{self, CodecError, RecordBody};

/// A stored record as the log writes it.
fn record() -> Vec<u8> {
    let body = RecordBody {
        seq: 1,
        stream: "partner/bzk".into(),
        stream_version: 1,
        event_type: "ContributionReceived".into(),
        schema_version: 1,
        recorded_at_micros: 1_700_000_000_000_000,
        actor: "officer-anna".into(),
        request_id: "r-1".into(),
        payload: vec![1, 2, 3],
    };
    codec::encode_record(&codec::GENESIS_HASH, &body).0
}

/// Found by `record_decode`: a record whose first string (the stream id,
/// right after the header and the sequence number) claims 0x0b_0000_0000
/// bytes made bincode allocate 44 GiB before reading them, and the process
/// abort. Now the claim is refused, as any corrupt record is.
#[test]
fn a_record_claiming_a_huge_string_is_refused_without_allocating_it() {
    let mut record = record();
    let length_at = 65 + 8;
    record[length_at..length_at + 8].copy_from_slice(&0x0b_0000_0000u64.to_le_bytes());
    match codec::decode_record(&record) {
        Err(CodecError::Decode(problem)) => assert!(problem.to_lowercase().contains("limit"), "{problem}"),
        Err(other) => panic!("refused, but as {other:?}"),
        Ok(_) => panic!("a record claiming 44 GiB decoded"),
    }
    // The very input the fuzzer found.
    let found = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/record_decode/oom-string-length-ad3819d9"),
    )
    .unwrap();
    assert!(codec::decode_record(&found).is_err());
}

/// The same record in a backup file: `restore` refuses the file, naming the
/// event, instead of aborting.
#[test]
fn a_backup_holding_such_a_record_is_refused() {
    use fundledger::log::backup;
    let mut record = record();
    record[65 + 8..65 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut file = Vec::new();
    file.extend_from_slice(backup::MAGIC);
    file.extend_from_slice(&backup::FORMAT_V1.to_be_bytes());
    file.extend_from_slice(&1u64.to_be_bytes());
    file.extend_from_slice(&record[33..65]);
    file.extend_from_slice(&(record.len() as u32).to_be_bytes());
    file.extend_from_slice(&record);
    let error = backup::check(&file[..]).unwrap_err();
    assert!(error.to_string().starts_with("the backup is damaged or altered: event 1 is corrupt"), "{error}");
}

/// Found by `backup_decode`: a request entry whose first sequence number is
/// near 2^64 overflowed the range check (a panic in a debug build, a wrong
/// answer in a release build). Now it is refused as damage.
#[test]
fn a_backup_request_entry_beyond_any_sequence_is_refused() {
    use fundledger::log::backup;
    use sha2::Digest as _;
    let mut file = Vec::new();
    file.extend_from_slice(backup::MAGIC);
    file.extend_from_slice(&backup::FORMAT_V1.to_be_bytes());
    file.extend_from_slice(&0u64.to_be_bytes());
    file.extend_from_slice(&codec::GENESIS_HASH);
    let request_id = b"demo-00002";
    file.extend_from_slice(&(request_id.len() as u32 + 44).to_be_bytes());
    file.extend_from_slice(request_id);
    file.extend_from_slice(&[7; 32]);
    file.extend_from_slice(&u64::MAX.to_be_bytes());
    file.extend_from_slice(&2u32.to_be_bytes());
    file.extend_from_slice(&0u32.to_be_bytes());
    file.extend_from_slice(&1u64.to_be_bytes());
    let digest = sha2::Sha256::digest(&file);
    file.extend_from_slice(&digest);
    let error = backup::check(&file[..]).unwrap_err();
    assert!(
        error.to_string().starts_with("the backup is damaged or altered: request entry 1 (counting from 1) (\"demo-00002\") claims 2 events from event 18446744073709551615 on, but the backup holds events 1 to 0"),
        "{error}"
    );
}
