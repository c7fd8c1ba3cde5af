//! Arguments of `ipvs-trace trace`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{parse_positive_duration, LoaderArgs, NameSourceArgs, TraceConfig};
use crate::events::{model::EventKind, Proto};
use crate::filter::{
    parse_event_kind, parse_namespace, parse_pod, AddrMatch, Filter, ServiceMatch,
};
use crate::metrics::{parse_metrics_addr, MetricsConfig};
use crate::output::OutputFormat;

pub const TRACE_EXAMPLES: &str = "\
Examples:
  ipvs-trace trace
      every decision on this node, as a table
  ipvs-trace trace --vip 172.31.42.227:80 --count 100
      the next 100 connections to one Service port, then the per-backend summary
  ipvs-trace trace --client 10.245.97.12 --event new,reused
      where one client's connections go, including reused entries
  ipvs-trace trace --event new
      scheduled connections only, at the least cost: no probe on every packet
  ipvs-trace trace -o json --duration 5m > decisions.jsonl
      five minutes of JSON lines for later analysis
  ipvs-trace trace --wait
      start before kube-proxy has loaded ip_vs, trace as soon as it has
  ipvs-trace trace --nat --vip 172.31.42.227:80
      what each connection looks like before and after IPVS, and to the pod (conntrack)
  ipvs-trace trace --kubeconfig /etc/kubernetes/admin.conf --service ratel/vpaas-demo-prod
      names from a live cluster; only one Service's connections
  kubectl get pods,services,endpointslices,nodes -A -o json > cluster.json
  ipvs-trace trace --kube-snapshot cluster.json --namespace ratel
      the same names from a snapshot, offline; only one namespace

Columns: W ACT INACT are the real server's weight and its active and inactive connection counts
at that moment (as in `ipvsadm -Ln`), FWD the forwarding method (Masq = NAT, Route = DR,
Tunnel = IPIP, Local, Bypass); TIME is UTC. `-` marks what does not apply or could not be read.
With Kubernetes names, CLIENT, VIP and BACKEND show the client pod (or node), the Service port
(namespace/name:port) and the backend pod where known; -n keeps addresses. Names never delay an
event: one whose addresses are not (yet) known prints raw, and the summary counts it.

The filters also run in the probes, before a record is made: --vip, --backend, --client,
--proto, --event at once, --service, --namespace, --pod as their addresses once the names are
synced. The summary's kernel: line counts every decision: seen = filtered_out + matched.

Environment: RUST_LOG=debug (or info, trace) logs what the tool does on stderr.";

/// Arguments of `ipvs-trace trace`.
#[derive(Debug, Args)]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are terminal help text, where backticks would show literally"
)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is an independent command-line switch"
)]
pub struct TraceArgs {
    /// Output format: `table` for people, `json` for one object per line (stable field names).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Only connections to this virtual service address (ClusterIP, external or LoadBalancer
    /// IP, node IP of a NodePort); with a port, only that service port.
    #[arg(long, value_name = "IP[:PORT]")]
    pub vip: Option<AddrMatch>,

    /// Only connections sent to this real server (pod IP), optionally on this port. Excludes
    /// `no_dest` events, which have no real server.
    #[arg(long, value_name = "IP[:PORT]")]
    pub backend: Option<AddrMatch>,

    /// Only connections from this client IP (any source port).
    #[arg(long, value_name = "IP", value_parser = parse_client)]
    pub client: Option<IpAddr>,

    /// Only this protocol.
    #[arg(long, value_enum, ignore_case = true)]
    pub proto: Option<ProtoArg>,

