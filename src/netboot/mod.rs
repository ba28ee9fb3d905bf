//! `osimage netboot`: the files a machine needs to boot an ISO's rescue environment over the
//! network (PXE/iPXE) and restore the image reading it over HTTP (issue #22 stage 7, the plain
//! URL slice: docs/NETBOOT.md, docs/STORE.md §9.1).
//!
//! The ISO made by `capture` is read through `iso::IsoReader` (a local file or an HTTP object,
//! `format::source::RangeRead`): its image id from the `/osimage/id-<hex>` marker, the rescue
//! kernel and initramfs from where `rescue::MenuParams` puts them. They are copied unchanged
//! (the initramfs already carries the image id archive) beside `boot.ipxe`, whose kernel line
//! is the ISO's automatic entry plus `osimage.source=URL` (`script`). The directory appears
//! whole or not at all: everything is written into a sibling temporary directory, synced and
//! renamed onto DIR. Row 6 of docs/DESIGN.md's table: uses `format`, `iso`, `remote`, `rescue`.

pub mod ipxe;
pub mod script;
pub mod store;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::source::RangeRead;
use crate::iso::{IsoEntryKind, IsoError, IsoExtent, IsoReader};
use crate::rescue::{MenuParams, id_marker_path};

pub use script::{MAX_CMDLINE, ScriptError};

/// The largest kernel or initramfs taken from an image (hostile input: a length read from the
/// ISO is checked before it is copied). Real ones are 5–100 MiB.
pub const MAX_BOOT_FILE: u64 = 512 << 20;

