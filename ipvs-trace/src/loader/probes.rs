//! The table of probes and attaching them: only those whose events were asked for (`trace
//! --event`), so that a trace of new connections does not pay the per-packet probe; each
//! through a BPF trampoline (fentry/fexit) where the kernel takes one, a kprobe otherwise
//! (`--attach`).

use aya::{programs::KProbe, Ebpf};

use super::kallsyms::Kallsyms;
use super::trampoline::{Side, TrampolineLink, Trampolines};
use super::{KernelTypes, LoadError};
use crate::btf::{Btf, Signature};
use crate::dataplane::Dataplane;
use crate::events::model::EventKind;

/// How the probes are attached (`--attach`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// fentry/fexit where the kernel takes them, kprobes for the others.
    #[default]
    Auto,
    /// fentry/fexit for every probe, or fail saying why not.
    Fentry,
    /// kprobes/kretprobes only.
    Kprobe,
}

/// The kind of hook a probe got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Kprobe,
    Kretprobe,
    Fentry,
    Fexit,
}

impl Hook {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Hook::Kprobe => "kprobe",
            Hook::Kretprobe => "kretprobe",
            Hook::Fentry => "fentry",
            Hook::Fexit => "fexit",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel function hooked, and its two programs: a kprobe (or kretprobe) and a trampoline
/// program (fentry or fexit) for the same events.
#[derive(Debug)]
pub struct Probe {
    /// The kprobe program's name in the object (the Rust function name in `ipvs-trace-ebpf`).
    pub program: &'static str,
    /// For a kretprobe that needs the arguments: the kprobe on the function's entry that keeps
    /// them for it, attached first.
    pub kprobe_entry: Option<&'static str>,
    /// The fentry/fexit program's name.
    pub trampoline_program: &'static str,
    /// Kernel function to attach to.
    pub function: &'static str,
    /// The module that has it: its BTF describes the function, and it must be loaded.
    pub module: &'static str,
    /// The dataplanes whose decisions it sees (`--dataplane`).
    pub dataplanes: &'static [Dataplane],
    /// Whether the programs run at the function's entry or its return.
    pub side: Side,
    /// The events the probe produces, for people.
    pub events: &'static str,
    /// The same, as kinds: the probe is attached when one of them is asked for.
    pub kinds: &'static [EventKind],
    /// Runs for every packet (not once per connection): what `check` and the summary point
    /// out as the cost of asking for its events.
    pub per_packet: bool,
    /// What is lost when this probe cannot be attached; `None` for the mandatory probe.
    pub loses: Option<&'static str>,
    /// The prototype the kprobe program was written for.
    pub shape: Shape,
    /// The prototype the trampoline program was written for (it may read more: arguments a
    /// kretprobe does not have, or a return value found by the number of arguments).
    pub trampoline_shape: Shape,
}

/// What a program reads of its function's prototype: the return type (kretprobes and fexit)
/// and the parameters it takes by position (`None`: not read, any type). Types as
/// [`Signature`](crate::btf::Signature) renders them.
#[derive(Debug)]
pub struct Shape {
    pub ret: Option<&'static str>,
    pub params: &'static [Option<&'static str>],
    /// The exact number of parameters, for a program that finds the return value in the
    /// context slot after them (an fexit that keeps the value's type).
    pub arity: Option<usize>,
}

const CONN_PTR: &str = "struct ip_vs_conn *";

/// IPVS's probes see IPVS's decisions only.
const IPVS: &[Dataplane] = &[Dataplane::Ipvs];

/// What `nf_nat_setup_info`'s programs read: `ct` and `maniptype`, and the `unsigned int`
/// verdict.
const NAT_SETUP: Shape = Shape {
    ret: Some("unsigned int"),
    params: &[
        Some("struct nf_conn *"),
        None,
        Some("enum nf_nat_manip_type"),
    ],
    arity: None,
};

