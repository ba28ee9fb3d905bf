//! The IMAGE argument of the reading commands (`info`, `list`, `verify`, `extract`,
//! `restore`): a path, or an `http://`/`https://` URL read with Range requests
//! (docs/STORE.md §7). Whatever is printed about a URL is `osimage::redact`'s form: a
//! presigned URL's query holds credentials.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use osimage::format::source::RangeRead;
use osimage::{HttpObject, PayloadReader, RetryPolicy, Trust, Unlock, s3};

use super::read_lock::{LockArgs, ReadLock};
use super::{Failure, UsageError};

/// The environment variable that sets `--retry-for` when the flag is not given.
pub const RETRY_FOR_ENV: &str = "OSIMAGE_RETRY_FOR";
/// Seconds between the `waiting for URL` lines of a request that keeps failing (default 10;
/// 0: none). Tests shorten it.
pub const WAITING_EVERY_ENV: &str = "OSIMAGE_WAITING_EVERY";
/// The environment variable that sets `--ca` when the flag is not given.
pub const CA_ENV: &str = "OSIMAGE_CA";
/// The environment variable that sets `--connections` when the flag is not given.
pub const CONNECTIONS_ENV: &str = "OSIMAGE_CONNECTIONS";

/// Reading IMAGE over HTTP(S).
#[derive(Debug, Args, Clone, Default)]
pub struct NetArgs {
    /// When IMAGE is an http:// or https:// URL: for how many seconds a request that fails
    /// for a passing reason (refused or dropped connection, timeout, HTTP 5xx or 429) is
    /// tried again, from its first failure, with growing pauses (default: 600, or the
    /// environment variable OSIMAGE_RETRY_FOR). 0 gives up at the first failure.
    #[arg(long, value_name = "SECS")]
    pub retry_for: Option<u64>,
    /// When IMAGE is an https:// URL: a PEM file of CA certificates (one CA or a bundle)
    /// trusted besides the bundled Mozilla roots, for a server whose certificate an internal
    /// CA signed (default: the environment variable OSIMAGE_CA). A file without a usable
    /// certificate is a usage error.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// When the image is read over HTTP or S3: how many requests fetch the blocks a read
    /// will need ahead of it, 1 to 32 (default: 4, or the environment variable
    /// OSIMAGE_CONNECTIONS). More help over a long round trip; each is one connection to
    /// the server.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=osimage::MAX_CONNECTIONS as i64))]
    pub connections: Option<u16>,
    /// When the image is read over HTTP or S3: how many MiB of blocks may be fetched ahead
    /// of the read and not read yet, 1 to 16384 (default 128). The memory a read takes
    /// grows with it.
    #[arg(long, value_name = "MiB",
          value_parser = clap::value_parser!(u64).range(1..=osimage::MAX_FETCH_CACHE_MIB))]
    pub fetch_cache: Option<u64>,
}

