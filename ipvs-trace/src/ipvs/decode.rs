//! The IPVS attributes of generic netlink messages, decoded (and, for requests, encoded) by
//! hand against the kernel's `include/uapi/linux/ip_vs.h` and `net/netfilter/ipvs/ip_vs_ctl.c`
//! (`ip_vs_genl_fill_service`, `ip_vs_genl_fill_dest`, `ip_vs_genl_fill_stats[64]`).
//!
//! Every read is checked: an attribute shorter than its type, a length that runs past the
//! buffer, a missing mandatory attribute or an unknown address family is a [`DecodeError`]
//! naming the attribute, never a panic or a made-up value. Attributes this code does not know
//! (added by newer kernels) are skipped, as the kernel's own parser does; of a repeated
//! attribute the last one counts, as in `nla_parse`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::model::{Dest, Family, Info, Netmask, Service, ServiceFlags, Stats, AF_INET, AF_INET6};
use crate::events::{FwdMethod, Proto};

// Generic netlink commands of the "IPVS" family (`enum { IPVS_CMD_UNSPEC = 0, ... }`).
pub const IPVS_CMD_NEW_SERVICE: u8 = 1;
pub const IPVS_CMD_GET_SERVICE: u8 = 4;
pub const IPVS_CMD_NEW_DEST: u8 = 5;
pub const IPVS_CMD_GET_DEST: u8 = 8;
pub const IPVS_CMD_SET_INFO: u8 = 14;
pub const IPVS_CMD_GET_INFO: u8 = 15;

// First-level attributes.
const IPVS_CMD_ATTR_SERVICE: u16 = 1;
const IPVS_CMD_ATTR_DEST: u16 = 2;

// Inside IPVS_CMD_ATTR_SERVICE.
const IPVS_SVC_ATTR_AF: u16 = 1;
const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
const IPVS_SVC_ATTR_ADDR: u16 = 3;
const IPVS_SVC_ATTR_PORT: u16 = 4;
const IPVS_SVC_ATTR_FWMARK: u16 = 5;
const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
const IPVS_SVC_ATTR_FLAGS: u16 = 7;
const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
const IPVS_SVC_ATTR_NETMASK: u16 = 9;
const IPVS_SVC_ATTR_STATS: u16 = 10;
const IPVS_SVC_ATTR_PE_NAME: u16 = 11;
const IPVS_SVC_ATTR_STATS64: u16 = 12;

// Inside IPVS_CMD_ATTR_DEST.
const IPVS_DEST_ATTR_ADDR: u16 = 1;
const IPVS_DEST_ATTR_PORT: u16 = 2;
const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
const IPVS_DEST_ATTR_STATS: u16 = 10;
const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
const IPVS_DEST_ATTR_STATS64: u16 = 12;

// Inside the STATS and STATS64 nests. In STATS the byte counters are u64 and the rest u32; in
// STATS64 every one is u64 (and IPVS_STATS_ATTR_PAD = 11 aligns them).
const IPVS_STATS_ATTR_CONNS: u16 = 1;
const IPVS_STATS_ATTR_INPKTS: u16 = 2;
const IPVS_STATS_ATTR_OUTPKTS: u16 = 3;
const IPVS_STATS_ATTR_INBYTES: u16 = 4;
const IPVS_STATS_ATTR_OUTBYTES: u16 = 5;
const IPVS_STATS_ATTR_CPS: u16 = 6;
const IPVS_STATS_ATTR_INPPS: u16 = 7;
const IPVS_STATS_ATTR_OUTPPS: u16 = 8;
const IPVS_STATS_ATTR_INBPS: u16 = 9;
const IPVS_STATS_ATTR_OUTBPS: u16 = 10;

// In the IPVS_CMD_SET_INFO reply.
const IPVS_INFO_ATTR_VERSION: u16 = 1;
const IPVS_INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

/// `struct nlattr` header size, and the alignment of attributes (`NLA_ALIGNTO`).
const NLA_HDRLEN: usize = 4;
/// The type bits of `nla_type` (the top two are NLA_F_NESTED and NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `sizeof(union nf_inet_addr)`: the kernel sends every address in 16 bytes.
const INET_ADDR_LEN: usize = 16;

