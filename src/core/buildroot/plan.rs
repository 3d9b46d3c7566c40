//! The buildroot plan: every container, file and command of one buildArch task, as plain data.
//!
//! Two containers carry a task (see the module docs of `buildroot` for why):
//!
//! * the **build container** (T) has the buildroot as its root filesystem, no capabilities
//!   (an empty bounding set), no network, no-new-privileges, limits, and only the SRPM
//!   mounted (read-only). Its main process is podman's catatonit pausing as `nobody`; every
//!   step runs in it as the build user with `exec` ([`RunAs::Builder`]).
//! * the **bootstrap container** (B) runs the bootstrap image as root with the capabilities
//!   a package install needs, the Koji repo mounted read-only (or a network when the repo is a
//!   URL) and T's root filesystem bind-mounted at [`INSTALL_ROOT`]; every root step runs in it
//!   ([`RunAs::Root`]), `dnf --installroot` writing into T's root.
//!
//! Every step is wrapped by [`STEP_REAPER`]: when the command ends, every other process of the
//! step's user in that container is killed, so nothing a step started outlives it.

use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};
use crate::core::shell;
use crate::core::spec::VolumeMount;

use super::arch::{canon_arch, check_buildable, choose_noarch_arch};
use super::config::{
    build_environment, check_macro_value, dnf_conf_content, ignored_extra, macros, macros_content,
    module_setup_commands, refused_extra, repo_file_content, repo_section_name, root_environment,
    BuildConfig, BuildrootMode, BuildrootOptions, ExtraValue, RepoLocation,
};
use super::header::Package;
use super::pkglist::package_list_query;
use super::{
    BUILD_GID, BUILD_HOME, BUILD_UID, BUILD_USER, DNF_CONF_PATH, INSTALL_ROOT, KOJI_TOPDIR_MOUNT,
    MACROS_PATH, ORIGINALS_DIR, PAUSE_UID, REPOS_DIR, REPO_FILE_PATH, RPMBUILD, RPMDB_MACROS_PATH,
    SRPMS_DIR, TOPDIR,
};

/// mock's dnf4 `common_opts`, passed to every dnf call.
const DNF_COMMON_OPTS: [&str; 3] = [
    "--setopt=deltarpm=False",
    "--setopt=allow_vendor_change=yes",
    "--allowerasing",
];

/// Exit status of the SRPM rebuild step when the SRPM was rebuilt but its BuildRequires are
/// not all installed yet (rpmbuild's own dependency check said so, or could not say).
pub const REQUIRES_MISSING: i64 = 99;

/// Exit status of a step whose leftover processes did not die.
pub const LEFTOVERS_SURVIVED: i64 = 125;

/// Exit status of the rebuild-and-build step when `rpm -U` of the SRPM or `rpmbuild -bs`
/// failed (their own output is in build.log).
pub const SRPM_REBUILD_FAILED: i64 = 98;

/// Exit status of the package list query when it listed the packages but the build user can
/// write to the rpm database or a directory above it: a build could then change what a later
/// list says, so the runner lists again after the build.
pub const RPMDB_WRITABLE: i64 = 97;

/// The wrapper of every step, a `bash -c` script taking the command as its arguments: run it,
/// then SIGKILL every process of this user in the container (`kill -1` reaches all a user
/// may signal) until none but the container's init and pause processes (PID 1, uid
/// [`PAUSE_UID`]) remains, and exit with the command's status. Builtins only: nothing it runs
/// can be replaced by a file the step wrote. /proc/N/status gives the real owner even of a
/// process that made itself undumpable.
pub const STEP_REAPER: &str = r#"end() { exit "$1"; }
"$@"; rc=$?
REAP"#;

/// The reaping loop of [`STEP_REAPER`] and [`LEAD_WRAPPER`], ending with `end STATUS`.
const REAP_LOOP: &str = r#"n=0
while :; do
  kill -s KILL -1 2>/dev/null
  left=
  for p in /proc/[0-9]*; do
    [ "$p" = "/proc/$$" ] || [ "$p" = /proc/1 ] && continue
    uid=
    { while read -r k v _; do [ "$k" = Uid: ] && { uid=$v; break; }; done < "$p/status"; } 2>/dev/null
    if [ -n "$uid" ] && [ "$uid" != PAUSE ]; then left=${p#/proc/}; break; fi
  done
  [ -z "$left" ] && end "$rc"
  n=$((n + 1))
  if [ "$n" -ge 20000 ]; then
    echo "koji-adjutant: process $left of this step survived SIGKILL" >&2
    end LEFTOVERS
  fi
done"#;

/// The first word of the line by which [`LEAD_WRAPPER`] tells the runner its command ended:
/// `koji-adjutant-lead-end STATUS`, alone on the container's stdout.
pub const LEAD_END: &str = "koji-adjutant-lead-end";

/// The build container's main process in a warm build (the lead step, see
/// `Step::lead_argv`): the command runs with its stdout and stderr both on the container's
/// stderr and stdin from /dev/null; when it ends, every other process of the build user is
/// killed as [`STEP_REAPER`] does, the status goes to the container's stdout (which is
/// nothing else's), and the wrapper waits for a line on its stdin: the runner reads the
/// container's usage from its cgroup (which exists only while a process does), then sends the
/// line, and the container ends.
pub const LEAD_WRAPPER: &str = r#"end() { printf '%s %s\n' LEAD_END "$1" >&3; read -r _; exit 0; }
exec 3>&1 1>&2
"$@" </dev/null 3>&-; rc=$?
REAP"#;

/// `template` with the reaping loop and its constants filled in.
fn wrapper(template: &str) -> String {
    template
        .replace("REAP", REAP_LOOP)
        .replace("PAUSE", &PAUSE_UID.to_string())
        .replace("LEFTOVERS", &LEFTOVERS_SURVIVED.to_string())
        .replace("LEAD_END", LEAD_END)
}

/// Who a step runs as, and so in which container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// root in the bootstrap container.
    Root,
    /// [`BUILD_USER`] (uid [`BUILD_UID`], gid [`BUILD_GID`]) in the build container.
    Builder,
    /// [`BUILD_USER`] in the source container: the build container's root filesystem with
    /// a network, made for this one step and removed after it (an SRPM task's networked
    /// `source_cmd`).
    Fetcher,
    /// `nobody` ([`PAUSE_UID`], the pause process's user) in the build container, without
    /// the step reaper (whose `kill -1` would reach the pause process): for the fixed
    /// hardware report only, which runs beside the build user's steps and which none of
    /// them can signal.
    Observer,
}

impl RunAs {
    /// The `User` value of a Podman exec (`uid:gid`).
    pub fn podman_user(self) -> String {
        match self {
            RunAs::Root => "0:0".to_owned(),
            RunAs::Builder | RunAs::Fetcher => format!("{BUILD_UID}:{BUILD_GID}"),
            RunAs::Observer => format!("{PAUSE_UID}:{PAUSE_UID}"),
        }
    }
}

/// Which task log a step's output goes to (mock's root.log and build.log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    RootLog,
    BuildLog,
}

impl LogTarget {
    pub fn file_name(self) -> &'static str {
        match self {
            LogTarget::RootLog => "root.log",
            LogTarget::BuildLog => "build.log",
        }
    }
}

/// One command of the task, run with `exec` in the container its user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Short human name, for logs and error messages.
    pub name: String,
    /// The command (what the logs show); [`Step::exec_argv`] wraps it.
    pub argv: Vec<String>,
    pub user: RunAs,
    pub workdir: String,
    /// The complete environment of the exec.
    pub env: Vec<(String, String)>,
    /// Where output goes; for a query only stderr goes there (see `capture_stdout`).
    pub log: LogTarget,
    /// The runner hands stdout to the step's parser instead of the log.
    pub capture_stdout: bool,
    pub timeout_secs: Option<u64>,
    /// Exit codes that mean success.
    pub ok_exit_codes: Vec<i64>,
    /// kojid's words for this step's failure, before ", <tool> exited with status N"
    /// (`None`: the runner's own wording by the step's log).
    pub failure: Option<(String, String)>,
}

