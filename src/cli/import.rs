//! `osimage import IMAGE DEST`: an image file goes to S3-compatible storage, either kept
//! whole as one object (`s3://BUCKET/KEY.iso|.oimg`, docs/STORE.md §1.1), from which every
//! reading command, `restore` and `netboot` then read it, or into an osimage store as a new
//! version of a series (`s3://BUCKET/PREFIX/NAME`, §8: the library's `import_into_store`).
//! Which one is said by DEST alone: a key ending in .iso or .oimg is one object, any other
//! `s3://` address names a series in the store at its prefix, which must exist. Into a
//! store, IMAGE may also be an http(s) URL, read through the reading commands' HTTP reader
//! (`source::open_object`, §7) by `import_source_into_store`.

use std::path::PathBuf;

use clap::Args;
use osimage::store::Store;
use osimage::store::index_cache::CacheChoice;
use osimage::{ContainerKind, ImportOptions, Progress as _};

use super::progress::TermProgress;
use super::{Failure, UsageError, show, source};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The image: a .iso or .oimg made by osimage capture (or export), a file or (into a
    /// store) an http:// or https:// URL read with Range requests, as the reading commands
    /// read one (--retry-for, --ca, --connections).
    pub image: PathBuf,
    /// Where it goes. s3://BUCKET/KEY with KEY ending in .iso (for an ISO) or .oimg (for a
    /// payload): the file kept whole as one object. Any other s3://BUCKET/PREFIX/NAME: a new
    /// version of the series NAME in the osimage store at s3://BUCKET/PREFIX (made by
    /// `osimage store init`), its blocks shared with the store's, only those it lacks
    /// uploaded; the version is named by the image's creation time and id, so an image is
    /// imported into a series once. Credentials and endpoint as the AWS tools take them
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, ~/.aws/).
    pub dest: PathBuf,
    /// One object only: replace an object already at DEST (without it, an existing object
    /// is refused and left as it is).
    #[arg(long)]
    pub force: bool,
    /// Into a store only: a label kept in the version's head (`store ls -l`); may be
    /// repeated.
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Into a store only: keep the store's index objects in DIR/stores/STORE-ID/index/
    /// instead of $XDG_CACHE_HOME/osimage/stores/… (as capture does).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Into a store only: keep no index objects locally.
    #[arg(long)]
    pub no_cache: bool,
    /// Into a plain store only: import an encrypted image, its data then stored in the clear
    /// (opened with --passphrase-file, OSIMAGE_PASSPHRASE, --identity or asked). Without it an
    /// encrypted image is refused by a plain store; an encrypted store seals whatever comes in.
    #[arg(long)]
    pub decrypt: bool,
    /// (An encrypted store's passphrase or an age identity, which also opens an encrypted
    /// image with the same key; a different image passphrase is asked for apart.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub net: source::NetArgs,
}

pub fn run(a: ImportArgs, p: &TermProgress) -> Result<i32, Failure> {
    if let Some(address) = source::store_address(&a.dest)? {
        return into_store(a, address, p);
    }
    source::local_only(&a.image, "import's IMAGE into one object")?;
    let store_only = [
        (!a.tag.is_empty(), "--tag"),
        (a.cache_dir.is_some(), "--cache-dir"),
        (a.no_cache, "--no-cache"),
        (a.decrypt, "--decrypt"),
    ];
    if let Some((_, flag)) = store_only.iter().find(|(on, _)| *on) {
        return Err(UsageError(format!(
            "{flag} applies to an import into a store (s3://BUCKET/PREFIX/NAME), not to one \
             object ({})",
            a.dest.display()
        ))
        .into());
    }
    let Some(dest) = source::s3_address(&a.dest)? else {
        return Err(UsageError(format!(
            "{}: DEST is an s3://BUCKET/KEY address",
            a.dest.display()
        ))
        .into());
    };
    let file =
        std::fs::File::open(&a.image).map_err(|e| format!("opening {}: {e}", a.image.display()))?;
    let kind = osimage::container_kind(&file)
        .map_err(|e| format!("reading {}: {e}", a.image.display()))?
        .ok_or_else(|| {
            UsageError(format!(
                "{}: not an osimage image (neither a .oimg payload nor an ISO with an /osimage \
                 folder)",
                a.image.display()
            ))
        })?;
    let ending = match kind {
        ContainerKind::Iso => ".iso",
        ContainerKind::Oimg => ".oimg",
        ContainerKind::Store => {
            return Err(UsageError(format!(
                "{}: a store's version is not a file to import",
                a.image.display()
            ))
            .into());
        }
    };
    if !dest.file_name().to_ascii_lowercase().ends_with(ending) {
        return Err(UsageError(format!(
            "{dest}: {} is {}, so the key ends in {ending}",
            a.image.display(),
            if kind == ContainerKind::Iso {
                "an ISO"
            } else {
                "a .oimg payload"
            }
        ))
        .into());
    }
    let len = file
        .metadata()
        .map_err(|e| format!("reading {}: {e}", a.image.display()))?
        .len();
    let client = a.net.s3_client(&dest)?;
    if !a.force && client.head(&dest.key)?.is_some() {
        return Err(
            UsageError(format!("{dest} exists already: give --force to replace it")).into(),
        );
    }
    p.start("uploading", len);
    let mut done = 0;
    let r = client.upload(&dest.key, &file, len, &mut |sent| {
        p.advance(sent - done);
        done = sent;
    });
    p.finish();
    r?;
    p.say(&format!(
        "{dest}: uploaded {} from {} (osimage verify {dest} reads it back and checks every block)",
        osimage::human_bytes(len),
        a.image.display()
    ));
    Ok(0)
}

