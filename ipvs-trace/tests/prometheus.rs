//! What operators load into Prometheus and Grafana, held to promtool and to the code:
//! `deploy/prometheus/ipvs-trace.rules.yml` passes `promtool check rules` and its unit tests
//! (`deploy/prometheus/tests/*.yml`: every alert fires in one case and stays quiet in another,
//! every recording rule gives the values it should); `prometheusrule.yaml` is that file as a
//! prometheus-operator object, generated from it, and `podmonitor.yaml` scrapes the
//! DaemonSet's pods on their metrics port; every metric the rules and their tests read is one
//! `serve` exports; every query of the Grafana dashboard (`deploy/grafana/`) is PromQL that
//! promtool accepts and reads recording rules only.
//!
//! promtool comes with Debian's `prometheus` package, which `cargo xtask setup` installs: a
//! missing promtool fails these tests (naming the command) rather than skipping them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipvs_trace::events::model::EventKind;
use ipvs_trace::events::{Event, Proto};
use ipvs_trace::kube::Names;
use ipvs_trace::metrics::Metrics;
use serde_json::Value;

const RULES: &str = "deploy/prometheus/ipvs-trace.rules.yml";
const PROMETHEUS_RULE: &str = "deploy/prometheus/prometheusrule.yaml";
const RULE_TESTS: &str = "deploy/prometheus/tests";
const POD_MONITOR: &str = "deploy/prometheus/podmonitor.yaml";
const DAEMONSET: &str = "deploy/daemonset.yaml";
const DASHBOARD: &str = "deploy/grafana/ipvs-trace.json";
/// The scrape-time metrics are encoded here (see [`exported_metrics`]).
const COLLECTOR_SOURCE: &str = "ipvs-trace/src/metrics/collect.rs";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the crate")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML document as JSON values (what serde_yaml_ng reads it into).
fn yaml(relative: &str) -> Value {
    serde_yaml_ng::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: not YAML: {e}"))
}

/// promtool from PATH; a clear failure when it is not there.
fn promtool() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("promtool"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not on PATH: it checks deploy/prometheus and deploy/grafana. It comes \
                 with Debian's `prometheus` package: run `cargo xtask setup` (installs it), or \
                 `apt-get install --no-install-recommends prometheus`"
            )
        })
}

