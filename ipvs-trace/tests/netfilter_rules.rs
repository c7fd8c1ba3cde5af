//! kube-proxy's netfilter rules read from a real kernel: in a network namespace of its own,
//! the test programs a kube-proxy-shaped nftables ruleset (`nft -f`, both families) and a
//! kube-proxy-shaped iptables ruleset (`iptables-restore`, `ip6tables-restore`: the
//! nf_tables backend, Debian's default), then reads them with [`NetfilterRules::read`] and
//! with `ipvs-trace rules -o json`, and compares both with what it programmed and with the
//! kernel's own listings (`nft -j list ruleset`, `iptables-save`).
//!
//! Each test re-runs this test binary under `unshare -n` (the namespace dies with it); it
//! is skipped, saying why, when not run as root or when nft, iptables-restore or unshare is
//! missing. `NETFILTER_RECORD=DIR` also writes the raw nf_tables replies to DIR (the
//! captures of the decoder's unit tests, `tests/netfilter/`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use ipvs_trace::dataplane::Dataplane;
use ipvs_trace::netfilter::{NetfilterRules, Source};

/// Set in the child that runs inside the new network namespace.
const CHILD: &str = "IPVS_TRACE_NETFILTER_NETNS";

/// One Service port as the test programs it.
struct Svc {
    /// `namespace/name/port-name`.
    ns: &'static str,
    name: &'static str,
    port_name: &'static str,
    proto: &'static str,
    vip: &'static str,
    port: u16,
    external_ip: Option<&'static str>,
    node_port: Option<u16>,
    endpoints: &'static [(&'static str, u16)],
    /// ClientIP affinity (nftables: affinity sets and their rules).
    affinity: bool,
}

impl Svc {
    fn label(&self) -> String {
        format!("{}/{}:{}", self.ns, self.name, self.port_name)
    }

    fn base(&self, hash: &str) -> String {
        format!(
            "{hash}-{}/{}/{}/{}",
            self.ns, self.name, self.proto, self.port_name
        )
    }

    fn v6(&self) -> bool {
        self.vip.contains(':')
    }

    fn sockaddr(ip: &str, port: u16) -> SocketAddr {
        let text = if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        text.parse().unwrap()
    }
}

const NFT_SERVICES: &[Svc] = &[
    Svc {
        ns: "ns1",
        name: "svc1",
        port_name: "p80",
        proto: "tcp",
        vip: "172.30.0.41",
        port: 80,
        external_ip: None,
        node_port: None,
        endpoints: &[
            ("10.180.0.1", 8080),
            ("10.180.0.2", 8080),
            ("10.180.0.3", 8080),
        ],
        affinity: false,
    },
    Svc {
        ns: "ns2",
        name: "dns",
        port_name: "dns",
        proto: "udp",
        vip: "172.30.0.42",
        port: 53,
        external_ip: None,
        node_port: None,
        endpoints: &[("10.180.0.4", 53)],
        affinity: false,
    },
    Svc {
        ns: "ns3",
        name: "web",
        port_name: "https",
        proto: "tcp",
        vip: "172.30.0.43",
        port: 443,
        external_ip: Some("192.168.99.33"),
        node_port: Some(30443),
        endpoints: &[("10.180.0.5", 8443), ("10.180.0.6", 8443)],
        affinity: true,
    },
    Svc {
        ns: "ns1",
        name: "svc6",
        port_name: "http",
        proto: "tcp",
        vip: "fd00:30::41",
        port: 80,
        external_ip: None,
        node_port: Some(30680),
        endpoints: &[("fd00:180::1", 80), ("fd00:180::2", 80)],
        affinity: false,
    },
];

