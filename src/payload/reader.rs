//! Opening an image and reading verified chunks from it, wherever it lives (`image`).
//!
//! `open` checks the whole structure before returning (FORMAT.md §7): a truncated, foreign or
//! damaged image is refused before a caller writes anything. Block bytes are checked against
//! their block's hash (format version 2) and chunk bytes against their BLAKE3 id on every read.

use std::path::{Path, PathBuf};

use super::codec::BlockDecompressor;
use crate::envelope::Unlock;
use crate::format::PayloadError;
use crate::format::manifest::{BlockIndex, ChunkId, ChunkIndex, Manifest};
use crate::format::records::{BLOCK_HEADER_LEN, BlockHeader};
use crate::format::store_ref;
use crate::format::validate::validate;
use crate::image::{self, ContainerKind, Span};

/// An open image: its manifest and where its packs are.
pub struct PayloadReader {
    path: PathBuf,
    kind: ContainerKind,
    encrypted: bool,
    manifest: Manifest,
    /// The manifest's format version (1 or 2): version 1 has no block hashes.
    version: u16,
    packs: Vec<Span>,
    /// The whole image's length in bytes (the file, or the HTTP object).
    len: u64,
}

/// A thread's cache of decompressed blocks (a few, most recent first).
pub struct BlockCache {
    slots: Vec<(BlockIndex, Vec<u8>)>,
    stored: Vec<u8>,
    dec: Option<BlockDecompressor>,
}

const CACHE_SLOTS: usize = 4;

/// Why a block could not be read.
enum Bad {
    /// Its bytes arrived but are not the block's: worth one more fetch over the network.
    Damaged(String),
    /// Reading failed (the source said why).
    Io(String),
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockCache {
    pub fn new() -> Self {
        BlockCache {
            slots: Vec::with_capacity(CACHE_SLOTS),
            stored: Vec::new(),
            dec: None,
        }
    }
}

impl PayloadReader {
    /// Opens and checks the image at `path` (a `.oimg` or an ISO made by osimage); an
    /// encrypted one with what `unlock` holds or asks for.
    pub fn open(path: &Path, unlock: &Unlock) -> Result<PayloadReader, PayloadError> {
        Self::from_container(path, image::open(path, unlock)?)
    }

    /// Opens the image already open as `file` (`path` names it in messages): every byte read,
    /// now and later, comes from that open file (`restore --require-signature` checks the
    /// signature over the same file).
    pub fn open_file(
        path: &Path,
        file: std::fs::File,
        unlock: &Unlock,
    ) -> Result<PayloadReader, PayloadError> {
        Self::from_container(path, image::open_file(path, file, unlock)?)
    }

    /// Opens the image whose bytes `src` reads (an HTTP object: docs/STORE.md §7); `name`
    /// names it in messages, a URL without its query. The same checks as `open`.
    pub fn open_source(
        name: &Path,
        src: std::sync::Arc<dyn crate::format::source::RangeRead>,
        unlock: &Unlock,
    ) -> Result<PayloadReader, PayloadError> {
        Self::from_container(name, image::open_source(name, src, unlock)?)
    }

    /// Opens and checks the image `c` holds (`path` names it in messages): how a store's
    /// version is opened (`store::read`), its manifest and packs in objects of their own.
    pub fn from_container(path: &Path, c: image::Container) -> Result<PayloadReader, PayloadError> {
        // Streamed from a local file, not held (issue #23, memory an entry).
        let (manifest, version) = c.read_manifest().map_err(|e| e.at(path))?;
        validate(&manifest).map_err(|e| e.at(path))?;
        // FORMAT.md §14: store packs came with version 2's pack hash; a version-1 manifest
        // naming a store is no image osimage made.
        if version < 2 && manifest.extension(store_ref::NAME).is_some() {
            return Err(PayloadError::Image {
                path: path.to_path_buf(),
                msg: "a manifest of format version 1 names a store (damaged or forged)".into(),
            });
        }
        let packs = c.packs(&manifest)?;
        Ok(PayloadReader {
            path: path.to_path_buf(),
            kind: c.kind,
            encrypted: c.encrypted(),
            manifest,
            version,
            packs,
            len: c.object_len(),
        })
    }

    /// The image's format version (docs/FORMAT.md §8).
    pub fn format_version(&self) -> u16 {
        self.version
    }

    /// Whether the manifest records each block's hash (format version 2 on).
    pub fn has_block_hashes(&self) -> bool {
        self.version >= 2
    }

