//! The probes across ip_vs unloads: the tracer, the reader of its ring buffer, and the watch on
//! the module they hang on.
//!
//! When ip_vs is unloaded its kprobes go with it ([`module_watch`] says why and how that is
//! noticed: once a second, a `stat` and a 5-byte read). A run that waits for ip_vs (`serve`,
//! `trace --wait`) waits for it again: what the old probes wrote to their ring is still handled,
//! they are detached, and once the module is back a new tracer is started (the module's BTF and
//! addresses are new) and its reader takes the old one's place. Without `--wait` the trace ends
//! with its summary, as it would have refused to start without ip_vs.
//!
//! The drop counters of a detached tracer are kept and added to its successors', so that the
//! losses in the summary and the metrics are totals of the whole run.
//!
//! [`module_watch`]: crate::loader::module_watch

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::notice;
use crate::events::{Event, EventReader};
use crate::filter::NamedKeys;
use crate::loader::module_watch::{ModuleWatch, Step};
use crate::loader::probes::Attachment;
use crate::loader::{Layout, LoaderOptions, Tracer};
use crate::output::summary::Losses;

/// How often the module is looked at.
const MODULE_POLL: Duration = Duration::from_secs(1);

/// After a failed re-attach, the wait before the next try (the module is there, but something
/// about it is not as the loader expects: trying every second would only repeat the failure).
const RETRY: Duration = Duration::from_secs(10);

/// A new tracer being started: kept across the event loop's turns, so that a signal or a
/// metrics second does not restart it from the beginning.
type Starting = Pin<Box<dyn Future<Output = anyhow::Result<Tracer>>>>;

/// What [`Probes::next`] has for the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Events were added to the batch.
    Events,
    /// ip_vs was unloaded and the probes are detached (the batch has what they left in their
    /// ring): not ready until [`Next::Reattached`].
    Detached,
    /// Attached again, to ip_vs loaded again.
    Reattached,
    /// ip_vs was unloaded and the run does not wait for it: the batch has what the probes left
    /// in their ring; the trace ends.
    Ended,
}

/// The tracer of the moment (none while ip_vs is away) and what outlives it.
pub(super) struct Probes {
    options: LoaderOptions,
    live: Option<Attached>,
    watch: ModuleWatch,
    poll: Interval,
    starting: Option<Starting>,
    /// After a failed re-attach: no new try before then.
    retry_at: Option<Instant>,
    /// The last re-attach failed: the next failure is only logged at debug level.
    failing: bool,
    /// The losses of the tracers detached so far.
    retired: Losses,
    /// What the newest tracer attached (kept while detached, for the summary).
    attachment: Attachment,
    /// The name filters' addresses last handed over, for a tracer attached again.
    named: Option<NamedKeys>,
}

/// A tracer and the reader of its ring buffer. Dropping it detaches the probes.
struct Attached {
    tracer: Tracer,
    reader: EventReader,
}

impl Attached {
    fn new(mut tracer: Tracer) -> anyhow::Result<Attached> {
        let dataplanes = tracer.dataplanes().to_vec();
        let reader = EventReader::new(tracer.take_ring()?, &dataplanes)
            .context("registering the ring buffer with the event loop")?;
        Ok(Attached { tracer, reader })
    }

    /// What became of the decisions so far: lost, filtered out, read.
    fn losses(&self) -> Losses {
        self.tracer.losses(&self.reader)
    }
}

impl Probes {
    /// Takes over a started tracer; `options` start its successors.
    pub(super) fn new(tracer: Tracer, options: LoaderOptions) -> anyhow::Result<Probes> {
        let mut watch = ModuleWatch::new(crate::loader::module_watch::SysModule::ip_vs());
        watch.attached(tracer.module());
        let mut poll = tokio::time::interval(MODULE_POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Probes {
            options,
            named: None,
            attachment: tracer.attachment().clone(),
            live: Some(Attached::new(tracer)?),
            watch,
            poll,
            starting: None,
            retry_at: None,
            failing: false,
            retired: Losses {
                ring_full: Some(0),
                unreadable: Some(0),
                malformed: 0,
                filtered: Some(0),
                read: 0,
            },
        })
    }

    /// Where the struct layout of the tracer of the moment came from (`None`: detached).
    pub(super) fn layout(&self) -> Option<&Layout> {
        self.live.as_ref().map(|live| live.tracer.layout())
    }

    /// The addresses the name filters resolve to now, for the kernel-side filter (see
    /// [`Tracer::set_named`]); kept for a tracer attached again after an ip_vs reload.
    pub(super) fn set_named(&mut self, named: Option<NamedKeys>) -> anyhow::Result<()> {
        self.named = named;
        match &mut self.live {
            Some(live) => live.tracer.set_named(self.named.as_ref()),
            None => Ok(()),
        }
    }

    /// What the newest tracer attached and left out (also after it was detached).
    pub(super) fn attachment(&self) -> &Attachment {
        &self.attachment
    }

    /// What was lost so far, over every tracer of the run.
    pub(super) fn losses(&self) -> Losses {
        match &self.live {
            Some(live) => add(self.retired, live.losses()),
            None => self.retired,
        }
    }

    /// Appends everything already in the ring to `out` without waiting (at the end of a run).
    pub(super) fn drain_now(&mut self, out: &mut Vec<Event>) {
        if let Some(live) = &mut self.live {
            live.reader.drain_now(out);
        }
    }

