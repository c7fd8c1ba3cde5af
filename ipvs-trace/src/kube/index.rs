//! The name index: addresses seen in IPVS events → Kubernetes names.
//!
//! Four stores of slim objects (one per kind) and five lookup maps derived from them. Every
//! lookup is one or two hash probes keyed by (proto, ip, port) or ip. [`Index::names`] hands
//! out references into the maps, valid while the caller holds the index: nothing is allocated
//! or reference-counted per event, so a lookup touches the maps' slots and not the names'
//! own allocations, which only a consumer that prints a name reads.
//!
//! The maps hash with foldhash rather than std's SipHash, which cost as much as the rest of a
//! probe. HashDoS is not a concern here: keys are only ever inserted from the API server's
//! objects (the cluster's own pods, Services, slices and nodes), never from traffic; addresses
//! seen in traffic (any client's) are only looked up, and a lookup cannot make the table
//! degrade. foldhash's per-process random seed keeps some resistance all the same.
//!
//! Each derived key keeps the list of objects that claim it, in the order they first claimed
//! it, and a lookup answers with the newest claimant. Two objects legitimately claim the same
//! key while the cluster converges (a pod IP reused by a new pod before the old pod's delete
//! arrives, two slices listing one endpoint): the newest is the one traffic goes to, and when
//! one claimant goes away the others are still there. An update of an object keeps its place
//! in the list, so a late status update of an old pod does not take its IP back.

use std::collections::hash_map::Entry;
use std::collections::HashSet;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::objects::{
    Kind, NodeInfo, Object, ObjectKey, PodInfo, ServiceInfo, ServiceType, SliceInfo,
};
use super::Names;
use crate::events::{Event, Proto};

/// One change to the index, as a watch or a snapshot delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Added or modified.
    Upsert(Object),
    Delete(ObjectKey),
    /// A (re)list: every object of this kind is replaced by these.
    Reset(Kind, Vec<Object>),
}

/// The Service port a virtual service belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    /// `namespace/name:port-name`, or `namespace/name` when the port is unnamed.
    pub label: Arc<str>,
    /// `namespace/name`.
    pub service: Arc<str>,
    pub service_type: ServiceType,
}

/// The endpoint a real server address belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendName {
    /// `namespace/name` of the pod (`None`: the endpoint has no Pod targetRef).
    pub pod: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    /// The endpoint's `serving` condition (`None`: not reported, or known from the pod only).
    pub serving: Option<bool>,
    /// The endpoint's `terminating` condition (`None`: not reported, or known from the pod
    /// only).
    pub terminating: Option<bool>,
}

/// Who owns a client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientName {
    Pod {
        /// `namespace/name`.
        pod: Arc<str>,
        node: Option<Arc<str>>,
    },
    /// A node's own address, which hostNetwork pods share.
    Node(Arc<str>),
}

type VipKey = (Proto, IpAddr, u16);

/// What a pod IP names: the pod as a client, and as a real server when no EndpointSlice lists
/// the address (kept ready here so that lookups can hand out a reference).
#[derive(Debug)]
struct PodIp {
    client: ClientName,
    /// `None` for hostNetwork pods: their IP is the node's, not a pod's endpoint.
    backend: Option<BackendName>,
}

/// A map of the index: std's table with foldhash (see the module documentation).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Objects claiming one key; the newest answers lookups.
#[derive(Debug)]
struct Claims<V> {
    /// The oldest claimant, inline: almost every key has exactly one, so a lookup reads the
    /// hash table slot and nothing behind another pointer.
    first: (Arc<str>, V),
    /// Later claimants, oldest first.
    later: Vec<(Arc<str>, V)>,
}

impl<V> Claims<V> {
    fn newest(&self) -> &V {
        &self.later.last().unwrap_or(&self.first).1
    }

    /// Sets `owner`'s value, keeping its place if it already claims the key.
    fn set(&mut self, owner: &Arc<str>, value: V) {
        if self.first.0 == *owner {
            self.first.1 = value;
        } else if let Some(slot) = self.later.iter_mut().find(|(who, _)| who == owner) {
            slot.1 = value;
        } else {
            self.later.push((Arc::clone(owner), value));
        }
    }

    /// Drops `owner`'s claim; false when no claimant is left.
    fn release(&mut self, owner: &Arc<str>) -> bool {
        if self.first.0 == *owner {
            if self.later.is_empty() {
                return false;
            }
            self.first = self.later.remove(0);
        } else {
            self.later.retain(|(who, _)| who != owner);
        }
        true
    }
}