const IPT_SERVICES: &[Svc] = &[
    Svc {
        ns: "ns4",
        name: "api",
        port_name: "http",
        proto: "tcp",
        vip: "172.30.1.10",
        port: 80,
        external_ip: None,
        node_port: Some(30080),
        endpoints: &[
            ("10.181.0.1", 8080),
            ("10.181.0.2", 8080),
            ("10.181.0.3", 8080),
        ],
        affinity: false,
    },
    Svc {
        ns: "ns5",
        name: "dns",
        port_name: "dns",
        proto: "udp",
        vip: "172.30.1.11",
        port: 53,
        external_ip: None,
        node_port: None,
        endpoints: &[("10.181.0.4", 53)],
        affinity: false,
    },
    Svc {
        ns: "ns6",
        name: "v6",
        port_name: "http",
        proto: "tcp",
        vip: "fd00:31::10",
        port: 80,
        external_ip: None,
        node_port: None,
        endpoints: &[("fd00:181::1", 80), ("fd00:181::2", 80)],
        affinity: false,
    },
];

/// The node address IPv6 node ports are limited to (`nodeport-ips`, as kube-proxy writes it
/// for `--nodeport-addresses`); IPv4 node ports take every local address.
const NODE_IP6: &str = "fd00:99::2";

/// kube-proxy's nftables table of one family, as `pkg/proxy/nftables/proxier.go` writes it.
fn nft_table(v6: bool) -> String {
    let (family, ip, addr_type) = if v6 {
        ("ip6", "ip6", "ipv6_addr")
    } else {
        ("ip", "ip", "ipv4_addr")
    };
    let mut t = String::new();
    writeln!(
        t,
        "table {family} kube-proxy {{
	comment \"rules for kube-proxy\"
	set cluster-ips {{
		type {addr_type}
		comment \"Active ClusterIPs\"
	}}"
    )
    .unwrap();
    if v6 {
        writeln!(
            t,
            "	set nodeport-ips {{
		type {addr_type}
		comment \"IPs that accept NodePort traffic\"
		elements = {{ {NODE_IP6} }}
	}}"
        )
        .unwrap();
    }
    writeln!(
        t,
        "	map service-ips {{
		type {addr_type} . inet_proto . inet_service : verdict
		comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"
	}}
	map service-nodeports {{
		type inet_proto . inet_service : verdict
		comment \"NodePort traffic\"
	}}
	chain nat-prerouting {{
		type nat hook prerouting priority -100; policy accept;
		jump services
	}}
	chain nat-output {{
		type nat hook output priority -100; policy accept;
		jump services
	}}
	chain nat-postrouting {{
		type nat hook postrouting priority 100; policy accept;
		jump masquerading
	}}
	chain mark-for-masquerade {{
		mark set mark or 0x4000
	}}
	chain masquerading {{
		mark and 0x4000 == 0 return
		mark set mark xor 0x4000
		masquerade fully-random
	}}"
    )
    .unwrap();
    let nodeports = if v6 {
        format!("{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
    } else {
        format!(
            "fib daddr type local {ip} daddr != 127.0.0.0/8 meta l4proto . th dport vmap \
             @service-nodeports"
        )
    };
    writeln!(
        t,
        "	chain services {{
		{ip} daddr . meta l4proto . th dport vmap @service-ips
		{nodeports}
	}}"
    )
    .unwrap();
    let mut elements = String::new();
    for (i, svc) in NFT_SERVICES.iter().filter(|s| s.v6() == v6).enumerate() {
        nft_service(&mut t, &mut elements, i, svc);
    }
    t.push_str("}\n");
    t + &elements
}

/// The nftables words of a Service's family: `ip`/`ip6`, and the address type.
fn nft_family(svc: &Svc) -> (&'static str, &'static str) {
    if svc.v6() {
        ("ip6", "ipv6_addr")
    } else {
        ("ip", "ipv4_addr")
    }
}

