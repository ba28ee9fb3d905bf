//! `osimage store unlock` and the lock lines of `store ls --stats` (docs/STORE.md §2.7,
//! §5.6): parsing, the confirmation of `--all`, and printing; the work is `osimage::store`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use clap::Args;
use osimage::store::locks::shown_duration;
use osimage::store::{ListedLock, LockStatus, Store, StoreStats, StoreTimes, names};

use super::progress::TermProgress;
use super::{Failure, UsageError, show, source};

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The store: s3://BUCKET/PREFIX.
    pub store: String,
    /// Remove only stale locks (the default).
    #[arg(long, conflicts_with = "all")]
    pub stale: bool,
    /// Remove every lock, also those of running captures and readers.
    #[arg(long)]
    pub all: bool,
    /// With --all: do not ask (needed when stdin is not a terminal).
    #[arg(long, requires = "all")]
    pub yes: bool,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (For an encrypted store: its passphrase or an age identity, STORE.md §6.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

pub fn unlock(a: UnlockArgs, p: &TermProgress) -> Result<i32, Failure> {
    // Refused before anything is read: nobody could answer the question.
    if a.all && !a.yes && !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "{}: --all removes the locks of running captures and readers too; run it on a \
             terminal to confirm, or add --yes",
            a.store
        ))
        .into());
    }
    let (client, root) = super::store::client_for(&a.store, &a.net)?;
    let store = Store::open_unlocked(client, root, &a.keys.unlock()?)?;
    let listed = store.list_locks(&StoreTimes::from_env()?)?;
    let total = listed.len();
    let chosen: Vec<ListedLock> = listed.into_iter().filter(|l| a.all || l.stale).collect();
    if chosen.is_empty() {
        p.say(&format!(
            "{}: no {}locks to remove ({} kept)",
            store.root,
            if a.all { "" } else { "stale " },
            show::count(total as u64, "fresh lock", "fresh locks")
        ));
        return Ok(0);
    }
    let mut described = Vec::with_capacity(chosen.len());
    for listed in chosen {
        let holder = match store.read_lock(&listed.id) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => continue, // released meanwhile
            Err(osimage::store::StoreError::Object(e)) => Err(e.problem),
            Err(e) => return Err(e.into()),
        };
        described.push(LockStatus { listed, holder });
    }
    if a.all && !a.yes && !confirm(&store, &described)? {
        return Err("nothing was removed (not confirmed)".into());
    }
    for l in &described {
        store.remove_lock(&l.listed.id)?;
        p.say(&format!("removed {}", lock_line(l)));
    }
    p.say(&format!(
        "{}: {} removed, {} kept",
        store.root,
        show::count(described.len() as u64, "lock", "locks"),
        total.saturating_sub(described.len())
    ));
    Ok(0)
}

/// On a terminal: lists the locks --all would remove and asks for `yes`.
fn confirm(store: &Store, locks: &[LockStatus]) -> Result<bool, Failure> {
    let mut err = std::io::stderr();
    writeln!(
        err,
        "{}: every lock, also of running captures, will be removed:",
        store.root
    )?;
    for l in locks {
        writeln!(err, "  {}", lock_line(l))?;
    }
    write!(err, "type yes to remove them: ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// The lines `store ls --stats` adds under the store's line.
pub fn stats_lines(s: &StoreStats) -> Vec<String> {
    let mut lines = vec![format!(
        "{} ({}), {}",
        show::count(s.packs, "pack", "packs"),
        show::bytes(s.pack_bytes),
        show::count(s.index_objects, "index object", "index objects")
    )];
    if s.locks.is_empty() {
        lines.push("no locks".into());
    } else {
        lines.push(show::count(s.locks.len() as u64, "lock:", "locks:"));
        lines.extend(s.locks.iter().map(|l| format!("  {}", lock_line(l))));
    }
    lines
}

/// One lock: its name, holder, and how long ago it was refreshed, stale ones marked.
fn lock_line(l: &LockStatus) -> String {
    let name = names::lock_key(&l.listed.id);
    let who = match &l.holder {
        Ok(h) => {
            let series = h
                .series
                .as_deref()
                .map(|s| format!(" of {s}"))
                .unwrap_or_default();
            format!("{}{series} by {} pid {}", h.kind.name(), h.host, h.pid)
        }
        Err(why) => format!("unreadable ({why})"),
    };
    format!(
        "{name}  {who}, refreshed {} ago{}",
        shown_duration(l.listed.age),
        if l.listed.stale { "  STALE" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use osimage::store::objects::{Lock, LockKind};
    use std::time::Duration;

    fn status(stale: bool, holder: Result<Lock, String>) -> LockStatus {
        LockStatus {
            listed: ListedLock {
                id: [0xab; 16],
                last_modified: chrono::DateTime::from_timestamp(1_796_500_000, 0).unwrap(),
                age: Duration::from_secs(if stale { 2000 } else { 12 }),
                stale,
            },
            holder,
        }
    }

    #[test]
    fn stats_lines_name_each_lock_and_mark_stale_ones() {
        let lock = Lock {
            kind: LockKind::Capture,
            host: "web01".into(),
            pid: 77,
            started: osimage::format::manifest::Timestamp { sec: 0, nsec: 0 },
            series: Some("web01".into()),
        };
        let s = StoreStats {
            packs: 3,
            pack_bytes: 3 << 20,
            index_objects: 1,
            locks: vec![status(true, Err("damaged".into())), status(false, Ok(lock))],
        };
        let lines = stats_lines(&s);
        let name = format!("locks/{}", "ab".repeat(16));
        assert_eq!(lines[0], "3 packs (3.0 MiB), 1 index object");
        assert_eq!(lines[1], "2 locks:");
        assert_eq!(
            lines[2],
            format!("  {name}  unreadable (damaged), refreshed 33 min ago  STALE")
        );
        assert_eq!(
            lines[3],
            format!("  {name}  capture of web01 by web01 pid 77, refreshed 12 s ago")
        );
        let empty = StoreStats {
            locks: Vec::new(),
            ..s
        };
        assert_eq!(stats_lines(&empty)[1], "no locks");
    }
}
