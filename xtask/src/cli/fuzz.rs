//! `cargo xtask fuzz`.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use ipvs_trace_common::event::valid;
use ipvs_trace_common::{ConnEvent, EventKind};

use crate::lab::{self, Kernel};
use crate::{cmd, paths};

/// Fuzzing: the decoders of bytes ipvs-trace does not make, under libFuzzer (cargo-fuzz), each
/// target for a bounded time, one after the other. Not part of the tests or CI.
///
/// Targets (ipvs-trace/fuzz/fuzz_targets/): `event_decode` (ring-buffer records, then both
/// output formats), `btf_base` (a vmlinux BTF file, raw or ELF), `btf_split` (an ip_vs module
/// BTF file on top of the 6.12 lab kernel's vmlinux), both followed by the loader's offset
/// resolution and probe checks; `ipvs_netlink` (IPVS generic-netlink replies through
/// `ipvs::read_with`) and `ctnetlink` (conntrack replies through `conntrack::get_reply`);
/// `nft_netlink` (nf_tables replies through `NetfilterRules::from_transport`) and `xt_legacy`
/// (a legacy iptables table through `netfilter::legacy::parse_capture`);
/// `history_segment` (a `--history-dir` segment file through `history::segment::query_dir`),
/// `history_query` (a query string of serve's API through `history::Query::parse`, and back).
///
/// Installs what is missing first (the nightly toolchain, cargo-fuzz), writes seed corpora from
/// the real fixtures (captured netlink replies, the lab kernels' BTF, records of the seed
/// scenario's shapes), builds every target once (`cargo +nightly fuzz build`), then runs each as
/// `cargo fuzz run TARGET -- -max_total_time=SECS -timeout=10` would.
/// Prints per target the executions, exec/s, coverage, corpus size and whether a crash was found;
/// writes target/fuzz/TARGET.json and target/fuzz-results.json (every target's latest run).
///
/// Exit status: 0, 1 if a target crashed (the input is under ipvs-trace/fuzz/artifacts/), or 125
/// if fuzzing could not run.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Run only this target; repeat for several (default: all, one after the other).
    #[arg(long, value_enum, value_name = "NAME")]
    target: Vec<Target>,
    /// Seconds each target runs.
    #[arg(long, value_name = "N", default_value_t = 300)]
    secs: u64,
    /// Fuzz the binaries of the previous build as they are, without `cargo fuzz build` (the
    /// tree may have changed since: a sanitizer build of ipvs-trace takes minutes).
    #[arg(long)]
    no_build: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    #[value(name = "event_decode")]
    EventDecode,
    #[value(name = "btf_base")]
    BtfBase,
    #[value(name = "btf_split")]
    BtfSplit,
    #[value(name = "ipvs_netlink")]
    IpvsNetlink,
    #[value(name = "ctnetlink")]
    Ctnetlink,
    #[value(name = "nft_netlink")]
    NftNetlink,
    #[value(name = "xt_legacy")]
    XtLegacy,
    #[value(name = "history_segment")]
    HistorySegment,
    #[value(name = "history_query")]
    HistoryQuery,
}

impl Target {
    const ALL: [Target; 9] = [
        Target::EventDecode,
        Target::BtfBase,
        Target::BtfSplit,
        Target::IpvsNetlink,
        Target::Ctnetlink,
        Target::NftNetlink,
        Target::XtLegacy,
        Target::HistorySegment,
        Target::HistoryQuery,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::EventDecode => "event_decode",
            Target::BtfBase => "btf_base",
            Target::BtfSplit => "btf_split",
            Target::IpvsNetlink => "ipvs_netlink",
            Target::Ctnetlink => "ctnetlink",
            Target::NftNetlink => "nft_netlink",
            Target::XtLegacy => "xt_legacy",
            Target::HistorySegment => "history_segment",
            Target::HistoryQuery => "history_query",
        }
    }
}

