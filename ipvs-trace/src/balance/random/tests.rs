//! The random-selection judgement, on windows of events drawn by a seeded generator the way
//! netfilter draws: each connection to an endpoint with its probability.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::balance::{
    analyse, check_status, render, Context, CrossCheck, Judgement, Mode, RuleShares, Rules,
    Selection, ServiceReport, SharesError, SharesSource, Verdict, Window, EXIT_BALANCED,
    EXIT_DEVIATES, EXIT_UNEXPLAINED,
};
use crate::clock::WallClock;
use crate::dataplane::Dataplane;
use crate::events::decode::RANDOM;
use crate::events::{model::EventKind, Event, Proto};
use crate::ipvs::{Family, Info, Tables};
use crate::kube::objects::{
    EndpointInfo, ServiceInfo, ServicePortInfo, ServiceType, SliceInfo, SlicePort,
};
use crate::kube::{Change, Index, Object};
use crate::netfilter::{NfEndpoint, NfService, Source};

const VIP: &str = "172.31.0.80:80";

/// Endpoint `i` (from 1).
fn endpoint(i: usize) -> SocketAddr {
    format!("10.245.9.{i}:8080").parse().unwrap()
}

/// SplitMix64 (Steele, Lea, Flood 2014): a seeded, reproducible stream of uniform numbers.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    #[expect(
        clippy::cast_precision_loss,
        reason = "53 bits, which f64 holds exactly"
    )]
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index drawn with the probabilities `shares` (summing to 1).
    fn pick(&mut self, shares: &[f64]) -> usize {
        let u = self.unit();
        let mut cumulative = 0.0;
        for (i, share) in shares.iter().enumerate() {
            cumulative += share;
            if u < cumulative {
                return i;
            }
        }
        shares.len() - 1
    }
}

/// A `new` event as the netfilter dataplanes deliver it: scheduler `random`, no IPVS entry,
/// forwarding method or counters.
fn random_event(at_ns: u64, port: u16, backend: SocketAddr) -> Event {
    Event {
        kind: EventKind::New,
        dataplane: Dataplane::Nftables,
        timestamp_ns: at_ns,
        cpu: 0,
        netns: Some(4_026_531_840),
        conn: None,
        proto: Proto::Tcp,
        client: SocketAddr::new("198.51.100.21".parse().unwrap(), port),
        vip: VIP.parse().unwrap(),
        backend: Some(backend),
        fwd: None,
        flags: 0,
        state: 0,
        scheduler: Some(RANDOM.into()),
        dest: None,
    }
}

/// A window open from 1 s to 1000 s, fed one connection per millisecond from 1 s on.
struct Feed {
    window: Window,
    at_ns: u64,
    port: u16,
}

impl Feed {
    fn new() -> Feed {
        let mut window = Window::default();
        window.open(1_000_000_000);
        window.close(1_000_000_000_000);
        Feed {
            window,
            at_ns: 1_000_000_000,
            port: 10_000,
        }
    }

    fn connect(&mut self, backend: SocketAddr) {
        self.at_ns += 1_000_000;
        self.port = self.port.wrapping_add(1);
        self.window
            .record(&random_event(self.at_ns, self.port, backend));
    }

    /// `n` connections, each to endpoint `i + 1` with probability `shares[i]`.
    fn draw(&mut self, rng: &mut SplitMix, n: usize, shares: &[f64]) {
        for _ in 0..n {
            self.connect(endpoint(rng.pick(shares) + 1));
        }
    }

    /// `counts[i]` connections to endpoint `i + 1`, in turn.
    fn exact(&mut self, counts: &[u64]) {
        for (i, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                self.connect(endpoint(i + 1));
            }
        }
    }
}

fn no_tables() -> Tables {
    Tables {
        info: Info {
            version: 0x01_02_01,
            conn_table_size: 4096,
        },
        services: Vec::new(),
    }
}

