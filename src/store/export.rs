//! The store's side of `osimage export` (docs/STORE.md §8, byte-copy mode): a version opened
//! and checked as every reader opens it, its manifest frame read as the version object holds
//! it (so the output's manifest is the same bytes), and its packs copied byte for byte into a
//! `PackSink` in manifest order, each one hashed on the way: every block against its recorded
//! hash, the pack against its record (BLAKE3 of its header and its block hashes, FORMAT.md
//! §3). The container around them (an ISO with its rescue side, or a `.oimg`) is the
//! capture's writer, in `capture::export`.

use std::path::Path;

use crate::format::PayloadError;
use crate::format::manifest::{Manifest, PackRecord};
use crate::format::records::{BLOCK_HEADER_LEN, RECORD_LEN as PACK_HEADER_LEN};
use crate::format::sink::PackSink;
use crate::format::source::RangeRead;
use crate::progress::Progress;
use crate::store::objects::version::{self, PREFIX_LEN};
use crate::store::read::{OpenVersion, open_version};
use crate::store::{Store, names};

/// How much of the packs is read and written at a time.
const STEP: u64 = 4 << 20;

/// A version to export: opened, with its manifest frame as stored.
pub struct ExportSource {
    pub open: OpenVersion,
    /// The manifest frame, exactly the bytes of the version object (checked against the
    /// head's `frame_hash`).
    pub frame: Vec<u8>,
    /// How messages name a pack: its object's address.
    pack_names: Vec<String>,
}

/// What copying the packs did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopiedPacks {
    pub packs: u64,
    pub bytes: u64,
    /// Blocks of those packs that this version does not use (no chunk record: they are
    /// listed only to tile a pack shared with other versions), and their stored bytes.
    pub unused_blocks: u64,
    pub unused_bytes: u64,
}

impl ExportSource {
    /// Opens `version` of `series` in `store` and reads its manifest frame.
    pub fn open(store: &Store, series: &str, version: &str) -> Result<Self, PayloadError> {
        let open = open_version(store, series, version)?;
        let frame = read_frame(&open)?;
        let pack_names = open
            .reader
            .manifest()
            .packs
            .iter()
            .map(|p| store.shown(&names::pack_key(&p.hash)))
            .collect();
        Ok(ExportSource {
            open,
            frame,
            pack_names,
        })
    }

    /// The version's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.open.reader.manifest()
    }

    /// Copies every pack into `sink`, in manifest order, checking each block and each pack
    /// on the way; the first difference stops the copy naming the pack object.
    pub fn copy_packs(
        &self,
        sink: &mut dyn PackSink,
        progress: &dyn Progress,
    ) -> Result<CopiedPacks, PayloadError> {
        let m = self.manifest();
        let mut blocks: Vec<Vec<BlockSpan>> = vec![Vec::new(); m.packs.len()];
        let mut used = vec![false; m.blocks.len()];
        for c in &m.chunks {
            if let Some(u) = used.get_mut(c.block as usize) {
                *u = true;
            }
        }
        let mut out = CopiedPacks::default();
        for (b, &is_used) in m.blocks.iter().zip(&used) {
            // A block as stored is its header and its body (FORMAT.md §3): what tiles the pack
            // and what its hash covers.
            let len = BLOCK_HEADER_LEN as u64 + u64::from(b.stored_len);
            if let Some(list) = blocks.get_mut(b.pack as usize) {
                list.push(BlockSpan {
                    offset: b.offset,
                    len,
                    hash: b.hash,
                });
            }
            if !is_used {
                out.unused_blocks += 1;
                out.unused_bytes += len;
            }
        }
        let total: u64 = m.packs.iter().map(|p| p.len).sum();
        let packs: &dyn RangeRead = &*self.open.packs;
        let mut steps = Vec::new();
        let mut at = 0u64;
        while at < total {
            let n = (total - at).min(STEP);
            steps.push((at, n));
            at += n;
        }
        packs.plan(steps);
        progress.start("copying the packs", total);
        let mut at = 0u64;
        for (i, (rec, list)) in m.packs.iter().zip(blocks.iter_mut()).enumerate() {
            list.sort_by_key(|b| b.offset);
            let copy = PackCopy {
                packs,
                at,
                rec,
                blocks: list,
                name: &self.pack_names[i],
            };
            sink.begin_pack(i as u32)?;
            copy.run(sink, progress)?;
            sink.end_pack(rec)?;
            at += rec.len;
            out.packs += 1;
            out.bytes += rec.len;
        }
        progress.finish();
        Ok(out)
    }
}

/// Where a block lies in its pack and what it hashes to.
#[derive(Clone, Copy, Debug)]
struct BlockSpan {
    offset: u64,
    len: u64,
    hash: [u8; 32],
}

