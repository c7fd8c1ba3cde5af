//! The unit both stores keep: a block of up to a few thousand consecutive decisions of one run,
//! encoded compactly, with a summary (run, sequence range, time range) and a bloom filter of
//! the keys a query asks by, so that a query skips blocks that cannot answer it.
//!
//! A block's records refer to names by string id; what an id means is the holder's business:
//! the memory store's [`Interner`](super::memory) ids, or a segment's dictionary on disk
//! ([`segment`](super::segment)). Everything else about a decision is in the record, so the
//! same encoder and decoder serve both stores.
//!
//! # Record encoding (format version 1; part of the on-disk format)
//! Records follow each other with no padding; each is relative to the previous record of the
//! same block (the first to the block's summary):
//! - `head`: LEB128 varint, XOR-ed with the previous record's head (consecutive records
//!   usually share it, so it is one byte). Bits: 0-2 kind; 3 client IPv6; 4 VIP IPv6; 5 has
//!   backend; 6 backend IPv6; 7 has conn; 8-9 netns (0 none, 1 as the previous record, 2
//!   given); 10 cpu as the previous record; 11-12 proto (TCP, UDP, SCTP, other: given);
//!   13-15 fwd (none, Masq, Local, Tunnel, Route, Bypass, other: given); 16 has scheduler;
//!   17 has dest counters; 18 has active; 19 has inactive; 20 has service; 21-22 service type;
//!   23 service `namespace/name` equals the label; 24 has backend name; 25 backend pod;
//!   26 backend node; 27-28 serving and 29-30 terminating (none, false, true); 31-32 client
//!   name (none, pod, node); 33 client pod has a node; 34 flags and 35 state as the previous
//!   record; 36-37 dataplane (IPVS, nftables, iptables; added with the netfilter dataplanes:
//!   records written before it read as IPVS, which they all were).
//! - then, each only when the head says so: time (zigzag delta, ns), cpu, netns, conn (zigzag
//!   delta from the previous conn), proto number, client IP (4 or 16 bytes) and port, VIP IP
//!   and port, backend IP and port, fwd value (1 byte), flags, state, scheduler (index into
//!   [`KNOWN_SCHEDULERS`], or 14 + string id), weight, active, inactive (zigzag), service
//!   label id and `namespace/name` id, backend pod id and node id, client pod or node id and
//!   the client pod's node id. Integers are LEB128 varints.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::{Decision, Query};
use crate::events::model::EventKind;
use crate::events::{Dataplane, DestCounters, Event, FwdMethod, Proto};
use crate::kube::{BackendName, ClientName, OwnedNames, ServiceName, ServiceType};

/// Decisions in a full block: large enough that the summary and the bloom filter's rounding
/// cost little per decision, small enough that a query decodes little more than it needs.
pub const BLOCK_DECISIONS: usize = 4096;

/// The scheduler names Linux ships, numbered for the format: a record stores the index. The
/// numbering is part of the on-disk format, and so is the length: a name not listed is stored
/// as 14 + its string id, so nothing can be appended without misreading older records (the
/// netfilter dataplanes' `random` is stored as a string). (The same names as the event
/// decoder's static list, which may change for its own reasons.)
pub const KNOWN_SCHEDULERS: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// A record or block that does not decode: its bytes are damaged (or not ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed history block: {0}")]
pub struct Malformed(pub &'static str);

/// Appends `value` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Reads what [`put_varint`] and fixed-width little-endian integers wrote, checking every
/// length against the input.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Bytes not read yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(Malformed("truncated"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift == 63 && byte > 1 {
                    return Err(Malformed("varint overflows 64 bits"));
                }
                return Ok(value);
            }
        }
        Err(Malformed("varint longer than 10 bytes"))
    }

    pub fn varint_u32(&mut self) -> Result<u32, Malformed> {
        u32::try_from(self.varint()?).map_err(|_| Malformed("value out of range"))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and the bloom filter

/// What a query can ask by, hashed with a fixed function (part of the format: a bloom filter
/// written by one build is read by the next).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTag {
    ClientIp = b'c' as isize,
    ClientAddr = b'C' as isize,
    BackendIp = b'b' as isize,
    BackendAddr = b'B' as isize,
    Pod = b'p' as isize,
    Service = b's' as isize,
    Label = b'l' as isize,
}

/// FNV-1a over the tag and bytes, then MurmurHash3's 64-bit finaliser to spread FNV's weak
/// low bits: stable across builds and platforms, unlike std's hashers.
#[must_use]
pub fn key_hash(tag: KeyTag, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h: u64 = (0xcbf2_9ce4_8422_2325 ^ u64::from(tag as u8)).wrapping_mul(PRIME);
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn addr_hash(tag: KeyTag, ip: IpAddr, port: Option<u16>) -> u64 {
    let mut buf = [0u8; 18];
    let mut len = match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf[..16].copy_from_slice(&v6.octets());
            16
        }
    };
    if let Some(port) = port {
        buf[len..len + 2].copy_from_slice(&port.to_be_bytes());
        len += 2;
    }
    key_hash(tag, &buf[..len])
}

/// The address keys of an event, hashed, appended to `out`: the client's IP and IP:port, the
/// backend's IP and IP:port.
fn address_keys(event: &Event, out: &mut Vec<u64>) {
    out.push(addr_hash(KeyTag::ClientIp, event.client.ip(), None));
    out.push(addr_hash(
        KeyTag::ClientAddr,
        event.client.ip(),
        Some(event.client.port()),
    ));
    if let Some(backend) = event.backend {
        out.push(addr_hash(KeyTag::BackendIp, backend.ip(), None));
        out.push(addr_hash(
            KeyTag::BackendAddr,
            backend.ip(),
            Some(backend.port()),
        ));
    }
}

/// The keys of one decision, hashed, appended to `out`.
fn decision_keys(decision: &Decision, out: &mut Vec<u64>) {
    address_keys(&decision.event, out);
    let names = decision.names.names();
    for pod in [names.backend_pod(), names.client_pod()]
        .into_iter()
        .flatten()
    {
        out.push(key_hash(KeyTag::Pod, pod.as_bytes()));
    }
    if let Some(service) = names.service {
        out.push(key_hash(KeyTag::Service, service.service.as_bytes()));
        out.push(key_hash(KeyTag::Label, service.label.as_bytes()));
    }
}

