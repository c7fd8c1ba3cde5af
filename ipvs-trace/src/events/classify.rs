//! Which of kube-proxy's netfilter modes made a netfilter decision.
//!
//! The kernel cannot say: nftables mode's `dnat` and iptables mode's `DNAT` target (iptables-nft
//! runs in nf_tables too) both bind through `nf_nat_setup_info`. The rules can: a destination
//! kube-proxy programmed in its `service-ips`/`service-nodeports` maps is nftables mode's, one
//! in the `KUBE-SERVICES` chain iptables mode's ([`NetfilterRules::dataplane_of`]).
//!
//! The rules are read by a thread of their own, the first time a netfilter decision is seen
//! (an IPVS-only node never starts it), then every [`REFRESH`] and whenever a decision's
//! destination is not found (at most every [`MIN_GAP`]): a Service created a moment ago is in
//! the next read. Reading never blocks the event path, which classifies with the last read; a
//! destination not found there takes the node's own mode (see [`Classifier::classify`]).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::model::{Dataplane, Event, Proto};
use crate::netfilter::NetfilterRules;

/// How often the rules are read again while netfilter decisions come in.
pub const REFRESH: Duration = Duration::from_secs(2);
/// The shortest gap between two reads, whatever asks for them.
pub const MIN_GAP: Duration = Duration::from_millis(200);

/// One read of the rules and of this node's addresses: the classifier's last, or one of its
/// own for a caller that classifies a table once (`who` without serve).
#[derive(Default)]
pub struct Snapshot {
    rules: Option<NetfilterRules>,
    local: HashSet<IpAddr>,
    /// Why the rules could not be read, if they could not.
    failed: Option<String>,
}

impl Snapshot {
    /// The rules and the node's addresses now.
    #[must_use]
    pub fn read() -> Snapshot {
        let (rules, failed) = match NetfilterRules::read() {
            Ok(rules) => (Some(rules), None),
            Err(err) => (None, Some(format!("{err:#}"))),
        };
        Snapshot {
            rules,
            local: local_addresses(),
            failed,
        }
    }

    /// Why the rules could not be read, if they could not.
    #[must_use]
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The netfilter mode of a DNAT of `proto` to `vip`, and whether kube-proxy's rules
    /// program that destination (`false`: the node's mode was taken, see
    /// [`Classifier::classify`]).
    #[must_use]
    pub fn dataplane_of(&self, proto: Proto, vip: SocketAddr) -> (Dataplane, bool) {
        let proto = u8::try_from(proto.number()).unwrap_or(0);
        let local = self.local.contains(&vip.ip());
        let found = self
            .rules
            .as_ref()
            .and_then(|rules| rules.dataplane_of(proto, vip, local));
        if let Some(dataplane) = found {
            return (dataplane, true);
        }
        let modes = self
            .rules
            .as_ref()
            .map(NetfilterRules::modes)
            .unwrap_or_default();
        let dataplane = if let [only] = modes.as_slice() {
            *only
        } else {
            Dataplane::Nftables
        };
        (dataplane, false)
    }
}

/// Tells the netfilter mode of each netfilter decision, and keeps the dataplanes asked for.
pub struct Classifier {
    /// `--dataplane`; empty: every one.
    asked: Vec<Dataplane>,
    /// Started by the first netfilter decision.
    reader: Option<RulesReader>,
    /// Decisions left out because their mode was not asked for.
    filtered: u64,
}

struct RulesReader {
    snapshot: Arc<Mutex<Snapshot>>,
    /// Asks for a read now; dropped with the classifier, which ends the thread.
    wake: mpsc::SyncSender<()>,
}

impl Classifier {
    #[must_use]
    pub fn new(asked: &[Dataplane]) -> Classifier {
        Classifier {
            asked: asked.to_vec(),
            reader: None,
            filtered: 0,
        }
    }

    /// Decisions left out so far because their dataplane was not asked for.
    #[must_use]
    pub fn filtered(&self) -> u64 {
        self.filtered
    }

