//! How `trace --nat` renders a connection's translation: the JSON line's `nat` object and the
//! table's continuation line.
//!
//! JSON (`nat` is `null` without `--nat`, and for events that are not one connection):
//! ```json
//! "nat":{"before":{"src":"192.0.2.2:49684","dst":"172.31.42.227:80"},
//!        "after":{"src":"192.0.2.2:49684","dst":"10.245.0.10:8080"},
//!        "conntrack":{"orig":{"src":"192.0.2.2:49684","dst":"172.31.42.227:80"},
//!                     "reply":{"src":"10.245.0.10:8080","dst":"192.0.2.2:49684"},
//!                     "status":["CONFIRMED"],"mark":0}}
//! ```
//! `conntrack` is `null` when no entry was found or lookups are off (the summary says why).

use std::io;
use std::net::SocketAddr;

use serde::Serialize;

use super::json_text::AsString;
use crate::conntrack::nat::NatView;
use crate::conntrack::{Entry, Tuple};

/// One direction: `src` -> `dst`. The protocol is the event's own `proto`.
#[derive(Serialize)]
struct JsonFlow {
    src: AsString<SocketAddr>,
    dst: AsString<SocketAddr>,
}

impl From<&Tuple> for JsonFlow {
    fn from(tuple: &Tuple) -> JsonFlow {
        JsonFlow {
            src: AsString(tuple.src),
            dst: AsString(tuple.dst),
        }
    }
}

#[derive(Serialize)]
struct JsonConntrack {
    orig: JsonFlow,
    reply: JsonFlow,
    /// `IPS_*` status bits by name, at the time of the lookup: `CONFIRMED` from the first
    /// packet on, `SEEN_REPLY` and `ASSURED` once the pod has answered.
    status: Vec<String>,
    mark: Option<u32>,
}

impl From<&Entry> for JsonConntrack {
    fn from(entry: &Entry) -> JsonConntrack {
        JsonConntrack {
            orig: (&entry.orig).into(),
            reply: (&entry.reply).into(),
            status: entry.status.names(),
            mark: entry.mark,
        }
    }
}

/// The `nat` object of a JSON line.
#[derive(Serialize)]
pub(super) struct JsonNat {
    before: JsonFlow,
    after: JsonFlow,
    conntrack: Option<JsonConntrack>,
}

impl From<&NatView> for JsonNat {
    fn from(view: &NatView) -> JsonNat {
        JsonNat {
            before: (&view.before).into(),
            after: (&view.after).into(),
            conntrack: view.conntrack.as_ref().map(JsonConntrack::from),
        }
    }
}

/// The table's line under an event, indented to the EVENT column:
/// `nat  client -> VIP  =>  client -> pod  conntrack reply pod -> client` (`conntrack -` when
/// no entry is known).
pub(super) fn write_line(out: &mut impl io::Write, view: &NatView) -> io::Result<()> {
    write!(
        out,
        "{:15}  nat  {} -> {}  =>  {} -> {}  conntrack ",
        "", view.before.src, view.before.dst, view.after.src, view.after.dst
    )?;
    match &view.conntrack {
        Some(entry) => writeln!(out, "reply {} -> {}", entry.reply.src, entry.reply.dst),
        None => writeln!(out, "-"),
    }
}

#[cfg(test)]
mod tests {
    use crate::conntrack::nat::NatView;
    use crate::conntrack::{Entry, Status, Tuple};
    use crate::kube::Names;
    use crate::output::tests::{assert_golden, sample_events, CLOCK};
    use crate::output::{OutputFormat, Printer};

    /// The sample events as `--nat` prints them: the first (Masq) with its conntrack entry as
    /// the kernel reports it (reply pod -> client), the reused one (Route: no address rewritten)
    /// without an entry, the template and no_dest without a view.
    fn render(format: OutputFormat) -> String {
        let printer = Printer::new(format, CLOCK);
        let mut out = Vec::new();
        printer.begin(&mut out).unwrap();
        for (i, event) in sample_events().iter().enumerate() {
            let mut view = NatView::of(event);
            if let (0, Some(view)) = (i, &mut view) {
                view.conntrack = Some(Entry {
                    orig: view.before,
                    reply: Tuple {
                        proto: view.before.proto,
                        src: view.after.dst,
                        dst: view.before.src,
                    },
                    status: Status(Status::CONFIRMED),
                    mark: Some(0),
                });
            }
            printer
                .event_nat(&mut out, event, &Names::default(), view.as_ref())
                .unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_nat_golden() {
        assert_golden("events-nat.jsonl", &render(OutputFormat::Json));
    }

    #[test]
    fn table_nat_golden() {
        assert_golden("table-nat.txt", &render(OutputFormat::Table));
    }

    #[test]
    fn views_follow_the_forwarding_method() {
        let events = sample_events();
        let masq = NatView::of(&events[0]).expect("a new event");
        assert_eq!(masq.after.src, events[0].client);
        assert_eq!(Some(masq.after.dst), events[0].backend);
        assert_eq!(masq.before.dst, events[0].vip);
        // Direct routing rewrites no address: the real server holds the VIP.
        let route = NatView::of(&events[2]).expect("a reused event");
        assert_eq!(route.after, route.before);
        // A template stands for a client IP, no_dest has no translation.
        assert_eq!(NatView::of(&events[1]), None);
        assert_eq!(NatView::of(&events[3]), None);
        // A netfilter decision has no forwarding method: it is a DNAT to the endpoint.
        let dnat = crate::events::Event {
            dataplane: crate::dataplane::Dataplane::Nftables,
            fwd: None,
            ..events[2].clone()
        };
        let view = NatView::of(&dnat).expect("a netfilter new event");
        assert_eq!(Some(view.after.dst), dnat.backend);
        assert_eq!(view.before.dst, dnat.vip);
    }
}
