//! Live Kubernetes source: kube-runtime watches of Pods, Services, EndpointSlices and Nodes in all
//! namespaces, fed into the [`Index`](super::Index).
//!
//! Each kind runs its own `watcher` task (list, then watch from the list's resourceVersion with
//! bookmarks; relist on 410; kube-runtime's default backoff between failures, so an API server
//! that is down or restarting is retried without hammering it). The initial list, `Init` ..
//! `InitDone`, is buffered and applied as one `Reset`, so the index never shows half a cluster
//! and objects deleted while the watch was away disappear on the relist.
//!
//! Nothing here blocks the event path: the tasks only write into the shared index, the tracer
//! reads whatever it holds. An API server that is unreachable at start is a warning; names
//! appear once each kind has synced. [`WatchHandle::health`] says, per kind, whether it has
//! synced and the last error, for the exit summary.
//!
//! Only the `list` and `watch` verbs are used (on pods, services, nodes and
//! discovery.k8s.io/endpointslices), which is what the README's RBAC rules grant.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::objects::{Kind, NodeInfo, Object, ObjectKey, PodInfo, ServiceInfo, SliceInfo};
use super::{Change, SharedIndex};

/// Where the cluster's API server and credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeSource {
    /// `--kubeconfig FILE` (its current context).
    Kubeconfig(PathBuf),
    /// `KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account.
    Infer,
}

/// The kinds watched, in the order [`WatchHandle::health`] reports them.
pub const KINDS: [Kind; 4] = [Kind::Pod, Kind::Service, Kind::EndpointSlice, Kind::Node];

/// The resource name as RBAC and the API paths spell it.
#[must_use]
pub fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Pod => "pods",
        Kind::Service => "services",
        Kind::EndpointSlice => "endpointslices",
        Kind::Node => "nodes",
    }
}

/// The API group of the kind's resource (`""` for the core group), as RBAC rules name it.
#[must_use]
pub fn api_group(kind: Kind) -> &'static str {
    match kind {
        Kind::Pod => <Pod as k8s_openapi::Resource>::GROUP,
        Kind::Service => <Service as k8s_openapi::Resource>::GROUP,
        Kind::EndpointSlice => <EndpointSlice as k8s_openapi::Resource>::GROUP,
        Kind::Node => <Node as k8s_openapi::Resource>::GROUP,
    }
}

/// The verbs the watches use: a `watcher` lists, then watches. The RBAC of deploy/ grants
/// exactly these on [`KINDS`] (a test there holds it to this).
pub const VERBS: [&str; 2] = ["list", "watch"];

/// The state of one kind's watch, for the exit summary and `--wait`-style checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindHealth {
    pub kind: Kind,
    /// The initial list completed at least once: names of this kind are known.
    pub synced: bool,
    /// Complete lists applied (1 after the first sync; more after 410s or restarts).
    pub lists: u32,
    /// Watch events applied since start (outside lists).
    pub events: u64,
    /// The most recent error, kept after recovery so the summary can say what happened.
    pub last_error: Option<String>,
    pub errors: u64,
}

/// What the watch of one kind hands its consumer. The initial list (and every relist) arrives
/// as one `Reset` with the complete set, never object by object.
#[derive(Clone, Debug, PartialEq)]
pub enum KindChange<T> {
    Reset(Vec<T>),
    Upsert(T),
    Delete(T),
}

type HealthTable = Arc<Mutex<Vec<KindHealth>>>;

/// A view of the watches' health that outlives no one: cheap to clone, readable from any
/// thread (the event loop reads it while the watches run on their own).
#[derive(Clone)]
pub struct Health(HealthTable);

impl Health {
    /// Health of every kind, in [`KINDS`] order.
    #[must_use]
    pub fn kinds(&self) -> Vec<KindHealth> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every kind has completed its initial list.
    #[must_use]
    pub fn synced(&self) -> bool {
        self.kinds().iter().all(|h| h.synced)
    }

