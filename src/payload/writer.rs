//! The capture pipeline: read → cut → hash → dedup → compress → pack, one pass over each byte.
//!
//! Worker threads take batches of consecutive files; each reads a file into a window, cuts it
//! with FastCDC, hashes every chunk with BLAKE3, claims new chunks in the shared index and
//! appends them to its own block; a full block (≥ 256 KiB) is compressed on the same thread and
//! sent over a bounded channel to the pack thread, which appends it to the current pack
//! (docs/FORMAT.md §1–3). Memory stays bounded: a window and a block per worker and a few
//! blocks in flight, plus the chunk index.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crossbeam_channel::{Sender, bounded};

use super::chunker::{Chunker, PARAMS, is_zero};
use super::codec::BlockCompressor;
use super::id_index::IdIndex;
pub use super::packer::PackOwner;
use super::packer::{Outgoing, pack_blocks};
use super::reference::{BasePacks, ReferenceCounts, Referenced};
use super::rests::Rests;
use crate::format::PayloadError;
use crate::format::manifest::{
    BlockIndex, BlockRecord, ChunkHash, ChunkIndex, ChunkRecord, DataRun, Entries, EntryKind,
    EntryRef, EntryRow, Meta, PackRecord, Paths, RunChunks, Runs,
};
use crate::format::records::BlockHeader;
use crate::format::sink::{NewChunk, PackSink};
use crate::progress::Progress;
use crate::scan::Skipped;
use crate::scan::content::{OpenError, SourceFile};

/// A block is closed once it holds this many bytes (FORMAT.md §2 says why 256 KiB).
pub const BLOCK_TARGET: usize = 256 << 10;
/// Bytes read from a file at once; at least the largest chunk.
const WINDOW: usize = 4 << 20;
/// A batch of consecutive files handed to one worker.
const BATCH_BYTES: u64 = 8 << 20;
const BATCH_FILES: usize = 256;
/// How often a file that keeps changing while read is read again.
const READ_ATTEMPTS: usize = 3;

/// How to write the payload.
#[derive(Clone, Debug)]
pub struct PayloadParams {
    /// Where the entries are read from: the scan's `ScanResult::root`.
    pub root: std::path::PathBuf,
    pub level: i32,
    pub threads: usize,
    pub keep_going: bool,
    pub image_id: [u8; 16],
    /// Whose packs they are: the image's own (`PackOwner::Image`, every capture without a
    /// store) or a store's (FORMAT.md §3, version 3).
    pub packs: PackOwner,
    /// A pack is closed before the block that would take it past this length
    /// (`packer::pack_blocks`): MAX_PACK_LEN for an image, the store's `pack_size` for a
    /// store (docs/STORE.md §2.3).
    pub pack_limit: u64,
    /// The progress total: the scan's `ScanResult::to_read`.
    pub to_read: u64,
    /// A folder for the chunk table's temporary file (`rests`), beside the output; `None`
    /// keeps it in memory.
    pub scratch: Option<std::path::PathBuf>,
}

/// What the pipeline produced, for the manifest.
#[derive(Debug, Default)]
pub struct PayloadTables {
    pub packs: Vec<PackRecord>,
    pub blocks: Vec<BlockRecord>,
    pub chunks: Vec<ChunkRecord>,
    /// Files that could not be read (only with keep_going) and were left out.
    pub skipped: Vec<Skipped>,
    /// Things the user should know (files that changed while read, vanished files).
    pub warnings: Vec<String>,
    /// Bytes of file data captured (holes and zero runs excluded), read or reused.
    pub data_bytes: u64,
    /// What a refresh took from its base (all zero without one).
    pub reuse: ReuseCounters,
}

