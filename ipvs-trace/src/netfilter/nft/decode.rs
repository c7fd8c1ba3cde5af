//! The attributes of nf_tables messages, decoded by hand against the kernel's
//! `include/uapi/linux/netfilter/nf_tables.h` and `net/netfilter/nf_tables_api.c`
//! (`nf_tables_fill_table_info`, `nf_tables_fill_chain_info`, `nf_tables_fill_rule_info`,
//! `nf_tables_fill_set`, `nf_tables_fill_setelem`) and each expression's `dump` callback
//! (`nft_immediate_dump`, `nft_cmp_dump`, `nft_payload_dump`, `nft_meta_get_dump`,
//! `nft_lookup_dump`, `nft_ng_random_dump`, `nft_nat_dump`, `nft_bitwise_dump`,
//! `nft_match_dump`, `nft_target_dump`).
//!
//! The walker is the IPVS decoder's ([`crate::ipvs::decode`]): a length that runs past its
//! buffer, a value of the wrong size, a missing mandatory attribute is a [`DecodeError`] naming
//! it, never a panic; every allocation is bounded by the bytes the kernel sent. Integer
//! attributes of nf_tables are big-endian (`nla_put_be32`); data values are raw register
//! contents (addresses and ports in network order, `numgen` results in host order).
//!
//! Expressions this code does not read (counter, ct, fib, dynset, masq, reject...) are kept by
//! name: a rule that has them is still a rule.

use crate::ipvs::decode::{fixed, put, Attrs, Table};
use crate::ipvs::DecodeError;

/// `NFT_DATA_VERDICT`: the `NFTA_SET_DATA_TYPE` of a verdict map.
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

// enum nft_table_attributes.
const NFTA_TABLE_NAME: u16 = 1;
// enum nft_chain_attributes.
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
// enum nft_rule_attributes.
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
// enum nft_list_attributes.
const NFTA_LIST_ELEM: u16 = 1;
// enum nft_expr_attributes.
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
// enum nft_set_attributes.
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
// enum nft_set_elem_list_attributes.
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
// enum nft_set_elem_attributes.
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_KEY_END: u16 = 9;
// enum nft_data_attributes.
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
// enum nft_verdict_attributes.
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
// enum nft_gen_attributes.
const NFTA_GEN_ID: u16 = 1;

// Verdict codes: netfilter's NF_* and nf_tables' own (negative) ones.
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_CONTINUE: i32 = -1;
const NFT_BREAK: i32 = -2;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

/// `NFT_SET_ANONYMOUS`: a set a rule owns (`{ ... }` written in the rule).
pub const NFT_SET_ANONYMOUS: u32 = 0x1;
/// `NFT_SET_INTERVAL`: elements are ranges.
pub const NFT_SET_INTERVAL: u32 = 0x4;
/// `NFT_SET_MAP`: elements carry data.
pub const NFT_SET_MAP: u32 = 0x8;
/// `NFT_SET_ELEM_INTERVAL_END`: the element closes a range.
pub const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;

/// A table: its family (`NFPROTO_*`) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableId {
    pub family: u8,
    pub name: String,
}

/// A chain of a table; `base` when a netfilter hook calls it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub table: String,
    pub name: String,
    pub base: bool,
}

/// A rule: its chain, handle and expressions in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub exprs: Vec<Expr>,
}

/// A set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub table: String,
    pub name: String,
    /// `NFT_SET_*`.
    pub flags: u32,
    pub key_len: u32,
    /// `NFTA_SET_DATA_TYPE` of a map ([`NFT_DATA_VERDICT`] for a verdict map).
    pub data_type: Option<u32>,
}

impl Set {
    #[must_use]
    pub fn is_verdict_map(&self) -> bool {
        self.flags & NFT_SET_MAP != 0 && self.data_type == Some(NFT_DATA_VERDICT)
    }
}

/// One element of a set: its key (the register bytes), and for a map its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    /// `NFTA_SET_ELEM_KEY_END`: the end of the range (concatenated interval sets).
    pub key_end: Option<Vec<u8>>,
    pub data: Option<Data>,
    /// `NFT_SET_ELEM_*`.
    pub flags: u32,
}

/// What a register, an immediate or a map element holds: bytes, or a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

/// A verdict: netfilter's (accept, drop) or nf_tables' own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Break,
    Return,
    Jump(String),
    Goto(String),
    /// Another code (queue, stolen...), kept as the kernel sent it.
    Other(i32),
}

/// `enum nft_cmp_ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    /// lt, lte, gt, gte, or an operator newer than this code.
    Other(u32),
}

