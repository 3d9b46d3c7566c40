//! What a container is made from: `ContainerSpec`, its mounts and limits, and the validation
//! that runs before anything is created. Validation is pure so `cargo test` covers it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::core::error::{Error, Result};

/// Label every container of ours carries: the Koji task it runs for.
pub const LABEL_TASK_ID: &str = "io.koji.adjutant.task_id";
/// Label every container of ours carries: the builder (kojid worker) that made it.
pub const LABEL_WORKER_ID: &str = "io.koji.adjutant.worker_id";

/// SELinux relabelling of a bind mount (podman's `:z` shared / `:Z` private).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelinuxLabel {
    Shared,
    Private,
}

impl SelinuxLabel {
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "z" => Ok(SelinuxLabel::Shared),
            "Z" => Ok(SelinuxLabel::Private),
            other => Err(Error::invalid(format!(
                "selinux_label must be None, \"z\" or \"Z\", not {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SelinuxLabel::Shared => "z",
            SelinuxLabel::Private => "Z",
        }
    }
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    pub selinux_label: Option<SelinuxLabel>,
}

/// A user namespace with a fixed mapping: container ids `0..size` are host ids
/// `host_base..host_base + size`, for uids and gids alike. Container root is then not host
/// root. Containers that share files (a build container and the bootstrap container writing
/// into its root) must share the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub host_base: u32,
    pub size: u32,
}

impl IdMap {
    /// ids 0-65535, as a distribution's root needs (`nobody` is 65534).
    pub const SIZE: u32 = 65536;

    pub fn new(host_base: u32) -> Result<Self> {
        if host_base == 0 || host_base.checked_add(Self::SIZE).is_none() {
            return Err(Error::invalid(format!(
                "userns_base must be a host uid between 1 and {}, not {host_base}",
                u32::MAX - Self::SIZE
            )));
        }
        Ok(IdMap {
            host_base,
            size: Self::SIZE,
        })
    }
}

/// cgroup limits; `None` leaves podman's default (unlimited) for that resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceLimits {
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

impl Default for ResourceLimits {
    /// A fork bomb in a spec file must not take the builder down: pids are always bounded.
    fn default() -> Self {
        ResourceLimits {
            memory_bytes: None,
            cpus: None,
            pids: Some(DEFAULT_PIDS_LIMIT),
        }
    }
}

pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// The share of the builder's memory a task container may use by default.
pub const DEFAULT_MEMORY_PERCENT: u64 = 75;
/// The CPUs left to kojid, Podman and log uploads by default: a task container may use all
/// of the builder's CPUs but this (and at least one).
pub const DEFAULT_CPUS_HELD_BACK: f64 = 0.5;

impl ResourceLimits {
    /// The limits of a task container unless the caller sets others: 75% of this host's
    /// memory (no swap beyond it), all its CPUs but half of one (at least one), and
    /// [`DEFAULT_PIDS_LIMIT`] processes. A runaway build is then stopped inside its own
    /// container: the OOM killer picks one of its processes, not kojid or Podman; kojid
    /// keeps the CPU time to answer the hub and upload logs; a fork bomb stops at the pids
    /// limit. (`docs/config.md` says why these numbers.)
    pub fn task_defaults() -> Self {
        let memory = host_memory_bytes().map(|total| total / 100 * DEFAULT_MEMORY_PERCENT);
        let cpus = std::thread::available_parallelism()
            .ok()
            .map(|n| (n.get() as f64 - DEFAULT_CPUS_HELD_BACK).max(1.0));
        ResourceLimits {
            memory_bytes: memory,
            cpus,
            pids: Some(DEFAULT_PIDS_LIMIT),
        }
    }
}

/// The host's physical memory (`MemTotal` of /proc/meminfo).
fn host_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo.lines().find_map(|line| {
        let kib = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
        kib.trim().parse::<u64>().ok()?.checked_mul(1024)
    })
}

/// The container's network: none at all, or podman's default bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    None,
    Bridge,
}