/// Runs promtool from the repository's root: whether it succeeded, and what it printed.
fn promtool_output(args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running promtool {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs promtool; panics with its output unless it succeeds.
fn run_promtool(args: &[&str]) -> String {
    let (ok, text) = promtool_output(args);
    assert!(ok, "promtool {} failed:\n{text}", args.join(" "));
    text
}

/// Every rule of the rules file: `(record or alert name, expr, is_alert)`.
fn rules() -> Vec<(String, String, bool)> {
    let doc = yaml(RULES);
    let groups = doc["groups"].as_array().expect("groups");
    let mut rules = Vec::new();
    for group in groups {
        for rule in group["rules"].as_array().expect("rules of a group") {
            let expr = rule["expr"].as_str().expect("an expr").to_owned();
            match (rule["record"].as_str(), rule["alert"].as_str()) {
                (Some(record), None) => rules.push((record.to_owned(), expr, false)),
                (None, Some(alert)) => rules.push((alert.to_owned(), expr, true)),
                _ => panic!("a rule that is neither one record nor one alert: {rule}"),
            }
        }
    }
    rules
}

fn records() -> BTreeSet<String> {
    rules()
        .into_iter()
        .filter(|(_, _, alert)| !alert)
        .map(|(name, _, _)| name)
        .collect()
}

fn alerts() -> BTreeSet<String> {
    rules()
        .into_iter()
        .filter(|(_, _, alert)| *alert)
        .map(|(name, _, _)| name)
        .collect()
}

/// The PrometheusRule as generated from the rules file: its own header (everything up to and
/// including the `spec:` line, hand-written), then the rules file from `groups:` on, each
/// line indented by two spaces (comments kept).
fn generated_prometheus_rule(current: &str) -> String {
    let header_end = current
        .find("\nspec:\n")
        .unwrap_or_else(|| panic!("{PROMETHEUS_RULE}: no `spec:` line"))
        + "\nspec:\n".len();
    let rules = read(RULES);
    let groups_at = rules
        .find("\ngroups:")
        .unwrap_or_else(|| panic!("{RULES}: no `groups:` line"))
        + 1;
    let mut text = current[..header_end].to_owned();
    for line in rules[groups_at..].lines() {
        if !line.is_empty() {
            text.push_str("  ");
            text.push_str(line);
        }
        text.push('\n');
    }
    text
}

#[test]
fn prometheus_rule_is_the_rules_file() {
    let current = read(PROMETHEUS_RULE);
    let generated = generated_prometheus_rule(&current);
    if std::env::var_os("IPVS_TRACE_BLESS").is_some() {
        std::fs::write(repo().join(PROMETHEUS_RULE), &generated).expect("writing the manifest");
    } else {
        assert!(
            current == generated,
            "{PROMETHEUS_RULE} is not {RULES} (run `IPVS_TRACE_BLESS=1 cargo test -p ipvs-trace \
             --test prometheus` to generate it again); it should be:\n{generated}"
        );
    }
    // And read as YAML, the object carries exactly the rules file's groups.
    let manifest: Value = serde_yaml_ng::from_str(&generated).expect("the manifest is YAML");
    assert_eq!(manifest["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(manifest["kind"], "PrometheusRule");
    assert_eq!(
        manifest["metadata"]["namespace"], "ipvs-trace",
        "the namespace of deploy/namespace.yaml"
    );
    let spec = manifest["spec"].as_object().expect("spec");
    assert_eq!(
        spec.keys().collect::<Vec<_>>(),
        ["groups"],
        "PrometheusRule's spec has groups only"
    );
    assert_eq!(spec["groups"], yaml(RULES)["groups"]);
}

#[test]
fn pod_monitor_scrapes_the_daemonsets_metrics_port() {
    let monitor = yaml(POD_MONITOR);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "PodMonitor");
    let daemonset = yaml(DAEMONSET);
    assert_eq!(
        monitor["metadata"]["namespace"], daemonset["metadata"]["namespace"],
        "a PodMonitor selects pods of its own namespace by default"
    );
    let pod = &daemonset["spec"]["template"];
    let labels = pod["metadata"]["labels"].as_object().expect("pod labels");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            labels.get(key),
            Some(value),
            "{POD_MONITOR} selects {key}={value}, which the DaemonSet's pods do not carry"
        );
    }
    let ports: BTreeSet<&str> = pod["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["name"].as_str())
        .collect();
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .expect("podMetricsEndpoints");
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        let port = endpoint["port"].as_str().expect("a port name");
        assert!(
            ports.contains(port),
            "{POD_MONITOR} scrapes port {port}, the DaemonSet names {ports:?}"
        );
        assert_eq!(endpoint["path"], "/metrics");
    }
}

#[test]
fn rules_pass_promtool_check() {
    let out = run_promtool(&["check", "rules", RULES]);
    let count = rules().len();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "promtool read other rules than the {count} of {RULES}:\n{out}"
    );
}

/// The unit test files, parsed.
fn rule_tests() -> Vec<(String, Value)> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(RULE_TESTS))
        .expect("deploy/prometheus/tests")
        .map(|e| e.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| Path::new(name).extension().is_some_and(|e| e == "yml"))
        .map(|name| format!("{RULE_TESTS}/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no unit tests in {RULE_TESTS}");
    files
        .into_iter()
        .map(|file| {
            let doc = yaml(&file);
            (file, doc)
        })
        .collect()
}

#[test]
fn rule_unit_tests_pass_and_cover_every_rule() {
    let tests = rule_tests();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(|(file, _)| file.as_str()));
    run_promtool(&args);

    // Each alert fires in some case and stays quiet in another; each record is evaluated.
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut evaluated = BTreeSet::new();
    for (file, doc) in &tests {
        assert_eq!(
            doc["rule_files"],
            serde_json::json!(["../ipvs-trace.rules.yml"]),
            "{file} must test the rules file"
        );
        for test in doc["tests"].as_array().expect("tests") {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().expect("alertname").to_owned();
                match case["exp_alerts"].as_array() {
                    Some(alerts) if !alerts.is_empty() => firing.insert(name),
                    _ => quiet.insert(name),
                };
            }
            for case in test["promql_expr_test"].as_array().into_iter().flatten() {
                evaluated.insert(case["expr"].as_str().expect("expr").to_owned());
            }
        }
    }
    let alerts = alerts();
    assert_eq!(firing, alerts, "alerts with a case where they fire");
    assert_eq!(quiet, alerts, "alerts with a case where they stay quiet");
    let untested: Vec<_> = records().difference(&evaluated).cloned().collect();
    assert!(
        untested.is_empty(),
        "recording rules no promql_expr_test evaluates: {untested:?}"
    );
}

