//! The netfilter scenarios of issue 17: kube-proxy's nftables and iptables modes make the
//! decision (`nftables`, `iptables`: the seed cluster's Service through either mode), and a
//! half-migrated node runs IPVS beside both (`migrating`).
//!
//! The ground truth is the kernel's: its conntrack table (`conntrack -L`: a DNATed
//! connection's original destination is the VIP, its reply source the endpoint), for IPVS its
//! connection table (`ipvsadm -Lnc`), and the connections `lab-net` made. The events are read
//! field by field rather than through `ipvs_trace_tests::trace::Event`, whose exact contract
//! the IPVS scenarios check: here each line must carry `dataplane`, and the fields a netfilter
//! mode cannot supply must be present and `null`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use ipvs_trace_tests::conntrack::{self, Entry};
use ipvs_trace_tests::ipvsadm::ConnEntry;
use ipvs_trace_tests::output::ScenarioRun;
use ipvs_trace_tests::trace::{self, Summary};
use serde::Deserialize;
use serde_json::Value;

use super::{addr, seed};

/// The fields of a `new` event that netfilter's modes have no value for (no weights, no
/// per-endpoint counters, no forwarding method).
const NULL_IN_NETFILTER: [&str; 4] = ["fwd", "weight", "active_conns", "inactive_conns"];

/// One `trace -o json` line, the fields these checks read, and the line itself.
#[derive(Debug, Deserialize)]
struct Decision {
    event: String,
    dataplane: String,
    proto: String,
    client: SocketAddr,
    vip: SocketAddr,
    backend: Option<SocketAddr>,
    scheduler: Option<String>,
    fwd: Option<String>,
    conn: Option<String>,
    service: Option<String>,
    service_type: Option<String>,
    backend_pod: Option<String>,
    backend_node: Option<String>,
    client_pod: Option<String>,
    #[serde(skip)]
    raw: Value,
}

impl Decision {
    /// The connection: client ip:port and the address it dialled.
    fn key(&self) -> (SocketAddr, SocketAddr) {
        (self.client, self.vip)
    }

    fn backend(&self) -> SocketAddr {
        self.backend
            .unwrap_or_else(|| panic!("a new event without a backend: {}", self.raw))
    }
}

/// One `ipvs-trace trace` run (the dumps `NAME.out`, `NAME.stderr`, `NAME.status`).
struct Traced {
    decisions: Vec<Decision>,
    summary: Summary,
    status: i32,
    stderr: String,
}

fn traced(run: &ScenarioRun, name: &str) -> Traced {
    let stderr = run.dump(&format!("{name}.stderr")).text.clone();
    let status_text = &run.dump(&format!("{name}.status")).text;
    let status = status_text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("trace {name}: exit status {status_text:?}"));
    let decisions = run
        .dump(&format!("{name}.out"))
        .text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let raw: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("trace {name}: not JSON ({e}): {line}"));
            assert!(
                raw.get("dataplane").is_some_and(Value::is_string),
                "trace {name}: a line without its dataplane: {line}"
            );
            let mut decision: Decision = serde_json::from_value(raw.clone())
                .unwrap_or_else(|e| panic!("trace {name}: {e}: {line}"));
            decision.raw = raw;
            decision
        })
        .collect();
    let summary = trace::parse_summary(&stderr)
        .unwrap_or_else(|e| panic!("trace {name} (exit status {status}): {e}"));
    Traced {
        decisions,
        summary,
        status,
        stderr,
    }
}

/// The tracer stopped normally and dropped nothing.
fn assert_clean(name: &str, trace: &Traced) {
    assert_eq!(trace.status, 0, "trace {name}; stderr:\n{}", trace.stderr);
    assert_eq!(trace.summary.lost, Some(0), "trace {name}: lost events");
    assert_eq!(trace.summary.malformed, 0, "trace {name}: malformed");
    assert_eq!(trace.summary.unreadable, 0, "trace {name}: unreadable");
}