impl NetworkMode {
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "none" => Ok(NetworkMode::None),
            "bridge" => Ok(NetworkMode::Bridge),
            other => Err(Error::invalid(format!(
                "network must be \"none\" or \"bridge\", not {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Bridge => "bridge",
        }
    }
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    pub image: String,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub mounts: Vec<VolumeMount>,
    /// `uid`, `uid:gid` or a user name known in the image.
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub network: NetworkMode,
    pub limits: ResourceLimits,
    /// Seconds the container may run before it is killed; `None` for no limit.
    pub timeout: Option<u64>,
    pub remove_after_exit: bool,
    /// Capabilities added back after dropping all (e.g. `CHOWN` for rpm installs as root).
    pub cap_add: Vec<String>,
    pub task_id: Option<i64>,
    /// Run podman's init (catatonit) as PID 1: it reaps every orphan, so no zombie is left.
    pub init: bool,
    /// Container paths that get a fresh anonymous volume, removed with the container.
    pub scratch_volumes: Vec<String>,
    /// A user namespace with this mapping; `None`: none (container root is host root).
    pub userns: Option<IdMap>,
    /// A directory used as the root filesystem instead of `image` (podman's `--rootfs`,
    /// without an overlay: writes reach the directory). Only the root of another of the
    /// task's containers, which podman mounted, is ever given here.
    pub rootfs: Option<PathBuf>,
    /// Keep the main process's stdin open (podman's `--interactive`): it reads what
    /// [`crate::core::podman::Held::release`] sends.
    pub open_stdin: bool,
}

impl ContainerSpec {
    pub fn new(image: impl Into<String>, command: Vec<String>) -> Self {
        ContainerSpec {
            image: image.into(),
            command,
            environment: BTreeMap::new(),
            workdir: None,
            mounts: Vec::new(),
            user: None,
            labels: BTreeMap::new(),
            network: NetworkMode::None,
            limits: ResourceLimits::default(),
            timeout: None,
            remove_after_exit: true,
            cap_add: Vec::new(),
            task_id: None,
            init: false,
            scratch_volumes: Vec::new(),
            userns: None,
            rootfs: None,
            open_stdin: false,
        }
    }

    /// Checks everything podman would only reject later (or, worse, accept): run before any
    /// container exists, so a bad spec leaves nothing behind.
    pub fn validate(&self) -> Result<()> {
        match &self.rootfs {
            None => validate_image_ref(&self.image)?,
            Some(root) => {
                if !root.is_absolute() || has_parent_component(root) || self.image.is_empty() {
                    return Err(Error::invalid(format!(
                        "rootfs must be an absolute path without '..' (and image names its origin), not {}",
                        root.display()
                    )));
                }
            }
        }
        if self.command.is_empty() {
            return Err(Error::invalid("command must not be empty"));
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid(
                "command arguments must not contain NUL bytes",
            ));
        }
        for (key, value) in &self.environment {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(Error::invalid(format!(
                    "invalid environment variable {key:?}: names must be non-empty and contain no '=' or NUL"
                )));
            }
        }
        if let Some(workdir) = &self.workdir {
            if !workdir.starts_with('/') {
                return Err(Error::invalid(format!(
                    "workdir must be an absolute container path, not {workdir:?}"
                )));
            }
        }
        let mut targets = Vec::new();
        for mount in &self.mounts {
            validate_mount(mount)?;
            if targets.contains(&&mount.target) {
                return Err(Error::invalid(format!(
                    "two mounts share the target {}",
                    mount.target.display()
                )));
            }
            targets.push(&mount.target);
        }
        if let Some(user) = &self.user {
            validate_user(user)?;
        }
        for key in self.labels.keys() {
            if key.is_empty() || key.contains('=') {
                return Err(Error::invalid(format!("invalid label name {key:?}")));
            }
        }
        if let Some(memory) = self.limits.memory_bytes {
            if memory < 6 * 1024 * 1024 {
                return Err(Error::invalid(format!(
                    "memory limit {memory} bytes is below podman's minimum of 6 MiB"
                )));
            }
        }
        if let Some(cpus) = self.limits.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(Error::invalid(format!(
                    "cpus must be a positive number, not {cpus}"
                )));
            }
        }
        if let Some(pids) = self.limits.pids {
            if pids < 1 {
                return Err(Error::invalid(format!(
                    "pids limit must be at least 1, not {pids}"
                )));
            }
        }
        if self.timeout == Some(0) {
            return Err(Error::invalid("timeout must be at least 1 second"));
        }
        for cap in &self.cap_add {
            validate_capability(cap)?;
        }
        for dest in &self.scratch_volumes {
            let path = Path::new(dest);
            if !path.is_absolute() || has_parent_component(path) || dest.contains([',', ':', '\0'])
            {
                return Err(Error::invalid(format!(
                    "scratch volume must be an absolute container path, not {dest:?}"
                )));
            }
            if targets.iter().any(|t| t.as_path() == path) {
                return Err(Error::invalid(format!(
                    "a mount and a scratch volume share the target {dest}"
                )));
            }
        }
        Ok(())
    }

    /// The labels the container is created with: the caller's plus ours, which always win.
    pub fn effective_labels(&self, worker_id: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        let task = self
            .task_id
            .map(|t| t.to_string())
            .or_else(|| self.labels.get(LABEL_TASK_ID).cloned())
            .unwrap_or_else(|| "none".to_string());
        labels.insert(LABEL_TASK_ID.to_string(), task);
        labels.insert(LABEL_WORKER_ID.to_string(), worker_id.to_string());
        labels
    }
}