/// One expression of a rule. Registers are the kernel's numbers (`NFT_REG_*`,
/// `NFT_REG32_*`); [`crate::netfilter::rule`] reads what they hold.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Immediate {
        dreg: u32,
        data: Data,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    /// A load (`dreg`) or, without one, a write (`payload set`).
    Payload {
        dreg: Option<u32>,
        /// `NFT_PAYLOAD_*_HEADER`.
        base: u32,
        offset: u32,
        len: u32,
    },
    /// A load (`dreg`) or, without one, a write (`meta mark set`).
    Meta {
        dreg: Option<u32>,
        /// `NFT_META_*`.
        key: u32,
    },
    Bitwise {
        dreg: u32,
    },
    Lookup {
        set: String,
        sreg: u32,
        /// The data register of a map lookup (0, the verdict register, for a verdict map).
        dreg: Option<u32>,
        /// `NFT_LOOKUP_F_INV`: `!= @set`.
        inverted: bool,
    },
    Numgen {
        dreg: u32,
        modulus: u32,
        /// `NFT_NG_INCREMENTAL` (0) or `NFT_NG_RANDOM` (1).
        kind: u32,
        offset: u32,
    },
    Nat {
        /// `NFT_NAT_SNAT` (0) or `NFT_NAT_DNAT` (1).
        kind: u32,
        /// `NFPROTO_IPV4` or `NFPROTO_IPV6`.
        family: u32,
        reg_addr_min: Option<u32>,
        reg_addr_max: Option<u32>,
        reg_proto_min: Option<u32>,
        reg_proto_max: Option<u32>,
        flags: u32,
    },
    /// An xtables match run by nft_compat (iptables-nft): its name, revision and the match's
    /// own info blob ([`crate::netfilter::xt`]).
    Match {
        name: String,
        rev: u32,
        info: Vec<u8>,
    },
    /// An xtables target run by nft_compat.
    Target {
        name: String,
        rev: u32,
        info: Vec<u8>,
    },
    /// Any other expression, by name.
    Other(String),
}

/// The generation id of an `NFT_MSG_NEWGEN` message.
pub fn generation(attrs: &[u8]) -> Result<u32, DecodeError> {
    let t = Table::parse(attrs, NFTA_GEN_ID, "generation")?;
    be32(t.require(NFTA_GEN_ID, "GEN_ID")?, "generation", "GEN_ID")
}

/// A table of an `NFT_MSG_NEWTABLE` message of `family`.
pub fn table(family: u8, attrs: &[u8]) -> Result<TableId, DecodeError> {
    let t = Table::parse(attrs, NFTA_TABLE_NAME, "table")?;
    Ok(TableId {
        family,
        name: name(t.require(NFTA_TABLE_NAME, "NAME")?, "table", "NAME")?,
    })
}

/// A chain of an `NFT_MSG_NEWCHAIN` message.
pub fn chain(attrs: &[u8]) -> Result<Chain, DecodeError> {
    let t = Table::parse(attrs, NFTA_CHAIN_HOOK, "chain")?;
    Ok(Chain {
        table: name(t.require(NFTA_CHAIN_TABLE, "TABLE")?, "chain", "TABLE")?,
        name: name(t.require(NFTA_CHAIN_NAME, "NAME")?, "chain", "NAME")?,
        base: t.get(NFTA_CHAIN_HOOK).is_some(),
    })
}

/// A rule of an `NFT_MSG_NEWRULE` message.
pub fn rule(attrs: &[u8]) -> Result<Rule, DecodeError> {
    let t = Table::parse(attrs, NFTA_RULE_EXPRESSIONS, "rule")?;
    let table = name(t.require(NFTA_RULE_TABLE, "TABLE")?, "rule", "TABLE")?;
    let chain = name(t.require(NFTA_RULE_CHAIN, "CHAIN")?, "rule", "CHAIN")?;
    let handle = be64(t.require(NFTA_RULE_HANDLE, "HANDLE")?, "rule", "HANDLE")?;
    let mut exprs = Vec::new();
    if let Some(list) = t.get(NFTA_RULE_EXPRESSIONS) {
        for elem in Attrs::new(list, "rule expressions") {
            let elem = elem?;
            if elem.kind != NFTA_LIST_ELEM {
                return Err(DecodeError::new(format!(
                    "rule expressions: attribute {} where NFTA_LIST_ELEM ({NFTA_LIST_ELEM}) \
                     should be",
                    elem.kind
                )));
            }
            exprs.push(expr(elem.value)?);
        }
    }
    Ok(Rule {
        table,
        chain,
        handle,
        exprs,
    })
}

