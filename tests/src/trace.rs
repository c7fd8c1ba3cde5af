//! What `ipvs-trace trace -o json` prints: JSON event lines on stdout (the contract of
//! DESIGN.md) and the exit summary on stderr.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

/// One JSON line. Unknown fields are refused: the contract is exact, so a field added or
/// renamed must show up here as a failure, not pass unnoticed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub time: String,
    pub event: String,
    pub proto: String,
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub backend: Option<SocketAddr>,
    pub scheduler: Option<String>,
    pub fwd: Option<String>,
    pub weight: Option<i32>,
    pub active_conns: Option<i32>,
    pub inactive_conns: Option<i32>,
    pub service: Option<String>,
    pub service_type: Option<String>,
    pub backend_pod: Option<String>,
    pub backend_node: Option<String>,
    pub client_pod: Option<String>,
    pub backend_terminating: Option<bool>,
    pub netns: Option<u64>,
    pub cpu: u32,
    pub conn: Option<String>,
    /// `--nat` only (`null` otherwise, and for events that are not one connection).
    pub nat: Option<Nat>,
    /// `ipvs`, `nftables` or `iptables`: who made the decision.
    pub dataplane: String,
}

/// `src` -> `dst` of one direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// The `nat` object: the connection before and after IPVS, and its conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nat {
    pub before: Flow,
    pub after: Flow,
    pub conntrack: Option<NatConntrack>,
}

/// `nat.conntrack`: the entry's two tuples, status bits and mark.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatConntrack {
    pub orig: Flow,
    pub reply: Flow,
    pub status: Vec<String>,
    pub mark: Option<u32>,
}

impl Event {
    /// True when every Kubernetes name field is `null` (no Kubernetes source is configured in
    /// the lab).
    #[must_use]
    pub fn names_are_null(&self) -> bool {
        self.service.is_none()
            && self.service_type.is_none()
            && self.backend_pod.is_none()
            && self.backend_node.is_none()
            && self.client_pod.is_none()
            && self.backend_terminating.is_none()
    }
}

/// The fields of the contract. serde would take a missing `Option` field for `null`; the
/// contract says every line has every field, so presence is checked on its own.
const CONTRACT_FIELDS: [&str; 22] = [
    "time",
    "event",
    "proto",
    "client",
    "vip",
    "backend",
    "scheduler",
    "fwd",
    "weight",
    "active_conns",
    "inactive_conns",
    "service",
    "service_type",
    "backend_pod",
    "backend_node",
    "client_pod",
    "backend_terminating",
    "netns",
    "cpu",
    "conn",
    "nat",
    "dataplane",
];

/// Parses JSON lines; a line that is not a contract object is an error naming it.
pub fn parse_events(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let bad = |why: String| {
                format!(
                    "JSON line {} is not a contract event ({why}): {line}",
                    i + 1
                )
            };
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let missing: Vec<&str> = CONTRACT_FIELDS
                .into_iter()
                .filter(|f| value.get(f).is_none())
                .collect();
            if !missing.is_empty() {
                return Err(bad(format!("missing {}", missing.join(", "))));
            }
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))
        })
        .collect()
}

/// The exit summary, as far as the tests need it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// `events:` line: kind → count.
    pub events: BTreeMap<String, u64>,
    /// Ring-full losses (`None`: the tracer could not read its counter, "unknown").
    pub lost: Option<u64>,
    pub malformed: u64,
    /// Records the kernel side could not read (shown only when non-zero).
    pub unreadable: u64,
    /// Per virtual service (`"TCP 172.31.0.10:80 rr"`, or with names
    /// `"TCP ratel/web:http rr  (172.31.0.10:80, 10.0.0.1:30080)"`): backend address → new
    /// connections. A backend shown by pod name counts under its address when it has exactly
    /// one (the usual case: one pod, one target port).
    pub services: BTreeMap<String, BTreeMap<SocketAddr, u64>>,
    /// Per virtual service: backends shown by pod name → (new connections, their addresses).
    pub pods: BTreeMap<String, BTreeMap<String, (u64, Vec<SocketAddr>)>>,
    /// Per virtual service: `no_dest` count.
    pub no_dest: BTreeMap<String, u64>,
    /// `unresolved: events=N ...` (present with a Kubernetes source).
    pub unresolved_events: Option<u64>,
    /// `kubernetes <kind>: ...` lines (live watches), without the prefix.
    pub kubernetes: Vec<String>,
    /// `ipvs tables: ...` (what the tables filled in without module BTF), without the prefix.
    pub tables: Option<String>,
    /// `probes: ...` (what was attached, not asked for, unavailable), without the prefix.
    pub probes: Option<String>,
    /// `kernel: seen=N filtered_out=N matched=N (read=N lost=N unreadable=N)`.
    pub kernel: Option<KernelCounts>,
    /// Per virtual service: backend address → configured weight (`weight=` of the backend
    /// lines), including real servers that received nothing (`new=0`, not in `services`).
    pub weights: BTreeMap<String, BTreeMap<SocketAddr, u64>>,
}

