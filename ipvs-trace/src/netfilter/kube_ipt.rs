//! kube-proxy's iptables mode (`pkg/proxy/iptables/proxier.go`): chains of the `nat` table,
//! read from nf_tables (iptables-nft, Debian's default `iptables`: tables `ip nat` and
//! `ip6 nat`) or from the legacy xtables (iptables-legacy, [`super::legacy`]).
//!
//! `KUBE-SERVICES` has one rule per Service address, `-d VIP/32 -p tcp --dport P -j
//! KUBE-SVC-HASH` (or `KUBE-EXT-HASH` for external and LoadBalancer IPs, `KUBE-FW-HASH` with
//! source ranges), commented `ns/name:port cluster IP`, and last `-m addrtype --dst-type LOCAL
//! -j KUBE-NODEPORTS`, whose rules match `-p tcp --dport NODEPORT`. `KUBE-SVC-HASH` picks the
//! endpoint with a cascade of `-m statistic --mode random --probability p -j KUBE-SEP-HASH`
//! (1/n, then 1/(n-1) of the rest, ...; the last rule has none), and each `KUBE-SEP-HASH`
//! ends with `-j DNAT --to-destination ip:port`. Each Service address is followed through
//! the chains with [`super::walk`], which gives each endpoint its effective share.

use std::net::SocketAddr;

use super::chains::ChainMap;
use super::model::{unspecified, NfEndpoint, NfService, Source};
use super::nft::Verdict;
use super::rule::{Action, Packet, RuleView};
use super::walk;
use crate::events::Proto;
use crate::ipvs::Family;

/// iptables' table, in nf_tables as iptables-nft names it.
pub const TABLE: &str = "nat";
/// The chain every Service address is dispatched from.
pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";

/// The Services of one `nat` table of `family`.
#[must_use]
pub fn services(chains: &ChainMap, family: Family, source: Source) -> Vec<NfService> {
    let mut services = Vec::new();
    let Some(dispatch) = chains.chains.get(KUBE_SERVICES) else {
        return services;
    };
    let mut add = |rule: &RuleView, vip: SocketAddr, proto: u8, node_port: bool, chain: &str| {
        let packet = Packet {
            proto,
            daddr: (!vip.ip().is_unspecified()).then_some(vip.ip()),
            dport: vip.port(),
        };
        services.push(NfService {
            source,
            family,
            proto: Proto::from_number(u16::from(proto)),
            vip,
            node_port,
            name: rule.comment.as_deref().and_then(service_name),
            chain: chain.to_owned(),
            endpoints: walk::endpoints(chains, chain, &packet)
                .into_iter()
                .map(|r| NfEndpoint {
                    addr: r.addr,
                    probability: r.share,
                    chain: r.chain,
                })
                .collect(),
        });
    };
    for rule in dispatch {
        let Some(chain) = target(rule) else {
            continue;
        };
        if rule.other_conditions > 0 || rule.probability.is_some() {
            continue;
        }
        if chain == KUBE_NODEPORTS {
            // `-m addrtype --dst-type LOCAL`, or `-d NODE_IP` per --nodeport-addresses.
            let node_ip = match (rule.daddr, rule.dst_local) {
                (Some(ip), _) => ip,
                (None, true) => unspecified(family),
                (None, false) => continue,
            };
            for node_port in chains.chains.get(KUBE_NODEPORTS).into_iter().flatten() {
                let Some(to) = target(node_port) else {
                    continue;
                };
                if let (Some(proto), Some(port), None, 0) = (
                    node_port.proto,
                    node_port.dport,
                    node_port.daddr,
                    node_port.other_conditions,
                ) {
                    add(node_port, SocketAddr::new(node_ip, port), proto, true, to);
                }
            }
        } else if let (Some(ip), Some(proto), Some(port), false) =
            (rule.daddr, rule.proto, rule.dport, rule.dst_local)
        {
            add(rule, SocketAddr::new(ip, port), proto, false, chain);
        }
    }
    services
}

/// The chain a rule jumps or goes to.
fn target(rule: &RuleView) -> Option<&str> {
    match &rule.action {
        Action::Verdict(Verdict::Jump(chain) | Verdict::Goto(chain)) => Some(chain),
        _ => None,
    }
}

/// `namespace/name:port` from a comment kube-proxy wrote: `ns/name:port cluster IP`,
/// `ns/name:port external IP`, `ns/name:port loadbalancer IP`, or the name alone.
#[must_use]
pub fn service_name(comment: &str) -> Option<String> {
    let first = comment.split_whitespace().next()?;
    let (namespace, rest) = first.split_once('/')?;
    let name = rest.split(':').next()?;
    (!namespace.is_empty() && !name.is_empty() && !rest.contains('/')).then(|| first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_comments() {
        assert_eq!(
            service_name("ns1/svc1:p80 cluster IP").as_deref(),
            Some("ns1/svc1:p80")
        );
        assert_eq!(
            service_name("ns2/svc2:p80").as_deref(),
            Some("ns2/svc2:p80")
        );
        assert_eq!(
            service_name("kubernetes service nodeports; NOTE: this must be the last rule"),
            None
        );
        assert_eq!(service_name(""), None);
        assert_eq!(service_name("a/b/c"), None);
    }
}
