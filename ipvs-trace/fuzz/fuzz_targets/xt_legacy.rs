//! A legacy xtables `nat` table as `getsockopt(IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES)` gives it,
//! through `netfilter::legacy::parse_capture` in both families, then the iptables model and
//! its walk through the chains, as `rules` reads iptables-legacy's rules.

#![no_main]

use ipvs_trace::ipvs::Family;
use ipvs_trace::netfilter::nft::Ruleset;
use ipvs_trace::netfilter::{legacy, NetfilterRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for family in [Family::V4, Family::V6] {
        if let Ok(chains) = legacy::parse_capture(family, data) {
            let rules =
                NetfilterRules::from_parts(&Ruleset::default(), &[(family, chains)], Vec::new());
            let _ = rules.services().len();
        }
    }
});
