//! `check`'s `kernel features` lines: what the kernel offers the probes, whatever ip_vs's state.
//!
//! Each line says `ok` with what was found, or what is missing and the kernel option or mount
//! that provides it, so that a node where nothing can be traced says why on the first run:
//! - `kprobes`: the perf kprobe PMU aya attaches kprobes through
//!   (`/sys/bus/event_source/devices/kprobe`), or tracefs's `kprobe_events`, aya's fallback;
//! - `trampolines`: an fentry program on `bpf_fentry_test1` (a function only
//!   `BPF_PROG_TEST_RUN` calls) loaded, attached and closed at once: the kernel itself says
//!   whether it has BPF trampolines, which a config file could only suggest;
//! - `module BTF`: `/sys/kernel/btf/ip_vs`, the types trampolines and the offsets need;
//! - `ring buffer`: a `BPF_MAP_TYPE_RINGBUF` created and closed (Linux 5.8);
//! - `tracefs`: mounted where aya looks for it.
//!
//! Without kprobes and trampolines, or without the ring buffer, `trace` cannot run: those are
//! problems. The others are notes.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use aya::maps::MapType;
use aya::sys::is_map_supported;

use crate::btf::Btf;
use crate::loader::trampoline::{probe_vmlinux_fentry, ProbeError};

/// Where aya finds the perf kprobe PMU.
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";
/// Where aya looks for tracefs, in its order.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// The function the trampoline probe attaches to: the kernel's own test hook for fentry
/// (`net/bpf/test_run.c`, there whenever BPF and networking are).
const TEST_FUNCTION: &str = "bpf_fentry_test1";

/// What a line found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Ok,
    Missing,
    /// Not decided here (privileges): neither ok nor a problem of its own.
    Unknown,
    /// Said for the reader, never a problem (a module not loaded yet, an optional mount).
    Note,
}

/// A feature's state and the text after its label.
struct Finding {
    state: State,
    text: String,
}

impl Finding {
    fn ok(text: impl Into<String>) -> Self {
        Finding {
            state: State::Ok,
            text: format!("ok: {}", text.into()),
        }
    }

    fn missing(text: impl Into<String>) -> Self {
        Finding {
            state: State::Missing,
            text: format!("MISSING: {}", text.into()),
        }
    }

    fn unknown(text: impl Into<String>) -> Self {
        Finding {
            state: State::Unknown,
            text: format!("unknown: {}", text.into()),
        }
    }

    fn note(text: impl Into<String>) -> Self {
        Finding {
            state: State::Note,
            text: text.into(),
        }
    }
}

/// Writes the block; pushes to `problems` what stops `trace` (no way to attach a probe, no
/// ring buffer). `privileged`: whether the capabilities are there, which decides what a
/// refusal means.
pub(super) fn write(out: &mut String, privileged: bool, problems: &mut Vec<String>) {
    let tracefs_dir = tracefs_dir();
    let tracefs = tracefs(tracefs_dir);
    let kprobes = kprobes(tracefs_dir.is_some());
    let trampolines = trampolines(privileged);
    let ring = ring_buffer(privileged);
    let module_btf = module_btf();
    out.push_str("\nkernel features\n");
    for (label, finding) in [
        ("kprobes", &kprobes),
        ("trampolines", &trampolines),
        ("module BTF", &module_btf),
        ("ring buffer", &ring),
        ("tracefs", &tracefs),
    ] {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "  {label:<12} {}", finding.text);
    }
    out.push('\n');
    if kprobes.state == State::Missing && trampolines.state == State::Missing {
        problems.push("no kprobes and no BPF trampolines: no way to attach a probe".into());
    }
    if ring.state == State::Missing {
        problems.push("no BPF ring buffer".into());
    }
}

fn kprobes(tracefs_mounted: bool) -> Finding {
    if Path::new(KPROBE_PMU).exists() {
        return Finding::ok("perf kprobe PMU (/sys/bus/event_source/devices/kprobe)");
    }
    if let Some(events) = TRACEFS
        .iter()
        .map(|dir| Path::new(dir).join("kprobe_events"))
        .find(|p| p.exists())
    {
        return Finding::ok(format!("tracefs {}", events.display()));
    }
    let mount = if tracefs_mounted {
        ""
    } else {
        " (or tracefs is not mounted: see below)"
    };
    Finding::missing(format!(
        "no perf kprobe PMU and no kprobe_events{mount}: the kernel needs CONFIG_KPROBES and \
         CONFIG_KPROBE_EVENTS"
    ))
}

