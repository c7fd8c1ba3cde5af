//! The VM lab and build helpers of ipvs-trace, behind `cargo xtask`.
//!
//! The library side is what the end-to-end tests use: [`lab::run`] boots a Debian kernel in QEMU
//! and runs a scenario script in it.

mod apt;
pub mod cli;
mod cmd;
pub mod lab;
pub mod paths;
pub mod setup;
