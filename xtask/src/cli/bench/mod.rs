//! `cargo xtask bench`: its arguments (the `--help` text) and which benchmarks run. Each lab
//! benchmark is a module of its own; the host ones are ipvs-trace's own `cargo bench` targets.

mod figures;
mod guest;
mod host;
mod loss;
mod memory;
mod nat;
mod overhead;
mod soak;

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::lab::Kernel;
use crate::paths;
use host::host_bench;
use loss::loss;
use memory::memory;
use nat::nat;
use overhead::overhead;
use soak::soak;

/// Benchmarks: measurements, not tests. Each prints its figures and writes them as JSON under
/// target/bench/; a rate below its goal is reported, not failed.
///
/// - `pipeline` (host, release build): recorded ring-buffer records through the real decoder
///   and Kubernetes name lookup over a 100k-pod / 20k-Service index, then the same plus the JSON
///   line into a sink; events/s on one thread, median and spread of 7 runs. Goals 2,000,000/s
///   and 500,000/s. Then both with serve's recorder on (`record` and `flush` per drain of 256,
///   memory only, and with a history directory): the event loop's events/s and the decisions
///   its worker stored and dropped (queue full); goal 1,000,000 decisions/s stored (memory).
/// - `history` (host, release build): the decision history (`serve --history-*`): decisions/s
///   into the memory store and onto disk, bytes a decision in memory with the default 1,000,000
///   held and on disk, and query latency over memory and over 10 million decisions on disk
///   (`query_dir`, as `who --history-dir` reads), with the pipeline's 100k-pod / 20k-Service
///   names. Goals: ≤ 100 B a decision in memory, ≤ 64 B on disk, a client:port query < 100 ms.
/// - `loss` (lab): a burst of connections into a one-page ring while the tracer is stopped
///   (SIGSTOP): delivered + counted lost must equal the connections IPVS created (ipvsadm
///   --stats). The one check here: exits 1 if the accounting is not exact.
/// - `overhead` (lab): the same traffic through IPVS rr/Masq services without and with the
///   tracer attached, interleaved: a storm of short connections (`conn`, the cost per
///   connection), one long connection per client of small request/response exchanges
///   (`packets`, the cost per packet) and an iperf3 stream (`bulk`). Modes per attach path
///   (`fentry`, `kprobe`): `with` (`trace -o json`, every event printed), `quiet` (a `--vip`
///   filter matching nothing: the kernel drops every decision before the ring), `stopped`
///   (the tracer stopped once attached: probes and ring only, the kernel side alone) and
///   `floor` (bpftrace's empty programs on the same hooks: the hooks' own price); and the peer,
///   `peer.bpftrace`, the one-liner a user would write instead. Each traced run is compared
///   with the rate interpolated between the `without` runs on both sides of it; ratios and
///   instructions per unit with their spread, against the goals of issue 15. The guest's
///   clocks count executed instructions (QEMU -icount), so the host's load does not move the
///   figures; `--wall-clock` times by the host's clock instead. Under QEMU TCG absolute rates
///   mean nothing; the ratios do.
/// - `nat` (lab): `overhead`'s `conn` storm through kube-proxy's nftables mode (issue 17), where
///   the tracer's one probe is the NAT binding (`nf_nat_setup_info`, once per connection):
///   `with`, `quiet` and `stopped` with `--dataplane nftables`, `stopped_all` with every probe
///   attached, and `floor` (bpftrace's empty programs on the same hook), per attach path; and a
///   `packets` run of long connections with the tracer stopped, which should cost nothing.
///   Written to nat.json, apart from overhead.json.
/// - `memory` (lab): peak and settled RSS (/proc/PID/status VmHWM, VmRSS) of `ipvs-trace
///   serve` with a cluster of 100k pods, 20k Services (two ports each), their 20k
///   EndpointSlices (100k endpoints) and 500 nodes indexed: through the real watch path (the
///   lab's API server serving that many objects) and from the same objects as a
///   `--kube-snapshot`, beside serve with no names; each after the index is built and after a
///   number of traced connections.
/// - `soak` (lab): one boot, N minutes (default 10) of continuous TCP and UDP connections from
///   several client loops over four services (rr named through the lab's API server, wrr, rr
///   persistent, UDP rr) while real servers are added, removed and reweighted every 25 s, with
///   `trace -o json` running throughout. Checked: the tracer exits 0 on SIGINT with its
///   summary, every connection IPVS scheduled (ipvsadm --stats Conns per service) is a `new`
///   event or counted lost, and its RSS (sampled every 10 s) does not grow over the second half
///   of the run beyond [`SOAK_RSS_SLOPE_BOUND_KB_PER_MIN`]. Exits 1 when one of these fails.
///
/// Exit status: 0, or 1 if loss accounting was not exact or the soak failed a check, or 125 if
/// a benchmark could not run.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Run only this benchmark.
    #[arg(long, value_enum, value_name = "NAME")]
    only: Option<Bench>,
    /// Debian kernel series the lab benchmarks boot.
    #[arg(long, default_value = "6.12")]
    kernel: Kernel,
    /// `loss`: connections in the burst.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    burst: u32,
    /// `overhead`, `nat`: connections per `conn` run.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    storm: u32,
    /// `overhead`, `nat`: request/response exchanges per `packets` run (over 4 connections):
    /// 100,000 take about 4 s of guest time.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    exchanges: u32,
    /// `overhead`, `nat`: rounds of (without, then with, quiet, stopped per attach path) per workload;
    /// one more `without` closes them.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: u32,
    /// `overhead`, `nat`: time the storms by the guest's wall clock (the host's) instead of by
    /// executed instructions (QEMU -icount), which is noisier by an order of magnitude.
    #[arg(long)]
    wall_clock: bool,
    /// `overhead`, `nat`: report from FILE, the saved console output of an earlier run (its
    /// `bench: NAME ...` lines), instead of booting the lab: a long run's figures read again
    /// after a fix to the report.
    #[arg(long, value_name = "FILE")]
    from_log: Option<std::path::PathBuf>,
    /// `memory`: connections traced after the index is built.
    #[arg(long, value_name = "N", default_value_t = 4000)]
    events: u32,
    /// `soak`: minutes of traffic and churn.
    #[arg(long, value_name = "N", default_value_t = 10)]
    minutes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Bench {
    Pipeline,
    History,
    Loss,
    Overhead,
    Nat,
    Memory,
    Soak,
}

pub(super) fn run(args: &Args) -> Result<ExitCode> {
    crate::setup::run()?;
    let dir = paths::target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wanted = |bench: Bench| args.only.is_none_or(|only| only == bench);
    let mut exact = true;
    if wanted(Bench::Pipeline) {
        host_bench(&dir, "pipeline", &[])?;
    }
    if wanted(Bench::History) {
        host_bench(&dir, "history", &[])?;
        // serve's memory with the default in-memory history full beside the 100k-pod index.
        host_bench(&dir, "pipeline", &["--memory"])?;
    }
    if wanted(Bench::Loss) {
        exact = loss(args, &dir)?;
    }
    if wanted(Bench::Overhead) {
        overhead(args, &dir)?;
    }
    if wanted(Bench::Nat) {
        nat(args, &dir)?;
    }
    if wanted(Bench::Memory) {
        memory(args, &dir)?;
    }
    if wanted(Bench::Soak) {
        exact &= soak(args, &dir)?;
    }
    Ok(if exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
