//! Detached signatures of an image (docs/SECURITY.md): `osimage sign` writes `IMAGE.minisig`,
//! a minisign signature (Ed25519 over the BLAKE2b-512 of the whole file, the format of
//! `minisign -S`), so `minisign -Vm IMAGE -p KEY.pub` checks it too; `verify --pubkey` and
//! `restore --require-signature` check it before trusting anything in the image.
//!
//! The whole file is signed, not just the manifest: it is what `minisign` can check, and the
//! manifest's pack hashes would bind the rest anyway.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

/// What can go wrong signing or checking a signature. Each problem with a secret key has its
/// own variant, naming the key file (issue #24 item 10).
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{path}: {msg}")]
    Key { path: PathBuf, msg: String },
    #[error(
        "{path} is a minisign public key: `sign` needs the secret key (minisign -G writes it \
         to ~/.minisign/minisign.key; the .pub file is for verify --pubkey)"
    )]
    PublicKeyGiven { path: PathBuf },
    #[error("{path} is not a minisign secret key ({why})")]
    NotASecretKey { path: PathBuf, why: String },
    #[error("{path}: wrong password for this secret key")]
    WrongPassword { path: PathBuf },
    #[error("{path} is password-protected: {why}")]
    NoPassword { path: PathBuf, why: String },
    #[error("{path}: the unencrypted secret key is damaged (its public half does not match)")]
    DamagedKey { path: PathBuf },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{image}: no signature ({sig} missing)")]
    Missing { image: PathBuf, sig: PathBuf },
    #[error("{image}: signature {sig} is not valid for this image and key ({msg})")]
    Bad {
        image: PathBuf,
        sig: PathBuf,
        msg: String,
    },
}

