//! The analysis: the window's counts next to the IPVS tables read at its edges and the
//! changes seen in between, judged per virtual service into a [`ServiceReport`]. The services
//! netfilter selects at random are judged by [`super::random`], with this module's backend
//! counts, names, causes and verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::SystemTime;

use super::report::{
    BackendReport, Cause, CrossCheck, ServiceReport, Spread, Stickiness, Totals, Verdict,
};
use super::window::{BackendCounts, Observed, Window};
use super::{random, stats, Context, Mode};
use crate::dataplane::Dataplane;
use crate::events::Proto;
use crate::ipvs::live::{ChangeKind, TableChange};
use crate::ipvs::{Dest, Service, Tables};

/// Reports on every selected virtual service of the start or end tables (firewall-mark
/// services have no address the events could be matched to, and are left out), and on every
/// selected service of a random selection (its events, or the rules), by protocol and address.
#[must_use]
pub fn analyse(window: &Window, ctx: &Context<'_>) -> Vec<ServiceReport> {
    // Every IPVS address, filtered out or not: none of them is judged as a random selection.
    let ipvs: BTreeSet<(Proto, SocketAddr)> = [ctx.start, ctx.end]
        .into_iter()
        .flat_map(|tables| &tables.services)
        .filter_map(|s| Some((s.proto?, s.addr?)))
        .collect();
    let mut reports = ipvs_reports(window, ctx);
    reports.extend(random::reports(window, ctx, &ipvs));
    reports.sort_by_key(|r| (r.proto, r.vip));
    reports
}

/// Reports on the IPVS virtual services.
fn ipvs_reports(window: &Window, ctx: &Context<'_>) -> Vec<ServiceReport> {
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
            let dests: Vec<SocketAddr> = at_start
                .iter()
                .chain(at_end.iter())
                .flat_map(|s| s.dests.iter().map(|d| d.addr))
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
            name_backend(&mut report, proto, ctx);
            report
        })
        .collect();

    let totals = totals(&backends, observed);
    let persistence = config.flags.persistent().then_some(config.timeout);
    let changes = changes.iter().map(|c| table_change_cause(c)).collect();
    let mut report = ServiceReport {
        scheduler: config.scheduler.clone(),
        flags: config
            .flags
            .names(&config.scheduler)
            .into_iter()
            .filter(|f| f != "hashed")
            .collect(),
        causes: causes(&backends, changes, totals, ctx, persistence),
        ..service_report_of(
            (proto, vip),
            Dataplane::Ipvs,
            Mode::of(config),
            totals,
            backends,
            ctx,
        )
    };
    let beyond = judge(&mut report, observed, ctx.tolerance);
    report.verdict = verdict(beyond, &report.causes);
    report
}

/// A service's report with its names, counts, backends and their worst cross-check, not yet
/// judged: no scheduler, flags, causes or figures.
pub(super) fn service_report_of(
    (proto, vip): (Proto, SocketAddr),
    dataplane: Dataplane,
    mode: Mode,
    connections: Totals,
    backends: Vec<BackendReport>,
    ctx: &Context<'_>,
) -> ServiceReport {
    let name = ctx.index.and_then(|index| index.service_for(proto, vip));
    ServiceReport {
        proto,
        vip,
        dataplane,
        scheduler: String::new(),
        flags: Vec::new(),
        service: name.as_ref().map(|n| n.label.to_string()),
        service_type: name.map(|n| n.service_type.as_str().to_owned()),
        mode,
        connections,
        max_relative_error: None,
        chi_square: None,
        degrees_of_freedom: None,
        p_value: None,
        stickiness: None,
        spread: None,
        random: None,
        verdict: Verdict::NotChecked,
        causes: Vec::new(),
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
        backends,
    }
}

/// The totals of a service's backends in the window.
pub(super) fn totals(backends: &[BackendReport], observed: &Observed) -> Totals {
    Totals {
        new: backends.iter().map(|b| b.new).sum(),
        template: backends.iter().map(|b| b.template).sum(),
        reused: backends.iter().map(|b| b.reused).sum(),
        no_dest: observed.no_dest,
    }
}

/// Names a backend's pod and node, and its terminating condition, from the Kubernetes index.
pub(super) fn name_backend(report: &mut BackendReport, proto: Proto, ctx: &Context<'_>) {
    if let Some(names) = ctx
        .index
        .and_then(|index| index.backend_for(proto, report.backend))
    {
        report.backend_pod = names.pod.as_deref().map(str::to_owned);
        report.backend_node = names.node.as_deref().map(str::to_owned);
        report.terminating = names.terminating;
    }
}

/// The verdict on a judgement (`Some(beyond)`, or `None` with nothing to judge) and the causes
/// seen: a deviation is explained when a cause was seen.
pub(super) fn verdict(beyond: Option<bool>, causes: &[Cause]) -> Verdict {
    match beyond {
        None => Verdict::NotChecked,
        Some(false) => Verdict::Balanced,
        Some(true) if causes.is_empty() => Verdict::Unexplained,
        Some(true) => Verdict::Deviates,
    }
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
        Mode::Random => unreachable!("random selections are judged by balance::random"),
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
/// termination, `changes` (the tables' by time, or a random selection's endpoints), no
/// destination, loss. `persistence`: the service's persistence timeout, if it has one.
pub(super) fn causes(
    backends: &[BackendReport],
    changes: Vec<Cause>,
    totals: Totals,
    ctx: &Context<'_>,
    persistence: Option<u32>,
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
    } else if let Some(timeout) = persistence {
        // Templates made before the window still steer its connections.
        causes.push(Cause {
            detail: Some(format!("persistent {timeout} s")),
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
    causes.extend(changes);
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

/// The cause a change of the IPVS tables names, at the time a table read saw it.
fn table_change_cause(change: &TableChange) -> Cause {
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
    Cause {
        at: Some(rfc3339(change.seen)),
        ..cause
    }
}

/// A backend's counts and its cross-check against `settled`, its real server in the read after
/// the settle (`None`: no counter to compare with, see [`CrossCheck::Unavailable`]).
pub(super) fn backend_report(
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
        share: None,
        share_low: None,
        share_high: None,
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

fn rfc3339(time: SystemTime) -> String {
    let unix_ns = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    crate::clock::format_rfc3339(unix_ns)
}
