//! What `top` shows, computed from events alone: counts per virtual service and backend over
//! each interval and since the start, turned into rates, shares and a sorted [`Frame`].
//!
//! Pure on purpose: the event loop feeds it events and calls [`Aggregator::tick`] once per
//! interval with the elapsed time it measured and the loss counters it read; everything a frame
//! shows can therefore be tested without a kernel or a terminal.
//!
//! A service is keyed by its Kubernetes Service port when the index knows the VIP (the
//! ClusterIP, external IPs and NodePorts of one port add up under one name, as in the trace
//! summary), else by protocol and VIP:port. A backend likewise by pod name, else by address.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{model::EventKind, Event, Proto};
use crate::kube::Names;
use crate::output::summary::Losses;

/// A service or backend: by Kubernetes name when known, else by address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Addr(SocketAddr),
    Named(Arc<str>),
}

/// A virtual service as the events see it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub proto: Proto,
    pub target: Target,
}

impl fmt::Display for ServiceKey {
    /// `ratel/vpaas-demo-prod:http` by name (the port name says the protocol), else
    /// `172.31.42.227:80/TCP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Named(name) => f.pad(name),
            Target::Addr(addr) => f.pad(&format!("{addr}/{}", self.proto)),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(addr) => f.pad(&addr.to_string()),
            Target::Named(name) => f.pad(name),
        }
    }
}

/// Connections counted over some span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Scheduled by IPVS (`new` events): what `ipvsadm -Ln --stats` counts as Conns.
    pub new: u64,
    /// New connections that hit an existing entry and went to its backend unscheduled.
    pub reused: u64,
    /// Scheduling attempts that found no usable real server (services only).
    pub no_dest: u64,
}

impl Counts {
    /// What the backends received: `new + reused`.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.new + self.reused
    }

    fn add(&mut self, other: Counts) {
        self.new += other.new;
        self.reused += other.reused;
        self.no_dest += other.no_dest;
    }
}

/// Counts per second over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub new: f64,
    pub reused: f64,
    pub no_dest: f64,
}

impl Rates {
    fn of(counts: Counts, elapsed: Duration) -> Rates {
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return Rates::default();
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "counts per interval are far below 2^52"
        )]
        let per_second = |n: u64| n as f64 / seconds;
        Rates {
            new: per_second(counts.new),
            reused: per_second(counts.reused),
            no_dest: per_second(counts.no_dest),
        }
    }
}

#[derive(Debug, Default)]
struct BackendState {
    interval: Counts,
    total: Counts,
    /// Addresses a named backend was seen at.
    addrs: BTreeSet<SocketAddr>,
}

#[derive(Debug, Default)]
struct ServiceState {
    /// The last scheduler an event named (`None` until one did).
    scheduler: Option<String>,
    /// Addresses a named service was seen at.
    vips: BTreeSet<SocketAddr>,
    interval: Counts,
    total: Counts,
    backends: BTreeMap<Target, BackendState>,
}

/// Counts events between ticks; see the module documentation.
#[derive(Debug, Default)]
pub struct Aggregator {
    services: BTreeMap<ServiceKey, ServiceState>,
    frames: u64,
    /// Loss totals at the previous tick, for the interval's share.
    last_lost: Option<u64>,
}

impl Aggregator {
    /// Counts one event (already filtered) with the names it resolved to. Templates are not
    /// connections and are not counted; neither are the kinds no probe emits.
    pub fn record(&mut self, event: &Event, names: &Names) {
        let counts = match event.kind {
            EventKind::New => Counts {
                new: 1,
                ..Counts::default()
            },
            EventKind::Reused => Counts {
                reused: 1,
                ..Counts::default()
            },
            EventKind::NoDest => Counts {
                no_dest: 1,
                ..Counts::default()
            },
            EventKind::Template | EventKind::Expire => return,
        };
        let key = ServiceKey {
            proto: event.proto,
            target: names.service.map_or(Target::Addr(event.vip), |s| {
                Target::Named(Arc::clone(&s.label))
            }),
        };
        let service = self.services.entry(key).or_default();
        if names.service.is_some() {
            service.vips.insert(event.vip);
        }
        if event.scheduler.is_some() && service.scheduler.as_deref() != event.scheduler.as_deref() {
            service.scheduler = event.scheduler.as_deref().map(str::to_owned);
        }
        service.interval.add(counts);
        if let Some(addr) = event.backend {
            let target = names
                .backend
                .and_then(|b| b.pod.as_ref())
                .map_or(Target::Addr(addr), |pod| Target::Named(Arc::clone(pod)));
            let by_name = matches!(target, Target::Named(_));
            let backend = service.backends.entry(target).or_default();
            backend.interval.add(counts);
            if by_name {
                backend.addrs.insert(addr);
            }
        }
    }

