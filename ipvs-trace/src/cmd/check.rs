//! `ipvs-trace check`: can this node be traced, and how well? The first thing to run on a new
//! node.
//!
//! It goes through what `trace` needs in the order `trace` needs it — privileges, the ip_vs
//! module, BTF, the struct offsets, every probe against the symbol table and its prototype —
//! and prints each finding instead of stopping at the first problem. Nothing stays in the
//! kernel: the map, the program and the perf event it opens to ask whether this process may
//! are closed at once (`syscalls`). The output is stable (no addresses, no times), so it can be
//! compared between nodes.

mod dataplanes;
mod features;
mod syscalls;

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use ipvs_trace_common::offsets::{flags, KernelOffsets};

use crate::dataplane::Dataplane;
use crate::events::model::EventKind;
use crate::loader::kallsyms::Kallsyms;
use crate::loader::probes::{trampoline_target, AttachMode, Fit, Probe, PROBES};
use crate::loader::{kernel, privileges, trampoline, trampoline_path};
use crate::loader::{KernelTypes, Layout, LoadError};

/// What `check` was asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Split BTF of ip_vs to use instead of the kernel's, as `trace --btf`.
    pub btf: Option<PathBuf>,
    /// `--event`: the kinds `trace --event` would ask for (empty: every kind).
    pub kinds: Vec<EventKind>,
    /// `--attach`: how `trace --attach` would hook the functions.
    pub attach: AttachMode,
    /// `--dataplane`: the dataplanes `trace --dataplane` would trace (empty: every one).
    pub dataplanes: Vec<Dataplane>,
}

/// How the node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every probe fits and every field resolved.
    Ready,
    /// `trace` works, with less detail (see the report).
    Degraded,
    /// `trace` would fail.
    NotReady,
}

/// Prints the report on stdout; `Ok(false)` when `trace` would fail on this node.
pub fn run(config: &CheckConfig) -> anyhow::Result<bool> {
    let (report, verdict) = report(config);
    io::stdout().lock().write_all(report.as_bytes())?;
    Ok(verdict != Verdict::NotReady)
}

/// The report text and its verdict.
#[must_use]
pub fn report(config: &CheckConfig) -> (String, Verdict) {
    let mut out = String::new();
    let mut problems: Vec<String> = Vec::new();
    let mut degraded: Vec<String> = Vec::new();
    let release = kernel::release();
    // Writing into a String cannot fail.
    let _ = writeln!(out, "kernel      {release}");

    let privileged = match privileges::check() {
        Ok(()) => {
            out.push_str("privileges  ok\n");
            true
        }
        Err(err) => {
            let _ = writeln!(out, "privileges  NOT OK: {err}");
            problems.push("privileges".into());
            false
        }
    };
    syscalls::write(&mut out, privileged, &mut problems);
    features::write(&mut out, privileged, &mut problems);

    let (ip_vs_loaded, wants_netfilter) =
        write_modules(&mut out, config, &mut problems, &mut degraded);

    let types = load_btf(config, &mut out, &mut problems);
    let kallsyms = match Kallsyms::read() {
        Ok(k) => Some(k),
        Err(err) => {
            let _ = writeln!(
                out,
                "kallsyms    unreadable ({err}): probes not pre-checked"
            );
            None
        }
    };

    let path = attach_path(&mut out, config.attach, types.as_ref(), ip_vs_loaded);
    write_probes(
        &mut out,
        (&config.kinds, &config.dataplanes),
        types.as_ref(),
        kallsyms.as_ref(),
        (
            config.attach,
            path.as_ref().copied().map_err(String::as_str),
        ),
        &mut problems,
        &mut degraded,
    );

    if let Some(types) = types.as_ref().filter(|_| !ip_vs_loaded) {
        out.push_str("\noffsets     ip_vs not loaded: its structs are not resolved\n");
        write_nat_offsets(&mut out, types, wants_netfilter, &mut degraded);
    } else if let Some(types) = &types {
        match types.offsets(&release) {
            Ok(resolved) => {
                out.push_str(match types.layout {
                    Layout::ModuleBtf { .. } => "\noffsets (bytes into each struct, from BTF)\n",
                    Layout::Builtin { .. } => {
                        "\noffsets (bytes into each struct, built-in 5.x/6.x layout; sk_buff \
                         from vmlinux BTF; - = not read)\n"
                    }
                });
                write_offsets(&mut out, &resolved.offsets);
                degraded.extend(resolved.degraded);
            }
            Err(err) => {
                let _ = writeln!(out, "\noffsets     NOT RESOLVED: {err}");
                problems.push("struct offsets".into());
            }
        }
        write_nat_offsets(&mut out, types, wants_netfilter, &mut degraded);
    }

    out.push('\n');
    for note in &degraded {
        let _ = writeln!(out, "degraded    {note}");
    }
    let verdict = if !problems.is_empty() {
        let _ = writeln!(
            out,
            "result      NOT READY: {}: `ipvs-trace trace` would fail",
            problems.join("; ")
        );
        Verdict::NotReady
    } else if degraded.is_empty() {
        out.push_str("result      ready: every probe fits and every field resolved\n");
        Verdict::Ready
    } else {
        out.push_str("result      ready, degraded (see above)\n");
        Verdict::Degraded
    };
    (out, verdict)
}

