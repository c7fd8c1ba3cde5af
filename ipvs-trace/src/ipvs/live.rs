//! The IPVS tables kept current in the background, and the changes between reads.
//!
//! kube-proxy re-programs IPVS whenever endpoints change (a pod added, a terminating endpoint
//! set to weight 0, a Service deleted), so a table read once goes stale during a long trace.
//! [`LiveTables`] reads the tables once at start (so that a missing ip_vs or a missing
//! capability is an error at once, not a warning later), then re-reads them on its own thread
//! every interval. Readers take the latest read with [`LiveTables::snapshot`], an `Arc` clone.
//!
//! Each read is compared with the one before: services and real servers added or removed,
//! weights and schedulers changed become [`TableChange`]s, stamped with the time the read saw
//! them. A change that is undone within one interval is not seen: the record is of the states
//! the reads found, not of every netlink command kube-proxy sent.
//!
//! Usage:
//! ```no_run
//! # fn main() -> Result<(), ipvs_trace::ipvs::IpvsError> {
//! use ipvs_trace::ipvs::live::{LiveTables, DEFAULT_INTERVAL};
//! let live = LiveTables::start(DEFAULT_INTERVAL)?;
//! let tables = live.snapshot(); // Arc<Tables>, the latest read
//! let (changes, _dropped) = live.drain_changes(); // what changed since the last drain
//! # Ok(()) }
//! ```
//! Dropping it stops the thread (at once, not at the next tick).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::{read_tables, Family, IpvsError, Service, Tables};
use crate::events::Proto;

/// How often the tables are re-read unless the caller says otherwise: often enough to stamp a
/// rollout's changes to the second, rare enough to cost nothing (a few netlink round trips).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Changes kept until drained; beyond it the oldest are dropped and counted. A caller that
/// only wants [`LiveTables::snapshot`] never drains, and must not grow memory on a churning node.
const MAX_CHANGES: usize = 4096;

/// What identifies a virtual service across reads (the `ipvsadm -A` key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub family: Family,
    /// `None` for a firewall-mark service.
    pub proto: Option<Proto>,
    /// `None` for a firewall-mark service.
    pub addr: Option<SocketAddr>,
    pub fwmark: Option<u32>,
}

impl ServiceKey {
    #[must_use]
    pub fn of(service: &Service) -> ServiceKey {
        ServiceKey {
            family: service.family,
            proto: service.proto,
            addr: service.addr,
            fwmark: service.fwmark,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// As `ipvsadm -Ln` names it: `TCP 172.31.0.10:80`, `FWM 5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.proto, self.addr, self.fwmark) {
            (Some(proto), Some(addr), _) => write!(f, "{proto} {addr}"),
            (_, _, Some(mark)) => write!(f, "FWM {mark}"),
            _ => f.write_str("-"),
        }
    }
}

/// One difference between two reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableChange {
    /// When the read that found it completed.
    pub seen: SystemTime,
    pub service: ServiceKey,
    pub kind: ChangeKind,
}

/// What changed in a virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    ServiceAdded,
    ServiceRemoved,
    SchedulerChanged {
        from: String,
        to: String,
    },
    DestAdded {
        addr: SocketAddr,
        weight: u32,
    },
    DestRemoved {
        addr: SocketAddr,
        weight: u32,
    },
    WeightChanged {
        addr: SocketAddr,
        from: u32,
        to: u32,
    },
}

/// The tables, re-read in the background. See the module documentation.
pub struct LiveTables {
    shared: Arc<Shared>,
    /// Dropping the sender wakes the thread at once and ends it.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// ip_vs not loaded reads as no virtual services (see [`LiveTables::start_or_empty`]).
    absent_is_empty: bool,
    current: RwLock<Arc<Tables>>,
    changes: Mutex<ChangeLog>,
    /// Held for a whole read-compare-store: two reads applied out of order would record a
    /// change and its undoing that never happened.
    reading: Mutex<()>,
}

#[derive(Default)]
struct ChangeLog {
    changes: VecDeque<TableChange>,
    dropped: u64,
}

impl LiveTables {
    /// Reads the tables now (an error here is the same as [`read_tables`]'s), then keeps them
    /// current on a thread, re-reading every `interval`.
    pub fn start(interval: Duration) -> Result<LiveTables, IpvsError> {
        Self::start_with(interval, false)
    }

