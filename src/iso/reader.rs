//! A small ISO 9660 reader for `verify`, `list`, `info` and `extract`: open an image, list a
//! directory, find a file's single extent so payload packs can be read in place. Names come
//! from Rock Ridge `NM` when the volume has Rock Ridge (SUSP `SP` in the root), else from
//! Joliet, else from ISO 9660 identifiers. The image is hostile input: every offset and length
//! read from it is checked against the file before use; nothing here panics on bad data.
//! Bytes come through `format::source::RangeRead`: a local file, or an ISO served over HTTP
//! (docs/STORE.md §7).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::source::RangeRead;

use super::el_torito;
use super::joliet::{decode_joliet, strip_version};
use super::records::{DirRecord, FIRST_VD_SECTOR, Lba, SECTOR, VdKind, VolumeDescriptor, flags};
use super::rock_ridge::{RrInfo, S_IFLNK};
use super::{IsoError, IsoExtent};

/// Largest directory extent we read (a directory of ~200k entries).
const MAX_DIR_LEN: u32 = 64 << 20;
/// Most volume descriptors we look at before giving up on a terminator.
const MAX_VDS: u32 = 64;
/// Most continuation areas followed for one record.
const MAX_CE_HOPS: usize = 32;

/// What kind of entry a directory record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsoEntryKind {
    File,
    Dir,
    Symlink,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoDirEntry {
    /// Rock Ridge name if present, else Joliet, else the ISO 9660 name without `;1`.
    pub name: String,
    pub kind: IsoEntryKind,
    /// The (first) extent of the entry's data.
    pub extent: IsoExtent,
    /// POSIX mode (with type bits) from Rock Ridge `PX`.
    pub mode: Option<u32>,
    /// Modification time: Rock Ridge `TF` if present, else the record date.
    pub mtime: i64,
    /// Symlink target (Rock Ridge `SL`).
    pub symlink: Option<String>,
    /// The file is recorded in several extents (ECMA-119 6.5.1); `extent` is the first.
    pub multi_extent: bool,
}

/// A directory read once ([`IsoReader::open_dir`]): its entries by name.
#[derive(Debug)]
pub struct IsoDir {
    /// The directory's ISO path, for messages.
    path: String,
    by_name: HashMap<String, IsoDirEntry>,
    /// ISO 9660 names (no Rock Ridge, no Joliet) compare without case.
    fold_case: bool,
}

/// Which directory hierarchy names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    RockRidge { skip: usize },
    Joliet,
    Plain,
}

/// An open ISO 9660 image.
pub struct IsoReader {
    src: Arc<dyn RangeRead>,
    path: PathBuf,
    len: u64,
    volume_id: String,
    root: DirRecord,
    names: Names,
    catalog: Option<Lba>,
}

impl std::fmt::Debug for IsoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsoReader")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("volume_id", &self.volume_id)
            .field("names", &self.names)
            .finish()
    }
}

impl IsoReader {
    /// Opens an image and reads its volume descriptors.
    pub fn open(path: &Path) -> Result<Self, IsoError> {
        let file = File::open(path).map_err(|e| IsoError::io("opening", path, e))?;
        Self::from_file(path, file)
    }

