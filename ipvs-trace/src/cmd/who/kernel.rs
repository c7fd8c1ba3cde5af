//! The answer when no serve runs: the kernel's connection tables as they are now, filtered by
//! the question, named by the usual sources.
//!
//! - **IPVS**: `/proc/net/ip_vs_conn` ([`crate::ipvs::conn_table`]), the connections of
//!   kube-proxy's IPVS mode and the persistence templates;
//! - **conntrack**: on the netfilter modes' nodes, the entries of the conntrack table with a
//!   destination NAT binding (`IPS_DST_NAT`), read with a ctnetlink dump
//!   ([`crate::conntrack::Client::dump`]): kube-proxy's nftables or iptables DNAT to the
//!   endpoint. The client and the Service address are the original tuple's, the backend the
//!   reply tuple's source, as the live events have them (docs/dataplanes.md). IPVS
//!   connections' conntrack entries carry a null binding (IPVS rewrites the reply tuple itself), never `IPS_DST_NAT`, so a
//!   half-migrated node shows each connection once.
//!
//! Each table is read when the node has it: a table that is absent (ip_vs or
//! nf_conntrack_netlink not loaded) is not there, one that cannot be read is an error. Both are
//! read a line or a datagram at a time (a busy node's tables hold millions of entries): only
//! the entries that answer the question are kept, at most the question's limit.
//!
//! The tables hold the connections alive now (and those closed in the last two minutes or so:
//! TCP entries linger in TIME_WAIT); they say nothing about when they were made, or, for IPVS,
//! by which scheduler, with which forwarding method or counters. The lines written from them
//! carry what the tables show and `null` for the rest (`time` included), never an invented
//! value; `scheduler` is `random` for a netfilter DNAT (what every netfilter decision says),
//! `dataplane` is `ipvs` for IPVS, and for conntrack the netfilter mode that programs the
//! destination ([`Snapshot::dataplane_of`], as the tracer tells it); `netns` is this
//! process's network namespace, whose tables are read. The time window of the question cannot
//! be applied to entries without a time, and the caller says so.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::line::Line;
use super::Answer;
use crate::conntrack::{self, ConntrackError, DumpStats};
use crate::dataplane::Dataplane;
use crate::events::classify::Snapshot;
use crate::events::model::{EventKind, Proto};
use crate::events::Event;
use crate::history::{Decision, Query};
use crate::ipvs::conn_table::{self, ConnEntry};
use crate::ipvs::netlink::{Replay, Transport};
use crate::kube::source::{self, Ambient, NameSource, Opened};
use crate::kube::{Index, Names};

/// How long live watches may take to sync before the answer goes out with fewer names.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`answer`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// The IPVS connection table ([`conn_table::PATH`]).
    pub ip_vs_conn: PathBuf,
    pub conntrack: ConntrackTable,
}

/// Where the conntrack table comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConntrackTable {
    /// This network namespace's, over ctnetlink; with `--debug-dump-netlink DIR` the raw
    /// replies are also written to DIR (the decoder's test material).
    Kernel { record: Option<PathBuf> },
    /// A recording made so, replayed (tests).
    Replay(PathBuf),
}

impl Tables {
    /// This node's tables.
    #[must_use]
    pub fn node(record: Option<PathBuf>) -> Tables {
        Tables {
            ip_vs_conn: PathBuf::from(conn_table::PATH),
            conntrack: ConntrackTable::Kernel { record },
        }
    }
}

/// An answer from the tables, and which of them the node had (for the line that says so).
#[derive(Debug)]
pub struct TablesAnswer {
    pub answer: Answer,
    /// Each table read, as the notice names it.
    pub read: Vec<String>,
}

/// How the notice names the conntrack table.
pub const CONNTRACK_TABLE: &str = "conntrack's DNAT entries";