/// A netfilter decision of `mode`: a `new` event, `random`, the DNAT's endpoint, and `null`
/// (present, not left out) for what netfilter has not.
fn assert_netfilter_fields(decision: &Decision, mode: &str) {
    let what = &decision.raw;
    assert_eq!(decision.event, "new", "{what}");
    assert_eq!(decision.dataplane, mode, "{what}");
    assert_eq!(decision.proto, "TCP", "{what}");
    assert_eq!(decision.scheduler.as_deref(), Some("random"), "{what}");
    for field in NULL_IN_NETFILTER {
        assert!(
            what.get(field).is_some_and(Value::is_null),
            "{field} must be present and null: {what}"
        );
    }
    assert!(decision.backend.is_some(), "no backend: {what}");
    assert!(decision.conn.is_some(), "no connection id: {what}");
}

/// The connections the client runs `tags` made (`client-TAG` dumps), every one successful.
fn connections(run: &ScenarioRun, tags: &[&str]) -> BTreeSet<(SocketAddr, SocketAddr)> {
    let mut made = BTreeSet::new();
    for tag in tags {
        for line in run.client(tag) {
            assert!(line.ok(), "client {tag}: {line:?}");
            let local = line
                .local
                .unwrap_or_else(|| panic!("client {tag}: no local address: {line:?}"));
            assert!(
                made.insert((local, line.remote)),
                "client {tag}: {line:?} twice"
            );
        }
    }
    made
}

/// The entries of the `conntrack -L` dumps `names`, by original tuple. The same connection
/// listed by two dumps must be the same entry (the clients never reuse a port that soon).
fn conntrack_table(run: &ScenarioRun, names: &[&str]) -> BTreeMap<(SocketAddr, SocketAddr), Entry> {
    let mut table = BTreeMap::new();
    for name in names {
        let entries = conntrack::parse(&run.dump(name).text).unwrap_or_else(|e| panic!("{e}"));
        for entry in entries {
            if let Some(seen) = table.insert(entry.orig, entry.clone()) {
                assert_eq!(
                    (seen.proto, seen.reply),
                    (entry.proto.clone(), entry.reply),
                    "{name}: {:?} listed twice as two connections",
                    entry.orig
                );
            }
        }
    }
    table
}

/// Exactly one event per connection made, and none for anything else.
fn assert_one_event_per_connection(
    what: &str,
    decisions: &[&Decision],
    made: &BTreeSet<(SocketAddr, SocketAddr)>,
) {
    let mut seen = BTreeSet::new();
    let twice: Vec<&Value> = decisions
        .iter()
        .filter(|d| !seen.insert(d.key()))
        .map(|d| &d.raw)
        .collect();
    assert!(
        twice.is_empty(),
        "{what}: {} connections counted twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    let missing: Vec<_> = made.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(made).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} connections without an event (e.g. {:?}), {} events for no connection made \
         (e.g. {:?})",
        missing.len(),
        &missing[..missing.len().min(3)],
        extra.len(),
        &extra[..extra.len().min(3)]
    );
}

/// Each event is its connection's conntrack entry (original destination = the VIP, reply
/// source = the endpoint), and the endpoints' counts from the events equal conntrack's.
fn assert_events_are_conntrack(
    what: &str,
    decisions: &[&Decision],
    table: &BTreeMap<(SocketAddr, SocketAddr), Entry>,
) {
    let mut from_events: BTreeMap<(SocketAddr, SocketAddr), u64> = BTreeMap::new();
    let mut from_kernel: BTreeMap<(SocketAddr, SocketAddr), u64> = BTreeMap::new();
    for decision in decisions {
        let entry = table
            .get(&decision.key())
            .unwrap_or_else(|| panic!("{what}: no conntrack entry for {}", decision.raw));
        assert_eq!(entry.proto, "tcp", "{what}: {entry:?}");
        assert_eq!(
            entry.reply.0,
            decision.backend(),
            "{what}: the event's backend is not the conntrack entry's reply source {entry:?}: {}",
            decision.raw
        );
        *from_events
            .entry((decision.vip, decision.backend()))
            .or_default() += 1;
        *from_kernel
            .entry((entry.orig.1, entry.reply.0))
            .or_default() += 1;
    }
    assert_eq!(
        from_events, from_kernel,
        "{what}: connections per (VIP, endpoint), events vs conntrack"
    );
}

