//! The pure planning half of the createrepo adapter: what kojid's `CreaterepoTask` would run
//! for one arch of a Koji repo, as plain data, after checking the repo's on-disk state.
//!
//! [`validate`] reads (and only reads) the repo directory the hub's `repo_init` wrote,
//! `<topdir>/repos/<tag>/<repo_id>/<arch>/` with `pkglist`, `blocklist`, `toplink` (a relative
//! symlink to the topdir) and `../groups/comps.xml`, and rejects anything that would let the
//! container see more than it needs. [`plan`] turns the result into ordered [`Action`]s: host-side
//! file operations and the exact `createrepo_c` / `mergerepo_c` argv kojid uses. Running them in
//! a container is the runner's job; nothing here starts a process.
//!
//! Container layout: every mount appears in the container at the same path as on the host (as
//! kojid sees it, i.e. the configured topdir, not its canonical form). That is deliberate:
//! `mergerepo_c` records each source repo's URL in `pkgorigins.gz`, and kojid's
//! `markExternalRPMs` recognises the repo's own packages only by a `file://` origin ending in
//! `/repo_<repo_id>_premerge/`, and external packages only by an origin equal to the external
//! repo's URL. Identical paths keep those strings, the logged command lines and the failure
//! messages byte-for-byte what kojid produces. Because `toplink` is relative (`../../../..`),
//! the packages resolve inside the container as long as the package directories are mounted
//! at `<topdir>/...`; no part of the topdir other than what the pkglist names is mounted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::core::error::{Error, Result};
use crate::core::spec::VolumeMount;

/// kojid runs the tools by absolute path; we keep the same argv[0] so logs match.
pub const CREATEREPO_C: &str = "/usr/bin/createrepo_c";
pub const MERGEREPO_C: &str = "/usr/bin/mergerepo_c";

/// The marker kojid writes into `repodata/` of a repo with no packages and no external repos.
pub const EMPTY_REPO_FILE: &str = "EMPTY_REPO";
pub const EMPTY_REPO_CONTENTS: &str =
    "This repo is empty because its tag has no content for this arch\n";

/// Written by mergerepo_c; kojid deletes the old one before `--update` so that a stale origin
/// list never survives into a repo that is not merged again.
pub const PKGORIGINS_FILE: &str = "pkgorigins.gz";

/// Above this many package directories, the `packages` directory of each volume is mounted
/// instead (see [`validate`]): a bind mount per directory is the minimal exposure, but tens of
/// thousands of mounts make container creation slow and can hit the kernel's mount limit.
pub const MAX_PACKAGE_DIR_MOUNTS: usize = 1024;

/// Top-level directories that a mount may never replace or expose.
const SYSTEM_DIRS: &[&str] = &[
    "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "sys",
    "usr",
];

/// How an external repo is merged (kojid's `merge_mode`; absent means `koji`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    #[default]
    Koji,
    Simple,
    Bare,
}

impl MergeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMode::Koji => "koji",
            MergeMode::Simple => "simple",
            MergeMode::Bare => "bare",
        }
    }
}

/// The version of a mergerepo_c, which decides two of kojid's flags: `--simple` needs
/// 0.13.0 and `--arch-expand` 0.15.11 (kojid's `merge_repos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MergerepoVersion(pub u32, pub u32, pub u32);

impl MergerepoVersion {
    /// The first mergerepo_c with `--simple`.
    pub const SIMPLE: Self = MergerepoVersion(0, 13, 0);
    /// The first mergerepo_c with `--arch-expand`.
    pub const ARCH_EXPAND: Self = MergerepoVersion(0, 15, 11);

    /// kojid's reading of `mergerepo_c --version` (`Version: 0.15.11 (Features: ...)`):
    /// `re.match(r'Version: (\d+).(\d+).(\d+).*', out.strip())`.
    pub fn parse(out: &str) -> Option<Self> {
        fn number(text: &str) -> Option<(u32, &str)> {
            let end = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let value = text.get(..end)?.parse().ok()?;
            Some((value, text.get(end..)?))
        }
        fn skip_one(text: &str) -> Option<&str> {
            let mut chars = text.chars();
            chars.next()?;
            Some(chars.as_str())
        }
        let rest = out.trim().strip_prefix("Version: ")?;
        let (major, rest) = number(rest)?;
        let (minor, rest) = number(skip_one(rest)?)?;
        let (patch, _) = number(skip_one(rest)?)?;
        Some(MergerepoVersion(major, minor, patch))
    }
}

impl std::fmt::Display for MergerepoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One entry of the hub's `getExternalRepoList` for the repo's tag and create event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalRepo {
    pub name: String,
    /// May contain `$arch`, replaced by the repo's arch as kojid does.
    pub url: String,
    #[serde(default)]
    pub merge_mode: MergeMode,
    /// The arches the repo applies to (kojid's space-separated `arches`, split); `None` or
    /// empty means every arch.
    #[serde(default)]
    pub arches: Option<Vec<String>>,
}

impl ExternalRepo {
    fn applies_to(&self, arch: &str) -> bool {
        match &self.arches {
            Some(arches) if !arches.is_empty() => arches.iter().any(|a| a == arch),
            _ => true,
        }
    }
}

/// An entry of the hub's `getExternalRepoList` exactly as kojid receives it. The hub also
/// sends ids, the tag and the priority; those keys are accepted and ignored (the list is
/// already in priority order).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KojiExternalRepo {
    #[serde(default)]
    pub external_repo_name: String,
    pub url: String,
    /// Absent or null means `koji`, as in kojid (`repo.get('merge_mode', 'koji')`).
    #[serde(default)]
    pub merge_mode: Option<MergeMode>,
    /// Space-separated arches; absent, null or empty means every arch.
    #[serde(default)]
    pub arches: Option<String>,
}

impl From<KojiExternalRepo> for ExternalRepo {
    fn from(repo: KojiExternalRepo) -> Self {
        ExternalRepo {
            name: repo.external_repo_name,
            url: repo.url,
            merge_mode: repo.merge_mode.unwrap_or_default(),
            // kojid: `repo.get('arches') and arch not in repo['arches'].split()`.
            arches: repo
                .arches
                .map(|arches| arches.split_whitespace().map(str::to_owned).collect()),
        }
    }
}

/// What the caller (the kojid hook) knows about one createrepo subtask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreaterepoRequest {
    /// `<topdir>/repos/<tag>/<repo_id>` (kojid's `pathinfo.repo(repo_id, tag_name)`).
    pub repo_dir: PathBuf,
    /// The task's work directory (kojid's `self.workdir`). The repo is written to
    /// `work_dir/repo` and, when merging, first to `work_dir/repo_<repo_id>_premerge`.
    pub work_dir: PathBuf,
    /// The repo arch (not the task's).
    pub arch: String,
    /// kojid's `topdir`. `None`: inferred from `repo_dir`, which only works for tag names
    /// without `/`.
    #[serde(default)]
    pub topdir: Option<PathBuf>,
    /// `None`: `<repo_dir>/groups/comps.xml` if it is a file, as kojid does.
    #[serde(default)]
    pub groups: Option<PathBuf>,
    /// `None`: `<repo_dir>/<arch>/pkglist`, which must exist.
    #[serde(default)]
    pub pkglist: Option<PathBuf>,
    /// The old repo's `<arch>/repodata`, for `--update`.
    #[serde(default)]
    pub old_repodata: Option<PathBuf>,
    /// kojid's `createrepo_update`.
    #[serde(default)]
    pub update: bool,
    /// kojid's `createrepo_skip_stat`.
    #[serde(default)]
    pub skip_stat: bool,
    #[serde(default)]
    pub external_repos: Vec<ExternalRepo>,
}

/// The merge that follows createrepo_c when the tag has external repos.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MergeSpec {
    mode: MergeMode,
    /// The external repo URLs that apply to this arch, `$arch` replaced, in the hub's order.
    urls: Vec<String>,
}

/// A request whose paths and on-disk state have been checked; the only input of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRepo {
    topdir: PathBuf,
    tag: String,
    repo_id: u64,
    arch: String,
    repo_dir: PathBuf,
    arch_dir: PathBuf,
    work_dir: PathBuf,
    pkglist: PathBuf,
    /// kojid's test: a zero-byte pkglist means "no pkglist" (no `-i`, EMPTY_REPO).
    pkglist_empty: bool,
    package_count: usize,
    blocklist: PathBuf,
    groups: Option<PathBuf>,
    /// Present only when `--update` will be used.
    old_repodata: Option<PathBuf>,
    skip_stat: bool,
    merge: Option<MergeSpec>,
    mounts: Vec<VolumeMount>,
    network_needed: bool,
}

impl ValidatedRepo {
    /// Whether external repos are merged after createrepo_c (so the plan depends on the
    /// image's mergerepo_c version).
    pub fn merges(&self) -> bool {
        self.merge.is_some()
    }

    /// kojid's `self.outdir`.
    pub fn out_dir(&self) -> PathBuf {
        self.work_dir.join("repo")
    }
    fn premerge_dir(&self) -> PathBuf {
        self.work_dir
            .join(format!("repo_{}_premerge", self.repo_id))
    }
}

/// A command run inside the container. Its paths are container paths; every path it names
/// is mounted at the same path as on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCommand {
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    /// The log kojid writes this command's output to (in the work dir) and uploads.
    pub log_name: String,
    /// kojid's prefix for the task failure message (see [`ContainerCommand::failed`]).
    pub failure_prefix: String,
}

/// How a container command ended, for kojid's `parseStatus` wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutcome {
    Exited(i64),
    Signaled(i32),
}

impl ContainerCommand {
    /// The error kojid raises when this command fails, word for word (`GenericError('failed
    /// to create repo: ' + parseStatus(status, format_shell_cmd(cmd)))`), so the hub shows
    /// the same task failure; with the log the command wrote and its exit code, so the
    /// caller can point at the log.
    pub fn failed(&self, outcome: CommandOutcome, log: PathBuf, exit_code: i64) -> Error {
        Error::RepoCommand {
            message: self.failure_message(outcome),
            log: Some(log),
            exit_code: Some(exit_code),
        }
    }

