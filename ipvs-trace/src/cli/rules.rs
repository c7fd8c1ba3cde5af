//! Arguments of `ipvs-trace rules`.

use std::path::PathBuf;

use clap::Args;

use super::{NameSourceArgs, ProtoArg};
use crate::cmd::rules::{Columns, RulesConfig, RulesFilter};
use crate::events::Proto;
use crate::filter::{parse_namespace, AddrMatch, ServiceMatch};
use crate::output::OutputFormat;

pub const RULES_EXAMPLES: &str = "\
Examples:
  ipvs-trace rules
      every virtual service and its real servers, with Kubernetes names when a cluster is
      configured
  ipvs-trace rules --stats --vip 172.31.42.227
      connections, packets and bytes since each service was added, for one address
  ipvs-trace rules --rate --service ratel/vpaas-demo-prod
      current rates of one Service's ports
  ipvs-trace rules -o json > rules.json
      the same tables as one JSON document (every counter included)

On a node whose kube-proxy runs in nftables or iptables mode (with or without ip_vs), a
section per mode follows: each Service address (ClusterIP, external or LoadBalancer IP, node
port; 0.0.0.0:PORT is a node port on every local address) with its endpoints and the
Probability that a new connection goes to each (netfilter chooses at random).

Columns (as in ipvsadm -Ln): Forward is the forwarding method (Masq = NAT, Route = DR,
Tunnel = IPIP, Local); Weight the real server's share of new connections (0: no new ones);
ActiveConn and InActConn are COUNTS OF CONNECTIONS, not bytes: ActiveConn the ESTABLISHED TCP
ones, InActConn all others (SYN_RECV, TIME_WAIT, CLOSE, UDP). --stats: Conns connections
scheduled, InPkts/OutPkts packets, InBytes/OutBytes bytes, since the service or real server
was added. --rate: the same per second, averaged by the kernel over the last seconds.

The tables are those of the network namespace the tool runs in: kube-proxy's are in the
node's (host) namespace.";

/// Arguments of `ipvs-trace rules`.
#[derive(Debug, Args)]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are terminal help text, where backticks would show literally"
)]
pub struct RulesArgs {
    /// Output format: table (for people) or json (one document with every field; the field
    /// names are a stable contract, see docs/rules.md).
    #[arg(
        short,
        long,
        value_enum,
        default_value_t = OutputFormat::Table,
        hide_possible_values = true
    )]
    pub output: OutputFormat,

    /// Table: counters since each service and real server was added (Conns, InPkts, OutPkts,
    /// InBytes, OutBytes, exact) instead of the connection counts.
    #[arg(long, conflicts_with = "rate")]
    pub stats: bool,

    /// Table: current rates (CPS, InPPS, OutPPS, InBPS, OutBPS) instead of the connection
    /// counts.
    #[arg(long)]
    pub rate: bool,

    /// Only virtual services on this address (ClusterIP, external or LoadBalancer IP, node IP
    /// of a NodePort); with a port, only that service port.
    #[arg(long, value_name = "IP[:PORT]")]
    pub vip: Option<AddrMatch>,

    /// Only this real server (pod IP), optionally on this port: the services that have it,
    /// with only its line.
    #[arg(long, value_name = "IP[:PORT]")]
    pub backend: Option<AddrMatch>,

    /// Only virtual services of this protocol (firewall-mark services have none).
    #[arg(long, value_enum, ignore_case = true)]
    pub proto: Option<ProtoArg>,

    /// Table: show addresses only, not Kubernetes names (JSON always carries both).
    #[arg(short, long)]
    pub numeric: bool,

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

    /// Also write each raw netlink reply to DIR (the decoder's test material).
    #[arg(long, hide = true, value_name = "DIR")]
    pub debug_dump_netlink: Option<PathBuf>,
}

impl RulesArgs {
    /// The validated configuration (the values were checked while parsing).
    #[must_use]
    pub fn into_config(self) -> RulesConfig {
        RulesConfig {
            output: self.output,
            columns: if self.stats {
                Columns::Stats
            } else if self.rate {
                Columns::Rate
            } else {
                Columns::Connections
            },
            filter: RulesFilter {
                vip: self.vip,
                backend: self.backend,
                proto: self.proto.map(Proto::from),
                namespace: self.namespace,
                service: self.service,
            },
            numeric: self.numeric,
            names: self.names.into_source(),
            record: self.debug_dump_netlink,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use crate::kube::source::NameSource;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<RulesConfig, clap::Error> {
        let command_line = ["ipvs-trace", "rules"].iter().chain(args);
        Cli::try_parse_from(command_line).map(|cli| {
            let Command::Rules(args) = cli.command else {
                panic!("not parsed as rules: {:?}", cli.command)
            };
            args.into_config()
        })
    }

    #[test]
    fn defaults_and_every_flag() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.output, OutputFormat::Table);
        assert_eq!(config.columns, Columns::Connections);
        assert_eq!(config.filter, RulesFilter::default());
        assert_eq!(config.names, NameSource::Auto);
        assert!(!config.numeric && config.record.is_none());

        let config = parse(&[
            "-o",
            "json",
            "--stats",
            "--vip",
            "172.31.42.227:80",
            "--backend",
            "10.245.112.32",
            "--proto",
            "udp",
            "-n",
            "--kube-snapshot",
            "a.json",
            "--namespace",
            "ratel",
            "--service",
            "ratel/vpaas-demo-prod:http",
            "--debug-dump-netlink",
            "/tmp/nl",
        ])
        .unwrap();
        assert_eq!(config.output, OutputFormat::Json);
        assert_eq!(config.columns, Columns::Stats);
        assert_eq!(
            config.filter,
            RulesFilter {
                vip: Some("172.31.42.227:80".parse().unwrap()),
                backend: Some("10.245.112.32".parse().unwrap()),
                proto: Some(Proto::Udp),
                namespace: Some("ratel".into()),
                service: Some("ratel/vpaas-demo-prod:http".parse().unwrap()),
            }
        );
        assert!(config.numeric);
        assert_eq!(config.names, NameSource::Snapshots(vec!["a.json".into()]));
        assert_eq!(config.record, Some("/tmp/nl".into()));
        assert_eq!(parse(&["--rate"]).unwrap().columns, Columns::Rate);
        assert_eq!(parse(&["--no-kube"]).unwrap().names, NameSource::Off);
    }

    #[test]
    fn contradictions_are_refused() {
        let err = parse(&["--stats", "--rate"]).unwrap_err().to_string();
        assert!(err.contains("--stats") && err.contains("--rate"), "{err}");
        let err = parse(&["--no-kube", "--service", "a/b"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--no-kube"), "{err}");
        let err = parse(&["--vip", "nope"]).unwrap_err().to_string();
        assert!(err.contains("--vip"), "{err}");
    }

    #[test]
    fn help_has_the_legend() {
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("rules")
            .expect("rules subcommand")
            .render_long_help()
            .to_string();
        for needle in ["COUNTS OF CONNECTIONS", "--stats", "--rate", "Examples:"] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