/// What `tcp_state_transition`'s programs read: `cp`, `direction` and `skb`.
const STATE_TRANSITION: Shape = Shape {
    ret: None,
    params: &[Some(CONN_PTR), Some("int"), Some("const struct sk_buff *")],
    arity: None,
};

/// What `ip_vs_leave`'s programs read: `svc`, `skb` and `iph`.
const LEAVE: Shape = Shape {
    ret: None,
    params: &[
        Some("struct ip_vs_service *"),
        Some("struct sk_buff *"),
        None,
        Some("struct ip_vs_iphdr *"),
    ],
    arity: None,
};

/// In the order of attaching and of the `tracing (...)` line: the mandatory probe first, so a
/// kernel without it fails the start before anything else is attached.
pub const PROBES: &[Probe] = &[
    Probe {
        program: "ip_vs_conn_new",
        kprobe_entry: None,
        trampoline_program: "ip_vs_conn_new_fexit",
        function: "ip_vs_conn_new",
        module: "ip_vs",
        dataplanes: IPVS,
        side: Side::Exit,
        events: "new, template",
        kinds: &[EventKind::New, EventKind::Template],
        per_packet: false,
        loses: None,
        shape: Shape {
            ret: Some(CONN_PTR),
            params: &[],
            arity: None,
        },
        // `flags` (argument 4) gives the kind; the entry is in the slot after the arguments.
        trampoline_shape: Shape {
            ret: Some(CONN_PTR),
            params: &[None, None, None, None, Some("unsigned int")],
            arity: Some(ipvs_trace_common::offsets::CONN_NEW_ARGS),
        },
    },
    Probe {
        program: "tcp_state_transition",
        kprobe_entry: None,
        trampoline_program: "tcp_state_transition_fentry",
        function: "tcp_state_transition",
        module: "ip_vs",
        dataplanes: IPVS,
        side: Side::Entry,
        events: "reused",
        kinds: &[EventKind::Reused],
        per_packet: true,
        loses: Some("`reused` events (TCP connections that hit an existing entry)"),
        shape: STATE_TRANSITION,
        trampoline_shape: STATE_TRANSITION,
    },
    Probe {
        program: "ip_vs_leave",
        kprobe_entry: None,
        trampoline_program: "ip_vs_leave_fentry",
        function: "ip_vs_leave",
        module: "ip_vs",
        dataplanes: IPVS,
        side: Side::Entry,
        events: "no_dest",
        kinds: &[EventKind::NoDest],
        per_packet: false,
        loses: Some("`no_dest` events (services without a usable real server)"),
        shape: LEAVE,
        trampoline_shape: LEAVE,
    },
    Probe {
        program: "nf_nat_setup_info_ret",
        kprobe_entry: Some("nf_nat_setup_info"),
        trampoline_program: "nf_nat_setup_info_fexit",
        function: "nf_nat_setup_info",
        module: "nf_nat",
        dataplanes: &[Dataplane::Nftables, Dataplane::Iptables],
        side: Side::Exit,
        events: "new (netfilter)",
        kinds: &[EventKind::New],
        per_packet: false,
        loses: Some("netfilter decisions (kube-proxy's nftables and iptables modes)"),
        shape: NAT_SETUP,
        // The verdict is in the slot after the three arguments.
        trampoline_shape: Shape {
            arity: Some(ipvs_trace_common::offsets::NAT_SETUP_ARGS),
            ..NAT_SETUP
        },
    },
];

/// Whether a probe fits the running kernel, checked before attaching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fit {
    /// It will attach; `how` says what was checked.
    Fits { how: String },
    /// It would attach to the wrong thing, or to nothing.
    Misfit { why: String },
}

impl Probe {
    /// The hook of its kprobe program.
    #[must_use]
    pub fn kprobe_hook(&self) -> Hook {
        match self.side {
            Side::Entry => Hook::Kprobe,
            Side::Exit => Hook::Kretprobe,
        }
    }

    /// The hook of its trampoline program.
    #[must_use]
    pub fn trampoline_hook(&self) -> Hook {
        match self.side {
            Side::Entry => Hook::Fentry,
            Side::Exit => Hook::Fexit,
        }
    }

