//! `osimage netboot IMAGE -o DIR`: the files to PXE/iPXE-boot an ISO's rescue environment,
//! which then restores the image reading it over HTTP (docs/NETBOOT.md). The work is
//! `osimage::write_netboot_dir`; this parses, picks the URL and prints.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::progress::TermProgress;
use super::{Failure, UsageError, json, source};

#[derive(Debug, Args)]
pub struct NetbootArgs {
    /// The ISO made by `osimage capture ROOT -o NAME.iso`: a path, or an http:// or https://
    /// URL of one on a server that answers Range requests. Its rescue kernel and initramfs
    /// are copied into DIR unchanged.
    pub image: PathBuf,
    /// The directory to write: created, or an existing empty one (a non-empty one is refused
    /// and left untouched). It appears only when complete: the files are written into a
    /// temporary sibling directory and renamed onto DIR.
    #[arg(short, long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// The http:// or https:// URL of the ISO the machines read (their kernel parameter
    /// osimage.source=URL). Default: IMAGE when IMAGE is a URL; needed when IMAGE is a local
    /// file. It is written into boot.ipxe in clear (a presigned URL's query too); output
    /// shows it without its query.
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// Kernel parameters appended to the machines' command line, e.g. 'osimage.target=/dev/sda
    /// osimage.force=1' to restore onto a named disk that holds data (RESTORE.md in
    /// /usr/share/doc/osimage lists them).
    #[arg(long, value_name = "EXTRA", default_value = "")]
    pub cmdline: String,
    /// Print one JSON document instead of the summary line (schema: JSON.md in
    /// /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: source::NetArgs,
}

/// `netboot --json`.
#[derive(Serialize)]
struct Document {
    dir: String,
    image: String,
    image_id: String,
    kernel_bytes: u64,
    initrd_bytes: u64,
    /// The URL the machines read, without its query.
    source: String,
    files: [&'static str; 4],
}

pub fn run(a: NetbootArgs, p: &TermProgress) -> Result<i32, Failure> {
    let url = match (
        &a.source,
        a.image.to_str().filter(|_| source::is_url(&a.image)),
    ) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => url.to_string(),
        (None, None) => {
            return Err(UsageError(format!(
                "{}: a local file: give --source URL, the http:// or https:// URL the machines \
                 will read this image from",
                a.image.display()
            ))
            .into());
        }
    };
    // The URL, the extra parameters and DIR are checked before IMAGE is opened.
    osimage::check_netboot_arguments(&url, &a.cmdline, &a.output)?;
    let object = source::open_object(&a.image, &a.net)?;
    let req = osimage::NetbootRequest {
        image: object.bytes.clone(),
        shown: object.shown.clone(),
        source: url,
        extra_cmdline: a.cmdline,
        dir: a.output,
    };
    let r = osimage::write_netboot_dir(&req);
    if let Some(line) = object.summary() {
        eprintln!("osimage: {line}");
    }
    let r = r?;
    if a.json {
        json::print(
            "netboot",
            &Document {
                dir: r.dir.display().to_string(),
                image: object.shown.display().to_string(),
                image_id: r.image_id,
                kernel_bytes: r.kernel_bytes,
                initrd_bytes: r.initrd_bytes,
                source: r.source_shown,
                files: ["boot.ipxe", "vmlinuz", "initrd.img", "README.txt"],
            },
        )?;
        return Ok(0);
    }
    p.say(&format!(
        "{}: netboot files for image {}: kernel {}, initramfs {}; machines will read {}",
        r.dir.display(),
        r.image_id,
        osimage::human_bytes(r.kernel_bytes),
        osimage::human_bytes(r.initrd_bytes),
        r.source_shown
    ));
    Ok(0)
}
