//! One module per subcommand.

pub mod balance;
pub mod check;
pub mod rules;
pub mod top;
pub mod trace;
pub mod who;

use std::io::{self, Write as _};

use crate::ipvs::live::{self, LiveTables};
use crate::ipvs::lookup::LiveLookup;

/// A line on stderr. A closed stderr is no reason to fail (or to panic, as `eprintln!` would):
/// what the command prints on stdout is what matters.
fn notice(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Without module BTF the probes read no scheduler and no weight: the IPVS tables, re-read in
/// the background, give them. If the tables cannot be read the command goes on without them,
/// and the warning says what the user sees instead (`lacking`).
fn tables_for_builtin_layout(lacking: &str) -> Option<LiveLookup> {
    if !std::path::Path::new("/sys/module/ip_vs").exists() {
        // A node traced through the netfilter dataplanes only: no IPVS event to fill in.
        return None;
    }
    match LiveTables::start(live::DEFAULT_INTERVAL) {
        Ok(live) => Some(LiveLookup::new(live)),
        Err(err) => {
            tracing::warn!("{lacking}: reading the IPVS tables failed: {err}");
            None
        }
    }
}