/// A reply the code cannot take as the kernel's IPVS tables.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

impl DecodeError {
    pub(crate) fn new(what: impl Into<String>) -> DecodeError {
        DecodeError(what.into())
    }
}

/// One attribute: its type (flags masked off) and its payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attr<'a> {
    pub(crate) kind: u16,
    pub(crate) value: &'a [u8],
}

/// The attributes of a buffer, in order. Also the walker of [`crate::netfilter`]'s nf_tables
/// decoder, whose lists (`NFTA_LIST_ELEM`) repeat one type and so cannot be read as a
/// [`Table`].
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
    /// Where they are (e.g. `service`, `dest stats`), for error messages.
    context: &'static str,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(buf: &'a [u8], context: &'static str) -> Attrs<'a> {
        Attrs { rest: buf, context }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = (|| {
            let Some((header, _)) = self.rest.split_first_chunk::<NLA_HDRLEN>() else {
                return Err(DecodeError::new(format!(
                    "{}: {} stray bytes where an attribute header (4 bytes) should be",
                    self.context,
                    self.rest.len()
                )));
            };
            let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
            let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
            if len < NLA_HDRLEN || len > self.rest.len() {
                return Err(DecodeError::new(format!(
                    "{}: attribute {kind} says it is {len} bytes long, {} are left",
                    self.context,
                    self.rest.len()
                )));
            }
            let value = &self.rest[NLA_HDRLEN..len];
            // The last attribute of a message may lack its padding.
            let next = len.next_multiple_of(NLA_HDRLEN).min(self.rest.len());
            self.rest = &self.rest[next..];
            Ok(Attr { kind, value })
        })();
        if result.is_err() {
            // One error ends the walk: nothing after a broken length can be trusted.
            self.rest = &[];
        }
        Some(result)
    }
}

/// The attributes of one nest, by type (the last of a repeated type wins). Also the reader of
/// [`crate::conntrack`]'s decoder: ctnetlink attributes are laid out the same way.
pub(crate) struct Table<'a> {
    slots: Vec<Option<&'a [u8]>>,
    context: &'static str,
}

impl<'a> Table<'a> {
    pub(crate) fn parse(
        buf: &'a [u8],
        max: u16,
        context: &'static str,
    ) -> Result<Table<'a>, DecodeError> {
        let mut slots = vec![None; usize::from(max) + 1];
        for attr in Attrs::new(buf, context) {
            let attr = attr?;
            if let Some(slot) = slots.get_mut(usize::from(attr.kind)) {
                *slot = Some(attr.value);
            }
        }
        Ok(Table { slots, context })
    }

    pub(crate) fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.slots.get(usize::from(kind)).copied().flatten()
    }

    pub(crate) fn require(&self, kind: u16, name: &str) -> Result<&'a [u8], DecodeError> {
        self.get(kind).ok_or_else(|| {
            DecodeError::new(format!("{}: no {name} attribute ({kind})", self.context))
        })
    }

    fn u16(&self, kind: u16, name: &str) -> Result<u16, DecodeError> {
        let value = self.require(kind, name)?;
        fixed::<2>(value, self.context, name).map(u16::from_ne_bytes)
    }

    fn be16(&self, kind: u16, name: &str) -> Result<u16, DecodeError> {
        let value = self.require(kind, name)?;
        fixed::<2>(value, self.context, name).map(u16::from_be_bytes)
    }

    fn u32(&self, kind: u16, name: &str) -> Result<u32, DecodeError> {
        let value = self.require(kind, name)?;
        fixed::<4>(value, self.context, name).map(u32::from_ne_bytes)
    }

    fn opt_u32(&self, kind: u16, name: &str) -> Result<Option<u32>, DecodeError> {
        self.get(kind)
            .map(|value| fixed::<4>(value, self.context, name).map(u32::from_ne_bytes))
            .transpose()
    }

    /// A counter sent as u32 or u64 (which one depends on the attribute set and the kernel).
    fn counter(&self, kind: u16, name: &str) -> Result<u64, DecodeError> {
        let value = self.require(kind, name)?;
        match value.len() {
            4 => fixed::<4>(value, self.context, name).map(|b| u64::from(u32::from_ne_bytes(b))),
            8 => fixed::<8>(value, self.context, name).map(u64::from_ne_bytes),
            len => Err(DecodeError::new(format!(
                "{}: {name} is {len} bytes, expected 4 or 8",
                self.context
            ))),
        }
    }

    /// A NUL-terminated string (`NLA_NUL_STRING`).
    fn string(&self, kind: u16, name: &str) -> Result<String, DecodeError> {
        let value = self.require(kind, name)?;
        string(value, self.context, name)
    }
}

