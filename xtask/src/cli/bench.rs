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
///
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
    /// `overhead`: connections per `conn` run.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    storm: u32,
    /// `overhead`: request/response exchanges per `packets` run (over 4 connections): 100,000
    /// take about 4 s of guest time, so the 1/100 s resolution of its uptime is 0.25%.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    exchanges: u32,
    /// `overhead`: rounds of (without, then with, quiet, stopped per attach path) per workload;
    /// one more `without` closes them.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: u32,
    /// `overhead`: time the storms by the guest's wall clock (the host's) instead of by
    /// executed instructions (QEMU -icount), which is noisier by an order of magnitude.
    #[arg(long)]
    wall_clock: bool,
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

/// A host benchmark: ipvs-trace's `benches/NAME.rs` in a release build with MODE flags, its
/// figures written to `NAME[-MODE].json` (`cargo bench --bench NAME -- MODE... --out FILE`).
fn host_bench(dir: &Path, name: &str, mode: &[&str]) -> Result<()> {
    let mut out = name.to_owned();
    for m in mode {
        out.push('-');
        out.push_str(m.trim_start_matches('-'));
    }
    let out = dir.join(format!("{out}.json"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut bench = Command::new(cargo);
    bench
        .current_dir(paths::workspace_root())
        .args(["bench", "-p", "ipvs-trace", "--bench", name, "--"])
        .args(mode)
        .arg("--out")
        .arg(&out);
    eprintln!("+ {}", cmd::display(&bench));
    let status = bench.status().context("could not start cargo bench")?;
    if !status.success() {
        bail!("the {name} benchmark failed ({status}): see above");
    }
    eprintln!("bench {name}: wrote {}", out.display());
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
    lab_run_with(
        args,
        dir,
        name,
        env,
        &[],
        Duration::from_mins(30),
        GuestClock::Wall,
    )
}

/// How the guest keeps time in a lab benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GuestClock {
    /// The host's wall clock, as in the tests.
    Wall,
    /// Executed instructions (QEMU `-icount`): for cost ratios.
    Instructions,
}

/// [`lab_run`] with more files for the guest, a timeout of its own and a choice of guest clock.
fn lab_run_with(
    args: &Args,
    dir: &Path,
    name: &str,
    env: &str,
    extra: &[(PathBuf, String)],
    timeout: Duration,
    clock: GuestClock,
) -> Result<String> {
    let env_file = dir.join(format!("{name}.env"));
    std::fs::write(&env_file, env).with_context(|| format!("writing {}", env_file.display()))?;
    let script = paths::workspace_root().join(format!("xtask/bench/{name}.sh"));
    let mut files = vec![(env_file, "/lab/bench.env".to_owned())];
    files.extend_from_slice(extra);
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
        timeout,
        icount: clock == GuestClock::Instructions,
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
    let env = format!(
        "STORM={}\nEXCHANGES={}\nROUNDS={}\n",
        args.storm, args.exchanges, args.rounds
    );
    let clock = if args.wall_clock {
        GuestClock::Wall
    } else {
        GuestClock::Instructions
    };
    // The peer (the bpftrace one-liner a user would write instead) and the bulk stream
    // (iperf3): Debian's packages, copied into this boot only.
    crate::setup::ensure_packages(
        "the overhead benchmark's peer and bulk stream",
        &["bpftrace", "iperf3"],
    )?;
    let mut extra = Vec::new();
    for program in ["/usr/bin/bpftrace", "/usr/bin/iperf3"] {
        extra.extend(lab::host_program(Path::new(program))?);
    }
    let output = lab_run_with(
        args,
        dir,
        "overhead",
        &env,
        &extra,
        Duration::from_hours(2),
        clock,
    )?;
    // Every run in the order it ran, per workload: (mode, units/s).
    let mut runs: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    let mut traced = Vec::new();
    let mut packets_per_exchange = None;
    let mut peer_counted = Vec::new();
    for line in bench_lines(&output, "overhead") {
        let text_of = |key: &str| line.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if let (Some(workload), Some(mode)) = (text_of("workload"), text_of("mode")) {
            let small = |key| -> Result<f64> { Ok(f64::from(u32::try_from(field(&line, key)?)?)) };
            let rate = small("units")? / (small("cs")? / 100.0);
            match runs.iter_mut().find(|(w, _)| *w == workload) {
                Some((_, list)) => list.push((mode, rate)),
                None => runs.push((workload, vec![(mode, rate)])),
            }
        } else if text_of("packets").is_some() {
            packets_per_exchange =
                Some(float(field(&line, "packets")?) / float(field(&line, "exchanges")?));
        } else if let Some(counted) = text_of("peer-counted") {
            peer_counted.push(counted);
        } else if let Some(reason) = text_of("reason") {
            let what = if text_of("floor").is_some() {
                "floor (empty programs on the same hooks)"
            } else {
                "peer"
            };
            println!("overhead: no bpftrace {what}: {}", reason.replace('_', " "));
        } else {
            traced.push((field(&line, "traced")?, field(&line, "lost")?));
        }
    }
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
        packets_per_exchange.map_or_else(|| "?".to_owned(), |p| format!("{p:.2}")),
    );
    let workloads = runs
        .iter()
        .map(|(workload, list)| overhead_workload(workload, list))
        .collect::<Result<Vec<_>>>()?;
    let mut json = String::new();
    write!(
        json,
        "{{\n  \"bench\": \"overhead\",\n  \"kernel\": \"{}\",\n  \"guest\": \"QEMU TCG, -smp 1\",\n  \
         \"clock\": \"{clock_name}\",\n  \"conns_per_run\": {},\n  \"exchanges_per_run\": {},\n  \
         \"packets_per_exchange\": {},\n  \"workloads\": {{\n{}\n  }},\n  \"traced_lost\": [{}],\n  \
         \"peer_counted\": [{}]\n}}\n",
        args.kernel,
        args.storm,
        args.exchanges,
        packets_per_exchange.map_or_else(|| "null".to_owned(), |p| format!("{p:.3}")),
        workloads.join(",\n"),
        traced
            .iter()
            .map(|(t, l)| format!("[{t}, {l}]"))
            .collect::<Vec<_>>()
            .join(", "),
        peer_counted.join(", "),
    )?;
    write(dir, "overhead.json", &json)
}