/// `nftables`: the seed Service through kube-proxy's nftables mode.
pub fn nftables(run: &ScenarioRun) {
    seed_through(run, "nftables");
}

/// `iptables`: the seed Service through kube-proxy's iptables mode (iptables-nft).
pub fn iptables(run: &ScenarioRun) {
    seed_through(run, "iptables");
}

/// What `kp_seed_scenario MODE` (tests/lib/lab.sh) ran.
const BALANCED: [&str; 3] = ["pod", "outside", "outside2"];
const REMOVED_WINDOW: [&str; 2] = ["before", "after"];
const REMOVED: &str = "10.245.112.32:8080";

fn seed_through(run: &ScenarioRun, mode: &str) {
    let trace = traced(run, "trace");
    assert_clean("trace", &trace);
    let all_tags: Vec<&str> = BALANCED
        .iter()
        .chain(&["nodeport"])
        .chain(&REMOVED_WINDOW)
        .copied()
        .collect();
    let dialled = connections(run, &all_tags);
    assert_eq!(dialled.len(), 300 + 6 + 180, "connections made");
    let decisions: Vec<&Decision> = trace.decisions.iter().collect();
    for decision in &decisions {
        assert_netfilter_fields(decision, mode);
        assert_seed_names(decision);
    }
    assert_one_event_per_connection("trace", &decisions, &dialled);
    let table = conntrack_table(run, &["conntrack-balanced", "conntrack-removed"]);
    assert_events_are_conntrack("trace", &decisions, &table);
    assert_eq!(trace.summary.count("new"), 486, "the summary's count");

    // After the removal the endpoint gets nothing: the rules no longer lead there.
    let after = connections(run, &["after"]);
    let removed = addr(REMOVED);
    let to_removed: Vec<&Value> = decisions
        .iter()
        .filter(|d| after.contains(&d.key()) && d.backend() == removed)
        .map(|d| &d.raw)
        .collect();
    assert!(to_removed.is_empty(), "after its removal: {to_removed:?}");

    assert_balance(run, mode);
    let vips = seed_vips(mode);
    assert_rules(run, "rules.json", mode, &vips, None);
    assert_rules(run, "rules-removed.json", mode, &vips, Some(REMOVED));
    if mode == "nftables" {
        assert_who_from_conntrack(run, &dialled);
    }
}

/// The lines of a `who -o json` dump (stdout and stderr together), each with `dataplane`;
/// the stderr lines apart.
fn who_answer(run: &ScenarioRun, name: &str) -> (Vec<Decision>, String) {
    let dump = run.dump(name);
    assert_eq!(dump.status, Some(0), "{name}: exit status\n{}", dump.text);
    let mut decisions = Vec::new();
    let mut stderr = String::new();
    for line in dump.text.lines() {
        if !line.starts_with('{') {
            stderr.push_str(line);
            stderr.push('\n');
            continue;
        }
        let raw: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
        assert!(
            raw["time"].is_null(),
            "{name}: the tables have no time: {line}"
        );
        let mut decision: Decision =
            serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
        decision.raw = raw;
        decisions.push(decision);
    }
    (decisions, stderr)
}

