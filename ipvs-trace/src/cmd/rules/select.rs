//! Which virtual services and real servers `rules` prints: the filters, and the Kubernetes
//! names each address is looked up by.

use crate::events::Proto;
use crate::filter::{AddrMatch, ServiceMatch};
use crate::ipvs::{Dest, Service, Tables};
use crate::kube::{namespace_of, BackendName, Index, ServiceName};

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

/// The services (and real servers) to print, with their names.
pub(super) fn select<'a>(
    tables: &'a Tables,
    index: Option<&Index>,
    filter: &RulesFilter,
) -> Vec<Named<'a>> {
    let mut views = Vec::new();
    for service in &tables.services {
        if filter.proto.is_some_and(|p| service.proto != Some(p))
            || filter
                .vip
                .is_some_and(|vip| !service.addr.is_some_and(|a| vip.matches(a)))
        {
            continue;
        }
        // A firewall-mark service has no address and no protocol to look names up by.
        let name = index
            .zip(service.proto.zip(service.addr))
            .and_then(|(index, (proto, addr))| index.service_for(proto, addr));
        let dests: Vec<_> = service
            .dests
            .iter()
            .filter(|d| filter.backend.is_none_or(|want| want.matches(d.addr)))
            .map(|d| {
                let backend = index
                    .zip(service.proto)
                    .and_then(|(index, proto)| index.backend_for(proto, d.addr));
                (d, backend)
            })
            .collect();
        if filter.backend.is_some() && dests.is_empty() {
            continue;
        }
        if let Some(want) = &filter.service {
            if !name.as_ref().is_some_and(|n| want.matches(n)) {
                continue;
            }
        }
        if let Some(namespace) = filter.namespace.as_deref() {
            let in_namespace = |qualified: &str| namespace_of(qualified) == Some(namespace);
            let service_in = name.as_ref().is_some_and(|n| in_namespace(&n.service));
            let pod_in = dests.iter().any(|(_, b)| {
                b.as_ref()
                    .and_then(|b| b.pod.as_deref())
                    .is_some_and(in_namespace)
            });
            if !service_in && !pod_in {
                continue;
            }
        }
        views.push(Named {
            service,
            name,
            dests,
        });
    }
    views
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