    fn failure_message(&self, outcome: CommandOutcome) -> String {
        let cmd = crate::core::shell::format_cmd(&self.argv);
        let status = match outcome {
            CommandOutcome::Exited(code) => format!("{cmd} exited with status {code}"),
            CommandOutcome::Signaled(signal) => format!("{cmd} was killed by signal {signal}"),
        };
        format!("{}: {status}", self.failure_prefix)
    }
}

/// One action of a plan, run in order (buildArch's execs are [`super::buildroot::Step`]s).
/// Every action except `Run` is done by the runner on the host, with host paths; the work dir
/// is mounted at the same path, so these are also the paths the container commands see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the directory (and missing parents).
    CreateDir {
        path: PathBuf,
    },
    /// Copy the regular files of `from` into the new directory `to` without following
    /// symlinks, then delete the files named in `remove` from the copy if present.
    CopyOldRepodata {
        from: PathBuf,
        to: PathBuf,
        remove: Vec<String>,
    },
    Run(ContainerCommand),
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    WriteFile {
        path: PathBuf,
        contents: String,
    },
}

/// Everything the runner needs for one createrepo task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreaterepoPlan {
    /// Sorted by container path (parents before children).
    pub mounts: Vec<VolumeMount>,
    /// True only when an external repo that applies to this arch is fetched over http(s).
    pub network_needed: bool,
    pub steps: Vec<Action>,
    /// Host directory whose files are uploaded once the steps succeeded.
    pub repodata_dir: PathBuf,
}

impl CreaterepoPlan {
    #[cfg(test)]
    pub fn commands(&self) -> impl Iterator<Item = &ContainerCommand> {
        self.steps.iter().filter_map(|step| match step {
            Action::Run(command) => Some(command),
            _ => None,
        })
    }

    /// Where the EMPTY_REPO marker is written, if it is.
    pub fn empty_repo_marker(&self) -> Option<&Path> {
        self.steps.iter().find_map(|step| match step {
            Action::WriteFile { path, .. }
                if path.file_name() == Some(EMPTY_REPO_FILE.as_ref()) =>
            {
                Some(path.as_path())
            }
            _ => None,
        })
    }

    /// `(from, to, files removed from the copy)` when the old repodata is reused.
    #[cfg(test)]
    pub fn old_repodata_copy(&self) -> Option<(&Path, &Path, &[String])> {
        self.steps.iter().find_map(|step| match step {
            Action::CopyOldRepodata { from, to, remove } => {
                Some((from.as_path(), to.as_path(), remove.as_slice()))
            }
            _ => None,
        })
    }
}

// ------------------------------------------------------------------------------------------
// validate

/// Checks the request and the repo's on-disk state and computes the mounts. Reads files
/// (pkglist, blocklist, symlinks) but writes nothing; every problem is reported before anything
/// runs. Bad arguments are `Error::InvalidSpec`; a repo directory that is missing or wrong is
/// `Error::Repo`, except no `<topdir>/repos` at all: `Error::Refused` (kojid refuses the task
/// so that another builder, with the file system mounted, takes it).
pub fn validate(req: &CreaterepoRequest) -> Result<ValidatedRepo> {
    let args = parse_args(req)?;
    let arch_dir = check_repo_dirs(&args.topdir, &args.repo_dir, &req.arch)?;
    check_toplink(&arch_dir, &args.topdir)?;

    let pkglist = args
        .pkglist
        .clone()
        .unwrap_or_else(|| arch_dir.join("pkglist"));
    let pkglist_text = read_repo_file(&pkglist, "pkglist")?;
    // kojid's test is `os.path.getsize(pkglist) == 0`, nothing else.
    let pkglist_empty = pkglist_text.is_empty();
    let entries: Vec<&str> = pkglist_text.split('\n').filter(|l| !l.is_empty()).collect();
    let package_mounts = package_mounts(&args.topdir, &entries, MAX_PACKAGE_DIR_MOUNTS)?;

    let blocklist = arch_dir.join("blocklist");
    let needs_blocklist = matches!(args.merge_mode, Some(MergeMode::Koji | MergeMode::Simple));
    if blocklist.exists() || needs_blocklist {
        check_blocklist(&read_repo_file(&blocklist, "blocklist")?)?;
    }
    let groups = resolve_groups(args.groups.clone(), &args.repo_dir)?;
    let old_repodata = usable_old_repodata(args.old_repodata.clone(), req.update, pkglist_empty);

    let mut mounts = vec![VolumeMount {
        source: canonical(&arch_dir, "repo arch directory")?,
        target: arch_dir.clone(),
        read_only: true,
        selinux_label: None,
    }];
    for file in groups
        .iter()
        .chain(Some(&pkglist).filter(|p| !p.starts_with(&arch_dir)))
    {
        mounts.push(VolumeMount {
            source: canonical(file, "input file")?,
            target: file.clone(),
            read_only: true,
            selinux_label: None,
        });
    }
    mounts.extend(package_mounts);
    mounts.extend(external_repodata_mounts(&args.external)?);
    let mounts = finish_mounts(mounts, &args.work_dir, args.repo_id)?;
    let network_needed = args.external.iter().any(|(_, kind)| *kind == UrlKind::Http);

    Ok(ValidatedRepo {
        topdir: args.topdir,
        tag: args.tag,
        repo_id: args.repo_id,
        arch: req.arch.clone(),
        repo_dir: args.repo_dir,
        arch_dir,
        work_dir: args.work_dir,
        pkglist,
        pkglist_empty,
        package_count: entries.len(),
        blocklist,
        groups,
        old_repodata,
        skip_stat: req.skip_stat,
        merge: args.merge_mode.map(|mode| MergeSpec {
            mode,
            urls: args.external.into_iter().map(|(url, _)| url).collect(),
        }),
        mounts,
        network_needed,
    })
}

/// The request's arguments, checked without touching the disk.
struct Args {
    repo_dir: PathBuf,
    work_dir: PathBuf,
    topdir: PathBuf,
    tag: String,
    repo_id: u64,
    groups: Option<PathBuf>,
    pkglist: Option<PathBuf>,
    old_repodata: Option<PathBuf>,
    merge_mode: Option<MergeMode>,
    /// The external repos that apply to the arch: URL with `$arch` replaced, and its kind.
    external: Vec<(String, UrlKind)>,
}

fn parse_args(req: &CreaterepoRequest) -> Result<Args> {
    validate_arch(&req.arch)?;
    let repo_dir = absolute_arg("repo_dir", &req.repo_dir)?;
    let work_dir = absolute_arg("work_dir", &req.work_dir)?;
    let topdir = match &req.topdir {
        Some(topdir) => absolute_arg("topdir", topdir)?,
        None => infer_topdir(&repo_dir)?,
    };
    let (tag, repo_id) = split_repo_dir(&topdir, &repo_dir)?;
    let optional = |what: &str, path: &Option<PathBuf>| {
        path.as_deref().map(|p| absolute_arg(what, p)).transpose()
    };
    let groups = optional("groups", &req.groups)?;
    let pkglist = optional("pkglist", &req.pkglist)?;
    let old_repodata = optional("old_repodata", &req.old_repodata)?;
    let mounted = [
        Some(&topdir),
        Some(&work_dir),
        groups.as_ref(),
        pkglist.as_ref(),
    ];
    for path in mounted.into_iter().flatten() {
        check_mountable(path).map_err(Error::InvalidSpec)?;
    }
    let merge_mode = single_merge_mode(&req.external_repos)?;
    let mut external = Vec::new();
    for repo in &req.external_repos {
        let kind = classify_url(repo)?;
        if repo.applies_to(&req.arch) {
            external.push((repo.url.replace("$arch", &req.arch), kind));
        }
    }
    Ok(Args {
        repo_dir,
        work_dir,
        topdir,
        tag,
        repo_id,
        groups,
        pkglist,
        old_repodata,
        merge_mode,
        external,
    })
}

/// kojid's checks, told apart: no `<topdir>/repos` (refuse: wrong mount), no repo dir, no arch
/// dir. Returns the arch dir.
fn check_repo_dirs(topdir: &Path, repo_dir: &Path, arch: &str) -> Result<PathBuf> {
    let repos_dir = topdir.join("repos");
    if !repos_dir.is_dir() {
        return Err(Error::Refused(format!(
            "No access to repos dir {}",
            repos_dir.display()
        )));
    }
    if !repo_dir.is_dir() {
        return Err(Error::Repo(format!(
            "Repo directory missing: {}",
            repo_dir.display()
        )));
    }
    let arch_dir = repo_dir.join(arch);
    if !arch_dir.is_dir() {
        return Err(Error::Repo(format!(
            "Repo directory missing: {} (repo {} has no directory for arch {arch}; arches present: {})",
            arch_dir.display(),
            repo_dir.display(),
            present_arches(repo_dir)
        )));
    }
    Ok(arch_dir)
}

/// An explicit groups file must exist; by default kojid uses `groups/comps.xml` if it is a file.
fn resolve_groups(explicit: Option<PathBuf>, repo_dir: &Path) -> Result<Option<PathBuf>> {
    match explicit {
        Some(groups) if groups.is_file() => Ok(Some(groups)),
        Some(groups) => Err(Error::Repo(format!(
            "groups file missing: {}",
            groups.display()
        ))),
        None => Ok(Some(repo_dir.join("groups").join("comps.xml")).filter(|p| p.is_file())),
    }
}

/// kojid uses the old repodata only `if pkglist and oldrepo and createrepo_update`, and warns
/// and goes on without `--update` when it is gone.
fn usable_old_repodata(old: Option<PathBuf>, update: bool, pkglist_empty: bool) -> Option<PathBuf> {
    let old = old.filter(|_| update && !pkglist_empty)?;
    if old.is_dir() {
        Some(old)
    } else {
        tracing::warn!("old repodata is missing: {}", old.display());
        None
    }
}

/// A local external repo needs only its `repodata/` in the container: mergerepo_c reads the
/// metadata, never the packages.
fn external_repodata_mounts(external: &[(String, UrlKind)]) -> Result<Vec<VolumeMount>> {
    let mut mounts = Vec::new();
    for (url, kind) in external {
        if *kind != UrlKind::File {
            continue;
        }
        let repodata = file_url_path(url)?.join("repodata");
        if !repodata.is_dir() {
            return Err(Error::Repo(format!(
                "external repo {url}: {} is not a directory",
                repodata.display()
            )));
        }
        mounts.push(VolumeMount {
            source: canonical(&repodata, "external repodata")?,
            target: repodata,
            read_only: true,
            selinux_label: None,
        });
    }
    Ok(mounts)
}

