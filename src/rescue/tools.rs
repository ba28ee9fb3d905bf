//! The programs the restore runs in the rescue environment, taken from the captured system so
//! that `mkfs.*` matches its kernel and its defaults: `rescue/tools.list` names them (with the
//! Debian package that provides each), this module finds them under ROOT's `sbin`/`bin`
//! directories and ships each with its ELF interpreter and `DT_NEEDED` libraries, resolved the
//! way ld.so(8) would inside ROOT (`DT_RPATH`, `DT_RUNPATH` with `$ORIGIN`, `/etc/ld.so.conf`,
//! the default directories).

use std::collections::BTreeSet;
use std::path::Path;

use super::RescueError;
use super::elf::{DynamicInfo, Elf, ElfError};
use super::rootfs::{Resolved, RootFs};
use super::tree::{Node, Source, Tree};

/// Directories searched for a tool, in order (like a root's `PATH`).
pub const TOOL_DIRS: &[&str] = &[
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

/// When a tool must be present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Always required: the build fails without it.
    Always,
    /// Required when one of these filesystem types was captured.
    Filesystems(Vec<String>),
    /// Shipped when present.
    Optional,
}

/// One line of `rescue/tools.list`: `NAME PACKAGE NEED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSpec {
    pub name: String,
    /// The Debian package providing it, named in the error when it is missing.
    pub package: String,
    pub need: Need,
}

impl ToolSpec {
    /// Is this tool required for a capture holding `filesystems`?
    pub fn required(&self, filesystems: &[String]) -> bool {
        match &self.need {
            Need::Always => true,
            Need::Optional => false,
            Need::Filesystems(types) => types.iter().any(|t| filesystems.contains(t)),
        }
    }
}

/// Parses `rescue/tools.list`: `#` comments, blank lines, then `NAME PACKAGE NEED` where
/// NEED is `always`, `optional` or `fs:TYPE[,TYPE...]`.
pub fn parse_tools_list(text: &str) -> Result<Vec<ToolSpec>, String> {
    let mut out = Vec::new();
    for (no, line) in list_lines(text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, package, need] = words[..] else {
            return Err(format!(
                "tools.list line {no}: want NAME PACKAGE NEED, got {line:?}"
            ));
        };
        let need = match need {
            "always" => Need::Always,
            "optional" => Need::Optional,
            n if n.starts_with("fs:") => {
                Need::Filesystems(n[3..].split(',').map(str::to_string).collect())
            }
            n => return Err(format!("tools.list line {no}: unknown need {n:?}")),
        };
        out.push(ToolSpec {
            name: name.to_string(),
            package: package.to_string(),
            need,
        });
    }
    Ok(out)
}

/// What a line of `rescue/host-tools.list` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A program found in `PATH`.
    Program,
    /// A GRUB platform directory, `usr/lib/grub/NAME`, on the host or in ROOT.
    GrubDir,
    /// Busybox: ROOT's own, else a static one on the host.
    Busybox,
}

/// One line of `rescue/host-tools.list`: something osimage runs or reads on the capturing
/// host, the Debian package that provides it, when it is needed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNeed {
    pub kind: HostKind,
    pub name: String,
    pub package: String,
    /// `iso`, `rescue`, `uefi`, `snapshot:btrfs` or `snapshot:lvm` (the list's header says
    /// when each applies).
    pub when: String,
    pub why: String,
}

/// The `WHEN`s `rescue/host-tools.list` may use.
pub const HOST_WHENS: &[&str] = &["iso", "rescue", "uefi", "snapshot:btrfs", "snapshot:lvm"];

/// Parses `rescue/host-tools.list`: `#` comments, blank lines, then
/// `KIND NAME PACKAGE WHEN WHY...`.
pub fn parse_host_tools(text: &str) -> Result<Vec<HostNeed>, String> {
    let mut out = Vec::new();
    for (no, line) in list_lines(text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [kind, name, package, when, why @ ..] = &words[..] else {
            return Err(format!(
                "host-tools.list line {no}: want KIND NAME PACKAGE WHEN WHY, got {line:?}"
            ));
        };
        let kind = match *kind {
            "program" => HostKind::Program,
            "grub-dir" => HostKind::GrubDir,
            "busybox" => HostKind::Busybox,
            k => {
                return Err(format!("host-tools.list line {no}: unknown kind {k:?}"));
            }
        };
        if !HOST_WHENS.contains(when) || why.is_empty() {
            return Err(format!(
                "host-tools.list line {no}: unknown WHEN {when:?} or no WHY"
            ));
        }
        out.push(HostNeed {
            kind,
            name: name.to_string(),
            package: package.to_string(),
            when: when.to_string(),
            why: why.join(" "),
        });
    }
    Ok(out)
}

