//! nf_tables messages on `NETLINK_NETFILTER`: the requests `nft list` makes (dumps of tables,
//! chains, rules, sets and set elements, and the ruleset generation), and the messages of the
//! replies, undecoded ([`super::decode`] reads them).
//!
//! Every message of the subsystem is a `struct nfgenmsg` (family, version, resource id) and
//! attributes; the netlink message type is `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*`. Requests
//! and replies travel through [`crate::ipvs::netlink`]'s transports (the socket, the reply
//! loop, `--debug-dump-netlink` recordings and their replay), as ctnetlink's do.

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};

use super::decode::put_str;
use crate::ipvs::DecodeError;

/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNETLINK_V0`, the only `nfgenmsg.version`.
const NFNETLINK_V0: u8 = 0;
/// `sizeof(struct nfgenmsg)`.
const NFGENMSG_LEN: usize = 4;

// enum nf_tables_msg_types.
pub const NFT_MSG_NEWTABLE: u8 = 0;
const NFT_MSG_GETTABLE: u8 = 1;
pub const NFT_MSG_NEWCHAIN: u8 = 3;
const NFT_MSG_GETCHAIN: u8 = 4;
pub const NFT_MSG_NEWRULE: u8 = 6;
const NFT_MSG_GETRULE: u8 = 7;
pub const NFT_MSG_NEWSET: u8 = 9;
const NFT_MSG_GETSET: u8 = 10;
pub const NFT_MSG_NEWSETELEM: u8 = 12;
const NFT_MSG_GETSETELEM: u8 = 13;
pub const NFT_MSG_NEWGEN: u8 = 15;
const NFT_MSG_GETGEN: u8 = 16;

// The table filters of dump requests: the first attribute of each object kind names its
// table (NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE).
const NFTA_TABLE_ATTR: u16 = 1;
/// `NFTA_SET_ELEM_LIST_SET`.
const NFTA_SET_ELEM_LIST_SET: u16 = 2;

/// One nf_tables message: its `NFT_MSG_*` type, `nfgenmsg.nfgen_family` (an `NFPROTO_*`) and
/// its attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftMessage {
    pub kind: u8,
    pub family: u8,
    pub attrs: Vec<u8>,
}

impl NetlinkSerializable for NftMessage {
    fn message_type(&self) -> u16 {
        (NFNL_SUBSYS_NFTABLES << 8) | u16::from(self.kind)
    }

    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN + self.attrs.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        // res_id 0 (big-endian): no resource.
        buffer[..NFGENMSG_LEN].copy_from_slice(&[self.family, NFNETLINK_V0, 0, 0]);
        buffer[NFGENMSG_LEN..].copy_from_slice(&self.attrs);
    }
}

impl NetlinkDeserializable for NftMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<NftMessage, DecodeError> {
        if header.message_type >> 8 != NFNL_SUBSYS_NFTABLES {
            return Err(DecodeError::new(format!(
                "netlink message type {:#06x} is not of nf_tables (subsystem \
                 {NFNL_SUBSYS_NFTABLES})",
                header.message_type
            )));
        }
        let Some((nfgenmsg, attrs)) = payload.split_first_chunk::<NFGENMSG_LEN>() else {
            return Err(DecodeError::new(format!(
                "an nf_tables message of {} bytes, shorter than its nfgenmsg header",
                payload.len()
            )));
        };
        Ok(NftMessage {
            kind: (header.message_type & 0xff) as u8,
            family: nfgenmsg[0],
            attrs: attrs.to_vec(),
        })
    }
}

fn request(seq: u32, kind: u8, family: u8, attrs: Vec<u8>, flags: u16) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let message = NftMessage {
        kind,
        family,
        attrs,
    };
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// `NFT_MSG_GETGEN`: the ruleset's generation, which every committed change bumps.
#[must_use]
pub fn gen_request(seq: u32) -> Vec<u8> {
    request(seq, NFT_MSG_GETGEN, 0, Vec::new(), NLM_F_ACK)
}

/// A dump of every table of every family.
#[must_use]
pub fn tables_request(seq: u32) -> Vec<u8> {
    request(seq, NFT_MSG_GETTABLE, 0, Vec::new(), NLM_F_DUMP)
}

/// What [`dump_request`] dumps of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dump {
    Chains,
    Rules,
    Sets,
}

/// A dump of the chains, rules or sets of table `table` of `family`. Kernels that do not
/// filter chains by table (they dump the family's) are filtered again by the caller.
#[must_use]
pub fn dump_request(seq: u32, what: Dump, family: u8, table: &str) -> Vec<u8> {
    let kind = match what {
        Dump::Chains => NFT_MSG_GETCHAIN,
        Dump::Rules => NFT_MSG_GETRULE,
        Dump::Sets => NFT_MSG_GETSET,
    };
    let mut attrs = Vec::new();
    put_str(&mut attrs, NFTA_TABLE_ATTR, table);
    request(seq, kind, family, attrs, NLM_F_DUMP)
}

/// A dump of the elements of set `set` of table `table`.
#[must_use]
pub fn elements_request(seq: u32, family: u8, table: &str, set: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    put_str(&mut attrs, NFTA_TABLE_ATTR, table);
    put_str(&mut attrs, NFTA_SET_ELEM_LIST_SET, set);
    request(seq, NFT_MSG_GETSETELEM, family, attrs, NLM_F_DUMP)
}
