//! Facts about the running kernel: its release, and whether ip_vs and nf_nat are there.

use std::{path::Path, time::Duration};

use super::module_watch::{ModuleSource as _, ModuleState, SysModule};
use super::LoadError;

const IP_VS_BTF: &str = "/sys/kernel/btf/ip_vs";
const WAIT_POLL: Duration = Duration::from_millis(250);

/// `uname -r`, for messages.
#[must_use]
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "(unknown release)".to_owned(), |s| s.trim().to_owned())
}

/// Fails with [`LoadError::IpVsNotLoaded`] unless ip_vs is loaded; with `wait`, polls until it is
/// loaded and its init has completed (its netlink family is registered, the IPVS tables can be
/// read).
pub async fn ensure_ip_vs(wait: bool) -> Result<(), LoadError> {
    let module = SysModule::ip_vs();
    match module.state() {
        ModuleState::Live(_) => return Ok(()),
        // Its functions exist already; without --wait, waiting is not asked for.
        ModuleState::Coming if !wait => return Ok(()),
        ModuleState::Absent if !wait => return Err(LoadError::IpVsNotLoaded),
        ModuleState::Absent => eprintln!("ipvs-trace: waiting for the ip_vs module to be loaded"),
        ModuleState::Coming => {}
    }
    while !matches!(module.state(), ModuleState::Live(_)) {
        tokio::time::sleep(WAIT_POLL).await;
    }
    // The module's BTF file is registered while it is coming, so it is there now on a kernel
    // with module BTF; a short grace all the same before the loader concludes there is none.
    for _ in 0..20 {
        if Path::new(IP_VS_BTF).exists() {
            break;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
    Ok(())
}

/// The inode number of this process's network namespace (what `ip netns identify` and
/// `lsns` show, and what `struct net`'s `ns.inum` holds), or `None` when `/proc` does not say.
#[must_use]
pub fn own_netns() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    // The kernel's namespace inode numbers are `unsigned int`.
    u32::try_from(inode).ok()
}

/// Whether nf_nat is there: loaded as a module, or built in (then it has no /sys/module entry
/// of its own, but its function is in the symbol table).
#[must_use]
pub fn nf_nat_present() -> bool {
    Path::new("/sys/module/nf_nat").exists()
        || super::kallsyms::Kallsyms::read().is_ok_and(|k| k.has_function("nf_nat_setup_info"))
}

/// Waits until ip_vs is live or nf_nat is there, whichever comes first (`--wait` when both
/// IPVS and the netfilter dataplanes are traced).
pub async fn wait_for_any() {
    let ip_vs = SysModule::ip_vs();
    let mut said = false;
    loop {
        if matches!(ip_vs.state(), ModuleState::Live(_)) || nf_nat_present() {
            return;
        }
        if !said {
            eprintln!("ipvs-trace: waiting for the ip_vs or the nf_nat module to be loaded");
            said = true;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}
