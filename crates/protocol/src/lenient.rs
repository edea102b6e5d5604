//! Lenient number parsing for counts, so any JSON a schema calls an integer is accepted.
//!
//! JSON Schema (and Python's `json`, which may emit `2053.0`) treats a number with a zero
//! fractional part as an integer; serde's `u64` does not. These deserializers accept a
//! non-negative integer up to `i64::MAX` (InfluxDB's integer range), or a float with no
//! fractional part up to 2^53, and reject anything else with a clear message (so the error still
//! names the field).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::ResponseTimes;

/// Largest integer a float represents exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

struct CountVisitor;

impl Visitor<'_> for CountVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v > i64::MAX as u64 {
            return Err(E::custom(format!("{v} is larger than {}", i64::MAX)));
        }
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("{v} is negative; expected a non-negative integer")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_EXACT {
            Ok(v as u64)
        } else {
            Err(E::custom(format!("{v} is not a non-negative integer")))
        }
    }
}

/// A count: non-negative integer (or an integral float).
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(CountVisitor)
}

/// An optional count (`null` or absent is `None`).
pub fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            count(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

/// A response-time histogram: keys are integers (ms) written as strings, values are counts.
pub fn histogram<'de, D: Deserializer<'de>>(d: D) -> Result<ResponseTimes, D::Error> {
    struct Hist;
    impl<'de> Visitor<'de> for Hist {
        type Value = ResponseTimes;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object mapping response times in ms (\"12\") to counts")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(ResponseTimes::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
            while let Some(BucketKey(bucket)) = map.next_key::<BucketKey>()? {
                let Count(n) = map.next_value::<Count>()?;
                pairs.push((bucket, n));
            }
            Ok(pairs.into_iter().collect())
        }
    }
    d.deserialize_any(Hist)
}

/// A histogram key, read without allocating: serde_json lends a key without escapes straight
/// from the input.
struct BucketKey(u64);

impl<'de> de::Deserialize<'de> for BucketKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of milliseconds as a string (\"12\")")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<u64, E> {
                histogram_key(key).ok_or_else(|| {
                    E::custom(format!("key {key:?} is not a whole number of milliseconds"))
                })
            }
        }
        d.deserialize_str(Key).map(BucketKey)
    }
}

/// A histogram key: `"130"`, or `"130.0"` as real Locust writes keys of 100 ms and more
/// (Python's `round(x, -1)` returns a float).
fn histogram_key(key: &str) -> Option<u64> {
    let key = key.trim();
    if let Ok(n) = key.parse::<u64>() {
        return Some(n);
    }
    let (whole, frac) = key.split_once('.')?;
    if frac.is_empty() || !frac.bytes().all(|b| b == b'0') {
        return None;
    }
    whole.parse().ok()
}

struct Count(u64);

impl<'de> de::Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        count(d).map(Count)
    }
}

/// A string that may be `null` (read as empty): Locust's total row has `"method": null`.
pub fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::count")]
        n: u64,
        #[serde(default, deserialize_with = "super::histogram")]
        h: crate::ResponseTimes,
    }

    #[test]
    fn accepts_integral_floats_and_rejects_the_rest() {
        let t: T =
            serde_json::from_str(r#"{"n": 2053.0, "h": {"12": 3.0, "100": 1}}"#).expect("ok");
        assert_eq!(t.n, 2053);
        assert_eq!(t.h.get(12), Some(3));
        assert!(serde_json::from_str::<T>(r#"{"n": 1.5}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n": -1}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n": "1"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n": 9223372036854775808}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n": 1, "h": {"x": 1}}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"n": 1, "h": {"1.5": 1}}"#).is_err());
        let locust: T =
            serde_json::from_str(r#"{"n": 1, "h": {"130.0": 2, "130": 1}}"#).expect("locust keys");
        assert_eq!(locust.h.get(130), Some(3));
    }
}
