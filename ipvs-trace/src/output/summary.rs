//! The exit summary on stderr: what was shown, per kind and per virtual service, and what was
//! not (lost in the kernel, malformed in transit).
//!
//! It counts the events that were printed (after filters), so it describes the output above it.
//! Ordering is stable (by protocol, VIP, scheduler; backends by address) so runs compare with
//! `diff`.
//!
//! With a Kubernetes source, services and backends whose names are known are keyed by name: the
//! ClusterIP, externalIP and NodePort addresses of one Service port add up under its name, and
//! the addresses follow in parentheses. What is not known stays keyed by address, exactly as
//! without a source, and a line counts the events whose addresses the index did not know.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::events::{model::EventKind, Event, Proto};
use crate::ipvs::Tables;
use crate::kube::Names;

/// A service or backend: by address, or by Kubernetes name when known.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Addr(SocketAddr),
    Named(Arc<str>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(addr) => f.pad(&addr.to_string()),
            Target::Named(name) => f.pad(name),
        }
    }
}

/// A virtual service as the events see it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ServiceKey {
    proto: Proto,
    vip: Target,
    scheduler: Option<Cow<'static, str>>,
}

#[derive(Debug, Default)]
struct ServiceCounts {
    /// New connections per real server, with the addresses a named one was seen at.
    new: BTreeMap<Target, (u64, BTreeSet<SocketAddr>)>,
    /// Scheduling attempts that found no usable real server.
    no_dest: u64,
    /// Addresses of a named service.
    vips: BTreeSet<SocketAddr>,
}

/// Recorded events whose addresses the Kubernetes index did not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Unresolved {
    /// Events with an unknown VIP or backend.
    events: u64,
    service: u64,
    backend: u64,
    /// Unknown clients (clients outside the cluster are expected here).
    client: u64,
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
    /// Decisions the kernel-side filter left out (`None`: counter unreadable).
    pub filtered: Option<u64>,
    /// Records userspace took from the ring, decoded or not.
    pub read: u64,
}

impl Losses {
    /// The `kernel:` line: every decision the probes saw, how many the kernel-side filter left
    /// out, and how the rest (matched) went: read, lost, unreadable. Exact: seen = filtered
    /// out + matched, matched = read + lost + unreadable. `None` when a kernel counter is
    /// unreadable.
    #[must_use]
    pub fn kernel_line(&self) -> Option<String> {
        let (ring_full, unreadable, filtered) = (self.ring_full?, self.unreadable?, self.filtered?);
        let matched = self.read + ring_full + unreadable;
        Some(format!(
            "kernel: seen={} filtered_out={filtered} matched={matched} (read={} lost={ring_full} unreadable={unreadable})",
            matched + filtered,
            self.read,
        ))
    }
}

/// Real servers and their weights per `(protocol, VIP)`, as the IPVS tables have them.
type Configured = HashMap<(Proto, SocketAddr), Vec<(SocketAddr, u32)>>;

/// Aggregates printed events for the exit summary.
#[derive(Debug, Default)]
pub struct Summary {
    kinds: BTreeMap<EventKind, u64>,
    services: BTreeMap<ServiceKey, ServiceCounts>,
    /// `Some` when a Kubernetes source is in use.
    unresolved: Option<Unresolved>,
    /// One line per watched kind, when the names come from live watches.
    kubernetes: Vec<String>,
    /// The `probes:` line: what was attached and what was not asked for.
    probes: Option<String>,
    /// What the IPVS tables filled in, when the probes could not read it (no module BTF).
    tables: Option<String>,
    /// The configured real servers and weights per `(protocol, VIP)`, from the IPVS tables at
    /// the end: each backend line shows its weight, and real servers that received nothing are
    /// listed with `new=0`.
    configured: Option<Configured>,
}

impl Summary {
    /// A summary that also reports how many addresses had no Kubernetes name.
    #[must_use]
    pub fn with_names() -> Summary {
        Summary {
            unresolved: Some(Unresolved::default()),
            ..Summary::default()
        }
    }

    /// Counts one printed event, with the names it was printed with.
    pub fn record(&mut self, event: &Event, names: &Names) {
        *self.kinds.entry(event.kind).or_default() += 1;
        if let Some(unresolved) = &mut self.unresolved {
            let service = names.service.is_none();
            let backend = event.backend.is_some() && names.backend.is_none();
            unresolved.service += u64::from(service);
            unresolved.backend += u64::from(backend);
            unresolved.client += u64::from(names.client.is_none());
            unresolved.events += u64::from(service || backend);
        }
        let tracked = match event.kind {
            EventKind::New => event.backend,
            EventKind::NoDest => None,
            EventKind::Template | EventKind::Reused | EventKind::Expire => return,
        };
        let key = ServiceKey {
            proto: event.proto,
            vip: names.service.map_or(Target::Addr(event.vip), |s| {
                Target::Named(Arc::clone(&s.label))
            }),
            scheduler: event.scheduler.clone(),
        };
        let counts = self.services.entry(key).or_default();
        if names.service.is_some() {
            counts.vips.insert(event.vip);
        }
        match tracked {
            Some(backend) => {
                let target = names
                    .backend
                    .and_then(|b| b.pod.as_ref())
                    .map_or(Target::Addr(backend), |pod| Target::Named(Arc::clone(pod)));
                let by_name = matches!(target, Target::Named(_));
                let entry = counts.new.entry(target).or_default();
                entry.0 += 1;
                if by_name {
                    entry.1.insert(backend);
                }
            }
            None if event.kind == EventKind::NoDest => counts.no_dest += 1,
            // A `new` event without a backend address is not attributable to a real server;
            // it still counts in the per-kind line.
            None => {}
        }
    }

