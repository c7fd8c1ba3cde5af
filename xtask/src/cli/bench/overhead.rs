//! `overhead`: the same traffic through IPVS without and with the tracer in each mode and
//! attach path, each traced run compared with the untraced rate around it.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};

use super::figures::{bench_lines, field, float, listed, rate, spread, write};
use super::guest::{timed_run, GuestClock};
use super::Args;

pub(super) fn overhead(args: &Args, dir: &Path) -> Result<()> {
    let env = format!(
        "STORM={}\nEXCHANGES={}\nROUNDS={}\n",
        args.storm, args.exchanges, args.rounds
    );
    let clock = if args.wall_clock {
        GuestClock::Wall
    } else {
        GuestClock::Instructions
    };
    // The peer and the floor (bpftrace), the bulk stream (iperf3) and the per-program profile
    // (bpftool): Debian's packages, copied into this boot only.
    let output = timed_run(
        args,
        dir,
        "overhead",
        &env,
        clock,
        "the overhead benchmark's peer, floor, bulk stream and profile",
        &[
            ("bpftrace", "/usr/bin/bpftrace"),
            ("iperf3", "/usr/bin/iperf3"),
            ("bpftool", "/usr/sbin/bpftool"),
        ],
    )?;
    let parsed = Parsed::read(&output)?;
    let clock_name = match clock {
        GuestClock::Wall => "wall clock",
        GuestClock::Instructions => "instructions, 1 ns each",
    };
    println!(
        "overhead: {} rounds on {} (QEMU TCG, one vCPU, guest time = {clock_name}: only the \
         ratios mean something); {} connections a `conn` run, {} request/response exchanges a \
         `packets` run ({} packets each)",
        args.rounds,
        args.kernel,
        args.storm,
        args.exchanges,
        parsed
            .packets_per_exchange
            .map_or_else(|| "?".to_owned(), |p| format!("{p:.2}")),
    );
    let workloads = parsed
        .runs
        .iter()
        .map(|(workload, list)| overhead_workload(workload, list))
        .collect::<Result<Vec<_>>>()?;
    for p in &parsed.profile {
        println!(
            "profile {}: {} executes {} instructions a run ({} runs; kernel.bpf_stats_enabled, \
             its hook's entry and exit not included)",
            p.attach,
            p.program,
            p.per_run(),
            p.runs
        );
    }
    write(
        dir,
        "overhead.json",
        &parsed.json(args, clock_name, &workloads)?,
    )
}

/// A program's run statistics (`bench: overhead profile=... program=... runs=... ns=...`).
struct Profile {
    attach: String,
    program: String,
    runs: u64,
    ns: u64,
}

impl Profile {
    /// Instructions a run: under icount a nanosecond of a program's run time is one.
    fn per_run(&self) -> u64 {
        self.ns.checked_div(self.runs).unwrap_or(0)
    }
}

/// What the script printed.
#[derive(Default)]
struct Parsed {
    /// Every run in the order it ran, per workload: (mode, units/s).
    runs: Vec<(String, Vec<(String, f64)>)>,
    /// (records traced, lost) per traced run.
    traced: Vec<(u64, u64)>,
    packets_per_exchange: Option<f64>,
    peer_counted: Vec<String>,
    profile: Vec<Profile>,
}

impl Parsed {
    fn read(output: &str) -> Result<Parsed> {
        let mut parsed = Parsed::default();
        for line in bench_lines(output, "overhead") {
            let text_of = |key: &str| line.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            if let (Some(workload), Some(mode)) = (text_of("workload"), text_of("mode")) {
                let rate = rate(&line)?;
                match parsed.runs.iter_mut().find(|(w, _)| *w == workload) {
                    Some((_, list)) => list.push((mode, rate)),
                    None => parsed.runs.push((workload, vec![(mode, rate)])),
                }
            } else if text_of("packets").is_some() {
                parsed.packets_per_exchange =
                    Some(float(field(&line, "packets")?) / float(field(&line, "exchanges")?));
            } else if let Some(counted) = text_of("peer-counted") {
                parsed.peer_counted.push(counted);
            } else if let (Some(attach), Some(program)) = (text_of("profile"), text_of("program")) {
                parsed.profile.push(Profile {
                    attach,
                    program,
                    runs: field(&line, "runs")?,
                    ns: field(&line, "ns")?,
                });
            } else if let Some(reason) = text_of("reason") {
                let what = if text_of("floor").is_some() {
                    "floor (empty programs on the same hooks)"
                } else {
                    "peer"
                };
                println!("overhead: no bpftrace {what}: {}", reason.replace('_', " "));
            } else {
                parsed
                    .traced
                    .push((field(&line, "traced")?, field(&line, "lost")?));
            }
        }
        Ok(parsed)
    }

