//! The `history` scenario: serve's recorder, its query API and `ipvs-trace who`, against the
//! kernel's connection table of the moment (`ipvsadm -Lnc`) and the pods that held each IP
//! then.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use ipvs_trace_tests::ipvsadm::{parse_conns, ConnEntry};
use ipvs_trace_tests::output::ScenarioRun;
use ipvs_trace_tests::trace::{parse_events, Event};

use super::{addr, metric_sum, parse_metrics, seed};

const CART_VIP: &str = "172.31.0.90:80";
const CART_A: &str = "shop/cart-5f7c9-a1b2c";
const CART_B: &str = "shop/cart-5f7c9-b3d4e";
const CART_C: &str = "shop/cart-5f7c9-c5f6g";
const NEW_SEED_POD: &str = "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-r3pl4";

/// The JSON lines of a dump whose stderr (the source line, warnings) is mixed in.
fn json_lines(run: &ScenarioRun, dump: &str) -> Vec<String> {
    run.dump(dump)
        .text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

/// The decisions of a `who -o json` dump, checked against the contract.
fn decisions(run: &ScenarioRun, dump: &str) -> Vec<Event> {
    parse_events(&json_lines(run, dump).join("\n"))
        .unwrap_or_else(|e| panic!("{dump}: {e}\n{}", run.dump(dump).text))
}

/// The dump's exit status and text, asserting the status.
fn status_text<'a>(run: &'a ScenarioRun, dump: &str, status: i32) -> &'a str {
    let d = run.dump(dump);
    assert_eq!(d.status, Some(status), "{dump}: exit status\n{}", d.text);
    &d.text
}

/// Who had each backend IP before the replacement (`late: false`) and after it.
fn pod_of(ip: &str, late: bool) -> (String, &'static str) {
    match (ip, late) {
        ("10.245.18.1", false) => (CART_A.to_owned(), "cn-beijing.10.245.96.44"),
        ("10.245.18.1", true) => (CART_C.to_owned(), "cn-beijing.10.245.96.44"),
        ("10.245.18.2", _) => (CART_B.to_owned(), "cn-beijing.10.245.96.44"),
        ("10.245.112.47", true) => (NEW_SEED_POD.to_owned(), "cn-beijing.10.245.96.43"),
        (ip, _) => seed::pod(ip).unwrap_or_else(|| panic!("{ip} is no pod of the scenario")),
    }
}

fn service_of(vip: SocketAddr) -> &'static str {
    if vip == addr(CART_VIP) {
        "shop/cart:http"
    } else {
        seed::service(vip.port())
    }
}

/// One connection a client made, with the kernel's entry for it.
struct Made {
    local: SocketAddr,
    entry: ConnEntry,
    /// Made after the two pods were replaced.
    late: bool,
}

/// The connections of client runs `tags`, each with its `ipvsadm -Lnc` entry from `conns`.
fn made(run: &ScenarioRun, conns: &str, tags: &[&str], late: bool) -> Vec<Made> {
    let table = parse_conns(&run.dump(conns).text).unwrap_or_else(|e| panic!("{conns}: {e}"));
    let mut out = Vec::new();
    for tag in tags {
        for line in run.client(tag) {
            assert!(line.ok(), "client {tag}: {line:?}");
            let local = line.local.expect("lab-net knows its source address");
            let entry = table
                .iter()
                .find(|e| e.source == local && e.virtual_addr == line.remote)
                .unwrap_or_else(|| panic!("{local} -> {} not in {conns}", line.remote))
                .clone();
            out.push(Made { local, entry, late });
        }
    }
    out
}

/// The decision recorded for `m`, with the names of its moment.
fn assert_named(m: &Made, d: &Event, context: &str) {
    assert_eq!(d.event, "new", "{context}: {d:?}");
    assert_eq!(
        d.backend,
        Some(m.entry.destination),
        "{context}: the backend ipvsadm showed"
    );
    let ip = m.entry.destination.ip().to_string();
    let (pod, node) = pod_of(&ip, m.late);
    assert_eq!(
        d.backend_pod.as_deref(),
        Some(pod.as_str()),
        "{context}: {d:?}"
    );
    assert_eq!(d.backend_node.as_deref(), Some(node), "{context}: {d:?}");
    assert_eq!(
        d.service.as_deref(),
        Some(service_of(d.vip)),
        "{context}: {d:?}"
    );
    assert_eq!(
        d.client_pod.as_deref(),
        seed::client_pod(&d.client.ip().to_string()),
        "{context}: {d:?}"
    );
}

/// `who_each`'s answers: `@ LOCAL` then that client's lines.
fn who_each(run: &ScenarioRun) -> BTreeMap<SocketAddr, Vec<Event>> {
    let text = &run.dump("who-each").text;
    let mut out: BTreeMap<SocketAddr, Vec<Event>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("@ status ") {
            panic!(
                "who {current:?} exited {rest}\n{}",
                run.dump("who-each.stderr").text
            );
        } else if let Some(local) = line.strip_prefix("@ ") {
            let local = addr(local);
            assert!(
                out.insert(local, Vec::new()).is_none(),
                "who {local} asked twice"
            );
            current = Some(local);
        } else if line.starts_with('{') {
            let local = current.expect("an answer after its @ line");
            let event = parse_events(line).unwrap_or_else(|e| panic!("who {local}: {e}"));
            out.entry(local).or_default().extend(event);
        }
    }
    out
}

