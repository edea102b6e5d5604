//! [`LatencyHistogram`]: the exact-to-3-significant-digits response-time histogram a producer
//! may carry in a [`crate::StatsEntry`] (`hdr_histogram`), and the source of every percentile a
//! user sees when it is present (see [`crate::StatsEntry::percentile`]).
//!
//! It is an HdrHistogram (<https://hdrhistogram.github.io/HdrHistogram/>) of microseconds with 3
//! significant digits, so any value is exact to 0.1 % and histograms of nodes and intervals add
//! exactly. On the wire it is HdrHistogram's V2 compressed (deflate) serialization, base64
//! (standard alphabet, padded): the format every HdrHistogram library reads
//! (`HdrHistogram.decode_from_compressed` in Java, `HdrHistogram.decode` in Python's
//! `hdrhistogram` package).

use std::fmt;
use std::io::Read as _;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::de;
use serde::{Deserialize, Serialize};

use crate::packed::{combine, Packed};

/// Significant digits of every latency histogram (values exact to 0.1 %). Histograms of other
/// precisions are refused: they would not add exactly.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Largest value recorded, µs (one hour); longer response times count as one hour.
pub const MAX_US: u64 = 3_600_000_000;

/// Longest accepted base64 text of one histogram, bytes (a 3-digit histogram up to one hour
/// compresses to a few KiB; this leaves room and bounds the work one entry can ask for).
pub const MAX_ENCODED_LEN: usize = 256 * 1024;

/// Largest accepted decompressed histogram, bytes (bounds a deflate bomb).
const MAX_DECODED_LEN: u64 = 4 * 1024 * 1024;

/// V2 header: cookie, payload length, normalizing offset, digits (u32 each), lowest and highest
/// trackable values (u64 each), integer-to-double ratio (f64).
const V2_HEADER_LEN: usize = 40;
/// Cookies of the V2 formats (the base with the word-size bits `0x10`, as HdrHistogram writes them).
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;

/// A response-time histogram: microseconds, 3 significant digits, growing as needed.
///
/// Held in one of two forms. A histogram being recorded into (loadgen's) is the library's
/// dense array of counts: recording is an index and an add. One read from the wire, merged or
/// differenced (the writer's: one per endpoint per node of every running run) is packed: only
/// its recorded buckets, as (the bucket's highest equivalent value minus the previous one,
/// count) pairs of LEB128 varints, 2 to 4 bytes per recorded bucket instead of 8 bytes per
/// bucket of the whole range (8,192 buckets, 64 KiB, for a range up to 100 ms). Merging,
/// differencing and percentiles walk the packed buckets in one pass. Both forms give the same
/// counts, percentiles and wire text; equality compares the counts.
#[derive(Clone)]
pub struct LatencyHistogram(Repr);

#[derive(Clone)]
enum Repr {
    Dense(Box<Histogram<u64>>),
    /// Recorded buckets, ascending, no zero counts: (highest equivalent value µs, count),
    /// packed ([`Packed`]).
    Packed(Packed),
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyHistogram({} values)", self.len())
    }
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.buckets().eq(other.buckets())
    }
}

/// An empty dense histogram (3 digits, growing as needed).
fn dense() -> Histogram<u64> {
    // 3 significant digits with auto-resize is always valid; `new_with_max` is the same
    // histogram with a fixed range, which cannot fail either.
    Histogram::new(SIGNIFICANT_DIGITS)
        .or_else(|_| Histogram::new_with_max(MAX_US, SIGNIFICANT_DIGITS))
        .unwrap_or_else(|_| unreachable_histogram())
}

/// The recorded buckets of a dense histogram: (highest equivalent value, count), ascending.
fn recorded(h: &Histogram<u64>) -> impl Iterator<Item = (u64, u64)> + '_ {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
}

/// A dense histogram of recorded buckets (each bucket's highest equivalent value lands in that
/// bucket again).
fn dense_of(buckets: impl Iterator<Item = (u64, u64)>) -> Histogram<u64> {
    let mut h = dense();
    record_all(&mut h, buckets);
    h
}

