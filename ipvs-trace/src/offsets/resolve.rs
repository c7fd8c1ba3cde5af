//! Resolution from BTF: each field of [`FIELDS`] looked up by name in the `ip_vs` split BTF
//! (or vmlinux), checked for size, and written to its slot.

use ipvs_trace_common::offsets::{flags, KernelOffsets};

use super::error::{note, required_error, Problem};
use super::fields::{Field, Need, FIELDS};
use super::{OffsetError, Resolved};
use crate::btf::{Btf, BtfError, Member};

/// Looks up `field` under each of its names: the member and the flag of the name found.
pub(super) fn find(btf: &Btf, field: &Field) -> Result<(Member, u32), Problem> {
    for &(name, flag) in field.names {
        match btf.member(field.strukt, name) {
            Ok(member) if member.size == field.size => return Ok((member, flag)),
            Ok(member) if field.narrow.0 != 0 && member.size == field.narrow.0 => {
                return Ok((member, flag | field.narrow.1))
            }
            Ok(member) => {
                return Err(Problem::WrongSize {
                    field: name,
                    found: member.size,
                })
            }
            Err(BtfError::FieldNotFound { .. }) => {}
            Err(BtfError::StructNotFound { .. }) => return Err(Problem::NoStruct),
            Err(e) => return Err(Problem::Btf(e)),
        }
    }
    Err(Problem::NoField)
}

/// Resolves every field of [`FIELDS`] in `btf` (the `ip_vs` split BTF, which sees vmlinux
/// through its base). `release` (the kernel release, as `uname -r` prints it) only goes into
/// messages.
pub fn resolve(btf: &Btf, release: &str) -> Result<Resolved, OffsetError> {
    let mut offsets = KernelOffsets::default();
    let mut degraded = Vec::new();
    let mut optional = 0u32;
    let mut missing = 0u32;
    for field in FIELDS {
        let problem = match find(btf, field) {
            Ok((member, flag)) => {
                *(field.slot)(&mut offsets) = member.offset;
                offsets.flags |= flag;
                if let Need::Optional { flag, .. } = field.need {
                    optional |= flag;
                }
                continue;
            }
            Err(problem) => problem,
        };
        match field.need {
            Need::Required => return Err(required_error(field, problem, release)),
            Need::Optional { flag, lost } => {
                optional |= flag;
                missing |= flag;
                degraded.push(format!("{lost}: {}", note(field, &problem, release)));
            }
        }
    }
    offsets.flags |= optional & !missing;
    // Every field of these parts is required here, so they are known.
    offsets.flags |= flags::DEST | flags::SCHEDULER;
    Ok(Resolved { offsets, degraded })
}

#[cfg(test)]
mod tests {
    use super::super::fake_kernel::{complete, fake_kernel, Layout, RELEASE};
    use super::{flags, resolve, KernelOffsets, OffsetError, Resolved};

