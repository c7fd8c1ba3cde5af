//! The table of probes and attaching them: only those whose events were asked for (`trace
//! --event`), so that a trace of new connections does not pay the per-packet probe.

use aya::{
    programs::{KProbe, ProbeKind},
    Ebpf,
};

use super::kallsyms::Kallsyms;
use super::LoadError;
use crate::btf::{Btf, Signature};
use crate::events::model::EventKind;

/// One eBPF program and the kernel function it hooks.
#[derive(Debug)]
pub struct Probe {
    /// Program name in the object (the Rust function name in `ipvs-trace-ebpf`).
    pub program: &'static str,
    /// Kernel function to attach to.
    pub function: &'static str,
    /// `kprobe` or `kretprobe`, as the program is declared.
    pub kind: &'static str,
    /// The events the probe produces, for people.
    pub events: &'static str,
    /// The same, as kinds: the probe is attached when one of them is asked for.
    pub kinds: &'static [EventKind],
    /// Runs for every packet (not once per connection): what `check` and the summary point
    /// out as the cost of asking for its events.
    pub per_packet: bool,
    /// What is lost when this probe cannot be attached; `None` for the mandatory probe.
    pub loses: Option<&'static str>,
    /// The prototype the program was written for.
    pub shape: Shape,
}

/// What a program reads of its function's prototype: the return type (kretprobes) and the
/// parameters it takes by position (`None`: not read, any type). Types as
/// [`Signature`](crate::btf::Signature) renders them.
#[derive(Debug)]
pub struct Shape {
    pub ret: Option<&'static str>,
    pub params: &'static [Option<&'static str>],
}

const CONN_PTR: &str = "struct ip_vs_conn *";

