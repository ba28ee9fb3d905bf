//! Command line: argument parsing, progress display, exit codes; no logic of its own.
//!
//! Exit codes (docs/DESIGN.md): 0 success, 1 failure with a message naming what and where,
//! 2 usage error (clap's, and the values osimage checks itself: `UsageError` and the library
//! errors whose `is_usage()` says so); 3 finished but incomplete: `capture --keep-going` (and
//! `schedule run`) wrote the image without files it could not read, or `verify --boot`: QEMU
//! could not run the VM, the image was not judged (docs/VERIFY-BOOT.md). A panic (101) is
//! always a bug.

mod args;
mod capture_store;
mod choices;
mod config;
mod diff;
mod export;
mod import;
mod json;
mod keys;
mod man;
mod netboot;
mod progress;
mod read_lock;
mod restore;
mod schedule;
mod show;
mod source;
mod store;
mod store_check;
mod store_key;
mod store_locks;
mod store_pin;
mod store_prune;
mod verify_boot;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use clap::Parser;

pub use args::Cli;
use args::{CaptureArgs, Command, ExtractArgs, InfoArgs, ListArgs, SignArgs, VerifyArgs};
use progress::{TermProgress, Verbosity};

use osimage::ScanOptions;
use osimage::verify;
use osimage::{CaptureOptions, capture_from};
use osimage::{ExtractOptions, extract};

type Failure = Box<dyn std::error::Error>;

/// The exit status of a capture (or scheduled run) that finished, with `--keep-going`, without
/// some files it could not read: the image is written and verified, but incomplete (restic
/// exits 3 for the same).
pub const SKIPPED_FILES: i32 = 3;

/// A malformed value the CLI checks itself (`--map nonsense`, a bad schedule name): exit 2,
/// like clap's own usage errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code of a failure: 2 for a usage error (ours, or one the library classifies as
/// such by its type), 1 for everything else (docs/DESIGN.md "Exit codes").
fn exit_code(e: &(dyn std::error::Error + 'static)) -> i32 {
    let usage = e.is::<UsageError>()
        || e.downcast_ref::<osimage::CaptureError>()
            .is_some_and(|e| e.is_usage())
        || e.downcast_ref::<osimage::ScanError>()
            .is_some_and(|e| e.is_usage())
        || e.downcast_ref::<osimage::ScheduleError>()
            .is_some_and(|e| e.is_usage())
        || e.downcast_ref::<osimage::RestoreError>()
            .is_some_and(|e| e.is_usage())
        || e.downcast_ref::<osimage::NetbootError>()
            .is_some_and(|e| e.is_usage())
        || e.downcast_ref::<osimage::store::StoreError>()
            .is_some_and(|e| e.is_usage());
    if usage { 2 } else { 1 }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    // The restore agent, started by the rescue environment's init as `osimage rescue-agent`,
    // is not a command for users: dispatched before clap, it stays out of --help, the man
    // pages and the completions (clap_complete lists hidden subcommands).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "rescue-agent")
    {
        return osimage::agent::agent_main_from_proc();
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let p = TermProgress::new(verbosity);
    let result = match cli.command {
        Command::Capture(a) => run_capture(a, &p),
        Command::Extract(a) => run_extract(a, &p),
        Command::List(a) => run_list(a),
        Command::Diff(a) => diff::run(a, &p),
        Command::Info(a) => run_info(a),
        Command::Verify(a) => run_verify(a, &p),
        Command::Restore(a) => restore::run(a, &p),
        Command::Schedule(a) => schedule::run(a, &p),
        Command::Sign(a) => run_sign(a, &p),
        Command::Netboot(a) => netboot::run(a, &p),
        Command::Import(a) => import::run(a, &p),
        Command::Export(a) => export::run(a, &p),
        Command::Store(a) => store::run(a, &p),
        Command::Completions { shell } => {
            man::completions(shell, &mut std::io::stdout());
            Ok(0)
        }
        Command::Man { dir } => man::write_pages(&dir).map(|_| 0).map_err(Failure::from),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`osimage list | head`) is not an error worth a message.
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return 0;
            }
            eprintln!("osimage: error: {e}");
            exit_code(e.as_ref())
        }
    }
}

