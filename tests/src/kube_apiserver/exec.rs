//! `pods/{name}/exec`: the WebSocket of `kubectl exec` (kube-rs `Api::exec`), with the command
//! run here, on the test machine, as a real process.
//!
//! `who --cluster` asks every ipvs-trace pod through this subresource; only unmodified kube-rs
//! against a server speaking the real protocol tests that path. The protocol is the one of
//! `k8s.io/apimachinery/pkg/util/httpstream/wsstream`: `GET
//! /api/v1/namespaces/{ns}/pods/{name}/exec?command=W1&command=W2&stdout=true&stderr=true`
//! upgraded to a WebSocket with subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`, then
//! binary messages whose first byte is the channel: 1 stdout, 2 stderr, 3 the final `Status`
//! (`Success`, or `Failure` with reason `NonZeroExitCode` and the exit code as a cause), then
//! the close.
//!
//! What runs is the test's choice, per pod, and nothing else: an [`ExecTarget`] replaces the
//! requested command's first word (the program inside the container image, `/ipvs-trace`) by a
//! local program and appends its own arguments (what makes this pod's answer differ from
//! another's: `--history-dir DIR`, `--server unix:/missing`). A pod without a target refuses
//! exec, so a test never runs a command it did not map.
//!
//! The request line and headers were already read by the server's own parser (the connection
//! may have served lists before: keep-alive), so tungstenite is handed the parsed request
//! rather than the socket's bytes (`accept_hdr` would read them again): `create_response`
//! checks the upgrade headers and derives the accept key, the chosen subprotocol is added,
//! `write_response` writes it and `WebSocket::from_partially_read` takes the connection over.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, SyncSender};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tungstenite::handshake::server::{create_response, write_response, Response};
use tungstenite::http::{self, HeaderValue};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use super::{key_string, respond, status, Kind, Request, Shared};

/// The subprotocols served; the client's order of preference decides (kube-rs offers v5
/// first, as kubectl does). v5 only adds a CLOSE signal for stdin, which is not served.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
/// Bytes read from a pipe per message.
const CHUNK: usize = 32 << 10;
/// Messages queued between the pipes and the socket: a client that stops reading stops the
/// command, as a full pipe would.
const QUEUE: usize = 16;
/// How long the client may take to answer the close (kube-rs drops the connection instead).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What exec in one pod runs here: the requested command with its first word replaced by
/// `program`, and `extra_args` after the requested ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecTarget {
    pub program: PathBuf,
    pub extra_args: Vec<String>,
}

impl ExecTarget {
    fn command(&self, requested: &[String]) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(requested.iter().skip(1))
            .args(&self.extra_args);
        command
    }
}

/// `--exec-as-local NS/POD=PROGRAM [ARG]...`: the words split at whitespace, no quoting.
pub fn parse_target(text: &str) -> anyhow::Result<(String, ExecTarget)> {
    let (pod, command) = text
        .split_once('=')
        .filter(|(pod, _)| pod.split('/').filter(|s| !s.is_empty()).count() == 2)
        .with_context(|| format!("--exec-as-local takes NS/POD=PROGRAM [ARG]..., not {text:?}"))?;
    let mut words = command.split_whitespace().map(str::to_owned);
    let program = words
        .next()
        .with_context(|| format!("--exec-as-local {text:?} names no program"))?;
    Ok((
        pod.to_owned(),
        ExecTarget {
            program: program.into(),
            extra_args: words.collect(),
        },
    ))
}

/// `(namespace, name)` of `/api/v1/namespaces/{namespace}/pods/{name}/exec`.
pub(super) fn pod_of(path: &str) -> Option<(String, String)> {
    let rest = path
        .trim_end_matches('/')
        .strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("pods/")?.strip_suffix("/exec")?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| (namespace.to_owned(), name.to_owned()))
}

