//! JSON lines: one object per event, fields in the order of the contract in DESIGN.md.
//!
//! The field names and their order are a stable API (scripts and log pipelines depend on
//! them). A value that does not apply or is unknown is `null`, never omitted, so every line has
//! the same shape.
//!
//! Lines are written by hand into a reused buffer ([`json_text`](super::json_text) formats the
//! values) rather than through serde: at a busy node's event rates serde's `Display`-based
//! addresses and the per-line timestamp `String` cost more than everything else together. The
//! output is byte-for-byte what serde_json gives for the same line as a struct (kept in the
//! tests as the reference); the tests check that over many varied events.
use std::cell::RefCell;
use std::io;

use super::json_text::{hex_string, opt_int, opt_string, plain, socket_addr, u64_digits};
use crate::clock::WallClock;
use crate::conntrack::nat::NatView;
use crate::events::{Event, FwdMethod, Proto};
use crate::kube::Names;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The line being written, and the date and time of day of the last second seen.
struct LineBuffer {
    bytes: Vec<u8>,
    /// Seconds since the epoch whose `YYYY-MM-DDTHH:MM:SS.` is in `prefix`: events come in
    /// time order, thousands per second under load, so the calendar arithmetic runs about
    /// once a second.
    second: Option<i128>,
    prefix: Vec<u8>,
}

thread_local! {
    static LINE: RefCell<LineBuffer> = const {
        RefCell::new(LineBuffer {
            bytes: Vec::new(),
            second: None,
            prefix: Vec::new(),
        })
    };
}

impl LineBuffer {
    /// `"2026-11-26T17:12:52.123456789Z"`, as [`WallClock::rfc3339`] formats it.
    fn time(&mut self, unix_ns: i128) {
        let second = unix_ns.div_euclid(NANOS_PER_SEC);
        let nanos = unix_ns.rem_euclid(NANOS_PER_SEC) as u32;
        if self.second != Some(second) {
            let whole = crate::clock::format_rfc3339(second * NANOS_PER_SEC);
            // Everything up to the fraction: the text ends in `.000000000Z`.
            let cut = whole.len() - "000000000Z".len();
            self.prefix.clear();
            self.prefix.extend_from_slice(&whole.as_bytes()[..cut]);
            self.second = Some(second);
        }
        let out = &mut self.bytes;
        out.push(b'"');
        out.extend_from_slice(&self.prefix);
        let mut digits = [b'0'; 9];
        let mut rest = nanos;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits);
        out.extend_from_slice(b"Z\"");
    }

    fn line(
        &mut self,
        clock: &WallClock,
        event: &Event,
        names: &Names,
        nat: Option<&NatView>,
    ) -> io::Result<()> {
        self.bytes.clear();
        self.bytes.extend_from_slice(b"{\"time\":");
        self.time(clock.unix_ns(event.timestamp_ns));
        let out = &mut self.bytes;
        out.extend_from_slice(b",\"event\":");
        plain(out, event.kind.as_str());
        out.extend_from_slice(b",\"proto\":");
        proto(out, event.proto);
        out.extend_from_slice(b",\"client\":");
        socket_addr(out, &event.client);
        out.extend_from_slice(b",\"vip\":");
        socket_addr(out, &event.vip);
        out.extend_from_slice(b",\"backend\":");
        match &event.backend {
            Some(addr) => socket_addr(out, addr),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"scheduler\":");
        opt_string(out, event.scheduler.as_deref());
        out.extend_from_slice(b",\"fwd\":");
        match event.fwd {
            Some(fwd) => fwd_method(out, fwd),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"weight\":");
        opt_int(out, event.dest.map(|d| d.weight));
        out.extend_from_slice(b",\"active_conns\":");
        opt_int(out, event.dest.and_then(|d| d.active_conns));
        out.extend_from_slice(b",\"inactive_conns\":");
        opt_int(out, event.dest.and_then(|d| d.inactive_conns));
        // Kubernetes names: null without a Kubernetes source, or when the index does not know
        // the address (yet).
        out.extend_from_slice(b",\"service\":");
        opt_string(out, names.service.map(|s| &*s.label));
        out.extend_from_slice(b",\"service_type\":");
        opt_string(out, names.service.map(|s| s.service_type.as_str()));
        out.extend_from_slice(b",\"backend_pod\":");
        opt_string(out, names.backend_pod());
        out.extend_from_slice(b",\"backend_node\":");
        opt_string(out, names.backend_node());
        out.extend_from_slice(b",\"client_pod\":");
        opt_string(out, names.client_pod());
        // The endpoint's `terminating` condition: true when IPVS picked an endpoint Kubernetes
        // is taking away (the stale-endpoint problem).
        out.extend_from_slice(b",\"backend_terminating\":");
        out.extend_from_slice(match names.backend.and_then(|b| b.terminating) {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        });
        out.extend_from_slice(b",\"netns\":");
        opt_int(out, event.netns);
        out.extend_from_slice(b",\"cpu\":");
        u64_digits(out, event.cpu.into());
        out.extend_from_slice(b",\"conn\":");
        match event.conn {
            Some(id) => hex_string(out, id),
            None => out.extend_from_slice(b"null"),
        }
        // `--nat`: the connection before and after IPVS, and its conntrack entry (`nat.rs`).
        // At most one line per conntrack lookup: serde is fast enough for it.
        out.extend_from_slice(b",\"nat\":");
        match nat {
            Some(view) => serde_json::to_writer(&mut *out, &super::nat::JsonNat::from(view))?,
            None => out.extend_from_slice(b"null"),
        }
        // Who decided (added with the netfilter dataplanes, after every earlier field).
        out.extend_from_slice(b",\"dataplane\":");
        plain(out, event.dataplane.as_str());
        out.extend_from_slice(b"}\n");
        Ok(())
    }
}

