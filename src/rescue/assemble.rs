//! Builds the initramfs: what goes in (tools and libraries, busybox, modules and their
//! indexes, the agent, init), in that order so the captured root's symlinks (`/bin -> usr/bin`)
//! are in the tree before anything is placed through them; then cpio, then compression.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::cpio::{CpioWriter, DeviceKind};
use super::elf::{Elf, modinfo};
use super::kernel::{Compression, Kernel, find_kernel};
use super::modules::{ModuleIndex, for_filesystem};
use super::reuse::{PartRecord, RescueInputs, fingerprint};
use super::rootfs::RootFs;
use super::tools::{Shipper, find_tool, missing_required, parse_plain_list, parse_tools_list};
use super::tree::{Node, Source, Tree};
use super::{
    FILES_LIST, INIT_SCRIPT, MODULES_LIST, MODULES_NET_LIST, Rescue, RescueError, RescueSpec,
    TOOLS_LIST, UDHCPC_SCRIPT, image_id_hex,
};

/// zstd level for the initramfs. Measured on the e2e system's 38.9 MB cpio (docs/RESCUE.md):
/// level 6 gives 12.07 MB in 0.78 s, level 9 11.66 MB in 1.5 s, level 15 11.54 MB in 7.7 s;
/// 0.4 MB of a 266 MB ISO is not worth doubling the compression every first capture and
/// every refresh whose rescue inputs changed pays on two cores.
const ZSTD_LEVEL: i32 = 6;

/// The initramfs is compressed as this many archives (one zstd frame each; the kernel unpacks
/// concatenated archives), on as many threads as there are cores: a fixed number, so the
/// initrd does not depend on the machine that built it. The first holds the directories and
/// links, the others the files, each by a hash of its path (`Tree::split`), so a refresh
/// whose rescue inputs changed compresses only the parts that hold a changed file and takes
/// the others' frames from its base (docs/RESCUE.md, "Parts").
const ZSTD_PARTS: usize = 16;

/// Where the agent's own libraries go when it is dynamic: apart from the captured system's,
/// which may be another glibc.
const AGENT_LIB_DIR: &str = "osimage/lib";

/// Builds the rescue kernel and initramfs for `spec` into `work_dir`.
pub fn build_rescue(spec: &RescueSpec, work_dir: &Path) -> Result<Rescue, RescueError> {
    plan_rescue(spec, work_dir)?.build(spec, work_dir)
}

/// A rescue environment whose contents are decided (and fingerprinted), not yet written.
pub struct PlannedRescue {
    tree: Tree,
    kernel: Kernel,
    notes: Vec<String>,
    tools: usize,
    modules: usize,
    libraries: usize,
    /// What it is built from (`core_len` and `core` are filled in once the initrd is written).
    pub inputs: RescueInputs,
}

/// Gathers what goes into the rescue environment: kernel, tools and libraries, busybox,
/// modules, the agent, init; and fingerprints it all (`reuse::fingerprint`).
pub fn plan_rescue(spec: &RescueSpec, work_dir: &Path) -> Result<PlannedRescue, RescueError> {
    std::fs::create_dir_all(work_dir).map_err(|e| RescueError::io("creating", work_dir, e))?;
    let fs = RootFs::new(&spec.root);
    let kernel = find_kernel(&fs, spec.kernel.as_deref())?;
    let mut tree = Tree::new();
    let mut notes = Vec::new();

    let mut shipper = Shipper::new(&fs);
    let tools = ship_tools(spec, &fs, &mut shipper, &mut tree, &mut notes)?;
    for path in parse_plain_list(FILES_LIST) {
        shipper.ship_data(&mut tree, &path);
    }
    ship_busybox(&fs, &mut shipper, &mut tree)?;
    let libraries = shipper.libraries.len();
    let modules = ship_modules(spec, &fs, &kernel, &mut tree, &mut notes)?;
    ship_agent(spec, work_dir, &mut tree, &mut notes)?;
    add_skeleton(&mut tree);
    let inputs = fingerprint(
        &kernel.image,
        &spec.agent_binary,
        kernel.compression,
        &tree,
        ZSTD_PARTS,
    )?;
    Ok(PlannedRescue {
        tree,
        kernel,
        notes,
        tools,
        modules,
        libraries,
        inputs,
    })
}