/// The one report on `window`, judged with `rules` and `index`.
fn judge(window: &Window, rules: Option<&Rules>, index: Option<&Index>) -> ServiceReport {
    let tables = no_tables();
    let selection = Selection::default();
    let ctx = Context {
        start: &tables,
        end: &tables,
        settled: Some(&tables),
        changes: &[],
        index,
        selection: &selection,
        tolerance: 0.05,
        events_lost: 0,
        rules,
        clock: WallClock::with_offset(1_800_000_000_000_000_000),
    };
    let mut reports = analyse(window, &ctx);
    assert_eq!(reports.len(), 1, "{reports:?}");
    reports.remove(0)
}

fn judgement(report: &ServiceReport) -> Judgement {
    report.random.expect("random mode figures").judgement
}

fn rules_of(start: &[usize], end: &[usize]) -> Rules {
    let key = (Proto::Tcp, VIP.parse().unwrap());
    let shares = |endpoints: &[usize]| {
        RuleShares::equal(Dataplane::Nftables, endpoints.iter().map(|&i| endpoint(i)))
    };
    Rules {
        start: BTreeMap::from([(key, shares(start))]),
        end: BTreeMap::from([(key, shares(end))]),
    }
}

/// An index that knows the Service at [`VIP`] and whose EndpointSlice lists `endpoints`
/// (`terminating` for those in `terminating`).
fn index_listing(endpoints: &[usize], terminating: &[usize]) -> Index {
    let vip: SocketAddr = VIP.parse().unwrap();
    let mut index = Index::new();
    index.apply(Change::Upsert(Object::Service(ServiceInfo {
        name: "shop/cart".into(),
        service_type: ServiceType::ClusterIp,
        cluster_ips: vec![vip.ip()],
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        ports: vec![ServicePortInfo {
            name: Some("http".into()),
            proto: Proto::Tcp,
            port: vip.port(),
            node_port: None,
        }],
    })));
    let endpoints = endpoints
        .iter()
        .map(|&i| EndpointInfo {
            addresses: vec![endpoint(i).ip()],
            pod: Some(format!("shop/cart-{i}").into()),
            node: Some(Arc::from("node-a")),
            serving: Some(true),
            terminating: Some(terminating.contains(&i)),
        })
        .collect();
    index.apply(Change::Upsert(Object::EndpointSlice(SliceInfo {
        name: "shop/cart-x7k2p".into(),
        ports: vec![SlicePort {
            name: Some("http".into()),
            proto: Proto::Tcp,
            port: 8080,
        }],
        endpoints,
    })));
    index
}

fn cause_names(report: &ServiceReport) -> Vec<(&'static str, Option<SocketAddr>)> {
    report.causes.iter().map(|c| (c.cause, c.backend)).collect()
}

#[test]
fn a_fair_selection_is_even() {
    let mut feed = Feed::new();
    feed.draw(&mut SplitMix(17), 300, &[1.0 / 3.0; 3]);
    let report = judge(&feed.window, None, None);
    let counts: Vec<u64> = report.backends.iter().map(|b| b.new).collect();
    assert_eq!(counts.iter().sum::<u64>(), 300);
    assert_eq!(report.mode, Mode::Random);
    assert_eq!(report.scheduler, "random");
    assert_eq!(
        judgement(&report),
        Judgement::Even,
        "{counts:?}: {report:?}"
    );
    assert_eq!(report.verdict, Verdict::Balanced);
    let p = report.p_value.unwrap();
    assert!(p >= 0.001, "{counts:?}: p = {p}");
    assert_eq!(report.degrees_of_freedom, Some(2));
    let random = report.random.unwrap();
    assert_eq!(
        (random.method, random.shares),
        ("chi-square", SharesSource::Equal)
    );
    for b in &report.backends {
        let (low, high) = (b.share_low.unwrap(), b.share_high.unwrap());
        assert!(low < 1.0 / 3.0 && 1.0 / 3.0 < high, "{b:?}");
        assert!(!b.beyond_tolerance, "{b:?}");
        assert_eq!((b.weight, b.kernel_conns), (None, None), "no IPVS figures");
        assert_eq!(b.cross_check, CrossCheck::Unavailable);
    }
    assert!(report.causes.is_empty(), "{:?}", report.causes);
    assert_eq!(check_status(&[report]), EXIT_BALANCED);
}

