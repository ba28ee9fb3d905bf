//! `osimage store init|ls|unlock|check|key`: make a store, show what it holds, remove locks
//! left behind, check it, manage an encrypted one's keys (docs/STORE.md §2.1, §2.7, §5.6,
//! §6.1). Parsing and printing only; the work is `osimage::store` (`unlock` and the lock
//! lines of `ls --stats`: `store_locks`; `check`: `store_check`; `key`: `store_key`).

use std::io::Write as _;

use clap::{Args, Subcommand};
use osimage::s3;
use osimage::store::objects::{DEFAULT_PACK_SIZE, MAX_PACK_SIZE, MIN_PACK_SIZE, VersionHead};
use osimage::store::prune::Forgotten;
use osimage::store::{ListedVersion, Store, StoreRoot, StoreTimes, names};

use super::progress::TermProgress;
use super::{Failure, UsageError, config, json, show, source};

/// Manage an image store in S3-compatible storage (STORE.md in /usr/share/doc/osimage).
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create an empty store at s3://BUCKET/PREFIX.
    ///
    /// Writes the store's config object: a new random store id, the pack size, and the
    /// chunking and compression every capture into the store uses, so identical data cuts
    /// identically on every machine. A prefix that holds a store already is refused and left
    /// as it is. Credentials and endpoint as the AWS tools take them (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, ~/.aws/).
    ///
    /// With --encrypt (a passphrase) or --recipient (age public keys) the store is encrypted
    /// (STORE.md §6): a random data key, wrapped with age in a keys/ object, seals every pack,
    /// index object, version and rescue blob, and object names are keyed hashes: the bucket
    /// shows no series, host or file name, only sizes and times. Captures and reading
    /// commands and the other store commands then need the passphrase (--passphrase-file,
    /// OSIMAGE_PASSPHRASE, or asked) or an --identity; store key adds and removes keys;
    /// netboot, import, export and schedule refuse an encrypted store for now.
    Init(InitArgs),
    /// List the image series of a store and their versions, oldest first.
    ///
    /// Series, versions and the size of each version object come from listings alone; -l
    /// reads each version's head (one ranged request per version) for its host, system,
    /// creation time, file counts and sizes, packs and tags.
    Ls(LsArgs),
    /// Remove locks left behind by captures and readers that did not end cleanly.
    ///
    /// A running capture rewrites its lock every 5 minutes; one not rewritten for 30 minutes
    /// (by the server's clock) is stale: its holder is gone or stuck, and a stuck capture
    /// refuses to commit. Without options, only stale locks are removed. --all removes every
    /// lock, also those of running captures (they then finish unprotected from a prune):
    /// asked for on a terminal, refused without one unless --yes.
    Unlock(super::store_locks::UnlockArgs),
    /// Forget versions by retention rules and delete the data nothing uses any more.
    ///
    /// Condemns now, deletes later (STORE.md §5.2): the versions the rules do not keep are
    /// forgotten at once (readers skip and refuse them) and listed, with every pack and rescue
    /// blob no remaining version uses, in a condemnation. A later prune (or this one with
    /// --wait) sweeps it once it is older than --grace and every capture or reader that was
    /// running when it was made has finished; data a version committed meanwhile uses, and
    /// versions pinned meanwhile, are rescued. A version is kept if any rule keeps it; pinned
    /// versions and each series' newest (unless --forget-all) are always kept. Without a
    /// rule nothing is forgotten: only data no version uses is condemned. One prune at a
    /// time: a second one stops, naming the first.
    Prune(super::store_prune::PruneArgs),
    /// Forget versions by name (retention by hand).
    ///
    /// The versions are condemned as a prune condemns them: gone for new readers at once,
    /// deleted by the next prune's sweep, and the data only they used by a later prune.
    /// Refused for a pinned version; a pin made before the sweep keeps it.
    Forget(super::store_pin::ForgetArgs),
    /// Keep a version until a time, whatever the retention rules say.
    ///
    /// Machines that boot a version over the network hold no lock: a pin keeps a prune from
    /// forgetting it, and rescues it when a prune forgot it and has not swept yet. A prune
    /// deletes pins whose time has passed.
    Pin(super::store_pin::PinArgs),
    /// Remove the pins of a version.
    Unpin(super::store_pin::UnpinArgs),
    /// Check that the store's objects are whole and every version can be read.
    ///
    /// Reads every index object and version object and checks them against their names and
    /// hashes (each manifest as a reader checks it), and lists the packs and rescue blobs:
    /// every one a version names must be there, each pack with the length the version
    /// records, and no index object may name a missing pack. Packs and blobs no version
    /// names are reported as garbage (a prune removes them), which is no problem. With
    /// --read-data the packs are read too (all, or a --subset chosen by a --seed that is
    /// printed for a rerun) and every block and pack hash checked; a damaged pack is named
    /// with the versions that use it. Takes no lock. Exit status 1 when anything is wrong,
    /// with one line per problem naming the object.
    Check(super::store_check::CheckArgs),
    /// Manage the passphrases and age keys that open an encrypted store.
    ///
    /// An encrypted store's data key is wrapped in one or more key objects (STORE.md §6): add
    /// another passphrase or age recipients, remove one (never the last), or list them.
    /// Each subcommand unlocks the store first with a key it has (--passphrase-file,
    /// OSIMAGE_PASSPHRASE, --identity, or asked).
    Key(super::store_key::KeyCmdArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the store goes: s3://BUCKET/PREFIX (PREFIX may be empty: the bucket's root).
    pub store: String,
    /// Close packs at this size: 8 MiB to 256 MiB, as bytes or with a unit (32M, 64MiB)
    /// [default: 32 MiB].
    #[arg(long, value_name = "SIZE", value_parser = pack_size)]
    pub pack_size: Option<u32>,
    #[command(flatten)]
    pub encrypt: super::keys::EncryptArgs,
    /// With --encrypt: read the store's passphrase from FILE (its first line). Without it
    /// (and without OSIMAGE_PASSPHRASE) it is asked for twice on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub net: source::NetArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The store: s3://BUCKET/PREFIX.
    pub store: String,
    /// Only the versions of series NAME.
    #[arg(long, value_name = "NAME")]
    pub series: Option<String>,
    /// Read each version's head: host, system, creation time, files, sizes, packs, tags.
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// Also show the number of packs and their bytes, the number of index objects, and
    /// every lock (kind, host, pid, age; stale ones marked).
    #[arg(long)]
    pub stats: bool,
    /// Print one JSON document instead of lines (schema: JSON.md in /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (For an encrypted store: its passphrase or an age identity, STORE.md §6.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

pub fn run(a: StoreArgs, p: &TermProgress) -> Result<i32, Failure> {
    match a.command {
        StoreCommand::Init(a) => init(a, p),
        StoreCommand::Ls(a) => ls(a),
        StoreCommand::Unlock(a) => super::store_locks::unlock(a, p),
        StoreCommand::Prune(a) => super::store_prune::prune(a, p),
        StoreCommand::Forget(a) => super::store_pin::forget(a, p),
        StoreCommand::Pin(a) => super::store_pin::pin(a, p),
        StoreCommand::Unpin(a) => super::store_pin::unpin(a, p),
        StoreCommand::Check(a) => super::store_check::check(a, p),
        StoreCommand::Key(a) => super::store_key::run(a, p),
    }
}

/// `--pack-size`: bytes, or a number with K/KiB, M/MiB or G/GiB, within the allowed range.
fn pack_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{s:?}: the unit is K, M or G (KiB, MiB, GiB)")),
    };
    let bytes = n.checked_shl(shift).filter(|b| b >> shift == n);
    match bytes {
        Some(b) if (u64::from(MIN_PACK_SIZE)..=u64::from(MAX_PACK_SIZE)).contains(&b) => {
            Ok(b as u32)
        }
        _ => Err(format!(
            "{s:?}: packs are {} MiB to {} MiB",
            MIN_PACK_SIZE >> 20,
            MAX_PACK_SIZE >> 20
        )),
    }
}

