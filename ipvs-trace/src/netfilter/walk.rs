//! Where a Service's new connections end up: a packet of the Service followed through the
//! chains, as the kernel runs them, with the share of connections that takes each way.
//!
//! A rule whose conditions hold for every packet of the Service ([`Applies::Yes`]) acts on
//! the share that reaches it (times its random probability); one whose conditions depend on
//! something else (the client's address, a mark, an affinity set) is passed by. The result
//! is the way of a connection that none of those extra conditions catch: kube-proxy's
//! special cases (hairpin masquerade, affinity, short-circuits of pod and node traffic) do
//! not choose the endpoint of an ordinary connection. Jumps return where they left;
//! `goto` and `return` hand the rest back to the caller; a random verdict map splits the
//! share among its elements.
//!
//! Bounded: a chain calling itself, a way deeper than [`MAX_DEPTH`] chains, or more than
//! [`BUDGET`] rules visited for one Service ends the walk there (that share reaches no
//! endpoint).

use std::net::SocketAddr;

use super::nft::Verdict;
use super::rule::{Action, Applies, Packet, RuleView};

/// Chains deep: kube-proxy's ways are four (services, service, endpoint, mark).
const MAX_DEPTH: usize = 16;
/// Rules visited for one Service: far above a Service with thousands of endpoints.
const BUDGET: usize = 1_000_000;

/// The rules a walk reads: chains by name, and the elements of numgen verdict maps.
pub trait Chains {
    fn chain(&self, name: &str) -> Option<&[RuleView]>;
    /// The elements of verdict map `set`: key (a `numgen` value) and verdict.
    fn vmap(&self, set: &str) -> Option<&[(u32, Verdict)]>;
}

/// An endpoint a Service's connections are DNATed to, and the share that goes there.
#[derive(Clone, Debug, PartialEq)]
pub struct Reached {
    pub addr: SocketAddr,
    pub share: f64,
    /// The chain of the DNAT rule (kube-proxy's per-endpoint chain).
    pub chain: String,
}

/// The endpoints `packet` reaches from `chain`, merged by address and sorted by it.
pub fn endpoints(chains: &impl Chains, chain: &str, packet: &Packet) -> Vec<Reached> {
    let mut walk = Walk {
        chains,
        packet,
        reached: Vec::new(),
        stack: Vec::new(),
        budget: BUDGET,
    };
    walk.chain(chain, 1.0);
    let mut reached: Vec<Reached> = Vec::new();
    for r in walk.reached {
        match reached.iter_mut().find(|known| known.addr == r.addr) {
            Some(known) => known.share += r.share,
            None => reached.push(r),
        }
    }
    reached.sort_by_key(|r| r.addr);
    reached
}

struct Walk<'a, C> {
    chains: &'a C,
    packet: &'a Packet,
    reached: Vec<Reached>,
    /// The chains being run, innermost last.
    stack: Vec<&'a str>,
    budget: usize,
}

impl<'a, C: Chains> Walk<'a, C> {
    /// Runs `name` for the share `mass` of the connections; returns the share that comes
    /// back to the caller (it fell off the end, or returned).
    fn chain(&mut self, name: &'a str, mass: f64) -> f64 {
        if self.stack.len() >= MAX_DEPTH || self.stack.contains(&name) {
            return 0.0;
        }
        let chains: &'a C = self.chains;
        let Some(rules) = chains.chain(name) else {
            // A chain that is not there (a map pointing at a chain of another table): nothing
            // of it decides anything.
            return mass;
        };
        self.stack.push(name);
        let mut going = mass;
        let mut returned = 0.0;
        for rule in rules {
            if going <= 0.0 || self.budget == 0 {
                break;
            }
            self.budget -= 1;
            if rule.applies(self.packet) != Applies::Yes {
                continue;
            }
            let taken = going * rule.probability.unwrap_or(1.0);
            match &rule.action {
                Action::None => {}
                Action::Verdict(verdict) => {
                    let (back, up) = self.verdict(verdict, taken);
                    going += back - taken;
                    returned += up;
                }
                Action::Dnat(to) => {
                    if let Some(to) = to {
                        self.reached.push(Reached {
                            addr: SocketAddr::new(to.addr, to.port.unwrap_or(self.packet.dport)),
                            share: taken,
                            chain: name.to_owned(),
                        });
                    }
                    going -= taken;
                }
                Action::NumgenVmap {
                    modulus,
                    offset,
                    set,
                } => {
                    let Some(elements) = chains.vmap(set) else {
                        continue;
                    };
                    if *modulus == 0 {
                        continue;
                    }
                    let each = taken / f64::from(*modulus);
                    let values = u64::from(*offset)..u64::from(*offset) + u64::from(*modulus);
                    for (_, verdict) in elements
                        .iter()
                        .filter(|(key, _)| values.contains(&u64::from(*key)))
                    {
                        // A value without an element misses the map: that share goes on with
                        // the next rule, as it does here by not being taken.
                        let (back, up) = self.verdict(verdict, each);
                        going += back - each;
                        returned += up;
                    }
                }
                Action::Other => going -= taken,
            }
        }
        self.stack.pop();
        going.max(0.0) + returned
    }

