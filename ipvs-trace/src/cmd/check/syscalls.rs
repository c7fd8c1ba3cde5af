//! `check`'s `bpf map`, `bpf program` and `perf events` lines: the kernel itself asked whether
//! this process may make the calls `trace` makes, by creating one BPF map, loading one tracing
//! program and opening one perf event, each closed at once (nothing is attached, nothing stays
//! behind).
//!
//! The `privileges` line reads the capability bits; these lines ask the kernel, and the two
//! part where something between the process and the kernel decides otherwise:
//! - a container runtime's seccomp profile that allows bpf() and perf_event_open() only with
//!   CAP_SYS_ADMIN, written before CAP_BPF and CAP_PERFMON existed (podman 4.3's with Debian
//!   12's containers-common 0.50, CRI-O's before containers-common 0.60; containerd's since
//!   1.6.9 and Docker's since 23.0 allow them with the named capabilities), a lockdown LSM, or
//!   a user namespace (capabilities there do not count for either call);
//! - Debian's kernels (and others with the same patch), which read
//!   `kernel.perf_event_paranoid=3`, their default, as "perf_event_open() for CAP_SYS_ADMIN
//!   only", CAP_PERFMON or not: kprobes attach through perf_event_open(), so with the
//!   DaemonSet's capabilities the probes cannot attach there (EACCES in the lab on Debian's
//!   5.10, 6.1, 6.12 and 7.2) although the program loads.
//!
//! That is what a DaemonSet's named capabilities meet on a node, so `check` run in the pod
//! answers for the pod.

use std::fmt::Write as _;
use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd};

use aya::maps::MapType;
use aya::programs::{ProgramError, ProgramType};
use aya::sys::{is_map_supported, is_program_supported};

/// Writes the three lines; a refusal is a problem (`trace` would fail on the same call).
/// `privileged`: whether the `privileges` line found the capabilities, which decides what an
/// EPERM means.
pub(super) fn write(out: &mut String, privileged: bool, problems: &mut Vec<String>) {
    // An array is the simplest map every kernel with bpf() has; creating it takes the same
    // privileges as the ring buffer and hash maps trace creates.
    let map = match is_map_supported(MapType::Array) {
        Ok(true) => Ok(()),
        Ok(false) => Err("the kernel creates no array map".to_owned()),
        Err(err) => Err(refusal(err.call, &err.io_error, privileged)),
    };
    // A kprobe program: what the probes are without CAP_SYS_ADMIN (the DaemonSet's case), and
    // like every tracing type it needs CAP_PERFMON on top of CAP_BPF. The kernel registers the
    // type with CONFIG_BPF_EVENTS, kprobes or not: loading it proves the privileges, not that
    // kprobes can attach.
    let program = match is_program_supported(ProgramType::KProbe) {
        Ok(true) => Ok(()),
        Ok(false) => Err("the kernel has no kprobe programs (CONFIG_BPF_EVENTS)".to_owned()),
        Err(ProgramError::SyscallError(err)) => Err(refusal(err.call, &err.io_error, privileged)),
        Err(err) => Err(err.to_string()),
    };
    let perf = perf_event().map_err(|err| {
        let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
            .ok()
            .and_then(|text| text.trim().parse().ok());
        perf_refusal(&err, privileged, paranoid)
    });
    for (label, result, done) in [
        ("bpf map    ", map, "an array map created and closed"),
        (
            "bpf program",
            program,
            "a kprobe program loaded and closed, not attached",
        ),
        (
            "perf events",
            perf,
            "a CPU-wide perf event opened and closed (kprobes attach through one)",
        ),
    ] {
        // Writing into a String cannot fail.
        let _ = match result {
            Ok(()) => writeln!(out, "{label} ok: {done}"),
            Err(why) => {
                problems.push(format!("{} refused", label.trim_end()));
                writeln!(out, "{label} NOT OK: {why}")
            }
        };
    }
}