    /// The live watches' state at the end, for the summary: a reader who sees unresolved
    /// events learns here whether the API was reachable.
    pub fn set_probes(&mut self, line: String) {
        self.probes = Some(line);
    }

    pub fn set_kubernetes_health(&mut self, lines: Vec<String>) {
        self.kubernetes = lines;
    }

    /// The configured real servers and weights (a read of the IPVS tables at the end).
    pub fn set_configured(&mut self, tables: &Tables) {
        let configured = tables
            .services
            .iter()
            .filter_map(|svc| {
                let dests = svc.dests.iter().map(|d| (d.addr, d.weight)).collect();
                Some(((svc.proto?, svc.addr?), dests))
            })
            .collect();
        self.configured = Some(configured);
    }

    /// The line of [`crate::ipvs::lookup::LiveLookup::summary_line`].
    pub fn set_tables_fill(&mut self, line: String) {
        self.tables = Some(line);
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
        if let Some(line) = losses.kernel_line() {
            let _ = writeln!(out, "  {line}");
        }
        if let Some(line) = &self.probes {
            let _ = writeln!(out, "  {line}");
        }
        if let Some(u) = &self.unresolved {
            let _ = writeln!(
                out,
                "  unresolved: events={} (service={} backend={})   clients={} (printed raw: not in \
                 the Kubernetes index)",
                u.events, u.service, u.backend, u.client
            );
        }
        for line in &self.kubernetes {
            let _ = writeln!(out, "  kubernetes {line}");
        }
        if let Some(line) = &self.tables {
            let _ = writeln!(out, "  ipvs tables: {line}");
        }
        for (key, counts) in &self.services {
            let scheduler = key.scheduler.as_deref().unwrap_or("-");
            let _ = write!(out, "  {} {} {scheduler}", key.proto, key.vip);
            if !counts.vips.is_empty() {
                let _ = write!(out, "  ({})", joined(&counts.vips));
            }
            out.push('\n');
            let width = counts
                .new
                .keys()
                .map(|target| target.to_string().len())
                .max()
                .unwrap_or(0);
            let configured = self.configured_dests(key, counts);
            let weight_of =
                |addr: &SocketAddr| configured.iter().find(|(a, _)| a == addr).map(|(_, w)| *w);
            let mut shown: BTreeSet<SocketAddr> = BTreeSet::new();
            for (backend, (n, addrs)) in &counts.new {
                let _ = write!(out, "    -> {:<width$}  new={n}", backend.to_string());
                let addrs_of_backend: Vec<SocketAddr> = match backend {
                    Target::Addr(addr) => vec![*addr],
                    Target::Named(_) => addrs.iter().copied().collect(),
                };
                if let Some(weight) = addrs_of_backend.iter().find_map(weight_of) {
                    let _ = write!(out, "  weight={weight}");
                }
                shown.extend(addrs_of_backend);
                if !addrs.is_empty() {
                    let _ = write!(out, "  ({})", joined(addrs));
                }
                out.push('\n');
            }
            // The real servers the tables have that received nothing: the evidence for "why
            // does one pod get everything" is often the pod that got nothing.
            for (addr, weight) in configured.iter().filter(|(a, _)| !shown.contains(a)) {
                let _ = writeln!(
                    out,
                    "    -> {:<width$}  new=0  weight={weight}",
                    addr.to_string()
                );
            }
            if counts.no_dest > 0 {
                let _ = writeln!(out, "    no destination: no_dest={}", counts.no_dest);
            }
        }
        out
    }
}

impl Summary {
    /// The configured real servers of a summary line's service: those of its VIP, or of every
    /// address of a named service (ClusterIP, NodePorts... share their pods), by address.
    fn configured_dests(&self, key: &ServiceKey, counts: &ServiceCounts) -> Vec<(SocketAddr, u32)> {
        let Some(configured) = &self.configured else {
            return Vec::new();
        };
        let vips: Vec<SocketAddr> = match &key.vip {
            Target::Addr(vip) => vec![*vip],
            Target::Named(_) => counts.vips.iter().copied().collect(),
        };
        let mut dests: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for vip in vips {
            for &(addr, weight) in configured.get(&(key.proto, vip)).into_iter().flatten() {
                dests.entry(addr).or_insert(weight);
            }
        }
        dests.into_iter().collect()
    }
}

