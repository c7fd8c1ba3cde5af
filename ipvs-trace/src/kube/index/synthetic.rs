//! A synthetic large cluster for measurements: 500 nodes, 100k pods, 20k Services of two ports
//! each, 5 endpoints per Service (100k endpoints over 20k slices), and the addresses of
//! connections spread over all of it. Shared by the index's `lookup_cost` measurement and the
//! userspace pipeline benchmark (`cargo xtask bench`), so both measure the same index.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Change, Index};
use crate::events::Proto;
use crate::kube::objects::{
    EndpointInfo, Kind, NodeInfo, Object, PodInfo, ServiceInfo, ServicePortInfo, ServiceType,
    SliceInfo, SlicePort,
};

pub const NODES: u32 = 500;
pub const PODS: u32 = 100_000;
pub const SERVICES: u32 = 20_000;
/// Endpoints (pods) behind each Service.
pub const ENDPOINTS_PER_SERVICE: u32 = 5;
/// The Services' target port (the backends' port in IPVS).
pub const BACKEND_PORT: u16 = 8080;

fn v4(base: u32, n: u32) -> IpAddr {
    IpAddr::from(Ipv4Addr::from(base + n))
}

/// Pod `n`'s IP, in 10.0.0.0/8.
#[must_use]
pub fn pod_ip(n: u32) -> IpAddr {
    v4(0x0a00_0000, n)
}

/// Node `n`'s IP, in 192.168.0.0/16.
#[must_use]
pub fn node_ip(n: u32) -> IpAddr {
    v4(0xc0a8_0000, n)
}

/// Service `n`'s ClusterIP, in 172.16.0.0/12.
#[must_use]
pub fn cluster_ip(n: u32) -> IpAddr {
    v4(0xac10_0000, n)
}

/// Service `s`'s NodePort for port 80 (every fifth Service is a NodePort Service).
#[must_use]
pub fn node_port(s: u32) -> Option<u16> {
    s.is_multiple_of(5).then(|| 30000 + (s / 5) as u16 % 2768)
}

/// Names spread over 200 namespaces, as long as real generated names.
fn name(prefix: &str, n: u32) -> Arc<str> {
    format!("ns-{}/{prefix}-{n:06}", n % 200).into()
}

/// The built index and what building it took.
pub struct Built {
    pub index: Index,
    /// The whole build.
    pub elapsed: Duration,
    /// The pods' relist alone (the largest single change).
    pub pod_reset: Duration,
}

/// Builds the index.
#[must_use]
pub fn build() -> Built {
    let started = Instant::now();
    let mut index = Index::new();
    let nodes = (0..NODES)
        .map(|n| {
            Object::Node(NodeInfo {
                name: format!("node-{n}").into(),
                addresses: vec![node_ip(n)],
            })
        })
        .collect();
    index.apply(Change::Reset(Kind::Node, nodes));
    let pods: Vec<Object> = (0..PODS)
        .map(|n| {
            Object::Pod(PodInfo {
                name: name("pod-5d8f7c9b6-abcde", n),
                node: Some(format!("node-{}", n % NODES).into()),
                host_network: false,
                ips: vec![pod_ip(n)],
            })
        })
        .collect();
    let reset = Instant::now();
    index.apply(Change::Reset(Kind::Pod, pods));
    let pod_reset = reset.elapsed();
    let services = (0..SERVICES)
        .map(|n| {
            Object::Service(ServiceInfo {
                name: name("svc", n),
                service_type: if node_port(n).is_some() {
                    ServiceType::NodePort
                } else {
                    ServiceType::ClusterIp
                },
                cluster_ips: vec![cluster_ip(n)],
                external_ips: Vec::new(),
                load_balancer_ips: Vec::new(),
                ports: vec![
                    ServicePortInfo {
                        name: Some("http".into()),
                        proto: Proto::Tcp,
                        port: 80,
                        node_port: node_port(n),
                    },
                    ServicePortInfo {
                        name: Some("grpc".into()),
                        proto: Proto::Tcp,
                        port: 50091,
                        node_port: None,
                    },
                ],
            })
        })
        .collect();
    index.apply(Change::Reset(Kind::Service, services));
    let slices = (0..SERVICES)
        .map(|s| {
            Object::EndpointSlice(SliceInfo {
                name: name("svc-x7k2p", s),
                ports: vec![
                    SlicePort {
                        name: Some("http".into()),
                        proto: Proto::Tcp,
                        port: BACKEND_PORT,
                    },
                    SlicePort {
                        name: Some("grpc".into()),
                        proto: Proto::Tcp,
                        port: 50091,
                    },
                ],
                endpoints: (0..ENDPOINTS_PER_SERVICE)
                    .map(|e| {
                        let p = s * ENDPOINTS_PER_SERVICE + e;
                        EndpointInfo {
                            addresses: vec![pod_ip(p)],
                            pod: Some(name("pod-5d8f7c9b6-abcde", p)),
                            node: Some(format!("node-{}", p % NODES).into()),
                            serving: Some(true),
                            terminating: Some(false),
                        }
                    })
                    .collect(),
            })
        })
        .collect();
    index.apply(Change::Reset(Kind::EndpointSlice, slices));
    Built {
        index,
        elapsed: started.elapsed(),
        pod_reset,
    }
}

/// The addresses of connection `i`: (virtual service, backend, client). Spread over the whole
/// index (a stride coprime with the sizes); 1 in 8 to a node's NodePort where the Service has
/// one, 1 in 16 from a client outside the cluster (a lookup miss).
#[must_use]
pub fn connection(i: u32) -> (SocketAddr, SocketAddr, IpAddr) {
    let s = i.wrapping_mul(7919) % SERVICES;
    let vip = match node_port(s) {
        Some(port) if i.is_multiple_of(8) => SocketAddr::new(node_ip(i % NODES), port),
        _ => SocketAddr::new(cluster_ip(s), 80),
    };
    let backend = SocketAddr::new(
        pod_ip(s * ENDPOINTS_PER_SERVICE + i % ENDPOINTS_PER_SERVICE),
        BACKEND_PORT,
    );
    let client = if i.is_multiple_of(16) {
        v4(0xcb00_7100, i % 256)
    } else {
        pod_ip(i.wrapping_mul(104_729) % PODS)
    };
    (vip, backend, client)
}
