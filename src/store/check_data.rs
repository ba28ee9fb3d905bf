//! `store check --read-data [--subset P%] [--seed N]` (docs/STORE.md §5.6): the packs that
//! versions use read whole and checked through `pack_check` (header, every block's hash, the
//! pack's hash), each damaged one named with the versions that use it. The packs chosen are
//! read as one object of parts with one plan, so the fetchers read ahead across them. A subset is chosen by
//! a seed: each pack ranks by the BLAKE3 of the seed and its id, and the first P% are read, so
//! the same seed over the same packs reads the same ones (the seed is printed for that), and
//! a pack added later does not change which of the others are chosen.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::check::{DataReport, Problem, UsedPack};
use super::pack_check::{PackCheck, plan_whole};
use super::{Store, StoreError, names};
use crate::format::PayloadError;
use crate::format::source::RangeRead;
use crate::image::{Backing, Span};
use crate::progress::Progress;
use crate::remote::s3::S3Error;

/// Which share of the packs `--read-data` reads, and the seed that chooses them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Subset {
    /// More than 0, at most 100.
    pub percent: f64,
    pub seed: u64,
}

impl Subset {
    /// Every pack (`--read-data` without `--subset`).
    pub fn all(seed: u64) -> Subset {
        Subset {
            percent: 100.0,
            seed,
        }
    }

    /// `P` or `P%`, a number of percent more than 0 and at most 100.
    pub fn parse_percent(text: &str) -> Result<f64, String> {
        let t = text.trim();
        let n = t.strip_suffix('%').unwrap_or(t).trim();
        match n.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
            _ => Err(format!(
                "{text:?} is not a share of the packs (more than 0%, at most 100%)"
            )),
        }
    }

    /// How many of `n` packs are read: P% of them rounded up, at least one of a non-empty
    /// set.
    pub fn count(&self, n: usize) -> usize {
        let k = (n as f64 * self.percent / 100.0).ceil() as usize;
        k.clamp(usize::from(n > 0), n)
    }

    /// The packs of `ids` to read: the [`Subset::count`] whose BLAKE3 of seed and id ranks
    /// first.
    pub fn choose<'a>(&self, ids: impl Iterator<Item = &'a [u8; 32]>) -> Vec<[u8; 32]> {
        let mut ranked: Vec<([u8; 32], [u8; 32])> = ids
            .map(|id| {
                let mut h = blake3::Hasher::new();
                h.update(&self.seed.to_le_bytes());
                h.update(id);
                (*h.finalize().as_bytes(), *id)
            })
            .collect();
        ranked.sort();
        let k = self.count(ranked.len());
        let mut chosen: Vec<[u8; 32]> = ranked.into_iter().take(k).map(|(_, id)| id).collect();
        chosen.sort();
        chosen
    }
}

/// A seed for `--read-data` when none is given: random, printed for a rerun; below 2^53, so
/// a JSON reader that keeps numbers as doubles reads it exactly.
pub fn random_seed() -> Result<u64, StoreError> {
    Ok(u64::from_le_bytes(super::random_bytes::<8>()?) & ((1 << 53) - 1))
}

impl Store {
    /// Reads the chosen packs of `packs` (each whole and of its recorded length) and checks
    /// them; a damaged one is a problem naming it and its versions.
    pub(super) fn check_data(
        &self,
        subset: Subset,
        packs: &BTreeMap<&[u8; 32], &UsedPack>,
        problems: &mut Vec<Problem>,
        progress: &dyn Progress,
    ) -> Result<DataReport, StoreError> {
        let chosen = subset.choose(packs.keys().copied());
        let total: u64 = chosen
            .iter()
            .filter_map(|id| packs.get(id))
            .map(|p| p.len)
            .sum();
        let mut report = DataReport {
            seed: subset.seed,
            percent: subset.percent,
            packs_in_use: packs.len() as u64,
            ..DataReport::default()
        };
        // One object of parts over the chosen packs, planned whole, as `read` opens a
        // version's packs: the fetcher pool reads ahead across them (STORE.md §7.2.1).
        let chosen: Vec<(&[u8; 32], &UsedPack)> = (chosen.iter())
            .filter_map(|id| packs.get_key_value(id).map(|(k, p)| (*k, *p)))
            .collect();
        if chosen.is_empty() {
            return Ok(report);
        }
        let parts: Vec<(String, u64)> = (chosen.iter())
            .map(|(obj, p)| {
                let key = self.root.key(&names::pack_key(obj));
                (key, self.stored_pack_len(p.len))
            })
            .collect();
        let object = self
            .client
            .open_many(&parts, format!("{} (packs)", self.root))
            .map_err(|e| S3Error::Request(format!("{}: {e}", self.root)))?;
        // The packs' plaintext one after another: an encrypted store's are opened segment by
        // segment with each pack's own key as they are read (§6).
        let backing = Backing::remote(Arc::new(object));
        let mut stored_at = 0u64;
        let spans = (chosen.iter())
            .map(|(_, p)| {
                let span = match self.keys() {
                    Some(k) => backing.sealed_span(stored_at, p.len, k.pack(&p.id)),
                    None => backing.span(stored_at, p.len),
                };
                stored_at += span.stored_len();
                span
            })
            .collect();
        let plain = PlainParts::new(spans, format!("{} (packs)", self.root));
        let source: &dyn RangeRead = &plain;
        plan_whole(source, total);
        progress.start("reading the packs", total);
        let mut at = 0u64;
        for (obj, p) in chosen {
            let rel = names::pack_key(obj);
            let shown = self.shown(&rel);
            let check = PackCheck {
                source,
                at,
                len: p.len,
                hash: p.id,
                blocks: &p.blocks,
                store_id: self.id,
                name: &shown,
            };
            let checked = check.run(&mut |_| Ok(()), progress);
            at += p.len;
            report.packs_read += 1;
            report.bytes_read += p.len;
            report.read.push(rel.clone());
            if let Err(e) = checked {
                problems.push(Problem {
                    object: rel,
                    problem: problem_text(e),
                    versions: p.users.clone(),
                });
            }
        }
        progress.finish();
        Ok(report)
    }
}

