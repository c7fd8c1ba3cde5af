//! Asking serve's query API: `GET /v1/decisions?<query>` over its Unix socket or TCP, with
//! hyper's HTTP/1 client (the server side is [`crate::api`]).
//!
//! Failures are told apart because `who` acts on them differently: no socket or a socket
//! nobody listens on means "no serve runs here" ([`AskError::no_serve`]: the default socket
//! then falls back to the kernel's table), a socket the user may not open means "not root"
//! (never a fallback: the history exists, it is just not theirs to read), and a 400 carries
//! serve's message, which names the parameter.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use super::Answer;
use crate::api::{DECISIONS, TRUNCATED};
use crate::history::Query;

/// How long an answer may take: a query over a large on-disk history reads many segments.
pub const ASK_TIMEOUT: Duration = Duration::from_mins(1);
/// The largest answer read: `MAX_LIMIT` decisions of about 500 bytes, with room for `nat`.
const MAX_BODY: usize = 256 << 20;

/// Where a serve answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:PATH`: serve's `--api-socket`.
    Unix(PathBuf),
    /// `http://IP:PORT`: serve's `--api-addr`.
    Tcp(SocketAddr),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.is_empty() {
                return Ok(Endpoint::Unix(path.into()));
            }
        } else if let Some(rest) = text.strip_prefix("http://") {
            if let Ok(addr) = rest.trim_end_matches('/').parse() {
                return Ok(Endpoint::Tcp(addr));
            }
        }
        Err(format!(
            "{text:?} is not unix:PATH or http://IP:PORT (e.g. unix:/run/ipvs-trace/api.sock, \
             http://127.0.0.1:9809)"
        ))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "http://{addr}"),
        }
    }
}

/// Why serve gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The connect error is part of the message, not a `source` (it would print twice).
    #[error("no serve answers at {endpoint}: {error}")]
    Unreachable {
        endpoint: Endpoint,
        error: io::Error,
    },
    #[error(
        "permission denied on {path}: the history is for the node's root (run with sudo)",
        path = .path.display()
    )]
    PermissionDenied { path: PathBuf },
    #[error("serve at {endpoint} refused the question: {message}")]
    BadRequest { endpoint: Endpoint, message: String },
    #[error("serve at {endpoint} answered {status}: {message}")]
    Failed {
        endpoint: Endpoint,
        status: StatusCode,
        message: String,
    },
    #[error("serve at {endpoint} did not answer within {} s", ASK_TIMEOUT.as_secs())]
    Timeout { endpoint: Endpoint },
    #[error("talking to serve at {endpoint}: {detail}")]
    Protocol { endpoint: Endpoint, detail: String },
}

impl AskError {
    /// Nothing listens there: no socket file, or one no process answers on (a serve that was
    /// killed). The default socket then falls back to the kernel's table.
    #[must_use]
    pub fn no_serve(&self) -> bool {
        matches!(
            self,
            AskError::Unreachable { error, .. }
                if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
        )
    }
}

/// What a failed connect means. A Unix socket of mode 0600 that is not ours gives EACCES.
#[must_use]
pub fn connect_error(endpoint: &Endpoint, error: io::Error) -> AskError {
    match endpoint {
        Endpoint::Unix(path) if error.kind() == io::ErrorKind::PermissionDenied => {
            AskError::PermissionDenied { path: path.clone() }
        }
        _ => AskError::Unreachable {
            endpoint: endpoint.clone(),
            error,
        },
    }
}

/// Asks `endpoint` the `query`.
pub async fn ask(endpoint: &Endpoint, query: &Query) -> Result<Answer, AskError> {
    tokio::time::timeout(ASK_TIMEOUT, ask_untimed(endpoint, query))
        .await
        .unwrap_or_else(|_| {
            Err(AskError::Timeout {
                endpoint: endpoint.clone(),
            })
        })
}

async fn ask_untimed(endpoint: &Endpoint, query: &Query) -> Result<Answer, AskError> {
    let target = format!("{DECISIONS}?{}", query.to_query_string());
    match endpoint {
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|err| connect_error(endpoint, err))?;
            exchange(TokioIo::new(stream), endpoint, "localhost", &target).await
        }
        Endpoint::Tcp(addr) => {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|err| connect_error(endpoint, err))?;
            exchange(TokioIo::new(stream), endpoint, &addr.to_string(), &target).await
        }
    }
}