impl NetArgs {
    /// The retry policy: `--retry-for`, else `OSIMAGE_RETRY_FOR`, else the default.
    fn policy(&self) -> Result<RetryPolicy, UsageError> {
        let secs = match (self.retry_for, std::env::var(RETRY_FOR_ENV)) {
            (Some(s), _) => Some(s),
            (None, Ok(v)) => Some(v.trim().parse::<u64>().map_err(|_| {
                UsageError(format!("{RETRY_FOR_ENV}={v:?} is not a number of seconds"))
            })?),
            (None, Err(_)) => None,
        };
        let mut p = RetryPolicy::default();
        if let Some(s) = secs {
            p.retry_for = Duration::from_secs(s);
        }
        if let Ok(v) = std::env::var(WAITING_EVERY_ENV) {
            let secs = v.trim().parse::<u64>().map_err(|_| {
                UsageError(format!(
                    "{WAITING_EVERY_ENV}={v:?} is not a number of seconds"
                ))
            })?;
            p.waiting_every = Duration::from_secs(secs);
        }
        p.connections = match (self.connections, std::env::var(CONNECTIONS_ENV)) {
            (Some(n), _) => usize::from(n),
            (None, Ok(v)) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=osimage::MAX_CONNECTIONS).contains(n))
                .ok_or_else(|| {
                    UsageError(format!(
                        "{CONNECTIONS_ENV}={v:?} is not a number of connections from 1 to {}",
                        osimage::MAX_CONNECTIONS
                    ))
                })?,
            (None, Err(_)) => p.connections,
        };
        if let Some(mib) = self.fetch_cache {
            p.fetch_cache = mib << 20;
        }
        Ok(p)
    }

    /// The roots HTTPS trusts: the bundled ones, and `--ca` (else `OSIMAGE_CA`) besides.
    fn trust(&self) -> Result<Trust, UsageError> {
        self.trust_or(None)
    }

    /// As [`Self::trust`], with `fallback` (an S3 server's `AWS_CA_BUNDLE`) when neither
    /// `--ca` nor `OSIMAGE_CA` is given.
    fn trust_or(&self, fallback: Option<&Path>) -> Result<Trust, UsageError> {
        let env = std::env::var_os(CA_ENV).filter(|v| !v.is_empty());
        let file = self
            .ca
            .clone()
            .or(env.map(PathBuf::from))
            .or(fallback.map(Path::to_path_buf));
        match file {
            None => Ok(Trust::default()),
            Some(file) => Trust::with_ca_file(&file).map_err(|e| UsageError(e.to_string())),
        }
    }

    /// A client for `address`'s bucket, with the AWS settings of this process.
    pub fn s3_client(&self, address: &s3::S3Address) -> Result<s3::S3Client, Failure> {
        let settings =
            s3::S3Settings::from_env().map_err(|e| UsageError(format!("{address}: {e}")))?;
        self.s3_client_with(&settings, address)
    }

    /// A client for `address`'s bucket with `settings` (a schedule's credentials file).
    pub fn s3_client_with(
        &self,
        settings: &s3::S3Settings,
        address: &s3::S3Address,
    ) -> Result<s3::S3Client, Failure> {
        let trust = self.trust_or(settings.ca_bundle.as_deref())?;
        Ok(
            s3::S3Client::new(settings, &address.bucket, self.policy()?, &trust)
                .map_err(|e| UsageError(format!("{address}: {e}")))?,
        )
    }

    /// A client for the bucket of the store at `root`; errors name the store's `config`.
    pub fn store_client(&self, root: &osimage::store::StoreRoot) -> Result<s3::S3Client, Failure> {
        self.s3_client(&s3::S3Address {
            bucket: root.bucket.clone(),
            key: root.key("config"),
        })
    }

    /// [`Self::store_client`] with `settings` instead of this process's.
    pub fn store_client_with(
        &self,
        settings: &s3::S3Settings,
        root: &osimage::store::StoreRoot,
    ) -> Result<s3::S3Client, Failure> {
        self.s3_client_with(
            settings,
            &s3::S3Address {
                bucket: root.bucket.clone(),
                key: root.key("config"),
            },
        )
    }
}

/// An opened image, and the HTTP object under it when it was given as a URL.
pub struct Opened {
    pub reader: PayloadReader,
    /// How the image is named in output: the path, or the URL without its query.
    pub shown: PathBuf,
    /// The objects read over HTTP: a URL's, or a store version's object and its packs.
    remote: Vec<Arc<HttpObject>>,
    /// The Read lock held on the store of a version opened by [`open_locked`].
    lock: std::cell::Cell<Option<super::read_lock::ReadLock>>,
}

/// Whether IMAGE is a URL (`http://`, `https://`, `s3://`) rather than a path.
pub fn is_url(image: &Path) -> bool {
    image
        .to_str()
        .is_some_and(|s| osimage::is_url(s) || s3::is_s3(s))
}

/// IMAGE as output shows it: the path, or the URL without its query.
pub fn shown(image: &Path) -> String {
    match image.to_str().filter(|s| osimage::is_url(s)) {
        Some(url) => osimage::redact(url),
        None => image.display().to_string(),
    }
}

