//! The object's recent reads, for the reads that come again: 256 KiB-aligned pages serve the
//! many small reads that open an image (ISO volume descriptors and directory records,
//! `.oimg` header and trailer, pack headers), so they cost a handful of requests instead of
//! hundreds (docs/STORE.md §7.4); whole blocks are kept because threads unpacking files that
//! share a block would otherwise each fetch it. A page is a read like any other, at `index *
//! PAGE`. Each read is fetched by one reader at a time; the others wait for it.

use std::sync::Arc;

/// Page size and alignment.
pub const PAGE: u64 = 256 << 10;
/// Bytes kept (48 MiB): an ISO's descriptors and directories, and the blocks (or pages of
/// small blocks) that readers on several threads take out of order.
const KEPT_BYTES: usize = 48 << 20;
/// Reads larger than this (a manifest) are not kept: they are not read again.
const LARGEST_KEPT: usize = KEPT_BYTES / 4;

/// The most recent reads of one object by (offset, length), most recent first.
#[derive(Default)]
pub struct ReadCache {
    reads: Vec<(u64, Arc<Vec<u8>>)>,
    /// Their bytes, at most `KEPT_BYTES`.
    bytes: usize,
    /// Offsets being fetched now.
    fetching: Vec<u64>,
}

impl ReadCache {
    /// The read of `len` bytes at `at`, if kept (it becomes the most recent).
    pub fn get(&mut self, at: u64, len: usize) -> Option<Arc<Vec<u8>>> {
        let i = self
            .reads
            .iter()
            .position(|(a, b)| *a == at && b.len() == len)?;
        let r = self.reads.remove(i);
        let bytes = r.1.clone();
        self.reads.insert(0, r);
        Some(bytes)
    }

    /// Claims the fetch of the read at `at`: false when another reader is fetching it.
    pub fn start(&mut self, at: u64) -> bool {
        if self.fetching.contains(&at) {
            return false;
        }
        self.fetching.push(at);
        true
    }

    /// The fetch at `at` ended; `bytes` when it succeeded, kept within `KEPT_BYTES` (the
    /// least recently used go first).
    pub fn done(&mut self, at: u64, bytes: Option<Arc<Vec<u8>>>) {
        self.fetching.retain(|a| *a != at);
        if let Some(bytes) = bytes.filter(|b| b.len() <= LARGEST_KEPT) {
            self.put(at, bytes);
        }
    }

    /// The kept page of `index` of an object of `object_len` bytes, without making it recent.
    fn has_page(&self, index: u64, object_len: u64) -> bool {
        let at = index * PAGE;
        let len = PAGE.min(object_len.saturating_sub(at)) as usize;
        self.reads.iter().any(|(a, b)| *a == at && b.len() == len)
    }

    /// Whether kept pages hold every byte of `len` bytes at `at`.
    pub fn covered(&self, at: u64, len: u64, object_len: u64) -> bool {
        len > 0
            && at.checked_add(len).is_some_and(|e| e <= object_len)
            && (at / PAGE..=(at + len - 1) / PAGE).all(|i| self.has_page(i, object_len))
    }

    /// Fills `buf` with the bytes at `at` from kept pages, when they hold them all (a block
    /// the pages an image was opened with hold already is not fetched again).
    pub fn read_pages(&mut self, buf: &mut [u8], at: u64, object_len: u64) -> bool {
        if !self.covered(at, buf.len() as u64, object_len) {
            return false;
        }
        let mut done = 0;
        while done < buf.len() {
            let pos = at + done as u64;
            let index = pos / PAGE;
            let len = PAGE.min(object_len - index * PAGE) as usize;
            let Some(page) = self.get(index * PAGE, len) else {
                return false;
            };
            let off = (pos - index * PAGE) as usize;
            let n = (buf.len() - done).min(page.len() - off);
            buf[done..done + n].copy_from_slice(&page[off..off + n]);
            done += n;
        }
        true
    }

    /// Keeps `bytes` as the read at `at`, unless too large to keep.
    pub fn keep(&mut self, at: u64, bytes: Arc<Vec<u8>>) {
        if bytes.len() <= LARGEST_KEPT {
            self.put(at, bytes);
        }
    }

    /// Keeps `bytes` as the read at `at`.
    pub fn put(&mut self, at: u64, bytes: Arc<Vec<u8>>) {
        if let Some(i) = self
            .reads
            .iter()
            .position(|(a, b)| *a == at && b.len() == bytes.len())
        {
            self.bytes -= self.reads.remove(i).1.len();
        }
        self.bytes += bytes.len();
        self.reads.insert(0, (at, bytes));
        while self.bytes > KEPT_BYTES {
            match self.reads.pop() {
                Some((_, b)) => self.bytes -= b.len(),
                None => break,
            }
        }
    }

