//! Which virtual services and real servers (IPVS), Services and endpoints (netfilter) `rules`
//! prints: the filters, and the Kubernetes names each address is looked up by.

use std::net::SocketAddr;

use crate::dataplane::Dataplane;
use crate::events::Proto;
use crate::filter::{AddrMatch, ServiceMatch};
use crate::ipvs::{Dest, Service, Tables};
use crate::kube::{namespace_of, BackendName, Index, ServiceName};
use crate::netfilter::{NetfilterRules, NfEndpoint, NfService};

/// `--vip`, `--backend`, `--proto`, `--namespace`, `--service`; an absent one matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulesFilter {
    pub vip: Option<AddrMatch>,
    /// Keeps the services that have this real server, and of them only its line.
    pub backend: Option<AddrMatch>,
    pub proto: Option<Proto>,
    pub namespace: Option<String>,
    pub service: Option<ServiceMatch>,
}

impl RulesFilter {
    pub(super) fn uses_names(&self) -> bool {
        self.namespace.is_some() || self.service.is_some()
    }
}

/// A virtual service with its names, as printed.
#[derive(Debug)]
pub(super) struct Named<'a> {
    pub(super) service: &'a Service,
    pub(super) name: Option<ServiceName>,
    pub(super) dests: Vec<(&'a Dest, Option<BackendName>)>,
}

/// A netfilter Service with its names, as printed.
#[derive(Debug)]
pub(super) struct NamedNf<'a> {
    pub(super) service: &'a NfService,
    pub(super) name: Option<ServiceName>,
    pub(super) endpoints: Vec<(&'a NfEndpoint, Option<BackendName>)>,
}

/// What `rules` prints, selected and named: the IPVS tables (none without ip_vs) and the
/// netfilter Services.
pub(super) struct View<'a> {
    pub(super) tables: Option<&'a Tables>,
    /// The dataplanes the namespace has: IPVS when it has virtual services, nftables and
    /// iptables when kube-proxy's tables or chains exist ([`NetfilterRules::modes`]).
    pub(super) dataplanes: Vec<Dataplane>,
    /// The inode of the network namespace read.
    pub(super) netns: Option<u64>,
    pub(super) ipvs: Vec<Named<'a>>,
    pub(super) netfilter: Vec<NamedNf<'a>>,
}

impl<'a> View<'a> {
    pub(super) fn new(
        tables: Option<&'a Tables>,
        rules: &'a NetfilterRules,
        index: Option<&Index>,
        filter: &RulesFilter,
        netns: Option<u64>,
    ) -> View<'a> {
        let mut dataplanes = Vec::new();
        if tables.is_some_and(|t| !t.services.is_empty()) {
            dataplanes.push(Dataplane::Ipvs);
        }
        dataplanes.extend(rules.modes());
        View {
            tables,
            dataplanes,
            netns,
            ipvs: tables.map(|t| select(t, index, filter)).unwrap_or_default(),
            netfilter: select_netfilter(rules, index, filter),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ipvs.is_empty() && self.netfilter.is_empty()
    }
}

/// The services (and real servers) to print, with their names.
pub(super) fn select<'a>(
    tables: &'a Tables,
    index: Option<&Index>,
    filter: &RulesFilter,
) -> Vec<Named<'a>> {
    tables
        .services
        .iter()
        .filter_map(|service| {
            let (name, dests) = select_one(
                filter,
                index,
                Candidate {
                    proto: service.proto,
                    addr: service.addr,
                    any_local: false,
                    rules_name: None,
                },
                service.dests.iter().map(|d| (d, d.addr)),
            )?;
            Some(Named {
                service,
                name,
                dests,
            })
        })
        .collect()
}

/// The netfilter Services (and endpoints) to print, with their names.
pub(super) fn select_netfilter<'a>(
    rules: &'a NetfilterRules,
    index: Option<&Index>,
    filter: &RulesFilter,
) -> Vec<NamedNf<'a>> {
    rules
        .services()
        .iter()
        .filter_map(|service| {
            let (name, endpoints) = select_one(
                filter,
                index,
                Candidate {
                    proto: Some(service.proto),
                    addr: Some(service.vip),
                    any_local: service.any_local(),
                    rules_name: service.name.as_deref(),
                },
                service.endpoints.iter().map(|e| (e, e.addr)),
            )?;
            Some(NamedNf {
                service,
                name,
                endpoints,
            })
        })
        .collect()
}