pub(crate) fn fixed<const N: usize>(
    value: &[u8],
    context: &str,
    name: &str,
) -> Result<[u8; N], DecodeError> {
    value.try_into().map_err(|_| {
        DecodeError::new(format!(
            "{context}: {name} is {} bytes, expected {N}",
            value.len()
        ))
    })
}

fn string(value: &[u8], context: &str, name: &str) -> Result<String, DecodeError> {
    let text = value.split(|&b| b == 0).next().unwrap_or_default();
    std::str::from_utf8(text)
        .map(str::to_owned)
        .map_err(|_| DecodeError::new(format!("{context}: {name} is not UTF-8: {text:?}")))
}

/// An address of `family` from a `union nf_inet_addr` (16 bytes; IPv4 in the first 4).
fn inet_addr(value: &[u8], family: Family, context: &str) -> Result<IpAddr, DecodeError> {
    let bad = || {
        DecodeError::new(format!(
            "{context}: the address is {} bytes, expected {INET_ADDR_LEN} (or 4 for IPv4)",
            value.len()
        ))
    };
    match family {
        Family::V4 if value.len() == 4 || value.len() == INET_ADDR_LEN => {
            Ok(Ipv4Addr::new(value[0], value[1], value[2], value[3]).into())
        }
        Family::V6 => {
            let bytes: [u8; 16] = value.try_into().map_err(|_| bad())?;
            Ok(Ipv6Addr::from(bytes).into())
        }
        Family::V4 => Err(bad()),
    }
}

fn family(af: u16, context: &str) -> Result<Family, DecodeError> {
    Family::from_af(af).ok_or_else(|| {
        DecodeError::new(format!(
            "{context}: address family {af}, expected {AF_INET} (IPv4) or {AF_INET6} (IPv6)"
        ))
    })
}

/// The one nest of a reply (`IPVS_CMD_ATTR_SERVICE`, `IPVS_CMD_ATTR_DEST`), checking the
/// command.
fn nest<'a>(
    cmd: u8,
    attrs: &'a [u8],
    want_cmd: u8,
    kind: u16,
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    if cmd != want_cmd {
        return Err(DecodeError::new(format!(
            "{what} reply with command {cmd}, expected {want_cmd}"
        )));
    }
    Table::parse(attrs, kind, what)?.require(kind, what)
}

