//! Arguments of `ipvs-trace serve`: `trace`'s loading and name flags, no filters, no output
//! format; the metrics endpoint is the output.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Args;

use super::{LoaderArgs, NameSourceArgs, TraceConfig};
use crate::filter::Filter;
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

In a DaemonSet (deploy/ in the source tree) it finds the API server through the pod's service
account. /healthz answers 503 until every probe is attached (ip_vs may load after the pod
starts: serve waits for it), then 200. The metric names and labels are in the README.";

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

    #[command(flatten)]
    pub loader: LoaderArgs,

    #[command(flatten)]
    pub names: NameSourceArgs,
}

impl ServeArgs {
    /// `trace`'s configuration for a headless run: every event, none printed, waiting for
    /// ip_vs, metrics on.
    #[must_use]
    pub fn into_config(self) -> TraceConfig {
        TraceConfig {
            output: OutputFormat::Table,
            filter: Filter::default(),
            count: None,
            duration: None,
            wait: true,
            btf: self.loader.btf,
            ring_size: self.loader.ring_size,
            kprobe_target_override: None,
            numeric: false,
            names: self.names.into_source(),
            nat: false,
            nat_record: None,
            metrics: Some(MetricsConfig {
                addr: self.metrics_addr,
                backend_label: !self.metrics_no_backend,
            }),
            quiet: true,
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
    fn trace_filters_are_not_serve_flags() {
        for flag in ["--vip", "--count", "--output"] {
            let err = parse(&[flag, "1"]).expect_err(flag).to_string();
            assert!(err.contains(flag), "{err}");
        }
        let err = parse(&["--metrics-addr", "nine"]).unwrap_err().to_string();
        assert!(err.contains("IP:PORT"), "{err}");
    }
}