/// kube-proxy's per-endpoint chain of endpoint `j` of Service `i`
/// (`endpoint-HASH-ns/name/proto/port__ip/port`, an IPv6 address with dots).
fn endpoint_chain(i: usize, j: usize, svc: &Svc) -> String {
    let (addr, port) = svc.endpoints[j];
    format!(
        "endpoint-EPHASH{i}{j}-{}/{}/{}/{}__{}/{port}",
        svc.ns,
        svc.name,
        svc.proto,
        svc.port_name,
        addr.replace(':', ".")
    )
}

/// One Service port's chains (into `t`, inside the table) and map elements (into `elements`,
/// after it), as kube-proxy writes them; `i` makes its chain names unique.
fn nft_service(t: &mut String, elements: &mut String, i: usize, svc: &Svc) {
    let (ip, addr_type) = nft_family(svc);
    let pod_cidr = if svc.v6() {
        "fd00:10::/64"
    } else {
        "10.0.0.0/8"
    };
    let service = format!("service-{}", svc.base(&format!("SVCHASH{i}")));
    let affinity = |j| endpoint_chain(i, j, svc).replacen("endpoint-", "affinity-", 1);
    let endpoints = 0..svc.endpoints.len();
    if svc.affinity {
        for j in endpoints.clone() {
            writeln!(
                t,
                "	set {} {{
		type {addr_type}
		flags dynamic,timeout
		timeout 3h
	}}",
                affinity(j)
            )
            .unwrap();
        }
    }
    writeln!(t, "	chain {service} {{").unwrap();
    writeln!(
        t,
        "		{ip} daddr {} {} dport {} {ip} saddr != {pod_cidr} jump mark-for-masquerade",
        svc.vip, svc.proto, svc.port
    )
    .unwrap();
    if svc.affinity {
        for j in endpoints.clone() {
            let chain = endpoint_chain(i, j, svc);
            writeln!(t, "		{ip} saddr @{} goto {chain}", affinity(j)).unwrap();
        }
    }
    let vmap: Vec<String> = endpoints
        .clone()
        .map(|j| format!("{j} : goto {}", endpoint_chain(i, j, svc)))
        .collect();
    writeln!(
        t,
        "		numgen random mod {} vmap {{ {} }}
	}}",
        svc.endpoints.len(),
        vmap.join(", ")
    )
    .unwrap();
    for j in endpoints {
        let (addr, port) = svc.endpoints[j];
        writeln!(t, "	chain {} {{", endpoint_chain(i, j, svc)).unwrap();
        writeln!(t, "		{ip} saddr {addr} jump mark-for-masquerade").unwrap();
        if svc.affinity {
            writeln!(t, "		update @{} {{ {ip} saddr }}", affinity(j)).unwrap();
        }
        writeln!(
            t,
            "		meta l4proto {} dnat to {}
	}}",
            svc.proto,
            Svc::sockaddr(addr, port)
        )
        .unwrap();
    }
    nft_elements(t, elements, i, svc, &service);
}

/// The map elements of Service `i`, and its `external-` chain when it has external addresses
/// or a node port.
fn nft_elements(t: &mut String, elements: &mut String, i: usize, svc: &Svc, service: &str) {
    let (family, _) = nft_family(svc);
    writeln!(
        elements,
        "add element {family} kube-proxy cluster-ips {{ {} }}
add element {family} kube-proxy service-ips {{ {} . {} . {} : goto {service} }}",
        svc.vip, svc.vip, svc.proto, svc.port
    )
    .unwrap();
    if svc.external_ip.is_none() && svc.node_port.is_none() {
        return;
    }
    let external = format!("external-{}", svc.base(&format!("SVCHASH{i}")));
    writeln!(
        t,
        "	chain {external} {{
		jump mark-for-masquerade
		goto {service}
	}}"
    )
    .unwrap();
    if let Some(ip) = svc.external_ip {
        writeln!(
            elements,
            "add element {family} kube-proxy service-ips {{ {ip} . {} . {} : goto {external} }}",
            svc.proto, svc.port
        )
        .unwrap();
    }
    if let Some(np) = svc.node_port {
        writeln!(
            elements,
            "add element {family} kube-proxy service-nodeports {{ {} . {np} : goto {external} }}",
            svc.proto
        )
        .unwrap();
    }
}

