use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use super::*;
use crate::clock::WallClock;
use crate::events::{model::EventKind, Event, FwdMethod, Proto};
use crate::ipvs::live::{ChangeKind, ServiceKey};
use crate::ipvs::{Dest, Family, Info, Netmask, ServiceFlags, Stats};

const VIP: &str = "172.31.0.70:80";

fn dest(addr: &str, weight: u32, conns: u64) -> Dest {
    Dest {
        stats: Stats {
            conns,
            ..Stats::default()
        },
        ..Dest::test_masq(addr, weight)
    }
}

fn tables(scheduler: &str, flags: u32, dests: Vec<Dest>) -> Tables {
    Tables {
        info: Info {
            version: 0x01_02_01,
            conn_table_size: 4096,
        },
        services: vec![Service {
            family: Family::V4,
            proto: Some(Proto::Tcp),
            addr: Some(VIP.parse().unwrap()),
            fwmark: None,
            scheduler: scheduler.into(),
            persistence_engine: None,
            flags: ServiceFlags(ServiceFlags::HASHED | flags),
            timeout: 60,
            netmask: Netmask::V4(Ipv4Addr::BROADCAST),
            stats: Stats::default(),
            stats_64bit: true,
            dests,
        }],
    }
}

fn event(kind: EventKind, at_ns: u64, client: &str, backend: &str) -> Event {
    Event {
        kind,
        dataplane: crate::dataplane::Dataplane::Ipvs,
        timestamp_ns: at_ns,
        cpu: 0,
        netns: Some(4_026_531_840),
        conn: Some(0xffff_8f3a_0000_0000),
        proto: Proto::Tcp,
        client: client.parse().unwrap(),
        vip: VIP.parse().unwrap(),
        backend: Some(backend.parse().unwrap()),
        fwd: Some(FwdMethod::Masq),
        flags: 0,
        state: 0,
        scheduler: Some("rr".into()),
        dest: None,
    }
}

/// A window open from 1000 to 2000 ns with `counts[i]` new connections (from distinct client
/// ports of one client) to backend `10.245.7.{i+1}:8080`.
fn window_with(counts: &[u64]) -> Window {
    let mut window = Window::default();
    window.open(1000);
    window.close(2000);
    let mut port = 10_000;
    for (i, n) in counts.iter().enumerate() {
        for _ in 0..*n {
            port += 1;
            window.record(&event(
                EventKind::New,
                1500,
                &format!("198.51.100.11:{port}"),
                &format!("10.245.7.{}:8080", i + 1),
            ));
        }
    }
    window
}

struct Case {
    start: Tables,
    end: Tables,
    settled: Option<Tables>,
    changes: Vec<TableChange>,
    lost: u64,
}

impl Case {
    fn steady(tables: Tables) -> Case {
        Case {
            start: tables.clone(),
            end: tables.clone(),
            settled: Some(tables),
            changes: Vec::new(),
            lost: 0,
        }
    }

    fn report(&self, window: &Window) -> ServiceReport {
        let selection = Selection::default();
        let ctx = Context {
            start: &self.start,
            end: &self.end,
            settled: self.settled.as_ref(),
            changes: &self.changes,
            index: None,
            selection: &selection,
            tolerance: 0.05,
            events_lost: self.lost,
            rules: None,
            clock: WallClock::with_offset(0),
        };
        let mut reports = analyse(window, &ctx);
        assert_eq!(reports.len(), 1, "{reports:?}");
        reports.remove(0)
    }
}

fn change(kind: ChangeKind) -> TableChange {
    TableChange {
        seen: SystemTime::UNIX_EPOCH + Duration::from_hours(500_000),
        service: ServiceKey {
            family: Family::V4,
            proto: Some(Proto::Tcp),
            addr: Some(VIP.parse().unwrap()),
            fwmark: None,
        },
        kind,
    }
}

fn cause_names(report: &ServiceReport) -> Vec<(&'static str, Option<String>)> {
    report
        .causes
        .iter()
        .map(|c| (c.cause, c.backend.map(|b| b.to_string())))
        .collect()
}

#[test]
fn phases_follow_kernel_timestamps() {
    let mut window = Window::default();
    assert_eq!(window.phase(5), Phase::Lead, "not open yet");
    window.open(1000);
    assert_eq!(window.phase(999), Phase::Lead);
    assert_eq!(window.phase(1000), Phase::Window);
    assert_eq!(window.phase(u64::MAX), Phase::Window, "not closed yet");
    window.close(2000);
    assert_eq!(window.phase(2000), Phase::Window);
    assert_eq!(window.phase(2001), Phase::Late);
}

