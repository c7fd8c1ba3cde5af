//! Conntrack lookups on a thread of their own, so that the event loop never waits for the
//! kernel: jobs go in through a bounded queue (a full queue drops the job at once, and the
//! caller counts it), answers come back on a channel the event loop polls.
//!
//! An entry may not be in the table yet when its event arrives: netfilter confirms (inserts) a
//! new connection's entry only once its first packet has left the last hook, which can be
//! after the probe that reported it fired. A lookup that finds nothing is therefore retried
//! with a growing delay until [`Retry::window`] has passed since the job arrived; other jobs
//! are served in between, so one missing entry never holds up the rest.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::{Client, Entry, Tuple};
use crate::ipvs::netlink::Transport;

/// One lookup: the caller's id for it, and the original tuple to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub key: Tuple,
}

/// How a lookup ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Found(Entry),
    /// No entry within the retry window.
    Missing,
    /// The kernel or the socket failed; the message says why.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u64,
    pub outcome: Outcome,
}

/// When a lookup that found nothing is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// The delay before the first retry; each next one doubles it.
    pub first: Duration,
    /// No retry starts later than this after the job arrived.
    pub window: Duration,
}

impl Retry {
    /// 5, 10, 20, ... ms up to half a second: the confirmation race lasts microseconds on an
    /// idle node, and the window bounds how long `--nat` output lags behind the events.
    pub const DEFAULT: Retry = Retry {
        first: Duration::from_millis(5),
        window: Duration::from_millis(500),
    };
}

/// The lookup thread and its two channels. Dropping it closes the queue; the thread ends after
/// the lookup in hand.
pub struct Lookups {
    jobs: Option<SyncSender<Job>>,
    answers: UnboundedReceiver<Answer>,
    thread: Option<JoinHandle<()>>,
}

impl Lookups {
    /// Starts the thread; at most `capacity` jobs wait in its queue.
    pub fn start<T>(client: Client<T>, capacity: usize, retry: Retry) -> std::io::Result<Lookups>
    where
        T: Transport + Send + 'static,
    {
        let (jobs, queue) = mpsc::sync_channel(capacity);
        let (answer, answers) = unbounded_channel();
        let thread = thread::Builder::new()
            .name("conntrack".to_owned())
            .spawn(move || Worker::new(client, retry, answer).run(&queue))?;
        Ok(Lookups {
            jobs: Some(jobs),
            answers,
            thread: Some(thread),
        })
    }

    /// Queues `job` without waiting; `false` when the queue is full or the thread has ended
    /// (the job is dropped: no answer will come for it).
    #[must_use]
    pub fn submit(&self, job: Job) -> bool {
        match self.jobs.as_ref().map(|jobs| jobs.try_send(job)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }

    /// The next answer; `None` once the thread has ended and every answer was taken.
    pub async fn next(&mut self) -> Option<Answer> {
        self.answers.recv().await
    }

    /// An answer that is already there, if any.
    pub fn try_next(&mut self) -> Option<Answer> {
        self.answers.try_recv().ok()
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        // Closing the queue ends the thread's wait; the lookup in hand, if any, is one local
        // netlink round trip.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A job whose entry was not there yet.
struct Waiting {
    job: Job,
    /// When it arrived plus the window: no retry after this.
    give_up: Instant,
    next_try: Instant,
    delay: Duration,
}

struct Worker<T: Transport> {
    client: Client<T>,
    retry: Retry,
    answer: UnboundedSender<Answer>,
    waiting: Vec<Waiting>,
}

impl<T: Transport> Worker<T> {
    fn new(client: Client<T>, retry: Retry, answer: UnboundedSender<Answer>) -> Worker<T> {
        Worker {
            client,
            retry,
            answer,
            waiting: Vec::new(),
        }
    }

    /// Serves jobs until the queue is closed or nobody takes the answers any more.
    fn run(mut self, queue: &Receiver<Job>) {
        loop {
            let next_retry = self.waiting.iter().map(|w| w.next_try).min();
            let job = match next_retry {
                Some(at) => {
                    match queue.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match queue.recv() {
                    Ok(job) => Some(job),
                    Err(_) => return,
                },
            };
            if let Some(job) = job {
                let now = Instant::now();
                let first = Waiting {
                    job,
                    give_up: now + self.retry.window,
                    next_try: now,
                    delay: self.retry.first,
                };
                if !self.attempt(first) {
                    return;
                }
            }
            let now = Instant::now();
            let (due, later): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|w| w.next_try <= now);
            self.waiting = later;
            for waiting in due {
                if !self.attempt(waiting) {
                    return;
                }
            }
        }
    }

    /// One try; a miss inside the window goes back to `waiting`. `false` when the answers'
    /// receiver is gone.
    fn attempt(&mut self, mut waiting: Waiting) -> bool {
        let outcome = match self.client.get(&waiting.job.key) {
            Ok(Some(entry)) => Outcome::Found(entry),
            Ok(None) => {
                let now = Instant::now();
                if now + waiting.delay <= waiting.give_up {
                    waiting.next_try = now + waiting.delay;
                    waiting.delay *= 2;
                    self.waiting.push(waiting);
                    return true;
                }
                Outcome::Missing
            }
            Err(error) => Outcome::Failed(error.to_string()),
        };
        self.answer
            .send(Answer {
                id: waiting.job.id,
                outcome,
            })
            .is_ok()
    }
}
