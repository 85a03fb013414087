//! Upload sessions in the catalogue: which repository each open session belongs to and who
//! opened it. The bytes live in the origin; this record is what lets any node of the region
//! (after a restart too) refuse a session to everyone but the principal that opened it, in
//! the repository it was opened in, and count a principal's open sessions.
//!
//! ```text
//! x/<upload id>                       UploadRecord
//! y/<owner uid>\0<upload id>          (empty)        the owner's open sessions
//! ```
//!
//! Keyed by the owner's `uid`, not its name: a principal deleted and made again under the
//! same name does not inherit the old one's sessions. A session leaves the catalogue when it
//! is finished (`LinkBlob` with its id), cancelled or purged (`CloseUploads`).

use crate::batch::Batch;
use serde::{Deserialize, Serialize};

use crate::catalog::{encode, Catalog};
use crate::command::{done, rejected, Outcome, Rejection};
use crate::keys::{self, key, under};
use crate::Result;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The repository named in the session's `Location`.
    pub repo: String,
    /// The principal that opened it (user or service account), and its `uid`.
    pub owner: String,
    pub owner_uid: String,
    pub started_at: i64,
}

impl Catalog {
    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        self.get(&key(keys::UPLOAD, &[id]))
    }

    /// How many sessions the principal with `uid` holds open.
    pub fn open_uploads(&self, owner_uid: &str) -> Result<usize> {
        let prefix = under(keys::UPLOAD_BY_OWNER, &[owner_uid]);
        Ok(self.tree().scan_prefix(prefix).count())
    }

    /// Every open session, oldest first, at most `n` (for purging).
    pub fn uploads_started_before(
        &self,
        before: i64,
        n: usize,
    ) -> Result<Vec<(String, UploadRecord)>> {
        let mut out = Vec::new();
        for kv in self.tree().scan_prefix(keys::UPLOAD.as_bytes()) {
            let (k, v) = kv?;
            let record: UploadRecord = crate::catalog::decode(&v)?;
            if record.started_at < before {
                let id = String::from_utf8_lossy(&k[keys::UPLOAD.len()..]).into_owned();
                out.push((id, record));
                if out.len() >= n {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn open_upload(
        &self,
        id: &str,
        upload: &UploadRecord,
        limit: u32,
        batch: &mut Batch,
    ) -> Result<Outcome> {
        if self.open_uploads(&upload.owner_uid)? >= limit as usize {
            return rejected(Rejection::TooManyUploads(limit));
        }
        batch.insert(key(keys::UPLOAD, &[id]), encode(upload));
        batch.insert(
            key(keys::UPLOAD_BY_OWNER, &[&upload.owner_uid, id]),
            Vec::new(),
        );
        done()
    }

    /// Removes session `id`'s records (nothing if it has none).
    pub(crate) fn drop_upload(&self, id: &str, batch: &mut Batch) -> Result<()> {
        if let Some(u) = self.upload(id)? {
            batch.remove(key(keys::UPLOAD, &[id]));
            batch.remove(key(keys::UPLOAD_BY_OWNER, &[&u.owner_uid, id]));
        }
        Ok(())
    }

    pub(crate) fn close_uploads(&self, ids: &[String], batch: &mut Batch) -> Result<Outcome> {
        for id in ids {
            self.drop_upload(id, batch)?;
        }
        done()
    }
}
