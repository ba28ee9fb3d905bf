//! `osimage store key list|add|remove` (docs/STORE.md §6.1 "Key objects by hand"): parsing
//! and printing; the work is `osimage::store::key_objects`.

use clap::{Args, Subcommand};
use osimage::store::key_objects::{KeyKind, KeyObject, parse_id};
use osimage::store::{Store, names};

use super::progress::TermProgress;
use super::{Failure, UsageError, json, show, source};

/// The passphrases and age keys that open an encrypted store.
#[derive(Debug, Args)]
pub struct KeyCmdArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the store's key objects: what opens each (a passphrase or age recipients), its
    /// size and write time, and which one opened the store now (--json: one document).
    /// Shows nothing secret.
    List(KeyListArgs),
    /// Add a passphrase or age recipients that open the store.
    ///
    /// Unlocks the store with a key it has, then wraps the same data key for the new
    /// passphrase (--new-passphrase-file, else asked twice) or the --recipient public keys in
    /// a new key object, and reads it back. Nothing else is re-encrypted.
    Add(KeyAddArgs),
    /// Remove one key object (by the id `store key list` shows); never the last one.
    ///
    /// Removing a key re-encrypts nothing: whoever kept the data key, or the removed
    /// object and its passphrase, can still read the store.
    Remove(KeyRemoveArgs),
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    /// The store: s3://BUCKET/PREFIX.
    pub store: String,
    /// Print one JSON document instead of lines (schema: JSON.md in /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (The store's passphrase or an age identity, to unlock it first.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// The store: s3://BUCKET/PREFIX.
    pub store: String,
    /// Read the new passphrase from FILE (its first line). Without it and without
    /// --recipient, it is asked for twice on the terminal.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recipient", "recipient_file"])]
    pub new_passphrase_file: Option<std::path::PathBuf>,
    /// Let this age public key (`age1…`) open the store. Repeatable: one key object for all.
    #[arg(long, value_name = "AGE_PUBLIC_KEY")]
    pub recipient: Vec<String>,
    /// Read age public keys from FILE, one a line (# comments). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub recipient_file: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (The store's passphrase or an age identity, to unlock it first.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// The store: s3://BUCKET/PREFIX.
    pub store: String,
    /// The key object's id: 32 hex digits, as `store key list` shows it.
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (The store's passphrase or an age identity, to unlock it first.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

fn open(store: &str, net: &source::NetArgs, keys: &super::keys::KeyArgs) -> Result<Store, Failure> {
    let (client, root) = super::store::client_for(store, net)?;
    Ok(Store::open_unlocked(client, root, &keys.unlock()?)?)
}

pub fn run(a: KeyCmdArgs, p: &TermProgress) -> Result<i32, Failure> {
    match a.command {
        KeyCommand::List(a) => list(a),
        KeyCommand::Add(a) => add(a, p),
        KeyCommand::Remove(a) => remove(a, p),
    }
}

fn list(a: KeyListArgs) -> Result<i32, Failure> {
    let store = open(&a.store, &a.net, &a.keys)?;
    let objects = store.list_key_objects()?;
    if a.json {
        let doc = json::store_key::listing(&store.root.to_string(), &objects);
        json::print("store key list", &doc)?;
    } else {
        for k in &objects {
            println!("{}", key_line(k));
        }
    }
    let damaged = objects
        .iter()
        .any(|k| matches!(k.kind, KeyKind::Damaged(_)));
    Ok(if damaged { 1 } else { 0 })
}

/// One key object: id, what opens it, size, write time, and whether it opened the store now.
fn key_line(k: &KeyObject) -> String {
    let what = match &k.kind {
        KeyKind::Passphrase => "passphrase".to_string(),
        KeyKind::Recipients => "age recipients".to_string(),
        KeyKind::Damaged(why) => format!("damaged: {why}"),
    };
    format!(
        "{}  {what}  {}  written {}{}",
        names::hex(&k.id),
        show::bytes(k.size),
        k.written.format("%Y-%m-%dT%H:%M:%SZ"),
        if k.unlocked_now {
            "  (opened the store now)"
        } else {
            ""
        }
    )
}

fn add(a: KeyAddArgs, p: &TermProgress) -> Result<i32, Failure> {
    let store = open(&a.store, &a.net, &a.keys)?;
    // The new passphrase comes from its own file: --passphrase-file unlocked the store.
    let lock = super::keys::new_lock(&a.recipient, &a.recipient_file, &a.new_passphrase_file)?;
    let id = store.add_key_object(&lock)?;
    p.say(&format!(
        "{}: key object {} added",
        store.root,
        names::hex(&id)
    ));
    Ok(0)
}

fn remove(a: KeyRemoveArgs, p: &TermProgress) -> Result<i32, Failure> {
    let id = parse_id(&a.id).map_err(UsageError)?;
    let store = open(&a.store, &a.net, &a.keys)?;
    store.remove_key_object(&id)?;
    p.say(&format!(
        "{}: key object {} removed",
        store.root,
        names::hex(&id)
    ));
    Ok(0)
}
