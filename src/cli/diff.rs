//! `osimage diff A B`: the paths added, removed and changed between two images (issue #6).
//! The comparison itself is `refresh::diff`; this is its command line.

use std::path::{Path, PathBuf};

use clap::Args;

use super::keys::KeyArgs;
use osimage::PayloadReader;
use osimage::Progress;
use osimage::diff;
use osimage::format::PayloadError;

/// Compare two images: added, removed and changed files, with sizes.
///
/// Encrypted images: --passphrase-file, --identity and OSIMAGE_PASSPHRASE serve both sides;
/// --old-… and --new-… give one side its own key when the two differ (a side's own
/// passphrase file replaces the shared one; identities add up). Without any, each encrypted
/// image's passphrase is asked for on the terminal, naming the image.
#[derive(Debug, Args)]
#[command(
    after_help = "Encrypted images: --passphrase-file, --identity and OSIMAGE_PASSPHRASE \
    serve both sides; when the two images have different keys, --old-passphrase-file, \
    --old-identity, --new-passphrase-file and --new-identity give each its own (a side's \
    passphrase file replaces the shared one, identities add up). Without any, each encrypted \
    image's passphrase is asked for on the terminal, naming the image."
)]
pub struct DiffArgs {
    /// The older image (a .iso or .oimg made by osimage capture): a path, an http:// or
    /// https:// URL of one on a server that answers Range requests, or s3://BUCKET/KEY of
    /// one kept in S3-compatible storage (credentials and endpoint as the AWS tools take
    /// them: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws/).
    pub old: PathBuf,
    /// The newer image (a path or a URL).
    pub new: PathBuf,
    /// Print one JSON document instead of lines (schema: JSON.md in /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub net: super::source::NetArgs,
    /// The passphrase of the OLD image only, from FILE (its first line).
    #[arg(long, value_name = "FILE")]
    pub old_passphrase_file: Option<PathBuf>,
    /// An age secret key file for the OLD image only. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub old_identity: Vec<PathBuf>,
    /// The passphrase of the NEW image only, from FILE (its first line).
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    /// An age secret key file for the NEW image only. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub new_identity: Vec<PathBuf>,
}

/// The keys of one side: its own passphrase file, else the shared one; the shared identities
/// plus its own.
fn side_keys(shared: &KeyArgs, passphrase_file: &Option<PathBuf>, identity: &[PathBuf]) -> KeyArgs {
    KeyArgs {
        passphrase_file: passphrase_file
            .clone()
            .or_else(|| shared.passphrase_file.clone()),
        identity: shared.identity.iter().chain(identity).cloned().collect(),
    }
}

/// Opens one side, saying which one in any error ("the old image: wrong passphrase or key
/// for A").
fn open_side(
    side: &str,
    path: &Path,
    keys: &KeyArgs,
    net: &super::source::NetArgs,
) -> Result<PayloadReader, Box<dyn std::error::Error>> {
    let unlock = keys
        .unlock()
        .map_err(|e| format!("the {side} image: {e}"))?;
    let opened = super::source::open(path, &unlock, net).map_err(|e| {
        let hint = match e.downcast_ref::<PayloadError>() {
            Some(PayloadError::WrongKey(_)) => format!(
                " (give the {side} image its own key: --{side}-passphrase-file or \
                 --{side}-identity)"
            ),
            _ => String::new(),
        };
        format!("the {side} image: {e}{hint}")
    })?;
    Ok(opened.reader)
}

/// Prints the differences; exit status 0 whether or not the images differ.
pub fn run(args: DiffArgs, progress: &dyn Progress) -> Result<i32, Box<dyn std::error::Error>> {
    // Never a URL's query (a presigned URL's credentials) in what is printed.
    let (old, new) = (
        PathBuf::from(super::source::shown(&args.old)),
        PathBuf::from(super::source::shown(&args.new)),
    );
    progress.note(&format!(
        "comparing {} with {}",
        old.display(),
        new.display()
    ));
    let old_keys = side_keys(&args.keys, &args.old_passphrase_file, &args.old_identity);
    let new_keys = side_keys(&args.keys, &args.new_passphrase_file, &args.new_identity);
    let a = open_side("old", &args.old, &old_keys, &args.net)?;
    let b = open_side("new", &args.new, &new_keys, &args.net)?;
    let d = diff(a.manifest(), b.manifest());
    if args.json {
        super::json::print("diff", &super::json::diff(&old, &new, &d))?;
    } else {
        print!("{}", super::show::escaped_lines(&d.text()));
    }
    Ok(0)
}
