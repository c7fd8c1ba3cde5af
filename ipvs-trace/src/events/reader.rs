//! The async ring-buffer reader.
//!
//! The ring buffer's fd becomes readable when the kernel commits a record while the consumer is
//! caught up. The reader waits for that, drains the ring, then clears readiness: clearing only
//! after the ring is empty is what keeps a record committed during the drain from being missed.
//! A batch is capped so one flood of records cannot starve signal handling or the output flush;
//! when the cap is hit, readiness is left set and the next call continues at once.

use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};

use super::{decode, Event};

/// Most records taken from the ring in one [`EventReader::read_batch`] call.
const MAX_BATCH: usize = 4096;

/// Reads and decodes [`Event`]s from the eBPF ring buffer.
pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
    malformed: u64,
}

impl EventReader {
    /// Registers the ring buffer with the tokio reactor (needs a runtime with I/O enabled).
    pub fn new(ring: RingBuf<MapData>) -> io::Result<EventReader> {
        // SAFETY: the fd is owned by the ring's `MapData` (an `OwnedFd`), which lives inside
        // the `AsyncFd` for its whole lifetime and always reports that same fd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)?;
        Ok(EventReader { ring, malformed: 0 })
    }

    /// Waits until records are available and appends up to a batch of them to `out`.
    ///
    /// Cancel safe: nothing is taken from the ring before the wait completes, and the rest is
    /// synchronous.
    pub async fn read_batch(&mut self, out: &mut Vec<Event>) -> io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        let emptied = drain(guard.get_inner_mut(), out, &mut self.malformed, MAX_BATCH);
        if emptied {
            guard.clear_ready();
        }
        Ok(())
    }

    /// Appends everything already in the ring to `out` without waiting (used at shutdown, so
    /// the events produced before the stop are not thrown away).
    pub fn drain_now(&mut self, out: &mut Vec<Event>) {
        drain(self.ring.get_mut(), out, &mut self.malformed, usize::MAX);
    }

    /// Records that could not be decoded so far.
    #[must_use]
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

/// Takes up to `limit` records; returns whether the ring was emptied.
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Vec<Event>,
    malformed: &mut u64,
    limit: usize,
) -> bool {
    let mut taken = 0;
    while taken < limit {
        let Some(item) = ring.next() else {
            return true;
        };
        taken += 1;
        match decode(&item) {
            Ok(event) => out.push(event),
            Err(err) => {
                *malformed += 1;
                // The first one is worth a warning (format mismatch between the two halves);
                // repeating it per record would flood the terminal.
                if *malformed == 1 {
                    tracing::warn!("malformed record from the kernel: {err}");
                } else {
                    tracing::debug!("malformed record from the kernel: {err}");
                }
            }
        }
    }
    false
}
