//! The key record (docs/FORMAT.md §11.2): the image's random data key, wrapped with `age` for
//! a passphrase (scrypt) or for X25519 public keys, behind a 64-byte header.

use std::io::{Read, Write};
use std::path::Path;

use age::secrecy::SecretString;

use super::{DataKey, Unlock};
use crate::format::PayloadError;

/// Length of the key record's header.
pub const KEYS_HEADER_LEN: usize = 64;
/// Largest wrapped key (an age file with a few dozen recipients is a few KiB).
pub const MAX_AGE_LEN: u32 = 64 << 10;
/// Version of the encryption envelope this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;
/// Cipher 1: ChaCha20-Poly1305 STREAM with 64 KiB segments (§11.3).
pub const CIPHER_CHACHA_STREAM: u8 = 1;
/// scrypt work factor (log2 N) for passphrases: age's recommended 18 (256 MiB, ~1 s).
const SCRYPT_LOG_N: u8 = 18;
/// Highest work factor a reader accepts: what capture writes, no more. scrypt needs
/// 128 · r · 2^logN bytes (r = 8): 256 MiB at 18; already 19 would take the whole 512 MiB a
/// reading command may use (issue #20), and 22 made a hostile stanza cost 4 GiB and minutes
/// before "wrong passphrase".
const SCRYPT_MAX_LOG_N: u8 = SCRYPT_LOG_N;

const KEYS_MAGIC: &[u8; 8] = b"OSIMKEYS";

/// Who can open an image being written.
#[derive(Clone)]
pub enum Lock {
    /// Anyone with this passphrase.
    Passphrase(SecretString),
    /// Anyone holding the secret key of one of these.
    Recipients(Vec<age::x25519::Recipient>),
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lock::Passphrase(_) => f.write_str("Lock::Passphrase(<hidden>)"),
            Lock::Recipients(r) => write!(f, "Lock::Recipients({} keys)", r.len()),
        }
    }
}

/// The key record's header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysHeader {
    pub cipher: u8,
    pub age_len: u32,
    pub image_id: [u8; 16],
    pub hash: [u8; 32],
}