    /// Waits for events (appended to `out`), or for the module to go or to come back.
    ///
    /// Cancel safe: the waits are (the reader's, the poll timer's), a tracer being started is
    /// kept in `self` and resumed by the next call, and the rest is synchronous.
    pub(super) async fn next(&mut self, out: &mut Vec<Event>) -> io::Result<Next> {
        loop {
            let Some(live) = &mut self.live else {
                if self.reattach().await {
                    return Ok(Next::Reattached);
                }
                continue;
            };
            tokio::select! {
                // The poll first: under a flood of events the ring is always ready.
                biased;
                _ = self.poll.tick() => {}
                read = live.reader.read_batch(out) => {
                    read?;
                    return Ok(Next::Events);
                }
            }
            if let Step::Lost { reloaded } = self.watch.poll() {
                self.detach(out, reloaded);
                // A run on nf_nat alone goes on: it starts again with ip_vs's probes too.
                return Ok(if self.options.wait || self.ipvs_arrived() {
                    Next::Detached
                } else {
                    Next::Ended
                });
            }
        }
    }

    /// Whether the tracer of the moment (or the last one) runs on nf_nat alone, having started
    /// without ip_vs: then a change of ip_vs can only be its arrival, and the run starts again
    /// at once with its probes too. A tracer with ip_vs's probes keeps the rule of the IPVS
    /// dataplane: it goes with ip_vs and waits for it (its nf_nat probe too, meanwhile).
    fn ipvs_arrived(&self) -> bool {
        !self
            .attachment
            .attached
            .iter()
            .any(|a| a.probe.module == "ip_vs")
    }

    /// The probes' module is gone: takes what they left in their ring, keeps their losses,
    /// detaches them, and says so (once: the next poll finds nothing attached to lose).
    fn detach(&mut self, out: &mut Vec<Event>, reloaded: bool) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        live.reader.drain_now(out);
        self.retired = add(self.retired, live.losses());
        drop(live);
        let what = if reloaded {
            "ip_vs was unloaded and loaded again"
        } else {
            "ip_vs was unloaded"
        };
        if self.ipvs_arrived() {
            tracing::warn!(
                "ip_vs was loaded: the probes start again with its probes beside nf_nat's \
                 (decisions made meanwhile are not seen)"
            );
        } else if self.options.wait {
            tracing::warn!(
                "{what}: its probes went with it; not ready until they are attached to the \
                 ip_vs loaded now (waiting for it)"
            );
        } else {
            tracing::warn!(
                "{what}: its probes went with it; ending the trace (with --wait it waits for \
                 ip_vs and attaches again)"
            );
        }
    }

    /// Once ip_vs is loaded, starts a new tracer; `false` after a failed try (the next one is
    /// [`RETRY`] later).
    async fn reattach(&mut self) -> bool {
        if self.starting.is_none() {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            loop {
                self.poll.tick().await;
                // A run on nf_nat alone starts again at once.
                if self.ipvs_arrived() || self.watch.poll() == Step::Attach {
                    break;
                }
            }
            let options = self.options.clone();
            self.starting = Some(Box::pin(async move { Tracer::start(&options).await }));
        }
        let Some(starting) = self.starting.as_mut() else {
            return false;
        };
        let started = starting.await;
        self.starting = None;
        match started.and_then(Attached::new) {
            Ok(mut live) => {
                self.watch.attached(live.tracer.module());
                notice(&format!(
                    "ipvs-trace: tracing again, ip_vs was loaded again ({})",
                    live.tracer.attachment().tracing_list()
                ));
                self.attachment = live.tracer.attachment().clone();
                if let Err(err) = live.tracer.set_named(self.named.as_ref()) {
                    tracing::warn!(
                        "the kernel-side name filter of the tracer attached again: {err:#}; \
                         the name filters are applied in userspace only"
                    );
                }
                self.live = Some(live);
                self.failing = false;
                true
            }
            Err(err) => {
                if self.failing {
                    tracing::debug!("attaching the probes to ip_vs failed again: {err:#}");
                } else {
                    tracing::warn!(
                        "attaching the probes to the ip_vs loaded again failed (trying again \
                         every {} s): {err:#}",
                        RETRY.as_secs()
                    );
                }
                self.failing = true;
                self.retry_at = Some(Instant::now() + RETRY);
                false
            }
        }
    }
}

/// The losses of two tracers together (unknown if either's are).
fn add(a: Losses, b: Losses) -> Losses {
    let sum = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
    Losses {
        ring_full: sum(a.ring_full, b.ring_full),
        unreadable: sum(a.unreadable, b.unreadable),
        malformed: a.malformed + b.malformed,
        filtered: sum(a.filtered, b.filtered),
        read: a.read + b.read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_of_detached_tracers_add_up() {
        let losses = |ring_full, unreadable, malformed| Losses {
            ring_full,
            unreadable,
            malformed,
            filtered: None,
            read: 0,
        };
        assert_eq!(
            add(losses(Some(3), Some(1), 2), losses(Some(4), Some(0), 1)),
            losses(Some(7), Some(1), 3)
        );
        assert_eq!(
            add(losses(None, Some(1), 0), losses(Some(4), Some(2), 0)),
            losses(None, Some(3), 0),
            "a counter that could not be read leaves the total unknown"
        );
    }
}
