//! Index behaviour, with objects built as the API serves them (JSON through the k8s-openapi
//! types), so conversion is exercised on every case.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use super::*;

fn object<K: serde::de::DeserializeOwned>(value: Value) -> Object
where
    for<'a> Object: TryFrom<&'a K, Error = crate::kube::objects::ConvertError>,
{
    let full: K = serde_json::from_value(value).expect("valid API object");
    Object::try_from(&full).expect("convertible")
}

fn pod(ns: &str, name: &str, node: &str, ips: &[&str]) -> Object {
    let ips: Vec<Value> = ips.iter().map(|ip| json!({ "ip": ip })).collect();
    object::<Pod>(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "namespace": ns, "name": name },
        "spec": { "nodeName": node, "containers": [] },
        "status": { "phase": "Running", "podIP": ips.first().map(|v| v["ip"].clone()), "podIPs": ips },
    }))
}

fn service(ns: &str, name: &str, spec: Value, status: Value) -> Object {
    let mut value = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "namespace": ns, "name": name },
    });
    value["spec"] = spec;
    value["status"] = status;
    object::<Service>(value)
}

fn node(name: &str, internal: &str, external: Option<&str>) -> Object {
    let mut addresses = vec![
        json!({ "type": "InternalIP", "address": internal }),
        json!({ "type": "Hostname", "address": name }),
    ];
    if let Some(external) = external {
        addresses.push(json!({ "type": "ExternalIP", "address": external }));
    }
    object::<Node>(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name },
        "status": { "addresses": addresses },
    }))
}

/// A slice with one endpoint per `(ip, pod, node, terminating)`.
fn slice(ns: &str, name: &str, ports: Value, endpoints: &[(&str, &str, &str, bool)]) -> Object {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|&(ip, pod, node, terminating)| {
            json!({
                "addresses": [ip],
                "conditions": { "ready": !terminating, "serving": true, "terminating": terminating },
                "nodeName": node,
                "targetRef": { "kind": "Pod", "namespace": ns, "name": pod },
            })
        })
        .collect();
    let mut value = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "namespace": ns, "name": name,
                      "labels": { "kubernetes.io/service-name": name } },
        "addressType": "IPv4",
        "endpoints": endpoints,
    });
    value["ports"] = ports;
    object::<EndpointSlice>(value)
}

fn index(objects: impl IntoIterator<Item = Object>) -> Index {
    let mut index = Index::new();
    for object in objects {
        index.apply(Change::Upsert(object));
    }
    index
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("IP address")
}

/// `label type` of the Service at `vip`, or "-".
fn svc_at(index: &Index, proto: Proto, vip: &str) -> String {
    index.service_for(proto, addr(vip)).map_or_else(
        || "-".to_owned(),
        |s| format!("{} {}", s.label, s.service_type.as_str()),
    )
}

fn client_at(index: &Index, ip_text: &str) -> String {
    match index.pod_for_ip(ip(ip_text)) {
        Some(ClientName::Pod { pod, node }) => {
            format!("pod {pod} on {}", node.as_deref().unwrap_or("-"))
        }
        Some(ClientName::Node(node)) => format!("node {node}"),
        None => "-".to_owned(),
    }
}

#[test]
fn dual_stack_cluster_ips() {
    let index = index([service(
        "ns",
        "web",
        json!({ "clusterIP": "172.31.0.10", "clusterIPs": ["172.31.0.10", "fd00:31::10"],
                "ipFamilies": ["IPv4", "IPv6"], "ports": [{ "name": "http", "port": 80 }] }),
        json!({}),
    )]);
    assert_eq!(
        svc_at(&index, Proto::Tcp, "172.31.0.10:80"),
        "ns/web:http ClusterIP"
    );
    assert_eq!(
        svc_at(&index, Proto::Tcp, "[fd00:31::10]:80"),
        "ns/web:http ClusterIP"
    );
    assert_eq!(
        svc_at(&index, Proto::Tcp, "172.31.0.10:81"),
        "-",
        "other port"
    );
    assert_eq!(
        svc_at(&index, Proto::Udp, "172.31.0.10:80"),
        "-",
        "other protocol"
    );
}

