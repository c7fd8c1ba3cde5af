//! Events from the kernel: the owned, checked view of a ring-buffer record ([`model`]), the
//! decoder that produces it ([`decode`]) and the async ring-buffer reader ([`reader`]).
//!
//! Everything after this module works on [`Event`] only; the raw `#[repr(C)]` record never
//! leaves it, so a change of the kernel/user format is contained here.

pub mod classify;
pub mod decode;
pub mod model;
pub mod reader;

pub use decode::{decode, DecodeError};
pub use model::{Dataplane, DestCounters, Event, FwdMethod, Proto};
pub use reader::EventReader;
