//! `rules -o table`: the `ipvsadm -Ln` view (or its `--stats`, `--rate` columns), with a
//! legend and the names in a last column; then a section per netfilter dataplane, each Service
//! with its endpoints and their probabilities.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::select::{Named, NamedNf, View};
use crate::dataplane::Dataplane;
use crate::ipvs::{Family, Service, Stats, Tables};
use crate::kube::{BackendName, ServiceName};

/// The table's counter columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    /// Forward, Weight, ActiveConn, InActConn (`ipvsadm -Ln`).
    Connections,
    /// Conns, InPkts, OutPkts, InBytes, OutBytes (`ipvsadm -Ln --stats --exact`).
    Stats,
    /// CPS, InPPS, OutPPS, InBPS, OutBPS (`ipvsadm -Ln --rate --exact`).
    Rate,
}

/// The flags as `ipvsadm -Ln` prints them after the scheduler: scheduler flags in
/// parentheses, then `persistent TIMEOUT [mask MASK] [pe NAME]`, then `ops`.
fn flags_text(service: &Service) -> String {
    let mut text = String::new();
    let sched: Vec<String> = service
        .flags
        .names(&service.scheduler)
        .into_iter()
        .filter(|name| !matches!(name.as_str(), "persistent" | "hashed" | "one-packet"))
        .collect();
    if !sched.is_empty() {
        let _ = write!(text, " ({})", sched.join(","));
    }
    if service.flags.persistent() {
        let _ = write!(text, " persistent {}", service.timeout);
        if !service.netmask.is_default() {
            let _ = write!(text, " mask {}", service.netmask);
        }
        if let Some(pe) = &service.persistence_engine {
            let _ = write!(text, " pe {pe}");
        }
    }
    if service.flags.one_packet() {
        text.push_str(" ops");
    }
    text
}

/// `TCP  172.31.0.10:80 rr persistent 60`, `FWM  5 rr`, `FWM  5 IPv6 rr`.
fn service_label(service: &Service) -> String {
    let v6_mark = service.fwmark.is_some() && service.family == Family::V6;
    format!(
        "{}  {}{} {}{}",
        service.proto_label(),
        service.key(),
        if v6_mark { " IPv6" } else { "" },
        service.scheduler,
        flags_text(service)
    )
}

fn service_name_text(name: Option<&ServiceName>) -> String {
    name.map_or_else(
        || "-".to_owned(),
        |n| format!("{} ({})", n.label, n.service_type.as_str()),
    )
}

fn backend_name_text(name: Option<&BackendName>) -> String {
    let Some(BackendName {
        pod: Some(pod),
        node,
        terminating,
        ..
    }) = name
    else {
        return "-".to_owned();
    };
    let mut text = pod.to_string();
    if *terminating == Some(true) {
        text.push_str(" (terminating)");
    }
    if let Some(node) = node {
        let _ = write!(text, " on {node}");
    }
    text
}

/// One table row: the label (service or `  -> real server`), the counter cells, the name.
struct Row {
    label: String,
    cells: Vec<String>,
    name: Option<String>,
}

fn counters(stats: &Stats, columns: Columns) -> Vec<String> {
    let values = match columns {
        Columns::Stats => [
            stats.conns,
            stats.in_pkts,
            stats.out_pkts,
            stats.in_bytes,
            stats.out_bytes,
        ],
        Columns::Rate | Columns::Connections => [
            stats.cps,
            stats.in_pps,
            stats.out_pps,
            stats.in_bps,
            stats.out_bps,
        ],
    };
    values.iter().map(u64::to_string).collect()
}

const LEGEND_CONNECTIONS: &str = "\
Forward: Masq = NAT, Route = DR, Tunnel = IPIP, Local. Weight: share of new connections.
ActiveConn, InActConn: COUNTS OF CONNECTIONS (not bytes): ESTABLISHED TCP ones, all others.";
const LEGEND_STATS: &str = "\
Since each service / real server was added: Conns = connections scheduled, InPkts, OutPkts =
packets, InBytes, OutBytes = bytes.";
const LEGEND_RATE: &str = "\
Per second, the kernel's estimate over the last seconds: CPS = connections, InPPS, OutPPS =
packets, InBPS, OutBPS = bytes.";

/// The table: the IPVS section (or a line saying there is no IPVS), then a section per
/// netfilter dataplane the namespace has.
pub(super) fn write_table(
    out: &mut impl Write,
    view: &View<'_>,
    columns: Columns,
    with_names: bool,
) -> io::Result<()> {
    if let Some(tables) = view.tables {
        write_ipvs(out, tables, view.netns, &view.ipvs, columns, with_names)?;
    } else {
        write!(
            out,
            "IP Virtual Server: not loaded (no ip_vs module), no virtual services"
        )?;
        netns_suffix(out, view.netns)?;
    }
    for dataplane in [Dataplane::Nftables, Dataplane::Iptables] {
        if !view.dataplanes.contains(&dataplane) {
            continue;
        }
        let services: Vec<&NamedNf<'_>> = view
            .netfilter
            .iter()
            .filter(|v| v.service.dataplane() == dataplane)
            .collect();
        writeln!(out)?;
        write_netfilter(out, dataplane, &services, with_names)?;
    }
    Ok(())
}

