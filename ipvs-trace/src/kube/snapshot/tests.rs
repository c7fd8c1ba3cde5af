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

/// The objects and skipped kinds of a document given as text, in the order they were handed on.
fn parse_text(name: &str, text: &str) -> Result<(Vec<Object>, Skipped), SnapshotError> {
    let mut objects = Vec::new();
    let skipped = parse(Path::new(name), text.as_bytes(), |object| {
        objects.push(object);
    })?;
    Ok((objects, skipped))
}

/// As [`parse_text`]; `json!` sorts keys, so `kind` comes after `items` as kubectl prints it.
fn parse_value(name: &str, value: &Value) -> Result<(Vec<Object>, Skipped), SnapshotError> {
    parse_text(name, &value.to_string())
}

fn names(objects: &[Object]) -> Vec<String> {
    objects
        .iter()
        .map(|object| format!("{:?} {}", object.kind(), object.name()))
        .collect()
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
    let err = parse_value("nodes.json", &value).unwrap_err().to_string();
    assert_eq!(
        err,
        "Kubernetes snapshot nodes.json, item 0 (object n1): no `kind`"
    );
    let value = json!({ "apiVersion": "v1", "kind": "NodeList", "items": [
        { "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } } ] });
    assert_eq!(parse_value("nodes.json", &value).unwrap().0.len(), 1);
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
    let err = read(&not_json, |_| {}).unwrap_err().to_string();
    std::fs::remove_file(&not_json).unwrap();
    assert!(
        err.contains("yaml.json is not JSON") && err.contains("kubectl get pods,services"),
        "{err}"
    );

    let err = parse_value(
        "pod.json",
        &json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "x" } }),
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
        parse_value("snap.json", &bad_ip).unwrap_err().to_string(),
        "Kubernetes snapshot snap.json, item 1 (Service ratel/web): \
         spec.clusterIPs \"172.31.42.300\" is not an IP address"
    );

    // A schema error from the API type: `ports` must be a list.
    let bad_shape = json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": { "namespace": "ratel", "name": "web-abc" },
          "addressType": "IPv4", "endpoints": [], "ports": { "port": 80 } } ] });
    let err = parse_value("snap.json", &bad_shape)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Kubernetes snapshot snap.json, item 0 (EndpointSlice ratel/web-abc): "),
        "{err}"
    );
}

const NODE_N1: &str = r#"{ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } }"#;
const POD_P1: &str = r#"{ "apiVersion": "v1", "kind": "Pod",
    "metadata": { "namespace": "ns", "name": "p1" },
    "status": { "podIP": "10.0.0.1" } }"#;
const DEPLOYMENT: &str =
    r#"{ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "d" } }"#;
/// A Service that names itself but fails its API type: `ports` must be a list.
const BAD_SERVICE: &str = r#"{ "apiVersion": "v1", "kind": "Service",
    "metadata": { "namespace": "ns", "name": "bad" }, "spec": { "ports": 80 } }"#;

#[test]
fn kind_may_come_before_or_after_the_items() {
    let items = format!("[{NODE_N1}, {DEPLOYMENT}, {POD_P1}, {DEPLOYMENT}]");
    let first = format!(r#"{{ "kind": "List", "apiVersion": "v1", "items": {items} }}"#);
    // kubectl's order: apiVersion, items, kind, metadata.
    let last = format!(
        r#"{{ "apiVersion": "v1", "items": {items}, "kind": "List",
              "metadata": {{ "resourceVersion": "" }} }}"#
    );
    for text in [first, last] {
        let (objects, skipped) = parse_text("snap.json", &text).unwrap();
        assert_eq!(names(&objects), ["Node n1", "Pod ns/p1"], "{text}");
        assert_eq!(skipped, BTreeMap::from([("Deployment".to_owned(), 2)]));
    }
}

