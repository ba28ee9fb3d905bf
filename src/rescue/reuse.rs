//! What a rescue environment was built from, recorded in the image (the `rescue` manifest
//! extension, version 2, docs/FORMAT.md §12), so a refresh to an ISO can take its base ISO's
//! kernel and initramfs instead of building the same ones again, or, when some inputs changed,
//! the compressed parts of the initramfs whose contents did not (docs/ISO.md, "Refreshes").
//!
//! The record holds content hashes of every input: the kernel image, the osimage binary
//! shipped as the agent, the `rescue/` assets compiled into it, and the initramfs's whole
//! uncompressed contents (each path, type, mode and byte: modules, tools, libraries, agent,
//! init), plus the hash of the compressed initramfs as stored. Equal inputs give the same
//! initramfs, so the base's can be taken; any difference, and the reason is said.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::kernel::Compression;
use super::tree::Tree;
use super::{
    FILES_LIST, INIT_SCRIPT, MODULES_LIST, MODULES_NET_LIST, RescueError, TOOLS_LIST, UDHCPC_SCRIPT,
};
use crate::format::PayloadError;
use crate::format::manifest::{Extension, Manifest};

/// The extension's name in `Manifest::extensions`.
pub const NAME: &str = "rescue";
/// The version of the record this build writes (it reads 1 too: no parts).
pub const VERSION: u16 = 2;
/// Largest encoded record accepted.
const MAX_LEN: usize = 4 << 10;

/// The inputs of a rescue environment, and where its reusable part ends. Field order is part
/// of the format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescueInputs {
    /// BLAKE3 of the kernel image file.
    pub kernel: [u8; 32],
    /// BLAKE3 of the osimage binary shipped as the agent, before stripping.
    pub agent: [u8; 32],
    /// BLAKE3 of the `rescue/` assets (modules.list, tools.list, files.list, init,
    /// modules-net.list, udhcpc.script).
    pub assets: [u8; 32],
    /// The initramfs compression: 0 none, 1 gzip, 2 zstd.
    pub compression: u8,
    /// BLAKE3 of the initramfs contents: its cpio archive, uncompressed, with every mtime 0.
    pub contents: [u8; 32],
    /// Bytes of the initrd file before the image's own id archive: the compressed
    /// contents, zero-padded to a multiple of 4. This prefix is what a refresh reuses.
    pub core_len: u64,
    /// BLAKE3 of those `core_len` bytes.
    pub core: [u8; 32],
    /// Version 2, zstd: each archive of the core (one zstd frame each, back to back from the
    /// core's start, in this order; `Tree::split`). Empty otherwise.
    pub parts: Vec<PartRecord>,
}

/// One archive of a zstd initramfs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// BLAKE3 of its newc archive, uncompressed, every mtime 0.
    pub contents: [u8; 32],
    /// Bytes of its archive, uncompressed.
    pub raw: u64,
    /// Bytes of its zstd frame in the core.
    pub len: u64,
}

/// Version 1 of the record: no parts.
#[derive(Deserialize)]
struct RescueInputsV1 {
    kernel: [u8; 32],
    agent: [u8; 32],
    assets: [u8; 32],
    compression: u8,
    contents: [u8; 32],
    core_len: u64,
    core: [u8; 32],
}

impl RescueInputs {
    /// Why a rescue environment built from `self` cannot be taken for one built from `want`;
    /// `None` when the inputs are the same.
    pub fn differs_from(&self, want: &RescueInputs) -> Option<&'static str> {
        if self.parts.len() != want.parts.len() {
            Some("its initramfs is split in another way (an older osimage made it)")
        } else if self.kernel != want.kernel {
            Some("the kernel image differs")
        } else if self.agent != want.agent {
            Some("the osimage agent binary differs")
        } else if self.assets != want.assets {
            Some("the rescue/ assets (module, tool and file lists, init) differ")
        } else if self.compression != want.compression {
            Some("the initramfs compression differs")
        } else if self.contents != want.contents {
            Some("the initramfs contents differ (kernel modules, tools or libraries)")
        } else {
            None
        }
    }

    /// Whether `core` is the initrd core this record names.
    pub fn vouches_for(&self, core: &[u8]) -> bool {
        core.len() as u64 == self.core_len && *blake3::hash(core).as_bytes() == self.core
    }

    /// Whether a build for `want` could take any compressed part of this record's initramfs
    /// (`reusable_parts` finds at least one, given the core): decided from the two records
    /// alone, so a caller fetches the core (a store's blob) only when it would be used.
    pub fn shares_parts_with(&self, want: &RescueInputs) -> bool {
        self.compression == want.compression
            && self.parts.len() == want.parts.len()
            && self
                .parts
                .iter()
                .zip(&want.parts)
                .any(|(mine, w)| mine.contents == w.contents)
    }

    /// For each of `want`'s parts, this record's compressed frame of the same contents, cut
    /// from `core` (which `vouches_for`): what a build for `want` can take instead of
    /// compressing. `None` throughout when the two are not split alike.
    pub fn reusable_parts<'c>(&self, want: &RescueInputs, core: &'c [u8]) -> Vec<Option<&'c [u8]>> {
        let mut at = 0usize;
        let mut frames = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let end = at.saturating_add(p.len as usize);
            frames.push(core.get(at..end));
            at = end;
        }
        let alike = self.compression == want.compression && self.parts.len() == want.parts.len();
        want.parts
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mine = self
                    .parts
                    .get(i)
                    .filter(|p| alike && p.contents == w.contents)?;
                frames
                    .get(i)
                    .copied()
                    .flatten()
                    .filter(|f| f.len() as u64 == mine.len)
            })
            .collect()
    }
}

