//! Ring-buffer records (from the eBPF side, possibly of another build) through the decoder,
//! and every decoded event through both output formats.

#![no_main]

use std::sync::LazyLock;

use ipvs_trace::clock::WallClock;
use ipvs_trace::events::decode::{decode, RECORD_LEN};
use ipvs_trace::kube::Names;
use ipvs_trace::output::{OutputFormat, Printer};
use libfuzzer_sys::fuzz_target;

static CLOCK: LazyLock<WallClock> =
    LazyLock::new(|| WallClock::capture().expect("the clocks of this machine"));

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data) else {
        return;
    };
    assert_eq!(
        data.len(),
        RECORD_LEN,
        "decoded a record of the wrong length"
    );
    let mut out = Vec::new();
    for format in [OutputFormat::Table, OutputFormat::Json] {
        let printer = Printer::new(format, *CLOCK);
        printer
            .event(&mut out, &event, &Names::NONE)
            .expect("writing into a Vec");
    }
});
