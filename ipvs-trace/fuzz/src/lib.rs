//! What the fuzz targets share: the loader's questions to a parsed BTF, and the replay of
//! several netlink replies held in one fuzz input.
//!
//! The targets call the library's real entry points, the ones the tracer calls on bytes it
//! did not make: `events::decode` on ring-buffer records, `Btf::from_file_bytes` and the
//! loader's offset resolution on BTF files, `ipvs::read_with` and `conntrack::get_reply` on
//! netlink replies. Each must return an error for bad input, never panic, loop or allocate
//! without bound: libFuzzer reports any of those as a crash.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use ipvs_trace::btf::Btf;
use ipvs_trace::cmd::check::offsets_report;
use ipvs_trace::ipvs::netlink::Transport;
use ipvs_trace::ipvs::IpvsError;
use ipvs_trace::loader::probes::PROBES;
use ipvs_trace::loader::{KernelTypes, Layout};

/// Separates the replies of one `ipvs_netlink` input (family, info, services, then one dests
/// dump per service: the order `ipvs::read_with` asks in). `cargo xtask fuzz` writes its seeds
/// with the same bytes; a mutation inside one reply leaves the others where they were.
pub const REPLY_SEPARATOR: &[u8] = b"--next-reply--";

/// A kernel release as `uname -r` prints it: only messages and the built-in layout's major
/// version check read it.
const RELEASE: &str = "6.12.117+deb12-amd64";

/// Everything the loader and `ipvs-trace check` ask of the kernel's types, on `btf`: the
/// offsets from BTF (module layout) and from the built-in layout (vmlinux only), their report,
/// and each probe's fit against its function's prototype.
pub fn loader_queries(btf: Btf) {
    let types = KernelTypes {
        btf,
        layout: Layout::ModuleBtf {
            path: PathBuf::from("fuzz-input"),
            given: true,
        },
        vmlinux: PathBuf::from("fuzz-vmlinux"),
        // The NAT probe's module BTF is not what these targets feed.
        nf_nat: None,
    };
    if let Ok(resolved) = types.offsets(RELEASE) {
        let _ = offsets_report(&resolved.offsets);
    }
    let builtin = KernelTypes {
        layout: Layout::Builtin {
            missing: PathBuf::from("fuzz-ip_vs"),
        },
        ..types
    };
    if let Ok(resolved) = builtin.offsets(RELEASE) {
        let _ = offsets_report(&resolved.offsets);
    }
    for probe in PROBES {
        let _ = probe.fit(Some(&builtin.btf), None);
        let _ = builtin.btf.has_function(probe.function);
    }
}

/// The vmlinux BTF under `btf_split`'s inputs: the file `IPVS_TRACE_FUZZ_VMLINUX` names (an
/// ELF vmlinux or raw BTF; `cargo xtask fuzz` sets it to the 6.12 lab kernel's, the kernel
/// the split seeds come from). A split blob is only meaningful on top of its own base.
pub fn vmlinux_base() -> Arc<Btf> {
    const VAR: &str = "IPVS_TRACE_FUZZ_VMLINUX";
    let Some(path) = std::env::var_os(VAR) else {
        eprintln!(
            "{VAR} is not set: run this target with `cargo xtask fuzz --target btf_split`, or \
             set it to a vmlinux (ELF or raw BTF) such as /sys/kernel/btf/vmlinux"
        );
        std::process::exit(2);
    };
    let path = PathBuf::from(path);
    match Btf::from_file(&path, None) {
        Ok(btf) => Arc::new(btf),
        Err(err) => {
            eprintln!("{VAR}={}: {err}", path.display());
            std::process::exit(2);
        }
    }
}

/// The replies of one input, handed out one per request as the kernel would.
pub struct Replies<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Replies<'a> {
    #[must_use]
    pub fn new(input: &'a [u8]) -> Replies<'a> {
        Replies { rest: Some(input) }
    }
}

impl Iterator for Replies<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let rest = self.rest?;
        let at = rest
            .windows(REPLY_SEPARATOR.len())
            .position(|w| w == REPLY_SEPARATOR);
        let (reply, after) = match at {
            Some(at) => (&rest[..at], Some(&rest[at + REPLY_SEPARATOR.len()..])),
            None => (rest, None),
        };
        self.rest = after;
        Some(reply.to_vec())
    }
}

impl Transport for Replies<'_> {
    fn round_trip(&mut self, what: &'static str, _request: &[u8]) -> Result<Vec<u8>, IpvsError> {
        self.next().ok_or_else(|| IpvsError::Io {
            what: format!("replaying {what}"),
            source: io::Error::other("the input holds no more replies"),
        })
    }
}
