//! The in-repo API server against real, unmodified kube-rs: `kube::Client` from an ordinary
//! kubeconfig, `kube::runtime::watcher` with bookmarks and the default backoff, exactly as
//! ipvs-trace runs them. Each test asserts on what the watcher hands its consumer.
//!
//! Loopback only; every wait is bounded.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use ipvs_trace_tests::kube_apiserver::{Kind, Options, Server};
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client, ResourceExt as _};
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

async fn client(addr: SocketAddr) -> Client {
    let yaml = ipvs_trace_tests::kube_apiserver::kubeconfig(addr);
    let kubeconfig = Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client builds")
}

/// What a consumer of the watcher holds: the pods by ns/name (buffered Init..InitDone replaces
/// the whole set, as ipvs-trace's index does), how many initial lists completed, the errors seen.
#[derive(Default)]
struct Mirror {
    pods: BTreeMap<String, Pod>,
    lists: u32,
    errors: Vec<String>,
}

fn watch_pods(client: Client, config: watcher::Config) -> Arc<Mutex<Mirror>> {
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let shared = Arc::clone(&mirror);
    tokio::spawn(async move {
        let mut stream = watcher(Api::<Pod>::all(client), config)
            .default_backoff()
            .boxed();
        let mut buffer = BTreeMap::new();
        while let Some(event) = stream.next().await {
            let mut m = shared.lock().unwrap();
            match event {
                Ok(watcher::Event::Init) => buffer.clear(),
                Ok(watcher::Event::InitApply(p)) => {
                    buffer.insert(key(&p), p);
                }
                Ok(watcher::Event::InitDone) => {
                    m.pods = std::mem::take(&mut buffer);
                    m.lists += 1;
                }
                Ok(watcher::Event::Apply(p)) => {
                    m.pods.insert(key(&p), p);
                }
                Ok(watcher::Event::Delete(p)) => {
                    m.pods.remove(&key(&p));
                }
                Err(e) => m.errors.push(e.to_string()),
            }
        }
    });
    mirror
}

fn key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn ip(m: &Mirror, key: &str) -> Option<String> {
    m.pods.get(key)?.status.as_ref()?.pod_ip.clone()
}

