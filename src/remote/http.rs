//! `HttpObject`: one object on an HTTP(S) server, read with `Range: bytes=a-b` GETs, one
//! range per request (some servers refuse several). docs/STORE.md §7.3 says which answers
//! are tried again and which stop the read; every byte a server sends is checked against
//! the range asked for, and the object's length is fixed by the first answer, so an object
//! replaced while it is read is noticed. An object may also be several objects of known
//! lengths read as one (`parts`: a store version's packs).

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::ahead::{Ahead, build_cut_runs};
use super::pages::{PAGE, ReadCache};
use super::range::{ContentRange, host, parse_content_range, redact};
use super::retry::{Counters, MAX_CONNECTIONS, NetStats, RetryPolicy};
use super::trust::Trust;
use crate::format::source::RangeRead;
use attempts::Attempts;
use parts::Parts;
pub(crate) use parts::{Part, Signer, Target};

/// Reads this long or longer are not served from pages (a page that held part of a large
/// block would fetch those bytes twice).
const DIRECT_FROM: u64 = 4 << 10;

/// An object on an HTTP(S) server, read with Range requests. Reads that were planned
/// (`RangeRead::plan`) are fetched ahead by a pool of threads; dropping the object ends them.
pub struct HttpObject {
    inner: Arc<Inner>,
}

/// What the reading threads and the fetchers share.
struct Inner {
    conn: Conn,
    /// The object's length, from the first answer's `Content-Range` (the parts' sum).
    len: u64,
    /// Recent pages and block reads.
    reads: Mutex<ReadCache>,
    /// Signalled when a fetch of `reads` ends (`ReadCache::start`).
    fetched: Condvar,
    /// The plan and the runs fetched ahead. Lock order: `ahead`, then `reads` (never the
    /// reverse).
    ahead: Mutex<Ahead>,
    /// Signalled when a run ends, a piece is read, the plan changes or the object is dropped.
    moved: Condvar,
    /// Fetcher threads to start at the first plan.
    connections: AtomicUsize,
    /// Whether they were started.
    started: AtomicBool,
}

