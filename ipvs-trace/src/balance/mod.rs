//! `balance`: does each virtual service distribute new connections as its scheduler is
//! configured to, and if not, why.
//!
//! [`Window`] counts the tracer's events per virtual service and real server, split by their
//! kernel timestamps into the lead (before the window opened), the window, and the settle time
//! after it closed. [`analyse`] puts the counts next to the IPVS tables read when the window
//! opened and closed, and the [`TableChange`]s seen in between, and produces one
//! [`ServiceReport`] per virtual service: counts per backend (every backend of the service,
//! including those that got nothing), the share each should have had, the deviation, the
//! named causes seen, and the cross-check of each count against the kernel's own `--stats`
//! Conns.
//!
//! What is compared: connections each backend **received** in the window, i.e. `new` entries
//! (scheduled) plus `reused` ones (a SYN that hit an existing entry and went to its backend
//! without scheduling). The scheduler only sees the former; the pods feel both.
//!
//! Modes by scheduler: rr and wrr have a share per backend (rr: equal among weights > 0; wrr:
//! in proportion to weight); services with persistence and the hashing schedulers (sh, mh,
//! dh) are checked for stickiness (each client on one backend); the load-based ones (lc, wlc,
//! sed, nq, ...) only report the spread of active connections, as their choice depends on
//! connection lifetimes the window cannot know.

pub mod render;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use serde::Serialize;

use crate::events::{model::EventKind, Event, Proto};
use crate::filter::{AddrMatch, ServiceMatch};
use crate::ipvs::live::{ChangeKind, TableChange};
use crate::ipvs::{Dest, Service, Tables};
use crate::kube::{namespace_of, Index};

/// Where an event falls relative to the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the window opened (the tracer was attached, the baseline not yet read).
    Lead,
    Window,
    /// After the window closed, while the kernel's counters settle.
    Late,
}

/// Counts of one real server of one virtual service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounts {
    /// `new` events in the window.
    pub new: u64,
    pub template: u64,
    pub reused: u64,
    /// `new` events before the window (lead) and after it (late): what the kernel's counter
    /// read at each edge may or may not include.
    pub lead: u64,
    pub late: u64,
}

/// What the window saw of one virtual service.
#[derive(Clone, Debug, Default)]
struct Observed {
    backends: BTreeMap<SocketAddr, BackendCounts>,
    /// Client IP → backends its new connections and templates went to (stickiness).
    clients: BTreeMap<IpAddr, BTreeSet<SocketAddr>>,
    no_dest: u64,
}

/// The events of a window, counted. Monotonic timestamps (`CLOCK_MONOTONIC` ns) mark its
/// edges: an event belongs to the window by when the kernel made it, not by when userspace
/// read it.
#[derive(Clone, Debug, Default)]
pub struct Window {
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    services: BTreeMap<(Proto, SocketAddr), Observed>,
}

impl Window {
    /// Opens the window at `monotonic_ns`: earlier events count as lead.
    pub fn open(&mut self, monotonic_ns: u64) {
        self.start_ns = Some(monotonic_ns);
    }

    /// Closes the window at `monotonic_ns`: later events count as late.
    pub fn close(&mut self, monotonic_ns: u64) {
        self.end_ns = Some(monotonic_ns);
    }

    #[must_use]
    pub fn phase(&self, timestamp_ns: u64) -> Phase {
        match (self.start_ns, self.end_ns) {
            (None, _) => Phase::Lead,
            (Some(start), _) if timestamp_ns < start => Phase::Lead,
            (_, Some(end)) if timestamp_ns > end => Phase::Late,
            _ => Phase::Window,
        }
    }

    /// Counts one event.
    pub fn record(&mut self, event: &Event) {
        let phase = self.phase(event.timestamp_ns);
        let observed = self.services.entry((event.proto, event.vip)).or_default();
        if event.kind == EventKind::NoDest {
            if phase == Phase::Window {
                observed.no_dest += 1;
            }
            return;
        }
        let Some(backend) = event.backend else {
            return;
        };
        let counts = observed.backends.entry(backend).or_default();
        match (phase, event.kind) {
            (Phase::Lead, EventKind::New) => counts.lead += 1,
            (Phase::Late, EventKind::New) => counts.late += 1,
            (Phase::Window, EventKind::New) => counts.new += 1,
            (Phase::Window, EventKind::Template) => counts.template += 1,
            (Phase::Window, EventKind::Reused) => counts.reused += 1,
            _ => return,
        }
        if phase == Phase::Window && matches!(event.kind, EventKind::New | EventKind::Template) {
            observed
                .clients
                .entry(event.client.ip())
                .or_default()
                .insert(backend);
        }
    }
}