/// In the order of attaching and of the `tracing (...)` line: the mandatory probe first, so a
/// kernel without it fails the start before anything else is attached.
pub const PROBES: &[Probe] = &[
    Probe {
        program: "ip_vs_conn_new",
        function: "ip_vs_conn_new",
        kind: "kretprobe",
        events: "new, template",
        kinds: &[EventKind::New, EventKind::Template],
        per_packet: false,
        loses: None,
        shape: Shape {
            ret: Some(CONN_PTR),
            params: &[],
        },
    },
    Probe {
        program: "tcp_state_transition",
        function: "tcp_state_transition",
        kind: "kprobe",
        events: "reused",
        kinds: &[EventKind::Reused],
        per_packet: true,
        loses: Some("`reused` events (TCP connections that hit an existing entry)"),
        shape: Shape {
            ret: None,
            params: &[Some(CONN_PTR), Some("int"), Some("const struct sk_buff *")],
        },
    },
    Probe {
        program: "ip_vs_leave",
        function: "ip_vs_leave",
        kind: "kprobe",
        events: "no_dest",
        kinds: &[EventKind::NoDest],
        per_packet: false,
        loses: Some("`no_dest` events (services without a usable real server)"),
        shape: Shape {
            ret: None,
            params: &[
                Some("struct ip_vs_service *"),
                Some("struct sk_buff *"),
                None,
                Some("struct ip_vs_iphdr *"),
            ],
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
    /// Whether the events asked for (`kinds`; empty: all) need this probe.
    #[must_use]
    pub fn wanted(&self, kinds: &[EventKind]) -> bool {
        kinds.is_empty() || self.kinds.iter().any(|kind| kinds.contains(kind))
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

/// What a start attached, for the `tracing (...)` line, the summary and `check`.
#[derive(Clone, Debug, Default)]
pub struct Attachment {
    /// Attached, in [`PROBES`] order.
    pub attached: Vec<&'static Probe>,
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
        for probe in &self.attached {
            if !functions.contains(&probe.function) {
                functions.push(probe.function);
            }
        }
        functions
    }

    /// What the `ipvs-trace: tracing (...)` line says in its parentheses: the functions
    /// attached, then those left out because no event asked for needs them.
    #[must_use]
    pub fn tracing_list(&self) -> String {
        let mut out = self.functions().join(", ");
        if !self.not_asked.is_empty() {
            out.push_str("; not attached, as --event does not ask for their events: ");
            out.push_str(&listed(&self.not_asked));
        }
        out
    }

    /// The summary's `probes:` line.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let mut out = format!("probes: {}", listed(&self.attached));
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

/// `function (kind: events[, per packet])`, comma separated.
fn listed(probes: &[&Probe]) -> String {
    let items: Vec<String> = probes
        .iter()
        .map(|p| {
            let per_packet = if p.per_packet { ", per packet" } else { "" };
            format!("{} ({}: {}{per_packet})", p.function, p.kind, p.events)
        })
        .collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Loads and attaches the probes the events asked for need (`kinds`; empty: every probe). An
/// optional probe that fails adds a note to `degraded` and a warning; the mandatory one, when
/// asked for, fails the start, and so does a start that attaches nothing.
pub fn attach_all(
    ebpf: &mut Ebpf,
    ip_vs_btf: &Btf,
    kallsyms: Option<&Kallsyms>,
    kinds: &[EventKind],
    target_override: Option<&(String, String)>,
    degraded: &mut Vec<String>,
) -> Result<Attachment, LoadError> {
    let mut attachment = Attachment::default();
    for probe in PROBES {
        if !probe.wanted(kinds) {
            attachment.not_asked.push(probe);
            continue;
        }
        let target = match target_override {
            Some((function, symbol)) if function == probe.function => symbol.as_str(),
            _ => probe.function,
        };
        // The test hook's target is deliberately wrong: let the attach itself fail.
        if target == probe.function {
            if let Fit::Misfit { why } = probe.fit(Some(ip_vs_btf), kallsyms) {
                let Some(loses) = probe.loses else {
                    return Err(LoadError::Misfit {
                        kind: probe.kind,
                        function: probe.function,
                        why,
                    });
                };
                let note = format!(
                    "skipping the {} on `{}`: {why}: no {loses}",
                    probe.kind, probe.function
                );
                tracing::warn!("{note}");
                degraded.push(note);
                attachment.unavailable.push(probe);
                continue;
            }
        }
        match attach_one(ebpf, probe.program, target) {
            Ok(kind) => {
                tracing::debug!("attached {kind} {} to {target}", probe.program);
                attachment.attached.push(probe);
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
    fn only_the_probes_of_the_kinds_asked_for_are_wanted() {
        let wanted = |kinds: &[EventKind]| -> Vec<&str> {
            PROBES
                .iter()
                .filter(|p| p.wanted(kinds))
                .map(|p| p.function)
                .collect()
        };
        assert_eq!(
            wanted(&[]),
            ["ip_vs_conn_new", "tcp_state_transition", "ip_vs_leave"]
        );
        assert_eq!(
            wanted(&[EventKind::New, EventKind::Template]),
            ["ip_vs_conn_new"]
        );
        assert_eq!(wanted(&[EventKind::Template]), ["ip_vs_conn_new"]);
        assert_eq!(
            wanted(&[EventKind::New, EventKind::NoDest]),
            ["ip_vs_conn_new", "ip_vs_leave"]
        );
        assert_eq!(wanted(&[EventKind::Reused]), ["tcp_state_transition"]);
    }

    #[test]
    fn the_lines_say_what_was_left_out_and_why() {
        let attachment = Attachment {
            attached: vec![probe("ip_vs_conn_new")],
            not_asked: vec![probe("tcp_state_transition"), probe("ip_vs_leave")],
            unavailable: Vec::new(),
        };
        assert_eq!(
            attachment.tracing_list(),
            "ip_vs_conn_new; not attached, as --event does not ask for their events: \
             tcp_state_transition (kprobe: reused, per packet), ip_vs_leave (kprobe: no_dest)"
        );
        assert_eq!(
            attachment.summary_line(),
            "probes: ip_vs_conn_new (kretprobe: new, template)   not asked for: \
             tcp_state_transition (kprobe: reused, per packet), ip_vs_leave (kprobe: no_dest)"
        );
        let all = Attachment {
            attached: PROBES.iter().collect(),
            ..Attachment::default()
        };
        assert_eq!(
            all.tracing_list(),
            "ip_vs_conn_new, tcp_state_transition, ip_vs_leave"
        );
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
