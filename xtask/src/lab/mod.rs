//! The VM lab: boots a stock Debian kernel under QEMU (TCG) from an initramfs that holds the
//! kernel's IPVS modules, busybox, iproute2, ipvsadm and the statically linked `ipvs-trace` and
//! `lab-net`, runs one shell script as root, and hands back what it printed.
//!
//! Why a VM: the development host's kernel has neither kprobes nor IPVS, and a tracer of the
//! kernel's IPVS decisions is only worth what it shows on the kernels nodes really run.
//!
//! The guest, in order: /init mounts proc, sysfs, devtmpfs, tracefs (/sys/kernel/tracing),
//! debugfs and bpffs (/sys/fs/bpf); runs `/lab/load-ipvs.sh` (ip_vs, the schedulers rr wrr lc
//! wlc sh mh, veth, dummy and their dependencies); brings `lo` up; prints
//! `@@LAB-SCRIPT-BEGIN@@`; runs the script with `/bin/sh` (stdin from /dev/null, stdout and
//! stderr on the console); prints `@@LAB-SCRIPT-END status=N@@`; powers off. The guest has no
//! network interface besides what the script creates: nothing leaves it.
//!
//! Guest files: `/usr/bin/ipvs-trace`, `/usr/bin/lab-net`, `/sbin/ip` (iproute2; busybox's `ip`
//! cannot do netns or veth), `/sbin/ipvsadm`, `/sbin/conntrack`, `/sbin/nft` and iptables
//! (`iptables*` = iptables-nft, `iptables-legacy*`), every busybox applet, `/lab/lib.sh` (the
//! repo's `tests/lib/lab.sh`, when it exists), `/lab/script.sh`, `/lab/load-ipvs.sh`,
//! `/lab/unload-ipvs.sh` (removes ip_vs and its schedulers after clearing the virtual services),
//! `/lab/load-netfilter.sh [legacy]` (nf_tables and the x_tables extensions kube-proxy's
//! nftables and iptables modes use, not loaded at boot), `/etc/passwd` with root and nobody
//! (65534).
//!
//! Caches live under `target/lab/`: `kernels/<package>/` (the verified .deb and its unpacked
//! tree), `images/base-<kernel>-<hash>.cpio` (everything but the per-run files), and `runs/`
//! (the per-run image, deleted after the boot).

pub(crate) mod binaries;
mod console;
mod cpio;
mod image;
pub(crate) mod kernel;
mod qemu;
mod vmlinux;

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::{cmd, paths};

/// How many console lines a failure report shows.
pub const CONSOLE_TAIL_LINES: usize = 60;

/// The Debian kernels the lab boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Debian 11's security series, `linux-image-5.10.0-*-amd64-unsigned`: the oldest LTS in
    /// the field; its ip_vs module carries no BTF.
    V5_10,
    /// Debian 12's own kernel series, `linux-image-6.1.0-*-amd64`.
    V6_1,
    /// The bookworm backport series, `linux-image-6.12.*+deb12-amd64` (modules are `.ko.xz`).
    V6_12,
    /// Debian sid's current series, `linux-binary-7.2.*+deb14-amd64` with
    /// `linux-modules-7.2.*` (merged-/usr paths, no modules.dep shipped).
    V7_2,
}

impl Kernel {
    pub const ALL: [Kernel; 4] = [Kernel::V5_10, Kernel::V6_1, Kernel::V6_12, Kernel::V7_2];
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kernel::V5_10 => "5.10",
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
            Kernel::V7_2 => "7.2",
        })
    }
}

impl FromStr for Kernel {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "5.10" => Ok(Kernel::V5_10),
            "6.1" => Ok(Kernel::V6_1),
            "6.12" => Ok(Kernel::V6_12),
            "7.2" => Ok(Kernel::V7_2),
            _ => anyhow::bail!("unknown kernel `{s}`: the lab boots 5.10, 6.1, 6.12 or 7.2"),
        }
    }
}