/// kube-proxy's iptables `nat` rules of one family, as `pkg/proxy/iptables/proxier.go`
/// writes them (`iptables-restore` input).
fn iptables_rules(v6: bool) -> String {
    let pod_cidr = if v6 { "fd00:11::/64" } else { "10.0.0.0/8" };
    let prefix = if v6 { "128" } else { "32" };
    let mut chains = String::from(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
",
    );
    let mut rules = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
",
    );
    for (i, svc) in IPT_SERVICES.iter().filter(|s| s.v6() == v6).enumerate() {
        let svc_chain = format!("KUBE-SVC-SVCHASH{i}AAAAAAAA");
        let ext_chain = format!("KUBE-EXT-SVCHASH{i}AAAAAAAA");
        let label = svc.label();
        let (proto, vip, port) = (svc.proto, svc.vip, svc.port);
        writeln!(chains, ":{svc_chain} - [0:0]").unwrap();
        writeln!(
            rules,
            "-A KUBE-SERVICES -m comment --comment \"{label} cluster IP\" -m {proto} -p {proto} \
             -d {vip}/{prefix} --dport {port} -j {svc_chain}
-A {svc_chain} -m comment --comment \"{label} cluster IP\" -m {proto} -p {proto} -d {vip}/{prefix} \
             --dport {port} ! -s {pod_cidr} -j KUBE-MARK-MASQ"
        )
        .unwrap();
        if let Some(np) = svc.node_port {
            writeln!(chains, ":{ext_chain} - [0:0]").unwrap();
            writeln!(
                rules,
                "-A KUBE-NODEPORTS -m comment --comment {label} -m {proto} -p {proto} --dport {np} \
                 -j {ext_chain}
-A {ext_chain} -m comment --comment \"masquerade traffic for {label} external destinations\" \
                 -j KUBE-MARK-MASQ
-A {ext_chain} -j {svc_chain}"
            )
            .unwrap();
        }
        let n = svc.endpoints.len();
        for (j, (addr, ep_port)) in svc.endpoints.iter().enumerate() {
            let sep = format!("KUBE-SEP-EPHASH{i}{j}AAAAAAAAA");
            writeln!(chains, ":{sep} - [0:0]").unwrap();
            let statistic = if j + 1 < n {
                format!(
                    "-m statistic --mode random --probability {:.10} ",
                    1.0 / f64::from(u32::try_from(n - j).unwrap())
                )
            } else {
                String::new()
            };
            let to = if v6 {
                format!("[{addr}]:{ep_port}")
            } else {
                format!("{addr}:{ep_port}")
            };
            writeln!(
                rules,
                "-A {svc_chain} -m comment --comment \"{label} -> {to}\" {statistic}-j {sep}
-A {sep} -m comment --comment {label} -s {addr}/{prefix} -j KUBE-MARK-MASQ
-A {sep} -m comment --comment {label} -m {proto} -p {proto} -j DNAT --to-destination {to}"
            )
            .unwrap();
        }
    }
    rules.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must \
         be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
",
    );
    chains + &rules
}

