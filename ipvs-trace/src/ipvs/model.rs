//! The IPVS tables as the kernel reports them, typed: what `ipvsadm -Ln` shows, plus the
//! counters of `--stats` and `--rate`, and the fields ipvsadm hides (persistent connection
//! counts, address families, raw flags).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use crate::events::{FwdMethod, Proto};

/// The kernel's `AF_INET`.
pub const AF_INET: u16 = 2;
/// The kernel's `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Everything one read of the IPVS tables returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// `IPVS_CMD_GET_INFO`.
    pub info: Info,
    /// IPv4 before IPv6, then by protocol, address and port; firewall-mark services last.
    /// Each one's real servers by address.
    pub services: Vec<Service>,
}

/// `IPVS_CMD_GET_INFO`: the first line of `ipvsadm -Ln`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// `IP_VS_VERSION_CODE`, e.g. 0x010201 for 1.2.1.
    pub version: u32,
    /// Buckets of the connection hash table (`ip_vs_conn_tab_bits`).
    pub conn_table_size: u32,
}

impl Info {
    /// The version as ipvsadm prints it: `1.2.1`.
    #[must_use]
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}

/// An address family of the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// From the kernel's `AF_*` number; `None` for anything IPVS does not use.
    #[must_use]
    pub fn from_af(af: u16) -> Option<Family> {
        match af {
            AF_INET => Some(Family::V4),
            AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// `IP_VS_SVC_F_*`, the service flags (`ip_vs.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// `-p`: connections of one client go to one real server while a template lives.
    pub const PERSISTENT: u32 = 0x0001;
    /// The service is in the kernel's hash table (every live service is).
    pub const HASHED: u32 = 0x0002;
    /// `-o`: one-packet scheduling (UDP: every datagram is scheduled on its own).
    pub const ONE_PACKET: u32 = 0x0004;
    /// Scheduler flags 1 to 3 (`-b flag-1,...`; for sh: sh-fallback, sh-port).
    pub const SCHED1: u32 = 0x0008;
    pub const SCHED2: u32 = 0x0010;
    pub const SCHED3: u32 = 0x0020;

    #[must_use]
    pub fn persistent(self) -> bool {
        self.0 & Self::PERSISTENT != 0
    }

    #[must_use]
    pub fn hashed(self) -> bool {
        self.0 & Self::HASHED != 0
    }

    #[must_use]
    pub fn one_packet(self) -> bool {
        self.0 & Self::ONE_PACKET != 0
    }

    /// The names of the flags set, for JSON and the table: `persistent`, `hashed`,
    /// `one-packet`, `flag-1`..`flag-3` (`sh-fallback`, `sh-port` for the sh scheduler, as
    /// ipvsadm names them), and `0x...` for bits `ip_vs.h` does not define.
    #[must_use]
    pub fn names(self, scheduler: &str) -> Vec<String> {
        let sh = scheduler == "sh";
        let mut names = Vec::new();
        let mut rest = self.0;
        for (bit, name) in [
            (Self::PERSISTENT, "persistent"),
            (Self::HASHED, "hashed"),
            (Self::ONE_PACKET, "one-packet"),
            (Self::SCHED1, if sh { "sh-fallback" } else { "flag-1" }),
            (Self::SCHED2, if sh { "sh-port" } else { "flag-2" }),
            (Self::SCHED3, "flag-3"),
        ] {
            if rest & bit != 0 {
                names.push(name.to_owned());
                rest &= !bit;
            }
        }
        if rest != 0 {
            names.push(format!("{rest:#x}"));
        }
        names
    }
}

/// The persistence netmask (`-M`): which client addresses share a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Netmask {
    /// IPv4 services: a mask (`255.255.255.255` by default: one template per client).
    V4(Ipv4Addr),
    /// IPv6 services: a prefix length (128 by default).
    V6Prefix(u32),
}

