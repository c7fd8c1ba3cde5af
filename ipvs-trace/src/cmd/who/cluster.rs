//! `who --cluster`: the same question asked of every node, through the Kubernetes API.
//!
//! Each node's history is on that node (serve records what its own IPVS decided), so the
//! asker runs `/ipvs-trace who -o json <the question>` in every pod of the ipvs-trace
//! DaemonSet through the pods' `exec` subresource (what `kubectl exec` does; a WebSocket,
//! kube-rs' `ws` feature), a few pods at a time, each within a timeout. Inside the pod, `who`
//! asks that node's serve over its Unix socket as root, so the history never leaves the node
//! but as an answer to this question, and only for those allowed `create` on `pods/exec` in
//! the DaemonSet's namespace. The question is passed with absolute times, so every node
//! answers for the same window whatever its clock says "now" is.
//!
//! The answers are merged by time (lines without a time, from a node whose serve was not
//! running, last), the newest `--limit` kept. Every node that did not answer is named on
//! stderr with why.

use std::time::Duration;

use anyhow::Context as _;
use futures::{stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, ListParams};
use kube::Api;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::line::Line;
use super::render::Row;
use super::{notice, KERNEL_TABLE_MARK, TRUNCATED_MARK};
use crate::clock;
use crate::history::Query;
use crate::kube::watch::{self, KubeSource};

/// The DaemonSet's pods carry this label (deploy/daemonset.yaml).
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=ipvs-trace";
/// The binary in the image (the DaemonSet's `command`).
pub const COMMAND: &str = "/ipvs-trace";
/// Pods asked at once.
const CONCURRENCY: usize = 8;
/// How long one pod may take: longer than the remote `who` waits for its serve
/// ([`super::client::ASK_TIMEOUT`]), so that its own error comes back rather than ours.
pub const POD_TIMEOUT: Duration = Duration::from_secs(75);
/// The most read of one pod's stdout: a full answer (`MAX_LIMIT` lines) fits.
const MAX_STDOUT: u64 = 256 << 20;
/// The most kept of one pod's stderr.
const MAX_STDERR: u64 = 64 << 10;

/// One pod's part.
#[derive(Debug, PartialEq, Eq)]
pub struct NodeAnswer {
    /// The pod's node (`spec.nodeName`), or the pod's name when it has none.
    pub node: String,
    pub pod: String,
    pub result: Result<Remote, String>,
}

/// What a pod's `who` printed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub lines: Vec<String>,
    pub stderr: String,
}

impl Remote {
    fn truncated(&self) -> bool {
        self.stderr.contains(TRUNCATED_MARK)
    }

    fn answered_from_kernel_table(&self) -> bool {
        self.stderr.contains(KERNEL_TABLE_MARK)
    }
}

/// Asks every ipvs-trace pod in `namespace`; the rows are merged and each carries its node.
pub async fn answer(
    query: &Query,
    namespace: &str,
    source: &KubeSource,
) -> anyhow::Result<(Vec<Row>, bool)> {
    let client = watch::client(source).await?;
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let list = pods
        .list(&ListParams::default().labels(POD_SELECTOR))
        .await
        .with_context(|| {
            format!(
                "listing the ipvs-trace pods ({POD_SELECTOR}) in namespace {namespace} \
                 (needs `list` on pods there)"
            )
        })?;
    if list.items.is_empty() {
        anyhow::bail!(
            "no pod labelled {POD_SELECTOR} in namespace {namespace}: is the DaemonSet \
             deployed there (--cluster-namespace)?"
        );
    }
    let args = remote_args(query);
    let answers: Vec<NodeAnswer> = stream::iter(list.items)
        .map(|pod| ask_pod(&pods, pod, &args))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    report(namespace, &answers);
    if answers.iter().all(|a| a.result.is_err()) {
        anyhow::bail!("no ipvs-trace pod answered (each node's reason is above)");
    }
    Ok(merge(answers, query.limit))
}

/// The remote command line: `who -o json` and the question, times absolute.
#[must_use]
pub fn remote_args(query: &Query) -> Vec<String> {
    let mut args = vec![
        COMMAND.to_owned(),
        "who".to_owned(),
        "-o".to_owned(),
        "json".to_owned(),
    ];
    let mut flag = |name: &str, value: String| {
        args.push(format!("--{name}"));
        args.push(value);
    };
    if let Some(backend) = &query.backend {
        flag("backend", backend.to_string());
    }
    if let Some(pod) = &query.pod {
        flag("pod", pod.clone());
    }
    if let Some(service) = &query.service {
        flag("service", service.as_str().to_owned());
    }
    if let Some(since) = query.since {
        flag("since", clock::format_rfc3339(i128::from(since)));
    }
    if let Some(until) = query.until {
        flag("until", clock::format_rfc3339(i128::from(until)));
    }
    flag("limit", query.limit.to_string());
    if let Some(client) = &query.client {
        args.push(client.to_string());
    }
    args
}

