//! `cargo xtask lab`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::lab::{self, Kernel, LabRun};

/// Run a shell script as root in a VM booting a stock Debian kernel with IPVS.
///
/// Builds `ipvs-trace` and `lab-net` statically (release), builds or reuses the cached image for
/// the kernel (target/lab/), boots it under QEMU (TCG, no network interface: nothing leaves the
/// guest), and runs FILE with /bin/sh once the IPVS modules (ip_vs; schedulers rr, wrr, lc,
/// wlc, sh, mh; veth; dummy) are loaded and `lo` is up. The guest's console is streamed here.
///
/// In the guest: `ipvs-trace` and `lab-net` on PATH, `/sbin/ip` (iproute2), `/sbin/ipvsadm`,
/// busybox, `/lab/lib.sh` (tests/lib/lab.sh), `/lab/unload-ipvs.sh` and `/lab/load-ipvs.sh`,
/// tracefs, debugfs and bpffs mounted. Addresses exist only on interfaces the script creates.
///
/// Exit status: the script's. If the guest never reports one (kernel panic, timeout, boot
/// failure) or the lab cannot be built, it prints `error:` with the last console lines and exits
/// 125. A non-zero script status also prints the console tail.
///
/// Example: `cargo xtask lab --kernel 6.12 --script my-situation.sh`
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Debian kernel series to boot: 5.10, 6.1, 6.12 or 7.2.
    #[arg(long, default_value = "6.1")]
    kernel: Kernel,
    /// Shell script to run in the guest (as /lab/script.sh).
    #[arg(long, value_name = "FILE")]
    script: PathBuf,
    /// Seconds for the whole boot and script before QEMU is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    timeout: u64,
    /// Extra file for the guest, as HOST_PATH=GUEST_PATH (repeatable).
    #[arg(long = "file", value_name = "HOST=GUEST", value_parser = parse_extra_file)]
    files: Vec<(PathBuf, String)>,
    /// Guest clocks count executed instructions (QEMU -icount shift=0,sleep=off: 1 ns each,
    /// idle time skipped) instead of following the host's: timings in the guest then measure
    /// work and do not move with the host's load. For comparing the cost of two workloads.
    #[arg(long)]
    icount: bool,
}

fn parse_extra_file(spec: &str) -> Result<(PathBuf, String)> {
    let Some((host, guest)) = spec.split_once('=') else {
        bail!("expected HOST_PATH=GUEST_PATH, got `{spec}`");
    };
    if !guest.starts_with('/') {
        bail!("the guest path `{guest}` must be absolute");
    }
    Ok((PathBuf::from(host), guest.to_owned()))
}

pub(super) fn run(args: &Args) -> Result<ExitCode> {
    run_script(
        args.kernel,
        &args.script,
        &args.files,
        args.timeout,
        args.icount,
    )
}

/// Shared with `demo`: boots, streams, and turns the script's status into the exit code.
pub(super) fn run_script(
    kernel: Kernel,
    script: &std::path::Path,
    files: &[(PathBuf, String)],
    timeout: u64,
    icount: bool,
) -> Result<ExitCode> {
    if !script.is_file() {
        bail!("the lab script {} does not exist", script.display());
    }
    eprintln!(
        "lab: running {} in the Debian {kernel} guest (timeout {timeout} s)",
        script.display()
    );
    let output = lab::run(&LabRun {
        kernel,
        script,
        extra_files: files,
        stream: true,
        timeout: Duration::from_secs(timeout),
        icount,
    })?;
    if output.status != 0 {
        eprintln!(
            "\nlab: the script exited with status {}\n{}",
            output.status,
            lab::tail_report(&output, "last console lines")
        );
    }
    Ok(ExitCode::from(u8::try_from(output.status).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_file_specs() {
        assert_eq!(
            parse_extra_file("a/b.sh=/lab/b.sh").unwrap(),
            (PathBuf::from("a/b.sh"), "/lab/b.sh".to_owned())
        );
        assert!(parse_extra_file("a/b.sh").is_err());
        assert!(parse_extra_file("a=lab/b").is_err());
    }
}
