//! Command-line arguments.
//!
//! Every value is parsed into its domain type by clap (addresses, protocols, event kinds,
//! durations, sizes), so a mistake is reported with the flag's name before anything touches
//! the kernel, and [`TraceArgs::into_config`] only assembles an already valid [`TraceConfig`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::loader::probes::AttachMode;

use crate::events::{model::EventKind, Proto};
use crate::filter::{
    parse_event_kind, parse_namespace, parse_pod, AddrMatch, Filter, ServiceMatch,
};
use crate::kube::source::NameSource;
use crate::metrics::{parse_metrics_addr, MetricsConfig};
use crate::output::OutputFormat;

mod balance;
mod rules;
mod serve;
mod top;
mod version;
mod who;
pub use crate::cmd::trace::TraceConfig;
pub use balance::BalanceArgs;
pub use rules::RulesArgs;
pub use serve::ServeArgs;
pub use top::TopArgs;
pub use version::VERSION;
pub use who::WhoArgs;

/// Live view of the connections the kernel's IPVS schedules (kube-proxy IPVS mode): which
/// client was sent to which real server (pod), by which scheduler, as it happens.
#[derive(Debug, Parser)]
#[command(name = "ipvs-trace", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are terminal help text, where backticks would show literally"
)]
pub enum Command {
    /// Print every IPVS scheduling decision as it happens.
    ///
    /// Probes the kernel functions where IPVS creates connection entries and schedules new
    /// connections (needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN, and the ip_vs module
    /// loaded). One line per event on stdout; once every probe is attached, a line
    /// `ipvs-trace: tracing (...)` on stderr; on exit a summary on stderr: events per kind, new
    /// connections per virtual service and real server, events lost in the kernel.
    ///
    /// Event kinds:
    ///
    ///   new       a connection entry was created and bound to a real server (one per new
    ///             connection; the scheduler chose the backend, or persistence did)
    ///
    ///   template  a persistence template was created (service with `ipvsadm -p`, kube-proxy's
    ///             sessionAffinity: ClientIP); the client port is 0: it stands for the client IP
    ///
    ///   reused    a new connection (TCP SYN) hit an existing entry, e.g. a client reconnecting
    ///             from the same ip:port: no scheduling happened, and `ipvsadm --stats` does not
    ///             count it
    ///
    ///   no_dest   the scheduler found no usable real server (none, or all with weight 0): the
    ///             client's packet is dropped or rejected
    #[command(after_help = TRACE_EXAMPLES)]
    Trace(TraceArgs),

    /// Show the IPVS virtual services and their real servers, with Kubernetes names.
    ///
    /// The `ipvsadm -Ln` view, read from the kernel over netlink (needs CAP_NET_ADMIN and the
    /// ip_vs module): each virtual service with its scheduler and flags and the Kubernetes
    /// Service port it belongs to, each real server with its pod and node, forwarding method,
    /// weight and connection counts; --stats and --rate show the counters instead; -o json
    /// prints every field as one document.
    #[command(after_help = rules::RULES_EXAMPLES)]
    Rules(RulesArgs),

    /// Judge how each virtual service spreads new connections over its real servers.
    ///
    /// Over a window (--duration, or until Ctrl-C), traces every new connection as `trace`
    /// does (same privileges) and reads the IPVS tables over netlink at its start and end and
    /// every second in between. Per virtual service: connections per backend (every backend,
    /// including those that got none), the share each should get for the configured
    /// scheduler, the deviation (largest relative error, chi-square p-value), the causes seen
    /// in the window, and each count against the kernel's own counter. --check turns the
    /// verdict into the exit status.
    #[command(after_help = balance::BALANCE_EXAMPLES)]
    Balance(BalanceArgs),

    /// Check whether this node can be traced, and how well: run it first on a new node.
    ///
    /// Goes through what `trace` needs without loading anything: privileges, the ip_vs module,
    /// the BTF source (/sys/kernel/btf or --btf), every probe against /proc/kallsyms and its
    /// function's prototype in BTF, and the struct offsets the probes will read. Exits 0 when
    /// `trace` will work (possibly with fewer event kinds, listed as degraded), 1 when not.
    Check(CheckArgs),