/// The metric names `serve` exports, as Prometheus stores them (counters with `_total`).
///
/// The registered metrics come from the real encoder (with one event recorded, so that the
/// connection counters are there). The scrape-time ones (readiness, the history, the
/// Kubernetes watches, the IPVS tables) need a live API server and the kernel's tables to be
/// encoded, so they are read from the calls that encode them in `collect.rs`
/// (`gauges(encoder, "name", ...)`, `counters(...)`): a call of another shape fails here
/// rather than being missed.
fn exported_metrics() -> BTreeSet<String> {
    let (metrics, mut recorder) = Metrics::new(true, true);
    let event = Event {
        kind: EventKind::New,
        dataplane: ipvs_trace::dataplane::Dataplane::Ipvs,
        timestamp_ns: 0,
        cpu: 0,
        netns: None,
        conn: Some(1),
        proto: Proto::Tcp,
        client: addr("10.245.97.12:51776"),
        vip: addr("172.31.42.227:80"),
        backend: Some(addr("10.245.112.32:8080")),
        fwd: None,
        flags: 0,
        state: 0,
        scheduler: Some("rr".into()),
        dest: None,
    };
    recorder.record(&event, &Names::NONE);
    let mut names = BTreeSet::new();
    for line in metrics.encode().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [name, "counter"] => names.insert(format!("{name}_total")),
                [name, _] => names.insert(name.to_owned()),
                _ => panic!("an OpenMetrics TYPE line of another shape: {line}"),
            };
        }
    }
    assert!(
        names.contains("ipvs_trace_connections_total"),
        "the recorded event's counter: {names:?}"
    );

    let source = read(COLLECTOR_SOURCE);
    let mut scraped = 0;
    for (kind, suffix) in [("gauges(", ""), ("counters(", "_total")] {
        for (at, _) in source.match_indices(kind) {
            let before = source[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // history_counters(, ...
            }
            let args = &source[at + kind.len()..];
            let Some((first, rest)) = args.split_once(',') else {
                continue;
            };
            if !first.trim().ends_with("encoder") {
                continue; // the function's own definition
            }
            let name = rest
                .trim_start()
                .strip_prefix('"')
                .and_then(|s| s.split_once('"'))
                .map_or_else(
                    || {
                        panic!(
                            "{COLLECTOR_SOURCE}: a {kind}..) call whose name is not a string \
                             literal right after the encoder: read its names another way here"
                        )
                    },
                    |(name, _)| name,
                );
            names.insert(format!("ipvs_trace_{name}{suffix}"));
            scraped += 1;
        }
    }
    assert!(
        scraped >= 10 && names.contains("ipvs_trace_ready"),
        "{COLLECTOR_SOURCE}: found {scraped} scrape-time metrics: {names:?}"
    );
    names
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// The metric names a PromQL expression reads: identifiers outside strings, label matchers,
/// ranges and label lists that are neither a function, an aggregation nor a keyword. Enough
/// for the expressions of this repository (a name hidden from this reading would still be
/// checked by promtool's evaluation in the unit tests).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "inf",
        "nan",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| -> usize {
        let mut j = from + 1;
        while j < chars.len() && chars[j] != close {
            // Escaped characters in strings (`\"`) do not end them.
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_to(i, c),
            '{' => i = skip_to(i, '}'),
            '[' => i = skip_to(i, ']'),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let call = chars.get(next) == Some(&'(');
                if LABEL_LISTS.contains(&word.as_str()) {
                    if call {
                        i = skip_to(next, ')');
                    }
                } else if !call && !WORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers and durations (`1/3`, `0.1`, `1e-9`, `offset 5m`).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_reading_of_metric_names_sees_through_promql() {
    let names = metric_names(
        r#"sum by (service, backend) (rate(a_total{x="b:c", y=~"$d"}[5m] offset 1h))
           and ignoring (backend) r:b:c >= 1/3 or label_replace(e, "reason", "x", "", "")
           - max(f) * 1e-9"#,
    );
    assert_eq!(
        names,
        ["a_total", "e", "f", "r:b:c"]
            .map(str::to_owned)
            .into_iter()
            .collect()
    );
}

#[test]
fn rules_read_only_what_serve_exports() {
    let exported = exported_metrics();
    let records = records();
    for (name, expr, _) in rules() {
        for metric in metric_names(&expr) {
            assert!(
                exported.contains(&metric) || records.contains(&metric),
                "{name} reads {metric}, which serve does not export and no rule records \
                 (serve exports {exported:?})"
            );
        }
    }
    // The unit tests feed series by those names too: a test of a misspelt name would pass
    // while the rule never fires in a cluster.
    for (file, doc) in rule_tests() {
        for test in doc["tests"].as_array().expect("tests") {
            for series in test["input_series"].as_array().expect("input_series") {
                let selector = series["series"].as_str().expect("a series");
                let metric = selector.split('{').next().expect("a name");
                assert!(
                    exported.contains(metric),
                    "{file}: input series {metric} is not a metric serve exports"
                );
            }
        }
    }
}

/// Every query of the dashboard, with the panel it is in.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            // Rows hold their panels when collapsed.
            panels(&panel["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut queries = Vec::new();
    for panel in all {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr: {target}"));
            let ref_id = target["refId"].as_str().unwrap_or("?");
            queries.push((format!("{title} ({ref_id})"), expr.to_owned()));
        }
    }
    queries
}

/// The dashboard's variables and what a query gets in their place: the value "All" stands
/// for (`allValue`), else a plain word.
fn dashboard_variables(dashboard: &Value) -> BTreeMap<String, String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|var| {
            let name = var["name"].as_str().expect("a variable's name").to_owned();
            let value = var["allValue"].as_str().unwrap_or("x").to_owned();
            (name, value)
        })
        .collect()
}

