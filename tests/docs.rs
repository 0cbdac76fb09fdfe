//! The documents hold together: every relative link between the Markdown
//! files of the repository leads somewhere, and so does every reference to
//! a document's section written in the Rust sources (in a comment, or in a
//! message such as a flag's help). The documents sit next
//! to the code they describe (README.md only introduces and maps them), so
//! a heading renamed or a file moved in one place must not silently break a
//! link written in another.
//!
//! Anchors follow GitHub's rule, since GitHub is where the links are
//! followed: the heading's text in lower case, every character but
//! letters, digits, spaces, `-` and `_` dropped, each space turned into
//! `-`, and `-1`, `-2`... added to a repeated heading.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The most lines README.md may have: it introduces, shows the first
/// commands and points to the rest.
const README_MAX_LINES: usize = 250;

/// Every relative link in every Markdown file of the repository (README.md,
/// and all of `src/` and `tests/`), and every `<path>.md#<anchor>` named
/// in the Rust sources of `src/` and `tests/`, leads to a file that exists
/// and, where it names an anchor, to a heading of that file. Links with a
/// scheme (`https:`, `mailto:`) are not followed. README.md also stays
/// within its line budget.
#[test]
fn every_link_and_section_reference_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = Docs::default();
    let mut broken = Vec::new();
    let (mut links, mut references) = (0, 0);

    let markdown = markdown_files(root);
    assert!(
        markdown.iter().any(|f| f.ends_with("README.md")),
        "no README.md found under {}",
        root.display()
    );
    for file in &markdown {
        let text = read(file);
        for link in markdown_links(&text) {
            links += 1;
            if let Err(why) = docs.resolve(root, file.parent().unwrap(), &link.dest, file) {
                broken.push(format!(
                    "{}:{}: ({}): {why}",
                    shown(root, file),
                    link.line,
                    link.dest
                ));
            }
        }
    }

    for file in rust_files(root) {
        let text = read(&file);
        for (number, line) in text.lines().enumerate() {
            for dest in section_references(line) {
                references += 1;
                if let Err(why) = docs.resolve(root, root, &dest, &file) {
                    broken.push(format!(
                        "{}:{}: {dest}: {why}",
                        shown(root, &file),
                        number + 1
                    ));
                }
            }
        }
    }

    // A reader that found nothing would pass everything.
    assert!(
        links >= 50 && references >= 40,
        "only {links} links and {references} section references found"
    );
    assert!(
        broken.is_empty(),
        "{} broken link(s) or section reference(s):\n  {}",
        broken.len(),
        broken.join("\n  ")
    );

    let readme = read(&root.join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the \
         detail to the document beside the code it describes and link to it"
    );
}

/// The anchor rule is GitHub's, including the cases the documents rely on:
/// code spans, punctuation, underscores kept, links reduced to their text,
/// and repeated headings numbered.
#[test]
fn anchors_follow_githubs_rule() {
    let text = "# The protocol\n\
                ## IAMAT: here I am\n\
                ## `run_herd.sh`\n\
                ## `places-stub [--port 8099] [--host 127.0.0.1]`\n\
                ## Places API (New)\n\
                ## See [the log](#the-log) ##\n\
                ```text\n\
                # not a heading\n\
                ```\n\
                Lines\n\
                -----\n\
                ## Lines\n";
    let anchors = anchors(text);
    for want in [
        "the-protocol",
        "iamat-here-i-am",
        "run_herdsh",
        "places-stub---port-8099---host-127001",
        "places-api-new",
        "see-the-log",
        "lines",
        "lines-1",
    ] {
        assert!(
            anchors.contains_key(want),
            "{want} missing from {anchors:?}"
        );
    }
    assert!(!anchors.contains_key("not-a-heading"), "{anchors:?}");
}

/// A relative link or reference found in a document.
struct Link {
    dest: String,
    line: usize,
}

/// The anchors of each Markdown file, read once.
#[derive(Default)]
struct Docs {
    anchors: HashMap<PathBuf, BTreeMap<String, usize>>,
}

