//! The ctnetlink encoder and decoder: the request's bytes, and replies captured from real
//! kernels (`ipvs-trace/tests/conntrack/<kernel>/`, recorded by `tests/scenarios/nat.sh` with
//! `NAT_RECORD`; the expected tuples are the lines `conntrack -L -o extended` printed in the
//! same run, kept beside the replies), truncated and corrupted.

use std::path::{Path, PathBuf};

use super::decode::get_request;
use super::nat::{NatStage, NatStats, Released};
use super::worker::{Job, Lookups, Outcome, Retry};
use super::*;
use super::{DumpReader, DumpStats};
use crate::events::{Event, Proto};
use crate::ipvs::netlink::Replay;
use crate::kube::OwnedNames;

fn tuple(proto: Proto, src: &str, dst: &str) -> Tuple {
    Tuple {
        proto,
        src: src.parse().expect("ip:port"),
        dst: dst.parse().expect("ip:port"),
    }
}

/// The request, byte for byte as `nf_conntrack_netlink.c` parses it: nlmsghdr (type 0x0101 =
/// CTNETLINK << 8 | CT_GET, flags REQUEST | ACK), nfgenmsg (AF_INET, v0, res_id 0), then
/// CTA_TUPLE_ORIG { CTA_TUPLE_IP { V4_SRC, V4_DST }, CTA_TUPLE_PROTO { NUM, SRC_PORT,
/// DST_PORT } }, nests flagged NLA_F_NESTED, values in network order.
#[test]
fn request_bytes() {
    let key = tuple(Proto::Tcp, "198.51.100.71:40000", "172.31.0.70:80");
    let bytes = get_request(7, &key).expect("one family");
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        72, 0, 0, 0, 0x01, 0x01, 0x05, 0x00, 7, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
        2, 0, 0, 0, // nfgenmsg
        52, 0, 0x01, 0x80, // CTA_TUPLE_ORIG, nested
        20, 0, 0x01, 0x80, // CTA_TUPLE_IP, nested
        8, 0, 1, 0, 198, 51, 100, 71, // CTA_IP_V4_SRC
        8, 0, 2, 0, 172, 31, 0, 70, // CTA_IP_V4_DST
        28, 0, 0x02, 0x80, // CTA_TUPLE_PROTO, nested
        5, 0, 1, 0, 6, 0, 0, 0, // CTA_PROTO_NUM (u8, padded)
        6, 0, 2, 0, 0x9c, 0x40, 0, 0, // CTA_PROTO_SRC_PORT 40000
        6, 0, 3, 0, 0, 80, 0, 0, // CTA_PROTO_DST_PORT 80
    ];
    assert_eq!(bytes, expected);
}

#[test]
fn request_v6_and_mixed_families() {
    let key = tuple(Proto::Udp, "[fd00:198:51::71]:5000", "[fd00:31::70]:53");
    let bytes = get_request(1, &key).expect("one family");
    // nfgenmsg family AF_INET6; two 16-byte addresses of types V6_SRC (3) and V6_DST (4).
    assert_eq!(bytes[16], 10);
    assert_eq!(bytes.len(), 16 + 4 + 4 + (4 + 20 + 20) + (4 + 8 + 8 + 8));
    assert_eq!(&bytes[28..32], &[20, 0, 3, 0]);
    assert_eq!(&bytes[48..52], &[20, 0, 4, 0]);
    let mixed = tuple(Proto::Tcp, "10.0.0.1:1", "[fd00::1]:2");
    assert_eq!(get_request(1, &mixed), None);
}

fn capture_dir(kernel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("conntrack")
        .join(kernel)
}

/// The recorded replies of `kernel`, in order, each with the sequence number of its request
/// (file `NN-get.bin` answers request NN + 1).
fn replies(kernel: &str) -> Vec<(u32, Vec<u8>)> {
    let dir = capture_dir(kernel);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            let n: u32 = name[..2].parse().expect("NN-get.bin");
            (n + 1, std::fs::read(path).expect("a recorded reply"))
        })
        .collect()
}

