//! Leaves nothing behind when the runner is interrupted (Ctrl-C, SIGTERM,
//! SIGHUP): kills the QEMU it started and removes its temporary folders.
use std::{
    path::PathBuf,
    sync::{Mutex, Once},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Exit code after an interruption (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Installs the handler (once per process; only the runner binary calls it).
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            for pid in CHILDREN.lock().map(|pids| pids.clone()).unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            for folder in FOLDERS.lock().map(|folders| folders.clone()).unwrap_or_default() {
                let _ = std::fs::remove_dir_all(folder);
            }
            eprintln!("runner: interrupted");
            std::process::exit(EXIT_INTERRUPTED);
        });
        if let Err(error) = installed {
            eprintln!(
                "runner: warning: cannot catch interruptions ({error}); QEMU may outlive the runner"
            );
        }
    });
}

/// Kills the child `pid` on interruption while the guard lives.
#[must_use]
pub fn track_child(pid: u32) -> Tracked {
    if let Ok(mut pids) = CHILDREN.lock() {
        pids.push(pid);
    }
    Tracked::Child(pid)
}

/// Removes `folder` on interruption while the guard lives.
#[must_use]
pub fn track_folder(folder: PathBuf) -> Tracked {
    if let Ok(mut folders) = FOLDERS.lock() {
        folders.push(folder.clone());
    }
    Tracked::Folder(folder)
}

/// Stops tracking when dropped.
#[derive(Debug)]
pub enum Tracked {
    Child(u32),
    Folder(PathBuf),
}

impl Drop for Tracked {
    fn drop(&mut self) {
        match self {
            Self::Child(pid) => {
                if let Ok(mut pids) = CHILDREN.lock() {
                    pids.retain(|p| p != pid);
                }
            }
            Self::Folder(folder) => {
                if let Ok(mut folders) = FOLDERS.lock() {
                    folders.retain(|f| f != folder);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_untrack_on_drop() {
        let child = track_child(4_000_000);
        let folder = track_folder("/tmp/runner-test-folder".into());
        assert!(CHILDREN.lock().unwrap().contains(&4_000_000));
        assert!(FOLDERS.lock().unwrap().contains(&PathBuf::from("/tmp/runner-test-folder")));
        drop((child, folder));
        assert!(!CHILDREN.lock().unwrap().contains(&4_000_000));
        assert!(!FOLDERS.lock().unwrap().contains(&PathBuf::from("/tmp/runner-test-folder")));
    }
}