    fn json(&self, args: &Args, clock_name: &str, workloads: &[String]) -> Result<String> {
        let mut json = String::new();
        write!(
            json,
            "{{\n  \"bench\": \"overhead\",\n  \"kernel\": \"{}\",\n  \"guest\": \"QEMU TCG, -smp 1\",\n  \
             \"clock\": \"{clock_name}\",\n  \"conns_per_run\": {},\n  \"exchanges_per_run\": {},\n  \
             \"packets_per_exchange\": {},\n  \"workloads\": {{\n{}\n  }},\n  \"traced_lost\": [{}],\n  \
             \"peer_counted\": [{}],\n  \"profile\": [{}]\n}}\n",
            args.kernel,
            args.storm,
            args.exchanges,
            self.packets_per_exchange
                .map_or_else(|| "null".to_owned(), |p| format!("{p:.3}")),
            workloads.join(",\n"),
            self.traced
                .iter()
                .map(|(t, l)| format!("[{t}, {l}]"))
                .collect::<Vec<_>>()
                .join(", "),
            self.peer_counted.join(", "),
            self.profile
                .iter()
                .map(|p| format!(
                    "{{ \"attach\": \"{}\", \"program\": \"{}\", \"runs\": {}, \
                     \"instructions_per_run\": {} }}",
                    p.attach,
                    p.program,
                    p.runs,
                    p.per_run()
                ))
                .collect::<Vec<_>>()
                .join(", "),
        )?;
        Ok(json)
    }
}

/// One workload's report: printed, and its JSON member returned (`nat` reports its storms
/// the same way).
pub(super) fn overhead_workload(workload: &str, list: &[(String, f64)]) -> Result<String> {
    let (without, rates) = bracketed(list)?;
    let goals = overhead_goals(workload);
    println!(
        "{workload}: units/s without the tracer [{}]",
        listed(&without, 0)
    );
    let mut modes = Vec::new();
    for (mode, storms) in &rates {
        let ratios: Vec<f64> = storms.iter().map(|(rate, base)| rate / base).collect();
        // At one instruction a nanosecond, the time a unit took more is what it cost.
        let extra: Vec<f64> = storms
            .iter()
            .map(|(rate, base)| (1.0 / rate - 1.0 / base) * 1e9)
            .collect();
        let with: Vec<f64> = storms.iter().map(|(rate, _)| *rate).collect();
        let (median, min, max) = spread(&ratios);
        let (extra_median, extra_min, extra_max) = spread(&extra);
        let goal = goals
            .iter()
            .find(|(m, _)| mode.ends_with(&format!(".{m}")))
            .map(|(_, g)| *g);
        let goal_text = goal.map_or_else(String::new, |g| {
            format!(
                ", goal >= {g} {}",
                if median >= g { "met" } else { "NOT met" }
            )
        });
        println!(
            "  {mode}/without: ratio median {median:.3} (min {min:.3}, max {max:.3}){goal_text}; \
             +{extra_median:.0} instructions a unit ({extra_min:.0}..{extra_max:.0}); units/s [{}]",
            listed(&with, 0)
        );
        modes.push(format!(
            "      \"{mode}\": {{ \"ratio_median\": {median:.4}, \"ratio_min\": {min:.4}, \
             \"ratio_max\": {max:.4}, \"ratios\": [{}], \"extra_instructions_median\": \
             {extra_median:.0}, \"extra_instructions\": [{}], \"rate\": [{}], \"goal\": {} }}",
            listed(&ratios, 4),
            listed(&extra, 0),
            listed(&with, 1),
            goal.map_or_else(|| "null".to_owned(), |g| g.to_string()),
        ));
    }
    Ok(format!(
        "    \"{workload}\": {{\n      \"rate_without\": [{}],\n{}\n    }}",
        listed(&without, 1),
        modes.join(",\n")
    ))
}

