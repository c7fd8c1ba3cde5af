use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::builder::{elf_with_section, kind, Builder};
use super::{Btf, BtfError, Kind, Member};

fn parse(builder: &Builder) -> Btf {
    Btf::parse(&builder.build()).unwrap_or_else(|e| panic!("valid test BTF rejected: {e}"))
}

fn member(btf: &Btf, strukt: &str, field: &str) -> Member {
    btf.member(strukt, field)
        .unwrap_or_else(|e| panic!("{strukt}.{field}: {e}"))
}

/// The kind the reader decoded for `id`.
fn kind_of(btf: &Btf, id: u32) -> Kind {
    btf.ty(id)
        .unwrap_or_else(|e| panic!("type #{id}: {e}"))
        .kind
}

/// One record of every kind (multi-entry kinds with 3 entries), each followed by a sentinel
/// struct `after_<n>` whose single member `x` sits at byte `n`: if any kind's trailing data were
/// skipped by the wrong length, the following sentinel would not decode.
fn every_kind(b: &mut Builder) -> Vec<(u32, Kind)> {
    let int = b.int("int", 4);
    let mut made = vec![(int, Kind::Int)];
    let sentinel = |b: &mut Builder, made: &mut Vec<(u32, Kind)>, id: u32, kind: Kind| {
        made.push((id, kind));
        let n = made.len() as u32;
        b.structure(&format!("after_{n}"), 64, &[("x", int, n * 8)]);
    };
    let char_ = b.int("char", 1);
    sentinel(b, &mut made, char_, Kind::Int);
    let id = b.ptr(int);
    sentinel(b, &mut made, id, Kind::Ptr);
    let id = b.array(char_, int, 16);
    sentinel(b, &mut made, id, Kind::Array);
    let id = b.structure("s3", 12, &[("a", int, 0), ("b", int, 32), ("c", int, 64)]);
    sentinel(b, &mut made, id, Kind::Struct);
    let id = b.union("u3", 4, &[("a", int, 0), ("b", int, 0), ("c", char_, 0)]);
    sentinel(b, &mut made, id, Kind::Union);
    let id = b.enumeration("e3", &[("A", 0), ("B", -1), ("C", 7)]);
    sentinel(b, &mut made, id, Kind::Enum);
    let id = b.fwd("opaque");
    sentinel(b, &mut made, id, Kind::Fwd);
    let id = b.typedef("int_t", int);
    sentinel(b, &mut made, id, Kind::Typedef);
    let id = b.volatile(int);
    sentinel(b, &mut made, id, Kind::Volatile);
    let id = b.constant(int);
    sentinel(b, &mut made, id, Kind::Const);
    let id = b.restrict(int);
    sentinel(b, &mut made, id, Kind::Restrict);
    let proto = b.func_proto(int, &[("a", int), ("b", char_), ("", int)]);
    sentinel(b, &mut made, proto, Kind::FuncProto);
    let id = b.func("some_function", proto);
    sentinel(b, &mut made, id, Kind::Func);
    let var = b.var("some_var", int);
    sentinel(b, &mut made, var, Kind::Var);
    let id = b.datasec(".data", 12, &[(var, 0, 4), (var, 4, 4), (var, 8, 4)]);
    sentinel(b, &mut made, id, Kind::Datasec);
    let id = b.float("double", 8);
    sentinel(b, &mut made, id, Kind::Float);
    let id = b.decl_tag("tag", var, -1);
    sentinel(b, &mut made, id, Kind::DeclTag);
    let id = b.type_tag("rcu", int);
    sentinel(b, &mut made, id, Kind::TypeTag);
    let id = b.enum64("e64", &[("X", 1 << 40), ("Y", 2), ("Z", u64::MAX)]);
    sentinel(b, &mut made, id, Kind::Enum64);
    made
}

#[test]
fn every_kind_is_decoded_and_skipped_exactly() {
    let mut b = Builder::base();
    let made = every_kind(&mut b);
    let btf = parse(&b);
    // 20 records (19 kinds, two of them INT) plus a sentinel after each but the first.
    assert_eq!(btf.type_count(), made.len() * 2 - 1);
    for (id, kind) in &made {
        assert_eq!(kind_of(&btf, *id), *kind, "type #{id}");
    }
    for n in 2..=made.len() as u32 {
        assert_eq!(
            member(&btf, &format!("after_{n}"), "x"),
            Member { offset: n, size: 4 }
        );
    }
    assert!(btf.has_function("some_function"));
    assert!(!btf.has_function("some_var"), "a VAR is not a function");
    assert!(!btf.has_function("s3"));
}