/// A lock whose holder panicked still guards whole values here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The agent every request of `remote` goes through: TLS with `trust`'s roots, the policy's
/// timeouts, HTTP error statuses as answers (each is classified by its caller).
pub(crate) fn agent(policy: &RetryPolicy, trust: &Trust) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(trust.tls_config())
        .http_status_as_error(false)
        .timeout_connect(Some(policy.connect_timeout))
        .timeout_per_read(Some(policy.read_timeout))
        .user_agent(concat!("osimage/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// How to reach the object.
struct Conn {
    agent: ureq::Agent,
    /// Where its bytes are: one object, or several end to end.
    parts: Parts,
    /// The object as messages show it (the URL without its query, `range::redact`).
    shown: String,
    /// `--ca FILE`, for the message about an untrusted certificate.
    ca_file: Option<String>,
    policy: RetryPolicy,
    counters: Counters,
    /// The object was dropped: retries stop waiting and give up.
    closed: AtomicBool,
}

/// Why a request failed.
enum Fail {
    /// Worth another try (§7.3's "transient" row).
    Transient(String),
    /// Trying again cannot help.
    Fatal(String),
}

impl HttpObject {
    /// Opens `url` (`http://` or `https://`, whose server `trust` must believe): one ranged
    /// GET of the first page learns the object's length and checks that the server honours
    /// Range. Errors name the URL without its query.
    pub fn open(url: &str, policy: RetryPolicy, trust: &Trust) -> std::io::Result<HttpObject> {
        HttpObject::open_target(Target::Fixed(url.to_string()), redact(url), policy, trust)
    }

    /// Opens an object whose every request goes to a URL `sign` makes afresh (an S3 object
    /// read with short-lived signatures); `shown` names it in messages.
    pub(crate) fn open_signed(
        sign: Signer,
        shown: String,
        policy: RetryPolicy,
        trust: &Trust,
    ) -> std::io::Result<HttpObject> {
        HttpObject::open_target(Target::Signed(sign), shown, policy, trust)
    }

    /// Opens `parts` as one object, their concatenation, named `shown`: their lengths are
    /// known (a store version's packs, from its manifest), so nothing is asked of a server
    /// until a read. They share one plan, budget, fetcher pool, read cache and counters; a
    /// request never crosses from one part into the next, and errors name the part.
    pub(crate) fn open_parts(
        parts: Vec<Part>,
        shown: String,
        policy: RetryPolicy,
        trust: &Trust,
    ) -> std::io::Result<HttpObject> {
        let parts = Parts::many(parts, &shown)?;
        let conn = Conn::new(parts, shown, policy, trust);
        Ok(HttpObject::with(conn, ReadCache::default()))
    }

    /// Opens the objects at `urls` (URL, length in bytes) as one, their concatenation, named
    /// `shown` in messages (`open_parts`). No request is made until a read.
    pub fn open_urls(
        urls: &[(String, u64)],
        shown: String,
        policy: RetryPolicy,
        trust: &Trust,
    ) -> std::io::Result<HttpObject> {
        let parts = urls
            .iter()
            .map(|(url, len)| Part {
                len: *len,
                target: Target::Fixed(url.clone()),
                shown: redact(url),
            })
            .collect();
        HttpObject::open_parts(parts, shown, policy, trust)
    }

    fn open_target(
        target: Target,
        shown: String,
        policy: RetryPolicy,
        trust: &Trust,
    ) -> std::io::Result<HttpObject> {
        let parts = Parts::one(target, shown.clone());
        let mut conn = Conn::new(parts, shown, policy, trust);
        let mut tries = Attempts::new(&conn, &conn.shown);
        let (len, first) = loop {
            match conn.probe() {
                Ok(got) => break got,
                Err(Fail::Fatal(m)) => return Err(conn.error(m)),
                Err(Fail::Transient(m)) => tries.failed(m).map_err(|m| conn.error(m))?,
            }
        };
        conn.parts.set_len(len);
        let mut reads = ReadCache::default();
        reads.put(0, Arc::new(first));
        Ok(HttpObject::with(conn, reads))
    }

    /// The object over `conn`, with what its opening read already.
    fn with(conn: Conn, reads: ReadCache) -> HttpObject {
        // The policy's fetcher count and budget (docs/STORE.md §7.2.1).
        let connections = conn.policy.connections;
        let budget = conn.policy.fetch_cache;
        HttpObject {
            inner: Arc::new(Inner {
                len: conn.parts.len(),
                conn,
                reads: Mutex::new(reads),
                fetched: Condvar::new(),
                ahead: Mutex::new(Ahead::new(budget)),
                moved: Condvar::new(),
                connections: AtomicUsize::new(connections.clamp(1, MAX_CONNECTIONS)),
                started: AtomicBool::new(false),
            }),
        }
    }

    /// What reading the object has cost so far.
    pub fn stats(&self) -> NetStats {
        self.inner.conn.counters.snapshot()
    }

    /// How many requests a plan is fetched with (1 to 32; the policy's `connections` until
    /// then). Takes effect at the first plan.
    pub fn set_connections(&self, n: usize) {
        let n = n.clamp(1, MAX_CONNECTIONS);
        self.inner.connections.store(n, Ordering::Relaxed);
    }
}

impl Drop for HttpObject {
    /// The fetchers end: those waiting at once, those fetching after their request (a
    /// request retrying gives up at its next pause).
    fn drop(&mut self) {
        self.inner.conn.closed.store(true, Ordering::SeqCst);
        lock(&self.inner.ahead).closed = true;
        self.inner.moved.notify_all();
    }
}

impl Inner {
    /// Reads `buf` at `at` with as many requests as it takes, one part at a time (a request
    /// never crosses from one part into the next).
    fn fetch(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        let parts = &self.conn.parts;
        for s in parts.split(at, buf.len()) {
            self.conn
                .fetch(s.part, &mut buf[s.from..s.from + s.len], s.at)
                .map_err(|m| std::io::Error::other(parts.message(s.part, m)))?;
        }
        Ok(())
    }

    /// A small read, served from the page cache (each page fetched once).
    fn read_paged(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let pos = at + done as u64;
            let index = pos / PAGE;
            let page = self.page(index)?;
            let off = (pos - index * PAGE) as usize;
            let n = (buf.len() - done).min(page.len().saturating_sub(off));
            if n == 0 {
                return Err(std::io::Error::other(format!(
                    "internal: page {index} holds no byte at {pos}"
                )));
            }
            buf[done..done + n].copy_from_slice(&page[off..off + n]);
            done += n;
        }
        Ok(())
    }

    /// `len` bytes at `at`: a kept read's, else fetched by this reader while other readers
    /// of the same bytes wait for it (never fetched twice at once), and kept.
    fn cached_read(&self, at: u64, len: usize) -> std::io::Result<Arc<Vec<u8>>> {
        // A poisoned lock only means another reader panicked; the reads are still whole.
        let lock = || self.reads.lock().unwrap_or_else(|p| p.into_inner());
        let mut reads = lock();
        loop {
            if let Some(r) = reads.get(at, len) {
                return Ok(r);
            }
            if reads.start(at) {
                break;
            }
            reads = self.fetched.wait(reads).unwrap_or_else(|p| p.into_inner());
        }
        drop(reads);
        // Fetched without the lock, so readers of other bytes are not held up behind it.
        let mut bytes = vec![0u8; len];
        let got = self.fetch(&mut bytes, at).map(|()| Arc::new(bytes));
        lock().done(at, got.as_ref().ok().cloned());
        self.fetched.notify_all();
        got
    }

    fn page(&self, index: u64) -> std::io::Result<Arc<Vec<u8>>> {
        let start = index * PAGE;
        self.cached_read(start, PAGE.min(self.len.saturating_sub(start)) as usize)
    }
}

impl RangeRead for HttpObject {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        let inner = &self.inner;
        let end = at.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > inner.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at {at} lie past the end of the object ({} bytes)",
                    buf.len(),
                    inner.len
                ),
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(bytes) = inner.planned(at, buf.len())? {
            buf.copy_from_slice(&bytes);
            return Ok(());
        }
        // Reads of 4 KiB or more (blocks, a manifest) are fetched as asked (a kept read first:
        // `cached_read`); headers, directory records and small blocks through the pages,
        // unless kept whole (a planned piece another thread took out of the plan).
        if (buf.len() as u64) < DIRECT_FROM {
            let kept = lock(&inner.reads).get(at, buf.len());
            match kept {
                Some(bytes) => {
                    buf.copy_from_slice(&bytes);
                    Ok(())
                }
                None => inner.read_paged(buf, at),
            }
        } else if lock(&inner.reads).read_pages(buf, at, inner.len) {
            Ok(())
        } else {
            buf.copy_from_slice(&inner.cached_read(at, buf.len())?);
            Ok(())
        }
    }

    fn len(&self) -> u64 {
        self.inner.len
    }

    fn describe(&self) -> String {
        self.inner.conn.shown.clone()
    }

    /// Bytes that failed their hash: the kept pages and reads holding them, and the planned
    /// pieces, are dropped, so the next read goes to the server.
    fn forget(&self, at: u64, len: u64) -> bool {
        // The plan first: a reader taking a piece out of it keeps the piece among the reads
        // under the plan's lock, so once both are forgotten neither holds the bytes.
        lock(&self.inner.ahead).forget(at, len);
        lock(&self.inner.reads).forget(at, len);
        self.inner.conn.counters.refetch();
        true
    }

    /// Fetches `ranges` ahead of the reads (docs/STORE.md §7.2.1): merged into runs of up
    /// to 16 MiB that end where a part does, one request each, by `connections` threads
    /// started at the first plan.
    fn plan(&self, ranges: Vec<(u64, u64)>) {
        let inner = &self.inner;
        let mut ranges = ranges;
        // What the pages an image was opened with hold is not fetched again.
        {
            let reads = lock(&inner.reads);
            ranges.retain(|&(at, len)| !reads.covered(at, len, inner.len));
        }
        let runs = build_cut_runs(&ranges, inner.conn.parts.ends());
        let any = !runs.is_empty();
        lock(&inner.ahead).replace(runs);
        inner.moved.notify_all();
        if any && !inner.started.swap(true, Ordering::SeqCst) {
            for i in 0..inner.connections.load(Ordering::Relaxed) {
                let shared = inner.clone();
                // Without fetchers, each reader fetches the runs it needs itself.
                let _ = std::thread::Builder::new()
                    .name(format!("osimage-fetch-{i}"))
                    .spawn(move || fetcher(shared));
            }
        }
    }
}

