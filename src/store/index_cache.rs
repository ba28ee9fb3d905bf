//! The index a capture loads (docs/STORE.md §4.1): every `index/` object of the store, read
//! from a local cache where it has them and fetched (and kept) where not. The cache is
//! `$XDG_CACHE_HOME/osimage/stores/<store id hex>/index/` (default `~/.cache/osimage/…`, or
//! `DIR/stores/…` with `--cache-dir DIR`), one file per index object named as the object is.
//! An index object's name is the hash of its bytes, so a cached file is checked against its
//! own name before it is believed: a damaged one is dropped and fetched again, never used.
//! Files whose objects the store's LIST no longer shows (consolidated or removed by a prune)
//! are deleted. The cache only saves GETs: when it cannot be used, every object is fetched.

use std::path::{Path, PathBuf};

use super::objects::frame::{HEADER_LEN, Kind};
use super::objects::{StoreIndex, decode_index, index_object_name};
use super::{Store, StoreError, names};

/// Where a capture keeps the index objects it read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheChoice {
    /// `$XDG_CACHE_HOME/osimage`, else `$HOME/.cache/osimage`.
    #[default]
    Default,
    /// `--cache-dir DIR`: DIR in place of `…/osimage`.
    Dir(PathBuf),
    /// `--no-cache`: nothing kept; every index object is fetched.
    Off,
}

/// The store's index as loaded, and how.
pub struct LoadedIndex {
    /// Each index object with its address (for messages), in the LIST's order.
    pub objects: Vec<(String, StoreIndex)>,
    /// Index objects fetched from the store (GETs).
    pub fetched: u64,
    /// Index objects read from the cache.
    pub cached: u64,
}

/// The cache folder of `store`'s index objects under `choice`; `None` for `--no-cache`, or
/// when neither XDG_CACHE_HOME (absolute) nor HOME is set.
pub fn cache_dir(choice: &CacheChoice, store_id: &[u8; 16]) -> Option<PathBuf> {
    let base = match choice {
        CacheChoice::Off => return None,
        CacheChoice::Dir(d) => d.clone(),
        CacheChoice::Default => {
            let xdg = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute());
            match xdg {
                Some(x) => x.join("osimage"),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/osimage"),
            }
        }
    };
    Some(base.join("stores").join(names::hex(store_id)).join("index"))
}

/// The largest index object there can be: a cached file longer than this is damaged.
fn max_len() -> u64 {
    HEADER_LEN as u64 + Kind::Index.max_stored()
}

