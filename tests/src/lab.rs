//! One VM boot per kernel runs every scenario; the tests of that kernel share it.
//!
//! Booting Debian's kernel under TCG and building the image cost far more than a scenario, so
//! all scenarios run in one boot (`tests/scenarios/run-all.sh`, each scenario cleaning up after
//! itself) and each `#[test]` only reads its own section of the output. The first test to ask
//! for a boot also starts, in the background, the boots of every kernel the harness's filters
//! select, at most [`parallel_boots`] at once in [`Kernel::ALL`] order; each test waits for its
//! kernel's (a `OnceLock` per kernel). Without that, the harness's threads all take the first
//! kernel's tests, wait on its boot together, and the kernels boot one after another.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use xtask::lab::{self, Kernel, LabOutput, LabRun};

use crate::output::{self, ScenarioRun};
use crate::trace;
use crate::views::{is_client_dump, is_trace_dump};

/// The scenarios of `tests/scenarios/`, in the order they run. `errors` comes after the other
/// IPVS scenarios: it unloads and reloads ip_vs, which nothing after it should have to survive
/// (`reload` does too, under a running `serve`, and leaves ip_vs loaded, as `node_reset` wants
/// it). The netfilter scenarios (kube-proxy's nftables and iptables modes) run last: they load
/// nf_tables and nf_nat, which stay loaded, and every scenario before them sees the node as a
/// boot that runs it alone does.
pub const SCENARIOS: &[&str] = &[
    "rr",
    "wrr",
    "udp",
    "persistent",
    "reuse",
    "no_dest",
    "builtin",
    "nodeport",
    "names",
    "snapshot",
    "rules",
    "dualstack",
    "nat",
    "balance",
    "metrics",
    "top",
    "history",
    "reload",
    "filter",
    "attach",
    "errors",
    "nftables",
    "iptables",
    "migrating",
];

/// What 7.2 runs: the scenarios that compare the tracer with the kernel's tables on every
/// path of the probes (rr, wrr, UDP, reuse, no_dest, NodePort, IPv6, the built-in layout's
/// refusal, rules, errors and check's golden), `serve` across a reload of ip_vs (the kprobes
/// of a new load of the module, on every kernel CI runs), the kernel-side filter, and the
/// netfilter scenarios (kube-proxy's nftables and iptables modes: the NAT probe on every CI
/// kernel).
///
/// Left out: `persistent`, which failed once on 7.2 in CI (46 of 63 entries missing from
/// `ipvsadm -Lnc`; by hand every entry stays the full 120 s of TIME_WAIT, as on 6.x). The
/// likelier cause, seen since in `history` on 7.2 (18 of some 200 entries listed right after a
/// burst, all there seconds later): 7.x resizes the connection table as it grows
/// (`ip_vs_rht`), and a listing taken meanwhile misses entries; `dump_conns` now lists until
/// two listings agree. Also left out: the scenarios that test userspace over the same probes
/// (names, snapshot, nat, balance), which the other kernels cover; the boot stays short.
pub const SCENARIOS_7_2: &[&str] = &[
    "rr",
    "wrr",
    "udp",
    "reuse",
    "no_dest",
    "builtin",
    "nodeport",
    "rules",
    "dualstack",
    "history",
    "reload",
    "filter",
    "attach",
    "errors",
    "nftables",
    "iptables",
    "migrating",
];

/// The boot whose every ipvs-trace runs with `--attach kprobe` (`IPVS_TRACE_ATTACH=kprobe`):
/// the kprobe path by the flag on a kernel with module BTF, beside 5.10 (kprobes for want of
/// module BTF). 6.12 and 7.2 run the trampoline path. Debian's 6.1 refuses the trampolines'
/// attach on ip_vs_conn_new and tcp_state_transition (EINVAL; on ip_vs_leave only sometimes),
/// so `auto` gives it mostly kprobes anyway: `attach` checks that per-probe fallback there, in
/// a round that names its mode.
pub const FORCED_KPROBE: Kernel = Kernel::V6_1;

/// The scenarios a kernel's boot runs, in [`SCENARIOS`] order.
#[must_use]
pub fn scenarios_of(kernel: Kernel) -> Vec<&'static str> {
    match kernel {
        Kernel::V7_2 => SCENARIOS
            .iter()
            .copied()
            .filter(|s| SCENARIOS_7_2.contains(s))
            .collect(),
        _ => SCENARIOS.to_vec(),
    }
}

/// Upper bound of one boot with every scenario: about 5 minutes of guest time under TCG (CI,
/// 2026-12-07: 207-314 s a kernel); the margin covers two guests sharing a slower machine.
const BOOT_TIMEOUT: Duration = Duration::from_mins(15);

