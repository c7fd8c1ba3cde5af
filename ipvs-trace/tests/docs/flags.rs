//! Command lines: the flags the docs show, checked against the clap definitions of ipvs-trace
//! and xtask.

use clap::CommandFactory;

use crate::markdown::{Extract, Token};
use crate::Problem;
use crate::{lines_of, markdown::extract, problem_on};

/// The command lines the docs show: ipvs-trace's and xtask's, as clap builds them (with the
/// generated `--help`, `--version` and `help` and the global arguments propagated).
pub(crate) struct Clis {
    ipvs_trace: clap::Command,
    xtask: clap::Command,
}

impl Clis {
    pub(crate) fn new() -> Self {
        let mut ipvs_trace = ipvs_trace::cli::Cli::command();
        ipvs_trace.build();
        let mut xtask = xtask::cli::Cli::command();
        xtask.build();
        Clis { ipvs_trace, xtask }
    }
}

/// A command found in a line: its tool, and the words after the tool's name.
struct Invocation<'s, 'c> {
    root: &'c clap::Command,
    name: &'static str,
    args: &'s [Token],
}

/// The words of a code line split where a shell starts another command: `|`, `||`, `&&`, `;`,
/// `&` and a `#` comment.
fn segments(tokens: &[Token]) -> Vec<Vec<Token>> {
    let mut out = vec![Vec::new()];
    for token in tokens {
        let text = token.text.as_str();
        let separator = !token.quoted
            && (matches!(text, "|" | "||" | "&&" | ";" | "&") || text.starts_with('#'));
        if separator {
            out.push(Vec::new());
            continue;
        }
        if let Some(stripped) = text.strip_suffix(';').filter(|_| !token.quoted) {
            out.last_mut().expect("never empty").push(Token {
                text: stripped.to_owned(),
                ..token.clone()
            });
            out.push(Vec::new());
            continue;
        }
        out.last_mut().expect("never empty").push(token.clone());
    }
    out.retain(|segment| !segment.is_empty());
    out
}

/// Words a command may start after: `sudo`, `env`, `VAR=value`...
fn is_command_prefix(token: &Token) -> bool {
    matches!(
        token.text.as_str(),
        "sudo" | "env" | "exec" | "time" | "nohup" | "doas"
    ) || token.text.contains('=')
}

/// The ipvs-trace or xtask command in one segment of a code line, if it has one: `ipvs-trace`
/// (or a path ending in it) followed by a subcommand (or by a flag when it starts the command:
/// `cargo build -p ipvs-trace --release` is cargo's), or `cargo xtask`.
fn find_invocation<'s, 'c>(segment: &'s [Token], clis: &'c Clis) -> Option<Invocation<'s, 'c>> {
    for (i, token) in segment.iter().enumerate() {
        if token.quoted {
            continue;
        }
        let next = segment.get(i + 1).filter(|n| !n.quoted);
        if token.text == "cargo" && next.is_some_and(|n| n.text == "xtask") {
            return Some(Invocation {
                root: &clis.xtask,
                name: "cargo xtask",
                args: &segment[i + 2..],
            });
        }
        if token.text.rsplit('/').next() == Some("ipvs-trace") {
            let Some(next) = next else { continue };
            let subcommand = clis.ipvs_trace.find_subcommand(&next.text).is_some();
            let flag_first = next.text.starts_with('-')
                && next.text != "--"
                && segment[..i].iter().all(is_command_prefix);
            if subcommand || flag_first {
                return Some(Invocation {
                    root: &clis.ipvs_trace,
                    name: "ipvs-trace",
                    args: &segment[i + 1..],
                });
            }
        }
    }
    None
}

/// A flag as written: `--name` (value after `=` dropped) or a cluster of short flags `-abc`.
#[derive(Debug, PartialEq)]
enum Flag {
    Long(String),
    Shorts(String),
}

/// The flags a word holds: usage notation is taken apart (`[--timeout`, `--json|--table`,
/// `--file...`), and words that only look like flags are not (`-1`, `->`, `--`, `--<flag>`).
fn flags_in(word: &str) -> Vec<Flag> {
    let word = word
        .trim_start_matches(['[', '(', '{'])
        .trim_end_matches("...")
        .trim_end_matches(['…', ']', ')', '}', ',', '.', ';', ':']);
    word.split('|')
        .filter_map(|alternative| {
            if let Some(long) = alternative.strip_prefix("--") {
                let name = long.split('=').next().unwrap_or_default();
                let is_name = !name.is_empty()
                    && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                is_name.then(|| Flag::Long(name.to_owned()))
            } else {
                let shorts = alternative.strip_prefix('-')?;
                let shorts: String = shorts
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                shorts
                    .starts_with(|c: char| c.is_ascii_alphabetic())
                    .then_some(Flag::Shorts(shorts))
            }
        })
        .collect()
}

