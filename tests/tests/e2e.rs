//! End-to-end scenarios on Debian 5.10, 6.1, 6.12 and (a subset) 7.2 kernels in the QEMU VM lab.
//!
//! One boot per kernel runs every scenario of `tests/scenarios/` (see `ipvs_trace_tests::lab`);
//! each test here reads its scenario's dumps and asserts the tracer's events against the
//! kernel's own view: `ipvsadm -Lnc` (the connection table), `ipvsadm -Ln --stats` (what IPVS
//! counted as scheduled), `ipvsadm -Ln`, and `lab-net`'s line per connection made.
//!
//! They boot VMs (minutes under TCG; `cargo xtask test` sets up what the lab needs first).
//! `LAB_STREAM=1` echoes the guest consoles live; `LAB_ONLY=builtin,reuse` runs only those
//! scenarios in each boot (while working on them: the other tests then fail).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ipvs_trace_tests::ipvsadm::ConnEntry;
use ipvs_trace_tests::lab::{boot, SCENARIOS, SCENARIOS_7_2};
use ipvs_trace_tests::labnet::ClientLine;
use ipvs_trace_tests::output::ScenarioRun;
use ipvs_trace_tests::trace::Event;
use ipvs_trace_tests::views::Trace;
use xtask::lab::Kernel;

#[path = "e2e/history_checks.rs"]
mod history_checks;
use history_checks::history;

#[path = "e2e/netfilter_checks.rs"]
mod netfilter_checks;
use netfilter_checks::{iptables, migrating, nftables};

/// Calls `$then! {$($args)*; <every scenario>}`: the one list of scenarios, in the order of
/// `SCENARIOS`, shared by the kernels' test modules and the completeness check below.
macro_rules! with_scenarios {
    ($then:ident!($($args:tt)*)) => {
        $then! {$($args)*;
            rr, wrr, udp, persistent, reuse, no_dest, builtin, nodeport, names, snapshot, rules,
            dualstack, nat, balance, metrics, top, history, reload, filter, attach, errors,
            nftables, iptables, migrating
        }
    };
}

/// A module of one `#[test]` per scenario for one kernel: `v6_1::rr`, `v7_2::reuse`...
macro_rules! kernel_tests {
    ($module:ident, $kernel:ident; $($check:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    super::scenario(super::Kernel::$kernel, stringify!($check), super::$check);
                }
            )*
        }
    };
}

with_scenarios!(kernel_tests!(v5_10, V5_10));
with_scenarios!(kernel_tests!(v6_1, V6_1));
with_scenarios!(kernel_tests!(v6_12, V6_12));

/// 7.2 runs a subset (`ipvs_trace_tests::lab::SCENARIOS_7_2` says which and why).
macro_rules! kernel_7_2 {
    ($($check:ident),*) => {
        kernel_tests!(v7_2, V7_2; $($check),*);

        #[test]
        fn the_7_2_module_tests_the_7_2_scenarios() {
            assert_eq!([$(stringify!($check)),*].as_slice(), SCENARIOS_7_2);
        }
    };
}

kernel_7_2!(
    rr, wrr, udp, reuse, no_dest, builtin, nodeport, rules, dualstack, history, reload, filter,
    attach, errors, nftables, iptables, migrating
);

macro_rules! completeness {
    (; $($check:ident),*) => {
        /// Every scenario file has its tests, and every test its scenario file.
        #[test]
        fn every_scenario_is_tested() {
            let tested = BTreeSet::from([$(stringify!($check)),*]);
            assert_eq!(tested, SCENARIOS.iter().copied().collect::<BTreeSet<_>>());
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
            let files: BTreeSet<String> = std::fs::read_dir(&dir)
                .expect("tests/scenarios")
                .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n != "run-all.sh")
                .collect();
            let expected: BTreeSet<String> = tested.iter().map(|n| format!("{n}.sh")).collect();
            assert_eq!(files, expected, "scenario files in {}", dir.display());
        }
    };
}

with_scenarios!(completeness!());

/// Boots (or joins the boot of) `kernel`, prints the scenario's figures, runs `check`.
fn scenario(kernel: Kernel, name: &str, check: fn(&ScenarioRun)) {
    let boot = boot(kernel);
    println!("{} {name}: {}", boot.kernel, boot.figures(name));
    check(boot.scenario(name));
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text} is not an ip:port"))
}

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text} is not an ip"))
}

/// The serve of `serve_start serve` ended with status 0 on SIGTERM and printed no event
/// (`serve_stop serve`'s dumps); its stderr.
fn serve_stopped(run: &ScenarioRun) -> &str {
    let stderr = &run.dump("serve.stderr").text;
    assert_eq!(
        run.dump("serve.status").text.trim(),
        "0",
        "serve's exit status after SIGTERM; its stderr:\n{stderr}"
    );
    assert_eq!(run.dump("serve.out").text, "", "serve prints no events");
    stderr
}

/// The tracer stopped normally and dropped nothing.
fn assert_clean(name: &str, trace: &Trace) {
    assert_eq!(
        trace.status, 0,
        "trace {name} exit status; stderr:\n{}",
        trace.stderr
    );
    assert_eq!(trace.summary.lost, Some(0), "trace {name}: lost events");
    assert_eq!(
        trace.summary.malformed, 0,
        "trace {name}: malformed records"
    );
    assert_eq!(
        trace.summary.unreadable, 0,
        "trace {name}: unreadable records"
    );
}

/// The fields a `new` or `template` event must carry for a Masq service of `scheduler`, with
/// no Kubernetes source.
fn assert_scheduled_fields(event: &Event, proto: &str, scheduler: &str) {
    assert_scheduling(event, proto, scheduler);
    assert!(
        event.names_are_null(),
        "Kubernetes names without a Kubernetes source: {event:?}"
    );
}

/// The kernel's part of a `new` or `template` event for a Masq service of `scheduler`.
fn assert_scheduling(event: &Event, proto: &str, scheduler: &str) {
    let what = format!("{event:?}");
    assert_eq!(event.dataplane, "ipvs", "{what}");
    assert_eq!(event.proto, proto, "{what}");
    assert_eq!(event.scheduler.as_deref(), Some(scheduler), "{what}");
    assert_eq!(event.fwd.as_deref(), Some("Masq"), "{what}");
    assert!(event.backend.is_some(), "no backend: {what}");
    assert!(event.weight.is_some(), "no weight: {what}");
    assert!(
        event.active_conns.is_some() && event.inactive_conns.is_some(),
        "no dest counters: {what}"
    );
    assert!(event.conn.is_some(), "no connection id: {what}");
    assert!(event.netns.is_some_and(|n| n != 0), "no netns: {what}");
}

/// Each event (a `new` or `template`) is exactly one entry of the kernel's connection table
/// (same protocol, client ip:port, VIP, backend), and each of `entries` is one event.
fn assert_events_are_entries(events: &[&Event], entries: &[ConnEntry]) {
    let mut left: Vec<&ConnEntry> = entries.iter().collect();
    let mut unmatched = Vec::new();
    for event in events {
        let found = left.iter().position(|e| {
            e.proto == event.proto
                && e.source == event.client
                && e.virtual_addr == event.vip
                && Some(e.destination) == event.backend
        });
        match found {
            Some(i) => {
                left.swap_remove(i);
            }
            None => unmatched.push(*event),
        }
    }
    assert!(
        unmatched.is_empty(),
        "{} of {} events have no entry in ipvsadm -Lnc, e.g. {:?}",
        unmatched.len(),
        events.len(),
        &unmatched[..unmatched.len().min(3)]
    );
    assert!(
        left.is_empty(),
        "{} of {} ipvsadm -Lnc entries have no event, e.g. {:?}",
        left.len(),
        entries.len(),
        &left[..left.len().min(3)]
    );
}

/// The entries of one virtual service.
fn entries_of(run: &ScenarioRun, conns_dump: &str, proto: &str, vip: SocketAddr) -> Vec<ConnEntry> {
    run.conns_named(conns_dump)
        .into_iter()
        .filter(|e| e.proto == proto && e.virtual_addr == vip)
        .collect()
}

/// Each successful `lab-net` connection is exactly one event, from the same client ip:port to
/// the address the client dialled. Connections are told apart by (client ip:port, dialled
/// address): one netns dialling two Services at once may use a source port twice.
fn assert_events_are_connections(events: &[&Event], clients: &[ClientLine]) {
    let mut dialled: BTreeSet<(SocketAddr, SocketAddr)> = BTreeSet::new();
    for line in clients {
        assert!(line.ok(), "connection failed: {line:?}");
        let local = line
            .local
            .unwrap_or_else(|| panic!("no local address: {line:?}"));
        assert!(
            dialled.insert((local, line.remote)),
            "two connections {local} -> {}: the scenario cannot tell their events apart",
            line.remote
        );
    }
    let mut seen = BTreeSet::new();
    for event in events {
        let connection = (event.client, event.vip);
        assert!(
            dialled.contains(&connection),
            "event for a connection no client made ({} -> {}): {event:?}",
            event.client,
            event.vip
        );
        assert!(
            seen.insert(connection),
            "two events for one connection: {event:?}"
        );
    }
    assert_eq!(
        seen.len(),
        dialled.len(),
        "connections without an event: {:?}",
        dialled.difference(&seen).collect::<Vec<_>>()
    );
}

/// One scheduled virtual service: the events for it against what IPVS says it scheduled.
/// `expected` is (backend, configured weight, connections it must have received).
fn assert_distribution(
    run: &ScenarioRun,
    trace: &Trace,
    proto: &str,
    vip: SocketAddr,
    scheduler: &str,
    expected: &[(&str, i32, u64)],
) {
    let events: Vec<&Event> = trace.of_kind("new").filter(|e| e.vip == vip).collect();
    for event in &events {
        assert_scheduled_fields(event, proto, scheduler);
        let weight = expected
            .iter()
            .find(|(b, _, _)| event.backend == Some(addr(b)))
            .map(|(_, w, _)| *w);
        assert_eq!(event.weight, weight, "weight carried by {event:?}");
    }
    assert_events_are_entries(&events, &entries_of(run, "conns", proto, vip));

    let mut per_backend: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    for event in &events {
        *per_backend
            .entry(event.backend.expect("checked above"))
            .or_default() += 1;
    }
    let want: BTreeMap<SocketAddr, u64> = expected.iter().map(|(b, _, n)| (addr(b), *n)).collect();
    assert_eq!(per_backend, want, "{proto} {vip}: new events per backend");

    let summary_key = format!("{proto} {vip} {scheduler}");
    assert_eq!(
        trace.summary.services.get(&summary_key),
        Some(&want),
        "summary line {summary_key:?} per backend; stderr:\n{}",
        trace.stderr
    );

    let stats = run.service_stats(proto, vip);
    let total: u64 = want.values().sum();
    assert_eq!(
        stats.counters.conns, total,
        "{proto} {vip}: IPVS's own Conns"
    );
    let stats_per_dest: BTreeMap<SocketAddr, u64> =
        stats.dests.iter().map(|(a, c)| (*a, c.conns)).collect();
    assert_eq!(
        stats_per_dest, want,
        "{proto} {vip}: IPVS's Conns per real server"
    );

    let rules = run.service_rules(proto, vip);
    assert_eq!(rules.scheduler, scheduler);
    for (backend, weight, n) in expected {
        let dest = rules
            .dests
            .iter()
            .find(|d| d.addr == addr(backend))
            .unwrap_or_else(|| panic!("{backend} not a real server of {vip} in ipvsadm -Ln"));
        assert_eq!(dest.forward, "Masq");
        assert_eq!(dest.weight, *weight, "{backend} weight");
        // Every entry is still listed when the rules are dumped (closed TCP entries wait in
        // TIME_WAIT): ActiveConn + InActConn is the number of entries, one per connection.
        assert_eq!(
            dest.active + dest.inactive,
            *n,
            "{backend}: ActiveConn + InActConn in ipvsadm -Ln"
        );
    }
}

// rr: 3 backends, 300 TCP connections from 3 client netns.
fn rr(run: &ScenarioRun) {
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let clients = run.all_clients();
    assert_eq!(clients.len(), 300, "lab-net connections");
    assert_eq!(
        trace.summary.count("new"),
        300,
        "summary: {:?}",
        trace.summary
    );
    assert_eq!(trace.events.len(), 300, "events of any kind");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&events, &clients);
    assert_distribution(
        run,
        &trace,
        "TCP",
        addr("172.31.0.10:80"),
        "rr",
        &[
            ("10.245.1.1:8080", 1, 100),
            ("10.245.1.2:8080", 1, 100),
            ("10.245.1.3:8080", 1, 100),
        ],
    );
    // All 300 entries were alive at once: their ids (the kernel's cp pointers) are distinct.
    let ids: BTreeSet<_> = events.iter().map(|e| e.conn.clone()).collect();
    assert_eq!(ids.len(), 300, "distinct connection ids");
}