impl Step {
    /// The argv of the exec: [`STEP_REAPER`] around the command (an
    /// [`RunAs::Observer`] step's command as it is).
    pub fn exec_argv(&self) -> Vec<String> {
        if self.user == RunAs::Observer {
            return self.argv.clone();
        }
        self.wrapped(STEP_REAPER, "koji-adjutant-step")
    }

    /// The command of a build container whose main process is this step (the lead step of a
    /// warm build): [`LEAD_WRAPPER`] around the command.
    pub fn lead_argv(&self) -> Vec<String> {
        self.wrapped(LEAD_WRAPPER, "koji-adjutant-lead")
    }

    /// The wrapper around the command, which gets its environment from `env -i`: the
    /// wrapper itself runs with podman's fixed one ([`Step::exec_env`]), so nothing of the
    /// step's (a tag's `rpm.env.*`: `BASH_ENV`, `SHELLOPTS`, ...) reaches the bash that reaps
    /// the step's processes.
    fn wrapped(&self, template: &str, name: &str) -> Vec<String> {
        let mut argv = vec![
            "/bin/bash".to_owned(),
            "--noprofile".to_owned(),
            "--norc".to_owned(),
            "-c".to_owned(),
            wrapper(template),
            name.to_owned(),
            ENV.to_owned(),
            "-i".to_owned(),
        ];
        argv.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.extend(self.argv.iter().cloned());
        argv
    }

    /// The environment podman gives the exec: the step's own for an [`RunAs::Observer`] step
    /// (run as it is), else none (the wrapper passes the step's to the command).
    pub fn exec_env(&self) -> Vec<(String, String)> {
        if self.user == RunAs::Observer {
            return self.env.clone();
        }
        Vec::new()
    }
}

/// coreutils' `env`, which starts a step's command with exactly the step's environment.
const ENV: &str = "/usr/bin/env";

/// A file the runner writes into a container before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Absolute container path.
    pub dest: String,
    pub content: String,
    pub mode: u32,
}

/// What a task starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An SRPM (buildArch, rebuildSRPM), mounted read-only into the build container.
    Srpm(PathBuf),
    /// A checkout kojid made on the host (buildSRPMFromSCM).
    Checkout(Checkout),
}

/// An SCM checkout on the host, mounted read-only at [`CHECKOUT_MOUNT`] and copied by the
/// build user to [`CHECKOUT_DIR`], where `source_cmd` and rpmbuild work. Paths are relative
/// to `dir` (kojid's `scmroot`, so `../common` of `use_common` is inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub dir: PathBuf,
    /// kojid's `sourcedir`, where `source_cmd` runs.
    pub workdir: String,
    /// The spec file.
    pub spec: String,
    /// The sources directory (`%_sourcedir`).
    pub sources: String,
    /// kojid's `scm.source_cmd` (empty: none).
    pub source_cmd: Vec<String>,
    /// `source_cmd` runs in the source container, with a network; else in the build
    /// container, without one.
    pub source_network: bool,
    /// kojid's `scm_credentials_dir`: mounted read-only at [`CREDENTIALS_DIR`] in the source
    /// container only (kojid binds it into the whole mock root); rpmbuild never sees its
    /// files (the build container keeps only the empty mount point podman made).
    pub credentials: Option<PathBuf>,
}

/// Where `source_cmd` finds kojid's `scm_credentials_dir`, as under mock.
pub const CREDENTIALS_DIR: &str = "/credentials";

/// What a task makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// buildArch: binary RPMs (and the rebuilt SRPM with `keep_srpm`).
    Binaries,
    /// rebuildSRPM, buildSRPMFromSCM: one SRPM, `rpmbuild -bs` in the buildroot.
    Srpm,
}

/// Where the checkout is mounted read-only in the build container.
pub const CHECKOUT_MOUNT: &str = "/mnt/koji-checkout";
/// The build user's copy of the checkout (mock's chroot copy of `scmroot`).
pub const CHECKOUT_DIR: &str = "/builddir/build/scmroot";

/// One task's inputs, as kojid knows them after talking to the hub.
#[derive(Debug, Clone)]
pub struct BuildArchRequest {
    pub input: Input,
    pub product: Product,
    pub arch: String,
    pub repo: RepoLocation,
    pub repo_id: i64,
    pub tag_name: String,
    pub build_config: BuildConfig,
    pub keep_srpm: bool,
    /// For noarch tasks: the buildroot arch kojid chose (`find_arch`).
    pub buildroot_arch: Option<String>,
    /// SHA-256 (hex) of the repo's `repodata/repomd.xml`: what the repo holds. Read from a
    /// local repo when not given; required for a URL repo (the caller fetched it).
    pub repomd_sha256: Option<String>,
}

/// Everything the runner needs to make the buildroot and build the SRPM in it.
///
/// Order of work: create the build container from the cached root, or from an empty image
/// (tag mode) or the image (image mode); for a fresh root, create the bootstrap container
/// with `bootstrap_files`, run `init_steps` in it (root.log) and store the root in the cache;
/// write `build_files` into the build container; start it and run `package_list` (the hub's
/// list; a cached root's comes from its cache record); then `rebuild_and_build_step`, which
/// builds when rpmbuild finds every BuildRequires installed; else read the rebuilt SRPM's
/// BuildRequires, install them with `install_step` and try again, up to
/// [`super::MAX_BUILDREQUIRES_LOOPS`] rounds until the package list stops changing; for
/// dynamic BuildRequires the same with `dynamic_buildrequires_step`, then `build_step`;
/// collect the results through podman's archive endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildrootPlan {
    pub task_id: i64,
    pub mode: BuildrootMode,
    /// Canonical arch of the buildroot (repo arch, `newBuildRoot`'s arch).
    pub buildroot_arch: String,
    /// `%_host_cpu` (kojid's `target_arch`: the buildroot arch, armhfp spelled armv7hl).
    pub target_arch: String,
    /// rpmbuild's `--target` (the task arch, noarch included).
    pub rpmbuild_target: String,
    pub repo_id: i64,
    pub tag_name: String,
    /// dnf's baseurl for the buildroot repo, as seen inside the bootstrap container.
    pub repo_baseurl: String,
    /// The repo is a URL: the bootstrap container needs a network.
    pub repo_network: bool,
    /// Read-only mounts of the bootstrap container (a local repo and its packages).
    pub bootstrap_mounts: Vec<VolumeMount>,
    /// Read-only mounts of the build container (the SRPM).
    pub build_mounts: Vec<VolumeMount>,
    /// Read-only mounts of the source container (kojid's `scm_credentials_dir`).
    pub source_mounts: Vec<VolumeMount>,
    pub bootstrap_files: Vec<ConfigFile>,
    pub build_files: Vec<ConfigFile>,
    /// Environment of build steps (mock's `environment` plus tag `rpm.env.*`).
    pub environment: Vec<(String, String)>,
    pub init_steps: Vec<Step>,
    /// Image mode: the image's own packages, queried in the bootstrap container before init.
    pub image_package_list: Step,
    /// The buildroot's packages, queried as the build user.
    pub package_list: Step,
    /// CPU, memory and storage as mock's hw_info plugin reports them, seen from inside the
    /// build container (as the build user, fixed environment).
    pub hw_info: Step,
    /// The SRPM unpacked and rebuilt (`rpmbuild -bs`), then the build (`-bb`, rpmbuild
    /// checking the BuildRequires) in the same exec; exits [`REQUIRES_MISSING`] when one is missing or the rebuilt SRPM
    /// has dynamic BuildRequires, [`SRPM_REBUILD_FAILED`] when the rebuild failed.
    pub rebuild_and_build_step: Step,
    pub product: Product,
    /// [`Product::Srpm`]: the steps that make the SRPM in `SRPMS`, in order.
    pub srpm_steps: Vec<Step>,
    /// The input SRPM inside the build container (mounted read-only); empty for a checkout.
    pub srpm_path: String,
    /// The spec inside the build container after the SRPM is unpacked.
    pub spec_path: String,
    pub keep_srpm: bool,
    pub rpmbuild_timeout: u64,
    /// Tag `mock.*` settings that mock honours but that do not apply here, for the log.
    pub ignored_extra: Vec<String>,
    dnf_argv: Vec<String>,
}

