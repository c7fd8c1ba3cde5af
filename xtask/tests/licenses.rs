//! The license and ban policy of deny.toml, applied to what ships without installing cargo-deny
//! (building it from crates.io costs minutes of every CI run): the crates in the dependency
//! graph of the workspace's shipped members (normal and build dependencies, on deny.toml's
//! target platforms, as `cargo metadata --locked --offline` resolves them) must each have an
//! SPDX license expression that the policy allows, and none may be banned.
//!
//! The policy itself lives in deny.toml only, so `cargo deny check licenses bans` and this test
//! judge by the same rules; a key of deny.toml that this test does not implement is an error
//! here rather than a silent disagreement.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

// ---------------------------------------------------------------------------------------------
// deny.toml: the subset of cargo-deny's format the policy uses.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    graph: Graph,
    licenses: Licenses,
    bans: Bans,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Graph {
    targets: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    exclude_dev: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Licenses {
    allow: Vec<String>,
    #[serde(default)]
    exceptions: Vec<Exception>,
    #[serde(default)]
    clarify: Vec<Clarification>,
}

/// More licenses allowed for one crate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exception {
    #[serde(rename = "crate")]
    krate: String,
    allow: Vec<String>,
}

/// The license of a crate whose metadata has none (a license file only) or a wrong one.
/// cargo-deny also checks the listed files' hashes, so that a changed file needs a new look;
/// this test takes the expression as given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Clarification {
    #[serde(rename = "crate")]
    krate: String,
    expression: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "cargo-deny's business: see the type's documentation"
    )]
    license_files: Vec<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Bans {
    multiple_versions: Option<String>,
    #[serde(default)]
    deny: Vec<Ban>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ban {
    #[serde(rename = "crate")]
    krate: String,
    reason: String,
}

fn read_policy() -> Policy {
    let path = workspace_root().join("deny.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let policy: Policy = toml::from_str(&text).unwrap_or_else(|err| {
        panic!(
            "{}: {err}\n(a key cargo-deny knows but this test does not is refused on purpose: \
             teach xtask/tests/licenses.rs what it means, so both keep judging alike)",
            path.display()
        )
    });
    if let Some(mode) = &policy.bans.multiple_versions {
        assert!(
            mode == "allow" || mode == "warn",
            "deny.toml: bans.multiple-versions = {mode:?} is not implemented by this test \
             (only allow and warn, which fail nothing)"
        );
    }
    for ban in &policy.bans.deny {
        assert!(
            !ban.krate.contains('@'),
            "deny.toml: bans.deny {:?}: this test bans crates by name only",
            ban.krate
        );
    }
    policy
}

// ---------------------------------------------------------------------------------------------
// SPDX license expressions.

/// A parsed SPDX expression. `X WITH Y` is one leaf: as in cargo-deny, it is allowed only when
/// the whole `X WITH Y` is, not by `X` alone.
#[derive(Debug, PartialEq, Eq)]
enum Expr {
    License(String),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn allowed_by(&self, allowed: &BTreeSet<&str>) -> bool {
        match self {
            Expr::License(id) => allowed.contains(id.as_str()),
            Expr::And(parts) => parts.iter().all(|part| part.allowed_by(allowed)),
            Expr::Or(parts) => parts.iter().any(|part| part.allowed_by(allowed)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    With,
    Id(String),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
            Token::And => f.write_str("AND"),
            Token::Or => f.write_str("OR"),
            Token::With => f.write_str("WITH"),
            Token::Id(id) => f.write_str(id),
        }
    }
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    // `MIT/Apache-2.0`: the pre-SPDX form many older crates still carry, read as OR (as
    // cargo-deny's lax parsing does).
    let spaced = text
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ");
    for word in spaced.split_whitespace() {
        out.push(match word {
            "(" => Token::Open,
            ")" => Token::Close,
            "AND" => Token::And,
            "OR" => Token::Or,
            "WITH" => Token::With,
            id if id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ':')) =>
            {
                Token::Id(id.to_owned())
            }
            other => return Err(format!("{other:?} is not a license identifier")),
        });
    }
    Ok(out)
}

/// Parses `text`: OR binds loosest, then AND, then WITH; parentheses group.
fn parse_spdx(text: &str) -> Result<Expr, String> {
    let tokens = tokens(text)?;
    let mut at = 0;
    let expr = parse_or(&tokens, &mut at)?;
    match tokens.get(at) {
        None => Ok(expr),
        Some(token) => Err(format!("unexpected {token} after a complete expression")),
    }
}