/// `$name`, `${name}` and `[[name]]` replaced, longest names first (`$service` before `$s`).
fn substitute(expr: &str, variables: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    let mut expr = expr.to_owned();
    for name in names {
        let value = &variables[name];
        for form in [
            format!("${{{name}}}"),
            format!("[[{name}]]"),
            format!("${name}"),
        ] {
            expr = expr.replace(&form, value);
        }
    }
    expr
}

#[test]
fn dashboard_queries_are_promql_over_the_recording_rules() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let variables = dashboard_variables(&dashboard);
    let records = records();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 10, "{} queries", queries.len());

    let mut rules = Vec::new();
    for (i, (panel, expr)) in queries.iter().enumerate() {
        let expr = substitute(expr, &variables);
        assert!(
            !expr.contains('$'),
            "{panel}: a variable the dashboard does not define: {expr}"
        );
        let read = metric_names(&expr);
        assert!(!read.is_empty(), "{panel}: reads no metric: {expr}");
        for metric in &read {
            assert!(
                records.contains(metric),
                "{panel}: reads {metric}, not a recording rule of {RULES} ({records:?})"
            );
        }
        rules.push(serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr }));
    }
    // The Service variable's values come from a recording rule too.
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(definition) = var["definition"].as_str() {
            let series = definition
                .strip_prefix("label_values(")
                .and_then(|rest| rest.split_once(','))
                .map_or_else(
                    || panic!("variable query of another form: {definition}"),
                    |(series, _)| series.trim(),
                );
            assert!(
                records.contains(series),
                "variable {}: {series} is not a recording rule",
                var["name"]
            );
            rules.push(serde_json::json!({ "record": "dashboard:variable", "expr": series }));
        }
    }

    // promtool parses every query as the expression of a recording rule.
    let file = std::env::temp_dir().join(format!(
        "ipvs-trace-dashboard-queries-{}.yml",
        std::process::id()
    ));
    let doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, serde_yaml_ng::to_string(&doc).expect("YAML")).expect("temp file");
    let (ok, out) = promtool_output(&["check", "rules", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    let which: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(i, (panel, _))| format!("dashboard:query_{i} is {panel}"))
        .collect();
    assert!(
        ok && out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "promtool refused a query of {DASHBOARD}:\n{out}\n{}",
        which.join("\n")
    );
}
