//! Slim stored forms of the four Kubernetes kinds the index needs.
//!
//! A full `Pod` carries its whole spec and status (kilobytes); on a 100k-pod cluster keeping
//! those would cost gigabytes. The index keeps only what answers "which Service, which pod,
//! which node": names, addresses, ports and endpoint conditions. Names are `Arc<str>` because
//! the lookups hand them out per event, and an `Arc` clone is a counter increment, not an
//! allocation.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::events::Proto;

/// The kinds the index stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Service,
    EndpointSlice,
    Node,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
        })
    }
}

/// Identifies one object: kind plus `namespace/name` (just `name` for a Node).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    /// `namespace/name`, or the name alone for cluster-scoped kinds.
    pub name: Arc<str>,
}

impl ObjectKey {
    #[must_use]
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            name: qualified(namespace, name),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// One stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Pod(PodInfo),
    Service(ServiceInfo),
    EndpointSlice(SliceInfo),
    Node(NodeInfo),
}

impl Object {
    #[must_use]
    pub fn kind(&self) -> Kind {
        match self {
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Node(_) => Kind::Node,
        }
    }

    /// `namespace/name` (Nodes: name).
    #[must_use]
    pub fn name(&self) -> &Arc<str> {
        match self {
            Object::Pod(pod) => &pod.name,
            Object::Service(svc) => &svc.name,
            Object::EndpointSlice(slice) => &slice.name,
            Object::Node(node) => &node.name,
        }
    }

    #[must_use]
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind(),
            name: Arc::clone(self.name()),
        }
    }
}

/// What a Pod contributes: its IPs (client ip → pod) and node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// `namespace/name`.
    pub name: Arc<str>,
    pub node: Option<Arc<str>>,
    /// A hostNetwork pod shares its node's IPs: those resolve to the node, not the pod.
    pub host_network: bool,
    /// `status.podIPs` (both families on dual-stack), else `status.podIP`. Empty for a pod
    /// that has finished (Succeeded/Failed): the kubelet has released its IP, which another pod
    /// may already use.
    pub ips: Vec<IpAddr>,
}

/// A Service's type (`spec.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    /// The name as Kubernetes spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

/// One entry of a Service's `spec.ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortInfo {
    pub name: Option<Arc<str>>,
    pub proto: Proto,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// What a Service contributes: every address kube-proxy makes a virtual service for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `namespace/name`.
    pub name: Arc<str>,
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (dual-stack), else `spec.clusterIP`; empty for a headless Service
    /// (`None`), which has no virtual address.
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` (hostname-only ingresses have no IP to match).
    pub load_balancer_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePortInfo>,
}

/// One entry of an EndpointSlice's `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    pub name: Option<Arc<str>>,
    pub proto: Proto,
    pub port: u16,
}

/// One entry of an EndpointSlice's `endpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    pub addresses: Vec<IpAddr>,
    /// `namespace/name` of `targetRef` when it refers to a Pod.
    pub pod: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    /// `conditions.serving` (`None`: not reported).
    pub serving: Option<bool>,
    /// `conditions.terminating` (`None`: not reported).
    pub terminating: Option<bool>,
}

/// What an EndpointSlice contributes: backend (ip, port) → pod, node, conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceInfo {
    /// `namespace/name`.
    pub name: Arc<str>,
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<EndpointInfo>,
}

/// What a Node contributes: its InternalIP and ExternalIP addresses (NodePorts, host clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: Arc<str>,
    pub addresses: Vec<IpAddr>,
}

impl ConvertError {
    /// What is wrong, without naming the object (for callers that already name it).
    #[must_use]
    pub fn detail(&self) -> String {
        match self {
            ConvertError::NoName { .. } => "no metadata.name".to_owned(),
            ConvertError::BadValue {
                what,
                value,
                expected,
                ..
            } => format!("{what} {value:?} is not {expected}"),
        }
    }
}

/// Why an object could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("{kind} without metadata.name")]
    NoName { kind: Kind },
    #[error("{kind} {name}: {what} {value:?} is not {expected}")]
    BadValue {
        kind: Kind,
        name: String,
        what: &'static str,
        value: String,
        expected: &'static str,
    },
}

fn qualified(namespace: Option<&str>, name: &str) -> Arc<str> {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}").into(),
        _ => name.into(),
    }
}

