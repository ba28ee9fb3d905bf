//! The encryption envelope (docs/FORMAT.md §11, docs/SECURITY.md): `capture --encrypt` seals
//! every pack and the manifest; readers unseal them with a passphrase or an age X25519 key.
//!
//! `keys` wraps the image's random data key with `age` (scrypt passphrase or X25519
//! recipients); `stream` seals packs and the manifest in 64 KiB ChaCha20-Poly1305 STREAM
//! segments so a reader can still decrypt any block on its own. No cipher is built here: both
//! come from RustCrypto and age.

pub mod keys;
pub mod stream;

use std::path::Path;
use std::sync::{Arc, Mutex};

use age::secrecy::SecretString;

use crate::format::PayloadError;
use crate::format::manifest::PackRecord;
use crate::format::records::{FrameHeader, RECORD_LEN};
use crate::format::sink::PackSink;
use stream::{Sealer, StreamCipher, StreamId};

/// An image's 32-byte data key (zeroed when dropped).
#[derive(Clone)]
pub struct DataKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<hidden>)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // Volatile writes so the compiler keeps the wipe.
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl DataKey {
    /// 32 bytes from the kernel's random source; an error when it cannot give them.
    pub fn random() -> Result<Self, PayloadError> {
        let mut k = [0u8; 32];
        let mut filled = 0;
        while filled < k.len() {
            match rustix::rand::getrandom(&mut k[filled..], rustix::rand::GetRandomFlags::empty()) {
                Ok(n) => filled += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(PayloadError::format(format!(
                        "no random numbers for an encryption key: {e}"
                    )));
                }
            }
        }
        Ok(DataKey(k))
    }
}

/// A reader's way to the data key: identities, a passphrase, or a prompt asked at most once.
#[derive(Default)]
pub struct Unlock {
    /// age X25519 secret keys (`--identity FILE`).
    pub identities: Vec<age::x25519::Identity>,
    /// A passphrase given up front (`--passphrase-file`, `OSIMAGE_PASSPHRASE`).
    pub passphrase: Option<SecretString>,
    /// Asks for a passphrase (a terminal prompt), called only when an image needs one.
    pub ask: Option<Box<Asker>>,
    /// A data key already known for an image id (capture reading back its own output).
    pub key: Option<([u8; 16], DataKey)>,
    /// The passphrase `ask` returned, kept so one process asks once (filled in by `ask`).
    pub asked: Mutex<Option<SecretString>>,
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlock")
            .field("identities", &self.identities.len())
            .field("passphrase", &self.passphrase.is_some())
            .field("ask", &self.ask.is_some())
            .field("key", &self.key.is_some())
            .finish()
    }
}

/// Asks for the passphrase of the image at the given path.
pub type Asker = dyn Fn(&Path) -> std::io::Result<SecretString> + Send + Sync;

impl Unlock {
    /// Nothing known: opens plain images only.
    pub fn none() -> Self {
        Unlock::default()
    }

    fn known_key(&self, image_id: &[u8; 16]) -> Option<DataKey> {
        match &self.key {
            Some((id, k)) if id == image_id => Some(k.clone()),
            _ => None,
        }
    }

    /// The passphrase for `image`: given, asked before, or asked now.
    fn passphrase(&self, image: &Path) -> Result<SecretString, PayloadError> {
        if let Some(p) = &self.passphrase {
            return Ok(p.clone());
        }
        let mut asked = self
            .asked
            .lock()
            .map_err(|_| PayloadError::format("internal: passphrase lock poisoned"))?;
        if let Some(p) = asked.as_ref() {
            return Ok(p.clone());
        }
        let Some(ask) = &self.ask else {
            return Err(PayloadError::NeedKey {
                path: image.to_path_buf(),
                what: "its passphrase (--passphrase-file FILE or OSIMAGE_PASSPHRASE)",
            });
        };
        let p =
            ask(image).map_err(|e| PayloadError::io("cannot read the passphrase for", image, e))?;
        *asked = Some(p.clone());
        Ok(p)
    }
}

/// The keys of an open encrypted image.
#[derive(Clone)]
pub struct ImageKey {
    key: DataKey,
    image_id: [u8; 16],
}

impl ImageKey {
    pub fn new(key: DataKey, image_id: [u8; 16]) -> Self {
        ImageKey { key, image_id }
    }

    /// The cipher of one stream of the image.
    pub fn cipher(&self, id: StreamId) -> Arc<StreamCipher> {
        Arc::new(StreamCipher::new(&self.key.0, &self.image_id, id))
    }

    /// The key itself, to read back an image this process wrote.
    pub fn data_key(&self) -> (&[u8; 16], &DataKey) {
        (&self.image_id, &self.key)
    }

    /// Seals a plain manifest frame (§4) into the outer frame of §11.4: padded with zeros to a
    /// multiple of 64 KiB, so its length says little about the number of entries.
    pub fn seal_manifest(&self, plain_frame: &[u8]) -> Vec<u8> {
        seal_manifest_with(self.cipher(StreamId::Manifest), plain_frame)
    }

