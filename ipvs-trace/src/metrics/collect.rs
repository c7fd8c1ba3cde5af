//! The metrics read at scrape time: readiness, the Kubernetes watches' health, and the IPVS
//! tables (the latest background read, at most one interval old).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric as _,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::share::{Observed, ShareKey, WINDOW};
use super::Sources;
use crate::balance::stats::expected_shares;
use crate::history::recorder::HistoryCounters;
use crate::ipvs::Tables;
use crate::kube::watch::{plural, KindHealth};
use crate::kube::SharedIndex;

/// Labels built at scrape time.
type Labels = Vec<(&'static str, String)>;

/// The collector registered once; what it finds in [`Sources`] decides what it exports.
#[derive(Debug)]
pub(super) struct Scrape(pub(super) Arc<Sources>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let ready = i64::from(self.0.ready.load(Ordering::Acquire));
        gauges(
            &mut encoder,
            "ready",
            "1 while every probe is attached (what /healthz reports); 0 before, and while the \
             ip_vs module is unloaded",
            &[(Vec::<(&str, String)>::new(), ready)],
        )?;
        if let Some(health) = self.0.kube.get() {
            kubernetes(&mut encoder, &health.kinds())?;
        }
        if let Some(history) = self.0.history.get() {
            history_counters(&mut encoder, history)?;
        }
        if let Some(tables) = self.0.tables.get() {
            ipvs(
                &mut encoder,
                &tables.snapshot(),
                &self.0.shares.observed(Instant::now()),
                self.0.index.get(),
                self.0.backend_label,
            )?;
        }
        Ok(())
    }
}

/// `serve`'s recorder: what it kept, what it could not (never silently).
fn history_counters(encoder: &mut DescriptorEncoder, history: &HistoryCounters) -> fmt::Result {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    counters(
        encoder,
        "history_recorded",
        "Decisions recorded in the history (memory, and the disk with --history-dir)",
        &[(Vec::<(&str, String)>::new(), load(&history.recorded))],
    )?;
    let dropped: Vec<_> = history
        .dropped()
        .into_iter()
        .map(|(reason, n)| ([("reason", reason)], n))
        .collect();
    counters(
        encoder,
        "history_dropped",
        "Decisions the history could not keep, by reason: queue_full (the recorder fell \
         behind: not kept at all), disk (a write failed, e.g. the disk is full: kept in memory \
         only)",
        &dropped,
    )?;
    gauges(
        encoder,
        "history_memory_decisions",
        "Decisions in the in-memory history (at most --history-size)",
        &[(
            Vec::<(&str, String)>::new(),
            load(&history.memory_decisions) as i64,
        )],
    )?;
    gauges(
        encoder,
        "history_disk_bytes",
        "Bytes of the disk history's segments (at most --history-max-bytes)",
        &[(
            Vec::<(&str, String)>::new(),
            load(&history.disk_bytes) as i64,
        )],
    )
}

/// Per watched kind: synced, complete lists, events, errors.
fn kubernetes(encoder: &mut DescriptorEncoder, kinds: &[KindHealth]) -> fmt::Result {
    let by_kind = |value: fn(&KindHealth) -> u64| -> Vec<([(&str, &str); 1], u64)> {
        kinds
            .iter()
            .map(|h| ([("kind", plural(h.kind))], value(h)))
            .collect()
    };
    let synced: Vec<_> = by_kind(|h| u64::from(h.synced))
        .into_iter()
        .map(|(labels, v)| (labels, v as i64))
        .collect();
    gauges(
        encoder,
        "kubernetes_synced",
        "1 once the kind's initial list completed: its names resolve",
        &synced,
    )?;
    counters(
        encoder,
        "kubernetes_lists",
        "Complete lists applied per kind: 1 after the first sync, one more per relist (after a \
         410 Gone, or a watch restarted after errors)",
        &by_kind(|h| u64::from(h.lists)),
    )?;
    counters(
        encoder,
        "kubernetes_watch_events",
        "Watch events applied per kind outside lists",
        &by_kind(|h| h.events),
    )?;
    counters(
        encoder,
        "kubernetes_watch_errors",
        "Errors of the kind's list/watch (API server unreachable, forbidden, ...); the watch \
         retries with backoff",
        &by_kind(|h| h.errors),
    )
}