/// `namespace/name` of an object; `default` namespace when a namespaced object omits it (as
/// the API server fills it in).
fn meta_name(meta: &ObjectMeta, kind: Kind, namespaced: bool) -> Result<Arc<str>, ConvertError> {
    let name = meta
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or(ConvertError::NoName { kind })?;
    let namespace = namespaced.then(|| meta.namespace.as_deref().unwrap_or("default"));
    Ok(qualified(namespace, name))
}

/// Parses one value of an object, naming the object and field when it is wrong.
struct Ctx<'a> {
    kind: Kind,
    name: &'a str,
}

impl Ctx<'_> {
    fn ip(&self, what: &'static str, text: &str) -> Result<IpAddr, ConvertError> {
        text.parse()
            .map_err(|_| self.bad(what, text, "an IP address"))
    }

    fn port(&self, what: &'static str, value: i32) -> Result<u16, ConvertError> {
        u16::try_from(value)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| self.bad(what, &value.to_string(), "a port (1-65535)"))
    }

    fn proto(&self, text: Option<&str>) -> Result<Proto, ConvertError> {
        // The API defaults the protocol to TCP.
        match text.unwrap_or("TCP") {
            "TCP" => Ok(Proto::Tcp),
            "UDP" => Ok(Proto::Udp),
            "SCTP" => Ok(Proto::Sctp),
            other => Err(self.bad("protocol", other, "TCP, UDP or SCTP")),
        }
    }

    fn bad(&self, what: &'static str, value: &str, expected: &'static str) -> ConvertError {
        ConvertError::BadValue {
            kind: self.kind,
            name: self.name.to_owned(),
            what,
            value: value.to_owned(),
            expected,
        }
    }
}

fn name_arc(text: Option<&String>) -> Option<Arc<str>> {
    text.filter(|s| !s.is_empty())
        .map(|s| Arc::from(s.as_str()))
}

impl TryFrom<&Pod> for PodInfo {
    type Error = ConvertError;

    fn try_from(pod: &Pod) -> Result<PodInfo, ConvertError> {
        let name = meta_name(&pod.metadata, Kind::Pod, true)?;
        let ctx = Ctx {
            kind: Kind::Pod,
            name: &name,
        };
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let finished = status
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
        let mut ips = Vec::new();
        if !finished {
            if let Some(status) = status {
                match status.pod_ips.as_deref() {
                    Some(list) if !list.is_empty() => {
                        for ip in list {
                            ips.push(ctx.ip("status.podIPs", &ip.ip)?);
                        }
                    }
                    _ => {
                        if let Some(ip) = status.pod_ip.as_deref().filter(|s| !s.is_empty()) {
                            ips.push(ctx.ip("status.podIP", ip)?);
                        }
                    }
                }
            }
        }
        Ok(PodInfo {
            node: name_arc(spec.and_then(|s| s.node_name.as_ref())),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            ips,
            name,
        })
    }
}

impl TryFrom<&Service> for ServiceInfo {
    type Error = ConvertError;

    fn try_from(svc: &Service) -> Result<ServiceInfo, ConvertError> {
        let name = meta_name(&svc.metadata, Kind::Service, true)?;
        let ctx = Ctx {
            kind: Kind::Service,
            name: &name,
        };
        let spec = svc.spec.as_ref();
        let service_type = match spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP") {
            "ClusterIP" => ServiceType::ClusterIp,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            "ExternalName" => ServiceType::ExternalName,
            other => {
                return Err(ctx.bad(
                    "spec.type",
                    other,
                    "ClusterIP, NodePort, LoadBalancer or ExternalName",
                ))
            }
        };
        let mut cluster_ips = Vec::new();
        if let Some(spec) = spec {
            let listed = spec.cluster_ips.as_deref().unwrap_or_default();
            let texts: Vec<&str> = if listed.is_empty() {
                spec.cluster_ip.as_deref().into_iter().collect()
            } else {
                listed.iter().map(String::as_str).collect()
            };
            for text in texts {
                // Headless: "None" is the API's spelling of "no virtual IP".
                if text.is_empty() || text == "None" {
                    continue;
                }
                cluster_ips.push(ctx.ip("spec.clusterIPs", text)?);
            }
        }
        let mut external_ips = Vec::new();
        for text in spec
            .and_then(|s| s.external_ips.as_deref())
            .unwrap_or_default()
        {
            external_ips.push(ctx.ip("spec.externalIPs", text)?);
        }
        let mut load_balancer_ips = Vec::new();
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_deref())
            .unwrap_or_default();
        for entry in ingress {
            if let Some(text) = entry.ip.as_deref().filter(|s| !s.is_empty()) {
                load_balancer_ips.push(ctx.ip("status.loadBalancer.ingress[].ip", text)?);
            }
        }
        let mut ports = Vec::new();
        for port in spec.and_then(|s| s.ports.as_deref()).unwrap_or_default() {
            ports.push(ServicePortInfo {
                name: name_arc(port.name.as_ref()),
                proto: ctx.proto(port.protocol.as_deref())?,
                port: ctx.port("spec.ports[].port", port.port)?,
                node_port: match port.node_port {
                    Some(0) | None => None,
                    Some(n) => Some(ctx.port("spec.ports[].nodePort", n)?),
                },
            });
        }
        Ok(ServiceInfo {
            name,
            service_type,
            cluster_ips,
            external_ips,
            load_balancer_ips,
            ports,
        })
    }
}

