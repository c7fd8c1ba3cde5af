//! Decisions kept after the fact: what `serve` traced, with the Kubernetes names of that
//! moment, so that "which pod served 10.245.97.12:51776 at 14:03?" has an answer later.
//!
//! [`Decision`] is the recorded unit. [`query`] parses and matches the questions (the API's
//! `/v1/decisions` parameters, `who`'s flags). The store keeps decisions in memory
//! ([`memory`]) and, with `--history-dir`, on disk ([`segment`]); both hold the same encoded
//! [`block`]s. [`recorder`] is the worker behind a bounded queue that feeds them off the
//! event loop.

pub mod block;
pub mod memory;
pub mod query;
pub mod recorder;
pub mod segment;

use crate::api::ApiConfig;
use crate::events::Event;
use crate::kube::OwnedNames;

pub use query::Query;
pub use recorder::RecorderConfig;

/// One decision as recorded: the event, its wall-clock time and the names the index gave its
/// addresses at that moment (a pod deleted since, whose IP a new pod took, is still named as
/// the pod it was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Nanoseconds since the Unix epoch (the event's monotonic stamp through the run's
    /// [`crate::clock::WallClock`]). Also in `event.timestamp_ns` of a decoded decision, so
    /// that it prints with `WallClock::with_offset(0)`.
    pub unix_ns: i64,
    pub event: Event,
    pub names: OwnedNames,
}

/// `serve`'s history: what the store keeps and where the API answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// `--history-size`, `--history-dir`, `--history-max-bytes`, `--history-max-age`.
    pub store: RecorderConfig,
    /// `--api-socket`, `--api-addr`.
    pub api: ApiConfig,
}
