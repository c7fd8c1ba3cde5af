//! The kernel's conntrack table, one entry at a time, over ctnetlink (`NETLINK_NETFILTER`):
//! what `conntrack -G` does, without the conntrack tool.
//!
//! `trace --nat` uses it to show what a pod sees of an IPVS Masq connection: with
//! `net.ipv4.vs.conntrack=1` (kube-proxy sets it) IPVS keeps the connection's netfilter entry
//! and rewrites its reply tuple to pod:port -> client, so the entry found by the original tuple
//! (client -> VIP:vport) holds both sides, including any SNAT kube-proxy's iptables rules add.
//!
//! `who` without a serve reads the whole table with [`Client::dump`] (`conntrack -L`), one
//! datagram at a time, keeping only what its question wants.
//!
//! [`Client::get`] asks for one entry by original tuple (`IPCTNL_MSG_CT_GET`); [`decode`]
//! encodes the request and reads the reply, [`model`] is the typed result, [`worker`] runs the
//! lookups on a thread of their own so that the event loop never waits for the kernel, and
//! [`nat`] turns events and entries into what `--nat` prints, in event order. The socket,
//! framing and reply loop are [`crate::ipvs::netlink`]'s, with another protocol.
//!
//! Like IPVS, conntrack is per network namespace: the table read is the caller's namespace's.

pub mod decode;
pub mod model;
pub mod nat;
pub mod worker;

use std::io;
use std::path::Path;

pub use model::{Entry, Status, Tuple};

use crate::ipvs::netlink::{self as nl, ReplyError, Transport};
use crate::ipvs::{DecodeError, IpvsError};
use decode::CtMessage;

/// Why a lookup failed. A missing entry is not an error: [`Client::get`] answers `None`.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error(
        "conntrack over netlink is not available: load nf_conntrack_netlink \
         (`modprobe nf_conntrack_netlink`; kube-proxy's nodes usually have it)"
    )]
    NotLoaded,
    #[error(
        "permission denied (the kernel refused a conntrack request with EPERM): reading \
         conntrack needs CAP_NET_ADMIN over this network namespace; run as root, or grant the \
         capability (`setcap cap_net_admin+ep ipvs-trace`)"
    )]
    PermissionDenied,
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("the kernel refused a conntrack request: {0}")]
    Kernel(io::Error),
    #[error("malformed ctnetlink reply: {0}")]
    Malformed(DecodeError),
}

