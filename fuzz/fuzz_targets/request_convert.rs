//! Fuzz target `request_convert`: see `tests/fuzzing/mod.rs`, where its body is
//! shared with `cargo test`.
#![no_main]

#[path = "../../tests/fuzzing/mod.rs"]
mod fuzzing;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::request_convert(data));
