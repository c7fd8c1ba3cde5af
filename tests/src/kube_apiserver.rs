//! A small Kubernetes API server for tests: the real list/watch protocol over plain HTTP/1.1.
//!
//! No real API server can be installed on this machine (see shared/ENVIRONMENT.md), yet the
//! Kubernetes side of ipvs-trace must be tested against unmodified kube-rs. This server speaks
//! exactly the part of the protocol kube-rs' `watcher` uses, for the four kinds ipvs-trace
//! watches (pods, services, nodes, endpointslices):
//!
//! - `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods`, `/apis/discovery.k8s.io/v1/...`: a JSON
//!   `{Kind}List` carrying `metadata.resourceVersion`, each item its own; `limit`/`continue`
//!   pagination (the watcher lists with `limit=500`), a continue token past the compaction window
//!   answers 410 Expired.
//! - The same paths with `?watch=1&resourceVersion=X&allowWatchBookmarks=true&timeoutSeconds=N`:
//!   a chunked stream of `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}` lines
//!   with every change after X, BOOKMARKs on an interval, ending after timeoutSeconds. A version
//!   older than the compaction window gets what the real server sends: HTTP 200 and one ERROR
//!   event whose object is a Status with code 410, reason Expired.
//! - `labelSelector` on lists and watches, in its equality and existence forms (`k=v`, `k!=v`,
//!   `k`, `!k`, comma-separated): `who --cluster` finds the DaemonSet's pods by label.
//! - `pods/{name}/exec`: the WebSocket of `kubectl exec`, running a command the test mapped to
//!   the pod as a local process (see [`exec`]).
//! - A control interface for tests (`/lab/...`, see [`route`]) that changes state live; each
//!   change bumps the global resourceVersion and reaches every open watch.
//!
//! It is std + serde_json (+ tungstenite for exec) only, one thread per connection, so it also
//! builds statically for the VM guest. State can be persisted (`state` file) so a restarted
//! server continues where it stopped, or restarted with a higher `rv_base` to force every client
//! through 410 and a relist.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub mod exec;
pub use exec::ExecTarget;

/// How many past changes the server keeps for watches to resume from; older versions are
/// "compacted" and answer 410, as etcd's compaction makes the real server do.
const LOG_CAPACITY: usize = 10_000;

/// The kinds served: what ipvs-trace watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Pod,
    Service,
    Node,
    EndpointSlice,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Pod, Kind::Service, Kind::Node, Kind::EndpointSlice];

    fn api_version(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            _ => "v1",
        }
    }

    #[must_use]
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::Node => "nodes",
            Kind::EndpointSlice => "endpointslices",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Node => "Node",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }

    fn namespaced(self) -> bool {
        self != Kind::Node
    }

    fn from_kind_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    #[must_use]
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == plural)
    }
}

