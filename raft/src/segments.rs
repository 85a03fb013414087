//! The Raft log's entries in append-only segment files.
//!
//! Up to format 4 the entries lived in a sled tree. Every append (synced before openraft
//! hears of it) made sled flush its whole database, and the entries a snapshot let go left
//! dead pages behind that sled never gives back: with a catalogue of a million tags the
//! metadata took 11× the catalogue's own bytes on disk. A segment is written once, synced
//! with `fdatasync`, and deleted whole once the log is purged past its last entry, so the
//! log takes about what its entries do, and sled holds only the catalogue.
//!
//! ```text
//! <meta dir>/raft-log/<first index, 20 digits>.seg
//! segment:  record*             the n-th record is entry `first + n`
//! record:   length  u32 BE      of the entry
//!           crc     u32 BE      CRC-32 of the entry
//!           entry               postcard `Entry<TypeConfig>` (format::CURRENT)
//! ```
//!
//! A segment takes records until it passes `segment_bytes`; the next begins at the next
//! index. A crash can leave a torn or unwritten record behind the last one synced. Appends
//! are acknowledged only once every segment they touched is synced, so whatever follows the
//! first bad record was never acknowledged: opening cuts the log there (and drops the
//! segments after it), the way a write-ahead log is repaired.
//!
//! This file does only IO, in blocking calls: `log_store` runs them off the async threads,
//! keeps the vote and the pointers, and speaks openraft.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const DIR: &str = "raft-log";
/// Where a segment is closed and the next begun: small enough that a purge frees the space
/// soon after a snapshot, large enough that a busy log makes few files.
pub(crate) const SEGMENT_BYTES: u64 = 32 << 20;
const HEADER: usize = 8;
/// Larger than any entry Shoal writes (a proposal carries at most one manifest, at most
/// 4 MiB): a longer length is a torn header, not a record.
const MAX_RECORD: u32 = 64 << 20;

struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Where each record starts; the segment's records are `first..first + offsets.len()`.
    offsets: Vec<u64>,
    end: u64,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }
}

/// Files an append wrote to: synced (outside any lock) before the append is acknowledged.
#[must_use]
pub(crate) struct Unsynced {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
}

impl Unsynced {
    pub(crate) fn sync(self) -> io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        if let Some(dir) = self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

pub(crate) struct Segments {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Vec<Segment>,
}

fn file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Segments {
    /// Opens (or creates) the log in `dir`, cutting it at the first record a crash left
    /// incomplete.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> io::Result<Segments> {
        std::fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .filter(|n| n.len() == 20)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        let mut cut = false;
        for first in firsts {
            let path = dir.join(file_name(first));
            let follows = segments.last().map(Segment::next_index);
            if cut || follows.is_some_and(|next| next != first) {
                tracing::warn!(segment = %path.display(), "dropping a log segment after the log's end");
                std::fs::remove_file(&path)?;
                cut = true;
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let (offsets, end, whole) = scan(&file)?;
            if !whole {
                tracing::warn!(
                    segment = %path.display(),
                    kept = offsets.len(),
                    "cutting the log after its last whole entry (a crash interrupted an append)"
                );
                file.set_len(end)?;
                file.sync_data()?;
                cut = true;
            }
            if offsets.is_empty() {
                std::fs::remove_file(&path)?;
                continue;
            }
            segments.push(Segment {
                first,
                path,
                file: Arc::new(file),
                offsets,
                end,
            });
        }
        Ok(Segments {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments,
        })
    }

    /// The index of the first entry held, if any.
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.segments.first().map(|s| s.first)
    }