fn threads(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}

fn run_capture(a: CaptureArgs, p: &TermProgress) -> Result<i32, Failure> {
    // docs/CONFIG.md: the file's keys under the flags
    let cfg = a.config.load()?.config;
    let t = cfg.tuning(a.tuning);
    let (encrypt, keys) = (cfg.encrypt(a.encrypt), cfg.key_args(a.keys));
    let output = a
        .output
        .or_else(|| cfg.destination.output.as_ref().map(|o| o.0.clone()))
        .ok_or_else(|| {
            UsageError(
                "capture needs -o OUTPUT (or destination.output in the configuration file, \
                 see osimage-capture(1))"
                    .into(),
            )
        })?;
    let store = capture_store::store_output(&output)?;
    if store.is_none() && !a.tag.is_empty() {
        return Err(UsageError(format!(
            "--tag labels a version in a store (-o s3://BUCKET/PREFIX/NAME), not {}",
            output.display()
        ))
        .into());
    }
    let choices = capture_store::choices(
        (a.no_base, a.cache_dir.clone(), a.no_cache),
        store.is_some(),
        &output,
    )?;
    if let Some(address) = &store {
        let asked =
            encrypt.encrypt || !encrypt.recipient.is_empty() || !encrypt.recipient_file.is_empty();
        capture_store::check_args(a.base.as_deref(), address, asked)?;
    }
    let opts = CaptureOptions {
        root: a.root,
        output,
        scan: ScanOptions {
            one_file_system: t.one_file_system,
            excludes: t.exclude,
            exclude_from: t.exclude_from,
            skip_paths: Vec::new(),
            keep_going: t.keep_going,
        },
        level: t.level.unwrap_or(config::DEFAULT_LEVEL),
        threads: threads(t.threads),
        force: a.force,
        verify: a.verify || cfg.capture.verify == Some(true),
        kernel: t.kernel,
        snapshot: a.snapshot || cfg.capture.snapshot == Some(true),
        files_only: a.files_only,
        lock: encrypt.lock(&keys)?.map(std::sync::Arc::new),
        unlock: std::sync::Arc::new(keys.unlock()?),
    };
    if let Ok(plan) = osimage::plan_capture(&opts) {
        // issue #24: the directory really read (`capture src` said `capturing /`), absolute
        let root = opts
            .root
            .canonicalize()
            .unwrap_or_else(|_| opts.root.clone());
        for fs in plan {
            let at = match fs.mount_point.as_slice() {
                [] => root.clone(),
                mp => root.join(std::ffi::OsStr::from_bytes(mp)),
            };
            p.say(&format!(
                "capturing {} ({} on {})",
                show::escaped(at.as_os_str().as_bytes()),
                fs.fstype,
                fs.source
            ));
        }
    }
    if let Some(address) = &store {
        return capture_store::run(&opts, address, &a.tag, &choices, &a.net, p);
    }
    if let Some(base) = &a.base {
        // A refresh copies the base's blocks in the kernel (FORMAT.md, REFRESH.md): a file.
        source::local_only(base, "capture --base")?;
    }
    let r = capture_from(&opts, a.base.as_deref(), p)?;
    say_capture_notes(&r, p);
    if let Some(line) = &r.rescue {
        p.say(line);
    }
    p.say(&show::capture_line(&r.output, &r));
    Ok(capture_status(&r, "the image was written"))
}

/// What a capture says besides its summary: warnings, what it left out, what it skipped.
fn say_capture_notes(r: &osimage::CaptureReport, p: &TermProgress) {
    for w in &r.warnings {
        p.say(&format!("warning: {w}"));
    }
    for s in &r.left_out {
        p.say(&format!("left out {}: {}", s.path.display(), s.reason));
    }
    for s in &r.skipped {
        eprintln!("osimage: skipped {}: {}", s.path.display(), s.reason);
    }
}

