//! The kernel struct offsets the probes read, resolved by name from BTF at start.
//!
//! IPVS layouts differ between kernels (`ip_vs_dest.activeconns` is at 368 on 6.1 and 376 on
//! 6.12) and live in the `ip_vs` module's split BTF, which aya's CO-RE cannot relocate. So every
//! field the probes touch is listed once in [`FIELDS`], looked up with [`Btf::member`] and checked
//! for the size the probes assume; the result is the [`KernelOffsets`] global the programs read.
//! A required field that is missing or has another size stops the tracer with an error naming
//! struct, field and kernel release: reading a wrong offset would print plausible garbage.

use ipvs_trace_common::offsets::{flags, KernelOffsets};

use crate::btf::{Btf, BtfError, Member};

/// What the caller of [`resolve`] gets: the offsets, and what optional parts are missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub offsets: KernelOffsets,
    /// One human-readable note per optional field that did not resolve (what is lost and why).
    pub degraded: Vec<String>,
}

/// Why the offsets could not be resolved.
#[derive(thiserror::Error, Debug)]
pub enum OffsetError {
    /// A required struct member is absent (under every name it is known by).
    #[error(
        "field `{strukt}.{field}` not found in the BTF of kernel {release}: this kernel's IPVS \
         layout is not supported by this ipvs-trace build; run `ipvs-trace` with --btf FILE from \
         a matching kernel or report the release"
    )]
    MissingField {
        strukt: &'static str,
        field: String,
        release: String,
    },
    /// A required struct is absent altogether.
    #[error(
        "struct `{strukt}` not found in the BTF of kernel {release}: the BTF given is not the \
         ip_vs module's split BTF on top of this kernel's vmlinux BTF; pass the right one with \
         --btf FILE or report the release"
    )]
    MissingStruct {
        strukt: &'static str,
        release: String,
    },
    /// A required member has a size the probes do not expect.
    #[error(
        "field `{strukt}.{field}` is {found} bytes in the BTF of kernel {release}, ipvs-trace \
         reads {expected}: this kernel's IPVS layout is not supported by this ipvs-trace build; \
         report the release"
    )]
    WrongSize {
        strukt: &'static str,
        field: &'static str,
        expected: u32,
        found: u32,
        release: String,
    },
    /// The BTF itself is malformed or the member is unusable (e.g. a bitfield).
    #[error("the kernel BTF cannot be used")]
    Btf(#[from] BtfError),
    /// No module BTF, and the kernel is not one whose layout is built in.
    #[error(
        "kernel {release} exposes no BTF for the ip_vs module (/sys/kernel/btf/ip_vs is \
         missing) and is not a 5.x or 6.x kernel, whose ip_vs_conn layout ipvs-trace knows \
         ({why}). Pass `--btf FILE` with the module's split BTF (e.g. the .BTF of this kernel's \
         ip_vs.ko, or one made with `pahole --btf_encode_detached` from its debug symbols; \
         README: \"Kernels without module BTF\")"
    )]
    NoBuiltinLayout { release: String, why: String },
}

/// Whether the tracer can run without a field.
#[derive(Clone, Copy)]
enum Need {
    Required,
    /// Without it the tracer runs, without `flag`: the flag is set only when every field that
    /// carries it resolves. `lost` says what the user goes without.
    Optional {
        flag: u32,
        lost: &'static str,
    },
}

/// One row of [`FIELDS`].
struct Field {
    strukt: &'static str,
    /// The member's names, tried in order, each with the flag to set when it is the one found
    /// (kernels rename fields; the probes branch on the flag).
    names: &'static [(&'static str, u32)],
    /// Size in bytes the probes read.
    size: u32,
    /// Another size the probes also read, and the flag that tells them so (`(0, 0)`: none).
    narrow: (u32, u32),
    need: Need,
    slot: fn(&mut KernelOffsets) -> &mut u32,
}

const fn required(
    strukt: &'static str,
    names: &'static [(&'static str, u32)],
    size: u32,
    slot: fn(&mut KernelOffsets) -> &mut u32,
) -> Field {
    Field {
        strukt,
        names,
        size,
        narrow: (0, 0),
        need: Need::Required,
        slot,
    }
}

/// An address family member: a `u16` until 6.x, a `u8` in 7.x's reorganised `ip_vs_conn`.
const fn family(
    names: &'static [(&'static str, u32)],
    u8_flag: u32,
    slot: fn(&mut KernelOffsets) -> &mut u32,
) -> Field {
    Field {
        narrow: (1, u8_flag),
        ..required("ip_vs_conn", names, 2, slot)
    }
}

const NETNS: Need = Need::Optional {
    flag: flags::NETNS,
    lost: "events carry no network namespace inode (netns 0)",
};

