//! `format_as_xml`: any `Serialize` value as indented XML, a shape models read well.

use serde::Serialize;
use serde_json::Value;

/// Render `value` as XML under `root_tag`. Objects become nested elements, arrays repeat
/// `<item>` elements (or the parent tag's singular is not guessed: always `item`), and strings are
/// escaped.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Hit { title: String, url: String }
/// let xml = steadfast_core::format_as_xml(&vec![Hit { title: "A & B".into(), url: "u".into() }], "results");
/// assert_eq!(xml, "<results>\n  <item>\n    <title>A &amp; B</title>\n    <url>u</url>\n  </item>\n</results>");
/// ```
pub fn format_as_xml<T: Serialize + ?Sized>(value: &T, root_tag: &str) -> String {
    let v = serde_json::to_value(value).unwrap_or(Value::Null);
    let mut out = String::new();
    write(&mut out, root_tag, &v, 0);
    out.pop();
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn write(out: &mut String, tag: &str, v: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(map) => {
            out.push_str(&format!("{pad}<{tag}>\n"));
            for (k, child) in map {
                write(out, k, child, depth + 1);
            }
            out.push_str(&format!("{pad}</{tag}>\n"));
        }
        Value::Array(items) => {
            out.push_str(&format!("{pad}<{tag}>\n"));
            for item in items {
                write(out, "item", item, depth + 1);
            }
            out.push_str(&format!("{pad}</{tag}>\n"));
        }
        Value::String(s) => out.push_str(&format!("{pad}<{tag}>{}</{tag}>\n", escape(s))),
        Value::Null => out.push_str(&format!("{pad}<{tag}>null</{tag}>\n")),
        other => out.push_str(&format!("{pad}<{tag}>{other}</{tag}>\n")),
    }
}
