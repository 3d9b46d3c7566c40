//! The buildroot cache: installed roots kept as local images and reused read-only.
//!
//! A fresh root is installed into a build container's own layer; that container is committed
//! (before anything of the task ran in it) as an image labelled with the root's key, and a
//! later task with the same key creates its build container from that image: podman's
//! overlay puts the task's writes in a layer of its own, so the cached root is never
//! modified. The key is the SHA-256 of what the root is made of, never of names alone: the
//! bootstrap image's ID, the repo's `repomd.xml` digest (a repo rebuilt under the same id has
//! another), the mode, the arch, the group, the dnf and repo config and the init steps. The
//! cache is bounded by count and bytes, least recently used evicted first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::core::cancel::Cancel;
use crate::core::error::{Error, Result};
use crate::core::podman::{ImageSummary, PodmanClient};
use crate::core::spec::{LABEL_TASK_ID, LABEL_WORKER_ID};

use super::pkglist::InstalledRpm;
use super::plan::BuildrootPlan;

const LOG_TARGET: &str = "koji_adjutant::buildarch";

/// Label marking buildroot cache images.
pub const CACHE_LABEL: &str = "io.koji.adjutant.buildroot";
const KEY_LABEL: &str = "io.koji.adjutant.buildroot.key";
/// Image mode: the image's own RPMs, by [`super::BuildrootRpm::nevra_key`].
const BASELINE_LABEL: &str = "io.koji.adjutant.buildroot.image-rpms";
const REPO: &str = "localhost/koji-adjutant-buildroot";

/// How the cache is bounded and where last uses are recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_images: usize,
    pub max_bytes: u64,
    /// Where last-use times are kept (one file per key); `None` evicts oldest-created first.
    pub dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_images: 8,
            max_bytes: 20 * 1024 * 1024 * 1024,
            dir: None,
        }
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The canonical text of everything that decides what an installed root contains. Every
/// value is written as `name <byte length>:<value>\n`, so no value can imitate another field.
pub fn key_material(plan: &BuildrootPlan, bootstrap_image_id: &str, repomd_sha256: &str) -> String {
    let mut out = String::from("koji-adjutant buildroot cache key v2\n");
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{name} {}:{value}", value.len());
    };
    field("mode", plan.mode.as_str());
    field("bootstrap_image", bootstrap_image_id);
    field("repomd_sha256", repomd_sha256);
    field("repo_id", &plan.repo_id.to_string());
    field("tag", &plan.tag_name);
    field("buildroot_arch", &plan.buildroot_arch);
    field("repo_baseurl", &plan.repo_baseurl);
    for file in &plan.bootstrap_files {
        field(
            "bootstrap_file",
            &format!("{}\n{}", file.dest, file.content),
        );
    }
    for step in &plan.init_steps {
        field("init_step", &step.argv.join("\0"));
    }
    out
}

/// The cache key: SHA-256 of [`key_material`].
pub fn key(plan: &BuildrootPlan, bootstrap_image_id: &str, repomd_sha256: &str) -> String {
    sha256_hex(key_material(plan, bootstrap_image_id, repomd_sha256).as_bytes())
}

/// A cached root.
#[derive(Debug, Clone)]
pub struct Cached {
    pub image_id: String,
    /// Image mode: the image's own RPMs (nevra keys).
    pub baseline: Vec<String>,
}

/// What was read of a cached root when it was made, before anything of a task ran in it,
/// kept on the host beside the image (`<dir>/<key>.json`): a warm task sends the hub this
/// list instead of reading the rpm database again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The cache image the record describes; a record of another image is not used.
    pub image_id: String,
    pub packages: Vec<InstalledRpm>,
    /// The build user can write the rpm database (the runner then lists it after the build).
    pub rpmdb_writable: bool,
}

fn record_path(cache: &CacheConfig, key: &str) -> Option<PathBuf> {
    cache
        .dir
        .as_ref()
        .map(|dir| dir.join(format!("{key}.json")))
}

