//! `ipvs-trace trace`: load the probes, stream events until a stop condition, print a summary.
//!
//! The event loop waits on exactly three things: the ring buffer, the signals and the
//! `--duration` timer. Output goes through a `BufWriter` flushed once per drained batch: live,
//! without a syscall per line. On a stop, whatever the kernel already wrote to the ring is still
//! printed (up to `--count`), then the summary goes to stderr.

use std::future::pending;
use std::io::{self, BufWriter, Write};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::TraceConfig;
use crate::clock::WallClock;
use crate::conntrack::nat::NatStage;
use crate::conntrack::worker::Answer;
use crate::events::{Event, EventReader};
use crate::filter::Filter;
use crate::ipvs::live::{self, LiveTables};
use crate::ipvs::lookup::LiveLookup;
use crate::kube::source::{self, Ambient, Opened};
use crate::kube::{Names, SharedIndex};
use crate::loader::{Layout, LoaderOptions, Tracer};
use crate::metrics::{Exporter, MetricsConfig, Recorder};
use crate::output::{
    summary::{Losses, Summary},
    Printer,
};

/// Output buffer: large enough for a full batch of table lines in a few writes.
const STDOUT_BUFFER: usize = 64 * 1024;

/// Runs `ipvs-trace trace` until a stop condition; the summary is on stderr when it returns
/// `Ok`.
#[expect(
    clippy::too_many_lines,
    reason = "one run read top to bottom: set-up, the event loop, the summary; each step is a call"
)]
pub async fn run(config: TraceConfig) -> anyhow::Result<()> {
    // Captured before anything else: every event is converted with this one offset.
    let clock = WallClock::capture().context("reading the system clocks")?;
    // Installed before loading, so a signal during `--wait` or loading ends the run cleanly
    // instead of killing it with the probes half attached.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // Before the probes: a snapshot that cannot be used is a mistake to fix, not a reason to
    // trace without the names that were asked for. Live watches start now, in the background,
    // so they list while the probes load; they never hold up the trace.
    let names = source::open(
        &config.names,
        &Ambient::detect(),
        config.filter.uses_names(),
    )?;
    let index = names.index().cloned();
    let (exporter, recorder) = start_metrics(config.metrics, &names)?;

    let options = LoaderOptions {
        btf: config.btf.clone(),
        wait: config.wait,
        ring_size: config.ring_size,
        kprobe_target_override: config.kprobe_target_override.clone(),
    };
    let mut tracer = tokio::select! {
        tracer = Tracer::start(&options) => tracer?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    let mut reader = EventReader::new(tracer.take_ring()?)
        .context("registering the ring buffer with the event loop")?;
    // After the probes: ip_vs and its conntrack sysctl are there now, also after `--wait`.
    let nat = config.nat.then(|| start_nat(config.nat_record.as_deref()));
    let tables = match tracer.layout() {
        Layout::Builtin { .. } => tables_for_builtin_layout(),
        Layout::ModuleBtf { .. } => None,
    };

    let mut session = Session {
        printer: if names.index().is_some() {
            Printer::new(config.output, clock).with_names(config.numeric)
        } else {
            Printer::new(config.output, clock)
        },
        filter: config.filter,
        summary: if names.index().is_some() {
            Summary::with_names()
        } else {
            Summary::default()
        },
        index,
        tables,
        nat,
        remaining: config.count,
        metrics: recorder,
        quiet: config.quiet,
        out: BufWriter::with_capacity(STDOUT_BUFFER, io::stdout().lock()),
    };
    session.begin().context("writing to stdout")?;
    exporter.iter().for_each(Exporter::attached);
    // Scripts wait for this line before generating traffic: every probe is attached now.
    notice(&format!(
        "ipvs-trace: tracing ({})",
        tracer.attached().join(", ")
    ));

    let timer = async {
        match config.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => pending().await,
        }
    };
    tokio::pin!(timer);
    let mut loss_tick = exporter.as_ref().map(|_| loss_tick());
    let mut batch = Vec::new();
    let count_reached = loop {
        tokio::select! {
            // Signals first: under a flood of events a Ctrl-C must still be seen at once.
            biased;
            _ = sigint.recv() => break false,
            _ = sigterm.recv() => break false,
            () = &mut timer => break false,
            // Before the ring: ready once a second, and under a flood, when losses happen, it
            // must not wait behind the events.
            () = next_tick(&mut loss_tick) => session.set_losses(&losses(&tracer, &reader)),
            read = reader.read_batch(&mut batch) => {
                read.context("waiting for events from the kernel")?;
                if session.handle(&mut batch).context("writing events to stdout")?
                    == Flow::CountReached
                {
                    break true;
                }
            }
            answer = next_answer(&mut session.nat) => {
                session.answer(answer).context("writing events to stdout")?;
            }
        }
    };
    if !count_reached {
        reader.drain_now(&mut batch);
        session
            .handle(&mut batch)
            .context("writing events to stdout")?;
    }
    session.finish_nat().await.context("writing events")?;

    let losses = losses(&tracer, &reader);
    session.set_losses(&losses);
    session.summary.set_kubernetes_health(names.health_lines());
    add_tables(&mut session.summary, session.tables.as_ref()).await;
    notice(session.summary.render(&losses).trim_end());
    if let Some(nat) = &session.nat {
        notice(&nat.summary_line());
    }
    Ok(())
}

