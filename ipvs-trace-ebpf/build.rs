//! Rebuild the programs when bpf-linker changes: the linker is part of the toolchain that
//! produces the object, but cargo does not know about it.

fn main() {
    let linker =
        which::which("bpf-linker").expect("bpf-linker not found on PATH: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", linker.display());
}
