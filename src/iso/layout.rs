//! Assigns every structure of the image its logical blocks before a byte is written, so the
//! writer can stream front to back. Order (2048-byte sectors):
//!
//! ```text
//! 0-15   system area (protective MBR + GPT when hybrid)
//! 16     primary volume descriptor      17  El Torito boot record (if booting)
//! next   Joliet SVD, terminator
//! 32     bytes the caller placed there itself (`IsoSource::Placed`: the payload packs), if any
//! then   path tables (ISO L, ISO M, Joliet L, Joliet M), boot catalog,
//!        ISO directories (breadth first), Joliet directories, Rock Ridge continuation area,
//!        file data in `IsoSpec::files` order, backup GPT (hybrid)
//! ```

use super::el_torito::{self, BootEntry, PLATFORM_EFI, PLATFORM_X86};
use super::hybrid::GPT_TAIL_BYTES;
use super::records::{DirRecord, FIRST_VD_SECTOR, Lba, PathTableRecord, RecordDate, SECTOR, flags};
use super::rock_ridge::{self, CeArea, SuspLayout};
use super::tree::{Kind, NodeId, Tree};
use super::{IsoError, IsoSource, IsoSpec, PLACED_START};

/// The BIOS image is held in memory to patch it; GRUB's is ~100-500 KiB.
const MAX_BIOS_IMAGE: u64 = 32 << 20;

/// Files start on a multiple of this many sectors (4 KiB).
const FILE_ALIGN_SECTORS: u64 = 2;
/// Where a directory's extent lies in one hierarchy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extent {
    pub lba: Lba,
    pub len: u32,
}

/// Boot images resolved to nodes.
#[derive(Debug, Clone)]
pub struct BootLayout {
    pub catalog: Lba,
    pub bios: Option<NodeId>,
    pub efi: Option<NodeId>,
    pub grub_mbr: Option<Vec<u8>>,
}

/// The complete plan of an image.
#[derive(Debug, Clone)]
pub struct Layout {
    pub tree: Tree,
    pub ce: CeArea,
    /// Per node: its SUSP entries in its parent's record (dirs also: "." and "..").
    susp: Vec<SuspLayout>,
    dot: Vec<SuspLayout>,
    dotdot: Vec<SuspLayout>,
    pub iso_dirs: Vec<NodeId>,
    pub joliet_dirs: Vec<NodeId>,
    pub iso_extent: Vec<Extent>,
    pub joliet_extent: Vec<Extent>,
    /// Per node: first block of a file's data (0 for empty files and non-files).
    pub file_lba: Vec<Lba>,
    /// File nodes in data order.
    pub files: Vec<NodeId>,
    pub boot: Option<BootLayout>,
    pub joliet_svd: Lba,
    pub path_tables: [Lba; 4],
    pub path_table_size: [u32; 2],
    pub ce_base: Lba,
    pub data_start: Lba,
    pub total_sectors: u32,
    pub hybrid: bool,
    pub created: i64,
}

impl Layout {
    pub fn plan(spec: &IsoSpec, created: i64) -> Result<Layout, IsoError> {
        let tree = Tree::build(spec)?;
        let n = tree.nodes.len();
        let iso_dirs = tree.dirs_bfs(false);
        if iso_dirs.len() > usize::from(u16::MAX) {
            return Err(IsoError::BadPath {
                path: "/".into(),
                why: "more than 65535 directories (path table limit, ECMA-119 9.4.4)",
            });
        }
        let mut l = Layout {
            joliet_dirs: tree.dirs_bfs(true),
            iso_dirs,
            ce: CeArea::default(),
            susp: vec![SuspLayout::default(); n],
            dot: vec![SuspLayout::default(); n],
            dotdot: vec![SuspLayout::default(); n],
            iso_extent: vec![Extent::default(); n],
            joliet_extent: vec![Extent::default(); n],
            file_lba: vec![Lba(0); n],
            files: Vec::new(),
            boot: None,
            joliet_svd: Lba(0),
            path_tables: [Lba(0); 4],
            path_table_size: [0; 2],
            ce_base: Lba(0),
            data_start: Lba(0),
            total_sectors: 0,
            hybrid: spec.hybrid,
            created,
            tree,
        };
        l.place_susp();
        l.assign(spec)?;
        Ok(l)
    }

