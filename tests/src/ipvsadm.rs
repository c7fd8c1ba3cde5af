//! Parsers for `ipvsadm`'s numeric listings, the kernel's own view every scenario asserts
//! against.
//!
//! - `ipvsadm -Lnc`: the connection table (one entry per connection or persistence template).
//! - `ipvsadm -Ln`: the rules. After `Forward` come **`Weight`, `ActiveConn`, `InActConn`**: counts of
//!   connection entries, not bytes.
//! - `ipvsadm -Ln --stats --exact`: counters since the service was created; `Conns` counts the
//!   connections IPVS *scheduled* (a reused entry is not counted). `--exact` because without it
//!   large numbers are abbreviated (`1K`).

use std::net::SocketAddr;

/// One line of `ipvsadm -Lnc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnEntry {
    /// `TCP`, `UDP`, `SCTP` (or `IP` for a firewall-mark template).
    pub proto: String,
    /// `mm:ss` until the entry expires.
    pub expire: String,
    /// IPVS's state: `ESTABLISHED`, `TIME_WAIT`, `CLOSE`, `UDP`, `ASSURED` (a persistence
    /// template, listed with client port 0), ...
    pub state: String,
    pub source: SocketAddr,
    pub virtual_addr: SocketAddr,
    pub destination: SocketAddr,
}

/// Parses `ipvsadm -Lnc`.
pub fn parse_conns(text: &str) -> Result<Vec<ConnEntry>, String> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty()
            || line.starts_with("IPVS connection entries")
            || line.starts_with("pro ")
        {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [proto, expire, state, source, virtual_addr, destination] = fields[..] else {
            return Err(format!("ipvsadm -Lnc: not 6 fields: {line:?}"));
        };
        entries.push(ConnEntry {
            proto: proto.to_owned(),
            expire: expire.to_owned(),
            state: state.to_owned(),
            source: addr(source, line)?,
            virtual_addr: addr(virtual_addr, line)?,
            destination: addr(destination, line)?,
        });
    }
    Ok(entries)
}

/// A virtual service of `ipvsadm -Ln`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub proto: String,
    /// `ip:port` (or the mark of an `FWM` service).
    pub vip: String,
    pub scheduler: String,
    /// The rest of the line: `persistent 60`, `ops`, ...
    pub flags: String,
    pub dests: Vec<Dest>,
}

/// A real server line of `ipvsadm -Ln`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub addr: SocketAddr,
    /// `Masq`, `Route`, `Tunnel`, `Local`.
    pub forward: String,
    pub weight: i32,
    /// Connection entries in ESTABLISHED (TCP).
    pub active: u64,
    /// All other entries (`TIME_WAIT`, `CLOSE`, ..., `UDP`).
    pub inactive: u64,
}

/// Parses `ipvsadm -Ln`.
pub fn parse_rules(text: &str) -> Result<Vec<Service>, String> {
    let mut services: Vec<Service> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [] | ["IP", "Virtual", ..] | ["Prot", ..] | ["->", "RemoteAddress:Port", ..] => {}
            ["->", dest, forward, weight, active, inactive] => {
                let service = services.last_mut().ok_or_else(|| {
                    format!("ipvsadm -Ln: real server before any service: {line:?}")
                })?;
                service.dests.push(Dest {
                    addr: addr(dest, line)?,
                    forward: forward.to_owned(),
                    weight: number(weight, line)?,
                    active: number(active, line)?,
                    inactive: number(inactive, line)?,
                });
            }
            [proto, vip, scheduler, ref flags @ ..] if !proto.starts_with("->") => {
                services.push(Service {
                    proto: proto.to_owned(),
                    vip: vip.to_owned(),
                    scheduler: scheduler.to_owned(),
                    flags: flags.join(" "),
                    dests: Vec::new(),
                });
            }
            _ => return Err(format!("ipvsadm -Ln: unexpected line {line:?}")),
        }
    }
    Ok(services)
}

/// Counters of one service or real server in `ipvsadm -Ln --stats --exact`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// A service of `ipvsadm -Ln --stats --exact` with its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStats {
    pub proto: String,
    pub vip: String,
    pub counters: Counters,
    pub dests: Vec<(SocketAddr, Counters)>,
}

