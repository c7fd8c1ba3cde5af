//! `cargo xtask test`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, Result};

use crate::{cmd, paths};

/// Every test: `setup`, then `cargo test --workspace --no-fail-fast`.
///
/// That runs the unit tests and the end-to-end scenarios of `tests/`, which boot the Debian 5.10,
/// 6.1, 6.12 and 7.2 kernels in the VM lab (7.2 a subset of the scenarios), load the eBPF
/// programs there and check what they report.
/// Ends with one `N passed, N failed` line over every test binary. Exits non-zero if anything
/// failed.
#[derive(Debug, clap::Args)]
pub(super) struct Args {}

pub(super) fn run(_args: &Args) -> Result<ExitCode> {
    crate::setup::run()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut test = Command::new(cargo);
    test.current_dir(paths::workspace_root())
        // The eBPF crate declares no test targets (it only builds for the BPF target); its
        // programs are exercised where they can run, in the lab scenarios.
        .args(["test", "--workspace", "--no-fail-fast"])
        .stdout(Stdio::piped());
    eprintln!("+ {}", cmd::display(&test));
    let mut child = test.spawn().context("could not start cargo test")?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;

    // Echo cargo's report as it comes and add up its per-binary `test result:` lines: the last
    // binaries cargo runs are doc-tests with nothing in them, so its own last line says
    // "0 passed" even when hundreds did.
    let mut totals = Totals::default();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        totals.add(&line);
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    let status = child.wait().context("waiting for cargo test")?;
    writeln!(out, "{} passed, {} failed", totals.passed, totals.failed)
        .context("writing to stdout")?;
    if status.success() {
        eprintln!("test: all passed");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("test: failures ({status}): see above");
        Ok(ExitCode::FAILURE)
    }
}

/// Tests passed and failed over all of cargo's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    /// Adds a line like `test result: ok. 76 passed; 0 failed; 0 ignored; ...`; other lines
    /// are ignored.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(number), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += number,
                "failed" => self.failed += number,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn adds_up_cargo_test_result_lines() {
        let mut totals = Totals::default();
        for line in [
            "running 76 tests",
            "test result: ok. 76 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.25s",
            "test result: FAILED. 16 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 290.25s",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "test foo ... ok",
        ] {
            totals.add(line);
        }
        assert_eq!(
            totals,
            Totals {
                passed: 92,
                failed: 1
            }
        );
    }
}