    /// Only these event kinds, comma separated: new, template, reused, no_dest (see above).
    /// Only their probes are attached: without reused, no probe runs per packet; without
    /// no_dest, none on ip_vs_leave (`check --event` shows the same).
    #[arg(
        long,
        value_name = "KIND[,KIND...]",
        value_delimiter = ',',
        value_parser = parse_event_kind
    )]
    pub event: Vec<EventKind>,

    /// Stop after printing N events (counted after the filters).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop after this long: e.g. 30s, 500ms, 5m, 1h, 1m30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// If the ip_vs module is not loaded yet, wait for it instead of failing.
    #[arg(long)]
    pub wait: bool,

    #[command(flatten)]
    pub loader: LoaderArgs,

    /// Table: show addresses, not Kubernetes names (JSON always carries both).
    #[arg(short, long)]
    pub numeric: bool,

    /// Show each connection's addresses before and after IPVS (client -> VIP:port becomes
    /// client -> pod:port for Masq) and, with net.ipv4.vs.conntrack=1, its conntrack entry,
    /// whose reply tuple is what the pod answers to (needs CAP_NET_ADMIN and
    /// nf_conntrack_netlink). Lines wait for their lookup, at most half a second.
    #[arg(long)]
    pub nat: bool,

    /// With --nat: also write each raw conntrack netlink reply to DIR (the decoder's test
    /// material).
    #[arg(long, hide = true, value_name = "DIR", requires = "nat")]
    pub debug_dump_netlink: Option<PathBuf>,

    #[command(flatten)]
    pub names: NameSourceArgs,

    /// Only events whose Service, backend pod or client pod is in this namespace (needs
    /// Kubernetes names).
    #[arg(long, value_name = "NAMESPACE", value_parser = parse_namespace, conflicts_with = "no_kube")]
    pub namespace: Option<String>,

    /// Only connections to this Service, or to one named port of it (needs Kubernetes names).
    #[arg(long, value_name = "NAMESPACE/NAME[:PORT]", conflicts_with = "no_kube")]
    pub service: Option<ServiceMatch>,

    /// Only events whose backend pod or client pod is this one (needs Kubernetes names).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_pod, conflicts_with = "no_kube")]
    pub pod: Option<String>,

    /// Serve Prometheus metrics of the traced events on ADDR (/metrics, and /healthz): a bare
    /// port listens on 127.0.0.1, IP:PORT (e.g. 0.0.0.0:9808) on that address. Counts what
    /// passes the filters, like the summary. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<SocketAddr>,

    /// With --metrics-addr: leave the backend label out of the connection counters (and the
    /// per-backend table metrics), to bound the number of series on large clusters.
    #[arg(long, requires = "metrics_addr")]
    pub metrics_no_backend: bool,

    /// Attach the probe meant for kernel function FUNCTION to SYMBOL instead (tests use it to
    /// provoke an attach failure).
    #[arg(long, hide = true, value_name = "FUNCTION=SYMBOL", value_parser = parse_kprobe_target)]
    pub debug_kprobe_target: Option<(String, String)>,
}

/// `--proto` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
    Sctp,
}

impl From<ProtoArg> for Proto {
    fn from(arg: ProtoArg) -> Proto {
        match arg {
            ProtoArg::Tcp => Proto::Tcp,
            ProtoArg::Udp => Proto::Udp,
            ProtoArg::Sctp => Proto::Sctp,
        }
    }
}

impl TraceArgs {
    /// The validated configuration (the values were checked while parsing).
    #[must_use]
    pub fn into_config(self) -> TraceConfig {
        let mut kinds = self.event;
        kinds.sort_unstable();
        kinds.dedup();
        TraceConfig {
            output: self.output,
            filter: Filter {
                vip: self.vip,
                backend: self.backend,
                client: self.client,
                proto: self.proto.map(Proto::from),
                kinds,
                namespace: self.namespace,
                service: self.service,
                pod: self.pod,
            },
            count: self.count,
            duration: self.duration,
            wait: self.wait,
            btf: self.loader.btf,
            ring_size: self.loader.ring_size,
            attach: self.loader.attach,
            dataplanes: self.loader.dataplane,
            kprobe_target_override: self.debug_kprobe_target,
            numeric: self.numeric,
            names: self.names.into_source(),
            nat: self.nat,
            nat_record: self.debug_dump_netlink,
            metrics: self.metrics_addr.map(|addr| MetricsConfig {
                addr,
                backend_label: !self.metrics_no_backend,
            }),
            quiet: false,
            history: None,
        }
    }
}

fn parse_client(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not an IP address (the client filter matches any source port)")
    })
}

