//! Markdown: what one file holds that the checks look at, read with pulldown-cmark as GitHub
//! reads it (tables, strikethrough, task lists, footnotes), each thing with its line.

use std::collections::HashMap;
use std::ops::Range;

use pulldown_cmark::{BrokenLink, Event, LinkType, Options, Parser, Tag, TagEnd};

/// A word of a code span or code block, with the line it is on.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) text: String,
    pub(crate) line: usize,
    /// Inside quotes: an argument value, never a flag or a command.
    pub(crate) quoted: bool,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) dest: String,
    pub(crate) line: usize,
    pub(crate) kind: LinkType,
}

/// What the checks need from one Markdown file, each with its 1-based line.
#[derive(Debug, Default)]
pub(crate) struct Extract {
    pub(crate) links: Vec<Link>,
    /// `[text][label]` whose label has no definition: GitHub renders it as plain text.
    pub(crate) broken_refs: Vec<(String, usize)>,
    /// The GitHub anchors of the headings (and explicit HTML `id`/`name` attributes).
    pub(crate) anchors: Vec<String>,
    /// Each inline code span and each logical line of a code block, as shell-like words.
    pub(crate) code_lines: Vec<Vec<Token>>,
    /// The code spans of each prose unit (a sentence, a heading, a table row), for flags
    /// written apart from their command.
    pub(crate) units: Vec<Vec<Vec<Token>>>,
    /// Words of prose and code, for bare references to files.
    pub(crate) words: Vec<Token>,
}

/// 1-based line of a byte offset.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at + 1))
                .collect(),
        )
    }

    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// Parses `text` as GitHub-flavoured Markdown and collects what the checks need.
pub(crate) fn extract(text: &str) -> Extract {
    let lines = Lines::new(text);
    let mut broken_refs = Vec::new();
    let callback = |link: BrokenLink<'_>| {
        // Shortcut `[word]` with no definition is ordinary text in prose (`[WARN]`, `[:PORT]`);
        // only the explicit forms `[text][label]` and `[label][]` are meant as links.
        if matches!(link.link_type, LinkType::Reference | LinkType::Collapsed) {
            broken_refs.push((link.reference.to_string(), link.span.start));
        }
        None
    };
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_GFM;
    let events: Vec<(Event<'_>, Range<usize>)> =
        Parser::new_with_broken_link_callback(text, options, Some(callback))
            .into_offset_iter()
            .collect();

    let mut walker = Walker {
        out: Extract {
            broken_refs: broken_refs
                .into_iter()
                .map(|(label, at)| (label, lines.of(at)))
                .collect(),
            ..Extract::default()
        },
        ..Walker::default()
    };
    for (event, range) in events {
        let line = lines.of(range.start);
        match event {
            Event::Start(tag) => walker.start(&tag, line),
            Event::End(end) => walker.end(end),
            Event::Text(text) => walker.text(&text, line),
            Event::Code(code) => walker.code(&code, line),
            Event::Html(html) | Event::InlineHtml(html) => {
                walker.out.anchors.extend(html_ids(&html));
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(title) = walker.heading.as_mut() {
                    title.push(' ');
                }
            }
            _ => {}
        }
    }
    walker.flush_unit();
    walker.out
}

/// The state of one pass over a file's events.
#[derive(Default)]
struct Walker {
    out: Extract,
    slugs: Slugger,
    /// The text of the heading being read.
    heading: Option<String>,
    /// The lines of the code block being read, with their line numbers.
    code_block: Option<Vec<(String, usize)>>,
    /// The code spans of the prose unit being read.
    unit: Vec<Vec<Token>>,
    table_depth: usize,
    /// Inside a link's text: its words are a label, the link itself is checked.
    link_depth: usize,
}

