//! Line-protocol encoding of [`Point`]s.
//!
//! Fields are encoded by `influxdb_line_protocol::LineProtocolBuilder` (InfluxData's own escaping
//! of quotes and backslashes in string fields, which every store reads alike). The measurement
//! and the tag set are encoded here, in the sink's [`Backslashes`] dialect, because stores do not
//! read a backslash in a tag value alike:
//!
//! - InfluxDB 1.x (and InfluxDB 2.x OSS, which parses with the same Go `models` package) unescapes
//!   only `\,`, `\=` and `\ ` in measurement names, tag keys and tag values; every other
//!   backslash is the character itself (<https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/#special-characters>,
//!   <https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/#special-characters>:
//!   only commas, equals signs and spaces are escaped there). Measured on InfluxDB 1.8:
//!   `name=a\\b` is stored as `a\\b`, `name=g\\,h` as `g\,h`, `name=a\\\ b` as `a\\ b`.
//! - VictoriaMetrics and InfluxDB 3 (the Rust `influxdb_line_protocol` parser) also unescape
//!   `\\` to one backslash, so the escaping of the `influxdb_line_protocol` crate is right for
//!   them.
//!
//! A tag value ending in a backslash cannot be written to InfluxDB 1.x at all (the backslash
//! would escape the separator after it, and `\\` is two backslashes there), so in both dialects
//! trailing backslashes become `＼` (U+FF3C), which keeps the name distinct and readable.
//!
//! Line protocol cannot carry a newline nor a non-finite float, so before encoding: control
//! characters (newlines included) in measurement names, tag keys and values and string fields
//! become spaces; an empty tag value is left out (InfluxDB rejects `k=`); a NaN or infinite float
//! field is left out of the point; a point left with no field at all is not written.

use influxdb_line_protocol::LineProtocolBuilder;
use serde::{Deserialize, Serialize};

use crate::point::{FieldValue, Point};

/// How the store reads a backslash in a measurement name, tag key or tag value (the sink's
/// `backslashes` setting). See the module docs for which store reads which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Backslashes {
    /// A backslash is the character itself unless it escapes `,`, `=` or a space: InfluxDB 1.x
    /// and 2.x. A backslash is written as one backslash.
    #[default]
    Literal,
    /// `\\` is one backslash: VictoriaMetrics, InfluxDB 3 (Core, Enterprise, Cloud Serverless
    /// and Dedicated). A backslash is written as two.
    Escaped,
}

impl Backslashes {
    /// The setting's value (`literal`, `escaped`).
    pub fn as_str(self) -> &'static str {
        match self {
            Backslashes::Literal => "literal",
            Backslashes::Escaped => "escaped",
        }
    }
}

impl TryFrom<String> for Backslashes {
    type Error = String;

    /// `config`'s own message for an unknown variant does not list the variants, so the value
    /// is read as text and named here with the allowed ones.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "literal" => Ok(Backslashes::Literal),
            "escaped" => Ok(Backslashes::Escaped),
            other => Err(format!(
                "unknown sink.backslashes `{other}`, expected `literal` (InfluxDB 1.x, 2.x) or \
                 `escaped` (VictoriaMetrics, InfluxDB 3)"
            )),
        }
    }
}

/// Replaces control characters (newlines, tabs, …) with spaces: line protocol cannot carry them.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A tag value made writable: [`sanitize`]d, and trailing backslashes replaced with `＼`
/// (U+FF3C): InfluxDB 1.x reads `x\` before the separator as an escaped separator, and its
/// parser reads an escaped trailing backslash (`x\\`) as an invalid tag and rejects the whole
/// line, so the point would otherwise be lost or its name changed.
fn tag_value(s: &str) -> String {
    let mut v = sanitize(s);
    let trailing = v.len() - v.trim_end_matches('\\').len();
    if trailing > 0 {
        v.truncate(v.len() - trailing);
        v.extend(std::iter::repeat_n('\u{FF3C}', trailing));
    }
    v
}