/// Runs `program args`, feeding it `input`; panics with its output when it fails.
fn run(program: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\ninput:\n{input}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn program() {
    run("nft", &["-f", "-"], &(nft_table(false) + &nft_table(true)));
    run("iptables-restore", &[], &iptables_rules(false));
    run("ip6tables-restore", &[], &iptables_rules(true));
}

/// What a Service should read as: (proto, vip, name, endpoints with their share).
type Expected = BTreeMap<(String, SocketAddr), (String, Vec<(SocketAddr, f64)>)>;

/// `node_ip6`: the address IPv6 node ports are limited to (none: every local address).
fn expected(services: &[Svc], node_ip6: Option<&str>) -> Expected {
    let mut want = Expected::new();
    for svc in services {
        let n = f64::from(u32::try_from(svc.endpoints.len()).unwrap());
        let endpoints: Vec<(SocketAddr, f64)> = svc
            .endpoints
            .iter()
            .map(|(ip, port)| (Svc::sockaddr(ip, *port), 1.0 / n))
            .collect();
        let proto = svc.proto.to_uppercase();
        let mut vips = vec![Svc::sockaddr(svc.vip, svc.port)];
        vips.extend(svc.external_ip.map(|ip| Svc::sockaddr(ip, svc.port)));
        if let Some(np) = svc.node_port {
            let node = match (svc.v6(), node_ip6) {
                (true, Some(ip)) => ip,
                (true, None) => "::",
                (false, _) => "0.0.0.0",
            };
            vips.push(Svc::sockaddr(node, np));
        }
        for vip in vips {
            want.insert((proto.clone(), vip), (svc.label(), endpoints.clone()));
        }
    }
    want
}

fn read_as_expected(rules: &NetfilterRules, dataplane: Dataplane) -> Expected {
    rules
        .services()
        .iter()
        .filter(|s| s.dataplane() == dataplane)
        .map(|s| {
            (
                (s.proto.to_string(), s.vip),
                (
                    s.name.clone().unwrap_or_default(),
                    s.endpoints
                        .iter()
                        .map(|e| (e.addr, e.probability))
                        .collect(),
                ),
            )
        })
        .collect()
}

fn assert_same(got: &Expected, want: &Expected, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the Service addresses"
    );
    for (key, (name, endpoints)) in want {
        let (got_name, got_endpoints) = &got[key];
        assert_eq!(got_name, name, "{what}: {key:?}");
        assert_eq!(got_endpoints.len(), endpoints.len(), "{what}: {key:?}");
        for ((got_addr, got_p), (addr, p)) in got_endpoints.iter().zip(endpoints) {
            assert_eq!(got_addr, addr, "{what}: {key:?}");
            // iptables' probabilities are fractions of 2^31 printed with 10 decimals.
            assert!(
                (got_p - p).abs() < 1e-9,
                "{what}: {key:?} {addr}: {got_p} != {p}"
            );
        }
    }
}

/// Runs `test` in a new network namespace (this test binary again, under `unshare -n`), or
/// says why it cannot.
fn in_new_netns(test: &str, tools: &[&str], body: fn()) {
    if std::env::var_os(CHILD).is_some() {
        body();
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: {test} needs root (it programs netfilter in a new network namespace)");
        return;
    }
    for tool in ["unshare"].iter().chain(tools) {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        if !found {
            println!("skipped: {test} needs {tool} (Debian's nftables and iptables packages)");
            return;
        }
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("-n")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{test} failed in its network namespace"
    );
}

/// The rules of this namespace; with `NETFILTER_RECORD=DIR`, recorded there too.
fn read() -> NetfilterRules {
    match std::env::var_os("NETFILTER_RECORD") {
        Some(dir) => NetfilterRules::read_recording(Path::new(&dir)),
        None => NetfilterRules::read(),
    }
    .expect("reads")
}

