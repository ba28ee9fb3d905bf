//! The initramfs being assembled: a sorted map from path to node, written out as cpio once
//! everything is in. Paths are relative (`usr/bin/ls`); adding a path first follows the
//! symlinks already in the tree, so a file added as `bin/busybox` lands in `usr/bin` when the
//! captured root's `/bin` is a link there.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use super::cpio::{CpioWriter, DeviceKind};
use super::rootfs::components;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// One initramfs entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        perm: u32,
    },
    File {
        source: Source,
        perm: u32,
    },
    Symlink {
        target: String,
    },
    Device {
        kind: DeviceKind,
        perm: u32,
        major: u32,
        minor: u32,
    },
}

/// The initramfs contents.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Self {
        Tree::default()
    }

    /// Follows the tree's own symlinks through `path`'s parents (not its last component).
    pub fn resolve_parent(&self, path: &str) -> String {
        let mut comps = components(path);
        let Some(last) = comps.pop() else {
            return String::new();
        };
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = comps.into_iter().rev().collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == "." {
                continue;
            }
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            if let Some(Node::Symlink { target }) = self.nodes.get(&done.join("/")) {
                hops += 1;
                if hops > 40 {
                    break;
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(components(target).into_iter().rev());
            }
        }
        done.push(last);
        done.join("/")
    }

    /// Creates `path` and its missing parents as directories (mode 0755).
    pub fn mkdir_all(&mut self, path: &str) {
        let resolved = self.resolve_parent(path);
        let mut prefix = String::new();
        for c in components(&resolved) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(&c);
            self.nodes
                .entry(prefix.clone())
                .or_insert(Node::Dir { perm: 0o755 });
        }
    }

    /// Adds `node` at `path` (parents created, tree symlinks followed). A later node at the
    /// same path replaces an earlier one, except that a directory is never replaced.
    pub fn insert(&mut self, path: &str, node: Node) -> String {
        let resolved = self.resolve_parent(path);
        if let Some((parent, _)) = resolved.rsplit_once('/') {
            self.mkdir_all(parent);
        }
        match (self.nodes.get(&resolved), &node) {
            (Some(Node::Dir { .. }), _) => {}
            _ => {
                self.nodes.insert(resolved.clone(), node);
            }
        }
        resolved
    }

    /// True when `path` (after following the tree's links in its parents) exists.
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(&self.resolve_parent(path))
    }

    /// The node at exactly `path`.
    #[cfg(test)]
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Writes the tree as a newc archive (parents before children: the map is sorted and a
    /// parent is a prefix of its children).
    pub fn write_cpio<W: Write>(&self, out: W, mtime: u32) -> io::Result<(W, u64)> {
        self.write_cpio_of(self.nodes.keys(), out, mtime)
    }

    /// The entries in `parts` groups (at least 1), each a whole archive of its own for
    /// `write_cpio_of`, to be compressed in parallel and unpacked one after the other (the
    /// kernel takes concatenated archives, compressed or not): the first group holds every
    /// directory, symlink and device node, so a later group's files always find their parents;
    /// each file goes to one of the other groups by a hash of its path. The same file always
    /// lands in the same group, whatever else changed, so a refresh finds most groups as they
    /// were and reuses their compressed bytes (docs/RESCUE.md). Groups may be empty.
    pub fn split(&self, parts: usize) -> Vec<Vec<&String>> {
        let parts = parts.max(1);
        let mut groups: Vec<Vec<&String>> = vec![Vec::new(); parts];
        for (path, node) in &self.nodes {
            let group = match node {
                Node::File { .. } if parts > 1 => {
                    let h = blake3::hash(path.as_bytes());
                    let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or_default());
                    1 + (n % (parts as u64 - 1)) as usize
                }
                _ => 0,
            };
            groups[group].push(path);
        }
        groups
    }

    /// Bytes of the files among `paths` (what compressing them costs).
    pub fn bytes_of(&self, paths: &[&String]) -> u64 {
        paths
            .iter()
            .map(|p| match self.nodes.get(*p) {
                Some(Node::File {
                    source: Source::Bytes(b),
                    ..
                }) => b.len() as u64,
                Some(Node::File {
                    source: Source::Host(h),
                    ..
                }) => std::fs::metadata(h).map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }

    /// Writes the entries at `paths` (each one of this tree's, parents first) as a newc archive.
    pub fn write_cpio_of<'a, W: Write>(
        &self,
        paths: impl IntoIterator<Item = &'a String>,
        out: W,
        mtime: u32,
    ) -> io::Result<(W, u64)> {
        let mut w = CpioWriter::new(out, mtime);
        for path in paths {
            let Some(node) = self.nodes.get(path) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("initramfs entry {path}: not in the tree"),
                ));
            };
            let r = match node {
                Node::Dir { perm } => w.dir(path, *perm),
                Node::Symlink { target } => w.symlink(path, target),
                Node::Device {
                    kind,
                    perm,
                    major,
                    minor,
                } => w.device(path, *kind, *perm, *major, *minor),
                Node::File {
                    source: Source::Bytes(b),
                    perm,
                } => w.file(path, *perm, b.len() as u64, &mut &b[..]),
                Node::File {
                    source: Source::Host(p),
                    perm,
                } => std::fs::File::open(p).and_then(|mut f| {
                    let len = f.metadata()?.len();
                    w.file(path, *perm, len, &mut f)
                }),
            };
            r.map_err(|e| io::Error::new(e.kind(), format!("initramfs entry {path}: {e}")))?;
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_follow_links_already_in_the_tree() {
        let mut t = Tree::new();
        t.insert(
            "bin",
            Node::Symlink {
                target: "usr/bin".into(),
            },
        );
        let at = t.insert(
            "bin/busybox",
            Node::File {
                source: Source::Bytes(b"x".to_vec()),
                perm: 0o755,
            },
        );
        assert_eq!(at, "usr/bin/busybox");
        assert!(t.get("usr").is_some());
        assert!(t.contains("/bin/busybox"));
        // A directory is never replaced by a later node.
        t.insert("usr", Node::Symlink { target: "x".into() });
        assert_eq!(t.get("usr"), Some(&Node::Dir { perm: 0o755 }));
    }

    #[test]
    fn split_puts_every_non_file_first_and_each_file_by_its_path() {
        let mut t = Tree::new();
        let file = |n: usize| Node::File {
            source: Source::Bytes(vec![7; n]),
            perm: 0o644,
        };
        for i in 0..40 {
            t.insert(&format!("d{}/f{i}", i % 3), file(100 + i));
        }
        t.insert(
            "z",
            Node::Symlink {
                target: "d0".into(),
            },
        );
        let groups = t.split(5);
        assert_eq!(groups.len(), 5);
        fn names<'a>(g: &[&'a String]) -> Vec<&'a str> {
            g.iter().map(|p| p.as_str()).collect()
        }
        assert_eq!(names(&groups[0]), ["d0", "d1", "d2", "z"]);
        // 40 files over 4 groups by path: none is left empty.
        assert!(groups[1..].iter().all(|g| !g.is_empty()), "{groups:?}");
        // Each group is a whole archive, and together they hold every entry once.
        let mut all = 0;
        for g in &groups {
            let (out, _) = t.write_cpio_of(g.iter().copied(), Vec::new(), 0).unwrap();
            assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
            all += g.len();
        }
        assert_eq!(all, t.len());
        // A file changed, added or removed moves no other file: the groups without it stay.
        let before: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(|p| p.to_string()).collect())
            .collect();
        t.insert("d1/f7", file(5000));
        t.insert("d2/new", file(10));
        let after = t.split(5);
        let moved = (1..5)
            .filter(|&i| {
                names(&after[i]) != before[i].iter().map(String::as_str).collect::<Vec<_>>()
            })
            .count();
        assert!(moved <= 1, "only the new file's group changes: {after:?}");
        assert_eq!(t.split(0).len(), 1);
    }

    #[test]
    fn cpio_lists_parents_first() {
        let mut t = Tree::new();
        t.insert(
            "a/b/c",
            Node::File {
                source: Source::Bytes(vec![1]),
                perm: 0o644,
            },
        );
        t.insert("a-b", Node::Dir { perm: 0o700 });
        let (out, len) = t.write_cpio(Vec::new(), 0).unwrap();
        assert_eq!(out.len() as u64, len);
        let text = String::from_utf8_lossy(&out);
        let pos = |n: &str| text.find(&format!("{n}\0")).unwrap();
        assert!(pos("a") < pos("a/b") && pos("a/b") < pos("a/b/c"));
    }
}
