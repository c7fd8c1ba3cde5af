//! Running a lab benchmark: its script and settings booted in the Debian guest, by the host's
//! clock or by executed instructions, and the script's output returned.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::Args;
use crate::lab::{self, LabRun};
use crate::paths;

/// Boots the lab with a bench script and its settings (/lab/bench.env).
pub(super) fn lab_run(args: &Args, dir: &Path, name: &str, env: &str) -> Result<String> {
    lab_run_with(
        args,
        dir,
        name,
        env,
        &[],
        Duration::from_mins(30),
        GuestClock::Wall,
    )
}

/// How the guest keeps time in a lab benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GuestClock {
    /// The host's wall clock, as in the tests.
    Wall,
    /// Executed instructions (QEMU `-icount`): for cost ratios.
    Instructions,
}

/// [`lab_run`] with more files for the guest, a timeout of its own and a choice of guest clock.
pub(super) fn lab_run_with(
    args: &Args,
    dir: &Path,
    name: &str,
    env: &str,
    extra: &[(PathBuf, String)],
    timeout: Duration,
    clock: GuestClock,
) -> Result<String> {
    let env_file = dir.join(format!("{name}.env"));
    std::fs::write(&env_file, env).with_context(|| format!("writing {}", env_file.display()))?;
    let script = paths::workspace_root().join(format!("xtask/bench/{name}.sh"));
    let mut files = vec![(env_file, "/lab/bench.env".to_owned())];
    files.extend_from_slice(extra);
    eprintln!(
        "bench {name}: running {} in the Debian {} guest",
        script.display(),
        args.kernel
    );
    let output = lab::run(&LabRun {
        kernel: args.kernel,
        script: &script,
        extra_files: &files,
        stream: true,
        timeout,
        icount: clock == GuestClock::Instructions,
    })?;
    if output.status != 0 {
        bail!(
            "the {name} benchmark script exited with status {}\n{}",
            output.status,
            lab::tail_report(&output, "last console lines")
        );
    }
    Ok(output.script_output)
}

/// The console of a timed benchmark (`overhead`, `nat`): the saved one `--from-log` names, or a
/// boot of `name`'s script with `tools` (a Debian package and the program of it the script
/// runs, installed on the host for `why`) copied into the guest for this boot only.
pub(super) fn timed_run(
    args: &Args,
    dir: &Path,
    name: &str,
    env: &str,
    clock: GuestClock,
    why: &str,
    tools: &[(&str, &str)],
) -> Result<String> {
    if let Some(log) = &args.from_log {
        return std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()));
    }
    let packages: Vec<&str> = tools.iter().map(|(package, _)| *package).collect();
    crate::setup::ensure_packages(why, &packages)?;
    let mut extra = Vec::new();
    for (_, program) in tools {
        extra.extend(lab::host_program(Path::new(program))?);
    }
    lab_run_with(args, dir, name, env, &extra, Duration::from_hours(2), clock)
}
