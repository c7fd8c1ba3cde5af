//! Arguments of `ipvs-trace top`.

use std::time::Duration;

use clap::Args;

use super::{parse_positive_duration, LoaderArgs, NameSourceArgs, ProtoArg};
use crate::cmd::top::TopConfig;
use crate::events::Proto;
use crate::filter::{parse_namespace, AddrMatch, Filter, ServiceMatch};

pub const TOP_EXAMPLES: &str = "\
Examples:
  ipvs-trace top
      every virtual service on this node, refreshed each second; q or Ctrl-C quits
  ipvs-trace top --service ratel/vpaas-demo-prod --interval 5s
      one Service's ports (by Kubernetes name), rates over 5 seconds
  ipvs-trace top --batch --iterations 10 > top.txt
      ten plain-text frames, one a second, as `top -b -n 10` (automatic when stdout is not a
      terminal)

The view:
  first line   events lost before they reached the view (ring buffer full, unreadable,
               malformed): `lost: 0 events` in green, or highlighted in red with the count;
               the rates below are too low by that much
  second line  the time, the interval, the number of services, and the rates of all of them
  SERVICE / BACKEND
               a virtual service by Kubernetes Service port (namespace/name:port) when known,
               else VIP:port/PROTO; under it, indented, its real servers by pod
               (namespace/name) when known, else ip:port
  SCHED        the service's scheduler (rr, wrr, lc, sh, ...)
  NEW/s        new connections IPVS scheduled, per second over the last interval
  REUSED/s     new connections that hit an existing entry and went to its backend without
               being scheduled (a client reusing its source port; ipvsadm does not count them)
  NODEST/s     connections refused because no real server was usable (none, or all weight 0)
  SHARE        the backend's part of what its service's backends received (new + reused) in
               the last interval; `-` when the service received nothing
  CONNS        new connections since top started: what `ipvsadm -Ln --stats` counts as Conns
               (the kernel's is since the real server was added)
Services are sorted by their rate in the last interval, then since the start; backends too.
A narrow terminal drops SCHED, NODEST/s, REUSED/s, CONNS and SHARE, in that order; a short
one says how many rows it could not show. --batch shows every row and column, and named
services and backends with their addresses.";

/// Arguments of `ipvs-trace top`.
#[derive(Debug, Args)]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are terminal help text, where backticks would show literally"
)]
pub struct TopArgs {
    /// Plain text, one frame per interval, instead of the live view (automatic when stdout is
    /// not a terminal).
    #[arg(short, long)]
    pub batch: bool,

    /// Refresh interval: e.g. 1s, 500ms, 5s.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,

    /// Stop after N frames (live or --batch). Without it, until q, Ctrl-C or SIGTERM.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,

    /// Only connections to this virtual service address; with a port, only that service port.
    #[arg(long, value_name = "IP[:PORT]")]
    pub vip: Option<AddrMatch>,

    /// Only connections sent to this real server (pod IP), optionally on this port.
    #[arg(long, value_name = "IP[:PORT]")]
    pub backend: Option<AddrMatch>,

    /// Only this protocol.
    #[arg(long, value_enum, ignore_case = true)]
    pub proto: Option<ProtoArg>,

    /// If the ip_vs module is not loaded yet, wait for it instead of failing.
    #[arg(long)]
    pub wait: bool,

    #[command(flatten)]
    pub loader: LoaderArgs,

    #[command(flatten)]
    pub names: NameSourceArgs,

    /// Only connections whose Service, backend pod or client pod is in this namespace (needs
    /// Kubernetes names).
    #[arg(long, value_name = "NAMESPACE", value_parser = parse_namespace, conflicts_with = "no_kube")]
    pub namespace: Option<String>,

    /// Only connections to this Service, or to one named port of it (needs Kubernetes names).
    #[arg(long, value_name = "NAMESPACE/NAME[:PORT]", conflicts_with = "no_kube")]
    pub service: Option<ServiceMatch>,
}

impl TopArgs {
    /// The validated configuration; `stdout_is_terminal` decides the mode without --batch.
    #[must_use]
    pub fn into_config(self, stdout_is_terminal: bool) -> TopConfig {
        TopConfig {
            batch: self.batch || !stdout_is_terminal,
            interval: self.interval,
            iterations: self.iterations,
            filter: Filter {
                vip: self.vip,
                backend: self.backend,
                proto: self.proto.map(Proto::from),
                namespace: self.namespace,
                service: self.service,
                ..Filter::default()
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

/// At least 100 ms: shorter intervals make rates of a handful of events, and redraws that
/// cost more than they show.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_positive_duration(text)?;
    if interval < Duration::from_millis(100) {
        return Err(format!("{text:?} is too short: at least 100ms"));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use crate::kube::source::NameSource;
    use clap::Parser as _;

    fn parse(args: &[&str], terminal: bool) -> Result<TopConfig, clap::Error> {
        let command_line = ["ipvs-trace", "top"].iter().chain(args);
        Cli::try_parse_from(command_line).map(|cli| {
            let Command::Top(args) = cli.command else {
                panic!("not parsed as top: {:?}", cli.command)
            };
            args.into_config(terminal)
        })
    }

    #[test]
    fn defaults_batch_when_not_a_terminal_and_every_flag() {
        let config = parse(&[], true).unwrap();
        assert!(!config.batch);
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.iterations, None);
        assert_eq!(config.filter, Filter::default());
        assert_eq!(config.names, NameSource::Auto);
        assert!(parse(&[], false).unwrap().batch, "stdout not a terminal");
        assert!(parse(&["-b"], true).unwrap().batch);

        let config = parse(
            &[
                "--batch",
                "--interval",
                "500ms",
                "--iterations",
                "3",
                "--vip",
                "172.31.0.90:80",
                "--backend",
                "10.245.19.1",
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
                "ratel/web:http",
            ],
            true,
        )
        .unwrap();
        assert_eq!(
            config,
            TopConfig {
                batch: true,
                interval: Duration::from_millis(500),
                iterations: Some(3),
                filter: Filter {
                    vip: Some("172.31.0.90:80".parse().unwrap()),
                    backend: Some("10.245.19.1".parse().unwrap()),
                    proto: Some(Proto::Tcp),
                    namespace: Some("ratel".into()),
                    service: Some("ratel/web:http".parse().unwrap()),
                    ..Filter::default()
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
            (&["--interval", "10ms"][..], "at least 100ms"),
            (&["--interval", "0s"][..], "longer than 0"),
            (&["--interval", "1"][..], "has no unit"),
            (&["--iterations", "0"][..], "--iterations"),
            (&["--no-kube", "--service", "a/b"][..], "--no-kube"),
        ] {
            let err = parse(args, true).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn help_explains_every_column_with_examples() {
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("top")
            .expect("top subcommand")
            .render_long_help()
            .to_string();
        for needle in [
            "Examples:",
            "--batch --iterations 10",
            "NEW/s",
            "REUSED/s",
            "NODEST/s",
            "SHARE",
            "CONNS",
            "ipvsadm -Ln --stats",
            "lost",
            "q or Ctrl-C",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
