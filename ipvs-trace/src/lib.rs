//! ipvs-trace: which pod did the kernel's IPVS send each connection to.
//!
//! The pipeline: [`loader`] resolves kernel struct offsets from [`btf`], loads and attaches the
//! eBPF programs; [`events`] reads and decodes the ring buffer; [`filter`] keeps what the user
//! asked for; [`output`] renders table or JSON lines and the exit summary. [`cmd`] holds one module
//! per subcommand, [`cli`] the arguments; [`ipvs`] reads the kernel's IPVS tables over netlink
//! (`rules`); [`conntrack`] looks connections up in the conntrack table (`trace --nat`).

pub mod api;
pub mod balance;
pub mod btf;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod conntrack;
pub mod dataplane;
pub mod duration;
pub mod events;
pub mod filter;
pub mod history;
pub mod ipvs;
pub mod kube;
pub mod loader;
pub mod metrics;
pub mod netfilter;
pub mod offsets;
pub mod output;
pub mod top;
