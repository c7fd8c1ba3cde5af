//! Host set-up: everything the build and the VM lab need, checked and installed if missing.
//!
//! Idempotent and talkative: every check prints one line, and a machine that has everything
//! gets through in seconds without touching the network.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::cmd;
use crate::lab::{self, kernel, Kernel};

/// The VM lab's tools (xz and zstd unpack Debian's modules and kernels), then what bpf-linker links against (Debian's LLVM 22, the LLVM of the
/// Rust toolchains in use).
const APT_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "ipvsadm",
    "conntrack",
    // kube-proxy's nftables and iptables modes in the lab: nft, iptables-nft and -legacy.
    "nftables",
    "iptables",
    "iproute2",
    "kmod",
    "xz-utils",
    "zstd",
    "llvm-22-dev",
    "libclang-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "libxml2-dev",
    // tests/tests/image.rs: the DaemonSet's image run with its privileges. runc, as crun 1.8
    // refuses these machines' hybrid cgroup hierarchy.
    "podman",
    "runc",
    // promtool: the tests check deploy/prometheus's rules and the dashboard's queries with it,
    // and the lab's metrics scenario checks a real scrape with it (copied into that boot only).
    "prometheus",
];

/// bpf-linker 0.13 is the series verified against LLVM 22 with these toolchains.
const BPF_LINKER_SERIES: &str = "0.13";

pub fn run() -> Result<()> {
    ensure_packages("Debian packages", APT_PACKAGES)?;
    nightly()?;
    bpf_linker()?;
    kernels()?;
    println!("setup: done");
    Ok(())
}

/// Installs those of `packages` that are missing (Debian's), saying what it checks as `what`;
/// never removes or downgrades anything.
pub fn ensure_packages(what: &str, packages: &[&str]) -> Result<()> {
    println!("setup: {what}");
    let out = cmd::output(
        Command::new("dpkg-query")
            .args(["-W", "-f", "${Package}\t${db:Status-Abbrev}\t${Version}\n"])
            .args(packages),
    )?;
    // dpkg-query exits 1 when some package is unknown and still lists the others.
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut missing = Vec::new();
    for package in packages {
        let installed = listing.lines().find_map(|line| {
            let mut fields = line.split('\t');
            let (name, status, version) = (fields.next()?, fields.next()?, fields.next()?);
            (name == *package && status.starts_with("ii")).then(|| version.to_owned())
        });
        if let Some(version) = installed {
            println!("  ok       {package} {version}");
        } else {
            println!("  missing  {package}");
            missing.push(*package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    crate::apt::install(&missing)
}

fn nightly() -> Result<()> {
    println!("setup: Rust nightly with rust-src (builds the eBPF crate with -Z build-std=core)");
    let toolchains = cmd::stdout(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to manage the nightly toolchain: see https://rustup.rs")?;
    if toolchains.lines().any(|line| line.starts_with("nightly-")) {
        let version = cmd::stdout(Command::new("rustc").arg("+nightly").arg("--version"))?;
        println!("  ok       {}", version.trim());
    } else {
        println!("  missing  nightly toolchain");
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let components = cmd::stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if components.lines().any(|line| line.starts_with("rust-src")) {
        println!("  ok       rust-src");
        return Ok(());
    }
    println!("  missing  rust-src");
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn bpf_linker() -> Result<()> {
    println!("setup: bpf-linker {BPF_LINKER_SERIES}.x against Debian's LLVM 22");
    let found = cmd::output(Command::new("bpf-linker").arg("--version"))
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if let Some(version) = &found {
        if version.starts_with(&format!("bpf-linker {BPF_LINKER_SERIES}.")) {
            println!("  ok       {version}");
            return Ok(());
        }
        println!("  wrong    {version} (want {BPF_LINKER_SERIES}.x)");
    } else {
        println!("  missing  bpf-linker");
    }
    let mut install = Command::new("cargo");
    // Without LLVM_PREFIX the build looks for LLVM in the wrong place: "unable to find library
    // -lLLVM". The default feature would want LLVM 23, which Debian does not ship.
    install
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .args(["install", "bpf-linker", "--version"])
        .arg(format!("~{BPF_LINKER_SERIES}"))
        .args(["--no-default-features", "--features", "llvm-22"]);
    if found.is_some() {
        install.arg("--force");
    }
    cmd::run(&mut install)?;
    let after = cmd::stdout(Command::new("bpf-linker").arg("--version"))
        .context("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH")?;
    if !after.starts_with(&format!("bpf-linker {BPF_LINKER_SERIES}.")) {
        bail!("installed bpf-linker reports `{}`", after.trim());
    }
    Ok(())
}

fn kernels() -> Result<()> {
    println!("setup: Debian kernels for the VM lab (cached under target/lab/kernels)");
    // A test run may be fetching the same kernel right now.
    let _lock = lab::lock()?;
    for k in Kernel::ALL {
        let tree = kernel::ensure(k)?;
        println!("  ok       {k}: {} {}", tree.package, tree.version);
    }
    Ok(())
}
