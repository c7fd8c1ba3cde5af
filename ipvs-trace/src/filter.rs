//! Which events to show: `--vip`, `--backend`, `--client`, `--proto`, `--event`, and by
//! Kubernetes name `--namespace`, `--service`, `--pod`.
//!
//! Name filters look at the names the index resolved for the event: an event whose addresses
//! are not (yet) known by name does not match them.
//!
//! Applied in userspace after decoding, and in part before that by the probes themselves
//! ([`Filter::kernel`]: the addresses, the protocol and the kinds), so that a trace of one
//! Service on a busy node does not pay a ring record and a decode for every other decision.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use std::collections::BTreeSet;

use ipvs_trace_common::filter::{
    test, FilterAddr, NamedKey, AF_INET, AF_INET6, NAMED_MAX, ROLE_BACKEND, ROLE_CLIENT,
};
use ipvs_trace_common::KernelFilter;

use crate::events::{model::EventKind, Event, Proto};
use crate::kube::index::{Index, NamedAddresses};
use crate::kube::{namespace_of, Names};

/// An address to match: an IP, optionally with a port (`10.0.0.1`, `10.0.0.1:80`, `fd00::1`,
/// `[fd00::1]:80`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrMatch {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl AddrMatch {
    #[must_use]
    pub fn matches(&self, addr: SocketAddr) -> bool {
        addr.ip() == self.ip && self.port.is_none_or(|port| port == addr.port())
    }
}

impl FromStr for AddrMatch {
    type Err = String;

    fn from_str(text: &str) -> Result<AddrMatch, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(AddrMatch { ip, port: None });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(AddrMatch {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        Err(format!(
            "{text:?} is not IP or IP:PORT (e.g. 172.31.42.227, 172.31.42.227:80, [fd00::1]:80)"
        ))
    }
}

impl fmt::Display for AddrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

/// The event kinds `--event` accepts. `expire` is a record kind of the format but no probe emits
/// it yet, so offering it would promise events that never come.
pub const SELECTABLE_KINDS: [EventKind; 4] = [
    EventKind::New,
    EventKind::Template,
    EventKind::Reused,
    EventKind::NoDest,
];

/// Parses one `--event` name.
pub fn parse_event_kind(text: &str) -> Result<EventKind, String> {
    let name = text.trim();
    SELECTABLE_KINDS
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<_> = SELECTABLE_KINDS.iter().map(|k| k.as_str()).collect();
            format!(
                "unknown event {name:?}: expected one of {}",
                names.join(", ")
            )
        })
}

/// `--service NAMESPACE/NAME[:PORT]`: a Service, or one named port of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceMatch {
    /// As given: `namespace/name` or `namespace/name:port-name`.
    text: String,
    with_port: bool,
}

impl ServiceMatch {
    /// As given: `namespace/name` or `namespace/name:port-name`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when a port name was given (`namespace/name:port-name`).
    #[must_use]
    pub fn has_port(&self) -> bool {
        self.with_port
    }

    /// Matches the Service's `namespace/name`, or its `namespace/name:port` label when a port
    /// was given.
    #[must_use]
    pub fn matches(&self, service: &crate::kube::ServiceName) -> bool {
        let have = if self.with_port {
            &*service.label
        } else {
            &*service.service
        };
        have == self.text
    }
}

impl FromStr for ServiceMatch {
    type Err = String;

    fn from_str(text: &str) -> Result<ServiceMatch, String> {
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        parse_qualified(name)
            .filter(|()| port.is_none_or(|p| !p.is_empty() && !p.contains(':')))
            .ok_or_else(|| {
                format!(
                    "{text:?} is not NAMESPACE/NAME or NAMESPACE/NAME:PORT-NAME \
                     (e.g. ratel/vpaas-demo-prod, ratel/vpaas-demo-prod:http)"
                )
            })?;
        Ok(ServiceMatch {
            text: text.to_owned(),
            with_port: port.is_some(),
        })
    }
}

/// Parses `--pod NAMESPACE/NAME`.
pub fn parse_pod(text: &str) -> Result<String, String> {
    parse_qualified(text)
        .filter(|()| !text.contains(':'))
        .map(|()| text.to_owned())
        .ok_or_else(|| format!("{text:?} is not NAMESPACE/NAME (e.g. ratel/web-7d9f8-abcde)"))
}

/// Parses `--namespace NAMESPACE`.
pub fn parse_namespace(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains('/') || text.contains(':') {
        return Err(format!("{text:?} is not a namespace name (e.g. ratel)"));
    }
    Ok(text.to_owned())
}

