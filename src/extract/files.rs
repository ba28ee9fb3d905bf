//! Phase 2 of extract: regular file data, in parallel, then each file's metadata on its fd.
//!
//! Files are handed out in contiguous batches in manifest order, so one thread reads
//! consecutive chunks and mostly hits the block it just decompressed. Each file costs openat,
//! one pwrite per non-zero chunk, ftruncate only when it ends in a hole, then fchown,
//! fsetxattr per xattr, fchmod, futimens and close. All-zero chunks are skipped and become holes
//! (docs/DESIGN.md "Extract": zero runs come back as holes).

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::error::ExtractError;
use super::plan::{Plan, Tree, data_len, data_of, name_of};
use super::source::ChunkSource;
use super::target::{self, DirCache, Handle, Target, Warnings};
use super::tree;
use crate::format::manifest::{Entries, EntryIndex, EntryKind, EntryRef, Runs};
use crate::progress::Progress;

/// A batch ends after this many bytes of data or files, whichever comes first.
const BATCH_BYTES: u64 = 8 << 20;
const BATCH_FILES: usize = 256;

/// What the file phase did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FileStats {
    pub files: u64,
    pub bytes_written: u64,
}

/// Shared state of the worker threads.
struct Work<'a, S> {
    src: &'a S,
    target: &'a Target,
    entries: &'a Entries,
    plan: &'a Plan,
    batches: Vec<std::ops::Range<usize>>,
    next: AtomicUsize,
    failed: AtomicBool,
    progress: &'a dyn Progress,
    warn: &'a Warnings<'a>,
}

/// Writes every file of the plan with `threads` threads.
pub(crate) fn write_files<S: ChunkSource>(
    src: &S,
    target: &Target,
    plan: &Plan,
    threads: usize,
    progress: &dyn Progress,
    warn: &Warnings,
) -> Result<FileStats, ExtractError> {
    let work = Work {
        src,
        target,
        entries: src.entries(),
        plan,
        batches: batches(&plan.files, |i| file_len(tree(src), i)),
        next: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        progress,
        warn,
    };
    let threads = threads.clamp(1, work.batches.len().max(1));
    // The chunks in the order the threads will take them: batch after batch.
    let entries = src.entries();
    let mut order = work
        .batches
        .iter()
        .flat_map(|b| &plan.files[b.clone()])
        .flat_map(|&i| match entries[data_of(entries, i) as usize].kind() {
            EntryKind::File { runs, .. } => runs,
            _ => Runs::new(),
        })
        .flat_map(|run| run.chunks);
    src.plan(&mut order);
    let results: Vec<Result<FileStats, ExtractError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| work.run())).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut total = FileStats::default();
    for r in results {
        let stats = r?;
        total.files += stats.files;
        total.bytes_written += stats.bytes_written;
    }
    Ok(total)
}

/// Bytes of data to write for planned file `i` (its own or its hard link target's).
fn file_len(tree: Tree, i: EntryIndex) -> u64 {
    data_len(tree, data_of(tree.entries, i))
}