fn netns_suffix(out: &mut impl Write, netns: Option<u64>) -> io::Result<()> {
    match netns {
        Some(inode) => writeln!(out, ", network namespace {inode}"),
        None => writeln!(out),
    }
}

const LEGEND_NFTABLES: &str = "\
numgen random: each new connection goes to an endpoint at random, with the probability shown.";
const LEGEND_IPTABLES: &str = "\
statistic random rules in turn: each new connection goes to an endpoint at random, with the
probability shown (each rule's probability times the share earlier rules left).";

/// One netfilter dataplane's section: its source tables, a legend, the Services with their
/// endpoints and the probability of each.
fn write_netfilter(
    out: &mut impl Write,
    dataplane: Dataplane,
    services: &[&NamedNf<'_>],
    with_names: bool,
) -> io::Result<()> {
    let mut sources: Vec<&str> = services.iter().map(|v| v.service.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let (title, legend) = match dataplane {
        Dataplane::Nftables => (
            "kube-proxy nftables mode (tables ip kube-proxy, ip6 kube-proxy)".to_owned(),
            LEGEND_NFTABLES,
        ),
        _ => (
            if sources.is_empty() {
                "kube-proxy iptables mode (nat table, KUBE-SERVICES)".to_owned()
            } else {
                format!(
                    "kube-proxy iptables mode (nat table, KUBE-SERVICES; {})",
                    sources.join(", ")
                )
            },
            LEGEND_IPTABLES,
        ),
    };
    writeln!(out, "{title}")?;
    writeln!(out, "{legend}")?;
    let mut rows = vec![
        Row {
            label: "Prot LocalAddress:Port Scheduler".to_owned(),
            cells: Vec::new(),
            name: with_names.then(|| "SERVICE (TYPE)".to_owned()),
        },
        Row {
            label: "  -> RemoteAddress:Port".to_owned(),
            cells: vec!["Probability".to_owned()],
            name: with_names.then(|| "POD on NODE".to_owned()),
        },
    ];
    for view in services {
        let service = view.service;
        rows.push(Row {
            label: format!(
                "{}  {} random{}",
                service.proto,
                service.vip,
                if service.node_port { " nodeport" } else { "" }
            ),
            cells: Vec::new(),
            name: with_names.then(|| match (&view.name, &service.name) {
                (Some(name), _) => service_name_text(Some(name)),
                (None, Some(label)) => format!("{label} (kube-proxy's rules)"),
                (None, None) => "-".to_owned(),
            }),
        });
        for (endpoint, backend) in &view.endpoints {
            rows.push(Row {
                label: format!("  -> {}", endpoint.addr),
                cells: vec![format!("{:.4}", endpoint.probability)],
                name: with_names.then(|| backend_name_text(backend.as_ref())),
            });
        }
    }
    render_rows(out, &rows, 1, false)
}

/// The IPVS section: a legend, two header lines as in ipvsadm, one line per service and real
/// server.
fn write_ipvs(
    out: &mut impl Write,
    tables: &Tables,
    netns: Option<u64>,
    views: &[Named<'_>],
    columns: Columns,
    with_names: bool,
) -> io::Result<()> {
    write!(
        out,
        "IP Virtual Server version {} (size={})",
        tables.info.version_string(),
        tables.info.conn_table_size
    )?;
    netns_suffix(out, netns)?;
    let (legend, headings, numeric) = match columns {
        Columns::Connections => (
            LEGEND_CONNECTIONS,
            ["Forward", "Weight", "ActiveConn", "InActConn"].as_slice(),
            false,
        ),
        Columns::Stats => (
            LEGEND_STATS,
            ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"].as_slice(),
            true,
        ),
        Columns::Rate => (
            LEGEND_RATE,
            ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"].as_slice(),
            true,
        ),
    };
    writeln!(out, "{legend}")?;
    let heading = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut rows = vec![
        // ipvsadm puts the counter headings on the service line when services have counters
        // (--stats, --rate), and on the real-server line otherwise.
        Row {
            label: "Prot LocalAddress:Port Scheduler Flags".to_owned(),
            cells: if numeric {
                heading(headings)
            } else {
                Vec::new()
            },
            name: with_names.then(|| "SERVICE (TYPE)".to_owned()),
        },
        Row {
            label: "  -> RemoteAddress:Port".to_owned(),
            cells: if numeric {
                Vec::new()
            } else {
                heading(headings)
            },
            name: with_names.then(|| "POD on NODE".to_owned()),
        },
    ];
    for view in views {
        rows.push(Row {
            label: service_label(view.service),
            cells: if numeric {
                counters(&view.service.stats, columns)
            } else {
                Vec::new()
            },
            name: with_names.then(|| service_name_text(view.name.as_ref())),
        });
        for (dest, backend) in &view.dests {
            rows.push(Row {
                label: format!("  -> {}", dest.addr),
                cells: if numeric {
                    counters(&dest.stats, columns)
                } else {
                    vec![
                        dest.fwd.to_string(),
                        dest.weight.to_string(),
                        dest.active_conns.to_string(),
                        dest.inactive_conns.to_string(),
                    ]
                },
                name: with_names.then(|| backend_name_text(backend.as_ref())),
            });
        }
    }
    // Only rows with counters set the label column's width: in the connection view a service
    // line carries none, and its flags (`persistent 60 mask ...`) would otherwise push every
    // real server's columns far right.
    render_rows(out, &rows, headings.len(), numeric)
}

/// Writes `rows` aligned: the labels, `columns` counter columns (right-aligned when
/// `numeric`), then the names.
fn render_rows(
    out: &mut impl Write,
    rows: &[Row],
    columns: usize,
    numeric: bool,
) -> io::Result<()> {
    let label_width = rows
        .iter()
        .filter(|r| !r.cells.is_empty())
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(&row.cells) {
            *width = (*width).max(cell.len());
        }
    }
    let name_column = label_width + widths.iter().map(|w| w + 2).sum::<usize>();
    for row in rows {
        let mut line = row.label.clone();
        if !row.cells.is_empty() {
            line = format!("{line:<label_width$}");
            for (cell, width) in row.cells.iter().zip(&widths) {
                // Counters right-aligned as in `ipvsadm --stats`; the connection view's
                // columns left-aligned as in `ipvsadm -Ln`.
                if numeric {
                    let _ = write!(line, "  {cell:>width$}");
                } else {
                    let _ = write!(line, "  {cell:<width$}");
                }
            }
        }
        if let Some(name) = &row.name {
            line = format!("{:<name_column$}  {name}", line.trim_end());
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::rules::select::RulesFilter;
    use crate::cmd::rules::{captured, captured_netfilter, captured_on};
    use crate::netfilter::NetfilterRules;
    use crate::output::tests::{assert_golden, seed_index};

    fn render(
        tables: Option<&Tables>,
        rules: &NetfilterRules,
        filter: &RulesFilter,
        columns: Columns,
        named: bool,
    ) -> String {
        let index = seed_index();
        let view = View::new(
            tables,
            rules,
            named.then_some(&index),
            filter,
            Some(4_026_531_840),
        );
        let mut out = Vec::new();
        write_table(&mut out, &view, columns, named).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn table(filter: &RulesFilter, columns: Columns, named: bool) -> String {
        let tables = captured();
        render(
            Some(&tables),
            &NetfilterRules::default(),
            filter,
            columns,
            named,
        )
    }

    /// A node half-way through a migration: IPVS, kube-proxy's nftables tables and its
    /// iptables-nft rules, each a section; and a node without ip_vs.
    #[test]
    fn netfilter_sections_golden() {
        let tables = captured();
        let rules = captured_netfilter();
        let filter = RulesFilter::default();
        let mixed = render(Some(&tables), &rules, &filter, Columns::Connections, true);
        assert_golden("rules-netfilter.txt", &mixed);
        let alone = render(None, &rules, &filter, Columns::Connections, false);
        assert!(
            alone.starts_with("IP Virtual Server: not loaded (no ip_vs module)"),
            "{alone}"
        );
        assert!(
            alone.contains("TCP  0.0.0.0:30443 random nodeport"),
            "{alone}"
        );
        assert!(alone.contains("  -> 10.181.0.3:8080     0.3333"), "{alone}");
    }

    #[test]
    fn table_golden() {
        assert_golden(
            "rules-named.txt",
            &table(&RulesFilter::default(), Columns::Connections, true),
        );
        assert_golden(
            "rules-stats.txt",
            &table(&RulesFilter::default(), Columns::Stats, false),
        );
        let rate = table(&RulesFilter::default(), Columns::Rate, false);
        assert!(rate.contains("CPS  InPPS  OutPPS  InBPS  OutBPS"), "{rate}");
    }

    #[test]
    fn flags_as_ipvsadm_prints_them() {
        for kernel in ["5.10", "6.1", "6.12", "7.2"] {
            let tables = captured_on(kernel);
            let labels: Vec<String> = tables.services.iter().map(service_label).collect();
            let ipvsadm = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/netlink")
                    .join(kernel)
                    .join("ipvsadm-Ln.txt"),
            )
            .unwrap();
            // Every service line of ipvsadm, as ipvsadm wrote it (trailing blanks aside).
            let lines: Vec<&str> = ipvsadm
                .lines()
                .skip(3)
                .filter(|l| !l.starts_with("  ->"))
                .collect();
            assert_eq!(lines.len(), labels.len(), "{kernel}");
            for line in lines {
                assert!(
                    labels.iter().any(|l| l == line.trim_end()),
                    "{kernel}: {line:?} not in {labels:#?}"
                );
            }
        }
    }
}
