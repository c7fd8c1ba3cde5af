//! Links: relative targets exist, anchors are GitHub's anchors of the target's headings, URLs
//! are URLs, and bare paths in prose and code name something that is there.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::LinkType;

use crate::markdown::{extract, Extract, Link};
use crate::Problem;
use crate::{lines_of, problem_on};

/// The problems of the links and bare references of one file (`rel`, relative to `root`).
pub(crate) fn check_links(
    root: &Path,
    rel: &Path,
    doc: &Extract,
    cache: &mut AnchorCache,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for link in &doc.links {
        if let Err(why) = check_link(root, rel, doc, link, cache) {
            problems.push((link.line, format!("link `{}`: {why}", link.dest)));
        }
    }
    for (label, line) in &doc.broken_refs {
        problems.push((
            *line,
            format!("link `[...][{label}]`: no `[{label}]: target` definition in the file"),
        ));
    }
    for word in &doc.words {
        if let Some(why) = check_bare_reference(root, rel, &word.text) {
            problems.push((word.line, why));
        }
    }
    problems
}

/// Anchors of the Markdown files links point into, parsed once each.
#[derive(Default)]
pub(crate) struct AnchorCache(HashMap<PathBuf, Vec<String>>);

impl AnchorCache {
    fn anchors(&mut self, root: &Path, rel: &Path) -> Result<&[String], String> {
        if !self.0.contains_key(rel) {
            let text = fs::read_to_string(root.join(rel))
                .map_err(|err| format!("cannot read {}: {err}", rel.display()))?;
            self.0.insert(rel.to_path_buf(), extract(&text).anchors);
        }
        Ok(&self.0[rel])
    }
}

fn check_link(
    root: &Path,
    rel: &Path,
    doc: &Extract,
    link: &Link,
    cache: &mut AnchorCache,
) -> Result<(), String> {
    let dest = link.dest.as_str();
    if link.kind == LinkType::Email {
        return check_email(dest);
    }
    if dest.trim().is_empty() {
        return Err("empty target".to_owned());
    }
    if let Some(address) = dest.strip_prefix("mailto:") {
        return check_email(address.split('?').next().unwrap_or_default());
    }
    if dest.starts_with("http://") || dest.starts_with("https://") {
        return check_url(dest);
    }
    if let Some(scheme) = scheme_of(dest) {
        return Err(format!(
            "`{scheme}:` is neither a relative path nor an http(s) or mailto URL"
        ));
    }
    let (path_part, fragment) = match dest.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (dest, None),
    };
    let path_part = path_part.split('?').next().unwrap_or_default();
    let fragment = fragment.map(percent_decode).transpose()?;
    if path_part.is_empty() {
        // `#anchor` in the same file.
        let fragment = fragment.unwrap_or_default();
        return if doc.anchors.contains(&fragment) {
            Ok(())
        } else {
            Err(format!(
                "no heading of this file has the anchor #{fragment}; its anchors: {}",
                doc.anchors.join(", ")
            ))
        };
    }
    let decoded = percent_decode(path_part)?;
    let target = resolve(rel, &decoded)?;
    let full = root.join(&target);
    if !full.exists() {
        return Err(format!("{} does not exist", target.display()));
    }
    let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
        return Ok(());
    };
    if full.is_dir() {
        return Err(format!("#{fragment} on a directory"));
    }
    if target.extension().is_some_and(|ext| ext == "md") {
        let anchors = cache.anchors(root, &target)?;
        if anchors.contains(&fragment) {
            return Ok(());
        }
        return Err(format!(
            "no heading of {} has the anchor #{fragment}; its anchors: {}",
            target.display(),
            anchors.join(", ")
        ));
    }
    check_line_fragment(&full, &target, &fragment)
}

/// `#L12` or `#L12-L20` on a non-Markdown file: GitHub's line links, within the file.
fn check_line_fragment(full: &Path, target: &Path, fragment: &str) -> Result<(), String> {
    let number = |part: &str| -> Option<usize> { part.strip_prefix('L')?.parse().ok() };
    let wanted: Option<Vec<usize>> = fragment.split('-').map(number).collect();
    let Some(wanted) = wanted.filter(|w| !w.is_empty() && w.len() <= 2) else {
        return Err(format!(
            "#{fragment} on {}, which is not Markdown: only #L<line> or #L<from>-L<to> point into it",
            target.display()
        ));
    };
    let text = fs::read_to_string(full)
        .map_err(|err| format!("cannot read {} as text: {err}", target.display()))?;
    let count = text.lines().count();
    match wanted.iter().find(|&&n| n == 0 || n > count) {
        Some(n) => Err(format!(
            "line {n} is past the end of {} ({count} lines)",
            target.display()
        )),
        None => Ok(()),
    }
}

