//! The IPVS generic-netlink replies of one `ipvs-trace rules` run (family, info, services,
//! dests), separated by `REPLY_SEPARATOR`, read by the same `read_with` the tool uses on the
//! kernel's socket.

#![no_main]

use ipvs_trace::ipvs::read_with;
use ipvs_trace_fuzz::Replies;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_with(&mut Replies::new(data));
});
