//! Schedules into an image store (docs/SCHEDULE.md "Into an image store", STORE.md §4.6)
//! against a real Garage on loopback: two `schedule run`s (what the unit calls) with `--keep
//! 1` — the second reuses the first version's blocks and uploads almost nothing, and the
//! first version is forgotten; the run's S3 settings come from the credentials file install
//! wrote (mode 0600) and nowhere else; `install --dry-run` prints the unit and that file with
//! the secret masked; `--format`, a second schedule into the series, a store that does not
//! exist and a wrong secret are refused. Into an encrypted store, the run unlocks it with a
//! key file only root can read, named on the unit's line (docs/SCHEDULE.md "Encrypted images
//! and encrypted stores").

use crate::common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::garage::Garage;

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// A scratch system root where systemd "runs".
fn system(dir: &Path) -> PathBuf {
    let root = dir.join("sys");
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    root
}

/// `schedule install` into `dest` on `sys` with Garage's settings in the environment.
fn install(g: &Garage, sys: &Path, name: &str, dest: &str, extra: &[&str]) -> common::Run {
    let mut a: Vec<&OsStr> = vec![
        s("schedule"),
        s("install"),
        s("--system-root"),
        sys.as_os_str(),
        s("--name"),
        s(name),
        s("--every"),
        s("daily"),
        s("--dest"),
        s(dest),
        s("--keep"),
        s("1"),
        s("--binary"),
        s(env!("CARGO_BIN_EXE_osimage")),
    ];
    a.extend(extra.iter().map(|x| s(x)));
    g.osimage(a, &[])
}

/// `schedule run NAME` as the unit runs it, reading `credentials` and no AWS_* variable or
/// `~/.aws` (the environment of a system service).
fn scheduled_run(g: &Garage, name: &str, root: &Path, dest: &str, creds: &Path) -> common::Run {
    scheduled_run_with(g, name, root, dest, creds, &[])
}

/// [`scheduled_run`] with `extra` arguments (a key file).
fn scheduled_run_with(
    g: &Garage,
    name: &str,
    root: &Path,
    dest: &str,
    creds: &Path,
    extra: &[&OsStr],
) -> common::Run {
    let cache = g.osimage_env();
    let xdg = cache
        .iter()
        .find(|(k, _)| k == "XDG_CACHE_HOME")
        .map(|(_, v)| v.as_str())
        .expect("XDG_CACHE_HOME");
    let mut args = vec![
        s("schedule"),
        s("run"),
        s(name),
        s("--dest"),
        s(dest),
        s("--keep"),
        s("1"),
        s("--root"),
        root.as_os_str(),
        s("--credentials"),
        creds.as_os_str(),
    ];
    args.extend_from_slice(extra);
    common::osimage_env(
        args,
        &[
            ("XDG_CACHE_HOME", xdg),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
        ],
    )
}

/// The bytes a run's journal line says went up.
fn uploaded(run: &common::Run) -> u64 {
    let out = run.stdout_str();
    let line = out
        .lines()
        .find(|l| l.starts_with("committed "))
        .unwrap_or_else(|| panic!("no commit line: {}", run.describe()));
    line.split_once(": uploaded ")
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"))
}

/// The version a run's journal line says was committed.
fn committed(run: &common::Run) -> String {
    let out = run.stdout_str();
    let line = out
        .lines()
        .find(|l| l.starts_with("committed "))
        .unwrap_or_else(|| panic!("no commit line: {}", run.describe()));
    let at = line.split(':').nth(1).expect("address");
    let v = line
        .split_once('@')
        .and_then(|(_, r)| r.split(':').next())
        .unwrap_or_else(|| panic!("no version in {line:?} ({at})"));
    v.to_string()
}

/// A tree of a few hundred files.
fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in 0..6 {
        let sub = root.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..30 {
            std::fs::write(
                sub.join(format!("t{f}.txt")),
                format!("file {d}/{f}\n").repeat(300 + f * 10),
            )
            .unwrap();
        }
        std::fs::write(
            sub.join("noise.bin"),
            common::iso::noise(300_000, 0xca7 + d as u64),
        )
        .unwrap();
    }
    root
}

