//! One module per hook family. Each hooked function is documented with the prototype the
//! program expects and the kernels it was checked on.

pub mod conn;
pub mod leave;
pub mod nat;
pub mod state;
