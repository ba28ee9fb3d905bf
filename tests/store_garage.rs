//! The Garage fixture itself (tests/common/garage.rs): the server it starts takes signed S3
//! requests for its key and refuses others, serves byte ranges, and keeps its objects across
//! a kill and restart. The S3 client here is curl's SigV4 signing (`--aws-sigv4`), not
//! osimage's, so these tests judge the fixture alone.

use crate::common::garage::{Garage, parse_key};
use crate::common::iso::noise;
use crate::common::{need, scratch};
use std::path::Path;
use std::process::Command;

/// An HTTP answer: status code and body.
struct Reply {
    code: u16,
    body: Vec<u8>,
}

/// How a request is signed.
enum Auth<'a> {
    /// With the fixture's key.
    Key,
    /// With the fixture's key id and this secret.
    Secret(&'a str),
    /// Not at all (anonymous).
    None,
}

/// `curl` against `garage`'s S3 endpoint: `path` is `/BUCKET/KEY`; `extra` adds curl
/// arguments (`-T FILE`, `-r RANGE`). `Err` with curl's message when no answer came at all.
fn s3(garage: &Garage, auth: Auth, path: &str, extra: &[&str]) -> Result<Reply, String> {
    need(&[("curl", "curl")]);
    let dir = scratch();
    let body = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code}"]);
    let user;
    match auth {
        Auth::Key | Auth::Secret(_) => {
            let secret = match auth {
                Auth::Secret(s) => s,
                _ => garage.secret(),
            };
            user = format!("{}:{secret}", garage.key_id());
            // Garage refuses a signed request without the payload hash header ("Missing
            // X-Amz-Content-Sha256 field"), and curl 7.88 does not add it for s3.
            cmd.args(["--aws-sigv4", &format!("aws:amz:{}:s3", garage.region())])
                .args(["--user", &user])
                .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
        }
        Auth::None => {}
    }
    cmd.args(extra).arg(format!("{}{path}", garage.endpoint()));
    let out = cmd.output().expect("running curl");
    if !out.status.success() {
        return Err(format!(
            "curl {path} {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("curl's status code {:?}: {e}", out.stdout));
    let body = std::fs::read(&body).unwrap_or_default();
    Ok(Reply { code, body })
}

/// A signed request that must get an answer with status `code`; its body.
fn expect(garage: &Garage, code: u16, path: &str, extra: &[&str]) -> Vec<u8> {
    let reply = s3(garage, Auth::Key, path, extra).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reply.code,
        code,
        "{path} {extra:?}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.body
}

/// PUTs `data` at `path` (signed) from a file beside it.
fn put(garage: &Garage, path: &str, data: &[u8], dir: &Path) {
    let file = dir.join("upload");
    std::fs::write(&file, data).expect("writing the upload");
    let file = file.to_str().expect("a UTF-8 scratch path");
    expect(garage, 200, path, &["-T", file]);
}

/// Garage cuts objects into 1 MiB blocks: this object spans two, and the range crosses the
/// boundary.
const SIZE: usize = (1 << 20) + 4321;
const RANGE: (usize, usize) = (1_000_000, 1_050_000);

#[test]
fn signed_put_and_ranged_get_return_the_same_bytes() {
    let garage = Garage::start();
    let dir = scratch();
    let data = noise(SIZE, 7);
    let path = format!("/{}/a/b/object.bin", garage.bucket());
    put(&garage, &path, &data, dir.path());

    let (first, last) = RANGE;
    let range = format!("{first}-{last}");
    let part = expect(&garage, 206, &path, &["-r", &range]);
    assert_eq!(part.len(), last - first + 1, "the range's length");
    assert!(part == data[first..=last], "the range's bytes differ");

    let whole = expect(&garage, 200, &path, &[]);
    assert_eq!(whole.len(), data.len());
    assert!(whole == data, "the object's bytes differ");
}

#[test]
fn unsigned_and_wrongly_signed_requests_are_refused() {
    let garage = Garage::start();
    let dir = scratch();
    let path = format!("/{}/secret.bin", garage.bucket());
    put(&garage, &path, b"only for the key", dir.path());

    let anonymous = s3(&garage, Auth::None, &path, &[]).expect("an answer");
    assert_eq!(anonymous.code, 403, "an unsigned GET");
    let wrong = "0".repeat(64);
    let forged = s3(&garage, Auth::Secret(&wrong), &path, &[]).expect("an answer");
    assert_eq!(forged.code, 403, "a GET signed with another secret");
    assert!(
        String::from_utf8_lossy(&forged.body).contains("<Code>"),
        "an S3 error document: {}",
        String::from_utf8_lossy(&forged.body)
    );
    assert_eq!(expect(&garage, 200, &path, &[]), b"only for the key");
}

#[test]
fn a_restarted_server_serves_the_object_again() {
    let mut garage = Garage::start();
    let dir = scratch();
    let data = noise(SIZE, 11);
    let path = format!("/{}/kept.bin", garage.bucket());
    put(&garage, &path, &data, dir.path());

    garage.stop();
    if let Ok(reply) = s3(&garage, Auth::Key, &path, &[]) {
        panic!("the stopped server answered {}", reply.code);
    }

    garage.start_again();
    let (first, last) = RANGE;
    let part = expect(&garage, 206, &path, &["-r", &format!("{first}-{last}")]);
    assert!(
        part == data[first..=last],
        "the range's bytes after the restart"
    );
    assert!(
        expect(&garage, 200, &path, &[]) == data,
        "the object after the restart"
    );
    // Writes work too: the layout and the key survived.
    let again = format!("/{}/after-restart.bin", garage.bucket());
    put(&garage, &again, b"written after the restart", dir.path());
    assert_eq!(
        expect(&garage, 200, &again, &[]),
        b"written after the restart"
    );
}

#[test]
fn create_bucket_gives_the_key_a_second_bucket() {
    let garage = Garage::start();
    let dir = scratch();
    let missing = expect(&garage, 404, "/second/x", &[]);
    assert!(String::from_utf8_lossy(&missing).contains("NoSuchBucket"));

    garage.create_bucket("second");
    put(&garage, "/second/x", b"in the second bucket", dir.path());
    assert_eq!(
        expect(&garage, 200, "/second/x", &[]),
        b"in the second bucket"
    );
    expect(&garage, 404, &format!("/{}/x", garage.bucket()), &[]);
}

#[test]
fn env_names_the_key_region_and_endpoint() {
    let garage = Garage::start();
    let env: std::collections::BTreeMap<String, String> = garage.env().into_iter().collect();
    assert_eq!(env["AWS_ACCESS_KEY_ID"], garage.key_id());
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"], garage.secret());
    assert_eq!(env["AWS_REGION"], "garage");
    assert_eq!(
        env["AWS_ENDPOINT_URL"],
        format!("http://127.0.0.1:{}", garage.s3_port())
    );
    // The key Garage lists is the one the fixture parsed.
    let info = garage.cli_ok(&["key", "info", "--show-secret", garage.key_id()]);
    assert_eq!(
        parse_key(&info),
        Ok((garage.key_id().to_string(), garage.secret().to_string()))
    );
}

/// `garage key create`'s table as Garage 2.5.0 prints it (format_table: columns padded
/// with spaces).
#[test]
fn key_create_output_is_parsed_and_checked() {
    let id = "GK31c2f218a2e44f485b94239e";
    let secret = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
    let table = format!(
        "==== ACCESS KEY INFORMATION ====\nKey ID:              {id}\nKey name:            \
         osimage-test\nSecret key:          {secret}\nCreated:             2026-12-06\n\n\
         Can create buckets:  false\n"
    );
    assert_eq!(parse_key(&table), Ok((id.to_string(), secret.to_string())));
    let redacted = table.replace(secret, "(redacted)");
    assert!(parse_key(&redacted).is_err_and(|e| e.contains("(redacted)")));
    let no_id = table.replace("Key ID:", "Key:");
    assert!(parse_key(&no_id).is_err_and(|e| e.contains("Key ID:")));
}
