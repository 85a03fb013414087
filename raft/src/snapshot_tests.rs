//! Tests of snapshot files and their install (`snapshot`).

use super::*;
use crate::snapshot_file::MAX_PART;

fn tree_with(db: &sled::Db, name: &str, n: usize) -> sled::Tree {
    let tree = db.open_tree(name).unwrap();
    for i in 0..n {
        tree.insert(format!("k/{i:05}"), vec![i as u8; i % 300])
            .unwrap();
    }
    tree
}

fn pairs(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    tree.iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

fn meta(index: u64) -> Meta {
    Meta {
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
        last_membership: Default::default(),
        snapshot_id: format!("test-{index}"),
    }
}

fn setup() -> (tempfile::TempDir, sled::Db, Snapshots) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let snapshots = Snapshots::open(
        dir.path(),
        db.open_tree("snapshot").unwrap(),
        db.open_tree("snapshot.undo").unwrap(),
        &db.open_tree("catalog").unwrap(),
    )
    .unwrap();
    (dir, db, snapshots)
}

fn batch(writes: &[(&str, Option<&str>)]) -> Batch {
    let mut b = Batch::default();
    for (k, v) in writes {
        match v {
            Some(v) => b.insert(k.as_bytes(), v.as_bytes()),
            None => b.remove(k.as_bytes()),
        }
    }
    b
}

/// Writes applied after a build began (changes, deletions, new keys, a key changed
/// twice) do not show in its file: it holds the catalogue as it was when it began.
#[test]
fn a_snapshot_shows_the_catalogue_as_it_was_when_it_began() {
    let (_dir, db, snapshots) = setup();
    let catalog = tree_with(&db, "catalog", 2_000);
    let before = pairs(&catalog);
    snapshots.begin().unwrap();
    let writes = [
        ("k/00010", Some("changed")),
        ("k/00011", None),
        ("k/99999", Some("new")),
        ("k/00010", Some("changed again")),
        ("k/01999", None),
    ];
    for w in writes.chunks(1) {
        let b = batch(w);
        snapshots.undo().save(&catalog, &b).unwrap();
        catalog.apply_batch(b.into_sled()).unwrap();
    }
    let part = snapshots.write(&catalog).unwrap().path;
    let mut got: Vec<(Vec<u8>, Vec<u8>)> =
        read_file(&part).unwrap().map(|kv| kv.unwrap()).collect();
    got.sort();
    got.dedup();
    assert_eq!(got, before);
    assert!(
        snapshots.undo.tree.is_empty(),
        "the saved values go with the build"
    );
    // After the build, writes save nothing.
    let b = batch(&[("k/00012", Some("later"))]);
    snapshots.undo().save(&catalog, &b).unwrap();
    assert!(snapshots.undo.tree.is_empty());
}

fn without_bookkeeping(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs(tree)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(b"~"))
        .collect()
}

#[test]
fn a_catalogue_written_and_installed_is_the_same_catalogue() {
    let (_dir, db, snapshots) = setup();
    let source = tree_with(&db, "source", 10_000);
    let part = snapshots.write(&source).unwrap().path;
    assert_eq!(check(&part).unwrap().pairs, 10_000);
    let target = tree_with(&db, "catalog", 3);
    target.insert(b"only-here", b"x").unwrap();
    snapshots.install(&part, &meta(7), &target).unwrap();
    assert_eq!(without_bookkeeping(&target), pairs(&source));
    let applied: Option<LogId<NodeId>> =
        serde_json::from_slice(&target.get(APPLIED).unwrap().unwrap()).unwrap();
    assert_eq!(applied.unwrap().index, 7);
    let (current, _) = snapshots.current().unwrap().unwrap();
    assert_eq!(current.snapshot_id, "test-7");
    let files: Vec<_> = std::fs::read_dir(&snapshots.dir).unwrap().collect();
    assert_eq!(files.len(), 1, "only the current snapshot's file is kept");
}

/// Writes `tree`'s pairs as a snapshot file of `format` at `dir/name`.
fn file_of_format(dir: &Path, name: &str, tree: &sled::Tree, format: u32) -> PathBuf {
    let path = dir.join(name);
    let pairs = pairs(tree).into_iter().map(Ok::<_, io::Error>);
    crate::snapshot_file::write_file_as(&path, pairs, format).unwrap();
    path
}