/// Contiguous ranges of `files` of bounded size (`len` gives each file's), a large file alone
/// in its own, the large ones first (largest first) and the rest in manifest order. A thread
/// that took a 100 MiB library last would otherwise finish it alone while the other sits idle.
fn batches(files: &[EntryIndex], len: impl Fn(EntryIndex) -> u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &f) in files.iter().enumerate() {
        let f_len = len(f);
        if f_len >= BATCH_BYTES && start < i {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += f_len;
        if bytes >= BATCH_BYTES || i + 1 - start >= BATCH_FILES {
            out.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < files.len() {
        out.push(start..files.len());
    }
    // Stable: batches of small files keep their order (and their shared blocks).
    out.sort_by_key(|r| {
        let first = if r.len() == 1 { len(files[r.start]) } else { 0 };
        std::cmp::Reverse(if first >= BATCH_BYTES { first } else { 0 })
    });
    out
}

impl<S: ChunkSource> Work<'_, S> {
    /// One thread: takes batches until none are left or another thread failed.
    fn run(&self) -> Result<FileStats, ExtractError> {
        let mut cache = self.src.new_cache();
        let mut dirs = DirCache::default();
        let mut stats = FileStats::default();
        while !self.failed.load(Ordering::Relaxed) {
            let Some(batch) = self.batches.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            for &file in &self.plan.files[batch.clone()] {
                match self.write_one(file, &mut cache, &mut dirs) {
                    Ok(written) => {
                        stats.files += 1;
                        stats.bytes_written += written;
                        self.progress.advance(file_len(tree(self.src), file));
                    }
                    Err(e) => {
                        self.failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
        Ok(stats)
    }

    /// Creates one file, writes its data and applies its metadata; returns bytes written.
    /// A file whose data cannot be written whole (a chunk that fails its hash, a full disk)
    /// is removed again, never left looking complete (issue #24): the error names it.
    fn write_one(
        &self,
        file: EntryIndex,
        cache: &mut S::Cache,
        dirs: &mut DirCache,
    ) -> Result<u64, ExtractError> {
        let named = self.entries.at(file as usize);
        let data = self.entries.at(data_of(self.entries, file) as usize);
        let path = || self.target.full_path(named.path);
        let dir = dirs.parent(self.target, named.path)?;
        let name = name_of(named.path);
        let file =
            target::create_file(dir, name).map_err(|e| ExtractError::io("creating", path(), e))?;
        match self.fill(&file, named, data, cache) {
            Ok(written) => Ok(written),
            Err(e) => {
                drop(file);
                Err(
                    match rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()) {
                        Ok(()) => e.removed(),
                        Err(_) => e,
                    },
                )
            }
        }
    }

    /// Writes the data of `data` (the file `named`, or its first hard link) into `file` and
    /// applies its metadata; returns bytes written.
    fn fill(
        &self,
        file: &File,
        named: EntryRef,
        data: EntryRef,
        cache: &mut S::Cache,
    ) -> Result<u64, ExtractError> {
        let EntryKind::File { size, runs } = &data.kind() else {
            unreachable!("the plan only lists regular files");
        };
        let path = || self.target.full_path(named.path);
        let (mut end, mut written) = (0u64, 0u64);
        for run in runs {
            let mut pos = run.offset;
            for &c in &run.chunks {
                let bytes = self
                    .src
                    .read_chunk(c, cache)
                    .map_err(|e| ExtractError::Read {
                        path: path(),
                        source: Box::new(e),
                    })?;
                let len = bytes.len() as u64;
                let expected = self.src.chunks().get(c as usize).map(|r| u64::from(r.len));
                if expected != Some(len) {
                    return Err(ExtractError::Read {
                        path: path(),
                        source: format!("chunk {c} has {len} bytes, not as the manifest says")
                            .into(),
                    });
                }
                if !is_zero(bytes) {
                    write_at(file, bytes, pos)
                        .map_err(|e| ExtractError::io("writing", path(), e))?;
                    (end, written) = (pos + len, written + len);
                }
                pos += len;
            }
        }
        if end != *size {
            // Ends in a hole (or a skipped zero chunk): extend without writing zeros.
            file.set_len(*size)
                .map_err(|e| ExtractError::io("setting the size of", path(), e))?;
        }
        // The inode's metadata comes from the data entry; messages name the created path.
        let h = Handle::Fd(file.as_fd());
        self.target
            .set_meta(h, &data.meta(), data.xattrs(), named.path, self.warn)?;
        Ok(written)
    }
}

fn write_at(file: &File, bytes: &[u8], pos: u64) -> std::io::Result<()> {
    file.write_all_at(bytes, pos)
}

/// Whether a chunk is all zero bytes (most chunks fail on the first word).
fn is_zero(bytes: &[u8]) -> bool {
    let (words, tail) = bytes.as_chunks::<16>();
    words.iter().all(|w| u128::from_ne_bytes(*w) == 0) && tail.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of files `0..sizes.len()` of these sizes.
    fn batched(sizes: &[u64]) -> Vec<std::ops::Range<usize>> {
        let files: Vec<EntryIndex> = (0..sizes.len() as EntryIndex).collect();
        batches(&files, |i| sizes[i as usize])
    }

    #[test]
    fn large_files_go_alone_and_first() {
        const M: u64 = 1 << 20;
        let sizes = [M, M, 20 * M, 3 * M, 5 * M, 40 * M, 1, 1];
        assert_eq!(batched(&sizes), [5..6, 2..3, 0..2, 3..5, 6..8]);
    }

    #[test]
    fn small_files_are_batched_by_count() {
        assert_eq!(
            batched(&[10; BATCH_FILES + 3]),
            [0..BATCH_FILES, BATCH_FILES..BATCH_FILES + 3]
        );
    }

    #[test]
    fn zero_runs_are_detected() {
        assert!(is_zero(&[0; 100]));
        assert!(is_zero(&[]));
        let mut v = vec![0u8; 100];
        v[99] = 1;
        assert!(!is_zero(&v));
        v[99] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
    }
}
