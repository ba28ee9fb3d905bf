//! Rescue blobs (docs/STORE.md §2.6): the kernel and the initramfs core of a version's rescue
//! environment, stored once under `rescue/<64 hex of their BLAKE3>.<16 hex random>` and named
//! by every version head built from the same inputs. A capture first LISTs `rescue/<hex>.`:
//! a blob found there is named again and nothing is uploaded, so a refresh whose rescue inputs
//! did not change uploads no blob. Export and netboot read them back, each checked against
//! its name and its id before a byte of it is used.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::objects::{BlobRef, RescueBlobs};
use super::{ObjectError, Store, StoreError, names};
use crate::format::manifest::Manifest;
use crate::format::source::RangeRead as _;
use crate::remote::s3::S3Error;

/// How much of a blob is read or hashed at a time.
const STEP: usize = 4 << 20;

/// The longest blob read back: a kernel is ~10 MiB and an initramfs core tens of MiB; this
/// bounds what a damaged or hostile listing can make a reader fetch.
pub const MAX_BLOB: u64 = 1 << 30;

/// A blob a capture names, and whether it had to upload it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub blob: BlobRef,
    /// Bytes uploaded: 0 when the store had the blob already.
    pub uploaded: u64,
}

impl Store {
    /// The key (relative to the store) of a blob `id` of `len` bytes, if a LIST of
    /// `rescue/<hex>.` finds one. A listed object of another length is not that blob (a
    /// damaged upload) and is passed over; a key that is no blob's is an error naming it.
    pub fn find_blob(&self, id: &[u8; 32], len: u64) -> Result<Option<String>, StoreError> {
        self.find_blob_avoiding(id, len, &HashSet::new())
    }

    /// [`Store::find_blob`], passing over the keys in `avoid` (blobs a prune condemned: a
    /// sweep may delete them, §2.6).
    pub fn find_blob_avoiding(
        &self,
        id: &[u8; 32],
        len: u64,
        avoid: &HashSet<String>,
    ) -> Result<Option<String>, StoreError> {
        let named = self.blob_name(id);
        let stored = self.blob_stored_len(len);
        let rel_prefix = format!("{}{}.", names::RESCUE, names::hex(&named));
        let listing = self.client.list(&self.root.key(&rel_prefix))?;
        for o in listing.objects {
            let rel = self.root.listed_relative(&o.key)?;
            let (listed, _) =
                names::parse_rescue_key(rel).map_err(|e| ObjectError::new(&self.shown(rel), e))?;
            if listed == named && o.size == stored && !avoid.contains(rel) {
                return Ok(Some(rel.to_string()));
            }
        }
        Ok(None)
    }

    /// Names the first `len` bytes of `file` (`path` in messages) as a rescue blob: the one a
    /// LIST finds, else a new upload under a new random suffix. The bytes must hash to `id`
    /// (what the manifest's `rescue` record says of them): checked before anything is sent.
    /// A blob listed under a key in `condemned` is not reused: the file goes up again under a
    /// new suffix.
    pub fn put_blob(
        &self,
        id: &[u8; 32],
        file: &File,
        len: u64,
        path: &Path,
        condemned: &HashSet<String>,
    ) -> Result<StoredBlob, StoreError> {
        let hashed = hash_prefix(file, len, path)?;
        if hashed != *id {
            return Err(StoreError::Unsupported(format!(
                "internal: {} does not hash to the rescue record's {}",
                path.display(),
                names::hex(id)
            )));
        }
        if let Some(object) = self.find_blob_avoiding(id, len, condemned)? {
            return Ok(StoredBlob {
                blob: BlobRef { id: *id, object },
                uploaded: 0,
            });
        }
        let rel = names::rescue_key(&self.blob_name(id), &super::random_bytes::<8>()?);
        match self.keys() {
            // Sealed whole under the blob's own key (§6): a kernel and an initramfs core are
            // tens of MiB, and MAX_BLOB bounds them.
            Some(k) => {
                let plain = read_prefix(file, len, path)?;
                let sealed = super::crypt::seal(k.blob(id), &plain);
                self.client.put(&self.root.key(&rel), &sealed)?;
            }
            None => self
                .client
                .upload(&self.root.key(&rel), file, len, &mut |_| {})?,
        }
        Ok(StoredBlob {
            blob: BlobRef {
                id: *id,
                object: rel,
            },
            uploaded: len,
        })
    }

