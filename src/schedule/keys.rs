//! The keys of encrypted scheduled captures (docs/SCHEDULE.md "Encrypted images and encrypted
//! stores", STORE.md §6.1 "Scheduled captures into an encrypted store"): the age public keys
//! a local image is encrypted to (`--recipient`, `--recipient-file`: no secret on the
//! machine), and the key file a run into an encrypted store unlocks it with (`--identity
//! FILE` or `--passphrase-file FILE`). The job keeps the file's path, never the key; every
//! read checks that only its owner, the user running, can read it, as the credentials file.

use std::path::Path;
use std::str::FromStr;

use age::secrecy::SecretString;

use super::ScheduleError;
use super::job::{Dest, Job};
use crate::envelope::Unlock;
use crate::envelope::keys::Lock;

/// The largest key, passphrase or credentials file read.
const MAX_FILE: u64 = 64 * 1024;

/// Reads `path`, a file only the user running may read (`what` names it in messages): a
/// regular file (not a symbolic link) owned by that user, unreadable by group and others.
/// `missing` says what to do when it cannot be opened.
pub fn read_private(path: &Path, what: &str, missing: &str) -> Result<String, ScheduleError> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let bad = |why: String| ScheduleError::Invalid(format!("{}: {why}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| bad(format!("cannot open the {what} ({e}){missing}")))?;
    let md = f.metadata().map_err(|e| bad(format!("cannot read: {e}")))?;
    let me = rustix::process::geteuid().as_raw();
    if !md.is_file() {
        return Err(bad(format!("the {what} is not a regular file")));
    }
    if md.uid() != me || md.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "owned by uid {} with mode {:04o}: a {what} must belong to the user running \
             (uid {me}) and be readable by it alone (chmod 0600)",
            md.uid(),
            md.mode() & 0o7777
        )));
    }
    let mut text = String::new();
    f.by_ref()
        .take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    Ok(text)
}

/// The key file a run into an encrypted store unlocks it with, and the option that named it.
pub fn key_file(job: &Job) -> Option<(&Path, &'static str)> {
    match (&job.identity, &job.passphrase_file) {
        (Some(f), _) => Some((f, "--identity")),
        (None, Some(f)) => Some((f, "--passphrase-file")),
        (None, None) => None,
    }
}

/// Which key options go with which destination (usage errors): a store's key file only with
/// a store, recipients only with a directory.
pub fn check(job: &Job) -> Result<(), ScheduleError> {
    let usage = |m: String| Err(ScheduleError::Argument(m));
    let recipients = !job.recipients.is_empty() || !job.recipient_files.is_empty();
    if job.identity.is_some() && job.passphrase_file.is_some() {
        return usage("give --identity or --passphrase-file, not both".into());
    }
    match (&job.dest, key_file(job)) {
        (Dest::Dir(d), Some((_, opt))) => {
            return usage(format!(
                "{opt} unlocks an encrypted store; {} is a directory, whose images are \
                 encrypted with --recipient (a public key: no secret is kept on the machine)",
                d.display()
            ));
        }
        (Dest::Store(a), _) if recipients => {
            return usage(format!(
                "--recipient does not apply to a store: {a}'s own key seals its versions \
                 (give a reader access with `osimage store key add {} --recipient age1…`)",
                a.root
            ));
        }
        _ => {}
    }
    if recipients && job.verify_boot {
        return usage(
            "--verify-boot with --recipient: the VM's restore would need the secret key, \
             which the machine does not keep"
                .into(),
        );
    }
    Ok(())
}

/// What unlocks a run's encrypted store: the job's key file, read only if its owner alone can
/// read it (nothing is ever asked: a run has no terminal). Empty when the job has none.
pub fn unlock(job: &Job) -> Result<Unlock, ScheduleError> {
    let mut unlock = Unlock::default();
    let Some((path, opt)) = key_file(job) else {
        return Ok(unlock);
    };
    let missing = format!(
        "; it is the schedule's {opt} (docs/SCHEDULE.md \"Encrypted images and encrypted \
         stores\")"
    );
    let text = read_private(path, "key file", &missing)?;
    let bad = |why: String| ScheduleError::Invalid(format!("{}: {why}", path.display()));
    if job.identity.is_some() {
        for (n, line) in key_lines(&text) {
            unlock
                .identities
                .push(age::x25519::Identity::from_str(line).map_err(|_| {
                    bad(format!(
                        "line {n}: not an age secret key (AGE-SECRET-KEY-1…)"
                    ))
                })?);
        }
        if unlock.identities.is_empty() {
            return Err(bad("holds no age secret key".into()));
        }
    } else {
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(bad("the passphrase file is empty".into()));
        }
        unlock.passphrase = Some(SecretString::from(line.to_string()));
    }
    Ok(unlock)
}

