//! Encrypted stores (docs/STORE.md §6): the store's data key K, wrapped with age in `keys/`
//! objects (§2.2, the key record of FORMAT.md §11.2 with the store id in its image-id field),
//! the per-object stream keys derived from K, and the keyed object names.
//!
//! Every sealed body is one FORMAT.md §11.3 stream (ChaCha20-Poly1305 STREAM, 64 KiB
//! segments) with the store id as associated data, under a key used for exactly one
//! plaintext: a pack's or blob's id is the hash of its plaintext, and version and small-object
//! nonces are random. Nothing here is a cipher of its own: `envelope::stream` seals.

use std::path::Path;
use std::sync::Arc;

use crate::envelope::keys::{KEYS_HEADER_LEN, KeysHeader, Lock, new_key, open_key};
use crate::envelope::stream::{self, StreamCipher};
use crate::envelope::{DataKey, Unlock};
use crate::format::PayloadError;

/// `derive_key` contexts (§6): one per kind of object, and one for the name key.
const PACK_KEY: &str = "osimage 2026-12 store v1 pack key";
const BLOB_KEY: &str = "osimage 2026-12 store v1 blob key";
const VERSION_KEY: &str = "osimage 2026-12 store v1 version key";
const OBJECT_KEY: &str = "osimage 2026-12 store v1 object key";
const NAME_KEY: &str = "osimage 2026-12 store v1 name key";

/// The stream code of a version's head and of its manifest frame (§6).
pub const VERSION_HEAD: u64 = 0;
pub const VERSION_MANIFEST: u64 = 1 << 32;

/// Where the key objects live.
pub const KEYS: &str = "keys/";

/// An unlocked encrypted store: K, the store id, and the name key N.
pub struct StoreKeys {
    data: DataKey,
    store_id: [u8; 16],
    names: [u8; 32],
}

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKeys(<hidden>)")
    }
}

impl StoreKeys {
    /// The keys of store `store_id` whose data key is `data`.
    pub fn new(data: DataKey, store_id: [u8; 16]) -> StoreKeys {
        let names = derive(&data, &store_id, NAME_KEY, &[]);
        StoreKeys {
            data,
            store_id,
            names,
        }
    }

    fn cipher(&self, context: &str, extra: &[u8]) -> Arc<StreamCipher> {
        let key = derive(&self.data, &self.store_id, context, extra);
        Arc::new(StreamCipher::with_key(key, self.store_id))
    }

    /// A new key object (§2.2) for this store's data key, wrapped for `lock`
    /// (`store key add`).
    pub fn wrap_for(&self, lock: &Lock) -> Result<Vec<u8>, PayloadError> {
        crate::envelope::keys::wrap_key(lock, &self.data, self.store_id)
    }

    /// The store id: every segment's associated data.
    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// The raw stream key of part `code` of the version object of nonce `nonce`, for a
    /// netboot key set (§6.1), which hands over exactly the keys a version needs.
    pub(crate) fn version_key_bytes(&self, nonce: &[u8; 16], code: u64) -> [u8; 32] {
        let mut extra = [0u8; 24];
        extra[..16].copy_from_slice(nonce);
        extra[16..].copy_from_slice(&code.to_le_bytes());
        derive(&self.data, &self.store_id, VERSION_KEY, &extra)
    }

    /// The raw stream key of the pack `id`, for a netboot key set (§6.1).
    pub(crate) fn pack_key_bytes(&self, id: &[u8; 32]) -> [u8; 32] {
        derive(&self.data, &self.store_id, PACK_KEY, id)
    }

    /// The stream key of the pack whose id (FORMAT.md §3 pack hash) is `id`.
    pub fn pack(&self, id: &[u8; 32]) -> Arc<StreamCipher> {
        self.cipher(PACK_KEY, id)
    }

