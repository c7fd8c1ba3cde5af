//! ctnetlink messages: the `IPCTNL_MSG_CT_GET` request by original tuple, the same request as
//! a dump of the whole table, and the entries the kernel answers with, encoded and decoded by hand against
//! `include/uapi/linux/netfilter/nfnetlink_conntrack.h` and `net/netfilter/nf_conntrack_netlink.c`
//! (`ctnetlink_fill_info`, `ctnetlink_dump_tuples`, `ipv4_tuple_to_nlattr`,
//! `nf_ct_port_tuple_to_nlattr`).
//!
//! Why not netlink-packet-netfilter (0.4, rust-netlink): it has conntrack types, but as lists
//! of enum values per nest that still leave every check to the caller (a tuple without ports,
//! an address of the wrong family, an attribute twice), and it brings derive_more 0.99 beside
//! the 2.x already in the tree. The attribute walker here is the IPVS decoder's, so both
//! netlink decoders check lengths and reject corrupt input the same way.
//!
//! Every multi-byte value of ctnetlink is big-endian (network order), unlike IPVS's attributes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};

use super::model::{Entry, Status, Tuple};
use crate::events::Proto;
use crate::ipvs::decode::{fixed, put, Table};
use crate::ipvs::model::{Family, AF_INET, AF_INET6};
use crate::ipvs::DecodeError;

/// `NFNL_SUBSYS_CTNETLINK`: the high byte of every conntrack message type.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`: the type of an entry in a reply (and of an event).
const IPCTNL_MSG_CT_NEW: u16 = 0;
/// `IPCTNL_MSG_CT_GET`.
const IPCTNL_MSG_CT_GET: u16 = 1;
/// `NFNETLINK_V0`, the only `nfgenmsg.version`.
const NFNETLINK_V0: u8 = 0;
/// `sizeof(struct nfgenmsg)`: family, version, res_id (big-endian).
const NFGENMSG_LEN: usize = 4;
/// `NLA_F_NESTED`: set on nests, as libnetfilter_conntrack does (the kernel accepts both).
const NLA_F_NESTED: u16 = 1 << 15;

// enum ctattr_type (top level of an entry).
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
// enum ctattr_tuple.
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
// enum ctattr_ip.
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto.
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// One ctnetlink message: its type within the subsystem, `nfgenmsg.nfgen_family`, and its
/// attributes undecoded ([`entry`] reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtMessage {
    /// `IPCTNL_MSG_CT_*` (the low byte of the netlink message type).
    pub kind: u16,
    /// `AF_INET` or `AF_INET6` (the family of the tuples).
    pub family: u8,
    pub attrs: Vec<u8>,
}

impl NetlinkSerializable for CtMessage {
    fn message_type(&self) -> u16 {
        (NFNL_SUBSYS_CTNETLINK << 8) | self.kind
    }

    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN + self.attrs.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        // nfgenmsg: res_id 0 (big-endian), meaning "no resource".
        buffer[..NFGENMSG_LEN].copy_from_slice(&[self.family, NFNETLINK_V0, 0, 0]);
        buffer[NFGENMSG_LEN..].copy_from_slice(&self.attrs);
    }
}

impl NetlinkDeserializable for CtMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<CtMessage, DecodeError> {
        if header.message_type >> 8 != NFNL_SUBSYS_CTNETLINK {
            return Err(DecodeError::new(format!(
                "netlink message type {:#06x} is not of ctnetlink (subsystem {NFNL_SUBSYS_CTNETLINK})",
                header.message_type
            )));
        }
        let Some((nfgenmsg, attrs)) = payload.split_first_chunk::<NFGENMSG_LEN>() else {
            return Err(DecodeError::new(format!(
                "a ctnetlink message of {} bytes, shorter than its nfgenmsg header",
                payload.len()
            )));
        };
        Ok(CtMessage {
            kind: header.message_type & 0xff,
            family: nfgenmsg[0],
            attrs: attrs.to_vec(),
        })
    }
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// The `IPCTNL_MSG_CT_GET` request `seq` for the entry whose original tuple is `key`, with an
/// ack (which ends the reply). `None` when the key's two addresses are of different families:
/// no entry can have such a tuple.
#[must_use]
pub fn get_request(seq: u32, key: &Tuple) -> Option<Vec<u8>> {
    let family = family_of(key.src.ip());
    if family_of(key.dst.ip()) != family {
        return None;
    }
    let mut ip = Vec::new();
    match (key.src.ip(), key.dst.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            put(&mut ip, CTA_IP_V4_SRC, &src.octets());
            put(&mut ip, CTA_IP_V4_DST, &dst.octets());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            put(&mut ip, CTA_IP_V6_SRC, &src.octets());
            put(&mut ip, CTA_IP_V6_DST, &dst.octets());
        }
        _ => return None,
    }
    let mut proto = Vec::new();
    // The protocol attribute is one byte (NLA_U8); IPVS's numbers all fit.
    put(&mut proto, CTA_PROTO_NUM, &[key.proto.number() as u8]);
    put(
        &mut proto,
        CTA_PROTO_SRC_PORT,
        &key.src.port().to_be_bytes(),
    );
    put(
        &mut proto,
        CTA_PROTO_DST_PORT,
        &key.dst.port().to_be_bytes(),
    );
    let mut tuple = Vec::new();
    put(&mut tuple, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
    put(&mut tuple, CTA_TUPLE_PROTO | NLA_F_NESTED, &proto);
    let mut attrs = Vec::new();
    put(&mut attrs, CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple);
    let family = match family {
        Family::V4 => AF_INET as u8,
        Family::V6 => AF_INET6 as u8,
    };
    Some(get_message(seq, NLM_F_ACK, family, attrs))
}