    /// Splits each record's Rock Ridge entries between the record and the continuation area.
    fn place_susp(&mut self) {
        for id in 0..self.tree.nodes.len() {
            if id != 0 {
                let room = 255 - DirRecord::encoded_len(self.tree.nodes[id].iso_name.len(), 0);
                let e = self.tree.rr_entries(id, true);
                self.susp[id] = self.ce.place(e, room);
            }
            if self.tree.nodes[id].is_dir() {
                let room = 255 - DirRecord::encoded_len(1, 0);
                let mut e = self.tree.rr_entries(id, false);
                if id == 0 {
                    // SUSP 5.3: SP first in the root's "." record; 5.5: ER announces RRIP
                    e.insert(0, rock_ridge::sp());
                    e.push(rock_ridge::er());
                }
                self.dot[id] = self.ce.place(e, room);
                let parent = self.tree.nodes[id].parent;
                self.dotdot[id] = self.ce.place(self.tree.rr_entries(parent, false), room);
            }
        }
    }

    fn assign(&mut self, spec: &IsoSpec) -> Result<(), IsoError> {
        let placed_end = self.assign_placed(spec)?;
        let next = self.assign_metadata(spec.boot.is_some(), placed_end);
        self.ce_base = Lba(next);
        let next = next + self.ce.sectors();
        self.data_start = Lba(next);
        let mut files: Vec<(usize, NodeId, u64)> = Vec::new();
        for (id, node) in self.tree.nodes.iter().enumerate() {
            if let Kind::File { spec_index, size } = node.kind {
                files.push((spec_index, id, size));
            }
        }
        files.sort_unstable();
        let mut next = u64::from(next);
        for &(spec_index, id, size) in &files {
            if size > 0 && !matches!(spec.files[spec_index].source, IsoSource::Placed { .. }) {
                // On a 4 KiB boundary: a file's bytes then sit alike within a filesystem block
                // in the ISO and in a file of their own, so the payload packs of a refresh can
                // share extents with the base's on XFS or btrfs (docs/REFRESH.md).
                next = next.next_multiple_of(FILE_ALIGN_SECTORS);
                self.file_lba[id] = Lba(sector_u32(next)?);
                next += size.div_ceil(SECTOR as u64);
            }
        }
        self.files = files.iter().map(|f| f.1).collect();
        if self.hybrid {
            next += GPT_TAIL_BYTES.div_ceil(SECTOR as u64);
        }
        self.total_sectors = sector_u32(next)?;
        if let Some(b) = &spec.boot {
            self.resolve_boot(b)?;
        }
        Ok(())
    }

    /// Files whose bytes the caller already wrote (`IsoSource::Placed`) keep their place,
    /// right after the volume descriptors; returns the block after the last of them (0 when
    /// there are none).
    fn assign_placed(&mut self, spec: &IsoSpec) -> Result<u32, IsoError> {
        let mut placed = Vec::new();
        for (id, node) in self.tree.nodes.iter().enumerate() {
            if let Kind::File { spec_index, size } = node.kind
                && let IsoSource::Placed { offset, .. } = spec.files[spec_index].source
            {
                placed.push((offset, size, id, spec_index));
            }
        }
        placed.sort_unstable();
        let mut end = PLACED_START;
        for &(offset, size, id, spec_index) in &placed {
            let bad = |why| IsoError::BadPath {
                path: spec.files[spec_index].path.clone(),
                why,
            };
            if offset % SECTOR as u64 != 0 {
                return Err(bad("placed bytes do not start on a 2048-byte sector"));
            }
            if offset < end {
                return Err(bad(
                    "placed bytes overlap the volume descriptors or other placed bytes",
                ));
            }
            self.file_lba[id] = Lba(sector_u32(offset / SECTOR as u64)?);
            end = offset + size;
        }
        if placed.is_empty() {
            return Ok(0);
        }
        sector_u32(end.div_ceil(SECTOR as u64))
    }