/// One pack being copied: its bytes at `at` in `packs`, its record and its blocks in offset
/// order.
struct PackCopy<'a> {
    packs: &'a dyn RangeRead,
    at: u64,
    rec: &'a PackRecord,
    blocks: &'a [BlockSpan],
    name: &'a str,
}

impl PackCopy<'_> {
    fn fail(&self, msg: String) -> PayloadError {
        PayloadError::Image {
            path: self.name.into(),
            msg,
        }
    }

    /// The blocks must tile the pack after its header (FORMAT.md §3): checked before a byte
    /// is read, so a manifest that says otherwise cannot make the hashes below skip bytes.
    fn check_tiling(&self) -> Result<(), PayloadError> {
        let mut end = PACK_HEADER_LEN as u64;
        for b in self.blocks {
            if b.offset != end {
                return Err(self.fail(format!(
                    "its blocks do not tile it (a block at {} where one was to start at {end})",
                    b.offset
                )));
            }
            end = b.offset.saturating_add(b.len);
        }
        if end != self.rec.len {
            return Err(self.fail(format!(
                "its blocks end at {end}, the pack at {}",
                self.rec.len
            )));
        }
        Ok(())
    }

    /// Reads the pack in steps, writes each step to `sink` and hashes it: the header and the
    /// blocks' hashes make the pack hash, each block's bytes its own.
    fn run(&self, sink: &mut dyn PackSink, progress: &dyn Progress) -> Result<(), PayloadError> {
        self.check_tiling()?;
        let mut pack_hash = blake3::Hasher::new();
        let mut block_hash = blake3::Hasher::new();
        let mut next = 0usize;
        let mut buf = vec![0u8; STEP.min(self.rec.len) as usize];
        let mut pos = 0u64;
        while pos < self.rec.len {
            let n = (self.rec.len - pos).min(STEP) as usize;
            let bytes = &mut buf[..n];
            self.packs
                .read_exact_at(bytes, self.at + pos)
                .map_err(|e| self.fail(format!("cannot read it: {e}")))?;
            let mut i = 0usize;
            while i < n {
                let at = pos + i as u64;
                if at < PACK_HEADER_LEN as u64 {
                    let k = ((PACK_HEADER_LEN as u64 - at) as usize).min(n - i);
                    pack_hash.update(&bytes[i..i + k]);
                    i += k;
                    continue;
                }
                let Some(b) = self.blocks.get(next) else {
                    return Err(self.fail("internal: bytes past its last block".into()));
                };
                let k = ((b.offset + b.len - at) as usize).min(n - i);
                block_hash.update(&bytes[i..i + k]);
                i += k;
                if at + k as u64 == b.offset + b.len {
                    let got = *block_hash.finalize().as_bytes();
                    if got != b.hash {
                        return Err(self.fail(format!(
                            "the block at {} does not match its hash (damaged)",
                            b.offset
                        )));
                    }
                    pack_hash.update(&got);
                    block_hash = blake3::Hasher::new();
                    next += 1;
                }
            }
            sink.write_all(bytes)?;
            progress.advance(n as u64);
            pos += n as u64;
        }
        if *pack_hash.finalize().as_bytes() != self.rec.hash {
            return Err(self.fail(
                "its header and block hashes do not make its recorded hash (damaged)".into(),
            ));
        }
        Ok(())
    }
}

/// The manifest frame as the version object stores it, checked against the head.
fn read_frame(open: &OpenVersion) -> Result<Vec<u8>, PayloadError> {
    let name: &Path = &open.name;
    let io = |e| PayloadError::io("cannot read", name, e);
    let object: &dyn RangeRead = &*open.version_object;
    let mut first = [0u8; PREFIX_LEN];
    object.read_exact_at(&mut first, 0).map_err(io)?;
    let prefix =
        version::decode_version_prefix(&name.display().to_string(), &first).map_err(|e| {
            PayloadError::Image {
                path: name.to_path_buf(),
                msg: e.to_string(),
            }
        })?;
    if prefix.frame_len > version::MAX_FRAME {
        return Err(PayloadError::Image {
            path: name.to_path_buf(),
            msg: format!("a manifest frame of {} bytes", prefix.frame_len),
        });
    }
    let mut frame = vec![0u8; prefix.frame_len as usize];
    object
        .read_exact_at(&mut frame, PREFIX_LEN as u64 + prefix.head_len)
        .map_err(io)?;
    if *blake3::hash(&frame).as_bytes() != open.head.frame_hash {
        return Err(PayloadError::Image {
            path: name.to_path_buf(),
            msg: "its manifest frame changed since it was read (damaged or replaced)".into(),
        });
    }
    Ok(frame)
}
