//! The questions asked of the history: `GET /v1/decisions?client=...` and `who`'s flags.
//!
//! A [`Query`] is a conjunction of optional filters with a time window and a limit. It is
//! parsed from a URL query string ([`Query::parse`]) with an error that names the parameter,
//! and written back as one ([`Query::to_query_string`]) by `who`. Everything is bounded: the
//! query string's length, each value's, and the number of decisions an answer holds
//! ([`MAX_LIMIT`]), so no question makes serve allocate without bound.

use std::fmt::Write as _;

use super::Decision;
use crate::clock;
use crate::duration::parse_duration;
use crate::filter::{parse_pod, AddrMatch, ServiceMatch};

/// Decisions an answer holds unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;
/// The most an answer holds: about 500 bytes a JSON line, 50 MB.
pub const MAX_LIMIT: usize = 100_000;
/// Longest query string accepted (every parameter at once fits in a few hundred bytes).
pub const MAX_QUERY_LEN: usize = 4096;

/// A question about past decisions. Absent filters match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The client, `IP` or `IP:PORT`.
    pub client: Option<AddrMatch>,
    /// The real server, `IP` or `IP:PORT` (a `no_dest` decision has none and never matches).
    pub backend: Option<AddrMatch>,
    /// `namespace/name` of the backend pod or the client pod, as named at the decision.
    pub pod: Option<String>,
    /// The Service (`namespace/name`) or one of its ports (`namespace/name:port-name`).
    pub service: Option<ServiceMatch>,
    /// Earliest decision time, Unix nanoseconds, inclusive.
    pub since: Option<i64>,
    /// Latest decision time, Unix nanoseconds, inclusive.
    pub until: Option<i64>,
    /// At most this many decisions: the newest that match, answered oldest first.
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            client: None,
            backend: None,
            pod: None,
            service: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A query parameter that could not be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string is longer than {MAX_QUERY_LEN} bytes")]
    TooLong,
    #[error(
        "unknown parameter {0:?}: expected client, backend, pod, service, since, until, limit"
    )]
    Unknown(String),
    #[error("parameter {0} is given twice")]
    Repeated(&'static str),
    #[error("parameter {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Query {
    /// True when `decision` answers the question.
    #[must_use]
    pub fn matches(&self, decision: &Decision) -> bool {
        let event = &decision.event;
        let names = decision.names.names();
        self.since.is_none_or(|t| decision.unix_ns >= t)
            && self.until.is_none_or(|t| decision.unix_ns <= t)
            && self.client.is_none_or(|want| want.matches(event.client))
            && self
                .backend
                .is_none_or(|want| event.backend.is_some_and(|addr| want.matches(addr)))
            && self.pod.as_deref().is_none_or(|want| {
                names.backend_pod() == Some(want) || names.client_pod() == Some(want)
            })
            && self
                .service
                .as_ref()
                .is_none_or(|want| names.service.is_some_and(|have| want.matches(have)))
    }

    /// True when the time window cannot hold `[oldest, newest]` (both Unix ns): a block or a
    /// segment of that span need not be read.
    #[must_use]
    pub fn excludes_span(&self, oldest: i64, newest: i64) -> bool {
        self.since.is_some_and(|t| newest < t) || self.until.is_some_and(|t| oldest > t)
    }

    /// Parses a URL query string (without the `?`). Relative times (`since=1h`) count back
    /// from `now_ns` (Unix nanoseconds).
    pub fn parse(query: &str, now_ns: i64) -> Result<Query, QueryError> {
        if query.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong);
        }
        let mut out = Query::default();
        let mut seen_limit = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(raw_name).map_err(|_| QueryError::Unknown(raw_name.to_owned()))?;
            let param = Param::from_name(&name).ok_or(QueryError::Unknown(name))?;
            let invalid = |reason: String| QueryError::Invalid {
                name: param.name(),
                reason,
            };
            let value = decode(raw_value).map_err(invalid)?;
            if value.is_empty() {
                return Err(invalid("empty value".to_owned()));
            }
            match param {
                Param::Client => set(&mut out.client, param, value.parse().map_err(invalid)?)?,
                Param::Backend => set(&mut out.backend, param, value.parse().map_err(invalid)?)?,
                Param::Pod => set(&mut out.pod, param, parse_pod(&value).map_err(invalid)?)?,
                Param::Service => set(&mut out.service, param, value.parse().map_err(invalid)?)?,
                Param::Since => set(
                    &mut out.since,
                    param,
                    parse_time(&value, now_ns).map_err(invalid)?,
                )?,
                Param::Until => set(
                    &mut out.until,
                    param,
                    parse_time(&value, now_ns).map_err(invalid)?,
                )?,
                Param::Limit => {
                    if std::mem::replace(&mut seen_limit, true) {
                        return Err(QueryError::Repeated(param.name()));
                    }
                    out.limit = parse_limit(&value).map_err(invalid)?;
                }
            }
        }
        if let (Some(since), Some(until)) = (out.since, out.until) {
            if since > until {
                return Err(QueryError::Invalid {
                    name: "until",
                    reason: "is before since".to_owned(),
                });
            }
        }
        Ok(out)
    }

    /// The query string [`Query::parse`] reads back (times as Unix-exact RFC 3339).
    #[must_use]
    pub fn to_query_string(&self) -> String {
        let mut out = String::new();
        let mut push = |name: &str, value: &str| {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            encode_into(&mut out, value);
        };
        if let Some(client) = &self.client {
            push("client", &client.to_string());
        }
        if let Some(backend) = &self.backend {
            push("backend", &backend.to_string());
        }
        if let Some(pod) = &self.pod {
            push("pod", pod);
        }
        if let Some(service) = &self.service {
            push("service", service.as_str());
        }
        if let Some(since) = self.since {
            push("since", &clock::format_rfc3339(i128::from(since)));
        }
        if let Some(until) = self.until {
            push("until", &clock::format_rfc3339(i128::from(until)));
        }
        push("limit", &self.limit.to_string());
        out
    }
}

