//! HTTP/1 over the API's listeners: `GET /v1/decisions`, nothing else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::clock::WallClock;
use crate::history::recorder::Store;
use crate::history::Query;
use crate::output::json;

/// The one path.
pub const DECISIONS: &str = "/v1/decisions";
/// Header saying that more decisions matched than `limit`: the answer holds the newest.
pub const TRUNCATED: &str = "x-ipvs-trace-truncated";

const NDJSON: &str = "application/x-ndjson";
const TEXT: &str = "text/plain; charset=utf-8";
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// A request head must arrive within this; a client that sends nothing holds no slot longer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared state of every connection: the store, and the one query that runs at a time (an
/// answer can hold up to `MAX_LIMIT` decisions: one such answer in memory, not sixteen).
struct Shared {
    store: Arc<Store>,
    query: Semaphore,
    connections: Arc<Semaphore>,
    warned: Warned,
}

/// What a query found damaged in the history, logged once: every later query of the same
/// files finds the same damage, and the log must not repeat it per question.
struct Warned {
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Distinct warnings remembered; past it, new ones go to the debug log (a history directory
/// with that many damaged places has been reported enough).
const WARNINGS_REMEMBERED: usize = 1024;

impl Warned {
    /// Starts with what opening the history already reported.
    fn new(already: &[String]) -> Warned {
        Warned {
            seen: std::sync::Mutex::new(already.iter().cloned().collect()),
        }
    }

    fn log(&self, warnings: &[String]) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for warning in warnings {
            if seen.contains(warning) {
                continue;
            }
            if seen.len() < WARNINGS_REMEMBERED {
                tracing::warn!("query API: {warning}");
                seen.insert(warning.clone());
            } else {
                tracing::debug!("query API: {warning}");
            }
        }
    }
}

/// Accepts on both listeners until the runtime is dropped.
pub(super) async fn serve(
    unix: std::os::unix::net::UnixListener,
    tcp: Option<std::net::TcpListener>,
    store: Arc<Store>,
) {
    let shared = Arc::new(Shared {
        warned: Warned::new(store.open_warnings()),
        store,
        query: Semaphore::new(1),
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    });
    let unix = match tokio::net::UnixListener::from_std(unix) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!("the query API cannot accept on its socket: {err}");
            return;
        }
    };
    let tcp_loop = {
        let shared = Arc::clone(&shared);
        async move {
            let Some(tcp) = tcp else {
                return std::future::pending().await;
            };
            match tokio::net::TcpListener::from_std(tcp) {
                Ok(listener) => loop {
                    let accepted = listener.accept().await.map(|(stream, _)| stream);
                    accept_one(&shared, accepted).await;
                },
                Err(err) => tracing::error!("the query API cannot accept on TCP: {err}"),
            }
        }
    };
    let unix_loop = async {
        loop {
            let accepted = unix.accept().await.map(|(stream, _)| stream);
            accept_one(&shared, accepted).await;
        }
    };
    tokio::join!(unix_loop, tcp_loop);
}

/// Serves one accepted connection on a task of its own, once a connection slot is free.
async fn accept_one<S>(shared: &Arc<Shared>, accepted: std::io::Result<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stream = match accepted {
        Ok(stream) => stream,
        // Out of file descriptors, say: the next accept may work; tracing goes on.
        Err(err) => {
            tracing::warn!("query API: accept failed: {err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
    };
    let Ok(slot) = Arc::clone(&shared.connections).acquire_owned().await else {
        return;
    };
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let service = service_fn(move |request: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            async move {
                let response = respond(
                    &shared,
                    request.method(),
                    request.uri().path(),
                    request.uri().query().unwrap_or(""),
                )
                .await;
                Ok::<_, Infallible>(response)
            }
        });
        if let Err(err) = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!("query API: connection ended: {err}");
        }
        drop(slot);
    });
}

/// The answer to one request (HEAD gets the same head without the body, from hyper).
async fn respond(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
) -> Response<Full<Bytes>> {
    if path != DECISIONS {
        return text(
            StatusCode::NOT_FOUND,
            format!("not found: this API serves GET {DECISIONS}\n"),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{DECISIONS} answers GET and HEAD\n"),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let query = match Query::parse(query, now_ns()) {
        Ok(query) => query,
        Err(err) => return text(StatusCode::BAD_REQUEST, format!("{err}\n")),
    };
    let Ok(_turn) = shared.query.acquire().await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        );
    };
    let store = Arc::clone(&shared.store);
    // The disk part of a query reads files: off the async thread.
    let answer = match tokio::task::spawn_blocking(move || store.query(&query)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(err)) => {
            tracing::warn!("query API: {err:#}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the history failed: {err:#}\n"),
            );
        }
        Err(err) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the query failed: {err}\n"),
            );
        }
    };
    shared.warned.log(&answer.warnings);
    let mut body = Vec::with_capacity(answer.decisions.len() * 512);
    // A decoded decision carries its Unix time as its timestamp: a zero offset prints it.
    let clock = WallClock::with_offset(0);
    for decision in &answer.decisions {
        // Writing into a Vec cannot fail.
        let _ = json::write_line(
            &mut body,
            &clock,
            &decision.event,
            &decision.names.names(),
            None,
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(
        TRUNCATED,
        HeaderValue::from_static(if answer.truncated { "true" } else { "false" }),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    response
}

/// Unix nanoseconds now, for relative times (`since=1h`).
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
