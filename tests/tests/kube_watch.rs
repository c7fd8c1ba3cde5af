//! ipvs-trace's Kubernetes watches (`ipvs_trace::kube::watch`) against the in-repo API server:
//! real kube-rs through an ordinary kubeconfig, all four kinds, and the watches' own health.
//!
//! Each case asserts on what the index's lookups answer after the cluster changed (which pod has
//! this IP, which pod and condition is behind this endpoint, which Service owns this VIP).
//! Loopback only; every wait is bounded.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipvs_trace::events::Proto;
use ipvs_trace::kube::watch::{self, KubeSource, WatchHandle};
use ipvs_trace::kube::{ClientName, Index, Kind as IndexKind, SharedIndex};
use ipvs_trace_tests::kube_apiserver::{kubeconfig, Kind, Options, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn pod(ns: &str, name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn service(ns: &str, name: &str, cluster_ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
    })
}

/// One EndpointSlice of `service`: (ip, pod name, terminating) per endpoint.
fn slice(ns: &str, service: &str, endpoints: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, pod, terminating)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": !terminating, "serving": true, "terminating": terminating},
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pod},
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abcde"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

fn node(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    })
}

fn cluster() -> Vec<Value> {
    vec![
        node("node-1", "192.168.0.10"),
        pod("ratel", "web-1", "10.0.0.1"),
        pod("ratel", "web-2", "10.0.0.2"),
        service("ratel", "web", "172.31.0.10"),
        slice(
            "ratel",
            "web",
            &[("10.0.0.1", "web-1", false), ("10.0.0.2", "web-2", false)],
        ),
    ]
}

/// What the index answers, in the shapes the assertions compare.
struct View<'a>(&'a Index);

impl View<'_> {
    /// The pod that has this IP (the client lookup).
    fn pod_by_ip(&self, ip: &str) -> Option<String> {
        match self.0.pod_for_ip(ip.parse::<IpAddr>().unwrap())? {
            ClientName::Pod { pod, .. } => Some(pod.to_string()),
            ClientName::Node(_) => None,
        }
    }

    /// The pod and terminating condition behind endpoint ip:8080 (the backend lookup), only
    /// when it comes from an EndpointSlice (conditions known).
    fn endpoint(&self, ip: &str) -> Option<(String, bool)> {
        let backend = self
            .0
            .backend_for(Proto::Tcp, SocketAddr::new(ip.parse().unwrap(), 8080))?;
        Some((backend.pod?.to_string(), backend.terminating?))
    }

    /// The Service label of a virtual service.
    fn service(&self, vip: &str) -> Option<String> {
        Some(
            self.0
                .service_for(Proto::Tcp, vip.parse().unwrap())?
                .label
                .to_string(),
        )
    }
}

struct Lab {
    index: SharedIndex,
    watches: WatchHandle,
    _dir: TempDir,
}

async fn watch(addr: SocketAddr, name: &str) -> Lab {
    let dir = TempDir::new(name);
    let path = dir.0.join("kubeconfig");
    std::fs::write(&path, kubeconfig(addr)).unwrap();
    let index: SharedIndex = Arc::new(RwLock::new(Index::new()));
    let watches = watch::spawn(KubeSource::Kubeconfig(path), Arc::clone(&index)).await;
    Lab {
        index,
        watches,
        _dir: dir,
    }
}

