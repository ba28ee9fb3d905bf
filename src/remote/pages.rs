//! A small cache of 256 KiB-aligned pages of an object, for the many small reads that open
//! an image (ISO volume descriptors and directory records, `.oimg` header and trailer, pack
//! headers): they cost a handful of requests instead of hundreds (docs/STORE.md §7.4); and
//! of the most recent large reads (whole blocks), which threads unpacking files that share a
//! block would otherwise each fetch. Each page or read is fetched by one reader at a time.

use std::sync::Arc;

/// Page size and alignment.
pub const PAGE: u64 = 256 << 10;
/// Pages kept (16 MiB): an ISO's descriptors and directories, and the small blocks that
/// readers on several threads take from neighbouring pages out of order.
const PAGES: usize = 64;

/// The most recently used pages of one object, most recent first.
#[derive(Default)]
pub struct PageCache {
    pages: Vec<(u64, Arc<Vec<u8>>)>,
    /// Pages a reader is fetching now.
    loading: Vec<u64>,
    /// The most recent large reads (a block with its header), by offset, most recent first:
    /// threads that unpack files sharing a block each read it, and over the network the
    /// second read is served from here.
    reads: Vec<(u64, Arc<Vec<u8>>)>,
    /// Their bytes, at most `READ_BYTES`.
    read_bytes: usize,
    /// Offsets of large reads being fetched now.
    reading: Vec<u64>,
}

/// Bytes of recent large reads kept.
const READ_BYTES: usize = 32 << 20;

impl PageCache {
    /// Page `index`, if cached (it becomes the most recent).
    pub fn get(&mut self, index: u64) -> Option<Arc<Vec<u8>>> {
        let at = self.pages.iter().position(|(i, _)| *i == index)?;
        let page = self.pages.remove(at);
        let bytes = page.1.clone();
        self.pages.insert(0, page);
        Some(bytes)
    }

    /// Claims the fetch of page `index`: false when another reader is fetching it already.
    pub fn start_loading(&mut self, index: u64) -> bool {
        if self.loading.contains(&index) {
            return false;
        }
        self.loading.push(index);
        true
    }

    /// The fetch of page `index` ended (kept by `put` if it succeeded).
    pub fn done_loading(&mut self, index: u64) {
        self.loading.retain(|i| *i != index);
    }

    /// Keeps page `index`, dropping the least recently used beyond the bound.
    pub fn put(&mut self, index: u64, bytes: Arc<Vec<u8>>) {
        self.pages.retain(|(i, _)| *i != index);
        self.pages.insert(0, (index, bytes));
        self.pages.truncate(PAGES);
    }

    /// A recent read of `len` bytes at `at`, if there is one (it becomes the most recent).
    pub fn get_read(&mut self, at: u64, len: usize) -> Option<Arc<Vec<u8>>> {
        let i = self
            .reads
            .iter()
            .position(|(a, b)| *a == at && b.len() == len)?;
        let r = self.reads.remove(i);
        let bytes = r.1.clone();
        self.reads.insert(0, r);
        Some(bytes)
    }

    /// Claims the fetch of the large read at `at`: false when another reader is on it.
    pub fn start_reading(&mut self, at: u64) -> bool {
        if self.reading.contains(&at) {
            return false;
        }
        self.reading.push(at);
        true
    }

    /// The large read at `at` ended; `bytes` when it succeeded, kept within `READ_BYTES`.
    pub fn done_reading(&mut self, at: u64, bytes: Option<Arc<Vec<u8>>>) {
        self.reading.retain(|a| *a != at);
        let Some(bytes) = bytes.filter(|b| b.len() <= READ_BYTES / 4) else {
            return;
        };
        self.read_bytes += bytes.len();
        self.reads.insert(0, (at, bytes));
        while self.read_bytes > READ_BYTES {
            match self.reads.pop() {
                Some((_, b)) => self.read_bytes -= b.len(),
                None => break,
            }
        }
    }

    /// Drops every page and recent read holding a byte of `len` bytes at `at`, so they are
    /// fetched again.
    pub fn forget(&mut self, at: u64, len: u64) {
        if len == 0 {
            return;
        }
        let (first, last) = (at / PAGE, at.saturating_add(len - 1) / PAGE);
        self.pages.retain(|(i, _)| *i < first || *i > last);
        let end = at.saturating_add(len);
        let mut dropped = 0;
        self.reads.retain(|(a, b)| {
            let keep = a.saturating_add(b.len() as u64) <= at || *a >= end;
            if !keep {
                dropped += b.len();
            }
            keep
        });
        self.read_bytes -= dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reader_at_a_time_fetches_a_page() {
        let mut c = PageCache::default();
        assert!(c.start_loading(3));
        assert!(!c.start_loading(3), "a second reader waits");
        assert!(c.start_loading(4), "another page is fetched meanwhile");
        c.done_loading(3);
        assert!(
            c.start_loading(3),
            "a failed fetch is tried again by the next reader"
        );
    }

    #[test]
    fn recent_reads_serve_the_same_read_again_within_their_bound() {
        let mut c = PageCache::default();
        assert!(c.start_reading(1000));
        assert!(!c.start_reading(1000), "a second reader of the block waits");
        c.done_reading(1000, Some(Arc::new(vec![7u8; 100])));
        assert_eq!(c.get_read(1000, 100).unwrap()[0], 7);
        assert!(
            c.get_read(1000, 99).is_none(),
            "another length is another read"
        );
        assert!(c.get_read(1001, 100).is_none());
        c.forget(1050, 1);
        assert!(c.get_read(1000, 100).is_none(), "damaged bytes are dropped");
        assert_eq!(c.read_bytes, 0);
        // the bound: the oldest go first
        let big = READ_BYTES / 4;
        for i in 0..5u64 {
            c.done_reading(i * big as u64, Some(Arc::new(vec![0u8; big])));
        }
        assert!(c.read_bytes <= READ_BYTES);
        assert!(c.get_read(0, big).is_none(), "the oldest was dropped");
        assert!(c.get_read(4 * big as u64, big).is_some());
        c.done_reading(7, None);
        assert!(c.start_reading(7), "a failed read is tried again");
    }

    #[test]
    fn the_least_recently_used_page_goes_first() {
        let mut c = PageCache::default();
        for i in 0..PAGES as u64 {
            c.put(i, Arc::new(vec![i as u8]));
        }
        assert_eq!(c.get(0).map(|p| p[0]), Some(0), "0 is now the most recent");
        c.put(99, Arc::new(vec![99]));
        assert!(c.get(1).is_none(), "1 was the least recent");
        assert_eq!(c.get(0).map(|p| p[0]), Some(0));
        assert_eq!(c.get(99).map(|p| p[0]), Some(99));
        assert_eq!(c.pages.len(), PAGES);
    }

    #[test]
    fn forgetting_a_range_drops_exactly_the_pages_it_touches() {
        let mut c = PageCache::default();
        for i in 0..5 {
            c.put(i, Arc::new(vec![i as u8]));
        }
        // The last byte of page 1 through the first of page 3.
        c.forget(2 * PAGE - 1, PAGE + 2);
        let kept: Vec<u64> = (0..5).filter(|i| c.get(*i).is_some()).collect();
        assert_eq!(kept, [0, 4]);
        c.forget(4 * PAGE, 0);
        assert!(c.get(4).is_some(), "an empty range drops nothing");
    }
}
