//! The key `verify --boot` types at the rescue agent's prompt for an encrypted image or store
//! version (docs/VERIFY-BOOT.md "Encrypted images"): the passphrase, or one age secret key,
//! that opened it on the host. The agent reads either from one console line
//! (src/agent/unlock.rs) with echo off, so the key reaches neither QEMU's command line, the
//! console log, the report nor the netboot files.

use age::secrecy::{ExposeSecret, SecretString};

use crate::envelope::Unlock;
use crate::envelope::keys::Lock;

/// The agent's line before it asks (src/agent/unlock.rs); the key is typed once it appears.
pub const KEY_WAITING: &str = "OSIMAGE-RESTORE-WAITING passphrase";
/// The agent's answer to a key that does not open the image.
pub const KEY_WRONG: &str = "osimage: wrong passphrase or key";

/// One console line that opens the image: a passphrase or an `AGE-SECRET-KEY-1…`, with the
/// identity's public key when it is one.
pub struct ConsoleKey {
    line: SecretString,
    recipient: Option<age::x25519::Recipient>,
}

impl std::fmt::Debug for ConsoleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleKey(..)")
    }
}

impl ConsoleKey {
    /// From what unlocked the image on the host: the passphrase given or asked for when
    /// `opens` accepts it alone, else the first of the identities that `opens` accepts alone
    /// (an identity file may hold keys of other images; `--passphrase-file` and `--identity`
    /// may both be given). `None` when nothing in `unlock` opens it.
    pub fn chosen(unlock: &Unlock, opens: &dyn Fn(&Unlock) -> bool) -> Option<ConsoleKey> {
        let asked = unlock.asked.lock().ok().and_then(|a| a.clone());
        if let Some(p) = unlock.passphrase.clone().or(asked) {
            let alone = Unlock {
                passphrase: Some(p.clone()),
                ..Unlock::default()
            };
            if opens(&alone) {
                return Some(ConsoleKey {
                    line: p,
                    recipient: None,
                });
            }
        }
        unlock.identities.iter().find_map(|id| {
            let alone = Unlock {
                identities: vec![id.clone()],
                ..Unlock::default()
            };
            opens(&alone).then(|| ConsoleKey {
                line: id.to_string(),
                recipient: Some(id.to_public()),
            })
        })
    }

    /// What a store version's key set is wrapped for in the served `source.conf`: this key
    /// alone.
    pub fn lock(&self) -> Lock {
        match &self.recipient {
            Some(r) => Lock::Recipients(vec![r.clone()]),
            None => Lock::Passphrase(self.line.clone()),
        }
    }

    /// The line as typed (without its line end).
    pub fn line(&self) -> &str {
        self.line.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_comes_first_then_the_identity_that_opens() {
        let pass = Unlock {
            passphrase: Some(SecretString::from("correct horse".to_string())),
            ..Unlock::default()
        };
        assert!(ConsoleKey::chosen(&pass, &|_| false).is_none());
        let k = ConsoleKey::chosen(&pass, &|_| true).expect("a passphrase is typed as given");
        assert_eq!(k.line(), "correct horse");
        assert!(matches!(k.lock(), Lock::Passphrase(_)));

        let (a, b) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let b_public = b.to_public().to_string();
        let ids = Unlock {
            identities: vec![a, b.clone()],
            ..Unlock::default()
        };
        let opens = |u: &Unlock| {
            u.identities
                .iter()
                .any(|i| i.to_public().to_string() == b_public)
        };
        let k = ConsoleKey::chosen(&ids, &opens).expect("b opens it");
        assert_eq!(k.line(), b.to_string().expose_secret());
        match k.lock() {
            Lock::Recipients(r) => assert_eq!(r[0].to_string(), b_public),
            Lock::Passphrase(_) => panic!("an identity wraps for its recipient"),
        }
        assert!(ConsoleKey::chosen(&ids, &|_| false).is_none());
        // a passphrase that does not open it gives way to the identity that does
        let both = Unlock {
            passphrase: Some(SecretString::from("not this one".to_string())),
            identities: vec![b.clone()],
            ..Unlock::default()
        };
        let k = ConsoleKey::chosen(&both, &opens).expect("b opens it");
        assert_eq!(k.line(), b.to_string().expose_secret());
        assert!(ConsoleKey::chosen(&Unlock::default(), &|_| true).is_none());
        assert_eq!(format!("{k:?}"), "ConsoleKey(..)");
    }
}
