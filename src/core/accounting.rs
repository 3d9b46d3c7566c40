//! What a container used, read from its cgroup while it still exists: peak memory, CPU
//! seconds and bytes written to block devices. cgroup v1 (podman's cgroupfs manager on these
//! machines) and v2 are both read; a figure the kernel does not offer is `None`.
//!
//! The cgroup path comes from podman (`State.CgroupPath`), never from anything the container
//! wrote, and only fixed file names below it are read.

use std::path::Path;

use serde::Serialize;

/// Where the host's cgroup file systems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One container's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub peak_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// Bytes written to block devices and charged to the cgroup; writes still in the page
    /// cache when the container ends are not counted.
    pub bytes_written: Option<u64>,
}

impl Usage {
    /// The usage of two containers that ran one after the other as one: the higher peak,
    /// CPU and writes summed; a figure unknown for either is unknown.
    pub fn then(&self, later: &Usage) -> Usage {
        let both = |a: Option<u64>, b: Option<u64>, f: fn(u64, u64) -> u64| Some(f(a?, b?));
        Usage {
            peak_memory_bytes: both(self.peak_memory_bytes, later.peak_memory_bytes, u64::max),
            cpu_seconds: self.cpu_seconds.zip(later.cpu_seconds).map(|(a, b)| a + b),
            bytes_written: both(self.bytes_written, later.bytes_written, u64::saturating_add),
        }
    }

    /// `peak memory 12.3 MiB, CPU 4.56 s, written 789 bytes` (`unknown` for a missing figure).
    pub fn describe(&self) -> String {
        let mib = self.peak_memory_bytes.map_or("unknown".to_owned(), |b| {
            format!("{:.1} MiB", b as f64 / 1048576.0)
        });
        let cpu = self
            .cpu_seconds
            .map_or("unknown".to_owned(), |s| format!("{s:.2} s"));
        let written = self
            .bytes_written
            .map_or("unknown".to_owned(), |b| format!("{b} bytes"));
        format!("peak memory {mib}, CPU {cpu}, written {written}")
    }
}

/// Reads the usage of the cgroup at `cgroup_path` (podman's `State.CgroupPath`, absolute
/// within the hierarchy) under the cgroup file system mounted at `root`.
pub fn read_usage(root: &Path, cgroup_path: &str) -> Usage {
    let relative = cgroup_path.trim_start_matches('/');
    if relative.split('/').any(|c| c == "..") {
        return Usage::default();
    }
    let file = |controller: &str, name: &str| -> Option<String> {
        let dir = if controller.is_empty() {
            root.join(relative)
        } else {
            root.join(controller).join(relative)
        };
        std::fs::read_to_string(dir.join(name)).ok()
    };
    let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
    if root.join("cgroup.controllers").exists() {
        // v2: memory.peak (kernel 5.19+), cpu.stat usage_usec, io.stat wbytes per device.
        let cpu = file("", "cpu.stat").and_then(|t| keyed(&t, "usage_usec"));
        let written = file("", "io.stat").map(|t| {
            t.split_whitespace()
                .filter_map(|w| w.strip_prefix("wbytes="))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum()
        });
        Usage {
            peak_memory_bytes: number(file("", "memory.peak")),
            cpu_seconds: cpu.map(|us| us as f64 / 1e6),
            bytes_written: written,
        }
    } else {
        // v1: memory.max_usage_in_bytes, cpuacct.usage (ns), blkio's "Total Write" lines.
        let written = file("blkio", "blkio.throttle.io_service_bytes").map(|t| {
            t.lines()
                .filter_map(|line| {
                    let mut words = line.split_whitespace();
                    let (_device, op, n) = (words.next()?, words.next()?, words.next()?);
                    (op == "Write").then(|| n.parse::<u64>().ok()).flatten()
                })
                .sum()
        });
        Usage {
            peak_memory_bytes: number(file("memory", "memory.max_usage_in_bytes")),
            cpu_seconds: number(file("cpuacct", "cpuacct.usage")).map(|ns| ns as f64 / 1e9),
            bytes_written: written,
        }
    }
}

