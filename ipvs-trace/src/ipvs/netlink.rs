//! The generic netlink side: the "IPVS" message type for netlink-packet-generic, the reply
//! parser (messages, acks, kernel errors, end of dump), and the transports that carry requests
//! and replies: the kernel's socket, optionally recording every reply (`--debug-dump-netlink`),
//! and a replay of such a recording for tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    Emitable, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    ParseableParametrized, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use super::decode::{fixed, DecodeError, Table};
use super::IpvsError;

/// `IPVS_GENL_NAME`.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
const IPVS_GENL_VERSION: u8 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// One message of the "IPVS" family: its command and its attributes, undecoded (the
/// [`super::decode`] functions read them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    pub cmd: u8,
    pub attrs: Vec<u8>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        buffer[..self.attrs.len()].copy_from_slice(&self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(
        buf: &[u8],
        header: GenlHeader,
    ) -> Result<IpvsMessage, netlink_packet_core::DecodeError> {
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs: buf.to_vec(),
        })
    }
}

/// Why a reply did not yield messages.
#[derive(Debug)]
pub enum ReplyError {
    /// The kernel refused the request with this errno.
    Kernel(i32),
    Malformed(DecodeError),
}

/// The messages of one complete reply: a dump's messages up to `NLMSG_DONE`, or a request's
/// answer up to its ack. `seq` is the request's sequence number; a message of another one is
/// malformed (it cannot be ours).
pub fn parse_reply<I>(bytes: &[u8], seq: u32) -> Result<Vec<I>, ReplyError>
where
    I: NetlinkDeserializable,
{
    let mut messages = Vec::new();
    if walk_reply(bytes, seq, &mut |message| messages.push(message))? {
        Ok(messages)
    } else {
        Err(ReplyError::Malformed(DecodeError::new(
            "the reply ended without NLMSG_DONE or an ack (truncated)",
        )))
    }
}

