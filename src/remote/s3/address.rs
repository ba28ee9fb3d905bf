//! `s3://BUCKET/KEY`: which bucket, which object (docs/STORE.md §1).

use std::fmt;

use super::S3Error;

/// The scheme every S3 address starts with.
pub(crate) const SCHEME: &str = "s3://";

/// Whether `s` is an S3 address (`s3://…`) rather than a path or an HTTP URL.
pub fn is_s3(s: &str) -> bool {
    s.get(..SCHEME.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(SCHEME))
}

/// An object in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Address {
    pub bucket: String,
    pub key: String,
}

impl S3Address {
    /// Parses `s3://BUCKET/KEY`. BUCKET follows S3's naming rules (3–63 bytes of lower-case
    /// letters, digits, `.` and `-`, starting and ending with a letter or digit); KEY is
    /// 1–1024 bytes without control characters, `//`, or a `.`/`..` component (names a
    /// filesystem-backed server would resolve), and does not end with `/`.
    pub fn parse(s: &str) -> Result<S3Address, S3Error> {
        let bad = |why: &str| S3Error::Address(format!("{s}: {why}"));
        if !is_s3(s) {
            return Err(bad("not an s3://BUCKET/KEY address"));
        }
        let rest = &s[SCHEME.len()..];
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| bad("no object key after the bucket (s3://BUCKET/KEY)"))?;
        check_bucket(bucket).map_err(|w| bad(&w))?;
        check_key(key).map_err(|w| bad(&w))?;
        Ok(S3Address {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The key's last component: the object's file name.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

impl fmt::Display for S3Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.bucket, self.key)
    }
}

/// Whether `b` is a bucket name S3 accepts; the reason when not.
pub(crate) fn check_bucket(b: &str) -> Result<(), String> {
    let ok_byte = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-';
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() {
        return Err("no bucket name (s3://BUCKET/KEY)".into());
    }
    let bytes = b.as_bytes();
    if !(3..=63).contains(&b.len())
        || !bytes.iter().all(|&c| ok_byte(c))
        || !edge(bytes[0])
        || !edge(bytes[b.len() - 1])
        || b.contains("..")
    {
        return Err(format!(
            "bucket name {b:?} is not valid (3-63 lower-case letters, digits, '.' and '-', \
             starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// Whether `k` is an object key osimage uses (see [`S3Address::parse`]); the reason when not.
pub(crate) fn check_key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("no object key after the bucket (s3://BUCKET/KEY)".into());
    }
    if k.len() > 1024 {
        return Err(format!(
            "the object key is {} bytes (at most 1024)",
            k.len()
        ));
    }
    if k.chars().any(char::is_control) {
        return Err("the object key holds a control character".into());
    }
    if k.ends_with('/') {
        return Err("the object key ends with '/': that names a folder, not an object".into());
    }
    if k.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("the object key has an empty, '.' or '..' component".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_key() {
        let a = S3Address::parse("s3://images/site-a/web01.iso").unwrap();
        assert_eq!(a.bucket, "images");
        assert_eq!(a.key, "site-a/web01.iso");
        assert_eq!(a.file_name(), "web01.iso");
        assert_eq!(a.to_string(), "s3://images/site-a/web01.iso");
        assert!(is_s3("S3://x") && !is_s3("http://x") && !is_s3("s3:/x"));
    }

    #[test]
    fn refuses_what_s3_or_a_server_would_misread() {
        for (s, why) in [
            ("s3://images", "no object key"),
            ("s3://images/", "no object key"),
            ("s3:///k.iso", "no bucket name"),
            ("s3://Images/k.iso", "not valid"),
            ("s3://ab/k.iso", "not valid"),
            ("s3://-ab/k.iso", "not valid"),
            ("s3://a..b/k.iso", "not valid"),
            ("s3://images/dir/", "ends with '/'"),
            ("s3://images/a//b.iso", "empty, '.' or '..'"),
            ("s3://images/../b.iso", "empty, '.' or '..'"),
            ("s3://images/a\nb.iso", "control character"),
            ("/srv/x.iso", "not an s3://"),
        ] {
            let e = S3Address::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
        let long = format!("s3://images/{}", "k".repeat(1025));
        assert!(
            S3Address::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("1025 bytes")
        );
    }
}
