//! `ipvs-trace balance`: count each virtual service's new connections per backend over a
//! window and judge them against the configured scheduler (see [`crate::balance`]).
//!
//! The timeline, and why:
//! 1. load the probes (trace's [`Tracer`] and [`EventReader`]) and start the live tables;
//! 2. **lead**: read events for [`STATS_SETTLE`] before opening the window. The kernel folds
//!    its per-CPU connection counters into what netlink reports only every 2 s, so the
//!    baseline read at the opening may lack the last 2 s of connections: the lead's events
//!    are the ones that may or may not be in it, and they are all traced;
//! 3. **window**: from the baseline read until `--duration` or Ctrl-C;
//! 4. **settle**: after the close, keep reading events for [`STATS_SETTLE`], then read the
//!    counters again: now they include everything up to the close. The cross-check compares
//!    each backend's growth with its `new` events in the window, within the edge events.
//!
//! A Ctrl-C during the settle ends it: the reports come without the cross-check.
//!
//! kube-proxy's netfilter rules are read at the opening and the closing too, beside the event
//! loop (a large ruleset must not hold up the ring): their endpoints' probabilities are what
//! a random selection is judged against, and an endpoint gone from them was removed.

use std::collections::BTreeMap;
use std::future::{pending, Future};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use super::notice;
use crate::balance::render::{self, Document, WindowInfo};
use crate::balance::{self, Context, RuleShares, Rules, Selection, Window};
use crate::clock::{monotonic_now_ns, WallClock};
use crate::events::{EventReader, Proto};
use crate::ipvs::live::{LiveTables, TableChange, DEFAULT_INTERVAL};
use crate::ipvs::Tables;
use crate::kube::source::{self, Ambient, NameSource};
use crate::kube::SharedIndex;
use crate::loader::{LoaderOptions, Tracer};
use crate::netfilter::NetfilterRules;
use crate::output::OutputFormat;

/// How long the kernel's counters need to include every connection made before a moment
/// (the estimator folds them every 2 s; 3 s leaves a margin for a busy machine).
pub const STATS_SETTLE: Duration = Duration::from_secs(3);

/// Everything `balance` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct BalanceConfig {
    pub output: OutputFormat,
    /// Window length; `None`: until Ctrl-C.
    pub duration: Option<Duration>,
    /// Exit with a status that says whether the services are balanced.
    pub check: bool,
    /// Largest relative error that still counts as balanced.
    pub tolerance: f64,
    pub selection: Selection,
    pub wait: bool,
    pub btf: Option<PathBuf>,
    pub ring_size: Option<u32>,
    pub attach: crate::loader::probes::AttachMode,
    /// `--dataplane`: empty, every one.
    pub dataplanes: Vec<crate::dataplane::Dataplane>,
    pub names: NameSource,
}

/// SIGINT or SIGTERM.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Runs `ipvs-trace balance`; returns the exit status (`--check`'s, or 0).
pub async fn run(config: BalanceConfig) -> anyhow::Result<u8> {
    let clock = WallClock::capture().context("reading the system clocks")?;
    let mut signals = Signals::install()?;
    let names = source::open(
        &config.names,
        &Ambient::detect(),
        config.selection.uses_names(),
    )?;
    let options = LoaderOptions {
        btf: config.btf.clone(),
        wait: config.wait,
        ring_size: config.ring_size,
        attach: config.attach,
        dataplanes: config.dataplanes.clone(),
        // Every kind (their columns need new, reused and no_dest), every decision.
        ..LoaderOptions::default()
    };
    let mut tracer = tokio::select! {
        tracer = Tracer::start(&options) => tracer?,
        () = signals.recv() => return Ok(0),
    };
    let dataplanes = tracer.dataplanes().to_vec();
    let mut reader = EventReader::new(tracer.take_ring()?, &dataplanes)
        .context("registering the ring buffer with the event loop")?;
    // A node of kube-proxy's netfilter modes may have no ip_vs: its tables are then empty.
    let live = LiveTables::start_or_empty(DEFAULT_INTERVAL).context("reading the IPVS tables")?;
    notice(&format!(
        "ipvs-trace: tracing ({}); the window opens in {} s, once the kernel's counters have \
         settled",
        tracer.attachment().tracing_list(),
        STATS_SETTLE.as_secs()
    ));

    let mut window = Window::default();
    let mut pump = Pump {
        reader: &mut reader,
        window: &mut window,
        batch: Vec::new(),
    };
    if !pump
        .until(tokio::time::sleep(STATS_SETTLE), &mut signals)
        .await?
    {
        notice("ipvs-trace: stopped before the window opened");
        return Ok(0);
    }
    let rules_start = RulesRead::start(&config);
    let start_tables = live.refresh().context("reading the IPVS tables")?;
    let start_ns = monotonic_now_ns().context("reading the monotonic clock")?;
    pump.window.open(start_ns);
    // Changes before the opening are in the start tables already.
    drop(live.drain_changes());
    notice("ipvs-trace: balance window open");

    let timer = async {
        match config.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => pending().await,
        }
    };
    pump.until(timer, &mut signals).await?;
    let end_ns = monotonic_now_ns().context("reading the monotonic clock")?;
    pump.window.close(end_ns);
    let end_tables = live.refresh().context("reading the IPVS tables")?;
    let rules_end = RulesRead::start(&config);
    let (changes, changes_dropped) = live.drain_changes();
    notice(&format!(
        "ipvs-trace: balance window closed; reading the kernel's counters in {} s (Ctrl-C: \
         report without them)",
        STATS_SETTLE.as_secs()
    ));
    let settled = if pump
        .until(tokio::time::sleep(STATS_SETTLE), &mut signals)
        .await?
    {
        Some(live.refresh().context("reading the IPVS tables")?)
    } else {
        None
    };
    pump.reader.drain_now(&mut pump.batch);
    pump.record_batch();
    // Both reads or none: one edge alone cannot tell an endpoint that came or went. (When the
    // first failed the second's result is dropped, not said twice.)
    let rules = match rules_start.finish().await {
        Some(start) => rules_end.finish().await.map(|end| Rules { start, end }),
        None => None,
    };

    // An unreadable kernel counter (logged) counts as none lost here.
    let losses = tracer.losses(&reader);
    let events_lost =
        losses.ring_full.unwrap_or(0) + losses.unreadable.unwrap_or(0) + losses.malformed;
    let seen = Seen {
        window,
        start_ns,
        end_ns,
        start: start_tables,
        end: end_tables,
        settled,
        changes,
        changes_dropped,
        events_lost,
        rules,
    };
    let status = report(&seen, &config, names.index(), clock)?;
    Ok(if config.check { status } else { 0 })
}

