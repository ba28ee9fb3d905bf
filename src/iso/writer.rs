//! Writes a planned [`Layout`] front to back: metadata (a few KiB per thousand files) is built
//! in memory, file contents are streamed through one fixed buffer, so memory stays flat however
//! large the payload is (docs/DESIGN.md "Streaming, bounded memory").

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use super::el_torito;
use super::hybrid::{self, GPT_TAIL_BYTES, HybridInput};
use super::joliet::joliet_volume_id;
use super::layout::Layout;
use super::records::{FIRST_VD_SECTOR, Lba, SECTOR, VdKind, VolumeDescriptor, encode_terminator};
use super::tree::Kind;
use super::{IsoError, IsoSource, IsoSpec, IsoSummary};

const COPY_BUF: usize = 1 << 20;

/// Writes the image described by `spec` to `out` (created, or truncated unless files were
/// placed in it: `IsoSource::Placed` bytes are left as they are, every other byte is written).
/// The caller handles a temporary name and the rename; contents of `IsoSource::Path` files are
/// streamed in order.
pub fn write_iso(spec: &IsoSpec, out: &Path) -> Result<IsoSummary, IsoError> {
    let layout = Layout::plan(spec, creation_time())?;
    let mut placed: Vec<(u64, u64)> = spec
        .files
        .iter()
        .filter_map(|f| match f.source {
            IsoSource::Placed { offset, len } => Some((offset, offset + len)),
            _ => None,
        })
        .collect();
    placed.sort_unstable();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(placed.is_empty())
        .open(out)
        .map_err(|e| IsoError::io("creating", out, e))?;
    let mut w = Out {
        w: BufWriter::with_capacity(COPY_BUF, file),
        path: out,
        pos: 0,
        placed,
    };
    write_metadata(&layout, spec, &mut w)?;
    let data_bytes = write_files(&layout, spec, &mut w)?;
    let total = u64::from(layout.total_sectors) * SECTOR as u64;
    if layout.hybrid {
        let (_, tail) = system_area(&layout, spec);
        w.pad_to(total - GPT_TAIL_BYTES)?;
        w.write(&tail)?;
    }
    w.pad_to(total)?;
    let file =
        w.w.into_inner()
            .map_err(|e| IsoError::io("writing", out, e.into_error()))?;
    // Placed bytes were written before the image around them: nothing may stay past its end.
    file.set_len(total)
        .map_err(|e| IsoError::io("sizing", out, e))?;
    file.sync_all()
        .map_err(|e| IsoError::io("syncing", out, e))?;
    Ok(IsoSummary {
        size: total,
        data_bytes,
        entries: layout.tree.nodes.len() - 1,
    })
}

/// File contents in layout order, each at its extent; the BIOS image patched on the way.
fn write_files(layout: &Layout, spec: &IsoSpec, w: &mut Out) -> Result<u64, IsoError> {
    let mut data_bytes = 0;
    for &n in &layout.files {
        let size = layout.file_size(n);
        let Kind::File { spec_index, .. } = layout.tree.nodes[n].kind else {
            continue;
        };
        let f = &spec.files[spec_index];
        if size == 0 {
            continue;
        }
        data_bytes += size;
        if let IsoSource::Placed { .. } = f.source {
            continue; // already there, before the metadata
        }
        w.seek_to(layout.file_lba[n])?;
        if layout.boot.as_ref().is_some_and(|b| b.bios == Some(n)) {
            let mut img = read_source(&f.source, size)?;
            patch_bios(layout, n, &mut img, &f.path)?;
            w.write(&img)?;
        } else {
            copy_source(&f.source, size, w)?;
        }
    }
    Ok(data_bytes)
}

/// Volume dates: `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
fn creation_time() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        })
}

/// A sequential writer that knows its position, for padding to the next block; it steps over
/// the byte ranges in `placed` (sorted), which hold bytes the caller wrote.
struct Out<'a> {
    w: BufWriter<File>,
    path: &'a Path,
    pos: u64,
    placed: Vec<(u64, u64)>,
}

