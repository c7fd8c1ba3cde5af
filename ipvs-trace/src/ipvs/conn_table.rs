//! The kernel's IPVS connection table as `/proc/net/ip_vs_conn` shows it (what `ipvsadm -Lnc`
//! reads): every connection entry and persistence template alive now, in the reader's network
//! namespace, IPv4 and IPv6 in the one file.
//!
//! The format is `ip_vs_conn_seq_show` in net/netfilter/ipvs/ip_vs_conn.c (unchanged from 4.x
//! to 7.x): a header line, then one line per entry,
//!
//! ```text
//! Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
//! TCP 0AF5610C C9FA AC1F2AE3 0050 0AF57020 1F90 ESTABLISHED     899
//! ```
//!
//! `%-3s %08X %04X %08X %04X %s %04X %-11s %7u%s`: the protocol's name, each IPv4 address as
//! 8 hex digits of its host-order value, each port as 4 hex digits, the state, the seconds
//! until the entry expires, then ` PENAME PEDATA` when a persistence engine (sip) keeps data.
//! An IPv6 entry (`af`) prints its client and virtual addresses with `%pI6` (eight groups of
//! four hex digits, colons); the destination follows its own family (`daf`), so an IPv4
//! service may show an IPv6 real server and the reverse. A persistence template has client
//! port 0 and a template state (`NONE`, `ASSURED`).
//!
//! The table has no creation time, scheduler, forwarding method or counters: [`ConnEntry`]
//! holds what it shows and nothing else.

use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::events::Proto;

/// Where the kernel shows the table of the reader's network namespace.
pub const PATH: &str = "/proc/net/ip_vs_conn";

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    pub proto: Proto,
    /// FromIP:FPrt. Port 0 in a persistence template.
    pub client: SocketAddr,
    /// ToIP:TPrt: the virtual service address the client dialled.
    pub vip: SocketAddr,
    /// DestIP:DPrt: the real server.
    pub dest: SocketAddr,
    /// The protocol state (`ESTABLISHED`, `TIME_WAIT`, `SYN_RECV`, `UDP`...), or the template
    /// state (`NONE`, `ASSURED`).
    pub state: String,
    /// Seconds until the entry expires.
    pub expires_s: u32,
}

impl ConnEntry {
    /// A persistence template (`ipvsadm -p`, kube-proxy's sessionAffinity: ClientIP) rather
    /// than a connection: it stands for the client IP, with port 0.
    #[must_use]
    pub fn is_template(&self) -> bool {
        self.client.port() == 0
    }
}

/// A line that is not in the kernel's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ip_vs_conn line ({reason}): {line:?}")]
pub struct ParseError {
    pub line: String,
    pub reason: &'static str,
}

/// What a read of the table found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub entries: u64,
    /// Lines that did not parse (skipped, with the first one's error kept).
    pub malformed: u64,
    pub first_error: Option<ParseError>,
}

/// Reads the table line by line (a busy node's holds millions of entries: nothing is kept
/// but what `each` keeps), skipping the header.
pub fn read(reader: impl BufRead, mut each: impl FnMut(ConnEntry)) -> io::Result<ReadStats> {
    let mut stats = ReadStats::default();
    for line in reader.lines() {
        let line = line?;
        if line.is_empty() || line.starts_with("Pro ") {
            continue;
        }
        match parse_line(&line) {
            Ok(entry) => {
                stats.entries += 1;
                each(entry);
            }
            Err(err) => {
                stats.malformed += 1;
                stats.first_error.get_or_insert(err);
            }
        }
    }
    Ok(stats)
}

/// Parses one entry line.
pub fn parse_line(line: &str) -> Result<ConnEntry, ParseError> {
    let bad = |reason| ParseError {
        line: line.to_owned(),
        reason,
    };
    let mut fields = line.split_ascii_whitespace();
    let mut next = |what| fields.next().ok_or_else(|| bad(what));
    let proto = parse_proto(next("no protocol")?).ok_or_else(|| bad("unknown protocol"))?;
    let client = next("no client address")?;
    let client_port = next("no client port")?;
    let vip = next("no virtual address")?;
    let vip_port = next("no virtual port")?;
    let dest = next("no destination address")?;
    let dest_port = next("no destination port")?;
    let state = next("no state")?.to_owned();
    let expires_s = next("no expiry")?
        .parse()
        .map_err(|_| bad("expiry is not a number"))?;
    let addr = |ip: &str, port: &str| -> Result<SocketAddr, ParseError> {
        let ip = parse_ip(ip).ok_or_else(|| bad("bad address"))?;
        let port = parse_port(port).ok_or_else(|| bad("bad port"))?;
        Ok(SocketAddr::new(ip, port))
    };
    Ok(ConnEntry {
        proto,
        client: addr(client, client_port)?,
        vip: addr(vip, vip_port)?,
        dest: addr(dest, dest_port)?,
        state,
        expires_s,
    })
}

/// `ip_vs_proto_name`: TCP, UDP, SCTP, IP (0: firewall-mark templates), ICMP, ICMPv6, IPIP,
/// GRE, else `IP_<number>`.
fn parse_proto(name: &str) -> Option<Proto> {
    let number = match name {
        "IP" => 0,
        "ICMP" => 1,
        "IPIP" => 4,
        "TCP" => 6,
        "UDP" => 17,
        "GRE" => 47,
        "ICMPv6" => 58,
        "SCTP" => 132,
        other => other.strip_prefix("IP_")?.parse().ok()?,
    };
    Some(Proto::from_number(number))
}

