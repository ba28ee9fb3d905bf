//! Packs going up to a store while the capture writes them (docs/STORE.md §4.2, §4.3 step 1):
//! the packer hands each finished pack to `PackUploader` (a `PackSink`), which keeps it in
//! memory and gives it to one of `UPLOADERS` threads that PUT it as
//! `packs/<2 hex>/<64 hex>`, named by its id. The hand-over waits for a free thread, so at
//! most `UPLOADERS` packs are in flight and one is filling: on a slow link the uploads bound
//! the capture and the scan waits instead of buffering.
//!
//! A pack is PUT whole with its Content-MD5 and retried with the same bytes (`S3Client::put`);
//! S3 shows an object whole or not at all, so no partial pack is ever visible. The first
//! failure stops the capture at its next pack; packs already up stay, unreferenced, until a
//! prune (§4.4).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, bounded};

use crate::format::PayloadError;
use crate::format::manifest::PackRecord;
use crate::format::sink::PackSink;
use crate::remote::s3::S3Client;
use crate::store::{StoreRoot, names};

/// Threads uploading packs at once.
pub const UPLOADERS: usize = 3;

/// One pack on its way up.
struct Upload {
    key: String,
    body: Vec<u8>,
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
}

/// A `PackSink` that uploads each pack to the store once it is complete.
pub struct PackUploader {
    /// How the store is named in messages (`s3://BUCKET/PREFIX`).
    shown: String,
    /// Where the store is in its bucket.
    root: StoreRoot,
    current: Vec<u8>,
    tx: Option<Sender<Upload>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
}

impl PackUploader {
    /// Starts the upload threads for packs of the store at `root`.
    pub fn start(client: Arc<S3Client>, root: StoreRoot) -> Self {
        // A rendezvous: a pack is handed over only when a thread is free to take it.
        let (tx, rx) = bounded::<Upload>(0);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let workers = (0..UPLOADERS)
            .map(|_| {
                let (rx, client, shared) = (rx.clone(), client.clone(), shared.clone());
                std::thread::spawn(move || {
                    for u in rx {
                        if lock(&shared).failed.is_some() {
                            continue; // drain: the capture is stopping
                        }
                        let done = client.put(&u.key, &u.body);
                        let mut s = lock(&shared);
                        match done {
                            Ok(()) => {
                                s.packs += 1;
                                s.bytes += u.body.len() as u64;
                            }
                            Err(e) => {
                                s.failed.get_or_insert(e.to_string());
                            }
                        }
                    }
                })
            })
            .collect();
        PackUploader {
            shown: root.to_string(),
            root,
            current: Vec::new(),
            tx: Some(tx),
            workers,
            shared,
        }
    }

    /// Waits for every upload; the first failure if one failed.
    pub fn finish(mut self) -> Result<Uploaded, PayloadError> {
        self.stop();
        let s = lock(&self.shared);
        match &s.failed {
            Some(msg) => Err(self.error(msg)),
            None => Ok(Uploaded {
                packs: s.packs,
                bytes: s.bytes,
            }),
        }
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
            key: self.root.key(&names::pack_key(&rec.hash)),
            body: std::mem::take(&mut self.current),
        };
        let tx = self.tx.as_ref().ok_or_else(|| self.error("stopped"))?;
        tx.send(upload)
            .map_err(|_| self.error("the upload threads stopped"))?;
        self.check()
    }
}