    /// The index of the last entry held, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.segments.last().map(|s| s.next_index() - 1)
    }

    /// Bytes the segment files take.
    pub(crate) fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.end).sum()
    }

    /// Writes entries after the last one (`index` must follow it, unless the log is empty).
    /// Nothing is durable until the returned files are synced.
    pub(crate) fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> io::Result<Unsynced> {
        let mut unsynced = Unsynced {
            files: Vec::new(),
            dir: None,
        };
        for (index, bytes) in entries {
            if let Some(last) = self.last_index() {
                if index != last + 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("log entry {index} appended after entry {last}"),
                    ));
                }
            }
            if self
                .segments
                .last()
                .is_none_or(|s| s.end >= self.segment_bytes)
            {
                let path = self.dir.join(file_name(index));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)?;
                self.segments.push(Segment {
                    first: index,
                    path,
                    file: Arc::new(file),
                    offsets: Vec::new(),
                    end: 0,
                });
                unsynced.dir = Some(self.dir.clone());
            }
            let s = self
                .segments
                .last_mut()
                .expect("a segment was just ensured");
            let len = u32::try_from(bytes.len())
                .ok()
                .filter(|&l| l <= MAX_RECORD)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("log entry {index} is {} bytes", bytes.len()),
                    )
                })?;
            let mut record = Vec::with_capacity(HEADER + bytes.len());
            record.extend_from_slice(&len.to_be_bytes());
            record.extend_from_slice(&crc32fast::hash(bytes).to_be_bytes());
            record.extend_from_slice(bytes);
            s.file.write_all_at(&record, s.end)?;
            s.offsets.push(s.end);
            s.end += record.len() as u64;
            if !unsynced.files.iter().any(|f| Arc::ptr_eq(f, &s.file)) {
                unsynced.files.push(s.file.clone());
            }
        }
        Ok(unsynced)
    }

    /// The entries `from..to` that are held, in order (fewer at either end where the log
    /// has none).
    pub(crate) fn read(&self, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let start = self.segments.partition_point(|s| s.next_index() <= from);
        for s in &self.segments[start..] {
            if s.first >= to {
                break;
            }
            let lo = from.max(s.first);
            let hi = to.min(s.next_index());
            for index in lo..hi {
                let at = s.offsets[(index - s.first) as usize];
                out.push(read_record(&s.file, at).map_err(|e| {
                    corrupt(format!("log entry {index} in {}: {e}", s.path.display()))
                })?);
            }
        }
        Ok(out)
    }

    /// Removes the entries from `index` on. Durable when it returns.
    pub(crate) fn truncate(&mut self, index: u64) -> io::Result<()> {
        let mut removed = false;
        while self.segments.last().is_some_and(|s| s.first >= index) {
            let s = self.segments.pop().expect("checked");
            std::fs::remove_file(&s.path)?;
            removed = true;
        }
        if let Some(s) = self.segments.last_mut() {
            if index < s.next_index() {
                let keep = (index - s.first) as usize;
                s.end = s.offsets[keep];
                s.offsets.truncate(keep);
                s.file.set_len(s.end)?;
                s.file.sync_data()?;
            }
        }
        if removed {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Deletes the segments whose every entry is at or before `index`: the space a purge
    /// frees. Entries before `index` in the segment that holds it stay until it goes.
    pub(crate) fn purge(&mut self, index: u64) -> io::Result<()> {
        let gone = self
            .segments
            .partition_point(|s| s.next_index() <= index + 1);
        for s in self.segments.drain(..gone) {
            std::fs::remove_file(&s.path)?;
        }
        if gone > 0 {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn read_record(file: &File, at: u64) -> io::Result<Vec<u8>> {
    let mut header = [0u8; HEADER];
    file.read_exact_at(&mut header, at)?;
    let (len, crc) = parse_header(&header);
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, at + HEADER as u64)?;
    if crc32fast::hash(&bytes) != crc {
        return Err(corrupt("its checksum does not match".into()));
    }
    Ok(bytes)
}

fn parse_header(header: &[u8; HEADER]) -> (u32, u32) {
    let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
    (len, crc)
}

/// Reads a segment through: where each whole record starts, where the last whole one ends,
/// and whether the file ends there (false: a torn or bad record follows).
fn scan(file: &File) -> io::Result<(Vec<u64>, u64, bool)> {
    let size = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offsets = Vec::new();
    let mut at = 0u64;
    let mut body = Vec::new();
    while at < size {
        let mut header = [0u8; HEADER];
        if size - at < HEADER as u64 {
            return Ok((offsets, at, false));
        }
        reader.read_exact(&mut header)?;
        let (len, crc) = parse_header(&header);
        if len > MAX_RECORD || size - at - (HEADER as u64) < u64::from(len) {
            return Ok((offsets, at, false));
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            return Ok((offsets, at, false));
        }
        offsets.push(at);
        at += HEADER as u64 + u64::from(len);
    }
    Ok((offsets, at, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Vec<u8> {
        format!("entry {i} ")
            .repeat(1 + (i % 7) as usize)
            .into_bytes()
    }

    fn append(log: &mut Segments, range: std::ops::Range<u64>) {
        let entries: Vec<_> = range.map(|i| (i, entry(i))).collect();
        log.append(entries.iter().map(|(i, b)| (*i, b.as_slice())))
            .unwrap()
            .sync()
            .unwrap();
    }

    fn check(log: &Segments, from: u64, to: u64, expected: std::ops::Range<u64>) {
        let got = log.read(from, to).unwrap();
        let want: Vec<_> = expected.map(entry).collect();
        assert_eq!(got, want, "read {from}..{to}");
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn entries_read_back_across_segments_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), 200).unwrap();
        assert_eq!(log.last_index(), None);
        append(&mut log, 5..40);
        assert!(files(dir.path()).len() > 3, "small segments roll over");
        check(&log, 0, 100, 5..40);
        check(&log, 17, 23, 17..23);
        check(&log, 39, 40, 39..40);
        check(&log, 40, 50, 40..40);
        drop(log);
        let log = Segments::open(dir.path(), 200).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (Some(5), Some(39)));
        check(&log, 0, 100, 5..40);
    }

    #[test]
    fn an_append_must_follow_the_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), 200).unwrap();
        append(&mut log, 1..4);
        let b = entry(9);
        let err = log.append([(9, b.as_slice())]).err().unwrap();
        assert!(err.to_string().contains("appended after entry 3"), "{err}");
        check(&log, 0, 100, 1..4);
    }

    #[test]
    fn truncating_removes_the_tail_and_appends_go_on_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), 200).unwrap();
        append(&mut log, 1..40);
        log.truncate(25).unwrap();
        check(&log, 0, 100, 1..25);
        log.truncate(100).unwrap();
        check(&log, 0, 100, 1..25);
        append(&mut log, 25..30);
        check(&log, 0, 100, 1..30);
        drop(log);
        let mut log = Segments::open(dir.path(), 200).unwrap();
        check(&log, 0, 100, 1..30);
        log.truncate(1).unwrap();
        assert_eq!(log.last_index(), None);
        assert!(files(dir.path()).is_empty());
    }

    #[test]
    fn purging_deletes_whole_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), 200).unwrap();
        append(&mut log, 1..60);
        let before = files(dir.path()).len();
        log.purge(30).unwrap();
        let first = log.first_index().unwrap();
        assert!(first <= 31 && first > 1, "first kept entry {first}");
        assert!(files(dir.path()).len() < before);
        check(&log, 31, 100, 31..60);
        // Past the end (a snapshot newer than the log was installed): nothing is left, and
        // the log goes on from wherever openraft appends next.
        log.purge(500).unwrap();
        assert_eq!(log.last_index(), None);
        append(&mut log, 501..505);
        check(&log, 0, 1000, 501..505);
    }

    #[test]
    fn a_torn_tail_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), 200).unwrap();
        append(&mut log, 1..30);
        let names = files(dir.path());
        let last = dir.path().join(names.last().unwrap());
        let middle = dir.path().join(&names[names.len() / 2]);
        drop(log);
        // A half-written record at the end: cut off, the rest kept.
        let len = std::fs::metadata(&last).unwrap().len();
        let f = OpenOptions::new().write(true).open(&last).unwrap();
        f.write_all_at(&[0, 0, 0, 50, 1, 2], len).unwrap();
        let log = Segments::open(dir.path(), 200).unwrap();
        check(&log, 0, 100, 1..30);
        assert_eq!(std::fs::metadata(&last).unwrap().len(), len);
        drop(log);
        // A record whose bytes never reached the disk in a middle segment: the log ends
        // before it, and the segments after it go.
        let len = std::fs::metadata(&middle).unwrap().len();
        let f = OpenOptions::new().write(true).open(&middle).unwrap();
        f.write_all_at(b"\xff", len - 1).unwrap();
        let log = Segments::open(dir.path(), 200).unwrap();
        let last = log.last_index().unwrap();
        assert!((1..29).contains(&last), "log cut at {last}");
        check(&log, 0, 100, 1..last + 1);
        assert_eq!(
            files(dir.path()).last().unwrap(),
            &middle.file_name().unwrap().to_string_lossy().to_string()
        );
    }
}
