//! `lab-net`: the traffic tool of the VM lab.
//!
//! The guest has busybox, whose `nc` can neither make hundreds of connections with one line of
//! report each, nor bind a fixed source port with `SO_REUSEADDR`, nor close with a RST. The
//! scenarios need all three, and they need to know each connection's own source ip:port so the
//! tests can match it against `ipvsadm -Lnc`, so this small tool does the talking:
//!
//! ```text
//! lab-net serve --listen IP:PORT [--udp]
//! lab-net connect --to IP:PORT --count N [--udp] [--bind IP[:PORT]] [--rst] [--interval-ms N]
//! ```
//! `connect` prints one line per connection, `<local ip:port> <remote ip:port> ok` or
//! `<local> <remote> error <message>`, and exits with status 1 if any of them failed.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::str::FromStr;
use std::thread;
use std::time::Duration;

use clap::{Parser, Subcommand};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Traffic tool of the ipvs-trace VM lab: a sink server and a client that reports each
/// connection's addresses.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve forever: each TCP connection is read until EOF and closed (with --echo, what is
    /// read is written back); each UDP datagram is echoed back to its sender. Prints
    /// `lab-net: listening on IP:PORT` once ready.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Serve UDP instead of TCP.
        #[arg(long)]
        udp: bool,
        /// TCP: write back everything read (for `connect --exchanges`).
        #[arg(long)]
        echo: bool,
    },
    /// Make `count` sequential connections (UDP: one datagram from a fresh socket each, waiting
    /// for its echo) and print one line per connection.
    Connect {
        /// Address to connect to.
        #[arg(long)]
        to: SocketAddr,
        /// Number of connections.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Use UDP.
        #[arg(long)]
        udp: bool,
        /// Local address to bind, `IP` or `IP:PORT`; with a port, `SO_REUSEADDR` is set so the
        /// same source ip:port can connect again (use `--rst` so no `TIME_WAIT` blocks it).
        #[arg(long)]
        bind: Option<BindAddr>,
        /// Close each TCP connection with a RST (`SO_LINGER` 0) right after writing, so neither
        /// side keeps a `TIME_WAIT` and IPVS moves the entry to CLOSE.
        #[arg(long)]
        rst: bool,
        /// Pause between connections.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Timeout of each connect, and of each read or UDP echo.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
        /// TCP, against a `serve --echo`: on each connection, this many request/response
        /// exchanges (write the payload, read it back) before the close; many small packets
        /// through one IPVS entry.
        #[arg(long, default_value_t = 0)]
        exchanges: u32,
    },
}

/// `IP` or `IP:PORT` (port 0 when absent: the kernel picks one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BindAddr(SocketAddr);

impl FromStr for BindAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(BindAddr(addr));
        }
        s.parse::<IpAddr>()
            .map(|ip| BindAddr(SocketAddr::new(ip, 0)))
            .map_err(|_| format!("`{s}` is neither IP nor IP:PORT"))
    }
}

/// The line written on each TCP connection and sent in each UDP datagram.
const PAYLOAD: &[u8] = b"lab-net hello\n";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, udp, echo } => {
            let result = if udp {
                serve_udp(listen)
            } else {
                serve_tcp(listen, echo)
            };
            // Serving only returns on a failure to set up or to accept.
            if let Err(err) = result {
                eprintln!("lab-net: serve {listen}: {err}");
            }
            ExitCode::FAILURE
        }
        Command::Connect {
            to,
            count,
            udp,
            bind,
            rst,
            interval_ms,
            timeout_ms,
            exchanges,
        } => {
            let opts = ConnectOpts {
                to,
                bind: bind.map(|b| b.0),
                rst,
                timeout: Duration::from_millis(timeout_ms),
                exchanges,
            };
            let mut failed = 0u32;
            // UDP sockets stay open until the run ends: while one holds its ephemeral port the
            // kernel cannot hand that port to a later query, so every query really has a fresh
            // source ip:port and a fresh IPVS entry (a repeated port would find the old entry).
            let mut open_udp = Vec::new();
            for i in 0..count {
                if i > 0 && interval_ms > 0 {
                    thread::sleep(Duration::from_millis(interval_ms));
                }
                let (local, result) = if udp {
                    let (local, result, socket) = connect_udp(&opts);
                    if opts.bind.is_none_or(|b| b.port() == 0) {
                        open_udp.extend(socket);
                    }
                    (local, result)
                } else {
                    connect_tcp(&opts)
                };
                let local = local.map_or_else(|| "-".to_owned(), |a| a.to_string());
                match result {
                    Ok(()) => println!("{local} {to} ok"),
                    Err(err) => {
                        failed += 1;
                        println!("{local} {to} error {err}");
                    }
                }
            }
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!("lab-net: {failed} of {count} connections to {to} failed");
                ExitCode::FAILURE
            }
        }
    }
}

