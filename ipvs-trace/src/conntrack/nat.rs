//! `trace --nat`: each connection's addresses before and after IPVS, and the conntrack entry
//! that shows what the pod sees, attached to events without ever holding up the ring buffer.
//!
//! Events are taken in order ([`NatStage::push`]); those that need a conntrack lookup wait for
//! its answer, and [`NatStage::release`] hands events back in the order they came, each as soon
//! as it and every event before it is complete. So `--nat` output lags by at most one lookup's
//! retry window, and lines stay in event order. Lookups run on [`super::worker`]'s thread.
//!
//! With `net.ipv4.vs.conntrack=0` IPVS makes the kernel forget each connection's conntrack
//! entry (`ip_vs_notrack`), so there is nothing to look up: the stage says so once and shows
//! the IPVS translation only.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::future::pending;
use std::path::Path;

use super::worker::{Answer, Job, Lookups, Outcome, Retry};
use super::{Client, Entry, Tuple};
use crate::events::model::EventKind;
use crate::events::{Event, FwdMethod};
use crate::kube::OwnedNames;

/// IPVS's switch for keeping netfilter conntrack entries of its connections.
const VS_CONNTRACK_SYSCTL: &str = "/proc/sys/net/ipv4/vs/conntrack";
/// Lookups that may wait for the thread before new ones are dropped: a burst of this many
/// connections is looked up in full.
const QUEUE_CAPACITY: usize = 4096;

/// What `--nat` shows for one connection event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatView {
    /// What the client sent: client -> VIP:vport (the address it dialled).
    pub before: Tuple,
    /// What IPVS sent on: client -> pod:port for Masq; for Route, Tunnel and Local the
    /// destination stays the VIP (the real server holds it, and IPVS rewrites no address).
    pub after: Tuple,
    /// The connection's conntrack entry: its reply tuple is what the pod answers to (pod:port
    /// -> client, or -> the node's address when kube-proxy also masquerades). `None` when not
    /// looked up (conntrack off) or not found.
    pub conntrack: Option<Entry>,
}

impl NatView {
    /// The view of a connection event (`new`, `reused`); `None` for events that are not one
    /// connection (`template`, `no_dest`, `expire`).
    #[must_use]
    pub fn of(event: &Event) -> Option<NatView> {
        if !matches!(event.kind, EventKind::New | EventKind::Reused) {
            return None;
        }
        let backend = event.backend?;
        let before = Tuple {
            proto: event.proto,
            src: event.client,
            dst: event.vip,
        };
        // A netfilter decision is a DNAT to the endpoint, as IPVS's Masq.
        let after = if event.fwd == Some(FwdMethod::Masq) || event.dataplane.is_netfilter() {
            Tuple {
                dst: backend,
                ..before
            }
        } else {
            before
        };
        Some(NatView {
            before,
            after,
            conntrack: None,
        })
    }
}

/// Counts of the conntrack lookups, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Lookups started.
    pub lookups: u64,
    pub found: u64,
    /// No entry within the retry window.
    pub missing: u64,
    /// Not done: the queue was full, or the answer had not come when the trace ended.
    pub dropped: u64,
    /// The kernel or the socket failed (the first failure is reported when it happens).
    pub failed: u64,
}

/// An event handed back by [`NatStage::release`], with its view (`None`: not a connection).
#[derive(Debug)]
pub struct Released {
    pub event: Event,
    pub names: OwnedNames,
    pub view: Option<NatView>,
}

struct Pending {
    id: u64,
    event: Event,
    names: OwnedNames,
    view: Option<NatView>,
    /// A lookup for it is out.
    waiting: bool,
}

/// Events in order, waiting for their lookups.
pub struct NatStage {
    lookups: Option<Lookups>,
    /// Why there are no lookups, when there are none.
    unavailable: Option<String>,
    pending: VecDeque<Pending>,
    next_id: u64,
    outstanding: usize,
    stats: NatStats,
    /// The first failure was reported.
    failure_reported: bool,
}

impl NatStage {
    /// Reads `net.ipv4.vs.conntrack` and, when it is 1, checks that ctnetlink answers and
    /// starts the lookup thread (recording every reply in `record`, if given). Whatever stands
    /// in the way is kept for [`NatStage::unavailable`]; the IPVS side of `--nat` works anyway.
    #[must_use]
    pub fn start(record: Option<&Path>) -> NatStage {
        match Self::lookups(record) {
            Ok(lookups) => NatStage::with(Some(lookups), None),
            Err(reason) => NatStage::with(None, Some(reason)),
        }
    }

