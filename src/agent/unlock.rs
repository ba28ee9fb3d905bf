//! Opening an encrypted image in the rescue environment (docs/SECURITY.md): the passphrase or
//! age key comes from `osimage.keyfile=` (a file on the boot medium, or `DEVICE:PATH` on a
//! second medium, for unattended restores), else it is asked for on the console, echo off,
//! three tries. A plain image opens without asking.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;

use super::Console;
use crate::envelope::Unlock;
use crate::format::PayloadError;
use crate::payload::reader::PayloadReader;

/// Tries at the console before giving up.
pub const TRIES: usize = 3;

/// What a key file or a typed line holds.
fn unlock_from_text(text: &str) -> Result<Unlock, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines
        .first()
        .is_some_and(|l| l.starts_with("AGE-SECRET-KEY-"))
    {
        let mut identities = Vec::new();
        for l in lines {
            identities.push(
                l.parse::<age::x25519::Identity>()
                    .map_err(|_| "not an age secret key".to_string())?,
            );
        }
        return Ok(Unlock {
            identities,
            ..Unlock::default()
        });
    }
    // A passphrase is the first line as typed (only its line end removed).
    let first = text.lines().next().unwrap_or("");
    if first.is_empty() {
        return Err("empty".into());
    }
    Ok(Unlock {
        passphrase: Some(SecretString::from(first.to_string())),
        ..Unlock::default()
    })
}

/// Reads `osimage.keyfile=`: `PATH` on the boot medium (mounted at `medium_root`), an absolute
/// path in the rescue environment, or `DEVICE:PATH` on another medium (mounted read-only).
pub fn read_keyfile(spec: &str, medium_root: &Path) -> Result<String, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("keyfile-unreadable {}: {e}", p.display()))
    };
    if let Some((dev, path)) = spec.split_once(':')
        && dev.starts_with("/dev/")
    {
        let dir = PathBuf::from("/run/osimage-keyfile");
        std::fs::create_dir_all(&dir).map_err(|e| format!("keyfile-unreadable {spec}: {e}"))?;
        super::sys::mount_any_ro(dev, &dir)
            .map_err(|e| format!("keyfile-unreadable cannot mount {dev}: {e}"))?;
        let text = read(&dir.join(path.trim_start_matches('/')));
        super::sys::umount(&dir);
        return text;
    }
    let p = Path::new(spec);
    if p.exists() {
        return read(p);
    }
    read(&medium_root.join(spec.trim_start_matches('/')))
}

/// Opens the image with `open`: plainly, with `keyfile`'s contents, or asking on `con` and
/// reading lines from `input` (the console; echo is turned off by the caller).
pub fn open_image(
    open: &dyn Fn(&Unlock) -> Result<PayloadReader, PayloadError>,
    keyfile: Option<&str>,
    con: &Console,
    input: &mut dyn BufRead,
) -> Result<PayloadReader, String> {
    let unreadable = |e: PayloadError| format!("image-unreadable {e}");
    let first = match keyfile {
        Some(text) => unlock_from_text(text).map_err(|e| format!("keyfile-invalid ({e})"))?,
        None => Unlock::none(),
    };
    match open(&first) {
        Ok(r) => return Ok(r),
        Err(PayloadError::WrongKey(_)) => {
            return Err("wrong-passphrase (osimage.keyfile does not open the image)".into());
        }
        Err(PayloadError::NeedKey { .. }) if keyfile.is_none() => {}
        Err(e) => return Err(unreadable(e)),
    }
    con.line("OSIMAGE-RESTORE-WAITING passphrase (the image is encrypted)");
    for attempt in 1..=TRIES {
        con.line("osimage: passphrase (or age secret key) of the encrypted image:");
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => {
                return Err("no-passphrase (the image is encrypted and no console input)".into());
            }
            Ok(_) => {}
        }
        let unlock = match unlock_from_text(line.trim_end_matches(['\n', '\r'])) {
            Ok(u) => u,
            Err(e) => {
                con.line(&format!("osimage: {e}; try again"));
                continue;
            }
        };
        match open(&unlock) {
            Ok(r) => {
                con.line("osimage: image unlocked");
                return Ok(r);
            }
            Err(PayloadError::WrongKey(_)) if attempt < TRIES => {
                con.line("osimage: wrong passphrase or key; try again");
            }
            Err(PayloadError::WrongKey(_)) => break,
            Err(e) => return Err(unreadable(e)),
        }
    }
    Err(format!("wrong-passphrase ({TRIES} tries)"))
}

/// The passphrase the image's LUKS containers are made anew under: `keyfile`'s first line
/// (`osimage.luks-keyfile=`), else asked on `con` twice (echo off by the caller) until both
/// agree. `None` when the layout has no LUKS container.
pub fn luks_passphrase(
    needed: &[String],
    keyfile: Option<&str>,
    con: &Console,
    input: &mut dyn BufRead,
) -> Result<Option<String>, String> {
    if needed.is_empty() {
        return Ok(None);
    }
    if let Some(text) = keyfile {
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err("luks-keyfile-empty (osimage.luks-keyfile's first line is empty)".into());
        }
        return Ok(Some(line.to_string()));
    }
    con.line(&format!(
        "OSIMAGE-RESTORE-WAITING luks-passphrase ({} made anew: a new master key)",
        needed.join(", ")
    ));
    for _ in 0..TRIES {
        con.line("osimage: new passphrase for the restored LUKS containers:");
        let first = read_secret(input)?;
        con.line("osimage: the same passphrase again:");
        let again = read_secret(input)?;
        match (first.is_empty(), first == again) {
            (true, _) => con.line("osimage: an empty passphrase is not allowed; try again"),
            (false, false) => con.line("osimage: the two differ; try again"),
            (false, true) => {
                con.line("osimage: LUKS passphrase set");
                return Ok(Some(first));
            }
        }
    }
    Err(format!("no-luks-passphrase ({TRIES} tries)"))
}

fn read_secret(input: &mut dyn BufRead) -> Result<String, String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) | Err(_) => Err("no-luks-passphrase (no console input; give \
                               osimage.luks-keyfile=)"
            .into()),
        Ok(_) => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

/// Turns echo off on standard input while `f` runs (when it is a terminal).
pub fn without_echo<T>(f: impl FnOnce() -> T) -> T {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    // Not a terminal: nothing to turn off.
    let Ok(saved) = tcgetattr(&stdin) else {
        return f();
    };
    let mut t = saved.clone();
    t.local_modes.remove(LocalModes::ECHO);
    t.local_modes.insert(LocalModes::ECHONL);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &t);
    let out = f();
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_is_a_passphrase_or_identities() {
        let u = unlock_from_text("correct horse\nignored").unwrap();
        assert!(u.passphrase.is_some() && u.identities.is_empty());
        let id = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        let text = format!("# key\n{}\n", id.to_string().expose_secret());
        let u = unlock_from_text(&text).unwrap();
        assert_eq!(u.identities.len(), 1);
        assert!(unlock_from_text("").is_err());
        assert!(unlock_from_text("AGE-SECRET-KEY-1NOPE").is_err());
    }

    #[test]
    fn keyfile_is_found_on_the_medium() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.txt"), "secret\n").unwrap();
        assert_eq!(read_keyfile("/k.txt", dir.path()).unwrap(), "secret\n");
        assert!(
            read_keyfile("missing", dir.path())
                .unwrap_err()
                .contains("missing")
        );
    }
}
