//! `cargo xtask demo`.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::lab::Kernel;
use crate::paths;

/// The demo: a kube-proxy-like node in a VM, with `ipvs-trace trace` printing live.
///
/// Runs `setup`, then `tests/demo.sh` in the lab: the seed Service of DESIGN.md
/// (ratel/vpaas-demo-prod, 172.31.42.227:80 -> pods on :8080 and :50091, rr, Masq) with clients
/// connecting while ipvs-trace prints each IPVS decision, then the summary and the guest's
/// `ipvsadm -Ln` for comparison.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Debian kernel series to boot: 6.1 or 6.12.
    #[arg(long, default_value = "6.1")]
    kernel: Kernel,
    /// Seconds for the whole boot and demo before QEMU is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    timeout: u64,
}

pub(super) fn run(args: &Args) -> Result<ExitCode> {
    let script = paths::workspace_root().join("tests/demo.sh");
    if !script.is_file() {
        bail!(
            "the demo scenario tests/demo.sh is not in this checkout yet, so there is nothing \
             to show; `cargo xtask lab --script FILE` runs any script of your own"
        );
    }
    crate::setup::run()?;
    super::lab::run_script(args.kernel, &script, &[], args.timeout, false)
}