    /// Whether the events asked for (`kinds`; empty: all) from the dataplanes asked for
    /// (`dataplanes`; empty: all) need this probe.
    #[must_use]
    pub fn wanted(&self, kinds: &[EventKind], dataplanes: &[Dataplane]) -> bool {
        (kinds.is_empty() || self.kinds.iter().any(|kind| kinds.contains(kind)))
            && (dataplanes.is_empty() || self.dataplanes.iter().any(|d| dataplanes.contains(d)))
    }

    /// Checks the function against the symbol table (when readable) and its prototype against
    /// [`Probe::shape`] (when BTF describes it).
    #[must_use]
    pub fn fit(&self, btf: Option<&Btf>, kallsyms: Option<&Kallsyms>) -> Fit {
        if let Some(kallsyms) = kallsyms {
            if !kallsyms.has_function(self.function) {
                return Fit::Misfit {
                    why: format!(
                        "`{}` is not in /proc/kallsyms (not in this kernel, inlined or renamed)",
                        self.function
                    ),
                };
            }
        }
        let signature = btf.map(|btf| btf.function_signature(self.function));
        let symbols = if kallsyms.is_some() {
            "in kallsyms"
        } else {
            "kallsyms unreadable"
        };
        match signature {
            Some(Ok(Some(signature))) => match self.shape.mismatch(&signature) {
                None => Fit::Fits {
                    how: format!("{symbols}, prototype matches"),
                },
                Some(what) => Fit::Misfit {
                    why: format!("its prototype is `{signature}`: {what}"),
                },
            },
            Some(Ok(None)) | None => Fit::Fits {
                how: format!("{symbols}, prototype not checked (no BTF for it)"),
            },
            Some(Err(err)) => Fit::Fits {
                how: format!("{symbols}, prototype not checked ({err})"),
            },
        }
    }
}

impl Shape {
    /// What in `signature` differs from this shape, if anything.
    fn mismatch(&self, signature: &Signature) -> Option<String> {
        if let Some(ret) = self.ret {
            if signature.ret != ret {
                return Some(format!("the probe reads a return value of type `{ret}`"));
            }
        }
        if let Some(arity) = self.arity {
            if signature.params.len() != arity {
                return Some(format!(
                    "the program finds the return value after exactly {arity} arguments"
                ));
            }
        }
        for (i, want) in self.params.iter().enumerate() {
            let Some(want) = want else { continue };
            match signature.params.get(i) {
                Some((_, have)) if have == want => {}
                _ => return Some(format!("the probe reads argument {} as `{want}`", i + 1)),
            }
        }
        None
    }
}

/// A probe attached, and how.
#[derive(Clone, Debug)]
pub struct Attached {
    pub probe: &'static Probe,
    pub hook: Hook,
    /// Why a kprobe rather than a trampoline (with `--attach auto`); `None` for a trampoline
    /// or `--attach kprobe`.
    pub fallback: Option<String>,
}

/// What a start attached, for the `tracing (...)` line, the summary and `check`.
#[derive(Clone, Debug, Default)]
pub struct Attachment {
    /// Attached, in [`PROBES`] order.
    pub attached: Vec<Attached>,
    /// Left out: no event asked for comes from them.
    pub not_asked: Vec<&'static Probe>,
    /// Asked for, but this kernel does not take them (each also a degraded note).
    pub unavailable: Vec<&'static Probe>,
}

