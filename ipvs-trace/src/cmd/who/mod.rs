//! `ipvs-trace who`: which pod served a past connection, and the reverse questions (which
//! clients did this pod, backend or Service get?).
//!
//! The answer comes from one of four sources, and one line on stderr always says which:
//! - serve on this node ([`client`]), over its Unix socket by default (root only: the records
//!   say who talked to whom) or the `--server` given;
//! - when the default socket has no serve behind it, the kernel's connection tables
//!   ([`kernel`]: IPVS's, and conntrack's DNAT entries on the netfilter modes' nodes): the
//!   connections alive now, without times, better than nothing for "which pod is this client
//!   talking to right now";
//! - `--history-dir`: serve's files read here, for a serve that crashed or a disk copied off;
//! - `--cluster`: every node's ipvs-trace pod, through the Kubernetes API ([`cluster`]).
//!
//! Every source gives JSON lines of the `trace -o json` contract; `-o json` prints them as
//! they came, the table ([`render`]) reads them ([`line`]). Nothing matching is an answer
//! (exit 0); only errors exit 1. An explicit source that cannot answer is an error, never a
//! fallback to another.

pub mod client;
pub mod cluster;
mod history;
pub mod kernel;
pub mod line;
pub mod render;

use std::io::{self, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;

pub use client::Endpoint;
use kernel::Tables;

use super::notice;
use crate::history::Query;
use crate::kube::source::NameSource;
use crate::kube::watch::KubeSource;
use crate::output::OutputFormat;
use render::Row;

/// The namespace of the DaemonSet (deploy/namespace.yaml).
pub const DEFAULT_CLUSTER_NAMESPACE: &str = "ipvs-trace";

/// Part of the stderr line of an answer from the kernel's tables (`--cluster` looks for it in
/// the remote stderr).
pub const KERNEL_TABLE_MARK: &str = "from the kernel's connection table";
/// Part of the stderr line of a truncated answer (likewise).
pub const TRUNCATED_MARK: &str = "answer truncated";

/// Everything `who` needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoConfig {
    pub query: Query,
    pub output: OutputFormat,
    pub source: Source,
    /// Names for the kernel's tables; the Kubernetes API for `--cluster`.
    pub names: NameSource,
    /// `--debug-dump-netlink`: with the kernel's tables, the conntrack dump's raw replies are
    /// also written there.
    pub record: Option<PathBuf>,
}

/// Who answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// serve on the default socket, else the kernel's connection tables.
    Local,
    /// `--server`: that serve only.
    Server(Endpoint),
    /// `--history-dir`.
    HistoryDir(PathBuf),
    /// `--cluster`: every ipvs-trace pod in this namespace.
    Cluster { namespace: String },
}

/// JSON lines of the contract (without newlines), oldest first, and whether more matched
/// than the question's limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub lines: Vec<String>,
    pub truncated: bool,
}