/// `who` with no serve on the nftables node: conntrack's DNAT entries answer. Each line is
/// its connection's conntrack entry (reply source = backend), nftables, `random`, named; by
/// Service, every DNAT of that Service in both listings around the question is answered, and
/// nothing that was in neither.
fn assert_who_from_conntrack(run: &ScenarioRun, dialled: &BTreeSet<(SocketAddr, SocketAddr)>) {
    let before = conntrack_table(run, &["conntrack-who"]);
    let after = conntrack_table(run, &["conntrack-who-after"]);
    let (each, stderr) = who_answer(run, "who-each");
    assert_eq!(each.len(), 2, "who CLIENT:PORT, two connections:\n{stderr}");
    let notices: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ipvs-trace who:"))
        .collect();
    assert_eq!(notices.len(), 2, "who-each: {stderr}");
    for line in notices {
        assert!(
            line.contains("from the kernel's connection table")
                && line.contains("conntrack's DNAT entries"),
            "who-each: {line}"
        );
    }
    let (service, stderr) = who_answer(run, "who-service");
    assert!(
        stderr.contains("from the kernel's connection table"),
        "who-service: {stderr}"
    );
    let mut seen = BTreeSet::new();
    for decision in each.iter().chain(&service) {
        let what = &decision.raw;
        assert_eq!(decision.event, "new", "{what}");
        assert_eq!(decision.dataplane, "nftables", "{what}");
        assert_eq!(decision.scheduler.as_deref(), Some("random"), "{what}");
        for field in NULL_IN_NETFILTER.iter().chain(&["conn"]) {
            assert!(
                what.get(field).is_some_and(Value::is_null),
                "{field} must be present and null: {what}"
            );
        }
        assert!(
            dialled.contains(&decision.key()),
            "who: not a connection made: {what}"
        );
        let entry = before
            .get(&decision.key())
            .unwrap_or_else(|| panic!("who: no conntrack entry for {what}"));
        assert_eq!(
            entry.reply.0,
            decision.backend(),
            "who: the backend is not the conntrack entry's reply source {entry:?}: {what}"
        );
        assert_seed_names(decision);
    }
    for decision in &service {
        assert!(
            seen.insert(decision.key()),
            "who-service: twice: {}",
            decision.raw
        );
    }
    let http = |key: &(SocketAddr, SocketAddr)| {
        key.1.ip().to_string() == seed::CLUSTER_IP && key.1.port() == 80
            || key.1.ip().to_string() == seed::NODE_IP && key.1.port() == 32380
    };
    let in_both: BTreeSet<(SocketAddr, SocketAddr)> = before
        .iter()
        .filter(|(key, entry)| http(key) && entry.reply.0 != key.1 && after.contains_key(key))
        .map(|(key, _)| *key)
        .collect();
    assert!(
        in_both.len() >= 300,
        "DNAT entries listed: {}",
        in_both.len()
    );
    let missing: Vec<_> = in_both.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "who-service: {} of {} DNAT entries not answered, e.g. {:?}",
        missing.len(),
        in_both.len(),
        &missing[..missing.len().min(3)]
    );
}

/// The seed's names on a netfilter event, from the lab's API server.
fn assert_seed_names(decision: &Decision) {
    let what = &decision.raw;
    let backend = decision.backend();
    let (pod, node) = seed::pod(&backend.ip().to_string())
        .unwrap_or_else(|| panic!("backend is not a seed pod: {what}"));
    assert_eq!(
        decision.service.as_deref(),
        Some(seed::service(decision.vip.port())),
        "{what}"
    );
    assert_eq!(
        decision.service_type.as_deref(),
        Some(seed::SERVICE_TYPE),
        "{what}"
    );
    assert_eq!(
        decision.backend_pod.as_deref(),
        Some(pod.as_str()),
        "{what}"
    );
    assert_eq!(decision.backend_node.as_deref(), Some(node), "{what}");
    assert_eq!(
        decision.client_pod.as_deref(),
        seed::client_pod(&decision.client.ip().to_string()),
        "{what}"
    );
}

/// `balance --check` on the http ClusterIP: the first window (300 connections at random over
/// three endpoints) passes; the second, in which an endpoint left, deviates and names it.
fn assert_balance(run: &ScenarioRun, mode: &str) {
    let vip = format!("{}:80", seed::CLUSTER_IP);
    for (window, status, made) in [("balanced", 0, 300), ("removed", 3, 180)] {
        let stderr = &run.dump(&format!("{window}.stderr")).text;
        assert_eq!(
            run.dump(&format!("{window}.status")).text.trim(),
            status.to_string(),
            "balance {window} exit status; stderr:\n{stderr}"
        );
        let out = &run.dump(&format!("{window}.out")).text;
        let doc: Value = serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("balance {window}: not one JSON document ({e}):\n{out}"));
        assert_eq!(doc["check_status"], status, "balance {window}: {doc}");
        assert_eq!(doc["events_lost"], 0, "balance {window}");
        let services = doc["services"].as_array().expect("services");
        // An empty report would pass --check without judging anything.
        let [service] = services.as_slice() else {
            panic!("balance {window}: --vip {vip} keeps one service, got {services:?}")
        };
        assert_eq!(service["vip"], vip.as_str(), "balance {window}");
        assert_eq!(
            service["connections"]["new"], made,
            "balance {window}: the window's connections to {vip} ({mode})"
        );
        let causes = service["causes"].as_array().expect("causes");
        if window == "removed" {
            assert!(
                causes.iter().any(|c| c["backend"] == REMOVED),
                "balance {window}: the removed endpoint {REMOVED} is not named: {causes:?}"
            );
        }
    }
}

