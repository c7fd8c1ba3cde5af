//! Why the offsets could not be resolved: the error for a required field, and the note for an
//! optional one the tracer runs without.

use super::fields::Field;
use crate::btf::BtfError;

/// Why the offsets could not be resolved.
#[derive(thiserror::Error, Debug)]
pub enum OffsetError {
    /// A required struct member is absent (under every name it is known by).
    #[error(
        "field `{strukt}.{field}` not found in the BTF of kernel {release}: this kernel's IPVS \
         layout is not supported by this ipvs-trace build; run `ipvs-trace` with --btf FILE from \
         a matching kernel or report the release"
    )]
    MissingField {
        strukt: &'static str,
        field: String,
        release: String,
    },
    /// A required struct is absent altogether.
    #[error(
        "struct `{strukt}` not found in the BTF of kernel {release}: the BTF given is not the \
         ip_vs module's split BTF on top of this kernel's vmlinux BTF; pass the right one with \
         --btf FILE or report the release"
    )]
    MissingStruct {
        strukt: &'static str,
        release: String,
    },
    /// A required member has a size the probes do not expect.
    #[error(
        "field `{strukt}.{field}` is {found} bytes in the BTF of kernel {release}, ipvs-trace \
         reads {expected}: this kernel's IPVS layout is not supported by this ipvs-trace build; \
         report the release"
    )]
    WrongSize {
        strukt: &'static str,
        field: &'static str,
        expected: u32,
        found: u32,
        release: String,
    },
    /// The BTF itself is malformed or the member is unusable (e.g. a bitfield).
    #[error("the kernel BTF cannot be used")]
    Btf(#[from] BtfError),
    /// No module BTF, and the kernel is not one whose layout is built in.
    #[error(
        "kernel {release} exposes no BTF for the ip_vs module (/sys/kernel/btf/ip_vs is \
         missing) and is not a 5.x or 6.x kernel, whose ip_vs_conn layout ipvs-trace knows \
         ({why}). Pass `--btf FILE` with the module's split BTF (e.g. the .BTF of this kernel's \
         ip_vs.ko, or one made with `pahole --btf_encode_detached` from its debug symbols; \
         docs/kernels.md: \"Kernels without module BTF\")"
    )]
    NoBuiltinLayout { release: String, why: String },
}

/// Why one field did not resolve, before it is turned into an error or a note.
pub(super) enum Problem {
    NoStruct,
    NoField,
    WrongSize { field: &'static str, found: u32 },
    Btf(BtfError),
}

/// All names of a field, for messages: "inactconns` or `totalconns".
fn names(field: &Field) -> String {
    let names: Vec<&str> = field.names.iter().map(|&(name, _)| name).collect();
    names.join("` or `")
}

pub(super) fn required_error(field: &Field, problem: Problem, release: &str) -> OffsetError {
    let release = release.to_owned();
    match problem {
        Problem::NoStruct => OffsetError::MissingStruct {
            strukt: field.strukt,
            release,
        },
        Problem::NoField => OffsetError::MissingField {
            strukt: field.strukt,
            field: names(field),
            release,
        },
        Problem::WrongSize { field: name, found } => OffsetError::WrongSize {
            strukt: field.strukt,
            field: name,
            expected: field.size,
            found,
            release,
        },
        Problem::Btf(e) => OffsetError::Btf(e),
    }
}

pub(super) fn note(field: &Field, problem: &Problem, release: &str) -> String {
    let strukt = field.strukt;
    match problem {
        Problem::NoStruct => format!("struct `{strukt}` not found in the BTF of kernel {release}"),
        Problem::NoField => format!(
            "`{strukt}.{}` not found in the BTF of kernel {release}",
            names(field)
        ),
        Problem::WrongSize { field: name, found } => format!(
            "`{strukt}.{name}` is {found} bytes in the BTF of kernel {release}, expected {}",
            field.size
        ),
        Problem::Btf(e) => format!("`{strukt}.{}`: {e}", names(field)),
    }
}