impl Docs {
    /// Checks one destination, `path`, `path#anchor` or `#anchor`, written
    /// in `from` and relative to `base`.
    fn resolve(&mut self, root: &Path, base: &Path, dest: &str, from: &Path) -> Result<(), String> {
        if has_scheme(dest) {
            return Ok(());
        }
        let (path, anchor) = match dest.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (dest, None),
        };
        let target = if path.is_empty() {
            from.to_path_buf()
        } else {
            let target = normalise(&base.join(percent_decode(path)));
            if !target.starts_with(root) {
                return Err("leads out of the repository".into());
            }
            if !target.exists() {
                return Err(format!("no file {}", shown(root, &target)));
            }
            target
        };
        let Some(anchor) = anchor else {
            return Ok(());
        };
        // A folder's page on GitHub is its README.
        let doc = if target.is_dir() {
            target.join("README.md")
        } else {
            target
        };
        if doc.extension().is_none_or(|e| e != "md") || !doc.is_file() {
            // Anchors of other files (a source line, say) are not headings.
            return Ok(());
        }
        let anchors = self
            .anchors
            .entry(doc.clone())
            .or_insert_with(|| anchors(&read(&doc)));
        if anchors.contains_key(anchor) {
            Ok(())
        } else {
            Err(format!(
                "{} has no heading #{anchor} (it has: {})",
                shown(root, &doc),
                anchors.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        }
    }
}

/// `https://...`, `mailto:...` and the like: not ours to check.
fn has_scheme(dest: &str) -> bool {
    match dest.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// The relative links of a Markdown text: inline links and images
/// (`[text](dest)`, `[text](dest "title")`) and reference definitions
/// (`[label]: dest`), outside fenced code blocks and code spans.
fn markdown_links(text: &str) -> Vec<Link> {
    let masked = mask_code(text);
    let bytes = masked.as_bytes();
    let line_of = |at: usize| masked[..at].matches('\n').count() + 1;
    let mut links = Vec::new();

    let mut from = 0;
    while let Some(found) = masked[from..].find("](") {
        let start = from + found + 2;
        // The destination runs to the `)` that balances the `(`.
        let mut depth = 1;
        let mut end = start;
        while end < bytes.len() && depth > 0 {
            match bytes[end] {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b'\n' if bytes.get(end + 1) == Some(&b'\n') => break,
                _ => {}
            }
            if depth > 0 {
                end += 1;
            }
        }
        if depth == 0 {
            if let Some(dest) = destination(&masked[start..end]) {
                links.push(Link {
                    dest,
                    line: line_of(start),
                });
            }
        }
        from = start;
    }

    let mut offset = 0;
    for line in masked.split_inclusive('\n') {
        let trimmed = line.trim_start();
        // `[label]: dest`, the label closing at its first `]`.
        let definition = trimmed
            .strip_prefix('[')
            .and_then(|label| label.split_once(']'))
            .and_then(|(_, after)| after.strip_prefix(':'))
            .filter(|_| line.len() - trimmed.len() <= 3);
        if let Some(after) = definition {
            if let Some(dest) = destination(after) {
                links.push(Link {
                    dest,
                    line: line_of(offset),
                });
            }
        }
        offset += line.len();
    }
    links
}

/// The destination of a link from what follows its `](` (or `]:`): the
/// first word, or what `<...>` encloses; a title after it is ignored.
fn destination(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let dest = match raw.strip_prefix('<') {
        Some(rest) => rest.split('>').next().unwrap_or(""),
        None => raw.split_whitespace().next().unwrap_or(""),
    };
    (!dest.is_empty()).then(|| dest.to_string())
}

/// The text with fenced code blocks blanked out and code spans replaced by
/// spaces, so that nothing in code is taken for a link or a heading. Line
/// breaks are kept, so positions still give line numbers.
fn mask_code(text: &str) -> String {
    // A blanked fence leaves empty lines, which no code span crosses.
    mask_spans(&mask_fences_only(text))
}

/// Code spans (`` `...` ``, ``` `` ... `` ```) replaced by spaces. A span
/// does not cross a blank line; a backtick run with no partner is text.
fn mask_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '\n' && chars.get(j + 1) == Some(&'\n') {
                break;
            }
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    close = Some(j);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for c in &chars[i..j + run] {
                    out.push(if *c == '\n' { '\n' } else { ' ' });
                }
                i = j + run;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// What a line of fenced code becomes: nothing but its line break.
fn blank(line: &str) -> String {
    if line.ends_with('\n') {
        "\n".into()
    } else {
        String::new()
    }
}

/// The anchors GitHub gives the headings of a Markdown text (ATX `#`
/// headings and setext underlined ones, outside fenced code, plus HTML
/// `id`s and `name`s), each with the line it is on.
fn anchors(text: &str) -> BTreeMap<String, usize> {
    let masked_fences = mask_fences_only(text);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = BTreeMap::new();
    let mut add = |heading: &str, line: usize, anchors: &mut BTreeMap<String, usize>| {
        let base = slug(heading);
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        };
        *count += 1;
        anchors.insert(anchor, line);
    };
    let lines: Vec<&str> = masked_fences.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent <= 3 && trimmed.starts_with('#') {
            let level = trimmed.chars().take_while(|c| *c == '#').count();
            let rest = &trimmed[level..];
            if level <= 6 && (rest.is_empty() || rest.starts_with(' ')) {
                add(atx_text(rest), i + 1, &mut anchors);
                continue;
            }
        }
        if indent <= 3 && i > 0 && is_setext_underline(trimmed) {
            let above = lines[i - 1].trim();
            let is_text = !above.is_empty()
                && !is_setext_underline(above)
                && !above.starts_with(['#', '-', '*', '+', '|', '>']);
            if is_text {
                add(above, i, &mut anchors);
            }
        }
        for key in ["id=\"", "name=\""] {
            let mut rest = *line;
            while let Some(at) = rest.find(key) {
                let value = &rest[at + key.len()..];
                if let Some(end) = value.find('"') {
                    anchors.insert(value[..end].to_string(), i + 1);
                }
                rest = &rest[at + key.len()..];
            }
        }
    }
    anchors
}

