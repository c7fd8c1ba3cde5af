/* Seed of the btf_base fuzz target: the members and prototypes the loader looks up
 * (ipvs-trace/src/offsets.rs FIELDS, src/loader/probes.rs PROBES), shaped as the kernel
 * declares them (include/net/ip_vs.h of 6.12: anonymous unions, typedefs, atomic_t, a nested
 * `ns.inum`, bitfields beside the members read), so that a vmlinux-only BTF made from it by
 * GCC's own BTF encoder (`gcc -gbtf -c`, run by `cargo xtask fuzz`) answers every lookup.
 * Kernels with CONFIG_IP_VS=y carry exactly such types in vmlinux. Not a kernel header: the
 * sizes match, the offsets need not. */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef __u16 __be16;
typedef __u32 __be32;
typedef struct { int counter; } atomic_t;

union nf_inet_addr {
	__u32 all[4];
	__be32 ip;
	__be32 ip6[4];
	struct { __be32 in; } in;
};

struct ns_common { void *stashed; unsigned int inum; int count; };
struct net { int passive; struct ns_common ns; };
typedef struct { struct net *net; } possible_net_t;
struct netns_ipvs { int gen; int enable; struct net *net; };

struct sk_buff {
	union { struct { struct sk_buff *next, *prev; }; int rbnode; };
	unsigned int len, data_len;
	__u8 cloned:1, nohdr:1;
	unsigned char *head, *data;
};

struct ip_vs_scheduler { void *n_list; char *name; atomic_t refcnt; };

struct ip_vs_service {
	void *s_list;
	__u16 af;
	__u16 protocol;
	union nf_inet_addr addr;
	__be16 port;
	__u32 fwmark;
	unsigned int flags;
	struct ip_vs_scheduler *scheduler;
	struct netns_ipvs *ipvs;
};

struct ip_vs_dest {
	void *n_list;
	__u16 af;
	__be16 port;
	union nf_inet_addr addr;
	volatile unsigned int flags;
	atomic_t conn_flags;
	atomic_t weight;
	atomic_t last_weight;
	__u16 tun_type;
	atomic_t activeconns;
	atomic_t inactconns;
	struct ip_vs_service *svc;
};

struct ip_vs_conn {
	void *c_list;
	__be16 cport, dport, vport;
	__u16 af;
	union nf_inet_addr caddr, vaddr, daddr;
	volatile __u32 flags;
	__u16 protocol;
	__u16 daf;
	struct netns_ipvs *ipvs;
	__u16 state;
	__u16 old_state;
	struct ip_vs_dest *dest;
};

struct ip_vs_iphdr {
	int hdr_flags;
	__u32 off;
	__u32 len;
	__u16 fragoffs;
	short pad;
	union nf_inet_addr saddr;
	union nf_inet_addr daddr;
};

struct ip_vs_conn *ip_vs_conn_new(const void *p, int dest_af, const union nf_inet_addr *daddr,
				  __be16 dport, unsigned int flags, struct ip_vs_dest *dest,
				  __u32 fwmark)
{
	return 0;
}

void tcp_state_transition(struct ip_vs_conn *cp, int direction, const struct sk_buff *skb,
			  void *pd)
{
}

struct ip_vs_conn *ip_vs_schedule(struct ip_vs_service *svc, struct sk_buff *skb,
				  void *pd, int *ignored, struct ip_vs_iphdr *iph)
{
	return 0;
}
