//! What the adapters know about the Koji task they run for.

use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};

/// A Koji task as an adapter sees it: its id, its private work dir on the builder (kojid's
/// `self.workdir`, the only place an adapter writes besides the log dir), the worker that
/// runs it, and where container logs are persisted (`<log_dir>/<task_id>/container.log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContext {
    pub task_id: i64,
    pub work_dir: PathBuf,
    pub worker_id: Option<String>,
    pub log_dir: Option<PathBuf>,
}

impl TaskContext {
    pub fn validate(&self) -> Result<()> {
        if self.task_id < 1 {
            return Err(Error::invalid(format!(
                "task_id must be a positive Koji task id, not {}",
                self.task_id
            )));
        }
        for (what, dir) in [
            ("work_dir", Some(&self.work_dir)),
            ("log_dir", self.log_dir.as_ref()),
        ] {
            let Some(dir) = dir else { continue };
            if !dir.is_absolute() {
                return Err(Error::invalid(format!(
                    "{what} must be an absolute path, not {}",
                    dir.display()
                )));
            }
        }
        if !self.work_dir.is_dir() {
            return Err(Error::invalid(format!(
                "work_dir {} does not exist or is not a directory",
                self.work_dir.display()
            )));
        }
        Ok(())
    }

    /// `relative` joined under the work dir, refusing anything that would escape it.
    pub fn work_path(&self, relative: &str) -> Result<PathBuf> {
        let rel = Path::new(relative);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::invalid(format!(
                "{relative:?} must be a plain relative path inside the task's work dir"
            )));
        }
        Ok(self.work_dir.join(rel))
    }

    /// kojid's `getUploadDir()` for this task: `tasks/<id % 10000>/<id>`, relative to the hub's
    /// work dir (`koji.pathinfo.taskrelpath`).
    pub fn upload_path(&self) -> String {
        upload_path(self.task_id)
    }

    /// A new directory `relative` inside the work dir, mode 0755; one that exists already is
    /// an error (a task's work dir must be fresh, and nothing may have been planted there).
    pub fn fresh_dir(&self, relative: &str) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.work_path(relative)?;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::invalid(format!(
                        "{} already exists: a task's work dir must be fresh",
                        dir.display()
                    ))
                } else {
                    Error::io(format!("creating {}", dir.display()), e)
                }
            })?;
        Ok(dir)
    }

    /// Where this task's `container.log` is persisted, when a log dir is configured.
    pub fn container_log(&self) -> Option<PathBuf> {
        self.log_dir
            .as_ref()
            .map(|d| d.join(self.task_id.to_string()).join("container.log"))
    }

    /// Checks that an existing host path lies inside the work dir (symlinks resolved).
    pub fn ensure_inside(&self, path: &Path) -> Result<PathBuf> {
        let root = self
            .work_dir
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving work dir {}", self.work_dir.display()), e))?;
        let resolved = path
            .canonicalize()
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        if resolved.starts_with(&root) {
            Ok(resolved)
        } else {
            Err(Error::invalid(format!(
                "{} is outside the task's work dir {}",
                path.display(),
                self.work_dir.display()
            )))
        }
    }
}

/// kojid's `koji.pathinfo.taskrelpath(task_id)`: where a task's files are uploaded.
pub fn upload_path(task_id: i64) -> String {
    format!("tasks/{}/{task_id}", task_id.rem_euclid(10000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &Path) -> TaskContext {
        TaskContext {
            task_id: 7,
            work_dir: dir.to_path_buf(),
            worker_id: None,
            log_dir: Some("/var/log/x".into()),
        }
    }

    #[test]
    fn contexts_are_checked_and_paths_stay_inside() {
        let dir = std::env::temp_dir().join(format!("adj-task-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = ctx(&dir);
        c.validate().unwrap();
        assert_eq!(
            c.work_path("result/x.rpm").unwrap(),
            dir.join("result/x.rpm")
        );
        assert!(c.work_path("../etc").is_err());
        assert!(c.work_path("/etc").is_err());
        assert!(c.ensure_inside(Path::new("/etc/passwd")).is_err());
        assert_eq!(
            c.container_log().unwrap(),
            PathBuf::from("/var/log/x/7/container.log")
        );
        assert!(TaskContext {
            task_id: 0,
            ..c.clone()
        }
        .validate()
        .is_err());
        assert!(TaskContext {
            work_dir: "rel".into(),
            ..c.clone()
        }
        .validate()
        .is_err());
        assert!(TaskContext {
            work_dir: dir.join("missing"),
            ..c
        }
        .validate()
        .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
