//! JSON lines: one object per event, fields in the order of the contract in DESIGN.md.
//!
//! The field names and their order are a stable API (scripts and log pipelines depend on
//! them). A value that does not apply or is unknown is `null`, never omitted, so every line has
//! the same shape.

use std::fmt::Display;
use std::io;

use serde::{Serialize, Serializer};

use crate::clock::WallClock;
use crate::conntrack::nat::NatView;
use crate::events::Event;
use crate::kube::Names;

/// Serialises any `Display` value as a JSON string without an intermediate `String`.
pub(super) struct AsString<T>(pub(super) T);

impl<T: Display> Serialize for AsString<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Formats a connection id as `0x…`.
struct Hex(u64);

impl Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// One line of `--output json`.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    event: &'static str,
    proto: AsString<crate::events::Proto>,
    client: AsString<std::net::SocketAddr>,
    vip: AsString<std::net::SocketAddr>,
    backend: Option<AsString<std::net::SocketAddr>>,
    scheduler: Option<&'a str>,
    fwd: Option<AsString<crate::events::FwdMethod>>,
    weight: Option<i32>,
    active_conns: Option<i32>,
    inactive_conns: Option<i32>,
    // Kubernetes names: null without a Kubernetes source, or when the index does not know the
    // address (yet).
    service: Option<&'a str>,
    service_type: Option<&'a str>,
    backend_pod: Option<&'a str>,
    backend_node: Option<&'a str>,
    client_pod: Option<&'a str>,
    /// The endpoint's `terminating` condition: true when IPVS picked an endpoint Kubernetes is
    /// taking away (the stale-endpoint problem).
    backend_terminating: Option<bool>,
    netns: Option<u32>,
    cpu: u32,
    conn: Option<AsString<Hex>>,
    /// `--nat`: the connection before and after IPVS, and its conntrack entry (`nat.rs`).
    nat: Option<super::nat::JsonNat>,
}

impl<'a> JsonLine<'a> {
    fn new(
        clock: &WallClock,
        event: &'a Event,
        names: &'a Names,
        nat: Option<&NatView>,
    ) -> JsonLine<'a> {
        JsonLine {
            time: clock.rfc3339(event.timestamp_ns),
            event: event.kind.as_str(),
            proto: AsString(event.proto),
            client: AsString(event.client),
            vip: AsString(event.vip),
            backend: event.backend.map(AsString),
            scheduler: event.scheduler.as_deref(),
            fwd: event.fwd.map(AsString),
            weight: event.dest.map(|d| d.weight),
            active_conns: event.dest.and_then(|d| d.active_conns),
            inactive_conns: event.dest.and_then(|d| d.inactive_conns),
            service: names.service.as_ref().map(|s| &*s.label),
            service_type: names.service.as_ref().map(|s| s.service_type.as_str()),
            backend_pod: names.backend_pod(),
            backend_node: names.backend_node(),
            client_pod: names.client_pod(),
            backend_terminating: names.backend.as_ref().and_then(|b| b.terminating),
            netns: event.netns,
            cpu: event.cpu,
            conn: event.conn.map(|id| AsString(Hex(id))),
            nat: nat.map(Into::into),
        }
    }
}

/// Writes `event` as one JSON object and a newline.
pub fn write_line(
    out: &mut impl io::Write,
    clock: &WallClock,
    event: &Event,
    names: &Names,
    nat: Option<&NatView>,
) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &JsonLine::new(clock, event, names, nat))
        .map_err(io::Error::from)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use crate::output::tests::{assert_golden, render, render_with, seed_index, CLOCK};
    use crate::output::{OutputFormat, Printer};

    /// The field order of the contract in DESIGN.md.
    const CONTRACT: [&str; 21] = [
        "time",
        "event",
        "proto",
        "client",
        "vip",
        "backend",
        "scheduler",
        "fwd",
        "weight",
        "active_conns",
        "inactive_conns",
        "service",
        "service_type",
        "backend_pod",
        "backend_node",
        "client_pod",
        "backend_terminating",
        "netns",
        "cpu",
        "conn",
        "nat",
    ];

    #[test]
    fn json_golden() {
        assert_golden("events.jsonl", &render(OutputFormat::Json));
    }

    fn render_named() -> String {
        render_with(Printer::new(OutputFormat::Json, CLOCK), Some(&seed_index()))
    }

    #[test]
    fn json_named_golden() {
        assert_golden("events-named.jsonl", &render_named());
    }

    #[test]
    fn names_fill_the_name_fields() {
        let text = render_named();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["service"], "ratel/vpaas-demo-prod:http");
        assert_eq!(first["service_type"], "LoadBalancer");
        assert_eq!(
            first["backend_pod"],
            "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm"
        );
        assert_eq!(first["backend_node"], "cn-beijing.10.245.96.43");
        assert_eq!(
            first["client_pod"],
            "ratel/vpaas-demo-client-6f8b9c7d5-kq2lm"
        );
        assert_eq!(first["backend_terminating"], false);
        // The seed snapshot knows neither the IPv6 addresses nor port 443.
        for line in text.lines().skip(2).take(2) {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(value["service"].is_null(), "{line}");
            assert!(value["backend_terminating"].is_null(), "{line}");
        }
    }

    #[test]
    fn every_line_has_the_contract_fields_in_order() {
        let both = render(OutputFormat::Json) + &render_named();
        for line in both.lines() {
            let mut rest = line;
            for field in CONTRACT {
                let key = format!("\"{field}\":");
                let at = rest
                    .find(&key)
                    .unwrap_or_else(|| panic!("{field} missing or out of order in {line}"));
                rest = &rest[at + key.len()..];
            }
            let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            assert_eq!(
                value.as_object().map(serde_json::Map::len),
                Some(CONTRACT.len())
            );
        }
    }

    #[test]
    fn no_dest_nulls_what_has_no_entry() {
        let text = render(OutputFormat::Json);
        let line = text
            .lines()
            .find(|l| l.contains("\"event\":\"no_dest\""))
            .expect("a no_dest line");
        let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        for field in [
            "backend",
            "fwd",
            "weight",
            "active_conns",
            "inactive_conns",
            "conn",
        ] {
            assert!(value[field].is_null(), "{field} should be null in {line}");
        }
        for field in ["client", "vip", "scheduler", "time", "proto"] {
            assert!(value[field].is_string(), "{field} should be set in {line}");
        }
    }
}