#[test]
fn multi_port_service_names_each_port() {
    let dns = index([service(
        "kube-system",
        "kube-dns",
        json!({ "clusterIP": "172.31.0.10", "ports": [
            { "name": "dns", "port": 53, "protocol": "UDP" },
            { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
            { "name": "metrics", "port": 9153 },
        ] }),
        json!({}),
    )]);
    assert_eq!(
        svc_at(&dns, Proto::Udp, "172.31.0.10:53"),
        "kube-system/kube-dns:dns ClusterIP"
    );
    assert_eq!(
        svc_at(&dns, Proto::Tcp, "172.31.0.10:53"),
        "kube-system/kube-dns:dns-tcp ClusterIP"
    );
    assert_eq!(
        svc_at(&dns, Proto::Tcp, "172.31.0.10:9153"),
        "kube-system/kube-dns:metrics ClusterIP"
    );
    assert_eq!(svc_at(&dns, Proto::Sctp, "172.31.0.10:53"), "-");
    // An unnamed port (only allowed when it is the only one) is labelled by the Service alone.
    let solo = index([service(
        "ns",
        "solo",
        json!({ "clusterIP": "172.31.0.11", "ports": [{ "port": 8080 }] }),
        json!({}),
    )]);
    assert_eq!(
        svc_at(&solo, Proto::Tcp, "172.31.0.11:8080"),
        "ns/solo ClusterIP"
    );
}

#[test]
fn node_port_on_every_node_address() {
    let nodeport = service(
        "ratel",
        "web",
        json!({ "type": "NodePort", "clusterIP": "172.31.0.20",
                "ports": [{ "name": "http", "port": 80, "nodePort": 32380 }] }),
        json!({}),
    );
    let mut index = index([
        node("n1", "10.245.96.43", Some("203.0.113.43")),
        node("n2", "10.245.96.44", None),
        nodeport,
    ]);
    for vip in [
        "10.245.96.43:32380",
        "203.0.113.43:32380",
        "10.245.96.44:32380",
        "172.31.0.20:80",
    ] {
        assert_eq!(
            svc_at(&index, Proto::Tcp, vip),
            "ratel/web:http NodePort",
            "{vip}"
        );
    }
    assert_eq!(
        svc_at(&index, Proto::Tcp, "10.9.9.9:32380"),
        "-",
        "not a node address"
    );
    assert_eq!(
        svc_at(&index, Proto::Tcp, "10.245.96.43:80"),
        "-",
        "the service port is not open on nodes"
    );
    assert_eq!(svc_at(&index, Proto::Udp, "10.245.96.43:32380"), "-");
    // Whatever the node address (netfilter's node ports are one rule for all of them).
    let label = |name: Option<ServiceName>| name.map(|n| n.label.to_string());
    assert_eq!(
        label(index.node_port_for(Proto::Tcp, 32380)).as_deref(),
        Some("ratel/web:http")
    );
    assert_eq!(label(index.node_port_for(Proto::Tcp, 80)), None);
    assert_eq!(label(index.node_port_for(Proto::Udp, 32380)), None);
    // A node that joins later serves the NodePort at once; one that leaves no longer does.
    index.apply(Change::Upsert(node("n3", "10.245.96.45", None)));
    assert_eq!(
        svc_at(&index, Proto::Tcp, "10.245.96.45:32380"),
        "ratel/web:http NodePort"
    );
    index.apply(Change::Delete(ObjectKey::new(Kind::Node, None, "n1")));
    assert_eq!(svc_at(&index, Proto::Tcp, "10.245.96.43:32380"), "-");
    assert_eq!(
        svc_at(&index, Proto::Tcp, "10.245.96.44:32380"),
        "ratel/web:http NodePort"
    );
}

#[test]
fn load_balancer_ingress_and_external_ips() {
    let index = index([
        node("n1", "10.245.96.43", None),
        service(
            "ratel",
            "vpaas-demo-prod",
            json!({ "type": "LoadBalancer", "clusterIP": "172.31.42.227",
                    "externalIPs": ["10.245.11.252"],
                    "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "nodePort": 32380 },
                              { "name": "grpc", "port": 50091, "nodePort": 31502 }] }),
            json!({ "loadBalancer": { "ingress": [{ "ip": "47.95.1.2" }, { "hostname": "lb.example.com" }] } }),
        ),
    ]);
    for vip in [
        "172.31.42.227:80",
        "10.245.11.252:80",
        "47.95.1.2:80",
        "10.245.96.43:32380",
    ] {
        assert_eq!(
            svc_at(&index, Proto::Tcp, vip),
            "ratel/vpaas-demo-prod:http LoadBalancer",
            "{vip}"
        );
    }
    for vip in [
        "172.31.42.227:50091",
        "10.245.11.252:50091",
        "47.95.1.2:50091",
        "10.245.96.43:31502",
    ] {
        assert_eq!(
            svc_at(&index, Proto::Tcp, vip),
            "ratel/vpaas-demo-prod:grpc LoadBalancer",
            "{vip}"
        );
    }
}