/// The store at `address` and a client for its bucket.
pub(super) fn client_for(
    address: &str,
    net: &source::NetArgs,
) -> Result<(s3::S3Client, StoreRoot), Failure> {
    let root = StoreRoot::parse(address).map_err(|e| UsageError(e.to_string()))?;
    Ok((net.store_client(&root)?, root))
}

fn init(a: InitArgs, p: &TermProgress) -> Result<i32, Failure> {
    let (client, root) = client_for(&a.store, &a.net)?;
    let config = Store::new_config(
        a.pack_size.unwrap_or(DEFAULT_PACK_SIZE),
        config::DEFAULT_LEVEL,
    );
    let keys = super::keys::KeyArgs {
        passphrase_file: a.passphrase_file.clone(),
        identity: Vec::new(),
    };
    if a.passphrase_file.is_some() && !a.encrypt.encrypt {
        return Err(UsageError(
            "--passphrase-file makes sense with --encrypt only (store init)".into(),
        )
        .into());
    }
    let lock = a.encrypt.lock(&keys)?;
    let store = Store::init(client, root, config, lock.as_ref())?;
    let c = &store.config;
    p.say(&format!(
        "{}: {}store {} created (packs of {}, chunks of {}/{}/{} min/avg/max, zstd level {})",
        store.root,
        if c.encrypted { "encrypted " } else { "" },
        names::hex(&store.id),
        show::bytes(u64::from(c.pack_size)),
        show::bytes(u64::from(c.chunking.min)),
        show::bytes(u64::from(c.chunking.avg)),
        show::bytes(u64::from(c.chunking.max)),
        c.zstd_level
    ));
    Ok(0)
}