/// A boot's outcome.
#[derive(Debug)]
pub struct Boot {
    pub kernel: String,
    /// The lab's output, or why the boot failed (the lab's error chain).
    pub outcome: Result<LabOutput, String>,
    pub runs: Vec<ScenarioRun>,
    /// Host wall time of the whole `lab::run` (image build included on a cold cache).
    pub wall: Duration,
}

impl Boot {
    /// The finished, successful run of scenario `name`; panics with the scenario's report (and
    /// the console's tail when the guest went wrong) otherwise.
    #[must_use]
    pub fn scenario(&self, name: &str) -> &ScenarioRun {
        let output = match &self.outcome {
            Ok(output) => output,
            Err(err) => panic!("the {} lab did not run: {err}", self.kernel),
        };
        let Some(run) = self.runs.iter().find(|r| r.name == name) else {
            panic!(
                "scenario {name} did not run on {} (lab status {}); console tail:\n{}",
                self.kernel,
                output.status,
                output.console_tail(60)
            );
        };
        match run.status {
            Some(0) => run,
            Some(status) => panic!(
                "scenario {name} failed in the {} guest with status {status}\n{}\nconsole tail:\n{}",
                self.kernel,
                run.report(),
                output.console_tail(40)
            ),
            None => panic!(
                "scenario {name} never finished on {} (guest died or timed out)\n{}\nconsole tail:\n{}",
                self.kernel,
                run.report(),
                output.console_tail(60)
            ),
        }
    }

    /// The figures line of scenario `name` (for the test's own output).
    #[must_use]
    pub fn figures(&self, name: &str) -> String {
        self.runs
            .iter()
            .find(|r| r.name == name)
            .map_or_else(|| format!("{name}: did not run"), |r| Figures::of(r).line())
    }
}

/// The shared boot of `kernel`, running every scenario of [`SCENARIOS`].
#[must_use]
pub fn boot(kernel: Kernel) -> &'static Boot {
    static START: Once = Once::new();
    START.call_once(|| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        start_boots(selected_kernels(&args), parallel_boots());
    });
    // A boot a worker has started is waited for; one not started yet (a kernel the filters
    // did not seem to select) runs here.
    slot(kernel).get_or_init(|| run_boot(kernel))
}

fn slot(kernel: Kernel) -> &'static OnceLock<Boot> {
    static BOOTS: [OnceLock<Boot>; Kernel::ALL.len()] =
        [const { OnceLock::new() }; Kernel::ALL.len()];
    let at = Kernel::ALL
        .iter()
        .position(|k| *k == kernel)
        .expect("every kernel is in Kernel::ALL");
    &BOOTS[at]
}