#[test]
fn headless_and_external_name_services_have_no_vip() {
    let index = index([
        service(
            "ns",
            "headless",
            json!({ "clusterIP": "None", "clusterIPs": ["None"],
                                           "ports": [{ "name": "db", "port": 5432 }] }),
            json!({}),
        ),
        service(
            "ns",
            "alias",
            json!({ "type": "ExternalName", "externalName": "db.example.com",
                                        "ports": [{ "port": 5432 }] }),
            json!({}),
        ),
    ]);
    assert_eq!(
        index.len(Kind::Service),
        2,
        "stored, but nothing to look up"
    );
    assert!(
        index.vips.is_empty() && index.node_ports.is_empty(),
        "{index:?}"
    );
}

#[test]
fn host_network_pods_resolve_to_their_node() {
    let mut host_pod = pod("kube-system", "kube-proxy-x", "n1", &["10.245.96.43"]);
    if let Object::Pod(info) = &mut host_pod {
        info.host_network = true;
    }
    // Without the Node object, the pod's nodeName still names the node.
    let mut index = index([host_pod, pod("ns", "app", "n1", &["10.245.112.7"])]);
    assert_eq!(client_at(&index, "10.245.96.43"), "node n1");
    assert_eq!(client_at(&index, "10.245.112.7"), "pod ns/app on n1");
    index.apply(Change::Upsert(node(
        "n1",
        "10.245.96.43",
        Some("203.0.113.43"),
    )));
    assert_eq!(client_at(&index, "203.0.113.43"), "node n1");
    assert_eq!(client_at(&index, "10.1.1.1"), "-");
    // A node address is not a backend pod.
    assert_eq!(
        index.backend_for(Proto::Tcp, addr("10.245.96.43:10250")),
        None
    );
}

#[test]
fn host_network_from_the_api_spelling() {
    let object = object::<Pod>(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "namespace": "kube-system", "name": "kube-proxy-x" },
        "spec": { "nodeName": "n1", "hostNetwork": true, "containers": [] },
        "status": { "phase": "Running", "podIP": "10.245.96.43", "podIPs": [{ "ip": "10.245.96.43" }] },
    }));
    assert_eq!(client_at(&index([object]), "10.245.96.43"), "node n1");
}

#[test]
fn pod_ip_reused_after_deletion_resolves_to_the_new_pod() {
    // The new pod's ADDED can arrive before the old pod's DELETED.
    let mut index = index([
        pod("a", "old", "n1", &["10.0.0.5"]),
        pod("b", "new", "n2", &["10.0.0.5"]),
    ]);
    assert_eq!(client_at(&index, "10.0.0.5"), "pod b/new on n2");
    // A late status update of the old pod does not take the IP back.
    index.apply(Change::Upsert(pod("a", "old", "n1", &["10.0.0.5"])));
    assert_eq!(client_at(&index, "10.0.0.5"), "pod b/new on n2");
    index.apply(Change::Delete(ObjectKey::new(Kind::Pod, Some("a"), "old")));
    assert_eq!(client_at(&index, "10.0.0.5"), "pod b/new on n2");
    // In the usual order (deleted, then the IP handed out again) too.
    index.apply(Change::Delete(ObjectKey::new(Kind::Pod, Some("b"), "new")));
    assert_eq!(client_at(&index, "10.0.0.5"), "-");
    index.apply(Change::Upsert(pod("c", "newer", "n3", &["10.0.0.5"])));
    assert_eq!(client_at(&index, "10.0.0.5"), "pod c/newer on n3");
    assert_eq!(
        index.pod_ips.len(),
        1,
        "no stale claims: {:?}",
        index.pod_ips
    );
}

