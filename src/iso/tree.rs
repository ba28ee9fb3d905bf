//! The directory tree of an [`IsoSpec`]: paths validated, parents implied, each node with its
//! three names (Rock Ridge, ISO 9660 level 2, Joliet) and its Rock Ridge entries. Sizes of
//! host files are taken here (one `stat` each); nothing is read.

use std::collections::HashMap;

use super::joliet::{Uniquifier, iso_name, joliet_name};
use super::rock_ridge::{self, S_IFDIR, S_IFLNK, S_IFREG};
use super::{IsoError, IsoFile, IsoSource, IsoSpec, MAX_FILE_SIZE};

/// Index of a node in [`Tree::nodes`]; the root is 0.
pub type NodeId = usize;

#[derive(Debug, Clone)]
pub enum Kind {
    Dir {
        /// Children, in the order of the ISO 9660 hierarchy (sorted by ISO name).
        children: Vec<NodeId>,
        /// Children sorted by Joliet name.
        joliet_children: Vec<NodeId>,
    },
    File {
        /// Index into `IsoSpec::files`.
        spec_index: usize,
        size: u64,
    },
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Node {
    /// The Rock Ridge (POSIX) name; empty for the root.
    pub name: String,
    pub parent: NodeId,
    pub mode: u32,
    pub mtime: i64,
    pub kind: Kind,
    pub iso_name: Vec<u8>,
    pub joliet_name: Vec<u8>,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }

    /// Mode with file type bits, for Rock Ridge `PX`.
    pub fn posix_mode(&self) -> u32 {
        match self.kind {
            Kind::Dir { .. } => S_IFDIR | (self.mode & 0o7777),
            Kind::File { .. } => S_IFREG | (self.mode & 0o7777),
            Kind::Symlink(_) => S_IFLNK | 0o777,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Checks the volume id: 1..=32 d-characters (ECMA-119 8.4.6, 7.4.1).
pub fn check_volume_id(id: &str) -> Result<(), IsoError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(IsoError::VolumeId(id.to_string()))
    }
}

fn components(path: &str) -> Result<Vec<&str>, IsoError> {
    let bad = |why| IsoError::BadPath {
        path: path.to_string(),
        why,
    };
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(bad("empty path"));
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    for p in &parts {
        match *p {
            "" => return Err(bad("empty path component")),
            "." | ".." => return Err(bad("'.' or '..' component")),
            p if p.len() > 255 => return Err(bad("component longer than 255 bytes")),
            p if p.contains('\0') => return Err(bad("NUL byte")),
            _ => {}
        }
    }
    Ok(parts)
}

impl Tree {
    /// Builds the tree, taking the size of each host file.
    pub fn build(spec: &IsoSpec) -> Result<Tree, IsoError> {
        check_volume_id(&spec.volume_id)?;
        let root_mtime = spec.files.iter().map(|f| f.mtime).max().unwrap_or(0);
        let mut b = Builder {
            tree: Tree {
                nodes: vec![new_dir(String::new(), 0, 0o755, root_mtime)],
            },
            index: HashMap::new(),
            explicit: vec![false],
        };
        for (i, f) in spec.files.iter().enumerate() {
            let parts = components(&f.path)?;
            let Some((leaf, dirs)) = parts.split_last() else {
                continue; // components() never returns an empty list
            };
            let parent = b.parents(f, dirs)?;
            let kind = source_kind(i, f)?;
            b.add(f, parent, leaf, kind)?;
        }
        let mut t = b.tree;
        t.name_and_sort();
        Ok(t)
    }

    fn push(&mut self, node: Node) -> NodeId {
        let parent = node.parent;
        self.nodes.push(node);
        let id = self.nodes.len() - 1;
        if let Kind::Dir { children, .. } = &mut self.nodes[parent].kind {
            children.push(id);
        }
        id
    }

