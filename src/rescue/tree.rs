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
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Writes the tree as a newc archive (parents before children: the map is sorted and a
    /// parent is a prefix of its children).
    pub fn write_cpio<W: Write>(&self, out: W, mtime: u32) -> io::Result<(W, u64)> {
        let mut w = CpioWriter::new(out, mtime);
        for (path, node) in &self.nodes {
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
