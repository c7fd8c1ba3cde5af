//! The dataplane that made a load-balancing decision: kube-proxy's IPVS mode, or one of its
//! netfilter modes, where the choice is a random rule and the decision is the DNAT binding of
//! a new conntrack entry.
//!
//! The kernel cannot tell the two netfilter modes apart (both DNAT through `nf_nat_setup_info`,
//! and iptables-nft runs in nf_tables too): userspace does, by where kube-proxy programmed the
//! destination (`crate::netfilter`).

use std::fmt;

/// One of kube-proxy's dataplanes; the `dataplane` field of the JSON contract.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dataplane {
    /// IPVS virtual services (kube-proxy `--proxy-mode=ipvs`).
    Ipvs,
    /// kube-proxy's `ip kube-proxy` / `ip6 kube-proxy` nf_tables tables (`--proxy-mode=nftables`).
    Nftables,
    /// kube-proxy's `KUBE-SERVICES` chains in the iptables `nat` table, legacy or nf_tables
    /// backed (`--proxy-mode=iptables`).
    Iptables,
}

impl Dataplane {
    pub const ALL: [Dataplane; 3] = [Dataplane::Ipvs, Dataplane::Nftables, Dataplane::Iptables];

    /// The name used in JSON, on the command line and in metrics labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Ipvs => "ipvs",
            Dataplane::Nftables => "nftables",
            Dataplane::Iptables => "iptables",
        }
    }

    /// Whether the decision is netfilter's DNAT (random choice, no IPVS counters).
    #[must_use]
    pub fn is_netfilter(self) -> bool {
        self != Dataplane::Ipvs
    }
}

impl fmt::Display for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