#[test]
fn sizes_of_every_sized_kind() {
    let mut b = Builder::base();
    let int = b.int("int", 4);
    let char_ = b.int("char", 1);
    let arr = b.array(char_, int, 16);
    let arr2 = b.array(arr, int, 3);
    let enum32 = b.enumeration("e", &[("A", 1)]);
    let e64 = b.enum64("e64", &[("A", 1)]);
    let fl = b.float("double", 8);
    let ptr = b.ptr(char_);
    let st = b.structure("s", 24, &[("a", int, 0)]);
    let un = b.union("u", 16, &[("a", int, 0)]);
    b.structure(
        "all",
        200,
        &[
            ("arr", arr, 0),
            ("arr2", arr2, 128),
            ("e", enum32, 512),
            ("e64", e64, 576),
            ("fl", fl, 640),
            ("p", ptr, 704),
            ("s", st, 768),
            ("u", un, 960),
        ],
    );
    let btf = parse(&b);
    let size = |f: &str| member(&btf, "all", f).size;
    assert_eq!(size("arr"), 16);
    assert_eq!(size("arr2"), 48);
    assert_eq!(size("e"), 4);
    assert_eq!(size("e64"), 8);
    assert_eq!(size("fl"), 8);
    assert_eq!(size("p"), 8);
    assert_eq!(size("s"), 24);
    assert_eq!(size("u"), 16);
    assert_eq!(member(&btf, "all", "u").offset, 120);
}

#[test]
fn modifiers_are_skipped_for_size() {
    let mut b = Builder::base();
    let u16_ = b.int("short unsigned int", 2);
    let td = b.typedef("__u16", u16_);
    let td2 = b.typedef("__be16", td);
    let cst = b.constant(td2);
    let vol = b.volatile(cst);
    let int = b.int("int", 4);
    let counter = b.structure("", 4, &[("counter", int, 0)]);
    let atomic = b.typedef("atomic_t", counter);
    let sched = b.structure("sched", 8, &[]);
    let tagged = b.type_tag("rcu", sched);
    let ptr = b.ptr(tagged);
    let rst = b.restrict(ptr);
    b.structure(
        "holder",
        32,
        &[("state", vol, 0), ("weight", atomic, 32), ("svc", rst, 64)],
    );
    let btf = parse(&b);
    assert_eq!(
        member(&btf, "holder", "state"),
        Member { offset: 0, size: 2 }
    );
    assert_eq!(
        member(&btf, "holder", "weight"),
        Member { offset: 4, size: 4 }
    );
    assert_eq!(member(&btf, "holder", "svc"), Member { offset: 8, size: 8 });
}

#[test]
fn anonymous_members_are_searched_recursively() {
    let mut b = Builder::base();
    let int = b.int("int", 4);
    let long = b.int("long int", 8);
    // struct outer { int a; union { int b; struct { int c; long d; }; }; int e; }
    let inner = b.structure("", 16, &[("c", int, 0), ("d", long, 64)]);
    let cinner = b.constant(inner);
    let anon_union = b.union("", 16, &[("b", int, 0), ("", cinner, 0)]);
    b.structure(
        "outer",
        32,
        &[("a", int, 0), ("", anon_union, 64), ("e", int, 192)],
    );
    let btf = parse(&b);
    assert_eq!(member(&btf, "outer", "a"), Member { offset: 0, size: 4 });
    assert_eq!(member(&btf, "outer", "b"), Member { offset: 8, size: 4 });
    assert_eq!(member(&btf, "outer", "c"), Member { offset: 8, size: 4 });
    assert_eq!(
        member(&btf, "outer", "d"),
        Member {
            offset: 16,
            size: 8
        }
    );
    assert_eq!(
        member(&btf, "outer", "e"),
        Member {
            offset: 24,
            size: 4
        }
    );
    assert!(matches!(
        btf.member("outer", "nope"),
        Err(BtfError::FieldNotFound { .. })
    ));
    assert!(
        matches!(btf.member("outer", ""), Err(BtfError::FieldNotFound { .. })),
        "an empty name must not match an anonymous member"
    );
}

