//! The decision history's costs (`src/history`): decisions a second into the memory store and
//! onto disk, bytes a decision in memory (with the memory store full) and on disk, and query
//! latency over the memory store and over 10 million decisions on disk (`query_dir`, as
//! `who --history-dir` runs it). A measurement, not a test: run by `cargo xtask bench --only
//! history` (`cargo bench -p ipvs-trace --bench history -- --out FILE`), which writes FILE as
//! JSON.
//!
//! The decisions are what serve records on a kube-proxy node of a large cluster: the pipeline
//! benchmark's synthetic 100k-pod / 20k-Service index (`kube::index::synthetic`), connections
//! spread over all of it (names as varied as they get), mostly `new`, some `reused`,
//! `template` and `no_dest`, from two CPUs about 20 µs apart (50,000 a second).

#![expect(
    clippy::cast_precision_loss,
    reason = "byte counts and durations shown as figures with a few significant digits"
)]

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipvs_trace::events::{DestCounters, Event, FwdMethod, Proto};
use ipvs_trace::history::block::Collector;
use ipvs_trace::history::memory::Memory;
use ipvs_trace::history::segment::{query_dir, Limits, SegmentWriter};
use ipvs_trace::history::{Decision, Query};
use ipvs_trace::kube::index::synthetic;
use ipvs_trace::kube::Index;
use ipvs_trace_common::EventKind;

/// Decisions in the memory store: serve's default `--history-size`.
const MEMORY_DECISIONS: u32 = ipvs_trace::history::recorder::DEFAULT_MEMORY_CAPACITY as u32;
/// Decisions on disk for the query measurement.
const DISK_DECISIONS: u32 = 10_000_000;
const REPETITIONS: usize = 5;
const GOAL_DISK_BYTES: f64 = 64.0;
const GOAL_MEMORY_BYTES: f64 = 100.0;
const GOAL_QUERY_MS: f64 = 100.0;
/// Decisions a second the worker must store to keep up with the pipeline.
const GOAL_INSERT: f64 = 1_000_000.0;
/// Decisions per batch handed to the store (the recorder's batches are one ring drain each).
const CHUNK: usize = 4096;

/// 2026-11-26T17:12:52Z.
const START_NS: i64 = 1_795_713_172_000_000_000;

/// Decision `i` as serve records it, named by `index`.
fn decision(i: u32, index: &Index) -> Decision {
    let (vip, backend, client) = synthetic::connection(i);
    // 90% new, 5% reused, 3% template, 2% no_dest: a node under steady load.
    let kind = match i % 100 {
        0..=89 => EventKind::New,
        90..=94 => EventKind::Reused,
        95..=97 => EventKind::Template,
        _ => EventKind::NoDest,
    };
    let has_dest = kind != EventKind::NoDest;
    let client_port = if kind == EventKind::Template {
        0
    } else {
        32768 + ((i.wrapping_mul(7919) / 3) % 28_000) as u16
    };
    let unix_ns = START_NS + i64::from(i) * 20_000 + i64::from(i % 7) * 1_500;
    let event = Event {
        kind,
        dataplane: ipvs_trace::dataplane::Dataplane::Ipvs,
        timestamp_ns: unix_ns as u64,
        cpu: i % 2,
        netns: Some(4_026_531_840),
        conn: has_dest
            .then(|| 0xffff_8f3a_0000_0000 + u64::from(i.wrapping_mul(2_654_435_761)) * 0x40),
        proto: Proto::Tcp,
        client: SocketAddr::new(client, client_port),
        vip,
        backend: has_dest.then_some(backend),
        fwd: has_dest.then_some(FwdMethod::Masq),
        flags: if has_dest { 0x0100 } else { 0 },
        state: u32::from(has_dest),
        scheduler: Some(Cow::Borrowed(if i.is_multiple_of(3) {
            "wrr"
        } else {
            "rr"
        })),
        dest: has_dest.then_some(DestCounters {
            weight: 1,
            active_conns: Some((i % 40) as i32),
            inactive_conns: Some((i % 7) as i32),
        }),
    };
    let names = index.names(&event).owned();
    Decision {
        unix_ns,
        event,
        names,
    }
}