/// The nightly toolchain (ENVIRONMENT.md: nightly 1.97): libFuzzer's instrumentation and the
/// address sanitizer are `-Z` flags.
const NIGHTLY: &str = "nightly";

/// `ipvs_trace_fuzz::REPLY_SEPARATOR`: between the replies of one `ipvs_netlink` input.
const REPLY_SEPARATOR: &[u8] = b"--next-reply--";

/// Seconds without progress after which libFuzzer calls an input a hang (a timeout is a
/// finding like a crash: a decoder must not loop on bad input).
const UNIT_TIMEOUT_SECS: u32 = 10;

/// The 6.12 lab kernel: its ip_vs.ko carries split BTF and its vmlinux is the base under
/// `btf_split`'s inputs.
const SPLIT_KERNEL: Kernel = Kernel::V6_12;

/// One target's run, as printed and written.
#[derive(Debug, Default)]
struct Outcome {
    /// Wall-clock seconds the fuzzer ran (less than asked when it stopped at a crash).
    seconds: u64,
    executions: u64,
    exec_per_sec: u64,
    coverage: u64,
    /// Edges instrumented in the target binary (what `coverage` is out of).
    edges: u64,
    features: u64,
    corpus: usize,
    new_units: u64,
    peak_rss_mb: u64,
    crash: Option<String>,
}

pub(super) fn run(args: &Args) -> Result<ExitCode> {
    let fuzz_dir = paths::workspace_root().join("ipvs-trace/fuzz");
    ensure_tools()?;
    let targets = if args.target.is_empty() {
        Target::ALL.to_vec()
    } else {
        args.target.clone()
    };
    // Built before seeding: the btf_base seeds include the eBPF object this build embeds.
    if args.no_build {
        eprintln!("fuzz: --no-build: fuzzing the binaries of the previous build");
    } else {
        let mut build = cargo_fuzz(&fuzz_dir);
        build.arg("build");
        cmd::run(&mut build).context("building the fuzz targets")?;
    }
    let out = paths::target_dir().join("fuzz");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut crashed = false;
    for target in targets {
        let corpus = fuzz_dir.join("corpus").join(target.name());
        let seeds = write_seeds(target, &fuzz_dir, &corpus)?;
        eprintln!(
            "fuzz {}: {seeds} seed(s) written to {}",
            target.name(),
            corpus.display()
        );
        let outcome = fuzz(target, args.secs, &fuzz_dir, &corpus, &out)?;
        crashed |= outcome.crash.is_some();
        println!(
            "{}: {} s, {} executions ({}/s), coverage {} of {} edges ({} features), corpus {} \
             inputs ({} new), peak RSS {} MB, {}",
            target.name(),
            outcome.seconds,
            outcome.executions,
            outcome.exec_per_sec,
            outcome.coverage,
            outcome.edges,
            outcome.features,
            outcome.corpus,
            outcome.new_units,
            outcome.peak_rss_mb,
            match &outcome.crash {
                Some(input) => format!("CRASH: {input}"),
                None => "no crash".to_owned(),
            }
        );
        let json = outcome_json(target, &outcome);
        write(&out.join(format!("{}.json", target.name())), &json)?;
    }
    collect_results(&out)?;
    Ok(if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Installs the nightly toolchain and cargo-fuzz when missing; says what it found either way.
fn ensure_tools() -> Result<()> {
    let nightly = cmd::output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--version"]))?;
    if nightly.status.success() {
        eprintln!(
            "fuzz: toolchain {NIGHTLY} present ({})",
            String::from_utf8_lossy(&nightly.stdout).trim()
        );
    } else {
        cmd::run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))
        .context("installing the nightly toolchain")?;
    }
    let fuzz =
        cmd::output(Command::new("cargo").args([&format!("+{NIGHTLY}"), "fuzz", "--version"]))?;
    if fuzz.status.success() {
        eprintln!(
            "fuzz: {} present",
            String::from_utf8_lossy(&fuzz.stdout).trim()
        );
    } else {
        cmd::run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))
            .context("installing cargo-fuzz")?;
    }
    Ok(())
}