fn validate_image_ref(image: &str) -> Result<()> {
    let bad = image.is_empty()
        || image.len() > 512
        || image.starts_with('-')
        || image
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(c)));
    if bad {
        return Err(Error::invalid(format!("invalid image reference {image:?}")));
    }
    Ok(())
}

fn validate_mount(mount: &VolumeMount) -> Result<()> {
    let source = &mount.source;
    if !source.is_absolute() {
        return Err(Error::invalid(format!(
            "mount source must be an absolute host path, not {}",
            source.display()
        )));
    }
    if !source.exists() {
        return Err(Error::invalid(format!(
            "mount source {} does not exist",
            source.display()
        )));
    }
    let target = &mount.target;
    if !target.is_absolute() || has_parent_component(target) {
        return Err(Error::invalid(format!(
            "mount target must be an absolute container path without '..', not {}",
            target.display()
        )));
    }
    if target == Path::new("/") {
        return Err(Error::invalid(
            "a mount cannot replace the container's root",
        ));
    }
    for path in [source, target] {
        if path.to_string_lossy().contains([',', ':', '\0']) {
            return Err(Error::invalid(format!(
                "mount path {} contains ',' ':' or NUL, which podman cannot express",
                path.display()
            )));
        }
    }
    Ok(())
}

fn has_parent_component(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::ParentDir))
}

fn validate_user(user: &str) -> Result<()> {
    let ok = !user.is_empty()
        && user.split(':').count() <= 2
        && user.split(':').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "user must be a name, uid or uid:gid, not {user:?}"
        )))
    }
}

fn validate_capability(cap: &str) -> Result<()> {
    let name = cap.strip_prefix("CAP_").unwrap_or(cap);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return Err(Error::invalid(format!("invalid capability name {cap:?}")));
    }
    Ok(())
}

/// The host's hard limits for open files and processes, read from /proc/self/limits.
/// Podman's defaults exceed them on some hosts and container start then fails with
/// `setrlimit ... operation not permitted`, so every container gets explicit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRlimits {
    pub nofile: u64,
    pub nproc: u64,
}

/// Upper bounds we never exceed even on hosts that allow more. The limits must also fit under
/// the podman service's own hard limits (conmon and runc inherit them and, with every
/// capability dropped, can only lower them); we cannot read those through the API, so the
/// ceilings are modest. Measured here: the service ran with nproc 32768 and nofile 20000.
pub const NOFILE_CEILING: u64 = 16_384;
pub const NPROC_CEILING: u64 = 16_384;

impl HostRlimits {
    pub fn read() -> Self {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        Self::parse(&text)
    }

    pub fn parse(limits: &str) -> Self {
        let hard = |name: &str, fallback: u64| -> u64 {
            limits
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line[name.len()..].split_whitespace().nth(1))
                .map(|v| {
                    if v == "unlimited" {
                        u64::MAX
                    } else {
                        v.parse().unwrap_or(fallback)
                    }
                })
                .unwrap_or(fallback)
        };
        HostRlimits {
            nofile: hard("Max open files", 1024).min(NOFILE_CEILING),
            nproc: hard("Max processes", 4096).min(NPROC_CEILING),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec::new("localhost/koji-adjutant-task:dev", vec!["true".into()])
    }

    fn mount(source: &str, target: &str) -> VolumeMount {
        VolumeMount {
            source: source.into(),
            target: target.into(),
            read_only: true,
            selinux_label: None,
        }
    }

    #[test]
    fn a_plain_spec_is_valid_and_least_privileged_by_default() {
        let s = spec();
        s.validate().unwrap();
        assert_eq!(s.network, NetworkMode::None);
        assert_eq!(s.limits.pids, Some(DEFAULT_PIDS_LIMIT));
        assert!(s.remove_after_exit);
        assert!(s.cap_add.is_empty());
    }

    #[test]
    fn task_containers_get_memory_cpu_and_pids_limits_by_default() {
        let limits = ResourceLimits::task_defaults();
        let total = host_memory_bytes().unwrap();
        assert_eq!(limits.memory_bytes, Some(total / 100 * 75));
        let cpus = std::thread::available_parallelism().unwrap().get() as f64;
        assert_eq!(limits.cpus, Some((cpus - 0.5).max(1.0)));
        assert_eq!(limits.pids, Some(DEFAULT_PIDS_LIMIT));
        let mut s = spec();
        s.limits = limits;
        s.validate().unwrap();
    }