/// How many processes the kernel's OOM killer has killed in the cgroup at `cgroup_path`
/// because it reached its memory limit (v1: `memory.oom_control`, v2: `memory.events`,
/// both `oom_kill N`); `None` when the kernel does not say.
pub fn read_oom_kills(root: &Path, cgroup_path: &str) -> Option<u64> {
    let path = cgroup_file(
        root,
        cgroup_path,
        "memory.events",
        "memory",
        "memory.oom_control",
    )?;
    keyed(&std::fs::read_to_string(path).ok()?, "oom_kill")
}

/// The file of the cgroup at `cgroup_path` under `root`: `v2` in the unified hierarchy, else
/// `v1` of the `controller` hierarchy; `None` for a path that climbs out.
fn cgroup_file(
    root: &Path,
    cgroup_path: &str,
    v2: &str,
    controller: &str,
    v1: &str,
) -> Option<std::path::PathBuf> {
    let relative = cgroup_path.trim_start_matches('/');
    if relative.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if root.join("cgroup.controllers").exists() {
        root.join(relative).join(v2)
    } else {
        root.join(controller).join(relative).join(v1)
    })
}

/// How many processes are left in the cgroup at `cgroup_path` (its `cgroup.procs`, in v1
/// the pids controller's); `Some(0)` when the cgroup is gone, `None` when it cannot be read.
pub fn processes_left(root: &Path, cgroup_path: &str) -> Option<usize> {
    let path = cgroup_file(root, cgroup_path, "cgroup.procs", "pids", "cgroup.procs")?;
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text.lines().filter(|l| !l.trim().is_empty()).count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    }
}

/// The words for a container's failure when the kernel's OOM killer killed some of its
/// processes since the last look: `kills` is its cgroup's count now, `seen` the count at the
/// last look (updated), `limit` its memory limit. `None` when there are no new kills.
pub fn oom_words(role: &str, kills: u64, seen: &mut u64, limit: Option<u64>) -> Option<String> {
    if kills <= *seen {
        return None;
    }
    let new = kills - *seen;
    *seen = kills;
    let limit = limit.map_or_else(
        || "its memory limit".to_owned(),
        |bytes| format!("its memory limit of {}", human_bytes(bytes)),
    );
    Some(format!(
        "out of memory: the {role} container reached {limit} and the kernel's OOM killer \
         killed {new} of its processes"
    ))
}

