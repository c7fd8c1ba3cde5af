//! `cargo xtask`: the command line. One module per subcommand; the doc comments are the help.

mod bench;
mod demo;
mod dist;
mod fuzz;
pub mod image;
mod lab;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build helpers and the QEMU VM lab of ipvs-trace.
///
/// The host kernel of the development machines has neither kprobes nor IPVS, so everything that
/// loads the tracer runs in a VM that boots stock Debian kernels (6.1 and 6.12) under QEMU TCG.
/// Every command installs what it is missing first (`setup`), so each works on a fresh machine.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Setup(setup::Args),
    Lab(lab::Args),
    Demo(demo::Args),
    Test(test::Args),
    Bench(bench::Args),
    Fuzz(fuzz::Args),
    Dist(dist::Args),
    Image(image::Args),
}

/// What a failure of the lab itself (not of the script) exits with, so callers can tell them
/// apart: the convention of `git bisect run` and `docker run` for "could not even try".
pub(crate) const LAB_FAILURE: u8 = 125;

#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => setup::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Dist(args) => dist::run(&args),
        Command::Image(args) => image::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(LAB_FAILURE)
        }
    }
}
