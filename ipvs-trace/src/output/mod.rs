//! Rendering events: an aligned human table ([`table`]), JSON lines ([`json`], a stable
//! contract), and the exit summary ([`summary`]).
//!
//! Renderers write into any `io::Write`; the caller owns buffering and flushing, so output can
//! be batched per ring-buffer drain rather than issued per line.

pub mod json;
mod json_text;
pub mod nat;
pub mod summary;
pub mod table;

use std::io;

use crate::clock::WallClock;
use crate::conntrack::nat::NatView;
use crate::events::Event;
use crate::kube::Names;

/// How events are printed (`--output`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people, one line per event, with a header line.
    #[default]
    Table,
    /// One JSON object per line, for programs; the field names are a stable contract.
    Json,
}

/// Prints events in the chosen format.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    format: OutputFormat,
    clock: WallClock,
    /// The table's layout: names once a Kubernetes source is given, unless `--numeric`.
    layout: table::Layout,
}

impl Printer {
    #[must_use]
    pub fn new(format: OutputFormat, clock: WallClock) -> Printer {
        Printer {
            format,
            clock,
            layout: table::Layout::Addresses,
        }
    }

    /// With a Kubernetes source, the table shows names (`numeric` false) or keeps addresses
    /// (`--numeric`). JSON always has both.
    #[must_use]
    pub fn with_names(self, numeric: bool) -> Printer {
        let layout = if numeric {
            table::Layout::Addresses
        } else {
            table::Layout::Names
        };
        Printer { layout, ..self }
    }

    /// Whatever precedes the first event (the table's header line).
    pub fn begin(&self, out: &mut impl io::Write) -> io::Result<()> {
        match self.format {
            OutputFormat::Table => table::write_header(out, self.layout),
            OutputFormat::Json => Ok(()),
        }
    }

    /// One event, one line, with the names of its addresses as far as they are known.
    pub fn event(&self, out: &mut impl io::Write, event: &Event, names: &Names) -> io::Result<()> {
        self.event_nat(out, event, names, None)
    }

    /// [`Self::event`] with `trace --nat`'s view of the connection: the JSON line's `nat`
    /// object, or a second table line.
    pub fn event_nat(
        &self,
        out: &mut impl io::Write,
        event: &Event,
        names: &Names,
        nat: Option<&NatView>,
    ) -> io::Result<()> {
        match self.format {
            OutputFormat::Table => {
                table::write_row(out, &self.clock, self.layout, event, names)?;
                nat.map_or(Ok(()), |view| nat::write_line(out, view))
            }
            OutputFormat::Json => json::write_line(out, &self.clock, event, names, nat),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use ipvs_trace_common::{event::valid, ConnEvent, EventKind};

    use super::*;
    use crate::events::decode::{decode, tests::raw_new, tests::record_bytes};

    /// 2026-11-26T17:12:52Z at monotonic zero: the events below carry small monotonic stamps.
    pub(crate) const CLOCK: WallClock = WallClock::with_offset(1_795_713_172_000_000_000);

    fn event(f: impl FnOnce(&mut ConnEvent)) -> Event {
        let mut raw = raw_new();
        f(&mut raw);
        decode(&record_bytes(&raw)).expect("valid record")
    }

    /// One event of each situation the renderers must get right.
    pub(crate) fn sample_events() -> Vec<Event> {
        vec![
            // The seed scenario's connection, rr, Masq.
            event(|raw| raw.header.timestamp_ns = 123_456_789),
            // A persistence template: client port 0, wrr with weight 3.
            event(|raw| {
                raw.header.kind = EventKind::Template as u32;
                raw.header.timestamp_ns = 1_000_000_000;
                raw.client_port = 0;
                raw.flags = 0x1100;
                raw.scheduler = *b"wrr\0\0\0\0\0\0\0\0\0\0\0\0\0";
                raw.weight = 3;
                raw.active_conns = 0;
                raw.inactive_conns = 12;
            }),
            // A reused entry over UDP, IPv6, direct routing.
            event(|raw| {
                raw.header.kind = EventKind::Reused as u32;
                raw.header.timestamp_ns = 2_000_000_001;
                raw.header.cpu = 0;
                raw.af = 10;
                raw.daf = 10;
                raw.protocol = 17;
                raw.client_addr = "fd00::c1".parse::<std::net::Ipv6Addr>().unwrap().octets();
                raw.vip_addr = "fd00:42::e3"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets();
                raw.backend_addr = "fd00:245::20"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets();
                raw.client_port = 53000;
                raw.vip_port = 53;
                raw.backend_port = 53;
                raw.flags = 3;
                raw.active_conns = 250;
                raw.inactive_conns = 1034;
            }),
            // No usable real server: no entry, no backend, no counters.
            event(|raw| {
                raw.header.kind = EventKind::NoDest as u32;
                raw.header.timestamp_ns = 61_999_999_999;
                raw.conn = 0;
                raw.flags = 0;
                raw.daf = 0;
                raw.backend_addr = [0; 16];
                raw.backend_port = 0;
                raw.vip_port = 443;
                raw.valid = valid::SCHEDULER | valid::NETNS | valid::CLIENT_PORT;
            }),
            // What the kernel could not read stays empty rather than made up.
            event(|raw| {
                raw.header.timestamp_ns = 86_400_000_000_000;
                raw.valid = valid::BACKEND | valid::CLIENT_PORT;
            }),
        ]
    }

    /// Compares `actual` with `tests/golden/<name>`; `IPVS_TRACE_BLESS=1` rewrites the file
    /// instead (then review the diff).
    pub(crate) fn assert_golden(name: &str, actual: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("IPVS_TRACE_BLESS").is_some() {
            std::fs::write(&path, actual).expect("write golden file");
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!(
                "{}: {err} (run with IPVS_TRACE_BLESS=1 to create it)",
                path.display()
            )
        });
        assert!(
            expected == actual,
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }

    pub(crate) fn render(format: OutputFormat) -> String {
        render_with(Printer::new(format, CLOCK), None)
    }

    /// The index of the seed scenario's snapshot (the sample events' addresses are its own).
    pub(crate) fn seed_index() -> crate::kube::Index {
        let path = crate::kube::snapshot::tests::seed_path();
        crate::kube::snapshot::load(&[path])
            .expect("the seed snapshot loads")
            .0
    }

    /// Renders the sample events, with names from `index` when given.
    pub(crate) fn render_with(printer: Printer, index: Option<&crate::kube::Index>) -> String {
        let mut out = Vec::new();
        printer.begin(&mut out).unwrap();
        for event in sample_events() {
            let names = index
                .map(|index| Names::resolve(index, &event))
                .unwrap_or_default();
            printer.event(&mut out, &event, &names).unwrap();
        }
        String::from_utf8(out).expect("UTF-8 output")
    }
}