/// The tools of `rescue/tools.list` (and `extra`, always required) that a capture holding
/// `filesystems` requires and ROOT lacks: all of them, so one message can name them.
pub fn missing_required(
    fs: &RootFs,
    filesystems: &[String],
    extra: &[String],
) -> Result<Vec<ToolSpec>, String> {
    let mut list = parse_tools_list(super::TOOLS_LIST)?;
    list.extend(extra.iter().map(|name| ToolSpec {
        name: name.clone(),
        package: "(--extra-tool)".into(),
        need: Need::Always,
    }));
    Ok(list
        .into_iter()
        .filter(|t| t.required(filesystems) && find_tool(fs, &t.name).is_none())
        .collect())
}

/// Parses a plain list (`rescue/modules.list`, `rescue/files.list`): one word per line.
pub fn parse_plain_list(text: &str) -> Vec<String> {
    list_lines(text).map(|(_, l)| l.to_string()).collect()
}

/// The lines of a `rescue/*.list` file that say something: each with its number (from 1),
/// its `#` comment cut off and trimmed; blank and comment-only lines are skipped.
fn list_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// Finds a tool by name in ROOT's tool directories.
pub fn find_tool(fs: &RootFs, name: &str) -> Option<Resolved> {
    TOOL_DIRS.iter().find_map(|d| {
        let r = fs.find(&format!("{d}/{name}"))?;
        let meta = std::fs::metadata(fs.host_path(&r.path)).ok()?;
        (meta.is_file()
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0)
            .then_some(r)
    })
}

/// Copies programs and their libraries from a root into the tree, each object once.
pub struct Shipper<'a> {
    fs: &'a RootFs,
    lib_dirs: Vec<String>,
    shipped: BTreeSet<String>,
    /// Root-relative paths of the libraries and loaders shipped, for the report.
    pub libraries: Vec<String>,
    /// Every (name asked for, root-relative path found) of a library or loader, in order.
    pub needed: Vec<(String, String)>,
}

impl<'a> Shipper<'a> {
    pub fn new(fs: &'a RootFs) -> Self {
        Shipper {
            fs,
            lib_dirs: ld_so_conf_dirs(fs),
            shipped: BTreeSet::new(),
            libraries: Vec::new(),
            needed: Vec::new(),
        }
    }

    /// Ships the object at `path` in the root (with the symlinks leading to it) and everything
    /// it needs to run.
    pub fn ship_program(&mut self, tree: &mut Tree, path: &str) -> Result<(), RescueError> {
        let resolved = self
            .fs
            .resolve(path)
            .map_err(|e| RescueError::io("resolving", &self.fs.host_path(path), e))?;
        self.ship_resolved(tree, &resolved, path)
    }

    /// Ships a data file (configuration) with its symlinks; missing → `false`.
    pub fn ship_data(&mut self, tree: &mut Tree, path: &str) -> bool {
        match self.fs.find(path) {
            Some(r) if self.fs.host_path(&r.path).is_file() => {
                self.add(tree, &r);
                true
            }
            _ => false,
        }
    }

    fn add(&mut self, tree: &mut Tree, r: &Resolved) {
        for (link, target) in &r.links {
            tree.insert(
                link,
                Node::Symlink {
                    target: target.clone(),
                },
            );
        }
        let host = self.fs.host_path(&r.path);
        let perm = std::fs::metadata(&host)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
        tree.insert(
            &r.path,
            Node::File {
                source: Source::Host(host),
                perm: perm.unwrap_or(0o755),
            },
        );
    }