/// One workload's report: printed, and its JSON member returned.
fn overhead_workload(workload: &str, list: &[(String, f64)]) -> Result<String> {
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

/// The issue's goals for a workload's modes (the ratio with/without, 6.12): per connection
/// `stopped` 0.985 and `with` 0.975; per packet `stopped` 0.99; a filter matching nothing
/// (`quiet`) 0.99 on both.
fn overhead_goals(workload: &str) -> &'static [(&'static str, f64)] {
    match workload {
        "conn" => &[("stopped", 0.985), ("with", 0.975), ("quiet", 0.99)],
        "packets" => &[("stopped", 0.99), ("quiet", 0.99)],
        _ => &[],
    }
}

fn listed(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The synthetic cluster of `ipvs-trace/src/kube/index/synthetic.rs` (which the pipeline
/// benchmark indexes directly), as the `kubectl get -o json` List the lab's API server and
/// `--kube-snapshot` read: the same counts, names and addresses, so `memory` measures the index
/// the pipeline benchmark looks names up in. xtask does not link ipvs-trace, hence the copy of
/// the layout: 500 nodes (192.168.0.0/16), 100k pods (10.0.0.0/8), 20k Services (172.16.0.0/12,
/// ports http 80 -> 8080 and grpc 50091, every fifth a NodePort), one EndpointSlice of 5 pods
/// per Service. Each object carries the fields a real one has around what ipvs-trace reads
/// (labels, a container, conditions), so listing and decoding cost what they cost on a cluster.
mod cluster {
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::net::Ipv4Addr;
    use std::path::Path;

    use anyhow::{Context as _, Result};

    pub const NODES: u32 = 500;
    pub const PODS: u32 = 100_000;
    pub const SERVICES: u32 = 20_000;
    pub const ENDPOINTS_PER_SERVICE: u32 = 5;

    pub fn pod_ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + n)
    }

    pub fn cluster_ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xac10_0000 + n)
    }

    fn node_ip(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xc0a8_0000 + n)
    }

    fn node_port(s: u32) -> Option<u32> {
        s.is_multiple_of(5).then(|| 30000 + (s / 5) % 2768)
    }

    /// A pod lives in its Service's namespace (pods 5s..5s+4 back Service s).
    fn pod_namespace(p: u32) -> u32 {
        (p / ENDPOINTS_PER_SERVICE) % 200
    }

    /// Writes the List to `path`; returns the number of objects.
    pub fn write(path: &Path) -> Result<u32> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut objects = Vec::new();
        let mut line = String::new();
        let mut first = true;
        let mut emit = |line: &mut String, out: &mut std::io::BufWriter<_>| -> Result<()> {
            out.write_all(if first { b"\n" } else { b",\n" })?;
            first = false;
            out.write_all(line.as_bytes())?;
            line.clear();
            Ok(())
        };
        out.write_all(b"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[")?;
        for n in 0..NODES {
            write!(
                line,
                r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"node-{n}","labels":{{"kubernetes.io/hostname":"node-{n}","kubernetes.io/os":"linux"}}}},"spec":{{"podCIDR":"10.{}.0.0/24"}},"status":{{"addresses":[{{"type":"InternalIP","address":"{}"}},{{"type":"Hostname","address":"node-{n}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
                n % 256,
                node_ip(n)
            )?;
            emit(&mut line, &mut out)?;
        }
        objects.push(NODES);
        for p in 0..PODS {
            let s = p / ENDPOINTS_PER_SERVICE;
            write!(
                line,
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pod-5d8f7c9b6-abcde-{p:06}","namespace":"ns-{ns}","labels":{{"app":"svc-{s:06}","pod-template-hash":"5d8f7c9b6"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"svc-{s:06}-5d8f7c9b6","uid":"00000000-0000-4000-8000-{s:012}","controller":true}}]}},"spec":{{"nodeName":"node-{node}","containers":[{{"name":"app","image":"registry.example/app:1.{s}","ports":[{{"name":"http","containerPort":8080,"protocol":"TCP"}},{{"name":"grpc","containerPort":50091,"protocol":"TCP"}}]}}]}},"status":{{"phase":"Running","hostIP":"{host}","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
                ns = pod_namespace(p),
                node = p % NODES,
                host = node_ip(p % NODES),
                ip = pod_ip(p),
            )?;
            emit(&mut line, &mut out)?;
        }
        objects.push(PODS);
        for s in 0..SERVICES {
            let (kind, node_port) = match node_port(s) {
                Some(port) => ("NodePort", format!(r#","nodePort":{port}"#)),
                None => ("ClusterIP", String::new()),
            };
            write!(
                line,
                r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"svc-{s:06}","namespace":"ns-{ns}","labels":{{"app":"svc-{s:06}"}}}},"spec":{{"type":"{kind}","clusterIP":"{ip}","clusterIPs":["{ip}"],"selector":{{"app":"svc-{s:06}"}},"ports":[{{"name":"http","protocol":"TCP","port":80,"targetPort":8080{node_port}}},{{"name":"grpc","protocol":"TCP","port":50091,"targetPort":50091}}]}}}}"#,
                ns = s % 200,
                ip = cluster_ip(s),
            )?;
            emit(&mut line, &mut out)?;
        }
        objects.push(SERVICES);
        for s in 0..SERVICES {
            write!(
                line,
                r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"svc-{s:06}-x7k2p","namespace":"ns-{ns}","labels":{{"kubernetes.io/service-name":"svc-{s:06}"}}}},"addressType":"IPv4","ports":[{{"name":"http","protocol":"TCP","port":8080}},{{"name":"grpc","protocol":"TCP","port":50091}}],"endpoints":["#,
                ns = s % 200,
            )?;
            for e in 0..ENDPOINTS_PER_SERVICE {
                let p = s * ENDPOINTS_PER_SERVICE + e;
                write!(
                    line,
                    r#"{}{{"addresses":["{}"],"conditions":{{"ready":true,"serving":true,"terminating":false}},"nodeName":"node-{}","targetRef":{{"kind":"Pod","name":"pod-5d8f7c9b6-abcde-{p:06}","namespace":"ns-{}"}}}}"#,
                    if e == 0 { "" } else { "," },
                    pod_ip(p),
                    p % NODES,
                    pod_namespace(p),
                )?;
            }
            line.push_str("]}");
            emit(&mut line, &mut out)?;
        }
        objects.push(SERVICES);
        out.write_all(b"\n]}\n")?;
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(objects.iter().sum())
    }
}

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