    fn resolved(layout: &Layout) -> Resolved {
        resolve(&fake_kernel(layout), RELEASE).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(layout: &Layout) -> (OffsetError, String) {
        match resolve(&fake_kernel(layout), RELEASE) {
            Ok(r) => panic!("expected an error, resolved {r:?}"),
            Err(e) => {
                let msg = e.to_string();
                (e, msg)
            }
        }
    }

    /// The expected result, written out field by field (not derived from the table).
    fn expected() -> KernelOffsets {
        KernelOffsets {
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
            conn_state: 128,
            conn_dest: 152,
            conn_ipvs: 80,
            dest_weight: 60,
            dest_activeconns: 368,
            dest_inactconns: 372,
            dest_svc: 424,
            svc_addr: 36,
            svc_port: 52,
            svc_protocol: 34,
            svc_af: 32,
            svc_scheduler: 200,
            svc_ipvs: 240,
            sched_name: 16,
            ipvs_net: 1000,
            net_ns_inum: 136,
            iph_len: 8,
            iph_saddr: 20,
            iph_daddr: 36,
            skb_data: 208,
            flags: flags::NETNS | flags::DEST | flags::SCHEDULER,
            // The NAT probe's members resolve apart (`offsets::nat`).
            ..KernelOffsets::default()
        }
    }

    #[test]
    fn every_field_lands_in_its_slot() {
        let r = resolved(&complete());
        assert_eq!(r.offsets, expected());
        assert!(r.degraded.is_empty(), "{:?}", r.degraded);
    }

    #[test]
    fn totalconns_replaces_inactconns() {
        let r = resolved(&Layout {
            dest_counter: Some("totalconns"),
            ..Layout::default()
        });
        let mut want = expected();
        want.flags |= flags::DEST_TOTALCONNS;
        assert_eq!(r.offsets, want);
    }

    #[test]
    fn neither_counter_is_a_missing_field() {
        let (e, msg) = error(&Layout::default());
        assert!(
            matches!(&e, OffsetError::MissingField { strukt: "ip_vs_dest", field, release }
                if field == "inactconns` or `totalconns" && release == RELEASE),
            "{e:?}"
        );
        assert!(
            msg.contains("`ip_vs_dest.inactconns` or `totalconns`"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_required_field_names_struct_field_release_and_what_to_do() {
        let (e, msg) = error(&Layout {
            drop: Some(("ip_vs_dest", "activeconns")),
            ..complete()
        });
        assert!(matches!(e, OffsetError::MissingField { .. }), "{e:?}");
        assert_eq!(
            msg,
            "field `ip_vs_dest.activeconns` not found in the BTF of kernel 6.1.0-47-amd64: this \
             kernel's IPVS layout is not supported by this ipvs-trace build; run `ipvs-trace` \
             with --btf FILE from a matching kernel or report the release"
        );
        let (_, msg) = error(&Layout {
            drop: Some(("sk_buff", "data")),
            ..complete()
        });
        assert!(
            msg.starts_with("field `sk_buff.data` not found"),
            "a vmlinux field: {msg}"
        );
    }

    #[test]
    fn one_byte_address_families_set_their_flags() {
        // 7.2's ip_vs_conn: af and daf are u8.
        let r = resolved(&Layout {
            narrow: Some(("ip_vs_conn", "af")),
            ..complete()
        });
        let mut want = expected();
        want.flags |= flags::CONN_AF_U8;
        assert_eq!(r.offsets, want);
        let r = resolved(&Layout {
            narrow: Some(("ip_vs_conn", "daf")),
            ..complete()
        });
        assert_eq!(
            r.offsets.flags & (flags::CONN_AF_U8 | flags::CONN_DAF_U8),
            flags::CONN_DAF_U8
        );
        // Other fields get no such leeway: a one-byte port is refused.
        let (e, _) = error(&Layout {
            narrow: Some(("ip_vs_conn", "cport")),
            ..complete()
        });
        assert!(
            matches!(
                e,
                OffsetError::WrongSize {
                    field: "cport",
                    found: 1,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_wrong_size_names_both_sizes() {
        let (e, msg) = error(&Layout {
            widen: Some(("ip_vs_conn", "cport")),
            ..complete()
        });
        assert!(
            matches!(
                e,
                OffsetError::WrongSize {
                    strukt: "ip_vs_conn",
                    field: "cport",
                    expected: 2,
                    found: 4,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains("`ip_vs_conn.cport` is 4 bytes in the BTF of kernel 6.1.0-47-amd64"),
            "{msg}"
        );
        assert!(msg.contains("reads 2"), "{msg}");
    }

    #[test]
    fn without_netns_ipvs_the_tracer_degrades() {
        let r = resolved(&Layout {
            no_netns_ipvs: true,
            ..complete()
        });
        assert_eq!(r.offsets.flags & flags::NETNS, 0);
        assert_eq!(
            r.offsets.dest_activeconns, 368,
            "required fields still resolve"
        );
        assert_eq!(r.degraded.len(), 1, "{:?}", r.degraded);
        assert!(r.degraded[0].contains("netns_ipvs"), "{:?}", r.degraded);
        assert!(r.degraded[0].contains(RELEASE), "{:?}", r.degraded);

        let r = resolved(&Layout {
            widen: Some(("netns_ipvs", "net")),
            ..complete()
        });
        assert_eq!(
            r.offsets.flags & flags::NETNS,
            0,
            "a wrong-size optional field is not used"
        );
        assert!(
            r.degraded[0].contains("`netns_ipvs.net` is 4 bytes"),
            "{:?}",
            r.degraded
        );
    }

    #[test]
    fn vmlinux_alone_is_a_missing_struct() {
        let (e, msg) = error(&Layout {
            no_ip_vs: true,
            ..complete()
        });
        assert!(
            matches!(
                e,
                OffsetError::MissingStruct {
                    strukt: "ip_vs_conn",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            msg.contains("struct `ip_vs_conn` not found in the BTF of kernel 6.1.0-47-amd64"),
            "{msg}"
        );
        assert!(msg.contains("--btf FILE"), "{msg}");
    }
}
