//! `cargo xtask bench`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::lab::{self, Kernel, LabRun};
use crate::{cmd, paths};

/// Benchmarks: measurements, not tests. Each prints its figures and writes them as JSON under
/// target/bench/; a rate below its goal is reported, not failed.
///
/// - `pipeline` (host, release build): recorded ring-buffer records through the real decoder
///   and Kubernetes name lookup over a 100k-pod / 20k-Service index, then the same plus the JSON
///   line into a sink; events/s on one thread, median and spread of 7 runs. Goals 2,000,000/s
///   and 500,000/s.
/// - `loss` (lab): a burst of connections into a one-page ring while the tracer is stopped
///   (SIGSTOP): delivered + counted lost must equal the connections IPVS created (ipvsadm
///   --stats). The one check here: exits 1 if the accounting is not exact.
/// - `overhead` (lab): the same TCP connection storm through an IPVS rr service without and
///   with the tracer attached, interleaved; the throughput ratio with/without (goal 0.95), for
///   the tracer printing every event (`with`) and for one whose filter matches nothing
///   (`quiet`: probes, ring and decoding only; the guest's single vCPU also runs the tracer's
///   userspace, which a real node runs on another core). Under QEMU TCG absolute rates mean
///   nothing; the ratios do.
///
/// Exit status: 0, or 1 if loss accounting was not exact, or 125 if a benchmark could not run.
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
    /// `overhead`: connections per storm.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    storm: u32,
    /// `overhead`: rounds of (without, with).
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Bench {
    Pipeline,
    Loss,
    Overhead,
}

