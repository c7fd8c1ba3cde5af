//! The synthetic cluster of `ipvs-trace/src/kube/index/synthetic.rs` (which the pipeline
//! benchmark indexes directly), as the `kubectl get -o json` List the lab's API server and
//! `--kube-snapshot` read: the same counts, names and addresses, so `memory` measures the index
//! the pipeline benchmark looks names up in. xtask does not link ipvs-trace, hence the copy of
//! the layout: 500 nodes (192.168.0.0/16), 100k pods (10.0.0.0/8), 20k Services (172.16.0.0/12,
//! ports http 80 -> 8080 and grpc 50091, every fifth a NodePort), one EndpointSlice of 5 pods
//! per Service. Each object carries the fields a real one has around what ipvs-trace reads
//! (labels, a container, conditions), so listing and decoding cost what they cost on a cluster.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context as _, Result};

pub const NODES: u32 = 500;
pub const PODS: u32 = 100_000;
pub const SERVICES: u32 = 20_000;
pub const ENDPOINTS_PER_SERVICE: u32 = 5;

pub fn pod_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + n)
}

pub fn cluster_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xac10_0000 + n)
}

fn node_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xc0a8_0000 + n)
}

fn node_port(s: u32) -> Option<u32> {
    s.is_multiple_of(5).then(|| 30000 + (s / 5) % 2768)
}

/// A pod lives in its Service's namespace (pods 5s..5s+4 back Service s).
fn pod_namespace(p: u32) -> u32 {
    (p / ENDPOINTS_PER_SERVICE) % 200
}

/// Writes the List to `path`; returns the number of objects.
pub fn write(path: &Path) -> Result<u32> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut objects = Vec::new();
    let mut line = String::new();
    let mut first = true;
    let mut emit = |line: &mut String, out: &mut std::io::BufWriter<_>| -> Result<()> {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        out.write_all(line.as_bytes())?;
        line.clear();
        Ok(())
    };
    out.write_all(b"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[")?;
    for n in 0..NODES {
        write!(
            line,
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"node-{n}","labels":{{"kubernetes.io/hostname":"node-{n}","kubernetes.io/os":"linux"}}}},"spec":{{"podCIDR":"10.{}.0.0/24"}},"status":{{"addresses":[{{"type":"InternalIP","address":"{}"}},{{"type":"Hostname","address":"node-{n}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
            n % 256,
            node_ip(n)
        )?;
        emit(&mut line, &mut out)?;
    }
    objects.push(NODES);
    for p in 0..PODS {
        let s = p / ENDPOINTS_PER_SERVICE;
        write!(
            line,
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pod-5d8f7c9b6-abcde-{p:06}","namespace":"ns-{ns}","labels":{{"app":"svc-{s:06}","pod-template-hash":"5d8f7c9b6"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"svc-{s:06}-5d8f7c9b6","uid":"00000000-0000-4000-8000-{s:012}","controller":true}}]}},"spec":{{"nodeName":"node-{node}","containers":[{{"name":"app","image":"registry.example/app:1.{s}","ports":[{{"name":"http","containerPort":8080,"protocol":"TCP"}},{{"name":"grpc","containerPort":50091,"protocol":"TCP"}}]}}]}},"status":{{"phase":"Running","hostIP":"{host}","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
            ns = pod_namespace(p),
            node = p % NODES,
            host = node_ip(p % NODES),
            ip = pod_ip(p),
        )?;
        emit(&mut line, &mut out)?;
    }
    objects.push(PODS);
    for s in 0..SERVICES {
        let (kind, node_port) = match node_port(s) {
            Some(port) => ("NodePort", format!(r#","nodePort":{port}"#)),
            None => ("ClusterIP", String::new()),
        };
        write!(
            line,
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"svc-{s:06}","namespace":"ns-{ns}","labels":{{"app":"svc-{s:06}"}}}},"spec":{{"type":"{kind}","clusterIP":"{ip}","clusterIPs":["{ip}"],"selector":{{"app":"svc-{s:06}"}},"ports":[{{"name":"http","protocol":"TCP","port":80,"targetPort":8080{node_port}}},{{"name":"grpc","protocol":"TCP","port":50091,"targetPort":50091}}]}}}}"#,
            ns = s % 200,
            ip = cluster_ip(s),
        )?;
        emit(&mut line, &mut out)?;
    }
    objects.push(SERVICES);
    for s in 0..SERVICES {
        write!(
            line,
            r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"svc-{s:06}-x7k2p","namespace":"ns-{ns}","labels":{{"kubernetes.io/service-name":"svc-{s:06}"}}}},"addressType":"IPv4","ports":[{{"name":"http","protocol":"TCP","port":8080}},{{"name":"grpc","protocol":"TCP","port":50091}}],"endpoints":["#,
            ns = s % 200,
        )?;
        for e in 0..ENDPOINTS_PER_SERVICE {
            let p = s * ENDPOINTS_PER_SERVICE + e;
            write!(
                line,
                r#"{}{{"addresses":["{}"],"conditions":{{"ready":true,"serving":true,"terminating":false}},"nodeName":"node-{}","targetRef":{{"kind":"Pod","name":"pod-5d8f7c9b6-abcde-{p:06}","namespace":"ns-{}"}}}}"#,
                if e == 0 { "" } else { "," },
                pod_ip(p),
                p % NODES,
                pod_namespace(p),
            )?;
        }
        line.push_str("]}");
        emit(&mut line, &mut out)?;
    }
    objects.push(SERVICES);
    out.write_all(b"\n]}\n")?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(objects.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_objects_form_one_list() {
        let path = std::env::temp_dir().join(format!("bench-cluster-{}.json", std::process::id()));
        let objects = write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(objects, 140_500);
        assert!(text.starts_with("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n{"));
        assert!(text.ends_with("}\n]}\n"));
        assert_eq!(
            text.matches("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",")
                .count(),
            100_000
        );
        // Every object on a line of its own, and as many `{` as `}`.
        assert_eq!(text.lines().count(), 140_500 + 2);
        assert_eq!(text.matches('{').count(), text.matches('}').count());
        assert_eq!(text.matches("\"kind\":\"EndpointSlice\"").count(), 20_000);
        assert!(text.contains(r#""clusterIP":"172.16.0.1","#));
        assert!(text.contains(r#""podIP":"10.0.0.5","#));
    }
}
