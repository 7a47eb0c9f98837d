//! A filesystem that can lose power: what a disk keeps of the writes no
//! fsync covered, which kill -9 cannot show (the kernel keeps those).
//!
//! A FUSE filesystem over a backing directory, in the spirit of LazyFS. A
//! file's writes and length changes stay in memory, page by page, until an
//! `fsync` or `fdatasync` of that file writes them to the backing file and
//! syncs it. [`PowerFs::cut`] is the power cut: of each file's unsynced
//! pages, a random part reaches the backing file (a disk writes back some
//! of its cache on its own, in any order) and the rest is lost, page-whole,
//! as a disk with atomic sector writes loses it. Files are created, removed
//! and renamed at once: the directory is treated as durable, the contents
//! are not.
//!
//! The kernel caches nothing across a cut: attributes and entries live for
//! no time, and the page cache of a file is dropped when it is opened again
//! (no `FOPEN_KEEP_CACHE`), so the process restarted after the cut reads
//! what the disk kept.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use fuser::{BackgroundSession, Config, Errno, FileAttr, FileType, INodeNo, MountOption};

mod fuse;

const PAGE: u64 = 4096;

/// A mounted [`PowerFs`]; unmounted when dropped.
pub(crate) struct Mounted {
    session: Option<BackgroundSession>,
    state: Arc<Mutex<State>>,
    /// Unsynced pages written back at cuts, and lost.
    pub(crate) kept: u64,
    pub(crate) lost: u64,
}