    /// Drops every read holding a byte of `len` bytes at `at`, so they are fetched again.
    pub fn forget(&mut self, at: u64, len: u64) {
        let end = at.saturating_add(len);
        let mut dropped = 0;
        self.reads.retain(|(a, b)| {
            let keep = len == 0 || a.saturating_add(b.len() as u64) <= at || *a >= end;
            if !keep {
                dropped += b.len();
            }
            keep
        });
        self.bytes -= dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(n: usize, v: u8) -> Arc<Vec<u8>> {
        Arc::new(vec![v; n])
    }

    #[test]
    fn one_reader_at_a_time_fetches_a_read() {
        let mut c = ReadCache::default();
        assert!(c.start(3 * PAGE));
        assert!(!c.start(3 * PAGE), "a second reader waits");
        assert!(c.start(4 * PAGE), "another read is fetched meanwhile");
        c.done(3 * PAGE, None);
        assert!(
            c.start(3 * PAGE),
            "a failed fetch is tried again by the next reader"
        );
    }

    #[test]
    fn a_read_is_served_again_only_at_its_offset_and_length() {
        let mut c = ReadCache::default();
        c.done(1000, Some(read(100, 7)));
        assert_eq!(c.get(1000, 100).unwrap()[0], 7);
        assert!(c.get(1000, 99).is_none(), "another length is another read");
        assert!(c.get(1001, 100).is_none());
        c.done(5000, Some(read(LARGEST_KEPT + 1, 1)));
        assert!(c.get(5000, LARGEST_KEPT + 1).is_none(), "too large to keep");
    }

    #[test]
    fn the_least_recently_used_go_first_within_the_bound() {
        let mut c = ReadCache::default();
        let n = PAGE as usize;
        let kept = KEPT_BYTES / n;
        for i in 0..kept as u64 + 1 {
            c.put(i * PAGE, read(n, i as u8));
            if i == 0 {
                continue;
            }
            // page 0 is used again and again: never the least recent
            assert!(c.get(0, n).is_some());
        }
        assert_eq!(c.bytes, KEPT_BYTES);
        assert!(c.get(0, n).is_some());
        assert!(
            c.get(PAGE, n).is_none(),
            "the least recently used was dropped"
        );
        assert!(c.get(kept as u64 * PAGE, n).is_some());
        c.put(0, read(n, 9));
        assert_eq!(
            c.bytes, KEPT_BYTES,
            "the same read put again replaces itself"
        );
        assert_eq!(c.get(0, n).unwrap()[0], 9);
    }

    #[test]
    fn reads_within_kept_pages_are_served_from_them() {
        let mut c = ReadCache::default();
        let len = 3 * PAGE - 10;
        let page = |i: u64| {
            Arc::new(
                (0..PAGE.min(len - i * PAGE))
                    .map(|b| (b + i) as u8)
                    .collect(),
            )
        };
        c.put(0, page(0));
        c.put(2 * PAGE, page(2));
        let mut buf = vec![0u8; 20];
        assert!(c.read_pages(&mut buf, 100, len));
        assert_eq!(buf[0], 100);
        assert!(!c.covered(PAGE - 10, 20, len), "page 1 is not kept");
        assert!(!c.read_pages(&mut buf, PAGE - 10, len));
        c.put(PAGE, page(1));
        assert!(
            c.read_pages(&mut buf, PAGE - 10, len),
            "across pages 0 and 1"
        );
        assert_eq!((buf[0], buf[10]), ((PAGE - 10) as u8, 1));
        assert!(c.covered(3 * PAGE - 30, 20, len), "the last, short page");
        assert!(!c.covered(3 * PAGE - 30, 21, len), "past the object's end");
        assert!(!c.covered(0, 0, len));
    }

    #[test]
    fn forget_drops_every_read_holding_the_bytes() {
        let mut c = ReadCache::default();
        let n = PAGE as usize;
        for i in 0..4 {
            c.put(i * PAGE, read(n, 0));
        }
        c.put(PAGE + 10, read(100, 1));
        c.forget(PAGE + 50, 1);
        assert!(c.get(PAGE, n).is_none());
        assert!(c.get(PAGE + 10, 100).is_none());
        assert!(c.get(0, n).is_some() && c.get(2 * PAGE, n).is_some());
        // the last byte of page 1 (gone already) and the first of page 2
        c.forget(2 * PAGE - 1, 2);
        assert!(c.get(2 * PAGE, n).is_none());
        assert!(c.get(0, n).is_some() && c.get(3 * PAGE, n).is_some());
        assert_eq!(c.bytes, 2 * n);
        c.forget(3 * PAGE, 0);
        assert!(
            c.get(3 * PAGE, n).is_some(),
            "nothing to forget in no bytes"
        );
    }
}
