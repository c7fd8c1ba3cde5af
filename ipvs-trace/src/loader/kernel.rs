//! Facts about the running kernel: its release, and whether ip_vs is there.

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