// wrr: weights 3:2:1, 600 connections, traced with --vip.
fn wrr(run: &ScenarioRun) {
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let clients = run.all_clients();
    assert_eq!(clients.len(), 600, "lab-net connections");
    assert_eq!(trace.events.len(), 600, "events of any kind");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&events, &clients);
    assert_distribution(
        run,
        &trace,
        "TCP",
        addr("172.31.0.11:80"),
        "wrr",
        &[
            ("10.245.2.1:8080", 3, 300),
            ("10.245.2.2:8080", 2, 200),
            ("10.245.2.3:8080", 1, 100),
        ],
    );
}

// udp: a kube-dns-like 53/UDP + 53/TCP service, traced with --proto udp.
fn udp(run: &ScenarioRun) {
    let vip = addr("172.31.0.53:53");
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    assert!(
        trace.events.iter().all(|e| e.proto == "UDP"),
        "--proto udp let other protocols through"
    );
    assert_eq!(trace.events.len(), 40, "UDP events");
    let queries: Vec<ClientLine> = [run.client("udp1"), run.client("udp2")].concat();
    assert_eq!(queries.len(), 40, "UDP queries");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&events, &queries);
    assert_distribution(
        run,
        &trace,
        "UDP",
        vip,
        "rr",
        &[("10.245.3.1:53", 1, 20), ("10.245.3.2:53", 1, 20)],
    );
    // The TCP connections happened (IPVS scheduled them) and the filter hid them.
    let tcp = run.client("tcp1");
    assert_eq!(tcp.iter().filter(|l| l.ok()).count(), 6, "TCP connections");
    assert_eq!(run.service_stats("TCP", vip).counters.conns, 6, "TCP Conns");
}

// persistent: -p 60, 3 clients x 20 connections: one template per client, one pod per client.
fn persistent(run: &ScenarioRun) {
    let vip = addr("172.31.0.20:80");
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let templates: Vec<&Event> = trace.of_kind("template").collect();
    let news: Vec<&Event> = trace.of_kind("new").collect();
    assert_eq!(templates.len(), 3, "one template per client: {templates:?}");
    assert_eq!(news.len(), 60, "new events");
    assert_eq!(trace.events.len(), 63, "events of any kind");
    assert_eq!(trace.summary.count("template"), 3);
    assert_eq!(trace.summary.count("new"), 60);

    let mut template_backend: BTreeMap<IpAddr, SocketAddr> = BTreeMap::new();
    for t in &templates {
        assert_scheduled_fields(t, "TCP", "rr");
        assert_eq!(t.client.port(), 0, "a template has no client port: {t:?}");
        assert!(
            template_backend
                .insert(t.client.ip(), t.backend.expect("checked"))
                .is_none(),
            "two templates for {}",
            t.client.ip()
        );
    }
    let clients: BTreeSet<IpAddr> = ["198.51.100.11", "198.51.100.12", "198.51.100.13"]
        .map(ip)
        .into();
    assert_eq!(
        template_backend.keys().copied().collect::<BTreeSet<_>>(),
        clients
    );
    // rr scheduled the three templates one after another: three different pods.
    let pods: BTreeSet<_> = template_backend.values().collect();
    assert_eq!(pods.len(), 3, "template backends {template_backend:?}");

    for event in &news {
        assert_scheduled_fields(event, "TCP", "rr");
        assert_eq!(
            event.backend,
            template_backend.get(&event.client.ip()).copied(),
            "a connection left its client's pod: {event:?}"
        );
    }
    assert_events_are_connections(&news, &run.all_clients());
    // Templates (listed as ASSURED, client port 0) and connections, all in the kernel's table.
    let all: Vec<&Event> = templates.iter().chain(&news).copied().collect();
    assert_events_are_entries(&all, &entries_of(run, "conns", "TCP", vip));
    let stats = run.service_stats("TCP", vip);
    assert_eq!(
        stats.counters.conns, 60,
        "IPVS's Conns (templates are not connections)"
    );
    assert_eq!(run.service_rules("TCP", vip).flags, "persistent 60");
}

// reuse: conn_reuse_mode=0, one client ip:port reconnecting 5 times; --client filter.
fn reuse(run: &ScenarioRun) {
    let vip = addr("172.31.0.30:80");
    let client = addr("198.51.100.11:30000");
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let reconnects = run.client("reuse");
    assert_eq!(reconnects.len(), 5);
    for line in &reconnects {
        assert!(line.ok(), "reconnect failed: {line:?}");
        assert_eq!(
            line.local,
            Some(client),
            "lab-net did not keep its source port"
        );
    }
    let kinds: Vec<&str> = trace.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        ["new", "reused", "reused", "reused", "reused"],
        "event kinds in order"
    );
    assert_eq!(trace.summary.count("new"), 1);
    assert_eq!(trace.summary.count("reused"), 4);
    let first = &trace.events[0];
    assert_scheduled_fields(first, "TCP", "rr");
    for event in &trace.events {
        assert_eq!(
            event.client, client,
            "--client let another client through: {event:?}"
        );
        assert_eq!(event.vip, vip);
        assert_eq!(
            event.backend, first.backend,
            "a reused entry changed pod: {event:?}"
        );
        assert_eq!(
            event.conn, first.conn,
            "reused is the same kernel entry: {event:?}"
        );
    }
    // The kernel holds one entry for that client ip:port, on the traced pod.
    let entries: Vec<ConnEntry> = entries_of(run, "conns", "TCP", vip)
        .into_iter()
        .filter(|e| e.source == client)
        .collect();
    assert_events_are_entries(&[first], &entries);
    // IPVS scheduled client1 once and client2's 3 connections; the 4 reuses went uncounted.
    let other = run.client("other");
    assert_eq!(
        other.iter().filter(|l| l.ok()).count(),
        3,
        "client2: {other:?}"
    );
    assert_eq!(
        run.service_stats("TCP", vip).counters.conns,
        1 + 3,
        "IPVS's Conns"
    );
    reuse_with_only_new_asked_for(run, vip, first.backend);
}

/// The second round of `reuse`: `--event new` attaches no per-packet probe, so the trace has
/// the scheduled connection only, while the kernel served the 4 reuses all the same.
fn reuse_with_only_new_asked_for(run: &ScenarioRun, vip: SocketAddr, backend: Option<SocketAddr>) {
    let client = addr("198.51.100.11:30001");
    let trace = run.trace("trace_new");
    assert_clean("trace_new", &trace);
    let tracing = trace
        .stderr
        .lines()
        .find(|l| l.starts_with("ipvs-trace: tracing ("))
        .expect("a tracing line");
    let (attached, left_out) = tracing
        .split_once(';')
        .expect("a list of what was left out");
    let hook = hooks_of(run)[0];
    assert_eq!(
        attached,
        format!("ipvs-trace: tracing (ip_vs_conn_new ({hook})"),
        "{tracing}"
    );
    assert!(
        left_out.contains("tcp_state_transition") && left_out.contains("ip_vs_leave"),
        "{tracing}"
    );
    let probes = trace.summary.probes.as_deref().expect("a probes: line");
    assert!(
        probes.starts_with(&format!(
            "ip_vs_conn_new ({hook}: new, template)   not asked for: tcp_state_transition"
        )),
        "{probes}"
    );
    let reconnects = run.client("reuse_new");
    assert_eq!(reconnects.len(), 5);
    assert!(reconnects.iter().all(ClientLine::ok), "{reconnects:?}");
    let kinds: Vec<&str> = trace.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["new"], "only the scheduled connection");
    assert_eq!(trace.summary.count("reused"), 0);
    assert_eq!(trace.events[0].client, client);
    // The kernel: one entry for the client ip:port, on the traced backend (the 4 reuses hit
    // it), and Conns counting the one scheduled connection of this round.
    let entries: Vec<ConnEntry> = entries_of(run, "conns-new", "TCP", vip)
        .into_iter()
        .filter(|e| e.source == client)
        .collect();
    assert_events_are_entries(&[&trace.events[0]], &entries);
    assert_eq!(trace.events[0].backend.is_some(), backend.is_some());
    let stats = ipvs_trace_tests::ipvsadm::parse_stats(&run.dump("stats-new").text)
        .unwrap_or_else(|e| panic!("{e}"));
    let stats = ipvs_trace_tests::ipvsadm::ServiceStats::find(&stats, "TCP", vip)
        .unwrap_or_else(|| panic!("no TCP {vip} in stats-new"));
    assert_eq!(
        stats.counters.conns,
        1 + 3 + 1,
        "IPVS's Conns after the second round"
    );
}

// filter: three services, --vip on one; the probes filter the other two out.
fn filter(run: &ScenarioRun) {
    let vips: Vec<SocketAddr> = (1..=3)
        .map(|n| addr(&format!("172.31.0.4{n}:80")))
        .collect();
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    for (n, vip) in vips.iter().enumerate() {
        let clients = run.client(&format!("vip{}", n + 1));
        assert_eq!(clients.len(), 20, "connections to {vip}");
        assert!(clients.iter().all(ClientLine::ok), "{clients:?}");
    }
    let events: Vec<&Event> = trace.events.iter().collect();
    assert_eq!(events.len(), 20, "only the traced VIP's decisions");
    assert!(events.iter().all(|e| e.event == "new" && e.vip == vips[1]));
    // Each event is the kernel's entry for that VIP's connection, and no other VIP's entry
    // appears.
    assert_events_are_entries(&events, &entries_of(run, "conns", "TCP", vips[1]));
    // Every decision is accounted for: what the kernel scheduled for all three services (their
    // Conns) is what the probes saw, 20 of it matched and read, the rest filtered out.
    let conns: u64 = vips
        .iter()
        .map(|vip| run.service_stats("TCP", *vip).counters.conns)
        .sum();
    assert_eq!(conns, 60, "IPVS's Conns of the three services");
    let kernel = trace.summary.kernel.as_ref().expect("a kernel: line");
    assert_eq!(
        (
            kernel.seen,
            kernel.filtered_out,
            kernel.matched,
            kernel.read
        ),
        (conns, conns - 20, 20, 20),
        "{kernel:?}"
    );
}

/// The kernel release and the boot's `--attach` mode, from the scenario's `attach-env` dump
/// (`dump_attach`).
fn attach_env(run: &ScenarioRun) -> (String, String) {
    let text = &run.dump("attach-env").text;
    let (release, mode) = text.trim().split_once(' ').expect("RELEASE MODE");
    (release.to_owned(), mode.to_owned())
}

/// The hooks of ip_vs_conn_new, tcp_state_transition and ip_vs_leave in this boot: kprobes on
/// 5.10 (no module BTF: the lab traces it with --btf) or where the boot forces them, the
/// trampolines otherwise.
fn hooks_of(run: &ScenarioRun) -> [&'static str; 3] {
    let (release, mode) = attach_env(run);
    if release.starts_with("5.10") || mode == "kprobe" {
        ["kretprobe", "kprobe", "kprobe"]
    } else {
        ["fexit", "fentry", "fentry"]
    }
}

// attach: every probe through its trampoline and through its kprobe, on the same traffic.
fn attach(run: &ScenarioRun) {
    let (release, _) = attach_env(run);
    // 5.10 has no module BTF; 6.1 refuses to attach a trampoline to ip_vs (EINVAL).
    let trampolines = !(release.starts_with("5.10") || release.starts_with("6.1."));
    let kprobes: [&[&str]; 3] = [&["kretprobe"], &["kprobe"], &["kprobe"]];
    let mut rounds = vec![("kprobe", 30201, kprobes)];
    if let Some(refused) = run.find("fentry-refused") {
        assert!(
            !trampolines,
            "{release} refused --attach fentry:\n{}",
            refused.text
        );
        assert!(
            refused
                .text
                .contains("--attach fentry: no fexit on kernel function `ip_vs_conn_new`"),
            "{}",
            refused.text
        );
        // --attach auto decides per probe: 6.1 took ip_vs_leave's fentry in one run and
        // refused it in another, while refusing the other two every time; 5.10 has no module
        // BTF at all.
        let per_probe: [&[&str]; 3] = if release.starts_with("5.10") {
            kprobes
        } else {
            [
                &["kretprobe", "fexit"],
                &["kprobe", "fentry"],
                &["kprobe", "fentry"],
            ]
        };
        rounds.push(("auto", 30200, per_probe));
    } else {
        assert!(trampolines, "{release} took --attach fentry");
        rounds.push(("fentry", 30200, [&["fexit"], &["fentry"], &["fentry"]]));
    }
    for (mode, port, hooks) in rounds {
        attach_round(run, mode, port, hooks);
    }
}

