//! The kernel's IPVS tables (virtual services and their real servers, with counters), read
//! over generic netlink as `ipvsadm -Ln` reads them, without ipvsadm.
//!
//! [`read_tables`] resolves the "IPVS" family (`CTRL_CMD_GETFAMILY`), asks for the version
//! (`IPVS_CMD_GET_INFO`), dumps the services (`IPVS_CMD_GET_SERVICE`) and, per service, its
//! real servers (`IPVS_CMD_GET_DEST`). [`netlink`] carries the messages (rust-netlink's socket
//! and framing crates), [`decode`] reads the IPVS attributes, [`model`] is the typed result.
//!
//! **Which tables**: IPVS keeps one set of tables per network namespace, and netlink answers
//! with those of the namespace the *calling process* is in. kube-proxy programs the node's
//! (host) namespace; a tool run inside a pod's namespace sees that namespace's tables, usually
//! empty. Run in the host namespace (e.g. `nsenter -t 1 -n ipvs-trace rules`).
//!
//! Blocking: a few round trips on a local socket. Async callers use `spawn_blocking`.

pub mod conn_table;
pub mod decode;
pub mod live;
pub mod lookup;
pub mod model;
pub mod netlink;

use std::io;
use std::path::Path;

pub use decode::DecodeError;
pub use model::{Dest, Family, Info, Netmask, Service, ServiceFlags, Stats, Tables};

use crate::events::Proto;
use netlink::{ReplyError, Transport};

/// Why the tables could not be read. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error(
        "ip_vs is not loaded: this kernel has no \"IPVS\" generic netlink family; \
         run `modprobe ip_vs` (kube-proxy in IPVS mode loads it)"
    )]
    NotLoaded,
    #[error(
        "permission denied (the kernel refused {what} with EPERM): reading IPVS needs \
         CAP_NET_ADMIN over this network namespace; run as root, or grant the capability \
         (`setcap cap_net_admin+ep ipvs-trace`)"
    )]
    PermissionDenied { what: &'static str },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("the kernel refused {what}: {source}")]
    Kernel {
        what: &'static str,
        source: io::Error,
    },
    #[error("malformed netlink reply to {what}: {source}")]
    Malformed {
        what: &'static str,
        source: DecodeError,
    },
}

/// Reads the IPVS tables of this process's network namespace.
pub fn read_tables() -> Result<Tables, IpvsError> {
    read_with(&mut netlink::Kernel::open(None)?)
}

/// [`read_tables`], also writing every raw reply to `dir` (`--debug-dump-netlink`): the
/// material of the decoder's tests.
pub fn read_tables_recording(dir: &Path) -> Result<Tables, IpvsError> {
    read_with(&mut netlink::Kernel::open(Some(dir))?)
}

/// Reads the tables through `transport` (the kernel, or a replayed recording).
pub fn read_with(transport: &mut impl Transport) -> Result<Tables, IpvsError> {
    let mut seq = 0;
    let mut next_seq = || {
        seq += 1;
        seq
    };

    let s = next_seq();
    let reply = transport.round_trip("family", &netlink::family_request(s))?;
    let family = match netlink::family_id(&reply, s) {
        // The controller answers ENOENT for a family nobody registered.
        Err(ReplyError::Kernel(libc::ENOENT)) => return Err(IpvsError::NotLoaded),
        other => other.map_err(|e| reply_error("the IPVS family lookup", e))?,
    };

    let s = next_seq();
    let what = "IPVS_CMD_GET_INFO";
    let reply = transport.round_trip(
        "info",
        &netlink::ipvs_request(family, s, decode::IPVS_CMD_GET_INFO, Vec::new(), false),
    )?;
    let messages = netlink::ipvs_reply(&reply, s).map_err(|e| reply_error(what, e))?;
    let [message] = &messages[..] else {
        return Err(malformed(
            what,
            format!("{} messages, expected 1", messages.len()),
        ));
    };
    let info = decode::info(message.cmd, &message.attrs)
        .map_err(|source| IpvsError::Malformed { what, source })?;

    let s = next_seq();
    let what = "IPVS_CMD_GET_SERVICE";
    let reply = transport.round_trip(
        "services",
        &netlink::ipvs_request(family, s, decode::IPVS_CMD_GET_SERVICE, Vec::new(), true),
    )?;
    let mut services = netlink::ipvs_reply(&reply, s)
        .map_err(|e| reply_error(what, e))?
        .iter()
        .map(|m| decode::service(m.cmd, &m.attrs))
        .collect::<Result<Vec<Service>, _>>()
        .map_err(|source| IpvsError::Malformed { what, source })?;

    let what = "IPVS_CMD_GET_DEST";
    for service in &mut services {
        let s = next_seq();
        let request = netlink::ipvs_request(
            family,
            s,
            decode::IPVS_CMD_GET_DEST,
            decode::dest_request(service),
            true,
        );
        let reply = transport.round_trip("dests", &request)?;
        // A service deleted between the two dumps has no real servers left to list; the
        // kernel answers an empty dump, which is what it is now.
        service.dests = netlink::ipvs_reply(&reply, s)
            .map_err(|e| reply_error(what, e))?
            .iter()
            .map(|m| decode::dest(m.cmd, &m.attrs, service.family))
            .collect::<Result<_, _>>()
            .map_err(|source| IpvsError::Malformed { what, source })?;
        service.dests.sort_by_key(|d| d.addr);
    }
    // The kernel dumps in hash-table order, which changes with every service added: a stable
    // order (IPv4 before IPv6, then protocol, address and port, firewall marks last) makes
    // two reads comparable.
    services.sort_by_key(|s| {
        (
            s.fwmark.is_some(),
            s.family,
            s.proto.map(Proto::number),
            s.addr,
            s.fwmark,
        )
    });
    Ok(Tables { info, services })
}

fn malformed(what: &'static str, detail: String) -> IpvsError {
    IpvsError::Malformed {
        what,
        source: DecodeError::new(detail),
    }
}

fn reply_error(what: &'static str, error: ReplyError) -> IpvsError {
    match error {
        ReplyError::Kernel(libc::EPERM) => IpvsError::PermissionDenied { what },
        ReplyError::Kernel(errno) => IpvsError::Kernel {
            what,
            source: io::Error::from_raw_os_error(errno),
        },
        ReplyError::Malformed(source) => IpvsError::Malformed { what, source },
    }
}

#[cfg(test)]
mod tests;
