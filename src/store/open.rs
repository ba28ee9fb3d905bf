//! A store opened through its `config` (docs/STORE.md §2): what is in it (LISTs of
//! `images/` and `index/`), the heads of its versions (a Range GET of each object's start),
//! and the writes of `store init`, index objects and version objects. Every object read is
//! checked against its name before it is believed.

use chrono::Utc;

use super::crypt::{self, KEYS, StoreKeys};
use super::names::{self, CONFIG, IMAGES, INDEX};
use super::objects::frame::{HEADER_LEN, Kind};
use super::objects::version::PREFIX_LEN;
use super::objects::{
    StoreConfig, StoreIndex, VersionHead, decode_config, decode_head, decode_head_sealed,
    decode_index, decode_version_prefix, encode_config, encode_version_with,
};
use super::{StoreError, StoreRoot};
use crate::format::manifest::Timestamp;
use crate::format::source::RangeRead as _;
use crate::remote::s3::{S3Client, S3Error};

/// How much of a version object the first read of its head takes (§2.5): most heads fit,
/// a larger one costs a second read.
pub const HEAD_READ: u64 = 64 << 10;

/// The largest key object read (§2.2: a key record, at most 64 KiB of age).
pub const MAX_KEY_OBJECT: u64 = 64 + (64 << 10);

/// An opened store. A clone shares its client (and its keys).
#[derive(Clone)]
pub struct Store {
    /// Shared with the threads that upload a capture's packs.
    pub client: std::sync::Arc<S3Client>,
    pub root: StoreRoot,
    /// The store id: `config`'s nonce, in every store pack's header (§2.3).
    pub id: [u8; 16],
    pub config: StoreConfig,
    /// An encrypted store's keys (§6), unlocked by [`Store::open_unlocked`].
    pub keys: Option<std::sync::Arc<StoreKeys>>,
    /// The key object that unlocked them (`keys/<32 hex>`, relative to the store).
    pub unlocked_by: Option<String>,
}

/// One version object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedVersion {
    /// The series' name (read from a head in an encrypted store, whose keys hide it).
    pub series: String,
    /// Its folder under `images/`: the name, or in an encrypted store its keyed name (§6).
    pub dir: String,
    pub version: String,
    /// The object's length: its head and manifest frame.
    pub size: u64,
}

impl ListedVersion {
    /// The object's key relative to the store (`images/DIR/VERSION`), as condemnations name it.
    pub fn key(&self) -> String {
        names::version_key(&self.dir, &self.version)
    }
}

impl Store {
    /// Creates the store at `root` with `config` and a new random id, unless a `config` is
    /// there already (`store init` never replaces a store). The check and the PUT are not
    /// atomic (S3 has no conditional PUT on every server, §3): two inits racing on one prefix
    /// is the one case it does not cover. An encrypted store (`lock`, §6) gets a random data
    /// key wrapped for `lock` in one `keys/` object, PUT before `config`, so a config that
    /// says "encrypted" never exists without its key.
    pub fn init(
        client: S3Client,
        root: StoreRoot,
        mut config: StoreConfig,
        lock: Option<&crate::envelope::keys::Lock>,
    ) -> Result<Store, StoreError> {
        config.encrypted = lock.is_some();
        let key = root.key(CONFIG);
        if client.head(&key)?.is_some() {
            return Err(StoreError::Exists(root.to_string()));
        }
        let id = super::random_bytes::<16>()?;
        let keys = match lock {
            Some(lock) => {
                let (keys, record) =
                    crypt::new_store_key(lock, id).map_err(|e| StoreError::Unlock(Box::new(e)))?;
                let rel = format!("{KEYS}{}", names::hex(&super::random_bytes::<16>()?));
                client.put(&root.key(&rel), &record)?;
                Some(std::sync::Arc::new(keys))
            }
            None => None,
        };
        let bytes = encode_config(&root.shown(CONFIG), &config, &id)?;
        client.put(&key, &bytes)?;
        Ok(Store {
            client: client.into(),
            root,
            id,
            config,
            keys,
            unlocked_by: None,
        })
    }

    /// Opens the store at `root` for `what` (a command that reads plain stores only, named in
    /// the refusal of an encrypted store): its `config`, decoded and checked. A prefix without
    /// one is no store (a typo never creates one: only `store init` does).
    pub fn open(client: S3Client, root: StoreRoot, what: &str) -> Result<Store, StoreError> {
        let store = Self::open_config(client, root)?;
        if store.config.encrypted {
            return Err(StoreError::Unsupported(format!(
                "{}: an encrypted store; {what} is not built for encrypted stores yet (capture \
                 and the reading commands are: docs/STORE.md §6)",
                store.root
            )));
        }
        Ok(store)
    }

