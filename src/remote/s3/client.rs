//! Requests to one bucket: every request a URL signed for 15 minutes by rusty-s3 (SigV4 in the
//! query, payload `UNSIGNED-PAYLOAD`), sent through the same ureq agent as plain HTTP. Reads
//! go through `HttpObject` (ranges, retries, resume, the read cache), with a URL signed anew
//! for each request; uploads carry `Content-MD5` so the server refuses a body damaged on
//! the way, and large ones go in parts that are retried alone.

use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::Digest as _;
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, GetObject,
    HeadObject, PutObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action};

use super::{S3Address, S3Error, S3Settings};
use crate::remote::HttpObject;
use crate::remote::http::{
    Part, Target, agent, error_body, not_found, refusal, s3_code, scrub_queries,
};
use crate::remote::retry::{RetryPolicy, backoff, jitter_unit};
use crate::remote::trust::Trust;

/// How long the signature of one request stays good.
pub(super) const REQUEST_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest a presigned URL may live (SigV4's limit: 7 days).
pub const PRESIGN_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Uploads of more than this go in parts of at least this size.
const PART: u64 = 16 << 20;
/// S3's limit on the parts of one upload.
const MAX_PARTS: u64 = 10_000;

/// One bucket on one server, with the credentials to use it.
pub struct S3Client {
    pub(super) bucket: Arc<Bucket>,
    style: rusty_s3::UrlStyle,
    pub(super) credentials: Arc<Credentials>,
    pub(super) agent: ureq::Agent,
    policy: RetryPolicy,
    trust: Trust,
}

/// Why one request failed.
pub(super) enum Fail {
    /// Worth another try: a connection failure, 5xx, 429 or 408.
    Transient(String),
    Fatal(String),
}

impl S3Client {
    /// A client for `bucket` on the server `settings` name.
    pub fn new(
        settings: &S3Settings,
        bucket: &str,
        policy: RetryPolicy,
        trust: &Trust,
    ) -> Result<S3Client, S3Error> {
        let b = Bucket::new(
            settings.endpoint.clone(),
            settings.style,
            bucket.to_string(),
            settings.region.clone(),
        )
        .map_err(|e| {
            S3Error::Settings(format!(
                "bucket {bucket:?} at {}: {e:?} (a bucket name with dots or an IP address \
                 endpoint needs path-style requests: OSIMAGE_S3_ADDRESSING=path)",
                settings.endpoint
            ))
        })?;
        let credentials = match &settings.token {
            Some(t) => Credentials::new_with_token(&settings.key_id, &settings.secret, t),
            None => Credentials::new(&settings.key_id, &settings.secret),
        };
        Ok(S3Client {
            bucket: Arc::new(b),
            style: settings.style,
            credentials: Arc::new(credentials),
            agent: agent(&policy, trust),
            policy,
            trust: trust.clone(),
        })
    }

    /// The address of `key` in this bucket, as messages show it.
    pub(super) fn shown(&self, key: &str) -> String {
        S3Address {
            bucket: self.bucket.name().to_string(),
            key: key.to_string(),
        }
        .to_string()
    }

    /// `key` opened for reading with Range GETs, each signed anew.
    pub fn open(&self, key: &str) -> std::io::Result<HttpObject> {
        let (bucket, credentials, key_owned) = (
            self.bucket.clone(),
            self.credentials.clone(),
            key.to_string(),
        );
        let sign = Box::new(move || {
            GetObject::new(&bucket, Some(&credentials), &key_owned)
                .sign(REQUEST_TTL)
                .to_string()
        });
        HttpObject::open_signed(sign, self.shown(key), self.policy, &self.trust)
    }

    /// The objects `keys_and_lens` names (key, length) read as one, their concatenation
    /// (a version's packs: one plan, budget and fetcher pool for all), each request signed
    /// anew; `shown` names the whole. Nothing is asked of the server until a read.
    pub fn open_many(
        &self,
        keys_and_lens: &[(String, u64)],
        shown: String,
    ) -> std::io::Result<HttpObject> {
        let parts = keys_and_lens.iter().map(|(key, len)| {
            let (bucket, credentials, k) =
                (self.bucket.clone(), self.credentials.clone(), key.clone());
            let sign = move || GetObject::new(&bucket, Some(&credentials), &k).sign(REQUEST_TTL);
            let target = Target::Signed(Box::new(move || sign().to_string()));
            Part {
                len: *len,
                target,
                shown: self.shown(key),
            }
        });
        HttpObject::open_parts(parts.collect(), shown, self.policy, &self.trust)
    }

    /// The server this client sends its requests to (scheme, host and port), as messages
    /// and README files show it.
    pub fn endpoint(&self) -> String {
        let u = self.bucket.base_url();
        match u.port() {
            Some(port) => format!("{}://{}:{port}", u.scheme(), u.host_str().unwrap_or("")),
            None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
        }
    }

    /// A URL anyone may GET `key` with for `ttl` (at most [`PRESIGN_MAX`]), naming the
    /// server by `endpoint` when given (where other machines reach it, when that differs
    /// from where this one does: the host is part of the signature), else by this client's.
    pub fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
        endpoint: Option<&url::Url>,
    ) -> Result<String, S3Error> {
        if ttl.is_zero() || ttl > PRESIGN_MAX {
            return Err(S3Error::Request(format!(
                "a presigned URL lives between 1 second and 7 days, not {} s",
                ttl.as_secs()
            )));
        }
        let other;
        let bucket = match endpoint {
            None => &*self.bucket,
            Some(e) => {
                other = Bucket::new(
                    e.clone(),
                    self.style,
                    self.bucket.name().to_string(),
                    self.bucket.region().to_string(),
                )
                .map_err(|err| S3Error::Settings(format!("endpoint {e}: {err:?}")))?;
                &other
            }
        };
        Ok(GetObject::new(bucket, Some(&self.credentials), key)
            .sign(ttl)
            .to_string())
    }

    /// The length of `key`, or `None` when there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        self.with_retries(key, || {
            let url = HeadObject::new(&self.bucket, Some(&self.credentials), key).sign(REQUEST_TTL);
            let mut resp = self.agent.head(url.as_str()).call().map_err(transport)?;
            match resp.status().as_u16() {
                200 => Ok(Some(
                    resp.headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .ok_or_else(|| {
                            Fail::Fatal("the server's answer has no Content-Length".into())
                        })?,
                )),
                404 => Ok(None),
                s => Err(status_fail(s, &mut resp)),
            }
        })
    }

    /// The whole object `key`, or `None` when there is none; an object of more than
    /// `max_len` bytes is refused before it is read (a small object's reader bounds it).
    pub fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, S3Error> {
        self.with_retries(key, || {
            let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(REQUEST_TTL);
            let mut resp = self.agent.get(url.as_str()).call().map_err(transport)?;
            match resp.status().as_u16() {
                200 => {}
                // A missing bucket is no missing object: say it.
                404 => {
                    let body = error_body(&mut resp);
                    return match s3_code(&body) {
                        Some(c @ "NoSuchBucket") => Err(Fail::Fatal(format!(
                            "no such bucket on the server (HTTP 404 {c})"
                        ))),
                        _ => Ok(None),
                    };
                }
                s => return Err(status_fail(s, &mut resp)),
            }
            let too_big = |n: u64| {
                Fail::Fatal(format!(
                    "{n} bytes or more, larger than the {max_len} expected"
                ))
            };
            let announced = resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(n) = announced.filter(|&n| n > max_len) {
                return Err(too_big(n));
            }
            let mut body = Vec::new();
            resp.body_mut()
                .as_reader()
                .take(max_len + 1)
                .read_to_end(&mut body)
                .map_err(|e| Fail::Transient(format!("reading the object: {e}")))?;
            if body.len() as u64 > max_len {
                return Err(too_big(body.len() as u64));
            }
            if announced.is_some_and(|n| n != body.len() as u64) {
                return Err(Fail::Transient(format!(
                    "the body ended after {} of {} bytes",
                    body.len(),
                    announced.unwrap_or_default()
                )));
            }
            Ok(Some(body))
        })
    }

    /// Deletes `key`; an object already gone is no error (S3 answers 204 either way).
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.with_retries(key, || {
            let url =
                DeleteObject::new(&self.bucket, Some(&self.credentials), key).sign(REQUEST_TTL);
            let mut resp = self.agent.delete(url.as_str()).call().map_err(transport)?;
            match resp.status().as_u16() {
                200 | 204 | 404 => Ok(()),
                s => Err(status_fail(s, &mut resp)),
            }
        })
    }

    /// Uploads the `len` bytes of `file` as `key`: one PUT up to 16 MiB, else a multipart
    /// upload (aborted when it fails, so no part is left behind). The object appears whole
    /// or not at all. `sent` is told the bytes uploaded so far.
    pub fn upload(
        &self,
        key: &str,
        file: &std::fs::File,
        len: u64,
        sent: &mut dyn FnMut(u64),
    ) -> Result<(), S3Error> {
        if len <= PART {
            let body = read_part(file, 0, len as usize, &self.shown(key))?;
            self.put(key, &body)?;
            sent(len);
            return Ok(());
        }
        let part = part_size(len);
        let upload_id = self.create_upload(key)?;
        let result = (|| {
            let mut etags = Vec::new();
            let mut at = 0u64;
            let mut number: u16 = 1;
            while at < len {
                let n = part.min(len - at) as usize;
                let body = read_part(file, at, n, &self.shown(key))?;
                etags.push(self.upload_part(key, &upload_id, number, &body)?);
                at += n as u64;
                number += 1;
                sent(at);
            }
            self.complete_upload(key, &upload_id, &etags)
        })();
        if result.is_err() {
            // The upload failed already; a failed abort leaves parts the bucket's lifecycle
            // rules remove, and changes nothing about the error to report.
            let _ = self.abort_upload(key, &upload_id);
        }
        result
    }

    /// One PUT of `body` as `key`.
    pub fn put(&self, key: &str, body: &[u8]) -> Result<(), S3Error> {
        let md5 = content_md5(body);
        self.with_retries(key, || {
            let action = PutObject::new(&self.bucket, Some(&self.credentials), key);
            self.send_body(action, &md5, body).map(drop)
        })
    }

    /// Signs `action` (a PUT) with `md5` as its Content-MD5 and sends `body`; any answer
    /// but 200 is the failure it says.
    fn send_body<'a>(
        &self,
        mut action: impl S3Action<'a>,
        md5: &'a str,
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, Fail> {
        action.headers_mut().insert("content-md5", md5);
        let url = action.sign(REQUEST_TTL);
        let mut resp = self
            .agent
            .put(url.as_str())
            .header("Content-MD5", md5)
            .send(body)
            .map_err(transport)?;
        match resp.status().as_u16() {
            200 => Ok(resp),
            s => Err(status_fail(s, &mut resp)),
        }
    }

    fn create_upload(&self, key: &str) -> Result<String, S3Error> {
        self.with_retries(key, || {
            let url = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key)
                .sign(REQUEST_TTL);
            let mut resp = self
                .agent
                .post(url.as_str())
                .send_empty()
                .map_err(transport)?;
            if resp.status().as_u16() != 200 {
                return Err(status_fail(resp.status().as_u16(), &mut resp));
            }
            let text = small_body(&mut resp)?;
            CreateMultipartUpload::parse_response(&text)
                .map(|r| r.upload_id().to_string())
                .map_err(|e| Fail::Fatal(format!("unreadable answer to a multipart upload: {e}")))
        })
    }

    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: &[u8],
    ) -> Result<String, S3Error> {
        let md5 = content_md5(body);
        self.with_retries(key, || {
            let action = UploadPart::new(
                &self.bucket,
                Some(&self.credentials),
                key,
                number,
                upload_id,
            );
            self.send_body(action, &md5, body)?
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| Fail::Fatal(format!("part {number}: the answer has no ETag")))
        })
    }

    fn complete_upload(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), S3Error> {
        self.with_retries(key, || {
            let action = CompleteMultipartUpload::new(
                &self.bucket,
                Some(&self.credentials),
                key,
                upload_id,
                etags.iter().map(String::as_str),
            );
            let url = action.sign(REQUEST_TTL);
            let mut resp = self
                .agent
                .post(url.as_str())
                .send(action.body())
                .map_err(transport)?;
            if resp.status().as_u16() != 200 {
                return Err(status_fail(resp.status().as_u16(), &mut resp));
            }
            // S3 may answer 200 and still report an error in the body.
            let text = small_body(&mut resp)?;
            if text.contains("<Error>") {
                return Err(Fail::Fatal(format!(
                    "completing the upload failed: {}",
                    text.chars().take(300).collect::<String>()
                )));
            }
            Ok(())
        })
    }

    fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        self.with_retries(key, || {
            let url =
                AbortMultipartUpload::new(&self.bucket, Some(&self.credentials), key, upload_id)
                    .sign(REQUEST_TTL);
            let mut resp = self.agent.delete(url.as_str()).call().map_err(transport)?;
            match resp.status().as_u16() {
                200 | 204 | 404 => Ok(()),
                s => Err(status_fail(s, &mut resp)),
            }
        })
    }

    /// Runs `request` until it succeeds, fails for good, or has failed for the policy's
    /// retry window, with backoff between tries. Errors name `key`'s address.
    pub(super) fn with_retries<T>(
        &self,
        key: &str,
        mut request: impl FnMut() -> Result<T, Fail>,
    ) -> Result<T, S3Error> {
        let mut since: Option<Instant> = None;
        let mut n = 0u32;
        loop {
            match request() {
                Ok(v) => return Ok(v),
                Err(Fail::Fatal(m)) => {
                    return Err(S3Error::Request(format!("{}: {m}", self.shown(key))));
                }
                Err(Fail::Transient(m)) => {
                    let first = *since.get_or_insert_with(Instant::now);
                    let elapsed = first.elapsed();
                    if elapsed >= self.policy.retry_for {
                        return Err(S3Error::Request(format!(
                            "{}: {m} (gave up after retrying for {} s)",
                            self.shown(key),
                            self.policy.retry_for.as_secs()
                        )));
                    }
                    let delay = backoff(n, jitter_unit()).min(self.policy.retry_for - elapsed);
                    n = n.saturating_add(1);
                    std::thread::sleep(delay);
                }
            }
        }
    }
}

