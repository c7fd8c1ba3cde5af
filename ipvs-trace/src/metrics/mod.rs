//! Prometheus metrics: `trace --metrics-addr ADDR` and `serve` expose what the event loop sees as
//! counters, and the IPVS tables and the Kubernetes watches as they are at scrape time.
//!
//! Two kinds of values, two ways in:
//! - per event ([`Recorder`], owned by the event loop): connections by event kind, service,
//!   scheduler and backend, and names the index did not know. The hot path builds a small key
//!   of addresses and shared name strings (`Arc<str>` clones, no allocation) and finds its
//!   counter in a local map; the label strings are built once, the first time a key is seen.
//! - per scrape ([`collect`]): the Kubernetes watch health, the IPVS tables (configured weight
//!   and the kernel's own connection counter per backend), readiness. Nothing of these is copied
//!   on the event path.
//! - both: each backend's configured share of new connections (tables, scrape time) beside its
//!   observed share over the last minute ([`share`]: the event loop counts into a map of its own
//!   and hands it over once a second).
//!
//! Counters of the kernel's drops (ring buffer full, unreadable) live in a BPF map; the event
//! loop copies them in once a second ([`Recorder::set_losses`]) rather than a syscall per scrape
//! from another thread.
//!
//! The HTTP side ([`server`]) runs on its own thread and runtime, so a scrape that encodes
//! thousands of series never sits between the ring buffer and its reader.

mod collect;
pub mod server;
mod share;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::events::{model::EventKind, Dataplane, Event, Proto};
use crate::history::recorder::HistoryCounters;
use crate::ipvs::live::{self, LiveTables};
use crate::kube::source::Opened;
use crate::kube::watch::Health;
use crate::kube::{Names, SharedIndex};
use crate::output::summary::Losses;

pub use server::MetricsServer;
use share::{Counts, ShareKey, ShareWindow};

/// The port of `serve`'s default address, and the one the deployment scrapes.
pub const DEFAULT_PORT: u16 = 9808;

/// Metric names start with this (`ipvs_trace_connections_total`, ...).
const PREFIX: &str = "ipvs_trace";

/// Distinct label keys remembered on the event path before the map is emptied and refilled:
/// bounds its memory on a node whose pods churn for weeks. The counters themselves stay in the
/// registry; only the shortcut to them is forgotten.
const CACHE_LIMIT: usize = 65_536;

/// `--metrics-addr` and `--metrics-no-backend`, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where the HTTP endpoint listens.
    pub addr: SocketAddr,
    /// Label connection counters and table metrics with the backend (pod or address); off with
    /// `--metrics-no-backend`, to bound the number of series on large clusters.
    pub backend_label: bool,
}

/// Parses `--metrics-addr`: a bare port binds the loopback address (the endpoint is opt-in and
/// stays local unless an address is given), `IP:PORT` or `[IPv6]:PORT` binds that.
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{text:?}: expected a port (binds 127.0.0.1), or IP:PORT such as 0.0.0.0:{DEFAULT_PORT} \
             or [::]:{DEFAULT_PORT}"
        )
    })
}

/// The metrics of one run: the registry and its HTTP endpoint. Dropping it stops the endpoint.
pub struct Exporter {
    metrics: Arc<Metrics>,
    server: MetricsServer,
}

impl Exporter {
    /// Binds the endpoint now (before the probes load, so a port in use fails at once) and
    /// connects the names' sources; returns the recorder for the event loop.
    pub fn start(config: MetricsConfig, names: &Opened) -> anyhow::Result<(Exporter, Recorder)> {
        let (metrics, recorder) = Metrics::new(config.backend_label, names.index().is_some());
        if let Some(index) = names.index() {
            metrics.name_with(SharedIndex::clone(index));
        }
        if let Opened::Live(_, live) = names {
            metrics.watch_kubernetes(live.health().clone());
        }
        let server = MetricsServer::start(config.addr, Arc::clone(&metrics))?;
        Ok((Exporter { metrics, server }, recorder))
    }

    /// Every probe is attached: the IPVS tables (ip_vs is loaded now, also after `--wait`) are
    /// read in the background for the table metrics, and `/healthz` turns ready.
    pub fn attached(&self) {
        // On a node of the netfilter modes without ip_vs: no virtual services, not an error.
        match LiveTables::start_or_empty(live::DEFAULT_INTERVAL) {
            Ok(tables) => self.metrics.watch_tables(tables),
            Err(err) => tracing::warn!(
                "the metrics carry no IPVS table metrics: reading the IPVS tables failed: {err}"
            ),
        }
        self.metrics.set_ready();
    }