    /// Waits until every kind is synced, at most `timeout`; true if they are. For callers that
    /// prefer names from the first event (never required: events do not wait for this).
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.synced() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One line per kind for the summary, e.g. `pods: synced (1 list(s), 12 event(s))` or
    /// `services: not synced; 3 error(s), last: <error>`.
    #[must_use]
    pub fn summary_lines(&self) -> Vec<String> {
        self.kinds()
            .iter()
            .map(|h| {
                let state = if h.synced {
                    format!("synced ({} list(s), {} event(s))", h.lists, h.events)
                } else {
                    "not synced".to_owned()
                };
                match &h.last_error {
                    Some(e) => format!(
                        "{}: {state}; {} error(s), last: {e}",
                        plural(h.kind),
                        h.errors
                    ),
                    None => format!("{}: {state}", plural(h.kind)),
                }
            })
            .collect()
    }
}

/// The running watches; dropping it stops them.
pub struct WatchHandle {
    health: Health,
    tasks: Vec<JoinHandle<()>>,
}

impl WatchHandle {
    /// The watches' health, to keep after handing the handle to the thread that owns them.
    #[must_use]
    pub fn monitor(&self) -> Health {
        self.health.clone()
    }

    /// Health of every kind, in [`KINDS`] order.
    #[must_use]
    pub fn health(&self) -> Vec<KindHealth> {
        self.health.kinds()
    }

    /// Every kind has completed its initial list.
    #[must_use]
    pub fn synced(&self) -> bool {
        self.health.synced()
    }

    /// See [`Health::wait_synced`].
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        self.health.wait_synced(timeout).await
    }

    /// See [`Health::summary_lines`].
    #[must_use]
    pub fn summary_lines(&self) -> Vec<String> {
        self.health.summary_lines()
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The consumer of the four watches: converts each object to what it keeps (called while a
/// list is buffered too, so a 100k-pod relist never holds 100k full `Pod`s) and applies changes.
/// The index implements it; tests can observe the watches through their own.
pub trait Sink: Clone + Send + Sync + 'static {
    type Item: Send + 'static;
    fn pod(&self, pod: &Pod) -> Self::Item;
    fn service(&self, service: &Service) -> Self::Item;
    fn endpoint_slice(&self, slice: &EndpointSlice) -> Self::Item;
    fn node(&self, node: &Node) -> Self::Item;
    /// One change of one kind; a `Reset` replaces every object of that kind.
    fn apply(&self, kind: Kind, change: KindChange<Self::Item>);
}

/// Starts the four watches with `client`, feeding `sink`. Never waits for the API server.
pub fn spawn_with<S: Sink>(client: &Client, sink: &S) -> WatchHandle {
    let health = new_health();
    let tasks = vec![
        spawn_kind::<Pod, S>(client, sink, &health, Kind::Pod, S::pod),
        spawn_kind::<Service, S>(client, sink, &health, Kind::Service, S::service),
        spawn_kind::<EndpointSlice, S>(
            client,
            sink,
            &health,
            Kind::EndpointSlice,
            S::endpoint_slice,
        ),
        spawn_kind::<Node, S>(client, sink, &health, Kind::Node, S::node),
    ];
    WatchHandle {
        health: Health(health),
        tasks,
    }
}

/// Resolves the source and starts the watches. A source that cannot be used (no kubeconfig,
/// unreadable file) is a warning, not an error: tracing goes on with raw addresses and the
/// returned handle reports every kind unsynced with that error.
pub async fn spawn_source<S: Sink>(source: &KubeSource, sink: &S) -> WatchHandle {
    match client(source).await {
        Ok(client) => spawn_with(&client, sink),
        Err(error) => {
            let message = format!("{error:#}");
            tracing::warn!("kubernetes: {message}; events print raw addresses");
            let health = new_health();
            for h in health
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter_mut()
            {
                h.errors = 1;
                h.last_error = Some(message.clone());
            }
            WatchHandle {
                health: Health(health),
                tasks: Vec::new(),
            }
        }
    }
}

fn spawn_kind<K, S>(
    client: &Client,
    sink: &S,
    health: &HealthTable,
    kind: Kind,
    convert: fn(&S, &K) -> S::Item,
) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
    S: Sink,
{
    let (convert_sink, apply_sink) = (sink.clone(), sink.clone());
    tokio::spawn(watch_kind(
        client.clone(),
        kind,
        Arc::clone(health),
        move |object: &K| convert(&convert_sink, object),
        move |change| apply_sink.apply(kind, change),
    ))
}

fn new_health() -> HealthTable {
    Arc::new(Mutex::new(
        KINDS
            .iter()
            .map(|&kind| KindHealth {
                kind,
                synced: false,
                lists: 0,
                events: 0,
                last_error: None,
                errors: 0,
            })
            .collect(),
    ))
}

fn update(health: &HealthTable, kind: Kind, f: impl FnOnce(&mut KindHealth)) {
    let mut table = health.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(h) = table.iter_mut().find(|h| h.kind == kind) {
        f(h);
    }
}

/// Builds a client from the source. Errors say which source failed and what to pass instead.
pub async fn client(source: &KubeSource) -> anyhow::Result<Client> {
    let config = match source {
        KubeSource::Kubeconfig(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                anyhow::anyhow!("cannot read the kubeconfig {}: {e}", path.display())
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    anyhow::anyhow!("the kubeconfig {} is not usable: {e}", path.display())
                })?
        }
        KubeSource::Infer => kube::Config::infer().await.map_err(|e| {
            anyhow::anyhow!(
                "no Kubernetes config (KUBECONFIG, ~/.kube/config, in-cluster service account): \
                 {e}; pass --kubeconfig FILE, or --kube-snapshot FILE to work offline"
            )
        })?,
    };
    Client::try_from(config).map_err(|e| anyhow::anyhow!("cannot build a Kubernetes client: {e}"))
}

