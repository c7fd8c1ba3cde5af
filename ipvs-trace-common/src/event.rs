//! The record the eBPF programs emit, one per IPVS decision.

/// What happened. Numbered once and never reused: the numbers are part of the record format.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A new connection entry was created and bound to a real server.
    New = 1,
    /// A persistence template (session affinity) was created.
    Template = 2,
    /// A new connection (TCP SYN) hit an existing entry: no scheduling happened.
    Reused = 3,
    /// The scheduler found no usable real server.
    NoDest = 4,
    /// A connection entry expired.
    Expire = 5,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::New,
        EventKind::Template,
        EventKind::Reused,
        EventKind::NoDest,
        EventKind::Expire,
    ];

    #[must_use]
    pub fn from_u32(value: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u32 == value)
    }

    /// The name used in the JSON contract and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Template => "template",
            EventKind::Reused => "reused",
            EventKind::NoDest => "no_dest",
            EventKind::Expire => "expire",
        }
    }
}

/// Fixed header of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// CPU the probe ran on.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()`: `CLOCK_MONOTONIC` nanoseconds.
    pub timestamp_ns: u64,
    /// Inode number of the network namespace owning the IPVS table (`cp->ipvs->net->ns.inum`).
    pub netns: u32,
    /// Which hook made the record: [`DATAPLANE_IPVS`] or [`DATAPLANE_NETFILTER`] (userspace
    /// tells kube-proxy's nftables and iptables modes apart).
    pub dataplane: u32,
}

/// [`EventHeader::dataplane`]: an IPVS connection entry.
pub const DATAPLANE_IPVS: u32 = 0;
/// [`EventHeader::dataplane`]: a netfilter DNAT binding (`nf_nat_setup_info`).
pub const DATAPLANE_NETFILTER: u32 = 1;

/// Bits of [`ConnEvent::valid`]: which optional parts the kernel could fill.
pub mod valid {
    /// `weight`, `active_conns`, `inactive_conns` come from the bound `ip_vs_dest`.
    pub const DEST: u32 = 1 << 0;
    /// `scheduler` holds the service's scheduler name.
    pub const SCHEDULER: u32 = 1 << 1;
    /// `header.netns` is set.
    pub const NETNS: u32 = 1 << 2;
    /// `backend_addr`/`backend_port` are set (absent for `no_dest`).
    pub const BACKEND: u32 = 1 << 3;
    /// `client_port` is set (for `no_dest` it is read from the packet and may be missing).
    pub const CLIENT_PORT: u32 = 1 << 4;
}

/// Length of `ip_vs_scheduler.name` buffers (`IP_VS_SCHEDNAME_MAXLEN` in the UAPI).
pub const SCHED_NAME_LEN: usize = 16;

/// One IPVS decision. Addresses are raw `union nf_inet_addr` bytes (IPv4 in the first four),
/// ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEvent {
    pub header: EventHeader,
    /// The `struct ip_vs_conn *` (an opaque id; 0 for `no_dest`).
    pub conn: u64,
    pub client_addr: [u8; 16],
    pub vip_addr: [u8; 16],
    pub backend_addr: [u8; 16],
    pub client_port: u16,
    pub vip_port: u16,
    pub backend_port: u16,
    /// Address family of client and VIP (`AF_INET` 2, `AF_INET6` 10).
    pub af: u16,
    /// Address family of the backend (differs from `af` for IPv4-in-IPv6 tunnels).
    pub daf: u16,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub protocol: u16,
    /// `ip_vs_conn.flags`; the low three bits are the forwarding method.
    pub flags: u32,
    /// `ip_vs_conn.state` (protocol specific).
    pub state: u32,
    pub weight: i32,
    pub active_conns: i32,
    pub inactive_conns: i32,
    /// Bits from [`valid`].
    pub valid: u32,
    /// NUL-padded scheduler name.
    pub scheduler: [u8; SCHED_NAME_LEN],
    /// Explicit padding, always zero.
    pub pad: u32,
}

impl ConnEvent {
    /// An all-zero record, the starting point both sides fill in.
    #[must_use]
    pub const fn zeroed() -> Self {
        ConnEvent {
            header: EventHeader {
                kind: 0,
                cpu: 0,
                timestamp_ns: 0,
                netns: 0,
                dataplane: 0,
            },
            conn: 0,
            client_addr: [0; 16],
            vip_addr: [0; 16],
            backend_addr: [0; 16],
            client_port: 0,
            vip_port: 0,
            backend_port: 0,
            af: 0,
            daf: 0,
            protocol: 0,
            flags: 0,
            state: 0,
            weight: 0,
            active_conns: 0,
            inactive_conns: 0,
            valid: 0,
            scheduler: [0; SCHED_NAME_LEN],
            pad: 0,
        }
    }
}

/// `IP_VS_CONN_F_FWD_MASK`: forwarding method in `ip_vs_conn.flags`.
pub const CONN_F_FWD_MASK: u32 = 0x0007;
/// `IP_VS_CONN_F_TEMPLATE`: the entry is a persistence template.
pub const CONN_F_TEMPLATE: u32 = 0x1000;

// The record layout is part of the kernel/user contract: catch accidental changes at compile time.
const _: () = assert!(size_of::<EventHeader>() == 24);
const _: () = assert!(size_of::<ConnEvent>() == 136);

#[cfg(feature = "user")]
// SAFETY: plain old data, `#[repr(C)]`, no padding holes (asserted above), any bit pattern valid.
unsafe impl aya::Pod for ConnEvent {}