    /// [`LiveTables::start`], where ip_vs not loaded is no error but empty tables (until it
    /// loads): for a command that traces the netfilter dataplanes too, on a node that may have
    /// no IPVS at all.
    pub fn start_or_empty(interval: Duration) -> Result<LiveTables, IpvsError> {
        Self::start_with(interval, true)
    }

    fn start_with(interval: Duration, absent_is_empty: bool) -> Result<LiveTables, IpvsError> {
        let first = read(absent_is_empty)?;
        let shared = Arc::new(Shared {
            absent_is_empty,
            current: RwLock::new(Arc::new(first)),
            changes: Mutex::new(ChangeLog::default()),
            reading: Mutex::new(()),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ipvs-tables".into())
            .spawn(move || {
                let mut failing = false;
                // Woken by the interval, or by the sender's drop (disconnected).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    match worker.refresh() {
                        Ok(_) if failing => {
                            failing = false;
                            tracing::info!("the IPVS tables can be read again");
                        }
                        Ok(_) => {}
                        // Once per streak: a node where reads fail keeps failing every second.
                        Err(err) if !failing => {
                            failing = true;
                            tracing::warn!(
                                "re-reading the IPVS tables failed, keeping the last read: {err}"
                            );
                        }
                        Err(err) => tracing::debug!("re-reading the IPVS tables failed: {err}"),
                    }
                }
            })
            .map_err(|source| IpvsError::Io {
                what: "starting the IPVS table reader thread".into(),
                source,
            })?;
        Ok(LiveTables {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The latest read (cheap: an `Arc` clone).
    #[must_use]
    pub fn snapshot(&self) -> Arc<Tables> {
        self.shared.snapshot()
    }

    /// Reads the tables now, records what changed, and returns the new read: for a caller that
    /// needs the state (and the counters) of this moment, not of up to one interval ago.
    pub fn refresh(&self) -> Result<Arc<Tables>, IpvsError> {
        self.shared.refresh()
    }

    /// The changes recorded since the last drain, oldest first, and how many were dropped
    /// because nobody drained them in time (more than 4096 pending).
    pub fn drain_changes(&self) -> (Vec<TableChange>, u64) {
        let mut log = self
            .shared
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let dropped = std::mem::take(&mut log.dropped);
        (log.changes.drain(..).collect(), dropped)
    }
}

impl Drop for LiveTables {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // At most one netlink read in flight: milliseconds.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn snapshot(&self) -> Arc<Tables> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn refresh(&self) -> Result<Arc<Tables>, IpvsError> {
        let _reading = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        let tables = Arc::new(read(self.absent_is_empty)?);
        let seen = SystemTime::now();
        let before = self.snapshot();
        let changes = diff(&before, &tables, seen);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&tables);
        if !changes.is_empty() {
            let mut log = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
            log.changes.extend(changes);
            let excess = log.changes.len().saturating_sub(MAX_CHANGES);
            log.changes.drain(..excess);
            log.dropped += excess as u64;
        }
        Ok(tables)
    }
}

/// One read of the tables; with `absent_is_empty`, ip_vs not loaded is no virtual services.
fn read(absent_is_empty: bool) -> Result<Tables, IpvsError> {
    match read_tables() {
        Err(IpvsError::NotLoaded) if absent_is_empty => Ok(Tables {
            info: super::Info {
                version: 0,
                conn_table_size: 0,
            },
            services: Vec::new(),
        }),
        other => other,
    }
}

/// What changed from `old` to `new`, services in key order, each service's changes by real
/// server address.
#[must_use]
pub fn diff(old: &Tables, new: &Tables, seen: SystemTime) -> Vec<TableChange> {
    let by_key = |tables: &Tables| -> BTreeMap<ServiceKey, Service> {
        tables
            .services
            .iter()
            .map(|s| (ServiceKey::of(s), s.clone()))
            .collect()
    };
    let (old, new) = (by_key(old), by_key(new));
    let mut changes = Vec::new();
    let mut push = |service: ServiceKey, kind: ChangeKind| {
        changes.push(TableChange {
            seen,
            service,
            kind,
        });
    };
    let keys: std::collections::BTreeSet<_> = old.keys().chain(new.keys()).copied().collect();
    for key in keys {
        let (before, after) = match (old.get(&key), new.get(&key)) {
            (None, Some(after)) => {
                push(key, ChangeKind::ServiceAdded);
                (None, after)
            }
            (Some(before), None) => {
                push(key, ChangeKind::ServiceRemoved);
                for dest in &before.dests {
                    push(
                        key,
                        ChangeKind::DestRemoved {
                            addr: dest.addr,
                            weight: dest.weight,
                        },
                    );
                }
                continue;
            }
            (Some(before), Some(after)) => (Some(before), after),
            (None, None) => continue,
        };
        if let Some(before) = before {
            if before.scheduler != after.scheduler {
                push(
                    key,
                    ChangeKind::SchedulerChanged {
                        from: before.scheduler.clone(),
                        to: after.scheduler.clone(),
                    },
                );
            }
        }
        let old_dests: BTreeMap<SocketAddr, u32> = before
            .map(|b| b.dests.iter().map(|d| (d.addr, d.weight)).collect())
            .unwrap_or_default();
        let new_dests: BTreeMap<SocketAddr, u32> =
            after.dests.iter().map(|d| (d.addr, d.weight)).collect();
        let addrs: std::collections::BTreeSet<_> =
            old_dests.keys().chain(new_dests.keys()).copied().collect();
        for addr in addrs {
            match (old_dests.get(&addr), new_dests.get(&addr)) {
                (None, Some(&weight)) => push(key, ChangeKind::DestAdded { addr, weight }),
                (Some(&weight), None) => push(key, ChangeKind::DestRemoved { addr, weight }),
                (Some(&from), Some(&to)) if from != to => {
                    push(key, ChangeKind::WeightChanged { addr, from, to });
                }
                _ => {}
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::{Dest, Info, Netmask, ServiceFlags, Stats};

    fn dest(addr: &str, weight: u32) -> Dest {
        Dest::test_masq(addr, weight)
    }

    fn service(vip: &str, scheduler: &str, dests: Vec<Dest>) -> Service {
        Service {
            family: Family::V4,
            proto: Some(Proto::Tcp),
            addr: Some(vip.parse().unwrap()),
            fwmark: None,
            scheduler: scheduler.into(),
            persistence_engine: None,
            flags: ServiceFlags(ServiceFlags::HASHED),
            timeout: 0,
            netmask: Netmask::V4(std::net::Ipv4Addr::BROADCAST),
            stats: Stats::default(),
            stats_64bit: true,
            dests,
        }
    }

    fn tables(services: Vec<Service>) -> Tables {
        Tables {
            info: Info {
                version: 0x01_02_01,
                conn_table_size: 4096,
            },
            services,
        }
    }

    #[test]
    fn diff_names_every_kind_of_change() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_hours(500_000);
        let old = tables(vec![
            service(
                "172.31.0.10:80",
                "rr",
                vec![dest("10.0.0.1:80", 1), dest("10.0.0.2:80", 1)],
            ),
            service("172.31.0.11:80", "rr", vec![dest("10.0.0.9:80", 1)]),
        ]);
        let new = tables(vec![
            service(
                "172.31.0.10:80",
                "wrr",
                vec![dest("10.0.0.2:80", 0), dest("10.0.0.3:80", 2)],
            ),
            service("172.31.0.12:80", "rr", vec![dest("10.0.0.7:80", 1)]),
        ]);
        let changes = diff(&old, &new, at);
        assert!(changes.iter().all(|c| c.seen == at));
        let text: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {:?}", c.service, c.kind))
            .collect();
        assert_eq!(
            text,
            [
                "TCP 172.31.0.10:80 SchedulerChanged { from: \"rr\", to: \"wrr\" }",
                "TCP 172.31.0.10:80 DestRemoved { addr: 10.0.0.1:80, weight: 1 }",
                "TCP 172.31.0.10:80 WeightChanged { addr: 10.0.0.2:80, from: 1, to: 0 }",
                "TCP 172.31.0.10:80 DestAdded { addr: 10.0.0.3:80, weight: 2 }",
                "TCP 172.31.0.11:80 ServiceRemoved",
                "TCP 172.31.0.11:80 DestRemoved { addr: 10.0.0.9:80, weight: 1 }",
                "TCP 172.31.0.12:80 ServiceAdded",
                "TCP 172.31.0.12:80 DestAdded { addr: 10.0.0.7:80, weight: 1 }",
            ]
        );
        assert!(diff(&new, &new, at).is_empty(), "no change, no record");
    }
}