/// Where the signature of `image` lives unless told otherwise: `IMAGE.minisig`.
pub fn default_path(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

fn key_err(path: &Path, msg: impl std::fmt::Display) -> SignatureError {
    SignatureError::Key {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

fn open(image: &Path) -> Result<File, SignatureError> {
    File::open(image).map_err(|e| SignatureError::Io {
        what: "open",
        path: image.to_path_buf(),
        source: e,
    })
}

/// minisign's secret key record (the base64 line of a `.key` file): signature algorithm
/// `Ed`, KDF `Sc` (scrypt, password-protected) or two zero bytes (`minisign -G -W`), checksum
/// algorithm `B2`, salt, scrypt limits, key id, the Ed25519 secret key (seed and public half),
/// checksum.
const SK_RECORD_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32;
/// A public key record: `Ed`, key id, the Ed25519 public key.
const PK_RECORD_LEN: usize = 2 + 8 + 32;
const KDF_OFFSET: usize = 2;

/// The records a key file holds: each line that is not a comment, base64-decoded (standard
/// alphabet with padding, as minisign writes it); lines that do not decode are skipped.
fn key_records(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .filter_map(base64_decode)
        .collect()
}

/// Strict standard base64 with `=` padding; `None` for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let last = s.len() / 4 - 1;
    for (i, quad) in s.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i != last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// Loads a minisign secret key: an unencrypted one (`minisign -G -W`) as it is, a
/// password-protected one with the password `password` returns (called only for such a key;
/// its `Err` says why there is none, e.g. no terminal to ask on). A public key, a file that is
/// no minisign key, a wrong password and a damaged key each get their own error.
pub fn load_secret_key(
    path: &Path,
    password: &mut dyn FnMut() -> Result<String, String>,
) -> Result<SecretKey, SignatureError> {
    let text = std::fs::read_to_string(path).map_err(|e| SignatureError::Io {
        what: "read the secret key",
        path: path.to_path_buf(),
        source: e,
    })?;
    let records = key_records(&text);
    let not_key = |why: &str| SignatureError::NotASecretKey {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let Some(record) = records.iter().find(|r| r.len() == SK_RECORD_LEN) else {
        if records
            .iter()
            .any(|r| r.len() == PK_RECORD_LEN && r.starts_with(b"Ed"))
        {
            return Err(SignatureError::PublicKeyGiven {
                path: path.to_path_buf(),
            });
        }
        return Err(not_key("no line holds a minisign secret key record"));
    };
    if &record[..2] != b"Ed" || &record[4..6] != b"B2" {
        return Err(not_key("unknown signature or checksum algorithm"));
    }
    match &record[KDF_OFFSET..KDF_OFFSET + 2] {
        [0, 0] => unencrypted(path, record),
        b"Sc" => {
            let pw = password().map_err(|why| SignatureError::NoPassword {
                path: path.to_path_buf(),
                why,
            })?;
            let boxed = SecretKeyBox::from_string(&text).map_err(|e| key_err(path, e))?;
            boxed.into_secret_key(Some(pw)).map_err(|e| match e.kind() {
                // The only check after decryption: the key's checksum (minisign's own
                // "Wrong password for that key").
                minisign::ErrorKind::Verify => SignatureError::WrongPassword {
                    path: path.to_path_buf(),
                },
                _ => key_err(path, e),
            })
        }
        _ => Err(not_key("unknown key encryption")),
    }
}

/// An unencrypted key. `minisign -G -W` (0.11) leaves its checksum zero, which the crate's own
/// loader rejects; the key is checked instead by signing with it and verifying that with its
/// public half, so a damaged key is refused here rather than making bad signatures.
fn unencrypted(path: &Path, record: &[u8]) -> Result<SecretKey, SignatureError> {
    let sk = SecretKey::from_bytes(record).map_err(|e| key_err(path, e))?;
    let pk = PublicKey::from_secret_key(&sk).map_err(|e| key_err(path, e))?;
    minisign::sign(Some(&pk), &sk, &b"osimage key check"[..], None, None).map_err(|_| {
        SignatureError::DamagedKey {
            path: path.to_path_buf(),
        }
    })?;
    Ok(sk)
}

/// Loads a public key: a minisign `.pub` file, or the key itself (`RW…`, as `minisign -P`).
pub fn load_public_key(spec: &Path) -> Result<PublicKey, SignatureError> {
    match std::fs::read_to_string(spec) {
        Ok(text) => PublicKeyBox::from_string(&text)
            .and_then(|b| b.into_public_key())
            .or_else(|_| PublicKey::from_base64(text.trim()))
            .map_err(|e| key_err(spec, format!("not a minisign public key: {e}"))),
        Err(e) => {
            let s = spec.to_string_lossy();
            if e.kind() == std::io::ErrorKind::NotFound && s.starts_with("RW") {
                PublicKey::from_base64(&s).map_err(|e| key_err(spec, e))
            } else {
                Err(SignatureError::Io {
                    what: "read the public key",
                    path: spec.to_path_buf(),
                    source: e,
                })
            }
        }
    }
}

/// Signs `image` with `sk`, writing the signature to `sig` (mode 0644: it is public).
pub fn sign(
    image: &Path,
    sk: &SecretKey,
    sig: &Path,
    trusted_comment: &str,
) -> Result<(), SignatureError> {
    let sbox = minisign::sign(None, sk, open(image)?, Some(trusted_comment), None)
        .map_err(|e| key_err(image, format!("signing failed: {e}")))?;
    let tmp = {
        let mut s = sig.as_os_str().to_owned();
        s.push(".partial");
        PathBuf::from(s)
    };
    let io = |what, e| SignatureError::Io {
        what,
        path: sig.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    f.write_all(sbox.to_string().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, sig).map_err(|e| io("rename into place", e))
}

/// Checks `sig` (default `IMAGE.minisig`) over the whole of `image` with `pk`; returns the
/// signature's trusted comment.
pub fn check(image: &Path, pk: &PublicKey, sig: Option<&Path>) -> Result<String, SignatureError> {
    check_file(image, &open(image)?, pk, sig)
}

/// Reads `file` from its first byte whatever its position, through positional reads, so the
/// descriptor can be shared with a reader opened afterwards.
struct FromStart<'a> {
    file: &'a File,
    at: u64,
}

impl std::io::Seek for FromStart<'_> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        use std::io::SeekFrom;
        let base = match pos {
            SeekFrom::Start(n) => Some(n),
            // Seeking the descriptor sizes block devices too; reads stay positional.
            SeekFrom::End(d) => {
                std::io::Seek::seek(&mut &*self.file, SeekFrom::End(0))?.checked_add_signed(d)
            }
            SeekFrom::Current(d) => self.at.checked_add_signed(d),
        };
        self.at = base.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.at)
    }
}

impl std::io::Read for FromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Checks the signature of the image open as `file` (`image` is its path, for messages and
/// the default signature path): the bytes checked are that open file's, whatever `image`
/// points to by now.
pub fn check_file(
    image: &Path,
    file: &File,
    pk: &PublicKey,
    sig: Option<&Path>,
) -> Result<String, SignatureError> {
    let sig = sig.map_or_else(|| default_path(image), Path::to_path_buf);
    let text = match std::fs::read_to_string(&sig) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Missing {
                image: image.to_path_buf(),
                sig,
            });
        }
        Err(e) => {
            return Err(SignatureError::Io {
                what: "read the signature",
                path: sig,
                source: e,
            });
        }
    };
    let bad = |msg: String| SignatureError::Bad {
        image: image.to_path_buf(),
        sig: sig.clone(),
        msg,
    };
    let sbox = SignatureBox::from_string(&text).map_err(|e| bad(e.to_string()))?;
    // Legacy (non-prehashed) signatures are refused: minisign itself has signed prehashed
    // since 0.11, and a legacy one would need the whole image in memory.
    minisign::verify(pk, &sbox, FromStart { file, at: 0 }, true, false, false)
        .map_err(|e| bad(e.to_string()))?;
    sbox.trusted_comment().map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.oimg");
        std::fs::write(&image, vec![5u8; 100_000]).unwrap();
        let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let sig = default_path(&image);
        sign(&image, &kp.sk, &sig, "osimage test").unwrap();
        assert_eq!(check(&image, &kp.pk, None).unwrap(), "osimage test");
        let other = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        assert!(matches!(
            check(&image, &other.pk, None),
            Err(SignatureError::Bad { .. })
        ));
        let mut bytes = std::fs::read(&image).unwrap();
        bytes[77_777] ^= 1;
        std::fs::write(&image, bytes).unwrap();
        assert!(matches!(
            check(&image, &kp.pk, None),
            Err(SignatureError::Bad { .. })
        ));
        std::fs::remove_file(&sig).unwrap();
        assert!(matches!(
            check(&image, &kp.pk, None),
            Err(SignatureError::Missing { .. })
        ));
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(base64_decode("RWQ=").unwrap(), b"Ed");
        assert_eq!(base64_decode("aGk/").unwrap(), [0x68, 0x69, 0x3f]);
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        for bad in ["", "RWQ", "R=Q=", "RW==RWQ=", "RW!="] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn secret_keys_load_with_a_password_only_when_they_need_one() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let plain = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let plain_path = write("plain.key", plain.sk.to_box(None).unwrap().to_string());
        let asked = std::cell::Cell::new(0);
        let mut never = || -> Result<String, String> {
            asked.set(asked.get() + 1);
            Err("no".into())
        };
        let sk = load_secret_key(&plain_path, &mut never).unwrap();
        assert_eq!(sk.keynum(), plain.sk.keynum());
        assert_eq!(asked.get(), 0, "an unencrypted key asked for a password");

        let enc = minisign::KeyPair::generate_encrypted_keypair(Some("pw".into())).unwrap();
        let enc_path = write("enc.key", enc.sk.to_box(None).unwrap().to_string());
        let e = load_secret_key(&enc_path, &mut || Ok("nope".into())).unwrap_err();
        assert!(matches!(&e, SignatureError::WrongPassword { path } if *path == enc_path));
        let e = load_secret_key(&enc_path, &mut || Err("no terminal".into())).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is password-protected: no terminal"),
            "{e}"
        );
        let sk = load_secret_key(&enc_path, &mut || Ok("pw".into())).unwrap();
        let derived = PublicKey::from_secret_key(&sk).unwrap();
        assert_eq!(derived.to_base64(), enc.pk.to_base64());

        let pub_path = write("k.pub", enc.pk.to_box().unwrap().to_string());
        let e = load_secret_key(&pub_path, &mut never).unwrap_err();
        assert!(matches!(e, SignatureError::PublicKeyGiven { .. }), "{e}");
        let e = load_secret_key(&write("x.key", "x\n".into()), &mut never).unwrap_err();
        assert!(matches!(e, SignatureError::NotASecretKey { .. }), "{e}");
    }
}
