//! The scorecard, one model drawn twice: as the terminal's table and as
//! the page's, where each cell opens to its transcript.

use std::fmt::Write as _;

use proxy_herd::places::html_escape as escape;

use super::{Scorecard, Status, CATALOGUE};

/// The check's scorecard: a row per check, grouped, a column per herd;
/// each cell opens to its transcript.
pub fn html(cards: &[Scorecard]) -> String {
    if cards.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Correctness</h2>\n<p>Each check talks to the herd's client ports only, a \
         connection per question as graders do; flooding is seen as the first line of a \
         WHATSAT reply at each server. <b>course</b>: the course's protocol asks for it; \
         <b>ours</b>: this project's contract only, shown but not held against a \
         student's herd. Open a cell for its transcript: each line sent (&gt;) and \
         received (&lt;), with the server and the milliseconds since the check began.</p>\n",
    );
    for card in cards {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(&card.summary()));
    }
    out.push_str("<table class=\"card\"><tr><th>check</th><th>needs</th>");
    for card in cards {
        let _ = write!(out, "<th>{}</th>", escape(&card.herd));
    }
    out.push_str("</tr>\n");
    let mut group = "";
    for (i, spec) in CATALOGUE.iter().enumerate() {
        let this = spec.name.split('.').next().unwrap_or("");
        if this != group {
            group = this;
            let _ = writeln!(
                out,
                "<tr class=\"group\"><th colspan=\"{}\">{}</th></tr>",
                cards.len() + 2,
                escape(group)
            );
        }
        let _ = write!(
            out,
            "<tr><td title=\"{}\">{}</td><td>{}</td>",
            escape(spec.proves),
            escape(spec.name),
            if spec.course { "course" } else { "ours" }
        );
        for card in cards {
            let Some(o) = card.outcomes.get(i) else {
                out.push_str("<td></td>");
                continue;
            };
            let (class, word) = match o.status {
                Status::Passed => ("pass", "pass"),
                Status::Failed => ("fail", "FAIL"),
                Status::NotChecked => ("skip", "not checked"),
                Status::Skipped => ("skip", "not asked for"),
            };
            let reason = o
                .reason
                .as_ref()
                .map(|r| format!(": {}", escape(r)))
                .unwrap_or_default();
            let transcript: String = o
                .transcript
                .iter()
                .map(|e| {
                    format!(
                        "{:>9.1} {:<10} {} {}\n",
                        e.ms,
                        escape(&e.server),
                        escape(e.dir),
                        escape(&e.text)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<td class=\"{class}\"><details><summary>{word}{reason}</summary>\
                 <pre>{transcript}</pre></details></td>"
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The scorecards as a table at most 100 columns wide: a row per check,
/// a column per herd, each failure's reason under its row.
pub fn text(cards: &[Scorecard]) -> String {
    let mut out = String::new();
    let mut head = format!("{:<30} {:<6}", "check", "needs");
    for card in cards {
        let _ = write!(head, " {:<14}", card.herd);
    }
    let _ = writeln!(out, "{}", head.trim_end());
    for (i, spec) in CATALOGUE.iter().enumerate() {
        let asked = cards.iter().any(|c| {
            c.outcomes
                .get(i)
                .is_some_and(|o| o.status != Status::Skipped)
        });
        if !asked {
            continue;
        }
        let mut row = format!(
            "{:<30} {:<6}",
            spec.name,
            if spec.course { "course" } else { "ours" }
        );
        let mut reasons = Vec::new();
        for card in cards {
            let Some(o) = card.outcomes.get(i) else {
                continue;
            };
            let cell = match o.status {
                Status::Passed => "pass",
                Status::Failed => "FAIL",
                Status::NotChecked => "not checked",
                Status::Skipped => "not asked for",
            };
            let _ = write!(row, " {cell:<14}");
            if let Some(reason) = &o.reason {
                reasons.push(format!("{}: {reason}", card.herd));
            }
        }
        let _ = writeln!(out, "{}", row.trim_end());
        for reason in reasons {
            let cut: String = reason.chars().take(94).collect();
            let more = if cut.len() < reason.len() { "..." } else { "" };
            let _ = writeln!(out, "    {cut}{more}");
        }
    }
    out
}