impl Netmask {
    /// True for the default, which ipvsadm does not print.
    #[must_use]
    pub fn is_default(self) -> bool {
        match self {
            Netmask::V4(mask) => mask == Ipv4Addr::BROADCAST,
            Netmask::V6Prefix(len) => len == 128,
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::V4(mask) => mask.fmt(f),
            Netmask::V6Prefix(len) => len.fmt(f),
        }
    }
}

/// Counters since the service or real server was added (`ipvsadm -Ln --stats`) and the
/// estimator's rates over the last seconds (`--rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Connections IPVS scheduled (a reused connection entry is not counted).
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Connections per second.
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    /// Bytes per second.
    pub in_bps: u64,
    pub out_bps: u64,
}

/// A virtual service: one line of `ipvsadm -Ln` and its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub family: Family,
    /// TCP, UDP or SCTP; `None` for a firewall-mark service, which matches any protocol.
    pub proto: Option<Proto>,
    /// The virtual address; `None` for a firewall-mark service.
    pub addr: Option<SocketAddr>,
    /// `ipvsadm -A -f MARK`; `None` for a service by address.
    pub fwmark: Option<u32>,
    /// `rr`, `wrr`, `lc`, ... (`none` when the kernel has none bound).
    pub scheduler: String,
    /// Persistence engine (`-pe sip`), rarely set.
    pub persistence_engine: Option<String>,
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (meaningful with the persistent flag).
    pub timeout: u32,
    pub netmask: Netmask,
    pub stats: Stats,
    /// `true` when the kernel sent 64-bit counters (`IPVS_SVC_ATTR_STATS64`, 4.x and later);
    /// `false` when they come from the 32-bit set, whose packet and connection counts wrap.
    pub stats_64bit: bool,
    pub dests: Vec<Dest>,
}

impl Service {
    /// How the service is named in `ipvsadm -Ln`: `ip:port`, `[ip6]:port`, or the mark.
    #[must_use]
    pub fn key(&self) -> String {
        match (self.addr, self.fwmark) {
            (Some(addr), _) => addr.to_string(),
            (None, Some(mark)) => mark.to_string(),
            (None, None) => "-".to_owned(),
        }
    }

    /// The protocol column of `ipvsadm -Ln`: `TCP`, `UDP`, `SCTP`, or `FWM`.
    #[must_use]
    pub fn proto_label(&self) -> String {
        match self.proto {
            Some(proto) => proto.to_string(),
            None => "FWM".to_owned(),
        }
    }
}

/// A real server of a virtual service: one `->` line of `ipvsadm -Ln`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub addr: SocketAddr,
    /// The real server's own family (`IPVS_DEST_ATTR_ADDR_FAMILY`, 4.x and later; older kernels
    /// only allow the service's, which is taken then). Differs from the service's only for
    /// tunnelled mixed-family services.
    pub family: Family,
    pub fwd: FwdMethod,
    /// Share of new connections (wrr, wlc, ...); 0 stops new ones (a terminating endpoint).
    pub weight: u32,
    /// `-x`, `-y`: connection thresholds (0 = none).
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    /// Connection entries in ESTABLISHED (TCP).
    pub active_conns: u32,
    /// All other connection entries (SYN_RECV, TIME_WAIT, CLOSE, ..., UDP).
    pub inactive_conns: u32,
    /// Persistence templates pointing at this server.
    pub persist_conns: u32,
    pub stats: Stats,
}

#[cfg(test)]
impl Dest {
    /// An IPv4 Masq real server with no connections: the one shape the unit tests build.
    pub(crate) fn test_masq(addr: &str, weight: u32) -> Dest {
        Dest {
            addr: addr.parse().expect("an ip:port"),
            family: Family::V4,
            fwd: FwdMethod::Masq,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
            active_conns: 0,
            inactive_conns: 0,
            persist_conns: 0,
            stats: Stats::default(),
        }
    }
}