/// One round of `attach`: the hooks named, and 1 + 4 new, 2 reused and 2 no_dest decisions,
/// each the kernel's.
fn attach_round(run: &ScenarioRun, mode: &str, port: u16, allowed: [&[&str]; 3]) {
    let vip = addr("172.31.0.50:80");
    let empty = addr("172.31.0.51:80");
    let trace = run.trace(mode);
    assert_clean(mode, &trace);
    let tracing = trace
        .stderr
        .lines()
        .find(|l| l.starts_with("ipvs-trace: tracing ("))
        .expect("a tracing line");
    // `function (hook)` for the three probes, in order, each hook one this round allows.
    let functions = ["ip_vs_conn_new", "tcp_state_transition", "ip_vs_leave"];
    let hooks: Vec<&str> = tracing
        .strip_prefix("ipvs-trace: tracing (")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{mode}: {tracing}"))
        .split(", ")
        .zip(functions)
        .map(|(item, function)| {
            item.strip_prefix(function)
                .and_then(|rest| rest.strip_prefix(" ("))
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{mode}: `{item}` in {tracing}"))
        })
        .collect();
    assert_eq!(hooks.len(), 3, "{mode}: {tracing}");
    for (hook, allowed) in hooks.iter().zip(allowed) {
        assert!(allowed.contains(hook), "{mode}: {tracing}");
    }
    let probes = trace.summary.probes.as_deref().expect("a probes: line");
    assert!(
        probes.starts_with(&format!("ip_vs_conn_new ({}: new, template)", hooks[0])),
        "{probes}"
    );
    // New: the first of client1's connections and client2's four, each one entry.
    let reuse = run.client(&format!("{mode}-reuse"));
    let plain = run.client(&format!("{mode}-plain"));
    assert_eq!((reuse.len(), plain.len()), (3, 4), "{mode}: connections");
    assert!(reuse.iter().chain(&plain).all(ClientLine::ok));
    let reuse_client = addr(&format!("198.51.100.51:{port}"));
    assert!(
        reuse.iter().all(|l| l.local == Some(reuse_client)),
        "{reuse:?}"
    );
    let mut scheduled = vec![reuse[0].clone()];
    scheduled.extend(plain.iter().cloned());
    let news: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&news, &scheduled);
    let sources: BTreeSet<SocketAddr> = scheduled.iter().filter_map(|l| l.local).collect();
    let entries: Vec<ConnEntry> = entries_of(run, &format!("conns-{mode}"), "TCP", vip)
        .into_iter()
        .filter(|e| sources.contains(&e.source))
        .collect();
    assert_events_are_entries(&news, &entries);
    // Reused: client1's next two, on its entry's backend, no new entry.
    let first = news
        .iter()
        .find(|e| e.client == reuse_client)
        .expect("client1's scheduled connection");
    let reused: Vec<&Event> = trace.of_kind("reused").collect();
    assert_eq!(reused.len(), 2, "{mode}: reused {reused:?}");
    assert!(
        reused
            .iter()
            .all(|e| e.client == reuse_client && e.vip == vip && e.backend == first.backend),
        "{reused:?}"
    );
    // no_dest: client3's two refused connects, exactly.
    let connects = run.client(&format!("{mode}-refused"));
    assert_eq!(connects.len(), 2);
    let no_dest: Vec<&Event> = trace.of_kind("no_dest").collect();
    let client3 = addr(&format!("198.51.100.53:{}", port + 1000));
    assert_eq!(no_dest.len(), 2, "{mode}: no_dest {no_dest:?}");
    assert!(
        no_dest
            .iter()
            .all(|e| e.client == client3 && e.vip == empty),
        "{no_dest:?}"
    );
    assert_eq!(trace.events.len(), 9, "{mode}: nothing else");
    // ip_vs's reference count while attached: one more per trampoline (the kernels that take
    // them here are 6.2+: `bpf: Take module reference for trampoline in module`), none for
    // kprobes.
    let refcnt = |when: &str| -> i64 {
        let dump = run.dump(&format!("refcnt-{mode}-{when}"));
        dump.text.trim().parse().expect("a reference count")
    };
    let pinned = refcnt("attached") - refcnt("before");
    let held = hooks
        .iter()
        .filter(|h| ["fentry", "fexit"].contains(h))
        .count();
    let held = i64::try_from(held).expect("at most 3");
    assert_eq!(
        pinned, held,
        "{mode}: references to ip_vs held by the probes"
    );
}

// no_dest: a service without endpoints and one with only a weight-0 endpoint.
fn no_dest(run: &ScenarioRun) {
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let cases = [
        ("empty", addr("198.51.100.11:41000"), addr("172.31.0.31:80")),
        (
            "draining",
            addr("198.51.100.11:41001"),
            addr("172.31.0.32:80"),
        ),
    ];
    assert_eq!(
        trace.events.len(),
        8,
        "one no_dest per refused connect, nothing else: {:?}",
        trace.events
    );
    for (tag, client, vip) in cases {
        let lines = run.client(tag);
        assert_eq!(lines.len(), 4, "{tag} connects");
        for line in &lines {
            let error = line.error.as_deref().unwrap_or("");
            assert!(
                error.contains("refused"),
                "IPVS answers a service without real servers with port unreachable: {line:?}"
            );
        }
        let events: Vec<&Event> = trace.events.iter().filter(|e| e.vip == vip).collect();
        assert_eq!(events.len(), 4, "{tag}: no_dest events");
        for event in events {
            let what = format!("{event:?}");
            assert_eq!(event.event, "no_dest", "{what}");
            assert_eq!(event.client, client, "{what}");
            assert_eq!(event.proto, "TCP", "{what}");
            assert!(
                event.backend.is_none()
                    && event.fwd.is_none()
                    && event.weight.is_none()
                    && event.active_conns.is_none()
                    && event.inactive_conns.is_none()
                    && event.conn.is_none(),
                "no_dest has no entry, so no backend, fwd, dest counters or id: {what}"
            );
            // The service's own netns (svc->ipvs), as for the entries of the other scenarios.
            assert!(event.netns.is_some_and(|n| n != 0), "no netns: {what}");
        }
        assert!(
            entries_of(run, "conns", "TCP", vip).is_empty(),
            "{tag}: the kernel made entries"
        );
        assert_eq!(
            run.service_stats("TCP", vip).counters.conns,
            0,
            "{tag}: Conns"
        );
        assert_eq!(
            trace.summary.no_dest.get(&format!("TCP {vip} rr")),
            Some(&4),
            "summary: {:?}",
            trace.summary
        );
    }
    assert_eq!(trace.summary.count("no_dest"), 8);
    assert_eq!(trace.summary.count("new"), 0);
    // The summary lists the configured real servers, also those that received nothing: the
    // draining service's one endpoint, at weight 0, is why it refused.
    assert_eq!(
        trace.summary.weights.get("TCP 172.31.0.32:80 rr"),
        Some(&BTreeMap::from([(addr("10.245.6.1:8080"), 0)])),
        "{}",
        trace.stderr
    );
    assert_eq!(trace.summary.weights.get("TCP 172.31.0.31:80 rr"), None);
}

// nodeport: a ClusterIP-style VIP and a NodePort on a node address, same pods.
fn nodeport(run: &ScenarioRun) {
    let cluster_ip = addr("172.31.0.40:80");
    let node_port = addr("192.0.2.10:30080");
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let clients = run.all_clients();
    assert_eq!(clients.len(), 30, "lab-net connections");
    assert_eq!(trace.events.len(), 30, "events of any kind");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    // The attribution itself: each event carries the address its client dialled.
    assert_events_are_connections(&events, &clients);
    let pods = |n| [("10.245.7.1:8080", 1, n), ("10.245.7.2:8080", 1, n)];
    assert_distribution(run, &trace, "TCP", cluster_ip, "rr", &pods(7));
    assert_distribution(run, &trace, "TCP", node_port, "rr", &pods(8));
}

// dualstack: one Service on a v4 and a v6 ClusterIP (two virtual services), the same 3 pods;
// then a short trace in the table layout.
fn dualstack(run: &ScenarioRun) {
    let vip4 = addr("172.31.0.60:80");
    let vip6 = addr("[fd00:31::60]:80");
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let clients: Vec<ClientLine> = ["v4-client1", "v6-client1", "v6-client2"]
        .iter()
        .flat_map(|tag| run.client(tag))
        .collect();
    assert_eq!(clients.len(), 90, "lab-net connections");
    assert_eq!(trace.events.len(), 90, "events of any kind");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&events, &clients);
    // One family end to end per event: the v6 VIP's events carry v6 clients and backends (no
    // v4-mapped addresses, no family taken from the wrong field), the v4 VIP's v4 ones.
    for event in &events {
        let v6 = event.vip == vip6;
        assert!(v6 || event.vip == vip4, "unknown VIP: {event:?}");
        assert_eq!(event.vip.is_ipv6(), v6, "{event:?}");
        assert_eq!(event.client.is_ipv6(), v6, "client family: {event:?}");
        assert_eq!(
            event.backend.map(|b| b.is_ipv6()),
            Some(v6),
            "backend family: {event:?}"
        );
    }
    let v4_pods = [
        ("10.245.9.1:8080", 1, 10),
        ("10.245.9.2:8080", 1, 10),
        ("10.245.9.3:8080", 1, 10),
    ];
    let v6_pods = [
        ("[fd00:245:9::1]:8080", 1, 20),
        ("[fd00:245:9::2]:8080", 1, 20),
        ("[fd00:245:9::3]:8080", 1, 20),
    ];
    // Each also checks every event against its `ipvsadm -Lnc` entry (client, VIP, backend).
    assert_distribution(run, &trace, "TCP", vip4, "rr", &v4_pods);
    assert_distribution(run, &trace, "TCP", vip6, "rr", &v6_pods);

    // The table: IPv6 as `[addr]:port`, spelled out here rather than by Rust's Display.
    let stderr = &run.dump("table.stderr").text;
    assert_eq!(
        run.dump("table.status").text.trim(),
        "0",
        "table trace; stderr:\n{stderr}"
    );
    let table = &run.dump("table.out").text;
    let mut lines = table.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("TIME ")),
        "no header:\n{table}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let table_clients = run.client("table-client2");
    assert_eq!(table_clients.len(), 2, "table trace connections");
    assert_eq!(rows.len(), 2, "table rows:\n{table}");
    let backends: Vec<&str> = v6_pods.iter().map(|(b, _, _)| *b).collect();
    for line in &table_clients {
        let port = line
            .local
            .unwrap_or_else(|| panic!("no local address: {line:?}"))
            .port();
        let client = format!("[fd00:198:51::62]:{port}");
        let row = rows
            .iter()
            .find(|r| r.get(3) == Some(&client.as_str()))
            .unwrap_or_else(|| panic!("no table row for {client}:\n{table}"));
        assert_eq!(
            row[1..5],
            ["new", "TCP", client.as_str(), "[fd00:31::60]:80"],
            "{table}"
        );
        assert!(backends.contains(&row[5]), "backend {}:\n{table}", row[5]);
        assert_eq!(row[6..9], ["rr", "Masq", "1"], "{table}");
    }
    let summary = ipvs_trace_tests::trace::parse_summary(stderr)
        .unwrap_or_else(|e| panic!("table trace: {e}"));
    let per_backend = &summary.services["TCP [fd00:31::60]:80 rr"];
    assert_eq!(per_backend.values().sum::<u64>(), 2, "{stderr}");

    // IPv6 reuse, filtered in the kernel by the IPv6 client.
    let client = addr("[fd00:198:51::61]:30600");
    let reuse = run.trace("reuse6");
    assert_clean("reuse6", &reuse);
    let reconnects = run.client("reuse6");
    assert_eq!(reconnects.len(), 3);
    assert!(reconnects.iter().all(ClientLine::ok), "{reconnects:?}");
    let kinds: Vec<&str> = reuse.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["new", "reused", "reused"], "{:?}", reuse.events);
    let first = &reuse.events[0];
    for event in &reuse.events {
        assert_eq!((event.client, event.vip), (client, vip6), "{event:?}");
        assert_eq!(
            (&event.backend, &event.conn),
            (&first.backend, &first.conn),
            "one entry, one pod: {event:?}"
        );
    }
    let kernel = reuse.summary.kernel.as_ref().expect("a kernel: line");
    assert_eq!((kernel.matched, kernel.read), (3, 3), "{kernel:?}");
}

