//! The userspace pipeline's throughput on one core: ring-buffer records through the real decoder
//! and Kubernetes name lookup (`decode_lookup`), and the same plus the JSON line (`decode_lookup_json`);
//! then both with serve's decision history on (`decode_lookup_record`,
//! `decode_lookup_record_json`: a real [`HistoryRecorder`], memory only at the default capacity,
//! and `_disk` with `--history-dir` on a temporary directory), where beside the event loop's rate
//! the decisions the recorder's worker stored and dropped (queue full) count: its goal is to
//! keep up with 1,000,000 a second.
//! A measurement, not a test: run by `cargo xtask bench` (`cargo bench -p ipvs-trace --bench
//! pipeline -- --out FILE`), which writes FILE as JSON.
//!
//! The records are what the eBPF side writes for a kube-proxy node of a large cluster: the
//! synthetic 100k-pod / 20k-Service index (`kube::index::synthetic`), connections spread over
//! all of it, mostly `new` with the seed scenario's field shapes (IPv4, Masq, rr/wrr, every
//! valid bit), some `expire`, `reused` and `no_dest`.

#![expect(
    clippy::cast_precision_loss,
    reason = "decision counts shown as rates with a few significant digits"
)]

use std::hint::black_box;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipvs_trace::clock::WallClock;
use ipvs_trace::events::decode::{decode, RECORD_LEN};
use ipvs_trace::history::recorder::{HistoryCounters, HistoryRecorder, RecorderConfig};
use ipvs_trace::kube::index::synthetic;
use ipvs_trace::kube::{self, Names, SharedIndex};
use ipvs_trace::output::{OutputFormat, Printer};
use ipvs_trace_common::event::valid;
use ipvs_trace_common::{ConnEvent, EventKind};

/// Distinct records, replayed in order (larger than the CPU caches, as a busy node's are).
const RECORDS: u32 = 1_000_000;
const REPETITIONS: usize = 7;
const GOAL_LOOKUP: f64 = 2_000_000.0;
const GOAL_JSON: f64 = 500_000.0;
/// Decisions a second the recorder must store without dropping (the goal).
const GOAL_RECORDED: f64 = 1_000_000.0;
/// Events per ring drain: the recorder's batch is handed over once per drain.
const DRAIN: usize = 256;

fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Record `i` as the eBPF side fills it.
fn record(i: u32) -> ConnEvent {
    let (vip, backend, client): (SocketAddr, SocketAddr, IpAddr) = synthetic::connection(i);
    let mut raw = ConnEvent::zeroed();
    // 80% new, 12% expire, 6% reused, 2% no_dest: a node under steady load.
    let kind = match i % 50 {
        0..=39 => EventKind::New,
        40..=45 => EventKind::Expire,
        46..=48 => EventKind::Reused,
        _ => EventKind::NoDest,
    };
    raw.header.kind = kind as u32;
    raw.header.cpu = i % 2;
    raw.header.timestamp_ns = 5_000_000_000 + u64::from(i) * 1_000;
    raw.header.netns = 4_026_531_840;
    raw.af = libc::AF_INET as u16;
    raw.daf = libc::AF_INET as u16;
    raw.protocol = 6;
    raw.client_addr = addr_bytes(client);
    raw.client_port = 32768 + (i % 28_000) as u16;
    raw.vip_addr = addr_bytes(vip.ip());
    raw.vip_port = vip.port();
    raw.valid = valid::SCHEDULER | valid::NETNS | valid::CLIENT_PORT;
    let scheduler: &[u8] = if i.is_multiple_of(3) { b"wrr" } else { b"rr" };
    raw.scheduler[..scheduler.len()].copy_from_slice(scheduler);
    if kind != EventKind::NoDest {
        raw.conn = 0xffff_8f3a_0000_0000 + u64::from(i) * 0x100;
        raw.backend_addr = addr_bytes(backend.ip());
        raw.backend_port = backend.port();
        raw.flags = 0x0100; // IP_VS_CONN_F_HASHED, Masq
        raw.state = if kind == EventKind::Expire { 8 } else { 1 };
        raw.weight = 1;
        raw.active_conns = (i % 40) as i32;
        raw.inactive_conns = (i % 7) as i32;
        raw.valid |= valid::DEST | valid::BACKEND;
    }
    raw
}

