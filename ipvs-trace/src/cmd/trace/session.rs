//! The event loop's state: filters, prints and counts each event, holds `--nat` events for
//! their conntrack lookups, and keeps the summary.

use std::io::{self, Write};

use crate::clock::WallClock;
use crate::conntrack::nat::NatStage;
use crate::conntrack::worker::Answer;
use crate::events::Event;
use crate::filter::Filter;
use crate::history::recorder::HistoryRecorder;
use crate::ipvs::lookup::LiveLookup;
use crate::kube::{self, Names, SharedIndex};
use crate::metrics::Recorder;
use crate::output::{
    summary::{Losses, Summary},
    Printer,
};

use super::{nat_notice, next_answer};

/// Whether to keep reading after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// `--count` events have been printed.
    CountReached,
}

/// Filters, prints and counts events.
pub(super) struct Session<W: Write> {
    pub(super) printer: Printer,
    pub(super) filter: Filter,
    pub(super) summary: Summary,
    /// Kubernetes names, when a source was given.
    pub(super) index: Option<SharedIndex>,
    /// Scheduler and weights from the IPVS tables, when the probes cannot read them.
    pub(super) tables: Option<LiveLookup>,
    /// `--nat`: events wait here, in order, for their conntrack lookups.
    pub(super) nat: Option<NatStage>,
    /// Events still to print before `--count` is reached.
    pub(super) remaining: Option<u64>,
    /// `--metrics-addr`, `serve`: counts what the summary counts.
    pub(super) metrics: Option<Recorder>,
    /// `serve`: no event is printed.
    pub(super) quiet: bool,
    /// `serve`: every decision recorded, with its names, for `who`.
    pub(super) history: Option<HistoryRecorder>,
    /// The run's clock: the history keeps wall-clock times.
    pub(super) clock: WallClock,
    /// One event's line, formatted under the index's lock and written out after it.
    pub(super) line: Vec<u8>,
    pub(super) out: W,
}

