//! `ipvs-trace who --cluster` end to end: the real binary, its unmodified kube-rs, and the
//! in-repo API server serving the DaemonSet's pods and their `exec` subresource.
//!
//! Each pod's exec runs the ipvs-trace binary under test here, with the pod's own way of
//! answering appended ([`ExecTarget`]): n1 reads a history directory written by serve's
//! recorder, n2 asks a serve socket that does not exist (exit 1, an error on stderr). What
//! `--cluster` prints is compared with what the binary prints when asked directly, byte for
//! byte. Loopback only; every wait is bounded.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipvs_trace::events::model::EventKind;
use ipvs_trace::events::{DestCounters, Event, FwdMethod, Proto};
use ipvs_trace::history::recorder::{HistoryRecorder, RecorderConfig};
use ipvs_trace::kube::Names;
use ipvs_trace_tests::kube_apiserver::{ExecTarget, Options, Server};
use serde_json::{json, Value};

/// The client asked about.
const CLIENT: &str = "10.245.97.12";
const NAMESPACE: &str = "ipvs-trace";
/// Pods of the DaemonSet whose exec all fail or are not running.
const BROKEN_NAMESPACE: &str = "ipvs-trace-broken";
/// What n2's serve socket is: nothing.
const NO_SOCKET: &str = "unix:/nonexistent/ipvs-trace/api.sock";

/// The ipvs-trace binary, built once per test process (the tests crate depends on the library
/// only: `CARGO_BIN_EXE_` names binaries of the package under test alone).
fn ipvs_trace() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["build", "-p", "ipvs-trace", "--bin", "ipvs-trace"])
            .args(["--message-format", "json-render-diagnostics"])
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building ipvs-trace failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "ipvs-trace")
            .and_then(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the ipvs-trace executable")
    })
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "ipvs-trace-who-cluster-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Decisions a minute ago, a second apart: three for [`CLIENT`], one for another client.
fn decisions() -> Vec<Event> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    let start = u64::try_from(now).expect("fits") - 60_000_000_000;
    [
        (CLIENT, 51_776, "10.245.113.15:8080"),
        ("10.245.97.13", 40_000, "10.245.112.47:8080"),
        (CLIENT, 51_778, "10.245.112.47:8080"),
        (CLIENT, 51_780, "10.245.113.15:8080"),
    ]
    .into_iter()
    .zip(0..)
    .map(|((client, port, backend), i)| Event {
        kind: EventKind::New,
        dataplane: ipvs_trace::dataplane::Dataplane::Ipvs,
        timestamp_ns: start + i * 1_000_000_000,
        cpu: 0,
        netns: None,
        conn: Some(0xffff_8880_0000_0000 + i),
        proto: Proto::Tcp,
        client: SocketAddr::new(client.parse().expect("an IP"), port),
        vip: "172.31.42.227:80".parse().expect("an address"),
        backend: Some(backend.parse().expect("an address")),
        fwd: Some(FwdMethod::Masq),
        flags: 0,
        state: 1,
        scheduler: Some(Cow::Borrowed("rr")),
        dest: Some(DestCounters {
            weight: 1,
            active_conns: Some(0),
            inactive_conns: Some(1),
        }),
    })
    .collect()
}

/// A history directory as serve's recorder writes it (an event's time is its Unix time).
fn record_history(dir: &Path) {
    let (mut recorder, _store) = HistoryRecorder::start(RecorderConfig {
        dir: Some(dir.to_owned()),
        ..RecorderConfig::default()
    })
    .expect("the recorder starts");
    for event in decisions() {
        let unix_ns = i64::try_from(event.timestamp_ns).expect("fits");
        recorder.record(unix_ns, &event, &Names::NONE);
    }
    let summary = recorder.finish();
    assert!(summary.contains("written=4"), "{summary}");
}

/// A pod of the ipvs-trace DaemonSet (labelled as in deploy/daemonset.yaml), or another one.
fn pod(namespace: &str, name: &str, app: &str, node: &str, phase: &str) -> Value {
    json!({
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": app},
        },
        "spec": {"nodeName": node, "containers": [{"name": "ipvs-trace", "image": "x"}]},
        "status": {"phase": phase},
    })
}

fn target(extra_args: &[&str]) -> ExecTarget {
    ExecTarget {
        program: ipvs_trace().to_owned(),
        extra_args: extra_args.iter().map(|&a| a.to_owned()).collect(),
    }
}

