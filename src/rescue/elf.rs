//! Just enough of ELF (System V gABI, "Object Files" and "Program Loading") to ship a program
//! with what it needs: the interpreter (`PT_INTERP`), the libraries it names (`DT_NEEDED`) and
//! where to look for them (`DT_RUNPATH`, `DT_RPATH`), and a named section's bytes (a kernel
//! module's `.modinfo`). 64-bit little-endian objects only (x86-64, aarch64, riscv64).
//!
//! Input comes from the captured root: every offset is checked before use.

use std::fmt;

/// What a dynamic loader needs to run an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `e_machine`, to reject a library of another architecture found on the search path.
    pub machine: u16,
    /// `PT_INTERP`: the dynamic loader's absolute path.
    pub interp: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` entries (searched after `LD_LIBRARY_PATH`).
    pub runpath: Vec<String>,
    /// `DT_RPATH` entries (searched first, and only when there is no `DT_RUNPATH`).
    pub rpath: Vec<String>,
}

/// Why bytes could not be read as an ELF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// No `\x7fELF` magic: a script or data.
    NotElf,
    /// ELF, but a class or byte order we do not read.
    Unsupported(&'static str),
    /// A header, table or string points outside the file.
    Malformed(&'static str),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not an ELF file"),
            ElfError::Unsupported(what) => write!(f, "unsupported ELF: {what}"),
            ElfError::Malformed(what) => write!(f, "malformed ELF: {what}"),
        }
    }
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// ELF64 header offsets (gABI "ELF Header").
const E_MACHINE: usize = 0x12;
const E_PHOFF: usize = 0x20;
const E_SHOFF: usize = 0x28;
const E_PHENTSIZE: usize = 0x36;
const E_PHNUM: usize = 0x38;
const E_SHENTSIZE: usize = 0x3a;
const E_SHNUM: usize = 0x3c;
const E_SHSTRNDX: usize = 0x3e;
const EHDR_LEN: usize = 0x40;
const PHDR_LEN: usize = 56;
const SHDR_LEN: usize = 64;

/// One program header (ELF64 "Program Header": p_type @0, p_offset @8, p_vaddr @16,
/// p_filesz @32).
#[derive(Debug, Clone, Copy)]
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// A parsed view of an ELF64 little-endian object.
pub struct Elf<'a> {
    data: &'a [u8],
    machine: u16,
}

impl<'a> Elf<'a> {
    /// Checks the identification bytes and the header's size.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        if data.len() < EHDR_LEN {
            return Err(ElfError::Malformed("short header"));
        }
        if data[4] != 2 {
            return Err(ElfError::Unsupported("32-bit class"));
        }
        if data[5] != 1 {
            return Err(ElfError::Unsupported("big-endian"));
        }
        let machine = u16_at(data, E_MACHINE).ok_or(ElfError::Malformed("header"))?;
        Ok(Elf { data, machine })
    }

    /// Interpreter, needed libraries and search paths.
    pub fn dynamic_info(&self) -> Result<DynamicInfo, ElfError> {
        let segments = self.segments()?;
        let mut info = DynamicInfo {
            machine: self.machine,
            ..DynamicInfo::default()
        };
        if let Some(s) = segments.iter().find(|s| s.kind == PT_INTERP) {
            let bytes = self.slice(s.offset, s.filesz, "PT_INTERP")?;
            info.interp = Some(c_string(bytes).ok_or(ElfError::Malformed("PT_INTERP"))?);
        }
        let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
            return Ok(info); // static
        };
        let table = self.slice(dynamic.offset, dynamic.filesz, "PT_DYNAMIC")?;
        let mut entries = Vec::new();
        for e in table.chunks_exact(16) {
            let tag = u64_at(e, 0).unwrap_or(DT_NULL);
            if tag == DT_NULL {
                break;
            }
            entries.push((tag, u64_at(e, 8).unwrap_or(0)));
        }
        let find = |tag| entries.iter().find(|e| e.0 == tag).map(|e| e.1);
        let strtab_vaddr = find(DT_STRTAB).ok_or(ElfError::Malformed("no DT_STRTAB"))?;
        let strsz = find(DT_STRSZ).ok_or(ElfError::Malformed("no DT_STRSZ"))?;
        let strtab_off =
            vaddr_to_offset(&segments, strtab_vaddr).ok_or(ElfError::Malformed("DT_STRTAB"))?;
        let strtab = self.slice(strtab_off, strsz, "string table")?;
        let string = |off: u64| {
            usize::try_from(off)
                .ok()
                .and_then(|o| strtab.get(o..))
                .and_then(c_string)
                .ok_or(ElfError::Malformed("dynamic string"))
        };
        for &(tag, val) in &entries {
            match tag {
                DT_NEEDED => info.needed.push(string(val)?),
                DT_RUNPATH => info.runpath.extend(split_path(&string(val)?)),
                DT_RPATH => info.rpath.extend(split_path(&string(val)?)),
                _ => {}
            }
        }
        Ok(info)
    }

    /// The bytes of the section called `name`, if the object has one.
    pub fn section(&self, name: &str) -> Result<Option<&'a [u8]>, ElfError> {
        let d = self.data;
        let (Some(shoff), Some(entsize), Some(num), Some(strndx)) = (
            u64_at(d, E_SHOFF),
            u16_at(d, E_SHENTSIZE),
            u16_at(d, E_SHNUM),
            u16_at(d, E_SHSTRNDX),
        ) else {
            return Err(ElfError::Malformed("header"));
        };
        if shoff == 0 || num == 0 {
            return Ok(None);
        }
        if usize::from(entsize) < SHDR_LEN {
            return Err(ElfError::Malformed("e_shentsize"));
        }
        let table = self.slice(
            shoff,
            u64::from(entsize) * u64::from(num),
            "section headers",
        )?;
        let header = |i: u16| &table[usize::from(i) * usize::from(entsize)..][..SHDR_LEN];
        if strndx >= num {
            return Err(ElfError::Malformed("e_shstrndx"));
        }
        // sh_name @0 (u32), sh_offset @24, sh_size @32.
        let names_hdr = header(strndx);
        let names = self.slice(
            u64_at(names_hdr, 24).unwrap_or(0),
            u64_at(names_hdr, 32).unwrap_or(0),
            "section names",
        )?;
        for i in 0..num {
            let h = header(i);
            let name_off = u32_at(h, 0).unwrap_or(0) as usize;
            if names.get(name_off..).and_then(c_string).as_deref() == Some(name) {
                let bytes = self.slice(
                    u64_at(h, 24).unwrap_or(0),
                    u64_at(h, 32).unwrap_or(0),
                    "section",
                )?;
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    fn segments(&self) -> Result<Vec<Segment>, ElfError> {
        let d = self.data;
        let (Some(phoff), Some(entsize), Some(num)) = (
            u64_at(d, E_PHOFF),
            u16_at(d, E_PHENTSIZE),
            u16_at(d, E_PHNUM),
        ) else {
            return Err(ElfError::Malformed("header"));
        };
        if num == 0 {
            return Ok(Vec::new());
        }
        if usize::from(entsize) < PHDR_LEN {
            return Err(ElfError::Malformed("e_phentsize"));
        }
        let table = self.slice(
            phoff,
            u64::from(entsize) * u64::from(num),
            "program headers",
        )?;
        Ok(table
            .chunks_exact(usize::from(entsize))
            .map(|p| Segment {
                kind: u32_at(p, 0).unwrap_or(0),
                offset: u64_at(p, 8).unwrap_or(0),
                vaddr: u64_at(p, 16).unwrap_or(0),
                filesz: u64_at(p, 32).unwrap_or(0),
            })
            .collect())
    }

    fn slice(&self, offset: u64, len: u64, what: &'static str) -> Result<&'a [u8], ElfError> {
        let start = usize::try_from(offset).map_err(|_| ElfError::Malformed(what))?;
        let len = usize::try_from(len).map_err(|_| ElfError::Malformed(what))?;
        start
            .checked_add(len)
            .and_then(|end| self.data.get(start..end))
            .ok_or(ElfError::Malformed(what))
    }
}

/// `key=value` strings of a kernel module's `.modinfo` section, NUL separated.
pub fn modinfo(section: &[u8]) -> Vec<(String, String)> {
    section
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn vaddr_to_offset(segments: &[Segment], vaddr: u64) -> Option<u64> {
    segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
        .map(|s| vaddr - s.vaddr + s.offset)
}

fn split_path(s: &str) -> Vec<String> {
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn c_string(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0)?;
    String::from_utf8(bytes[..end].to_vec()).ok()
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(off..off + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_host_program() {
        let bytes = std::fs::read("/usr/bin/ls").expect("/usr/bin/ls (coreutils) to parse");
        let elf = Elf::parse(&bytes).unwrap();
        let info = elf.dynamic_info().unwrap();
        assert!(
            info.interp.as_deref().unwrap_or("").contains("ld-linux"),
            "{info:?}"
        );
        assert!(
            info.needed.iter().any(|n| n.starts_with("libc.so")),
            "{info:?}"
        );
    }

    #[test]
    fn rejects_scripts_and_truncation() {
        assert_eq!(Elf::parse(b"#!/bin/sh\n").err(), Some(ElfError::NotElf));
        assert!(matches!(
            Elf::parse(b"\x7fELF\x02\x01"),
            Err(ElfError::Malformed(_))
        ));
        if let Ok(bytes) = std::fs::read("/usr/bin/ls") {
            // Cut inside the program headers: every reader must fail cleanly, never panic.
            for cut in [0x40, 0x80, 0x200, 0x1000] {
                if let Ok(elf) = Elf::parse(&bytes[..cut]) {
                    let _ = elf.dynamic_info();
                    let _ = elf.section(".modinfo");
                }
            }
        }
    }

    #[test]
    fn modinfo_pairs() {
        let v = modinfo(b"license=GPL\0firmware=a.bin\0\0depends=x,y\0");
        assert_eq!(v[1], ("firmware".into(), "a.bin".into()));
        assert_eq!(v[2], ("depends".into(), "x,y".into()));
    }
}
