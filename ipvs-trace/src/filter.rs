//! Which events to show: `--vip`, `--backend`, `--client`, `--proto`, `--event`.
//!
//! Applied in userspace after decoding. The kernel side already keeps only IPVS decisions (a
//! handful per connection), so filtering there would save little and would make every filter a
//! verifier concern.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::events::{model::EventKind, Event, Proto};

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

/// The conjunction of the user's filters; an absent filter matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub vip: Option<AddrMatch>,
    pub backend: Option<AddrMatch>,
    pub client: Option<IpAddr>,
    pub proto: Option<Proto>,
    /// Kinds to show; empty means all.
    pub kinds: Vec<EventKind>,
}

impl Filter {
    #[must_use]
    pub fn matches(&self, event: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.proto.is_none_or(|proto| proto == event.proto)
            && self.vip.is_none_or(|vip| vip.matches(event.vip))
            && self.client.is_none_or(|ip| ip == event.client.ip())
            // An event without a backend (`no_dest`) cannot match a backend filter.
            && self
                .backend
                .is_none_or(|want| event.backend.is_some_and(|addr| want.matches(addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::decode::{
        decode,
        tests::{raw_new, record_bytes},
    };

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
        assert!(Filter::default().matches(&event()));
    }

    #[test]
    fn vip_filter_matches_ip_and_optional_port() {
        let ev = event();
        assert!(filter(|f| f.vip = "172.31.42.227".parse().ok()).matches(&ev));
        assert!(filter(|f| f.vip = "172.31.42.227:80".parse().ok()).matches(&ev));
        assert!(!filter(|f| f.vip = "172.31.42.227:443".parse().ok()).matches(&ev));
        assert!(!filter(|f| f.vip = "172.31.42.228".parse().ok()).matches(&ev));
        // The VIP filter looks at the VIP only, not at the backend.
        assert!(!filter(|f| f.vip = "10.245.112.32".parse().ok()).matches(&ev));
    }

    #[test]
    fn backend_filter_needs_a_backend() {
        let mut ev = event();
        let f = filter(|f| f.backend = "10.245.112.32:8080".parse().ok());
        assert!(f.matches(&ev));
        assert!(!filter(|f| f.backend = "10.245.112.32:80".parse().ok()).matches(&ev));
        ev.backend = None;
        assert!(!f.matches(&ev), "no_dest has no backend to match");
    }

    #[test]
    fn client_filter_ignores_the_port() {
        let ev = event();
        assert!(filter(|f| f.client = "10.245.97.12".parse().ok()).matches(&ev));
        assert!(!filter(|f| f.client = "10.245.97.13".parse().ok()).matches(&ev));
    }

    #[test]
    fn proto_and_kind_filters() {
        let ev = event();
        assert!(filter(|f| f.proto = Some(Proto::Tcp)).matches(&ev));
        assert!(!filter(|f| f.proto = Some(Proto::Udp)).matches(&ev));
        assert!(filter(|f| f.kinds = vec![EventKind::Reused, EventKind::New]).matches(&ev));
        assert!(!filter(|f| f.kinds = vec![EventKind::NoDest]).matches(&ev));
    }

    #[test]
    fn filters_combine_with_and() {
        let ev = event();
        let both = filter(|f| {
            f.proto = Some(Proto::Tcp);
            f.client = "10.245.97.99".parse().ok();
        });
        assert!(!both.matches(&ev), "right proto, wrong client");
        let both = filter(|f| {
            f.kinds = vec![EventKind::New];
            f.proto = Some(Proto::Udp);
        });
        assert!(!both.matches(&ev), "right kind, wrong proto");
    }
}