/// `%08X` of the host-order IPv4 address, or `%pI6`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    if text.contains(':') {
        return text.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if text.len() != 8 {
        return None;
    }
    u32::from_str_radix(text, 16)
        .ok()
        .map(|value| IpAddr::V4(Ipv4Addr::from(value)))
}

/// `%04X`.
fn parse_port(text: &str) -> Option<u16> {
    if text.len() != 4 {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The kernel's text for what the lab's seed scenario leaves behind, written with the
    /// kernel's formats (`%-3s %08X %04X ... %-11s %7u`): a connection to the ClusterIP, one
    /// to the NodePort in TIME_WAIT, a UDP entry, a persistence template (client port 0), an
    /// IPv6 connection, an IPv4 service with an IPv6 real server, a SIP entry with engine data,
    /// and a firewall-mark template (protocol IP, ports 0).
    pub(crate) const SAMPLE: &str = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP 0AF5610C C9FA AC1F2AE3 0050 0AF57020 1F90 ESTABLISHED     899
TCP C6336407 CD86 0AF5602B 7E7C 0AF5710F 1F90 TIME_WAIT       118
UDP 0AF5610C D2F0 AC1F2AE3 0035 0AF5702F 0035 UDP             298
TCP 0AF5610C 0000 AC1F2AE3 0050 0AF57020 1F90 NONE          10799
TCP fd00:0000:0000:0000:0000:0000:0000:00c1 CF08 fd00:0042:0000:0000:0000:0000:0000:00e3 0050 fd00:0245:0000:0000:0000:0000:0000:0020 1F90 SYN_RECV         59
TCP 0AF5610C C9FB AC1F2AE3 0050 fd00:0245:0000:0000:0000:0000:0000:0020 1F90 FIN_WAIT        119
UDP 0AF5610C 13C4 AC1F2AE3 13C4 0AF57020 13C4 UDP             179 sip 3a2b@ratel
IP  0AF5610C 0000 00000001 0000 0AF57020 0000 ASSURED         299
";

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_every_kind_of_line() {
        let mut entries = Vec::new();
        let stats = read(SAMPLE.as_bytes(), |e| entries.push(e)).unwrap();
        assert_eq!(stats.entries, 8);
        assert_eq!(stats.malformed, 0);
        assert_eq!(
            entries[0],
            ConnEntry {
                proto: Proto::Tcp,
                client: sock("10.245.97.12:51706"),
                vip: sock("172.31.42.227:80"),
                dest: sock("10.245.112.32:8080"),
                state: "ESTABLISHED".into(),
                expires_s: 899,
            }
        );
        assert_eq!(entries[1].client, sock("198.51.100.7:52614"));
        assert_eq!(entries[1].vip, sock("10.245.96.43:32380"));
        assert_eq!(entries[1].state, "TIME_WAIT");
        assert_eq!(entries[2].proto, Proto::Udp);
        assert!(!entries[0].is_template());
        assert!(entries[3].is_template());
        assert_eq!(entries[3].state, "NONE");
        assert_eq!(entries[3].expires_s, 10799);
        assert_eq!(entries[4].client, sock("[fd00::c1]:53000"));
        assert_eq!(entries[4].vip, sock("[fd00:42::e3]:80"));
        assert_eq!(entries[4].dest, sock("[fd00:245::20]:8080"));
        // An IPv4 service, an IPv6 real server (daf differs from af).
        assert_eq!(entries[5].vip, sock("172.31.42.227:80"));
        assert_eq!(entries[5].dest, sock("[fd00:245::20]:8080"));
        // Persistence-engine data after the expiry is not part of the entry.
        assert_eq!(entries[6].expires_s, 179);
        assert_eq!(entries[7].proto, Proto::Other(0));
        assert!(entries[7].is_template());
    }

    #[test]
    fn counts_malformed_lines_and_goes_on() {
        let text = "\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP 0AF5610C C9FA AC1F2AE3 0050 0AF57020 1F90 ESTABLISHED    899
TCP 0AF5610 C9FA AC1F2AE3 0050 0AF57020 1F90 ESTABLISHED    899
TCP 0AF5610C C9FA AC1F2AE3 0050 0AF57020 1F90
XYZ 0AF5610C C9FA AC1F2AE3 0050 0AF57020 1F90 ESTABLISHED    899
TCP 0AF5610C 1C9FA AC1F2AE3 0050 0AF57020 1F90 ESTABLISHED    899
TCP 0AF5610C C9FA AC1F2AE3 0050 0AF57020 1F90 ESTABLISHED    -1
";
        let mut n = 0;
        let stats = read(text.as_bytes(), |_| n += 1).unwrap();
        assert_eq!((stats.entries, stats.malformed, n), (1, 5, 1));
        let first = stats.first_error.unwrap();
        assert_eq!(first.reason, "bad address");
        assert!(first.to_string().contains("0AF5610 "), "{first}");
    }

    #[test]
    fn protocol_names_are_the_kernels() {
        for (name, proto) in [
            ("TCP", Proto::Tcp),
            ("UDP", Proto::Udp),
            ("SCTP", Proto::Sctp),
            ("IP", Proto::Other(0)),
            ("ICMPv6", Proto::Other(58)),
            ("IP_253", Proto::Other(253)),
        ] {
            assert_eq!(parse_proto(name), Some(proto), "{name}");
        }
        assert_eq!(parse_proto("IP_"), None);
        assert_eq!(parse_proto("tcp"), None);
    }
}