impl PlannedRescue {
    /// What the planning noticed (optional tools or modules missing, how the agent ships).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The captured kernel image the environment boots (the file in ROOT).
    pub fn kernel_image(&self) -> &Path {
        &self.kernel.image
    }

    /// Compresses the initramfs and copies the kernel into `work_dir`.
    pub fn build(self, spec: &RescueSpec, work_dir: &Path) -> Result<Rescue, RescueError> {
        self.build_reusing(spec, work_dir, &[])
    }

    /// `build`, taking the compressed frame `reuse[i]` for part `i` where one is given
    /// (`RescueInputs::reusable_parts`: a previous build's frame of the same contents).
    pub fn build_reusing(
        mut self,
        spec: &RescueSpec,
        work_dir: &Path,
        reuse: &[Option<&[u8]>],
    ) -> Result<Rescue, RescueError> {
        let initrd = work_dir.join("initrd.img");
        let reused = reuse.iter().flatten().count();
        let uncompressed_bytes = write_initrd(
            &self.tree,
            self.kernel.compression,
            &initrd,
            &mut self.inputs.parts,
            reuse,
        )?;
        let kernel_copy = work_dir.join("vmlinuz");
        std::fs::copy(&self.kernel.image, &kernel_copy)
            .map_err(|e| RescueError::io("copying", &self.kernel.image, e))?;
        let mut r = self.finish(spec, kernel_copy, initrd, uncompressed_bytes, false)?;
        r.reused_parts = reused;
        Ok(r)
    }

    /// Takes a previous build's initramfs instead of building it: `core` (the initrd's first
    /// `previous.core_len` bytes) must be what `previous` records, and `previous` must have
    /// been built from the same inputs as this plan (the kernel among them: it is copied from
    /// the captured root, the same bytes).
    pub fn reuse(
        mut self,
        spec: &RescueSpec,
        work_dir: &Path,
        previous: &RescueInputs,
        core: &[u8],
    ) -> Result<Rescue, RescueError> {
        let bad = |detail: &str| RescueError::Tool {
            tool: "rescue reuse".into(),
            path: work_dir.to_path_buf(),
            detail: detail.into(),
        };
        if let Some(why) = previous.differs_from(&self.inputs) {
            return Err(bad(why));
        }
        if !previous.vouches_for(core) {
            return Err(bad("the previous initramfs is not what its record says"));
        }
        self.inputs.parts = previous.parts.clone();
        let initrd = work_dir.join("initrd.img");
        std::fs::write(&initrd, core).map_err(|e| RescueError::io("writing", &initrd, e))?;
        let kernel_copy = work_dir.join("vmlinuz");
        std::fs::copy(&self.kernel.image, &kernel_copy)
            .map_err(|e| RescueError::io("copying", &self.kernel.image, e))?;
        let mut r = self.finish(spec, kernel_copy, initrd, 0, true)?;
        r.reused_parts = r.inputs.parts.len();
        Ok(r)
    }

    /// Appends the image's own id archive to the initrd and records where its core ends.
    fn finish(
        mut self,
        spec: &RescueSpec,
        kernel_copy: PathBuf,
        initrd: PathBuf,
        uncompressed_bytes: u64,
        reused: bool,
    ) -> Result<Rescue, RescueError> {
        let (core_len, core) = append_image_id(&initrd, &spec.image_id)?;
        self.inputs.core_len = core_len;
        self.inputs.core = core;
        let size = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| RescueError::io("reading", p, e))
        };
        let (kernel_bytes, initrd_bytes) = (size(&kernel_copy)?, size(&initrd)?);
        Ok(Rescue {
            kernel: kernel_copy,
            initrd,
            kernel_version: self.kernel.version,
            size_bytes: kernel_bytes + initrd_bytes,
            initrd_bytes,
            uncompressed_bytes,
            modules: self.modules,
            tools: self.tools,
            libraries: self.libraries,
            notes: self.notes,
            inputs: self.inputs,
            reused,
            reused_parts: 0,
        })
    }
}

