//! `memory`: the RSS of `ipvs-trace serve` with a 100k-pod cluster indexed, through the watch
//! path and from a snapshot, beside serve with no names.

mod cluster;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::figures::{bench_lines, field, float, mib, write};
use super::guest::{lab_run_with, GuestClock};
use super::Args;

/// One `bench: memory` measurement: kB of VmRSS / VmHWM at the points the script reads them.
struct MemoryRun {
    mode: String,
    fields: Vec<(String, String)>,
}

impl MemoryRun {
    fn kb(&self, key: &str) -> Result<u64> {
        field(&self.fields, key).with_context(|| format!("memory mode {}", self.mode))
    }
}

pub(super) fn memory(args: &Args, dir: &Path) -> Result<()> {
    let objects_file = dir.join("memory-cluster.json");
    let objects = cluster::write(&objects_file)?;
    let size = std::fs::metadata(&objects_file)?.len();
    eprintln!(
        "bench memory: wrote {} ({objects} objects, {} MiB)",
        objects_file.display(),
        size >> 20
    );
    // Connections go to Services 1 and 2 of the synthetic cluster (ClusterIPs, pod addresses
    // and port as the objects say), so every event resolves through the big index.
    let env = format!(
        "EVENTS={}\nVIPS=\"{} {}\"\nOBJECTS={objects}\n",
        args.events,
        cluster::cluster_ip(1),
        cluster::cluster_ip(2),
    );
    let files = [(objects_file, "/lab/cluster.json".to_owned())];
    let output = lab_run_with(
        args,
        dir,
        "memory",
        &env,
        &files,
        Duration::from_mins(40),
        GuestClock::Wall,
    )?;
    let runs: Vec<MemoryRun> = bench_lines(&output, "memory")
        .into_iter()
        .filter_map(|fields| {
            let mode = fields.iter().find(|(k, _)| k == "mode")?.1.clone();
            Some(MemoryRun { mode, fields })
        })
        .collect();
    let get = |mode: &str| {
        runs.iter()
            .find(|r| r.mode == mode)
            .with_context(|| format!("no `bench: memory mode={mode}` line from the script"))
    };
    let (baseline, watch, snapshot) = (get("baseline")?, get("watch")?, get("snapshot")?);
    println!(
        "memory: ipvs-trace serve, VmRSS after start / after {} connections, peak VmHWM",
        args.events
    );
    let mut modes = Vec::new();
    for run in [baseline, watch, snapshot] {
        let (ready, events, peak) = (run.kb("ready_kb")?, run.kb("events_kb")?, run.kb("hwm_kb")?);
        let synced_s = float(run.kb("synced_cs")?) / 100.0;
        let what = match run.mode.as_str() {
            "baseline" => "no names (--no-kube)".to_owned(),
            "watch" => format!(
                "{} objects watched from the lab's API server, synced in {synced_s:.0} s",
                run.kb("objects")?
            ),
            _ => format!(
                "the same {} objects as --kube-snapshot, loaded in {synced_s:.0} s",
                run.kb("objects")?
            ),
        };
        println!(
            "memory {}: index built {}, after events {}, peak {} ({what})",
            run.mode,
            mib(ready),
            mib(events),
            mib(peak)
        );
        modes.push(format!(
            "    \"{}\": {{ \"ready_rss_kb\": {ready}, \"events_rss_kb\": {events}, \
             \"peak_hwm_kb\": {peak}, \"synced_s\": {synced_s:.1}, \"objects\": {} }}",
            run.mode,
            run.kb("objects")?
        ));
    }
    let apiserver = runs
        .iter()
        .find(|r| r.mode == "apiserver")
        .map_or(Ok(0), |r| r.kb("rss_kb"))?;
    let json = format!(
        "{{\n  \"bench\": \"memory\",\n  \"kernel\": \"{}\",\n  \"cluster\": {{ \"nodes\": {}, \
         \"pods\": {}, \"services\": {}, \"endpointslices\": {}, \"endpoints\": {} }},\n  \
         \"events\": {},\n  \"apiserver_rss_kb\": {apiserver},\n  \"modes\": {{\n{}\n  }}\n}}\n",
        args.kernel,
        cluster::NODES,
        cluster::PODS,
        cluster::SERVICES,
        cluster::SERVICES,
        cluster::SERVICES * cluster::ENDPOINTS_PER_SERVICE,
        args.events,
        modes.join(",\n"),
    );
    write(dir, "memory.json", &json)
}
