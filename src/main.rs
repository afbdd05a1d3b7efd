//! The `fundledger` binary: parses arguments and hands over to the library.

use clap::Parser;
use fundledger::cli::{Cli, Command};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: replay and the writer decode and drop
/// millions of small strings, where glibc spent up to 40% of the time in its
/// own bookkeeping (measured in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fundledger::server_main::disable_transparent_huge_pages();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => fundledger::server_main::run(args).await,
            Command::Demo { data_dir } => {
                fundledger::server_main::init_tracing(false, "warn");
                fundledger::demo::run(fundledger::demo::DemoConfig { data_dir }).await
            }
            Command::Init { data_dir, admin } => fundledger::server_main::init(&data_dir, &admin).await,
            Command::Export(command) => fundledger::cli::export::run_export(command).await,
            Command::Statement(args) => fundledger::cli::export::run_statement(args).await,
            Command::Backup(args) => fundledger::cli::backup::run_backup(args).await,
            Command::Restore(args) => fundledger::cli::backup::run_restore(args).await,
            Command::Client(command) => fundledger::cli::run_client(*command).await,
            Command::Audit(command) => fundledger::cli::audit::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): not an error.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        // Verification ran and found the log broken: distinct from "could not
        // run" (1) and from a usage error (2, clap's).
        Err(error) if error.is::<fundledger::cli::audit::VerificationFailed>() => {
            eprintln!("error: {error}");
            ExitCode::from(3)
        }
        Err(error) => {
            match error.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {:?}: {}", status.code(), status.message()),
                None => eprintln!("error: {}", one_line(&error)),
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, as `{:#}` writes them, but without
/// a cause that the message before it already ends with: many of our errors
/// say `…: {source}` and also expose the source, which `{:#}` would repeat.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    // A message that spans lines (sled's, the OS's) stays on one.
    line.replace('\n', " ")
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