/// A previous image a refresh reuses (issue #6; `crate::refresh::Base` implements it): files
/// it vouches are unchanged, and chunks whose stored blocks can be copied verbatim. Or an image
/// store a capture goes into (docs/STORE.md §4): its blocks are referenced where they lie.
pub trait BaseImage: Sync {
    /// The data runs (in the base's chunk indexes) of a scanned file the base holds unchanged.
    fn unchanged_runs(&self, e: EntryRef) -> Option<Runs>;
    /// The base's index of the chunk whose whole BLAKE3 is `hash`, if the base stores it. A
    /// refresh's base, whose manifest holds 16-byte ids, matches the id (FORMAT.md §1); a
    /// store matches all 32 bytes (docs/STORE.md §2.4).
    fn find_chunk(&self, hash: &ChunkHash) -> Option<ChunkIndex>;
    /// The base's record of chunk `c`.
    fn chunk(&self, c: ChunkIndex) -> Option<&ChunkRecord>;
    /// The whole BLAKE3 of the base's chunk `c`, when the base knows it (a store's index);
    /// `None` (the default) for a base that holds ids only (an image's manifest).
    fn chunk_hash(&self, _c: ChunkIndex) -> Option<ChunkHash> {
        None
    }
    /// Every chunk stored in the base's block `b`.
    fn chunks_in_block(&self, b: BlockIndex) -> &[ChunkIndex];
    /// Where the base stores block `b`: its pack, and the range of its header and body there.
    fn block_extent(&self, b: BlockIndex) -> Option<(u32, std::ops::Range<u64>)>;
    /// Blocks `blocks`, adjacent in one of the base's packs in this order: their headers and
    /// hashes, where they lie in the base's file when it is not encrypted, and, when they
    /// cannot be copied from there unread, their bytes exactly as stored (headers and bodies
    /// back to back, read at once and checked against the base's manifest).
    fn stored_run(&self, blocks: &[BlockIndex]) -> Result<super::carry::StoredRun, PayloadError>;
    /// Whether `stored_run` hands blocks over unread (a plain base of format version 2).
    fn copies_unread(&self) -> bool;
    /// The base's packs when its blocks are referenced where they lie rather than copied (an
    /// image store: `reference`); then `block_extent`, `stored_run` and `copies_unread` are
    /// never asked. `None` (the default): a refresh copies the blocks it uses.
    fn references(&self) -> Option<&dyn BasePacks> {
        None
    }
}

/// What a refresh took from its base.
#[derive(Clone, Debug, Default)]
pub struct ReuseCounters {
    /// Files whose runs came from the base without being read.
    pub files_reused: u64,
    /// Files read from the source.
    pub files_read: u64,
    /// Chunks cut, hashed and compressed by this capture (not found in the base).
    pub chunks_new: u64,
    /// This image's blocks that are verbatim copies of the base's.
    pub copied_blocks: Vec<BlockIndex>,
    /// What a capture into a store uses of the store where it lies: blocks, packs, bytes.
    pub referenced: ReferenceCounts,
}

/// The chunk index shared by all workers: id → record, claimed under one lock.
#[derive(Default)]
struct ChunkTable {
    by_id: IdIndex,
    records: Vec<ChunkRecord>,
    /// For each record, the 16 bytes of its whole BLAKE3 after the id, where known (chunks
    /// read by this capture, chunks of a store's index; not a refresh base's, whose manifest
    /// has ids only): two different chunks with one id are refused, not merged (FORMAT.md §1).
    rest: Rests,
    /// Base block → its copy in this image (refresh only).
    base_blocks: HashMap<BlockIndex, BlockIndex>,
    copied: Vec<BlockIndex>,
    /// Base blocks used where they lie (a store only).
    referenced: Referenced,
    chunks_new: u64,
}

struct Shared<'a> {
    table: Mutex<ChunkTable>,
    next_block: AtomicU32,
    abort: AtomicBool,
    chunker: Chunker,
    params: &'a PayloadParams,
    progress: &'a dyn Progress,
    base: Option<&'a dyn BaseImage>,
    files_reused: AtomicU64,
    files_read: AtomicU64,
}

/// What became of one file.
enum Outcome {
    Read {
        runs: Runs,
        /// Metadata as fstat saw it after reading (the file is closed by then), when it
        /// differs from the scan's (rarely: kept out of the common case's memory, issue #23).
        meta: Option<Box<Meta>>,
        size: u64,
        data: u64,
    },
    Vanished,
    Skipped(String),
}

