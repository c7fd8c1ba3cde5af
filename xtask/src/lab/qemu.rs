//! Booting the guest under QEMU and collecting its serial console.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::console::{self, BEGIN_MARKER};

pub(crate) const QEMU: &str = "qemu-system-x86_64";

/// What one boot produced.
pub(crate) struct Boot {
    pub console: Vec<String>,
    pub timed_out: bool,
    /// QEMU's exit status (`None` if it could not be collected).
    pub exit: Option<ExitStatus>,
    pub stderr: String,
    /// From QEMU's start to the BEGIN marker: boot plus module loading.
    pub to_script: Option<Duration>,
    pub elapsed: Duration,
}

/// The QEMU command line. Why each choice:
/// - `-accel tcg -cpu max`: the host's /dev/kvm is a nested device on which KVM either aborts or
///   hangs (see ENVIRONMENT.md); TCG with every emulated CPU feature boots Debian reliably.
/// - `-nic none`: QEMU adds a user-mode NIC by default; without one, nothing a scenario sends can
///   leave the guest.
/// - `-no-reboot` with `panic=-1`: a panicking guest reboots at once and QEMU then exits, instead
///   of sitting there until the timeout.
/// - `kernel` is preferably an ELF vmlinux, entered through its PVH entry point: this skips the
///   bzImage decompressor, the slowest part of an emulated boot.
/// - `-smp 1`: with two vCPUs, multi-threaded TCG can run a stale translation of code the
///   kernel is patching (text_poke's int3 at early boot): a CI run saw 6.12 die with
///   `Oops: int3` in `sched_clock_cpu` before the script started. One vCPU makes
///   self-modifying code exact; and two guests already share the host's two cores.
/// - `mitigations=off`: the guest is a throwaway; speculative-execution mitigations only slow
///   every emulated syscall.
/// - `icount` (benchmarks that compare costs): `-icount shift=0,sleep=off` makes the guest's
///   clocks count executed instructions, one nanosecond each, and skip idle time, instead of
///   following the host's wall clock. A CPU-bound workload then takes the same guest time
///   however busy the host is, which wall-clock TCG timings (±15% between identical runs on
///   this 2-core machine) never do.
fn command(kernel: &Path, initrd: &Path, icount: bool) -> Command {
    let mut qemu = Command::new(QEMU);
    qemu.args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "2048"])
        .args(["-nic", "none", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1 mitigations=off"]);
    if icount {
        qemu.args(["-icount", "shift=0,sleep=off"]);
    }
    qemu
}

/// Boots, streams console lines to stdout if `stream`, and kills QEMU at `timeout`.
pub(crate) fn boot(
    kernel: &Path,
    initrd: &Path,
    timeout: Duration,
    stream: bool,
    icount: bool,
) -> Result<Boot> {
    let started = Instant::now();
    let mut child = command(kernel, initrd, icount)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {QEMU}: run `cargo xtask setup`"))?;
    let stdout = child.stdout.take().context("QEMU's stdout")?;
    let mut stderr = child.stderr.take().context("QEMU's stderr")?;
    let stderr_reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    // The watchdog owns the child: it kills it at the deadline, or just reaps it once the
    // console reader has seen the end of QEMU's output.
    let (console_done, done) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        let timed_out = matches!(done.recv_timeout(timeout), Err(RecvTimeoutError::Timeout));
        if timed_out {
            let _ = child.kill();
        }
        (timed_out, child.wait().ok())
    });

    let mut console = Vec::new();
    let mut to_script = None;
    let mut reader = BufReader::new(stdout);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = console::clean_line(&raw);
        if to_script.is_none() && line.contains(BEGIN_MARKER) {
            to_script = Some(started.elapsed());
        }
        if stream {
            println!("{line}");
        }
        console.push(line);
    }
    drop(console_done);
    let (timed_out, exit) = watchdog
        .join()
        .map_err(|_| anyhow::anyhow!("the QEMU watchdog thread panicked"))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(Boot {
        console,
        timed_out,
        exit,
        stderr,
        to_script,
        elapsed: started.elapsed(),
    })
}
