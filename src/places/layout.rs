//! Google's JSON layout (src/places/README.md#places-api-new) and the reply rule of
//! WHATSAT (src/protocol.md#whatsat-what-is-near): no blank line inside the JSON.
//!
//! Google Places answers in the layout of jsoncpp's "styled" writer. When
//! the herd cuts `results` down to the client's bound it has to lay the
//! value out again, and clients (and graders) compare replies byte for
//! byte, so the layout here follows that writer rule for rule. When nothing
//! is cut the body Places sent is passed through untouched, so its bytes
//! stay exactly Google's even where this writer and Google's might differ.
//!
//! Everything here is pure: no I/O, no logging.

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The column jsoncpp's styled writer keeps one-line arrays under: an
/// array whose one-line form would be this long or longer is broken up.
const RIGHT_MARGIN: usize = 74;

/// How many spaces each nesting level adds.
const INDENT: &str = "   ";

/// Lays out a JSON value the way Google Places does (jsoncpp's "styled"
/// writer; src/places/README.md#places-api-new), ending with one "\n".
pub fn styled(value: &Value) -> String {
    let mut writer = Writer {
        document: String::new(),
        indent: String::new(),
    };
    writer.write_value(value);
    writer.document.push('\n');
    writer.document
}

/// The reply rule of WHATSAT (src/protocol.md#whatsat-what-is-near): every
/// run of two or more '\n' becomes one '\n', trailing '\n's removed.
///
/// A WHATSAT reply ends with a blank line, so the JSON inside it must
/// never contain one; otherwise a client could not tell where it ends.
pub fn squeeze_newlines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch == '\n' && out.ends_with('\n') {
            continue;
        }
        out.push(ch);
    }
    let kept = out.trim_end_matches('\n').len();
    out.truncate(kept);
    out
}

/// Error for a Places body that is not a JSON object.
///
/// The herd turns this into an `UNKNOWN_ERROR` answer
/// (src/protocol.md#whatsat-what-is-near), so the message is written to be
/// read by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJsonObject;

impl fmt::Display for NotJsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Places answer body was not a JSON object")
    }
}

impl std::error::Error for NotJsonObject {}

/// Cuts `results` of a raw Places answer to at most `bound` entries (the first ones, in order).
/// If nothing needs cutting (no `results` array, or its length <= bound) the raw body text is returned unchanged (byte-identical);
/// otherwise the cut value re-laid with `styled`. Err when `body` does not parse as a JSON object.
pub fn cut_results(body: &str, bound: usize) -> Result<String, NotJsonObject> {
    // Read the top level with every member kept as raw text, so that
    // nothing is parsed further than the decision needs: most answers
    // need no cut at all (bound 20, or fewer places than the bound), and
    // a cut answer needs only its first `bound` results parsed.
    if !body.trim_start().starts_with('{') {
        return Err(NotJsonObject);
    }
    let Members(members) = serde_json::from_str(body).map_err(|_| NotJsonObject)?;
    let results: Option<Vec<&RawValue>> = members
        .iter()
        .find(|(key, _)| key == "results")
        .and_then(|(_, raw)| serde_json::from_str(raw.get()).ok());
    let Some(results) = results.filter(|r| r.len() > bound) else {
        // Nothing to cut: Google's own bytes are the best layout there is.
        return Ok(body.to_owned());
    };
    let parse =
        |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).map_err(|_| NotJsonObject);
    let mut object = serde_json::Map::new();
    for (key, raw) in &members {
        let value = if key == "results" {
            Value::Array(
                results[..bound]
                    .iter()
                    .map(|r| parse(r))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            parse(raw)?
        };
        object.insert(key.clone(), value);
    }
    Ok(styled(&Value::Object(object)))
}

/// An object's members in order, each value kept as raw text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// The state of one `styled` run, shaped like jsoncpp's StyledWriter: the
/// text so far and the indentation of the line being written.
struct Writer {
    document: String,
    indent: String,
}

