//! An allocation's directories on the client, laid out as Nomad lays them out:
//!
//! ```text
//! <alloc_root>/<alloc_id>/alloc/{logs,data,tmp}   shared by the group's tasks
//! <alloc_root>/<alloc_id>/<task>/{local,secrets,tmp}
//! ```
//! Task logs go to `alloc/logs/<task>.stdout.<n>` and `<task>.stderr.<n>`.

use drover_core::taskenv::TaskDirs;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One allocation's directory tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocDir {
    pub root: PathBuf,
}

impl AllocDir {
    pub fn new(alloc_root: &Path, alloc_id: &str) -> AllocDir {
        AllocDir { root: alloc_root.join(alloc_id) }
    }

    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("alloc")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.shared_dir().join("logs")
    }

    pub fn task_root(&self, task: &str) -> PathBuf {
        self.root.join(task)
    }

    /// The directories as the task's environment names them (absolute host paths).
    pub fn task_dirs(&self, task: &str) -> TaskDirs {
        let text = |p: PathBuf| p.display().to_string();
        TaskDirs {
            alloc_dir: text(self.shared_dir()),
            task_dir: text(self.task_root(task).join("local")),
            secrets_dir: text(self.task_root(task).join("secrets")),
        }
    }

    /// Creates the shared directories and each task's; `secrets` is private to its owner.
    pub fn build<'a>(&self, tasks: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        for shared in ["logs", "data", "tmp"] {
            fs::create_dir_all(self.shared_dir().join(shared))?;
        }
        for task in tasks {
            let root = self.task_root(task);
            for dir in ["local", "secrets", "tmp"] {
                fs::create_dir_all(root.join(dir))?;
            }
            fs::set_permissions(root.join("secrets"), fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }

    /// Removes the whole tree (the allocation was garbage-collected).
    pub fn destroy(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.root) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