/// Reads every regular file of `entries`, fills in their data runs and writes the packs.
/// Files that vanished are dropped; unreadable ones fail the capture, or with `keep_going`
/// are dropped and listed. For a refresh, files `base` vouches for are not read, and chunks
/// it already stores are not compressed again: their blocks are copied (docs/REFRESH.md), or
/// with a store for base, referenced where they lie, after the new packs (docs/STORE.md §4).
pub fn write_payload_with_base(
    entries: &mut Entries,
    sink: &mut dyn PackSink,
    params: &PayloadParams,
    base: Option<&dyn BaseImage>,
    progress: &dyn Progress,
) -> Result<PayloadTables, PayloadError> {
    let batches = make_batches(entries.rows());
    progress.start("capturing", params.to_read);

    let shared = Shared {
        table: Mutex::new(ChunkTable::sized_for(
            entries.rows(),
            params.to_read,
            params.scratch.as_deref(),
        )),
        next_block: AtomicU32::new(0),
        abort: AtomicBool::new(false),
        chunker: Chunker::new(PARAMS),
        params,
        progress,
        base,
        files_reused: AtomicU64::new(0),
        files_read: AtomicU64::new(0),
    };
    let (outcomes, pack_result) = run_threads(&shared, entries, &batches, sink);
    progress.finish();
    let outcomes = outcomes?;
    let (packs, blocks) = pack_result?;
    let mut tables = shared.into_tables(packs, blocks)?;
    apply_outcomes(&params.root, entries, outcomes, &mut tables)?;
    Ok(tables)
}

/// The files that were not read (vanished or skipped), by their index in the entries, and the
/// bytes of data read: a file read has its runs written into its entry by the worker, so no
/// list of every file's outcome is held (issue #23, memory an entry).
type Outcomes = (Vec<(usize, Outcome)>, u64);

/// A stretch of the entries whose regular files one worker reads, writing their runs into
/// them. Batches are disjoint ranges in increasing order.
struct Batch<'e> {
    /// The index of `entries[0]`.
    first: usize,
    entries: &'e mut [EntryRow],
}

/// `batches` (disjoint ranges of `entries`, in order) with their stretches of `entries`.
fn stretches<'e>(mut entries: &'e mut [EntryRow], batches: &[Range<usize>]) -> Vec<Batch<'e>> {
    let mut out = Vec::with_capacity(batches.len());
    let mut start = 0;
    for batch in batches {
        let (_, rest) = std::mem::take(&mut entries).split_at_mut(batch.start - start);
        let (mine, rest) = rest.split_at_mut(batch.len());
        entries = rest;
        start = batch.end;
        out.push(Batch {
            first: batch.start,
            entries: mine,
        });
    }
    out
}
/// What the pack thread wrote: the packs and the blocks in them.
type Packed = (Vec<PackRecord>, Vec<BlockRecord>);

/// Runs the workers over `batches` of `entries` and the pack thread into `sink` until every
/// file is read and every block packed (a refresh's carried blocks last); returns the
/// workers' outcomes, or their first error, and the pack thread's result.
fn run_threads(
    shared: &Shared,
    entries: &mut Entries,
    batches: &[Range<usize>],
    sink: &mut dyn PackSink,
) -> (Result<Outcomes, PayloadError>, Result<Packed, PayloadError>) {
    let (params, base) = (shared.params, shared.base);
    let (paths, rows) = entries.split_mut();
    let queue = Mutex::new(stretches(rows, batches).into_iter());
    let (tx, rx) = bounded::<Outgoing>(2 * params.threads.max(1) + 2);
    std::thread::scope(|s| {
        // Only blocks copied from a base are worth waiting for (referenced ones are not sent).
        let hold = match base {
            Some(b) if b.references().is_none() => super::packer::HOLD_FRESH_BYTES,
            _ => 0,
        };
        let (id, owner, limit) = (params.image_id, params.packs, params.pack_limit);
        let packer = s.spawn(move || pack_blocks(rx, sink, id, owner, hold, limit));
        let workers: Vec<_> = (0..params.threads.max(1))
            .map(|_| {
                let tx = tx.clone();
                let queue = &queue;
                s.spawn(move || run_worker(shared, paths, queue, tx))
            })
            .collect();
        let (mut outcomes, mut data) = (Vec::new(), 0);
        let mut first_err = None;
        for w in workers {
            match w.join() {
                Ok(Ok((mut o, d))) => {
                    outcomes.append(&mut o);
                    data += d;
                }
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => {
                    first_err =
                        first_err.or(Some(PayloadError::format("a capture worker panicked")))
                }
            }
        }
        // The base's blocks last, in the base's order: adjacent ones go as one run.
        if let (Some(base), None) = (base, &first_err) {
            let carried = shared
                .table
                .lock()
                .map_err(|_| PayloadError::format("chunk index poisoned"))
                .and_then(|t| super::carry::send_carried(base, &t.base_blocks, &tx));
            first_err = carried.err();
        }
        drop(tx);
        let packed = packer
            .join()
            .unwrap_or_else(|_| Err(PayloadError::format("the pack writer panicked")));
        match first_err {
            Some(e) => (Err(e), packed),
            None => (Ok((outcomes, data)), packed),
        }
    })
}

