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
    /// IPVS's state: `ESTABLISHED`, `TIME_WAIT`, `CLOSE`, `UDP`, `NONE` (templates), ...
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
