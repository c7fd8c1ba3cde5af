//! The window's counting: which phase each event falls in by its kernel timestamp, the counts
//! per virtual service and real server, and which virtual services the user selected.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use crate::events::{model::EventKind, Dataplane, Event, Proto};
use crate::filter::{AddrMatch, ServiceMatch};
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
pub(super) struct Observed {
    pub(super) backends: BTreeMap<SocketAddr, BackendCounts>,
    /// Client IP → backends its new connections and templates went to (stickiness).
    pub(super) clients: BTreeMap<IpAddr, BTreeSet<SocketAddr>>,
    pub(super) no_dest: u64,
    /// The netfilter dataplane whose events chose the service's backends at random
    /// (kube-proxy's nftables and iptables modes; the last event's), `None` for IPVS.
    pub(super) netfilter: Option<Dataplane>,
    /// Connections (new and reused) to the service in every phase, in the order they were
    /// read: the count [`Last::sequence`] is taken from.
    pub(super) connections: u64,
    /// Each backend's last connection, in any phase.
    pub(super) last: BTreeMap<SocketAddr, Last>,
}

/// A backend's last connection: how many connections the service had had when it came
/// ([`Observed::connections`]; those after it went elsewhere), and its kernel timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Last {
    pub(super) sequence: u64,
    pub(super) timestamp_ns: u64,
}

/// The events of a window, counted. Monotonic timestamps (`CLOCK_MONOTONIC` ns) mark its
/// edges: an event belongs to the window by when the kernel made it, not by when userspace
/// read it.
#[derive(Clone, Debug, Default)]
pub struct Window {
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    pub(super) services: BTreeMap<(Proto, SocketAddr), Observed>,
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
        if event.dataplane.is_netfilter() {
            observed.netfilter = Some(event.dataplane);
        }
        if event.kind == EventKind::NoDest {
            if phase == Phase::Window {
                observed.no_dest += 1;
            }
            return;
        }
        let Some(backend) = event.backend else {
            return;
        };
        if matches!(event.kind, EventKind::New | EventKind::Reused) {
            observed.connections += 1;
            let last = observed.last.entry(backend).or_insert(Last {
                sequence: 0,
                timestamp_ns: 0,
            });
            last.sequence = observed.connections;
            last.timestamp_ns = last.timestamp_ns.max(event.timestamp_ns);
        }
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

    /// Whether the service at `vip` with these `backends` passes the filters.
    pub(super) fn selects(
        &self,
        proto: Proto,
        vip: SocketAddr,
        backends: &[SocketAddr],
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
            let pod_in = backends.iter().any(|&addr| {
                index
                    .and_then(|index| index.backend_for(proto, addr))
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