    /// The stream key of the rescue blob whose id (BLAKE3 of the file) is `id`.
    pub fn blob(&self, id: &[u8; 32]) -> Arc<StreamCipher> {
        self.cipher(BLOB_KEY, id)
    }

    /// The stream key of part `code` ([`VERSION_HEAD`], [`VERSION_MANIFEST`]) of the version
    /// object whose random nonce is `nonce`.
    pub fn version(&self, nonce: &[u8; 16], code: u64) -> Arc<StreamCipher> {
        let mut extra = [0u8; 24];
        extra[..16].copy_from_slice(nonce);
        extra[16..].copy_from_slice(&code.to_le_bytes());
        self.cipher(VERSION_KEY, &extra)
    }

    /// The stream key of a small object (§2.1) whose frame nonce is `nonce`.
    pub fn object(&self, nonce: &[u8; 16]) -> Arc<StreamCipher> {
        self.cipher(OBJECT_KEY, nonce)
    }

    fn keyed(&self, label: &[u8], id: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.names);
        h.update(label);
        h.update(id);
        *h.finalize().as_bytes()
    }

    /// The name a pack's object is stored under instead of its id.
    pub fn pack_name(&self, id: &[u8; 32]) -> [u8; 32] {
        self.keyed(b"pack", id)
    }

    /// The name a rescue blob's object starts with instead of its id.
    pub fn blob_name(&self, id: &[u8; 32]) -> [u8; 32] {
        self.keyed(b"blob", id)
    }

    /// The folder name of series `series` (32 hex digits, never the name itself).
    pub fn series_name(&self, series: &str) -> String {
        crate::store::names::hex(&self.keyed(b"series", series.as_bytes())[..16])
    }
}

/// BLAKE3 `derive_key(context, K ‖ store id ‖ extra)`.
fn derive(data: &DataKey, store_id: &[u8; 16], context: &str, extra: &[u8]) -> [u8; 32] {
    let mut material = Vec::with_capacity(48 + extra.len());
    material.extend_from_slice(&data.0);
    material.extend_from_slice(store_id);
    material.extend_from_slice(extra);
    let key = blake3::derive_key(context, &material);
    material.fill(0);
    key
}

/// `plain` sealed as one stream under `cipher`.
pub fn seal(cipher: Arc<StreamCipher>, plain: &[u8]) -> Vec<u8> {
    stream::seal_all(cipher, plain)
}