    fn ship_resolved(
        &mut self,
        tree: &mut Tree,
        r: &Resolved,
        asked: &str,
    ) -> Result<(), RescueError> {
        // Links are recorded even when the object was shipped under another name.
        for (link, target) in &r.links {
            tree.insert(
                link,
                Node::Symlink {
                    target: target.clone(),
                },
            );
        }
        if !self.shipped.insert(r.path.clone()) {
            return Ok(());
        }
        self.add(tree, r);
        let host = self.fs.host_path(&r.path);
        let info = match read_dynamic(&host)? {
            Some(info) => info,
            None => {
                // A script: ship its interpreter unless busybox is it.
                if let Some(interp) = shebang(&host)
                    && !matches!(
                        interp.as_str(),
                        "/bin/sh" | "/bin/ash" | "/usr/bin/env" | "/bin/busybox"
                    )
                {
                    self.ship_program(tree, &interp).map_err(|_| {
                        RescueError::MissingInterpreter {
                            program: asked.to_string(),
                            interpreter: interp.clone(),
                        }
                    })?;
                }
                return Ok(());
            }
        };
        if let Some(interp) = &info.interp {
            let ri = self
                .fs
                .resolve(interp)
                .map_err(|_| RescueError::MissingInterpreter {
                    program: asked.to_string(),
                    interpreter: interp.clone(),
                })?;
            if !self.shipped.contains(&ri.path) {
                self.libraries.push(ri.path.clone());
            }
            self.needed.push((interp.clone(), ri.path.clone()));
            self.ship_resolved(tree, &ri, interp)?;
        }
        let origin = r.path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        for lib in &info.needed {
            let found = self.find_library(lib, &info, &origin).ok_or_else(|| {
                RescueError::MissingLibrary {
                    program: asked.to_string(),
                    library: lib.clone(),
                    root: self.fs.root().to_path_buf(),
                }
            })?;
            if !self.shipped.contains(&found.path) {
                self.libraries.push(found.path.clone());
            }
            self.needed.push((lib.clone(), found.path.clone()));
            self.ship_resolved(tree, &found, lib)?;
        }
        Ok(())
    }

    /// ld.so(8)'s order: DT_RPATH (without DT_RUNPATH), DT_RUNPATH, ld.so.conf, defaults.
    fn find_library(&self, name: &str, info: &DynamicInfo, origin: &str) -> Option<Resolved> {
        if name.contains('/') {
            return self.fs.find(name);
        }
        let expand = |p: &String| {
            p.replace("$ORIGIN", &format!("/{origin}"))
                .replace("${ORIGIN}", &format!("/{origin}"))
        };
        let mut dirs: Vec<String> = Vec::new();
        if info.runpath.is_empty() {
            dirs.extend(info.rpath.iter().map(expand));
        }
        dirs.extend(info.runpath.iter().map(expand));
        dirs.extend(self.lib_dirs.iter().cloned());
        dirs.into_iter().find_map(|d| {
            let r = self.fs.find(&format!("{d}/{name}"))?;
            // Skip a library of another architecture (i386 multiarch dirs on the path).
            let bytes = std::fs::read(self.fs.host_path(&r.path)).ok()?;
            let elf = Elf::parse(&bytes).ok()?;
            (elf.dynamic_info().ok()?.machine == info.machine).then_some(r)
        })
    }
}

