//! End-to-end scenarios of ipvs-trace: parsers for what the VM lab's guest prints, and the
//! shared boot per kernel that runs every scenario of `tests/scenarios/`.
//!
//! The assertions themselves live in `tests/e2e.rs`; they compare the tracer's events with the
//! kernel's own view (`ipvsadm -Lnc`, `ipvsadm -Ln --stats`), never with the tracer itself.

pub mod conntrack;
pub mod ipvsadm;
pub mod kube_apiserver;
pub mod lab;
pub mod labnet;
pub mod output;
pub mod trace;
pub mod views;