    /// Copies the blob `blob` into `out` (empty, `out_path` in messages) and returns its
    /// length. Its key must be a blob key carrying `blob.id`, its length at most `MAX_BLOB`,
    /// and its bytes must hash to `blob.id`; any other blob is an error naming its object.
    pub fn get_blob(
        &self,
        blob: &BlobRef,
        out: &mut impl Write,
        out_path: &Path,
    ) -> Result<u64, StoreError> {
        let shown = self.shown(&blob.object);
        let bad = |msg: String| StoreError::Object(ObjectError::new(&shown, msg));
        let (named, _) = names::parse_rescue_key(&blob.object).map_err(bad)?;
        if named != self.blob_name(&blob.id) {
            return Err(bad(format!(
                "named by a version head as the blob {}, but its key says otherwise",
                names::hex(&blob.id)
            )));
        }
        let object = self
            .client
            .open(&self.root.key(&blob.object))
            .map_err(|e| S3Error::Request(format!("{shown}: {e}")))?;
        let len = object.len();
        if len > self.blob_stored_len(MAX_BLOB) {
            return Err(bad(format!(
                "{len} bytes, more than a rescue blob may have"
            )));
        }
        if let Some(k) = self.keys() {
            let mut sealed = vec![0u8; len as usize];
            object
                .read_exact_at(&mut sealed, 0)
                .map_err(|e| S3Error::Request(format!("{shown}: {e}")))?;
            let plain = super::crypt::open(&k.blob(&blob.id), &sealed).map_err(bad)?;
            if *blake3::hash(&plain).as_bytes() != blob.id {
                return Err(bad(
                    "its bytes do not hash to its name (damaged or replaced)".into(),
                ));
            }
            out.write_all(&plain).map_err(|e| {
                StoreError::Unsupported(format!("cannot write {}: {e}", out_path.display()))
            })?;
            return Ok(plain.len() as u64);
        }
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; STEP.min(len as usize)];
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(STEP as u64) as usize;
            object
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| S3Error::Request(format!("{shown}: {e}")))?;
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| {
                StoreError::Unsupported(format!("cannot write {}: {e}", out_path.display()))
            })?;
            at += n as u64;
        }
        if *hasher.finalize().as_bytes() != blob.id {
            return Err(bad(
                "its bytes do not hash to its name (damaged or replaced)".into(),
            ));
        }
        Ok(len)
    }
}

impl Store {
    /// The id a blob's key starts with: its id, or in an encrypted store its keyed name (§6).
    fn blob_name(&self, id: &[u8; 32]) -> [u8; 32] {
        match self.keys() {
            Some(k) => k.blob_name(id),
            None => *id,
        }
    }

    /// The length of a blob of `len` bytes as stored.
    fn blob_stored_len(&self, len: u64) -> u64 {
        match self.keys() {
            Some(_) => crate::envelope::stream::sealed_len(len),
            None => len,
        }
    }
}

/// The first `len` bytes of `file` (at most `MAX_BLOB`).
fn read_prefix(file: &File, len: u64, path: &Path) -> Result<Vec<u8>, StoreError> {
    if len > MAX_BLOB {
        return Err(StoreError::Unsupported(format!(
            "{}: {len} bytes, more than a rescue blob may have",
            path.display()
        )));
    }
    let mut buf = vec![0u8; len as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, 0)
        .map_err(|e| StoreError::Unsupported(format!("cannot read {}: {e}", path.display())))?;
    Ok(buf)
}

/// BLAKE3 of the first `len` bytes of `file`.
fn hash_prefix(file: &File, len: u64, path: &Path) -> Result<[u8; 32], StoreError> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; STEP.min(len as usize)];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(STEP as u64) as usize;
        std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..n], at)
            .map_err(|e| StoreError::Unsupported(format!("cannot read {}: {e}", path.display())))?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(*hasher.finalize().as_bytes())
}

/// A version's rescue kernel and initrd, fetched and checked (`Store::rescue_files`).
#[derive(Debug)]
pub struct RescueFiles {
    pub kernel: std::path::PathBuf,
    /// The initramfs core followed by the image's own id archive: the ISO's `initrd.img`.
    pub initrd: std::path::PathBuf,
    /// The manifest's rescue record, which they were checked against.
    pub inputs: crate::rescue::reuse::RescueInputs,
}

impl Store {
    /// Writes the rescue kernel and initrd of the version whose manifest is `m` and whose
    /// head names `blobs` into `dir` as `vmlinuz` and `initrd.img` (the core followed by the
    /// image's id archive, as a capture writes an ISO's, FORMAT.md §12). Each blob is checked
    /// against its name; the blobs must be the ones the manifest's rescue record names, and
    /// the initrd's core its recorded length and hash. The error says what is wrong of the
    /// version, for the caller to name it.
    pub fn rescue_files(
        &self,
        m: &Manifest,
        blobs: &RescueBlobs,
        dir: &Path,
    ) -> Result<RescueFiles, String> {
        let bad = |msg: String| msg;
        let inputs = crate::rescue::reuse::from_manifest(m)
            .map_err(|e| bad(format!("its rescue record is unreadable: {e}")))?
            .ok_or_else(|| {
                bad("its head names rescue blobs, its manifest no rescue record".into())
            })?;
        if inputs.kernel != blobs.kernel.id || inputs.core != blobs.initrd_core.id {
            return Err(bad(
                "its head's rescue blobs are not the ones its manifest's rescue record names"
                    .into(),
            ));
        }
        let files = RescueFiles {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            inputs,
        };
        for (blob, path) in [
            (&blobs.kernel, &files.kernel),
            (&blobs.initrd_core, &files.initrd),
        ] {
            let mut f =
                File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            self.get_blob(blob, &mut f, path)
                .map_err(|e| bad(format!("its rescue blob: {e}")))?;
        }
        let (core_len, core) = crate::rescue::append_image_id(&files.initrd, &m.image.id)
            .map_err(|e| bad(e.to_string()))?;
        if core_len != files.inputs.core_len || core != files.inputs.core {
            return Err(bad(
                "its initramfs core does not match its rescue record (length or hash)".into(),
            ));
        }
        Ok(files)
    }
}