/// The seed Service's addresses as `rules` shows them in `mode`, each with kube-proxy's name
/// for it and its endpoints' port: the ClusterIP and the LoadBalancer ingress IP on both
/// ports, and the NodePorts, on the node address in nftables mode (kube-proxy's `nodeport-ips`
/// set) and on any local address (`0.0.0.0`: `-m addrtype --dst-type LOCAL`) in iptables mode.
fn seed_vips(mode: &str) -> Vec<(SocketAddr, &'static str, u16)> {
    let node = if mode == "nftables" {
        seed::NODE_IP
    } else {
        "0.0.0.0"
    };
    let mut vips = Vec::new();
    for (port, node_port, name, target) in [
        (80, 32380, "ratel/vpaas-demo-prod:http", 8080),
        (50091, 31502, "ratel/vpaas-demo-prod:grpc", 50091),
    ] {
        for ip in [seed::CLUSTER_IP, seed::EXTERNAL_IP] {
            vips.push((addr(&format!("{ip}:{port}")), name, target));
        }
        vips.push((addr(&format!("{node}:{node_port}")), name, target));
    }
    vips
}

/// `rules -o json` (dump `name`) lists each of the Service's addresses with `mode` as its
/// dataplane, the name kube-proxy wrote, the Service's name, and exactly the endpoints the
/// scenario programmed (without `removed`), each with an equal share.
fn assert_rules(
    run: &ScenarioRun,
    name: &str,
    mode: &str,
    vips: &[(SocketAddr, &str, u16)],
    removed: Option<&str>,
) {
    let doc = rules_document(run, name);
    let dataplanes = doc["dataplanes"].as_array().expect("dataplanes");
    assert!(
        dataplanes.iter().any(|d| d == mode),
        "{name}: dataplanes {dataplanes:?}"
    );
    let services = doc["services"].as_array().expect("services");
    let of_mode: Vec<&Value> = services.iter().filter(|s| s["dataplane"] == mode).collect();
    assert_eq!(
        of_mode.len(),
        vips.len(),
        "{name}: the {mode} services: {of_mode:?}"
    );
    for (vip, kube_proxy_name, target) in vips {
        let service = find_service(&of_mode, *vip)
            .unwrap_or_else(|| panic!("{name}: no {mode} service {vip}: {of_mode:?}"));
        assert_eq!(service["proto"], "TCP", "{name} {vip}");
        assert_eq!(service["scheduler"], "random", "{name} {vip}");
        assert_eq!(service["kube_proxy_name"], *kube_proxy_name, "{name} {vip}");
        assert_eq!(service["service"], *kube_proxy_name, "{name} {vip}");
        let programmed: BTreeSet<SocketAddr> = SEED_POD_IPS
            .into_iter()
            .map(|ip| addr(&format!("{ip}:{target}")))
            .filter(|a| removed.is_none_or(|r| a.ip() != addr(r).ip()))
            .collect();
        let shown = dests(service);
        assert_eq!(
            shown.keys().copied().collect::<BTreeSet<_>>(),
            programmed,
            "{name}: {vip}'s endpoints"
        );
        #[expect(
            clippy::cast_precision_loss,
            reason = "two or three endpoints: exact in f64"
        )]
        let share = 1.0 / programmed.len() as f64;
        for (backend, probability) in shown {
            assert!(
                probability.is_some_and(|p| (p - share).abs() < 1e-6),
                "{name}: {vip} -> {backend}: probability {probability:?}, not {share}"
            );
        }
    }
}

const SEED_POD_IPS: [&str; 3] = ["10.245.112.32", "10.245.112.47", "10.245.113.15"];

