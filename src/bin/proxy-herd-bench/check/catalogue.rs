//! The checks, in the order they run and are shown. A name never
//! changes once published: teachers compare scorecards across terms.

/// One check: its stable name, whether the course requires it, and what
/// passing it proves.
pub struct Spec {
    /// `group.what`.
    pub name: &'static str,
    /// Required by the course's protocol (`false`: by our contract only,
    /// which a student's herd is not failed for).
    pub course: bool,
    /// What it proves, in a line.
    pub proves: &'static str,
}

const fn course(name: &'static str, proves: &'static str) -> Spec {
    Spec {
        name,
        course: true,
        proves,
    }
}

const fn ours(name: &'static str, proves: &'static str) -> Spec {
    Spec {
        name,
        course: false,
        proves,
    }
}

/// Every check.
pub const CATALOGUE: &[Spec] = &[
    course(
        "replies.iamat",
        "every server answers IAMAT with AT, its own name, and the client, location and time byte for byte",
    ),
    course(
        "replies.skew",
        "the skew has a sign and nine decimals, + for a past time, - for a future one",
    ),
    course("lines.joined", "two lines in one write get two replies, in order"),
    course("lines.split", "a line sent in three writes gets one reply"),
    course(
        "bad-input.fields",
        "IAMAT and WHATSAT with too few or too many fields get ? and the line",
    ),
    course(
        "bad-input.location",
        "a location without signs, out of range or with junk gets ?, and the server lives on",
    ),
    course("bad-input.time", "a time that is not a number gets ?"),
    course(
        "bad-input.radius",
        "a WHATSAT radius of 0, over 50, negative or not a number gets ?",
    ),
    course(
        "bad-input.bound",
        "a WHATSAT bound of 0, over 20, a fraction or not a number gets ?",
    ),
    course(
        "bad-input.unknown-client",
        "WHATSAT for a client no server has heard of gets ?",
    ),
    course(
        "bad-input.unknown-command",
        "an unknown command, or a known one in lower case, gets ?",
    ),
    ours(
        "bad-input.time-forms",
        "exponents, inf, nan and signed times, which float() takes, get ?",
    ),
    ours(
        "bad-input.invalid-utf8",
        "a line that is not UTF-8 gets ? and the server lives on",
    ),
    ours(
        "bad-input.empty-lines",
        "empty and blank lines get no reply at all",
    ),
    ours(
        "bad-input.overlong",
        "a 70,000-byte line is not echoed: its connection is closed, others are served",
    ),
    course(
        "whatsat.reply",
        "the reply is the stored AT line, the JSON, and one blank line",
    ),
    course(
        "whatsat.bound",
        "WHATSAT returns the first BOUND places of the Places answer",
    ),
    course(
        "whatsat.radius",
        "the radius is sent to Places in metres (0.5 km is 500 m, 50 km is 50000 m)",
    ),
    ours(
        "whatsat.layout",
        "the JSON is laid out as Google lays it out, byte for byte",
    ),
    course(
        "flooding.reaches-all",
        "an IAMAT at any server reaches every server within the stated time",
    ),
    ours(
        "flooding.before-reply",
        "a neighbour holds the update as soon as the IAMAT's reply has come",
    ),
    course(
        "newest-wins.older-ignored",
        "an older IAMAT after a newer one changes nothing anywhere",
    ),
    ours(
        "newest-wins.same-time",
        "of two records with the same time, the byte-wise greater wins everywhere, even arriving second",
    ),
    course(
        "faults.one-down",
        "with any one server killed, updates reach every server still connected",
    ),
    ours(
        "faults.one-down-catch-up",
        "the killed server, restarted, catches up with every update it missed",
    ),
    course(
        "faults.two-down",
        "with any two killed, an update reaches the servers still connected and no other",
    ),
    ours(
        "faults.two-down-catch-up",
        "after both restart, every server holds every update",
    ),
    course(
        "life-cycle.half-close",
        "a client that sends its line and half-closes gets its reply, as graders read it",
    ),
    ours(
        "life-cycle.half-close-eof",
        "then the connection ends; a last line without its newline is answered too",
    ),
    ours(
        "life-cycle.stop",
        "SIGTERM stops a server with exit status 0 within 250 ms",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are unique and of the form `group.what`, and each group's
    /// checks are together, as the scorecard shows them.
    #[test]
    fn names_are_unique_and_grouped() {
        let mut seen = std::collections::BTreeSet::new();
        let mut groups: Vec<&str> = Vec::new();
        for spec in CATALOGUE {
            assert!(seen.insert(spec.name), "{} twice", spec.name);
            let (group, what) = spec.name.split_once('.').expect("group.what");
            assert!(!what.is_empty());
            if groups.last() != Some(&group) {
                assert!(!groups.contains(&group), "{group} is split");
                groups.push(group);
            }
        }
    }
}
