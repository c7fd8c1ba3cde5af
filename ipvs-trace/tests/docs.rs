//! README.md and docs/: every link resolves and every command line they show uses real flags.
//!
//! The docs are what a user copies from first, and nothing builds or runs Markdown: a link to a
//! file that moved, an anchor whose heading was reworded or a flag that was renamed breaks
//! silently. This test reads README.md and every docs/**/*.md with a CommonMark parser (GitHub's
//! dialect: tables, strikethrough, task lists, footnotes) and checks, whatever sections they
//! have at the time it runs:
//!
//! - **links**: every `[text](target)`, image and autolink. A relative target must exist
//!   (relative to the file that links; a directory is fine) and its `#fragment` must be the
//!   GitHub anchor of a heading of the target (or a `#L10` line of a non-Markdown file).
//!   `http(s)://` and `mailto:` targets are not fetched (no network here) but must be
//!   syntactically URLs. `[text][label]` with no definition of `label` is a dead link too.
//!   **Bare references** (a path in prose or code without a link, `deploy/daemonset.yaml`) must
//!   exist too, from the root or beside the file; a word is taken for one only when it starts
//!   at a top-level entry of the repository and ends in a file name with an extension or a
//!   folder's `/`, which keeps `ds/ipvs-trace`, `namespace/pod`, kernel source paths,
//!   placeholders (`corpus/TARGET/`) and build output (`target/`) out.
//! - **flags**: every `ipvs-trace SUBCOMMAND ...` in a code span or a code block line (also
//!   after `sudo`, a path, `kubectl exec ... --`; a `\` continues a line; `|`, `;`, `&&` and `#`
//!   end the command) has each `--long` and `-s` flag checked against the arguments of that
//!   subcommand as `Cli::command()` defines them, the definitions `--help` prints: global
//!   arguments, `--help` and `--version` included, values after `=` ignored, nested
//!   subcommands descended. `cargo xtask ...` lines are checked the same way against xtask's
//!   `Cli`. In prose, a code span `SUBCOMMAND --flag ...` (`trace --vip`) is an ipvs-trace
//!   command line, and a span of flags only (`--check`) is checked against the ipvs-trace
//!   subcommands named in code spans of the same sentence (`balance`'s `--check`), heading or
//!   table row.
//!
//!   A flag span with no subcommand named beside it is left alone, and so is one beside a
//!   `cargo xtask` command: the docs quote the flags of what they talk about, cargo's
//!   `--release`, ipvsadm's `--stats` and `-p 30`, QEMU's `-icount`, `git describe`'s `-dirty`,
//!   and guessing a flag's command from its section (trace.md, say) would report those. A
//!   sentence that names a subcommand and quotes another tool's flag needs that tool in the
//!   span: `kubectl --context`, not `--context`.
//!
//! Every problem is reported at once, as `file:line: what is wrong`, so one run gives the whole
//! list. docs/man/ is skipped: it is rendered from the same clap definitions and compared with
//! them by tests/man_completions.rs.

// One module a concern, in tests/docs/ (a test crate's root resolves modules beside itself).
#[path = "docs/flags.rs"]
mod flags;
#[path = "docs/links.rs"]
mod links;
#[path = "docs/markdown.rs"]
mod markdown;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use flags::{check_flags, count_invocations, Clis};
use links::{check_links, AnchorCache};
use markdown::{extract, Extract};

/// A problem found in a file: its line and what is wrong.
pub(crate) type Problem = (usize, String);

/// The repository root: README.md and docs/ are there, one level above this crate.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives one level below the repository root")
        .to_path_buf()
}

/// README.md and docs/**/*.md except docs/man/ (generated), as paths relative to `root`, sorted
/// so the report reads in a stable order.
fn doc_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let dir = root.join(rel);
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
            let rel = rel.join(entry.file_name());
            let kind = entry
                .file_type()
                .unwrap_or_else(|err| panic!("cannot stat {}: {err}", rel.display()));
            if kind.is_dir() {
                if rel != Path::new("docs/man") {
                    walk(root, &rel, out);
                }
            } else if rel.extension().is_some_and(|ext| ext == "md") {
                out.push(rel);
            }
        }
    }
    let mut files = vec![PathBuf::from("README.md")];
    if root.join("docs").is_dir() {
        walk(root, Path::new("docs"), &mut files);
    }
    files[1..].sort();
    files
}

fn read(root: &Path, rel: &Path) -> String {
    fs::read_to_string(root.join(rel))
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", rel.display()))
}

/// Runs a check over every doc file and fails with every problem at once, file by file in
/// line order, each as `file:line: what is wrong`. `count` says how many things a file had to
/// check: a run that found none anywhere means the extraction broke, not that the docs are
/// right.
fn check_all_docs(
    what: &str,
    mut check: impl FnMut(&Path, &Path, &Extract) -> Vec<Problem>,
    count: impl Fn(&Extract) -> usize,
) {
    let root = repo_root();
    let files = doc_files(&root);
    let mut report = Vec::new();
    let mut checked = 0;
    for rel in &files {
        let doc = extract(&read(&root, rel));
        checked += count(&doc);
        let problems: BTreeSet<Problem> = check(&root, rel, &doc).into_iter().collect();
        report.extend(
            problems
                .into_iter()
                .map(|(line, what)| format!("{}:{line}: {what}", rel.display())),
        );
    }
    assert!(
        checked > 0,
        "found nothing to check ({what}) in {} files: the Markdown extraction is broken",
        files.len()
    );
    assert!(
        report.is_empty(),
        "{} {what} in README.md and docs/ ({} files, {checked} checked):\n{}\n",
        report.len(),
        files.len(),
        report.join("\n")
    );
}

#[test]
fn readme_and_docs_links_resolve() {
    let mut cache = AnchorCache::default();
    check_all_docs(
        "broken links",
        |root, rel, doc| check_links(root, rel, doc, &mut cache),
        |doc| doc.links.len(),
    );
}

#[test]
fn readme_and_docs_command_lines_use_real_flags() {
    let clis = Clis::new();
    check_all_docs(
        "unknown flags",
        |_, _, doc| check_flags(doc, &clis),
        |doc| count_invocations(doc, &clis),
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers of the sample tests of each module.

/// The lines of `problems`, sorted: which lines a sample's problems are on, and how many.
pub(crate) fn lines_of(problems: &[Problem]) -> Vec<usize> {
    let mut lines: Vec<usize> = problems.iter().map(|(line, _)| *line).collect();
    lines.sort_unstable();
    lines
}

pub(crate) fn problem_on<'a>(problems: &'a [Problem], line: usize, needle: &str) -> &'a str {
    let found = problems
        .iter()
        .find(|(l, what)| *l == line && what.contains(needle));
    let Some((_, what)) = found else {
        panic!("no problem on line {line} with `{needle}` in {problems:#?}")
    };
    what
}
