//! Arguments of `ipvs-trace balance`.

use std::time::Duration;

use clap::Args;

use super::{parse_positive_duration, LoaderArgs, NameSourceArgs, ProtoArg};
use crate::balance::Selection;
use crate::cmd::balance::BalanceConfig;
use crate::events::Proto;
use crate::filter::{parse_namespace, AddrMatch, ServiceMatch};
use crate::output::OutputFormat;

pub const BALANCE_EXAMPLES: &str = "\
Examples:
  ipvs-trace balance --duration 1m
      one minute of every virtual service on this node, judged against its scheduler
  ipvs-trace balance --vip 172.31.42.227:80
      one Service port, until Ctrl-C
  ipvs-trace balance --service ratel/vpaas-demo-prod --duration 5m --check --tolerance 0.1
      in a script: exit 0 if every port of the Service stayed within 10 % of its shares
  ipvs-trace balance --duration 30s -o json > balance.json
      the same report as one JSON document

What is judged: the connections each real server received in the window (New: scheduled by
IPVS; Reused: a new connection that hit an existing entry, e.g. a client reusing its source
port with net.ipv4.vs.conn_reuse_mode=0, and went to that entry's backend unscheduled).
rr expects equal shares among weights > 0, wrr shares in proportion to weight (the weights of
the window's start); a backend deviates when off by more than --tolerance and by more than one
scheduling round. sh, mh, dh and persistent services (sessionAffinity: ClientIP) are judged by
stickiness (each client on one backend); lc, wlc and other load-based schedulers only show the
spread of active connections. Every count is cross-checked against the growth of the kernel's
own Conns counter (ipvsadm -Ln --stats) over the window. Named causes seen in the window:
reused, persistence, weight_zero, terminating (with Kubernetes names), backend_added,
backend_removed, weight_changed, scheduler_changed, service_added, service_removed, no_dest,
events_lost.

Random selection (kube-proxy's nftables and iptables modes, scheduler random): netfilter
picks each connection's endpoint by chance, so there are no rounds to count and no kernel
counter to compare with. The counts are judged statistically, not by rr's arithmetic: a
chi-square goodness-of-fit test against the endpoints' shares (equal, as kube-proxy programs
them), uneven when p < 0.001 and an endpoint is off by more than --tolerance; no verdict until
every endpoint expects 10 connections; each share with its 99.9 % confidence interval. An
endpoint that stopped getting connections because it left the Service (no longer in the rules,
or no longer listed, serving, by its EndpointSlice) is named backend_removed.

The window opens 3 s after the probes are attached (the line `ipvs-trace: balance window
open` on stderr) and the report waits 3 s after it closes: the kernel folds its connection
counters every 2 s.

Exit status with --check:
  0  every service within the tolerance (or not checkable)
  3  a service deviates beyond the tolerance, and the causes are named in the report
  4  a service deviates beyond the tolerance and no cause was seen
  5  a backend's count differs from the kernel's Conns counter
  1  an error (as without --check)";

/// Arguments of `ipvs-trace balance`.
#[derive(Debug, Args)]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are terminal help text, where backticks would show literally"
)]
pub struct BalanceArgs {
    /// Output format: table (for people) or json (one document; the field names are a stable
    /// contract, see docs/balance.md).
    #[arg(
        short,
        long,
        value_enum,
        default_value_t = OutputFormat::Table,
        hide_possible_values = true
    )]
    pub output: OutputFormat,

    /// Length of the window: e.g. 30s, 5m, 1h. Without it, until Ctrl-C.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Exit with a status that says whether the services are balanced (see below).
    #[arg(long)]
    pub check: bool,

    /// Largest relative error of a backend's count that is still balanced (0.05 = 5 %).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.05, value_parser = parse_tolerance)]
    pub tolerance: f64,

    /// Only virtual services on this address; with a port, only that service port.
    #[arg(long, value_name = "IP[:PORT]")]
    pub vip: Option<AddrMatch>,

    /// Only virtual services of this protocol.
    #[arg(long, value_enum, ignore_case = true)]
    pub proto: Option<ProtoArg>,

    /// If the ip_vs module is not loaded yet, wait for it instead of failing.
    #[arg(long)]
    pub wait: bool,

    #[command(flatten)]
    pub loader: LoaderArgs,

    #[command(flatten)]
    pub names: NameSourceArgs,

    /// Only virtual services of a Service in this namespace, or with a real server that is a
    /// pod of it (needs Kubernetes names).
    #[arg(long, value_name = "NAMESPACE", value_parser = parse_namespace, conflicts_with = "no_kube")]
    pub namespace: Option<String>,

    /// Only the virtual services of this Service, or of one named port of it (needs
    /// Kubernetes names).
    #[arg(long, value_name = "NAMESPACE/NAME[:PORT]", conflicts_with = "no_kube")]
    pub service: Option<ServiceMatch>,
}