    /// The probes went with the ip_vs module (unloaded): `/healthz` answers 503 until
    /// [`Exporter::reattached`].
    pub fn detached(&self) {
        self.metrics.set_unready();
    }

    /// The probes are attached to a new load of ip_vs: counted, and `/healthz` is ready again.
    /// The table metrics' reader goes on (it finds the module again by itself).
    pub fn reattached(&self) {
        self.metrics.set_reattached();
    }

    /// `serve`'s recorder: its counters go out with the metrics.
    pub fn count_history(&self, counters: Arc<HistoryCounters>) {
        self.metrics.count_history(counters);
    }

    /// Where the endpoint listens.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// The registry and what its scrape-time collectors read; shared by the event loop (which
/// fills in the sources as the run starts) and the HTTP server.
pub struct Metrics {
    registry: Registry,
    sources: Arc<Sources>,
    /// Times the probes were attached again after ip_vs was unloaded and loaded again.
    reattachments: Counter,
}

/// What the scrape-time collectors read. Each part is set once, when it exists.
pub(crate) struct Sources {
    /// Every probe is attached (to the ip_vs loaded now): `/healthz` answers 200.
    ready: AtomicBool,
    backend_label: bool,
    kube: OnceLock<Health>,
    /// `serve`'s recorder: decisions recorded, kept and dropped.
    history: OnceLock<Arc<HistoryCounters>>,
    index: OnceLock<SharedIndex>,
    tables: OnceLock<LiveTables>,
    /// New connections per backend over the last minute, for the observed share.
    shares: ShareWindow,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("ready", &self.ready)
            .field("backend_label", &self.backend_label)
            .field("kube", &self.kube.get().is_some())
            .field("history", &self.history.get().is_some())
            .field("index", &self.index.get().is_some())
            .field("tables", &self.tables.get().is_some())
            .field("shares", &self.shares)
            .finish()
    }
}