fn mib(kb: u64) -> String {
    mib_f(float(kb))
}

fn mib_f(kb: f64) -> String {
    format!("{:.1} MiB", kb / 1024.0)
}

fn memory(args: &Args, dir: &Path) -> Result<()> {
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

/// The soak fails if the tracer's RSS grows faster than this over the second half of the run
/// (least-squares slope of the 10 s samples). A leak of 100 bytes per connection at the
/// soak's rate (about 50 connections/s under TCG) is 290 KiB/min; allocator noise (a 512 KiB
/// step mid-window moves the slope by about 150 KiB/min over 5 minutes) stays under it.
const SOAK_RSS_SLOPE_BOUND_KB_PER_MIN: f64 = 256.0;

/// Least-squares slope of (seconds, kB) points, in kB per minute.
fn slope_per_min(points: &[(f64, f64)]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    let n = float(points.len() as u64);
    let (mean_t, mean_v) = points
        .iter()
        .fold((0.0, 0.0), |(t, v), (pt, pv)| (t + pt / n, v + pv / n));
    let (cov, var) = points.iter().fold((0.0, 0.0), |(c, s), (t, v)| {
        (
            c + (t - mean_t) * (v - mean_v),
            s + (t - mean_t) * (t - mean_t),
        )
    });
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

fn text<'a>(pairs: &'a [(String, String)], key: &str) -> Result<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .with_context(|| format!("no `{key}=` in the bench line"))
}