fn long_arg<'a>(command: &'a clap::Command, name: &str) -> Option<&'a clap::Arg> {
    command.get_arguments().find(|arg| {
        arg.get_long() == Some(name)
            || arg
                .get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })
}

fn short_arg(command: &clap::Command, short: char) -> Option<&clap::Arg> {
    command.get_arguments().find(|arg| {
        arg.get_short() == Some(short)
            || arg
                .get_all_short_aliases()
                .is_some_and(|aliases| aliases.contains(&short))
    })
}

/// The flags a command takes, for the report: `-o/--output, --vip, ...`.
fn flag_list(command: &clap::Command) -> String {
    let flags: Vec<String> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => Some(format!("-{short}/--{long}")),
            (None, Some(long)) => Some(format!("--{long}")),
            (Some(short), None) => Some(format!("-{short}")),
            (None, None) => None,
        })
        .collect();
    flags.join(", ")
}

/// An unknown flag: where, of which command, and what that command takes.
struct BadFlag {
    line: usize,
    flag: String,
    command: String,
    valid: String,
}

/// Checks the words after a tool's name: flags against the subcommand reached so far (a word
/// naming a subcommand of it descends), values of options skipped.
fn check_invocation(invocation: &Invocation<'_, '_>) -> Vec<BadFlag> {
    let mut bad = Vec::new();
    let mut command = invocation.root;
    let mut path = invocation.name.to_owned();
    let mut skip_value = false;
    for token in invocation.args {
        if token.quoted {
            skip_value = false;
            continue;
        }
        if token.text == "--" {
            break;
        }
        let flags = flags_in(&token.text);
        if flags.is_empty() {
            if !skip_value {
                if let Some(sub) = command.find_subcommand(&token.text) {
                    command = sub;
                    path = format!("{path} {}", sub.get_name());
                }
            }
            skip_value = false;
            continue;
        }
        skip_value = false;
        for flag in flags {
            match flag {
                Flag::Long(name) => match long_arg(command, &name) {
                    Some(arg) => {
                        skip_value = !token.text.contains('=') && takes_value(arg);
                    }
                    None => bad.push(BadFlag {
                        line: token.line,
                        flag: format!("--{name}"),
                        command: path.clone(),
                        valid: flag_list(command),
                    }),
                },
                Flag::Shorts(shorts) => {
                    for (i, short) in shorts.char_indices() {
                        match short_arg(command, short) {
                            Some(arg) if takes_value(arg) => {
                                // The rest of the word is its value (`-ojson`), else the next.
                                skip_value = i + 1 == shorts.len();
                                break;
                            }
                            Some(_) => {}
                            None => {
                                bad.push(BadFlag {
                                    line: token.line,
                                    flag: format!("-{short}"),
                                    command: path.clone(),
                                    valid: flag_list(command),
                                });
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    bad
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
}

/// The command a code span names: a whole ipvs-trace or xtask command line, or a span that
/// starts with an ipvs-trace subcommand (`trace --vip`, `balance`), which is then checked as
/// `ipvs-trace trace --vip`. Returns the command (deepest subcommand reached) and the flags
/// that are wrong.
fn span_command<'a>(
    tokens: &[Token],
    clis: &'a Clis,
) -> Option<(String, &'a clap::Command, Vec<BadFlag>)> {
    let first_segment = segments(tokens).into_iter().next()?;
    // A whole command line is checked with the other code lines: here it only names its command.
    let (invocation_root, name, args, report) =
        if let Some(found) = find_invocation(&first_segment, clis) {
            (found.root, found.name, found.args.to_vec(), false)
        } else {
            let first = first_segment.first()?;
            let sub = clis.ipvs_trace.find_subcommand(&first.text)?;
            // `help` as a word of prose is English, not the generated subcommand.
            if sub.get_name() == "help" {
                return None;
            }
            (&clis.ipvs_trace, "ipvs-trace", first_segment.clone(), true)
        };
    let invocation = Invocation {
        root: invocation_root,
        name,
        args: &args,
    };
    let bad = check_invocation(&invocation);
    // Follow the subcommand words to the command the span names.
    let mut command = invocation_root;
    let mut path = name.to_owned();
    for token in &args {
        if let Some(sub) = command.find_subcommand(&token.text) {
            command = sub;
            path = format!("{path} {}", sub.get_name());
        }
    }
    Some((path, command, if report { bad } else { Vec::new() }))
}

/// The flag problems of one file: its command lines (code spans and code block lines), then the
/// flag-only code spans of each prose unit against the commands that unit names.
pub(crate) fn check_flags(doc: &Extract, clis: &Clis) -> Vec<Problem> {
    let mut bad = Vec::new();
    for line in &doc.code_lines {
        for segment in segments(line) {
            if let Some(invocation) = find_invocation(&segment, clis) {
                bad.extend(check_invocation(&invocation));
            }
        }
    }
    let mut problems: Vec<Problem> = bad
        .into_iter()
        .map(|b| {
            let what = format!(
                "`{} {}`: no such flag; `{}` takes: {}",
                b.command, b.flag, b.command, b.valid
            );
            (b.line, what)
        })
        .collect();

    for unit in &doc.units {
        let mut named: Vec<(String, &clap::Command)> = Vec::new();
        let mut lone: Vec<&Token> = Vec::new();
        for span in unit {
            if let Some((path, command, bad)) = span_command(span, clis) {
                problems.extend(bad.into_iter().map(|b| {
                    let what = format!(
                        "`{} {}` (written `{}`): no such flag; `{}` takes: {}",
                        b.command,
                        b.flag,
                        span_text(span),
                        b.command,
                        b.valid
                    );
                    (b.line, what)
                }));
                if !named.iter().any(|(p, _)| *p == path) {
                    named.push((path, command));
                }
            } else if span.first().is_some_and(|t| !flags_in(&t.text).is_empty()) {
                lone.extend(span.iter().filter(|t| !t.quoted));
            }
        }
        // Only an ipvs-trace subcommand tells whose flags the unit's flag spans are: prose
        // about `cargo xtask` commands quotes the flags of what they run (cargo's `--release`,
        // ipvsadm's `-p 30`), and `ipvs-trace` alone names no subcommand.
        named.retain(|(path, _)| path.starts_with("ipvs-trace "));
        if named.is_empty() {
            continue;
        }
        for token in lone {
            for flag in flags_in(&token.text) {
                let known = named.iter().any(|(_, command)| match &flag {
                    Flag::Long(name) => long_arg(command, name).is_some(),
                    Flag::Shorts(shorts) => shorts_known(command, shorts),
                });
                if !known {
                    let written = match &flag {
                        Flag::Long(name) => format!("--{name}"),
                        Flag::Shorts(shorts) => format!("-{shorts}"),
                    };
                    let takes: Vec<String> = named
                        .iter()
                        .map(|(path, command)| format!("`{path}` takes: {}", flag_list(command)))
                        .collect();
                    let listed: Vec<&str> = named.iter().map(|(p, _)| p.as_str()).collect();
                    let what = format!(
                        "`{written}` is not a flag of `{}` (named in the same sentence); {}",
                        listed.join("` or `"),
                        takes.join("; ")
                    );
                    problems.push((token.line, what));
                }
            }
        }
    }
    problems
}

fn shorts_known(command: &clap::Command, shorts: &str) -> bool {
    for short in shorts.chars() {
        match short_arg(command, short) {
            Some(arg) if takes_value(arg) => return true,
            Some(_) => {}
            None => return false,
        }
    }
    true
}

fn span_text(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn count_invocations(doc: &Extract, clis: &Clis) -> usize {
    doc.code_lines
        .iter()
        .flat_map(|line| segments(line))
        .filter(|segment| find_invocation(segment, clis).is_some())
        .count()
}

// ---------------------------------------------------------------------------------------------
// The flag checks on small samples: unknown flags are found, on their line, with their command;
// real ones, other tools' and values are not reported.

#[test]
fn unknown_flags_are_reported_with_their_command_and_its_valid_flags() {
    let clis = Clis::new();
    let doc = extract(
        "Run `ipvs-trace trace --vip 10.0.0.1:80 --vpi 10.0.0.2`.\n\
         \n\
         ```sh\n\
         sudo ipvs-trace top --batch --interval=5s -b -x\n\
         ipvs-trace rules \\\n  \
           --stats \\\n  \
           --bogus\n\
         cargo xtask lab --kernel 6.1 --kernal 6.1\n\
         kubectl exec ds/ipvs-trace -- ipvs-trace who --clustr\n\
         ```\n\
         \n\
         - an item:\n\
         \n  \
           ```sh\n  \
           ipvs-trace check --atach kprobe\n  \
           ```\n",
    );
    let problems = check_flags(&doc, &clis);
    assert_eq!(lines_of(&problems), [1, 4, 7, 8, 9, 15], "{problems:#?}");
    let vpi = problem_on(&problems, 1, "`ipvs-trace trace --vpi`: no such flag");
    assert!(
        vpi.contains("--vip") && vpi.contains("-o/--output"),
        "{vpi}"
    );
    problem_on(&problems, 4, "`ipvs-trace top -x`");
    problem_on(&problems, 7, "`ipvs-trace rules --bogus`");
    let kernal = problem_on(&problems, 8, "`cargo xtask lab --kernal`");
    assert!(kernal.contains("--kernel"), "{kernal}");
    problem_on(&problems, 9, "`ipvs-trace who --clustr`");
    problem_on(&problems, 15, "`ipvs-trace check --atach`");
}

#[test]
fn real_flags_globals_values_and_other_tools_are_not_reported() {
    let clis = Clis::new();
    let doc = extract(
        "`ipvs-trace --version`, `ipvs-trace -V`, `ipvs-trace trace --help`, \
         `ipvs-trace help trace`, `ipvs-trace trace -ojson`.\n\
         \n\
         ```sh\n\
         $ ipvs-trace trace -o json --event new,reused | jq -r .backend | head -n 5\n\
         cargo build --release -p ipvs-trace --target x86_64-unknown-linux-gnu\n\
         kubectl -n ipvs-trace exec ds/ipvs-trace -- ipvs-trace who --limit 3 -o json\n\
         ipvs-trace trace --duration 5m > out.jsonl 2>&1; grep -c new out.jsonl\n\
         ipvs-trace check --attach kprobe    # then try --attach fentry -Z (a comment)\n\
         ipvs-trace trace --vip '10.0.0.1 --not-a-flag'\n\
         ipvs-trace: tracing (--x in an output line is not a command line)\n\
         cargo xtask bench [--only pipeline|history] [--minutes N]\n\
         ```\n",
    );
    let problems = check_flags(&doc, &clis);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(count_invocations(&doc, &clis), 11);
}

#[test]
fn prose_flags_are_checked_against_the_subcommand_named_beside_them() {
    let clis = Clis::new();
    let doc = extract(
        "`balance`'s `--check` makes the verdict the exit status. `balance` has no `--vip-typo`.\n\
         `trace --nat` shows the NAT; `top --bacth` is a typo.\n\
         The `--stats` of `ipvsadm -Ln` is not ours, nor is `--context` alone.\n\
         \n\
         | command | flags |\n\
         |---|---|\n\
         | `rules` | `--rate`, `--ratez` |\n\
         \n\
         `cargo xtask dist` builds with cargo's `--release`.\n\
         \n\
         ## `who` and `--cluster`\n",
    );
    let problems = check_flags(&doc, &clis);
    assert_eq!(lines_of(&problems), [1, 2, 7], "{problems:#?}");
    let typo = problem_on(
        &problems,
        1,
        "`--vip-typo` is not a flag of `ipvs-trace balance`",
    );
    assert!(typo.contains("--check"), "{typo}");
    problem_on(
        &problems,
        2,
        "`ipvs-trace top --bacth` (written `top --bacth`)",
    );
    problem_on(
        &problems,
        7,
        "`--ratez` is not a flag of `ipvs-trace rules`",
    );
}

#[test]
fn nested_subcommands_are_descended() {
    // ipvs-trace has no nested subcommand today; a tool that has one, under the same name.
    let mut nested = clap::Command::new("ipvs-trace").subcommand(
        clap::Command::new("history")
            .arg(clap::Arg::new("dir").long("dir"))
            .subcommand(
                clap::Command::new("prune").arg(clap::Arg::new("older").long("older-than")),
            ),
    );
    nested.build();
    let clis = Clis {
        ipvs_trace: nested,
        ..Clis::new()
    };
    let doc = extract(
        "`ipvs-trace history --dir x prune --older-than 2d`\n\
         `ipvs-trace history prune --older-than 2d --dir x`\n\
         `ipvs-trace history --dir prune --older-than 2d`\n",
    );
    let problems = check_flags(&doc, &clis);
    // Line 3: `prune` is the value of `--dir`, so `--older-than` is history's, which has none.
    assert_eq!(lines_of(&problems), [2, 3], "{problems:#?}");
    problem_on(&problems, 2, "`ipvs-trace history prune --dir`");
    problem_on(&problems, 3, "`ipvs-trace history --older-than`");
}
