//! How sizes and counts are shown to people, the same everywhere: binary units, one decimal;
//! a noun that agrees with its count; ids and hashes as lower-case hex.

/// `512 B`, `1.5 KiB`, `256.0 MiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1 pack`, `2 packs`, `0 entries`: `n` and the noun in the number it takes (issue #24: "1
/// packs"). `plural` is the noun's plural, given whole (`entries`, `directories`).
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Lower-case hex of `bytes` (ids, hashes and keys in messages and object names).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn nouns_agree_with_their_count() {
        assert_eq!(super::count(1u64, "pack", "packs"), "1 pack");
        assert_eq!(super::count(0u64, "pack", "packs"), "0 packs");
        assert_eq!(super::count(2u32, "entry", "entries"), "2 entries");
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(256 << 20), "256.0 MiB");
    }
}
