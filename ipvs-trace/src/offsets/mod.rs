//! The kernel struct offsets the probes read, resolved by name from BTF at start.
//!
//! IPVS layouts differ between kernels (`ip_vs_dest.activeconns` is at 368 on 6.1 and 376 on
//! 6.12) and live in the `ip_vs` module's split BTF, which aya's CO-RE cannot relocate. So every
//! field the probes touch is listed once in [`FIELDS`](fields::FIELDS), looked up with
//! [`Btf::member`](crate::btf::Btf::member) and checked for the size the probes assume; the
//! result is the [`KernelOffsets`] global the programs read.
//! A required field that is missing or has another size stops the tracer with an error naming
//! struct, field and kernel release: reading a wrong offset would print plausible garbage.

mod builtin;
mod error;
#[cfg(test)]
mod fake_kernel;
mod fields;
pub mod nat;
pub mod packet;
mod resolve;

use ipvs_trace_common::offsets::KernelOffsets;

pub use builtin::{builtin, BuiltinMember, BUILTIN_DEGRADED, BUILTIN_LAYOUT};
pub use error::OffsetError;
pub use resolve::resolve;

/// What the caller of [`resolve()`] gets: the offsets, and what optional parts are missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub offsets: KernelOffsets,
    /// One human-readable note per optional field that did not resolve (what is lost and why).
    pub degraded: Vec<String>,
}