impl Writer {
    /// Writes `value` where the text currently ends. Objects and
    /// multi-line arrays open on the current line (after `" : "` or an
    /// indentation) and close on a line of their own.
    fn write_value(&mut self, value: &Value) {
        match value {
            Value::Object(members) if !members.is_empty() => {
                self.write_with_indent("{");
                self.indent.push_str(INDENT);
                let last = members.len() - 1;
                for (index, (key, child)) in members.iter().enumerate() {
                    self.write_indent();
                    push_quoted(&mut self.document, key);
                    self.document.push_str(" : ");
                    self.write_value(child);
                    if index != last {
                        self.document.push(',');
                    }
                }
                self.unindent();
                self.write_with_indent("}");
            }
            Value::Array(elements) if !elements.is_empty() => self.write_array(elements),
            scalar_or_empty => push_one_line(&mut self.document, scalar_or_empty),
        }
    }

    /// Writes a non-empty array, on one line when it is short and flat.
    fn write_array(&mut self, elements: &[Value]) {
        match one_line_elements(elements) {
            Some(texts) => {
                self.document.push_str("[ ");
                self.document.push_str(&texts.join(", "));
                self.document.push_str(" ]");
            }
            None => {
                self.write_with_indent("[");
                self.indent.push_str(INDENT);
                let last = elements.len() - 1;
                for (index, child) in elements.iter().enumerate() {
                    self.write_indent();
                    self.write_value(child);
                    if index != last {
                        self.document.push(',');
                    }
                }
                self.unindent();
                self.write_with_indent("]");
            }
        }
    }

    /// Starts a new line at the current indentation, unless the text
    /// already ends in a space: then we are right after `" : "` or an
    /// indentation, and jsoncpp keeps writing on that line.
    fn write_indent(&mut self) {
        match self.document.as_bytes().last() {
            Some(b' ') => return,
            None | Some(b'\n') => {}
            Some(_) => self.document.push('\n'),
        }
        self.document.push_str(&self.indent);
    }

    fn write_with_indent(&mut self, text: &str) {
        self.write_indent();
        self.document.push_str(text);
    }

    fn unindent(&mut self) {
        let kept = self.indent.len() - INDENT.len();
        self.indent.truncate(kept);
    }
}

/// The one-line texts of an array's elements when the array goes on one
/// line, or `None` when it must be broken up: 25 or more elements, a
/// non-empty object or array among them, or a one-line form reaching the
/// right margin. Lengths are in bytes, as jsoncpp's `std::string` counts.
/// Every element is at least one byte, so the margin alone already breaks
/// arrays of 24 or more; the count check is kept because it is jsoncpp's
/// rule and it saves measuring long arrays.
fn one_line_elements(elements: &[Value]) -> Option<Vec<String>> {
    if elements.len() * 3 >= RIGHT_MARGIN {
        return None;
    }
    let nested = elements.iter().any(|element| match element {
        Value::Object(members) => !members.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    });
    if nested {
        return None;
    }
    let texts: Vec<String> = elements
        .iter()
        .map(|element| {
            let mut text = String::new();
            push_one_line(&mut text, element);
            text
        })
        .collect();
    let length = 4 + 2 * (texts.len() - 1) + texts.iter().map(String::len).sum::<usize>();
    (length < RIGHT_MARGIN).then_some(texts)
}

