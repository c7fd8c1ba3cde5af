//! `rules -o json`: the IPVS tables and the netfilter Services, with their names, as one JSON
//! document.

use std::io::{self, Write};

use serde::Serialize;

use super::select::{Named, NamedNf, View};
use crate::dataplane::Dataplane;
use crate::ipvs::Stats;

/// `rules -o json`: one document; field names and order are a stable contract (docs/rules.md).
/// What a dataplane cannot supply is `null`, never a made-up value.
#[derive(Serialize)]
struct JsonTables<'a> {
    /// IPVS's version and connection table size; `null` without ip_vs.
    version: Option<String>,
    conn_table_size: Option<u32>,
    netns: Option<u64>,
    dataplanes: &'a [Dataplane],
    services: Vec<JsonService<'a>>,
}

#[derive(Serialize)]
struct JsonService<'a> {
    dataplane: Dataplane,
    proto: Option<String>,
    vip: Option<String>,
    fwmark: Option<u32>,
    family: &'static str,
    scheduler: &'a str,
    flags: Option<Vec<String>>,
    persistence_timeout: Option<u32>,
    persistence_netmask: Option<String>,
    persistence_engine: Option<&'a str>,
    service: Option<&'a str>,
    service_type: Option<&'static str>,
    /// `namespace/name:port` as kube-proxy wrote it in its chain names or comments.
    kube_proxy_name: Option<&'a str>,
    /// The chain the address leads to (`service-...`, `KUBE-SVC-...`).
    chain: Option<&'a str>,
    stats: Option<&'a Stats>,
    dests: Vec<JsonDest<'a>>,
}

#[derive(Serialize)]
struct JsonDest<'a> {
    backend: String,
    family: &'static str,
    fwd: Option<String>,
    weight: Option<u32>,
    active_conns: Option<u32>,
    inactive_conns: Option<u32>,
    persist_conns: Option<u32>,
    upper_threshold: Option<u32>,
    lower_threshold: Option<u32>,
    /// The share of new connections netfilter's random choice gives it.
    probability: Option<f64>,
    /// The chain that DNATs to it (`endpoint-...`, `KUBE-SEP-...`).
    chain: Option<&'a str>,
    backend_pod: Option<&'a str>,
    backend_node: Option<&'a str>,
    backend_terminating: Option<bool>,
    stats: Option<&'a Stats>,
}

/// The scheduler netfilter's modes have: a random choice per new connection.
const RANDOM: &str = "random";

fn ipvs_service<'a>(view: &'a Named<'_>) -> JsonService<'a> {
    let service = view.service;
    JsonService {
        dataplane: Dataplane::Ipvs,
        proto: service.proto.map(|p| p.to_string()),
        vip: service.addr.map(|a| a.to_string()),
        fwmark: service.fwmark,
        family: service.family.as_str(),
        scheduler: &service.scheduler,
        flags: Some(service.flags.names(&service.scheduler)),
        persistence_timeout: Some(service.timeout),
        persistence_netmask: Some(service.netmask.to_string()),
        persistence_engine: service.persistence_engine.as_deref(),
        service: view.name.as_ref().map(|n| &*n.label),
        service_type: view.name.as_ref().map(|n| n.service_type.as_str()),
        kube_proxy_name: None,
        chain: None,
        stats: Some(&service.stats),
        dests: view
            .dests
            .iter()
            .map(|(dest, backend)| JsonDest {
                backend: dest.addr.to_string(),
                family: dest.family.as_str(),
                fwd: Some(dest.fwd.to_string()),
                weight: Some(dest.weight),
                active_conns: Some(dest.active_conns),
                inactive_conns: Some(dest.inactive_conns),
                persist_conns: Some(dest.persist_conns),
                upper_threshold: Some(dest.upper_threshold),
                lower_threshold: Some(dest.lower_threshold),
                probability: None,
                chain: None,
                backend_pod: backend.as_ref().and_then(|b| b.pod.as_deref()),
                backend_node: backend.as_ref().and_then(|b| b.node.as_deref()),
                backend_terminating: backend.as_ref().and_then(|b| b.terminating),
                stats: Some(&dest.stats),
            })
            .collect(),
    }
}

