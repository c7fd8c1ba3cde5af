//! Offsets of every lab kernel, resolved on the host from the kernel package's own vmlinux and
//! ip_vs.ko (no VM), against what `ipvs-trace check` reported inside that kernel's VM
//! (`tests/golden/check-<release>.txt`, which the e2e `errors` scenario compares with the live
//! report). Two independent paths to the same numbers: the running kernel's /sys/kernel/btf and
//! the package's ELF files.
//!
//! It also records which members of `struct ip_vs_conn` sit at the same offsets on which
//! kernels: the fact a BTF-less mode would have to rest on.

use std::path::Path;
use std::sync::Arc;

use ipvs_trace::btf::Btf;
use ipvs_trace::cmd::check::offsets_report;
use ipvs_trace::offsets::{self, BUILTIN_LAYOUT};
use xtask::lab::{kernel_btf, Kernel};

/// Per member: (offset, size), or `None` if the kernel has no such member.
type Layout = Vec<Option<(u32, u32)>>;

/// Every lab kernel, oldest first. 5.10's ip_vs.ko carries no BTF: its split BTF comes from
/// `tests/fixtures/ip_vs-<release>.btf`, made offline with pahole from the debug package.
const KERNELS: [Kernel; 4] = [Kernel::V5_10, Kernel::V6_1, Kernel::V6_12, Kernel::V7_2];

fn vmlinux_btf(kernel: Kernel) -> Btf {
    let files = kernel_btf(kernel).unwrap_or_else(|e| panic!("kernel {kernel}: {e:#}"));
    Btf::from_file(&files.vmlinux, None).expect("vmlinux BTF")
}

fn module_btf(kernel: Kernel) -> (String, Btf) {
    let files = kernel_btf(kernel).unwrap_or_else(|e| panic!("kernel {kernel}: {e:#}"));
    let base = Arc::new(vmlinux_btf(kernel));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("ip_vs-{}.btf", files.release));
    let btf = match Btf::from_file(&files.ip_vs, Some(Arc::clone(&base))) {
        Ok(btf) => btf,
        Err(err) => Btf::from_file(&fixture, Some(base)).unwrap_or_else(|e| {
            panic!(
                "kernel {kernel}: no BTF in {} ({err}) nor a usable {} ({e})",
                files.ip_vs.display(),
                fixture.display()
            )
        }),
    };
    (files.release, btf)
}

#[test]
fn package_btf_gives_the_offsets_the_guest_reported() {
    for kernel in KERNELS {
        let (release, btf) = module_btf(kernel);
        let resolved = offsets::resolve(&btf, &release).expect("offsets resolve");
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("golden")
            .join(format!("check-{release}.txt"));
        let report = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        let section = report
            .split("offsets (bytes into each struct, from BTF)\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .map_or_else(
                || panic!("no offsets section in {}", golden.display()),
                |s| format!("{s}\n"),
            );
        assert_eq!(
            offsets_report(&resolved.offsets),
            section,
            "kernel {kernel}: offsets from the package's files differ from the guest's report"
        );
    }
}

#[test]
fn the_shared_part_of_ip_vs_conn() {
    let members = [
        "cport", "dport", "vport", "af", "caddr", "vaddr", "daddr", "flags", "protocol", "daf",
        "ipvs", "state", "dest",
    ];
    let layouts: Vec<(Kernel, Layout)> = KERNELS
        .iter()
        .map(|&kernel| {
            let (_, btf) = module_btf(kernel);
            let offsets = members
                .iter()
                .map(|m| btf.member("ip_vs_conn", m).ok().map(|m| (m.offset, m.size)))
                .collect();
            (kernel, offsets)
        })
        .collect();
    // 5.10, 6.1 and 6.12 agree on every member the probes read.
    assert_eq!(layouts[0].1, layouts[1].1, "5.10 vs 6.1");
    assert_eq!(layouts[1].1, layouts[2].1, "6.1 vs 6.12");
    // 7.x reorganised the struct: not one of these members stayed where it was.
    for (i, member) in members.iter().enumerate() {
        assert_ne!(
            layouts[1].1[i], layouts[3].1[i],
            "ip_vs_conn.{member} at the same place on 6.1 and 7.2"
        );
    }
}

/// The layout used without module BTF is what every 5.x/6.x kernel's BTF says, member by
/// member, and the offsets it gives are the ones full BTF gives for the same fields.
#[test]
fn the_builtin_layout_is_the_5_and_6_kernels_layout() {
    for kernel in KERNELS {
        let (release, btf) = module_btf(kernel);
        let builtin = offsets::builtin(&vmlinux_btf(kernel), &release);
        if release.starts_with("7.") {
            assert!(
                builtin.is_err(),
                "kernel {kernel}: built-in layout accepted"
            );
            continue;
        }
        for &(strukt, member, offset, size) in BUILTIN_LAYOUT {
            let found = btf
                .member(strukt, member)
                .unwrap_or_else(|e| panic!("kernel {kernel}: {e}"));
            assert_eq!(
                (found.offset, found.size),
                (offset, size),
                "kernel {kernel}: {strukt}.{member}"
            );
        }
        let builtin = builtin.unwrap_or_else(|e| panic!("kernel {kernel}: {e}"));
        let full = offsets::resolve(&btf, &release).expect("offsets resolve");
        let full = offsets_report(&full.offsets);
        let report = offsets_report(&builtin.offsets);
        let read: Vec<&str> = report
            .lines()
            .filter(|l| !l.ends_with(" -") && !l.trim_start().starts_with("layout:"))
            .collect();
        // Every built-in member, and sk_buff.data from vmlinux.
        assert_eq!(read.len(), BUILTIN_LAYOUT.len() + 1, "{report}");
        for line in read {
            assert!(
                full.lines().any(|l| l == line),
                "kernel {kernel}: built-in `{line}` is not what BTF says"
            );
        }
    }
}

/// The NAT probe's members (`nf_conn` and its tuples) resolve from every lab kernel's vmlinux
/// BTF alone, 5.10 included, at the places `bpftool btf dump` shows (`tuplehash` at 16 and
/// `status` at 128 since 5.x; the tuple 16 bytes into its hash node; 40 bytes a tuple).
#[test]
fn nat_members_resolve_from_vmlinux_on_every_kernel() {
    for kernel in KERNELS {
        let btf = vmlinux_btf(kernel);
        let mut offsets = ipvs_trace_common::KernelOffsets::default();
        offsets::nat::resolve(&btf, &mut offsets)
            .unwrap_or_else(|why| panic!("kernel {kernel}: {why}"));
        let got = (
            offsets.ct_status,
            offsets.ct_orig,
            offsets.ct_reply,
            offsets.tuple_src_u3,
            offsets.tuple_src_port,
            offsets.tuple_l3num,
            offsets.tuple_dst_u3,
            offsets.tuple_dst_port,
            offsets.tuple_protonum,
        );
        println!("{kernel}: {got:?} ct_net {}", offsets.ct_net);
        assert_eq!(got, (128, 32, 88, 0, 16, 18, 20, 36, 38), "kernel {kernel}");
        assert_ne!(
            offsets.flags & ipvs_trace_common::offsets::flags::NAT_NETNS,
            0,
            "kernel {kernel}: ct_net"
        );
    }
}