impl TryFrom<&EndpointSlice> for SliceInfo {
    type Error = ConvertError;

    fn try_from(slice: &EndpointSlice) -> Result<SliceInfo, ConvertError> {
        let name = meta_name(&slice.metadata, Kind::EndpointSlice, true)?;
        let ctx = Ctx {
            kind: Kind::EndpointSlice,
            name: &name,
        };
        // FQDN slices name hosts, not addresses: nothing IPVS can schedule to.
        if slice.address_type == "FQDN" {
            return Ok(SliceInfo {
                name,
                ports: Vec::new(),
                endpoints: Vec::new(),
            });
        }
        let mut ports = Vec::new();
        for port in slice.ports.as_deref().unwrap_or_default() {
            // A port without a number means "all ports": no (ip, port) key to index.
            let Some(number) = port.port else { continue };
            ports.push(SlicePort {
                name: name_arc(port.name.as_ref()),
                proto: ctx.proto(port.protocol.as_deref())?,
                port: ctx.port("ports[].port", number)?,
            });
        }
        let listed = slice.endpoints.as_deref().unwrap_or_default();
        let mut endpoints = Vec::with_capacity(listed.len());
        for endpoint in listed {
            let mut addresses = Vec::with_capacity(endpoint.addresses.len());
            for text in &endpoint.addresses {
                addresses.push(ctx.ip("endpoints[].addresses", text)?);
            }
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
                .and_then(|r| {
                    let pod_name = r.name.as_deref().filter(|n| !n.is_empty())?;
                    // targetRef.namespace defaults to the slice's own.
                    let namespace = r
                        .namespace
                        .as_deref()
                        .or(slice.metadata.namespace.as_deref())
                        .unwrap_or("default");
                    Some(qualified(Some(namespace), pod_name))
                });
            let conditions = endpoint.conditions.as_ref();
            endpoints.push(EndpointInfo {
                addresses,
                pod,
                node: name_arc(endpoint.node_name.as_ref()),
                serving: conditions.and_then(|c| c.serving),
                terminating: conditions.and_then(|c| c.terminating),
            });
        }
        Ok(SliceInfo {
            name,
            ports,
            endpoints,
        })
    }
}

impl TryFrom<&Node> for NodeInfo {
    type Error = ConvertError;

    fn try_from(node: &Node) -> Result<NodeInfo, ConvertError> {
        let name = meta_name(&node.metadata, Kind::Node, false)?;
        let ctx = Ctx {
            kind: Kind::Node,
            name: &name,
        };
        let mut addresses = Vec::new();
        let listed = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_deref())
            .unwrap_or_default();
        for address in listed {
            // Hostname and InternalDNS entries are names, not addresses.
            if address.type_ == "InternalIP" || address.type_ == "ExternalIP" {
                let ip = ctx.ip("status.addresses[].address", &address.address)?;
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
        }
        Ok(NodeInfo { name, addresses })
    }
}

macro_rules! object_from {
    ($($kube:ty => $variant:ident($info:ty)),* $(,)?) => {$(
        impl TryFrom<&$kube> for Object {
            type Error = ConvertError;

            fn try_from(value: &$kube) -> Result<Object, ConvertError> {
                <$info>::try_from(value).map(Object::$variant)
            }
        }
    )*};
}

object_from! {
    Pod => Pod(PodInfo),
    Service => Service(ServiceInfo),
    EndpointSlice => EndpointSlice(SliceInfo),
    Node => Node(NodeInfo),
}
