//! Packs going up to a store while the capture writes them (docs/STORE.md §4.2, §4.3 step 1):
//! the packer hands each finished pack to `PackUploader` (a `PackSink`), which keeps it in
//! memory and gives it to one of `UPLOADERS` threads that PUT it as
//! `packs/<2 hex>/<64 hex>`, named by its id. The hand-over waits for a free thread, so at
//! most `UPLOADERS` packs are in flight and one is filling: on a slow link the uploads bound
//! the capture and the scan waits instead of buffering.
//!
//! A pack is PUT whole with its Content-MD5 and retried with the same bytes (`S3Client::put`);
//! S3 shows an object whole or not at all, so no partial pack is ever visible. The first
//! failure stops the capture at its next pack.
//!
//! The packs whose PUTs completed are listed in index objects as they go (`checkpoint`: one
//! per 64 packs, §4.3 step 2), and [`PackUploader::finish`] lists the rest, whether the
//! capture succeeded or not: a later capture reuses every pack up (§4.4).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use crate::format::PayloadError;
use crate::format::manifest::{BlockRecord, PackRecord};
use crate::format::sink::{NewChunk, PackSink};
use crate::store::checkpoint::Checkpoints;
use crate::store::crypt::{self, StoreKeys};
use crate::store::objects::{IndexBlock, IndexChunk, IndexPack};
use crate::store::{Store, StoreError, StoreRoot};

/// Threads uploading packs at once.
pub const UPLOADERS: usize = 3;

/// One pack on its way up.
struct Upload {
    key: String,
    body: Vec<u8>,
    /// What the pack's index record is, once it is up.
    index: IndexPack,
}

/// What the uploads did, shared by the threads.
#[derive(Default)]
struct Shared {
    /// The first failure, as said.
    failed: Option<String>,
    packs: u64,
    bytes: u64,
}

/// What `PackUploader::finish` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uploaded {
    pub packs: u64,
    pub bytes: u64,
    /// Index objects written for them.
    pub index_objects: u64,
}

/// A `PackSink` that uploads each pack to the store once it is complete.
pub struct PackUploader {
    /// How the store is named in messages (`s3://BUCKET/PREFIX`).
    shown: String,
    /// Where the store is in its bucket.
    root: StoreRoot,
    /// An encrypted store's keys: packs are named by their keyed names.
    keys: Option<Arc<StoreKeys>>,
    current: Vec<u8>,
    /// The blocks of the pack being filled, as its index record lists them.
    blocks: Vec<IndexBlock>,
    checkpoints: Checkpoints,
    tx: Option<Sender<Upload>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
}

impl PackUploader {
    /// Starts the upload threads for packs of `store`, with an index object after every
    /// `packs_per_index` packs up (`checkpoint::packs_per_index`), each kept in the index
    /// cache folder `cache` too. In an encrypted store each pack is sealed under its own key
    /// by the thread that uploads it, and named by its keyed name (§6).
    pub fn start(store: &Store, packs_per_index: usize, cache: Option<std::path::PathBuf>) -> Self {
        let (client, root) = (store.client.clone(), store.root.clone());
        let keys = store.keys.clone();
        // A rendezvous: a pack is handed over only when a thread is free to take it.
        let (tx, rx) = bounded::<Upload>(0);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let checkpoints = Checkpoints::new(
            client.clone(),
            root.clone(),
            packs_per_index,
            cache,
            keys.clone(),
        );
        let workers = (0..UPLOADERS)
            .map(|_| {
                let (rx, client, shared) = (rx.clone(), client.clone(), shared.clone());
                let (checkpoints, keys) = (checkpoints.clone(), keys.clone());
                std::thread::spawn(move || {
                    for mut u in rx {
                        if lock(&shared).failed.is_some() {
                            continue; // drain: the capture is stopping
                        }
                        if let Some(k) = &keys {
                            u.body = crypt::seal(k.pack(&u.index.id), &u.body);
                        }
                        let done = client.put(&u.key, &u.body).map_err(StoreError::from);
                        let done = done.and_then(|()| {
                            let mut s = lock(&shared);
                            s.packs += 1;
                            s.bytes += u.body.len() as u64;
                            drop(s);
                            checkpoints.uploaded(u.index)
                        });
                        if let Err(e) = done {
                            lock(&shared).failed.get_or_insert(e.to_string());
                        }
                    }
                })
            })
            .collect();
        PackUploader {
            shown: root.to_string(),
            root,
            keys,
            current: Vec::new(),
            blocks: Vec::new(),
            checkpoints,
            tx: Some(tx),
            workers,
            shared,
        }
    }

