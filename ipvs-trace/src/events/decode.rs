//! Ring-buffer record → [`Event`], checked.
//!
//! The bytes come from another program (the eBPF side, possibly of another build): every
//! assumption is checked and a record that breaks one is reported as a [`DecodeError`], which the
//! reader counts as malformed. Nothing here can panic on any input.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipvs_trace_common::{
    event::{valid, DATAPLANE_IPVS, DATAPLANE_NETFILTER},
    ConnEvent, EventKind,
};

use super::model::{Dataplane, DestCounters, Event, FwdMethod, Proto};

/// Size of one record in the ring buffer.
pub const RECORD_LEN: usize = size_of::<ConnEvent>();

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record is {0} bytes, expected {RECORD_LEN}: the eBPF programs and this binary disagree on the format")]
    Length(usize),
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown address family {0} (expected 2 for IPv4 or 10 for IPv6)")]
    AddressFamily(u16),
    #[error("unknown dataplane {0} (expected 0 for IPVS or 1 for netfilter)")]
    Dataplane(u32),
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() != RECORD_LEN {
        return Err(DecodeError::Length(bytes.len()));
    }
    // SAFETY: the length is exactly that of `ConnEvent`, which is `#[repr(C)]` plain data made of
    // integers and byte arrays (any bit pattern is valid); `read_unaligned` makes no alignment
    // assumption about the ring buffer's memory.
    let raw: ConnEvent = unsafe { bytes.as_ptr().cast::<ConnEvent>().read_unaligned() };
    from_raw(&raw)
}

/// Checks and converts a raw record.
pub fn from_raw(raw: &ConnEvent) -> Result<Event, DecodeError> {
    let kind = EventKind::from_u32(raw.header.kind).ok_or(DecodeError::Kind(raw.header.kind))?;
    let has = |bit: u32| raw.valid & bit != 0;
    let netfilter = match raw.header.dataplane {
        DATAPLANE_IPVS => false,
        DATAPLANE_NETFILTER => true,
        other => return Err(DecodeError::Dataplane(other)),
    };

    let client_port = if has(valid::CLIENT_PORT) {
        raw.client_port
    } else {
        0
    };
    let client = socket_addr(raw.af, &raw.client_addr, client_port)?;
    let vip = socket_addr(raw.af, &raw.vip_addr, raw.vip_port)?;
    let backend = if has(valid::BACKEND) {
        Some(socket_addr(raw.daf, &raw.backend_addr, raw.backend_port)?)
    } else {
        None
    };
    // Without a connection entry (`no_dest`) there are no entry flags to take a method from,
    // and netfilter has none at all.
    let conn = (raw.conn != 0).then_some(raw.conn);
    let fwd = conn
        .filter(|_| !netfilter)
        .map(|_| FwdMethod::from_flags(raw.flags));
    let dest = has(valid::DEST).then_some(DestCounters {
        weight: raw.weight,
        active_conns: Some(raw.active_conns),
        inactive_conns: Some(raw.inactive_conns),
    });
    let scheduler = if netfilter {
        // kube-proxy's netfilter modes pick an endpoint at random (`numgen random`,
        // `statistic --mode random`): no other rule leads to a DNAT of a Service.
        Some(Cow::Borrowed(RANDOM))
    } else if has(valid::SCHEDULER) {
        scheduler_name(&raw.scheduler)
    } else {
        None
    };
    let dataplane = if netfilter {
        // Provisional: which of the two modes is told from the rules (`classify`).
        Dataplane::Nftables
    } else {
        Dataplane::Ipvs
    };

    Ok(Event {
        kind,
        dataplane,
        timestamp_ns: raw.header.timestamp_ns,
        cpu: raw.header.cpu,
        netns: has(valid::NETNS).then_some(raw.header.netns),
        conn,
        proto: Proto::from_number(raw.protocol),
        client,
        vip,
        backend,
        fwd,
        flags: raw.flags,
        state: raw.state,
        scheduler,
        dest,
    })
}