impl Attachment {
    /// The kernel functions with a probe attached.
    #[must_use]
    pub fn functions(&self) -> Vec<&'static str> {
        let mut functions: Vec<&'static str> = Vec::new();
        for a in &self.attached {
            if !functions.contains(&a.probe.function) {
                functions.push(a.probe.function);
            }
        }
        functions
    }

    /// What the `ipvs-trace: tracing (...)` line says in its parentheses: each function
    /// attached with its hook, then those left out because no event asked for needs them.
    #[must_use]
    pub fn tracing_list(&self) -> String {
        let attached: Vec<String> = self
            .attached
            .iter()
            .map(|a| format!("{} ({})", a.probe.function, a.hook))
            .collect();
        let mut out = attached.join(", ");
        if !self.not_asked.is_empty() {
            out.push_str("; not attached, as --event or --dataplane does not ask for them: ");
            out.push_str(&listed(&self.not_asked));
        }
        out
    }

    /// The summary's `probes:` line.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let attached: Vec<String> = self
            .attached
            .iter()
            .map(|a| {
                let per_packet = if a.probe.per_packet {
                    ", per packet"
                } else {
                    ""
                };
                format!(
                    "{} ({}: {}{per_packet})",
                    a.probe.function, a.hook, a.probe.events
                )
            })
            .collect();
        let mut out = format!(
            "probes: {}",
            if attached.is_empty() {
                "none".to_owned()
            } else {
                attached.join(", ")
            }
        );
        if !self.not_asked.is_empty() {
            out.push_str("   not asked for: ");
            out.push_str(&listed(&self.not_asked));
        }
        if !self.unavailable.is_empty() {
            out.push_str("   unavailable: ");
            out.push_str(&listed(&self.unavailable));
        }
        out
    }
}

/// `function (events[, per packet])`, comma separated: probes with no hook chosen.
fn listed(probes: &[&Probe]) -> String {
    let items: Vec<String> = probes
        .iter()
        .map(|p| {
            let per_packet = if p.per_packet { ", per packet" } else { "" };
            format!("{} ({}{per_packet})", p.function, p.events)
        })
        .collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Whether the trampoline path is open at all on this start, before any probe: the
/// [`Trampolines`] prepared, or why a kprobe is used for every probe.
pub type TrampolinePath<'a> = Result<&'a Trampolines, &'a str>;

/// The function id a trampoline for `probe` attaches to: its id in its module's split BTF
/// (`module_btf`), or why there is none (not described, or a prototype its program was not written for).
/// Past this, only the kernel can say (no trampolines on the architecture, or a refusal).
pub fn trampoline_target(probe: &Probe, module_btf: &Btf) -> Result<u32, String> {
    let id = module_btf
        .module_function_id(probe.function)
        .ok_or_else(|| {
            format!(
                "`{}` is not in {}'s BTF (inlined?)",
                probe.function, probe.module
            )
        })?;
    match module_btf.function_signature(probe.function) {
        Ok(Some(signature)) => match probe.trampoline_shape.mismatch(&signature) {
            None => Ok(id),
            Some(what) => Err(format!("its prototype is `{signature}`: {what}")),
        },
        Ok(None) => Ok(id),
        Err(err) => Err(format!("its prototype is unreadable in BTF: {err}")),
    }
}

/// What attaching depends on, besides the loaded object.
pub struct AttachPlan<'a> {
    pub types: &'a KernelTypes,
    pub kallsyms: Option<&'a Kallsyms>,
    /// The events asked for (empty: all).
    pub kinds: &'a [EventKind],
    /// The dataplanes asked for (empty: all).
    pub dataplanes: &'a [Dataplane],
    pub mode: AttachMode,
    pub trampolines: TrampolinePath<'a>,
    /// Test hook: the kprobe for function `.0` goes to symbol `.1`.
    pub target_override: Option<&'a (String, String)>,
    /// Modules whose probes cannot attach on this start (not loaded, their structs not
    /// resolved), and why: each a note, not an error.
    /// The flag: the module is merely absent (a dataplane the node does not have).
    pub blocked: &'a [(&'static str, String, bool)],
}