/// (kind, namespace or "" for cluster-scoped, name)
type Key = (Kind, String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn wire(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LogEntry {
    rv: u64,
    kind: Kind,
    namespace: String,
    event: EventType,
    object: Value,
}

/// Everything the server knows; persisted as is to the state file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    /// The last resourceVersion handed out (etcd's revision).
    rv: u64,
    /// Watches from a version below this answer 410: the log holds every change after it.
    compacted: u64,
    objects: BTreeMap<String, Value>,
    log: VecDeque<LogEntry>,
    /// Bumped when open watches must end (compaction, shutdown).
    #[serde(skip)]
    epoch: u64,
}

fn key_string(key: &Key) -> String {
    format!("{}/{}/{}", key.0.name(), key.1, key.2)
}

fn object_key(object: &Value) -> anyhow::Result<Key> {
    let kind_name = object["kind"].as_str().context("object without a kind")?;
    let kind = Kind::from_kind_name(kind_name).with_context(|| {
        format!("kind {kind_name} is not served (only Pod, Service, Node, EndpointSlice)")
    })?;
    let name = object["metadata"]["name"]
        .as_str()
        .context("object without metadata.name")?;
    let namespace = if kind.namespaced() {
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    } else {
        ""
    };
    Ok((kind, namespace.to_owned(), name.to_owned()))
}

impl Store {
    fn record(&mut self, key: &Key, event: EventType, object: Value) {
        self.log.push_back(LogEntry {
            rv: self.rv,
            kind: key.0,
            namespace: key.1.clone(),
            event,
            object,
        });
        while self.log.len() > LOG_CAPACITY {
            let dropped = self.log.pop_front().expect("log is not empty");
            self.compacted = dropped.rv;
        }
    }

    /// Creates or replaces an object; returns its new resourceVersion.
    fn apply(&mut self, mut object: Value) -> anyhow::Result<u64> {
        let key = object_key(&object)?;
        self.rv += 1;
        let meta = object["metadata"]
            .as_object_mut()
            .context("metadata is not an object")?;
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        if key.0.namespaced() {
            meta.insert("namespace".into(), json!(key.1));
        }
        meta.entry("uid")
            .or_insert_with(|| json!(format!("lab-{}-{}-{}", key.0.plural(), key.1, key.2)));
        object["apiVersion"] = json!(key.0.api_version());
        let event = match self.objects.insert(key_string(&key), object.clone()) {
            Some(_) => EventType::Modified,
            None => EventType::Added,
        };
        self.record(&key, event, object);
        Ok(self.rv)
    }

    fn delete(&mut self, key: &Key) -> Option<u64> {
        let mut object = self.objects.remove(&key_string(key))?;
        self.rv += 1;
        // The DELETED event carries the object at the deletion's version, as the real server does.
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(key, EventType::Deleted, object);
        Some(self.rv)
    }

    /// Forgets the change history: every watch position before now becomes too old (410).
    /// The version is bumped so clients that were fully up to date are stale too, as after a
    /// real etcd compaction that overtook a quiet watch.
    fn compact(&mut self) {
        self.rv += 1;
        self.compacted = self.rv;
        self.log.clear();
        self.epoch += 1;
    }

    fn items(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = (&String, &Value)> {
        let prefix = match namespace {
            Some(ns) => format!("{}/{}/", kind.name(), ns),
            None => format!("{}/", kind.name()),
        };
        self.objects
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen; port 0 picks a free one (see [`Server::addr`]).
    pub listen: SocketAddr,
    /// Initial objects (`v1/List` files as from `kubectl get ... -o json`, or single objects),
    /// used when there is no state file yet.
    pub objects: Vec<PathBuf>,
    /// Persist the store here after every change, and load it at start if it exists.
    pub state: Option<PathBuf>,
    /// Start at least at this resourceVersion with an empty history: a restart that forces every
    /// client through 410 and a relist (the real server after an etcd restore).
    pub rv_base: Option<u64>,
    /// Sleep this long before every response (a slow or overloaded API server).
    pub delay: Duration,
    /// BOOKMARK interval on watches that ask for them.
    pub bookmark_interval: Duration,
    /// What `pods/{name}/exec` runs here for each pod, by `namespace/name`; a pod without an
    /// entry refuses exec.
    pub exec: BTreeMap<String, ExecTarget>,
}

impl Options {
    #[must_use]
    pub fn new(listen: SocketAddr) -> Options {
        Options {
            listen,
            objects: Vec::new(),
            state: None,
            rv_base: None,
            delay: Duration::ZERO,
            bookmark_interval: Duration::from_secs(1),
            exec: BTreeMap::new(),
        }
    }
}

struct Shared {
    store: Mutex<Store>,
    changed: Condvar,
    stopping: AtomicBool,
    options: Options,
    /// Every accepted connection, so shutdown can cut them like a crashed server would.
    connections: Mutex<BTreeMap<u64, TcpStream>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Persists (when asked to) and wakes every watch.
    fn changed(&self, store: &Store) -> anyhow::Result<()> {
        self.changed.notify_all();
        if let Some(path) = &self.options.state {
            save_state(path, store)?;
        }
        Ok(())
    }
}

fn save_state(path: &Path, store: &Store) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(store)?;
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Reads objects from a file: a `v1/List` (its items), or a single object.
pub fn read_objects(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not JSON (expected kubectl get -o json output)",
            path.display()
        )
    })?;
    Ok(flatten(value))
}