/// What `conntrack -L -o extended` printed for both families in the same run.
fn listing(kernel: &str) -> String {
    ["conntrack-L-ipv4.txt", "conntrack-L-ipv6.txt"]
        .iter()
        .map(|name| {
            let path = capture_dir(kernel).join(name);
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// The entries of every recorded lookup (the probe's ENOENT first, then one per connection).
fn entries(kernel: &str) -> Vec<Entry> {
    let replies = replies(kernel);
    let (seq, probe) = &replies[0];
    assert!(
        matches!(get_reply(probe, *seq), Ok(None)),
        "the probe's reply is ENOENT"
    );
    replies[1..]
        .iter()
        .map(|(seq, bytes)| {
            get_reply(bytes, *seq)
                .unwrap_or_else(|e| panic!("reply {seq}: {e}"))
                .unwrap_or_else(|| panic!("reply {seq}: no entry"))
        })
        .collect()
}

/// Every recorded entry is a line of `conntrack -L` (both tuples, as conntrack-tools print
/// them), and the run's connections are all there: 40 TCP and 6 UDP over IPv4, 10 TCP over
/// IPv6, each with the pod as the reply's source (Masq, net.ipv4.vs.conntrack=1).
fn assert_capture(kernel: &str) {
    let entries = entries(kernel);
    assert_eq!(entries.len(), 56);
    let listing = listing(kernel);
    let mut kinds = std::collections::BTreeMap::new();
    for entry in &entries {
        let (o, r) = (entry.orig, entry.reply);
        let line = format!(
            "src={} dst={} sport={} dport={} src={} dst={} sport={} dport={}",
            o.src.ip(),
            o.dst.ip(),
            o.src.port(),
            o.dst.port(),
            r.src.ip(),
            r.dst.ip(),
            r.src.port(),
            r.dst.port()
        );
        assert!(listing.contains(&line), "{line} not in\n{listing}");
        assert_eq!(o.proto, r.proto);
        assert_eq!(r.dst, o.src, "the pod answers the client itself");
        assert!(
            entry.status.0 & Status::CONFIRMED != 0,
            "{:?}",
            entry.status.names()
        );
        assert_eq!(entry.mark, Some(0));
        *kinds
            .entry((o.proto.to_string(), o.src.is_ipv6()))
            .or_insert(0) += 1;
    }
    let expected = [
        (("TCP".to_owned(), false), 40),
        (("TCP".to_owned(), true), 10),
        (("UDP".to_owned(), false), 6),
    ];
    assert_eq!(kinds, expected.into_iter().collect());
}

/// Debian 6.12.117: tests/conntrack/6.12 (README there).
#[test]
fn captured_6_12_replies_equal_what_conntrack_listed() {
    assert_capture("6.12");
}

/// Debian 5.10.0-46 (5.10.262-1, bullseye-security): tests/conntrack/5.10.
#[test]
fn captured_5_10_replies_equal_what_conntrack_listed() {
    assert_capture("5.10");
}

/// The replies of request 1 (the probe: ENOENT) and request 2 (an entry) of the 6.12 capture.
fn probe_and_entry() -> ((u32, Vec<u8>), (u32, Vec<u8>)) {
    let mut replies = replies("6.12").into_iter();
    (replies.next().unwrap(), replies.next().unwrap())
}

#[test]
fn kernel_errors_say_what_to_do() {
    let ((seq, enoent), _) = probe_and_entry();
    // The probe's NLMSG_ERROR carries -ENOENT right after its 16-byte header.
    assert_eq!(enoent[16..20], (-libc::ENOENT).to_ne_bytes());
    let with_errno = |errno: i32| {
        let mut reply = enoent.clone();
        reply[16..20].copy_from_slice(&(-errno).to_ne_bytes());
        get_reply(&reply, seq)
    };
    assert!(matches!(
        with_errno(libc::EPERM),
        Err(ConntrackError::PermissionDenied)
    ));
    let not_loaded = with_errno(libc::EOPNOTSUPP).unwrap_err();
    assert!(
        not_loaded
            .to_string()
            .contains("modprobe nf_conntrack_netlink"),
        "{not_loaded}"
    );
    assert!(matches!(
        with_errno(libc::EINVAL),
        Err(ConntrackError::Kernel(e)) if e.raw_os_error() == Some(libc::EINVAL)
    ));
    assert!(ConntrackError::PermissionDenied
        .to_string()
        .contains("CAP_NET_ADMIN"));
}

/// Every cut of a reply (entry and ack, or an error) is refused, never a panic or an entry.
#[test]
fn truncated_replies_are_errors() {
    let ((seq1, enoent), (seq2, entry)) = probe_and_entry();
    for (seq, reply) in [(seq1, &enoent), (seq2, &entry)] {
        for len in 0..reply.len() {
            assert!(
                get_reply(&reply[..len], seq).is_err(),
                "{len} of {} bytes accepted",
                reply.len()
            );
        }
    }
}

/// Any byte of a reply changed: an error or an entry, never a panic; and the damage the
/// checks exist for is named.
#[test]
fn corrupted_replies_never_panic() {
    let (_, (seq, reply)) = probe_and_entry();
    for at in 0..reply.len() {
        for value in [0x00, 0xff, reply[at] ^ 0x01, reply[at] ^ 0x80] {
            let mut bad = reply.clone();
            bad[at] = value;
            let _ = get_reply(&bad, seq);
        }
    }
    // Another request's reply.
    assert!(get_reply(&reply, seq + 1)
        .unwrap_err()
        .to_string()
        .contains("reply to request"));
    // The first attribute (CTA_TUPLE_ORIG, after nlmsghdr and nfgenmsg) longer than the
    // message.
    let mut long = reply.clone();
    long[20..22].copy_from_slice(&0x7fffu16.to_ne_bytes());
    let error = get_reply(&long, seq).unwrap_err().to_string();
    assert!(error.contains("says it is"), "{error}");
    // An unknown family in nfgenmsg.
    let mut family = reply.clone();
    family[16] = 7;
    let error = get_reply(&family, seq).unwrap_err().to_string();
    assert!(error.contains("family 7"), "{error}");
}

/// The lookup thread over a recording: each job's answer is its entry.
#[tokio::test]
async fn lookups_over_a_recording() {
    let expected = entries("6.12");
    let mut client = Client::new(Replay::open(&capture_dir("6.12")).expect("the recording"));
    client.probe().expect("the recorded probe: ENOENT");
    let mut lookups = Lookups::start(client, 64, Retry::DEFAULT).expect("the thread");
    for (id, entry) in (1..).zip(&expected) {
        assert!(lookups.submit(Job {
            id,
            key: entry.orig
        }));
    }
    for (id, entry) in (1..).zip(&expected) {
        let answer = lookups.next().await.expect("an answer");
        assert_eq!(answer.id, id);
        assert_eq!(answer.outcome, Outcome::Found(entry.clone()));
    }
}

/// Events come out in the order they went in, connection events with their entries, the
/// others (a template, a no_dest) behind the lookups before them.
#[tokio::test]
async fn stage_releases_events_in_order() {
    let expected = entries("6.12");
    let mut client = Client::new(Replay::open(&capture_dir("6.12")).expect("the recording"));
    client.probe().expect("the recorded probe: ENOENT");
    let lookups = Lookups::start(client, 64, Retry::DEFAULT).expect("the thread");
    let mut stage = NatStage::with(Some(lookups), None);

    let samples = crate::output::tests::sample_events();
    let connection = |entry: &Entry| {
        let mut event = samples[0].clone();
        event.proto = entry.orig.proto;
        event.client = entry.orig.src;
        event.vip = entry.orig.dst;
        event.backend = Some(entry.reply.src);
        event
    };
    let events = [
        connection(&expected[0]),
        samples[1].clone(),
        connection(&expected[1]),
        samples[3].clone(),
    ];
    for event in &events {
        stage.push(event.clone(), OwnedNames::default());
    }
    assert_eq!(stage.release().count(), 0, "the first waits for its lookup");
    while stage.outstanding() > 0 {
        let answer = stage.next_answer().await;
        assert_eq!(stage.answer(answer), None);
    }
    let released: Vec<Released> = stage.release().collect();
    let order: Vec<&Event> = released.iter().map(|r| &r.event).collect();
    assert_eq!(order, events.iter().collect::<Vec<_>>());
    let conntrack: Vec<Option<&Entry>> = released
        .iter()
        .map(|r| r.view.as_ref().and_then(|v| v.conntrack.as_ref()))
        .collect();
    assert_eq!(
        conntrack,
        [Some(&expected[0]), None, Some(&expected[1]), None]
    );
    assert_eq!(
        stage.stats(),
        NatStats {
            lookups: 2,
            found: 2,
            ..NatStats::default()
        }
    );
    assert_eq!(
        stage.summary_line(),
        "nat: conntrack lookups=2 found=2 missing=0 dropped=0 failed=0"
    );
}

/// Without lookups (net.ipv4.vs.conntrack=0), events pass at once with their translation.
#[test]
fn stage_without_lookups_passes_events_through() {
    let mut stage = NatStage::with(None, Some("net.ipv4.vs.conntrack is 0".to_owned()));
    for event in crate::output::tests::sample_events() {
        stage.push(event, OwnedNames::default());
    }
    let released: Vec<Released> = stage.release().collect();
    assert_eq!(released.len(), 5);
    assert!(released[0]
        .view
        .as_ref()
        .is_some_and(|v| v.conntrack.is_none()));
    assert_eq!(
        stage.summary_line(),
        "nat: conntrack lookups off: net.ipv4.vs.conntrack is 0"
    );
}

/// The dump recorded by `who --debug-dump-netlink` (tests/conntrack/dump-6.18, README there).
fn dump_capture() -> Vec<u8> {
    let path = capture_dir("dump-6.18").join("00-dump.bin");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The dump request is the GET of `conntrack -L`: nlmsghdr (type 0x0101, flags REQUEST |
/// DUMP = ROOT | MATCH), nfgenmsg AF_UNSPEC (both families), no attribute.
#[test]
fn dump_request_bytes() {
    let bytes = decode::dump_request(3);
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        20, 0, 0, 0, 0x01, 0x01, 0x01, 0x03, 3, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
        0, 0, 0, 0, // nfgenmsg
    ];
    assert_eq!(bytes, expected);
}

/// Reads `pieces` as the kernel's socket would hand them, each entry collected.
fn read_dump(pieces: &[&[u8]]) -> (Result<DumpStats, ConntrackError>, Vec<Entry>) {
    let mut entries = Vec::new();
    let mut reader = DumpReader {
        seq: 1,
        stats: DumpStats::default(),
        end: None,
    };
    for piece in pieces {
        if reader.feed(piece, &mut |entry| entries.push(entry)) {
            break;
        }
    }
    (reader.finish(), entries)
}

/// The netlink messages of a recorded reply, each on its own.
fn messages(reply: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
        let (message, tail) = rest.split_at(len.next_multiple_of(4).min(rest.len()));
        out.push(message);
        rest = tail;
    }
    out
}

/// An entry's two tuples as conntrack -L prints them (flags such as `[UNREPLIED]` may stand
/// between them).
fn listed(entry: &Entry) -> [String; 2] {
    [entry.orig, entry.reply].map(|t| {
        format!(
            "src={} dst={} sport={} dport={}",
            t.src.ip(),
            t.dst.ip(),
            t.src.port(),
            t.dst.port()
        )
    })
}

/// Every entry of the recorded dump (both families, several datagrams) is a line of
/// `conntrack -L` of the same moment and every line an entry; exactly the DNATed ones (to the
/// two Service addresses) have IPS_DST_NAT, each with the endpoint as the reply's source.
#[test]
fn captured_dump_equals_what_conntrack_listed() {
    let dir = capture_dir("dump-6.18");
    let listing: Vec<String> = ["conntrack-L-ipv4.txt", "conntrack-L-ipv6.txt"]
        .iter()
        .flat_map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).expect("the listing");
            text.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    let mut client = Client::new(Replay::open(&dir).expect("the recording"));
    let mut entries = Vec::new();
    let stats = client
        .dump(&mut |entry| entries.push(entry))
        .expect("the recorded dump");
    assert_eq!((stats.entries, stats.malformed), (166, 0));
    assert_eq!(entries.len(), listing.len());
    for entry in &entries {
        let [orig, reply] = listed(entry);
        assert!(
            listing
                .iter()
                .any(|l| l.contains(&format!("{orig} ")) && l.contains(&format!("{reply} "))),
            "{orig} {reply} not listed"
        );
    }
    let vips = ["172.31.0.90", "fd00:31::90"];
    let dnat: Vec<&Entry> = entries.iter().filter(|e| e.status.dst_nat()).collect();
    assert_eq!(
        dnat.len(),
        150 + 4 + 5,
        "TCP and UDP over IPv4, TCP over IPv6"
    );
    for entry in &entries {
        let to_vip = vips.contains(&entry.orig.dst.ip().to_string().as_str());
        assert_eq!(entry.status.dst_nat(), to_vip, "{:?}", listed(entry));
        if to_vip {
            assert_ne!(entry.reply.src, entry.orig.dst);
            assert!(entry.reply.src.ip().to_string().contains("245"));
        }
    }
    let parts = messages(&dump_capture()).len();
    assert_eq!(parts, 166 + 1, "one message per entry, and NLMSG_DONE");
}

/// Fed a message at a time (the smallest pieces a socket can hand), the same entries.
#[test]
fn a_dump_read_piece_by_piece() {
    let capture = dump_capture();
    let (whole, all) = read_dump(&[&capture]);
    assert_eq!(whole.expect("the dump").entries, 166);
    let (pieces, each) = read_dump(&messages(&capture));
    assert_eq!(pieces.expect("the dump").entries, 166);
    assert_eq!(all, each);
}

/// A dump cut anywhere is an error, never a panic or a silent end; one whose end is missing
/// says it was truncated.
#[test]
fn truncated_dumps_are_errors() {
    let capture = dump_capture();
    for len in (0..capture.len()).step_by(61).chain([capture.len() - 20]) {
        let (result, _) = read_dump(&[&capture[..len]]);
        assert!(result.is_err(), "{len} of {} bytes accepted", capture.len());
    }
    let (result, entries) = read_dump(&[&capture[..capture.len() - 20]]);
    assert_eq!(entries.len(), 166, "every entry before the cut");
    let error = result.unwrap_err().to_string();
    assert!(error.contains("truncated"), "{error}");
}

/// A message that is no entry this decoder reads is counted and skipped; damage to the
/// framing ends the dump with an error; bytes changed anywhere never panic.
#[test]
fn corrupted_dumps_skip_or_refuse() {
    let capture = dump_capture();
    let second = messages(&capture)[0].len();
    // The second entry's nfgenmsg family (after its 16-byte nlmsghdr) made unknown.
    let mut family = capture.clone();
    family[second + 16] = 7;
    let (result, entries) = read_dump(&[&family]);
    let stats = result.expect("the rest of the dump");
    assert_eq!(
        (stats.entries, stats.malformed, entries.len()),
        (165, 1, 165)
    );
    assert!(
        stats
            .first_error
            .as_deref()
            .is_some_and(|e| e.contains("family 7")),
        "{stats:?}"
    );
    // Its length made longer than the dump: the framing cannot be walked.
    let mut long = capture.clone();
    long[second..second + 4].copy_from_slice(&0x7fff_ffffu32.to_ne_bytes());
    assert!(matches!(
        read_dump(&[&long]).0,
        Err(ConntrackError::Malformed(_))
    ));
    // Another request's messages.
    let mut other = capture.clone();
    other[second + 8..second + 12].copy_from_slice(&9u32.to_ne_bytes());
    let error = read_dump(&[&other]).0.unwrap_err().to_string();
    assert!(error.contains("reply to request"), "{error}");
    let len = capture.len();
    for at in (0..len).step_by(7) {
        let mut bad = capture[..len.min(4096)].to_vec();
        if at < bad.len() {
            bad[at] ^= 0xff;
            let _ = read_dump(&[&bad]);
        }
    }
}

/// The kernel's refusals of a dump say what to do, as a lookup's do.
#[test]
fn a_refused_dump_says_why() {
    let ((_, enoent), _) = probe_and_entry();
    for (errno, needle) in [
        (libc::EPERM, "CAP_NET_ADMIN"),
        (libc::EOPNOTSUPP, "modprobe nf_conntrack_netlink"),
    ] {
        let mut reply = enoent.clone();
        reply[16..20].copy_from_slice(&(-errno).to_ne_bytes());
        let (result, entries) = read_dump(&[&reply]);
        let error = result.unwrap_err().to_string();
        assert!(error.contains(needle), "{error}");
        assert!(entries.is_empty());
    }
}
