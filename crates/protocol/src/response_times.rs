//! [`ResponseTimes`]: Locust's rounded response-time histogram (`response_times` in
//! `StatsEntry.serialize()`), kept as a sorted vector of (bucket, count) pairs.
//!
//! A writer holds one per endpoint per node of every running run, and the merged one of its
//! last snapshot: at 10,000 runs that is hundreds of thousands of histograms. A `BTreeMap` costs
//! about 30 bytes per bucket (half-filled nodes of 11); the packed form 2 to 4, and merging two
//! of them is one pass over both.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::packed::{combine, Packed};

/// Rounded response time (ms, as [`crate::round_response_time`] rounds it) → count, in
/// ascending order of the bucket, without zero counts. On the wire, a JSON object whose keys
/// are the buckets as strings (`{"12": 3, "130": 1}`), as Locust writes it.
///
/// Held in one of two forms: open (a sorted vector, 16 bytes per bucket) while requests are
/// added one by one (loadgen's recording), packed (2 to 4 bytes per bucket) once read from the
/// wire, merged or differenced (the writer's). Equality compares the counts.
#[derive(Clone)]
pub struct ResponseTimes(Repr);

#[derive(Clone)]
enum Repr {
    Open(Vec<(u64, u64)>),
    Packed(Packed),
}

impl Default for ResponseTimes {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for ResponseTimes {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ResponseTimes {}

impl fmt::Debug for ResponseTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl ResponseTimes {
    /// An empty histogram.
    pub fn new() -> Self {
        Self(Repr::Packed(Packed::default()))
    }

    /// Adds `count` requests to `bucket` (saturating). A zero count changes nothing.
    pub fn add(&mut self, bucket: u64, count: u64) {
        if count == 0 {
            return;
        }
        if let Repr::Packed(p) = &self.0 {
            self.0 = Repr::Open(p.iter().collect());
        }
        if let Repr::Open(v) = &mut self.0 {
            add_sorted(v, bucket, count);
        }
    }

    /// The count of `bucket`, if it has requests.
    pub fn get(&self, bucket: u64) -> Option<u64> {
        self.iter().find(|&(b, _)| b == bucket).map(|(_, c)| c)
    }

    /// (bucket, count) pairs, fastest bucket first.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        match &self.0 {
            Repr::Open(v) => Box::new(v.iter().copied()),
            Repr::Packed(p) => Box::new(p.iter()),
        }
    }

    /// Buckets with requests.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Open(v) => v.len(),
            Repr::Packed(p) => p.iter().count(),
        }
    }

    /// Whether no bucket has requests.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Open(v) => v.is_empty(),
            Repr::Packed(p) => p.is_empty(),
        }
    }

    /// Requests counted (the sum of the counts, saturating).
    pub fn total(&self) -> u64 {
        self.iter().fold(0u64, |acc, (_, c)| acc.saturating_add(c))
    }

    /// The fastest and slowest buckets with requests.
    pub fn range(&self) -> Option<(u64, u64)> {
        let mut it = self.iter();
        let first = it.next()?.0;
        Some((first, it.last().map_or(first, |(b, _)| b)))
    }

    /// Adds every count of `other` (merging two nodes' histograms): one pass over both. The
    /// result is packed unless `self` is open (being recorded into).
    pub fn merge(&mut self, other: &Self) {
        if other.is_empty() {
            return;
        }
        match &mut self.0 {
            Repr::Open(v) => {
                for (bucket, count) in other.iter() {
                    add_sorted(v, bucket, count);
                }
            }
            Repr::Packed(p) => *p = combine(p.iter(), other.iter(), u64::saturating_add),
        }
    }

    /// The counts since `earlier` (a previous cumulative histogram of the same requests):
    /// `self − earlier` per bucket, saturating at zero; buckets left empty are dropped. Packed.
    pub fn since(&self, earlier: &Self) -> Self {
        Self(Repr::Packed(combine(
            self.iter(),
            earlier.iter(),
            u64::saturating_sub,
        )))
    }

    /// Packs an open histogram (what a writer keeps).
    pub fn compact(&mut self) {
        if let Repr::Open(v) = &self.0 {
            self.0 = Repr::Packed(Packed::from_buckets(v.iter().copied()));
        }
    }
}

/// Adds `count` to `bucket` in an open histogram, keeping it sorted.
fn add_sorted(v: &mut Vec<(u64, u64)>, bucket: u64, count: u64) {
    match v.binary_search_by_key(&bucket, |&(b, _)| b) {
        Ok(i) => v[i].1 = v[i].1.saturating_add(count),
        Err(i) => v.insert(i, (bucket, count)),
    }
}

impl FromIterator<(u64, u64)> for ResponseTimes {
    /// Counts of the same bucket add up; the pairs may come in any order. Packed.
    fn from_iter<I: IntoIterator<Item = (u64, u64)>>(iter: I) -> Self {
        let mut v: Vec<(u64, u64)> = iter.into_iter().filter(|&(_, c)| c > 0).collect();
        v.sort_unstable_by_key(|&(b, _)| b);
        v.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                kept.1 = kept.1.saturating_add(later.1);
                true
            } else {
                false
            }
        });
        Self(Repr::Packed(Packed::from_buckets(v.into_iter())))
    }
}

impl Serialize for ResponseTimes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Integer keys: serde_json writes them as strings ("12"), as Locust's JSON has them.
        let mut map = s.serialize_map(Some(self.len()))?;
        for (bucket, count) in self.iter() {
            map.serialize_entry(&bucket, &count)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseTimes;

    #[test]
    fn add_merge_and_since_keep_buckets_sorted_and_exact() {
        let mut a = ResponseTimes::new();
        for (b, c) in [(30, 1), (10, 2), (20, 0), (10, 3)] {
            a.add(b, c);
        }
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![(10, 5), (30, 1)]);
        let b: ResponseTimes = [(5, 1), (30, 2), (40, 7)].into_iter().collect();
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![(5, 1), (10, 5), (30, 3), (40, 7)]
        );
        assert_eq!(m.total(), 16);
        assert_eq!(m.range(), Some((5, 40)));
        assert_eq!(
            m.since(&a).iter().collect::<Vec<_>>(),
            vec![(5, 1), (30, 2), (40, 7)]
        );
        assert_eq!(m.since(&m), ResponseTimes::new());
        let mut open = ResponseTimes::new();
        open.add(40, 7);
        open.merge(&a);
        open.add(5, 1);
        open.merge(&[(30, 2)].into_iter().collect());
        assert_eq!(open, m);
        open.compact();
        assert_eq!(open, m);
        assert_eq!(m.get(30), Some(3));
        assert_eq!(m.get(31), None);
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(json, r#"{"5":1,"10":5,"30":3,"40":7}"#);
    }

    #[test]
    fn from_iter_adds_repeated_buckets() {
        let h: ResponseTimes = [(130, 2), (12, 1), (130, 1), (7, 0)].into_iter().collect();
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![(12, 1), (130, 3)]);
    }
}