fn flatten(value: Value) -> Vec<Value> {
    match value {
        Value::Object(mut map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List")) =>
        {
            match map.remove("items") {
                Some(Value::Array(items)) => items.into_iter().flat_map(flatten).collect(),
                _ => Vec::new(),
            }
        }
        other => vec![other],
    }
}

/// A running server; dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(options: Options) -> anyhow::Result<Server> {
        let mut store = match &options.state {
            Some(path) if path.exists() => {
                let text =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_slice(&text).with_context(|| {
                    format!(
                        "{} is not a state file of this server; remove it",
                        path.display()
                    )
                })?
            }
            _ => {
                let mut store = Store::default();
                for file in &options.objects {
                    for object in read_objects(file)? {
                        match store.apply(object) {
                            Ok(_) => {}
                            // kubectl output may hold kinds this server does not serve.
                            Err(e) => eprintln!(
                                "kube-apiserver: {}: skipped an object: {e:#}",
                                file.display()
                            ),
                        }
                    }
                }
                // The seed is the starting state, not history: watches begin after it.
                store.compacted = store.rv;
                store.log.clear();
                store
            }
        };
        if let Some(base) = options.rv_base {
            if base > store.rv {
                store.rv = base;
            }
            store.compacted = store.rv;
            store.log.clear();
        }
        let listener = TcpListener::bind(options.listen)
            .with_context(|| format!("cannot listen on {}", options.listen))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            options,
            connections: Mutex::new(BTreeMap::new()),
        });
        if let Some(path) = &shared.options.state {
            save_state(path, &shared.lock())?;
        }
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("kube-apiserver-accept".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(Server {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig pointing at this server.
    #[must_use]
    pub fn kubeconfig(&self) -> String {
        kubeconfig(self.addr)
    }

    /// Creates or replaces an object (its `kind` says which); returns the new resourceVersion.
    pub fn apply(&self, object: Value) -> anyhow::Result<u64> {
        let mut store = self.shared.lock();
        let rv = store.apply(object)?;
        self.shared.changed(&store)?;
        Ok(rv)
    }

    /// Deletes an object; `namespace` is ignored for nodes. Errors if it does not exist.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> anyhow::Result<u64> {
        let ns = if kind.namespaced() { namespace } else { "" };
        let mut store = self.shared.lock();
        let rv = store
            .delete(&(kind, ns.to_owned(), name.to_owned()))
            .with_context(|| format!("no {} {ns}/{name} to delete", kind.name()))?;
        self.shared.changed(&store)?;
        Ok(rv)
    }

    /// Drops the change history and ends every open watch: clients resuming from any version they
    /// had get 410 and must relist.
    pub fn compact(&self) -> anyhow::Result<u64> {
        let mut store = self.shared.lock();
        store.compact();
        self.shared.changed(&store)?;
        Ok(store.rv)
    }

    /// The current resourceVersion.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Stops like a crashed server: the port closes and every connection is cut.
    pub fn shutdown(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let mut store = self.shared.lock();
            store.epoch += 1;
            self.shared.changed.notify_all();
        }
        // Wake the blocking accept so the listener is dropped (closing the port).
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for conn in self
            .shared
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A kubeconfig for `http://addr`, no TLS and no credentials (the server checks none).
#[must_use]
pub fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n\
         current-context: lab\nusers:\n- name: lab\n  user: {{}}\n"
    )
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for (id, conn) in (0u64..).zip(listener.incoming()) {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let _ = conn.set_nodelay(true);
        // The clone lets shutdown cut the connection; it must leave the map when the connection
        // ends, or the duplicated descriptor would keep the socket open.
        if let Ok(clone) = conn.try_clone() {
            shared
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, clone);
        }
        let shared = Arc::clone(shared);
        let _ = thread::Builder::new()
            .name("kube-apiserver-conn".into())
            .spawn(move || {
                let _ = serve_connection(&conn, &shared);
                shared
                    .connections
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
                let _ = conn.shutdown(Shutdown::Both);
            });
    }
}