/// How many guests boot at once: `LAB_PARALLEL`, else one per host CPU up to 2. Each guest is
/// one TCG vCPU, a host thread that keeps one CPU busy; more guests than CPUs only slows all.
fn parallel_boots() -> usize {
    std::env::var("LAB_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(2)))
}

/// `workers` threads booting `kernels` in order, each boot into its kernel's slot.
fn start_boots(kernels: Vec<Kernel>, workers: usize) {
    static QUEUE: Mutex<VecDeque<Kernel>> = Mutex::new(VecDeque::new());
    QUEUE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(kernels);
    for _ in 0..workers {
        std::thread::spawn(|| loop {
            let next = QUEUE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front();
            let Some(kernel) = next else { break };
            slot(kernel).get_or_init(|| run_boot(kernel));
        });
    }
}

/// The kernels whose tests the harness will run, judged from its command line the way libtest
/// filters (`v6_12::rr` is run when a filter is a substring of it, or equal with `--exact`; no
/// filter runs all). Over-selecting costs a boot; under-selecting only the parallelism.
#[must_use]
pub fn selected_kernels(args: &[String]) -> Vec<Kernel> {
    // libtest's options that take a separate value.
    const WITH_VALUE: &[&str] = &[
        "--skip",
        "--test-threads",
        "--logfile",
        "--color",
        "--format",
        "-Z",
        "--shuffle-seed",
    ];
    let mut filters = Vec::new();
    let mut exact = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if arg == "--exact" {
            exact = true;
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    Kernel::ALL
        .into_iter()
        .filter(|kernel| {
            let module = format!("v{}", kernel.to_string().replace('.', "_"));
            filters.is_empty()
                || scenarios_of(*kernel).iter().any(|scenario| {
                    let test = format!("{module}::{scenario}");
                    filters
                        .iter()
                        .any(|f| if exact { test == *f } else { test.contains(f) })
                })
        })
        .collect()
}

fn run_boot(kernel: Kernel) -> Boot {
    let name = kernel.to_string();
    let started = Instant::now();
    let outcome = prepare(kernel).and_then(|(script, extra_files)| {
        lab::run(&LabRun {
            kernel,
            script: &script,
            extra_files: &extra_files,
            stream: std::env::var_os("LAB_STREAM").is_some_and(|v| v == "1"),
            timeout: BOOT_TIMEOUT,
            icount: false,
        })
        .map_err(|e| format!("{e:#}"))
    });
    let wall = started.elapsed();
    let runs = outcome
        .as_ref()
        .map(|o| output::parse_scenarios(&o.script_output))
        .unwrap_or_default();
    let boot = Boot {
        kernel: name,
        outcome,
        runs,
        wall,
    };
    if let Err(err) = write_results(&boot) {
        eprintln!("could not write the lab results file: {err}");
    }
    boot
}

/// The runner script and the files to copy into the guest.
fn prepare(kernel: Kernel) -> Result<(PathBuf, Vec<(PathBuf, String)>), String> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = target_dir().join("lab").join("e2e");
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut extra_files = vec![(
        tests.join("scenarios").join("run-all.sh"),
        "/lab/run-all.sh".to_owned(),
    )];
    let mut script = String::from("#!/bin/sh\n");
    if kernel == FORCED_KPROBE {
        script.push_str("export IPVS_TRACE_ATTACH=kprobe\n");
    }
    script.push_str("exec /bin/sh /lab/run-all.sh");
    let scenarios = selected(kernel)?;
    if scenarios.contains(&"metrics") {
        extra_files.extend(promtool()?);
    }
    for scenario in scenarios {
        let guest = format!("/lab/scenarios/{scenario}.sh");
        extra_files.push((
            tests.join("scenarios").join(format!("{scenario}.sh")),
            guest.clone(),
        ));
        script.push(' ');
        script.push_str(&guest);
    }
    script.push('\n');
    let path = dir.join(format!("run-{kernel}.sh"));
    fs::write(&path, script).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok((path, extra_files))
}

/// Where Debian's `prometheus` package puts promtool.
const PROMTOOL: &str = "/usr/bin/promtool";

/// promtool and the libraries it loads, added to a boot only when it runs `metrics` (which
/// checks a real scrape of `serve` with it), as the benchmarks add theirs: 46 MiB that a boot
/// without that scenario need not carry.
fn promtool() -> Result<Vec<(PathBuf, String)>, String> {
    let path = Path::new(PROMTOOL);
    if !path.is_file() {
        return Err(format!(
            "{PROMTOOL} is missing: the metrics scenario checks serve's /metrics with it. It \
             comes with Debian's prometheus package: run `cargo xtask setup`"
        ));
    }
    lab::host_program(path).map_err(|e| format!("{e:#}"))
}

/// The scenarios this boot runs: the kernel's ([`scenarios_of`]), or those of them in `LAB_ONLY`
/// (a comma-separated list, for working on one scenario: the others' tests then fail for want
/// of a run).
fn selected(kernel: Kernel) -> Result<Vec<&'static str>, String> {
    let Some(only) = std::env::var_os("LAB_ONLY") else {
        return Ok(scenarios_of(kernel));
    };
    let only = only.to_string_lossy();
    let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
    if let Some(unknown) = wanted.iter().find(|w| !SCENARIOS.contains(w)) {
        return Err(format!(
            "LAB_ONLY names {unknown:?}, which is not a scenario ({})",
            SCENARIOS.join(", ")
        ));
    }
    Ok(scenarios_of(kernel)
        .into_iter()
        .filter(|s| wanted.contains(s))
        .collect())
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
#[must_use]
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        },
        PathBuf::from,
    )
}

/// Per-scenario figures for the closing note: connections made, events seen, lost, wall time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// `lab-net` connections (ok + failed).
    pub connections: usize,
    pub failed_connections: usize,
    /// JSON event lines over all trace runs of the scenario.
    pub events: usize,
    /// Sum of the summaries' ring-full losses (`None` if a summary said "unknown" or is
    /// missing).
    pub lost: Option<u64>,
    pub elapsed_s: Option<f64>,
}

