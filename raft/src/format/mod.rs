//! The metadata's stored format: its version, checked when a data directory is opened, and
//! the migrations from every older version.
//!
//! What the format covers: the values of the catalogue tree (postcard records, keys in
//! `keys`), the Raft log's entries (postcard `Entry<TypeConfig>`, so every `Proposal` and
//! `Command`; in segment files, `segments`), and snapshots (files of catalogue pairs,
//! `snapshot`). The vote and log
//! pointers (tree `log-meta`) and the bookkeeping keys are openraft's own JSON and do not
//! change with it. The cluster plane speaks the same types, so its ALPN names the version
//! (`plane::tls::ALPN`): nodes of different formats refuse each other instead of misreading.
//!
//! ```text
//! tree format:  version  u32 BE   the format the other trees are in (absent: format 1,
//!                                 written before formats had versions)
//!               staged   u32 BE   a migration to this version is copied into the `*.next`
//!                                 trees and being moved into place
//! ```
//!
//! A migration never changes a tree in place. It first writes the converted data into
//! `catalog.next`, `log.next` and `snapshot.next` (streaming, in batches: nothing holds a
//! whole tree), flushes, and records `staged`; only then does it replace each tree with its
//! `.next` copy, set `version` and drop `staged`. A crash before `staged` starts the copy
//! again; a crash after it finishes the move. Either way the old data is never half
//! converted. Version history:
//!
//! - 1: main before formats were versioned (`v1`).
//! - 2: proposals carry who proposed them and the request id; principals and federated
//!   identities have a `uid`; upload sessions are recorded (`OpenUpload`, `CloseUploads`,
//!   `LinkBlob::upload`); namespaces have immutable tags; reverse indexes (`d/`, `e/`,
//!   `a/`), leases, tag and pull times, tombstones, retention policies and the collector's
//!   commands (`lifecycle`). The migration builds the reverse indexes and tag times from
//!   what format 1 held. Appended since, without a new version (new variants at the end of
//!   `Command` and `Rejection`, new key prefixes): upstream mirrors (`mirror`).
//! - 3: proposals carry when they were proposed and the client's address (`v2`), for the
//!   audit trail (`audit`, key prefix `A/`, and `Command::ExpireAudit`). The migration
//!   rewrites the log's entries with both unknown; catalogue and snapshots are unchanged.
//! - 4: snapshots are files beside the database, written and read as streams (`snapshot`),
//!   no longer one value in the `snapshot` tree (`v3`). The migration writes the old value
//!   out as a file; catalogue and log are unchanged.
//! - 5: the Raft log's entries are in segment files beside the database (`segments`), no
//!   longer in sled's `log` tree. The migration (`move_log_out`) writes them into
//!   `raft-log.next/`, syncs it and renames it `raft-log/`, then sets the version and drops
//!   the tree; entries are unchanged. A crash before the version is set starts the move over
//!   (the tree is still whole); one after it leaves only the tree to drop, which the next
//!   open does.
//! - 6: snapshot files are zstd-compressed after their header (`snapshot_file`): a tenth of
//!   the bytes on disk and on the wire for the catalogue bench's pairs. The migration
//!   converts nothing: a migrated directory's snapshot file keeps its header (4 or 5) and is
//!   read, sent and installed as it is until the next snapshot replaces it.

pub mod v1;
pub mod v2;
pub mod v3;

#[cfg(test)]
mod golden;

use std::path::Path;

use crate::{Error, Result};

/// The format this build reads and writes.
pub const CURRENT: u32 = 6;

pub(crate) const CATALOG: &str = "catalog";
pub(crate) const LOG: &str = "log";
pub(crate) const LOG_META: &str = "log-meta";
pub(crate) const SNAPSHOT: &str = "snapshot";
/// What writes replaced while a snapshot is written out (`snapshot::Undo`); empty at open.
pub(crate) const SNAPSHOT_UNDO: &str = "snapshot.undo";
const FORMAT: &str = "format";
const VERSION: &[u8] = b"version";
const STAGED: &[u8] = b"staged";
/// The trees a migration rewrites.
const MIGRATED: [&str; 3] = [CATALOG, LOG, SNAPSHOT];
/// Pairs written per batch while copying.
const BATCH: usize = 4096;