/// What a run observed, for the report.
struct Seen {
    window: Window,
    start_ns: u64,
    end_ns: u64,
    start: Arc<Tables>,
    end: Arc<Tables>,
    settled: Option<Arc<Tables>>,
    changes: Vec<TableChange>,
    changes_dropped: u64,
    events_lost: u64,
    /// kube-proxy's netfilter rules at the opening and the closing (`None`: not wanted, or
    /// not read).
    rules: Option<Rules>,
}

/// One read of kube-proxy's netfilter rules, on a blocking thread while events keep coming.
struct RulesRead(Option<JoinHandle<anyhow::Result<NetfilterRules>>>);

impl RulesRead {
    /// Starts a read, unless `--dataplane` leaves out both netfilter modes.
    fn start(config: &BalanceConfig) -> RulesRead {
        let wanted =
            config.dataplanes.is_empty() || config.dataplanes.iter().any(|d| d.is_netfilter());
        RulesRead(wanted.then(|| tokio::task::spawn_blocking(NetfilterRules::read)))
    }

    /// The random selections' shares by (protocol, address); `None`, with a notice, when
    /// they could not be read: random selections are then judged against equal shares.
    async fn finish(self) -> Option<BTreeMap<(Proto, SocketAddr), RuleShares>> {
        let read = match self.0?.await {
            Ok(read) => read,
            Err(joined) => Err(anyhow::anyhow!("the reading thread failed: {joined}")),
        };
        match read {
            Ok(rules) => Some(Rules::shares_of(rules.services())),
            Err(e) => {
                notice(&format!(
                    "ipvs-trace: kube-proxy's netfilter rules could not be read ({e:#}): random \
                     selections are judged against equal shares of the endpoints seen"
                ));
                None
            }
        }
    }
}

/// Analyses and prints; returns the `--check` status.
fn report(
    seen: &Seen,
    config: &BalanceConfig,
    names: Option<&SharedIndex>,
    clock: WallClock,
) -> anyhow::Result<u8> {
    let index = names.map(|shared| shared.read().unwrap_or_else(PoisonError::into_inner));
    let reports = balance::analyse(
        &seen.window,
        &Context {
            start: &seen.start,
            end: &seen.end,
            settled: seen.settled.as_deref(),
            changes: &seen.changes,
            index: index.as_deref(),
            selection: &config.selection,
            tolerance: config.tolerance,
            events_lost: seen.events_lost,
            rules: seen.rules.as_ref(),
            clock,
        },
    );
    drop(index);
    let document = Document {
        window: WindowInfo {
            start: clock.rfc3339(seen.start_ns),
            end: clock.rfc3339(seen.end_ns),
            seconds: Duration::from_nanos(seen.end_ns.saturating_sub(seen.start_ns)).as_secs_f64(),
        },
        tolerance: config.tolerance,
        settled: seen.settled.is_some(),
        events_lost: seen.events_lost,
        table_changes_dropped: seen.changes_dropped,
        check_status: balance::check_status(&reports),
        services: &reports,
    };
    print(&document, config.output).context("writing to stdout")?;
    Ok(document.check_status)
}

fn print(document: &Document<'_>, format: OutputFormat) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        OutputFormat::Table => out.write_all(render::table(document).as_bytes())?,
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, document)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

/// Moves events from the ring into the window's counts.
struct Pump<'a> {
    reader: &'a mut EventReader,
    window: &'a mut Window,
    batch: Vec<crate::events::Event>,
}

impl Pump<'_> {
    /// Counts events until `stop` completes (true) or a signal arrives (false).
    async fn until(
        &mut self,
        stop: impl Future<Output = ()>,
        signals: &mut Signals,
    ) -> anyhow::Result<bool> {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                // Signals first: under a flood of events a Ctrl-C must still be seen at once.
                biased;
                () = signals.recv() => return Ok(false),
                () = &mut stop => return Ok(true),
                read = self.reader.read_batch(&mut self.batch) => {
                    read.context("waiting for events from the kernel")?;
                    self.record_batch();
                }
            }
        }
    }

    fn record_batch(&mut self) {
        for event in self.batch.drain(..) {
            self.window.record(&event);
        }
    }
}