/// Parses `ipvsadm -Ln --stats --exact`.
pub fn parse_stats(text: &str) -> Result<Vec<ServiceStats>, String> {
    let mut services: Vec<ServiceStats> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [] | ["IP", "Virtual", ..] | ["Prot", ..] | ["->", "RemoteAddress:Port"] => {}
            ["->", dest, ref numbers @ ..] => {
                let counters = counters(numbers, line)?;
                let service = services.last_mut().ok_or_else(|| {
                    format!("ipvsadm --stats: real server before any service: {line:?}")
                })?;
                service.dests.push((addr(dest, line)?, counters));
            }
            [proto, vip, ref numbers @ ..] => services.push(ServiceStats {
                proto: proto.to_owned(),
                vip: vip.to_owned(),
                counters: counters(numbers, line)?,
                dests: Vec::new(),
            }),
            _ => return Err(format!("ipvsadm --stats: unexpected line {line:?}")),
        }
    }
    Ok(services)
}

fn counters(numbers: &[&str], line: &str) -> Result<Counters, String> {
    let [conns, in_pkts, out_pkts, in_bytes, out_bytes] = numbers else {
        return Err(format!("ipvsadm --stats: not 5 counters: {line:?}"));
    };
    Ok(Counters {
        conns: number(conns, line)?,
        in_pkts: number(in_pkts, line)?,
        out_pkts: number(out_pkts, line)?,
        in_bytes: number(in_bytes, line)?,
        out_bytes: number(out_bytes, line)?,
    })
}

fn addr(text: &str, line: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("not an ip:port: {text:?} in {line:?}"))
}

fn number<T: std::str::FromStr>(text: &str, line: &str) -> Result<T, String> {
    text.parse().map_err(|_| {
        format!("not a number: {text:?} in {line:?} (--stats without --exact abbreviates)")
    })
}

impl Service {
    /// The service `proto vip` of a parsed `ipvsadm -Ln`.
    #[must_use]
    pub fn find<'a>(services: &'a [Service], proto: &str, vip: SocketAddr) -> Option<&'a Service> {
        let vip = vip.to_string();
        services.iter().find(|s| s.proto == proto && s.vip == vip)
    }
}

impl ServiceStats {
    /// The service `proto vip` of a parsed `ipvsadm -Ln --stats`.
    #[must_use]
    pub fn find<'a>(
        services: &'a [ServiceStats],
        proto: &str,
        vip: SocketAddr,
    ) -> Option<&'a ServiceStats> {
        let vip = vip.to_string();
        services.iter().find(|s| s.proto == proto && s.vip == vip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Copied from the rr scenario on Debian's 6.1.0-56 kernel (ipvsadm 1.31), trailing blanks
    // included.
    const CONNS: &str = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:57  TIME_WAIT   198.51.100.11:50550 172.31.0.10:80     10.245.1.3:8080
TCP 01:59  TIME_WAIT   198.51.100.11:50868 172.31.0.10:80     10.245.1.1:8080
";

    const RULES: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  172.31.0.10:80 rr
  -> 10.245.1.1:8080              Masq    1      0          100       
  -> 10.245.1.2:8080              Masq    1      0          100       
  -> 10.245.1.3:8080              Masq    1      0          100       
";

    const STATS: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  172.31.0.10:80                    251     1254      752    70730    41112
  -> 10.245.1.1:8080                    83      414      248    23354    13560
  -> 10.245.1.2:8080                    84      420      252    23688    13776
  -> 10.245.1.3:8080                    84      420      252    23688    13776
";

    #[test]
    fn connection_table() {
        let entries = parse_conns(CONNS).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            ConnEntry {
                proto: "TCP".into(),
                expire: "01:57".into(),
                state: "TIME_WAIT".into(),
                source: "198.51.100.11:50550".parse().unwrap(),
                virtual_addr: "172.31.0.10:80".parse().unwrap(),
                destination: "10.245.1.3:8080".parse().unwrap(),
            }
        );
        assert!(parse_conns("TCP 01:57 TIME_WAIT 1.2.3.4:5\n").is_err());
    }

    // The persistent and udp scenarios on Debian's 6.12.117 kernel: a template (client port 0)
    // beside a connection, and UDP entries.
    const TEMPLATE_AND_UDP: &str = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 00:59  ASSURED     198.51.100.12:0    172.31.0.20:80     10.245.4.2:8080