impl From<IpvsError> for ConntrackError {
    /// The transport only fails with I/O errors; a socket the kernel refuses for want of the
    /// protocol means nfnetlink is not there.
    fn from(error: IpvsError) -> ConntrackError {
        match error {
            IpvsError::Io { source, .. }
                if source.raw_os_error() == Some(libc::EPROTONOSUPPORT) =>
            {
                ConntrackError::NotLoaded
            }
            IpvsError::Io { what, source } => ConntrackError::Io { what, source },
            other => ConntrackError::Io {
                what: "talking to ctnetlink".to_owned(),
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

/// Lookups through one transport (the kernel, or a replayed recording in tests). Requests are
/// numbered from 1, one per call, so that the n-th recorded reply (`NN-get.bin`, from 00)
/// answers request n + 1.
pub struct Client<T: Transport> {
    transport: T,
    seq: u32,
}

impl Client<nl::Kernel> {
    /// A ctnetlink socket in this process's network namespace; with `record`, every reply is
    /// also written there (`trace --nat --debug-dump-netlink DIR`).
    pub fn open(record: Option<&Path>) -> Result<Self, ConntrackError> {
        let kernel = nl::Kernel::open_protocol(
            netlink_sys::protocols::NETLINK_NETFILTER,
            "netfilter netlink",
            record,
        )?;
        Ok(Client::new(kernel))
    }
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T) -> Client<T> {
        Client { transport, seq: 0 }
    }

    /// The entry whose original tuple is `key`, or `None` when the table has none.
    pub fn get(&mut self, key: &Tuple) -> Result<Option<Entry>, ConntrackError> {
        self.seq += 1;
        let seq = self.seq;
        let Some(request) = decode::get_request(seq, key) else {
            // Mixed families: no such entry can exist.
            return Ok(None);
        };
        let reply = self.transport.round_trip("get", &request)?;
        get_reply(&reply, seq)
    }

    /// Every entry of the table, handed to `each` as the kernel sends them: a dump is read a
    /// datagram at a time and never held whole (a node's table can hold a million entries).
    /// An entry that cannot be decoded is counted and skipped; a reply that cannot be walked
    /// at all, or a refusal, ends the dump with the error.
    pub fn dump(&mut self, each: &mut dyn FnMut(Entry)) -> Result<DumpStats, ConntrackError> {
        self.seq += 1;
        let mut reader = DumpReader {
            seq: self.seq,
            stats: DumpStats::default(),
            end: None,
        };
        let request = decode::dump_request(self.seq);
        self.transport
            .stream("dump", &request, &mut |part| reader.feed(part, each))?;
        reader.finish()
    }

    /// Whether lookups work at all: one for a tuple no connection has (port 0 to port 0 on
    /// loopback), which the kernel answers with ENOENT when everything is in place, and with
    /// the error to report otherwise.
    pub fn probe(&mut self) -> Result<(), ConntrackError> {
        let nowhere = Tuple {
            proto: crate::events::Proto::Tcp,
            src: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
            dst: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        };
        self.get(&nowhere).map(|_| ())
    }
}

/// What a dump read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Entries decoded and handed on.
    pub entries: u64,
    /// Messages that were not entries this decoder can read, skipped.
    pub malformed: u64,
    /// Why the first of them was skipped.
    pub first_error: Option<String>,
}

/// A dump's reply, read as it comes.
struct DumpReader {
    seq: u32,
    stats: DumpStats,
    /// Set once the reply ended: with `NLMSG_DONE`, or with the error that ended it.
    end: Option<Result<(), ConntrackError>>,
}

impl DumpReader {
    /// Reads one piece of the reply; `true` once it ended.
    fn feed(&mut self, part: &[u8], each: &mut dyn FnMut(Entry)) -> bool {
        if self.end.is_some() {
            return true;
        }
        let stats = &mut self.stats;
        let walked = nl::walk_reply::<CtMessage>(
            part,
            self.seq,
            &mut |message| match decode::entry(&message) {
                Ok(entry) => {
                    stats.entries += 1;
                    each(entry);
                }
                Err(error) => {
                    stats.malformed += 1;
                    stats.first_error.get_or_insert_with(|| error.to_string());
                }
            },
        );
        match walked {
            Ok(false) => false,
            Ok(true) => {
                self.end = Some(Ok(()));
                true
            }
            Err(error) => {
                self.end = Some(Err(refused(error)));
                true
            }
        }
    }

    fn finish(self) -> Result<DumpStats, ConntrackError> {
        match self.end {
            Some(Ok(())) => Ok(self.stats),
            Some(Err(error)) => Err(error),
            None => Err(ConntrackError::Malformed(DecodeError::new(
                "the dump ended without NLMSG_DONE (truncated)",
            ))),
        }
    }
}

/// What a reply that yields no messages means.
fn refused(error: ReplyError) -> ConntrackError {
    match error {
        ReplyError::Kernel(libc::EPERM) => ConntrackError::PermissionDenied,
        // nfnetlink answers EOPNOTSUPP for a subsystem nobody registered (after trying to
        // load its module).
        ReplyError::Kernel(libc::EOPNOTSUPP) => ConntrackError::NotLoaded,
        ReplyError::Kernel(errno) => ConntrackError::Kernel(io::Error::from_raw_os_error(errno)),
        ReplyError::Malformed(error) => ConntrackError::Malformed(error),
    }
}

/// The answer to request `seq`: its entry, `None` for ENOENT, or why not.
pub fn get_reply(reply: &[u8], seq: u32) -> Result<Option<Entry>, ConntrackError> {
    match nl::parse_reply::<CtMessage>(reply, seq) {
        Ok(messages) => match &messages[..] {
            [message] => decode::entry(message)
                .map(Some)
                .map_err(ConntrackError::Malformed),
            _ => Err(ConntrackError::Malformed(DecodeError::new(format!(
                "{} entries in the reply to one lookup, expected 1",
                messages.len()
            )))),
        },
        Err(ReplyError::Kernel(libc::ENOENT)) => Ok(None),
        Err(error) => Err(refused(error)),
    }
}

#[cfg(test)]
mod tests;
