//! What `ipvs-trace --version` says: the release, the git commit the binary was built from and
//! the eBPF object inside it, so that a bug report names exactly what ran. Both build facts
//! come from build.rs; `tests/version.rs` checks the printed hash against the embedded object.

/// `0.1.0 (commit 1a2b3c4, ebpf sha256 9f86d081884c)`: the commit is `1a2b3c4-dirty` when the
/// sources of the binary differed from that commit, `unknown` for a build outside git; the
/// hash is the first 12 hex digits of the SHA-256 of the embedded eBPF object.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IPVS_TRACE_COMMIT"),
    ", ebpf sha256 ",
    env!("IPVS_TRACE_EBPF_SHA256"),
    ")"
);