/// What to write.
pub struct NetbootRequest {
    /// The ISO's bytes: a local file or an HTTP object.
    pub image: Arc<dyn RangeRead>,
    /// How messages name the ISO: its path, or its URL without the query.
    pub shown: PathBuf,
    /// The URL the machines read the ISO from (`osimage.source=`), query and all.
    pub source: String,
    /// Kernel parameters appended to the command line (`--cmdline`).
    pub extra_cmdline: String,
    /// The directory to write: new, or empty.
    pub dir: PathBuf,
    /// When `source` is presigned: the time it stops working, as README.txt shows it.
    pub expires: Option<String>,
    /// `--with-ipxe`: the directory iPXE's boot files are copied from
    /// ([`ipxe::DEBIAN_IPXE_DIR`]); `None`: not copied.
    pub ipxe: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetbootReport {
    pub dir: PathBuf,
    /// The image id, lowercase hex.
    pub image_id: String,
    pub kernel_bytes: u64,
    pub initrd_bytes: u64,
    /// The source URL without its query (what may be shown).
    pub source_shown: String,
    /// Bytes of the kernel command line (at most [`MAX_CMDLINE`]).
    pub cmdline_bytes: usize,
}

/// Why the directory was not written. `is_usage` tells a bad argument (exit 2) from a
/// failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum NetbootError {
    /// The URL or `--cmdline` cannot go into the script.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// IMAGE is not an ISO made by `osimage capture`.
    #[error(
        "{}: {why}: it carries no rescue environment to boot (netboot needs the ISO that \
         `osimage capture ROOT -o NAME.iso` writes)",
        image.display()
    )]
    NoRescue { image: PathBuf, why: String },
    #[error(
        "{}: {what} is {len} bytes, more than the {} MiB netboot takes: a damaged or hostile \
         image",
        image.display(), MAX_BOOT_FILE >> 20
    )]
    TooLarge {
        image: PathBuf,
        what: String,
        len: u64,
    },
    #[error(transparent)]
    Iso(#[from] IsoError),
    #[error(
        "{}: exists and is not an empty directory; netboot writes a new or empty one (nothing \
         in it was touched)",
        .0.display()
    )]
    NotEmpty(PathBuf),
    /// `--with-ipxe` and an iPXE file is not on the host.
    #[error(
        "{}: missing; install Debian's ipxe package (apt-get install ipxe), or leave out \
         --with-ipxe",
        .0.display()
    )]
    NoIpxe(PathBuf),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl NetbootError {
    /// Whether this is a usage error (exit 2): the URL or the extra parameters.
    pub fn is_usage(&self) -> bool {
        matches!(self, NetbootError::Script(_))
    }

    fn io<'a>(
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> NetbootError + 'a {
        move |source| NetbootError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The rescue files of an ISO: its id and where its kernel and initramfs lie.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RescueFiles {
    image_id: String,
    kernel: IsoExtent,
    initrd: IsoExtent,
}

/// The checks that need no image: the URL, the extra parameters, and DIR (new or empty, in
/// an existing folder). [`write_netboot_dir`] makes them too; a caller may make them before it
/// opens the image.
pub fn check_arguments(source: &str, extra: &str, dir: &Path) -> Result<(), NetbootError> {
    script::check_source_url(source)?;
    script::check_extra(extra)?;
    check_dir(dir)
}

/// Checks the request, reads the ISO's rescue files and writes `req.dir` whole, or nothing.
pub fn write_netboot_dir(req: &NetbootRequest) -> Result<NetbootReport, NetbootError> {
    check_arguments(&req.source, &req.extra_cmdline, &req.dir)?;
    let iso = match IsoReader::from_source(&req.shown, req.image.clone()) {
        Ok(iso) => iso,
        Err(IsoError::NotIso(_)) => {
            return Err(NetbootError::NoRescue {
                image: req.shown.clone(),
                why: "not an ISO 9660 image (an .oimg holds the payload alone)".into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let files = rescue_files(&iso, &req.shown)?;
    let cmdline = script::kernel_cmdline(&files.image_id, &req.source, &req.extra_cmdline)?;
    let ipxe = ipxe_sources(req.ipxe.as_deref())?;
    let out = Partial::create(&req.dir)?;
    ipxe::copy(&ipxe, &out.path)?;
    copy_extent(
        &*req.image,
        files.kernel,
        &out.path.join(script::KERNEL_NAME),
    )?;
    copy_extent(
        &*req.image,
        files.initrd,
        &out.path.join(script::INITRD_NAME),
    )?;
    let text = [
        (
            script::SCRIPT_NAME,
            script::boot_ipxe(&files.image_id, &script::shown_url(&req.source), &cmdline),
        ),
        (
            script::README_NAME,
            script::readme(&files.image_id, &req.source, req.expires.as_deref()),
        ),
    ];
    for (name, body) in text {
        write_synced(&out.path.join(name), body.as_bytes())?;
    }
    out.finish(&req.dir)?;
    Ok(NetbootReport {
        dir: req.dir.clone(),
        image_id: files.image_id,
        kernel_bytes: files.kernel.len,
        initrd_bytes: files.initrd.len,
        source_shown: script::shown_url(&req.source),
        cmdline_bytes: cmdline.len(),
    })
}

/// `--with-ipxe`'s files in `dir`, checked; none without it.
fn ipxe_sources(dir: Option<&Path>) -> Result<Vec<(&'static str, PathBuf)>, NetbootError> {
    dir.map_or(Ok(Vec::new()), ipxe::sources)
}

/// DIR must be new or an empty directory; its parent must exist.
fn check_dir(dir: &Path) -> Result<(), NetbootError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(NetbootError::io("checking", dir)(e)),
        Ok(m) if !m.is_dir() => return Err(NetbootError::NotEmpty(dir.to_path_buf())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(NetbootError::io("reading", dir))?;
            if entries.next().is_some() {
                return Err(NetbootError::NotEmpty(dir.to_path_buf()));
            }
        }
    }
    let parent = parent_of(dir);
    if !parent.is_dir() {
        return Err(NetbootError::Io {
            op: "writing into",
            path: parent,
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    Ok(())
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Finds the image id and the rescue kernel and initramfs, each checked against
/// [`MAX_BOOT_FILE`].
fn rescue_files(iso: &IsoReader, shown: &Path) -> Result<RescueFiles, NetbootError> {
    let no_rescue = |why: String| NetbootError::NoRescue {
        image: shown.to_path_buf(),
        why,
    };
    // `osimage/id-<hex>`: the marker GRUB and the agent find the medium by.
    let marker = id_marker_path("");
    let (dir, prefix) = marker.rsplit_once('/').unwrap_or(("", &marker));
    let Some(folder) = iso.entry(dir)? else {
        return Err(no_rescue(format!("no /{dir} folder")));
    };
    if folder.kind != IsoEntryKind::Dir {
        return Err(no_rescue(format!("/{dir} is not a folder")));
    }
    let ids: Vec<String> = iso
        .read_dir(dir)?
        .into_iter()
        .filter(|e| e.kind == IsoEntryKind::File)
        // Plain ISO 9660 names (no Rock Ridge, no Joliet) are upper case.
        .filter_map(|e| {
            let name = e.name.to_ascii_lowercase();
            name.strip_prefix(prefix).map(str::to_string)
        })
        .filter(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    let image_id = match ids.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(no_rescue(format!(
                "no /{dir}/{prefix}<32 hex digits> marker"
            )));
        }
        _ => {
            return Err(no_rescue(format!(
                "{} /{dir}/{prefix}… markers, where an image has one",
                ids.len()
            )));
        }
    };
    let menu = MenuParams::default();
    let file = |path: &str, what: &str| -> Result<IsoExtent, NetbootError> {
        let ext = iso
            .lookup(path)?
            .ok_or_else(|| no_rescue(format!("no {path}")))?;
        if ext.len > MAX_BOOT_FILE {
            return Err(NetbootError::TooLarge {
                image: shown.to_path_buf(),
                what: format!("its {what} {path}"),
                len: ext.len,
            });
        }
        if ext.len == 0 {
            return Err(no_rescue(format!("{path} is empty")));
        }
        Ok(ext)
    };
    Ok(RescueFiles {
        image_id,
        kernel: file(&menu.kernel_path, "kernel")?,
        initrd: file(&menu.initrd_path, "initramfs")?,
    })
}

/// Copies `ext` of `src` into a new file `to`, synced.
fn copy_extent(src: &dyn RangeRead, ext: IsoExtent, to: &Path) -> Result<(), NetbootError> {
    const BUF: u64 = 4 << 20;
    let mut f = new_file(to)?;
    let mut buf = vec![0u8; BUF.min(ext.len) as usize];
    let mut done = 0u64;
    while done < ext.len {
        let n = BUF.min(ext.len - done) as usize;
        src.read_exact_at(&mut buf[..n], ext.offset + done)
            .map_err(|e| NetbootError::Io {
                op: "reading",
                path: PathBuf::from(src.describe()),
                source: e,
            })?;
        f.write_all(&buf[..n])
            .map_err(NetbootError::io("writing", to))?;
        done += n as u64;
    }
    f.sync_all().map_err(NetbootError::io("syncing", to))
}

/// Writes `bytes` into a new file `to`, synced.
fn write_synced(to: &Path, bytes: &[u8]) -> Result<(), NetbootError> {
    let mut f = new_file(to)?;
    f.write_all(bytes)
        .map_err(NetbootError::io("writing", to))?;
    f.sync_all().map_err(NetbootError::io("syncing", to))
}

/// A new file, mode 0644: TFTP and HTTP servers serve the directory.
fn new_file(path: &Path) -> Result<File, NetbootError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(NetbootError::io("creating", path))
}

/// The temporary sibling directory everything is written into; removed again unless
/// [`Partial::finish`] renamed it onto DIR.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    fn create(dir: &Path) -> Result<Partial, NetbootError> {
        let name = dir
            .file_name()
            .map_or_else(|| "netboot".into(), |n| n.to_string_lossy().into_owned());
        let path = parent_of(dir).join(format!(".{name}.partial-{}", std::process::id()));
        // What a killed earlier run of this same pid left is ours to replace.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(NetbootError::io("creating", &path))?;
        let p = Partial { path, done: false };
        std::fs::set_permissions(&p.path, std::fs::Permissions::from_mode(0o755))
            .map_err(NetbootError::io("setting the mode of", &p.path))?;
        Ok(p)
    }

    /// Syncs the directory and renames it onto `dir` (rename(2) replaces an empty
    /// directory), then syncs the parent.
    fn finish(mut self, dir: &Path) -> Result<(), NetbootError> {
        sync_dir(&self.path)?;
        std::fs::rename(&self.path, dir).map_err(|e| NetbootError::Io {
            op: "renaming the finished files onto",
            path: dir.to_path_buf(),
            source: e,
        })?;
        self.done = true;
        sync_dir(&parent_of(dir))
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), NetbootError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(NetbootError::io("syncing", dir))
}

#[cfg(test)]
mod tests;