/// Reads the tables the node has and answers `query` from them (its time window aside).
pub async fn answer(
    tables: &Tables,
    query: &Query,
    names: &NameSource,
) -> anyhow::Result<TablesAnswer> {
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
    let tables = tables.clone();
    tokio::task::spawn_blocking(move || {
        let netns = crate::loader::kernel::own_netns().map(u64::from);
        let guard = index.as_ref().map(crate::kube::read);
        let mut selection = Selection::new(&query, guard.as_deref(), netns);
        let mut read = Vec::new();
        let mut absent = Vec::new();
        match read_ip_vs_conn(&tables.ip_vs_conn, &mut selection)? {
            None => read.push(tables.ip_vs_conn.display().to_string()),
            Some(why) => absent.push(why),
        }
        match read_conntrack(&tables.conntrack, &mut selection)? {
            None => read.push(CONNTRACK_TABLE.to_owned()),
            Some(why) => absent.push(why),
        }
        if read.is_empty() {
            anyhow::bail!(
                "neither the IPVS nor the conntrack table is there: {}",
                absent.join("; ")
            );
        }
        Ok(TablesAnswer {
            answer: selection.finish(),
            read,
        })
    })
    .await
    .context("the reader of the connection tables failed")?
}

/// Offers the IPVS table's entries; `Some(why)` when the node has no such table.
fn read_ip_vs_conn(path: &Path, selection: &mut Selection<'_>) -> anyhow::Result<Option<String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Ok(Some(format!(
                "reading {}: {err}: is ip_vs loaded (kube-proxy in IPVS mode loads it)?",
                path.display()
            )));
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let stats = conn_table::read(BufReader::new(file), |entry| {
        selection.offer(ipvs_event(&entry));
    })
    .with_context(|| format!("reading {}", path.display()))?;
    if let Some(err) = &stats.first_error {
        tracing::warn!(
            "{}: {} line(s) not understood, skipped; the first: {err}",
            path.display(),
            stats.malformed
        );
    }
    Ok(None)
}

/// Offers the conntrack table's DNAT entries, each with the netfilter mode kube-proxy's
/// rules give its destination (this node's, read once at the first entry that passes the
/// address filters; a replay has none: the mode is then nftables); `Some(why)` when the node
/// has no conntrack over netlink.
fn read_conntrack(
    table: &ConntrackTable,
    selection: &mut Selection<'_>,
) -> anyhow::Result<Option<String>> {
    let dumped = match table {
        ConntrackTable::Kernel { record } => conntrack::Client::open(record.as_deref())
            .and_then(|mut client| offer_dnat(&mut client, selection, Snapshot::read)),
        ConntrackTable::Replay(dir) => {
            let replay = Replay::open(dir)
                .with_context(|| format!("opening the recording {}", dir.display()))?;
            offer_dnat(
                &mut conntrack::Client::new(replay),
                selection,
                Snapshot::default,
            )
        }
    };
    match dumped {
        Ok(stats) => {
            if let Some(err) = &stats.first_error {
                tracing::warn!(
                    "the conntrack table: {} entr(ies) not understood, skipped; the first: {err}",
                    stats.malformed
                );
            }
            Ok(None)
        }
        Err(err @ ConntrackError::NotLoaded) => Ok(Some(err.to_string())),
        Err(err) => Err(err).context("reading the conntrack table"),
    }
}

fn offer_dnat<T: Transport>(
    client: &mut conntrack::Client<T>,
    selection: &mut Selection<'_>,
    rules: impl FnOnce() -> Snapshot,
) -> Result<DumpStats, ConntrackError> {
    let mut rules = Some(rules);
    let mut snapshot: Option<Snapshot> = None;
    client.dump(&mut |entry| {
        if !entry.status.dst_nat() {
            return;
        }
        let backend = entry.reply.src;
        if !selection.wants(entry.orig.src, backend) {
            return;
        }
        let snapshot = snapshot.get_or_insert_with(|| {
            let read = rules.take().map(|read| read()).unwrap_or_default();
            if let Some(why) = read.failed() {
                tracing::warn!(
                    "cannot read kube-proxy's netfilter rules ({why}): conntrack's DNAT \
                     entries are said to be of the node's mode, nftables when unknown"
                );
            }
            read
        });
        let (dataplane, _) = snapshot.dataplane_of(entry.orig.proto, entry.orig.dst);
        selection.offer(dnat_event(&entry, dataplane));
    })
}

/// The order of an answer (the tables' own order is their hash order) and what makes an
/// entry the same as another: a dump can list an entry twice when the table changes under it.
type Key = (
    IpAddr,
    u16,
    SocketAddr,
    Option<SocketAddr>,
    Proto,
    u32,
    Dataplane,
);