#[test]
fn a_skewed_selection_is_uneven() {
    let mut feed = Feed::new();
    feed.draw(&mut SplitMix(42), 3000, &[0.5, 0.3, 0.2]);
    let report = judge(&feed.window, None, None);
    assert_eq!(judgement(&report), Judgement::Uneven);
    assert!(report.p_value.unwrap() < 1e-12, "{:?}", report.p_value);
    // Off by 50 %, 10 % and 40 % of 1000, each beyond what chance explains.
    assert!(
        report.backends.iter().all(|b| b.beyond_tolerance),
        "{report:?}"
    );
    let first = &report.backends[0];
    let (low, high) = (first.share_low.unwrap(), first.share_high.unwrap());
    assert!(
        low < 0.5 && 0.5 < high,
        "[{low}, {high}] holds the true share"
    );
    // Nothing explains it: the selection itself is off.
    assert_eq!(report.verdict, Verdict::Unexplained);
    assert_eq!(check_status(&[report]), EXIT_UNEXPLAINED);
}

#[test]
fn the_rules_shares_are_what_is_expected() {
    let key = (Proto::Tcp, VIP.parse().unwrap());
    let weighted = RuleShares::new(
        Dataplane::Iptables,
        [(endpoint(1), 5.0), (endpoint(2), 3.0), (endpoint(3), 2.0)],
    )
    .unwrap();
    let rules = Rules {
        start: BTreeMap::from([(key, weighted.clone())]),
        end: BTreeMap::from([(key, weighted)]),
    };
    let mut feed = Feed::new();
    feed.draw(&mut SplitMix(42), 3000, &[0.5, 0.3, 0.2]);
    let report = judge(&feed.window, Some(&rules), None);
    assert_eq!(judgement(&report), Judgement::Even, "{report:?}");
    assert_eq!(report.random.unwrap().shares, SharesSource::Rules);
    assert_eq!(report.dataplane, Dataplane::Iptables);
    let shares: Vec<f64> = report
        .backends
        .iter()
        .map(|b| b.expected_share.unwrap())
        .collect();
    assert_eq!(shares, [0.5, 0.3, 0.2]);
    // The same counts against kube-proxy's equal shares: uneven.
    let report = judge(&feed.window, Some(&rules_of(&[1, 2, 3], &[1, 2, 3])), None);
    assert_eq!(judgement(&report), Judgement::Uneven);
}

#[test]
fn small_samples_give_no_verdict() {
    // 8/2/2 is far from 4 each, but 4 expected per endpoint is below the minimum.
    let mut feed = Feed::new();
    feed.exact(&[8, 2, 2]);
    let rules = rules_of(&[1, 2, 3], &[1, 2, 3]);
    let report = judge(&feed.window, Some(&rules), None);
    assert_eq!(judgement(&report), Judgement::TooFew);
    assert_eq!(report.verdict, Verdict::NotChecked);
    assert!(report.p_value.is_some(), "the figures are still given");
    assert_eq!(check_status(&[report]), EXIT_BALANCED);
    // An endpoint that never got a connection still expects its share.
    let mut feed = Feed::new();
    feed.exact(&[14, 15]);
    let report = judge(&feed.window, Some(&rules), None);
    assert_eq!(report.backends.len(), 3);
    assert_eq!(report.backends[2].expected, Some(29.0 / 3.0));
    assert_eq!(judgement(&report), Judgement::TooFew);
    // From 30 over three endpoints (10 expected each) on, there is a verdict.
    let mut feed = Feed::new();
    feed.exact(&[10, 11, 9]);
    assert_eq!(judgement(&judge(&feed.window, None, None)), Judgement::Even);
    // No connections at all.
    let report = judge(&Feed::new().window, Some(&rules), None);
    assert_eq!(
        (judgement(&report), report.p_value),
        (Judgement::TooFew, None)
    );
}