fn serve_tcp(listen: SocketAddr, echo: bool) -> io::Result<()> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // Restarting a server on a port whose old connections sit in TIME_WAIT must not fail.
    socket.set_reuse_address(true)?;
    socket.bind(&listen.into())?;
    // Three clients dialling back to back can outrun the accept loop under TCG: a deep backlog
    // keeps SYNs from being dropped (a drop would show up as a slow retransmit, not an error).
    socket.listen(1024)?;
    let listener: TcpListener = socket.into();
    println!("lab-net: listening on {listen}");
    loop {
        let (stream, _) = listener.accept()?;
        // A thread per connection: connections are short, and a slow or stuck one must not hold
        // up the next client.
        if echo {
            thread::spawn(move || echo_back(stream));
        } else {
            thread::spawn(move || drain(stream));
        }
    }
}

/// Reads a connection until EOF (or error, e.g. the client's RST), then closes it.
fn drain(mut stream: TcpStream) {
    // A client that never closes must not pin a thread forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Writes back what a connection sends until EOF (or error), then closes it.
fn echo_back(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    // Each request is answered at once: no Nagle delay on the small replies.
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn serve_udp(listen: SocketAddr) -> io::Result<()> {
    let socket = UdpSocket::bind(listen)?;
    println!("lab-net: listening on {listen}");
    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = socket.recv_from(&mut buf)?;
        // An echo that cannot be sent (e.g. the peer vanished) is the client's problem to
        // report; the server keeps serving.
        let _ = socket.send_to(&buf[..n], peer);
    }
}

struct ConnectOpts {
    to: SocketAddr,
    bind: Option<SocketAddr>,
    rst: bool,
    timeout: Duration,
    /// Request/response exchanges on each TCP connection (against `serve --echo`).
    exchanges: u32,
}

/// One TCP connection; returns the local address used (when known) and the outcome.
fn connect_tcp(opts: &ConnectOpts) -> (Option<SocketAddr>, io::Result<()>) {
    let socket = match Socket::new(
        Domain::for_address(opts.to),
        Type::STREAM,
        Some(Protocol::TCP),
    ) {
        Ok(s) => s,
        Err(err) => return (opts.bind, Err(err)),
    };
    let outcome = tcp_exchange(&socket, opts);
    // The local address is known after a successful connect; after a failed one the kernel has
    // released the port, so report the bound address instead (exact when `--bind IP:PORT`).
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .filter(|a| a.port() != 0)
        .or(opts.bind);
    (local, outcome)
}

fn tcp_exchange(socket: &Socket, opts: &ConnectOpts) -> io::Result<()> {
    if let Some(bind) = opts.bind {
        socket.set_reuse_address(true)?;
        socket.bind(&bind.into())?;
    }
    socket.connect_timeout(&SockAddr::from(opts.to), opts.timeout)?;
    let mut stream: &Socket = socket;
    if opts.exchanges > 0 {
        socket.set_tcp_nodelay(true)?;
        socket.set_read_timeout(Some(opts.timeout))?;
        let mut reply = [0u8; PAYLOAD.len()];
        for _ in 0..opts.exchanges {
            stream.write_all(PAYLOAD)?;
            stream.read_exact(&mut reply)?;
            if reply != *PAYLOAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "echo differs from what was sent",
                ));
            }
        }
    }
    stream.write_all(PAYLOAD)?;
    if opts.rst {
        // Linger 0: close() sends a RST instead of a FIN, leaving no TIME_WAIT on this side.
        return socket.set_linger(Some(Duration::ZERO));
    }
    // Half-close so the server sees EOF and closes its side; reading to our EOF proves the
    // whole exchange went through IPVS in both directions.
    socket.shutdown(Shutdown::Write)?;
    socket.set_read_timeout(Some(opts.timeout))?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok(())
}