/// The summary's `kernel:` line: what became of every decision the probes saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounts {
    pub seen: u64,
    pub filtered_out: u64,
    pub matched: u64,
    pub read: u64,
    pub lost: u64,
    pub unreadable: u64,
}

impl KernelCounts {
    fn parse(rest: &str, line: &str) -> Result<KernelCounts, String> {
        let mut counts = KernelCounts::default();
        for pair in rest.split_whitespace() {
            let pair = pair.trim_matches(|c| c == '(' || c == ')');
            let (key, n) = pair
                .split_once('=')
                .ok_or_else(|| format!("summary: bad kernel field {pair:?} in {line:?}"))?;
            let n = count(n, line)?;
            match key {
                "seen" => counts.seen = n,
                "filtered_out" => counts.filtered_out = n,
                "matched" => counts.matched = n,
                "read" => counts.read = n,
                "lost" => counts.lost = n,
                "unreadable" => counts.unreadable = n,
                _ => return Err(format!("summary: unknown kernel field {key:?} in {line:?}")),
            }
        }
        Ok(counts)
    }
}

impl Summary {
    /// Count of `kind` in the `events:` line (0 if absent).
    #[must_use]
    pub fn count(&self, kind: &str) -> u64 {
        self.events.get(kind).copied().unwrap_or(0)
    }
}

