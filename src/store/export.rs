//! The store's side of `osimage export` (docs/STORE.md §8, byte-copy mode): a version opened
//! and checked as every reader opens it, its manifest frame read as the version object holds
//! it (so the output's manifest is the same bytes), and its packs copied byte for byte into a
//! `PackSink` in manifest order, each one checked on the way by `pack_check` (the checker
//! `store check --read-data` uses): every block against its recorded hash, the pack against
//! its record (BLAKE3 of its header and its block hashes, FORMAT.md §3). The container around
//! them (an ISO with its rescue side, or a `.oimg`) is the capture's writer, in
//! `capture::export`.
//!
//! An encrypted store's version (§6.1) is handed on in the clear: each pack read as its
//! sealed segments and opened with its own pack key, the manifest frame opened with the
//! version's key. The writer seals both again under the output's own image key (or, with
//! `--decrypt`, writes them plain): nothing of the store's keys reaches the output.

use std::path::Path;

use crate::format::PayloadError;
use crate::format::manifest::Manifest;
use crate::format::records::BLOCK_HEADER_LEN;
use crate::format::sink::PackSink;
use crate::format::source::RangeRead;
use crate::progress::Progress;
use crate::store::Store;
use crate::store::check_data::PlainParts;
use crate::store::objects::version::{self, PREFIX_LEN};
use crate::store::pack_check::{PackCheck, block_spans, plan_whole};
use crate::store::read::{OpenVersion, open_version, spans_of};

/// A version to export: opened, with its manifest frame as stored.
pub struct ExportSource {
    pub open: OpenVersion,
    /// The manifest frame in the clear: exactly the bytes of the version object (checked
    /// against the head's `frame_hash`), opened with the version's key in an encrypted store.
    pub frame: Vec<u8>,
    /// The packs' plaintext end to end, by the manifest's offsets (an encrypted store's
    /// opened segment by segment, each pack with its own key).
    packs: PlainParts,
    /// How messages name a pack: its object's address.
    pack_names: Vec<String>,
    /// The store whose packs they must be (each header is checked again as it is copied).
    store_id: [u8; 16],
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
        let records = &open.reader.manifest().packs;
        let pack_names = records
            .iter()
            .map(|p| store.shown(&store.pack_rel(&p.hash)))
            .collect();
        let keys = store.keys.as_deref();
        let spans = spans_of(open.packs.clone(), records, &|_, id| {
            keys.map(|k| k.pack(id))
        });
        let packs = PlainParts::new(spans, format!("{} (packs)", open.name.display()));
        Ok(ExportSource {
            open,
            frame,
            packs,
            pack_names,
            store_id: store.id,
        })
    }

    /// The version's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.open.reader.manifest()
    }

    /// The packs' plaintext, end to end in manifest order.
    pub(super) fn plain_packs(&self) -> &dyn RangeRead {
        &self.packs
    }

    /// An error about pack `pack` of the manifest, naming its object.
    pub(super) fn pack_error(&self, pack: u32, msg: String) -> PayloadError {
        let name = self
            .pack_names
            .get(pack as usize)
            .cloned()
            .unwrap_or_else(|| format!("pack {pack}"));
        PayloadError::Image {
            path: name.into(),
            msg,
        }
    }

    /// Copies every pack into `sink`, in manifest order, checking each block and each pack
    /// on the way; the first difference stops the copy naming the pack object.
    pub fn copy_packs(
        &self,
        sink: &mut dyn PackSink,
        progress: &dyn Progress,
    ) -> Result<CopiedPacks, PayloadError> {
        let m = self.manifest();
        let used = used_blocks(m);
        let mut out = CopiedPacks::default();
        for (b, &is_used) in m.blocks.iter().zip(&used) {
            if !is_used {
                out.unused_blocks += 1;
                out.unused_bytes += BLOCK_HEADER_LEN as u64 + u64::from(b.stored_len);
            }
        }
        let blocks = block_spans(m);
        let total: u64 = m.packs.iter().map(|p| p.len).sum();
        let packs: &dyn RangeRead = &self.packs;
        plan_whole(packs, total);
        progress.start("copying the packs", total);
        let mut at = 0u64;
        for (i, (rec, list)) in m.packs.iter().zip(&blocks).enumerate() {
            let check = PackCheck {
                source: packs,
                at,
                len: rec.len,
                hash: rec.hash,
                blocks: list,
                store_id: self.store_id,
                name: &self.pack_names[i],
            };
            sink.begin_pack(i as u32)?;
            check.run(&mut |bytes| sink.write_all(bytes), progress)?;
            sink.end_pack(rec)?;
            at += rec.len;
            out.packs += 1;
            out.bytes += rec.len;
        }
        progress.finish();
        Ok(out)
    }
}

/// Which blocks of `m` the version uses (a chunk record names them); a block a shared store
/// pack holds for other versions does not.
pub(super) fn used_blocks(m: &Manifest) -> Vec<bool> {
    let mut used = vec![false; m.blocks.len()];
    for c in &m.chunks {
        if let Some(u) = used.get_mut(c.block as usize) {
            *u = true;
        }
    }
    used
}

/// The manifest frame as the version object stores it, checked against the head, and opened
/// with the version's key in an encrypted store.
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
    match &open.frame_cipher {
        Some(cipher) => crate::envelope::open_manifest_with(cipher, &frame).map_err(|e| e.at(name)),
        None => Ok(frame),
    }
}