/// An address from a raw `union nf_inet_addr` (IPv4 in the first four bytes).
fn socket_addr(af: u16, addr: &[u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = match af {
        AF_INET => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(*addr)),
        other => return Err(DecodeError::AddressFamily(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The `scheduler` of a netfilter decision.
pub const RANDOM: &str = "random";

/// The schedulers Linux ships (`net/netfilter/ipvs/ip_vs_*.c`), which every event names one of:
/// decoded to these static strings, without an allocation.
const KNOWN_SCHEDULERS: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// The NUL-padded name; the kernel's names are ASCII, anything else is shown lossily rather than
/// rejected (a scheduler module name is not worth losing the event over).
fn scheduler_name(buf: &[u8]) -> Option<Cow<'static, str>> {
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = &buf[..len];
    if name.is_empty() {
        return None;
    }
    Some(
        match KNOWN_SCHEDULERS
            .iter()
            .find(|known| known.as_bytes() == name)
        {
            Some(known) => Cow::Borrowed(*known),
            None => Cow::Owned(String::from_utf8_lossy(name).into_owned()),
        },
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bytes the eBPF side would write for `event`.
    pub(crate) fn record_bytes(event: &ConnEvent) -> Vec<u8> {
        // SAFETY: `ConnEvent` is `#[repr(C)]` with explicit padding fields (no uninitialised
        // bytes), so viewing it as bytes reads only initialised memory.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(event).cast::<u8>(), RECORD_LEN) }
            .to_vec()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[a, b, c, d]);
        addr
    }

    /// A `new` event as the probe on `ip_vs_conn_new` fills it for the seed scenario.
    pub(crate) fn raw_new() -> ConnEvent {
        let mut raw = ConnEvent::zeroed();
        raw.header.kind = EventKind::New as u32;
        raw.header.cpu = 1;
        raw.header.timestamp_ns = 5_000_000_123;
        raw.header.netns = 4_026_531_840;
        raw.conn = 0xffff_8f3a_1234_5600;
        raw.client_addr = v4(10, 245, 97, 12);
        raw.vip_addr = v4(172, 31, 42, 227);
        raw.backend_addr = v4(10, 245, 112, 32);
        raw.client_port = 51234;
        raw.vip_port = 80;
        raw.backend_port = 8080;
        raw.af = AF_INET;
        raw.daf = AF_INET;
        raw.protocol = 6;
        raw.flags = 0x0100; // IP_VS_CONN_F_HASHED, Masq
        raw.state = 1;
        raw.weight = 1;
        raw.active_conns = 1;
        raw.inactive_conns = 0;
        raw.scheduler[..2].copy_from_slice(b"rr");
        raw.valid =
            valid::DEST | valid::SCHEDULER | valid::NETNS | valid::BACKEND | valid::CLIENT_PORT;
        raw
    }

    #[test]
    fn decodes_a_new_ipv4_event() {
        let event = decode(&record_bytes(&raw_new())).expect("valid record");
        assert_eq!(
            event,
            Event {
                kind: EventKind::New,
                dataplane: Dataplane::Ipvs,
                timestamp_ns: 5_000_000_123,
                cpu: 1,
                netns: Some(4_026_531_840),
                conn: Some(0xffff_8f3a_1234_5600),
                proto: Proto::Tcp,
                client: "10.245.97.12:51234".parse().unwrap(),
                vip: "172.31.42.227:80".parse().unwrap(),
                backend: Some("10.245.112.32:8080".parse().unwrap()),
                fwd: Some(FwdMethod::Masq),
                flags: 0x0100,
                state: 1,
                scheduler: Some("rr".into()),
                dest: Some(DestCounters {
                    weight: 1,
                    active_conns: Some(1),
                    inactive_conns: Some(0)
                }),
            }
        );
    }

    #[test]
    fn decodes_ipv6_from_all_sixteen_bytes() {
        let mut raw = raw_new();
        let client: Ipv6Addr = "fd00::c1".parse().unwrap();
        let vip: Ipv6Addr = "fd00:42::e3".parse().unwrap();
        let backend: Ipv6Addr = "fd00:245::20".parse().unwrap();
        raw.af = AF_INET6;
        raw.daf = AF_INET6;
        raw.client_addr = client.octets();
        raw.vip_addr = vip.octets();
        raw.backend_addr = backend.octets();
        let event = decode(&record_bytes(&raw)).expect("valid record");
        assert_eq!(event.client, "[fd00::c1]:51234".parse().unwrap());
        assert_eq!(event.vip, "[fd00:42::e3]:80".parse().unwrap());
        assert_eq!(event.backend, Some("[fd00:245::20]:8080".parse().unwrap()));
    }

    #[test]
    fn backend_family_comes_from_daf() {
        // An IPv6 service tunnelled to an IPv4 real server.
        let mut raw = raw_new();
        raw.af = AF_INET6;
        raw.client_addr = "fd00::c1".parse::<Ipv6Addr>().unwrap().octets();
        raw.vip_addr = "fd00::e3".parse::<Ipv6Addr>().unwrap().octets();
        raw.flags = 2;
        let event = decode(&record_bytes(&raw)).expect("valid record");
        assert_eq!(event.backend, Some("10.245.112.32:8080".parse().unwrap()));
        assert_eq!(event.fwd, Some(FwdMethod::Tunnel));
    }

    #[test]
    fn optional_parts_follow_the_valid_bits() {
        let mut raw = raw_new();
        raw.valid = valid::BACKEND;
        let event = decode(&record_bytes(&raw)).expect("valid record");
        assert_eq!(event.client.port(), 0, "client port without CLIENT_PORT");
        assert_eq!(event.dest, None);
        assert_eq!(event.scheduler, None);
        assert_eq!(event.netns, None);
        assert!(event.backend.is_some());
    }

    #[test]
    fn no_dest_has_no_entry_backend_or_method() {
        let mut raw = raw_new();
        raw.header.kind = EventKind::NoDest as u32;
        raw.conn = 0;
        raw.flags = 0;
        raw.daf = 0;
        raw.backend_addr = [0; 16];
        raw.valid = valid::SCHEDULER | valid::NETNS | valid::CLIENT_PORT;
        let event = decode(&record_bytes(&raw)).expect("valid record");
        assert_eq!(event.kind, EventKind::NoDest);
        assert_eq!(event.conn, None);
        assert_eq!(event.fwd, None);
        assert_eq!(event.backend, None);
        assert_eq!(event.dest, None);
        assert_eq!(event.scheduler.as_deref(), Some("rr"));
        assert_eq!(event.client, "10.245.97.12:51234".parse().unwrap());
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in EventKind::ALL {
            let mut raw = raw_new();
            raw.header.kind = kind as u32;
            assert_eq!(decode(&record_bytes(&raw)).map(|e| e.kind), Ok(kind));
        }
    }

    #[test]
    fn linux_scheduler_names_are_static_and_others_owned() {
        for known in KNOWN_SCHEDULERS {
            let mut buf = [0u8; 16];
            buf[..known.len()].copy_from_slice(known.as_bytes());
            assert!(
                matches!(scheduler_name(&buf), Some(Cow::Borrowed(name)) if name == known),
                "{known}"
            );
        }
        let mut buf = [0u8; 16];
        buf[..4].copy_from_slice(b"mine");
        assert!(matches!(scheduler_name(&buf), Some(Cow::Owned(name)) if name == "mine"));
        // A known name as a prefix is not the name.
        buf[..4].copy_from_slice(b"rrx\0");
        assert!(matches!(scheduler_name(&buf), Some(Cow::Owned(name)) if name == "rrx"));
    }

    #[test]
    fn scheduler_name_uses_the_whole_buffer_without_nul() {
        let mut raw = raw_new();
        raw.scheduler = *b"sixteen-chars-xx";
        let event = decode(&record_bytes(&raw)).expect("valid record");
        assert_eq!(event.scheduler.as_deref(), Some("sixteen-chars-xx"));
        raw.scheduler = [0; 16];
        let event = decode(&record_bytes(&raw)).expect("valid record");
        assert_eq!(event.scheduler, None, "empty name");
    }

    #[test]
    fn refuses_wrong_lengths() {
        let bytes = record_bytes(&raw_new());
        assert_eq!(decode(&[]), Err(DecodeError::Length(0)));
        assert_eq!(
            decode(&bytes[..RECORD_LEN - 1]),
            Err(DecodeError::Length(RECORD_LEN - 1))
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(DecodeError::Length(RECORD_LEN + 1)));
    }

    #[test]
    fn refuses_unknown_kinds_and_families() {
        let mut raw = raw_new();
        raw.header.kind = 0;
        assert_eq!(decode(&record_bytes(&raw)), Err(DecodeError::Kind(0)));
        raw.header.kind = 6;
        assert_eq!(decode(&record_bytes(&raw)), Err(DecodeError::Kind(6)));

        let mut raw = raw_new();
        raw.af = 0;
        assert_eq!(
            decode(&record_bytes(&raw)),
            Err(DecodeError::AddressFamily(0))
        );
        let mut raw = raw_new();
        raw.daf = 7;
        assert_eq!(
            decode(&record_bytes(&raw)),
            Err(DecodeError::AddressFamily(7))
        );
    }

    #[test]
    fn decodes_unaligned_records() {
        let mut bytes = vec![0u8];
        bytes.extend(record_bytes(&raw_new()));
        assert_eq!(
            decode(&bytes[1..]),
            decode(&record_bytes(&raw_new())),
            "same event at an odd address"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic generator over many records: decode must return, whatever it
        // returns.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut bytes = [0u8; RECORD_LEN];
        let mut decoded = 0;
        for _ in 0..2000 {
            for byte in &mut bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            // Make a fair share plausible so the address paths run too.
            bytes[0..4].copy_from_slice(&(1 + (state % 5) as u32).to_ne_bytes());
            let af_offset = std::mem::offset_of!(ConnEvent, af);
            bytes[af_offset..af_offset + 2].copy_from_slice(&AF_INET.to_ne_bytes());
            let dataplane = std::mem::offset_of!(ConnEvent, header.dataplane);
            bytes[dataplane..dataplane + 4].copy_from_slice(&((state % 2) as u32).to_ne_bytes());
            if decode(&bytes).is_ok() {
                decoded += 1;
            }
        }
        assert!(decoded > 0, "some random records are valid");
    }
}