/// Prunes the read-only mounts, adds the work dir (the only writable one) and checks them all.
fn finish_mounts(
    read_only: Vec<VolumeMount>,
    work_dir: &Path,
    repo_id: u64,
) -> Result<Vec<VolumeMount>> {
    let mut mounts = prune_mounts(read_only)?;
    check_work_dir(work_dir, repo_id, &mounts)?;
    mounts.push(VolumeMount {
        source: work_dir.to_path_buf(),
        target: work_dir.to_path_buf(),
        read_only: false,
        selinux_label: None,
    });
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    for mount in &mounts {
        check_mountable(&mount.source).map_err(Error::Repo)?;
        check_mountable(&mount.target).map_err(Error::Repo)?;
    }
    Ok(mounts)
}

/// Arches name directories and appear in argv: a plain token such as `x86_64` or `ppc64le`.
fn validate_arch(arch: &str) -> Result<()> {
    let sane = !arch.is_empty()
        && arch.len() <= 64
        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && arch != "groups";
    if sane {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid repo arch {arch:?}: expected a token of letters, digits and '_'"
        )))
    }
}

/// An absolute, UTF-8 path without `..`; returned in lexical normal form (no `.`, no
/// trailing `/`), which is also the container path.
fn absolute_arg(what: &str, path: &Path) -> Result<PathBuf> {
    let ok = path.is_absolute()
        && path.to_str().is_some()
        && !path.components().any(|c| c == Component::ParentDir);
    if !ok {
        return Err(Error::invalid(format!(
            "{what} must be an absolute UTF-8 path without '..', not {}",
            path.display()
        )));
    }
    Ok(path.components().collect())
}

/// `<topdir>/repos/<tag>/<repo_id>` -> `<topdir>`, for tags without `/`.
fn infer_topdir(repo_dir: &Path) -> Result<PathBuf> {
    let repos = repo_dir.parent().and_then(Path::parent);
    match repos {
        Some(repos) if repos.file_name() == Some("repos".as_ref()) => match repos.parent() {
            Some(topdir) => Ok(topdir.to_path_buf()),
            None => Err(cannot_infer(repo_dir)),
        },
        _ => Err(cannot_infer(repo_dir)),
    }
}

fn cannot_infer(repo_dir: &Path) -> Error {
    Error::invalid(format!(
        "cannot infer topdir from repo_dir {} (expected <topdir>/repos/<tag>/<repo_id>); pass topdir",
        repo_dir.display()
    ))
}

/// The tag (which may contain `/`) and repo id encoded in the repo dir.
fn split_repo_dir(topdir: &Path, repo_dir: &Path) -> Result<(String, u64)> {
    let bad = || {
        Error::invalid(format!(
            "repo_dir {} is not <topdir>/repos/<tag>/<repo_id> for topdir {}",
            repo_dir.display(),
            topdir.display()
        ))
    };
    let rel = repo_dir
        .strip_prefix(topdir.join("repos"))
        .map_err(|_| bad())?;
    let parts: Vec<&str> = rel
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    match parts.split_last() {
        Some((id, tag)) if !tag.is_empty() => {
            let repo_id = id.parse::<u64>().map_err(|_| bad())?;
            Ok((tag.join("/"), repo_id))
        }
        _ => Err(bad()),
    }
}

/// kojid fails the task when the external repos mix merge modes; so do we, before running.
fn single_merge_mode(repos: &[ExternalRepo]) -> Result<Option<MergeMode>> {
    let modes: BTreeSet<MergeMode> = repos.iter().map(|r| r.merge_mode).collect();
    match modes.len() {
        0 => Ok(None),
        1 => Ok(modes.into_iter().next()),
        _ => Err(Error::invalid(format!(
            "Found multiple merge modes for external repos: {}",
            modes
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlKind {
    Http,
    File,
}

/// Only http(s) (needs the network) and local `file://` repos (need a mount) are supported.
fn classify_url(repo: &ExternalRepo) -> Result<UrlKind> {
    let url = repo.url.as_str();
    let bad =
        |why: &str| Error::invalid(format!("external repo {:?}: URL {url:?} {why}", repo.name));
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    let lower = url.to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        if let Some(rest) = lower.strip_prefix(scheme) {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(bad("has no host"));
            }
            return Ok(UrlKind::Http);
        }
    }
    if lower.starts_with("file://") {
        file_url_path(url).map_err(|e| bad(&e.to_string()))?;
        return Ok(UrlKind::File);
    }
    Err(bad("must be http://, https:// or file://"))
}

/// The local directory of a `file:///path` URL; mergerepo_c reads it verbatim, so there is no
/// percent-decoding to do and none is accepted.
fn file_url_path(url: &str) -> Result<PathBuf> {
    let path = url.get("file://".len()..).unwrap_or_default();
    if !path.starts_with('/') {
        return Err(Error::invalid("must be file:///<absolute path> (no host)"));
    }
    if path.contains('%') {
        return Err(Error::invalid("must not use percent-encoding"));
    }
    let path = Path::new(path);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(Error::invalid("must not contain '..'"));
    }
    check_mountable(path).map_err(Error::InvalidSpec)?;
    Ok(path.components().collect())
}

/// Why a path cannot be a mount source or target, if it cannot: it must not be (inside) a
/// system directory, and podman's mount syntax cannot carry `,` `:` or NUL.
fn check_mountable(path: &Path) -> std::result::Result<(), String> {
    let top = path.components().nth(1);
    let system = match top {
        None => true,
        Some(Component::Normal(name)) => SYSTEM_DIRS.iter().any(|d| name == *d),
        Some(_) => true,
    };
    if system {
        return Err(format!(
            "{} is, or is inside, a system directory and cannot be mounted",
            path.display()
        ));
    }
    if path.to_string_lossy().contains([',', ':', '\0']) {
        return Err(format!(
            "{} contains ',' ':' or NUL, which a mount cannot express",
            path.display()
        ));
    }
    Ok(())
}

fn present_arches(repo_dir: &Path) -> String {
    let mut arches: Vec<String> = fs::read_dir(repo_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("pkglist").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| name != "groups")
                .collect()
        })
        .unwrap_or_default();
    arches.sort();
    if arches.is_empty() {
        "none".to_string()
    } else {
        arches.join(", ")
    }
}

/// `toplink` must be a symlink that leads to the topdir both on the host (canonically) and,
/// read as text, inside the container (where only the mounted paths exist).
fn check_toplink(arch_dir: &Path, topdir: &Path) -> Result<()> {
    let toplink = arch_dir.join("toplink");
    let meta = fs::symlink_metadata(&toplink)
        .map_err(|e| Error::Repo(format!("toplink missing: {}: {e}", toplink.display())))?;
    if !meta.file_type().is_symlink() {
        return Err(Error::Repo(format!(
            "toplink {} is not a symlink",
            toplink.display()
        )));
    }
    let text = fs::read_link(&toplink)
        .map_err(|e| Error::Repo(format!("cannot read toplink {}: {e}", toplink.display())))?;
    let in_container = lexical_normalize(&arch_dir.join(&text));
    let on_host = fs::canonicalize(&toplink).ok();
    let topdir_canonical = fs::canonicalize(topdir).ok();
    if in_container != topdir || on_host.is_none() || on_host != topdir_canonical {
        return Err(Error::Repo(format!(
            "toplink {} -> {} does not lead to the topdir {}",
            toplink.display(),
            text.display(),
            topdir.display()
        )));
    }
    Ok(())
}

/// Resolves `..` textually, as the kernel does inside the container where every directory on
/// the way is a plain directory.
fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn read_repo_file(path: &Path, what: &str) -> Result<String> {
    if !path.is_file() {
        return Err(Error::Repo(format!("{what} missing: {}", path.display())));
    }
    let bytes =
        fs::read(path).map_err(|e| Error::io(format!("reading {what} {}", path.display()), e))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::Repo(format!("{what} {} is not valid UTF-8", path.display())))
}

fn canonical(path: &Path, what: &str) -> Result<PathBuf> {
    fs::canonicalize(path)
        .map_err(|e| Error::Repo(format!("cannot resolve {what} {}: {e}", path.display())))
}

/// A pkglist entry as `repo_init` writes it:
/// `toplink/[vol/<volume>/]packages/<name>/<version>/<release>/<arch>/<file>`.
struct PackageEntry<'a> {
    /// `packages` or `vol/<volume>/packages`, relative to the topdir.
    root: String,
    /// The entry's directory relative to the topdir.
    dir: String,
    /// The entry relative to the topdir.
    path: &'a str,
}

/// Lexical checks: plain relative components only, under a packages directory through toplink.
fn parse_pkglist_entry(line: &str) -> Result<PackageEntry<'_>> {
    let reject = |why: &str| Error::Repo(format!("pkglist entry {line:?} rejected: {why}"));
    if line.starts_with('/') {
        return Err(reject("absolute path"));
    }
    if line.chars().any(char::is_control) {
        return Err(reject("contains control characters"));
    }
    let parts: Vec<&str> = line.split('/').collect();
    if parts.contains(&"..") {
        return Err(reject("contains '..'"));
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(reject("contains an empty or '.' component"));
    }
    let Some((first, rest)) = parts.split_first() else {
        return Err(reject("empty"));
    };
    if *first != "toplink" {
        return Err(reject("does not start with toplink/"));
    }
    let (root_len, after_root) = match rest {
        ["packages", tail @ ..] => (1, tail),
        ["vol", _, "packages", tail @ ..] => (3, tail),
        _ => {
            return Err(reject(
                "not under toplink/packages/ or toplink/vol/<volume>/packages/",
            ))
        }
    };
    if after_root.len() < 2 {
        return Err(reject("no package directory below packages/"));
    }
    let path = line.get("toplink/".len()..).unwrap_or_default();
    let root = rest.get(..root_len).unwrap_or_default().join("/");
    let dir = rest.get(..rest.len() - 1).unwrap_or_default().join("/");
    Ok(PackageEntry { root, dir, path })
}

