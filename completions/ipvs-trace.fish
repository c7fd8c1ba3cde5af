# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ipvs_trace_global_optspecs
    string join \n h/help V/version
end

function __fish_ipvs_trace_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ipvs_trace_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ipvs_trace_using_subcommand
    set -l cmd (__fish_ipvs_trace_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -s h -l help -d 'Print help'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "trace" -d 'Print every IPVS scheduling decision as it happens'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "rules" -d 'Show the IPVS virtual services and their real servers, with Kubernetes names'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "balance" -d 'Judge how each virtual service spreads new connections over its real servers'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "check" -d 'Check whether this node can be traced, and how well: run it first on a new node'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "serve" -d 'Run headless for Prometheus: trace every decision and serve metrics, print nothing per event (the DaemonSet\'s command)'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "top" -d 'Live view of a hot node: per virtual service, new connections, reused entries and refusals per second, and how each backend shares them'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "who" -d 'Which pod served a past connection, or which clients a pod, backend or Service got'
complete -c ipvs-trace -n "__fish_ipvs_trace_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -s o -l output -d 'Output format: `table` for people, `json` for one object per line (stable field names)' -r -f -a "table\t'Aligned columns for people, one line per event, with a header line'
json\t'One JSON object per line, for programs; the field names are a stable contract'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l vip -d 'Only connections to this virtual service address (ClusterIP, external or LoadBalancer IP, node IP of a NodePort); with a port, only that service port' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l backend -d 'Only connections sent to this real server (pod IP), optionally on this port. Excludes `no_dest` events, which have no real server' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l client -d 'Only connections from this client IP (any source port)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''
sctp\t''"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l event -d 'Only these event kinds, comma separated: new, template, reused, no_dest (see above). Only their probes are attached: without reused, no probe runs per packet; without no_dest, none on ip_vs_leave (`check --event` shows the same)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l count -d 'Stop after printing N events (counted after the filters)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l duration -d 'Stop after this long: e.g. 30s, 500ms, 5m, 1h, 1m30s' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l btf -d 'Kernel type information (split BTF of the ip_vs module, e.g. produced offline by pahole) for full detail on kernels without /sys/kernel/btf/ip_vs (without it, 5.x/6.x kernels are traced with a built-in layout: README "Kernels without module BTF")' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l ring-size -d 'Size of the kernel-to-user ring buffer: a power of two, a multiple of the page size; suffixes K and M (binary) allowed, e.g. 1M. Raise it if events are reported lost' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l attach -d 'How the probes hook the kernel. auto: each through a BPF trampoline (fentry/fexit: no trap, the cheapest) where the kernel takes one (module BTF, 5.11+; fexit 5.17+; root or CAP_SYS_ADMIN to find ip_vs\'s BTF), a kprobe otherwise, saying why. fentry: trampolines only, failing where the kernel cannot. kprobe: kprobes only. The tracing line and `ipvs-trace check --attach MODE` show what each probe gets' -r -f -a "auto\t'fentry/fexit where the kernel takes them, kprobes for the others'
fentry\t'fentry/fexit for every probe, or fail saying why not'
kprobe\t'kprobes/kretprobes only'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l dataplane -d 'The dataplanes to trace, comma separated: ipvs (kube-proxy\'s IPVS mode: virtual services), nftables and iptables (kube-proxy\'s netfilter modes: the DNAT binding of each new connection, whose endpoint a random rule chose). Default: every dataplane the node has, so a node half-way through a migration shows both; each event says its `dataplane`. Without ipvs no IPVS probe is attached; without nftables and iptables, no netfilter one' -r -f -a "ipvs\t'IPVS virtual services (kube-proxy `--proxy-mode=ipvs`)'
nftables\t'kube-proxy\'s `ip kube-proxy` / `ip6 kube-proxy` nf_tables tables (`--proxy-mode=nftables`)'
iptables\t'kube-proxy\'s `KUBE-SERVICES` chains in the iptables `nat` table, legacy or nf_tables backed (`--proxy-mode=iptables`)'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l debug-dump-netlink -d 'With --nat: also write each raw conntrack netlink reply to DIR (the decoder\'s test material)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l kubeconfig -d 'Watch the cluster of this kubeconfig (its current context) for names. Without it, the cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service account when running in a pod; with none of them, addresses only. Needs list and watch on pods, services, nodes and endpointslices (see README)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l kube-snapshot -d 'Kubernetes names from a snapshot instead of a live cluster: the output of `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in several files is taken from the last' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l namespace -d 'Only events whose Service, backend pod or client pod is in this namespace (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l service -d 'Only connections to this Service, or to one named port of it (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l pod -d 'Only events whose backend pod or client pod is this one (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l metrics-addr -d 'Serve Prometheus metrics of the traced events on ADDR (/metrics, and /healthz): a bare port listens on 127.0.0.1, IP:PORT (e.g. 0.0.0.0:9808) on that address. Counts what passes the filters, like the summary. Off by default' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l debug-kprobe-target -d 'Attach the probe meant for kernel function FUNCTION to SYMBOL instead (tests use it to provoke an attach failure)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l wait -d 'If the ip_vs module is not loaded yet, wait for it instead of failing'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -s n -l numeric -d 'Table: show addresses, not Kubernetes names (JSON always carries both)'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l nat -d 'Show each connection\'s addresses before and after IPVS (client -> VIP:port becomes client -> pod:port for Masq) and, with net.ipv4.vs.conntrack=1, its conntrack entry, whose reply tuple is what the pod answers to (needs CAP_NET_ADMIN and nf_conntrack_netlink). Lines wait for their lookup, at most half a second'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l no-kube -d 'Never contact the Kubernetes API, even when a cluster is configured: addresses only'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -l metrics-no-backend -d 'With --metrics-addr: leave the backend label out of the connection counters (and the per-backend table metrics), to bound the number of series on large clusters'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand trace" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -s o -l output -d 'Output format: table (for people) or json (one document with every field; the field names are a stable contract, see docs/rules.md)' -r -f -a "table\t'Aligned columns for people, one line per event, with a header line'
json\t'One JSON object per line, for programs; the field names are a stable contract'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l vip -d 'Only virtual services on this address (ClusterIP, external or LoadBalancer IP, node IP of a NodePort); with a port, only that service port' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l backend -d 'Only this real server (pod IP), optionally on this port: the services that have it, with only its line' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l proto -d 'Only virtual services of this protocol (firewall-mark services have none)' -r -f -a "tcp\t''
udp\t''
sctp\t''"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l kubeconfig -d 'Watch the cluster of this kubeconfig (its current context) for names. Without it, the cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service account when running in a pod; with none of them, addresses only. Needs list and watch on pods, services, nodes and endpointslices (see README)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l kube-snapshot -d 'Kubernetes names from a snapshot instead of a live cluster: the output of `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in several files is taken from the last' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l namespace -d 'Only virtual services of a Service in this namespace, or with a real server that is a pod of it (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l service -d 'Only the virtual services of this Service, or of one named port of it (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l debug-dump-netlink -d 'Also write each raw netlink reply to DIR (the decoder\'s test material)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l stats -d 'Table: counters since each service and real server was added (Conns, InPkts, OutPkts, InBytes, OutBytes, exact) instead of the connection counts'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l rate -d 'Table: current rates (CPS, InPPS, OutPPS, InBPS, OutBPS) instead of the connection counts'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -s n -l numeric -d 'Table: show addresses only, not Kubernetes names (JSON always carries both)'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -l no-kube -d 'Never contact the Kubernetes API, even when a cluster is configured: addresses only'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand rules" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -s o -l output -d 'Output format: table (for people) or json (one document; the field names are a stable contract, see docs/balance.md)' -r -f -a "table\t'Aligned columns for people, one line per event, with a header line'
json\t'One JSON object per line, for programs; the field names are a stable contract'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l duration -d 'Length of the window: e.g. 30s, 5m, 1h. Without it, until Ctrl-C' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l tolerance -d 'Largest relative error of a backend\'s count that is still balanced (0.05 = 5 %)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l vip -d 'Only virtual services on this address; with a port, only that service port' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l proto -d 'Only virtual services of this protocol' -r -f -a "tcp\t''
udp\t''
sctp\t''"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l btf -d 'Kernel type information (split BTF of the ip_vs module, e.g. produced offline by pahole) for full detail on kernels without /sys/kernel/btf/ip_vs (without it, 5.x/6.x kernels are traced with a built-in layout: README "Kernels without module BTF")' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l ring-size -d 'Size of the kernel-to-user ring buffer: a power of two, a multiple of the page size; suffixes K and M (binary) allowed, e.g. 1M. Raise it if events are reported lost' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l attach -d 'How the probes hook the kernel. auto: each through a BPF trampoline (fentry/fexit: no trap, the cheapest) where the kernel takes one (module BTF, 5.11+; fexit 5.17+; root or CAP_SYS_ADMIN to find ip_vs\'s BTF), a kprobe otherwise, saying why. fentry: trampolines only, failing where the kernel cannot. kprobe: kprobes only. The tracing line and `ipvs-trace check --attach MODE` show what each probe gets' -r -f -a "auto\t'fentry/fexit where the kernel takes them, kprobes for the others'
fentry\t'fentry/fexit for every probe, or fail saying why not'
kprobe\t'kprobes/kretprobes only'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l dataplane -d 'The dataplanes to trace, comma separated: ipvs (kube-proxy\'s IPVS mode: virtual services), nftables and iptables (kube-proxy\'s netfilter modes: the DNAT binding of each new connection, whose endpoint a random rule chose). Default: every dataplane the node has, so a node half-way through a migration shows both; each event says its `dataplane`. Without ipvs no IPVS probe is attached; without nftables and iptables, no netfilter one' -r -f -a "ipvs\t'IPVS virtual services (kube-proxy `--proxy-mode=ipvs`)'
nftables\t'kube-proxy\'s `ip kube-proxy` / `ip6 kube-proxy` nf_tables tables (`--proxy-mode=nftables`)'
iptables\t'kube-proxy\'s `KUBE-SERVICES` chains in the iptables `nat` table, legacy or nf_tables backed (`--proxy-mode=iptables`)'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l kubeconfig -d 'Watch the cluster of this kubeconfig (its current context) for names. Without it, the cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service account when running in a pod; with none of them, addresses only. Needs list and watch on pods, services, nodes and endpointslices (see README)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l kube-snapshot -d 'Kubernetes names from a snapshot instead of a live cluster: the output of `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in several files is taken from the last' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l namespace -d 'Only virtual services of a Service in this namespace, or with a real server that is a pod of it (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l service -d 'Only the virtual services of this Service, or of one named port of it (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l check -d 'Exit with a status that says whether the services are balanced (see below)'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l wait -d 'If the ip_vs module is not loaded yet, wait for it instead of failing'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -l no-kube -d 'Never contact the Kubernetes API, even when a cluster is configured: addresses only'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand balance" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand check" -l btf -d 'Split BTF of the ip_vs module to check instead of /sys/kernel/btf/ip_vs (as `trace --btf`)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand check" -l event -d 'Check what `trace --event KIND[,KIND...]` would attach: only the probes of those kinds (new, template: ip_vs_conn_new; reused: tcp_state_transition, which runs per packet; no_dest: ip_vs_leave). Without it, every probe, as serve, top and balance attach them' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand check" -l attach -d 'Check what `trace --attach MODE` would attach: auto (a trampoline where the kernel takes one, a kprobe otherwise), fentry or kprobe. The kernel alone can refuse a trampoline that looks possible here (`check` loads nothing): trace then says so' -r -f -a "auto\t'fentry/fexit where the kernel takes them, kprobes for the others'
fentry\t'fentry/fexit for every probe, or fail saying why not'
kprobe\t'kprobes/kretprobes only'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand check" -l dataplane -d 'Check what `trace --dataplane LIST` would attach: ipvs (the probes on ip_vs), nftables and iptables (the probe on nf_nat). Without it, every dataplane' -r -f -a "ipvs\t'IPVS virtual services (kube-proxy `--proxy-mode=ipvs`)'
nftables\t'kube-proxy\'s `ip kube-proxy` / `ip6 kube-proxy` nf_tables tables (`--proxy-mode=nftables`)'
iptables\t'kube-proxy\'s `KUBE-SERVICES` chains in the iptables `nat` table, legacy or nf_tables backed (`--proxy-mode=iptables`)'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand check" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l metrics-addr -d 'Serve /metrics and /healthz on ADDR: a bare port listens on 127.0.0.1, IP:PORT (e.g. 0.0.0.0:9808) on that address' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l history-size -d 'Decisions kept in memory, newest kept: the last N decisions answer queries even without --history-dir. About 80 bytes each (names are shared with the index, not copied): the default takes about 75 MiB' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l history-dir -d 'Also keep every decision on disk in DIR (created, mode 0700), so that a restart of serve (upgrade, OOM kill) keeps them and `who --history-dir DIR` reads them offline. Damaged or foreign files in DIR are reported and left alone' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l history-max-bytes -d 'Bound of the disk history: the oldest decisions go first once DIR holds more than BYTES (suffixes K, M, G: binary)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l history-max-age -d 'Bound of the disk history: decisions older than this go (e.g. 24h, 7d)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l api-socket -d 'The query API\'s Unix socket (mode 0600, its directory created): `who` asks here' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l api-addr -d 'Also serve the query API over TCP on IP:PORT. Decision records say who talked to which pod: keep it on a loopback address (a warning says so otherwise)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l btf -d 'Kernel type information (split BTF of the ip_vs module, e.g. produced offline by pahole) for full detail on kernels without /sys/kernel/btf/ip_vs (without it, 5.x/6.x kernels are traced with a built-in layout: README "Kernels without module BTF")' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l ring-size -d 'Size of the kernel-to-user ring buffer: a power of two, a multiple of the page size; suffixes K and M (binary) allowed, e.g. 1M. Raise it if events are reported lost' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l attach -d 'How the probes hook the kernel. auto: each through a BPF trampoline (fentry/fexit: no trap, the cheapest) where the kernel takes one (module BTF, 5.11+; fexit 5.17+; root or CAP_SYS_ADMIN to find ip_vs\'s BTF), a kprobe otherwise, saying why. fentry: trampolines only, failing where the kernel cannot. kprobe: kprobes only. The tracing line and `ipvs-trace check --attach MODE` show what each probe gets' -r -f -a "auto\t'fentry/fexit where the kernel takes them, kprobes for the others'
fentry\t'fentry/fexit for every probe, or fail saying why not'
kprobe\t'kprobes/kretprobes only'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l dataplane -d 'The dataplanes to trace, comma separated: ipvs (kube-proxy\'s IPVS mode: virtual services), nftables and iptables (kube-proxy\'s netfilter modes: the DNAT binding of each new connection, whose endpoint a random rule chose). Default: every dataplane the node has, so a node half-way through a migration shows both; each event says its `dataplane`. Without ipvs no IPVS probe is attached; without nftables and iptables, no netfilter one' -r -f -a "ipvs\t'IPVS virtual services (kube-proxy `--proxy-mode=ipvs`)'
nftables\t'kube-proxy\'s `ip kube-proxy` / `ip6 kube-proxy` nf_tables tables (`--proxy-mode=nftables`)'
iptables\t'kube-proxy\'s `KUBE-SERVICES` chains in the iptables `nat` table, legacy or nf_tables backed (`--proxy-mode=iptables`)'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l kubeconfig -d 'Watch the cluster of this kubeconfig (its current context) for names. Without it, the cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service account when running in a pod; with none of them, addresses only. Needs list and watch on pods, services, nodes and endpointslices (see README)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l kube-snapshot -d 'Kubernetes names from a snapshot instead of a live cluster: the output of `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in several files is taken from the last' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l metrics-no-backend -d 'Leave the backend label out of the connection counters (and the per-backend table metrics), to bound the number of series on large clusters'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l log-decisions -d 'Write every decision as a JSON line (the `trace -o json` contract) on stdout, for the cluster\'s log collector (Fluent Bit, Vector, Promtail)'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -l no-kube -d 'Never contact the Kubernetes API, even when a cluster is configured: addresses only'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand serve" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l interval -d 'Refresh interval: e.g. 1s, 500ms, 5s' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l iterations -d 'Stop after N frames (live or --batch). Without it, until q, Ctrl-C or SIGTERM' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l vip -d 'Only connections to this virtual service address; with a port, only that service port' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l backend -d 'Only connections sent to this real server (pod IP), optionally on this port' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l proto -d 'Only this protocol' -r -f -a "tcp\t''
udp\t''
sctp\t''"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l btf -d 'Kernel type information (split BTF of the ip_vs module, e.g. produced offline by pahole) for full detail on kernels without /sys/kernel/btf/ip_vs (without it, 5.x/6.x kernels are traced with a built-in layout: README "Kernels without module BTF")' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l ring-size -d 'Size of the kernel-to-user ring buffer: a power of two, a multiple of the page size; suffixes K and M (binary) allowed, e.g. 1M. Raise it if events are reported lost' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l attach -d 'How the probes hook the kernel. auto: each through a BPF trampoline (fentry/fexit: no trap, the cheapest) where the kernel takes one (module BTF, 5.11+; fexit 5.17+; root or CAP_SYS_ADMIN to find ip_vs\'s BTF), a kprobe otherwise, saying why. fentry: trampolines only, failing where the kernel cannot. kprobe: kprobes only. The tracing line and `ipvs-trace check --attach MODE` show what each probe gets' -r -f -a "auto\t'fentry/fexit where the kernel takes them, kprobes for the others'
fentry\t'fentry/fexit for every probe, or fail saying why not'
kprobe\t'kprobes/kretprobes only'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l dataplane -d 'The dataplanes to trace, comma separated: ipvs (kube-proxy\'s IPVS mode: virtual services), nftables and iptables (kube-proxy\'s netfilter modes: the DNAT binding of each new connection, whose endpoint a random rule chose). Default: every dataplane the node has, so a node half-way through a migration shows both; each event says its `dataplane`. Without ipvs no IPVS probe is attached; without nftables and iptables, no netfilter one' -r -f -a "ipvs\t'IPVS virtual services (kube-proxy `--proxy-mode=ipvs`)'
nftables\t'kube-proxy\'s `ip kube-proxy` / `ip6 kube-proxy` nf_tables tables (`--proxy-mode=nftables`)'
iptables\t'kube-proxy\'s `KUBE-SERVICES` chains in the iptables `nat` table, legacy or nf_tables backed (`--proxy-mode=iptables`)'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l kubeconfig -d 'Watch the cluster of this kubeconfig (its current context) for names. Without it, the cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service account when running in a pod; with none of them, addresses only. Needs list and watch on pods, services, nodes and endpointslices (see README)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l kube-snapshot -d 'Kubernetes names from a snapshot instead of a live cluster: the output of `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in several files is taken from the last' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l namespace -d 'Only connections whose Service, backend pod or client pod is in this namespace (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l service -d 'Only connections to this Service, or to one named port of it (needs Kubernetes names)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -s b -l batch -d 'Plain text, one frame per interval, instead of the live view (automatic when stdout is not a terminal)'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l wait -d 'If the ip_vs module is not loaded yet, wait for it instead of failing'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -l no-kube -d 'Never contact the Kubernetes API, even when a cluster is configured: addresses only'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand top" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l backend -d 'Decisions that sent connections to this real server (pod IP), optionally this port' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l pod -d 'Decisions whose backend pod or client pod is this one, as named when they were made' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l service -d 'Decisions for this Service, or for one named port of it' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l since -d 'Only decisions at or after this time: RFC 3339 (2026-12-07T14:03:00Z) or a duration back from now (90s, 30m, 1h)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l until -d 'Only decisions at or before this time (same forms as --since)' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l limit -d 'At most N decisions: the newest that match, printed oldest first' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -s o -l output -d 'Output format: `table` for people, `json` for the JSON lines of `trace -o json`, as the source wrote them' -r -f -a "table\t'Aligned columns for people, one line per event, with a header line'
json\t'One JSON object per line, for programs; the field names are a stable contract'"
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l server -d 'Ask this serve: unix:PATH (its --api-socket) or http://IP:PORT (its --api-addr). Without it, serve on unix:/run/ipvs-trace/api.sock, or the kernel\'s connection tables when no serve runs there' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l history-dir -d 'Read this history directory (serve --history-dir) here, without serve' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l cluster-namespace -d 'With --cluster: the namespace of the ipvs-trace DaemonSet' -r
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l debug-dump-netlink -d 'Without a serve: also write each raw conntrack netlink reply to DIR (the decoder\'s test material)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l kubeconfig -d 'Watch the cluster of this kubeconfig (its current context) for names. Without it, the cluster is found as kubectl finds it: KUBECONFIG, ~/.kube/config, or the service account when running in a pod; with none of them, addresses only. Needs list and watch on pods, services, nodes and endpointslices (see README)' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l kube-snapshot -d 'Kubernetes names from a snapshot instead of a live cluster: the output of `kubectl get pods,services,endpointslices,nodes -A -o json`. Repeatable; an object in several files is taken from the last' -r -F
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l cluster -d 'Ask the ipvs-trace pod of every node, through the Kubernetes API (pods/exec), and merge the answers by time'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -l no-kube -d 'Never contact the Kubernetes API, even when a cluster is configured: addresses only'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand who" -s V -l version -d 'Print version'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "trace" -d 'Print every IPVS scheduling decision as it happens'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "rules" -d 'Show the IPVS virtual services and their real servers, with Kubernetes names'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "balance" -d 'Judge how each virtual service spreads new connections over its real servers'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "check" -d 'Check whether this node can be traced, and how well: run it first on a new node'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "serve" -d 'Run headless for Prometheus: trace every decision and serve metrics, print nothing per event (the DaemonSet\'s command)'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "top" -d 'Live view of a hot node: per virtual service, new connections, reused entries and refusals per second, and how each backend shares them'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "who" -d 'Which pod served a past connection, or which clients a pod, backend or Service got'
complete -c ipvs-trace -n "__fish_ipvs_trace_using_subcommand help; and not __fish_seen_subcommand_from trace rules balance check serve top who help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
