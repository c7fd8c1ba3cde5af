//! The xtables match and target blobs kube-proxy's iptables rules carry, decoded against the
//! kernel's uapi headers: `xt_comment.h`, `xt_statistic.h`, `xt_addrtype.h`, `xt_tcpudp.h`,
//! and `nf_nat.h` (`struct nf_nat_ipv4_multi_range_compat`, `nf_nat_range`, `nf_nat_range2`,
//! the DNAT target's revisions 0, 1 and 2).
//!
//! iptables-nft hands the blobs to the kernel in `match`/`target` expressions (nft_compat),
//! iptables-legacy in `struct ipt_entry`; both are the same structs, in host byte order except
//! addresses and NAT ports. Each decoder checks the blob's length and says `None` for a blob
//! it cannot read, which makes the rule's condition unknown, never a guess.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an xtables match says about the packets a rule applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum XtMatch {
    /// `-m comment --comment TEXT`: no condition.
    Comment(String),
    /// `-m statistic --mode random --probability P`: the rule applies with probability `P`.
    Random(f64),
    /// `-m addrtype --dst-type LOCAL`: the destination is an address of this host.
    DstLocal,
    /// `-m tcp`/`-m udp` with `--dport P` (`Some(P)`) or no port condition (`None`).
    DstPort(Option<u16>),
    /// Any other condition (or one of the above with options this model does not read).
    Other,
}

/// A DNAT target's destination: one address, and the one port when the target sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTo {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