/// The entries that answer a question, with their names.
pub struct Selection<'a> {
    /// The question without its time window (the tables have no times).
    query: Query,
    index: Option<&'a Index>,
    netns: Option<u64>,
    /// The first `limit` by [`Key`].
    matched: BTreeMap<Key, Line>,
    truncated: bool,
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
            matched: BTreeMap::new(),
            truncated: false,
        }
    }

    /// Whether a connection of `client` to `backend` passes the question's address filters:
    /// on a busy node most entries fail them, before any lookup.
    #[must_use]
    pub fn wants(&self, client: SocketAddr, backend: SocketAddr) -> bool {
        self.query.client.is_none_or(|want| want.matches(client))
            && self.query.backend.is_none_or(|want| want.matches(backend))
    }

    /// Keeps the entry seen as `event` if it answers the question and is among the first
    /// `limit`.
    pub fn offer(&mut self, event: Event) {
        if event
            .backend
            .is_some_and(|backend| !self.wants(event.client, backend))
        {
            return;
        }
        let key = (
            event.client.ip(),
            event.client.port(),
            event.vip,
            event.backend,
            event.proto,
            event.kind as u32,
            event.dataplane,
        );
        if self.truncated
            && self
                .matched
                .last_key_value()
                .is_some_and(|(last, _)| key >= *last)
        {
            return;
        }
        let names = match self.index {
            Some(index) => index.names(&event),
            None => Names::NONE,
        };
        let line = line_of(&event, &names, self.netns);
        let decision = Decision {
            unix_ns: 0,
            names: names.owned(),
            event,
        };
        if !self.query.matches(&decision) {
            return;
        }
        self.matched.insert(key, line);
        if self.matched.len() > self.query.limit {
            self.matched.pop_last();
            self.truncated = true;
        }
    }

    /// The answer: entries by client, Service address and backend, at most `limit` of them.
    #[must_use]
    pub fn finish(self) -> Answer {
        Answer {
            lines: self.matched.values().map(Line::to_json).collect(),
            truncated: self.truncated,
        }
    }
}

