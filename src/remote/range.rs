//! What the HTTP reader needs to know about URLs and `Content-Range` (RFC 9110 §14.4).

/// Whether `s` names an object over HTTP(S) rather than a local path.
pub fn is_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// `url` without its query, fragment and user information: what messages show. A presigned
/// URL's query holds its credentials (`X-Amz-Signature`, `X-Amz-Credential`), so it is never
/// printed; nor is a `user:password@`.
pub fn redact(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let path_at = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..path_at];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{}", &rest[path_at..])
        }
        None => url.to_string(),
    }
}

/// The host (and port) of `url`, for messages such as "HOST ignores Range requests".
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Never show credentials written into the URL (`user:password@host`).
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// A `Content-Range: bytes FIRST-LAST/TOTAL` header of a 206 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    pub last: u64,
    /// The object's whole length; `None` for `*` (unknown).
    pub total: Option<u64>,
}

impl ContentRange {
    /// Bytes the range covers.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// Parses a `Content-Range` value of a 206 response; `None` for anything else, including
/// `LAST < FIRST` or `LAST >= TOTAL` (a hostile or broken server).
pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes")?;
    let rest = rest.strip_prefix(' ')?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.trim().split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (first, last) = (number(first)?, number(last)?);
    let total = match total.trim() {
        "*" => None,
        t => Some(number(t)?),
    };
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange { first, last, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(
            parse_content_range("bytes 0-262143/1048576"),
            Some(ContentRange {
                first: 0,
                last: 262143,
                total: Some(1048576)
            })
        );
        let r = parse_content_range("bytes 5-5/6").expect("one byte");
        assert_eq!((r.len(), r.total), (1, Some(6)));
        assert_eq!(
            parse_content_range("bytes 10-19/*").map(|r| r.total),
            Some(None)
        );
    }

    #[test]
    fn bad_content_ranges_are_refused() {
        for bad in [
            "",
            "bytes */100",
            "bytes 10-5/100",
            "bytes 0-100/100",
            "bytes 0-1",
            "items 0-1/2",
            "bytes -1-2/3",
            "bytes 0-+1/3",
            "bytes 0-99999999999999999999999/1",
            "bytes=0-1/2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn urls_lose_their_query_and_credentials_in_messages() {
        let u = "https://user:pw@host.example:8443/b/system.iso?X-Amz-Signature=secret#x";
        assert_eq!(redact(u), "https://host.example:8443/b/system.iso");
        assert_eq!(redact("http://h/a?b"), "http://h/a");
        assert_eq!(host(u), "host.example:8443");
        assert_eq!(host("http://h/x"), "h");
        assert!(is_url("HTTPS://h/x") && is_url("http://h") && !is_url("/tmp/http://x"));
        assert!(!is_url("system.iso"));
    }
}
