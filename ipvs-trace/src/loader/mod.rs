//! Loading and attaching the eBPF programs.
//!
//! In order: check privileges (a clear message beats an EPERM from deep inside aya), make sure
//! `ip_vs` is loaded (or wait for it), resolve the struct offsets from BTF, load the object with
//! the offsets as a read-only global, attach the probes of the events asked for. A probe that adds detail but is not
//! essential (reuse, no-destination) is skipped with a warning naming the events lost; only the
//! probe on `ip_vs_conn_new` is mandatory. The probes live as long as that load of ip_vs:
//! [`module_watch`] tells when it is gone, so that a long run can attach again.

mod error;
pub mod kallsyms;
pub mod kernel;
pub mod module_watch;
pub mod privileges;
pub mod probes;
pub mod trampoline;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    Ebpf, EbpfLoader,
};
use ipvs_trace_common::filter::{test, NamedKey, NAMED_MAX};
use ipvs_trace_common::{
    drop, KernelFilter, DEFAULT_RING_SIZE, EVENTS_MAP, FILTER_MAP, LOST_MAP, NAMED_IPS_MAP,
    NAMED_VIPS_MAP, NAT_NETNS_GLOBAL, OFFSETS_GLOBAL, RING_SIZE_GLOBAL,
};

pub use error::LoadError;

use crate::dataplane::Dataplane;
use crate::filter::NamedKeys;
use crate::{btf::Btf, events::model::EventKind, offsets, output::summary::Losses};
use module_watch::{ModuleSource as _, ModuleState, SysModule};
use probes::{AttachMode, AttachPlan, Attachment, PROBES};
use trampoline::{TrampolineLink, Trampolines};

/// The compiled eBPF object, built by `build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipvs-trace"));

/// Where the running kernel exposes its BTF.
const SYS_BTF_DIR: &str = "/sys/kernel/btf";

/// What the user can change about loading.
#[derive(Clone, Debug, Default)]
pub struct LoaderOptions {
    /// Split BTF of the ip_vs module to use instead of `/sys/kernel/btf/ip_vs`.
    pub btf: Option<PathBuf>,
    /// Wait for the ip_vs module to be loaded instead of failing.
    pub wait: bool,
    /// Ring buffer size in bytes (a power-of-two multiple of the page size).
    pub ring_size: Option<u32>,
    /// The event kinds asked for (`trace --event`): only the probes that produce them are
    /// attached. Empty: every kind (`top`, `balance`, `serve`).
    pub kinds: Vec<EventKind>,
    /// The dataplanes asked for (`--dataplane`): only their probes are attached. Empty: every
    /// dataplane.
    pub dataplanes: Vec<Dataplane>,
    /// What the probes deliver ([`crate::filter::Filter::kernel`]); `None`: everything.
    pub filter: Option<KernelFilter>,
    /// Whether the filter has names (`--service`, `--namespace`, `--pod`): the named-address
    /// maps are sized for them, and hold one entry otherwise.
    pub named_filter: bool,
    /// fentry/fexit, kprobes, or each where it works (`--attach`).
    pub attach: AttachMode,
    /// Test hook: attach the probe for kernel function `.0` to symbol `.1` instead.
    pub kprobe_target_override: Option<(String, String)>,
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Tracer {
    ebpf: Ebpf,
    attachment: Attachment,
    /// The trampoline programs attached (their kprobe siblings live in `ebpf`).
    _links: Vec<TrampolineLink>,
    /// The kernel-side filter as written now.
    filter: KernelFilter,
    /// `--dataplane`, for the reader (the kernel tells IPVS from netfilter only).
    dataplanes: Vec<Dataplane>,
    /// What the named-address maps hold now.
    named: NamedKeys,
    degraded: Vec<String>,
    layout: Layout,
    /// The load of ip_vs the probes were attached to.
    module: ModuleState,
    /// The task forwarding the kernel side's log records, ended with the tracer (a run that
    /// re-attaches starts one per tracer).
    logger: Option<tokio::task::AbortHandle>,
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(logger) = &self.logger {
            logger.abort();
        }
    }
}