#[test]
fn dotted_paths_walk_named_members() {
    let mut b = Builder::base();
    let uint = b.int("unsigned int", 4);
    let ptr = b.ptr(uint);
    let ns_common = b.structure(
        "ns_common",
        24,
        &[("stashed", ptr, 0), ("ops", ptr, 64), ("inum", uint, 128)],
    );
    let ns_t = b.typedef("ns_common_t", ns_common);
    let anon = b.structure("", 32, &[("ns", ns_t, 64)]);
    b.structure("net", 256, &[("refcount", uint, 0), ("", anon, 1024)]);
    let btf = parse(&b);
    assert_eq!(
        member(&btf, "net", "ns.inum"),
        Member {
            offset: 128 + 8 + 16,
            size: 4
        }
    );
    assert_eq!(
        member(&btf, "net", "ns"),
        Member {
            offset: 136,
            size: 24
        }
    );
    match btf.member("net", "refcount.x") {
        Err(e @ BtfError::NotComposite { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("`refcount` is a int"), "{msg}");
        }
        other => panic!("expected NotComposite, got {other:?}"),
    }
    for bad in ["ns.nope", "ns.", ".inum", "ns..inum"] {
        match btf.member("net", bad) {
            Err(BtfError::FieldNotFound { strukt, field }) => {
                assert_eq!((strukt.as_str(), field.as_str()), ("net", bad));
            }
            other => panic!("{bad}: expected FieldNotFound, got {other:?}"),
        }
    }
}

#[test]
fn bitfields_are_rejected() {
    let mut b = Builder::base();
    let uint = b.int("unsigned int", 4);
    b.structure_kf(
        "with_kf",
        8,
        &[
            ("whole", uint, 0, 0),
            ("flag", uint, 32, 1),
            ("rest", uint, 33, 31),
        ],
    );
    let three_bits = b.int_bits("unsigned int", 4, 0, 3);
    b.structure(
        "old_style",
        8,
        &[("whole", uint, 0), ("bits", three_bits, 32)],
    );
    b.structure("unaligned", 8, &[("odd", uint, 3)]);
    let btf = parse(&b);
    assert_eq!(
        member(&btf, "with_kf", "whole"),
        Member { offset: 0, size: 4 }
    );
    match btf.member("with_kf", "flag") {
        Err(BtfError::Bitfield {
            strukt,
            field,
            bits,
        }) => {
            assert_eq!(
                (strukt.as_str(), field.as_str(), bits),
                ("with_kf", "flag", 1)
            );
        }
        other => panic!("expected Bitfield, got {other:?}"),
    }
    assert!(matches!(
        btf.member("with_kf", "rest"),
        Err(BtfError::Bitfield { bits: 31, .. })
    ));
    assert_eq!(
        member(&btf, "old_style", "whole"),
        Member { offset: 0, size: 4 }
    );
    assert!(matches!(
        btf.member("old_style", "bits"),
        Err(BtfError::Bitfield { bits: 3, .. })
    ));
    assert!(matches!(
        btf.member("unaligned", "odd"),
        Err(BtfError::NotByteAligned { bit_offset: 3, .. })
    ));
}

/// A base like vmlinux and a split blob like `ip_vs` on top of it.
fn base_and_split() -> (Builder, Builder) {
    let mut base = Builder::base();
    let int = base.int("int", 4);
    let proto = base.func_proto(int, &[]);
    base.func("tcp_v4_connect", proto);
    let uint = base.int("unsigned int", 4);
    base.structure("net", 64, &[("users", int, 0), ("inum", uint, 96)]);
    let mut split = Builder::split(&base);
    let net_id = 4;
    let net_ptr = split.ptr(net_id);
    split.structure("netns_ipvs", 16, &[("gen", int, 0), ("net", net_ptr, 64)]);
    let proto = split.func_proto(int, &[("", net_ptr)]);
    split.func("ip_vs_conn_new", proto);
    // The same struct name as the base's, with another layout: the split's copy wins.
    split.structure("net", 8, &[("users", uint, 32)]);
    (base, split)
}