/// One UDP "connection": a datagram from a fresh socket (so a fresh source port and a fresh
/// IPVS entry), and its echo. The socket is handed back so the caller can keep its port taken.
fn connect_udp(opts: &ConnectOpts) -> (Option<SocketAddr>, io::Result<()>, Option<UdpSocket>) {
    let bind = opts.bind.unwrap_or_else(|| match opts.to {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    let socket = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(err) => return (opts.bind, Err(err), None),
    };
    // connect() fixes the local address now and makes the kernel drop datagrams from anyone
    // but the VIP, and deliver an ICMP unreachable as an error.
    let outcome = udp_exchange(&socket, opts);
    let local = socket.local_addr().ok().or(opts.bind);
    (local, outcome, Some(socket))
}

fn udp_exchange(socket: &UdpSocket, opts: &ConnectOpts) -> io::Result<()> {
    socket.connect(opts.to)?;
    socket.set_read_timeout(Some(opts.timeout))?;
    socket.send(PAYLOAD)?;
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf)?;
    if &buf[..n] == PAYLOAD {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "echo differs from what was sent",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addr_takes_ip_or_ip_port() {
        assert_eq!(
            "198.51.100.11".parse::<BindAddr>().unwrap(),
            BindAddr("198.51.100.11:0".parse().unwrap())
        );
        assert_eq!(
            "198.51.100.11:40000".parse::<BindAddr>().unwrap(),
            BindAddr("198.51.100.11:40000".parse().unwrap())
        );
        assert!("nonsense:1".parse::<BindAddr>().is_err());
    }

    /// The real thing over loopback: a TCP server, normal and RST closes, reconnecting from one
    /// fixed source port, a refused connection, and a UDP echo.
    #[test]
    fn serve_and_connect_over_loopback() {
        let tcp = free_port();
        thread::spawn(move || serve_tcp(tcp, false));
        let udp = free_udp_port();
        thread::spawn(move || serve_udp(udp));
        wait_listening(tcp);

        let normal = ConnectOpts {
            to: tcp,
            bind: None,
            rst: false,
            timeout: Duration::from_secs(3),
            exchanges: 0,
        };
        let (local, result) = connect_tcp(&normal);
        result.expect("a normal connection to the loopback server");
        assert_ne!(local.expect("local address known").port(), 0);

        // Same fixed source port twice: only possible because --rst leaves no TIME_WAIT.
        let fixed = free_port();
        let rst = ConnectOpts {
            bind: Some(fixed),
            rst: true,
            ..normal
        };
        for _ in 0..2 {
            let (local, result) = connect_tcp(&rst);
            result.expect("reconnect from the same source port after a RST close");
            assert_eq!(local, Some(fixed));
        }

        let refused = ConnectOpts {
            to: free_port(),
            ..normal
        };
        let (_, result) = connect_tcp(&refused);
        assert_eq!(
            result.expect_err("nobody listens there").kind(),
            io::ErrorKind::ConnectionRefused
        );

        let echo = ConnectOpts { to: udp, ..normal };
        let (local, result, _socket) = connect_udp(&echo);
        result.expect("UDP echo from the loopback server");
        assert_ne!(local.expect("local address known").port(), 0);

        // Many request/response exchanges on one connection, against an echo server; against
        // the draining server the first read times out instead.
        let echo_tcp = free_port();
        thread::spawn(move || serve_tcp(echo_tcp, true));
        wait_listening(echo_tcp);
        let exchanges = ConnectOpts {
            to: echo_tcp,
            exchanges: 200,
            ..normal
        };
        let (_, result) = connect_tcp(&exchanges);
        result.expect("200 exchanges with the echo server");
        let no_echo = ConnectOpts {
            to: tcp,
            exchanges: 1,
            timeout: Duration::from_millis(200),
            ..normal
        };
        assert!(
            connect_tcp(&no_echo).1.is_err(),
            "a server that does not echo"
        );
    }

    fn free_port() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("an ephemeral loopback port")
    }

    fn free_udp_port() -> SocketAddr {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("an ephemeral loopback UDP port")
    }

    fn wait_listening(addr: SocketAddr) {
        for _ in 0..100 {
            if TcpStream::connect(addr).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("server on {addr} never started listening");
    }
}