/// An ATX heading's text from what follows its opening `#`s: a closing
/// run of `#`s (after a space, or alone) is not part of it, a `#` ending a
/// word (`C#`) is.
fn atx_text(rest: &str) -> &str {
    let content = rest.trim();
    let before = content.trim_end_matches('#');
    if before.len() == content.len() {
        content
    } else if before.is_empty() || before.ends_with(' ') {
        before.trim_end()
    } else {
        content
    }
}

/// A line of only `=` or only `-`: what turns the line above into a
/// heading.
fn is_setext_underline(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && (t.chars().all(|c| c == '=') || t.chars().all(|c| c == '-'))
}

/// The text with only its fenced code blocks blanked (headings keep their
/// code spans, whose text is part of the anchor).
fn mask_fences_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (None, Some(m)) if run >= 3 => {
                fence = Some((m, run));
                out.push_str(&blank(line));
            }
            (Some((m, n)), Some(c)) if c == m && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None;
                out.push_str(&blank(line));
            }
            (Some(_), _) => out.push_str(&blank(line)),
            (None, _) => out.push_str(line),
        }
    }
    out
}

/// GitHub's anchor for a heading's text: links reduced to their text, then
/// lower case, only letters, digits, spaces, `-` and `_` kept, and each
/// space made a `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](dest)` shows as `text`.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](") else {
            break;
        };
        let Some(end) = rest[open + close..].find(')') else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..open + close]);
        rest = &rest[open + close + end + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every `<path>.md#<anchor>` in a line of Rust, the path relative to the
/// repository's root: how comments and messages name a document's section.
fn section_references(line: &str) -> Vec<String> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let is_anchor = |c: char| c.is_ascii_alphanumeric() || "_-".contains(c);
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(found) = line[from..].find(".md#") {
        let at = from + found;
        let start = line[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_path(*c))
            .last()
            .map_or(at, |(i, _)| i);
        let anchor_start = at + ".md#".len();
        let anchor_end = line[anchor_start..]
            .find(|c: char| !is_anchor(c))
            .map_or(line.len(), |n| anchor_start + n);
        let path = &line[start..at + ".md".len()];
        let stem = &line[start..at];
        if !stem.is_empty() && !stem.ends_with('/') && anchor_end > anchor_start {
            refs.push(format!("{path}#{}", &line[anchor_start..anchor_end]));
        }
        from = anchor_start;
    }
    refs
}

/// The Markdown files: those at the root, and all under `src/` and
/// `tests/`.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md"))
        .collect();
    for dir in ["src", "tests"] {
        walk(&root.join(dir), "md", &mut files);
    }
    files.sort();
    files
}

/// The Rust sources under `src/` and `tests/`.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        walk(&root.join(dir), "rs", &mut files);
    }
    files.sort();
    files
}

fn walk(dir: &Path, extension: &str, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, extension, files);
        } else if path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `a/b/../c` as `a/c`, without asking the file system (the target may not
/// exist, which is what is being checked).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `%20` and the like in a link's path, as a browser reads them.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path as the failure message shows it: from the repository's root.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