impl Conn {
    fn new(parts: Parts, shown: String, policy: RetryPolicy, trust: &Trust) -> Conn {
        Conn {
            agent: agent(&policy, trust),
            parts,
            shown,
            ca_file: trust.ca_file().map(|p| p.display().to_string()),
            policy,
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// Reads `buf` at `at` of `part` with as many requests as it takes: a body that breaks
    /// off is resumed from where it stopped (§7.3 "Resume").
    fn fetch(&self, part: &Part, buf: &mut [u8], at: u64) -> Result<(), String> {
        let mut tries = Attempts::new(self, &part.shown);
        let mut done = 0;
        while done < buf.len() {
            let (got, fail) = self.get(part, &mut buf[done..], at + done as u64);
            if got > 0 {
                if fail.is_some() {
                    self.counters.resumed(got as u64);
                }
                done += got;
                tries.progressed();
            }
            match fail {
                None => {}
                Some(Fail::Fatal(m)) => return Err(m),
                Some(Fail::Transient(m)) => tries.failed(m)?,
            }
        }
        Ok(())
    }

    /// An error for the user: the URL (without its query) and what went wrong.
    fn error(&self, msg: String) -> std::io::Error {
        std::io::Error::other(format!("{}: {msg}", self.shown))
    }

    /// A message from elsewhere (ureq, the OS) with the URL's query taken out, should it
    /// quote the URL.
    fn scrub(&self, part: &Part, msg: String) -> String {
        match &part.target {
            Target::Fixed(url) => scrub_url(msg, url, &part.shown),
            Target::Signed(_) => scrub_queries(msg),
        }
    }

    /// Sends `GET` of bytes `first..=last` of `part`.
    fn send(
        &self,
        part: &Part,
        first: u64,
        last: u64,
    ) -> Result<ureq::http::Response<ureq::Body>, Fail> {
        self.counters.request();
        let url = part.target.url();
        self.agent
            .get(&url)
            .header("Range", format!("bytes={first}-{last}"))
            .call()
            .map_err(|e| self.classify_error(part, e))
    }

    fn classify_error(&self, part: &Part, e: ureq::Error) -> Fail {
        use ureq::Error as E;
        // A certificate that is not believed stays so however often it is asked for.
        if let Some(c) = certificate_error(&e) {
            return Fail::Fatal(self.untrusted(c));
        }
        // ureq prefixes the OS's words ("io: Connection refused"); they say enough alone.
        let msg = match &e {
            E::Io(io) => self.scrub(part, io.to_string()),
            _ => self.scrub(part, e.to_string()),
        };
        match e {
            E::BadUri(_)
            | E::Http(_)
            | E::InvalidProxyUrl
            | E::TooManyRedirects
            | E::RedirectFailed
            | E::RequireHttpsOnly(_)
            | E::Pem(_) => Fail::Fatal(msg),
            _ => Fail::Transient(msg),
        }
    }

    /// What to say about a server certificate rustls refused.
    fn untrusted(&self, e: &rustls::CertificateError) -> String {
        use rustls::CertificateError as C;
        let known = match &self.ca_file {
            Some(f) => format!("the bundled roots nor the CA certificates in {f}"),
            None => "the bundled roots".to_string(),
        };
        match e {
            // BadSignature: a CA of the same name as the issuer's is known, but it did not
            // sign this certificate; to the user, the same thing.
            C::UnknownIssuer | C::BadSignature => format!(
                "the server's certificate is not trusted: it is signed by a CA that is not \
                 among {known} (give that CA's certificate with --ca FILE or OSIMAGE_CA)"
            ),
            other => format!("the server's certificate is not accepted: {other}"),
        }
    }

    /// The `Content-Range` of a 206 answer, or why there is none (every other status).
    fn range_of(
        &self,
        part: &Part,
        resp: &mut ureq::http::Response<ureq::Body>,
    ) -> Result<ContentRange, Fail> {
        let status = resp.status().as_u16();
        match status {
            206 => resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    Fail::Fatal("the server answered 206 without a usable Content-Range".into())
                }),
            200 => Err(Fail::Fatal(format!(
                "{} ignores Range requests; serve the image from a server that supports them",
                host(&part.shown)
            ))),
            404 | 410 => Err(Fail::Fatal(not_found(status, resp))),
            400 | 401 | 403 => Err(Fail::Fatal(refusal(status, resp))),
            408 | 429 | 500 | 502 | 503 | 504 => Err(Fail::Transient(format!(
                "the server answered HTTP {status}"
            ))),
            _ => Err(Fail::Fatal(format!("unexpected answer HTTP {status}"))),
        }
    }