/// The index. Shared between the event loop (reads) and the watches (writes) as a
/// [`super::SharedIndex`].
#[derive(Debug, Default)]
pub struct Index {
    pods: HashMap<Arc<str>, PodInfo>,
    services: HashMap<Arc<str>, ServiceInfo>,
    slices: HashMap<Arc<str>, SliceInfo>,
    nodes: HashMap<Arc<str>, NodeInfo>,
    /// ClusterIPs, externalIPs, LoadBalancer ingress IPs.
    vips: HashMap<VipKey, Claims<ServiceName>>,
    /// NodePorts, valid on every node address.
    node_ports: HashMap<(Proto, u16), Claims<ServiceName>>,
    backends: HashMap<VipKey, Claims<BackendName>>,
    pod_ips: HashMap<IpAddr, Claims<PodIp>>,
    /// Node addresses, as the `ClientName::Node` they name.
    node_ips: HashMap<IpAddr, Claims<ClientName>>,
    /// Changes applied so far: who derives something from the index (the kernel-side name
    /// filter) knows when to derive it again.
    generation: u64,
}

impl Index {
    #[must_use]
    pub fn new() -> Index {
        Index::default()
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        self.generation += 1;
        match change {
            Change::Upsert(object) => self.upsert(object),
            Change::Delete(key) => self.delete(&key),
            Change::Reset(kind, objects) => {
                self.clear(kind);
                for object in objects {
                    // A relist of one kind carries only that kind; anything else is a caller
                    // bug that must not wipe or corrupt the other kinds.
                    debug_assert_eq!(object.kind(), kind, "Reset({kind}) with {}", object.key());
                    if object.kind() == kind {
                        self.upsert(object);
                    }
                }
            }
        }
    }

    /// Changes applied so far (see the field).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of stored objects of `kind`.
    #[must_use]
    pub fn len(&self, kind: Kind) -> usize {
        match kind {
            Kind::Pod => self.pods.len(),
            Kind::Service => self.services.len(),
            Kind::EndpointSlice => self.slices.len(),
            Kind::Node => self.nodes.len(),
        }
    }

