//! The live watches on a thread of their own.
//!
//! The event loop runs on a single-threaded runtime; the watches do not share it. A relist of a
//! large cluster decodes megabytes of JSON, and that work must not sit between the ring buffer
//! and its reader. So the watches get their own thread and runtime, and all the two sides share
//! is the index (a short lock per change or lookup) and the health table.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;

use super::watch::{self, Health, KubeSource, KINDS};
use super::SharedIndex;

/// The running watches. Dropping it stops them.
pub struct LiveNames {
    health: Health,
    sync_notice: SyncNotice,
    /// Dropped (or sent) to end the watch thread's runtime, which cancels the watches.
    _shutdown: oneshot::Sender<()>,
}

/// The `names synced` line, printed once by whoever sees the sync first: the watch thread in
/// the background, or a command that waited for the sync and must not exit before the line is
/// out.
#[derive(Clone)]
struct SyncNotice {
    printed: Arc<AtomicBool>,
    index: SharedIndex,
}

impl SyncNotice {
    fn print_once(&self) {
        if self.printed.swap(true, Ordering::AcqRel) {
            return;
        }
        let counts = {
            let index = self
                .index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            KINDS
                .iter()
                .map(|&kind| format!("{} {}", index.len(kind), watch::plural(kind)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            io::stderr().lock(),
            "ipvs-trace: kubernetes names synced: {counts}"
        );
    }
}

impl LiveNames {
    /// Starts the watches of `source` feeding `index` and returns once they run, without
    /// waiting for the API server. When every kind has synced, a line
    /// `ipvs-trace: kubernetes names synced: ...` goes to stderr (once; scripts wait for it).
    pub fn start(source: KubeSource, index: SharedIndex) -> anyhow::Result<LiveNames> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime of the Kubernetes watches")?;
        let (health_tx, health_rx) = mpsc::sync_channel(1);
        let (shutdown, mut stopped) = oneshot::channel::<()>();
        let sync_notice = SyncNotice {
            printed: Arc::new(AtomicBool::new(false)),
            index: SharedIndex::clone(&index),
        };
        let notice = sync_notice.clone();
        thread::Builder::new()
            .name("kube-watch".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let watches = watch::spawn(source, SharedIndex::clone(&index)).await;
                    let health = watches.monitor();
                    // The receiver is gone only if `start` itself went away; nothing to do then.
                    let _ = health_tx.send(health.clone());
                    tokio::select! {
                        _ = &mut stopped => {}
                        () = announce_sync(&health, &notice) => {
                            // Keep the watches (owned by this future) until told to stop.
                            let _ = stopped.await;
                        }
                    }
                    drop(watches);
                });
            })
            .context("starting the Kubernetes watch thread")?;
        let health = health_rx
            .recv()
            .context("the Kubernetes watch thread ended before starting its watches")?;
        Ok(LiveNames {
            health,
            sync_notice,
            _shutdown: shutdown,
        })
    }

    /// Waits until every kind has synced, at most `timeout`, and if so makes sure the `names
    /// synced` line is out before returning (a short-lived command may exit right after).
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let synced = self.health.wait_synced(timeout).await;
        if synced {
            self.sync_notice.print_once();
        }
        synced
    }

    /// The watches' health.
    #[must_use]
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// One line per kind for the exit summary.
    #[must_use]
    pub fn summary_lines(&self) -> Vec<String> {
        self.health.summary_lines()
    }
}

/// Waits for the first complete sync of every kind, then says so on stderr with the counts.
async fn announce_sync(health: &Health, notice: &SyncNotice) {
    while !health.synced() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    notice.print_once();
}
