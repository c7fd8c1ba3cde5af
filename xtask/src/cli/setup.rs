//! `cargo xtask setup`.

use std::process::ExitCode;

/// Check and install what the build and the VM lab need (idempotent; needs root to install).
///
/// Debian packages (QEMU, busybox-static, ipvsadm, iproute2, kmod, xz-utils, and LLVM 22 for
/// bpf-linker: `apt-get update` runs only when something is missing), the nightly toolchain
/// with rust-src, bpf-linker 0.13.x built against LLVM 22, and the Debian 6.1 and 6.12 kernel
/// packages for the lab (downloaded with `apt-get download`, verified against the archive's
/// SHA256, unpacked under target/lab/kernels; never installed). Prints one line per check.
#[derive(Debug, clap::Args)]
pub(super) struct Args {}

pub(super) fn run(_args: &Args) -> anyhow::Result<ExitCode> {
    crate::setup::run()?;
    Ok(ExitCode::SUCCESS)
}