/// The plaintext of the sealed stream `stored` under `cipher`; an error when it is not a
/// sealed length or a segment fails authentication (damaged, altered, or another key).
pub fn open(cipher: &StreamCipher, stored: &[u8]) -> Result<Vec<u8>, String> {
    let plain = stream::plain_len(stored.len() as u64)
        .ok_or_else(|| format!("{} bytes is no sealed length (truncated?)", stored.len()))?;
    let mut out = vec![0u8; plain as usize];
    stream::read_at(cipher, plain, &mut out, 0, &|buf, at| {
        let src = stored
            .get(at as usize..at as usize + buf.len())
            .ok_or_else(|| std::io::Error::other("short sealed stream"))?;
        buf.copy_from_slice(src);
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A new data key for the store `store_id` and its key object (§2.2), wrapped for `lock`.
pub fn new_store_key(
    lock: &Lock,
    store_id: [u8; 16],
) -> Result<(StoreKeys, Vec<u8>), PayloadError> {
    let (data, record) = new_key(lock, store_id)?;
    Ok((StoreKeys::new(data, store_id), record))
}

/// Unwraps K from the first of the key objects `records` (their bytes) that `unlock` opens;
/// `store` names the store in messages. Each must be a key record of this store.
pub fn unlock_store(
    records: &[Vec<u8>],
    store_id: [u8; 16],
    unlock: &Unlock,
    store: &Path,
) -> Result<StoreKeys, PayloadError> {
    unlock_store_at(records, store_id, unlock, store).map(|(k, _)| k)
}

/// [`unlock_store`], and which of `records` opened.
pub fn unlock_store_at(
    records: &[Vec<u8>],
    store_id: [u8; 16],
    unlock: &Unlock,
    store: &Path,
) -> Result<(StoreKeys, usize), PayloadError> {
    // Records that open without a prompt first: with identities given, the recipients'
    // ones (a passphrase is then asked for only when none of them opens); else the
    // passphrase ones. A damaged record keeps its place, so it is named.
    let with_identities = !unlock.identities.is_empty();
    let rank = |bytes: &Vec<u8>| match crate::envelope::keys::opens_with_passphrase(bytes) {
        Ok(scrypt) => u8::from(scrypt == with_identities),
        Err(_) => 0,
    };
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| rank(&records[i]));
    let mut last: Option<PayloadError> = None;
    for i in order {
        let bytes = &records[i];
        let h = KeysHeader::decode(bytes).map_err(|e| e.at(store))?;
        let wrapped = bytes.get(KEYS_HEADER_LEN..).unwrap_or_default();
        if wrapped.len() != h.age_len as usize || h.image_id != store_id {
            return Err(PayloadError::Image {
                path: store.to_path_buf(),
                msg: "a key object of another store, or damaged".into(),
            });
        }
        match open_key(&h, wrapped, unlock, store) {
            Ok(k) => return Ok((StoreKeys::new(k, store_id), i)),
            // A wrong key says more than a missing identity: it is the one kept.
            Err(e @ PayloadError::WrongKey(_)) => last = Some(e),
            Err(e @ PayloadError::NeedKey { .. }) => {
                if !matches!(last, Some(PayloadError::WrongKey(_))) {
                    last = Some(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| PayloadError::Image {
        path: store.to_path_buf(),
        msg: "an encrypted store without any key object (keys/ is empty)".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: u8, id: u8) -> StoreKeys {
        StoreKeys::new(DataKey([k; 32]), [id; 16])
    }

    #[test]
    fn every_object_has_its_own_key() {
        let k = keys(1, 2);
        let plain = b"the same plaintext".to_vec();
        let sealed = [
            seal(k.pack(&[3; 32]), &plain),
            seal(k.pack(&[4; 32]), &plain),
            seal(k.blob(&[3; 32]), &plain),
            seal(k.version(&[3; 16], VERSION_HEAD), &plain),
            seal(k.version(&[3; 16], VERSION_MANIFEST), &plain),
            seal(k.object(&[3; 16]), &plain),
            seal(keys(1, 9).pack(&[3; 32]), &plain),
            seal(keys(5, 2).pack(&[3; 32]), &plain),
        ];
        for (i, a) in sealed.iter().enumerate() {
            for b in &sealed[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(open(&k.pack(&[3; 32]), &sealed[0]).unwrap(), plain);
        // Another object's key, another store's id (the associated data) or another K fails.
        assert!(open(&k.pack(&[4; 32]), &sealed[0]).is_err());
        assert!(open(&keys(1, 9).pack(&[3; 32]), &sealed[0]).is_err());
        assert!(open(&keys(5, 2).pack(&[3; 32]), &sealed[0]).is_err());
        let mut bad = sealed[0].clone();
        bad[3] ^= 1;
        assert!(
            open(&k.pack(&[3; 32]), &bad)
                .unwrap_err()
                .contains("authentication")
        );
        assert!(open(&k.pack(&[3; 32]), &sealed[0][..5]).is_err());
    }

    #[test]
    fn the_derivation_is_the_one_of_section_6() {
        // Pinned: a change of context, order or width would make every store unreadable.
        let k = keys(1, 2);
        let mut material = vec![1u8; 32];
        material.extend_from_slice(&[2; 16]);
        let n = blake3::derive_key(NAME_KEY, &material);
        let mut h = blake3::Hasher::new_keyed(&n);
        h.update(b"pack");
        h.update(&[7; 32]);
        assert_eq!(k.pack_name(&[7; 32]), *h.finalize().as_bytes());
        let mut h = blake3::Hasher::new_keyed(&n);
        h.update(b"series");
        h.update(b"web01");
        let series = crate::store::names::hex(&h.finalize().as_bytes()[..16]);
        assert_eq!(k.series_name("web01"), series);
        material.extend_from_slice(&[3; 16]);
        material.extend_from_slice(&(1u64 << 32).to_le_bytes());
        let key = blake3::derive_key(VERSION_KEY, &material);
        let c = StreamCipher::with_key(key, [2; 16]);
        let sealed = seal(k.version(&[3; 16], VERSION_MANIFEST), b"frame");
        assert_eq!(open(&c, &sealed).unwrap(), b"frame");
    }

    #[test]
    fn names_are_keyed_and_reveal_nothing_of_the_id() {
        let (a, b) = (keys(1, 2), keys(3, 2));
        assert_ne!(a.pack_name(&[7; 32]), b.pack_name(&[7; 32]));
        assert_ne!(a.pack_name(&[7; 32]), a.blob_name(&[7; 32]));
        assert_ne!(a.pack_name(&[7; 32]), [7; 32]);
        let s = a.series_name("web01");
        assert_eq!(s.len(), 32);
        assert!(!s.contains("web01"));
        assert_ne!(s, b.series_name("web01"));
        assert_ne!(s, a.series_name("web02"));
        assert!(crate::store::names::check_series(&s).is_ok());
    }

    #[test]
    fn an_identity_opens_its_key_object_before_a_passphrase_is_asked_for() {
        let pass = Lock::Passphrase("right".to_string().into());
        let (k, first) = new_store_key(&pass, [4; 16]).unwrap();
        let me = age::x25519::Identity::generate();
        let second = k.wrap_for(&Lock::Recipients(vec![me.to_public()])).unwrap();
        let store = Path::new("s3://b/p");
        let asking = Unlock {
            identities: vec![me],
            ask: Some(Box::new(|_: &Path| {
                Err(std::io::Error::other("no terminal"))
            })),
            ..Unlock::default()
        };
        let records = [first.clone(), second];
        let (got, at) = unlock_store_at(&records, [4; 16], &asking, store).unwrap();
        assert_eq!(at, 1, "the recipients' object, with no prompt");
        assert_eq!(got.pack_name(&[1; 32]), k.pack_name(&[1; 32]));
        // A wrong passphrase is named as such, not as a missing identity.
        let wrong = Unlock {
            passphrase: Some("wrong".to_string().into()),
            ..Unlock::default()
        };
        let e = unlock_store_at(&records, [4; 16], &wrong, store).unwrap_err();
        assert_eq!(e.to_string(), "wrong passphrase or key for s3://b/p");
    }

    #[test]
    fn a_key_object_opens_with_its_passphrase_only() {
        let lock = Lock::Passphrase("right".to_string().into());
        let (k, record) = new_store_key(&lock, [4; 16]).unwrap();
        let with = |p: &str| Unlock {
            passphrase: Some(p.to_string().into()),
            ..Unlock::default()
        };
        let store = Path::new("s3://b/p");
        let got = unlock_store(
            std::slice::from_ref(&record),
            [4; 16],
            &with("right"),
            store,
        );
        assert_eq!(got.unwrap().pack_name(&[1; 32]), k.pack_name(&[1; 32]));
        let wrong = unlock_store(
            std::slice::from_ref(&record),
            [4; 16],
            &with("wrong"),
            store,
        );
        assert_eq!(
            wrong.unwrap_err().to_string(),
            "wrong passphrase or key for s3://b/p"
        );
        let other = unlock_store(&[record], [5; 16], &with("right"), store);
        assert!(other.unwrap_err().to_string().contains("another store"));
        assert!(unlock_store(&[], [4; 16], &with("right"), store).is_err());
    }
}
