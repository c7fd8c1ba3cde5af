//! The kernel side of ipvs-trace: programs on the IPVS connection-scheduling functions.
//!
//! Each hooked function has two thin entries, a kprobe (or kretprobe) and a BPF trampoline
//! program (fentry or fexit), which take the function's arguments their own way and call one
//! shared body (userspace attaches one of the two, `loader/probes.rs`); kernel
//! memory is read only through [`kernel`] with offsets userspace resolved from BTF; records go to
//! userspace through [`emit`], which counts every record it could not deliver.
#![no_std]
#![no_main]
#![expect(
    clippy::needless_pass_by_value,
    reason = "the aya-ebpf program macros hand each program its context by value"
)]

mod emit;
mod filter;
mod kernel;
mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible: bpf_probe_read_kernel and bpf_ktime_get_ns are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
