//! Recording off the event loop: [`HistoryRecorder::record`] copies a decision into a batch
//! (the event and a few `Arc` clones of its names), [`HistoryRecorder::flush`] hands the batch
//! to a worker thread behind a queue bounded by decisions in flight, and the worker appends to
//! the memory store. Each block it seals goes on to a second thread, the disk writer, behind a
//! queue of [`DISK_QUEUE_BLOCKS`]: encoding with the segment's dictionary, writing and `fsync`
//! are about a third of the work a decision costs, and a slow disk (an `fsync` stalled for a
//! tenth of a second) must not make the memory history drop. A batch that does not fit is
//! dropped and counted; a block the disk writer cannot take, or the disk refuses, stays in
//! memory and is counted. Tracing never waits for the store.
//!
//! [`Store`] answers queries over memory and disk, each decision once: a decision is known by
//! its run id and sequence number, and the disk blocks of this run that memory already covered
//! are not read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::block::{query_keys, Collector};
use super::memory::{Cursor, Memory, Sealed};
use super::query::MAX_LIMIT;
use super::segment::{Covered, DirScan, Limits, SegmentWriter};
use super::{Decision, Query};
use crate::events::Event;
use crate::kube::Names;

/// Decisions kept in memory by default: about 80 MB (heap; 68 MB of RSS growth) with names
/// spread over a 100k-pod cluster (`cargo xtask bench --only history`), so serve with its
/// ~170 MiB name index and a full history stays well inside a 512 MiB limit.
pub const DEFAULT_MEMORY_CAPACITY: usize = 1_000_000;
/// Bytes of segments kept in `--history-dir` by default: some 20 million decisions.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Age of the newest decision of a segment after which it is deleted, by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_hours(7 * 24);
/// Decisions handed to the worker and not yet stored, at most.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// A block being filled is sealed (and written to disk) once this old: a crash loses at most
/// about this much.
const SEAL_AFTER: Duration = Duration::from_secs(1);
/// How often the worker looks at the clock when idle.
const TICK: Duration = Duration::from_millis(250);
/// How often written segments are made durable.
const SYNC_EVERY: Duration = Duration::from_secs(5);
/// How often retention runs.
const RETAIN_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for the worker at shutdown.
const FINISH_WAIT: Duration = Duration::from_secs(10);
/// Sealed blocks waiting for the disk writer, at most (up to 65,536 decisions, as many as the
/// worker's own queue): beyond, a block stays in memory only, counted as `disk`.
pub const DISK_QUEUE_BLOCKS: usize = 16;
/// A batch is handed over at this size even without a flush.
const MAX_BATCH: usize = 4096;
/// Sealed blocks a query reads per hold of the memory lock.
const BLOCKS_PER_LOCK: usize = 8;

/// What `serve --history-*` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderConfig {
    /// Decisions kept in memory (`--history-size`).
    pub memory_capacity: usize,
    /// `--history-dir`: also on disk, kept across restarts.
    pub dir: Option<PathBuf>,
    /// `--history-max-bytes`: segments beyond this are deleted, oldest first.
    pub max_bytes: u64,
    /// `--history-max-age`: segments whose newest decision is older are deleted.
    pub max_age: Duration,
    /// Decisions in flight to the worker at most; a batch beyond is dropped and counted.
    pub queue_capacity: usize,
}