/// Pads the initrd at `path` (the compressed contents) with zeros to a multiple of 4 and
/// appends an uncompressed cpio archive holding `osimage/image-id`: the kernel unpacks
/// concatenated archives, compressed or not, in order (Documentation/driver-api/
/// early-userspace/buffer-format.rst), so the contents before it stay the same for every
/// image and a refresh can reuse them; an export writes a store's core followed by the
/// image's own archive the same way. Returns the padded core's length and hash.
pub fn append_image_id(path: &Path, image_id: &[u8; 16]) -> Result<(u64, [u8; 32]), RescueError> {
    let io = |e| RescueError::io("writing", path, e);
    let mut core = std::fs::read(path).map_err(|e| RescueError::io("reading", path, e))?;
    core.resize(core.len().next_multiple_of(4), 0);
    let id = format!("{}\n", image_id_hex(image_id));
    let mut w = CpioWriter::new(Vec::new(), 0);
    w.dir("osimage", 0o755).map_err(io)?;
    w.file(
        "osimage/image-id",
        0o644,
        id.len() as u64,
        &mut id.as_bytes(),
    )
    .map_err(io)?;
    let (archive, _) = w.finish().map_err(io)?;
    let hash = *blake3::hash(&core).as_bytes();
    let core_len = core.len() as u64;
    core.extend_from_slice(&archive);
    std::fs::write(path, &core).map_err(io)?;
    Ok((core_len, hash))
}

/// `rescue/tools.list` plus the extra tools: required ones must exist, optional ones are noted.
fn ship_tools(
    spec: &RescueSpec,
    fs: &RootFs,
    shipper: &mut Shipper,
    tree: &mut Tree,
    notes: &mut Vec<String>,
) -> Result<usize, RescueError> {
    let missing =
        missing_required(fs, &spec.filesystems, &spec.extra_tools).map_err(RescueError::BadList)?;
    if !missing.is_empty() {
        return Err(RescueError::MissingTools {
            tools: missing
                .iter()
                .map(|t| format!("{} ({})", t.name, t.package))
                .collect(),
            root: spec.root.clone(),
        });
    }
    let mut list = parse_tools_list(TOOLS_LIST).map_err(RescueError::BadList)?;
    list.extend(spec.extra_tools.iter().map(|extra| super::tools::ToolSpec {
        name: extra.clone(),
        package: "(--extra-tool)".into(),
        need: super::tools::Need::Always,
    }));
    let (mut count, mut mkfs) = (0, false);
    for tool in &list {
        let Some(found) = find_tool(fs, &tool.name) else {
            notes.push(format!(
                "optional tool {} not in the captured system (package {})",
                tool.name, tool.package
            ));
            continue;
        };
        // Ship under the name asked for, so the links to it come along (mkfs.ext4 -> mke2fs).
        let asked = found
            .links
            .first()
            .map_or(found.path.clone(), |l| l.0.clone());
        shipper.ship_program(tree, &asked)?;
        count += 1;
        mkfs |= tool.name.starts_with("mkfs.") || tool.name == "mke2fs";
    }
    // A capture that recorded no filesystem requires none of them, yet its restore (the
    // default layout) makes ext4 and vfat: an environment without any mkfs could restore
    // nothing (issue #24 item 12).
    if !mkfs {
        return Err(RescueError::Useless(format!(
            "{} has no mkfs program of rescue/tools.list (install e2fsprogs and dosfstools \
             there)",
            spec.root.display()
        )));
    }
    Ok(count)
}

/// Where the rescue environment's busybox comes from.
pub(super) enum BusyboxSource {
    /// ROOT's own, at this root-relative path (its symlinks resolved to `resolved`).
    Root {
        path: &'static str,
        resolved: String,
    },
    /// A static one on the host (it needs no library).
    Host(PathBuf),
}

/// The captured system's busybox, else a static one under `host` (`/` but in tests).
pub(super) fn find_busybox(fs: &RootFs, host: &Path) -> Option<BusyboxSource> {
    for candidate in [
        "bin/busybox",
        "usr/bin/busybox",
        "usr/lib/initramfs-tools/bin/busybox",
    ] {
        if let Some(r) = fs
            .find(candidate)
            .filter(|r| fs.host_path(&r.path).is_file())
        {
            return Some(BusyboxSource::Root {
                path: candidate,
                resolved: r.path,
            });
        }
    }
    [
        "bin/busybox",
        "usr/bin/busybox",
        "usr/lib/initramfs-tools/bin/busybox",
    ]
    .iter()
    .map(|p| host.join(p))
    .find(|path| {
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        Elf::parse(&bytes)
            .and_then(|e| e.dynamic_info())
            .is_ok_and(|info| info.interp.is_none() && info.needed.is_empty())
    })
    .map(BusyboxSource::Host)
}

