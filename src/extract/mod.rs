//! Put captured files back into a directory with every piece of metadata (extract, restore --to).
//!
//! `extract` writes a manifest's tree under a destination directory in wimlib's `unix_apply`
//! order (STYLE.md §9, issue #2):
//! 1. `plan`: the whole manifest is checked and the selection resolved; nothing is written
//!    before this succeeds.
//! 2. directories, parents first (mode 0700 for now);
//! 3. regular file data, in parallel (`files`), each file's metadata on its open fd;
//! 4. symlinks, devices, FIFOs, sockets (each with its metadata), then hard links;
//! 5. directories' metadata in reverse order, children before parents, the image root's
//!    going to the destination itself.
//!
//! Everything is created relative to the destination's dirfd without following symlinks
//! (`target`). Modes are set explicitly; the process umask is not changed.

mod error;
mod files;
mod plan;
mod source;
mod target;

use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::FileType;

pub use error::ExtractError;
pub use source::{ChunkSource, MemorySource};

use plan::{Plan, name_of};
use target::{DirCache, Handle, Target, Warnings};

use crate::format::manifest::{Entries, EntryKind};
use crate::progress::Progress;

/// What to extract and how.
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Paths in the image to extract, with everything below them and their parent directories;
    /// empty: everything. A leading `/` is ignored.
    pub paths: Vec<Vec<u8>>,
    /// Threads writing file data (at least 1).
    pub threads: usize,
    /// Set owners (uid/gid from the image, numeric). When the caller may not chown, each
    /// refusal is a warning; false skips chown altogether. An entry left without the image's
    /// owner (false, or chown refused) gets neither setuid nor setgid bits nor file
    /// capabilities (`security.capability`), as GNU tar with `--no-same-owner`.
    pub restore_owner: bool,
    /// Create character and block device nodes (false: they are left out, with a note).
    pub devices: bool,
    /// Set `security.capability` (file capabilities) where the owner was set.
    pub capabilities: bool,
    /// `syncfs` the destination's filesystem once at the end.
    pub sync: bool,
    /// Restore into mounted filesystems: `dest` need not be empty, and a directory that
    /// already exists (a mount point, `lost+found`) is used as it is — never a symlink or
    /// another kind of file in its place.
    pub into_mounts: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            paths: Vec::new(),
            threads: 2,
            restore_owner: true,
            devices: true,
            capabilities: true,
            sync: false,
            into_mounts: false,
        }
    }
}

/// What an extract did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Entries created or (the root) applied to the destination.
    pub entries: u64,
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Bytes of file data written (holes and all-zero chunks excluded).
    pub bytes_written: u64,
    /// Problems that did not stop the extract (an xattr the filesystem refused, an owner the
    /// caller may not set); each was reported with `Progress::note`.
    pub warnings: u64,
}

/// Writes the tree of `src`'s manifest (or the selected part) under `dest`, which must be
/// missing or an empty directory. The manifest is checked as a whole before anything is
/// written; file data as it is read (`ChunkSource::read_chunk`), and a file whose data fails
/// is removed again and the extract stops naming it (`ExtractError::Removed`). When it stops,
/// everything it created under `dest` is removed again (`ExtractError::Undone`), except
/// with `into_mounts` (a restore, which fails as a whole).
pub fn extract<S: ChunkSource>(
    src: &S,
    dest: &Path,
    opts: &ExtractOptions,
    progress: &dyn Progress,
) -> Result<ExtractReport, ExtractError> {
    let entries = src.entries();
    let mut plan = Plan::new(tree(src), &opts.paths)?;
    if !opts.devices {
        let before = plan.others.len();
        plan.others.retain(|&i| {
            !matches!(
                entries[i as usize].kind(),
                EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. }
            )
        });
        let left_out = before - plan.others.len();
        if left_out > 0 {
            progress.note(&format!("{left_out} device nodes left out, as asked"));
        }
    }
    let target = Target::open(dest, opts)?;
    let warn = Warnings::new(progress);
    match write_tree(src, &target, &plan, opts, progress, &warn) {
        Ok(stats) => Ok(ExtractReport {
            entries: plan.entry_count(),
            files: stats.files,
            bytes_written: stats.bytes_written,
            warnings: warn.count(),
        }),
        // Restoring into fresh filesystems, the whole restore fails and is made again.
        Err(e) if opts.into_mounts => Err(e),
        Err(e) => Err(ExtractError::Undone {
            cause: Box::new(e),
            dest: dest.to_path_buf(),
            left: target.undo(),
        }),
    }
}

/// Phases 2 to 5 into an open destination.
fn write_tree<S: ChunkSource>(
    src: &S,
    target: &Target,
    plan: &Plan,
    opts: &ExtractOptions,
    progress: &dyn Progress,
    warn: &Warnings,
) -> Result<files::FileStats, ExtractError> {
    let entries = src.entries();
    let dest = target.full_path(b"");
    // Only the file phase counts bytes; the others are quick and report no total.
    progress.start("creating directories", 0);
    make_dirs(target, entries, plan)?;
    progress.finish();

    progress.start("writing files", plan.data_len(tree(src)));
    let stats = files::write_files(src, target, plan, opts.threads, progress, warn)?;
    progress.finish();

    progress.start("creating links and special files", 0);
    make_others(target, entries, plan, warn)?;
    make_links(target, entries, plan)?;
    progress.finish();

    progress.start("setting directory metadata", 0);
    dir_metadata(target, entries, plan, warn)?;
    if opts.sync {
        rustix::fs::syncfs(target.dest_fd()).map_err(|e| ExtractError::io("syncing", dest, e))?;
    }
    progress.finish();
    Ok(stats)
}