/// The `ip_vs`, `nf_nat` and `dataplane` lines; whether ip_vs is loaded and whether the
/// netfilter dataplanes are asked for. ip_vs not loaded is a problem only where nothing else
/// can be traced: a node of kube-proxy's netfilter modes is traced through nf_nat alone.
fn write_modules(
    out: &mut String,
    config: &CheckConfig,
    problems: &mut Vec<String>,
    degraded: &mut Vec<String>,
) -> (bool, bool) {
    let wants = |d: Dataplane| config.dataplanes.is_empty() || config.dataplanes.contains(&d);
    let wants_netfilter = wants(Dataplane::Nftables) || wants(Dataplane::Iptables);
    let ip_vs_loaded = module_loaded("ip_vs");
    let nf_nat_loaded = module_loaded("nf_nat");
    if ip_vs_loaded {
        out.push_str("ip_vs       loaded\n");
    } else if wants_netfilter && nf_nat_loaded {
        // A node of kube-proxy's netfilter modes: traced through nf_nat alone.
        out.push_str("ip_vs       not loaded: no IPVS decisions (trace follows it if it loads)\n");
        if wants(Dataplane::Ipvs) {
            degraded.push("ip_vs is not loaded: no IPVS decisions".into());
        }
    } else {
        out.push_str("ip_vs       NOT LOADED: `modprobe ip_vs` (kube-proxy in IPVS mode loads it), or `trace --wait`\n");
        problems.push("ip_vs is not loaded".into());
    }
    if nf_nat_loaded {
        out.push_str("nf_nat      loaded\n");
    } else {
        out.push_str(
            "nf_nat      not loaded: no netfilter NAT on this node (kube-proxy's nftables and \
             iptables modes load it)\n",
        );
    }
    dataplanes::write(out);
    (ip_vs_loaded, wants_netfilter)
}

/// The `attach` line: the mode, and whether the trampoline path is open on this node (the
/// reason when not, which every probe then shares).
fn attach_path(
    out: &mut String,
    mode: AttachMode,
    types: Option<&KernelTypes>,
    ip_vs_loaded: bool,
) -> Result<(), String> {
    let mode_name = match mode {
        AttachMode::Auto => "auto",
        AttachMode::Fentry => "fentry",
        AttachMode::Kprobe => "kprobe",
    };
    let path = match types {
        None => Err("no BTF".to_owned()),
        Some(_) if !ip_vs_loaded => Err("ip_vs is not loaded".to_owned()),
        Some(types) => trampoline_path(mode, &types.layout)
            .and_then(|()| trampoline::find_module("ip_vs").map_err(|e| e.to_string())),
    };
    let _ = match (&path, mode) {
        (Ok(()), _) => writeln!(
            out,
            "attach      {mode_name}: BPF trampolines (fentry/fexit) on ip_vs's BTF in the kernel"
        ),
        (Err(_), AttachMode::Kprobe) => writeln!(out, "attach      kprobe: kprobes only"),
        (Err(why), _) => writeln!(out, "attach      {mode_name}: kprobes on ip_vs, as {why}"),
    };
    path
}