/// `Some(())` when `text` is `namespace/name` with both parts present.
fn parse_qualified(text: &str) -> Option<()> {
    let (namespace, name) = text.split_once('/')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains('/')).then_some(())
}

/// The conjunction of the user's filters; an absent filter matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub vip: Option<AddrMatch>,
    pub backend: Option<AddrMatch>,
    pub client: Option<IpAddr>,
    pub proto: Option<Proto>,
    /// Kinds to show; empty means all.
    pub kinds: Vec<EventKind>,
    /// The Service, the backend pod or the client pod is in this namespace.
    pub namespace: Option<String>,
    pub service: Option<ServiceMatch>,
    /// The backend pod or the client pod (`namespace/name`).
    pub pod: Option<String>,
}

impl Filter {
    /// The part of the filter the probes apply before they reserve a record: `--event`,
    /// `--proto`, `--vip`, `--backend`, `--client`. Never stricter than [`Filter::matches`],
    /// which userspace still applies with the name filters.
    #[must_use]
    pub fn kernel(&self) -> KernelFilter {
        let mut kernel = KernelFilter::EVERYTHING;
        if !self.kinds.is_empty() {
            kernel.kinds = self
                .kinds
                .iter()
                .fold(0, |bits, kind| bits | 1 << *kind as u32);
        }
        if let Some(proto) = self.proto {
            kernel.tests |= test::PROTO;
            kernel.proto = proto.number();
        }
        if let Some(vip) = self.vip {
            kernel.tests |= test::VIP;
            kernel.vip = filter_addr(vip.ip, vip.port);
            if vip.port.is_some() {
                kernel.tests |= test::VIP_PORT;
            }
        }
        if let Some(backend) = self.backend {
            kernel.tests |= test::BACKEND;
            kernel.backend = filter_addr(backend.ip, backend.port);
            if backend.port.is_some() {
                kernel.tests |= test::BACKEND_PORT;
            }
        }
        if let Some(client) = self.client {
            kernel.tests |= test::CLIENT;
            kernel.client = filter_addr(client, None);
        }
        kernel
    }

    #[must_use]
    pub fn matches(&self, event: &Event, names: &Names) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.proto.is_none_or(|proto| proto == event.proto)
            && self.vip.is_none_or(|vip| vip.matches(event.vip))
            && self.client.is_none_or(|ip| ip == event.client.ip())
            // An event without a backend (`no_dest`) cannot match a backend filter.
            && self
                .backend
                .is_none_or(|want| event.backend.is_some_and(|addr| want.matches(addr)))
            && self.matches_names(names)
    }

    /// True when a filter needs Kubernetes names.
    #[must_use]
    pub fn uses_names(&self) -> bool {
        self.namespace.is_some() || self.service.is_some() || self.pod.is_some()
    }

    /// The addresses the name filters can match in `index`, for the kernel-side filter; `None`
    /// without a name filter. A superset of what [`Filter::matches`] lets through: the Services
    /// `--service` or `--namespace` names, the pods `--pod` or `--namespace` names, each
    /// whatever the other name filters say.
    #[must_use]
    pub fn named_addresses(&self, index: &Index) -> Option<NamedAddresses> {
        if !self.uses_names() {
            return None;
        }
        let in_namespace = |name: &str| {
            self.namespace
                .as_deref()
                .is_some_and(|ns| namespace_of(name) == Some(ns))
        };
        Some(index.named_addresses(
            |service| {
                self.service
                    .as_ref()
                    .is_some_and(|want| want.matches(service))
                    || in_namespace(&service.service)
            },
            |pod| self.pod.as_deref() == Some(pod) || in_namespace(pod),
        ))
    }

    fn matches_names(&self, names: &Names) -> bool {
        let service = names.service;
        let pods = [names.backend_pod(), names.client_pod()];
        self.service
            .as_ref()
            .is_none_or(|want| service.is_some_and(|have| want.matches(have)))
            && self
                .pod
                .as_deref()
                .is_none_or(|want| pods.contains(&Some(want)))
            && self.namespace.as_deref().is_none_or(|want| {
                service
                    .map(|s| &*s.service)
                    .into_iter()
                    .chain(pods.into_iter().flatten())
                    .any(|name| namespace_of(name) == Some(want))
            })
    }
}