/// mock's hw_info sections (`lscpu`, `free`, `df -H` of the root), with the kernel's own
/// files where a root lacks the tool.
const HW_INFO_SCRIPT: &str = "echo 'CPU info:'; \
if command -v lscpu >/dev/null 2>&1; then lscpu; else cat /proc/cpuinfo; fi; \
printf '\\n\\nMemory:\\n'; \
if command -v free >/dev/null 2>&1; then free; else cat /proc/meminfo; fi; \
printf '\\n\\nStorage:\\n'; df -H /";

/// The package list query ([`package_list_query`]) as the build user, then whether the build
/// user can write the rpm database or a directory above it ([`RPMDB_WRITABLE`]). Builtins
/// only after rpm. The fixed root environment (`HOME=/root`): rpm never reads a macro file
/// the build user wrote (`~/.rpmmacros` could move `%_dbpath` to a database of its own).
fn package_list_step(rpmdb_path: Option<&str>) -> Step {
    let mut dbs: Vec<String> = vec!["/var/lib/rpm".into(), "/usr/lib/sysimage/rpm".into()];
    dbs.extend(rpmdb_path.map(str::to_owned));
    let mut above: Vec<String> = Vec::new();
    for db in &dbs {
        for dir in Path::new(db).ancestors().skip(1) {
            let dir = dir.to_string_lossy().into_owned();
            if !above.contains(&dir) {
                above.push(dir);
            }
        }
    }
    let quoted = |v: &[String]| {
        v.iter()
            .map(|d| shell::quote(d))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let script = format!(
        r#""$@" || exit $?
for f in {above}; do
  [ -w "$f" ] && {{ echo "koji-adjutant: the build user can write $f" >&2; exit {writable}; }}
done
for d in {dbs}; do
  for f in "$d" "$d"/* "$d"/.[!.]*; do
    [ -e "$f" ] && [ -w "$f" ] && {{ echo "koji-adjutant: the build user can write $f" >&2; exit {writable}; }}
  done
done
exit 0"#,
        above = quoted(&above),
        dbs = quoted(&dbs),
        writable = RPMDB_WRITABLE,
    );
    let mut argv = vec![
        "bash".to_owned(),
        "--noprofile".to_owned(),
        "--norc".to_owned(),
        "-c".to_owned(),
        script,
        "koji-adjutant-list".to_owned(),
    ];
    argv.extend(package_list_query(rpmdb_path));
    let mut step = StepKit::query(
        "list buildroot packages",
        argv,
        RunAs::Builder,
        root_environment(),
    );
    step.ok_exit_codes = vec![0, RPMDB_WRITABLE];
    step
}

/// Whether this builder takes a task for `arch` of a tag with `build_config`, with an image
/// running `image_arches`: `Error::Refused` if its image cannot build the arch or the tag
/// asks for what is not done here ([`refused_extra`]). Returns the buildroot's arch (for
/// noarch: `buildroot_arch`, or one the image and the tag share).
pub fn check_task(
    arch: &str,
    build_config: &BuildConfig,
    buildroot_arch: Option<&str>,
    image_arches: &[String],
) -> Result<String> {
    refused_extra(&build_config.extra)?;
    check_buildable(arch, image_arches)?;
    let chosen = match (arch, buildroot_arch) {
        ("noarch", Some(a)) => a.to_owned(),
        ("noarch", None) => choose_noarch_arch(image_arches, build_config.arches.as_deref(), None)?,
        (arch, _) => arch.to_owned(),
    };
    check_buildable(&chosen, image_arches)?;
    Ok(chosen)
}

/// Plan the buildroot of one task from its inputs and the SRPM's header.
pub fn plan(
    task_id: i64,
    mode: BuildrootMode,
    request: &BuildArchRequest,
    options: &BuildrootOptions,
    image_arches: &[String],
    srpm: Option<&Package>,
) -> Result<BuildrootPlan> {
    let extra = &request.build_config.extra;
    if request.build_config.name != request.tag_name {
        return Err(Error::invalid(format!(
            "tag/repo mismatch: build config is for {} but the repo is {}'s",
            request.build_config.name, request.tag_name
        )));
    }
    let chosen = check_task(
        &request.arch,
        &request.build_config,
        request.buildroot_arch.as_deref(),
        image_arches,
    )?;
    let buildroot_arch = canon_arch(&chosen);
    let target_arch = if chosen == "armhfp" {
        "armv7hl".to_owned()
    } else {
        chosen.clone()
    };

    let (repo_baseurl, bootstrap_mounts) = repo_access(&request.repo)?;
    let (srpm_path, spec_path, build_mounts) = match (&request.input, srpm) {
        (Input::Srpm(path), Some(srpm)) => {
            let spec_file = srpm.spec_file.as_deref().ok_or_else(|| {
                Error::invalid(format!("no spec file found in SRPM {}", path.display()))
            })?;
            if spec_file.contains('/') || spec_file.starts_with('.') {
                return Err(Error::invalid(format!(
                    "bad spec file name in SRPM: {spec_file}"
                )));
            }
            let srpm_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| n.ends_with(".rpm") && !n.starts_with('.') && !n.contains(['\n', '\0']))
                .ok_or_else(|| Error::invalid(format!("bad SRPM file name: {}", path.display())))?;
            let srpm_path = format!("{ORIGINALS_DIR}/{srpm_name}");
            let mounts = vec![read_only(path, &srpm_path)];
            (srpm_path, format!("{TOPDIR}/SPECS/{spec_file}"), mounts)
        }
        (Input::Checkout(checkout), None) => {
            if request.product != Product::Srpm {
                return Err(Error::invalid(
                    "a checkout makes an SRPM: binary RPMs are built from an SRPM",
                ));
            }
            if !checkout.dir.is_absolute() {
                return Err(Error::invalid(format!(
                    "the checkout must be an absolute path: {}",
                    checkout.dir.display()
                )));
            }
            let spec = checkout_path("spec", &checkout.spec)?;
            if !spec.ends_with(".spec") {
                return Err(Error::invalid(format!("not a spec file: {spec}")));
            }
            let mounts = vec![read_only(&checkout.dir, CHECKOUT_MOUNT)];
            (String::new(), spec, mounts)
        }
        _ => {
            return Err(Error::invalid(
                "an SRPM input needs its header, a checkout none",
            ))
        }
    };

    let source_mounts = match &request.input {
        Input::Checkout(Checkout {
            credentials: Some(dir),
            ..
        }) => {
            if !dir.is_absolute() {
                return Err(Error::invalid(format!(
                    "scm_credentials_dir must be an absolute path: {}",
                    dir.display()
                )));
            }
            vec![read_only(dir, CREDENTIALS_DIR)]
        }
        _ => Vec::new(),
    };

    let repo_name = repo_section_name(&request.tag_name, request.repo_id);
    let mut bootstrap_files = vec![
        ConfigFile {
            dest: DNF_CONF_PATH.to_owned(),
            content: dnf_conf_content(extra, options.yum_proxy.as_deref())?,
            mode: 0o644,
        },
        ConfigFile {
            dest: REPO_FILE_PATH.to_owned(),
            content: repo_file_content(&repo_name, &repo_baseurl, extra),
            mode: 0o644,
        },
    ];
    let mut build_files = vec![ConfigFile {
        dest: MACROS_PATH.to_owned(),
        content: macros_content(&macros(options, extra, &target_arch)?),
        mode: 0o644,
    }];
    let rpmdb_path = match (mode, options.rpmdb_path.as_deref()) {
        (BuildrootMode::Image, Some(p)) => {
            if !p.starts_with('/') {
                return Err(Error::invalid(format!(
                    "rpmdb_path must be absolute: {p:?}"
                )));
            }
            check_macro_value("%_dbpath", p)?;
            // Both rpms read the image's database: the bootstrap's dnf (the same image)
            // installing into it and the build's rpmbuild checking it.
            let pin = ConfigFile {
                dest: RPMDB_MACROS_PATH.to_owned(),
                content: format!("%_dbpath {p}\n"),
                mode: 0o644,
            };
            build_files.push(pin.clone());
            bootstrap_files.push(pin);
            Some(p)
        }
        _ => None,
    };

    let mut dnf_argv: Vec<String> = vec![
        "dnf".to_owned(),
        "-c".to_owned(),
        DNF_CONF_PATH.to_owned(),
        format!("--installroot={INSTALL_ROOT}"),
        format!("--setopt=reposdir={REPOS_DIR}"),
        "--noplugins".to_owned(),
    ];
    let releasever = extra
        .get("mock.releasever")
        .filter(|v| v.truthy())
        .map(ExtraValue::python_str);
    if let Some(v) = &releasever {
        if v.starts_with('-') || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(format!(
                "mock.releasever must be one word, not {v:?}"
            )));
        }
    }
    // dnf takes $releasever from the installroot's release package, which an empty root
    // has not: give it one (kojid's configs use no $releasever in the Koji repo's URL).
    dnf_argv.push(format!(
        "--releasever={}",
        releasever.as_deref().unwrap_or("koji")
    ));
    dnf_argv.extend(DNF_COMMON_OPTS.iter().map(|o| (*o).to_owned()));

    let environment = build_environment(extra)?;
    let kit = StepKit {
        environment: environment.clone(),
        rpmbuild_timeout: options.rpmbuild_timeout,
    };
    let init_steps = init_steps(mode, &dnf_argv, extra, &options.install_group)?;
    let mut image_list = package_list_query(rpmdb_path);
    image_list.splice(2..2, ["--root".to_owned(), INSTALL_ROOT.to_owned()]);
    // mock's SRPM rebuild (`rpm -U`, `rpmbuild -bs`), then the build in the same exec when
    // rpmbuild's own dependency check finds every BuildRequires installed (`-bb` exits 11 when one is missing, before %prep
    // for static ones): the usual warm build is one exec. A rebuilt SRPM with dynamic
    // BuildRequires goes the stepwise way (mock's `-br` rounds, then `-ba --noprep`).
    let rebuild_and_build = format!(
        "{{ rpm -Uvh --nodeps {srpm} && {rpmbuild} -bs --noclean --target {target} --nodeps {spec}; }} \
         || exit {rebuild_failed}; \
         for s in {srpms}/*.src.rpm; do \
           case \"$(rpm -qp --requires -- \"$s\" 2>/dev/null)\" in \
             *'rpmlib(DynamicBuildRequires)'*) exit {missing} ;; \
           esac; \
         done; \
         {rpmbuild} -bb --noclean --target {target} {spec}; rc=$?; \
         [ \"$rc\" -eq 11 ] && exit {missing}; exit \"$rc\"",
        srpm = shell::quote(&srpm_path),
        rpmbuild = RPMBUILD,
        target = shell::quote(&request.arch),
        spec = shell::quote(&spec_path),
        srpms = SRPMS_DIR,
        rebuild_failed = SRPM_REBUILD_FAILED,
        missing = REQUIRES_MISSING,
    );
    let mut rebuild_and_build_step = kit.login_shell("rebuild SRPM and build", &rebuild_and_build);
    rebuild_and_build_step.ok_exit_codes = vec![0, REQUIRES_MISSING];
    let srpm_steps = match request.product {
        Product::Binaries => Vec::new(),
        Product::Srpm => srpm_steps(&kit, &request.input, &request.arch, &srpm_path, &spec_path)?,
    };

    let plan = BuildrootPlan {
        task_id,
        mode,
        buildroot_arch,
        target_arch,
        rpmbuild_target: request.arch.clone(),
        repo_id: request.repo_id,
        tag_name: request.tag_name.clone(),
        repo_network: !repo_baseurl.starts_with("file:"),
        repo_baseurl,
        bootstrap_mounts,
        build_mounts,
        source_mounts,
        bootstrap_files,
        build_files,
        environment,
        init_steps,
        image_package_list: StepKit::query(
            "list the image's packages",
            image_list,
            RunAs::Root,
            root_environment(),
        ),
        package_list: package_list_step(rpmdb_path),
        hw_info: StepKit::query(
            "report hardware",
            vec![
                "bash".to_owned(),
                "--noprofile".to_owned(),
                "--norc".to_owned(),
                "-c".to_owned(),
                HW_INFO_SCRIPT.to_owned(),
            ],
            RunAs::Observer,
            root_environment(),
        ),
        rebuild_and_build_step,
        product: request.product,
        srpm_steps,
        srpm_path,
        spec_path,
        keep_srpm: request.keep_srpm,
        rpmbuild_timeout: options.rpmbuild_timeout,
        ignored_extra: ignored_extra(extra),
        dnf_argv,
    };
    tracing::debug!(
        task_id = plan.task_id,
        arch = %plan.buildroot_arch,
        repo = %plan.repo_baseurl,
        "planned buildroot"
    );
    Ok(plan)
}

impl BuildrootPlan {
    /// Install `reqs` (already checked by [`super::requires::install_arguments`]) as root,
    /// like mock's builddep; `None` when there is nothing to install. `--` ends the options.
    pub fn install_step(&self, reqs: &[String]) -> Option<Step> {
        if reqs.is_empty() {
            return None;
        }
        let mut argv = self.dnf_argv.clone();
        argv.push("install".to_owned());
        argv.push("--".to_owned());
        argv.extend(reqs.iter().cloned());
        Some(StepKit::root("install build requirements", argv))
    }

    /// The root as a tar on stdout, read through the bootstrap container (and so through its
    /// user namespace: owners, setuid bits and file capabilities as the root's own ids), for
    /// a cache image. The dnf cache volume is another file system and stays out.
    pub fn export_root_step(&self) -> Step {
        let argv = [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--one-file-system",
            "-C",
            INSTALL_ROOT,
            "-cf",
            "-",
            ".",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        Step {
            capture_stdout: true,
            ..StepKit::root("export the root for the cache", argv)
        }
    }

    /// One round of `%generate_buildrequires` (mock's `rpmbuild -br`; exit 11 means "more
    /// requirements"). Rounds after the first skip %prep, as mock does. The previous round's
    /// `*.buildreqs.nosrc.rpm` is removed first.
    pub fn dynamic_buildrequires_step(&self, first: bool) -> Step {
        let noprep = if first { "" } else { " --noprep" };
        let line = format!(
            "rm -f {SRPMS_DIR}/*.buildreqs.nosrc.rpm && {RPMBUILD} -br{noprep} --noclean --target {} --nodeps {}",
            shell::quote(&self.rpmbuild_target),
            shell::quote(&self.spec_path),
        );
        let mut step = self
            .kit()
            .login_shell("generate dynamic build requirements", &line);
        step.ok_exit_codes = vec![0, 11];
        step
    }

    /// The build. With dynamic BuildRequires mock runs `-ba --noprep` (rewriting the SRPM
    /// with the generated requirements) and lets rpmbuild check them.
    pub fn build_step(&self, dynamic_buildrequires: bool) -> Step {
        let (mode, nodeps) = if dynamic_buildrequires {
            ("-ba --noprep", "")
        } else {
            ("-bb", " --nodeps")
        };
        let line = format!(
            "{RPMBUILD} {mode} --noclean --target {}{nodeps} {}",
            shell::quote(&self.rpmbuild_target),
            shell::quote(&self.spec_path),
        );
        let mut step = self.kit().login_shell("build", &line);
        step.timeout_secs = Some(self.rpmbuild_timeout);
        step
    }

    /// The kojid method this plan carries out.
    pub fn method(&self) -> &'static str {
        match self.product {
            Product::Binaries => "buildArch",
            Product::Srpm if self.srpm_path.is_empty() => "buildSRPMFromSCM",
            Product::Srpm => "rebuildSRPM",
        }
    }

    /// The build container's network for logs: `source_cmd`'s own container has one.
    pub fn fetches(&self) -> bool {
        self.srpm_steps.iter().any(|s| s.user == RunAs::Fetcher)
    }

    fn kit(&self) -> StepKit {
        StepKit {
            environment: self.environment.clone(),
            rpmbuild_timeout: self.rpmbuild_timeout,
        }
    }
}

/// What the build steps of one plan share; makes the steps.
struct StepKit {
    environment: Vec<(String, String)>,
    rpmbuild_timeout: u64,
}

impl StepKit {
    /// A root step in the bootstrap container: fixed environment, root.log.
    fn root(name: &str, argv: Vec<String>) -> Step {
        Step {
            name: name.to_owned(),
            argv,
            user: RunAs::Root,
            workdir: "/".to_owned(),
            env: root_environment(),
            log: LogTarget::RootLog,
            capture_stdout: false,
            timeout_secs: None,
            ok_exit_codes: vec![0],
            failure: None,
        }
    }

    /// A query whose stdout the runner parses (stderr goes to root.log).
    fn query(name: &str, argv: Vec<String>, user: RunAs, env: Vec<(String, String)>) -> Step {
        Step {
            capture_stdout: true,
            user,
            env,
            workdir: if user == RunAs::Builder {
                BUILD_HOME
            } else {
                "/"
            }
            .to_owned(),
            ..Self::root(name, argv)
        }
    }

    /// A build-user command as mock runs rpmbuild: `bash --login -c`, build.log.
    fn login_shell(&self, name: &str, line: &str) -> Step {
        self.plain(
            name,
            vec![
                "bash".to_owned(),
                "--login".to_owned(),
                "-c".to_owned(),
                line.to_owned(),
            ],
        )
    }

    /// A build-user command run as it is (mock's `--chroot` with arguments), build.log.
    fn plain(&self, name: &str, argv: Vec<String>) -> Step {
        Step {
            name: name.to_owned(),
            argv,
            user: RunAs::Builder,
            workdir: BUILD_HOME.to_owned(),
            env: self.environment.clone(),
            log: LogTarget::BuildLog,
            capture_stdout: false,
            timeout_secs: Some(self.rpmbuild_timeout),
            ok_exit_codes: vec![0],
            failure: None,
        }
    }
}

/// A path of the checkout, relative to its top: plain components only, as a container path
/// under [`CHECKOUT_DIR`] (`""` is the top itself).
fn checkout_path(what: &str, rel: &str) -> Result<String> {
    let bad = rel.starts_with('/')
        || rel.chars().any(|c| c.is_control())
        || rel
            .split('/')
            .any(|c| c == ".." || c == "." || (c.is_empty() && !rel.is_empty()));
    if bad {
        return Err(Error::invalid(format!(
            "the checkout's {what} must be a plain relative path, not {rel:?}"
        )));
    }
    Ok(if rel.is_empty() {
        CHECKOUT_DIR.to_owned()
    } else {
        format!("{CHECKOUT_DIR}/{rel}")
    })
}

/// The steps of an SRPM task, in the build container as the build user but for a networked
/// `source_cmd`: rebuildSRPM unpacks the SRPM and rebuilds it (kojid's
/// `BuildRoot.rebuild_srpm`); buildSRPMFromSCM copies the read-only checkout, runs
/// `source_cmd` in the copy of kojid's `sourcedir` and builds the SRPM from the spec and the
/// sources dir (kojid's `BuildRoot.build_srpm`, mock's `--buildsrpm`). rpmbuild runs with
/// `--target <arch>` (kojid's `noarch`) and `--nodeps`, as under mock.
fn srpm_steps(
    kit: &StepKit,
    input: &Input,
    arch: &str,
    srpm_path: &str,
    spec_path: &str,
) -> Result<Vec<Step>> {
    let building = Some(("error building srpm".to_owned(), "rpmbuild".to_owned()));
    let rpmbuild = |sources: Option<&str>| {
        let define = sources
            .map(|dir| format!(" --define {}", shell::quote(&format!("_sourcedir {dir}"))))
            .unwrap_or_default();
        format!(
            "{RPMBUILD} -bs --noclean --target {}{define} --nodeps {}",
            shell::quote(arch),
            shell::quote(spec_path),
        )
    };
    let checkout = match input {
        Input::Srpm(_) => {
            let line = format!(
                "rpm -Uvh --nodeps {} && {}",
                shell::quote(srpm_path),
                rpmbuild(None)
            );
            let mut step = kit.login_shell("rebuild SRPM", &line);
            step.failure = building;
            return Ok(vec![step]);
        }
        Input::Checkout(checkout) => checkout,
    };
    let workdir = checkout_path("source directory", &checkout.workdir)?;
    let sources = checkout_path("sources directory", &checkout.sources)?;
    let mut steps = vec![Step {
        workdir: BUILD_HOME.to_owned(),
        ..kit.plain(
            "copy the checkout",
            [
                "cp",
                "-R",
                "--preserve=mode,timestamps",
                "--",
                CHECKOUT_MOUNT,
                CHECKOUT_DIR,
            ]
            .iter()
            .map(|a| (*a).to_owned())
            .collect(),
        )
    }];
    if let Some(first) = checkout.source_cmd.first() {
        if first.is_empty() || checkout.source_cmd.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid(format!(
                "bad source_cmd: {:?}",
                checkout.source_cmd
            )));
        }
        let mut step = kit.plain("source_cmd", checkout.source_cmd.clone());
        step.workdir = workdir;
        step.failure = Some((
            "error retrieving sources".to_owned(),
            "source_cmd".to_owned(),
        ));
        if checkout.source_network {
            step.user = RunAs::Fetcher;
        }
        steps.push(step);
    }
    let mut build = kit.login_shell("build SRPM", &rpmbuild(Some(&sources)));
    build.failure = building;
    steps.push(build);
    Ok(steps)
}

/// The root steps that make a buildroot, in mock's order: its directories, module setup,
/// the install group, the build user (tag mode; an image brings its own), the build dirs.
fn init_steps(
    mode: BuildrootMode,
    dnf_argv: &[String],
    extra: &super::config::Extra,
    install_group: &str,
) -> Result<Vec<Step>> {
    if install_group.is_empty()
        || install_group.starts_with('-')
        || install_group
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(Error::invalid(format!(
            "bad install group name: {install_group:?}"
        )));
    }
    let br = |p: &str| format!("{INSTALL_ROOT}/{p}");
    // mock's _setup_dirs, then its tmp dirs with the sticky bit.
    let mut dirs = vec![
        "install".to_owned(),
        "-d".to_owned(),
        "-m".to_owned(),
        "0755".to_owned(),
    ];
    dirs.extend(
        [
            "var/lib/rpm",
            "var/log",
            "var/cache/dnf",
            "etc/rpm",
            "etc/dnf",
            "proc",
            "sys",
            "dev",
        ]
        .iter()
        .map(|p| br(p)),
    );
    let mut steps = vec![StepKit::root("create the root's directories", dirs)];
    let mut tmp = vec![
        "install".to_owned(),
        "-d".to_owned(),
        "-m".to_owned(),
        "1777".to_owned(),
    ];
    tmp.extend(["tmp", "var/tmp"].iter().map(|p| br(p)));
    steps.push(StepKit::root("create the root's tmp directories", tmp));
    for (action, modules) in module_setup_commands(extra)? {
        let mut argv = dnf_argv.to_vec();
        argv.push("module".to_owned());
        argv.push(action.clone());
        argv.push("--".to_owned());
        argv.extend(modules);
        steps.push(StepKit::root(&format!("dnf module {action}"), argv));
    }
    let mut install = dnf_argv.to_vec();
    install.push("install".to_owned());
    install.push("--".to_owned());
    install.push(format!("@{install_group}"));
    steps.push(StepKit::root(&format!("install @{install_group}"), install));
    if mode == BuildrootMode::Tag {
        // mock's _make_build_user, with the bootstrap's shadow tools writing the root's
        // files (--prefix) instead of running the root's own in a chroot.
        let script = format!(
            "userdel --prefix {INSTALL_ROOT} -f {BUILD_USER} >/dev/null 2>&1; \
             groupdel --prefix {INSTALL_ROOT} mock >/dev/null 2>&1; \
             groupadd --prefix {INSTALL_ROOT} -g {BUILD_GID} mock && \
             useradd --prefix {INSTALL_ROOT} -o -M -N -u {BUILD_UID} -g {BUILD_GID} -d {BUILD_HOME} -s /bin/bash {BUILD_USER}"
        );
        steps.push(StepKit::root(
            "create the build user",
            vec!["bash".to_owned(), "-c".to_owned(), script],
        ));
    }
    let mut mkdir: Vec<String> = ["install", "-d", "-m", "0755", "-o"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    mkdir.push(BUILD_UID.to_string());
    mkdir.push("-g".to_owned());
    mkdir.push(BUILD_GID.to_string());
    mkdir.push(br(BUILD_HOME.trim_start_matches('/')));
    mkdir.push(br(TOPDIR.trim_start_matches('/')));
    mkdir.extend(
        [
            "RPMS",
            "SPECS",
            "SRPMS",
            "SOURCES",
            "BUILD",
            "BUILDROOT",
            "originals",
        ]
        .iter()
        .map(|d| br(&format!("{}/{d}", TOPDIR.trim_start_matches('/')))),
    );
    steps.push(StepKit::root("create build directories", mkdir));
    Ok(steps)
}

fn read_only(host: &Path, container: &str) -> VolumeMount {
    VolumeMount {
        source: host.to_path_buf(),
        target: container.into(),
        read_only: true,
        selinux_label: None,
    }
}

/// The repo's baseurl inside the bootstrap container, and the mounts it needs: for a local
/// repo its arch dir and exactly the package directories its pkglist names, each at its place
/// under [`KOJI_TOPDIR_MOUNT`] so the repo's relative `toplink` resolves to them and to
/// nothing else of the topdir.
fn repo_access(repo: &RepoLocation) -> Result<(String, Vec<VolumeMount>)> {
    match repo {
        RepoLocation::Url(url) => {
            if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(format!("bad repo URL: {url:?}")));
            }
            if url.starts_with("file:") {
                // A file URL would need a mount the plan cannot infer; Local says what to mount.
                return Err(Error::invalid(format!(
                    "repo URL {url} is a local path: use RepoLocation::Local"
                )));
            }
            Ok((url.clone(), Vec::new()))
        }
        RepoLocation::Local { arch_dir, topdir } => {
            if !topdir.is_absolute() {
                return Err(Error::invalid(format!(
                    "Koji topdir must be absolute: {}",
                    topdir.display()
                )));
            }
            let rel = arch_dir.strip_prefix(topdir).map_err(|_| {
                Error::invalid(format!(
                    "repo dir {} is not inside the Koji topdir {}",
                    arch_dir.display(),
                    topdir.display()
                ))
            })?;
            let rel = rel.to_str().ok_or_else(|| {
                Error::invalid(format!("repo dir is not UTF-8: {}", arch_dir.display()))
            })?;
            if rel.is_empty()
                || rel.split('/').any(|c| c == ".." || c == ".")
                || rel.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::invalid(format!(
                    "bad repo dir: {}",
                    arch_dir.display()
                )));
            }
            let baseurl = format!("file://{KOJI_TOPDIR_MOUNT}/{rel}");
            let mut mounts = vec![read_only(arch_dir, &format!("{KOJI_TOPDIR_MOUNT}/{rel}"))];
            if arch_dir.join("pkglist").exists() {
                for (host, rel) in crate::core::createrepo::pkglist_package_dirs(topdir, arch_dir)?
                {
                    mounts.push(read_only(
                        &host,
                        &format!("{KOJI_TOPDIR_MOUNT}/{}", rel.display()),
                    ));
                }
            }
            Ok((baseurl, mounts))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::header::PackageKind;
    use super::*;

    pub(crate) fn s(v: &str) -> ExtraValue {
        ExtraValue::Str(v.to_owned())
    }

    pub(crate) fn request(extra: &[(&str, ExtraValue)]) -> BuildArchRequest {
        BuildArchRequest {
            input: Input::Srpm(PathBuf::from("/work/tasks/1/tiny-1.0-3.src.rpm")),
            product: Product::Binaries,
            arch: "x86_64".to_owned(),
            repo: RepoLocation::Url(
                "http://koji.example.org/kojifiles/repos/f40-build/77/x86_64".to_owned(),
            ),
            repo_id: 77,
            tag_name: "f40-build".to_owned(),
            build_config: BuildConfig {
                id: 5,
                name: "f40-build".to_owned(),
                arches: Some("x86_64 i686 aarch64".to_owned()),
                extra: extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            },
            keep_srpm: false,
            buildroot_arch: None,
            repomd_sha256: None,
        }
    }

    pub(crate) fn srpm() -> Package {
        Package {
            kind: PackageKind::Source,
            name: "tiny".to_owned(),
            version: "1.0".to_owned(),
            release: "3".to_owned(),
            epoch: Some(2),
            arch: "x86_64".to_owned(),
            spec_file: Some("tiny.spec".to_owned()),
            vendor: None,
            packager: None,
            distribution: None,
            requires: Vec::new(),
        }
    }

    pub(crate) fn plan_for(mode: BuildrootMode, req: &BuildArchRequest) -> BuildrootPlan {
        plan(
            123,
            mode,
            req,
            &BuildrootOptions::default(),
            &["x86_64".to_owned()],
            Some(&srpm()),
        )
        .unwrap()
    }

    #[test]
    fn tag_mode_installs_the_group_into_the_installroot_and_makes_the_build_user() {
        let p = plan_for(BuildrootMode::Tag, &request(&[]));
        let names: Vec<&str> = p.init_steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "create the root's directories",
                "create the root's tmp directories",
                "install @build",
                "create the build user",
                "create build directories"
            ]
        );
        let install = &p.init_steps[2];
        assert_eq!(install.user, RunAs::Root);
        assert!(install
            .argv
            .contains(&format!("--installroot={INSTALL_ROOT}")));
        assert!(install
            .argv
            .contains(&format!("--setopt=reposdir={REPOS_DIR}")));
        assert_eq!(&install.argv[install.argv.len() - 2..], ["--", "@build"]);
        assert!(p.init_steps.iter().all(|s| s.user == RunAs::Root));
        assert!(p.init_steps[3].argv[2].contains("useradd --prefix /br -o -M -N -u 1000 -g 135"));
        assert!(p.repo_network);
        assert!(p.bootstrap_mounts.is_empty());
    }

    #[test]
    fn image_mode_skips_the_build_user_and_pins_the_rpmdb_only_there() {
        let req = request(&[]);
        let opts = BuildrootOptions {
            rpmdb_path: Some("/var/lib/rpm".into()),
            ..Default::default()
        };
        let image = plan(
            1,
            BuildrootMode::Image,
            &req,
            &opts,
            &["x86_64".into()],
            Some(&srpm()),
        )
        .unwrap();
        assert!(!image
            .init_steps
            .iter()
            .any(|s| s.name == "create the build user"));
        assert!(image
            .build_files
            .iter()
            .any(|f| f.dest == RPMDB_MACROS_PATH));
        assert!(image.package_list.argv.contains(&"--dbpath".to_owned()));
        assert_eq!(
            &image.image_package_list.argv[..4],
            ["rpm", "-qa", "--root", INSTALL_ROOT]
        );
        let tag = plan(
            1,
            BuildrootMode::Tag,
            &req,
            &opts,
            &["x86_64".into()],
            Some(&srpm()),
        )
        .unwrap();
        assert!(!tag.build_files.iter().any(|f| f.dest == RPMDB_MACROS_PATH));
        assert!(!tag.package_list.argv.contains(&"--dbpath".to_owned()));
    }

    #[test]
    fn root_steps_never_see_the_tags_environment() {
        let p = plan_for(
            BuildrootMode::Tag,
            &request(&[
                ("rpm.env.LD_PRELOAD", s("/builddir/evil.so")),
                ("rpm.env.PYTHONPATH", s("/x")),
            ]),
        );
        for step in p
            .init_steps
            .iter()
            .chain(p.install_step(&["gcc".into()]).iter())
        {
            assert!(
                !step
                    .env
                    .iter()
                    .any(|(k, _)| k == "LD_PRELOAD" || k == "PYTHONPATH"),
                "{}",
                step.name
            );
        }
        let build = p.build_step(false);
        assert!(build
            .env
            .iter()
            .any(|(k, v)| k == "LD_PRELOAD" && v == "/builddir/evil.so"));
    }

    #[test]
    fn build_steps_run_as_the_build_user_with_the_timeout_and_mocks_flags() {
        let p = plan_for(BuildrootMode::Tag, &request(&[]));
        let build = p.build_step(false);
        assert_eq!(build.user, RunAs::Builder);
        assert_eq!(build.log, LogTarget::BuildLog);
        assert_eq!(build.timeout_secs, Some(86400));
        assert_eq!(&build.argv[..3], ["bash", "--login", "-c"]);
        assert_eq!(
            build.argv[3],
            "/usr/bin/rpmbuild -bb --noclean --target x86_64 --nodeps /builddir/build/SPECS/tiny.spec"
        );
        let dynamic = p.build_step(true);
        assert!(
            dynamic.argv[3].contains(" -ba --noprep --noclean")
                && !dynamic.argv[3].contains("--nodeps")
        );
        let rebuild = &p.rebuild_and_build_step;
        assert_eq!(rebuild.ok_exit_codes, [0, REQUIRES_MISSING]);
        assert_eq!(rebuild.timeout_secs, Some(86400));
        assert!(rebuild.argv[3].starts_with("{ rpm -Uvh --nodeps /builddir/build/originals/tiny-1.0-3.src.rpm && /usr/bin/rpmbuild -bs --noclean --target x86_64 --nodeps /builddir/build/SPECS/tiny.spec; } || exit 98;"));
        // the build checks the BuildRequires itself: no --nodeps, exit 11 is "missing"
        assert!(rebuild.argv[3].contains(
            "/usr/bin/rpmbuild -bb --noclean --target x86_64 /builddir/build/SPECS/tiny.spec; rc=$?;"
        ));
        assert!(rebuild.argv[3].contains(r#"[ "$rc" -eq 11 ] && exit 99"#));
        assert!(rebuild.argv[3].contains("*'rpmlib(DynamicBuildRequires)'*) exit 99"));
        let first = p.dynamic_buildrequires_step(true);
        assert_eq!(first.ok_exit_codes, [0, 11]);
        assert!(first.argv[3].contains("-br --noclean") && !first.argv[3].contains("--noprep"));
        assert!(p.dynamic_buildrequires_step(false).argv[3].contains("-br --noprep"));
    }

    #[test]
    fn every_step_is_wrapped_by_the_reaper() {
        let p = plan_for(BuildrootMode::Tag, &request(&[]));
        let step = p.build_step(false);
        let argv = step.exec_argv();
        assert_eq!(&argv[..4], ["/bin/bash", "--noprofile", "--norc", "-c"]);
        assert!(argv[4].contains("kill -s KILL -1") && argv[4].contains("!= 65534"));
        assert!(argv[4].contains("end 125") && argv[4].starts_with("end() { exit \"$1\"; }"));
        assert_eq!(argv[5], "koji-adjutant-step");
        // the command gets the step's environment, the wrapper none of it
        assert_eq!(&argv[6..8], ["/usr/bin/env", "-i"]);
        let env: Vec<String> = step.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert!(env.contains(&"HOME=/builddir".to_owned()));
        assert_eq!(&argv[8..8 + env.len()], env.as_slice());
        assert_eq!(&argv[8 + env.len()..], step.argv.as_slice());
        assert!(step.exec_env().is_empty());
    }

    #[test]
    fn the_lead_wrapper_reaps_like_a_step_and_says_the_status_on_its_own_stdout_only() {
        let p = plan_for(BuildrootMode::Tag, &request(&[]));
        let step = &p.rebuild_and_build_step;
        let argv = step.lead_argv();
        assert_eq!(&argv[..4], ["/bin/bash", "--noprofile", "--norc", "-c"]);
        let script = &argv[4];
        // the command's stdout and stderr both go to the container's stderr; fd 3 (the
        // container's stdout) is closed for it
        assert!(script.contains("exec 3>&1 1>&2\n\"$@\" </dev/null 3>&-; rc=$?"));
        assert!(script.contains("kill -s KILL -1") && script.contains("[ \"$p\" = /proc/1 ]"));
        assert!(script.contains("printf '%s %s\\n' koji-adjutant-lead-end \"$1\" >&3; read -r _"));
        assert!(script.contains("end 125"));
        assert_eq!(argv[5], "koji-adjutant-lead");
        assert_eq!(&argv[6..8], ["/usr/bin/env", "-i"]);
        assert!(argv.ends_with(step.argv.as_slice()));
        // a step exec ends with the status itself
        assert!(step.exec_argv()[4].starts_with("end() { exit \"$1\"; }"));
    }

    #[test]
    fn install_step_passes_requirements_after_a_double_dash() {
        let p = plan_for(BuildrootMode::Tag, &request(&[]));
        assert!(p.install_step(&[]).is_none());
        let step = p
            .install_step(&["make >= 4".into(), "/usr/bin/tar".into()])
            .unwrap();
        let dash = step.argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(step.argv[dash - 1], "install");
        assert_eq!(&step.argv[dash + 1..], ["make >= 4", "/usr/bin/tar"]);
    }

    #[test]
    fn releasever_comes_from_the_tag_or_is_fixed_and_module_names_follow_a_double_dash() {
        let p = plan_for(
            BuildrootMode::Tag,
            &request(&[
                ("mock.releasever", ExtraValue::Int(40)),
                (
                    "mock.module_setup_commands",
                    ExtraValue::List(vec![ExtraValue::List(vec![s("enable"), s("nodejs:20")])]),
                ),
            ]),
        );
        assert!(p.dnf_argv.contains(&"--releasever=40".to_owned()));
        let module = p
            .init_steps
            .iter()
            .find(|s| s.name == "dnf module enable")
            .unwrap();
        assert_eq!(
            &module.argv[module.argv.len() - 4..],
            ["module", "enable", "--", "nodejs:20"]
        );
        let plain = plan_for(BuildrootMode::Tag, &request(&[]));
        assert!(plain.dnf_argv.contains(&"--releasever=koji".to_owned()));
        let bad = plan(
            1,
            BuildrootMode::Tag,
            &request(&[("mock.releasever", s("--x"))]),
            &BuildrootOptions::default(),
            &["x86_64".into()],
            Some(&srpm()),
        );
        assert!(matches!(bad, Err(Error::InvalidSpec(_))));
    }

    #[test]
    fn the_build_container_mounts_only_the_srpm() {
        let p = plan_for(BuildrootMode::Tag, &request(&[]));
        assert_eq!(p.build_mounts.len(), 1);
        assert_eq!(
            p.build_mounts[0].source,
            PathBuf::from("/work/tasks/1/tiny-1.0-3.src.rpm")
        );
        assert_eq!(
            p.build_mounts[0].target,
            PathBuf::from("/builddir/build/originals/tiny-1.0-3.src.rpm")
        );
        assert!(p.build_mounts[0].read_only);
    }

    #[test]
    fn local_repos_are_mounted_only_into_the_bootstrap_container() {
        let dir = super::super::header::tests::TempDir::new();
        let top = dir.0.join("koji");
        let arch_dir = top.join("repos/f40-build/77/x86_64");
        std::fs::create_dir_all(&arch_dir).unwrap();
        let mut req = request(&[]);
        req.repo = RepoLocation::Local {
            arch_dir: arch_dir.clone(),
            topdir: top.clone(),
        };
        let p = plan_for(BuildrootMode::Tag, &req);
        assert_eq!(p.repo_baseurl, "file:///mnt/koji/repos/f40-build/77/x86_64");
        assert!(!p.repo_network);
        assert_eq!(p.bootstrap_mounts.len(), 1);
        assert_eq!(
            p.bootstrap_mounts[0].target,
            PathBuf::from("/mnt/koji/repos/f40-build/77/x86_64")
        );
        assert!(p
            .build_mounts
            .iter()
            .all(|m| !m.target.starts_with("/mnt/koji")));
        req.repo = RepoLocation::Local {
            arch_dir: dir.0.join("elsewhere"),
            topdir: top,
        };
        assert!(plan(
            1,
            BuildrootMode::Tag,
            &req,
            &BuildrootOptions::default(),
            &["x86_64".into()],
            Some(&srpm())
        )
        .is_err());
    }

    #[test]
    fn noarch_tasks_build_with_target_noarch_on_a_concrete_buildroot() {
        let mut req = request(&[]);
        req.arch = "noarch".into();
        let p = plan_for(BuildrootMode::Tag, &req);
        assert_eq!(p.buildroot_arch, "x86_64");
        assert_eq!(p.rpmbuild_target, "noarch");
        assert!(p.build_step(false).argv[3].contains("--target noarch"));
        let mut other = request(&[]);
        other.arch = "aarch64".into();
        assert!(matches!(
            plan(
                1,
                BuildrootMode::Tag,
                &other,
                &BuildrootOptions::default(),
                &["x86_64".into()],
                Some(&srpm())
            ),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn tag_name_must_match_the_build_config_and_odd_names_are_quoted() {
        let mut req = request(&[]);
        req.tag_name = "other".into();
        assert!(plan(
            1,
            BuildrootMode::Tag,
            &req,
            &BuildrootOptions::default(),
            &["x86_64".into()],
            Some(&srpm())
        )
        .is_err());
        let mut odd = srpm();
        odd.spec_file = Some("my spec's.spec".into());
        let p = plan(
            1,
            BuildrootMode::Tag,
            &request(&[]),
            &BuildrootOptions::default(),
            &["x86_64".into()],
            Some(&odd),
        )
        .unwrap();
        let line = &p.build_step(false).argv[3];
        let words = shlex::split(line).unwrap();
        assert_eq!(
            words.last().unwrap(),
            "/builddir/build/SPECS/my spec's.spec",
            "{line}"
        );
        let mut bad = srpm();
        bad.spec_file = Some(".hidden.spec".into());
        assert!(plan(
            1,
            BuildrootMode::Tag,
            &request(&[]),
            &BuildrootOptions::default(),
            &["x86_64".into()],
            Some(&bad)
        )
        .is_err());
    }

    fn checkout(source_cmd: &[&str], network: bool) -> Checkout {
        Checkout {
            dir: PathBuf::from("/work/tasks/9/tmp/scmroot"),
            workdir: "tiny".to_owned(),
            spec: "tiny/tiny.spec".to_owned(),
            sources: "tiny".to_owned(),
            source_cmd: source_cmd.iter().map(|a| (*a).to_owned()).collect(),
            source_network: network,
            credentials: None,
        }
    }

    fn srpm_request(input: Input) -> BuildArchRequest {
        BuildArchRequest {
            input,
            product: Product::Srpm,
            arch: "noarch".to_owned(),
            buildroot_arch: Some("x86_64".to_owned()),
            ..request(&[])
        }
    }

    fn srpm_plan(input: Input, srpm: Option<&Package>) -> Result<BuildrootPlan> {
        plan(
            9,
            BuildrootMode::Tag,
            &srpm_request(input),
            &BuildrootOptions::default(),
            &["x86_64".to_owned()],
            srpm,
        )
    }

    #[test]
    fn a_checkout_is_mounted_read_only_copied_then_fetched_and_built_without_network() {
        let p = srpm_plan(Input::Checkout(checkout(&["make", "sources"], true)), None).unwrap();
        assert_eq!(p.build_mounts.len(), 1);
        assert!(p.build_mounts[0].read_only);
        assert_eq!(p.build_mounts[0].target, PathBuf::from(CHECKOUT_MOUNT));
        let names: Vec<&str> = p.srpm_steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["copy the checkout", "source_cmd", "build SRPM"]);
        let [copy, fetch, build] = p.srpm_steps.as_slice() else {
            panic!("three steps")
        };
        assert_eq!(copy.user, RunAs::Builder);
        assert_eq!(copy.argv.last().unwrap(), CHECKOUT_DIR);
        // only source_cmd gets the network (its own container), in the copy of sourcedir
        assert_eq!(fetch.user, RunAs::Fetcher);
        assert_eq!(fetch.argv, ["make", "sources"]);
        assert_eq!(fetch.workdir, format!("{CHECKOUT_DIR}/tiny"));
        assert!(p.fetches());
        assert_eq!(p.method(), "buildSRPMFromSCM");
        assert_eq!(build.user, RunAs::Builder);
        let words = shlex::split(&build.argv[3]).unwrap();
        assert_eq!(words[..2], ["/usr/bin/rpmbuild", "-bs"]);
        assert!(words.contains(&format!("_sourcedir {CHECKOUT_DIR}/tiny")));
        assert_eq!(
            words.last().unwrap(),
            &format!("{CHECKOUT_DIR}/tiny/tiny.spec")
        );
        assert!(words.windows(2).any(|w| w == ["--target", "noarch"]));
        // without the network, source_cmd runs in the build container
        let p = srpm_plan(Input::Checkout(checkout(&["make", "sources"], false)), None).unwrap();
        assert_eq!(p.srpm_steps[1].user, RunAs::Builder);
        assert!(!p.fetches());
        // no source_cmd: no step
        let p = srpm_plan(Input::Checkout(checkout(&[], true)), None).unwrap();
        assert_eq!(p.srpm_steps.len(), 2);
    }

    #[test]
    fn scm_credentials_reach_the_source_container_only() {
        let p = srpm_plan(Input::Checkout(checkout(&["make", "sources"], true)), None).unwrap();
        assert!(p.source_mounts.is_empty());
        let mut c = checkout(&["make", "sources"], true);
        c.credentials = Some(PathBuf::from("/etc/kojid/scm-credentials"));
        let p = srpm_plan(Input::Checkout(c.clone()), None).unwrap();
        assert_eq!(p.source_mounts.len(), 1);
        assert!(p.source_mounts[0].read_only);
        assert_eq!(p.source_mounts[0].target, PathBuf::from(CREDENTIALS_DIR));
        assert!(p
            .build_mounts
            .iter()
            .all(|m| m.target.as_path() != Path::new(CREDENTIALS_DIR)));
        c.credentials = Some(PathBuf::from("scm-credentials"));
        assert!(srpm_plan(Input::Checkout(c), None).is_err());
    }

    #[test]
    fn checkout_paths_stay_inside_the_copy() {
        for (workdir, spec) in [
            ("../x", "tiny.spec"),
            ("tiny", "/etc/x.spec"),
            ("tiny", "tiny/../../x.spec"),
            ("tiny//a", "tiny.spec"),
            ("tiny", "tiny/Makefile"),
        ] {
            let mut c = checkout(&[], false);
            c.workdir = workdir.to_owned();
            c.spec = spec.to_owned();
            assert!(
                matches!(
                    srpm_plan(Input::Checkout(c), None),
                    Err(Error::InvalidSpec(_))
                ),
                "{workdir} {spec}"
            );
        }
        let mut binaries = srpm_request(Input::Checkout(checkout(&[], false)));
        binaries.product = Product::Binaries;
        let p = plan(
            1,
            BuildrootMode::Tag,
            &binaries,
            &BuildrootOptions::default(),
            &["x86_64".to_owned()],
            None,
        );
        assert!(p.is_err());
    }

    #[test]
    fn an_srpm_is_unpacked_and_rebuilt_with_rpmbuild_bs() {
        let p = srpm_plan(
            Input::Srpm(PathBuf::from("/work/tasks/1/tiny-1.0-3.src.rpm")),
            Some(&srpm()),
        )
        .unwrap();
        let [step] = p.srpm_steps.as_slice() else {
            panic!("one step")
        };
        assert_eq!(step.user, RunAs::Builder);
        assert!(step.argv[3].starts_with("rpm -Uvh --nodeps /builddir/build/originals/tiny-1.0-3.src.rpm && /usr/bin/rpmbuild -bs"));
        assert_eq!(step.failure.as_ref().unwrap().0, "error building srpm");
        assert_eq!(p.method(), "rebuildSRPM");
        assert_eq!(
            plan_for(BuildrootMode::Tag, &request(&[])).method(),
            "buildArch"
        );
    }
}
