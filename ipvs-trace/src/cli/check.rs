//! Arguments of `ipvs-trace check`.

use std::path::PathBuf;

use clap::Args;

use crate::events::model::EventKind;
use crate::filter::parse_event_kind;
use crate::loader::probes::AttachMode;

/// Arguments of `ipvs-trace check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Split BTF of the ip_vs module to check instead of /sys/kernel/btf/ip_vs (as `trace --btf`).
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,

    /// Check what `trace --event KIND[,KIND...]` would attach: only the probes of those kinds
    /// (new, template: ip_vs_conn_new; reused: tcp_state_transition, which runs per packet;
    /// no_dest: ip_vs_leave). Without it, every probe, as serve, top and balance attach them.
    #[arg(
        long,
        value_name = "KIND[,KIND...]",
        value_delimiter = ',',
        value_parser = parse_event_kind
    )]
    pub event: Vec<EventKind>,

    /// Check what `trace --attach MODE` would attach: auto (a trampoline where the kernel
    /// takes one, a kprobe otherwise), fentry or kprobe. The kernel alone can refuse a
    /// trampoline that looks possible here (`check` loads nothing): trace then says so.
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        default_value_t = AttachMode::Auto,
        env = "IPVS_TRACE_ATTACH"
    )]
    pub attach: AttachMode,

    /// Check what `trace --dataplane LIST` would attach: ipvs (the probes on ip_vs), nftables
    /// and iptables (the probe on nf_nat). Without it, every dataplane.
    #[arg(
        long,
        value_name = "LIST",
        value_enum,
        value_delimiter = ',',
        env = "IPVS_TRACE_DATAPLANE"
    )]
    pub dataplane: Vec<crate::dataplane::Dataplane>,
}

impl CheckArgs {
    #[must_use]
    pub fn into_config(self) -> crate::cmd::check::CheckConfig {
        crate::cmd::check::CheckConfig {
            btf: self.btf,
            kinds: self.event,
            attach: self.attach,
            dataplanes: self.dataplane,
        }
    }
}
