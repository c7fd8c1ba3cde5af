//! An nf_tables reader: the tables, chains, rules, sets and set elements of chosen tables,
//! read over netlink as `nft list table` reads them, without nft or libnftnl.
//!
//! [`read`] asks for the ruleset's generation (`NFT_MSG_GETGEN`), dumps the tables
//! (`NFT_MSG_GETTABLE`) and, of each table it wants, the chains, rules and sets, and the
//! elements of the sets it wants (`NFT_MSG_GETCHAIN`, `GETRULE`, `GETSET`, `GETSETELEM`), then
//! asks for the generation again: a dump made of several requests is one state of the ruleset
//! only if no transaction committed in between, so a changed generation reads it all again,
//! as nft's own cache does. [`netlink`] carries the messages, [`decode`] reads them.
//!
//! Why not a crate: rustables (GPL-3.0) cannot be linked into this binary (deny.toml), nftnl
//! and mnl bind the C libraries libnftnl and libmnl, netlink-packet-netfilter has no nf_tables
//! messages, and the `nftables` crate runs the nft binary for JSON. The expressions kube-proxy
//! programs are a handful; the checked walker of the IPVS decoder reads them.
//!
//! nf_tables is per network namespace; the tables read are the caller's namespace's.

pub mod decode;
pub mod netlink;

use std::io;

pub use decode::{Chain, CmpOp, Data, Element, Expr, Rule, Set, TableId, Verdict};

use crate::ipvs::netlink::{parse_reply, ReplyError, Transport};
use crate::ipvs::{DecodeError, IpvsError};
use netlink::{Dump, NftMessage};

/// `NFPROTO_IPV4`: the family of `table ip ...`.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`: the family of `table ip6 ...`.
pub const NFPROTO_IPV6: u8 = 10;

/// How often a read starts again when the ruleset changed while it was read.
const ATTEMPTS: usize = 4;

/// Why the tables could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// This kernel (or network namespace) has no nf_tables: nothing to read, not an error for
    /// a caller that looks for rules.
    #[error("this kernel has no nf_tables (the kernel refused the nf_tables request: {0})")]
    NotAvailable(io::Error),
    #[error(
        "permission denied (the kernel refused {what} with EPERM): reading nf_tables needs \
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
    #[error("malformed nf_tables reply to {what}: {source}")]
    Malformed {
        what: &'static str,
        source: DecodeError,
    },
    #[error(
        "the nf_tables ruleset changed while it was read, {ATTEMPTS} times in a row; try again"
    )]
    KeptChanging,
}

impl From<IpvsError> for NftError {
    /// The transport fails with I/O errors only; a socket the kernel refuses for want of the
    /// protocol means nfnetlink is not there.
    fn from(error: IpvsError) -> NftError {
        match error {
            IpvsError::Io { source, .. }
                if source.raw_os_error() == Some(libc::EPROTONOSUPPORT) =>
            {
                NftError::NotAvailable(source)
            }
            IpvsError::Io { what, source } => NftError::Io { what, source },
            other => NftError::Io {
                what: "talking to nf_tables".to_owned(),
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

/// One table as read: its chains, its rules (in each chain's order) and its sets, with the
/// elements of those the caller asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct TableDump {
    pub id: TableId,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
    pub sets: Vec<(Set, Option<Vec<Element>>)>,
}

impl TableDump {
    /// The rules of `chain`, in order.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }

    /// The set named `name`, with its elements if they were read.
    #[must_use]
    pub fn set(&self, name: &str) -> Option<&(Set, Option<Vec<Element>>)> {
        self.sets.iter().find(|(s, _)| s.name == name)
    }

    #[must_use]
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|c| c.name == name)
    }
}

/// What [`read`] reads: the tables it wants, and of their sets those whose elements it
/// wants.
pub trait Selection {
    fn table(&self, id: &TableId) -> bool;
    fn elements(&self, table: &TableId, set: &Set) -> bool;
    /// Whether the rules and sets of the wanted tables are read, or only their chains (which
    /// tables and chains exist is all some callers ask).
    fn rules(&self) -> bool {
        true
    }
}

/// What the ruleset holds of the wanted tables: every table's id (`tables`, for who asks which
/// exist), and the wanted ones read (`read`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ruleset {
    pub tables: Vec<TableId>,
    pub read: Vec<TableDump>,
}

/// Reads the tables `selection` wants through `transport`, as one state of the ruleset.
pub fn read(
    transport: &mut impl Transport,
    selection: &impl Selection,
) -> Result<Ruleset, NftError> {
    let mut seq = 0;
    for _ in 0..ATTEMPTS {
        let before = generation(transport, &mut seq)?;
        let ruleset = match read_once(transport, selection, &mut seq) {
            // A set deleted after its table was listed: the generation moved too.
            Err(NftError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                continue
            }
            other => other?,
        };
        if generation(transport, &mut seq)? == before {
            return Ok(ruleset);
        }
    }
    Err(NftError::KeptChanging)
}

fn next(seq: &mut u32) -> u32 {
    *seq += 1;
    *seq
}