/// The read-only mounts that make every pkglist entry resolve in the container: the distinct
/// directories holding the files (`packages/<n>/<v>/<r>/<arch>`), each host directory resolved
/// through symlinks (volumes) and mounted at its path under the topdir. Each entry must resolve,
/// on the host, inside its own packages directory (so `vol/<volume>` may be a symlink to another
/// filesystem, as Koji volumes are, but nothing can escape) and be a regular file in that very
/// directory. Past `limit` directories the packages roots are mounted instead.
pub(crate) fn package_mounts(
    topdir: &Path,
    entries: &[&str],
    limit: usize,
) -> Result<Vec<VolumeMount>> {
    let mut roots: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for line in entries {
        let entry = parse_pkglist_entry(line)?;
        let root = match roots.get(&entry.root) {
            Some(root) => root.clone(),
            None => {
                let root = fs::canonicalize(topdir.join(&entry.root)).map_err(|e| {
                    Error::Repo(format!(
                        "pkglist entry {line:?}: cannot resolve {}: {e}",
                        topdir.join(&entry.root).display()
                    ))
                })?;
                roots.insert(entry.root.clone(), root.clone());
                root
            }
        };
        let file = fs::canonicalize(topdir.join(entry.path))
            .map_err(|e| Error::Repo(format!("pkglist entry {line:?}: cannot resolve: {e}")))?;
        if !file.starts_with(&root) {
            return Err(Error::Repo(format!(
                "pkglist entry {line:?} resolves to {}, outside {}",
                file.display(),
                root.display()
            )));
        }
        if !file.is_file() {
            return Err(Error::Repo(format!(
                "pkglist entry {line:?} is not a regular file"
            )));
        }
        let dir = match dirs.get(&entry.dir) {
            Some(dir) => dir.clone(),
            None => {
                let dir = canonical(&topdir.join(&entry.dir), "package directory")?;
                dirs.insert(entry.dir.clone(), dir.clone());
                dir
            }
        };
        if file.parent() != Some(dir.as_path()) {
            return Err(Error::Repo(format!(
                "pkglist entry {line:?} is a symlink out of its directory (to {})",
                file.display()
            )));
        }
    }
    let chosen = if dirs.len() > limit { roots } else { dirs };
    Ok(chosen
        .into_iter()
        .map(|(rel, source)| VolumeMount {
            source,
            target: topdir.join(rel),
            read_only: true,
            selinux_label: None,
        })
        .collect())
}

/// The package directories a repo's `pkglist` points to through `toplink`, each as (host
/// directory, path relative to the topdir), validated as for createrepo: a buildroot mounts
/// exactly these (read-only) beside the repo's arch dir, and nothing else of the topdir.
pub fn pkglist_package_dirs(topdir: &Path, arch_dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let text = read_repo_file(&arch_dir.join("pkglist"), "pkglist")?;
    let entries: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let mounts = package_mounts(topdir, &entries, MAX_PACKAGE_DIR_MOUNTS)?;
    Ok(mounts
        .into_iter()
        .filter_map(|m| {
            let rel = m.target.strip_prefix(topdir).ok()?.to_path_buf();
            Some((m.source, rel))
        })
        .collect())
}

/// mergerepo_c reads the blocklist as package names, one a line; anything that looks like a
/// path is not a package name and is refused.
fn check_blocklist(text: &str) -> Result<()> {
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let bad = line.contains('/')
            || line == "."
            || line == ".."
            || line.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(Error::Repo(format!(
                "blocklist entry {line:?} rejected: not a package name"
            )));
        }
    }
    Ok(())
}

/// Drops exact duplicates and mounts already covered by a read-only ancestor mount of the same
/// host tree; refuses two different host paths at one container path. Sorting by container path
/// (component-wise) puts every ancestor right before its descendants.
fn prune_mounts(mut mounts: Vec<VolumeMount>) -> Result<Vec<VolumeMount>> {
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    let mut kept: Vec<VolumeMount> = Vec::new();
    for mount in mounts {
        if let Some(other) = kept
            .iter()
            .find(|k| k.target == mount.target && k.source != mount.source)
        {
            return Err(Error::Repo(format!(
                "{} and {} would both be mounted at {}",
                other.source.display(),
                mount.source.display(),
                mount.target.display()
            )));
        }
        let covered = kept.iter().any(|k| {
            mount
                .target
                .strip_prefix(&k.target)
                .is_ok_and(|rel| k.source.join(rel) == mount.source)
        });
        if !covered {
            kept.push(mount);
        }
    }
    Ok(kept)
}