impl Metrics {
    /// The registry with every metric registered, and the recorder the event loop counts with.
    /// `names`: a Kubernetes source is in use, so unresolved addresses are worth counting.
    #[must_use]
    pub fn new(backend_label: bool, names: bool) -> (Arc<Metrics>, Recorder) {
        let mut registry = Registry::with_prefix(PREFIX);
        let connections = Family::<ConnLabels, Counter>::default();
        registry.register(
            "connections",
            "Connections the Service load balancing handled, by event kind: new (scheduled to \
             the backend), template (persistence template created), reused (a new connection hit \
             an existing entry: not scheduled), no_dest (no usable real server); and by \
             dataplane: ipvs, or kube-proxy's nftables or iptables mode (their new connections \
             are the DNAT bindings). Service is the Kubernetes Service port when known, else the \
             virtual address; backend the pod when known, else ip:port",
            connections.clone(),
        );
        let lost = LossCounters::default();
        registry.register(
            "events_lost",
            "Events dropped in the kernel because the ring buffer was full (raise --ring-size)",
            lost.ring_full.clone(),
        );
        registry.register(
            "events_unreadable",
            "Events dropped in the kernel because reading the connection failed",
            lost.unreadable.clone(),
        );
        registry.register(
            "records_malformed",
            "Records from the kernel that userspace could not decode",
            lost.malformed.clone(),
        );
        registry.register(
            "events_filtered",
            "Decisions the probes left out before reserving a record, as the kernel-side filter \
             asked (trace --vip, --backend, --client, --proto, --event): not lost. Every decision \
             seen = filtered + records read + lost + unreadable",
            lost.filtered.clone(),
        );
        registry.register(
            "records_read",
            "Records userspace took from the kernel's ring buffer, decoded or not",
            lost.read.clone(),
        );
        let unresolved = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "unresolved_names",
            "Event addresses the Kubernetes index did not know, by which address (service, \
             backend, client); clients outside the cluster are expected here",
            unresolved.clone(),
        );
        let reattachments = Counter::default();
        registry.register(
            "probe_reattachments",
            "Times the probes were attached again after the ip_vs module was unloaded (their \
             kprobes go with it) and loaded again",
            reattachments.clone(),
        );
        let sources = Arc::new(Sources {
            ready: AtomicBool::new(false),
            backend_label,
            kube: OnceLock::new(),
            history: OnceLock::new(),
            index: OnceLock::new(),
            tables: OnceLock::new(),
            shares: ShareWindow::default(),
        });
        registry.register_collector(Box::new(collect::Scrape(Arc::clone(&sources))));
        let unresolved = names.then(|| {
            ["service", "backend", "client"]
                .map(|what| unresolved.get_or_create_owned(&[("address", what)]))
        });
        let recorder = Recorder {
            connections,
            cache: HashMap::new(),
            schedulers: Vec::new(),
            backend_label,
            unresolved,
            lost,
            second: Counts::new(),
            sources: Arc::clone(&sources),
        };
        let metrics = Metrics {
            registry,
            sources,
            reattachments,
        };
        (Arc::new(metrics), recorder)
    }

    /// Every probe is attached: `/healthz` answers 200 from now on.
    pub fn set_ready(&self) {
        self.sources.ready.store(true, Ordering::Release);
    }

    /// The probes are gone (ip_vs unloaded): `/healthz` answers 503 until ready again.
    pub fn set_unready(&self) {
        self.sources.ready.store(false, Ordering::Release);
    }

    /// The probes are attached again, to a new load of ip_vs: one more re-attachment, ready.
    pub fn set_reattached(&self) {
        self.reattachments.inc();
        self.set_ready();
    }

    #[must_use]
    pub fn ready(&self) -> bool {
        self.sources.ready.load(Ordering::Acquire)
    }

    /// The live watches' health, exported per kind at each scrape.
    pub fn watch_kubernetes(&self, health: Health) {
        let _ = self.sources.kube.set(health);
    }

    /// The history's counters, exported at each scrape.
    pub fn count_history(&self, counters: Arc<HistoryCounters>) {
        let _ = self.sources.history.set(counters);
    }

    /// The index that names services and backends in the table metrics.
    pub fn name_with(&self, index: SharedIndex) {
        let _ = self.sources.index.set(index);
    }

    /// The IPVS tables, kept current in the background, exported at each scrape.
    pub fn watch_tables(&self, tables: LiveTables) {
        let _ = self.sources.tables.set(tables);
    }

    /// The OpenMetrics text of every metric, as `/metrics` serves it.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail, and the collectors only fail when their writer
        // does.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The event loop's side: counts each event it is given, and the kernel's drop counters.
pub struct Recorder {
    connections: Family<ConnLabels, Counter>,
    /// The counter of every key seen, so that a known key costs a hash lookup, not a label set.
    cache: HashMap<ConnKey, Counter>,
    /// Scheduler names seen (a dozen at most), shared by the keys.
    schedulers: Vec<Arc<str>>,
    backend_label: bool,
    /// Service, backend and client counters, with a Kubernetes source.
    unresolved: Option<[Counter; 3]>,
    lost: LossCounters,
    /// New connections per backend since the last [`Recorder::tick`] (with the backend label).
    second: Counts,
    /// Where a second's counts go: the share window the scrapes read.
    sources: Arc<Sources>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("keys", &self.cache.len())
            .field("backend_label", &self.backend_label)
            .finish_non_exhaustive()
    }
}

/// What identifies an event's counter on the hot path: addresses and already shared strings.
/// Several keys can share one counter (a Service's ClusterIP and NodePort under its name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    kind: EventKind,
    dataplane: Dataplane,
    proto: Proto,
    vip: SocketAddr,
    service: Option<Arc<str>>,
    scheduler: Option<Arc<str>>,
    backend: Option<SocketAddr>,
    pod: Option<Arc<str>>,
}

/// The labels of `ipvs_trace_connections_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ConnLabels {
    event: &'static str,
    /// `ipvs`, `nftables`, `iptables`: a node half-way through a migration compares them.
    dataplane: &'static str,
    proto: Arc<str>,
    service: Arc<str>,
    scheduler: Arc<str>,
    /// `None` with `--metrics-no-backend`: the label is left out, not empty.
    backend: Option<Arc<str>>,
}