fn parse_kprobe_target(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((function, symbol)) if !function.is_empty() && !symbol.is_empty() => {
            Ok((function.to_owned(), symbol.to_owned()))
        }
        _ => Err(format!("{text:?}: expected FUNCTION=SYMBOL")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use crate::kube::source::NameSource;
    use crate::loader::probes::AttachMode;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<TraceConfig, clap::Error> {
        let command_line = ["ipvs-trace", "trace"].iter().chain(args);
        Cli::try_parse_from(command_line).map(|cli| {
            let Command::Trace(args) = cli.command else {
                panic!("not parsed as trace: {:?}", cli.command)
            };
            args.into_config()
        })
    }

    fn error(args: &[&str]) -> String {
        parse(args)
            .expect_err("arguments should be refused")
            .to_string()
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse(&[]).unwrap(),
            TraceConfig {
                output: OutputFormat::Table,
                filter: Filter::default(),
                count: None,
                duration: None,
                wait: false,
                btf: None,
                ring_size: None,
                attach: AttachMode::Auto,
                dataplanes: Vec::new(),
                kprobe_target_override: None,
                numeric: false,
                names: NameSource::Auto,
                nat: false,
                nat_record: None,
                metrics: None,
                quiet: false,
                history: None,
            }
        );
    }

    #[test]
    fn every_flag() {
        let config = parse(&[
            "-o",
            "json",
            "--vip",
            "172.31.42.227:80",
            "--backend",
            "10.245.112.32",
            "--client",
            "fd00::c1",
            "--proto",
            "UDP",
            "--event",
            "reused,new",
            "--event",
            "new",
            "--count",
            "300",
            "--duration",
            "1m30s",
            "--wait",
            "--btf",
            "/tmp/ip_vs.btf",
            "--ring-size",
            "1M",
            "--debug-kprobe-target",
            "ip_vs_conn_new=no_such_function",
            "-n",
            "--kube-snapshot",
            "a.json",
            "--kube-snapshot",
            "b.json",
            "--namespace",
            "ratel",
            "--service",
            "ratel/vpaas-demo-prod:http",
            "--pod",
            "ratel/web-1",
            "--nat",
            "--debug-dump-netlink",
            "/tmp/ct",
            "--metrics-addr",
            "9808",
            "--metrics-no-backend",
        ])
        .unwrap();
        assert_eq!(
            config,
            TraceConfig {
                output: OutputFormat::Json,
                filter: Filter {
                    vip: Some("172.31.42.227:80".parse().unwrap()),
                    backend: Some("10.245.112.32".parse().unwrap()),
                    client: Some("fd00::c1".parse().unwrap()),
                    proto: Some(Proto::Udp),
                    kinds: vec![EventKind::New, EventKind::Reused],
                    namespace: Some("ratel".into()),
                    service: Some("ratel/vpaas-demo-prod:http".parse().unwrap()),
                    pod: Some("ratel/web-1".into()),
                },
                count: Some(300),
                duration: Some(Duration::from_secs(90)),
                wait: true,
                btf: Some("/tmp/ip_vs.btf".into()),
                ring_size: Some(1 << 20),
                attach: AttachMode::Auto,
                dataplanes: Vec::new(),
                kprobe_target_override: Some(("ip_vs_conn_new".into(), "no_such_function".into())),
                numeric: true,
                names: NameSource::Snapshots(vec!["a.json".into(), "b.json".into()]),
                nat: true,
                nat_record: Some("/tmp/ct".into()),
                metrics: Some(MetricsConfig {
                    addr: "127.0.0.1:9808".parse().unwrap(),
                    backend_label: false,
                }),
                quiet: false,
                history: None,
            }
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_the_fix() {
        let err = error(&["--vip", "172.31.42"]);
        assert!(
            err.contains("--vip") && err.contains("is not IP or IP:PORT"),
            "{err}"
        );
        let err = error(&["--backend", "pod:8080"]);
        assert!(err.contains("--backend"), "{err}");
        let err = error(&["--client", "10.0.0.1:80"]);
        assert!(
            err.contains("--client") && err.contains("not an IP address"),
            "{err}"
        );
        let err = error(&["--proto", "icmp"]);
        assert!(
            err.contains("--proto") && err.contains("tcp, udp, sctp"),
            "{err}"
        );
        let err = error(&["--event", "new,expired"]);
        assert!(
            err.contains("--event") && err.contains("unknown event \"expired\""),
            "{err}"
        );
        let err = error(&["--duration", "30"]);
        assert!(
            err.contains("--duration") && err.contains("has no unit"),
            "{err}"
        );
        let err = error(&["--duration", "0s"]);
        assert!(err.contains("longer than 0"), "{err}");
        let err = error(&["--count", "0"]);
        assert!(err.contains("--count"), "{err}");
        let err = error(&["--ring-size", "1000"]);
        assert!(
            err.contains("--ring-size") && err.contains("power of two"),
            "{err}"
        );
        let err = error(&["--debug-kprobe-target", "ip_vs_conn_new"]);
        assert!(err.contains("FUNCTION=SYMBOL"), "{err}");
        let err = error(&["-o", "yaml"]);
        assert!(err.contains("table, json"), "{err}");
        let err = error(&["--kube-snapshot", "a.json", "--service", "vpaas-demo-prod"]);
        assert!(
            err.contains("--service") && err.contains("NAMESPACE/NAME"),
            "{err}"
        );
        let err = error(&["--kube-snapshot", "a.json", "--pod", "ratel"]);
        assert!(
            err.contains("--pod") && err.contains("NAMESPACE/NAME"),
            "{err}"
        );
        let err = error(&["--kube-snapshot", "a.json", "--namespace", "a/b"]);
        assert!(err.contains("--namespace"), "{err}");
        // Name filters and --no-kube contradict each other; so do two sources.
        for flag in [
            ["--namespace", "ratel"],
            ["--service", "ratel/web"],
            ["--pod", "ratel/web-1"],
            ["--kubeconfig", "k"],
            ["--kube-snapshot", "a.json"],
        ] {
            let err = error(&[flag[0], flag[1], "--no-kube"]);
            assert!(err.contains("--no-kube") && err.contains(flag[0]), "{err}");
        }
        let err = error(&["--kubeconfig", "k", "--kube-snapshot", "a.json"]);
        assert!(err.contains("cannot be used with"), "{err}");
        let err = error(&["--metrics-addr", "localhost"]);
        assert!(
            err.contains("--metrics-addr") && err.contains("IP:PORT"),
            "{err}"
        );
        let err = error(&["--metrics-no-backend"]);
        assert!(err.contains("--metrics-addr"), "{err}");
    }

    #[test]
    fn help_teaches_the_event_kinds_and_shows_examples() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("trace")
            .expect("trace subcommand")
            .render_long_help()
            .to_string();
        for needle in [
            "no_dest",
            "template",
            "reused",
            "Examples:",
            "--vip",
            "ipvsadm",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