    /// Opens the store at `root`, plain or encrypted: an encrypted one is unlocked with
    /// `unlock` from its `keys/` objects (§2.2: each is tried until one opens).
    pub fn open_unlocked(
        client: S3Client,
        root: StoreRoot,
        unlock: &crate::envelope::Unlock,
    ) -> Result<Store, StoreError> {
        let mut store = Self::open_config(client, root)?;
        store.unlock_with(unlock)?;
        Ok(store)
    }

    /// Unlocks a store opened by [`Store::open_config`] with `unlock` when it is encrypted
    /// (§2.2: each key object is tried until one opens); a plain store is left as it is.
    pub fn unlock_with(&mut self, unlock: &crate::envelope::Unlock) -> Result<(), StoreError> {
        if !self.config.encrypted || self.keys.is_some() {
            return Ok(());
        }
        let mut records = Vec::new();
        let listed = self.list(KEYS)?;
        for (rel, _) in &listed {
            let bytes = self
                .client
                .get(&self.root.key(rel), MAX_KEY_OBJECT)?
                .ok_or_else(|| super::ObjectError::new(&self.shown(rel), "listed, then gone"))?;
            records.push(bytes);
        }
        let shown = std::path::PathBuf::from(self.root.to_string());
        let (keys, at) = crypt::unlock_store_at(&records, self.id, unlock, &shown)
            .map_err(|e| StoreError::Unlock(Box::new(e)))?;
        self.keys = Some(std::sync::Arc::new(keys));
        self.unlocked_by = listed.get(at).map(|(rel, _)| rel.clone());
        Ok(())
    }

    /// Opens the store at `root` through its `config` alone, decoded and checked, without
    /// unlocking an encrypted one (`config.encrypted` says whether [`Store::unlock_with`] is
    /// needed before anything else is read): for a caller that decides how to unlock from
    /// what the store is (a scheduled run, docs/SCHEDULE.md).
    pub fn open_config(client: S3Client, root: StoreRoot) -> Result<Store, StoreError> {
        let max = (HEADER_LEN as u64) + Kind::Config.max_stored();
        let Some(bytes) = client.get(&root.key(CONFIG), max)? else {
            return Err(StoreError::NoStore(root.to_string()));
        };
        let (config, id) = decode_config(&root.shown(CONFIG), &bytes)?;
        Ok(Store {
            client: client.into(),
            root,
            id,
            config,
            keys: None,
            unlocked_by: None,
        })
    }

    /// The keys of an encrypted store, as the object codecs take them.
    pub fn keys(&self) -> Option<&StoreKeys> {
        self.keys.as_deref()
    }

    /// The key of the pack `id`, relative to the store: named by its id, or in an encrypted
    /// store by its keyed name (§6).
    pub fn pack_rel(&self, id: &[u8; 32]) -> String {
        match self.keys() {
            Some(k) => names::pack_key(&k.pack_name(id)),
            None => names::pack_key(id),
        }
    }

    /// The name a pack's object is listed under and condemnations hold (§2.7): its id, or in
    /// an encrypted store its keyed name (§6 "As built": a LIST shows nothing else, so a
    /// prune knows a crashed capture's pack by that name alone).
    pub fn pack_object(&self, id: &[u8; 32]) -> [u8; 32] {
        match self.keys() {
            Some(k) => k.pack_name(id),
            None => *id,
        }
    }

    /// How many bytes the object of a pack of `plain` bytes has: sealed in an encrypted store.
    pub fn stored_pack_len(&self, plain: u64) -> u64 {
        match self.keys() {
            Some(_) => crate::envelope::stream::sealed_len(plain),
            None => plain,
        }
    }

    /// The folder name of `series` under `images/`: the name, or its keyed name (§6).
    pub fn series_dir(&self, series: &str) -> String {
        match self.keys() {
            Some(k) => k.series_name(series),
            None => series.to_string(),
        }
    }

    /// The key of a version object, relative to the store.
    pub fn version_rel(&self, series: &str, version: &str) -> String {
        names::version_key(&self.series_dir(series), version)
    }

    /// A new random nonce for a version object of an encrypted store, and its manifest frame
    /// sealed with it (§6 "As built"); a plain store's frame as it is, and no nonce.
    pub fn seal_frame(&self, frame: Vec<u8>) -> Result<(Option<[u8; 16]>, Vec<u8>), StoreError> {
        let Some(k) = self.keys() else {
            return Ok((None, frame));
        };
        let nonce = super::random_bytes::<16>()?;
        let cipher = k.version(&nonce, crypt::VERSION_MANIFEST);
        Ok((
            Some(nonce),
            crate::envelope::seal_manifest_with(cipher, &frame),
        ))
    }