/// One lab run.
#[derive(Debug, Clone)]
pub struct LabRun<'a> {
    pub kernel: Kernel,
    /// Runs as `/lab/script.sh` with `/bin/sh`, as root, in the guest.
    pub script: &'a Path,
    /// Host file -> absolute guest path, copied with its permission bits.
    pub extra_files: &'a [(PathBuf, String)],
    /// Echo the guest's console lines live to stdout.
    pub stream: bool,
    /// For the whole boot, script included; QEMU is killed when it runs out.
    pub timeout: Duration,
    /// Guest time counts executed instructions instead of following the host's clock (see
    /// `qemu::command`): for benchmarks that compare the cost of two workloads.
    pub icount: bool,
}

/// A host program and the libraries it loads, as `(host path, guest path)` pairs for
/// [`LabRun::extra_files`]: tools only some runs need (the benchmarks' bpftrace and iperf3),
/// kept out of the base image every boot carries.
pub fn host_program(path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut files = vec![(path.to_path_buf(), path.display().to_string())];
    for library in image::shared_libraries(path)? {
        files.push((PathBuf::from(&library), library));
    }
    Ok(files)
}

/// What a finished script left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOutput {
    /// The script's exit status.
    pub status: i32,
    /// The console lines between the markers (stdout and stderr, as they interleaved).
    pub script_output: String,
    /// The whole console, firmware and kernel messages included.
    pub console: String,
}

impl LabOutput {
    /// The last `lines` lines of the console.
    #[must_use]
    pub fn console_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The guest did not report a script status: it panicked, hung, or never reached the script.
/// Carries what the console showed; its message includes the console tail.
#[derive(Debug)]
pub struct GuestFailure {
    pub kernel: Kernel,
    pub reason: String,
    pub output: LabOutput,
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} guest {}\n\n{}",
            self.kernel,
            self.reason,
            tail_report(&self.output, "last console lines")
        )
    }
}

impl std::error::Error for GuestFailure {}

/// A console tail under a heading that stands out in test and CI logs.
#[must_use]
pub fn tail_report(output: &LabOutput, heading: &str) -> String {
    format!(
        "===== {heading} (up to {CONSOLE_TAIL_LINES}) =====\n{}\n===== end of console =====",
        output.console_tail(CONSOLE_TAIL_LINES)
    )
}

/// Builds what is missing (static binaries, kernel, base image: cached under `target/lab/`),
/// boots the guest and runs the script. `Ok` whenever the script finished, whatever its status;
/// [`GuestFailure`] when it did not.
///
/// Safe to call from several threads and processes at once: the builds are serialized, the
/// boots run in parallel.
pub fn run(run: &LabRun) -> Result<LabOutput> {
    let prepared = prepare(run).with_context(|| format!("preparing the {} lab", run.kernel))?;
    let boot = qemu::boot(
        &prepared.boot_image,
        &prepared.initrd,
        run.timeout,
        run.stream,
        run.icount,
    );
    let _ = fs::remove_file(&prepared.initrd);
    let boot = boot?;

    let script = console::parse(&boot.console);
    let mut console = boot.console.join("\n");
    console.push('\n');
    let output = LabOutput {
        status: script.status.unwrap_or(-1),
        script_output: script.output,
        console,
    };
    if let (Some(to_script), Some(status)) = (boot.to_script, script.status) {
        eprintln!(
            "lab: {} ({}) reached the script in {:.1} s; script exited {status} after {:.1} s",
            run.kernel,
            prepared.package,
            to_script.as_secs_f64(),
            boot.elapsed.saturating_sub(to_script).as_secs_f64()
        );
        return Ok(output);
    }
    let reason = if boot.timed_out {
        format!(
            "did not finish within {} s; QEMU was killed",
            run.timeout.as_secs()
        )
    } else if output.console.contains("Kernel panic") {
        "kernel panicked".to_owned()
    } else if !script.began {
        format!(
            "never reached the script (QEMU exited: {}){}",
            exit_text(boot.exit),
            stderr_text(&boot.stderr)
        )
    } else {
        format!(
            "stopped before the script finished (QEMU exited: {}){}",
            exit_text(boot.exit),
            stderr_text(&boot.stderr)
        )
    };
    Err(GuestFailure {
        kernel: run.kernel,
        reason,
        output,
    }
    .into())
}