/// The hashed keys a block must (possibly) hold to answer `query`.
#[must_use]
pub fn query_keys(query: &Query) -> Vec<u64> {
    let mut keys = Vec::new();
    if let Some(client) = &query.client {
        let tag = if client.port.is_some() {
            KeyTag::ClientAddr
        } else {
            KeyTag::ClientIp
        };
        keys.push(addr_hash(tag, client.ip, client.port));
    }
    if let Some(backend) = &query.backend {
        let tag = if backend.port.is_some() {
            KeyTag::BackendAddr
        } else {
            KeyTag::BackendIp
        };
        keys.push(addr_hash(tag, backend.ip, backend.port));
    }
    if let Some(pod) = &query.pod {
        keys.push(key_hash(KeyTag::Pod, pod.as_bytes()));
    }
    if let Some(service) = &query.service {
        let tag = if service.has_port() {
            KeyTag::Label
        } else {
            KeyTag::Service
        };
        keys.push(key_hash(tag, service.as_str().as_bytes()));
    }
    keys
}

/// Bytes of one bloom line: every bit of a key is in the same cache line.
pub const BLOOM_LINE: usize = 64;
/// Bits per distinct key: with 6 bits set per key in a 512-bit line, about 2-3% false
/// positives.
const BLOOM_BITS_PER_KEY: usize = 8;
const BLOOM_BITS_SET: u32 = 6;
/// Lines at most (a block of [`BLOCK_DECISIONS`] with every key distinct needs ~600).
pub const BLOOM_MAX_LINES: usize = 4096;

/// A blocked bloom filter over a block's distinct keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    bytes: Box<[u8]>,
}

impl Bloom {
    /// A filter sized for `keys` (sorted and deduplicated here).
    #[must_use]
    pub fn build(keys: &mut Vec<u64>) -> Bloom {
        keys.sort_unstable();
        keys.dedup();
        Bloom::from_distinct(keys)
    }

    /// A filter sized for `keys`, each distinct.
    fn from_distinct(keys: &[u64]) -> Bloom {
        let lines = (keys.len() * BLOOM_BITS_PER_KEY)
            .div_ceil(BLOOM_LINE * 8)
            .clamp(1, BLOOM_MAX_LINES);
        let mut bytes = vec![0u8; lines * BLOOM_LINE].into_boxed_slice();
        for &key in keys {
            let (line, bits) = Bloom::position(key, lines);
            let line = &mut bytes[line..line + BLOOM_LINE];
            for bit in bits {
                line[bit / 8] |= 1 << (bit % 8);
            }
        }
        Bloom { bytes }
    }

    /// The filter as stored (a whole number of lines).
    pub fn from_bytes(bytes: &[u8]) -> Result<Bloom, Malformed> {
        if bytes.is_empty()
            || !bytes.len().is_multiple_of(BLOOM_LINE)
            || bytes.len() > BLOOM_MAX_LINES * BLOOM_LINE
        {
            return Err(Malformed("bloom filter size"));
        }
        Ok(Bloom {
            bytes: bytes.into(),
        })
    }

    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn position(key: u64, lines: usize) -> (usize, impl Iterator<Item = usize>) {
        let line = (((key >> 32) * lines as u64) >> 32) as usize * BLOOM_LINE;
        let mixed = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (
            line,
            (0..BLOOM_BITS_SET).map(move |i| ((mixed >> (i * 9)) & 511) as usize),
        )
    }

    /// False only when the block holds none of `key`.
    #[must_use]
    pub fn may_contain(&self, key: u64) -> bool {
        let (line, mut bits) = Bloom::position(key, self.bytes.len() / BLOOM_LINE);
        bits.all(|bit| self.bytes[line + bit / 8] & (1 << (bit % 8)) != 0)
    }

    #[must_use]
    pub fn may_contain_all(&self, keys: &[u64]) -> bool {
        keys.iter().all(|&key| self.may_contain(key))
    }
}

/// A block's keys as they are encoded, and a reused table that finds the distinct ones: a
/// hash set rather than a sort, since the keys are hashes already (the filter is the same).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<u64>,
    table: Vec<u64>,
    distinct: Vec<u64>,
}