/// `info --json`'s view of a rescue record: hashes in hex.
#[derive(Clone, Debug, Serialize)]
pub struct RescueJson {
    pub kernel: String,
    pub agent: String,
    pub assets: String,
    pub compression: &'static str,
    pub contents: String,
    pub core_len: u64,
    pub core: String,
    /// Archives the zstd initramfs is split into (0: one stream, or a version-1 record).
    pub parts: usize,
}

impl RescueInputs {
    /// The form `info --json` prints.
    pub fn to_json(&self) -> RescueJson {
        let hex = |h: &[u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
        RescueJson {
            kernel: hex(&self.kernel),
            agent: hex(&self.agent),
            assets: hex(&self.assets),
            compression: match self.compression {
                0 => "none",
                1 => "gzip",
                2 => "zstd",
                _ => "unknown",
            },
            contents: hex(&self.contents),
            core_len: self.core_len,
            core: hex(&self.core),
            parts: self.parts.len(),
        }
    }
}

/// The inputs `RescueInputs` records, except what only the written initrd tells (each part's
/// `len`, `core_len`, `core`). A zstd initramfs is hashed part by part (`parts` of
/// `Tree::split`), its `contents` being the BLAKE3 of the parts' hashes in order; any other,
/// as one archive.
pub fn fingerprint(
    kernel_image: &Path,
    agent: &Path,
    compression: Compression,
    tree: &Tree,
    parts: usize,
) -> Result<RescueInputs, RescueError> {
    let mut assets = blake3::Hasher::new();
    for text in [
        MODULES_LIST,
        TOOLS_LIST,
        FILES_LIST,
        INIT_SCRIPT,
        MODULES_NET_LIST,
        UDHCPC_SCRIPT,
    ] {
        assets.update(&(text.len() as u64).to_le_bytes());
        assets.update(text.as_bytes());
    }
    let io = |e| RescueError::io("hashing", Path::new("the initramfs contents"), e);
    let mut records = Vec::new();
    let contents = match compression {
        Compression::Zstd => {
            let mut all = blake3::Hasher::new();
            for group in tree.split(parts) {
                let (h, raw) = tree
                    .write_cpio_of(group, HashWriter(blake3::Hasher::new()), 0)
                    .map_err(io)?;
                let contents = *h.0.finalize().as_bytes();
                all.update(&contents);
                records.push(PartRecord {
                    contents,
                    raw,
                    len: 0,
                });
            }
            all.finalize()
        }
        _ => tree
            .write_cpio(HashWriter(blake3::Hasher::new()), 0)
            .map_err(io)?
            .0
            .0
            .finalize(),
    };
    Ok(RescueInputs {
        kernel: hash_file(kernel_image)?,
        agent: hash_file(agent)?,
        assets: *assets.finalize().as_bytes(),
        compression: match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Zstd => 2,
        },
        contents: *contents.as_bytes(),
        parts: records,
        ..Default::default()
    })
}

/// BLAKE3 of a file's bytes.
pub fn hash_file(path: &Path) -> Result<[u8; 32], RescueError> {
    let mut h = blake3::Hasher::new();
    std::fs::File::open(path)
        .and_then(|mut f| io::copy(&mut f, &mut h))
        .map_err(|e| RescueError::io("reading", path, e))?;
    Ok(*h.finalize().as_bytes())
}

/// A `Write` that hashes what it is given.
struct HashWriter(blake3::Hasher);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encodes `r` as the manifest extension (optional: readers that do not know it ignore it).
pub fn to_extension(r: &RescueInputs) -> Extension {
    Extension::optional(NAME, VERSION, r, "the rescue record")
}