/// The JSON document of a `dump_rules_json` dump, which must have succeeded.
fn rules_document(run: &ScenarioRun, name: &str) -> Value {
    let dump = run.dump(name);
    assert_eq!(
        dump.status,
        Some(0),
        "{name}:\n{}\nstderr:\n{}",
        dump.text,
        run.dump(&format!("{name}.stderr")).text
    );
    serde_json::from_str(&dump.text)
        .unwrap_or_else(|e| panic!("{name} is not one JSON document ({e}):\n{}", dump.text))
}

fn find_service<'a>(services: &[&'a Value], vip: SocketAddr) -> Option<&'a Value> {
    services
        .iter()
        .copied()
        .find(|s| s["vip"].as_str().map(addr) == Some(vip))
}

/// A service's `dests`: backend → probability.
fn dests(service: &Value) -> BTreeMap<SocketAddr, Option<f64>> {
    service["dests"]
        .as_array()
        .expect("dests")
        .iter()
        .map(|d| {
            (
                addr(d["backend"].as_str().expect("backend")),
                d["probability"].as_f64(),
            )
        })
        .collect()
}

/// `migrating`: each VIP's dataplane, as `migrating.sh` programmed it.
const MIGRATING: [(&str, &str); 3] = [
    ("172.31.0.80:80", "ipvs"),
    ("172.31.0.81:80", "nftables"),
    ("172.31.0.82:80", "iptables"),
];
const MIGRATING_PODS: [&str; 3] = ["10.245.9.1:8080", "10.245.9.2:8080", "10.245.9.3:8080"];

fn dataplane_of(vip: SocketAddr) -> &'static str {
    MIGRATING.iter().find(|(v, _)| addr(v) == vip).map_or_else(
        || panic!("{vip} is not one of migrating's VIPs"),
        |(_, d)| *d,
    )
}

