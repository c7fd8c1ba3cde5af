//! What the per-packet trampoline program needs to read a packet's headers by loads instead of
//! a `bpf_probe_read_kernel` call: the `bpf_rdonly_cast` kfunc and the vmlinux BTF ids of the
//! two header structs it casts to.
//!
//! `tcp_state_transition` runs for every TCP packet IPVS handles; for a client's packet of an
//! established entry its program must look at the TCP flags. Through the helper that read is a
//! call of about 160 instructions: measured in the lab on 6.12 (`kernel.bpf_stats_enabled`),
//! the program ran 180 instructions a run on average over both directions with it and 116
//! with the loads below (docs/performance.md).
//!
//! `bpf_rdonly_cast(addr, id)` (6.2+) turns an address into an untrusted pointer to type `id`,
//! which the verifier inlines into a register move; the loads through it are checked against
//! the type's layout and guarded like every trampoline load (a fault reads zero). So the test
//! costs a few loads. Without the kfunc (6.1) the program keeps the helper.

use ipvs_trace_common::offsets::{flags, KernelOffsets};

use crate::btf::Btf;

/// The kfunc, a `BTF_KIND_FUNC` of vmlinux from 6.2 on.
const KFUNC: &str = "bpf_rdonly_cast";

/// Sets the header structs' ids and [`flags::PACKET_CAST`] in `offsets` when `vmlinux` (the
/// running kernel's own BTF, whose ids the verifier checks) has the kfunc and both structs, and
/// returns the kfunc's id for the loader's call rewrite; `None` leaves `offsets` as it was.
pub fn resolve(vmlinux: &Btf, offsets: &mut KernelOffsets) -> Option<u32> {
    let kfunc = vmlinux.function_id(KFUNC)?;
    let iphdr = vmlinux.composite_id("iphdr")?;
    let tcphdr = vmlinux.composite_id("tcphdr")?;
    offsets.btf_iphdr = iphdr;
    offsets.btf_tcphdr = tcphdr;
    offsets.flags |= flags::PACKET_CAST;
    Some(kfunc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::builder::Builder;

    fn vmlinux(with_kfunc: bool) -> Btf {
        let mut b = Builder::base();
        let u8_ = b.int("u8", 1);
        b.structure("iphdr", 20, &[("tos", u8_, 8)]);
        b.structure("tcphdr", 20, &[("window", u8_, 112)]);
        if with_kfunc {
            let ptr = b.ptr(0);
            let proto = b.func_proto(ptr, &[("obj__ign", ptr), ("btf_id__k", u8_)]);
            b.func(KFUNC, proto);
        }
        Btf::parse(&b.build()).unwrap()
    }

    #[test]
    fn a_kernel_with_the_kfunc_gets_the_cast() {
        let btf = vmlinux(true);
        let mut offsets = KernelOffsets::default();
        let kfunc = resolve(&btf, &mut offsets).unwrap();
        assert_eq!(Some(kfunc), btf.function_id(KFUNC));
        assert_eq!(Some(offsets.btf_iphdr), btf.composite_id("iphdr"));
        assert_eq!(Some(offsets.btf_tcphdr), btf.composite_id("tcphdr"));
        assert_ne!(offsets.btf_iphdr, offsets.btf_tcphdr);
        assert_ne!(offsets.flags & flags::PACKET_CAST, 0);
    }

    #[test]
    fn a_kernel_without_it_keeps_the_helper() {
        let mut offsets = KernelOffsets::default();
        assert_eq!(resolve(&vmlinux(false), &mut offsets), None);
        assert_eq!(offsets, KernelOffsets::default());
    }
}
