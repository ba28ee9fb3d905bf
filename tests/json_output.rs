//! `--json` (issue #24 item 14, docs/JSON.md): each reading command prints exactly one JSON
//! document on stdout, an object opening with `schema_version` 1 and its `command`, holding
//! the real values of the image: counts, a file's size and mode, a diff's changed path, a
//! verify verdict, exact names (a newline kept by JSON's escapes, a byte that is not UTF-8 in
//! `path_b64`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{self, osimage};

/// The one document on `stdout`; fails when there are none, several, or other text.
fn one_document(stdout: &[u8]) -> Value {
    let text = std::str::from_utf8(stdout).expect("JSON output is UTF-8");
    let docs: Vec<Value> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not only JSON ({e}):\n{text}"));
    assert_eq!(docs.len(), 1, "not exactly one document:\n{text}");
    docs.into_iter().next().unwrap()
}

/// Runs `osimage ARGS`, expecting `code`, and returns its document after checking the
/// envelope.
fn json_run(args: &[&OsStr], command: &str, code: i32) -> Value {
    let run = common::osimage(args.iter().copied());
    assert_eq!(run.code, code, "{}", run.describe());
    let doc = one_document(&run.stdout);
    // the version and the command come first (serde_json's Value sorts keys: read the text)
    let head = format!("{{\n  \"schema_version\": 1,\n  \"command\": \"{command}\",\n");
    assert!(
        run.stdout.starts_with(head.as_bytes()),
        "{}",
        run.describe()
    );
    assert_eq!(doc["schema_version"], 1, "{doc:#}");
    assert_eq!(doc["command"], command, "{doc:#}");
    doc
}

/// A tree with a file of known size and mode, a directory, a symlink, a kernel in boot/ and
/// two awkward names: one holding a newline, one holding byte 0xff.
fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("src");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("a.txt"), vec![b'a'; 1234]).unwrap();
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(root.join("sub/b.txt"), b"b\n").unwrap();
    std::fs::write(root.join("boot/vmlinuz-6.1.0-test"), b"not really a kernel").unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    std::fs::write(root.join("new\nline"), b"n").unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"caf\xff")), b"c").unwrap();
    root
}

fn image_of(dir: &Path) -> (PathBuf, PathBuf) {
    let root = tree(dir);
    let image = dir.join("one.oimg");
    common::capture(&root, &image, &[]);
    (root, image)
}

fn entry<'a>(list: &'a Value, path: &str) -> &'a Value {
    list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("no {path:?} in {list:#}"))
}

#[test]
fn list_json_holds_every_entry_with_exact_names() {
    let dir = common::scratch();
    let (_, image) = image_of(dir.path());
    let list = json_run(
        &["list".as_ref(), image.as_os_str(), "--json".as_ref()],
        "list",
        0,
    );
    // the root, a.txt, sub, sub/b.txt, boot, boot/vmlinuz-…, link, the two odd names
    assert_eq!(list["count"], 9, "{list:#}");
    assert_eq!(list["entries"].as_array().unwrap().len(), 9);
    let a = entry(&list, "/a.txt");
    assert_eq!(a["type"], "file");
    assert_eq!(a["size"], 1234);
    assert_eq!(a["mode"], 0o640);
    assert_eq!(a["mode_string"], "-rw-r-----");
    assert!(a["mtime"].as_str().unwrap().ends_with('Z'), "{a}");
    assert!(
        a["mtime_ns"].as_i64().unwrap() > 1_600_000_000_000_000_000,
        "{a}"
    );
    assert_eq!(entry(&list, "/sub")["type"], "directory");
    let link = entry(&list, "/link");
    assert_eq!(
        (&link["type"], &link["target"]),
        (&"symlink".into(), &"a.txt".into())
    );
    // a newline is JSON's own escape, no base64 needed
    let nl = entry(&list, "/new\nline");
    assert_eq!(nl.get("path_b64"), None, "{nl}");
    // 0xff: the text is lossy, the bytes are exact in base64
    let bad = entry(&list, "/caf\u{fffd}");
    assert_eq!(bad["path_b64"], "L2NhZv8=", "{bad}");
    // PATH narrows it
    let sub = json_run(
        &[
            "list".as_ref(),
            image.as_os_str(),
            "sub".as_ref(),
            "--json".as_ref(),
        ],
        "list",
        0,
    );
    assert_eq!(sub["count"], 2, "{sub:#}");
}

#[test]
fn info_json_counts_and_labels_kernels() {
    let dir = common::scratch();
    let (_, image) = image_of(dir.path());
    let info = json_run(
        &["info".as_ref(), image.as_os_str(), "--json".as_ref()],
        "info",
        0,
    );
    assert_eq!(info["entries"], 9, "{info:#}");
    assert_eq!(info["files"], 5, "{info:#}");
    assert_eq!(info["directories"], 3, "{info:#}");
    assert_eq!(info["symlinks"], 1, "{info:#}");
    assert_eq!(info["container"], "oimg");
    assert_eq!(info["system_kernels"], serde_json::json!(["6.1.0-test"]));
    assert!(
        !info["host_kernel"].as_str().unwrap().is_empty(),
        "{info:#}"
    );
    assert!(info["capture_seconds"].is_f64(), "{info:#}");
    assert_eq!(info.get("duration_ms"), None);
    // a directory records why it has no layout
    let layout = &info["layout"];
    assert_eq!(layout["restorable"], false, "{layout:#}");
    assert!(
        layout["none"].as_str().unwrap().contains("plain directory"),
        "{layout:#}"
    );
    assert_eq!(layout["disks"], serde_json::json!([]), "{layout:#}");
    assert_eq!(layout["boot"]["firmware"], "unknown", "{layout:#}");
    // the table says which kernel is which
    let table = osimage(["info".as_ref(), image.as_os_str()])
        .ok()
        .stdout_str();
    assert!(table.contains("system kernels     6.1.0-test"), "{table}");
    assert!(table.contains("running on the capturing host"), "{table}");
}