/// Who can open a local scheduled image: the job's `--recipient` keys and those of its
/// `--recipient-file`s (read now); None when it has neither (a plain image).
pub fn lock(job: &Job) -> Result<Option<Lock>, ScheduleError> {
    let parse = |text: &str, place: &str| {
        age::x25519::Recipient::from_str(text).map_err(|_| {
            ScheduleError::Argument(format!("{place}: not an age public key (age1…): {text:?}"))
        })
    };
    let mut out = Vec::new();
    for r in &job.recipients {
        out.push(parse(r, "--recipient")?);
    }
    for f in &job.recipient_files {
        let text =
            std::fs::read_to_string(f).map_err(super::io("cannot read the recipient file", f))?;
        let before = out.len();
        for (n, line) in key_lines(&text) {
            out.push(parse(line, &format!("{}:{n}", f.display()))?);
        }
        if out.len() == before {
            return Err(ScheduleError::Invalid(format!(
                "{}: the recipient file holds no age public key",
                f.display()
            )));
        }
    }
    Ok((!out.is_empty()).then_some(Lock::Recipients(out)))
}

/// The lines of a key file that are not blank or comments, with their numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn job(dest: &str) -> Job {
        super::super::job::test_job(Dest::parse(Path::new(dest)).unwrap())
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let p = dir.path().join("web.key");
        std::fs::write(
            &p,
            format!("# a comment\n{}\n", {
                use age::secrecy::ExposeSecret;
                id.to_string().expose_secret().to_string()
            }),
        )
        .unwrap();
        let mut j = job("s3://images/fleet/web");
        j.identity = Some(p.clone());
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = unlock(&j).unwrap_err().to_string();
            assert!(e.contains("web.key") && e.contains("chmod 0600"), "{e}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let u = unlock(&j).unwrap();
            assert_eq!(u.identities.len(), 1);
            assert_eq!(
                u.identities[0].to_public().to_string(),
                id.to_public().to_string()
            );
        }
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        j.identity = Some(link);
        assert!(unlock(&j).is_err(), "a symbolic link is not followed");
        j.identity = Some(dir.path().join("none.key"));
        let e = unlock(&j).unwrap_err().to_string();
        assert!(e.contains("none.key") && e.contains("--identity"), "{e}");
        // A passphrase file: its first line.
        let pf = dir.path().join("pass");
        std::fs::write(&pf, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(0o600)).unwrap();
        j.identity = None;
        j.passphrase_file = Some(pf);
        let u = unlock(&j).unwrap();
        use age::secrecy::ExposeSecret;
        assert_eq!(
            u.passphrase.as_ref().map(|p| p.expose_secret()),
            Some("s3cret")
        );
        assert!(format!("{u:?}").find("s3cret").is_none());
    }

    #[test]
    fn key_options_go_with_their_destination() {
        let mut j = job("/srv/images");
        j.identity = Some(PathBuf::from("/etc/osimage/k"));
        assert!(check(&j).unwrap_err().is_usage());
        let mut j = job("s3://images/fleet/web");
        j.recipients = vec!["age1x".into()];
        assert!(check(&j).unwrap_err().is_usage());
        let mut j = job("s3://images/fleet/web");
        j.identity = Some(PathBuf::from("/k"));
        j.passphrase_file = Some(PathBuf::from("/p"));
        assert!(check(&j).unwrap_err().is_usage());
        let mut j = job("/srv/images");
        let r = age::x25519::Identity::generate().to_public().to_string();
        j.recipients = vec![r];
        check(&j).unwrap();
        assert!(matches!(lock(&j).unwrap(), Some(Lock::Recipients(v)) if v.len() == 1));
        j.verify_boot = true;
        assert!(check(&j).unwrap_err().is_usage());
        j.recipients = vec!["age1notakey".into()];
        assert!(lock(&j).unwrap_err().is_usage());
        assert!(lock(&job("/srv/images")).unwrap().is_none());
    }
}