    /// Run headless for Prometheus: trace every decision and serve metrics, print nothing per
    /// event (the DaemonSet's command).
    ///
    /// Loads the probes as `trace` does (same privileges), waiting for ip_vs if it is not loaded
    /// yet, keeps Kubernetes names from the same sources, and serves /metrics (OpenMetrics
    /// text) and /healthz (200 once the probes are attached) on --metrics-addr. Logs go to
    /// stderr; SIGTERM or SIGINT ends it cleanly with the summary on stderr.
    #[command(after_help = serve::SERVE_EXAMPLES)]
    Serve(ServeArgs),

    /// Live view of a hot node: per virtual service, new connections, reused entries and
    /// refusals per second, and how each backend shares them.
    ///
    /// Traces every decision as `trace` does (same privileges) and refreshes every --interval:
    /// one line per virtual service, busiest first, with its real servers (pods) under it,
    /// each with its rate, its share of the service's connections and its count since the
    /// start; the first line always says how many events were lost. Works in any terminal
    /// (keyboard only, basic colours); q, Esc or Ctrl-C quits and gives the terminal back.
    /// --batch (automatic when stdout is not a terminal) writes plain-text frames instead.
    #[command(after_help = top::TOP_EXAMPLES)]
    Top(TopArgs),

    /// Which pod served a past connection, or which clients a pod, backend or Service got.
    ///
    /// Asks the decisions serve recorded on this node (its query API, root only), or with
    /// --history-dir its files directly, or with --cluster every node's ipvs-trace pod. When
    /// no serve runs on this node, answers from the kernel's connection table instead: the
    /// connections alive now, without times. A client IP[:PORT], --backend, --pod or
    /// --service says what to look for; --since and --until bound the time. One line on
    /// stderr says which source answered; nothing matching exits 0.
    #[command(after_help = who::WHO_EXAMPLES)]
    Who(WhoArgs),
}

/// Arguments of `ipvs-trace check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Split BTF of the ip_vs module to check instead of /sys/kernel/btf/ip_vs (as `trace --btf`).
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,

    /// Check what `trace --event KIND[,KIND...]` would attach: only the probes of those kinds
    /// (new, template: ip_vs_conn_new; reused: tcp_state_transition, which runs per packet;
    /// no_dest: ip_vs_leave). Without it, every probe, as serve, top and balance attach them.
    #[arg(
        long,
        value_name = "KIND[,KIND...]",
        value_delimiter = ',',
        value_parser = parse_event_kind
    )]
    pub event: Vec<EventKind>,

    /// Check what `trace --attach MODE` would attach: auto (a trampoline where the kernel
    /// takes one, a kprobe otherwise), fentry or kprobe. The kernel alone can refuse a
    /// trampoline that looks possible here (`check` loads nothing): trace then says so.
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        default_value_t = AttachMode::Auto,
        env = "IPVS_TRACE_ATTACH"
    )]
    pub attach: AttachMode,
}

impl CheckArgs {
    #[must_use]
    pub fn into_config(self) -> crate::cmd::check::CheckConfig {
        crate::cmd::check::CheckConfig {
            btf: self.btf,
            kinds: self.event,
            attach: self.attach,
        }
    }
}

const TRACE_EXAMPLES: &str = "\
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

/// Where Kubernetes names come from: the flags shared by every subcommand that shows names.
///
/// They form the `kube_source` group, so that `--no-kube` refuses them all at once; each
/// subcommand's name filters conflict with `--no-kube` on their side.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("kube_source").multiple(true)))]
pub struct NameSourceArgs {
    /// Watch the cluster of this kubeconfig (its current context) for names. Without it, the
    /// cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service
    /// account when running in a pod; with none of them, addresses only. Needs list and watch
    /// on pods, services, nodes and endpointslices (see README).
    #[arg(long, value_name = "FILE", group = "kube_source")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubernetes names from a snapshot instead of a live cluster: the output of
    /// `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in
    /// several files is taken from the last.
    #[arg(
        long,
        value_name = "FILE",
        group = "kube_source",
        conflicts_with = "kubeconfig"
    )]
    pub kube_snapshot: Vec<PathBuf>,

    /// Never contact the Kubernetes API, even when a cluster is configured: addresses only.
    #[arg(long, conflicts_with = "kube_source")]
    pub no_kube: bool,
}