/// `cargo +nightly fuzz` in the fuzz crate, without what `cargo xtask` (a `cargo run`) put
/// into our environment: `RUSTUP_TOOLCHAIN` would override `+nightly` for the tools cargo
/// starts, and build scripts that rerun when `CARGO_PKG_NAME` or `CARGO_MANIFEST_DIR` change
/// (ring's) would otherwise rebuild half the tree between `cargo xtask fuzz` and a plain
/// `cargo fuzz run` in ipvs-trace/fuzz.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(fuzz_dir).env_remove("RUSTUP_TOOLCHAIN");
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let from_cargo_run = key == "CARGO"
            || key.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
                "CARGO_TARGET_DIR",
            ]
            .contains(&key);
        if from_cargo_run {
            command.env_remove(key);
        }
    }
    command.args([&format!("+{NIGHTLY}"), "fuzz"]);
    command
}

/// Writes `target`'s seeds into `corpus` (files named `seed-*`, rewritten each time; what
/// libFuzzer added stays). Returns how many.
fn write_seeds(target: Target, fuzz_dir: &Path, corpus: &Path) -> Result<usize> {
    std::fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let root = paths::workspace_root();
    let seeds: Vec<(String, Vec<u8>)> = match target {
        Target::EventDecode => event_seeds(),
        Target::BtfBase => btf_base_seeds(fuzz_dir)?,
        Target::BtfSplit => btf_split_seeds(root)?,
        Target::IpvsNetlink => replies_seeds(&root.join("ipvs-trace/tests/netlink"), "rules")?,
        Target::NftNetlink => replies_seeds(&root.join("ipvs-trace/tests/netfilter"), "nft")?,
        Target::XtLegacy => legacy_table_seeds(&root.join("ipvs-trace/tests/netfilter"))?,
        Target::Ctnetlink => {
            let mut seeds = Vec::new();
            for (kernel, files) in fixture_dirs(&root.join("ipvs-trace/tests/conntrack"))? {
                for file in files {
                    let name = file.file_stem().unwrap_or_default().to_string_lossy();
                    seeds.push((format!("{kernel}-{name}"), read(&file)?));
                }
            }
            seeds
        }
        Target::HistorySegment => history_segment_seeds(&root.join("ipvs-trace/tests/history"))?,
        Target::HistoryQuery => history_query_seeds(),
    };
    for (name, bytes) in &seeds {
        write(&corpus.join(format!("seed-{name}")), bytes)?;
    }
    Ok(seeds.len())
}

/// The committed history segments (`ipvs-trace/tests/history/*.ipvsh`, written by the
/// history's golden test) as they are, and as a crash or a bad disk leaves them: cut in the
/// middle of a frame, with a flipped byte in a frame, and the file header alone.
/// Questions `who` and the lab ask, and the shapes of every parameter: percent escapes, IPv6,
/// both time forms, the limits.
fn history_query_seeds() -> Vec<(String, Vec<u8>)> {
    [
        "client=10.245.97.12:51776",
        "client=%5Bfd00%3A%3A12%5D%3A51776&limit=5",
        "backend=10.245.18.1:8080&since=1h&until=2026-12-07T14:03:00Z",
        "pod=shop%2Fcart-5f7c9-a1b2c&since=2026-12-07T15:03:00.5+01:00",
        "service=ratel/vpaas-demo-prod:grpc&since=90s&limit=100000",
        "client=10.0.0&limit=0&colour=red",
    ]
    .iter()
    .enumerate()
    .map(|(i, q)| (format!("query-{i}"), q.as_bytes().to_vec()))
    .collect()
}