/// The seed cluster of `tests/fixtures/seed-snapshot.json` (DESIGN.md): what the Kubernetes
/// fields of an event must say.
mod seed {
    pub const CLUSTER_IP: &str = "172.31.42.227";
    pub const EXTERNAL_IP: &str = "10.245.11.252";
    pub const NODE_IP: &str = "10.245.96.43";
    pub const SERVICE_TYPE: &str = "LoadBalancer";
    const DEPLOY: &str = "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d";

    /// Pod IP → (pod, node).
    pub fn pod(ip: &str) -> Option<(String, &'static str)> {
        let (suffix, node) = match ip {
            "10.245.112.32" => ("dgzsm", "cn-beijing.10.245.96.43"),
            "10.245.112.47" => ("x7k2p", "cn-beijing.10.245.96.43"),
            "10.245.113.15" => ("q9wfn", "cn-beijing.10.245.96.44"),
            _ => return None,
        };
        Some((format!("{DEPLOY}-{suffix}"), node))
    }

    /// Client IP → client pod (the outside client is no pod).
    pub fn client_pod(ip: &str) -> Option<&'static str> {
        (ip == "10.245.97.12").then_some("ratel/vpaas-demo-client-6f8b9c7d5-kq2lm")
    }

    /// Virtual service port → Service port label.
    pub fn service(port: u16) -> &'static str {
        match port {
            80 | 32380 => "ratel/vpaas-demo-prod:http",
            50091 | 31502 => "ratel/vpaas-demo-prod:grpc",
            _ => panic!("port {port} is not the seed Service's"),
        }
    }
}

// nat: `trace --nat` with net.ipv4.vs.conntrack=1: each connection's tuples before and after
// IPVS equal its `ipvsadm -Lnc` entry, and its conntrack entry equals `conntrack -L`'s; with
// conntrack=0, the translation alone and the reason, said once.
fn nat(run: &ScenarioRun) {
    use ipvs_trace_tests::conntrack;
    use ipvs_trace_tests::trace::Flow;

    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let clients: Vec<ClientLine> = ["v4-client1", "v4-client2", "udp-client2", "v6-client1"]
        .iter()
        .flat_map(|tag| run.client(tag))
        .collect();
    assert_eq!(clients.len(), 56, "lab-net connections");
    assert_eq!(trace.events.len(), 56, "events of any kind");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&events, &clients);
    // Each event is one `ipvsadm -Lnc` entry: client, VIP and backend (entries of earlier
    // scenarios may linger in TIME_WAIT: only this one's VIPs count).
    let vips = [
        addr("172.31.0.70:80"),
        addr("172.31.0.70:53"),
        addr("[fd00:31::70]:80"),
    ];
    let entries: Vec<ConnEntry> = run
        .conns()
        .into_iter()
        .filter(|e| vips.contains(&e.virtual_addr))
        .collect();
    assert_events_are_entries(&events, &entries);

    let mut table =
        conntrack::parse(&run.dump("conntrack4").text).unwrap_or_else(|e| panic!("{e}"));
    table.extend(conntrack::parse(&run.dump("conntrack6").text).unwrap_or_else(|e| panic!("{e}")));
    for event in &events {
        let what = format!("{event:?}");
        let nat = event
            .nat
            .as_ref()
            .unwrap_or_else(|| panic!("no nat object: {what}"));
        let backend = event.backend.expect("a new event has a backend");
        // Masq: the destination becomes the pod, the source stays the client.
        assert_eq!(
            nat.before,
            Flow {
                src: event.client,
                dst: event.vip
            },
            "{what}"
        );
        assert_eq!(
            nat.after,
            Flow {
                src: event.client,
                dst: backend
            },
            "{what}"
        );
        let entry = nat
            .conntrack
            .as_ref()
            .unwrap_or_else(|| panic!("no conntrack entry: {what}"));
        // What the pod sees: it answers pod:port -> client.
        assert_eq!(entry.orig, nat.before, "{what}");
        assert_eq!(
            entry.reply,
            Flow {
                src: backend,
                dst: event.client
            },
            "{what}"
        );
        assert!(entry.status.iter().any(|s| s == "CONFIRMED"), "{what}");
        // The kernel's table, as conntrack-tools list it, has the same two tuples.
        let listed = table
            .iter()
            .find(|e| e.proto == event.proto.to_lowercase() && e.orig == (event.client, event.vip))
            .unwrap_or_else(|| panic!("no `conntrack -L` entry for {what}"));
        assert_eq!(listed.reply, (entry.reply.src, entry.reply.dst), "{what}");
    }
    let stderr = &trace.stderr;
    assert!(
        stderr.contains("nat: conntrack lookups=56 found=56 missing=0 dropped=0 failed=0"),
        "{stderr}"
    );

    // conntrack=0: no entry to look up; the translation is still there.
    let off = run.trace("trace-off");
    assert_clean("trace-off", &off);
    assert_eq!(off.events.len(), 3, "events of any kind");
    let events: Vec<&Event> = off.of_kind("new").collect();
    assert_events_are_connections(&events, &run.client("off-client2"));
    for event in &events {
        let nat = event.nat.as_ref().expect("a nat object");
        assert_eq!(
            nat.after.dst,
            event.backend.expect("a backend"),
            "{event:?}"
        );
        assert!(nat.conntrack.is_none(), "{event:?}");
    }
    assert_eq!(
        off.stderr.matches("net.ipv4.vs.conntrack is 0").count(),
        2,
        "said once at the start, and in the summary:\n{}",
        off.stderr
    );
    assert!(
        off.stderr.contains("nat: conntrack lookups off: "),
        "{}",
        off.stderr
    );
}

/// A scheduled event of the seed node carries the seed's names; `terminating` is what
/// `backend_terminating` must be.
fn assert_seed_names(event: &Event, terminating: bool) {
    let what = format!("{event:?}");
    assert_scheduling(event, "TCP", "rr");
    let backend = event.backend.expect("checked by assert_scheduling");
    let (pod, node) = seed::pod(&backend.ip().to_string())
        .unwrap_or_else(|| panic!("backend is not a seed pod: {what}"));
    assert_eq!(
        event.service.as_deref(),
        Some(seed::service(event.vip.port())),
        "{what}"
    );
    assert_eq!(
        event.service_type.as_deref(),
        Some(seed::SERVICE_TYPE),
        "{what}"
    );
    assert_eq!(event.backend_pod.as_deref(), Some(pod.as_str()), "{what}");
    assert_eq!(event.backend_node.as_deref(), Some(node), "{what}");
    assert_eq!(
        event.client_pod.as_deref(),
        seed::client_pod(&event.client.ip().to_string()),
        "{what}"
    );
    assert_eq!(event.backend_terminating, Some(terminating), "{what}");
}

/// The summary line of a named Service port lists, per pod, what IPVS counted for that pod
/// over all of the port's virtual services (`vips`).
fn assert_named_summary(run: &ScenarioRun, trace: &Trace, label: &str, vips: &[SocketAddr]) {
    let mut sorted = vips.to_vec();
    sorted.sort_unstable();
    let addresses: Vec<String> = sorted.iter().map(ToString::to_string).collect();
    let key = format!("TCP {label} rr  ({})", addresses.join(", "));
    let pods = trace
        .summary
        .pods
        .get(&key)
        .unwrap_or_else(|| panic!("no summary line {key:?}; stderr:\n{}", trace.stderr));
    let mut kernel: BTreeMap<String, u64> = BTreeMap::new();
    for vip in vips {
        for (dest, counters) in &run.service_stats("TCP", *vip).dests {
            let (pod, _) = seed::pod(&dest.ip().to_string())
                .unwrap_or_else(|| panic!("{dest} is not a seed pod"));
            *kernel.entry(pod).or_default() += counters.conns;
        }
    }
    let summary: BTreeMap<String, u64> =
        pods.iter().map(|(pod, (n, _))| (pod.clone(), *n)).collect();
    assert_eq!(
        summary, kernel,
        "summary {key:?} against IPVS's Conns per real server"
    );
    assert_eq!(
        trace.summary.unresolved_events,
        Some(0),
        "unresolved events"
    );
}

// names: live names from the API server in the guest; an endpoint turning terminating.
fn names(run: &ScenarioRun) {
    let cluster_http = addr(&format!("{}:80", seed::CLUSTER_IP));
    let cluster_grpc = addr(&format!("{}:50091", seed::CLUSTER_IP));
    let node_port = addr(&format!("{}:32380", seed::NODE_IP));
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    assert!(
        trace.stderr.contains(
            "ipvs-trace: kubernetes names synced: 6 pods, 3 services, 3 endpointslices, 2 nodes"
        ),
        "no sync line with the seed's counts:\n{}",
        trace.stderr
    );
    let clients = run.all_clients();
    assert_eq!(clients.len(), 18, "lab-net connections");
    assert_eq!(trace.events.len(), 18, "events of any kind");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&events, &clients);
    for vip in [cluster_http, cluster_grpc, node_port] {
        let of_vip: Vec<&Event> = events.iter().copied().filter(|e| e.vip == vip).collect();
        assert_events_are_entries(&of_vip, &entries_of(run, "conns", "TCP", vip));
    }
    // The connections made after the EndpointSlice change, and only those, see dgzsm
    // terminating.
    let late: BTreeSet<(SocketAddr, SocketAddr)> = run
        .client("late")
        .iter()
        .filter_map(|c| Some((c.local?, c.remote)))
        .collect();
    assert_eq!(late.len(), 6, "connections after the change");
    let dgzsm = ip("10.245.112.32");
    let mut stale = 0;
    for event in &events {
        let terminating = late.contains(&(event.client, event.vip))
            && event.backend.map(|b| b.ip()) == Some(dgzsm);
        stale += u32::from(terminating);
        assert_seed_names(event, terminating);
    }
    // rr over three pods: 2 of the 6 late connections went to the terminating one.
    assert_eq!(stale, 2, "events to the terminating endpoint");
    assert_named_summary(run, &trace, seed::service(80), &[cluster_http, node_port]);
    assert_named_summary(run, &trace, seed::service(50091), &[cluster_grpc]);
    let kube = &trace.summary.kubernetes;
    assert_eq!(kube.len(), 4, "one line per watched kind: {kube:?}");
    assert!(
        kube.iter().all(|l| l.contains(": synced (1 list(s)")),
        "{kube:?}"
    );
    assert!(
        kube.contains(&"endpointslices: synced (1 list(s), 1 event(s))".to_owned()),
        "{kube:?}"
    );
    names_in_the_kernel(run, cluster_grpc);
}