/// Hands the messages of `bytes` (whole netlink messages: a reply, or one datagram of a
/// dump's) to `each`, in order. `Ok(true)` once the reply's end (`NLMSG_DONE`, an ack) is
/// among them, `Ok(false)` when more is to come; the checks are [`parse_reply`]'s.
pub fn walk_reply<I>(bytes: &[u8], seq: u32, each: &mut dyn FnMut(I)) -> Result<bool, ReplyError>
where
    I: NetlinkDeserializable,
{
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = message_len(rest).map_err(ReplyError::Malformed)?;
        let message = NetlinkMessage::<I>::deserialize(&rest[..len])
            .map_err(|e| ReplyError::Malformed(DecodeError::new(e.to_string())))?;
        if message.header.sequence_number != seq {
            return Err(ReplyError::Malformed(DecodeError::new(format!(
                "a message of request {} in the reply to request {seq}",
                message.header.sequence_number
            ))));
        }
        match message.payload {
            NetlinkPayload::InnerMessage(inner) => each(inner),
            NetlinkPayload::Error(error) => {
                return match error.code {
                    // An ack: the end of a request's answer.
                    None => Ok(true),
                    // saturating: a corrupt i32::MIN must not overflow the negation.
                    Some(code) => Err(ReplyError::Kernel(code.get().saturating_neg())),
                };
            }
            NetlinkPayload::Done(done) if done.code < 0 => {
                return Err(ReplyError::Kernel(done.code.saturating_neg()))
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Noop => {}
            NetlinkPayload::Overrun(_) => {
                return Err(ReplyError::Malformed(DecodeError::new(
                    "the kernel reported an overrun",
                )))
            }
            _ => {
                return Err(ReplyError::Malformed(DecodeError::new(format!(
                    "unexpected netlink message of type {}",
                    message.header.message_type
                ))))
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Ok(false)
}

/// The length of the netlink message at the start of `bytes`, checked against them.
fn message_len(bytes: &[u8]) -> Result<usize, DecodeError> {
    let buffer =
        NetlinkBuffer::new_checked(bytes).map_err(|e| DecodeError::new(format!("{e:#}")))?;
    Ok(buffer.length() as usize)
}

/// True once `bytes` (a reply so far) hold its last message (`NLMSG_DONE` or `NLMSG_ERROR`,
/// which is also the ack), or cannot be walked at all: then [`parse_reply`] says why.
fn reply_complete(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok(buffer) = NetlinkBuffer::new_checked(rest) else {
            return true;
        };
        if matches!(buffer.message_type(), NLMSG_DONE | NLMSG_ERROR) {
            return true;
        }
        let len = buffer.length() as usize;
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    false
}

/// Carries one request to the kernel and returns the raw bytes of the complete reply.
pub trait Transport {
    /// `what` names the request in files and messages (`family`, `services`, `dests`...).
    fn round_trip(&mut self, what: &'static str, request: &[u8]) -> Result<Vec<u8>, IpvsError>;

    /// Carries a request whose reply may be too large to hold (a dump of the conntrack
    /// table) and hands the reply to `part` as it comes, in pieces of whole netlink messages,
    /// until `part` answers `true` (it saw the reply's end, or gave up on it). The kernel's
    /// socket hands each datagram as it is read, so a dump never sits in memory whole; this
    /// default hands the complete reply of [`Self::round_trip`] at once (a replay). After a
    /// `part` that gave up early the rest of the reply may still be queued: such a transport
    /// is not for another request.
    fn stream(
        &mut self,
        what: &'static str,
        request: &[u8],
        part: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), IpvsError> {
        let reply = self.round_trip(what, request)?;
        part(&reply);
        Ok(())
    }
}

/// The kernel, through a `NETLINK_GENERIC` socket of this process's network namespace.
pub struct Kernel {
    socket: Socket,
    /// `--debug-dump-netlink DIR`: each reply is also written to `DIR/NN-what.bin`.
    record: Option<(PathBuf, usize)>,
}

impl Kernel {
    pub fn open(record: Option<&Path>) -> Result<Kernel, IpvsError> {
        Kernel::open_protocol(NETLINK_GENERIC, "generic netlink", record)
    }

    /// A socket of another netlink protocol (`name` for messages), e.g. NETLINK_NETFILTER for
    /// [`crate::conntrack`]: the framing, the reply loop and the recording are the same.
    pub fn open_protocol(
        protocol: isize,
        name: &str,
        record: Option<&Path>,
    ) -> Result<Kernel, IpvsError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| IpvsError::Io { what, source }
        };
        let mut socket = Socket::new(protocol).map_err(io(&format!("opening a {name} socket")))?;
        socket
            .bind_auto()
            .map_err(io(&format!("binding the {name} socket")))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(io(&format!("connecting the {name} socket to the kernel")))?;
        if let Some(dir) = record {
            fs::create_dir_all(dir).map_err(io(&format!("creating {}", dir.display())))?;
        }
        Ok(Kernel {
            socket,
            record: record.map(|dir| (dir.to_owned(), 0)),
        })
    }

    fn receive(&self) -> io::Result<Vec<u8>> {
        // Peek at the datagram's size first: a dump's datagram can be larger than any fixed
        // buffer (the kernel sizes it after the reader's buffer, up to 32 KiB and more).
        let mut probe: Vec<u8> = Vec::new();
        let size = self
            .socket
            .recv(&mut probe, libc::MSG_PEEK | libc::MSG_TRUNC)?;
        let mut datagram = Vec::with_capacity(size.max(1));
        // MSG_TRUNC: the datagram's real length, so a truncated read cannot pass unnoticed.
        let len = self.socket.recv(&mut datagram, libc::MSG_TRUNC)?;
        if len > datagram.len() {
            return Err(io::Error::other(format!(
                "a netlink datagram of {len} bytes did not fit the {size} peeked"
            )));
        }
        Ok(datagram)
    }
}

impl Transport for Kernel {
    /// The reply gathered from [`Self::stream`] until its last message.
    fn round_trip(&mut self, what: &'static str, request: &[u8]) -> Result<Vec<u8>, IpvsError> {
        let mut reply = Vec::new();
        self.stream(what, request, &mut |datagram| {
            reply.extend_from_slice(datagram);
            reply_complete(&reply)
        })?;
        Ok(reply)
    }

    fn stream(
        &mut self,
        what: &'static str,
        request: &[u8],
        part: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), IpvsError> {
        let io = |action: &str| {
            let what = format!("{action} ({what})");
            move |source| IpvsError::Io { what, source }
        };
        // The recording is written as the datagrams come (`NN-what.bin`, what Replay reads).
        let mut record = match &mut self.record {
            Some((dir, n)) => {
                let path = dir.join(format!("{n:02}-{what}.bin"));
                *n += 1;
                let file =
                    fs::File::create(&path).map_err(io(&format!("creating {}", path.display())))?;
                Some((path, file))
            }
            None => None,
        };
        self.socket
            .send(request, 0)
            .map_err(io("sending a netlink request"))?;
        loop {
            let datagram = self.receive().map_err(io("reading the netlink reply"))?;
            if let Some((path, file)) = &mut record {
                io::Write::write_all(file, &datagram)
                    .map_err(io(&format!("writing {}", path.display())))?;
            }
            if part(&datagram) {
                return Ok(());
            }
        }
    }
}

/// A recording made with `--debug-dump-netlink`, replayed in order (tests).
pub struct Replay {
    files: std::vec::IntoIter<PathBuf>,
}

impl Replay {
    pub fn open(dir: &Path) -> io::Result<Replay> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        files.retain(|p| p.extension().is_some_and(|e| e == "bin"));
        files.sort();
        Ok(Replay {
            files: files.into_iter(),
        })
    }
}

impl Transport for Replay {
    fn round_trip(&mut self, what: &'static str, _request: &[u8]) -> Result<Vec<u8>, IpvsError> {
        let io = |what: String| move |source| IpvsError::Io { what, source };
        let path = self.files.next().ok_or_else(|| IpvsError::Io {
            what: format!("replaying {what}"),
            source: io::Error::other("the recording has no more replies"),
        })?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.ends_with(&format!("-{what}.bin")) {
            return Err(IpvsError::Io {
                what: format!("replaying {what}"),
                source: io::Error::other(format!("the next recorded reply is {name}")),
            });
        }
        fs::read(&path).map_err(io(format!("reading {}", path.display())))
    }
}

/// Builds request `seq`: a message of `family_id` with `flags` on top of `NLM_F_REQUEST`.
#[must_use]
pub fn request<F>(payload: F, family_id: Option<u16>, seq: u32, flags: u16) -> Vec<u8>
where
    F: GenlFamily + Emitable + std::fmt::Debug,
{
    let mut genl = GenlMessage::from_payload(payload);
    if let Some(id) = family_id {
        genl.set_resolved_family_id(id);
    }
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// `CTRL_CMD_GETFAMILY "IPVS"`, with an ack.
#[must_use]
pub fn family_request(seq: u32) -> Vec<u8> {
    request(
        GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_owned())],
        },
        None,
        seq,
        NLM_F_ACK,
    )
}