    /// Volume descriptors, then (after `placed_end`, the end of placed bytes) path tables, boot
    /// catalog and directories; returns the next free block.
    fn assign_metadata(&mut self, booting: bool, placed_end: u32) -> u32 {
        // El Torito 2.0: the boot record follows the PVD at 17
        let mut next = FIRST_VD_SECTOR + 1 + u32::from(booting);
        self.joliet_svd = Lba(next);
        next += 2; // Joliet SVD, terminator
        debug_assert!(u64::from(next) * SECTOR as u64 <= PLACED_START);
        next = next.max(placed_end);
        self.path_table_size = [self.path_table_len(false), self.path_table_len(true)];
        for (i, slot) in self.path_tables.iter_mut().enumerate() {
            *slot = Lba(next);
            next += (self.path_table_size[i / 2] as usize).div_ceil(SECTOR) as u32;
        }
        if booting {
            self.boot = Some(BootLayout {
                catalog: Lba(next),
                bios: None,
                efi: None,
                grub_mbr: None,
            });
            next += 1;
        }
        for joliet in [false, true] {
            let dirs = if joliet {
                self.joliet_dirs.clone()
            } else {
                self.iso_dirs.clone()
            };
            for d in dirs {
                let len = self.dir_len(d, joliet);
                let ext = Extent {
                    lba: Lba(next),
                    len,
                };
                next += len / SECTOR as u32;
                if joliet {
                    self.joliet_extent[d] = ext
                } else {
                    self.iso_extent[d] = ext
                }
            }
        }
        next
    }

    fn resolve_boot(&mut self, b: &super::BootImages) -> Result<(), IsoError> {
        let find = |p: &Option<String>| -> Result<Option<NodeId>, IsoError> {
            let Some(p) = p else { return Ok(None) };
            match self.tree.find(p) {
                Some(n) if matches!(self.tree.nodes[n].kind, Kind::File { size, .. } if size > 0) => {
                    Ok(Some(n))
                }
                _ => Err(IsoError::BootImage {
                    path: p.clone(),
                    why: "not a non-empty file of the image".into(),
                }),
            }
        };
        let (bios, efi) = (find(&b.bios)?, find(&b.efi)?);
        if let Some(n) = bios
            && self.file_size(n) > MAX_BIOS_IMAGE
        {
            return Err(IsoError::BootImage {
                path: b.bios.clone().unwrap_or_default(),
                why: format!("larger than {MAX_BIOS_IMAGE} bytes"),
            });
        }
        if bios.is_none() && efi.is_none() {
            return Err(IsoError::BootImage {
                path: String::new(),
                why: "boot set but neither a BIOS nor an EFI image given".into(),
            });
        }
        if let Some(bl) = &mut self.boot {
            bl.bios = bios;
            bl.efi = efi;
            bl.grub_mbr = b.mbr.clone();
        }
        Ok(())
    }

    pub fn file_size(&self, n: NodeId) -> u64 {
        match self.tree.nodes[n].kind {
            Kind::File { size, .. } => size,
            _ => 0,
        }
    }

    /// Catalog entries: 1 = BIOS (default), 2 = UEFI (docs/DESIGN.md).
    pub fn boot_entries(&self) -> Option<(BootEntry, Option<BootEntry>)> {
        let b = self.boot.as_ref()?;
        let bios = b.bios.map(|n| BootEntry {
            platform: PLATFORM_X86,
            // El Torito 2.2: the BIOS loads 4 virtual sectors (2048 bytes; mkisofs
            // -boot-load-size 4); the loader reads the rest itself via the boot info table
            sector_count: self.file_size(n).div_ceil(512).min(4) as u16,
            load_rba: self.file_lba[n],
        });
        let efi = b.efi.map(|n| BootEntry {
            platform: PLATFORM_EFI,
            sector_count: el_torito::efi_sector_count(self.file_size(n)),
            load_rba: self.file_lba[n],
        });
        match (bios, efi) {
            (Some(b), e) => Some((b, e)),
            (None, Some(e)) => Some((e, None)),
            (None, None) => None,
        }
    }

    fn path_table_len(&self, joliet: bool) -> u32 {
        let dirs = if joliet {
            &self.joliet_dirs
        } else {
            &self.iso_dirs
        };
        dirs.iter()
            .map(|&d| PathTableRecord::encoded_len(self.dir_ident(d, joliet).len()) as u32)
            .sum()
    }

    fn dir_ident(&self, d: NodeId, joliet: bool) -> Vec<u8> {
        match (d, joliet) {
            (0, _) => vec![0],
            (_, false) => self.tree.nodes[d].iso_name.clone(),
            (_, true) => self.tree.nodes[d].joliet_name.clone(),
        }
    }