pub fn migrating(run: &ScenarioRun) {
    let trace = traced(run, "trace");
    assert_clean("trace", &trace);
    let tags: Vec<String> = ["80", "81", "82"]
        .iter()
        .flat_map(|vip| [format!("all-{vip}-1"), format!("all-{vip}-2")])
        .collect();
    let made = connections(run, &tags.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(made.len(), 180, "connections made");
    let decisions: Vec<&Decision> = trace.decisions.iter().collect();
    for decision in &decisions {
        let dataplane = dataplane_of(decision.vip);
        assert_eq!(
            decision.dataplane, dataplane,
            "the VIP's dataplane: {}",
            decision.raw
        );
        assert!(
            decision.service.is_none(),
            "names without a Kubernetes source: {}",
            decision.raw
        );
    }
    // Nothing twice: the IPVS connections pass netfilter's NAT hooks too.
    assert_one_event_per_connection("trace", &decisions, &made);

    let (ipvs, netfilter): (Vec<&Decision>, Vec<&Decision>) =
        decisions.iter().partition(|d| d.dataplane == "ipvs");
    assert_eq!(ipvs.len(), 60, "IPVS events");
    for decision in &netfilter {
        assert_netfilter_fields(decision, dataplane_of(decision.vip));
    }
    let table = conntrack_table(run, &["conntrack"]);
    assert_events_are_conntrack("trace", &netfilter, &table);
    assert_ipvs_events(&ipvs, &run.conns_named("conns"));

    // --dataplane nftables: the nftables VIP's connections, each once, and nothing else.
    let narrowed = traced(run, "narrowed");
    assert_clean("narrowed", &narrowed);
    let made = connections(run, &["narrowed-81"]);
    let decisions: Vec<&Decision> = narrowed.decisions.iter().collect();
    for decision in &decisions {
        assert_netfilter_fields(decision, "nftables");
    }
    assert_one_event_per_connection("narrowed", &decisions, &made);
    let table = conntrack_table(run, &["conntrack-narrowed"]);
    assert_events_are_conntrack("narrowed", &decisions, &table);
    for tag in ["narrowed-80", "narrowed-82"] {
        assert_eq!(connections(run, &[tag]).len(), 10, "{tag} connections made");
    }

    assert_who_migrating(run);

    // rules: all three side by side, each VIP with its dataplane and the three pods.
    let doc = rules_document(run, "rules.json");
    let dataplanes: BTreeSet<&str> = doc["dataplanes"]
        .as_array()
        .expect("dataplanes")
        .iter()
        .map(|d| d.as_str().expect("a dataplane name"))
        .collect();
    assert_eq!(
        dataplanes,
        BTreeSet::from(["ipvs", "nftables", "iptables"]),
        "rules.json"
    );
    let services: Vec<&Value> = doc["services"]
        .as_array()
        .expect("services")
        .iter()
        .collect();
    assert_eq!(services.len(), MIGRATING.len(), "rules.json: {services:?}");
    let pods: BTreeSet<SocketAddr> = MIGRATING_PODS.iter().map(|p| addr(p)).collect();
    for (vip, dataplane) in MIGRATING {
        let service = find_service(&services, addr(vip))
            .unwrap_or_else(|| panic!("rules.json: no {vip}: {services:?}"));
        assert_eq!(service["dataplane"], dataplane, "rules.json {vip}");
        assert_eq!(
            dests(service).keys().copied().collect::<BTreeSet<_>>(),
            pods,
            "rules.json {vip}'s endpoints"
        );
    }
}

/// The IPVS events of the half-migrated node: each one entry of `ipvsadm -Lnc` (client, VIP,
/// real server), rr's own fields, and every entry one event.
fn assert_ipvs_events(decisions: &[&Decision], entries: &[ConnEntry]) {
    let mut left: BTreeSet<(SocketAddr, SocketAddr, SocketAddr)> = entries
        .iter()
        .filter(|e| e.proto == "TCP")
        .map(|e| (e.source, e.virtual_addr, e.destination))
        .collect();
    for decision in decisions {
        let what = &decision.raw;
        assert_eq!(decision.event, "new", "{what}");
        assert_eq!(decision.scheduler.as_deref(), Some("rr"), "{what}");
        assert_eq!(decision.fwd.as_deref(), Some("Masq"), "{what}");
        assert!(
            left.remove(&(decision.client, decision.vip, decision.backend())),
            "no ipvsadm -Lnc entry for {what}"
        );
    }
    assert!(
        left.is_empty(),
        "ipvsadm -Lnc entries without an event: {left:?}"
    );
}

/// `who` with no serve on the half-migrated node, for mclient1: both tables answer, each of
/// its 120 connections once, with its VIP's dataplane; IPVS lines are `ipvsadm -Lnc` entries,
/// netfilter ones `conntrack -L` entries (IPVS connections' conntrack entries are null
/// bindings: not answered again).
fn assert_who_migrating(run: &ScenarioRun) {
    let (decisions, stderr) = who_answer(run, "who-client");
    assert!(
        stderr.contains("from the kernel's connection tables (/proc/net/ip_vs_conn and conntrack's DNAT entries)"),
        "who-client: {stderr}"
    );
    let made = connections(
        run,
        &[
            "all-80-1",
            "all-81-1",
            "all-82-1",
            "narrowed-80",
            "narrowed-81",
            "narrowed-82",
        ],
    );
    assert_eq!(made.len(), 120, "mclient1's connections");
    let decisions: Vec<&Decision> = decisions.iter().collect();
    assert_one_event_per_connection("who-client", &decisions, &made);
    let table = conntrack_table(run, &["conntrack-who"]);
    let conns = run.conns_named("conns-who");
    for decision in &decisions {
        let what = &decision.raw;
        assert_eq!(decision.dataplane, dataplane_of(decision.vip), "{what}");
        if decision.dataplane == "ipvs" {
            assert_eq!(
                decision.scheduler, None,
                "the IPVS table has no scheduler: {what}"
            );
            assert!(
                conns.iter().any(|e| e.source == decision.client
                    && e.virtual_addr == decision.vip
                    && e.destination == decision.backend()),
                "no ipvsadm -Lnc entry for {what}"
            );
        } else {
            assert_eq!(decision.scheduler.as_deref(), Some("random"), "{what}");
            let entry = table
                .get(&decision.key())
                .unwrap_or_else(|| panic!("who-client: no conntrack entry for {what}"));
            assert_eq!(entry.reply.0, decision.backend(), "{what}");
        }
    }
}
