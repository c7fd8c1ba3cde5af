//! Filling an event's scheduler and weight from the IPVS tables, for kernels whose probes
//! cannot read them (no module BTF: the built-in layout stops at `struct ip_vs_conn`'s stable
//! part, see [`crate::offsets::BUILTIN_LAYOUT`]).
//!
//! What the tables give is the *configured* state at the last read, not kernel memory at the
//! moment of the event: the scheduler name (a service's scheduler rarely changes) and each real
//! server's weight (which kube-proxy sets to 0 for a terminating endpoint, so a change can lag
//! by one refresh). The active/inactive counters are of another moment altogether and are not
//! filled. An event whose virtual service is not in the tables stays as it was and is counted:
//! with a layout that was wrong, nothing would match, and the summary would say so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::live::LiveTables;
use super::model::Tables;
use crate::events::{DestCounters, Event, Proto};

/// One virtual service's scheduler and its real servers' weights.
#[derive(Debug)]
struct Entry {
    scheduler: String,
    weights: HashMap<SocketAddr, u32>,
}

/// The tables indexed by `(protocol, VIP:port)`: firewall-mark services have no address to
/// match an event by and are left out.
#[derive(Debug, Default)]
pub struct TableIndex {
    services: HashMap<(Proto, SocketAddr), Entry>,
}

/// What [`TableIndex::fill`] could do for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filled {
    /// The event already had what the tables would give (the probes read it).
    NotNeeded,
    /// The virtual service was found; scheduler (and weight, for a known real server) filled.
    Filled,
    /// No such virtual service in the tables (added since the last read, a firewall-mark
    /// service, or a misread event).
    NoService,
}

impl TableIndex {
    #[must_use]
    pub fn new(tables: &Tables) -> TableIndex {
        let services = tables
            .services
            .iter()
            .filter_map(|svc| {
                let key = (svc.proto?, svc.addr?);
                let weights = svc.dests.iter().map(|d| (d.addr, d.weight)).collect();
                let entry = Entry {
                    scheduler: svc.scheduler.clone(),
                    weights,
                };
                Some((key, entry))
            })
            .collect();
        TableIndex { services }
    }

    /// Fills what `event` lacks from the tables: the scheduler, and the chosen real server's
    /// configured weight (counters stay `None`). Events that have both are left alone.
    pub fn fill(&self, event: &mut Event) -> Filled {
        let needs_weight = event.dest.is_none() && event.backend.is_some();
        if event.scheduler.is_some() && !needs_weight {
            return Filled::NotNeeded;
        }
        let Some(entry) = self.services.get(&(event.proto, event.vip)) else {
            return Filled::NoService;
        };
        if event.scheduler.is_none() {
            event.scheduler = Some(entry.scheduler.clone().into());
        }
        if needs_weight {
            let weight = event
                .backend
                .and_then(|backend| entry.weights.get(&backend))
                .and_then(|&w| i32::try_from(w).ok());
            if let Some(weight) = weight {
                event.dest = Some(DestCounters {
                    weight,
                    active_conns: None,
                    inactive_conns: None,
                });
            }
        }
        Filled::Filled
    }
}

/// [`TableIndex`] over the latest read of [`LiveTables`], with counts of what it filled: the
/// event loop's view of the tables.
pub struct LiveLookup {
    live: LiveTables,
    seen: Arc<Tables>,
    index: TableIndex,
    filled: u64,
    no_service: u64,
}

impl LiveLookup {
    #[must_use]
    pub fn new(live: LiveTables) -> LiveLookup {
        let seen = live.snapshot();
        let index = TableIndex::new(&seen);
        LiveLookup {
            live,
            seen,
            index,
            filled: 0,
            no_service: 0,
        }
    }

    /// Takes the latest read if there is a new one: once per batch of events, so the index is
    /// rebuilt at most once per refresh interval and never per event.
    pub fn catch_up(&mut self) {
        let latest = self.live.snapshot();
        if !Arc::ptr_eq(&latest, &self.seen) {
            self.index = TableIndex::new(&latest);
            self.seen = latest;
        }
    }

    /// [`TableIndex::fill`], counted.
    pub fn fill(&mut self, event: &mut Event) {
        match self.index.fill(event) {
            Filled::NotNeeded => {}
            Filled::Filled => self.filled += 1,
            Filled::NoService => self.no_service += 1,
        }
    }

