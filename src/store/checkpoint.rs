//! Index checkpoints of a capture into a store (docs/STORE.md §2.4, §4.3 step 2, §4.4): an
//! index object after every [`PACKS_PER_INDEX`] packs whose PUTs completed, and one for the
//! rest when the capture ends (committed, failed or interrupted). A later capture reuses every
//! pack an index object names, so a capture stopped midway has uploaded for nothing only the
//! packs since its last index object; and since an index object lists only packs already up,
//! it never names a pack that is not in the store.
//!
//! The upload threads report each completed pack ([`Checkpoints::uploaded`]); index objects
//! are written one at a time (a second writer, such as the interrupt's, waits for a PUT in
//! flight, so no pack is lost between them).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::crypt::StoreKeys;
use super::objects::{IndexPack, StoreIndex, encode_index, index_object_name};
use super::{StoreError, StoreRoot, names};
use crate::remote::s3::S3Client;

/// Packs per index object: ~2 GiB at the default pack size (§2.4).
pub const PACKS_PER_INDEX: usize = 64;

/// Test-only: lowers [`PACKS_PER_INDEX`] so a test's few small packs span several index
/// objects. A positive integer; anything else fails the capture. Not for production use.
pub const PACKS_PER_INDEX_VAR: &str = "OSIMAGE_TEST_PACKS_PER_INDEX";

/// The number of packs per index object: [`PACKS_PER_INDEX`], or the test-only
/// [`PACKS_PER_INDEX_VAR`] when set.
pub fn packs_per_index() -> Result<usize, StoreError> {
    let Some(v) = std::env::var_os(PACKS_PER_INDEX_VAR) else {
        return Ok(PACKS_PER_INDEX);
    };
    parse_every(v.to_str().unwrap_or(""))
        .ok_or_else(|| StoreError::Address(format!("{PACKS_PER_INDEX_VAR}={v:?}: not a positive integer (a test-only setting: leave it unset)")))
}

/// `text` as a count of packs: decimal digits only, at least 1.
fn parse_every(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&n| n > 0)
}

/// Index objects written so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub objects: u64,
    pub packs: u64,
}

/// The checkpoints of one capture; cheap to clone (the clones share their state).
#[derive(Clone)]
pub struct Checkpoints {
    inner: Arc<Inner>,
}

/// How an index object is written: PUT into the store, in the tests into memory.
type PutIndex = Box<dyn Fn(&StoreIndex) -> Result<[u8; 32], StoreError> + Send + Sync>;

struct Inner {
    put: PutIndex,
    /// The store as messages name it.
    root: StoreRoot,
    every: usize,
    /// Packs up but in no index object yet, in the order their PUTs completed.
    pending: Mutex<Vec<IndexPack>>,
    /// Held while an index object is written: one at a time.
    writer: Mutex<Written>,
}

impl Checkpoints {
    /// Checkpoints into the store at `root`, one index object per `every` packs, each also
    /// kept in the index cache folder `cache` (§4.1), so the next capture need not GET it.
    pub fn new(
        client: Arc<S3Client>,
        root: StoreRoot,
        every: usize,
        cache: Option<PathBuf>,
        keys: Option<Arc<StoreKeys>>,
    ) -> Checkpoints {
        let at = root.clone();
        let put = move |index: &StoreIndex| {
            let (name, bytes) = put_index_bytes(&client, &at, index, keys.as_deref())?;
            if let Some(dir) = &cache {
                // only a saved GET is lost if this fails: the next capture fetches it
                let _ = std::fs::create_dir_all(dir)
                    .and_then(|()| super::index_cache::keep(dir, &name, &bytes));
            }
            Ok(name)
        };
        Checkpoints::with_writer(root, every, Box::new(put))
    }

    fn with_writer(root: StoreRoot, every: usize, put: PutIndex) -> Checkpoints {
        Checkpoints {
            inner: Arc::new(Inner {
                put,
                root,
                every: every.max(1),
                pending: Mutex::new(Vec::new()),
                writer: Mutex::new(Written::default()),
            }),
        }
    }

