//! Arguments of `ipvs-trace who`: the question (a client, or the reverse ones: a backend, a
//! pod, a Service), its time window and limit, and who answers it.
//!
//! Every value is checked while parsing, times included (`--since 1h` is checked as a
//! duration, `--since 2026-12-07T14:03:00Z` as RFC 3339), so a mistake names its flag before
//! any socket is opened. Relative times become absolute once, in [`WhoArgs::into_config`]:
//! the same instant is then asked of serve, of a store, or of every node with `--cluster`.

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::NameSourceArgs;
use crate::cmd::who::{Endpoint, Source, WhoConfig, DEFAULT_CLUSTER_NAMESPACE};
use crate::filter::{parse_pod, AddrMatch, ServiceMatch};
use crate::history::query::{parse_time, MAX_LIMIT};
use crate::history::Query;
use crate::output::OutputFormat;

pub const WHO_EXAMPLES: &str = "\
Examples:
  ipvs-trace who 10.245.97.12:51776
      which pod served that connection (asks serve's history on this node)
  ipvs-trace who 10.245.97.12 --since 2026-12-07T14:00:00Z --until 2026-12-07T14:10:00Z
      every decision for that client in ten minutes
  ipvs-trace who --pod ratel/vpaas-demo-7d9f8-q9wfn --since 1h
      which clients that pod got in the last hour
  ipvs-trace who --service ratel/vpaas-demo-prod:http --limit 50 -o json
      the newest 50 decisions for one Service port, as JSON lines
  ipvs-trace who --history-dir /mnt/copy/ipvs-trace 10.245.97.12
      read a history directory offline (serve stopped, or a copy of its disk)
  ipvs-trace who --cluster 10.245.97.12
      ask every node's ipvs-trace pod (kubectl exec), answers merged by time

Who answers (one line on stderr says which did):
  default         serve on this node, over unix:/run/ipvs-trace/api.sock (root only); when no
                  serve runs there, the kernel's connection tables: IPVS's
                  (/proc/net/ip_vs_conn) and conntrack's DNAT entries (kube-proxy's nftables
                  and iptables modes; needs nf_conntrack_netlink), each when the node has it:
                  live connections only, without times (`time` is null in JSON)
  --server        that serve, and no other (an error if it cannot be reached)
  --history-dir   the files serve --history-dir wrote, read here
  --cluster       every pod of the ipvs-trace DaemonSet, through the Kubernetes API (needs
                  `create` on pods/exec and `list` on pods in its namespace; see docs/history.md)

Columns: TIME is UTC (- when the source has no time); the last column names the client pod,
the Service port, the backend pod (marked (terminating) when Kubernetes was already taking it
away) and its node, as they were named when the decision was made (- where not known). With
--cluster, NODE-ASKED is the node whose ipvs-trace answered for the line. -o json prints the
JSON lines of `trace -o json` as the source wrote them. Exit status: 0 with or without
matches, 1 on errors (with --cluster, nodes that did not answer are named on stderr; only
none answering is an error).";

/// Arguments of `ipvs-trace who`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("question")
        .args(["client", "backend", "pod", "service"])
        .multiple(true)
        .required(true)
))]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are terminal help text, where backticks would show literally"
)]
pub struct WhoArgs {
    /// The client: IP (any source port) or IP:PORT (one connection).
    #[arg(value_name = "CLIENT_IP[:PORT]")]
    pub client: Option<AddrMatch>,

    /// Decisions that sent connections to this real server (pod IP), optionally this port.
    #[arg(long, value_name = "IP[:PORT]")]
    pub backend: Option<AddrMatch>,

    /// Decisions whose backend pod or client pod is this one, as named when they were made.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_pod)]
    pub pod: Option<String>,

    /// Decisions for this Service, or for one named port of it.
    #[arg(long, value_name = "NAMESPACE/NAME[:PORT]")]
    pub service: Option<ServiceMatch>,

    /// Only decisions at or after this time: RFC 3339 (2026-12-07T14:03:00Z) or a duration
    /// back from now (90s, 30m, 1h).
    #[arg(long, value_name = "TIME", value_parser = check_time)]
    pub since: Option<String>,

    /// Only decisions at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = check_time)]
    pub until: Option<String>,