    /// Closes the interval: a frame of what it counted, `elapsed` long, with the loss counters
    /// as read now (totals since the start). The interval counts start again from zero.
    pub fn tick(&mut self, elapsed: Duration, losses: &Losses) -> Frame {
        self.frames += 1;
        let mut all = Counts::default();
        let mut services: Vec<ServiceRow> = self
            .services
            .iter_mut()
            .map(|(key, state)| {
                let interval = std::mem::take(&mut state.interval);
                state.total.add(interval);
                all.add(interval);
                let mut backends: Vec<BackendRow> = state
                    .backends
                    .iter_mut()
                    .map(|(target, backend)| {
                        let mine = std::mem::take(&mut backend.interval);
                        backend.total.add(mine);
                        BackendRow {
                            name: target.to_string(),
                            named: matches!(target, Target::Named(_)),
                            addrs: backend.addrs.iter().copied().collect(),
                            interval: mine,
                            total: backend.total,
                            rates: Rates::of(mine, elapsed),
                            share: share(mine.received(), interval.received()),
                        }
                    })
                    .collect();
                backends.sort_by(|a, b| {
                    busiest_first(&a.interval, &a.total, &b.interval, &b.total)
                        .then_with(|| a.name.cmp(&b.name))
                });
                ServiceRow {
                    name: key.to_string(),
                    named: matches!(key.target, Target::Named(_)),
                    proto: key.proto,
                    scheduler: state.scheduler.clone(),
                    vips: state.vips.iter().copied().collect(),
                    interval,
                    total: state.total,
                    rates: Rates::of(interval, elapsed),
                    backends,
                }
            })
            .collect();
        services.sort_by(|a, b| {
            busiest_first(&a.interval, &a.total, &b.interval, &b.total)
                .then_with(|| a.name.cmp(&b.name))
        });
        let lost = Lost::new(losses, self.last_lost);
        self.last_lost = lost.total.or(self.last_lost);
        Frame {
            number: self.frames,
            elapsed,
            lost,
            rates: Rates::of(all, elapsed),
            services,
        }
    }
}

/// Busiest in the interval first (received, then no_dest), then busiest since the start.
fn busiest_first(a: &Counts, a_total: &Counts, b: &Counts, b_total: &Counts) -> Ordering {
    (b.received(), b.no_dest, b_total.received(), b_total.no_dest).cmp(&(
        a.received(),
        a.no_dest,
        a_total.received(),
        a_total.no_dest,
    ))
}

fn share(part: u64, whole: u64) -> Option<f64> {
    #[expect(
        clippy::cast_precision_loss,
        reason = "counts per interval are far below 2^52"
    )]
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Events lost before they reached the view: in the kernel (ring buffer full, connection
/// unreadable) and in decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Every loss since the start; `None` when a kernel counter could not be read.
    pub total: Option<u64>,
    /// Lost during this interval (`None`: unknown).
    pub interval: Option<u64>,
    /// The parts, as read.
    pub losses: Losses,
}

impl Lost {
    fn new(losses: &Losses, previous: Option<u64>) -> Lost {
        let total = losses
            .ring_full
            .zip(losses.unreadable)
            .map(|(full, unreadable)| full + unreadable + losses.malformed);
        Lost {
            total,
            interval: total.map(|now| now.saturating_sub(previous.unwrap_or(0))),
            losses: *losses,
        }
    }

    /// Nothing lost, as far as the counters say.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.total == Some(0)
    }
}

/// One refresh of the view.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// 1 for the first frame.
    pub number: u64,
    /// Length of the interval the rates are over.
    pub elapsed: Duration,
    pub lost: Lost,
    /// Every service together.
    pub rates: Rates,
    /// Busiest first.
    pub services: Vec<ServiceRow>,
}

/// A virtual service in a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRow {
    /// `namespace/name:port` or `VIP:port/PROTO`.
    pub name: String,
    pub named: bool,
    pub proto: Proto,
    pub scheduler: Option<String>,
    /// The VIPs a named service was seen at (empty when keyed by address).
    pub vips: Vec<SocketAddr>,
    pub interval: Counts,
    pub total: Counts,
    pub rates: Rates,
    /// Busiest first.
    pub backends: Vec<BackendRow>,
}