fn joined(addrs: &BTreeSet<SocketAddr>) -> String {
    let texts: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::sample_events;

    fn new_event(vip: &str, backend: &str, scheduler: &str) -> Event {
        let mut event = sample_events().remove(0);
        event.vip = vip.parse().unwrap();
        event.backend = Some(backend.parse().unwrap());
        event.scheduler = Some(scheduler.to_owned().into());
        event
    }

    #[test]
    fn the_kernel_line_accounts_for_every_decision() {
        let losses = Losses {
            ring_full: Some(3),
            unreadable: Some(1),
            malformed: 0,
            filtered: Some(90),
            read: 6,
        };
        assert_eq!(
            losses.kernel_line().as_deref(),
            Some("kernel: seen=100 filtered_out=90 matched=10 (read=6 lost=3 unreadable=1)")
        );
        let unknown = Losses {
            filtered: None,
            ..losses
        };
        assert_eq!(unknown.kernel_line(), None);
    }

    #[test]
    fn empty_summary() {
        assert_eq!(
            Summary::default().render(&Losses {
                ring_full: Some(0),
                unreadable: Some(0),
                malformed: 0,
                filtered: None,
                read: 0,
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
            let event = new_event("172.31.42.227:80", backends[(i * 2) % 3], "rr");
            summary.record(&event, &Names::NONE);
        }
        let event = new_event("10.245.96.43:32380", "10.245.112.4:8080", "rr");
        summary.record(&event, &Names::NONE);
        let event = new_event("172.31.42.227:50091", "10.245.112.32:50091", "wrr");
        summary.record(&event, &Names::NONE);
        for event in sample_events() {
            summary.record(&event, &Names::NONE);
        }
        assert_eq!(
            summary.render(&Losses {
                ring_full: Some(3),
                unreadable: Some(0),
                malformed: 1,
                filtered: None,
                read: 0,
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
        summary.record(&event, &Names::NONE);
        let text = summary.render(&Losses {
            ring_full: None,
            unreadable: Some(2),
            malformed: 0,
            filtered: None,
            read: 0,
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

    #[test]
    fn keyed_by_names_where_known() {
        let index = crate::output::tests::seed_index();
        let mut summary = Summary::with_names();
        let mut record = |vip: &str, backend: &str| {
            let event = new_event(vip, backend, "rr");
            summary.record(&event, &Names::resolve(&index, &event));
        };
        // One Service port reached at its ClusterIP, external IP and NodePort.
        record("172.31.42.227:80", "10.245.112.32:8080");
        record("10.245.11.252:80", "10.245.112.47:8080");
        record("10.245.96.43:32380", "10.245.112.32:8080");
        record("172.31.42.227:50091", "10.245.113.15:50091");
        // Addresses the snapshot does not know stay raw.
        record("172.31.9.9:80", "10.245.112.32:8080");
        record("172.31.42.227:80", "10.245.120.1:8080");
        for event in sample_events() {
            summary.record(&event, &Names::resolve(&index, &event));
        }
        let pod = "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d";
        assert_eq!(
            summary.render(&Losses {
                ring_full: Some(0),
                unreadable: Some(0),
                malformed: 0,
                filtered: None,
                read: 0,
            }),
            format!(
                "\
ipvs-trace summary
  events: new=8 template=1 reused=1 no_dest=1
  lost: 0 (ring buffer full)   malformed: 0
  unresolved: events=4 (service=3 backend=2)   clients=1 (printed raw: not in the Kubernetes index)
  TCP 172.31.9.9:80 rr
    -> {pod}-dgzsm  new=1  (10.245.112.32:8080)
  TCP 172.31.42.227:443 rr
    no destination: no_dest=1
  TCP ratel/vpaas-demo-prod:grpc rr  (172.31.42.227:50091)
    -> {pod}-q9wfn  new=1  (10.245.113.15:50091)
  TCP ratel/vpaas-demo-prod:http -  (172.31.42.227:80)
    -> {pod}-dgzsm  new=1  (10.245.112.32:8080)
  TCP ratel/vpaas-demo-prod:http rr  (10.245.11.252:80, 10.245.96.43:32380, 172.31.42.227:80)
    -> 10.245.120.1:8080                                                   new=1
    -> {pod}-dgzsm  new=3  (10.245.112.32:8080)
    -> {pod}-x7k2p  new=1  (10.245.112.47:8080)
"
            )
        );
    }

    #[test]
    fn configured_weights_and_backends_that_got_nothing() {
        let mut summary = Summary::default();
        for _ in 0..2 {
            let event = new_event("172.31.0.10:80", "10.245.1.1:8080", "wrr");
            summary.record(&event, &Names::NONE);
        }
        // A backend the tables no longer have (removed before the end) shows without weight.
        let event = new_event("172.31.0.10:80", "10.245.1.9:8080", "wrr");
        summary.record(&event, &Names::NONE);
        summary.set_configured(&crate::ipvs::lookup::fixtures::tables());
        let text = summary.render(&Losses::default());
        assert!(
            text.ends_with(
                "\
  TCP 172.31.0.10:80 wrr
    -> 10.245.1.1:8080  new=2  weight=3
    -> 10.245.1.9:8080  new=1
    -> 10.245.1.2:8080  new=0  weight=0
"
            ),
            "{text}"
        );
    }
}