pub(super) fn run(args: &Args) -> Result<ExitCode> {
    crate::setup::run()?;
    let dir = paths::target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wanted = |bench: Bench| args.only.is_none_or(|only| only == bench);
    let mut exact = true;
    if wanted(Bench::Pipeline) {
        pipeline(&dir)?;
    }
    if wanted(Bench::Loss) {
        exact = loss(args, &dir)?;
    }
    if wanted(Bench::Overhead) {
        overhead(args, &dir)?;
    }
    Ok(if exact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn pipeline(dir: &Path) -> Result<()> {
    let out = dir.join("pipeline.json");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut bench = Command::new(cargo);
    bench
        .current_dir(paths::workspace_root())
        .args([
            "bench",
            "-p",
            "ipvs-trace",
            "--bench",
            "pipeline",
            "--",
            "--out",
        ])
        .arg(&out);
    eprintln!("+ {}", cmd::display(&bench));
    let status = bench.status().context("could not start cargo bench")?;
    if !status.success() {
        bail!("the pipeline benchmark failed ({status}): see above");
    }
    eprintln!("bench pipeline: wrote {}", out.display());
    Ok(())
}

/// The `bench: NAME key=value...` lines a lab script printed, as key/value lists.
fn bench_lines(output: &str, name: &str) -> Vec<Vec<(String, String)>> {
    let prefix = format!("bench: {name} ");
    output
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix(&prefix))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

fn field(pairs: &[(String, String)], key: &str) -> Result<u64> {
    let value = pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .with_context(|| format!("no `{key}=` in the bench line"))?;
    value
        .parse()
        .with_context(|| format!("`{key}={value}` is not a count (the script's output changed?)"))
}

/// Boots the lab with a bench script and its settings (/lab/bench.env).
fn lab_run(args: &Args, dir: &Path, name: &str, env: &str) -> Result<String> {
    let env_file = dir.join(format!("{name}.env"));
    std::fs::write(&env_file, env).with_context(|| format!("writing {}", env_file.display()))?;
    let script = paths::workspace_root().join(format!("xtask/bench/{name}.sh"));
    let files: [(PathBuf, String); 1] = [(env_file, "/lab/bench.env".to_owned())];
    eprintln!(
        "bench {name}: running {} in the Debian {} guest",
        script.display(),
        args.kernel
    );
    let output = lab::run(&LabRun {
        kernel: args.kernel,
        script: &script,
        extra_files: &files,
        stream: true,
        timeout: Duration::from_mins(30),
    })?;
    if output.status != 0 {
        bail!(
            "the {name} benchmark script exited with status {}\n{}",
            output.status,
            lab::tail_report(&output, "last console lines")
        );
    }
    Ok(output.script_output)
}

fn loss(args: &Args, dir: &Path) -> Result<bool> {
    let output = lab_run(args, dir, "loss", &format!("BURST={}\n", args.burst))?;
    let lines = bench_lines(&output, "loss");
    let [line] = lines.as_slice() else {
        bail!(
            "expected one `bench: loss` line from the script, got {}",
            lines.len()
        );
    };
    let (delivered, lost, conns) = (
        field(line, "delivered")?,
        field(line, "lost")?,
        field(line, "conns")?,
    );
    let exact = delivered + lost == conns;
    println!(
        "loss: {conns} connections (ipvsadm --stats Conns), {delivered} delivered + {lost} lost = {} \
         ({}), ring one page, tracer stopped during the burst",
        delivered + lost,
        if exact { "exact" } else { "NOT EXACT" }
    );
    let json = format!(
        "{{\n  \"bench\": \"loss\",\n  \"kernel\": \"{}\",\n  \"ring_size\": \"one page\",\n  \
         \"burst\": {},\n  \"conns\": {conns},\n  \"delivered\": {delivered},\n  \
         \"lost\": {lost},\n  \"exact\": {exact}\n}}\n",
        args.kernel, args.burst
    );
    write(dir, "loss.json", &json)?;
    Ok(exact)
}

fn overhead(args: &Args, dir: &Path) -> Result<()> {
    let env = format!("STORM={}\nROUNDS={}\n", args.storm, args.rounds);
    let output = lab_run(args, dir, "overhead", &env)?;
    // Connections/s per mode, in round order.
    let mut rates: Vec<(String, Vec<f64>)> = Vec::new();
    let mut traced = Vec::new();
    for line in bench_lines(&output, "overhead") {
        let mode = line
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.clone());
        if let Some(mode) = mode {
            let small = |key| -> Result<f64> { Ok(f64::from(u32::try_from(field(&line, key)?)?)) };
            let rate = small("conns")? / (small("cs")? / 100.0);
            match rates.iter_mut().find(|(m, _)| *m == mode) {
                Some((_, list)) => list.push(rate),
                None => rates.push((mode, vec![rate])),
            }
        } else {
            traced.push((field(&line, "traced")?, field(&line, "lost")?));
        }
    }
    let Some((_, without)) = rates.iter().find(|(m, _)| m == "without").cloned() else {
        bail!("no `bench: overhead ... mode=without` line from the script");
    };
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "overhead: {} rounds of {} TCP connections through IPVS rr (QEMU TCG, one vCPU: only \
         the ratios mean something); connections/s without the tracer [{}]",
        without.len(),
        args.storm,
        list(&without, 0)
    );
    let mut modes = Vec::new();
    let mut goal_met = false;
    for (mode, with) in rates.iter().filter(|(m, _)| m != "without") {
        if with.len() != without.len() {
            bail!(
                "{} storms `{mode}` but {} without the tracer",
                with.len(),
                without.len()
            );
        }
        // Each round's storms ran back to back, so its ratio is the least exposed to drift.
        let ratios: Vec<f64> = with.iter().zip(&without).map(|(w, wo)| w / wo).collect();
        let (median, min, max) = spread(&ratios);
        if mode == "with" {
            goal_met = median >= 0.95;
        }
        println!(
            "overhead {mode}/without: ratio median {median:.3} (min {min:.3}, max {max:.3}), \
             goal >= 0.95; connections/s [{}]",
            list(with, 0)
        );
        modes.push(format!(
            "    \"{mode}\": {{ \"ratio_median\": {median:.4}, \"ratio_min\": {min:.4}, \
             \"ratio_max\": {max:.4}, \"ratios\": [{}], \"rate\": [{}] }}",
            list(&ratios, 4),
            list(with, 1)
        ));
    }
    let mut json = String::new();
    write!(
        json,
        "{{\n  \"bench\": \"overhead\",\n  \"kernel\": \"{}\",\n  \"guest\": \"QEMU TCG, -smp 1\",\n  \
         \"conns_per_storm\": {},\n  \"rate_without\": [{}],\n  \"modes\": {{\n{}\n  }},\n  \
         \"traced_lost\": [{}],\n  \"goal\": 0.95,\n  \"goal_met\": {goal_met}\n}}\n",
        args.kernel,
        args.storm,
        list(&without, 1),
        modes.join(",\n"),
        traced
            .iter()
            .map(|(t, l)| format!("[{t}, {l}]"))
            .collect::<Vec<_>>()
            .join(", "),
    )?;
    write(dir, "overhead.json", &json)
}

/// Median, min and max.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])
    };
    (median, sorted[0], sorted[n - 1])
}

fn write(dir: &Path, name: &str, json: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bench_lines_among_console_noise() {
        let output = "lab: [123] clients done\r\nbench: loss delivered=40 lost=1960 conns=2000\r\n\
                      bench: lossy x=1\nbench: overhead round=1 mode=with conns=10 cs=5\n";
        let lines = bench_lines(output, "loss");
        assert_eq!(lines.len(), 1);
        assert_eq!(field(&lines[0], "lost").unwrap(), 1960);
        assert!(field(&lines[0], "new").is_err());
        assert_eq!(bench_lines(output, "overhead")[0][1].1, "with");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