#[test]
fn a_fair_selection_at_the_minimum_rarely_fails_the_check() {
    // 1000 windows of 30 connections over three endpoints, the smallest judged: the exact
    // false-alarm rate of the chi-square test at 0.001 is 0.073 % there.
    let mut rng = SplitMix(2026);
    let rules = rules_of(&[1, 2, 3], &[1, 2, 3]);
    let mut uneven = 0;
    for _ in 0..1000 {
        let mut feed = Feed::new();
        feed.draw(&mut rng, 30, &[1.0 / 3.0; 3]);
        let report = judge(&feed.window, Some(&rules), None);
        assert_ne!(judgement(&report), Judgement::TooFew);
        if judgement(&report) == Judgement::Uneven {
            uneven += 1;
        }
    }
    assert!(uneven <= 5, "{uneven} of 1000 fair windows judged uneven");
}

/// 150 connections over three endpoints, then 150 over the first two: the third was removed.
fn third_removed_half_way() -> Feed {
    let mut feed = Feed::new();
    let mut rng = SplitMix(7);
    feed.draw(&mut rng, 150, &[1.0 / 3.0; 3]);
    feed.draw(&mut rng, 150, &[0.5, 0.5]);
    feed
}

#[test]
fn an_endpoint_removed_from_the_rules_is_named() {
    let feed = third_removed_half_way();
    let rules = rules_of(&[1, 2, 3], &[1, 2]);
    let report = judge(&feed.window, Some(&rules), None);
    assert_eq!(judgement(&report), Judgement::Uneven, "{report:?}");
    assert_eq!(report.verdict, Verdict::Deviates);
    assert_eq!(
        cause_names(&report),
        [("backend_removed", Some(endpoint(3)))]
    );
    let cause = &report.causes[0];
    let detail = cause.detail.as_deref().unwrap();
    assert!(
        detail.starts_with("not in the rules at the close; no connection in the last "),
        "{detail}"
    );
    // At its last connection: one of the first 150 (one a millisecond from 1 s on).
    let at = cause.at.as_deref().unwrap();
    assert!(
        ("2027-01-15T08:00:01.001", "2027-01-15T08:00:01.151") <= (at, at)
            && at < "2027-01-15T08:00:01.151",
        "{at}"
    );
    assert_eq!(check_status(&[report]), EXIT_DEVIATES);
}

#[test]
fn an_endpoint_kubernetes_no_longer_lists_is_named() {
    let feed = third_removed_half_way();
    // No rules: the third's silence and the index.
    let report = judge(&feed.window, None, Some(&index_listing(&[1, 2], &[])));
    assert_eq!(report.service.as_deref(), Some("shop/cart:http"));
    assert_eq!(
        cause_names(&report),
        [("backend_removed", Some(endpoint(3)))]
    );
    let detail = report.causes[0].detail.as_deref().unwrap();
    assert!(
        detail.starts_with("no EndpointSlice lists it; no connection in the last "),
        "{detail}"
    );
    assert!(detail.ends_with("if it were still chosen)"), "{detail}");
    assert_eq!(report.verdict, Verdict::Deviates);
    assert_eq!(
        report.backends[0].backend_pod.as_deref(),
        Some("shop/cart-1")
    );

    // Terminating: named as such, and as removed.
    let report = judge(&feed.window, None, Some(&index_listing(&[1, 2, 3], &[3])));
    assert_eq!(
        cause_names(&report),
        [
            ("terminating", Some(endpoint(3))),
            ("backend_removed", Some(endpoint(3)))
        ]
    );
    // Still listed and serving: nothing explains its silence.
    let report = judge(&feed.window, None, Some(&index_listing(&[1, 2, 3], &[])));
    assert!(report.causes.is_empty(), "{:?}", report.causes);
    assert_eq!(report.verdict, Verdict::Unexplained);
    // An index that does not know the Service cannot say.
    let mut unknown = index_listing(&[1, 2], &[]);
    unknown.apply(Change::Reset(crate::kube::Kind::Service, Vec::new()));
    let report = judge(&feed.window, None, Some(&unknown));
    assert!(report.causes.is_empty(), "{:?}", report.causes);
}