/// Adds recorded buckets to a dense histogram (saturating what does not fit).
fn record_all(h: &mut Histogram<u64>, buckets: impl Iterator<Item = (u64, u64)>) {
    for (value, count) in buckets {
        if h.record_n(value, count).is_err() {
            h.saturating_record_n(value, count);
        }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a histogram from the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// Longer than [`MAX_ENCODED_LEN`].
    #[error("longer than {MAX_ENCODED_LEN} characters")]
    TooLong,
    /// Not base64.
    #[error("not base64: {0}")]
    Base64(String),
    /// Not an HdrHistogram V2 compressed serialization, or a broken one.
    #[error("not an HdrHistogram V2 compressed serialization: {0}")]
    Format(String),
    /// Another precision than [`SIGNIFICANT_DIGITS`].
    #[error("{0} significant digits; only {SIGNIFICANT_DIGITS} are accepted")]
    Digits(u32),
}

impl LatencyHistogram {
    /// An empty histogram (allocating nothing until the first value is recorded).
    pub fn new() -> Self {
        Self(Repr::Packed(Packed::default()))
    }

    /// The recorded buckets, ascending: (the bucket's highest equivalent value µs, count).
    fn buckets(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        match &self.0 {
            Repr::Dense(h) => Box::new(recorded(h)),
            Repr::Packed(p) => Box::new(p.iter()),
        }
    }

    /// The dense form, for recording into.
    fn dense_mut(&mut self) -> &mut Histogram<u64> {
        if let Repr::Packed(p) = &self.0 {
            self.0 = Repr::Dense(Box::new(dense_of(p.iter())));
        }
        match &mut self.0 {
            Repr::Dense(h) => h,
            Repr::Packed(_) => unreachable_dense(),
        }
    }

    /// A dense copy (or the dense form itself), for the library's encoder and `min`.
    fn as_dense(&self) -> std::borrow::Cow<'_, Histogram<u64>> {
        match &self.0 {
            Repr::Dense(h) => std::borrow::Cow::Borrowed(h),
            Repr::Packed(p) => std::borrow::Cow::Owned(dense_of(p.iter())),
        }
    }

    /// Turns a dense histogram into the packed form (what the writer keeps).
    pub fn compact(&mut self) {
        if let Repr::Dense(h) = &self.0 {
            self.0 = Repr::Packed(Packed::from_buckets(recorded(h)));
        }
    }

    /// Records one response time, `ms` milliseconds, as microseconds (at least 1 µs, at most
    /// [`MAX_US`]).
    pub fn record_ms(&mut self, ms: f64) {
        let us = if ms.is_finite() && ms > 0.0 {
            ((ms * 1_000.0).round() as u64).clamp(1, MAX_US)
        } else {
            1
        };
        let h = self.dense_mut();
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
    }

    /// Adds `other`'s counts (merging two nodes, or two intervals).
    pub fn add(&mut self, other: &Self) {
        match (&mut self.0, &other.0) {
            (Repr::Dense(a), Repr::Dense(b)) => {
                // Auto-resizing histograms of one precision always add; a fixed-range one
                // (never made here) would drop what does not fit rather than fail the merge.
                if a.add(&**b).is_err() {
                    record_all(a, recorded(b));
                }
            }
            (Repr::Dense(a), Repr::Packed(b)) => record_all(a, b.iter()),
            (Repr::Packed(a), _) => {
                *a = combine(a.iter(), other.buckets(), u64::saturating_add);
            }
        }
    }

    /// The counts recorded since `earlier` (a previous cumulative histogram of the same
    /// requests): `self − earlier`, saturating at zero for a value `earlier` has more of.
    /// The result is packed.
    pub fn since(&self, earlier: &Self) -> Self {
        Self(Repr::Packed(combine(
            self.buckets(),
            earlier.buckets(),
            u64::saturating_sub,
        )))
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Repr::Dense(h) => h.len(),
            Repr::Packed(p) => p.iter().fold(0u64, |acc, (_, c)| acc.saturating_add(c)),
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Dense(h) => h.is_empty(),
            Repr::Packed(p) => p.is_empty(),
        }
    }

    /// The `q` quantile (a fraction, 0.95 for p95; clamped to 0–1), ms with µs resolution:
    /// HdrHistogram's `value_at_quantile` (the highest value equivalent to the recorded value
    /// at that rank). `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let us = match &self.0 {
            Repr::Dense(h) => h.value_at_quantile(q),
            // The lowest equivalent value the library gives for q = 0 needs the bucket math.
            Repr::Packed(_) if q == 0.0 => self.as_dense().value_at_quantile(q),
            Repr::Packed(p) => packed_quantile(p, q),
        };
        Some(us as f64 / 1_000.0)
    }

    /// Smallest recorded value, ms (`None` when empty).
    pub fn min_ms(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.as_dense().min() as f64 / 1_000.0)
    }

    /// The wire form: V2 compressed serialization, base64.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        // Serializing into a Vec can only fail for a histogram V2 cannot describe, which an
        // auto-resizing u64 histogram is not; an empty text then decodes as an empty histogram.
        if V2DeflateSerializer::new()
            .serialize(&*self.as_dense(), &mut bytes)
            .is_err()
        {
            bytes.clear();
        }
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads the wire form, refusing what is too long, too large decompressed, or of another
    /// precision than [`SIGNIFICANT_DIGITS`]. An empty text is an empty histogram.
    pub fn decode(text: &str) -> Result<Self, HistogramError> {
        if text.len() > MAX_ENCODED_LEN {
            return Err(HistogramError::TooLong);
        }
        if text.is_empty() {
            return Ok(Self::new());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| HistogramError::Base64(e.to_string()))?;
        let format = |m: &str| HistogramError::Format(m.to_string());
        if bytes.len() < 8 || be_u32(&bytes[0..4]) != V2_COMPRESSED_COOKIE {
            return Err(format("no V2 compressed cookie"));
        }
        // Inflate with a bound, then check the inner header before the library allocates.
        let mut inner = Vec::new();
        flate2::read::ZlibDecoder::new(&bytes[8..])
            .take(MAX_DECODED_LEN + 1)
            .read_to_end(&mut inner)
            .map_err(|e| HistogramError::Format(e.to_string()))?;
        if inner.len() as u64 > MAX_DECODED_LEN {
            return Err(format("too large decompressed"));
        }
        if inner.len() < V2_HEADER_LEN || be_u32(&inner[0..4]) != V2_COOKIE {
            return Err(format("no V2 header"));
        }
        let payload_len = be_u32(&inner[4..8]) as usize;
        if payload_len > inner.len() - V2_HEADER_LEN {
            return Err(format("payload longer than the data"));
        }
        let digits = be_u32(&inner[12..16]);
        if digits != u32::from(SIGNIFICANT_DIGITS) {
            return Err(HistogramError::Digits(digits));
        }
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut inner.as_slice())
            .map_err(|e| HistogramError::Format(format!("{e:?}")))?;
        // Kept packed: whatever range the sender fixed, only the recorded buckets.
        Ok(Self(Repr::Packed(Packed::from_buckets(recorded(&h)))))
    }
}