/// The second round of `names`: `--service` on the grpc port, filtered in the kernel by the
/// Service's addresses once the names synced. Only the 3 grpc connections come out; the 3 http
/// and 2 NodePort ones are counted as filtered out, every one accounted for.
fn names_in_the_kernel(run: &ScenarioRun, cluster_grpc: SocketAddr) {
    let trace = run.trace("trace_svc");
    assert_clean("trace_svc", &trace);
    let clients = |tag: &str| {
        ipvs_trace_tests::labnet::parse_client_lines(&run.dump(&format!("named-{tag}")).text)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (http, grpc, nodeport) = (
        clients("svc_http"),
        clients("svc_grpc"),
        clients("svc_nodeport"),
    );
    assert_eq!((http.len(), grpc.len(), nodeport.len()), (3, 3, 2));
    for line in http.iter().chain(&grpc).chain(&nodeport) {
        assert!(line.ok(), "{line:?}");
    }
    let events: Vec<&Event> = trace.events.iter().collect();
    assert_events_are_connections(&events, &grpc);
    assert!(
        events
            .iter()
            .all(|e| e.vip == cluster_grpc
                && e.service.as_deref() == Some("ratel/vpaas-demo-prod:grpc")),
        "{events:?}"
    );
    // The first round's grpc entries linger in TIME_WAIT: this round's are its clients'.
    let locals: BTreeSet<SocketAddr> = grpc.iter().filter_map(|c| c.local).collect();
    let entries: Vec<ConnEntry> = entries_of(run, "conns-svc", "TCP", cluster_grpc)
        .into_iter()
        .filter(|e| locals.contains(&e.source))
        .collect();
    assert_events_are_entries(&events, &entries);
    let kernel = trace.summary.kernel.as_ref().expect("a kernel: line");
    assert_eq!(
        (
            kernel.seen,
            kernel.filtered_out,
            kernel.matched,
            kernel.read
        ),
        (8, 5, 3, 3),
        "the probes saw the 8 connections and filtered out the 5 of other ports: {kernel:?}"
    );
}

// snapshot: the same names from --kube-snapshot, filtered to one named Service port.
fn snapshot(run: &ScenarioRun) {
    let http = [
        addr(&format!("{}:80", seed::CLUSTER_IP)),
        addr(&format!("{}:80", seed::EXTERNAL_IP)),
        addr(&format!("{}:32380", seed::NODE_IP)),
    ];
    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    let shown: Vec<ClientLine> = ["http", "lb", "nodeport"]
        .iter()
        .flat_map(|tag| run.client(tag))
        .collect();
    assert_eq!(shown.len(), 12, "lab-net connections to the http port");
    assert_eq!(trace.events.len(), 12, "events of any kind");
    let events: Vec<&Event> = trace.of_kind("new").collect();
    assert_events_are_connections(&events, &shown);
    for vip in http {
        let of_vip: Vec<&Event> = events.iter().copied().filter(|e| e.vip == vip).collect();
        assert_events_are_entries(&of_vip, &entries_of(run, "conns", "TCP", vip));
    }
    for event in &events {
        assert_seed_names(event, false);
    }
    assert_named_summary(run, &trace, seed::service(80), &http);
    // The filter hid connections IPVS did schedule.
    let grpc = run.client("grpc");
    assert_eq!(grpc.len(), 3);
    assert!(grpc.iter().all(ClientLine::ok), "{grpc:?}");
    let grpc_vip = addr(&format!("{}:50091", seed::CLUSTER_IP));
    assert_eq!(run.service_stats("TCP", grpc_vip).counters.conns, 3);
    assert!(
        trace.summary.kubernetes.is_empty(),
        "no watches with a snapshot"
    );
}

// rules: `ipvs-trace rules -o json` equals the kernel's `ipvsadm -Ln` and `ipvsadm -Ln --stats
// --exact` for every service and real server (TCP rr/wrr/sh persistent, UDP lc, a firewall
// mark, IPv6, the seed cluster), names come from the snapshot, the filters keep what they
// say, the tables print the same counters, and EPERM says what is missing.
fn rules(run: &ScenarioRun) {
    // The kernel's view did not move while the ipvs-trace views were taken.
    for (before, after) in [("rules-before", "rules"), ("stats-before", "stats")] {
        assert_eq!(
            run.dump(before).text,
            run.dump(after).text,
            "ipvsadm changed between {before} and {after}"
        );
    }
    let document = rules_json::document(run, "rules.json");
    assert_eq!(document["version"], "1.2.1");
    assert!(document["conn_table_size"].as_u64().is_some_and(|n| n > 0));
    let services = document["services"].as_array().expect("services");
    rules_json::assert_equal_ipvsadm(run, services);
    rules_json::assert_seed_names(services);
    let live = rules_json::document(run, "rules-live.json");
    rules_json::assert_seed_names(live["services"].as_array().expect("services"));
    let live_stderr = &run.dump("rules-live.stderr").text;
    assert!(
        live_stderr.contains("kubernetes names synced"),
        "the live watches did not sync: {live_stderr}"
    );
    rules_json::assert_filters(run);
    rules_json::assert_tables(run);
    let eperm = run.dump("rules-eperm");
    assert_eq!(eperm.status, Some(1), "{}", eperm.text);
    assert!(
        eperm.text.contains("EPERM") && eperm.text.contains("CAP_NET_ADMIN"),
        "without CAP_NET_ADMIN over the namespace: {}",
        eperm.text
    );
    let unloaded = run.dump("rules-unloaded");
    assert_eq!(unloaded.status, Some(1), "{}", unloaded.text);
    assert!(
        unloaded.text.contains("ip_vs is not loaded") && unloaded.text.contains("modprobe ip_vs"),
        "without ip_vs: {}",
        unloaded.text
    );
}

/// The `rules` scenario's checks of `ipvs-trace rules` output against ipvsadm's.
mod rules_json {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    use ipvs_trace_tests::ipvsadm::{self, ServiceStats};
    use ipvs_trace_tests::output::ScenarioRun;
    use serde_json::Value;

    use super::{addr, seed};

    /// The JSON document of dump `name` (which must have succeeded).
    pub fn document(run: &ScenarioRun, name: &str) -> Value {
        let dump = run.dump(name);
        assert_eq!(dump.status, Some(0), "{name}:\n{}", dump.text);
        serde_json::from_str(&dump.text)
            .unwrap_or_else(|e| panic!("{name} is not one JSON document ({e}):\n{}", dump.text))
    }

    /// Every service and real server, field by field, as `ipvsadm -Ln` printed them, and every
    /// counter as `ipvsadm -Ln --stats --exact` did; the traffic was counted.
    pub fn assert_equal_ipvsadm(run: &ScenarioRun, services: &[Value]) {
        let kernel_rules = sorted(run.rules());
        assert_eq!(kernel_rules.len(), 12, "the scenario's virtual services");
        assert_eq!(
            sorted(services.iter().map(rules_of).collect()),
            kernel_rules
        );
        let kernel_stats = run.stats();
        for service in services {
            let (proto, vip) = key(service);
            let want = kernel_stats
                .iter()
                .find(|s| s.proto == proto && s.vip == vip)
                .unwrap_or_else(|| panic!("{proto} {vip} not in ipvsadm --stats"));
            assert_eq!(counters(&service["stats"]), want.counters, "{proto} {vip}");
            let dests = service["dests"].as_array().expect("dests");
            assert_eq!(dests.len(), want.dests.len(), "{proto} {vip} real servers");
            for dest in dests {
                let backend = addr(dest["backend"].as_str().expect("backend"));
                let (_, want) = want
                    .dests
                    .iter()
                    .find(|(a, _)| *a == backend)
                    .unwrap_or_else(|| panic!("{backend} of {vip} not in ipvsadm --stats"));
                assert_eq!(counters(&dest["stats"]), *want, "{backend} of {vip}");
            }
        }
        // Connections per service equal lab-net's.
        for (tag, proto, vip) in [
            ("rr", "TCP", "172.31.0.60:80"),
            ("wrr", "TCP", "172.31.0.61:80"),
            ("udp", "UDP", "172.31.0.62:53"),
            ("seed", "TCP", "172.31.42.227:80"),
        ] {
            let made = run.client(tag).iter().filter(|l| l.ok()).count() as u64;
            assert!(made > 0, "no {tag} connections");
            let service = ServiceStats::find(&kernel_stats, proto, addr(vip)).expect("service");
            assert_eq!(service.counters.conns, made, "{tag}: Conns of {vip}");
        }
    }

    /// The seed Service's ports and pods are named from the snapshot; nothing else is.
    pub fn assert_seed_names(services: &[Value]) {
        let seed_ips = [seed::CLUSTER_IP, seed::EXTERNAL_IP, seed::NODE_IP];
        for service in services {
            let (_, vip) = key(service);
            let seed_port = vip
                .parse::<SocketAddr>()
                .ok()
                .filter(|a| seed_ips.contains(&a.ip().to_string().as_str()));
            if let Some(a) = seed_port {
                assert_eq!(service["service"], seed::service(a.port()), "{vip}");
                assert_eq!(service["service_type"], seed::SERVICE_TYPE, "{vip}");
            } else {
                assert!(service["service"].is_null(), "{vip} named: {service}");
            }
            for dest in service["dests"].as_array().expect("dests") {
                let backend = addr(dest["backend"].as_str().expect("backend"));
                if let Some((pod, node)) = seed::pod(&backend.ip().to_string()) {
                    assert_eq!(dest["backend_pod"], pod.as_str(), "{backend}");
                    assert_eq!(dest["backend_node"], node, "{backend}");
                    assert_eq!(dest["backend_terminating"], false, "{backend}");
                } else {
                    assert!(dest["backend_pod"].is_null(), "{backend} named: {dest}");
                }
            }
        }
    }

    /// `--service` keeps the Service's ports; `--backend` the services with that real server,
    /// and of them only its line.
    pub fn assert_filters(run: &ScenarioRun) {
        let vips = |document: &Value| -> BTreeSet<String> {
            document["services"]
                .as_array()
                .expect("services")
                .iter()
                .map(|s| key(s).1)
                .collect()
        };
        let http: BTreeSet<String> = [
            format!("{}:80", seed::CLUSTER_IP),
            format!("{}:80", seed::EXTERNAL_IP),
            format!("{}:32380", seed::NODE_IP),
        ]
        .into();
        assert_eq!(vips(&document(run, "rules-service.json")), http);
        let backend = document(run, "rules-backend.json");
        let with_pod2: BTreeSet<String> = ["172.31.0.60:80", "172.31.0.61:80", "172.31.0.63:80"]
            .map(str::to_owned)
            .into();
        assert_eq!(vips(&backend), with_pod2);
        for service in backend["services"].as_array().expect("services") {
            let dests = service["dests"].as_array().expect("dests");
            assert_eq!(dests.len(), 1, "--backend keeps only its line: {service}");
            assert_eq!(dests[0]["backend"], "10.245.6.2:8080");
        }
    }

    /// The tables: the legend, the names, and `--stats`' counters on each service line.
    pub fn assert_tables(run: &ScenarioRun) {
        let table = &run.dump("rules.table").text;
        assert!(
            table.contains("COUNTS OF CONNECTIONS (not bytes)"),
            "{table}"
        );
        assert!(
            table.contains(&format!("{} (LoadBalancer)", seed::service(80))),
            "{table}"
        );
        let stats_table = &run.dump("rules-stats.table").text;
        for service in &run.stats() {
            let line = stats_table
                .lines()
                .find(|l| l.starts_with(&format!("{}  {} ", service.proto, service.vip)))
                .unwrap_or_else(|| {
                    panic!("{} {} not in:\n{stats_table}", service.proto, service.vip)
                });
            let numbers: Vec<u64> = line
                .split_whitespace()
                .rev()
                .take(5)
                .map(|n| n.parse().expect("a counter"))
                .collect();
            let c = service.counters;
            assert_eq!(
                numbers,
                [c.out_bytes, c.in_bytes, c.out_pkts, c.in_pkts, c.conns],
                "{line}"
            );
        }
    }

    fn sorted(mut services: Vec<ipvsadm::Service>) -> Vec<ipvsadm::Service> {
        services.sort_by(|a, b| (&a.proto, &a.vip).cmp(&(&b.proto, &b.vip)));
        for service in &mut services {
            service.dests.sort_by_key(|d| d.addr);
        }
        services
    }

    /// `(proto, vip)` as ipvsadm names a service: `TCP 172.31.0.60:80`, `FWM 5`.
    fn key(service: &Value) -> (String, String) {
        match (service["proto"].as_str(), service["vip"].as_str()) {
            (Some(proto), Some(vip)) => (proto.to_owned(), vip.to_owned()),
            _ => ("FWM".to_owned(), service["fwmark"].to_string()),
        }
    }

    fn number(value: &Value) -> u64 {
        value
            .as_u64()
            .unwrap_or_else(|| panic!("{value} is not a count"))
    }

    /// The service as `ipvsadm -Ln` prints it: flags as `(sched-flags) persistent T mask M`.
    fn rules_of(service: &Value) -> ipvsadm::Service {
        let (proto, vip) = key(service);
        let names: Vec<&str> = service["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .map(|f| f.as_str().expect("a flag name"))
            .collect();
        let mut flags = Vec::new();
        let sched: Vec<&str> = names
            .iter()
            .copied()
            .filter(|f| !["persistent", "hashed", "one-packet"].contains(f))
            .collect();
        if !sched.is_empty() {
            flags.push(format!("({})", sched.join(",")));
        }
        if names.contains(&"persistent") {
            flags.push(format!("persistent {}", service["persistence_timeout"]));
            let mask = service["persistence_netmask"].as_str().expect("netmask");
            if !["255.255.255.255", "128"].contains(&mask) {
                flags.push(format!("mask {mask}"));
            }
        }
        if names.contains(&"one-packet") {
            flags.push("ops".to_owned());
        }
        ipvsadm::Service {
            proto,
            vip,
            scheduler: service["scheduler"].as_str().expect("scheduler").to_owned(),
            flags: flags.join(" "),
            dests: service["dests"]
                .as_array()
                .expect("dests")
                .iter()
                .map(|d| ipvsadm::Dest {
                    addr: addr(d["backend"].as_str().expect("backend")),
                    forward: d["fwd"].as_str().expect("fwd").to_owned(),
                    weight: i32::try_from(number(&d["weight"])).expect("a weight"),
                    active: number(&d["active_conns"]),
                    inactive: number(&d["inactive_conns"]),
                })
                .collect(),
        }
    }

    fn counters(stats: &Value) -> ipvsadm::Counters {
        ipvsadm::Counters {
            conns: number(&stats["conns"]),
            in_pkts: number(&stats["in_pkts"]),
            out_pkts: number(&stats["out_pkts"]),
            in_bytes: number(&stats["in_bytes"]),
            out_bytes: number(&stats["out_bytes"]),
        }
    }
}

// builtin: no module BTF and no --btf: the built-in layout, scheduler and weights from the
// tables, counters and netns null; on 7.x a clear refusal.
fn builtin(run: &ScenarioRun) {
    let release = run.dump("release").text.trim().to_owned();
    let check = run.dump("check");
    assert_golden(&check.text, &format!("check-{release}-builtin.txt"));
    if release.starts_with("7.") {
        assert_eq!(check.status, Some(1), "check on {release}:\n{}", check.text);
        let nobtf = run.dump("nobtf");
        assert_eq!(nobtf.status, Some(1), "trace on {release}:\n{}", nobtf.text);
        for needle in ["7.x moved", "--btf FILE", "error:"] {
            assert!(
                nobtf.text.contains(needle),
                "{needle:?} in:\n{}",
                nobtf.text
            );
        }
        return;
    }
    assert_eq!(check.status, Some(0), "check on {release}:\n{}", check.text);
    assert!(
        check.text.contains("built-in layout") && check.text.contains("ready, degraded"),
        "{}",
        check.text
    );

    let trace = run.trace("trace");
    assert_clean("trace", &trace);
    assert_eq!(
        trace
            .stderr
            .matches("no BTF for ip_vs: the built-in")
            .count(),
        1,
        "the degraded mode is said once at start:\n{}",
        trace.stderr
    );
    // What the probes cannot read is null, never invented; the rest is the kernel's.
    for event in &trace.events {
        let what = format!("{event:?}");
        assert!(event.netns.is_none(), "netns without BTF: {what}");
        assert!(
            event.active_conns.is_none() && event.inactive_conns.is_none(),
            "counters without BTF: {what}"
        );
        assert!(event.names_are_null(), "{what}");
        assert_eq!(event.proto, "TCP", "{what}");
    }

    builtin_wrr(run, &trace);
    builtin_reuse(run, &trace);
    builtin_no_dest(&trace);
    assert_eq!(trace.events.len(), 68, "events of any kind");
    assert_eq!(
        trace.summary.tables.as_deref(),
        Some(
            "scheduler and weight from the IPVS tables for 68 events; 0 events had no \
             matching virtual service"
        ),
        "{}",
        trace.stderr
    );
}

/// builtin's wrr part: exact 3/2/1 split, equal to the kernel's entries and Conns.
fn builtin_wrr(run: &ScenarioRun, trace: &Trace) {
    // wrr 3/2/1: every event is its kernel entry, carries the tables' scheduler and weight, and
    // the split is exact and equal to IPVS's own Conns per real server.
    let wrr = addr("172.31.0.60:80");
    let events: Vec<&Event> = trace.of_kind("new").filter(|e| e.vip == wrr).collect();
    let clients = [run.client("wrr1"), run.client("wrr2")].concat();
    assert_eq!(clients.len(), 60, "lab-net connections");
    assert_events_are_connections(&events, &clients);
    assert_events_are_entries(&events, &entries_of(run, "conns", "TCP", wrr));
    let weights = BTreeMap::from([
        (addr("10.245.14.1:8080"), 3),
        (addr("10.245.14.2:8080"), 2),
        (addr("10.245.14.3:8080"), 1),
    ]);
    let mut per_backend: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    for event in &events {
        let backend = event.backend.expect("a new event has a backend");
        assert_eq!(event.scheduler.as_deref(), Some("wrr"), "{event:?}");
        assert_eq!(event.fwd.as_deref(), Some("Masq"), "{event:?}");
        assert_eq!(event.weight, weights.get(&backend).copied(), "{event:?}");
        assert!(event.conn.is_some(), "{event:?}");
        *per_backend.entry(backend).or_default() += 1;
    }
    let want: BTreeMap<SocketAddr, u64> = weights
        .iter()
        .map(|(b, w)| (*b, u64::try_from(*w * 10).unwrap()))
        .collect();
    assert_eq!(per_backend, want, "wrr split");
    let configured: BTreeMap<SocketAddr, u64> = weights
        .iter()
        .map(|(b, w)| (*b, u64::try_from(*w).unwrap()))
        .collect();
    assert_eq!(
        trace.summary.weights.get("TCP 172.31.0.60:80 wrr"),
        Some(&configured),
        "the summary's configured weights"
    );
    let stats: BTreeMap<SocketAddr, u64> = run
        .service_stats("TCP", wrr)
        .dests
        .iter()
        .map(|(a, c)| (*a, c.conns))
        .collect();
    assert_eq!(stats, want, "IPVS's Conns per real server");
}

/// builtin's reuse part: the stable layout's state member drives `reused`.
fn builtin_reuse(run: &ScenarioRun, trace: &Trace) {
    // reuse: 1 new + 4 reused, one kernel entry, one pod.
    let reuse = addr("172.31.0.61:80");
    let client = addr("198.51.100.11:30000");
    let events: Vec<&Event> = trace.events.iter().filter(|e| e.vip == reuse).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["new", "reused", "reused", "reused", "reused"]);
    for event in &events {
        assert_eq!(event.client, client, "{event:?}");
        assert_eq!(event.backend, events[0].backend, "{event:?}");
        assert_eq!(event.conn, events[0].conn, "{event:?}");
        assert_eq!(event.scheduler.as_deref(), Some("rr"), "{event:?}");
        assert_eq!(event.weight, Some(1), "{event:?}");
    }
    let entries: Vec<ConnEntry> = entries_of(run, "conns", "TCP", reuse)
        .into_iter()
        .filter(|e| e.source == client)
        .collect();
    assert_events_are_entries(&events[..1], &entries);
}

/// builtin's no_dest part: the stable service and iphdr members.
fn builtin_no_dest(trace: &Trace) {
    // no_dest: the exact client ip:port, the VIP, the tables' scheduler, no backend.
    let empty = addr("172.31.0.62:80");
    let refused: Vec<&Event> = trace.of_kind("no_dest").collect();
    assert_eq!(refused.len(), 3, "no_dest events");
    for event in &refused {
        assert_eq!(event.vip, empty, "{event:?}");
        assert_eq!(event.client, addr("198.51.100.12:41000"), "{event:?}");
        assert_eq!(event.scheduler.as_deref(), Some("rr"), "{event:?}");
        assert!(
            event.backend.is_none() && event.weight.is_none(),
            "{event:?}"
        );
    }
}

/// `text` equals the file `tests/golden/NAME` (`IPVS_TRACE_BLESS=1` writes it).
fn assert_golden(text: &str, name: &str) {
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name);
    if std::env::var_os("IPVS_TRACE_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run the e2e tests with IPVS_TRACE_BLESS=1 to record it); this run's:\n{text}",
            golden.display()
        )
    });
    assert_eq!(text, want, "differs from {}", golden.display());
}