/// `CTRL_CMD_NEWFAMILY`: the command of the controller's answer.
const CTRL_CMD_NEWFAMILY: u8 = 1;
/// `CTRL_ATTR_FAMILY_ID` (u16).
const CTRL_ATTR_FAMILY_ID: u16 = 1;

/// The family id in the reply to [`family_request`].
///
/// The reply's messages are taken as raw generic netlink messages (an [`IpvsMessage`] is just
/// a command and its attributes) and only `CTRL_ATTR_FAMILY_ID` is read, by the checked
/// attribute walker of [`super::decode`]: netlink-packet-generic's `GenlCtrl` parser decodes
/// every attribute, policies and operations included, and panics on a nested attribute cut
/// shorter than its header (found by the `ipvs_netlink` fuzz target).
pub fn family_id(reply: &[u8], seq: u32) -> Result<u16, ReplyError> {
    let messages: Vec<GenlMessage<IpvsMessage>> = parse_reply(reply, seq)?;
    for message in &messages {
        let message = &message.payload;
        if message.cmd != CTRL_CMD_NEWFAMILY {
            return Err(ReplyError::Malformed(DecodeError::new(format!(
                "the controller answered with command {}, expected {CTRL_CMD_NEWFAMILY} \
                 (CTRL_CMD_NEWFAMILY)",
                message.cmd
            ))));
        }
        let attrs = Table::parse(
            &message.attrs,
            CTRL_ATTR_FAMILY_ID,
            "the controller's reply",
        )
        .map_err(ReplyError::Malformed)?;
        if let Some(id) = attrs.get(CTRL_ATTR_FAMILY_ID) {
            return fixed::<2>(id, "the controller's reply", "FAMILY_ID")
                .map(u16::from_ne_bytes)
                .map_err(ReplyError::Malformed);
        }
    }
    Err(ReplyError::Malformed(DecodeError::new(
        "the controller's reply has no family id",
    )))
}

/// An IPVS request: a dump (`NLM_F_DUMP`) or a single answer with an ack.
#[must_use]
pub fn ipvs_request(family_id: u16, seq: u32, cmd: u8, attrs: Vec<u8>, dump: bool) -> Vec<u8> {
    request(
        IpvsMessage { cmd, attrs },
        Some(family_id),
        seq,
        if dump { NLM_F_DUMP } else { NLM_F_ACK },
    )
}

/// The IPVS messages of a reply.
pub fn ipvs_reply(reply: &[u8], seq: u32) -> Result<Vec<IpvsMessage>, ReplyError> {
    let messages: Vec<GenlMessage<IpvsMessage>> = parse_reply(reply, seq)?;
    Ok(messages.into_iter().map(|m| m.payload).collect())
}