    /// Whether the image is encrypted (FORMAT.md §11).
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The whole image's length in bytes: the file's, or the HTTP object's.
    pub fn image_len(&self) -> u64 {
        self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn container(&self) -> ContainerKind {
        self.kind
    }

    /// Each pack's location.
    pub fn pack_spans(&self) -> &[Span] {
        &self.packs
    }

    fn damaged(&self, msg: String) -> PayloadError {
        PayloadError::Image {
            path: self.path.clone(),
            msg,
        }
    }

    /// Says which blocks will be read, in the order they will be (docs/STORE.md §7.2.1): an
    /// image over HTTP fetches them ahead, many per request; a local file ignores it. Each
    /// block is one range (its header and stored bytes, as `read_stored` reads them); a
    /// block named again right after itself is planned once (the thread's `BlockCache` has
    /// it). Replaces any earlier plan of the same object.
    pub fn plan_blocks(&self, blocks: impl IntoIterator<Item = BlockIndex>) {
        // One plan per object the packs lie in (one for a `.oimg` or an ISO).
        let mut plans: Vec<(
            &std::sync::Arc<dyn crate::format::source::RangeRead>,
            Vec<_>,
        )> = Vec::new();
        let mut last = None;
        for b in blocks {
            if last == Some(b) {
                continue;
            }
            last = Some(b);
            let Some(rec) = self.manifest.blocks.get(b as usize) else {
                continue;
            };
            let Some(span) = self.packs.get(rec.pack as usize) else {
                continue;
            };
            let i = match plans
                .iter()
                .position(|(src, _)| std::sync::Arc::ptr_eq(src, span.source()))
            {
                Some(i) => i,
                None => {
                    plans.push((span.source(), Vec::new()));
                    plans.len() - 1
                }
            };
            let len = BLOCK_HEADER_LEN as u64 + u64::from(rec.stored_len);
            span.plan_read(rec.offset, len, &mut plans[i].1);
        }
        for (src, ranges) in plans {
            src.plan(ranges);
        }
    }

    /// Blocks in the order chunks `chunks` name them, for `plan_blocks`.
    pub fn plan_chunks(&self, chunks: &mut dyn Iterator<Item = ChunkIndex>) {
        let chunks_of = &self.manifest.chunks;
        self.plan_blocks(chunks.filter_map(|c| chunks_of.get(c as usize).map(|r| r.block)));
    }

    /// Decompressed body of block `b`, through `cache`.
    pub fn read_block<'c>(
        &self,
        b: BlockIndex,
        cache: &'c mut BlockCache,
    ) -> Result<&'c [u8], PayloadError> {
        if let Some(pos) = cache.slots.iter().position(|(i, _)| *i == b) {
            let slot = cache.slots.remove(pos);
            cache.slots.insert(0, slot);
            return Ok(&cache.slots[0].1);
        }
        let rec = self
            .manifest
            .blocks
            .get(b as usize)
            .ok_or_else(|| self.damaged(format!("block {b} does not exist")))?;
        self.read_stored_body(b, &mut cache.stored)?;
        let mut out = if cache.slots.len() >= CACHE_SLOTS {
            cache.slots.pop().map(|(_, v)| v).unwrap_or_default()
        } else {
            Vec::new()
        };
        let dec = match &mut cache.dec {
            Some(d) => d,
            None => cache.dec.insert(BlockDecompressor::new()?),
        };
        dec.decompress(rec.codec, &cache.stored, rec.raw_len, &mut out)
            .map_err(|e| self.damaged(format!("block {b}: {e}")))?;
        cache.slots.insert(0, (b, out));
        Ok(&cache.slots[0].1)
    }

    /// Block `b`'s stored body (compressed, without its header, which the manifest's record
    /// gives) into `stored`, checked against the manifest: the header's fields and (format
    /// version 2 on) the block's BLAKE3. What `import` carries into a store unchanged
    /// (docs/STORE.md §8).
    pub fn read_stored_body(
        &self,
        b: BlockIndex,
        stored: &mut Vec<u8>,
    ) -> Result<(), PayloadError> {
        let rec = self
            .manifest
            .blocks
            .get(b as usize)
            .ok_or_else(|| self.damaged(format!("block {b} does not exist")))?;
        let span = &self.packs[rec.pack as usize];
        match self.read_stored(b, span, stored) {
            Ok(()) => Ok(()),
            // docs/STORE.md §7.4: over the network the bytes may have been damaged in flight
            // (a proxy, a bad NIC); they are fetched once more, and failing again are damage.
            // A local file's second read would give the same bytes: it is not read again.
            Err(Bad::Damaged(_))
                if span.forget(
                    rec.offset,
                    BLOCK_HEADER_LEN as u64 + u64::from(rec.stored_len),
                ) =>
            {
                self.read_stored(b, span, stored).map_err(|e| match e {
                    Bad::Damaged(m) => self.damaged(format!(
                        "{} {m}, fetched twice from the server",
                        self.pack_label(rec.pack)
                    )),
                    Bad::Io(m) => self.damaged(m),
                })
            }
            Err(Bad::Damaged(m)) => Err(self.damaged(format!("{} {m}", self.pack_label(rec.pack)))),
            Err(Bad::Io(m)) => Err(self.damaged(m)),
        }
    }