    fn lookups(record: Option<&Path>) -> Result<Lookups, String> {
        match fs::read_to_string(VS_CONNTRACK_SYSCTL).map(|s| s.trim().to_owned()) {
            Ok(value) if value == "0" => {
                return Err(
                    "net.ipv4.vs.conntrack is 0, so IPVS has the kernel drop the conntrack \
                     entry of every connection it forwards (kube-proxy sets it to 1: \
                     `sysctl -w net.ipv4.vs.conntrack=1`)"
                        .to_owned(),
                )
            }
            Ok(_) => {}
            // A node of kube-proxy's netfilter modes: every connection has its conntrack
            // entry, the one its DNAT binding is on.
            Err(_) if !Path::new("/sys/module/ip_vs").exists() => {}
            Err(err) => {
                return Err(format!(
                    "cannot read {VS_CONNTRACK_SYSCTL} ({err}): ip_vs is not loaded, or built \
                     without conntrack support (CONFIG_IP_VS_NFCT)"
                ))
            }
        }
        let mut client = Client::open(record).map_err(|e| e.to_string())?;
        client.probe().map_err(|e| e.to_string())?;
        Lookups::start(client, QUEUE_CAPACITY, Retry::DEFAULT)
            .map_err(|e| format!("cannot start the conntrack lookup thread: {e}"))
    }

    /// A stage over `lookups` (tests give one over a replayed recording).
    #[must_use]
    pub fn with(lookups: Option<Lookups>, unavailable: Option<String>) -> NatStage {
        NatStage {
            lookups,
            unavailable,
            pending: VecDeque::new(),
            next_id: 0,
            outstanding: 0,
            stats: NatStats::default(),
            failure_reported: false,
        }
    }

    /// Why conntrack entries are not shown, when they are not.
    #[must_use]
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    #[must_use]
    pub fn stats(&self) -> NatStats {
        self.stats
    }

    /// Lookups whose answer has not come yet.
    #[must_use]
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Takes the next event (one that passed the filters), starting its lookup if it needs one.
    pub fn push(&mut self, event: Event, names: OwnedNames) {
        let view = NatView::of(&event);
        self.next_id += 1;
        let id = self.next_id;
        let mut waiting = false;
        if let (Some(view), Some(lookups)) = (&view, &self.lookups) {
            self.stats.lookups += 1;
            if lookups.submit(Job {
                id,
                key: view.before,
            }) {
                waiting = true;
                self.outstanding += 1;
            } else {
                self.stats.dropped += 1;
            }
        }
        self.pending.push_back(Pending {
            id,
            event,
            names,
            view,
            waiting,
        });
    }

    /// Files an answer. Returns a message to show once, on the first failed lookup.
    pub fn answer(&mut self, answer: Answer) -> Option<String> {
        // Answers come in any order (a retried lookup finishes after later ones).
        let pending = self
            .pending
            .iter_mut()
            .find(|p| p.id == answer.id && p.waiting)?;
        pending.waiting = false;
        self.outstanding -= 1;
        match answer.outcome {
            Outcome::Found(entry) => {
                self.stats.found += 1;
                if let Some(view) = &mut pending.view {
                    view.conntrack = Some(entry);
                }
                None
            }
            Outcome::Missing => {
                self.stats.missing += 1;
                None
            }
            Outcome::Failed(message) => {
                self.stats.failed += 1;
                if self.failure_reported {
                    None
                } else {
                    self.failure_reported = true;
                    Some(format!(
                        "conntrack lookup failed: {message} (later failures are only counted)"
                    ))
                }
            }
        }
    }

    /// Files the answers already there without waiting (the event loop polls the ring buffer
    /// first, so under a flood of events answers are taken here). Messages as [`Self::answer`].
    pub fn take_ready_answers(&mut self) -> Vec<String> {
        let mut messages = Vec::new();
        while let Some(answer) = self.lookups.as_mut().and_then(Lookups::try_next) {
            messages.extend(self.answer(answer));
        }
        messages
    }

    /// The next answer; never completes when no lookup is out.
    pub async fn next_answer(&mut self) -> Answer {
        match (&mut self.lookups, self.outstanding) {
            (Some(lookups), 1..) => match lookups.next().await {
                Some(answer) => answer,
                // The thread ended (it only does when the queue is closed): nothing will come.
                None => pending().await,
            },
            _ => pending().await,
        }
    }

    /// The events at the front that are complete, in order.
    pub fn release(&mut self) -> impl Iterator<Item = Released> + '_ {
        std::iter::from_fn(move || {
            if self.pending.front().is_some_and(|p| !p.waiting) {
                self.pending.pop_front().map(|p| Released {
                    event: p.event,
                    names: p.names,
                    view: p.view,
                })
            } else {
                None
            }
        })
    }

    /// At the end: the lookups still out are given up (counted as dropped), so that
    /// [`Self::release`] hands back every event.
    pub fn give_up(&mut self) {
        for pending in self.pending.iter_mut().filter(|p| p.waiting) {
            pending.waiting = false;
            self.stats.dropped += 1;
        }
        self.outstanding = 0;
    }

    /// How long the end of a trace waits for the lookups still out.
    #[must_use]
    pub fn grace(&self) -> std::time::Duration {
        Retry::DEFAULT.window * 2
    }

    /// The summary's line: `nat: conntrack lookups=N found=N missing=N dropped=N failed=N`, or
    /// why there were none.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let mut line = String::from("nat: conntrack ");
        if let Some(reason) = &self.unavailable {
            let _ = write!(line, "lookups off: {reason}");
        } else {
            let s = self.stats;
            let _ = write!(
                line,
                "lookups={} found={} missing={} dropped={} failed={}",
                s.lookups, s.found, s.missing, s.dropped, s.failed
            );
        }
        line
    }
}