/// The rescue record of `m`, `None` when it has none (an older osimage, or a `.oimg`). The
/// data is hostile input: version and length are checked, trailing bytes refused. A version-1
/// record reads as one without parts.
pub fn from_manifest(m: &Manifest) -> Result<Option<RescueInputs>, PayloadError> {
    if m.extension(NAME).is_some_and(|e| e.version == 1) {
        let v1 = m.decode_extension::<RescueInputsV1, MAX_LEN>(NAME, 1, "the rescue record")?;
        return Ok(v1.map(|r| RescueInputs {
            kernel: r.kernel,
            agent: r.agent,
            assets: r.assets,
            compression: r.compression,
            contents: r.contents,
            core_len: r.core_len,
            core: r.core,
            parts: Vec::new(),
        }));
    }
    m.decode_extension::<RescueInputs, MAX_LEN>(NAME, VERSION, "the rescue record")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RescueInputs {
        RescueInputs {
            kernel: [1; 32],
            agent: [2; 32],
            assets: [3; 32],
            compression: 2,
            contents: [4; 32],
            core_len: 1 << 20,
            core: [5; 32],
            parts: vec![
                PartRecord {
                    contents: [6; 32],
                    raw: 1000,
                    len: 300,
                },
                PartRecord {
                    contents: [7; 32],
                    raw: 2000,
                    len: 700,
                },
            ],
        }
    }

    #[test]
    fn the_record_round_trips_and_follows_the_spec() {
        let mut m = Manifest::default();
        assert_eq!(from_manifest(&m).unwrap(), None);
        let ext = to_extension(&sample());
        // FORMAT.md §12: three 32-byte hashes, the compression byte, a hash, a varint, a hash.
        assert_eq!(&ext.data[..32], &[1; 32]);
        assert_eq!(ext.data[96], 2);
        assert_eq!(&ext.data[129..134], &[252, 0, 0, 16, 0]); // 1 MiB as 252 + u32
        // Then the parts: a varint count, each a hash and two varints.
        assert_eq!(ext.data[166], 2);
        assert_eq!(&ext.data[167..199], &[6; 32]);
        m.extensions.push(ext);
        assert_eq!(from_manifest(&m).unwrap(), Some(sample()));
    }

    #[test]
    fn a_version_1_record_reads_without_parts_and_is_never_taken_whole() {
        let v1 = RescueInputs {
            parts: Vec::new(),
            ..sample()
        };
        let mut ext = to_extension(&v1);
        ext.data.pop(); // version 1 ends after `core`: no parts count
        ext.version = 1;
        let mut m = Manifest::default();
        m.extensions.push(ext);
        let read = from_manifest(&m).unwrap().unwrap();
        assert_eq!(read, v1);
        assert!(
            read.differs_from(&sample())
                .unwrap()
                .contains("older osimage")
        );
        assert_eq!(read.reusable_parts(&sample(), &[0; 1000]), [None, None]);
    }

    #[test]
    fn parts_of_the_same_contents_are_cut_from_the_core() {
        let core: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut want = sample();
        want.parts[1].contents = [9; 32];
        let parts = sample().reusable_parts(&want, &core);
        assert_eq!(parts, [Some(&core[..300]), None]);
        // A record whose lengths run past the core offers nothing it cannot cut.
        let parts = sample().reusable_parts(&sample(), &core[..500]);
        assert_eq!(parts, [Some(&core[..300]), None]);
        // Another compression: nothing.
        let gzip = RescueInputs {
            compression: 1,
            ..sample()
        };
        assert_eq!(gzip.reusable_parts(&sample(), &core), [None, None]);
    }

    #[test]
    fn whether_any_part_is_shared_is_told_without_the_core() {
        let core: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut want = sample();
        want.parts[1].contents = [9; 32];
        assert!(sample().shares_parts_with(&want));
        want.parts[0].contents = [8; 32];
        assert!(!sample().shares_parts_with(&want));
        // It agrees with `reusable_parts`, which needs the core, in every case.
        assert!(
            sample()
                .reusable_parts(&want, &core)
                .iter()
                .all(Option::is_none)
        );
        let gzip = RescueInputs {
            compression: 1,
            ..sample()
        };
        assert!(!gzip.shares_parts_with(&sample()));
        let v1 = RescueInputs {
            parts: Vec::new(),
            ..sample()
        };
        assert!(!v1.shares_parts_with(&sample()));
        assert!(sample().shares_parts_with(&sample()));
    }

    #[test]
    fn damaged_or_newer_records_are_refused() {
        let mut m = Manifest::default();
        let mut ext = to_extension(&sample());
        ext.data.push(0);
        m.extensions.push(ext.clone());
        assert!(from_manifest(&m).is_err());
        ext.data.pop();
        ext.version = 3;
        m.extensions[0] = ext;
        assert!(from_manifest(&m).is_err());
    }

    #[test]
    fn each_input_is_named_when_it_differs() {
        let a = sample();
        assert_eq!(a.differs_from(&a), None);
        // Where the initrd's reusable part ends is not an input.
        let b = RescueInputs {
            core_len: 7,
            core: [0; 32],
            ..sample()
        };
        assert_eq!(a.differs_from(&b), None);
        let kernel = RescueInputs {
            kernel: [9; 32],
            ..sample()
        };
        assert!(a.differs_from(&kernel).unwrap().contains("kernel image"));
        let contents = RescueInputs {
            contents: [9; 32],
            ..sample()
        };
        assert!(a.differs_from(&contents).unwrap().contains("contents"));
        let agent = RescueInputs {
            agent: [9; 32],
            ..sample()
        };
        assert!(a.differs_from(&agent).unwrap().contains("agent"));
    }
}