/// `TCP`, `UDP`, `SCTP`, or the number: [`Proto`]'s `Display`.
fn proto(out: &mut Vec<u8>, proto: Proto) {
    match proto {
        Proto::Tcp => plain(out, "TCP"),
        Proto::Udp => plain(out, "UDP"),
        Proto::Sctp => plain(out, "SCTP"),
        Proto::Other(number) => {
            out.push(b'"');
            u64_digits(out, number.into());
            out.push(b'"');
        }
    }
}

/// [`FwdMethod`]'s `Display`.
fn fwd_method(out: &mut Vec<u8>, fwd: FwdMethod) {
    match fwd {
        FwdMethod::Masq => plain(out, "Masq"),
        FwdMethod::Local => plain(out, "Local"),
        FwdMethod::Tunnel => plain(out, "Tunnel"),
        FwdMethod::Route => plain(out, "Route"),
        FwdMethod::Bypass => plain(out, "Bypass"),
        FwdMethod::Unknown(value) => {
            out.extend_from_slice(b"\"fwd");
            u64_digits(out, value.into());
            out.push(b'"');
        }
    }
}

/// Writes `event` as one JSON object and a newline, in one `write_all`.
pub fn write_line(
    out: &mut impl io::Write,
    clock: &WallClock,
    event: &Event,
    names: &Names,
    nat: Option<&NatView>,
) -> io::Result<()> {
    LINE.with(|line| {
        // Only this function borrows the buffer, and it does not call itself.
        let mut line = line.borrow_mut();
        line.line(clock, event, names, nat)?;
        out.write_all(&line.bytes)
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr, SocketAddr};
    use std::sync::Arc;

    use serde::Serialize;

    use crate::clock::WallClock;
    use crate::conntrack::nat::NatView;
    use crate::conntrack::{Entry, Status, Tuple};
    use crate::events::model::EventKind;
    use crate::events::{DestCounters, Event, FwdMethod, Proto};
    use crate::kube::{BackendName, ClientName, Names, OwnedNames, ServiceName, ServiceType};
    use crate::output::json_text::tests::Rng;
    use crate::output::json_text::AsString;
    use crate::output::tests::{assert_golden, render, render_with, seed_index, CLOCK};
    use crate::output::{OutputFormat, Printer};

    /// Formats a connection id as `0x…`.
    struct Hex(u64);

    impl std::fmt::Display for Hex {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:#x}", self.0)
        }
    }

    /// The line as serde_json writes it: the reference the hand-written line must match byte
    /// for byte (it was the writer before).
    #[derive(Serialize)]
    struct JsonLine<'a> {
        time: String,
        event: &'static str,
        proto: AsString<Proto>,
        client: AsString<SocketAddr>,
        vip: AsString<SocketAddr>,
        backend: Option<AsString<SocketAddr>>,
        scheduler: Option<&'a str>,
        fwd: Option<AsString<FwdMethod>>,
        weight: Option<i32>,
        active_conns: Option<i32>,
        inactive_conns: Option<i32>,
        service: Option<&'a str>,
        service_type: Option<&'a str>,
        backend_pod: Option<&'a str>,
        backend_node: Option<&'a str>,
        client_pod: Option<&'a str>,
        backend_terminating: Option<bool>,
        netns: Option<u32>,
        cpu: u32,
        conn: Option<AsString<Hex>>,
        nat: Option<crate::output::nat::JsonNat>,
        dataplane: crate::dataplane::Dataplane,
    }

    fn serde_line(
        clock: &WallClock,
        event: &Event,
        names: &Names,
        nat: Option<&NatView>,
    ) -> String {
        let line = JsonLine {
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
            service: names.service.map(|s| &*s.label),
            service_type: names.service.map(|s| s.service_type.as_str()),
            backend_pod: names.backend_pod(),
            backend_node: names.backend_node(),
            client_pod: names.client_pod(),
            backend_terminating: names.backend.and_then(|b| b.terminating),
            netns: event.netns,
            cpu: event.cpu,
            conn: event.conn.map(|id| AsString(Hex(id))),
            nat: nat.map(Into::into),
            dataplane: event.dataplane,
        };
        serde_json::to_string(&line).unwrap() + "\n"
    }

    /// Texts with what JSON must escape, non-ASCII, and plain names.
    const TEXTS: [&str; 9] = [
        "rr",
        "ns-3/pod-5d8f7c9b6-abcde-000123",
        "say \"hi\"",
        "back\\slash",
        "ctl\u{1}\u{1f}\u{7f}\t\n\r\u{8}\u{c}",
        "ünïcødé/пад:✓",
        "",
        "node-0",
        "emoji 😀 \u{2028}",
    ];

    fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
        &items[(rng.next() % items.len() as u64) as usize]
    }

    /// `make`'s value two times in three, else `None`.
    fn maybe<T>(rng: &mut Rng, make: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        if rng.next().is_multiple_of(3) {
            None
        } else {
            Some(make(rng))
        }
    }

    fn text(rng: &mut Rng) -> Arc<str> {
        Arc::from(*pick(rng, &TEXTS))
    }

    fn addr(rng: &mut Rng) -> SocketAddr {
        let port = rng.next() as u16;
        match rng.next() % 4 {
            0 => SocketAddr::new(IpAddr::from((rng.next() as u32).to_be_bytes()), port),
            1 => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(u128::from(rng.next()))), port),
            2 => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(
                    u128::from(rng.next()) << 64 | u128::from(rng.next() & 0xffff),
                )),
                port,
            ),
            _ => SocketAddr::new(
                IpAddr::V6(std::net::Ipv4Addr::from(rng.next() as u32).to_ipv6_mapped()),
                port,
            ),
        }
    }

    fn event(rng: &mut Rng) -> Event {
        let kind = *pick(rng, &EventKind::ALL);
        let fwd = *pick(
            rng,
            &[
                FwdMethod::Masq,
                FwdMethod::Local,
                FwdMethod::Tunnel,
                FwdMethod::Route,
                FwdMethod::Bypass,
                FwdMethod::Unknown(5),
                FwdMethod::Unknown(7),
            ],
        );
        let counter = |rng: &mut Rng| maybe(rng, |rng| (rng.next() as i32) >> (rng.next() % 32));
        Event {
            kind,
            dataplane: crate::dataplane::Dataplane::Ipvs,
            // Anywhere in a day, mostly a few seconds apart, with every nanosecond width.
            timestamp_ns: (rng.next() % 86_400_000_000_000) >> (rng.next() % 40),
            cpu: (rng.next() as u32) >> (rng.next() % 32),
            netns: maybe(rng, |rng| rng.next() as u32),
            conn: maybe(rng, |rng| rng.next() >> (rng.next() % 64)),
            proto: *pick(
                rng,
                &[
                    Proto::Tcp,
                    Proto::Udp,
                    Proto::Sctp,
                    Proto::Other(47),
                    Proto::Other(0),
                ],
            ),
            client: addr(rng),
            vip: addr(rng),
            backend: maybe(rng, addr),
            fwd: maybe(rng, |_| fwd),
            flags: rng.next() as u32,
            state: rng.next() as u32,
            scheduler: maybe(rng, |rng| text(rng).to_string().into()),
            dest: maybe(rng, |rng| DestCounters {
                weight: rng.next() as i32 >> (rng.next() % 32),
                active_conns: counter(rng),
                inactive_conns: counter(rng),
            }),
        }
    }

    fn names(rng: &mut Rng) -> OwnedNames {
        let service_type = *pick(
            rng,
            &[
                ServiceType::ClusterIp,
                ServiceType::NodePort,
                ServiceType::LoadBalancer,
                ServiceType::ExternalName,
            ],
        );
        let service = ServiceName {
            label: text(rng),
            service: text(rng),
            service_type,
        };
        let backend = BackendName {
            pod: maybe(rng, text),
            node: maybe(rng, text),
            serving: maybe(rng, |rng| rng.next().is_multiple_of(2)),
            terminating: maybe(rng, |rng| rng.next().is_multiple_of(2)),
        };
        let client = if rng.next().is_multiple_of(2) {
            ClientName::Pod {
                pod: text(rng),
                node: maybe(rng, text),
            }
        } else {
            ClientName::Node(text(rng))
        };
        OwnedNames {
            service: maybe(rng, |_| service),
            backend: maybe(rng, |_| backend),
            client: maybe(rng, |_| client),
        }
    }

    fn nat(rng: &mut Rng, event: &Event) -> Option<NatView> {
        let mut view = NatView::of(event)?;
        if rng.next().is_multiple_of(2) {
            view.conntrack = Some(Entry {
                orig: view.before,
                reply: Tuple {
                    proto: view.before.proto,
                    src: addr(rng),
                    dst: addr(rng),
                },
                status: Status(rng.next() as u32),
                mark: maybe(rng, |rng| rng.next() as u32),
            });
        }
        Some(view)
    }

    #[test]
    fn hand_written_lines_are_serde_json_lines_byte_for_byte() {
        let mut rng = Rng(0x5851_f42d_4c95_7f2d);
        let clocks = [
            CLOCK,
            WallClock::with_offset(0),
            // Before the epoch, and late this millennium.
            WallClock::with_offset(-3_000_000_000_123_456_789),
            WallClock::with_offset(4_102_444_799_999_999_999),
        ];
        for i in 0..20_000 {
            let clock = clocks[i % clocks.len()];
            let event = event(&mut rng);
            let owned = names(&mut rng);
            let names = owned.names();
            let nat = nat(&mut rng, &event);
            for view in [None, nat.as_ref()] {
                let mut out = Vec::new();
                super::write_line(&mut out, &clock, &event, &names, view).unwrap();
                let expected = serde_line(&clock, &event, &names, view);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    expected,
                    "{event:?} {names:?} {view:?}"
                );
            }
        }
    }

    #[test]
    fn consecutive_lines_in_one_second_and_across_seconds() {
        // The cached date and time of day must follow the seconds, back and forth.
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let base = event(&mut rng);
        let names = Names::NONE;
        for stamp in [
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            1_999_999_999,
            0,
            86_399_999_999_999,
            86_400_000_000_000,
            5,
        ] {
            let event = Event {
                timestamp_ns: stamp,
                ..base.clone()
            };
            let mut out = Vec::new();
            super::write_line(&mut out, &CLOCK, &event, &names, None).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_line(&CLOCK, &event, &names, None)
            );
        }
    }

    /// The field order of the contract in DESIGN.md.
    const CONTRACT: [&str; 22] = [
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
        "dataplane",
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