/// `value_at_quantile` of the library (`hdrhistogram` 7, `Histogram::value_at_quantile`) over
/// packed buckets, for `q` in (0, 1]: the highest equivalent value of the first bucket at which
/// the running count reaches `ceil(q × total)` (at least 1).
fn packed_quantile(p: &Packed, q: f64) -> u64 {
    let total = p.iter().fold(0u64, |acc, (_, c)| acc.saturating_add(c));
    let wanted = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (value, count) in p.iter() {
        seen = seen.saturating_add(count);
        if seen >= wanted {
            return value;
        }
    }
    0
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

#[allow(clippy::panic)]
fn unreachable_histogram() -> Histogram<u64> {
    panic!("hdrhistogram rejected constant parameters")
}

#[allow(clippy::panic)]
fn unreachable_dense() -> &'static mut Histogram<u64> {
    panic!("the histogram was just made dense")
}

impl Serialize for LatencyHistogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = LatencyHistogram;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HdrHistogram V2 compressed serialization, base64")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                LatencyHistogram::decode(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_quantiles() {
        let mut h = LatencyHistogram::new();
        for ms in [105.0, 147.0, 105.0, 147.0, 0.0005, 3_600_001.0] {
            h.record_ms(ms);
        }
        let text = h.encode();
        let back = LatencyHistogram::decode(&text).expect("decodes");
        assert_eq!(back, h);
        assert_eq!(back.len(), 6);
        assert_eq!(back.min_ms(), Some(0.001));
        assert_eq!(back.quantile_ms(0.5), Some(105.023));
        let json = serde_json::to_string(&back).expect("json");
        let again: LatencyHistogram = serde_json::from_str(&json).expect("parses");
        assert_eq!(again, h);
    }

    #[test]
    fn merge_and_difference_are_exact() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        let mut all = LatencyHistogram::new();
        for i in 0..1_000 {
            let ms = f64::from(i % 97) * 1.7 + 0.3;
            if i % 3 == 0 { &mut a } else { &mut b }.record_ms(ms);
            all.record_ms(ms);
        }
        let mut merged = a.clone();
        merged.add(&b);
        assert_eq!(merged, all);
        assert_eq!(merged.since(&a), b);
        assert!(a.since(&merged).is_empty());
    }

    #[test]
    fn packed_and_dense_forms_agree() {
        let mut dense = LatencyHistogram::new();
        let mut x: u64 = 12_345;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            dense.record_ms(0.05 + (x % 400_000) as f64 / 1_000.0);
        }
        let packed = LatencyHistogram::decode(&dense.encode()).expect("decodes");
        assert!(matches!(packed.0, Repr::Packed(_)));
        assert!(matches!(dense.0, Repr::Dense(_)));
        assert_eq!(packed, dense);
        assert_eq!(packed.len(), dense.len());
        for q in [0.0, 0.000_01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(packed.quantile_ms(q), dense.quantile_ms(q), "q = {q}");
        }
        assert_eq!(packed.min_ms(), dense.min_ms());
        assert_eq!(packed.encode(), dense.encode());
        // Adding in either form gives the same counts; recording into a packed one makes it
        // dense.
        let mut a = packed.clone();
        a.add(&dense);
        let mut b = dense.clone();
        b.add(&packed);
        assert_eq!(a, b);
        assert_eq!(a.since(&packed), dense);
        let mut c = packed.clone();
        c.record_ms(1.0);
        assert!(matches!(c.0, Repr::Dense(_)));
        assert_eq!(c.len(), dense.len() + 1);
        c.compact();
        assert!(matches!(c.0, Repr::Packed(_)));
        assert_eq!(c.len(), dense.len() + 1);
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(
            LatencyHistogram::decode("%%%"),
            Err(HistogramError::Base64(_))
        ));
        assert!(matches!(
            LatencyHistogram::decode("AAAAAAAAAAA="),
            Err(HistogramError::Format(_))
        ));
        assert_eq!(
            LatencyHistogram::decode(&"A".repeat(MAX_ENCODED_LEN + 1)),
            Err(HistogramError::TooLong)
        );
        let mut two = Histogram::<u64>::new(2).expect("2 digits");
        two.record(5).expect("records");
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&two, &mut bytes)
            .expect("serializes");
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(
            LatencyHistogram::decode(&text),
            Err(HistogramError::Digits(2))
        );
        assert!(LatencyHistogram::decode("").expect("empty").is_empty());
    }
}

#[cfg(test)]
mod size {
    use super::*;

    /// A wide histogram (200,000 values from 0.1 ms to ~5 s) stays about 10 KB on the wire: what
    /// one endpoint adds to a stats message (the API's body limit is 1 MiB by default).
    #[test]
    fn wire_size_of_a_wide_histogram() {
        let mut h = LatencyHistogram::new();
        let mut x: u64 = 7;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 0.1 ms .. ~5 s, log-spread.
            let ms = 0.1
                * (1.0 + (x % 10_000) as f64 / 10_000.0 * 15.6)
                    .exp2()
                    .min(50_000.0);
            h.record_ms(ms);
        }
        let text = h.encode();
        assert!(text.len() < 16 * 1024, "{} bytes", text.len());
    }
}