struct Request {
    method: String,
    path: String,
    /// Query parameters by name; of a repeated one, the last.
    query: BTreeMap<String, String>,
    /// Every query parameter in order, repeated ones included (exec's `command=` words).
    params: Vec<(String, String)>,
    /// The header lines, in order (exec's WebSocket upgrade reads them).
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// Every value of a repeated query parameter, in order.
    fn all(&self, name: &str) -> Vec<String> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut content_length = 0usize;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    let (path, params) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), parse_query(q)),
        None => (target, Vec::new()),
    };
    Ok(Some(Request {
        method,
        path,
        query: params.iter().cloned().collect(),
        params,
        headers,
        body,
    }))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_connection(conn: &TcpStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn.try_clone()?;
    while let Some(request) = read_request(&mut reader)? {
        if shared.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !shared.options.delay.is_zero() {
            thread::sleep(shared.options.delay);
        }
        if let Some(pod) = exec::pod_of(&request.path) {
            // The connection becomes the exec's WebSocket (or answers one error): it ends here.
            // What the client sent past the headers is in the reader's buffer.
            return exec::serve(&request, pod, reader.buffer().to_vec(), conn, shared);
        }
        if !route(&request, shared, &mut writer)? {
            return Ok(());
        }
    }
    Ok(())
}