    /// Opens an outer frame made by `seal_manifest`, returning the plain frame.
    pub fn open_manifest(&self, outer: &[u8]) -> Result<Vec<u8>, PayloadError> {
        open_manifest_with(&self.cipher(StreamId::Manifest), outer)
    }
}

/// [`ImageKey::seal_manifest`] with the stream's cipher given (an encrypted store derives it
/// from its own keys, docs/STORE.md §6).
pub fn seal_manifest_with(cipher: Arc<StreamCipher>, plain_frame: &[u8]) -> Vec<u8> {
    let padded = (plain_frame.len() as u64).div_ceil(stream::SEGMENT) * stream::SEGMENT;
    let mut plain = plain_frame.to_vec();
    plain.resize(padded as usize, 0);
    let body = stream::seal_all(cipher, &plain);
    let header = FrameHeader {
        version: crate::format::manifest::MANIFEST_VERSION,
        sealed: true,
        stored_len: body.len() as u64,
        raw_len: padded,
        hash: *blake3::hash(&body).as_bytes(),
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&body);
    out
}

/// [`ImageKey::open_manifest`] with the stream's cipher given.
pub fn open_manifest_with(cipher: &StreamCipher, outer: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let h = crate::format::frame::decode_frame_header(outer)?;
    let body = &outer[RECORD_LEN..];
    if !h.sealed {
        return Err(PayloadError::format(
            "the image is encrypted but its manifest is not (damaged or altered)",
        ));
    }
    if body.len() as u64 != h.stored_len {
        return Err(PayloadError::format("manifest truncated"));
    }
    if blake3::hash(body).as_bytes() != &h.hash {
        return Err(PayloadError::format(
            "manifest checksum mismatch (damaged image)",
        ));
    }
    let plain_len = stream::plain_len(h.stored_len)
        .filter(|l| *l == h.raw_len)
        .ok_or_else(|| PayloadError::format("encrypted manifest has an impossible length"))?;
    let mut plain = vec![0u8; plain_len as usize];
    stream::read_at(cipher, plain_len, &mut plain, 0, &|buf, at| {
        let src = body
            .get(at as usize..at as usize + buf.len())
            .ok_or_else(|| std::io::Error::other("short manifest"))?;
        buf.copy_from_slice(src);
        Ok(())
    })
    .map_err(|e| PayloadError::format(format!("manifest: {e}")))?;
    let inner = crate::format::frame::decode_frame_header(&plain)?;
    let end = (RECORD_LEN as u64)
        .checked_add(inner.stored_len)
        .filter(|e| *e <= plain_len)
        .ok_or_else(|| PayloadError::format("encrypted manifest: inner frame too long"))?;
    if plain[end as usize..].iter().any(|b| *b != 0) {
        return Err(PayloadError::format(
            "encrypted manifest: padding is not zero",
        ));
    }
    plain.truncate(end as usize);
    Ok(plain)
}

/// A `PackSink` that seals each pack as it streams through to `inner` (§11.3).
pub struct SealedSink<'a, S: PackSink + ?Sized> {
    inner: &'a mut S,
    key: &'a ImageKey,
    current: Option<Sealer>,
}

impl<'a, S: PackSink + ?Sized> SealedSink<'a, S> {
    pub fn new(inner: &'a mut S, key: &'a ImageKey) -> Self {
        SealedSink {
            inner,
            key,
            current: None,
        }
    }
}

fn sealed_io(e: std::io::Error) -> PayloadError {
    match e.downcast::<PayloadError>() {
        Ok(p) => p,
        Err(e) => PayloadError::format(format!("encrypting a pack: {e}")),
    }
}

impl<S: PackSink + ?Sized> PackSink for SealedSink<'_, S> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), PayloadError> {
        let Some(sealer) = self.current.as_mut() else {
            return Err(PayloadError::format(
                "internal: pack bytes before a pack began",
            ));
        };
        let inner = &mut *self.inner;
        sealer
            .push(bytes, &mut |b| {
                inner.write_all(b).map_err(std::io::Error::other)
            })
            .map_err(sealed_io)
    }

    fn begin_pack(&mut self, index: u32) -> Result<(), PayloadError> {
        self.inner.begin_pack(index)?;
        let cipher = self.key.cipher(StreamId::Pack(index));
        self.current = Some(Sealer::new(cipher));
        Ok(())
    }

    fn end_pack(&mut self, rec: &PackRecord) -> Result<(), PayloadError> {
        if let Some(sealer) = self.current.take() {
            let inner = &mut *self.inner;
            sealer
                .finish(&mut |b| inner.write_all(b).map_err(std::io::Error::other))
                .map_err(sealed_io)?;
        }
        self.inner.end_pack(rec)
    }
}
