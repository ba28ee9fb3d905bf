//! `osimage import IMAGE s3://BUCKET/PREFIX/NAME`: an image file (an ISO or a `.oimg` made
//! by `osimage capture` or `export`) becomes a version of the series NAME of a store
//! (docs/STORE.md §8, the reverse of `export`). It lives beside the capture into a store
//! because it ends the same way: the same Capture/Import lock held from before the store is
//! read until after the commit (§5.1), the index loaded as a capture loads it (§4.1) with
//! what unswept condemnations hold left out, packs uploaded and indexed as they close, rescue
//! blobs named or uploaded, and one PUT of the version object as the commit (§4.3).
//!
//! What differs is where the blocks come from: `store::import` reads the image's used blocks,
//! references those the store holds and carries the rest unchanged into new store packs. The
//! manifest keeps the image's id, `created`, entries and extensions; its pack, block and
//! chunk tables are replaced and its `store` record names the new version, whose name is made
//! of `created` and the image id, so the same image imported twice is refused the second time.
//! An ISO's rescue kernel and initramfs core (the first `core_len` bytes of its initrd,
//! FORMAT.md §12) become the version's rescue blobs, each checked against the manifest's
//! `rescue` record. Into an encrypted store (§6.1) the image is opened with the store's key
//! options when it is encrypted, and everything stored is sealed as a capture seals; into a
//! plain store an encrypted image needs `--decrypt`.

use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CaptureError;
use super::into_store::{commit_version, load_index, store_error, to_utc, version_head};
use crate::envelope::Unlock;
use crate::format::PayloadError;
use crate::format::frame::encode_manifest;
use crate::format::manifest::Manifest;
use crate::format::source::RangeRead;
use crate::format::store_ref::{self, StoreRef};
use crate::image::ContainerKind;
use crate::payload::reader::PayloadReader;
use crate::progress::Progress;
use crate::rescue::reuse::RescueInputs;
use crate::store::dedup::StoreBase;
use crate::store::import::{ImportCounts, carry_blocks};
use crate::store::index_cache::{self, CacheChoice};
use crate::store::objects::{LockKind, RescueBlobs};
use crate::store::upload::{PackUploader, Uploaded};
use crate::store::{Store, StoreError, checkpoint, names};

/// What to import, and into which series.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The image file: an ISO or a `.oimg` made by osimage.
    pub image: PathBuf,
    pub series: String,
    /// Tags for the version's head.
    pub tags: Vec<String>,
    /// Where the index objects read are kept (`--cache-dir`, `--no-cache`; §4.1).
    pub index_cache: CacheChoice,
    /// `--decrypt`: an encrypted image may go into a plain store, its data then stored in the
    /// clear (§6). Into an encrypted store an encrypted image is always opened.
    pub decrypt: bool,
}

/// What an import did.
#[derive(Debug)]
pub struct ImportReport {
    /// `s3://B/P/NAME@VERSION`.
    pub shown: String,
    pub version: String,
    /// Packs and bytes uploaded, and index objects written for them.
    pub uploaded: Uploaded,
    pub counts: ImportCounts,
    /// The version object's length.
    pub version_bytes: u64,
    /// The rescue kernel's version and the blob bytes uploaded, when the image had a rescue
    /// environment (an ISO).
    pub rescue: Option<(String, u64)>,
    /// Index objects read from the store and from the local cache.
    pub index_fetched: u64,
    pub index_cached: u64,
}

/// Imports `opts.image` into `store` as a new version of `opts.series`; an encrypted image
/// is opened with `unlock` when the store is encrypted or `opts.decrypt` (§6.1).
pub fn import_into_store(
    store: &Store,
    opts: &ImportOptions,
    unlock: &Unlock,
    progress: &dyn Progress,
) -> Result<ImportReport, CaptureError> {
    let path = &opts.image;
    let reader = importable(path, may_open(store, opts, unlock), &|u| {
        PayloadReader::open(path, u)
    })?;
    import_opened(store, opts, reader, None, progress)
}