// balance: five windows judged by `balance --check`; every count against ipvsadm --stats.
fn balance(run: &ScenarioRun) {
    // Each window: its VIP, the exit status of --check, the cause it must name.
    let p1 = "10.245.8.1:8080";
    let p2 = "10.245.8.2:8080";
    let p3 = "10.245.8.3:8080";
    balance_window::check(run, "rr", "172.31.0.70:80", 0, None);
    balance_window::check(run, "wrr", "172.31.0.71:80", 0, None);
    balance_window::check(run, "reuse", "172.31.0.72:80", 3, Some(("reused", None)));
    balance_window::check(
        run,
        "weight0",
        "172.31.0.73:80",
        3,
        Some(("weight_zero", Some(p3))),
    );
    balance_window::check(
        run,
        "added",
        "172.31.0.74:80",
        3,
        Some(("backend_added", Some(p3))),
    );

    let per_backend = |name: &str| balance_window::new_per_backend(run, name);
    // rr and wrr are exact over whole rounds; the mid-window changes split them as the
    // kernel's rr does: 10 each, then 15 each over the two left (or the three now there).
    let exact = |pairs: &[(&str, u64)]| -> BTreeMap<SocketAddr, u64> {
        pairs.iter().map(|(b, n)| (addr(b), *n)).collect()
    };
    assert_eq!(per_backend("rr"), exact(&[(p1, 50), (p2, 50), (p3, 50)]));
    assert_eq!(per_backend("wrr"), exact(&[(p1, 150), (p2, 100), (p3, 50)]));
    assert_eq!(
        per_backend("weight0"),
        exact(&[(p1, 25), (p2, 25), (p3, 10)])
    );
    assert_eq!(per_backend("added"), exact(&[(p1, 25), (p2, 25), (p3, 10)]));

    // reuse: 1 scheduled + 19 reused for the fixed port, all on its pod; 20 ordinary.
    let fixed = run.client("reuse-fixed");
    assert_eq!(fixed.len(), 20);
    assert!(
        fixed
            .iter()
            .all(|l| l.ok() && l.local == Some(addr("198.51.100.41:30000"))),
        "{fixed:?}"
    );
    let doc = balance_window::document(run, "reuse");
    let service = &doc["services"][0];
    assert_eq!(service["connections"]["new"], 21);
    assert_eq!(service["connections"]["reused"], 19);
    let reused_on: Vec<&serde_json::Value> = service["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter(|b| b["reused"].as_u64() > Some(0))
        .collect();
    assert_eq!(reused_on.len(), 1, "reused entries on one pod: {service}");
    let cause = service["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .find(|c| c["cause"] == "reused")
        .expect("a reused cause");
    assert_eq!(cause["count"], 19);
    assert_eq!(cause["backend"], reused_on[0]["backend"]);
}

/// One window of the `balance` scenario: its JSON document against `ipvsadm --stats`.
mod balance_window {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use ipvs_trace_tests::ipvsadm::{self, ServiceStats};
    use ipvs_trace_tests::output::ScenarioRun;
    use serde_json::Value;

    use super::addr;

    /// The document of window `name`.
    pub fn document(run: &ScenarioRun, name: &str) -> Value {
        let out = &run.dump(&format!("{name}.out")).text;
        serde_json::from_str(out).unwrap_or_else(|e| {
            panic!(
                "balance {name}: not one JSON document ({e}):\n{out}\nstderr:\n{}",
                run.dump(&format!("{name}.stderr")).text
            )
        })
    }

    /// `new` per backend in the window's report.
    pub fn new_per_backend(run: &ScenarioRun, name: &str) -> BTreeMap<SocketAddr, u64> {
        document(run, name)["services"][0]["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .map(|b| {
                (
                    addr(b["backend"].as_str().expect("backend")),
                    number(&b["new"]),
                )
            })
            .collect()
    }

    fn number(value: &Value) -> u64 {
        value
            .as_u64()
            .unwrap_or_else(|| panic!("not a count: {value}"))
    }

    /// Growth of the kernel's Conns per real server of `vip` between the dumps
    /// `stats-before-NAME` and `stats-NAME` (a real server absent before counts from 0).
    fn kernel_growth(
        run: &ScenarioRun,
        name: &str,
        vip: SocketAddr,
    ) -> (u64, BTreeMap<SocketAddr, u64>) {
        let read = |dump: &str| {
            let all = ipvsadm::parse_stats(&run.dump(dump).text).unwrap_or_else(|e| panic!("{e}"));
            ServiceStats::find(&all, "TCP", vip)
                .cloned()
                .unwrap_or_else(|| panic!("no TCP {vip} in {dump}"))
        };
        let (before, after) = (
            read(&format!("stats-before-{name}")),
            read(&format!("stats-{name}")),
        );
        let per_dest = after
            .dests
            .iter()
            .map(|(dest, counters)| {
                let was = before
                    .dests
                    .iter()
                    .find(|(d, _)| d == dest)
                    .map_or(0, |(_, c)| c.conns);
                (*dest, counters.conns - was)
            })
            .collect();
        (after.counters.conns - before.counters.conns, per_dest)
    }

    /// Exit status, verdict and cause as expected; every backend of the service listed; each
    /// `new` count equal to the kernel's Conns growth, and the report's own cross-check saying
    /// so; the service's new connections equal the scheduled connections the clients made.
    pub fn check(
        run: &ScenarioRun,
        name: &str,
        vip: &str,
        status: u8,
        cause: Option<(&str, Option<&str>)>,
    ) {
        let vip = addr(vip);
        let stderr = &run.dump(&format!("{name}.stderr")).text;
        let got_status = run.dump(&format!("{name}.status")).text.trim().to_owned();
        assert_eq!(
            got_status,
            status.to_string(),
            "balance {name} exit status; stderr:\n{stderr}"
        );
        let doc = document(run, name);
        assert_eq!(doc["check_status"], status, "{name}");
        assert_eq!(doc["settled"], true, "{name}");
        assert_eq!(doc["events_lost"], 0, "{name}");
        let services = doc["services"].as_array().expect("services");
        assert_eq!(services.len(), 1, "{name}: --vip keeps one service");
        let service = &services[0];
        assert_eq!(service["vip"], vip.to_string());
        assert_eq!(service["mode"], "share");
        let verdict = if status == 0 { "balanced" } else { "deviates" };
        assert_eq!(service["verdict"], verdict, "{name}: {service}");
        let causes = service["causes"].as_array().expect("causes");
        match cause {
            None => assert!(causes.is_empty(), "{name}: causes {causes:?}"),
            Some((cause, backend)) => assert!(
                causes.iter().any(|c| c["cause"] == cause
                    && backend.is_none_or(|b| c["backend"] == b)
                    && (cause == "reused" || c["at"].is_string())),
                "{name}: no cause {cause} {backend:?} in {causes:?}"
            ),
        }
        let p_value = service["p_value"].as_f64().expect("p_value");
        if status == 0 {
            assert!(
                (p_value - 1.0).abs() < 1e-9,
                "{name}: exact rounds give p = 1, got {p_value}"
            );
        } else {
            assert!(p_value < 0.05, "{name}: p = {p_value}");
        }

        let (total, per_dest) = kernel_growth(run, name, vip);
        let backends = service["backends"].as_array().expect("backends");
        let listed: BTreeMap<SocketAddr, u64> = backends
            .iter()
            .map(|b| {
                (
                    addr(b["backend"].as_str().expect("backend")),
                    number(&b["new"]),
                )
            })
            .collect();
        assert_eq!(
            listed, per_dest,
            "{name}: new per backend vs ipvsadm --stats Conns growth"
        );
        for backend in backends {
            assert_eq!(backend["kernel_conns"], backend["new"], "{name}: {backend}");
            assert_eq!(backend["cross_check"], "exact", "{name}: {backend}");
        }
        assert_eq!(service["cross_check"], "exact", "{name}");
        assert_eq!(
            number(&service["connections"]["new"]),
            total,
            "{name}: the service's Conns"
        );
        let made: u64 = run
            .dumps_where(|d| d.starts_with(&format!("client-{name}")) && !d.ends_with(".stderr"))
            .flat_map(|d| {
                ipvs_trace_tests::labnet::parse_client_lines(&d.text).expect("client lines")
            })
            .map(|l| {
                assert!(l.ok(), "{name}: connection failed: {l:?}");
                1
            })
            .sum();
        let reused = number(&service["connections"]["reused"]);
        assert_eq!(
            total + reused,
            made,
            "{name}: connections made = scheduled + reused"
        );
    }
}

// errors: the clear errors that can be provoked for real, and the ways out of them.
fn errors(run: &ScenarioRun) {
    let failed = |name: &str, needles: &[&str]| {
        let dump = run.dump(name);
        assert_eq!(
            dump.status,
            Some(1),
            "{name}: exit status; output:\n{}",
            dump.text
        );
        assert!(
            dump.text.contains("error:"),
            "{name}: no `error:` line:\n{}",
            dump.text
        );
        for needle in needles {
            assert!(
                dump.text.contains(needle),
                "{name}: the error does not mention {needle:?}:\n{}",
                dump.text
            );
        }
    };
    failed(
        "noroot",
        &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "root"],
    );
    failed("unloaded", &["ip_vs", "not loaded", "--wait"]);
    failed("attach", &["kretprobe", "ip_vs_no_such_fn"]);
    check_reports(run);

    // `--wait` across the module load, and `--btf` with the saved module BTF, both trace.
    for (name, vip) in [("wait", "172.31.0.50:80"), ("btf", "172.31.0.51:80")] {
        let trace = run.trace(name);
        assert_clean(name, &trace);
        let events: Vec<&Event> = trace.of_kind("new").collect();
        assert_eq!(events.len(), 5, "{name}: new events");
        for event in &events {
            assert_scheduled_fields(event, "TCP", "rr");
        }
        assert_events_are_connections(&events, &run.client(name));
        assert_events_are_entries(
            &events,
            &entries_of(run, &format!("conns-{name}"), "TCP", addr(vip)),
        );
    }
}

