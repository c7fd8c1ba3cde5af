//! One rule as the models read it: the conditions on a Service's packets (destination
//! address, IP protocol, destination port, "any local address"), the random share it applies
//! to, and what it does (a verdict, a DNAT to one endpoint, a random verdict map).
//!
//! From nf_tables expressions, [`RuleView::from_exprs`] follows the registers as the kernel
//! fills them (a payload or meta load, an immediate, a number generator) and reads each `cmp`
//! against what its register holds; xtables matches and targets (iptables-nft) go through
//! [`super::xt`]. Whatever is not one of those conditions counts as another condition: the
//! models then know the rule does not apply to every packet of the Service, which is all they
//! need to know about it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::nft::{CmpOp, Data, Expr, Verdict, NFPROTO_IPV6};
use super::xt::{self, NatTo, XtMatch};

/// What a rule does to the packets it applies to.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Action {
    /// Nothing that decides the packet's way (a counter, a mark, a log line...).
    #[default]
    None,
    Verdict(Verdict),
    /// DNAT to one endpoint; `None` to something no single address names (a range, a map).
    Dnat(Option<NatTo>),
    /// `numgen (random|inc) mod N [offset O] vmap @set`: one of N values, each sending the
    /// packet where the map's element of that key says.
    NumgenVmap {
        modulus: u32,
        offset: u32,
        set: String,
    },
    /// Something else that ends the packet's way through the rules (masquerade, reject, a
    /// verdict map on the packet's own fields...).
    Other,
}

/// A rule's conditions and action.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleView {
    /// `ip daddr A`, `-d A/32`.
    pub daddr: Option<IpAddr>,
    /// `meta l4proto P`, `-p P`.
    pub proto: Option<u8>,
    /// `th dport P`, `tcp dport P`, `--dport P`.
    pub dport: Option<u16>,
    /// `-m addrtype --dst-type LOCAL`: the destination is one of this host's addresses.
    pub dst_local: bool,
    /// Conditions of any other kind (a source address, a mark, a set, an inverted test...).
    pub other_conditions: u32,
    /// `-m statistic --mode random --probability P`.
    pub probability: Option<f64>,
    /// `-m comment --comment TEXT`.
    pub comment: Option<String>,
    pub action: Action,
}

/// A packet of a Service, as far as the rules look at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub proto: u8,
    /// The Service's address; `None` for a node port, whose destination is any address of
    /// this host.
    pub daddr: Option<IpAddr>,
    pub dport: u16,
}

/// Whether a rule applies to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    Yes,
    No,
    /// It depends on something the packet model does not know (its source, its mark...).
    Unknown,
}

impl RuleView {
    /// Whether the rule's conditions hold for `packet` (the random share aside).
    #[must_use]
    pub fn applies(&self, packet: &Packet) -> Applies {
        if self.proto.is_some_and(|p| p != packet.proto)
            || self.dport.is_some_and(|p| p != packet.dport)
            || self
                .daddr
                .zip(packet.daddr)
                .is_some_and(|(want, got)| want != got)
        {
            return Applies::No;
        }
        let daddr_unknown = self.daddr.is_some() && packet.daddr.is_none();
        // A Service address is local or not depending on the node's interfaces; a node port
        // packet's address is local by definition.
        let local_unknown = self.dst_local && packet.daddr.is_some();
        if self.other_conditions > 0 || daddr_unknown || local_unknown {
            Applies::Unknown
        } else {
            Applies::Yes
        }
    }

    /// The rule of nf_tables expressions `exprs`, in a table of `family` (`NFPROTO_*`).
    #[must_use]
    pub fn from_exprs(exprs: &[Expr], family: u8) -> RuleView {
        let mut rule = RuleView::default();
        let mut regs = Registers::default();
        for expr in exprs {
            rule.expr(&mut regs, expr, family);
        }
        rule
    }

