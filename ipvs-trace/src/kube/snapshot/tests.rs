use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::events::Proto;
use crate::kube::{ClientName, Kind};

/// The seed scenario of DESIGN.md as `kubectl get pods,services,endpointslices,nodes -A -o json`
/// prints it; the lab's snapshot scenario and the demo use the same file.
pub(crate) fn seed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/seed-snapshot.json")
}

const DGZSM: &str = "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm";
const NODE: &str = "cn-beijing.10.245.96.43";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("ipvs-trace-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn seed_snapshot_names_the_seed_scenario() {
    let (index, skipped) = load(&[seed_path()]).expect("the seed snapshot loads");
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        [Kind::Pod, Kind::Service, Kind::EndpointSlice, Kind::Node].map(|k| index.len(k)),
        [6, 3, 3, 2]
    );
    for vip in [
        "172.31.42.227:80",
        "10.245.11.252:80",
        "10.245.96.43:32380",
        "10.245.96.44:32380",
    ] {
        let service = index.service_for(Proto::Tcp, addr(vip)).expect(vip);
        assert_eq!(&*service.label, "ratel/vpaas-demo-prod:http", "{vip}");
        assert_eq!(service.service_type.as_str(), "LoadBalancer");
    }
    for vip in ["172.31.42.227:50091", "10.245.96.43:31502"] {
        let service = index.service_for(Proto::Tcp, addr(vip)).expect(vip);
        assert_eq!(&*service.label, "ratel/vpaas-demo-prod:grpc", "{vip}");
    }
    let dns = index
        .service_for(Proto::Udp, addr("172.31.0.10:53"))
        .expect("kube-dns");
    assert_eq!(
        (&*dns.label, dns.service_type.as_str()),
        ("kube-system/kube-dns:dns", "ClusterIP")
    );

    let backend = index
        .backend_for(Proto::Tcp, addr("10.245.112.32:8080"))
        .expect("the seed pod");
    assert_eq!(backend.pod.as_deref(), Some(DGZSM));
    assert_eq!(backend.node.as_deref(), Some(NODE));
    assert_eq!(
        (backend.serving, backend.terminating),
        (Some(true), Some(false))
    );
    let other = index
        .backend_for(Proto::Tcp, addr("10.245.113.15:50091"))
        .expect("a replica on the other node");
    assert_eq!(other.node.as_deref(), Some("cn-beijing.10.245.96.44"));

    assert_eq!(
        index.pod_for_ip("10.245.97.12".parse().unwrap()),
        Some(ClientName::Pod {
            pod: "ratel/vpaas-demo-client-6f8b9c7d5-kq2lm".into(),
            node: Some(NODE.into()),
        })
    );
    // kube-proxy runs with hostNetwork: its IP is the node's.
    assert_eq!(
        index.pod_for_ip("10.245.96.43".parse().unwrap()),
        Some(ClientName::Node(NODE.into()))
    );
    assert_eq!(index.pod_for_ip("198.51.100.7".parse().unwrap()), None);
}

#[test]
fn later_files_win_and_other_kinds_are_skipped() {
    let later = temp_file(
        "later.json",
        &json!({
            "apiVersion": "v1", "kind": "List", "metadata": {},
            "items": [
                { "apiVersion": "v1", "kind": "Pod",
                  "metadata": { "namespace": "ratel", "name": "vpaas-demo-client-6f8b9c7d5-kq2lm" },
                  "spec": { "nodeName": "elsewhere", "containers": [] },
                  "status": { "phase": "Running", "podIP": "10.245.97.12" } },
                { "apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": { "namespace": "ratel", "name": "vpaas-demo" } },
                { "apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": { "namespace": "ratel", "name": "client" } },
            ],
        })
        .to_string(),
    );
    let (index, skipped) = load(&[seed_path(), later.clone()]).unwrap();
    std::fs::remove_file(&later).unwrap();
    assert_eq!(skipped, BTreeMap::from([("Deployment".to_owned(), 2)]));
    assert_eq!(index.len(Kind::Pod), 6);
    match index.pod_for_ip("10.245.97.12".parse().unwrap()) {
        Some(ClientName::Pod { node, .. }) => assert_eq!(node.as_deref(), Some("elsewhere")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_single_kind_list_is_accepted() {
    let value = json!({ "apiVersion": "v1", "kind": "NodeList", "items": [
        { "metadata": { "name": "n1" }, "status": { "addresses": [] } } ] });
    // `kubectl get nodes -o json` items carry their kind; without it the item is refused.
    let err = parse(Path::new("nodes.json"), value)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "Kubernetes snapshot nodes.json, item 0 (object n1): no `kind`"
    );
    let value = json!({ "apiVersion": "v1", "kind": "NodeList", "items": [
        { "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } } ] });
    assert_eq!(
        parse(Path::new("nodes.json"), value).unwrap().objects.len(),
        1
    );
}

#[test]
fn errors_name_the_file_and_the_item() {
    let missing = PathBuf::from("/nonexistent/snapshot.json");
    let error = load(&[missing]).unwrap_err();
    // The cause is in the message; as a `source` too, `error: {:#}` would print it twice.
    assert!(std::error::Error::source(&error).is_none());
    let err = error.to_string();
    assert!(
        err.starts_with("cannot read Kubernetes snapshot /nonexistent/snapshot.json: "),
        "{err}"
    );

    let not_json = temp_file("yaml.json", "apiVersion: v1\nkind: List\n");
    let err = read(&not_json).unwrap_err().to_string();
    std::fs::remove_file(&not_json).unwrap();
    assert!(
        err.contains("yaml.json is not JSON") && err.contains("kubectl get pods,services"),
        "{err}"
    );

    let err = parse(
        Path::new("pod.json"),
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "x" } }),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("pod.json is a \"Pod\", not a List"), "{err}");

    let bad_ip = json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } },
        { "apiVersion": "v1", "kind": "Service",
          "metadata": { "namespace": "ratel", "name": "web" },
          "spec": { "clusterIP": "172.31.42.300", "ports": [{ "port": 80 }] } } ] });
    assert_eq!(
        parse(Path::new("snap.json"), bad_ip)
            .unwrap_err()
            .to_string(),
        "Kubernetes snapshot snap.json, item 1 (Service ratel/web): \
         spec.clusterIPs \"172.31.42.300\" is not an IP address"
    );

    // A schema error from the API type: `ports` must be a list.
    let bad_shape = json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": { "namespace": "ratel", "name": "web-abc" },
          "addressType": "IPv4", "endpoints": [], "ports": { "port": 80 } } ] });
    let err = parse(Path::new("snap.json"), bad_shape)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Kubernetes snapshot snap.json, item 0 (EndpointSlice ratel/web-abc): "),
        "{err}"
    );
}
