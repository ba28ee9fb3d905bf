//! An encrypted store's key objects by hand (docs/STORE.md §6.1 "Key objects by hand"):
//! `store key list` shows what opens each `keys/` object and nothing secret, `store key add`
//! wraps the store's data key K for another passphrase or age recipients in a new object,
//! and `store key remove` deletes one, never the last.

use chrono::{DateTime, Utc};

use super::crypt::KEYS;
use super::names;
use super::open::MAX_KEY_OBJECT;
use super::{ObjectError, Store, StoreError};
use crate::envelope::keys::{Lock, opens_with_passphrase};

/// What opens a key object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// An age scrypt stanza: a passphrase.
    Passphrase,
    /// Age X25519 stanzas: the secret keys of the recipients it was made for.
    Recipients,
    /// Its header, hash or age header does not decode: why.
    Damaged(String),
}

/// One key object as `store key list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyObject {
    /// The 16 random bytes of its name (`keys/<32 hex>`).
    pub id: [u8; 16],
    pub kind: KeyKind,
    pub size: u64,
    /// The server's time of its PUT.
    pub written: DateTime<Utc>,
    /// Whether it is the one that unlocked the store now.
    pub unlocked_now: bool,
}

impl Store {
    /// The store's keys, or why it has none: a plain store.
    fn require_keys(&self) -> Result<&super::crypt::StoreKeys, StoreError> {
        self.keys()
            .ok_or_else(|| StoreError::Refused(format!("{} is not an encrypted store", self.root)))
    }

    /// Every key object, read (one GET each) and judged by its header alone.
    pub fn list_key_objects(&self) -> Result<Vec<KeyObject>, StoreError> {
        self.require_keys()?;
        let listing = self.client.list(&self.root.key(KEYS))?;
        let mut out = Vec::with_capacity(listing.objects.len());
        for o in listing.objects {
            let rel = self.root.listed_relative(&o.key)?.to_string();
            let id = parse_key_object(&rel).map_err(|e| ObjectError::new(&self.shown(&rel), e))?;
            let Some(bytes) = self.client.get(&o.key, MAX_KEY_OBJECT)? else {
                continue;
            };
            let kind = match opens_with_passphrase(&bytes) {
                Ok(true) => KeyKind::Passphrase,
                Ok(false) => KeyKind::Recipients,
                Err(e) => KeyKind::Damaged(e),
            };
            let kind = match crate::envelope::keys::KeysHeader::decode(&bytes) {
                Ok(h) if h.image_id != self.id => {
                    KeyKind::Damaged("a key object of another store".into())
                }
                _ => kind,
            };
            out.push(KeyObject {
                id,
                kind,
                size: o.size,
                written: o.last_modified,
                unlocked_now: self.unlocked_by.as_deref() == Some(rel.as_str()),
            });
        }
        Ok(out)
    }

    /// Wraps the store's data key for `lock` in a new key object, PUT and read back; returns
    /// its id. With a passphrase, the object read back must open with it.
    pub fn add_key_object(&self, lock: &Lock) -> Result<[u8; 16], StoreError> {
        let keys = self.require_keys()?;
        let record = keys
            .wrap_for(lock)
            .map_err(|e| StoreError::Unlock(Box::new(e)))?;
        let id = super::random_bytes::<16>()?;
        let rel = key_object(&id);
        let shown = self.shown(&rel);
        self.client.put(&self.root.key(&rel), &record)?;
        let back = self
            .client
            .get(&self.root.key(&rel), MAX_KEY_OBJECT)?
            .ok_or_else(|| ObjectError::new(&shown, "written, then gone"))?;
        if back != record {
            return Err(ObjectError::new(&shown, "read back other bytes than written").into());
        }
        if let Lock::Passphrase(p) = lock {
            let unlock = crate::envelope::Unlock {
                passphrase: Some(p.clone()),
                ..crate::envelope::Unlock::default()
            };
            let shown_path = std::path::PathBuf::from(&shown);
            super::crypt::unlock_store(&[back], self.id, &unlock, &shown_path)
                .map_err(|e| StoreError::Unlock(Box::new(e)))?;
        }
        Ok(id)
    }

    /// Deletes the key object `id`, refused when it is not there or is the last one.
    pub fn remove_key_object(&self, id: &[u8; 16]) -> Result<(), StoreError> {
        self.require_keys()?;
        let rel = key_object(id);
        let listed = self.list(KEYS)?;
        if !listed.iter().any(|(r, _)| *r == rel) {
            return Err(StoreError::Refused(format!(
                "{}: no such key object (osimage store key list {})",
                self.shown(&rel),
                self.root
            )));
        }
        if listed.len() < 2 {
            return Err(StoreError::Refused(format!(
                "{}: the last key of {}: osimage store key add another first",
                self.shown(&rel),
                self.root
            )));
        }
        Ok(self.client.delete(&self.root.key(&rel))?)
    }
}

/// The key of the key object `id`: `keys/<32 hex>`.
pub fn key_object(id: &[u8; 16]) -> String {
    format!("{KEYS}{}", names::hex(id))
}

/// The id of a listed key under `keys/`.
pub fn parse_key_object(rel: &str) -> Result<[u8; 16], String> {
    rel.strip_prefix(KEYS)
        .and_then(|h| parse_id(h).ok())
        .ok_or_else(|| format!("{rel:?} is not a key object's key (keys/<32 hex>)"))
}

/// A key object's id as `store key list` prints it (32 hex digits).
pub fn parse_id(text: &str) -> Result<[u8; 16], String> {
    let t = text.trim();
    if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not a key object's id (32 hex digits, from osimage store key list)"
        ));
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_object_names_round_trip_and_refuse_others() {
        let id = [0xa5; 16];
        let rel = key_object(&id);
        assert_eq!(rel, format!("keys/{}", "a5".repeat(16)));
        assert_eq!(parse_key_object(&rel), Ok(id));
        assert_eq!(parse_id(&"A5".repeat(16)), Ok(id));
        for bad in [
            "keys/",
            "keys/zz",
            "locks/a5a5",
            &format!("keys/{}", "a5".repeat(17)),
        ] {
            assert!(parse_key_object(bad).is_err(), "{bad}");
        }
        assert!(parse_id("x").is_err());
    }

    #[test]
    fn a_record_says_what_opens_it_and_a_damaged_one_is_named() {
        use age::secrecy::SecretString;
        let data = crate::envelope::DataKey([3; 32]);
        let pass = Lock::Passphrase(SecretString::from("pw".to_string()));
        let record = crate::envelope::keys::wrap_key(&pass, &data, [1; 16]).unwrap();
        assert_eq!(opens_with_passphrase(&record), Ok(true));
        let who = age::x25519::Identity::generate().to_public();
        let rec = Lock::Recipients(vec![who]);
        let record2 = crate::envelope::keys::wrap_key(&rec, &data, [1; 16]).unwrap();
        assert_eq!(opens_with_passphrase(&record2), Ok(false));
        let mut bad = record.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(opens_with_passphrase(&bad).is_err());
        assert!(opens_with_passphrase(&record[..10]).is_err());
    }
}