#[test]
fn two_scheduled_runs_reuse_the_store_and_forget_beyond_keep() {
    let dir = common::scratch();
    let root = tree(dir.path());
    let sys = system(dir.path());
    let g = Garage::start();
    let store = format!("s3://{}/fleet", g.bucket());
    g.osimage([s("store"), s("init"), s(&store)], &[]).ok();
    let series = format!("{store}/golden");
    install(&g, &sys, "golden", &series, &[]).ok();
    let creds = sys.join("etc/osimage/schedule-golden.env");
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let first = scheduled_run(&g, "golden", &root, &series, &creds).ok();
    let v1 = committed(&first);
    let up1 = uploaded(&first);
    assert!(up1 > 1_000_000, "the first run uploads the tree: {up1}");
    // Files written moments before a capture are read again by the next (docs/REFRESH.md).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let second = scheduled_run(&g, "golden", &root, &series, &creds).ok();
    let v2 = committed(&second);
    let up2 = uploaded(&second);
    assert_ne!(v1, v2);
    assert!(
        up2 * 100 < up1,
        "the second run reuses the first version ({up2} of {up1} bytes): {}",
        second.describe()
    );
    let out = second.stdout_str();
    assert!(
        out.contains(&format!("forgot {series}@{v1} (beyond --keep 1)"))
            && out.contains(&format!("osimage store prune {store}")),
        "{}",
        second.describe()
    );
    // The first version is forgotten (gone for readers), the second is the series' newest.
    let ls = g.osimage([s("store"), s("ls"), s(&store)], &[]).ok();
    let listed = ls.stdout_str();
    let line = |v: &str| {
        listed
            .lines()
            .find(|l| l.contains(v))
            .unwrap_or_else(|| panic!("{v} not listed: {listed}"))
            .to_string()
    };
    assert!(line(&v1).contains("forgotten"), "{listed}");
    assert!(!line(&v2).contains("forgotten"), "{listed}");
    g.osimage([s("verify"), s(&series), s("--retry-for"), s("5")], &[])
        .ok()
        .mentions(v2.as_bytes());
    // No lock is left behind (the Capture lock and the forget's Prune lock).
    assert!(
        g.keys("fleet/locks/").is_empty(),
        "{:?}",
        g.keys("fleet/locks/")
    );

    // A run into a prefix without a store, and with a wrong secret: exit 1 naming the address.
    let nowhere = format!("s3://{}/nostore/golden", g.bucket());
    scheduled_run(&g, "golden", &root, &nowhere, &creds)
        .fails()
        .mentions(format!("s3://{}/nostore", g.bucket()).as_bytes());
    let good = std::fs::read_to_string(&creds).unwrap();
    let wrong = good.replace(g.secret(), &"0".repeat(g.secret().len()));
    assert_ne!(good, wrong);
    std::fs::write(&creds, wrong).unwrap();
    scheduled_run(&g, "golden", &root, &series, &creds)
        .fails()
        .mentions(store.as_bytes());
    // A credentials file others can read is refused before the store is read.
    std::fs::write(&creds, good).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    scheduled_run(&g, "golden", &root, &series, &creds)
        .fails()
        .mentions(b"chmod 0600");
}