/// Accounting of one run: every connection the kernel scheduled (`conns`, per service) is a
/// delivered `new` event or one of the `lost` records. Lost records are not attributed to a
/// service (the ring drops them before decoding) and may be other kinds (templates), so with
/// losses a service may show fewer events than connections, by at most `lost` in all.
fn unaccounted(services: &[(u64, u64)], lost: u64) -> Option<u64> {
    let (mut conns, mut new) = (0, 0);
    for &(c, n) in services {
        if n > c {
            // More events than connections: nothing the ring can explain.
            return Some(n - c);
        }
        conns += c;
        new += n;
    }
    let missing = conns - new;
    (missing > lost).then_some(missing - lost)
}

/// kB counts and seconds as floats for the arithmetic: far below 2^52, nothing is lost.
#[expect(
    clippy::cast_precision_loss,
    reason = "counts of kB and seconds, far below 2^52"
)]
fn float(value: u64) -> f64 {
    value as f64
}

/// What one soak run reported and how it was judged.
struct Soak<'a> {
    total: &'a [(String, String)],
    services: Vec<&'a [(String, String)]>,
    /// (seconds into the traffic, tracer VmRSS kB)
    rss: Vec<(f64, f64)>,
    status: u64,
    summary: bool,
    lost: u64,
    conns: u64,
    new: u64,
    missing: Option<u64>,
    slope: f64,
}