/// The part size for an upload of `len` bytes: 16 MiB, or more so that 10,000 parts hold it.
fn part_size(len: u64) -> u64 {
    let least = len.div_ceil(MAX_PARTS);
    PART.max(least.div_ceil(1 << 20) << 20)
}

/// `n` bytes of `file` at `at`.
fn read_part(file: &std::fs::File, at: u64, n: usize, shown: &str) -> Result<Vec<u8>, S3Error> {
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, at).map_err(|e| {
        S3Error::Request(format!(
            "reading the bytes at {at} to upload to {shown}: {e}"
        ))
    })?;
    Ok(buf)
}

/// The `Content-MD5` header of `body`: base64 of its MD5.
fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// A failed request that never got an answer: the connection, TLS, a timeout.
pub(super) fn transport(e: ureq::Error) -> Fail {
    let msg = scrub_queries(match &e {
        ureq::Error::Io(io) => io.to_string(),
        _ => e.to_string(),
    });
    match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::Tls(_) => Fail::Fatal(msg),
        _ => Fail::Transient(msg),
    }
}

/// An answer other than success.
pub(super) fn status_fail(status: u16, resp: &mut ureq::http::Response<ureq::Body>) -> Fail {
    match status {
        408 | 429 | 500 | 502 | 503 | 504 => {
            Fail::Transient(format!("the server answered HTTP {status}"))
        }
        404 | 410 => Fail::Fatal(not_found(status, resp)),
        400 | 401 | 403 => Fail::Fatal(refusal(status, resp)),
        _ => Fail::Fatal(format!("unexpected answer HTTP {status}")),
    }
}

