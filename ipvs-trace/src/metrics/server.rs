//! The HTTP endpoint: `GET /metrics` (OpenMetrics text) and `GET /healthz` (200 while every probe
//! is attached, 503 before, and while ip_vs is unloaded), on a thread and runtime of its own
//! (see the module above).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::Metrics;

/// What Prometheus asks for and this endpoint serves.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The running endpoint. Dropping it stops the server.
pub struct MetricsServer {
    addr: SocketAddr,
    /// Dropped to end the server thread's runtime, which closes the listener.
    _stop: oneshot::Sender<()>,
}

impl MetricsServer {
    /// Binds `addr` now (so a port in use is an error before anything is loaded) and serves
    /// `metrics` on a thread of its own.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "cannot listen on {addr} for the metrics endpoint: is another process using the \
                 port? Choose another with --metrics-addr"
            )
        })?;
        listener
            .set_nonblocking(true)
            .context("setting the metrics listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("reading the metrics listener's address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime of the metrics endpoint")?;
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => {
                            tracing::error!("the metrics endpoint cannot accept: {err}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accept(listener, metrics) => {}
                    }
                });
            })
            .context("starting the metrics endpoint's thread")?;
        tracing::info!("metrics endpoint on http://{addr}/metrics");
        Ok(MetricsServer { addr, _stop: stop })
    }

    /// The address it listens on (with the port chosen by the kernel for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn accept(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, say: the next accept may work; the trace goes on.
            Err(err) => {
                tracing::warn!("metrics endpoint: accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&metrics, request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("metrics endpoint: connection ended: {err}");
            }
        });
    }
}

/// The answer to one request (HEAD gets the same head without the body, from hyper).
pub(super) fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" | "/healthz" if method != Method::GET && method != Method::HEAD => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            format!("{path} answers GET and HEAD\n"),
        ),
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.encode()),
        "/healthz" if metrics.ready() => (StatusCode::OK, TEXT, "ok\n".to_owned()),
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not ready: the probes are not attached (waiting for ip_vs to be loaded, or \
             loading)\n"
                .to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: this endpoint serves /metrics and /healthz\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}