#[derive(Clone, Copy)]
enum Param {
    Client,
    Backend,
    Pod,
    Service,
    Since,
    Until,
    Limit,
}

impl Param {
    fn from_name(name: &str) -> Option<Param> {
        Some(match name {
            "client" => Param::Client,
            "backend" => Param::Backend,
            "pod" => Param::Pod,
            "service" => Param::Service,
            "since" => Param::Since,
            "until" => Param::Until,
            "limit" => Param::Limit,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Param::Client => "client",
            Param::Backend => "backend",
            Param::Pod => "pod",
            Param::Service => "service",
            Param::Since => "since",
            Param::Until => "until",
            Param::Limit => "limit",
        }
    }
}

fn set<T>(slot: &mut Option<T>, param: Param, value: T) -> Result<(), QueryError> {
    if slot.replace(value).is_some() {
        return Err(QueryError::Repeated(param.name()));
    }
    Ok(())
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a count from 1 to {MAX_LIMIT}")),
    }
}

/// `since`/`until`: RFC 3339 (`2026-12-07T14:03:00Z`, `2026-12-07T15:03:00+01:00`) or a
/// duration back from now (`90s`, `30m`, `1h`, `1h30m`).
pub fn parse_time(text: &str, now_ns: i64) -> Result<i64, String> {
    if text.as_bytes().first().is_some_and(u8::is_ascii_digit) && text.contains('-') {
        return clock::parse_rfc3339(text)
            .and_then(|ns| i64::try_from(ns).map_err(|_| format!("{text:?} is out of range")));
    }
    let back = parse_duration(text)
        .map_err(|err| format!("{err}; or an RFC 3339 time such as 2026-12-07T14:03:00Z"))?;
    let back = i64::try_from(back.as_nanos()).map_err(|_| format!("{text:?} is too long"))?;
    Ok(now_ns.saturating_sub(back))
}