/// The scheme of an absolute URL (`ftp` of `ftp://x`), not the `C` of a Windows path.
fn scheme_of(dest: &str) -> Option<&str> {
    let (scheme, _) = dest.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && scheme.len() > 1;
    valid.then_some(scheme)
}

/// A relative link target as a path from the repository root: relative to the linking file's
/// folder, or to the root when it starts with `/` (as GitHub resolves it). Refuses `..` past
/// the root.
fn resolve(rel: &Path, target: &str) -> Result<PathBuf, String> {
    let (base, target) = match target.strip_prefix('/') {
        Some(from_root) => (PathBuf::new(), from_root),
        None => (rel.parent().unwrap_or(Path::new("")).to_path_buf(), target),
    };
    let mut out = base;
    for component in Path::new(target).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(format!("`{target}` points outside the repository"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("`{target}` is not a relative path"));
            }
        }
    }
    Ok(out)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(format!("bad percent-escape in `{text}`"));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` does not decode to UTF-8"))
}

/// `http(s)://host[:port][/path][?query][#fragment]`: a host of dot-separated labels (or an IPv6
/// literal in brackets), a numeric port, no spaces or characters a URL cannot hold unescaped.
fn check_url(url: &str) -> Result<(), String> {
    if let Some(bad) = url.chars().find(|c| {
        c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`' | '\\' | '{' | '}')
    }) {
        return Err(format!("not a URL: contains {bad:?}"));
    }
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or_else(|| "not a URL: unclosed `[` in the host".to_owned())?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("not a URL: `{inside}` is not an IPv6 address"));
        }
        (None, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(host_port), None),
        }
    };
    if let Some(host) = host {
        check_host(host).map_err(|why| format!("not a URL: {why}"))?;
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "not a URL: port `{port}` is not a number up to 65535"
            ));
        }
    }
    let tail = &rest[end..];
    if tail
        .split('%')
        .skip(1)
        .any(|after| after.len() < 2 || !after.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit))
    {
        return Err("not a URL: a `%` is not followed by two hex digits".to_owned());
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-');
        if !valid {
            return Err(format!("`{label}` is not a host name label in `{host}`"));
        }
    }
    Ok(())
}

fn check_email(addresses: &str) -> Result<(), String> {
    for address in addresses.split(',') {
        let valid = address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !local.contains(char::is_whitespace)
                && domain.contains('.')
                && check_host(domain).is_ok()
        });
        if !valid {
            return Err(format!("`{address}` is not an email address"));
        }
    }
    Ok(())
}

/// A word of prose or code that names a path of the repository without a link (`deploy/`,
/// `ipvs-trace/src/cli.rs`): a problem when nothing is there. Only words that read as a
/// repository path are taken: with a `/`, the first part a top-level entry of the repository
/// (`ds/ipvs-trace`, `kube-system/coredns` and kernel sources are not), the last a file name
/// with an extension or a folder written with its `/` (`ipvs-trace/ipvs-trace-x7k2p` is a pod),
/// no placeholder (`corpus/TARGET/`, `<dir>`, globs) and not under `target/` (build output,
/// which a fresh clone does not have). The path may be written from the root or from the
/// file's folder.
fn check_bare_reference(root: &Path, rel: &Path, word: &str) -> Option<String> {
    let word = word
        .trim_start_matches(['(', '[', '"', '\'', '<', '*', '_'])
        .trim_end_matches([
            ')', ']', '"', '\'', '>', ',', '.', ';', ':', '!', '?', '*', '_',
        ]);
    // `file.rs:42` and `file.md#anchor` name the file.
    let word = word.split('#').next().unwrap_or_default();
    let word = match word.split_once(':') {
        Some((path, position)) if position.chars().all(|c| c.is_ascii_digit() || c == ':') => path,
        _ => word,
    };
    // Absolute paths are the node's (`/sys/kernel/btf`); URLs are links.
    let not_a_path = word.contains("://")
        || word.contains("...")
        || word.starts_with(['/', '~', '-'])
        || word.contains([
            '*', '?', '<', '>', '{', '}', '$', '[', ']', '|', '…', ',', '=', '@', '`', '"', '\'',
            '%',
        ]);
    if not_a_path || !word.contains('/') {
        return None;
    }
    let path = word.trim_start_matches("./");
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let first = parts[0];
    if matches!(first, "" | "." | ".." | "target") || !root.join(first).exists() {
        return None;
    }
    let placeholder = |part: &&str| {
        part.len() > 1
            && part.starts_with(|c: char| c.is_ascii_uppercase())
            && part
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    if parts.iter().any(placeholder) {
        return None;
    }
    let last = parts.last().copied().unwrap_or_default();
    let has_extension = last.char_indices().any(|(i, c)| c == '.' && i > 0);
    if !(has_extension || path.ends_with('/')) {
        return None;
    }
    let dir = rel.parent().unwrap_or(Path::new(""));
    if root.join(path).exists() || root.join(dir).join(path).exists() {
        return None;
    }
    Some(format!(
        "`{word}` names a path that does not exist (from the repository root or beside {})",
        rel.display()
    ))
}

// ---------------------------------------------------------------------------------------------
// The link checks on small samples: each kind of problem is found, on its line, and what is
// right is not reported.

/// A small repository in the test's scratch folder, so the samples' targets exist or not by
/// construction.
fn sample_repo() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-check-sample");
    if root.exists() {
        fs::remove_dir_all(&root).expect("clear the sample repository");
    }
    fs::create_dir_all(root.join("docs/img")).expect("create the sample repository");
    fs::create_dir_all(root.join("src")).expect("create the sample repository");
    fs::write(root.join("docs/guide.md"), "# Guide\n## Setup\n## Setup\n").expect("write guide");
    fs::write(root.join("src/main.rs"), "fn main() {\n}\n").expect("write main.rs");
    root
}

#[test]
fn every_broken_link_is_reported_on_its_line_and_valid_ones_are_not() {
    let root = sample_repo();
    let text = "# Sample\n\
        [file](guide.md) [anchor](guide.md#setup-1) [dir](img/) [self](#sample) [root](/src/)\n\
        [line](../src/main.rs#L2) [url](https://example.com:8443/a?b=c#d) [mail](mailto:dev@example.com)\n\
        [missing](nowhere.md)\n\
        [bad anchor](guide.md#install)\n\
        [bad self](#nope)\n\
        [outside](../../etc/passwd)\n\
        [bad host](https://example..com/) [bad port](http://example.com:99999/)\n\
        [past the end](../src/main.rs#L9)\n\
        [dangling][nolabel]\n\
        ![missing image](img/logo.png)\n\
        Bare: `src/main.rs`, docs/guide.md, `src/gone.rs` and kube-system/coredns.\n";
    let doc = extract(text);
    let problems = check_links(
        &root,
        Path::new("docs/sample.md"),
        &doc,
        &mut AnchorCache::default(),
    );
    assert_eq!(
        lines_of(&problems),
        [4, 5, 6, 7, 8, 8, 9, 10, 11, 12],
        "{problems:#?}"
    );
    problem_on(&problems, 4, "docs/nowhere.md does not exist");
    let anchor = problem_on(
        &problems,
        5,
        "no heading of docs/guide.md has the anchor #install",
    );
    assert!(anchor.contains("guide, setup, setup-1"), "{anchor}");
    problem_on(&problems, 6, "no heading of this file has the anchor #nope");
    problem_on(&problems, 7, "outside the repository");
    problem_on(&problems, 8, "not a host name label");
    problem_on(&problems, 8, "port `99999`");
    problem_on(
        &problems,
        9,
        "line 9 is past the end of src/main.rs (2 lines)",
    );
    problem_on(&problems, 10, "no `[nolabel]: target` definition");
    problem_on(&problems, 11, "docs/img/logo.png does not exist");
    problem_on(
        &problems,
        12,
        "`src/gone.rs` names a path that does not exist",
    );
}

#[test]
fn urls_and_emails_are_checked_for_syntax_only() {
    for good in [
        "https://example.com",
        "http://127.0.0.1:9808/metrics",
        "https://[::1]:8080/x?y=%20z#frag",
        "https://user@host.example/path",
    ] {
        assert_eq!(check_url(good), Ok(()), "{good}");
    }
    for bad in [
        "https://",
        "https://exa mple.com",
        "https://host:port/",
        "https://-host.example/",
        "https://[::zz]/",
        "https://host.example/%zz",
    ] {
        assert!(check_url(bad).is_err(), "{bad} passed");
    }
    assert_eq!(check_email("dev@example.com,ops@example.org"), Ok(()));
    assert!(check_email("dev@localhost").is_err());
    assert!(check_email("@example.com").is_err());
}
