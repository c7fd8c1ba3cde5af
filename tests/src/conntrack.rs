//! A parser for `conntrack -L -o extended` (Debian's conntrack-tools): the kernel's conntrack
//! table, the ground truth of `trace --nat`.
//!
//! A line (the state word only for TCP, flags in brackets where set):
//! `ipv4     2 tcp      6 119 TIME_WAIT src=A dst=B sport=P dport=Q src=C dst=D sport=R
//! dport=S [ASSURED] mark=0 use=1`: the first src/dst/sport/dport group is the original
//! tuple, the second the reply tuple. The tool ends with a count line on stderr
//! (`conntrack v1.4.7 (conntrack-tools): 56 flow entries have been shown.`), skipped if it is
//! there (the nat scenario leaves it out: it can land inside a line of the listing).

use std::net::{IpAddr, SocketAddr};

/// One entry: its protocol (`tcp`, `udp`...) and two tuples, as `(source, destination)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub proto: String,
    pub orig: (SocketAddr, SocketAddr),
    pub reply: (SocketAddr, SocketAddr),
    /// The TCP state (`TIME_WAIT`...), `None` for other protocols.
    pub state: Option<String>,
}

/// Parses `conntrack -L -o extended` output.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("conntrack v") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = |why: &str| format!("conntrack -L: {why}: {line:?}");
        let (Some(family), Some(proto)) = (words.first(), words.get(2)) else {
            return Err(bad("too few fields"));
        };
        if !matches!(*family, "ipv4" | "ipv6") {
            return Err(bad("no family first"));
        }
        let state = words
            .get(5)
            .filter(|w| !w.contains('='))
            .map(|w| (*w).to_owned());
        let values = |key: &str| -> Vec<&str> {
            words
                .iter()
                .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .collect()
        };
        let (src, dst, sport, dport) = (
            values("src"),
            values("dst"),
            values("sport"),
            values("dport"),
        );
        if [&src, &dst, &sport, &dport].iter().any(|v| v.len() != 2) {
            return Err(bad("not two src/dst/sport/dport groups"));
        }
        let flow = |i: usize| -> Result<(SocketAddr, SocketAddr), String> {
            let ip = |text: &str| text.parse::<IpAddr>().map_err(|_| bad("bad address"));
            let port = |text: &str| text.parse::<u16>().map_err(|_| bad("bad port"));
            Ok((
                SocketAddr::new(ip(src[i])?, port(sport[i])?),
                SocketAddr::new(ip(dst[i])?, port(dport[i])?),
            ))
        };
        entries.push(Entry {
            proto: (*proto).to_owned(),
            orig: flow(0)?,
            reply: flow(1)?,
            state,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines conntrack 1.4.7 printed in the lab (Debian 6.12, the nat scenario), and the count
    /// line it writes on stderr.
    #[test]
    fn parses_both_families_and_skips_the_count() {
        let text = "\
ipv4     2 tcp      6 119 TIME_WAIT src=198.51.100.71 dst=172.31.0.70 sport=34790 dport=80 src=10.245.7.3 dst=198.51.100.71 sport=8080 dport=34790 [ASSURED] mark=0 use=1
ipv4     2 udp      17 29 src=198.51.100.72 dst=172.31.0.70 sport=46743 dport=53 src=10.245.7.1 dst=198.51.100.72 sport=5353 dport=46743 mark=0 use=1
ipv6     10 tcp      6 119 TIME_WAIT src=fd00:198:51::71 dst=fd00:31::70 sport=53738 dport=80 src=fd00:245:7::3 dst=fd00:198:51::71 sport=8080 dport=53738 [ASSURED] mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.
";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].proto, "tcp");
        assert_eq!(entries[0].state.as_deref(), Some("TIME_WAIT"));
        assert_eq!(
            entries[0].orig,
            (
                "198.51.100.71:34790".parse().unwrap(),
                "172.31.0.70:80".parse().unwrap()
            )
        );
        assert_eq!(
            entries[0].reply,
            (
                "10.245.7.3:8080".parse().unwrap(),
                "198.51.100.71:34790".parse().unwrap()
            )
        );
        assert_eq!(entries[1].state, None);
        assert_eq!(entries[1].reply.0, "10.245.7.1:5353".parse().unwrap());
        assert_eq!(
            entries[2].reply,
            (
                "[fd00:245:7::3]:8080".parse().unwrap(),
                "[fd00:198:51::71]:53738".parse().unwrap()
            )
        );
    }

    #[test]
    fn refuses_a_line_without_two_tuples() {
        let error = parse("ipv4 2 tcp 6 119 ESTABLISHED src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2")
            .unwrap_err();
        assert!(error.contains("two src/dst"), "{error}");
    }
}