    /// True when nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        [Kind::Pod, Kind::Service, Kind::EndpointSlice, Kind::Node]
            .into_iter()
            .all(|kind| self.len(kind) == 0)
    }

    /// The Service port behind a virtual service: ClusterIP(s), externalIPs and LoadBalancer
    /// ingress IPs on the service port, or a NodePort on any node address.
    #[must_use]
    pub fn service_for(&self, proto: Proto, vip: SocketAddr) -> Option<ServiceName> {
        self.service_ref(proto, vip).cloned()
    }

    /// The endpoint behind a real server address, from the EndpointSlices; failing that, the
    /// pod that has the IP (without endpoint conditions).
    #[must_use]
    pub fn backend_for(&self, proto: Proto, backend: SocketAddr) -> Option<BackendName> {
        self.backend_ref(proto, backend).cloned()
    }

    /// The endpoint at a real server address as the EndpointSlices list it, without
    /// [`Self::backend_for`]'s fallback to the pod: `None` says no slice lists it (any more),
    /// which is how `balance` knows an endpoint left a Service.
    #[must_use]
    pub fn endpoint_for(&self, proto: Proto, backend: SocketAddr) -> Option<BackendName> {
        newest(self.backends.get(&(proto, backend.ip(), backend.port()))).cloned()
    }

    /// The Service port of a NodePort, whatever the node address: netfilter's node ports
    /// are one rule for every local address (`rules` shows them on `0.0.0.0:PORT`).
    #[must_use]
    pub fn node_port_for(&self, proto: Proto, port: u16) -> Option<ServiceName> {
        newest(self.node_ports.get(&(proto, port))).cloned()
    }

    /// The pod with this IP, or the node when it is a node address (hostNetwork pods share
    /// it).
    #[must_use]
    pub fn pod_for_ip(&self, ip: IpAddr) -> Option<ClientName> {
        self.client_ref(ip).cloned()
    }

    /// The names of an event's three addresses: [`Self::service_for`] the virtual service,
    /// [`Self::backend_for`] the real server, [`Self::pod_for_ip`] the client, borrowed from
    /// the index.
    ///
    /// Three to five independent hash probes whose cache misses overlap; with a large
    /// cluster's index nearly every one is a miss, and they are what a lookup costs.
    #[must_use]
    pub fn names(&self, event: &Event) -> Names<'_> {
        Names {
            service: self.service_ref(event.proto, event.vip),
            backend: event
                .backend
                .and_then(|addr| self.backend_ref(event.proto, addr)),
            client: self.client_ref(event.client.ip()),
        }
    }

    fn service_ref(&self, proto: Proto, vip: SocketAddr) -> Option<&ServiceName> {
        newest(self.vips.get(&(proto, vip.ip(), vip.port()))).or_else(|| {
            if self.node_ips.contains_key(&vip.ip()) {
                newest(self.node_ports.get(&(proto, vip.port())))
            } else {
                None
            }
        })
    }

    /// The endpoint from the EndpointSlices; failing that, the pod with the IP.
    fn backend_ref(&self, proto: Proto, backend: SocketAddr) -> Option<&BackendName> {
        newest(self.backends.get(&(proto, backend.ip(), backend.port())))
            .or_else(|| newest(self.pod_ips.get(&backend.ip()))?.backend.as_ref())
    }

    /// The pod with the IP; failing that, the node.
    fn client_ref(&self, ip: IpAddr) -> Option<&ClientName> {
        newest(self.pod_ips.get(&ip))
            .map(|pod| &pod.client)
            .or_else(|| newest(self.node_ips.get(&ip)))
    }

    /// The stored copy of a node's or pod's name, when there is one: 100k pods then share a
    /// few hundred node name strings instead of holding one each.
    fn share(&self, name: &mut Option<Arc<str>>, kind: Kind) {
        let Some(text) = name.as_ref() else { return };
        let stored = match kind {
            Kind::Node => self.nodes.get_key_value(text).map(|(k, _)| k),
            Kind::Pod => self.pods.get_key_value(text).map(|(k, _)| k),
            Kind::Service | Kind::EndpointSlice => None,
        };
        if let Some(stored) = stored {
            *name = Some(Arc::clone(stored));
        }
    }

    fn upsert(&mut self, mut object: Object) {
        match &mut object {
            Object::Pod(pod) => self.share(&mut pod.node, Kind::Node),
            Object::EndpointSlice(slice) => {
                for endpoint in &mut slice.endpoints {
                    self.share(&mut endpoint.node, Kind::Node);
                    self.share(&mut endpoint.pod, Kind::Pod);
                }
            }
            Object::Service(_) | Object::Node(_) => {}
        }
        match object {
            Object::Pod(new) => {
                let owner = Arc::clone(&new.name);
                let old = self.pods.insert(Arc::clone(&owner), new);
                let new = &self.pods[&owner];
                let old = old.as_ref().map(pod_entries).unwrap_or_default();
                replace(&mut self.pod_ips, &owner, old, pod_entries(new));
            }
            Object::Service(new) => {
                let owner = Arc::clone(&new.name);
                let old = self.services.insert(Arc::clone(&owner), new);
                let (new_vips, new_ports) = service_entries(&self.services[&owner]);
                let (old_vips, old_ports) = old.as_ref().map(service_entries).unwrap_or_default();
                replace(&mut self.vips, &owner, old_vips, new_vips);
                replace(&mut self.node_ports, &owner, old_ports, new_ports);
            }
            Object::EndpointSlice(new) => {
                let owner = Arc::clone(&new.name);
                let old = self.slices.insert(Arc::clone(&owner), new);
                let new = &self.slices[&owner];
                let old = old.as_ref().map(slice_entries).unwrap_or_default();
                replace(&mut self.backends, &owner, old, slice_entries(new));
            }
            Object::Node(new) => {
                let owner = Arc::clone(&new.name);
                let old = self.nodes.insert(Arc::clone(&owner), new);
                let new = &self.nodes[&owner];
                let old = old.as_ref().map(node_entries).unwrap_or_default();
                replace(&mut self.node_ips, &owner, old, node_entries(new));
            }
        }
    }

    fn delete(&mut self, key: &ObjectKey) {
        let owner = &key.name;
        match key.kind {
            Kind::Pod => {
                if let Some(old) = self.pods.remove(owner) {
                    replace(&mut self.pod_ips, owner, pod_entries(&old), Vec::new());
                }
            }
            Kind::Service => {
                if let Some(old) = self.services.remove(owner) {
                    let (vips, ports) = service_entries(&old);
                    replace(&mut self.vips, owner, vips, Vec::new());
                    replace(&mut self.node_ports, owner, ports, Vec::new());
                }
            }
            Kind::EndpointSlice => {
                if let Some(old) = self.slices.remove(owner) {
                    replace(&mut self.backends, owner, slice_entries(&old), Vec::new());
                }
            }
            Kind::Node => {
                if let Some(old) = self.nodes.remove(owner) {
                    replace(&mut self.node_ips, owner, node_entries(&old), Vec::new());
                }
            }
        }
    }

    /// Forgets every object of `kind` and what they claimed (each derived map has one owner
    /// kind, so it is cleared whole).
    fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::Pod => {
                self.pods.clear();
                self.pod_ips.clear();
            }
            Kind::Service => {
                self.services.clear();
                self.vips.clear();
                self.node_ports.clear();
            }
            Kind::EndpointSlice => {
                self.slices.clear();
                self.backends.clear();
            }
            Kind::Node => {
                self.nodes.clear();
                self.node_ips.clear();
            }
        }
    }
}

