//! Following folders: file-system events turned into settled changes, a path at a time.
//!
//! What it is for: [`Follower`] watches some root folders (recursively, through the OS: inotify on
//! Linux, FSEvents on macOS, ReadDirectoryChangesW on Windows, via the `notify` crate) and hands out
//! [`Change`]s once they have settled: a path touched by any event (created, written, renamed in or
//! out, deleted) is looked at again only after `debounce` without events, and a file is taken only
//! once two looks `debounce` apart find the same size and modification time — so a file still being
//! copied is taken once, when complete, and a burst of events is one change. Hidden files and folders
//! (a name starting with `.`, as copy tools write their temporary files) are ignored, as `ingest`
//! ignores them. A root that disappears (an unmounted drive) is reported once and its paths are left
//! alone until it is back, then it is handed out whole to be synced again.
//!
//! What it holds: the OS watches (one per folder on Linux) and the paths touched in the last
//! moments, never a list of the tree's files. Where the OS refuses more watches (Linux's
//! `fs.inotify.max_user_watches`), that root is polled instead, which does keep the file list of
//! that root in memory, and the user is told how to raise the limit.
//!
//! What it is not for: deciding what a change means for the index (the `watch` command prunes and
//! ingests), or reading files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};

/// How often a polled root (past the OS's watch limit) is scanned.
const POLL_INTERVAL: Duration = Duration::from_secs(30);

/// A settled change under a watched root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The path exists now (a file or a folder): its documents are checked and it is (re)indexed.
    Present(PathBuf),
    /// The path is gone (deleted or moved away): its documents go.
    Absent(PathBuf),
    /// A root that was missing is back: synced whole.
    RootBack(PathBuf),
}

/// Something the user should be told that does not stop watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A watched root disappeared; its documents are kept.
    RootGone(PathBuf),
    /// The OS refused to watch every folder of a root; it is polled instead.
    Polling { root: PathBuf, why: String },
    /// An error from the OS watcher.
    Error(String),
}

/// A path seen in events and not yet settled.
struct Pending {
    last_event: Instant,
    /// Size and modification time at the last look, for a file.
    look: Option<(u64, Option<SystemTime>)>,
}

/// The watches of some roots and the changes they are settling.
pub struct Follower {
    roots: Vec<PathBuf>,
    debounce: Duration,
    events: Receiver<notify::Result<notify::Event>>,
    sender: std::sync::mpsc::Sender<notify::Result<notify::Event>>,
    /// Kept alive: dropping a watcher stops it.
    watchers: Vec<Box<dyn Watcher + Send>>,
    pending: HashMap<PathBuf, Pending>,
    /// Roots found missing, to look for again.
    missing: Vec<PathBuf>,
    notices: Vec<Notice>,
}

impl Follower {
    /// Starts watching `roots` (absolute folders that exist now).
    pub fn start(roots: &[PathBuf], debounce: Duration) -> Follower {
        let (sender, events) = channel();
        let mut follower = Follower {
            roots: roots.to_vec(),
            debounce,
            events,
            sender,
            watchers: Vec::new(),
            pending: HashMap::new(),
            missing: Vec::new(),
            notices: Vec::new(),
        };
        for root in roots {
            follower.watch_root(root);
        }
        follower
    }

    /// Watches one root through the OS, or by polling when the OS refuses (watch limit).
    fn watch_root(&mut self, root: &Path) {
        let tx = self.sender.clone();
        let os = RecommendedWatcher::new(tx, notify::Config::default()).and_then(|mut w| {
            w.watch(root, RecursiveMode::Recursive)?;
            Ok(w)
        });
        match os {
            Ok(w) => self.watchers.push(Box::new(w)),
            Err(e) => {
                let why = watch_error_text(&e);
                let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
                let polled = PollWatcher::new(self.sender.clone(), config).and_then(|mut w| {
                    w.watch(root, RecursiveMode::Recursive)?;
                    Ok(w)
                });
                match polled {
                    Ok(w) => {
                        self.watchers.push(Box::new(w));
                        self.notices.push(Notice::Polling {
                            root: root.to_path_buf(),
                            why,
                        });
                    }
                    Err(e) => self.notices.push(Notice::Error(format!(
                        "cannot watch {}: {why}; polling failed too: {e}",
                        root.display()
                    ))),
                }
            }
        }
    }