/// Installs each damaged file in `cases`; each must be refused with `why` in its error,
/// as damaged data, the catalogue untouched.
fn refused(snapshots: &Snapshots, target: &sled::Tree, cases: &[(&str, Vec<u8>, &str)]) {
    let before = pairs(target);
    for (what, data, why) in cases {
        let part = snapshots.dir.join("case.part");
        std::fs::write(&part, data).unwrap();
        let err = snapshots.install(&part, &meta(9), target).unwrap_err();
        assert!(err.to_string().contains(why), "{what}: {err}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        assert_eq!(pairs(target), before, "{what}: the catalogue is untouched");
    }
}

/// A truncated, altered or foreign file is refused before the catalogue is touched: a
/// plain file (formats 4 and 5) byte by byte where its fields lie.
#[test]
fn a_damaged_file_is_refused_and_the_catalogue_kept() {
    let (_dir, db, snapshots) = setup();
    let source = tree_with(&db, "source", 500);
    let good = file_of_format(&snapshots.dir, "plain.snap", &source, 5);
    let bytes = std::fs::read(&good).unwrap();
    let target = tree_with(&db, "catalog", 20);
    let with = |at: usize, put: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + put.len()].copy_from_slice(put);
        b
    };
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 1;
    let mut longer = bytes.clone();
    longer.push(0);
    let newer = (crate::format::CURRENT + 1).to_be_bytes();
    let cases = [
        ("empty", vec![], "ends early"),
        ("magic only", bytes[..8].to_vec(), "ends early"),
        (
            "cut in a pair",
            bytes[..bytes.len() / 3].to_vec(),
            "ends early",
        ),
        (
            "cut in the hash",
            bytes[..bytes.len() - 5].to_vec(),
            "ends early",
        ),
        ("a bit flipped", flipped, "SHA-256"),
        ("a byte too many", longer, "after its end"),
        (
            "a length too long",
            with(12, &(MAX_PART + 1).to_be_bytes()),
            "longer than any",
        ),
        ("another format", with(8, &3u32.to_be_bytes()), "format"),
        ("a newer format", with(8, &newer), "format"),
    ];
    refused(&snapshots, &target, &cases);
    let foreign = with(0, b"X");
    std::fs::write(snapshots.dir.join("x.part"), &foreign).unwrap();
    assert!(check(&snapshots.dir.join("x.part"))
        .unwrap_err()
        .to_string()
        .contains("not a Shoal snapshot"));
}

/// This format's files are compressed (a fraction of the size for these pairs), and a
/// compressed file cut short, altered, lengthened or labelled plain is refused too.
#[test]
fn a_compressed_file_is_smaller_and_refused_when_damaged() {
    let (_dir, db, snapshots) = setup();
    let source = tree_with(&db, "source", 2_000);
    let plain = std::fs::read(file_of_format(&snapshots.dir, "p.snap", &source, 5)).unwrap();
    let bytes = std::fs::read(snapshots.write(&source).unwrap().path).unwrap();
    assert_eq!(bytes[8..12], crate::format::CURRENT.to_be_bytes());
    assert!(
        bytes.len() * 4 < plain.len(),
        "compressed {} bytes against {} plain",
        bytes.len(),
        plain.len()
    );
    let target = tree_with(&db, "catalog", 20);
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    let mut longer = bytes.clone();
    longer.push(0);
    let mut as_plain = bytes.clone();
    as_plain[8..12].copy_from_slice(&5u32.to_be_bytes());
    let cases = [
        ("header only", bytes[..12].to_vec(), "ends early"),
        (
            "cut in the middle",
            bytes[..bytes.len() / 2].to_vec(),
            "ends early",
        ),
        (
            "cut at the end",
            bytes[..bytes.len() - 3].to_vec(),
            "ends early",
        ),
        ("a bit flipped", flipped, "damaged snapshot file"),
        ("a byte too many", longer, "damaged snapshot file"),
        ("labelled plain", as_plain, "damaged snapshot file"),
    ];
    refused(&snapshots, &target, &cases);
}

/// A directory migrated from format 4 or 5 keeps its snapshot file, plain, whose header
/// says 4 or 5: a node of this format installs it (the pairs did not change), so a joiner
/// can take it.
#[test]
fn plain_snapshot_files_of_formats_4_and_5_install() {
    let (_dir, db, snapshots) = setup();
    let source = tree_with(&db, "source", 300);
    for format in [4, 5] {
        let name = format!("v{format}.part");
        let part = file_of_format(&snapshots.dir, &name, &source, format);
        let target = tree_with(&db, &format!("catalog{format}"), 20);
        snapshots.install(&part, &meta(9), &target).unwrap();
        assert_eq!(
            without_bookkeeping(&target),
            pairs(&source),
            "format {format}"
        );
    }
}

/// The snapshot file an older build wrote (fixture `v4-single`, format 4, plain) is read
/// and checked by this build.
#[test]
fn the_snapshot_file_an_older_build_wrote_is_read() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/v4-single/data/meta/snapshots");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("the fixture holds a snapshot file");
    let pairs = check(&file).unwrap().pairs;
    assert!(pairs > 10, "{pairs} pairs");
    let keys: Vec<Vec<u8>> = read_file(&file).unwrap().map(|kv| kv.unwrap().0).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "pairs in key order");
}

