//! The netboot key set of an encrypted store's version (docs/STORE.md §6.1, "The key set"):
//! exactly the stream keys one version needs — its head's and manifest frame's, and one per
//! pack it names — wrapped with age into `source.conf`, so a network-booted machine reads that
//! version and never holds the store key K or the name key N.

use std::path::Path;
use std::sync::Arc;

use crate::envelope::Unlock;
use crate::envelope::keys::{Lock, age_open, age_wrap};
use crate::envelope::stream::StreamCipher;
use crate::format::PayloadError;
use crate::store::crypt::{StoreKeys, VERSION_HEAD, VERSION_MANIFEST};

const MAGIC: &[u8; 8] = b"OSIMNBKS";
/// The fixed part: magic, store id, nonce, head key, manifest key, pack count.
const FIXED_LEN: usize = 108;
/// Each pack's entry: its id and its key.
const PACK_LEN: usize = 64;
/// The most packs a set may name (the plaintext then stays under 16 MiB, `source.conf`'s
/// own bound).
pub const MAX_PACKS: usize = ((16 << 20) - FIXED_LEN) / PACK_LEN;

/// The keys of one version (zeroed when dropped).
pub struct VersionKeys {
    pub store_id: [u8; 16],
    /// The version object's nonce (§6.1).
    pub nonce: [u8; 16],
    head: [u8; 32],
    manifest: [u8; 32],
    /// Each pack's id and key, in manifest order.
    packs: Vec<([u8; 32], [u8; 32])>,
}

impl std::fmt::Debug for VersionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VersionKeys({} packs, <hidden>)", self.packs.len())
    }
}

impl Drop for VersionKeys {
    fn drop(&mut self) {
        self.head.fill(0);
        self.manifest.fill(0);
        for (_, k) in &mut self.packs {
            k.fill(0);
        }
    }
}

impl VersionKeys {
    /// The set for the version object of nonce `nonce` whose manifest names `packs` (ids in
    /// manifest order), derived from the store's keys.
    pub fn derive(keys: &StoreKeys, nonce: [u8; 16], packs: &[[u8; 32]]) -> VersionKeys {
        VersionKeys {
            store_id: keys.store_id(),
            nonce,
            head: keys.version_key_bytes(&nonce, VERSION_HEAD),
            manifest: keys.version_key_bytes(&nonce, VERSION_MANIFEST),
            packs: packs
                .iter()
                .map(|id| (*id, keys.pack_key_bytes(id)))
                .collect(),
        }
    }

    /// The pack ids the set names, in manifest order.
    pub fn pack_ids(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.packs.iter().map(|(id, _)| id)
    }

    /// The head's cipher, for the version object of `nonce` (none for another object).
    pub fn head(&self, nonce: &[u8; 16]) -> Option<Arc<StreamCipher>> {
        (*nonce == self.nonce).then(|| self.cipher(self.head))
    }

    /// The manifest frame's cipher.
    pub fn manifest(&self) -> Arc<StreamCipher> {
        self.cipher(self.manifest)
    }

    /// The cipher of pack `i` of the manifest, when its id is `id`.
    pub fn pack(&self, i: usize, id: &[u8; 32]) -> Option<Arc<StreamCipher>> {
        match self.packs.get(i) {
            Some((known, key)) if known == id => Some(self.cipher(*key)),
            _ => None,
        }
    }

    fn cipher(&self, key: [u8; 32]) -> Arc<StreamCipher> {
        Arc::new(StreamCipher::with_key(key, self.store_id))
    }