/// Loads and attaches the probes the events and dataplanes asked for need, each through its
/// trampoline program where the plan allows and the kernel takes it (per `mode`). An optional
/// probe that fails, or whose module is not loaded, adds a note to `degraded` and a warning;
/// the mandatory one, when asked for and its module loaded, fails the start, and so does a
/// start that attaches nothing, or `--attach fentry` where a trampoline cannot be had. The
/// links of the trampolines are pushed to `links`: they detach when dropped.
pub fn attach_all(
    ebpf: &mut Ebpf,
    plan: &AttachPlan<'_>,
    links: &mut Vec<TrampolineLink>,
    degraded: &mut Vec<String>,
) -> Result<Attachment, LoadError> {
    let mut attachment = Attachment::default();
    for probe in PROBES {
        if !probe.wanted(plan.kinds, plan.dataplanes) {
            attachment.not_asked.push(probe);
            continue;
        }
        let loses = probe.loses.unwrap_or("IPVS decisions");
        if let Some((_, why, absent)) = plan.blocked.iter().find(|(m, ..)| *m == probe.module) {
            let note = format!("{why}: no probe on `{}`, no {loses}", probe.function);
            if *absent && plan.dataplanes.is_empty() {
                // Every dataplane the node has was asked for, and it has not this one: nothing
                // is missing (the summary still lists the probe as unavailable).
                tracing::info!("{note}");
            } else {
                tracing::warn!("{note}");
                degraded.push(note);
            }
            attachment.unavailable.push(probe);
            continue;
        }
        let target = match plan.target_override {
            Some((function, symbol)) if function == probe.function => symbol.as_str(),
            _ => probe.function,
        };
        let btf = plan.types.for_prototypes(probe.module);
        // The test hook's target is deliberately wrong: let the attach itself fail.
        if target == probe.function {
            if let Fit::Misfit { why } = probe.fit(Some(btf), plan.kallsyms) {
                let Some(loses) = probe.loses else {
                    return Err(LoadError::Misfit {
                        kind: probe.kprobe_hook().name(),
                        function: probe.function,
                        why,
                    });
                };
                let note = format!(
                    "skipping the probe on `{}`: {why}: no {loses}",
                    probe.function
                );
                tracing::warn!("{note}");
                degraded.push(note);
                attachment.unavailable.push(probe);
                continue;
            }
        }
        let fallback = match trampoline_first(probe, target, plan, links)? {
            First::Attached(attached) => {
                attachment.attached.push(attached);
                continue;
            }
            First::Kprobe { fallback } => fallback,
        };
        let hook = probe.kprobe_hook();
        let attached = probe
            .kprobe_entry
            .map_or(Ok(()), |entry| attach_kprobe(ebpf, entry, target))
            .and_then(|()| attach_kprobe(ebpf, probe.program, target));
        match attached {
            Ok(()) => {
                tracing::debug!("attached {hook} {} to {target}", probe.program);
                attachment.attached.push(Attached {
                    probe,
                    hook,
                    fallback,
                });
            }
            Err(source) => {
                let Some(loses) = probe.loses else {
                    return Err(LoadError::Attach {
                        kind: hook.name(),
                        function: target.to_owned(),
                        source: Box::new(source),
                    });
                };
                // BTF knows whether the function exists at all, which makes the warning precise.
                let why = if btf.has_function(target) || probe.module != "ip_vs" {
                    format!("{source}")
                } else {
                    "the function does not exist in this kernel".to_owned()
                };
                let note = format!("cannot attach a {hook} to `{target}` ({why}): no {loses}");
                tracing::warn!("{note}");
                degraded.push(note);
                attachment.unavailable.push(probe);
            }
        }
    }
    if attachment.attached.is_empty() {
        let unavailable: Vec<&str> = attachment.unavailable.iter().map(|p| p.function).collect();
        return Err(LoadError::NothingAttached {
            unavailable: unavailable.join(", "),
        });
    }
    Ok(attachment)
}

/// What [`trampoline_first`] did.
enum First {
    /// The trampoline is attached.
    Attached(Attached),
    /// The kprobe is next; `fallback` says why where a trampoline was tried.
    Kprobe { fallback: Option<String> },
}