/// Answers one exec request on `conn`: an error status, or the upgrade and the command's run.
/// `leftover` is what the client sent past the request's headers.
pub(super) fn serve(
    request: &Request,
    (namespace, name): (String, String),
    leftover: Vec<u8>,
    conn: &TcpStream,
    shared: &Shared,
) -> io::Result<()> {
    let mut writer = conn.try_clone()?;
    let mut refuse = |code: u16, reason: &str, message: &str| {
        respond(&mut writer, code, &status(code, reason, message)).map(drop)
    };
    if request.method != "GET" {
        return refuse(405, "MethodNotAllowed", "exec is served for GET only");
    }
    let pod_key = key_string(&(Kind::Pod, namespace.clone(), name.clone()));
    if !shared.lock().objects.contains_key(&pod_key) {
        return refuse(404, "NotFound", &format!("pods \"{name}\" not found"));
    }
    let Some(target) = shared.options.exec.get(&format!("{namespace}/{name}")) else {
        return refuse(
            400,
            "BadRequest",
            &format!("pod {namespace}/{name} has no --exec-as-local command on this lab server"),
        );
    };
    let command = request.all("command");
    if command.is_empty() {
        return refuse(400, "BadRequest", "you must specify at least 1 command");
    }
    let flag = |name: &str| {
        request
            .query
            .get(name)
            .is_some_and(|v| v == "true" || v == "1")
    };
    if flag("stdin") || flag("tty") {
        return refuse(
            400,
            "BadRequest",
            "this lab server runs commands without stdin or a terminal",
        );
    }
    let response = match upgrade(request) {
        Ok(response) => response,
        Err(message) => return refuse(400, "BadRequest", &message),
    };
    write_response(&mut writer, &response).map_err(io::Error::other)?;
    let mut socket = WebSocket::from_partially_read(writer, leftover, Role::Server, None);
    let outcome = run(
        &mut target.command(&command),
        &command,
        (flag("stdout"), flag("stderr")),
        &mut socket,
    );
    outcome.map_err(io::Error::other)
}

/// The `101 Switching Protocols` for the request, with the first of its subprotocols served.
fn upgrade(request: &Request) -> Result<Response, String> {
    let offered: Vec<&str> = request
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    let protocol = offered
        .iter()
        .find(|p| PROTOCOLS.contains(p))
        .ok_or_else(|| {
            format!(
                "none of the subprotocols offered ({}) is served: {}",
                offered.join(", "),
                PROTOCOLS.join(", ")
            )
        })?;
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.path.as_str());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let parsed = builder.body(()).map_err(|e| e.to_string())?;
    let mut response =
        create_response(&parsed).map_err(|e| format!("not a WebSocket upgrade: {e}"))?;
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
    );
    Ok(response)
}

/// Runs the command, streams its output as it comes, then the status and the close.
fn run(
    command: &mut Command,
    requested: &[String],
    (stdout, stderr): (bool, bool),
    socket: &mut WebSocket<TcpStream>,
) -> tungstenite::Result<()> {
    // The real server opens each channel with a message of its number alone.
    for (channel, open) in [(STDOUT, stdout), (STDERR, stderr), (STATUS, true)] {
        if open {
            socket.send(Message::binary(vec![channel]))?;
        }
    }
    let piped = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(piped(stdout))
        .stderr(piped(stderr));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            let program = command.get_program().to_string_lossy().into_owned();
            return finish(
                socket,
                &internal_error(&format!("exec: {program:?}: {err}")),
            );
        }
    };
    let (sender, receiver) = mpsc::sync_channel(QUEUE);
    let mut pumps = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        pumps.push(pump(STDOUT, pipe, sender.clone()));
    }
    if let Some(pipe) = child.stderr.take() {
        pumps.push(pump(STDERR, pipe, sender.clone()));
    }
    drop(sender);
    // Until both pipes end (the command and whatever inherited them closed them).
    let mut sent = Ok(());
    for (channel, data) in &receiver {
        let mut message = Vec::with_capacity(1 + data.len());
        message.push(channel);
        message.extend_from_slice(&data);
        if let Err(err) = socket.send(Message::binary(message)) {
            sent = Err(err);
            break;
        }
    }
    // A client gone: the pumps' next send fails, the command is stopped.
    drop(receiver);
    if sent.is_err() {
        let _ = child.kill();
    }
    let exit = child.wait();
    for pump in pumps {
        let _ = pump.join();
    }
    sent?;
    finish(socket, &exit_status(requested, exit))
}

