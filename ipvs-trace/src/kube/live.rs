//! The live watches on a thread of their own.
//!
//! The event loop runs on a single-threaded runtime; the watches do not share it. A relist of a
//! large cluster decodes megabytes of JSON, and that work must not sit between the ring buffer
//! and its reader. So the watches get their own thread and runtime, and all the two sides share
//! is the index (a short lock per change or lookup) and the health table.

use std::io::{self, Write as _};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::oneshot;

use super::watch::{self, Health, KubeSource, KINDS};
use super::SharedIndex;

/// The running watches. Dropping it stops them.
pub struct LiveNames {
    health: Health,
    /// Dropped (or sent) to end the watch thread's runtime, which cancels the watches.
    _shutdown: oneshot::Sender<()>,
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
                        () = announce_sync(&health, &index) => {
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
            _shutdown: shutdown,
        })
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
async fn announce_sync(health: &Health, index: &SharedIndex) {
    while !health.synced() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = {
        let index = index
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