impl Shared<'_> {
    /// The writer's tables from the chunk index and the counters, once every thread is done
    /// (the files' outcomes not yet applied). A store's referenced packs follow the new ones
    /// (`reference::place`).
    fn into_tables(
        self,
        mut packs: Vec<PackRecord>,
        mut blocks: Vec<BlockRecord>,
    ) -> Result<PayloadTables, PayloadError> {
        let mut table = self
            .table
            .into_inner()
            .map_err(|_| PayloadError::format("chunk index poisoned"))?;
        if blocks.len() != self.next_block.load(Ordering::SeqCst) as usize {
            return Err(PayloadError::format(
                "internal: a block was lost between threads",
            ));
        }
        let referenced = match self.base.and_then(|b| b.references()) {
            Some(base) => super::reference::place(
                base,
                table.referenced,
                &mut packs,
                &mut blocks,
                &mut table.records,
            )?,
            None => Default::default(),
        };
        let reuse = ReuseCounters {
            files_reused: self.files_reused.load(Ordering::SeqCst),
            files_read: self.files_read.load(Ordering::SeqCst),
            chunks_new: table.chunks_new,
            copied_blocks: table.copied,
            referenced,
        };
        Ok(PayloadTables {
            packs,
            blocks,
            chunks: table.records,
            reuse,
            ..Default::default()
        })
    }
}

fn file_size(e: &EntryRow) -> u64 {
    match e.kind() {
        EntryKind::File { size, .. } => size,
        _ => 0,
    }
}

/// Groups consecutive files so a worker keeps neighbours (and their blocks) together: ranges
/// of the entries, each ending at a regular file, with no list of the files' indexes (8 bytes
/// a file, twice; issue #23, memory an entry).
fn make_batches(entries: &[EntryRow]) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut files, mut bytes) = (0, 0, 0u64);
    for (i, e) in entries.iter().enumerate() {
        if !is_file(e) {
            continue;
        }
        files += 1;
        bytes += file_size(e);
        if bytes >= BATCH_BYTES || files >= BATCH_FILES {
            batches.push(start..i + 1);
            (start, files, bytes) = (i + 1, 0, 0);
        }
    }
    if files > 0 {
        batches.push(start..entries.len());
    }
    batches
}

fn is_file(e: &EntryRow) -> bool {
    matches!(e.kind(), EntryKind::File { .. })
}

/// One worker: takes batches until none are left, writes the runs of the files it read into
/// their entries, returns the files it did not read and the bytes of data it did.
fn run_worker<'e>(
    shared: &Shared,
    paths: &Paths,
    queue: &Mutex<std::vec::IntoIter<Batch<'e>>>,
    tx: Sender<Outgoing>,
) -> Result<Outcomes, PayloadError> {
    let mut w = Worker {
        shared,
        compressor: BlockCompressor::new(shared.params.level)?,
        block: Vec::with_capacity(BLOCK_TARGET + PARAMS.max as usize),
        block_index: None,
        block_chunks: Vec::new(),
        window: vec![0u8; WINDOW],
        tx,
    };
    let (mut out, mut data_read) = (Vec::new(), 0);
    let result = (|| {
        loop {
            if shared.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let next = queue
                .lock()
                .map_err(|_| PayloadError::format("batch queue poisoned"))?
                .next();
            let Some(batch) = next else {
                return w.flush();
            };
            let files = batch
                .entries
                .iter_mut()
                .enumerate()
                .filter(|(_, e)| is_file(e));
            for (k, e) in files {
                let i = batch.first + k;
                let path = paths.get(i);
                match w.capture_file(EntryRef { path, row: e })? {
                    Outcome::Read {
                        runs,
                        meta,
                        size,
                        data,
                    } => {
                        data_read += data;
                        if let Some(meta) = meta {
                            e.set_meta(*meta);
                        }
                        e.set_kind(EntryKind::File { size, runs });
                    }
                    other => out.push((i, other)),
                }
            }
        }
    })();
    if result.is_err() {
        shared.abort.store(true, Ordering::Relaxed);
    }
    result.map(|_| (out, data_read))
}