/// The metrics endpoint, bound before the probes load (a port in use fails at once), and the
/// recorder the event loop counts with.
fn start_metrics(
    config: Option<MetricsConfig>,
    names: &Opened,
) -> anyhow::Result<(Option<Exporter>, Option<Recorder>)> {
    let Some(config) = config else {
        return Ok((None, None));
    };
    let (exporter, recorder) = Exporter::start(config, names)?;
    notice(&format!(
        "ipvs-trace: metrics on http://{}/metrics",
        exporter.local_addr()
    ));
    Ok((Some(exporter), Some(recorder)))
}

/// The kernel's drop counters reach the metrics once a second, not a map read per batch.
fn loss_tick() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// What was lost so far: in the kernel (ring full, unreadable) and in decoding.
fn losses(tracer: &Tracer, reader: &EventReader) -> Losses {
    Losses {
        ring_full: counter(tracer.lost_events(), "lost events"),
        unreadable: counter(tracer.read_errors(), "unreadable events"),
        malformed: reader.malformed(),
    }
}

/// The next tick of the metrics' loss copy; never, without metrics.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(tick) => {
            tick.tick().await;
        }
        None => pending().await,
    }
}

/// `--nat`'s stage, after saying why conntrack entries will not be shown, if they will not.
fn start_nat(record: Option<&std::path::Path>) -> NatStage {
    let nat = NatStage::start(record);
    if let Some(reason) = nat.unavailable() {
        nat_notice(&format!(
            "conntrack entries unavailable, showing the IPVS translation only: {reason}"
        ));
    }
    nat
}

/// The next conntrack answer of `--nat`; never, without it.
async fn next_answer(nat: &mut Option<NatStage>) -> Answer {
    match nat {
        Some(nat) => nat.next_answer().await,
        None => pending().await,
    }
}

/// The IPVS tables' part of the summary: what they filled in without module BTF, and the
/// configured side (each backend's weight, the real servers that received nothing) from one read
/// at the end (a few netlink round trips).
async fn add_tables(summary: &mut Summary, filled: Option<&LiveLookup>) {
    if let Some(filled) = filled {
        summary.set_tables_fill(filled.summary_line());
    }
    match tokio::task::spawn_blocking(crate::ipvs::read_tables).await {
        Ok(Ok(tables)) => summary.set_configured(&tables),
        Ok(Err(err)) => tracing::warn!("the summary shows no configured weights: {err}"),
        Err(err) => tracing::warn!("the summary shows no configured weights: {err}"),
    }
}

