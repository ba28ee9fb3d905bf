//! Where the command line gets keys: `--encrypt` with a passphrase or `--recipient`s for
//! capture; `--identity`, `--passphrase-file`, `OSIMAGE_PASSPHRASE` or a prompt for readers
//! (docs/SECURITY.md).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use clap::Args;

use osimage::Lock;
use osimage::Unlock;

/// The environment variable a passphrase may come from (for automation; a file is safer).
pub const PASSPHRASE_ENV: &str = "OSIMAGE_PASSPHRASE";

/// How to open an encrypted image.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// Read the passphrase of an encrypted image from FILE (its first line). Without it (and
    /// without OSIMAGE_PASSPHRASE) the passphrase is asked for on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// An age secret key file (lines `AGE-SECRET-KEY-1…`, made by age-keygen) for images
    /// encrypted to its public key with `capture --recipient`. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub identity: Vec<PathBuf>,
}

/// Who can open the image `capture` writes.
#[derive(Debug, Args, Clone, Default)]
pub struct EncryptArgs {
    /// Encrypt the payload (every pack and the manifest; FORMAT.md §11). The passphrase comes
    /// from --passphrase-file, OSIMAGE_PASSPHRASE or a prompt, unless --recipient is given.
    #[arg(long)]
    pub encrypt: bool,
    /// Encrypt to this age public key (`age1…`) instead of a passphrase: capture then needs
    /// no secret at all. Repeatable; implies --encrypt.
    #[arg(long, value_name = "AGE_PUBLIC_KEY")]
    pub recipient: Vec<String>,
    /// Read age public keys from FILE, one a line (# comments). Repeatable; implies --encrypt.
    #[arg(long, value_name = "FILE")]
    pub recipient_file: Vec<PathBuf>,
}

/// A problem with a key, a key file or a passphrase.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