impl<'a> Soak<'a> {
    fn judge(lines: &'a [Vec<(String, String)>]) -> Result<Soak<'a>> {
        let mut rss = Vec::new();
        let mut services = Vec::new();
        let mut total = None;
        for line in lines {
            let has = |key: &str| line.iter().any(|(k, _)| k == key);
            if has("rss_kb") {
                rss.push((float(field(line, "t")?), float(field(line, "rss_kb")?)));
            } else if has("service") {
                services.push(line.as_slice());
            } else if has("status") {
                total = Some(line.as_slice());
            }
        }
        let Some(total) = total else {
            bail!("no `bench: soak status=...` line from the script");
        };
        if services.is_empty() || rss.len() < 4 {
            bail!(
                "the soak script reported {} services and {} RSS samples; too few to judge",
                services.len(),
                rss.len()
            );
        }
        let lost = field(total, "lost")?;
        let counts = services
            .iter()
            .map(|s| Ok((field(s, "conns")?, field(s, "new")?)))
            .collect::<Result<Vec<_>>>()?;
        let end = rss.last().map_or(0.0, |p| p.0);
        let second_half: Vec<(f64, f64)> =
            rss.iter().copied().filter(|p| p.0 >= end / 2.0).collect();
        Ok(Soak {
            total,
            status: field(total, "status")?,
            summary: field(total, "summary")? == 1,
            lost,
            conns: counts.iter().map(|c| c.0).sum(),
            new: counts.iter().map(|c| c.1).sum(),
            missing: unaccounted(&counts, lost),
            slope: slope_per_min(&second_half),
            services,
            rss,
        })
    }

    fn clean_exit(&self) -> bool {
        self.status == 0 && self.summary
    }

    fn flat(&self) -> bool {
        self.slope <= SOAK_RSS_SLOPE_BOUND_KB_PER_MIN
    }

    fn passed(&self) -> bool {
        self.clean_exit() && self.missing.is_none() && self.flat()
    }

    /// (first, last, max) kB.
    fn rss_span(&self) -> (f64, f64, f64) {
        let max = self.rss.iter().map(|p| p.1).fold(0.0, f64::max);
        (self.rss[0].1, self.rss[self.rss.len() - 1].1, max)
    }

    fn print(&self, minutes: u32) -> Result<()> {
        let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
        let total = self.total;
        println!(
            "soak: {minutes} min, {} churn steps; tracer exit status {}, summary {} ({})",
            field(total, "churn")?,
            self.status,
            if self.summary { "printed" } else { "MISSING" },
            verdict(self.clean_exit())
        );
        for s in &self.services {
            let named = match field(s, "named")? {
                0 => String::new(),
                n => format!(", {n} named"),
            };
            let template = match field(s, "template")? {
                0 => String::new(),
                t => format!(" (+{t} template)"),
            };
            println!(
                "soak {} {} {} {}: kernel Conns {} / new events {}{template}{named}",
                text(s, "service")?,
                text(s, "proto")?,
                text(s, "vip")?,
                text(s, "sched")?,
                field(s, "conns")?,
                field(s, "new")?,
            );
        }
        println!(
            "soak accounting: {} connections scheduled (ipvsadm --stats Conns), {} new + {} lost; \
             reused {}, no_dest {}, malformed {}; client connections ok {} failed {} ({})",
            self.conns,
            self.new,
            self.lost,
            field(total, "reused")?,
            field(total, "no_dest")?,
            field(total, "malformed")?,
            field(total, "clients_ok")?,
            field(total, "clients_failed")?,
            match self.missing {
                None => "accounted".to_owned(),
                Some(n) => format!("{n} UNACCOUNTED"),
            }
        );
        let (first, last, max) = self.rss_span();
        println!(
            "soak memory: tracer RSS, {} samples 10 s apart: first {}, last {}, max {}; \
             second-half slope {:.1} KiB/min, bound {SOAK_RSS_SLOPE_BOUND_KB_PER_MIN} ({})",
            self.rss.len(),
            mib_f(first),
            mib_f(last),
            mib_f(max),
            self.slope,
            verdict(self.flat())
        );
        Ok(())
    }

    fn json(&self, args: &Args) -> Result<String> {
        let total = self.total;
        let services = self
            .services
            .iter()
            .map(|s| {
                Ok(format!(
                    "    {{ \"name\": \"{}\", \"proto\": \"{}\", \"vip\": \"{}\", \
                     \"scheduler\": \"{}\", \"conns\": {}, \"new\": {}, \"template\": {}, \
                     \"named\": {} }}",
                    text(s, "service")?,
                    text(s, "proto")?,
                    text(s, "vip")?,
                    text(s, "sched")?,
                    field(s, "conns")?,
                    field(s, "new")?,
                    field(s, "template")?,
                    field(s, "named")?
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let series = self
            .rss
            .iter()
            .map(|(t, kb)| format!("[{t:.0}, {kb:.0}]"))
            .collect::<Vec<_>>()
            .join(", ");
        let (first, last, max) = self.rss_span();
        let mut json = String::new();
        write!(
            json,
            "{{\n  \"bench\": \"soak\",\n  \"kernel\": \"{}\",\n  \"minutes\": {},\n  \
             \"churn_steps\": {},\n  \"services\": [\n{}\n  ],\n  \"conns\": {},\n  \"new\": {},\n  \
             \"template\": {},\n  \"reused\": {},\n  \"no_dest\": {},\n  \"lost\": {},\n  \
             \"malformed\": {},\n  \"unaccounted\": {},\n  \"clients_ok\": {},\n  \
             \"clients_failed\": {},\n  \"tracer_status\": {},\n  \"summary_printed\": {},\n  \
             \"rss\": {{ \"first_kb\": {first:.0}, \"last_kb\": {last:.0}, \"max_kb\": {max:.0}, \
             \"second_half_slope_kb_per_min\": {:.1}, \"bound_kb_per_min\": \
             {SOAK_RSS_SLOPE_BOUND_KB_PER_MIN}, \"series_s_kb\": [{series}] }},\n  \
             \"checks\": {{ \"clean_exit\": {}, \"accounted\": {}, \"flat_memory\": {} }},\n  \
             \"passed\": {}\n}}\n",
            args.kernel,
            args.minutes,
            field(total, "churn")?,
            services.join(",\n"),
            self.conns,
            self.new,
            field(total, "template")?,
            field(total, "reused")?,
            field(total, "no_dest")?,
            self.lost,
            field(total, "malformed")?,
            self.missing.unwrap_or(0),
            field(total, "clients_ok")?,
            field(total, "clients_failed")?,
            self.status,
            self.summary,
            self.slope,
            self.clean_exit(),
            self.missing.is_none(),
            self.flat(),
            self.passed(),
        )?;
        Ok(json)
    }
}

fn soak(args: &Args, dir: &Path) -> Result<bool> {
    let env = format!("MINUTES={}\n", args.minutes);
    let timeout = Duration::from_mins(u64::from(args.minutes) + 20);
    let output = lab_run_with(args, dir, "soak", &env, &[], timeout, GuestClock::Wall)?;
    let lines = bench_lines(&output, "soak");
    let soak = Soak::judge(&lines)?;
    soak.print(args.minutes)?;
    write(dir, "soak.json", &soak.json(args)?)?;
    if !soak.passed() {
        println!("soak: FAILED (see above)");
    }
    Ok(soak.passed())
}

/// Median, min and max.
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
    fn soak_accounting_allows_losses_only_as_counted() {
        assert_eq!(unaccounted(&[(10, 10), (5, 5)], 0), None);
        assert_eq!(unaccounted(&[(10, 9), (5, 5)], 0), Some(1));
        assert_eq!(unaccounted(&[(10, 8), (5, 4)], 3), None);
        assert_eq!(unaccounted(&[(10, 8), (5, 4)], 2), Some(1));
        // An event the kernel never counted is not excused by losses elsewhere.
        assert_eq!(unaccounted(&[(10, 11), (5, 3)], 5), Some(1));
    }

    #[test]
    fn slope_in_kb_per_minute() {
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i) * 10.0, 5000.0)).collect();
        assert!(slope_per_min(&flat).abs() < 1e-9);
        // 1 kB per 10 s is 6 kB per minute.
        let rising: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i) * 10.0, 5000.0 + f64::from(i)))
            .collect();
        assert!((slope_per_min(&rising) - 6.0).abs() < 1e-9);
    }

    #[test]
    fn cluster_objects_form_one_list() {
        let path = std::env::temp_dir().join(format!("bench-cluster-{}.json", std::process::id()));
        let objects = cluster::write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(objects, 140_500);
        assert!(text.starts_with("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n{"));
        assert!(text.ends_with("}\n]}\n"));
        assert_eq!(
            text.matches("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",")
                .count(),
            100_000
        );
        // Every object on a line of its own, and as many `{` as `}`.
        assert_eq!(text.lines().count(), 140_500 + 2);
        assert_eq!(text.matches('{').count(), text.matches('}').count());
        assert_eq!(text.matches("\"kind\":\"EndpointSlice\"").count(), 20_000);
        assert!(text.contains(r#""clusterIP":"172.16.0.1","#));
        assert!(text.contains(r#""podIP":"10.0.0.5","#));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
