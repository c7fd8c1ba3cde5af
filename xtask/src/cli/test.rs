//! `cargo xtask test`.

use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result};

use crate::{cmd, paths};

/// Every test: `setup`, then `cargo test --workspace --no-fail-fast`.
///
/// That runs the unit tests and the end-to-end scenarios of `tests/`, which boot the Debian 6.1
/// and 6.12 kernels in the VM lab, load the eBPF programs there and check what they report.
/// Exits non-zero if anything failed.
#[derive(Debug, clap::Args)]
pub(super) struct Args {}

pub(super) fn run(_args: &Args) -> Result<ExitCode> {
    crate::setup::run()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut test = Command::new(cargo);
    test.current_dir(paths::workspace_root())
        // The eBPF crate declares no test targets (it only builds for the BPF target); its
        // programs are exercised where they can run, in the lab scenarios.
        .args(["test", "--workspace", "--no-fail-fast"]);
    eprintln!("+ {}", cmd::display(&test));
    let status = test.status().context("could not start cargo test")?;
    if status.success() {
        eprintln!("test: all passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("test: failures ({status}): see above");
        Ok(ExitCode::FAILURE)
    }
}