impl Tracer {
    /// Checks the environment, loads the programs and attaches them.
    ///
    /// IPVS is required only when it is the one dataplane asked for: with the netfilter ones
    /// in play too, a node without ip_vs (a node of kube-proxy's nftables or iptables mode) is
    /// traced through `nf_nat` alone, and the reverse.
    pub async fn start(opts: &LoaderOptions) -> anyhow::Result<Tracer> {
        privileges::check()?;
        let wants = |d: Dataplane| opts.dataplanes.is_empty() || opts.dataplanes.contains(&d);
        let wants_ipvs = wants(Dataplane::Ipvs);
        let wants_netfilter = wants(Dataplane::Nftables) || wants(Dataplane::Iptables);
        // Modules whose probes cannot attach on this start, and why.
        // (module, why, whether it is merely absent: a dataplane the node does not have).
        let mut blocked: Vec<(&'static str, String, bool)> = Vec::new();
        if wants_ipvs && wants_netfilter {
            // Whichever comes first: a node of either kind is traced as soon as it has one,
            // and the trace starts again with both when ip_vs loads later (`module_watch`).
            if opts.wait {
                kernel::wait_for_any().await;
            } else if SysModule::ip_vs().state() == ModuleState::Absent && !kernel::nf_nat_present()
            {
                return Err(LoadError::NothingLoaded.into());
            }
            if SysModule::ip_vs().state() == ModuleState::Absent {
                blocked.push(("ip_vs", "the ip_vs module is not loaded".to_owned(), true));
            }
        } else if wants_ipvs {
            kernel::ensure_ip_vs(opts.wait).await?;
        }
        if wants_netfilter && !kernel::nf_nat_present() {
            blocked.push((
                "nf_nat",
                "the nf_nat module is not loaded (no NAT rule on this node yet)".to_owned(),
                true,
            ));
        }
        // Read before the probes attach: a module swapped while they do is then noticed.
        let module = SysModule::ip_vs().state();
        let release = kernel::release();
        let types = KernelTypes::read(opts.btf.as_deref())?;
        let ipvs_in_play = wants_ipvs && !blocked.iter().any(|(m, ..)| *m == "ip_vs");
        let (resolved, rdonly_cast) = resolve_offsets(
            &types,
            &release,
            ipvs_in_play,
            wants_netfilter,
            &mut blocked,
        )?;
        for note in &resolved.degraded {
            tracing::warn!("{note}");
        }

        let mut loader = EbpfLoader::new();
        loader.override_global(OFFSETS_GLOBAL, &resolved.offsets, true);
        let ring_size = opts.ring_size.unwrap_or(DEFAULT_RING_SIZE);
        loader.map_max_entries(EVENTS_MAP, ring_size);
        let ring_size = u64::from(ring_size);
        loader.override_global(RING_SIZE_GLOBAL, &ring_size, true);
        // kube-proxy's DNATs are the node's namespace's, which the tracer runs in (hostNetwork).
        // Without /proc's answer (never seen) every namespace's are taken.
        let nat_netns = kernel::own_netns().unwrap_or(0);
        loader.override_global(NAT_NETNS_GLOBAL, &nat_netns, true);
        // Preallocated maps (see `maps.rs` in the eBPF crate): a trace without name filters
        // does not pay NAMED_MAX entries of kernel memory for them.
        let named_capacity = if opts.named_filter { NAMED_MAX } else { 1 };
        loader.map_max_entries(NAMED_VIPS_MAP, named_capacity);
        loader.map_max_entries(NAMED_IPS_MAP, named_capacity);
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .map_err(|err| privileges::explain_load_error(err.into()))?;
        // Before the logger takes its map out of `ebpf`: the trampoline programs are relocated
        // against every map.
        let trampolines = prepare_trampolines(&ebpf, opts.attach, rdonly_cast);
        let logger = start_kernel_logger(&mut ebpf);
        // The name test is off until names are known (`set_named`).
        let mut filter = opts.filter.unwrap_or(KernelFilter::EVERYTHING);
        filter.tests &= !test::NAMES;
        write_filter(&mut ebpf, filter)?;

        let mut degraded = resolved.degraded;
        // Unreadable symbols only cost the pre-check: attaching still fails clearly.
        let kallsyms = kallsyms::Kallsyms::read()
            .inspect_err(|err| {
                tracing::warn!("cannot read /proc/kallsyms ({err}): probes are not pre-checked");
            })
            .ok();
        let mut links = Vec::new();
        let plan = AttachPlan {
            types: &types,
            kallsyms: kallsyms.as_ref(),
            kinds: &opts.kinds,
            dataplanes: &opts.dataplanes,
            mode: opts.attach,
            trampolines: trampolines.as_ref().map_err(String::as_str),
            target_override: opts.kprobe_target_override.as_ref(),
            blocked: &blocked,
        };
        let attachment = probes::attach_all(&mut ebpf, &plan, &mut links, &mut degraded)?;
        Ok(Tracer {
            ebpf,
            attachment,
            _links: links,
            filter,
            dataplanes: opts.dataplanes.clone(),
            named: NamedKeys::default(),
            degraded,
            layout: types.layout,
            module,
            logger,
        })
    }

    /// The load of ip_vs the probes were attached to, for a
    /// [`ModuleWatch`](module_watch::ModuleWatch).
    #[must_use]
    pub fn module(&self) -> ModuleState {
        self.module
    }

    /// Where the struct layout came from: with [`Layout::Builtin`] events carry no scheduler,
    /// weight or counters, and the caller fills what it can from the IPVS tables.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The dataplanes asked for (empty: every one), for the reader of the ring.
    #[must_use]
    pub fn dataplanes(&self) -> &[Dataplane] {
        &self.dataplanes
    }

    /// The ring buffer of records; can be taken once.
    pub fn take_ring(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(EVENTS_MAP)
            .with_context(|| format!("map {EVENTS_MAP} missing or already taken"))?;
        RingBuf::try_from(map).with_context(|| format!("map {EVENTS_MAP} is not a ring buffer"))
    }

    /// Events dropped because the ring buffer was full, summed over CPUs.
    pub fn lost_events(&self) -> anyhow::Result<u64> {
        self.drop_count(drop::RING_FULL)
    }

    /// Events dropped because reading kernel memory failed, summed over CPUs.
    pub fn read_errors(&self) -> anyhow::Result<u64> {
        self.drop_count(drop::READ_ERROR)
    }

    /// Every count of what became of the decisions the probes saw: lost in the kernel (ring
    /// full, unreadable), filtered out, and read by `reader` (of which malformed). A kernel
    /// counter that cannot be read is `None` (shown as unknown), the reason logged.
    #[must_use]
    pub fn losses(&self, reader: &crate::events::EventReader) -> Losses {
        // A decision read but of a dataplane not asked for (which only userspace can tell)
        // is filtered out like those the kernel left out, not matched.
        let left_out = reader.filtered();
        Losses {
            ring_full: logged(self.lost_events(), "lost events"),
            unreadable: logged(self.read_errors(), "unreadable events"),
            malformed: reader.malformed(),
            filtered: logged(self.filtered(), "decisions filtered out").map(|n| n + left_out),
            read: reader.read() - left_out,
        }
    }

    /// Makes the kernel's name test follow `named`: the maps updated (new entries before old
    /// ones go, so a decision in between passes rather than falls out) and the test on; with
    /// `None` (names not known yet, or more than the maps hold) the test goes off and userspace
    /// alone applies the name filters. A failed update turns the test off as well.
    pub fn set_named(&mut self, named: Option<&NamedKeys>) -> anyhow::Result<()> {
        let synced = match named.filter(|named| named.fit()) {
            Some(named) => self.sync_named(named),
            None => Ok(false),
        };
        let on = matches!(synced, Ok(true));
        let tests = if on {
            self.filter.tests | test::NAMES
        } else {
            self.filter.tests & !test::NAMES
        };
        if tests != self.filter.tests {
            self.filter.tests = tests;
            write_filter(&mut self.ebpf, self.filter)?;
        }
        synced.map(|_| ())
    }

    fn sync_named(&mut self, named: &NamedKeys) -> anyhow::Result<bool> {
        for (map_name, want, have) in [
            (NAMED_VIPS_MAP, &named.vips, &mut self.named.vips),
            (NAMED_IPS_MAP, &named.ips, &mut self.named.ips),
        ] {
            let map = self
                .ebpf
                .map_mut(map_name)
                .with_context(|| format!("map {map_name} missing from the embedded eBPF object"))?;
            let mut map: BpfHashMap<_, NamedKey, u8> = BpfHashMap::try_from(map)?;
            for key in want.difference(have) {
                map.insert(key, 1, 0)
                    .with_context(|| format!("adding a name filter's address to {map_name}"))?;
            }
            for key in have.difference(want) {
                // Gone already is what we want.
                let _ = map.remove(key);
            }
            have.clone_from(want);
        }
        Ok(true)
    }

    /// Decisions the kernel-side filter left out, summed over CPUs.
    pub fn filtered(&self) -> anyhow::Result<u64> {
        self.drop_count(drop::FILTERED)
    }

    fn drop_count(&self, slot: u32) -> anyhow::Result<u64> {
        let map = self
            .ebpf
            .map(LOST_MAP)
            .with_context(|| format!("map {LOST_MAP} missing"))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let per_cpu = counters
            .get(&slot, 0)
            .with_context(|| format!("reading {LOST_MAP}[{slot}]"))?;
        Ok(per_cpu.iter().sum())
    }

    /// What was attached and what was left out, for the start-up line and the summary.
    #[must_use]
    pub fn attachment(&self) -> &Attachment {
        &self.attachment
    }

    /// What this kernel cannot give (missing optional fields or probes), one note each.
    #[must_use]
    pub fn degraded(&self) -> &[String] {
        &self.degraded
    }
}

/// Where the layout of the IPVS structs comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The ip_vs module's split BTF: `/sys/kernel/btf/ip_vs`, or the `--btf` file (`given`).
    ModuleBtf { path: PathBuf, given: bool },
    /// No module BTF (5.10's ip_vs carries none): the built-in 5.x/6.x layout
    /// ([`offsets::BUILTIN_LAYOUT`]); `missing` is the file that was looked for.
    Builtin { missing: PathBuf },
}