    /// The first request: the object's length and its first page.
    fn probe(&self) -> Result<(u64, Vec<u8>), Fail> {
        let part = self.parts.first();
        let mut resp = self.send(part, 0, PAGE - 1)?;
        if resp.status().as_u16() == 416 {
            return Err(Fail::Fatal(
                "the object is empty (the server refuses any range: HTTP 416)".into(),
            ));
        }
        let r = self.range_of(part, &mut resp)?;
        let Some(total) = r.total else {
            return Err(Fail::Fatal(
                "the server does not say the object's length (Content-Range total `*`)".into(),
            ));
        };
        if r.first != 0 || r.last != PAGE.min(total) - 1 {
            return Err(Fail::Fatal(format!(
                "the server sent bytes {}-{} when 0-{} were asked for",
                r.first,
                r.last,
                PAGE - 1
            )));
        }
        let mut first = vec![0u8; r.len() as usize];
        let (got, fail) = self.body(part, &mut resp, &mut first);
        match fail {
            Some(f) => Err(f),
            None if got == first.len() => Ok((total, first)),
            None => Err(Fail::Transient("the body ended early".into())),
        }
    }

    /// One GET of `buf.len()` bytes at `at` of `part`: how many bytes of `buf` it filled,
    /// and the failure that stopped it short.
    fn get(&self, part: &Part, buf: &mut [u8], at: u64) -> (usize, Option<Fail>) {
        let last = at + buf.len() as u64 - 1;
        let mut resp = match self.send(part, at, last) {
            Ok(r) => r,
            Err(f) => return (0, Some(f)),
        };
        if resp.status().as_u16() == 416 {
            let total = unsatisfied_total(&resp);
            let now = "the server refuses the range: HTTP 416".to_string();
            return (0, Some(self.changed(part, total, now)));
        }
        match self.range_of(part, &mut resp) {
            Err(f) => return (0, Some(f)),
            Ok(r) if r.first != at || r.last != last || r.total != Some(part.len) => {
                let total = r.total.map_or_else(|| "*".to_string(), |t| t.to_string());
                let now = format!("the server sent bytes {}-{}/{total}", r.first, r.last);
                return (0, Some(self.changed(part, r.total, now)));
            }
            Ok(_) => {}
        }
        self.body(part, &mut resp, buf)
    }