struct Worker<'a> {
    shared: &'a Shared<'a>,
    compressor: BlockCompressor,
    block: Vec<u8>,
    block_index: Option<BlockIndex>,
    /// The records and hashes of the chunks in `block`, for the sink
    /// (`PackSink::block_placed`).
    block_chunks: Vec<NewChunk>,
    window: Vec<u8>,
    tx: Sender<Outgoing>,
}

impl Worker<'_> {
    fn capture_file(&mut self, e: EntryRef) -> Result<Outcome, PayloadError> {
        let keep_going = self.shared.params.keep_going;
        let source = crate::scan::source_path(&self.shared.params.root, e.path);
        let fail = |msg: String| -> Result<Outcome, PayloadError> {
            if keep_going {
                Ok(Outcome::Skipped(msg))
            } else {
                Err(PayloadError::Source {
                    path: source.clone(),
                    msg,
                })
            }
        };
        if let Some(base) = self.shared.base
            && let Some(runs) = base.unchanged_runs(e)
        {
            return self.reuse_file(e, base, &runs);
        }
        self.shared.files_read.fetch_add(1, Ordering::Relaxed);
        let sf = match SourceFile::open(&source, e.meta().ino) {
            Ok(sf) => sf,
            Err(OpenError::Vanished) | Err(OpenError::Replaced) => return Ok(Outcome::Vanished),
            Err(OpenError::Io(err)) => return fail(format!("cannot open: {err}")),
        };
        for attempt in 1..=READ_ATTEMPTS {
            let before = match sf.current_version() {
                Ok(v) => v,
                Err(err) => return fail(format!("cannot stat: {err}")),
            };
            let (runs, data) = match self.read_runs(&sf, before.size) {
                Ok(r) => r,
                Err(ReadFail::Io(err)) => return fail(format!("read error: {err}")),
                Err(ReadFail::Payload(err)) => return Err(err),
            };
            let after = sf.current_version().map_err(|err| PayloadError::Source {
                path: source.clone(),
                msg: format!("cannot stat: {err}"),
            })?;
            if before == after || attempt == READ_ATTEMPTS {
                if before != after {
                    self.shared.progress.note(&format!(
                        "warning: {} kept changing while read; captured as last read",
                        source.display()
                    ));
                }
                let mut meta = e.meta();
                if let Err(err) = sf.refresh_meta(&mut meta) {
                    return fail(format!("cannot stat: {err}"));
                }
                return Ok(Outcome::Read {
                    runs,
                    meta: (meta != e.meta()).then(|| Box::new(meta)),
                    size: before.size,
                    data,
                });
            }
        }
        unreachable_outcome()
    }

    /// An unchanged file: the base's runs with chunk indexes mapped to this image (the blocks
    /// holding them are copied at the end). The file is not opened.
    fn reuse_file(
        &mut self,
        e: EntryRef,
        base: &dyn BaseImage,
        base_runs: &[DataRun],
    ) -> Result<Outcome, PayloadError> {
        let mut runs = Runs::with_capacity(base_runs.len());
        let mut data = 0u64;
        {
            let mut t = self.lock_table()?;
            for r in base_runs {
                let mut chunks = RunChunks::with_capacity(r.chunks.len());
                for &c in &r.chunks {
                    let i = claim_base_chunk(&mut t, base, c, &self.shared.next_block)?;
                    data += t.records[i as usize].len as u64;
                    chunks.push(i);
                }
                runs.push(DataRun {
                    offset: r.offset,
                    chunks,
                });
            }
        }
        let size = file_size(&e);
        // What reading it would have given: its data, holes left out (`ScanResult::to_read`).
        self.shared.progress.advance(data);
        self.shared.files_reused.fetch_add(1, Ordering::Relaxed);
        Ok(Outcome::Read {
            runs,
            meta: None,
            size,
            data,
        })
    }

    fn lock_table(&self) -> Result<std::sync::MutexGuard<'_, ChunkTable>, PayloadError> {
        self.shared
            .table
            .lock()
            .map_err(|_| PayloadError::format("chunk index poisoned"))
    }

    /// Reads the file's data ranges and turns them into chunk runs.
    fn read_runs(&mut self, sf: &SourceFile, size: u64) -> Result<(Runs, u64), ReadFail> {
        let mut runs = Runs::new();
        let mut data = 0u64;
        for (start, end) in sf.data_ranges(size).map_err(ReadFail::Io)? {
            let mut run: Option<DataRun> = None;
            let mut pos = start; // file offset of window[0]
            let mut filled = 0usize;
            loop {
                let want = ((end - pos) as usize).min(self.window.len());
                let mut at_end = pos + filled as u64 >= end;
                if filled < want {
                    let n = sf
                        .read_at(&mut self.window[filled..want], pos + filled as u64)
                        .map_err(ReadFail::Io)?;
                    self.shared.progress.advance(n as u64);
                    data += n as u64;
                    filled += n;
                    at_end = n == 0 || pos + filled as u64 >= end;
                }
                let mut used = 0;
                while let Some(n) = self
                    .shared
                    .chunker
                    .next_cut(&self.window[used..filled], at_end)
                {
                    let offset = pos + used as u64;
                    let (a, b) = (used, used + n);
                    used = b;
                    if is_zero(&self.window[a..b]) {
                        runs.extend(run.take());
                        continue;
                    }
                    let idx = self.add_chunk(a, b).map_err(ReadFail::Payload)?;
                    run.get_or_insert_with(|| DataRun {
                        offset,
                        chunks: RunChunks::new(),
                    })
                    .chunks
                    .push(idx);
                }
                if at_end {
                    break;
                }
                self.window.copy_within(used..filled, 0);
                filled -= used;
                pos += used as u64;
            }
            runs.extend(run.take());
        }
        // Most files are one run of a few chunks: no spare capacity kept per file (issue #23).
        runs.shrink_to_fit();
        for r in &mut runs {
            r.chunks.shrink_to_fit();
        }
        Ok((runs, data))
    }

    /// Stores `window[a..b]` unless an identical chunk already is; returns its index.
    fn add_chunk(&mut self, a: usize, b: usize) -> Result<ChunkIndex, PayloadError> {
        let hash = ChunkHash::of(&self.window[a..b]);
        let id = hash.id();
        {
            let mut t = self
                .shared
                .table
                .lock()
                .map_err(|_| PayloadError::format("chunk index poisoned"))?;
            if let Some(i) = t.by_id.get(&t.records, &id) {
                t.same_chunk(i, &hash)?;
                return Ok(i);
            }
            if let Some(base) = self.shared.base
                && let Some(c) = base.find_chunk(&hash)
            {
                return claim_base_chunk(&mut t, base, c, &self.shared.next_block);
            }
            t.chunks_new += 1;
            let block = *self
                .block_index
                .get_or_insert_with(|| self.shared.next_block.fetch_add(1, Ordering::SeqCst));
            let i = t.records.len() as ChunkIndex;
            let rec = ChunkRecord {
                id,
                block,
                offset: self.block.len() as u32,
                len: (b - a) as u32,
            };
            self.block_chunks.push(NewChunk {
                record: rec.clone(),
                hash,
            });
            t.records.push(rec);
            t.rest.push(Some(hash.rest())).map_err(spill_failed)?;
            let table = &mut *t;
            table.by_id.insert(&table.records, i);
            self.block.extend_from_slice(&self.window[a..b]);
            if self.block.len() < BLOCK_TARGET {
                return Ok(i);
            }
            drop(t);
            self.flush()?;
            Ok(i)
        }
    }

    /// Compresses the current block and hands it to the pack thread.
    fn flush(&mut self) -> Result<(), PayloadError> {
        let Some(index) = self.block_index.take() else {
            return Ok(());
        };
        let (codec, stored) = self.compressor.compress(&self.block)?;
        let header = BlockHeader {
            codec,
            raw_len: self.block.len() as u32,
            stored_len: stored.len() as u32,
        };
        let chunks = std::mem::take(&mut self.block_chunks);
        let out = Outgoing::block(index, header, stored, chunks);
        self.block.clear();
        self.tx
            .send(out)
            .map_err(|_| PayloadError::format("the pack writer stopped"))
    }
}