/// The kernel's types as the tracer reads them: `btf` is the ip_vs split BTF on top of vmlinux,
/// or vmlinux alone with [`Layout::Builtin`] (function prototypes of ip_vs then go unchecked).
pub struct KernelTypes {
    pub btf: Btf,
    pub layout: Layout,
    /// Where vmlinux BTF was read, for reports.
    pub vmlinux: PathBuf,
    /// The nf_nat module's split BTF, when the kernel has it (the NAT probe's trampoline).
    pub nf_nat: Option<Btf>,
}

impl KernelTypes {
    /// Reads vmlinux BTF and the ip_vs split BTF on top of it: `user_file` if given (an error
    /// if unusable: the user asked for it), else the kernel's, else vmlinux alone.
    pub fn read(user_file: Option<&Path>) -> Result<KernelTypes, LoadError> {
        let sys = Path::new(SYS_BTF_DIR);
        let vmlinux_path = sys.join("vmlinux");
        let vmlinux = Arc::new(Btf::from_file(&vmlinux_path, None)?);
        // Best effort: without it the NAT probe is a kprobe, which needs no BTF of its own.
        let nf_nat_path = sys.join("nf_nat");
        let nf_nat = nf_nat_path
            .exists()
            .then(|| Btf::from_file(&nf_nat_path, Some(Arc::clone(&vmlinux))))
            .transpose()
            .inspect_err(|err| tracing::warn!("{}: {err}", nf_nat_path.display()))
            .ok()
            .flatten();
        let (path, given) = match user_file {
            Some(path) => (path.to_path_buf(), true),
            None => (sys.join("ip_vs"), false),
        };
        if !given && !path.exists() {
            return Ok(KernelTypes {
                // Shared with nf_nat's BTF when that was read: then read again.
                btf: match Arc::try_unwrap(vmlinux) {
                    Ok(btf) => btf,
                    Err(_) => Btf::from_file(&vmlinux_path, None)?,
                },
                layout: Layout::Builtin { missing: path },
                vmlinux: vmlinux_path,
                nf_nat,
            });
        }
        let btf = Btf::from_file(&path, Some(vmlinux))?;
        Ok(KernelTypes {
            btf,
            layout: Layout::ModuleBtf { path, given },
            vmlinux: vmlinux_path,
            nf_nat,
        })
    }

