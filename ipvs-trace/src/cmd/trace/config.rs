//! What `trace` runs with: the command line (`cli`), validated, assembled by
//! `TraceArgs::into_config` and `ServeArgs::into_config`. Defined here, with its user, so that
//! the command does not reach up into the command-line layer for its input.

use std::path::PathBuf;
use std::time::Duration;

use crate::filter::Filter;
use crate::kube::source::NameSource;
use crate::loader::probes::AttachMode;
use crate::metrics::MetricsConfig;
use crate::output::OutputFormat;

/// Everything `trace` needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is an independent command-line switch"
)]
pub struct TraceConfig {
    pub output: OutputFormat,
    pub filter: Filter,
    /// Stop after this many printed events.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Wait for `ip_vs` to be loaded.
    pub wait: bool,
    /// Split BTF for `ip_vs`, instead of the kernel's.
    pub btf: Option<PathBuf>,
    /// Ring buffer size in bytes (a valid one); `None` for the loader's default.
    pub ring_size: Option<u32>,
    /// `--attach`: trampolines, kprobes, or each where it works.
    pub attach: AttachMode,
    /// `--dataplane`: empty, every one.
    pub dataplanes: Vec<crate::dataplane::Dataplane>,
    /// Test hook: (kernel function, symbol to attach its probe to instead).
    pub kprobe_target_override: Option<(String, String)>,
    /// Table shows addresses, not names.
    pub numeric: bool,
    /// Where Kubernetes names come from.
    pub names: NameSource,
    /// `--nat`: the translation of each connection, and its conntrack entry.
    pub nat: bool,
    /// `--debug-dump-netlink`: record the conntrack replies here.
    pub nat_record: Option<PathBuf>,
    /// `--metrics-addr`: serve Prometheus metrics.
    pub metrics: Option<MetricsConfig>,
    /// Print no events (`serve`): the metrics and the summary are the output.
    pub quiet: bool,
    /// `serve`: record every decision and answer queries on them.
    pub history: Option<crate::history::HistoryConfig>,
}
