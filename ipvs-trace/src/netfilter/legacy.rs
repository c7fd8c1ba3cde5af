//! The legacy xtables `nat` table (iptables-legacy, ip6tables-legacy), read as
//! `iptables-legacy-save` reads it: `getsockopt(IPT_SO_GET_INFO)` for its size, then
//! `getsockopt(IPT_SO_GET_ENTRIES)` for the blob of `struct ipt_entry` (or `ip6t_entry`), each
//! with its matches and target (`include/uapi/linux/netfilter_ipv4/ip_tables.h`,
//! `netfilter_ipv6/ip6_tables.h`, `netfilter/x_tables.h`).
//!
//! The blob is the rule set as the kernel holds it: entries one after another, a user chain
//! opened by an `ERROR` target naming it, jumps as offsets into the blob, verdicts as
//! `-verdict - 1`. [`parse_capture`] turns it into [`ChainMap`] rules: the entry's own address and
//! protocol fields, then the xtables matches and target through [`super::rule`], as
//! iptables-nft's `match`/`target` expressions.
//!
//! Reading a legacy table that does not exist would create it (`ip_tables` instantiates a
//! table on first use in a network namespace, hooks and all), so the table is read only when
//! `/proc/net/ip_tables_names` (`ip6_tables_names`) already lists it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use super::chains::ChainMap;
use super::nft::Verdict;
use super::rule::{xt_target, Action, RuleView};
use crate::ipvs::{DecodeError, Family};

/// `IPT_SO_GET_INFO` / `IP6T_SO_GET_INFO`.
const SO_GET_INFO: libc::c_int = 64;
/// `IPT_SO_GET_ENTRIES` / `IP6T_SO_GET_ENTRIES`.
const SO_GET_ENTRIES: libc::c_int = 65;
/// `XT_TABLE_MAXNAMELEN`.
const TABLE_NAME_LEN: usize = 32;
/// `sizeof(struct ipt_getinfo)`: name, valid_hooks, hook_entry[5], underflow[5],
/// num_entries, size.
const GETINFO_LEN: usize = TABLE_NAME_LEN + 4 + 20 + 20 + 4 + 4;
/// `sizeof(struct ipt_get_entries)`: name, size, then the entries (8-aligned: counters are
/// 64-bit).
const GET_ENTRIES_HEADER: usize = 40;
/// The largest table read: a large cluster's kube-proxy writes tens of MiB.
const MAX_TABLE_SIZE: usize = 256 << 20;
/// `sizeof(struct xt_entry_match)` / `xt_entry_target` header: size, name[29], revision.
const XT_HEADER: usize = 32;
const XT_NAME_LEN: usize = 29;
/// `XT_ERROR_TARGET`: the target that opens a user chain (and ends the table).
const ERROR_TARGET: &str = "ERROR";
/// Names of the built-in chains, by hook number (`NF_INET_*`).
const HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// `IPT_INV_SRCIP`, `IPT_INV_DSTIP`, `IPT_INV_PROTO` (the same bits for IPv6).
const INV_SRCIP: u8 = 0x08;
const INV_DSTIP: u8 = 0x10;
const INV_PROTO: u8 = 0x40;

/// The layout of an entry of one family.
struct Layout {
    family: Family,
    /// `sizeof(struct ipt_entry)` / `ip6t_entry`: where the matches start.
    entry_len: usize,
    /// Offsets of `target_offset` and `next_offset` (u16 each).
    target_offset_at: usize,
}

const IPV4: Layout = Layout {
    family: Family::V4,
    entry_len: 112,
    target_offset_at: 88,
};
const IPV6: Layout = Layout {
    family: Family::V6,
    entry_len: 168,
    target_offset_at: 140,
};

