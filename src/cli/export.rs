//! `osimage export s3://BUCKET/PREFIX/NAME[@VERSION] -o system.iso|system.oimg`: a version of
//! an image store written out as a file that reads, verifies and boots like a captured one
//! (docs/STORE.md §8: the store's packs byte for byte, or `--compact`). An encrypted store's
//! version becomes an encrypted image under a fresh key unless `--decrypt` (§6.1).

use std::path::PathBuf;

use clap::Args;
use osimage::store::Store;
use osimage::{ExportOptions, export_version};

use super::progress::TermProgress;
use super::{Failure, UsageError, show, source};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The version to export: s3://BUCKET/PREFIX/NAME for the newest version of NAME,
    /// NAME@VERSION for another (`osimage store ls -l` lists them).
    pub image: PathBuf,
    /// The file to write: NAME.iso for a bootable ISO (the version's rescue kernel and
    /// initramfs, GRUB for BIOS and UEFI, the payload), NAME.oimg for the payload alone. It
    /// is written under a temporary name beside it, read back whole and renamed into place
    /// only then.
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Replace an existing OUTPUT.
    #[arg(long)]
    pub force: bool,
    /// Write new packs holding only the blocks this version uses, instead of the store's
    /// packs byte for byte (which may hold blocks of other versions). The blocks are copied
    /// as stored, each checked against its hash; the output is a plain image (format
    /// version 2, no store packs) that osimages without store support read too.
    #[arg(long)]
    pub compact: bool,
    /// Write a plain (unencrypted) image of an encrypted store's version. Without it the
    /// output of an encrypted store is encrypted under a fresh image key, wrapped for
    /// --recipient/--recipient-file/--new-passphrase-file when given, else for what unlocked
    /// the store (the identities' public keys, or the passphrase). Changes nothing for a plain
    /// store.
    #[arg(long, conflicts_with_all = ["recipient", "recipient_file", "new_passphrase_file"])]
    pub decrypt: bool,
    /// (Who may open the output: also for a plain store's version, which is then encrypted.)
    #[command(flatten)]
    pub to: super::keys::OutputKeyArgs,
    /// (An encrypted store's passphrase or an age identity, to unlock it.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    /// Threads of the read-back (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub net: source::NetArgs,
    #[command(flatten)]
    pub lock: super::read_lock::LockArgs,
}

pub fn run(a: ExportArgs, p: &TermProgress) -> Result<i32, Failure> {
    let Some(address) = source::store_address(&a.image)? else {
        return Err(UsageError(format!(
            "{}: export reads a version of an osimage store, s3://BUCKET/PREFIX/NAME[@VERSION]",
            a.image.display()
        ))
        .into());
    };
    let client = a.net.store_client(&address.root)?;
    // An encrypted store is unlocked before anything of it is read or any lock written.
    let unlock = a.keys.unlock()?;
    let store = Store::open_unlocked(client, address.root.clone(), &unlock)?;
    let lock = output_lock(&a, &store, &unlock)?;
    // a long read: under a Read lock (docs/STORE.md §5.1) unless --no-lock
    let read_lock = super::read_lock::ReadLock::take(&store, &address.series, a.lock)?;
    let version = source::version_named(&store, &address)?;
    let opts = ExportOptions {
        series: address.series.clone(),
        version,
        output: a.output,
        force: a.force,
        compact: a.compact,
        threads: a
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        lock,
    };
    let r = export_version(&store, &opts, p);
    if let Some(lock) = read_lock {
        lock.release(p);
    }
    let r = r?;
    let how = match (opts.compact, r.encrypted) {
        (true, false) => "new packs of the blocks it uses",
        (true, true) => "new packs of the blocks it uses, encrypted",
        (false, false) => "packs copied byte for byte",
        (false, true) => "packs copied and encrypted under a new image key",
    };
    let mut line = format!(
        "{}: {}@{} exported ({}, {} {how}, verified)",
        r.output.display(),
        address.root.to_string() + "/" + &address.series,
        opts.version,
        show::bytes(r.size),
        r.packs.packs,
    );
    if let Some(k) = &r.kernel_version {
        line.push_str(&format!("; rescue kernel {k}"));
    }
    p.say(&line);
    if opts.compact {
        p.say(&format!(
            "{} in {} blocks of the store's packs left out (not used by this version)",
            show::bytes(r.packs.unused_bytes),
            r.packs.unused_blocks
        ));
    } else if r.packs.unused_blocks > 0 {
        p.say(&format!(
            "{} in {} blocks of those packs are not used by this version (blocks other \
             versions share the packs for)",
            show::bytes(r.packs.unused_bytes),
            r.packs.unused_blocks
        ));
    } else {
        p.say("every block of those packs is used by this version");
    }
    Ok(0)
}

/// Who may open the output (docs/STORE.md §6.1): the keys given for it; else, for an
/// encrypted store without `--decrypt`, what unlocked the store; else nobody (plain).
fn output_lock(
    a: &ExportArgs,
    store: &Store,
    unlock: &osimage::Unlock,
) -> Result<Option<osimage::Lock>, Failure> {
    if a.decrypt {
        return Ok(None);
    }
    let encrypted = store.keys.is_some();
    Ok(a.to.lock(encrypted, unlock, &store.root.to_string())?)
}