#[test]
fn an_endpoint_silent_by_chance_is_not_named() {
    // Endpoint 3's last connection is 10 before the end: (2/3)^10 = 1.7 % is chance.
    let mut feed = Feed::new();
    feed.draw(&mut SplitMix(3), 290, &[1.0 / 3.0; 3]);
    feed.connect(endpoint(3));
    feed.exact(&[5, 5]);
    let report = judge(&feed.window, None, Some(&index_listing(&[1, 2], &[])));
    assert!(report.causes.is_empty(), "{:?}", report.causes);
}

#[test]
fn an_endpoint_added_to_the_rules_is_named() {
    let mut feed = Feed::new();
    let mut rng = SplitMix(11);
    feed.draw(&mut rng, 150, &[0.5, 0.5]);
    feed.draw(&mut rng, 150, &[1.0 / 3.0; 3]);
    let report = judge(&feed.window, Some(&rules_of(&[1, 2], &[1, 2, 3])), None);
    // The start's rules gave it nothing, and it got connections: not chance.
    assert_eq!(report.p_value, Some(0.0));
    assert_eq!(judgement(&report), Judgement::Uneven);
    assert!(report.backends[2].beyond_tolerance);
    assert_eq!(cause_names(&report), [("backend_added", Some(endpoint(3)))]);
    assert_eq!(report.verdict, Verdict::Deviates);
    // Added and removed again between the two reads: in neither, yet chosen.
    let report = judge(&feed.window, Some(&rules_of(&[1, 2], &[1, 2])), None);
    assert_eq!(cause_names(&report), [("backend_added", Some(endpoint(3)))]);
    assert_eq!(
        report.causes[0].detail.as_deref(),
        Some("in neither read of the rules: added and removed during the window")
    );
    assert_eq!(report.verdict, Verdict::Deviates);
}

#[test]
fn services_in_the_rules_only_and_filters() {
    let key = (Proto::Tcp, VIP.parse().unwrap());
    let rules = Rules {
        start: BTreeMap::new(),
        end: BTreeMap::from([(key, RuleShares::equal(Dataplane::Nftables, [endpoint(1)]))]),
    };
    let report = judge(&Window::default(), Some(&rules), None);
    assert_eq!(cause_names(&report), [("service_added", None)]);
    assert_eq!(report.verdict, Verdict::NotChecked);
    assert_eq!(report.dataplane, Dataplane::Nftables);

    let tables = no_tables();
    let selection = Selection {
        vip: Some("172.31.0.81".parse().unwrap()),
        ..Selection::default()
    };
    let ctx = Context {
        start: &tables,
        end: &tables,
        settled: None,
        changes: &[],
        index: None,
        selection: &selection,
        tolerance: 0.05,
        events_lost: 0,
        rules: Some(&rules),
        clock: WallClock::with_offset(0),
    };
    assert!(analyse(&third_removed_half_way().window, &ctx).is_empty());
}

#[test]
fn rule_shares_are_checked_and_scaled() {
    let shares = RuleShares::new(
        Dataplane::Nftables,
        [(endpoint(1), 1.0), (endpoint(2), 2.0), (endpoint(1), 1.0)],
    )
    .unwrap();
    assert_eq!(
        (shares.share(endpoint(1)), shares.share(endpoint(2))),
        (0.5, 0.5),
        "listed twice: two slots"
    );
    assert_eq!(Some(shares.share(endpoint(3))), Some(0.0));
    for (share, error) in [
        (
            -0.1,
            SharesError::NotAShare {
                endpoint: endpoint(1),
                share: -0.1,
            },
        ),
        (0.0, SharesError::NoneChosen),
    ] {
        assert_eq!(
            RuleShares::new(Dataplane::Iptables, [(endpoint(1), share)]),
            Err(error)
        );
    }
    let nan = RuleShares::new(Dataplane::Iptables, [(endpoint(1), f64::NAN)]).unwrap_err();
    assert!(nan.to_string().contains("is not a probability"), "{nan}");
    let none = RuleShares::new(Dataplane::Iptables, Vec::new()).unwrap();
    assert_eq!(Some(none.share(endpoint(1))), Some(0.0));
}