    /// What the user should be told since the last call.
    pub fn notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Takes in the events that arrive within `wait`, then returns the changes that have settled
    /// (often none).
    pub fn poll(&mut self, wait: Duration) -> Vec<Change> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(event)) if changes_content(&event.kind) => self.touch_all(&event.paths),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.notices.push(Notice::Error(watch_error_text(&e))),
                Err(RecvTimeoutError::Timeout) => break,
                // Cannot happen while we hold a sender; stop waiting if it does.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut changes = self.roots_back();
        changes.extend(self.settled());
        changes
    }

    /// Takes `changes` up again, as if their paths had just been touched (their indexing failed:
    /// the store was away).
    pub fn retry(&mut self, changes: &[Change]) {
        let paths: Vec<PathBuf> = changes
            .iter()
            .map(|c| match c {
                Change::Present(p) | Change::Absent(p) | Change::RootBack(p) => p.clone(),
            })
            .collect();
        self.touch_all(&paths);
    }

    /// Records that events touched `paths` now.
    fn touch_all(&mut self, paths: &[PathBuf]) {
        let now = Instant::now();
        for path in paths {
            if !self.follows(path) {
                continue;
            }
            self.pending
                .entry(path.clone())
                .and_modify(|p| p.last_event = now)
                .or_insert(Pending {
                    last_event: now,
                    look: None,
                });
        }
    }

    /// Whether `path` is under a root that is there, and neither it nor a folder above it (below
    /// the root) is hidden.
    fn follows(&self, path: &Path) -> bool {
        let Some(root) = self.roots.iter().find(|r| path.starts_with(r)) else {
            return false;
        };
        if self.missing.contains(root) {
            return false;
        }
        path.strip_prefix(root)
            .map(|rel| {
                !rel.components()
                    .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')))
            })
            .unwrap_or(false)
    }

    /// The pending paths that have had no event for `debounce` and, for files, whose size and time
    /// held still since the last look.
    fn settled(&mut self) -> Vec<Change> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut done = Vec::new();
        for (path, p) in self.pending.iter_mut() {
            if now.duration_since(p.last_event) < self.debounce {
                continue;
            }
            match std::fs::metadata(path) {
                Err(_) => {
                    out.push(Change::Absent(path.clone()));
                    done.push(path.clone());
                }
                Ok(m) if m.is_dir() => {
                    out.push(Change::Present(path.clone()));
                    done.push(path.clone());
                }
                Ok(m) => {
                    let look = (m.len(), m.modified().ok());
                    if p.look == Some(look) {
                        out.push(Change::Present(path.clone()));
                        done.push(path.clone());
                    } else {
                        // Still being written, or first look: look again after `debounce`.
                        p.look = Some(look);
                        p.last_event = now;
                    }
                }
            }
        }
        for path in done {
            self.pending.remove(&path);
        }
        // Roots that vanished: told once, their paths left alone (an unmounted drive is no
        // deletion).
        let gone: Vec<PathBuf> = self
            .roots
            .iter()
            .filter(|r| !self.missing.contains(r) && !r.is_dir())
            .cloned()
            .collect();
        for root in gone {
            out.retain(
                |c| !matches!(c, Change::Absent(p) | Change::Present(p) if p.starts_with(&root)),
            );
            self.pending.retain(|p, _| !p.starts_with(&root));
            self.notices.push(Notice::RootGone(root.clone()));
            self.missing.push(root);
        }
        out.sort_by(|a, b| change_order(a).cmp(&change_order(b)));
        out
    }

    /// Roots that were missing and are back: watched again and synced whole.
    fn roots_back(&mut self) -> Vec<Change> {
        let back: Vec<PathBuf> = self
            .missing
            .iter()
            .filter(|r| r.is_dir())
            .cloned()
            .collect();
        let mut out = Vec::new();
        for root in back {
            self.missing.retain(|r| r != &root);
            self.watch_root(&root);
            out.push(Change::RootBack(root));
        }
        out
    }
}

