//! Configured vs observed share of new connections per backend: what the scheduler and the
//! weights say each real server should get (`balance`'s arithmetic), beside what the tracer saw
//! it get over the last minute.
//!
//! The event loop counts new connections per (service, backend) in a map of its own and hands
//! the map over once a second ([`ShareWindow::push`]); a scrape sums the seconds still inside
//! the window ([`ShareWindow::observed`]). The hot path takes no lock, and a weight change shows
//! within a minute instead of being diluted by everything since start, as a share computed from
//! counters since start would be.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::balance::stats::real;
use crate::events::Proto;

/// How far back the observed share looks.
pub(crate) const WINDOW: Duration = Duration::from_mins(1);

/// One backend of one virtual service, as events and the IPVS tables both name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShareKey {
    pub proto: Proto,
    pub vip: SocketAddr,
    pub backend: SocketAddr,
}

/// New connections per backend seen during one second.
pub(crate) type Counts = HashMap<ShareKey, u64>;

/// The last [`WINDOW`] of per-second counts, shared by the event loop and the scrapes.
#[derive(Debug, Default)]
pub(crate) struct ShareWindow {
    seconds: Mutex<VecDeque<(Instant, Counts)>>,
}

impl ShareWindow {
    /// Files the counts of the second that ended at `now` and forgets what fell out of the
    /// window.
    pub(crate) fn push(&self, now: Instant, counts: Counts) {
        let mut seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        expire(&mut seconds, now);
        if !counts.is_empty() {
            seconds.push_back((now, counts));
        }
    }

    /// The new connections of the window ending at `now`, per backend and per service.
    pub(crate) fn observed(&self, now: Instant) -> Observed {
        let mut seconds = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        expire(&mut seconds, now);
        let mut observed = Observed::default();
        for (key, count) in seconds.iter().flat_map(|(_, counts)| counts) {
            *observed.backends.entry(*key).or_default() += count;
            *observed.services.entry((key.proto, key.vip)).or_default() += count;
        }
        observed
    }
}

fn expire(seconds: &mut VecDeque<(Instant, Counts)>, now: Instant) {
    while seconds
        .front()
        .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
    {
        seconds.pop_front();
    }
}

/// The window's totals.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    backends: HashMap<ShareKey, u64>,
    services: HashMap<(Proto, SocketAddr), u64>,
}

impl Observed {
    /// The backend's part of its service's new connections in the window; `None` when the
    /// service had none (a share of nothing is not 0).
    pub(crate) fn share(&self, key: &ShareKey) -> Option<f64> {
        let total = *self.services.get(&(key.proto, key.vip))?;
        if total == 0 {
            return None;
        }
        let count = self.backends.get(key).copied().unwrap_or(0);
        Some(real(count) / real(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(backend: &str) -> ShareKey {
        ShareKey {
            proto: Proto::Tcp,
            vip: "172.31.0.10:80".parse().unwrap(),
            backend: backend.parse().unwrap(),
        }
    }

    #[test]
    fn shares_over_the_window_only() {
        let window = ShareWindow::default();
        let start = Instant::now();
        let (a, b) = (key("10.245.1.1:8080"), key("10.245.1.2:8080"));
        window.push(start, Counts::from([(a, 30)]));
        window.push(
            start + Duration::from_secs(30),
            Counts::from([(a, 10), (b, 10)]),
        );
        let observed = window.observed(start + Duration::from_secs(45));
        assert_eq!(observed.share(&a), Some(40.0 / 50.0));
        assert_eq!(observed.share(&b), Some(10.0 / 50.0));
        // The first second left the window: only the later 10/10 counts.
        let observed = window.observed(start + Duration::from_secs(75));
        assert_eq!(observed.share(&a), Some(0.5));
        assert_eq!(observed.share(&b), Some(0.5));
        // A backend of a service with traffic that got none has share 0; a service with none
        // in the window has no share at all.
        let c = key("10.245.1.3:8080");
        assert_eq!(observed.share(&c), Some(0.0));
        let other = ShareKey {
            vip: "172.31.0.11:80".parse().unwrap(),
            ..a
        };
        assert_eq!(observed.share(&other), None);
        assert_eq!(
            window.observed(start + Duration::from_secs(200)).share(&a),
            None
        );
    }
}
