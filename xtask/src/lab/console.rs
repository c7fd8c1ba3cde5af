//! Reading the guest's serial console: cleaning lines and finding the script's output between
//! the markers /init prints.

pub(crate) const BEGIN_MARKER: &str = "@@LAB-SCRIPT-BEGIN@@";
pub(crate) const END_MARKER_PREFIX: &str = "@@LAB-SCRIPT-END status=";

/// One console line as text: `\r` dropped (the serial line ends lines with `\r\n`) and terminal
/// control sequences removed (the firmware clears the screen and switches modes at boot).
pub(crate) fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI runs up to a final byte in '@'..='~'; other escapes (ESC c: reset) are two
            // bytes long.
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// What the markers say about one boot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Script {
    /// The BEGIN marker was seen: the guest booted and loaded its modules.
    pub began: bool,
    /// The lines between the markers, each ending in `\n`.
    pub output: String,
    /// From the END marker; `None` if the script never finished.
    pub status: Option<i32>,
}

/// Finds the first BEGIN marker and the last well-formed END marker after it. A marker may sit
/// at the end of a line: a script whose last output has no newline leaves the END marker
/// behind that text, which then still belongs to the output.
pub(crate) fn parse(lines: &[String]) -> Script {
    let Some(begin) = lines.iter().position(|line| line.contains(BEGIN_MARKER)) else {
        return Script {
            began: false,
            output: String::new(),
            status: None,
        };
    };
    let body = &lines[begin + 1..];
    let end = body
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, line)| Some((i, end_marker(line)?)));
    let (taken, status, tail) = match end {
        Some((i, (prefix, status))) => (&body[..i], Some(status), prefix),
        None => (body, None, ""),
    };
    let mut output = String::new();
    for line in taken {
        output.push_str(line);
        output.push('\n');
    }
    if !tail.is_empty() {
        output.push_str(tail);
        output.push('\n');
    }
    Script {
        began: true,
        output,
        status,
    }
}

/// `(text before the marker, status)` if `line` holds `@@LAB-SCRIPT-END status=<N>@@`.
fn end_marker(line: &str) -> Option<(&str, i32)> {
    let at = line.rfind(END_MARKER_PREFIX)?;
    let rest = &line[at + END_MARKER_PREFIX.len()..];
    let digits = rest.strip_suffix("@@")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((&line[..at], digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn output_is_what_lies_between_the_markers() {
        let console = lines(
            "[    0.000000] Linux version 6.1\n\
             load-ipvs: insmod x failed\n\
             @@LAB-SCRIPT-BEGIN@@\n\
             6.1.0-56-amd64\n\
             \n\
             IP Virtual Server version 1.2.1\n\
             @@LAB-SCRIPT-END status=3@@\n\
             [    9.000000] reboot: Power down\n",
        );
        assert_eq!(
            parse(&console),
            Script {
                began: true,
                output: "6.1.0-56-amd64\n\nIP Virtual Server version 1.2.1\n".into(),
                status: Some(3),
            }
        );
    }

    #[test]
    fn end_marker_after_unterminated_output_keeps_the_text() {
        let console = lines("@@LAB-SCRIPT-BEGIN@@\nno newline@@LAB-SCRIPT-END status=0@@\n");
        let script = parse(&console);
        assert_eq!(script.output, "no newline\n");
        assert_eq!(script.status, Some(0));
    }

    #[test]
    fn empty_output_and_large_status() {
        let script = parse(&lines(
            "@@LAB-SCRIPT-BEGIN@@\n@@LAB-SCRIPT-END status=255@@\n",
        ));
        assert_eq!(script.output, "");
        assert_eq!(script.status, Some(255));
    }

    #[test]
    fn script_echoing_marker_text_does_not_end_early() {
        // `cat /init` or a grep for the marker in a script's output: not well-formed markers.
        let console = lines(
            "@@LAB-SCRIPT-BEGIN@@\n\
             echo \"$m-END status=$?@@\"\n\
             @@LAB-SCRIPT-END status=x@@\n\
             @@LAB-SCRIPT-BEGIN@@\n\
             last\n\
             @@LAB-SCRIPT-END status=1@@\n",
        );
        let script = parse(&console);
        assert_eq!(
            script.output,
            "echo \"$m-END status=$?@@\"\n@@LAB-SCRIPT-END status=x@@\n@@LAB-SCRIPT-BEGIN@@\nlast\n"
        );
        assert_eq!(script.status, Some(1));
    }

    #[test]
    fn missing_markers_are_reported() {
        let none = parse(&lines("Kernel panic - not syncing: VFS\n"));
        assert!(!none.began);
        assert_eq!(none.status, None);
        let unfinished = parse(&lines("@@LAB-SCRIPT-BEGIN@@\nworking\n"));
        assert!(unfinished.began);
        assert_eq!(unfinished.output, "working\n");
        assert_eq!(unfinished.status, None);
    }

    #[test]
    fn clean_line_drops_carriage_returns_and_escape_sequences() {
        assert_eq!(
            clean_line(b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\n"),
            "SeaBIOS"
        );
        assert_eq!(clean_line(b"plain text\r\n"), "plain text");
        assert_eq!(clean_line(b"bad \xff byte\n"), "bad \u{fffd} byte");
    }
}
