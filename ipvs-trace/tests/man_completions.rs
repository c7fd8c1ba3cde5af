//! The man pages (docs/man/) and shell completions (completions/) are generated from the clap
//! definitions of `ipvs_trace::cli` and committed, so that they can be read and reviewed where
//! the sources are and shipped as they are by `cargo xtask dist`. This test renders them in
//! memory and fails when the committed copies differ (a flag added, a help text changed) or
//! when a file is there that nothing generates any more.
//!
//! `cargo xtask dist --refresh-generated` rewrites them: it runs this test with
//! `IPVS_TRACE_BLESS=1`, which writes what it renders and removes what it no longer renders.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_complete::Shell;
use ipvs_trace::cli::Cli;

/// The command that rewrites the committed copies, named by every failure.
const REFRESH: &str = "cargo xtask dist --refresh-generated";

/// The folders, relative to the workspace root, that hold only generated files.
const MAN_DIR: &str = "docs/man";
const COMPLETIONS_DIR: &str = "completions";

/// Every generated file: path relative to the workspace root, content.
fn render() -> BTreeMap<PathBuf, Vec<u8>> {
    // The pages carry the release only: `--version`'s commit and eBPF hash change with every
    // build and would make the committed pages stale at each commit.
    let mut cmd = Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true);
    cmd.build();
    let mut files = BTreeMap::new();
    man_pages(&cmd, &mut files);
    for (shell, file) in [
        (Shell::Bash, "ipvs-trace.bash"),
        (Shell::Zsh, "_ipvs-trace"),
        (Shell::Fish, "ipvs-trace.fish"),
    ] {
        // The command as the binary has it (clap's `help` subcommand included), not built yet:
        // clap_complete names it itself.
        let script = if shell == Shell::Bash {
            bash_completion(Cli::command())
        } else {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ipvs-trace", &mut script);
            script
        };
        files.insert(Path::new(COMPLETIONS_DIR).join(file), script);
    }
    files
}

/// The bash script. clap_complete 4.6 spells the script's state two ways when the command's
/// name has a hyphen (clap-rs/clap#6421: `ipvs__trace__subcmd__trace` in the loop that reads
/// the words, `ipvs__subcmd__trace__subcmd__trace` in the case that completes them), so no
/// subcommand's flags would complete. Generated for `ipvs_trace` the script is consistent (it
/// matches the typed command word whatever its name); only the name `complete` registers it
/// for is then put back.
fn bash_completion(mut cmd: clap::Command) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(Shell::Bash, &mut cmd, "ipvs_trace", &mut script);
    let script = String::from_utf8(script).expect("clap_complete writes UTF-8");
    let registered = " -o default ipvs_trace\n";
    assert_eq!(
        script.matches(registered).count(),
        2,
        "clap_complete's bash script no longer ends as expected: revisit bash_completion()"
    );
    script
        .replace(registered, " -o default ipvs-trace\n")
        .into_bytes()
}

/// `ipvs-trace.1` for the command, `ipvs-trace-SUB.1` for each visible subcommand (clap names
/// a built subcommand `ipvs-trace-SUB`; its page lists its own flags and examples).
fn man_pages(cmd: &clap::Command, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        man_pages(sub, files);
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .source(concat!("ipvs-trace ", env!("CARGO_PKG_VERSION")))
        .manual("ipvs-trace manual");
    let mut page = Vec::new();
    man.render(&mut page).expect("rendering into memory");
    files.insert(Path::new(MAN_DIR).join(man.get_filename()), page);
}

/// The files now in the generated folders, relative to the workspace root.
fn committed(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in [MAN_DIR, COMPLETIONS_DIR] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap_or_else(|err| panic!("listing {dir}: {err}"));
            found.push(Path::new(dir).join(entry.file_name()));
        }
    }
    found.sort();
    found
}