/// Every index object of `store`, from the cache folder `dir` where it holds a good copy,
/// else fetched (and kept there). `note` is told of damaged copies and an unusable folder
/// (as warnings: a damaged copy says the disk under the cache is failing) and of objects
/// that could not be kept.
pub fn load_index(
    store: &Store,
    dir: Option<&Path>,
    note: &mut dyn FnMut(String),
) -> Result<LoadedIndex, StoreError> {
    let names_listed = store.list_index()?;
    let dir = dir.and_then(|d| match std::fs::create_dir_all(d) {
        Ok(()) => Some(d),
        Err(e) => {
            note(format!(
                "warning: the index cache {} cannot be used ({e}): every index object is \
                 fetched",
                d.display()
            ));
            None
        }
    });
    let mut loaded = LoadedIndex {
        objects: Vec::with_capacity(names_listed.len()),
        fetched: 0,
        cached: 0,
    };
    for name in &names_listed {
        let shown = store.shown(&names::index_key(name));
        let path = dir.map(|d| d.join(names::hex(name)));
        if let Some(p) = &path {
            match read_cached(p, &shown, name, store.keys()) {
                Ok(Some(index)) => {
                    loaded.cached += 1;
                    loaded.objects.push((shown, index));
                    continue;
                }
                Ok(None) => {}
                Err(why) => {
                    note(format!(
                        "warning: the cached copy of {shown} is damaged ({why}): dropped and \
                         fetched again"
                    ));
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        // A prune's sweep deletes an index object after it PUT its replacement (§5.2): one
        // gone since the listing only leaves its packs out of this dedup.
        let max = (HEADER_LEN as u64) + Kind::Index.max_stored();
        let Some(bytes) = store
            .client
            .get(&store.root.key(&names::index_key(name)), max)?
        else {
            note(format!(
                "{shown} was deleted since the listing (replaced by a prune): its packs are \
                 not deduplicated against"
            ));
            continue;
        };
        let index = decode_index(&shown, &bytes, Some(name), store.keys())?;
        loaded.fetched += 1;
        if let Some(d) = dir
            && let Err(e) = keep(d, name, &bytes)
        {
            note(format!(
                "{shown} is not kept in the index cache {} ({e})",
                d.display()
            ));
        }
        loaded.objects.push((shown, index));
    }
    if let Some(d) = dir {
        forget_unlisted(d, &names_listed);
    }
    Ok(loaded)
}

/// The cached copy at `path`, checked against `name`; `None` when there is none, why not
/// when it is there but damaged.
fn read_cached(
    path: &Path,
    shown: &str,
    name: &[u8; 32],
    keys: Option<&super::crypt::StoreKeys>,
) -> Result<Option<StoreIndex>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len > max_len() {
        return Err(format!("{len} bytes, more than an index object has"));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(file, max_len()), &mut bytes)
        .map_err(|e| e.to_string())?;
    if index_object_name(&bytes) != *name {
        return Err("its bytes do not hash to its name".into());
    }
    decode_index(shown, &bytes, Some(name), keys)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Writes `bytes` as the cached copy of index object `name` in `dir`, whole or not at all.
pub(crate) fn keep(dir: &Path, name: &[u8; 32], bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(dir.join(names::hex(name)))
        .map_err(|e| e.error)?;
    Ok(())
}

/// Deletes the cached copies of index objects the store no longer lists. Other files (a
/// temporary file of a capture running beside this one) are left alone.
fn forget_unlisted(dir: &Path, listed: &[[u8; 32]]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(name) = file.to_str().and_then(names::from_hex::<32>) else {
            continue;
        };
        if !listed.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_folder_follows_the_choice() {
        let id = [0xab; 16];
        let tail = format!("stores/{}/index", "ab".repeat(16));
        assert_eq!(cache_dir(&CacheChoice::Off, &id), None);
        assert_eq!(
            cache_dir(&CacheChoice::Dir("/var/cache/x".into()), &id),
            Some(PathBuf::from("/var/cache/x").join(&tail))
        );
    }

    #[test]
    fn a_cached_copy_is_believed_only_when_it_hashes_to_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let index = StoreIndex::default();
        let bytes = super::super::objects::encode_index(&index, None).unwrap();
        let name = index_object_name(&bytes);
        keep(dir.path(), &name, &bytes).unwrap();
        let path = dir.path().join(names::hex(&name));
        assert_eq!(read_cached(&path, "x", &name, None), Ok(Some(index)));
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let why = read_cached(&path, "x", &name, None).unwrap_err();
        assert!(why.contains("do not hash to its name"), "{why}");
        std::fs::write(&path, vec![0u8; max_len() as usize + 1]).unwrap();
        assert!(read_cached(&path, "x", &name, None).is_err());
        let other = dir.path().join(names::hex(&[1; 32]));
        assert_eq!(read_cached(&other, "x", &[1; 32], None), Ok(None));

        // Copies of objects the store no longer lists go; other files stay.
        std::fs::write(&other, b"stale").unwrap();
        std::fs::write(dir.path().join("tmp.partial"), b"x").unwrap();
        keep(dir.path(), &name, &bytes).unwrap();
        forget_unlisted(dir.path(), &[name]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [names::hex(&name), "tmp.partial".to_string()]);
    }
}