/// Busybox: the captured system's (with its libraries), else the host's static one.
fn ship_busybox(fs: &RootFs, shipper: &mut Shipper, tree: &mut Tree) -> Result<(), RescueError> {
    let sh = || Node::Symlink {
        target: "busybox".into(),
    };
    match find_busybox(fs, Path::new("/")).ok_or(RescueError::NoBusybox)? {
        BusyboxSource::Root { path, resolved } => {
            shipper.ship_program(tree, path)?;
            if !tree.contains("bin/busybox") {
                tree.insert(
                    "bin/busybox",
                    Node::Symlink {
                        target: format!("/{resolved}"),
                    },
                );
            }
        }
        BusyboxSource::Host(path) => {
            tree.insert(
                "bin/busybox",
                Node::File {
                    source: Source::Host(path),
                    perm: 0o755,
                },
            );
        }
    }
    tree.insert("bin/sh", sh());
    Ok(())
}

/// The modules of `rescue/modules.list` and the captured filesystems, closed over the kernel's
/// indexes, shipped uncompressed with a subset `modules.dep`/`softdep`/`alias` for busybox's
/// modprobe and `osimage.load`, the order rescue/init loads them in.
fn ship_modules(
    spec: &RescueSpec,
    fs: &RootFs,
    kernel: &Kernel,
    tree: &mut Tree,
    notes: &mut Vec<String>,
) -> Result<usize, RescueError> {
    let dir = &kernel.modules_dir;
    let read = |name: &str| {
        std::fs::read_to_string(fs.host_path(&format!("{}/{name}", dir.path))).unwrap_or_default()
    };
    let dep_path = fs.host_path(&format!("{}/modules.dep", dir.path));
    if !dep_path.is_file() {
        return Err(RescueError::NoModules {
            version: kernel.version.clone(),
            root: spec.root.clone(),
        });
    }
    let builtin = read("modules.builtin");
    let index = ModuleIndex::parse(
        &read("modules.dep"),
        &read("modules.softdep"),
        &read("modules.alias"),
        &builtin,
    );
    let mut wanted = parse_plain_list(MODULES_LIST);
    for fstype in &spec.filesystems {
        wanted.extend(for_filesystem(fstype));
    }
    let set = index.resolve(&wanted);
    // The environment finds its medium by mounting it as iso9660 (issue #24 item 12).
    let isofs = |m: &String| super::modules::canonical(&super::modules::name_of(m)) == "isofs";
    if !set.load_order.iter().any(isofs) && !set.builtin.iter().any(|b| b == "isofs") {
        return Err(RescueError::Useless(format!(
            "kernel {} has no isofs ({} modules found of {} wanted; not in {}/{}, not built \
             in): it could not read its own medium",
            kernel.version,
            set.load_order.len(),
            wanted.len(),
            spec.root.display(),
            dir.path
        )));
    }
    for m in &set.missing {
        // An alias listed as a fallback (fs-ext4 beside ext4) is not worth a note.
        if !m.starts_with("fs-") && !m.starts_with("crypto-") {
            notes.push(format!("module {m}: not in kernel {}", kernel.version));
        }
    }

    for (link, target) in &dir.links {
        tree.insert(
            link,
            Node::Symlink {
                target: target.clone(),
            },
        );
    }
    // The network drivers (rescue/modules-net.list), loaded by rescue/init only for a
    // restore over the network: those the kernel has, minus what the core already loads.
    let net = index.resolve(&parse_plain_list(MODULES_NET_LIST));
    let net_only: Vec<String> = net
        .load_order
        .iter()
        .filter(|m| !set.load_order.contains(m))
        .cloned()
        .collect();
    let uncompressed = |p: &str| strip_compression_suffix(p).to_string();
    let mut load = String::new();
    let mut load_net = String::new();
    let shipped: Vec<String> = set.load_order.iter().chain(&net_only).cloned().collect();
    for rel in &shipped {
        let host = fs.host_path(&format!("{}/{rel}", dir.path));
        let bytes = decompress_module(&host)?;
        ship_firmware(fs, &bytes, rel, tree, notes);
        let name = uncompressed(rel);
        tree.insert(
            &format!("{}/{name}", dir.path),
            Node::File {
                source: Source::Bytes(bytes),
                perm: 0o644,
            },
        );
        let list = if set.load_order.contains(rel) {
            &mut load
        } else {
            &mut load_net
        };
        list.push_str(&name);
        list.push('\n');
    }
    let (dep, soft, alias) = index.subset_indexes(&shipped, uncompressed);
    for (name, text) in [
        ("modules.dep", dep),
        ("modules.softdep", soft),
        ("modules.alias", alias),
        ("modules.builtin", builtin),
        ("osimage.load", load),
        ("osimage.load.net", load_net),
    ] {
        let node = Node::File {
            source: Source::Bytes(text.into_bytes()),
            perm: 0o644,
        };
        tree.insert(&format!("{}/{name}", dir.path), node);
    }
    // rescue/init looks in /lib/modules/$(uname -r).
    let standard = format!("lib/modules/{}", kernel.version);
    if !tree.contains(&standard) {
        tree.insert(
            &standard,
            Node::Symlink {
                target: format!("/{}", dir.path),
            },
        );
    }
    Ok(shipped.len())
}

