//! The table of probes and attaching them.

use aya::{
    programs::{KProbe, ProbeKind},
    Ebpf,
};

use super::LoadError;
use crate::btf::Btf;

/// One eBPF program and the kernel function it hooks.
struct Probe {
    /// Program name in the object (the Rust function name in `ipvs-trace-ebpf`).
    program: &'static str,
    /// Kernel function to attach to.
    function: &'static str,
    /// What is lost when this probe cannot be attached; `None` for the mandatory probe.
    loses: Option<&'static str>,
}

/// Attach order matters: the entry probe of `ip_vs_schedule` before its return probe, so the
/// return probe never runs without saved arguments.
const PROBES: &[Probe] = &[
    Probe {
        program: "ip_vs_conn_new",
        function: "ip_vs_conn_new",
        loses: None,
    },
    Probe {
        program: "tcp_state_transition",
        function: "tcp_state_transition",
        loses: Some("`reused` events (TCP connections that hit an existing entry)"),
    },
    Probe {
        program: "ip_vs_schedule",
        function: "ip_vs_schedule",
        loses: Some("`no_dest` events (services without a usable real server)"),
    },
    Probe {
        program: "ip_vs_schedule_ret",
        function: "ip_vs_schedule",
        loses: Some("`no_dest` events (services without a usable real server)"),
    },
];

/// Loads and attaches every probe; returns the functions attached. An optional probe that fails
/// adds a note to `degraded` and a warning; the mandatory one fails the start.
pub fn attach_all(
    ebpf: &mut Ebpf,
    ip_vs_btf: &Btf,
    target_override: Option<&(String, String)>,
    degraded: &mut Vec<String>,
) -> Result<Vec<&'static str>, LoadError> {
    let mut attached: Vec<&'static str> = Vec::new();
    for probe in PROBES {
        let target = match target_override {
            Some((function, symbol)) if function == probe.function => symbol.as_str(),
            _ => probe.function,
        };
        match attach_one(ebpf, probe.program, target) {
            Ok(kind) => {
                tracing::debug!("attached {kind} {} to {target}", probe.program);
                if !attached.contains(&probe.function) {
                    attached.push(probe.function);
                }
            }
            Err((kind, source)) => {
                let Some(loses) = probe.loses else {
                    return Err(LoadError::Attach {
                        kind,
                        function: target.to_owned(),
                        source,
                    });
                };
                // BTF knows whether the function exists at all, which makes the warning precise.
                let why = if ip_vs_btf.has_function(target) {
                    format!("{source}")
                } else {
                    "the function does not exist in this kernel".to_owned()
                };
                let note = format!("cannot attach a {kind} to `{target}` ({why}): no {loses}");
                tracing::warn!("{note}");
                degraded.push(note);
            }
        }
    }
    Ok(attached)
}

fn attach_one(
    ebpf: &mut Ebpf,
    program: &str,
    target: &str,
) -> Result<&'static str, (&'static str, aya::programs::ProgramError)> {
    let prog: &mut KProbe = ebpf
        .program_mut(program)
        .unwrap_or_else(|| panic!("program {program} missing from the embedded eBPF object"))
        .try_into()
        .unwrap_or_else(|_| panic!("program {program} in the eBPF object is not a kprobe"));
    let kind = match prog.kind() {
        ProbeKind::Return => "kretprobe",
        ProbeKind::Entry => "kprobe",
    };
    prog.load().map_err(|err| (kind, err))?;
    prog.attach(target, 0).map_err(|err| (kind, err))?;
    Ok(kind)
}