/// Runs every check `extract` makes on `src`'s tree before it writes (the whole tree: paths,
/// parents, hard links, data runs), writing nothing: a restore runs it on each filesystem's
/// part before it touches a disk.
pub fn check<S: ChunkSource>(src: &S) -> Result<(), ExtractError> {
    Plan::new(tree(src), &[]).map(|_| ())
}

/// The entries and chunk records of `src`, as the plan reads them.
pub(crate) fn tree<S: ChunkSource>(src: &S) -> plan::Tree<'_> {
    plan::Tree {
        entries: src.entries(),
        chunks: src.chunks(),
    }
}

/// Phase 2: every directory, parents first (the plan guarantees parents come earlier).
fn make_dirs(target: &Target, entries: &Entries, plan: &Plan) -> Result<(), ExtractError> {
    let mut dirs = DirCache::default();
    for &i in &plan.dirs {
        let path = entries.path(i as usize);
        let parent = dirs.parent(target, path)?;
        match target::mkdir(parent, name_of(path)) {
            Err(rustix::io::Errno::EXIST) if target.merges_into_mounts() => {
                // Only a real directory may stand in for one (never a symlink).
                let st = rustix::fs::statat(
                    parent,
                    name_of(path),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| {
                    ExtractError::io(
                        "checking directory",
                        target.full_path(path),
                        std::io::Error::from(e),
                    )
                })?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::Directory
                {
                    return Err(ExtractError::io(
                        "creating directory",
                        target.full_path(path),
                        std::io::Error::from_raw_os_error(libc::EEXIST),
                    ));
                }
            }
            r => r.map_err(|e| {
                ExtractError::io(
                    "creating directory",
                    target.full_path(path),
                    std::io::Error::from(e),
                )
            })?,
        }
    }
    Ok(())
}

/// Phase 4a: symlinks and special files, each with its metadata right away (nothing later
/// touches them).
fn make_others(
    target: &Target,
    entries: &Entries,
    plan: &Plan,
    warn: &Warnings,
) -> Result<(), ExtractError> {
    let mut dirs = DirCache::default();
    for &i in &plan.others {
        let entry = entries.at(i as usize);
        let name = name_of(entry.path);
        let dir = dirs.parent(target, entry.path)?;
        let made = match &entry.kind() {
            EntryKind::Symlink { target } => rustix::fs::symlinkat(target.as_slice(), dir, name),
            EntryKind::CharDevice { rdev } => {
                target::mknod(dir, name, FileType::CharacterDevice, *rdev)
            }
            EntryKind::BlockDevice { rdev } => {
                target::mknod(dir, name, FileType::BlockDevice, *rdev)
            }
            EntryKind::Fifo => target::mknod(dir, name, FileType::Fifo, 0),
            EntryKind::Socket => target::mknod(dir, name, FileType::Socket, 0),
            _ => unreachable!("the plan lists only symlinks and special files here"),
        };
        made.map_err(|e| ExtractError::io("creating", target.full_path(entry.path), e))?;
        let symlink = matches!(entry.kind(), EntryKind::Symlink { .. });
        let h = Handle::At { dir, name, symlink };
        target.set_meta(h, &entry.meta(), entry.xattrs(), entry.path, warn)?;
    }
    Ok(())
}

/// Phase 4b: hard links to the first name of each file (same inode, so no metadata).
fn make_links(target: &Target, entries: &Entries, plan: &Plan) -> Result<(), ExtractError> {
    let (mut link_dirs, mut first_dirs) = (DirCache::default(), DirCache::default());
    for &(l, f) in &plan.links {
        let (link, first) = (entries.at(l as usize), entries.at(f as usize));
        let link_dir = link_dirs.parent(target, link.path)?;
        let first_dir = first_dirs.parent(target, first.path)?;
        // No AT_SYMLINK_FOLLOW: the first name is a regular file this extract created.
        rustix::fs::linkat(
            first_dir,
            name_of(first.path),
            link_dir,
            name_of(link.path),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| ExtractError::io("creating hard link", target.full_path(link.path), e))?;
    }
    Ok(())
}

/// Phase 5: directories' metadata after their contents, deepest first, the root last.
fn dir_metadata(
    target: &Target,
    entries: &Entries,
    plan: &Plan,
    warn: &Warnings,
) -> Result<(), ExtractError> {
    for &i in plan.dirs.iter().rev() {
        let entry = entries.at(i as usize);
        let fd = target.open_dir(entry.path)?;
        target.set_meta(
            Handle::Fd(fd.as_fd()),
            &entry.meta(),
            entry.xattrs(),
            entry.path,
            warn,
        )?;
    }
    if let Some(root) = plan.root {
        let entry = entries.at(root as usize);
        let h = Handle::Fd(target.dest_fd());
        target.set_meta(h, &entry.meta(), entry.xattrs(), entry.path, warn)?;
    }
    Ok(())
}