/// The records as one contiguous byte buffer, as the ring buffer hands them out.
fn records() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RECORDS as usize * RECORD_LEN);
    for i in 0..RECORDS {
        let raw = record(i);
        // SAFETY: `ConnEvent` is `#[repr(C)]` plain data with explicit padding fields (no
        // uninitialised bytes), so viewing it as bytes reads only initialised memory.
        let view = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&raw).cast::<u8>(), RECORD_LEN)
        };
        bytes.extend_from_slice(view);
    }
    bytes
}

/// Events per second of each repetition of `pass`, which handles every record once and returns
/// a count that must not be optimised away.
fn measure(name: &str, bytes: &[u8], mut pass: impl FnMut(&[u8]) -> u64) -> Vec<f64> {
    let _warm = pass(bytes);
    (0..REPETITIONS)
        .map(|rep| {
            let started = Instant::now();
            black_box(pass(bytes));
            let rate = f64::from(RECORDS) / started.elapsed().as_secs_f64();
            eprintln!("  {name} #{}: {rate:.0} events/s", rep + 1);
            rate
        })
        .collect()
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(rates: &[f64]) -> Stats {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    Stats {
        median: sorted[sorted.len() / 2],
        min: sorted[0],
        max: sorted[sorted.len() - 1],
    }
}

fn result_json(name: &str, rates: &[f64], goal: f64) -> serde_json::Value {
    let s = stats(rates);
    serde_json::json!({
        "name": name,
        "unit": "events/s",
        "median": s.median.round(),
        "min": s.min.round(),
        "max": s.max.round(),
        "spread_pct": ((s.max - s.min) / s.median * 100.0 * 10.0).round() / 10.0,
        "runs": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "goal": goal,
        "goal_met": s.median >= goal,
    })
}

/// One repetition of a stage with the recorder on.
struct Recorded {
    /// Events a second through the event loop (decode, lookup, record, flush; the line).
    rate: f64,
    /// Decisions the worker stored in memory, and dropped because its queue was full.
    stored: u64,
    dropped: u64,
    /// Decisions a second stored, from the repetition's start until the worker had stored or
    /// dropped every one of them.
    stored_rate: f64,
    /// CPU time the worker thread spent (user + system), and the repetition's wall time: a
    /// worker that stores less while using less CPU is waiting, not working.
    worker_cpu: Duration,
    wall: Duration,
}

/// CPU time (user + system) of this process's thread named `name`, from
/// `/proc/self/task/*/stat` (clock ticks of 10 ms).
fn thread_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        return Duration::from_secs_f64(ticks as f64 / hz as f64);
    }
    Duration::ZERO
}