    /// The index checkpoints, for a capture to flush when it is interrupted (§4.4).
    pub fn checkpoints(&self) -> Checkpoints {
        self.checkpoints.clone()
    }

    /// Waits for every upload, then lists the packs up since the last index object in a new
    /// one, also when an upload or the capture failed (the next capture reuses them); the
    /// first failure if one failed.
    pub fn finish(mut self) -> Result<Uploaded, PayloadError> {
        self.stop();
        let flushed = self.checkpoints.flush();
        let s = lock(&self.shared);
        if let Some(msg) = &s.failed {
            return Err(self.error(msg));
        }
        flushed.map_err(|e| PayloadError::Image {
            path: self.shown.clone().into(),
            msg: format!("writing an index object failed: {e}"),
        })?;
        Ok(Uploaded {
            packs: s.packs,
            bytes: s.bytes,
            index_objects: self.checkpoints.written().objects,
        })
    }

    /// Closes the hand-over and joins the threads.
    fn stop(&mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    fn error(&self, msg: &str) -> PayloadError {
        PayloadError::Image {
            path: self.shown.clone().into(),
            msg: format!("uploading a pack failed: {msg}"),
        }
    }

    /// The first failure so far, as an error.
    fn check(&self) -> Result<(), PayloadError> {
        match &lock(&self.shared).failed {
            Some(msg) => Err(self.error(msg)),
            None => Ok(()),
        }
    }
}

impl Drop for PackUploader {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(s: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl PackSink for PackUploader {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        self.current.extend_from_slice(bytes);
        Ok(())
    }

    fn begin_pack(&mut self, _index: u32) -> Result<(), PayloadError> {
        self.check()?;
        self.current.clear();
        self.blocks.clear();
        Ok(())
    }

    /// The index lists each new chunk by its whole BLAKE3, not the manifest's 16-byte id
    /// (docs/STORE.md §2.4).
    fn block_placed(&mut self, rec: &BlockRecord, chunks: &[NewChunk]) -> Result<(), PayloadError> {
        self.blocks.push(index_block(rec, chunks));
        Ok(())
    }

    fn end_pack(&mut self, rec: &PackRecord) -> Result<(), PayloadError> {
        if self.current.len() as u64 != rec.len {
            return Err(PayloadError::format(format!(
                "internal: a pack of {} bytes was said to have {}",
                self.current.len(),
                rec.len
            )));
        }
        let upload = Upload {
            key: self.root.key(&match &self.keys {
                Some(k) => crate::store::names::pack_key(&k.pack_name(&rec.hash)),
                None => crate::store::names::pack_key(&rec.hash),
            }),
            body: std::mem::take(&mut self.current),
            index: IndexPack {
                id: rec.hash,
                len: rec.len,
                blocks: std::mem::take(&mut self.blocks),
            },
        };
        let tx = self.tx.as_ref().ok_or_else(|| self.error("stopped"))?;
        tx.send(upload)
            .map_err(|_| self.error("the upload threads stopped"))?;
        self.check()
    }
}

/// A block as an index object lists it: its record and each new chunk by its whole BLAKE3
/// (docs/STORE.md §2.4).
pub fn index_block(rec: &BlockRecord, chunks: &[NewChunk]) -> IndexBlock {
    IndexBlock {
        offset: rec.offset,
        stored_len: rec.stored_len,
        raw_len: rec.raw_len,
        codec: rec.codec,
        hash: rec.hash,
        chunks: chunks
            .iter()
            .map(|c| IndexChunk {
                id: c.hash,
                offset: c.record.offset,
                len: c.record.len,
            })
            .collect(),
    }
}
