//! The subvolumes of a mounted btrfs filesystem (docs/FORMAT.md §9.2 `BtrfsVolume`), read with
//! btrfs-progs' `btrfs subvolume list` and `get-default`: the maintained interface to the root
//! tree (its ROOT_REF walk and INO_LOOKUP path resolution are what we would otherwise
//! re-implement over BTRFS_IOC_TREE_SEARCH). Needs root, like the capture of a system.
//!
//! `list -a` prints every subvolume's path from the top level, with `<FS_TREE>/` in front of
//! those outside the subvolume the given path is in; `-p` adds the parent id, `-r` lists the
//! read-only ones.

use std::path::Path;
use std::process::Command;

use super::record::{BtrfsSubvolume, BtrfsVolume};

/// One line of `btrfs subvolume list -a -p`: (id, path from the top level).
fn parse_line(line: &str) -> Option<(u64, String)> {
    let rest = line.strip_prefix("ID ")?;
    let id: u64 = rest.split_whitespace().next()?.parse().ok()?;
    // The path is the rest of the line after the first " path " (it may hold spaces).
    let at = line.find(" path ")?;
    let path = &line[at + " path ".len()..];
    let path = path.strip_prefix("<FS_TREE>/").unwrap_or(path);
    let path = path.trim_matches('/');
    (!path.is_empty()).then(|| (id, path.to_string()))
}

/// Parses `list -a -p` and `list -a -r` output and the id `get-default` printed into the
/// record: parents before children.
pub fn parse(list: &str, readonly: &str, default_id: u64, uuid: &str) -> BtrfsVolume {
    let ro: Vec<u64> = readonly
        .lines()
        .filter_map(parse_line)
        .map(|(id, _)| id)
        .collect();
    let mut subvolumes: Vec<BtrfsSubvolume> = list
        .lines()
        .filter_map(parse_line)
        .map(|(id, path)| BtrfsSubvolume {
            id,
            readonly: ro.contains(&id),
            path,
        })
        .collect();
    subvolumes.sort_by(|a, b| {
        let depth = |p: &str| p.matches('/').count();
        (depth(&a.path), &a.path).cmp(&(depth(&b.path), &b.path))
    });
    let default_path = subvolumes
        .iter()
        .find(|s| s.id == default_id)
        .map(|s| s.path.clone())
        .unwrap_or_default();
    BtrfsVolume {
        uuid: uuid.to_string(),
        subvolumes,
        default_path,
    }
}

/// The id in `btrfs subvolume get-default` output (`ID 5 (FS_TREE)`, `ID 256 gen 7 … path @`).
fn parse_default(out: &str) -> Option<u64> {
    out.trim()
        .strip_prefix("ID ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn btrfs(args: &[&str], dir: &Path) -> Result<String, String> {
    let out = Command::new("btrfs")
        .args(args)
        .arg(dir)
        .output()
        .map_err(|e| format!("running btrfs (btrfs-progs): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "btrfs {} {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The subvolumes of the btrfs filesystem `uuid` mounted at `dir`.
pub fn subvolumes(dir: &Path, uuid: &str) -> Result<BtrfsVolume, String> {
    let list = btrfs(&["subvolume", "list", "-a", "-p"], dir)?;
    let ro = btrfs(&["subvolume", "list", "-a", "-r"], dir)?;
    let def = btrfs(&["subvolume", "get-default"], dir)?;
    let default_id = parse_default(&def)
        .ok_or_else(|| format!("btrfs subvolume get-default printed {:?}", def.trim()))?;
    Ok(parse(&list, &ro, default_id, uuid))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real output (btrfs-progs 6.2) with @ mounted: @ and snap outside it, @/home and a
    // nested subvolume with a space inside.
    const LIST: &str = "\
ID 256 gen 7 parent 5 top level 5 path <FS_TREE>/@
ID 257 gen 7 parent 256 top level 256 path @/home
ID 258 gen 7 parent 256 top level 256 path @/var/lib/my vol
ID 259 gen 7 parent 5 top level 5 path <FS_TREE>/snap
";
    const RO: &str = "ID 259 gen 7 top level 5 path <FS_TREE>/snap\n";

    #[test]
    fn list_output_becomes_paths_from_the_top_level() {
        let v = parse(LIST, RO, 256, "u");
        let got: Vec<(u64, &str, bool)> = v
            .subvolumes
            .iter()
            .map(|s| (s.id, s.path.as_str(), s.readonly))
            .collect();
        assert_eq!(
            got,
            vec![
                (256, "@", false),
                (259, "snap", true),
                (257, "@/home", false),
                (258, "@/var/lib/my vol", false)
            ]
        );
        assert_eq!(v.default_path, "@");
        assert_eq!(parse(LIST, "", 5, "u").default_path, "");
    }

    #[test]
    fn get_default_output_is_parsed() {
        assert_eq!(parse_default("ID 5 (FS_TREE)\n"), Some(5));
        assert_eq!(
            parse_default("ID 256 gen 7 top level 5 path @\n"),
            Some(256)
        );
        assert_eq!(parse_default("nonsense"), None);
        assert_eq!(parse_line("ID x gen 1 path a"), None);
    }
}
