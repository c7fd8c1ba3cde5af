//! Capability checks before any bpf() call.

use super::LoadError;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks the effective capabilities for loading programs and attaching kprobes.
///
/// CAP_SYS_ADMIN alone is enough (kernels before 5.8 know nothing else); otherwise CAP_BPF and
/// CAP_PERFMON are both needed.
pub fn check() -> Result<(), LoadError> {
    let Some(effective) = effective_caps() else {
        // No /proc or an unexpected format: let the kernel decide and explain its answer.
        return Ok(());
    };
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect();
    Err(LoadError::Privileges {
        missing: missing.join(", "),
    })
}

/// `CapEff` of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Turns an EPERM from loading into the privileges message; other errors pass through.
#[must_use]
pub fn explain_load_error(err: anyhow::Error) -> anyhow::Error {
    let denied = err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EPERM))
    });
    if denied {
        err.context(LoadError::Privileges {
            missing: "none by /proc/self/status, yet the kernel refused with EPERM (a user \
                      namespace, seccomp or a lockdown LSM may forbid BPF)"
                .to_owned(),
        })
    } else {
        err.context("loading the eBPF programs")
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cap_eff;

    #[test]
    fn reads_cap_eff() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x01ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name:\tcat\n"), None);
    }
}