#[test]
fn reader_equals_what_was_programmed() {
    let tools = [
        "nft",
        "iptables-restore",
        "ip6tables-restore",
        "iptables-save",
    ];
    in_new_netns("reader_equals_what_was_programmed", &tools, || {
        program();
        let rules = read();
        assert_eq!(rules.modes(), [Dataplane::Nftables, Dataplane::Iptables]);
        assert_eq!(
            NetfilterRules::present_modes().unwrap(),
            [Dataplane::Nftables, Dataplane::Iptables]
        );
        assert!(rules.notices().is_empty(), "{:?}", rules.notices());
        assert_same(
            &read_as_expected(&rules, Dataplane::Nftables),
            &expected(NFT_SERVICES, Some(NODE_IP6)),
            "nftables",
        );
        assert_same(
            &read_as_expected(&rules, Dataplane::Iptables),
            &expected(IPT_SERVICES, None),
            "iptables",
        );
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for (proto, dst, local, want) in [
            (6, "172.30.0.41:80", false, Some(Dataplane::Nftables)),
            (17, "172.30.0.41:80", false, None),
            (6, "192.168.99.33:443", false, Some(Dataplane::Nftables)),
            (6, "10.1.2.3:30443", true, Some(Dataplane::Nftables)),
            (6, "10.1.2.3:30443", false, None),
            (6, "[fd00:99::2]:30680", true, Some(Dataplane::Nftables)),
            (6, "[fd00:99::3]:30680", true, None),
            (6, "172.30.1.10:80", false, Some(Dataplane::Iptables)),
            (17, "172.30.1.11:53", false, Some(Dataplane::Iptables)),
            (6, "10.1.2.3:30080", true, Some(Dataplane::Iptables)),
            (6, "[fd00:31::10]:80", false, Some(Dataplane::Iptables)),
        ] {
            assert_eq!(
                rules.dataplane_of(proto, addr(dst), local),
                want,
                "dataplane_of({proto}, {dst}, {local})"
            );
        }
        assert_kernel_view(&rules);
        assert_rules_json(&rules);
    });
}