impl NameSourceArgs {
    /// The source these flags choose.
    #[must_use]
    pub fn into_source(self) -> NameSource {
        if self.no_kube {
            NameSource::Off
        } else if let Some(path) = self.kubeconfig {
            NameSource::Kubeconfig(path)
        } else if self.kube_snapshot.is_empty() {
            NameSource::Auto
        } else {
            NameSource::Snapshots(self.kube_snapshot)
        }
    }
}

/// How the probes are loaded: the same flags for every command that traces.
#[derive(Debug, clap::Args)]
pub struct LoaderArgs {
    /// Kernel type information (split BTF of the ip_vs module, e.g. produced offline by pahole)
    /// for full detail on kernels without /sys/kernel/btf/ip_vs (without it, 5.x/6.x kernels
    /// are traced with a built-in layout: README "Kernels without module BTF").
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,

    /// Size of the kernel-to-user ring buffer: a power of two, a multiple of the page size;
    /// suffixes K and M (binary) allowed, e.g. 1M. Raise it if events are reported lost.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,

    /// How the probes hook the kernel. auto: each through a BPF trampoline (fentry/fexit: no
    /// trap, the cheapest) where the kernel takes one (module BTF, 5.11+; fexit 5.17+; root or
    /// CAP_SYS_ADMIN to find ip_vs's BTF), a kprobe otherwise, saying why. fentry: trampolines
    /// only, failing where the kernel cannot. kprobe: kprobes only. The tracing line and
    /// `ipvs-trace check --attach MODE` show what each probe gets.
    #[arg(
        long,
        value_name = "MODE",
        value_enum,
        default_value_t = AttachMode::Auto,
        env = "IPVS_TRACE_ATTACH"
    )]
    pub attach: AttachMode,
}

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

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match crate::duration::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("the duration must be longer than 0".into()),
        Ok(duration) => Ok(duration),
        Err(err) => Err(err.to_string()),
    }
}

/// The system's page size (the ring buffer is mapped in pages).
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    parse_ring_size_with_page(text, page_size())
}

/// A ring size the kernel accepts: `BPF_MAP_TYPE_RINGBUF` wants a power of two that is a
/// multiple of the page size, and `max_entries` is a `u32`.
fn parse_ring_size_with_page(text: &str, page: u64) -> Result<u32, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        _ => {
            return Err(format!(
                "{text:?}: expected a byte count with an optional K or M suffix, e.g. 262144 or 1M"
            ));
        }
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?}: expected a byte count, e.g. 262144 or 1M"))?;
    if !bytes.is_power_of_two() || bytes % page != 0 {
        return Err(format!(
            "{text:?} is {bytes} bytes: the ring size must be a power of two and a multiple of \
             the page size ({page}), e.g. 256K or 1M"
        ));
    }
    u32::try_from(bytes).map_err(|_| format!("{text:?} is too large: at most 2048M"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
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
    fn name_sources() {
        let names = |args: &[&str]| parse(args).unwrap().names;
        assert_eq!(names(&[]), NameSource::Auto);
        assert_eq!(names(&["--no-kube"]), NameSource::Off);
        assert_eq!(
            names(&["--kubeconfig", "/etc/kubernetes/kubelet.conf"]),
            NameSource::Kubeconfig("/etc/kubernetes/kubelet.conf".into())
        );
        // A name filter alone is fine here: whether a cluster is configured is known at run
        // time (kube::source).
        assert_eq!(names(&["--service", "ratel/web"]), NameSource::Auto);
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size_with_page("4096", 4096), Ok(4096));
        assert_eq!(parse_ring_size_with_page("256K", 4096), Ok(256 << 10));
        assert_eq!(parse_ring_size_with_page("16MiB", 4096), Ok(16 << 20));
        assert_eq!(parse_ring_size_with_page("2048M", 4096), Ok(1 << 31));
        // A power of two below the page size, one that is not a power of two, and overflow.
        for bad in [
            "2048",
            "12288",
            "3M",
            "4096M",
            "",
            "K",
            "1G",
            "-4096",
            "99999999999999999999",
        ] {
            assert!(
                parse_ring_size_with_page(bad, 4096).is_err(),
                "{bad:?} accepted"
            );
        }
        // On a 64 KiB page system (arm64, ppc64) 16K is too small.
        assert!(parse_ring_size_with_page("16K", 65536).is_err());
        assert_eq!(parse_ring_size_with_page("64K", 65536), Ok(65536));
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