const XT_STATISTIC_MODE_RANDOM: u16 = 0;
const XT_STATISTIC_INVERT: u16 = 0x1;
/// `XT_ADDRTYPE_LOCAL` (`1 << RTN_LOCAL`).
const XT_ADDRTYPE_LOCAL: u16 = 1 << 2;
/// `NF_NAT_RANGE_MAP_IPS`.
const NF_NAT_RANGE_MAP_IPS: u32 = 1;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`.
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// The statistic match's probabilities are fractions of 2^31 (`random & 0x7fffffff < p`).
const PROBABILITY_SCALE: f64 = 2_147_483_648.0;

fn u16_at(info: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(info.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(info: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(info.get(at..at + 4)?.try_into().ok()?))
}

fn be16_at(info: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(info.get(at..at + 2)?.try_into().ok()?))
}

/// The match `name` (revision `rev`) with its info blob.
#[must_use]
pub fn decode_match(name: &str, rev: u32, info: &[u8]) -> XtMatch {
    let decoded = match (name, rev) {
        ("comment", _) => Some(XtMatch::Comment(comment(info))),
        ("statistic", 0) => statistic(info),
        ("addrtype", 0) => addrtype_v0(info),
        ("addrtype", 1) => addrtype_v1(info),
        ("tcp", 0) => ports(info, 11).filter(|_| tcp_plain(info)),
        ("udp", 0) => ports(info, 8),
        _ => None,
    };
    decoded.unwrap_or(XtMatch::Other)
}

/// `struct xt_comment_info { char comment[256]; }`.
fn comment(info: &[u8]) -> String {
    let text = info.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

/// `struct xt_statistic_info { __u16 mode; __u16 flags; union { struct { __u32 probability; }
/// random; ... } u; ... }`.
fn statistic(info: &[u8]) -> Option<XtMatch> {
    let mode = u16_at(info, 0)?;
    let flags = u16_at(info, 2)?;
    let probability = u32_at(info, 4)?;
    if mode != XT_STATISTIC_MODE_RANDOM || flags & XT_STATISTIC_INVERT != 0 {
        return None;
    }
    Some(XtMatch::Random(
        (f64::from(probability) / PROBABILITY_SCALE).min(1.0),
    ))
}

/// `struct xt_addrtype_info { __u16 source; __u16 dest; __u32 invert_source; __u32
/// invert_dest; }`.
fn addrtype_v0(info: &[u8]) -> Option<XtMatch> {
    let (source, dest) = (u16_at(info, 0)?, u16_at(info, 2)?);
    let (invert_source, invert_dest) = (u32_at(info, 4)?, u32_at(info, 8)?);
    (source == 0 && dest == XT_ADDRTYPE_LOCAL && invert_source == 0 && invert_dest == 0)
        .then_some(XtMatch::DstLocal)
}

/// `struct xt_addrtype_info_v1 { __u16 source; __u16 dest; __u32 flags; }`.
fn addrtype_v1(info: &[u8]) -> Option<XtMatch> {
    let (source, dest, flags) = (u16_at(info, 0)?, u16_at(info, 2)?, u32_at(info, 4)?);
    // The interface limits (flags 0x4, 0x8) narrow the match further: not "any local".
    (source == 0 && dest == XT_ADDRTYPE_LOCAL && flags == 0).then_some(XtMatch::DstLocal)
}

/// `struct xt_tcp`/`xt_udp`: `__u16 spts[2]; __u16 dpts[2];` then, for udp, `__u8 invflags`
/// (at 8); for tcp `option, flg_mask, flg_cmp, invflags` (at 11). Any inversion, or a source
/// port condition, is a condition this model does not read.
fn ports(info: &[u8], invflags_at: usize) -> Option<XtMatch> {
    let spts = (u16_at(info, 0)?, u16_at(info, 2)?);
    let dpts = (u16_at(info, 4)?, u16_at(info, 6)?);
    if spts != (0, u16::MAX) || *info.get(invflags_at)? != 0 {
        return None;
    }
    match dpts {
        (0, u16::MAX) => Some(XtMatch::DstPort(None)),
        (low, high) if low == high => Some(XtMatch::DstPort(Some(low))),
        _ => None,
    }
}

/// No TCP option or flag condition (`--tcp-option`, `--tcp-flags`, `--syn`).
fn tcp_plain(info: &[u8]) -> bool {
    info.get(8..11).is_some_and(|b| b == [0, 0, 0])
}

/// The DNAT target of revision `rev` of a table of `family` (`NFPROTO_IPV4` 2 or
/// `NFPROTO_IPV6` 10); `None` when it maps to a range or cannot be read.
#[must_use]
pub fn dnat(rev: u32, family: u8, info: &[u8]) -> Option<NatTo> {
    let (flags, min, max, min_port, max_port) = match rev {
        // struct nf_nat_ipv4_multi_range_compat { unsigned int rangesize; struct
        // nf_nat_ipv4_range { unsigned int flags; __be32 min_ip, max_ip; union
        // nf_conntrack_man_proto min, max; } range[1]; }
        0 => {
            if u32_at(info, 0)? != 1 {
                return None;
            }
            let min: [u8; 4] = info.get(8..12)?.try_into().ok()?;
            let max: [u8; 4] = info.get(12..16)?.try_into().ok()?;
            (
                u32_at(info, 4)?,
                IpAddr::from(Ipv4Addr::from(min)),
                IpAddr::from(Ipv4Addr::from(max)),
                be16_at(info, 16)?,
                be16_at(info, 18)?,
            )
        }
        // struct nf_nat_range { unsigned int flags; union nf_inet_addr min_addr, max_addr;
        // union nf_conntrack_man_proto min_proto, max_proto; }, and nf_nat_range2, which
        // adds base_proto after them.
        1 | 2 => {
            let addr = |at: usize| -> Option<IpAddr> {
                let bytes = info.get(at..at + 16)?;
                Some(match family {
                    10 => IpAddr::from(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
                    _ => IpAddr::from(Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?)),
                })
            };
            (
                u32_at(info, 0)?,
                addr(4)?,
                addr(20)?,
                be16_at(info, 36)?,
                be16_at(info, 38)?,
            )
        }
        _ => return None,
    };
    if flags & NF_NAT_RANGE_MAP_IPS == 0 || min != max {
        return None;
    }
    let port = if flags & NF_NAT_RANGE_PROTO_SPECIFIED == 0 {
        None
    } else if min_port == max_port {
        Some(min_port)
    } else {
        return None;
    };
    Some(NatTo { addr: min, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistic_probability() {
        // iptables writes lround(0x80000000 * 0.5).
        let mut info = vec![0u8; 24];
        info[4..8].copy_from_slice(&0x4000_0000u32.to_ne_bytes());
        assert_eq!(decode_match("statistic", 0, &info), XtMatch::Random(0.5));
        info[2..4].copy_from_slice(&XT_STATISTIC_INVERT.to_ne_bytes());
        assert_eq!(decode_match("statistic", 0, &info), XtMatch::Other);
        // nth mode.
        let mut nth = vec![0u8; 24];
        nth[0..2].copy_from_slice(&1u16.to_ne_bytes());
        assert_eq!(decode_match("statistic", 0, &nth), XtMatch::Other);
        assert_eq!(decode_match("statistic", 0, &[0; 3]), XtMatch::Other);
    }

    #[test]
    fn tcp_ports() {
        let tcp = |dpts: [u16; 2], inv: u8| {
            let mut info = Vec::new();
            for v in [0, u16::MAX, dpts[0], dpts[1]] {
                info.extend_from_slice(&v.to_ne_bytes());
            }
            info.extend_from_slice(&[0, 0, 0, inv]);
            decode_match("tcp", 0, &info)
        };
        assert_eq!(tcp([80, 80], 0), XtMatch::DstPort(Some(80)));
        assert_eq!(tcp([0, u16::MAX], 0), XtMatch::DstPort(None));
        assert_eq!(tcp([80, 90], 0), XtMatch::Other);
        // XT_TCP_INV_DSTPT: `! --dport 80`.
        assert_eq!(tcp([80, 80], 0x02), XtMatch::Other);
    }

    #[test]
    fn dnat_revisions() {
        let mut r2 = vec![0u8; 44];
        r2[0..4].copy_from_slice(&3u32.to_ne_bytes());
        r2[4..8].copy_from_slice(&[10, 180, 0, 1]);
        r2[20..24].copy_from_slice(&[10, 180, 0, 1]);
        r2[36..38].copy_from_slice(&80u16.to_be_bytes());
        r2[38..40].copy_from_slice(&80u16.to_be_bytes());
        let want = NatTo {
            addr: "10.180.0.1".parse().unwrap(),
            port: Some(80),
        };
        assert_eq!(dnat(2, 2, &r2), Some(want));
        assert_eq!(dnat(1, 2, &r2[..40]), Some(want));
        assert_eq!(dnat(2, 2, &r2[..30]), None, "cut short");
        let mut r0 = vec![0u8; 20];
        r0[0..4].copy_from_slice(&1u32.to_ne_bytes());
        r0[4..8].copy_from_slice(&3u32.to_ne_bytes());
        r0[8..12].copy_from_slice(&[10, 180, 0, 1]);
        r0[12..16].copy_from_slice(&[10, 180, 0, 1]);
        r0[16..18].copy_from_slice(&80u16.to_be_bytes());
        r0[18..20].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(dnat(0, 2, &r0), Some(want));
        // A range of addresses names no single endpoint.
        r0[15] = 9;
        assert_eq!(dnat(0, 2, &r0), None);
    }
}