/// The record of `key`'s cache image `image_id`, when there is one of that image.
pub fn read_record(cache: &CacheConfig, key: &str, image_id: &str) -> Option<Record> {
    let path = record_path(cache, key)?;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(target: LOG_TARGET, "cannot read {}: {e}", path.display());
            return None;
        }
    };
    let record: Record = match file
        .metadata()
        .map_err(|e| e.to_string())
        .and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err("not a regular file".to_owned())
            }
        })
        .and_then(|()| {
            serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| e.to_string())
        }) {
        Ok(record) => record,
        Err(e) => {
            warn!(target: LOG_TARGET, "ignoring the cache record {}: {e}", path.display());
            return None;
        }
    };
    (bare_id(&record.image_id) == bare_id(image_id)).then_some(record)
}

/// An image ID without the `sha256:` podman's import and commit replies put before it.
fn bare_id(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// Writes `record` for `key` (a new file renamed into place); a failure only costs the next
/// warm task a package query.
pub fn write_record(cache: &CacheConfig, key: &str, record: &Record) {
    let Some(path) = record_path(cache, key) else {
        return;
    };
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let record = Record {
            image_id: bare_id(&record.image_id).to_owned(),
            ..record.clone()
        };
        serde_json::to_writer(&mut file, &record)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        warn!(target: LOG_TARGET, "cannot write the cache record {}: {e}", path.display());
    }
}

/// The cached root of `key`, if any.
pub async fn lookup(client: &PodmanClient, key: &str) -> Result<Option<Cached>> {
    let images = client.images_with_label(KEY_LABEL, key).await?;
    Ok(images.into_iter().next().map(|img| Cached {
        baseline: img
            .labels
            .get(BASELINE_LABEL)
            .map(|b| b.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        image_id: img.id,
    }))
}

/// Where a freshly installed root is, to be stored as the cache image of its key.
pub enum Source<'a> {
    /// The (not yet started) build container holding it: committed.
    Container(&'a str),
    /// A tar of it the host wrote (in a user namespace, where podman 4.3's commit stores host
    /// ids that no later container can use): imported.
    Tar(&'a std::path::Path),
}

/// Stores a freshly installed root as the cache image of `key`; returns the image ID.
pub async fn store(
    client: &PodmanClient,
    source: Source<'_>,
    key: &str,
    baseline: &[String],
) -> Result<String> {
    let mut labels = BTreeMap::new();
    labels.insert(CACHE_LABEL.to_owned(), "1".to_owned());
    labels.insert(KEY_LABEL.to_owned(), key.to_owned());
    if !baseline.is_empty() {
        labels.insert(BASELINE_LABEL.to_owned(), baseline.join(" "));
    }
    save_root(client, source, REPO, key.get(..32).unwrap_or(key), labels).await
}

/// Saves a root as the local image `repo:tag` with `labels`; returns the image ID.
pub async fn save_root(
    client: &PodmanClient,
    source: Source<'_>,
    repo: &str,
    tag: &str,
    mut labels: BTreeMap<String, String>,
) -> Result<String> {
    // A commit keeps the committed container's labels in the image, and a container made from
    // it inherits them: blank the task's own, so nothing made from a saved root counts as
    // that task's or that worker's (the reaper removes containers by them).
    for label in [
        LABEL_TASK_ID,
        LABEL_WORKER_ID,
        "io.koji.adjutant.role",
        "io.koji.adjutant.method",
    ] {
        labels.insert(label.to_owned(), String::new());
    }
    match source {
        Source::Container(id) => client.commit(id, repo, tag, &labels, false).await,
        Source::Tar(path) => {
            client
                .import_tar(path, &format!("{repo}:{tag}"), &labels)
                .await
        }
    }
}

/// The lock of one cache key, held by the task installing and storing that key's root.
///
/// Tasks run at once (kojid's `maxjobs`, each in a process of its own) that miss the cache
/// for the same key would each install the root and each store an image of it. The first
/// takes this lock; the others wait for it, then find the stored image and start from it.
/// It is an advisory `flock` on `<key>.lock` in the cache dir (the temp dir without one):
/// the kernel drops it when its holder exits, however it ends (SIGKILL included).
#[derive(Debug)]
pub struct KeyLock {
    _file: std::fs::File,
}

/// How often a task waiting for another's key lock tries again.
const LOCK_POLL: Duration = Duration::from_millis(250);

fn lock_path(cache: &CacheConfig, key: &str) -> PathBuf {
    match &cache.dir {
        Some(dir) => dir.join(format!("{key}.lock")),
        None => std::env::temp_dir().join(format!("koji-adjutant-buildroot-{key}.lock")),
    }
}

/// One attempt at the lock file at `path`: `None` while another holds it.
fn try_lock(path: &Path) -> std::io::Result<Option<KeyLock>> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    // A lock file someone else planted (in the shared temp dir) is not ours to wait on.
    let own_uid = std::fs::metadata("/proc/self").map(|m| m.uid())?;
    if !meta.is_file() || meta.uid() != own_uid {
        return Err(std::io::Error::other(
            "not a regular file of this user: not used as a lock",
        ));
    }
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    // Eviction removes a key's lock file: the lock counts only on the file still at `path`.
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
            Ok(Some(KeyLock { _file: file }))
        }
        _ => Ok(None),
    }
}