#[test]
fn finished_pods_release_their_ip() {
    let done = object::<Pod>(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "namespace": "a", "name": "job-x" },
        "spec": { "nodeName": "n1", "containers": [] },
        "status": { "phase": "Succeeded", "podIP": "10.0.0.9", "podIPs": [{ "ip": "10.0.0.9" }] },
    }));
    let mut index = index([pod("a", "job-x", "n1", &["10.0.0.9"])]);
    index.apply(Change::Upsert(done));
    assert_eq!(client_at(&index, "10.0.0.9"), "-");
    assert_eq!(index.len(Kind::Pod), 1);
}

#[test]
fn backend_from_slice_with_ports_and_conditions() {
    let ports = json!([{ "name": "http", "port": 8080, "protocol": "TCP" },
                       { "name": "grpc", "port": 50091, "protocol": "TCP" }]);
    let mut index = index([
        pod("ratel", "web-1", "n1", &["10.245.112.32"]),
        slice(
            "ratel",
            "web-abc",
            ports.clone(),
            &[("10.245.112.32", "web-1", "n1", false)],
        ),
    ]);
    let backend = index
        .backend_for(Proto::Tcp, addr("10.245.112.32:8080"))
        .expect("endpoint");
    assert_eq!(backend.pod.as_deref(), Some("ratel/web-1"));
    assert_eq!(backend.node.as_deref(), Some("n1"));
    assert_eq!(
        (backend.serving, backend.terminating),
        (Some(true), Some(false))
    );
    assert!(index
        .backend_for(Proto::Tcp, addr("10.245.112.32:50091"))
        .is_some());
    // A port the slice does not list is known from the pod alone, without conditions.
    let by_pod = index
        .backend_for(Proto::Tcp, addr("10.245.112.32:9999"))
        .expect("pod");
    assert_eq!(
        (by_pod.pod.as_deref(), by_pod.terminating),
        (Some("ratel/web-1"), None)
    );
    // The endpoint starts terminating (the pod is being deleted; IPVS gives it weight 0).
    index.apply(Change::Upsert(slice(
        "ratel",
        "web-abc",
        ports,
        &[("10.245.112.32", "web-1", "n1", true)],
    )));
    let backend = index
        .backend_for(Proto::Tcp, addr("10.245.112.32:8080"))
        .expect("endpoint");
    assert_eq!(backend.terminating, Some(true));
    assert_eq!(
        index.endpoint_for(Proto::Tcp, addr("10.245.112.32:8080")),
        Some(backend)
    );
    assert_eq!(
        index.endpoint_for(Proto::Tcp, addr("10.245.112.32:9999")),
        None,
        "known from the pod only"
    );
    // The slice goes away: the pod still names the address.
    index.apply(Change::Delete(ObjectKey::new(
        Kind::EndpointSlice,
        Some("ratel"),
        "web-abc",
    )));
    let by_pod = index
        .backend_for(Proto::Tcp, addr("10.245.112.32:8080"))
        .expect("pod");
    assert_eq!(by_pod.terminating, None);
    assert_eq!(
        index.endpoint_for(Proto::Tcp, addr("10.245.112.32:8080")),
        None,
        "no slice lists it any more"
    );
    assert!(index.backends.is_empty());
    assert_eq!(index.backend_for(Proto::Tcp, addr("10.9.9.9:8080")), None);
}