/// A netfilter Service: no weights, counters, forwarding method or persistence (kube-proxy's
/// affinity is rules of its own, not a field).
fn netfilter_service<'a>(view: &'a NamedNf<'_>) -> JsonService<'a> {
    let service = view.service;
    JsonService {
        dataplane: service.dataplane(),
        proto: Some(service.proto.to_string()),
        vip: Some(service.vip.to_string()),
        fwmark: None,
        family: service.family.as_str(),
        scheduler: RANDOM,
        flags: None,
        persistence_timeout: None,
        persistence_netmask: None,
        persistence_engine: None,
        service: view.name.as_ref().map(|n| &*n.label),
        service_type: view.name.as_ref().map(|n| n.service_type.as_str()),
        kube_proxy_name: service.name.as_deref(),
        chain: Some(&service.chain),
        stats: None,
        dests: view
            .endpoints
            .iter()
            .map(|(endpoint, backend)| JsonDest {
                backend: endpoint.addr.to_string(),
                family: crate::netfilter::model::family_of(endpoint.addr.ip()).as_str(),
                fwd: None,
                weight: None,
                active_conns: None,
                inactive_conns: None,
                persist_conns: None,
                upper_threshold: None,
                lower_threshold: None,
                probability: Some(endpoint.probability),
                chain: Some(&endpoint.chain),
                backend_pod: backend.as_ref().and_then(|b| b.pod.as_deref()),
                backend_node: backend.as_ref().and_then(|b| b.node.as_deref()),
                backend_terminating: backend.as_ref().and_then(|b| b.terminating),
                stats: None,
            })
            .collect(),
    }
}