/// Without module BTF the probes read no scheduler and no weight: the IPVS tables, re-read in
/// the background, give them. If the tables cannot be read the trace goes on without them.
fn tables_for_builtin_layout() -> Option<LiveLookup> {
    match LiveTables::start(live::DEFAULT_INTERVAL) {
        Ok(live) => Some(LiveLookup::new(live)),
        Err(err) => {
            tracing::warn!(
                "scheduler and weights stay null: reading the IPVS tables failed: {err}"
            );
            None
        }
    }
}

/// A kernel drop counter; if it cannot be read, the summary says "unknown" and the reason is
/// logged, rather than failing a trace that otherwise worked.
fn counter(value: anyhow::Result<u64>, what: &str) -> Option<u64> {
    value
        .inspect_err(|err| tracing::warn!("cannot read the count of {what}: {err:#}"))
        .ok()
}

/// A line on stderr. A closed stderr is no reason to fail (or to panic, as `eprintln!` would):
/// the events on stdout are what matters.
fn notice(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Whether to keep reading after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// `--count` events have been printed.
    CountReached,
}

/// Filters, prints and counts events.
struct Session<W: Write> {
    printer: Printer,
    filter: Filter,
    summary: Summary,
    /// Kubernetes names, when a source was given.
    index: Option<SharedIndex>,
    /// Scheduler and weights from the IPVS tables, when the probes cannot read them.
    tables: Option<LiveLookup>,
    /// `--nat`: events wait here, in order, for their conntrack lookups.
    nat: Option<NatStage>,
    /// Events still to print before `--count` is reached.
    remaining: Option<u64>,
    /// `--metrics-addr`, `serve`: counts what the summary counts.
    metrics: Option<Recorder>,
    /// `serve`: no event is printed.
    quiet: bool,
    out: W,
}

impl<W: Write> Session<W> {
    /// What precedes the events (the table header), flushed so it shows before the first event.
    fn begin(&mut self) -> io::Result<()> {
        if self.quiet {
            return Ok(());
        }
        self.printer.begin(&mut self.out)?;
        self.out.flush()
    }

    /// Prints the events of `batch` that pass the filters (up to the count), then flushes: one
    /// write per batch keeps output live without a syscall per line.
    fn handle(&mut self, batch: &mut Vec<Event>) -> io::Result<Flow> {
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
            // A read lock per event, held for a few hash probes: a writer (the watches) waits
            // at most that long, and the event loop at most one `Change`.
            let names = match &self.index {
                Some(index) => Names::resolve_shared(index, &event),
                None => Names::default(),
            };
            if !self.filter.matches(&event, &names) {
                continue;
            }
            self.summary.record(&event, &names);
            if let Some(metrics) = &mut self.metrics {
                metrics.record(&event, &names);
            }
            if let Some(remaining) = &mut self.remaining {
                *remaining -= 1;
            }
            match &mut self.nat {
                Some(nat) => nat.push(event, names),
                None if self.quiet => {}
                None => self.printer.event(&mut self.out, &event, &names)?,
            }
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

    /// The metrics' copy of the drop counters, brought up to these totals.
    fn set_losses(&mut self, losses: &Losses) {
        if let Some(metrics) = &mut self.metrics {
            metrics.set_losses(losses);
        }
    }

    /// Files a conntrack answer and prints what it completed.
    fn answer(&mut self, answer: Answer) -> io::Result<()> {
        if let Some(message) = self.nat.as_mut().and_then(|nat| nat.answer(answer)) {
            nat_notice(&message);
        }
        self.release()
    }

    /// Prints the `--nat` events that are complete, in order, and flushes.
    fn release(&mut self) -> io::Result<()> {
        if let Some(nat) = &mut self.nat {
            for done in nat.release() {
                self.printer.event_nat(
                    &mut self.out,
                    &done.event,
                    &done.names,
                    done.view.as_ref(),
                )?;
            }
        }
        self.out.flush()
    }

    /// At the end: waits (briefly) for the lookups still out, then prints every event left.
    async fn finish_nat(&mut self) -> io::Result<()> {
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

fn nat_notice(message: &str) {
    notice(&format!("ipvs-trace: --nat: {message}"));
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