/// The legacy `nat` table of `family` as the kernel gives it, if it exists: the
/// `IPT_SO_GET_INFO` answer (`struct ipt_getinfo`) followed by the entries. What
/// `--debug-dump-netlink` records and [`parse_capture`] reads.
pub fn capture(family: Family) -> io::Result<Option<Vec<u8>>> {
    let names = match family {
        Family::V4 => "/proc/net/ip_tables_names",
        Family::V6 => "/proc/net/ip6_tables_names",
    };
    match std::fs::read_to_string(names) {
        Ok(text) if text.lines().any(|l| l.trim() == super::kube_ipt::TABLE) => entries(family),
        // No legacy nat table here, or no ip_tables at all.
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The chains of a [`capture`].
pub fn parse_capture(family: Family, capture: &[u8]) -> Result<ChainMap, DecodeError> {
    let Some((info, blob)) = capture.split_first_chunk::<GETINFO_LEN>() else {
        return Err(DecodeError::new(format!(
            "a legacy table capture of {} bytes, shorter than struct ipt_getinfo",
            capture.len()
        )));
    };
    let valid_hooks = u32_at(info, TABLE_NAME_LEN).unwrap_or(0);
    let mut hook_entry = [0u32; 5];
    for (i, entry) in hook_entry.iter_mut().enumerate() {
        *entry = u32_at(info, TABLE_NAME_LEN + 4 + 4 * i).unwrap_or(0);
    }
    parse(
        family,
        &Info {
            valid_hooks,
            hook_entry,
        },
        blob,
    )
}

/// What `IPT_SO_GET_INFO` says of the table: where each hook's chain starts.
struct Info {
    valid_hooks: u32,
    hook_entry: [u32; 5],
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// The table's info and entries (a [`capture`]), read twice more if it changed between the
/// two calls (the kernel answers EAGAIN when the size asked for is no longer the table's).
fn entries(family: Family) -> io::Result<Option<Vec<u8>>> {
    let (domain, level) = match family {
        Family::V4 => (libc::AF_INET, libc::IPPROTO_IP),
        Family::V6 => (libc::AF_INET6, libc::IPPROTO_IPV6),
    };
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor just returned by socket(2), owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut name = [0u8; TABLE_NAME_LEN];
    name[..super::kube_ipt::TABLE.len()].copy_from_slice(super::kube_ipt::TABLE.as_bytes());
    for _ in 0..3 {
        let mut info = [0u8; GETINFO_LEN];
        info[..TABLE_NAME_LEN].copy_from_slice(&name);
        match getsockopt(&socket, level, SO_GET_INFO, &mut info) {
            Ok(()) => {}
            // The table vanished, or ip_tables went away, since the names were listed.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOPROTOOPT)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let size = u32_at(&info, GETINFO_LEN - 4).unwrap_or(0) as usize;
        if size > MAX_TABLE_SIZE {
            return Err(io::Error::other(format!(
                "the legacy nat table is {size} bytes, more than the {MAX_TABLE_SIZE} read"
            )));
        }
        let mut request = vec![0u8; GET_ENTRIES_HEADER + size];
        request[..TABLE_NAME_LEN].copy_from_slice(&name);
        request[TABLE_NAME_LEN..TABLE_NAME_LEN + 4].copy_from_slice(&(size as u32).to_ne_bytes());
        match getsockopt(&socket, level, SO_GET_ENTRIES, &mut request) {
            Ok(()) => {
                let mut capture = info.to_vec();
                capture.extend_from_slice(&request[GET_ENTRIES_HEADER..]);
                return Ok(Some(capture));
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "the legacy nat table kept changing while it was read",
    ))
}

fn getsockopt(
    socket: &OwnedFd,
    level: libc::c_int,
    option: libc::c_int,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut len = libc::socklen_t::try_from(buf.len()).map_err(io::Error::other)?;
    // SAFETY: buf is valid for len bytes, and the kernel writes at most len.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            option,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A NUL-padded name.
fn name_of(bytes: &[u8]) -> String {
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

/// What an entry's target is.
enum Target {
    /// A standard target: a verdict (negative) or a jump to the entry at an offset.
    Standard {
        verdict: i32,
        goto: bool,
    },
    /// An `ERROR` target: a user chain's head, or the table's end.
    Error(String),
    Other(Action),
}

/// The chains of a legacy table's entries `blob`, whose hooks start where `info` says.
fn parse(family: Family, info: &Info, blob: &[u8]) -> Result<ChainMap, DecodeError> {
    let layout = match family {
        Family::V4 => &IPV4,
        Family::V6 => &IPV6,
    };
    // First pass: each entry's offset, and the chain it belongs to.
    let mut entries: Vec<(usize, RuleView, Target)> = Vec::new();
    let mut at = 0;
    while at < blob.len() {
        let entry = &blob[at..];
        let bad = |what: &str| DecodeError::new(format!("legacy entry at {at}: {what}"));
        let target_offset =
            usize::from(u16_at(entry, layout.target_offset_at).ok_or_else(|| bad("cut short"))?);
        let next_offset = usize::from(
            u16_at(entry, layout.target_offset_at + 2).ok_or_else(|| bad("cut short"))?,
        );
        if target_offset < layout.entry_len
            || next_offset < target_offset + XT_HEADER
            || next_offset > entry.len()
        {
            return Err(bad(&format!(
                "target at {target_offset}, next entry at {next_offset}, {} bytes left",
                entry.len()
            )));
        }
        let mut rule = header(layout, entry);
        let mut m = layout.entry_len;
        while m < target_offset {
            let size = usize::from(u16_at(entry, m).ok_or_else(|| bad("match cut short"))?);
            if size < XT_HEADER || m + size > target_offset {
                return Err(bad(&format!("a match of {size} bytes at {m}")));
            }
            let name = name_of(&entry[m + 2..m + 2 + XT_NAME_LEN]);
            let rev = u32::from(entry[m + XT_HEADER - 1]);
            rule.xt_match(&name, rev, &entry[m + XT_HEADER..m + size]);
            m += size;
        }
        let t = &entry[target_offset..next_offset];
        let name = name_of(&t[2..2 + XT_NAME_LEN]);
        let data = &t[XT_HEADER..];
        let target = match name.as_str() {
            "" => Target::Standard {
                verdict: u32_at(data, 0).ok_or_else(|| bad("standard target cut short"))? as i32,
                goto: is_goto(layout, entry),
            },
            ERROR_TARGET => Target::Error(name_of(data)),
            _ => Target::Other(xt_target(
                &name,
                u32::from(t[XT_HEADER - 1]),
                match family {
                    Family::V4 => super::nft::NFPROTO_IPV4,
                    Family::V6 => super::nft::NFPROTO_IPV6,
                },
                data,
            )),
        };
        entries.push((at, rule, target));
        at += next_offset;
    }

    // Chains: a built-in one starts at its hook's entry, a user one after its ERROR head.
    let mut starts: HashMap<usize, String> = HashMap::new();
    for (hook, name) in HOOKS.iter().enumerate() {
        if info.valid_hooks & (1 << hook) != 0 {
            starts.insert(info.hook_entry[hook] as usize, (*name).to_owned());
        }
    }
    // libiptc points a jump at the first rule after the chain's head; the head itself is
    // accepted too.
    let mut jump_to: HashMap<usize, String> = starts.clone();
    for (i, (offset, _, target)) in entries.iter().enumerate() {
        if let Target::Error(chain) = target {
            if chain != ERROR_TARGET {
                jump_to.insert(*offset, chain.clone());
                if let Some((next, _, _)) = entries.get(i + 1) {
                    jump_to.insert(*next, chain.clone());
                }
            }
        }
    }

    let mut map = ChainMap::default();
    let mut current: Option<String> = None;
    for (offset, mut rule, target) in entries {
        if let Some(chain) = starts.get(&offset) {
            current = Some(chain.clone());
        }
        rule.action = match target {
            Target::Error(chain) => {
                current = (chain != ERROR_TARGET).then_some(chain);
                if let Some(chain) = &current {
                    map.chains.entry(chain.clone()).or_default();
                }
                continue;
            }
            Target::Standard { verdict, goto } => standard(verdict, goto, &jump_to),
            Target::Other(action) => action,
        };
        if let Some(chain) = &current {
            map.chains.entry(chain.clone()).or_default().push(rule);
        }
    }
    Ok(map)
}

/// `-verdict - 1` for NF_DROP, NF_ACCEPT, XT_RETURN (`-NF_REPEAT - 1`); an offset for a jump.
fn standard(verdict: i32, goto: bool, jump_to: &HashMap<usize, String>) -> Action {
    const XT_RETURN: i32 = -5;
    match verdict {
        -1 => Action::Verdict(Verdict::Drop),
        -2 => Action::Verdict(Verdict::Accept),
        XT_RETURN => Action::Verdict(Verdict::Return),
        offset if offset >= 0 => match jump_to.get(&(offset as usize)) {
            Some(chain) if goto => Action::Verdict(Verdict::Goto(chain.clone())),
            Some(chain) => Action::Verdict(Verdict::Jump(chain.clone())),
            // A jump to the next entry (the fall-through iptables writes) or elsewhere.
            None => Action::Other,
        },
        other => Action::Verdict(Verdict::Other(other)),
    }
}

/// `IPT_F_GOTO` (0x02 in `ipt_ip.flags`) / `IP6T_F_GOTO` (0x04 in `ip6t_ip6.flags`).
fn is_goto(layout: &Layout, entry: &[u8]) -> bool {
    match layout.family {
        Family::V4 => entry.get(82).is_some_and(|f| f & 0x02 != 0),
        Family::V6 => entry.get(131).is_some_and(|f| f & 0x04 != 0),
    }
}

/// The conditions of an entry's own fields: `-s`, `-d`, `-i`, `-o`, `-p`, `-f`.
fn header(layout: &Layout, entry: &[u8]) -> RuleView {
    let mut rule = RuleView::default();
    let (addr_len, proto_at, flags_at, invflags_at) = match layout.family {
        // struct ipt_ip: src, dst, smsk, dmsk (4 each), iniface, outiface, their masks (16
        // each), proto (u16) at 80, flags at 82, invflags at 83.
        Family::V4 => (4, 80, 82, 83),
        // struct ip6t_ip6: the same with 16-byte addresses; proto at 128, tos 130, flags 131,
        // invflags 132.
        Family::V6 => (16, 128, 131, 132),
    };
    let field = |i: usize| &entry[i * addr_len..(i + 1) * addr_len];
    let (dst, smsk, dmsk) = (field(1), field(2), field(3));
    let interfaces = &entry[4 * addr_len..4 * addr_len + 64];
    let flags = entry[flags_at];
    let invflags = entry[invflags_at];
    let all = |b: &[u8], v: u8| b.iter().all(|&x| x == v);
    if !all(smsk, 0) || invflags & INV_SRCIP != 0 {
        rule.other_conditions += 1;
    }
    if all(dmsk, 0xff) && invflags & INV_DSTIP == 0 {
        let addr = match layout.family {
            Family::V4 => IpAddr::from(Ipv4Addr::from(<[u8; 4]>::try_from(dst).unwrap_or([0; 4]))),
            Family::V6 => {
                IpAddr::from(Ipv6Addr::from(<[u8; 16]>::try_from(dst).unwrap_or([0; 16])))
            }
        };
        rule.set_daddr(addr);
    } else if !all(dmsk, 0) || invflags & INV_DSTIP != 0 {
        rule.other_conditions += 1;
    }
    if !all(interfaces, 0) {
        rule.other_conditions += 1;
    }
    let proto = u16::from_ne_bytes([entry[proto_at], entry[proto_at + 1]]);
    // ip6t_ip6 says whether a protocol is set (IP6T_F_PROTO) rather than by proto 0.
    let proto_set = match layout.family {
        Family::V4 => proto != 0,
        Family::V6 => flags & 0x01 != 0,
    };
    if proto_set {
        match u8::try_from(proto) {
            Ok(p) if invflags & INV_PROTO == 0 => rule.set_proto(p),
            _ => rule.other_conditions += 1,
        }
    }
    // IPT_F_FRAG (`-f`) for IPv4, IP6T_F_TOS for IPv6.
    let tos_or_frag = match layout.family {
        Family::V4 => 0x01,
        Family::V6 => 0x02,
    };
    if flags & tos_or_frag != 0 {
        rule.other_conditions += 1;
    }
    rule
}