/// The key endings of an image kept whole as one S3 object.
const OBJECT_SUFFIXES: [&str; 2] = [".iso", ".oimg"];

/// IMAGE's S3 address, if it is one: an image kept whole as one object. Other `s3://`
/// addresses name images in a store (docs/STORE.md), which is not built yet.
pub fn s3_address(image: &Path) -> Result<Option<s3::S3Address>, UsageError> {
    let Some(text) = image.to_str().filter(|s| s3::is_s3(s)) else {
        return Ok(None);
    };
    let a = s3::S3Address::parse(text).map_err(|e| UsageError(e.to_string()))?;
    let name = a.file_name().to_ascii_lowercase();
    if !OBJECT_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return Err(UsageError(format!(
            "{a}: an image kept in S3 is one object whose key ends in .iso or .oimg; \
             this command does not read versions in an osimage store (docs/STORE.md) yet"
        )));
    }
    Ok(Some(a))
}

/// IMAGE's address in an osimage store (`s3://BUCKET/PREFIX/NAME[@VERSION]`), when it is
/// one: an `s3://` address whose key does not end in .iso or .oimg.
pub fn store_address(image: &Path) -> Result<Option<osimage::store::ImageAddress>, UsageError> {
    let Some(text) = image.to_str().filter(|s| s3::is_s3(s)) else {
        return Ok(None);
    };
    let lower = text.to_ascii_lowercase();
    if OBJECT_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
        return Ok(None);
    }
    osimage::store::ImageAddress::parse(text)
        .map(Some)
        .map_err(|e| UsageError(e.to_string()))
}

/// The version an address names: its @VERSION, else the newest of its series; a forgotten
/// one is refused, or passed over.
pub(crate) fn version_named(
    store: &osimage::store::Store,
    address: &osimage::store::ImageAddress,
) -> Result<String, Failure> {
    // A version an unswept condemnation holds is gone for new readers (STORE.md §5.2).
    let forgotten = store.forgotten()?;
    match &address.version {
        Some(v) => {
            store.check_not_forgotten(&address.series, v, &forgotten)?;
            Ok(v.clone())
        }
        None => Ok(store
            .newest_kept(&address.series, &forgotten)?
            .ok_or_else(|| {
                format!(
                    "{address}: the store has no version of {} (osimage store ls {})",
                    address.series, address.root
                )
            })?),
    }
}

/// Opens the version IMAGE names in a store: the newest of its series unless @VERSION; with
/// `lock`, under a Read lock taken before the version is read (`--no-lock`: none).
fn open_in_store(
    address: &osimage::store::ImageAddress,
    unlock: &Unlock,
    net: &NetArgs,
    lock: Option<LockArgs>,
) -> Result<Opened, Failure> {
    let client = net.store_client(&address.root)?;
    // An encrypted store is unlocked before anything of it is read or any lock written.
    let store = osimage::store::Store::open_unlocked(client, address.root.clone(), unlock)?;
    let lock = match lock {
        Some(args) => ReadLock::take(&store, &address.series, args)?,
        None => None,
    };
    let version = version_named(&store, address)?;
    let open = osimage::store::read::open_version(&store, &address.series, &version)?;
    Ok(Opened {
        reader: open.reader,
        shown: open.name,
        remote: vec![open.version_object, open.packs],
        lock: lock.into(),
    })
}

/// Opens IMAGE, a path or a URL, with `unlock` for an encrypted one. A version in a store is
/// opened without a lock: for the commands that read one object of it (`info`, `list`,
/// `diff`).
pub fn open(image: &Path, unlock: &Unlock, net: &NetArgs) -> Result<Opened, Failure> {
    open_with(image, unlock, net, None)
}