fn lines_set(run: &ScenarioRun, dump: &str) -> BTreeSet<String> {
    json_lines(run, dump).into_iter().collect()
}

pub(super) fn history(run: &ScenarioRun) {
    let serve1 = status_text(run, "serve1.status", 0);
    assert_eq!(
        serve1.trim(),
        "0",
        "serve1 after SIGTERM\n{}",
        run.dump("serve1.stderr").text
    );
    let stderr1 = &run.dump("serve1.stderr").text;
    assert!(
        stderr1.contains("ipvs-trace: recording the last ")
            && stderr1
                .contains("queries on unix:/run/ipvs-trace/api.sock and http://127.0.0.1:9810"),
        "{stderr1}"
    );
    assert!(
        !stderr1.contains("not a loopback"),
        "127.0.0.1 is loopback: {stderr1}"
    );

    let early = made(run, "conns", &["http", "grpc", "nodeport", "cart"], false);
    let late = made(run, "conns-late", &["late-cart", "late-http"], true);
    assert_eq!((early.len(), late.len()), (200, 19), "connections made");
    let all: Vec<&Made> = early.iter().chain(&late).collect();
    each_connection_named_as_at_its_time(run, &all);
    the_reverse_questions(run, &all);
    security_and_bad_input(run);
    restarts_and_crashes(run);
    no_serve(run);
    unusable_directories(run);
}

/// The 200 and the 19, each named as at its time.
fn each_connection_named_as_at_its_time(run: &ScenarioRun, all: &[&Made]) {
    let answers = who_each(run);
    for m in all {
        let found: Vec<&Event> = answers[&m.local]
            .iter()
            .filter(|d| d.vip == m.entry.virtual_addr)
            .collect();
        let context = format!("who {} (to {})", m.local, m.entry.virtual_addr);
        let [d] = found.as_slice() else {
            panic!("{context}: {} decisions: {found:?}", found.len())
        };
        assert_named(m, d, &context);
    }
    let stderr = &run.dump("who-each.stderr").text;
    assert!(
        stderr
            .lines()
            .all(|l| l.contains("answered by serve at unix:/run/ipvs-trace/api.sock")),
        "who says which source answered:\n{stderr}"
    );
}

/// Exactly the connections each backend, pod and Service received.
fn the_reverse_questions(run: &ScenarioRun, all: &[&Made]) {
    let expect = |pred: &dyn Fn(&Made) -> bool| -> BTreeSet<(SocketAddr, SocketAddr)> {
        all.iter()
            .filter(|m| pred(m))
            .map(|m| (m.local, m.entry.virtual_addr))
            .collect()
    };
    let got = |dump: &str| -> BTreeSet<(SocketAddr, SocketAddr)> {
        decisions(run, dump)
            .iter()
            .map(|d| (d.client, d.vip))
            .collect()
    };
    let to = |m: &Made, ip: &str| m.entry.destination.ip().to_string() == ip;
    let cart_a1 = addr("10.245.18.1:8080");
    assert_eq!(
        got("who-backend"),
        expect(&|m| m.entry.destination == cart_a1)
    );
    assert_eq!(
        got("who-pod-cart-a"),
        expect(&|m| !m.late && to(m, "10.245.18.1"))
    );
    assert_eq!(
        got("who-pod-cart-c"),
        expect(&|m| m.late && to(m, "10.245.18.1"))
    );
    assert_eq!(
        got("who-pod-x7k2p"),
        expect(&|m| !m.late && to(m, "10.245.112.47"))
    );
    assert!(!got("who-pod-cart-a").is_empty() && !got("who-pod-cart-c").is_empty());
    let grpc = seed::service(50091);
    assert_eq!(
        got("who-service"),
        expect(&|m| service_of(m.entry.virtual_addr) == grpc),
        "--service {grpc} --since 1h"
    );
    let client = decisions(run, "who-client");
    assert_eq!(client.len(), 179, "every decision of 10.245.97.12");
    assert!(
        client.windows(2).all(|w| w[0].time <= w[1].time),
        "oldest first"
    );
    assert_eq!(decisions(run, "who-outside").len(), 40);
    let table = status_text(run, "who-table", 0);
    assert!(
        table.contains("shop/cart") && table.contains(CART_B),
        "{table}"
    );
    let none = status_text(run, "who-none", 0);
    assert!(json_lines(run, "who-none").is_empty(), "{none}");
}

