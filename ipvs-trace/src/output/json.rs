//! JSON lines: one object per event, fields in the order of the contract in DESIGN.md.
//!
//! The field names and their order are a stable API (scripts and log pipelines depend on
//! them). A value that does not apply or is unknown is `null`, never omitted, so every line has
//! the same shape.

use std::fmt::Display;
use std::io;

use serde::{Serialize, Serializer};

use crate::clock::WallClock;
use crate::events::Event;

/// Serialises any `Display` value as a JSON string without an intermediate `String`.
struct AsString<T>(T);

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
    // Kubernetes names: part of the contract now, null until the Kubernetes enrichment fills
    // them.
    service: Option<&'a str>,
    service_type: Option<&'a str>,
    backend_pod: Option<&'a str>,
    backend_node: Option<&'a str>,
    client_pod: Option<&'a str>,
    netns: Option<u32>,
    cpu: u32,
    conn: Option<AsString<Hex>>,
}

impl<'a> JsonLine<'a> {
    fn new(clock: &WallClock, event: &'a Event) -> JsonLine<'a> {
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
            active_conns: event.dest.map(|d| d.active_conns),
            inactive_conns: event.dest.map(|d| d.inactive_conns),
            service: None,
            service_type: None,
            backend_pod: None,
            backend_node: None,
            client_pod: None,
            netns: event.netns,
            cpu: event.cpu,
            conn: event.conn.map(|id| AsString(Hex(id))),
        }
    }
}

/// Writes `event` as one JSON object and a newline.
pub fn write_line(out: &mut impl io::Write, clock: &WallClock, event: &Event) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &JsonLine::new(clock, event)).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use crate::output::tests::{assert_golden, render};
    use crate::output::OutputFormat;

    /// The field order of the contract in DESIGN.md.
    const CONTRACT: [&str; 19] = [
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
        "netns",
        "cpu",
        "conn",
    ];

    #[test]
    fn json_golden() {
        assert_golden("events.jsonl", &render(OutputFormat::Json));
    }

    #[test]
    fn every_line_has_the_contract_fields_in_order() {
        for line in render(OutputFormat::Json).lines() {
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