#[test]
fn an_endpoint_in_two_slices_survives_one_of_them() {
    let ports = json!([{ "name": "http", "port": 8080 }]);
    let mut index = index([
        slice(
            "ns",
            "a-1",
            ports.clone(),
            &[("10.0.0.1", "p", "n1", false)],
        ),
        slice("ns", "b-1", ports, &[("10.0.0.1", "p", "n1", false)]),
    ]);
    index.apply(Change::Delete(ObjectKey::new(
        Kind::EndpointSlice,
        Some("ns"),
        "a-1",
    )));
    let backend = index
        .backend_for(Proto::Tcp, addr("10.0.0.1:8080"))
        .expect("still listed");
    assert_eq!(backend.pod.as_deref(), Some("ns/p"));
}

#[test]
fn service_update_moves_its_addresses() {
    let mut index = index([service(
        "ns",
        "web",
        json!({ "clusterIP": "172.31.0.10",
        "externalIPs": ["10.0.9.1"], "ports": [{ "name": "http", "port": 80 }] }),
        json!({}),
    )]);
    index.apply(Change::Upsert(service(
        "ns",
        "web",
        json!({ "clusterIP": "172.31.0.10",
        "ports": [{ "name": "https", "port": 443 }] }),
        json!({}),
    )));
    assert_eq!(svc_at(&index, Proto::Tcp, "172.31.0.10:80"), "-");
    assert_eq!(svc_at(&index, Proto::Tcp, "10.0.9.1:80"), "-");
    assert_eq!(
        svc_at(&index, Proto::Tcp, "172.31.0.10:443"),
        "ns/web:https ClusterIP"
    );
    assert_eq!(index.vips.len(), 1);
}

#[test]
fn reset_replaces_one_kind_only() {
    let mut index = index([
        pod("a", "p1", "n1", &["10.0.0.1"]),
        pod("a", "p2", "n1", &["10.0.0.2"]),
        service(
            "a",
            "web",
            json!({ "clusterIP": "172.31.0.10", "ports": [{ "port": 80 }] }),
            json!({}),
        ),
    ]);
    index.apply(Change::Reset(
        Kind::Pod,
        vec![pod("a", "p3", "n1", &["10.0.0.2"])],
    ));
    assert_eq!(client_at(&index, "10.0.0.1"), "-", "gone from the relist");
    assert_eq!(client_at(&index, "10.0.0.2"), "pod a/p3 on n1");
    assert_eq!(index.len(Kind::Pod), 1);
    assert_eq!(
        svc_at(&index, Proto::Tcp, "172.31.0.10:80"),
        "a/web ClusterIP",
        "other kinds stay"
    );
    index.apply(Change::Reset(Kind::Service, Vec::new()));
    assert_eq!(svc_at(&index, Proto::Tcp, "172.31.0.10:80"), "-");
    assert!(!index.is_empty());
}

#[test]
fn deleting_what_is_not_there_is_harmless() {
    let mut index = index([pod("a", "p1", "n1", &["10.0.0.1"])]);
    for kind in [Kind::Pod, Kind::Service, Kind::EndpointSlice, Kind::Node] {
        index.apply(Change::Delete(ObjectKey::new(kind, Some("a"), "nope")));
    }
    assert_eq!(client_at(&index, "10.0.0.1"), "pod a/p1 on n1");
}

#[test]
fn bad_values_name_the_object_and_field() {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "namespace": "a", "name": "p" },
        "status": { "podIP": "10.0.0.300" },
    }))
    .unwrap();
    assert_eq!(
        Object::try_from(&pod).unwrap_err().to_string(),
        "Pod a/p: status.podIP \"10.0.0.300\" is not an IP address"
    );
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "namespace": "a", "name": "s" },
        "spec": { "ports": [{ "port": 80, "protocol": "ICMP" }] },
    }))
    .unwrap();
    assert_eq!(
        Object::try_from(&svc).unwrap_err().to_string(),
        "Service a/s: protocol \"ICMP\" is not TCP, UDP or SCTP"
    );
    let node: Node =
        serde_json::from_value(json!({ "apiVersion": "v1", "kind": "Node", "metadata": {} }))
            .unwrap();
    assert_eq!(
        Object::try_from(&node).unwrap_err().to_string(),
        "Node without metadata.name"
    );
}