/// A set of an `NFT_MSG_NEWSET` message.
pub fn set(attrs: &[u8]) -> Result<Set, DecodeError> {
    let t = Table::parse(attrs, NFTA_SET_DATA_TYPE, "set")?;
    Ok(Set {
        table: name(t.require(NFTA_SET_TABLE, "TABLE")?, "set", "TABLE")?,
        name: name(t.require(NFTA_SET_NAME, "NAME")?, "set", "NAME")?,
        flags: t
            .get(NFTA_SET_FLAGS)
            .map(|v| be32(v, "set", "FLAGS"))
            .transpose()?
            .unwrap_or(0),
        key_len: be32(t.require(NFTA_SET_KEY_LEN, "KEY_LEN")?, "set", "KEY_LEN")?,
        data_type: t
            .get(NFTA_SET_DATA_TYPE)
            .map(|v| be32(v, "set", "DATA_TYPE"))
            .transpose()?,
    })
}

/// The elements of an `NFT_MSG_NEWSETELEM` message, checked to be of set `want` of table
/// `table`.
pub fn elements(attrs: &[u8], table: &str, want: &str) -> Result<Vec<Element>, DecodeError> {
    let t = Table::parse(attrs, NFTA_SET_ELEM_LIST_ELEMENTS, "set elements")?;
    let got_table = string(
        t.require(NFTA_SET_ELEM_LIST_TABLE, "TABLE")?,
        "set elements",
        "TABLE",
    )?;
    let got_set = string(
        t.require(NFTA_SET_ELEM_LIST_SET, "SET")?,
        "set elements",
        "SET",
    )?;
    if got_table != table || got_set != want {
        return Err(DecodeError::new(format!(
            "elements of set {got_table}/{got_set} in the dump of {table}/{want}"
        )));
    }
    let mut elements = Vec::new();
    let Some(list) = t.get(NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return Ok(elements);
    };
    for elem in Attrs::new(list, "set elements") {
        let elem = elem?;
        let e = Table::parse(elem.value, NFTA_SET_ELEM_KEY_END, "set element")?;
        let value = |kind, name| -> Result<Option<Vec<u8>>, DecodeError> {
            e.get(kind)
                .map(|nest| match data(nest, "set element")? {
                    Data::Value(bytes) => Ok(bytes),
                    Data::Verdict(_) => Err(DecodeError::new(format!(
                        "set element: {name} is a verdict, expected a value"
                    ))),
                })
                .transpose()
        };
        elements.push(Element {
            // The catch-all element (`*`) has no key: an empty one, which no lookup key of a
            // model equals.
            key: value(NFTA_SET_ELEM_KEY, "KEY")?.unwrap_or_default(),
            key_end: value(NFTA_SET_ELEM_KEY_END, "KEY_END")?,
            data: e
                .get(NFTA_SET_ELEM_DATA)
                .map(|nest| data(nest, "set element data"))
                .transpose()?,
            flags: e
                .get(NFTA_SET_ELEM_FLAGS)
                .map(|v| be32(v, "set element", "FLAGS"))
                .transpose()?
                .unwrap_or(0),
        });
    }
    Ok(elements)
}

/// An `NFTA_DATA_*` nest: a value or a verdict.
fn data(nest: &[u8], context: &'static str) -> Result<Data, DecodeError> {
    let t = Table::parse(nest, NFTA_DATA_VERDICT, context)?;
    if let Some(value) = t.get(NFTA_DATA_VALUE) {
        return Ok(Data::Value(value.to_vec()));
    }
    let Some(verdict) = t.get(NFTA_DATA_VERDICT) else {
        return Err(DecodeError::new(format!(
            "{context}: neither DATA_VALUE ({NFTA_DATA_VALUE}) nor DATA_VERDICT \
             ({NFTA_DATA_VERDICT})"
        )));
    };
    let v = Table::parse(verdict, NFTA_VERDICT_CHAIN, "verdict")?;
    let code = be32(v.require(NFTA_VERDICT_CODE, "CODE")?, "verdict", "CODE")? as i32;
    let chain = || -> Result<String, DecodeError> {
        name(v.require(NFTA_VERDICT_CHAIN, "CHAIN")?, "verdict", "CHAIN")
    };
    Ok(Data::Verdict(match code {
        NF_ACCEPT => Verdict::Accept,
        NF_DROP => Verdict::Drop,
        NFT_CONTINUE => Verdict::Continue,
        NFT_BREAK => Verdict::Break,
        NFT_RETURN => Verdict::Return,
        NFT_JUMP => Verdict::Jump(chain()?),
        NFT_GOTO => Verdict::Goto(chain()?),
        other => Verdict::Other(other),
    }))
}