pub(super) fn write_json(out: &mut impl Write, view: &View<'_>) -> io::Result<()> {
    let document = JsonTables {
        version: view.tables.map(|t| t.info.version_string()),
        conn_table_size: view.tables.map(|t| t.info.conn_table_size),
        netns: view.netns,
        dataplanes: &view.dataplanes,
        services: view
            .ipvs
            .iter()
            .map(ipvs_service)
            .chain(view.netfilter.iter().map(netfilter_service))
            .collect(),
    };
    serde_json::to_writer(&mut *out, &document).map_err(io::Error::from)?;
    writeln!(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cmd::rules::select::RulesFilter;
    use crate::cmd::rules::{captured, captured_netfilter};
    use crate::ipvs::Tables;
    use crate::netfilter::NetfilterRules;
    use crate::output::tests::seed_index;

    fn document(
        tables: Option<&Tables>,
        rules: &NetfilterRules,
        filter: &RulesFilter,
    ) -> serde_json::Value {
        let index = seed_index();
        let view = View::new(tables, rules, Some(&index), filter, None);
        let mut out = Vec::new();
        write_json(&mut out, &view).unwrap();
        serde_json::from_slice(&out).expect("one JSON document")
    }

    /// The IPVS capture's document (no netfilter rules).
    pub(in crate::cmd::rules) fn json(filter: &RulesFilter) -> serde_json::Value {
        document(Some(&captured()), &NetfilterRules::default(), filter)
    }

    pub(in crate::cmd::rules) fn vips(document: &serde_json::Value) -> Vec<String> {
        document["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["vip"]
                    .as_str()
                    .map_or_else(|| format!("fwmark {}", s["fwmark"]), str::to_owned)
            })
            .collect()
    }

    const SERVICE_KEYS: [&str; 16] = [
        "chain",
        "dataplane",
        "dests",
        "family",
        "flags",
        "fwmark",
        "kube_proxy_name",
        "persistence_engine",
        "persistence_netmask",
        "persistence_timeout",
        "proto",
        "scheduler",
        "service",
        "service_type",
        "stats",
        "vip",
    ];

    const DEST_KEYS: [&str; 15] = [
        "active_conns",
        "backend",
        "backend_node",
        "backend_pod",
        "backend_terminating",
        "chain",
        "family",
        "fwd",
        "inactive_conns",
        "lower_threshold",
        "persist_conns",
        "probability",
        "stats",
        "upper_threshold",
        "weight",
    ];

    fn keys(value: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Netfilter Services: the same fields; what the mode cannot supply is null; each
    /// endpoint has its probability. Without ip_vs, IPVS's own fields are null.
    #[test]
    fn netfilter_services_in_the_contract() {
        let rules = captured_netfilter();
        let document = document(None, &rules, &RulesFilter::default());
        assert!(document["version"].is_null() && document["conn_table_size"].is_null());
        assert_eq!(
            document["dataplanes"],
            serde_json::json!(["nftables", "iptables"])
        );
        let services = document["services"].as_array().unwrap();
        assert_eq!(services.len(), rules.services().len());
        let svc1 = services
            .iter()
            .find(|s| s["vip"] == "172.30.0.41:80")
            .unwrap();
        assert_eq!(keys(svc1), SERVICE_KEYS);
        assert_eq!(svc1["dataplane"], "nftables");
        assert_eq!(svc1["proto"], "TCP");
        assert_eq!(svc1["scheduler"], "random");
        assert_eq!(svc1["kube_proxy_name"], "ns1/svc1:p80");
        assert_eq!(svc1["chain"], "service-SVCHASH0-ns1/svc1/tcp/p80");
        for null in [
            "fwmark",
            "flags",
            "persistence_timeout",
            "persistence_netmask",
            "persistence_engine",
            "stats",
        ] {
            assert!(svc1[null].is_null(), "{null}: {svc1}");
        }
        let dests = svc1["dests"].as_array().unwrap();
        assert_eq!(dests.len(), 3);
        for dest in dests {
            assert_eq!(keys(dest), DEST_KEYS);
            let p = dest["probability"].as_f64().unwrap();
            assert!((p - 1.0 / 3.0).abs() < 1e-12, "{dest}");
            for null in [
                "fwd",
                "weight",
                "active_conns",
                "inactive_conns",
                "persist_conns",
                "upper_threshold",
                "lower_threshold",
                "stats",
            ] {
                assert!(dest[null].is_null(), "{null}: {dest}");
            }
        }
        let api = services
            .iter()
            .find(|s| s["vip"] == "172.30.1.10:80")
            .unwrap();
        assert_eq!(api["dataplane"], "iptables");
        assert_eq!(api["dests"][0]["chain"], "KUBE-SEP-EPHASH00AAAAAAAAA");
    }

    #[test]
    fn json_fields_are_the_contract() {
        let document = json(&RulesFilter::default());
        assert_eq!(
            keys(&document),
            [
                "conn_table_size",
                "dataplanes",
                "netns",
                "services",
                "version"
            ]
        );
        assert_eq!(document["dataplanes"], serde_json::json!(["ipvs"]));
        let service = &document["services"][7];
        assert_eq!(service["vip"], "172.31.42.227:80");
        assert_eq!(service["service"], "ratel/vpaas-demo-prod:http");
        assert_eq!(service["service_type"], "LoadBalancer");
        assert_eq!(keys(service), SERVICE_KEYS);
        assert_eq!(service["dataplane"], "ipvs");
        assert!(service["kube_proxy_name"].is_null() && service["chain"].is_null());
        let dest = &service["dests"][0];
        assert_eq!(keys(dest), DEST_KEYS);
        assert_eq!(dest["backend"], "10.245.112.32:8080");
        assert_eq!(
            dest["backend_pod"],
            "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm"
        );
        assert_eq!(dest["backend_node"], "cn-beijing.10.245.96.43");
        assert_eq!(dest["backend_terminating"], false);
        assert_eq!(dest["inactive_conns"], 1);
        assert_eq!(dest["stats"]["conns"], 1);
        assert!(dest["probability"].is_null() && dest["chain"].is_null());
        let fwm = &document["services"][11];
        assert_eq!(
            (&fwm["proto"], &fwm["vip"], &fwm["fwmark"]),
            (
                &serde_json::Value::Null,
                &serde_json::Value::Null,
                &5.into()
            )
        );
    }
}