/// [`open`] for a long read (`extract`, `verify`, `restore`): a version in a store is opened
/// under a Read lock (docs/STORE.md §5.1) unless `--no-lock`; [`Opened::release_lock`] or
/// the drop deletes it.
pub fn open_locked(
    image: &Path,
    unlock: &Unlock,
    net: &NetArgs,
    lock: LockArgs,
) -> Result<Opened, Failure> {
    open_with(image, unlock, net, Some(lock))
}

fn open_with(
    image: &Path,
    unlock: &Unlock,
    net: &NetArgs,
    lock: Option<LockArgs>,
) -> Result<Opened, Failure> {
    if let Some(address) = store_address(image)? {
        return open_in_store(&address, unlock, net, lock);
    }
    if !is_url(image) {
        return Ok(Opened {
            reader: PayloadReader::open(image, unlock)?,
            shown: image.to_path_buf(),
            remote: Vec::new(),
            lock: None.into(),
        });
    }
    let o = open_object(image, net)?;
    let reader = PayloadReader::open_source(&o.shown, o.bytes, unlock)?;
    Ok(Opened {
        reader,
        shown: o.shown,
        remote: o.remote.into_iter().collect(),
        lock: None.into(),
    })
}

/// IMAGE's bytes, not opened as an image: a local file or an HTTP object (what `netboot`
/// reads an ISO's rescue files through), with how output names it.
pub fn open_object(image: &Path, net: &NetArgs) -> Result<Object, Failure> {
    if let Some(address) = s3_address(image)? {
        let object = Arc::new(net.s3_client(&address)?.open(&address.key)?);
        return Ok(Object {
            bytes: object.clone(),
            shown: image.to_path_buf(),
            remote: Some(object),
        });
    }
    let Some(url) = image.to_str().filter(|s| osimage::is_url(s)) else {
        let file =
            std::fs::File::open(image).map_err(|e| format!("opening {}: {e}", image.display()))?;
        return Ok(Object {
            bytes: Arc::new(file),
            shown: image.to_path_buf(),
            remote: None,
        });
    };
    let object = Arc::new(HttpObject::open(url, net.policy()?, &net.trust()?)?);
    Ok(Object {
        bytes: object.clone(),
        shown: PathBuf::from(osimage::redact(url)),
        remote: Some(object),
    })
}

/// IMAGE's bytes as [`open_object`] opened them.
pub struct Object {
    pub bytes: Arc<dyn RangeRead>,
    /// How output names IMAGE: the path, or the URL without its query.
    pub shown: PathBuf,
    remote: Option<Arc<HttpObject>>,
}

impl Object {
    /// For an object read over HTTP, what it cost: one line for stderr.
    pub fn summary(&self) -> Option<String> {
        cost_line(&self.shown, std::slice::from_ref(self.remote.as_ref()?))
    }
}

/// Refuses a URL where only a local file will do (`what` names the option that needs one).
pub fn local_only(image: &Path, what: &str) -> Result<(), UsageError> {
    if is_url(image) {
        return Err(UsageError(format!(
            "{what} needs a local image file, not a URL"
        )));
    }
    Ok(())
}

impl Opened {
    /// Deletes the store's Read lock, if one is held: the read is over.
    pub fn release_lock(&self, progress: &dyn osimage::Progress) {
        if let Some(lock) = self.lock.take() {
            lock.release(progress);
        }
    }

    /// The store's Read lock, if one is held, for a caller that keeps it apart from the
    /// reader (dropping it deletes the lock).
    pub fn take_lock(&self) -> Option<super::read_lock::ReadLock> {
        self.lock.take()
    }

    /// For an image read over HTTP (a URL, or a version in a store), what it cost: one line
    /// for stderr.
    pub fn summary(&self) -> Option<String> {
        cost_line(&self.shown, &self.remote)
    }
}

/// What reading `objects` cost, as `summary` says it; `None` when nothing was read over HTTP.
fn cost_line(shown: &Path, objects: &[Arc<HttpObject>]) -> Option<String> {
    let stats = objects
        .iter()
        .map(|o| o.stats())
        .reduce(osimage::NetStats::plus)?;
    Some(format!("{}: {}", shown.display(), stats.describe()))
}
