//! The addresses a name filter (`--service`, `--namespace`, `--pod`) can match, for the
//! kernel-side filter: it compares addresses, so the names are turned into addresses here, and
//! again whenever the index changes.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use super::{newest, Index, ServiceName};

/// What [`Index::named_addresses`] found: a superset of the addresses of the decisions the
/// name filter can match (userspace still applies the filter itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedAddresses {
    /// ClusterIPs, externalIPs and LoadBalancer IPs with their Service ports.
    pub vips: BTreeSet<SocketAddr>,
    /// NodePorts: the port on any node address.
    pub node_ports: BTreeSet<u16>,
    /// Pod IPs as real servers (EndpointSlice endpoints and pods).
    pub backends: BTreeSet<IpAddr>,
    /// Pod IPs as clients.
    pub clients: BTreeSet<IpAddr>,
}

impl NamedAddresses {
    /// Entries in all.
    #[must_use]
    pub fn len(&self) -> usize {
        self.vips.len() + self.node_ports.len() + self.backends.len() + self.clients.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Index {
    /// The addresses of the Services for which `service` holds and of the pods (`namespace/name`)
    /// for which `pod` holds, as a decision carries them: the Services' VIPs and NodePorts,
    /// the pods' IPs as backends and as clients. Protocols are left out: a superset is enough.
    #[must_use]
    pub fn named_addresses(
        &self,
        service: impl Fn(&ServiceName) -> bool,
        pod: impl Fn(&str) -> bool,
    ) -> NamedAddresses {
        let mut out = NamedAddresses::default();
        for (&(_, ip, port), claims) in &self.vips {
            if service(claims.newest()) {
                out.vips.insert(SocketAddr::new(ip, port));
            }
        }
        for (&(_, port), claims) in &self.node_ports {
            if service(claims.newest()) {
                out.node_ports.insert(port);
            }
        }
        for (&(_, ip, _), claims) in &self.backends {
            if claims.newest().pod.as_deref().is_some_and(&pod) {
                out.backends.insert(ip);
            }
        }
        for (&ip, claims) in &self.pod_ips {
            let Some(named) = newest(Some(claims)) else {
                continue;
            };
            let super::ClientName::Pod { pod: name, .. } = &named.client else {
                continue;
            };
            if pod(name) {
                out.clients.insert(ip);
                if named.backend.is_some() {
                    out.backends.insert(ip);
                }
            }
        }
        out
    }
}
