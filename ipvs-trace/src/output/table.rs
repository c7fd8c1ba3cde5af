//! The human table: one aligned line per event under a header.
//!
//! Output is streamed, so column widths are fixed up front. Two layouts:
//! - addresses (no Kubernetes source, or `-n`): CLIENT, VIP and BACKEND columns sized for IPv4
//!   `ip:port` (21 characters); a longer IPv6 address widens its own line only;
//! - names: the fixed-width columns first, then the flow as the last, free-width column,
//!   `CLIENT -> SERVICE -> BACKEND on NODE`, each part a name where the index knows it and the
//!   address where not. Pod names run past 60 characters, which no fixed column could hold
//!   without ragging every line after it.
//!
//! What is unknown prints as `-`. TIME is UTC.

use std::fmt::{self, Display};
use std::io;

use crate::clock::WallClock;
use crate::events::Event;
use crate::kube::{BackendName, ClientName, Names};

/// Which layout a table uses, fixed for the whole run (the header depends on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Addresses,
    Names,
}

fn line<W: io::Write>(out: &mut W, cells: [&dyn Display; 11]) -> io::Result<()> {
    let [time, event, proto, client, vip, backend, sched, fwd, weight, active, inactive] = cells;
    writeln!(
        out,
        "{time:<15}  {event:<8}  {proto:<5}  {client:<21}  {vip:<21}  {backend:<21}  \
         {sched:<5}  {fwd:<6}  {weight:>3}  {active:>6}  {inactive:>6}"
    )
}

fn named_line<W: io::Write>(out: &mut W, cells: [&dyn Display; 9]) -> io::Result<()> {
    let [time, event, proto, sched, fwd, weight, active, inactive, flow] = cells;
    writeln!(
        out,
        "{time:<15}  {event:<8}  {proto:<5}  {sched:<5}  {fwd:<6}  {weight:>3}  {active:>6}  \
         {inactive:>6}  {flow}"
    )
}

/// The header line of `layout`.
pub fn write_header(out: &mut impl io::Write, layout: Layout) -> io::Result<()> {
    match layout {
        Layout::Addresses => line(
            out,
            [
                &"TIME", &"EVENT", &"PROTO", &"CLIENT", &"VIP", &"BACKEND", &"SCHED", &"FWD", &"W",
                &"ACT", &"INACT",
            ],
        ),
        Layout::Names => named_line(
            out,
            [
                &"TIME",
                &"EVENT",
                &"PROTO",
                &"SCHED",
                &"FWD",
                &"W",
                &"ACT",
                &"INACT",
                &"CLIENT -> SERVICE -> BACKEND on NODE",
            ],
        ),
    }
}

/// One event in `layout`.
pub fn write_row(
    out: &mut impl io::Write,
    clock: &WallClock,
    layout: Layout,
    event: &Event,
    names: &Names,
) -> io::Result<()> {
    let time = clock.time_of_day(event.timestamp_ns);
    let dest = event.dest.as_ref();
    let (sched, fwd) = (
        or_dash(event.scheduler.as_ref()),
        or_dash(event.fwd.as_ref()),
    );
    let weight = or_dash(dest.map(|d| &d.weight));
    let active = or_dash(dest.and_then(|d| d.active_conns.as_ref()));
    let inactive = or_dash(dest.and_then(|d| d.inactive_conns.as_ref()));
    let kind = event.kind.as_str();
    match layout {
        Layout::Names => named_line(
            out,
            [
                &time,
                &kind,
                &event.proto,
                sched,
                fwd,
                weight,
                active,
                inactive,
                &Flow { event, names },
            ],
        ),
        Layout::Addresses => line(
            out,
            [
                &time,
                &kind,
                &event.proto,
                &event.client,
                &event.vip,
                or_dash(event.backend.as_ref()),
                sched,
                fwd,
                weight,
                active,
                inactive,
            ],
        ),
    }
}

