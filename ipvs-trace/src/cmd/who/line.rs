//! One decision as a JSON line of the contract (docs/json.md), read back.
//!
//! `who` passes the lines it receives through unchanged for `-o json`; the table and the merge
//! of `--cluster` read them into [`Line`]. Every field is optional on reading, so that a line
//! of an older serve (a field missing) or a newer one (a field added) still reads; the lines
//! `who` writes itself (from the kernel's connection table) carry every field, `null` where
//! the table has nothing to say.

use serde::{Deserialize, Serialize};

use crate::clock;

/// The contract's fields, in its order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub time: Option<String>,
    pub event: Option<String>,
    pub proto: Option<String>,
    pub client: Option<String>,
    pub vip: Option<String>,
    pub backend: Option<String>,
    pub scheduler: Option<String>,
    pub fwd: Option<String>,
    pub weight: Option<i64>,
    pub active_conns: Option<i64>,
    pub inactive_conns: Option<i64>,
    pub service: Option<String>,
    pub service_type: Option<String>,
    pub backend_pod: Option<String>,
    pub backend_node: Option<String>,
    pub client_pod: Option<String>,
    pub backend_terminating: Option<bool>,
    pub netns: Option<u64>,
    pub cpu: Option<u32>,
    pub conn: Option<String>,
    pub nat: Option<serde_json::Value>,
    /// `ipvs`, `nftables`, `iptables`; absent from lines of a serve older than the netfilter
    /// dataplanes (all IPVS).
    pub dataplane: Option<String>,
}

impl Line {
    /// Reads one JSON line.
    pub fn parse(text: &str) -> Result<Line, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The line as the contract writes it (no newline).
    #[must_use]
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and JSON values always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The decision's time in Unix nanoseconds, when the line has a readable one.
    #[must_use]
    pub fn unix_ns(&self) -> Option<i128> {
        self.time
            .as_deref()
            .and_then(|t| clock::parse_rfc3339(t).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMED: &str = include_str!("../../../tests/golden/events-named.jsonl");

    #[test]
    fn reads_the_contract_and_writes_it_back_byte_for_byte() {
        for text in NAMED.lines() {
            let line = Line::parse(text).unwrap();
            assert_eq!(line.to_json(), text);
        }
        let first = Line::parse(NAMED.lines().next().unwrap()).unwrap();
        assert_eq!(first.event.as_deref(), Some("new"));
        assert_eq!(first.backend_terminating, Some(false));
        assert_eq!(first.unix_ns(), Some(1_795_713_172_123_456_789));
    }

    #[test]
    fn a_line_of_another_version_still_reads() {
        let line = Line::parse(r#"{"time":null,"event":"new","extra":[1,2],"cpu":null}"#).unwrap();
        assert_eq!(line.event.as_deref(), Some("new"));
        assert_eq!(line.unix_ns(), None);
        assert_eq!(line.client, None);
        assert!(Line::parse("not json").is_err());
    }
}