/// The hook `probe` will get, and how that was decided; `Err` for `--attach fentry` where
/// no trampoline can be had. `ip_vs_path` is the `attach` line's finding, which every probe on
/// ip_vs shares; a probe on another module looks at that module's BTF.
fn planned_hook(
    probe: &Probe,
    (mode, ip_vs_path): (AttachMode, Result<(), &str>),
    types: Option<&KernelTypes>,
) -> Result<(String, String), String> {
    let path = match (probe.module, types) {
        ("ip_vs", _) => ip_vs_path.map_err(|why| (why.to_owned(), true)),
        (_, None) => Err(("no BTF".to_owned(), false)),
        (module, Some(types)) => types
            .for_trampolines(module, mode)
            .map(drop)
            .and_then(|()| trampoline::find_module(module).map_err(|e| e.to_string()))
            .map_err(|why| (why, false)),
    };
    if mode == AttachMode::Kprobe {
        return Ok((probe.kprobe_hook().name().to_owned(), String::new()));
    }
    if let Err((why, shared)) = path {
        return match mode {
            AttachMode::Fentry => Err(why),
            // Shared by every probe on ip_vs, and said once on the `attach` line.
            _ if shared => Ok((probe.kprobe_hook().name().to_owned(), String::new())),
            _ => Ok((probe.kprobe_hook().name().to_owned(), why)),
        };
    }
    let trampoline = types
        .ok_or_else(|| "no BTF".to_owned())
        .and_then(|types| types.for_trampolines(probe.module, mode))
        .and_then(|btf| trampoline_target(probe, btf));
    match (trampoline, mode) {
        (Ok(_), _) => Ok((
            probe.trampoline_hook().name().to_owned(),
            "BPF trampoline".to_owned(),
        )),
        (Err(why), AttachMode::Fentry) => Err(why),
        (Err(why), _) => Ok((probe.kprobe_hook().name().to_owned(), why)),
    }
}

/// One line per probe: function, hook, events, role and whether it attaches (and why not, or
/// that `--event` leaves it out), with why a kprobe where a trampoline was possible in
/// principle; under each function its prototype when BTF has it.
fn write_probes(
    out: &mut String,
    (kinds, dataplanes): (&[EventKind], &[Dataplane]),
    types: Option<&KernelTypes>,
    kallsyms: Option<&Kallsyms>,
    attach: (AttachMode, Result<(), &str>),
    problems: &mut Vec<String>,
    degraded: &mut Vec<String>,
) {
    out.push_str("\nprobes\n");
    let mut shown_signatures: Vec<&str> = Vec::new();
    let mut fitting = 0;
    for probe in PROBES {
        let mut hook = "-".to_owned();
        let btf = types.map(|t| t.for_prototypes(probe.module));
        let (verdict, detail) = if !probe.wanted(kinds, &[]) {
            (
                "not attached",
                "--event asks for none of its events".to_owned(),
            )
        } else if !probe.wanted(&[], dataplanes) {
            (
                "not attached",
                "--dataplane asks for none of its dataplanes".to_owned(),
            )
        } else if module_loaded(probe.module) {
            match probe.fit(btf, kallsyms) {
                Fit::Fits { how } => match planned_hook(probe, attach, types) {
                    Ok((planned, why)) => {
                        fitting += 1;
                        hook = planned;
                        if why.is_empty() {
                            ("attaches", how)
                        } else {
                            ("attaches", format!("{how}; {why}"))
                        }
                    }
                    Err(why) => {
                        problems.push(format!("--attach fentry: {}", probe.function));
                        ("NO TRAMPOLINE", why)
                    }
                },
                Fit::Misfit { why } => {
                    match probe.loses {
                        None => problems.push(format!("the probe on {}", probe.function)),
                        Some(loses) => {
                            let note = format!("no {loses}");
                            if !degraded.contains(&note) {
                                degraded.push(note);
                            }
                        }
                    }
                    ("SKIPPED", why)
                }
            }
        } else {
            ("unknown", format!("{} is not loaded", probe.module))
        };
        let role = if probe.loses.is_some() {
            "optional"
        } else {
            "mandatory"
        };
        let _ = writeln!(
            out,
            "  {:<21} {hook:<9}  {:<13}  {role:<9}  {verdict}: {detail}",
            probe.function, probe.events
        );
        if shown_signatures.contains(&probe.function) {
            continue;
        }
        shown_signatures.push(probe.function);
        if let Some(Ok(Some(signature))) = btf.map(|b| b.function_signature(probe.function)) {
            let _ = writeln!(out, "      {signature}");
        }
    }
    if fitting == 0 && problems.is_empty() {
        // Only optional probes were asked for, and none fits: trace would attach nothing.
        problems.push("no probe of the events asked for fits".into());
    }
}