/// `192 MiB`, `1.5 GiB`, `512 bytes`: a limit or a figure as the logs give it.
pub fn human_bytes(bytes: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in units {
        if bytes >= size {
            return if bytes % size == 0 {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{:.1} {unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// The number after `key` in a `key value` per line file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == key).then(|| words.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_containers_in_turn_count_as_the_higher_peak_and_the_sums() {
        let a = Usage {
            peak_memory_bytes: Some(10),
            cpu_seconds: Some(1.5),
            bytes_written: Some(100),
        };
        let b = Usage {
            peak_memory_bytes: Some(7),
            cpu_seconds: Some(0.5),
            bytes_written: Some(1),
        };
        assert_eq!(
            a.then(&b),
            Usage {
                peak_memory_bytes: Some(10),
                cpu_seconds: Some(2.0),
                bytes_written: Some(101),
            }
        );
        let unknown = Usage {
            cpu_seconds: None,
            ..b
        };
        assert_eq!(a.then(&unknown).cpu_seconds, None);
        assert_eq!(a.then(&unknown).peak_memory_bytes, Some(10));
    }

    use crate::core::testutil::Scratch;

    #[test]
    fn cgroup_v1_usage_is_read_from_each_controller() {
        let cg = "/libpod_parent/libpod-abc";
        let dir = Scratch::new("cgroup").with_files(&[
            (
                "memory/libpod_parent/libpod-abc/memory.max_usage_in_bytes",
                "4251648\n",
            ),
            (
                "cpuacct/libpod_parent/libpod-abc/cpuacct.usage",
                "1500000000\n",
            ),
            (
                "blkio/libpod_parent/libpod-abc/blkio.throttle.io_service_bytes",
                "8:0 Read 10\n8:0 Write 4096\n8:0 Total 4106\n8:16 Write 100\nTotal 4206\n",
            ),
        ]);
        let usage = read_usage(&dir.0, cg);
        assert_eq!(usage.peak_memory_bytes, Some(4251648));
        assert_eq!(usage.cpu_seconds, Some(1.5));
        assert_eq!(usage.bytes_written, Some(4196));
        assert_eq!(
            usage.describe(),
            "peak memory 4.1 MiB, CPU 1.50 s, written 4196 bytes"
        );
    }

    #[test]
    fn human_bytes_names_whole_units_plainly() {
        assert_eq!(human_bytes(192 << 20), "192 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(512 << 20), "512 MiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }

    #[test]
    fn oom_words_name_only_new_kills_and_the_limit() {
        let mut seen = 0;
        assert_eq!(oom_words("build", 0, &mut seen, None), None);
        assert_eq!(
            oom_words("build", 2, &mut seen, Some(192 << 20)).as_deref(),
            Some(
                "out of memory: the build container reached its memory limit of 192 MiB and the \
                 kernel's OOM killer killed 2 of its processes"
            )
        );
        assert_eq!(seen, 2);
        assert_eq!(oom_words("build", 2, &mut seen, None), None, "nothing new");
        assert!(oom_words("createrepo", 3, &mut seen, None)
            .unwrap()
            .contains("reached its memory limit and the kernel's OOM killer killed 1 of"));
    }

    #[test]
    fn oom_kills_are_read_from_either_cgroup_version() {
        let v1 = Scratch::new("cgroup").with_files(&[(
            "memory/libpod_parent/libpod-abc/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )]);
        assert_eq!(read_oom_kills(&v1.0, "/libpod_parent/libpod-abc"), Some(2));
        assert_eq!(read_oom_kills(&v1.0, "/libpod_parent/gone"), None);
        let v2 = Scratch::new("cgroup").with_files(&[
            ("cgroup.controllers", "memory\n"),
            (
                "machine/c1/memory.events",
                "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
            ),
        ]);
        assert_eq!(read_oom_kills(&v2.0, "/machine/c1"), Some(1));
        assert_eq!(read_oom_kills(&v2.0, "/machine/../../etc"), None);
    }

    #[test]
    fn processes_left_count_the_cgroups_procs_and_a_gone_cgroup_has_none() {
        let v1 = Scratch::new("cgroup").with_files(&[
            ("pids/libpod_parent/libpod-abc/cgroup.procs", "12\n34\n"),
            ("pids/libpod_parent/libpod-empty/cgroup.procs", ""),
        ]);
        assert_eq!(processes_left(&v1.0, "/libpod_parent/libpod-abc"), Some(2));
        assert_eq!(
            processes_left(&v1.0, "/libpod_parent/libpod-empty"),
            Some(0)
        );
        assert_eq!(processes_left(&v1.0, "/libpod_parent/gone"), Some(0));
        assert_eq!(processes_left(&v1.0, "/libpod_parent/../../etc"), None);
        let v2 = Scratch::new("cgroup").with_files(&[
            ("cgroup.controllers", "memory pids\n"),
            ("machine/c1/cgroup.procs", "7\n"),
        ]);
        assert_eq!(processes_left(&v2.0, "/machine/c1"), Some(1));
    }

    #[test]
    fn cgroup_v2_usage_and_missing_figures() {
        let dir = Scratch::new("cgroup").with_files(&[
            ("cgroup.controllers", "cpu memory io pids\n"),
            ("machine/c1/memory.peak", "2097152\n"),
            ("machine/c1/cpu.stat", "usage_usec 250000\nuser_usec 1\n"),
            (
                "machine/c1/io.stat",
                "8:0 rbytes=1 wbytes=512 rios=1 wios=1\n8:16 wbytes=512\n",
            ),
        ]);
        let usage = read_usage(&dir.0, "/machine/c1");
        assert_eq!(usage.peak_memory_bytes, Some(2097152));
        assert_eq!(usage.cpu_seconds, Some(0.25));
        assert_eq!(usage.bytes_written, Some(1024));
        let none = read_usage(&dir.0, "/machine/gone");
        assert_eq!(none, Usage::default());
        assert_eq!(
            none.describe(),
            "peak memory unknown, CPU unknown, written unknown"
        );
        assert_eq!(read_usage(&dir.0, "/machine/../../etc"), Usage::default());
    }
}
