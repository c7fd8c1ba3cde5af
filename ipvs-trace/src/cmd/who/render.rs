//! Printing an answer: its JSON lines as they came (`-o json`), or a table for people.
//!
//! The table has the addresses in fixed columns and the names in the last, free-width one
//! (pod names run past 60 characters; a long IPv6 address widens its own line only, as in
//! `trace`'s table). TIME is UTC to the millisecond, `-` when the source has none (the
//! kernel's connection table). With `--cluster` a NODE-ASKED column says which node's
//! ipvs-trace answered for the line.

use std::fmt::{self, Display};
use std::io;

use super::line::Line;
use crate::clock;
use crate::output::OutputFormat;

/// One decision of the answer: its JSON line, and the node whose ipvs-trace gave it
/// (`--cluster` only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub node: Option<String>,
    pub json: String,
}

/// Writes `rows` in `format`; `with_node` adds the NODE-ASKED column to the table. Returns how
/// many lines the table could not read as decisions (they are left out of it).
pub fn write(
    out: &mut impl io::Write,
    format: OutputFormat,
    rows: &[Row],
    with_node: bool,
) -> io::Result<usize> {
    match format {
        OutputFormat::Json => {
            for row in rows {
                out.write_all(row.json.as_bytes())?;
                out.write_all(b"\n")?;
            }
            Ok(0)
        }
        OutputFormat::Table => {
            let mut unreadable = 0;
            header(out, with_node)?;
            for row in rows {
                match Line::parse(&row.json) {
                    Ok(line) => table_row(out, row.node.as_deref().filter(|_| with_node), &line)?,
                    Err(_) => unreadable += 1,
                }
            }
            Ok(unreadable)
        }
    }
}

const NAMES_HEADER: &str = "CLIENT POD -> SERVICE -> BACKEND POD on NODE";

fn header(out: &mut impl io::Write, with_node: bool) -> io::Result<()> {
    if with_node {
        write!(out, "{:<24}  {:<23}  ", "TIME", "NODE-ASKED")?;
    } else {
        write!(out, "{:<24}  ", "TIME")?;
    }
    writeln!(
        out,
        "{:<8}  {:<5}  {:<21}  {:<21}  {:<21}  {NAMES_HEADER}",
        "EVENT", "PROTO", "CLIENT", "VIP", "BACKEND"
    )
}

fn table_row(out: &mut impl io::Write, node: Option<&str>, line: &Line) -> io::Result<()> {
    let time = line
        .time
        .as_deref()
        .and_then(|t| clock::parse_rfc3339(t).ok())
        .map_or_else(|| "-".to_owned(), millis);
    match node {
        Some(node) => write!(out, "{time:<24}  {node:<23}  ")?,
        None => write!(out, "{time:<24}  ")?,
    }
    let dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
    writeln!(
        out,
        "{:<8}  {:<5}  {:<21}  {:<21}  {:<21}  {}",
        dash(&line.event),
        dash(&line.proto),
        dash(&line.client),
        dash(&line.vip),
        dash(&line.backend),
        Names(line)
    )
}

/// `2026-12-07T14:03:00.123Z`.
fn millis(unix_ns: i128) -> String {
    let mut text = clock::format_rfc3339(unix_ns);
    // `...:00.123456789Z`: keep three digits of the fraction.
    text.truncate(text.len() - "456789Z".len());
    text.push('Z');
    text
}

/// `client pod -> service -> backend pod (terminating) on node`, `-` for a part not known,
/// and `-` alone when no name is known at all.
struct Names<'a>(&'a Line);

impl Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.0;
        if line.client_pod.is_none()
            && line.service.is_none()
            && line.backend_pod.is_none()
            && line.backend_node.is_none()
        {
            return f.write_str("-");
        }
        let or_dash = |value: &Option<String>| value.as_deref().unwrap_or("-").to_owned();
        write!(
            f,
            "{} -> {}",
            or_dash(&line.client_pod),
            or_dash(&line.service)
        )?;
        if line.backend.is_none() {
            return f.write_str(" -> (no destination)");
        }
        write!(f, " -> {}", or_dash(&line.backend_pod))?;
        if line.backend_terminating == Some(true) {
            f.write_str(" (terminating)")?;
        }
        match &line.backend_node {
            Some(node) => write!(f, " on {node}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::assert_golden;

    const NAMED: &str = include_str!("../../../tests/golden/events-named.jsonl");
    const RAW: &str = include_str!("../../../tests/golden/events.jsonl");

    fn rows(text: &str, node: Option<&str>) -> Vec<Row> {
        text.lines()
            .map(|json| Row {
                node: node.map(str::to_owned),
                json: json.to_owned(),
            })
            .collect()
    }

    fn render(format: OutputFormat, rows: &[Row], with_node: bool) -> (String, usize) {
        let mut out = Vec::new();
        let unreadable = write(&mut out, format, rows, with_node).unwrap();
        (String::from_utf8(out).unwrap(), unreadable)
    }

    #[test]
    fn json_passes_the_lines_through_unchanged() {
        let mut input = rows(NAMED, None);
        // Even what the table could not read: JSON output is what the source said.
        input.push(Row {
            node: None,
            json: r#"{"time":"x","future_field":1}"#.to_owned(),
        });
        let (text, unreadable) = render(OutputFormat::Json, &input, false);
        assert_eq!(unreadable, 0);
        assert_eq!(
            text,
            format!("{NAMED}{{\"time\":\"x\",\"future_field\":1}}\n")
        );
    }

    #[test]
    fn table_golden() {
        let mut input = rows(NAMED, None);
        input.extend(rows(RAW, None));
        // A line from the kernel's connection table: no time, no names.
        input.push(Row {
            node: None,
            json: Line {
                event: Some("new".into()),
                proto: Some("TCP".into()),
                client: Some("198.51.100.7:52614".into()),
                vip: Some("10.245.96.43:32380".into()),
                backend: Some("10.245.113.15:8080".into()),
                ..Line::default()
            }
            .to_json(),
        });
        input.push(Row {
            node: None,
            json: "garbage".to_owned(),
        });
        let (text, unreadable) = render(OutputFormat::Table, &input, false);
        assert_eq!(unreadable, 1);
        assert_golden("who-table.txt", &text);
        for row in text.lines() {
            assert_eq!(row.len(), row.trim_end().len(), "trailing spaces: {row:?}");
        }
    }

    #[test]
    fn cluster_table_golden() {
        let mut input = rows(NAMED, Some("cn-beijing.10.245.96.43"));
        input.truncate(2);
        input.extend(
            rows(RAW, Some("cn-beijing.10.245.96.44"))
                .into_iter()
                .take(1),
        );
        let (text, _) = render(OutputFormat::Table, &input, true);
        assert_golden("who-table-cluster.txt", &text);
        // Without --cluster the node of a row is not shown even if known.
        let (plain, _) = render(OutputFormat::Table, &input, false);
        assert!(
            !plain.contains("NODE-ASKED") && !plain.contains("96.44"),
            "{plain}"
        );
    }

    #[test]
    fn times_are_utc_milliseconds() {
        assert_eq!(
            millis(1_795_713_172_123_456_789),
            "2026-11-26T17:12:52.123Z"
        );
        assert_eq!(millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_terminating_backend_is_marked() {
        let line = Line {
            service: Some("ratel/web:http".into()),
            backend: Some("10.245.112.32:8080".into()),
            backend_pod: Some("ratel/web-1".into()),
            backend_terminating: Some(true),
            ..Line::default()
        };
        assert_eq!(
            Names(&line).to_string(),
            "- -> ratel/web:http -> ratel/web-1 (terminating)"
        );
    }
}
