//! A fake kernel for the tests of the resolution: a vmlinux-like base BTF and an `ip_vs`-like
//! split BTF on top of it, complete or with one departure ([`Layout`]).

use std::sync::Arc;

use crate::btf::builder::Builder;
use crate::btf::Btf;

pub(super) const RELEASE: &str = "6.1.0-47-amd64";

/// How the fake kernel departs from a complete 6.1-like layout.
#[derive(Default)]
pub(super) struct Layout {
    /// Name of `ip_vs_dest`'s inactive counter; `None` = neither.
    pub(super) dest_counter: Option<&'static str>,
    /// Whether `struct netns_ipvs` is defined (vs. only declared).
    pub(super) no_netns_ipvs: bool,
    /// `(struct, field)` left out.
    pub(super) drop: Option<(&'static str, &'static str)>,
    /// `(struct, field)` given a 4-byte type instead.
    pub(super) widen: Option<(&'static str, &'static str)>,
    /// A member given a one-byte type.
    pub(super) narrow: Option<(&'static str, &'static str)>,
    /// Leave out the split (`ip_vs`) blob altogether.
    pub(super) no_ip_vs: bool,
}

/// Type ids of the fake vmlinux that the fake `ip_vs` types refer to.
pub(super) struct Vmlinux {
    builder: Builder,
    pub(super) btf: Arc<Btf>,
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
pub(super) fn fake_vmlinux(layout: &Layout) -> Vmlinux {
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
    let btf =
        Arc::new(Btf::parse(&b.build()).unwrap_or_else(|e| panic!("fake vmlinux rejected: {e}")));
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
pub(super) fn fake_kernel(layout: &Layout) -> Btf {
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

pub(super) fn complete() -> Layout {
    Layout {
        dest_counter: Some("inactconns"),
        ..Layout::default()
    }
}
