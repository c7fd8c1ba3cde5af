//! Errors a user can act on, each saying what to do next.

use crate::btf::BtfError;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The process lacks the capabilities to load and attach kprobes.
    #[error(
        "missing privileges: loading kprobes needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); \
         missing here: {missing}. Run as root, or grant the capabilities, e.g. \
         `setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_resource+ep $(which ipvs-trace)` \
         (CAP_NET_ADMIN reads the IPVS tables, CAP_SYS_RESOURCE lifts the memlock limit on \
         kernels before 5.11)"
    )]
    Privileges { missing: String },

    /// `ip_vs` is not loaded, so there is nothing to trace yet.
    #[error(
        "the ip_vs kernel module is not loaded (no /sys/module/ip_vs): load it with \
         `modprobe ip_vs`, or run kube-proxy in IPVS mode; `--wait` waits for it instead"
    )]
    IpVsNotLoaded,

    /// Neither `ip_vs` nor `nf_nat` is loaded: no dataplane asked for has anything to trace.
    #[error(
        "the ip_vs and nf_nat kernel modules are not loaded (no /sys/module/ip_vs, no \
         /sys/module/nf_nat): kube-proxy loads ip_vs in IPVS mode and nf_nat in its nftables \
         and iptables modes (`modprobe ip_vs` or `modprobe nf_nat`); `--wait` waits for either \
         instead"
    )]
    NothingLoaded,

    /// A BTF file could not be read or parsed (the error names the file).
    #[error(transparent)]
    Btf(#[from] BtfError),

    /// A mandatory probe could not be attached.
    #[error("attaching a {kind} to kernel function `{function}` failed")]
    Attach {
        kind: &'static str,
        function: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// `--attach fentry`, and a probe cannot have its trampoline.
    #[error(
        "--attach fentry: no {hook} on kernel function `{function}`: {why}. `--attach auto` \
         (the default) uses a kprobe where a trampoline cannot be had"
    )]
    NoTrampoline {
        hook: &'static str,
        function: &'static str,
        why: String,
    },

    /// The mandatory probe does not fit this kernel (checked before attaching).
    #[error(
        "the {kind} on kernel function `{function}` does not fit this kernel: {why}. \
         `ipvs-trace check` shows what the tool expects of every probe"
    )]
    Misfit {
        kind: &'static str,
        function: &'static str,
        why: String,
    },

    /// None of the probes the events asked for could be attached.
    #[error(
        "no probe attached: the events asked for need {unavailable}, which this kernel does \
         not take (see the warnings above); `ipvs-trace check` shows every probe"
    )]
    NothingAttached { unavailable: String },
}
