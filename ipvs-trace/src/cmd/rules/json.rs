//! `rules -o json`: the tables and their names as one JSON document.

use std::io::{self, Write};

use serde::Serialize;

use super::select::Named;
use crate::ipvs::{Stats, Tables};

/// `rules -o json`: one document; field names and order are a stable contract (docs/rules.md).
#[derive(Serialize)]
struct JsonTables<'a> {
    version: String,
    conn_table_size: u32,
    netns: Option<u64>,
    services: Vec<JsonService<'a>>,
}

#[derive(Serialize)]
struct JsonService<'a> {
    proto: Option<String>,
    vip: Option<String>,
    fwmark: Option<u32>,
    family: &'static str,
    scheduler: &'a str,
    flags: Vec<String>,
    persistence_timeout: u32,
    persistence_netmask: String,
    persistence_engine: Option<&'a str>,
    service: Option<&'a str>,
    service_type: Option<&'static str>,
    stats: &'a Stats,
    dests: Vec<JsonDest<'a>>,
}

#[derive(Serialize)]
struct JsonDest<'a> {
    backend: String,
    family: &'static str,
    fwd: String,
    weight: u32,
    active_conns: u32,
    inactive_conns: u32,
    persist_conns: u32,
    upper_threshold: u32,
    lower_threshold: u32,
    backend_pod: Option<&'a str>,
    backend_node: Option<&'a str>,
    backend_terminating: Option<bool>,
    stats: &'a Stats,
}

pub(super) fn write_json(
    out: &mut impl Write,
    tables: &Tables,
    netns: Option<u64>,
    views: &[Named<'_>],
) -> io::Result<()> {
    let document = JsonTables {
        version: tables.info.version_string(),
        conn_table_size: tables.info.conn_table_size,
        netns,
        services: views
            .iter()
            .map(|view| {
                let service = view.service;
                JsonService {
                    proto: service.proto.map(|p| p.to_string()),
                    vip: service.addr.map(|a| a.to_string()),
                    fwmark: service.fwmark,
                    family: service.family.as_str(),
                    scheduler: &service.scheduler,
                    flags: service.flags.names(&service.scheduler),
                    persistence_timeout: service.timeout,
                    persistence_netmask: service.netmask.to_string(),
                    persistence_engine: service.persistence_engine.as_deref(),
                    service: view.name.as_ref().map(|n| &*n.label),
                    service_type: view.name.as_ref().map(|n| n.service_type.as_str()),
                    stats: &service.stats,
                    dests: view
                        .dests
                        .iter()
                        .map(|(dest, backend)| JsonDest {
                            backend: dest.addr.to_string(),
                            family: dest.family.as_str(),
                            fwd: dest.fwd.to_string(),
                            weight: dest.weight,
                            active_conns: dest.active_conns,
                            inactive_conns: dest.inactive_conns,
                            persist_conns: dest.persist_conns,
                            upper_threshold: dest.upper_threshold,
                            lower_threshold: dest.lower_threshold,
                            backend_pod: backend.as_ref().and_then(|b| b.pod.as_deref()),
                            backend_node: backend.as_ref().and_then(|b| b.node.as_deref()),
                            backend_terminating: backend.as_ref().and_then(|b| b.terminating),
                            stats: &dest.stats,
                        })
                        .collect(),
                }
            })
            .collect(),
    };
    serde_json::to_writer(&mut *out, &document).map_err(io::Error::from)?;
    writeln!(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cmd::rules::captured;
    use crate::cmd::rules::select::{select, RulesFilter};
    use crate::output::tests::seed_index;

    pub(in crate::cmd::rules) fn json(filter: &RulesFilter) -> serde_json::Value {
        let tables = captured();
        let index = seed_index();
        let views = select(&tables, Some(&index), filter);
        let mut out = Vec::new();
        write_json(&mut out, &tables, None, &views).unwrap();
        serde_json::from_slice(&out).expect("one JSON document")
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

    #[test]
    fn json_fields_are_the_contract() {
        let document = json(&RulesFilter::default());
        let keys = |value: &serde_json::Value| -> Vec<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys(&document),
            ["conn_table_size", "netns", "services", "version"]
        );
        let service = &document["services"][7];
        assert_eq!(service["vip"], "172.31.42.227:80");
        assert_eq!(service["service"], "ratel/vpaas-demo-prod:http");
        assert_eq!(service["service_type"], "LoadBalancer");
        let mut service_keys = keys(service);
        service_keys.sort();
        assert_eq!(
            service_keys,
            [
                "dests",
                "family",
                "flags",
                "fwmark",
                "persistence_engine",
                "persistence_netmask",
                "persistence_timeout",
                "proto",
                "scheduler",
                "service",
                "service_type",
                "stats",
                "vip"
            ]
        );
        let dest = &service["dests"][0];
        assert_eq!(dest["backend"], "10.245.112.32:8080");
        assert_eq!(
            dest["backend_pod"],
            "ratel/vpaas-demo.prod.ali.ratel-pod-deploy-295986-656758fc8d-dgzsm"
        );
        assert_eq!(dest["backend_node"], "cn-beijing.10.245.96.43");
        assert_eq!(dest["backend_terminating"], false);
        assert_eq!(dest["inactive_conns"], 1);
        assert_eq!(dest["stats"]["conns"], 1);
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