#[test]
fn committed_man_pages_and_completions_are_fresh() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let files = render();

    if std::env::var_os("IPVS_TRACE_BLESS").is_some() {
        for stale in committed(root) {
            if !files.contains_key(&stale) {
                fs::remove_file(root.join(&stale))
                    .unwrap_or_else(|err| panic!("removing {}: {err}", stale.display()));
                println!("removed {}", stale.display());
            }
        }
        for (path, content) in &files {
            let full = root.join(path);
            if fs::read(&full).ok().as_deref() == Some(content.as_slice()) {
                continue;
            }
            let dir = full.parent().expect("a folder");
            fs::create_dir_all(dir).unwrap_or_else(|err| panic!("creating {dir:?}: {err}"));
            fs::write(&full, content)
                .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
            println!("wrote {} ({} bytes)", path.display(), content.len());
        }
    }

    let mut problems = Vec::new();
    for (path, content) in &files {
        match fs::read(root.join(path)) {
            Ok(old) if old == *content => {}
            Ok(_) => problems.push(format!("{} differs from the CLI", path.display())),
            Err(err) => problems.push(format!("{} cannot be read: {err}", path.display())),
        }
    }
    for path in committed(root) {
        if !files.contains_key(&path) {
            problems.push(format!(
                "{} is not generated from the CLI any more",
                path.display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the committed man pages and completions are stale:\n  {}\nrun `{REFRESH}` and commit \
         {MAN_DIR}/ and {COMPLETIONS_DIR}/",
        problems.join("\n  ")
    );
}

#[test]
fn every_subcommand_has_a_page_and_completions_know_the_flags() {
    let files = render();
    // Every subcommand of ours: clap's own `help` subcommand gets no page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let page = Path::new(MAN_DIR).join(format!("ipvs-trace-{}.1", sub.get_name()));
        let text =
            String::from_utf8_lossy(files.get(&page).unwrap_or_else(|| {
                panic!("no man page {} for `{}`", page.display(), sub.get_name())
            }));
        // Every visible flag (roff writes `-` as `\-`) and the examples (after_help) reach
        // the page; hidden flags do not.
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert_eq!(
                text.contains(&flag),
                !arg.is_hide_set(),
                "{}: --{long} (hidden: {})",
                page.display(),
                arg.is_hide_set()
            );
        }
        if sub.get_after_help().is_some() {
            assert!(
                text.contains("Examples:"),
                "{}: no examples",
                page.display()
            );
        }
    }
    let top = String::from_utf8_lossy(&files[&Path::new(MAN_DIR).join("ipvs-trace.1")]);
    assert!(top.contains("ipvs\\-trace\\-trace(1)"), "{top}");
    // Each shell's script knows every subcommand and a flag of `trace`. (clap_complete also
    // completes the hidden --debug-* flags: clap has no way to leave an argument out.)
    for file in ["ipvs-trace.bash", "_ipvs-trace", "ipvs-trace.fish"] {
        let script = String::from_utf8_lossy(&files[&Path::new(COMPLETIONS_DIR).join(file)]);
        assert!(
            script.contains("ring-size"),
            "{file} lacks trace --ring-size"
        );
        for sub in cmd.get_subcommands() {
            assert!(
                script.contains(sub.get_name()),
                "{file} lacks {}",
                sub.get_name()
            );
        }
    }
}

/// The bash script completes in bash: subcommands, a subcommand's flags and their values
/// (which clap_complete's own script for a hyphenated name does not: see bash_completion).
#[test]
fn bash_completes_subcommands_flags_and_values() {
    let files = render();
    let script =
        String::from_utf8(files[&Path::new(COMPLETIONS_DIR).join("ipvs-trace.bash")].clone())
            .expect("UTF-8");
    // Calls the function `complete` registered for ipvs-trace as bash does on TAB: the
    // command name, the word under the cursor, the word before it.
    let driver = r#"
        eval "$SCRIPT"
        fn=$(complete -p ipvs-trace | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
        ask() {
            COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
            "$fn" ipvs-trace "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            echo "$*|${COMPREPLY[*]}"
        }
        ask ipvs-trace tr
        ask ipvs-trace trace --att
        ask ipvs-trace trace --attach ''
        ask ipvs-trace rules -o ''
        ask ipvs-trace who --si
    "#;
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", driver])
        .env("SCRIPT", script)
        .output()
        .expect("running bash");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<&str> = text.lines().collect();
    assert_eq!(
        answers,
        [
            "ipvs-trace tr|trace",
            "ipvs-trace trace --att|--attach",
            "ipvs-trace trace --attach |auto fentry kprobe",
            "ipvs-trace rules -o |table json",
            "ipvs-trace who --si|--since",
        ],
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