/// An answer's body of at most 1 MiB, as text.
pub(super) fn small_body(resp: &mut ureq::http::Response<ureq::Body>) -> Result<String, Fail> {
    let mut text = String::new();
    resp.body_mut()
        .as_reader()
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| Fail::Transient(format!("reading the answer: {e}")))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_16_mib_until_ten_thousand_would_not_hold_the_file() {
        assert_eq!(part_size(17 << 20), 16 << 20);
        assert_eq!(part_size(100 << 30), 16 << 20);
        let big = 400u64 << 30;
        let p = part_size(big);
        assert!(big.div_ceil(p) <= MAX_PARTS && p.is_multiple_of(1 << 20) && p > 16 << 20);
    }

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        // RFC 1321's test vector for "abc": 900150983cd24fb0d6963f7d28e17f72.
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
    }

    #[test]
    fn presigned_urls_carry_their_lifetime_and_hide_nothing_they_should_not() {
        let settings = S3Settings {
            endpoint: url::Url::parse("http://127.0.0.1:3900").unwrap(),
            region: "garage".into(),
            style: rusty_s3::UrlStyle::Path,
            key_id: "GKtest".into(),
            secret: "secret".into(),
            token: None,
            ca_bundle: None,
        };
        let c = S3Client::new(
            &settings,
            "images",
            RetryPolicy::default(),
            &Trust::default(),
        )
        .unwrap();
        let url = c
            .presign_get("site/web01.iso", Duration::from_secs(3600), None)
            .unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:3900/images/site/web01.iso?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=3600") && url.contains("X-Amz-Signature="));
        assert!(!url.contains("secret"));
        let elsewhere = url::Url::parse("http://10.0.2.100:3900").unwrap();
        let url2 = c
            .presign_get(
                "site/web01.iso",
                Duration::from_secs(3600),
                Some(&elsewhere),
            )
            .unwrap();
        assert!(
            url2.starts_with("http://10.0.2.100:3900/images/site/web01.iso?"),
            "{url2}"
        );
        let long = PRESIGN_MAX + Duration::from_secs(1);
        assert!(c.presign_get("k", long, None).is_err());
        assert!(c.presign_get("k", Duration::ZERO, None).is_err());
    }
}
