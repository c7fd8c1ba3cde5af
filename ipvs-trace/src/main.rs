//! The `ipvs-trace` binary: parse arguments, run the subcommand, report errors once.

use std::io::{self, IsTerminal as _, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use ipvs_trace::cli::{Cli, Command};
use tracing_subscriber::{filter::LevelFilter, EnvFilter};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // `--help` and `--version` arrive here too, and are not failures. Usage errors exit
            // 1 like every other failure, so scripts check one code.
            return if err.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    match run(cli) {
        Ok(code) => code,
        // `ipvs-trace trace | head`: the reader has all it wanted; not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(io::stderr().lock(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // One ring buffer, one consumer: a single-threaded runtime is all the event loop needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Trace(args) => runtime
            .block_on(ipvs_trace::cmd::trace::run(args.into_config()))
            .map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => runtime
            .block_on(ipvs_trace::cmd::trace::run(args.into_config()))
            .map(|()| ExitCode::SUCCESS),
        Command::Rules(args) => runtime
            .block_on(ipvs_trace::cmd::rules::run(args.into_config()))
            .map(|()| ExitCode::SUCCESS),
        Command::Top(args) => runtime
            .block_on(ipvs_trace::cmd::top::run(
                args.into_config(io::stdout().is_terminal()),
            ))
            .map(|()| ExitCode::SUCCESS),
        Command::Balance(args) => runtime
            .block_on(ipvs_trace::cmd::balance::run(args.into_config()))
            .map(ExitCode::from),
        Command::Who(args) => {
            let config = args
                .into_config(unix_now_ns())
                .map_err(anyhow::Error::msg)?;
            runtime
                .block_on(ipvs_trace::cmd::who::run(config))
                .map(|()| ExitCode::SUCCESS)
        }
        // The report says what is wrong; exit 1 without repeating it as an error.
        Command::Check(args) => ipvs_trace::cmd::check::run(&args.into_config()).map(|ready| {
            if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
    }
}

/// Unix nanoseconds now: `who --since 1h` counts back from here.
fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Logs (ours, aya's, and the eBPF side's aya-log records) on stderr, `RUST_LOG` to choose,
/// warnings by default.
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_is_found_under_context() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing events to stdout");
        assert!(is_broken_pipe(&err));
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::PermissionDenied))
            .context("loading the eBPF programs");
        assert!(!is_broken_pipe(&err));
    }
}