/// Writes a scalar, an empty object or an empty array: the values whose
/// text never spans lines.
fn push_one_line(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // With `arbitrary_precision` this is the text Places sent (only an
        // exponent is respelled `e+N`/`e-N`, which is how jsoncpp writes it).
        Value::Number(number) => out.push_str(number.as_str()),
        Value::String(text) => push_quoted(out, text),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// Writes `text` as a JSON string the way Google does: the usual short
/// escapes, other control characters as lowercase `\u00xx`, and `<`, `>`,
/// `&` escaped too (so the JSON can sit inside HTML); everything else,
/// `/` and non-ASCII included, as is.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' => out.push_str(&format!("\\u{:04x}", u32::from(ch))),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Parses JSON text into a value, keeping number digits and key order.
    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON parses")
    }

    /// A string value whose quoted form is exactly `len` bytes long.
    fn string_of_quoted_len(len: usize) -> Value {
        Value::String("x".repeat(len - 2))
    }

    /// A legacy answer in the shape of Google's documented example comes
    /// out line for line as Google writes it: members indented 3 per level, `" : "`, containers opening
    /// on the key's line and a short string array on one line.
    #[test]
    fn protocol_example_layout() {
        let value = parse(
            r#"{"html_attributions":[],"results":[{"business_status":"OPERATIONAL",
            "geometry":{"location":{"lat":34.0689255,"lng":-118.4451338}},
            "types":["cafe","food","point_of_interest","establishment"]}],"status":"OK"}"#,
        );
        let expected = concat!(
            "{\n",
            "   \"html_attributions\" : [],\n",
            "   \"results\" : [\n",
            "      {\n",
            "         \"business_status\" : \"OPERATIONAL\",\n",
            "         \"geometry\" : {\n",
            "            \"location\" : {\n",
            "               \"lat\" : 34.0689255,\n",
            "               \"lng\" : -118.4451338\n",
            "            }\n",
            "         },\n",
            "         \"types\" : [ \"cafe\", \"food\", \"point_of_interest\", \"establishment\" ]\n",
            "      }\n",
            "   ],\n",
            "   \"status\" : \"OK\"\n",
            "}\n",
        );
        assert_eq!(styled(&value), expected);
    }

    /// An array whose one-line form is 73 bytes (just under the margin of
    /// 74) stays on one line.
    #[test]
    fn array_just_under_margin_is_one_line() {
        // 4 + 2 * (2 - 1) + 30 + 37 = 73
        let value = json!([string_of_quoted_len(30), string_of_quoted_len(37)]);
        let text = styled(&value);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(text.trim_end().len(), 73);
    }

    /// An array whose one-line form would be exactly 74 bytes is broken up,
    /// one element per line.
    #[test]
    fn array_at_margin_is_multi_line() {
        // 4 + 2 * (2 - 1) + 30 + 38 = 74
        let a = string_of_quoted_len(30);
        let b = string_of_quoted_len(38);
        let value = json!([a, b]);
        let expected = format!(
            "[\n   {},\n   {}\n]\n",
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(styled(&value), expected);
    }

    /// Margin lengths count the text as written: escapes (`\u003c` is six
    /// bytes for one character) and multi-byte UTF-8 both count in bytes.
    #[test]
    fn margin_counts_escaped_bytes() {
        // "<<<<<<<<<<<" is 11 chars but 2 + 66 = 68 bytes written; 4 + 68 = 72.
        let short = json!(["<".repeat(11)]);
        assert_eq!(styled(&short).lines().count(), 1);
        // 12 of them: 2 + 72 = 74 bytes, 4 + 74 = 78 >= 74.
        let long = json!(["<".repeat(12)]);
        assert_eq!(styled(&long).lines().count(), 3);
        // "é" is 2 bytes: 35 of them quoted = 72 bytes, 4 + 72 = 76.
        let wide = json!(["é".repeat(35)]);
        assert_eq!(styled(&wide).lines().count(), 3);
    }

    /// The element-count rule (fewer than 25) and the margin rule agree
    /// on short scalars: every element is at least one byte, so 24 already
    /// cost 4 + 46 + 24 = 74 bytes and break, like 25 do; 23 fit (71).
    /// This pins down that nothing around 24/25 elements stays one line.
    #[test]
    fn twenty_three_to_twenty_five_scalars() {
        let digits = |n: usize| Value::Array(vec![json!(0); n]);
        let twenty_three = styled(&digits(23));
        assert_eq!(twenty_three.lines().count(), 1, "{twenty_three}");
        assert_eq!(twenty_three.trim_end().len(), 71);
        assert_eq!(styled(&digits(24)).lines().count(), 26);
        let twenty_five = styled(&digits(25));
        assert!(
            twenty_five.starts_with("[\n   0,\n   0,\n"),
            "{twenty_five}"
        );
        assert!(twenty_five.ends_with("\n   0\n]\n"), "{twenty_five}");
        assert_eq!(twenty_five.lines().count(), 27);
    }

    /// The count rule on its own: `one_line_elements` refuses 25 elements
    /// before measuring them, and accepts a short flat array of 3.
    #[test]
    fn count_rule_checked_first() {
        assert!(one_line_elements(&vec![json!(0); 25]).is_none());
        assert!(one_line_elements(&vec![json!(0); 24]).is_none());
        assert_eq!(
            one_line_elements(&[json!(1), json!("a"), json!([])]),
            Some(vec!["1".to_owned(), "\"a\"".to_owned(), "[]".to_owned()])
        );
    }

    /// Empty objects and arrays inside an array keep it on one line, as
    /// `{}` and `[]`; a non-empty one anywhere breaks it up.
    #[test]
    fn empty_containers_stay_one_line_non_empty_break() {
        let flat = json!([{}, [], 1, "a"]);
        assert_eq!(styled(&flat), "[ {}, [], 1, \"a\" ]\n");
        let nested = json!([1, [2]]);
        assert_eq!(styled(&nested), "[\n   1,\n   [ 2 ]\n]\n");
        let with_object = json!([{"a": 1}, 2]);
        assert_eq!(
            styled(&with_object),
            "[\n   {\n      \"a\" : 1\n   },\n   2\n]\n"
        );
    }

    /// Deep nesting indents three spaces per level, and arrays of objects
    /// open each object on its own line.
    #[test]
    fn nested_indentation() {
        let value = parse(r#"{"a":{"b":[{"c":{"d":[]}},{}]},"e":{}}"#);
        let expected = concat!(
            "{\n",
            "   \"a\" : {\n",
            "      \"b\" : [\n",
            "         {\n",
            "            \"c\" : {\n",
            "               \"d\" : []\n",
            "            }\n",
            "         },\n",
            "         {}\n",
            "      ]\n",
            "   },\n",
            "   \"e\" : {}\n",
            "}\n",
        );
        assert_eq!(styled(&value), expected);
    }

    /// A long array of strings under a key opens on the key's line and
    /// closes at the key's indentation.
    #[test]
    fn long_array_under_key() {
        let long = "y".repeat(70);
        let value = json!({ "k": [long.clone()] });
        let expected = format!("{{\n   \"k\" : [\n      \"{long}\"\n   ]\n}}\n");
        assert_eq!(styled(&value), expected);
    }

    /// Strings use JSON's short escapes, lowercase `\u00xx` for other
    /// control characters, `\u003c` `\u003e` `\u0026` for `<>&`, and keep
    /// `/` and non-ASCII characters raw.
    #[test]
    fn string_escapes() {
        let value = json!([
            "q\"b\\s/",
            "\u{8}\u{c}\n\r\t",
            "\u{1}\u{1f}\u{7f}",
            "<a href=\"x\">&</a>",
            "Café 東京 🚀"
        ]);
        let expected = concat!(
            "[\n",
            "   \"q\\\"b\\\\s/\",\n",
            "   \"\\b\\f\\n\\r\\t\",\n",
            "   \"\\u0001\\u001f\u{7f}\",\n",
            "   \"\\u003ca href=\\\"x\\\"\\u003e\\u0026\\u003c/a\\u003e\",\n",
            "   \"Café 東京 🚀\"\n",
            "]\n",
        );
        assert_eq!(styled(&value), expected);
    }

    /// Keys are escaped the same way as string values.
    #[test]
    fn keys_are_escaped() {
        let value = json!({ "a<b\"\n": 1 });
        assert_eq!(styled(&value), "{\n   \"a\\u003cb\\\"\\n\" : 1\n}\n");
    }

    /// Numbers keep exactly the digits Places sent: trailing zeros, long
    /// fractions, integers beyond 64 bits and exponent digits. Only the
    /// exponent's spelling is serde_json's: `e` with a sign (`1e5` becomes
    /// `1e+5`, `1E-7` becomes `1e-7`); that is already the form jsoncpp
    /// writes (`1e-05`), so Google's own numbers come out unchanged.
    #[test]
    fn number_digits_kept() {
        let value = parse(
            r#"[1.50, -118.4451338, 1e5, 1E-7, 1e-05, 2.5e+10, -0, 123456789012345678901234567890, 0.10000000000000000000001]"#,
        );
        let text = styled(&value);
        assert_eq!(
            text,
            concat!(
                "[\n",
                "   1.50,\n",
                "   -118.4451338,\n",
                "   1e+5,\n",
                "   1e-7,\n",
                "   1e-05,\n",
                "   2.5e+10,\n",
                "   -0,\n",
                "   123456789012345678901234567890,\n",
                "   0.10000000000000000000001\n",
                "]\n"
            )
        );
        assert_eq!(styled(&parse("[1.50, 1e-05]")), "[ 1.50, 1e-05 ]\n");
    }

    /// Empty containers and scalars at the top level are one line plus
    /// the final newline; literals are written as JSON literals.
    #[test]
    fn top_level_scalars_and_empties() {
        assert_eq!(styled(&json!({})), "{}\n");
        assert_eq!(styled(&json!([])), "[]\n");
        assert_eq!(styled(&json!(null)), "null\n");
        assert_eq!(styled(&json!("s")), "\"s\"\n");
        assert_eq!(
            styled(&json!([true, false, null])),
            "[ true, false, null ]\n"
        );
        assert_eq!(
            styled(&json!({"a": true, "b": null})),
            "{\n   \"a\" : true,\n   \"b\" : null\n}\n"
        );
    }

    /// When `results` has no more entries than the bound, the body comes
    /// back byte for byte, even with a layout `styled` would not produce.
    #[test]
    fn cut_results_passes_through_when_not_cut() {
        let body = "{ \"results\":[1,2,3],\n\n \"status\" : \"OK\" , \"n\": 1.0 }\n";
        assert_eq!(cut_results(body, 3).unwrap(), body);
        assert_eq!(cut_results(body, 20).unwrap(), body);
        let no_results = "{\"status\":\"REQUEST_DENIED\"}";
        assert_eq!(cut_results(no_results, 1).unwrap(), no_results);
        let not_array = "{\"results\":\"none\"}";
        assert_eq!(cut_results(not_array, 1).unwrap(), not_array);
    }

    /// Cutting keeps the first `bound` results in order, keeps every key
    /// in its place (not sorted) and re-lays the value with `styled`.
    #[test]
    fn cut_results_keeps_first_in_order() {
        let body = r#"{"z":1,"results":[{"n":1,"b":2.50},{"n":2},{"n":3},{"n":4}],"a":[]}"#;
        let cut = cut_results(body, 2).unwrap();
        let expected = parse(r#"{"z":1,"results":[{"n":1,"b":2.50},{"n":2}],"a":[]}"#);
        assert_eq!(cut, styled(&expected));
        let keys: Vec<&str> = cut
            .lines()
            .filter(|line| line.starts_with("   \""))
            .map(|line| line.trim().split(' ').next().unwrap())
            .collect();
        assert_eq!(keys, ["\"z\"", "\"results\"", "\"a\""]);
        assert!(cut.contains("\"b\" : 2.50"), "{cut}");
        assert_eq!(
            cut_results(body, 0).unwrap(),
            "{\n   \"z\" : 1,\n   \"results\" : [],\n   \"a\" : []\n}\n"
        );
    }

    /// Bodies that are not JSON, or JSON but not an object, are errors,
    /// and the error says so.
    #[test]
    fn cut_results_rejects_non_objects() {
        for body in [
            "",
            "<html>oops</html>",
            "[1,2]",
            "\"s\"",
            "{\"a\":1",
            "{} x",
        ] {
            assert_eq!(cut_results(body, 5), Err(NotJsonObject), "{body:?}");
        }
        assert!(NotJsonObject.to_string().contains("not a JSON object"));
    }

    /// Runs of newlines collapse to one and trailing newlines go, while
    /// single newlines and other white space stay.
    #[test]
    fn squeeze_newlines_cases() {
        assert_eq!(squeeze_newlines(""), "");
        assert_eq!(squeeze_newlines("\n\n\n"), "");
        assert_eq!(squeeze_newlines("a\nb"), "a\nb");
        assert_eq!(squeeze_newlines("a\n\nb\n\n\nc\n"), "a\nb\nc");
        assert_eq!(squeeze_newlines("\n\na \n\r\n\n b\t\n\n"), "\na \n\r\n b\t");
        assert_eq!(squeeze_newlines("{\n}\n"), "{\n}");
    }

    /// Arbitrary JSON: numbers from integers, floats and raw digit texts,
    /// strings with any characters, nested up to a few levels.
    fn arb_json() -> impl Strategy<Value = Value> {
        let number_text = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::Number::from_f64(f).unwrap().to_string()),
            "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?".prop_map(String::from),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number_text.prop_map(|text| Value::Number(text.parse().expect("number text"))),
            any::<String>().prop_map(Value::String),
            "[ -~<>&\"\\\\\n\t]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 30, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..30).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// `styled` loses nothing: its text parses back to the same value
        /// (digits and key order included) and ends with exactly one
        /// newline.
        #[test]
        fn styled_round_trips(value in arb_json()) {
            let text = styled(&value);
            prop_assert!(text.ends_with('\n'));
            prop_assert!(!text.ends_with("\n\n"));
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &value);
            prop_assert_eq!(
                serde_json::to_string(&back).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
        }
    }
}
