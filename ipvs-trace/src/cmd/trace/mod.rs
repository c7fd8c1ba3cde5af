//! `ipvs-trace trace`: load the probes, stream events until a stop condition, print a summary.
//!
//! The event loop waits on exactly three things: the probes (their ring buffer, and whether
//! ip_vs is still the module they were attached to: [`reattach`]), the signals and the
//! `--duration` timer. Output goes through a `BufWriter` flushed once per drained batch: live,
//! without a syscall per line. On a stop, whatever the kernel already wrote to the ring is still
//! printed (up to `--count`), then the summary goes to stderr.

mod config;
mod named;
mod reattach;
mod session;

use std::future::pending;
use std::io::{self, BufWriter, Write};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use reattach::{Next, Probes};
use session::{Flow, Session};

pub use config::TraceConfig;

use super::{notice, tables_for_builtin_layout};
use crate::api::ApiServer;
use crate::clock::WallClock;
use crate::conntrack::nat::NatStage;
use crate::conntrack::worker::Answer;
use crate::history::recorder::HistoryRecorder;
use crate::history::HistoryConfig;
use crate::ipvs::lookup::LiveLookup;
use crate::kube::source::{self, Ambient, Opened};
use crate::loader::{Layout, LoaderOptions, Tracer};
use crate::metrics::{Exporter, MetricsConfig, Recorder};
use crate::output::{summary::Summary, Printer};
use named::NamedFilter;

/// Output buffer: large enough for a full batch of table lines in a few writes.
const STDOUT_BUFFER: usize = 64 * 1024;

/// Runs `ipvs-trace trace` until a stop condition; the summary is on stderr when it returns
/// `Ok`.
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
    // Before the probes too: a history dir or API socket that cannot be used is a mistake to
    // fix before tracing starts.
    let (history, _api) = match &config.history {
        Some(history) => start_history(history, exporter.as_ref())?,
        None => (None, None),
    };

    let options = loader_options(&config);
    let tracer = tokio::select! {
        tracer = Tracer::start(&options) => tracer?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    let mut probes = Probes::new(tracer, options)?;
    // After the probes: ip_vs and its conntrack sysctl are there now, also after `--wait`.
    let nat = config.nat.then(|| start_nat(config.nat_record.as_deref()));
    let tables = match probes.layout() {
        Some(Layout::Builtin { .. }) => {
            tables_for_builtin_layout("scheduler and weights stay null")
        }
        Some(Layout::ModuleBtf { .. }) | None => None,
    };

    let mut name_filter = NamedFilter::new(&config.filter, &names);
    let mut session = Session {
        printer: printer(&config, clock, index.is_some()),
        summary: summary_for(index.is_some()),
        filter: config.filter,
        index,
        tables,
        nat,
        remaining: config.count,
        metrics: recorder,
        quiet: config.quiet,
        history,
        clock,
        line: Vec::with_capacity(1024),
        out: BufWriter::with_capacity(STDOUT_BUFFER, io::stdout().lock()),
    };
    session.begin().context("writing to stdout")?;
    exporter.iter().for_each(Exporter::attached);
    // Scripts wait for this line before generating traffic: every probe is attached now.
    notice(&format!(
        "ipvs-trace: tracing ({})",
        probes.attachment().tracing_list()
    ));

    let timer = elapsed(config.duration);
    tokio::pin!(timer);
    let mut metrics_tick = exporter.as_ref().map(|_| metrics_tick());
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
            () = next_tick(&mut metrics_tick) => session.tick_metrics(&probes.losses()),
            () = named::next(&mut name_filter) => {
                if let Some(name_filter) = &mut name_filter {
                    name_filter.refresh(&mut probes);
                }
            }
            next = probes.next(&mut batch) => {
                let next = next.context("waiting for events from the kernel")?;
                report_probes(exporter.as_ref(), next);
                if session.handle(&mut batch).context("writing events to stdout")?
                    == Flow::CountReached
                {
                    break true;
                }
                if next == Next::Ended {
                    break false;
                }
            }
            answer = next_answer(&mut session.nat) => {
                session.answer(answer).context("writing events to stdout")?;
            }
        }
    };
    if !count_reached {
        probes.drain_now(&mut batch);
        session
            .handle(&mut batch)
            .context("writing events to stdout")?;
    }
    session.finish_nat().await.context("writing events")?;

    session
        .summary
        .set_probes(probes.attachment().summary_line());
    summarize(&mut session, &probes, &names).await;
    Ok(())
}