    /// The running kernel's own vmlinux BTF (the base of a module's split BTF).
    #[must_use]
    pub fn vmlinux(&self) -> &Btf {
        self.btf.base().unwrap_or(&self.btf)
    }

    /// The BTF that describes `module`'s function prototypes, as far as known: its own split
    /// BTF, else what was read (vmlinux alone, where the probe's prototype goes unchecked).
    #[must_use]
    pub fn for_prototypes(&self, module: &str) -> &Btf {
        match (module, &self.nf_nat) {
            ("nf_nat", Some(nf_nat)) => nf_nat,
            _ => &self.btf,
        }
    }

    /// `module`'s split BTF as the kernel has it, to attach a trampoline to, or why there is
    /// none.
    pub fn for_trampolines(&self, module: &str, mode: AttachMode) -> Result<&Btf, String> {
        match module {
            "ip_vs" => trampoline_path(mode, &self.layout).map(|()| &self.btf),
            "nf_nat" => self.nf_nat.as_ref().ok_or_else(|| {
                format!("the kernel has no BTF for nf_nat ({SYS_BTF_DIR}/nf_nat is missing)")
            }),
            other => Err(format!("no BTF is read for module {other}")),
        }
    }

    /// The offsets the probes read, from BTF or the built-in layout.
    pub fn offsets(&self, release: &str) -> Result<offsets::Resolved, offsets::OffsetError> {
        match self.layout {
            Layout::ModuleBtf { .. } => offsets::resolve(&self.btf, release),
            Layout::Builtin { .. } => offsets::builtin(&self.btf, release),
        }
    }
}

