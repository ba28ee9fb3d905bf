//! Joliet (Microsoft, 1995) names: UCS-2 big-endian identifiers of at most 64 characters for the
//! supplementary volume descriptor's directory hierarchy, which Windows and 7-Zip read. Also the
//! ISO 9660 names of the primary hierarchy (ECMA-119 7.5/7.6, level 2: 31 d-characters).
//! Both are derived from the Rock Ridge name and made unique within their directory.

use std::collections::HashSet;

/// Joliet spec 3.1: identifiers of at most 64 UCS-2 characters (versions not counted).
pub const JOLIET_MAX: usize = 64;
/// ECMA-119 7.5.1 at interchange level 2: a file identifier of at most 31 characters.
pub const ISO_MAX: usize = 31;

/// Joliet spec 3.2: characters not allowed in an identifier.
fn joliet_char(c: char) -> u16 {
    match c {
        '*' | '/' | ':' | ';' | '?' | '\\' => b'_' as u16,
        c if (c as u32) < 0x20 => b'_' as u16,
        c if (c as u32) > 0xFFFF => b'_' as u16, // outside UCS-2
        c => c as u16,
    }
}

/// Encodes UCS-2 big-endian.
pub fn ucs2(units: &[u16]) -> Vec<u8> {
    units.iter().flat_map(|u| u.to_be_bytes()).collect()
}

/// UCS-2 units of a name, before truncation.
fn joliet_units(name: &str) -> Vec<u16> {
    name.chars().map(joliet_char).collect()
}

/// The ISO 9660 d-character form of a name: upper case, others become `_`.
fn d_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

/// Makes names unique within one directory by replacing the end of the stem with `~N`.
pub struct Uniquifier<T> {
    seen: HashSet<Vec<T>>,
}

impl<T: Clone + Eq + std::hash::Hash + From<u8>> Uniquifier<T> {
    pub fn new() -> Self {
        Uniquifier {
            seen: HashSet::new(),
        }
    }

    /// Returns `stem + ext` truncated to `max`, or a `~N` variant if already taken.
    pub fn unique(&mut self, stem: &[T], ext: &[T], max: usize) -> Vec<T> {
        let ext = &ext[..ext.len().min(max / 2)];
        for n in 0u32.. {
            let suffix: Vec<T> = if n == 0 {
                Vec::new()
            } else {
                format!("~{n}").bytes().map(T::from).collect()
            };
            let keep = max.saturating_sub(ext.len() + suffix.len()).min(stem.len());
            let mut name: Vec<T> = stem[..keep].to_vec();
            name.extend(suffix);
            name.extend_from_slice(ext);
            if self.seen.insert(name.clone()) {
                return name;
            }
        }
        unreachable!("u32 suffixes exhausted")
    }
}

fn split_ext<T: PartialEq + From<u8> + Copy>(units: &[T], is_dir: bool) -> (&[T], &[T]) {
    let dot = T::from(b'.');
    match units.iter().rposition(|u| *u == dot) {
        Some(i) if !is_dir && i > 0 => (&units[..i], &units[i..]),
        _ => (units, &[]),
    }
}

/// The Joliet identifier of a file or directory (files get the `;1` version suffix).
pub fn joliet_name(name: &str, is_dir: bool, seen: &mut Uniquifier<u16>) -> Vec<u8> {
    let units = joliet_units(name);
    let (stem, ext) = split_ext(&units, is_dir);
    let mut out = seen.unique(stem, ext, JOLIET_MAX);
    if !is_dir {
        out.extend([b';' as u16, b'1' as u16]);
    }
    ucs2(&out)
}

/// The ISO 9660 identifier of a file (`NAME.EXT;1`, 7.5) or directory (`NAME`, 7.6).
pub fn iso_name(name: &str, is_dir: bool, seen: &mut Uniquifier<u8>) -> Vec<u8> {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if !is_dir && i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let stem = d_chars(stem).into_bytes();
    let ext = if is_dir {
        Vec::new()
    } else {
        let mut e = vec![b'.'];
        e.extend(d_chars(ext).bytes());
        e
    };
    let mut out = seen.unique(&stem, &ext, ISO_MAX);
    if !is_dir {
        out.extend_from_slice(b";1");
    }
    out
}

/// The Joliet volume identifier: 16 UCS-2 characters (32 bytes).
pub fn joliet_volume_id(id: &str) -> Vec<u8> {
    let units: Vec<u16> = joliet_units(id).into_iter().take(16).collect();
    ucs2(&units)
}

/// Decodes a UCS-2 BE identifier, dropping a `;1` version suffix.
pub fn decode_joliet(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    let s = String::from_utf16_lossy(&units);
    strip_version(&s).to_string()
}

/// Drops a `;N` version and a trailing `.` of an extension-less ISO name.
pub fn strip_version(s: &str) -> &str {
    let s = s.split_once(';').map_or(s, |(n, _)| n);
    s.strip_suffix('.').unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_names_are_d_characters_level_2() {
        let mut u = Uniquifier::new();
        assert_eq!(iso_name("README.TXT", false, &mut u), b"README.TXT;1");
        assert_eq!(
            iso_name("pack-000000.opk", false, &mut u),
            b"PACK_000000.OPK;1"
        );
        assert_eq!(iso_name("osimage", true, &mut u), b"OSIMAGE");
        assert_eq!(iso_name("Osimage", true, &mut u), b"OSIMAGE~1");
        let long = iso_name(&"x".repeat(100), false, &mut u);
        assert_eq!(long.len(), ISO_MAX + 2);
        assert_eq!(iso_name("noext", false, &mut u), b"NOEXT.;1");
    }

    #[test]
    fn joliet_names_are_ucs2_and_bounded() {
        let mut u = Uniquifier::new();
        let n = joliet_name("grub.cfg", false, &mut u);
        assert_eq!(decode_joliet(&n), "grub.cfg");
        assert_eq!(&n[..4], &[0, b'g', 0, b'r']);
        let long = format!("{}.txt", "é".repeat(100));
        let a = joliet_name(&long, false, &mut u);
        let b = joliet_name(&long, false, &mut u);
        assert_eq!(a.len(), (JOLIET_MAX + 2) * 2);
        assert_ne!(a, b);
        assert!(decode_joliet(&a).ends_with(".txt"));
        assert!(decode_joliet(&b).ends_with("~1.txt"));
        assert_eq!(decode_joliet(&joliet_name("a:b", true, &mut u)), "a_b");
    }
}