/// Spans read as one object: the plaintext of each after the one before (a sealed span
/// decrypts the segments it reads), so a checker reads packs by plaintext offsets whether
/// or not the store is encrypted.
pub(super) struct PlainParts {
    /// Each span and where its plaintext starts.
    parts: Vec<(u64, Span)>,
    len: u64,
    shown: String,
}

impl PlainParts {
    pub(super) fn new(spans: Vec<Span>, shown: String) -> PlainParts {
        let mut at = 0u64;
        let parts = spans
            .into_iter()
            .map(|s| {
                let start = at;
                at += s.len;
                (start, s)
            })
            .collect();
        PlainParts {
            parts,
            len: at,
            shown,
        }
    }

    /// Each piece of `len` bytes at `at`: the span, the offset within it, the piece's length
    /// and where it goes in the caller's buffer.
    fn pieces(&self, at: u64, len: u64) -> Vec<(&Span, u64, u64, usize)> {
        let end = at.saturating_add(len);
        let first = self.parts.partition_point(|(start, s)| start + s.len <= at);
        let mut out = Vec::new();
        for (start, span) in &self.parts[first..] {
            if *start >= end {
                break;
            }
            let from = at.max(*start);
            let to = end.min(start + span.len);
            if to > from {
                out.push((span, from - start, to - from, (from - at) as usize));
            }
        }
        out
    }
}

impl RangeRead for PlainParts {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        if at
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: read past the end of the packs", self.shown),
            ));
        }
        for (span, within, n, to) in self.pieces(at, buf.len() as u64) {
            span.read_exact_at(&mut buf[to..to + n as usize], within)?;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn forget(&self, at: u64, len: u64) -> bool {
        let mut any = false;
        for (span, within, n, _) in self.pieces(at, len) {
            any |= span.forget(within, n);
        }
        any
    }

    fn plan(&self, ranges: Vec<(u64, u64)>) {
        let Some((_, first)) = self.parts.first() else {
            return;
        };
        let mut stored = Vec::new();
        for (at, len) in ranges {
            for (span, within, n, _) in self.pieces(at, len) {
                span.plan_read(within, n, &mut stored);
            }
        }
        first.source().plan(stored);
    }
}

/// A checker's error without the pack's name (the problem names the object).
fn problem_text(e: PayloadError) -> String {
    match e {
        PayloadError::Image { msg, .. } => msg,
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<[u8; 32]> {
        (0..n).map(|i| [i; 32]).collect()
    }

    #[test]
    fn a_share_is_rounded_up_and_never_empty() {
        let s = |p| Subset {
            percent: p,
            seed: 1,
        };
        assert_eq!(s(10.0).count(25), 3);
        assert_eq!(s(0.1).count(5), 1);
        assert_eq!(s(100.0).count(7), 7);
        assert_eq!(s(50.0).count(0), 0);
        assert_eq!(Subset::parse_percent("25%"), Ok(25.0));
        assert_eq!(Subset::parse_percent("2.5"), Ok(2.5));
        for bad in ["0", "0%", "101%", "-5", "x", "", "NaN"] {
            assert!(Subset::parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_seed_chooses_the_same_packs_again() {
        let all = ids(40);
        let a = Subset {
            percent: 25.0,
            seed: 7,
        };
        let first = a.choose(all.iter());
        assert_eq!(first.len(), 10);
        assert_eq!(
            a.choose(all.iter().rev()),
            first,
            "order of listing does not matter"
        );
        let other = Subset { seed: 8, ..a }.choose(all.iter());
        assert_ne!(other, first);
        // A pack added later leaves the others' choice alone unless it ranks in.
        let mut more = all.clone();
        more.push([200; 32]);
        let again = a.choose(more.iter());
        let kept = first.iter().filter(|id| again.contains(id)).count();
        assert!(kept >= first.len() - 1, "{kept}");
        assert_eq!(Subset::all(3).choose(all.iter()), all);
    }
}
