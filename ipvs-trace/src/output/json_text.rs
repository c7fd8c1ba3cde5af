//! JSON values as bytes, without the `fmt` machinery: the hot part of `--output json`.
//!
//! Each function appends exactly what serde_json writes for the same value (strings escaped
//! as serde_json escapes them, addresses as their `Display`), so the hand-written line in
//! [`super::json`] is byte-for-byte the serde one; its tests check that over many events.

use std::fmt::Display;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Serialize, Serializer};

/// Serialises any `Display` value as a JSON string without an intermediate `String` (for the
/// parts of a line written through serde: `nat`).
pub(super) struct AsString<T>(pub(super) T);

impl<T: Display> Serialize for AsString<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The escape serde_json uses for byte `b` inside a string: 0 for none, `u` for `\u00XX`, or
/// the letter of the short form (`\n`, `\"`, ...).
const fn escape(b: u8) -> u8 {
    match b {
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        0x00..=0x1f => b'u',
        b'"' => b'"',
        b'\\' => b'\\',
        _ => 0,
    }
}

/// A JSON string: quoted, with `"`, `\` and control characters escaped; everything else
/// (including non-ASCII UTF-8 and DEL) as is, as serde_json does.
pub(super) fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Names almost never need escaping: one pass without early exit (which the compiler can
    // vectorise) decides, and the text is copied whole.
    let special = |b: u8| u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\');
    if bytes.iter().fold(0, |any, &b| any | special(b)) == 0 {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = escape(b);
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A string known to need no escaping (an enum's name: `new`, `TCP`, `Masq`...), quoted
/// without the escaping pass.
pub(super) fn plain(out: &mut Vec<u8>, text: &'static str) {
    debug_assert!(
        !text.bytes().any(|b| escape(b) != 0),
        "{text:?} needs escaping"
    );
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// A string value or `null`.
pub(super) fn opt_string(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// `00` to `99`: two digits per division.
const PAIRS: [u8; 200] = {
    let mut table = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        table[2 * i] = b'0' + (i / 10) as u8;
        table[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    table
};

/// A short piece of text assembled on the stack and appended with one copy: pushing byte by
/// byte into the line's `Vec` reloads and stores its length at every byte.
struct Small<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Small<N> {
    fn new() -> Self {
        Small {
            buf: [0; N],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Decimal digits of `n`, two per division.
    fn digits(&mut self, mut n: u64) {
        let mut tmp = [0u8; 20];
        let mut at = tmp.len();
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            at -= 2;
            tmp[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            at -= 2;
            tmp[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else {
            at -= 1;
            tmp[at] = b'0' + n as u8;
        }
        let digits = &tmp[at..];
        self.buf[self.len..self.len + digits.len()].copy_from_slice(digits);
        self.len += digits.len();
    }

    /// An address byte's digits, without a loop.
    fn octet(&mut self, b: u8) {
        if b >= 100 {
            self.push(b'0' + b / 100);
        }
        if b >= 10 {
            self.push(b'0' + b / 10 % 10);
        }
        self.push(b'0' + b % 10);
    }

    fn ipv4(&mut self, ip: Ipv4Addr) {
        let [a, b, c, d] = ip.octets();
        self.octet(a);
        self.push(b'.');
        self.octet(b);
        self.push(b'.');
        self.octet(c);
        self.push(b'.');
        self.octet(d);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Decimal digits of `n`.
pub(super) fn u64_digits(out: &mut Vec<u8>, n: u64) {
    // Most numbers of a line (weights, counters, the CPU) are one digit: no copy for those.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    let mut text = Small::<20>::new();
    text.digits(n);
    out.extend_from_slice(text.bytes());
}

pub(super) fn i64_digits(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    u64_digits(out, n.unsigned_abs());
}

/// An integer or `null`.
pub(super) fn opt_int(out: &mut Vec<u8>, n: Option<impl Into<i64>>) {
    match n {
        Some(n) => i64_digits(out, n.into()),
        None => out.extend_from_slice(b"null"),
    }
}

/// `"0x…"`, as `{:#x}` writes it.
pub(super) fn hex_string(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = HEX[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(b"\"0x");
    out.extend_from_slice(&digits[at..]);
    out.push(b'"');
}

fn ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    let mut text = Small::<15>::new();
    text.ipv4(ip);
    out.extend_from_slice(text.bytes());
}

fn hex_segments(out: &mut Vec<u8>, segments: &[u16]) {
    for (i, &segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        // `{:x}`: no leading zeros.
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let nibble = (segment >> shift) & 0xf;
            if nibble != 0 || started || shift == 0 {
                out.push(HEX[usize::from(nibble)]);
                started = true;
            }
        }
    }
}

/// RFC 5952 text as `Ipv6Addr`'s `Display` writes it: an IPv4-mapped address as
/// `::ffff:a.b.c.d`, otherwise the first longest run of two or more zero groups as `::`.
fn ipv6(out: &mut Vec<u8>, ip: Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        ipv4(out, v4);
        return;
    }
    let segments = ip.segments();
    let (mut best_start, mut best_len) = (0, 0);
    let (mut run_start, mut run_len) = (0, 0);
    for (i, &segment) in segments.iter().enumerate() {
        if segment == 0 {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best_start, best_len) = (run_start, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    if best_len > 1 {
        hex_segments(out, &segments[..best_start]);
        out.extend_from_slice(b"::");
        hex_segments(out, &segments[best_start + best_len..]);
    } else {
        hex_segments(out, &segments);
    }
}

/// The address as a JSON string, as `SocketAddr`'s `Display` writes it: `a.b.c.d:port`,
/// `[v6]:port`, `[v6%scope]:port`.
pub(super) fn socket_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    if let SocketAddr::V4(v4) = addr {
        // `"255.255.255.255:65535"`: 23 bytes, assembled whole.
        let mut text = Small::<23>::new();
        text.push(b'"');
        text.ipv4(*v4.ip());
        text.push(b':');
        text.digits(v4.port().into());
        text.push(b'"');
        out.extend_from_slice(text.bytes());
        return;
    }
    out.push(b'"');
    match addr {
        SocketAddr::V4(v4) => ipv4(out, *v4.ip()),
        SocketAddr::V6(v6) => {
            out.push(b'[');
            ipv6(out, *v6.ip());
            if v6.scope_id() != 0 {
                out.push(b'%');
                u64_digits(out, v6.scope_id().into());
            }
            out.push(b']');
        }
    }
    out.push(b':');
    u64_digits(out, addr.port().into());
    out.push(b'"');
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::{IpAddr, SocketAddrV6};

    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    /// A cheap deterministic generator (xorshift), for many varied inputs.
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut every_char: String = (0u32..0x300).filter_map(char::from_u32).collect();
        every_char.push_str("\u{2028}\u{fffd}\u{1f600}\u{7f}");
        for sample in [
            "",
            "rr",
            "ns/svc:http",
            "a\"b\\c",
            "tab\there\nnew\rline\u{8}\u{c}",
            "\u{0}\u{1}\u{1f}",
            "ünïcødé ✓",
            every_char.as_str(),
        ] {
            assert_eq!(
                text(|out| string(out, sample)),
                serde_json::to_string(sample).unwrap(),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn integers_match_display() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut values: Vec<u64> = vec![0, 1, 9, 10, 99, 100, u64::MAX, u64::from(u32::MAX)];
        values.extend((0..2000).map(|_| rng.next() >> (rng.next() % 64)));
        for n in values {
            assert_eq!(text(|out| u64_digits(out, n)), n.to_string());
            assert_eq!(text(|out| hex_string(out, n)), format!("\"{n:#x}\""));
            let signed = n as i64;
            assert_eq!(text(|out| i64_digits(out, signed)), signed.to_string());
        }
        assert_eq!(text(|out| i64_digits(out, i64::MIN)), i64::MIN.to_string());
        assert_eq!(text(|out| opt_int(out, None::<i32>)), "null");
        assert_eq!(text(|out| opt_int(out, Some(-7i32))), "-7");
    }

    #[test]
    fn addresses_match_display() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut addrs: Vec<SocketAddr> = [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.245.97.12:51234",
            "[::]:0",
            "[::1]:80",
            "[1::]:80",
            "[fd00::c1]:53000",
            "[::ffff:10.0.0.1]:8080",
            "[::10.0.0.1]:8080",
            "[1:0:0:1:0:0:0:1]:1",
            "[1:0:0:1:0:0:1:1]:1",
            "[1:0:1:0:1:0:1:0]:1",
            "[0:0:1:0:0:1:0:0]:1",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[fe80::1%3]:22",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for _ in 0..20_000 {
            let port = rng.next() as u16;
            let addr = if rng.next().is_multiple_of(3) {
                SocketAddr::new(IpAddr::from((rng.next() as u32).to_be_bytes()), port)
            } else {
                // Segments of zero are likely, so runs of every length and place occur.
                let mut segments = [0u16; 8];
                for segment in &mut segments {
                    if rng.next().is_multiple_of(2) {
                        *segment = rng.next() as u16 >> (rng.next() % 16);
                    }
                }
                let ip = Ipv6Addr::from(segments);
                let scope = if rng.next().is_multiple_of(8) {
                    rng.next() as u32
                } else {
                    0
                };
                SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))
            };
            addrs.push(addr);
        }
        for addr in addrs {
            assert_eq!(
                text(|out| socket_addr(out, &addr)),
                format!("\"{addr}\""),
                "{addr:?}"
            );
        }
    }
}