/// The offsets the programs read, with the NAT probe's where a netfilter dataplane is wanted
/// (a module whose members do not resolve goes to `blocked`, saying why), and the
/// `bpf_rdonly_cast` kfunc's id where the per-packet program can use it.
fn resolve_offsets(
    types: &KernelTypes,
    release: &str,
    ipvs_in_play: bool,
    wants_netfilter: bool,
    blocked: &mut Vec<(&'static str, String, bool)>,
) -> Result<(offsets::Resolved, Option<u32>), offsets::OffsetError> {
    let mut resolved = if ipvs_in_play {
        types.offsets(release)?
    } else {
        offsets::Resolved {
            offsets: ipvs_trace_common::KernelOffsets::default(),
            degraded: Vec::new(),
        }
    };
    // The per-packet program's header reads (IPVS only): by loads where vmlinux has the kfunc
    // for it.
    let rdonly_cast = if ipvs_in_play {
        offsets::packet::resolve(types.vmlinux(), &mut resolved.offsets)
    } else {
        None
    };
    if wants_netfilter && !blocked.iter().any(|(m, ..)| *m == "nf_nat") {
        if let Err(why) = offsets::nat::resolve(&types.btf, &mut resolved.offsets) {
            blocked.push(("nf_nat", why, false));
        }
    }
    Ok((resolved, rdonly_cast))
}

/// The trampoline programs relocated and the modules' BTF objects found, or why every probe
/// gets a kprobe on this start.
fn prepare_trampolines(
    ebpf: &Ebpf,
    mode: AttachMode,
    rdonly_cast: Option<u32>,
) -> Result<Trampolines, String> {
    if mode == AttachMode::Kprobe {
        return Err("--attach kprobe".to_owned());
    }
    let programs: Vec<&str> = PROBES.iter().map(|p| p.trampoline_program).collect();
    let mut modules: Vec<&'static str> = PROBES.iter().map(|p| p.module).collect();
    modules.dedup();
    Trampolines::prepare(ebpf, EBPF_OBJECT, &programs, &modules, rdonly_cast)
        .map_err(|e| e.to_string())
}

/// Whether the attach mode and the layout's source leave the trampoline path open: a
/// trampoline attaches to the module's BTF in the kernel, so a `--btf` file or no module BTF
/// mean kprobes.
pub fn trampoline_path(mode: AttachMode, layout: &Layout) -> Result<(), String> {
    match (mode, layout) {
        (AttachMode::Kprobe, _) => Err("--attach kprobe".to_owned()),
        (_, Layout::ModuleBtf { given: false, .. }) => Ok(()),
        (_, Layout::ModuleBtf { given: true, .. }) => Err(
            "ip_vs's types come from a --btf file: the kernel has no module BTF to attach a \
             trampoline to"
                .to_owned(),
        ),
        (_, Layout::Builtin { missing }) => Err(format!(
            "the kernel has no BTF for ip_vs ({} is missing)",
            missing.display()
        )),
    }
}

/// A kernel counter, or `None` with the reason logged: a trace that otherwise works does not
/// fail over a count.
fn logged(value: anyhow::Result<u64>, what: &str) -> Option<u64> {
    value
        .inspect_err(|err| tracing::warn!("cannot read the count of {what}: {err:#}"))
        .ok()
}

/// Writes the kernel-side filter, before anything is attached: an unwritten entry (all zero)
/// would deliver nothing.
fn write_filter(ebpf: &mut Ebpf, filter: KernelFilter) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(FILTER_MAP)
        .with_context(|| format!("map {FILTER_MAP} missing from the embedded eBPF object"))?;
    let mut array: Array<_, KernelFilter> = Array::try_from(map)?;
    array
        .set(0, filter, 0)
        .with_context(|| format!("writing the kernel-side filter into {FILTER_MAP}"))
}

/// Routes `aya-log` records of the kernel side into `tracing`, polled on the tokio runtime by
/// the task returned.
fn start_kernel_logger(ebpf: &mut Ebpf) -> Option<tokio::task::AbortHandle> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(err) => {
            // Only happens when the object was built without any log statement.
            tracing::debug!("kernel-side logging unavailable: {err}");
            return None;
        }
    };
    // SAFETY: the logger owns its ring buffer map's fd and keeps it open, unchanged, for as
    // long as it lives, which is as long as the AsyncFd that owns it.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let Ok(mut fd) = registered else {
        tracing::warn!("cannot poll the kernel-side log buffer; kernel warnings will not show");
        return None;
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Some(task.abort_handle())
}