    /// The path table of one hierarchy (ECMA-119 9.4), L or M.
    pub fn path_table(&self, joliet: bool, big_endian: bool) -> Vec<u8> {
        let dirs = if joliet {
            &self.joliet_dirs
        } else {
            &self.iso_dirs
        };
        let ext = if joliet {
            &self.joliet_extent
        } else {
            &self.iso_extent
        };
        let mut number = vec![0u16; self.tree.nodes.len()];
        let mut out = Vec::new();
        for (i, &d) in dirs.iter().enumerate() {
            number[d] = (i + 1) as u16; // checked ≤ 65535 in plan()
            let rec = PathTableRecord {
                extent: ext[d].lba,
                parent: number[self.tree.nodes[d].parent],
                ident: self.dir_ident(d, joliet),
            };
            out.extend(rec.encode(big_endian));
        }
        out
    }

    /// The records of directory `d` in one hierarchy: ".", "..", then the children.
    pub fn dir_records(&self, d: NodeId, joliet: bool) -> Vec<DirRecord> {
        let ext = if joliet {
            &self.joliet_extent
        } else {
            &self.iso_extent
        };
        let su = |l: &SuspLayout| {
            if joliet {
                Vec::new()
            } else {
                self.ce.encode_record(l, self.ce_base)
            }
        };
        let node = &self.tree.nodes[d];
        let parent = node.parent;
        let mut out = vec![
            self.dir_record(d, ext, vec![0], su(&self.dot[d])),
            self.dir_record(parent, ext, vec![1], su(&self.dotdot[d])),
        ];
        for &k in self.tree.children(d, joliet) {
            let kid = &self.tree.nodes[k];
            let ident = if joliet {
                kid.joliet_name.clone()
            } else {
                kid.iso_name.clone()
            };
            out.push(self.dir_record(k, ext, ident, su(&self.susp[k])));
        }
        out
    }

    fn dir_record(
        &self,
        n: NodeId,
        ext: &[Extent],
        ident: Vec<u8>,
        system_use: Vec<u8>,
    ) -> DirRecord {
        let node = &self.tree.nodes[n];
        let (extent, data_len, fl) = match node.kind {
            Kind::Dir { .. } => (ext[n].lba, ext[n].len, flags::DIRECTORY),
            // sizes < 4 GiB were checked when the tree was built
            Kind::File { size, .. } => (self.file_lba[n], size as u32, 0),
            Kind::Symlink(_) => (Lba(0), 0, 0),
        };
        DirRecord {
            extent,
            data_len,
            date: RecordDate(node.mtime),
            flags: fl,
            ident,
            system_use,
        }
    }

    /// Size of a directory's extent: records never cross a sector (ECMA-119 6.8.1.1).
    fn dir_len(&self, d: NodeId, joliet: bool) -> u32 {
        let recs = self.dir_records(d, joliet);
        let lens = recs
            .iter()
            .map(|r| DirRecord::encoded_len(r.ident.len(), r.system_use.len()));
        pack_records(lens).len() as u32 * SECTOR as u32
    }

    /// Encodes directory `d` of one hierarchy, whole sectors.
    pub fn encode_dir(&self, d: NodeId, joliet: bool) -> Vec<u8> {
        let recs: Vec<Vec<u8>> = self
            .dir_records(d, joliet)
            .iter()
            .map(DirRecord::encode)
            .collect();
        let offsets = pack_records(recs.iter().map(Vec::len));
        let mut out = vec![0u8; offsets.len() * SECTOR];
        for (rec, at) in recs.iter().zip(offsets.into_iter().flatten()) {
            out[at..at + rec.len()].copy_from_slice(rec);
        }
        out
    }
}

/// Byte offsets of records packed into sectors, grouped by sector (at least one sector).
fn pack_records(lens: impl Iterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut sectors: Vec<Vec<usize>> = vec![Vec::new()];
    let mut pos = 0;
    for len in lens {
        if pos % SECTOR + len > SECTOR {
            pos = pos.next_multiple_of(SECTOR);
            sectors.push(Vec::new());
        }
        if let Some(s) = sectors.last_mut() {
            s.push(pos);
        }
        pos += len;
    }
    sectors
}

fn sector_u32(s: u64) -> Result<u32, IsoError> {
    u32::try_from(s).map_err(|_| IsoError::BadPath {
        path: "/".into(),
        why: "image larger than 8 TiB (32-bit block addresses)",
    })
}