/// [`import_into_store`] of the image whose bytes `src` reads (an `.iso` or `.oimg` on a web
/// server, `remote::HttpObject`: docs/STORE.md §8 "Over HTTP"), `opts.image` naming it in
/// messages (a URL without its query). Blocks are read as planned runs of range requests,
/// the ISO's rescue kernel and initramfs by range too; nothing is downloaded whole first.
pub fn import_source_into_store(
    store: &Store,
    opts: &ImportOptions,
    src: Arc<dyn RangeRead>,
    unlock: &Unlock,
    progress: &dyn Progress,
) -> Result<ImportReport, CaptureError> {
    let path = &opts.image;
    let reader = importable(path, may_open(store, opts, unlock), &|u| {
        PayloadReader::open_source(path, src.clone(), u)
    })?;
    import_opened(store, opts, reader, Some(src), progress)
}

/// The import of the opened image `reader`; `src` its bytes when not a local file.
fn import_opened(
    store: &Store,
    opts: &ImportOptions,
    reader: PayloadReader,
    src: Option<Arc<dyn RangeRead>>,
    progress: &dyn Progress,
) -> Result<ImportReport, CaptureError> {
    let series = opts.series.as_str();
    let shown = format!("{}/{series}", store.root);
    let m = reader.manifest();
    let version = names::version_name(to_utc(m.image.created), &m.image.id);
    refuse_existing(store, series, &version, &opts.image)?;

    // §5.1: a shared lock before the store is read, deleted on an interrupt too.
    let interrupts = super::interrupt::Interrupts::start();
    let lock = store
        .take_lock(LockKind::Import, Some(series))
        .map_err(|e| store_error(&shown, e))?;
    let _unlock = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
    // §4 step 3, after the lock: what unswept condemnations hold is not referenced.
    let pending = store.pending().map_err(|e| store_error(&shown, e))?;
    let cache = index_cache::cache_dir(&opts.index_cache, &store.id);
    let index = load_index(store, cache.as_deref(), &pending, progress)?;
    let base = StoreBase::new(&index.objects, None)?;
    let every = checkpoint::packs_per_index().map_err(|e| store_error(&shown, e))?;
    let mut uploader = PackUploader::start(store, every, cache);
    let checkpoints = uploader.checkpoints();
    let _listed = interrupts.on_interrupt(String::new(), move || {
        if let Some(said) = checkpoints.flush_interrupted() {
            eprintln!("osimage: {said}");
        }
    });
    let carried = carry_blocks(
        &reader,
        &base,
        &mut uploader,
        store.id,
        u64::from(store.config.pack_size),
        progress,
    );
    let uploaded = uploader.finish();
    let tables = carried?;
    let uploaded = uploaded?;

    let mut m = reader.manifest().clone();
    m.packs = tables.packs;
    m.blocks = tables.blocks;
    m.chunks = tables.chunks;
    m.extensions.retain(|e| e.name != store_ref::NAME);
    m.extensions.push(
        StoreRef {
            store_id: store.id,
            series: series.to_string(),
            version: version.clone(),
        }
        .to_extension()?,
    );
    crate::format::validate::validate(&m).map_err(|e| e.at(Path::new(&shown)))?;
    let rescue = rescue_blobs(store, &reader, src, &pending.blobs(), &shown, progress)?;
    // An encrypted store's frame is sealed under the version object's own key (§6).
    let (nonce, frame) = store
        .seal_frame(encode_manifest(&m)?)
        .map_err(|e| store_error(&shown, e))?;
    let mut head = version_head(&m, series, &version, None, &frame, &uploaded, &opts.tags);
    head.rescue = rescue.as_ref().map(|(b, _)| b.clone());
    let version_bytes = commit_version(
        store, lock, interrupts, &shown, &version, &head, &frame, nonce, progress,
    )?;
    Ok(ImportReport {
        shown: format!("{shown}@{version}"),
        version,
        uploaded,
        counts: tables.counts,
        version_bytes,
        rescue: rescue.map(|(b, n)| (b.kernel_version, n)),
        index_fetched: index.fetched,
        index_cached: index.cached,
    })
}

