//! The ctnetlink encoder and decoder: the request's bytes, and replies captured from real
//! kernels (`ipvs-trace/tests/conntrack/<kernel>/`, recorded by `tests/scenarios/nat.sh` with
//! `NAT_RECORD`; the expected tuples are the lines `conntrack -L -o extended` printed in the
//! same run, kept beside the replies), truncated and corrupted.

use super::decode::get_request;
use super::*;
use crate::events::Proto;

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