    /// The share `mass` meets `verdict`: what comes back to this chain, and what goes back
    /// up to its caller.
    fn verdict(&mut self, verdict: &'a Verdict, mass: f64) -> (f64, f64) {
        match verdict {
            Verdict::Jump(target) => (self.chain(target, mass), 0.0),
            Verdict::Goto(target) => (0.0, self.chain(target, mass)),
            Verdict::Return => (0.0, mass),
            Verdict::Continue | Verdict::Break => (mass, 0.0),
            Verdict::Accept | Verdict::Drop | Verdict::Other(_) => (0.0, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::netfilter::xt::NatTo;

    #[derive(Default)]
    struct Fake {
        chains: HashMap<String, Vec<RuleView>>,
        maps: HashMap<String, Vec<(u32, Verdict)>>,
    }

    impl Chains for Fake {
        fn chain(&self, name: &str) -> Option<&[RuleView]> {
            self.chains.get(name).map(Vec::as_slice)
        }

        fn vmap(&self, set: &str) -> Option<&[(u32, Verdict)]> {
            self.maps.get(set).map(Vec::as_slice)
        }
    }

    fn dnat(ip: &str, port: u16) -> RuleView {
        RuleView {
            proto: Some(6),
            action: Action::Dnat(Some(NatTo {
                addr: ip.parse().unwrap(),
                port: Some(port),
            })),
            ..RuleView::default()
        }
    }

    fn jump(chain: &str, probability: Option<f64>) -> RuleView {
        RuleView {
            probability,
            action: Action::Verdict(Verdict::Jump(chain.into())),
            ..RuleView::default()
        }
    }

    const PACKET: Packet = Packet {
        proto: 6,
        daddr: None,
        dport: 30080,
    };

    fn shares(fake: &Fake, chain: &str) -> Vec<(String, f64)> {
        endpoints(fake, chain, &PACKET)
            .into_iter()
            .map(|r| (r.addr.to_string(), r.share))
            .collect()
    }

    /// iptables: 1/3, then 1/2 of the rest, then the rest.
    #[test]
    fn statistic_cascade() {
        let mut fake = Fake::default();
        fake.chains.insert(
            "SVC".into(),
            vec![
                RuleView {
                    other_conditions: 1,
                    ..jump("MASQ", None)
                },
                jump("SEP1", Some(1.0 / 3.0)),
                jump("SEP2", Some(0.5)),
                jump("SEP3", None),
            ],
        );
        for (i, chain) in ["SEP1", "SEP2", "SEP3"].iter().enumerate() {
            fake.chains.insert(
                (*chain).into(),
                vec![
                    RuleView {
                        other_conditions: 1,
                        ..jump("MASQ", None)
                    },
                    dnat(&format!("10.180.0.{}", i + 1), 80),
                ],
            );
        }
        let got = shares(&fake, "SVC");
        assert_eq!(got.len(), 3);
        for (_, share) in &got {
            assert!((share - 1.0 / 3.0).abs() < 1e-12, "{got:?}");
        }
    }

    /// nftables: `numgen random mod 4 vmap` with an element missing: that quarter falls
    /// through to the next rule.
    #[test]
    fn vmap_with_a_missing_value() {
        let mut fake = Fake::default();
        fake.chains.insert(
            "service".into(),
            vec![
                RuleView {
                    action: Action::NumgenVmap {
                        modulus: 4,
                        offset: 0,
                        set: "__map0".into(),
                    },
                    ..RuleView::default()
                },
                dnat("10.180.0.9", 80),
            ],
        );
        fake.maps.insert(
            "__map0".into(),
            (0..3)
                .map(|k| (k, Verdict::Goto(format!("endpoint-{k}"))))
                .collect(),
        );
        for k in 0..3 {
            fake.chains.insert(
                format!("endpoint-{k}"),
                vec![dnat(&format!("10.180.0.{k}"), 8080)],
            );
        }
        let got = shares(&fake, "service");
        assert_eq!(
            got,
            [
                ("10.180.0.0:8080".to_owned(), 0.25),
                ("10.180.0.1:8080".to_owned(), 0.25),
                ("10.180.0.2:8080".to_owned(), 0.25),
                ("10.180.0.9:80".to_owned(), 0.25)
            ]
        );
    }

    /// A chain that jumps to itself, and a goto whose chain returns: the walk ends, and the
    /// returned share goes up past the chain that went to it.
    #[test]
    fn loops_and_returns() {
        let mut fake = Fake::default();
        fake.chains.insert("a".into(), vec![jump("a", None)]);
        assert!(shares(&fake, "a").is_empty());
        fake.chains.insert(
            "outer".into(),
            vec![jump("middle", None), dnat("10.0.0.1", 1)],
        );
        fake.chains.insert(
            "middle".into(),
            vec![
                RuleView {
                    action: Action::Verdict(Verdict::Goto("inner".into())),
                    ..RuleView::default()
                },
                dnat("10.0.0.2", 2),
            ],
        );
        fake.chains.insert(
            "inner".into(),
            vec![RuleView {
                action: Action::Verdict(Verdict::Return),
                ..RuleView::default()
            }],
        );
        assert_eq!(shares(&fake, "outer"), [("10.0.0.1:1".to_owned(), 1.0)]);
    }
}
