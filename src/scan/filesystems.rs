//! Which filesystems a capture takes (DESIGN.md, "Scope of a capture"): the root's own, plus
//! every local block-backed filesystem visibly mounted under the root, unless
//! `one_file_system` narrows it to the root's own.

use std::collections::HashMap;

use crate::format::manifest::CapturedFs;

use super::exclude::{Excludes, contents_skipped};
use super::mountinfo::{Mount, is_local_block};

/// The filesystems chosen for a capture and the mount points the walk will meet.
#[derive(Clone, Debug, Default)]
pub struct FsPlan {
    /// Index 0 is the root's own filesystem (mount point "").
    pub filesystems: Vec<CapturedFs>,
    /// Every visible mount point strictly under the root (relative path), with the index of its
    /// filesystem in `filesystems` when it is captured, `None` when the walk stops there.
    pub mount_points: HashMap<Vec<u8>, Option<u32>>,
}

/// What `plan` needs to know besides the mount table.
pub struct PlanInput<'a> {
    /// The canonical absolute capture root.
    pub root: &'a [u8],
    /// `st_dev` of the root directory.
    pub root_dev: u64,
    pub one_file_system: bool,
    pub excludes: &'a Excludes,
    /// Canonical absolute mount points whose filesystems are left out whole (`scan_with`).
    pub left_out: &'a [Vec<u8>],
}

/// Chooses the filesystems. `dev_of` stats an absolute path (following the mount on it) and
/// gives its `st_dev`, or `None` if it cannot be reached.
pub fn plan(input: &PlanInput, mounts: &[Mount], dev_of: impl Fn(&[u8]) -> Option<u64>) -> FsPlan {
    let visible: Vec<&Mount> = (0..mounts.len())
        .filter(|&i| is_visible(mounts, i))
        .map(|i| &mounts[i])
        .collect();
    let own = visible
        .iter()
        .filter(|m| is_under(input.root, &m.mount_point))
        .max_by_key(|m| m.mount_point.len());
    let mut plan = FsPlan {
        filesystems: vec![CapturedFs {
            mount_point: Vec::new(),
            fstype: own.map_or_else(|| "unknown".to_string(), |m| m.fstype.clone()),
            source: own.map_or_else(String::new, |m| m.source.clone()),
            dev: input.root_dev,
        }],
        mount_points: HashMap::new(),
    };
    let mut under: Vec<(Vec<u8>, &Mount)> = visible
        .iter()
        .filter(|m| m.mount_point != input.root && is_under(&m.mount_point, input.root))
        .map(|m| (relative(&m.mount_point, input.root), *m))
        .collect();
    // Parents before children, so a mount under a mount that is left out is left out too.
    under.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, mount) in under {
        let wanted = !input.one_file_system
            && is_local_block(&mount.fstype)
            && !input.left_out.contains(&mount.mount_point)
            && plan.reachable(&rel, input.excludes);
        let dev = dev_of(&mount.mount_point).filter(|_| wanted);
        // A device already captured (a second mount, or a bind mount) is walked only once.
        let chosen = dev
            .filter(|dev| plan.filesystems.iter().all(|fs| fs.dev != *dev))
            .map(|dev| {
                plan.filesystems.push(CapturedFs {
                    mount_point: rel.clone(),
                    fstype: mount.fstype.clone(),
                    source: mount.source.clone(),
                    dev,
                });
                plan.filesystems.len() as u32 - 1
            });
        plan.mount_points.insert(rel, chosen);
    }
    plan
}

impl FsPlan {
    /// Whether the walk will reach the directory `rel` and look inside it: no ancestor is a
    /// mount point left out, a run-time directory, or excluded.
    fn reachable(&self, rel: &[u8], excludes: &Excludes) -> bool {
        let ancestors = rel
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| &rel[..i]);
        !excludes.matches(rel, true)
            && ancestors.into_iter().all(|a| {
                !contents_skipped(a)
                    && !excludes.matches(a, true)
                    && self.mount_points.get(a) != Some(&None)
            })
    }
}

/// A mount is hidden when a mount listed after it sits on the same point or on one of its
/// ancestors, unless that later mount is one of its own parents (mounted first, listed later).
fn is_visible(mounts: &[Mount], i: usize) -> bool {
    let me = &mounts[i];
    let mut parents = Vec::new();
    let mut id = me.parent;
    while let Some(p) = mounts
        .iter()
        .find(|m| m.id == id && !parents.contains(&m.id))
    {
        parents.push(p.id);
        id = p.parent;
    }
    !mounts[i + 1..]
        .iter()
        .any(|later| is_under(&me.mount_point, &later.mount_point) && !parents.contains(&later.id))
}

/// Whether `path` is `base` or inside it, component-wise (`/a/bc` is not under `/a/b`).
pub fn is_under(path: &[u8], base: &[u8]) -> bool {
    match path.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest[0] == b'/' || base.ends_with(b"/"),
        None => false,
    }
}