/// Which virtual services to analyse: `--vip`, `--proto`, `--service`, `--namespace`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub vip: Option<AddrMatch>,
    pub proto: Option<Proto>,
    pub namespace: Option<String>,
    pub service: Option<ServiceMatch>,
}

impl Selection {
    /// True when a filter needs Kubernetes names.
    #[must_use]
    pub fn uses_names(&self) -> bool {
        self.namespace.is_some() || self.service.is_some()
    }

    fn selects(
        &self,
        proto: Proto,
        vip: SocketAddr,
        dests: &[&Dest],
        index: Option<&Index>,
    ) -> bool {
        if self.proto.is_some_and(|p| p != proto) || self.vip.is_some_and(|m| !m.matches(vip)) {
            return false;
        }
        let name = index.and_then(|index| index.service_for(proto, vip));
        if let Some(want) = &self.service {
            if !name.as_ref().is_some_and(|n| want.matches(n)) {
                return false;
            }
        }
        if let Some(namespace) = self.namespace.as_deref() {
            let service_in = name
                .as_ref()
                .is_some_and(|n| namespace_of(&n.service) == Some(namespace));
            let pod_in = dests.iter().any(|d| {
                index
                    .and_then(|index| index.backend_for(proto, d.addr))
                    .and_then(|b| b.pod)
                    .is_some_and(|pod| namespace_of(&pod) == Some(namespace))
            });
            if !service_in && !pod_in {
                return false;
            }
        }
        true
    }
}

/// Everything [`analyse`] puts next to the window's counts.
pub struct Context<'a> {
    /// Read when the window opened: the backend set, weights and counters at the start.
    pub start: &'a Tables,
    /// Read when the window closed.
    pub end: &'a Tables,
    /// Read once the kernel's counters have settled after the close (`None`: the settle was
    /// cut short, no cross-check).
    pub settled: Option<&'a Tables>,
    /// Changes seen between the start and end reads.
    pub changes: &'a [TableChange],
    pub index: Option<&'a Index>,
    pub selection: &'a Selection,
    pub tolerance: f64,
    /// Events the kernel could not deliver (ring full, unreadable, malformed): counts are short
    /// by up to that many.
    pub events_lost: u64,
}

/// How a service's distribution is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// rr, wrr: a share per backend.
    Share,
    /// Persistence or a hashing scheduler: each client on one backend.
    Sticky,
    /// lc, wlc and other load-based schedulers: the active-connection spread, not checked.
    Spread,
}

impl Mode {
    fn of(service: &Service) -> Mode {
        if service.flags.persistent() || matches!(service.scheduler.as_str(), "sh" | "mh" | "dh") {
            Mode::Sticky
        } else if matches!(service.scheduler.as_str(), "rr" | "wrr") {
            Mode::Share
        } else {
            Mode::Spread
        }
    }
}

/// The judgement on one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the tolerance.
    Balanced,
    /// Spread mode, or no connections: nothing to judge.
    NotChecked,
    /// Beyond the tolerance, and causes were seen that account for it.
    Deviates,
    /// Beyond the tolerance with no cause seen: the scheduler does not do what it is
    /// configured to.
    Unexplained,
}

/// A named cause seen in the window. One per backend where it concerns one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cause {
    /// `reused`, `persistence`, `weight_zero`, `terminating`, `backend_added`,
    /// `backend_removed`, `weight_changed`, `scheduler_changed`, `service_added`,
    /// `service_removed`, `no_dest`, `events_lost`.
    pub cause: &'static str,
    pub backend: Option<SocketAddr>,
    /// Events behind it (reused, persistence, no_dest, events_lost).
    pub count: Option<u64>,
    /// When a table read first saw it (changes), RFC 3339.
    pub at: Option<String>,
    /// E.g. `1 -> 0`, `rr -> wrr`.
    pub detail: Option<String>,
}