impl<W: Write> Session<W> {
    /// What precedes the events (the table header), flushed so it shows before the first event.
    pub(super) fn begin(&mut self) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.printer.begin(&mut self.out)?;
        self.out.flush()
    }

    /// Prints the events of `batch` that pass the filters (up to the count), then flushes: one
    /// write per batch keeps output live without a syscall per line.
    pub(super) fn handle(&mut self, batch: &mut Vec<Event>) -> io::Result<Flow> {
        if let Some(tables) = &mut self.tables {
            tables.catch_up();
        }
        for mut event in batch.drain(..) {
            if self.remaining == Some(0) {
                break;
            }
            if let Some(tables) = &mut self.tables {
                tables.fill(&mut event);
            }
            // A read lock per event, held from the lookup until the event's line is formatted
            // (the names are borrowed from the index): a writer (the watches) waits at most
            // that long, and the event loop at most one `Change`. The line is written out
            // after the lock is released, so a blocked stdout never holds up the watches.
            let index = self.index.as_ref().map(kube::read);
            let names = index
                .as_deref()
                .map_or(Names::NONE, |index| index.names(&event));
            if !self.filter.matches(&event, &names) {
                continue;
            }
            self.summary.record(&event, &names);
            if let Some(metrics) = &mut self.metrics {
                metrics.record(&event, &names);
            }
            if let Some(history) = &mut self.history {
                let unix_ns = self.clock.unix_ns(event.timestamp_ns) as i64;
                history.record(unix_ns, &event, &names);
            }
            if let Some(remaining) = &mut self.remaining {
                *remaining -= 1;
            }
            match &mut self.nat {
                Some(nat) => nat.push(event, names.owned()),
                None if self.quiet => {}
                None => {
                    self.line.clear();
                    self.printer.event(&mut self.line, &event, &names)?;
                    drop(index);
                    self.out.write_all(&self.line)?;
                }
            }
        }
        if let Some(history) = &mut self.history {
            // One hand-over per drained batch, not per event.
            history.flush();
        }
        if let Some(nat) = &mut self.nat {
            // Under a flood the loop polls the ring first: answers are taken here too.
            nat.take_ready_answers().iter().for_each(|m| nat_notice(m));
        }
        self.release()?;
        Ok(if self.remaining == Some(0) {
            Flow::CountReached
        } else {
            Flow::Continue
        })
    }

    /// The metrics' second: the drop counters brought up to these totals, the second's
    /// connections into the observed shares.
    pub(super) fn tick_metrics(&mut self, losses: &Losses) {
        if let Some(metrics) = &mut self.metrics {
            metrics.tick(losses);
        }
    }

    /// Files a conntrack answer and prints what it completed.
    pub(super) fn answer(&mut self, answer: Answer) -> io::Result<()> {
        if let Some(message) = self.nat.as_mut().and_then(|nat| nat.answer(answer)) {
            nat_notice(&message);
        }
        self.release()
    }

    /// Prints the `--nat` events that are complete, in order, and flushes.
    pub(super) fn release(&mut self) -> io::Result<()> {
        if let Some(nat) = &mut self.nat {
            for done in nat.release() {
                self.printer.event_nat(
                    &mut self.out,
                    &done.event,
                    &done.names.names(),
                    done.view.as_ref(),
                )?;
            }
        }
        self.out.flush()
    }

    /// At the end: waits (briefly) for the lookups still out, then prints every event left.
    pub(super) async fn finish_nat(&mut self) -> io::Result<()> {
        let Some(nat) = &mut self.nat else {
            return Ok(());
        };
        let deadline = tokio::time::sleep(nat.grace());
        tokio::pin!(deadline);
        while self.nat.as_ref().is_some_and(|nat| nat.outstanding() > 0) {
            tokio::select! {
                () = &mut deadline => break,
                answer = next_answer(&mut self.nat) => self.answer(answer)?,
            }
        }
        if let Some(nat) = &mut self.nat {
            nat.give_up();
        }
        self.release()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::model::EventKind;
    use crate::output::tests::{sample_events, CLOCK};
    use crate::output::OutputFormat;

    fn session(filter: Filter, count: Option<u64>) -> Session<Vec<u8>> {
        Session {
            printer: Printer::new(OutputFormat::Json, CLOCK),
            filter,
            summary: Summary::default(),
            index: None,
            tables: None,
            nat: None,
            remaining: count,
            metrics: None,
            quiet: false,
            history: None,
            clock: CLOCK,
            line: Vec::new(),
            out: Vec::new(),
        }
    }

    fn printed_kinds(session: &Session<Vec<u8>>) -> Vec<String> {
        String::from_utf8(session.out.clone())
            .unwrap()
            .lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["event"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn prints_and_counts_what_passes_the_filter() {
        let filter = Filter {
            kinds: vec![EventKind::New, EventKind::NoDest],
            ..Filter::default()
        };
        let mut session = session(filter, None);
        let mut batch = sample_events();
        assert_eq!(session.handle(&mut batch).unwrap(), Flow::Continue);
        assert!(batch.is_empty(), "the batch is consumed");
        assert_eq!(printed_kinds(&session), ["new", "no_dest", "new"]);
        assert_eq!(session.summary.count(EventKind::New), 2);
        assert_eq!(
            session.summary.count(EventKind::Template),
            0,
            "filtered out"
        );
    }

    #[test]
    fn count_counts_printed_events_and_stops_mid_batch() {
        let filter = Filter {
            kinds: vec![EventKind::Template, EventKind::NoDest, EventKind::Reused],
            ..Filter::default()
        };
        let mut session = session(filter, Some(2));
        assert_eq!(
            session.handle(&mut sample_events()).unwrap(),
            Flow::CountReached
        );
        assert_eq!(printed_kinds(&session), ["template", "reused"]);
        // Whatever arrives after the count is reached is neither printed nor counted.
        assert_eq!(
            session.handle(&mut sample_events()).unwrap(),
            Flow::CountReached
        );
        assert_eq!(printed_kinds(&session), ["template", "reused"]);
        assert_eq!(session.summary.count(EventKind::NoDest), 0);
    }

    #[test]
    fn count_spans_batches() {
        let mut session = session(Filter::default(), Some(7));
        assert_eq!(
            session.handle(&mut sample_events()).unwrap(),
            Flow::Continue
        );
        assert_eq!(
            session.handle(&mut sample_events()).unwrap(),
            Flow::CountReached
        );
        assert_eq!(printed_kinds(&session).len(), 7);
    }

    #[test]
    fn quiet_prints_nothing_and_the_metrics_count_what_the_summary_counts() {
        let filter = Filter {
            kinds: vec![EventKind::New, EventKind::NoDest],
            ..Filter::default()
        };
        let mut session = session(filter, None);
        let (metrics, recorder) = crate::metrics::Metrics::new(true, false);
        session.metrics = Some(recorder);
        session.quiet = true;
        session.begin().unwrap();
        session.handle(&mut sample_events()).unwrap();
        assert!(session.out.is_empty(), "quiet printed something");
        assert_eq!(session.summary.count(EventKind::New), 2);
        let text = metrics.encode();
        let counted: u64 = text
            .lines()
            .filter(|l| l.starts_with("ipvs_trace_connections_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted, 3, "2 new and 1 no_dest pass the filter:\n{text}");
    }

    #[test]
    fn names_resolve_before_filtering_and_reach_output_and_summary() {
        let filter = Filter {
            service: Some("ratel/vpaas-demo-prod".parse().unwrap()),
            ..Filter::default()
        };
        let mut session = session(filter, None);
        let index = crate::output::tests::seed_index();
        session.index = Some(SharedIndex::new(index.into()));
        session.summary = Summary::with_names();
        session.handle(&mut sample_events()).unwrap();
        // The IPv6 reused entry and the no_dest on port 443 are not the Service's.
        assert_eq!(printed_kinds(&session), ["new", "template", "new"]);
        let text = String::from_utf8(session.out.clone()).unwrap();
        assert!(
            text.lines()
                .all(|l| l.contains("\"service\":\"ratel/vpaas-demo-prod:http\"")),
            "{text}"
        );
        let summary = session.summary.render(&Losses::default());
        assert!(
            summary.contains("  TCP ratel/vpaas-demo-prod:http rr  (172.31.42.227:80)\n"),
            "{summary}"
        );
        assert!(summary.contains("unresolved: events=0 "), "{summary}");
    }
}
