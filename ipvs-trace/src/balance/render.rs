//! `balance` output: a table for people, one JSON document for scripts (its field names are a
//! stable contract, see docs/balance.md).

use std::fmt::Write as _;

use serde::Serialize;

use super::{Cause, CrossCheck, Judgement, Mode, ServiceReport, SharesSource, Verdict};

/// The window the reports cover.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowInfo {
    /// RFC 3339 UTC.
    pub start: String,
    pub end: String,
    pub seconds: f64,
}

/// The whole `-o json` document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document<'a> {
    pub window: WindowInfo,
    pub tolerance: f64,
    /// The kernel's counters were read after settling, so the cross-check ran.
    pub settled: bool,
    /// Events the kernel could not deliver.
    pub events_lost: u64,
    /// Table changes dropped for lack of room (the causes may miss some).
    pub table_changes_dropped: u64,
    /// The exit status `--check` gives these reports (0 without problems).
    pub check_status: u8,
    pub services: &'a [ServiceReport],
}

/// The legend printed above the table.
pub const LEGEND: &str = "\
Counts are connections. New: scheduled by IPVS (what ipvsadm --stats counts as Conns);
Reused: a new connection that hit an existing entry and went to its backend unscheduled;
Expected: the backend's share of New + Reused for the scheduler and the weights at the start;
Kernel: growth of the kernel's Conns over the window (= equal to New, ~ equal within the
connections just outside the window, ! different, - not available).";

/// The legend's lines for random selections, printed when there is one.
pub const RANDOM_LEGEND: &str = "\
Random selection (kube-proxy's nftables and iptables modes): netfilter picks each connection's
endpoint by chance, so the counts are judged statistically, not by rr's arithmetic: uneven when
a chi-square test gives p < 0.001 and an endpoint is off by more than the tolerance; no verdict
until every endpoint expects 10 connections. Share: the endpoint's share of New, [its 99.9 %
confidence interval].";

/// The table.
#[must_use]
pub fn table(doc: &Document<'_>) -> String {
    let mut out = format!(
        "ipvs-trace balance: {} to {} ({:.1} s), tolerance {:.1} %\n{LEGEND}\n",
        doc.window.start,
        doc.window.end,
        doc.window.seconds,
        doc.tolerance * 100.0
    );
    if doc.services.iter().any(|r| r.mode == Mode::Random) {
        out.push_str(RANDOM_LEGEND);
        out.push('\n');
    }
    if doc.services.is_empty() {
        out.push_str("\nno virtual service matches the filters\n");
    }
    for report in doc.services {
        service(&mut out, report, doc.tolerance);
    }
    if doc.events_lost > 0 {
        let _ = writeln!(
            out,
            "\n{} events were lost in the kernel: counts are short (raise --ring-size)",
            doc.events_lost
        );
    }
    if !doc.settled {
        out.push_str("\nthe kernel's counters were not read after settling: no cross-check\n");
    }
    out
}

