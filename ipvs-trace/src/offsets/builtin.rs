//! The fallback for kernels without module BTF: the members of the IPVS structs that sit at
//! the same offsets on every 5.x and 6.x kernel, and the reduced offsets built from them.

use ipvs_trace_common::offsets::KernelOffsets;

use super::error::required_error;
use super::fields::FIELDS;
use super::resolve::find;
use super::{OffsetError, Resolved};
use crate::btf::Btf;

/// One member of [`BUILTIN_LAYOUT`]: struct, member, byte offset, size in bytes.
pub type BuiltinMember = (&'static str, &'static str, u32, u32);

/// The members of the IPVS structs that sit at the same place on every 5.x and 6.x kernel in
/// the lab (5.10, 6.1 and 6.12 agree on each: `tests/tests/kernel_btf.rs` checks it against
/// each kernel's BTF). Enough for the tuple, the forwarding method and state of a connection
/// entry and for `no_dest`; the destination's counters, the scheduler and the netns moved
/// between those kernels and are left out. 7.x reorganised `ip_vs_conn` entirely.
pub const BUILTIN_LAYOUT: &[BuiltinMember] = &[
    ("ip_vs_conn", "cport", 16, 2),
    ("ip_vs_conn", "dport", 18, 2),
    ("ip_vs_conn", "vport", 20, 2),
    ("ip_vs_conn", "af", 22, 2),
    ("ip_vs_conn", "caddr", 24, 16),
    ("ip_vs_conn", "vaddr", 40, 16),
    ("ip_vs_conn", "daddr", 56, 16),
    ("ip_vs_conn", "flags", 72, 4),
    ("ip_vs_conn", "protocol", 76, 2),
    ("ip_vs_conn", "daf", 78, 2),
    ("ip_vs_conn", "state", 148, 2),
    ("ip_vs_service", "af", 36, 2),
    ("ip_vs_service", "protocol", 38, 2),
    ("ip_vs_service", "addr", 40, 16),
    ("ip_vs_service", "port", 56, 2),
    ("ip_vs_iphdr", "len", 8, 4),
    ("ip_vs_iphdr", "saddr", 20, 16),
    ("ip_vs_iphdr", "daddr", 36, 16),
];

/// What the built-in layout cannot give, said once at start.
pub const BUILTIN_DEGRADED: &str = "no BTF for ip_vs: the built-in ip_vs_conn layout of 5.x/6.x \
     kernels is used (verified on 5.10, 6.1 and 6.12); the scheduler and each backend's weight \
     come from the IPVS tables over netlink (the configured values, re-read every second), \
     active/inactive counters and the netns are null. `--btf FILE` restores them";

/// The offsets for a kernel without module BTF: [`BUILTIN_LAYOUT`] for the IPVS structs and
/// `vmlinux` (which such kernels still have) for `sk_buff`. `DEST`, `SCHEDULER` and `NETNS`
/// stay unset, so the probes never follow a pointer whose target's layout is unknown.
pub fn builtin(vmlinux: &Btf, release: &str) -> Result<Resolved, OffsetError> {
    let major = release
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(5 | 6) => {}
        Some(7..) => {
            return Err(OffsetError::NoBuiltinLayout {
                release: release.to_owned(),
                why: "7.x moved every member the probes read".to_owned(),
            })
        }
        _ => {
            return Err(OffsetError::NoBuiltinLayout {
                release: release.to_owned(),
                why: "its layout was never checked".to_owned(),
            })
        }
    }
    let mut offsets = KernelOffsets::default();
    for &(strukt, member, offset, _) in BUILTIN_LAYOUT {
        let field = FIELDS
            .iter()
            .find(|f| f.strukt == strukt && f.names[0].0 == member)
            .expect("every built-in member is a field the probes read");
        *(field.slot)(&mut offsets) = offset;
    }
    for field in FIELDS.iter().filter(|f| f.strukt == "sk_buff") {
        let (member, flag) =
            find(vmlinux, field).map_err(|problem| required_error(field, problem, release))?;
        *(field.slot)(&mut offsets) = member.offset;
        offsets.flags |= flag;
    }
    Ok(Resolved {
        offsets,
        degraded: vec![BUILTIN_DEGRADED.to_owned()],
    })
}

#[cfg(test)]
mod tests {
    use super::super::fake_kernel::{complete, fake_vmlinux, Layout};
    use super::{builtin, KernelOffsets, OffsetError, BUILTIN_LAYOUT};

    #[test]
    fn the_builtin_layout_fills_the_stable_part_and_sk_buff_from_vmlinux() {
        let v = fake_vmlinux(&complete());
        let r = builtin(&v.btf, "5.10.0-46-amd64").unwrap_or_else(|e| panic!("{e}"));
        let want = KernelOffsets {
            conn_caddr: 24,
            conn_vaddr: 40,
            conn_daddr: 56,
            conn_cport: 16,
            conn_vport: 20,
            conn_dport: 18,
            conn_af: 22,
            conn_daf: 78,
            conn_protocol: 76,
            conn_flags: 72,
            conn_state: 148,
            svc_addr: 40,
            svc_port: 56,
            svc_protocol: 38,
            svc_af: 36,
            iph_len: 8,
            iph_saddr: 20,
            iph_daddr: 36,
            // From the (fake) vmlinux, not from the table.
            skb_data: 208,
            // No pointer is followed into a struct whose layout is unknown.
            flags: 0,
            ..KernelOffsets::default()
        };
        assert_eq!(r.offsets, want);
        assert_eq!(r.degraded.len(), 1);
        assert!(r.degraded[0].contains("--btf FILE"), "{:?}", r.degraded);
        assert!(builtin(&v.btf, "6.12.117+deb12-amd64").is_ok());
    }

    #[test]
    fn the_builtin_layout_is_refused_outside_5_and_6() {
        let v = fake_vmlinux(&complete());
        for release in ["7.2.13+deb14-amd64", "4.19.0-27-amd64", "garbage"] {
            let err = builtin(&v.btf, release).expect_err(release);
            assert!(
                matches!(&err, OffsetError::NoBuiltinLayout { release: r, .. } if r == release),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("--btf FILE"), "{msg}");
        }
        let msg = builtin(&v.btf, "7.2.13+deb14-amd64")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("7.x moved every member"), "{msg}");
    }

    #[test]
    fn the_builtin_layout_needs_sk_buff_data_in_vmlinux() {
        let v = fake_vmlinux(&Layout {
            drop: Some(("sk_buff", "data")),
            ..complete()
        });
        let err = builtin(&v.btf, "5.10.0-46-amd64").unwrap_err();
        assert!(
            matches!(
                err,
                OffsetError::MissingField {
                    strukt: "sk_buff",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn builtin_members_have_the_sizes_the_probes_read() {
        for &(strukt, member, _, size) in BUILTIN_LAYOUT {
            let field = super::FIELDS
                .iter()
                .find(|f| f.strukt == strukt && f.names[0].0 == member)
                .unwrap_or_else(|| panic!("{strukt}.{member} is not read by the probes"));
            assert_eq!(field.size, size, "{strukt}.{member}");
        }
    }
}
