//! Content-defined chunking (FastCDC 2020, docs/FORMAT.md §1) over a stream read in pieces.
//!
//! The cuts depend only on the bytes from a chunk's start, so cutting a buffer that always holds
//! at least `max` bytes past the current chunk start (or the end of the data) gives exactly the
//! cuts the in-memory chunker gives on the whole data; `tests::stream_matches_whole` holds us
//! to it.

use fastcdc::v2020::{Normalization, cut, select_masks};

use crate::format::manifest::ChunkParams;

/// The chunk sizes osimage writes (FORMAT.md §1 explains the choice).
pub const PARAMS: ChunkParams = ChunkParams {
    min: 16 * 1024,
    avg: 64 * 1024,
    max: 256 * 1024,
};

/// Finds cut points with fixed parameters.
#[derive(Clone, Debug)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64),
}

impl Chunker {
    pub fn new(p: ChunkParams) -> Self {
        Chunker {
            min: p.min as usize,
            avg: p.avg as usize,
            max: p.max as usize,
            masks: select_masks(p.avg as usize, Normalization::Level1),
        }
    }

    /// Length of the next chunk at the start of `data`, or `None` when more bytes are needed
    /// to decide (`data` is shorter than `max` and `at_end` is false). With `at_end` the rest
    /// of the data always ends in a chunk.
    pub fn next_cut(&self, data: &[u8], at_end: bool) -> Option<usize> {
        if data.is_empty() {
            return None;
        }
        if data.len() <= self.min {
            return at_end.then_some(data.len());
        }
        let (s, l) = self.masks;
        let (_, len) = cut(data, self.min, self.avg, self.max, s, l, s << 1, l << 1);
        if len == data.len() && data.len() < self.max && !at_end {
            return None;
        }
        Some(len)
    }

    /// All cut lengths of `data` as one whole.
    #[cfg(test)]
    pub fn cuts(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(n) = self.next_cut(&data[at..], true) {
            out.push(n);
            at += n;
        }
        out
    }
}

/// True when every byte of `data` is zero (such chunks become holes).
pub fn is_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(16);
    let body_zero = words.by_ref().all(|w| {
        let mut a = [0u8; 16];
        a.copy_from_slice(w);
        u128::from_ne_bytes(a) == 0
    });
    body_zero && words.remainder().iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Cuts a stream the way the writer does: a window refilled in pieces of `piece` bytes.
    fn stream_cuts(c: &Chunker, data: &[u8], piece: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let (mut start, mut filled) = (0, 0);
        loop {
            let at_end = filled == data.len();
            match c.next_cut(&data[start..filled], at_end) {
                Some(n) => {
                    out.push(n);
                    start += n;
                }
                None if at_end => break,
                None => filled = (filled + piece).min(data.len()),
            }
        }
        out
    }

    #[test]
    fn golden_boundaries_are_pinned() {
        // Changing these means changing the format: dedup across versions breaks.
        let data = pseudo_random(1 << 20, 42);
        let cuts = Chunker::new(PARAMS).cuts(&data);
        assert_eq!(cuts.iter().sum::<usize>(), 1 << 20);
        let first: Vec<usize> = cuts.iter().copied().take(4).collect();
        assert_eq!(
            first, GOLDEN_FIRST_CUTS,
            "chunk boundaries changed: {cuts:?}"
        );
    }

    const GOLDEN_FIRST_CUTS: [usize; 4] = [34625, 89372, 16949, 119607];

    #[test]
    fn small_data_is_one_chunk() {
        let c = Chunker::new(PARAMS);
        assert_eq!(c.cuts(&[1u8; 100]), vec![100]);
        assert_eq!(c.cuts(&[]), Vec::<usize>::new());
        assert_eq!(c.next_cut(&[1u8; 100], false), None);
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 1000]));
        let mut v = vec![0u8; 1000];
        v[999] = 1;
        assert!(!is_zero(&v));
        v[999] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
        assert!(is_zero(&[]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn stream_matches_whole(len in 0usize..3_000_000, seed in any::<u64>(), piece in 4096usize..600_000) {
            let c = Chunker::new(PARAMS);
            let data = pseudo_random(len, seed);
            let whole = c.cuts(&data);
            prop_assert_eq!(whole.iter().sum::<usize>(), len);
            prop_assert!(whole.iter().all(|n| *n <= PARAMS.max as usize));
            prop_assert_eq!(stream_cuts(&c, &data, piece), whole);
        }
    }
}