/// The `IPCTNL_MSG_CT_GET` dump request `seq`: every entry of the table, both families
/// (`nfgen_family` `AF_UNSPEC` and no attribute: `ctnetlink_start` sets no filter), ended by
/// `NLMSG_DONE`.
#[must_use]
pub fn dump_request(seq: u32) -> Vec<u8> {
    get_message(seq, NLM_F_DUMP, 0, Vec::new())
}

/// An `IPCTNL_MSG_CT_GET` request with `flags` on top of `NLM_F_REQUEST`.
fn get_message(seq: u32, flags: u16, family: u8, attrs: Vec<u8>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let message = CtMessage {
        kind: IPCTNL_MSG_CT_GET,
        family,
        attrs,
    };
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// The entry of a `IPCTNL_MSG_CT_GET` reply (one message of a dump's).
pub fn entry(message: &CtMessage) -> Result<Entry, DecodeError> {
    if message.kind != IPCTNL_MSG_CT_NEW {
        return Err(DecodeError::new(format!(
            "conntrack reply of type {}, expected {IPCTNL_MSG_CT_NEW} (IPCTNL_MSG_CT_NEW)",
            message.kind
        )));
    }
    let family = Family::from_af(u16::from(message.family)).ok_or_else(|| {
        DecodeError::new(format!(
            "conntrack entry of family {}, expected {AF_INET} (IPv4) or {AF_INET6} (IPv6)",
            message.family
        ))
    })?;
    let t = Table::parse(&message.attrs, CTA_MARK, "conntrack entry")?;
    let status = fixed::<4>(
        t.require(CTA_STATUS, "STATUS")?,
        "conntrack entry",
        "STATUS",
    )?;
    Ok(Entry {
        orig: tuple(
            t.require(CTA_TUPLE_ORIG, "TUPLE_ORIG")?,
            family,
            "orig tuple",
        )?,
        reply: tuple(
            t.require(CTA_TUPLE_REPLY, "TUPLE_REPLY")?,
            family,
            "reply tuple",
        )?,
        status: Status(u32::from_be_bytes(status)),
        mark: t
            .get(CTA_MARK)
            .map(|v| fixed::<4>(v, "conntrack entry", "MARK").map(u32::from_be_bytes))
            .transpose()?,
    })
}

/// A `CTA_TUPLE_ORIG` or `CTA_TUPLE_REPLY` nest of an entry of `family`.
fn tuple(nest: &[u8], family: Family, context: &'static str) -> Result<Tuple, DecodeError> {
    let t = Table::parse(nest, CTA_TUPLE_ZONE, context)?;
    let ip = Table::parse(t.require(CTA_TUPLE_IP, "TUPLE_IP")?, CTA_IP_V6_DST, context)?;
    let (src, dst) = match family {
        Family::V4 => {
            let src = fixed::<4>(
                ip.require(CTA_IP_V4_SRC, "IP_V4_SRC")?,
                context,
                "IP_V4_SRC",
            )?;
            let dst = fixed::<4>(
                ip.require(CTA_IP_V4_DST, "IP_V4_DST")?,
                context,
                "IP_V4_DST",
            )?;
            (
                IpAddr::from(Ipv4Addr::from(src)),
                IpAddr::from(Ipv4Addr::from(dst)),
            )
        }
        Family::V6 => {
            let src = fixed::<16>(
                ip.require(CTA_IP_V6_SRC, "IP_V6_SRC")?,
                context,
                "IP_V6_SRC",
            )?;
            let dst = fixed::<16>(
                ip.require(CTA_IP_V6_DST, "IP_V6_DST")?,
                context,
                "IP_V6_DST",
            )?;
            (
                IpAddr::from(Ipv6Addr::from(src)),
                IpAddr::from(Ipv6Addr::from(dst)),
            )
        }
    };
    let l4 = Table::parse(
        t.require(CTA_TUPLE_PROTO, "TUPLE_PROTO")?,
        CTA_PROTO_DST_PORT,
        context,
    )?;
    let [number] = fixed::<1>(
        l4.require(CTA_PROTO_NUM, "PROTO_NUM")?,
        context,
        "PROTO_NUM",
    )?;
    let proto = Proto::from_number(u16::from(number));
    let port = |kind, name| -> Result<u16, DecodeError> {
        match l4.get(kind) {
            Some(value) => fixed::<2>(value, context, name).map(u16::from_be_bytes),
            // Port protocols always send both; the others (ICMP, GRE...) have none, and IPVS
            // schedules none of them.
            None if matches!(proto, Proto::Other(_)) => Ok(0),
            None => Err(DecodeError::new(format!(
                "{context}: no {name} attribute ({kind}) for {proto}"
            ))),
        }
    };
    Ok(Tuple {
        proto,
        src: SocketAddr::new(src, port(CTA_PROTO_SRC_PORT, "PROTO_SRC_PORT")?),
        dst: SocketAddr::new(dst, port(CTA_PROTO_DST_PORT, "PROTO_DST_PORT")?),
    })
}