#[test]
fn exact_rr_is_balanced_and_equals_the_kernel() {
    // Four backends, one of weight 0 that got nothing and is still listed.
    let start = tables(
        "rr",
        0,
        vec![
            dest("10.245.7.1:8080", 1, 7),
            dest("10.245.7.2:8080", 1, 7),
            dest("10.245.7.3:8080", 1, 7),
            dest("10.245.7.4:8080", 0, 0),
        ],
    );
    let mut case = Case::steady(start);
    case.settled = Some(tables(
        "rr",
        0,
        vec![
            dest("10.245.7.1:8080", 1, 57),
            dest("10.245.7.2:8080", 1, 57),
            dest("10.245.7.3:8080", 1, 57),
            dest("10.245.7.4:8080", 0, 0),
        ],
    ));
    let report = case.report(&window_with(&[50, 50, 50]));
    assert_eq!(report.verdict, Verdict::Balanced, "{report:?}");
    assert_eq!(report.mode, Mode::Share);
    assert_eq!(report.p_value, Some(1.0));
    assert_eq!(report.max_relative_error, Some(0.0));
    assert_eq!(report.backends.len(), 4);
    let idle = &report.backends[3];
    assert_eq!((idle.received, idle.expected), (0, Some(0.0)));
    assert!(report.causes.is_empty(), "{:?}", report.causes);
    assert!(report
        .backends
        .iter()
        .all(|b| b.cross_check == CrossCheck::Exact));
    assert_eq!(report.backends[0].kernel_conns, Some(50));
    assert_eq!(check_status(&[report]), EXIT_BALANCED);
}

#[test]
fn weight_zero_mid_window_is_named_with_its_time() {
    let weights = |third| {
        tables(
            "rr",
            0,
            vec![
                dest("10.245.7.1:8080", 1, 0),
                dest("10.245.7.2:8080", 1, 0),
                dest("10.245.7.3:8080", third, 0),
            ],
        )
    };
    let mut case = Case::steady(weights(1));
    case.end = weights(0);
    case.settled = None;
    case.changes = vec![change(ChangeKind::WeightChanged {
        addr: "10.245.7.3:8080".parse().unwrap(),
        from: 1,
        to: 0,
    })];
    let report = case.report(&window_with(&[25, 25, 10]));
    assert_eq!(report.verdict, Verdict::Deviates);
    assert_eq!(
        cause_names(&report),
        [("weight_zero", Some("10.245.7.3:8080".into()))]
    );
    let named = &report.causes[0];
    assert_eq!(named.detail.as_deref(), Some("1 -> 0"));
    assert_eq!(named.at.as_deref(), Some("2027-01-15T08:00:00.000000000Z"));
    assert_eq!(report.backends[2].weight_end, Some(0));
    // Without a settled read there is nothing to cross-check against.
    assert_eq!(report.cross_check, CrossCheck::Unavailable);
    assert_eq!(check_status(&[report]), EXIT_DEVIATES);
}

#[test]
fn backend_added_mid_window_expected_nothing_and_is_counted_from_zero() {
    let two = vec![dest("10.245.7.1:8080", 1, 4), dest("10.245.7.2:8080", 1, 4)];
    let mut three = two.clone();
    three.push(dest("10.245.7.3:8080", 1, 0));
    let mut case = Case::steady(tables("rr", 0, two));
    case.end = tables("rr", 0, three);
    case.settled = Some(tables(
        "rr",
        0,
        vec![
            dest("10.245.7.1:8080", 1, 29),
            dest("10.245.7.2:8080", 1, 29),
            dest("10.245.7.3:8080", 1, 10),
        ],
    ));
    case.changes = vec![change(ChangeKind::DestAdded {
        addr: "10.245.7.3:8080".parse().unwrap(),
        weight: 1,
    })];
    let report = case.report(&window_with(&[25, 25, 10]));
    assert_eq!(report.verdict, Verdict::Deviates);
    assert_eq!(
        cause_names(&report),
        [("backend_added", Some("10.245.7.3:8080".into()))]
    );
    let added = &report.backends[2];
    assert_eq!((added.weight, added.weight_end), (None, Some(1)));
    assert_eq!(added.expected, Some(0.0));
    assert_eq!(added.relative_error, None);
    assert!(added.beyond_tolerance);
    assert_eq!(
        report.p_value,
        Some(0.0),
        "a backend without share got some"
    );
    assert_eq!(added.kernel_conns, Some(10));
    assert_eq!(report.cross_check, CrossCheck::Exact);
}