async fn ask_pod(pods: &Api<Pod>, pod: Pod, args: &[String]) -> NodeAnswer {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.clone())
        .unwrap_or_else(|| format!("(pod {name}, not scheduled)"));
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.clone())
        .unwrap_or_default();
    let result = if phase == "Running" {
        match tokio::time::timeout(POD_TIMEOUT, exec(pods, &name, args)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", POD_TIMEOUT.as_secs())),
        }
    } else {
        Err(format!(
            "its ipvs-trace pod {name} is not running (phase {phase:?})"
        ))
    };
    NodeAnswer {
        node,
        pod: name,
        result,
    }
}

/// Runs `args` in the pod, reads its output and exit status.
async fn exec(pods: &Api<Pod>, pod: &str, args: &[String]) -> Result<Remote, String> {
    let params = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut process = pods
        .exec(pod, args.to_vec(), &params)
        .await
        .map_err(|err| format!("exec in pod {pod} failed: {err}"))?;
    let (Some(stdout), Some(stderr), Some(status)) =
        (process.stdout(), process.stderr(), process.take_status())
    else {
        return Err("the exec stream has no stdout, stderr or status".to_owned());
    };
    let (stdout, stderr, status) = tokio::join!(
        read_bounded(stdout, MAX_STDOUT),
        read_bounded(stderr, MAX_STDERR),
        status
    );
    process.abort();
    let stderr = String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned();
    let last_words = || {
        stderr
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .map(|line| line.trim().trim_start_matches("error: ").to_owned())
    };
    match status {
        Some(status) if status.status.as_deref() == Some("Success") => {}
        Some(status) => {
            return Err(last_words()
                .or(status.message)
                .unwrap_or_else(|| "the command failed".to_owned()));
        }
        None => {
            return Err(last_words()
                .unwrap_or_else(|| "the exec stream ended without an exit status".to_owned()));
        }
    }
    let stdout = stdout.map_err(|err| format!("reading its answer: {err}"))?;
    if stdout.len() as u64 > MAX_STDOUT {
        return Err(format!(
            "its answer is larger than {} MiB",
            MAX_STDOUT >> 20
        ));
    }
    let text = String::from_utf8(stdout).map_err(|_| "its answer is not UTF-8".to_owned())?;
    Ok(Remote {
        lines: text
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
        stderr,
    })
}

/// Reads up to `limit` bytes and one more (to tell that there was more), then drains the rest
/// so that the exec stream is not held up.
async fn read_bounded(reader: impl AsyncRead + Unpin, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut reader = reader.take(limit + 1);
    reader.read_to_end(&mut out).await?;
    tokio::io::copy(&mut reader.into_inner(), &mut tokio::io::sink()).await?;
    Ok(out)
}

/// One line for the whole, and one for each node that did not answer or answered without
/// history.
fn report(namespace: &str, answers: &[NodeAnswer]) {
    let failed = answers.iter().filter(|a| a.result.is_err()).count();
    let from_table = answers
        .iter()
        .filter(|a| {
            a.result
                .as_ref()
                .is_ok_and(Remote::answered_from_kernel_table)
        })
        .count();
    notice(&format!(
        "ipvs-trace who: asked {} ipvs-trace pod(s) in namespace {namespace} (pods/exec): {} \
         answered{}, {failed} did not",
        answers.len(),
        answers.len() - failed,
        if from_table > 0 {
            format!(
                " ({from_table} from the kernel's connection table: no serve ran there; live \
                 entries only, no times)"
            )
        } else {
            String::new()
        }
    ));
    for answer in answers {
        match &answer.result {
            Err(why) => notice(&format!(
                "ipvs-trace who: node {} did not answer: {why}",
                answer.node
            )),
            Ok(remote) if remote.answered_from_kernel_table() => notice(&format!(
                "ipvs-trace who: node {} answered from the kernel's connection table",
                answer.node
            )),
            Ok(_) => {}
        }
    }
}

