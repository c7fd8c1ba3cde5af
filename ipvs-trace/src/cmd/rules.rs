//! `ipvs-trace rules`: the IPVS tables of this network namespace (the `ipvsadm -Ln` view) with
//! the Kubernetes Service, pod and node behind each address.
//!
//! The tables are read over netlink on a blocking thread while the Kubernetes names load; live
//! watches get a few seconds to sync (a table printed once is worth the wait), then whatever is
//! known is printed and the rest stays raw, with a warning.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::notice;
use crate::events::Proto;
use crate::filter::{AddrMatch, ServiceMatch};
use crate::ipvs::{self, Dest, Family, Service, Stats, Tables};
use crate::kube::source::{self, Ambient, NameSource, Opened};
use crate::kube::{namespace_of, BackendName, Index, ServiceName};
use crate::output::OutputFormat;

/// How long live watches may take to sync before the table is printed without (some) names.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything `rules` needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    pub output: OutputFormat,
    pub columns: Columns,
    pub filter: RulesFilter,
    /// Table shows addresses only.
    pub numeric: bool,
    pub names: NameSource,
    /// `--debug-dump-netlink DIR`.
    pub record: Option<PathBuf>,
}

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

/// `--vip`, `--backend`, `--proto`, `--namespace`, `--service`; an absent one matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulesFilter {
    pub vip: Option<AddrMatch>,
    /// Keeps the services that have this real server, and of them only its line.
    pub backend: Option<AddrMatch>,
    pub proto: Option<Proto>,
    pub namespace: Option<String>,
    pub service: Option<ServiceMatch>,
}

impl RulesFilter {
    fn uses_names(&self) -> bool {
        self.namespace.is_some() || self.service.is_some()
    }
}

/// A virtual service with its names, as printed.
#[derive(Debug)]
struct Named<'a> {
    service: &'a Service,
    name: Option<ServiceName>,
    dests: Vec<(&'a Dest, Option<BackendName>)>,
}

/// Runs `ipvs-trace rules`.
pub async fn run(config: RulesConfig) -> anyhow::Result<()> {
    let names = source::open(
        &config.names,
        &Ambient::detect(),
        config.filter.uses_names(),
    )?;
    let record = config.record.clone();
    // The netlink round trips run while the watches list.
    let tables = tokio::task::spawn_blocking(move || match record {
        Some(dir) => ipvs::read_tables_recording(&dir),
        None => ipvs::read_tables(),
    });
    if let Opened::Live(_, live) = &names {
        if !live.wait_synced(SYNC_TIMEOUT).await {
            tracing::warn!(
                "the Kubernetes names did not sync within {} s: addresses without a name \
                 print raw ({})",
                SYNC_TIMEOUT.as_secs(),
                live.summary_lines().join("; ")
            );
        }
    }
    let tables = tables
        .await
        .context("the netlink reader thread failed")?
        .context("reading the IPVS tables")?;

    let index = names.index().map(|shared| {
        shared
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    let views = select(&tables, index.as_deref(), &config.filter);
    let with_names = index.is_some() && !config.numeric;
    drop(index);

    let netns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
    let mut out = io::BufWriter::new(io::stdout().lock());
    match config.output {
        OutputFormat::Table => {
            write_table(&mut out, &tables, netns, &views, config.columns, with_names)?;
        }
        OutputFormat::Json => write_json(&mut out, &tables, netns, &views)?,
    }
    out.flush().context("writing to stdout")?;
    if tables.services.is_empty() {
        notice(
            "ipvs-trace: no virtual services in this network namespace (kube-proxy's are in \
             the node's host namespace; is this a pod or a container?)",
        );
    } else if views.is_empty() {
        notice("ipvs-trace: no virtual service matches the filters");
    }
    Ok(())
}

/// The services (and real servers) to print, with their names.
fn select<'a>(tables: &'a Tables, index: Option<&Index>, filter: &RulesFilter) -> Vec<Named<'a>> {
    let mut views = Vec::new();
    for service in &tables.services {
        if filter.proto.is_some_and(|p| service.proto != Some(p))
            || filter
                .vip
                .is_some_and(|vip| !service.addr.is_some_and(|a| vip.matches(a)))
        {
            continue;
        }
        // A firewall-mark service has no address and no protocol to look names up by.
        let name = index
            .zip(service.proto.zip(service.addr))
            .and_then(|(index, (proto, addr))| index.service_for(proto, addr));
        let dests: Vec<_> = service
            .dests
            .iter()
            .filter(|d| filter.backend.is_none_or(|want| want.matches(d.addr)))
            .map(|d| {
                let backend = index
                    .zip(service.proto)
                    .and_then(|(index, proto)| index.backend_for(proto, d.addr));
                (d, backend)
            })
            .collect();
        if filter.backend.is_some() && dests.is_empty() {
            continue;
        }
        if let Some(want) = &filter.service {
            if !name.as_ref().is_some_and(|n| want.matches(n)) {
                continue;
            }
        }
        if let Some(namespace) = filter.namespace.as_deref() {
            let in_namespace = |qualified: &str| namespace_of(qualified) == Some(namespace);
            let service_in = name.as_ref().is_some_and(|n| in_namespace(&n.service));
            let pod_in = dests.iter().any(|(_, b)| {
                b.as_ref()
                    .and_then(|b| b.pod.as_deref())
                    .is_some_and(in_namespace)
            });
            if !service_in && !pod_in {
                continue;
            }
        }
        views.push(Named {
            service,
            name,
            dests,
        });
    }
    views
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

/// The table: a legend, two header lines as in ipvsadm, one line per service and real server.
fn write_table(
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
    match netns {
        Some(inode) => writeln!(out, ", network namespace {inode}")?,
        None => writeln!(out)?,
    }
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

/// `rules -o json`: one document; field names and order are a stable contract (README).
#[derive(Serialize)]
struct JsonTables<'a> {
    version: String,
    conn_table_size: u32,
    netns: Option<u64>,
    services: Vec<JsonService<'a>>,
}

#[derive(Serialize)]
struct JsonService<'a> {
    proto: Option<String>,
    vip: Option<String>,
    fwmark: Option<u32>,
    family: &'static str,
    scheduler: &'a str,
    flags: Vec<String>,
    persistence_timeout: u32,
    persistence_netmask: String,
    persistence_engine: Option<&'a str>,
    service: Option<&'a str>,
    service_type: Option<&'static str>,
    stats: &'a Stats,
    dests: Vec<JsonDest<'a>>,
}

