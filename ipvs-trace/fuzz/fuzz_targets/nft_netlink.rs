//! The nf_tables replies of one read of kube-proxy's netfilter rules (the generation, the
//! tables, then per table its chains, rules, sets and set elements, the generation again),
//! separated by `REPLY_SEPARATOR`, through the `NetfilterRules::from_transport` the tool uses
//! on the kernel's socket: the decoder, the rule reader, the walk through the chains and both
//! kube-proxy models.

#![no_main]

use ipvs_trace::netfilter::NetfilterRules;
use ipvs_trace_fuzz::Replies;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = NetfilterRules::from_transport(&mut Replies::new(data));
});