async fn wait_for(mirror: &Mutex<Mirror>, what: &str, cond: impl Fn(&Mirror) -> bool) {
    let start = Instant::now();
    loop {
        {
            let m = mirror.lock().unwrap();
            if cond(&m) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}: pods {:?}, lists {}, errors {:?}",
                m.pods.keys().collect::<Vec<_>>(),
                m.lists,
                m.errors
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start(objects: &[Value], tweak: impl FnOnce(&mut Options)) -> Server {
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
async fn initial_sync_add_delete_and_ip_reuse() {
    let server = start(
        &[pod("a", "p1", "10.0.0.1"), pod("b", "p2", "10.0.0.2")],
        |_| {},
    );
    let mirror = watch_pods(client(server.addr()).await, watcher::Config::default());
    wait_for(&mirror, "initial list", |m| {
        m.lists == 1 && m.pods.len() == 2
    })
    .await;

    server.apply(pod("a", "p3", "10.0.0.3")).unwrap();
    wait_for(&mirror, "p3 added", |m| {
        ip(m, "a/p3").as_deref() == Some("10.0.0.3")
    })
    .await;

    server.delete(Kind::Pod, "a", "p1").unwrap();
    server.apply(pod("c", "p4", "10.0.0.1")).unwrap();
    wait_for(&mirror, "p1 gone, its IP on p4", |m| {
        !m.pods.contains_key("a/p1") && ip(m, "c/p4").as_deref() == Some("10.0.0.1")
    })
    .await;
    let m = mirror.lock().unwrap();
    assert_eq!(
        m.lists, 1,
        "no relist without a reason; errors {:?}",
        m.errors
    );
    assert!(m.errors.is_empty(), "{:?}", m.errors);
}

#[tokio::test]
async fn pagination_lists_every_page() {
    let pods: Vec<Value> = (0..25)
        .map(|i| pod("ns", &format!("p{i:02}"), &format!("10.1.0.{i}")))
        .collect();
    let server = start(&pods, |_| {});
    let mirror = watch_pods(
        client(server.addr()).await,
        watcher::Config::default().page_size(4),
    );
    wait_for(&mirror, "25 pods over 7 pages", |m| {
        m.lists == 1 && m.pods.len() == 25
    })
    .await;
    // A change after the paginated list arrives on the watch that starts from the list's version.
    server.apply(pod("ns", "late", "10.1.1.1")).unwrap();
    wait_for(&mirror, "late pod", |m| m.pods.contains_key("ns/late")).await;
}

#[tokio::test]
async fn compaction_410_forces_a_relist_that_sees_missed_changes() {
    let server = start(&[pod("a", "p1", "10.0.0.1")], |_| {});
    let mirror = watch_pods(client(server.addr()).await, watcher::Config::default());
    wait_for(&mirror, "initial list", |m| m.lists == 1).await;
    server.compact().unwrap();
    // Changed while the client was being told 410: only a relist can show this.
    server.apply(pod("a", "p2", "10.0.0.2")).unwrap();
    wait_for(&mirror, "relist after 410", |m| {
        m.lists >= 2 && m.pods.contains_key("a/p2")
    })
    .await;
    let m = mirror.lock().unwrap();
    assert!(
        m.errors
            .iter()
            .any(|e| e.contains("410") || e.contains("too old resource version")),
        "the watcher saw the 410: {:?}",
        m.errors
    );
}

#[tokio::test]
async fn restart_with_state_resumes_without_relist() {
    let dir = tempdir("restart-state");
    let state = dir.join("state.json");
    let mut server = start(&[pod("a", "p1", "10.0.0.1")], |o| {
        o.state = Some(state.clone());
    });
    let addr = server.addr();
    let mirror = watch_pods(client(addr).await, watcher::Config::default());
    wait_for(&mirror, "initial list", |m| m.lists == 1).await;
    server.shutdown();
    let mut options = Options::new(addr);
    options.state = Some(state.clone());
    options.bookmark_interval = Duration::from_millis(200);
    let server = Server::start(options).expect("restarts on the same port");
    server.apply(pod("a", "p2", "10.0.0.2")).unwrap();
    wait_for(&mirror, "p2 after restart", |m| m.pods.contains_key("a/p2")).await;
    let m = mirror.lock().unwrap();
    // kube-client ends a watch body cut at EOF like a finished one, and the reconnect may beat
    // the restart or not, so errors are not asserted: only that no relist was needed.
    assert_eq!(
        m.lists, 1,
        "history persisted, so the watch resumed: {:?}",
        m.errors
    );
}

#[tokio::test]
async fn restart_fresh_forces_410_and_relist() {
    let mut server = start(&[pod("a", "p1", "10.0.0.1")], |_| {});
    let addr = server.addr();
    let mirror = watch_pods(client(addr).await, watcher::Config::default());
    wait_for(&mirror, "initial list", |m| m.lists == 1).await;
    server.shutdown();
    // A new server with other objects and a higher version base: the old version is unknown.
    let mut options = Options::new(addr);
    options.rv_base = Some(1000);
    let server = Server::start(options).expect("restarts on the same port");
    server.apply(pod("z", "fresh", "10.9.9.9")).unwrap();
    wait_for(&mirror, "relist shows only the new server's pods", |m| {
        m.lists >= 2 && m.pods.len() == 1 && m.pods.contains_key("z/fresh")
    })
    .await;
}

#[tokio::test]
async fn unreachable_at_start_then_up() {
    let addr = free_addr();
    let mirror = watch_pods(client(addr).await, watcher::Config::default());
    wait_for(&mirror, "a connection error", |m| !m.errors.is_empty()).await;
    let mut options = Options::new(addr);
    options.bookmark_interval = Duration::from_millis(200);
    let server = Server::start(options).expect("starts on the reserved port");
    server.apply(pod("a", "p1", "10.0.0.1")).unwrap();
    wait_for(&mirror, "synced once up", |m| {
        m.lists == 1 && m.pods.contains_key("a/p1")
    })
    .await;
}

#[tokio::test]
async fn slow_server_still_delivers() {
    let server = start(&[pod("a", "p1", "10.0.0.1")], |o| {
        o.delay = Duration::from_millis(700);
    });
    let mirror = watch_pods(client(server.addr()).await, watcher::Config::default());
    wait_for(&mirror, "initial list", |m| m.lists == 1).await;
    for i in 0..5 {
        server
            .apply(pod("a", &format!("q{i}"), &format!("10.0.1.{i}")))
            .unwrap();
    }
    wait_for(&mirror, "every change", |m| m.pods.len() == 6).await;
}

fn free_addr() -> SocketAddr {
    // Bound then released: nothing listens there until the test starts the server.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvs-trace-kube-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
