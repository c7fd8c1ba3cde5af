//! What `balance` reports per virtual service and real server: the verdict, the named causes,
//! the cross-check against the kernel's counters and the figures of each mode. Their field
//! names are `balance -o json`'s contract (see docs/balance.md).

use std::net::SocketAddr;

use serde::Serialize;

use super::Mode;
use crate::dataplane::Dataplane;
use crate::events::Proto;

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
    /// When a table read first saw it (changes), RFC 3339. For a backend removed from a random
    /// selection: the time of its last connection.
    pub at: Option<String>,
    /// E.g. `1 -> 0`, `rr -> wrr`.
    pub detail: Option<String>,
}

impl Cause {
    pub(super) fn new(cause: &'static str) -> Cause {
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
    /// Random mode: the share of the service's connections it received, and the interval that
    /// share's true value lies in at confidence `1 - significance` (Wilson score interval).
    pub share: Option<f64>,
    pub share_low: Option<f64>,
    pub share_high: Option<f64>,
    pub relative_error: Option<f64>,
    /// Off by more than the tolerance and one scheduling round (random mode: by more than the
    /// tolerance, with the expected share outside the interval).
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

/// Random mode: how a random selection was judged. A statistical judgement of chance, not
/// the arithmetic of an IPVS scheduler's rounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RandomJudgement {
    /// `chi-square`: Pearson's goodness-of-fit test of the counts against the shares.
    pub method: &'static str,
    /// The p-value below which the selection is uneven; the share intervals are at confidence
    /// `1 - significance`.
    pub significance: f64,
    /// Connections every endpoint with a share must expect before there is a verdict.
    pub min_expected: f64,
    /// Where the expected shares come from.
    pub shares: SharesSource,
    pub judgement: Judgement,
}

/// Where a random selection's expected shares come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SharesSource {
    /// The rules' endpoints and probabilities when the window opened (or, for a service added
    /// during it, when it closed).
    Rules,
    /// Equal among the endpoints that received connections in the window or just before it
    /// (the rules were not read).
    Equal,
}

/// The statistical judgement of a random selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// Consistent with the shares: `p >= significance`, or off by no more than the tolerance.
    Even,
    /// `p < significance` and an endpoint off by more than the tolerance; or an endpoint
    /// without a share received connections.
    Uneven,
    /// An endpoint with a share expected fewer than `min_expected` connections: no verdict.
    TooFew,
}

/// One virtual service's report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceReport {
    /// `TCP`, `UDP`, `SCTP`.
    #[serde(serialize_with = "display")]
    pub proto: Proto,
    pub vip: SocketAddr,
    /// `ipvs`, `nftables`, `iptables`.
    pub dataplane: Dataplane,
    /// The IPVS scheduler, or `random` for netfilter's random selection.
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
    pub random: Option<RandomJudgement>,
    pub verdict: Verdict,
    pub causes: Vec<Cause>,
    /// Every real server the service had at the start or the end, or sent a connection to.
    pub backends: Vec<BackendReport>,
    /// The worst of the backends' cross-checks.
    pub cross_check: CrossCheck,
}

fn display<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}