fn respond(writer: &mut TcpStream, code: u16, body: &Value) -> io::Result<bool> {
    let body = serde_json::to_vec(body)?;
    let reason = match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(&body)?;
    writer.flush()?;
    Ok(true)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// The resource a path names: kind and namespace (None = all namespaces).
fn resource_path(path: &str) -> Option<(Kind, Option<String>)> {
    let rest = path
        .strip_prefix("/api/v1/")
        .map(|r| (r, false))
        .or_else(|| {
            path.strip_prefix("/apis/discovery.k8s.io/v1/")
                .map(|r| (r, true))
        })?;
    let (rest, discovery) = rest;
    let segments: Vec<&str> = rest.split('/').collect();
    let (namespace, plural) = match segments.as_slice() {
        [plural] => (None, *plural),
        ["namespaces", ns, plural] => (Some((*ns).to_owned()), *plural),
        _ => return None,
    };
    let kind = Kind::from_plural(plural)?;
    if (kind == Kind::EndpointSlice) != discovery || (namespace.is_some() && !kind.namespaced()) {
        return None;
    }
    Some((kind, namespace))
}

/// Answers one request; false when the connection must close (the server is stopping).
///
/// Control interface for tests (also usable with curl/wget in the VM guest):
/// - `POST /lab/apply`: body an object or a `v1/List`; creates or replaces each.
/// - `DELETE /lab/objects/{plural}/{namespace}/{name}` (`/lab/objects/nodes/{name}` for nodes).
/// - `POST /lab/compact`: drop the history and end open watches (clients get 410, relist).
/// - `GET /lab/rv`: the current resourceVersion.
fn route(request: &Request, shared: &Shared, writer: &mut TcpStream) -> io::Result<bool> {
    let method = request.method.as_str();
    let path = request.path.trim_end_matches('/');
    if let Some((kind, namespace)) = resource_path(path) {
        if method != "GET" {
            return respond(
                writer,
                405,
                &status(
                    405,
                    "MethodNotAllowed",
                    "this server only lists and watches",
                ),
            );
        }
        let Some(selector) = selector(request, writer)? else {
            return Ok(true);
        };
        if request
            .query
            .get("watch")
            .is_some_and(|w| w == "1" || w == "true")
        {
            // A watch selects by the labels of each event's object: an object relabelled out
            // of the selection is not reported DELETED, as the real server would.
            watch(
                request,
                shared,
                writer,
                (kind, namespace.as_deref(), &selector),
            )?;
            // A watch that ended cleanly leaves the connection reusable, as HTTP/1.1 keep-alive
            // clients (hyper's pool) expect.
            return Ok(!shared.stopping.load(Ordering::SeqCst));
        }
        return list(
            request,
            shared,
            writer,
            (kind, namespace.as_deref(), &selector),
        );
    }
    control(request, shared, writer, path)
}

/// The `/lab/...` control interface and `/version`.
fn control(
    request: &Request,
    shared: &Shared,
    writer: &mut TcpStream,
    path: &str,
) -> io::Result<bool> {
    let method = request.method.as_str();
    match (method, path) {
        ("GET", "/version") => respond(
            writer,
            200,
            &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-ipvs-trace-lab", "platform": "linux/amd64"}),
        ),
        ("GET", "/lab/rv") => respond(
            writer,
            200,
            &json!({"resourceVersion": shared.lock().rv.to_string()}),
        ),
        ("POST", "/lab/apply") => {
            let result = serde_json::from_slice::<Value>(&request.body)
                .context("body is not JSON")
                .and_then(|value| {
                    let mut store = shared.lock();
                    let mut rv = store.rv;
                    for object in flatten(value) {
                        rv = store.apply(object)?;
                    }
                    shared.changed(&store)?;
                    Ok(rv)
                });
            match result {
                Ok(rv) => respond(writer, 200, &json!({"resourceVersion": rv.to_string()})),
                Err(e) => respond(writer, 400, &status(400, "BadRequest", &format!("{e:#}"))),
            }
        }
        ("POST", "/lab/compact") => {
            let mut store = shared.lock();
            store.compact();
            let rv = store.rv;
            let saved = shared.changed(&store);
            drop(store);
            match saved {
                Ok(()) => respond(writer, 200, &json!({"resourceVersion": rv.to_string()})),
                Err(e) => respond(
                    writer,
                    500,
                    &status(500, "InternalError", &format!("{e:#}")),
                ),
            }
        }
        ("DELETE", p) if p.starts_with("/lab/objects/") => lab_delete(shared, writer, p),
        _ => respond(
            writer,
            404,
            &status(
                404,
                "NotFound",
                &format!("{method} {path} is not served here"),
            ),
        ),
    }
}

/// `DELETE /lab/objects/{plural}/{namespace}/{name}` (`/lab/objects/nodes/{name}` for nodes).
fn lab_delete(shared: &Shared, writer: &mut TcpStream, p: &str) -> io::Result<bool> {
    let segments: Vec<&str> = p["/lab/objects/".len()..].split('/').collect();
    let key = match segments.as_slice() {
        [plural, name] => Kind::from_plural(plural)
            .filter(|k| !k.namespaced())
            .map(|k| (k, String::new(), (*name).to_owned())),
        [plural, ns, name] => Kind::from_plural(plural)
            .filter(|k| k.namespaced())
            .map(|k| (k, (*ns).to_owned(), (*name).to_owned())),
        _ => None,
    };
    let Some(key) = key else {
        return respond(
            writer,
            400,
            &status(
                400,
                "BadRequest",
                "use /lab/objects/{plural}/{namespace}/{name}",
            ),
        );
    };
    let mut store = shared.lock();
    let Some(rv) = store.delete(&key) else {
        drop(store);
        return respond(
            writer,
            404,
            &status(404, "NotFound", &format!("no {}", key_string(&key))),
        );
    };
    let saved = shared.changed(&store);
    drop(store);
    match saved {
        Ok(()) => respond(writer, 200, &json!({"resourceVersion": rv.to_string()})),
        Err(e) => respond(
            writer,
            500,
            &status(500, "InternalError", &format!("{e:#}")),
        ),
    }
}

/// One requirement of a `labelSelector`.
#[derive(Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// The equality and existence forms of a `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// comma-separated); the set-based ones (`k in (a,b)`) are refused rather than misread.
fn parse_selector(text: &str) -> Result<Vec<Requirement>, String> {
    if text.contains('(') {
        return Err(format!(
            "labelSelector {text:?}: set-based requirements are not served here"
        ));
    }
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let requirement = if let Some((k, v)) = r.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = r.split_once('=') {
                let v = v.strip_prefix('=').unwrap_or(v);
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = r.strip_prefix('!') {
                Requirement::Absent(k.trim().to_owned())
            } else {
                Requirement::Exists(r.to_owned())
            };
            match &requirement {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::Exists(k)
                | Requirement::Absent(k)
                    if k.is_empty() || k.contains(char::is_whitespace) =>
                {
                    Err(format!("labelSelector {text:?}: cannot read {r:?}"))
                }
                _ => Ok(requirement),
            }
        })
        .collect()
}

fn selects(requirements: &[Requirement], object: &Value) -> bool {
    let label = |k: &str| object["metadata"]["labels"][k].as_str();
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
        Requirement::Exists(k) => label(k).is_some(),
        Requirement::Absent(k) => label(k).is_none(),
    })
}

/// The request's `labelSelector`, or the 400 it answers.
fn selector(request: &Request, writer: &mut TcpStream) -> io::Result<Option<Vec<Requirement>>> {
    match parse_selector(
        request
            .query
            .get("labelSelector")
            .map_or("", String::as_str),
    ) {
        Ok(requirements) => Ok(Some(requirements)),
        Err(message) => {
            respond(writer, 400, &status(400, "BadRequest", &message))?;
            Ok(None)
        }
    }
}