    /// The answer to a read of `part` does not fit it: the server says it holds `total`
    /// bytes (if it says), and `now` what it sent. Trying again cannot help.
    fn changed(&self, part: &Part, total: Option<u64>, now: String) -> Fail {
        let len = part.len;
        match total {
            // A part's length was known before any request: the object there is another.
            Some(t) if self.parts.named() && t != len => Fail::Fatal(format!(
                "it has {t} bytes, {len} expected: the object was replaced ({now})"
            )),
            _ => Fail::Fatal(format!(
                "the object changed while being read (expected {len} bytes; {now})"
            )),
        }
    }

    /// Reads the body into `buf`: how much arrived, and why it stopped short.
    fn body(
        &self,
        part: &Part,
        resp: &mut ureq::http::Response<ureq::Body>,
        buf: &mut [u8],
    ) -> (usize, Option<Fail>) {
        let mut reader = resp.body_mut().as_reader();
        let mut got = 0;
        let fail = loop {
            if got == buf.len() {
                break None;
            }
            match reader.read(&mut buf[got..]) {
                Ok(0) => {
                    break Some(Fail::Transient(format!(
                        "the body ended after {got} of {} bytes",
                        buf.len()
                    )));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    break Some(Fail::Transient(self.scrub(
                        part,
                        format!("the body broke off after {got} of {} bytes: {e}", buf.len()),
                    )));
                }
            }
        };
        self.counters.received(got as u64);
        (got, fail)
    }
}