#[test]
fn split_btf_numbers_types_and_strings_after_its_base() {
    let (base_b, split_b) = base_and_split();
    let base = Arc::new(parse(&base_b));
    assert_eq!(base.type_count(), 5);
    let split = Btf::parse_split(&split_b.build(), Arc::clone(&base))
        .unwrap_or_else(|e| panic!("split rejected: {e}"));
    assert_eq!(split.start_id, 6);
    assert_eq!(split.type_count(), 5);
    assert_eq!(split.start_str as usize, base.strings.len());
    assert_eq!(kind_of(&split, 6), Kind::Ptr);
    assert_eq!(kind_of(&split, 4), Kind::Int, "ids below 6 are the base's");
    assert_eq!(
        member(&split, "netns_ipvs", "net"),
        Member { offset: 8, size: 8 }
    );
    assert_eq!(
        member(&split, "net", "users"),
        Member { offset: 4, size: 4 }
    );
    // The split's own `net` has no `inum`: the base's copy answers.
    assert_eq!(
        member(&split, "net", "inum"),
        Member {
            offset: 12,
            size: 4
        }
    );
    assert!(split.has_function("ip_vs_conn_new"));
    assert!(
        split.has_function("tcp_v4_connect"),
        "base functions are visible"
    );
    assert!(
        !base.has_function("ip_vs_conn_new"),
        "the base does not see split types"
    );
    assert!(matches!(
        base.member("netns_ipvs", "net"),
        Err(BtfError::StructNotFound { .. })
    ));
    // The split's strings continue the base's: its first string (the first member name the
    // builder wrote) sits at the base's end.
    assert_eq!(split.str_bytes(split.start_str).unwrap(), b"gen");
}

#[test]
fn split_on_the_wrong_base_errors_instead_of_panicking() {
    let (_, split_b) = base_and_split();
    let mut small = Builder::base();
    small.int("int", 4);
    let small = Arc::new(parse(&small));
    let split = Btf::parse_split(&split_b.build(), small).expect("the blob itself is well formed");
    // Ids and string offsets now point at nothing or at the wrong things; every answer must be
    // an error or a plain miss.
    for (s, f) in [("netns_ipvs", "net"), ("net", "users"), ("net", "inum")] {
        let _ = split.member(s, f);
    }
    let _ = split.has_function("ip_vs_conn_new");
}

#[test]
fn split_btf_needs_its_base() {
    let (_, split_b) = base_and_split();
    assert!(matches!(
        Btf::parse(&split_b.build()),
        Err(BtfError::SplitWithoutBase)
    ));
}

#[test]
fn big_endian_and_longer_headers_parse_the_same() {
    for big in [false, true] {
        for extra in [0, 8] {
            let mut b = Builder::base().extra_header(extra);
            if big {
                b = b.big_endian();
            }
            every_kind(&mut b);
            let btf = parse(&b);
            assert_eq!(
                member(&btf, "after_19", "x").offset,
                19,
                "big={big} extra={extra}"
            );
            assert!(btf.has_function("some_function"));
        }
    }
}