/// `client -> service -> backend on node`, names where known.
struct Flow<'a> {
    event: &'a Event,
    names: &'a Names<'a>,
}

impl Display for Flow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Flow { event, names } = self;
        match &names.client {
            Some(ClientName::Pod { pod, .. }) => write!(f, "{pod}")?,
            Some(ClientName::Node(node)) => write!(f, "{node}")?,
            None => write!(f, "{}", event.client)?,
        }
        match &names.service {
            Some(service) => write!(f, " -> {}", service.label)?,
            None => write!(f, " -> {}", event.vip)?,
        }
        let Some(backend) = event.backend else {
            return f.write_str(" -> (no destination)");
        };
        match &names.backend {
            Some(BackendName {
                pod: Some(pod),
                node,
                terminating,
                ..
            }) => {
                write!(f, " -> {pod}")?;
                if *terminating == Some(true) {
                    f.write_str(" (terminating)")?;
                }
                match node {
                    Some(node) => write!(f, " on {node}"),
                    None => Ok(()),
                }
            }
            _ => write!(f, " -> {backend}"),
        }
    }
}

fn or_dash<T: Display>(value: Option<&T>) -> &dyn Display {
    match value {
        Some(value) => value,
        None => &"-",
    }
}

#[cfg(test)]
mod tests {
    use crate::output::tests::{assert_golden, render, render_with, seed_index, CLOCK};
    use crate::output::{OutputFormat, Printer};

    #[test]
    fn table_golden() {
        assert_golden("table.txt", &render(OutputFormat::Table));
    }

    #[test]
    fn table_named_golden() {
        let printer = Printer::new(OutputFormat::Table, CLOCK).with_names(false);
        assert_golden(
            "table-named.txt",
            &render_with(printer, Some(&seed_index())),
        );
    }

    #[test]
    fn numeric_keeps_addresses() {
        let printer = Printer::new(OutputFormat::Table, CLOCK).with_names(true);
        assert_eq!(
            render_with(printer, Some(&seed_index())),
            render(OutputFormat::Table)
        );
    }

    #[test]
    fn a_terminating_backend_is_marked() {
        let mut index = seed_index();
        let path = crate::kube::snapshot::tests::seed_path();
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Mark every endpoint of the demo Service terminating, as during a rollout.
        for item in value["items"].as_array_mut().unwrap() {
            if item["kind"] == "EndpointSlice" {
                for endpoint in item["endpoints"].as_array_mut().unwrap() {
                    endpoint["conditions"]["terminating"] = true.into();
                }
            }
        }
        let json = serde_json::to_vec(&value).unwrap();
        crate::kube::snapshot::parse(std::path::Path::new("x"), &json, |object| {
            index.apply(crate::kube::Change::Upsert(object));
        })
        .unwrap();
        let text = render_with(
            Printer::new(OutputFormat::Table, CLOCK).with_names(false),
            Some(&index),
        );
        let first = text.lines().nth(1).unwrap();
        assert!(first.contains("656758fc8d-dgzsm (terminating)"), "{first}");
    }

    #[test]
    fn ipv4_columns_line_up_with_the_header() {
        let text = render(OutputFormat::Table);
        let lines: Vec<_> = text.lines().collect();
        let header = lines[0];
        for column in ["EVENT", "PROTO", "CLIENT", "VIP", "BACKEND", "SCHED", "FWD"] {
            let at = header.find(column).expect("column in header");
            // Rows 1, 2, 4, 5 are IPv4: each cell starts where its header does.
            for row in [1, 2, 4, 5] {
                let before = &lines[row][at - 2..at];
                assert_eq!(before, "  ", "row {row} column {column}: {:?}", lines[row]);
            }
        }
        for row in &lines {
            assert_eq!(
                row.len(),
                row.trim_end().len(),
                "no trailing spaces: {row:?}"
            );
        }
    }
}