fn history_segment_seeds(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "ipvsh") {
            continue;
        }
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bytes = read(&path)?;
        let mut flipped = bytes.clone();
        if let Some(byte) = flipped.get_mut(bytes.len() * 2 / 3) {
            *byte ^= 0x20;
        }
        seeds.push((format!("{name}-torn"), bytes[..bytes.len() / 2].to_vec()));
        seeds.push((format!("{name}-flipped"), flipped));
        seeds.push((
            format!("{name}-header"),
            bytes[..bytes.len().min(32)].to_vec(),
        ));
        seeds.push((name, bytes));
    }
    if seeds.is_empty() {
        bail!(
            "no history segments in {} (`IPVS_TRACE_BLESS=1 cargo test -p ipvs-trace --lib \
             history::segment` writes one)",
            dir.display()
        );
    }
    Ok(seeds)
}

/// One input per folder of `dir`: its recorded replies in request order, separated by
/// `REPLY_SEPARATOR`, as the targets that replay a whole read take them.
fn replies_seeds(dir: &Path, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seeds = Vec::new();
    for (folder, files) in fixture_dirs(dir)? {
        let mut input = Vec::new();
        for (i, file) in files.iter().enumerate() {
            if i > 0 {
                input.extend_from_slice(REPLY_SEPARATOR);
            }
            input.extend(read(file)?);
        }
        seeds.push((format!("{prefix}-{folder}"), input));
    }
    Ok(seeds)
}

/// The legacy iptables tables recorded beside the nf_tables replies (`*/legacy-nat-*.xt`:
/// the `IPT_SO_GET_INFO` answer and the entries), whole and cut in half.
fn legacy_table_seeds(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut seeds = Vec::new();
    for (folder, _) in fixture_dirs(dir)? {
        let folder_path = dir.join(&folder);
        for entry in std::fs::read_dir(&folder_path)
            .with_context(|| format!("reading {}", folder_path.display()))?
        {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "xt") {
                continue;
            }
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            let bytes = read(&path)?;
            seeds.push((
                format!("{folder}-{name}-half"),
                bytes[..bytes.len() / 2].to_vec(),
            ));
            seeds.push((format!("{folder}-{name}"), bytes));
        }
    }
    if seeds.is_empty() {
        bail!("no legacy tables (*.xt) under {}", dir.display());
    }
    Ok(seeds)
}

/// Per kernel folder of a fixture directory (`5.10/`, `6.12/`...): its `*.bin` replies in
/// request order.
fn fixture_dirs(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut kernels = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .collect();
        files.sort();
        let kernel = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        kernels.push((kernel, files));
    }
    kernels.sort();
    if kernels.is_empty() {
        bail!("no captured replies under {}", dir.display());
    }
    Ok(kernels)
}