fn parse_or(tokens: &[Token], at: &mut usize) -> Result<Expr, String> {
    let mut parts = vec![parse_and(tokens, at)?];
    while tokens.get(*at) == Some(&Token::Or) {
        *at += 1;
        parts.push(parse_and(tokens, at)?);
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Expr::Or(parts)
    })
}

fn parse_and(tokens: &[Token], at: &mut usize) -> Result<Expr, String> {
    let mut parts = vec![parse_with(tokens, at)?];
    while tokens.get(*at) == Some(&Token::And) {
        *at += 1;
        parts.push(parse_with(tokens, at)?);
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Expr::And(parts)
    })
}

fn parse_with(tokens: &[Token], at: &mut usize) -> Result<Expr, String> {
    match tokens.get(*at) {
        Some(Token::Open) => {
            *at += 1;
            let inner = parse_or(tokens, at)?;
            if tokens.get(*at) != Some(&Token::Close) {
                return Err("a `(` is not closed".to_owned());
            }
            *at += 1;
            Ok(inner)
        }
        Some(Token::Id(license)) => {
            *at += 1;
            if tokens.get(*at) != Some(&Token::With) {
                return Ok(Expr::License(license.clone()));
            }
            *at += 1;
            match tokens.get(*at) {
                Some(Token::Id(exception)) => {
                    *at += 1;
                    Ok(Expr::License(format!("{license} WITH {exception}")))
                }
                _ => Err(format!("`{license} WITH` lacks its exception")),
            }
        }
        Some(token) => Err(format!("expected a license, found {token}")),
        None => Err("the expression ends where a license is expected".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// The dependency graph, from `cargo metadata`.

#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    resolve: Resolve,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    license_file: Option<String>,
    #[serde(default)]
    dependencies: Vec<Dependency>,
    #[serde(default)]
    features: BTreeMap<String, Vec<String>>,
}

/// A dependency as the manifest declares it.
#[derive(Debug, Deserialize)]
struct Dependency {
    name: String,
    rename: Option<String>,
    /// `null` for a normal dependency, "build" or "dev".
    kind: Option<String>,
    /// The `cfg(...)` or triple it is declared for, `null` for every platform.
    target: Option<String>,
    optional: bool,
}

impl Package {
    /// The optional dependencies (by the name the manifest gives them) that `enabled` features
    /// switch on: `dep:x`, `x/feature`, or the implicit feature `x`. Not `x?/feature`, which
    /// only adds a feature to `x` if something else enables it: cargo metadata lists such
    /// dependencies as edges of the graph although they are not built (cargo issue 10801),
    /// and cargo-deny leaves them out, as this does.
    fn activated<'a>(&'a self, enabled: &'a [String]) -> BTreeSet<&'a str> {
        let explicit = |dep: &str| {
            self.features
                .values()
                .flatten()
                .any(|value| value.strip_prefix("dep:") == Some(dep))
        };
        let mut on = BTreeSet::new();
        for feature in enabled {
            if !explicit(feature) {
                on.insert(feature.as_str());
            }
            for value in self.features.get(feature).into_iter().flatten() {
                if let Some(dep) = value.strip_prefix("dep:") {
                    on.insert(dep);
                } else if let Some((dep, _)) = value.split_once('/') {
                    if !dep.ends_with('?') {
                        on.insert(dep);
                    }
                }
            }
        }
        on
    }
}

#[derive(Debug, Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

/// A package as resolved: the features enabled (over the whole workspace, as cargo builds it)
/// and its dependencies on the filtered platforms.
#[derive(Debug, Deserialize)]
struct Node {
    id: String,
    deps: Vec<NodeDep>,
    features: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct NodeDep {
    pkg: String,
    dep_kinds: Vec<DepKind>,
}

#[derive(Debug, Deserialize)]
struct DepKind {
    /// `null` for a normal dependency, "build" or "dev".
    kind: Option<String>,
    target: Option<String>,
}

fn cargo_metadata(targets: &[String]) -> Metadata {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--offline",
    ]);
    for target in targets {
        cmd.args(["--filter-platform", target]);
    }
    let out = cmd.output().expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

/// Every package reachable from the shipped workspace members, with the chain of crates that
/// pulls it in (for the failure messages).
fn shipped_graph<'a>(metadata: &'a Metadata, graph: &Graph) -> BTreeMap<&'a str, Vec<&'a str>> {
    let packages: HashMap<&str, &Package> = metadata
        .packages
        .iter()
        .map(|p| (p.id.as_str(), p))
        .collect();
    let names: HashMap<&str, &str> = packages
        .iter()
        .map(|(id, p)| (*id, p.name.as_str()))
        .collect();
    let nodes: HashMap<&str, &Node> = metadata
        .resolve
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let excluded = |id: &str| {
        graph
            .exclude
            .iter()
            .any(|name| names.get(id) == Some(&&**name))
    };
    let mut chains: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for member in &metadata.workspace_members {
        if !excluded(member) {
            chains.insert(member, vec![names[member.as_str()]]);
            queue.push_back(member.as_str());
        }
    }
    while let Some(id) = queue.pop_front() {
        let node = nodes
            .get(id)
            .unwrap_or_else(|| panic!("{id} is not in cargo metadata's resolve graph"));
        let package = packages[id];
        let activated = package.activated(&node.features);
        for dep in &node.deps {
            // A declaration of this dependency, of a kind that counts, for a platform the
            // filter kept, and not optional unless a feature switches it on.
            let linked = package.dependencies.iter().any(|declared| {
                let wanted = match declared.kind.as_deref() {
                    None | Some("build") => true,
                    Some("dev") => !graph.exclude_dev,
                    Some(other) => panic!("unknown dependency kind {other:?} in cargo metadata"),
                };
                wanted
                    && declared.name == names[dep.pkg.as_str()]
                    && dep
                        .dep_kinds
                        .iter()
                        .any(|k| k.kind == declared.kind && k.target == declared.target)
                    && (!declared.optional
                        || activated.contains(declared.rename.as_deref().unwrap_or(&declared.name)))
            });
            if !linked || excluded(&dep.pkg) || chains.contains_key(dep.pkg.as_str()) {
                continue;
            }
            let mut chain = chains[id].clone();
            chain.push(names[dep.pkg.as_str()]);
            chains.insert(&dep.pkg, chain);
            queue.push_back(&dep.pkg);
        }
    }
    chains
}

/// What the policy finds wrong with `package`, if anything.
fn judge(policy: &Policy, package: &Package) -> Option<String> {
    let clarified = policy
        .licenses
        .clarify
        .iter()
        .find(|c| c.krate == package.name);
    let Some(expression) = clarified
        .map(|c| c.expression.as_str())
        .or(package.license.as_deref())
    else {
        return Some(format!(
            "has no SPDX `license` expression (license file: {}): read it and add a \
             [[licenses.clarify]] entry for the crate to deny.toml",
            package.license_file.as_deref().unwrap_or("none")
        ));
    };
    let expr = match parse_spdx(expression) {
        Ok(expr) => expr,
        Err(err) => {
            return Some(format!(
                "license {expression:?} is not a valid SPDX expression ({err}): clarify it in \
                 deny.toml"
            ))
        }
    };
    let mut allowed: BTreeSet<&str> = policy.licenses.allow.iter().map(String::as_str).collect();
    for exception in &policy.licenses.exceptions {
        if exception.krate == package.name {
            allowed.extend(exception.allow.iter().map(String::as_str));
        }
    }
    (!expr.allowed_by(&allowed)).then(|| {
        format!(
            "license {expression:?} has no alternative deny.toml allows: replace the crate, or \
             after review allow the license (or add an exception for this crate)"
        )
    })
}

#[test]
fn shipped_crates_have_allowed_licenses_and_none_is_banned() {
    let policy = read_policy();
    let metadata = cargo_metadata(&policy.graph.targets);
    let graph = shipped_graph(&metadata, &policy.graph);
    let packages: HashMap<&str, &Package> = metadata
        .packages
        .iter()
        .map(|p| (p.id.as_str(), p))
        .collect();

    // The shipped roots: the binary's crates and the eBPF crate; xtask and the tests are not.
    let roots: BTreeSet<&str> = graph
        .values()
        .filter(|chain| chain.len() == 1)
        .map(|chain| chain[0])
        .collect();
    for shipped in ["ipvs-trace", "ipvs-trace-common", "ipvs-trace-ebpf"] {
        assert!(
            roots.contains(shipped),
            "{shipped} is not checked: {roots:?}"
        );
    }
    for tool in ["xtask", "ipvs-trace-tests"] {
        assert!(
            !graph.values().any(|c| c.contains(&tool)),
            "{tool} is checked"
        );
    }
    // The graph is the real one: aya and kube's TLS stack are in it, a dev-only crate is not.
    for name in ["aya", "aya-ebpf", "rustls", "ring", "clap"] {
        assert!(
            graph.keys().any(|id| packages[id].name == name),
            "{name} is missing from the graph"
        );
    }
    assert!(
        !graph.keys().any(|id| packages[id].name == "serde_yaml_ng"),
        "a dev-dependency of ipvs-trace is in the shipped graph"
    );

    let mut problems = Vec::new();
    for (id, chain) in &graph {
        let package = packages[id];
        let via = chain.join(" -> ");
        if let Some(problem) = judge(&policy, package) {
            problems.push(format!(
                "{} {} {problem} (via {via})",
                package.name, package.version
            ));
        }
        if let Some(ban) = policy.bans.deny.iter().find(|b| b.krate == package.name) {
            problems.push(format!(
                "{} {} is banned: {} (via {via})",
                package.name, package.version, ban.reason
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "license policy (deny.toml) violated by {} of {} crates:\n  {}",
        problems.len(),
        graph.len(),
        problems.join("\n  ")
    );
}

#[test]
fn spdx_expressions_parse_with_precedence_and_groups() {
    let id = |s: &str| Expr::License(s.to_owned());
    assert_eq!(
        parse_spdx("MIT OR Apache-2.0 AND ISC"),
        Ok(Expr::Or(vec![
            id("MIT"),
            Expr::And(vec![id("Apache-2.0"), id("ISC")])
        ]))
    );
    assert_eq!(
        parse_spdx("(MIT OR Apache-2.0) AND Unicode-3.0"),
        Ok(Expr::And(vec![
            Expr::Or(vec![id("MIT"), id("Apache-2.0")]),
            id("Unicode-3.0")
        ]))
    );
    assert_eq!(
        parse_spdx("Apache-2.0 WITH LLVM-exception OR MIT"),
        Ok(Expr::Or(vec![
            id("Apache-2.0 WITH LLVM-exception"),
            id("MIT")
        ]))
    );
    assert_eq!(
        parse_spdx("MIT/Apache-2.0"),
        Ok(Expr::Or(vec![id("MIT"), id("Apache-2.0")]))
    );
    for bad in [
        "",
        "MIT OR",
        "(MIT",
        "MIT)",
        "MIT Apache-2.0",
        "Apache-2.0 WITH",
        "AND MIT",
        "MIT, Apache-2.0",
    ] {
        assert!(parse_spdx(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn the_policy_refuses_gpl_lgpl_and_unlicensed_code() {
    let policy = read_policy();
    let package = |name: &str, license: Option<&str>| Package {
        id: format!("{name} 1.0.0"),
        name: name.to_owned(),
        version: "1.0.0".to_owned(),
        license: license.map(str::to_owned),
        license_file: None,
        dependencies: Vec::new(),
        features: BTreeMap::new(),
    };
    for refused in [
        Some("GPL-2.0-only"),
        Some("GPL-3.0-or-later"),
        Some("LGPL-2.1-only"),
        Some("LGPL-3.0-only OR GPL-3.0-only"),
        Some("(MIT OR Apache-2.0) AND GPL-2.0-only"),
        Some("AGPL-3.0-only"),
        // Apache-2.0 alone does not allow Apache-2.0 with another exception.
        Some("Apache-2.0 WITH Classpath-exception-2.0"),
        Some("MIT AND"),
        None,
    ] {
        assert!(
            judge(&policy, &package("some-crate", refused)).is_some(),
            "{refused:?} was allowed"
        );
    }
    for allowed in [
        "MIT",
        "LGPL-2.1-only OR MIT",
        "GPL-2.0-only OR Apache-2.0",
        "(MIT OR Apache-2.0) AND Unicode-3.0",
        "Apache-2.0 AND ISC",
    ] {
        assert_eq!(judge(&policy, &package("some-crate", Some(allowed))), None);
    }
    // An exception is the named crate's only.
    assert_eq!(
        judge(
            &policy,
            &package("webpki-roots", Some("CDLA-Permissive-2.0"))
        ),
        None
    );
    assert!(judge(&policy, &package("other", Some("CDLA-Permissive-2.0"))).is_some());
}