fn read_text(path: &Path, what: &str) -> Result<String, KeyError> {
    std::fs::read_to_string(path)
        .map_err(|e| KeyError(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The first line of a passphrase file, without its line end; an empty one is refused.
fn passphrase_from_file(path: &Path) -> Result<SecretString, KeyError> {
    let text = read_text(path, "passphrase file")?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(KeyError(format!(
            "the passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(line.to_string()))
}

/// The lines of a key file that are not blank or comments, with their numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Reads age X25519 identities from `path`.
pub fn identities_from_file(path: &Path) -> Result<Vec<age::x25519::Identity>, KeyError> {
    let text = read_text(path, "identity file")?;
    let mut out = Vec::new();
    for (n, line) in key_lines(&text) {
        out.push(age::x25519::Identity::from_str(line).map_err(|_| {
            KeyError(format!(
                "{}:{n}: not an age secret key (AGE-SECRET-KEY-1…)",
                path.display()
            ))
        })?);
    }
    if out.is_empty() {
        return Err(KeyError(format!(
            "{} holds no age secret key",
            path.display()
        )));
    }
    Ok(out)
}

fn recipient(text: &str, place: &str) -> Result<age::x25519::Recipient, KeyError> {
    age::x25519::Recipient::from_str(text)
        .map_err(|_| KeyError(format!("{place}: not an age public key (age1…): {text:?}")))
}

/// The passphrase given without a prompt: `--passphrase-file`, else `OSIMAGE_PASSPHRASE`.
fn given_passphrase(file: Option<&Path>) -> Result<Option<SecretString>, KeyError> {
    if let Some(f) = file {
        return passphrase_from_file(f).map(Some);
    }
    match std::env::var(PASSPHRASE_ENV) {
        Ok(p) if !p.is_empty() => Ok(Some(SecretString::from(p))),
        _ => Ok(None),
    }
}

fn prompt(text: &str) -> std::io::Result<SecretString> {
    rpassword::prompt_password(text).map(SecretString::from)
}

impl KeyArgs {
    /// What a reading command opens encrypted images with; the prompt is only used when an
    /// image asks for a passphrase that was not given.
    pub fn unlock(&self) -> Result<Unlock, KeyError> {
        let mut identities = Vec::new();
        for f in &self.identity {
            identities.extend(identities_from_file(f)?);
        }
        Ok(Unlock {
            identities,
            passphrase: given_passphrase(self.passphrase_file.as_deref())?,
            ask: Some(Box::new(|image: &Path| {
                prompt(&format!("Passphrase for {}: ", image.display())).map_err(|e| {
                    std::io::Error::other(format!(
                        "no terminal to ask on ({e}); give --passphrase-file FILE, \
                         {PASSPHRASE_ENV} or --identity FILE"
                    ))
                })
            })),
            ..Unlock::default()
        })
    }
}

impl EncryptArgs {
    /// Who may open the new image, or None when it is not encrypted.
    pub fn lock(&self, keys: &KeyArgs) -> Result<Option<Lock>, KeyError> {
        let given = given_passphrase(keys.passphrase_file.as_deref())?;
        self.lock_with(given, "the new image")
    }

    /// The new lock of `store key add`: recipients, or a passphrase from
    /// `new.passphrase_file` or asked twice — never OSIMAGE_PASSPHRASE, which unlocked the
    /// store.
    pub fn new_lock(&self, new: &KeyArgs) -> Result<Lock, KeyError> {
        let given = match new.passphrase_file.as_deref() {
            Some(f) => Some(passphrase_from_file(f)?),
            None => None,
        };
        self.lock_with(given, "the store")?
            .ok_or_else(|| KeyError("no new passphrase or recipient".into()))
    }

    fn lock_with(&self, given: Option<SecretString>, what: &str) -> Result<Option<Lock>, KeyError> {
        let mut recipients = Vec::new();
        for r in &self.recipient {
            recipients.push(recipient(r, "--recipient")?);
        }
        for f in &self.recipient_file {
            let text = read_text(f, "recipient file")?;
            for (n, line) in key_lines(&text) {
                recipients.push(recipient(line, &format!("{}:{n}", f.display()))?);
            }
        }
        if !recipients.is_empty() {
            return Ok(Some(Lock::Recipients(recipients)));
        }
        if !self.recipient_file.is_empty() {
            return Err(KeyError("the recipient files hold no public key".into()));
        }
        if !self.encrypt {
            return Ok(None);
        }
        if let Some(p) = given {
            return Ok(Some(Lock::Passphrase(p)));
        }
        let no_tty = |e: std::io::Error| {
            KeyError(format!(
                "--encrypt needs a passphrase: none on a terminal ({e}); give \
                 --passphrase-file FILE, {PASSPHRASE_ENV} or --recipient"
            ))
        };
        let first = prompt(&format!("New passphrase for {what}: ")).map_err(no_tty)?;
        let again = prompt("Same passphrase again: ").map_err(no_tty)?;
        if first.expose_secret() != again.expose_secret() {
            return Err(KeyError("the two passphrases differ".into()));
        }
        if first.expose_secret().is_empty() {
            return Err(KeyError("an empty passphrase protects nothing".into()));
        }
        Ok(Some(Lock::Passphrase(first)))
    }
}

/// Who may open what `export` or `netboot` writes from a store (docs/STORE.md §6.1).
#[derive(Debug, Args, Clone, Default)]
pub struct OutputKeyArgs {
    /// Encrypt what is written (an exported image, a netboot key set) to this age public key
    /// (`age1…`) instead of what unlocked the store. Repeatable.
    #[arg(long, value_name = "AGE_PUBLIC_KEY")]
    pub recipient: Vec<String>,
    /// Read age public keys for it from FILE, one a line (# comments). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub recipient_file: Vec<PathBuf>,
    /// Encrypt it with the passphrase in FILE (its first line) instead of the one that
    /// opened the store.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recipient", "recipient_file"])]
    pub new_passphrase_file: Option<PathBuf>,
}

impl OutputKeyArgs {
    /// Whether any of them was given.
    pub fn given(&self) -> bool {
        !self.recipient.is_empty()
            || !self.recipient_file.is_empty()
            || self.new_passphrase_file.is_some()
    }

    /// The lock they give; else, for an encrypted store (`encrypted`), what unlocked it
    /// (`unlock`); else none. `root` names the store when there is nothing to lock with.
    pub fn lock(
        &self,
        encrypted: bool,
        unlock: &Unlock,
        root: &str,
    ) -> Result<Option<Lock>, KeyError> {
        if self.given() {
            return new_lock(
                &self.recipient,
                &self.recipient_file,
                &self.new_passphrase_file,
            )
            .map(Some);
        }
        if !encrypted {
            return Ok(None);
        }
        lock_of(unlock).map(Some).ok_or_else(|| {
            KeyError(format!(
                "{root}: no passphrase or identity to encrypt with (give \
                 --new-passphrase-file or --recipient)"
            ))
        })
    }
}

/// A new lock for age `recipient`s and `recipient_file`s, else for the passphrase in
/// `new_passphrase_file` (its first line), else asked twice on the terminal: what `export`,
/// `netboot` and `store key add` wrap a key for, apart from the `--passphrase-file` that
/// unlocked the store.
pub fn new_lock(
    recipient: &[String],
    recipient_file: &[PathBuf],
    new_passphrase_file: &Option<PathBuf>,
) -> Result<Lock, KeyError> {
    let encrypt = EncryptArgs {
        encrypt: true,
        recipient: recipient.to_vec(),
        recipient_file: recipient_file.to_vec(),
    };
    let new = KeyArgs {
        passphrase_file: new_passphrase_file.clone(),
        identity: Vec::new(),
    };
    encrypt.new_lock(&new)
}

/// The lock of what opened an encrypted store (`export`, STORE.md §6.1): with identities
/// given, their public keys; else the passphrase given or asked for. None when neither is
/// known (nothing was needed: a plain store).
pub fn lock_of(unlock: &Unlock) -> Option<Lock> {
    if !unlock.identities.is_empty() {
        let public = unlock.identities.iter().map(|i| i.to_public()).collect();
        return Some(Lock::Recipients(public));
    }
    if let Some(p) = &unlock.passphrase {
        return Some(Lock::Passphrase(p.clone()));
    }
    let asked = unlock.asked.lock().ok()?;
    asked.as_ref().map(|p| Lock::Passphrase(p.clone()))
}

/// Where `sign` gets a password-protected minisign key's password: the first line of
/// `--key-password-file`, else a prompt on the terminal. Called only for such a key; the
/// error says why there is none and how to give it without a terminal (issue #24 item 10).
pub fn signing_password(
    key: &Path,
    file: Option<&Path>,
) -> impl FnMut() -> Result<String, String> + use<> {
    let (key, file) = (key.to_path_buf(), file.map(Path::to_path_buf));
    move || match &file {
        Some(f) => std::fs::read_to_string(f)
            .map(|t| t.lines().next().unwrap_or("").to_string())
            .map_err(|e| format!("cannot read the password file {}: {e}", f.display())),
        None => {
            rpassword::prompt_password(format!("Password for {}: ", key.display())).map_err(|e| {
                format!(
                    "no terminal to ask for its password on ({e}); give the password with \
                     --key-password-file FILE"
                )
            })
        }
    }
}