    /// Reads the image already open as `file` (`path` names it in messages): every byte
    /// comes from that open file, whatever `path` points to by now.
    pub fn from_file(path: &Path, file: File) -> Result<Self, IsoError> {
        // Seeking to the end sizes block devices too (/dev/sr0), where stat says 0.
        std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0))
            .map_err(|e| IsoError::io("sizing", path, e))?;
        Self::from_source(path, Arc::new(file))
    }

    /// Reads the image `src` (`path` names it in messages: a path or a URL without its
    /// query).
    pub fn from_source(path: &Path, src: Arc<dyn RangeRead>) -> Result<Self, IsoError> {
        let len = src.len();
        let mut r = IsoReader {
            src,
            path: path.to_path_buf(),
            len,
            volume_id: String::new(),
            root: DirRecord {
                extent: Lba(0),
                data_len: 0,
                date: super::records::RecordDate(0),
                flags: flags::DIRECTORY,
                ident: vec![0],
                system_use: Vec::new(),
            },
            names: Names::Plain,
            catalog: None,
        };
        let (pvd, joliet) = r.volume_descriptors()?;
        r.volume_id = String::from_utf8_lossy(&pvd.volume_id)
            .trim_end()
            .to_string();
        r.root = pvd.root;
        if let Some(skip) = r.rock_ridge_skip()? {
            r.names = Names::RockRidge { skip };
        } else if let Some(j) = joliet {
            r.root = j.root;
            r.names = Names::Joliet;
        }
        Ok(r)
    }

    /// The primary volume identifier (label), trailing blanks removed.
    pub fn volume_id(&self) -> &str {
        &self.volume_id
    }

    /// Size of the image file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the image file is empty (never true for an image that opened).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether names come from Rock Ridge.
    pub fn has_rock_ridge(&self) -> bool {
        matches!(self.names, Names::RockRidge { .. })
    }

    fn corrupt(&self, what: impl Into<String>) -> IsoError {
        IsoError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// Reads `len` bytes at `offset`, refusing ranges outside the file.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, IsoError> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(self.corrupt(format!(
                "{len} bytes at offset {offset} lie past the end ({} bytes)",
                self.len
            )));
        }
        let mut buf = vec![0u8; len];
        self.src
            .read_exact_at(&mut buf, offset)
            .map_err(|e| IsoError::io("reading", &self.path, e))?;
        Ok(buf)
    }

    fn volume_descriptors(
        &mut self,
    ) -> Result<(VolumeDescriptor, Option<VolumeDescriptor>), IsoError> {
        let not_iso = || IsoError::NotIso(self.path.clone());
        let (mut pvd, mut joliet) = (None, None);
        for i in 0..MAX_VDS {
            let off = u64::from(FIRST_VD_SECTOR + i) * SECTOR as u64;
            if off + SECTOR as u64 > self.len {
                break;
            }
            let s = self.read_at(off, SECTOR)?;
            if &s[1..6] != b"CD001" {
                if i == 0 {
                    return Err(not_iso());
                }
                break;
            }
            match s[0] {
                255 => break,
                0 if &s[7..30] == b"EL TORITO SPECIFICATION" => {
                    self.catalog = super::records::get_u32_le(&s, 71).map(Lba);
                }
                _ => match VolumeDescriptor::decode(&s) {
                    Some(vd) if vd.kind == VdKind::Primary && pvd.is_none() => pvd = Some(vd),
                    Some(vd) if vd.kind == VdKind::Joliet && joliet.is_none() => joliet = Some(vd),
                    _ => {}
                },
            }
        }
        let pvd = pvd.ok_or_else(not_iso)?;
        if pvd.root.flags & flags::DIRECTORY == 0 {
            return Err(self.corrupt("root directory record is not a directory"));
        }
        Ok((pvd, joliet))
    }

    /// Rock Ridge is in use if the root's "." record starts with SUSP `SP` (SUSP 5.3).
    fn rock_ridge_skip(&self) -> Result<Option<usize>, IsoError> {
        let first = self.read_at(
            self.root.extent.byte_offset(),
            SECTOR.min(self.root.data_len as usize),
        )?;
        let Some((dot, _)) = DirRecord::decode(&first) else {
            return Ok(None);
        };
        let su = &dot.system_use;
        Ok(
            (su.len() >= 7 && &su[..2] == b"SP" && su[4] == 0xBE && su[5] == 0xEF)
                .then(|| usize::from(su[6])),
        )
    }

    /// Lists a directory (`""` or `"/"` is the root).
    pub fn read_dir(&self, iso_path: &str) -> Result<Vec<IsoDirEntry>, IsoError> {
        let dir = self.resolve(iso_path)?;
        if dir.kind != IsoEntryKind::Dir {
            return Err(self.lookup_err(iso_path, "not a directory"));
        }
        self.entries(dir.extent)
    }

    /// Finds a regular file and returns its single extent; `None` if the path does not exist.
    pub fn lookup(&self, iso_path: &str) -> Result<Option<IsoExtent>, IsoError> {
        match self.entry(iso_path)? {
            Some(e) => self.file_extent(iso_path, &e).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the directory at `iso_path` once, for many lookups by name with
    /// [`IsoReader::lookup_in`]; `None` if it does not exist. Each `lookup` resolves from the
    /// root and parses every directory on the way again: for the 16,000 packs of a hostile
    /// 0.9 MB ISO that was quadratic, 26 s of CPU (issue #20).
    pub fn open_dir(&self, iso_path: &str) -> Result<Option<IsoDir>, IsoError> {
        let Some(dir) = self.entry(iso_path)? else {
            return Ok(None);
        };
        if dir.kind != IsoEntryKind::Dir {
            return Err(self.lookup_err(iso_path, "not a directory"));
        }
        let fold_case = self.names == Names::Plain;
        let mut by_name = HashMap::new();
        for e in self.entries(dir.extent)? {
            let key = match fold_case {
                true => e.name.to_ascii_lowercase(),
                false => e.name.clone(),
            };
            // Of equal names the first stands, as in `resolve`.
            by_name.entry(key).or_insert(e);
        }
        Ok(Some(IsoDir {
            path: iso_path.trim_end_matches('/').to_string(),
            by_name,
            fold_case,
        }))
    }

    /// Finds regular file `name` in `dir`: what `lookup` of `dir/name` answers.
    pub fn lookup_in(&self, dir: &IsoDir, name: &str) -> Result<Option<IsoExtent>, IsoError> {
        let found = match dir.fold_case {
            true => dir.by_name.get(&name.to_ascii_lowercase()),
            false => dir.by_name.get(name),
        };
        match found {
            Some(e) => self
                .file_extent(&format!("{}/{name}", dir.path), e)
                .map(Some),
            None => Ok(None),
        }
    }

    /// The single extent of `e`, found at `iso_path`, when it is a regular file.
    fn file_extent(&self, iso_path: &str, e: &IsoDirEntry) -> Result<IsoExtent, IsoError> {
        match (e.kind, e.multi_extent) {
            (IsoEntryKind::File, false) => Ok(e.extent),
            (IsoEntryKind::File, true) => {
                Err(self.lookup_err(iso_path, "recorded in several extents"))
            }
            _ => Err(self.lookup_err(iso_path, "not a regular file")),
        }
    }

    /// Finds any entry by path; `None` if it does not exist.
    pub fn entry(&self, iso_path: &str) -> Result<Option<IsoDirEntry>, IsoError> {
        match self.resolve(iso_path) {
            Ok(e) => Ok(Some(e)),
            Err(IsoError::Lookup { why: NOT_FOUND, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lookup_err(&self, path: &str, why: &'static str) -> IsoError {
        IsoError::Lookup {
            iso: self.path.clone(),
            path: path.to_string(),
            why,
        }
    }

    fn resolve(&self, iso_path: &str) -> Result<IsoDirEntry, IsoError> {
        let mut cur = self.entry_of(&self.root, String::new())?;
        for part in iso_path.split('/').filter(|p| !p.is_empty()) {
            if cur.kind != IsoEntryKind::Dir {
                return Err(self.lookup_err(iso_path, NOT_FOUND));
            }
            let entries = self.entries(cur.extent)?;
            let found = entries.into_iter().find(|e| match self.names {
                Names::Plain => e.name.eq_ignore_ascii_case(part),
                _ => e.name == part,
            });
            cur = found.ok_or_else(|| self.lookup_err(iso_path, NOT_FOUND))?;
        }
        Ok(cur)
    }

    /// Parses all records of a directory extent.
    fn entries(&self, dir: IsoExtent) -> Result<Vec<IsoDirEntry>, IsoError> {
        if dir.len > u64::from(MAX_DIR_LEN) {
            return Err(self.corrupt(format!("directory of {} bytes at {}", dir.len, dir.offset)));
        }
        let data = self.read_at(dir.offset, dir.len as usize)?;
        let mut out: Vec<IsoDirEntry> = Vec::new();
        let mut continues = false;
        for sector in data.chunks(SECTOR) {
            let mut at = 0;
            while at < sector.len() && sector[at] != 0 {
                let Some((rec, len)) = DirRecord::decode(&sector[at..]) else {
                    return Err(self.corrupt(format!(
                        "bad directory record at {}",
                        dir.offset + at as u64
                    )));
                };
                at += len;
                if rec.ident == [0] || rec.ident == [1] {
                    continue;
                }
                let multi = rec.flags & flags::MULTI_EXTENT != 0;
                if continues {
                    // later extents of a multi-extent file: the first record stands for all
                    continues = multi;
                    if let Some(last) = out.last_mut() {
                        last.extent.len += u64::from(rec.data_len);
                    }
                    continue;
                }
                continues = multi;
                let name = self.decode_name(&rec.ident);
                let mut e = self.entry_of(&rec, name)?;
                e.multi_extent = multi;
                out.push(e);
            }
        }
        Ok(out)
    }

    fn decode_name(&self, ident: &[u8]) -> String {
        match self.names {
            Names::Joliet => decode_joliet(ident),
            _ => strip_version(&String::from_utf8_lossy(ident)).to_string(),
        }
    }

    /// Builds an entry from a record, reading Rock Ridge entries (and continuations).
    fn entry_of(&self, rec: &DirRecord, fallback_name: String) -> Result<IsoDirEntry, IsoError> {
        let offset = rec.extent.byte_offset();
        let is_dir = rec.flags & flags::DIRECTORY != 0;
        if is_dir || rec.data_len > 0 {
            let end = offset.checked_add(u64::from(rec.data_len));
            if end.is_none_or(|e| e > self.len) {
                return Err(self.corrupt(format!("extent of {fallback_name:?} lies past the end")));
            }
        }
        let mut e = IsoDirEntry {
            name: fallback_name,
            kind: if is_dir {
                IsoEntryKind::Dir
            } else {
                IsoEntryKind::File
            },
            extent: IsoExtent {
                offset,
                len: u64::from(rec.data_len),
            },
            mode: None,
            mtime: rec.date.0,
            symlink: None,
            multi_extent: false,
        };
        if let Names::RockRidge { skip } = self.names {
            let rr = self.rock_ridge(rec, skip)?;
            if let Some(n) = rr.name {
                e.name = String::from_utf8_lossy(&n).into_owned();
            }
            e.mode = rr.mode;
            e.mtime = rr.mtime.unwrap_or(e.mtime);
            if rr.mode.is_some_and(|m| m & 0o170_000 == S_IFLNK) || rr.symlink.is_some() {
                e.kind = IsoEntryKind::Symlink;
                e.symlink = rr.symlink;
            }
        }
        Ok(e)
    }

    fn rock_ridge(&self, rec: &DirRecord, skip: usize) -> Result<RrInfo, IsoError> {
        let mut rr = RrInfo::default();
        rr.parse(rec.system_use.get(skip..).unwrap_or_default());
        let mut hops = 0;
        while let Some((block, off, len)) = rr.continuation {
            hops += 1;
            if hops > MAX_CE_HOPS || len as usize > SECTOR || off as usize >= SECTOR {
                return Err(self.corrupt("Rock Ridge continuation chain too long or too large"));
            }
            let at = Lba(block).byte_offset() + u64::from(off);
            let area = self.read_at(at, len as usize)?;
            rr.parse(&area);
        }
        Ok(rr)
    }

    /// El Torito boot entries (platform id, 512-byte sector count, extent start), if bootable.
    pub fn boot_entries(&self) -> Result<Vec<(u8, u16, u64)>, IsoError> {
        let Some(cat) = self.catalog else {
            return Ok(Vec::new());
        };
        let s = self.read_at(cat.byte_offset(), SECTOR)?;
        let entries = el_torito::decode_catalog(&s)
            .ok_or_else(|| self.corrupt("bad El Torito boot catalog"))?;
        Ok(entries
            .into_iter()
            .map(|e| (e.platform, e.sector_count, e.load_rba.byte_offset()))
            .collect())
    }
}

const NOT_FOUND: &str = "no such file or directory";