/// Watches one kind in all namespaces until the task is aborted, converting each object with
/// `convert` (so only what the index needs is kept, also while a list is buffered) and handing
/// the changes to `apply`. Updates `health` as it goes.
async fn watch_kind<K, T>(
    client: Client,
    kind: Kind,
    health: HealthTable,
    convert: impl Fn(&K) -> T + Send + 'static,
    mut apply: impl FnMut(KindChange<T>) + Send + 'static,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
    T: Send + 'static,
{
    let name = plural(kind);
    let api = Api::<K>::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // Some(..) between Init and InitDone: the objects of the list in progress.
    let mut listing: Option<Vec<T>> = None;
    let mut warned = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(Vec::new()),
            Ok(watcher::Event::InitApply(object)) => {
                listing.get_or_insert_with(Vec::new).push(convert(&object));
            }
            Ok(watcher::Event::InitDone) => {
                let objects = listing.take().unwrap_or_default();
                let count = objects.len();
                apply(KindChange::Reset(objects));
                update(&health, kind, |h| {
                    if h.synced && h.lists > 0 {
                        tracing::info!("kubernetes {name}: relisted ({count} objects)");
                    } else if warned {
                        tracing::warn!("kubernetes {name}: synced ({count} objects), names resolve from now on");
                    } else {
                        tracing::debug!("kubernetes {name}: synced ({count} objects)");
                    }
                    h.synced = true;
                    h.lists += 1;
                });
            }
            Ok(watcher::Event::Apply(object)) => {
                // Scripts that change the cluster wait for this line (RUST_LOG=debug) before
                // making the connections that must see the change.
                tracing::debug!("kubernetes {name}: applied {}", qualified(&object));
                apply(KindChange::Upsert(convert(&object)));
                update(&health, kind, |h| h.events += 1);
            }
            Ok(watcher::Event::Delete(object)) => {
                tracing::debug!("kubernetes {name}: deleted {}", qualified(&object));
                apply(KindChange::Delete(convert(&object)));
                update(&health, kind, |h| h.events += 1);
            }
            Err(error) => {
                let message = error_chain(&error);
                // The first failure is worth a warning (the API is down or forbidden: tracing
                // goes on with raw addresses); the retries that follow are not.
                if warned {
                    tracing::debug!("kubernetes {name}: {message}");
                } else {
                    tracing::warn!(
                        "kubernetes {name}: {message}; retrying with backoff, events print raw addresses until synced"
                    );
                    warned = true;
                }
                update(&health, kind, |h| {
                    h.errors += 1;
                    h.last_error = Some(message);
                });
            }
        }
    }
}