#[test]
fn the_json_and_the_table_say_it_is_a_statistical_judgement() {
    let mut feed = Feed::new();
    feed.draw(&mut SplitMix(17), 300, &[1.0 / 3.0; 3]);
    let rules = rules_of(&[1, 2, 3], &[1, 2, 3]);
    let removed = third_removed_half_way();
    let reports = vec![
        judge(&feed.window, Some(&rules), None),
        judge(&removed.window, Some(&rules_of(&[1, 2, 3], &[1, 2])), None),
    ];
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
    assert_eq!(service["dataplane"], "nftables");
    assert_eq!(service["scheduler"], "random");
    assert_eq!(service["mode"], "random");
    assert_eq!(service["verdict"], "balanced");
    assert_eq!(service["random"]["method"], "chi-square");
    assert_eq!(service["random"]["significance"], 0.001);
    assert_eq!(service["random"]["min_expected"], 10.0);
    assert_eq!(service["random"]["shares"], "rules");
    assert_eq!(service["random"]["judgement"], "even");
    assert!(service["p_value"].as_f64().unwrap() >= 0.001);
    let backend = &service["backends"][0];
    assert_eq!(backend["expected_share"], 1.0 / 3.0);
    for field in ["share", "share_low", "share_high"] {
        assert!(backend[field].is_f64(), "{field}: {backend}");
    }
    assert_eq!(backend["weight"], serde_json::Value::Null);
    assert_eq!(backend["cross_check"], "unavailable");

    assert_eq!(value["services"][1]["random"]["judgement"], "uneven");
    assert_eq!(value["check_status"], 3);

    let table = render::table(&doc);
    for needle in [
        "Random selection (kube-proxy's nftables and iptables modes)",
        "TCP 172.31.0.80:80 random (nftables)  even\n",
        "random selection, judged statistically against the rules' shares (not rr's arithmetic):",
        "chi-square 3.98 (df 2)  p=0.1367; even: p >= 0.001\n",
        "Share [99.9 %]",
        "    10.245.9.1:8080  115  100.0     38.3 % [29.7, 47.8]  15.0 %  -\n",
        "TCP 172.31.0.80:80 random (nftables)  UNEVEN (causes below)\n",
        "chi-square 39.42 (df 2)  p=2.8e-9; uneven: p < 0.001 and an endpoint off by 51.0 % \
         (beyond the tolerance 5.0 %)\n",
        "    10.245.9.3:8080  49   100.0     16.3 % [10.5, 24.5]  51.0 % *  -\n",
        "    backend_removed 10.245.9.3:8080 (not in the rules at the close; no connection in the \
         last 150 of the service) at 2027-01-15T08:00:01.150000000Z\n",
    ] {
        assert!(table.contains(needle), "{needle:?} not in\n{table}");
    }
}

#[test]
fn ipvs_and_random_services_side_by_side() {
    use crate::ipvs::{Dest, Netmask, Service, ServiceFlags, Stats};
    let ipvs_vip: SocketAddr = "172.31.0.70:80".parse().unwrap();
    let mut tables = no_tables();
    tables.services.push(Service {
        family: Family::V4,
        proto: Some(Proto::Tcp),
        addr: Some(ipvs_vip),
        fwmark: None,
        scheduler: "rr".into(),
        persistence_engine: None,
        flags: ServiceFlags(ServiceFlags::HASHED),
        timeout: 60,
        netmask: Netmask::V4(std::net::Ipv4Addr::BROADCAST),
        stats: Stats::default(),
        stats_64bit: true,
        dests: vec![Dest::test_masq("10.245.7.1:8080", 1)],
    });
    let mut feed = third_removed_half_way();
    // A random event for the IPVS address is judged as IPVS, not twice.
    let mut stray = random_event(2_000_000_000, 1, endpoint(1));
    stray.vip = ipvs_vip;
    feed.window.record(&stray);
    let index = index_listing(&[1, 2], &[]);
    let analysed = |selection: &Selection| {
        let ctx = Context {
            start: &tables,
            end: &tables,
            settled: None,
            changes: &[],
            index: Some(&index),
            selection,
            tolerance: 0.05,
            events_lost: 0,
            rules: None,
            clock: WallClock::with_offset(0),
        };
        analyse(&feed.window, &ctx)
            .iter()
            .map(|r| (r.vip, r.mode, r.dataplane))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        analysed(&Selection::default()),
        [
            (ipvs_vip, Mode::Share, Dataplane::Ipvs),
            (VIP.parse().unwrap(), Mode::Random, Dataplane::Nftables)
        ]
    );
    // Filtered out as IPVS (no real server of it is a pod of the namespace), it does not come
    // back as a random selection through the stray event's pod.
    let shop = Selection {
        namespace: Some("shop".into()),
        ..Selection::default()
    };
    assert_eq!(
        analysed(&shop),
        [(VIP.parse().unwrap(), Mode::Random, Dataplane::Nftables)]
    );
}