    /// At most N decisions: the newest that match, printed oldest first.
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::history::query::DEFAULT_LIMIT,
        value_parser = parse_limit
    )]
    pub limit: usize,

    /// Output format: `table` for people, `json` for the JSON lines of `trace -o json`, as
    /// the source wrote them.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Ask this serve: unix:PATH (its --api-socket) or http://IP:PORT (its --api-addr).
    /// Without it, serve on unix:/run/ipvs-trace/api.sock, or the kernel's connection tables
    /// when no serve runs there.
    #[arg(long, value_name = "unix:PATH|http://IP:PORT", value_parser = parse_endpoint)]
    pub server: Option<Endpoint>,

    /// Read this history directory (serve --history-dir) here, without serve.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["server", "cluster"])]
    pub history_dir: Option<PathBuf>,

    /// Ask the ipvs-trace pod of every node, through the Kubernetes API (pods/exec), and
    /// merge the answers by time.
    #[arg(long, conflicts_with_all = ["server", "kube_snapshot", "no_kube"])]
    pub cluster: bool,

    /// With --cluster: the namespace of the ipvs-trace DaemonSet.
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = DEFAULT_CLUSTER_NAMESPACE,
        value_parser = crate::filter::parse_namespace,
        requires = "cluster"
    )]
    pub cluster_namespace: String,

    /// Without a serve: also write each raw conntrack netlink reply to DIR (the decoder's
    /// test material).
    #[arg(long, hide = true, value_name = "DIR", conflicts_with_all = ["server", "history_dir", "cluster"])]
    pub debug_dump_netlink: Option<PathBuf>,

    #[command(flatten)]
    pub names: NameSourceArgs,
}

impl WhoArgs {
    /// The validated configuration; relative times count back from `now_ns` (Unix ns).
    pub fn into_config(self, now_ns: i64) -> Result<WhoConfig, String> {
        let time = |flag: &str, text: Option<&str>| {
            text.map(|t| parse_time(t, now_ns).map_err(|err| format!("--{flag}: {err}")))
                .transpose()
        };
        let since = time("since", self.since.as_deref())?;
        let until = time("until", self.until.as_deref())?;
        if let (Some(since), Some(until)) = (since, until) {
            if since > until {
                return Err("--until is before --since".to_owned());
            }
        }
        let query = Query {
            client: self.client,
            backend: self.backend,
            pod: self.pod,
            service: self.service,
            since,
            until,
            limit: self.limit,
        };
        let source = if let Some(dir) = self.history_dir {
            Source::HistoryDir(dir)
        } else if self.cluster {
            Source::Cluster {
                namespace: self.cluster_namespace,
            }
        } else if let Some(endpoint) = self.server {
            Source::Server(endpoint)
        } else {
            Source::Local
        };
        Ok(WhoConfig {
            query,
            output: self.output,
            source,
            names: self.names.into_source(),
            record: self.debug_dump_netlink,
        })
    }
}