    /// One expression: a register filled, a condition, or the rule's action.
    fn expr(&mut self, regs: &mut Registers, expr: &Expr, family: u8) {
        if regs.fill(expr, family) {
            return;
        }
        match expr {
            Expr::Immediate {
                data: Data::Verdict(verdict),
                ..
            } => {
                if *verdict != Verdict::Continue {
                    self.action = Action::Verdict(verdict.clone());
                }
            }
            Expr::Cmp { sreg, op, data } => self.condition(regs.get(*sreg), *op, data),
            Expr::Lookup {
                set,
                sreg,
                dreg: Some(0),
                inverted: false,
            } => {
                self.action = match regs.get(*sreg) {
                    Some(Load::Numgen { modulus, offset }) => Action::NumgenVmap {
                        modulus: *modulus,
                        offset: *offset,
                        set: set.clone(),
                    },
                    _ => Action::Other,
                };
            }
            Expr::Lookup {
                dreg: Some(dreg), ..
            } => {
                // A data map: what it loads is not read here; a miss is a condition.
                regs.set(*dreg, Load::Opaque, 4);
                self.other_conditions += 1;
            }
            Expr::Lookup { .. } => self.other_conditions += 1,
            Expr::Nat {
                kind,
                family: nat_family,
                reg_addr_min,
                reg_addr_max,
                reg_proto_min,
                reg_proto_max,
                ..
            } => {
                self.action = if *kind == NFT_NAT_DNAT {
                    let addr = (*reg_addr_min, *reg_addr_max);
                    Action::Dnat(nat_to(
                        regs,
                        *nat_family,
                        addr,
                        (*reg_proto_min, *reg_proto_max),
                    ))
                } else {
                    Action::Other
                };
            }
            Expr::Match { name, rev, info } => self.xt_match(name, *rev, info),
            Expr::Target { name, rev, info } => {
                self.action = xt_target(name, *rev, family, info);
            }
            Expr::Other(name) => {
                // Expressions that load a register (ct, fib, rt, socket, osf...) are read
                // through the cmp or lookup that follows: an unknown register is another
                // condition there. These end the packet's way.
                if matches!(
                    name.as_str(),
                    "masq" | "redir" | "reject" | "queue" | "tproxy"
                ) {
                    self.action = Action::Other;
                }
            }
            // Register loads ([`Registers::fill`]) and writes to the packet (`payload set`,
            // `meta mark set`).
            Expr::Immediate { .. }
            | Expr::Payload { .. }
            | Expr::Meta { .. }
            | Expr::Bitwise { .. }
            | Expr::Numgen { .. } => {}
        }
    }

    /// An xtables match (iptables-nft's nft_compat expression, or a legacy entry's).
    pub(super) fn xt_match(&mut self, name: &str, rev: u32, info: &[u8]) {
        match xt::decode_match(name, rev, info) {
            XtMatch::Comment(text) => self.comment = Some(text),
            XtMatch::Random(p) if self.probability.is_none() => self.probability = Some(p),
            XtMatch::DstLocal => self.dst_local = true,
            XtMatch::DstPort(Some(port)) => self.set_dport(port),
            XtMatch::DstPort(None) => {}
            XtMatch::Random(_) | XtMatch::Other => self.other_conditions += 1,
        }
    }

    fn condition(&mut self, load: Option<&Load>, op: CmpOp, data: &[u8]) {
        let field = match load {
            Some(Load::Field(field)) if op == CmpOp::Eq => *field,
            _ => {
                self.other_conditions += 1;
                return;
            }
        };
        match field {
            Field::Daddr4 => match <[u8; 4]>::try_from(data) {
                Ok(bytes) => self.set_daddr(Ipv4Addr::from(bytes).into()),
                Err(_) => self.other_conditions += 1,
            },
            Field::Daddr6 => match <[u8; 16]>::try_from(data) {
                Ok(bytes) => self.set_daddr(Ipv6Addr::from(bytes).into()),
                Err(_) => self.other_conditions += 1,
            },
            // A one-byte field compared as a register: the byte comes first (nft pads the
            // data it sends to the field's length, some writers to 4 bytes).
            Field::Proto => match data.split_first() {
                Some((&proto, rest)) if rest.iter().all(|&b| b == 0) => self.set_proto(proto),
                _ => self.other_conditions += 1,
            },
            Field::Dport => match data {
                [high, low, rest @ ..] if rest.iter().all(|&b| b == 0) => {
                    self.set_dport(u16::from_be_bytes([*high, *low]));
                }
                _ => self.other_conditions += 1,
            },
        }
    }

