//! The readers and models on recorded kernel replies (`tests/netfilter/`, made by
//! `tests/netfilter_rules.rs` with `NETFILTER_RECORD=DIR` on a 6.18 kernel): the kube-proxy
//! shapes that test programs, read back without a kernel; and the same replies damaged,
//! which must give an error or fewer rules, never a panic.

use std::path::{Path, PathBuf};

use super::*;
use crate::ipvs::netlink::Transport;
use crate::ipvs::IpvsError;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/netfilter")
        .join(name)
}

fn service<'a>(rules: &'a NetfilterRules, vip: &str) -> &'a NfService {
    let vip: SocketAddr = vip.parse().unwrap();
    rules
        .services()
        .iter()
        .find(|s| s.vip == vip)
        .unwrap_or_else(|| panic!("{vip} not read"))
}

fn shares(service: &NfService) -> Vec<(String, f64)> {
    service
        .endpoints
        .iter()
        .map(|e| (e.addr.to_string(), e.probability))
        .collect()
}

fn close(got: &[(String, f64)], want: &[(&str, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((addr, p), (want_addr, want_p)) in got.iter().zip(want) {
        assert_eq!(addr, want_addr);
        assert!((p - want_p).abs() < 1e-9, "{addr}: {p} != {want_p}");
    }
}

#[test]
fn kube_proxy_nftables_and_iptables_nft() {
    let rules = NetfilterRules::replay(&capture("kube-proxy")).expect("replays");
    assert_eq!(rules.modes(), [Dataplane::Nftables, Dataplane::Iptables]);
    let third = 1.0 / 3.0;

    let svc1 = service(&rules, "172.30.0.41:80");
    assert_eq!(svc1.source, Source::NftKubeProxy);
    assert_eq!(svc1.name.as_deref(), Some("ns1/svc1:p80"));
    assert_eq!(svc1.chain, "service-SVCHASH0-ns1/svc1/tcp/p80");
    close(
        &shares(svc1),
        &[
            ("10.180.0.1:8080", third),
            ("10.180.0.2:8080", third),
            ("10.180.0.3:8080", third),
        ],
    );
    assert_eq!(
        svc1.endpoints[0].chain,
        "endpoint-EPHASH00-ns1/svc1/tcp/p80__10.180.0.1/8080"
    );
    // ClientIP affinity's rules depend on the client: passed by, the shares stay.
    let node_port = service(&rules, "0.0.0.0:30443");
    assert!(node_port.node_port && node_port.any_local());
    assert_eq!(node_port.chain, "external-SVCHASH2-ns3/web/tcp/https");
    close(
        &shares(node_port),
        &[("10.180.0.5:8443", 0.5), ("10.180.0.6:8443", 0.5)],
    );
    let v6 = service(&rules, "[fd00:99::2]:30680");
    assert_eq!(v6.family, Family::V6);
    close(
        &shares(v6),
        &[("[fd00:180::1]:80", 0.5), ("[fd00:180::2]:80", 0.5)],
    );

    // iptables-nft: 1/3, then 1/2 of the rest, then the rest (fractions of 2^31).
    let api = service(&rules, "172.30.1.10:80");
    assert_eq!(api.source, Source::IptablesNft);
    assert_eq!(api.name.as_deref(), Some("ns4/api:http"));
    close(
        &shares(api),
        &[
            ("10.181.0.1:8080", third),
            ("10.181.0.2:8080", third),
            ("10.181.0.3:8080", third),
        ],
    );
    let sum: f64 = api.endpoints.iter().map(|e| e.probability).sum();
    assert!((sum - 1.0).abs() < 1e-12, "{sum}");
    assert_eq!(
        service(&rules, "0.0.0.0:30080").dataplane(),
        Dataplane::Iptables
    );
    assert_eq!(rules.services().len(), 11);
}

#[test]
fn legacy_iptables() {
    let rules = NetfilterRules::replay(&capture("legacy")).expect("replays");
    assert_eq!(rules.modes(), [Dataplane::Iptables]);
    assert!(rules
        .services()
        .iter()
        .all(|s| s.source == Source::IptablesLegacy));
    let third = 1.0 / 3.0;
    close(
        &shares(service(&rules, "172.30.1.10:80")),
        &[
            ("10.181.0.1:8080", third),
            ("10.181.0.2:8080", third),
            ("10.181.0.3:8080", third),
        ],
    );
    close(
        &shares(service(&rules, "[fd00:31::10]:80")),
        &[("[fd00:181::1]:80", 0.5), ("[fd00:181::2]:80", 0.5)],
    );
    assert_eq!(
        service(&rules, "172.30.1.11:53").name.as_deref(),
        Some("ns5/dns:dns")
    );
    assert_eq!(rules.services().len(), 4);
}

/// The replies of a recording, in memory, with one of them replaced.
struct Mutated {
    replies: Vec<(String, Vec<u8>)>,
    next: usize,
}

impl Transport for Mutated {
    fn round_trip(&mut self, what: &'static str, _request: &[u8]) -> Result<Vec<u8>, IpvsError> {
        let reply = self.replies.get(self.next).map(|(_, bytes)| bytes.clone());
        self.next += 1;
        reply.ok_or_else(|| IpvsError::Io {
            what: format!("replaying {what}"),
            source: std::io::Error::other("no more replies"),
        })
    }
}

fn recording(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap())
        })
        .collect()
}

/// Every reply cut short at many lengths, and with bytes flipped at many places: an error or
/// a model, never a panic.
#[test]
fn damaged_replies_never_panic() {
    let replies = recording(&capture("kube-proxy"));
    let mut read = 0;
    for (i, (_, bytes)) in replies.iter().enumerate() {
        let step = (bytes.len() / 24).max(1);
        for at in (0..bytes.len()).step_by(step) {
            for damaged in [bytes[..at].to_vec(), {
                let mut b = bytes.clone();
                b[at] ^= 0xa5;
                b
            }] {
                let mut replies = replies.clone();
                replies[i].1 = damaged;
                let mut transport = Mutated { replies, next: 0 };
                if NetfilterRules::from_transport(&mut transport).is_ok() {
                    read += 1;
                }
            }
        }
    }
    // Some damage lands in bytes nothing reads (padding, counters, handles).
    assert!(read > 0);
}

#[test]
fn damaged_legacy_tables_never_panic() {
    for family in [Family::V4, Family::V6] {
        let path = capture("legacy").join(legacy_capture_name(family));
        let bytes = std::fs::read(&path).unwrap();
        assert!(legacy::parse_capture(family, &bytes).is_ok());
        for at in (0..bytes.len()).step_by(7) {
            let _ = legacy::parse_capture(family, &bytes[..at]);
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xff;
            let _ = legacy::parse_capture(family, &flipped);
        }
    }
}

/// The replies of another request (a recording out of order) are refused by sequence number.
#[test]
fn replies_out_of_order_are_refused() {
    let mut replies = recording(&capture("kube-proxy"));
    replies.swap(2, 3);
    let error =
        NetfilterRules::from_transport(&mut Mutated { replies, next: 0 }).expect_err("refused");
    assert!(format!("{error:#}").contains("request"), "{error:#}");
}
