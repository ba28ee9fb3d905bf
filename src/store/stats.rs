//! What `store ls --stats` shows besides the versions (docs/STORE.md §5.6): the counts a
//! LIST gives cheaply (packs and their bytes, index objects) and every lock with its holder
//! and whether it is stale (§2.7). One GET per lock, none per pack.

use super::locks::{ListedLock, StoreTimes};
use super::names::{self, INDEX, PACKS};
use super::objects::Lock;
use super::{ObjectError, Store, StoreError};

/// A store's counts and locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStats {
    pub packs: u64,
    pub pack_bytes: u64,
    pub index_objects: u64,
    /// Oldest refresh first.
    pub locks: Vec<LockStatus>,
}

/// One lock: as listed, and what it says (or why it cannot be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockStatus {
    pub listed: ListedLock,
    pub holder: Result<Lock, String>,
}

impl Store {
    /// The counts of §5.6 from LISTs of `packs/` and `index/`, and every lock judged with
    /// the stale window of `times`. A lock released between its listing and its GET is
    /// left out; one that does not decode is shown with the reason.
    pub fn stats(&self, times: &StoreTimes) -> Result<StoreStats, StoreError> {
        let mut stats = StoreStats {
            packs: 0,
            pack_bytes: 0,
            index_objects: 0,
            locks: Vec::new(),
        };
        for (rel, size) in self.list(PACKS)? {
            names::parse_pack_key(&rel).map_err(|e| ObjectError::new(&self.shown(&rel), e))?;
            stats.packs += 1;
            stats.pack_bytes += size;
        }
        for (rel, _) in self.list(INDEX)? {
            names::parse_index_key(&rel).map_err(|e| ObjectError::new(&self.shown(&rel), e))?;
            stats.index_objects += 1;
        }
        for listed in self.list_locks(times)? {
            let holder = match self.read_lock(&listed.id) {
                Ok(Some(lock)) => Ok(lock),
                Ok(None) => continue,
                Err(StoreError::Object(e)) => Err(e.problem),
                Err(e) => return Err(e),
            };
            stats.locks.push(LockStatus { listed, holder });
        }
        stats.locks.sort_by_key(|l| l.listed.last_modified);
        Ok(stats)
    }
}