/// Checks a time now (a relative one against any instant: only its form matters here).
fn check_time(text: &str) -> Result<String, String> {
    parse_time(text, 0).map(|_| text.to_owned())
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a count from 1 to {MAX_LIMIT}")),
    }
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::kube::source::NameSource;

    /// 2026-12-07T14:03:00Z
    const NOW: i64 = 1_796_652_180_000_000_000;

    fn parse(args: &[&str]) -> Result<WhoConfig, String> {
        let command_line = ["ipvs-trace", "who"].iter().chain(args);
        let cli = Cli::try_parse_from(command_line).map_err(|err| err.to_string())?;
        let Command::Who(args) = cli.command else {
            panic!("not parsed as who: {:?}", cli.command)
        };
        args.into_config(NOW)
    }

    fn error(args: &[&str]) -> String {
        parse(args).expect_err("arguments should be refused")
    }

    #[test]
    fn a_client_alone_asks_the_local_serve() {
        let config = parse(&["10.245.97.12:51776"]).unwrap();
        assert_eq!(
            config,
            WhoConfig {
                query: Query {
                    client: Some("10.245.97.12:51776".parse().unwrap()),
                    ..Query::default()
                },
                output: OutputFormat::Table,
                source: Source::Local,
                names: NameSource::Auto,
                record: None,
            }
        );
    }

    #[test]
    fn every_flag() {
        let config = parse(&[
            "--backend",
            "10.245.112.32:8080",
            "--pod",
            "ratel/web-1",
            "--service",
            "ratel/web:http",
            "--since",
            "1h",
            "--until",
            "2026-12-07T15:02:00+01:00",
            "--limit",
            "50",
            "-o",
            "json",
            "--server",
            "http://127.0.0.1:9809",
            "--kube-snapshot",
            "cluster.json",
            "fd00::c1",
        ])
        .unwrap();
        assert_eq!(
            config.query,
            Query {
                client: Some("fd00::c1".parse().unwrap()),
                backend: Some("10.245.112.32:8080".parse().unwrap()),
                pod: Some("ratel/web-1".to_owned()),
                service: Some("ratel/web:http".parse().unwrap()),
                since: Some(NOW - 3_600_000_000_000),
                until: Some(NOW - 60_000_000_000),
                limit: 50,
            }
        );
        assert_eq!(config.output, OutputFormat::Json);
        assert_eq!(
            config.source,
            Source::Server(Endpoint::Tcp("127.0.0.1:9809".parse().unwrap()))
        );
        assert_eq!(
            config.names,
            NameSource::Snapshots(vec!["cluster.json".into()])
        );
    }

    #[test]
    fn sources() {
        let source = |args: &[&str]| parse(args).unwrap().source;
        assert_eq!(
            source(&["--server", "unix:/tmp/api.sock", "10.0.0.1"]),
            Source::Server(Endpoint::Unix("/tmp/api.sock".into()))
        );
        assert_eq!(
            source(&["--server", "http://[fd00::1]:9809/", "10.0.0.1"]),
            Source::Server(Endpoint::Tcp("[fd00::1]:9809".parse().unwrap()))
        );
        assert_eq!(
            source(&["--history-dir", "/var/lib/ipvs-trace", "10.0.0.1"]),
            Source::HistoryDir("/var/lib/ipvs-trace".into())
        );
        assert_eq!(
            source(&["--cluster", "10.0.0.1"]),
            Source::Cluster {
                namespace: "ipvs-trace".into()
            }
        );
        assert_eq!(
            source(&["--cluster", "--cluster-namespace", "tools", "10.0.0.1"]),
            Source::Cluster {
                namespace: "tools".into()
            }
        );
    }

    #[test]
    fn a_question_is_required() {
        let err = error(&[]);
        assert!(
            err.contains("CLIENT_IP[:PORT]") && err.contains("--backend"),
            "{err}"
        );
        let err = error(&["--since", "1h", "--cluster"]);
        assert!(err.contains("required"), "{err}");
    }

    #[test]
    fn mistakes_name_their_flag() {
        for (args, flag) in [
            (&["10.0.0"][..], "CLIENT_IP[:PORT]"),
            (&["--backend", "pod-1"], "--backend"),
            (&["--pod", "web-1"], "--pod"),
            (&["--service", "web"], "--service"),
            (&["10.0.0.1", "--since", "yesterday"], "--since"),
            (&["10.0.0.1", "--until", "2026-13-01T00:00:00Z"], "--until"),
            (&["10.0.0.1", "--limit", "0"], "--limit"),
            (&["10.0.0.1", "--limit", "100001"], "--limit"),
            (&["10.0.0.1", "--server", "/run/api.sock"], "--server"),
            (&["10.0.0.1", "--server", "http://node-1:9809"], "--server"),
            (&["10.0.0.1", "--server", "unix:"], "--server"),
            (&["10.0.0.1", "-o", "yaml"], "--output"),
            (
                &["10.0.0.1", "--cluster-namespace", "a/b", "--cluster"],
                "--cluster-namespace",
            ),
        ] {
            let err = error(args);
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        let err = error(&["10.0.0.1", "--since", "10m", "--until", "1h"]);
        assert!(err.contains("--until is before --since"), "{err}");
    }

    #[test]
    fn sources_exclude_each_other() {
        for args in [
            &["10.0.0.1", "--server", "unix:/a", "--cluster"][..],
            &["10.0.0.1", "--server", "unix:/a", "--history-dir", "/d"],
            &["10.0.0.1", "--cluster", "--history-dir", "/d"],
        ] {
            let err = error(args);
            assert!(err.contains("cannot be used with"), "{args:?}: {err}");
        }
        let err = error(&["10.0.0.1", "--cluster-namespace", "tools"]);
        assert!(err.contains("--cluster"), "{err}");
    }

    #[test]
    fn help_explains_the_sources() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("who")
            .expect("who subcommand")
            .render_long_help()
            .to_string();
        for needle in [
            "/proc/net/ip_vs_conn",
            "conntrack's DNAT entries",
            "/run/ipvs-trace/api.sock",
            "pods/exec",
            "--history-dir",
            "Examples:",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