    /// A second condition on the same field that disagrees makes the rule apply to nothing;
    /// counted as a condition this model does not evaluate rather than resolved.
    pub(super) fn set_daddr(&mut self, addr: IpAddr) {
        match self.daddr {
            Some(old) if old != addr => self.other_conditions += 1,
            _ => self.daddr = Some(addr),
        }
    }

    pub(super) fn set_proto(&mut self, proto: u8) {
        match self.proto {
            Some(old) if old != proto => self.other_conditions += 1,
            _ => self.proto = Some(proto),
        }
    }

    fn set_dport(&mut self, port: u16) {
        match self.dport {
            Some(old) if old != port => self.other_conditions += 1,
            _ => self.dport = Some(port),
        }
    }
}

/// `NFT_META_L4PROTO`.
const NFT_META_L4PROTO: u32 = 16;
/// `NFT_NAT_DNAT`.
const NFT_NAT_DNAT: u32 = 1;
/// `NFT_PAYLOAD_NETWORK_HEADER`, `NFT_PAYLOAD_TRANSPORT_HEADER`.
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

/// A packet field the conditions of the models are about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Daddr4,
    Daddr6,
    Proto,
    Dport,
}

/// What a register holds.
#[derive(Clone, Debug, PartialEq)]
enum Load {
    Field(Field),
    Immediate(Vec<u8>),
    Numgen {
        modulus: u32,
        offset: u32,
    },
    /// Something this model does not follow.
    Opaque,
}

fn field_of_payload(base: u32, offset: u32, len: u32, family: u8) -> Load {
    let field = match (base, offset, len, family) {
        (NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, _) => Field::Dport,
        // struct ipv6hdr: nexthdr at 6, daddr at 24.
        (NFT_PAYLOAD_NETWORK_HEADER, 6, 1, NFPROTO_IPV6) => Field::Proto,
        (NFT_PAYLOAD_NETWORK_HEADER, 24, 16, NFPROTO_IPV6) => Field::Daddr6,
        // struct iphdr: protocol at 9, daddr at 16.
        (NFT_PAYLOAD_NETWORK_HEADER, 9, 1, f) if f != NFPROTO_IPV6 => Field::Proto,
        (NFT_PAYLOAD_NETWORK_HEADER, 16, 4, f) if f != NFPROTO_IPV6 => Field::Daddr4,
        _ => return Load::Opaque,
    };
    Load::Field(field)
}

/// The registers of one rule, as 32-bit slots: `NFT_REG_1`..`NFT_REG_4` are 16 bytes wide
/// (slots 0, 4, 8, 12), `NFT_REG32_00`..`NFT_REG32_15` (8..23) one slot each.
#[derive(Default)]
struct Registers {
    slots: [Option<Load>; 16],
}

impl Registers {
    fn slot(reg: u32) -> Option<usize> {
        match reg {
            1..=4 => Some((reg as usize - 1) * 4),
            8..=23 => Some(reg as usize - 8),
            _ => None,
        }
    }

    /// `load` into `reg`, `len` bytes long: the slots it covers after the first no longer
    /// hold what they held.
    fn set(&mut self, reg: u32, load: Load, len: usize) {
        let Some(first) = Registers::slot(reg) else {
            return;
        };
        let covered = len.div_ceil(4).max(1);
        for slot in self.slots.iter_mut().skip(first).take(covered) {
            *slot = None;
        }
        self.slots[first] = Some(load);
    }

