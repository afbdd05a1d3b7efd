//! Compiles the protobuf contract in `proto/` with the pure-Rust `protox`
//! compiler (so no `protoc` binary has to be installed) and generates the
//! tonic service and prost messages from it. It also writes the encoded file
//! descriptor set to `OUT_DIR`, from which the server answers reflection
//! requests (`grpcurl list` and friends).

use std::path::PathBuf;

/// The contract files, one per service of package `fundledger.v1`;
/// everything they import comes from `proto/` or is a well-known type that
/// protox carries itself.
const PROTO_FILES: [&str; 3] =
    ["proto/fundledger/v1/ledger.proto", "proto/fundledger/v1/audit.proto", "proto/fundledger/v1/export.proto"];
const PROTO_INCLUDE: &str = "proto";
/// Read by `tonic::include_file_descriptor_set!` in `src/api/mod.rs`.
const DESCRIPTOR_SET_NAME: &str = "fundledger_descriptor";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_INCLUDE}");

    let mut compiler = protox::Compiler::new([PROTO_INCLUDE])?;
    // Source info carries the comments into the generated docs and into
    // reflection; imports make the descriptor set self-contained.
    compiler.include_source_info(true).include_imports(true).open_files(PROTO_FILES)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join(format!("{DESCRIPTOR_SET_NAME}.bin")), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