/// `path` relative to `base` (which it is under), without a leading `/`.
pub fn relative(path: &[u8], base: &[u8]) -> Vec<u8> {
    let rest = &path[base.len()..];
    rest.strip_prefix(b"/").unwrap_or(rest).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::mountinfo::parse;

    const TABLE: &[u8] = b"\
22 27 0:21 / /proc rw - proc proc rw
27 1 254:0 / / rw - ext4 /dev/vda2 rw
28 27 254:1 / /boot rw - ext4 /dev/vda1 rw
29 28 254:3 / /boot/efi rw - vfat /dev/vda3 rw
30 27 0:30 / /tmp rw - tmpfs tmpfs rw
31 27 0:31 / /home/u/net rw - nfs4 srv:/home rw
32 31 254:5 / /home/u/net/inner rw - ext4 /dev/vda5 rw
33 27 254:6 / /mnt/old rw - ext4 /dev/vda6 rw
34 27 254:7 / /mnt rw - xfs /dev/vda7 rw
35 27 254:8 / /srv/a\\040b rw - xfs /dev/vda8 rw
36 27 254:1 / /mnt2 rw - ext4 /dev/vda1 rw
37 30 254:9 / /tmp/usb rw - vfat /dev/sdb1 rw
";

    /// The plan for `root`; with `left_out` 1, `/mnt`'s filesystem left out whole.
    fn run_leaving(root: &[u8], one_fs: bool, excludes: &[&str], left_out: usize) -> FsPlan {
        let mounts = parse(TABLE).unwrap();
        let p: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        let excludes = Excludes::new(&p, &[]).unwrap();
        let dev_of = |path: &[u8]| {
            let m = mounts.iter().rev().find(|m| m.mount_point == path)?;
            Some(m.dev)
        };
        let input = PlanInput {
            root,
            root_dev: 7,
            one_file_system: one_fs,
            excludes: &excludes,
            left_out: &[b"/mnt".to_vec()][..left_out],
        };
        plan(&input, &mounts, dev_of)
    }

    fn run(root: &[u8], one_fs: bool, excludes: &[&str]) -> FsPlan {
        run_leaving(root, one_fs, excludes, 0)
    }

    fn points(plan: &FsPlan) -> Vec<(String, String)> {
        let f = &plan.filesystems;
        f.iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(&f.mount_point).into_owned(),
                    f.fstype.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn root_with_boot_and_esp_is_one_capture() {
        let plan = run(b"/", false, &[]);
        let want = [
            ("", "ext4"),
            ("boot", "ext4"),
            ("boot/efi", "vfat"),
            ("mnt", "xfs"),
            ("srv/a b", "xfs"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(points(&plan), want);
        assert_eq!(plan.filesystems[0].source, "/dev/vda2");
        assert_eq!(plan.filesystems[0].dev, 7);
        assert_eq!(plan.filesystems[2].dev, rustix::fs::makedev(254, 3));
        // Walk stops: pseudo, tmpfs, network, and what is under them; a second mount of an
        // already captured device; a mount shadowed by a later one on its parent.
        for p in [
            "proc",
            "tmp",
            "home/u/net",
            "home/u/net/inner",
            "mnt2",
            "tmp/usb",
        ] {
            assert_eq!(plan.mount_points.get(p.as_bytes()), Some(&None), "{p}");
        }
        assert!(
            !plan.mount_points.contains_key(&b"mnt/old"[..]),
            "shadowed by /mnt"
        );
    }

    #[test]
    fn one_file_system_keeps_only_the_root() {
        let plan = run(b"/", true, &[]);
        assert_eq!(plan.filesystems.len(), 1);
        assert_eq!(plan.mount_points.get(&b"boot"[..]), Some(&None));
    }

    #[test]
    fn plain_directory_root_and_excluded_mounts() {
        let plan = run(b"/boot", false, &[]);
        assert_eq!(points(&plan)[0], ("".to_string(), "ext4".to_string()));
        assert_eq!(plan.filesystems[0].source, "/dev/vda1");
        assert_eq!(plan.filesystems[1].mount_point, b"efi");
        let plan = run(b"/srv", false, &["/a b/"]);
        assert_eq!(plan.filesystems.len(), 1);
        assert_eq!(plan.filesystems[0].source, "/dev/vda2");
    }

    #[test]
    fn a_left_out_mount_is_not_taken_and_its_mount_point_kept() {
        let plan = run_leaving(b"/", false, &[], 1);
        let mps: Vec<String> = points(&plan).into_iter().map(|(m, _)| m).collect();
        assert_eq!(mps, ["", "boot", "boot/efi", "srv/a b"]);
        assert_eq!(plan.mount_points.get(&b"mnt"[..]), Some(&None));
        assert!(run(b"/", false, &[]).mount_points[&b"mnt"[..]].is_some());
    }

    #[test]
    fn path_prefixes_are_component_wise() {
        assert!(is_under(b"/a/b", b"/a") && is_under(b"/a", b"/a") && is_under(b"/x", b"/"));
        assert!(!is_under(b"/ab", b"/a"));
        assert_eq!(relative(b"/a/b/c", b"/a"), b"b/c");
        assert_eq!(relative(b"/a/b", b"/"), b"a/b");
    }
}