/// What opens an encrypted image for an import into `store`: `unlock` when the store is
/// encrypted or `--decrypt` was given, else nothing (§6.1).
fn may_open<'a>(store: &Store, opts: &ImportOptions, unlock: &'a Unlock) -> Option<&'a Unlock> {
    (store.keys.is_some() || opts.decrypt).then_some(unlock)
}

/// Opens the image with `open` and checks it can be imported (`path` in messages). Without
/// `unlock` (a plain store, no `--decrypt`) only a plain image can: it is read without any
/// key, so a passphrase in the environment never decrypts it into a plain store (§6, §8).
/// With `unlock` an encrypted image is opened; a passphrase asked for the store is tried
/// first, and when it is not the image's, the image's own is asked for (§6.1: "asked for
/// apart").
fn importable(
    path: &Path,
    unlock: Option<&Unlock>,
    open: &dyn Fn(&Unlock) -> Result<PayloadReader, PayloadError>,
) -> Result<PayloadReader, CaptureError> {
    let encrypted = || {
        CaptureError::Usage(format!(
            "{}: the image is encrypted and this store is not: importing it would store its \
             data in the clear; give --decrypt to do so, or import it into an encrypted store \
             (docs/STORE.md §6.1)",
            path.display()
        ))
    };
    let Some(unlock) = unlock else {
        let reader = match open(&Unlock::default()) {
            Ok(r) => r,
            Err(PayloadError::NeedKey { .. }) => return Err(encrypted()),
            Err(e) => return Err(e.into()),
        };
        if reader.encrypted() {
            return Err(encrypted());
        }
        return file_image(reader, path);
    };
    let reader = match open(unlock) {
        Err(PayloadError::WrongKey(_)) if forget_asked(unlock) => open(unlock)?,
        r => r?,
    };
    file_image(reader, path)
}

/// Forgets the passphrase `unlock` asked for (the store's), so the image's is asked for;
/// false when nothing was asked or nothing can be.
fn forget_asked(unlock: &Unlock) -> bool {
    if unlock.passphrase.is_some() || unlock.ask.is_none() {
        return false;
    }
    match unlock.asked.lock() {
        Ok(mut asked) => asked.take().is_some(),
        Err(_) => false,
    }
}

/// The reader, unless it is a store's version rather than a file.
fn file_image(reader: PayloadReader, path: &Path) -> Result<PayloadReader, CaptureError> {
    if reader.container() == ContainerKind::Store {
        return Err(CaptureError::Usage(format!(
            "{}: a store's version is not a file to import",
            path.display()
        )));
    }
    Ok(reader)
}

/// The version an import makes is named by the image's `created` and id (§2.5): one already
/// in the series is this image imported before (or captured there).
fn refuse_existing(
    store: &Store,
    series: &str,
    version: &str,
    image: &Path,
) -> Result<(), CaptureError> {
    let shown = format!("{}/{series}", store.root);
    let versions = store.versions(series).map_err(|e| store_error(&shown, e))?;
    if versions.iter().any(|v| v == version) {
        return Err(CaptureError::Usage(format!(
            "{}: already in the store as {shown}@{version} (an image is imported once; \
             `osimage store forget` removes that version)",
            image.display()
        )));
    }
    Ok(())
}