fn ls(a: LsArgs) -> Result<i32, Failure> {
    if let Some(s) = &a.series {
        names::check_series(s).map_err(|e| UsageError(format!("--series {s}: {e}")))?;
    }
    let (client, root) = client_for(&a.store, &a.net)?;
    let store = Store::open_unlocked(client, root, &a.keys.unlock()?)?;
    let versions = store.list_versions(a.series.as_deref())?;
    let heads = if a.long {
        versions
            .iter()
            .map(|v| store.read_head(&v.series, &v.version).map(Some))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![None; versions.len()]
    };
    let stats = match a.stats {
        true => Some(store.stats(&StoreTimes::from_env()?)?),
        false => None,
    };
    // Versions condemned and not pinned are marked (STORE.md §5.6).
    let pending = store.pending()?;
    let pins = store.list_pins()?;
    let forgotten = Forgotten::new(&pending, &pins);
    let pending_count = pending.condemnations.len() as u64;
    if a.json {
        let s = stats.as_ref().map(|st| json::store::Stats {
            condemnations_pending: pending_count,
            ..json::store::stats(st)
        });
        json::print(
            "store ls",
            &json::store::listing(&store, &versions, &heads, &forgotten, &pins, s),
        )?;
        return Ok(0);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "{}: store {}, created {}, packs of {}",
        store.root,
        names::hex(&store.id),
        json::rfc3339(store.config.created),
        show::bytes(u64::from(store.config.pack_size))
    )?;
    if let Some(st) = &stats {
        for line in super::store_locks::stats_lines(st) {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "{} pending",
            show::count(pending_count, "condemnation", "condemnations")
        )?;
    }
    if versions.is_empty() {
        match &a.series {
            Some(s) => writeln!(out, "no versions of {s}")?,
            None => writeln!(out, "no images yet")?,
        }
        return Ok(0);
    }
    let mut series: Option<&str> = None;
    for (v, head) in versions.iter().zip(&heads) {
        if series != Some(v.series.as_str()) {
            let n = versions.iter().filter(|x| x.series == v.series).count() as u64;
            writeln!(
                out,
                "{}  {}",
                v.series,
                show::count(n, "version", "versions")
            )?;
            series = Some(&v.series);
        }
        let mut line = version_line(v, head.as_ref());
        if forgotten.when(&v.dir, &v.version).is_some() {
            line += "  forgotten";
        }
        if a.long {
            for pin in json::store::pins_of(&pins, &v.series, &v.version) {
                line += &format!("\n      pinned until {} ({})", pin.until, pin.why);
            }
        }
        writeln!(out, "  {line}")?;
    }
    Ok(0)
}

/// One version: its name and object size, and with -l what its head says.
fn version_line(v: &ListedVersion, head: Option<&VersionHead>) -> String {
    let mut line = format!("{}  {}", v.version, show::bytes(v.size));
    if let Some(h) = head {
        let s = &h.summary;
        line += &format!(
            "  {}, {}, created {}, {}, {} of files, {} stored, {} new, {}",
            h.hostname,
            h.os_release,
            json::rfc3339(h.created),
            show::count(s.files, "file", "files"),
            show::bytes(s.file_bytes),
            show::bytes(s.stored_bytes),
            show::bytes(s.new_bytes),
            show::count(h.packs.len() as u64, "pack", "packs"),
        );
        if !h.tags.is_empty() {
            line += &format!(", tags {}", h.tags.join(","));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_sizes_take_units_and_stay_in_range() {
        assert_eq!(pack_size("32M"), Ok(32 << 20));
        assert_eq!(pack_size("64MiB"), Ok(64 << 20));
        assert_eq!(pack_size("8388608"), Ok(8 << 20));
        assert_eq!(pack_size("256m"), Ok(256 << 20));
        for bad in [
            "7M",
            "257M",
            "1G",
            "32X",
            "M",
            "",
            "-8M",
            "99999999999999999999G",
        ] {
            assert!(pack_size(bad).is_err(), "{bad}");
        }
    }
}
