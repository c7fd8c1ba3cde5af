//! Where `trace` takes Kubernetes names from: the choice the command line makes, and opening it.
//!
//! By default the tool looks for a cluster the way kubectl does (`KUBECONFIG`, `~/.kube/config`,
//! the in-cluster service account) and watches it if one is configured; a node without any
//! configuration traces with addresses only. An explicit `--kubeconfig` or `--kube-snapshot`
//! is always used, and `--no-kube` never contacts the API.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::bail;

use super::live::LiveNames;
use super::watch::KubeSource;
use super::{snapshot, Index, SharedIndex};

/// The source the command line asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NameSource {
    /// Watch the cluster of the ambient configuration, if there is one.
    #[default]
    Auto,
    /// `--no-kube`: addresses only.
    Off,
    /// `--kubeconfig FILE`: watch that cluster.
    Kubeconfig(PathBuf),
    /// `--kube-snapshot FILE...`: offline, from `kubectl get ... -o json` output.
    Snapshots(Vec<PathBuf>),
}

/// The names a trace runs with.
pub enum Opened {
    /// No source: the table shows addresses, the JSON name fields are `null`.
    None,
    /// A snapshot, loaded once.
    Snapshot(SharedIndex),
    /// Live watches filling the index while events flow.
    Live(SharedIndex, LiveNames),
}

impl Opened {
    /// The index the event loop reads, if any.
    #[must_use]
    pub fn index(&self) -> Option<&SharedIndex> {
        match self {
            Opened::None => None,
            Opened::Snapshot(index) | Opened::Live(index, _) => Some(index),
        }
    }

    /// Whether the index holds the cluster yet: a snapshot always does, live watches once
    /// every kind has listed, no source never. Shared, so that it can be asked later.
    #[must_use]
    pub fn readiness(&self) -> Readiness {
        match self {
            Opened::None => Readiness::Never,
            Opened::Snapshot(_) => Readiness::Always,
            Opened::Live(_, live) => Readiness::Watches(live.health().clone()),
        }
    }

    /// Lines for the exit summary on the live watches' health (empty for other sources).
    #[must_use]
    pub fn health_lines(&self) -> Vec<String> {
        match self {
            Opened::Live(_, live) => live.summary_lines(),
            Opened::None | Opened::Snapshot(_) => Vec::new(),
        }
    }
}

/// See [`Opened::readiness`].
#[derive(Clone)]
pub enum Readiness {
    Never,
    Always,
    Watches(super::watch::Health),
}

impl Readiness {
    #[must_use]
    pub fn ready(&self) -> bool {
        match self {
            Readiness::Never => false,
            Readiness::Always => true,
            Readiness::Watches(health) => health.synced(),
        }
    }
}

/// What the ambient configuration offers, as kube-rs's `Config::infer` looks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ambient {
    /// `KUBECONFIG`, if set and not empty.
    pub kubeconfig_env: Option<String>,
    /// `~/.kube/config`, if it exists.
    pub home_config: Option<PathBuf>,
    /// `KUBERNETES_SERVICE_HOST` is set: running in a pod.
    pub in_cluster: bool,
}

impl Ambient {
    /// Reads the environment and the home directory.
    #[must_use]
    pub fn detect() -> Ambient {
        let home_config = env::var_os("HOME")
            .map(|home| Path::new(&home).join(".kube").join("config"))
            .filter(|path| path.is_file());
        Ambient {
            kubeconfig_env: env::var("KUBECONFIG").ok().filter(|v| !v.is_empty()),
            home_config,
            in_cluster: env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()),
        }
    }

    /// Some cluster is configured.
    #[must_use]
    pub fn any(&self) -> bool {
        self.kubeconfig_env.is_some() || self.home_config.is_some() || self.in_cluster
    }
}

/// Opens `source`. `needs_names` (a name filter was given) turns "no source at all" into an
/// error, since such a filter could match nothing. Never waits for the API server: live watches
/// start in the background and an unreachable server is a warning.
pub fn open(source: &NameSource, ambient: &Ambient, needs_names: bool) -> anyhow::Result<Opened> {
    let live = match source {
        NameSource::Off => return Ok(Opened::None),
        NameSource::Snapshots(paths) => return load_snapshots(paths).map(Opened::Snapshot),
        NameSource::Kubeconfig(path) => KubeSource::Kubeconfig(path.clone()),
        NameSource::Auto if ambient.any() => KubeSource::Infer,
        NameSource::Auto => {
            if needs_names {
                bail!(
                    "the name filters need Kubernetes names, and no cluster is configured \
                     (KUBECONFIG is unset, there is no ~/.kube/config, and this is not a pod): \
                     pass --kubeconfig FILE, or --kube-snapshot FILE to work offline"
                );
            }
            tracing::info!(
                "no Kubernetes configuration found: addresses only \
                 (--kubeconfig FILE or --kube-snapshot FILE for names)"
            );
            return Ok(Opened::None);
        }
    };
    let index = SharedIndex::new(Index::new().into());
    let live = LiveNames::start(live, SharedIndex::clone(&index))?;
    Ok(Opened::Live(index, live))
}

/// The index of the `--kube-snapshot` files. A snapshot that cannot be used is a mistake to
/// fix, not a reason to trace without the names that were asked for.
fn load_snapshots(paths: &[PathBuf]) -> anyhow::Result<SharedIndex> {
    let (index, skipped) = snapshot::load(paths)?;
    for (kind, n) in &skipped {
        tracing::info!(
            "kubernetes snapshot: ignored {n} {kind} object(s): names come from Pods, Services, \
             EndpointSlices and Nodes"
        );
    }
    if index.is_empty() {
        tracing::warn!(
            "the Kubernetes snapshot holds no Pods, Services, EndpointSlices or Nodes: \
             events print raw addresses"
        );
    }
    Ok(SharedIndex::new(index.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTHING: Ambient = Ambient {
        kubeconfig_env: None,
        home_config: None,
        in_cluster: false,
    };

    #[test]
    fn no_configuration_means_addresses_only_unless_names_are_needed() {
        assert!(matches!(
            open(&NameSource::Auto, &NOTHING, false).unwrap(),
            Opened::None
        ));
        let err = open(&NameSource::Auto, &NOTHING, true)
            .err()
            .expect("a name filter without a source is an error")
            .to_string();
        assert!(
            err.contains("--kubeconfig") && err.contains("--kube-snapshot"),
            "{err}"
        );
        // --no-kube with a configured cluster still contacts nothing.
        let ambient = Ambient {
            in_cluster: true,
            ..NOTHING
        };
        assert!(ambient.any());
        assert!(matches!(
            open(&NameSource::Off, &ambient, false).unwrap(),
            Opened::None
        ));
    }

    #[test]
    fn a_missing_snapshot_is_an_error_naming_it() {
        let source = NameSource::Snapshots(vec!["/nonexistent/cluster.json".into()]);
        let err = open(&source, &NOTHING, false)
            .err()
            .expect("a missing snapshot is an error");
        assert!(
            format!("{err:#}").contains("/nonexistent/cluster.json"),
            "{err:#}"
        );
    }
}