/// A capture's exit status: 0, or SKIPPED_FILES, said, when files were skipped (`done` says
/// what was made without them).
fn capture_status(r: &osimage::CaptureReport, done: &str) -> i32 {
    if r.skipped.is_empty() {
        return 0;
    }
    // issue #24: an image that lacks files is no plain success (restic's 3 too)
    eprintln!(
        "osimage: finished with {} (listed above): {done} without {} (exit status \
         {SKIPPED_FILES})",
        show::count(r.skipped.len() as u64, "skipped file", "skipped files"),
        if r.skipped.len() == 1 { "it" } else { "them" },
    );
    SKIPPED_FILES
}

fn run_extract(a: ExtractArgs, p: &TermProgress) -> Result<i32, Failure> {
    let opened = source::open_locked(&a.image, &a.keys.unlock()?, &a.net, a.lock)?;
    let r = &opened.reader;
    let opts = ExtractOptions {
        paths: a
            .paths
            .iter()
            .map(|x| x.as_os_str().as_bytes().to_vec())
            .collect(),
        threads: threads(a.threads),
        restore_owner: !a.no_owner,
        devices: !a.no_devices,
        capabilities: !a.no_capabilities,
        sync: a.sync,
        into_mounts: false,
    };
    let rep = extract(r, &a.dir, &opts, p);
    say_cost(&opened);
    opened.release_lock(p);
    let rep = rep?;
    p.say(&format!(
        "{}: {}, {}, {} written",
        a.dir.display(),
        show::count(rep.entries, "entry", "entries"),
        show::count(rep.files, "file", "files"),
        show::bytes(rep.bytes_written)
    ));
    Ok(if rep.warnings > 0 { 1 } else { 0 })
}

