//! `ipvs-trace rules`: the IPVS tables of this network namespace (the `ipvsadm -Ln` view) with
//! the Kubernetes Service, pod and node behind each address.
//!
//! The tables are read over netlink on a blocking thread while the Kubernetes names load; live
//! watches get a few seconds to sync (a table printed once is worth the wait), then whatever is
//! known is printed and the rest stays raw, with a warning.

mod json;
mod select;
mod table;

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

pub use select::RulesFilter;
pub use table::Columns;

use super::notice;
use crate::ipvs;
use crate::kube::source::{self, Ambient, NameSource, Opened};
use crate::output::OutputFormat;
use json::write_json;
use select::select;
use table::write_table;

/// How long live watches may take to sync before the table is printed without (some) names.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything `rules` needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    pub output: OutputFormat,
    pub columns: Columns,
    pub filter: RulesFilter,
    /// Table shows addresses only.
    pub numeric: bool,
    pub names: NameSource,
    /// `--debug-dump-netlink DIR`.
    pub record: Option<PathBuf>,
}

/// Runs `ipvs-trace rules`.
pub async fn run(config: RulesConfig) -> anyhow::Result<()> {
    let names = source::open(
        &config.names,
        &Ambient::detect(),
        config.filter.uses_names(),
    )?;
    let record = config.record.clone();
    // The netlink round trips run while the watches list.
    let tables = tokio::task::spawn_blocking(move || match record {
        Some(dir) => ipvs::read_tables_recording(&dir),
        None => ipvs::read_tables(),
    });
    if let Opened::Live(_, live) = &names {
        if !live.wait_synced(SYNC_TIMEOUT).await {
            tracing::warn!(
                "the Kubernetes names did not sync within {} s: addresses without a name \
                 print raw ({})",
                SYNC_TIMEOUT.as_secs(),
                live.summary_lines().join("; ")
            );
        }
    }
    let tables = tables
        .await
        .context("the netlink reader thread failed")?
        .context("reading the IPVS tables")?;

    let index = names.index().map(|shared| {
        shared
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    let views = select(&tables, index.as_deref(), &config.filter);
    let with_names = index.is_some() && !config.numeric;
    drop(index);

    let netns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
    let mut out = io::BufWriter::new(io::stdout().lock());
    match config.output {
        OutputFormat::Table => {
            write_table(&mut out, &tables, netns, &views, config.columns, with_names)?;
        }
        OutputFormat::Json => write_json(&mut out, &tables, netns, &views)?,
    }
    out.flush().context("writing to stdout")?;
    if tables.services.is_empty() {
        notice(
            "ipvs-trace: no virtual services in this network namespace (kube-proxy's are in \
             the node's host namespace; is this a pod or a container?)",
        );
    } else if views.is_empty() {
        notice("ipvs-trace: no virtual service matches the filters");
    }
    Ok(())
}

/// The tables captured on Debian 6.1 (see `ipvs::tests`), for the tests of the views.
#[cfg(test)]
fn captured() -> ipvs::Tables {
    captured_on("6.1")
}

#[cfg(test)]
fn captured_on(kernel: &str) -> ipvs::Tables {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/netlink")
        .join(kernel);
    ipvs::read_with(&mut ipvs::netlink::Replay::open(&dir).expect("a capture")).expect("decodes")
}
