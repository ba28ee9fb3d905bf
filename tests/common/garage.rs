//! A real S3 server for the store tests (docs/STORE.md §12.1, issue #22): one single-node
//! Garage per [`Garage::start`], on free loopback ports, with its metadata, data, config and
//! log in a scratch directory, a layout applied, one access key and the bucket `images` that
//! key owns. [`Garage::stop`] and [`Garage::start_again`] kill it and bring it back on the same
//! directories and ports (the restarted-store faults of §12.4); dropping it kills it.
//!
//! The binary: `$OSIMAGE_GARAGE`, else the one `.ci/garage-build` installs
//! (/var/cache/osimage-ci/garage-<.ci/garage-version>/bin/garage), else `garage` on PATH. A
//! missing Garage fails the test (never skips it): CI builds it.

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The region the config names; S3 requests must be signed for it.
const REGION: &str = "garage";
/// The bucket [`Garage::start`] creates, read/write/owner for the key.
const BUCKET: &str = "images";
/// How long a start may take before the test fails quoting the server's log: a start takes
/// about a second, but two busy cores can slow it a lot.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// One running single-node Garage server and the key it was set up with.
pub struct Garage {
    /// Holds `meta/`, `data/`, `garage.toml` and `garage.log`; removed after the server.
    dir: TempDir,
    bin: PathBuf,
    s3_port: u16,
    key_id: String,
    secret: String,
    server: Option<Child>,
}

impl Garage {
    /// Starts a fresh Garage on loopback and sets it up: layout (zone dc1, 1 GB), a key, the
    /// bucket `images`. Panics, quoting the server's log, if it does not come up.
    pub fn start() -> Garage {
        let began = Instant::now();
        let mut garage = Garage::up(binary(), 1, &random_hex(32));
        let node = garage.node_id();
        garage.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli_ok(&["layout", "apply", "--version", "1"]);
        garage.set_up_access();
        eprintln!(
            "garage: {} up on {} in {:.1} s",
            garage.bin.display(),
            garage.endpoint(),
            began.elapsed().as_secs_f64()
        );
        garage
    }

    /// A node launched (`launch_node`) and answering RPC, before any layout: on new ports
    /// and in a new directory when one it was given was taken meanwhile.
    pub(super) fn up(bin: PathBuf, replication: u8, rpc_secret: &str) -> Garage {
        (1..=3)
            .find_map(|attempt| {
                let mut garage = Garage::launch_node(bin.clone(), replication, rpc_secret);
                // Before a layout exists the cluster is "unavailable", so `health` would
                // fail: this first wait only needs the RPC to answer.
                match garage.wait_until_up(&["status"]) {
                    Ok(()) => Some(garage),
                    // A port free_ports() released was taken by another process (another
                    // test's server) before ours bound it: new ports, new directory.
                    Err(_) if attempt < 3 && garage.log().contains("AddrInUse") => None,
                    Err(e) => garage.fail(&e),
                }
            })
            .expect("a garage server on the third set of ports")
    }

    /// Once the layout is applied: the key `osimage-test` and the bucket `images` it owns.
    pub(super) fn set_up_access(&mut self) {
        let created = self.cli_ok(&["key", "create", "osimage-test"]);
        (self.key_id, self.secret) = parse_key(&created)
            .unwrap_or_else(|e| self.fail(&format!("`garage key create`: {e}:\n{created}")));
        self.create_bucket(BUCKET);
    }

