//! Arguments of `ipvs-trace serve`: `trace`'s loading and name flags, no filters, no output
//! format; the metrics endpoint is the output.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{LoaderArgs, NameSourceArgs, TraceConfig};
use crate::api::{ApiConfig, DEFAULT_SOCKET};
use crate::duration::parse_duration;
use crate::filter::Filter;
use crate::history::recorder::DEFAULT_MEMORY_CAPACITY;
use crate::history::{HistoryConfig, RecorderConfig};
use crate::metrics::{parse_metrics_addr, MetricsConfig, DEFAULT_PORT};
use crate::output::OutputFormat;

pub const SERVE_EXAMPLES: &str = "\
Examples:
  ipvs-trace serve
      metrics on http://127.0.0.1:9808/metrics, names from the ambient cluster if any
  ipvs-trace serve --metrics-addr 0.0.0.0:9808 --metrics-no-backend
      reachable from Prometheus on every node address; no per-pod series
  ipvs-trace serve --kube-snapshot cluster.json
      names from a snapshot, no API server
  ipvs-trace serve --history-dir /var/lib/ipvs-trace --history-max-bytes 1G --history-max-age 7d
      every decision also on disk: a restart keeps them; `ipvs-trace who` reads them
  ipvs-trace serve --log-decisions | vector ...
      every decision as a JSON line on stdout, for the cluster's log pipeline

Every decision is recorded with the Kubernetes names of that moment: in memory (the last
--history-size), and with --history-dir on disk too. `ipvs-trace who CLIENT_IP[:PORT]` asks
serve which pod served a client, on the Unix socket /run/ipvs-trace/api.sock (mode 0600: the
node's root only; GET /v1/decisions?client=..., JSON lines as `trace -o json`). Decision records
are never served on the metrics address.

In a DaemonSet (deploy/ in the source tree) it finds the API server through the pod's service
account. /healthz answers 503 until every probe is attached (ip_vs may load after the pod
starts: serve waits for it), then 200. The metric names and labels are in docs/metrics.md.";

/// Where `serve` listens unless told: the loopback address, like `trace --metrics-addr PORT`;
/// the DaemonSet passes 0.0.0.0:9808 so that Prometheus reaches it on the node's address.
const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);

/// Arguments of `ipvs-trace serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve /metrics and /healthz on ADDR: a bare port listens on 127.0.0.1, IP:PORT (e.g.
    /// 0.0.0.0:9808) on that address.
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr, default_value_t = DEFAULT_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Leave the backend label out of the connection counters (and the per-backend table
    /// metrics), to bound the number of series on large clusters.
    #[arg(long)]
    pub metrics_no_backend: bool,

    /// Decisions kept in memory, newest kept: the last N decisions answer queries even
    /// without --history-dir. About 80 bytes each (names are shared with the index, not
    /// copied): the default takes about 75 MiB.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MEMORY_CAPACITY, value_parser = parse_history_size)]
    pub history_size: usize,

    /// Also keep every decision on disk in DIR (created, mode 0700), so that a restart of
    /// serve (upgrade, OOM kill) keeps them and `who --history-dir DIR` reads them offline.
    /// Damaged or foreign files in DIR are reported and left alone.
    #[arg(long, value_name = "DIR")]
    pub history_dir: Option<PathBuf>,

    /// Bound of the disk history: the oldest decisions go first once DIR holds more than
    /// BYTES (suffixes K, M, G: binary).
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_bytes, requires = "history_dir")]
    pub history_max_bytes: u64,

    /// Bound of the disk history: decisions older than this go (e.g. 24h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration, requires = "history_dir")]
    pub history_max_age: Duration,

    /// The query API's Unix socket (mode 0600, its directory created): `who` asks here.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub api_socket: PathBuf,

    /// Also serve the query API over TCP on IP:PORT. Decision records say who talked to which
    /// pod: keep it on a loopback address (a warning says so otherwise).
    #[arg(long, value_name = "IP:PORT")]
    pub api_addr: Option<SocketAddr>,

    /// Write every decision as a JSON line (the `trace -o json` contract) on stdout, for the
    /// cluster's log collector (Fluent Bit, Vector, Promtail).
    #[arg(long)]
    pub log_decisions: bool,

    #[command(flatten)]
    pub loader: LoaderArgs,

    #[command(flatten)]
    pub names: NameSourceArgs,
}

/// `--history-size`: at least one decision, at most what fits in memory (about 80 bytes
/// each: 100 million is 8 GB).
fn parse_history_size(text: &str) -> Result<usize, String> {
    match text.replace('_', "").parse::<usize>() {
        Ok(n) if (1..=100_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?}: expected a count of decisions from 1 to 100000000"
        )),
    }
}

/// A byte count with an optional binary suffix: `1048576`, `512K`, `64M`, `2G`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    let shift = match suffix {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        _ => {
            return Err(format!(
                "{text:?}: expected bytes with an optional K, M or G suffix, e.g. 1G"
            ))
        }
    };
    match digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
    {
        // A segment and its index need room: less than a megabyte keeps nothing useful.
        Some(bytes) if bytes >= 1 << 20 => Ok(bytes),
        Some(_) => Err(format!("{text:?}: the disk history needs at least 1M")),
        None => Err(format!(
            "{text:?}: expected bytes with an optional K, M or G suffix, e.g. 1G"
        )),
    }
}