impl Walker {
    fn start(&mut self, tag: &Tag<'_>, line: usize) {
        match tag {
            Tag::Link {
                link_type,
                dest_url,
                ..
            }
            | Tag::Image {
                link_type,
                dest_url,
                ..
            } => {
                self.out.links.push(Link {
                    dest: dest_url.to_string(),
                    line,
                    kind: *link_type,
                });
                self.link_depth += 1;
            }
            Tag::Heading { .. } => self.heading = Some(String::new()),
            Tag::CodeBlock(_) => self.code_block = Some(Vec::new()),
            Tag::Table(_) => self.table_depth += 1,
            _ => {}
        }
        if is_block(tag) {
            self.flush_unit();
        }
    }

    fn end(&mut self, end: TagEnd) {
        match end {
            TagEnd::Heading(_) => {
                if let Some(title) = self.heading.take() {
                    self.out.anchors.push(self.slugs.slug(&title));
                }
            }
            TagEnd::CodeBlock => {
                if let Some(block) = self.code_block.take() {
                    for logical in logical_lines(&block) {
                        self.out.words.extend(logical.iter().cloned());
                        self.out.code_lines.push(logical);
                    }
                }
            }
            TagEnd::Table => self.table_depth = self.table_depth.saturating_sub(1),
            TagEnd::Link | TagEnd::Image => self.link_depth = self.link_depth.saturating_sub(1),
            _ => {}
        }
        if is_block_end(end) {
            self.flush_unit();
        }
    }

    fn text(&mut self, text: &str, line: usize) {
        if let Some(block) = self.code_block.as_mut() {
            // A code block's text comes line by line (or in larger pieces), each piece starting
            // on the line its range starts on.
            for (i, piece) in text.split('\n').enumerate() {
                if i > 0 || block.last().is_none_or(|last| last.1 != line) {
                    block.push((String::new(), line + i));
                }
                block.last_mut().expect("pushed above").0.push_str(piece);
            }
            return;
        }
        if let Some(title) = self.heading.as_mut() {
            title.push_str(text);
        }
        if self.link_depth == 0 {
            self.out.words.extend(prose_words(text, line));
        }
        if self.table_depth == 0 && ends_sentence(text) {
            self.flush_unit();
        }
    }

    fn code(&mut self, code: &str, line: usize) {
        if let Some(title) = self.heading.as_mut() {
            title.push_str(code);
        }
        let mut tokens = Vec::new();
        tokenize(code, line, &mut tokens);
        if self.link_depth == 0 {
            self.out.words.extend(tokens.iter().cloned());
        }
        self.out.code_lines.push(tokens.clone());
        self.unit.push(tokens);
    }

    fn flush_unit(&mut self) {
        if !self.unit.is_empty() {
            self.out.units.push(std::mem::take(&mut self.unit));
        }
    }
}

/// Tags whose start or end closes a prose unit: everything but inline markup and table cells
/// (a table row is one unit: `trace` in one cell names the command of `--vip` in another).
fn is_block(tag: &Tag<'_>) -> bool {
    !matches!(
        tag,
        Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
            | Tag::Image { .. }
            | Tag::TableCell
    )
}

fn is_block_end(end: TagEnd) -> bool {
    !matches!(
        end,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image
            | TagEnd::TableCell
    )
}

/// Whether prose text ends a sentence: `.`, `;`, `?` or `!` before a space or at its end, not
/// in the abbreviations that do not (`e.g.`, `i.e.`, `vs.`, `cf.`).
fn ends_sentence(text: &str) -> bool {
    let mut cleaned = text.to_owned();
    for abbreviation in ["e.g.", "i.e.", "vs.", "cf."] {
        cleaned = cleaned.replace(abbreviation, "");
    }
    let chars: Vec<char> = cleaned.chars().collect();
    chars.iter().enumerate().any(|(i, c)| {
        matches!(c, '.' | ';' | '?' | '!') && chars.get(i + 1).is_none_or(|n| n.is_whitespace())
    })
}