/// Runs `ipvs-trace who`.
pub async fn run(config: WhoConfig) -> anyhow::Result<()> {
    let query = &config.query;
    let (rows, truncated, with_node) = match &config.source {
        Source::Local => {
            let endpoint = Endpoint::Unix(crate::api::DEFAULT_SOCKET.into());
            let tables = Tables::node(config.record.clone());
            let (answer, said) = answer_local(&endpoint, &tables, query, &config.names).await?;
            notice(&said);
            (rows(answer.lines), answer.truncated, false)
        }
        Source::Server(endpoint) => {
            let answer = client::ask(endpoint, query).await?;
            notice(&format!("ipvs-trace who: answered by serve at {endpoint}"));
            (rows(answer.lines), answer.truncated, false)
        }
        Source::HistoryDir(dir) => {
            let answer = history::answer(dir, query).await?;
            notice(&format!(
                "ipvs-trace who: answered from the history in {}",
                dir.display()
            ));
            (rows(answer.lines), answer.truncated, false)
        }
        Source::Cluster { namespace } => {
            let source = match &config.names {
                NameSource::Kubeconfig(path) => KubeSource::Kubeconfig(path.clone()),
                _ => KubeSource::Infer,
            };
            let (rows, truncated) = cluster::answer(query, namespace, &source).await?;
            (rows, truncated, true)
        }
    };
    if truncated {
        notice(&format!(
            "ipvs-trace who: {TRUNCATED_MARK}: more decisions matched than --limit {}; these \
             are the newest (narrow --since/--until, or raise --limit up to {})",
            query.limit,
            crate::history::query::MAX_LIMIT
        ));
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let unreadable = render::write(&mut out, config.output, &rows, with_node)
        .context("writing the answer to stdout")?;
    out.flush().context("writing the answer to stdout")?;
    if unreadable > 0 {
        notice(&format!(
            "ipvs-trace who: {unreadable} line(s) of the answer are not decisions this \
             version can read: left out of the table (-o json prints them as they came)"
        ));
    }
    if rows.is_empty() {
        notice("ipvs-trace who: no decision matched");
    }
    Ok(())
}

fn rows(lines: Vec<String>) -> Vec<Row> {
    lines
        .into_iter()
        .map(|json| Row { node: None, json })
        .collect()
}

/// serve at `endpoint`, or when none runs there, the kernel's connection `tables`; with the
/// line that says which answered.
async fn answer_local(
    endpoint: &Endpoint,
    tables: &Tables,
    query: &Query,
    names: &NameSource,
) -> anyhow::Result<(Answer, String)> {
    match client::ask(endpoint, query).await {
        Ok(answer) => Ok((
            answer,
            format!("ipvs-trace who: answered by serve at {endpoint}"),
        )),
        Err(err) if err.no_serve() => {
            let answer = kernel::answer(tables, query, names)
                .await
                .with_context(|| format!("{err}; and the kernel's connection tables"))?;
            let said = kernel_table_notice(&answer.read, query, &err);
            Ok((answer.answer, said))
        }
        Err(err) => Err(err.into()),
    }
}

/// Says that the kernel's tables answered, which of them (`read`: one or two), why, and what
/// that means for the answer.
fn kernel_table_notice(read: &[String], query: &Query, why: &client::AskError) -> String {
    let window = if query.since.is_some() || query.until.is_some() {
        "; --since/--until not applied (the tables have no times)"
    } else {
        ""
    };
    let plural = if read.len() > 1 { "s" } else { "" };
    format!(
        "ipvs-trace who: answered {KERNEL_TABLE_MARK}{plural} ({}): {why}; live entries only, \
         no times{window}",
        read.join(" and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::query::DEFAULT_LIMIT;
    use crate::ipvs::conn_table::tests::SAMPLE;
    use client::tests::{serve_on, temp_dir};
    use hyper::StatusCode;
    use kernel::ConntrackTable;
    use std::path::Path;

    const NAMED: &str = include_str!("../../../tests/golden/events-named.jsonl");

    fn query() -> Query {
        Query {
            client: Some("10.245.97.12".parse().unwrap()),
            since: Some(0),
            ..Query::default()
        }
    }

    /// The tables of a test: `ip_vs_conn` at that path (absent or not), and conntrack's
    /// recorded dump (tests/conntrack/dump-6.18), or, without it, a kernel without
    /// nf_conntrack_netlink: a recorded refusal whose errno is EOPNOTSUPP.
    fn tables(dir: &Path, ip_vs_conn: PathBuf, conntrack: bool) -> Tables {
        let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conntrack");
        let recording = if conntrack {
            captures.join("dump-6.18")
        } else {
            let mut refusal = std::fs::read(captures.join("6.12/00-get.bin")).unwrap();
            refusal[16..20].copy_from_slice(&(-libc::EOPNOTSUPP).to_ne_bytes());
            let recording = dir.join("no-ctnetlink");
            std::fs::create_dir_all(&recording).unwrap();
            std::fs::write(recording.join("00-dump.bin"), refusal).unwrap();
            recording
        };
        Tables {
            ip_vs_conn,
            conntrack: ConntrackTable::Replay(recording),
        }
    }

    #[tokio::test]
    async fn without_serve_the_kernel_table_answers_and_says_so() {
        let dir = temp_dir("fallback");
        let table = dir.join("ip_vs_conn");
        std::fs::write(&table, SAMPLE).unwrap();
        let socket = Endpoint::Unix(dir.join("api.sock"));
        let ipvs_only = tables(&dir, table.clone(), false);
        let (answer, said) = answer_local(&socket, &ipvs_only, &query(), &NameSource::Off)
            .await
            .unwrap();
        assert_eq!(answer.lines.len(), 6);
        assert!(!answer.truncated);
        assert_eq!(
            said,
            format!(
                "ipvs-trace who: answered from the kernel's connection table ({}): no serve \
                 answers at unix:{}/api.sock: No such file or directory (os error 2); live \
                 entries only, no times; --since/--until not applied (the tables have no times)",
                table.display(),
                dir.display()
            )
        );
        // Without either table (neither ip_vs nor nf_conntrack_netlink), an error that names
        // both.
        let neither = tables(&dir, dir.join("none"), false);
        let err = answer_local(&socket, &neither, &query(), &NameSource::Off)
            .await
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.starts_with("no serve answers at unix:")
                && err.contains(
                    "; and the kernel's connection tables: neither the IPVS nor the conntrack \
                     table is there: reading "
                )
                && err.contains(
                    "No such file or directory (os error 2): is ip_vs loaded (kube-proxy in \
                     IPVS mode loads it)?; conntrack over netlink is not available: load \
                     nf_conntrack_netlink"
                ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_netfilter_node_answers_from_conntrack_and_a_migrating_one_from_both() {
        let dir = temp_dir("fallback-conntrack");
        let socket = Endpoint::Unix(dir.join("api.sock"));
        let client = Query {
            client: Some("198.51.100.71".parse().unwrap()),
            ..Query::default()
        };
        let netfilter = tables(&dir, dir.join("none"), true);
        let (answer, said) = answer_local(&socket, &netfilter, &client, &NameSource::Off)
            .await
            .unwrap();
        assert_eq!(
            answer.lines.len(),
            150 + 4,
            "the client's DNATs, TCP and UDP"
        );
        assert!(
            said.starts_with(
                "ipvs-trace who: answered from the kernel's connection table (conntrack's DNAT \
                 entries): no serve answers at unix:"
            ),
            "{said}"
        );
        let table = dir.join("ip_vs_conn");
        std::fs::write(&table, SAMPLE).unwrap();
        let both = tables(&dir, table.clone(), true);
        let either = Query {
            client: Some("10.245.97.12".parse().unwrap()),
            ..Query::default()
        };
        let (answer, said) = answer_local(&socket, &both, &either, &NameSource::Off)
            .await
            .unwrap();
        assert_eq!(answer.lines.len(), 6, "the IPVS table's");
        assert!(
            said.starts_with(&format!(
                "ipvs-trace who: answered from the kernel's connection tables ({} and \
                 conntrack's DNAT entries): ",
                table.display()
            )),
            "{said}"
        );
        assert!(said.contains(KERNEL_TABLE_MARK), "{said}");
        let (answer, _) = answer_local(&socket, &both, &client, &NameSource::Off)
            .await
            .unwrap();
        assert_eq!(answer.lines.len(), 154, "conntrack's");
    }

    #[tokio::test]
    async fn a_running_serve_answers() {
        let dir = temp_dir("local-serve");
        let path = dir.join("api.sock");
        serve_on(&path, StatusCode::OK, "application/x-ndjson", false, NAMED);
        let endpoint = Endpoint::Unix(path);
        let none = tables(&dir, dir.join("none"), false);
        let (answer, said) = answer_local(&endpoint, &none, &query(), &NameSource::Off)
            .await
            .unwrap();
        assert_eq!(answer.lines.len(), NAMED.lines().count());
        assert_eq!(
            said,
            format!("ipvs-trace who: answered by serve at {endpoint}")
        );
    }

    #[tokio::test]
    async fn a_serve_that_refuses_is_not_a_reason_to_fall_back() {
        let dir = temp_dir("local-bad");
        let path = dir.join("api.sock");
        serve_on(
            &path,
            StatusCode::BAD_REQUEST,
            "text/plain",
            false,
            "parameter since: bad\n",
        );
        let table = dir.join("ip_vs_conn");
        std::fs::write(&table, SAMPLE).unwrap();
        let table = tables(&dir, table, false);
        let err = answer_local(&Endpoint::Unix(path), &table, &query(), &NameSource::Off)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("refused the question: parameter since: bad"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_explicit_server_that_is_not_there_is_an_error() {
        let dir = temp_dir("explicit");
        let config = WhoConfig {
            query: Query {
                client: Some("10.245.97.12".parse().unwrap()),
                limit: DEFAULT_LIMIT,
                ..Query::default()
            },
            output: OutputFormat::Json,
            source: Source::Server(Endpoint::Unix(dir.join("api.sock"))),
            names: NameSource::Off,
            record: None,
        };
        let err = run(config).await.unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "no serve answers at unix:{}/api.sock: No such file or directory (os error 2)",
                dir.display()
            )
        );
    }
}
