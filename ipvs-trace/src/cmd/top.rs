//! `ipvs-trace top`: load the probes as `trace` does, count every event into the
//! [`Aggregator`], and once per interval show a frame: drawn on the terminal, or written as
//! plain text with `--batch`.
//!
//! The loop waits on the signals, the keys (live view), the interval timer and the ring
//! buffer, in that order of priority: under a flood of events a `q` or a frame must still come
//! on time. At each tick the ring is drained first, so a frame counts everything the kernel
//! had written by then.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::{notice, tables_for_builtin_layout};
use crate::clock::{monotonic_now_ns, WallClock};
use crate::events::{Event, EventReader};
use crate::filter::Filter;
use crate::ipvs::lookup::LiveLookup;
use crate::kube::source::{self, Ambient, NameSource};
use crate::kube::{self, Names, SharedIndex};
use crate::loader::{Layout, LoaderOptions, Tracer};
use crate::top::model::{Aggregator, Frame};
use crate::top::terminal::{self, Input, Screen};
use crate::top::view::{self, Header};

/// Everything `top` needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopConfig {
    /// Plain-text frames on stdout instead of the live view.
    pub batch: bool,
    pub interval: Duration,
    /// Stop after this many frames.
    pub iterations: Option<u64>,
    pub filter: Filter,
    pub wait: bool,
    pub btf: Option<PathBuf>,
    pub ring_size: Option<u32>,
    pub attach: crate::loader::probes::AttachMode,
    /// `--dataplane`: empty, every one.
    pub dataplanes: Vec<crate::dataplane::Dataplane>,
    pub names: NameSource,
}

/// Where frames go.
enum Output {
    Batch(io::Stdout),
    Live(Box<Live>),
}

/// The live view's state.
struct Live {
    screen: Screen,
    input: mpsc::UnboundedReceiver<Input>,
    /// The last frame, drawn again when the terminal is resized.
    last: Option<Frame>,
}

/// Runs `ipvs-trace top` until `--iterations`, q, Ctrl-C or SIGTERM.
pub async fn run(config: TopConfig) -> anyhow::Result<()> {
    let clock = WallClock::capture().context("reading the system clocks")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let names = source::open(
        &config.names,
        &Ambient::detect(),
        config.filter.uses_names(),
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
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    let dataplanes = tracer.dataplanes().to_vec();
    let mut reader = EventReader::new(tracer.take_ring()?, &dataplanes)
        .context("registering the ring buffer with the event loop")?;
    let mut counter = Counter {
        filter: config.filter.clone(),
        index: names.index().cloned(),
        tables: match tracer.layout() {
            Layout::Builtin { .. } => tables_for_builtin_layout("the scheduler column stays '-'"),
            Layout::ModuleBtf { .. } => None,
        },
        aggregator: Aggregator::default(),
    };
    // Before the screen is taken, so it stays readable; scripts wait for it.
    notice(&format!(
        "ipvs-trace: tracing ({})",
        tracer.attachment().tracing_list()
    ));
    let mut output = if config.batch {
        Output::Batch(io::stdout())
    } else {
        let screen = Screen::enter()
            .context("taking over the terminal for the live view (use --batch for plain text)")?;
        Output::Live(Box::new(Live {
            screen,
            input: terminal::spawn_input(),
            last: None,
        }))
    };

    let mut tick = tokio::time::interval_at(Instant::now() + config.interval, config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    let mut frames = 0;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            input = next_input(&mut output) => match input {
                Some(Input::Redraw) => output.redraw(config.interval, clock)?,
                Some(Input::Failed(err)) => anyhow::bail!(
                    "reading the keyboard failed: {err} (use --batch where there is no terminal)"
                ),
                Some(Input::Quit) | None => break,
            },
            now = tick.tick() => {
                reader.drain_now(&mut batch);
                counter.count(&mut batch);
                let frame = counter
                    .aggregator
                    .tick(now - last_tick, &tracer.losses(&reader));
                last_tick = now;
                output.show(frame, config.interval, clock)?;
                frames += 1;
                if config.iterations == Some(frames) {
                    break;
                }
            }
            read = reader.read_batch(&mut batch) => {
                read.context("waiting for events from the kernel")?;
                counter.count(&mut batch);
            }
        }
    }
    // The terminal first: the note below belongs on the normal screen.
    drop(output);
    let lost = tracer.losses(&reader);
    notice(&format!(
        "ipvs-trace: top stopped after {frames} frames; lost: {} (ring buffer full), {} \
         unreadable, {} malformed",
        known(lost.ring_full),
        known(lost.unreadable),
        lost.malformed
    ));
    Ok(())
}

/// Filters, names and counts events.
struct Counter {
    filter: Filter,
    index: Option<SharedIndex>,
    /// Scheduler from the IPVS tables when the probes cannot read it (no module BTF).
    tables: Option<LiveLookup>,
    aggregator: Aggregator,
}

impl Counter {
    fn count(&mut self, batch: &mut Vec<Event>) {
        if let Some(tables) = &mut self.tables {
            tables.catch_up();
        }
        for mut event in batch.drain(..) {
            if let Some(tables) = &mut self.tables {
                tables.fill(&mut event);
            }
            let index = self.index.as_ref().map(kube::read);
            let names = index
                .as_deref()
                .map_or(Names::NONE, |index| index.names(&event));
            if self.filter.matches(&event, &names) {
                self.aggregator.record(&event, &names);
            }
        }
    }
}

impl Output {
    fn show(&mut self, frame: Frame, interval: Duration, clock: WallClock) -> anyhow::Result<()> {
        match self {
            Output::Batch(out) => {
                let header = Header {
                    time: clock.rfc3339(now_ns()?),
                    interval,
                };
                let mut out = out.lock();
                out.write_all(view::text(&frame, &header).as_bytes())
                    .and_then(|()| out.flush())
                    .context("writing to stdout")?;
            }
            Output::Live(live) => {
                live.last = Some(frame);
                self.redraw(interval, clock)?;
            }
        }
        Ok(())
    }

    fn redraw(&mut self, interval: Duration, clock: WallClock) -> anyhow::Result<()> {
        let Output::Live(live) = self else {
            return Ok(());
        };
        let Live {
            screen,
            last: Some(frame),
            ..
        } = &mut **live
        else {
            return Ok(());
        };
        let header = Header {
            time: clock.time_of_day(now_ns()?),
            interval,
        };
        screen
            .terminal
            .draw(|out| view::draw(out, frame, &header))
            .context("drawing on the terminal")?;
        Ok(())
    }
}

/// The next key of the live view; never, in batch mode.
async fn next_input(output: &mut Output) -> Option<Input> {
    match output {
        Output::Live(live) => live.input.recv().await,
        Output::Batch(_) => std::future::pending().await,
    }
}

fn now_ns() -> anyhow::Result<u64> {
    monotonic_now_ns().context("reading the monotonic clock")
}

fn known(value: Option<u64>) -> String {
    value.map_or_else(|| "unknown".into(), |n| n.to_string())
}
