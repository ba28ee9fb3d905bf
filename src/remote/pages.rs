//! A small cache of 256 KiB-aligned pages of an object, for the many small reads that open
//! an image (ISO volume descriptors and directory records, `.oimg` header and trailer, pack
//! headers): they cost a handful of requests instead of hundreds (docs/STORE.md §7.4).

use std::sync::Arc;

/// Page size and alignment.
pub const PAGE: u64 = 256 << 10;
/// Pages kept (4 MiB): an ISO's descriptors, its directories and a pack's header or two.
const PAGES: usize = 16;

/// The most recently used pages of one object, most recent first.
#[derive(Default)]
pub struct PageCache {
    pages: Vec<(u64, Arc<Vec<u8>>)>,
}

impl PageCache {
    /// Page `index`, if cached (it becomes the most recent).
    pub fn get(&mut self, index: u64) -> Option<Arc<Vec<u8>>> {
        let at = self.pages.iter().position(|(i, _)| *i == index)?;
        let page = self.pages.remove(at);
        let bytes = page.1.clone();
        self.pages.insert(0, page);
        Some(bytes)
    }

    /// Keeps page `index`, dropping the least recently used beyond the bound.
    pub fn put(&mut self, index: u64, bytes: Arc<Vec<u8>>) {
        self.pages.retain(|(i, _)| *i != index);
        self.pages.insert(0, (index, bytes));
        self.pages.truncate(PAGES);
    }

    /// Drops every page holding a byte of `len` bytes at `at`, so they are fetched again.
    pub fn forget(&mut self, at: u64, len: u64) {
        if len == 0 {
            return;
        }
        let (first, last) = (at / PAGE, at.saturating_add(len - 1) / PAGE);
        self.pages.retain(|(i, _)| *i < first || *i > last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