    /// Sets a netfilter event's mode; `false` when its dataplane was not asked for (counted).
    ///
    /// A destination no kube-proxy rule programs (a DNAT of a CNI's hostPort or of Docker,
    /// or a Service whose rules are newer than the last read) takes the mode kube-proxy runs
    /// on this node: the one mode present, nftables when both or neither are.
    pub fn classify(&mut self, event: &mut Event) -> bool {
        if event.dataplane.is_netfilter() {
            let reader = self.reader.get_or_insert_with(RulesReader::start);
            let (dataplane, found) = reader
                .snapshot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .dataplane_of(event.proto, event.vip);
            if !found {
                // A full channel means a read is asked for already.
                let _ = reader.wake.try_send(());
            }
            event.dataplane = dataplane;
        }
        let wanted = self.asked.is_empty() || self.asked.contains(&event.dataplane);
        if !wanted {
            self.filtered += 1;
        }
        wanted
    }
}

impl RulesReader {
    fn start() -> RulesReader {
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let (wake, woken) = mpsc::sync_channel(1);
        // The first read before the first decision is classified: it is the one a node's
        // steady state needs, and it takes milliseconds.
        store(&snapshot, Snapshot::read());
        let shared = Arc::clone(&snapshot);
        let spawned = thread::Builder::new()
            .name("netfilter-rules".into())
            .spawn(move || refresh_loop(&shared, &woken));
        if let Err(err) = spawned {
            tracing::warn!(
                "cannot start the thread that reads the netfilter rules ({err}): netfilter \
                 decisions are classified by the rules read at start"
            );
        }
        RulesReader { snapshot, wake }
    }
}

/// Reads again every [`REFRESH`], or when woken, never twice within [`MIN_GAP`]; ends when
/// the classifier is dropped.
fn refresh_loop(snapshot: &Mutex<Snapshot>, woken: &mpsc::Receiver<()>) {
    loop {
        if let Err(mpsc::RecvTimeoutError::Disconnected) = woken.recv_timeout(REFRESH) {
            return;
        }
        let started = Instant::now();
        store(snapshot, Snapshot::read());
        if let Some(rest) = MIN_GAP.checked_sub(started.elapsed()) {
            thread::sleep(rest);
        }
    }
}

/// Makes `fresh` the snapshot; a failure to read the rules is said once when it starts (a
/// node where it fails keeps failing every read) and once when it ends.
fn store(snapshot: &Mutex<Snapshot>, fresh: Snapshot) {
    let mut current = snapshot.lock().unwrap_or_else(PoisonError::into_inner);
    match (&current.failed, &fresh.failed) {
        (None, Some(why)) => tracing::warn!(
            "cannot read kube-proxy's netfilter rules ({why}): netfilter decisions are all \
             said to be the node's mode, nftables when unknown"
        ),
        (Some(_), None) => tracing::info!("kube-proxy's netfilter rules can be read again"),
        _ => {}
    }
    // A failed read keeps the last good one: the rules rarely change between two reads.
    let rules = fresh.rules.or_else(|| current.rules.take());
    *current = Snapshot { rules, ..fresh };
}

/// The addresses of this network namespace's interfaces: a NodePort's destination is one.
#[expect(
    clippy::cast_ptr_alignment,
    reason = "the casts are only read through read_unaligned"
)]
fn local_addresses() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list it allocates, freed below.
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return out;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*entry };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` points to a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                out.insert(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                out.insert(IpAddr::from(sin6.sin6_addr.s6_addr));
            }
        }
        entry = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs allocated, not used after this.
    unsafe { libc::freeifaddrs(list) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipvs_event() -> Event {
        crate::events::decode::from_raw(&ipvs_trace_common::ConnEvent {
            header: ipvs_trace_common::EventHeader {
                kind: 1,
                ..Default::default()
            },
            af: 2,
            daf: 2,
            protocol: 6,
            ..ipvs_trace_common::ConnEvent::zeroed()
        })
        .expect("a valid record")
    }

    #[test]
    fn ipvs_decisions_start_no_rules_reader_and_follow_dataplane() {
        let mut all = Classifier::new(&[]);
        let mut event = ipvs_event();
        assert!(all.classify(&mut event));
        assert_eq!(event.dataplane, Dataplane::Ipvs);
        assert!(
            all.reader.is_none(),
            "an IPVS-only node never reads netfilter rules"
        );

        let mut only_nft = Classifier::new(&[Dataplane::Nftables]);
        assert!(!only_nft.classify(&mut event));
        assert_eq!(only_nft.filtered(), 1);
        assert!(only_nft.reader.is_none());
    }

    #[test]
    fn loopback_is_a_local_address() {
        let local = local_addresses();
        assert!(local.contains(&IpAddr::from([127, 0, 0, 1])), "{local:?}");
    }
}