impl EncodeLabelSet for ConnLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        EncodeLabel::encode(&("event", self.event), encoder.encode_label())?;
        EncodeLabel::encode(&("dataplane", self.dataplane), encoder.encode_label())?;
        EncodeLabel::encode(&("proto", &*self.proto), encoder.encode_label())?;
        EncodeLabel::encode(&("service", &*self.service), encoder.encode_label())?;
        EncodeLabel::encode(&("scheduler", &*self.scheduler), encoder.encode_label())?;
        if let Some(backend) = &self.backend {
            EncodeLabel::encode(&("backend", &**backend), encoder.encode_label())?;
        }
        Ok(())
    }
}

/// The kernel's and the decoder's drop counters, and the values already added to them.
#[derive(Default)]
struct LossCounters {
    ring_full: Counter,
    unreadable: Counter,
    malformed: Counter,
    filtered: Counter,
    read: Counter,
    seen: [u64; 5],
}

impl Recorder {
    /// Counts one event (after the filters, like the summary), with the names it resolved to.
    pub fn record(&mut self, event: &Event, names: &Names) {
        if let Some([service, backend, client]) = &self.unresolved {
            if names.service.is_none() {
                service.inc();
            }
            if event.backend.is_some() && names.backend.is_none() {
                backend.inc();
            }
            if names.client.is_none() {
                client.inc();
            }
        }
        let scheduler = self.scheduler(event.scheduler.as_deref());
        let (backend, pod) = if self.backend_label {
            (event.backend, names.backend.and_then(|b| b.pod.clone()))
        } else {
            (None, None)
        };
        if let (EventKind::New, Some(addr)) = (event.kind, backend) {
            let key = ShareKey {
                proto: event.proto,
                vip: event.vip,
                backend: addr,
            };
            *self.second.entry(key).or_default() += 1;
        }
        let key = ConnKey {
            kind: event.kind,
            dataplane: event.dataplane,
            proto: event.proto,
            vip: event.vip,
            service: names.service.map(|s| Arc::clone(&s.label)),
            scheduler,
            backend,
            pod,
        };
        if let Some(counter) = self.cache.get(&key) {
            counter.inc();
            return;
        }
        let counter = self
            .connections
            .get_or_create_owned(&labels_of(&key, self.backend_label));
        counter.inc();
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(key, counter);
    }

    /// Once a second: hands the second's new connections to the share window, and brings the
    /// drop counters up to the totals read now (they only grow; a total lower than the last,
    /// which a counter read from the kernel never gives, adds nothing).
    pub fn tick(&mut self, losses: &Losses) {
        self.sources
            .shares
            .push(Instant::now(), std::mem::take(&mut self.second));
        let totals = [
            losses.ring_full,
            losses.unreadable,
            Some(losses.malformed),
            losses.filtered,
            Some(losses.read),
        ];
        let counters = [
            &self.lost.ring_full,
            &self.lost.unreadable,
            &self.lost.malformed,
            &self.lost.filtered,
            &self.lost.read,
        ];
        for ((total, counter), seen) in totals.iter().zip(counters).zip(&mut self.lost.seen) {
            if let Some(total) = *total {
                if total > *seen {
                    counter.inc_by(total - *seen);
                    *seen = total;
                }
            }
        }
    }

    /// The shared copy of a scheduler name: found among the few seen, added once.
    fn scheduler(&mut self, name: Option<&str>) -> Option<Arc<str>> {
        let name = name?;
        if let Some(known) = self.schedulers.iter().find(|s| ***s == *name) {
            return Some(Arc::clone(known));
        }
        let shared: Arc<str> = Arc::from(name);
        self.schedulers.push(Arc::clone(&shared));
        Some(shared)
    }
}

/// The label set of a key: built once per new key.
fn labels_of(key: &ConnKey, backend_label: bool) -> ConnLabels {
    // With the label on, `no_dest` (no backend) has it empty, so every series of the family
    // has the same label names.
    let backend = backend_label.then(|| match (&key.pod, key.backend) {
        (Some(pod), _) => Arc::clone(pod),
        (None, Some(addr)) => Arc::from(addr.to_string()),
        (None, None) => Arc::from(""),
    });
    ConnLabels {
        event: key.kind.as_str(),
        dataplane: key.dataplane.as_str(),
        proto: Arc::from(key.proto.to_string()),
        service: key
            .service
            .clone()
            .unwrap_or_else(|| Arc::from(key.vip.to_string())),
        scheduler: key.scheduler.clone().unwrap_or_else(|| Arc::from("")),
        backend,
    }
}