#[test]
fn header_problems_are_named() {
    let mut b = Builder::base();
    b.int("int", 4);
    let good = b.build();

    let mut bad = good.clone();
    bad[0] = 0x7f;
    assert!(matches!(Btf::parse(&bad), Err(BtfError::BadMagic { .. })));
    let mut bad = good.clone();
    bad[2] = 2;
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::UnsupportedVersion { version: 2 })
    ));
    let mut bad = good.clone();
    bad[4] = 16; // hdr_len 16 < 24
    assert!(matches!(Btf::parse(&bad), Err(BtfError::BadHeader { .. })));
    let mut bad = good.clone();
    *bad.last_mut().unwrap() = b'x';
    assert!(matches!(Btf::parse(&bad), Err(BtfError::BadHeader { .. })));
    let mut bad = good.clone();
    bad[24 + 7] = 20; // kind 20: bits 24..28 of `info`, the last byte of its LE word
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::UnknownKind { id: 1, kind: 20 })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let (base_b, split_b) = base_and_split();
    let mut full = Builder::base();
    every_kind(&mut full);
    let base = Arc::new(parse(&base_b));
    for blob in [full.build(), base_b.build()] {
        for len in 0..blob.len() {
            assert!(
                Btf::parse(&blob[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
    }
    let split = split_b.build();
    for len in 0..split.len() {
        assert!(
            Btf::parse_split(&split[..len], Arc::clone(&base)).is_err(),
            "split prefix of {len} bytes accepted"
        );
    }
}

/// Every single-byte corruption of a valid blob either parses or errors; lookups on whatever
/// parses terminate with an answer. A panic or a hang fails the test.
#[test]
fn corrupt_bytes_never_panic() {
    let mut b = Builder::base();
    every_kind(&mut b);
    let int = 1;
    let inner = b.structure("", 8, &[("c", int, 0)]);
    let anon = b.union("", 8, &[("", inner, 0)]);
    let td = b.typedef("td", anon);
    b.structure("outer", 16, &[("", anon, 0), ("t", td, 64)]);
    let blob = b.build();
    let names = [
        ("outer", "c"),
        ("outer", "t.c"),
        ("after_5", "x"),
        ("s3", "c"),
    ];
    for at in 0..blob.len() {
        for flip in [0xff, 0x01, 0x80] {
            let mut bad = blob.clone();
            bad[at] ^= flip;
            if let Ok(btf) = Btf::parse(&bad) {
                for (s, f) in names {
                    let _ = btf.member(s, f);
                }
                let _ = btf.has_function("some_function");
            }
        }
    }
}

#[test]
fn reference_cycles_are_errors() {
    let mut b = Builder::base();
    // typedef loop: 1 -> 2 -> 1
    b.typedef("a", 2);
    b.typedef("b", 1);
    // struct whose anonymous member is itself
    b.structure("selfish", 4, &[("", 4, 0), ("", 3, 0)]);
    b.structure("holder", 4, &[("x", 1, 0)]);
    let btf = parse(&b);
    assert!(matches!(
        btf.member("holder", "x"),
        Err(BtfError::TooDeep { .. })
    ));
    assert!(matches!(
        btf.member("selfish", "y"),
        Err(BtfError::TooDeep { .. })
    ));
}

/// Anonymous members may share their type (a DAG: legal BTF, and cheap to write). Each type
/// must be searched once per lookup: 60 levels of two members each would otherwise be 2^60
/// visits for a name that is absent, a start-up that never ends on a crafted `--btf` file.
#[test]
fn shared_anonymous_members_are_searched_once() {
    let mut b = Builder::base();
    let int = b.int("int", 4);
    let mut level = b.structure("", 4, &[("x", int, 0)]);
    for _ in 0..60 {
        level = b.structure("", 8, &[("", level, 0), ("", level, 32)]);
    }
    b.structure("outer", 8, &[("", level, 0)]);
    let btf = parse(&b);
    let (done, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send((btf.member("outer", "absent"), btf.member("outer", "x")));
    });
    let (absent, x) = answer
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the lookups did not finish in 10 s: shared types are searched again and again");
    assert!(
        matches!(absent, Err(BtfError::FieldNotFound { .. })),
        "{absent:?}"
    );
    assert_eq!(x.unwrap(), Member { offset: 0, size: 4 });
}

#[test]
fn dangling_references_are_errors() {
    let mut b = Builder::base();
    b.structure("s", 4, &[("x", 99, 0)]);
    b.raw("t", kind::STRUCT, false, 1, 4, &[0xffff, 1, 0]);
    let btf = parse(&b);
    assert!(matches!(
        btf.member("s", "x"),
        Err(BtfError::BadTypeId { id: 99 })
    ));
    assert!(matches!(
        btf.member("t", "x"),
        Err(BtfError::BadString { offset: 0xffff })
    ));
}

#[test]
fn unsized_members_are_errors() {
    let mut b = Builder::base();
    let fwd = b.fwd("opaque");
    let proto = b.func_proto(0, &[]);
    b.structure("s", 8, &[("f", fwd, 0), ("v", 0, 0), ("p", proto, 0)]);
    let btf = parse(&b);
    for field in ["f", "v", "p"] {
        assert!(
            matches!(btf.member("s", field), Err(BtfError::Unsized { .. })),
            "{field}"
        );
    }
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ipvs-trace-btf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn from_file_reads_raw_blobs_and_elf_sections() {
    let (base_b, split_b) = base_and_split();
    let base_path = temp_file("vmlinux.btf", &base_b.build());
    let base = Arc::new(Btf::from_file(&base_path, None).unwrap_or_else(|e| panic!("{e}")));
    let ko = temp_file("ip_vs.ko", &elf_with_section(".BTF", &split_b.build()));
    let split = Btf::from_file(&ko, Some(Arc::clone(&base))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        member(&split, "netns_ipvs", "net"),
        Member { offset: 8, size: 8 }
    );

    let no_btf = temp_file("no-btf.ko", &elf_with_section(".data", &split_b.build()));
    let err = Btf::from_file(&no_btf, None).unwrap_err();
    assert!(matches!(err, BtfError::NoBtfSection { .. }), "{err:?}");
    assert!(err.to_string().contains("no-btf.ko"), "{err}");

    let empty = temp_file("empty-btf.ko", &elf_with_section(".BTF", b""));
    let err = Btf::from_file(&empty, None).unwrap_err();
    assert!(matches!(err, BtfError::File { .. }), "{err:?}");
    assert!(err.to_string().contains("empty-btf.ko"), "{err}");

    let xz = temp_file("ip_vs.ko.xz", b"\xfd7zXZ\x00rest");
    let err = Btf::from_file(&xz, None).unwrap_err();
    assert!(err.to_string().contains("xz -dk"), "{err}");

    let missing = Path::new("/nonexistent/ip_vs.btf");
    let err = Btf::from_file(missing, None).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ip_vs.btf"), "{err}");
    std::fs::remove_dir_all(base_path.parent().unwrap()).unwrap();
}

const HOST_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn host_vmlinux() -> Btf {
    let path = Path::new(HOST_VMLINUX);
    assert!(
        path.exists(),
        "{HOST_VMLINUX} is missing: these tests need a kernel with CONFIG_DEBUG_INFO_BTF \
         (every supported build machine has one)"
    );
    let start = Instant::now();
    let btf = Btf::from_file(path, None).unwrap_or_else(|e| panic!("{HOST_VMLINUX}: {e:#}"));
    let parsed = start.elapsed();
    assert!(btf.has_function("tcp_v4_connect"));
    eprintln!(
        "{HOST_VMLINUX}: {} types, parse {parsed:?}, parse + index {:?}",
        btf.type_count(),
        start.elapsed()
    );
    btf
}

#[test]
fn host_vmlinux_resolves_the_fields_the_tracer_reads() {
    let btf = host_vmlinux();
    assert!(btf.type_count() > 10_000, "{} types", btf.type_count());
    let data = member(&btf, "sk_buff", "data");
    assert_eq!(data.size, 8);
    // `data` follows head/tail/end and the anonymous list/rbnode unions: never at the start.
    assert!(data.offset > 64 && data.offset < 512, "{data:?}");
    let inum = member(&btf, "net", "ns.inum");
    assert_eq!(inum.size, 4);
    assert!(inum.offset > member(&btf, "net", "ns").offset);
    assert!(btf.has_function("tcp_v4_connect"));
    assert!(!btf.has_function("ip_vs_conn_new"), "the host has no IPVS");
    assert!(!btf.has_function("sk_buff"), "a struct is not a function");
}

/// A whole-blob consistency check on real data: every named struct's non-bitfield members must
/// resolve to a size and fit inside the struct. A desync or a wrong size rule would break this on
/// thousands of types at once.
#[test]
fn host_vmlinux_every_struct_member_fits() {
    let btf = host_vmlinux();
    let mut checked = 0usize;
    for (i, &kind) in btf.kinds.iter().enumerate() {
        if kind != Kind::Struct {
            continue;
        }
        let id = btf.start_id + i as u32;
        let t = btf.ty(id).unwrap();
        let struct_size = u64::from(t.size_or_target);
        for m in 0..t.vlen() as usize {
            let name_off = t.trailing_u32(3 * m).unwrap();
            let type_id = t.trailing_u32(3 * m + 1).unwrap();
            let raw_offset = t.trailing_u32(3 * m + 2).unwrap();
            btf.str_bytes(name_off).unwrap();
            let (bit_offset, width) = if t.kind_flag() {
                (raw_offset & 0xff_ffff, raw_offset >> 24)
            } else {
                (raw_offset, 0)
            };
            if width != 0 {
                assert!(
                    u64::from(bit_offset + width) <= struct_size * 8,
                    "type #{id} member {m}"
                );
                continue;
            }
            // Flexible array members have size 0 and may sit at the very end.
            let size = btf
                .size_of(type_id, 0)
                .unwrap_or_else(|e| panic!("type #{id} member {m}: {e}"));
            assert_eq!(bit_offset % 8, 0, "type #{id} member {m}");
            assert!(
                u64::from(bit_offset / 8) + u64::from(size) <= struct_size,
                "type #{id} member {m}: offset {} size {size} struct {struct_size}",
                bit_offset / 8
            );
            checked += 1;
        }
    }
    assert!(checked > 50_000, "only {checked} members checked");
}