fn service(out: &mut String, r: &ServiceReport, tolerance: f64) {
    let _ = write!(out, "\n{} {} {}", r.proto, r.vip, r.scheduler);
    if r.dataplane.is_netfilter() {
        let _ = write!(out, " ({})", r.dataplane);
    }
    for flag in &r.flags {
        let _ = write!(out, " {flag}");
    }
    if let Some(name) = &r.service {
        let _ = write!(out, "  [{name}]");
    }
    let _ = writeln!(out, "  {}", verdict(r.verdict, r.mode));
    let c = r.connections;
    let _ = writeln!(
        out,
        "  connections: new={} template={} reused={} no_dest={}",
        c.new, c.template, c.reused, c.no_dest
    );
    match r.mode {
        Mode::Share => {
            let _ = write!(out, "  deviation: max {}", percent(r.max_relative_error));
            if let (Some(chi), Some(df), Some(p)) = (r.chi_square, r.degrees_of_freedom, r.p_value)
            {
                let _ = write!(out, "  chi-square {chi:.2} (df {df})  p={p:.4}");
            } else if r.p_value == Some(0.0) {
                out.push_str("  p=0 (a backend with no share got connections)");
            }
            out.push('\n');
        }
        Mode::Sticky => {
            if let Some(s) = r.stickiness {
                let _ = writeln!(
                    out,
                    "  stickiness: {} of {} clients on more than one backend",
                    s.moved, s.clients
                );
            }
        }
        Mode::Spread => {
            if let Some(s) = r.spread {
                let _ = writeln!(
                    out,
                    "  active connections: {} to {} per backend ({} balances load, not shares: not checked)",
                    s.active_min, s.active_max, r.scheduler
                );
            }
        }
        Mode::Random => {
            random(out, r, tolerance);
            return;
        }
    }
    let rows: Vec<[String; 8]> = r
        .backends
        .iter()
        .map(|b| {
            [
                b.backend.to_string(),
                weight(b.weight, b.weight_end),
                b.new.to_string(),
                b.reused.to_string(),
                b.expected.map_or_else(|| "-".into(), |e| format!("{e:.1}")),
                if b.expected.is_some() {
                    match (b.relative_error, b.beyond_tolerance) {
                        (Some(e), beyond) => {
                            format!("{:.1} %{}", e * 100.0, if beyond { " *" } else { "" })
                        }
                        (None, true) => "no share *".into(),
                        (None, false) => "-".into(),
                    }
                } else {
                    "-".into()
                },
                kernel(b.kernel_conns, b.cross_check),
                b.backend_pod.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "Backend", "Weight", "New", "Reused", "Expected", "Error", "Kernel", "Pod",
    ];
    columns(out, header, &rows);
    causes(out, r);
}

/// A random selection's judgement and endpoints.
fn random(out: &mut String, r: &ServiceReport, tolerance: f64) {
    let Some(judged) = r.random else { return };
    let shares = match judged.shares {
        SharesSource::Rules => "the rules' shares",
        SharesSource::Equal => "equal shares among the endpoints seen",
    };
    let _ = writeln!(
        out,
        "  random selection, judged statistically against {shares} (not rr's arithmetic):"
    );
    // Connections where the shares send none: p is 0, not a test's figure.
    let impossible = r
        .backends
        .iter()
        .any(|b| b.expected_share == Some(0.0) && b.received > 0);
    let test = match (r.chi_square, r.degrees_of_freedom, r.p_value) {
        _ if impossible => "p=0".to_owned(),
        (Some(chi), Some(df), Some(p)) => format!("chi-square {chi:.2} (df {df})  p={}", p_text(p)),
        _ => "no test (a single endpoint with a share)".to_owned(),
    };
    let significance = judged.significance;
    let off = |what: &str| {
        format!(
            "an endpoint off by {} ({what} the tolerance {})",
            percent(r.max_relative_error),
            percent(Some(tolerance))
        )
    };
    let fewest = r
        .backends
        .iter()
        .filter(|b| b.expected_share.is_some_and(|s| s > 0.0))
        .filter_map(|b| b.expected)
        .reduce(f64::min);
    let reason = match judged.judgement {
        Judgement::TooFew => format!(
            "no verdict: every endpoint must expect {} connections, the fewest expects {:.1}",
            judged.min_expected,
            fewest.unwrap_or(0.0)
        ),
        Judgement::Uneven if impossible => {
            "uneven: an endpoint without a share got connections".to_owned()
        }
        Judgement::Uneven => format!("uneven: p < {significance} and {}", off("beyond")),
        Judgement::Even if r.p_value.is_some_and(|p| p < significance) => {
            format!("even: p < {significance} but {}", off("within"))
        }
        Judgement::Even if r.p_value.is_none() => "even: one endpoint to choose".to_owned(),
        Judgement::Even => format!("even: p >= {significance}"),
    };
    let _ = writeln!(out, "  {test}; {reason}");
    let rows: Vec<[String; 6]> = r
        .backends
        .iter()
        .map(|b| {
            [
                b.backend.to_string(),
                b.new.to_string(),
                b.expected.map_or_else(|| "-".into(), |e| format!("{e:.1}")),
                match (b.share, b.share_low, b.share_high) {
                    (Some(s), Some(low), Some(high)) => format!(
                        "{:.1} % [{:.1}, {:.1}]",
                        s * 100.0,
                        low * 100.0,
                        high * 100.0
                    ),
                    _ => "-".into(),
                },
                match (b.relative_error, b.beyond_tolerance) {
                    (Some(e), beyond) => {
                        format!("{:.1} %{}", e * 100.0, if beyond { " *" } else { "" })
                    }
                    (None, true) => "no share *".into(),
                    (None, false) => "-".into(),
                },
                b.backend_pod.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    columns(
        out,
        [
            "Backend",
            "New",
            "Expected",
            "Share [99.9 %]",
            "Error",
            "Pod",
        ],
        &rows,
    );
    causes(out, r);
}

/// Rows under a header, each column as wide as its widest cell, the last one unpadded.
fn columns<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let header = header.map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        out.push_str("    ");
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    }
}

fn causes(out: &mut String, r: &ServiceReport) {
    if r.causes.is_empty() {
        out.push_str("  causes: none seen\n");
    } else {
        out.push_str("  causes:\n");
        for cause in &r.causes {
            let _ = writeln!(out, "    {}", cause_text(cause));
        }
    }
}

fn verdict(v: Verdict, mode: Mode) -> &'static str {
    match (v, mode) {
        (Verdict::Balanced, Mode::Random) => "even",
        (Verdict::NotChecked, Mode::Random) => "no verdict (too few connections)",
        (Verdict::Deviates, Mode::Random) => "UNEVEN (causes below)",
        (Verdict::Unexplained, Mode::Random) => "UNEVEN (no cause seen)",
        (Verdict::Balanced, _) => "balanced",
        (Verdict::NotChecked, _) => "not checked",
        (Verdict::Deviates, _) => "DEVIATES (causes below)",
        (Verdict::Unexplained, _) => "DEVIATES (no cause seen)",
    }
}

/// A p-value: four decimals, or two significant digits below 0.0001.
fn p_text(p: f64) -> String {
    if p >= 1e-4 || p == 0.0 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{:.1} %", v * 100.0))
}

fn weight(start: Option<u32>, end: Option<u32>) -> String {
    let text = |w: Option<u32>| w.map_or_else(|| "-".into(), |w| w.to_string());
    if start == end {
        text(start)
    } else {
        format!("{}->{}", text(start), text(end))
    }
}

fn kernel(conns: Option<u64>, check: CrossCheck) -> String {
    match (conns, check) {
        (Some(n), CrossCheck::Exact) => format!("{n} ="),
        (Some(n), CrossCheck::WithinEdges) => format!("{n} ~"),
        (Some(n), _) => format!("{n} !"),
        (None, _) => "-".into(),
    }
}

fn cause_text(cause: &Cause) -> String {
    let mut text = cause.cause.to_owned();
    if let Some(backend) = cause.backend {
        let _ = write!(text, " {backend}");
    }
    if let Some(count) = cause.count {
        let _ = write!(text, " count={count}");
    }
    if let Some(detail) = &cause.detail {
        let _ = write!(text, " ({detail})");
    }
    if let Some(at) = &cause.at {
        let _ = write!(text, " at {at}");
    }
    text
}