#[test]
fn a_pod_list_is_accepted() {
    let pod_p2 = POD_P1.replace("p1", "p2").replace("10.0.0.1", "10.0.0.2");
    let text =
        format!(r#"{{ "apiVersion": "v1", "items": [{POD_P1}, {pod_p2}], "kind": "PodList" }}"#);
    let (objects, skipped) = parse_text("pods.json", &text).unwrap();
    assert_eq!(names(&objects), ["Pod ns/p1", "Pod ns/p2"]);
    assert!(skipped.is_empty());
}

#[test]
fn a_document_that_is_not_a_list_is_refused() {
    let refused = |text: &str| match parse_text("x.json", text) {
        Err(SnapshotError::NotList { found, .. }) => found,
        other => panic!("{text}: {other:?}"),
    };
    // `kind` first: the items are not even converted, so the bad one is not the error.
    let mut handed_on = 0;
    let text = format!(r#"{{ "kind": "Pod", "items": [{NODE_N1}, {BAD_SERVICE}] }}"#);
    let err = parse(Path::new("x.json"), text.as_bytes(), |_| handed_on += 1).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::NotList { found, .. } if found == "\"Pod\""),
        "{err}"
    );
    assert_eq!(handed_on, 0);
    // `kind` after the items: refused all the same, whatever the items were.
    assert_eq!(
        refused(&format!(r#"{{ "items": [{NODE_N1}], "kind": "Pod" }}"#)),
        "\"Pod\""
    );
    assert_eq!(
        refused(&format!(r#"{{ "items": [{BAD_SERVICE}], "kind": "Pod" }}"#)),
        "\"Pod\""
    );
    assert_eq!(refused(r#"{ "items": [] }"#), "document without `kind`");
    assert_eq!(
        refused(r#"{ "kind": 7, "items": [] }"#),
        "document without `kind`"
    );
    assert_eq!(refused(r#"{ "kind": "List" }"#), "\"List\"");
    assert_eq!(
        refused(r#"{ "kind": "List", "items": { "a": [] } }"#),
        "\"List\""
    );
    for text in [
        r#"[{ "kind": "List", "items": [] }]"#,
        r#""List""#,
        "null",
        "7",
    ] {
        assert_eq!(refused(text), "document without `kind`", "{text}");
    }

    // Through `load`, such a file gives no index at all, not the objects read before `kind`.
    let file = temp_file(
        "not-list.json",
        &format!(r#"{{ "items": [{NODE_N1}], "kind": "Pod" }}"#),
    );
    let err = load(&[seed_path(), file.clone()]).err();
    std::fs::remove_file(&file).unwrap();
    assert!(
        matches!(err, Some(SnapshotError::NotList { .. })),
        "{err:?}"
    );
}

#[test]
fn the_first_bad_item_is_named_by_its_index_and_stops_the_conversion() {
    let text = format!(
        r#"{{ "apiVersion": "v1", "items": [{NODE_N1}, {DEPLOYMENT}, {BAD_SERVICE}, {POD_P1}],
              "kind": "List" }}"#
    );
    let mut handed_on = Vec::new();
    let err = parse(Path::new("snap.json"), text.as_bytes(), |object| {
        handed_on.push(object);
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("Kubernetes snapshot snap.json, item 2 (Service ns/bad): "),
        "{err}"
    );
    // The items after the bad one are only scanned.
    assert_eq!(names(&handed_on), ["Node n1"]);
}

#[test]
fn errors_keep_the_precedence_of_a_whole_document_check() {
    // Not JSON further on beats a bad item before it...
    let truncated = format!(r#"{{ "kind": "List", "items": [{BAD_SERVICE}, {NODE_N1}"#);
    let err = parse_text("snap.json", &truncated).unwrap_err();
    assert!(matches!(err, SnapshotError::NotJson { .. }), "{err}");
    let trailing = format!(r#"{{ "kind": "List", "items": [{NODE_N1}] }} {{}}"#);
    let err = parse_text("snap.json", &trailing).unwrap_err();
    assert!(matches!(err, SnapshotError::NotJson { .. }), "{err}");
    // ...and so does a second `items`, which a stream cannot take back.
    let twice = format!(r#"{{ "kind": "List", "items": [{NODE_N1}], "items": [] }}"#);
    let err = parse_text("snap.json", &twice).unwrap_err().to_string();
    assert!(err.contains("duplicate field `items`"), "{err}");
}