    /// Fills the register `expr` loads, if it is a load; `false` for any other expression.
    fn fill(&mut self, expr: &Expr, family: u8) -> bool {
        match expr {
            Expr::Immediate {
                dreg,
                data: Data::Value(bytes),
            } => self.set(*dreg, Load::Immediate(bytes.clone()), bytes.len()),
            // A verdict is the rule's action, not a register's contents.
            Expr::Immediate { dreg: 0, .. } => return false,
            Expr::Immediate { dreg, .. } | Expr::Bitwise { dreg } => {
                self.set(*dreg, Load::Opaque, 4);
            }
            Expr::Payload {
                dreg: Some(dreg),
                base,
                offset,
                len,
            } => self.set(
                *dreg,
                field_of_payload(*base, *offset, *len, family),
                *len as usize,
            ),
            Expr::Meta {
                dreg: Some(dreg),
                key,
            } => {
                let load = if *key == NFT_META_L4PROTO {
                    Load::Field(Field::Proto)
                } else {
                    Load::Opaque
                };
                self.set(*dreg, load, 4);
            }
            Expr::Numgen {
                dreg,
                modulus,
                offset,
                ..
            } => self.set(
                *dreg,
                Load::Numgen {
                    modulus: *modulus,
                    offset: *offset,
                },
                4,
            ),
            _ => return false,
        }
        true
    }

    fn get(&self, reg: u32) -> Option<&Load> {
        self.slots[Registers::slot(reg)?].as_ref()
    }
}

/// The one destination of a `nat` expression's registers, when they hold immediates: an
/// address (and port) range of one.
fn nat_to(
    regs: &Registers,
    family: u32,
    (addr_min, addr_max): (Option<u32>, Option<u32>),
    (proto_min, proto_max): (Option<u32>, Option<u32>),
) -> Option<NatTo> {
    let immediate = |reg: u32| match regs.get(reg) {
        Some(Load::Immediate(bytes)) => Some(bytes.as_slice()),
        _ => None,
    };
    let addr_reg = addr_min?;
    if addr_max.is_some_and(|max| immediate(max) != immediate(addr_reg)) {
        return None;
    }
    let bytes = immediate(addr_reg)?;
    let addr = if family == u32::from(NFPROTO_IPV6) {
        IpAddr::from(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.get(..16)?).ok()?))
    } else {
        IpAddr::from(Ipv4Addr::from(<[u8; 4]>::try_from(bytes.get(..4)?).ok()?))
    };
    let port = match proto_min {
        None => None,
        Some(reg) => {
            if proto_max.is_some_and(|max| immediate(max) != immediate(reg)) {
                return None;
            }
            let bytes = immediate(reg)?;
            Some(u16::from_be_bytes(
                <[u8; 2]>::try_from(bytes.get(..2)?).ok()?,
            ))
        }
    };
    Some(NatTo { addr, port })
}