/// Records as the eBPF programs fill them in the seed scenario (DESIGN.md's client, VIP and
/// pod), one per kind and per address shape the decoder distinguishes.
fn event_seeds() -> Vec<(String, Vec<u8>)> {
    let v4 = |a: [u8; 4]| {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        addr
    };
    let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("literal").octets();
    let base = {
        let mut raw = ConnEvent::zeroed();
        raw.header.cpu = 1;
        raw.header.timestamp_ns = 5_000_000_123;
        raw.header.netns = 4_026_531_840;
        raw.conn = 0xffff_8f3a_1234_5600;
        raw.client_addr = v4([10, 245, 97, 12]);
        raw.vip_addr = v4([172, 31, 42, 227]);
        raw.backend_addr = v4([10, 245, 112, 32]);
        raw.client_port = 51234;
        raw.vip_port = 80;
        raw.backend_port = 8080;
        raw.af = 2;
        raw.daf = 2;
        raw.protocol = 6;
        raw.flags = 0x0100; // IP_VS_CONN_F_HASHED, Masq
        raw.state = 1;
        raw.weight = 1;
        raw.active_conns = 1;
        raw.scheduler[..2].copy_from_slice(b"rr");
        raw.valid =
            valid::DEST | valid::SCHEDULER | valid::NETNS | valid::BACKEND | valid::CLIENT_PORT;
        raw
    };
    let mut seeds = Vec::new();
    for kind in EventKind::ALL {
        let mut raw = base;
        raw.header.kind = kind as u32;
        match kind {
            EventKind::NoDest => {
                raw.conn = 0;
                raw.flags = 0;
                raw.daf = 0;
                raw.backend_addr = [0; 16];
                raw.backend_port = 0;
                raw.valid = valid::SCHEDULER | valid::NETNS;
            }
            EventKind::Expire => raw.state = 8,
            EventKind::Template => {
                raw.flags |= 0x1000; // IP_VS_CONN_F_TEMPLATE
                raw.scheduler[..3].copy_from_slice(b"wrr");
            }
            EventKind::New | EventKind::Reused => {}
        }
        seeds.push((kind.as_str().to_owned(), record_bytes(&raw)));
    }
    let mut ipv6 = base;
    ipv6.header.kind = EventKind::New as u32;
    ipv6.af = 10;
    ipv6.daf = 10;
    ipv6.client_addr = v6("fd00::c1");
    ipv6.vip_addr = v6("fd00:42::e3");
    ipv6.backend_addr = v6("fd00:245::20");
    ipv6.protocol = 17;
    seeds.push(("new-ipv6-udp".to_owned(), record_bytes(&ipv6)));
    let mut tunnel = ipv6;
    tunnel.daf = 2;
    tunnel.backend_addr = v4([10, 245, 112, 32]);
    tunnel.flags = 0x0102; // Tunnel
    seeds.push(("new-ipv6-tunnel-to-ipv4".to_owned(), record_bytes(&tunnel)));
    seeds
}

fn record_bytes(raw: &ConnEvent) -> Vec<u8> {
    // SAFETY: `ConnEvent` is `#[repr(C)]` plain data with explicit padding fields (no
    // uninitialised bytes), so viewing it as bytes reads only initialised memory.
    unsafe {
        std::slice::from_raw_parts(std::ptr::from_ref(raw).cast::<u8>(), size_of::<ConnEvent>())
    }
    .to_vec()
}

/// vmlinux-style (base) BTF: GCC's encoder on `seeds/kernel-types.c` (the structs and
/// prototypes the loader looks up), as ELF and raw; and the eBPF object the fuzz build
/// embedded (a real ELF with .BTF and .BTF.ext from the Rust/LLVM toolchain).
fn btf_base_seeds(fuzz_dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let work = paths::target_dir().join("fuzz/seed-work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let object = work.join("kernel-types.o");
    cmd::run(
        Command::new("gcc")
            .args(["-gbtf", "-c", "-o"])
            .arg(&object)
            .arg(fuzz_dir.join("seeds/kernel-types.c")),
    )
    .context("compiling the BTF seed (gcc 12 or newer emits BTF with -gbtf)")?;
    let mut seeds = vec![
        ("kernel-types-elf".to_owned(), read(&object)?),
        ("kernel-types-raw".to_owned(), dump_btf(&object, &work)?),
    ];
    let built = fuzz_dir.join("target/x86_64-unknown-linux-gnu/release/build");
    let ebpf = std::fs::read_dir(&built)
        .with_context(|| format!("reading {}", built.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("out/ipvs-trace")))
        .find(|p| p.is_file());
    match ebpf {
        Some(path) => seeds.push(("ebpf-object".to_owned(), read(&path)?)),
        None => eprintln!("fuzz btf_base: no eBPF object under {}", built.display()),
    }
    Ok(seeds)
}

/// ip_vs module BTF: the 6.12 lab kernel's ip_vs.ko (ELF) and its `.BTF` (raw, as
/// /sys/kernel/btf/ip_vs reads); the other kernels' split BTF as more material to mutate
/// (their type ids continue other bases).
fn btf_split_seeds(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let work = paths::target_dir().join("fuzz/seed-work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let files = split_kernel()?;
    let slim = work.join("ip_vs-btf-only.ko");
    // The whole .ko is half a megabyte of code libFuzzer would mostly mutate in vain: an ELF
    // keeping only its .BTF is the same path through the reader.
    cmd::run(
        Command::new("objcopy")
            .args(["--only-section=.BTF"])
            .arg(&files.ip_vs)
            .arg(&slim),
    )?;
    let mut seeds = vec![
        (format!("ip_vs-{}-elf", files.release), read(&slim)?),
        (
            format!("ip_vs-{}-raw", files.release),
            dump_btf(&files.ip_vs, &work)?,
        ),
    ];
    let fixtures = root.join("tests/fixtures");
    for entry in std::fs::read_dir(&fixtures)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "btf") {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            seeds.push((name.into_owned(), read(&path)?));
        }
    }
    Ok(seeds)
}