/// The goals for a workload's modes (the ratio with/without, 6.12): per connection
/// `stopped` 0.985 and `with` 0.975; per packet `stopped` 0.99; a filter matching nothing
/// (`quiet`) 0.99 on both.
fn overhead_goals(workload: &str) -> &'static [(&'static str, f64)] {
    match workload {
        "conn" => &[("stopped", 0.985), ("with", 0.975), ("quiet", 0.99)],
        "packets" => &[("stopped", 0.99), ("quiet", 0.99)],
        _ => &[],
    }
}

/// A traced mode's storms: (connections/s, connections/s without the tracer at that moment).
type ModeStorms = (String, Vec<(f64, f64)>);

/// The `without` rates in order, and per other mode each storm's rate with the rate without
/// the tracer at its moment: interpolated between the `without` storms run just before and
/// just after it, by position in the sequence.
///
/// The guest's speed drifts over a run (up to 20% between early and late storms of one boot:
/// TCG's translation caches, the host), and with a fixed order within a round a plain
/// per-round ratio hands that drift to whichever mode runs last. A bracketing baseline cancels
/// any linear drift.
fn bracketed(storms: &[(String, f64)]) -> Result<(Vec<f64>, Vec<ModeStorms>)> {
    let without: Vec<(usize, f64)> = storms
        .iter()
        .enumerate()
        .filter(|(_, (mode, _))| mode == "without")
        .map(|(at, (_, rate))| (at, *rate))
        .collect();
    if without.is_empty() {
        bail!("no `bench: overhead ... mode=without` line from the script");
    }
    let mut modes: Vec<ModeStorms> = Vec::new();
    for (at, (mode, rate)) in storms.iter().enumerate() {
        if mode == "without" {
            continue;
        }
        let before = without.iter().rev().find(|(w, _)| *w < at);
        let after = without.iter().find(|(w, _)| *w > at);
        let (Some(&(b, before)), Some(&(a, after))) = (before, after) else {
            bail!(
                "storm {} (`{mode}`) has no `without` storm on both sides (the script's order \
                 changed?)",
                at + 1
            );
        };
        // Positions in a list of a few dozen storms: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let baseline = before + (after - before) * (at - b) as f64 / (a - b) as f64;
        match modes.iter_mut().find(|(m, _)| m == mode) {
            Some((_, list)) => list.push((*rate, baseline)),
            None => modes.push((mode.clone(), vec![(*rate, baseline)])),
        }
    }
    Ok((without.into_iter().map(|(_, rate)| rate).collect(), modes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketing_baselines_cancel_a_linear_drift() {
        // The guest speeds up by 10 connections/s per storm; the tracer costs nothing in
        // `with` and 10% in `stopped`.
        let storms: Vec<(String, f64)> = ["without", "with", "stopped", "without", "with"]
            .iter()
            .zip([100.0, 110.0, 0.9 * 120.0, 130.0, 140.0])
            .map(|(mode, rate)| ((*mode).to_owned(), rate))
            .chain([("without".to_owned(), 150.0)])
            .collect();
        let (without, modes) = bracketed(&storms).unwrap();
        assert_eq!(without, [100.0, 130.0, 150.0]);
        let ratios = |name: &str| -> Vec<f64> {
            let (_, list) = modes.iter().find(|(m, _)| m == name).unwrap();
            list.iter().map(|(rate, base)| rate / base).collect()
        };
        for ratio in ratios("with") {
            assert!((ratio - 1.0).abs() < 1e-12, "{ratio}");
        }
        assert!((ratios("stopped")[0] - 0.9).abs() < 1e-12);
        // A plain ratio to the round's first storm would have said 1.10 and 1.08.
    }

    #[test]
    fn a_storm_without_a_baseline_after_it_is_an_error() {
        let storms = vec![("without".to_owned(), 100.0), ("with".to_owned(), 90.0)];
        let err = bracketed(&storms).unwrap_err().to_string();
        assert!(err.contains("storm 2 (`with`)"), "{err}");
    }
}
