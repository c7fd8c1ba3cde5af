//! The query API of `serve`: the recorded decisions, for the node's root only.
//!
//! Decision records say who talked to which pod, so they are not served where the metrics are
//! (the metrics listener is on the node's address for Prometheus). By default the API answers
//! on a Unix socket, `/run/ipvs-trace/api.sock`, mode 0600 and owned by serve's user, so only
//! root on the node (or serve's user) can ask; `--api-addr` adds a TCP listener, with a warning
//! unless it is a loopback address.
//!
//! One read-only endpoint, `GET /v1/decisions?client=&backend=&pod=&service=&since=&until=&limit=`
//! ([`crate::history::Query`]), answering JSON lines in exactly the `trace -o json` contract,
//! oldest first. Bad parameters get a 400 whose message names the parameter. Every answer is
//! bounded (`limit` ≤ [`crate::history::query::MAX_LIMIT`]), queries run one at a time, and
//! connections are bounded in number and in how long their request head may take, so no client
//! can make serve allocate without bound.

mod http;
mod listen;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use anyhow::Context as _;
use tokio::sync::oneshot;

use crate::history::recorder::Store;

pub use http::{DECISIONS, TRUNCATED};
pub use listen::DEFAULT_SOCKET;

/// `--api-socket` and `--api-addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// The Unix socket (always on).
    pub socket: PathBuf,
    /// Also over TCP.
    pub tcp: Option<SocketAddr>,
}

/// The running API. Dropping it stops the server and removes the socket.
pub struct ApiServer {
    socket: listen::SocketFile,
    tcp: Option<SocketAddr>,
    /// Dropped to end the server thread's runtime, which closes the listeners.
    _stop: oneshot::Sender<()>,
}

impl ApiServer {
    /// Binds the socket (and the TCP address) now, so that a path or port in use is an error
    /// before anything is loaded, and answers queries on a thread of its own.
    pub fn start(config: &ApiConfig, store: Arc<Store>) -> anyhow::Result<ApiServer> {
        let (socket, unix) = listen::bind_socket(&config.socket)?;
        let tcp = match config.tcp {
            Some(addr) => Some(listen::bind_tcp(addr)?),
            None => None,
        };
        let tcp_addr = tcp
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()
            .context("reading the API's TCP address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime of the query API")?;
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("query-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = http::serve(unix, tcp, store) => {}
                    }
                });
            })
            .context("starting the query API's thread")?;
        Ok(ApiServer {
            socket,
            tcp: tcp_addr,
            _stop: stop,
        })
    }

    /// Where it answers, for the start-up line: `unix:/run/ipvs-trace/api.sock`, and the TCP
    /// address if any.
    #[must_use]
    pub fn describe(&self) -> String {
        let unix = format!("unix:{}", self.socket.path().display());
        match self.tcp {
            Some(addr) => format!("{unix} and http://{addr}"),
            None => unix,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::history::recorder::{HistoryRecorder, RecorderConfig};
    use crate::kube::{self, SharedIndex};
    use crate::output::tests::{sample_events, seed_index, CLOCK};
    use crate::output::{OutputFormat, Printer};

    /// `GET target` on the socket, the whole raw answer.
    fn get(socket: &Path, method: &str, target: &str) -> String {
        let mut stream = UnixStream::connect(socket).expect("the API socket answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    fn body(answer: &str) -> &str {
        answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
    }

    /// The recorder fed the sample events with the seed's names, the API on a temp socket:
    /// what comes back is byte for byte what `trace -o json` printed, for the question asked.
    #[test]
    fn answers_in_the_trace_contract_and_refuses_bad_questions() {
        let dir = std::env::temp_dir().join(format!("ipvs-trace-api-{}", std::process::id()));
        let socket = dir.join("api.sock");
        let (mut recorder, store) = HistoryRecorder::start(RecorderConfig {
            memory_capacity: 100,
            dir: None,
            max_bytes: 1 << 30,
            max_age: Duration::from_hours(1),
            queue_capacity: 1000,
        })
        .expect("a memory history");
        let index = SharedIndex::new(seed_index().into());
        let json = Printer::new(OutputFormat::Json, CLOCK);
        let mut printed = Vec::new();
        let events = sample_events();
        for event in &events {
            let guard = kube::read(&index);
            let names = guard.names(event);
            recorder.record(CLOCK.unix_ns(event.timestamp_ns) as i64, event, &names);
            json.event(&mut printed, event, &names).unwrap();
        }
        recorder.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.memory_len() < events.len() {
            assert!(Instant::now() < deadline, "the worker stored nothing");
            thread::sleep(Duration::from_millis(10));
        }
        let api = ApiServer::start(
            &ApiConfig {
                socket: socket.clone(),
                tcp: None,
            },
            store,
        )
        .expect("the API starts");
        assert_eq!(api.describe(), format!("unix:{}", socket.display()));

        let printed = String::from_utf8(printed).unwrap();
        let client = "10.245.97.12";
        let expected: String = printed
            .split_inclusive('\n')
            .filter(|l| l.contains(&format!("\"client\":\"{client}:")))
            .collect();
        assert!(!expected.is_empty(), "{printed}");
        let answer = get(&socket, "GET", &format!("/v1/decisions?client={client}"));
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("content-type: application/x-ndjson\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("x-ipvs-trace-truncated: false\r\n"),
            "{answer}"
        );
        assert_eq!(body(&answer), expected);

        let answer = get(&socket, "GET", "/v1/decisions?limit=1");
        assert!(
            answer.contains("x-ipvs-trace-truncated: true\r\n"),
            "{answer}"
        );
        assert_eq!(
            body(&answer),
            format!("{}\n", printed.lines().last().unwrap())
        );

        let answer = get(&socket, "GET", "/v1/decisions?client=203.0.113.1");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && body(&answer).is_empty());

        let answer = get(&socket, "GET", "/v1/decisions?backend=10.0.0&limit=2");
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(body(&answer).starts_with("parameter backend: "), "{answer}");
        let answer = get(&socket, "POST", "/v1/decisions");
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        assert!(answer.contains("allow: GET, HEAD\r\n"), "{answer}");
        let answer = get(&socket, "GET", "/metrics");
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

        drop(api);
        assert!(!socket.exists(), "the socket goes with the server");
        let _ = recorder.finish();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
