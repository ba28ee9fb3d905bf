//! `osimage store check` (docs/STORE.md §5.6): parsing and printing; the work is
//! `osimage::store::check`. One line per problem naming the object, garbage listed apart,
//! exit status 1 when there is any problem.

use std::io::Write as _;

use clap::Args;
use osimage::store::Store;
use osimage::store::check::{CheckOptions, CheckReport, Subset, random_seed};

use super::progress::TermProgress;
use super::{Failure, json, show, source};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The store: s3://BUCKET/PREFIX.
    pub store: String,
    /// Also read the packs the versions use and check each pack's header, every block's
    /// hash and the pack's hash (reads the store's data: as many bytes as its packs hold,
    /// or the --subset share of them).
    #[arg(long)]
    pub read_data: bool,
    /// With --read-data: read only this share of the packs, e.g. 10% (more than 0, at most
    /// 100), chosen by --seed.
    #[arg(long, value_name = "P%", requires = "read_data", value_parser = Subset::parse_percent)]
    pub subset: Option<f64>,
    /// With --read-data: the seed that chooses the packs (default: a random one, printed, so
    /// a run can be repeated on the same packs).
    #[arg(long, value_name = "N", requires = "read_data")]
    pub seed: Option<u64>,
    /// Print one JSON document instead of lines (schema: JSON.md in /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: source::NetArgs,
    /// (For an encrypted store: its passphrase or an age identity, STORE.md §6.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

pub fn check(a: CheckArgs, p: &TermProgress) -> Result<i32, Failure> {
    let (client, root) = super::store::client_for(&a.store, &a.net)?;
    let store = Store::open_unlocked(client, root, &a.keys.unlock()?)?;
    let read_data = match a.read_data {
        true => Some(Subset {
            percent: a.subset.unwrap_or(100.0),
            seed: match a.seed {
                Some(s) => s,
                None => random_seed()?,
            },
        }),
        false => None,
    };
    if let Some(s) = &read_data {
        // said before the reading starts, so an interrupted run can be repeated
        p.say(&format!(
            "{}: reading {}% of the packs, seed {}",
            store.root, s.percent, s.seed
        ));
    }
    let report = store.check(&CheckOptions { read_data }, p)?;
    let status = if report.ok() { 0 } else { 1 };
    if a.json {
        let doc = json::store_check::document(&store.root.to_string(), &report);
        json::print("store check", &doc)?;
        return Ok(status);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in report_lines(&store, &report) {
        writeln!(out, "{line}")?;
    }
    Ok(status)
}

/// What the text output says: problems first (one line each), garbage, then the summary.
fn report_lines(store: &Store, r: &CheckReport) -> Vec<String> {
    let mut lines = Vec::new();
    for prob in &r.problems {
        let mut line = format!("problem: {}: {}", store.shown(&prob.object), prob.problem);
        if !prob.versions.is_empty() {
            line += &format!(" (used by {})", prob.versions.join(", "));
        }
        lines.push(line);
    }
    for g in &r.garbage {
        lines.push(format!(
            "garbage: {}: {} in no version{}",
            store.shown(&g.object),
            show::bytes(g.bytes),
            if g.indexed {
                " (listed in an index)"
            } else {
                ""
            }
        ));
    }
    let garbage: u64 = r.garbage.iter().map(|g| g.bytes).sum();
    lines.push(format!(
        "{}: {}, {}, {} ({}), {}; {} of garbage",
        store.root,
        show::count(r.versions, "version", "versions"),
        show::count(r.index_objects, "index object", "index objects"),
        show::count(r.packs, "pack", "packs"),
        show::bytes(r.pack_bytes),
        show::count(r.rescue_blobs, "rescue blob", "rescue blobs"),
        show::bytes(garbage),
    ));
    if let Some(d) = &r.data {
        lines.push(format!(
            "read {} of {} in use ({}), {}% chosen by seed {} (--seed {} reads the same ones)",
            d.packs_read,
            show::count(d.packs_in_use, "pack", "packs"),
            show::bytes(d.bytes_read),
            d.percent,
            d.seed,
            d.seed
        ));
    }
    lines.push(match r.problems.len() {
        0 => format!("{}: OK", store.root),
        n => format!(
            "{}: {}",
            store.root,
            show::count(n as u64, "PROBLEM", "PROBLEMS")
        ),
    });
    lines
}
