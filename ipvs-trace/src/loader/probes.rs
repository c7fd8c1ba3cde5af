//! The table of probes and attaching them.

use aya::{
    programs::{KProbe, ProbeKind},
    Ebpf,
};

use super::kallsyms::Kallsyms;
use super::LoadError;
use crate::btf::{Btf, Signature};

/// One eBPF program and the kernel function it hooks.
pub struct Probe {
    /// Program name in the object (the Rust function name in `ipvs-trace-ebpf`).
    pub program: &'static str,
    /// Kernel function to attach to.
    pub function: &'static str,
    /// `kprobe` or `kretprobe`, as the program is declared.
    pub kind: &'static str,
    /// The events the probe produces, for people.
    pub events: &'static str,
    /// What is lost when this probe cannot be attached; `None` for the mandatory probe.
    pub loses: Option<&'static str>,
    /// The prototype the program was written for.
    pub shape: Shape,
}

/// What a program reads of its function's prototype: the return type (kretprobes) and the
/// parameters it takes by position (`None`: not read, any type). Types as
/// [`Signature`](crate::btf::Signature) renders them.
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

/// Loads and attaches every probe; returns the functions attached. An optional probe that fails
/// adds a note to `degraded` and a warning; the mandatory one fails the start.
pub fn attach_all(
    ebpf: &mut Ebpf,
    ip_vs_btf: &Btf,
    kallsyms: Option<&Kallsyms>,
    target_override: Option<&(String, String)>,
    degraded: &mut Vec<String>,
) -> Result<Vec<&'static str>, LoadError> {
    let mut attached: Vec<&'static str> = Vec::new();
    for probe in PROBES {
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
                continue;
            }
        }
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