fn next(tree: &str) -> String {
    format!("{tree}.next")
}

fn read_u32(tree: &sled::Tree, k: &[u8]) -> Result<Option<u32>> {
    Ok(tree.get(k)?.map(|v| {
        let mut be = [0u8; 4];
        be.copy_from_slice(&v[..4]);
        u32::from_be_bytes(be)
    }))
}

/// The format `db` is in, brought to `CURRENT`: a new directory is marked current, an older
/// one migrated, a newer one refused (this build cannot read it). `dir` is the database's
/// directory (snapshot files lie beside it).
pub fn open(db: &sled::Db, dir: &Path) -> Result<u32> {
    let format = db.open_tree(FORMAT)?;
    let version = match read_u32(&format, VERSION)? {
        Some(v) => v,
        None if is_empty(db)? => {
            format.insert(VERSION, &CURRENT.to_be_bytes())?;
            format.flush()?;
            return Ok(CURRENT);
        }
        None => 1,
    };
    if version > CURRENT {
        return Err(Error::Fatal(format!(
            "the metadata is in format {version}, newer than this shoal reads ({CURRENT}); run the newer shoal"
        )));
    }
    if version < CURRENT {
        tracing::warn!(
            from = version,
            to = CURRENT,
            "migrating the metadata format"
        );
        migrate(db, &format, version, dir)?;
        tracing::info!(version = CURRENT, "metadata migrated");
    }
    if !db.open_tree(LOG)?.is_empty() {
        // Format 5 keeps no entries in the tree: the move out of it ends here, whether it
        // just ran or a crash stopped it after the version was set.
        db.drop_tree(LOG)?;
    }
    Ok(CURRENT)
}