/// Parses the summary out of the tracer's stderr (other lines, such as the `ipvs-trace:
/// tracing` line, are skipped).
pub fn parse_summary(stderr: &str) -> Result<Summary, String> {
    let mut lines = stderr
        .lines()
        .skip_while(|l| l.trim() != "ipvs-trace summary");
    if lines.next().is_none() {
        return Err(format!("no `ipvs-trace summary` in stderr:\n{stderr}"));
    }
    let mut summary = Summary::default();
    let mut saw_events = false;
    let mut saw_lost = false;
    let mut service: Option<String> = None;
    for line in lines {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("events:") {
            saw_events = true;
            for pair in rest.split_whitespace() {
                let (kind, n) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("summary: bad events field {pair:?}"))?;
                summary.events.insert(kind.to_owned(), count(n, line)?);
            }
        } else if let Some(rest) = trimmed.strip_prefix("lost:") {
            saw_lost = true;
            let words: Vec<&str> = rest.split_whitespace().collect();
            summary.lost = match words.first() {
                Some(&"unknown") => None,
                Some(n) => Some(count(n, line)?),
                None => return Err(format!("summary: empty lost line {line:?}")),
            };
            summary.malformed = after(&words, "malformed:", line)?.unwrap_or(0);
            summary.unreadable = after(&words, "unreadable:", line)?.unwrap_or(0);
        } else if let Some(rest) = trimmed.strip_prefix("unresolved:") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let events = words
                .first()
                .and_then(|w| w.strip_prefix("events="))
                .ok_or_else(|| format!("summary: no events= in {line:?}"))?;
            summary.unresolved_events = Some(count(events, line)?);
        } else if let Some(rest) = trimmed.strip_prefix("kubernetes ") {
            summary.kubernetes.push(rest.to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("ipvs tables: ") {
            summary.tables = Some(rest.to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("probes: ") {
            summary.probes = Some(rest.to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("kernel: ") {
            summary.kernel = Some(KernelCounts::parse(rest, line)?);
        } else if let Some(rest) = trimmed.strip_prefix("->") {
            let key = service
                .clone()
                .ok_or_else(|| format!("summary: backend before service: {line:?}"))?;
            backend_line(&mut summary, key, rest, line)?;
        } else if let Some(n) = trimmed.strip_prefix("no destination: no_dest=") {
            let key = service
                .clone()
                .ok_or_else(|| format!("summary: no_dest before service: {line:?}"))?;
            summary.no_dest.insert(key, count(n, line)?);
        } else if line.starts_with("  ") && !trimmed.is_empty() {
            service = Some(trimmed.to_owned());
            summary.services.entry(trimmed.to_owned()).or_default();
        } else if !trimmed.is_empty() {
            // Anything after the summary (an error line, say) ends it.
            break;
        }
    }
    if !(saw_events && saw_lost) {
        return Err(format!(
            "summary without its events: or lost: line:\n{stderr}"
        ));
    }
    Ok(summary)
}

/// `-> BACKEND  new=N`, where BACKEND is an address, or a pod followed by `(ADDR, ...)`.
fn backend_line(summary: &mut Summary, key: String, rest: &str, line: &str) -> Result<(), String> {
    let (backend, rest) = rest
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("summary: bad backend line {line:?}"))?;
    let rest = rest.trim();
    let (n, rest) = match rest.split_once(char::is_whitespace) {
        Some((n, rest)) => (n, rest.trim()),
        None => (rest, ""),
    };
    let n = count(
        n.strip_prefix("new=")
            .ok_or_else(|| format!("summary: no new= in {line:?}"))?,
        line,
    )?;
    // `weight=W`: the configured weight, from the IPVS tables at the end.
    let (weight, rest) = match rest.strip_prefix("weight=") {
        Some(w) => {
            let (w, rest) = w.split_once(char::is_whitespace).unwrap_or((w, ""));
            (Some(count(w, line)?), rest.trim())
        }
        None => (None, rest),
    };
    let addresses = (!rest.is_empty()).then_some(rest);
    let Some(addresses) = addresses else {
        let backend: SocketAddr = backend
            .parse()
            .map_err(|_| format!("summary: bad backend address in {line:?}"))?;
        if let Some(weight) = weight {
            summary
                .weights
                .entry(key.clone())
                .or_default()
                .insert(backend, weight);
        }
        // A real server that received nothing is listed for its weight, not counted.
        if n > 0 {
            summary.services.entry(key).or_default().insert(backend, n);
        }
        return Ok(());
    };
    let addresses = addresses
        .strip_prefix('(')
        .and_then(|a| a.strip_suffix(')'))
        .ok_or_else(|| format!("summary: pod without its addresses in {line:?}"))?
        .split(", ")
        .map(|a| {
            a.parse::<SocketAddr>()
                .map_err(|_| format!("summary: bad address {a:?} in {line:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let [only] = addresses[..] {
        summary
            .services
            .entry(key.clone())
            .or_default()
            .insert(only, n);
    }
    summary
        .pods
        .entry(key)
        .or_default()
        .insert(backend.to_owned(), (n, addresses));
    Ok(())
}

fn count(text: &str, line: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("summary: not a count: {text:?} in {line:?}"))
}

/// The number following `key` among `words`.
fn after(words: &[&str], key: &str, line: &str) -> Result<Option<u64>, String> {
    match words.iter().position(|w| *w == key) {
        Some(i) => words
            .get(i + 1)
            .map(|n| count(n, line))
            .transpose()
            .and_then(|n| {
                n.ok_or_else(|| format!("summary: nothing after {key} in {line:?}"))
                    .map(Some)
            }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_contract_line_and_refuses_others() {
        let line = r#"{"time":"2026-11-26T17:12:52.123456789Z","event":"new","proto":"TCP","client":"10.245.97.12:51234","vip":"172.31.42.227:80","backend":"10.245.112.32:8080","scheduler":"rr","fwd":"Masq","weight":1,"active_conns":1,"inactive_conns":0,"service":null,"service_type":null,"backend_pod":null,"backend_node":null,"client_pod":null,"backend_terminating":null,"netns":4026531840,"cpu":0,"conn":"0xffff8f3a00000000","nat":null,"dataplane":"ipvs"}"#;
        let events = parse_events(line).unwrap();
        assert_eq!(
            events[0].backend,
            Some("10.245.112.32:8080".parse().unwrap())
        );
        assert_eq!(events[0].weight, Some(1));
        assert!(events[0].names_are_null());
        let extra = line.replace("\"cpu\":0", "\"cpu\":0,\"extra\":1");
        assert!(parse_events(&extra).unwrap_err().contains("extra"));
        let missing = line.replace("\"netns\":4026531840,", "");
        assert!(parse_events(&missing).is_err());

        // `--nat`: the object as ipvs-trace/src/output/nat.rs writes it.
        let nat = line.replace(
            "\"nat\":null",
            r#""nat":{"before":{"src":"10.245.97.12:51234","dst":"172.31.42.227:80"},"after":{"src":"10.245.97.12:51234","dst":"10.245.112.32:8080"},"conntrack":{"orig":{"src":"10.245.97.12:51234","dst":"172.31.42.227:80"},"reply":{"src":"10.245.112.32:8080","dst":"10.245.97.12:51234"},"status":["CONFIRMED"],"mark":0}}"#,
        );
        let events = parse_events(&nat).unwrap();
        let nat = events[0].nat.as_ref().expect("a nat object");
        assert_eq!(nat.after.dst, "10.245.112.32:8080".parse().unwrap());
        let entry = nat.conntrack.as_ref().expect("a conntrack entry");
        assert_eq!(entry.reply.dst, "10.245.97.12:51234".parse().unwrap());
    }

    /// Text as `ipvs-trace/src/output/summary.rs` renders it.
    #[test]
    fn parses_the_summary() {
        let stderr = "\
ipvs-trace: tracing (probes attached)
ipvs-trace summary
  events: new=13 template=1 reused=1 no_dest=1
  lost: 3 (ring buffer full)   malformed: 1
  kernel: seen=40 filtered_out=20 matched=20 (read=17 lost=3 unreadable=0)
  probes: ip_vs_conn_new (fexit: new, template)   not asked for: tcp_state_transition (reused, per packet)
  TCP 10.245.96.43:32380 rr
    -> 10.245.112.4:8080  new=1
  TCP 172.31.42.227:80 rr
    -> 10.245.112.4:8080   new=3
    -> 10.245.112.32:8080  new=4
  TCP 172.31.42.227:443 rr
    no destination: no_dest=1
";
        let summary = parse_summary(stderr).unwrap();
        assert_eq!(summary.count("new"), 13);
        assert_eq!(summary.count("no_dest"), 1);
        assert_eq!(summary.lost, Some(3));
        assert_eq!(summary.malformed, 1);
        assert_eq!(summary.unreadable, 0);
        assert!(summary
            .probes
            .as_deref()
            .is_some_and(|p| p.starts_with("ip_vs_conn_new (fexit")));
        assert_eq!(summary.services.len(), 3, "{:?}", summary.services);
        let kernel = summary.kernel.as_ref().expect("the kernel line");
        assert_eq!(
            (kernel.seen, kernel.filtered_out, kernel.read),
            (40, 20, 17)
        );
        let rr = &summary.services["TCP 172.31.42.227:80 rr"];
        assert_eq!(rr[&"10.245.112.32:8080".parse().unwrap()], 4);
        assert_eq!(summary.no_dest["TCP 172.31.42.227:443 rr"], 1);
        assert!(summary.services["TCP 172.31.42.227:443 rr"].is_empty());
    }

    /// With names, as `summary.rs`'s own test renders them, plus the live watches' lines.
    #[test]
    fn parses_the_named_summary() {
        let stderr = "\
ipvs-trace summary
  events: new=5 template=0 reused=0 no_dest=0
  lost: 0 (ring buffer full)   malformed: 0
  unresolved: events=1 (service=0 backend=1)   clients=1 (printed raw: not in the Kubernetes index)
  kubernetes pods: synced (1 list(s), 2 event(s))
  kubernetes services: not synced; 3 error(s), last: connection refused
  TCP ratel/web:http rr  (10.245.96.43:32380, 172.31.42.227:80)
    -> 10.245.120.1:8080                new=1
    -> ratel/web-dgzsm  new=3  (10.245.112.32:8080)
    -> ratel/web-x7k2p  new=1  (10.245.112.47:8080, 10.245.112.47:8081)
";
        let summary = parse_summary(stderr).unwrap();
        assert_eq!(summary.unresolved_events, Some(1));
        assert_eq!(summary.kubernetes.len(), 2);
        assert!(summary.kubernetes[1].starts_with("services: not synced"));
        let key = "TCP ratel/web:http rr  (10.245.96.43:32380, 172.31.42.227:80)";
        let by_addr = &summary.services[key];
        assert_eq!(by_addr[&"10.245.120.1:8080".parse().unwrap()], 1);
        assert_eq!(by_addr[&"10.245.112.32:8080".parse().unwrap()], 3);
        assert_eq!(
            by_addr.len(),
            2,
            "a pod with two addresses has no single one"
        );
        let pods = &summary.pods[key];
        assert_eq!(pods["ratel/web-dgzsm"].0, 3);
        assert_eq!(pods["ratel/web-x7k2p"].1.len(), 2);
        assert!(parse_summary(
            "ipvs-trace summary\n  events: new=1\n  lost: 0   malformed: 0\n  TCP a rr\n    -> ratel/web  new=1  10.0.0.1:80\n"
        )
        .is_err());
    }

    #[test]
    fn unknown_losses_and_unreadable() {
        let summary = parse_summary(
            "ipvs-trace summary\n  events: new=0 template=0 reused=0 no_dest=0\n  lost: unknown (ring buffer full)   malformed: 0   unreadable: 2 (kernel read failed)\n",
        )
        .unwrap();
        assert_eq!(summary.lost, None);
        assert_eq!(summary.unreadable, 2);
        assert!(parse_summary("error: no summary here\n").is_err());
        assert!(parse_summary("ipvs-trace summary\n").is_err());
    }
}