/// The answers merged by time, oldest first, lines without a time last; the newest `limit`
/// kept. Truncated when more were found, or when a node's own answer was.
#[must_use]
pub fn merge(answers: Vec<NodeAnswer>, limit: usize) -> (Vec<Row>, bool) {
    let mut truncated = false;
    let mut rows: Vec<(Option<i128>, Row)> = Vec::new();
    for answer in answers {
        let Ok(remote) = answer.result else { continue };
        truncated |= remote.truncated();
        for json in remote.lines {
            let time = Line::parse(&json).ok().and_then(|line| line.unix_ns());
            rows.push((
                time,
                Row {
                    node: Some(answer.node.clone()),
                    json,
                },
            ));
        }
    }
    // Stable: one node's lines keep their order among equal times.
    rows.sort_by(|(a, x), (b, y)| (a.is_none(), a, &x.node).cmp(&(b.is_none(), b, &y.node)));
    if rows.len() > limit {
        truncated = true;
        rows.drain(..rows.len() - limit);
    }
    (rows.into_iter().map(|(_, row)| row).collect(), truncated)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn line(time: Option<&str>, client: &str) -> String {
        Line {
            time: time.map(str::to_owned),
            event: Some("new".into()),
            client: Some(client.into()),
            ..Line::default()
        }
        .to_json()
    }

    fn node(name: &str, lines: Vec<String>, stderr: &str) -> NodeAnswer {
        NodeAnswer {
            node: name.into(),
            pod: format!("ipvs-trace-{name}"),
            result: Ok(Remote {
                lines,
                stderr: stderr.into(),
            }),
        }
    }

    fn clients(rows: &[Row]) -> Vec<String> {
        rows.iter()
            .map(|r| {
                let l = Line::parse(&r.json).unwrap();
                format!("{}:{}", r.node.as_deref().unwrap(), l.client.unwrap())
            })
            .collect()
    }

    #[test]
    fn merges_by_time_and_keeps_the_newest() {
        let answers = vec![
            node(
                "a",
                vec![
                    line(Some("2026-12-07T14:00:01.000000000Z"), "1"),
                    line(Some("2026-12-07T14:00:03.000000000Z"), "3"),
                ],
                "ipvs-trace who: answered by serve at unix:/run/ipvs-trace/api.sock\n",
            ),
            NodeAnswer {
                node: "c".into(),
                pod: "ipvs-trace-c".into(),
                result: Err("no answer within 75 s".into()),
            },
            node(
                "b",
                vec![
                    // The same instant written with an offset: compared as times, not text.
                    line(Some("2026-12-07T15:00:02.000000000+01:00"), "2"),
                    line(None, "live"),
                ],
                KERNEL_TABLE_MARK,
            ),
        ];
        let (rows, truncated) = merge(answers, 10);
        assert!(!truncated);
        assert_eq!(clients(&rows), ["a:1", "b:2", "a:3", "b:live"]);

        let answers = vec![
            node(
                "a",
                vec![
                    line(Some("2026-12-07T14:00:01Z"), "1"),
                    line(Some("2026-12-07T14:00:03Z"), "3"),
                ],
                "",
            ),
            node("b", vec![line(Some("2026-12-07T14:00:02Z"), "2")], ""),
        ];
        let (rows, truncated) = merge(answers, 2);
        assert!(truncated);
        assert_eq!(clients(&rows), ["b:2", "a:3"]);
    }

    #[test]
    fn a_nodes_truncated_answer_makes_the_whole_truncated() {
        let (_, truncated) = merge(
            vec![NodeAnswer {
                node: "a".into(),
                pod: "p".into(),
                result: Ok(Remote {
                    lines: vec![line(None, "x")],
                    stderr: format!("ipvs-trace who: {TRUNCATED_MARK} ...\n"),
                }),
            }],
            10,
        );
        assert!(truncated);
    }

    #[test]
    fn the_remote_question_is_the_same_with_absolute_times() {
        let query = Query {
            client: Some("10.245.97.12:51776".parse().unwrap()),
            backend: Some("10.245.112.32".parse().unwrap()),
            pod: Some("ratel/web-1".into()),
            service: Some("ratel/web:http".parse().unwrap()),
            since: Some(1_796_652_180_000_000_000),
            until: Some(1_796_652_780_500_000_000),
            limit: 50,
        };
        let args = remote_args(&query);
        assert_eq!(
            args.join(" "),
            "/ipvs-trace who -o json --backend 10.245.112.32 --pod ratel/web-1 \
             --service ratel/web:http --since 2026-12-07T14:03:00.000000000Z \
             --until 2026-12-07T14:13:00.500000000Z --limit 50 10.245.97.12:51776"
        );
        // What the remote side parses is the question asked.
        let cli = crate::cli::Cli::try_parse_from(&args).unwrap();
        let crate::cli::Command::Who(who) = cli.command else {
            panic!("not who")
        };
        assert_eq!(who.into_config(0).unwrap().query, query);
    }
}