/// A service of an `IPVS_CMD_GET_SERVICE` dump (`IPVS_CMD_NEW_SERVICE` messages), without
/// its real servers.
pub fn service(cmd: u8, attrs: &[u8]) -> Result<Service, DecodeError> {
    let nested = nest(
        cmd,
        attrs,
        IPVS_CMD_NEW_SERVICE,
        IPVS_CMD_ATTR_SERVICE,
        "service",
    )?;
    let t = Table::parse(nested, IPVS_SVC_ATTR_STATS64, "service")?;
    let family = family(t.u16(IPVS_SVC_ATTR_AF, "AF")?, "service")?;
    // The kernel sends a firewall-mark service's mark instead of protocol, address and port.
    let (proto, addr, fwmark) = if let Some(mark) = t.opt_u32(IPVS_SVC_ATTR_FWMARK, "FWMARK")? {
        (None, None, Some(mark))
    } else {
        let proto = Proto::from_number(t.u16(IPVS_SVC_ATTR_PROTOCOL, "PROTOCOL")?);
        let ip = inet_addr(t.require(IPVS_SVC_ATTR_ADDR, "ADDR")?, family, "service")?;
        let port = t.be16(IPVS_SVC_ATTR_PORT, "PORT")?;
        (Some(proto), Some(SocketAddr::new(ip, port)), None)
    };
    let flags = t.require(IPVS_SVC_ATTR_FLAGS, "FLAGS")?;
    // struct ip_vs_flags { __u32 flags; __u32 mask; }
    let flags = fixed::<8>(flags, "service", "FLAGS")?;
    let flags = ServiceFlags(u32::from_ne_bytes([flags[0], flags[1], flags[2], flags[3]]));
    let netmask = t.require(IPVS_SVC_ATTR_NETMASK, "NETMASK")?;
    let netmask = fixed::<4>(netmask, "service", "NETMASK")?;
    // The kernel stores the IPv4 mask in network order and the IPv6 prefix length as a plain
    // integer, and sends both as the raw 32 bits.
    let netmask = match family {
        Family::V4 => Netmask::V4(Ipv4Addr::from(netmask)),
        Family::V6 => Netmask::V6Prefix(u32::from_ne_bytes(netmask)),
    };
    let (stats, stats_64bit) = stats_of(
        &t,
        IPVS_SVC_ATTR_STATS64,
        IPVS_SVC_ATTR_STATS,
        "service",
        "service stats",
    )?;
    Ok(Service {
        family,
        proto,
        addr,
        fwmark,
        scheduler: t.string(IPVS_SVC_ATTR_SCHED_NAME, "SCHED_NAME")?,
        persistence_engine: t
            .get(IPVS_SVC_ATTR_PE_NAME)
            .map(|v| string(v, "service", "PE_NAME"))
            .transpose()?,
        flags,
        timeout: t.u32(IPVS_SVC_ATTR_TIMEOUT, "TIMEOUT")?,
        netmask,
        stats,
        stats_64bit,
        dests: Vec::new(),
    })
}

/// A real server of an `IPVS_CMD_GET_DEST` dump (`IPVS_CMD_NEW_DEST` messages) of a service of
/// `service_family` (the family of kernels that do not send the destination's own).
pub fn dest(cmd: u8, attrs: &[u8], service_family: Family) -> Result<Dest, DecodeError> {
    let nested = nest(cmd, attrs, IPVS_CMD_NEW_DEST, IPVS_CMD_ATTR_DEST, "dest")?;
    let t = Table::parse(nested, IPVS_DEST_ATTR_STATS64, "dest")?;
    let family = match t.get(IPVS_DEST_ATTR_ADDR_FAMILY) {
        Some(af) => family(
            u16::from_ne_bytes(fixed::<2>(af, "dest", "ADDR_FAMILY")?),
            "dest",
        )?,
        None => service_family,
    };
    let ip = inet_addr(t.require(IPVS_DEST_ATTR_ADDR, "ADDR")?, family, "dest")?;
    let port = t.be16(IPVS_DEST_ATTR_PORT, "PORT")?;
    let (stats, _) = stats_of(
        &t,
        IPVS_DEST_ATTR_STATS64,
        IPVS_DEST_ATTR_STATS,
        "dest",
        "dest stats",
    )?;
    Ok(Dest {
        addr: SocketAddr::new(ip, port),
        family,
        fwd: FwdMethod::from_flags(t.u32(IPVS_DEST_ATTR_FWD_METHOD, "FWD_METHOD")?),
        weight: t.u32(IPVS_DEST_ATTR_WEIGHT, "WEIGHT")?,
        upper_threshold: t.opt_u32(IPVS_DEST_ATTR_U_THRESH, "U_THRESH")?.unwrap_or(0),
        lower_threshold: t.opt_u32(IPVS_DEST_ATTR_L_THRESH, "L_THRESH")?.unwrap_or(0),
        active_conns: t.u32(IPVS_DEST_ATTR_ACTIVE_CONNS, "ACTIVE_CONNS")?,
        inactive_conns: t.u32(IPVS_DEST_ATTR_INACT_CONNS, "INACT_CONNS")?,
        persist_conns: t.u32(IPVS_DEST_ATTR_PERSIST_CONNS, "PERSIST_CONNS")?,
        stats,
    })
}

