//! kube-proxy's netfilter Services as the models read them: a Service port's address (or node
//! port) with the endpoints its new connections are DNATed to, each with its share.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::dataplane::Dataplane;
use crate::events::Proto;
use crate::ipvs::Family;

/// Where a netfilter Service came from: the table (and for iptables, the backend) read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// nf_tables table `ip kube-proxy` / `ip6 kube-proxy` (kube-proxy `--proxy-mode=nftables`).
    NftKubeProxy,
    /// nf_tables table `ip nat` / `ip6 nat` as iptables-nft writes it.
    IptablesNft,
    /// The legacy xtables `nat` table (iptables-legacy).
    IptablesLegacy,
}

impl Source {
    #[must_use]
    pub fn dataplane(self) -> Dataplane {
        match self {
            Source::NftKubeProxy => Dataplane::Nftables,
            Source::IptablesNft | Source::IptablesLegacy => Dataplane::Iptables,
        }
    }

    /// How `rules` names it: `nft`, `iptables-nft`, `iptables-legacy`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Source::NftKubeProxy => "nft",
            Source::IptablesNft => "iptables-nft",
            Source::IptablesLegacy => "iptables-legacy",
        }
    }
}

/// One endpoint of a Service, and the share of the Service's new connections it gets.
#[derive(Clone, Debug, PartialEq)]
pub struct NfEndpoint {
    pub addr: SocketAddr,
    /// The probability that a new connection goes to this endpoint: `1/N` for nftables'
    /// `numgen random mod N`, the statistic rule's probability times what earlier rules left
    /// for iptables. They sum to 1 over a Service's endpoints.
    pub probability: f64,
    /// The chain that DNATs to it (`endpoint-...`, `KUBE-SEP-...`).
    pub chain: String,
}

/// One Service port as kube-proxy programmed it in netfilter.
#[derive(Clone, Debug, PartialEq)]
pub struct NfService {
    pub source: Source,
    pub family: Family,
    pub proto: Proto,
    /// The address and port a client connects to. A node port that every address of the node
    /// accepts has the unspecified address (`0.0.0.0:30080`, `[::]:30080`).
    pub vip: SocketAddr,
    /// A node port (`service-nodeports`, `KUBE-NODEPORTS`).
    pub node_port: bool,
    /// `namespace/name:port-name` as kube-proxy wrote it into the chain name
    /// (`service-HASH-ns/name/tcp/port`) or the rule's comment; `None` when it did not.
    pub name: Option<String>,
    /// The chain the address leads to (`service-...`, `external-...`, `KUBE-SVC-...`).
    pub chain: String,
    pub endpoints: Vec<NfEndpoint>,
}

impl NfService {
    #[must_use]
    pub fn dataplane(&self) -> Dataplane {
        self.source.dataplane()
    }

    /// A node port served on every address of the node.
    #[must_use]
    pub fn any_local(&self) -> bool {
        self.node_port && self.vip.ip().is_unspecified()
    }
}

/// The family of an address.
#[must_use]
pub fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// The unspecified address of `family` (a node port on every address).
#[must_use]
pub fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
        Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
    }
}