    /// How a damage message names pack `i`: a store's pack is an object of its own, named
    /// by its id (docs/STORE.md §2.3) and, when the reader opened it from the store, by its
    /// object key too (`P/packs/ab/…`; an encrypted store's keyed name, §6.1), so the
    /// object to look at or replace is named whatever the store.
    pub fn pack_label(&self, i: u32) -> String {
        let store = crate::format::store_ref::from_manifest(&self.manifest)
            .ok()
            .flatten();
        let object = self.packs.get(i as usize).and_then(Span::object);
        match (store, self.manifest.packs.get(i as usize), object) {
            (Some(_), Some(p), Some(key)) => {
                format!("pack {} (object {key})", crate::units::hex(&p.hash))
            }
            (Some(_), Some(p), None) => format!("pack {i} ({})", crate::units::hex(&p.hash)),
            _ => format!("pack {i}"),
        }
    }

    /// Reads block `b`'s header and stored bytes into `stored` and checks them against the
    /// manifest: the header's fields and (format version 2 on) the block's BLAKE3.
    fn read_stored(&self, b: BlockIndex, span: &Span, stored: &mut Vec<u8>) -> Result<(), Bad> {
        let rec = &self.manifest.blocks[b as usize];
        // A sealed segment that fails authentication is damage too (FORMAT.md §11.3).
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::InvalidData => Bad::Damaged(format!("block {b} is damaged ({e})")),
            _ => Bad::Io(format!("block {b}: {e}")),
        };
        // Header and stored bytes in one read (one request over HTTP, not a header page
        // that holds most of the block and then the block again).
        stored.resize(BLOCK_HEADER_LEN + rec.stored_len as usize, 0);
        span.read_exact_at(stored, rec.offset).map_err(io)?;
        let mut head = [0u8; BLOCK_HEADER_LEN];
        head.copy_from_slice(&stored[..BLOCK_HEADER_LEN]);
        stored.drain(..BLOCK_HEADER_LEN);
        let h = BlockHeader::decode(&head)
            .map_err(|e| Bad::Damaged(format!("block {b} is damaged ({e})")))?;
        if h.codec != rec.codec || h.raw_len != rec.raw_len || h.stored_len != rec.stored_len {
            return Err(Bad::Damaged(format!(
                "block {b} is damaged (its header disagrees with the manifest)"
            )));
        }
        if self.has_block_hashes() {
            let mut h = blake3::Hasher::new();
            h.update(&head);
            h.update(stored);
            if h.finalize().as_bytes() != &rec.hash {
                return Err(Bad::Damaged(format!(
                    "block {b} is damaged (BLAKE3 mismatch)"
                )));
            }
        }
        Ok(())
    }

    /// Uncompressed bytes of chunk `idx`, checked against its BLAKE3 id.
    pub fn read_chunk<'c>(
        &self,
        idx: ChunkIndex,
        cache: &'c mut BlockCache,
    ) -> Result<&'c [u8], PayloadError> {
        let rec = self
            .manifest
            .chunks
            .get(idx as usize)
            .ok_or_else(|| self.damaged(format!("chunk {idx} does not exist")))?;
        let (id, off, len) = (rec.id, rec.offset as usize, rec.len as usize);
        let body = self.read_block(rec.block, cache)?;
        let data = body
            .get(off..off + len)
            .ok_or_else(|| PayloadError::Image {
                path: self.path.clone(),
                msg: format!("chunk {idx} lies outside its block"),
            })?;
        if ChunkId::of(data) != id {
            return Err(PayloadError::Image {
                path: self.path.clone(),
                msg: format!("chunk {idx} is damaged (BLAKE3 mismatch)"),
            });
        }
        Ok(data)
    }
}