#[test]
fn reused_entries_skew_what_backends_receive() {
    let mut case = Case::steady(tables(
        "rr",
        0,
        vec![dest("10.245.7.1:8080", 1, 0), dest("10.245.7.2:8080", 1, 0)],
    ));
    case.settled = Some(tables(
        "rr",
        0,
        vec![
            dest("10.245.7.1:8080", 1, 10),
            dest("10.245.7.2:8080", 1, 10),
        ],
    ));
    let mut window = window_with(&[10, 10]);
    for _ in 0..9 {
        window.record(&event(
            EventKind::Reused,
            1600,
            "198.51.100.11:40000",
            "10.245.7.1:8080",
        ));
    }
    let report = case.report(&window);
    assert_eq!(report.connections.reused, 9);
    assert_eq!(report.backends[0].received, 19);
    assert_eq!(report.verdict, Verdict::Deviates);
    assert_eq!(
        cause_names(&report),
        [("reused", Some("10.245.7.1:8080".into()))]
    );
    assert_eq!(report.causes[0].count, Some(9));
    // The kernel does not count reused entries: the cross-check is on new ones only.
    assert_eq!(report.cross_check, CrossCheck::Exact);
}

#[test]
fn a_deviation_without_cause_is_unexplained_and_counts_off_the_kernel_are_flagged() {
    let mut case = Case::steady(tables(
        "rr",
        0,
        vec![dest("10.245.7.1:8080", 1, 0), dest("10.245.7.2:8080", 1, 0)],
    ));
    case.settled = Some(tables(
        "rr",
        0,
        vec![
            dest("10.245.7.1:8080", 1, 31),
            dest("10.245.7.2:8080", 1, 12),
        ],
    ));
    let mut window = window_with(&[30, 10]);
    // One connection just before the window opened: the kernel's baseline may have missed it.
    window.record(&event(
        EventKind::New,
        900,
        "198.51.100.11:9999",
        "10.245.7.1:8080",
    ));
    let report = case.report(&window);
    assert_eq!(report.verdict, Verdict::Unexplained);
    let [first, second] = &report.backends[..] else {
        panic!("{:?}", report.backends)
    };
    assert_eq!(
        (first.kernel_conns, first.edge_new, first.cross_check),
        (Some(31), 1, CrossCheck::WithinEdges)
    );
    assert_eq!(second.cross_check, CrossCheck::Mismatch);
    assert_eq!(report.cross_check, CrossCheck::Mismatch);
    assert_eq!(
        check_status(std::slice::from_ref(&report)),
        EXIT_UNEXPLAINED
    );
    // Lost events are a cause: the counts cannot be trusted to show a scheduler problem.
    case.lost = 3;
    let report = case.report(&window);
    assert_eq!(report.verdict, Verdict::Deviates);
    assert_eq!(cause_names(&report), [("events_lost", None)]);
    assert_eq!(check_status(&[report]), EXIT_COUNTS_DIFFER);
}

#[test]
fn wrr_shares_follow_weights() {
    let case = Case::steady(tables(
        "wrr",
        0,
        vec![
            dest("10.245.7.1:8080", 3, 0),
            dest("10.245.7.2:8080", 2, 0),
            dest("10.245.7.3:8080", 1, 0),
        ],
    ));
    let report = case.report(&window_with(&[150, 100, 50]));
    assert_eq!(report.verdict, Verdict::Balanced);
    let shares: Vec<_> = report.backends.iter().map(|b| b.expected).collect();
    assert_eq!(shares, [Some(150.0), Some(100.0), Some(50.0)]);
    let report = case.report(&window_with(&[100, 100, 100]));
    assert_eq!(report.verdict, Verdict::Unexplained);
}