/// Whether a kernel module is there: loaded, or (nf_nat) built in.
fn module_loaded(module: &str) -> bool {
    match module {
        "nf_nat" => kernel::nf_nat_present(),
        _ => Path::new("/sys/module").join(module).exists(),
    }
}

/// The BTF `trace` would use, reported on `out`.
fn load_btf(
    config: &CheckConfig,
    out: &mut String,
    problems: &mut Vec<String>,
) -> Option<KernelTypes> {
    match KernelTypes::read(config.btf.as_deref()) {
        Ok(types) => {
            let vmlinux = types.vmlinux.display();
            let _ = match &types.layout {
                Layout::ModuleBtf { path, given } => writeln!(
                    out,
                    "BTF         vmlinux {vmlinux}; ip_vs {} ({})",
                    path.display(),
                    if *given {
                        "--btf"
                    } else {
                        "the kernel's module BTF"
                    }
                ),
                Layout::Builtin { missing } => writeln!(
                    out,
                    "BTF         vmlinux {vmlinux}; ip_vs NONE ({} is missing): built-in layout; \
                     --btf FILE gives full detail (README: making split BTF with pahole)",
                    missing.display()
                ),
            };
            Some(types)
        }
        Err(LoadError::Btf(err)) if config.btf.is_some() => {
            let _ = writeln!(out, "BTF         ip_vs UNUSABLE: {err}");
            problems.push("unusable ip_vs BTF".into());
            None
        }
        Err(err) => {
            let _ = writeln!(out, "BTF         NONE for vmlinux: {err}");
            problems.push("no kernel BTF (CONFIG_DEBUG_INFO_BTF)".into());
            None
        }
    }
}

/// The NAT probe's members (`nf_conn` from vmlinux BTF), or why the probe cannot run.
fn write_nat_offsets(
    out: &mut String,
    types: &KernelTypes,
    wanted: bool,
    degraded: &mut Vec<String>,
) {
    let mut o = KernelOffsets::default();
    match crate::offsets::nat::resolve(&types.btf, &mut o) {
        Ok(()) => {
            out.push_str("\noffsets of the NAT probe (bytes, from vmlinux BTF)\n");
            for (name, offset) in [
                ("nf_conn.status", o.ct_status),
                ("nf_conn.tuplehash[0].tuple", o.ct_orig),
                ("nf_conn.tuplehash[1].tuple", o.ct_reply),
                ("nf_conntrack_tuple.src.u3", o.tuple_src_u3),
                ("nf_conntrack_tuple.src.u.all", o.tuple_src_port),
                ("nf_conntrack_tuple.src.l3num", o.tuple_l3num),
                ("nf_conntrack_tuple.dst.u3", o.tuple_dst_u3),
                ("nf_conntrack_tuple.dst.u.all", o.tuple_dst_port),
                ("nf_conntrack_tuple.dst.protonum", o.tuple_protonum),
            ] {
                let _ = writeln!(out, "  {name:<32} {offset}");
            }
            if o.flags & flags::NAT_NETNS != 0 {
                let _ = writeln!(out, "  {:<32} {}", "nf_conn.ct_net.net", o.ct_net);
            } else {
                let _ = writeln!(out, "  {:<32} -", "nf_conn.ct_net.net");
            }
        }
        Err(why) => {
            let _ = writeln!(out, "\noffsets of the NAT probe: NOT RESOLVED: {why}");
            if wanted {
                degraded.push(format!("no netfilter decisions: {why}"));
            }
        }
    }
}

