//! `ipvs-trace --version`: the format a bug report quotes, a commit that exists, and an eBPF
//! hash that is the hash of the object the binary really carries.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

/// The eBPF object build.rs hashed and `src/loader` embeds: the same file of the same build
/// (OUT_DIR is this package's build-script output for every one of its targets).
static EBPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ipvs-trace"));

/// `ipvs-trace 0.1.0 (commit 1a2b3c4[-dirty], ebpf sha256 9f86d081884c)` split into its parts.
#[derive(Debug)]
struct Version<'a> {
    release: &'a str,
    commit: &'a str,
    dirty: bool,
    ebpf_sha256: &'a str,
}

fn parse(line: &str) -> Option<Version<'_>> {
    let rest = line.strip_prefix("ipvs-trace ")?;
    let (release, rest) = rest.split_once(" (commit ")?;
    let (commit, rest) = rest.split_once(", ebpf sha256 ")?;
    let ebpf_sha256 = rest.strip_suffix(')')?;
    let (commit, dirty) = match commit.strip_suffix("-dirty") {
        Some(hash) => (hash, true),
        None => (commit, false),
    };
    let hex = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let commit_ok = hex(commit, 7..=40) || (commit == "unknown" && !dirty);
    (commit_ok && hex(ebpf_sha256, 12..=12)).then_some(Version {
        release,
        commit,
        dirty,
        ebpf_sha256,
    })
}

fn version_output(flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipvs-trace"))
        .arg(flag)
        .output()
        .expect("running ipvs-trace");
    assert!(out.status.success(), "ipvs-trace {flag} failed: {out:?}");
    assert!(out.stderr.is_empty(), "ipvs-trace {flag} wrote on stderr");
    String::from_utf8(out.stdout).expect("--version prints UTF-8")
}

#[test]
fn version_names_release_commit_and_embedded_ebpf_object() {
    let text = version_output("--version");
    let line = text
        .strip_suffix('\n')
        .filter(|line| !line.contains('\n'))
        .unwrap_or_else(|| panic!("--version should print one line: {text:?}"));
    let version = parse(line).unwrap_or_else(|| {
        panic!(
            "--version printed {line:?}, not \
             `ipvs-trace X.Y.Z (commit HASH[-dirty]|unknown, ebpf sha256 12HEX)`"
        )
    });
    assert_eq!(version.release, env!("CARGO_PKG_VERSION"), "{line}");

    // The hash is the object's, and the object is in the binary, byte for byte.
    let mut digest = String::new();
    for byte in Sha256::digest(EBPF_OBJECT) {
        write!(digest, "{byte:02x}").expect("writing to a String");
    }
    assert!(
        digest.starts_with(version.ebpf_sha256),
        "--version says ebpf sha256 {}, the embedded object's is {digest}",
        version.ebpf_sha256
    );
    let binary = std::fs::read(env!("CARGO_BIN_EXE_ipvs-trace")).expect("reading the binary");
    assert!(
        EBPF_OBJECT.len() > 1024
            && binary
                .windows(EBPF_OBJECT.len())
                .any(|window| window == EBPF_OBJECT),
        "the binary does not contain the eBPF object of {} ({} bytes)",
        concat!(env!("OUT_DIR"), "/ipvs-trace"),
        EBPF_OBJECT.len()
    );

    // In this checkout the commit is one of this repository's, HEAD or (when others commit
    // while the tests run) one of its ancestors.
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if root.join(".git").exists() {
        assert_ne!(version.commit, "unknown", "built in a git checkout: {line}");
        let is_ancestor = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["merge-base", "--is-ancestor", version.commit, "HEAD"])
            .status()
            .expect("running git");
        assert!(
            is_ancestor.success(),
            "commit {} of `{line}` is not HEAD or an ancestor of it",
            version.commit
        );
    }

    // -V says the same (clap's short flag), and so does every subcommand (propagate_version).
    assert_eq!(version_output("-V"), text);
}

#[test]
fn subcommands_print_the_same_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipvs-trace"))
        .args(["trace", "--version"])
        .output()
        .expect("running ipvs-trace trace --version");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let top = version_output("--version");
    assert_eq!(
        text.strip_prefix("ipvs-trace-trace "),
        top.strip_prefix("ipvs-trace "),
        "{text:?} vs {top:?}"
    );
}

#[test]
fn parser_refuses_other_shapes() {
    for bad in [
        "ipvs-trace 0.1.0",
        "ipvs-trace 0.1.0 (commit 1a2b3c4)",
        "ipvs-trace 0.1.0 (commit 1a2b3c, ebpf sha256 9f86d081884c)",
        "ipvs-trace 0.1.0 (commit 1A2B3C4, ebpf sha256 9f86d081884c)",
        "ipvs-trace 0.1.0 (commit 1a2b3c4, ebpf sha256 9f86d081884)",
        "ipvs-trace 0.1.0 (commit unknown-dirty, ebpf sha256 9f86d081884c)",
        "ipvs-trace 0.1.0 (commit 1a2b3c4, ebpf sha256 9f86d081884c",
    ] {
        assert!(parse(bad).is_none(), "accepted {bad:?}");
    }
    let ok = parse("ipvs-trace 0.1.0 (commit 1a2b3c4-dirty, ebpf sha256 9f86d081884c)").unwrap();
    assert_eq!(
        (ok.release, ok.commit, ok.dirty, ok.ebpf_sha256),
        ("0.1.0", "1a2b3c4", true, "9f86d081884c")
    );
    let ok = parse("ipvs-trace 0.1.0 (commit unknown, ebpf sha256 9f86d081884c)").unwrap();
    assert_eq!(ok.commit, "unknown");
}