impl Out<'_> {
    fn write(&mut self, b: &[u8]) -> Result<(), IsoError> {
        self.w
            .write_all(b)
            .map_err(|e| IsoError::io("writing", self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Zeros up to `at`, stepping over placed bytes.
    fn pad_to(&mut self, at: u64) -> Result<(), IsoError> {
        debug_assert!(at >= self.pos, "layout overlap: at {} pos {}", at, self.pos);
        const ZEROS: [u8; SECTOR] = [0; SECTOR];
        while self.pos < at {
            let next = self.placed.iter().find(|r| r.1 > self.pos).copied();
            if let Some((start, end)) = next
                && start <= self.pos
            {
                std::io::Seek::seek(&mut self.w, std::io::SeekFrom::Start(end))
                    .map_err(|e| IsoError::io("writing", self.path, e))?;
                self.pos = end;
                continue;
            }
            let limit = next.map_or(at, |r| r.0.min(at));
            let n = (limit - self.pos).min(SECTOR as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    fn seek_to(&mut self, lba: Lba) -> Result<(), IsoError> {
        self.pad_to(lba.byte_offset())
    }
}

fn system_area(l: &Layout, spec: &IsoSpec) -> (Vec<u8>, Vec<u8>) {
    let boot = l.boot.as_ref();
    let esp = boot
        .and_then(|b| b.efi)
        .map(|n| (l.file_lba[n].byte_offset(), l.file_size(n)));
    let bios_image = boot
        .and_then(|b| b.bios)
        .map(|n| l.file_lba[n].byte_offset());
    let mut seed = blake3::Hasher::new();
    seed.update(spec.volume_id.as_bytes());
    seed.update(&l.created.to_le_bytes());
    seed.update(&l.total_sectors.to_le_bytes());
    hybrid::system_area(&HybridInput {
        image_len: u64::from(l.total_sectors) * SECTOR as u64,
        esp,
        mbr_code: boot.and_then(|b| b.grub_mbr.as_deref()),
        bios_image,
        seed: *seed.finalize().as_bytes(),
    })
}

fn write_metadata(l: &Layout, spec: &IsoSpec, w: &mut Out) -> Result<(), IsoError> {
    if l.hybrid {
        let (head, _) = system_area(l, spec);
        w.write(&head)?;
    }
    let root = |joliet| {
        let mut r = l.dir_records(0, joliet).swap_remove(0);
        r.system_use.clear(); // the root record in a volume descriptor is exactly 34 bytes
        r
    };
    let vd = |kind, volume_id: Vec<u8>, app: Vec<u8>, joliet: bool| VolumeDescriptor {
        kind,
        volume_id,
        application_id: app,
        volume_space_size: l.total_sectors,
        path_table_size: l.path_table_size[usize::from(joliet)],
        l_path_table: l.path_tables[2 * usize::from(joliet)],
        m_path_table: l.path_tables[2 * usize::from(joliet) + 1],
        root: root(joliet),
        created: l.created,
    };
    w.seek_to(Lba(FIRST_VD_SECTOR))?;
    let app = b"OSIMAGE".to_vec();
    w.write(
        &vd(
            VdKind::Primary,
            spec.volume_id.clone().into_bytes(),
            app,
            false,
        )
        .encode(),
    )?;
    if let Some(b) = &l.boot {
        w.write(&el_torito::encode_boot_record(b.catalog))?;
    }
    let jid = joliet_volume_id(&spec.volume_id);
    let japp = joliet_volume_id("OSIMAGE");
    w.write(&vd(VdKind::Joliet, jid, japp, true).encode())?;
    w.write(&encode_terminator())?;
    for (i, lba) in l.path_tables.iter().enumerate() {
        w.seek_to(*lba)?;
        w.write(&l.path_table(i >= 2, i % 2 == 1))?;
    }
    if let (Some(b), Some((first, second))) = (&l.boot, l.boot_entries()) {
        w.seek_to(b.catalog)?;
        w.write(&el_torito::encode_catalog(first, second))?;
    }
    for (joliet, dirs) in [(false, &l.iso_dirs), (true, &l.joliet_dirs)] {
        for &d in dirs {
            let ext = if joliet {
                l.joliet_extent[d]
            } else {
                l.iso_extent[d]
            };
            w.seek_to(ext.lba)?;
            let bytes = l.encode_dir(d, joliet);
            debug_assert_eq!(bytes.len(), ext.len as usize);
            w.write(&bytes)?;
        }
    }
    w.seek_to(l.ce_base)?;
    w.write(&l.ce.encode(l.ce_base))?;
    debug_assert!(w.pos <= l.data_start.byte_offset());
    Ok(())
}

fn patch_bios(l: &Layout, n: usize, img: &mut [u8], path: &str) -> Result<(), IsoError> {
    let lba = l.file_lba[n];
    let err = |why: &str| IsoError::BootImage {
        path: path.to_string(),
        why: why.to_string(),
    };
    if l.boot.as_ref().is_some_and(|b| b.grub_mbr.is_some()) {
        el_torito::patch_grub2_boot_info(img, lba).map_err(err)?;
    }
    el_torito::patch_boot_info_table(img, lba).map_err(err)
}

fn read_source(src: &IsoSource, size: u64) -> Result<Vec<u8>, IsoError> {
    let mut v = Vec::with_capacity(size as usize);
    match src {
        IsoSource::Bytes(b) => v.extend_from_slice(b),
        IsoSource::Path(p) => {
            let f = File::open(p).map_err(|e| IsoError::io("opening", p, e))?;
            f.take(size + 1)
                .read_to_end(&mut v)
                .map_err(|e| IsoError::io("reading", p, e))?;
            if v.len() as u64 != size {
                return Err(IsoError::Changed {
                    path: p.clone(),
                    expected: size,
                });
            }
        }
        IsoSource::Placed { .. } => {
            return Err(IsoError::BadPath {
                path: String::new(),
                why: "a boot image cannot be placed bytes",
            });
        }
        IsoSource::Symlink(_) | IsoSource::Dir => {}
    }
    Ok(v)
}

fn copy_source(src: &IsoSource, size: u64, w: &mut Out) -> Result<(), IsoError> {
    let p = match src {
        IsoSource::Bytes(b) => return w.write(b),
        IsoSource::Path(p) => p,
        IsoSource::Placed { .. } | IsoSource::Symlink(_) | IsoSource::Dir => return Ok(()),
    };
    let mut f = File::open(p).map_err(|e| IsoError::io("opening", p, e))?;
    // std's io::copy uses copy_file_range/sendfile between files (after flushing our
    // BufWriter): the data need not pass through user space
    let copied = std::io::copy(&mut (&f).take(size), &mut w.w)
        .map_err(|e| IsoError::io("copying into the ISO from", p, e))?;
    w.pos += copied;
    let left = size - copied;
    // the file must end exactly where its stat said: a grown or shrunk file would shift or
    // corrupt what the directory records say
    let extra = f
        .read(&mut [0u8; 1])
        .map_err(|e| IsoError::io("reading", p, e))?;
    if left > 0 || extra > 0 {
        return Err(IsoError::Changed {
            path: p.clone(),
            expected: size,
        });
    }
    Ok(())
}
