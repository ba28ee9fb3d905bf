//! Listing a bucket's keys under a prefix (ListObjectsV2, docs/STORE.md §2 and §3): every
//! page followed by its continuation token, each answer's body bounded, and the server's
//! `Date`, the clock that decides whether a lock is stale (§2.7).

use std::io::Read as _;

use chrono::{DateTime, Utc};
use rusty_s3::S3Action as _;
use rusty_s3::actions::ListObjectsV2;

use super::S3Error;
use super::client::{Fail, REQUEST_TTL, S3Client, status_fail, transport};

/// The largest body of one page of a listing: 1,000 keys of up to 1 KiB each, URL-encoded
/// (up to three bytes a byte), with their XML around them, stay below it.
const MAX_PAGE: u64 = 8 << 20;
/// The most pages one listing follows: 10 million keys, far beyond any store, so a server
/// that hands out tokens forever cannot keep a command listing forever.
const MAX_PAGES: usize = 10_000;

/// The objects under a prefix, in key order, as one listing saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<ListedObject>,
    /// The server's clock (`Date`) when it answered the last page.
    pub server_date: Option<DateTime<Utc>>,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// The object's key in the bucket.
    pub key: String,
    pub size: u64,
    /// The server's time of the object's last PUT.
    pub last_modified: DateTime<Utc>,
}

/// One page: its objects, the token of the next, the server's clock.
#[derive(Debug)]
struct Page {
    objects: Vec<ListedObject>,
    next: Option<String>,
    date: Option<DateTime<Utc>>,
}

impl S3Client {
    /// Every object whose key starts with `prefix`, in key order (S3 lists in UTF-8 binary
    /// order), each page retried as a request.
    pub fn list(&self, prefix: &str) -> Result<Listing, S3Error> {
        let mut listing = Listing::default();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self.with_retries(prefix, || self.list_page(prefix, token.as_deref()))?;
            listing.objects.extend(page.objects);
            listing.server_date = page.date.or(listing.server_date);
            match page.next {
                Some(next) if Some(&next) == token.as_ref() => {
                    return Err(S3Error::Request(format!(
                        "{}: the server's listing repeats its continuation token",
                        self.shown(prefix)
                    )));
                }
                Some(next) => token = Some(next),
                None => return Ok(listing),
            }
        }
        Err(S3Error::Request(format!(
            "{}: the listing goes on past {MAX_PAGES} pages",
            self.shown(prefix)
        )))
    }

    fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<Page, Fail> {
        let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
        action.with_prefix(prefix);
        if let Some(t) = token {
            action.with_continuation_token(t);
        }
        let url = action.sign(REQUEST_TTL);
        let mut resp = self.agent.get(url.as_str()).call().map_err(transport)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(status_fail(status, &mut resp));
        }
        let date = resp
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&Utc));
        let mut body = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_PAGE + 1)
            .read_to_end(&mut body)
            .map_err(|e| Fail::Transient(format!("reading the listing: {e}")))?;
        if body.len() as u64 > MAX_PAGE {
            return Err(Fail::Fatal(format!(
                "a page of the listing is larger than {} MiB",
                MAX_PAGE >> 20
            )));
        }
        let text = String::from_utf8(body)
            .map_err(|_| Fail::Fatal("the listing is not UTF-8 text".into()))?;
        parse_page(&text, date).map_err(Fail::Fatal)
    }
}

/// One page's XML.
fn parse_page(text: &str, date: Option<DateTime<Utc>>) -> Result<Page, String> {
    let r = ListObjectsV2::parse_response(text)
        .map_err(|e| format!("the server's listing does not parse: {e}"))?;
    let mut objects = Vec::with_capacity(r.contents.len());
    for c in r.contents {
        let size = c
            .size
            .ok_or_else(|| format!("the listing gives no size for {:?}", c.key))?;
        let last_modified = c
            .last_modified
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or_else(|| format!("the listing gives no readable LastModified for {:?}", c.key))?
            .with_timezone(&Utc);
        objects.push(ListedObject {
            key: c.key,
            size,
            last_modified,
        });
    }
    Ok(Page {
        objects,
        next: r.next_continuation_token,
        date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>images</Name><Prefix>site/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>
  <NextContinuationToken>tok+1</NextContinuationToken>
  <Contents><Key>site/config</Key><LastModified>2026-12-05T19:50:45.123Z</LastModified>
    <ETag>"x"</ETag><Size>150</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>site/images/a%20b</Key><LastModified>2026-12-05T19:51:00Z</LastModified>
    <Size>9</Size></Contents>
</ListBucketResult>"#;

    #[test]
    fn a_page_gives_keys_sizes_times_and_the_next_token() {
        let p = parse_page(PAGE, None).unwrap();
        assert_eq!(p.next.as_deref(), Some("tok+1"));
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key, "site/config");
        assert_eq!(p.objects[0].size, 150);
        assert_eq!(
            p.objects[0].last_modified.to_rfc3339(),
            "2026-12-05T19:50:45.123+00:00"
        );
        assert_eq!(p.objects[1].key, "site/images/a b");
        let last = PAGE
            .replace("<IsTruncated>true", "<IsTruncated>false")
            .replace("<NextContinuationToken>tok+1</NextContinuationToken>", "");
        assert_eq!(parse_page(&last, None).unwrap().next, None);
    }

    #[test]
    fn pages_without_what_a_store_needs_are_refused() {
        let no_size = PAGE.replace("<Size>9</Size>", "");
        assert!(parse_page(&no_size, None).unwrap_err().contains("no size"));
        let bad_time = PAGE.replace("2026-12-05T19:51:00Z", "yesterday");
        assert!(
            parse_page(&bad_time, None)
                .unwrap_err()
                .contains("LastModified")
        );
        let no_token = PAGE.replace("<NextContinuationToken>tok+1</NextContinuationToken>", "");
        assert!(parse_page(&no_token, None).is_err());
        assert!(
            parse_page("<html>", None)
                .unwrap_err()
                .contains("does not parse")
        );
    }
}
