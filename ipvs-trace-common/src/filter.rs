//! The filter the probes apply before they reserve a record (`trace --vip`, `--backend`,
//! `--client`, `--proto`, `--event`): a decision that cannot match is counted in
//! [`crate::drop::FILTERED`] and costs no ring space, no wakeup and no userspace work.
//!
//! It is a pre-filter: it never drops a decision userspace would show (userspace applies the
//! whole filter again, with the name filters the kernel does not know), so every count stays
//! exact: seen = filtered out + matched, matched = read + lost.

/// An address the filter compares with: `addr` as the kernel's `union nf_inet_addr` holds it
/// (in 32-bit words, network byte order in memory; IPv4 in the first word), `af` its family
/// (`AF_INET` 2, `AF_INET6` 10), `port` in host order. Words, not bytes, so that the probes
/// compare with four loads at most and no `memcmp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterAddr {
    pub addr: [u32; 4],
    pub af: u16,
    pub port: u16,
}

impl FilterAddr {
    /// No address (a test that is not set).
    pub const NONE: FilterAddr = FilterAddr {
        addr: [0; 4],
        af: 0,
        port: 0,
    };
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Which tests of [`KernelFilter`] apply.
pub mod test {
    /// The VIP's address equals `vip`...
    pub const VIP: u32 = 1 << 0;
    /// ... and its port `vip.port`.
    pub const VIP_PORT: u32 = 1 << 1;
    /// The backend's address equals `backend` (a decision without a backend never does)...
    pub const BACKEND: u32 = 1 << 2;
    /// ... and its port `backend.port`.
    pub const BACKEND_PORT: u32 = 1 << 3;
    /// The client's address equals `client`.
    pub const CLIENT: u32 = 1 << 4;
    /// The protocol number equals `proto`.
    pub const PROTO: u32 = 1 << 5;
    /// The VIP is in [`crate::NAMED_VIPS_MAP`], or the backend's or the client's address in
    /// [`crate::NAMED_IPS_MAP`]: the addresses the name filters (`--service`, `--namespace`,
    /// `--pod`) resolve to, kept current by userspace as the names change.
    pub const NAMES: u32 = 1 << 6;
}

/// A key of [`crate::NAMED_VIPS_MAP`] and [`crate::NAMED_IPS_MAP`]. In the VIP map `port` is
/// the Service port, and a key with `af` 0 and no address is a NodePort (any node address); in
/// the IP map `port` is [`ROLE_BACKEND`] or [`ROLE_CLIENT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamedKey {
    pub addr: [u32; 4],
    pub af: u16,
    pub port: u16,
}

/// [`NamedKey::port`] of a pod IP as a backend.
pub const ROLE_BACKEND: u16 = 1;
/// [`NamedKey::port`] of a pod IP as a client.
pub const ROLE_CLIENT: u16 = 2;
/// Entries of each named-address map when a trace has name filters: a name filter that
/// resolves to more (a namespace of more pods) is not applied in the kernel, only in
/// userspace. The maps are preallocated, about 80 bytes an entry: 1.3 MiB each.
pub const NAMED_MAX: u32 = 16_384;

/// The one entry of [`crate::FILTER_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFilter {
    /// Bit `1 << kind` set for every [`crate::EventKind`] to deliver.
    pub kinds: u32,
    /// [`test`] bits: the tests that apply, all of them.
    pub tests: u32,
    pub vip: FilterAddr,
    pub backend: FilterAddr,
    pub client: FilterAddr,
    /// `IPPROTO_*`.
    pub proto: u16,
    /// Explicit padding, always zero.
    pub pad: u16,
}

impl KernelFilter {
    /// The bits of every kind (1 to 5). An entry userspace has not written is all zero and
    /// delivers nothing, so it writes the entry before it attaches the probes.
    pub const ALL_KINDS: u32 = 0b11_1110;

    /// Every decision of every kind: what `top`, `balance` and `serve` ask for.
    pub const EVERYTHING: KernelFilter = KernelFilter {
        kinds: KernelFilter::ALL_KINDS,
        tests: 0,
        vip: FilterAddr::NONE,
        backend: FilterAddr::NONE,
        client: FilterAddr::NONE,
        proto: 0,
        pad: 0,
    };

    /// Whether decisions of kind `kind` (an [`crate::EventKind`] as `u32`) are delivered.
    #[must_use]
    pub const fn wants_kind(&self, kind: u32) -> bool {
        kind < 32 && self.kinds & (1 << kind) != 0
    }
}

const _: () = assert!(size_of::<FilterAddr>() == 20);
const _: () = assert!(size_of::<NamedKey>() == 20);
const _: () = assert!(size_of::<KernelFilter>() == 72);

#[cfg(feature = "user")]
// SAFETY: plain old data, `#[repr(C)]`, no padding holes (asserted above), any bit pattern valid.
unsafe impl aya::Pod for KernelFilter {}

#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for NamedKey {}
