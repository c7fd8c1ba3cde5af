//! A vmlinux BTF file (raw, or an ELF object with a .BTF section) read as the loader reads
//! `/sys/kernel/btf/vmlinux`, then every question the loader and `check` ask of it.

#![no_main]

use std::path::Path;

use ipvs_trace::btf::Btf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = Btf::from_file_bytes(data, Path::new("fuzz-input"), None) {
        ipvs_trace_fuzz::loader_queries(btf);
    }
});