impl ServeArgs {
    /// `trace`'s configuration for a headless run: every event, none printed (but with
    /// `--log-decisions`, as JSON lines), waiting for ip_vs, metrics and history on.
    #[must_use]
    pub fn into_config(self) -> TraceConfig {
        TraceConfig {
            output: OutputFormat::Json,
            filter: Filter::default(),
            count: None,
            duration: None,
            wait: true,
            btf: self.loader.btf,
            ring_size: self.loader.ring_size,
            attach: self.loader.attach,
            dataplanes: self.loader.dataplane,
            kprobe_target_override: None,
            numeric: false,
            names: self.names.into_source(),
            nat: false,
            nat_record: None,
            metrics: Some(MetricsConfig {
                addr: self.metrics_addr,
                backend_label: !self.metrics_no_backend,
            }),
            history: Some(HistoryConfig {
                store: RecorderConfig {
                    memory_capacity: self.history_size,
                    dir: self.history_dir,
                    max_bytes: self.history_max_bytes,
                    max_age: self.history_max_age,
                    ..RecorderConfig::default()
                },
                api: ApiConfig {
                    socket: self.api_socket,
                    tcp: self.api_addr,
                },
            }),
            quiet: !self.log_decisions,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::kube::source::NameSource;

    fn parse(args: &[&str]) -> Result<TraceConfig, clap::Error> {
        let command_line = ["ipvs-trace", "serve"].iter().chain(args);
        Cli::try_parse_from(command_line).map(|cli| {
            let Command::Serve(args) = cli.command else {
                panic!("not parsed as serve: {:?}", cli.command)
            };
            args.into_config()
        })
    }

    #[test]
    fn defaults_wait_and_serve_locally() {
        let config = parse(&[]).unwrap();
        assert!(config.quiet && config.wait);
        assert_eq!(
            config.metrics,
            Some(MetricsConfig {
                addr: "127.0.0.1:9808".parse().unwrap(),
                backend_label: true,
            })
        );
        assert_eq!(config.names, NameSource::Auto);
        assert_eq!(config.filter, Filter::default());
    }

    #[test]
    fn every_flag() {
        let config = parse(&[
            "--metrics-addr",
            "0.0.0.0:9100",
            "--metrics-no-backend",
            "--btf",
            "/tmp/ip_vs.btf",
            "--ring-size",
            "1M",
            "--kubeconfig",
            "/etc/kubernetes/admin.conf",
        ])
        .unwrap();
        assert_eq!(
            config.metrics,
            Some(MetricsConfig {
                addr: "0.0.0.0:9100".parse().unwrap(),
                backend_label: false,
            })
        );
        assert_eq!(config.btf, Some("/tmp/ip_vs.btf".into()));
        assert_eq!(config.ring_size, Some(1 << 20));
        assert_eq!(
            config.names,
            NameSource::Kubeconfig("/etc/kubernetes/admin.conf".into())
        );
    }

    #[test]
    fn history_flags() {
        let config = parse(&[]).unwrap();
        let history = config.history.expect("serve always records");
        assert_eq!(history.store.memory_capacity, DEFAULT_MEMORY_CAPACITY);
        assert_eq!(history.store.dir, None);
        assert_eq!(
            history.api.socket,
            PathBuf::from("/run/ipvs-trace/api.sock")
        );
        assert_eq!(history.api.tcp, None);
        // The defaults written for --help are the recorder's.
        assert_eq!(
            history.store.max_bytes,
            crate::history::recorder::DEFAULT_MAX_BYTES
        );
        assert_eq!(
            history.store.max_age,
            crate::history::recorder::DEFAULT_MAX_AGE
        );
        assert!(config.quiet, "no decision on stdout by default");
        let config = parse(&[
            "--history-size",
            "5_000",
            "--history-dir",
            "/var/lib/ipvs-trace",
            "--history-max-bytes",
            "2G",
            "--history-max-age",
            "36h",
            "--api-socket",
            "/tmp/api.sock",
            "--api-addr",
            "127.0.0.1:9809",
            "--log-decisions",
        ])
        .unwrap();
        assert!(!config.quiet);
        assert_eq!(config.output, OutputFormat::Json);
        let history = config.history.unwrap();
        assert_eq!(history.store.memory_capacity, 5000);
        assert_eq!(history.store.dir, Some("/var/lib/ipvs-trace".into()));
        assert_eq!(history.store.max_bytes, 2 << 30);
        assert_eq!(history.store.max_age, Duration::from_hours(36));
        assert_eq!(history.api.tcp, Some("127.0.0.1:9809".parse().unwrap()));
        for (args, needle) in [
            (&["--history-size", "0"][..], "--history-size"),
            (
                &["--history-dir", "/d", "--history-max-bytes", "10X"],
                "--history-max-bytes",
            ),
            (
                &["--history-dir", "/d", "--history-max-bytes", "1000"],
                "at least 1M",
            ),
            (
                &["--history-dir", "/d", "--history-max-age", "7"],
                "--history-max-age",
            ),
            (&["--history-max-bytes", "1G"], "--history-dir"),
            (&["--api-addr", "localhost"], "--api-addr"),
        ] {
            let err = parse(args).expect_err(needle).to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn trace_filters_are_not_serve_flags() {
        for flag in ["--vip", "--count", "--output"] {
            let err = parse(&[flag, "1"]).expect_err(flag).to_string();
            assert!(err.contains(flag), "{err}");
        }
        let err = parse(&["--metrics-addr", "nine"]).unwrap_err().to_string();
        assert!(err.contains("IP:PORT"), "{err}");
    }
}