impl Lab {
    async fn wait(&self, what: &str, cond: impl Fn(&View) -> bool) {
        let start = Instant::now();
        loop {
            {
                let index = self.index.read().unwrap();
                if cond(&View(&index)) {
                    return;
                }
                assert!(
                    start.elapsed() < WAIT,
                    "timed out waiting for {what}: {:?}, health {:?}",
                    [
                        IndexKind::Pod,
                        IndexKind::Service,
                        IndexKind::EndpointSlice,
                        IndexKind::Node
                    ]
                    .map(|k| (k, index.len(k))),
                    self.watches.health()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every kind has applied at least `n` complete lists.
    async fn wait_lists(&self, n: u32) {
        let start = Instant::now();
        while self.watches.health().iter().any(|h| h.lists < n) {
            assert!(
                start.elapsed() < WAIT,
                "fewer than {n} lists: {:?}",
                self.watches.health()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn synced(&self) {
        let start = Instant::now();
        while !self.watches.synced() {
            assert!(
                start.elapsed() < WAIT,
                "not synced: {:?}",
                self.watches.health()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn server(objects: &[Value], tweak: impl FnOnce(&mut Options)) -> Server {
    let mut options = Options::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    options.bookmark_interval = Duration::from_millis(200);
    tweak(&mut options);
    let server = Server::start(options).expect("server starts");
    for object in objects {
        server.apply(object.clone()).unwrap();
    }
    server
}

#[tokio::test]
async fn initial_sync_of_every_kind() {
    let server = server(&cluster(), |_| {});
    let lab = watch(server.addr(), "initial").await;
    lab.synced().await;
    lab.wait("the whole cluster", |s| {
        s.pod_by_ip("10.0.0.2").as_deref() == Some("ratel/web-2")
            && s.endpoint("10.0.0.1") == Some(("ratel/web-1".into(), false))
            && s.service("172.31.0.10:80").as_deref() == Some("ratel/web:http")
            && s.0.len(IndexKind::Node) == 1
    })
    .await;
    for h in lab.watches.health() {
        assert!(h.synced && h.lists == 1 && h.errors == 0, "{h:?}");
    }
    let lines = lab.watches.summary_lines();
    assert_eq!(
        lines[0], "pods: synced (1 list(s), 0 event(s))",
        "{lines:?}"
    );
}

#[tokio::test]
async fn pod_added_deleted_and_ip_reused() {
    let server = server(&cluster(), |_| {});
    let lab = watch(server.addr(), "reuse").await;
    lab.synced().await;
    server.apply(pod("ratel", "web-3", "10.0.0.3")).unwrap();
    lab.wait("web-3 by its IP", |s| {
        s.pod_by_ip("10.0.0.3").as_deref() == Some("ratel/web-3")
    })
    .await;

    server.delete(Kind::Pod, "ratel", "web-1").unwrap();
    lab.wait("web-1 gone", |s| s.pod_by_ip("10.0.0.1").is_none())
        .await;
    server.apply(pod("other", "batch-9", "10.0.0.1")).unwrap();
    lab.wait("10.0.0.1 now names the new pod", |s| {
        s.pod_by_ip("10.0.0.1").as_deref() == Some("other/batch-9")
    })
    .await;
    assert_eq!(
        lab.watches.health()[0].lists,
        1,
        "no relist needed: {:?}",
        lab.watches.health()
    );
}

#[tokio::test]
async fn service_endpoints_change_and_terminate() {
    let server = server(&cluster(), |_| {});
    let lab = watch(server.addr(), "endpoints").await;
    lab.synced().await;
    // Scale: web-2 leaves, web-3 joins.
    server.apply(pod("ratel", "web-3", "10.0.0.3")).unwrap();
    server
        .apply(slice(
            "ratel",
            "web",
            &[("10.0.0.1", "web-1", false), ("10.0.0.3", "web-3", false)],
        ))
        .unwrap();
    lab.wait("endpoints updated", |s| {
        s.endpoint("10.0.0.3") == Some(("ratel/web-3".into(), false))
            && s.endpoint("10.0.0.2").is_none()
    })
    .await;
    // Rolling update: web-1 is terminating but still in the slice (IPVS weight 0, may still be
    // picked by existing connections' templates).
    server
        .apply(slice(
            "ratel",
            "web",
            &[("10.0.0.1", "web-1", true), ("10.0.0.3", "web-3", false)],
        ))
        .unwrap();
    lab.wait("web-1 terminating", |s| {
        s.endpoint("10.0.0.1") == Some(("ratel/web-1".into(), true))
    })
    .await;
}

#[tokio::test]
async fn gone_410_relists_every_kind_and_is_reported() {
    let server = server(&cluster(), |_| {});
    let lab = watch(server.addr(), "gone").await;
    lab.synced().await;
    server.compact().unwrap();
    // Deleted while the watches were being told 410: only the relist can remove it.
    server.delete(Kind::Pod, "ratel", "web-2").unwrap();
    lab.wait("relist dropped web-2", |s| {
        s.pod_by_ip("10.0.0.2").is_none()
    })
    .await;
    lab.wait_lists(2).await;
    let pods = &lab.watches.health()[0];
    assert!(pods.synced && pods.lists >= 2, "{pods:?}");
    let error = pods.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("too old resource version"),
        "the 410 is in the health: {error}"
    );
}

#[tokio::test]
async fn server_restart_mid_watch() {
    let mut first = server(&cluster(), |_| {});
    let addr = first.addr();
    let lab = watch(addr, "restart").await;
    lab.synced().await;
    first.shutdown();
    // The replacement knows nothing of the old versions (a fresh etcd): clients must relist.
    let mut options = Options::new(addr);
    options.rv_base = Some(5000);
    options.bookmark_interval = Duration::from_millis(200);
    let second = Server::start(options).expect("restarts on the same port");
    let mut objects = cluster();
    objects.push(pod("ratel", "after-restart", "10.0.0.9"));
    for object in objects {
        second.apply(object).unwrap();
    }
    lab.wait("state of the restarted server", |s| {
        s.pod_by_ip("10.0.0.9").as_deref() == Some("ratel/after-restart")
    })
    .await;
    lab.wait_lists(2).await;
    // And it keeps watching after the relist.
    second.apply(pod("ratel", "later", "10.0.0.10")).unwrap();
    lab.wait("a change after the relist", |s| {
        s.pod_by_ip("10.0.0.10").is_some()
    })
    .await;
}

#[tokio::test]
async fn unreachable_at_start_then_up() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lab = watch(addr, "unreachable").await;
    // spawn_source returned at once; the watches report the failure and keep retrying.
    let start = Instant::now();
    while lab.watches.health().iter().any(|h| h.last_error.is_none()) {
        assert!(start.elapsed() < WAIT, "{:?}", lab.watches.health());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!lab.watches.synced());
    let mut options = Options::new(addr);
    options.bookmark_interval = Duration::from_millis(200);
    let server = Server::start(options).expect("starts on the reserved port");
    for object in cluster() {
        server.apply(object).unwrap();
    }
    lab.synced().await;
    lab.wait("names once up", |s| s.pod_by_ip("10.0.0.1").is_some())
        .await;
}

#[tokio::test]
async fn no_config_is_a_reported_warning_not_an_error() {
    let index: SharedIndex = Arc::new(RwLock::new(Index::new()));
    let missing = PathBuf::from("/nonexistent/ipvs-trace-kubeconfig");
    let handle = watch::spawn(KubeSource::Kubeconfig(missing), index).await;
    let health = handle.health();
    assert!(health.iter().all(|h| !h.synced), "{health:?}");
    let error = health[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("/nonexistent/ipvs-trace-kubeconfig"),
        "{error}"
    );
}

#[tokio::test]
async fn slow_server_events_still_flow() {
    let server = server(&cluster(), |o| o.delay = Duration::from_millis(500));
    let lab = watch(server.addr(), "slow").await;
    lab.synced().await;
    for i in 0..5 {
        server
            .apply(pod("ratel", &format!("burst-{i}"), &format!("10.0.1.{i}")))
            .unwrap();
    }
    lab.wait("every pod of the burst", |s| {
        (0..5).all(|i| s.pod_by_ip(&format!("10.0.1.{i}")).is_some())
    })
    .await;
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "ipvs-trace-kube-watch-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `kube-apiserver` binary as the VM lab runs it: the seed's `kubectl get -o json` fixture,
/// port 0 with `--write-kubeconfig`, changes through the `/lab/...` HTTP control interface.
#[tokio::test]
async fn binary_serves_the_seed_fixture_and_takes_http_changes() {
    let dir = TempDir::new("binary");
    let kubeconfig_path = dir.0.join("kubeconfig");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seed-snapshot.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-apiserver"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--objects",
            fixture,
            "--bookmark-ms",
            "200",
        ])
        .arg("--write-kubeconfig")
        .arg(&kubeconfig_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kube-apiserver starts");
    let _kill = KillOnDrop(&mut child);
    let start = Instant::now();
    while !kubeconfig_path.exists() {
        assert!(start.elapsed() < WAIT, "no kubeconfig written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(&kubeconfig_path).unwrap();
    let addr: SocketAddr = text
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|a| a.parse().ok())
        .expect("the kubeconfig names the server");

    let index: SharedIndex = Arc::new(RwLock::new(Index::new()));
    let watches = watch::spawn(KubeSource::Kubeconfig(kubeconfig_path), Arc::clone(&index)).await;
    let lab = Lab {
        index,
        watches,
        _dir: TempDir::new("binary-lab"),
    };
    lab.synced().await;
    lab.wait("the seed's names", |s| {
        s.service("172.31.42.227:80").as_deref() == Some("ratel/vpaas-demo-prod:http")
            && s.endpoint("10.245.112.32")
                == Some((
                    "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm".into(),
                    false,
                ))
    })
    .await;

    let new_pod = pod("ratel", "added-over-http", "10.245.120.1").to_string();
    let reply = http(addr, "POST", "/lab/apply", &new_pod);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    lab.wait("pod applied over HTTP", |s| {
        s.pod_by_ip("10.245.120.1").as_deref() == Some("ratel/added-over-http")
    })
    .await;
    let reply = http(
        addr,
        "DELETE",
        "/lab/objects/pods/ratel/added-over-http",
        "",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    lab.wait("pod deleted over HTTP", |s| {
        s.pod_by_ip("10.245.120.1").is_none()
    })
    .await;
    let reply = http(
        addr,
        "DELETE",
        "/lab/objects/pods/ratel/added-over-http",
        "",
    );
    assert!(
        reply.starts_with("HTTP/1.1 404"),
        "deleting twice is an error: {reply}"
    );
    let reply = http(addr, "POST", "/lab/compact", "");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    lab.wait_lists(2).await;
}

/// One HTTP/1.1 request with `Connection: close`; the whole reply.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The trace's own path: `--kubeconfig` opened by `kube::source`, the watches on their own
/// thread (the event loop's runtime is not involved), health for the summary, and dropping the
/// source stopping the watches.
#[tokio::test]
async fn trace_source_watches_on_its_own_thread_until_dropped() {
    use ipvs_trace::kube::source::{self, Ambient, NameSource, Opened};

    let server = server(&cluster(), |_| {});
    let dir = TempDir::new("source");
    let path = dir.0.join("kubeconfig");
    std::fs::write(&path, kubeconfig(server.addr())).unwrap();
    let nothing = Ambient {
        kubeconfig_env: None,
        home_config: None,
        in_cluster: false,
    };
    let opened = source::open(&NameSource::Kubeconfig(path), &nothing, true).unwrap();
    let Opened::Live(index, live) = &opened else {
        panic!("--kubeconfig opens live watches");
    };
    assert!(
        live.health().wait_synced(WAIT).await,
        "{:?}",
        live.health().kinds()
    );
    server.apply(pod("ratel", "late", "10.245.120.9")).unwrap();
    let start = Instant::now();
    while View(&index.read().unwrap())
        .pod_by_ip("10.245.120.9")
        .is_none()
    {
        assert!(
            start.elapsed() < WAIT,
            "the new pod never reached the index"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = opened.health_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].starts_with("pods: synced (1 list(s), 1 event(s))"),
        "{lines:?}"
    );

    let index = Arc::clone(index);
    drop(opened);
    // Give a still-running watch ample time to deliver, then check that none did.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .apply(pod("ratel", "after-stop", "10.245.120.10"))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        View(&index.read().unwrap())
            .pod_by_ip("10.245.120.10")
            .is_none(),
        "the watches outlived their source"
    );
}