/// `import IMAGE s3://BUCKET/PREFIX/NAME`: a new version of NAME in the store at PREFIX.
fn into_store(
    a: ImportArgs,
    address: osimage::store::ImageAddress,
    p: &TermProgress,
) -> Result<i32, Failure> {
    if address.version.is_some() {
        return Err(UsageError(format!(
            "{}: an import makes a new version, named by the image's creation time and id; \
             name the series alone (without @VERSION)",
            a.dest.display()
        ))
        .into());
    }
    if a.force {
        return Err(UsageError(format!(
            "{address}: --force replaces one object; a store's versions are written once \
             (`osimage store forget` removes one)"
        ))
        .into());
    }
    // Before any request to the store: a file or a device (a USB stick holding the ISO) that
    // is there, or a URL that answers.
    let remote = remote_image(&a)?;
    let shown = source::shown(&a.image);
    let client = a.net.store_client(&address.root)?;
    // An encrypted store is unlocked before anything of it is read or any lock written.
    let unlock = a.keys.unlock()?;
    let store = Store::open_unlocked(client, address.root.clone(), &unlock)?;
    let opts = ImportOptions {
        image: PathBuf::from(&shown),
        series: address.series.clone(),
        tags: a.tag,
        index_cache: match (a.cache_dir, a.no_cache) {
            (_, true) => CacheChoice::Off,
            (Some(dir), false) => CacheChoice::Dir(dir),
            (None, false) => CacheChoice::Default,
        },
        decrypt: a.decrypt,
    };
    let r = match &remote {
        Some(object) => {
            let r =
                osimage::import_source_into_store(&store, &opts, object.bytes.clone(), &unlock, p);
            if let Some(line) = object.summary() {
                p.say(&line);
            }
            r?
        }
        None => osimage::import_into_store(&store, &opts, &unlock, p)?,
    };
    let c = &r.counts;
    if let Some((kernel, uploaded)) = &r.rescue {
        p.say(&match uploaded {
            0 => format!(
                "rescue kernel {kernel}: its kernel and initramfs were in the store already"
            ),
            n => format!(
                "rescue kernel {kernel}: stored as rescue blobs ({} uploaded)",
                show::bytes(*n)
            ),
        });
    }
    p.say(&format!(
        "{}: imported from {}; {} blocks read, {} of them in the store already ({} \
         referenced), {} carried: uploaded {} in {} new {}; index objects: {} fetched, {} \
         cached",
        r.shown,
        shown,
        c.blocks_read,
        c.referenced_blocks,
        show::count(c.referenced_packs, "pack", "packs"),
        c.carried_blocks,
        show::bytes(r.uploaded.bytes + r.version_bytes),
        r.uploaded.packs,
        if r.uploaded.packs == 1 {
            "pack"
        } else {
            "packs"
        },
        r.index_fetched,
        r.index_cached,
    ));
    Ok(0)
}

/// IMAGE opened over HTTP(S) when it is an http:// or https:// URL (docs/STORE.md §7: the
/// reading commands' reader, `--retry-for`, `--ca`, `--connections`); `None` for a local
/// file, which must exist. Any other address (`s3://…`) is refused: IMAGE is a file or a URL.
fn remote_image(a: &ImportArgs) -> Result<Option<source::Object>, Failure> {
    let is_http = a.image.to_str().is_some_and(osimage::is_url);
    if is_http {
        return Ok(Some(source::open_object(&a.image, &a.net)?));
    }
    if source::is_url(&a.image) {
        return Err(UsageError(format!(
            "{}: import reads IMAGE from a file or an http:// or https:// URL",
            source::shown(&a.image)
        ))
        .into());
    }
    std::fs::metadata(&a.image).map_err(|e| format!("{}: {e}", a.image.display()))?;
    Ok(None)
}
