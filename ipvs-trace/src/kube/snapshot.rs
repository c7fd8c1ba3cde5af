//! `--kube-snapshot FILE`: names from `kubectl get pods,services,endpointslices,nodes -A -o json`
//! instead of a live API server, for post-hoc analysis and air-gapped nodes.
//!
//! The file is a `v1/List` with mixed kinds. Each item is decoded with the k8s-openapi type of
//! its kind (so the schema is the API's own) and converted to its slim form at once: the full
//! objects never stay in memory together with the index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::index::{Change, Index};
use super::objects::{ConvertError, Object};

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    // The I/O and JSON errors are part of the message, not a `source`: the error chain would
    // print them twice.
    #[error("cannot read Kubernetes snapshot {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "Kubernetes snapshot {} is not JSON ({error}); create it with \
         `kubectl get pods,services,endpointslices,nodes -A -o json > FILE`",
        path.display()
    )]
    NotJson {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(
        "Kubernetes snapshot {} is a {found}, not a List of objects; create it with \
         `kubectl get pods,services,endpointslices,nodes -A -o json > FILE`",
        path.display()
    )]
    NotList { path: PathBuf, found: String },
    #[error("Kubernetes snapshot {}, item {index} ({what}): {reason}", path.display())]
    Item {
        path: PathBuf,
        /// Position in `items`, from 0 (as `jq '.items[N]'` counts).
        index: usize,
        /// `Kind namespace/name` as far as the item says.
        what: String,
        reason: String,
    },
}

/// What one snapshot file held.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub objects: Vec<Object>,
    /// Items of kinds the index does not use (e.g. from `kubectl get all`), by kind.
    pub skipped: BTreeMap<String, usize>,
}

/// Reads and converts one snapshot file.
pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
    let text = std::fs::read(path).map_err(|error| SnapshotError::Read {
        path: path.to_owned(),
        error,
    })?;
    let value: Value = serde_json::from_slice(&text).map_err(|error| SnapshotError::NotJson {
        path: path.to_owned(),
        error,
    })?;
    parse(path, value)
}

/// Loads every file into a new index; an object in several files is taken from the last.
pub fn load(paths: &[PathBuf]) -> Result<(Index, BTreeMap<String, usize>), SnapshotError> {
    let mut index = Index::new();
    let mut skipped = BTreeMap::new();
    for path in paths {
        let snapshot = read(path)?;
        for object in snapshot.objects {
            index.apply(Change::Upsert(object));
        }
        for (kind, n) in snapshot.skipped {
            *skipped.entry(kind).or_default() += n;
        }
    }
    Ok((index, skipped))
}

/// Converts a decoded snapshot (`path` names it in errors).
pub fn parse(path: &Path, value: Value) -> Result<Snapshot, SnapshotError> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let items = match value.get("items") {
        // `kubectl get` of several kinds gives a `List`; of one kind, e.g. a `PodList`.
        Some(Value::Array(_)) if kind == "List" || kind.ends_with("List") => {
            let Value::Object(mut map) = value else {
                unreachable!("an object has `items`")
            };
            match map.remove("items") {
                Some(Value::Array(items)) => items,
                _ => unreachable!("checked above"),
            }
        }
        _ => {
            let found = if kind.is_empty() {
                "document without `kind`".to_owned()
            } else {
                format!("{kind:?}")
            };
            return Err(SnapshotError::NotList {
                path: path.to_owned(),
                found,
            });
        }
    };
    let mut snapshot = Snapshot::default();
    for (index, item) in items.into_iter().enumerate() {
        let what = describe(&item);
        let error = |reason: String| SnapshotError::Item {
            path: path.to_owned(),
            index,
            what: what.clone(),
            reason,
        };
        let kind = item.get("kind").and_then(Value::as_str).unwrap_or("");
        let object = match kind {
            "Pod" => convert::<Pod>(item),
            "Service" => convert::<Service>(item),
            "EndpointSlice" => convert::<EndpointSlice>(item),
            "Node" => convert::<Node>(item),
            "" => return Err(error("no `kind`".to_owned())),
            other => {
                *snapshot.skipped.entry(other.to_owned()).or_default() += 1;
                continue;
            }
        };
        snapshot.objects.push(object.map_err(error)?);
    }
    Ok(snapshot)
}

/// Decodes an item with its API type and slims it down.
fn convert<K>(item: Value) -> Result<Object, String>
where
    K: DeserializeOwned,
    for<'a> Object: TryFrom<&'a K, Error = ConvertError>,
{
    let full: K = serde_json::from_value(item).map_err(|err| err.to_string())?;
    Object::try_from(&full).map_err(|err| err.detail())
}

/// `Kind namespace/name` of a raw item, for error messages.
fn describe(item: &Value) -> String {
    let field = |pointer: &str| item.pointer(pointer).and_then(Value::as_str);
    let kind = field("/kind").unwrap_or("object");
    match (field("/metadata/namespace"), field("/metadata/name")) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} without a name"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
