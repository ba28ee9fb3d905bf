//! Where extract gets chunk bytes from: the payload reader, or an in-memory image in tests.
//!
//! Extract only needs a manifest and "the uncompressed bytes of chunk N", so it codes against
//! this small trait instead of the reader itself; `MemorySource` builds an image by hand. The
//! reader's implementation lives here, beside the trait, so `payload` need not know `extract`.

use crate::format::PayloadError;
use crate::format::manifest::{
    ChunkId, ChunkIndex, ChunkRecord, DataRun, Entries, Entry, EntryIndex, EntryKind, Manifest,
    Meta,
};
use crate::payload::reader::{BlockCache, PayloadReader};

/// A manifest plus random access to its chunks. Shared by the extract threads, each of which
/// keeps its own `Cache` (the reader's decompressed-block cache).
pub trait ChunkSource: Sync {
    /// Per-thread state reused between reads.
    type Cache;
    /// What a failed read reports; its message should name the image and the problem.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The entries of the tree to extract, in manifest order.
    fn entries(&self) -> &Entries;
    /// The chunk records the entries' data runs refer to (the image's whole table: a part of
    /// a tree refers to the image's chunks, and need not copy the table).
    fn chunks(&self) -> &[ChunkRecord];
    /// A fresh cache for one thread.
    fn new_cache(&self) -> Self::Cache;
    /// The uncompressed, verified bytes of chunk `idx`.
    fn read_chunk<'a>(
        &'a self,
        idx: ChunkIndex,
        cache: &'a mut Self::Cache,
    ) -> Result<&'a [u8], Self::Error>;
    /// Says which chunks will be read, in about the order they will be (an image over
    /// HTTP fetches their blocks ahead: docs/STORE.md §7.2.1). Nothing by default.
    fn plan(&self, _chunks: &mut dyn Iterator<Item = ChunkIndex>) {}
}

/// Extract reads chunks straight from an open image.
impl ChunkSource for PayloadReader {
    type Cache = BlockCache;
    type Error = PayloadError;

    fn entries(&self) -> &Entries {
        &PayloadReader::manifest(self).entries
    }
    fn chunks(&self) -> &[ChunkRecord] {
        &PayloadReader::manifest(self).chunks
    }
    fn new_cache(&self) -> BlockCache {
        BlockCache::new()
    }
    fn read_chunk<'a>(
        &'a self,
        idx: ChunkIndex,
        cache: &'a mut BlockCache,
    ) -> Result<&'a [u8], PayloadError> {
        PayloadReader::read_chunk(self, idx, cache)
    }
    fn plan(&self, chunks: &mut dyn Iterator<Item = ChunkIndex>) {
        self.plan_chunks(chunks)
    }
}

/// An image held in memory: a manifest and the bytes of each chunk. For tests and for callers
/// that build small trees by hand.
#[derive(Debug, Default)]
pub struct MemorySource {
    manifest: Manifest,
    chunks: Vec<Vec<u8>>,
}

/// A chunk index with no bytes behind it.
#[derive(Debug, thiserror::Error)]
#[error("in-memory image: chunk {0} does not exist")]
pub struct NoSuchChunk(pub ChunkIndex);

impl MemorySource {
    /// An empty image (no entries, no chunks).
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `data` as a new chunk (no dedup) and returns its index.
    pub fn add_chunk(&mut self, data: &[u8]) -> ChunkIndex {
        let idx = self.chunks.len() as ChunkIndex;
        self.manifest.chunks.push(ChunkRecord {
            id: ChunkId::of(data),
            block: 0,
            offset: 0,
            len: data.len() as u32,
        });
        self.chunks.push(data.to_vec());
        idx
    }

    /// Appends an entry and returns its index.
    pub fn add_entry(&mut self, entry: Entry) -> EntryIndex {
        self.manifest.entries.push(entry);
        (self.manifest.entries.len() - 1) as EntryIndex
    }

    /// Appends an entry with no xattrs and returns its index.
    pub fn add(&mut self, path: &[u8], kind: EntryKind, meta: Meta) -> EntryIndex {
        self.add_entry(Entry {
            path: path.into(),
            kind,
            meta,
            xattrs: Default::default(),
        })
    }

    /// Appends a regular file holding `data` (one run of chunks of at most 64 KiB).
    pub fn add_file(&mut self, path: &[u8], data: &[u8], meta: Meta) -> EntryIndex {
        let chunks = data.chunks(64 << 10).map(|c| self.add_chunk(c)).collect();
        let kind = EntryKind::File {
            size: data.len() as u64,
            runs: [DataRun { offset: 0, chunks }].into_iter().collect(),
        };
        self.add(path, kind, meta)
    }

    /// The manifest built so far.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest, to adjust by hand (tests of hostile manifests).
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }
}

impl ChunkSource for MemorySource {
    type Cache = ();
    type Error = NoSuchChunk;

    fn entries(&self) -> &Entries {
        &self.manifest.entries
    }

    fn chunks(&self) -> &[ChunkRecord] {
        &self.manifest.chunks
    }

    fn new_cache(&self) {}

    fn read_chunk<'a>(
        &'a self,
        idx: ChunkIndex,
        _cache: &'a mut (),
    ) -> Result<&'a [u8], NoSuchChunk> {
        self.chunks
            .get(idx as usize)
            .map(Vec::as_slice)
            .ok_or(NoSuchChunk(idx))
    }
}
