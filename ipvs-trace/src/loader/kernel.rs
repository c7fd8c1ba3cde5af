//! Facts about the running kernel: its release, and whether ip_vs is there.

use std::{path::Path, time::Duration};

use super::LoadError;

/// `/sys/module/ip_vs` exists once the module is loaded (or when it is built in).
const IP_VS_MODULE: &str = "/sys/module/ip_vs";
const IP_VS_BTF: &str = "/sys/kernel/btf/ip_vs";
const WAIT_POLL: Duration = Duration::from_millis(250);

/// `uname -r`, for messages.
#[must_use]
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "(unknown release)".to_owned(), |s| s.trim().to_owned())
}

/// Fails with [`LoadError::IpVsNotLoaded`] unless ip_vs is loaded; with `wait`, polls until it is.
pub async fn ensure_ip_vs(wait: bool) -> Result<(), LoadError> {
    if Path::new(IP_VS_MODULE).exists() {
        return Ok(());
    }
    if !wait {
        return Err(LoadError::IpVsNotLoaded);
    }
    eprintln!("ipvs-trace: waiting for the ip_vs module to be loaded");
    while !Path::new(IP_VS_MODULE).exists() {
        tokio::time::sleep(WAIT_POLL).await;
    }
    // The module's sysfs directory appears before its BTF file is registered; give the BTF a
    // moment so the loader does not report a kernel without module BTF by mistake.
    for _ in 0..20 {
        if Path::new(IP_VS_BTF).exists() {
            break;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
    Ok(())
}
