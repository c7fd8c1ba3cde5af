//! Command-line arguments.
//!
//! Every value is parsed into its domain type by clap (addresses, protocols, event kinds,
//! durations, sizes), so a mistake is reported with the flag's name before anything touches
//! the kernel, and [`TraceArgs::into_config`] only assembles an already valid [`TraceConfig`].

use clap::{Parser, Subcommand};

mod balance;
mod check;
mod common;
mod rules;
mod serve;
mod top;
mod trace;
mod version;
mod who;
pub use crate::cmd::trace::TraceConfig;
pub use balance::BalanceArgs;
pub use check::CheckArgs;
pub use common::{LoaderArgs, NameSourceArgs};
// The subcommands' modules take the shared duration parser from here, as they take the
// argument groups.
use common::parse_positive_duration;
pub use rules::RulesArgs;
pub use serve::ServeArgs;
pub use top::TopArgs;
pub use trace::{ProtoArg, TraceArgs};
pub use version::VERSION;
pub use who::WhoArgs;

/// Live view of the connections the kernel's IPVS schedules (kube-proxy IPVS mode): which
/// client was sent to which real server (pod), by which scheduler, as it happens.
#[derive(Debug, Parser)]
#[command(name = "ipvs-trace", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::doc_markdown,
    reason = "these doc comments are terminal help text, where backticks would show literally"
)]
pub enum Command {
    /// Print every IPVS scheduling decision as it happens.
    ///
    /// Probes the kernel functions where IPVS creates connection entries and schedules new
    /// connections (needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN, and the ip_vs module
    /// loaded). One line per event on stdout; once every probe is attached, a line
    /// `ipvs-trace: tracing (...)` on stderr; on exit a summary on stderr: events per kind, new
    /// connections per virtual service and real server, events lost in the kernel.
    ///
    /// Event kinds:
    ///
    ///   new       a connection entry was created and bound to a real server (one per new
    ///             connection; the scheduler chose the backend, or persistence did)
    ///
    ///   template  a persistence template was created (service with `ipvsadm -p`, kube-proxy's
    ///             sessionAffinity: ClientIP); the client port is 0: it stands for the client IP
    ///
    ///   reused    a new connection (TCP SYN) hit an existing entry, e.g. a client reconnecting
    ///             from the same ip:port: no scheduling happened, and `ipvsadm --stats` does not
    ///             count it
    ///
    ///   no_dest   the scheduler found no usable real server (none, or all with weight 0): the
    ///             client's packet is dropped or rejected
    #[command(after_help = trace::TRACE_EXAMPLES)]
    Trace(TraceArgs),

    /// Show the IPVS virtual services and their real servers, with Kubernetes names.
    ///
    /// The `ipvsadm -Ln` view, read from the kernel over netlink (needs CAP_NET_ADMIN): each
    /// virtual service with its scheduler and flags and the Kubernetes Service port it belongs
    /// to, each real server with its pod and node, forwarding method, weight and connection
    /// counts; --stats and --rate show the counters instead. Beside it, kube-proxy's nftables
    /// and iptables modes: each Service address with its endpoints and the probability of
    /// each. -o json prints every field as one document.
    #[command(after_help = rules::RULES_EXAMPLES)]
    Rules(RulesArgs),

    /// Judge how each virtual service spreads new connections over its real servers.
    ///
    /// Over a window (--duration, or until Ctrl-C), traces every new connection as `trace`
    /// does (same privileges) and reads the IPVS tables over netlink at its start and end and
    /// every second in between. Per virtual service: connections per backend (every backend,
    /// including those that got none), the share each should get for the configured
    /// scheduler, the deviation (largest relative error, chi-square p-value), the causes seen
    /// in the window, and each count against the kernel's own counter. --check turns the
    /// verdict into the exit status.
    #[command(after_help = balance::BALANCE_EXAMPLES)]
    Balance(BalanceArgs),

    /// Check whether this node can be traced, and how well: run it first on a new node.
    ///
    /// Goes through what `trace` needs without loading anything: privileges, the ip_vs module,
    /// the BTF source (/sys/kernel/btf or --btf), every probe against /proc/kallsyms and its
    /// function's prototype in BTF, and the struct offsets the probes will read. Exits 0 when
    /// `trace` will work (possibly with fewer event kinds, listed as degraded), 1 when not.
    Check(CheckArgs),

    /// Run headless for Prometheus: trace every decision and serve metrics, print nothing per
    /// event (the DaemonSet's command).
    ///
    /// Loads the probes as `trace` does (same privileges), waiting for ip_vs if it is not loaded
    /// yet, keeps Kubernetes names from the same sources, and serves /metrics (OpenMetrics
    /// text) and /healthz (200 once the probes are attached) on --metrics-addr. Logs go to
    /// stderr; SIGTERM or SIGINT ends it cleanly with the summary on stderr.
    #[command(after_help = serve::SERVE_EXAMPLES)]
    Serve(ServeArgs),

    /// Live view of a hot node: per virtual service, new connections, reused entries and
    /// refusals per second, and how each backend shares them.
    ///
    /// Traces every decision as `trace` does (same privileges) and refreshes every --interval:
    /// one line per virtual service, busiest first, with its real servers (pods) under it,
    /// each with its rate, its share of the service's connections and its count since the
    /// start; the first line always says how many events were lost. Works in any terminal
    /// (keyboard only, basic colours); q, Esc or Ctrl-C quits and gives the terminal back.
    /// --batch (automatic when stdout is not a terminal) writes plain-text frames instead.
    #[command(after_help = top::TOP_EXAMPLES)]
    Top(TopArgs),

    /// Which pod served a past connection, or which clients a pod, backend or Service got.
    ///
    /// Asks the decisions serve recorded on this node (its query API, root only), or with
    /// --history-dir its files directly, or with --cluster every node's ipvs-trace pod. When
    /// no serve runs on this node, answers from the kernel's connection table instead: the
    /// connections alive now, without times. A client IP[:PORT], --backend, --pod or
    /// --service says what to look for; --since and --until bound the time. One line on
    /// stderr says which source answered; nothing matching exits 0.
    #[command(after_help = who::WHO_EXAMPLES)]
    Who(WhoArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