/// Takes the lock of `key`, waiting while another task holds it; `on_wait` is called once if
/// it has to wait. Ends with [`Error::Interrupted`] when `cancel` fires while waiting.
pub async fn lock(
    cache: &CacheConfig,
    key: &str,
    cancel: &Cancel,
    mut on_wait: impl FnMut(),
) -> Result<KeyLock> {
    let path = lock_path(cache, key);
    if let Some(dir) = &cache.dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cache dir {}", dir.display()), e))?;
    }
    let mut waited = false;
    loop {
        match try_lock(&path) {
            Ok(Some(held)) => return Ok(held),
            Ok(None) => {}
            Err(e) => return Err(Error::io(format!("cache lock {}", path.display()), e)),
        }
        if !waited {
            waited = true;
            on_wait();
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(Error::Interrupted),
            () = tokio::time::sleep(LOCK_POLL) => {}
        }
    }
}

/// Records a use of `key` (for least-recently-used eviction).
pub fn touch(cache: &CacheConfig, key: &str) {
    if let Some(dir) = &cache.dir {
        let result = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(dir.join(key), b""));
        if let Err(e) = result {
            warn!(target: LOG_TARGET, "cannot record cache use in {}: {e}", dir.display());
        }
    }
}

/// Checks the cache config before a task uses it.
pub fn validate(cache: &CacheConfig) -> Result<()> {
    if let Some(dir) = &cache.dir {
        if !dir.is_absolute() {
            return Err(Error::invalid(format!(
                "cache dir must be absolute: {}",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Removes least recently used cache images until both bounds hold.
pub async fn evict(client: &PodmanClient, cache: &CacheConfig) -> Result<usize> {
    let mut images = client.images_with_label(CACHE_LABEL, "1").await?;
    let last_used = |img: &ImageSummary| -> i64 {
        let key = img.labels.get(KEY_LABEL).cloned().unwrap_or_default();
        cache
            .dir
            .as_ref()
            .and_then(|d| std::fs::metadata(d.join(&key)).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(img.created)
    };
    images.sort_by_key(|img| std::cmp::Reverse(last_used(img)));
    let mut removed = 0;
    let mut total: u64 = 0;
    for (index, img) in images.iter().enumerate() {
        total += img.size;
        if (index >= cache.max_images || total > cache.max_bytes)
            && client.remove_image(&img.id).await?
        {
            info!(target: LOG_TARGET, image = %img.id, "evicted buildroot cache image");
            if let (Some(dir), Some(key)) = (&cache.dir, img.labels.get(KEY_LABEL)) {
                let _ = std::fs::remove_file(dir.join(key));
                let _ = std::fs::remove_file(dir.join(format!("{key}.lock")));
                let _ = std::fs::remove_file(dir.join(format!("{key}.json")));
            }
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::super::config::{BuildrootMode, BuildrootOptions, ExtraValue, RepoLocation};
    use super::super::header::tests::TempDir;
    use super::super::plan::plan;
    use super::super::plan::tests::{plan_for, request, s, srpm};
    use super::*;

    const REPOMD: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn sha256_is_hex_of_the_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_key_is_what_the_root_is_made_of() {
        let base_req = request(&[]);
        let base = key(
            &plan_for(BuildrootMode::Tag, &base_req),
            "sha256:aa",
            REPOMD,
        );
        let mut variants: Vec<(&str, String)> = vec![
            (
                "bootstrap image",
                key(
                    &plan_for(BuildrootMode::Tag, &base_req),
                    "sha256:bb",
                    REPOMD,
                ),
            ),
            (
                "repo content under the same id",
                key(
                    &plan_for(BuildrootMode::Tag, &base_req),
                    "sha256:aa",
                    &REPOMD.replace('1', "2"),
                ),
            ),
            (
                "mode",
                key(
                    &plan_for(BuildrootMode::Image, &base_req),
                    "sha256:aa",
                    REPOMD,
                ),
            ),
        ];
        let mut r = base_req.clone();
        r.repo_id = 78;
        variants.push((
            "repo id",
            key(&plan_for(BuildrootMode::Tag, &r), "sha256:aa", REPOMD),
        ));
        let mut r = base_req.clone();
        r.repo = RepoLocation::Url("https://other.example/repos/f40-build/77/x86_64".into());
        variants.push((
            "location",
            key(&plan_for(BuildrootMode::Tag, &r), "sha256:aa", REPOMD),
        ));
        for extra in [
            ("mock.yum.module_hotfixes", ExtraValue::Bool(true)),
            ("mock.releasever", s("40")),
            ("mock.yum.best", ExtraValue::Int(0)),
        ] {
            let r = request(std::slice::from_ref(&extra));
            variants.push((
                extra.0,
                key(&plan_for(BuildrootMode::Tag, &r), "sha256:aa", REPOMD),
            ));
        }
        let group = plan(
            1,
            BuildrootMode::Tag,
            &base_req,
            &BuildrootOptions {
                install_group: "srpm-build".into(),
                ..Default::default()
            },
            &["x86_64".into()],
            Some(&srpm()),
        )
        .unwrap();
        variants.push(("install group", key(&group, "sha256:aa", REPOMD)));
        for (what, k) in &variants {
            assert_ne!(k, &base, "the key ignores the {what}");
        }
        // Per-task settings are not part of the root: macros and the build environment go
        // into each task's container, so they share a root.
        for extra in [("rpm.macro.dist", s(".fc40")), ("rpm.env.FOO", s("1"))] {
            let r = request(&[extra]);
            assert_eq!(
                key(&plan_for(BuildrootMode::Tag, &r), "sha256:aa", REPOMD),
                base
            );
        }
        // A value cannot imitate the next field: lengths delimit them.
        let tricky = key(
            &plan_for(BuildrootMode::Tag, &base_req),
            &format!("sha256:aa\nrepomd_sha256 64:{REPOMD}"),
            "",
        );
        assert_ne!(tricky, base);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn in_dir(dir: &Path) -> CacheConfig {
        CacheConfig {
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_is_used_only_for_its_own_image_and_never_through_a_link() {
        let dir = TempDir::new();
        let cache = in_dir(&dir.0);
        let rpm = crate::core::buildroot::pkglist::parse_package_list(
            "bash\t5.2\t1\t(none)\tx86_64\tABCDEF\t100\t100\t1700000000\tGPLv3+\t(none)\n",
        )
        .unwrap();
        let record = Record {
            image_id: "sha256:aaaa".to_owned(),
            packages: rpm,
            rpmdb_writable: false,
        };
        write_record(&cache, "k1", &record);
        // podman names the same image with or without "sha256:"
        let read = read_record(&cache, "k1", "aaaa").unwrap();
        assert_eq!(read.packages, record.packages);
        assert!(read_record(&cache, "k1", "sha256:aaaa").is_some());
        assert!(
            read_record(&cache, "k1", "bbbb").is_none(),
            "another image's record"
        );
        assert!(read_record(&cache, "k2", "aaaa").is_none(), "no record");
        // a record replaced by a link, or unreadable JSON, is not used
        let path = dir.0.join("k1.json");
        std::fs::remove_file(&path).unwrap();
        let elsewhere = dir.0.join("elsewhere.json");
        std::fs::write(&elsewhere, serde_json::to_vec(&record).unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(read_record(&cache, "k1", "aaaa").is_none());
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read_record(&cache, "k1", "aaaa").is_none());
        // without a cache dir there are no records
        let none = CacheConfig::default();
        write_record(&none, "k1", &record);
        assert!(read_record(&none, "k1", "aaaa").is_none());
        let _ = std::fs::remove_dir_all(&dir.0);
    }

    #[test]
    fn one_task_at_a_time_holds_a_key_and_the_others_wait_for_it() {
        let dir = TempDir::new();
        let cache = in_dir(&dir.0);
        let rt = runtime();
        let never = Cancel::never();
        let held = rt.block_on(lock(&cache, "k1", &never, || {})).unwrap();
        // a second open file description is refused while the first holds the key...
        assert!(try_lock(&lock_path(&cache, "k1")).unwrap().is_none());
        // ...another key is free...
        let other = rt.block_on(lock(&cache, "k2", &never, || {})).unwrap();
        // ...and a waiter gets the key once its holder lets go.
        let mut waits = 0;
        let (handle, cancel) = crate::core::cancel::cancel_pair();
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            drop(held);
        });
        let taken = rt.block_on(lock(&cache, "k1", &cancel, || waits += 1));
        released.join().unwrap();
        assert!(taken.is_ok());
        assert_eq!(waits, 1, "on_wait is called once however long the wait");
        drop(other);
        drop(handle);
    }

    #[test]
    fn a_cancelled_wait_ends_interrupted() {
        let dir = TempDir::new();
        let cache = in_dir(&dir.0);
        let rt = runtime();
        let _held = rt
            .block_on(lock(&cache, "k", &Cancel::never(), || {}))
            .unwrap();
        let (handle, cancel) = crate::core::cancel::cancel_pair();
        handle.cancel();
        let waited = rt.block_on(lock(&cache, "k", &cancel, || {}));
        assert!(matches!(waited, Err(Error::Interrupted)), "{waited:?}");
    }

    #[test]
    fn a_lock_file_replaced_by_a_symlink_or_removed_is_not_trusted() {
        let dir = TempDir::new();
        let cache = in_dir(&dir.0);
        let target = dir.0.join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, lock_path(&cache, "s")).unwrap();
        let refused = runtime().block_on(lock(&cache, "s", &Cancel::never(), || {}));
        assert!(matches!(refused, Err(Error::Io { .. })), "{refused:?}");
        // eviction removes a lock file under its holder: the next task locks the new file
        let held = runtime()
            .block_on(lock(&cache, "r", &Cancel::never(), || {}))
            .unwrap();
        std::fs::remove_file(lock_path(&cache, "r")).unwrap();
        let next = try_lock(&lock_path(&cache, "r")).unwrap();
        assert!(next.is_some());
        drop(held);
    }
}
