use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::*;
use crate::ipvs::Tables;
use crate::kube::Index;
use crate::output::tests::{sample_events, seed_index};

/// The sample lines of `text` (no `#` lines), sorted.
fn samples(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    lines.sort_unstable();
    lines
}

fn record_samples(recorder: &mut Recorder, index: Option<&Index>, times: usize) {
    for _ in 0..times {
        for event in sample_events() {
            let names = index
                .map(|index| Names::resolve(index, &event))
                .unwrap_or_default();
            recorder.record(&event, &names);
        }
    }
}

#[test]
fn connections_by_kind_service_scheduler_and_backend() {
    let (metrics, mut recorder) = Metrics::new(true, false);
    record_samples(&mut recorder, None, 3);
    let text = metrics.encode();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics ends with EOF:\n{text}"
    );
    let connections: Vec<&str> = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("ipvs_trace_connections_total"))
        .collect();
    // The fifth sample is a `new` whose scheduler the kernel could not read: it counts under
    // an empty scheduler, not under a made-up one.
    assert_eq!(
        connections,
        [
            "ipvs_trace_connections_total{event=\"new\",dataplane=\"ipvs\",proto=\"TCP\",service=\"172.31.42.227:80\",scheduler=\"\",backend=\"10.245.112.32:8080\"} 3",
            "ipvs_trace_connections_total{event=\"new\",dataplane=\"ipvs\",proto=\"TCP\",service=\"172.31.42.227:80\",scheduler=\"rr\",backend=\"10.245.112.32:8080\"} 3",
            "ipvs_trace_connections_total{event=\"no_dest\",dataplane=\"ipvs\",proto=\"TCP\",service=\"172.31.42.227:443\",scheduler=\"rr\",backend=\"\"} 3",
            "ipvs_trace_connections_total{event=\"reused\",dataplane=\"ipvs\",proto=\"UDP\",service=\"[fd00:42::e3]:53\",scheduler=\"rr\",backend=\"[fd00:245::20]:53\"} 3",
            "ipvs_trace_connections_total{event=\"template\",dataplane=\"ipvs\",proto=\"TCP\",service=\"172.31.42.227:80\",scheduler=\"wrr\",backend=\"10.245.112.32:8080\"} 3",
        ],
        "{text}"
    );
    // Without a Kubernetes source nothing counts as unresolved: there is nothing to resolve.
    assert!(
        !text.contains("ipvs_trace_unresolved_names_total{"),
        "{text}"
    );
    // The hot path found the counters it had made: one cache entry per key.
    assert_eq!(recorder.cache.len(), 5);
}

#[test]
fn names_replace_addresses_and_unresolved_ones_are_counted() {
    let index = seed_index();
    let (metrics, mut recorder) = Metrics::new(true, true);
    record_samples(&mut recorder, Some(&index), 2);
    let text = metrics.encode();
    let lines = samples(&text);
    assert!(
        lines.contains(
            &"ipvs_trace_connections_total{event=\"new\",dataplane=\"ipvs\",proto=\"TCP\",service=\"ratel/vpaas-demo-prod:http\",scheduler=\"rr\",backend=\"ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm\"} 2"
        ),
        "{text}"
    );
    // The IPv6 reused entry and the no_dest on port 443 are not the Service's: their VIPs
    // stay addresses and count as unresolved services (2 events x 2 rounds).
    assert!(
        lines.contains(&"ipvs_trace_unresolved_names_total{address=\"service\"} 4"),
        "{text}"
    );
    assert!(
        lines.contains(&"ipvs_trace_connections_total{event=\"no_dest\",dataplane=\"ipvs\",proto=\"TCP\",service=\"172.31.42.227:443\",scheduler=\"rr\",backend=\"\"} 2"),
        "{text}"
    );
}

#[test]
fn no_backend_label_merges_backends() {
    let (metrics, mut recorder) = Metrics::new(false, false);
    let first = sample_events().remove(0);
    let mut second = first.clone();
    second.backend = Some("10.245.112.47:8080".parse().unwrap());
    for event in [&first, &second, &first] {
        recorder.record(event, &Names::NONE);
    }
    let text = metrics.encode();
    assert!(!text.contains("backend="), "{text}");
    assert_eq!(
        samples(&text)
            .into_iter()
            .filter(|l| l.starts_with("ipvs_trace_connections_total"))
            .collect::<Vec<_>>(),
        ["ipvs_trace_connections_total{event=\"new\",dataplane=\"ipvs\",proto=\"TCP\",service=\"172.31.42.227:80\",scheduler=\"rr\"} 3"],
        "{text}"
    );
    // Nor does the hot path keep a key per backend.
    assert_eq!(recorder.cache.len(), 1);
}