    /// For the summary: how many events the tables completed, and how many they could not.
    #[must_use]
    pub fn summary_line(&self) -> String {
        format!(
            "scheduler and weight from the IPVS tables for {} events; {} events had no matching \
             virtual service",
            self.filled, self.no_service
        )
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A small IPVS table for tests: wrr 172.31.0.10:80 (weights 3 and 0), lc on UDP, a
    //! firewall-mark service.
    use std::net::SocketAddr;

    use crate::events::Proto;
    use crate::ipvs::model::{Dest, Family, Info, Netmask, Service, ServiceFlags, Stats, Tables};

    pub(crate) fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    pub(crate) fn dest(at: &str, weight: u32) -> Dest {
        Dest::test_masq(at, weight)
    }

    pub(crate) fn service(
        proto: Option<Proto>,
        at: Option<&str>,
        scheduler: &str,
        dests: Vec<Dest>,
    ) -> Service {
        Service {
            family: Family::V4,
            proto,
            addr: at.map(addr),
            fwmark: at.is_none().then_some(7),
            scheduler: scheduler.into(),
            persistence_engine: None,
            flags: ServiceFlags(0),
            timeout: 0,
            netmask: Netmask::V4(std::net::Ipv4Addr::BROADCAST),
            stats: Stats::default(),
            stats_64bit: true,
            dests,
        }
    }

    pub(crate) fn tables() -> Tables {
        Tables {
            info: Info {
                version: 0x0001_0201,
                conn_table_size: 4096,
            },
            services: vec![
                service(
                    Some(Proto::Tcp),
                    Some("172.31.0.10:80"),
                    "wrr",
                    vec![dest("10.245.1.1:8080", 3), dest("10.245.1.2:8080", 0)],
                ),
                service(
                    Some(Proto::Udp),
                    Some("172.31.0.10:80"),
                    "lc",
                    vec![dest("10.245.1.1:8080", 5)],
                ),
                service(None, None, "sh", vec![dest("10.245.9.9:80", 1)]),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{addr, tables};
    use super::*;
    use crate::events::model::EventKind;
    use crate::events::FwdMethod;

    /// An event as the built-in layout gives it: tuple, no scheduler, no counters.
    fn bare(proto: Proto, vip: &str, backend: Option<&str>) -> Event {
        Event {
            dataplane: crate::dataplane::Dataplane::Ipvs,
            kind: if backend.is_some() {
                EventKind::New
            } else {
                EventKind::NoDest
            },
            timestamp_ns: 1,
            cpu: 0,
            netns: None,
            conn: backend.map(|_| 0xffff_0000),
            proto,
            client: addr("198.51.100.1:40000"),
            vip: addr(vip),
            backend: backend.map(addr),
            fwd: backend.map(|_| FwdMethod::Masq),
            flags: 0,
            state: 1,
            scheduler: None,
            dest: None,
        }
    }

    #[test]
    fn fills_scheduler_and_configured_weight_but_no_counters() {
        let index = TableIndex::new(&tables());
        let mut event = bare(Proto::Tcp, "172.31.0.10:80", Some("10.245.1.1:8080"));
        assert_eq!(index.fill(&mut event), Filled::Filled);
        assert_eq!(event.scheduler.as_deref(), Some("wrr"));
        assert_eq!(
            event.dest,
            Some(DestCounters {
                weight: 3,
                active_conns: None,
                inactive_conns: None
            })
        );
        // Weight 0 is a weight (a terminating endpoint), not an absence.
        let mut event = bare(Proto::Tcp, "172.31.0.10:80", Some("10.245.1.2:8080"));
        index.fill(&mut event);
        assert_eq!(event.dest.map(|d| d.weight), Some(0));
    }

    #[test]
    fn the_protocol_is_part_of_the_key() {
        let index = TableIndex::new(&tables());
        let mut event = bare(Proto::Udp, "172.31.0.10:80", Some("10.245.1.1:8080"));
        index.fill(&mut event);
        assert_eq!(event.scheduler.as_deref(), Some("lc"));
        assert_eq!(event.dest.map(|d| d.weight), Some(5));
    }

    #[test]
    fn unknown_services_and_servers_are_left_unfilled() {
        let index = TableIndex::new(&tables());
        let mut event = bare(Proto::Tcp, "172.31.0.99:80", Some("10.245.1.1:8080"));
        assert_eq!(index.fill(&mut event), Filled::NoService);
        assert_eq!((event.scheduler, event.dest), (None, None));
        // A real server the last read did not have: the scheduler is known, the weight not.
        let mut event = bare(Proto::Tcp, "172.31.0.10:80", Some("10.245.1.3:8080"));
        assert_eq!(index.fill(&mut event), Filled::Filled);
        assert_eq!(event.scheduler.as_deref(), Some("wrr"));
        assert_eq!(event.dest, None);
    }

    #[test]
    fn no_dest_gets_the_scheduler_and_kernel_values_are_kept() {
        let index = TableIndex::new(&tables());
        let mut event = bare(Proto::Tcp, "172.31.0.10:80", None);
        assert_eq!(index.fill(&mut event), Filled::Filled);
        assert_eq!(event.scheduler.as_deref(), Some("wrr"));
        assert_eq!(event.dest, None);

        let mut event = bare(Proto::Tcp, "172.31.0.10:80", Some("10.245.1.1:8080"));
        event.scheduler = Some("rr".into());
        event.dest = Some(DestCounters {
            weight: 1,
            active_conns: Some(2),
            inactive_conns: Some(3),
        });
        let before = event.clone();
        assert_eq!(index.fill(&mut event), Filled::NotNeeded);
        assert_eq!(event, before, "what the probe read wins");
    }
}
