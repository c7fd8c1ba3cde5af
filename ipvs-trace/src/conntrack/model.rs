//! A conntrack entry as ctnetlink reports it, typed: the two tuples, status and mark.

use std::fmt;
use std::net::SocketAddr;

use crate::events::Proto;

/// One direction of a connection: protocol, source and destination `ip:port`. Both addresses
/// are of one family (the kernel keys its table by family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl fmt::Display for Tuple {
    /// `TCP 10.0.0.1:40000 -> 10.0.0.2:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.proto, self.src, self.dst)
    }
}

/// What the kernel's conntrack table holds for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// As the first packet arrived (for an IPVS connection: client -> VIP:vport).
    pub orig: Tuple,
    /// What replies look like (for an IPVS Masq connection with `net.ipv4.vs.conntrack=1`:
    /// pod:port -> client, which IPVS writes into the entry before the packet leaves).
    pub reply: Tuple,
    pub status: Status,
    /// `CTA_MARK`: absent on kernels built without connection marks.
    pub mark: Option<u32>,
}

/// `enum ip_conntrack_status` bits (`include/uapi/linux/netfilter/nf_conntrack_common.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Status(pub u32);

impl Status {
    /// Names of the bits, as conntrack-tools spell them, in bit order. Bit 12 was UNTRACKED
    /// before 4.14 and is NAT_CLASH since 5.8; neither can be set on an entry of the table.
    const NAMES: [&'static str; 16] = [
        "EXPECTED",
        "SEEN_REPLY",
        "ASSURED",
        "CONFIRMED",
        "SRC_NAT",
        "DST_NAT",
        "SEQ_ADJUST",
        "SRC_NAT_DONE",
        "DST_NAT_DONE",
        "DYING",
        "FIXED_TIMEOUT",
        "TEMPLATE",
        "NAT_CLASH",
        "HELPER",
        "OFFLOAD",
        "HW_OFFLOAD",
    ];

    pub const CONFIRMED: u32 = 1 << 3;
    /// `IPS_DST_NAT`: the entry's destination was translated (a DNAT binding that changed the
    /// tuple; netfilter's null bindings, IPVS connections' included, leave it clear).
    pub const DST_NAT: u32 = 1 << 5;

    #[must_use]
    pub fn dst_nat(self) -> bool {
        self.0 & Status::DST_NAT != 0
    }

    /// Each set bit by name; a bit newer kernels added shows as `0x...`, never dropped.
    #[must_use]
    pub fn names(self) -> Vec<String> {
        (0..32)
            .map(|bit| 1u32 << bit)
            .filter(|mask| self.0 & mask != 0)
            .map(|mask| {
                Status::NAMES
                    .get(mask.trailing_zeros() as usize)
                    .map_or_else(|| format!("{mask:#x}"), |name| (*name).to_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_every_bit_in_order() {
        assert_eq!(Status(0).names(), Vec::<String>::new());
        assert_eq!(Status(0x0e).names(), ["SEEN_REPLY", "ASSURED", "CONFIRMED"]);
        assert_eq!(
            Status(0x8001_0008).names(),
            ["CONFIRMED", "0x10000", "0x80000000"]
        );
    }

    #[test]
    fn tuple_prints_like_a_flow() {
        let tuple = Tuple {
            proto: Proto::Tcp,
            src: "[fd00::1]:40000".parse().unwrap(),
            dst: "10.0.0.2:80".parse().unwrap(),
        };
        assert_eq!(tuple.to_string(), "TCP [fd00::1]:40000 -> 10.0.0.2:80");
    }
}