impl Figures {
    #[must_use]
    pub fn of(run: &ScenarioRun) -> Figures {
        let clients: Vec<_> = run
            .dumps_where(is_client_dump)
            .flat_map(|d| crate::labnet::parse_client_lines(&d.text).unwrap_or_default())
            .collect();
        let events = run
            .dumps_where(is_trace_dump)
            .map(|d| d.text.lines().filter(|l| !l.trim().is_empty()).count())
            .sum();
        let mut lost = Some(0);
        let mut traces = 0;
        for dump in run.dumps_where(|n| n.ends_with(".stderr") && !n.starts_with("client-")) {
            traces += 1;
            let this = trace::parse_summary(&dump.text).ok().and_then(|s| s.lost);
            lost = lost.zip(this).map(|(a, b)| a + b);
        }
        Figures {
            connections: clients.len(),
            failed_connections: clients.iter().filter(|c| !c.ok()).count(),
            events,
            lost: if traces == 0 { None } else { lost },
            elapsed_s: run.elapsed_s,
        }
    }

    /// `rr: 300 connections (0 failed), 300 events, lost 0, 7.42 s`.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "{} connections ({} failed), {} events, lost {}, {} s",
            self.connections,
            self.failed_connections,
            self.events,
            self.lost
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
            self.elapsed_s
                .map_or_else(|| "?".to_owned(), |s| format!("{s:.2}")),
        )
    }
}

/// `target/lab/results/<kernel>.txt`: one line per scenario, for the closing note; and
/// `<kernel>-console.txt`: the whole console of the boot, to read what a scenario printed.
fn write_results(boot: &Boot) -> std::io::Result<()> {
    let dir = target_dir().join("lab").join("results");
    fs::create_dir_all(&dir)?;
    if let Ok(output) = &boot.outcome {
        fs::write(
            dir.join(format!("{}-console.txt", boot.kernel)),
            &output.console,
        )?;
    }
    let mut text = format!(
        "kernel {}: lab::run {:.1} s host wall time, {}\n",
        boot.kernel,
        boot.wall.as_secs_f64(),
        match &boot.outcome {
            Ok(o) => format!("script status {}", o.status),
            Err(e) => format!("failed: {e}"),
        }
    );
    for name in SCENARIOS {
        let line = match boot.runs.iter().find(|r| r.name == *name) {
            Some(run) => format!(
                "status {}: {}",
                run.status
                    .map_or_else(|| "unfinished".to_owned(), |s| s.to_string()),
                Figures::of(run).line()
            ),
            None => "did not run".to_owned(),
        };
        let _ = writeln!(text, "{name:<11} {line}");
    }
    fs::write(dir.join(format!("{}.txt", boot.kernel)), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_connections_events_and_losses() {
        let text = "\
@@SCENARIO rr BEGIN@@
@@DUMP client-a@@
198.51.100.11:1 172.31.0.10:80 ok
- 172.31.0.10:80 error refused
@@END client-a status=1@@
@@DUMP client-a.stderr@@
lab-net: 1 of 2 connections to 172.31.0.10:80 failed
@@END client-a.stderr status=0@@
@@DUMP trace.out@@
{}
{}
@@END trace.out status=0@@
@@DUMP trace.stderr@@
ipvs-trace summary
  events: new=2 template=0 reused=0 no_dest=0
  lost: 4 (ring buffer full)   malformed: 0
@@END trace.stderr status=0@@
@@SCENARIO rr END status=0 elapsed=1.50@@
";
        let runs = output::parse_scenarios(text);
        let figures = Figures::of(&runs[0]);
        assert_eq!(
            figures,
            Figures {
                connections: 2,
                failed_connections: 1,
                events: 2,
                lost: Some(4),
                elapsed_s: Some(1.5)
            }
        );
        assert_eq!(
            figures.line(),
            "2 connections (1 failed), 2 events, lost 4, 1.50 s"
        );
    }

    #[test]
    fn the_kernels_booted_are_those_the_filters_select() {
        let args = |a: &[&str]| -> Vec<String> { a.iter().map(|s| (*s).to_owned()).collect() };
        assert_eq!(selected_kernels(&args(&[])), Kernel::ALL);
        assert_eq!(
            selected_kernels(&args(&["--test-threads", "2", "v6_12::", "v7_2::rr"])),
            [Kernel::V6_12, Kernel::V7_2]
        );
        // `6_1` is part of `v6_1::` and of `v6_12::`.
        assert_eq!(
            selected_kernels(&args(&["6_1"])),
            [Kernel::V6_1, Kernel::V6_12]
        );
        assert_eq!(
            selected_kernels(&args(&["--exact", "v6_1::rr"])),
            [Kernel::V6_1]
        );
        // 7.2 does not run `balance`; a value of --skip is no filter.
        assert_eq!(
            selected_kernels(&args(&["balance", "--skip", "v7_2"])),
            [Kernel::V5_10, Kernel::V6_1, Kernel::V6_12]
        );
        assert!(selected_kernels(&args(&["every_scenario_is_tested"])).is_empty());
    }
}
