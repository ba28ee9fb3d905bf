//! `osimage diff A B`: the paths added, removed and changed between two images (issue #6).
//! The comparison itself is `refresh::diff`; this is its command line.

use std::path::PathBuf;

use clap::Args;

use crate::payload::reader::PayloadReader;
use crate::progress::Progress;
use crate::refresh::diff::diff;

/// Compare two images: added, removed and changed files, with sizes.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older image (a .iso or .oimg made by osimage capture).
    pub old: PathBuf,
    /// The newer image.
    pub new: PathBuf,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
}

/// Prints the differences; exit status 0 whether or not the images differ.
pub fn run(args: DiffArgs, progress: &dyn Progress) -> Result<i32, Box<dyn std::error::Error>> {
    progress.note(&format!(
        "comparing {} with {}",
        args.old.display(),
        args.new.display()
    ));
    let unlock = args.keys.unlock()?;
    let a = PayloadReader::open(&args.old, &unlock)?;
    let b = PayloadReader::open(&args.new, &unlock)?;
    let d = diff(a.manifest(), b.manifest());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", d.text());
    }
    Ok(0)
}