fn trampolines(privileged: bool) -> Finding {
    let btf = match Btf::from_file(Path::new(VMLINUX_BTF), None) {
        Ok(btf) => btf,
        Err(err) => {
            return if Path::new(VMLINUX_BTF).exists() {
                Finding::unknown(format!("{VMLINUX_BTF} unreadable: {err}"))
            } else {
                Finding::missing(format!(
                    "no {VMLINUX_BTF}: the kernel needs CONFIG_DEBUG_INFO_BTF"
                ))
            };
        }
    };
    let Some(id) = btf.function_id(TEST_FUNCTION) else {
        return Finding::unknown(format!(
            "{TEST_FUNCTION} (the kernel's fentry test hook) is not in vmlinux BTF: not probed"
        ));
    };
    match probe_vmlinux_fentry(id) {
        Ok(()) => Finding::ok(format!(
            "an fentry program attached to {TEST_FUNCTION} and closed"
        )),
        Err(ProbeError::Load(err, _)) if is_denied(&err) && !privileged => Finding::unknown(
            "loading a tracing program needs CAP_BPF and CAP_PERFMON (see privileges)",
        ),
        Err(ProbeError::Load(err, log)) => {
            let log = if log.is_empty() {
                String::new()
            } else {
                format!("; verifier: {}", log.replace('\n', " / "))
            };
            let why = if is_denied(&err) {
                "EPERM with the capabilities present: a lockdown LSM, a seccomp filter on bpf() \
                 or the kernel's own policy refuses tracing programs here"
            } else {
                "BPF trampolines need Linux 5.5, CONFIG_BPF_JIT, CONFIG_DEBUG_INFO_BTF and \
                 CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"
            };
            Finding::missing(format!(
                "the kernel refused an fentry program ({err}{log}): {why}"
            ))
        }
        Err(ProbeError::Attach(err)) => Finding::missing(format!(
            "an fentry program loaded, but the kernel refused to attach it ({err}): no BPF \
             trampolines here (they need CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS; Debian's 5.10 \
             and 6.1 have it and refuse all the same, for any function); the probes use kprobes"
        )),
    }
}

fn module_btf() -> Finding {
    let ip_vs = Path::new("/sys/kernel/btf/ip_vs");
    if ip_vs.exists() {
        return Finding::ok("/sys/kernel/btf/ip_vs");
    }
    if !Path::new("/sys/module/ip_vs").exists() {
        // Not a verdict: the module's BTF appears when it is loaded.
        return Finding::note(
            "not known until ip_vs is loaded (/sys/kernel/btf/ip_vs; \
             CONFIG_DEBUG_INFO_BTF_MODULES)",
        );
    }
    // The BTF line and the probes say what this costs (kprobes, `--btf`).
    Finding::note(
        "none: ip_vs is loaded without BTF (the kernel needs CONFIG_DEBUG_INFO_BTF_MODULES; \
         `--btf` gives it from a file)",
    )
}

fn ring_buffer(privileged: bool) -> Finding {
    match is_map_supported(MapType::RingBuf) {
        Ok(true) => Finding::ok("a BPF_MAP_TYPE_RINGBUF created and closed"),
        Ok(false) => Finding::missing("no BPF_MAP_TYPE_RINGBUF: the kernel needs Linux 5.8"),
        Err(err) if is_denied(&err.io_error) && !privileged => {
            Finding::unknown("creating a map needs CAP_BPF (see privileges)")
        }
        Err(err) => Finding::missing(format!("the kernel refused a ring buffer: {err}")),
    }
}

/// Where tracefs is mounted: a mounted tracefs has `events`; the mount point alone is an
/// empty directory.
fn tracefs_dir() -> Option<&'static str> {
    TRACEFS
        .into_iter()
        .find(|dir| Path::new(dir).join("events").is_dir())
}

fn tracefs(dir: Option<&str>) -> Finding {
    match dir {
        Some(dir) => Finding::ok(dir),
        // aya needs it only where the kernel has no perf kprobe PMU (the kprobes line then
        // says so).
        None => Finding::note(
            "not mounted: `mount -t tracefs nodev /sys/kernel/tracing` (in a pod: the \
             DaemonSet's tracefs hostPath volume); kprobes need it only without the perf \
             kprobe PMU",
        ),
    }
}

fn is_denied(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}