TCP 01:59  TIME_WAIT   198.51.100.12:45722 172.31.0.20:80     10.245.4.2:8080
UDP 04:59  UDP         198.51.100.11:57445 172.31.0.53:53     10.245.3.1:53
";

    #[test]
    fn templates_and_udp_entries() {
        let entries = parse_conns(TEMPLATE_AND_UDP).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].state, "ASSURED");
        assert_eq!(entries[0].source.port(), 0);
        assert_eq!(entries[2].proto, "UDP");
        assert_eq!(entries[2].destination, "10.245.3.1:53".parse().unwrap());
    }

    const PERSISTENT_RULES: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  172.31.0.20:80 rr persistent 60
  -> 10.245.4.1:8080              Masq    1      0          20        
";

    // The dualstack scenario on Debian's 6.1.0-56 kernel: IPv6 addresses as `[addr]:port` in
    // all three listings (trailing blanks included), beside IPv4 ones.
    const DUAL_STACK_CONNS: &str = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:59  TIME_WAIT   198.51.100.61:33288 172.31.0.60:80     10.245.9.2:8080
TCP 01:59  TIME_WAIT   [fd00:198:51::62]:52394 [fd00:31::60]:80   [fd00:245:9::1]:8080
";

    const DUAL_STACK_RULES: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  172.31.0.60:80 rr
  -> 10.245.9.1:8080              Masq    1      0          10        
TCP  [fd00:31::60]:80 rr
  -> [fd00:245:9::1]:8080         Masq    1      0          20        
";

    const DUAL_STACK_STATS: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  172.31.0.60:80                     30      150       90     8460     4920
  -> 10.245.9.1:8080                    10       50       30     2820     1640
TCP  [fd00:31::60]:80                   60      300      180    22920    13440
  -> [fd00:245:9::1]:8080               20      100       60     7640     4480
";

    #[test]
    fn ipv6_addresses_in_brackets() {
        let vip6: SocketAddr = "[fd00:31::60]:80".parse().unwrap();
        let pod6: SocketAddr = "[fd00:245:9::1]:8080".parse().unwrap();

        let entries = parse_conns(DUAL_STACK_CONNS).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].source.is_ipv4());
        assert_eq!(
            entries[1].source,
            "[fd00:198:51::62]:52394".parse().unwrap()
        );
        assert_eq!(entries[1].virtual_addr, vip6);
        assert_eq!(entries[1].destination, pod6);

        // `find` matches ipvsadm's spelling of the VIP against Rust's: both compress alike.
        let services = parse_rules(DUAL_STACK_RULES).unwrap();
        let service = Service::find(&services, "TCP", vip6).unwrap();
        assert_eq!(service.dests[0].addr, pod6);
        assert_eq!(service.dests[0].inactive, 20);

        let stats = parse_stats(DUAL_STACK_STATS).unwrap();
        let service = ServiceStats::find(&stats, "TCP", vip6).unwrap();
        assert_eq!(service.counters.conns, 60);
        assert_eq!(service.dests, vec![(pod6, service.dests[0].1)]);
        assert_eq!(service.dests[0].1.conns, 20);
    }

    #[test]
    fn persistent_flags() {
        let services = parse_rules(PERSISTENT_RULES).unwrap();
        assert_eq!(services[0].flags, "persistent 60");
        assert_eq!(services[0].dests[0].inactive, 20);
    }

    #[test]
    fn rules_columns_are_weight_active_inactive() {
        let services = parse_rules(RULES).unwrap();
        let service = Service::find(&services, "TCP", "172.31.0.10:80".parse().unwrap()).unwrap();
        assert_eq!(service.scheduler, "rr");
        assert_eq!(service.flags, "");
        assert_eq!(service.dests.len(), 3);
        assert_eq!(
            service.dests[0],
            Dest {
                addr: "10.245.1.1:8080".parse().unwrap(),
                forward: "Masq".into(),
                weight: 1,
                active: 0,
                inactive: 100,
            }
        );
        assert!(Service::find(&services, "UDP", "172.31.0.10:80".parse().unwrap()).is_none());
        assert!(parse_rules("  -> 10.245.1.1:8080 Masq 1 0 100\n").is_err());
    }

    #[test]
    fn stats_counters() {
        let services = parse_stats(STATS).unwrap();
        let service =
            ServiceStats::find(&services, "TCP", "172.31.0.10:80".parse().unwrap()).unwrap();
        assert_eq!(service.counters.conns, 251);
        assert_eq!(service.counters.out_bytes, 41112);
        assert_eq!(service.dests.len(), 3);
        assert_eq!(service.dests[1].1.conns, 84);
        let abbreviated = STATS.replace("70730", "70K");
        assert!(parse_stats(&abbreviated).unwrap_err().contains("--exact"));
    }
}