/// How to load the probes: only those of the event kinds asked for (`--event`), filtering
/// in the kernel what the filter allows there.
fn loader_options(config: &TraceConfig) -> LoaderOptions {
    LoaderOptions {
        btf: config.btf.clone(),
        wait: config.wait,
        ring_size: config.ring_size,
        attach: config.attach,
        dataplanes: config.dataplanes.clone(),
        kinds: config.filter.kinds.clone(),
        filter: Some(config.filter.kernel()),
        named_filter: config.filter.uses_names(),
        kprobe_target_override: config.kprobe_target_override.clone(),
    }
}

/// Ends after `--duration`; never without it.
async fn elapsed(duration: Option<std::time::Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => pending().await,
    }
}

/// `/healthz` and the re-attachment counter follow the probes through an ip_vs reload.
fn report_probes(exporter: Option<&Exporter>, next: Next) {
    match (exporter, next) {
        (Some(exporter), Next::Detached) => exporter.detached(),
        (Some(exporter), Next::Reattached) => exporter.reattached(),
        _ => {}
    }
}

/// The summary, keyed by names when a Kubernetes source is in use.
fn summary_for(names: bool) -> Summary {
    if names {
        Summary::with_names()
    } else {
        Summary::default()
    }
}

/// The table or JSON printer, with names when a Kubernetes source is in use.
fn printer(config: &TraceConfig, clock: WallClock, names: bool) -> Printer {
    let printer = Printer::new(config.output, clock);
    if names {
        printer.with_names(config.numeric)
    } else {
        printer
    }
}

/// The summary on stderr, with everything known at the end: what was attached, losses, the
/// watches' health, the IPVS tables, `--nat`'s lookups.
async fn summarize<W: Write>(session: &mut Session<W>, probes: &Probes, names: &Opened) {
    let losses = &probes.losses();
    session
        .summary
        .set_probes(probes.attachment().summary_line());
    if let Some(history) = session.history.take() {
        // The last block written and synced, so a restart finds every decision recorded.
        notice(&history.finish());
    }
    session.tick_metrics(losses);
    session.summary.set_kubernetes_health(names.health_lines());
    add_tables(&mut session.summary, session.tables.as_ref()).await;
    notice(session.summary.render(losses).trim_end());
    if let Some(nat) = &session.nat {
        notice(&nat.summary_line());
    }
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

/// The history's recorder and the query API answering from it, its counters in the metrics;
/// says where both are.
fn start_history(
    config: &HistoryConfig,
    exporter: Option<&Exporter>,
) -> anyhow::Result<(Option<HistoryRecorder>, Option<ApiServer>)> {
    let (recorder, store) = HistoryRecorder::start(config.store.clone())
        .context("cannot keep the decision history (--history-dir)")?;
    let api = ApiServer::start(&config.api, store)?;
    let disk = match &config.store.dir {
        Some(dir) => format!(" and in {}", dir.display()),
        None => String::new(),
    };
    notice(&format!(
        "ipvs-trace: recording the last {} decisions in memory{disk}; queries on {}",
        config.store.memory_capacity,
        api.describe()
    ));
    if let Some(exporter) = exporter {
        exporter.count_history(recorder.counters());
    }
    Ok((Some(recorder), Some(api)))
}

/// The metrics second: the kernel's drop counters (a map read per second, not per batch) and
/// the observed shares' window advance on it.
fn metrics_tick() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The next metrics second; never, without metrics.
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
pub(super) async fn next_answer(nat: &mut Option<NatStage>) -> Answer {
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
        // A node of the netfilter dataplanes: there are no weights to show.
        Ok(Err(crate::ipvs::IpvsError::NotLoaded)) => {}
        Ok(Err(err)) => tracing::warn!("the summary shows no configured weights: {err}"),
        Err(err) => tracing::warn!("the summary shows no configured weights: {err}"),
    }
}

pub(super) fn nat_notice(message: &str) {
    notice(&format!("ipvs-trace: --nat: {message}"));
}