/// `namespace/name`, or `name` for cluster-scoped objects.
fn qualified(object: &impl Resource) -> String {
    let meta = object.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match &meta.namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Starts the live watches feeding `index` (see the module docs). Returns at once: a source
/// that cannot be used or an API server that is down is a warning and shows in the health.
pub async fn spawn(config: KubeSource, index: SharedIndex) -> WatchHandle {
    spawn_source(&config, &IndexSink(index)).await
}

/// Feeds the shared index, one short write lock per change.
#[derive(Clone)]
struct IndexSink(SharedIndex);

/// An object as the index keeps it, or the key of one it cannot use (a malformed IP, say):
/// that one is left out, and an update that turns an object malformed removes its old names.
enum Converted {
    Object(Object),
    Invalid(ObjectKey),
}

impl Converted {
    fn new<'a, K: Resource, T>(
        kind: Kind,
        object: &'a K,
        convert: impl FnOnce(&'a K) -> Result<T, super::objects::ConvertError>,
        wrap: impl FnOnce(T) -> Object,
    ) -> Converted {
        match convert(object) {
            Ok(info) => Converted::Object(wrap(info)),
            Err(error) => {
                tracing::debug!("kubernetes: left out of the index: {error}");
                let namespace = object.meta().namespace.as_deref();
                let name = object.meta().name.as_deref().unwrap_or_default();
                let namespace = if kind == Kind::Node {
                    None
                } else {
                    namespace.or(Some("default"))
                };
                Converted::Invalid(ObjectKey::new(kind, namespace, name))
            }
        }
    }

    fn key(&self) -> ObjectKey {
        match self {
            Converted::Object(object) => object.key(),
            Converted::Invalid(key) => key.clone(),
        }
    }
}

impl Sink for IndexSink {
    type Item = Converted;

    fn pod(&self, pod: &Pod) -> Converted {
        Converted::new(Kind::Pod, pod, PodInfo::try_from, Object::Pod)
    }

    fn service(&self, service: &Service) -> Converted {
        Converted::new(
            Kind::Service,
            service,
            ServiceInfo::try_from,
            Object::Service,
        )
    }

    fn endpoint_slice(&self, slice: &EndpointSlice) -> Converted {
        Converted::new(
            Kind::EndpointSlice,
            slice,
            SliceInfo::try_from,
            Object::EndpointSlice,
        )
    }

    fn node(&self, node: &Node) -> Converted {
        Converted::new(Kind::Node, node, NodeInfo::try_from, Object::Node)
    }

    fn apply(&self, kind: Kind, change: KindChange<Converted>) {
        let change = match change {
            KindChange::Reset(items) => Change::Reset(
                kind,
                items
                    .into_iter()
                    .filter_map(|c| match c {
                        Converted::Object(object) => Some(object),
                        Converted::Invalid(_) => None,
                    })
                    .collect(),
            ),
            KindChange::Upsert(Converted::Object(object)) => Change::Upsert(object),
            KindChange::Upsert(invalid @ Converted::Invalid(_)) | KindChange::Delete(invalid) => {
                Change::Delete(invalid.key())
            }
        };
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(change);
    }
}