/// What a failed bpf() call means, with the way out.
fn refusal(call: &str, err: &io::Error, privileged: bool) -> String {
    match err.raw_os_error() {
        Some(libc::EPERM) if privileged => format!(
            "`{call}`: {err}, although the capabilities are there: a seccomp profile (container \
             runtimes' defaults that allow bpf() with CAP_SYS_ADMIN only), a lockdown LSM or a \
             user namespace forbids bpf(); in a pod, add SYS_ADMIN or use a seccomp profile that \
             allows bpf and perf_event_open with CAP_BPF and CAP_PERFMON"
        ),
        Some(libc::EPERM) => format!("`{call}`: {err}: the privileges above are missing"),
        _ => format!("`{call}`: {err}"),
    }
}

/// Opens a disabled, CPU-wide dummy software event on CPU 0 and closes it: the permission
/// checks of a kprobe's perf event (any process, kernel included: CAP_PERFMON past
/// `perf_event_paranoid` 0, and the distributions' paranoid 3), without registering a kprobe
/// (the host may have none).
fn perf_event() -> io::Result<()> {
    /// `struct perf_event_attr` up to `config1`: PERF_ATTR_SIZE_VER0, which every kernel takes.
    #[repr(C)]
    struct PerfEventAttr {
        kind: u32,
        size: u32,
        config: u64,
        sample_period: u64,
        sample_type: u64,
        read_format: u64,
        /// `disabled` is bit 0; every other flag stays 0 (kernel and user counted).
        flags: u64,
        wakeup_events: u32,
        bp_type: u32,
        config1: u64,
    }
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_DUMMY: u64 = 9;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_DUMMY,
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags: 1,
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it states, alive for the call;
    // pid -1 with cpu 0 is a CPU-wide event, no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            std::ptr::from_ref(&attr),
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("perf_event_open returned no fd"))?;
    // SAFETY: a new descriptor, owned by no one else; dropping it closes the event.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// What a refused perf_event_open() means, with the way out; `paranoid`: the sysctl
/// kernel.perf_event_paranoid, if readable.
fn perf_refusal(err: &io::Error, privileged: bool, paranoid: Option<i32>) -> String {
    match (err.raw_os_error(), paranoid) {
        (Some(libc::EACCES), Some(level)) if privileged && level >= 3 => format!(
            "`perf_event_open`: {err}: kernel.perf_event_paranoid is {level}, where Debian's \
             kernels (and others with the same patch) allow perf events to CAP_SYS_ADMIN only, \
             CAP_PERFMON or not, so kprobes cannot attach; add SYS_ADMIN (which also gives the \
             cheaper trampolines), or set `sysctl kernel.perf_event_paranoid=2` on the node"
        ),
        (Some(libc::EPERM), _) if privileged => format!(
            "`perf_event_open`: {err}, although the capabilities are there: a seccomp profile \
             (container runtimes' defaults that allow perf_event_open() with CAP_SYS_ADMIN \
             only), a lockdown LSM or a user namespace forbids it; in a pod, add SYS_ADMIN or \
             use a seccomp profile that allows it with CAP_PERFMON"
        ),
        (Some(libc::EACCES | libc::EPERM), _) if !privileged => {
            format!("`perf_event_open`: {err}: the privileges above are missing")
        }
        _ => format!("`perf_event_open`: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{perf_refusal, refusal};
    use std::io;

    #[test]
    fn an_eperm_with_the_capabilities_points_past_them() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let with = refusal("bpf_map_create", &eperm, true);
        assert!(with.contains("seccomp"), "{with}");
        let without = refusal("bpf_map_create", &eperm, false);
        assert!(without.contains("privileges above"), "{without}");
        let other = refusal(
            "bpf_prog_load",
            &io::Error::from_raw_os_error(libc::EINVAL),
            true,
        );
        assert!(other.starts_with("`bpf_prog_load`: "), "{other}");
        assert!(!other.contains("seccomp"), "{other}");

        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        let perf = perf_refusal(&eperm, true, Some(2));
        assert!(perf.contains("seccomp"), "{perf}");
        let perf = perf_refusal(&eacces, false, Some(3));
        assert!(perf.contains("privileges above"), "{perf}");
        // Debian's paranoid 3: CAP_PERFMON is not enough.
        let perf = perf_refusal(&eacces, true, Some(3));
        assert!(
            perf.contains("perf_event_paranoid is 3") && perf.contains("SYS_ADMIN"),
            "{perf}"
        );
        let perf = perf_refusal(&eacces, true, Some(2));
        assert!(!perf.contains("paranoid"), "{perf}");
    }
}
