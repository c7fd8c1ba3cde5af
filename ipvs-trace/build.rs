//! Builds the eBPF programs (`ipvs-trace-ebpf`) for the BPF target with aya-build; `src/loader`
//! embeds the resulting object with `include_bytes_aligned!`.

fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "ipvs-trace-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ipvs-trace-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
}