fn run_list(mut a: ListArgs) -> Result<i32, Failure> {
    let opened = source::open(&a.image, &a.keys.unlock()?, &a.net)?;
    a.image = opened.shown.clone();
    say_cost(&opened);
    let m = opened.reader.manifest();
    let prefix: Vec<u8> = a
        .path
        .as_ref()
        .map(|p| {
            let b = p.as_os_str().as_bytes();
            let b = b.strip_prefix(b"/").unwrap_or(b);
            b.strip_suffix(b"/").unwrap_or(b).to_vec()
        })
        .unwrap_or_default();
    let under = |path: &[u8]| {
        prefix.is_empty()
            || path == prefix.as_slice()
            || (path.starts_with(&prefix) && path.get(prefix.len()) == Some(&b'/'))
    };
    let not_found = || {
        format!(
            "{}: no path /{} in the image",
            a.image.display(),
            String::from_utf8_lossy(&prefix)
        )
    };
    if a.json {
        let entries: Vec<_> = (0..m.entries.len())
            .filter(|&i| under(m.entries.path(i)))
            .map(|i| json::list_entry(m, i))
            .collect();
        if entries.is_empty() {
            return Err(not_found().into());
        }
        let doc = json::List {
            image: a.image.display().to_string(),
            under: format!("/{}", String::from_utf8_lossy(&prefix)),
            count: entries.len(),
            entries,
        };
        json::print("list", &doc)?;
        return Ok(0);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut found = false;
    let names = if a.null {
        show::Names::Raw
    } else {
        show::Names::Escaped
    };
    for (i, e) in m.entries.iter().enumerate() {
        if under(e.path) {
            found = true;
            show::list_line(&mut out, m, i, a.long, names)?;
        }
    }
    out.flush()?;
    if !found {
        return Err(not_found().into());
    }
    Ok(0)
}

fn run_info(a: InfoArgs) -> Result<i32, Failure> {
    let opened = source::open(&a.image, &a.keys.unlock()?, &a.net)?;
    let i = show::info(&opened.reader);
    say_cost(&opened);
    if a.json {
        json::print("info", &i)?;
    } else {
        print!("{}", show::info_table(&i));
    }
    Ok(0)
}

/// For an image read over HTTP, what reading it cost (stderr: stdout may be a JSON document).
fn say_cost(opened: &source::Opened) {
    if let Some(line) = opened.summary() {
        eprintln!("osimage: {line}");
    }
}

fn run_sign(a: SignArgs, p: &TermProgress) -> Result<i32, Failure> {
    let keys = a.config.load()?.config.keys;
    let key = a
        .key
        .or_else(|| keys.signing_key.map(|k| k.0))
        .ok_or_else(|| {
            UsageError(
                "sign needs --key FILE (or keys.signing_key in the configuration file)".into(),
            )
        })?;
    let password_file = a
        .key_password_file
        .or_else(|| keys.signing_key_password_file.map(|f| f.0));
    let mut password = keys::signing_password(&key, password_file.as_deref());
    let sk = osimage::load_secret_key(&key, &mut password)?;
    let sig = a
        .signature
        .clone()
        .unwrap_or_else(|| osimage::default_signature_path(&a.image));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = a
        .image
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    // minisign's own trusted comment layout, so `minisign -V` shows the same facts.
    let comment = format!(
        "timestamp:{now}\tfile:{name}\tosimage {}",
        env!("CARGO_PKG_VERSION")
    );
    osimage::sign_image(&a.image, &sk, &sig, &comment)?;
    p.say(&format!(
        "{}: signed, signature in {}",
        a.image.display(),
        sig.display()
    ));
    Ok(0)
}

fn run_verify(mut a: VerifyArgs, p: &TermProgress) -> Result<i32, Failure> {
    if a.boot {
        if let Some(address) = source::store_address(&a.image)? {
            return verify_boot::run_store(a, &address, p);
        }
        source::local_only(&a.image, "verify --boot")?;
        return verify_boot::run(a, p);
    }
    let mut signature = None;
    if let Some(key) = &a.pubkey {
        source::local_only(&a.image, "verify --pubkey")?;
        let pk = osimage::load_public_key(key)?;
        let comment = osimage::check_signature(&a.image, &pk, a.sig.signature.as_deref())?;
        if !a.json {
            println!("{}: signature good ({comment})", a.image.display());
        }
        signature = Some(json::Signature {
            good: true,
            trusted_comment: comment,
        });
    }
    // verify reads every block: a long read, under a Read lock (docs/STORE.md §5.1)
    let opened = source::open_locked(&a.image, &a.keys.unlock()?, &a.net, a.lock)?;
    a.image = opened.shown.clone();
    let rep = verify(&opened.reader, threads(a.threads), p);
    say_cost(&opened);
    opened.release_lock(p);
    let rep = rep?;
    if a.json {
        json::print(
            "verify",
            &json::Verify {
                image: a.image.display().to_string(),
                verdict: if rep.ok() { "ok" } else { "damaged" },
                ok: rep.ok(),
                packs: rep.packs,
                blocks: rep.blocks,
                chunks: rep.chunks,
                bytes_checked: rep.bytes,
                problems: &rep.problems,
                damaged_files: rep.damaged_files.iter().map(|f| json::path(f)).collect(),
                signature,
            },
        )?;
        return Ok(if rep.ok() { 0 } else { 1 });
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for prob in &rep.problems {
        writeln!(out, "damaged: {prob}")?;
    }
    for f in &rep.damaged_files {
        writeln!(out, "damaged file: /{}", show::escaped(f))?;
    }
    if rep.ok() {
        writeln!(
            out,
            "{}: OK ({}, {}, {}, {} checked)",
            a.image.display(),
            show::count(rep.packs as u64, "pack", "packs"),
            show::count(rep.blocks as u64, "block", "blocks"),
            show::count(rep.chunks as u64, "chunk", "chunks"),
            show::bytes(rep.bytes)
        )?;
        Ok(0)
    } else {
        writeln!(
            out,
            "{}: DAMAGED ({}, {} affected)",
            a.image.display(),
            show::count(rep.problems.len() as u64, "problem", "problems"),
            show::count(rep.damaged_files.len() as u64, "file", "files")
        )?;
        Ok(1)
    }
}