#[test]
fn install_into_a_store_writes_its_credentials_0600_and_dry_run_masks_the_secret() {
    let dir = common::scratch();
    let sys = system(dir.path());
    let g = Garage::start();
    let store = format!("s3://{}/site", g.bucket());
    g.osimage([s("store"), s("init"), s(&store)], &[]).ok();
    let series = format!("{store}/web01");

    let dry = install(&g, &sys, "web01", &series, &["--dry-run"]).ok();
    let out = dry.stdout_str();
    assert!(!out.contains(g.secret()), "the secret is printed: {out}");
    for needle in [
        format!(
            "would write {} (mode 0600; the secret masked here):",
            sys.join("etc/osimage/schedule-web01.env").display()
        ),
        "AWS_SECRET_ACCESS_KEY='********'".to_string(),
        format!("AWS_ACCESS_KEY_ID='{}'", g.key_id()),
        format!("AWS_ENDPOINT_URL_S3='{}'", g.endpoint()),
        format!(
            "\"--dest\" \"{series}\" \"--keep\" \"1\" \"--credentials\" \
             \"/etc/osimage/schedule-web01.env\""
        ),
        format!("osimage store prune {store}"),
        "(dry run: nothing was created)".to_string(),
    ] {
        assert!(out.contains(&needle), "{needle}: {out}");
    }
    assert!(!out.contains("\"--format\""), "{out}");
    assert!(!sys.join("etc").exists(), "the dry run created files");

    install(&g, &sys, "web01", &series, &[]).ok();
    let creds = sys.join("etc/osimage/schedule-web01.env");
    let text = std::fs::read_to_string(&creds).unwrap();
    assert!(
        text.starts_with("# osimage-schedule: ")
            && text.contains(&format!("AWS_SECRET_ACCESS_KEY='{}'", g.secret())),
        "{text}"
    );
    let service =
        std::fs::read_to_string(sys.join("etc/systemd/system/osimage-web01.service")).unwrap();
    assert!(!service.contains(g.secret()), "{service}");
    let list = g
        .osimage(
            [
                s("schedule"),
                s("list"),
                s("--system-root"),
                sys.as_os_str(),
            ],
            &[],
        )
        .ok()
        .stdout_str();
    assert!(
        list.contains(&format!(
            "→ {series} keep 1; latest: the series' newest version"
        )),
        "{list}"
    );

    // --verify-boot: the network path's needs checked (a plain-HTTP endpoint, busybox), and
    // the unit carries it.
    common::need(&[("busybox", "busybox-static")]);
    install(
        &g,
        &sys,
        "vb",
        &format!("{store}/vb"),
        &["--verify-boot", "--dry-run"],
    )
    .ok()
    .mentions(b"\"--keep\" \"1\" \"--credentials\" \"/etc/osimage/schedule-vb.env\"")
    .mentions(b"\"--verify-boot\"");

    // Refusals: a second schedule into the series, --format, a store that does not exist,
    // a wrong secret.
    install(&g, &sys, "other", &series, &[])
        .fails()
        .mentions(b"already writes into");
    install(
        &g,
        &sys,
        "fmt",
        &format!("{store}/fmt"),
        &["--format", "iso"],
    )
    .usage_error()
    .mentions(b"--format does not apply to a store");
    let nowhere = format!("s3://{}/nostore/x", g.bucket());
    install(&g, &sys, "nowhere", &nowhere, &[])
        .fails()
        .mentions(format!("s3://{}/nostore", g.bucket()).as_bytes());
    let wrong = g.osimage(
        [
            s("schedule"),
            s("install"),
            s("--system-root"),
            sys.as_os_str(),
            s("--name"),
            s("wrong"),
            s("--every"),
            s("daily"),
            s("--dest"),
            s(&format!("{store}/wrong")),
            s("--keep"),
            s("1"),
            s("--binary"),
            s(env!("CARGO_BIN_EXE_osimage")),
        ],
        &[(
            "AWS_SECRET_ACCESS_KEY",
            "0000000000000000000000000000000000000000000000000000000000000000",
        )],
    );
    wrong.fails().mentions(store.as_bytes());
    for n in ["other", "fmt", "nowhere", "wrong"] {
        assert!(
            !sys.join(format!("etc/osimage/schedule-{n}.env")).exists(),
            "{n}: a refused install wrote its credentials"
        );
    }

    // remove takes the credentials file with the units.
    g.osimage(
        [
            s("schedule"),
            s("remove"),
            s("web01"),
            s("--system-root"),
            sys.as_os_str(),
        ],
        &[],
    )
    .ok()
    .mentions(creds.display().to_string().as_bytes());
    assert!(!creds.exists());
}

const PASS: &str = "correct horse battery staple";

/// The text of a fresh age identity file and its public key.
fn age_identity() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    (
        format!(
            "# public key: {public}\n{}\n",
            id.to_string().expose_secret()
        ),
        public,
    )
}

