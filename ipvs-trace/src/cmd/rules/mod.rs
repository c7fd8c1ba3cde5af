//! `ipvs-trace rules`: the IPVS tables of this network namespace (the `ipvsadm -Ln` view) and
//! kube-proxy's netfilter Services (nftables and iptables modes, [`crate::netfilter`]), with
//! the Kubernetes Service, pod and node behind each address.
//!
//! The tables and rules are read over netlink on a blocking thread while the Kubernetes names
//! load; live watches get a few seconds to sync (a table printed once is worth the wait), then
//! whatever is known is printed and the rest stays raw, with a warning. A node without ip_vs
//! (a pure nftables or iptables node) shows its netfilter Services; only when there is nothing
//! of either does `rules` fail, saying ip_vs is not loaded.

mod json;
mod select;
mod table;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

pub use select::RulesFilter;
pub use table::Columns;

use super::notice;
use crate::ipvs::{self, IpvsError};
use crate::kube::source::{self, Ambient, NameSource, Opened};
use crate::netfilter::NetfilterRules;
use crate::output::OutputFormat;
use json::write_json;
use select::View;
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
    let read = tokio::task::spawn_blocking(move || match record {
        // The netfilter replies go to a folder of their own: each recording is replayed in
        // its own order.
        Some(dir) => (
            ipvs::read_tables_recording(&dir),
            NetfilterRules::read_recording(&dir.join("netfilter")),
        ),
        None => (ipvs::read_tables(), NetfilterRules::read()),
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
    let (tables, netfilter) = read.await.context("the netlink reader thread failed")?;
    // IPVS's errors first, as before there were netfilter rules to read.
    let tables = match tables {
        Ok(tables) => Ok(tables),
        Err(IpvsError::NotLoaded) => Err(IpvsError::NotLoaded),
        Err(error) => return Err(error).context("reading the IPVS tables"),
    };
    let netfilter = netfilter?;
    let tables = match tables {
        Ok(tables) => Some(tables),
        // No ip_vs on a node whose kube-proxy runs in a netfilter mode: its Services.
        Err(_) if !netfilter.modes().is_empty() => None,
        Err(error) => return Err(error).context("reading the IPVS tables"),
    };

    let index = names.index().map(|shared| {
        shared
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    let netns = crate::loader::kernel::own_netns().map(u64::from);
    let view = View::new(
        tables.as_ref(),
        &netfilter,
        index.as_deref(),
        &config.filter,
        netns,
    );
    let with_names = index.is_some() && !config.numeric;
    drop(index);

    let mut out = io::BufWriter::new(io::stdout().lock());
    match config.output {
        OutputFormat::Table => write_table(&mut out, &view, config.columns, with_names)?,
        OutputFormat::Json => write_json(&mut out, &view)?,
    }
    out.flush().context("writing to stdout")?;
    for text in netfilter.notices() {
        notice(&format!("ipvs-trace: {text}"));
    }
    if tables.is_none() {
        notice("ipvs-trace: ip_vs is not loaded: no IPVS virtual services");
    }
    let ipvs_services = tables.as_ref().map_or(0, |t| t.services.len());
    if ipvs_services == 0 && netfilter.is_empty() {
        notice(
            "ipvs-trace: no virtual services and no kube-proxy netfilter Services in this \
             network namespace (kube-proxy's are in the node's host namespace; is this a pod \
             or a container?)",
        );
    } else if view.is_empty() {
        notice("ipvs-trace: no Service matches the filters");
    }
    Ok(())
}

/// The tables captured on Debian 6.1 (see `ipvs::tests`), for the tests of the views.
#[cfg(test)]
fn captured() -> ipvs::Tables {
    captured_on("6.1")
}

/// kube-proxy's nftables and iptables-nft rules captured on 6.18 (see `netfilter::tests`).
#[cfg(test)]
fn captured_netfilter() -> NetfilterRules {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netfilter/kube-proxy");
    NetfilterRules::replay(&dir).expect("a capture")
}

#[cfg(test)]
fn captured_on(kernel: &str) -> ipvs::Tables {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/netlink")
        .join(kernel);
    ipvs::read_with(&mut ipvs::netlink::Replay::open(&dir).expect("a capture")).expect("decodes")
}
