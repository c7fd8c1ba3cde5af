//! kube-proxy's netfilter dataplanes, read from the kernel: nftables mode (tables `ip
//! kube-proxy`, `ip6 kube-proxy`) and iptables mode (the `nat` table's `KUBE-SERVICES`
//! chains, in nf_tables as iptables-nft writes them, or in the legacy xtables), each Service
//! port modelled as an address with the endpoints its new connections are DNATed to and the
//! share each gets: what `rules` shows beside IPVS, and what tells a DNAT the kernel made
//! which dataplane made it ([`NetfilterRules::dataplane_of`]).
//!
//! - [`nft`]: the nf_tables reader (netlink, the checked attribute walker of [`crate::ipvs`]).
//! - [`legacy`]: the legacy xtables `nat` table (`getsockopt`).
//! - [`rule`], [`xt`]: one rule's conditions and action, from nf_tables expressions and
//!   xtables blobs; [`chains`] a table's chains as such rules.
//! - [`walk`]: a Service's packet followed through the chains, with the share of each way.
//! - [`kube_nft`], [`kube_ipt`]: where kube-proxy's two modes put their Services.
//!
//! Like IPVS, netfilter is per network namespace: the rules read are those of the namespace
//! the process is in (kube-proxy's are the node's). Blocking; async callers use
//! `spawn_blocking`.

pub mod chains;
pub mod kube_ipt;
pub mod kube_nft;
pub mod legacy;
pub mod model;
pub mod nft;
pub mod rule;
pub mod walk;
pub mod xt;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

pub use model::{NfEndpoint, NfService, Source};

use crate::dataplane::Dataplane;
use crate::ipvs::netlink::{Kernel, Replay, Transport};
use crate::ipvs::Family;
use chains::ChainMap;
pub use nft::NftError;
use nft::{Ruleset, Set, TableId, NFPROTO_IPV4, NFPROTO_IPV6};

/// kube-proxy's netfilter Services of this network namespace, and which modes it has.
#[derive(Clone, Debug, Default)]
pub struct NetfilterRules {
    services: Vec<NfService>,
    modes: BTreeSet<Dataplane>,
    notices: Vec<String>,
    /// Service addresses (and node ports on given node addresses), by protocol and address.
    exact: HashMap<(u8, SocketAddr), Dataplane>,
    /// Node ports on every local address, by protocol, family and port.
    any_local: HashMap<(u8, Family, u16), Dataplane>,
}

/// The tables [`nft::read`] reads: kube-proxy's, and iptables-nft's `nat`; with `rules`
/// false their chains only.
struct Wanted {
    rules: bool,
}

impl nft::Selection for Wanted {
    fn table(&self, id: &TableId) -> bool {
        kube_nft::is_table(id)
            || (id.name == kube_ipt::TABLE && matches!(id.family, NFPROTO_IPV4 | NFPROTO_IPV6))
    }

    fn elements(&self, table: &TableId, set: &Set) -> bool {
        kube_nft::is_table(table) && kube_nft::wants_elements(set)
    }

    fn rules(&self) -> bool {
        self.rules
    }
}

impl NetfilterRules {
    /// Reads both modes' rules in this network namespace. No nf_tables, no table, no legacy
    /// iptables: no Services of that mode, not an error; missing CAP_NET_ADMIN is one.
    pub fn read() -> anyhow::Result<NetfilterRules> {
        NetfilterRules::read_with(None)
    }

    /// [`Self::read`], also writing every raw nf_tables reply to `dir`
    /// (`--debug-dump-netlink`), the material of the decoder's tests.
    pub fn read_recording(dir: &Path) -> anyhow::Result<NetfilterRules> {
        NetfilterRules::read_with(Some(dir))
    }

    /// Which netfilter modes this network namespace has ([`Self::modes`]), without reading
    /// their rules: the nf_tables tables and the `nat` tables' chains, and the legacy `nat`
    /// table when it exists (`check`).
    pub fn present_modes() -> anyhow::Result<Vec<Dataplane>> {
        let netlink = netlink_sys::protocols::NETLINK_NETFILTER;
        let ruleset = match Kernel::open_protocol(netlink, "netfilter netlink", None) {
            Ok(mut kernel) => read_ruleset(&mut kernel, &Wanted { rules: false })?,
            Err(error) => match NftError::from(error) {
                NftError::NotAvailable(_) => Ruleset::default(),
                other => return Err(other).context("opening a netfilter netlink socket"),
            },
        };
        let (legacy, _) = read_legacy(None)?;
        Ok(NetfilterRules::from_parts(&ruleset, &legacy, Vec::new()).modes())
    }

