//! Reading images over the network (docs/STORE.md §7): `HttpObject`, an object on a plain
//! HTTP(S) server read with Range GETs, behind `format::source::RangeRead`, so every reader of
//! an image (`image`, the ISO reader, `payload`) reads it as it reads a local file.
//!
//! `range` parses `Content-Range` and keeps presigned URLs' queries out of messages, `retry`
//! holds the backoff and the counters, `pages` the 256 KiB page cache for small reads, `trust`
//! the roots HTTPS believes (`--ca`), `http` the requests, the fetcher pool and objects made
//! of several (`http::parts`: a store version's packs read as one), `ahead` the
//! planned reads (§7.2.1: a consumer's ranges merged into runs of up to 16 MiB, fetched ahead
//! by 4 threads within a 128 MiB budget). Row 1 of docs/DESIGN.md's layer table: uses
//! `format` only.

mod ahead;
mod http;
mod pages;
mod range;
mod retry;
pub mod s3;
mod trust;

pub use http::HttpObject;
pub use range::{is_url, redact};
pub use retry::{MAX_CONNECTIONS, MAX_FETCH_CACHE_MIB, NetStats, RetryPolicy};
pub use trust::{Trust, TrustError};