impl Default for RecorderConfig {
    fn default() -> RecorderConfig {
        RecorderConfig {
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            dir: None,
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: DEFAULT_MAX_AGE,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// The recorder's counters, for `/metrics` and the summary.
#[derive(Debug, Default)]
pub struct HistoryCounters {
    /// Decisions stored in memory.
    pub recorded: AtomicU64,
    /// Decisions dropped because the queue to the worker was full.
    pub dropped_queue_full: AtomicU64,
    /// Decisions in memory that could not be written to disk (write error, disk full, or the
    /// disk writer [`DISK_QUEUE_BLOCKS`] behind).
    pub dropped_disk: AtomicU64,
    /// Decisions written to disk.
    pub written: AtomicU64,
    /// Decisions in memory now.
    pub memory_decisions: AtomicU64,
    /// Bytes of segments in the history directory now.
    pub disk_bytes: AtomicU64,
    /// Segments in the history directory now.
    pub segments: AtomicU64,
}

impl HistoryCounters {
    /// `history: recorded=N memory=N written=N (B bytes in S segments) dropped: queue_full=N disk=N`
    #[must_use]
    pub fn summary_line(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        format!(
            "history: recorded={} memory={} written={} ({} bytes in {} segments)   dropped: queue_full={} disk={}",
            get(&self.recorded),
            get(&self.memory_decisions),
            get(&self.written),
            get(&self.disk_bytes),
            get(&self.segments),
            get(&self.dropped_queue_full),
            get(&self.dropped_disk),
        )
    }

    /// Every decision not stored in full, by reason (`queue_full`, `disk`).
    #[must_use]
    pub fn dropped(&self) -> [(&'static str, u64); 2] {
        [
            (
                "queue_full",
                self.dropped_queue_full.load(Ordering::Relaxed),
            ),
            ("disk", self.dropped_disk.load(Ordering::Relaxed)),
        ]
    }
}

/// An answer to a query.
#[derive(Debug, Default)]
pub struct Answer {
    /// The matching decisions, oldest first (by time; ties in recording order).
    pub decisions: Vec<Decision>,
    /// More matched than the query's limit: the newest `limit` are kept.
    pub truncated: bool,
    /// What could not be read (damaged segments, foreign files), one line each.
    pub warnings: Vec<String>,
}

/// The store queries read: this run's memory and the history directory. Shared with the API.
#[derive(Debug)]
pub struct Store {
    run: u64,
    memory: Mutex<Memory>,
    dir: Option<PathBuf>,
    open_warnings: Vec<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked left the store as consistent as any one append leaves it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// A store with memory only, for tests and benchmarks.
    #[must_use]
    pub fn in_memory(capacity: usize) -> Store {
        let run = run_id();
        Store {
            run,
            memory: Mutex::new(Memory::new(capacity, run)),
            dir: None,
            open_warnings: Vec::new(),
        }
    }

    /// Answers `query` from memory and disk, each decision once, the newest `query.limit`.
    pub fn query(&self, query: &Query) -> anyhow::Result<Answer> {
        let keys = query_keys(query);
        let mut collector = Collector::new(query.limit.min(MAX_LIMIT));
        let mut cursor = Cursor::new();
        while lock(&self.memory).scan_step(
            query,
            &keys,
            &mut collector,
            &mut cursor,
            BLOCKS_PER_LOCK,
        ) {}
        let mut warnings = Vec::new();
        if let Some(dir) = &self.dir {
            DirScan {
                query,
                keys: &keys,
                covered: Some(Covered {
                    run: self.run,
                    lo: cursor.below,
                    hi: cursor.top,
                }),
                live_run: Some(self.run),
                report_foreign: false,
            }
            .run(dir, &mut collector, &mut warnings)?;
        }
        Ok(Answer {
            truncated: collector.truncated,
            decisions: collector.into_decisions(),
            warnings,
        })
    }

    /// What opening the history directory reported (damaged segments, foreign files); each was
    /// also logged once.
    #[must_use]
    pub fn open_warnings(&self) -> &[String] {
        &self.open_warnings
    }

    /// The history directory, if any.
    #[must_use]
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// This run's id (in every block it records).
    #[must_use]
    pub fn run(&self) -> u64 {
        self.run
    }

    /// Decisions in memory now.
    #[must_use]
    pub fn memory_len(&self) -> usize {
        lock(&self.memory).len()
    }

    /// Heap bytes of the memory store, roughly.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        lock(&self.memory).heap_bytes()
    }
}

/// A random-enough id for this run: the time and the process id, mixed.
fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

enum Message {
    Batch(Vec<Decision>),
    Finish,
}

/// The event loop's end of the history: owned by the event loop's thread.
pub struct HistoryRecorder {
    pending: Vec<Decision>,
    queue_capacity: usize,
    in_flight: Arc<AtomicUsize>,
    sender: Sender<Message>,
    /// Batches the worker has emptied, to be filled again: a batch's buffer (a megabyte at
    /// [`MAX_BATCH`]) is allocated once, not per hand-over.
    spare: Receiver<Vec<Decision>>,
    counters: Arc<HistoryCounters>,
    worker: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

impl HistoryRecorder {
    /// Opens the history directory if any (creating it, 0700; damaged and foreign files are
    /// reported as warnings, logged once and kept in [`Store::open_warnings`]) and starts the
    /// worker. Errors: DIR is a file, cannot be created, or a segment cannot be written in it.
    pub fn start(config: RecorderConfig) -> anyhow::Result<(HistoryRecorder, Arc<Store>)> {
        let run = run_id();
        let (disk, open_warnings) = match &config.dir {
            Some(dir) => {
                let limits = Limits {
                    max_bytes: config.max_bytes,
                    max_age: config.max_age,
                };
                let opened = SegmentWriter::open(dir, run, limits)?;
                for warning in &opened.warnings {
                    tracing::warn!("history: {warning}");
                }
                (Some(opened.writer), opened.warnings)
            }
            None => (None, Vec::new()),
        };
        let store = Arc::new(Store {
            run,
            memory: Mutex::new(Memory::new(config.memory_capacity, run)),
            dir: config.dir,
            open_warnings,
        });
        let counters = Arc::new(HistoryCounters::default());
        if let Some(disk) = &disk {
            counters.disk_bytes.store(disk.bytes(), Ordering::Relaxed);
            counters
                .segments
                .store(disk.segments() as u64, Ordering::Relaxed);
        }
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (sender, receiver) = mpsc::channel();
        let (done_sender, done) = mpsc::channel();
        let (spare_sender, spare) = mpsc::channel();
        let disk = match disk {
            Some(disk) => Some(DiskWriter::start(disk, counters.clone())?),
            None => None,
        };
        let worker = Worker {
            spare: spare_sender,
            store: store.clone(),
            disk,
            counters: counters.clone(),
            in_flight: in_flight.clone(),
            disk_behind: false,
        };
        let handle = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || {
                worker.run(&receiver);
                let _ = done_sender.send(());
            })
            .map_err(|err| anyhow::anyhow!("starting the history thread: {err}"))?;
        Ok((
            HistoryRecorder {
                pending: Vec::with_capacity(MAX_BATCH),
                queue_capacity: config.queue_capacity.max(1),
                in_flight,
                sender,
                spare,
                counters,
                worker: Some(handle),
                done,
            },
            store,
        ))
    }

    /// Adds a decision to the pending batch.
    pub fn record(&mut self, unix_ns: i64, event: &Event, names: &Names<'_>) {
        self.pending.push(Decision {
            unix_ns,
            event: event.clone(),
            names: names.owned(),
        });
        if self.pending.len() >= MAX_BATCH {
            self.flush();
        }
    }

    /// Hands the pending batch to the worker, or drops and counts it when the decisions in
    /// flight would exceed the queue's capacity.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len();
        let in_flight = self.in_flight.load(Ordering::Acquire);
        if in_flight + n > self.queue_capacity {
            self.pending.clear();
            self.counters
                .dropped_queue_full
                .fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        self.in_flight.fetch_add(n, Ordering::AcqRel);
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(MAX_BATCH));
        let batch = std::mem::replace(&mut self.pending, next);
        if self.sender.send(Message::Batch(batch)).is_err() {
            // The worker is gone (it panicked): nothing is stored any more.
            self.in_flight.fetch_sub(n, Ordering::AcqRel);
            self.counters
                .dropped_queue_full
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// The counters, shared with `/metrics`.
    #[must_use]
    pub fn counters(&self) -> Arc<HistoryCounters> {
        self.counters.clone()
    }

    /// At shutdown: flushes, lets the worker seal and write the last block and make the disk
    /// durable, and waits for it (at most a few seconds). Returns the summary line.
    #[must_use]
    pub fn finish(mut self) -> String {
        self.flush();
        let _ = self.sender.send(Message::Finish);
        match self.done.recv_timeout(FINISH_WAIT) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(worker) = self.worker.take() {
                    let _ = worker.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => tracing::warn!(
                "history: the worker did not finish within {} s: the last decisions may not be on disk",
                FINISH_WAIT.as_secs()
            ),
        }
        self.counters.summary_line()
    }
}

struct Worker {
    spare: Sender<Vec<Decision>>,
    store: Arc<Store>,
    disk: Option<DiskWriter>,
    counters: Arc<HistoryCounters>,
    in_flight: Arc<AtomicUsize>,
    /// The disk writer's queue was full last time: said once until it takes blocks again.
    disk_behind: bool,
}

impl Worker {
    fn run(mut self, receiver: &Receiver<Message>) {
        let mut open_since: Option<Instant> = None;
        loop {
            let message = receiver.recv_timeout(TICK);
            let finish = matches!(
                message,
                Ok(Message::Finish) | Err(RecvTimeoutError::Disconnected)
            );
            let mut sealed = Vec::new();
            {
                let mut memory = lock(&self.store.memory);
                if let Ok(Message::Batch(mut batch)) = message {
                    let n = batch.len();
                    memory.push_batch(&mut batch, &mut sealed);
                    self.in_flight.fetch_sub(n, Ordering::AcqRel);
                    self.counters
                        .recorded
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let _ = self.spare.send(batch);
                }
                if memory.open_len() == 0 {
                    open_since = None;
                } else if finish || open_since.is_some_and(|t| t.elapsed() >= SEAL_AFTER) {
                    sealed.extend(memory.seal());
                    open_since = None;
                } else if open_since.is_none() {
                    open_since = Some(Instant::now());
                }
                self.counters
                    .memory_decisions
                    .store(memory.len() as u64, Ordering::Relaxed);
            }
            for block in sealed {
                // At the end every block is written: finish waits, up to FINISH_WAIT.
                self.hand_to_disk(block, finish);
            }
            if finish {
                if let Some(disk) = self.disk.take() {
                    disk.finish();
                }
                return;
            }
        }
    }

    /// Hands a sealed block to the disk writer (`wait`: even if it is behind), or counts it
    /// as kept in memory only.
    fn hand_to_disk(&mut self, block: Sealed, wait: bool) {
        let Some(disk) = &self.disk else {
            return;
        };
        let n = u64::from(block.summary.count);
        let sent = if wait {
            disk.sender
                .send(block)
                .map_err(|err| TrySendError::Disconnected(err.0))
        } else {
            disk.sender.try_send(block)
        };
        match sent {
            Ok(()) => self.disk_behind = false,
            Err(TrySendError::Full(_)) => {
                self.counters.dropped_disk.fetch_add(n, Ordering::Relaxed);
                if !std::mem::replace(&mut self.disk_behind, true) {
                    tracing::warn!(
                        "history: the disk writer is {DISK_QUEUE_BLOCKS} blocks behind (a slow \
                         disk or more decisions than it writes): decisions stay in memory only \
                         until it catches up (counted)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                // The disk writer is gone (it panicked): nothing reaches the disk any more.
                self.counters.dropped_disk.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// The thread that writes sealed blocks to the history directory, makes it durable and keeps
/// it within its limits.
struct DiskWriter {
    sender: SyncSender<Sealed>,
    handle: JoinHandle<()>,
}

impl DiskWriter {
    fn start(
        segments: SegmentWriter,
        counters: Arc<HistoryCounters>,
    ) -> anyhow::Result<DiskWriter> {
        let (sender, receiver) = mpsc::sync_channel(DISK_QUEUE_BLOCKS);
        let handle = std::thread::Builder::new()
            .name("history-disk".into())
            .spawn(move || {
                DiskThread {
                    segments,
                    counters,
                    failing: false,
                }
                .run(&receiver);
            })
            .map_err(|err| anyhow::anyhow!("starting the history disk thread: {err}"))?;
        Ok(DiskWriter { sender, handle })
    }

    /// Lets the thread write what it was given, make it durable, and end; waits for it.
    fn finish(self) {
        drop(self.sender);
        let _ = self.handle.join();
    }
}

struct DiskThread {
    segments: SegmentWriter,
    counters: Arc<HistoryCounters>,
    /// The last write failed: said once until one succeeds.
    failing: bool,
}

impl DiskThread {
    fn run(mut self, receiver: &Receiver<Sealed>) {
        let mut last_sync = Instant::now();
        let mut last_retain = Instant::now();
        loop {
            match receiver.recv_timeout(TICK) {
                Ok(block) => self.write(&block),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(err) = self.segments.finish() {
                        tracing::warn!("history: making the history directory durable: {err}");
                    }
                    return;
                }
            }
            if last_sync.elapsed() >= SYNC_EVERY {
                last_sync = Instant::now();
                if let Err(err) = self.segments.sync() {
                    tracing::warn!("history: fsync of the history directory: {err}");
                }
            }
            if last_retain.elapsed() >= RETAIN_EVERY {
                last_retain = Instant::now();
                self.retain();
            }
        }
    }

    fn write(&mut self, block: &Sealed) {
        let n = u64::from(block.summary.count);
        match self.segments.write(block) {
            Ok(()) => {
                self.counters.written.fetch_add(n, Ordering::Relaxed);
                if std::mem::replace(&mut self.failing, false) {
                    tracing::info!("history: writing to the history directory again");
                }
            }
            Err(err) => {
                self.counters.dropped_disk.fetch_add(n, Ordering::Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        "history: writing to the history directory failed: {err}; decisions \
                         stay in memory only (counted), retrying every few seconds"
                    );
                }
                // A full disk may have room once retention deletes.
                self.retain();
            }
        }
        self.counters
            .disk_bytes
            .store(self.segments.bytes(), Ordering::Relaxed);
    }

    fn retain(&mut self) {
        for warning in self.segments.retain() {
            tracing::warn!("history: {warning}");
        }
        self.counters
            .disk_bytes
            .store(self.segments.bytes(), Ordering::Relaxed);
        self.counters
            .segments
            .store(self.segments.segments() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::block::tests::{varied, Rng};
    use super::super::segment::query_dir;
    use super::super::segment::tests::{all, TempDir};
    use super::*;

    fn config(dir: Option<&Path>, memory_capacity: usize) -> RecorderConfig {
        RecorderConfig {
            memory_capacity,
            dir: dir.map(Path::to_owned),
            ..RecorderConfig::default()
        }
    }

    /// Records `n` varied decisions from now on, flushing every 100.
    fn record(recorder: &mut HistoryRecorder, n: u64, seed: u64) -> Vec<Decision> {
        let mut rng = Rng(seed);
        let shift = now() - 1_795_713_172_000_000_000;
        let mut out = Vec::new();
        for i in 0..n {
            let mut d = varied(i, &mut rng);
            d.unix_ns += shift;
            d.event.timestamp_ns = d.unix_ns as u64;
            recorder.record(d.unix_ns, &d.event, &d.names.names());
            out.push(d);
            if i % 100 == 99 {
                recorder.flush();
            }
        }
        recorder.flush();
        out.sort_by_key(|d| d.unix_ns);
        out
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64)
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "waited 30 s for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn memory_and_disk_answer_each_decision_once_and_a_restart_keeps_them() {
        let dir = TempDir::new("recorder");
        // Memory holds 3000 of 10000: the rest is only on disk, the newest in both.
        let (mut recorder, store) =
            HistoryRecorder::start(config(Some(&dir.0), 3000)).expect("starting");
        let counters = recorder.counters();
        let stored = record(&mut recorder, 10_000, 71);
        wait_for("every decision on disk", || {
            counters.written.load(Ordering::Relaxed) == 10_000
        });
        assert!(store.memory_len() <= 3000);
        let answer = store.query(&all()).expect("query");
        assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
        assert!(!answer.truncated);
        assert_eq!(answer.decisions, stored, "each decision once, oldest first");
        let mut newest = all();
        newest.limit = 10;
        let answer = store.query(&newest).expect("query");
        assert!(answer.truncated);
        assert_eq!(answer.decisions, stored[stored.len() - 10..]);
        let sample = &stored[2000];
        let by_client = Query::parse(&format!("client={}", sample.event.client), 0).expect("query");
        let want: Vec<&Decision> = stored.iter().filter(|d| by_client.matches(d)).collect();
        assert_eq!(
            store
                .query(&by_client)
                .expect("query")
                .decisions
                .iter()
                .collect::<Vec<_>>(),
            want
        );

        let summary = recorder.finish();
        assert!(
            summary.contains("recorded=10000") && summary.contains("dropped: queue_full=0 disk=0"),
            "{summary}"
        );
        assert_eq!(query_dir(&dir.0, &all()).expect("query").decisions, stored);
        // A restart answers the same from disk.
        let (recorder, store) =
            HistoryRecorder::start(config(Some(&dir.0), 3000)).expect("restarting");
        assert!(
            store.open_warnings().is_empty(),
            "{:?}",
            store.open_warnings()
        );
        assert_eq!(store.query(&all()).expect("query").decisions, stored);
        assert_eq!(
            store
                .query(&by_client)
                .expect("query")
                .decisions
                .iter()
                .collect::<Vec<_>>(),
            want
        );
        let _ = recorder.finish();
    }

    #[test]
    fn a_partly_filled_block_is_written_within_seconds_and_at_finish() {
        let dir = TempDir::new("seal");
        let (mut recorder, _store) =
            HistoryRecorder::start(config(Some(&dir.0), 100_000)).expect("starting");
        let counters = recorder.counters();
        let stored = record(&mut recorder, 10, 73);
        wait_for("the block sealed after a second", || {
            counters.written.load(Ordering::Relaxed) == 10
        });
        assert_eq!(query_dir(&dir.0, &all()).expect("query").decisions, stored);
        let more = record(&mut recorder, 5, 79);
        let _ = recorder.finish();
        assert_eq!(
            query_dir(&dir.0, &all()).expect("query").decisions.len(),
            stored.len() + more.len()
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (mut recorder, store) = HistoryRecorder::start(RecorderConfig {
            queue_capacity: 50,
            ..config(None, 1000)
        })
        .expect("starting");
        let counters = recorder.counters();
        let mut rng = Rng(83);
        for i in 0..120 {
            let d = varied(i, &mut rng);
            recorder.record(d.unix_ns, &d.event, &d.names.names());
        }
        recorder.flush();
        assert_eq!(counters.dropped_queue_full.load(Ordering::Relaxed), 120);
        assert_eq!(counters.dropped(), [("queue_full", 120), ("disk", 0)]);
        let kept = record(&mut recorder, 40, 89);
        let summary = recorder.finish();
        assert!(summary.contains("recorded=40"), "{summary}");
        assert_eq!(store.query(&all()).expect("query").decisions, kept);
    }

    #[test]
    fn a_bad_directory_fails_the_start() {
        let dir = TempDir::new("bad");
        let file = dir.0.join("file");
        std::fs::write(&file, "x").expect("writing");
        let err = HistoryRecorder::start(config(Some(&file), 10))
            .err()
            .expect("a file");
        assert!(format!("{err:#}").contains("not a directory"), "{err:#}");
    }
}