/// What an xtables target does: DNAT, a target that lets the packet go on, or one that ends
/// its way.
pub(super) fn xt_target(name: &str, rev: u32, family: u8, info: &[u8]) -> Action {
    match name {
        "DNAT" => Action::Dnat(xt::dnat(rev, family, info)),
        // XT_CONTINUE targets.
        "MARK" | "CONNMARK" | "LOG" | "NFLOG" | "CT" | "CLASSIFY" | "TRACE" | "CHECKSUM"
        | "DSCP" | "TOS" | "TTL" | "HL" | "TCPMSS" | "AUDIT" => Action::None,
        _ => Action::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::nft::NFPROTO_IPV4;

    fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
        Expr::Payload {
            dreg: Some(dreg),
            base,
            offset,
            len,
        }
    }

    fn cmp(sreg: u32, op: CmpOp, data: &[u8]) -> Expr {
        Expr::Cmp {
            sreg,
            op,
            data: data.to_vec(),
        }
    }

    /// `meta l4proto tcp ip daddr 172.30.0.41 tcp dport 80 jump KUBE-SVC-X`, as iptables-nft
    /// writes `-p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-X`.
    #[test]
    fn service_dispatch_rule() {
        let exprs = [
            Expr::Meta {
                dreg: Some(1),
                key: NFT_META_L4PROTO,
            },
            cmp(1, CmpOp::Eq, &[6]),
            payload(1, 16, 4, 1),
            cmp(1, CmpOp::Eq, &[172, 30, 0, 41]),
            payload(2, 2, 2, 1),
            cmp(1, CmpOp::Eq, &80u16.to_be_bytes()),
            Expr::Other("counter".into()),
            Expr::Immediate {
                dreg: 0,
                data: Data::Verdict(Verdict::Jump("KUBE-SVC-X".into())),
            },
        ];
        let rule = RuleView::from_exprs(&exprs, NFPROTO_IPV4);
        assert_eq!(rule.daddr, Some("172.30.0.41".parse().unwrap()));
        assert_eq!((rule.proto, rule.dport), (Some(6), Some(80)));
        assert_eq!(rule.other_conditions, 0);
        assert_eq!(
            rule.action,
            Action::Verdict(Verdict::Jump("KUBE-SVC-X".into()))
        );
        let packet = Packet {
            proto: 6,
            daddr: rule.daddr,
            dport: 80,
        };
        assert_eq!(rule.applies(&packet), Applies::Yes);
        assert_eq!(
            rule.applies(&Packet {
                dport: 81,
                ..packet
            }),
            Applies::No
        );
        assert_eq!(
            rule.applies(&Packet {
                daddr: None,
                ..packet
            }),
            Applies::Unknown
        );
    }

    /// `ip saddr != 10.0.0.0/8` (a one-byte load of the source's first octet), `meta mark`:
    /// conditions of another kind.
    #[test]
    fn other_conditions() {
        let exprs = [
            payload(1, 12, 1, 1),
            cmp(1, CmpOp::Neq, &[10]),
            Expr::Meta {
                dreg: Some(1),
                key: 3,
            },
            cmp(1, CmpOp::Eq, &[0, 0x40, 0, 0]),
            Expr::Immediate {
                dreg: 0,
                data: Data::Verdict(Verdict::Jump("mark-for-masquerade".into())),
            },
        ];
        let rule = RuleView::from_exprs(&exprs, NFPROTO_IPV4);
        assert_eq!(rule.other_conditions, 2);
        assert_eq!(
            rule.applies(&Packet {
                proto: 6,
                daddr: None,
                dport: 1
            }),
            Applies::Unknown
        );
    }

    /// `meta l4proto tcp dnat to 10.180.0.1:80`, and the same with a register cut short.
    #[test]
    fn dnat_from_registers() {
        let mut exprs = vec![
            Expr::Immediate {
                dreg: 1,
                data: Data::Value(vec![10, 180, 0, 1]),
            },
            Expr::Immediate {
                dreg: 2,
                data: Data::Value(80u16.to_be_bytes().to_vec()),
            },
            Expr::Nat {
                kind: NFT_NAT_DNAT,
                family: 2,
                reg_addr_min: Some(1),
                reg_addr_max: Some(1),
                reg_proto_min: Some(2),
                reg_proto_max: Some(2),
                flags: 3,
            },
        ];
        assert_eq!(
            RuleView::from_exprs(&exprs, NFPROTO_IPV4).action,
            Action::Dnat(Some(NatTo {
                addr: "10.180.0.1".parse().unwrap(),
                port: Some(80)
            }))
        );
        exprs[0] = Expr::Immediate {
            dreg: 1,
            data: Data::Value(vec![10, 180]),
        };
        assert_eq!(
            RuleView::from_exprs(&exprs, NFPROTO_IPV4).action,
            Action::Dnat(None)
        );
    }

    #[test]
    fn numgen_vmap() {
        let exprs = [
            Expr::Numgen {
                dreg: 1,
                modulus: 3,
                kind: 1,
                offset: 0,
            },
            Expr::Lookup {
                set: "__map0".into(),
                sreg: 1,
                dreg: Some(0),
                inverted: false,
            },
        ];
        assert_eq!(
            RuleView::from_exprs(&exprs, NFPROTO_IPV4).action,
            Action::NumgenVmap {
                modulus: 3,
                offset: 0,
                set: "__map0".into()
            }
        );
    }

    #[test]
    fn registers_out_of_range_are_ignored() {
        let exprs = [
            Expr::Immediate {
                dreg: 99,
                data: Data::Value(vec![1; 64]),
            },
            cmp(u32::MAX, CmpOp::Eq, &[1]),
            Expr::Numgen {
                dreg: 23,
                modulus: u32::MAX,
                kind: 1,
                offset: u32::MAX,
            },
        ];
        let rule = RuleView::from_exprs(&exprs, NFPROTO_IPV4);
        assert_eq!(rule.other_conditions, 1);
    }
}