impl KeysHeader {
    pub fn encode(&self) -> [u8; KEYS_HEADER_LEN] {
        let mut b = [0u8; KEYS_HEADER_LEN];
        b[0..8].copy_from_slice(KEYS_MAGIC); // 0: magic
        b[8..10].copy_from_slice(&ENVELOPE_VERSION.to_le_bytes()); // 8: envelope version
        b[10] = self.cipher; // 10: cipher; 11: reserved
        b[12..16].copy_from_slice(&self.age_len.to_le_bytes()); // 12: wrapped key length
        b[16..32].copy_from_slice(&self.image_id); // 16: image id
        b[32..64].copy_from_slice(&self.hash); // 32: BLAKE3 of the wrapped key
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, PayloadError> {
        let b: &[u8; KEYS_HEADER_LEN] = b
            .get(..KEYS_HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| PayloadError::format("key record truncated"))?;
        if &b[0..8] != KEYS_MAGIC {
            return Err(PayloadError::format("key record has a bad magic (damaged)"));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != ENVELOPE_VERSION {
            return Err(PayloadError::format(format!(
                "encryption envelope version {version}, this osimage reads {ENVELOPE_VERSION} \
                 (made by a newer osimage?)"
            )));
        }
        if b[10] != CIPHER_CHACHA_STREAM {
            return Err(PayloadError::format(format!(
                "unknown cipher {} (made by a newer osimage?)",
                b[10]
            )));
        }
        if b[11] != 0 {
            return Err(PayloadError::format(
                "key record has non-zero reserved bytes (damaged)",
            ));
        }
        let age_len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if age_len == 0 || age_len > MAX_AGE_LEN {
            return Err(PayloadError::format(format!(
                "key record claims an impossible length {age_len}"
            )));
        }
        let mut image_id = [0u8; 16];
        image_id.copy_from_slice(&b[16..32]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[32..64]);
        Ok(KeysHeader {
            cipher: b[10],
            age_len,
            image_id,
            hash,
        })
    }
}

/// The memory scrypt needs at work factor `log_n` (128 · r · N with age's r = 8), for messages.
fn scrypt_memory(log_n: u8) -> String {
    match 1u64.checked_shl(u32::from(log_n) + 10) {
        Some(b) if b >= 1 << 30 => format!("{} GiB", b >> 30),
        Some(b) => format!("{} MiB", b >> 20),
        None => "more memory than exists".into(),
    }
}

/// Makes a fresh data key for image `image_id` and its key record, wrapped for `lock`.
pub fn new_key(lock: &Lock, image_id: [u8; 16]) -> Result<(DataKey, Vec<u8>), PayloadError> {
    let key = DataKey::random()?;
    let record = wrap_key(lock, &key, image_id)?;
    Ok((key, record))
}

/// Whether the key record `record` opens with a passphrase (an age scrypt stanza) rather than
/// with age identities; an error when its header, hash or age header does not decode.
pub fn opens_with_passphrase(record: &[u8]) -> Result<bool, String> {
    let h = KeysHeader::decode(record).map_err(|e| e.to_string())?;
    let wrapped = record.get(KEYS_HEADER_LEN..).unwrap_or_default();
    if wrapped.len() != h.age_len as usize || blake3::hash(wrapped).as_bytes() != &h.hash {
        return Err("its length or checksum does not match its header (damaged)".into());
    }
    let dec = age::Decryptor::new(wrapped).map_err(|e| format!("unreadable: {e}"))?;
    Ok(dec.is_scrypt())
}

/// The key record of the existing data key `key` of image (or store) `image_id`, wrapped
/// for `lock`: another way to open the same key (`store key add`).
pub fn wrap_key(lock: &Lock, key: &DataKey, image_id: [u8; 16]) -> Result<Vec<u8>, PayloadError> {
    let mut plain = Vec::with_capacity(48);
    plain.extend_from_slice(&key.0);
    plain.extend_from_slice(&image_id);
    let wrapped = age_wrap(lock, &plain, "the image key");
    plain.fill(0);
    let wrapped = wrapped?;
    let header = KeysHeader {
        cipher: CIPHER_CHACHA_STREAM,
        age_len: wrapped.len() as u32,
        image_id,
        hash: *blake3::hash(&wrapped).as_bytes(),
    };
    let mut record = header.encode().to_vec();
    record.extend_from_slice(&wrapped);
    Ok(record)
}

/// `plain` as a binary age file for `lock` (scrypt at [`SCRYPT_LOG_N`], or X25519
/// recipients); `what` names it in errors.
pub fn age_wrap(lock: &Lock, plain: &[u8], what: &str) -> Result<Vec<u8>, PayloadError> {
    let enc = match lock {
        Lock::Passphrase(p) => {
            let mut r = age::scrypt::Recipient::new(p.clone());
            r.set_work_factor(SCRYPT_LOG_N);
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        }
        Lock::Recipients(rs) => {
            age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
        }
    }
    .map_err(|e| PayloadError::format(format!("cannot encrypt {what}: {e}")))?;
    let mut wrapped = Vec::new();
    let mut w = enc
        .wrap_output(&mut wrapped)
        .map_err(|e| PayloadError::format(format!("cannot encrypt {what}: {e}")))?;
    w.write_all(plain)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| PayloadError::format(format!("cannot encrypt {what}: {e}")))?;
    Ok(wrapped)
}

/// Unwraps the data key from a key record (`header` decoded, `wrapped` its age bytes).
pub fn open_key(
    header: &KeysHeader,
    wrapped: &[u8],
    unlock: &Unlock,
    image: &Path,
) -> Result<DataKey, PayloadError> {
    if blake3::hash(wrapped).as_bytes() != &header.hash {
        return Err(PayloadError::Image {
            path: image.to_path_buf(),
            msg: "key record checksum mismatch (damaged image)".into(),
        });
    }
    if let Some(k) = unlock.known_key(&header.image_id) {
        return Ok(k);
    }
    let mut plain = age_open(wrapped, unlock, image, 48)?;
    if plain.len() != 48 || plain[32..] != header.image_id {
        return Err(PayloadError::Image {
            path: image.to_path_buf(),
            msg: "key record belongs to another image".into(),
        });
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&plain[..32]);
    plain.fill(0);
    Ok(DataKey(k))
}

/// The plaintext of the binary age file `wrapped`, opened with `unlock` (a passphrase at
/// most at [`SCRYPT_MAX_LOG_N`], or identities), read up to `limit` bytes and one more, so a
/// longer one shows as longer; `image` names it in errors.
pub fn age_open(
    wrapped: &[u8],
    unlock: &Unlock,
    image: &Path,
    limit: u64,
) -> Result<Vec<u8>, PayloadError> {
    let damaged = |e: age::DecryptError| PayloadError::Image {
        path: image.to_path_buf(),
        msg: format!("key record unreadable: {e}"),
    };
    let dec = age::Decryptor::new(wrapped).map_err(damaged)?;
    let reader = if dec.is_scrypt() {
        let pass = unlock.passphrase(image)?;
        let mut id = age::scrypt::Identity::new(pass);
        id.set_max_work_factor(SCRYPT_MAX_LOG_N);
        dec.decrypt(std::iter::once(&id as &dyn age::Identity))
    } else {
        if unlock.identities.is_empty() {
            return Err(PayloadError::NeedKey {
                path: image.to_path_buf(),
                what: "its secret key (--identity FILE)",
            });
        }
        dec.decrypt(unlock.identities.iter().map(|i| i as &dyn age::Identity))
    };
    let mut reader = reader.map_err(|e| match e {
        age::DecryptError::NoMatchingKeys
        | age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed => PayloadError::WrongKey(image.to_path_buf()),
        age::DecryptError::ExcessiveWork { required, .. } => PayloadError::Image {
            path: image.to_path_buf(),
            msg: format!(
                "the key record asks for scrypt work factor {required} ({} of memory); \
                 osimage writes {SCRYPT_LOG_N} and refuses more (damaged or hostile image)",
                scrypt_memory(required)
            ),
        },
        other => damaged(other),
    })?;
    let mut plain = Vec::new();
    reader
        .by_ref()
        .take(limit + 1)
        .read_to_end(&mut plain)
        .map_err(|e| PayloadError::Image {
            path: image.to_path_buf(),
            msg: format!("key record unreadable: {e}"),
        })?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = KeysHeader {
            cipher: CIPHER_CHACHA_STREAM,
            age_len: 300,
            image_id: [3; 16],
            hash: [4; 32],
        };
        let b = h.encode();
        assert_eq!(KeysHeader::decode(&b).unwrap(), h);
        let mut v = b;
        v[8] = 2;
        assert!(
            KeysHeader::decode(&v)
                .unwrap_err()
                .to_string()
                .contains("newer")
        );
        let mut v = b;
        v[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            KeysHeader::decode(&v)
                .unwrap_err()
                .to_string()
                .contains("impossible")
        );
        assert!(KeysHeader::decode(&b[..20]).is_err());
    }

    #[test]
    fn recipients_unwrap_and_a_stranger_is_told_wrong_key() {
        let id = age::x25519::Identity::generate();
        let lock = Lock::Recipients(vec![id.to_public()]);
        let (key, record) = new_key(&lock, [5; 16]).unwrap();
        let h = KeysHeader::decode(&record).unwrap();
        let unlock = Unlock {
            identities: vec![id],
            ..Unlock::default()
        };
        let got = open_key(&h, &record[64..], &unlock, Path::new("x.oimg")).unwrap();
        assert_eq!(got.0, key.0);
        let stranger = Unlock {
            identities: vec![age::x25519::Identity::generate()],
            ..Unlock::default()
        };
        let err = open_key(&h, &record[64..], &stranger, Path::new("x.oimg")).unwrap_err();
        assert_eq!(err.to_string(), "wrong passphrase or key for x.oimg");
        let none = open_key(&h, &record[64..], &Unlock::default(), Path::new("x.oimg"));
        assert!(none.unwrap_err().to_string().contains("--identity"));
    }
}
