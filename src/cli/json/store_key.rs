//! `store key list --json` (docs/JSON.md): the store's key objects, the facts the text
//! listing gives (STORE.md §6.1 "Key objects by hand"), nothing secret. Built from the
//! library's `KeyObject` here, never by serializing it.

use serde::Serialize;

use osimage::store::key_objects::{KeyKind, KeyObject};
use osimage::store::names;

#[derive(Serialize)]
pub struct KeyListing {
    pub store: String,
    /// In the order the store lists them (the order a reader tries them).
    pub keys: Vec<KeyJson>,
}

#[derive(Serialize)]
pub struct KeyJson {
    /// The 32 hex digits of its name (`keys/<id>`): what `store key remove` takes.
    pub id: String,
    /// `passphrase`, `recipients` (age public keys) or `damaged`.
    pub kind: &'static str,
    /// Why it does not decode, for a `damaged` one; `null` otherwise.
    pub problem: Option<String>,
    /// The object's length.
    pub size: u64,
    /// The server's time of its PUT.
    pub written: String,
    /// Whether it is the key that unlocked the store for this listing.
    pub opened_now: bool,
}

/// The document of `store key list` on the store `store`.
pub fn listing(store: &str, objects: &[KeyObject]) -> KeyListing {
    KeyListing {
        store: store.to_string(),
        keys: objects.iter().map(key).collect(),
    }
}

fn key(k: &KeyObject) -> KeyJson {
    let (kind, problem) = match &k.kind {
        KeyKind::Passphrase => ("passphrase", None),
        KeyKind::Recipients => ("recipients", None),
        KeyKind::Damaged(why) => ("damaged", Some(why.clone())),
    };
    KeyJson {
        id: names::hex(&k.id),
        kind,
        problem,
        size: k.size,
        written: k
            .written
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        opened_now: k.unlocked_now,
    }
}
