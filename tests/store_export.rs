//! A store version's boot side and `osimage export` (docs/STORE.md §2.6, §8, issue #22)
//! against a real Garage on loopback: a capture of a root with a kernel stores the rescue
//! kernel and initramfs core as two blobs its head names, and an unchanged re-capture uploads
//! neither again; the version exported to a `.oimg` and to an ISO verifies and lists as the
//! version does, the ISO's packs are the store's objects byte for byte, its kernel is the
//! blob and its initramfs starts with the core blob; a version captured without a kernel is
//! refused as an ISO, and a damaged pack stops the export, named, leaving no file; `--compact`
//! writes only the blocks a version uses into new image packs (a `.oimg` smaller than the
//! byte copy for a version sharing packs, and an ISO), reading as the version does. (The ISO
//! is not booted here: the VM tests boot captured ISOs, and this one has the same files.)
//! The same versions serve `store_netboot`'s checks of `osimage netboot` of a version.

use crate::common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use common::garage::Garage;
use common::kernel::{kernel_package, staging_root};
use osimage::store::objects::VersionHead;
use osimage::store::{Store, StoreRoot};

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` against `g`.
fn osimage(g: &Garage, args: &[&OsStr]) -> common::Run {
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::osimage_env(args.to_vec(), &pairs)
}

/// The keys under `prefix` (relative to the bucket), sorted.
fn keys(g: &Garage, prefix: &str) -> Vec<String> {
    let listing = g.client().list(prefix).expect("list");
    let mut k: Vec<String> = listing.objects.into_iter().map(|o| o.key).collect();
    k.sort();
    k
}

/// Every version of `series` in the store at `prefix`, oldest first, with its head.
fn heads(g: &Garage, prefix: &str, series: &str) -> Vec<VersionHead> {
    let root = StoreRoot::parse(&format!("s3://{}/{prefix}", g.bucket())).expect("store root");
    let store = Store::open(g.client(), root, "test").expect("open the store");
    store
        .versions(series)
        .expect("versions")
        .iter()
        .map(|v| store.read_head(series, v).expect("head"))
        .collect()
}

/// The object `key` of the bucket, whole.
fn object(g: &Garage, key: &str) -> Vec<u8> {
    g.client()
        .get(key, 1 << 30)
        .expect("get")
        .unwrap_or_else(|| panic!("{key} is missing"))
}

/// The file `path` of `iso`, as xorriso extracts it (this kernel cannot mount iso9660).
fn iso_file(iso: &Path, path: &str, out: &Path) -> Vec<u8> {
    let run = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", path])
        .arg(out)
        .output()
        .expect("xorriso");
    assert!(
        run.status.success(),
        "xorriso -extract {path}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// The one capture of a root with a kernel that the test below examines.
#[test]
fn a_version_with_rescue_blobs_exports_to_an_iso_and_a_oimg_that_read_as_it_does() {
    common::kernel::need_iso_capture_tools();
    let (x, kernel_version) = kernel_package();
    let root = staging_root(&x, &kernel_version);
    let dir = common::scratch();
    let g = Garage::start();
    let store = format!("s3://{}/fleet", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/web01");
    // The same payload as capture_iso's: the host programs the root links stay out.
    let capture = || {
        let mut args = vec![
            s("capture"),
            root.as_os_str(),
            s("-o"),
            s(&address),
            s("-q"),
        ];
        for d in common::kernel::HOST_PROGRAM_DIRS {
            args.extend([s("--exclude"), s(d)]);
        }
        osimage(&g, &args).ok()
    };
    capture();

    // Two blobs, named by the head, their ids the manifest's rescue record's.
    let blobs = keys(&g, "fleet/rescue/");
    assert_eq!(
        blobs.len(),
        2,
        "the kernel and the initramfs core: {blobs:?}"
    );
    let first = heads(&g, "fleet", "web01");
    let rescue = first[0]
        .rescue
        .clone()
        .expect("the head names its rescue blobs");
    assert_eq!(rescue.kernel_version, kernel_version);
    assert!(rescue.net_part.is_none());
    for b in [&rescue.kernel, &rescue.initrd_core] {
        assert!(
            blobs.contains(&format!("fleet/{}", b.object)),
            "{} not among {blobs:?}",
            b.object
        );
        let bytes = object(&g, &format!("fleet/{}", b.object));
        assert_eq!(*blake3::hash(&bytes).as_bytes(), b.id, "{}", b.object);
    }
    let kernel_blob = object(&g, &format!("fleet/{}", rescue.kernel.object));
    let core_blob = object(&g, &format!("fleet/{}", rescue.initrd_core.object));
    assert_eq!(
        kernel_blob,
        std::fs::read(root.join(format!("boot/vmlinuz-{kernel_version}"))).unwrap(),
        "the kernel blob is the root's kernel"
    );

    // An unchanged re-capture names the same blobs and uploads none.
    capture();
    assert_eq!(keys(&g, "fleet/rescue/"), blobs, "no blob uploaded again");
    let both = heads(&g, "fleet", "web01");
    assert_eq!(both.len(), 2);
    assert_eq!(
        both[1].rescue.as_ref(),
        Some(&rescue),
        "the same blobs named"
    );

    // Exports of the first version, to a .oimg and to an ISO.
    let version = format!("{address}@{}", first[0].version);
    let (oimg, iso) = (dir.path().join("web01.oimg"), dir.path().join("web01.iso"));
    for out in [&oimg, &iso] {
        let run = osimage(&g, &[s("export"), s(&version), s("-o"), out.as_os_str()]).ok();
        // Its report is a status line, on stderr as a capture's is.
        assert!(run.stderr.contains("exported"), "{}", run.describe());
        osimage(&g, &[s("verify"), out.as_os_str()]).ok();
    }
    let long = |img: &OsStr| osimage(&g, &[s("list"), s("-l"), img]).ok().stdout;
    let listed = long(s(&version));
    assert_eq!(long(oimg.as_os_str()), listed, "list -l of the .oimg");
    assert_eq!(long(iso.as_os_str()), listed, "list -l of the ISO");
    // --compact writes an ISO as well: new image packs, the same files.
    let compact_iso = dir.path().join("web01-compact.iso");
    let run = osimage(
        &g,
        &[
            s("export"),
            s(&version),
            s("-o"),
            compact_iso.as_os_str(),
            s("--compact"),
        ],
    )
    .ok();
    assert!(run.stderr.contains("new packs"), "{}", run.describe());
    osimage(&g, &[s("verify"), compact_iso.as_os_str()]).ok();
    assert_eq!(
        long(compact_iso.as_os_str()),
        listed,
        "list -l of the compact ISO"
    );

    // The ISO's packs are the store's objects; its kernel the blob, its initrd the core
    // followed by the image's own id archive.
    let x = dir.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    for (i, id) in first[0].packs.iter().enumerate() {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("fleet/packs/{}/{hex}", &hex[..2]);
        let in_iso = iso_file(
            &iso,
            &format!("/osimage/packs/pack-{i:06}.osp"),
            &x.join(format!("pack-{i}")),
        );
        assert!(in_iso == object(&g, &key), "pack {i} differs from {key}");
    }
    let kernel = iso_file(&iso, "/osimage/rescue/vmlinuz", &x.join("vmlinuz"));
    assert!(kernel == kernel_blob, "the ISO's kernel is the blob");
    let initrd = iso_file(&iso, "/osimage/rescue/initrd.img", &x.join("initrd.img"));
    assert!(
        initrd.len() > core_blob.len() && initrd[..core_blob.len()] == core_blob[..],
        "the ISO's initrd starts with the core blob"
    );
    let id_hex: String = first[0]
        .image_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tail = String::from_utf8_lossy(&initrd[core_blob.len()..]).into_owned();
    assert!(
        tail.contains("osimage/image-id") && tail.contains(&id_hex),
        "the image's own id archive follows the core"
    );
    // The same version served for a network restore (`store_netboot`).
    let run = |args: &[&OsStr]| osimage(&g, args);
    crate::store_netboot::a_version_netboots_without_credentials(
        &run,
        &version,
        &first[0],
        &kernel_blob,
        &core_blob,
        dir.path(),
    );
    // Each netboot pinned the version until its URLs expire (STORE.md §9.3), under a lock it
    // has deleted.
    assert_eq!(g.keys("fleet/pins/").len(), 2, "one pin per netboot");
    assert!(g.keys("fleet/locks/").is_empty(), "no lock left");
    // `store ls -l` shows the one still in force (the other expired after 1 s).
    let ls = osimage(&g, &[s("store"), s("ls"), s(&store), s("-l"), s("--json")]).ok();
    let doc: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("store ls --json");
    let pins = doc["series"][0]["versions"][0]["pins"]
        .as_array()
        .expect("pins")
        .clone();
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert!(pins[0]["why"].as_str().unwrap().starts_with("netboot "));
    let text = osimage(&g, &[s("store"), s("ls"), s(&store), s("-l")]).ok();
    assert!(
        text.stdout_str().contains("pinned until"),
        "{}",
        text.describe()
    );
    // The same version named by plain URLs (`--plain-url`).
    crate::store_netboot::plain_urls_read_the_version(
        &g,
        &run,
        &version,
        &store,
        &first[0],
        dir.path(),
    );
    // A damaged pack, read as the netboot agent reads it, is named by its object.
    crate::store_netboot::a_flipped_byte_in_a_pack_is_named_by_its_object(&g, dir.path());
}

/// A tree of files, no kernel.
fn tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    for d in 0..4 {
        let sub = root.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..20 {
            std::fs::write(
                sub.join(format!("t{f}.txt")),
                format!("{d}/{f}\n").repeat(900),
            )
            .unwrap();
        }
        std::fs::write(sub.join("noise.bin"), common::iso::noise(400_000, d as u64)).unwrap();
    }
    root
}

#[test]
fn no_rescue_environment_and_a_damaged_pack_are_refused_leaving_no_file() {
    let dir = common::scratch();
    let root = tree(dir.path());
    let g = Garage::start();
    let store = format!("s3://{}/site", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/files");
    let run = osimage(&g, &[s("capture"), root.as_os_str(), s("-o"), s(&address)]).ok();
    assert!(
        run.stderr.contains("no rescue environment"),
        "the capture says it has none: {}",
        run.describe()
    );
    assert!(keys(&g, "site/rescue/").is_empty());
    let version = heads(&g, "site", "files")[0].version.clone();

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let iso = out.join("files.iso");
    let run = osimage(&g, &[s("export"), s(&address), s("-o"), iso.as_os_str()]).fails();
    assert!(
        run.stderr.contains("captured without a rescue environment")
            && run.stderr.contains(&version),
        "refused naming the version: {}",
        run.describe()
    );
    let run = |args: &[&OsStr]| osimage(&g, args);
    crate::store_netboot::refusals(&run, &address, dir.path());
    let oimg = out.join("files.oimg");
    exports_compact(&g, &root, &address, dir.path());
    // One byte of a block flipped in a pack object: same length, same header.
    let packs = keys(&g, "site/packs/");
    let victim = packs.first().expect("a pack");
    let mut bytes = object(&g, victim);
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    g.client().put(victim, &bytes).expect("put");
    let first = format!("{address}@{version}");
    let run = osimage(&g, &[s("export"), s(&first), s("-o"), oimg.as_os_str()]).fails();
    assert!(
        run.stderr.contains(victim.as_str()),
        "the pack is named: {}",
        run.describe()
    );
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing is left in {}: {left:?}",
        out.display()
    );
}

/// `export --compact` (STORE.md §8): a second version of `root` without half its large files
/// shares the first one's packs and leaves their blocks unused; its compact `.oimg` is
/// smaller than the byte-copy export, has neither store packs nor the `store` extension, and
/// verifies (every block read), lists and extracts as the version does.
fn exports_compact(g: &Garage, root: &Path, address: &str, dir: &Path) {
    for d in 0..2 {
        std::fs::remove_file(root.join(format!("d{d}/noise.bin"))).unwrap();
    }
    osimage(g, &[s("capture"), root.as_os_str(), s("-o"), s(address)]).ok();
    let out = dir.join("compact");
    std::fs::create_dir_all(&out).unwrap();
    let (whole, compact) = (out.join("whole.oimg"), out.join("compact.oimg"));
    osimage(g, &[s("export"), s(address), s("-o"), whole.as_os_str()]).ok();
    let run = osimage(
        g,
        &[
            s("export"),
            s(address),
            s("-o"),
            compact.as_os_str(),
            s("--compact"),
        ],
    )
    .ok();
    assert!(
        run.stderr.contains("new packs of the blocks it uses") && run.stderr.contains("left out"),
        "{}",
        run.describe()
    );
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let (whole_len, compact_len) = (size(&whole), size(&compact));
    eprintln!("export of {address}: {whole_len} bytes byte for byte, {compact_len} compact");
    // Two of the four noise files are gone: about a third of what the byte copy holds
    // (804,333 and 534,527 bytes when written).
    assert!(
        compact_len * 5 < whole_len * 4,
        "the compact export ({compact_len} bytes) leaves out the two removed files' blocks \
         (the byte copy has {whole_len})"
    );
    let reader = osimage::PayloadReader::open(&compact, &osimage::Unlock::default())
        .expect("the compact export opens");
    let m = reader.manifest();
    assert!(
        osimage::format::store_ref::from_manifest(m)
            .expect("extensions")
            .is_none(),
        "no store extension"
    );
    // FORMAT.md §3, §6.1: the packs lie end to end after the image header, each an image
    // pack (version 2) naming its position.
    use osimage::format::records::{PackHeader, RECORD_LEN};
    let bytes = std::fs::read(&compact).unwrap();
    let mut at = RECORD_LEN;
    for (i, p) in m.packs.iter().enumerate() {
        let mut h = [0u8; RECORD_LEN];
        h.copy_from_slice(&bytes[at..at + RECORD_LEN]);
        let header = PackHeader::decode(&h).expect("pack header");
        assert!(
            matches!(header, PackHeader::Image { index, image_id } if index == i as u32 && image_id == m.image.id),
            "pack {i}: {header:?}"
        );
        at += p.len as usize;
    }
    drop(bytes);
    let verified = osimage(g, &[s("verify"), compact.as_os_str()]).ok();
    assert!(
        verified.stdout_str().contains(": OK"),
        "{}",
        verified.describe()
    );
    let long = |img: &OsStr| osimage(g, &[s("list"), s("-l"), img]).ok().stdout;
    assert_eq!(long(compact.as_os_str()), long(s(address)), "list -l");
    let (a, b) = (out.join("x-compact"), out.join("x-store"));
    for (img, to) in [(compact.as_os_str(), &a), (s(address), &b)] {
        osimage(g, &[s("extract"), img, s("-C"), to.as_os_str()]).ok();
    }
    let diffs = common::compare::diff_trees(&b, &a, common::compare::Options { nlink: true });
    common::compare::assert_no_differences(&diffs, "extract of the compact export");
}
