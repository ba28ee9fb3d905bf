//! `osimage netboot s3://B/P/NAME[@V] -o DIR` (docs/STORE.md §9.1): the version's rescue
//! kernel and initramfs from the store's blobs, checked against its manifest's rescue record,
//! with `source.conf` (presigned URLs of the version object and every pack) appended to the
//! initramfs as one more uncompressed archive, and `boot.ipxe` pointing the agent at it:
//! `osimage.source=/osimage/source.conf`. DIR appears whole or not at all, as for an ISO.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::script::{self, SOURCE_CONF_PATH};
use super::{NetbootError, NetbootReport, Partial, check_dir, ipxe, write_synced};
use crate::rescue::cpio::CpioWriter;
use crate::store::Store;
use crate::store::netboot::NetbootVersion;

/// What to write for a store version.
pub struct StoreNetbootRequest<'a> {
    pub store: &'a Store,
    pub version: &'a NetbootVersion,
    /// How the URLs were made, for README.txt.
    pub urls: StoreUrls,
    /// Kernel parameters appended to the command line (`--cmdline`).
    pub extra_cmdline: String,
    pub dir: PathBuf,
    /// `--with-ipxe`: the directory iPXE's boot files are copied from; `None`: not copied.
    pub ipxe: Option<PathBuf>,
}

/// How the URLs of `source.conf` were made, as README.txt tells it.
pub enum StoreUrls {
    /// Presigned against `endpoint`, working until `expires`.
    Presigned { endpoint: String, expires: String },
    /// `--plain-url base`: nothing expires; the version is pinned until `pinned_until`.
    Plain { base: String, pinned_until: String },
}

/// Writes `req.dir` whole, or nothing.
pub fn write_store_netboot_dir(req: &StoreNetbootRequest) -> Result<NetbootReport, NetbootError> {
    script::check_extra(&req.extra_cmdline)?;
    check_dir(&req.dir)?;
    let v = req.version;
    let m = v.open.reader.manifest();
    let shown = v.open.name.clone();
    let blobs = v
        .open
        .head
        .rescue
        .as_ref()
        .ok_or_else(|| NetbootError::NoRescue {
            image: shown.clone(),
            why: "its head names no rescue blobs".into(),
        })?;
    let image_id = v.conf.image_id.clone();
    let cmdline = script::cmdline_with_source(&image_id, SOURCE_CONF_PATH, &req.extra_cmdline)?;
    let ipxe = match &req.ipxe {
        Some(dir) => ipxe::sources(dir)?,
        None => Vec::new(),
    };
    let out = Partial::create(&req.dir)?;
    ipxe::copy(&ipxe, &out.path)?;
    let files =
        req.store
            .rescue_files(m, blobs, &out.path)
            .map_err(|why| NetbootError::NoRescue {
                image: shown.clone(),
                why,
            })?;
    append_source_conf(&files.initrd, &v.conf.to_json())?;
    let from = shown.display().to_string();
    let text = [
        (
            script::SCRIPT_NAME,
            script::boot_ipxe(&image_id, &from, &cmdline),
        ),
        (
            script::README_NAME,
            script::readme_store(&image_id, &from, &req.urls),
        ),
    ];
    for (name, body) in text {
        write_synced(&out.path.join(name), body.as_bytes())?;
    }
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |md| md.len());
    let (kernel_bytes, initrd_bytes) = (size(&files.kernel), size(&files.initrd));
    out.finish(&req.dir)?;
    Ok(NetbootReport {
        dir: req.dir.clone(),
        image_id,
        kernel_bytes,
        initrd_bytes,
        source_shown: from,
        cmdline_bytes: cmdline.len(),
    })
}

/// Pads `initrd` to a multiple of 4 and appends an uncompressed cpio archive holding
/// `osimage/source.conf` (the kernel unpacks concatenated archives in order), then syncs it.
fn append_source_conf(initrd: &Path, conf: &[u8]) -> Result<(), NetbootError> {
    let io = |op| NetbootError::io(op, initrd);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(initrd)
        .map_err(io("opening"))?;
    let len = f.metadata().map_err(io("reading"))?.len();
    let pad = (len.next_multiple_of(4) - len) as usize;
    let name = SOURCE_CONF_PATH.trim_start_matches('/');
    let mut w = CpioWriter::new(Vec::new(), 0);
    w.dir("osimage", 0o755).map_err(io("writing"))?;
    w.file(name, 0o600, conf.len() as u64, &mut &conf[..])
        .map_err(io("writing"))?;
    let (archive, _) = w.finish().map_err(io("writing"))?;
    f.write_all(&vec![0u8; pad])
        .and_then(|_| f.write_all(&archive))
        .map_err(io("writing"))?;
    f.sync_all().map_err(io("syncing"))
}
