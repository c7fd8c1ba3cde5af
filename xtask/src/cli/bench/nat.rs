//! `nat`: the `overhead` benchmark's connection storm through kube-proxy's nftables mode, where
//! the tracer's one probe is the NAT binding (`nf_nat_setup_info`): without and with the
//! tracer in each mode and attach path, each traced run compared with the untraced rate
//! around it, as `overhead` does for IPVS.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::figures::{bench_lines, field, float, rate, write};
use super::guest::{timed_run, GuestClock};
use super::overhead::overhead_workload;
use super::Args;

pub(super) fn nat(args: &Args, dir: &Path) -> Result<()> {
    let env = format!(
        "STORM={}\nEXCHANGES={}\nROUNDS={}\n",
        args.storm, args.exchanges, args.rounds
    );
    let clock = if args.wall_clock {
        GuestClock::Wall
    } else {
        GuestClock::Instructions
    };
    // The floor (bpftrace) and the per-program profile (bpftool): Debian's packages, copied
    // into this boot only.
    let output = timed_run(
        args,
        dir,
        "nat",
        &env,
        clock,
        "the nat benchmark's floor and profile",
        &[
            ("bpftrace", "/usr/bin/bpftrace"),
            ("bpftool", "/usr/sbin/bpftool"),
        ],
    )?;
    let parsed = Parsed::read(&output)?;
    let clock_name = match clock {
        GuestClock::Wall => "wall clock",
        GuestClock::Instructions => "instructions, 1 ns each",
    };
    println!(
        "nat: {} rounds on {} through kube-proxy's nftables mode (QEMU TCG, one vCPU, guest \
         time = {clock_name}: only the ratios mean something); {} connections a `conn` run, {} \
         request/response exchanges a `packets` run",
        args.rounds, args.kernel, args.storm, args.exchanges,
    );
    let workloads = parsed
        .runs
        .iter()
        .map(|(workload, list)| overhead_workload(workload, list))
        .collect::<Result<Vec<_>>>()?;
    for (mode, traced) in &parsed.traced {
        println!(
            "traced {mode}: events [{}], lost [{}]",
            traced
                .iter()
                .map(|(t, _)| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            traced
                .iter()
                .map(|(_, l)| l.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    for (mode, runs) in &parsed.placement {
        println!(
            "placement {mode}: connections per pod (numgen random), each run [{}]",
            runs.join(", ")
        );
    }
    for p in &parsed.profile {
        println!(
            "profile {}: {} executes {} instructions a run, {:.2} runs a connection ({} runs \
             for {} connections; kernel.bpf_stats_enabled, its hook's entry and exit not \
             included)",
            p.attach,
            p.program,
            p.per_run(),
            p.per_conn(),
            p.runs,
            p.conns
        );
    }
    if let Some(c) = &parsed.conntrack {
        println!(
            "conntrack over the boot: drop {}, early_drop {}, insert_failed {}",
            c.drop, c.early_drop, c.insert_failed
        );
    }
    write(dir, "nat.json", &parsed.json(args, clock_name, &workloads)?)
}

/// A NAT program's run statistics (`bench: nat profile=... program=... runs=... ns=...
/// conns=...`).
struct Profile {
    attach: String,
    program: String,
    runs: u64,
    ns: u64,
    conns: u64,
}

impl Profile {
    /// Instructions a run: under icount a nanosecond of a program's run time is one.
    fn per_run(&self) -> u64 {
        self.ns.checked_div(self.runs).unwrap_or(0)
    }

    /// How often the hook fired for one connection.
    fn per_conn(&self) -> f64 {
        if self.conns == 0 {
            0.0
        } else {
            float(self.runs) / float(self.conns)
        }
    }
}

/// conntrack's drop counters over the boot (`conntrack -S`, summed over CPUs).
struct Conntrack {
    drop: u64,
    early_drop: u64,
    insert_failed: u64,
}

/// What the script printed.
#[derive(Default)]
struct Parsed {
    /// Every run in the order it ran, per workload: (mode, units/s).
    runs: Vec<(String, Vec<(String, f64)>)>,
    /// Per traced mode (`workload/attach.mode`): (events traced, counted lost) of each run.
    traced: Vec<(String, Vec<(u64, u64)>)>,
    /// Per `packets` mode: how many connections each pod got, in each run (`8+10+10+12`).
    placement: Vec<(String, Vec<String>)>,
    profile: Vec<Profile>,
    conntrack: Option<Conntrack>,
}

impl Parsed {
    fn read(output: &str) -> Result<Parsed> {
        let mut parsed = Parsed::default();
        for line in bench_lines(output, "nat") {
            let text_of = |key: &str| line.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            if let (Some(workload), Some(mode)) = (text_of("workload"), text_of("mode")) {
                if let Some(placement) = text_of("placement") {
                    let key = format!("{workload}/{mode}");
                    match parsed.placement.iter_mut().find(|(m, _)| *m == key) {
                        Some((_, list)) => list.push(placement),
                        None => parsed.placement.push((key, vec![placement])),
                    }
                    continue;
                }
                if text_of("traced").is_some() {
                    let key = format!("{workload}/{mode}");
                    let run = (field(&line, "traced")?, field(&line, "lost")?);
                    match parsed.traced.iter_mut().find(|(m, _)| *m == key) {
                        Some((_, list)) => list.push(run),
                        None => parsed.traced.push((key, vec![run])),
                    }
                    continue;
                }
                let rate = rate(&line)?;
                match parsed.runs.iter_mut().find(|(w, _)| *w == workload) {
                    Some((_, list)) => list.push((mode, rate)),
                    None => parsed.runs.push((workload, vec![(mode, rate)])),
                }
            } else if let (Some(attach), Some(program)) = (text_of("profile"), text_of("program")) {
                parsed.profile.push(Profile {
                    attach,
                    program,
                    runs: field(&line, "runs")?,
                    ns: field(&line, "ns")?,
                    conns: field(&line, "conns")?,
                });
            } else if text_of("insert_failed").is_some() {
                parsed.conntrack = Some(Conntrack {
                    drop: field(&line, "drop")?,
                    early_drop: field(&line, "early_drop")?,
                    insert_failed: field(&line, "insert_failed")?,
                });
            } else if let Some(reason) = text_of("reason") {
                println!(
                    "nat: no bpftrace floor (empty programs on the same hook): {}",
                    reason.replace('_', " ")
                );
            }
        }
        Ok(parsed)
    }

    fn json(&self, args: &Args, clock_name: &str, workloads: &[String]) -> Result<String> {
        let mut json = String::new();
        write!(
            json,
            "{{\n  \"bench\": \"nat\",\n  \"dataplane\": \"nftables\",\n  \"kernel\": \"{}\",\n  \
             \"guest\": \"QEMU TCG, -smp 1\",\n  \"clock\": \"{clock_name}\",\n  \
             \"conns_per_run\": {},\n  \"exchanges_per_run\": {},\n  \"workloads\": {{\n{}\n  }},\n  \
             \"traced_lost\": {{ {} }},\n  \"placement\": {{ {} }},\n  \"profile\": [{}],\n  \
             \"conntrack\": {}\n}}\n",
            args.kernel,
            args.storm,
            args.exchanges,
            workloads.join(",\n"),
            self.traced
                .iter()
                .map(|(mode, runs)| format!(
                    "\"{mode}\": [{}]",
                    runs.iter()
                        .map(|(t, l)| format!("[{t}, {l}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .collect::<Vec<_>>()
                .join(", "),
            self.placement
                .iter()
                .map(|(mode, runs)| format!(
                    "\"{mode}\": [{}]",
                    runs.iter()
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .collect::<Vec<_>>()
                .join(", "),
            self.profile
                .iter()
                .map(|p| format!(
                    "{{ \"attach\": \"{}\", \"program\": \"{}\", \"runs\": {}, \"conns\": {}, \
                     \"runs_per_conn\": {:.3}, \"instructions_per_run\": {} }}",
                    p.attach,
                    p.program,
                    p.runs,
                    p.conns,
                    p.per_conn(),
                    p.per_run()
                ))
                .collect::<Vec<_>>()
                .join(", "),
            self.conntrack.as_ref().map_or_else(
                || "null".to_owned(),
                |c| format!(
                    "{{ \"drop\": {}, \"early_drop\": {}, \"insert_failed\": {} }}",
                    c.drop, c.early_drop, c.insert_failed
                )
            ),
        )?;
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runs_traced_counts_profile_and_conntrack() {
        let output = "bench: nat round=1 workload=conn mode=without units=20000 ns=4000000000\n\
                      bench: nat round=1 workload=conn mode=fentry.stopped units=20000 ns=4100000000\n\
                      bench: nat round=1 workload=conn mode=fentry.stopped traced=20000 lost=0\n\
                      bench: nat round=1 workload=packets mode=without placement=9+10+10+11\n\
                      bench: nat round=2 workload=conn mode=without units=20000 ns=4000000000\n\
                      bench: nat profile=fentry program=nf_nat_setup_info_fexit runs=4000 \
                      ns=600000 conns=2000\n\
                      bench: nat conntrack drop=0 early_drop=0 insert_failed=3\n";
        let parsed = Parsed::read(output).unwrap();
        let (workload, runs) = &parsed.runs[0];
        assert_eq!(workload, "conn");
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[1].0, "fentry.stopped");
        assert!((runs[0].1 - 5000.0).abs() < 1e-9);
        assert_eq!(
            parsed.traced,
            [("conn/fentry.stopped".to_owned(), vec![(20000, 0)])]
        );
        let profile = &parsed.profile[0];
        assert_eq!((profile.per_run(), profile.per_conn()), (150, 2.0));
        assert_eq!(
            parsed.placement,
            [("packets/without".to_owned(), vec!["9+10+10+11".to_owned()])]
        );
        assert_eq!(parsed.conntrack.as_ref().unwrap().insert_failed, 3);
    }
}
