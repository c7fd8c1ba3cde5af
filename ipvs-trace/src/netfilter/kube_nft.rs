//! kube-proxy's nftables mode (`pkg/proxy/nftables/proxier.go`): tables `ip kube-proxy` and
//! `ip6 kube-proxy`.
//!
//! The `services` chain dispatches a packet by `daddr . l4proto . dport` through the verdict
//! map `service-ips` (ClusterIPs, external and LoadBalancer IPs) and, for the node's own
//! addresses (`fib daddr type local`, or the `nodeport-ips` set when
//! `--nodeport-addresses` is given), by `l4proto . dport` through `service-nodeports`. Each
//! element is `goto` a Service port's chain: `service-HASH-ns/name/proto/port` (cluster
//! policy), `local-...` (local policy), or `external-...`, which marks for masquerade and
//! goes on to one of those. A policy chain picks the endpoint with `numgen random mod N vmap
//! { 0 : goto endpoint-HASH-ns/name/proto/port__ip/port, ... }`, an anonymous verdict map,
//! and each endpoint chain ends with `meta l4proto P dnat to ip:port`.
//!
//! The model reads the maps' elements and follows each with [`super::walk`], so kube-proxy's
//! variations (affinity, local policy, a future extra rule) are read, not pattern-matched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::chains::ChainMap;
use super::model::{family_of, unspecified, NfEndpoint, NfService, Source};
use super::nft::{Data, Element, Set, TableDump, TableId, Verdict, NFPROTO_IPV4, NFPROTO_IPV6};
use super::rule::Packet;
use super::walk;
use crate::events::Proto;
use crate::ipvs::Family;

/// kube-proxy's table, in both families.
pub const TABLE: &str = "kube-proxy";
const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NODEPORT_IPS: &str = "nodeport-ips";

/// Whether `id` is one of kube-proxy's nftables tables.
#[must_use]
pub fn is_table(id: &TableId) -> bool {
    id.name == TABLE && matches!(id.family, NFPROTO_IPV4 | NFPROTO_IPV6)
}

/// The sets whose elements the model reads: the dispatch maps, the node port addresses and
/// the anonymous verdict maps of `numgen`.
#[must_use]
pub fn wants_elements(set: &Set) -> bool {
    matches!(
        set.name.as_str(),
        SERVICE_IPS | SERVICE_NODEPORTS | NODEPORT_IPS
    ) || (set.flags & super::nft::decode::NFT_SET_ANONYMOUS != 0 && set.is_verdict_map())
}

/// The Services of one kube-proxy table.
#[must_use]
pub fn services(dump: &TableDump) -> Vec<NfService> {
    let family = if dump.id.family == NFPROTO_IPV6 {
        Family::V6
    } else {
        Family::V4
    };
    let addr_len = match family {
        Family::V4 => 4,
        Family::V6 => 16,
    };
    let chains = ChainMap::from_dump(dump);
    let elements = |name: &str| -> &[Element] {
        dump.set(name)
            .and_then(|(_, elements)| elements.as_deref())
            .unwrap_or_default()
    };
    let mut services = Vec::new();
    let mut add = |vip: SocketAddr, proto: u8, node_port: bool, chain: &str| {
        let packet = Packet {
            proto,
            daddr: (!vip.ip().is_unspecified()).then_some(vip.ip()),
            dport: vip.port(),
        };
        services.push(NfService {
            source: Source::NftKubeProxy,
            family,
            proto: Proto::from_number(u16::from(proto)),
            vip,
            node_port,
            name: service_name(chain),
            chain: chain.to_owned(),
            endpoints: walk::endpoints(&chains, chain, &packet)
                .into_iter()
                .map(|r| NfEndpoint {
                    addr: r.addr,
                    probability: r.share,
                    chain: r.chain,
                })
                .collect(),
        });
    };

    // service-ips: ipvX_addr . inet_proto . inet_service, each field in its own 32-bit
    // register(s).
    for element in elements(SERVICE_IPS) {
        let key = &element.key;
        let Some(chain) = target(element).filter(|_| key.len() == addr_len + 8) else {
            continue;
        };
        let Some(ip) = addr(&key[..addr_len]) else {
            continue;
        };
        let proto = key[addr_len];
        let port = u16::from_be_bytes([key[addr_len + 4], key[addr_len + 5]]);
        add(SocketAddr::new(ip, port), proto, false, chain);
    }

    // service-nodeports: inet_proto . inet_service, on the nodeport-ips addresses when the
    // set exists (kube-proxy deletes it when every address takes node ports).
    let node_ips: Vec<IpAddr> = match dump.set(NODEPORT_IPS) {
        Some(_) => elements(NODEPORT_IPS)
            .iter()
            .filter_map(|e| addr(&e.key))
            .filter(|ip| family_of(*ip) == family)
            .collect(),
        None => vec![unspecified(family)],
    };
    for element in elements(SERVICE_NODEPORTS) {
        let Some(chain) = target(element) else {
            continue;
        };
        let [proto, _, _, _, high, low, _, _] = element.key[..] else {
            continue;
        };
        let port = u16::from_be_bytes([high, low]);
        for ip in &node_ips {
            add(SocketAddr::new(*ip, port), proto, true, chain);
        }
    }
    services
}

/// The chain a map element sends to.
fn target(element: &Element) -> Option<&str> {
    match &element.data {
        Some(Data::Verdict(Verdict::Goto(chain) | Verdict::Jump(chain))) => Some(chain),
        _ => None,
    }
}

fn addr(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into()),
        16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into()),
        _ => None,
    }
}

/// `namespace/name:port` from a Service port chain's name,
/// `PREFIX-HASH8-namespace/name/protocol/port` (`servicePortChainNameBase`); `None` for any
/// other chain, or a name kube-proxy had to truncate (it ends with `...`).
#[must_use]
pub fn service_name(chain: &str) -> Option<String> {
    let rest = ["service-", "local-", "external-", "firewall-"]
        .iter()
        .find_map(|prefix| chain.strip_prefix(prefix))?;
    let (hash, base) = rest.split_once('-')?;
    if hash.len() != 8 || base.ends_with("...") {
        return None;
    }
    let mut parts = base.split('/');
    let (namespace, name, _protocol, port) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || namespace.is_empty() || name.is_empty() {
        return None;
    }
    Some(if port.is_empty() {
        format!("{namespace}/{name}")
    } else {
        format!("{namespace}/{name}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_chains() {
        assert_eq!(
            service_name("service-ULMVA6XW-ns1/svc1/tcp/p80").as_deref(),
            Some("ns1/svc1:p80")
        );
        assert_eq!(
            service_name("external-42NFTM6N-ns2/svc2/udp/").as_deref(),
            Some("ns2/svc2")
        );
        assert_eq!(service_name("services"), None);
        assert_eq!(
            service_name("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
            None
        );
        assert_eq!(service_name("service-ULMVA6XW-ns1/svc1/tc..."), None);
    }
}
