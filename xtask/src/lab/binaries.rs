//! The statically linked programs that go into the guest: `ipvs-trace`, the traffic tool
//! `lab-net`, and the in-repo `kube-apiserver` that serves the lab's Kubernetes objects.
//!
//! The guest has no glibc of the right version for arbitrary binaries, so both are linked with
//! `+crt-static`. The flag is scoped to the target triple (`CARGO_TARGET_<triple>_RUSTFLAGS` with
//! an explicit `--target`), so build scripts and proc-macros, which cargo builds for the host
//! without `--target` flags, stay dynamic and share nothing with these artifacts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context as _, Result};

use crate::{cmd, paths};

const TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub ipvs_trace: PathBuf,
    pub lab_net: PathBuf,
    pub kube_apiserver: PathBuf,
}

/// Builds the binaries once per process (later lab runs in the same process reuse them: the
/// sources cannot change under a running test binary). The caller holds the build lock.
pub(crate) fn ensure() -> Result<&'static Binaries> {
    static BUILT: OnceLock<Binaries> = OnceLock::new();
    if let Some(built) = BUILT.get() {
        return Ok(built);
    }
    let built = build()?;
    Ok(BUILT.get_or_init(|| built))
}

fn build() -> Result<Binaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let flags_var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        TARGET.to_uppercase().replace('-', "_")
    );
    cmd::run(
        Command::new(cargo)
            .env(&flags_var, "-C target-feature=+crt-static")
            .current_dir(paths::workspace_root())
            .args(["build", "--release", "--target", TARGET])
            .args(["-p", "ipvs-trace", "--bin", "ipvs-trace"])
            .args(["-p", "ipvs-trace-tests", "--bin", "lab-net"])
            .args(["--bin", "kube-apiserver"]),
    )
    .context("building the static binaries for the VM lab")?;
    let dir = paths::target_dir().join(TARGET).join("release");
    let binaries = Binaries {
        ipvs_trace: dir.join("ipvs-trace"),
        lab_net: dir.join("lab-net"),
        kube_apiserver: dir.join("kube-apiserver"),
    };
    for binary in [
        &binaries.ipvs_trace,
        &binaries.lab_net,
        &binaries.kube_apiserver,
    ] {
        if has_interpreter(binary)? {
            bail!(
                "{} is dynamically linked although it was built with +crt-static for {TARGET}; \
                 RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS in the environment override \
                 {flags_var}: unset them",
                binary.display()
            );
        }
    }
    Ok(binaries)
}

/// True if the ELF file asks for a dynamic loader (has a `PT_INTERP` program header).
fn has_interpreter(path: &Path) -> Result<bool> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    elf_has_interpreter(&data)
        .with_context(|| format!("{} is not a 64-bit ELF file", path.display()))
}

fn elf_has_interpreter(data: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?));
    // ELF magic, 64-bit class, little endian.
    if data.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_binaries_show_their_linkage() {
        // busybox-static is static, ipvsadm dynamic: both are lab requirements on the host.
        assert!(!has_interpreter(Path::new("/bin/busybox")).unwrap());
        assert!(has_interpreter(Path::new("/usr/sbin/ipvsadm")).unwrap());
    }

    #[test]
    fn non_elf_is_rejected() {
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
        assert_eq!(elf_has_interpreter(b"\x7fELF\x02\x01"), None);
    }
}
