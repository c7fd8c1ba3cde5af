//! The kernel-side filter ([`KernelFilter`], written by userspace): decisions that cannot match
//! `--vip`, `--backend`, `--client`, `--proto`, `--event`, or the addresses the name filters
//! resolve to, are counted in [`drop::FILTERED`] and never reserve a record.
//!
//! Each test reads only what it compares, in the order of the probes' other reads, and only
//! when userspace asked for it: with no test set the cost is one array lookup and a load. A
//! field that cannot be read lets the decision through, so that the record's own read counts it
//! as unreadable instead of hiding it here.

use ipvs_trace_common::{
    drop,
    filter::{test, FilterAddr, KernelFilter, NamedKey, AF_INET6, ROLE_BACKEND, ROLE_CLIENT},
    offsets::flags,
    EventKind,
};

use crate::{
    emit::conn_family,
    kernel::KernelPtr,
    maps::{count_drop, offset, FILTER, NAMED_IPS, NAMED_VIPS},
};

/// The filter, or `None` if the map has no entry (it always has one: an array).
fn get() -> Option<&'static KernelFilter> {
    FILTER.get(0)
}

/// Whether an address or protocol test is set (the caller then reads what they compare).
pub fn active() -> bool {
    get().is_some_and(|f| f.tests != 0)
}

/// Whether decisions of `kind` are delivered at all; counts the ones that are not.
pub fn wants(kind: EventKind) -> bool {
    let wanted = get().is_some_and(|f| f.wants_kind(kind as u32));
    if !wanted {
        count_drop(drop::FILTERED);
    }
    wanted
}

/// Whether the connection entry `cp` passes the address and protocol tests; counts the ones
/// that do not.
pub fn conn_passes<K: KernelPtr>(cp: K) -> bool {
    let Some(filter) = get() else { return true };
    if filter.tests == 0 {
        return true;
    }
    let passes = conn_test(filter, cp).unwrap_or(true);
    if !passes {
        count_drop(drop::FILTERED);
    }
    passes
}

fn conn_test<K: KernelPtr>(filter: &KernelFilter, cp: K) -> Option<bool> {
    let tests = filter.tests;
    if tests & test::PROTO != 0 && cp.read::<u16>(offset!(conn_protocol))? != filter.proto {
        return Some(false);
    }
    if tests & (test::CLIENT | test::VIP) != 0 {
        let af = conn_family(cp, offset!(conn_af), flags::CONN_AF_U8)?;
        if tests & test::CLIENT != 0 && !addr_at(cp, offset!(conn_caddr), af, &filter.client)? {
            return Some(false);
        }
        if tests & test::VIP != 0 {
            if !addr_at(cp, offset!(conn_vaddr), af, &filter.vip)? {
                return Some(false);
            }
            if tests & test::VIP_PORT != 0 && cp.be16(offset!(conn_vport))? != filter.vip.port {
                return Some(false);
            }
        }
    }
    if tests & test::BACKEND != 0 {
        let daf = conn_family(cp, offset!(conn_daf), flags::CONN_DAF_U8)?;
        if !addr_at(cp, offset!(conn_daddr), daf, &filter.backend)? {
            return Some(false);
        }
        if tests & test::BACKEND_PORT != 0 && cp.be16(offset!(conn_dport))? != filter.backend.port {
            return Some(false);
        }
    }
    if tests & test::NAMES != 0 {
        // The dearest test, last: three addresses and up to four hash lookups.
        let af = conn_family(cp, offset!(conn_af), flags::CONN_AF_U8)?;
        let daf = conn_family(cp, offset!(conn_daf), flags::CONN_DAF_U8)?;
        let vip = cp.addr(offset!(conn_vaddr))?;
        let vport = cp.be16(offset!(conn_vport))?;
        let backend = cp.addr(offset!(conn_daddr))?;
        let client = cp.addr(offset!(conn_caddr))?;
        return Some(named(&Decision {
            af,
            proto: 0,
            client: &client,
            vip: &vip,
            vport,
            backend: Some((daf, &backend, 0)),
        }));
    }
    Some(true)
}