/// A real server of a service in a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendRow {
    /// `namespace/pod` or `ip:port`.
    pub name: String,
    pub named: bool,
    /// The addresses a named backend was seen at (empty when keyed by address).
    pub addrs: Vec<SocketAddr>,
    pub interval: Counts,
    pub total: Counts,
    pub rates: Rates,
    /// Its part of what the service's backends received in the interval (`None`: the service
    /// received nothing).
    pub share: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{BackendName, ServiceName, ServiceType};
    use crate::output::tests::sample_events;

    fn event(kind: EventKind, vip: &str, backend: Option<&str>) -> Event {
        let mut event = sample_events()
            .into_iter()
            .find(|e| e.kind == EventKind::New)
            .expect("a new event in the samples");
        event.kind = kind;
        event.vip = vip.parse().unwrap();
        event.backend = backend.map(|b| b.parse().unwrap());
        event.scheduler = Some("rr".into());
        event
    }

    fn record(agg: &mut Aggregator, kind: EventKind, vip: &str, backend: Option<&str>, n: u32) {
        for _ in 0..n {
            agg.record(&event(kind, vip, backend), &Names::NONE);
        }
    }

    const CLEAN: Losses = Losses {
        ring_full: Some(0),
        unreadable: Some(0),
        malformed: 0,
        filtered: None,
        read: 0,
    };

    #[test]
    fn rates_shares_and_totals_per_interval() {
        let mut agg = Aggregator::default();
        let vip = "172.31.0.90:80";
        record(&mut agg, EventKind::New, vip, Some("10.245.19.1:8080"), 6);
        record(&mut agg, EventKind::New, vip, Some("10.245.19.2:8080"), 3);
        record(
            &mut agg,
            EventKind::Reused,
            vip,
            Some("10.245.19.2:8080"),
            3,
        );
        record(&mut agg, EventKind::NoDest, vip, None, 2);
        let frame = agg.tick(Duration::from_secs(2), &CLEAN);
        assert_eq!(frame.number, 1);
        assert_eq!(
            frame.rates,
            Rates {
                new: 4.5,
                reused: 1.5,
                no_dest: 1.0
            }
        );
        let [service] = frame.services.as_slice() else {
            panic!("one service: {frame:?}")
        };
        assert_eq!(service.name, "172.31.0.90:80/TCP");
        assert_eq!(service.scheduler.as_deref(), Some("rr"));
        assert_eq!(
            service.interval,
            Counts {
                new: 9,
                reused: 3,
                no_dest: 2
            }
        );
        // 6 and 6 received: a tie in the interval, broken by name.
        let shares: Vec<_> = service
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.share, b.rates.new))
            .collect();
        assert_eq!(
            shares,
            [
                ("10.245.19.1:8080", Some(0.5), 3.0),
                ("10.245.19.2:8080", Some(0.5), 1.5)
            ]
        );

        // Second interval: only the second backend; the totals keep the first interval's.
        record(&mut agg, EventKind::New, vip, Some("10.245.19.2:8080"), 4);
        let frame = agg.tick(Duration::from_secs(1), &CLEAN);
        let service = &frame.services[0];
        assert_eq!(
            service.interval,
            Counts {
                new: 4,
                reused: 0,
                no_dest: 0
            }
        );
        assert_eq!(
            service.total,
            Counts {
                new: 13,
                reused: 3,
                no_dest: 2
            }
        );
        let rows: Vec<_> = service
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.share, b.interval.new, b.total))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "10.245.19.2:8080",
                    Some(1.0),
                    4,
                    Counts {
                        new: 7,
                        reused: 3,
                        no_dest: 0
                    }
                ),
                (
                    "10.245.19.1:8080",
                    Some(0.0),
                    0,
                    Counts {
                        new: 6,
                        reused: 0,
                        no_dest: 0
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_quiet_interval_has_no_share_and_keeps_the_totals() {
        let mut agg = Aggregator::default();
        record(
            &mut agg,
            EventKind::New,
            "172.31.0.90:80",
            Some("10.245.19.1:8080"),
            13,
        );
        agg.tick(Duration::from_secs(1), &CLEAN);
        let frame = agg.tick(Duration::from_secs(1), &CLEAN);
        assert_eq!(frame.number, 2);
        assert_eq!(frame.rates, Rates::default());
        assert_eq!(
            frame.services[0].backends[0].share, None,
            "nothing to divide"
        );
        assert_eq!(frame.services[0].total.new, 13);
        assert_eq!(frame.services[0].backends[0].total.new, 13);
    }

    #[test]
    fn services_sort_busiest_first_then_by_total_then_name() {
        let mut agg = Aggregator::default();
        record(
            &mut agg,
            EventKind::New,
            "172.31.0.1:80",
            Some("10.0.0.1:80"),
            9,
        );
        record(
            &mut agg,
            EventKind::New,
            "172.31.0.2:80",
            Some("10.0.0.2:80"),
            1,
        );
        agg.tick(Duration::from_secs(1), &CLEAN);
        record(
            &mut agg,
            EventKind::New,
            "172.31.0.2:80",
            Some("10.0.0.2:80"),
            2,
        );
        record(
            &mut agg,
            EventKind::New,
            "172.31.0.3:80",
            Some("10.0.0.3:80"),
            2,
        );
        record(&mut agg, EventKind::NoDest, "172.31.0.4:80", None, 1);
        let frame = agg.tick(Duration::from_secs(1), &CLEAN);
        let order: Vec<_> = frame.services.iter().map(|s| s.name.as_str()).collect();
        // .2 and .3 tie at 2 this interval (.2 has more since the start); the no_dest-only
        // service comes next; .1, idle now, last despite its 9.
        assert_eq!(
            order,
            [
                "172.31.0.2:80/TCP",
                "172.31.0.3:80/TCP",
                "172.31.0.4:80/TCP",
                "172.31.0.1:80/TCP"
            ]
        );
        assert!(frame.services[2].backends.is_empty());
    }

    #[test]
    fn templates_are_not_connections() {
        let mut agg = Aggregator::default();
        record(
            &mut agg,
            EventKind::Template,
            "172.31.0.1:80",
            Some("10.0.0.1:80"),
            3,
        );
        let frame = agg.tick(Duration::from_secs(1), &CLEAN);
        assert!(frame.services.is_empty(), "{frame:?}");
    }

    #[test]
    fn names_merge_the_addresses_of_one_service_port_and_one_pod() {
        let mut agg = Aggregator::default();
        let names = Names {
            service: Some(&ServiceName {
                label: "ratel/web:http".into(),
                service: "ratel/web".into(),
                service_type: ServiceType::ClusterIp,
            }),
            backend: Some(&BackendName {
                pod: Some("ratel/web-1".into()),
                node: None,
                serving: None,
                terminating: None,
            }),
            client: None,
        };
        for vip in ["172.31.42.227:80", "10.245.96.43:32380"] {
            agg.record(
                &event(EventKind::New, vip, Some("10.245.112.32:8080")),
                &names,
            );
        }
        let frame = agg.tick(Duration::from_secs(1), &CLEAN);
        let [service] = frame.services.as_slice() else {
            panic!("one service: {frame:?}")
        };
        assert_eq!(
            (service.name.as_str(), service.named),
            ("ratel/web:http", true)
        );
        assert_eq!(service.vips.len(), 2);
        assert_eq!(service.backends[0].name, "ratel/web-1");
        assert_eq!(service.backends[0].total.new, 2);
        assert_eq!(
            service.backends[0].addrs,
            ["10.245.112.32:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn losses_total_and_per_interval() {
        let mut agg = Aggregator::default();
        let frame = agg.tick(Duration::from_secs(1), &CLEAN);
        assert!(frame.lost.is_zero());
        let lossy = Losses {
            ring_full: Some(40),
            unreadable: Some(2),
            malformed: 1,
            filtered: None,
            read: 0,
        };
        let frame = agg.tick(Duration::from_secs(1), &lossy);
        assert_eq!(
            (frame.lost.total, frame.lost.interval),
            (Some(43), Some(43))
        );
        assert!(!frame.lost.is_zero());
        let frame = agg.tick(Duration::from_secs(1), &lossy);
        assert_eq!((frame.lost.total, frame.lost.interval), (Some(43), Some(0)));
        // An unreadable counter: unknown, never shown as 0.
        let unknown = Losses {
            ring_full: None,
            ..lossy
        };
        let frame = agg.tick(Duration::from_secs(1), &unknown);
        assert_eq!((frame.lost.total, frame.lost.interval), (None, None));
        assert!(!frame.lost.is_zero());
        let frame = agg.tick(
            Duration::from_secs(1),
            &Losses {
                ring_full: Some(50),
                ..lossy
            },
        );
        assert_eq!(
            (frame.lost.total, frame.lost.interval),
            (Some(53), Some(10))
        );
    }
}