fn newest<V>(claims: Option<&Claims<V>>) -> Option<&V> {
    claims.map(Claims::newest)
}

/// Moves `owner`'s claims from `old` to `new` entries: claims it keeps stay in place (with the
/// new value), new ones go last (newest), dropped ones are released.
fn replace<K: Hash + Eq + Clone, V>(
    map: &mut HashMap<K, Claims<V>>,
    owner: &Arc<str>,
    old: Vec<(K, V)>,
    new: Vec<(K, V)>,
) {
    let kept: HashSet<&K> = if old.is_empty() {
        HashSet::new()
    } else {
        new.iter().map(|(key, _)| key).collect()
    };
    let released: Vec<K> = old
        .into_iter()
        .filter(|(key, _)| !kept.contains(key))
        .map(|(key, _)| key)
        .collect();
    drop(kept);
    for key in released {
        if let Some(claims) = map.get_mut(&key) {
            if !claims.release(owner) {
                map.remove(&key);
            }
        }
    }
    for (key, value) in new {
        match map.entry(key) {
            Entry::Occupied(mut claims) => claims.get_mut().set(owner, value),
            Entry::Vacant(slot) => {
                slot.insert(Claims {
                    first: (Arc::clone(owner), value),
                    later: Vec::new(),
                });
            }
        }
    }
}

fn pod_entries(pod: &PodInfo) -> Vec<(IpAddr, PodIp)> {
    let (client, backend) = if pod.host_network {
        // The pod's IPs are its node's: they name the node (and only if we know which).
        let Some(node) = &pod.node else {
            return Vec::new();
        };
        (ClientName::Node(Arc::clone(node)), None)
    } else {
        let client = ClientName::Pod {
            pod: Arc::clone(&pod.name),
            node: pod.node.clone(),
        };
        // Known from the pod only: no endpoint conditions.
        let backend = BackendName {
            pod: Some(Arc::clone(&pod.name)),
            node: pod.node.clone(),
            serving: None,
            terminating: None,
        };
        (client, Some(backend))
    };
    pod.ips
        .iter()
        .map(|&ip| {
            let entry = PodIp {
                client: client.clone(),
                backend: backend.clone(),
            };
            (ip, entry)
        })
        .collect()
}

type ServiceEntries = (Vec<(VipKey, ServiceName)>, Vec<((Proto, u16), ServiceName)>);

fn service_entries(svc: &ServiceInfo) -> ServiceEntries {
    let mut vips = Vec::new();
    let mut node_ports = Vec::new();
    // ExternalName Services are DNS aliases: kube-proxy makes no virtual service for them.
    if svc.service_type == ServiceType::ExternalName {
        return (vips, node_ports);
    }
    for port in &svc.ports {
        let label: Arc<str> = match &port.name {
            Some(port_name) => format!("{}:{port_name}", svc.name).into(),
            None => Arc::clone(&svc.name),
        };
        let name = ServiceName {
            label,
            service: Arc::clone(&svc.name),
            service_type: svc.service_type,
        };
        for &ip in svc
            .cluster_ips
            .iter()
            .chain(&svc.external_ips)
            .chain(&svc.load_balancer_ips)
        {
            vips.push(((port.proto, ip, port.port), name.clone()));
        }
        if let Some(node_port) = port.node_port {
            node_ports.push(((port.proto, node_port), name));
        }
    }
    (vips, node_ports)
}

fn slice_entries(slice: &SliceInfo) -> Vec<(VipKey, BackendName)> {
    let mut entries = Vec::new();
    for endpoint in &slice.endpoints {
        let name = BackendName {
            pod: endpoint.pod.clone(),
            node: endpoint.node.clone(),
            serving: endpoint.serving,
            terminating: endpoint.terminating,
        };
        for &ip in &endpoint.addresses {
            for port in &slice.ports {
                entries.push(((port.proto, ip, port.port), name.clone()));
            }
        }
    }
    entries
}

fn node_entries(node: &NodeInfo) -> Vec<(IpAddr, ClientName)> {
    node.addresses
        .iter()
        .map(|&ip| (ip, ClientName::Node(Arc::clone(&node.name))))
        .collect()
}

mod named;
pub mod synthetic;

pub use named::NamedAddresses;

#[cfg(test)]
mod tests;
