//! Builds the eBPF programs (`ipvs-trace-ebpf`) for the BPF target with aya-build; `src/loader`
//! embeds the resulting object with `include_bytes_aligned!`.
//!
//! Also says what the build is made of, for `ipvs-trace --version` (src/cli/version.rs), so a
//! bug report names exactly what ran:
//! - `IPVS_TRACE_COMMIT`: the git commit of the sources (short hash), `-dirty` when the files
//!   that make up the binary differ from it, `unknown` outside a git checkout of this workspace
//!   (a source tarball, a registry copy) or without git;
//! - `IPVS_TRACE_EBPF_SHA256`: the first 12 hex digits of the SHA-256 of the eBPF object that is
//!   embedded, the very file aya-build wrote.
//!
//! Both are cheap (two local git commands, one hash of a file of some hundred KiB) and never
//! touch the network.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

/// The files and folders, relative to the workspace root, whose content makes the `ipvs-trace`
/// binary (beside the eBPF crate, which aya-build watches itself). A change to one of them
/// reruns this script, and a difference from the commit in one of them makes the build
/// `-dirty`; the two lists are one so that they cannot disagree. A change elsewhere (README,
/// the lab) changes nothing in the binary and does not make it dirty.
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "ipvs-trace/Cargo.toml",
    "ipvs-trace/build.rs",
    "ipvs-trace/src",
    "ipvs-trace-common",
    "ipvs-trace-ebpf",
];

/// How many hex digits of the object's SHA-256 `--version` shows: 48 bits tell builds apart.
const EBPF_HASH_DIGITS: usize = 12;

fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "ipvs-trace-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ipvs-trace-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())?;

    let object = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR is not set")?)
        .join("ipvs-trace");
    let bytes = std::fs::read(&object).with_context(|| {
        format!(
            "reading the eBPF object aya-build wrote, {}",
            object.display()
        )
    })?;
    let mut hash = String::with_capacity(EBPF_HASH_DIGITS);
    for byte in &Sha256::digest(&bytes)[..EBPF_HASH_DIGITS / 2] {
        let _ = write!(hash, "{byte:02x}");
    }
    println!("cargo:rustc-env=IPVS_TRACE_EBPF_SHA256={hash}");

    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    for source in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(source).display());
    }
    let commit = git_commit(root).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=IPVS_TRACE_COMMIT={commit}");
    Ok(())
}

/// The short hash of HEAD, with `-dirty` if [`SOURCES`] differ from it (untracked files
/// included: a new module is a change); `None` when `root` is not the top of a git work tree.
/// Emits rerun-if-changed for the git files that move when HEAD or its branch do (a commit, a
/// checkout). Not the index: `git add` changes no source, and any `git status` may rewrite
/// the index, which would rebuild the crate for nothing. Every rerun rebuilds this package,
/// so a commit does; that is the price of a binary that names its commit.
fn git_commit(root: &Path) -> Option<String> {
    // The workspace may sit inside some other repository (a home directory under git, a
    // vendored copy): that repository's commit says nothing about these sources.
    let toplevel = git(root, ["rev-parse", "--show-toplevel"])?;
    let same = Path::new(&toplevel).canonicalize().ok()? == root.canonicalize().ok()?;
    if !same {
        return None;
    }
    // --git-path resolves each file where git keeps it, also in a linked work tree (whose
    // HEAD and index are its own but whose branches live in the main repository).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, ["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for file in watched {
        let Some(path) = git(root, ["rev-parse", "--git-path", &file]) else {
            continue;
        };
        let path = root.join(path);
        // Cargo reruns the script on every build for a watched path that does not exist
        // (packed-refs in a fresh clone, a branch only in packed-refs): watch only real files.
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let hash = git(root, ["rev-parse", "--short=7", "HEAD"])?;
    // --no-optional-locks: a status must not rewrite the index under a concurrent git
    // command (nor change its time for anyone who watches it).
    let mut status = vec!["--no-optional-locks", "status", "--porcelain", "--"];
    status.extend(SOURCES);
    let changes = git_raw(root, status)?;
    Some(if changes.is_empty() {
        hash
    } else {
        format!("{hash}-dirty")
    })
}

/// `git ARGS` in `dir`, its stdout trimmed; `None` if git is missing, fails or prints nothing.
fn git<I, S>(dir: &Path, args: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = git_raw(dir, args)?;
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_owned())
}

/// `git ARGS` in `dir`, its whole stdout; `None` if git is missing or fails.
fn git_raw<I, S>(dir: &Path, args: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}
