//! The answer when no serve runs: the kernel's IPVS connection table as it is now
//! ([`crate::ipvs::conn_table`]), filtered by the question, named by the usual sources.
//!
//! The table holds the connections alive now (and those closed in the last two minutes or so:
//! TCP entries linger in TIME_WAIT) and the persistence templates; it says nothing about when
//! they were made, by which scheduler, with which forwarding method or counters. The lines
//! written from it carry what the table shows and `null` for the rest (`time` included), never
//! an invented value; `netns` is this process's network namespace, whose table
//! `/proc/net/ip_vs_conn` shows. The time window of the question cannot be applied to entries
//! without a time, and the caller says so.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::line::Line;
use super::Answer;
use crate::events::model::EventKind;
use crate::events::Event;
use crate::history::{Decision, Query};
use crate::ipvs::conn_table::{self, ConnEntry};
use crate::kube::source::{self, Ambient, NameSource, Opened};
use crate::kube::{Index, Names};

/// How long live watches may take to sync before the answer goes out with fewer names.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the table at `path` ([`conn_table::PATH`]) and answers `query` from it (its time
/// window aside).
pub async fn answer(path: &Path, query: &Query, names: &NameSource) -> anyhow::Result<Answer> {
    let opened = source::open(
        names,
        &Ambient::detect(),
        query.pod.is_some() || query.service.is_some(),
    )?;
    if let Opened::Live(_, live) = &opened {
        if !live.wait_synced(SYNC_TIMEOUT).await {
            tracing::warn!(
                "the Kubernetes names did not sync within {} s: addresses without a name stay \
                 unnamed ({})",
                SYNC_TIMEOUT.as_secs(),
                live.summary_lines().join("; ")
            );
        }
    }
    let index = opened.index().cloned();
    let query = query.clone();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = File::open(&path).with_context(|| {
            format!(
                "reading {}: is ip_vs loaded (kube-proxy in IPVS mode loads it)?",
                path.display()
            )
        })?;
        let netns = crate::loader::kernel::own_netns().map(u64::from);
        let guard = index.as_ref().map(crate::kube::read);
        let mut selection = Selection::new(&query, guard.as_deref(), netns);
        let stats = conn_table::read(BufReader::new(file), |entry| selection.offer(entry))
            .with_context(|| format!("reading {}", path.display()))?;
        if let Some(err) = &stats.first_error {
            tracing::warn!(
                "{}: {} line(s) not understood, skipped; the first: {err}",
                path.display(),
                stats.malformed
            );
        }
        Ok(selection.finish())
    })
    .await
    .context("the reader of the connection table failed")?
}

/// The entries that answer a question, with their names.
pub struct Selection<'a> {
    /// The question without its time window (the table has no times).
    query: Query,
    index: Option<&'a Index>,
    netns: Option<u64>,
    matched: Vec<(ConnEntry, Line)>,
}

