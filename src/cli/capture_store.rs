//! `capture ROOT -o s3://BUCKET/PREFIX/NAME`: the command line of a capture into a store
//! (docs/STORE.md §4; the capture itself is `osimage::capture_into_store`).

use std::path::{Path, PathBuf};

use super::progress::TermProgress;
use super::source::NetArgs;
use super::{Failure, UsageError, show};
use osimage::store::index_cache::CacheChoice;
use osimage::store::{ImageAddress, Store};
use osimage::{CaptureOptions, StoreCaptureChoices, s3};

/// OUTPUT's store address, when it is one. An `s3://` address whose key ends in .iso or
/// .oimg names one object holding a whole image (STORE.md §1.1): a capture does not write
/// those (`osimage import` uploads a finished file).
pub fn store_output(output: &Path) -> Result<Option<ImageAddress>, UsageError> {
    let Some(text) = output.to_str().filter(|t| s3::is_s3(t)) else {
        return Ok(None);
    };
    let lower = text.to_ascii_lowercase();
    if lower.ends_with(".iso") || lower.ends_with(".oimg") {
        return Err(UsageError(format!(
            "{text}: capture writes a file or into an osimage store (s3://BUCKET/PREFIX/NAME), \
             not one S3 object: capture to a file, then `osimage import FILE {text}`"
        )));
    }
    let a = ImageAddress::parse(text).map_err(|e| UsageError(e.to_string()))?;
    if a.version.is_some() {
        return Err(UsageError(format!(
            "{text}: a capture makes a new version; name the series alone (without @VERSION)"
        )));
    }
    Ok(Some(a))
}

/// What a store capture refuses before anything is read or asked: --encrypt (a store's own
/// setting, `store init --encrypt`) and --base (the store is the base).
pub fn check_args(
    base: Option<&Path>,
    address: &ImageAddress,
    encrypt: bool,
) -> Result<(), UsageError> {
    if encrypt {
        return Err(UsageError(format!(
            "{address}: --encrypt and --recipient do not apply to a store: whether a store is \
             encrypted is its own setting (`osimage store init s3://B/P --encrypt`, \
             docs/STORE.md §6); give an encrypted store's passphrase with --passphrase-file, \
             OSIMAGE_PASSPHRASE or at the prompt"
        )));
    }
    if base.is_some() {
        return Err(UsageError(format!(
            "{address}: --base does not apply to a store: the store's blocks are the base, and \
             the newest version of {} is the files cache",
            address.series
        )));
    }
    Ok(())
}

/// The choices of `--no-base`, `--cache-dir DIR` and `--no-cache` (in that order in
/// `flags`), which apply to a store only: with a file for OUTPUT they are refused, not
/// ignored.
pub fn choices(
    flags: (bool, Option<PathBuf>, bool),
    into_store: bool,
    output: &Path,
) -> Result<StoreCaptureChoices, UsageError> {
    let (no_base, cache_dir, no_cache) = flags;
    if !into_store {
        let given = [
            (no_base, "--no-base"),
            (cache_dir.is_some(), "--cache-dir"),
            (no_cache, "--no-cache"),
        ];
        if let Some((_, flag)) = given.iter().find(|(on, _)| *on) {
            return Err(UsageError(format!(
                "{flag} applies to a capture into a store (-o s3://BUCKET/PREFIX/NAME), not to \
                 {} (a capture into a file reads every file unless --base names one)",
                output.display()
            )));
        }
    }
    let index_cache = match (cache_dir, no_cache) {
        (_, true) => CacheChoice::Off,
        (Some(dir), false) => CacheChoice::Dir(dir),
        (None, false) => CacheChoice::Default,
    };
    Ok(StoreCaptureChoices {
        no_base,
        index_cache,
    })
}

/// Runs the capture of `opts` into `address` and says what it did.
pub fn run(
    opts: &CaptureOptions,
    address: &ImageAddress,
    tags: &[String],
    choices: &StoreCaptureChoices,
    net: &NetArgs,
    p: &TermProgress,
) -> Result<i32, Failure> {
    let client = net.store_client(&address.root)?;
    let store = Store::open_unlocked(client, address.root.clone(), &opts.unlock)?;
    let done = osimage::capture_into_store(opts, &store, &address.series, tags, choices, p)?;
    let r = &done.report;
    super::say_capture_notes(r, p);
    if let Some(line) = &r.rescue {
        p.say(line);
    }
    let st = &r.stats;
    p.say(&format!(
        "{}: {}, {} of file data → {} stored in {} packs; uploaded {} in {} new {} \
         ({} of earlier captures reused); {} files read, {} unchanged; index objects: {} \
         fetched, {} cached; in {:.1} s",
        r.output.display(),
        show::count(st.entries, "entry", "entries"),
        show::bytes(st.file_bytes),
        show::bytes(st.stored_bytes),
        done.uploaded.packs + done.referenced_packs,
        show::bytes(done.uploaded.bytes + done.version_bytes),
        done.uploaded.packs,
        if done.uploaded.packs == 1 {
            "pack"
        } else {
            "packs"
        },
        done.referenced_packs,
        done.files_read,
        done.files_unread,
        done.index_fetched,
        done.index_cached,
        st.duration_ms as f64 / 1000.0
    ));
    Ok(super::capture_status(r, "the version was committed"))
}
