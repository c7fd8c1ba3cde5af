//! The human table: one aligned line per event under a header.
//!
//! Output is streamed, so column widths are fixed up front, sized for IPv4 `ip:port`
//! (21 characters); a longer IPv6 address widens its own line only. What is unknown prints as
//! `-`. TIME is UTC.

use std::fmt::Display;
use std::io;

use crate::clock::WallClock;
use crate::events::Event;

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

/// One event.
pub fn write_row(out: &mut impl io::Write, clock: &WallClock, event: &Event) -> io::Result<()> {
    let time = clock.time_of_day(event.timestamp_ns);
    let dest = event.dest.as_ref();
    line(
        out,
        [
            &time,
            &event.kind.as_str(),
            &event.proto,
            &event.client,
            &event.vip,
            or_dash(event.backend.as_ref()),
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
    use crate::output::tests::{assert_golden, render};
    use crate::output::OutputFormat;

    #[test]
    fn table_golden() {
        assert_golden("table.txt", &render(OutputFormat::Table));
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