fn exit_text(exit: Option<std::process::ExitStatus>) -> String {
    exit.map_or_else(|| "unknown status".to_owned(), |status| status.to_string())
}

fn stderr_text(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; QEMU said: {stderr}")
    }
}

struct Prepared {
    package: String,
    boot_image: PathBuf,
    initrd: PathBuf,
}

/// Holds the lab's build lock; see [`lock`].
pub struct BuildLock {
    _in_process: MutexGuard<'static, ()>,
    _across_processes: File,
}

/// The BTF-bearing files of a lab kernel, on the host (fetched if missing).
#[derive(Debug, Clone)]
pub struct KernelBtf {
    /// `uname -r` of the kernel.
    pub release: String,
    /// The uncompressed kernel ELF, whose `.BTF` section is the base BTF.
    pub vmlinux: PathBuf,
    /// `ip_vs.ko` (decompressed if the package ships `.ko.xz`), whose `.BTF` is the module's
    /// split BTF, or none (5.10 builds its modules without BTF).
    pub ip_vs: PathBuf,
}

/// Fetches (if needed) `kernel` and returns its vmlinux and ip_vs module on the host, for tests
/// that resolve offsets without booting. Fails if the boot image is not an extracted vmlinux.
pub fn kernel_btf(kernel: Kernel) -> Result<KernelBtf> {
    let _lock = lock()?;
    let tree = kernel::ensure(kernel)?;
    if tree.boot_image.extension().is_some() || !tree.boot_image.ends_with("vmlinux") {
        anyhow::bail!(
            "{} boots from {}, not an extracted vmlinux: no base BTF file",
            tree.package,
            tree.boot_image.display()
        );
    }
    let modules = tree.modules_base.join("lib/modules").join(&tree.release);
    let relative = "kernel/net/netfilter/ipvs/ip_vs.ko";
    let plain = modules.join(relative);
    let ip_vs = if plain.is_file() {
        plain
    } else {
        let xz = modules.join(format!("{relative}.xz"));
        let out = paths::lab_dir()
            .join("kernels")
            .join(&tree.package)
            .join("ip_vs.ko");
        if !out.is_file() {
            let data = cmd::output(Command::new("xz").arg("-dc").arg(&xz))
                .with_context(|| format!("decompressing {}", xz.display()))?;
            if !data.status.success() {
                anyhow::bail!("xz -dc {} failed", xz.display());
            }
            fs::write(&out, &data.stdout).with_context(|| format!("writing {}", out.display()))?;
        }
        out
    };
    Ok(KernelBtf {
        release: tree.release,
        vmlinux: tree.boot_image,
        ip_vs,
    })
}

/// Serializes everything that writes the lab's shared artifacts (static binaries, kernel
/// downloads, base images): within this process with a mutex (two test threads booting two
/// kernels), across processes with a file lock on `target/lab/lock` (two test binaries, or
/// `cargo xtask setup` beside a test run). Not reentrant.
pub fn lock() -> Result<BuildLock> {
    static BUILDS: Mutex<()> = Mutex::new(());
    let in_process = BUILDS.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = paths::lab_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(BuildLock {
        _in_process: in_process,
        _across_processes: file,
    })
}

fn prepare(run: &LabRun) -> Result<Prepared> {
    let _lock = lock()?;
    let binaries = binaries::ensure()?;
    let tree = kernel::ensure(run.kernel)?;
    let base = image::ensure_base(run.kernel, &tree)?;
    let initrd = image::write_run(&base, binaries, run)?;
    Ok(Prepared {
        package: format!("{} {}", tree.package, tree.version),
        boot_image: tree.boot_image,
        initrd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_round_trip() {
        for kernel in Kernel::ALL {
            assert_eq!(kernel.to_string().parse::<Kernel>().unwrap(), kernel);
        }
        assert!("4.19".parse::<Kernel>().is_err());
    }

    #[test]
    fn console_tail_takes_the_last_lines() {
        let output = LabOutput {
            status: 0,
            script_output: String::new(),
            console: "a\nb\nc\n".into(),
        };
        assert_eq!(output.console_tail(2), "b\nc");
        assert_eq!(output.console_tail(10), "a\nb\nc");
    }
}