/// The lab: n1 answers from `history`, n2 fails, n3 is Pending; in the broken namespace only
/// failing and pending pods. Pods that must not be asked have no exec target.
fn cluster(history: &Path) -> Server {
    let mut options = Options::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    let history = history.to_str().expect("a UTF-8 path");
    for (namespace, name, extra) in [
        (NAMESPACE, "ipvs-trace-n1", &["--history-dir", history][..]),
        (NAMESPACE, "ipvs-trace-n2", &["--server", NO_SOCKET]),
        (BROKEN_NAMESPACE, "ipvs-trace-n2", &["--server", NO_SOCKET]),
    ] {
        options
            .exec
            .insert(format!("{namespace}/{name}"), target(extra));
    }
    let server = Server::start(options).expect("the API server starts");
    for object in [
        pod(NAMESPACE, "ipvs-trace-n1", "ipvs-trace", "n1", "Running"),
        pod(NAMESPACE, "ipvs-trace-n2", "ipvs-trace", "n2", "Running"),
        pod(NAMESPACE, "ipvs-trace-n3", "ipvs-trace", "n3", "Pending"),
        // Not the DaemonSet's: another label, another namespace.
        pod(NAMESPACE, "web-n1", "web", "n1", "Running"),
        pod("default", "ipvs-trace-n1", "ipvs-trace", "n1", "Running"),
        pod(
            BROKEN_NAMESPACE,
            "ipvs-trace-n2",
            "ipvs-trace",
            "n2",
            "Running",
        ),
        pod(
            BROKEN_NAMESPACE,
            "ipvs-trace-n3",
            "ipvs-trace",
            "n3",
            "Pending",
        ),
    ] {
        server.apply(object).expect("pod applied");
    }
    server
}

fn run(args: &[&str]) -> Output {
    let mut child = Command::new(ipvs_trace())
        .args(args)
        .env_remove("KUBECONFIG")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ipvs-trace starts");
    // Bounded: a hung exec stream must fail the test, not hang it.
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    while child.try_wait().expect("waiting").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ipvs-trace {args:?} did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("its output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn who_cluster_merges_the_nodes_that_answer_and_names_the_others() {
    let dir = TempDir::new("answers");
    let history = dir.0.join("history");
    record_history(&history);
    let server = cluster(&history);
    let kubeconfig = dir.0.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("writing the kubeconfig");
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");

    // What n1 and n2 answer when asked directly.
    let direct = run(&[
        "who",
        "--history-dir",
        history.to_str().unwrap(),
        "-o",
        "json",
        CLIENT,
    ]);
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    let expected = text(&direct.stdout);
    assert_eq!(expected.lines().count(), 3, "{expected}");
    let failing = run(&["who", "--server", NO_SOCKET, "-o", "json", CLIENT]);
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing.stderr));
    let n2_error = text(&failing.stderr);
    let n2_error = n2_error
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("n2 says why")
        .trim()
        .trim_start_matches("error: ")
        .to_owned();

    let cluster = ["who", "--cluster", "--kubeconfig", kubeconfig];
    let out = run(&[&cluster[..], &["-o", "json", CLIENT]].concat());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout), expected, "{stderr}");
    for wanted in [
        format!(
            "asked 3 ipvs-trace pod(s) in namespace {NAMESPACE} (pods/exec): 1 answered, 2 did \
             not"
        ),
        format!("node n2 did not answer: {n2_error}"),
        "node n3 did not answer: its ipvs-trace pod ipvs-trace-n3 is not running (phase \
         \"Pending\")"
            .to_owned(),
    ] {
        assert!(
            stderr.contains(&wanted),
            "stderr lacks {wanted:?}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("node n1"), "{stderr}");

    let table = run(&[&cluster[..], &["-o", "table", CLIENT]].concat());
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let column = header.find("NODE-ASKED").expect("a NODE-ASKED column");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{table}");
    for row in rows {
        assert_eq!(row.get(column..column + 3), Some("n1 "), "{table}");
        assert!(row.contains(CLIENT), "{table}");
    }
}

#[test]
fn who_cluster_fails_when_no_node_answers() {
    let dir = TempDir::new("none");
    let server = cluster(&dir.0.join("no-history"));
    let kubeconfig = dir.0.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("writing the kubeconfig");
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");

    let out = run(&[
        "who",
        "--cluster",
        "--kubeconfig",
        kubeconfig,
        "--cluster-namespace",
        BROKEN_NAMESPACE,
        CLIENT,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    for wanted in [
        "0 answered, 2 did not",
        "node n2 did not answer: ",
        "node n3 did not answer: ",
        "no ipvs-trace pod answered",
    ] {
        assert!(
            stderr.contains(wanted),
            "stderr lacks {wanted:?}:\n{stderr}"
        );
    }

    let out = run(&[
        "who",
        "--cluster",
        "--kubeconfig",
        kubeconfig,
        "--cluster-namespace",
        "empty",
        CLIENT,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no pod labelled"), "{stderr}");
}
