//! An ip_vs module BTF file (raw split BTF as in `/sys/kernel/btf/ip_vs` or a `--btf` file,
//! or an ELF `.ko` with a .BTF section) on top of a real vmlinux BTF, then every question the
//! loader and `check` ask of it.

#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use ipvs_trace::btf::Btf;
use libfuzzer_sys::fuzz_target;

static BASE: LazyLock<Arc<Btf>> = LazyLock::new(ipvs_trace_fuzz::vmlinux_base);

fuzz_target!(|data: &[u8]| {
    let base = Arc::clone(&BASE);
    if let Ok(btf) = Btf::from_file_bytes(data, Path::new("fuzz-input"), Some(base)) {
        ipvs_trace_fuzz::loader_queries(btf);
    }
});