    /// The nf_tables rules read through `transport` (a recording's replay, a fuzz input).
    pub fn from_transport(transport: &mut impl Transport) -> anyhow::Result<NetfilterRules> {
        let ruleset = read_ruleset(transport, &Wanted { rules: true })?;
        Ok(NetfilterRules::from_parts(&ruleset, &[], Vec::new()))
    }

    /// A recording made by [`Self::read_recording`] (nf_tables replies and legacy tables),
    /// replayed (tests).
    pub fn replay(dir: &Path) -> anyhow::Result<NetfilterRules> {
        let mut replay = Replay::open(dir)
            .with_context(|| format!("opening the recording {}", dir.display()))?;
        let ruleset = read_ruleset(&mut replay, &Wanted { rules: true })?;
        let mut legacy = Vec::new();
        for family in [Family::V4, Family::V6] {
            let path = dir.join(legacy_capture_name(family));
            let capture = match std::fs::read(&path) {
                Ok(capture) => capture,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            let chains = legacy::parse_capture(family, &capture)
                .with_context(|| format!("reading {}", path.display()))?;
            legacy.push((family, chains));
        }
        Ok(NetfilterRules::from_parts(&ruleset, &legacy, Vec::new()))
    }

    fn read_with(record: Option<&Path>) -> anyhow::Result<NetfilterRules> {
        let netlink = netlink_sys::protocols::NETLINK_NETFILTER;
        let ruleset = match Kernel::open_protocol(netlink, "netfilter netlink", record) {
            Ok(mut kernel) => read_ruleset(&mut kernel, &Wanted { rules: true })?,
            Err(error) => match NftError::from(error) {
                NftError::NotAvailable(_) => Ruleset::default(),
                other => return Err(other).context("opening a netfilter netlink socket"),
            },
        };
        let (legacy, notices) = read_legacy(record)?;
        Ok(NetfilterRules::from_parts(&ruleset, &legacy, notices))
    }

    /// The model of what was read: nf_tables tables and legacy `nat` tables.
    #[must_use]
    pub fn from_parts(
        ruleset: &Ruleset,
        legacy: &[(Family, ChainMap)],
        notices: Vec<String>,
    ) -> NetfilterRules {
        let mut rules = NetfilterRules {
            notices,
            ..NetfilterRules::default()
        };
        for dump in &ruleset.read {
            let family = if dump.id.family == NFPROTO_IPV6 {
                Family::V6
            } else {
                Family::V4
            };
            if kube_nft::is_table(&dump.id) {
                rules.modes.insert(Dataplane::Nftables);
                rules.services.extend(kube_nft::services(dump));
            } else if dump.has_chain(kube_ipt::KUBE_SERVICES) {
                let chains = ChainMap::from_dump(dump);
                let services = kube_ipt::services(&chains, family, Source::IptablesNft);
                if iptables_mode(&chains, &services) {
                    rules.modes.insert(Dataplane::Iptables);
                }
                rules.services.extend(services);
            }
        }
        for (family, chains) in legacy {
            if chains.has_chain(kube_ipt::KUBE_SERVICES) {
                let services = kube_ipt::services(chains, *family, Source::IptablesLegacy);
                if iptables_mode(chains, &services) {
                    rules.modes.insert(Dataplane::Iptables);
                }
                rules.services.extend(services);
            }
        }
        rules.services.sort_by_key(|s| {
            (
                s.dataplane(),
                s.family,
                s.proto.number(),
                s.node_port,
                s.vip,
                s.source,
            )
        });
        for service in &rules.services {
            let proto = service.proto.number() as u8;
            let dataplane = service.dataplane();
            // The first claim wins; the sort put nftables first (see `dataplane_of`).
            if service.any_local() {
                rules
                    .any_local
                    .entry((proto, service.family, service.vip.port()))
                    .or_insert(dataplane);
            } else {
                rules.exact.entry((proto, service.vip)).or_insert(dataplane);
            }
        }
        rules
    }

    /// Every Service port, sorted by dataplane (nftables, then iptables), family, protocol,
    /// address (node ports after the others).
    #[must_use]
    pub fn services(&self) -> &[NfService] {
        &self.services
    }

    /// The modes this namespace has: nftables when a kube-proxy table exists, iptables when a
    /// `nat` table has the `KUBE-SERVICES` chain, with or without Services in them.
    #[must_use]
    pub fn modes(&self) -> Vec<Dataplane> {
        self.modes.iter().copied().collect()
    }

    /// What could not be read (and why), for the user.
    #[must_use]
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Which netfilter dataplane DNATs connections of IP protocol `proto` to `dst`: a
    /// Service address (ClusterIP, external or LoadBalancer IP) by exact match, or, when
    /// `dst_is_local` (an address of this node), a node port. `None`: neither mode programs
    /// it. When both do (a node half-way through a migration), the answer is nftables; which
    /// one the kernel runs first depends on the order their hooks were registered in.
    #[must_use]
    pub fn dataplane_of(
        &self,
        proto: u8,
        dst: SocketAddr,
        dst_is_local: bool,
    ) -> Option<Dataplane> {
        if let Some(dataplane) = self.exact.get(&(proto, dst)) {
            return Some(*dataplane);
        }
        let family = model::family_of(dst.ip());
        dst_is_local
            .then(|| self.any_local.get(&(proto, family, dst.port())).copied())
            .flatten()
    }
}

/// The legacy `nat` tables read, by family.
type LegacyTables = Vec<(Family, ChainMap)>;

/// The legacy `nat` tables of both families that exist, recorded into `record` when given;
/// a table that cannot be read is a notice, missing CAP_NET_ADMIN an error.
fn read_legacy(record: Option<&Path>) -> anyhow::Result<(LegacyTables, Vec<String>)> {
    let mut legacy = Vec::new();
    let mut notices = Vec::new();
    for family in [Family::V4, Family::V6] {
        let capture = legacy::capture(family).and_then(|capture| {
            let Some(capture) = capture else {
                return Ok(None);
            };
            if let Some(dir) = record {
                std::fs::write(dir.join(legacy_capture_name(family)), &capture)?;
            }
            legacy::parse_capture(family, &capture)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
        });
        match capture {
            Ok(Some(chains)) => legacy.push((family, chains)),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(anyhow::anyhow!(
                    "permission denied (the kernel refused to list the legacy iptables \
                     nat table with EPERM): reading it needs CAP_NET_ADMIN over this \
                     network namespace; run as root, or grant the capability \
                     (`setcap cap_net_admin+ep ipvs-trace`)"
                ));
            }
            Err(e) => notices.push(format!(
                "the legacy iptables nat table ({}) could not be read: {e}",
                family.as_str()
            )),
        }
    }
    Ok((legacy, notices))
}

/// The file of a recording that holds the legacy `nat` table of `family` (not `.bin`: the
/// netlink replay takes every `.bin` file as a reply).
fn legacy_capture_name(family: Family) -> String {
    format!("legacy-nat-{}.xt", family.as_str())
}

/// Whether a `nat` table with `KUBE-SERVICES` is kube-proxy's iptables mode: its IPVS mode
/// makes a `KUBE-SERVICES` chain too (for masquerade marks, no DNAT), but no
/// `KUBE-NODEPORTS` chain (IPVS mode's is `KUBE-NODE-PORT`) and no Service chains.
fn iptables_mode(chains: &ChainMap, services: &[NfService]) -> bool {
    !services.is_empty() || chains.has_chain(kube_ipt::KUBE_NODEPORTS)
}

/// The nf_tables tables the models read, through `transport`; no nf_tables is none.
fn read_ruleset(transport: &mut impl Transport, wanted: &Wanted) -> anyhow::Result<Ruleset> {
    match nft::read(transport, wanted) {
        Ok(ruleset) => Ok(ruleset),
        Err(NftError::NotAvailable(_)) => Ok(Ruleset::default()),
        Err(e) => Err(e).context("reading the nf_tables ruleset"),
    }
}

#[cfg(test)]
mod tests;