impl Mounted {
    /// Mounts a filesystem over `backing` at `at` (root and `/dev/fuse`).
    pub(crate) fn mount(backing: &Path, at: &Path) -> anyhow::Result<Mounted> {
        let state = Arc::new(Mutex::new(State::new(backing)));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("keel-powerfs".into())];
        let session =
            fuser::spawn_mount(fuse::PowerFs(state.clone()), at, &config).with_context(|| {
                format!(
                    "cannot mount the power-loss filesystem at {} (it needs root and /dev/fuse)",
                    at.display()
                )
            })?;
        Ok(Mounted {
            session: Some(session),
            state,
            kept: 0,
            lost: 0,
        })
    }

    /// The power cut: each file's unsynced pages reach the disk with
    /// probability `keep`, the others are lost; every length change not
    /// synced is lost. Call it once no process has a file open.
    pub(crate) fn cut(&mut self, keep: f64) -> anyhow::Result<()> {
        let (kept, lost) = lock(&self.state).cut(keep)?;
        self.kept += kept;
        self.lost += lost;
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A file's writes since its last sync.
#[derive(Default)]
struct Dirty {
    /// Whole pages as the process sees them, each up to the file's length.
    pages: BTreeMap<u64, Vec<u8>>,
    /// The length the process sees, when it differs from the backing file's.
    len: Option<u64>,
}

struct State {
    backing: PathBuf,
    /// Inode → path under `backing` ("" is the root).
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next: u64,
    dirty: HashMap<u64, Dirty>,
}

impl State {
    fn new(backing: &Path) -> State {
        let root = INodeNo::ROOT.0;
        State {
            backing: backing.to_owned(),
            paths: HashMap::from([(root, PathBuf::new())]),
            inodes: HashMap::from([(PathBuf::new(), root)]),
            next: root + 1,
            dirty: HashMap::new(),
        }
    }

    /// See [`Mounted::cut`]; the pages kept and lost.
    fn cut(&mut self, keep: f64) -> std::io::Result<(u64, u64)> {
        let (mut kept, mut lost) = (0, 0);
        for (ino, dirty) in std::mem::take(&mut self.dirty) {
            let Some(path) = self.paths.get(&ino).map(|p| self.backing.join(p)) else {
                continue;
            };
            let file = OpenOptions::new().write(true).open(&path)?;
            for (page, bytes) in dirty.pages {
                if fastrand::f64() < keep {
                    file.write_all_at(&bytes, page * PAGE)?;
                    kept += 1;
                } else {
                    lost += 1;
                }
            }
        }
        Ok((kept, lost))
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths
            .get(&ino.0)
            .map(|p| self.backing.join(p))
            .ok_or(Errno::ENOENT)
    }

    fn child(&mut self, parent: INodeNo, name: &OsStr) -> Result<(u64, PathBuf), Errno> {
        let relative = self.paths.get(&parent.0).ok_or(Errno::ENOENT)?.join(name);
        let ino = match self.inodes.get(&relative) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.paths.insert(ino, relative.clone());
                self.inodes.insert(relative.clone(), ino);
                ino
            }
        };
        Ok((ino, self.backing.join(relative)))
    }

    fn rename(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> Result<(), Errno> {
        let (ino, from) = self.child(parent, name)?;
        if std::fs::symlink_metadata(&from).map_err(io_errno)?.is_dir() {
            return Err(Errno::EXDEV);
        }
        let (_, to) = self.child(newparent, newname)?;
        std::fs::rename(&from, &to).map_err(io_errno)?;
        let dirty = self.dirty.remove(&ino);
        // What was at the new name is gone; the file takes its place.
        self.forget_path(newparent, newname);
        self.forget_path(parent, name);
        let relative = to
            .strip_prefix(&self.backing)
            .map_err(|_| Errno::EINVAL)?
            .to_owned();
        self.paths.insert(ino, relative.clone());
        self.inodes.insert(relative, ino);
        if let Some(dirty) = dirty {
            self.dirty.insert(ino, dirty);
        }
        Ok(())
    }

    fn forget_path(&mut self, parent: INodeNo, name: &OsStr) -> Option<u64> {
        let relative = self.paths.get(&parent.0)?.join(name);
        let ino = self.inodes.remove(&relative)?;
        self.paths.remove(&ino);
        self.dirty.remove(&ino);
        Some(ino)
    }

    fn attr(&self, ino: u64, path: &Path) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(path).map_err(io_errno)?;
        let size = self
            .dirty
            .get(&ino)
            .and_then(|d| d.len)
            .unwrap_or(meta.len());
        let time = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs());
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime()),
            mtime: time(meta.mtime()),
            ctime: time(meta.ctime()),
            crtime: time(meta.ctime()),
            kind: if meta.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: (meta.permissions().mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    /// The length the process sees.
    fn len(&self, ino: u64, path: &Path) -> Result<u64, Errno> {
        match self.dirty.get(&ino).and_then(|d| d.len) {
            Some(len) => Ok(len),
            None => Ok(std::fs::metadata(path).map_err(io_errno)?.len()),
        }
    }

    /// Page `page` as the process sees it (zeros past the end).
    fn page(&self, ino: u64, base: &File, page: u64) -> Result<Vec<u8>, Errno> {
        if let Some(bytes) = self.dirty.get(&ino).and_then(|d| d.pages.get(&page)) {
            return Ok(bytes.clone());
        }
        let mut bytes = vec![0u8; PAGE as usize];
        let mut read = 0;
        while read < bytes.len() {
            match base.read_at(&mut bytes[read..], page * PAGE + read as u64) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) => return Err(io_errno(e)),
            }
        }
        Ok(bytes)
    }

    fn read(&self, ino: u64, path: &Path, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let len = self.len(ino, path)?;
        let end = len.min(offset + u64::from(size));
        if offset >= end {
            return Ok(Vec::new());
        }
        let base = File::open(path).map_err(io_errno)?;
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut at = offset;
        while at < end {
            let page = at / PAGE;
            let bytes = self.page(ino, &base, page)?;
            let from = (at - page * PAGE) as usize;
            let to = ((end - page * PAGE).min(PAGE)) as usize;
            out.extend_from_slice(&bytes[from..to]);
            at = page * PAGE + to as u64;
        }
        Ok(out)
    }

    fn write(&mut self, ino: u64, path: &Path, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let len = self.len(ino, path)?;
        let base = File::open(path).map_err(io_errno)?;
        let mut at = offset;
        let end = offset + data.len() as u64;
        while at < end {
            let page = at / PAGE;
            let mut bytes = self.page(ino, &base, page)?;
            let from = (at - page * PAGE) as usize;
            let to = ((end - page * PAGE).min(PAGE)) as usize;
            let src = (at - offset) as usize;
            bytes[from..to].copy_from_slice(&data[src..src + (to - from)]);
            self.dirty.entry(ino).or_default().pages.insert(page, bytes);
            at = page * PAGE + to as u64;
        }
        if end > len {
            self.dirty.entry(ino).or_default().len = Some(end);
        }
        Ok(())
    }

    fn truncate(&mut self, ino: u64, path: &Path, len: u64) -> Result<(), Errno> {
        let base = File::open(path).map_err(io_errno)?;
        let last = len / PAGE;
        let tail = (len % PAGE) as usize;
        let kept_tail = if tail > 0 {
            let mut bytes = self.page(ino, &base, last)?;
            bytes[tail..].fill(0);
            Some(bytes)
        } else {
            None
        };
        let dirty = self.dirty.entry(ino).or_default();
        dirty.pages.retain(|&page, _| page < last);
        if let Some(bytes) = kept_tail {
            dirty.pages.insert(last, bytes);
        }
        dirty.len = Some(len);
        Ok(())
    }

    /// fsync: the file's pages and length to the backing file, synced.
    fn sync(&mut self, ino: u64, path: &Path) -> Result<(), Errno> {
        let Some(dirty) = self.dirty.remove(&ino) else {
            return Ok(());
        };
        let len = match dirty.len {
            Some(len) => len,
            None => std::fs::metadata(path).map_err(io_errno)?.len(),
        };
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_errno)?;
        for (page, bytes) in dirty.pages {
            let upto = (len.saturating_sub(page * PAGE)).min(PAGE) as usize;
            file.write_all_at(&bytes[..upto], page * PAGE)
                .map_err(io_errno)?;
        }
        file.set_len(len).map_err(io_errno)?;
        file.sync_data().map_err(io_errno)
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

    use super::*;

    /// A file `name` in a fresh backing directory, as the kernel would
    /// have looked it up.
    fn disk(name: &str) -> (tempfile::TempDir, State, u64, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, b"").unwrap();
        let mut state = State::new(dir.path());
        let (ino, _) = state.child(INodeNo::ROOT, OsStr::new(name)).unwrap();
        (dir, state, ino, path)
    }

    #[test]
    fn writes_are_seen_at_once_and_kept_only_once_synced() {
        let (_dir, mut state, ino, path) = disk("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        state.write(ino, &path, 100, &data).unwrap();
        assert_eq!(state.len(ino, &path).unwrap(), 10_100);
        assert_eq!(state.read(ino, &path, 100, 10_000).unwrap(), data);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "written through"
        );

        state.sync(ino, &path).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 10_100);
        assert_eq!(&on_disk[100..], &data[..]);

        // After the sync: a write and a truncation, then a cut that keeps nothing.
        state.write(ino, &path, 0, b"lost").unwrap();
        state.truncate(ino, &path, 50).unwrap();
        assert_eq!(state.len(ino, &path).unwrap(), 50);
        let (kept, lost) = state.cut(0.0).unwrap();
        assert_eq!((kept, lost), (0, 1));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            on_disk,
            "the cut lost only what was unsynced"
        );
        assert_eq!(state.len(ino, &path).unwrap(), 10_100);
    }

    #[test]
    fn a_cut_can_write_back_unsynced_pages_whole() {
        let (_dir, mut state, ino, path) = disk("f");
        state
            .write(ino, &path, 0, &[7u8; 3 * PAGE as usize])
            .unwrap();
        state.sync(ino, &path).unwrap();
        state.write(ino, &path, PAGE + 10, b"abc").unwrap();
        let (kept, lost) = state.cut(1.0).unwrap();
        assert_eq!((kept, lost), (1, 0));
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[PAGE as usize + 10..PAGE as usize + 13], b"abc");
        assert!(
            on_disk[..PAGE as usize + 10].iter().all(|&b| b == 7),
            "the rest of the page is as it was"
        );
    }

    #[test]
    fn a_rename_replaces_the_target_and_keeps_the_files_unsynced_pages() {
        let (dir, mut state, ino, path) = disk("keys.tmp");
        std::fs::write(dir.path().join("keys.json"), b"old").unwrap();
        let (old, _) = state.child(INodeNo::ROOT, OsStr::new("keys.json")).unwrap();
        state.write(ino, &path, 0, b"new").unwrap();
        state
            .rename(
                INodeNo::ROOT,
                OsStr::new("keys.tmp"),
                INodeNo::ROOT,
                OsStr::new("keys.json"),
            )
            .unwrap();
        let target = dir.path().join("keys.json");
        assert!(!path.exists());
        let (found, _) = state.child(INodeNo::ROOT, OsStr::new("keys.json")).unwrap();
        assert_eq!(
            found, ino,
            "the name is the renamed file's now, not {old}'s"
        );
        assert_eq!(state.read(ino, &target, 0, 3).unwrap(), b"new");
        // Not synced: a cut that keeps nothing leaves what was on disk.
        state.cut(0.0).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"");
    }
}