    /// A config for a new plain store made now (for `store init`).
    pub fn new_config(pack_size: u32, zstd_level: i32) -> StoreConfig {
        let now = Utc::now();
        StoreConfig::new(
            Timestamp {
                sec: now.timestamp(),
                nsec: now.timestamp_subsec_nanos(),
            },
            pack_size,
            zstd_level,
        )
    }

    /// `rel`'s address, as messages name it.
    pub fn shown(&self, rel: &str) -> String {
        self.root.shown(rel)
    }

    /// The store's keys under `rel_prefix`, relative to the store, with their sizes.
    pub(super) fn list(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let listing = self.client.list(&self.root.key(rel_prefix))?;
        listing
            .objects
            .into_iter()
            .map(|o| Ok((self.root.listed_relative(&o.key)?.to_string(), o.size)))
            .collect()
    }

    /// Every version object, of `series` or of all of them, ordered by series and then
    /// oldest first (the keys' order). A key under `images/` that is not a version's is an
    /// error naming it: nothing but osimage writes there. In an encrypted store listing all
    /// of them reads the head of each folder's newest version to learn its series' name
    /// (§6 "As built": one GET per series).
    pub fn list_versions(&self, series: Option<&str>) -> Result<Vec<ListedVersion>, StoreError> {
        let mut out = self.list_version_keys(series)?;
        if series.is_none() && self.keys().is_some() {
            let mut named: std::collections::HashMap<String, String> = Default::default();
            for v in out.iter().rev() {
                if !named.contains_key(&v.dir) {
                    let head = self.read_head_at(&v.dir, &v.version)?;
                    named.insert(v.dir.clone(), head.series);
                }
            }
            for v in &mut out {
                v.series = named[&v.dir].clone();
            }
            out.sort_by(|a, b| (&a.series, &a.version).cmp(&(&b.series, &b.version)));
        }
        Ok(out)
    }

    /// The version objects as listed: in an encrypted store without `series` each
    /// [`ListedVersion::series`] is its folder's keyed name.
    pub fn list_version_keys(
        &self,
        series: Option<&str>,
    ) -> Result<Vec<ListedVersion>, StoreError> {
        let prefix = match series {
            Some(s) => {
                names::check_series(s).map_err(|e| StoreError::Address(format!("{s:?}: {e}")))?;
                names::series_prefix(&self.series_dir(s))
            }
            None => IMAGES.to_string(),
        };
        let mut out = Vec::new();
        for (rel, size) in self.list(&prefix)? {
            let (dir, version) = names::parse_version_key(&rel)
                .map_err(|e| StoreError::Object(super::ObjectError::new(&self.shown(&rel), e)))?;
            // In an encrypted store only the series asked for has a name: the others are
            // their keyed folder names.
            let series = series.map_or_else(|| dir.clone(), str::to_string);
            out.push(ListedVersion {
                series,
                dir,
                version,
                size,
            });
        }
        out.sort_by(|a, b| (&a.series, &a.version).cmp(&(&b.series, &b.version)));
        Ok(out)
    }

    /// The names of the store's series, in order.
    pub fn series(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .list_versions(None)?
            .into_iter()
            .map(|v| v.series)
            .collect();
        names.dedup();
        Ok(names)
    }