/// Whether an event can change what a path holds: reads (opening, closing unwritten, access times)
/// cannot, and must not count — indexing a file reads it, which would otherwise index it again.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

/// Removals first (a file moved within the watched folders is then indexed at its new path, never
/// found "already indexed" under the old one and then removed), then by path.
fn change_order(c: &Change) -> (u8, &Path) {
    match c {
        Change::Absent(p) => (0, p),
        Change::RootBack(p) => (1, p),
        Change::Present(p) => (2, p),
    }
}

/// A watcher error in words, with what to do about the OS's watch limit.
fn watch_error_text(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .map(|s| format!(" (fs.inotify.max_user_watches = {})", s.trim()))
                .unwrap_or_default();
            format!(
                "the system's limit of folder watches was reached{limit}: raise it with \
`sudo sysctl fs.inotify.max_user_watches=524288` (and a line `fs.inotify.max_user_watches=524288` \
in /etc/sysctl.d/90-imgvec.conf to keep it)"
            )
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower(root: &Path, debounce_ms: u64) -> Follower {
        Follower::start(&[root.to_path_buf()], Duration::from_millis(debounce_ms))
    }

    /// Polls until `want` changes have come (or 10 s passed); all that came.
    fn collect(f: &mut Follower, want: usize) -> Vec<Change> {
        let mut out = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        while out.len() < want && Instant::now() < until {
            out.extend(f.poll(Duration::from_millis(50)));
        }
        out
    }

    #[test]
    fn a_file_is_taken_once_when_its_size_stops_changing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut f = follower(&root, 500);
        let path = root.join("a.jpg");
        std::fs::write(&path, b"one").unwrap();
        // Still growing while the first looks are taken.
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            assert!(f.poll(Duration::from_millis(10)).is_empty());
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut file, b"more").unwrap();
        }
        let changes = collect(&mut f, 1);
        assert_eq!(changes, vec![Change::Present(path.clone())]);
        // Nothing more comes of it.
        std::thread::sleep(Duration::from_millis(1_200));
        assert!(f.poll(Duration::from_millis(50)).is_empty());
    }

    #[test]
    fn removals_come_first_and_hidden_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/old.png"), b"x").unwrap();
        let mut f = follower(&root, 100);
        std::fs::rename(root.join("sub/old.png"), root.join("new.png")).unwrap();
        std::fs::write(root.join(".partial.jpg"), b"x").unwrap();
        std::fs::create_dir(root.join(".cache")).unwrap();
        std::fs::write(root.join(".cache/x.jpg"), b"x").unwrap();
        let changes = collect(&mut f, 2);
        assert_eq!(
            changes,
            vec![
                Change::Absent(root.join("sub/old.png")),
                Change::Present(root.join("new.png")),
            ]
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(f.poll(Duration::from_millis(50)).is_empty());
    }

    #[test]
    fn a_root_that_disappears_is_told_and_left_alone_until_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("photos");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.png"), b"x").unwrap();
        let mut f = follower(&root, 100);
        std::fs::rename(&root, base.join("elsewhere")).unwrap();
        let mut changes = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            changes.extend(f.poll(Duration::from_millis(50)));
        }
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(f.notices(), vec![Notice::RootGone(root.clone())]);
        std::fs::rename(base.join("elsewhere"), &root).unwrap();
        let changes = collect(&mut f, 1);
        assert_eq!(changes, vec![Change::RootBack(root.clone())]);
        std::fs::write(root.join("b.png"), b"x").unwrap();
        let changes = collect(&mut f, 1);
        assert_eq!(changes, vec![Change::Present(root.join("b.png"))]);
    }
}