fn security_and_bad_input(run: &ScenarioRun) {
    assert_eq!(run.dump("socket-mode").text.trim(), "600 0 socket");
    let nonroot = status_text(run, "who-nonroot", 1);
    assert!(
        nonroot.to_lowercase().contains("permission denied"),
        "{nonroot}"
    );
    let on_metrics = &run.dump("metrics-decisions").text;
    assert!(on_metrics.starts_with("HTTP/1.1 404"), "{on_metrics}");
    let tcp = &run.dump("api-tcp").text;
    assert!(tcp.starts_with("HTTP/1.1 200"), "{tcp}");
    assert!(
        tcp.to_lowercase().contains("x-ipvs-trace-truncated: true"),
        "{tcp}"
    );
    assert_eq!(json_lines(run, "api-tcp").len(), 3, "limit=3\n{tcp}");
    for (dump, needle) in [
        ("api-bad-client", "parameter client"),
        ("api-bad-limit", "parameter limit"),
        ("api-unknown", "unknown parameter \"colour\""),
    ] {
        let text = &run.dump(dump).text;
        assert!(
            text.starts_with("HTTP/1.1 400") && text.contains(needle),
            "{dump}:\n{text}"
        );
    }
    for (dump, needle) in [
        ("who-bad-server", "nobody.sock"),
        ("who-bad-http", "127.0.0.1:1"),
        ("who-bad-since", "--since"),
        ("who-no-filter", "CLIENT"),
    ] {
        let text = status_text(run, dump, 1);
        assert!(text.contains(needle), "{dump}:\n{text}");
    }
}

/// A restart on the same directory, and offline: the same answers, line for line; kill -9
/// mid-storm plus a torn tail: everything that was on disk is still answered.
fn restarts_and_crashes(run: &ScenarioRun) {
    let before = lines_set(run, "who-client");
    assert_eq!(
        lines_set(run, "offline-client"),
        before,
        "who --history-dir"
    );
    assert_eq!(
        lines_set(run, "restart-client"),
        before,
        "after a SIGTERM and a start"
    );
    assert_eq!(
        lines_set(run, "restart-outside"),
        lines_set(run, "who-outside")
    );
    let offline = &run.dump("offline-client").text;
    assert!(offline.contains("from the history in"), "{offline}");

    let committed = lines_set(run, "committed");
    let after = lines_set(run, "after-kill");
    assert!(
        committed.len() > before.len(),
        "the storm reached the disk before the kill"
    );
    let missing: Vec<_> = committed.difference(&after).collect();
    assert!(missing.is_empty(), "lost after kill -9: {missing:?}");
    let stderr3 = &run.dump("serve3.stderr").text;
    let warnings: Vec<&str> = stderr3.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the torn tail:\n{stderr3}"
    );
    assert_eq!(status_text(run, "serve3.status", 0).trim(), "0");
}

/// No serve: the kernel's table, with names.
fn no_serve(run: &ScenarioRun) {
    let fallback = status_text(run, "who-fallback", 0);
    assert!(fallback.contains("/proc/net/ip_vs_conn"), "{fallback}");
    let table = parse_conns(&run.dump("conns-fallback").text).expect("conns-fallback");
    let lines: Vec<serde_json::Value> = json_lines(run, "who-fallback")
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    for line in run.client("nolive") {
        let local = line.local.expect("lab-net knows its source address");
        // By client and VIP: the same client ip:port may also have an older entry to another
        // VIP (CI on 0d7ca76: 198.51.100.7:45540 to the seed's NodePort as well).
        let entry = table
            .iter()
            .find(|e| e.source == local && e.virtual_addr.to_string() == CART_VIP)
            .unwrap_or_else(|| panic!("{local} -> {CART_VIP} not in conns-fallback"));
        let answer = lines
            .iter()
            .find(|v| v["client"] == local.to_string() && v["vip"] == CART_VIP)
            .unwrap_or_else(|| panic!("who-fallback has no {local} -> {CART_VIP}:\n{fallback}"));
        assert_eq!(answer["backend"], entry.destination.to_string(), "{answer}");
        assert_eq!(answer["vip"], CART_VIP, "{answer}");
        assert_eq!(
            answer["time"],
            serde_json::Value::Null,
            "the table has no time"
        );
        let (pod, _) = pod_of(&entry.destination.ip().to_string(), true);
        assert_eq!(answer["backend_pod"], pod.as_str(), "{answer}");
    }
}

/// Directories that cannot hold the history, and a disk that fills up.
fn unusable_directories(run: &ScenarioRun) {
    let text = status_text(run, "serve-dir-file", 1);
    assert!(
        text.contains("a-file") && text.contains("--history-dir"),
        "{text}"
    );
    let text = status_text(run, "serve-dir-ro", 1);
    assert!(
        text.contains("ro/history") && text.contains("--history-dir"),
        "{text}"
    );
    let samples = parse_metrics(&run.dump("full-metrics").text);
    let dropped = metric_sum(
        &samples,
        "ipvs_trace_history_dropped_total",
        &[("reason", "disk")],
    );
    assert!(dropped > 0, "a full disk drops decisions, counted");
    let in_memory = decisions(run, "full-memory");
    assert_eq!(
        in_memory.iter().filter(|d| d.vip == addr(CART_VIP)).count(),
        300,
        "memory keeps every decision the disk could not"
    );
    assert_eq!(status_text(run, "serve4.status", 0).trim(), "0");
}