    /// `pack`'s PUT completed: once `every` packs wait, they are written as an index object.
    /// A failed write keeps them waiting (the last [`Checkpoints::flush`] tries again).
    pub fn uploaded(&self, pack: IndexPack) -> Result<(), StoreError> {
        let waiting = {
            let mut p = lock(&self.inner.pending);
            p.push(pack);
            p.len()
        };
        if waiting < self.inner.every {
            return Ok(());
        }
        let mut written = lock(&self.inner.writer);
        let packs: Vec<IndexPack> = {
            let mut p = lock(&self.inner.pending);
            if p.len() < self.inner.every {
                return Ok(()); // another thread wrote them meanwhile
            }
            p.drain(..self.inner.every).collect()
        };
        self.write(&mut written, packs).map(drop)
    }

    /// Writes an index object for every pack up since the last one; its name, or none when
    /// there were none.
    pub fn flush(&self) -> Result<Option<[u8; 32]>, StoreError> {
        self.flush_holding(&mut lock(&self.inner.writer))
    }

    /// [`Checkpoints::flush`] for a caller that holds the writer already.
    fn flush_holding(
        &self,
        written: &mut MutexGuard<'_, Written>,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        let packs = std::mem::take(&mut *lock(&self.inner.pending));
        if packs.is_empty() {
            return Ok(None);
        }
        self.write(written, packs).map(Some)
    }

    /// What an interrupted capture says after [`Checkpoints::flush`] (§4.4): which index
    /// object names the last packs, or why none could be written.
    /// An index object already being written is waited for at most [`INTERRUPT_WAIT`]: a user
    /// who pressed Ctrl-C while the store stopped answering gets the prompt back.
    pub fn flush_interrupted(&self) -> Option<String> {
        let packs = match lock(&self.inner.pending).len() {
            1 => "1 pack".to_string(),
            n => format!("{n} packs"),
        };
        let end = std::time::Instant::now() + INTERRUPT_WAIT;
        let mut written = loop {
            match self.inner.writer.try_lock() {
                Ok(w) => break w,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < end => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Some(format!(
                        "an index object was still being written after {} s; the packs it \
                         lists and any uploaded after it may be uploaded again by the next \
                         capture",
                        INTERRUPT_WAIT.as_secs()
                    ));
                }
            }
        };
        match self.flush_holding(&mut written) {
            Ok(Some(name)) => Some(format!(
                "{packs} uploaded since the last index object: listed in {} (the next capture \
                 reuses them)",
                self.inner.root.shown(&names::index_key(&name))
            )),
            Ok(None) => None,
            Err(e) => Some(format!(
                "{packs} uploaded since the last index object could not be listed in a new one \
                 (the next capture uploads them again): {e}"
            )),
        }
    }

    /// The index objects written so far.
    pub fn written(&self) -> Written {
        *lock(&self.inner.writer)
    }

    /// PUTs `packs` as one index object; on failure they wait again.
    fn write(
        &self,
        written: &mut MutexGuard<'_, Written>,
        packs: Vec<IndexPack>,
    ) -> Result<[u8; 32], StoreError> {
        let index = StoreIndex { packs };
        match (self.inner.put)(&index) {
            Ok(name) => {
                written.objects += 1;
                written.packs += index.packs.len() as u64;
                Ok(name)
            }
            Err(e) => {
                let mut p = lock(&self.inner.pending);
                let later = std::mem::replace(&mut *p, index.packs);
                p.extend(later);
                Err(e)
            }
        }
    }
}

/// Writes `index` as a new index object of the store at `root`; returns its name (the hash
/// of the object as stored, `index/<hex>`).
pub(crate) fn put_index(
    client: &S3Client,
    root: &StoreRoot,
    index: &StoreIndex,
    keys: Option<Arc<StoreKeys>>,
) -> Result<[u8; 32], StoreError> {
    put_index_bytes(client, root, index, keys.as_deref()).map(|(name, _)| name)
}

