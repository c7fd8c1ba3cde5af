//! The argument groups several subcommands flatten in (where Kubernetes names come from, how
//! the probes are loaded) and the value parsers they share.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};

use crate::kube::source::NameSource;
use crate::loader::probes::AttachMode;

/// Where Kubernetes names come from: the flags shared by every subcommand that shows names.
///
/// They form the `kube_source` group, so that `--no-kube` refuses them all at once; each
/// subcommand's name filters conflict with `--no-kube` on their side.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("kube_source").multiple(true)))]
pub struct NameSourceArgs {
    /// Watch the cluster of this kubeconfig (its current context) for names. Without it, the
    /// cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service
    /// account when running in a pod; with none of them, addresses only. Needs list and watch
    /// on pods, services, nodes and endpointslices (see README).
    #[arg(long, value_name = "FILE", group = "kube_source")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubernetes names from a snapshot instead of a live cluster: the output of
    /// `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in
    /// several files is taken from the last.
    #[arg(
        long,
        value_name = "FILE",
        group = "kube_source",
        conflicts_with = "kubeconfig"
    )]
    pub kube_snapshot: Vec<PathBuf>,

    /// Never contact the Kubernetes API, even when a cluster is configured: addresses only.
    #[arg(long, conflicts_with = "kube_source")]
    pub no_kube: bool,
}

impl NameSourceArgs {
    /// The source these flags choose.
    #[must_use]
    pub fn into_source(self) -> NameSource {
        if self.no_kube {
            NameSource::Off
        } else if let Some(path) = self.kubeconfig {
            NameSource::Kubeconfig(path)
        } else if self.kube_snapshot.is_empty() {
            NameSource::Auto
        } else {
            NameSource::Snapshots(self.kube_snapshot)
        }
    }
}

/// How the probes are loaded: the same flags for every command that traces.
#[derive(Debug, clap::Args)]
pub struct LoaderArgs {
    /// Kernel type information (split BTF of the ip_vs module, e.g. produced offline by pahole)
    /// for full detail on kernels without /sys/kernel/btf/ip_vs (without it, 5.x/6.x kernels
    /// are traced with a built-in layout: README "Kernels without module BTF").
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,

    /// Size of the kernel-to-user ring buffer: a power of two, a multiple of the page size;
    /// suffixes K and M (binary) allowed, e.g. 1M. Raise it if events are reported lost.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,

    /// How the probes hook the kernel. auto: each through a BPF trampoline (fentry/fexit: no
    /// trap, the cheapest) where the kernel takes one (module BTF, 5.11+; fexit 5.17+; root or
    /// CAP_SYS_ADMIN to find ip_vs's BTF), a kprobe otherwise, saying why. fentry: trampolines
    /// only, failing where the kernel cannot. kprobe: kprobes only. The tracing line and
    /// `ipvs-trace check --attach MODE` show what each probe gets.
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        default_value_t = AttachMode::Auto,
        env = "IPVS_TRACE_ATTACH"
    )]
    pub attach: AttachMode,

    /// The dataplanes to trace, comma separated: ipvs (kube-proxy's IPVS mode: virtual
    /// services), nftables and iptables (kube-proxy's netfilter modes: the DNAT binding of each
    /// new connection, whose endpoint a random rule chose). Default: every dataplane the node
    /// has, so a node half-way through a migration shows both; each event says its
    /// `dataplane`. Without ipvs no IPVS probe is attached; without nftables and iptables, no
    /// netfilter one.
    #[arg(
        long,
        value_name = "LIST",
        value_enum,
        value_delimiter = ',',
        env = "IPVS_TRACE_DATAPLANE"
    )]
    pub dataplane: Vec<crate::dataplane::Dataplane>,
}

pub(super) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match crate::duration::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("the duration must be longer than 0".into()),
        Ok(duration) => Ok(duration),
        Err(err) => Err(err.to_string()),
    }
}

/// The system's page size (the ring buffer is mapped in pages).
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    parse_ring_size_with_page(text, page_size())
}

/// A ring size the kernel accepts: `BPF_MAP_TYPE_RINGBUF` wants a power of two that is a
/// multiple of the page size, and `max_entries` is a `u32`.
fn parse_ring_size_with_page(text: &str, page: u64) -> Result<u32, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        _ => {
            return Err(format!(
                "{text:?}: expected a byte count with an optional K or M suffix, e.g. 262144 or 1M"
            ));
        }
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?}: expected a byte count, e.g. 262144 or 1M"))?;
    if !bytes.is_power_of_two() || bytes % page != 0 {
        return Err(format!(
            "{text:?} is {bytes} bytes: the ring size must be a power of two and a multiple of \
             the page size ({page}), e.g. 256K or 1M"
        ));
    }
    u32::try_from(bytes).map_err(|_| format!("{text:?} is too large: at most 2048M"))
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser as _;

    #[test]
    fn name_sources() {
        let names = |args: &[&str]| {
            let command_line = ["ipvs-trace", "trace"].iter().chain(args);
            let Command::Trace(args) = Cli::try_parse_from(command_line).unwrap().command else {
                panic!("not parsed as trace")
            };
            args.names.into_source()
        };
        assert_eq!(names(&[]), NameSource::Auto);
        assert_eq!(names(&["--no-kube"]), NameSource::Off);
        assert_eq!(
            names(&["--kubeconfig", "/etc/kubernetes/kubelet.conf"]),
            NameSource::Kubeconfig("/etc/kubernetes/kubelet.conf".into())
        );
        // A name filter alone is fine here: whether a cluster is configured is known at run
        // time (kube::source).
        assert_eq!(names(&["--service", "ratel/web"]), NameSource::Auto);
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size_with_page("4096", 4096), Ok(4096));
        assert_eq!(parse_ring_size_with_page("256K", 4096), Ok(256 << 10));
        assert_eq!(parse_ring_size_with_page("16MiB", 4096), Ok(16 << 20));
        assert_eq!(parse_ring_size_with_page("2048M", 4096), Ok(1 << 31));
        // A power of two below the page size, one that is not a power of two, and overflow.
        for bad in [
            "2048",
            "12288",
            "3M",
            "4096M",
            "",
            "K",
            "1G",
            "-4096",
            "99999999999999999999",
        ] {
            assert!(
                parse_ring_size_with_page(bad, 4096).is_err(),
                "{bad:?} accepted"
            );
        }
        // On a 64 KiB page system (arm64, ppc64) 16K is too small.
        assert!(parse_ring_size_with_page("16K", 65536).is_err());
        assert_eq!(parse_ring_size_with_page("64K", 65536), Ok(65536));
    }
}