/// The trampoline of `probe` attached, unless kprobes were asked for or the test hook aims the
/// kprobe elsewhere (`target`); `--attach fentry` makes a failure an error.
fn trampoline_first(
    probe: &'static Probe,
    target: &str,
    plan: &AttachPlan<'_>,
    links: &mut Vec<TrampolineLink>,
) -> Result<First, LoadError> {
    let mode = plan.mode;
    if mode == AttachMode::Kprobe {
        return Ok(First::Kprobe { fallback: None });
    }
    if target != probe.function {
        return Ok(First::Kprobe {
            fallback: Some(
                "the test hook --debug-kprobe-target aims its kprobe elsewhere".to_owned(),
            ),
        });
    }
    match attach_trampoline(probe, plan) {
        Ok(link) => {
            tracing::debug!(
                "attached {} {} to {}",
                probe.trampoline_hook(),
                probe.trampoline_program,
                probe.function
            );
            links.push(link);
            Ok(First::Attached(Attached {
                probe,
                hook: probe.trampoline_hook(),
                fallback: None,
            }))
        }
        Err(why) if mode == AttachMode::Fentry => Err(LoadError::NoTrampoline {
            hook: probe.trampoline_hook().name(),
            function: probe.function,
            why,
        }),
        Err(why) => {
            tracing::info!(
                "a {} on `{}` instead of the {}: {why}",
                probe.kprobe_hook(),
                probe.function,
                probe.trampoline_hook()
            );
            Ok(First::Kprobe {
                fallback: Some(why),
            })
        }
    }
}

fn attach_trampoline(probe: &Probe, plan: &AttachPlan<'_>) -> Result<TrampolineLink, String> {
    let trampolines = plan.trampolines.map_err(str::to_owned)?;
    let module_btf = plan.types.for_trampolines(probe.module, plan.mode)?;
    trampolines
        .module_btf(probe.module)
        .map_err(str::to_owned)?;
    let btf_id = trampoline_target(probe, module_btf)?;
    trampolines
        .attach(probe.trampoline_program, probe.side, probe.module, btf_id)
        .map_err(|e| e.to_string())
}