// Attributes of the expressions read here, by expression (each enum of nf_tables.h).
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFTA_NG_DREG: u16 = 1;
const NFTA_NG_MODULUS: u16 = 2;
const NFTA_NG_TYPE: u16 = 3;
const NFTA_NG_OFFSET: u16 = 4;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_ADDR_MAX: u16 = 4;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_REG_PROTO_MAX: u16 = 6;
const NFTA_NAT_FLAGS: u16 = 7;
// NFTA_MATCH_* and NFTA_TARGET_* are numbered alike.
const NFTA_XT_NAME: u16 = 1;
const NFTA_XT_REV: u16 = 2;
const NFTA_XT_INFO: u16 = 3;

/// One `NFTA_LIST_ELEM` of a rule: an expression's name and data.
fn expr(elem: &[u8]) -> Result<Expr, DecodeError> {
    let t = Table::parse(elem, NFTA_EXPR_DATA, "expression")?;
    let expr_name = string(t.require(NFTA_EXPR_NAME, "NAME")?, "expression", "NAME")?;
    // An expression without data (e.g. `masq` with no options) has no NFTA_EXPR_DATA.
    let data_nest = t.get(NFTA_EXPR_DATA).unwrap_or_default();
    let parse = |max| Table::parse(data_nest, max, EXPRESSION);
    Ok(match expr_name.as_str() {
        "immediate" => {
            let t = parse(NFTA_IMMEDIATE_DATA)?;
            Expr::Immediate {
                dreg: reg(&t, NFTA_IMMEDIATE_DREG, "IMMEDIATE_DREG")?,
                data: data(
                    t.require(NFTA_IMMEDIATE_DATA, "IMMEDIATE_DATA")?,
                    "immediate",
                )?,
            }
        }
        "cmp" => {
            let t = parse(NFTA_CMP_DATA)?;
            let Data::Value(value) = data(t.require(NFTA_CMP_DATA, "CMP_DATA")?, "cmp")? else {
                return Err(DecodeError::new("cmp: a verdict as the compared data"));
            };
            Expr::Cmp {
                sreg: reg(&t, NFTA_CMP_SREG, "CMP_SREG")?,
                op: match reg(&t, NFTA_CMP_OP, "CMP_OP")? {
                    0 => CmpOp::Eq,
                    1 => CmpOp::Neq,
                    other => CmpOp::Other(other),
                },
                data: value,
            }
        }
        "payload" => {
            let t = parse(NFTA_PAYLOAD_LEN)?;
            Expr::Payload {
                dreg: opt(&t, NFTA_PAYLOAD_DREG, "PAYLOAD_DREG")?,
                base: reg(&t, NFTA_PAYLOAD_BASE, "PAYLOAD_BASE")?,
                offset: reg(&t, NFTA_PAYLOAD_OFFSET, "PAYLOAD_OFFSET")?,
                len: reg(&t, NFTA_PAYLOAD_LEN, "PAYLOAD_LEN")?,
            }
        }
        "meta" => {
            let t = parse(NFTA_META_KEY)?;
            Expr::Meta {
                dreg: opt(&t, NFTA_META_DREG, "META_DREG")?,
                key: reg(&t, NFTA_META_KEY, "META_KEY")?,
            }
        }
        "bitwise" => {
            let t = parse(NFTA_BITWISE_DREG)?;
            Expr::Bitwise {
                dreg: reg(&t, NFTA_BITWISE_DREG, "BITWISE_DREG")?,
            }
        }
        "lookup" => lookup(&parse(NFTA_LOOKUP_FLAGS)?)?,
        "numgen" => {
            let t = parse(NFTA_NG_OFFSET)?;
            Expr::Numgen {
                dreg: reg(&t, NFTA_NG_DREG, "NG_DREG")?,
                modulus: reg(&t, NFTA_NG_MODULUS, "NG_MODULUS")?,
                kind: reg(&t, NFTA_NG_TYPE, "NG_TYPE")?,
                offset: opt(&t, NFTA_NG_OFFSET, "NG_OFFSET")?.unwrap_or(0),
            }
        }
        "nat" => nat(&parse(NFTA_NAT_FLAGS)?)?,
        "match" | "target" => xt(&parse(NFTA_XT_INFO)?, expr_name == "match")?,
        _ => Expr::Other(expr_name),
    })
}

