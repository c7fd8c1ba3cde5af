//! The offsets of the NAT probe (`nf_nat_setup_info`): `struct nf_conn` and its tuples, from
//! vmlinux BTF.
//!
//! Unlike the IPVS structs, `nf_conn` is described by vmlinux's BTF on every kernel in the lab
//! (5.10 included, whose modules carry no BTF), as code built into the kernel uses it. Nothing
//! here is required for the tracer as a whole: without these members the NAT probe is not
//! attached, and the note says why.

use ipvs_trace_common::offsets::{flags, KernelOffsets};

use crate::btf::{Btf, Member};

/// Where a member's offset goes.
type Slot = fn(&mut KernelOffsets) -> &mut u32;

/// `struct nf_conntrack_tuple` members the probe reads, relative to the tuple: path, size,
/// slot.
const TUPLE: &[(&str, u32, Slot)] = &[
    ("src.u3", 16, |o| &mut o.tuple_src_u3),
    ("src.u.all", 2, |o| &mut o.tuple_src_port),
    ("src.l3num", 2, |o| &mut o.tuple_l3num),
    ("dst.u3", 16, |o| &mut o.tuple_dst_u3),
    ("dst.u.all", 2, |o| &mut o.tuple_dst_port),
    ("dst.protonum", 1, |o| &mut o.tuple_protonum),
];

/// Fills the NAT members of `offsets` from `btf` (vmlinux, or a split BTF on top of it) and sets
/// [`flags::NAT`] (and [`flags::NAT_NETNS`] when the namespace resolves too). `Err` says why the
/// NAT probe cannot run; `offsets` then has no NAT flag and the probe's program returns at once.
pub fn resolve(btf: &Btf, offsets: &mut KernelOffsets) -> Result<(), String> {
    let status = member(btf, "nf_conn", "status", &[8])?;
    // `tuplehash[IP_CT_DIR_MAX]`: the original direction, then the reply.
    let hashes = member(btf, "nf_conn", "tuplehash", &[])?;
    if hashes.size == 0 || hashes.size % 2 != 0 {
        return Err(format!(
            "`nf_conn.tuplehash` is {} bytes, not two tuple hashes",
            hashes.size
        ));
    }
    let tuple = member(btf, "nf_conntrack_tuple_hash", "tuple", &[40])?;
    let mut nat = KernelOffsets {
        ct_status: status.offset,
        ct_orig: hashes.offset + tuple.offset,
        ct_reply: hashes.offset + hashes.size / 2 + tuple.offset,
        ..KernelOffsets::default()
    };
    for &(path, size, slot) in TUPLE {
        *slot(&mut nat) = member(btf, "nf_conntrack_tuple", path, &[size])?.offset;
    }
    offsets.ct_status = nat.ct_status;
    offsets.ct_orig = nat.ct_orig;
    offsets.ct_reply = nat.ct_reply;
    for &(_, _, slot) in TUPLE {
        *slot(offsets) = *slot(&mut nat);
    }
    offsets.flags |= flags::NAT;
    // Best effort: the netns of the binding (`ct->ct_net.net->ns.inum`; `ct_net` is empty
    // without CONFIG_NET_NS).
    let net = member(btf, "nf_conn", "ct_net.net", &[8]);
    let inum = member(btf, "net", "ns.inum", &[4]);
    if let (Ok(net), Ok(inum)) = (net, inum) {
        offsets.ct_net = net.offset;
        offsets.net_ns_inum = inum.offset;
        offsets.flags |= flags::NAT_NETNS;
    }
    Ok(())
}

/// `strukt.path`, of one of `sizes` (any size when empty), or why not.
fn member(btf: &Btf, strukt: &str, path: &str, sizes: &[u32]) -> Result<Member, String> {
    let member = btf
        .member(strukt, path)
        .map_err(|err| format!("`{strukt}.{path}` does not resolve in vmlinux BTF: {err}"))?;
    if !sizes.is_empty() && !sizes.contains(&member.size) {
        return Err(format!(
            "`{strukt}.{path}` is {} bytes, the NAT probe reads {}",
            member.size, sizes[0]
        ));
    }
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::builder::Builder;

    /// The 6.12 layout of `nf_conn` as far as the probe reads it (offsets from its BTF).
    fn kernel(tuple_size: u32) -> Btf {
        let mut b = Builder::base();
        let u8t = b.int("u8", 1);
        let u16t = b.int("u16", 2);
        let u32t = b.int("u32", 4);
        let ulong = b.int("long unsigned int", 8);
        let words = b.array(u32t, u32t, 4);
        let addr = b.union("nf_inet_addr", 16, &[("all", words, 0)]);
        let proto = b.union("nf_conntrack_man_proto", 2, &[("all", u16t, 0)]);
        let man = b.structure(
            "nf_conntrack_man",
            20,
            &[("u3", addr, 0), ("u", proto, 128), ("l3num", u16t, 144)],
        );
        let dst = b.structure(
            "",
            20,
            &[
                ("u3", addr, 0),
                ("u", proto, 128),
                ("protonum", u8t, 144),
                ("dir", u8t, 152),
            ],
        );
        let tuple = b.structure(
            "nf_conntrack_tuple",
            tuple_size,
            &[("src", man, 0), ("dst", dst, 160)],
        );
        let hash = b.structure(
            "nf_conntrack_tuple_hash",
            56,
            &[("hnnode", ulong, 0), ("tuple", tuple, 128)],
        );
        let hashes = b.array(hash, u32t, 2);
        let net = b.structure("ns_common", 24, &[("inum", u32t, 128)]);
        let netns = b.structure("net", 256, &[("ns", net, 1024)]);
        let net_ptr = b.ptr(netns);
        let possible = b.structure("", 8, &[("net", net_ptr, 0)]);
        b.structure(
            "nf_conn",
            256,
            &[
                ("tuplehash", hashes, 128),
                ("status", ulong, 1024),
                ("ct_net", possible, 1088),
            ],
        );
        Btf::parse(&b.build()).unwrap()
    }

    #[test]
    fn both_tuples_and_their_members_land_in_their_slots() {
        let mut offsets = KernelOffsets::default();
        resolve(&kernel(40), &mut offsets).unwrap();
        assert_eq!(offsets.ct_orig, 16 + 16);
        assert_eq!(offsets.ct_reply, 16 + 56 + 16);
        assert_eq!(offsets.ct_status, 128);
        assert_eq!(
            (
                offsets.tuple_src_u3,
                offsets.tuple_src_port,
                offsets.tuple_l3num,
                offsets.tuple_dst_u3,
                offsets.tuple_dst_port,
                offsets.tuple_protonum
            ),
            (0, 16, 18, 20, 36, 38)
        );
        assert_eq!(offsets.ct_net, 136);
        assert_eq!(offsets.net_ns_inum, 144);
        assert_eq!(offsets.flags, flags::NAT | flags::NAT_NETNS);
    }

    #[test]
    fn a_tuple_of_another_size_leaves_the_probe_off_saying_why() {
        let mut offsets = KernelOffsets::default();
        let why = resolve(&kernel(48), &mut offsets).unwrap_err();
        assert!(why.contains("nf_conntrack_tuple_hash.tuple"), "{why}");
        assert_eq!(offsets.flags & flags::NAT, 0);
    }

    #[test]
    fn without_nf_conn_the_probe_is_off() {
        let btf = Btf::parse(&Builder::base().build()).unwrap();
        let mut offsets = KernelOffsets::default();
        assert!(resolve(&btf, &mut offsets).unwrap_err().contains("nf_conn"));
    }
}