fn is_empty(db: &sled::Db) -> Result<bool> {
    for name in [CATALOG, LOG, LOG_META, SNAPSHOT] {
        if !db.open_tree(name)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Looks a key up in the catalogue being migrated (its old format).
pub(crate) type Lookup<'a> = &'a dyn Fn(&[u8]) -> Result<Option<Vec<u8>>>;

/// A conversion of one version's data into the next's: each catalogue pair into the pairs
/// that replace it (a new version may add index entries), log entries, snapshot data.
pub(crate) trait Step {
    fn catalog_pairs(&self, old: Lookup, key: &[u8], value: &[u8]) -> Result<Vec<Pair>>;
    fn log_entry(&self, value: &[u8]) -> Result<Vec<u8>>;
    /// A snapshot's data (format 3 and before: key `data` of the `snapshot` tree).
    fn snapshot_data(&self, data: &[u8]) -> Result<Vec<u8>> {
        Ok(data.to_vec())
    }
    /// The pairs of the `snapshot` tree that replace one of the old version's; `meta_dir`
    /// is where a step may write snapshot files.
    fn snapshot_pairs(&self, key: &[u8], value: &[u8], _meta_dir: &Path) -> Result<Vec<Pair>> {
        match key {
            b"data" => Ok(vec![(key.to_vec(), self.snapshot_data(value)?)]),
            _ => Ok(vec![(key.to_vec(), value.to_vec())]),
        }
    }
}

pub(crate) type Pair = (Vec<u8>, Vec<u8>);

fn step_from(version: u32) -> Result<Box<dyn Step>> {
    match version {
        1 => Ok(Box::new(v1::ToV2)),
        2 => Ok(Box::new(v2::ToV3)),
        3 => Ok(Box::new(v3::ToV4)),
        v => Err(Error::Fatal(format!(
            "no migration from metadata format {v}"
        ))),
    }
}

fn migrate(db: &sled::Db, format: &sled::Tree, from: u32, dir: &Path) -> Result<()> {
    for version in from..CURRENT {
        match version {
            // 4 => 5 converts nothing: it moves the log out of sled.
            4 => move_log_out(db, format, dir)?,
            // 5 => 6 converts nothing: older snapshot files are read as they are.
            5 => set_version(format, 6)?,
            _ => migrate_trees(db, format, version, dir)?,
        }
    }
    Ok(())
}

/// One version's step through the `*.next` trees (see the module's doc).
fn migrate_trees(db: &sled::Db, format: &sled::Tree, version: u32, dir: &Path) -> Result<()> {
    let to = version + 1;
    if read_u32(format, STAGED)? != Some(to) {
        stage(db, step_from(version)?.as_ref(), dir)?;
        format.insert(STAGED, &to.to_be_bytes())?;
        format.flush()?;
    }
    for name in MIGRATED {
        let tree = db.open_tree(name)?;
        tree.clear()?;
        copy(&db.open_tree(next(name))?, &tree, |k, v| {
            Ok(vec![(k.to_vec(), v.to_vec())])
        })?;
        tree.flush()?;
    }
    let mut done = sled::Batch::default();
    done.insert(VERSION, &to.to_be_bytes());
    done.remove(STAGED);
    format.apply_batch(done)?;
    format.flush()?;
    for name in MIGRATED {
        db.drop_tree(next(name))?;
    }
    Ok(())
}

/// Writes the converted copy of every migrated tree into its `.next` tree.
fn stage(db: &sled::Db, step: &dyn Step, dir: &Path) -> Result<()> {
    for name in MIGRATED {
        let target = db.open_tree(next(name))?;
        target.clear()?;
        let source = db.open_tree(name)?;
        let old = |k: &[u8]| -> Result<Option<Vec<u8>>> { Ok(source.get(k)?.map(|v| v.to_vec())) };
        copy(&source, &target, |k, v| match name {
            CATALOG if k.starts_with(b"~") => Ok(vec![(k.to_vec(), v.to_vec())]),
            CATALOG => step.catalog_pairs(&old, k, v),
            LOG => Ok(vec![(k.to_vec(), step.log_entry(v)?)]),
            _ => step.snapshot_pairs(k, v, dir),
        })?;
        target.flush()?;
    }
    Ok(())
}

/// Format 5: the log tree's entries, as they are, into segment files (see the version
/// history above for what a crash leaves).
fn move_log_out(db: &sled::Db, format: &sled::Tree, dir: &Path) -> Result<()> {
    use crate::segments::{Segments, DIR, SEGMENT_BYTES};
    let target = dir.join(DIR);
    let staging = dir.join(format!("{DIR}.next"));
    let io = |e: std::io::Error| {
        Error::Fatal(format!("moving the Raft log to {}: {e}", target.display()))
    };
    for d in [&target, &staging] {
        match std::fs::remove_dir_all(d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    let mut segments = Segments::open(&staging, SEGMENT_BYTES).map_err(io)?;
    let tree = db.open_tree(LOG)?;
    let mut batch: Vec<(u64, sled::IVec)> = Vec::new();
    let mut write = |batch: &mut Vec<(u64, sled::IVec)>| -> Result<()> {
        segments
            .append(batch.iter().map(|(i, v)| (*i, v.as_ref())))
            .and_then(|unsynced| unsynced.sync())
            .map_err(io)?;
        batch.clear();
        Ok(())
    };
    for kv in tree.iter() {
        let (k, v) = kv?;
        let index = <[u8; 8]>::try_from(k.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Fatal(format!("a log key of {} bytes", k.len())))?;
        batch.push((index, v));
        if batch.len() >= BATCH {
            write(&mut batch)?;
        }
    }
    write(&mut batch)?;
    std::fs::rename(&staging, &target).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    set_version(format, 5)?;
    // `open` drops the tree, as it does after a crash at this point.
    Ok(())
}

fn set_version(format: &sled::Tree, version: u32) -> Result<()> {
    format.insert(VERSION, &version.to_be_bytes())?;
    format.flush()?;
    Ok(())
}

fn copy(
    from: &sled::Tree,
    to: &sled::Tree,
    convert: impl Fn(&[u8], &[u8]) -> Result<Vec<Pair>>,
) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for kv in from.iter() {
        let (k, v) = kv?;
        for (k, v) in convert(&k, &v)? {
            batch.insert(k, v);
            n += 1;
        }
        if n >= BATCH {
            to.apply_batch(std::mem::take(&mut batch))?;
            n = 0;
        }
    }
    to.apply_batch(batch)?;
    Ok(())
}

/// A `uid` for a principal or federated identity made before they had one: derived from
/// what identifies it, so every replica migrating on its own arrives at the same one.
pub(crate) fn derived_uid(name: &str, created_at: i64) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(created_at.to_be_bytes());
    format!("v1-{}", &hex::encode(h.finalize())[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_current_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        assert_eq!(open(&db, dir.path()).unwrap(), CURRENT);
        assert_eq!(
            open(&db, dir.path()).unwrap(),
            CURRENT,
            "opening again changes nothing"
        );
        let format = db.open_tree(FORMAT).unwrap();
        format
            .insert(VERSION, &(CURRENT + 1).to_be_bytes())
            .unwrap();
        let err = open(&db, dir.path()).unwrap_err().to_string();
        assert!(err.contains("newer than this shoal reads"), "{err}");
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).unwrap();
            }
        }
    }

    /// The metadata directory written by format-1 main (`tests/fixtures/v1-single`) opens,
    /// migrates, serves what it held, takes writes, and opens again as format 2.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_format_1_directory_migrates_and_keeps_everything() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/v1-single/data/meta");
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixture, dir.path());
        let config = crate::MetaConfig {
            node_id: 1,
            dir: dir.path().to_path_buf(),
            api_url: "http://127.0.0.1:0".into(),
            snapshot_every: 20,
            cache_bytes: crate::MetaConfig::DEFAULT_CACHE_BYTES,
            cluster: None,
        };
        let meta = crate::Metadata::open(config.clone()).await.unwrap();
        let c = meta.catalog();
        let alice = c.principal("alice").unwrap().unwrap();
        assert_eq!(alice.uid, derived_uid("alice", alice.created_at));
        assert!(alice.password_hash.is_some());
        assert_eq!(c.federation("gha").unwrap().unwrap().service_account, "ci");
        assert_eq!(
            c.tags("team/multi", None, None).unwrap(),
            ["amd-only", "arm-only", "latest"]
        );
        assert_eq!(c.tags("team/app", None, None).unwrap(), ["v1"]);
        assert!(c
            .manifest(
                "shop/site",
                "sha256:44f19f581cd51c0b908f59df5e782ba3ef255468a4e4da5b135ca2cc49e01b66"
            )
            .unwrap()
            .is_none());
        let subject = "sha256:7dd4656d297fedbdc69b4a209a7205dbc8183f013fd4eca0cc13a0a13201526f";
        assert_eq!(c.referrers("team/multi", subject).unwrap().len(), 1);
        assert_eq!(c.usage("team").unwrap().pulls, 3);
        // The reverse indexes and tag times format 2 keeps were built from format 1's data.
        let index = c.tag("team/multi", "latest").unwrap().unwrap();
        assert_eq!(c.tags_of("team/multi", &index).unwrap(), ["latest"]);
        let m = c.manifest("team/multi", &index).unwrap().unwrap();
        for child in &m.manifests {
            assert_eq!(
                c.referenced_by("team/multi", child).unwrap(),
                std::slice::from_ref(&index)
            );
        }
        assert_eq!(
            c.tag_times("team/multi", "latest").unwrap().pushed_at,
            m.pushed_at
        );
        assert!(m.pushed_at > 0);
        for (blob, _) in c.blob_links("team/app").unwrap() {
            assert!(c
                .linked_in(&blob)
                .unwrap()
                .contains(&"team/app".to_string()));
        }
        assert!(c
            .namespace("team")
            .unwrap()
            .unwrap()
            .immutable
            .patterns
            .is_empty());
        assert_eq!(
            c.namespace("team").unwrap().unwrap().visibility,
            crate::Visibility::Public
        );
        // It takes writes in the new format and reopens as format 2.
        let cmd = crate::Command::DeleteTag {
            repo: "team/multi".into(),
            tag: "arm-only".into(),
        };
        let out = meta
            .write(crate::Proposal::system("test", cmd))
            .await
            .unwrap();
        assert_eq!(out, crate::Outcome::Done);
        meta.shutdown().await.unwrap();
        drop(meta);
        let meta = crate::Metadata::open(config).await.unwrap();
        assert_eq!(
            meta.catalog().tags("team/multi", None, None).unwrap(),
            ["amd-only", "latest"]
        );
        meta.shutdown().await.unwrap();
        drop(meta);
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let format = db.open_tree(FORMAT).unwrap();
        assert_eq!(read_u32(&format, VERSION).unwrap(), Some(CURRENT));
        assert_eq!(read_u32(&format, STAGED).unwrap(), None);
        assert!(!db.tree_names().iter().any(|n| n.ends_with(b".next")));
    }

    /// A migration that crashed after staging finishes from the staged copy, and one that
    /// crashed while staging starts over: either way the result is the same.
    #[test]
    fn an_interrupted_migration_finishes_on_the_next_open() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/v1-single/data/meta");
        let expected = {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&fixture, dir.path());
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            open(&db, dir.path()).unwrap();
            dump(&db)
        };
        for crash_after_staging in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&fixture, dir.path());
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            stage(&db, &v1::ToV2, dir.path()).unwrap();
            if crash_after_staging {
                let format = db.open_tree(FORMAT).unwrap();
                format.insert(STAGED, &2u32.to_be_bytes()).unwrap();
                // Half of the copy back happened.
                db.open_tree(CATALOG).unwrap().clear().unwrap();
            } else {
                // Half-staged garbage in one `.next` tree.
                db.open_tree(next(LOG))
                    .unwrap()
                    .insert(b"junk", b"junk")
                    .unwrap();
            }
            open(&db, dir.path()).unwrap();
            assert_eq!(
                dump(&db),
                expected,
                "crash after staging: {crash_after_staging}"
            );
        }
    }

    /// Format 5 moves the log's entries out of sled as they are. A move interrupted before
    /// the version was set starts over (whatever it had written is replaced), and one
    /// interrupted after it leaves only the tree, dropped on the next open.
    #[test]
    fn the_log_moves_out_of_sled_whole_whatever_interrupted_it() {
        use crate::segments::{Segments, DIR, SEGMENT_BYTES};
        let entry = |i: u64| format!("entry {i}").repeat(i as usize % 5 + 1).into_bytes();
        for interrupted in ["nothing", "while writing", "after the version"] {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            db.open_tree(FORMAT)
                .unwrap()
                .insert(VERSION, &4u32.to_be_bytes())
                .unwrap();
            let log = db.open_tree(LOG).unwrap();
            for i in 8..5000u64 {
                log.insert(i.to_be_bytes(), entry(i)).unwrap();
            }
            match interrupted {
                "while writing" => {
                    for d in [DIR.to_string(), format!("{DIR}.next")] {
                        std::fs::create_dir_all(dir.path().join(&d)).unwrap();
                        std::fs::write(
                            dir.path().join(d).join("00000000000000000001.seg"),
                            b"torn",
                        )
                        .unwrap();
                    }
                }
                "after the version" => {
                    open(&db, dir.path()).unwrap();
                    let log = db.open_tree(LOG).unwrap();
                    for i in 8..20u64 {
                        log.insert(i.to_be_bytes(), b"stale".to_vec()).unwrap();
                    }
                }
                _ => {}
            }
            assert_eq!(open(&db, dir.path()).unwrap(), CURRENT, "{interrupted}");
            assert!(db.open_tree(LOG).unwrap().is_empty(), "{interrupted}");
            assert!(!dir.path().join(format!("{DIR}.next")).exists());
            let segments = Segments::open(&dir.path().join(DIR), SEGMENT_BYTES).unwrap();
            let moved = segments.read(0, u64::MAX).unwrap();
            let want: Vec<_> = (8..5000).map(entry).collect();
            assert!(moved == want, "{interrupted}: the entries moved differ");
        }
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn dump(db: &sled::Db) -> Vec<(String, Pairs)> {
        [CATALOG, LOG, SNAPSHOT, FORMAT]
            .iter()
            .map(|t| {
                let pairs = db
                    .open_tree(t)
                    .unwrap()
                    .iter()
                    .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect();
                (t.to_string(), pairs)
            })
            .collect()
    }

    #[test]
    fn derived_uids_depend_on_name_and_time_only() {
        assert_eq!(derived_uid("alice", 5), derived_uid("alice", 5));
        assert_ne!(derived_uid("alice", 5), derived_uid("alice", 6));
        assert_ne!(derived_uid("alice", 5), derived_uid("bob", 5));
    }
}