impl Cause {
    fn new(cause: &'static str) -> Cause {
        Cause {
            cause,
            backend: None,
            count: None,
            at: None,
            detail: None,
        }
    }
}

/// The kernel's count of one backend's scheduled connections against the window's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossCheck {
    /// The kernel's Conns grew by exactly the window's `new` events.
    Exact,
    /// Equal within the events just before the window opened or after it closed, which the
    /// kernel's per-CPU counters (folded every 2 s) may or may not include.
    WithinEdges,
    /// Different beyond that: events lost, or a counter the tool does not understand.
    Mismatch,
    /// No counter to compare: the backend is not in both reads, was removed and re-added, or
    /// the settle was cut short.
    Unavailable,
}

/// One real server of a service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendReport {
    pub backend: SocketAddr,
    pub backend_pod: Option<String>,
    pub backend_node: Option<String>,
    /// The endpoint's terminating condition, when a Kubernetes source knows it.
    pub terminating: Option<bool>,
    /// Weight when the window opened (`None`: not a real server then).
    pub weight: Option<u32>,
    /// Weight when it closed (`None`: not a real server any more).
    pub weight_end: Option<u32>,
    pub new: u64,
    pub template: u64,
    pub reused: u64,
    /// `new + reused`: what the distribution is judged on.
    pub received: u64,
    /// Connections its share stands for (share mode).
    pub expected: Option<f64>,
    pub expected_share: Option<f64>,
    pub relative_error: Option<f64>,
    /// Off by more than the tolerance and one scheduling round.
    pub beyond_tolerance: bool,
    /// At the close, from the tables: ESTABLISHED entries and all others (counts, not bytes).
    pub active_conns: Option<u32>,
    pub inactive_conns: Option<u32>,
    /// Growth of the kernel's Conns counter (`ipvsadm --stats`) over the window.
    pub kernel_conns: Option<u64>,
    /// `new` events just outside the window (lead + late).
    pub edge_new: u64,
    pub cross_check: CrossCheck,
}

/// Totals of a service's events in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub new: u64,
    pub template: u64,
    pub reused: u64,
    pub no_dest: u64,
}

/// Sticky mode: clients and how many of them saw more than one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stickiness {
    pub clients: u64,
    pub moved: u64,
}

/// Spread mode: active connections at the close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub active_min: u32,
    pub active_max: u32,
}

/// One virtual service's report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceReport {
    /// `TCP`, `UDP`, `SCTP`.
    #[serde(serialize_with = "display")]
    pub proto: Proto,
    pub vip: SocketAddr,
    pub scheduler: String,
    pub flags: Vec<String>,
    pub service: Option<String>,
    pub service_type: Option<String>,
    pub mode: Mode,
    pub connections: Totals,
    pub max_relative_error: Option<f64>,
    pub chi_square: Option<f64>,
    pub degrees_of_freedom: Option<u32>,
    pub p_value: Option<f64>,
    pub stickiness: Option<Stickiness>,
    pub spread: Option<Spread>,
    pub verdict: Verdict,
    pub causes: Vec<Cause>,
    /// Every real server the service had at the start or the end, or sent a connection to.
    pub backends: Vec<BackendReport>,
    /// The worst of the backends' cross-checks.
    pub cross_check: CrossCheck,
}

/// Reports on every selected virtual service of the start or end tables (firewall-mark
/// services have no address the events could be matched to, and are left out).
#[must_use]
pub fn analyse(window: &Window, ctx: &Context<'_>) -> Vec<ServiceReport> {
    let by_key = |tables: &'_ Tables| -> ByKey {
        tables
            .services
            .iter()
            .filter_map(|s| Some(((s.proto?, s.addr?), s.clone())))
            .collect()
    };
    let start = by_key(ctx.start);
    let end = by_key(ctx.end);
    let settled = ctx.settled.map(by_key);
    let keys: BTreeSet<(Proto, SocketAddr)> = start.keys().chain(end.keys()).copied().collect();
    let empty = Observed::default();
    keys.into_iter()
        .filter_map(|key| {
            let (at_start, at_end) = (start.get(&key), end.get(&key));
            let dests: Vec<&Dest> = at_start
                .iter()
                .chain(at_end.iter())
                .flat_map(|s| &s.dests)
                .collect();
            if !ctx.selection.selects(key.0, key.1, &dests, ctx.index) {
                return None;
            }
            let observed = window.services.get(&key).unwrap_or(&empty);
            Some(service_report(
                key,
                at_start,
                at_end,
                settled.as_ref(),
                observed,
                ctx,
            ))
        })
        .collect()
}