/// Copies a pipe to the queue in chunks, as they come.
fn pump(
    channel: u8,
    mut pipe: impl Read + Send + 'static,
    queue: SyncSender<(u8, Vec<u8>)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buffer = vec![0; CHUNK];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    if queue.send((channel, buffer[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
}

/// Sends the status, closes, and waits a little for the client's close.
fn finish(socket: &mut WebSocket<TcpStream>, status: &Value) -> tungstenite::Result<()> {
    let mut message = vec![STATUS];
    message.extend(serde_json::to_vec(status).map_err(io::Error::other)?);
    socket.send(Message::binary(message))?;
    socket.close(None)?;
    socket.get_ref().set_read_timeout(Some(CLOSE_WAIT))?;
    // Ok until the close completes; the error that ends it (closed, timed out) is no failure.
    while socket.read().is_ok() {}
    Ok(())
}

/// The `Status` of the error channel for the command's end, as the real server words it.
fn exit_status(requested: &[String], exit: io::Result<ExitStatus>) -> Value {
    match exit {
        Ok(exit) if exit.success() => json!({"metadata": {}, "status": "Success"}),
        Ok(exit) => match exit.code() {
            Some(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command \
                     {requested:?}, exit code {code}"
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            None => internal_error(&format!(
                "command terminated by signal {}",
                exit.signal().unwrap_or_default()
            )),
        },
        Err(err) => internal_error(&format!("waiting for the command: {err}")),
    }
}

fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::net::SocketAddr;

    use tungstenite::client::IntoClientRequest as _;

    use super::*;
    use crate::kube_apiserver::{Options, Server};

    fn server() -> Server {
        let mut options = Options::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        // `sh -c SCRIPT`: the requested first word is replaced, the rest is the script.
        options.exec.insert(
            "lab/shell".into(),
            ExecTarget {
                program: "/bin/sh".into(),
                extra_args: Vec::new(),
            },
        );
        let server = Server::start(options).expect("the server starts");
        for name in ["shell", "unmapped"] {
            server
                .apply(json!({"kind": "Pod", "metadata": {"name": name, "namespace": "lab"}}))
                .expect("pod applied");
        }
        server
    }

    /// Opens an exec WebSocket offering `protocols`; the chosen one and every binary message.
    fn exec(
        server: &Server,
        pod: &str,
        script: &str,
        protocols: &str,
    ) -> Result<(String, Vec<Vec<u8>>), String> {
        let script = script.bytes().fold(String::new(), |mut out, b| {
            let _ = write!(out, "%{b:02X}");
            out
        });
        let url = format!(
            "ws://{}/api/v1/namespaces/lab/pods/{pod}/exec?command=%2Fignored&command=-c&command={script}&stdout=true&stderr=true",
            server.addr()
        );
        let mut request = url.into_client_request().expect("a request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.parse().expect("a header"),
        );
        let stream = TcpStream::connect(server.addr()).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a timeout");
        let (mut socket, response) =
            tungstenite::client(request, stream).map_err(|e| e.to_string())?;
        let protocol = response.headers()["Sec-WebSocket-Protocol"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        let mut messages = Vec::new();
        loop {
            match socket.read() {
                Ok(Message::Binary(data)) => messages.push(data.to_vec()),
                Ok(Message::Close(_)) => break,
                Ok(other) => panic!("not a binary message: {other:?}"),
                Err(err) => panic!("the stream broke before the close: {err}"),
            }
        }
        Ok((protocol, messages))
    }

    fn channel(messages: &[Vec<u8>], channel: u8) -> String {
        messages
            .iter()
            .filter(|m| m.len() > 1 && m[0] == channel)
            .map(|m| String::from_utf8_lossy(&m[1..]).into_owned())
            .collect()
    }

    #[test]
    fn streams_the_output_then_the_exit_status() {
        let server = server();
        let (protocol, messages) = exec(
            &server,
            "shell",
            "printf 'out 1\\n'; printf 'err\\n' >&2; printf 'out 2\\n'; exit 3",
            "v5.channel.k8s.io, v4.channel.k8s.io",
        )
        .expect("exec runs");
        assert_eq!(protocol, "v5.channel.k8s.io");
        // Each channel opened first, the status last.
        assert_eq!(messages[..3], [vec![STDOUT], vec![STDERR], vec![STATUS]]);
        assert_eq!(messages.last().expect("messages")[0], STATUS);
        assert_eq!(channel(&messages, STDOUT), "out 1\nout 2\n");
        assert_eq!(channel(&messages, STDERR), "err\n");
        let status: Value =
            serde_json::from_str(&channel(&messages, STATUS)).expect("the status is JSON");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");

        let (protocol, messages) =
            exec(&server, "shell", "true", "v4.channel.k8s.io").expect("exec runs");
        assert_eq!(protocol, "v4.channel.k8s.io");
        assert_eq!(
            channel(&messages, STATUS),
            r#"{"metadata":{},"status":"Success"}"#
        );
    }

    /// The whole answer to an upgrade request (tungstenite's client keeps only the part of an
    /// error's body that came with the headers).
    fn refusal(server: &Server, pod: &str, query: &str, protocols: &str) -> String {
        let mut stream = TcpStream::connect(server.addr()).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a timeout");
        write!(
            stream,
            "GET /api/v1/namespaces/lab/pods/{pod}/exec?{query} HTTP/1.1\r\nHost: lab\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
        )
        .expect("sending");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("reading");
        answer
    }

    #[test]
    fn refusals_are_statuses_before_the_upgrade() {
        let server = server();
        let command = "command=true&stdout=true";
        for (pod, query, protocols, wanted) in [
            (
                "shell",
                command,
                "base64.channel.k8s.io",
                "none of the subprotocols",
            ),
            (
                "shell",
                "stdout=true",
                "v4.channel.k8s.io",
                "at least 1 command",
            ),
            (
                "shell",
                "command=sh&stdin=true",
                "v4.channel.k8s.io",
                "without stdin",
            ),
            (
                "unmapped",
                command,
                "v4.channel.k8s.io",
                "no --exec-as-local",
            ),
            (
                "missing",
                command,
                "v4.channel.k8s.io",
                "pods \\\"missing\\\" not found",
            ),
        ] {
            let answer = refusal(&server, pod, query, protocols);
            let code = if pod == "missing" { "404" } else { "400" };
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {code} ")) && answer.contains(wanted),
                "{pod} {query} {protocols}: {answer}"
            );
        }
    }

    #[test]
    fn targets_parse_from_the_command_line() {
        assert_eq!(
            parse_target("ipvs-trace/ipvs-trace-n1=/bin/ipvs-trace --history-dir /h")
                .expect("parses"),
            (
                "ipvs-trace/ipvs-trace-n1".to_owned(),
                ExecTarget {
                    program: "/bin/ipvs-trace".into(),
                    extra_args: vec!["--history-dir".into(), "/h".into()],
                }
            )
        );
        for bad in ["pod=/bin/true", "ns/pod=", "ns/pod /bin/true"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exec_paths() {
        assert_eq!(
            pod_of("/api/v1/namespaces/ipvs-trace/pods/p-1/exec"),
            Some(("ipvs-trace".into(), "p-1".into()))
        );
        for other in [
            "/api/v1/namespaces/ipvs-trace/pods",
            "/api/v1/namespaces/ipvs-trace/pods/p-1",
            "/api/v1/namespaces/ipvs-trace/pods/p-1/log",
            "/api/v1/pods/p-1/exec",
        ] {
            assert_eq!(pod_of(other), None, "{other}");
        }
    }
}
