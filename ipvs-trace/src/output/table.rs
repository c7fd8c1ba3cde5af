//! The human table: one aligned line per event under a header.
//!
//! Output is streamed, so column widths are fixed up front, sized for IPv4 `ip:port`
//! (21 characters); a longer IPv6 address widens its own line only. What is unknown prints as
//! `-`. TIME is UTC. With a Kubernetes source, CLIENT, VIP and BACKEND show names (client pod or
//! node, `namespace/service:port`, backend pod) where the index knows them; longer names widen
//! their own line the same way.

use std::fmt::Display;
use std::io;

use crate::clock::WallClock;
use crate::events::Event;
use crate::kube::{BackendName, ClientName, Names};

/// Renders one line in the table's layout.
fn line<W: io::Write>(out: &mut W, cells: [&dyn Display; 11]) -> io::Result<()> {
    let [time, event, proto, client, vip, backend, sched, fwd, weight, active, inactive] = cells;
    writeln!(
        out,
        "{time:<15}  {event:<8}  {proto:<5}  {client:<21}  {vip:<21}  {backend:<21}  \
         {sched:<5}  {fwd:<6}  {weight:>3}  {active:>6}  {inactive:>6}"
    )
}

/// The header line.
pub fn write_header(out: &mut impl io::Write) -> io::Result<()> {
    line(
        out,
        [
            &"TIME", &"EVENT", &"PROTO", &"CLIENT", &"VIP", &"BACKEND", &"SCHED", &"FWD", &"W",
            &"ACT", &"INACT",
        ],
    )
}

/// One event; an address whose name is known shows the name instead (`names` is empty under
/// `--numeric`).
pub fn write_row(
    out: &mut impl io::Write,
    clock: &WallClock,
    event: &Event,
    names: &Names,
) -> io::Result<()> {
    let time = clock.time_of_day(event.timestamp_ns);
    let dest = event.dest.as_ref();
    let client: &dyn Display = match &names.client {
        Some(ClientName::Pod { pod, .. }) => pod,
        Some(ClientName::Node(node)) => node,
        None => &event.client,
    };
    let vip: &dyn Display = match &names.service {
        Some(service) => &service.label,
        None => &event.vip,
    };
    // A terminating endpoint is what users chase when traffic goes to a pod on its way out:
    // marked where it shows. Rare, so the allocation does not matter.
    let marked;
    let backend: &dyn Display = match &names.backend {
        Some(BackendName {
            pod: Some(pod),
            terminating,
            ..
        }) => {
            if *terminating == Some(true) {
                marked = format!("{pod} (terminating)");
                &marked
            } else {
                pod
            }
        }
        _ => or_dash(event.backend.as_ref()),
    };
    line(
        out,
        [
            &time,
            &event.kind.as_str(),
            &event.proto,
            client,
            vip,
            backend,
            or_dash(event.scheduler.as_ref()),
            or_dash(event.fwd.as_ref()),
            or_dash(dest.map(|d| &d.weight)),
            or_dash(dest.map(|d| &d.active_conns)),
            or_dash(dest.map(|d| &d.inactive_conns)),
        ],
    )
}

/// The value, or `-` when it does not apply or could not be read.
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
        let printer = Printer::new(OutputFormat::Table, CLOCK);
        assert_golden(
            "table-named.txt",
            &render_with(printer, Some(&seed_index())),
        );
    }

    #[test]
    fn numeric_keeps_addresses() {
        let printer = Printer::new(OutputFormat::Table, CLOCK).numeric(true);
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
        let snapshot = crate::kube::snapshot::parse(std::path::Path::new("x"), value).unwrap();
        for object in snapshot.objects {
            index.apply(crate::kube::Change::Upsert(object));
        }
        let text = render_with(Printer::new(OutputFormat::Table, CLOCK), Some(&index));
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