/// `ipvs-trace rules -o json` in the namespace: without ip_vs (this host has none, or it is
/// not in this namespace's tables) the netfilter Services, each as read, with its dataplane.
fn assert_rules_json(rules: &NetfilterRules) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipvs-trace"))
        .args(["rules", "-o", "json", "--no-kube"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rules -o json: {stderr}");
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let netfilter: Vec<&serde_json::Value> = document["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["dataplane"] != "ipvs")
        .collect();
    assert_eq!(netfilter.len(), rules.services().len(), "{document}");
    for (json, service) in netfilter.iter().zip(rules.services()) {
        assert_eq!(json["dataplane"], service.dataplane().as_str());
        assert_eq!(json["vip"], service.vip.to_string());
        assert_eq!(json["proto"], service.proto.to_string());
        assert_eq!(json["scheduler"], "random");
        assert_eq!(json["kube_proxy_name"], service.name.as_deref().unwrap());
        assert!(json["stats"].is_null() && json["flags"].is_null());
        let dests = json["dests"].as_array().unwrap();
        assert_eq!(dests.len(), service.endpoints.len());
        for (dest, endpoint) in dests.iter().zip(&service.endpoints) {
            assert_eq!(dest["backend"], endpoint.addr.to_string());
            assert_eq!(dest["probability"], endpoint.probability);
            assert!(dest["weight"].is_null() && dest["fwd"].is_null());
        }
    }
    let dataplanes = &document["dataplanes"];
    assert!(
        dataplanes
            .as_array()
            .unwrap()
            .ends_with(&["nftables".into(), "iptables".into()]),
        "{dataplanes}"
    );
}

/// A namespace with no rules of any kind: without ip_vs, the error that says to load it.
#[test]
fn nothing_at_all() {
    in_new_netns("nothing_at_all", &["nft"], || {
        assert!(NetfilterRules::present_modes().unwrap().is_empty());
        // kube-proxy's table without a Service is a mode all the same.
        run("nft", &["add", "table", "ip", "kube-proxy"], "");
        assert_eq!(
            NetfilterRules::present_modes().unwrap(),
            [Dataplane::Nftables]
        );
        run("nft", &["delete", "table", "ip", "kube-proxy"], "");
        let out = Command::new(env!("CARGO_BIN_EXE_ipvs-trace"))
            .args(["rules", "--no-kube"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if Path::new("/proc/net/ip_vs").exists() {
            assert!(out.status.success(), "{stderr}");
            assert!(stderr.contains("no virtual services"), "{stderr}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("ip_vs is not loaded") && stderr.contains("modprobe ip_vs"),
                "{stderr}"
            );
        }
    });
}

/// The legacy xtables (iptables-legacy): the same iptables rules, read with getsockopt.
#[test]
fn legacy_iptables_equals_what_was_programmed() {
    let tools = ["iptables-legacy-restore", "ip6tables-legacy-restore"];
    in_new_netns("legacy_iptables_equals_what_was_programmed", &tools, || {
        run("iptables-legacy-restore", &[], &iptables_rules(false));
        run("ip6tables-legacy-restore", &[], &iptables_rules(true));
        let rules = read();
        assert_eq!(rules.modes(), [Dataplane::Iptables]);
        assert_eq!(
            NetfilterRules::present_modes().unwrap(),
            [Dataplane::Iptables]
        );
        assert!(rules.notices().is_empty(), "{:?}", rules.notices());
        assert!(rules
            .services()
            .iter()
            .all(|s| s.source == Source::IptablesLegacy));
        assert_same(
            &read_as_expected(&rules, Dataplane::Iptables),
            &expected(IPT_SERVICES, None),
            "iptables-legacy",
        );
        let save = run("iptables-legacy-save", &["-t", "nat"], "")
            + &run("ip6tables-legacy-save", &["-t", "nat"], "");
        assert_iptables_view(&rules, &save);
    });
}

/// Every endpoint's chain DNATs to it in the kernel's own listings (`nft -j list ruleset`,
/// `iptables-save`), and every iptables Service address jumps to its chain there.
fn assert_kernel_view(rules: &NetfilterRules) {
    let ruleset: serde_json::Value =
        serde_json::from_str(&run("nft", &["-j", "list", "ruleset"], "")).unwrap();
    let items = ruleset["nftables"].as_array().unwrap();
    let save =
        run("iptables-save", &["-t", "nat"], "") + &run("ip6tables-save", &["-t", "nat"], "");
    assert_iptables_view(rules, &save);
    let nft_services = rules
        .services()
        .iter()
        .filter(|s| s.dataplane() == Dataplane::Nftables);
    for endpoint in nft_services.flat_map(|s| &s.endpoints) {
        let dnat = items.iter().find_map(|item| {
            let rule = item.get("rule")?;
            (rule["table"] == "kube-proxy" && rule["chain"] == endpoint.chain.as_str())
                .then_some(())?;
            rule["expr"]
                .as_array()?
                .iter()
                .find_map(|e| e.get("dnat").cloned())
        });
        let dnat = dnat.unwrap_or_else(|| {
            panic!("no dnat in chain {} in nft -j list ruleset", endpoint.chain)
        });
        let chain = &endpoint.chain;
        assert_eq!(dnat["addr"], endpoint.addr.ip().to_string(), "{chain}");
        assert_eq!(dnat["port"], endpoint.addr.port(), "{chain}");
    }
}

/// Every iptables endpoint's chain DNATs to it in `save` (iptables-save's output), and every
/// Service address jumps to its chain there.
fn assert_iptables_view(rules: &NetfilterRules, save: &str) {
    for service in rules.services() {
        if service.dataplane() != Dataplane::Iptables {
            continue;
        }
        for endpoint in &service.endpoints {
            let to = format!("--to-destination {}", endpoint.addr);
            assert!(
                save.lines()
                    .any(|l| l.starts_with(&format!("-A {} ", endpoint.chain)) && l.ends_with(&to)),
                "no `-A {} ... {to}` in iptables-save:\n{save}",
                endpoint.chain
            );
        }
        if !service.node_port {
            let dst = format!("-d {}/", service.vip.ip());
            assert!(
                save.lines().any(|l| l.starts_with("-A KUBE-SERVICES ")
                    && l.contains(&dst)
                    && l.contains(&format!("--dport {}", service.vip.port()))
                    && l.ends_with(&format!("-j {}", service.chain))),
                "{} not dispatched to {} in iptables-save",
                service.vip,
                service.chain
            );
        }
    }
}