/// An IPVS table entry as an event, for the name index and the question's matching: what the
/// table does not show is absent.
fn ipvs_event(entry: &ConnEntry) -> Event {
    Event {
        kind: if entry.is_template() {
            EventKind::Template
        } else {
            EventKind::New
        },
        dataplane: Dataplane::Ipvs,
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

/// A conntrack entry's DNAT as the event the tracer made of it: client and Service address
/// from the original tuple, the endpoint from the reply tuple's source, `random`.
fn dnat_event(entry: &conntrack::Entry, dataplane: Dataplane) -> Event {
    Event {
        kind: EventKind::New,
        dataplane,
        timestamp_ns: 0,
        cpu: 0,
        netns: None,
        conn: None,
        proto: entry.orig.proto,
        client: entry.orig.src,
        vip: entry.orig.dst,
        backend: Some(entry.reply.src),
        fwd: None,
        flags: 0,
        state: 0,
        scheduler: Some("random".into()),
        dest: None,
    }
}

/// The contract's line for an entry: the table's addresses and the names, `null` for the rest.
fn line_of(event: &Event, names: &Names<'_>, netns: Option<u64>) -> Line {
    Line {
        time: None,
        event: Some(event.kind.as_str().to_owned()),
        proto: Some(event.proto.to_string()),
        client: Some(event.client.to_string()),
        vip: Some(event.vip.to_string()),
        backend: event.backend.map(|b| b.to_string()),
        scheduler: event.scheduler.as_deref().map(str::to_owned),
        service: names.service.map(|s| s.label.to_string()),
        service_type: names.service.map(|s| s.service_type.as_str().to_owned()),
        backend_pod: names.backend_pod().map(str::to_owned),
        backend_node: names.backend_node().map(str::to_owned),
        client_pod: names.client_pod().map(str::to_owned),
        backend_terminating: names.backend.and_then(|b| b.terminating),
        netns,
        dataplane: Some(event.dataplane.as_str().to_owned()),
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
        conn_table::read(SAMPLE.as_bytes(), |e| selection.offer(ipvs_event(&e))).unwrap();
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

    /// The recorded dump of tests/conntrack/dump-6.18 (a 6.18 netns: nftables DNAT of
    /// 172.31.0.90:80, :53/udp and [fd00:31::90]:80 to three endpoints, and connections
    /// without NAT), through the selection.
    fn select_conntrack(query: &Query) -> Answer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conntrack/dump-6.18");
        let mut selection = Selection::new(query, None, Some(4_026_531_840));
        let absent = read_conntrack(&ConntrackTable::Replay(dir), &mut selection).unwrap();
        assert_eq!(absent, None);
        selection.finish()
    }

    #[test]
    fn a_connection_by_port_from_conntrack() {
        // One of the TCP connections to the Service in conntrack -L: src=198.51.100.71
        // dst=172.31.0.90 sport=PORT dport=80 ... src=ENDPOINT dst=198.51.100.71 sport=8080.
        let dump = include_str!("../../../tests/conntrack/dump-6.18/conntrack-L-ipv4.txt");
        let listed: Vec<&str> = dump
            .lines()
            .find(|l| l.contains(" tcp ") && l.contains("dst=172.31.0.90 "))
            .expect("a connection to the Service in conntrack -L")
            .split_whitespace()
            .collect();
        let field = |name: &str, nth: usize| {
            listed
                .iter()
                .filter_map(|f| f.strip_prefix(name))
                .nth(nth)
                .unwrap()
        };
        let (sport, reply_src) = (field("sport=", 0), field("src=", 1));
        let query = Query {
            client: Some(format!("198.51.100.71:{sport}").parse().unwrap()),
            ..Query::default()
        };
        let answer = select_conntrack(&query);
        assert_eq!(answer.lines.len(), 1);
        let line = Line::parse(&answer.lines[0]).unwrap();
        assert_eq!(line.backend, Some(format!("{reply_src}:8080")));
        assert_eq!(line.vip.as_deref(), Some("172.31.0.90:80"));
        assert_eq!(
            (
                line.event.as_deref(),
                line.proto.as_deref(),
                line.scheduler.as_deref()
            ),
            (Some("new"), Some("TCP"), Some("random"))
        );
        assert_eq!(line.dataplane.as_deref(), Some("nftables"));
        assert_eq!(line.netns, Some(4_026_531_840));
        // Nothing the table does not show is made up.
        assert_eq!((line.time, line.fwd, line.conn), (None, None, None));
        assert_eq!(
            (line.weight, line.active_conns, line.cpu),
            (None, None, None)
        );
        let raw: serde_json::Value = serde_json::from_str(&answer.lines[0]).unwrap();
        for field in [
            "time",
            "fwd",
            "weight",
            "active_conns",
            "inactive_conns",
            "conn",
        ] {
            assert!(raw[field].is_null(), "{field}: {raw}");
        }
    }

    #[test]
    fn conntrack_entries_without_dnat_are_not_decisions() {
        // Three connections went to 10.245.9.1:8080 directly: no NAT, no decision.
        let by_backend = Query {
            backend: Some("10.245.9.1".parse().unwrap()),
            limit: 100_000,
            ..Query::default()
        };
        let found = lines(&select_conntrack(&by_backend));
        assert!(!found.is_empty());
        for line in &found {
            assert_ne!(line.vip, line.backend, "{line:?}");
            assert!(
                line.vip
                    .as_deref()
                    .is_some_and(|v| v.starts_with("172.31.0.90:")),
                "{line:?}"
            );
        }
        let v6 = Query {
            client: Some("fd00:198:51::71".parse().unwrap()),
            ..Query::default()
        };
        assert_eq!(select_conntrack(&v6).lines.len(), 5);
        // The limit keeps the first by client, in order, and says more matched.
        let limited = Query {
            client: Some("198.51.100.71".parse().unwrap()),
            limit: 3,
            ..Query::default()
        };
        let answer = select_conntrack(&limited);
        assert!(answer.truncated);
        let all = select_conntrack(&Query {
            limit: 100_000,
            ..limited.clone()
        });
        assert!(!all.truncated);
        assert_eq!(all.lines.len(), 154);
        assert_eq!(answer.lines, all.lines[..3]);
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
