//! Rendering a [`Frame`]: on a terminal with ratatui ([`draw`]), or as plain text for
//! `--batch` ([`text`]). Both show the same cells; the terminal drops columns that do not fit
//! and says how many rows it could not show, the text shows everything.
//!
//! The first line is always the loss line: whatever the terminal's size, a view that lost
//! events says so before anything else, highlighted.

use std::fmt::Write as _;
use std::time::Duration;

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table};

use super::model::{BackendRow, Frame, Lost, ServiceRow};

/// What the frame's header says besides the frame itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// When the frame was taken: time of day (terminal) or RFC 3339 (batch).
    pub time: String,
    /// The configured refresh interval.
    pub interval: Duration,
}

/// The table's columns, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Column {
    Name,
    Sched,
    New,
    Reused,
    NoDest,
    Share,
    Conns,
}

impl Column {
    const ALL: [Column; 7] = [
        Column::Name,
        Column::Sched,
        Column::New,
        Column::Reused,
        Column::NoDest,
        Column::Share,
        Column::Conns,
    ];
    /// Which columns a narrow terminal keeps first (the name always).
    const BY_PRIORITY: [Column; 6] = [
        Column::New,
        Column::Share,
        Column::Conns,
        Column::Reused,
        Column::NoDest,
        Column::Sched,
    ];

    fn title(self) -> &'static str {
        match self {
            Column::Name => "SERVICE / BACKEND",
            Column::Sched => "SCHED",
            Column::New => "NEW/s",
            Column::Reused => "REUSED/s",
            Column::NoDest => "NODEST/s",
            Column::Share => "SHARE",
            Column::Conns => "CONNS",
        }
    }

    /// Width of a fixed column (the name takes what is left).
    fn width(self) -> u16 {
        match self {
            Column::Name => NAME_MIN,
            Column::Sched => 5,
            Column::Share => 6,
            Column::New | Column::Reused | Column::NoDest => 9,
            Column::Conns => 10,
        }
    }
}

/// The name column never gets narrower than this while another column could be dropped.
const NAME_MIN: u16 = 18;

/// The columns that fit `width`, in display order.
fn columns_for(width: u16) -> Vec<Column> {
    let mut chosen = vec![Column::Name];
    let mut used = NAME_MIN;
    for column in Column::BY_PRIORITY {
        let needed = column.width() + 1;
        if used + needed <= width {
            used += needed;
            chosen.push(column);
        }
    }
    chosen.sort();
    chosen
}

/// The cells of a service row.
fn service_cells(service: &ServiceRow) -> [String; 7] {
    [
        service.name.clone(),
        service.scheduler.clone().unwrap_or_else(|| "-".into()),
        rate(service.rates.new),
        rate(service.rates.reused),
        rate(service.rates.no_dest),
        String::new(),
        service.total.new.to_string(),
    ]
}

/// The cells of a backend row (indented under its service).
fn backend_cells(backend: &BackendRow) -> [String; 7] {
    [
        format!("  {}", backend.name),
        String::new(),
        rate(backend.rates.new),
        rate(backend.rates.reused),
        String::new(),
        backend
            .share
            .map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0)),
        backend.total.new.to_string(),
    ]
}

fn rate(value: f64) -> String {
    format!("{value:.1}")
}

fn cell(cells: &[String; 7], column: Column) -> &str {
    &cells[Column::ALL
        .iter()
        .position(|c| *c == column)
        .expect("every column is in ALL")]
}