    #[test]
    fn bad_specs_are_rejected_with_the_reason() {
        let cases: Vec<(ContainerSpec, &str)> = vec![
            (
                ContainerSpec {
                    image: "".into(),
                    ..spec()
                },
                "invalid image",
            ),
            (
                ContainerSpec {
                    image: "--privileged".into(),
                    ..spec()
                },
                "invalid image",
            ),
            (
                ContainerSpec {
                    command: vec![],
                    ..spec()
                },
                "command must not be empty",
            ),
            (
                ContainerSpec {
                    workdir: Some("rel".into()),
                    ..spec()
                },
                "workdir",
            ),
            (
                ContainerSpec {
                    user: Some("root;rm".into()),
                    ..spec()
                },
                "user",
            ),
            (
                ContainerSpec {
                    timeout: Some(0),
                    ..spec()
                },
                "timeout",
            ),
            (
                ContainerSpec {
                    cap_add: vec!["sys admin".into()],
                    ..spec()
                },
                "capability",
            ),
            (
                ContainerSpec {
                    limits: ResourceLimits {
                        memory_bytes: Some(1024),
                        ..Default::default()
                    },
                    ..spec()
                },
                "memory",
            ),
            (
                ContainerSpec {
                    limits: ResourceLimits {
                        cpus: Some(-1.0),
                        ..Default::default()
                    },
                    ..spec()
                },
                "cpus",
            ),
            (
                ContainerSpec {
                    limits: ResourceLimits {
                        pids: Some(0),
                        ..Default::default()
                    },
                    ..spec()
                },
                "pids",
            ),
            (
                ContainerSpec {
                    environment: [("A=B".to_string(), "x".to_string())].into(),
                    ..spec()
                },
                "environment",
            ),
            (
                ContainerSpec {
                    mounts: vec![mount("relative", "/x")],
                    ..spec()
                },
                "absolute host path",
            ),
            (
                ContainerSpec {
                    mounts: vec![mount("/nonexistent-adj", "/x")],
                    ..spec()
                },
                "does not exist",
            ),
            (
                ContainerSpec {
                    mounts: vec![mount("/tmp", "x")],
                    ..spec()
                },
                "absolute container path",
            ),
            (
                ContainerSpec {
                    mounts: vec![mount("/tmp", "/a/../b")],
                    ..spec()
                },
                "'..'",
            ),
            (
                ContainerSpec {
                    mounts: vec![mount("/tmp", "/")],
                    ..spec()
                },
                "root",
            ),
            (
                ContainerSpec {
                    mounts: vec![mount("/tmp", "/x"), mount("/var", "/x")],
                    ..spec()
                },
                "share the target",
            ),
        ];
        for (s, expected) in cases {
            match s.validate() {
                Err(Error::InvalidSpec(msg)) => {
                    assert!(msg.contains(expected), "{msg:?} lacks {expected:?}")
                }
                other => panic!("expected InvalidSpec({expected}), got {other:?}"),
            }
        }
    }

    #[test]
    fn our_labels_are_always_present_and_win() {
        let mut s = spec();
        s.labels.insert(LABEL_WORKER_ID.into(), "spoofed".into());
        s.labels.insert("other".into(), "kept".into());
        s.task_id = Some(42);
        let labels = s.effective_labels("builder-1");
        assert_eq!(labels[LABEL_TASK_ID], "42");
        assert_eq!(labels[LABEL_WORKER_ID], "builder-1");
        assert_eq!(labels["other"], "kept");
        assert_eq!(spec().effective_labels("w")[LABEL_TASK_ID], "none");
    }

    #[test]
    fn host_rlimits_are_read_and_capped() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max processes             96364                96364                processes\n\
                    Max open files            1024                 20000                files\n";
        assert_eq!(
            HostRlimits::parse(text),
            HostRlimits {
                nofile: NOFILE_CEILING,
                nproc: NPROC_CEILING
            }
        );
        let low = "Max open files            1024                 2048                 files\n";
        assert_eq!(HostRlimits::parse(low).nofile, 2048);
        let unlimited =
            "Max processes             unlimited            unlimited            processes\n";
        assert_eq!(HostRlimits::parse(unlimited).nproc, NPROC_CEILING);
        assert_eq!(HostRlimits::parse("").nofile, 1024);
    }
}