impl KeySet {
    /// The filter of the keys pushed since the last one (the same [`Bloom::build`] makes).
    pub fn bloom(&mut self) -> Bloom {
        let size = (self.keys.len() * 2).next_power_of_two().max(64);
        self.table.clear();
        self.table.resize(size, 0);
        self.distinct.clear();
        let mask = size - 1;
        let mut zero = false;
        for &key in &self.keys {
            // 0 marks an empty slot: the key 0 is counted aside.
            if key == 0 {
                if !std::mem::replace(&mut zero, true) {
                    self.distinct.push(0);
                }
                continue;
            }
            let mut i = (key >> 20) as usize & mask;
            loop {
                let slot = &mut self.table[i];
                if *slot == key {
                    break;
                }
                if *slot == 0 {
                    *slot = key;
                    self.distinct.push(key);
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        self.keys.clear();
        Bloom::from_distinct(&self.distinct)
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

/// What a block holds, without decoding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The serve run that recorded the block (random per run).
    pub run: u64,
    /// Sequence number of the first decision in the run; the others follow without gaps.
    pub seq_first: u64,
    pub count: u32,
    /// Oldest and newest decision (Unix ns): decisions of several CPUs are not strictly in
    /// time order, so these are the minimum and maximum, not the first and last.
    pub oldest_ns: i64,
    pub newest_ns: i64,
}

impl Summary {
    #[must_use]
    pub fn seq_last(&self) -> u64 {
        self.seq_first + u64::from(self.count).saturating_sub(1)
    }

    /// Appends the summary (fixed layout: run, seq_first, count, oldest, newest).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&self.seq_first.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.oldest_ns.to_le_bytes());
        out.extend_from_slice(&self.newest_ns.to_le_bytes());
    }

    pub fn decode(reader: &mut Reader<'_>) -> Result<Summary, Malformed> {
        let summary = Summary {
            run: u64::from_le_bytes(reader.fixed()?),
            seq_first: u64::from_le_bytes(reader.fixed()?),
            count: u32::from_le_bytes(reader.fixed()?),
            oldest_ns: i64::from_le_bytes(reader.fixed()?),
            newest_ns: i64::from_le_bytes(reader.fixed()?),
        };
        if summary.count == 0
            || summary.count as usize > BLOCK_DECISIONS
            || summary.oldest_ns > summary.newest_ns
            || summary
                .seq_first
                .checked_add(u64::from(summary.count))
                .is_none()
        {
            return Err(Malformed("block summary"));
        }
        Ok(summary)
    }
}

// ---------------------------------------------------------------------------------------------
// Strings

/// Gives names their ids while a block is encoded.
pub trait Intern {
    fn intern(&mut self, name: &Arc<str>) -> u32;
    fn intern_str(&mut self, name: &str) -> u32;
    /// The key `tag` of `name`, just interned as `id`, for the bloom filter: a holder that
    /// keeps names may hash each once.
    fn name_key(&mut self, id: u32, name: &str, tag: KeyTag) -> u64 {
        let _ = id;
        key_hash(tag, name.as_bytes())
    }
}

/// Gives ids their names while a block is decoded; `None`: the id is unknown (its dictionary
/// frame was damaged, or the block is).
pub trait Names {
    fn name(&mut self, id: u32) -> Option<Arc<str>>;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// A sealed block: its summary, bloom filter and record bytes.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub summary: Summary,
    pub bloom: Bloom,
    pub body: Vec<u8>,
}

/// The summary and bloom filter of `decisions` (non-empty, at most [`BLOCK_DECISIONS`],
/// sequence numbers from `seq_first`).
#[must_use]
pub fn summarize(
    run: u64,
    seq_first: u64,
    decisions: &[Decision],
    keys: &mut Vec<u64>,
) -> (Summary, Bloom) {
    keys.clear();
    let mut oldest = i64::MAX;
    let mut newest = i64::MIN;
    for decision in decisions {
        oldest = oldest.min(decision.unix_ns);
        newest = newest.max(decision.unix_ns);
        decision_keys(decision, keys);
    }
    let summary = Summary {
        run,
        seq_first,
        count: decisions.len() as u32,
        oldest_ns: oldest,
        newest_ns: newest,
    };
    (summary, Bloom::build(keys))
}

/// The state a record is encoded and decoded relative to.
#[derive(Clone, Copy)]
struct Previous {
    head: u64,
    unix_ns: i64,
    cpu: u32,
    netns: Option<u32>,
    conn: u64,
    flags: u32,
    state: u32,
}

impl Previous {
    fn new(summary: &Summary) -> Previous {
        Previous {
            head: 0,
            unix_ns: summary.oldest_ns,
            cpu: 0,
            netns: None,
            conn: 0,
            flags: 0,
            state: 0,
        }
    }
}

mod bit {
    pub const KIND: u64 = 0b111;
    pub const CLIENT_V6: u64 = 1 << 3;
    pub const VIP_V6: u64 = 1 << 4;
    pub const BACKEND: u64 = 1 << 5;
    pub const BACKEND_V6: u64 = 1 << 6;
    pub const CONN: u64 = 1 << 7;
    pub const NETNS_SHIFT: u32 = 8;
    pub const CPU_SAME: u64 = 1 << 10;
    pub const PROTO_SHIFT: u32 = 11;
    pub const FWD_SHIFT: u32 = 13;
    pub const SCHEDULER: u64 = 1 << 16;
    pub const DEST: u64 = 1 << 17;
    pub const ACTIVE: u64 = 1 << 18;
    pub const INACTIVE: u64 = 1 << 19;
    pub const SERVICE: u64 = 1 << 20;
    pub const SERVICE_TYPE_SHIFT: u32 = 21;
    pub const SERVICE_IS_LABEL: u64 = 1 << 23;
    pub const BACKEND_NAME: u64 = 1 << 24;
    pub const BACKEND_POD: u64 = 1 << 25;
    pub const BACKEND_NODE: u64 = 1 << 26;
    pub const SERVING_SHIFT: u32 = 27;
    pub const TERMINATING_SHIFT: u32 = 29;
    pub const CLIENT_NAME_SHIFT: u32 = 31;
    pub const CLIENT_POD_NODE: u64 = 1 << 33;
    pub const FLAGS_SAME: u64 = 1 << 34;
    pub const STATE_SAME: u64 = 1 << 35;
    pub const DATAPLANE_SHIFT: u32 = 36;
    pub const ALL: u64 = (1 << 38) - 1;
}

/// A dataplane as the format numbers it.
fn dataplane_number(dataplane: Dataplane) -> u64 {
    match dataplane {
        Dataplane::Ipvs => 0,
        Dataplane::Nftables => 1,
        Dataplane::Iptables => 2,
    }
}

fn dataplane_of(head: u64) -> Result<Dataplane, Malformed> {
    match (head >> bit::DATAPLANE_SHIFT) & 3 {
        0 => Ok(Dataplane::Ipvs),
        1 => Ok(Dataplane::Nftables),
        2 => Ok(Dataplane::Iptables),
        _ => Err(Malformed("dataplane")),
    }
}

fn tristate(value: Option<bool>) -> u64 {
    match value {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn untristate(value: u64) -> Result<Option<bool>, Malformed> {
    match value {
        0 => Ok(None),
        1 => Ok(Some(false)),
        2 => Ok(Some(true)),
        _ => Err(Malformed("condition")),
    }
}

fn service_type_number(service_type: ServiceType) -> u64 {
    match service_type {
        ServiceType::ClusterIp => 0,
        ServiceType::NodePort => 1,
        ServiceType::LoadBalancer => 2,
        ServiceType::ExternalName => 3,
    }
}

fn service_type_from(number: u64) -> ServiceType {
    match number & 3 {
        0 => ServiceType::ClusterIp,
        1 => ServiceType::NodePort,
        2 => ServiceType::LoadBalancer,
        _ => ServiceType::ExternalName,
    }
}

/// The longest record: head 6, time 10, cpu 5, netns 5, conn 10, proto 3, three addresses
/// 19 each, fwd 1, flags 5, state 5, scheduler 10, counters 15, six name ids 5 each: 162.
const MAX_RECORD: usize = 192;

/// A record's bytes, assembled on the stack and appended to the block with one copy (rather
/// than a length and capacity check per byte).
struct RecordBuf {
    bytes: [u8; MAX_RECORD],
    len: usize,
}

impl RecordBuf {
    fn new() -> RecordBuf {
        RecordBuf {
            bytes: [0; MAX_RECORD],
            len: 0,
        }
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes[self.len] = (value as u8) | 0x80;
            self.len += 1;
            value >>= 7;
        }
        self.bytes[self.len] = value as u8;
        self.len += 1;
    }

    fn byte(&mut self, value: u8) {
        self.bytes[self.len] = value;
        self.len += 1;
    }

    fn slice(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn addr(&mut self, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(v4) => self.slice(&v4.octets()),
            IpAddr::V6(v6) => self.slice(&v6.octets()),
        }
        self.varint(addr.port().into());
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn read_addr(reader: &mut Reader<'_>, v6: bool) -> Result<SocketAddr, Malformed> {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(reader.fixed::<16>()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(reader.fixed::<4>()?))
    };
    let port = u16::try_from(reader.varint()?).map_err(|_| Malformed("port"))?;
    Ok(SocketAddr::new(ip, port))
}

/// The head bits of `decision` other than the ones relative to the previous record.
fn head_of(decision: &Decision) -> u64 {
    let event = &decision.event;
    let names = &decision.names;
    let mut head = event.kind as u64 & bit::KIND;
    head |= dataplane_number(event.dataplane) << bit::DATAPLANE_SHIFT;
    if event.client.is_ipv6() {
        head |= bit::CLIENT_V6;
    }
    if event.vip.is_ipv6() {
        head |= bit::VIP_V6;
    }
    if let Some(backend) = event.backend {
        head |= bit::BACKEND;
        if backend.is_ipv6() {
            head |= bit::BACKEND_V6;
        }
    }
    if event.conn.is_some() {
        head |= bit::CONN;
    }
    let proto = match event.proto {
        Proto::Tcp => 0,
        Proto::Udp => 1,
        Proto::Sctp => 2,
        Proto::Other(_) => 3,
    };
    head |= proto << bit::PROTO_SHIFT;
    let fwd = match event.fwd {
        None => 0,
        Some(FwdMethod::Masq) => 1,
        Some(FwdMethod::Local) => 2,
        Some(FwdMethod::Tunnel) => 3,
        Some(FwdMethod::Route) => 4,
        Some(FwdMethod::Bypass) => 5,
        Some(FwdMethod::Unknown(_)) => 6,
    };
    head |= fwd << bit::FWD_SHIFT;
    if event.scheduler.is_some() {
        head |= bit::SCHEDULER;
    }
    if let Some(dest) = event.dest {
        head |= bit::DEST;
        if dest.active_conns.is_some() {
            head |= bit::ACTIVE;
        }
        if dest.inactive_conns.is_some() {
            head |= bit::INACTIVE;
        }
    }
    if let Some(service) = &names.service {
        head |= bit::SERVICE | service_type_number(service.service_type) << bit::SERVICE_TYPE_SHIFT;
        if service.label == service.service {
            head |= bit::SERVICE_IS_LABEL;
        }
    }
    if let Some(backend) = &names.backend {
        head |= bit::BACKEND_NAME
            | tristate(backend.serving) << bit::SERVING_SHIFT
            | tristate(backend.terminating) << bit::TERMINATING_SHIFT;
        if backend.pod.is_some() {
            head |= bit::BACKEND_POD;
        }
        if backend.node.is_some() {
            head |= bit::BACKEND_NODE;
        }
    }
    match &names.client {
        None => {}
        Some(ClientName::Pod { node, .. }) => {
            head |= 1 << bit::CLIENT_NAME_SHIFT;
            if node.is_some() {
                head |= bit::CLIENT_POD_NODE;
            }
        }
        Some(ClientName::Node(_)) => head |= 2 << bit::CLIENT_NAME_SHIFT,
    }
    head
}

/// Appends the records of `decisions` (the block `summary` describes) to `out`.
pub fn encode_body(
    summary: &Summary,
    decisions: &[Decision],
    strings: &mut impl Intern,
    out: &mut Vec<u8>,
) {
    let mut prev = Previous::new(summary);
    let mut no_keys = Vec::new();
    for decision in decisions {
        encode_record::<false>(decision, &mut prev, strings, &mut no_keys, out);
    }
}

/// Summarises and encodes `decisions` (non-empty, at most [`BLOCK_DECISIONS`], sequence
/// numbers from `seq_first`) in one pass: the records appended to `out`, their keys hashed as
/// their names are interned (what [`summarize`] and [`encode_body`] make, each name looked up
/// once).
pub fn encode_block(
    run: u64,
    seq_first: u64,
    decisions: &[Decision],
    strings: &mut impl Intern,
    keys: &mut KeySet,
    out: &mut Vec<u8>,
) -> (Summary, Bloom) {
    let mut oldest = i64::MAX;
    let mut newest = i64::MIN;
    for decision in decisions {
        oldest = oldest.min(decision.unix_ns);
        newest = newest.max(decision.unix_ns);
    }
    let summary = Summary {
        run,
        seq_first,
        count: decisions.len() as u32,
        oldest_ns: oldest,
        newest_ns: newest,
    };
    let mut prev = Previous::new(&summary);
    keys.keys.reserve(decisions.len() * 8);
    for decision in decisions {
        encode_record::<true>(decision, &mut prev, strings, &mut keys.keys, out);
    }
    (summary, keys.bloom())
}

/// Encodes one record; with `KEYS`, also pushes the decision's keys (those of
/// `decision_keys`, in another order) onto `keys`.
#[expect(
    clippy::too_many_lines,
    reason = "one field after the other, in the format's order"
)]
fn encode_record<const KEYS: bool>(
    decision: &Decision,
    prev: &mut Previous,
    strings: &mut impl Intern,
    keys: &mut Vec<u64>,
    body: &mut Vec<u8>,
) {
    let mut out = RecordBuf::new();
    let event = &decision.event;
    let mut head = head_of(decision);
    let netns_mode = match event.netns {
        None => 0,
        Some(_) if event.netns == prev.netns => 1,
        Some(_) => 2,
    };
    head |= netns_mode << bit::NETNS_SHIFT;
    if event.cpu == prev.cpu {
        head |= bit::CPU_SAME;
    }
    if event.flags == prev.flags {
        head |= bit::FLAGS_SAME;
    }
    if event.state == prev.state {
        head |= bit::STATE_SAME;
    }
    out.varint(head ^ prev.head);
    out.varint(zigzag(decision.unix_ns.wrapping_sub(prev.unix_ns)));
    if head & bit::CPU_SAME == 0 {
        out.varint(event.cpu.into());
    }
    if netns_mode == 2 {
        out.varint(event.netns.unwrap_or_default().into());
    }
    if let Some(conn) = event.conn {
        out.varint(zigzag(conn.wrapping_sub(prev.conn) as i64));
        prev.conn = conn;
    }
    if let Proto::Other(number) = event.proto {
        out.varint(number.into());
    }
    out.addr(event.client);
    out.addr(event.vip);
    if let Some(backend) = event.backend {
        out.addr(backend);
    }
    if KEYS {
        address_keys(event, keys);
    }
    if let Some(FwdMethod::Unknown(value)) = event.fwd {
        out.byte(value);
    }
    if head & bit::FLAGS_SAME == 0 {
        out.varint(event.flags.into());
    }
    if head & bit::STATE_SAME == 0 {
        out.varint(event.state.into());
    }
    if let Some(scheduler) = &event.scheduler {
        let number = match KNOWN_SCHEDULERS
            .iter()
            .position(|k| *k == scheduler.as_ref())
        {
            Some(index) => index as u64,
            None => KNOWN_SCHEDULERS.len() as u64 + u64::from(strings.intern_str(scheduler)),
        };
        out.varint(number);
    }
    if let Some(dest) = event.dest {
        out.varint(zigzag(dest.weight.into()));
        for count in [dest.active_conns, dest.inactive_conns]
            .into_iter()
            .flatten()
        {
            out.varint(zigzag(count.into()));
        }
    }
    let names = &decision.names;
    if let Some(service) = &names.service {
        let label = strings.intern(&service.label);
        out.varint(label.into());
        let id = if head & bit::SERVICE_IS_LABEL == 0 {
            let id = strings.intern(&service.service);
            out.varint(id.into());
            id
        } else {
            label
        };
        if KEYS {
            keys.push(strings.name_key(id, &service.service, KeyTag::Service));
            keys.push(strings.name_key(label, &service.label, KeyTag::Label));
        }
    }
    if let Some(backend) = &names.backend {
        if let Some(pod) = &backend.pod {
            let id = strings.intern(pod);
            out.varint(id.into());
            if KEYS {
                keys.push(strings.name_key(id, pod, KeyTag::Pod));
            }
        }
        if let Some(node) = &backend.node {
            out.varint(strings.intern(node).into());
        }
    }
    match &names.client {
        None => {}
        Some(ClientName::Pod { pod, node }) => {
            let id = strings.intern(pod);
            out.varint(id.into());
            if KEYS {
                keys.push(strings.name_key(id, pod, KeyTag::Pod));
            }
            if let Some(node) = node {
                out.varint(strings.intern(node).into());
            }
        }
        Some(ClientName::Node(node)) => out.varint(strings.intern(node).into()),
    }
    body.extend_from_slice(out.as_slice());
    prev.head = head;
    prev.unix_ns = decision.unix_ns;
    prev.cpu = event.cpu;
    prev.netns = event.netns;
    prev.flags = event.flags;
    prev.state = event.state;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A scheduler as a record names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchedulerRef {
    None,
    Known(&'static str),
    Id(u32),
}

/// A record decoded except for its names, which are still ids: enough to test the address
/// and time parts of a query before any name is looked up.
#[derive(Clone, Debug)]
pub struct Raw {
    pub seq: u64,
    pub unix_ns: i64,
    head: u64,
    kind: EventKind,
    dataplane: Dataplane,
    cpu: u32,
    netns: Option<u32>,
    conn: Option<u64>,
    proto: Proto,
    pub client: SocketAddr,
    vip: SocketAddr,
    pub backend: Option<SocketAddr>,
    fwd: Option<FwdMethod>,
    flags: u32,
    state: u32,
    scheduler: SchedulerRef,
    dest: Option<DestCounters>,
    /// Name ids in the order the record holds them (at most six).
    ids: [u32; 6],
}

/// Decodes a block's records one by one.
pub struct BodyDecoder<'a> {
    reader: Reader<'a>,
    prev: Previous,
    next_seq: u64,
    left: u32,
}

impl<'a> BodyDecoder<'a> {
    #[must_use]
    pub fn new(summary: &Summary, body: &'a [u8]) -> BodyDecoder<'a> {
        BodyDecoder {
            reader: Reader::new(body),
            prev: Previous::new(summary),
            next_seq: summary.seq_first,
            left: summary.count,
        }
    }

    /// The next record; `Ok(None)` after the last. A malformed record ends the block (what
    /// follows it cannot be found).
    pub fn next_raw(&mut self) -> Result<Option<Raw>, Malformed> {
        if self.left == 0 {
            return if self.reader.is_empty() {
                Ok(None)
            } else {
                Err(Malformed("bytes after the last record"))
            };
        }
        self.left -= 1;
        let raw = self.record()?;
        self.next_seq += 1;
        Ok(Some(raw))
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one field after the other, in the format's order"
    )]
    fn record(&mut self) -> Result<Raw, Malformed> {
        let r = &mut self.reader;
        let prev = &mut self.prev;
        let head = r.varint()? ^ prev.head;
        if head & !bit::ALL != 0 {
            return Err(Malformed("record head"));
        }
        let kind = EventKind::from_u32((head & bit::KIND) as u32).ok_or(Malformed("kind"))?;
        let dataplane = dataplane_of(head)?;
        let unix_ns = prev.unix_ns.wrapping_add(unzigzag(r.varint()?));
        let cpu = if head & bit::CPU_SAME != 0 {
            prev.cpu
        } else {
            r.varint_u32()?
        };
        let netns = match (head >> bit::NETNS_SHIFT) & 3 {
            0 => None,
            1 => Some(
                prev.netns
                    .ok_or(Malformed("netns as before, none before"))?,
            ),
            2 => Some(r.varint_u32()?),
            _ => return Err(Malformed("netns")),
        };
        let conn = if head & bit::CONN != 0 {
            let conn = prev.conn.wrapping_add(unzigzag(r.varint()?) as u64);
            prev.conn = conn;
            Some(conn)
        } else {
            None
        };
        let proto = match (head >> bit::PROTO_SHIFT) & 3 {
            0 => Proto::Tcp,
            1 => Proto::Udp,
            2 => Proto::Sctp,
            _ => Proto::Other(u16::try_from(r.varint()?).map_err(|_| Malformed("proto"))?),
        };
        let client = read_addr(r, head & bit::CLIENT_V6 != 0)?;
        let vip = read_addr(r, head & bit::VIP_V6 != 0)?;
        let backend = if head & bit::BACKEND != 0 {
            Some(read_addr(r, head & bit::BACKEND_V6 != 0)?)
        } else {
            None
        };
        let fwd = match (head >> bit::FWD_SHIFT) & 7 {
            0 => None,
            1 => Some(FwdMethod::Masq),
            2 => Some(FwdMethod::Local),
            3 => Some(FwdMethod::Tunnel),
            4 => Some(FwdMethod::Route),
            5 => Some(FwdMethod::Bypass),
            6 => Some(FwdMethod::Unknown(r.u8()?)),
            _ => return Err(Malformed("fwd")),
        };
        let flags = if head & bit::FLAGS_SAME != 0 {
            prev.flags
        } else {
            r.varint_u32()?
        };
        let state = if head & bit::STATE_SAME != 0 {
            prev.state
        } else {
            r.varint_u32()?
        };
        let scheduler = if head & bit::SCHEDULER != 0 {
            let number = r.varint()?;
            match number.checked_sub(KNOWN_SCHEDULERS.len() as u64) {
                None => SchedulerRef::Known(KNOWN_SCHEDULERS[number as usize]),
                Some(id) => {
                    SchedulerRef::Id(u32::try_from(id).map_err(|_| Malformed("scheduler id"))?)
                }
            }
        } else {
            SchedulerRef::None
        };
        let dest = if head & bit::DEST != 0 {
            let mut int = || -> Result<i32, Malformed> {
                i32::try_from(unzigzag(r.varint()?)).map_err(|_| Malformed("counter"))
            };
            let weight = int()?;
            let active_conns = if head & bit::ACTIVE != 0 {
                Some(int()?)
            } else {
                None
            };
            let inactive_conns = if head & bit::INACTIVE != 0 {
                Some(int()?)
            } else {
                None
            };
            Some(DestCounters {
                weight,
                active_conns,
                inactive_conns,
            })
        } else {
            None
        };
        let mut ids = [0u32; 6];
        for slot in ids.iter_mut().take(name_count(head)?) {
            *slot = r.varint_u32()?;
        }
        prev.head = head;
        prev.unix_ns = unix_ns;
        prev.cpu = cpu;
        prev.netns = netns;
        prev.flags = flags;
        prev.state = state;
        Ok(Raw {
            seq: self.next_seq,
            unix_ns,
            head,
            kind,
            dataplane,
            cpu,
            netns,
            conn,
            proto,
            client,
            vip,
            backend,
            fwd,
            flags,
            state,
            scheduler,
            dest,
            ids,
        })
    }
}

/// Name ids a record with `head` holds.
fn name_count(head: u64) -> Result<usize, Malformed> {
    let mut n = 0;
    if head & bit::SERVICE != 0 {
        n += if head & bit::SERVICE_IS_LABEL != 0 {
            1
        } else {
            2
        };
    }
    if head & bit::BACKEND_NAME != 0 {
        n += usize::from(head & bit::BACKEND_POD != 0) + usize::from(head & bit::BACKEND_NODE != 0);
    }
    match (head >> bit::CLIENT_NAME_SHIFT) & 3 {
        0 => {}
        1 => n += 1 + usize::from(head & bit::CLIENT_POD_NODE != 0),
        2 => n += 1,
        _ => return Err(Malformed("client name")),
    }
    Ok(n)
}

impl Raw {
    /// The name ids the record refers to.
    #[must_use]
    pub fn name_ids(&self) -> &[u32] {
        &self.ids[..name_count(self.head).unwrap_or(0)]
    }

    /// The owned scheduler name's id, when the record has one.
    #[must_use]
    pub fn scheduler_id(&self) -> Option<u32> {
        match self.scheduler {
            SchedulerRef::Id(id) => Some(id),
            _ => None,
        }
    }

    /// The exact parts of `query` a record answers without its names (time, client,
    /// backend): false means [`Query::matches`] is false.
    #[must_use]
    pub fn may_match(&self, query: &Query) -> bool {
        query.since.is_none_or(|t| self.unix_ns >= t)
            && query.until.is_none_or(|t| self.unix_ns <= t)
            && query.client.is_none_or(|want| want.matches(self.client))
            && query
                .backend
                .is_none_or(|want| self.backend.is_some_and(|addr| want.matches(addr)))
    }

    /// The ids of the service label, the service `namespace/name`, the backend pod and the
    /// client pod, where the record has them.
    fn query_ids(&self) -> [Option<u32>; 4] {
        let head = self.head;
        let mut ids = self.name_ids().iter().copied();
        let mut out = [None; 4];
        if head & bit::SERVICE != 0 {
            out[0] = ids.next();
            out[1] = if head & bit::SERVICE_IS_LABEL != 0 {
                out[0]
            } else {
                ids.next()
            };
        }
        if head & bit::BACKEND_NAME != 0 {
            if head & bit::BACKEND_POD != 0 {
                out[2] = ids.next();
            }
            if head & bit::BACKEND_NODE != 0 {
                ids.next();
            }
        }
        if (head >> bit::CLIENT_NAME_SHIFT) & 3 == 1 {
            out[3] = ids.next();
        }
        out
    }

    /// The name parts of a query, by id: false means [`Query::matches`] is false.
    #[must_use]
    pub fn may_match_names(&self, want: &NameIds) -> bool {
        let [label, service, backend_pod, client_pod] = self.query_ids();
        let pod_ok = match want.pod {
            None => true,
            Some(None) => false,
            Some(Some(id)) => backend_pod == Some(id) || client_pod == Some(id),
        };
        pod_ok
            && match want.service {
                None => true,
                Some((_, None)) => false,
                Some((true, Some(id))) => label == Some(id),
                Some((false, Some(id))) => service == Some(id),
            }
    }

    /// The decision, names looked up in `strings`; `None` when one is unknown.
    pub fn decision(&self, strings: &mut impl Names) -> Option<Decision> {
        let head = self.head;
        let mut ids = self.name_ids().iter();
        let mut next = || ids.next().and_then(|&id| strings.name(id));
        let service = if head & bit::SERVICE != 0 {
            let label = next()?;
            let service = if head & bit::SERVICE_IS_LABEL != 0 {
                label.clone()
            } else {
                next()?
            };
            Some(ServiceName {
                label,
                service,
                service_type: service_type_from(head >> bit::SERVICE_TYPE_SHIFT),
            })
        } else {
            None
        };
        let backend = if head & bit::BACKEND_NAME != 0 {
            Some(BackendName {
                pod: if head & bit::BACKEND_POD != 0 {
                    Some(next()?)
                } else {
                    None
                },
                node: if head & bit::BACKEND_NODE != 0 {
                    Some(next()?)
                } else {
                    None
                },
                serving: untristate((head >> bit::SERVING_SHIFT) & 3).ok()?,
                terminating: untristate((head >> bit::TERMINATING_SHIFT) & 3).ok()?,
            })
        } else {
            None
        };
        let client = match (head >> bit::CLIENT_NAME_SHIFT) & 3 {
            1 => {
                let pod = next()?;
                let node = if head & bit::CLIENT_POD_NODE != 0 {
                    Some(next()?)
                } else {
                    None
                };
                Some(ClientName::Pod { pod, node })
            }
            2 => Some(ClientName::Node(next()?)),
            _ => None,
        };
        let scheduler = match self.scheduler {
            SchedulerRef::None => None,
            SchedulerRef::Known(name) => Some(Cow::Borrowed(name)),
            SchedulerRef::Id(id) => Some(Cow::Owned(strings.name(id)?.to_string())),
        };
        Some(Decision {
            unix_ns: self.unix_ns,
            event: Event {
                kind: self.kind,
                dataplane: self.dataplane,
                timestamp_ns: self.unix_ns as u64,
                cpu: self.cpu,
                netns: self.netns,
                conn: self.conn,
                proto: self.proto,
                client: self.client,
                vip: self.vip,
                backend: self.backend,
                fwd: self.fwd,
                flags: self.flags,
                state: self.state,
                scheduler,
                dest: self.dest,
            },
            names: OwnedNames {
                service,
                backend,
                client,
            },
        })
    }
}

/// The names a query asks for, as ids of one store's strings, so that records are tested
/// without looking their names up. `Some(None)`: the store does not hold the name at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NameIds {
    pub pod: Option<Option<u32>>,
    /// (port given: the label is compared, else the `namespace/name`; its id)
    pub service: Option<(bool, Option<u32>)>,
}

impl NameIds {
    /// Resolves `query`'s names with `find`.
    pub fn resolve(query: &Query, mut find: impl FnMut(&str) -> Option<u32>) -> NameIds {
        NameIds {
            pod: query.pod.as_deref().map(&mut find),
            service: query
                .service
                .as_ref()
                .map(|s| (s.has_port(), find(s.as_str()))),
        }
    }

    /// True when a name the query asks for is not in the store: nothing there matches.
    #[must_use]
    pub fn impossible(&self) -> bool {
        matches!(self.pod, Some(None)) || matches!(self.service, Some((_, None)))
    }
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Sort key of a decision in an answer: time, then the run and sequence number that make it
/// unique (the same decision read from memory and from disk has the same key).
pub type Key = (i64, u64, u64);

/// The newest `limit` matching decisions seen so far, each once.
#[derive(Debug)]
pub struct Collector {
    limit: usize,
    kept: BTreeMap<Key, Decision>,
    /// A distinct matching decision was not kept.
    pub truncated: bool,
}

impl Collector {
    #[must_use]
    pub fn new(limit: usize) -> Collector {
        Collector {
            limit: limit.max(1),
            kept: BTreeMap::new(),
            truncated: false,
        }
    }

    /// False when no decision of the span can be kept, and that one was not kept is already
    /// recorded: a block of that span need not be read.
    #[must_use]
    pub fn wants_span(&self, newest_ns: i64) -> bool {
        !(self.truncated
            && self.kept.len() >= self.limit
            && self
                .kept
                .first_key_value()
                .is_some_and(|(k, _)| newest_ns < k.0))
    }

    /// False when a decision of key `key` would not be kept and that is already recorded.
    #[must_use]
    pub fn wants(&self, key: Key) -> bool {
        !(self.truncated
            && self.kept.len() >= self.limit
            && self.kept.first_key_value().is_some_and(|(k, _)| key < *k))
    }

    /// Offers a matching decision.
    pub fn offer(&mut self, key: Key, decision: Decision) {
        if self.kept.contains_key(&key) {
            return;
        }
        if self.kept.len() < self.limit {
            self.kept.insert(key, decision);
            return;
        }
        self.truncated = true;
        if self.kept.first_key_value().is_some_and(|(k, _)| key > *k) {
            self.kept.pop_first();
            self.kept.insert(key, decision);
        }
    }

    /// The kept decisions, oldest first.
    #[must_use]
    pub fn into_decisions(self) -> Vec<Decision> {
        self.kept.into_values().collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Ids for tests: a plain table.
    #[derive(Default)]
    pub(crate) struct Table {
        ids: HashMap<String, u32>,
        names: Vec<Arc<str>>,
    }

    impl Intern for Table {
        fn intern(&mut self, name: &Arc<str>) -> u32 {
            self.intern_str(name)
        }
        fn intern_str(&mut self, name: &str) -> u32 {
            if let Some(&id) = self.ids.get(name) {
                return id;
            }
            let id = self.names.len() as u32;
            self.names.push(name.into());
            self.ids.insert(name.to_owned(), id);
            id
        }
    }

    impl Names for Table {
        fn name(&mut self, id: u32) -> Option<Arc<str>> {
            self.names.get(id as usize).cloned()
        }
    }

    /// A small deterministic generator (xorshift) so the varied decisions are reproducible.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        pub(crate) fn chance(&mut self, in_n: u64) -> bool {
            self.below(in_n) == 0
        }
    }

    fn opt<T>(rng: &mut Rng, make: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        let value = make(rng);
        (!rng.chance(4)).then_some(value)
    }

    /// Decision `i` of a varied stream: IPv4 and IPv6, every kind, every optional part absent
    /// sometimes, names with and without each part, known and unknown schedulers.
    #[expect(clippy::too_many_lines, reason = "one varied part after the other")]
    pub(crate) fn varied(i: u64, rng: &mut Rng) -> Decision {
        let v6 = rng.chance(5);
        let ip = |rng: &mut Rng, base: u32| -> IpAddr {
            let n = base + rng.below(300) as u32;
            if v6 {
                IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (n >> 16) as u16,
                    n as u16,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(n))
            }
        };
        let kind = EventKind::ALL[rng.below(5) as usize];
        let client = SocketAddr::new(ip(rng, 0x0a00_0000), rng.below(65536) as u16);
        let vip = SocketAddr::new(ip(rng, 0xac10_0000), [80, 443, 53][rng.below(3) as usize]);
        let has_backend = kind != EventKind::NoDest;
        let backend = has_backend.then(|| SocketAddr::new(ip(rng, 0x0a01_0000), 8080));
        let scheduler = match rng.below(6) {
            0 => None,
            1 => Some(Cow::Owned(format!("custom{}", rng.below(3)))),
            n => Some(Cow::Borrowed(KNOWN_SCHEDULERS[(n as usize * 3) % 14])),
        };
        let fwd = match rng.below(8) {
            0 => None,
            1 => Some(FwdMethod::Unknown(7)),
            2 => Some(FwdMethod::Local),
            3 => Some(FwdMethod::Route),
            4 => Some(FwdMethod::Tunnel),
            5 => Some(FwdMethod::Bypass),
            _ => Some(FwdMethod::Masq),
        };
        let dest = opt(rng, |r| DestCounters {
            weight: r.below(5) as i32 - 1,
            active_conns: opt(r, |r| r.below(100_000) as i32),
            inactive_conns: opt(r, |r| i32::MIN + r.below(3) as i32),
        });
        let pod = |rng: &mut Rng| -> Arc<str> {
            format!("ns-{}/pod-{}", rng.below(5), rng.below(50)).into()
        };
        let node = |rng: &mut Rng| -> Arc<str> { format!("node-{}", rng.below(7)).into() };
        let service = opt(rng, |_| ()).map(|()| {
            let svc: Arc<str> = format!("ns-{}/svc-{}", rng.below(5), rng.below(20)).into();
            let label = if rng.chance(2) {
                svc.clone()
            } else {
                format!("{svc}:http").into()
            };
            ServiceName {
                label,
                service: svc,
                service_type: [
                    ServiceType::ClusterIp,
                    ServiceType::NodePort,
                    ServiceType::LoadBalancer,
                    ServiceType::ExternalName,
                ][rng.below(4) as usize],
            }
        });
        let tri = |rng: &mut Rng| [None, Some(false), Some(true)][rng.below(3) as usize];
        let backend_name = opt(rng, |_| ()).map(|()| BackendName {
            pod: opt(rng, pod),
            node: opt(rng, node),
            serving: tri(rng),
            terminating: tri(rng),
        });
        let client_name = match rng.below(4) {
            0 => None,
            1 => Some(ClientName::Node(node(rng))),
            _ => Some(ClientName::Pod {
                pod: pod(rng),
                node: opt(rng, node),
            }),
        };
        let unix_ns =
            1_795_713_172_000_000_000 + i as i64 * 1_000_000 + rng.below(5_000_000) as i64
                - 2_500_000;
        Decision {
            unix_ns,
            event: Event {
                kind,
                dataplane: Dataplane::ALL[rng.below(3) as usize],
                timestamp_ns: unix_ns as u64,
                cpu: rng.below(3) as u32,
                netns: opt(rng, |r| 4_026_531_840 + r.below(2) as u32),
                conn: has_backend.then(|| 0xffff_8f3a_0000_0000 + rng.below(1 << 30) * 64),
                proto: [Proto::Tcp, Proto::Udp, Proto::Sctp, Proto::Other(47)]
                    [rng.below(4) as usize],
                client,
                vip,
                backend,
                fwd,
                flags: [0x100, 0x100, 0x180, 0][rng.below(4) as usize],
                state: rng.below(3) as u32,
                scheduler,
                dest,
            },
            names: OwnedNames {
                service,
                backend: backend_name,
                client: client_name,
            },
        }
    }

    pub(crate) fn decode_all(
        summary: &Summary,
        body: &[u8],
        strings: &mut impl Names,
    ) -> Vec<Decision> {
        let mut decoder = BodyDecoder::new(summary, body);
        let mut out = Vec::new();
        while let Some(raw) = decoder.next_raw().expect("the block decodes") {
            assert_eq!(raw.seq, summary.seq_first + out.len() as u64);
            out.push(raw.decision(strings).expect("every name is known"));
        }
        out
    }

    #[test]
    fn blocks_round_trip_every_field() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut keys = Vec::new();
        for block in 0..40u64 {
            let n = 1 + rng.below(BLOCK_DECISIONS as u64) as usize;
            let decisions: Vec<Decision> = (0..n)
                .map(|i| varied(block * 10_000 + i as u64, &mut rng))
                .collect();
            let (summary, _bloom) = summarize(7, block * 10_000, &decisions, &mut keys);
            let mut table = Table::default();
            let mut body = Vec::new();
            encode_body(&summary, &decisions, &mut table, &mut body);
            let decoded = decode_all(&summary, &body, &mut table);
            assert_eq!(decoded.len(), decisions.len());
            for (want, have) in decisions.iter().zip(&decoded) {
                assert_eq!(want, have, "decision round trip");
                if let Some(Cow::Borrowed(_)) = &want.event.scheduler {
                    assert!(
                        matches!(have.event.scheduler, Some(Cow::Borrowed(_))),
                        "known schedulers stay static"
                    );
                }
            }
        }
    }

    #[test]
    fn printed_json_is_the_same_after_a_round_trip() {
        use crate::clock::WallClock;
        let mut rng = Rng(99);
        let decisions: Vec<Decision> = (0..2000).map(|i| varied(i, &mut rng)).collect();
        let mut keys = Vec::new();
        let (summary, _) = summarize(1, 0, &decisions, &mut keys);
        let mut table = Table::default();
        let mut body = Vec::new();
        encode_body(&summary, &decisions, &mut table, &mut body);
        let decoded = decode_all(&summary, &body, &mut table);
        let clock = WallClock::with_offset(0);
        for (want, have) in decisions.iter().zip(&decoded) {
            let mut a = Vec::new();
            let mut b = Vec::new();
            crate::output::json::write_line(&mut a, &clock, &want.event, &want.names.names(), None)
                .expect("a Vec takes it");
            crate::output::json::write_line(&mut b, &clock, &have.event, &have.names.names(), None)
                .expect("a Vec takes it");
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn one_pass_encoding_is_the_two_pass_one() {
        let mut rng = Rng(31);
        let decisions: Vec<Decision> = (0..3000).map(|i| varied(i, &mut rng)).collect();
        let mut keys = Vec::new();
        let (summary, bloom) = summarize(5, 100, &decisions, &mut keys);
        let mut body = Vec::new();
        encode_body(&summary, &decisions, &mut Table::default(), &mut body);
        let mut set = KeySet::default();
        for _ in 0..2 {
            let mut one = Vec::new();
            let block = encode_block(
                5,
                100,
                &decisions,
                &mut Table::default(),
                &mut set,
                &mut one,
            );
            assert_eq!(block, (summary.clone(), bloom.clone()));
            assert_eq!(one, body);
        }
    }

    #[test]
    fn the_bloom_filter_never_misses_a_key() {
        let mut rng = Rng(5);
        let decisions: Vec<Decision> = (0..BLOCK_DECISIONS as u64)
            .map(|i| varied(i, &mut rng))
            .collect();
        let mut keys = Vec::new();
        let (_, bloom) = summarize(1, 0, &decisions, &mut keys);
        for decision in &decisions {
            let mut own = Vec::new();
            decision_keys(decision, &mut own);
            assert!(bloom.may_contain_all(&own), "a key of the block is missed");
        }
        let misses = (0..10_000u64)
            .filter(|i| bloom.may_contain(key_hash(KeyTag::Pod, format!("absent/{i}").as_bytes())))
            .count();
        assert!(misses < 500, "{misses} false positives in 10000");
    }

    #[test]
    fn damaged_bodies_are_errors_not_panics() {
        let mut rng = Rng(11);
        let decisions: Vec<Decision> = (0..300).map(|i| varied(i, &mut rng)).collect();
        let mut keys = Vec::new();
        let (summary, _) = summarize(1, 0, &decisions, &mut keys);
        let mut table = Table::default();
        let mut body = Vec::new();
        encode_body(&summary, &decisions, &mut table, &mut body);
        for cut in (0..body.len()).step_by(7) {
            let mut decoder = BodyDecoder::new(&summary, &body[..cut]);
            let mut result = Ok(Some(()));
            while let Ok(Some(())) = result {
                result = decoder.next_raw().map(|r| r.map(|_| ()));
            }
            assert!(
                result.is_err(),
                "a body cut at {cut} of {} decodes",
                body.len()
            );
        }
        for i in 0..body.len() {
            let mut bad = body.clone();
            bad[i] ^= 0xa5;
            let mut decoder = BodyDecoder::new(&summary, &bad);
            while let Ok(Some(raw)) = decoder.next_raw() {
                let _ = raw.decision(&mut table);
            }
        }
    }

    #[test]
    fn the_collector_keeps_the_newest_once() {
        let mut rng = Rng(3);
        let d = varied(0, &mut rng);
        let mut c = Collector::new(3);
        for t in [5, 1, 9, 9, 7, 3] {
            c.offer((t, 1, t as u64), d.clone());
        }
        assert!(c.truncated);
        let mut c2 = Collector::new(3);
        for t in [5, 1, 9] {
            c2.offer((t, 1, t as u64), d.clone());
            c2.offer((t, 1, t as u64), d.clone());
        }
        assert!(!c2.truncated, "duplicates are not more matches");
        assert_eq!(c.kept.keys().map(|k| k.0).collect::<Vec<_>>(), [5, 7, 9]);
    }
}