    /// Gives every node its ISO and Joliet names (unique per directory) and sorts children.
    fn name_and_sort(&mut self) {
        for d in 0..self.nodes.len() {
            let Kind::Dir { children, .. } = &self.nodes[d].kind else {
                continue;
            };
            let mut kids = children.clone();
            // name in Rock Ridge order so that mangled names are deterministic
            kids.sort_by(|a, b| self.nodes[*a].name.cmp(&self.nodes[*b].name));
            let (mut iso_seen, mut jol_seen) = (Uniquifier::new(), Uniquifier::new());
            for &k in &kids {
                let (name, dir) = (self.nodes[k].name.clone(), self.nodes[k].is_dir());
                self.nodes[k].iso_name = iso_name(&name, dir, &mut iso_seen);
                self.nodes[k].joliet_name = joliet_name(&name, dir, &mut jol_seen);
            }
            let mut iso = kids.clone();
            iso.sort_by(|a, b| self.nodes[*a].iso_name.cmp(&self.nodes[*b].iso_name));
            let mut jol = kids;
            jol.sort_by(|a, b| self.nodes[*a].joliet_name.cmp(&self.nodes[*b].joliet_name));
            self.nodes[d].kind = Kind::Dir {
                children: iso,
                joliet_children: jol,
            };
        }
    }

    /// Directories in breadth-first order, children in the given hierarchy's order: the order
    /// of the path table (ECMA-119 6.9.1) and of directory extents.
    pub fn dirs_bfs(&self, joliet: bool) -> Vec<NodeId> {
        let mut order = vec![0];
        let mut i = 0;
        while i < order.len() {
            if let Kind::Dir {
                children,
                joliet_children,
            } = &self.nodes[order[i]].kind
            {
                let kids = if joliet { joliet_children } else { children };
                order.extend(kids.iter().copied().filter(|&k| self.nodes[k].is_dir()));
            }
            i += 1;
        }
        order
    }

    /// Children of a directory in the given hierarchy's order.
    pub fn children(&self, dir: NodeId, joliet: bool) -> &[NodeId] {
        match &self.nodes[dir].kind {
            Kind::Dir {
                children,
                joliet_children,
            } => {
                if joliet {
                    joliet_children
                } else {
                    children
                }
            }
            _ => &[],
        }
    }

    /// `PX` link count: 2 + subdirectories for a directory (find(1) relies on it), else 1.
    pub fn nlink(&self, n: NodeId) -> u32 {
        let subdirs = self
            .children(n, false)
            .iter()
            .filter(|&&k| self.nodes[k].is_dir())
            .count();
        if self.nodes[n].is_dir() {
            2 + subdirs as u32
        } else {
            1
        }
    }

    /// Rock Ridge entries of a node's own record (no `NM` for "." and "..").
    pub fn rr_entries(&self, n: NodeId, with_name: bool) -> Vec<Vec<u8>> {
        let node = &self.nodes[n];
        let mut e = vec![
            rock_ridge::px(node.posix_mode(), self.nlink(n)),
            rock_ridge::tf(node.mtime),
        ];
        if with_name {
            e.extend(rock_ridge::nm(node.name.as_bytes()));
        }
        if let Kind::Symlink(target) = &node.kind {
            e.extend(rock_ridge::sl(target));
        }
        e
    }

    /// Finds a node by its '/'-separated Rock Ridge path.
    pub fn find(&self, path: &str) -> Option<NodeId> {
        let mut cur = 0;
        for part in path
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
        {
            cur = *self
                .children(cur, false)
                .iter()
                .find(|&&k| self.nodes[k].name == part)?;
        }
        Some(cur)
    }
}

/// State while the tree is built: node lookup by (parent, name), and which directories were
/// given explicitly (an implied directory may still get its own entry, once).
struct Builder {
    tree: Tree,
    index: HashMap<(NodeId, String), NodeId>,
    explicit: Vec<bool>,
}

impl Builder {
    /// Finds or creates (mode 0755, the file's mtime) the parent directories of `f`.
    fn parents(&mut self, f: &IsoFile, dirs: &[&str]) -> Result<NodeId, IsoError> {
        let mut parent = 0;
        for d in dirs {
            parent = match self.index.get(&(parent, d.to_string())) {
                Some(&n) if self.tree.nodes[n].is_dir() => n,
                Some(_) => {
                    return Err(IsoError::BadPath {
                        path: f.path.clone(),
                        why: "a parent is not a directory",
                    });
                }
                None => {
                    let n = self
                        .tree
                        .push(new_dir(d.to_string(), parent, 0o755, f.mtime));
                    self.explicit.push(false);
                    self.index.insert((parent, d.to_string()), n);
                    n
                }
            };
        }
        Ok(parent)
    }