fn strip_compression_suffix(p: &str) -> &str {
    [".zst", ".xz", ".gz"]
        .iter()
        .find_map(|s| p.strip_suffix(s))
        .unwrap_or(p)
}

/// The most bytes one module may decompress to. Modules are read from the captured root, so a
/// damaged or hostile one must not fill memory; distribution kernels' largest modules (GPU
/// drivers, which the rescue environment does not carry) decompress to a few tens of MiB.
const MAX_MODULE_BYTES: u64 = 256 << 20;

/// A module's bytes, decompressed: busybox's insmod reads plain ELF, and the initramfs is
/// compressed as a whole anyway. `.ko.zst`, `.ko.xz` and `.ko.gz` are decompressed here, not
/// by the `zstd`/`xz`/`gzip` tools, which a minimal system may lack (issue #24 item 7).
fn decompress_module(host: &Path) -> Result<Vec<u8>, RescueError> {
    decompress_module_within(host, MAX_MODULE_BYTES)
}

/// `decompress_module` with the bound `limit`: a module decompressing to more, or not
/// decompressing at all (damaged, truncated, a failed check), is an error naming it.
fn decompress_module_within(host: &Path, limit: u64) -> Result<Vec<u8>, RescueError> {
    use std::io::BufReader;
    let file = std::fs::File::open(host).map_err(|e| RescueError::io("reading", host, e))?;
    let name = host.to_string_lossy();
    let (format, bytes) = if name.ends_with(".zst") {
        let d = zstd::stream::read::Decoder::new(file);
        ("zstd", d.and_then(|d| read_within(d, limit)))
    } else if name.ends_with(".xz") {
        let mut out = WithinLimit {
            bytes: Vec::new(),
            limit,
        };
        let r = lzma_rs::xz_decompress(&mut BufReader::new(file), &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()));
        ("xz", r.map(|()| out.bytes))
    } else if name.ends_with(".gz") {
        let d = flate2::read::GzDecoder::new(BufReader::new(file));
        ("gzip", read_within(d, limit))
    } else {
        ("plain", read_within(file, limit))
    };
    bytes.map_err(|e| RescueError::BadModule {
        path: host.to_path_buf(),
        detail: format!("cannot read it as {format}: {e}"),
    })
}

fn too_big(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("it decompresses to more than {} MiB", limit >> 20),
    )
}

/// Reads `r` to its end, refusing more than `limit` bytes.
fn read_within(r: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(r, limit + 1), &mut out)?;
    if out.len() as u64 > limit {
        return Err(too_big(limit));
    }
    Ok(out)
}

/// A `Vec` that refuses to grow past `limit` bytes (the xz decoder writes into it).
struct WithinLimit {
    bytes: Vec<u8>,
    limit: u64,
}