/// What a list or watch is of: a kind, in one namespace or all, with these labels.
type Selection<'a> = (Kind, Option<&'a str>, &'a [Requirement]);

fn list(
    request: &Request,
    shared: &Shared,
    writer: &mut TcpStream,
    (kind, namespace, selector): Selection<'_>,
) -> io::Result<bool> {
    let limit: usize = request
        .query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let store = shared.lock();
    // A continue token is "{list rv}/{last key}": the next page starts after that key and the
    // whole list reports the version of its first page, like the real server's snapshot.
    let (list_rv, after) = match request.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match token
            .split_once('/')
            .and_then(|(rv, key)| Some((rv.parse::<u64>().ok()?, key)))
        {
            Some((rv, _)) if rv < store.compacted => {
                drop(store);
                return respond(
                    writer,
                    410,
                    &status(
                        410,
                        "Expired",
                        "The provided continue parameter is too old; relist",
                    ),
                );
            }
            Some((rv, key)) => (rv, Some(key.to_owned())),
            None => {
                drop(store);
                return respond(
                    writer,
                    400,
                    &status(400, "BadRequest", "malformed continue token"),
                );
            }
        },
        None => (store.rv, None),
    };
    let mut items = Vec::new();
    let mut next = None;
    for (key, object) in store
        .items(kind, namespace)
        .filter(|(_, o)| selects(selector, o))
    {
        if after.as_ref().is_some_and(|a| key.as_str() <= a.as_str()) {
            continue;
        }
        if items.len() == limit {
            next = Some(format!("{list_rv}/{}", items_last_key(&items)));
            break;
        }
        items.push((key.clone(), object.clone()));
    }
    drop(store);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    let items: Vec<Value> = items.into_iter().map(|(_, o)| o).collect();
    respond(
        writer,
        200,
        &json!({
            "kind": format!("{}List", kind.name()),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    )
}

fn items_last_key(items: &[(String, Value)]) -> &str {
    items.last().map_or("", |(k, _)| k.as_str())
}

fn write_chunk(writer: &mut TcpStream, line: &Value) -> io::Result<()> {
    let mut data = serde_json::to_vec(line)?;
    data.push(b'\n');
    let mut chunk = String::new();
    let _ = write!(chunk, "{:x}\r\n", data.len());
    writer.write_all(chunk.as_bytes())?;
    writer.write_all(&data)?;
    writer.write_all(b"\r\n")?;
    writer.flush()
}

/// A watch's query: its deadline, whether it wants BOOKMARKs, the version it resumes from
/// (none: it starts with the current state).
fn watch_params(request: &Request) -> (Instant, bool, Option<u64>) {
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_mins(30), Duration::from_secs);
    let bookmarks = request
        .query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let from: Option<u64> = request
        .query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && rv.as_str() != "0")
        .map(|rv| rv.parse().unwrap_or(0));
    (Instant::now() + timeout, bookmarks, from)
}