/// Joins a code block's lines that end in `\` (a shell continuation) into one logical line,
/// each word keeping the line it is on.
fn logical_lines(block: &[(String, usize)]) -> Vec<Vec<Token>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (text, line) in block {
        let trimmed = text.trim_end();
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (trimmed, false),
        };
        // A shell prompt is not part of the command. (A whole-line `# comment` is then read
        // as a line: only an ipvs-trace or xtask command line in it is checked, as it should.)
        let body = if current.is_empty() {
            let start = body.trim_start();
            start
                .strip_prefix("$ ")
                .or_else(|| start.strip_prefix("# "))
                .unwrap_or(start)
        } else {
            body
        };
        tokenize(body, *line, &mut current);
        if !continues {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Splits a command line into words as a shell would, enough for docs: whitespace separates,
/// a quote at the start of a word groups up to the same quote (an unmatched one is a letter:
/// `pod's` in a comment).
fn tokenize(text: &str, line: usize, out: &mut Vec<Token>) {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            return;
        };
        if first == '\'' || first == '"' {
            if let Some(close) = rest[1..].find(first) {
                out.push(Token {
                    text: rest[1..=close].to_owned(),
                    line,
                    quoted: true,
                });
                rest = &rest[close + 2..];
                continue;
            }
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push(Token {
            text: rest[..end].to_owned(),
            line,
            quoted: false,
        });
        rest = &rest[end..];
    }
}

fn prose_words(text: &str, line: usize) -> impl Iterator<Item = Token> + '_ {
    text.split_whitespace().map(move |word| Token {
        text: word.to_owned(),
        line,
        quoted: false,
    })
}

/// `id="..."` and `name="..."` attributes of raw HTML: explicit anchors.
fn html_ids(html: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for attribute in ["id=\"", "name=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            let after = &rest[at + attribute.len()..];
            let Some(end) = after.find('"') else { break };
            // ` id=` or `<a name=`: an attribute, not the tail of `data-id=`.
            if rest[..at].ends_with(char::is_whitespace) {
                ids.push(after[..end].to_owned());
            }
            rest = &after[end..];
        }
    }
    ids
}

/// GitHub's heading anchors: the heading's text (code spans without their backticks)
/// lowercased, every character other than a letter, a digit, `-`, `_` or a space removed,
/// spaces turned into `-`; the second heading with the same anchor gets `-1`, the third `-2`...
#[derive(Default)]
struct Slugger(HashMap<String, usize>);

impl Slugger {
    fn slug(&mut self, title: &str) -> String {
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let seen = self.0.entry(base.clone()).or_insert(0);
        let slug = if *seen == 0 {
            base
        } else {
            format!("{base}-{seen}")
        };
        *seen += 1;
        slug
    }
}

// ---------------------------------------------------------------------------------------------
// The extraction on small samples.

#[test]
fn anchors_follow_githubs_slug_rules() {
    let doc = extract(
        "# What the pod sees: `--nat`\n\
         ## Foo\n\
         ## Foo\n\
         Setext *title*, v2.0\n\
         ------\n\
         ### Ünïcode & Co. (snake_case)\n\
         <a name=\"custom-anchor\"></a>\n",
    );
    assert_eq!(
        doc.anchors,
        [
            "what-the-pod-sees---nat",
            "foo",
            "foo-1",
            "setext-title-v20",
            "ünïcode--co-snake_case",
            "custom-anchor",
        ]
    );
}

#[test]
fn links_are_found_on_their_lines_and_code_is_not_a_link() {
    let doc = extract(
        "Intro [a](docs/a.md) and ![img](img/x.png).\n\
         \n\
         A [reference][r], an autolink <https://example.com/x> and `[not](a-link.md)`.\n\
         \n\
         ```\n\
         [also not](a-link.md)\n\
         ```\n\
         \n\
         [dangling][nowhere]\n\
         \n\
         [r]: docs/r.md#part\n",
    );
    let links: Vec<(&str, usize)> = doc
        .links
        .iter()
        .map(|l| (l.dest.as_str(), l.line))
        .collect();
    assert_eq!(
        links,
        [
            ("docs/a.md", 1),
            ("img/x.png", 1),
            ("docs/r.md#part", 3),
            ("https://example.com/x", 3)
        ]
    );
    assert_eq!(doc.broken_refs, [("nowhere".to_owned(), 9)]);
}
