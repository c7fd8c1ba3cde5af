//! One ctnetlink reply to a conntrack lookup (`trace --nat`), decoded by the same
//! `get_reply` the lookup worker uses. The request's sequence number is taken from the first
//! message's header, as the recorded replies carry theirs, so that inputs reach past the
//! sequence check; a later message of another sequence is still refused.

#![no_main]

use ipvs_trace::conntrack::get_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // struct nlmsghdr: len u32, type u16, flags u16, seq u32 (host byte order).
    let seq = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let _ = get_reply(data, seq);
});