/// This image's index of the base's chunk `c`. The first chunk claimed from a base block
/// brings all of that block's chunks into the index (later hits on them are then a lookup).
/// A refresh gives the block a new number and copies it once every worker is done
/// (`carry::send_carried`); a store's block keeps the base's number in the chunk records
/// until `reference::place` lists its pack, and takes no number from `next_block` (the pack
/// thread expects every such number to be written).
fn claim_base_chunk(
    t: &mut ChunkTable,
    base: &dyn BaseImage,
    c: ChunkIndex,
    next_block: &AtomicU32,
) -> Result<ChunkIndex, PayloadError> {
    let missing = || PayloadError::format(format!("internal: base chunk {c} does not exist"));
    let rec = base.chunk(c).ok_or_else(missing)?;
    if let Some(i) = t.by_id.get(&t.records, &rec.id) {
        if let Some(hash) = base.chunk_hash(c) {
            t.same_chunk(i, &hash)?;
        }
        return Ok(i);
    }
    let from = rec.block;
    let referenced = base.references().is_some();
    let twice = || PayloadError::format(format!("internal: base block {from} claimed twice"));
    let to = if referenced {
        if !t.referenced.claim_block(from) {
            return Err(twice());
        }
        from
    } else {
        let to = next_block.fetch_add(1, Ordering::SeqCst);
        if t.base_blocks.insert(from, to).is_some() {
            return Err(twice());
        }
        t.copied.push(to);
        to
    };
    let first = t.records.len() as ChunkIndex;
    for &other in base.chunks_in_block(from) {
        let r = base.chunk(other).ok_or_else(missing)?;
        if t.by_id.get(&t.records, &r.id).is_some() {
            continue;
        }
        let i = t.records.len() as ChunkIndex;
        t.records.push(ChunkRecord {
            id: r.id,
            block: to,
            offset: r.offset,
            len: r.len,
        });
        t.rest
            .push(base.chunk_hash(other).map(|h| h.rest()))
            .map_err(spill_failed)?;
        t.by_id.insert(&t.records, i);
    }
    if referenced {
        t.referenced
            .add_chunks(first..t.records.len() as ChunkIndex);
    }
    let i = t.by_id.get(&t.records, &rec.id).ok_or_else(missing)?;
    Ok(i)
}