/// Percent-decodes a query-string component (`+` is a space). Invalid escapes and text that is
/// not UTF-8 are errors, not guesses.
fn decode(text: &str) -> Result<String, String> {
    if !text.contains(['%', '+']) {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {text:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// Percent-encodes everything but unreserved characters and the few that addresses and names
/// need and a query value may hold as they are (`/`, `:`).
fn encode_into(out: &mut String, value: &str) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use super::*;
    use crate::events::{model::EventKind, Event, Proto};
    use crate::kube::{BackendName, ClientName, OwnedNames, ServiceName, ServiceType};

    const NOW: i64 = 1_796_652_180_000_000_000; // 2026-12-07T14:03:00Z
    const SEC: i64 = 1_000_000_000;

    fn decision(client: &str, backend: Option<&str>, unix_ns: i64) -> Decision {
        Decision {
            unix_ns,
            event: Event {
                dataplane: crate::dataplane::Dataplane::Ipvs,
                kind: if backend.is_some() {
                    EventKind::New
                } else {
                    EventKind::NoDest
                },
                timestamp_ns: unix_ns as u64,
                cpu: 0,
                netns: None,
                conn: None,
                proto: Proto::Tcp,
                client: client.parse().unwrap(),
                vip: "172.31.42.227:80".parse().unwrap(),
                backend: backend.map(|b| b.parse().unwrap()),
                fwd: None,
                flags: 0,
                state: 0,
                scheduler: Some(Cow::Borrowed("rr")),
                dest: None,
            },
            names: OwnedNames {
                service: Some(ServiceName {
                    label: Arc::from("ratel/web:http"),
                    service: Arc::from("ratel/web"),
                    service_type: ServiceType::ClusterIp,
                }),
                backend: backend.map(|_| BackendName {
                    pod: Some(Arc::from("ratel/web-1")),
                    node: None,
                    serving: None,
                    terminating: None,
                }),
                client: Some(ClientName::Pod {
                    pod: Arc::from("ratel/client"),
                    node: None,
                }),
            },
        }
    }

    fn parse(text: &str) -> Result<Query, QueryError> {
        Query::parse(text, NOW)
    }

    #[test]
    fn every_parameter() {
        let q = parse(
            "client=10.245.97.12:51776&backend=10.245.0.10&pod=ratel%2Fweb-1&service=ratel/web:http\
             &since=1h&until=2026-12-07T14:03:00Z&limit=5",
        )
        .unwrap();
        assert_eq!(q.client, Some("10.245.97.12:51776".parse().unwrap()));
        assert_eq!(q.backend, Some("10.245.0.10".parse().unwrap()));
        assert_eq!(q.pod.as_deref(), Some("ratel/web-1"));
        assert_eq!(
            q.service.as_ref().map(ServiceMatch::as_str),
            Some("ratel/web:http")
        );
        assert_eq!(q.since, Some(NOW - 3600 * SEC));
        assert_eq!(q.until, Some(NOW));
        assert_eq!(q.limit, 5);
        assert_eq!(parse("").unwrap(), Query::default());
    }

    #[test]
    fn round_trips_through_the_query_string() {
        let q = Query {
            client: Some("[fd00::12]:51776".parse().unwrap()),
            backend: Some("10.245.0.10:8080".parse().unwrap()),
            pod: Some("ratel/web 1".to_owned()),
            service: Some("ratel/web".parse().unwrap()),
            since: Some(NOW - 1),
            until: Some(NOW),
            limit: 7,
        };
        let text = q.to_query_string();
        assert!(text.contains("client=%5Bfd00::12%5D:51776"), "{text}");
        assert_eq!(parse(&text).unwrap(), q);
    }

    #[test]
    fn errors_name_the_parameter() {
        for (text, needle) in [
            ("client=10.0.0", "parameter client"),
            ("backend=", "parameter backend: empty value"),
            ("pod=web", "parameter pod"),
            ("service=ratel", "parameter service"),
            ("since=yesterday", "parameter since"),
            ("until=2026-13-01T00:00:00Z", "parameter until"),
            ("limit=0", "parameter limit"),
            ("limit=100001", "parameter limit"),
            ("limit=-1", "parameter limit"),
            ("client=1.2.3.4&client=1.2.3.5", "client is given twice"),
            ("limit=1&limit=2", "limit is given twice"),
            ("pod=ratel%2", "parameter pod: bad percent escape"),
            ("pod=%FF%FE", "parameter pod"),
            ("color=red", "unknown parameter \"color\""),
            ("since=1m&until=1h", "until: is before since"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let long = format!("pod={}", "a".repeat(MAX_QUERY_LEN));
        assert_eq!(parse(&long), Err(QueryError::TooLong));
    }

    #[test]
    fn relative_times_count_back_from_now() {
        assert_eq!(parse_time("90s", NOW), Ok(NOW - 90 * SEC));
        assert_eq!(parse_time("1h30m", NOW), Ok(NOW - 5400 * SEC));
        assert!(parse_time("30", NOW).unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_time("2026-12-07T15:03:00+01:00", NOW), Ok(NOW));
    }

    #[test]
    fn matching() {
        let d = decision("10.245.97.12:51776", Some("10.245.0.10:8080"), NOW);
        let no_dest = decision("10.245.97.12:51777", None, NOW);
        let yes = [
            "client=10.245.97.12",
            "client=10.245.97.12:51776",
            "backend=10.245.0.10:8080",
            "pod=ratel/web-1",
            "pod=ratel/client",
            "service=ratel/web",
            "service=ratel/web:http",
            "since=2026-12-07T14:03:00Z&until=2026-12-07T14:03:00Z",
        ];
        for text in yes {
            assert!(parse(text).unwrap().matches(&d), "{text}");
        }
        let no = [
            "client=10.245.97.12:51777",
            "backend=10.245.0.10:8081",
            "pod=ratel/web-2",
            "service=ratel/web:grpc",
            "service=ratel/api",
            "since=2026-12-07T14:03:00.000000001Z",
            "until=2026-12-07T14:02:59Z",
        ];
        for text in no {
            assert!(!parse(text).unwrap().matches(&d), "{text}");
        }
        assert!(!parse("backend=10.245.0.10").unwrap().matches(&no_dest));
        assert!(parse("client=10.245.97.12").unwrap().matches(&no_dest));
    }

    #[test]
    fn spans_outside_the_window_are_excluded() {
        let q = parse("since=2026-12-07T14:00:00Z&until=2026-12-07T14:03:00Z").unwrap();
        assert!(q.excludes_span(NOW - 400 * SEC, NOW - 181 * SEC));
        assert!(q.excludes_span(NOW + 1, NOW + 5));
        assert!(!q.excludes_span(NOW - 400 * SEC, NOW - 180 * SEC));
        assert!(!q.excludes_span(NOW, NOW + 5));
        assert!(!Query::default().excludes_span(i64::MIN, i64::MAX));
    }
}