/// The image's rescue kernel and initramfs core as rescue blobs of `store` (§2.6): named
/// where the store has them, else uploaded (a blob under a `condemned` name is not reused).
/// Only an ISO has them; a `.oimg`, or an image without a `rescue` record, gives none (its
/// version restores files, and `export` to an ISO refuses it).
fn rescue_blobs(
    store: &Store,
    reader: &PayloadReader,
    src: Option<Arc<dyn RangeRead>>,
    condemned: &std::collections::HashSet<String>,
    shown: &str,
    progress: &dyn Progress,
) -> Result<Option<(RescueBlobs, u64)>, CaptureError> {
    let m = reader.manifest();
    let Some(inputs) = crate::rescue::reuse::from_manifest(m)? else {
        return Ok(None);
    };
    if reader.container() != ContainerKind::Iso {
        return Ok(None);
    }
    progress.status("storing the rescue kernel and initramfs");
    let work = tempfile::Builder::new()
        .prefix("osimage-import-")
        .tempdir()
        .map_err(|e| PayloadError::io("cannot make a work folder in", &std::env::temp_dir(), e))?;
    let src = match src {
        Some(src) => src,
        None => {
            let iso = reader.path();
            Arc::new(std::fs::File::open(iso).map_err(|e| PayloadError::io("cannot open", iso, e))?)
        }
    };
    let files = RescueFiles::read(reader.path(), src, m, &inputs, work.path())?;
    let fail = |e: StoreError| {
        CaptureError::Payload(PayloadError::Image {
            path: shown.into(),
            msg: format!("storing the rescue environment: {e}"),
        })
    };
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| PayloadError::io("cannot open", p, e));
    let kernel = store
        .put_blob(
            &inputs.kernel,
            &open(&files.kernel)?,
            files.kernel_len,
            &files.kernel,
            condemned,
        )
        .map_err(fail)?;
    let core = store
        .put_blob(
            &inputs.core,
            &open(&files.initrd)?,
            inputs.core_len,
            &files.initrd,
            condemned,
        )
        .map_err(fail)?;
    Ok(Some((
        RescueBlobs {
            kernel: kernel.blob,
            initrd_core: core.blob,
            net_part: None,
            kernel_version: files.kernel_version,
        },
        kernel.uploaded + core.uploaded,
    )))
}

/// An ISO's rescue kernel and initrd, copied out and checked against the manifest's record.
struct RescueFiles {
    kernel: PathBuf,
    kernel_len: u64,
    initrd: PathBuf,
    kernel_version: String,
}

impl RescueFiles {
    /// Copies the ISO `iso`'s `vmlinuz` and `initrd.img` (where osimage's ISO writer puts
    /// them, docs/ISO.md) into `dir`; the kernel must hash to the record's `kernel` and the
    /// initrd's first `core_len` bytes to its `core`. `src` reads the ISO's bytes: the
    /// file, or the HTTP object (each file one planned range).
    fn read(
        iso: &Path,
        src: Arc<dyn RangeRead>,
        m: &Manifest,
        inputs: &RescueInputs,
        dir: &Path,
    ) -> Result<RescueFiles, CaptureError> {
        let bad = |msg: String| {
            CaptureError::Payload(PayloadError::Image {
                path: iso.to_path_buf(),
                msg,
            })
        };
        let reader = crate::iso::IsoReader::from_source(iso, src.clone())?;
        let menu = crate::rescue::menu::MenuParams::default();
        let copy = |at: &str, to: PathBuf, what: &str| -> Result<(PathBuf, u64), CaptureError> {
            let ext = reader.lookup(at)?.ok_or_else(|| {
                bad(format!(
                    "its manifest has a rescue record but the ISO has no {at} (its {what})"
                ))
            })?;
            if ext.len > crate::store::rescue::MAX_BLOB {
                return Err(bad(format!("its {what} {at} is {} bytes", ext.len)));
            }
            src.plan(copy_pieces(ext.offset, ext.len));
            copy_range(&*src, iso, ext.offset, ext.len, &to)?;
            Ok((to, ext.len))
        };
        let (kernel, kernel_len) = copy(&menu.kernel_path, dir.join("vmlinuz"), "kernel")?;
        let (initrd, initrd_len) = copy(&menu.initrd_path, dir.join("initrd.img"), "initramfs")?;
        let hash = |p: &Path, len: u64| -> Result<[u8; 32], CaptureError> {
            let f = std::fs::File::open(p).map_err(|e| PayloadError::io("cannot open", p, e))?;
            hash_prefix(&f, p, len)
        };
        if hash(&kernel, kernel_len)? != inputs.kernel {
            return Err(bad(format!(
                "its rescue kernel {} is not the one its manifest's rescue record names",
                menu.kernel_path
            )));
        }
        if initrd_len < inputs.core_len || hash(&initrd, inputs.core_len)? != inputs.core {
            return Err(bad(format!(
                "its initramfs {} does not begin with the core its manifest's rescue record \
                 names",
                menu.initrd_path
            )));
        }
        let head = read_head(&kernel, 64 << 10)?;
        let kernel_version =
            crate::rescue::kernel::bzimage_version(&head).unwrap_or_else(|| m.image.kernel.clone());
        Ok(RescueFiles {
            kernel,
            kernel_len,
            initrd,
            kernel_version,
        })
    }
}