/// The worker's work for one batch (`HistoryRecorder`'s worker without its channel and lock):
/// into the memory store, and each block sealed onto disk. Returns the time spent writing.
/// Not inlined, so that `valgrind --tool=callgrind --toggle-collect='*worker_pass*'` counts it
/// alone (`--profile N [--disk]`).
#[inline(never)]
fn worker_pass(
    memory: &mut Memory,
    writer: Option<&mut SegmentWriter>,
    mut batch: Vec<Decision>,
) -> Duration {
    let mut sealed = Vec::new();
    memory.push_batch(&mut batch, &mut sealed);
    let started = Instant::now();
    if let Some(writer) = writer {
        for block in &sealed {
            writer
                .write(block)
                .expect("the benchmark's directory takes it");
        }
    }
    drop(sealed);
    started.elapsed()
}

/// `--profile N [--disk]`: only the worker's path, for callgrind: `N` decisions through a
/// memory store of 65,536 (full after the first 16 blocks, as serve's is after a while) and,
/// with `--disk`, a segment writer on a temporary directory.
fn profile(index: &Index, n: u32, disk: bool) {
    let batches: Vec<Vec<Decision>> = (0..n)
        .map(|i| decision(i, index))
        .collect::<Vec<_>>()
        .chunks(CHUNK)
        .map(<[Decision]>::to_vec)
        .collect();
    let dir = TempDir(
        std::env::temp_dir().join(format!("ipvs-trace-bench-profile-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let limits = Limits {
        max_bytes: u64::MAX / 2,
        max_age: Duration::from_hours(3650 * 24),
    };
    let mut writer = disk.then(|| {
        SegmentWriter::open(&dir.0, 3, limits)
            .expect("the benchmark's directory opens")
            .writer
    });
    let mut memory = Memory::new(65_536, 3);
    let started = Instant::now();
    for batch in batches {
        worker_pass(&mut memory, writer.as_mut(), batch);
    }
    eprintln!(
        "history: profile: {n} decisions in {:.2?} ({:.0}/s)",
        started.elapsed(),
        f64::from(n) / started.elapsed().as_secs_f64()
    );
}

fn rates(runs: &[f64]) -> String {
    runs.iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Milliseconds per run of `query` over `dir`, median of [`REPETITIONS`], and its answer size.
fn time_query_dir(dir: &Path, query: &Query) -> (f64, usize) {
    let mut found = 0;
    let runs = (0..REPETITIONS)
        .map(|_| {
            let started = Instant::now();
            let answer = query_dir(dir, query).expect("the benchmark's directory answers");
            found = answer.decisions.len();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (median(runs), found)
}

fn time_query_memory(memory: &Memory, query: &Query) -> (f64, usize) {
    let keys = ipvs_trace::history::block::query_keys(query);
    let mut found = 0;
    let runs = (0..REPETITIONS)
        .map(|_| {
            let started = Instant::now();
            let mut collector = Collector::new(query.limit);
            let mut cursor = ipvs_trace::history::memory::Cursor::new();
            while memory.scan_step(query, &keys, &mut collector, &mut cursor, 8) {}
            found = collector.into_decisions().len();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (median(runs), found)
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

#[expect(
    clippy::too_many_lines,
    reason = "one measurement after the other, printed as it goes"
)]
fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out_path = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();

    eprintln!(
        "history: building the synthetic index ({} pods, {} services)",
        synthetic::PODS,
        synthetic::SERVICES
    );
    let index = synthetic::build().index;
    if let Some(n) = args
        .iter()
        .position(|a| a == "--profile")
        .and_then(|i| args.get(i + 1))
    {
        profile(
            &index,
            n.parse().expect("--profile N"),
            args.iter().any(|a| a == "--disk"),
        );
        return Ok(());
    }
    let decisions: Vec<Decision> = (0..MEMORY_DECISIONS).map(|i| decision(i, &index)).collect();

    // Memory: the worker's path (push, seal: summary, bloom filter, encoding), store filling
    // up, then full (each block sealed evicts the oldest). Only the store's work is timed: the
    // decisions are cloned beforehand, as the event loop clones them into the worker's batches.
    let rss_before = rss_bytes();
    let mut memory = Memory::new(MEMORY_DECISIONS as usize, 1);
    let mut fill_time = Duration::ZERO;
    for chunk in decisions.chunks(CHUNK) {
        let batch = chunk.to_vec();
        let started = Instant::now();
        worker_pass(&mut memory, None, batch);
        fill_time += started.elapsed();
    }
    let fill_rate = f64::from(MEMORY_DECISIONS) / fill_time.as_secs_f64();
    let rss_store = rss_bytes().saturating_sub(rss_before);
    let memory_heap = memory.heap_bytes();
    let held = memory.len();
    let memory_bytes = memory_heap as f64 / held as f64;
    let rss_per = rss_store as f64 / held as f64;
    // The same decisions again, each repetition: the store holds them as it did once full.
    let mut steady_runs = Vec::new();
    for _ in 0..REPETITIONS {
        let mut time = Duration::ZERO;
        for chunk in decisions.chunks(CHUNK) {
            let batch = chunk.to_vec();
            let started = Instant::now();
            worker_pass(&mut memory, None, batch);
            time += started.elapsed();
        }
        steady_runs.push(f64::from(MEMORY_DECISIONS) / time.as_secs_f64());
    }
    let memory_rate = median(steady_runs.clone());
    eprintln!(
        "history: memory: {memory_rate:.0} decisions/s with the store full (runs {}), {fill_rate:.0}/s filling; {held} held in {:.1} MB ({memory_bytes:.1} B/decision heap, {rss_per:.1} B/decision RSS growth), {} distinct names",
        rates(&steady_runs),
        memory_heap as f64 / 1e6,
        memory.names()
    );
    let sample = &decisions[777_777];
    let queries = [
        ("client_port", format!("client={}", sample.event.client)),
        ("client_ip", format!("client={}", sample.event.client.ip())),
        (
            "backend_pod",
            format!(
                "pod={}",
                sample.names.names().backend_pod().unwrap_or("x/y")
            ),
        ),
        (
            "service_port",
            format!(
                "service={}",
                sample.names.service.as_ref().map_or("x/y", |s| &*s.label)
            ),
        ),
        ("newest_1000", "limit=1000".to_owned()),
    ];
    let mut memory_queries = serde_json::Map::new();
    for (name, text) in &queries {
        let query = Query::parse(text, 0).expect("a benchmark query parses");
        let (ms, found) = time_query_memory(&memory, &query);
        eprintln!("history: memory query {name} ({text}): {ms:.2} ms, {found} found");
        memory_queries.insert(
            (*name).to_owned(),
            serde_json::json!({"query": text, "ms": round(ms, 2), "found": found}),
        );
    }
    drop(memory);

    // Disk: 10 million decisions through the worker's path (memory store and segment writer),
    // and the segment writer alone.
    let dir = TempDir(
        std::env::temp_dir().join(format!("ipvs-trace-bench-history-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let limits = Limits {
        max_bytes: u64::MAX / 2,
        max_age: Duration::from_hours(3650 * 24),
    };
    let mut writer = SegmentWriter::open(&dir.0, 2, limits)
        .expect("the benchmark's directory opens")
        .writer;
    let mut memory = Memory::new(MEMORY_DECISIONS as usize, 2);
    let mut write_time = Duration::ZERO;
    let mut total = Duration::ZERO;
    let mut chunk_rates = Vec::new();
    for first in (0..DISK_DECISIONS).step_by(CHUNK) {
        let last = (first + CHUNK as u32).min(DISK_DECISIONS);
        let batch: Vec<Decision> = (first..last)
            .map(|i| {
                if i < MEMORY_DECISIONS {
                    decisions[i as usize].clone()
                } else {
                    decision(i, &index)
                }
            })
            .collect();
        let started = Instant::now();
        write_time += worker_pass(&mut memory, Some(&mut writer), batch);
        let elapsed = started.elapsed();
        total += elapsed;
        if first >= MEMORY_DECISIONS {
            chunk_rates.push(f64::from(last - first) / elapsed.as_secs_f64());
        }
    }
    if let Some(sealed) = memory.seal() {
        writer
            .write(&sealed)
            .expect("the benchmark's directory takes it");
    }
    writer.finish().expect("the benchmark's directory syncs");
    let worker_rate = f64::from(DISK_DECISIONS) / total.as_secs_f64();
    let disk_rate = f64::from(DISK_DECISIONS) / write_time.as_secs_f64();
    let chunk_stats = {
        let mut sorted = chunk_rates.clone();
        sorted.sort_by(f64::total_cmp);
        (
            sorted[sorted.len() / 20],
            median(chunk_rates),
            sorted[sorted.len() * 19 / 20],
        )
    };
    drop(memory);
    let disk_bytes = dir_bytes(&dir.0);
    let disk_per = disk_bytes as f64 / f64::from(DISK_DECISIONS);
    eprintln!(
        "history: disk: {DISK_DECISIONS} decisions in {:.1} s of the worker's time ({worker_rate:.0}/s with the memory store: batches of {CHUNK} with the store full {:.0}/s median, 5th-95th percentile {:.0}-{:.0}; {disk_rate:.0}/s encoding and writing alone), {:.1} MB, {disk_per:.1} B/decision",
        total.as_secs_f64(),
        chunk_stats.1,
        chunk_stats.0,
        chunk_stats.2,
        disk_bytes as f64 / 1e6
    );

    let mut disk_queries = serde_json::Map::new();
    let mut client_port_ms = f64::NAN;
    let late = decision(7_654_321, &index);
    let disk_query_list = [
        ("client_port", format!("client={}", late.event.client)),
        ("client_port_old", format!("client={}", sample.event.client)),
        ("client_ip", format!("client={}", late.event.client.ip())),
        (
            "backend_pod",
            format!("pod={}", late.names.names().backend_pod().unwrap_or("x/y")),
        ),
        (
            "service_port",
            format!(
                "service={}",
                late.names.service.as_ref().map_or("x/y", |s| &*s.label)
            ),
        ),
        ("newest_1000", "limit=1000".to_owned()),
    ];
    for (name, text) in &disk_query_list {
        let query = Query::parse(text, 0).expect("a benchmark query parses");
        let (ms, found) = time_query_dir(&dir.0, &query);
        if *name == "client_port" {
            client_port_ms = ms;
        }
        eprintln!("history: query_dir {name} ({text}): {ms:.1} ms, {found} found");
        disk_queries.insert(
            (*name).to_owned(),
            serde_json::json!({"query": text, "ms": round(ms, 1), "found": found}),
        );
    }

    let result = serde_json::json!({
        "bench": "history",
        "index": { "pods": synthetic::PODS, "services": synthetic::SERVICES },
        "memory": {
            "decisions": held,
            "insert_per_sec": memory_rate.round(),
            "insert_per_sec_runs": steady_runs.iter().map(|r| r.round()).collect::<Vec<_>>(),
            "insert_per_sec_filling": fill_rate.round(),
            "goal_insert_per_sec": GOAL_INSERT,
            "insert_goal_met": memory_rate >= GOAL_INSERT,
            "heap_bytes": memory_heap,
            "bytes_per_decision": round(memory_bytes, 1),
            "rss_growth_bytes": rss_store,
            "rss_bytes_per_decision": round(rss_per, 1),
            "goal_bytes_per_decision": GOAL_MEMORY_BYTES,
            "goal_met": rss_per.max(memory_bytes) <= GOAL_MEMORY_BYTES,
            "queries_ms": memory_queries,
        },
        "disk": {
            "decisions": DISK_DECISIONS,
            "bytes": disk_bytes,
            "bytes_per_decision": round(disk_per, 1),
            "bytes_per_million": (disk_per * 1e6).round(),
            "goal_bytes_per_decision": GOAL_DISK_BYTES,
            "goal_met": disk_per <= GOAL_DISK_BYTES,
            "insert_per_sec_with_memory": worker_rate.round(),
            "insert_per_sec_with_memory_full": {
                "batch": CHUNK,
                "median": chunk_stats.1.round(),
                "p5": chunk_stats.0.round(),
                "p95": chunk_stats.2.round(),
            },
            "insert_per_sec_encode_write": disk_rate.round(),
            "query_dir_ms": disk_queries,
            "goal_query_ms": GOAL_QUERY_MS,
            "query_goal_met": client_port_ms <= GOAL_QUERY_MS,
        },
    });
    println!(
        "memory: {memory_rate:.0} decisions/s (store full; goal {GOAL_INSERT}), {memory_bytes:.1} B/decision ({rss_per:.1} RSS) with {held} held"
    );
    println!(
        "disk: {worker_rate:.0} decisions/s (memory+disk), {disk_rate:.0}/s (disk alone), {disk_per:.1} B/decision ({disk_per:.0} MB per million)"
    );
    println!("query_dir client:port over {DISK_DECISIONS}: {client_port_ms:.1} ms (goal {GOAL_QUERY_MS} ms)");
    if let Some(path) = out_path {
        std::fs::write(&path, serde_json::to_string_pretty(&result)? + "\n")?;
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(())
}