/// `ipvs-trace check` on the intact node equals the golden report of this kernel release
/// (`tests/golden/check-<release>.txt`; `IPVS_TRACE_BLESS=1` writes it); with --btf of the
/// saved module BTF it is ready too (without module BTF: scenario `builtin`).
fn check_reports(run: &ScenarioRun) {
    let release = run.dump("release").text.trim().to_owned();
    let check = run.dump("check");
    assert_eq!(check.status, Some(0), "check on {release}:\n{}", check.text);
    assert_golden(&check.text, &format!("check-{release}.txt"));
    assert!(
        check.text.contains("result      ready: every probe fits"),
        "{}",
        check.text
    );
    let btf = run.dump("check-btf");
    assert_eq!(btf.status, Some(0), "{}", btf.text);
    assert!(
        btf.text.contains("ip_vs /tmp/saved-btf/ip_vs (--btf)"),
        "{}",
        btf.text
    );
}

// metrics: `ipvs-trace serve` scraped over HTTP with busybox wget: each connection counter
// equals the kernel's Conns (ipvsadm --stats) per backend, the named Service summed over its
// two VIPs; nothing lost; the table metrics equal ipvsadm's weights and counters; nothing on
// stdout; SIGTERM ends it with status 0 and the summary.
fn metrics(run: &ScenarioRun) {
    let stderr = serve_stopped(run);
    assert!(
        stderr.contains("ipvs-trace summary\n") && stderr.contains("  lost: 0 (ring buffer full)"),
        "{stderr}"
    );
    assert_eq!(run.dump("healthz").text.trim(), "ok");
    let clients = run.all_clients();
    assert_eq!(clients.len(), 24, "lab-net connections");
    assert!(clients.iter().all(ClientLine::ok), "{clients:?}");

    let scrape = &run.dump("metrics").text;
    assert!(scrape.ends_with("# EOF\n"), "not OpenMetrics:\n{scrape}");
    let samples = parse_metrics(scrape);
    let sum = |name: &str, labels: &[(&str, &str)]| metric_sum(&samples, name, labels);
    for name in [
        "ipvs_trace_events_lost_total",
        "ipvs_trace_events_unreadable_total",
        "ipvs_trace_records_malformed_total",
    ] {
        assert!(
            samples.iter().any(|(n, _, _)| n == name),
            "{name} missing:\n{scrape}"
        );
        assert_eq!(sum(name, &[]), 0, "{name}");
    }
    assert_eq!(sum("ipvs_trace_ready", &[]), 1);

    // The service no snapshot knows: by address, per backend address.
    let wrr = addr("172.31.0.80:80");
    let stats = run.service_stats("TCP", wrr);
    assert_eq!(
        stats.counters.conns, 12,
        "the kernel scheduled every connection"
    );
    for (backend, counters) in &stats.dests {
        let labels = [
            ("event", "new"),
            ("proto", "TCP"),
            ("service", "172.31.0.80:80"),
            ("scheduler", "wrr"),
            ("backend", &backend.to_string()),
        ];
        assert_eq!(
            sum("ipvs_trace_connections_total", &labels),
            counters.conns,
            "{backend}: metrics vs ipvsadm --stats\n{scrape}"
        );
    }
    // The seed's http port: by Service port and pod name, its ClusterIP and LoadBalancer IP
    // under one name.
    let mut by_pod: BTreeMap<String, u64> = BTreeMap::new();
    for vip in [seed::CLUSTER_IP, seed::EXTERNAL_IP] {
        for (backend, counters) in run.service_stats("TCP", addr(&format!("{vip}:80"))).dests {
            let (pod, _) = seed::pod(&backend.ip().to_string()).expect("a seed pod");
            *by_pod.entry(pod).or_default() += counters.conns;
        }
    }
    assert_eq!(by_pod.values().sum::<u64>(), 12, "{by_pod:?}");
    for (pod, conns) in &by_pod {
        let labels = [
            ("event", "new"),
            ("service", seed::service(80)),
            ("scheduler", "rr"),
            ("backend", pod.as_str()),
        ];
        assert_eq!(
            sum("ipvs_trace_connections_total", &labels),
            *conns,
            "{pod}: metrics vs ipvsadm --stats\n{scrape}"
        );
    }
    // Nothing else was counted, and only the wrr service's addresses were unknown.
    assert_eq!(sum("ipvs_trace_connections_total", &[]), 24, "{scrape}");
    let unresolved = |what| sum("ipvs_trace_unresolved_names_total", &[("address", what)]);
    assert_eq!(
        (unresolved("service"), unresolved("backend")),
        (12, 12),
        "{scrape}"
    );

    assert_table_metrics(run, &samples, scrape);
}

/// The table metrics of the metrics scenario: every real server's weight and Conns as
/// ipvsadm has them, and its configured and observed share of new connections as the weights
/// and the kernel's Conns make them (every connection of the scenario is inside the
/// observed share's minute).
fn assert_table_metrics(run: &ScenarioRun, samples: &[Sample], scrape: &str) {
    let sum = |name: &str, labels: &[(&str, &str)]| metric_sum(samples, name, labels);
    let stats = run.stats();
    let mut shares_checked = 0;
    for service in run.rules() {
        let vip = addr(&service.vip);
        let kernel = ipvs_trace_tests::ipvsadm::ServiceStats::find(&stats, &service.proto, vip)
            .expect("the service in --stats");
        let weights: i32 = service.dests.iter().map(|d| d.weight).sum();
        let positive = service.dests.iter().filter(|d| d.weight > 0).count();
        for dest in &service.dests {
            let backend = seed::pod(&dest.addr.ip().to_string())
                .map_or_else(|| dest.addr.to_string(), |(pod, _)| pod);
            let labels = [
                ("proto", service.proto.as_str()),
                ("vip", service.vip.as_str()),
                ("backend", backend.as_str()),
            ];
            assert_eq!(
                sum("ipvs_trace_ipvs_backend_weight", &labels),
                u64::try_from(dest.weight).expect("a weight"),
                "{} -> {backend}\n{scrape}",
                service.vip
            );
            let conns = kernel
                .dests
                .iter()
                .find(|(a, _)| *a == dest.addr)
                .map(|(_, c)| c.conns)
                .expect("the real server in --stats");
            assert_eq!(
                sum("ipvs_trace_ipvs_backend_connections_total", &labels),
                conns,
                "{} -> {backend}\n{scrape}",
                service.vip
            );
            let configured = match service.scheduler.as_str() {
                "rr" if dest.weight > 0 => Some(1.0 / real(positive as u64)),
                "rr" => Some(0.0),
                "wrr" => Some(f64::from(dest.weight) / f64::from(weights)),
                _ => None,
            };
            let share = |name| metric_value(samples, name, &labels);
            assert_close(
                share("ipvs_trace_backend_share_configured"),
                configured,
                &format!("configured share of {} -> {backend}\n{scrape}", service.vip),
            );
            let observed =
                (kernel.counters.conns > 0).then(|| real(conns) / real(kernel.counters.conns));
            assert_close(
                share("ipvs_trace_backend_share_observed"),
                observed,
                &format!("observed share of {} -> {backend}\n{scrape}", service.vip),
            );
            shares_checked += usize::from(observed.is_some());
        }
    }
    assert_eq!(
        shares_checked, 8,
        "wrr's 2 backends and the 3 pods behind each of the seed's two VIPs"
    );
}