    /// The S3 endpoint, path-style: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The S3 API's port on 127.0.0.1.
    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// The access key id (`GK` and 24 hex digits).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key's secret (64 hex digits).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The S3 region requests are signed for.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The bucket the key owns from the start.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The variables an AWS-style client (osimage) takes its store from: key, secret, region,
    /// endpoint.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// [`Garage::env`] plus AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE pointing nowhere:
    /// what an osimage run against this server gets, so no `~/.aws` of the machine counts;
    /// and XDG_CACHE_HOME in the server's folder, so a capture's index cache (STORE.md §4.1)
    /// stays out of the machine's `~/.cache`.
    pub fn osimage_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push((
            "XDG_CACHE_HOME".into(),
            self.dir.path().join("cache").display().to_string(),
        ));
        env.push(("AWS_CONFIG_FILE".into(), "/nonexistent/aws-config".into()));
        env.push((
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            "/nonexistent/aws-credentials".into(),
        ));
        env
    }

    /// osimage's own S3 client for the test bucket, set up as an osimage run against this
    /// server is ([`Garage::osimage_env`]): the tests' hands on the bucket.
    pub fn client(&self) -> osimage::s3::S3Client {
        let env = self.osimage_env();
        let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let settings = osimage::s3::S3Settings::resolve(&var, None).expect("S3 settings");
        let policy = osimage::RetryPolicy::default();
        osimage::s3::S3Client::new(&settings, BUCKET, policy, &osimage::Trust::default())
            .expect("S3 client")
    }

    /// `osimage ARGS…` against this server (its [`Garage::osimage_env`]) with `extra`
    /// variables besides.
    pub fn osimage<I, S>(&self, args: I, extra: &[(&str, &str)]) -> super::Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let env = self.osimage_env();
        let mut pairs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pairs.extend_from_slice(extra);
        super::osimage_env(args, &pairs)
    }

    /// `osimage capture ROOT -o ADDRESS -q` through `endpoint` (a relay in front of this
    /// server), started and left running, with `extra` variables, in a process group of its
    /// own: only the test's signals stop and resume it. In the test's group, a job-control
    /// event outside the test (the group orphaned while it holds a stopped process) makes the
    /// kernel send the whole group SIGHUP and SIGCONT; the capture then resumes and takes the
    /// SIGHUP as an interrupt (seen once in a run of `store_locks`).
    pub fn spawn_capture(
        &self,
        endpoint: &str,
        root: &Path,
        address: &str,
        extra: &[(&str, &str)],
    ) -> Child {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osimage"));
        cmd.process_group(0);
        cmd.arg("capture")
            .arg(root)
            .args(["-o", address, "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in self.osimage_env() {
            cmd.env(k, v);
        }
        cmd.env("AWS_ENDPOINT_URL", endpoint)
            .envs(extra.iter().copied());
        cmd.spawn().expect("starting osimage capture")
    }

    /// The keys under `prefix` (relative to the bucket), in listing order.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let listing = self.client().list(prefix).expect("list");
        listing.objects.into_iter().map(|o| o.key).collect()
    }

    /// Creates another bucket, read/write/owner for the key.
    pub fn create_bucket(&self, name: &str) {
        self.cli_ok(&["bucket", "create", name]);
        let key = self.key_id.clone();
        self.cli_ok(&[
            "bucket", "allow", "--read", "--write", "--owner", "--key", &key, name,
        ]);
    }

    /// Kills the server (SIGKILL, as a crash) and waits for it. Its data stays.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // It may have exited on its own; wait() reaps it either way.
            let _ = server.kill();
            server.wait().expect("waiting for the killed garage server");
        }
    }

    /// Starts the server again on the same directories and ports (after [`Garage::stop`])
    /// and waits until the cluster is healthy and the S3 port accepts connections.
    pub fn start_again(&mut self) {
        let began = Instant::now();
        self.stop();
        self.spawn();
        if let Err(e) = self.wait_until_up(&["health", "-q"]) {
            self.fail(&e);
        }
        eprintln!(
            "garage: {} up again in {:.1} s",
            self.endpoint(),
            began.elapsed().as_secs_f64()
        );
    }

    /// The server's log, all its starts (empty if there is none yet).
    pub fn log(&self) -> String {
        std::fs::read(self.path("garage.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The log's last lines, for a failing test's message: enough for a Garage panic's
    /// message above its backtrace.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// Runs `garage -c garage.toml ARGS...`; its stdout, or why it failed.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.command();
        cmd.args(args);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`garage {}` {}: {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Like [`Garage::cli`]; a failure fails the test, quoting the server's log.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.cli(args).unwrap_or_else(|e| self.fail(&e))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `garage -c garage.toml`, with no GARAGE_* variable of ours (GARAGE_RPC_HOST,
    /// GARAGE_RPC_SECRET...) overriding the config.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("GARAGE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1")
            .arg("-c")
            .arg(self.path("garage.toml"));
        cmd
    }

    /// A fresh server of a cluster whose objects are stored `replication` times, sharing
    /// `rpc_secret` with its other nodes; in a new scratch directory on new ports, not
    /// waited for, not connected to any other node.
    pub(super) fn launch_node(bin: PathBuf, replication: u8, rpc_secret: &str) -> Garage {
        let dir = super::scratch();
        let [rpc, s3, admin] = free_ports();
        let config_file = dir.path().join("garage.toml");
        let text = config(dir.path(), [rpc, s3, admin], replication, rpc_secret);
        std::fs::write(&config_file, text).expect("writing garage.toml");
        let mut garage = Garage {
            dir,
            bin,
            s3_port: s3,
            key_id: String::new(),
            secret: String::new(),
            server: None,
        };
        garage.spawn();
        garage
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.path("garage.log"))
            .expect("opening garage.log");
        let err = log.try_clone().expect("garage.log for stderr");
        let mut cmd = self.command();
        cmd.arg("server")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.server = Some(child);
    }

    /// Polls `garage ARGS` until it succeeds and the S3 port accepts a connection. `Err` if
    /// the server exits first; fails the test when the deadline passes.
    pub(super) fn wait_until_up(&mut self, args: &[&str]) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        let s3 = SocketAddr::from((Ipv4Addr::LOCALHOST, self.s3_port));
        loop {
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
            {
                return Err(format!("garage server exited ({status}) while starting"));
            }
            let last = match self.cli(args) {
                Ok(_) => match TcpStream::connect_timeout(&s3, Duration::from_secs(1)) {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("S3 port {}: {e}", self.s3_port),
                },
                Err(e) => e,
            };
            if Instant::now() > deadline {
                self.fail(&format!(
                    "garage did not answer within {} s; last: {last}",
                    START_DEADLINE.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node's full id: `node id -q` prints `HEX@ADDR` (the public address is in the
    /// config), and `layout assign` takes a prefix of HEX.
    pub(super) fn node_id(&self) -> String {
        let address = self.node_address();
        let id = address.split('@').next().unwrap_or("");
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.fail(&format!(
                "`garage node id -q` printed no node id: {address:?}"
            ));
        }
        id.to_string()
    }

    /// `ID@127.0.0.1:RPC`, what another node's `node connect` takes.
    pub(super) fn node_address(&self) -> String {
        self.cli_ok(&["node", "id", "-q"]).trim().to_string()
    }

    pub(super) fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n--- {} (tail) ---\n{}",
            self.path("garage.log").display(),
            self.log_tail()
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- garage.log (tail) ---\n{}", self.log_tail());
        }
    }
}

/// Where the Garage binary is: `$OSIMAGE_GARAGE`, .ci/garage-build's install, PATH.
pub(super) fn binary() -> PathBuf {
    let usable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(p) = std::env::var_os("OSIMAGE_GARAGE") {
        let p = PathBuf::from(p);
        assert!(
            usable(&p),
            "OSIMAGE_GARAGE={} is not an executable file",
            p.display()
        );
        return p;
    }
    let version_file = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/garage-version");
    let version = std::fs::read_to_string(&version_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", version_file.display()));
    let built = PathBuf::from(format!(
        "/var/cache/osimage-ci/garage-{}/bin/garage",
        version.trim()
    ));
    if usable(&built) {
        return built;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("garage"))
            .find(|p| usable(p))
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "no Garage binary: not at {} nor on PATH, and OSIMAGE_GARAGE is not set. Build it \
             once per machine with `bash .ci/garage-build` (or `bash setup.sh --with-tests`), or \
             set OSIMAGE_GARAGE=/path/to/garage",
            built.display()
        )
    })
}