/// The `IPVS_CMD_SET_INFO` reply to `IPVS_CMD_GET_INFO`.
pub fn info(cmd: u8, attrs: &[u8]) -> Result<Info, DecodeError> {
    if cmd != IPVS_CMD_SET_INFO {
        return Err(DecodeError::new(format!(
            "info reply with command {cmd}, expected {IPVS_CMD_SET_INFO}"
        )));
    }
    let t = Table::parse(attrs, IPVS_INFO_ATTR_CONN_TAB_SIZE, "info")?;
    Ok(Info {
        version: t.u32(IPVS_INFO_ATTR_VERSION, "VERSION")?,
        conn_table_size: t.u32(IPVS_INFO_ATTR_CONN_TAB_SIZE, "CONN_TAB_SIZE")?,
    })
}

/// The 64-bit counters when the kernel sent them (4.x and later), else the 32-bit set; the
/// flag says which.
fn stats_of(
    t: &Table<'_>,
    stats64: u16,
    stats32: u16,
    context: &'static str,
    stats_context: &'static str,
) -> Result<(Stats, bool), DecodeError> {
    let (nested, is_64) = match (t.get(stats64), t.get(stats32)) {
        (Some(nested), _) => (nested, true),
        (None, Some(nested)) => (nested, false),
        (None, None) => {
            return Err(DecodeError::new(format!(
                "{context}: neither STATS64 ({stats64}) nor STATS ({stats32})"
            )))
        }
    };
    let s = Table::parse(nested, IPVS_STATS_ATTR_OUTBPS, stats_context)?;
    Ok((
        Stats {
            conns: s.counter(IPVS_STATS_ATTR_CONNS, "CONNS")?,
            in_pkts: s.counter(IPVS_STATS_ATTR_INPKTS, "INPKTS")?,
            out_pkts: s.counter(IPVS_STATS_ATTR_OUTPKTS, "OUTPKTS")?,
            in_bytes: s.counter(IPVS_STATS_ATTR_INBYTES, "INBYTES")?,
            out_bytes: s.counter(IPVS_STATS_ATTR_OUTBYTES, "OUTBYTES")?,
            cps: s.counter(IPVS_STATS_ATTR_CPS, "CPS")?,
            in_pps: s.counter(IPVS_STATS_ATTR_INPPS, "INPPS")?,
            out_pps: s.counter(IPVS_STATS_ATTR_OUTPPS, "OUTPPS")?,
            in_bps: s.counter(IPVS_STATS_ATTR_INBPS, "INBPS")?,
            out_bps: s.counter(IPVS_STATS_ATTR_OUTBPS, "OUTBPS")?,
        },
        is_64,
    ))
}

/// The attributes of an `IPVS_CMD_GET_DEST` request for `service`: the nest
/// `IPVS_CMD_ATTR_SERVICE` with the fields `ip_vs_genl_parse_service` identifies a service by
/// (AF plus FWMARK, or AF plus PROTOCOL, ADDR and PORT).
#[must_use]
pub fn dest_request(service: &Service) -> Vec<u8> {
    let af = match service.family {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    };
    let mut inner = Vec::new();
    put(&mut inner, IPVS_SVC_ATTR_AF, &af.to_ne_bytes());
    match (service.fwmark, service.proto, service.addr) {
        (Some(mark), _, _) => put(&mut inner, IPVS_SVC_ATTR_FWMARK, &mark.to_ne_bytes()),
        (None, Some(proto), Some(addr)) => {
            put(
                &mut inner,
                IPVS_SVC_ATTR_PROTOCOL,
                &proto.number().to_ne_bytes(),
            );
            let mut ip = [0u8; INET_ADDR_LEN];
            match addr.ip() {
                IpAddr::V4(v4) => ip[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => ip.copy_from_slice(&v6.octets()),
            }
            put(&mut inner, IPVS_SVC_ATTR_ADDR, &ip);
            put(&mut inner, IPVS_SVC_ATTR_PORT, &addr.port().to_be_bytes());
        }
        // A decoded service always has one or the other; an empty selector makes the kernel
        // answer EINVAL, which is reported, rather than a guess.
        _ => {}
    }
    let mut attrs = Vec::new();
    put(&mut attrs, IPVS_CMD_ATTR_SERVICE, &inner);
    attrs
}

/// Appends one attribute, padded to 4 bytes.
pub(crate) fn put(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(NLA_HDRLEN + value.len()).expect("IPVS request attributes are small");
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(NLA_HDRLEN), 0);
}