#[test]
fn verify_json_gives_the_verdict() {
    let dir = common::scratch();
    let (_, image) = image_of(dir.path());
    let v = json_run(
        &["verify".as_ref(), image.as_os_str(), "--json".as_ref()],
        "verify",
        0,
    );
    assert_eq!(v["verdict"], "ok", "{v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["packs"], 1, "{v:#}");
    assert!(v["chunks"].as_u64().unwrap() >= 1, "{v:#}");
    assert_eq!(v["damaged_files"], serde_json::json!([]));
    // a .oimg cannot boot: an error on stderr, nothing on stdout
    let boot = osimage([
        "verify".as_ref(),
        "--boot".as_ref(),
        "--json".as_ref(),
        image.as_os_str(),
    ])
    .fails();
    assert!(boot.stdout.is_empty(), "{}", boot.describe());
}

#[test]
fn diff_json_names_the_changed_path() {
    let dir = common::scratch();
    let (root, old) = image_of(dir.path());
    std::fs::write(root.join("a.txt"), vec![b'z'; 99]).unwrap();
    std::fs::remove_file(root.join("sub/b.txt")).unwrap();
    let new = dir.path().join("two.oimg");
    common::capture(&root, &new, &[]);
    let d = json_run(
        &[
            "diff".as_ref(),
            old.as_os_str(),
            new.as_os_str(),
            "--json".as_ref(),
        ],
        "diff",
        0,
    );
    let changes = d["changes"].as_array().unwrap();
    let a = changes
        .iter()
        .find(|c| c["path"] == "/a.txt")
        .expect("a.txt changed");
    assert_eq!(a["kind"], "changed", "{d:#}");
    assert_eq!((&a["old_size"], &a["new_size"]), (&1234.into(), &99.into()));
    let b = changes
        .iter()
        .find(|c| c["path"] == "/sub/b.txt")
        .expect("b.txt gone");
    assert_eq!(b["kind"], "removed", "{d:#}");
    assert_eq!(d["removed"], 1, "{d:#}");
}

#[test]
fn restore_json_is_one_document_with_plan_and_report() {
    let dir = common::scratch();
    let (_, image) = image_of(dir.path());
    let out = dir.path().join("out");
    let dry = json_run(
        &[
            "restore".as_ref(),
            image.as_os_str(),
            "--to".as_ref(),
            out.as_os_str(),
            "--dry-run".as_ref(),
            "--json".as_ref(),
        ],
        "restore",
        0,
    );
    assert_eq!(
        (&dry["mode"], &dry["dry_run"]),
        (&"directory".into(), &true.into())
    );
    assert_eq!(dry["plan"]["entries"], 9, "{dry:#}");
    assert_eq!(dry["report"], Value::Null);
    assert!(!out.exists(), "a dry run writes nothing");
    let done = json_run(
        &[
            "restore".as_ref(),
            image.as_os_str(),
            "--to".as_ref(),
            out.as_os_str(),
            "--json".as_ref(),
        ],
        "restore",
        0,
    );
    assert_eq!(done["dry_run"], false);
    assert_eq!(
        done["plan"], dry["plan"],
        "the real run followed the dry run's plan"
    );
    assert_eq!(done["report"]["files"], 5, "{done:#}");
    assert_eq!(done["report"]["entries"], 9, "{done:#}");
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap().len(), 1234);
}

#[test]
fn restore_dry_run_json_plans_a_disk_without_enum_dumps() {
    let dir = common::scratch();
    let (_, image) = image_of(dir.path());
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let dry = json_run(
        &[
            "restore".as_ref(),
            image.as_os_str(),
            "--target".as_ref(),
            disk.as_os_str(),
            "--default-layout".as_ref(),
            "--dry-run".as_ref(),
            "--json".as_ref(),
        ],
        "restore",
        0,
    );
    assert_eq!(dry["mode"], "disk", "{dry:#}");
    let plan = &dry["plan"]["disks"][0];
    assert_eq!(plan["target"]["size_bytes"], 2u64 << 30, "{plan:#}");
    assert_eq!(plan["table"]["type"], "gpt", "{plan:#}");
    let parts = plan["partitions"].as_array().unwrap();
    assert!(parts.iter().all(|p| p["type_guid"].is_string()), "{plan:#}");
    let root = plan["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["mount_point"] == "/")
        .expect("a root filesystem");
    assert_eq!(root["fstype"], "ext4", "{plan:#}");
    assert!(plan["boot"]["default_layout"].as_bool().unwrap());
    // no Rust enum names anywhere
    let text = dry.to_string();
    for dump in ["\"Gpt\"", "\"Mbr\"", "\"None\"", "\"Part\"", "\"Volume\""] {
        assert!(!text.contains(dump), "{dump} in {dry:#}");
    }
}