#[derive(Serialize)]
struct JsonDest<'a> {
    backend: String,
    family: &'static str,
    fwd: String,
    weight: u32,
    active_conns: u32,
    inactive_conns: u32,
    persist_conns: u32,
    upper_threshold: u32,
    lower_threshold: u32,
    backend_pod: Option<&'a str>,
    backend_node: Option<&'a str>,
    backend_terminating: Option<bool>,
    stats: &'a Stats,
}

fn write_json(
    out: &mut impl Write,
    tables: &Tables,
    netns: Option<u64>,
    views: &[Named<'_>],
) -> io::Result<()> {
    let document = JsonTables {
        version: tables.info.version_string(),
        conn_table_size: tables.info.conn_table_size,
        netns,
        services: views
            .iter()
            .map(|view| {
                let service = view.service;
                JsonService {
                    proto: service.proto.map(|p| p.to_string()),
                    vip: service.addr.map(|a| a.to_string()),
                    fwmark: service.fwmark,
                    family: service.family.as_str(),
                    scheduler: &service.scheduler,
                    flags: service.flags.names(&service.scheduler),
                    persistence_timeout: service.timeout,
                    persistence_netmask: service.netmask.to_string(),
                    persistence_engine: service.persistence_engine.as_deref(),
                    service: view.name.as_ref().map(|n| &*n.label),
                    service_type: view.name.as_ref().map(|n| n.service_type.as_str()),
                    stats: &service.stats,
                    dests: view
                        .dests
                        .iter()
                        .map(|(dest, backend)| JsonDest {
                            backend: dest.addr.to_string(),
                            family: dest.family.as_str(),
                            fwd: dest.fwd.to_string(),
                            weight: dest.weight,
                            active_conns: dest.active_conns,
                            inactive_conns: dest.inactive_conns,
                            persist_conns: dest.persist_conns,
                            upper_threshold: dest.upper_threshold,
                            lower_threshold: dest.lower_threshold,
                            backend_pod: backend.as_ref().and_then(|b| b.pod.as_deref()),
                            backend_node: backend.as_ref().and_then(|b| b.node.as_deref()),
                            backend_terminating: backend.as_ref().and_then(|b| b.terminating),
                            stats: &dest.stats,
                        })
                        .collect(),
                }
            })
            .collect(),
    };
    serde_json::to_writer(&mut *out, &document).map_err(io::Error::from)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::netlink::Replay;
    use crate::output::tests::{assert_golden, seed_index};

    /// The tables captured on Debian 6.1 (see `ipvs::tests`).
    fn captured() -> Tables {
        captured_on("6.1")
    }

    fn captured_on(kernel: &str) -> Tables {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/netlink")
            .join(kernel);
        ipvs::read_with(&mut Replay::open(&dir).expect("a capture")).expect("decodes")
    }

    fn table(filter: &RulesFilter, columns: Columns, named: bool) -> String {
        let tables = captured();
        let index = seed_index();
        let views = select(&tables, named.then_some(&index), filter);
        let mut out = Vec::new();
        write_table(
            &mut out,
            &tables,
            Some(4_026_531_840),
            &views,
            columns,
            named,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(filter: &RulesFilter) -> serde_json::Value {
        let tables = captured();
        let index = seed_index();
        let views = select(&tables, Some(&index), filter);
        let mut out = Vec::new();
        write_json(&mut out, &tables, None, &views).unwrap();
        serde_json::from_slice(&out).expect("one JSON document")
    }

    fn vips(document: &serde_json::Value) -> Vec<String> {
        document["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["vip"]
                    .as_str()
                    .map_or_else(|| format!("fwmark {}", s["fwmark"]), str::to_owned)
            })
            .collect()
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
    fn json_fields_are_the_contract() {
        let document = json(&RulesFilter::default());
        let keys = |value: &serde_json::Value| -> Vec<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys(&document),
            ["conn_table_size", "netns", "services", "version"]
        );
        let service = &document["services"][7];
        assert_eq!(service["vip"], "172.31.42.227:80");
        assert_eq!(service["service"], "ratel/vpaas-demo-prod:http");
        assert_eq!(service["service_type"], "LoadBalancer");
        let mut service_keys = keys(service);
        service_keys.sort();
        assert_eq!(
            service_keys,
            [
                "dests",
                "family",
                "flags",
                "fwmark",
                "persistence_engine",
                "persistence_netmask",
                "persistence_timeout",
                "proto",
                "scheduler",
                "service",
                "service_type",
                "stats",
                "vip"
            ]
        );
        let dest = &service["dests"][0];
        assert_eq!(dest["backend"], "10.245.112.32:8080");
        assert_eq!(
            dest["backend_pod"],
            "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm"
        );
        assert_eq!(dest["backend_node"], "cn-beijing.10.245.96.43");
        assert_eq!(dest["backend_terminating"], false);
        assert_eq!(dest["inactive_conns"], 1);
        assert_eq!(dest["stats"]["conns"], 1);
        let fwm = &document["services"][11];
        assert_eq!(
            (&fwm["proto"], &fwm["vip"], &fwm["fwmark"]),
            (
                &serde_json::Value::Null,
                &serde_json::Value::Null,
                &5.into()
            )
        );
    }

    #[test]
    fn filters() {
        let only = |f: fn(&mut RulesFilter)| {
            let mut filter = RulesFilter::default();
            f(&mut filter);
            vips(&json(&filter))
        };
        assert_eq!(
            only(|f| f.vip = "172.31.42.227".parse().ok()),
            ["172.31.42.227:80", "172.31.42.227:50091"]
        );
        assert_eq!(
            only(|f| f.vip = "172.31.42.227:80".parse().ok()),
            ["172.31.42.227:80"]
        );
        assert_eq!(only(|f| f.proto = Some(Proto::Udp)), ["172.31.0.62:53"]);
        assert_eq!(
            only(|f| f.service = "ratel/vpaas-demo-prod:http".parse().ok()),
            ["10.245.11.252:80", "10.245.96.43:32380", "172.31.42.227:80"]
        );
        assert_eq!(only(|f| f.namespace = Some("ratel".into())).len(), 6);
        assert!(only(|f| f.namespace = Some("kube-system".into())).is_empty());
        // --backend keeps the services that have it, and only its line.
        let mut filter = RulesFilter {
            backend: "10.245.6.3".parse().ok(),
            ..RulesFilter::default()
        };
        let document = json(&filter);
        assert_eq!(
            vips(&document),
            [
                "172.31.0.60:80",
                "172.31.0.61:80",
                "172.31.0.63:80",
                "fwmark 5"
            ]
        );
        for service in document["services"].as_array().unwrap() {
            assert_eq!(service["dests"].as_array().unwrap().len(), 1, "{service}");
        }
        filter.backend = "10.245.6.3:53".parse().ok();
        assert!(vips(&json(&filter)).is_empty());
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