#[expect(
    clippy::cast_precision_loss,
    reason = "the scenario's counts are far below 2^52, where f64 is exact"
)]
fn real(count: u64) -> f64 {
    count as f64
}

fn assert_close(got: Option<f64>, want: Option<f64>, what: &str) {
    match (got, want) {
        (Some(got), Some(want)) if (got - want).abs() < 1e-9 => {}
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

/// A sample of an OpenMetrics text: name, labels, value.
/// `serve` across ip_vs unloaded and loaded again, twice (the second time within one of its
/// polls): 503 and ready 0 while the module is away, ready again by itself with each
/// re-attachment counted, and every connection counted as the kernel counted it, each module
/// load on its own (its counters restart with it).
fn reload(run: &ScenarioRun) {
    let stderr = serve_stopped(run);
    let clients = run.all_clients();
    assert_eq!(clients.len(), 6 + 9 + 4, "lab-net connections");
    assert!(clients.iter().all(ClientLine::ok), "{clients:?}");

    assert_eq!(run.dump("healthz-before").text.trim(), "ok");
    let unloaded = run.dump("healthz-unloaded");
    assert!(
        unloaded.status != Some(0) && unloaded.text.contains("503"),
        "/healthz with ip_vs unloaded: status {:?}\n{}",
        unloaded.status,
        unloaded.text
    );
    assert_eq!(run.dump("healthz-reloaded").text.trim(), "ok");

    // Each load of ip_vs is a new sysfs directory, a new inode: what serve tells loads by (the
    // module's code may be at the same address each time: printed, not asserted).
    let modules = ["before", "reloaded", "fast"].map(|tag| {
        let text = &run.dump(&format!("module-{tag}")).text;
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields[..] {
            [inode, _, address] => (inode.to_owned(), address.to_owned()),
            _ => panic!("module-{tag}: {text:?}"),
        }
    });
    println!("reload: ip_vs (sysfs inode, .text) of each load: {modules:?}");
    let inodes: BTreeSet<&str> = modules.iter().map(|(inode, _)| inode.as_str()).collect();
    assert_eq!(inodes.len(), 3, "{modules:?}");

    let scrapes = [
        "metrics-before",
        "metrics-unloaded",
        "metrics-reloaded",
        "metrics",
    ]
    .map(|name| {
        let text = &run.dump(name).text;
        assert!(
            text.ends_with("# EOF\n"),
            "{name}: not OpenMetrics:\n{text}"
        );
        parse_metrics(text)
    });
    let of_each = |name: &str, labels: &[(&str, &str)]| -> Vec<u64> {
        scrapes
            .iter()
            .map(|s| metric_sum(s, name, labels))
            .collect()
    };
    assert_eq!(of_each("ipvs_trace_ready", &[]), [1, 0, 1, 1], "ready");
    assert_eq!(
        of_each("ipvs_trace_probe_reattachments_total", &[]),
        [0, 0, 1, 2],
        "re-attachments"
    );
    let last = &scrapes[3];
    for name in [
        "ipvs_trace_events_lost_total",
        "ipvs_trace_events_unreadable_total",
        "ipvs_trace_records_malformed_total",
    ] {
        assert_eq!(metric_sum(last, name, &[]), 0, "{name}");
    }

    assert_counted_per_load(run, &scrapes);

    let summary = ipvs_trace_tests::trace::parse_summary(stderr)
        .unwrap_or_else(|e| panic!("serve's summary: {e}\n{stderr}"));
    assert_eq!(summary.events.get("new"), Some(&19), "{stderr}");
    assert_eq!(
        (summary.lost, summary.malformed, summary.unreadable),
        (Some(0), 0, 0),
        "losses over the three tracers\n{stderr}"
    );
    // Said once per unload: the first seen as gone, the second only as another load in place.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ip_vs was unloaded"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings[0].contains("ip_vs was unloaded: its probes went with it"),
        "{stderr}"
    );
    assert!(
        warnings[1].contains("ip_vs was unloaded and loaded again: its probes went with it"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("ipvs-trace: tracing again").count(),
        2,
        "{stderr}"
    );
}

/// Per backend, what the tracer counted while each load of ip_vs was there (between the
/// scrapes around it) equals what that load counted; 19 connections in all, nothing else.
fn assert_counted_per_load(run: &ScenarioRun, scrapes: &[Vec<Sample>; 4]) {
    let vip = addr("172.31.0.90:80");
    let windows = [
        ("stats-before", None, 0),
        ("stats-reloaded", Some(0), 2),
        ("stats", Some(2), 3),
    ];
    let mut total = 0;
    for (stats, from, to) in windows {
        let kernel = ipvs_trace_tests::ipvsadm::parse_stats(&run.dump(stats).text)
            .unwrap_or_else(|e| panic!("{e}"));
        let kernel = ipvs_trace_tests::ipvsadm::ServiceStats::find(&kernel, "TCP", vip)
            .unwrap_or_else(|| panic!("no TCP {vip} in {stats}"))
            .clone();
        let counted = |scrape: Option<usize>, backend: &str| {
            scrape.map_or(0, |i| {
                metric_sum(
                    &scrapes[i],
                    "ipvs_trace_connections_total",
                    &[
                        ("event", "new"),
                        ("service", "172.31.0.90:80"),
                        ("scheduler", "rr"),
                        ("backend", backend),
                    ],
                )
            })
        };
        for (backend, counters) in &kernel.dests {
            let backend = backend.to_string();
            assert_eq!(
                counted(Some(to), &backend) - counted(from, &backend),
                counters.conns,
                "{backend} while {stats}'s ip_vs was loaded: metrics vs ipvsadm --stats"
            );
        }
        total += kernel.counters.conns;
    }
    assert_eq!(total, 19, "the kernel scheduled every connection");
    assert_eq!(
        metric_sum(&scrapes[3], "ipvs_trace_connections_total", &[]),
        19,
        "nothing but the 19 new connections"
    );
}

type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of `name` whose labels include `labels`.
fn matching<'a>(
    samples: &'a [Sample],
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = f64> + 'a {
    samples
        .iter()
        .filter(move |(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
        })
        .map(|(_, _, v)| *v)
}

/// The sum of the counter or integer gauge samples of `name` whose labels include `labels`; 0
/// if there are none.
fn metric_sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    let total: f64 = matching(samples, name, labels).sum();
    assert!(
        total >= 0.0 && total.fract() == 0.0,
        "{name} {labels:?}: {total} is not a count"
    );
    total as u64
}

/// The one sample of `name` with `labels`, if there is one.
fn metric_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = matching(samples, name, labels).collect();
    assert!(values.len() <= 1, "{name} {labels:?}: {values:?}");
    values.first().copied()
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("value of {line:?}"));
            let Some((name, labels)) = series.split_once('{') else {
                return (series.to_owned(), BTreeMap::new(), value);
            };
            let labels = labels
                .strip_suffix('}')
                .expect("labels end with }")
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                    (key.to_owned(), value.trim_end_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value)
        })
        .collect()
}

// top: the last `top --batch` frame's CONNS per real server against ipvsadm --stats; the live
// view under a pseudo-terminal (`script`) quits on `q` and gives the terminal back.
fn top(run: &ScenarioRun) {
    let stderr = &run.dump("top.stderr").text;
    assert_eq!(
        run.dump("top.status").text.trim(),
        "0",
        "top --batch exit status; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("ipvs-trace: top stopped after 6 frames; lost: 0 (ring buffer full)"),
        "{stderr}"
    );
    let clients = run.all_clients();
    assert_eq!(clients.len(), 50, "lab-net connections");
    assert!(clients.iter().all(ClientLine::ok), "{clients:?}");

    let out = &run.dump("top.out").text;
    let frames = top_view::frames(out);
    assert_eq!(frames.len(), 6, "--iterations 6:\n{out}");
    let last = frames.last().expect("six frames");
    assert_eq!(last.lost, "lost: 0 events", "{out}");
    for (vip, scheduler, connections) in
        [("172.31.0.90:80", "rr", 30), ("172.31.0.91:80", "wrr", 20)]
    {
        let kernel = run.service_stats("TCP", addr(vip));
        assert_eq!(
            kernel.counters.conns, connections,
            "the kernel scheduled every connection"
        );
        let name = format!("{vip}/TCP");
        let service = last
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} in the last frame:\n{out}"));
        assert_eq!(service.scheduler, scheduler, "{out}");
        assert_eq!(service.conns, connections, "{name} CONNS\n{out}");
        let shown: BTreeMap<SocketAddr, u64> = service
            .backends
            .iter()
            .map(|(backend, conns)| (addr(backend), *conns))
            .collect();
        let expected: BTreeMap<SocketAddr, u64> = kernel
            .dests
            .iter()
            .map(|(backend, counters)| (*backend, counters.conns))
            .collect();
        assert_eq!(
            shown, expected,
            "{name}: top's CONNS vs ipvsadm --stats\n{out}"
        );
    }
    assert_eq!(last.services.len(), 2, "{out}");
    // Busiest first: every connection was made before the last frame, so the last ranks by
    // the totals: rr (30) above wrr (20).
    assert_eq!(last.services[0].name, "172.31.0.90:80/TCP", "{out}");

    if let Some(skipped) = run.find("tty.skipped") {
        println!("the live view was not run: {}", skipped.text.trim());
        return;
    }
    // `script` closes its typescript with a `Script done on ...` line of its own.
    let typescript = &run.dump("tty.out").text;
    let tty = typescript
        .split("Script done on ")
        .next()
        .unwrap_or(typescript);
    let tty_stderr = &run.dump("tty.stderr").text;
    assert_eq!(
        run.dump("tty.status").text.trim(),
        "0",
        "top under a pty; its stderr:\n{tty_stderr}\nits terminal:\n{tty}"
    );
    // `q` ended it, not --iterations 30.
    let frames: u64 = tty_stderr
        .split("top stopped after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'top stopped after N frames' in:\n{tty_stderr}"));
    assert!(frames < 30, "q did not stop top: {frames} frames");
    // ESC is `~` in the dump. The view took the alternate screen, drew the loss line and the
    // connections made while it was up, and ended by leaving the alternate screen and
    // showing the cursor: nothing else after that.
    assert!(tty.contains("~[?1049h"), "{tty}");
    assert!(tty.contains("lost: 0 events"), "{tty}");
    assert!(tty.contains("172.31.0.90:80/TCP"), "{tty}");
    let (_, after) = tty
        .rsplit_once("~[?1049l")
        .unwrap_or_else(|| panic!("the alternate screen was never left:\n{tty}"));
    assert!(
        after.contains("~[?25h"),
        "the cursor was not shown again: {after:?}"
    );
    assert!(
        after.replace("~[?25h", "").trim().is_empty(),
        "output after the terminal was restored: {after:?}"
    );
    let stty: Vec<&str> = run.dump("tty.stty").text.lines().collect();
    assert!(
        matches!(stty[..], [before, after] if before == after),
        "the terminal's settings before and after top (stty -g): {stty:?}"
    );
}

/// The plain-text frames of `top --batch`.
mod top_view {
    /// One frame: its loss line and its rows.
    pub struct Frame {
        pub lost: String,
        pub services: Vec<Service>,
    }

    /// A service row and its backends' `(address, CONNS)`.
    pub struct Service {
        pub name: String,
        pub scheduler: String,
        pub conns: u64,
        pub backends: Vec<(String, u64)>,
    }

    /// Frames start with `ipvs-trace top`, then the loss line, the column titles, the rows
    /// (backends indented) and a blank line.
    pub fn frames(text: &str) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(first) = lines.next() {
            assert!(
                first.starts_with("ipvs-trace top  "),
                "not a frame: {first:?}"
            );
            let lost = lines.next().expect("the loss line").to_owned();
            let titles = lines.next().expect("the column titles");
            assert!(titles.starts_with("SERVICE / BACKEND"), "{titles:?}");
            let mut services: Vec<Service> = Vec::new();
            for row in lines.by_ref().take_while(|l| !l.is_empty()) {
                let words: Vec<&str> = row.split_whitespace().collect();
                let conns = words
                    .last()
                    .and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("no CONNS in {row:?}"));
                if row.starts_with("  ") {
                    let service = services.last_mut().expect("a service before its backends");
                    service.backends.push((words[0].to_owned(), conns));
                } else {
                    services.push(Service {
                        name: words[0].to_owned(),
                        scheduler: words[1].to_owned(),
                        conns,
                        backends: Vec::new(),
                    });
                }
            }
            frames.push(Frame { lost, services });
        }
        frames
    }
}