/// Writes `text` to `path` with `mode`.
fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_scheduled_run_unlocks_an_encrypted_store_with_a_key_file_only_root_can_read() {
    let dir = common::scratch();
    let root = tree(dir.path());
    let sys = system(dir.path());
    let g = Garage::start();
    let pass = [("OSIMAGE_PASSPHRASE", PASS)];
    let store = format!("s3://{}/vault", g.bucket());
    g.osimage([s("store"), s("init"), s(&store), s("--encrypt")], &pass)
        .ok();
    // The machine's own key object: an age identity whose public key the store holds.
    let (identity, public) = age_identity();
    g.osimage(
        [
            s("store"),
            s("key"),
            s("add"),
            s(&store),
            s("--recipient"),
            s(&public),
        ],
        &pass,
    )
    .ok();
    // The key file lies under ROOT, as /etc/osimage does under /: left out of the capture.
    let key = root.join("etc/osimage/web01.key");
    write_mode(&key, &identity, 0o600);
    let key_arg = key.display().to_string();
    let series = format!("{store}/web01");

    // Install: a key is needed, it must open the store, and the unit keeps its path only.
    install(&g, &sys, "web01", &series, &[])
        .usage_error()
        .mentions(b"--identity FILE")
        .mentions(store.as_bytes());
    let (other, _) = age_identity();
    let wrong_key = dir.path().join("other.key");
    write_mode(&wrong_key, &other, 0o600);
    install(
        &g,
        &sys,
        "web01",
        &series,
        &["--identity", &wrong_key.display().to_string()],
    )
    .fails()
    .mentions(b"wrong passphrase or key");
    install(&g, &sys, "web01", &series, &["--recipient", &public])
        .usage_error()
        .mentions(b"--recipient does not apply to a store");
    // A key file others can read is refused by install too, naming it.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    install(&g, &sys, "web01", &series, &["--identity", &key_arg])
        .fails()
        .mentions(key_arg.as_bytes())
        .mentions(b"chmod 0600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!sys.join("etc").exists(), "a refused install wrote files");
    install(&g, &sys, "web01", &series, &["--identity", &key_arg]).ok();
    let service =
        std::fs::read_to_string(sys.join("etc/systemd/system/osimage-web01.service")).unwrap();
    assert!(
        service.contains(&format!("\"--identity\" \"{key_arg}\"")),
        "{service}"
    );
    let creds = sys.join("etc/osimage/schedule-web01.env");
    for f in [&service, &std::fs::read_to_string(&creds).unwrap()] {
        assert!(!f.contains("AGE-SECRET-KEY"), "the key was copied: {f}");
    }
    // A passphrase file opens it too (dry run: every check, nothing written).
    let pass_file = dir.path().join("pass");
    write_mode(&pass_file, &format!("{PASS}\n"), 0o400);
    install(
        &g,
        &sys,
        "bypass",
        &format!("{store}/bypass"),
        &[
            "--passphrase-file",
            &pass_file.display().to_string(),
            "--dry-run",
        ],
    )
    .ok()
    .mentions(b"\"--passphrase-file\"");
    // --verify-boot into the encrypted store is accepted: the key file's key is what its
    // runs type at the VM's prompt (VERIFY-BOOT.md "Encrypted images").
    common::need(&[("busybox", "busybox-static")]);
    install(
        &g,
        &sys,
        "vbsealed",
        &format!("{store}/vbsealed"),
        &["--identity", &key_arg, "--verify-boot", "--dry-run"],
    )
    .ok()
    .mentions(b"\"--verify-boot\"");

    // The run: a sealed version, readable with the key, the key file not in it.
    let before = g.keys("vault/");
    let run = scheduled_run_with(
        &g,
        "web01",
        &root,
        &series,
        &creds,
        &[s("--identity"), key.as_os_str()],
    )
    .ok();
    let v = committed(&run);
    let with_key = ["--identity", key_arg.as_str()];
    let mut verify = vec![s("verify"), s(&series), s("--retry-for"), s("5")];
    verify.extend(with_key.iter().map(|a| s(a)));
    g.osimage(verify, &[]).ok().mentions(v.as_bytes());
    let mut list = vec![s("list"), s(&series)];
    list.extend(with_key.iter().map(|a| s(a)));
    let listed = g.osimage(list, &[]).ok().stdout_str();
    assert!(listed.contains("d0/t0.txt"), "{listed}");
    assert!(
        !listed.contains("web01.key"),
        "the key file was captured: {listed}"
    );
    // Without the key: refused (no terminal, no passphrase).
    g.osimage([s("info"), s(&series)], &[])
        .fails()
        .mentions(store.as_bytes());
    // Nothing of the bucket shows the series name (sealed, keyed names).
    for (k, body) in g
        .keys("vault/")
        .into_iter()
        .filter(|k| !before.contains(k))
        .map(|k| {
            let b = g.client().get(&k, 1 << 30).unwrap().unwrap();
            (k, b)
        })
    {
        assert!(!k.contains("web01"), "{k}");
        assert!(
            !body.windows(5).any(|w| w == b"web01"),
            "{k} holds the series name"
        );
    }

    // A key file others can read: refused naming it, before anything is written.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = g.keys("vault/");
    scheduled_run_with(
        &g,
        "web01",
        &root,
        &series,
        &creds,
        &[s("--identity"), key.as_os_str()],
    )
    .fails()
    .mentions(key_arg.as_bytes())
    .mentions(b"chmod 0600");
    assert_eq!(g.keys("vault/"), before, "a refused run wrote to the store");
    // … and a run whose job holds no key names the two options.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    scheduled_run(&g, "web01", &root, &series, &creds)
        .usage_error()
        .mentions(b"with a key file only root can read, --identity FILE")
        .mentions(b"--passphrase-file FILE");
    assert_eq!(g.keys("vault/"), before);
}