/// Every field the probes read: struct, member name(s), size in bytes, destination slot.
/// Layouts checked against `include/net/ip_vs.h` of 6.1 and 6.12.
const FIELDS: &[Field] = &[
    // struct ip_vs_conn: one connection entry, the return value of ip_vs_conn_new().
    required("ip_vs_conn", &[("caddr", 0)], 16, |o| &mut o.conn_caddr),
    required("ip_vs_conn", &[("vaddr", 0)], 16, |o| &mut o.conn_vaddr),
    required("ip_vs_conn", &[("daddr", 0)], 16, |o| &mut o.conn_daddr),
    required("ip_vs_conn", &[("cport", 0)], 2, |o| &mut o.conn_cport),
    required("ip_vs_conn", &[("vport", 0)], 2, |o| &mut o.conn_vport),
    required("ip_vs_conn", &[("dport", 0)], 2, |o| &mut o.conn_dport),
    family(&[("af", 0)], flags::CONN_AF_U8, |o| &mut o.conn_af),
    family(&[("daf", 0)], flags::CONN_DAF_U8, |o| &mut o.conn_daf),
    required("ip_vs_conn", &[("protocol", 0)], 2, |o| {
        &mut o.conn_protocol
    }),
    required("ip_vs_conn", &[("flags", 0)], 4, |o| &mut o.conn_flags),
    required("ip_vs_conn", &[("state", 0)], 2, |o| &mut o.conn_state),
    required("ip_vs_conn", &[("dest", 0)], 8, |o| &mut o.conn_dest),
    required("ip_vs_conn", &[("ipvs", 0)], 8, |o| &mut o.conn_ipvs),
    // struct ip_vs_dest: the real server (pod) a connection went to.
    required("ip_vs_dest", &[("weight", 0)], 4, |o| &mut o.dest_weight),
    required("ip_vs_dest", &[("activeconns", 0)], 4, |o| {
        &mut o.dest_activeconns
    }),
    // A 2026 stable backport replaced `inactconns` with `totalconns` (active + inactive).
    required(
        "ip_vs_dest",
        &[("inactconns", 0), ("totalconns", flags::DEST_TOTALCONNS)],
        4,
        |o| &mut o.dest_inactconns,
    ),
    required("ip_vs_dest", &[("svc", 0)], 8, |o| &mut o.dest_svc),
    // struct ip_vs_service: the virtual service (VIP:port).
    required("ip_vs_service", &[("addr", 0)], 16, |o| &mut o.svc_addr),
    required("ip_vs_service", &[("port", 0)], 2, |o| &mut o.svc_port),
    required("ip_vs_service", &[("protocol", 0)], 2, |o| {
        &mut o.svc_protocol
    }),
    required("ip_vs_service", &[("af", 0)], 2, |o| &mut o.svc_af),
    required("ip_vs_service", &[("scheduler", 0)], 8, |o| {
        &mut o.svc_scheduler
    }),
    // struct ip_vs_scheduler: `name` is a `char *`.
    required("ip_vs_scheduler", &[("name", 0)], 8, |o| &mut o.sched_name),
    // struct ip_vs_iphdr: the parsed header ip_vs_leave() gets.
    required("ip_vs_iphdr", &[("len", 0)], 4, |o| &mut o.iph_len),
    required("ip_vs_iphdr", &[("saddr", 0)], 16, |o| &mut o.iph_saddr),
    required("ip_vs_iphdr", &[("daddr", 0)], 16, |o| &mut o.iph_daddr),
    // struct sk_buff (vmlinux): packet data for the state-transition probes.
    required("sk_buff", &[("data", 0)], 8, |o| &mut o.skb_data),
    // cp->ipvs->net->ns.inum: the network namespace of the connection (svc->ipvs for no_dest).
    Field {
        strukt: "ip_vs_service",
        names: &[("ipvs", 0)],
        size: 8,
        narrow: (0, 0),
        need: NETNS,
        slot: |o| &mut o.svc_ipvs,
    },
    Field {
        strukt: "netns_ipvs",
        names: &[("net", 0)],
        size: 8,
        narrow: (0, 0),
        need: NETNS,
        slot: |o| &mut o.ipvs_net,
    },
    Field {
        strukt: "net",
        names: &[("ns.inum", 0)],
        size: 4,
        narrow: (0, 0),
        need: NETNS,
        slot: |o| &mut o.net_ns_inum,
    },
];

