//! `osimage import IMAGE s3://BUCKET/KEY.iso`: puts an image file into S3-compatible storage
//! as one object, from which every reading command, `restore` and `netboot` then read it
//! (docs/STORE.md §1 "Images kept whole as one object").

use std::path::PathBuf;

use clap::Args;
use osimage::{ContainerKind, Progress as _};

use super::progress::TermProgress;
use super::{Failure, UsageError, source};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The image file to upload: a .iso or .oimg made by osimage capture.
    pub image: PathBuf,
    /// Where it goes: s3://BUCKET/KEY, KEY ending in .iso for an ISO and in .oimg for a
    /// payload (credentials and endpoint as the AWS tools take them: AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, ~/.aws/).
    pub dest: PathBuf,
    /// Replace an object already at DEST (without it, an existing object is refused and left
    /// as it is).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub net: source::NetArgs,
}

pub fn run(a: ImportArgs, p: &TermProgress) -> Result<i32, Failure> {
    source::local_only(&a.image, "import's IMAGE")?;
    let Some(dest) = source::s3_address(&a.dest)? else {
        return Err(UsageError(format!(
            "{}: DEST is an s3://BUCKET/KEY address",
            a.dest.display()
        ))
        .into());
    };
    let file =
        std::fs::File::open(&a.image).map_err(|e| format!("opening {}: {e}", a.image.display()))?;
    let kind = osimage::container_kind(&file)
        .map_err(|e| format!("reading {}: {e}", a.image.display()))?
        .ok_or_else(|| {
            UsageError(format!(
                "{}: not an osimage image (neither a .oimg payload nor an ISO with an /osimage \
                 folder)",
                a.image.display()
            ))
        })?;
    let ending = match kind {
        ContainerKind::Iso => ".iso",
        ContainerKind::Oimg => ".oimg",
        ContainerKind::Store => {
            return Err(UsageError(format!(
                "{}: a store's version is not a file to import",
                a.image.display()
            ))
            .into());
        }
    };
    if !dest.file_name().to_ascii_lowercase().ends_with(ending) {
        return Err(UsageError(format!(
            "{dest}: {} is {}, so the key ends in {ending}",
            a.image.display(),
            if kind == ContainerKind::Iso {
                "an ISO"
            } else {
                "a .oimg payload"
            }
        ))
        .into());
    }
    let len = file
        .metadata()
        .map_err(|e| format!("reading {}: {e}", a.image.display()))?
        .len();
    let client = a.net.s3_client(&dest)?;
    if !a.force && client.head(&dest.key)?.is_some() {
        return Err(
            UsageError(format!("{dest} exists already: give --force to replace it")).into(),
        );
    }
    p.start("uploading", len);
    let mut done = 0;
    let r = client.upload(&dest.key, &file, len, &mut |sent| {
        p.advance(sent - done);
        done = sent;
    });
    p.finish();
    r?;
    p.say(&format!(
        "{dest}: uploaded {} from {} (osimage verify {dest} reads it back and checks every block)",
        osimage::human_bytes(len),
        a.image.display()
    ));
    Ok(0)
}