/// Services by (protocol, address).
type ByKey = BTreeMap<(Proto, SocketAddr), Service>;

fn service_report(
    (proto, vip): (Proto, SocketAddr),
    at_start: Option<&Service>,
    at_end: Option<&Service>,
    settled: Option<&ByKey>,
    observed: &Observed,
    ctx: &Context<'_>,
) -> ServiceReport {
    // The configuration judged is the one the window started with; a service added during the
    // window is judged by its first read.
    let config = at_start
        .or(at_end)
        .expect("a key of the start or end tables");
    let changes: Vec<&TableChange> = ctx
        .changes
        .iter()
        .filter(|c| c.service.proto == Some(proto) && c.service.addr == Some(vip))
        .collect();
    let removed_once: BTreeSet<SocketAddr> = changes
        .iter()
        .filter_map(|c| match c.kind {
            ChangeKind::DestRemoved { addr, .. } => Some(addr),
            _ => None,
        })
        .collect();

    let addrs: BTreeSet<SocketAddr> = [at_start, at_end]
        .into_iter()
        .flatten()
        .flat_map(|s| s.dests.iter().map(|d| d.addr))
        .chain(observed.backends.keys().copied())
        .collect();
    let backends: Vec<BackendReport> = addrs
        .into_iter()
        .map(|addr| {
            let counts = observed.backends.get(&addr).copied().unwrap_or_default();
            // A real server removed and re-added in the window restarted its counter.
            let settled = settled
                .filter(|_| !removed_once.contains(&addr))
                .and_then(|s| dest_of(s.get(&(proto, vip)), addr));
            let mut report = backend_report(addr, counts, dest_of(at_start, addr), settled);
            report.weight_end = dest_of(at_end, addr).map(|d| d.weight);
            report.active_conns = dest_of(at_end, addr).map(|d| d.active_conns);
            report.inactive_conns = dest_of(at_end, addr).map(|d| d.inactive_conns);
            if let Some(names) = ctx.index.and_then(|index| index.backend_for(proto, addr)) {
                report.backend_pod = names.pod.as_deref().map(str::to_owned);
                report.backend_node = names.node.as_deref().map(str::to_owned);
                report.terminating = names.terminating;
            }
            report
        })
        .collect();

    let totals = Totals {
        new: backends.iter().map(|b| b.new).sum(),
        template: backends.iter().map(|b| b.template).sum(),
        reused: backends.iter().map(|b| b.reused).sum(),
        no_dest: observed.no_dest,
    };
    let mode = Mode::of(config);
    let mut report = ServiceReport {
        proto,
        vip,
        scheduler: config.scheduler.clone(),
        flags: config
            .flags
            .names(&config.scheduler)
            .into_iter()
            .filter(|f| f != "hashed")
            .collect(),
        service: None,
        service_type: None,
        mode,
        connections: totals,
        max_relative_error: None,
        chi_square: None,
        degrees_of_freedom: None,
        p_value: None,
        stickiness: None,
        spread: None,
        verdict: Verdict::NotChecked,
        causes: causes(&backends, &changes, totals, ctx, config),
        cross_check: backends
            .iter()
            .map(|b| b.cross_check)
            .max_by_key(|c| match c {
                CrossCheck::Exact => 0,
                CrossCheck::WithinEdges => 1,
                CrossCheck::Unavailable => 2,
                CrossCheck::Mismatch => 3,
            })
            .unwrap_or(CrossCheck::Exact),
        backends: Vec::new(),
    };
    if let Some(name) = ctx.index.and_then(|index| index.service_for(proto, vip)) {
        report.service = Some(name.label.to_string());
        report.service_type = Some(name.service_type.as_str().to_owned());
    }

    report.backends = backends;
    let beyond = judge(&mut report, observed, ctx.tolerance);
    report.verdict = match beyond {
        None => Verdict::NotChecked,
        Some(false) => Verdict::Balanced,
        Some(true) if report.causes.is_empty() => Verdict::Unexplained,
        Some(true) => Verdict::Deviates,
    };
    report
}

