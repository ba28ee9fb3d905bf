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

/// What can go wrong signing or checking a signature.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{path}: {msg}")]
    Key { path: PathBuf, msg: String },
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

/// Loads a minisign secret key; an encrypted one with `password` (None: asked on the terminal).
pub fn load_secret_key(path: &Path, password: Option<String>) -> Result<SecretKey, SignatureError> {
    let text = std::fs::read_to_string(path).map_err(|e| SignatureError::Io {
        what: "read the secret key",
        path: path.to_path_buf(),
        source: e,
    })?;
    let plain = SecretKeyBox::from_string(&text).and_then(|b| b.into_unencrypted_secret_key());
    match plain {
        Ok(sk) if !sk.is_encrypted() => return Ok(sk),
        _ => {}
    }
    let b = SecretKeyBox::from_string(&text).map_err(|e| key_err(path, e))?;
    b.into_secret_key(password).map_err(|e| match plain {
        // An unencrypted key the crate cannot check (minisign 0.11's `-G -W` keys).
        Err(first) => key_err(
            path,
            format!("{first}; use a password-protected key (minisign -G without -W)"),
        ),
        Ok(_) => key_err(path, e),
    })
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
}