/// [`put_index`], also returning the object's bytes.
fn put_index_bytes(
    client: &S3Client,
    root: &StoreRoot,
    index: &StoreIndex,
    keys: Option<&StoreKeys>,
) -> Result<([u8; 32], Vec<u8>), StoreError> {
    let bytes = encode_index(index, keys).map_err(|mut e| {
        e.object = format!("{root}/{}…", names::INDEX);
        e
    })?;
    let name = index_object_name(&bytes);
    client.put(&root.key(&names::index_key(&name)), &bytes)?;
    Ok((name, bytes))
}

/// How long an interrupted capture waits for an index object already being written.
pub const INTERRUPT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn pack(n: u8) -> IndexPack {
        IndexPack {
            id: [n; 32],
            len: 64,
            blocks: Vec::new(),
        }
    }

    /// The index objects a test's checkpoints wrote, each as its packs' first id bytes.
    type Objects = Arc<Mutex<Vec<Vec<u8>>>>;

    /// Checkpoints every `every` packs into a list of index objects; PUTs fail while the
    /// flag returned is set.
    fn recorded(every: usize) -> (Checkpoints, Objects, Arc<AtomicBool>) {
        let objects = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let (o, f) = (objects.clone(), fail.clone());
        let put = move |index: &StoreIndex| {
            if f.load(Ordering::SeqCst) {
                return Err(StoreError::Unsupported("the server is away".into()));
            }
            lock(&o).push(index.packs.iter().map(|p| p.id[0]).collect());
            Ok([lock(&o).len() as u8; 32])
        };
        let root = StoreRoot::parse("s3://bucket/store").unwrap();
        (
            Checkpoints::with_writer(root, every, Box::new(put)),
            objects,
            fail,
        )
    }

    #[test]
    fn an_index_object_follows_every_n_packs_and_the_rest_comes_last() {
        let (c, objects, _) = recorded(2);
        for n in 1..=5 {
            c.uploaded(pack(n)).unwrap();
        }
        assert_eq!(*lock(&objects), [vec![1, 2], vec![3, 4]]);
        assert_eq!(
            c.written(),
            Written {
                objects: 2,
                packs: 4
            }
        );
        assert_eq!(c.flush().unwrap(), Some([3; 32]));
        assert_eq!(*lock(&objects), [vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(c.flush().unwrap(), None, "nothing left to list");
        assert_eq!(
            c.written(),
            Written {
                objects: 3,
                packs: 5
            }
        );
    }

    #[test]
    fn packs_of_a_failed_index_object_wait_for_the_next_one() {
        let (c, objects, fail) = recorded(2);
        c.uploaded(pack(1)).unwrap();
        fail.store(true, Ordering::SeqCst);
        assert!(c.uploaded(pack(2)).is_err());
        let said = c.flush_interrupted().unwrap();
        assert!(said.contains("could not be listed"), "{said}");
        fail.store(false, Ordering::SeqCst);
        c.uploaded(pack(3)).unwrap();
        assert_eq!(*lock(&objects), [vec![1, 2]], "the oldest packs first");
        let said = c.flush_interrupted().unwrap();
        assert!(
            said.contains("1 pack uploaded") && said.contains("s3://bucket/store/index/"),
            "{said}"
        );
        assert_eq!(*lock(&objects), [vec![1, 2], vec![3]]);
    }

    #[test]
    fn the_test_only_count_is_parsed_strictly() {
        assert_eq!(parse_every("2"), Some(2));
        assert_eq!(parse_every("64"), Some(64));
        for bad in [
            "",
            "0",
            "-1",
            "+2",
            " 2",
            "2 ",
            "2k",
            "0x10",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_every(bad), None, "{bad:?}");
        }
    }
}