const EXPRESSION: &str = "expression";

fn reg(t: &Table<'_>, kind: u16, field: &str) -> Result<u32, DecodeError> {
    be32(t.require(kind, field)?, EXPRESSION, field)
}

fn opt(t: &Table<'_>, kind: u16, field: &str) -> Result<Option<u32>, DecodeError> {
    t.get(kind).map(|v| be32(v, EXPRESSION, field)).transpose()
}

fn lookup(t: &Table<'_>) -> Result<Expr, DecodeError> {
    Ok(Expr::Lookup {
        set: name(
            t.require(NFTA_LOOKUP_SET, "LOOKUP_SET")?,
            EXPRESSION,
            "LOOKUP_SET",
        )?,
        sreg: reg(t, NFTA_LOOKUP_SREG, "LOOKUP_SREG")?,
        dreg: opt(t, NFTA_LOOKUP_DREG, "LOOKUP_DREG")?,
        inverted: opt(t, NFTA_LOOKUP_FLAGS, "LOOKUP_FLAGS")?
            .is_some_and(|f| f & NFT_LOOKUP_F_INV != 0),
    })
}

fn nat(t: &Table<'_>) -> Result<Expr, DecodeError> {
    Ok(Expr::Nat {
        kind: reg(t, NFTA_NAT_TYPE, "NAT_TYPE")?,
        family: reg(t, NFTA_NAT_FAMILY, "NAT_FAMILY")?,
        reg_addr_min: opt(t, NFTA_NAT_REG_ADDR_MIN, "NAT_REG_ADDR_MIN")?,
        reg_addr_max: opt(t, NFTA_NAT_REG_ADDR_MAX, "NAT_REG_ADDR_MAX")?,
        reg_proto_min: opt(t, NFTA_NAT_REG_PROTO_MIN, "NAT_REG_PROTO_MIN")?,
        reg_proto_max: opt(t, NFTA_NAT_REG_PROTO_MAX, "NAT_REG_PROTO_MAX")?,
        flags: opt(t, NFTA_NAT_FLAGS, "NAT_FLAGS")?.unwrap_or(0),
    })
}

/// nft_compat's `match` or `target`: the xtables extension's name, revision and info blob.
fn xt(t: &Table<'_>, is_match: bool) -> Result<Expr, DecodeError> {
    let xt_name = string(t.require(NFTA_XT_NAME, "XT_NAME")?, EXPRESSION, "XT_NAME")?;
    let rev = reg(t, NFTA_XT_REV, "XT_REV")?;
    let info = t.get(NFTA_XT_INFO).unwrap_or_default().to_vec();
    Ok(if is_match {
        Expr::Match {
            name: xt_name,
            rev,
            info,
        }
    } else {
        Expr::Target {
            name: xt_name,
            rev,
            info,
        }
    })
}

fn be32(value: &[u8], context: &str, name: &str) -> Result<u32, DecodeError> {
    fixed::<4>(value, context, name).map(u32::from_be_bytes)
}

fn be64(value: &[u8], context: &str, name: &str) -> Result<u64, DecodeError> {
    fixed::<8>(value, context, name).map(u64::from_be_bytes)
}

/// A NUL-terminated string attribute (`NLA_STRING`, names of at most `NFT_NAME_MAXLEN`).
fn string(value: &[u8], context: &str, name: &str) -> Result<String, DecodeError> {
    let text = value.split(|&b| b == 0).next().unwrap_or_default();
    std::str::from_utf8(text)
        .map(str::to_owned)
        .map_err(|_| DecodeError::new(format!("{context}: {name} is not UTF-8: {text:?}")))
}

/// `NFT_NAME_MAXLEN`: the longest table, chain or set name with its NUL.
const NFT_NAME_MAXLEN: usize = 256;

/// A table, chain or set name: a string no longer than the kernel allows, so that a request
/// naming it (a set's elements) is well-formed whatever a recording holds.
fn name(value: &[u8], context: &str, field: &str) -> Result<String, DecodeError> {
    let text = string(value, context, field)?;
    if text.len() >= NFT_NAME_MAXLEN {
        return Err(DecodeError::new(format!(
            "{context}: {field} is {} bytes long, the kernel allows {}",
            text.len(),
            NFT_NAME_MAXLEN - 1
        )));
    }
    Ok(text)
}

/// Appends a NUL-terminated string attribute.
pub(super) fn put_str(buf: &mut Vec<u8>, kind: u16, value: &str) {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    put(buf, kind, &bytes);
}
