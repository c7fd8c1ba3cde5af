//! The exit summary on stderr: what was shown, per kind and per virtual service, and what was
//! not (lost in the kernel, malformed in transit).
//!
//! It counts the events that were printed (after filters), so it describes the output above it.
//! Ordering is stable (by protocol, VIP, scheduler; backends by address) so runs compare with
//! `diff`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::events::{model::EventKind, Event, Proto};

/// A virtual service as the events see it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ServiceKey {
    proto: Proto,
    vip: SocketAddr,
    scheduler: Option<String>,
}

#[derive(Debug, Default)]
struct ServiceCounts {
    /// New connections per real server.
    new: BTreeMap<SocketAddr, u64>,
    /// Scheduling attempts that found no usable real server.
    no_dest: u64,
}

/// Events that were not shown, by where they were lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Dropped in the kernel because the ring buffer was full (`None`: counter unreadable).
    pub ring_full: Option<u64>,
    /// Dropped in the kernel because reading the connection failed (`None`: unknown).
    pub unreadable: Option<u64>,
    /// Records userspace could not decode.
    pub malformed: u64,
}

/// Aggregates printed events for the exit summary.
#[derive(Debug, Default)]
pub struct Summary {
    kinds: BTreeMap<EventKind, u64>,
    services: BTreeMap<ServiceKey, ServiceCounts>,
}

impl Summary {
    /// Counts one printed event.
    pub fn record(&mut self, event: &Event) {
        *self.kinds.entry(event.kind).or_default() += 1;
        let tracked = match event.kind {
            EventKind::New => event.backend,
            EventKind::NoDest => None,
            EventKind::Template | EventKind::Reused | EventKind::Expire => return,
        };
        let key = ServiceKey {
            proto: event.proto,
            vip: event.vip,
            scheduler: event.scheduler.clone(),
        };
        let counts = self.services.entry(key).or_default();
        match tracked {
            Some(backend) => *counts.new.entry(backend).or_default() += 1,
            None if event.kind == EventKind::NoDest => counts.no_dest += 1,
            // A `new` event without a backend address is not attributable to a real server;
            // it still counts in the per-kind line.
            None => {}
        }
    }

    /// Events of `kind` recorded so far.
    #[must_use]
    pub fn count(&self, kind: EventKind) -> u64 {
        self.kinds.get(&kind).copied().unwrap_or(0)
    }

    /// The summary text.
    #[must_use]
    pub fn render(&self, losses: &Losses) -> String {
        let mut out = String::from("ipvs-trace summary\n");
        // Writing into a String cannot fail: the results below are ignored for that reason.
        let _ = write!(
            out,
            "  events: new={} template={} reused={} no_dest={}",
            self.count(EventKind::New),
            self.count(EventKind::Template),
            self.count(EventKind::Reused),
            self.count(EventKind::NoDest),
        );
        if self.count(EventKind::Expire) > 0 {
            let _ = write!(out, " expire={}", self.count(EventKind::Expire));
        }
        out.push('\n');
        let lost = losses
            .ring_full
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        let _ = write!(
            out,
            "  lost: {lost} (ring buffer full)   malformed: {}",
            losses.malformed
        );
        // Rare (a kernel layout or race problem), so shown only when it happened: the common
        // line stays as scripts expect it.
        if let Some(unreadable) = losses.unreadable.filter(|&n| n > 0) {
            let _ = write!(out, "   unreadable: {unreadable} (kernel read failed)");
        }
        out.push('\n');
        for (key, counts) in &self.services {
            let scheduler = key.scheduler.as_deref().unwrap_or("-");
            let _ = writeln!(out, "  {} {} {scheduler}", key.proto, key.vip);
            let width = counts
                .new
                .keys()
                .map(|addr| addr.to_string().len())
                .max()
                .unwrap_or(0);
            for (backend, n) in &counts.new {
                let _ = writeln!(out, "    -> {:<width$}  new={n}", backend.to_string());
            }
            if counts.no_dest > 0 {
                let _ = writeln!(out, "    no destination: no_dest={}", counts.no_dest);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::sample_events;

    fn new_event(vip: &str, backend: &str, scheduler: &str) -> Event {
        let mut event = sample_events().remove(0);
        event.vip = vip.parse().unwrap();
        event.backend = Some(backend.parse().unwrap());
        event.scheduler = Some(scheduler.into());
        event
    }

    #[test]
    fn empty_summary() {
        assert_eq!(
            Summary::default().render(&Losses {
                ring_full: Some(0),
                unreadable: Some(0),
                malformed: 0
            }),
            "ipvs-trace summary\n  events: new=0 template=0 reused=0 no_dest=0\n  lost: 0 (ring buffer full)   malformed: 0\n"
        );
    }

    #[test]
    fn groups_new_connections_per_service_and_backend() {
        let mut summary = Summary::default();
        // Recorded in a scrambled order: the rendering must not depend on it.
        let backends = [
            "10.245.112.32:8080",
            "10.245.112.4:8080",
            "10.245.113.1:8080",
        ];
        for i in 0..9 {
            summary.record(&new_event("172.31.42.227:80", backends[(i * 2) % 3], "rr"));
        }
        summary.record(&new_event("10.245.96.43:32380", "10.245.112.4:8080", "rr"));
        summary.record(&new_event(
            "172.31.42.227:50091",
            "10.245.112.32:50091",
            "wrr",
        ));
        for event in sample_events() {
            summary.record(&event);
        }
        assert_eq!(
            summary.render(&Losses {
                ring_full: Some(3),
                unreadable: Some(0),
                malformed: 1
            }),
            "\
ipvs-trace summary
  events: new=13 template=1 reused=1 no_dest=1
  lost: 3 (ring buffer full)   malformed: 1
  TCP 10.245.96.43:32380 rr
    -> 10.245.112.4:8080  new=1
  TCP 172.31.42.227:80 -
    -> 10.245.112.32:8080  new=1
  TCP 172.31.42.227:80 rr
    -> 10.245.112.4:8080   new=3
    -> 10.245.112.32:8080  new=4
    -> 10.245.113.1:8080   new=3
  TCP 172.31.42.227:443 rr
    no destination: no_dest=1
  TCP 172.31.42.227:50091 wrr
    -> 10.245.112.32:50091  new=1
"
        );
    }

    #[test]
    fn unknown_and_unreadable_losses_and_expire() {
        let mut summary = Summary::default();
        let mut event = sample_events().remove(0);
        event.kind = EventKind::Expire;
        summary.record(&event);
        let text = summary.render(&Losses {
            ring_full: None,
            unreadable: Some(2),
            malformed: 0,
        });
        assert!(
            text.contains("  events: new=0 template=0 reused=0 no_dest=0 expire=1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  lost: unknown (ring buffer full)   malformed: 0   unreadable: 2 (kernel read failed)\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("->"),
            "expire does not count as a connection: {text}"
        );
    }
}