/// Snapshots are paced by the catalogue's own bytes (`due_after`), not by their compressed
/// file's, and a restart keeps that figure.
#[test]
fn the_catalogue_bytes_pace_snapshots_across_a_restart() {
    let (dir, db, snapshots) = setup();
    let catalog = tree_with(&db, "catalog", 3_000);
    let own: u64 = pairs(&catalog)
        .iter()
        .map(|(k, v)| 8 + (k.len() + v.len()) as u64)
        .sum();
    let built = snapshots.write(&catalog).unwrap();
    snapshots.keep_built(&built, &meta(30)).unwrap().unwrap();
    let stats = snapshots.stats(0);
    assert_eq!(stats.snapshot_bytes, own);
    assert!(stats.snapshot_file_bytes * 4 < own, "{stats:?}");
    assert_eq!(snapshots.due_after(1), own / 4096);
    let reopened = Snapshots::open(
        dir.path(),
        db.open_tree("snapshot").unwrap(),
        db.open_tree("snapshot.undo").unwrap(),
        &catalog,
    )
    .unwrap();
    assert_eq!(reopened.stats(0).snapshot_bytes, own);
    assert_eq!(reopened.due_after(1), own / 4096);
}

/// An install a crash cut short (half the pairs loaded) is finished when the directory
/// is opened again.
#[test]
fn an_interrupted_install_finishes_on_the_next_open() {
    let (dir, db, snapshots) = setup();
    let source = tree_with(&db, "source", 9_000);
    let part = snapshots.write(&source).unwrap().path;
    let file = "12-1-0.snap".to_string();
    std::fs::rename(&part, snapshots.dir.join(&file)).unwrap();
    let catalog = db.open_tree("catalog").unwrap();
    for (k, v) in pairs(&source).into_iter().take(4_000) {
        catalog.insert(k, v).unwrap();
    }
    catalog.insert(b"stale", b"from before").unwrap();
    let begun = Installing {
        file,
        meta: meta(12),
    };
    snapshots
        .tree
        .insert(INSTALLING, json(&begun).unwrap())
        .unwrap();
    std::fs::write(snapshots.dir.join("received-1-1.part"), b"half").unwrap();
    let reopened = Snapshots::open(
        dir.path(),
        db.open_tree("snapshot").unwrap(),
        db.open_tree("snapshot.undo").unwrap(),
        &catalog,
    )
    .unwrap();
    assert_eq!(without_bookkeeping(&catalog), pairs(&source));
    assert!(reopened.tree.get(INSTALLING).unwrap().is_none());
    assert_eq!(
        reopened.current().unwrap().unwrap().0.snapshot_id,
        "test-12"
    );
    assert!(
        !snapshots.dir.join("received-1-1.part").exists(),
        "half-received files are removed"
    );
}

/// A build that finishes after a newer snapshot was installed does not replace it.
#[test]
fn a_build_overtaken_by_an_install_is_dropped() {
    let (_dir, db, snapshots) = setup();
    let catalog = tree_with(&db, "catalog", 10);
    let newer = snapshots.write(&catalog).unwrap().path;
    snapshots.install(&newer, &meta(20), &catalog).unwrap();
    let older = snapshots.write(&catalog).unwrap();
    assert!(snapshots.keep_built(&older, &meta(15)).unwrap().is_none());
    assert!(!older.path.exists());
    assert_eq!(
        snapshots.current().unwrap().unwrap().0.snapshot_id,
        "test-20"
    );
    let newest = snapshots.write(&catalog).unwrap();
    let kept = snapshots.keep_built(&newest, &meta(25)).unwrap().unwrap();
    assert!(kept.exists());
    assert_eq!(
        snapshots.current().unwrap().unwrap().0.snapshot_id,
        "test-25"
    );
    assert_eq!(std::fs::read_dir(&snapshots.dir).unwrap().count(), 1);
}

/// Guards against received files piling up: a transfer the leader abandons is dropped by
/// openraft before it is closed, and its `.part` file must go with it.
#[tokio::test]
async fn an_abandoned_transfer_leaves_no_file_and_a_finished_one_stays() {
    use tokio::io::AsyncWriteExt;
    let (dir, _db, snapshots) = setup();
    let parts = || {
        std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "part")
            })
            .count()
    };
    let mut abandoned = snapshots.receive().await.unwrap();
    abandoned.write_all(b"half a snapshot").await.unwrap();
    assert_eq!(parts(), 1);
    drop(abandoned);
    assert_eq!(parts(), 0, "the abandoned transfer's file is gone");

    let mut finished = snapshots.receive().await.unwrap();
    finished.write_all(b"a whole snapshot").await.unwrap();
    let path = finished.close().await.unwrap();
    assert!(path.exists(), "a closed file is kept for the install");
}