impl<'a> Selection<'a> {
    #[must_use]
    pub fn new(query: &Query, index: Option<&'a Index>, netns: Option<u64>) -> Selection<'a> {
        Selection {
            query: Query {
                since: None,
                until: None,
                ..query.clone()
            },
            index,
            netns,
            matched: Vec::new(),
        }
    }

    /// Keeps `entry` if it answers the question.
    pub fn offer(&mut self, entry: ConnEntry) {
        // The address filters first: on a busy node most entries fail them, without a lookup.
        if self
            .query
            .client
            .is_some_and(|want| !want.matches(entry.client))
            || self
                .query
                .backend
                .is_some_and(|want| !want.matches(entry.dest))
        {
            return;
        }
        let event = event_of(&entry);
        let names = match self.index {
            Some(index) => index.names(&event),
            None => Names::NONE,
        };
        let decision = Decision {
            unix_ns: 0,
            names: names.owned(),
            event,
        };
        if self.query.matches(&decision) {
            let line = line_of(&entry, &names, self.netns);
            self.matched.push((entry, line));
        }
    }

    /// The answer: entries by client, virtual service and real server (the table's own order
    /// is its hash order), at most `limit` of them.
    #[must_use]
    pub fn finish(mut self) -> Answer {
        self.matched.sort_by(|(a, _), (b, _)| {
            (a.client.ip(), a.client.port(), a.vip, a.dest).cmp(&(
                b.client.ip(),
                b.client.port(),
                b.vip,
                b.dest,
            ))
        });
        let truncated = self.matched.len() > self.query.limit;
        self.matched.truncate(self.query.limit);
        Answer {
            lines: self
                .matched
                .iter()
                .map(|(_, line)| line.to_json())
                .collect(),
            truncated,
        }
    }
}

/// The entry as an event, for the name index and the question's matching: what the table
/// does not show is absent.
fn event_of(entry: &ConnEntry) -> Event {
    Event {
        kind: if entry.is_template() {
            EventKind::Template
        } else {
            EventKind::New
        },
        dataplane: crate::dataplane::Dataplane::Ipvs,
        timestamp_ns: 0,
        cpu: 0,
        netns: None,
        conn: None,
        proto: entry.proto,
        client: entry.client,
        vip: entry.vip,
        backend: Some(entry.dest),
        fwd: None,
        flags: 0,
        state: 0,
        scheduler: None,
        dest: None,
    }
}

/// The contract's line for an entry: the table's addresses and the names, `null` for the rest.
fn line_of(entry: &ConnEntry, names: &Names<'_>, netns: Option<u64>) -> Line {
    Line {
        time: None,
        event: Some(
            if entry.is_template() {
                "template"
            } else {
                "new"
            }
            .to_owned(),
        ),
        proto: Some(entry.proto.to_string()),
        client: Some(entry.client.to_string()),
        vip: Some(entry.vip.to_string()),
        backend: Some(entry.dest.to_string()),
        service: names.service.map(|s| s.label.to_string()),
        service_type: names.service.map(|s| s.service_type.as_str().to_owned()),
        backend_pod: names.backend_pod().map(str::to_owned),
        backend_node: names.backend_node().map(str::to_owned),
        client_pod: names.client_pod().map(str::to_owned),
        backend_terminating: names.backend.and_then(|b| b.terminating),
        netns,
        dataplane: Some("ipvs".to_owned()),
        ..Line::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::conn_table::tests::SAMPLE;
    use crate::output::tests::{assert_golden, seed_index};

    fn select(query: &Query, index: Option<&Index>) -> Answer {
        let mut selection = Selection::new(query, index, Some(4_026_531_840));
        conn_table::read(SAMPLE.as_bytes(), |e| selection.offer(e)).unwrap();
        selection.finish()
    }

    fn lines(answer: &Answer) -> Vec<Line> {
        answer
            .lines
            .iter()
            .map(|l| Line::parse(l).unwrap())
            .collect()
    }

    #[test]
    fn a_client_ip_finds_its_connections_and_templates() {
        let query = Query {
            client: Some("10.245.97.12".parse().unwrap()),
            ..Query::default()
        };
        let answer = select(&query, None);
        assert!(!answer.truncated);
        let found = lines(&answer);
        let summary: Vec<_> = found
            .iter()
            .map(|l| {
                format!(
                    "{} {} {}",
                    l.event.as_deref().unwrap(),
                    l.client.as_deref().unwrap(),
                    l.backend.as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                // The firewall-mark template's virtual "address" is the mark, 0.0.0.1.
                "template 10.245.97.12:0 10.245.112.32:0",
                "template 10.245.97.12:0 10.245.112.32:8080",
                "new 10.245.97.12:5060 10.245.112.32:5060",
                "new 10.245.97.12:51706 10.245.112.32:8080",
                "new 10.245.97.12:51707 [fd00:245::20]:8080",
                "new 10.245.97.12:54000 10.245.112.47:53",
            ]
        );
        // Nothing the table does not show is made up.
        let first = &found[3];
        assert_eq!(
            (
                first.time.as_ref(),
                first.scheduler.as_ref(),
                first.fwd.as_ref()
            ),
            (None, None, None)
        );
        assert_eq!(
            (
                first.weight,
                first.active_conns,
                first.cpu,
                first.conn.as_ref()
            ),
            (None, None, None, None)
        );
        assert_eq!(first.netns, Some(4_026_531_840));
        assert_eq!(first.service, None);
    }

    #[test]
    fn one_connection_by_port_and_named() {
        let index = seed_index();
        let query = Query {
            client: Some("10.245.97.12:51706".parse().unwrap()),
            ..Query::default()
        };
        let answer = select(&query, Some(&index));
        let text = answer.lines.join("\n") + "\n";
        assert_golden("who-kernel-named.jsonl", &text);
        let line = Line::parse(&answer.lines[0]).unwrap();
        assert_eq!(line.service.as_deref(), Some("ratel/vpaas-demo-prod:http"));
        assert!(line.backend_pod.is_some());
    }

    #[test]
    fn the_reverse_questions_and_the_limit() {
        let index = seed_index();
        let by_backend = Query {
            backend: Some("10.245.112.32:8080".parse().unwrap()),
            ..Query::default()
        };
        assert_eq!(select(&by_backend, None).lines.len(), 2);
        let by_pod = Query {
            pod: Some(
                "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm".to_owned(),
            ),
            ..Query::default()
        };
        let answer = select(&by_pod, Some(&index));
        assert!(!answer.lines.is_empty());
        for line in lines(&answer) {
            assert_eq!(
                line.backend
                    .as_deref()
                    .map(|b| b.starts_with("10.245.112.32:")),
                Some(true)
            );
        }
        // Without names a pod question matches nothing (the caller refuses it earlier).
        assert!(select(&by_pod, None).lines.is_empty());
        let by_service = Query {
            service: Some("ratel/vpaas-demo-prod".parse().unwrap()),
            limit: 2,
            ..Query::default()
        };
        let answer = select(&by_service, Some(&index));
        assert_eq!(answer.lines.len(), 2);
        assert!(answer.truncated);
    }

    #[test]
    fn the_time_window_is_not_applied_to_entries_without_time() {
        let query = Query {
            client: Some("198.51.100.7".parse().unwrap()),
            since: Some(i64::MAX - 1),
            ..Query::default()
        };
        assert_eq!(select(&query, None).lines.len(), 1);
    }
}