#[test]
fn losses_follow_the_kernel_totals() {
    let (metrics, mut recorder) = Metrics::new(true, false);
    let value = |name: &str| {
        let text = metrics.encode();
        samples(&text)
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    recorder.tick(&Losses {
        ring_full: Some(5),
        unreadable: None,
        malformed: 1,
        filtered: None,
        read: 0,
    });
    recorder.tick(&Losses {
        ring_full: Some(12),
        unreadable: Some(2),
        malformed: 1,
        filtered: Some(40),
        read: 100,
    });
    // An unreadable map (None) keeps the last value rather than resetting it.
    recorder.tick(&Losses {
        ring_full: None,
        unreadable: Some(2),
        malformed: 3,
        filtered: None,
        read: 103,
    });
    assert_eq!(value("ipvs_trace_events_lost_total"), "12");
    assert_eq!(value("ipvs_trace_events_filtered_total"), "40");
    assert_eq!(value("ipvs_trace_records_read_total"), "103");
    assert_eq!(value("ipvs_trace_events_unreadable_total"), "2");
    assert_eq!(value("ipvs_trace_records_malformed_total"), "3");
    assert_eq!(value("ipvs_trace_ready"), "0");
    metrics.set_ready();
    assert_eq!(value("ipvs_trace_ready"), "1");
}

#[test]
fn readiness_follows_the_module_and_reattachments_are_counted() {
    let (metrics, _recorder) = Metrics::new(true, false);
    let value = |name: &str| {
        let text = metrics.encode();
        samples(&text)
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    let state = || {
        (
            value("ipvs_trace_ready"),
            value("ipvs_trace_probe_reattachments_total"),
        )
    };
    assert_eq!(state(), ("0".into(), "0".into()), "loading");
    metrics.set_ready();
    assert_eq!(state(), ("1".into(), "0".into()), "attached");
    metrics.set_unready();
    assert_eq!(state(), ("0".into(), "0".into()), "ip_vs unloaded");
    metrics.set_reattached();
    assert_eq!(
        state(),
        ("1".into(), "1".into()),
        "loaded again, attached again"
    );
    assert!(metrics.ready());
}

#[test]
fn metrics_addr_forms() {
    assert_eq!(
        parse_metrics_addr("9808"),
        Ok("127.0.0.1:9808".parse().unwrap())
    );
    assert_eq!(
        parse_metrics_addr("0.0.0.0:9100"),
        Ok("0.0.0.0:9100".parse().unwrap())
    );
    assert_eq!(
        parse_metrics_addr("[::]:9808"),
        Ok("[::]:9808".parse().unwrap())
    );
    for bad in ["", "localhost:9808", "70000", "10.0.0.1", ":9808"] {
        let err = parse_metrics_addr(bad).expect_err(bad);
        assert!(err.contains("IP:PORT"), "{err}");
    }
}

/// The table metrics, encoded through a registry as a scrape would.
#[derive(Debug)]
struct TablesOnly(Tables, share::Observed, Option<SharedIndex>, bool);

impl Collector for TablesOnly {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        collect::ipvs(&mut encoder, &self.0, &self.1, self.2.as_ref(), self.3)
    }
}

fn encode_tables(tables: Tables, index: Option<SharedIndex>, backend_label: bool) -> String {
    encode_tables_seen(tables, share::Observed::default(), index, backend_label)
}

fn encode_tables_seen(
    tables: Tables,
    observed: share::Observed,
    index: Option<SharedIndex>,
    backend_label: bool,
) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(TablesOnly(tables, observed, index, backend_label)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[test]
fn table_metrics_give_weights_and_kernel_counters() {
    let mut tables = crate::ipvs::lookup::fixtures::tables();
    tables.services[0].stats.conns = 40;
    tables.services[0].dests[0].stats.conns = 30;
    tables.services[0].dests[1].stats.conns = 10;
    let text = encode_tables(tables.clone(), None, true);
    let lines = samples(&text);
    for expected in [
        "ipvs_trace_ipvs_backends{proto=\"TCP\",vip=\"172.31.0.10:80\",service=\"172.31.0.10:80\",scheduler=\"wrr\"} 2",
        "ipvs_trace_ipvs_backends{proto=\"FWM\",vip=\"7\",service=\"7\",scheduler=\"sh\"} 1",
        "ipvs_trace_ipvs_service_connections_total{proto=\"TCP\",vip=\"172.31.0.10:80\",service=\"172.31.0.10:80\",scheduler=\"wrr\"} 40",
        "ipvs_trace_ipvs_backend_weight{proto=\"TCP\",vip=\"172.31.0.10:80\",service=\"172.31.0.10:80\",scheduler=\"wrr\",backend=\"10.245.1.2:8080\"} 0",
        "ipvs_trace_ipvs_backend_weight{proto=\"UDP\",vip=\"172.31.0.10:80\",service=\"172.31.0.10:80\",scheduler=\"lc\",backend=\"10.245.1.1:8080\"} 5",
        "ipvs_trace_ipvs_backend_connections_total{proto=\"TCP\",vip=\"172.31.0.10:80\",service=\"172.31.0.10:80\",scheduler=\"wrr\",backend=\"10.245.1.1:8080\"} 30",
    ] {
        assert!(lines.contains(&expected), "{expected} missing:\n{text}");
    }
    let text = encode_tables(tables, None, false);
    assert!(!text.contains("backend="), "{text}");
    assert!(!text.contains("ipvs_backend_weight"), "{text}");
}

#[test]
fn configured_and_observed_shares_per_backend() {
    let mut tables = crate::ipvs::lookup::fixtures::tables();
    tables.services[0].dests[1].weight = 1;
    let (metrics, mut recorder) = Metrics::new(true, false);
    // wrr 3:1, but the tracer saw 2 of 4 new connections go to the weight-1 backend; reused
    // and template events are not scheduling decisions and do not count.
    let template = sample_events()
        .into_iter()
        .find(|e| e.kind == EventKind::New && e.backend.is_some())
        .unwrap();
    for (kind, backend) in [
        (EventKind::New, "10.245.1.1:8080"),
        (EventKind::New, "10.245.1.1:8080"),
        (EventKind::New, "10.245.1.2:8080"),
        (EventKind::New, "10.245.1.2:8080"),
        (EventKind::Reused, "10.245.1.1:8080"),
        (EventKind::Template, "10.245.1.1:8080"),
    ] {
        let event = Event {
            kind,
            proto: Proto::Tcp,
            vip: "172.31.0.10:80".parse().unwrap(),
            backend: Some(backend.parse().unwrap()),
            ..template.clone()
        };
        recorder.record(&event, &Names::default());
    }
    recorder.tick(&Losses::default());
    let observed = metrics.sources.shares.observed(Instant::now());
    let text = encode_tables_seen(tables.clone(), observed, None, true);
    let lines = samples(&text);
    let labels = |backend: &str| {
        format!(
            "{{proto=\"TCP\",vip=\"172.31.0.10:80\",service=\"172.31.0.10:80\",scheduler=\"wrr\",backend=\"{backend}\"}}"
        )
    };
    for expected in [
        format!(
            "ipvs_trace_backend_share_configured{} 0.75",
            labels("10.245.1.1:8080")
        ),
        format!(
            "ipvs_trace_backend_share_configured{} 0.25",
            labels("10.245.1.2:8080")
        ),
        format!(
            "ipvs_trace_backend_share_observed{} 0.5",
            labels("10.245.1.1:8080")
        ),
        format!(
            "ipvs_trace_backend_share_observed{} 0.5",
            labels("10.245.1.2:8080")
        ),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "{expected} missing:\n{text}"
        );
    }
    // lc defines no share, and the UDP service saw nothing: neither gauge for it.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("ipvs_trace_backend_share") && l.contains("UDP")),
        "{text}"
    );
    // With persistence the weights share out clients, not connections: no configured share.
    tables.services[0].flags.0 |= crate::ipvs::model::ServiceFlags::PERSISTENT;
    let text = encode_tables(tables, None, true);
    assert!(!text.contains("backend_share_configured{"), "{text}");
}

