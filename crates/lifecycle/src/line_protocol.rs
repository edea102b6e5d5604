//! Line-protocol encoding of [`Point`]s.
//!
//! Encoding goes through `influxdb_line_protocol::LineProtocolBuilder` (InfluxData's own escaping
//! of spaces, commas, equals signs, quotes and backslashes). Line protocol cannot carry a newline
//! nor a non-finite float, so before encoding: control characters (newlines included) in
//! measurement names, tag keys and values and string fields become spaces; an empty tag value is
//! left out (InfluxDB rejects `k=`); a NaN or infinite float field is left out of the point; a point
//! left with no field at all is not written.

use influxdb_line_protocol::LineProtocolBuilder;

use crate::point::{FieldValue, Point};

/// Replaces control characters (newlines, tabs, …) with spaces: line protocol cannot carry them.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A tag value made writable: [`sanitize`]d, and a trailing backslash replaced with `＼`
/// (U+FF3C). InfluxDB's parser reads an escaped trailing backslash (`x\\` before the space) as
/// an invalid tag and rejects the whole line, so `name="x\\"` would otherwise lose the point;
/// the look-alike keeps the name distinct and readable.
fn tag_value(s: &str) -> String {
    let mut v = sanitize(s);
    let trailing = v.len() - v.trim_end_matches('\\').len();
    if trailing > 0 {
        v.truncate(v.len() - trailing);
        v.extend(std::iter::repeat_n('\u{FF3C}', trailing));
    }
    v
}

/// Encodes `points` as line protocol (newline-terminated lines, nanosecond timestamps),
/// appending to `buf`. Returns how many points were written (a point whose every field was left
/// out is skipped).
pub fn encode(points: &[Point], buf: &mut Vec<u8>) -> usize {
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
        let mut b = LineProtocolBuilder::new_with(std::mem::take(buf))
            .measurement(&sanitize(p.measurement));
        for (k, v) in &p.tags {
            let v = tag_value(v);
            if !v.is_empty() {
                b = b.tag(k, &v);
            }
        }
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
        written += 1;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{parse_lines, FieldValue as Parsed};

    #[test]
    fn escaping_is_byte_exact_and_round_trips() {
        let p = Point::new("loadtest_request", 1_700_000_000_000_000_000)
            .tag("event_id", "e1")
            .tag("method", "GET")
            .tag("name", "/a b,c=d\\e\nf")
            .int("requests", 12u64)
            .float("rps", 2.5)
            .float("nan", f64::NAN)
            .string("error", "say \"hi\" \\ bye\r\n");
        let mut buf = Vec::new();
        assert_eq!(encode(&[p], &mut buf), 1);
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

    #[test]
    fn trailing_backslash_in_a_tag_is_replaced() {
        let mut buf = Vec::new();
        encode(
            &[Point::new("m", 1).tag("name", "trail\\\\").int("n", 1i64)],
            &mut buf,
        );
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(text, "m,name=trail\u{FF3C}\u{FF3C} n=1i 1\n");
        assert!(parse_lines(&text).all(|l| l.is_ok()));
    }

    #[test]
    fn point_without_finite_fields_is_skipped_and_empty_tags_dropped() {
        let mut buf = Vec::new();
        let skipped = Point::new("m", 1).float("x", f64::INFINITY);
        let kept = Point::new("m", 2)
            .tag("empty", "")
            .tag("t", "v")
            .int("n", 1i64);
        assert_eq!(encode(&[skipped, kept], &mut buf), 1);
        assert_eq!(String::from_utf8(buf).expect("utf8"), "m,t=v n=1i 2\n");
    }
}