/// Three distinct free loopback ports (RPC, S3, admin): bound to port 0 together, released
/// before the server binds them.
fn free_ports() -> [u16; 3] {
    let bind = || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    let held = [bind(), bind(), bind()];
    held.map(|l| l.local_addr().expect("a bound port").port())
}

/// A node's config (docs/STORE.md §12.1, §12.2): LMDB as .ci/garage-build builds it; ports
/// RPC, S3, admin.
fn config(dir: &Path, [rpc, s3, admin]: [u16; 3], replication: u8, rpc_secret: &str) -> String {
    let d = dir.display();
    format!(
        r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = {replication}
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{admin_token}"
"#,
        admin_token = random_hex(32),
    )
}

/// `n` random bytes from the kernel, in hex.
pub(super) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key id and secret from `garage key create`'s table: lines `Key ID:  GK…` and
/// `Secret key:  …` (labels, then spaces or a tab), each value checked for its shape.
pub fn parse_key(out: &str) -> Result<(String, String), String> {
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| format!("no `{label}` line"))
    };
    let (id, secret) = (field("Key ID:")?, field("Secret key:")?);
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if !(id.len() == 26 && id.starts_with("GK") && hex(&id[2..])) {
        return Err(format!("key id {id:?} is not GK and 24 hex digits"));
    }
    if !(secret.len() == 64 && hex(&secret)) {
        return Err(format!("secret {secret:?} is not 64 hex digits"));
    }
    Ok((id, secret))
}

/// Each version and its head, oldest first, from the JSON `store ls -l --json` printed.
pub fn listed_heads(stdout: &[u8]) -> Result<Vec<(String, serde_json::Value)>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("store ls --json is not JSON ({e})"))?;
    let mut out = Vec::new();
    for series in v["series"].as_array().ok_or("no series array")? {
        for ver in series["versions"].as_array().ok_or("no versions array")? {
            let name = ver["version"]
                .as_str()
                .ok_or("a version without its name")?;
            out.push((name.to_string(), ver["head"].clone()));
        }
    }
    Ok(out)
}