fn watch(
    request: &Request,
    shared: &Shared,
    writer: &mut TcpStream,
    (kind, namespace, selector): Selection<'_>,
) -> io::Result<()> {
    let (deadline, bookmarks, from) = watch_params(request);
    writer.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let matches = |e: &LogEntry| {
        e.kind == kind
            && namespace.is_none_or(|ns| e.namespace == ns)
            && selects(selector, &e.object)
    };

    let mut store = shared.lock();
    let epoch = store.epoch;
    let mut position = match from {
        Some(rv) if rv < store.compacted => {
            let message = format!("too old resource version: {rv} ({})", store.compacted);
            drop(store);
            write_chunk(
                writer,
                &json!({"type": "ERROR", "object": status(410, "Expired", &message)}),
            )?;
            return writer.write_all(b"0\r\n\r\n");
        }
        Some(rv) => rv,
        None => {
            // No version: the current state as ADDED events first (the API's "any" semantics).
            let initial: Vec<Value> = store
                .items(kind, namespace)
                .filter(|(_, o)| selects(selector, o))
                .map(|(_, o)| o.clone())
                .collect();
            let rv = store.rv;
            drop(store);
            for object in initial {
                write_chunk(writer, &json!({"type": "ADDED", "object": object}))?;
            }
            store = shared.lock();
            rv
        }
    };
    let mut next_bookmark = Instant::now() + shared.options.bookmark_interval;
    loop {
        if store.epoch != epoch || shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let pending: Vec<LogEntry> = store
            .log
            .iter()
            .filter(|e| e.rv > position && matches(e))
            .cloned()
            .collect();
        // Every change (of any kind) moves this watch's position on, so a bookmark after an
        // unrelated change still tells the client the newest version.
        position = position.max(store.rv);
        if !pending.is_empty() {
            drop(store);
            for entry in pending {
                write_chunk(
                    writer,
                    &json!({"type": entry.event.wire(), "object": entry.object}),
                )?;
            }
            store = shared.lock();
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if bookmarks && now >= next_bookmark {
            drop(store);
            write_chunk(
                writer,
                &json!({"type": "BOOKMARK", "object": {
                    "kind": kind.name(),
                    "apiVersion": kind.api_version(),
                    "metadata": {"resourceVersion": position.to_string()},
                }}),
            )?;
            next_bookmark = now + shared.options.bookmark_interval;
            store = shared.lock();
            continue;
        }
        let wake = deadline.min(next_bookmark);
        store = shared
            .changed
            .wait_timeout(store, wake.saturating_duration_since(now))
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
    drop(store);
    if shared.stopping.load(Ordering::SeqCst) {
        // A crashed server does not end its chunked streams cleanly.
        return Ok(());
    }
    writer.write_all(b"0\r\n\r\n")?;
    writer.flush()
}

/// Parses `kube-apiserver` arguments (kept dependency-free for the static guest build).
pub fn parse_args(args: &[String]) -> anyhow::Result<(Options, Option<PathBuf>)> {
    let mut options = Options::new(SocketAddr::from(([127, 0, 0, 1], 6443)));
    let mut kubeconfig = None;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let value = || {
            args.get(i + 1)
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag {
            "--listen" => options.listen = value()?.parse().context("--listen takes IP:PORT")?,
            "--objects" => options.objects.push(PathBuf::from(value()?)),
            "--state" => options.state = Some(PathBuf::from(value()?)),
            "--rv-base" => {
                options.rv_base = Some(value()?.parse().context("--rv-base takes a number")?);
            }
            "--delay-ms" => {
                options.delay =
                    Duration::from_millis(value()?.parse().context("--delay-ms takes a number")?);
            }
            "--bookmark-ms" => {
                options.bookmark_interval = Duration::from_millis(
                    value()?.parse().context("--bookmark-ms takes a number")?,
                );
            }
            "--write-kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--exec-as-local" => {
                let (pod, target) = exec::parse_target(value()?)?;
                options.exec.insert(pod, target);
            }
            other => bail!("unknown argument {other} (see kube-apiserver --help)"),
        }
        i += 2;
    }
    Ok((options, kubeconfig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_of_the_equality_and_existence_forms() {
        let object = json!({"metadata": {"labels": {"app.kubernetes.io/name": "ipvs-trace", "tier": "node"}}});
        for (selector, selected) in [
            ("", true),
            ("app.kubernetes.io/name=ipvs-trace", true),
            ("app.kubernetes.io/name==ipvs-trace,tier", true),
            ("app.kubernetes.io/name=web", false),
            ("tier!=node", false),
            ("tier!=edge, !canary", true),
            ("canary", false),
            ("!tier", false),
        ] {
            let requirements = parse_selector(selector).expect("parses");
            assert_eq!(selects(&requirements, &object), selected, "{selector}");
        }
        for refused in ["tier in (node,edge)", "=node", "!"] {
            assert!(parse_selector(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn repeated_query_parameters_are_all_kept() {
        let params = parse_query("command=%2Fipvs-trace&command=who&stdout=true&limit=1&limit=2");
        let request = Request {
            method: "GET".into(),
            path: "/".into(),
            query: params.iter().cloned().collect(),
            params,
            headers: Vec::new(),
            body: Vec::new(),
        };
        assert_eq!(request.all("command"), ["/ipvs-trace", "who"]);
        assert_eq!(request.query["limit"], "2", "the last of a repeated one");
    }
}
