//! The async ring-buffer reader.
//!
//! The kernel side commits records without waking anyone while the ring is less than 1/8 full
//! (`ipvs-trace-ebpf/src/emit.rs`): a wakeup per record cost a context switch per connection,
//! which on a node with as many connections as CPU to spare is the tracer's largest cost. So the
//! reader looks into the ring on its own every [`POLL_INTERVAL`], and besides waits on the
//! ring's fd, which becomes readable when the kernel forces a wakeup (the ring filling up, or a
//! kernel that ignores the flags). A record therefore reaches userspace at most
//! [`POLL_INTERVAL`] after it was committed, sooner under load.
//!
//! Readiness is cleared only after the ring was emptied, so a record committed during a drain is
//! not missed. A batch is capped so one flood of records cannot starve signal handling or the
//! output flush; when the cap is hit, the next call continues at once.

use std::{io, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{unix::AsyncFd, Interest},
    time::{Interval, MissedTickBehavior},
};

use super::classify::Classifier;
use super::{decode, Dataplane, Event};

/// Most records taken from the ring in one [`EventReader::read_batch`] call.
const MAX_BATCH: usize = 4096;

/// How often the reader drains the ring without being woken: the longest a record waits in the
/// ring before userspace sees it (unless the ring fills up first, which wakes the reader).
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Reads and decodes [`Event`]s from the eBPF ring buffer.
pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    poll: Interval,
    counts: ReadCounts,
    /// Tells nftables from iptables decisions, and leaves out the dataplanes not asked for.
    classifier: Classifier,
}

/// What the reader took from the ring so far.
#[derive(Clone, Copy, Debug, Default)]
struct ReadCounts {
    /// Records taken, decoded or not: with the kernel's counts of records filtered out and
    /// lost, every decision the probes saw.
    read: u64,
    /// Records that could not be decoded.
    malformed: u64,
}

impl EventReader {
    /// Registers the ring buffer with the tokio reactor and starts the poll timer (needs a
    /// runtime with I/O and time enabled). `dataplanes`: those asked for (`--dataplane`;
    /// empty: every one).
    pub fn new(ring: RingBuf<MapData>, dataplanes: &[Dataplane]) -> io::Result<EventReader> {
        // SAFETY: the fd is owned by the ring's `MapData` (an `OwnedFd`), which lives inside
        // the `AsyncFd` for its whole lifetime and always reports that same fd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)?;
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        // A reader that fell behind drains once and resumes the rhythm, not a burst of ticks.
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(EventReader {
            ring,
            poll,
            counts: ReadCounts::default(),
            classifier: Classifier::new(dataplanes),
        })
    }

    /// Waits until records are available and appends up to a batch of them to `out`.
    ///
    /// Cancel safe: the two waits (the fd's readiness, the timer's tick) are, nothing is taken
    /// from the ring before one of them completes, and the rest is synchronous.
    pub async fn read_batch(&mut self, out: &mut Vec<Event>) -> io::Result<()> {
        loop {
            tokio::select! {
                biased;
                ready = self.ring.readable_mut() => {
                    let mut guard = ready?;
                    let emptied =
                        drain(guard.get_inner_mut(), out, &mut self.counts, &mut self.classifier, MAX_BATCH);
                    if emptied {
                        guard.clear_ready();
                    }
                    return Ok(());
                }
                _ = self.poll.tick() => {}
            }
            let before = out.len();
            let emptied = drain(
                self.ring.get_mut(),
                out,
                &mut self.counts,
                &mut self.classifier,
                MAX_BATCH,
            );
            if !emptied {
                // The cap was hit: the rest is for the next call, without waiting a period.
                self.poll.reset_immediately();
            }
            if out.len() > before || !emptied {
                return Ok(());
            }
        }
    }

    /// Appends everything already in the ring to `out` without waiting (used at shutdown, so
    /// the events produced before the stop are not thrown away).
    pub fn drain_now(&mut self, out: &mut Vec<Event>) {
        drain(
            self.ring.get_mut(),
            out,
            &mut self.counts,
            &mut self.classifier,
            usize::MAX,
        );
    }

    /// Records that could not be decoded so far.
    #[must_use]
    pub fn malformed(&self) -> u64 {
        self.counts.malformed
    }

    /// Records taken from the ring so far, decoded or not.
    #[must_use]
    pub fn read(&self) -> u64 {
        self.counts.read
    }

    /// Decisions read but left out because their dataplane was not asked for (the kernel
    /// cannot tell nftables from iptables: this is where `--dataplane` does).
    #[must_use]
    pub fn filtered(&self) -> u64 {
        self.classifier.filtered()
    }
}

/// Takes up to `limit` records; returns whether the ring was emptied.
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Vec<Event>,
    counts: &mut ReadCounts,
    classifier: &mut Classifier,
    limit: usize,
) -> bool {
    let mut taken = 0;
    while taken < limit {
        let Some(item) = ring.next() else {
            return true;
        };
        taken += 1;
        counts.read += 1;
        match decode(&item) {
            Ok(mut event) => {
                if classifier.classify(&mut event) {
                    out.push(event);
                }
            }
            Err(err) => {
                counts.malformed += 1;
                // The first one is worth a warning (format mismatch between the two halves);
                // repeating it per record would flood the terminal.
                if counts.malformed == 1 {
                    tracing::warn!("malformed record from the kernel: {err}");
                } else {
                    tracing::debug!("malformed record from the kernel: {err}");
                }
            }
        }
    }
    false
}
