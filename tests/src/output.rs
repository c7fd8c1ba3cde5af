//! The framed output of `tests/scenarios/run-all.sh` and `tests/lib/lab.sh`, cut into scenarios
//! and dumps.
//!
//! ```text
//! @@SCENARIO rr BEGIN@@
//! lab: ...                      (free log lines)
//! @@DUMP conns@@
//! ...                           (one command's output)
//! @@END conns status=0@@
//! @@SCENARIO rr END status=0 elapsed=7.42@@
//! ```

use std::fmt::Write as _;

/// One command's output inside a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Dump {
    pub name: String,
    /// The command's exit status (`None` if the end marker never came).
    pub status: Option<i32>,
    pub text: String,
}

/// One scenario's run.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioRun {
    pub name: String,
    /// The scenario shell's exit status; `None` if its end marker never came (the guest died or
    /// timed out while it ran).
    pub status: Option<i32>,
    /// Guest seconds from begin to end marker.
    pub elapsed_s: Option<f64>,
    /// Log lines outside dumps.
    pub log: Vec<String>,
    pub dumps: Vec<Dump>,
}

impl ScenarioRun {
    /// The dump called `name`, if the scenario made one.
    #[must_use]
    pub fn find(&self, name: &str) -> Option<&Dump> {
        self.dumps.iter().find(|d| d.name == name)
    }

    /// The dumps whose name matches `pred`, in output order.
    pub fn dumps_where(&self, pred: impl Fn(&str) -> bool) -> impl Iterator<Item = &Dump> {
        self.dumps.iter().filter(move |d| pred(&d.name))
    }

    /// A readable account for a failure message: every log line, short dumps in full, long
    /// ones (event streams, connection tables) by name and size.
    #[must_use]
    pub fn report(&self) -> String {
        let mut out = format!(
            "scenario {} (status {}, {} s)\n",
            self.name,
            self.status
                .map_or_else(|| "unknown: no end marker".to_owned(), |s| s.to_string()),
            self.elapsed_s
                .map_or_else(|| "?".to_owned(), |s| s.to_string()),
        );
        for line in &self.log {
            let _ = writeln!(out, "  | {line}");
        }
        for dump in &self.dumps {
            let lines = dump.text.lines().count();
            let status = dump
                .status
                .map_or_else(|| "unfinished".to_owned(), |s| s.to_string());
            if lines <= 30 {
                let _ = writeln!(out, "  [{}] status {status}:", dump.name);
                for line in dump.text.lines() {
                    let _ = writeln!(out, "  | {line}");
                }
            } else {
                let _ = writeln!(out, "  [{}] status {status}: {lines} lines", dump.name);
            }
        }
        out
    }
}

/// Cuts the guest's script output into scenarios. Text outside scenario markers (the runner's
/// own lines) is ignored; a scenario or dump cut short by the end of the output is kept with
/// `status: None`.
#[must_use]
pub fn parse_scenarios(output: &str) -> Vec<ScenarioRun> {
    let mut runs = Vec::new();
    let mut current: Option<ScenarioRun> = None;
    let mut dump: Option<Dump> = None;
    for raw in output.lines() {
        // The serial console ends lines with \r\n.
        let line = raw.trim_end_matches('\r');
        if let Some(rest) = marker(line, "@@SCENARIO ") {
            if let Some(name) = rest.strip_suffix(" BEGIN") {
                if let Some(mut run) = current.take() {
                    close_dump(&mut run, dump.take());
                    runs.push(run);
                }
                current = Some(ScenarioRun {
                    name: name.to_owned(),
                    status: None,
                    elapsed_s: None,
                    log: Vec::new(),
                    dumps: Vec::new(),
                });
                continue;
            }
            if let (Some(mut run), Some((name, fields))) = (current.take(), rest.split_once(" END"))
            {
                if run.name == name {
                    close_dump(&mut run, dump.take());
                    run.status = field(fields, "status").and_then(|s| s.parse().ok());
                    run.elapsed_s = field(fields, "elapsed").and_then(|s| s.parse().ok());
                    runs.push(run);
                } else {
                    current = Some(run);
                }
                continue;
            }
        }
        let Some(run) = current.as_mut() else {
            continue;
        };
        if let Some(name) = marker(line, "@@DUMP ") {
            close_dump(run, dump.take());
            dump = Some(Dump {
                name: name.to_owned(),
                status: None,
                text: String::new(),
            });
            continue;
        }
        if let (Some(open), Some(rest)) = (dump.as_mut(), marker(line, "@@END ")) {
            if let Some((name, fields)) = rest.split_once(' ') {
                if name == open.name {
                    open.status = field(fields, "status").and_then(|s| s.parse().ok());
                    run.dumps.extend(dump.take());
                    continue;
                }
            }
        }
        match dump.as_mut() {
            Some(open) => {
                open.text.push_str(line);
                open.text.push('\n');
            }
            None => run.log.push(line.to_owned()),
        }
    }
    if let Some(mut run) = current {
        close_dump(&mut run, dump);
        runs.push(run);
    }
    runs
}

/// `@@<prefix>...@@` → `...`.
fn marker<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("@@")
}

/// `key=value` among space-separated fields.
fn field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

/// Keeps a dump whose end marker never came.
fn close_dump(run: &mut ScenarioRun, dump: Option<Dump>) {
    run.dumps.extend(dump);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
runner noise\r
@@SCENARIO rr BEGIN@@\r
lab: something\r
@@DUMP conns@@\r
IPVS connection entries\r
@@END conns status=0@@\r
@@DUMP trace.stderr@@\r
@@END trace.stderr status=3@@\r
@@SCENARIO rr END status=0 elapsed=7.42@@\r
@@SCENARIO udp BEGIN@@\r
@@DUMP trace.out@@\r
{\"a\":1}\r
";

    #[test]
    fn cuts_scenarios_and_dumps() {
        let runs = parse_scenarios(SAMPLE);
        assert_eq!(runs.len(), 2);
        let rr = &runs[0];
        assert_eq!(rr.name, "rr");
        assert_eq!(rr.status, Some(0));
        assert_eq!(rr.elapsed_s, Some(7.42));
        assert_eq!(rr.log, ["lab: something"]);
        assert_eq!(
            rr.find("conns"),
            Some(&Dump {
                name: "conns".into(),
                status: Some(0),
                text: "IPVS connection entries\n".into()
            })
        );
        assert_eq!(rr.find("trace.stderr").unwrap().text, "");
        assert_eq!(rr.find("trace.stderr").unwrap().status, Some(3));
        assert!(rr.report().contains("[trace.stderr] status 3"));
    }

    #[test]
    fn keeps_what_was_cut_short() {
        let runs = parse_scenarios(SAMPLE);
        let udp = &runs[1];
        assert_eq!(udp.status, None);
        let dump = udp.find("trace.out").unwrap();
        assert_eq!(dump.status, None);
        assert_eq!(dump.text, "{\"a\":1}\n");
        assert!(udp.report().contains("no end marker"));
    }
}