fn attach_kprobe(
    ebpf: &mut Ebpf,
    program: &str,
    target: &str,
) -> Result<(), aya::programs::ProgramError> {
    let prog: &mut KProbe = ebpf
        .program_mut(program)
        .unwrap_or_else(|| panic!("program {program} missing from the embedded eBPF object"))
        .try_into()
        .unwrap_or_else(|_| panic!("program {program} in the eBPF object is not a kprobe"));
    prog.load()?;
    prog.attach(target, 0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::builder::Builder;

    /// BTF with `tcp_state_transition` declared with `direction` of type `direction_type`.
    fn btf(direction_type: &str) -> Btf {
        let mut b = Builder::base();
        let int = b.int(direction_type, 4);
        let conn = b.fwd("ip_vs_conn");
        let conn_ptr = b.ptr(conn);
        let skb = b.fwd("sk_buff");
        let const_skb = b.constant(skb);
        let skb_ptr = b.ptr(const_skb);
        let proto = b.func_proto(0, &[("cp", conn_ptr), ("direction", int), ("skb", skb_ptr)]);
        b.func("tcp_state_transition", proto);
        Btf::parse(&b.build()).unwrap()
    }

    fn probe(function: &str) -> &'static Probe {
        PROBES
            .iter()
            .find(|p| p.function == function)
            .expect("a probe")
    }

    #[test]
    fn a_matching_prototype_fits() {
        let syms = Kallsyms::parse("0 t tcp_state_transition [ip_vs]\n");
        let fit = probe("tcp_state_transition").fit(Some(&btf("int")), Some(&syms));
        assert_eq!(
            fit,
            Fit::Fits {
                how: "in kallsyms, prototype matches".into()
            }
        );
    }

    #[test]
    fn a_changed_argument_type_is_a_misfit_naming_it() {
        let syms = Kallsyms::parse("0 t tcp_state_transition [ip_vs]\n");
        let Fit::Misfit { why } =
            probe("tcp_state_transition").fit(Some(&btf("long")), Some(&syms))
        else {
            panic!("a long direction must not fit");
        };
        assert!(why.contains("argument 2 as `int`"), "{why}");
        assert!(why.contains("long direction"), "{why}");
    }

    #[test]
    fn a_function_missing_from_kallsyms_is_a_misfit() {
        let syms = Kallsyms::parse("0 t tcp_state_transition.isra.0 [ip_vs]\n");
        let fit = probe("tcp_state_transition").fit(Some(&btf("int")), Some(&syms));
        assert!(matches!(fit, Fit::Misfit { why } if why.contains("not in /proc/kallsyms")));
    }

    #[test]
    fn only_the_probes_of_the_kinds_and_dataplanes_asked_for_are_wanted() {
        let wanted = |kinds: &[EventKind], dataplanes: &[Dataplane]| -> Vec<&str> {
            PROBES
                .iter()
                .filter(|p| p.wanted(kinds, dataplanes))
                .map(|p| p.function)
                .collect()
        };
        let all = [
            "ip_vs_conn_new",
            "tcp_state_transition",
            "ip_vs_leave",
            "nf_nat_setup_info",
        ];
        assert_eq!(wanted(&[], &[]), all);
        assert_eq!(wanted(&[], &Dataplane::ALL), all);
        assert_eq!(
            wanted(&[EventKind::New, EventKind::Template], &[]),
            ["ip_vs_conn_new", "nf_nat_setup_info"]
        );
        assert_eq!(wanted(&[EventKind::Template], &[]), ["ip_vs_conn_new"]);
        assert_eq!(
            wanted(&[EventKind::New, EventKind::NoDest], &[]),
            ["ip_vs_conn_new", "ip_vs_leave", "nf_nat_setup_info"]
        );
        assert_eq!(wanted(&[EventKind::Reused], &[]), ["tcp_state_transition"]);
        assert_eq!(
            wanted(&[], &[Dataplane::Ipvs]),
            ["ip_vs_conn_new", "tcp_state_transition", "ip_vs_leave"]
        );
        // Either netfilter mode needs the NAT probe: the kernel cannot tell them apart.
        assert_eq!(wanted(&[], &[Dataplane::Iptables]), ["nf_nat_setup_info"]);
        assert_eq!(
            wanted(&[EventKind::Reused], &[Dataplane::Nftables]),
            Vec::<&str>::new()
        );
    }

    fn attached(function: &str, hook: Hook) -> Attached {
        Attached {
            probe: probe(function),
            hook,
            fallback: None,
        }
    }

    #[test]
    fn the_lines_say_what_was_attached_how_and_what_was_left_out() {
        let attachment = Attachment {
            attached: vec![attached("ip_vs_conn_new", Hook::Fexit)],
            not_asked: vec![probe("tcp_state_transition"), probe("ip_vs_leave")],
            unavailable: Vec::new(),
        };
        assert_eq!(
            attachment.tracing_list(),
            "ip_vs_conn_new (fexit); not attached, as --event or --dataplane does not ask for them: \
             tcp_state_transition (reused, per packet), ip_vs_leave (no_dest)"
        );
        assert_eq!(
            attachment.summary_line(),
            "probes: ip_vs_conn_new (fexit: new, template)   not asked for: \
             tcp_state_transition (reused, per packet), ip_vs_leave (no_dest)"
        );
        let all = Attachment {
            attached: vec![
                attached("ip_vs_conn_new", Hook::Kretprobe),
                attached("tcp_state_transition", Hook::Kprobe),
                attached("ip_vs_leave", Hook::Fentry),
            ],
            ..Attachment::default()
        };
        assert_eq!(
            all.tracing_list(),
            "ip_vs_conn_new (kretprobe), tcp_state_transition (kprobe), ip_vs_leave (fentry)"
        );
        assert_eq!(
            all.summary_line(),
            "probes: ip_vs_conn_new (kretprobe: new, template), tcp_state_transition (kprobe: \
             reused, per packet), ip_vs_leave (fentry: no_dest)"
        );
    }

    #[test]
    fn each_probe_has_a_trampoline_hook_on_its_side() {
        let hooks: Vec<(Hook, Hook)> = PROBES
            .iter()
            .map(|p| (p.kprobe_hook(), p.trampoline_hook()))
            .collect();
        assert_eq!(
            hooks,
            [
                (Hook::Kretprobe, Hook::Fexit),
                (Hook::Kprobe, Hook::Fentry),
                (Hook::Kprobe, Hook::Fentry),
                (Hook::Kretprobe, Hook::Fexit)
            ]
        );
    }

    #[test]
    fn a_trampoline_targets_the_functions_id_in_the_module_blob_only() {
        let mut base = Builder::base();
        let int = base.int("int", 4);
        let vproto = base.func_proto(int, &[]);
        base.func("ip_vs_leave", vproto); // a vmlinux function of the same name: not ours
        let vmlinux = std::sync::Arc::new(Btf::parse(&base.build()).unwrap());
        let alone = Btf::parse(&base.build()).unwrap();
        assert!(trampoline_target(probe("ip_vs_leave"), &alone).is_err());

        let mut split = Builder::split(&base);
        let int = split.int("int", 4);
        let conn = split.fwd("ip_vs_conn");
        let conn_ptr = split.ptr(conn);
        let skb = split.fwd("sk_buff");
        let const_skb = split.constant(skb);
        let skb_ptr = split.ptr(const_skb);
        let proto = split.func_proto(0, &[("cp", conn_ptr), ("direction", int), ("skb", skb_ptr)]);
        let id = split.func("tcp_state_transition", proto);
        let module = Btf::parse_split(&split.build(), vmlinux).unwrap();
        assert_eq!(
            trampoline_target(probe("tcp_state_transition"), &module),
            Ok(id)
        );
        let why = trampoline_target(probe("ip_vs_leave"), &module).unwrap_err();
        assert!(why.contains("not in ip_vs's BTF"), "{why}");
    }

    /// `ip_vs_conn_new(p, dest_af, daddr, dport, flags, dest, fwmark)`, less `drop` trailing
    /// arguments, in a module blob.
    fn conn_new_module(drop: usize) -> (Btf, u32) {
        let base = Builder::base();
        let vmlinux = std::sync::Arc::new(Btf::parse(&base.build()).unwrap());
        let mut split = Builder::split(&base);
        let int = split.int("int", 4);
        let uint = split.int("unsigned int", 4);
        let conn = split.fwd("ip_vs_conn");
        let conn_ptr = split.ptr(conn);
        let params = [
            ("p", int),
            ("dest_af", int),
            ("daddr", int),
            ("dport", int),
            ("flags", uint),
            ("dest", int),
            ("fwmark", uint),
        ];
        let proto = split.func_proto(conn_ptr, &params[..params.len() - drop]);
        let id = split.func("ip_vs_conn_new", proto);
        (Btf::parse_split(&split.build(), vmlinux).unwrap(), id)
    }

    #[test]
    fn the_fexit_needs_the_number_of_arguments_it_was_written_for() {
        let (module, id) = conn_new_module(0);
        assert_eq!(trampoline_target(probe("ip_vs_conn_new"), &module), Ok(id));
        // One argument fewer moves the return value's slot: the program would read `fwmark`.
        let (module, _) = conn_new_module(1);
        let why = trampoline_target(probe("ip_vs_conn_new"), &module).unwrap_err();
        assert!(why.contains("after exactly 7 arguments"), "{why}");
        // The kretprobe reads the return register only: it still fits.
        assert!(matches!(
            probe("ip_vs_conn_new").fit(Some(&module), None),
            Fit::Fits { .. }
        ));
    }

    #[test]
    fn without_btf_only_the_symbol_is_checked() {
        let syms = Kallsyms::parse("0 t ip_vs_conn_new [ip_vs]\n");
        assert_eq!(
            probe("ip_vs_conn_new").fit(None, Some(&syms)),
            Fit::Fits {
                how: "in kallsyms, prototype not checked (no BTF for it)".into()
            }
        );
    }
}