/// Waits until the worker has stored or dropped `total` decisions (at most a minute).
fn drained(counters: &HistoryCounters, total: u64) {
    let started = Instant::now();
    while counters.recorded.load(Ordering::Relaxed)
        + counters.dropped_queue_full.load(Ordering::Relaxed)
        < total
        && started.elapsed() < Duration::from_mins(1)
    {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs `pass` (which records every record once and flushes every [`DRAIN`]) through one
/// recorder for a warm-up and [`REPETITIONS`]: the store fills during the warm-up, so the
/// repetitions pay for eviction as a long-running serve does.
fn measure_recorded(
    name: &str,
    bytes: &[u8],
    dir: Option<&Path>,
    mut pass: impl FnMut(&[u8], &mut HistoryRecorder) -> u64,
) -> Vec<Recorded> {
    let (mut recorder, _store) = HistoryRecorder::start(RecorderConfig {
        dir: dir.map(Path::to_owned),
        ..RecorderConfig::default()
    })
    .expect("the recorder starts");
    let counters = recorder.counters();
    let mut total = 0u64;
    let mut run = |recorder: &mut HistoryRecorder| {
        let before = (
            counters.recorded.load(Ordering::Relaxed),
            counters.dropped_queue_full.load(Ordering::Relaxed),
        );
        let cpu_before = thread_cpu("history");
        let started = Instant::now();
        black_box(pass(bytes, recorder));
        recorder.flush();
        let looped = started.elapsed();
        total += u64::from(RECORDS);
        drained(&counters, total);
        let stored = counters.recorded.load(Ordering::Relaxed) - before.0;
        Recorded {
            rate: f64::from(RECORDS) / looped.as_secs_f64(),
            stored,
            dropped: counters.dropped_queue_full.load(Ordering::Relaxed) - before.1,
            stored_rate: stored as f64 / started.elapsed().as_secs_f64(),
            worker_cpu: thread_cpu("history").saturating_sub(cpu_before),
            wall: started.elapsed(),
        }
    };
    let _warm = run(&mut recorder);
    let runs = (0..REPETITIONS)
        .map(|rep| {
            let r = run(&mut recorder);
            eprintln!(
                "  {name} #{}: {:.0} events/s, {} stored ({:.0}/s), {} dropped; worker CPU {:.2?} of {:.2?}",
                rep + 1,
                r.rate,
                r.stored,
                r.stored_rate,
                r.dropped,
                r.worker_cpu,
                r.wall,
            );
            r
        })
        .collect();
    let _summary = recorder.finish();
    runs
}

/// `goal`: `None` where it is informational (the disk's).
fn recorded_json(name: &str, runs: &[Recorded], goal: Option<f64>) -> serde_json::Value {
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let stored_rates: Vec<f64> = runs.iter().map(|r| r.stored_rate).collect();
    let recorded: Vec<f64> = runs
        .iter()
        .map(|r| r.stored as f64 / f64::from(RECORDS) * r.rate)
        .collect();
    let mut out = result_json(name, &rates, 0.0);
    let s = stats(&recorded);
    let stored = stats(&stored_rates);
    out["goal"] = serde_json::json!(null);
    out["goal_met"] = serde_json::json!(null);
    out["recorded"] = serde_json::json!({
        "unit": "decisions/s",
        "what": "events/s of the loop times the share of its decisions the worker stored",
        "median": s.median.round(),
        "min": s.min.round(),
        "max": s.max.round(),
        "stored": runs.iter().map(|r| r.stored).collect::<Vec<_>>(),
        "dropped_queue_full": runs.iter().map(|r| r.dropped).collect::<Vec<_>>(),
        "worker_cpu_share": runs
            .iter()
            .map(|r| (r.worker_cpu.as_secs_f64() / r.wall.as_secs_f64() * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        "worker_decisions_per_sec": {
            "what": "decisions stored from the repetition's start until the worker caught up",
            "median": stored.median.round(),
            "min": stored.min.round(),
            "max": stored.max.round(),
        },
        "goal": goal.unwrap_or(GOAL_RECORDED),
        "goal_informational": goal.is_none(),
        "goal_met": s.median >= goal.unwrap_or(GOAL_RECORDED) && runs.iter().all(|r| r.dropped == 0),
    });
    out
}

/// The event loop with the recorder on, as `serve` runs it: per event the lookup under the
/// index's read lock, `record`, and with `printer` the line formatted under the lock and
/// written after it; `flush` once per [`DRAIN`] events. With `pace` (events a second), each
/// drain waits for its turn, as a loop fed by the kernel at that rate would: the worker then
/// has to keep up with the pace, not with a loop running flat out.
fn record_pass(
    bytes: &[u8],
    recorder: &mut HistoryRecorder,
    index: &SharedIndex,
    printer: Option<&Printer>,
    pace: Option<f64>,
) -> u64 {
    let started = Instant::now();
    let clock = WallClock::with_offset(1_795_713_172_000_000_000);
    let mut sink = io::sink();
    let mut out = io::BufWriter::with_capacity(64 << 10, &mut sink);
    let mut line = Vec::with_capacity(1024);
    let mut handled = 0u64;
    for (i, record) in bytes.chunks_exact(RECORD_LEN).enumerate() {
        let Ok(event) = decode(record) else { continue };
        let index = kube::read(index);
        let names = index.names(&event);
        recorder.record(clock.unix_ns(event.timestamp_ns) as i64, &event, &names);
        if let Some(printer) = printer {
            line.clear();
            printer
                .event(&mut line, &event, &names)
                .expect("a Vec takes it");
            drop(index);
            out.write_all(&line).expect("a sink takes it");
        }
        handled += 1;
        if i % DRAIN == DRAIN - 1 {
            recorder.flush();
            if let Some(rate) = pace {
                // Asleep until the drain is due, as a loop waiting on the ring is: a spin
                // would take the core the worker may need.
                let due = Duration::from_secs_f64((i + 1) as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    out.flush().expect("a sink takes it");
    handled
}

/// `--memory`: the resident memory of serve's two large parts, the name index of the synthetic
/// 100k-pod / 20k-Service cluster and a full in-memory history at the default `--history-size`
/// (the synthetic records, names resolved as serve resolves them, recorded at the pace the
/// worker takes them so none is dropped). `VmRSS` from /proc/self/status after each step.
fn memory(bytes: &[u8], index: &SharedIndex, out: Option<&str>) -> io::Result<()> {
    let with_index = rss_kib("VmRSS")?;
    let (mut recorder, store) =
        HistoryRecorder::start(RecorderConfig::default()).expect("the recorder starts");
    let counters = recorder.counters();
    let capacity = RecorderConfig::default().memory_capacity as u64;
    let mut sent = 0u64;
    // Twice round the records: the store fills, then evicts, as a long-running serve does.
    while sent < capacity + u64::from(RECORDS) {
        for chunk in bytes.chunks(RECORD_LEN * DRAIN) {
            for record in chunk.chunks_exact(RECORD_LEN) {
                let Ok(event) = decode(record) else { continue };
                let names_of = kube::read(index);
                recorder.record(event.timestamp_ns as i64, &event, &names_of.names(&event));
                sent += 1;
            }
            recorder.flush();
            drained(&counters, sent);
        }
    }
    let full = rss_kib("VmRSS")?;
    let peak = rss_kib("VmHWM")?;
    let dropped = counters.dropped_queue_full.load(Ordering::Relaxed);
    let kept = store.memory_len();
    let result = serde_json::json!({
        "bench": "pipeline-memory",
        "history_size": capacity,
        "decisions_recorded": sent,
        "decisions_in_memory": kept,
        "dropped": dropped,
        "rss_index_mib": (with_index as f64 / 1024.0 * 10.0).round() / 10.0,
        "rss_index_and_history_mib": (full as f64 / 1024.0 * 10.0).round() / 10.0,
        "peak_rss_mib": (peak as f64 / 1024.0 * 10.0).round() / 10.0,
        "history_bytes_per_decision": ((full - with_index) as f64 * 1024.0 / kept as f64).round(),
    });
    println!(
        "memory: index {:.1} MiB, index + full history ({kept} decisions) {:.1} MiB, peak {:.1} MiB, {dropped} dropped",
        with_index as f64 / 1024.0,
        full as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _summary = recorder.finish();
    let text = serde_json::to_string_pretty(&result)? + "\n";
    if let Some(path) = out {
        return std::fs::write(path, text);
    }
    print!("{text}");
    Ok(())
}

/// A `/proc/self/status` line in KiB (`VmRSS`, `VmHWM`).
fn rss_kib(field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc/self/status")))
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the time goes: each stage alone over the same records, in ns per event.
fn breakdown(bytes: &[u8], index: &SharedIndex, printer: &Printer) -> serde_json::Value {
    let events: Vec<_> = bytes
        .chunks_exact(RECORD_LEN)
        .map(|r| decode(r).expect("the synthetic records decode"))
        .collect();
    let per_event = |started: Instant| started.elapsed().as_secs_f64() * 1e9 / f64::from(RECORDS);

    let started = Instant::now();
    for record in bytes.chunks_exact(RECORD_LEN) {
        black_box(decode(black_box(record)).ok());
    }
    let decode_ns = per_event(started);

    let started = Instant::now();
    for event in &events {
        black_box(kube::read(index).names(event));
    }
    let lookup_ns = per_event(started);

    let whole = kube::read(index);
    let names: Vec<Names> = events.iter().map(|e| whole.names(e)).collect();

    let mut out = Vec::with_capacity(64 << 20);
    let started = Instant::now();
    for (event, names) in events.iter().zip(&names) {
        printer
            .event(&mut out, event, names)
            .expect("a Vec takes it");
        if out.len() > (60 << 20) {
            out.clear();
        }
    }
    let json_ns = per_event(started);

    drop(names);
    drop(whole);

    let started = Instant::now();
    for event in &events {
        black_box(event.clone());
    }
    let drop_ns = per_event(started);
    serde_json::json!({
        "decode_ns": (decode_ns * 10.0).round() / 10.0,
        "lookup_ns": (lookup_ns * 10.0).round() / 10.0,
        "json_line_ns": (json_ns * 10.0).round() / 10.0,
        "event_clone_drop_ns": (drop_ns * 10.0).round() / 10.0,
    })
}

#[expect(
    clippy::too_many_lines,
    reason = "one stage after the other, printed as it goes"
)]
fn main() -> io::Result<()> {
    // `cargo bench` passes `--bench`; the rest is ours.
    let args: Vec<String> = std::env::args().collect();
    let out_path = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();

    eprintln!(
        "pipeline: building the synthetic index ({} pods, {} services)",
        synthetic::PODS,
        synthetic::SERVICES
    );
    let built = synthetic::build();
    eprintln!("pipeline: index built in {:.2?}", built.elapsed);
    let index: SharedIndex = Arc::new(RwLock::new(built.index));
    let bytes = records();
    if args.iter().any(|a| a == "--memory") {
        return memory(&bytes, &index, out_path.as_deref());
    }
    // Any fixed clock: the wall-clock offset only shifts the printed timestamps.
    let printer = Printer::new(
        OutputFormat::Json,
        WallClock::with_offset(1_795_713_172_000_000_000),
    );

    let lookup = measure("decode+lookup", &bytes, |bytes| {
        let mut hits = 0u64;
        for record in bytes.chunks_exact(RECORD_LEN) {
            let Ok(event) = decode(record) else { continue };
            // The trace loop's lock: one read lock per event, held while its names are used.
            let index = kube::read(&index);
            let names = index.names(&event);
            hits += u64::from(names.backend.is_some());
            black_box(names);
        }
        hits
    });
    let mut sink = io::sink();
    let json = measure("decode+lookup+json", &bytes, |bytes| {
        // The trace loop writes into a buffered stdout and flushes per drain; a BufWriter over
        // a sink keeps that shape without measuring a terminal or pipe.
        let mut out = io::BufWriter::with_capacity(64 << 10, &mut sink);
        let mut line = Vec::with_capacity(1024);
        let mut lines = 0u64;
        for record in bytes.chunks_exact(RECORD_LEN) {
            let Ok(event) = decode(record) else { continue };
            // As the trace loop does: the line is formatted under the index's read lock and
            // written out after it.
            let index = kube::read(&index);
            let names = index.names(&event);
            line.clear();
            printer
                .event(&mut line, &event, &names)
                .expect("a Vec takes it");
            drop(index);
            out.write_all(&line).expect("a sink takes it");
            lines += 1;
        }
        out.flush().expect("a sink takes it");
        lines
    });
    let record = measure_recorded("decode+lookup+record", &bytes, None, |bytes, recorder| {
        record_pass(bytes, recorder, &index, None, None)
    });
    let record_json = measure_recorded(
        "decode+lookup+record+json",
        &bytes,
        None,
        |bytes, recorder| record_pass(bytes, recorder, &index, Some(&printer), None),
    );
    let history_dir = TempDir(
        std::env::temp_dir().join(format!("ipvs-trace-bench-pipeline-{}", std::process::id())),
    );
    let disk_run = |name: &str, printer: Option<&Printer>, pace: Option<f64>| {
        let _ = std::fs::remove_dir_all(&history_dir.0);
        let runs = measure_recorded(name, &bytes, Some(&history_dir.0), |bytes, recorder| {
            record_pass(bytes, recorder, &index, printer, pace)
        });
        let _ = std::fs::remove_dir_all(&history_dir.0);
        runs
    };
    let record_disk = disk_run("decode+lookup+record (disk)", None, None);
    let record_json_disk = disk_run("decode+lookup+record+json (disk)", Some(&printer), None);
    // The goal as a node meets it: decisions arriving at 1,000,000 a second, every one stored.
    let record_disk_paced = disk_run(
        "decode+lookup+record (disk) at 1,000,000/s",
        None,
        Some(GOAL_RECORDED),
    );
    let mut breakdown = breakdown(&bytes, &index, &printer);
    // The JSON line as the pipeline pays for it: the isolated stage above reads names no lookup
    // has just brought into the cache, the pipeline's line writes names it has.
    breakdown["json_line_in_pipeline_ns"] = serde_json::json!(
        ((1e9 / stats(&json).median - 1e9 / stats(&lookup).median) * 10.0).round() / 10.0
    );

    let mut sample = Vec::new();
    let first = decode(&bytes[..RECORD_LEN]).expect("the synthetic records decode");
    printer
        .event(&mut sample, &first, &kube::read(&index).names(&first))
        .expect("a Vec takes it");

    let result = serde_json::json!({
        "bench": "pipeline",
        "records": RECORDS,
        "repetitions": REPETITIONS,
        "index": {
            "pods": synthetic::PODS,
            "services": synthetic::SERVICES,
            "endpoints": synthetic::SERVICES * synthetic::ENDPOINTS_PER_SERVICE,
            "nodes": synthetic::NODES,
        },
        "results": [
            result_json("decode_lookup", &lookup, GOAL_LOOKUP),
            result_json("decode_lookup_json", &json, GOAL_JSON),
            recorded_json("decode_lookup_record", &record, Some(GOAL_RECORDED)),
            recorded_json("decode_lookup_record_json", &record_json, Some(GOAL_RECORDED)),
            recorded_json("decode_lookup_record_disk", &record_disk, None),
            recorded_json("decode_lookup_record_json_disk", &record_json_disk, None),
            recorded_json(
                "decode_lookup_record_disk_paced",
                &record_disk_paced,
                Some(GOAL_RECORDED),
            ),
        ],
        "breakdown_ns_per_event": breakdown,
        "sample_line": String::from_utf8_lossy(&sample).trim_end(),
    });
    for (name, rates) in [("decode+lookup", &lookup), ("decode+lookup+json", &json)] {
        let s = stats(rates);
        println!(
            "{name}: median {:.0} events/s (min {:.0}, max {:.0}, {} runs of {RECORDS} on one thread)",
            s.median, s.min, s.max, REPETITIONS
        );
    }
    for (name, runs) in [
        ("decode+lookup+record", &record),
        ("decode+lookup+record+json", &record_json),
        ("decode+lookup+record (disk)", &record_disk),
        ("decode+lookup+record+json (disk)", &record_json_disk),
        (
            "decode+lookup+record (disk) at 1,000,000/s",
            &record_disk_paced,
        ),
    ] {
        let loop_rates = stats(&runs.iter().map(|r| r.rate).collect::<Vec<_>>());
        let stored = stats(&runs.iter().map(|r| r.stored_rate).collect::<Vec<_>>());
        let dropped: u64 = runs.iter().map(|r| r.dropped).sum();
        println!(
            "{name}: median {:.0} events/s (min {:.0}, max {:.0}); worker stored median {:.0} decisions/s (min {:.0}, max {:.0}), {dropped} of {} dropped (queue full)",
            loop_rates.median,
            loop_rates.min,
            loop_rates.max,
            stored.median,
            stored.min,
            stored.max,
            u64::from(RECORDS) * REPETITIONS as u64,
        );
    }
    println!("breakdown (ns/event): {breakdown}");
    if let Some(path) = out_path {
        std::fs::write(&path, serde_json::to_string_pretty(&result)? + "\n")?;
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(())
}