impl Write for WithinLimit {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.bytes.len() + buf.len()) as u64 > self.limit {
            return Err(too_big(self.limit));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Firmware named by a module's `.modinfo` (`firmware=`), from ROOT's `lib/firmware`.
fn ship_firmware(fs: &RootFs, module: &[u8], rel: &str, tree: &mut Tree, notes: &mut Vec<String>) {
    let Ok(Some(info)) = Elf::parse(module).and_then(|e| e.section(".modinfo")) else {
        return;
    };
    for (key, fw) in modinfo(info) {
        if key != "firmware" {
            continue;
        }
        let found = ["", ".zst", ".xz"]
            .iter()
            .find_map(|ext| fs.find(&format!("lib/firmware/{fw}{ext}")));
        match found {
            Some(r) if fs.host_path(&r.path).is_file() => {
                for (link, target) in &r.links {
                    tree.insert(
                        link,
                        Node::Symlink {
                            target: target.clone(),
                        },
                    );
                }
                tree.insert(
                    &r.path,
                    Node::File {
                        source: Source::Host(fs.host_path(&r.path)),
                        perm: 0o644,
                    },
                );
            }
            _ => notes.push(format!(
                "firmware {fw} (for {}) not in the captured system",
                super::modules::name_of(rel)
            )),
        }
    }
}

/// The agent: `bin/osimage`, stripped. A dynamic one gets its libraries from the host in a
/// private directory and a wrapper that starts it through its own loader.
fn ship_agent(
    spec: &RescueSpec,
    work_dir: &Path,
    tree: &mut Tree,
    notes: &mut Vec<String>,
) -> Result<(), RescueError> {
    let agent = strip_copy(&spec.agent_binary, &work_dir.join("osimage.agent"), notes)?;
    let bytes = std::fs::read(&agent).map_err(|e| RescueError::io("reading", &agent, e))?;
    let info = Elf::parse(&bytes)
        .and_then(|e| e.dynamic_info())
        .map_err(|e| RescueError::Elf {
            path: spec.agent_binary.clone(),
            reason: e.to_string(),
        })?;
    let Some(interp) = info.interp.clone() else {
        tree.insert(
            "bin/osimage",
            Node::File {
                source: Source::Host(agent),
                perm: 0o755,
            },
        );
        return Ok(());
    };
    let host = RootFs::new(Path::new("/"));
    let mut shipper = Shipper::new(&host);
    let mut scratch = Tree::new();
    shipper.ship_program(&mut scratch, &agent.to_string_lossy())?;
    for (asked, path) in &shipper.needed {
        let base = asked.rsplit('/').next().unwrap_or(asked);
        let node = Node::File {
            source: Source::Host(host.host_path(path)),
            perm: 0o755,
        };
        tree.insert(&format!("{AGENT_LIB_DIR}/{base}"), node);
    }
    tree.insert(
        "osimage/bin/osimage",
        Node::File {
            source: Source::Host(agent),
            perm: 0o755,
        },
    );
    let loader = interp.rsplit('/').next().unwrap_or(&interp);
    let wrapper = format!(
        "#!/bin/busybox sh\n# The agent with its own libraries (built by src/rescue/assemble.rs).\n\
         exec /{AGENT_LIB_DIR}/{loader} --library-path /{AGENT_LIB_DIR} /osimage/bin/osimage \"$@\"\n"
    );
    tree.insert(
        "bin/osimage",
        Node::File {
            source: Source::Bytes(wrapper.into_bytes()),
            perm: 0o755,
        },
    );
    notes.push(format!(
        "agent is dynamic: shipped with {} host libraries",
        shipper.needed.len()
    ));
    Ok(())
}

/// `strip` the agent into `out` when binutils is there; else ship it as it is.
fn strip_copy(src: &Path, out: &Path, notes: &mut Vec<String>) -> Result<PathBuf, RescueError> {
    let ok = Command::new("strip")
        .args(["--strip-all", "-o"])
        .arg(out)
        .arg(src)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        notes.push("strip not available: agent shipped unstripped".into());
        std::fs::copy(src, out).map_err(|e| RescueError::io("copying", src, e))?;
    }
    Ok(out.to_path_buf())
}

/// Directories, the device nodes the kernel needs before devtmpfs, init. (The image id goes
/// into an archive of its own: `append_image_id`.)
fn add_skeleton(tree: &mut Tree) {
    for d in [
        "dev", "proc", "sys", "run", "tmp", "mnt", "root", "etc", "sbin", "usr/sbin", "usr/bin",
    ] {
        tree.mkdir_all(d);
    }
    let dev = |kind, perm, major, minor| Node::Device {
        kind,
        perm,
        major,
        minor,
    };
    tree.insert("dev/console", dev(DeviceKind::Char, 0o600, 5, 1));
    tree.insert("dev/null", dev(DeviceKind::Char, 0o666, 1, 3));
    tree.insert(
        "init",
        Node::File {
            source: Source::Bytes(INIT_SCRIPT.as_bytes().to_vec()),
            perm: 0o755,
        },
    );
    tree.mkdir_all("osimage");
    tree.insert(
        "osimage/udhcpc.script",
        Node::File {
            source: Source::Bytes(UDHCPC_SCRIPT.as_bytes().to_vec()),
            perm: 0o755,
        },
    );
    if !tree.contains("etc/passwd") {
        let passwd = b"root:x:0:0:root:/root:/bin/sh\n".to_vec();
        tree.insert(
            "etc/passwd",
            Node::File {
                source: Source::Bytes(passwd),
                perm: 0o644,
            },
        );
        tree.insert(
            "etc/group",
            Node::File {
                source: Source::Bytes(b"root:x:0:\ntty:x:5:\n".to_vec()),
                perm: 0o644,
            },
        );
    }
}

