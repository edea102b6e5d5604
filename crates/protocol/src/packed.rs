//! [`Packed`]: ascending (value, count) pairs in a few bytes each, the form in which the writer
//! holds histograms ([`crate::ResponseTimes`], [`crate::LatencyHistogram`]): at 10,000 running
//! runs it holds hundreds of thousands of them. Merging and differencing walk two of them once.

/// Ascending (value, count) pairs as LEB128 varints: the value as the difference from the
/// previous pair's (the first from 0), then the count.
#[derive(Clone, Default)]
pub(crate) struct Packed(Vec<u8>);

impl Packed {
    pub(crate) fn iter(&self) -> PackedIter<'_> {
        PackedIter {
            bytes: &self.0,
            value: 0,
        }
    }

    /// Whether there are no pairs.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Packs ascending pairs, leaving out zero counts.
    pub(crate) fn from_buckets(buckets: impl Iterator<Item = (u64, u64)>) -> Self {
        let mut out = Vec::new();
        let mut last = 0u64;
        for (value, count) in buckets.filter(|&(_, c)| c > 0) {
            put_varint(&mut out, value - last);
            put_varint(&mut out, count);
            last = value;
        }
        out.shrink_to_fit();
        Self(out)
    }
}

pub(crate) struct PackedIter<'a> {
    bytes: &'a [u8],
    value: u64,
}

impl Iterator for PackedIter<'_> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        let delta = take_varint(&mut self.bytes)?;
        let count = take_varint(&mut self.bytes)?;
        self.value = self.value.wrapping_add(delta);
        Some((self.value, count))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Two ascending bucket sequences combined bucket by bucket: `f(a's count, b's count)` (0 where
/// one has no such bucket); zero results are left out.
pub(crate) fn combine(
    a: impl Iterator<Item = (u64, u64)>,
    b: impl Iterator<Item = (u64, u64)>,
    f: impl Fn(u64, u64) -> u64,
) -> Packed {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    Packed::from_buckets(std::iter::from_fn(move || {
        Some(match (a.peek().copied(), b.peek().copied()) {
            (Some((va, ca)), Some((vb, cb))) if va == vb => {
                a.next();
                b.next();
                (va, f(ca, cb))
            }
            (Some((va, ca)), Some((vb, _))) if va < vb => {
                a.next();
                (va, f(ca, 0))
            }
            (_, Some((vb, cb))) => {
                b.next();
                (vb, f(0, cb))
            }
            (Some((va, ca)), None) => {
                a.next();
                (va, f(ca, 0))
            }
            (None, None) => return None,
        })
    }))
}