/// Appends `s` escaped for a measurement name (`tag = false`: commas and spaces) or a tag key or
/// value (`tag = true`: commas, equals signs and spaces), in `dialect`.
fn escape_into(out: &mut String, s: &str, tag: bool, dialect: Backslashes) {
    for c in s.chars() {
        match c {
            ',' | ' ' => out.push('\\'),
            '=' if tag => out.push('\\'),
            '\\' if dialect == Backslashes::Escaped => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
}

/// Encodes `points` as line protocol (newline-terminated lines, nanosecond timestamps) with
/// tags in `dialect`, appending to `buf`. Returns how many points were written (a point whose
/// every field was left out is skipped).
pub fn encode(points: &[Point], dialect: Backslashes, buf: &mut Vec<u8>) -> usize {
    let mut written = 0;
    for p in points {
        let fields: Vec<(&str, FieldValue)> = p
            .fields
            .iter()
            .filter(|(_, v)| !matches!(v, FieldValue::Float(f) if !f.is_finite()))
            .map(|(k, v)| match v {
                FieldValue::Str(s) => (*k, FieldValue::Str(sanitize(s))),
                other => (*k, other.clone()),
            })
            .collect();
        let Some(((first_key, first_value), rest)) = fields.split_first() else {
            continue;
        };
        // The series key (measurement and tags) in the dialect; the builder writes a one-byte
        // placeholder measurement, replaced by it once the line is built.
        let mut key = String::new();
        escape_into(&mut key, &sanitize(p.measurement), false, dialect);
        for (k, v) in &p.tags {
            let v = tag_value(v);
            if !v.is_empty() {
                key.push(',');
                escape_into(&mut key, &sanitize(k), true, dialect);
                key.push('=');
                escape_into(&mut key, &v, true, dialect);
            }
        }
        let start = buf.len();
        let b = LineProtocolBuilder::new_with(std::mem::take(buf)).measurement("m");
        let mut b = match first_value {
            FieldValue::Int(i) => b.field(first_key, *i),
            FieldValue::Float(f) => b.field(first_key, *f),
            FieldValue::Str(s) => b.field(first_key, s.as_str()),
        };
        for (k, v) in rest {
            b = match v {
                FieldValue::Int(i) => b.field(k, *i),
                FieldValue::Float(f) => b.field(k, *f),
                FieldValue::Str(s) => b.field(k, s.as_str()),
            };
        }
        *buf = b.timestamp(p.timestamp).close_line().build();
        buf.splice(start..start + 1, key.into_bytes());
        written += 1;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{parse_lines, FieldValue as Parsed};

    /// The escaped dialect is the `influxdb_line_protocol` crate's own escaping, so its parser
    /// (InfluxDB 3's) reads every name back as it was.
    #[test]
    fn escaped_dialect_is_byte_exact_and_round_trips() {
        let p = Point::new("loadtest_request", 1_700_000_000_000_000_000)
            .tag("event_id", "e1")
            .tag("method", "GET")
            .tag("name", "/a b,c=d\\e\nf")
            .int("requests", 12u64)
            .float("rps", 2.5)
            .float("nan", f64::NAN)
            .string("error", "say \"hi\" \\ bye\r\n");
        let mut buf = Vec::new();
        assert_eq!(encode(&[p], Backslashes::Escaped, &mut buf), 1);
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(
            text,
            "loadtest_request,event_id=e1,method=GET,name=/a\\ b\\,c\\=d\\\\e\\ f \
             requests=12i,rps=2.5,error=\"say \\\"hi\\\" \\\\ bye  \" 1700000000000000000\n"
        );
        let parsed: Vec<_> = parse_lines(&text)
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(parsed.len(), 1);
        let line = &parsed[0];
        let tags = line.series.tag_set.as_ref().expect("tags");
        let name = tags
            .iter()
            .find(|(k, _)| k.as_str() == "name")
            .expect("name");
        assert_eq!(name.1.as_str(), "/a b,c=d\\e f");
        let error = line
            .field_set
            .iter()
            .find(|(k, _)| k.as_str() == "error")
            .expect("error field");
        assert!(matches!(&error.1, Parsed::String(s) if s.as_str() == "say \"hi\" \\ bye  "));
        assert!(line.field_set.iter().all(|(k, _)| k.as_str() != "nan"));
    }

    /// The literal dialect (InfluxDB 1.x, 2.x) writes a backslash as itself and escapes only
    /// commas, equals signs and spaces; string fields are escaped as in the other dialect.
    #[test]
    fn literal_dialect_leaves_backslashes_alone() {
        let p = Point::new("loadtest_summary", 7)
            .tag("name", "back\\slash")
            .tag("a", "g\\,h")
            .tag("b", "a\\ b=c")
            .int("requests", 1u64)
            .string("error", "x \\ y");
        let mut buf = Vec::new();
        assert_eq!(encode(&[p], Backslashes::Literal, &mut buf), 1);
        assert_eq!(
            String::from_utf8(buf).expect("utf8"),
            "loadtest_summary,name=back\\slash,a=g\\\\,h,b=a\\\\ b\\=c \
             requests=1i,error=\"x \\\\ y\" 7\n"
        );
    }

    #[test]
    fn trailing_backslash_in_a_tag_is_replaced() {
        for dialect in [Backslashes::Literal, Backslashes::Escaped] {
            let mut buf = Vec::new();
            encode(
                &[Point::new("m", 1).tag("name", "trail\\\\").int("n", 1i64)],
                dialect,
                &mut buf,
            );
            let text = String::from_utf8(buf).expect("utf8");
            assert_eq!(text, "m,name=trail\u{FF3C}\u{FF3C} n=1i 1\n");
            assert!(parse_lines(&text).all(|l| l.is_ok()));
        }
    }

    #[test]
    fn point_without_finite_fields_is_skipped_and_empty_tags_dropped() {
        let mut buf = Vec::new();
        let skipped = Point::new("m", 1).float("x", f64::INFINITY);
        let kept = Point::new("m", 2)
            .tag("empty", "")
            .tag("t", "v")
            .int("n", 1i64);
        assert_eq!(encode(&[skipped, kept], Backslashes::Literal, &mut buf), 1);
        assert_eq!(String::from_utf8(buf).expect("utf8"), "m,t=v n=1i 2\n");
    }

    #[test]
    fn dialect_names_parse_and_others_are_named() {
        assert_eq!(
            Backslashes::try_from("escaped".to_string()),
            Ok(Backslashes::Escaped)
        );
        let err = Backslashes::try_from("raw".to_string()).expect_err("unknown");
        assert!(err.contains("sink.backslashes `raw`"), "{err}");
    }
}
