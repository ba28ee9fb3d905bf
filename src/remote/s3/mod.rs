//! Objects in S3-compatible storage (docs/STORE.md §1): `s3://BUCKET/KEY` addresses, the
//! settings the AWS tools use (environment, `~/.aws/` profiles), and a client that signs
//! each request with rusty-s3 and sends it through `remote`'s HTTP agent (HEAD, GET, PUT,
//! DELETE, multipart uploads; `listing`: ListObjectsV2). Reading an object
//! is `HttpObject` with a URL signed anew per request, so ranges, retries, resume and the
//! read cache are the plain-HTTP ones.

mod address;
mod client;
mod delete_many;
mod listing;
mod settings;

pub use address::{S3Address, is_s3};
pub(crate) use address::{SCHEME, check_bucket, check_key};
pub use client::{PRESIGN_MAX, S3Client};
pub use listing::{ListedObject, Listing};
pub use settings::{ADDRESSING_ENV, S3Settings, parse_endpoint};

/// What went wrong with an S3 address, the settings or a request.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{0}")]
    Address(String),
    #[error("{0}")]
    Settings(String),
    #[error("{0}")]
    Request(String),
}
