//! Deleting many objects at once (DeleteObjects, docs/STORE.md §5.2): a prune's sweep deletes
//! condemned packs and blobs 1,000 keys per request instead of one request per object. The
//! request runs in quiet mode, so the answer lists only the keys the server did not delete.

use rusty_s3::S3Action as _;
use rusty_s3::actions::{DeleteObjects, DeleteObjectsResponse, ObjectIdentifier};

use super::S3Error;
use super::client::{Fail, REQUEST_TTL, S3Client, small_body, status_fail, transport};

/// S3's limit on the keys of one DeleteObjects request.
pub const DELETE_BATCH: usize = 1000;

impl S3Client {
    /// Deletes every key of `keys` (a missing one is no error), in requests of up to 1,000
    /// keys, each retried as a request. A key the server refuses to delete is an error naming
    /// it and the server's code.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), S3Error> {
        for batch in keys.chunks(DELETE_BATCH) {
            let ids: Vec<ObjectIdentifier> = batch
                .iter()
                .map(|k| ObjectIdentifier::new(k.clone()))
                .collect();
            self.with_retries(&batch[0], || {
                let mut action =
                    DeleteObjects::new(&self.bucket, Some(&self.credentials), ids.iter());
                action.set_quiet(true);
                let url = action.sign(REQUEST_TTL);
                let (body, md5) = action.body_with_md5();
                let mut resp = self
                    .agent
                    .post(url.as_str())
                    .header("Content-MD5", &md5)
                    .send(body.as_bytes())
                    .map_err(transport)?;
                match resp.status().as_u16() {
                    200 => {}
                    s => return Err(status_fail(s, &mut resp)),
                }
                let text = small_body(&mut resp)?;
                let answer = DeleteObjectsResponse::parse(&text).map_err(|e| {
                    Fail::Fatal(format!("the answer to a DeleteObjects does not parse: {e}"))
                })?;
                match answer.errors.first() {
                    None => Ok(()),
                    Some(e) => Err(Fail::Fatal(format!(
                        "{} of {} keys were not deleted, the first {}: {} ({})",
                        answer.errors.len(),
                        batch.len(),
                        e.key,
                        e.code,
                        e.message
                    ))),
                }
            })?;
        }
        Ok(())
    }
}