fn generation(transport: &mut impl Transport, seq: &mut u32) -> Result<u32, NftError> {
    let what = "NFT_MSG_GETGEN";
    let s = next(seq);
    let reply = transport.round_trip("gen", &netlink::gen_request(s))?;
    let messages = match parse_reply::<NftMessage>(&reply, s) {
        // nfnetlink answers a subsystem nobody registered with EINVAL (after trying to load
        // its module), or EOPNOTSUPP on some kernels.
        Err(ReplyError::Kernel(errno @ (libc::EINVAL | libc::EOPNOTSUPP))) => {
            return Err(NftError::NotAvailable(io::Error::from_raw_os_error(errno)))
        }
        other => other.map_err(|e| reply_error(what, e))?,
    };
    let [message] = &messages[..] else {
        return Err(malformed(
            what,
            format!("{} messages, expected 1", messages.len()),
        ));
    };
    check_kind(what, message, netlink::NFT_MSG_NEWGEN)?;
    decode::generation(&message.attrs).map_err(|source| NftError::Malformed { what, source })
}

fn read_once(
    transport: &mut impl Transport,
    selection: &impl Selection,
    seq: &mut u32,
) -> Result<Ruleset, NftError> {
    let what = "NFT_MSG_GETTABLE";
    let s = next(seq);
    let reply = transport.round_trip("tables", &netlink::tables_request(s))?;
    let tables = dump(what, &reply, s, netlink::NFT_MSG_NEWTABLE, |m| {
        decode::table(m.family, &m.attrs)
    })?;
    let mut read = Vec::new();
    for id in tables.iter().filter(|id| selection.table(id)) {
        let what = "NFT_MSG_GETCHAIN";
        let s = next(seq);
        let request = netlink::dump_request(s, Dump::Chains, id.family, &id.name);
        let reply = transport.round_trip("chains", &request)?;
        let mut chains = dump(what, &reply, s, netlink::NFT_MSG_NEWCHAIN, |m| {
            decode::chain(&m.attrs)
        })?;
        // Kernels before 6.x dump every chain of the family whatever the filter says.
        chains.retain(|c| c.table == id.name);
        if !selection.rules() {
            read.push(TableDump {
                id: id.clone(),
                chains,
                rules: Vec::new(),
                sets: Vec::new(),
            });
            continue;
        }

        let what = "NFT_MSG_GETRULE";
        let s = next(seq);
        let request = netlink::dump_request(s, Dump::Rules, id.family, &id.name);
        let reply = transport.round_trip("rules", &request)?;
        let mut rules = dump(what, &reply, s, netlink::NFT_MSG_NEWRULE, |m| {
            decode::rule(&m.attrs)
        })?;
        rules.retain(|r| r.table == id.name);

        let what = "NFT_MSG_GETSET";
        let s = next(seq);
        let request = netlink::dump_request(s, Dump::Sets, id.family, &id.name);
        let reply = transport.round_trip("sets", &request)?;
        let mut sets = dump(what, &reply, s, netlink::NFT_MSG_NEWSET, |m| {
            decode::set(&m.attrs)
        })?;
        sets.retain(|set| set.table == id.name);

        let mut with_elements = Vec::with_capacity(sets.len());
        for set in sets {
            let elements = if selection.elements(id, &set) {
                let what = "NFT_MSG_GETSETELEM";
                let s = next(seq);
                let request = netlink::elements_request(s, id.family, &id.name, &set.name);
                let reply = transport.round_trip("elements", &request)?;
                let lists = dump(what, &reply, s, netlink::NFT_MSG_NEWSETELEM, |m| {
                    decode::elements(&m.attrs, &id.name, &set.name)
                })?;
                Some(lists.into_iter().flatten().collect())
            } else {
                None
            };
            with_elements.push((set, elements));
        }
        read.push(TableDump {
            id: id.clone(),
            chains,
            rules,
            sets: with_elements,
        });
    }
    Ok(Ruleset { tables, read })
}

/// The objects of a dump reply, each message checked to be of `kind` and decoded by `one`.
fn dump<T>(
    what: &'static str,
    reply: &[u8],
    seq: u32,
    kind: u8,
    one: impl Fn(&NftMessage) -> Result<T, DecodeError>,
) -> Result<Vec<T>, NftError> {
    let messages = parse_reply::<NftMessage>(reply, seq).map_err(|e| reply_error(what, e))?;
    messages
        .iter()
        .map(|m| {
            check_kind(what, m, kind)?;
            one(m).map_err(|source| NftError::Malformed { what, source })
        })
        .collect()
}

fn check_kind(what: &'static str, message: &NftMessage, kind: u8) -> Result<(), NftError> {
    if message.kind == kind {
        Ok(())
    } else {
        Err(malformed(
            what,
            format!(
                "a message of type {} in the reply, expected {kind}",
                message.kind
            ),
        ))
    }
}

fn malformed(what: &'static str, detail: String) -> NftError {
    NftError::Malformed {
        what,
        source: DecodeError::new(detail),
    }
}

fn reply_error(what: &'static str, error: ReplyError) -> NftError {
    match error {
        ReplyError::Kernel(libc::EPERM) => NftError::PermissionDenied { what },
        ReplyError::Kernel(errno) => NftError::Kernel {
            what,
            source: io::Error::from_raw_os_error(errno),
        },
        ReplyError::Malformed(source) => NftError::Malformed { what, source },
    }
}