/// Fills the mode's figures in; `Some(beyond the tolerance)`, or `None` when there is nothing
/// to judge (spread mode, no connections).
fn judge(report: &mut ServiceReport, observed: &Observed, tolerance: f64) -> Option<bool> {
    let totals = report.connections;
    match report.mode {
        Mode::Share => {
            // Backends that were not real servers at the start expect nothing.
            let weights: Vec<u32> = report
                .backends
                .iter()
                .map(|b| b.weight.unwrap_or(0))
                .collect();
            let shares = stats::expected_shares(&report.scheduler, &weights)
                .expect("share mode is only chosen for schedulers with shares");
            let slack = stats::round_slack(&report.scheduler, &weights);
            let received: Vec<u64> = report.backends.iter().map(|b| b.received).collect();
            let deviation = stats::deviation(&received, &shares, &slack, tolerance);
            for (i, backend) in report.backends.iter_mut().enumerate() {
                backend.expected = Some(deviation.expected[i]);
                backend.expected_share = Some(shares[i]);
                backend.relative_error = deviation.relative_error[i];
                backend.beyond_tolerance = deviation.beyond[i];
            }
            report.max_relative_error = deviation.max_relative_error;
            report.chi_square = deviation.chi_square;
            report.degrees_of_freedom = deviation.degrees_of_freedom;
            report.p_value = deviation.p_value;
            (totals.new + totals.reused > 0).then(|| deviation.any_beyond())
        }
        Mode::Sticky => {
            let clients = observed.clients.len() as u64;
            let moved = observed.clients.values().filter(|b| b.len() > 1).count() as u64;
            report.stickiness = Some(Stickiness { clients, moved });
            (clients > 0).then(|| stats::real(moved) / stats::real(clients) > tolerance)
        }
        Mode::Spread => {
            let active = report.backends.iter().filter_map(|b| b.active_conns);
            report.spread =
                active
                    .clone()
                    .min()
                    .zip(active.max())
                    .map(|(active_min, active_max)| Spread {
                        active_min,
                        active_max,
                    });
            None
        }
    }
}

/// The named causes of one service, in a fixed order: reuse, persistence, weights and
/// termination, table changes by time, no destination, loss.
fn causes(
    backends: &[BackendReport],
    changes: &[&TableChange],
    totals: Totals,
    ctx: &Context<'_>,
    config: &Service,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    for b in backends.iter().filter(|b| b.reused > 0) {
        causes.push(Cause {
            backend: Some(b.backend),
            count: Some(b.reused),
            ..Cause::new("reused")
        });
    }
    if totals.template > 0 {
        causes.push(Cause {
            count: Some(totals.template),
            ..Cause::new("persistence")
        });
    } else if config.flags.persistent() {
        // Templates made before the window still steer its connections.
        causes.push(Cause {
            detail: Some(format!("persistent {} s", config.timeout)),
            ..Cause::new("persistence")
        });
    }
    // A weight-0 backend only matters when something reached it anyway (the shares already
    // give it nothing).
    for b in backends
        .iter()
        .filter(|b| b.weight == Some(0) && b.received > 0)
    {
        causes.push(Cause {
            backend: Some(b.backend),
            detail: Some("weight 0 when the window opened".into()),
            ..Cause::new("weight_zero")
        });
    }
    for b in backends.iter().filter(|b| b.terminating == Some(true)) {
        causes.push(Cause {
            backend: Some(b.backend),
            ..Cause::new("terminating")
        });
    }
    for change in changes {
        let at = Some(rfc3339(change.seen));
        let cause = match &change.kind {
            ChangeKind::ServiceAdded => Cause::new("service_added"),
            ChangeKind::ServiceRemoved => Cause::new("service_removed"),
            ChangeKind::SchedulerChanged { from, to } => Cause {
                detail: Some(format!("{from} -> {to}")),
                ..Cause::new("scheduler_changed")
            },
            ChangeKind::DestAdded { addr, weight } => Cause {
                backend: Some(*addr),
                detail: Some(format!("weight {weight}")),
                ..Cause::new("backend_added")
            },
            ChangeKind::DestRemoved { addr, weight } => Cause {
                backend: Some(*addr),
                detail: Some(format!("weight {weight}")),
                ..Cause::new("backend_removed")
            },
            ChangeKind::WeightChanged { addr, from, to } => Cause {
                backend: Some(*addr),
                detail: Some(format!("{from} -> {to}")),
                ..Cause::new(if *to == 0 {
                    "weight_zero"
                } else {
                    "weight_changed"
                })
            },
        };
        causes.push(Cause { at, ..cause });
    }
    if totals.no_dest > 0 {
        causes.push(Cause {
            count: Some(totals.no_dest),
            ..Cause::new("no_dest")
        });
    }
    if ctx.events_lost > 0 {
        causes.push(Cause {
            count: Some(ctx.events_lost),
            ..Cause::new("events_lost")
        });
    }
    causes
}

