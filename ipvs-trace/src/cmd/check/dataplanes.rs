//! `check`'s dataplane lines: which of kube-proxy's dataplanes this node runs, read from the
//! kernel's own tables (IPVS virtual services; kube-proxy's nf_tables table; the
//! `KUBE-SERVICES` chain of the iptables `nat` table), and which probes serve each.

use std::fmt::Write as _;

use crate::dataplane::Dataplane;
use crate::ipvs::{self, IpvsError};
use crate::netfilter::NetfilterRules;

/// One `dataplane` line per dataplane: present or not, with the count of Service ports, and
/// the probe that sees its decisions. Counts only: the lines stay comparable between nodes.
pub(super) fn write(out: &mut String) {
    let ipvs = match ipvs::read_tables() {
        Ok(tables) => format!("{} virtual services", tables.services.len()),
        Err(IpvsError::NotLoaded) => "none (ip_vs not loaded)".to_owned(),
        Err(err) => format!("unknown ({err})"),
    };
    let _ = writeln!(
        out,
        "dataplane   ipvs: {ipvs}; probes on ip_vs_conn_new, tcp_state_transition, ip_vs_leave"
    );
    match NetfilterRules::read() {
        Ok(rules) => {
            let modes = rules.modes();
            for (dataplane, table) in [
                (Dataplane::Nftables, "kube-proxy's nf_tables table"),
                (Dataplane::Iptables, "KUBE-SERVICES in the nat table"),
            ] {
                let found = if modes.contains(&dataplane) {
                    let ports = rules
                        .services()
                        .iter()
                        .filter(|s| s.dataplane() == dataplane)
                        .count();
                    format!("{table}, {ports} Service ports")
                } else {
                    format!("none (no {table})")
                };
                let _ = writeln!(
                    out,
                    "dataplane   {dataplane}: {found}; probe on nf_nat_setup_info"
                );
            }
            for notice in rules.notices() {
                let _ = writeln!(out, "dataplane   note: {notice}");
            }
        }
        Err(err) => {
            let _ = writeln!(
                out,
                "dataplane   nftables, iptables: unknown (reading the netfilter rules: {err:#})"
            );
        }
    }
}