/// One request, one response, on a fresh connection.
async fn exchange<S>(
    io: TokioIo<S>,
    endpoint: &Endpoint,
    host: &str,
    target: &str,
) -> Result<Answer, AskError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let protocol = |detail: String| AskError::Protocol {
        endpoint: endpoint.clone(),
        detail,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|err| protocol(err.to_string()))?;
    // The connection is driven while the request is sent and the body read; it ends with
    // the response (the sender is dropped).
    let driver = tokio::spawn(connection);
    let request = Request::get(target)
        .header(HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|err| protocol(err.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| protocol(err.to_string()))?;
    let status = response.status();
    let truncated = response
        .headers()
        .get(TRUNCATED)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true"));
    let ndjson = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/x-ndjson"));
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|err| protocol(format!("reading the answer: {err}")))?
        .to_bytes();
    drop(sender);
    driver.abort();
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| protocol("the answer is not UTF-8".to_owned()))?;
    if status == StatusCode::BAD_REQUEST {
        return Err(AskError::BadRequest {
            endpoint: endpoint.clone(),
            message: text.trim().to_owned(),
        });
    }
    if status != StatusCode::OK {
        return Err(AskError::Failed {
            endpoint: endpoint.clone(),
            status,
            message: text.trim().to_owned(),
        });
    }
    if !ndjson {
        return Err(protocol(
            "the answer is not application/x-ndjson: is this serve's API?".to_owned(),
        ));
    }
    Ok(Answer {
        lines: text
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
        truncated,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::convert::Infallible;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Response;
    use tokio::net::UnixListener;

    use super::*;

    const NAMED: &str = include_str!("../../../tests/golden/events-named.jsonl");

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ipvs-trace-who-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A stand-in for serve's API on a Unix socket: answers every request with `status`,
    /// `content_type`, the truncated header and `body`, and records the request targets.
    pub(crate) fn serve_on(
        path: &Path,
        status: StatusCode,
        content_type: &'static str,
        truncated: bool,
        body: &'static str,
    ) -> Arc<Mutex<Vec<String>>> {
        let listener = UnixListener::bind(path).expect("binds the test socket");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                let service = service_fn(move |request: Request<Incoming>| {
                    record.lock().unwrap().push(request.uri().to_string());
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    *response.status_mut() = status;
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, content_type.parse().unwrap());
                    headers.insert(
                        TRUNCATED,
                        if truncated { "true" } else { "false" }.parse().unwrap(),
                    );
                    async move { Ok::<_, Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        seen
    }

    fn query() -> Query {
        Query {
            client: Some("10.245.97.12".parse().unwrap()),
            since: Some(1_795_713_100_000_000_000),
            limit: 10,
            ..Query::default()
        }
    }

    #[tokio::test]
    async fn reads_the_lines_and_asks_the_query_string() {
        let dir = temp_dir("ok");
        let path = dir.join("api.sock");
        let seen = serve_on(&path, StatusCode::OK, "application/x-ndjson", false, NAMED);
        let answer = ask(&Endpoint::Unix(path), &query()).await.unwrap();
        assert_eq!(answer.lines, NAMED.lines().collect::<Vec<_>>());
        assert!(!answer.truncated);
        assert_eq!(
            *seen.lock().unwrap(),
            [format!(
                "{DECISIONS}?client=10.245.97.12&since=2026-11-26T17:11:40.000000000Z&limit=10"
            )]
        );
    }

    #[tokio::test]
    async fn says_when_the_answer_was_truncated() {
        let dir = temp_dir("truncated");
        let path = dir.join("api.sock");
        serve_on(&path, StatusCode::OK, "application/x-ndjson", true, "");
        let answer = ask(&Endpoint::Unix(path), &query()).await.unwrap();
        assert!(answer.truncated && answer.lines.is_empty());
    }

    #[tokio::test]
    async fn a_refused_question_carries_serves_message() {
        let dir = temp_dir("bad");
        let path = dir.join("api.sock");
        serve_on(
            &path,
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            false,
            "parameter limit: \"0\" is not a count from 1 to 100000\n",
        );
        let err = ask(&Endpoint::Unix(path.clone()), &query())
            .await
            .unwrap_err();
        assert!(matches!(err, AskError::BadRequest { .. }), "{err:?}");
        assert!(!err.no_serve());
        assert_eq!(
            err.to_string(),
            format!(
                "serve at unix:{} refused the question: parameter limit: \"0\" is not a count \
                 from 1 to 100000",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn other_statuses_and_content_types_are_errors() {
        let dir = temp_dir("failed");
        let path = dir.join("api.sock");
        serve_on(
            &path,
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            false,
            "reading the history failed: disk on fire\n",
        );
        let err = ask(&Endpoint::Unix(path), &query()).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("answered 500 Internal Server Error: reading the history failed"),
            "{err}"
        );
        let path = dir.join("html.sock");
        serve_on(&path, StatusCode::OK, "text/html", false, "<html>");
        let err = ask(&Endpoint::Unix(path), &query()).await.unwrap_err();
        assert!(
            err.to_string().contains("not application/x-ndjson"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_socket_or_a_dead_one_means_no_serve() {
        let dir = temp_dir("absent");
        let err = ask(&Endpoint::Unix(dir.join("none.sock")), &query())
            .await
            .unwrap_err();
        assert!(err.no_serve(), "{err:?}");
        // A socket file left by a killed serve: connection refused.
        let path = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = ask(&Endpoint::Unix(path), &query()).await.unwrap_err();
        assert!(err.no_serve(), "{err:?}");
        // A TCP port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = ask(&Endpoint::Tcp(port), &query()).await.unwrap_err();
        assert!(err.no_serve(), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("no serve answers at http://{port}")),
            "{err}"
        );
    }

    #[test]
    fn permission_denied_is_its_own_error() {
        let endpoint = Endpoint::Unix("/run/ipvs-trace/api.sock".into());
        let err = connect_error(&endpoint, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!err.no_serve());
        assert_eq!(
            err.to_string(),
            "permission denied on /run/ipvs-trace/api.sock: the history is for the node's root \
             (run with sudo)"
        );
        let err = connect_error(&endpoint, io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(err.no_serve());
    }

    #[test]
    fn endpoints_read_and_print_back() {
        for text in [
            "unix:/run/ipvs-trace/api.sock",
            "http://127.0.0.1:9809",
            "http://[fd00::1]:9809",
        ] {
            assert_eq!(text.parse::<Endpoint>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "unix:",
            "/run/api.sock",
            "http://node:9809",
            "https://1.2.3.4:1",
            "127.0.0.1:9809",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} accepted");
        }
    }
}