#[test]
fn persistent_services_are_judged_by_stickiness() {
    let case = Case::steady(tables(
        "rr",
        ServiceFlags::PERSISTENT,
        vec![dest("10.245.7.1:8080", 1, 0), dest("10.245.7.2:8080", 1, 0)],
    ));
    let mut window = window_with(&[0, 0]);
    for (client, backend) in [
        ("198.51.100.11:0", "10.245.7.1:8080"),
        ("198.51.100.12:0", "10.245.7.2:8080"),
    ] {
        window.record(&event(EventKind::Template, 1100, client, backend));
    }
    for port in 1..=5 {
        window.record(&event(
            EventKind::New,
            1200,
            &format!("198.51.100.11:{port}"),
            "10.245.7.1:8080",
        ));
        window.record(&event(
            EventKind::New,
            1200,
            &format!("198.51.100.12:{port}"),
            "10.245.7.2:8080",
        ));
    }
    let report = case.report(&window);
    assert_eq!(report.mode, Mode::Sticky);
    assert_eq!(
        report.stickiness,
        Some(Stickiness {
            clients: 2,
            moved: 0
        })
    );
    assert_eq!(report.verdict, Verdict::Balanced);
    assert_eq!(cause_names(&report), [("persistence", None)]);
    assert_eq!(report.causes[0].count, Some(2));
    // One client moving is half of them.
    window.record(&event(
        EventKind::New,
        1300,
        "198.51.100.12:77",
        "10.245.7.1:8080",
    ));
    assert_eq!(case.report(&window).verdict, Verdict::Deviates);
}

#[test]
fn load_based_schedulers_report_the_spread_only() {
    let mut busy = dest("10.245.7.1:8080", 1, 0);
    busy.active_conns = 9;
    let mut idle = dest("10.245.7.2:8080", 1, 0);
    idle.active_conns = 2;
    let case = Case::steady(tables("lc", 0, vec![busy, idle]));
    let report = case.report(&window_with(&[30, 1]));
    assert_eq!(report.mode, Mode::Spread);
    assert_eq!(report.verdict, Verdict::NotChecked);
    assert_eq!(
        report.spread,
        Some(Spread {
            active_min: 2,
            active_max: 9
        })
    );
    assert_eq!(report.p_value, None);
}

#[test]
fn no_dest_and_filters() {
    let case = Case::steady(tables("rr", 0, vec![dest("10.245.7.1:8080", 1, 0)]));
    let mut window = window_with(&[3]);
    let mut refused = event(
        EventKind::NoDest,
        1500,
        "198.51.100.11:5",
        "10.245.7.1:8080",
    );
    refused.backend = None;
    window.record(&refused);
    let report = case.report(&window);
    assert_eq!(report.connections.no_dest, 1);
    assert_eq!(cause_names(&report), [("no_dest", None)]);

    let selection = Selection {
        vip: Some("172.31.0.71".parse().unwrap()),
        ..Selection::default()
    };
    let ctx = Context {
        start: &case.start,
        end: &case.end,
        settled: None,
        changes: &[],
        index: None,
        selection: &selection,
        tolerance: 0.05,
        events_lost: 0,
        rules: None,
        clock: WallClock::with_offset(0),
    };
    assert!(analyse(&window, &ctx).is_empty());
}

#[test]
fn the_json_document_has_the_documented_fields() {
    let mut case = Case::steady(tables("rr", 0, vec![dest("10.245.7.1:8080", 1, 0)]));
    case.settled = None;
    let reports = vec![case.report(&window_with(&[2]))];
    let doc = render::Document {
        window: render::WindowInfo {
            start: "a".into(),
            end: "b".into(),
            seconds: 1.0,
        },
        tolerance: 0.05,
        settled: true,
        events_lost: 0,
        table_changes_dropped: 0,
        check_status: check_status(&reports),
        services: &reports,
    };
    let value = serde_json::to_value(&doc).unwrap();
    let service = &value["services"][0];
    assert_eq!(service["proto"], "TCP");
    assert_eq!(service["vip"], VIP);
    assert_eq!(service["verdict"], "balanced");
    assert_eq!(service["mode"], "share");
    assert_eq!(service["backends"][0]["backend"], "10.245.7.1:8080");
    assert_eq!(service["backends"][0]["cross_check"], "unavailable");
    assert_eq!(value["check_status"], 0);
    let table = render::table(&doc);
    assert!(
        table.contains("TCP 172.31.0.70:80 rr  balanced\n"),
        "{table}"
    );
    assert!(
        table.contains("    10.245.7.1:8080  1       2  "),
        "{table}"
    );
}