/// A backend's counts and its cross-check against `settled`, its real server in the read after
/// the settle (`None`: no counter to compare with, see [`CrossCheck::Unavailable`]).
fn backend_report(
    addr: SocketAddr,
    counts: BackendCounts,
    start: Option<&Dest>,
    settled: Option<&Dest>,
) -> BackendReport {
    let edge_new = counts.lead + counts.late;
    let kernel_conns = settled.and_then(|after| {
        // A real server added in the window starts from 0.
        let before = start.map_or(0, |d| d.stats.conns);
        after.stats.conns.checked_sub(before)
    });
    let cross_check = match kernel_conns {
        None => CrossCheck::Unavailable,
        Some(k) if k == counts.new => CrossCheck::Exact,
        Some(k) if k >= counts.new && k <= counts.new + edge_new => CrossCheck::WithinEdges,
        Some(_) => CrossCheck::Mismatch,
    };
    BackendReport {
        backend: addr,
        backend_pod: None,
        backend_node: None,
        terminating: None,
        weight: start.map(|d| d.weight),
        weight_end: None,
        new: counts.new,
        template: counts.template,
        reused: counts.reused,
        received: counts.new + counts.reused,
        expected: None,
        expected_share: None,
        relative_error: None,
        beyond_tolerance: false,
        active_conns: None,
        inactive_conns: None,
        kernel_conns,
        edge_new,
        cross_check,
    }
}

fn dest_of(service: Option<&Service>, addr: SocketAddr) -> Option<&Dest> {
    service.and_then(|s| s.dests.iter().find(|d| d.addr == addr))
}

fn display<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn rfc3339(time: SystemTime) -> String {
    let unix_ns = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    crate::clock::format_rfc3339(unix_ns)
}

/// `--check` exit status: every service balanced (or not checkable).
pub const EXIT_BALANCED: u8 = 0;
/// `--check`: a service deviates beyond the tolerance, and the causes are named.
pub const EXIT_DEVIATES: u8 = 3;
/// `--check`: a service deviates beyond the tolerance and no cause was seen.
pub const EXIT_UNEXPLAINED: u8 = 4;
/// `--check`: a backend's count differs from the kernel's own Conns counter.
pub const EXIT_COUNTS_DIFFER: u8 = 5;

/// The `--check` exit status for these reports: the most serious finding wins, an
/// unexplained deviation before a disagreement with the kernel before an explained deviation.
#[must_use]
pub fn check_status(reports: &[ServiceReport]) -> u8 {
    if reports.iter().any(|r| r.verdict == Verdict::Unexplained) {
        EXIT_UNEXPLAINED
    } else if reports
        .iter()
        .any(|r| r.cross_check == CrossCheck::Mismatch)
    {
        EXIT_COUNTS_DIFFER
    } else if reports.iter().any(|r| r.verdict == Verdict::Deviates) {
        EXIT_DEVIATES
    } else {
        EXIT_BALANCED
    }
}

#[cfg(test)]
mod tests;
