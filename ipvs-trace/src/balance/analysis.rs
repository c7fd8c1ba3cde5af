//! The analysis: the window's counts next to the IPVS tables read at its edges and the
//! changes seen in between, judged per virtual service into a [`ServiceReport`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::SystemTime;

use super::report::{
    BackendReport, Cause, CrossCheck, ServiceReport, Spread, Stickiness, Totals, Verdict,
};
use super::window::{BackendCounts, Observed, Window};
use super::{stats, Context, Mode};
use crate::events::Proto;
use crate::ipvs::live::{ChangeKind, TableChange};
use crate::ipvs::{Dest, Service, Tables};

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

fn rfc3339(time: SystemTime) -> String {
    let unix_ns = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    crate::clock::format_rfc3339(unix_ns)
}