/// cpio → compressed file; returns the cpio's bytes. A zstd initramfs is written part by part
/// (`parts`, from the plan: each part's `len` is filled in), taking `reuse[i]` as part `i`'s
/// frame where given.
fn write_initrd(
    tree: &Tree,
    compression: Compression,
    out: &Path,
    parts: &mut [PartRecord],
    reuse: &[Option<&[u8]>],
) -> Result<u64, RescueError> {
    let part = out.with_extension("part");
    let file = std::fs::File::create(&part).map_err(|e| RescueError::io("creating", &part, e))?;
    let io = |e| RescueError::io("writing", &part, e);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let cpio_len = match compression {
        Compression::Zstd => {
            let mut out = std::io::BufWriter::new(file);
            let frames = zstd_parts(tree, mtime, reuse);
            if frames.len() != parts.len() {
                return Err(io(std::io::Error::other(
                    "internal: the initramfs parts differ from the plan",
                )));
            }
            for (frame, record) in frames.into_iter().zip(parts.iter_mut()) {
                let frame = frame.map_err(io)?;
                out.write_all(&frame).map_err(io)?;
                record.len = frame.len() as u64;
            }
            out.flush().map_err(io)?;
            parts.iter().map(|p| p.raw).sum()
        }
        Compression::None => {
            tree.write_cpio(std::io::BufWriter::new(file), mtime)
                .map_err(io)?
                .1
        }
        Compression::Gzip => gzip_cpio(tree, file, mtime, &part)?,
    };
    std::fs::rename(&part, out).map_err(|e| RescueError::io("renaming", &part, e))?;
    Ok(cpio_len)
}

/// The initramfs as `ZSTD_PARTS` archives (`Tree::split`), each one zstd frame, in unpacking
/// order: `reuse[i]` where given, else compressed here, the largest first, on as many threads
/// as there are cores.
fn zstd_parts(tree: &Tree, mtime: u32, reuse: &[Option<&[u8]>]) -> Vec<std::io::Result<Vec<u8>>> {
    let groups = tree.split(ZSTD_PARTS);
    let mut todo: Vec<(usize, u64)> = (0..groups.len())
        .filter(|&i| reuse.get(i).copied().flatten().is_none())
        .map(|i| (i, tree.bytes_of(&groups[i])))
        .collect();
    todo.sort_unstable_by_key(|&(i, bytes)| (std::cmp::Reverse(bytes), i));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(todo.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<std::io::Result<Vec<u8>>>>> =
        std::sync::Mutex::new((0..groups.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(i, _)) = todo.get(k) else { break };
                    let frame = (|| {
                        let enc = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                        let (enc, _) = tree.write_cpio_of(groups[i].iter().copied(), enc, mtime)?;
                        enc.finish()
                    })();
                    if let Ok(mut d) = done.lock() {
                        d[i] = Some(frame);
                    }
                }
            });
        }
    });
    let done = done.into_inner().unwrap_or_default();
    done.into_iter()
        .enumerate()
        .map(|(i, frame)| match reuse.get(i).copied().flatten() {
            Some(f) => Ok(f.to_vec()),
            None => {
                frame.unwrap_or_else(|| Err(std::io::Error::other("an initramfs part was lost")))
            }
        })
        .collect()
}