fn nf_service(source: Source, vip: &str, node_port: bool, endpoints: &[(usize, f64)]) -> NfService {
    NfService {
        source,
        family: Family::V4,
        proto: Proto::Tcp,
        vip: vip.parse().unwrap(),
        node_port,
        name: Some("shop/cart:http".into()),
        chain: "service-ULMVA6XW-shop/cart/tcp/http".into(),
        endpoints: endpoints
            .iter()
            .map(|&(i, probability)| NfEndpoint {
                addr: endpoint(i),
                probability,
                chain: format!("endpoint-{i}"),
            })
            .collect(),
    }
}

#[test]
fn netfilter_rules_become_shares() {
    let third = 1.0 / 3.0;
    let services = [
        nf_service(
            Source::NftKubeProxy,
            VIP,
            false,
            &[(1, third), (2, third), (3, third)],
        ),
        // The same address in iptables mode on a half-migrated node: nftables' claim stands.
        nf_service(Source::IptablesNft, VIP, false, &[(1, 1.0)]),
        nf_service(
            Source::IptablesLegacy,
            "0.0.0.0:30080",
            true,
            &[(1, 0.5), (2, 0.5)],
        ),
        // Not a selection: left out, with a warning.
        nf_service(
            Source::NftKubeProxy,
            "172.31.0.99:80",
            false,
            &[(1, f64::NAN)],
        ),
    ];
    let read = Rules::shares_of(&services);
    let vip = (Proto::Tcp, VIP.parse().unwrap());
    assert_eq!(read.len(), 2, "{read:?}");
    assert_eq!(read[&vip].dataplane(), Dataplane::Nftables);
    assert_eq!(Some(read[&vip].share(endpoint(3))), Some(third));
    let rules = Rules {
        start: read.clone(),
        end: read,
    };
    // Connections to the node port on one of the node's addresses take the any-address rules;
    // the any-address entry itself is no service of its own.
    let mut window = Window::default();
    window.open(0);
    window.close(u64::MAX);
    for i in 0..40 {
        let mut event = random_event(10, 20_000 + i, endpoint(1 + usize::from(i % 2)));
        event.vip = "10.0.0.5:30080".parse().unwrap();
        window.record(&event);
    }
    let tables = no_tables();
    let selection = Selection::default();
    let ctx = Context {
        start: &tables,
        end: &tables,
        settled: None,
        changes: &[],
        index: None,
        selection: &selection,
        tolerance: 0.05,
        events_lost: 0,
        rules: Some(&rules),
        clock: WallClock::with_offset(0),
    };
    let reports = analyse(&window, &ctx);
    let vips: Vec<String> = reports.iter().map(|r| r.vip.to_string()).collect();
    assert_eq!(vips, ["10.0.0.5:30080", VIP]);
    let node_port = &reports[0];
    assert_eq!(node_port.dataplane, Dataplane::Iptables);
    assert_eq!(
        node_port.random.map(|r| (r.shares, r.judgement)),
        Some((SharesSource::Rules, Judgement::Even))
    );
    assert!(node_port.causes.is_empty(), "{:?}", node_port.causes);
}