/// The lab's 6.12 kernel files, looked up once (the lookup takes the lab's lock, which a
/// running lab build holds for minutes).
fn split_kernel() -> Result<&'static lab::KernelBtf> {
    static FILES: OnceLock<lab::KernelBtf> = OnceLock::new();
    if let Some(files) = FILES.get() {
        return Ok(files);
    }
    eprintln!("fuzz btf_split: looking up the {SPLIT_KERNEL} lab kernel's vmlinux and ip_vs.ko");
    let files = lab::kernel_btf(SPLIT_KERNEL)?;
    Ok(FILES.get_or_init(|| files))
}

/// The `.BTF` section of an ELF object, raw.
fn dump_btf(object: &Path, work: &Path) -> Result<Vec<u8>> {
    let out = work.join("section.btf");
    cmd::run(
        Command::new("objcopy")
            .arg(format!("--dump-section=.BTF={}", out.display()))
            .arg(object)
            .arg(work.join("objcopy-discard.o")),
    )?;
    read(&out)
}

/// Runs one target for `secs` seconds: libFuzzer's progress lines go through (its periodic
/// `pulse` lines and whatever reports a finding); the whole log lands in `out/TARGET.log`.
///
/// Runs the binary `cargo fuzz build` made, as `cargo fuzz run` does after its own build
/// (same environment, same `-artifact_prefix`): every target then fuzzes the one build made at
/// the start, also when the tree changes while the targets run one after the other (each
/// `cargo fuzz run` would rebuild, minutes with the sanitizer, and fuzz a different tree).
fn fuzz(target: Target, secs: u64, fuzz_dir: &Path, corpus: &Path, out: &Path) -> Result<Outcome> {
    let log_path = out.join(format!("{}.log", target.name()));
    let artifacts = fuzz_dir.join("artifacts").join(target.name());
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;
    let binary = fuzz_dir
        .join("target/x86_64-unknown-linux-gnu/release")
        .join(target.name());
    let mut run = Command::new(&binary);
    run.current_dir(fuzz_dir)
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={UNIT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1")
        .arg(corpus);
    if target == Target::BtfSplit {
        run.env("IPVS_TRACE_FUZZ_VMLINUX", &split_kernel()?.vmlinux);
    }
    eprintln!("+ {}", cmd::display(&run));
    let started = Instant::now();
    let mut child = run
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", binary.display()))?;
    // libFuzzer writes to stderr.
    let stderr = child.stderr.take().context("the fuzzer's stderr")?;
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading the fuzzer's output")?;
        if line.contains("pulse")
            || line.contains("DONE")
            || line.contains("ERROR")
            || line.contains("panicked")
            || line.contains("Test unit written")
            || line.starts_with("error")
        {
            eprintln!("  {}: {line}", target.name());
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().context("waiting for the fuzzer")?;
    write(&log_path, log.as_bytes())?;
    let mut outcome = parse_log(&log);
    outcome.seconds = started.elapsed().as_secs();
    outcome.corpus = std::fs::read_dir(corpus)?.count();
    if !status.success() && outcome.crash.is_none() {
        bail!(
            "fuzz target {} failed ({status}) without reporting a crashing input: see {}",
            target.name(),
            log_path.display()
        );
    }
    Ok(outcome)
}

/// The figures of a libFuzzer log: the final stats (`-print_final_stats=1`), coverage from the
/// last status line, the input a crash or hang was written to.
fn parse_log(log: &str) -> Outcome {
    let mut outcome = Outcome::default();
    for line in log.lines() {
        let stat = |name: &str| {
            line.strip_prefix(&format!("stat::{name}:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(v) = stat("number_of_executed_units") {
            outcome.executions = v;
        } else if let Some(v) = stat("average_exec_per_sec") {
            outcome.exec_per_sec = v;
        } else if let Some(v) = stat("new_units_added") {
            outcome.new_units = v;
        } else if let Some(v) = stat("peak_rss_mb") {
            outcome.peak_rss_mb = v;
        }
        // Status lines: "#123\tNEW    cov: 456 ft: 789 corp: 10/2Kb ... exec/s: 1000 rss: ...".
        if line.starts_with('#') {
            let mut words = line.split_whitespace();
            while let Some(word) = words.next() {
                let value = || words.clone().next().and_then(|v| v.parse::<u64>().ok());
                match word {
                    "cov:" => outcome.coverage = value().unwrap_or(outcome.coverage),
                    "ft:" => outcome.features = value().unwrap_or(outcome.features),
                    _ => {}
                }
            }
        }
        // "INFO: Loaded 1 modules   (6487 inline 8-bit counters): ..."
        if let Some(rest) = line.strip_prefix("INFO: Loaded 1 modules") {
            let counters = rest.trim_start().trim_start_matches('(');
            if let Some(n) = counters
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
            {
                outcome.edges = n;
            }
        }
        if let Some(rest) = line.split("Test unit written to ").nth(1) {
            outcome.crash = Some(rest.trim().to_owned());
        }
    }
    outcome
}

fn outcome_json(target: Target, o: &Outcome) -> String {
    let crash = o.crash.as_ref().map_or("null".to_owned(), |c| {
        format!("\"{}\"", c.replace('\\', "\\\\").replace('"', "\\\""))
    });
    format!(
        "{{\"target\": \"{}\", \"seconds\": {}, \"executions\": {}, \"exec_per_sec\": {}, \
         \"coverage_edges\": {}, \"instrumented_edges\": {}, \"features\": {}, \
         \"corpus_inputs\": {}, \"new_units\": {}, \"peak_rss_mb\": {}, \"crash\": {crash}}}",
        target.name(),
        o.seconds,
        o.executions,
        o.exec_per_sec,
        o.coverage,
        o.edges,
        o.features,
        o.corpus,
        o.new_units,
        o.peak_rss_mb,
    )
}

/// target/fuzz-results.json: the latest run of every target that has one (a `--target` run
/// replaces only its own entry).
fn collect_results(out: &Path) -> Result<()> {
    let mut entries = Vec::new();
    for target in Target::ALL {
        let path = out.join(format!("{}.json", target.name()));
        if let Ok(entry) = std::fs::read_to_string(&path) {
            entries.push(entry);
        }
    }
    let mut json = String::from("{\"targets\": [\n");
    for (i, entry) in entries.iter().enumerate() {
        let comma = if i + 1 < entries.len() { "," } else { "" };
        let _ = writeln!(json, "  {}{comma}", entry.trim());
    }
    json.push_str("]}\n");
    let results = paths::target_dir().join("fuzz-results.json");
    write(&results, json.as_bytes())?;
    eprintln!("fuzz: wrote {}", results.display());
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