/// The offsets section of the report, as `check` prints it: tests compare it with offsets
/// resolved on the host from a kernel package's own files.
#[must_use]
pub fn offsets_report(offsets: &KernelOffsets) -> String {
    let mut out = String::new();
    write_offsets(&mut out, offsets);
    out
}

/// One `struct.field offset` line per field the probes read, and the layout flags.
fn write_offsets(out: &mut String, o: &KernelOffsets) {
    let fields: [(&str, u32); 30] = [
        ("ip_vs_conn.caddr", o.conn_caddr),
        ("ip_vs_conn.vaddr", o.conn_vaddr),
        ("ip_vs_conn.daddr", o.conn_daddr),
        ("ip_vs_conn.cport", o.conn_cport),
        ("ip_vs_conn.vport", o.conn_vport),
        ("ip_vs_conn.dport", o.conn_dport),
        ("ip_vs_conn.af", o.conn_af),
        ("ip_vs_conn.daf", o.conn_daf),
        ("ip_vs_conn.protocol", o.conn_protocol),
        ("ip_vs_conn.flags", o.conn_flags),
        ("ip_vs_conn.state", o.conn_state),
        ("ip_vs_conn.dest", o.conn_dest),
        ("ip_vs_conn.ipvs", o.conn_ipvs),
        ("ip_vs_dest.weight", o.dest_weight),
        ("ip_vs_dest.activeconns", o.dest_activeconns),
        ("ip_vs_dest.inactconns", o.dest_inactconns),
        ("ip_vs_dest.svc", o.dest_svc),
        ("ip_vs_service.addr", o.svc_addr),
        ("ip_vs_service.port", o.svc_port),
        ("ip_vs_service.protocol", o.svc_protocol),
        ("ip_vs_service.af", o.svc_af),
        ("ip_vs_service.scheduler", o.svc_scheduler),
        ("ip_vs_service.ipvs", o.svc_ipvs),
        ("ip_vs_scheduler.name", o.sched_name),
        ("netns_ipvs.net", o.ipvs_net),
        ("net.ns.inum", o.net_ns_inum),
        ("ip_vs_iphdr.len", o.iph_len),
        ("ip_vs_iphdr.saddr", o.iph_saddr),
        ("ip_vs_iphdr.daddr", o.iph_daddr),
        ("sk_buff.data", o.skb_data),
    ];
    for (name, offset) in fields {
        // A part the probes do not read (built-in layout, or netns unresolved) has no offset.
        let gate = match name.split_once('.').map(|(strukt, _)| strukt) {
            Some("ip_vs_dest") => flags::DEST,
            Some("ip_vs_scheduler") => flags::SCHEDULER,
            Some("netns_ipvs" | "net") => flags::NETNS,
            _ => match name {
                "ip_vs_conn.dest" => flags::DEST,
                "ip_vs_service.scheduler" => flags::SCHEDULER,
                "ip_vs_conn.ipvs" | "ip_vs_service.ipvs" => flags::NETNS,
                _ => 0,
            },
        };
        if o.flags & gate == gate {
            let _ = writeln!(out, "  {name:<26} {offset}");
        } else {
            let _ = writeln!(out, "  {name:<26} -");
        }
    }
    let named = [
        (
            flags::DEST_TOTALCONNS,
            "ip_vs_dest counts totalconns (inactive = total - active)",
        ),
        (flags::NETNS, "netns resolved"),
        (flags::CONN_AF_U8, "ip_vs_conn.af is one byte"),
        (flags::CONN_DAF_U8, "ip_vs_conn.daf is one byte"),
    ];
    let set: Vec<&str> = named
        .iter()
        .filter(|(bit, _)| o.flags & bit != 0)
        .map(|(_, what)| *what)
        .collect();
    let _ = writeln!(
        out,
        "  layout: {}",
        if set.is_empty() {
            "no special case".to_owned()
        } else {
            set.join("; ")
        }
    );
}