/// The loss line's text.
fn lost_text(lost: &Lost, interval: Duration) -> String {
    let parts = |l: &Lost| {
        let known = |n: Option<u64>| n.map_or_else(|| "unknown".into(), |n| n.to_string());
        format!(
            "ring buffer full {}, unreadable {}, malformed {}",
            known(l.losses.ring_full),
            known(l.losses.unreadable),
            l.losses.malformed
        )
    };
    match (lost.total, lost.interval) {
        (Some(0), _) => "lost: 0 events".into(),
        (Some(total), Some(now)) => format!(
            "LOST {total} EVENTS ({now} in the last {}): {}; the rates are too low, raise \
             --ring-size",
            seconds(interval),
            parts(lost)
        ),
        _ => format!(
            "LOST: UNKNOWN, a kernel drop counter could not be read ({})",
            parts(lost)
        ),
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// The summary line under the loss line.
fn header_text(frame: &Frame, header: &Header) -> String {
    format!(
        "ipvs-trace top  {}  every {}  services {}  new {}/s  reused {}/s  no_dest {}/s",
        header.time,
        seconds(header.interval),
        frame.services.len(),
        rate(frame.rates.new),
        rate(frame.rates.reused),
        rate(frame.rates.no_dest),
    )
}

fn lost_style(lost: &Lost) -> Style {
    if lost.is_zero() {
        Style::new().fg(Color::Green)
    } else {
        Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD)
    }
}

/// Draws `frame` on the whole terminal: the loss line, the header, then the table, with as
/// many columns and rows as fit.
pub fn draw(out: &mut ratatui::Frame<'_>, frame: &Frame, header: &Header) {
    let area = out.area();
    if area.height == 0 || area.width == 0 {
        return;
    }
    let line = |y: u16| Rect::new(area.x, area.y + y, area.width, 1);
    out.render_widget(
        Paragraph::new(Line::styled(
            lost_text(&frame.lost, frame.elapsed),
            lost_style(&frame.lost),
        )),
        line(0),
    );
    if area.height < 2 {
        return;
    }
    out.render_widget(
        Paragraph::new(Line::raw(format!(
            "{}  q: quit",
            header_text(frame, header)
        ))),
        line(1),
    );
    if area.height < 3 {
        return;
    }

    let columns = columns_for(area.width);
    let mut rows: Vec<(bool, [String; 7])> = Vec::new();
    for service in &frame.services {
        rows.push((true, service_cells(service)));
        rows.extend(service.backends.iter().map(|b| (false, backend_cells(b))));
    }
    // The table header takes one line; a footer says what did not fit.
    let room = usize::from(area.height - 3);
    let hidden = rows.len().saturating_sub(room);
    let shown = if hidden > 0 {
        room.saturating_sub(1)
    } else {
        rows.len()
    };
    let table_rows = rows.iter().take(shown).map(|(is_service, cells)| {
        let row = Row::new(columns.iter().map(|c| cell(cells, *c).to_owned()));
        if *is_service {
            row.style(Style::new().add_modifier(Modifier::BOLD))
        } else {
            row
        }
    });
    let widths = columns.iter().map(|c| match c {
        Column::Name => Constraint::Min(NAME_MIN),
        other => Constraint::Length(other.width()),
    });
    let table = Table::new(table_rows, widths)
        .header(
            Row::new(columns.iter().map(|c| c.title()))
                .style(Style::new().add_modifier(Modifier::REVERSED)),
        )
        .column_spacing(1);
    let table_area = Rect::new(area.x, area.y + 2, area.width, area.height - 2);
    out.render_widget(table, table_area);
    if hidden > 0 {
        let more = rows.len() - shown;
        out.render_widget(
            Paragraph::new(Line::styled(
                format!("+{more} rows not shown: a taller terminal, or --vip/--service"),
                Style::new().add_modifier(Modifier::DIM),
            )),
            line(area.height - 1),
        );
    }
}

/// One frame as plain text for `--batch`: every column and row, named services and backends
/// followed by their addresses, and a blank line after it.
#[must_use]
pub fn text(frame: &Frame, header: &Header) -> String {
    let mut rows: Vec<[String; 7]> = Vec::new();
    for service in &frame.services {
        let mut cells = service_cells(service);
        if service.named {
            cells[0] = format!("{} ({})", cells[0], join(&service.vips));
        }
        rows.push(cells);
        for backend in &service.backends {
            let mut cells = backend_cells(backend);
            if backend.named {
                cells[0] = format!("{} ({})", cells[0], join(&backend.addrs));
            }
            rows.push(cells);
        }
    }
    let name_width = rows
        .iter()
        .map(|r| r[0].chars().count())
        .chain([Column::Name.title().len(), usize::from(NAME_MIN)])
        .max()
        .unwrap_or_default();
    let mut out = format!("{}  frame {}\n", header_text(frame, header), frame.number);
    let _ = writeln!(out, "{}", lost_text(&frame.lost, frame.elapsed));
    let titles = Column::ALL.map(|c| c.title().to_owned());
    for cells in std::iter::once(&titles).chain(&rows) {
        let mut line = format!("{:<name_width$}", cells[0]);
        for (column, value) in Column::ALL.iter().zip(cells).skip(1) {
            let width = usize::from(column.width());
            let _ = write!(line, " {value:>width$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    out
}

fn join(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::EventKind;
    use crate::kube::Names;
    use crate::output::summary::Losses;
    use crate::top::model::Aggregator;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    const HEADER: Header = Header {
        time: String::new(),
        interval: Duration::from_secs(1),
    };

    fn header() -> Header {
        Header {
            time: "10:22:33".into(),
            ..HEADER
        }
    }

    /// Two services: rr over three backends (3/2/1 this interval), and a wrr one.
    fn frame(losses: &Losses) -> Frame {
        let mut agg = Aggregator::default();
        let mut event = crate::output::tests::sample_events()
            .into_iter()
            .find(|e| e.kind == EventKind::New)
            .unwrap();
        for (vip, backend, n) in [
            ("172.31.0.90:80", "10.245.19.1:8080", 3),
            ("172.31.0.90:80", "10.245.19.2:8080", 2),
            ("172.31.0.90:80", "10.245.19.3:8080", 1),
            ("172.31.0.91:80", "10.245.19.11:8080", 1),
        ] {
            event.vip = vip.parse().unwrap();
            event.backend = Some(backend.parse().unwrap());
            for _ in 0..n {
                agg.record(&event, &Names::NONE);
            }
        }
        agg.tick(Duration::from_secs(1), losses)
    }

    const CLEAN: Losses = Losses {
        ring_full: Some(0),
        unreadable: Some(0),
        malformed: 0,
        filtered: None,
        read: 0,
    };
    const LOSSY: Losses = Losses {
        ring_full: Some(1972),
        unreadable: Some(0),
        malformed: 0,
        filtered: None,
        read: 0,
    };

    fn render(frame: &Frame, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|out| draw(out, frame, &header())).unwrap();
        terminal.backend().buffer().clone()
    }

    fn line(buffer: &Buffer, y: u16) -> String {
        (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect::<String>()
            .trim_end()
            .to_owned()
    }

    fn lines(buffer: &Buffer) -> Vec<String> {
        (0..buffer.area.height).map(|y| line(buffer, y)).collect()
    }

    #[test]
    fn lost_events_are_the_first_line_highlighted_at_every_size() {
        let lossy = frame(&LOSSY);
        for (width, height) in [(100, 30), (40, 10), (20, 1), (100, 3)] {
            let buffer = render(&lossy, width, height);
            let first = line(&buffer, 0);
            assert!(
                first.starts_with(&"LOST 1972 EVENTS"[..first.len().min(16)]),
                "{width}x{height}: {:?}",
                lines(&buffer)
            );
            let style = buffer[(0, 0)].style();
            assert_eq!(
                (style.bg, style.fg),
                (Some(Color::Red), Some(Color::White)),
                "{width}x{height}"
            );
        }
        let buffer = render(&lossy, 200, 5);
        assert!(
            line(&buffer, 0).contains("ring buffer full 1972")
                && line(&buffer, 0).contains("--ring-size"),
            "{:?}",
            lines(&buffer)
        );
        // Nothing lost: said, plainly, in the same place.
        let buffer = render(&frame(&CLEAN), 80, 10);
        assert_eq!(line(&buffer, 0), "lost: 0 events");
        assert_ne!(buffer[(0, 0)].style().bg, Some(Color::Red));
        assert_eq!(buffer[(0, 0)].style().fg, Some(Color::Green));
    }

    #[test]
    fn wide_terminal_shows_every_column_and_row_busiest_first() {
        let buffer = render(&frame(&CLEAN), 100, 12);
        let lines = lines(&buffer);
        assert!(
            lines[1].starts_with("ipvs-trace top  10:22:33  every 1.0 s  services 2  new 7.0/s"),
            "{lines:#?}"
        );
        let titles: Vec<_> = lines[2].split_whitespace().collect();
        assert_eq!(
            titles,
            [
                "SERVICE", "/", "BACKEND", "SCHED", "NEW/s", "REUSED/s", "NODEST/s", "SHARE",
                "CONNS"
            ]
        );
        let words = |y: usize| lines[y].split_whitespace().collect::<Vec<_>>();
        assert_eq!(
            words(3),
            ["172.31.0.90:80/TCP", "rr", "6.0", "0.0", "0.0", "6"]
        );
        assert_eq!(words(4), ["10.245.19.1:8080", "3.0", "0.0", "50.0%", "3"]);
        assert_eq!(words(5), ["10.245.19.2:8080", "2.0", "0.0", "33.3%", "2"]);
        assert_eq!(words(6), ["10.245.19.3:8080", "1.0", "0.0", "16.7%", "1"]);
        assert_eq!(
            words(7),
            ["172.31.0.91:80/TCP", "rr", "1.0", "0.0", "0.0", "1"]
        );
        assert_eq!(words(8), ["10.245.19.11:8080", "1.0", "0.0", "100.0%", "1"]);
        assert_eq!(lines[9], "");
        // Services bold, the table header reversed.
        assert!(buffer[(0, 3)].style().add_modifier.contains(Modifier::BOLD));
        assert!(!buffer[(2, 4)].style().add_modifier.contains(Modifier::BOLD));
        assert!(buffer[(0, 2)]
            .style()
            .add_modifier
            .contains(Modifier::REVERSED));
    }

    #[test]
    fn narrow_terminal_keeps_name_rate_and_share() {
        let buffer = render(&frame(&CLEAN), 40, 12);
        let lines = lines(&buffer);
        let titles: Vec<_> = lines[2].split_whitespace().collect();
        assert_eq!(
            titles,
            ["SERVICE", "/", "BACKEND", "NEW/s", "SHARE"],
            "{lines:#?}"
        );
        let words: Vec<_> = lines[4].split_whitespace().collect();
        assert_eq!(words, ["10.245.19.1:8080", "3.0", "50.0%"]);
        // Narrower than the name column: the name alone, cut, still readable.
        let buffer = render(&frame(&CLEAN), 16, 6);
        assert_eq!(line(&buffer, 3), "172.31.0.90:80/T");
    }

    #[test]
    fn short_terminal_says_how_many_rows_it_hides() {
        let buffer = render(&frame(&CLEAN), 80, 6);
        let lines = lines(&buffer);
        assert!(lines[0].starts_with("lost: 0"), "{lines:#?}");
        assert!(lines[3].starts_with("172.31.0.90:80/TCP"), "{lines:#?}");
        assert!(
            lines[4].trim_start().starts_with("10.245.19.1:8080"),
            "{lines:#?}"
        );
        assert!(lines[5].starts_with("+4 rows not shown"), "{lines:#?}");
    }

    #[test]
    fn batch_text_has_every_row_and_the_totals() {
        let text = text(&frame(&LOSSY), &header());
        let expected = "\
ipvs-trace top  10:22:33  every 1.0 s  services 2  new 7.0/s  reused 0.0/s  no_dest 0.0/s  frame 1
LOST 1972 EVENTS (1972 in the last 1.0 s): ring buffer full 1972, unreadable 0, malformed 0; the rates are too low, raise --ring-size
SERVICE / BACKEND   SCHED     NEW/s  REUSED/s  NODEST/s  SHARE      CONNS
172.31.0.90:80/TCP     rr       6.0       0.0       0.0                 6
  10.245.19.1:8080              3.0       0.0            50.0%          3
  10.245.19.2:8080              2.0       0.0            33.3%          2
  10.245.19.3:8080              1.0       0.0            16.7%          1
172.31.0.91:80/TCP     rr       1.0       0.0       0.0                 1
  10.245.19.11:8080             1.0       0.0           100.0%          1

";
        assert_eq!(text, expected);
    }
}
