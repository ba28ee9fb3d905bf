//! `osimage store forget|pin|unpin` (docs/STORE.md §5.6, §9.3): retention by hand. Parsing,
//! the locks they hold (forget a Prune lock, pin and unpin a Read lock, each deleted at the
//! end, on failure and on SIGINT/SIGTERM/SIGHUP) and printing; the work is
//! `osimage::store::prune::by_hand`.

use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use osimage::Interrupts;
use osimage::store::objects::LockKind;
use osimage::store::prune::by_hand;
use osimage::store::{ImageAddress, Store, StoreTimes, names};

use super::progress::TermProgress;
use super::{Failure, UsageError, source};

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The versions, each s3://BUCKET/PREFIX/NAME@VERSION, all in one store.
    #[arg(required = true, value_name = "IMAGE@VERSION")]
    pub versions: Vec<String>,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (For an encrypted store: its passphrase or an age identity, STORE.md §6.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// The version: s3://BUCKET/PREFIX/NAME@VERSION.
    #[arg(value_name = "IMAGE@VERSION")]
    pub version: String,
    /// Keep it until this time: YYYY-MM-DD (through the end of that day, UTC) or an RFC 3339
    /// time (2027-01-31T18:00:00Z).
    #[arg(long, value_name = "DATE", value_parser = until)]
    pub until: DateTime<Utc>,
    /// Why, shown with the pin (at most 1 KiB).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub why: String,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (For an encrypted store: its passphrase or an age identity, STORE.md §6.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The version: s3://BUCKET/PREFIX/NAME@VERSION.
    #[arg(value_name = "IMAGE@VERSION")]
    pub version: String,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (For an encrypted store: its passphrase or an age identity, STORE.md §6.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

/// `--until`: a date (kept through its end, UTC) or an RFC 3339 time.
fn until(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .succ_opt()
            .and_then(|n| n.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or_else(|| format!("{s:?} is out of range"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

/// An address with its full @VERSION.
fn versioned(s: &str) -> Result<(ImageAddress, String), UsageError> {
    let a = ImageAddress::parse(s).map_err(|e| UsageError(e.to_string()))?;
    match a.version.clone() {
        Some(v) if names::parse_version(&v).is_some() => Ok((a, v)),
        _ => Err(UsageError(format!(
            "{s}: name one version in full: s3://BUCKET/PREFIX/NAME@VERSION (osimage store ls)"
        ))),
    }
}

fn open(
    a: &ImageAddress,
    net: &source::NetArgs,
    keys: &super::keys::KeyArgs,
) -> Result<Store, Failure> {
    Ok(Store::open_unlocked(
        net.store_client(&a.root)?,
        a.root.clone(),
        &keys.unlock()?,
    )?)
}

pub fn forget(a: ForgetArgs, p: &TermProgress) -> Result<i32, Failure> {
    let mut named = Vec::new();
    for s in &a.versions {
        let (addr, v) = versioned(s)?;
        if named
            .first()
            .is_some_and(|(first, _): &(ImageAddress, String)| first.root != addr.root)
        {
            return Err(UsageError(format!("{s}: every version must be in one store")).into());
        }
        named.push((addr, v));
    }
    let times = StoreTimes::from_env()?;
    let store = open(&named[0].0, &a.net, &a.keys)?;
    let versions: Vec<(String, String)> = named
        .iter()
        .map(|(a, v)| (a.series.clone(), v.clone()))
        .collect();
    let interrupts = Interrupts::start();
    let lock = store.take_lock(LockKind::Prune, None)?;
    let _unlock = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
    let id = by_hand::forget(&store, &versions, &lock, &times)?;
    lock.release()?;
    p.say(&format!(
        "{}: forgotten by {} (deleted by the next prune's sweep; store pin keeps one until then)",
        a.versions.join(", "),
        store.shown(&names::condemnation_key(&id))
    ));
    Ok(0)
}

pub fn pin(a: PinArgs, p: &TermProgress) -> Result<i32, Failure> {
    let (addr, v) = versioned(&a.version)?;
    if a.until <= Utc::now() {
        return Err(UsageError(format!("--until {}: that time has passed", a.until)).into());
    }
    let store = open(&addr, &a.net, &a.keys)?;
    let interrupts = Interrupts::start();
    let lock = store.take_lock(LockKind::Read, Some(&addr.series))?;
    let _unlock = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
    let key = by_hand::pin(&store, &addr.series, &v, a.until, &a.why)?;
    lock.release()?;
    p.say(&format!(
        "{}: pinned until {} ({})",
        a.version,
        a.until.format("%Y-%m-%dT%H:%M:%SZ"),
        store.shown(&key)
    ));
    Ok(0)
}

pub fn unpin(a: UnpinArgs, p: &TermProgress) -> Result<i32, Failure> {
    let (addr, v) = versioned(&a.version)?;
    let store = open(&addr, &a.net, &a.keys)?;
    let interrupts = Interrupts::start();
    let lock = store.take_lock(LockKind::Read, Some(&addr.series))?;
    let _unlock = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
    let n = by_hand::unpin(&store, &addr.series, &v)?;
    lock.release()?;
    if n == 0 {
        return Err(format!("{}: no pin names it", a.version).into());
    }
    p.say(&format!("{}: {n} pin(s) removed", a.version));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_a_date_through_its_end_or_a_time() {
        assert_eq!(
            until("2027-01-31").unwrap().to_rfc3339(),
            "2027-02-01T00:00:00+00:00"
        );
        assert_eq!(
            until("2027-01-31T18:00:00+02:00").unwrap().to_rfc3339(),
            "2027-01-31T16:00:00+00:00"
        );
        for bad in ["", "2027-13-01", "tomorrow", "2027-01-31 18:00"] {
            assert!(until(bad).is_err(), "{bad}");
        }
    }
}