/// `ip` as the kernel's `union nf_inet_addr` holds it, read as native 32-bit words, and its
/// family.
fn kernel_words(ip: IpAddr) -> ([u32; 4], u16) {
    match ip {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], AF_INET),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([word(0), word(4), word(8), word(12)], AF_INET6)
        }
    }
}

fn filter_addr(ip: IpAddr, port: Option<u16>) -> FilterAddr {
    let (addr, af) = kernel_words(ip);
    FilterAddr {
        addr,
        af,
        port: port.unwrap_or(0),
    }
}

/// The name filters' addresses as the kernel's maps hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedKeys {
    /// For `NAMED_VIPS`: VIP:port, and NodePorts with no address.
    pub vips: BTreeSet<NamedKey>,
    /// For `NAMED_IPS`: pod IPs as backend and as client.
    pub ips: BTreeSet<NamedKey>,
}

impl NamedKeys {
    #[must_use]
    pub fn from_addresses(named: &NamedAddresses) -> NamedKeys {
        let key = |ip: IpAddr, port: u16| {
            let (addr, af) = kernel_words(ip);
            NamedKey { addr, af, port }
        };
        let node_port = |port: u16| NamedKey {
            addr: [0; 4],
            af: 0,
            port,
        };
        NamedKeys {
            vips: named
                .vips
                .iter()
                .map(|vip| key(vip.ip(), vip.port()))
                .chain(named.node_ports.iter().map(|&port| node_port(port)))
                .collect(),
            ips: named
                .backends
                .iter()
                .map(|&ip| key(ip, ROLE_BACKEND))
                .chain(named.clients.iter().map(|&ip| key(ip, ROLE_CLIENT)))
                .collect(),
        }
    }

    /// Whether the kernel's maps can hold them ([`NAMED_MAX`] entries each).
    #[must_use]
    pub fn fit(&self) -> bool {
        self.vips.len() <= NAMED_MAX as usize && self.ips.len() <= NAMED_MAX as usize
    }
}

#[cfg(test)]
mod tests {
    use ipvs_trace_common::filter::test as kernel_test;

    #[test]
    fn the_kernel_part_has_the_addresses_as_the_kernel_holds_them() {
        let filter = Filter {
            vip: Some("172.31.0.10:80".parse().unwrap()),
            backend: Some("fd00::1".parse().unwrap()),
            client: Some("10.0.0.1".parse().unwrap()),
            proto: Some(Proto::Tcp),
            kinds: vec![EventKind::New, EventKind::NoDest],
            ..Filter::default()
        };
        let kernel = filter.kernel();
        assert_eq!(kernel.kinds, 1 << 1 | 1 << 4);
        assert!(kernel.wants_kind(EventKind::New as u32));
        assert!(!kernel.wants_kind(EventKind::Reused as u32));
        assert_eq!(
            kernel.tests,
            kernel_test::VIP
                | kernel_test::VIP_PORT
                | kernel_test::BACKEND
                | kernel_test::CLIENT
                | kernel_test::PROTO
        );
        assert_eq!(kernel.proto, 6);
        // The words as a load of the address's bytes gives them on this machine.
        assert_eq!(kernel.vip.addr[0], u32::from_ne_bytes([172, 31, 0, 10]));
        assert_eq!((kernel.vip.af, kernel.vip.port), (2, 80));
        assert_eq!(kernel.backend.addr[0], u32::from_ne_bytes([0xfd, 0, 0, 0]));
        assert_eq!(kernel.backend.addr[3], u32::from_ne_bytes([0, 0, 0, 1]));
        assert_eq!((kernel.backend.af, kernel.backend.port), (10, 0));
        assert_eq!(
            kernel.client.addr,
            [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0]
        );
    }

    #[test]
    fn named_keys_are_the_addresses_as_the_kernel_holds_them() {
        let named = NamedAddresses {
            vips: ["172.31.0.20:80".parse().unwrap()].into(),
            node_ports: [32380].into(),
            backends: ["10.245.112.40".parse().unwrap()].into(),
            clients: ["fd00::7".parse().unwrap()].into(),
        };
        let keys = NamedKeys::from_addresses(&named);
        let v4 = |a: [u8; 4]| [u32::from_ne_bytes(a), 0, 0, 0];
        assert_eq!(
            keys.vips,
            [
                NamedKey {
                    addr: v4([172, 31, 0, 20]),
                    af: AF_INET,
                    port: 80
                },
                NamedKey {
                    addr: [0; 4],
                    af: 0,
                    port: 32380
                },
            ]
            .into()
        );
        let v6 = kernel_words("fd00::7".parse().unwrap()).0;
        assert_eq!(
            keys.ips,
            [
                NamedKey {
                    addr: v4([10, 245, 112, 40]),
                    af: AF_INET,
                    port: ROLE_BACKEND
                },
                NamedKey {
                    addr: v6,
                    af: AF_INET6,
                    port: ROLE_CLIENT
                },
            ]
            .into()
        );
        assert!(keys.fit());
    }