/// What the filters look at in a service of either kind.
#[derive(Clone, Copy)]
struct Candidate<'a> {
    /// `None`: a firewall-mark service, which has no address and no protocol.
    proto: Option<Proto>,
    addr: Option<SocketAddr>,
    /// A node port on every local address (named by its port alone).
    any_local: bool,
    /// The name kube-proxy wrote into its rules, for `--service` without Kubernetes names.
    rules_name: Option<&'a str>,
}

/// `--service NS/NAME[:PORT]` against a `namespace/name[:port]` kube-proxy wrote: with a port
/// the whole label, without one the Service.
fn label_matches(want: &ServiceMatch, label: &str) -> bool {
    let text = want.as_str();
    label == text || label.split(':').next() == Some(text)
}

type Selected<'a, D> = (Option<ServiceName>, Vec<(&'a D, Option<BackendName>)>);

/// A service's name and the destinations to print, or `None` when the filters drop it.
fn select_one<'a, D>(
    filter: &RulesFilter,
    index: Option<&Index>,
    candidate: Candidate<'_>,
    dests: impl Iterator<Item = (&'a D, SocketAddr)>,
) -> Option<Selected<'a, D>> {
    if filter.proto.is_some_and(|p| candidate.proto != Some(p))
        || filter
            .vip
            .is_some_and(|vip| !candidate.addr.is_some_and(|a| vip.matches(a)))
    {
        return None;
    }
    let name = index
        .zip(candidate.proto.zip(candidate.addr))
        .and_then(|(index, (proto, addr))| {
            if candidate.any_local {
                index.node_port_for(proto, addr.port())
            } else {
                index.service_for(proto, addr)
            }
        });
    let dests: Vec<_> = dests
        .filter(|(_, addr)| filter.backend.is_none_or(|want| want.matches(*addr)))
        .map(|(d, addr)| {
            let backend = index
                .zip(candidate.proto)
                .and_then(|(index, proto)| index.backend_for(proto, addr));
            (d, backend)
        })
        .collect();
    if filter.backend.is_some() && dests.is_empty() {
        return None;
    }
    if let Some(want) = &filter.service {
        let named = match (&name, candidate.rules_name) {
            (Some(n), _) => want.matches(n),
            (None, Some(label)) => label_matches(want, label),
            (None, None) => false,
        };
        if !named {
            return None;
        }
    }
    if let Some(namespace) = filter.namespace.as_deref() {
        let in_namespace = |qualified: &str| namespace_of(qualified) == Some(namespace);
        let service_in = match (&name, candidate.rules_name) {
            (Some(n), _) => in_namespace(&n.service),
            (None, Some(label)) => in_namespace(label),
            (None, None) => false,
        };
        let pod_in = dests.iter().any(|(_, b)| {
            b.as_ref()
                .and_then(|b| b.pod.as_deref())
                .is_some_and(in_namespace)
        });
        if !service_in && !pod_in {
            return None;
        }
    }
    Some((name, dests))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::rules::json::tests::{json, vips};

    #[test]
    fn filters() {
        let only = |f: fn(&mut RulesFilter)| {
            let mut filter = RulesFilter::default();
            f(&mut filter);
            vips(&json(&filter))
        };
        assert_eq!(
            only(|f| f.vip = "172.31.42.227".parse().ok()),
            ["172.31.42.227:80", "172.31.42.227:50091"]
        );
        assert_eq!(
            only(|f| f.vip = "172.31.42.227:80".parse().ok()),
            ["172.31.42.227:80"]
        );
        assert_eq!(only(|f| f.proto = Some(Proto::Udp)), ["172.31.0.62:53"]);
        assert_eq!(
            only(|f| f.service = "ratel/vpaas-demo-prod:http".parse().ok()),
            ["10.245.11.252:80", "10.245.96.43:32380", "172.31.42.227:80"]
        );
        assert_eq!(only(|f| f.namespace = Some("ratel".into())).len(), 6);
        assert!(only(|f| f.namespace = Some("kube-system".into())).is_empty());
        // --backend keeps the services that have it, and only its line.
        let mut filter = RulesFilter {
            backend: "10.245.6.3".parse().ok(),
            ..RulesFilter::default()
        };
        let document = json(&filter);
        assert_eq!(
            vips(&document),
            [
                "172.31.0.60:80",
                "172.31.0.61:80",
                "172.31.0.63:80",
                "fwmark 5"
            ]
        );
        for service in document["services"].as_array().unwrap() {
            assert_eq!(service["dests"].as_array().unwrap().len(), 1, "{service}");
        }
        filter.backend = "10.245.6.3:53".parse().ok();
        assert!(vips(&json(&filter)).is_empty());
    }
}
