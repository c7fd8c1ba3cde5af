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
//!
//! Services of kube-proxy's nftables and iptables modes have no IPVS scheduler: netfilter
//! picks each connection's endpoint at random. They have no rounds to count, so [`random`]
//! judges them statistically (a chi-square goodness-of-fit test and a confidence interval per
//! endpoint), from the events and, when the caller read them, the rules' endpoints.

mod analysis;
mod random;
pub mod render;
mod report;
pub mod stats;
mod window;

use serde::Serialize;

pub use analysis::analyse;
pub use random::{RuleShares, Rules, SharesError, MIN_EXPECTED, SIGNIFICANCE};
pub use report::{
    BackendReport, Cause, CrossCheck, Judgement, RandomJudgement, ServiceReport, SharesSource,
    Spread, Stickiness, Totals, Verdict,
};
pub use window::{BackendCounts, Phase, Selection, Window};

use crate::clock::WallClock;
use crate::ipvs::live::TableChange;
use crate::ipvs::{Service, Tables};
use crate::kube::Index;

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
    /// The random-selection services' endpoints as the netfilter rules had them when the
    /// window opened and closed (`None`: not read; shares are then equal over the endpoints
    /// the events show).
    pub rules: Option<&'a Rules>,
    /// Turns event timestamps into the times causes are reported at.
    pub clock: WallClock,
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
    /// A random selection (kube-proxy's nftables and iptables modes): judged statistically.
    Random,
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
