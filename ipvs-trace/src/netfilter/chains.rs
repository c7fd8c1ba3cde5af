//! A table's chains as [`RuleView`]s, with its numgen verdict maps: what
//! [`super::walk`] follows, built from an nf_tables dump (or from the legacy iptables
//! table, [`super::legacy`]).

use std::collections::HashMap;

use super::nft::{Data, TableDump, Verdict};
use super::rule::RuleView;
use super::walk::Chains;

/// Chains by name and verdict maps by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChainMap {
    pub chains: HashMap<String, Vec<RuleView>>,
    pub maps: HashMap<String, Vec<(u32, Verdict)>>,
}

impl ChainMap {
    /// The chains and verdict maps of an nf_tables table. Only maps with 4-byte keys are
    /// kept: a `numgen` value is one 32-bit register, in host byte order.
    #[must_use]
    pub fn from_dump(dump: &TableDump) -> ChainMap {
        let mut chains: HashMap<String, Vec<RuleView>> = dump
            .chains
            .iter()
            .map(|c| (c.name.clone(), Vec::new()))
            .collect();
        for rule in &dump.rules {
            chains
                .entry(rule.chain.clone())
                .or_default()
                .push(RuleView::from_exprs(&rule.exprs, dump.id.family));
        }
        let maps = dump
            .sets
            .iter()
            .filter(|(set, _)| set.is_verdict_map() && set.key_len == 4)
            .filter_map(|(set, elements)| {
                let elements = elements
                    .as_ref()?
                    .iter()
                    .filter_map(|e| {
                        let key = u32::from_ne_bytes(e.key.as_slice().try_into().ok()?);
                        match &e.data {
                            Some(Data::Verdict(v)) => Some((key, v.clone())),
                            _ => None,
                        }
                    })
                    .collect();
                Some((set.name.clone(), elements))
            })
            .collect();
        ChainMap { chains, maps }
    }

    #[must_use]
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.contains_key(name)
    }
}

impl Chains for ChainMap {
    fn chain(&self, name: &str) -> Option<&[RuleView]> {
        self.chains.get(name).map(Vec::as_slice)
    }

    fn vmap(&self, set: &str) -> Option<&[(u32, Verdict)]> {
        self.maps.get(set).map(Vec::as_slice)
    }
}