/// The bytes [`copy_range`] reads at once.
const COPY_PIECE: u64 = 4 << 20;

/// The reads [`copy_range`] makes of `len` bytes at `at`, in order: its plan (docs/STORE.md
/// §7.2.1: a read is served from the plan when it is one of the planned pieces).
fn copy_pieces(at: u64, len: u64) -> Vec<(u64, u64)> {
    (0..len.div_ceil(COPY_PIECE))
        .map(|i| (at + i * COPY_PIECE, (len - i * COPY_PIECE).min(COPY_PIECE)))
        .collect()
}

/// Copies `len` bytes of `src` (`path` in messages) at `at` into the new file `to`.
fn copy_range(
    src: &dyn RangeRead,
    path: &Path,
    at: u64,
    len: u64,
    to: &Path,
) -> Result<(), CaptureError> {
    let mut out =
        std::fs::File::create(to).map_err(|e| PayloadError::io("cannot create", to, e))?;
    let mut buf = vec![0u8; len.min(COPY_PIECE) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], at + done)
            .map_err(|e| PayloadError::io("cannot read", path, e))?;
        out.write_all(&buf[..n])
            .map_err(|e| PayloadError::io("cannot write", to, e))?;
        done += n as u64;
    }
    Ok(())
}

/// BLAKE3 of the first `len` bytes of `f`.
fn hash_prefix(f: &std::fs::File, path: &Path, len: u64) -> Result<[u8; 32], CaptureError> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; len.min(4 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        FileExt::read_exact_at(f, &mut buf[..n], done)
            .map_err(|e| PayloadError::io("cannot read", path, e))?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(*h.finalize().as_bytes())
}

/// The first `len` bytes of the file at `path` (fewer if it is shorter).
fn read_head(path: &Path, len: usize) -> Result<Vec<u8>, CaptureError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| PayloadError::io("cannot open", path, e))?;
    let mut out = Vec::with_capacity(len);
    f.take(len as u64)
        .read_to_end(&mut out)
        .map_err(|e| PayloadError::io("cannot read", path, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_pieces_are_the_reads_copy_range_makes() {
        assert_eq!(copy_pieces(10, 0), vec![]);
        assert_eq!(copy_pieces(10, 5), vec![(10, 5)]);
        let four = COPY_PIECE;
        assert_eq!(copy_pieces(7, four), vec![(7, four)]);
        assert_eq!(
            copy_pieces(7, 2 * four + 3),
            vec![(7, four), (7 + four, four), (7 + 2 * four, 3)]
        );
    }

    #[test]
    fn rescue_files_are_copied_from_any_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src");
        let bytes: Vec<u8> = (0..(COPY_PIECE + 1000)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let to = dir.path().join("out");
        copy_range(&file, &path, 3, COPY_PIECE + 10, &to).unwrap();
        assert_eq!(
            std::fs::read(&to).unwrap(),
            &bytes[3..3 + COPY_PIECE as usize + 10]
        );
        // Past the end: an error naming the source.
        let e = copy_range(&file, &path, 2000, COPY_PIECE, &to).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }
}