/// Why a server refused a request (§7.3's 400/401/403 rows), from the first 4 KiB of its
/// answer's body: an expired presigned URL, else the S3 error code if there is one.
pub(crate) fn refusal(status: u16, resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let body = error_body(resp);
    if body.contains("Request has expired") || body.contains("Date is too old") {
        return format!("the presigned URL has expired (HTTP {status})");
    }
    match s3_code(&body) {
        Some(c @ "InvalidAccessKeyId") => format!(
            "the server does not know the access key (HTTP {status} {c}): check \
             AWS_ACCESS_KEY_ID or the profile's aws_access_key_id"
        ),
        Some(c @ "SignatureDoesNotMatch") => format!(
            "the request's signature does not match (HTTP {status} {c}): check \
             AWS_SECRET_ACCESS_KEY (or the profile's aws_secret_access_key) and the region"
        ),
        Some(c) => match s3_message(&body) {
            Some(m) => format!("the server refused access (HTTP {status} {c}: {m})"),
            None => format!("the server refused access (HTTP {status} {c})"),
        },
        None => format!("the server refused access (HTTP {status})"),
    }
}

/// What to say about a 404 or 410: S3 says whether the bucket or the key is missing.
pub(crate) fn not_found(status: u16, resp: &mut ureq::http::Response<ureq::Body>) -> String {
    match s3_code(&error_body(resp)) {
        Some(c @ "NoSuchBucket") => format!("no such bucket on the server (HTTP {status} {c})"),
        Some(c) => format!("not found on the server (HTTP {status} {c})"),
        None => format!("not found on the server (HTTP {status})"),
    }
}

/// The object's length a 416 answer gives (`Content-Range: bytes */N`), if it does.
fn unsatisfied_total(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    let n = v.trim().strip_prefix("bytes */")?.trim();
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// The first 4 KiB of an error answer's body, as text.
pub(crate) fn error_body(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let mut body = Vec::new();
    // An unreadable body leaves the message without its code; the status says enough.
    let _ = resp
        .body_mut()
        .as_reader()
        .take(4096)
        .read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

/// `msg` with `url` in it shown as `shown`, and its query, if quoted alone, as `…`.
fn scrub_url(msg: String, url: &str, shown: &str) -> String {
    if url == shown {
        return msg;
    }
    let msg = msg.replace(url, shown);
    match url.find('?') {
        Some(q) if q + 1 < url.len() => msg.replace(&url[q + 1..], "…"),
        _ => msg,
    }
}

/// `msg` with every URL query in it (what follows a `?` up to a space or quote) cut out:
/// the signatures of URLs made afresh for each request, which no fixed string matches.
pub(crate) fn scrub_queries(msg: String) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg.as_str();
    while let Some(q) = rest.find('?') {
        out.push_str(&rest[..q]);
        let after = &rest[q + 1..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')'))
            .unwrap_or(after.len());
        if end > 0 {
            out.push_str("?…");
        } else {
            out.push('?');
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The certificate error inside a failed request's error, if that is why it failed:
/// ureq reports rustls' errors itself or inside an I/O error of the TLS stream.
fn certificate_error(e: &ureq::Error) -> Option<&rustls::CertificateError> {
    let tls = match e {
        ureq::Error::Rustls(t) => t,
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        _ => return None,
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => Some(c),
        _ => None,
    }
}

/// The `<Code>` of an S3 error body, if it has a plausible one.
pub(crate) fn s3_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    let code = &body[start..start + len];
    (!code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(code)
}

/// The `<Message>` of an S3 error body, when it is short printable text (Garage says why
/// it refused there: "Forbidden: Invalid signature", "No such key: GK…").
fn s3_message(body: &str) -> Option<&str> {
    let start = body.find("<Message>")? + "<Message>".len();
    let len = body[start..].find("</Message>")?;
    let m = body[start..start + len].trim();
    (!m.is_empty() && m.len() <= 200 && m.bytes().all(|b| (0x20..0x7f).contains(&b))).then_some(m)
}

mod attempts;
mod parts;
mod pool;
use pool::fetcher;
#[cfg(test)]
mod tests;