    #[test]
    fn name_filters_turn_on_the_kernel_name_test_only_once_their_addresses_are_known() {
        let filter = Filter {
            namespace: Some("ratel".into()),
            ..Filter::default()
        };
        // The base filter leaves the name test to the tracer, which sets it with the maps.
        assert_eq!(filter.kernel().tests & kernel_test::NAMES, 0);
        assert!(filter.named_addresses(&Index::new()).is_some());
        assert!(Filter::default().named_addresses(&Index::new()).is_none());
    }

    #[test]
    fn without_filters_the_kernel_delivers_everything() {
        assert_eq!(Filter::default().kernel(), KernelFilter::EVERYTHING);
        // Name filters stay in userspace.
        let named = Filter {
            namespace: Some("ratel".into()),
            ..Filter::default()
        };
        assert_eq!(named.kernel(), KernelFilter::EVERYTHING);
    }

    use super::*;
    use crate::events::decode::{
        decode,
        tests::{raw_new, record_bytes},
    };
    use crate::kube::Index;

    fn event() -> Event {
        // client 10.245.97.12:51234, vip 172.31.42.227:80 TCP, backend 10.245.112.32:8080
        decode(&record_bytes(&raw_new())).expect("valid record")
    }

    fn filter(f: impl FnOnce(&mut Filter)) -> Filter {
        let mut filter = Filter::default();
        f(&mut filter);
        filter
    }

    #[test]
    fn parses_addresses_with_and_without_port() {
        assert_eq!(
            "172.31.42.227".parse(),
            Ok(AddrMatch {
                ip: "172.31.42.227".parse().unwrap(),
                port: None
            })
        );
        assert_eq!(
            "172.31.42.227:80".parse(),
            Ok(AddrMatch {
                ip: "172.31.42.227".parse().unwrap(),
                port: Some(80)
            })
        );
        assert_eq!(
            "fd00::1".parse(),
            Ok(AddrMatch {
                ip: "fd00::1".parse().unwrap(),
                port: None
            })
        );
        assert_eq!(
            "[fd00::1]:443".parse(),
            Ok(AddrMatch {
                ip: "fd00::1".parse().unwrap(),
                port: Some(443)
            })
        );
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4:",
            "1.2.3.4:70000",
            "fd00::1:80:x",
            "host:80",
        ] {
            assert!(bad.parse::<AddrMatch>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "[fd00::1]:443".parse::<AddrMatch>().unwrap().to_string(),
            "[fd00::1]:443"
        );
    }

    #[test]
    fn parses_event_kinds() {
        assert_eq!(parse_event_kind("new"), Ok(EventKind::New));
        assert_eq!(parse_event_kind(" NO_DEST"), Ok(EventKind::NoDest));
        assert_eq!(
            parse_event_kind("expire"),
            Err("unknown event \"expire\": expected one of new, template, reused, no_dest".into())
        );
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(Filter::default().matches(&event(), &Names::NONE));
    }

    #[test]
    fn vip_filter_matches_ip_and_optional_port() {
        let ev = event();
        assert!(filter(|f| f.vip = "172.31.42.227".parse().ok()).matches(&ev, &Names::NONE));
        assert!(filter(|f| f.vip = "172.31.42.227:80".parse().ok()).matches(&ev, &Names::NONE));
        assert!(!filter(|f| f.vip = "172.31.42.227:443".parse().ok()).matches(&ev, &Names::NONE));
        assert!(!filter(|f| f.vip = "172.31.42.228".parse().ok()).matches(&ev, &Names::NONE));
        // The VIP filter looks at the VIP only, not at the backend.
        assert!(!filter(|f| f.vip = "10.245.112.32".parse().ok()).matches(&ev, &Names::NONE));
    }

    #[test]
    fn backend_filter_needs_a_backend() {
        let mut ev = event();
        let f = filter(|f| f.backend = "10.245.112.32:8080".parse().ok());
        assert!(f.matches(&ev, &Names::NONE));
        assert!(!filter(|f| f.backend = "10.245.112.32:80".parse().ok()).matches(&ev, &Names::NONE));
        ev.backend = None;
        assert!(
            !f.matches(&ev, &Names::NONE),
            "no_dest has no backend to match"
        );
    }