    /// The versions of `series`, oldest first.
    pub fn versions(&self, series: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_versions(Some(series))?
            .into_iter()
            .map(|v| v.version)
            .collect())
    }

    /// The newest version of `series`, if it has any.
    pub fn newest(&self, series: &str) -> Result<Option<String>, StoreError> {
        Ok(self.versions(series)?.pop())
    }

    /// The head of `series`'s `version`: one Range GET of the object's first 64 KiB, a
    /// second only for a longer head; checked against its hash and against the name it
    /// was read under.
    pub fn read_head(&self, series: &str, version: &str) -> Result<VersionHead, StoreError> {
        let head = self.read_head_at(&self.series_dir(series), version)?;
        if head.series != series {
            let rel = self.version_rel(series, version);
            return Err(super::ObjectError::new(
                &self.shown(&rel),
                format!(
                    "its head is the one of {}@{}, not of its name",
                    head.series, head.version
                ),
            )
            .into());
        }
        Ok(head)
    }

    /// The head of `version` in the series folder `dir` (§6: a keyed name in an encrypted
    /// store), read and checked as [`Store::read_head`] does: its series must have that
    /// folder and its version that name.
    pub fn read_head_at(&self, dir: &str, version: &str) -> Result<VersionHead, StoreError> {
        let rel = names::version_key(dir, version);
        let shown = self.shown(&rel);
        let object = self
            .client
            .open(&self.root.key(&rel))
            .map_err(|e| S3Error::Request(e.to_string()))?;
        let read = |at: u64, len: u64| -> Result<Vec<u8>, StoreError> {
            let mut buf = vec![0u8; len as usize];
            object
                .read_exact_at(&mut buf, at)
                .map_err(|e| S3Error::Request(format!("{shown}: {e}")))?;
            Ok(buf)
        };
        let len = object.len();
        let first = read(0, len.min(HEAD_READ))?;
        let prefix = decode_version_prefix(&shown, &first)?;
        if prefix.total_len() != len {
            return Err(super::ObjectError::new(
                &shown,
                format!(
                    "{len} bytes where its prefix says {} (truncated or damaged)",
                    prefix.total_len()
                ),
            )
            .into());
        }
        let head_end = PREFIX_LEN + prefix.head_len as usize;
        let stored = if head_end <= first.len() {
            first[PREFIX_LEN..head_end].to_vec()
        } else {
            read(PREFIX_LEN as u64, prefix.head_len)?
        };
        let head = match self.keys() {
            Some(k) => decode_head_sealed(&shown, &prefix, &stored, k)?.0,
            None => decode_head(&shown, &prefix, &stored)?,
        };
        if self.series_dir(&head.series) != dir || head.version != version {
            return Err(super::ObjectError::new(
                &shown,
                format!(
                    "its head is the one of {}@{}, not of its name",
                    head.series, head.version
                ),
            )
            .into());
        }
        Ok(head)
    }

    /// Commits a version: `head` and the manifest `frame` in one PUT under
    /// `images/<head.series>/<head.version>`, refused when that object exists (versions are
    /// written once). Returns the key relative to the store and the object's length. In an
    /// encrypted store `frame` and `nonce` are what [`Store::seal_frame`] gave.
    pub fn put_version(
        &self,
        head: &VersionHead,
        frame: &[u8],
        nonce: Option<[u8; 16]>,
    ) -> Result<(String, u64), StoreError> {
        let rel = self.version_rel(&head.series, &head.version);
        let seal = match (self.keys(), nonce) {
            (Some(k), Some(n)) => Some((k, n)),
            (None, None) => None,
            _ => {
                return Err(StoreError::Unsupported(
                    "internal: a version's frame sealed for another kind of store".into(),
                ));
            }
        };
        let bytes = encode_version_with(head, frame, seal).map_err(|mut e| {
            e.object = self.shown(&rel);
            e
        })?;
        let key = self.root.key(&rel);
        if self.client.head(&key)?.is_some() {
            return Err(super::ObjectError::new(
                &self.shown(&rel),
                "exists already: a version is written once",
            )
            .into());
        }
        self.client.put(&key, &bytes)?;
        Ok((rel, bytes.len() as u64))
    }

    /// Writes `index` as a new index object; returns its name (`index/<hex of it>`).
    pub fn put_index(&self, index: &StoreIndex) -> Result<[u8; 32], StoreError> {
        super::checkpoint::put_index(&self.client, &self.root, index, self.keys.clone())
    }

    /// The names of every index object.
    pub fn list_index(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        self.list(INDEX)?
            .into_iter()
            .map(|(rel, _)| {
                names::parse_index_key(&rel)
                    .map_err(|e| StoreError::Object(super::ObjectError::new(&self.shown(&rel), e)))
            })
            .collect()
    }

    /// The index object `name`, checked against its name before it is decoded.
    pub fn get_index(&self, name: &[u8; 32]) -> Result<StoreIndex, StoreError> {
        let bytes = self.get_index_bytes(name)?;
        Ok(decode_index(
            &self.shown(&names::index_key(name)),
            &bytes,
            Some(name),
            self.keys(),
        )?)
    }

    /// The bytes of the index object `name` as stored (at most an index object's largest
    /// size), not yet checked: `decode_index` with the name checks them.
    pub fn get_index_bytes(&self, name: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let rel = names::index_key(name);
        let max = (HEADER_LEN as u64) + Kind::Index.max_stored();
        let bytes = self.client.get(&self.root.key(&rel), max)?.ok_or_else(|| {
            super::ObjectError::new(&self.shown(&rel), "missing (listed, then gone?)")
        })?;
        Ok(bytes)
    }
}