/// Why one field did not resolve, before it is turned into an error or a note.
enum Problem {
    NoStruct,
    NoField,
    WrongSize { field: &'static str, found: u32 },
    Btf(BtfError),
}

/// Looks up `field` under each of its names: the member and the flag of the name found.
fn find(btf: &Btf, field: &Field) -> Result<(Member, u32), Problem> {
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

/// All names of a field, for messages: "inactconns` or `totalconns".
fn names(field: &Field) -> String {
    let names: Vec<&str> = field.names.iter().map(|&(name, _)| name).collect();
    names.join("` or `")
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

fn required_error(field: &Field, problem: Problem, release: &str) -> OffsetError {
    let release = release.to_owned();
    match problem {
        Problem::NoStruct => OffsetError::MissingStruct {
            strukt: field.strukt,
            release,
        },
        Problem::NoField => OffsetError::MissingField {
            strukt: field.strukt,
            field: names(field),
            release,
        },
        Problem::WrongSize { field: name, found } => OffsetError::WrongSize {
            strukt: field.strukt,
            field: name,
            expected: field.size,
            found,
            release,
        },
        Problem::Btf(e) => OffsetError::Btf(e),
    }
}

fn note(field: &Field, problem: &Problem, release: &str) -> String {
    let strukt = field.strukt;
    match problem {
        Problem::NoStruct => format!("struct `{strukt}` not found in the BTF of kernel {release}"),
        Problem::NoField => format!(
            "`{strukt}.{}` not found in the BTF of kernel {release}",
            names(field)
        ),
        Problem::WrongSize { field: name, found } => format!(
            "`{strukt}.{name}` is {found} bytes in the BTF of kernel {release}, expected {}",
            field.size
        ),
        Problem::Btf(e) => format!("`{strukt}.{}`: {e}", names(field)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{builtin, flags, resolve, KernelOffsets, OffsetError, Resolved, BUILTIN_LAYOUT};
    use crate::btf::builder::Builder;
    use crate::btf::Btf;

    const RELEASE: &str = "6.1.0-47-amd64";

    /// How the fake kernel departs from a complete 6.1-like layout.
    #[derive(Default)]
    struct Layout {
        /// Name of `ip_vs_dest`'s inactive counter; `None` = neither.
        dest_counter: Option<&'static str>,
        /// Whether `struct netns_ipvs` is defined (vs. only declared).
        no_netns_ipvs: bool,
        /// `(struct, field)` left out.
        drop: Option<(&'static str, &'static str)>,
        /// `(struct, field)` given a 4-byte type instead.
        widen: Option<(&'static str, &'static str)>,
        /// A member given a one-byte type.
        narrow: Option<(&'static str, &'static str)>,
        /// Leave out the split (`ip_vs`) blob altogether.
        no_ip_vs: bool,
    }

    /// Type ids of the fake vmlinux that the fake `ip_vs` types refer to.
    struct Vmlinux {
        builder: Builder,
        btf: Arc<Btf>,
        uchar: u32,
        char_: u32,
        u16_: u32,
        u32_: u32,
        int: u32,
        u16_t: u32,
        be16: u32,
        u32_t: u32,
        atomic: u32,
        inet_addr: u32,
        net: u32,
    }

    /// A vmlinux-like base with kernel-like types (typedefs, `atomic_t`, an anonymous union in
    /// `sk_buff`, `net.ns` as an embedded struct).
    fn fake_vmlinux(layout: &Layout) -> Vmlinux {
        let mut b = Builder::base();
        let uchar = b.int("unsigned char", 1);
        let char_ = b.int("char", 1);
        let u16_ = b.int("short unsigned int", 2);
        let u32_ = b.int("unsigned int", 4);
        let int = b.int("int", 4);
        let u16_t = b.typedef("__u16", u16_);
        let be16 = b.typedef("__be16", u16_t);
        let u32_t = b.typedef("__u32", u32_);
        let be32 = b.typedef("__be32", u32_t);
        let counter = b.structure("", 4, &[("counter", int, 0)]);
        let atomic = b.typedef("atomic_t", counter);
        let all = b.array(u32_t, int, 4);
        let inet_addr = b.union("nf_inet_addr", 16, &[("all", all, 0), ("ip", be32, 0)]);
        let void_ptr = b.ptr(0);
        let ns_common = b.structure(
            "ns_common",
            24,
            &[
                ("stashed", void_ptr, 0),
                ("ops", void_ptr, 64),
                ("inum", u32_, 128),
            ],
        );
        let net = b.structure(
            "net",
            4096,
            &[("passive", int, 0), ("ns", ns_common, 120 * 8)],
        );
        let list = b.union("", 16, &[("next", void_ptr, 0)]);
        let data_ptr = b.ptr(uchar);
        let skb: Vec<(&str, u32, u32)> = [
            ("", list, 0),
            ("head", data_ptr, 200),
            ("data", data_ptr, 208),
        ]
        .into_iter()
        .filter(|&(f, ..)| layout.drop != Some(("sk_buff", f)))
        .map(|(f, t, byte)| (f, t, byte * 8))
        .collect();
        b.structure("sk_buff", 232, &skb);
        let btf = Arc::new(
            Btf::parse(&b.build()).unwrap_or_else(|e| panic!("fake vmlinux rejected: {e}")),
        );
        Vmlinux {
            builder: b,
            btf,
            uchar,
            char_,
            u16_,
            u32_,
            int,
            u16_t,
            be16,
            u32_t,
            atomic,
            inet_addr,
            net,
        }
    }

    /// The fake vmlinux and an `ip_vs`-like split blob on top of it (volatile members, a
    /// type-tagged pointer), at distinct offsets so a field written to the wrong slot shows.
    #[expect(
        clippy::too_many_lines,
        reason = "one fake kernel, declared type by type like the headers it imitates"
    )]
    fn fake_kernel(layout: &Layout) -> Btf {
        let v = fake_vmlinux(layout);
        if layout.no_ip_vs {
            return Arc::into_inner(v.btf).unwrap();
        }
        let mut s = Builder::split(&v.builder);
        let put = |s: &mut Builder, name: &str, size: u32, members: &[(&'static str, u32, u32)]| {
            let members: Vec<(&str, u32, u32)> = members
                .iter()
                .filter(|&&(f, ..)| layout.drop != Some((name, f)))
                .map(|&(f, t, byte)| {
                    let t = if layout.widen == Some((name, f)) {
                        v.u32_
                    } else if layout.narrow == Some((name, f)) {
                        v.uchar
                    } else {
                        t
                    };
                    (f, t, byte * 8)
                })
                .collect();
            s.structure(name, size, &members)
        };
        let net_ptr = s.ptr(v.net);
        let netns = if layout.no_netns_ipvs {
            s.fwd("netns_ipvs")
        } else {
            put(
                &mut s,
                "netns_ipvs",
                2048,
                &[("gen", v.int, 0), ("net", net_ptr, 1000)],
            )
        };
        let name_ptr = s.ptr(v.char_);
        let sched = put(
            &mut s,
            "ip_vs_scheduler",
            64,
            &[("refcnt", v.atomic, 0), ("name", name_ptr, 16)],
        );
        let rcu_sched = s.type_tag("rcu", sched);
        let sched_ptr = s.ptr(rcu_sched);
        let svc_netns_ptr = s.ptr(netns);
        let svc = put(
            &mut s,
            "ip_vs_service",
            256,
            &[
                ("af", v.u16_, 32),
                ("protocol", v.u16_t, 34),
                ("addr", v.inet_addr, 36),
                ("port", v.be16, 52),
                ("scheduler", sched_ptr, 200),
                ("ipvs", svc_netns_ptr, 240),
            ],
        );
        let svc_ptr = s.ptr(svc);
        let mut dest_members = vec![
            ("weight", v.atomic, 60),
            ("activeconns", v.atomic, 368),
            ("svc", svc_ptr, 424),
        ];
        if let Some(counter) = layout.dest_counter {
            dest_members.push((counter, v.atomic, 372));
        }
        let dest = put(&mut s, "ip_vs_dest", 512, &dest_members);
        let dest_ptr = s.ptr(dest);
        let netns_ptr = s.ptr(netns);
        let vu32 = s.volatile(v.u32_t);
        let vu16 = s.volatile(v.u16_t);
        put(
            &mut s,
            "ip_vs_conn",
            320,
            &[
                ("cport", v.be16, 16),
                ("dport", v.be16, 18),
                ("vport", v.be16, 20),
                ("af", v.u16_, 22),
                ("caddr", v.inet_addr, 24),
                ("vaddr", v.inet_addr, 40),
                ("daddr", v.inet_addr, 56),
                ("flags", vu32, 72),
                ("protocol", v.u16_t, 76),
                ("daf", v.u16_, 78),
                ("ipvs", netns_ptr, 80),
                ("state", vu16, 128),
                ("dest", dest_ptr, 152),
            ],
        );
        put(
            &mut s,
            "ip_vs_iphdr",
            56,
            &[
                ("hdr_flags", v.int, 0),
                ("len", v.u32_t, 8),
                ("saddr", v.inet_addr, 20),
                ("daddr", v.inet_addr, 36),
            ],
        );
        Btf::parse_split(&s.build(), v.btf).unwrap_or_else(|e| panic!("fake ip_vs rejected: {e}"))
    }

    fn complete() -> Layout {
        Layout {
            dest_counter: Some("inactconns"),
            ..Layout::default()
        }
    }

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