    /// The plaintext of §6.1's table.
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_LEN + PACK_LEN * self.packs.len());
        b.extend_from_slice(MAGIC); // 0: magic
        b.extend_from_slice(&self.store_id); // 8: store id
        b.extend_from_slice(&self.nonce); // 24: the version object's nonce
        b.extend_from_slice(&self.head); // 40: head key
        b.extend_from_slice(&self.manifest); // 72: manifest key
        b.extend_from_slice(&(self.packs.len() as u32).to_le_bytes()); // 104: n
        for (id, key) in &self.packs {
            b.extend_from_slice(id); // 108 + 64 i: pack id
            b.extend_from_slice(key); // 140 + 64 i: pack key
        }
        b
    }

    /// Decodes §6.1's table, checking its magic and its length against its count.
    fn decode(b: &[u8]) -> Result<VersionKeys, String> {
        let take = |at: usize| -> [u8; 32] {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b[at..at + 32]);
            k
        };
        if b.len() < FIXED_LEN || &b[..8] != MAGIC {
            return Err("not a key set".into());
        }
        let n = u32::from_le_bytes([b[104], b[105], b[106], b[107]]) as usize;
        if n > MAX_PACKS || b.len() != FIXED_LEN + PACK_LEN * n {
            return Err(format!("{} bytes for {n} packs", b.len()));
        }
        let mut store_id = [0u8; 16];
        store_id.copy_from_slice(&b[8..24]);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&b[24..40]);
        let packs = (0..n)
            .map(|i| {
                let at = FIXED_LEN + PACK_LEN * i;
                (take(at), take(at + 32))
            })
            .collect();
        Ok(VersionKeys {
            store_id,
            nonce,
            head: take(40),
            manifest: take(72),
            packs,
        })
    }

    /// The set wrapped for `lock` (an age file, FORMAT.md §11.1's parameters).
    pub fn wrap(&self, lock: &Lock) -> Result<Vec<u8>, PayloadError> {
        let mut plain = self.encode();
        let wrapped = age_wrap(lock, &plain, "the version's keys");
        plain.fill(0);
        wrapped
    }

    /// Opens a set wrapped by [`VersionKeys::wrap`] with `unlock` (`shown` in messages): a
    /// wrong key is `wrong passphrase or key for SHOWN`, a set that does not decode is named.
    pub fn open(
        wrapped: &[u8],
        unlock: &Unlock,
        shown: &Path,
    ) -> Result<VersionKeys, PayloadError> {
        let limit = (FIXED_LEN + PACK_LEN * MAX_PACKS) as u64;
        let mut plain = age_open(wrapped, unlock, shown, limit)?;
        let keys = VersionKeys::decode(&plain);
        plain.fill(0);
        keys.map_err(|e| PayloadError::Image {
            path: shown.to_path_buf(),
            msg: format!("the key set does not decode: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::DataKey;

    fn set() -> (StoreKeys, VersionKeys) {
        let store = StoreKeys::new(DataKey([7; 32]), [9; 16]);
        let keys = VersionKeys::derive(&store, [3; 16], &[[1; 32], [2; 32]]);
        (store, keys)
    }

    #[test]
    fn the_table_has_the_documented_offsets_and_round_trips() {
        let (store, keys) = set();
        let b = keys.encode();
        assert_eq!(b.len(), 108 + 2 * 64);
        assert_eq!(&b[..8], b"OSIMNBKS");
        assert_eq!(&b[8..24], &[9; 16]);
        assert_eq!(&b[24..40], &[3; 16]);
        assert_eq!(b[40..72], store.version_key_bytes(&[3; 16], VERSION_HEAD));
        assert_eq!(
            b[72..104],
            store.version_key_bytes(&[3; 16], VERSION_MANIFEST)
        );
        assert_eq!(&b[104..108], &2u32.to_le_bytes());
        assert_eq!(&b[108..140], &[1; 32]);
        assert_eq!(b[140..172], store.pack_key_bytes(&[1; 32]));
        let back = VersionKeys::decode(&b).expect("decodes");
        assert_eq!(back.encode(), b);
        for bad in [&b[..107], &b[..b.len() - 1]] {
            assert!(VersionKeys::decode(bad).is_err());
        }
        let mut other = b.clone();
        other[0] = b'X';
        assert!(VersionKeys::decode(&other).is_err());
    }

    #[test]
    fn the_keys_open_what_the_store_keys_seal_and_nothing_else() {
        let (store, keys) = set();
        let plain = b"a pack's plaintext".to_vec();
        let sealed = crate::store::crypt::seal(store.pack(&[2; 32]), &plain);
        let cipher = keys.pack(1, &[2; 32]).expect("pack 1");
        assert_eq!(crate::store::crypt::open(&cipher, &sealed), Ok(plain));
        assert!(keys.pack(0, &[2; 32]).is_none(), "another position");
        assert!(keys.pack(2, &[2; 32]).is_none(), "past the end");
        assert!(keys.head(&[4; 16]).is_none(), "another version object");
        let head = crate::store::crypt::seal(store.version(&[3; 16], VERSION_HEAD), b"head");
        let cipher = keys.head(&[3; 16]).expect("its head");
        assert_eq!(
            crate::store::crypt::open(&cipher, &head),
            Ok(b"head".to_vec())
        );
    }

    #[test]
    fn a_wrapped_set_opens_with_its_identity_only() {
        let (_, keys) = set();
        let id = age::x25519::Identity::generate();
        let wrapped = keys
            .wrap(&Lock::Recipients(vec![id.to_public()]))
            .expect("wrap");
        let unlock = Unlock {
            identities: vec![id],
            ..Unlock::default()
        };
        let back = VersionKeys::open(&wrapped, &unlock, Path::new("source.conf")).expect("open");
        assert_eq!(back.encode(), keys.encode());
        let stranger = Unlock {
            identities: vec![age::x25519::Identity::generate()],
            ..Unlock::default()
        };
        let e = VersionKeys::open(&wrapped, &stranger, Path::new("source.conf")).unwrap_err();
        assert_eq!(e.to_string(), "wrong passphrase or key for source.conf");
    }
}