impl ChunkTable {
    /// A table with room for the chunks `entries` will likely give: one a file, and one more
    /// for every average chunk's length of the `to_read` bytes. The id index is sized once, up
    /// front: growing it holds the old and the new one at once, which was capture's peak at
    /// 2,000,000 small files (issue #23, memory an entry).
    /// The rests of the chunks' hashes go to a temporary file in `scratch`, when given.
    fn sized_for(entries: &[EntryRow], to_read: u64, scratch: Option<&std::path::Path>) -> Self {
        let files = entries.iter().filter(|e| is_file(e)).count();
        let more = usize::try_from(to_read / PARAMS.avg as u64).unwrap_or(usize::MAX);
        let n = files.saturating_add(more);
        let mut t = ChunkTable {
            by_id: IdIndex::with_capacity(n),
            rest: Rests::in_dir(scratch),
            ..Default::default()
        };
        t.records.reserve(n);
        t
    }

    /// Whether record `i`, found by the id of `hash`, is that chunk: refused when both whole
    /// hashes are known and differ (a deliberate collision of the 16-byte ids, FORMAT.md §1;
    /// a manifest cannot hold both chunks).
    fn same_chunk(&self, i: ChunkIndex, hash: &ChunkHash) -> Result<(), PayloadError> {
        match self.rest.get(i as usize).map_err(spill_failed)? {
            Some(rest) if rest != hash.rest() => Err(PayloadError::format(format!(
                "two different chunks share the id {:?} (the first 16 bytes of their BLAKE3, \
                 FORMAT.md §1): a deliberate hash collision? Nothing was merged; the capture \
                 stops",
                hash.id()
            ))),
            _ => Ok(()),
        }
    }
}

/// An error of the chunk hashes' temporary file (`Rests`).
fn spill_failed(e: std::io::Error) -> PayloadError {
    PayloadError::format(format!("the chunk table's temporary file failed: {e}"))
}