impl BalanceArgs {
    /// The validated configuration (the values were checked while parsing).
    #[must_use]
    pub fn into_config(self) -> BalanceConfig {
        BalanceConfig {
            output: self.output,
            duration: self.duration,
            check: self.check,
            tolerance: self.tolerance,
            selection: Selection {
                vip: self.vip,
                proto: self.proto.map(Proto::from),
                namespace: self.namespace,
                service: self.service,
            },
            wait: self.wait,
            btf: self.loader.btf,
            ring_size: self.loader.ring_size,
            attach: self.loader.attach,
            dataplanes: self.loader.dataplane,
            names: self.names.into_source(),
        }
    }
}

fn parse_tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value < 1.0 => Ok(value),
        _ => Err(format!(
            "{text:?}: expected a fraction between 0 and 1, e.g. 0.05 for 5 %"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use crate::kube::source::NameSource;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<BalanceConfig, clap::Error> {
        let command_line = ["ipvs-trace", "balance"].iter().chain(args);
        Cli::try_parse_from(command_line).map(|cli| {
            let Command::Balance(args) = cli.command else {
                panic!("not parsed as balance: {:?}", cli.command)
            };
            args.into_config()
        })
    }

    #[test]
    fn defaults_and_every_flag() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.output, OutputFormat::Table);
        assert_eq!((config.duration, config.check), (None, false));
        assert!((config.tolerance - 0.05).abs() < f64::EPSILON);
        assert_eq!(config.selection, Selection::default());
        assert_eq!(config.names, NameSource::Auto);

        let config = parse(&[
            "-o",
            "json",
            "--duration",
            "1m",
            "--check",
            "--tolerance",
            "0.1",
            "--vip",
            "172.31.42.227:80",
            "--proto",
            "tcp",
            "--wait",
            "--btf",
            "/tmp/ip_vs.btf",
            "--ring-size",
            "1M",
            "--kube-snapshot",
            "a.json",
            "--namespace",
            "ratel",
            "--service",
            "ratel/vpaas-demo-prod:http",
        ])
        .unwrap();
        assert_eq!(
            config,
            BalanceConfig {
                output: OutputFormat::Json,
                duration: Some(Duration::from_mins(1)),
                check: true,
                tolerance: 0.1,
                selection: Selection {
                    vip: Some("172.31.42.227:80".parse().unwrap()),
                    proto: Some(Proto::Tcp),
                    namespace: Some("ratel".into()),
                    service: Some("ratel/vpaas-demo-prod:http".parse().unwrap()),
                },
                wait: true,
                btf: Some("/tmp/ip_vs.btf".into()),
                ring_size: Some(1 << 20),
                attach: crate::loader::probes::AttachMode::Auto,
                dataplanes: Vec::new(),
                names: NameSource::Snapshots(vec!["a.json".into()]),
            }
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for (args, needle) in [
            (&["--tolerance", "5"][..], "between 0 and 1"),
            (&["--tolerance", "0"][..], "between 0 and 1"),
            (&["--duration", "0s"][..], "longer than 0"),
            (&["--no-kube", "--service", "a/b"][..], "--no-kube"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_documents_the_exit_codes_and_causes() {
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("balance")
            .expect("balance subcommand")
            .render_long_help()
            .to_string();
        for needle in [
            "Exit status with --check",
            "  4  a service deviates beyond the tolerance and no cause was seen",
            "backend_added",
            "weight_zero",
            "reused",
            "ipvsadm -Ln --stats",
            "chi-square goodness-of-fit test",
            "not by rr's arithmetic",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