#[test]
fn table_metrics_use_names() {
    use crate::ipvs::lookup::fixtures::{dest, service};
    let mut tables = crate::ipvs::lookup::fixtures::tables();
    tables.services = vec![service(
        Some(Proto::Tcp),
        Some("172.31.42.227:80"),
        "rr",
        vec![dest("10.245.112.32:8080", 1)],
    )];
    let index = SharedIndex::new(seed_index().into());
    let text = encode_tables(tables, Some(index), true);
    assert!(
        samples(&text).contains(
            &"ipvs_trace_ipvs_backend_weight{proto=\"TCP\",vip=\"172.31.42.227:80\",service=\"ratel/vpaas-demo-prod:http\",scheduler=\"rr\",backend=\"ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm\"} 1"
        ),
        "{text}"
    );
}

/// One HTTP/1.1 request over a real socket; the status line, headers and body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn endpoint_serves_metrics_and_readiness() {
    let (metrics, mut recorder) = Metrics::new(true, false);
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&metrics))
        .expect("the endpoint starts");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let (status, _, body) = http(addr, "GET", "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not attached"), "{body}");
    metrics.set_ready();
    assert_eq!(http(addr, "GET", "/healthz").0, 200);
    metrics.set_unready();
    let (status, _, body) = http(addr, "GET", "/healthz");
    assert_eq!(status, 503, "ip_vs unloaded: {body}");
    metrics.set_reattached();
    assert_eq!(http(addr, "GET", "/healthz").0, 200);

    record_samples(&mut recorder, None, 1);
    let (status, head, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(
        body.contains("ipvs_trace_connections_total{event=\"new\""),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (status, head, body) = http(addr, "HEAD", "/metrics");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    let (status, head, _) = http(addr, "POST", "/metrics");
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"), "{head}");
    assert_eq!(http(addr, "GET", "/").0, 404);

    // A second endpoint on the same port is refused with the way out.
    let err = MetricsServer::start(addr, Arc::clone(&metrics))
        .err()
        .expect("the port is taken");
    assert!(format!("{err:#}").contains("--metrics-addr"), "{err:#}");

    // Dropping the server closes the port.
    drop(server);
    let closed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        TcpStream::connect(addr).is_err()
    });
    assert!(closed, "{addr} still accepts after the server was dropped");
}