fn unreachable_outcome() -> Result<Outcome, PayloadError> {
    Err(PayloadError::format(
        "internal: read loop ended without a result",
    ))
}

enum ReadFail {
    Io(std::io::Error),
    Payload(PayloadError),
}

/// Counts the data read and drops the files that vanished or were skipped (with the hard
/// links that pointed at them); the files read have their runs already.
fn apply_outcomes(
    root: &std::path::Path,
    entries: &mut Entries,
    (outcomes, data): Outcomes,
    tables: &mut PayloadTables,
) -> Result<(), PayloadError> {
    tables.data_bytes += data;
    let mut drop_entry = vec![false; entries.len()];
    for (i, outcome) in outcomes {
        let source = || crate::scan::source_path(root, entries.path(i));
        match outcome {
            Outcome::Read {
                runs,
                meta,
                size,
                data,
            } => {
                tables.data_bytes += data;
                let e = &mut entries[i];
                if let Some(meta) = meta {
                    e.set_meta(*meta);
                }
                e.set_kind(EntryKind::File { size, runs });
            }
            Outcome::Vanished => {
                tables.warnings.push(format!(
                    "{} vanished during the capture",
                    source().display()
                ));
                drop_entry[i] = true;
            }
            Outcome::Skipped(reason) => {
                tables.skipped.push(Skipped {
                    path: source(),
                    reason,
                });
                drop_entry[i] = true;
            }
        }
    }
    // Hard links to a dropped file go with it.
    for (i, e) in entries.iter().enumerate() {
        if let EntryKind::HardLink { target } = e.kind()
            && drop_entry.get(target as usize).copied().unwrap_or(true)
        {
            drop_entry[i] = true;
        }
    }
    if !drop_entry.contains(&true) {
        return Ok(());
    }
    let mut new_index = vec![u32::MAX; entries.len()];
    let mut n = 0u32;
    for (i, d) in drop_entry.iter().enumerate() {
        if !d {
            new_index[i] = n;
            n += 1;
        }
    }
    let keep: Vec<bool> = drop_entry.iter().map(|d| !d).collect();
    entries.retain(&keep);
    for mut e in entries.iter_mut() {
        if let EntryKind::HardLink { target } = e.kind() {
            e.set_kind(EntryKind::HardLink {
                target: new_index[target as usize],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FORMAT.md §1: a chunk found by its 16-byte id is the same chunk only if the rest of its
    /// whole hash agrees, where the table knows it; a refresh base's chunks (ids only) match
    /// by the id.
    #[test]
    fn two_chunks_with_one_id_are_refused_not_merged() {
        let hash = |rest: u8| {
            let mut h = [7u8; 32];
            h[16..].fill(rest);
            ChunkHash(h)
        };
        let mut t = ChunkTable::default();
        for rest in [Some(hash(1).rest()), None] {
            t.records.push(ChunkRecord {
                id: hash(1).id(),
                block: 0,
                offset: 0,
                len: 1,
            });
            t.rest.push(rest).unwrap();
        }
        assert!(t.same_chunk(0, &hash(1)).is_ok());
        let e = t.same_chunk(0, &hash(2)).unwrap_err().to_string();
        assert!(e.contains("two different chunks share the id"), "{e}");
        assert!(t.same_chunk(1, &hash(2)).is_ok(), "no whole hash known");
    }

    /// issue #24: a sparse file's holes are not in the progress total.
    #[test]
    fn the_progress_total_leaves_out_holes() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("vm.img")).unwrap();
        // 1 GiB apparent, 1 MiB of data in the middle.
        f.set_len(1 << 30).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &vec![7u8; 1 << 20], 512 << 20).unwrap();
        f.sync_all().unwrap();
        std::fs::write(dir.path().join("plain"), vec![1u8; 10_000]).unwrap();
        let scanned = crate::scan::scan(dir.path(), &crate::scan::ScanOptions::default()).unwrap();
        let total = scanned.to_read;
        let apparent: u64 = scanned.entries.rows().iter().map(file_size).sum();
        assert_eq!(apparent, (1 << 30) + 10_000);
        // the data and the small file, in whole blocks, never the 1023 MiB hole
        assert!(
            ((1 << 20) + 10_000..=(2 << 20)).contains(&total),
            "total {total} of {apparent} apparent"
        );
    }
}