/// Whether the VIP (or its port as a NodePort), the backend's IP or the client's IP is among
/// the addresses the name filters resolve to.
fn named(decision: &Decision<'_>) -> bool {
    let Decision {
        af,
        client,
        vip,
        vport,
        backend,
        ..
    } = *decision;
    let node_port = NamedKey {
        addr: [0; 4],
        af: 0,
        port: vport,
    };
    // SAFETY: the values are read and dropped at once; a concurrent update from userspace
    // can only make a lookup see the old or the new entry.
    unsafe {
        NAMED_VIPS.get(key(af, vip, vport)).is_some()
            || NAMED_VIPS.get(node_port).is_some()
            || backend
                .is_some_and(|(daf, addr, _)| NAMED_IPS.get(key(daf, addr, ROLE_BACKEND)).is_some())
            || NAMED_IPS.get(key(af, client, ROLE_CLIENT)).is_some()
    }
}

/// A map key for an address of family `af` (IPv4 in the first word only, whatever follows it
/// in the kernel's union).
fn key(af: u16, addr: &[u32; 4], port: u16) -> NamedKey {
    let addr = if af == AF_INET6 {
        *addr
    } else {
        [addr[0], 0, 0, 0]
    };
    NamedKey { addr, af, port }
}

/// What [`values_pass`] tests (one argument: BPF calls take five at most).
#[derive(Clone, Copy)]
pub struct Decision<'a> {
    pub af: u16,
    pub proto: u16,
    pub client: &'a [u32; 4],
    pub vip: &'a [u32; 4],
    pub vport: u16,
    /// Family, address and port of the chosen backend, if any.
    pub backend: Option<(u16, &'a [u32; 4], u16)>,
}

/// A decision known by its values rather than by an IPVS entry: `no_dest` (family, protocol,
/// client and VIP as the packet and the service have them, no `backend`, so a backend test
/// never passes) and a netfilter binding (read from its conntrack tuples). Counts what it
/// leaves out.
pub fn values_pass(decision: &Decision<'_>) -> bool {
    let Decision {
        af,
        proto,
        client,
        vip,
        vport,
        backend,
    } = *decision;
    let Some(filter) = get() else { return true };
    let tests = filter.tests;
    let backend_fails = tests & test::BACKEND != 0
        && backend.is_none_or(|(daf, addr, port)| {
            !addr_eq(&filter.backend, daf, addr)
                || tests & test::BACKEND_PORT != 0 && port != filter.backend.port
        });
    let passes = !(backend_fails
        || tests & test::PROTO != 0 && proto != filter.proto
        || tests & test::CLIENT != 0 && !addr_eq(&filter.client, af, client)
        || tests & test::VIP != 0 && !addr_eq(&filter.vip, af, vip)
        || tests & test::VIP_PORT != 0 && vport != filter.vip.port
        || tests & test::NAMES != 0 && !named(decision));
    if !passes {
        count_drop(drop::FILTERED);
    }
    passes
}

/// Whether the address at `offset` of `p` (a `union nf_inet_addr` of family `af`) is `want`.
fn addr_at<K: KernelPtr>(p: K, offset: u32, af: u16, want: &FilterAddr) -> Option<bool> {
    if af != want.af {
        return Some(false);
    }
    if af == AF_INET6 {
        let words = p.addr(offset)?;
        Some(addr_eq(want, af, &words))
    } else {
        Some(p.read::<u32>(offset)? == want.addr[0])
    }
}

fn addr_eq(want: &FilterAddr, af: u16, words: &[u32; 4]) -> bool {
    if af != want.af {
        return false;
    }
    if af == AF_INET6 {
        words[0] == want.addr[0]
            && words[1] == want.addr[1]
            && words[2] == want.addr[2]
            && words[3] == want.addr[3]
    } else {
        words[0] == want.addr[0]
    }
}