/// The work dir is the only writable mount: it must not nest with a read-only one, and must not
/// hold a previous attempt's output (kojid's `copytree` and rename would fail on it).
fn check_work_dir(work_dir: &Path, repo_id: u64, mounts: &[VolumeMount]) -> Result<()> {
    for mount in mounts {
        if work_dir.starts_with(&mount.target) || mount.target.starts_with(work_dir) {
            return Err(Error::invalid(format!(
                "work_dir {} overlaps the read-only mount {}",
                work_dir.display(),
                mount.target.display()
            )));
        }
    }
    if work_dir.exists() && !work_dir.is_dir() {
        return Err(Error::invalid(format!(
            "work_dir {} is not a directory",
            work_dir.display()
        )));
    }
    for name in ["repo".to_string(), format!("repo_{repo_id}_premerge")] {
        let path = work_dir.join(name);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Error::Repo(format!(
                "{} already exists; the work dir must be fresh",
                path.display()
            )));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// plan

/// The steps kojid's `CreaterepoTask.handler` performs, in its order:
/// `create_local_repo` (copy old repodata, createrepo_c), then `merge_repos` when the tag has
/// external repos, else the EMPTY_REPO marker when the pkglist is empty. `mergerepo_c` is the
/// version of the mergerepo_c that will merge (`None`: unknown), which decides its flags as
/// in kojid; a `simple` merge needs 0.13.0 and fails with kojid's message otherwise.
pub fn plan(repo: &ValidatedRepo, mergerepo_c: Option<MergerepoVersion>) -> Result<CreaterepoPlan> {
    let out_dir = repo.out_dir();
    let repodata_dir = out_dir.join("repodata");
    let mut steps = vec![Action::CreateDir {
        path: out_dir.clone(),
    }];
    if let Some(old) = &repo.old_repodata {
        // Unlike kojid, EMPTY_REPO is removed too: createrepo_c --update keeps every file of
        // the old repodata that repomd.xml does not list, so an old empty repo's marker would
        // survive into a repo that has packages.
        steps.push(Action::CopyOldRepodata {
            from: old.clone(),
            to: repodata_dir.clone(),
            remove: vec![PKGORIGINS_FILE.to_string(), EMPTY_REPO_FILE.to_string()],
        });
    }
    steps.push(Action::Run(createrepo_command(repo)));
    match &repo.merge {
        Some(merge) => {
            let premerge = repo.premerge_dir();
            steps.push(Action::Rename {
                from: out_dir.clone(),
                to: premerge.clone(),
            });
            steps.push(Action::CreateDir {
                path: out_dir.clone(),
            });
            steps.push(Action::Run(mergerepo_command(
                repo,
                merge,
                &premerge,
                mergerepo_c,
            )?));
        }
        None if repo.pkglist_empty => steps.push(Action::WriteFile {
            path: repodata_dir.join(EMPTY_REPO_FILE),
            contents: EMPTY_REPO_CONTENTS.to_string(),
        }),
        None => {}
    }
    tracing::debug!(
        repo_id = repo.repo_id,
        arch = %repo.arch,
        steps = steps.len(),
        mounts = repo.mounts.len(),
        "createrepo plan"
    );
    Ok(CreaterepoPlan {
        mounts: repo.mounts.clone(),
        network_needed: repo.network_needed,
        steps,
        repodata_dir,
    })
}

fn path_arg(path: &Path) -> String {
    // validate() only accepts UTF-8 paths, so this is lossless.
    path.to_string_lossy().into_owned()
}

/// `createrepo_c --error-exit-val -vd -o OUT [-i PKGLIST] [-g COMPS] [--update [--skip-stat]]
/// DIR`, where DIR is the arch dir, or OUT itself when the pkglist is empty.
fn createrepo_command(repo: &ValidatedRepo) -> ContainerCommand {
    let out_dir = path_arg(&repo.out_dir());
    let mut argv: Vec<String> = vec![
        CREATEREPO_C.into(),
        "--error-exit-val".into(),
        "-vd".into(),
        "-o".into(),
        out_dir.clone(),
    ];
    if !repo.pkglist_empty {
        argv.extend(["-i".into(), path_arg(&repo.pkglist)]);
    }
    if let Some(groups) = &repo.groups {
        argv.extend(["-g".into(), path_arg(groups)]);
    }
    if repo.old_repodata.is_some() {
        argv.push("--update".into());
        if repo.skip_stat {
            argv.push("--skip-stat".into());
        }
    }
    argv.push(if repo.pkglist_empty {
        out_dir
    } else {
        path_arg(&repo.arch_dir)
    });
    ContainerCommand {
        argv,
        cwd: path_arg(&repo.work_dir),
        env: BTreeMap::new(),
        log_name: "createrepo.log".into(),
        failure_prefix: "failed to create repo".into(),
    }
}

/// `mergerepo_c --koji [--simple] -b BLOCKLIST` or `mergerepo_c --pkgorigins --all`, then
/// `-a ARCH -o OUT [--arch-expand] [-g COMPS] -r file://PREMERGE/ -r URL...`, with TMPDIR set
/// to the work dir. As kojid: `--arch-expand` only for mergerepo_c 0.15.11 or newer; a
/// `simple` merge needs 0.13.0 (kojid's python2 `mergerepos` fallback is gone on python3).
fn mergerepo_command(
    repo: &ValidatedRepo,
    merge: &MergeSpec,
    premerge: &Path,
    version: Option<MergerepoVersion>,
) -> Result<ContainerCommand> {
    let mut argv: Vec<String> = vec![MERGEREPO_C.into()];
    match merge.mode {
        MergeMode::Koji => argv.push("--koji".into()),
        MergeMode::Simple => {
            if version.is_none_or(|v| v < MergerepoVersion::SIMPLE) {
                return Err(Error::Repo(format!(
                    "mergerepo_c is not installed or has low version: {} (0.13.0 needed for --simple)",
                    version.map_or_else(|| "None".to_owned(), |v| v.to_string())
                )));
            }
            argv.extend(["--koji".into(), "--simple".into()])
        }
        MergeMode::Bare => argv.extend(["--pkgorigins".into(), "--all".into()]),
    }
    if merge.mode != MergeMode::Bare {
        argv.extend(["-b".into(), path_arg(&repo.blocklist)]);
    }
    argv.extend([
        "-a".into(),
        repo.arch.clone(),
        "-o".into(),
        path_arg(&repo.out_dir()),
    ]);
    if version.is_some_and(|v| v >= MergerepoVersion::ARCH_EXPAND) {
        argv.push("--arch-expand".into());
    }
    if let Some(groups) = &repo.groups {
        argv.extend(["-g".into(), path_arg(groups)]);
    }
    argv.extend(["-r".into(), format!("file://{}/", path_arg(premerge))]);
    for url in &merge.urls {
        argv.extend(["-r".into(), url.clone()]);
    }
    let work_dir = path_arg(&repo.work_dir);
    Ok(ContainerCommand {
        argv,
        cwd: work_dir.clone(),
        env: BTreeMap::from([("TMPDIR".to_string(), work_dir)]),
        log_name: "mergerepos.log".into(),
        failure_prefix: "failed to merge repos".into(),
    })
}

// ------------------------------------------------------------------------------------------
// result

/// The task result kojid returns and `repoDone` consumes: `[uploadpath, [file, ...]]`. The hub
/// joins `<workdir>/<uploadpath>/<file>`, so the upload path must be relative and the names
/// flat.
pub fn render_result(upload_path: &str, files: &[String]) -> Result<(String, Vec<String>)> {
    let bad_path = upload_path.is_empty()
        || upload_path.starts_with('/')
        || upload_path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad_path {
        return Err(Error::invalid(format!(
            "upload path {upload_path:?} must be a plain relative path"
        )));
    }
    if let Some(name) = files
        .iter()
        .find(|f| f.is_empty() || f.contains('/') || *f == "." || *f == "..")
    {
        return Err(Error::invalid(format!(
            "uploaded file name {name:?} must be a plain file name"
        )));
    }
    Ok((upload_path.to_string(), files.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fake Koji tree in a fresh temp dir, as the hub's repo_init lays it out:
    /// `<top>/repos/f40-build/7/x86_64/{pkglist,blocklist,toplink}` and `groups/comps.xml`.
    struct Koji {
        root: PathBuf,
        top: PathBuf,
        repo_dir: PathBuf,
        arch_dir: PathBuf,
        work: PathBuf,
    }

    impl Drop for Koji {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    impl Koji {
        fn new() -> Koji {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let root =
                std::env::temp_dir().join(format!("adj-createrepo-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            let top = root.join("koji");
            let repo_dir = top.join("repos/f40-build/7");
            let arch_dir = repo_dir.join("x86_64");
            fs::create_dir_all(&arch_dir).unwrap();
            fs::create_dir_all(top.join("packages")).unwrap();
            symlink("../../../..", arch_dir.join("toplink")).unwrap();
            fs::write(arch_dir.join("pkglist"), "").unwrap();
            fs::write(arch_dir.join("blocklist"), "").unwrap();
            Koji {
                work: root.join("work/tasks/1234/11234"),
                root,
                top,
                repo_dir,
                arch_dir,
            }
        }

        /// Adds rpm files under the topdir and lists them in the pkglist.
        fn with_packages(self, rels: &[&str]) -> Koji {
            let mut list = String::new();
            for rel in rels {
                let path = self.top.join(rel);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, b"rpm").unwrap();
                list.push_str(&format!("toplink/{rel}\n"));
            }
            self.pkglist(&list)
        }

        fn pkglist(self, text: &str) -> Koji {
            fs::write(self.arch_dir.join("pkglist"), text).unwrap();
            self
        }

        fn with_groups(self) -> Koji {
            fs::create_dir_all(self.repo_dir.join("groups")).unwrap();
            fs::write(self.repo_dir.join("groups/comps.xml"), "<comps/>").unwrap();
            self
        }

        fn request(&self) -> CreaterepoRequest {
            CreaterepoRequest {
                repo_dir: self.repo_dir.clone(),
                work_dir: self.work.clone(),
                arch: "x86_64".into(),
                topdir: Some(self.top.clone()),
                groups: None,
                pkglist: None,
                old_repodata: None,
                update: false,
                skip_stat: false,
                external_repos: Vec::new(),
            }
        }

        fn plan(&self, req: &CreaterepoRequest) -> CreaterepoPlan {
            plan(&validate(req).unwrap(), Some(MergerepoVersion(0, 17, 3))).unwrap()
        }

        fn s(&self, path: impl AsRef<Path>) -> String {
            path.as_ref().to_str().unwrap().to_string()
        }
    }

    const FOO: &str = "packages/foo/1.0/1.fc40/x86_64/foo-1.0-1.fc40.x86_64.rpm";
    const FOO_NOARCH: &str = "packages/foo/1.0/1.fc40/noarch/foo-doc-1.0-1.fc40.noarch.rpm";
    const BAR: &str = "packages/bar/2/3/x86_64/bar-2-3.x86_64.rpm";

    fn repo(name: &str, url: &str, mode: MergeMode) -> ExternalRepo {
        ExternalRepo {
            name: name.into(),
            url: url.into(),
            merge_mode: mode,
            arches: None,
        }
    }

    fn argv(plan: &CreaterepoPlan) -> Vec<Vec<String>> {
        plan.commands().map(|c| c.argv.clone()).collect()
    }

    fn repo_err(result: Result<ValidatedRepo>) -> String {
        match result {
            Err(Error::Repo(message)) => message,
            other => panic!("expected Error::Repo, got {other:?}"),
        }
    }

    fn spec_err(result: Result<ValidatedRepo>) -> String {
        match result {
            Err(Error::InvalidSpec(message)) => message,
            other => panic!("expected Error::InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn empty_pkglist_runs_createrepo_on_the_out_dir_and_marks_empty() {
        let k = Koji::new();
        let plan = k.plan(&k.request());
        let out = k.s(k.work.join("repo"));
        assert_eq!(
            argv(&plan),
            vec![vec![
                CREATEREPO_C.to_string(),
                "--error-exit-val".into(),
                "-vd".into(),
                "-o".into(),
                out.clone(),
                out.clone(),
            ]]
        );
        let marker = k.work.join("repo/repodata/EMPTY_REPO");
        assert_eq!(plan.empty_repo_marker(), Some(marker.as_path()));
        assert_eq!(
            plan.steps.last(),
            Some(&Action::WriteFile {
                path: marker,
                contents: "This repo is empty because its tag has no content for this arch\n"
                    .into()
            })
        );
        assert_eq!(
            plan.steps.first(),
            Some(&Action::CreateDir {
                path: k.work.join("repo")
            })
        );
        assert_eq!(plan.repodata_dir, k.work.join("repo/repodata"));
        assert!(!plan.network_needed);
        let cmd = plan.commands().next().unwrap();
        assert_eq!(cmd.log_name, "createrepo.log");
        assert_eq!(cmd.cwd, k.s(&k.work));
    }

    #[test]
    fn pkglist_is_passed_and_the_arch_dir_is_the_input() {
        let k = Koji::new().with_packages(&[FOO, BAR]);
        let plan = k.plan(&k.request());
        assert_eq!(
            argv(&plan),
            vec![vec![
                CREATEREPO_C.to_string(),
                "--error-exit-val".into(),
                "-vd".into(),
                "-o".into(),
                k.s(k.work.join("repo")),
                "-i".into(),
                k.s(k.arch_dir.join("pkglist")),
                k.s(&k.arch_dir),
            ]]
        );
        assert_eq!(plan.empty_repo_marker(), None);
        assert_eq!(plan.steps.len(), 2, "{:?}", plan.steps);
    }

    #[test]
    fn an_explicit_pkglist_elsewhere_is_mounted_and_read_relative_to_the_arch_dir() {
        let k = Koji::new().with_packages(&[FOO]);
        let custom = k.root.join("lists/pkglist");
        fs::create_dir_all(custom.parent().unwrap()).unwrap();
        fs::write(&custom, format!("toplink/{BAR}\n")).unwrap();
        let mut req = k.request();
        req.pkglist = Some(custom.clone());
        // Validation reads the explicit list, not the arch dir's one.
        assert!(repo_err(validate(&req)).contains(BAR));
        fs::create_dir_all(k.top.join(BAR).parent().unwrap()).unwrap();
        fs::write(k.top.join(BAR), "rpm").unwrap();
        let plan = k.plan(&req);
        let first = &argv(&plan)[0];
        assert_eq!(
            first[5..],
            ["-i".to_string(), k.s(&custom), k.s(&k.arch_dir)]
        );
        assert!(plan
            .mounts
            .iter()
            .any(|m| m.target == custom && m.read_only));
        assert!(!plan
            .mounts
            .iter()
            .any(|m| m.target == k.top.join("packages/foo/1.0/1.fc40/x86_64")));
    }

    #[test]
    fn a_pkglist_of_blank_lines_is_not_empty_for_kojid() {
        // kojid tests os.path.getsize(pkglist) == 0, nothing else.
        let k = Koji::new().pkglist("\n");
        let plan = k.plan(&k.request());
        let first = &argv(&plan)[0];
        assert!(first.contains(&"-i".to_string()));
        assert_eq!(plan.empty_repo_marker(), None);
    }

    #[test]
    fn groups_file_is_used_when_present() {
        let k = Koji::new().with_packages(&[FOO]).with_groups();
        let plan = k.plan(&k.request());
        let comps = k.repo_dir.join("groups/comps.xml");
        let first = &argv(&plan)[0];
        let g = first.iter().position(|a| a == "-g").unwrap();
        assert_eq!(first[g + 1], k.s(&comps));
        assert_eq!(g, 7, "-g comes after -i: {first:?}");
        assert!(plan.mounts.iter().any(|m| m.target == comps && m.read_only));
    }

    #[test]
    fn explicit_groups_file_must_exist() {
        let k = Koji::new();
        let mut req = k.request();
        req.groups = Some(k.root.join("nope/comps.xml"));
        assert!(repo_err(validate(&req)).contains("groups file missing"));
    }

    fn old_repodata(k: &Koji, files: &[&str]) -> PathBuf {
        let old = k.top.join("repos/f40-build/6/x86_64/repodata");
        fs::create_dir_all(&old).unwrap();
        for f in files {
            fs::write(old.join(f), "x").unwrap();
        }
        old
    }

    #[test]
    fn update_copies_old_repodata_minus_origins_and_stale_empty_marker() {
        let k = Koji::new().with_packages(&[FOO]);
        let old = old_repodata(&k, &["repomd.xml", "EMPTY_REPO", "pkgorigins.gz"]);
        let mut req = k.request();
        req.old_repodata = Some(old.clone());
        req.update = true;
        req.skip_stat = true;
        let plan = k.plan(&req);
        let repodata = k.work.join("repo/repodata");
        let (from, to, remove) = plan.old_repodata_copy().unwrap();
        assert_eq!((from, to), (old.as_path(), repodata.as_path()));
        assert!(remove.contains(&"EMPTY_REPO".to_string()));
        assert!(remove.contains(&"pkgorigins.gz".to_string()));
        // The copy happens before createrepo_c runs.
        assert!(matches!(plan.steps[1], Action::CopyOldRepodata { .. }));
        assert!(matches!(plan.steps[2], Action::Run(_)));
        let first = &argv(&plan)[0];
        assert_eq!(
            first[first.len() - 3..],
            [
                "--update".to_string(),
                "--skip-stat".into(),
                k.s(&k.arch_dir)
            ]
        );
        assert_eq!(plan.empty_repo_marker(), None);
        // The old repodata is copied on the host, never mounted.
        assert!(!plan.mounts.iter().any(|m| m.source.starts_with(&old)));
    }

    #[test]
    fn skip_stat_needs_update_and_update_needs_packages_and_old_data() {
        let k = Koji::new().with_packages(&[FOO]);
        let old = old_repodata(&k, &["repomd.xml"]);

        let mut req = k.request();
        req.old_repodata = Some(old.clone());
        req.skip_stat = true;
        let plan = k.plan(&req);
        assert!(!argv(&plan)[0]
            .iter()
            .any(|a| a.starts_with("--") && a != "--error-exit-val"));
        assert!(plan.old_repodata_copy().is_none());

        req.update = true;
        req.old_repodata = Some(k.root.join("gone/repodata"));
        let plan = k.plan(&req);
        assert!(!argv(&plan)[0].contains(&"--update".to_string()));
        assert!(plan.old_repodata_copy().is_none());

        req.update = true;
        req.skip_stat = false;
        req.old_repodata = Some(old);
        let plan = k.plan(&req);
        assert!(argv(&plan)[0].contains(&"--update".to_string()));
        assert!(!argv(&plan)[0].contains(&"--skip-stat".to_string()));
    }

    #[test]
    fn update_is_not_used_for_an_empty_pkglist() {
        let k = Koji::new();
        let old = old_repodata(&k, &["repomd.xml"]);
        let mut req = k.request();
        req.old_repodata = Some(old);
        req.update = true;
        let plan = k.plan(&req);
        assert!(!argv(&plan)[0].contains(&"--update".to_string()));
        assert!(plan.old_repodata_copy().is_none());
        assert!(plan.empty_repo_marker().is_some());
    }

    #[test]
    fn koji_merge_matches_kojid() {
        let k = Koji::new().with_packages(&[FOO]).with_groups();
        let mut req = k.request();
        let mut other = repo("other", "http://example.com/ppc/$arch/", MergeMode::Koji);
        other.arches = Some(vec!["ppc64le".into()]);
        let mut mine = repo("mine", "https://example.com/$arch/os/", MergeMode::Koji);
        mine.arches = Some(vec!["aarch64".into(), "x86_64".into()]);
        req.external_repos = vec![
            repo("fedora", "http://example.com/f40/$arch/", MergeMode::Koji),
            other,
            mine,
        ];
        let plan = k.plan(&req);
        let out = k.work.join("repo");
        let premerge = k.work.join("repo_7_premerge");
        assert_eq!(
            plan.steps[2..4],
            [
                Action::Rename {
                    from: out.clone(),
                    to: premerge.clone()
                },
                Action::CreateDir { path: out.clone() },
            ]
        );
        let merge = plan.commands().nth(1).unwrap();
        assert_eq!(
            merge.argv,
            vec![
                MERGEREPO_C.to_string(),
                "--koji".into(),
                "-b".into(),
                k.s(k.arch_dir.join("blocklist")),
                "-a".into(),
                "x86_64".into(),
                "-o".into(),
                k.s(&out),
                "--arch-expand".into(),
                "-g".into(),
                k.s(k.repo_dir.join("groups/comps.xml")),
                "-r".into(),
                format!("file://{}/", k.s(&premerge)),
                "-r".into(),
                "http://example.com/f40/x86_64/".into(),
                "-r".into(),
                "https://example.com/x86_64/os/".into(),
            ]
        );
        assert_eq!(merge.env.get("TMPDIR"), Some(&k.s(&k.work)));
        assert_eq!(merge.log_name, "mergerepos.log");
        assert!(plan.network_needed);
        assert_eq!(plan.empty_repo_marker(), None);
    }

    #[test]
    fn simple_and_bare_merge_flags() {
        let k = Koji::new().with_packages(&[FOO]);
        let mut req = k.request();
        req.external_repos = vec![repo("e", "http://example.com/r/", MergeMode::Simple)];
        let merge = argv(&k.plan(&req))[1].clone();
        assert_eq!(
            merge[..5],
            [
                MERGEREPO_C,
                "--koji",
                "--simple",
                "-b",
                &k.s(k.arch_dir.join("blocklist"))
            ]
        );

        req.external_repos = vec![repo("e", "http://example.com/r/", MergeMode::Bare)];
        let merge = argv(&k.plan(&req))[1].clone();
        assert_eq!(merge[..4], [MERGEREPO_C, "--pkgorigins", "--all", "-a"]);
        assert!(!merge.contains(&"-b".to_string()));
    }

    #[test]
    fn mergerepo_c_versions_read_as_kojid_reads_them() {
        let parse = MergerepoVersion::parse;
        assert_eq!(
            parse("Version: 0.15.11 (Features: DeltaRPM LegacyWeakdeps )\n"),
            Some(MergerepoVersion(0, 15, 11))
        );
        assert_eq!(parse("  Version: 1.2.3"), Some(MergerepoVersion(1, 2, 3)));
        assert_eq!(parse("Version: 0.17.3-1"), Some(MergerepoVersion(0, 17, 3)));
        for bad in [
            "",
            "mergerepo_c 0.15.11",
            "Version: 0.15",
            "Version: x.y.z",
            "Version:0.1.2",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(MergerepoVersion(0, 15, 10) < MergerepoVersion::ARCH_EXPAND);
        assert!(MergerepoVersion(1, 0, 0) > MergerepoVersion::ARCH_EXPAND);
        assert_eq!(MergerepoVersion(0, 13, 0).to_string(), "0.13.0");
    }

    #[test]
    fn the_merge_flags_follow_the_images_mergerepo_c_as_in_kojid() {
        let k = Koji::new().with_packages(&[FOO]);
        let mut req = k.request();
        let merge_argv = |req: &CreaterepoRequest, version| {
            argv(&plan(&validate(req).unwrap(), version).unwrap())[1].clone()
        };
        req.external_repos = vec![repo("e", "http://example.com/r/", MergeMode::Koji)];
        let expand = "--arch-expand".to_string();
        assert!(merge_argv(&req, Some(MergerepoVersion::ARCH_EXPAND)).contains(&expand));
        assert!(!merge_argv(&req, Some(MergerepoVersion(0, 15, 10))).contains(&expand));
        // Unknown (mergerepo_c --version failed): plain --koji, as kojid.
        let unknown = merge_argv(&req, None);
        assert_eq!(unknown[..2], [MERGEREPO_C, "--koji"]);
        assert!(!unknown.contains(&expand));
        req.external_repos = vec![repo("e", "http://example.com/r/", MergeMode::Bare)];
        assert!(!merge_argv(&req, Some(MergerepoVersion(0, 14, 0))).contains(&expand));

        // simple needs 0.13.0; below, or unknown, kojid's failure.
        req.external_repos = vec![repo("e", "http://example.com/r/", MergeMode::Simple)];
        assert!(merge_argv(&req, Some(MergerepoVersion::SIMPLE)).contains(&"--simple".to_string()));
        let repo = validate(&req).unwrap();
        for (version, shown) in [(Some(MergerepoVersion(0, 12, 9)), "0.12.9"), (None, "None")] {
            let err = plan(&repo, version).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "mergerepo_c is not installed or has low version: {shown} (0.13.0 needed for --simple)"
                )
            );
            assert!(matches!(err, Error::Repo(_)));
        }
        // Without external repos the version does not matter.
        req.external_repos.clear();
        assert!(plan(&validate(&req).unwrap(), None).is_ok());
        assert!(!validate(&req).unwrap().merges());
    }

    #[test]
    fn mixed_merge_modes_are_refused() {
        let k = Koji::new();
        let mut req = k.request();
        req.external_repos = vec![
            repo("a", "http://example.com/a/", MergeMode::Koji),
            repo("b", "http://example.com/b/", MergeMode::Bare),
        ];
        assert!(spec_err(validate(&req)).contains("multiple merge modes"));
    }

    #[test]
    fn empty_pkglist_with_external_repos_merges_without_marker() {
        let k = Koji::new();
        let mut req = k.request();
        // Even when no external repo applies to this arch, kojid still merges.
        let mut ppc = repo("ppc", "http://example.com/ppc/", MergeMode::Koji);
        ppc.arches = Some(vec!["ppc64le".into()]);
        req.external_repos = vec![ppc];
        let plan = k.plan(&req);
        assert_eq!(plan.empty_repo_marker(), None);
        assert_eq!(plan.commands().count(), 2);
        assert!(!plan.network_needed, "the only http repo does not apply");
    }

    #[test]
    fn file_external_repo_mounts_only_its_repodata_without_network() {
        let k = Koji::new();
        let ext = k.root.join("ext/x86_64");
        fs::create_dir_all(ext.join("repodata")).unwrap();
        fs::write(ext.join("secret"), "x").unwrap();
        let mut req = k.request();
        req.external_repos = vec![repo(
            "local",
            &format!("file://{}/$arch/", k.s(k.root.join("ext"))),
            MergeMode::Koji,
        )];
        let plan = k.plan(&req);
        assert!(!plan.network_needed);
        let repodata = ext.join("repodata");
        assert!(plan
            .mounts
            .iter()
            .any(|m| m.target == repodata && m.read_only));
        assert!(!plan.mounts.iter().any(|m| m.target == ext));
        assert!(argv(&plan)[1].contains(&format!("file://{}/", k.s(&ext))));
    }

    #[test]
    fn external_urls_must_be_http_or_file() {
        let k = Koji::new();
        for url in [
            "ftp://example.com/r/",
            "example.com/r/",
            "http:///r",
            "file://host/r/",
            "file:///srv/../etc/",
            "file:///etc/yum.repos.d/",
            "http://example.com/a b/",
        ] {
            let mut req = k.request();
            req.external_repos = vec![repo("x", url, MergeMode::Koji)];
            let message = spec_err(validate(&req));
            assert!(message.contains(url), "{message}");
        }
        let mut req = k.request();
        req.external_repos = vec![repo("x", "file:///srv/none-such-adj/", MergeMode::Koji)];
        assert!(repo_err(validate(&req)).contains("not a directory"));
    }

    #[test]
    fn missing_repos_dir_repo_dir_and_arch_dir_are_told_apart() {
        let k = Koji::new();
        let mut req = k.request();
        req.arch = "aarch64".into();
        let arch_missing = repo_err(validate(&req));
        assert!(arch_missing.starts_with("Repo directory missing: "));
        assert!(arch_missing.contains("aarch64"));
        assert!(
            arch_missing.contains("arches present: x86_64"),
            "{arch_missing}"
        );

        let mut req = k.request();
        req.repo_dir = k.top.join("repos/f40-build/8");
        let repo_missing = repo_err(validate(&req));
        assert_eq!(
            repo_missing,
            format!(
                "Repo directory missing: {}",
                k.s(k.top.join("repos/f40-build/8"))
            )
        );

        fs::rename(k.top.join("repos"), k.top.join("repos.off")).unwrap();
        let err = validate(&k.request()).unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("No access to repos dir {}", k.s(k.top.join("repos")))
        );
    }

    #[test]
    fn pkglist_must_exist() {
        let k = Koji::new();
        fs::remove_file(k.arch_dir.join("pkglist")).unwrap();
        assert!(repo_err(validate(&k.request())).starts_with("pkglist missing"));
    }

    #[test]
    fn toplink_must_be_a_symlink_to_the_topdir() {
        let k = Koji::new();
        let toplink = k.arch_dir.join("toplink");
        fs::remove_file(&toplink).unwrap();
        assert!(repo_err(validate(&k.request())).starts_with("toplink missing"));

        fs::create_dir(&toplink).unwrap();
        assert!(repo_err(validate(&k.request())).contains("is not a symlink"));
        fs::remove_dir(&toplink).unwrap();

        symlink("../../..", &toplink).unwrap();
        assert!(repo_err(validate(&k.request())).contains("does not lead to the topdir"));
        fs::remove_file(&toplink).unwrap();

        // Right on the host, but absolute through another path: wrong in the container.
        let alias = k.root.join("alias");
        symlink(&k.top, &alias).unwrap();
        symlink(&alias, &toplink).unwrap();
        assert!(repo_err(validate(&k.request())).contains("does not lead to the topdir"));
    }

    #[test]
    fn traversal_in_pkglist_is_rejected_naming_the_entry() {
        for entry in [
            "toplink/../../etc/passwd",
            "/etc/passwd",
            "toplink/packages/../../../../../etc/passwd",
            "toplink/packages/./foo/x.rpm",
            "toplink//packages/foo/1/x.rpm",
            "packages/foo/1/1/x86_64/foo.rpm",
            "toplink/repos/f40-build/7/x86_64/pkglist",
            "toplink/packages/foo.rpm",
        ] {
            let k = Koji::new().pkglist(&format!("{entry}\n"));
            let message = repo_err(validate(&k.request()));
            assert!(message.contains(&format!("{entry:?}")), "{message}");
        }
    }

    #[test]
    fn symlinks_escaping_the_packages_dir_are_rejected() {
        // A directory symlink to /etc.
        let k = Koji::new();
        fs::create_dir_all(k.top.join("packages/evil/1/1")).unwrap();
        symlink("/etc", k.top.join("packages/evil/1/1/x86_64")).unwrap();
        let k = k.pkglist("toplink/packages/evil/1/1/x86_64/passwd\n");
        let message = repo_err(validate(&k.request()));
        assert!(message.contains("\"toplink/packages/evil/1/1/x86_64/passwd\""));
        assert!(message.contains("outside"), "{message}");

        // A file symlink to a file outside the topdir.
        let k = Koji::new();
        let dir = k.top.join("packages/evil/1/1/x86_64");
        fs::create_dir_all(&dir).unwrap();
        fs::write(k.root.join("secret"), "s").unwrap();
        symlink(k.root.join("secret"), dir.join("evil.rpm")).unwrap();
        let k = k.pkglist("toplink/packages/evil/1/1/x86_64/evil.rpm\n");
        let message = repo_err(validate(&k.request()));
        assert!(
            message.contains("evil.rpm") && message.contains("outside"),
            "{message}"
        );

        // A file symlink to another package's directory: it would not resolve in the container.
        let k = Koji::new().with_packages(&[BAR]);
        let dir = k.top.join("packages/evil/1/1/x86_64");
        fs::create_dir_all(&dir).unwrap();
        symlink(k.top.join(BAR), dir.join("evil.rpm")).unwrap();
        let k = k.pkglist("toplink/packages/evil/1/1/x86_64/evil.rpm\n");
        let message = repo_err(validate(&k.request()));
        assert!(
            message.contains("symlink out of its directory"),
            "{message}"
        );
    }

    #[test]
    fn missing_package_file_is_reported() {
        let k = Koji::new().pkglist(&format!("toplink/{FOO}\n"));
        let message = repo_err(validate(&k.request()));
        assert!(
            message.contains(FOO) && message.contains("cannot resolve"),
            "{message}"
        );
    }

    #[test]
    fn blocklist_entries_must_be_package_names() {
        for entry in ["../../etc/passwd", "/etc/passwd", "..", "a b"] {
            let k = Koji::new();
            fs::write(k.arch_dir.join("blocklist"), format!("kernel\n{entry}\n")).unwrap();
            let message = repo_err(validate(&k.request()));
            assert!(message.contains(&format!("{entry:?}")), "{message}");
        }
        let k = Koji::new();
        fs::write(
            k.arch_dir.join("blocklist"),
            "kernel\nfoo-devel\nlib.so+x\n",
        )
        .unwrap();
        validate(&k.request()).unwrap();
    }

    #[test]
    fn koji_merge_needs_a_blocklist_but_bare_does_not() {
        let k = Koji::new();
        fs::remove_file(k.arch_dir.join("blocklist")).unwrap();
        let mut req = k.request();
        validate(&req).unwrap();
        req.external_repos = vec![repo("e", "http://example.com/r/", MergeMode::Bare)];
        validate(&req).unwrap();
        req.external_repos = vec![repo("e", "http://example.com/r/", MergeMode::Koji)];
        assert!(repo_err(validate(&req)).starts_with("blocklist missing"));
    }

    #[test]
    fn mounts_are_minimal_and_read_only_except_the_work_dir() {
        let k = Koji::new()
            .with_packages(&[FOO, FOO_NOARCH, BAR])
            .with_groups();
        // Siblings that must stay invisible.
        fs::create_dir_all(k.top.join("packages/foo/1.0/1.fc40/data/signed")).unwrap();
        fs::create_dir_all(k.top.join("work")).unwrap();
        let plan = k.plan(&k.request());
        let top = fs::canonicalize(&k.top).unwrap();
        let mut expected = vec![
            (
                k.top.join("packages/bar/2/3/x86_64"),
                top.join("packages/bar/2/3/x86_64"),
                true,
            ),
            (
                k.top.join("packages/foo/1.0/1.fc40/noarch"),
                top.join("packages/foo/1.0/1.fc40/noarch"),
                true,
            ),
            (
                k.top.join("packages/foo/1.0/1.fc40/x86_64"),
                top.join("packages/foo/1.0/1.fc40/x86_64"),
                true,
            ),
            (
                k.repo_dir.join("groups/comps.xml"),
                top.join("repos/f40-build/7/groups/comps.xml"),
                true,
            ),
            (
                k.arch_dir.clone(),
                top.join("repos/f40-build/7/x86_64"),
                true,
            ),
            (k.work.clone(), k.work.clone(), false),
        ];
        expected.sort();
        let mut got: Vec<_> = plan
            .mounts
            .iter()
            .map(|m| (m.target.clone(), m.source.clone(), m.read_only))
            .collect();
        got.sort();
        assert_eq!(got, expected);
        assert!(!plan
            .mounts
            .iter()
            .any(|m| m.target == k.top || m.target == k.top.join("packages")));
        assert!(!plan.network_needed);
    }

    #[test]
    fn too_many_package_dirs_collapse_to_the_packages_root() {
        let k = Koji::new().with_packages(&[FOO, FOO_NOARCH, BAR]);
        let entries: Vec<String> = [FOO, FOO_NOARCH, BAR]
            .iter()
            .map(|e| format!("toplink/{e}"))
            .collect();
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        assert_eq!(package_mounts(&k.top, &entries, 3).unwrap().len(), 3);
        let collapsed = package_mounts(&k.top, &entries, 2).unwrap();
        assert_eq!(
            collapsed,
            vec![VolumeMount {
                source: fs::canonicalize(k.top.join("packages")).unwrap(),
                target: k.top.join("packages"),
                read_only: true,
                selinux_label: None,
            }]
        );
    }

    #[test]
    fn volumes_may_live_elsewhere_and_are_mounted_at_their_topdir_path() {
        let k = Koji::new();
        let volume = k.root.join("kojivol/archive");
        let rpm_dir = volume.join("packages/baz/1/1/x86_64");
        fs::create_dir_all(&rpm_dir).unwrap();
        fs::write(rpm_dir.join("baz-1-1.x86_64.rpm"), "rpm").unwrap();
        fs::create_dir_all(k.top.join("vol")).unwrap();
        symlink(&volume, k.top.join("vol/archive")).unwrap();
        let k = k.pkglist("toplink/vol/archive/packages/baz/1/1/x86_64/baz-1-1.x86_64.rpm\n");
        let plan = k.plan(&k.request());
        assert!(plan.mounts.contains(&VolumeMount {
            source: fs::canonicalize(&rpm_dir).unwrap(),
            target: k.top.join("vol/archive/packages/baz/1/1/x86_64"),
            read_only: true,
            selinux_label: None,
        }));
    }

    #[test]
    fn bad_arguments_are_invalid_spec() {
        let k = Koji::new();
        for arch in ["", "../x86_64", "x86_64 ", "groups", "x86-64;rm"] {
            let mut req = k.request();
            req.arch = arch.into();
            assert!(spec_err(validate(&req)).contains("invalid repo arch"));
        }
        let mut req = k.request();
        req.work_dir = "relative/work".into();
        assert!(spec_err(validate(&req)).contains("work_dir"));
        let mut req = k.request();
        req.repo_dir = k.top.join("elsewhere/f40-build/7");
        assert!(spec_err(validate(&req)).contains("<topdir>/repos/<tag>/<repo_id>"));
        let mut req = k.request();
        req.repo_dir = k.top.join("repos/f40-build/latest");
        spec_err(validate(&req));
        let mut req = k.request();
        req.work_dir = k.arch_dir.join("work");
        assert!(spec_err(validate(&req)).contains("overlaps"));
        let mut req = k.request();
        req.work_dir = "/usr/tmp/work".into();
        assert!(spec_err(validate(&req)).contains("system directory"));
    }

    #[test]
    fn topdir_is_inferred_and_tags_may_contain_slashes() {
        let k = Koji::new();
        let mut req = k.request();
        req.topdir = None;
        let repo = validate(&req).unwrap();
        assert_eq!(
            (repo.topdir.as_path(), repo.tag.as_str(), repo.repo_id),
            (k.top.as_path(), "f40-build", 7)
        );

        let deep = k.top.join("repos/team/f40-build/9/x86_64");
        fs::create_dir_all(&deep).unwrap();
        symlink("../../../../..", deep.join("toplink")).unwrap();
        fs::write(deep.join("pkglist"), "").unwrap();
        let mut req = k.request();
        req.repo_dir = k.top.join("repos/team/f40-build/9");
        let repo = validate(&req).unwrap();
        assert_eq!((repo.tag.as_str(), repo.repo_id), ("team/f40-build", 9));
        req.topdir = None;
        assert!(spec_err(validate(&req)).contains("pass topdir"));
    }

    #[test]
    fn a_previous_attempts_output_is_refused() {
        let k = Koji::new();
        fs::create_dir_all(k.work.join("repo")).unwrap();
        assert!(repo_err(validate(&k.request())).contains("must be fresh"));
    }

    #[test]
    fn failure_message_is_kojids() {
        // The wrapping of koji's own test data (tests/test_www/data/pages_calls.json).
        let argv: Vec<String> = [
            "/usr/bin/mergerepo_c",
            "--koji",
            "-b",
            "/mnt/koji/repos/test-rhel-7-build/2542/x86_64/blocklist",
            "-a",
            "x86_64",
            "-o",
            "/scratch/kojitest/tasks/4153/14153/repo",
            "--arch-expand",
            "-g",
            "/mnt/koji/repos/test-rhel-7-build/2542/groups/comps.xml",
            "-r",
            "file:///scratch/kojitest/tasks/4153/14153/repo_2542_premerge/",
            "-r",
            "http://download.example.com/koji/repos/test-7E-build/latest/x86_64/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let command = ContainerCommand {
            argv,
            cwd: "/".into(),
            env: BTreeMap::new(),
            log_name: "mergerepos.log".into(),
            failure_prefix: "failed to merge repos".into(),
        };
        assert_eq!(
            command.failure_message(CommandOutcome::Signaled(2)),
            "failed to merge repos: /usr/bin/mergerepo_c --koji -b \\\n\
             /mnt/koji/repos/test-rhel-7-build/2542/x86_64/blocklist -a x86_64 -o \\\n\
             /scratch/kojitest/tasks/4153/14153/repo --arch-expand -g \\\n\
             /mnt/koji/repos/test-rhel-7-build/2542/groups/comps.xml -r \\\n\
             file:///scratch/kojitest/tasks/4153/14153/repo_2542_premerge/ -r \\\n\
             http://download.example.com/koji/repos/test-7E-build/latest/x86_64/ \
             was killed by signal 2"
        );
        assert!(command
            .failure_message(CommandOutcome::Exited(1))
            .ends_with("/x86_64/ exited with status 1"));
    }

    #[test]
    fn plan_reproduces_kojids_merge_command_for_its_own_layout() {
        // Same argv shape as the kojid command above, built from a fake layout.
        let k = Koji::new().with_packages(&[FOO]).with_groups();
        let mut req = k.request();
        req.external_repos = vec![repo(
            "rhel",
            "http://download.example.com/koji/repos/test-7E-build/latest/$arch/",
            MergeMode::Koji,
        )];
        let merge = argv(&k.plan(&req))[1].clone();
        let shape: Vec<&str> = merge
            .iter()
            .map(|a| {
                if a.starts_with('/') || a.starts_with("file://") {
                    "PATH"
                } else {
                    a.as_str()
                }
            })
            .collect();
        assert_eq!(
            shape,
            [
                "PATH",
                "--koji",
                "-b",
                "PATH",
                "-a",
                "x86_64",
                "-o",
                "PATH",
                "--arch-expand",
                "-g",
                "PATH",
                "-r",
                "PATH",
                "-r",
                "http://download.example.com/koji/repos/test-7E-build/latest/x86_64/",
            ]
        );
    }

    #[test]
    fn result_is_kojids_pair() {
        let files = vec!["repomd.xml".to_string(), "EMPTY_REPO".to_string()];
        assert_eq!(crate::core::task::upload_path(11234), "tasks/1234/11234");
        assert_eq!(
            render_result("tasks/1234/11234", &files).unwrap(),
            ("tasks/1234/11234".to_string(), files.clone())
        );
        assert!(render_result("/tasks/1", &files).is_err());
        assert!(render_result("tasks/../x", &files).is_err());
        assert!(render_result("tasks/1", &["a/b".to_string()]).is_err());
    }

    #[test]
    fn hub_external_repo_entries_map_to_external_repos() {
        let value = serde_json::json!([
            {"external_repo_id": 3, "external_repo_name": "fedora", "priority": 5, "tag_id": 2,
             "tag_name": "f40-build", "url": "https://example.com/f40/$arch/",
             "merge_mode": "simple", "arches": "x86_64 aarch64"},
            {"external_repo_name": "other", "url": "http://example.com/", "merge_mode": null,
             "arches": ""},
            {"url": "http://example.com/bare/", "merge_mode": "bare", "arches": null},
        ]);
        let repos: Vec<KojiExternalRepo> = serde_json::from_value(value).unwrap();
        let repos: Vec<ExternalRepo> = repos.into_iter().map(ExternalRepo::from).collect();
        assert_eq!(repos[0].name, "fedora");
        assert_eq!(repos[0].merge_mode, MergeMode::Simple);
        assert_eq!(
            repos[0].arches,
            Some(vec!["x86_64".to_string(), "aarch64".to_string()])
        );
        assert!(repos[0].applies_to("aarch64") && !repos[0].applies_to("ppc64le"));
        assert_eq!(repos[1].merge_mode, MergeMode::Koji);
        assert!(
            repos[1].applies_to("ppc64le"),
            "empty arches apply everywhere"
        );
        assert_eq!(
            (repos[2].merge_mode, repos[2].arches.clone()),
            (MergeMode::Bare, None)
        );
        let typo = serde_json::json!({"url": "http://x/", "merge_mode": "kojii"});
        assert!(serde_json::from_value::<KojiExternalRepo>(typo).is_err());
    }

    #[test]
    fn a_failed_command_names_its_log() {
        let command = ContainerCommand {
            argv: vec![CREATEREPO_C.into(), "-o".into(), "/w/repo".into()],
            cwd: "/w".into(),
            env: BTreeMap::new(),
            log_name: "createrepo.log".into(),
            failure_prefix: "failed to create repo".into(),
        };
        match command.failed(CommandOutcome::Exited(2), "/w/createrepo.log".into(), 2) {
            Error::RepoCommand {
                message,
                log,
                exit_code,
            } => {
                assert_eq!(
                    message,
                    "failed to create repo: /usr/bin/createrepo_c -o /w/repo exited with status 2"
                );
                assert_eq!(log, Some(PathBuf::from("/w/createrepo.log")));
                assert_eq!(exit_code, Some(2));
            }
            other => panic!("expected RepoCommand, got {other:?}"),
        }
    }

    #[test]
    fn request_deserializes_with_kojis_names_and_defaults() {
        let value = serde_json::json!({
            "repo_dir": "/mnt/koji/repos/f40-build/7",
            "work_dir": "/var/tmp/koji/tasks/1234/11234",
            "arch": "x86_64",
            "external_repos": [{"name": "e", "url": "http://x/$arch/", "merge_mode": "bare"},
                               {"name": "f", "url": "http://y/"}],
        });
        let req: CreaterepoRequest = serde_json::from_value(value).unwrap();
        assert_eq!(req.external_repos[0].merge_mode, MergeMode::Bare);
        assert_eq!(req.external_repos[1].merge_mode, MergeMode::Koji);
        assert!(!req.update && req.topdir.is_none() && req.pkglist.is_none());
        let bad = serde_json::json!({"repo_dir": "/a", "work_dir": "/b", "arch": "x", "typo": 1});
        assert!(serde_json::from_value::<CreaterepoRequest>(bad).is_err());
    }
}