/// Resident memory of this process, in KiB (from /proc/self/statm).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// Lookup cost per event with a 100k-pod, 20k-Service index. A measurement, not a check:
/// `cargo test --release -p ipvs-trace --lib -- --ignored --nocapture lookup_cost`.
#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn lookup_cost_at_100k_pods() {
    use std::hint::black_box;
    use std::time::Instant;

    use super::synthetic::{self, NODES, PODS, SERVICES};

    let rss_before = rss_kib();
    let synthetic::Built {
        index,
        elapsed: built,
        pod_reset,
    } = synthetic::build();
    let rss_after = rss_kib();
    let events: Vec<(SocketAddr, SocketAddr, IpAddr)> =
        (0..1_000_000u32).map(synthetic::connection).collect();
    let mut found = 0u64;
    let timer = Instant::now();
    for &(vip, backend, client) in &events {
        let names = (
            index.service_for(Proto::Tcp, vip),
            index.backend_for(Proto::Tcp, backend),
            index.pod_for_ip(client),
        );
        found += u64::from(names.0.is_some())
            + u64::from(names.1.is_some())
            + u64::from(names.2.is_some());
        black_box(names);
    }
    let per_event = timer.elapsed().as_secs_f64() * 1e9 / f64::from(1_000_000u32);
    assert!(
        found > 2 * events.len() as u64,
        "lookups should mostly hit: {found}"
    );
    println!(
        "index: {PODS} pods, {SERVICES} services, {} endpoints, {NODES} nodes: built in {built:.2?} \
         (pod relist {pod_reset:.2?}), RSS +{} MiB",
        SERVICES * 5,
        (rss_after.saturating_sub(rss_before)) / 1024
    );
    println!(
        "lookup (service_for + backend_for + pod_for_ip): {per_event:.0} ns/event over {} events ({found} hits)",
        events.len()
    );
}

#[test]
fn named_addresses_are_the_vips_node_ports_and_pod_ips_of_the_names() {
    let ports = json!([{ "name": "http", "port": 8080, "protocol": "TCP" }]);
    let mut index = index([
        node("n1", "10.245.96.43", None),
        service(
            "ratel",
            "web",
            json!({ "type": "NodePort", "clusterIP": "172.31.0.20",
                    "ports": [{ "name": "http", "port": 80, "nodePort": 32380 }] }),
            json!({}),
        ),
        service(
            "other",
            "db",
            json!({ "clusterIP": "172.31.0.30", "ports": [{ "port": 5432 }] }),
            json!({}),
        ),
        pod("ratel", "web-1", "n1", &["10.245.112.32"]),
        pod("other", "db-1", "n1", &["10.245.113.7"]),
        slice(
            "ratel",
            "web-abc",
            ports,
            &[("10.245.112.40", "web-2", "n1", false)],
        ),
    ]);
    let in_ratel = |name: &str| name.starts_with("ratel/");
    let named = index.named_addresses(|s| in_ratel(&s.service), in_ratel);
    assert_eq!(named.vips, [addr("172.31.0.20:80")].into());
    assert_eq!(named.node_ports, [32380].into());
    // web-2 is only an endpoint (no pod object): a backend, not a client.
    assert_eq!(
        named.backends,
        [ip("10.245.112.32"), ip("10.245.112.40")].into()
    );
    assert_eq!(named.clients, [ip("10.245.112.32")].into());
    // The generation moves with every change, so the kernel's copy is redone.
    let before = index.generation();
    index.apply(Change::Delete(ObjectKey::new(
        Kind::Pod,
        Some("ratel"),
        "web-1",
    )));
    assert!(index.generation() > before);
    let named = index.named_addresses(|s| in_ratel(&s.service), in_ratel);
    assert_eq!(named.clients, BTreeSet::new());
    assert_eq!(named.backends, [ip("10.245.112.40")].into());
    assert!(index.named_addresses(|_| false, |_| false).is_empty());
}