/// The dynamic information of an ELF file, `None` for a non-ELF file (a script).
fn read_dynamic(host: &Path) -> Result<Option<DynamicInfo>, RescueError> {
    let bytes = std::fs::read(host).map_err(|e| RescueError::io("reading", host, e))?;
    match Elf::parse(&bytes).and_then(|e| e.dynamic_info()) {
        Ok(info) => Ok(Some(info)),
        Err(ElfError::NotElf) => Ok(None),
        Err(e) => Err(RescueError::Elf {
            path: host.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The interpreter of a `#!` script.
fn shebang(host: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let n = std::io::Read::read(&mut std::fs::File::open(host).ok()?, &mut head).ok()?;
    let text = std::str::from_utf8(head.get(..n)?.strip_prefix(b"#!")?).ok()?;
    text.lines()
        .next()?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// The library directories of ROOT's `/etc/ld.so.conf` (following `include` globs), then the
/// loader's built-in defaults, multiarch ones included.
pub fn ld_so_conf_dirs(fs: &RootFs) -> Vec<String> {
    let mut dirs = Vec::new();
    read_ld_so_conf(fs, "etc/ld.so.conf", &mut dirs, 0);
    for d in [
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
        "lib/aarch64-linux-gnu",
        "usr/lib/aarch64-linux-gnu",
        "lib64",
        "usr/lib64",
        "lib",
        "usr/lib",
    ] {
        dirs.push(format!("/{d}"));
    }
    let mut seen = BTreeSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn read_ld_so_conf(fs: &RootFs, path: &str, dirs: &mut Vec<String>, depth: usize) {
    let Some(r) = fs.find(path) else { return };
    let Ok(text) = std::fs::read_to_string(fs.host_path(&r.path)) else {
        return;
    };
    for line in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
    {
        if let Some(pattern) = line.strip_prefix("include") {
            if depth > 4 {
                continue;
            }
            for p in pattern.split_whitespace() {
                for file in glob_in_root(fs, p) {
                    read_ld_so_conf(fs, &file, dirs, depth + 1);
                }
            }
        } else if !line.is_empty() {
            dirs.extend(
                line.split([':', ',', ' ', '\t'])
                    .filter(|d| !d.is_empty())
                    .map(str::to_string),
            );
        }
    }
}

/// Expands a `dir/pattern` glob (pattern in the last component only) inside the root, sorted.
fn glob_in_root(fs: &RootFs, pattern: &str) -> Vec<String> {
    let (dir, pat) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    let Some(r) = fs.find(if dir.is_empty() { "/" } else { dir }) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(fs.host_path(&r.path)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| super::modules::wildcard(pat, n))
        .map(|n| format!("{}/{n}", r.path))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_list_parses_and_rejects() {
        let list = parse_tools_list(
            "# c\nmkfs.ext4 e2fsprogs fs:ext2,ext3,ext4 # x\n\nblkid util-linux optional\n",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].required(&["ext3".to_string()]));
        assert!(!list[0].required(&["xfs".to_string()]));
        assert!(!list[1].required(&[]));
        assert!(parse_tools_list("mkfs.ext4 e2fsprogs\n").is_err());
        assert!(parse_tools_list("a b sometimes\n").is_err());
    }

    #[test]
    fn the_shipped_lists_parse() {
        let tools = parse_tools_list(super::super::TOOLS_LIST).unwrap();
        assert!(
            tools
                .iter()
                .any(|t| t.name == "mkfs.ext4" && t.package == "e2fsprogs")
        );
        assert!(parse_plain_list(super::super::MODULES_LIST).contains(&"virtio_blk".to_string()));
    }

    /// Real host binaries with ROOT = "/": mkfs.ext4 needs its e2fsprogs libraries and libc,
    /// and the loader named in its header, reachable through the same symlinks as on disk.
    #[test]
    fn host_mkfs_ext4_with_its_libraries() {
        let fs = RootFs::new(Path::new("/"));
        let tool = find_tool(&fs, "mkfs.ext4")
            .expect("`mkfs.ext4` not found: install the Debian package e2fsprogs");
        let mut tree = Tree::new();
        let mut shipper = Shipper::new(&fs);
        shipper
            .ship_program(
                &mut tree,
                &format!("/{}", tool.links.first().map_or(&tool.path, |l| &l.0)),
            )
            .unwrap();
        let libs = shipper.libraries.join(" ");
        for want in [
            "libext2fs.so",
            "libcom_err.so",
            "libc.so.6",
            "ld-linux-x86-64.so.2",
        ] {
            assert!(libs.contains(want), "{want} not in {libs}");
        }
        // The loader is reachable at the path written in the program header.
        let bytes = std::fs::read(fs.host_path(&tool.path)).unwrap();
        let interp = Elf::parse(&bytes)
            .unwrap()
            .dynamic_info()
            .unwrap()
            .interp
            .unwrap();
        assert!(tree.contains(&interp), "{interp}");
        // Independent judge: every library ldd names is in the tree.
        if let Ok(out) = std::process::Command::new("ldd")
            .arg(fs.host_path(&tool.path))
            .output()
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(p) = line
                    .split("=>")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    && p.starts_with('/')
                {
                    let name = p.rsplit('/').next().unwrap();
                    assert!(libs.contains(name), "ldd says {p}, we have {libs}");
                }
            }
        }
    }

    #[test]
    fn missing_library_is_named() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        let ls = std::fs::read("/usr/bin/ls").expect("/usr/bin/ls (coreutils) to copy");
        std::fs::write(t.path().join("usr/bin/ls"), ls).unwrap();
        let fs = RootFs::new(t.path());
        let err = Shipper::new(&fs)
            .ship_program(&mut Tree::new(), "usr/bin/ls")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("usr/bin/ls") && (msg.contains("ld-linux") || msg.contains(".so")),
            "{msg}"
        );
    }
}
