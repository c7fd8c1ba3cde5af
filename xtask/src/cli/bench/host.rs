//! The host benchmarks, `pipeline` and `history`: ipvs-trace's `benches/pipeline.rs` and
//! `benches/history.rs`, run by `cargo bench` in a release build on this machine.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::{cmd, paths};

/// A host benchmark: ipvs-trace's `benches/NAME.rs` in a release build with MODE flags, its
/// figures written to `NAME[-MODE].json` (`cargo bench --bench NAME -- MODE... --out FILE`).
pub(super) fn host_bench(dir: &Path, name: &str, mode: &[&str]) -> Result<()> {
    let mut out = name.to_owned();
    for m in mode {
        out.push('-');
        out.push_str(m.trim_start_matches('-'));
    }
    let out = dir.join(format!("{out}.json"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut bench = Command::new(cargo);
    bench
        .current_dir(paths::workspace_root())
        .args(["bench", "-p", "ipvs-trace", "--bench", name, "--"])
        .args(mode)
        .arg("--out")
        .arg(&out);
    eprintln!("+ {}", cmd::display(&bench));
    let status = bench.status().context("could not start cargo bench")?;
    if !status.success() {
        bail!("the {name} benchmark failed ({status}): see above");
    }
    eprintln!("bench {name}: wrote {}", out.display());
    Ok(())
}