/// The tables: per virtual service its real servers and the kernel's connection counter; per
/// real server (unless the backend label is off) its configured weight, connection counter,
/// and configured and observed share of new connections.
pub(super) fn ipvs(
    encoder: &mut DescriptorEncoder,
    tables: &Tables,
    observed: &Observed,
    index: Option<&SharedIndex>,
    backend_label: bool,
) -> fmt::Result {
    // One short read lock per lookup: a scrape must not hold the watches' writers (and, behind
    // them, the event loop) for the whole table.
    let lookup = |f: &dyn Fn(&crate::kube::Index) -> Option<String>| {
        index.and_then(|index| f(&index.read().unwrap_or_else(PoisonError::into_inner)))
    };
    let mut series = TableSeries::default();
    for service in &tables.services {
        let vip = service.key();
        let name = match (service.proto, service.addr) {
            (Some(proto), Some(addr)) => {
                lookup(&|index| index.service_for(proto, addr).map(|s| s.label.to_string()))
            }
            _ => None,
        };
        let labels: Labels = vec![
            ("proto", service.proto_label()),
            ("vip", vip.clone()),
            ("service", name.unwrap_or(vip)),
            ("scheduler", service.scheduler.clone()),
        ];
        add(&mut series.backends, &labels, service.dests.len() as i64);
        add(&mut series.service_conns, &labels, service.stats.conns);
        if !backend_label {
            continue;
        }
        // rr and wrr define a share per backend; with persistence the weights share out
        // clients (templates), not connections, so there is no configured share to compare.
        let configured = if service.flags.persistent() {
            None
        } else {
            let weights: Vec<u32> = service.dests.iter().map(|d| d.weight).collect();
            expected_shares(&service.scheduler, &weights)
        };
        for (i, dest) in service.dests.iter().enumerate() {
            let pod = service.proto.and_then(|proto| {
                lookup(&|index| {
                    index
                        .backend_for(proto, dest.addr)
                        .and_then(|b| b.pod.map(|p| p.to_string()))
                })
            });
            let mut labels = labels.clone();
            labels.push(("backend", pod.unwrap_or_else(|| dest.addr.to_string())));
            add(&mut series.weights, &labels, i64::from(dest.weight));
            add(&mut series.dest_conns, &labels, dest.stats.conns);
            if let Some(shares) = &configured {
                add(&mut series.configured_shares, &labels, shares[i]);
            }
            let key = service
                .proto
                .zip(service.addr)
                .map(|(proto, vip)| ShareKey {
                    proto,
                    vip,
                    backend: dest.addr,
                });
            if let Some(share) = key.and_then(|key| observed.share(&key)) {
                add(&mut series.observed_shares, &labels, share);
            }
        }
    }
    series.encode(encoder, backend_label)
}

/// The table metrics of one scrape, by label set.
#[derive(Default)]
struct TableSeries {
    backends: BTreeMap<Labels, i64>,
    service_conns: BTreeMap<Labels, u64>,
    weights: BTreeMap<Labels, i64>,
    dest_conns: BTreeMap<Labels, u64>,
    configured_shares: BTreeMap<Labels, f64>,
    observed_shares: BTreeMap<Labels, f64>,
}

/// Summed, not set: a key seen twice (two real servers of one pod, on two ports) would
/// otherwise be two series with one name and one label set.
fn add<N: Default + std::ops::AddAssign>(series: &mut BTreeMap<Labels, N>, labels: &Labels, n: N) {
    *series.entry(labels.clone()).or_default() += n;
}

impl TableSeries {
    fn encode(self, encoder: &mut DescriptorEncoder, backend_label: bool) -> fmt::Result {
        gauges(
            encoder,
            "ipvs_backends",
            "Real servers of each IPVS virtual service (ipvsadm -Ln)",
            &self.backends.into_iter().collect::<Vec<_>>(),
        )?;
        counters(
            encoder,
            "ipvs_service_connections",
            "The kernel's own count of connections scheduled by each virtual service (ipvsadm \
             -Ln --stats Conns; read every second)",
            &self.service_conns.into_iter().collect::<Vec<_>>(),
        )?;
        if !backend_label {
            return Ok(());
        }
        gauges(
            encoder,
            "ipvs_backend_weight",
            "Configured weight of each real server (0: no new connections, e.g. a terminating \
             endpoint)",
            &self.weights.into_iter().collect::<Vec<_>>(),
        )?;
        counters(
            encoder,
            "ipvs_backend_connections",
            "The kernel's own count of connections scheduled to each real server (ipvsadm -Ln \
             --stats Conns; read every second)",
            &self.dest_conns.into_iter().collect::<Vec<_>>(),
        )?;
        gauges(
            encoder,
            "backend_share_configured",
            "Share of its virtual service's new connections the scheduler should give each real \
             server: rr equal among weights above 0, wrr weight over the weights' sum; only for \
             those two schedulers without persistence",
            &self.configured_shares.into_iter().collect::<Vec<_>>(),
        )?;
        gauges(
            encoder,
            "backend_share_observed",
            &format!(
                "Share of its virtual service's new connections each real server got in the \
                 last {} s of traced events (none for a service without any); compare with \
                 backend_share_configured",
                WINDOW.as_secs()
            ),
            &self.observed_shares.into_iter().collect::<Vec<_>>(),
        )
    }
}

fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(L, N)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(L, u64)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}
