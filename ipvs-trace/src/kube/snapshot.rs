//! `--kube-snapshot FILE`: names from `kubectl get pods,services,endpointslices,nodes -A -o json`
//! instead of a live API server, for post-hoc analysis and air-gapped nodes.
//!
//! The file is a `v1/List` with mixed kinds. It is read as a stream: one item at a time is
//! decoded with the k8s-openapi type of its kind (so the schema is the API's own), converted to
//! its slim form and handed on at once. Neither a JSON tree of the whole document nor a list of
//! all objects is ever built: for a 100k-pod cluster that tree was over a gigabyte of small
//! allocations, which the allocator keeps after they are freed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};
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

/// Items of kinds the index does not use (e.g. from `kubectl get all`), by kind.
pub type Skipped = BTreeMap<String, usize>;

/// Loads every file into a new index; an object in several files is taken from the last.
///
/// The objects of a file go into the index while it is read, before the file is known to be
/// usable (kubectl prints `kind` after `items`). That is safe because any error, in any file,
/// drops the whole index: the caller never sees part of a rejected document.
pub fn load(paths: &[PathBuf]) -> Result<(Index, Skipped), SnapshotError> {
    let mut index = Index::new();
    let mut skipped = Skipped::new();
    for path in paths {
        let file_skipped = read(path, |object| index.apply(Change::Upsert(object)))?;
        for (kind, n) in file_skipped {
            *skipped.entry(kind).or_default() += n;
        }
    }
    Ok((index, skipped))
}

/// Reads one snapshot file, handing each object to `sink` in file order. On an error, the
/// objects `sink` already got belong to a document that turned out unusable: discard them.
pub fn read(path: &Path, sink: impl FnMut(Object)) -> Result<Skipped, SnapshotError> {
    // One allocation for the whole file, returned to the system when it is dropped (unlike the
    // many small ones of a parsed tree); the items are decoded from it one by one.
    let json = std::fs::read(path).map_err(|error| SnapshotError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(path, &json, sink)
}

/// Converts the text of a snapshot (`path` names it in errors), handing each object to `sink`
/// as [`read`] does.
///
/// The errors are those of a whole-document check, in the same order of precedence: text
/// that is not JSON anywhere, then a document that is not a List, then the first bad item.
/// So after a bad item the rest is still scanned (not converted), and when `kind` comes first
/// and is not a List, the items are skipped without being converted.
pub fn parse(path: &Path, json: &[u8], sink: impl FnMut(Object)) -> Result<Skipped, SnapshotError> {
    let not_json = |error| SnapshotError::NotJson {
        path: path.to_owned(),
        error,
    };
    let mut reader = Reader {
        path,
        sink,
        skipped: Skipped::new(),
        failed: None,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let shape = (&mut reader).deserialize(&mut de).map_err(not_json)?;
    de.end().map_err(not_json)?;
    match shape.kind {
        // `kubectl get` of several kinds gives a `List`; of one kind, e.g. a `PodList`.
        Some(kind) if shape.items && is_list(&kind) => {}
        kind => {
            let found = match kind {
                Some(kind) if !kind.is_empty() => format!("{kind:?}"),
                _ => "document without `kind`".to_owned(),
            };
            return Err(SnapshotError::NotList {
                path: path.to_owned(),
                found,
            });
        }
    }
    match reader.failed {
        Some(error) => Err(error),
        None => Ok(reader.skipped),
    }
}

fn is_list(kind: &str) -> bool {
    kind.ends_with("List")
}

/// The state of one document's read: where objects go, and the first bad item.
struct Reader<'p, F> {
    path: &'p Path,
    sink: F,
    skipped: Skipped,
    /// Kept rather than returned at once: a later "not JSON" or "not a List" takes precedence.
    failed: Option<SnapshotError>,
}

/// What the top level of a document showed, beside the items.
struct Shape {
    /// `None` without a `kind`; `Some("")` for one that is not a string.
    kind: Option<String>,
    /// An `items` array was there (and, unless `kind` came first and was not a List, read).
    items: bool,
}

impl<F: FnMut(Object)> Reader<'_, F> {
    /// Converts item `index` and hands it on, or counts its kind as skipped.
    fn item(&mut self, index: usize, item: Value) -> Result<(), SnapshotError> {
        let path = self.path;
        let what = describe(&item);
        let error = move |reason: String| SnapshotError::Item {
            path: path.to_owned(),
            index,
            what,
            reason,
        };
        let convert = match item.get("kind").and_then(Value::as_str).unwrap_or("") {
            "Pod" => convert::<Pod>,
            "Service" => convert::<Service>,
            "EndpointSlice" => convert::<EndpointSlice>,
            "Node" => convert::<Node>,
            "" => return Err(error("no `kind`".to_owned())),
            other => {
                *self.skipped.entry(other.to_owned()).or_default() += 1;
                return Ok(());
            }
        };
        (self.sink)(convert(item).map_err(error)?);
        Ok(())
    }
}

/// Valid JSON that is not the container a visitor wants is not a syntax error: the visitor
/// answers `$value` for any scalar, so the caller can say what the document should be.
macro_rules! scalars_give {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

const NOT_AN_OBJECT: Shape = Shape {
    kind: None,
    items: false,
};

/// The document: an object whose `items` are read in place, other fields skipped.
impl<'de, F: FnMut(Object)> DeserializeSeed<'de> for &mut Reader<'_, F> {
    type Value = Shape;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Shape, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Object)> de::Visitor<'de> for &mut Reader<'_, F> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes List")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut kind: Option<String> = None;
        let mut items: Option<bool> = None;
        // Keys are few at the top level (apiVersion, items, kind, metadata): owned is fine.
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                // A second `kind` or `items` would be taken as the first by a tree (the last
                // wins) but is already acted on here: refused, kubectl never writes one.
                "kind" if kind.is_some() => return Err(de::Error::duplicate_field("kind")),
                "items" if items.is_some() => return Err(de::Error::duplicate_field("items")),
                "kind" => {
                    let value: Value = map.next_value()?;
                    kind = Some(value.as_str().unwrap_or_default().to_owned());
                }
                // `kind` first and not a List: the document is refused, its items not wanted.
                "items" if kind.as_deref().is_some_and(|kind| !is_list(kind)) => {
                    map.next_value::<IgnoredAny>()?;
                    items = Some(false);
                }
                "items" => items = Some(map.next_value_seed(Items(&mut *self))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Shape {
            kind,
            items: items.unwrap_or(false),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(NOT_AN_OBJECT)
    }

    scalars_give!(NOT_AN_OBJECT);
}

/// The `items` array, read one element at a time; answers whether it was an array.
struct Items<'r, 'p, F>(&'r mut Reader<'p, F>);

impl<'de, F: FnMut(Object)> DeserializeSeed<'de> for Items<'_, '_, F> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Object)> de::Visitor<'de> for Items<'_, '_, F> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of Kubernetes objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let reader = self.0;
        let mut index = 0;
        // One item's tree at a time, dropped once it is converted.
        while reader.failed.is_none() {
            let Some(item) = seq.next_element::<Value>()? else {
                return Ok(true);
            };
            if let Err(error) = reader.item(index, item) {
                reader.failed = Some(error);
            }
            index += 1;
        }
        // After a bad item, the rest is only checked to be JSON.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    scalars_give!(false);
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