    #[test]
    fn client_filter_ignores_the_port() {
        let ev = event();
        assert!(filter(|f| f.client = "10.245.97.12".parse().ok()).matches(&ev, &Names::NONE));
        assert!(!filter(|f| f.client = "10.245.97.13".parse().ok()).matches(&ev, &Names::NONE));
    }

    #[test]
    fn proto_and_kind_filters() {
        let ev = event();
        assert!(filter(|f| f.proto = Some(Proto::Tcp)).matches(&ev, &Names::NONE));
        assert!(!filter(|f| f.proto = Some(Proto::Udp)).matches(&ev, &Names::NONE));
        assert!(
            filter(|f| f.kinds = vec![EventKind::Reused, EventKind::New])
                .matches(&ev, &Names::NONE)
        );
        assert!(!filter(|f| f.kinds = vec![EventKind::NoDest]).matches(&ev, &Names::NONE));
    }

    #[test]
    fn filters_combine_with_and() {
        let ev = event();
        let both = filter(|f| {
            f.proto = Some(Proto::Tcp);
            f.client = "10.245.97.99".parse().ok();
        });
        assert!(
            !both.matches(&ev, &Names::NONE),
            "right proto, wrong client"
        );
        let both = filter(|f| {
            f.kinds = vec![EventKind::New];
            f.proto = Some(Proto::Udp);
        });
        assert!(!both.matches(&ev, &Names::NONE), "right kind, wrong proto");
    }

    /// The seed event and the seed snapshot's index, which names all three of its addresses.
    fn named_event() -> (Event, Index) {
        let ev = event();
        let index = crate::output::tests::seed_index();
        let names = Names::resolve(&index, &ev);
        assert!(names.service.is_some() && names.backend.is_some() && names.client.is_some());
        (ev, index)
    }

    #[test]
    fn service_filter_by_service_or_named_port() {
        let (ev, index) = named_event();
        let names = Names::resolve(&index, &ev);
        for (want, expected) in [
            ("ratel/vpaas-demo-prod", true),
            ("ratel/vpaas-demo-prod:http", true),
            ("ratel/vpaas-demo-prod:grpc", false),
            ("ratel/vpaas-demo", false),
            ("kube-system/vpaas-demo-prod", false),
        ] {
            let f = filter(|f| f.service = Some(want.parse().unwrap()));
            assert_eq!(f.matches(&ev, &names), expected, "{want}");
            assert!(
                !f.matches(&ev, &Names::NONE),
                "unknown names never match {want}"
            );
        }
    }

    #[test]
    fn pod_filter_matches_backend_or_client_pod() {
        let (ev, index) = named_event();
        let names = Names::resolve(&index, &ev);
        for (want, expected) in [
            (
                "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm",
                true,
            ),
            ("ratel/vpaas-demo-client-6f8b9c7d5-kq2lm", true),
            (
                "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-x7k2p",
                false,
            ),
        ] {
            let f = filter(|f| f.pod = Some(parse_pod(want).unwrap()));
            assert_eq!(f.matches(&ev, &names), expected, "{want}");
        }
    }

    #[test]
    fn namespace_filter_matches_any_named_part() {
        let (ev, index) = named_event();
        let mut names = Names::resolve(&index, &ev);
        let ratel = filter(|f| f.namespace = Some("ratel".into()));
        assert!(ratel.matches(&ev, &names));
        assert!(!filter(|f| f.namespace = Some("kube-system".into())).matches(&ev, &names));
        // The client pod alone is enough.
        names.service = None;
        names.backend = None;
        assert!(ratel.matches(&ev, &names));
        names.client = None;
        assert!(!ratel.matches(&ev, &names));
        assert!(ratel.uses_names() && !Filter::default().uses_names());
    }

    #[test]
    fn name_filters_refuse_malformed_names() {
        for bad in [
            "",
            "web",
            "/web",
            "ratel/",
            "a/b/c",
            "ratel/web:",
            "ratel/web:a:b",
        ] {
            assert!(bad.parse::<ServiceMatch>().is_err(), "{bad:?} accepted");
        }
        for bad in ["", "web", "ratel/", "a/b/c", "ratel/web:http"] {
            assert!(parse_pod(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_namespace("ratel/web").is_err());
        assert_eq!(parse_namespace("ratel"), Ok("ratel".into()));
    }
}