    /// Adds the leaf of `f` (`kind` `None` = a directory).
    fn add(
        &mut self,
        f: &IsoFile,
        parent: NodeId,
        leaf: &str,
        kind: Option<Kind>,
    ) -> Result<(), IsoError> {
        let key = (parent, leaf.to_string());
        match (self.index.get(&key).copied(), kind) {
            // an explicit directory entry for an implied directory sets its metadata
            (Some(n), None) if self.tree.nodes[n].is_dir() && !self.explicit[n] => {
                self.tree.nodes[n].mode = f.mode;
                self.tree.nodes[n].mtime = f.mtime;
                self.explicit[n] = true;
            }
            (Some(_), _) => return Err(IsoError::Duplicate(f.path.clone())),
            (None, kind) => {
                let mut node = new_dir(leaf.to_string(), parent, f.mode, f.mtime);
                if let Some(kind) = kind {
                    node.kind = kind;
                }
                let n = self.tree.push(node);
                self.explicit.push(true);
                self.index.insert(key, n);
            }
        }
        Ok(())
    }
}

/// The node kind of a spec entry (`None` for a directory); stats host files for their size.
fn source_kind(spec_index: usize, f: &IsoFile) -> Result<Option<Kind>, IsoError> {
    Ok(match &f.source {
        IsoSource::Dir => None,
        IsoSource::Symlink(target) => Some(Kind::Symlink(target.clone())),
        IsoSource::Bytes(b) => Some(file_kind(spec_index, b.len() as u64, &f.path)?),
        IsoSource::Placed { len, .. } => Some(file_kind(spec_index, *len, &f.path)?),
        IsoSource::Path(p) => {
            let md = std::fs::metadata(p).map_err(|e| IsoError::io("stat", p, e))?;
            if !md.is_file() {
                return Err(IsoError::BadPath {
                    path: f.path.clone(),
                    why: "source is not a regular file",
                });
            }
            Some(file_kind(spec_index, md.len(), &f.path)?)
        }
    })
}

fn new_dir(name: String, parent: NodeId, mode: u32, mtime: i64) -> Node {
    Node {
        name,
        parent,
        mode,
        mtime,
        kind: Kind::Dir {
            children: Vec::new(),
            joliet_children: Vec::new(),
        },
        iso_name: Vec::new(),
        joliet_name: Vec::new(),
    }
}

fn file_kind(spec_index: usize, size: u64, path: &str) -> Result<Kind, IsoError> {
    if size >= MAX_FILE_SIZE {
        return Err(IsoError::TooLarge {
            path: path.to_string(),
            size,
        });
    }
    Ok(Kind::File { spec_index, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, source: IsoSource) -> IsoFile {
        IsoFile {
            path: path.into(),
            source,
            mode: 0o644,
            mtime: 0,
        }
    }

    #[test]
    fn parents_are_implied_and_paths_validated() {
        let spec = IsoSpec {
            volume_id: "OSIMAGE".into(),
            files: vec![
                file("a/b/c.txt", IsoSource::Bytes(b"x".to_vec())),
                file("a/b", IsoSource::Dir),
                file("a/link", IsoSource::Symlink("b/c.txt".into())),
            ],
            ..Default::default()
        };
        let t = Tree::build(&spec).expect("valid");
        assert_eq!(t.nodes.len(), 5);
        let b = t.find("a/b").expect("implied dir");
        assert_eq!(t.nodes[b].mode, 0o644);
        assert_eq!(t.nlink(t.find("a").expect("a")), 3);
        assert_eq!(t.dirs_bfs(false).len(), 3);
        for bad in ["", "a//b", "a/../b", "/"] {
            let spec = IsoSpec {
                volume_id: "X".into(),
                files: vec![file(bad, IsoSource::Dir)],
                ..Default::default()
            };
            assert!(
                matches!(Tree::build(&spec), Err(IsoError::BadPath { .. })),
                "{bad}"
            );
        }
        let dup = IsoSpec {
            volume_id: "X".into(),
            files: vec![file("x", IsoSource::Dir), file("x", IsoSource::Dir)],
            ..Default::default()
        };
        assert!(matches!(Tree::build(&dup), Err(IsoError::Duplicate(_))));
        assert!(check_volume_id("lower").is_err());
        assert!(check_volume_id(&"A".repeat(33)).is_err());
    }

    #[test]
    fn too_large_files_are_refused() {
        let e = file_kind(0, 5 << 30, "osimage/packs/big").expect_err("too big");
        let msg = e.to_string();
        assert!(
            msg.contains("5.0 GiB ≥ 4 GiB") && msg.contains("osimage/packs/big"),
            "{msg}"
        );
    }
}