/// The initramfs as one gzip stream (a kernel without zstd support), compressed here at level
/// 9 with no name and no time in the header (as `gzip -9 -n`): no `gzip` tool needed.
fn gzip_cpio(
    tree: &Tree,
    file: std::fs::File,
    mtime: u32,
    part: &Path,
) -> Result<u64, RescueError> {
    let io = |e| RescueError::io("writing", part, e);
    let enc =
        flate2::GzBuilder::new().write(std::io::BufWriter::new(file), flate2::Compression::best());
    let (enc, len) = tree.write_cpio(enc, mtime).map_err(io)?;
    enc.finish().and_then(|mut w| w.flush()).map_err(io)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #24 item 12: a root with a kernel but no mkfs (a files-only capture requires
    /// none by filesystem) is refused, not built into an environment that restores nothing.
    #[test]
    fn an_environment_without_any_mkfs_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        let v = "6.1.0-9-amd64";
        std::fs::create_dir_all(r.join("boot")).unwrap();
        std::fs::create_dir_all(r.join(format!("lib/modules/{v}"))).unwrap();
        std::fs::write(r.join(format!("lib/modules/{v}/modules.dep")), "").unwrap();
        let mut kernel = vec![0u8; 0x400];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(r.join(format!("boot/vmlinuz-{v}")), kernel).unwrap();
        let spec = RescueSpec::new(&r, [7; 16]);
        let e = plan_rescue(&spec, &t.path().join("work"))
            .err()
            .map(|e| e.to_string());
        let e = e.expect("refused");
        assert!(
            e.starts_with("the rescue environment could not restore anything: ")
                && e.contains("has no mkfs program"),
            "{e}"
        );
    }

    /// `tests/fixtures/modules/`: `demo.ko` (21570 bytes) and the same compressed by the
    /// real tools as distributions do: `xz --check=crc32 --lzma2=dict=1MiB` (kbuild's
    /// options), `gzip -9 -n`, `zstd -19`.
    fn module_fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/modules")
            .join(name)
    }

    #[test]
    fn compressed_modules_are_decompressed_in_process() {
        let plain = std::fs::read(module_fixture("demo.ko")).unwrap();
        assert_eq!(plain.len(), 21570);
        for ext in ["xz", "gz", "zst"] {
            let got = decompress_module(&module_fixture(&format!("demo.ko.{ext}"))).unwrap();
            assert!(got == plain, ".ko.{ext}: {} bytes differ", got.len());
        }
        assert!(decompress_module(&module_fixture("demo.ko")).unwrap() == plain);
    }

    /// A damaged or truncated module, or one decompressing past the bound, is an error naming
    /// the module's path, never a panic or a module shipped cut short.
    #[test]
    fn damaged_or_oversized_modules_are_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        for ext in ["xz", "gz", "zst"] {
            let good = std::fs::read(module_fixture(&format!("demo.ko.{ext}"))).unwrap();
            let mut flipped = good.clone();
            flipped[good.len() / 2] ^= 0x55;
            let truncated = good[..good.len() - 9].to_vec();
            for (what, bytes) in [("flipped", flipped), ("truncated", truncated)] {
                let path = t.path().join(format!("{what}.ko.{ext}"));
                std::fs::write(&path, bytes).unwrap();
                let e = decompress_module(&path).expect_err(&format!("{what} .{ext}"));
                let msg = e.to_string();
                assert!(
                    matches!(e, RescueError::BadModule { .. })
                        && msg.starts_with(&format!("kernel module {}: ", path.display())),
                    "{msg}"
                );
            }
            let e = decompress_module_within(&module_fixture(&format!("demo.ko.{ext}")), 21569)
                .expect_err("past the bound");
            assert!(e.to_string().contains("decompresses to more than"), "{e}");
            assert!(
                decompress_module_within(&module_fixture(&format!("demo.ko.{ext}")), 21570).is_ok()
            );
        }
    }

    /// A kernel without zstd gets a gzip initramfs, compressed in-process (no `gzip` tool
    /// needed); the real `gzip` reads it back to the cpio archive that was written.
    #[test]
    fn a_gzip_initramfs_is_written_in_process_and_gzip_reads_it() {
        let t = tempfile::tempdir().unwrap();
        let mut tree = Tree::new();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
        tree.insert(
            "etc/data",
            Node::File {
                source: Source::Bytes(data),
                perm: 0o644,
            },
        );
        let out = t.path().join("initrd.img");
        let cpio_len = write_initrd(&tree, Compression::Gzip, &out, &mut [], &[]).unwrap();
        let unpacked = Command::new("gzip").arg("-dc").arg(&out).output().unwrap();
        assert!(unpacked.status.success(), "gzip -dc refused the initramfs");
        assert_eq!(unpacked.stdout.len() as u64, cpio_len);
        assert!(unpacked.stdout.starts_with(b"070701"));
        assert!(std::fs::metadata(&out).unwrap().len() < cpio_len / 2);
    }
}
