//! The buildroot plan of the buildArch adapter: everything a runner needs, as plain data, to
//! turn a task image into the buildroot kojid's `BuildRoot` would have made with mock, build an
//! SRPM in it and hand kojid the result it expects.
//!
//! Nothing here starts a container. [`plan`] reads the SRPM's header from disk and returns a
//! [`BuildrootPlan`]; the runner creates one long-lived container with the plan's
//! [`Mount`]s, copies the plan's [`ConfigFile`]s in, and `exec`s the plan's [`Step`]s in order.
//!
//! # What kojid and mock do, and how the plan mirrors it
//!
//! Facts read from koji 1.35.3 (`koji/__init__.py` `genMockConfig`, `builder/kojid`
//! `BuildRoot._writeMockConfig`/`init`/`build`/`getPackageList`, `BuildArchTask.handler`,
//! `koji/tasks.py` `find_arch`) and mock 6.7 (`backend.py` `Commands.build`,
//! `rebuild_installed_srpm`, `rebuild_package`; `buildroot.py` `_setup_build_dirs`,
//! `_prepare_rpm_macros`; `config.py` defaults):
//!
//! * kojid runs `mock --no-clean --target <task arch> --rebuild <srpm>`. mock does not build
//!   the SRPM it is given: as the build user it unpacks it (`rpm -Uvh --nodeps`), rebuilds a
//!   new SRPM from the spec inside the buildroot (`rpmbuild -bs --target <arch> --nodeps`),
//!   installs the BuildRequires of that *rebuilt* SRPM as root (repeating until the package
//!   set is stable, at most 10 times), then runs `rpmbuild -bb --target <arch> --nodeps` on the
//!   spec. The result dir gets `RPMS/*.rpm` and `SRPMS/*.rpm`, so the SRPM kojid uploads when
//!   `keep_srpm` is the rebuilt one, carrying the buildroot's vendor/packager/distribution
//!   (which is what `BuildArchTask.srpm_sanity_checks` verifies). The plan does the same.
//! * Specs with `%generate_buildrequires` (rpmlib(DynamicBuildRequires)) get mock's loop:
//!   `rpmbuild -br` (exit 0 or 11), install the requires of `SRPMS/*.buildreqs.nosrc.rpm`,
//!   delete those files, repeat with `--noprep` until stable (at most 10), then build with
//!   `-ba --noprep` (without `--nodeps`, as mock does with its default bootstrap chroot).
//! * rpmbuild runs as `bash --login -c '<command>'` (mock does, so `/etc/profile.d` applies),
//!   with the network off (mock's `rpmbuild_networking` is False unless the task set up DNS),
//!   and with `--noclean` (mock adds it under kojid: kojid's result dir lies inside the mock
//!   root, which turns mock's `cleanup_on_success` off).
//! * Macros go to the build user's `~/.rpmmacros` (`/builddir/.rpmmacros`), one
//!   `%name value` line each, like mock's `_prepare_rpm_macros`: `%_topdir /builddir/build`,
//!   `%_rpmfilename`, `%vendor`, `%packager`, `%distribution`, every tag `rpm.macro.*`
//!   (overriding those), then `%_host_cpu`/`%_host` (not overridable), and `%_buildhost`
//!   unless a tag sets it (mock sets it to the builder's FQDN).
//! * The buildroot repo is Koji's `<topdir>/repos/<tag>/<repo_id>/<canonArch>`, whose
//!   packages are reached through the relative `toplink` symlink, so a local repo needs the
//!   whole topdir mounted, not only the arch dir.
//!
//! # Decisions
//!
//! * Hermetic package manager: dnf always runs as
//!   `dnf -c /etc/koji-adjutant/dnf.conf --noplugins ...`. That config (mock's yum.conf
//!   options) sets `reposdir=/etc/koji-adjutant/yum.repos.d`, a directory no package owns,
//!   which holds only the Koji repo. Repo files that packages of the buildroot drop into
//!   `/etc/yum.repos.d` (fedora-repos does) are never read; no plugin can add repos.
//! * Macros live in `~/.rpmmacros`, where mock puts them, not in `/etc/rpm`: only rpmbuild
//!   (run as the build user) sees them, as under mock, and they take precedence over every
//!   macro file the buildroot's packages install.
//! * An image builds only its own arch family (see [`validate_arch`]): the buildroot is
//!   installed into the image's own root by the image's own dnf, so mock's personality-based
//!   builds (i686 on x86_64) would need a separate root this design does not have.
//! * For a noarch task kojid picks a random arch common to host and tag; the plan picks
//!   deterministically (the caller's preference, else the image's first arch, else the
//!   first sorted common arch) so equal tasks share a buildroot cache.
//! * The cache key is returned as canonical key *material* ([`cache_key_material`]); hashing
//!   it needs SHA-256, which the crate does not have (no hand-written crypto, and `std::hash`
//!   is not stable across Rust releases). The runner pipes it through `sha256sum`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};

/// The unprivileged build user of the task image (mock's `chrootuser`).
pub const BUILD_USER: &str = "mockbuild";
/// uid of [`BUILD_USER`] in the task image.
pub const BUILD_UID: u32 = 1000;
/// gid of [`BUILD_USER`]'s group `mock` in the task image.
pub const BUILD_GID: u32 = 135;
/// The build user's home (mock's `chroothome`).
pub const BUILD_HOME: &str = "/builddir";
/// rpm's `%_topdir` inside the buildroot (mock's `builddir`).
pub const TOPDIR: &str = "/builddir/build";
/// Where binary RPMs appear (flat, because of `%_rpmfilename`).
pub const RPMS_DIR: &str = "/builddir/build/RPMS";
/// Where the rebuilt SRPM appears.
pub const SRPMS_DIR: &str = "/builddir/build/SRPMS";
/// Where the input SRPM is mounted read-only (mock copies it to the same directory).
pub const ORIGINALS_DIR: &str = "/builddir/build/originals";
/// The build user's macro file, which mock writes too.
pub const MACROS_PATH: &str = "/builddir/.rpmmacros";
/// dnf's main config for every package manager step.
pub const DNF_CONF_PATH: &str = "/etc/koji-adjutant/dnf.conf";
/// The only directory dnf reads repo files from.
pub const REPOS_DIR: &str = "/etc/koji-adjutant/yum.repos.d";
/// The Koji repo file, inside [`REPOS_DIR`].
pub const REPO_FILE_PATH: &str = "/etc/koji-adjutant/yum.repos.d/koji.repo";
/// The system macro file that pins rpm's database location (see
/// [`BuildrootOptions::rpmdb_path`]); `/etc/rpm/macros.*` is read after the distribution's
/// own macro files by every rpm, so it wins over both Debian's and Fedora's defaults.
pub const RPMDB_MACROS_PATH: &str = "/etc/rpm/macros.zz-koji-adjutant-dbpath";
/// Where a local Koji topdir is mounted read-only (kojid's default topdir).
pub const KOJI_TOPDIR_MOUNT: &str = "/mnt/koji";
/// rpmbuild's path in the buildroot (mock's `rpmbuild_command`).
pub const RPMBUILD: &str = "/usr/bin/rpmbuild";

/// mock's `static_buildrequires_max_loops` and `dynamic_buildrequires_max_loops` defaults.
pub const MAX_BUILDREQUIRES_LOOPS: u32 = 10;

/// Packages kojid's `getPackageList` leaves out of a buildroot's package list.
const SKIPPED_PACKAGES: [&str; 2] = ["buildsys-build", "gpg-pubkey"];

/// mock's dnf4 `common_opts`, passed to every dnf call.
const DNF_COMMON_OPTS: [&str; 3] = [
    "--setopt=deltarpm=False",
    "--setopt=allow_vendor_change=yes",
    "--allowerasing",
];

/// Marker line that starts each package's block in a requires query's output.
const REQUIRES_MARKER: &str = "@@KOJI-ADJUTANT-PKG ";

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// A value of a tag's `extra` map (any JSON value the hub stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExtraValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<ExtraValue>),
    Map(BTreeMap<String, ExtraValue>),
}

impl ExtraValue {
    /// The value as Python's `str()` renders it, because kojid passes `str(value)` for
    /// `rpm.macro.*` and `rpm.env.*` (so `True` becomes `"True"`, `1` becomes `"1"`).
    pub fn python_str(&self) -> String {
        match self {
            ExtraValue::Str(s) => s.clone(),
            other => other.python_repr(),
        }
    }

    fn python_repr(&self) -> String {
        match self {
            ExtraValue::Null => "None".to_owned(),
            ExtraValue::Bool(true) => "True".to_owned(),
            ExtraValue::Bool(false) => "False".to_owned(),
            ExtraValue::Int(i) => i.to_string(),
            ExtraValue::Float(f) => python_float_repr(*f),
            ExtraValue::Str(s) => python_str_repr(s),
            ExtraValue::List(items) => {
                let inner: Vec<String> = items.iter().map(ExtraValue::python_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            ExtraValue::Map(map) => {
                let inner: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{}: {}", python_str_repr(k), v.python_repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }

    /// Python truthiness, which kojid/genMockConfig apply to flags such as
    /// `mock.yum.module_hotfixes` (`if opts.get('module_hotfixes')`).
    pub fn truthy(&self) -> bool {
        match self {
            ExtraValue::Null => false,
            ExtraValue::Bool(b) => *b,
            ExtraValue::Int(i) => *i != 0,
            ExtraValue::Float(f) => *f != 0.0,
            ExtraValue::Str(s) => !s.is_empty(),
            ExtraValue::List(l) => !l.is_empty(),
            ExtraValue::Map(m) => !m.is_empty(),
        }
    }

    /// Python's `int(value)`, which kojid applies to `mock.yum.best`.
    fn python_int(&self) -> Option<i64> {
        match self {
            ExtraValue::Bool(b) => Some(i64::from(*b)),
            ExtraValue::Int(i) => Some(*i),
            ExtraValue::Float(f) if f.is_finite() => Some(f.trunc() as i64),
            ExtraValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

fn python_str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The part of the hub's `getBuildConfig(tag, event)` answer that a buildroot depends on.
/// The hub returns more keys (perm, locked, maven_*, config_inheritance...); they are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BuildConfig {
    pub id: i64,
    pub name: String,
    /// Space-separated tag arches; `None` when neither the tag nor a parent sets them.
    #[serde(default)]
    pub arches: Option<String>,
    /// Tag extra, already inherited and with blocked keys removed by the hub.
    #[serde(default)]
    pub extra: BTreeMap<String, ExtraValue>,
}

/// The kojid options (`kojid.conf`) that shape a buildroot, with kojid's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildrootOptions {
    pub vendor: String,
    pub packager: String,
    pub distribution: String,
    /// Suffix of `%_host` (kojid's `mockhost`).
    pub mockhost: String,
    /// Seconds each rpmbuild may run (kojid's `rpmbuild_timeout`, 24 h).
    pub rpmbuild_timeout: u64,
    /// Whether the task's result includes the rebuilt SRPM (buildArch's `keep_srpm` task
    /// parameter; kojid's build task sets it for exactly one arch, so the default is off).
    pub keep_srpm: bool,
    /// The comps group installed first (BuildRoot's `install_group`; buildArch uses `build`).
    pub install_group: String,
    /// Value of `%_buildhost`, normally the builder's FQDN (`socket.getfqdn()`), which mock
    /// sets so that RPMs name the builder rather than the container.
    pub buildhost: Option<String>,
    /// Pin rpm's database to this path for every rpm and dnf call. Needed when the task image
    /// is not RPM-based (Debian's rpm keeps its database in `~/.rpmdb`, and installing the
    /// buildroot's own rpm would move it); leave `None` for an RPM-based image.
    pub rpmdb_path: Option<String>,
}

impl Default for BuildrootOptions {
    fn default() -> Self {
        BuildrootOptions {
            vendor: "Koji".to_owned(),
            packager: "Koji".to_owned(),
            distribution: "Koji".to_owned(),
            mockhost: "koji-linux-gnu".to_owned(),
            rpmbuild_timeout: 86400,
            keep_srpm: false,
            install_group: "build".to_owned(),
            buildhost: None,
            rpmdb_path: None,
        }
    }
}

/// Where the buildroot's repo (one arch of a Koji tag repo) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// On a local (NFS) Koji topdir. `arch_dir` must be inside `topdir`: the repo reaches its
    /// packages through `toplink`, a relative symlink up to `topdir`, so `topdir` is mounted.
    Local { arch_dir: PathBuf, topdir: PathBuf },
    /// The full URL of the arch repo, as dnf's `baseurl`.
    Url(String),
}

impl RepoLocation {
    /// The repo kojid would use with a local `topdir` (`PathInfo.repo(...)/<arch>`).
    pub fn from_topdir(topdir: &Path, tag_name: &str, repo_id: i64, br_arch: &str) -> Self {
        let arch_dir = topdir
            .join("repos")
            .join(tag_name)
            .join(repo_id.to_string())
            .join(br_arch);
        RepoLocation::Local {
            arch_dir,
            topdir: topdir.to_path_buf(),
        }
    }

    /// The repo kojid would use with `topurl` (`<topurl>/repos/<tag>/<repo_id>/<arch>`).
    pub fn from_topurl(topurl: &str, tag_name: &str, repo_id: i64, br_arch: &str) -> Self {
        RepoLocation::Url(format!(
            "{}/repos/{tag_name}/{repo_id}/{br_arch}",
            topurl.trim_end_matches('/')
        ))
    }
}

/// Everything [`plan`] needs for one buildArch task.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildrootInputs {
    pub task_id: i64,
    /// The task's arch: rpmbuild's `--target` (may be `noarch`).
    pub arch: String,
    /// The concrete arch of the buildroot when `arch` is `noarch` (kojid's `find_arch`
    /// result); `None` lets [`plan`] choose one (see [`choose_noarch_arch`]). Ignored for
    /// other arches, whose buildroot arch is the arch itself.
    pub buildroot_arch: Option<String>,
    /// The SRPM on the builder's disk.
    pub srpm: PathBuf,
    pub repo: RepoLocation,
    pub repo_id: i64,
    pub tag_name: String,
    pub build_config: BuildConfig,
    pub options: BuildrootOptions,
    /// Machine arches the task image runs natively (`uname -m` of the image), first = main.
    pub image_arches: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Arches
// ---------------------------------------------------------------------------------------------

/// koji's `canonArch`: the arch name Koji uses for repos and buildroots.
pub fn canon_arch(arch: &str) -> String {
    let is_ix86 = arch.len() == 4
        && arch.starts_with('i')
        && arch.ends_with("86")
        && arch.is_char_boundary(1)
        && arch.is_char_boundary(2);
    if is_ix86 || arch == "athlon" {
        "i386".to_owned()
    } else if arch == "ia32e" {
        "x86_64".to_owned()
    } else if arch == "ppc64le" {
        "ppc64le".to_owned()
    } else if arch.starts_with("ppc64") {
        "ppc64".to_owned()
    } else if arch.starts_with("sparc64") {
        "sparc64".to_owned()
    } else if arch.starts_with("sparc") {
        "sparc".to_owned()
    } else if arch.starts_with("alpha") {
        "alpha".to_owned()
    } else if arch.starts_with("arm") && arch.get(3..).is_some_and(|rest| rest.contains('h')) {
        "armhfp".to_owned()
    } else if arch.starts_with("arm") {
        "arm".to_owned()
    } else {
        arch.to_owned()
    }
}

/// The rpm target arches an image of machine arch `machine` builds natively.
///
/// | image (`uname -m`)          | buildable task arches (besides `noarch`)       |
/// |-----------------------------|------------------------------------------------|
/// | x86_64                      | x86_64, amd64, ia32e                           |
/// | i386, i486, i586, i686      | i386, i486, i586, i686, athlon                 |
/// | aarch64                     | aarch64                                        |
/// | armv7l, armv7hl, armhfp     | armv7hl, armv7hnl, armv7l, armhfp              |
/// | ppc64le                     | ppc64le                                        |
/// | ppc64                       | ppc64, ppc64p7                                 |
/// | s390x                       | s390x                                          |
/// | anything else               | itself                                         |
///
/// Narrower than rpm's `arch_compat` on purpose: the buildroot is installed into the image's
/// own root with the image's dnf, so an i686 buildroot cannot be laid over an x86_64 image
/// the way mock builds one in a fresh chroot under a 32-bit personality.
pub fn image_buildable_arches(machine: &str) -> Vec<&str> {
    match machine {
        "x86_64" | "amd64" => vec!["x86_64", "amd64", "ia32e"],
        "i386" | "i486" | "i586" | "i686" => vec!["i386", "i486", "i586", "i686", "athlon"],
        "aarch64" | "arm64" => vec!["aarch64"],
        "armv7l" | "armv7hl" | "armhfp" => vec!["armv7hl", "armv7hnl", "armv7l", "armhfp"],
        "ppc64le" => vec!["ppc64le"],
        "ppc64" => vec!["ppc64", "ppc64p7"],
        "s390x" => vec!["s390x"],
        other => vec![other],
    }
}

/// An arch the task image cannot build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedArch {
    pub arch: String,
    pub image_arches: Vec<String>,
}

impl fmt::Display for UnsupportedArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the task image ({}) cannot build arch {}",
            if self.image_arches.is_empty() {
                "no arches".to_owned()
            } else {
                self.image_arches.join(", ")
            },
            self.arch
        )
    }
}

impl std::error::Error for UnsupportedArch {}

/// An unbuildable arch fails the task like kojid's `find_arch` does: a build error.
impl From<UnsupportedArch> for Error {
    fn from(e: UnsupportedArch) -> Self {
        Error::Build {
            message: e.to_string(),
            log: None,
            exit_code: None,
        }
    }
}

/// Check that an image running `image_arches` can build `arch` (noarch always can).
pub fn validate_arch(arch: &str, image_arches: &[String]) -> Result<(), UnsupportedArch> {
    if arch == "noarch"
        || image_arches
            .iter()
            .any(|machine| image_buildable_arches(machine).contains(&arch))
    {
        Ok(())
    } else {
        Err(UnsupportedArch {
            arch: arch.to_owned(),
            image_arches: image_arches.to_vec(),
        })
    }
}

/// Pick the buildroot arch of a noarch task, like kojid's `find_arch`: a canonical arch that
/// both the image and the tag support. kojid picks randomly among them; this picks
/// `preferred` if possible, else the image's first arch, else the first in sorted order.
pub fn choose_noarch_arch(
    image_arches: &[String],
    tag_arches: Option<&str>,
    preferred: Option<&str>,
) -> Result<String, UnsupportedArch> {
    let unsupported = || UnsupportedArch {
        arch: "noarch".to_owned(),
        image_arches: image_arches.to_vec(),
    };
    let tag: BTreeSet<String> = tag_arches
        .unwrap_or("")
        .split_whitespace()
        .map(canon_arch)
        .collect();
    let buildable = |canon: &str| {
        image_arches.iter().any(|machine| {
            image_buildable_arches(machine)
                .iter()
                .any(|a| canon_arch(a) == canon)
        })
    };
    let common: Vec<&String> = tag.iter().filter(|a| buildable(a)).collect();
    if let Some(p) = preferred {
        let p = canon_arch(p);
        if common.iter().any(|a| **a == p) {
            return Ok(p);
        }
    }
    if let Some(first) = image_arches.first() {
        let first = canon_arch(first);
        if common.iter().any(|a| **a == first) {
            return Ok(first);
        }
    }
    common.first().map(|a| (*a).clone()).ok_or_else(unsupported)
}

// ---------------------------------------------------------------------------------------------
// SRPM header
// ---------------------------------------------------------------------------------------------

const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
const LEAD_SIZE: usize = 96;
const LEAD_TYPE_SOURCE: u16 = 1;
/// rpm's own limits on a header (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`).
const HEADER_TAGS_MAX: u32 = 0xffff;
const HEADER_DATA_MAX: u32 = 0x0fff_ffff;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_DISTRIBUTION: u32 = 1010;
const TAG_VENDOR: u32 = 1011;
const TAG_PACKAGER: u32 = 1015;
const TAG_OLDFILENAMES: u32 = 1027;
const TAG_SOURCERPM: u32 = 1044;
const TAG_SOURCEPACKAGE: u32 = 1106;
const TAG_BASENAMES: u32 = 1117;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// What the plan needs from an SRPM, read from its lead and main header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrpmInfo {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<i64>,
    /// The lead's name field (`name-[epoch:]version-release`, truncated to 65 bytes; its
    /// format varies between rpm versions, so it is informational only).
    pub lead_name: String,
    /// The spec's file name among the SRPM's files (the first `*.spec`, as mock takes it).
    pub spec_file: Option<String>,
    pub vendor: Option<String>,
    pub packager: Option<String>,
    pub distribution: Option<String>,
}

impl SrpmInfo {
    /// kojid's `srpm_sanity_checks`: a kept SRPM must have packager, vendor and distribution.
    pub fn sanity_check(&self) -> Result<()> {
        for (field, value) in [
            ("packager", &self.packager),
            ("vendor", &self.vendor),
            ("distribution", &self.distribution),
        ] {
            if value.as_deref().unwrap_or("").is_empty() {
                return Err(Error::Build {
                    message: format!("The build system failed to set the {field} tag"),
                    log: None,
                    exit_code: None,
                });
            }
        }
        Ok(())
    }
}

/// Read and validate an SRPM: lead magic, lead type "source", and the main header's
/// name/version/release/epoch, spec file and vendor/packager/distribution.
pub fn read_srpm(path: &Path) -> Result<SrpmInfo> {
    let shown = path.display();
    let mut file =
        File::open(path).map_err(|e| Error::invalid(format!("cannot read SRPM {shown}: {e}")))?;
    let lead = read_lead(&mut file, path)?;
    if lead.kind != LEAD_TYPE_SOURCE {
        return Err(Error::invalid(format!(
            "{shown} is a binary RPM, not a source RPM"
        )));
    }
    let corrupt = |what: &str| Error::invalid(format!("{shown} is not a valid RPM: {what}"));
    // The signature header follows the lead, padded to 8 bytes; skip it.
    let (sig_count, sig_size) = read_header_intro(&mut file).map_err(|m| corrupt(&m))?;
    let sig_len = u64::from(sig_count) * 16 + u64::from(sig_size);
    let padding = (8 - sig_len % 8) % 8;
    file.seek(SeekFrom::Current((sig_len + padding) as i64))
        .map_err(|e| Error::invalid(format!("cannot read SRPM {shown}: {e}")))?;
    let (count, size) = read_header_intro(&mut file).map_err(|m| corrupt(&m))?;
    // Check the sizes against the file before allocating them: a corrupt header must not
    // make us allocate hundreds of megabytes only to hit the end of the file.
    let wanted = u64::from(count) * 16 + u64::from(size);
    let available = file
        .metadata()
        .and_then(|m| Ok(m.len().saturating_sub(file.stream_position()?)))
        .map_err(|e| Error::invalid(format!("cannot read SRPM {shown}: {e}")))?;
    if wanted > available {
        return Err(corrupt("truncated header"));
    }
    let mut index = vec![0u8; count as usize * 16];
    let mut store = vec![0u8; size as usize];
    file.read_exact(&mut index)
        .and_then(|()| file.read_exact(&mut store))
        .map_err(|_| corrupt("truncated header"))?;
    let header = Header { index, store };
    info_from_header(&header, lead.name).map_err(|m| corrupt(&m))
}

struct Lead {
    kind: u16,
    name: String,
}

fn read_lead(file: &mut File, path: &Path) -> Result<Lead> {
    let shown = path.display();
    let mut lead = [0u8; LEAD_SIZE];
    let mut filled = 0;
    while filled < LEAD_SIZE {
        match file.read(lead.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::invalid(format!("cannot read SRPM {shown}: {e}"))),
        }
    }
    if filled < LEAD_SIZE || lead.get(0..4) != Some(&LEAD_MAGIC[..]) {
        return Err(Error::invalid(format!("{shown} is not an RPM file")));
    }
    let kind = be16(&lead, 6).unwrap_or(u16::MAX);
    let name_field = lead.get(10..76).unwrap_or_default();
    let name_len = name_field
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(name_field.len());
    let name = String::from_utf8_lossy(name_field.get(..name_len).unwrap_or_default()).into_owned();
    Ok(Lead { kind, name })
}

/// Read a header's 16-byte intro and return (index entries, store size), within rpm's limits.
fn read_header_intro(file: &mut File) -> std::result::Result<(u32, u32), String> {
    let mut intro = [0u8; 16];
    file.read_exact(&mut intro)
        .map_err(|_| "truncated header".to_owned())?;
    if intro.get(0..4) != Some(&HEADER_MAGIC[..]) {
        return Err("bad header magic".to_owned());
    }
    let count = be32(&intro, 8).unwrap_or(u32::MAX);
    let size = be32(&intro, 12).unwrap_or(u32::MAX);
    if count > HEADER_TAGS_MAX || size > HEADER_DATA_MAX {
        return Err(format!("header too large ({count} tags, {size} bytes)"));
    }
    Ok((count, size))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// A main header: 16-byte index entries (tag, type, offset, count) over a data store.
struct Header {
    index: Vec<u8>,
    store: Vec<u8>,
}

struct Entry {
    kind: u32,
    offset: usize,
    count: u32,
}

impl Header {
    fn entry(&self, tag: u32) -> Option<Entry> {
        self.index.chunks_exact(16).find_map(|e| {
            if be32(e, 0)? != tag {
                return None;
            }
            let offset = usize::try_from(i32::from_be_bytes(be32(e, 8)?.to_be_bytes())).ok()?;
            Some(Entry {
                kind: be32(e, 4)?,
                offset,
                count: be32(e, 12)?,
            })
        })
    }

    fn has(&self, tag: u32) -> bool {
        self.entry(tag).is_some()
    }

    /// The NUL-terminated strings an entry holds, bounds-checked against the store.
    fn strings(&self, tag: u32) -> std::result::Result<Option<Vec<String>>, String> {
        let Some(entry) = self.entry(tag) else {
            return Ok(None);
        };
        if !matches!(
            entry.kind,
            TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING
        ) {
            return Err(format!("tag {tag} is not a string (type {})", entry.kind));
        }
        let mut rest = self
            .store
            .get(entry.offset..)
            .ok_or_else(|| format!("tag {tag} points outside the header"))?;
        let wanted = if entry.kind == TYPE_STRING {
            1
        } else {
            entry.count
        };
        if wanted as usize > rest.len() {
            return Err(format!("tag {tag} has more strings than the header holds"));
        }
        let mut out = Vec::with_capacity(wanted as usize);
        for _ in 0..wanted {
            let end = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| format!("tag {tag} has an unterminated string"))?;
            out.push(String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned());
            rest = rest.get(end + 1..).unwrap_or_default();
        }
        Ok(Some(out))
    }

    fn string(&self, tag: u32) -> std::result::Result<Option<String>, String> {
        Ok(self.strings(tag)?.and_then(|v| v.into_iter().next()))
    }

    fn int32(&self, tag: u32) -> std::result::Result<Option<i64>, String> {
        let Some(entry) = self.entry(tag) else {
            return Ok(None);
        };
        if entry.kind != TYPE_INT32 || entry.count == 0 {
            return Err(format!("tag {tag} is not an int32"));
        }
        be32(&self.store, entry.offset)
            .map(|v| Some(i64::from(v)))
            .ok_or_else(|| format!("tag {tag} points outside the header"))
    }
}

fn info_from_header(header: &Header, lead_name: String) -> std::result::Result<SrpmInfo, String> {
    if header.has(TAG_SOURCERPM) && !header.has(TAG_SOURCEPACKAGE) {
        return Err("the header is a binary package's".to_owned());
    }
    let required = |tag: u32, what: &str| {
        header
            .string(tag)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("no {what} in the header"))
    };
    let files = match header.strings(TAG_BASENAMES)? {
        Some(files) => files,
        None => header.strings(TAG_OLDFILENAMES)?.unwrap_or_default(),
    };
    let spec_file = files
        .into_iter()
        .map(|f| f.rsplit('/').next().unwrap_or_default().to_owned())
        .find(|f| f.ends_with(".spec"));
    Ok(SrpmInfo {
        name: required(TAG_NAME, "name")?,
        version: required(TAG_VERSION, "version")?,
        release: required(TAG_RELEASE, "release")?,
        epoch: header.int32(TAG_EPOCH)?,
        lead_name,
        spec_file,
        vendor: header.string(TAG_VENDOR)?,
        packager: header.string(TAG_PACKAGER)?,
        distribution: header.string(TAG_DISTRIBUTION)?,
    })
}

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

/// Who a step runs as inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    Root,
    /// [`BUILD_USER`] (uid [`BUILD_UID`], gid [`BUILD_GID`]).
    Builder,
}

impl RunAs {
    /// The `User` value of a Podman exec (`uid:gid`).
    pub fn podman_user(self) -> String {
        match self {
            RunAs::Root => "0:0".to_owned(),
            RunAs::Builder => format!("{BUILD_UID}:{BUILD_GID}"),
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

/// One command to `exec` in the buildroot container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Short human name, for logs and error messages.
    pub name: String,
    pub argv: Vec<String>,
    pub user: RunAs,
    pub workdir: String,
    /// The complete environment of the exec.
    pub env: Vec<(String, String)>,
    /// Where output goes; for a query step only stderr goes there (see `capture_stdout`).
    pub log: LogTarget,
    /// The runner hands stdout to the step's parser instead of the log.
    pub capture_stdout: bool,
    /// Whether the step needs the network (only dnf steps on a URL repo do).
    pub network: bool,
    pub timeout_secs: Option<u64>,
    /// Exit codes that mean success.
    pub ok_exit_codes: Vec<i64>,
}

/// A file the runner copies into the container before the first step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Absolute container path; the runner creates missing parent directories.
    pub dest: String,
    pub content: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// A bind mount of the container (always read-only here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

/// Container directories whose files are the build's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultDirs {
    pub rpms: String,
    pub srpms: String,
}

/// Everything the runner needs to make the buildroot and build the SRPM in it.
///
/// Order of work: create the container with `mounts`; copy `files()`; run `init_steps`
/// (root.log); run `package_list` and send it as the buildroot list; run `unpack_step`; then
/// up to [`MAX_BUILDREQUIRES_LOOPS`] times: `rebuild_srpm_step`, `srpm_requires_query`
/// (parse with [`parse_requires_query`], exactly one SRPM expected), `install_step(reqs)`,
/// stopping when the package list no longer changes; if the SRPM uses dynamic
/// BuildRequires, loop `dynamic_buildrequires_step(first)`, `buildreqs_query`,
/// `install_step`, `remove_buildreqs_step` the same way; then `build_step(dynamic)`; run
/// `package_list` again; collect `result_dirs`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildrootPlan {
    pub task_id: i64,
    /// Canonical arch of the buildroot (repo arch, `newBuildRoot`'s arch).
    pub buildroot_arch: String,
    /// `%_host_cpu` (kojid's `target_arch`: the buildroot arch, armhfp spelled armv7hl).
    pub target_arch: String,
    /// rpmbuild's `--target` (the task arch, noarch included).
    pub rpmbuild_target: String,
    pub repo_id: i64,
    pub tag_name: String,
    /// dnf's baseurl for the buildroot repo, as seen inside the container.
    pub repo_baseurl: String,
    pub mounts: Vec<Mount>,
    pub dnf_conf: ConfigFile,
    pub repo_file: ConfigFile,
    pub macros_file: ConfigFile,
    pub rpmdb_macros_file: Option<ConfigFile>,
    /// Environment of build-user steps (mock's `environment` plus tag `rpm.env.*`).
    pub environment: Vec<(String, String)>,
    /// Environment of root (package manager) steps: the above with root's HOME and
    /// `LC_MESSAGES=C.UTF-8`, as mock runs dnf.
    pub root_environment: Vec<(String, String)>,
    pub init_steps: Vec<Step>,
    /// The input SRPM inside the container (mounted read-only).
    pub srpm_path: String,
    /// The spec inside the container after `unpack_step`.
    pub spec_path: String,
    pub unpack_step: Step,
    pub rebuild_srpm_step: Step,
    pub srpm_requires_query: Step,
    pub buildreqs_query: Step,
    pub remove_buildreqs_step: Step,
    pub package_list: Step,
    pub result_dirs: ResultDirs,
    /// Container globs of extra logs kojid collects from a mock root (`/var/log/dnf*.log`).
    pub extra_log_globs: Vec<String>,
    pub rpmbuild_timeout: u64,
    pub keep_srpm: bool,
    /// Tag `mock.*` settings that mock honours but that do not apply here, for the log.
    pub ignored_extra: Vec<String>,
    kit: StepKit,
}

impl BuildrootPlan {
    /// The files to copy in before the first step.
    pub fn files(&self) -> Vec<&ConfigFile> {
        let mut files = vec![&self.dnf_conf, &self.repo_file, &self.macros_file];
        files.extend(self.rpmdb_macros_file.as_ref());
        files
    }

    /// The dnf command line every package manager step starts with.
    pub fn dnf_argv(&self) -> &[String] {
        &self.kit.dnf_argv
    }

    /// Install `reqs` (BuildRequires as printed by rpm, e.g. `make >= 4`) as root, like
    /// mock's builddep; `None` when there is nothing to install.
    pub fn install_step(&self, reqs: &[String]) -> Option<Step> {
        if reqs.is_empty() {
            return None;
        }
        let mut argv = self.kit.dnf_argv.clone();
        argv.push("install".to_owned());
        argv.push("--".to_owned());
        argv.extend(reqs.iter().cloned());
        Some(self.kit.dnf_step("install build requirements", argv))
    }

    /// One round of `%generate_buildrequires` (mock's `rpmbuild -br`; exit 11 means "more
    /// requirements"). Rounds after the first skip %prep, as mock does.
    pub fn dynamic_buildrequires_step(&self, first: bool) -> Step {
        let mode: &[&str] = if first {
            &["-br"]
        } else {
            &["-br", "--noprep"]
        };
        let mut step = self
            .kit
            .rpmbuild_step("generate dynamic build requirements", mode, true);
        step.ok_exit_codes = vec![0, 11];
        step
    }

    /// The build. With dynamic BuildRequires mock runs `-ba --noprep` (rewriting the SRPM
    /// with the generated requirements) and lets rpmbuild check them.
    pub fn build_step(&self, dynamic_buildrequires: bool) -> Step {
        if dynamic_buildrequires {
            self.kit.rpmbuild_step("build", &["-ba", "--noprep"], false)
        } else {
            self.kit.rpmbuild_step("build", &["-bb"], true)
        }
    }
}

/// What every step of one plan shares; makes the steps.
#[derive(Debug, Clone, PartialEq)]
struct StepKit {
    environment: Vec<(String, String)>,
    root_environment: Vec<(String, String)>,
    dnf_argv: Vec<String>,
    /// dnf reaches the repo over the network (a URL repo, not a mounted topdir).
    dnf_network: bool,
    rpmbuild_target: String,
    spec_path: String,
    rpmbuild_timeout: u64,
}

impl StepKit {
    fn step(&self, name: &str, argv: Vec<String>, user: RunAs) -> Step {
        let (workdir, env) = match user {
            RunAs::Root => ("/", &self.root_environment),
            RunAs::Builder => (BUILD_HOME, &self.environment),
        };
        Step {
            name: name.to_owned(),
            argv,
            user,
            workdir: workdir.to_owned(),
            env: env.clone(),
            log: LogTarget::RootLog,
            capture_stdout: false,
            network: false,
            timeout_secs: None,
            ok_exit_codes: vec![0],
        }
    }

    fn dnf_step(&self, name: &str, argv: Vec<String>) -> Step {
        Step {
            network: self.dnf_network,
            ..self.step(name, argv, RunAs::Root)
        }
    }

    /// A query whose stdout the runner parses (stderr goes to root.log).
    fn query(&self, name: &str, argv: Vec<String>, user: RunAs) -> Step {
        Step {
            capture_stdout: true,
            ..self.step(name, argv, user)
        }
    }

    /// rpmbuild as mock runs it: `bash --login -c`, as the build user, no network,
    /// rpmbuild_timeout, build.log.
    fn rpmbuild_step(&self, name: &str, mode: &[&str], nodeps: bool) -> Step {
        let mut cmd: Vec<&str> = vec![RPMBUILD];
        cmd.extend(mode);
        cmd.extend(["--noclean", "--target", &self.rpmbuild_target]);
        if nodeps {
            cmd.push("--nodeps");
        }
        cmd.push(&self.spec_path);
        let line: Vec<String> = cmd.iter().map(|a| shell_quote(a)).collect();
        let argv = vec![
            "bash".to_owned(),
            "--login".to_owned(),
            "-c".to_owned(),
            line.join(" "),
        ];
        Step {
            log: LogTarget::BuildLog,
            timeout_secs: Some(self.rpmbuild_timeout),
            ..self.step(name, argv, RunAs::Builder)
        }
    }
}

/// Plan the buildroot for `inputs`, reading the SRPM's header from disk.
pub fn plan(inputs: &BuildrootInputs) -> Result<BuildrootPlan> {
    let srpm = read_srpm(&inputs.srpm)?;
    plan_with_srpm(inputs, &srpm)
}

/// [`plan`] for an SRPM already read.
pub fn plan_with_srpm(inputs: &BuildrootInputs, srpm: &SrpmInfo) -> Result<BuildrootPlan> {
    let extra = &inputs.build_config.extra;
    if inputs.build_config.name != inputs.tag_name {
        return Err(Error::invalid(format!(
            "tag/repo mismatch: build config is for {} but the repo is {}'s",
            inputs.build_config.name, inputs.tag_name
        )));
    }
    validate_arch(&inputs.arch, &inputs.image_arches)?;
    let chosen = if inputs.arch == "noarch" {
        match &inputs.buildroot_arch {
            Some(a) => a.clone(),
            None => choose_noarch_arch(
                &inputs.image_arches,
                inputs.build_config.arches.as_deref(),
                None,
            )?,
        }
    } else {
        inputs.arch.clone()
    };
    validate_arch(&chosen, &inputs.image_arches)?;
    let buildroot_arch = canon_arch(&chosen);
    let target_arch = if chosen == "armhfp" {
        "armv7hl".to_owned()
    } else {
        chosen.clone()
    };

    let spec_file = srpm.spec_file.as_deref().ok_or_else(|| {
        Error::invalid(format!(
            "no spec file found in SRPM {}",
            inputs.srpm.display()
        ))
    })?;
    if spec_file.contains('/') || spec_file.starts_with('.') {
        return Err(Error::invalid(format!(
            "bad spec file name in SRPM: {spec_file}"
        )));
    }
    let srpm_name = inputs
        .srpm
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".rpm"))
        .ok_or_else(|| Error::invalid(format!("bad SRPM file name: {}", inputs.srpm.display())))?;

    let (repo_baseurl, mut mounts) = repo_access(&inputs.repo)?;
    let srpm_path = format!("{ORIGINALS_DIR}/{srpm_name}");
    mounts.push(Mount {
        host: inputs.srpm.clone(),
        container: srpm_path.clone(),
        read_only: true,
    });

    let repo_name = repo_section_name(&inputs.tag_name, inputs.repo_id);
    let root_file = |dest: &str, content: String| ConfigFile {
        dest: dest.to_owned(),
        content,
        uid: 0,
        gid: 0,
        mode: 0o644,
    };
    let repo_file = root_file(
        REPO_FILE_PATH,
        repo_file_content(&repo_name, &repo_baseurl, extra),
    );
    let dnf_conf = root_file(DNF_CONF_PATH, dnf_conf_content(extra)?);
    let macros_file = ConfigFile {
        dest: MACROS_PATH.to_owned(),
        content: macros_content(&macros(inputs, &target_arch)?),
        uid: BUILD_UID,
        gid: BUILD_GID,
        mode: 0o644,
    };
    let rpmdb_path = inputs.options.rpmdb_path.as_deref();
    let rpmdb_macros_file = match rpmdb_path {
        Some(p) => {
            if !p.starts_with('/') {
                return Err(Error::invalid(format!(
                    "rpmdb_path must be absolute: {p:?}"
                )));
            }
            check_macro_value("%_dbpath", p)?;
            Some(root_file(RPMDB_MACROS_PATH, format!("%_dbpath {p}\n")))
        }
        None => None,
    };

    let environment = environment(extra)?;
    let mut root_env: BTreeMap<String, String> = environment.iter().cloned().collect();
    root_env.insert("HOME".to_owned(), "/root".to_owned());
    root_env.insert("LC_MESSAGES".to_owned(), "C.UTF-8".to_owned());

    let mut dnf_argv: Vec<String> = vec![
        "dnf".to_owned(),
        "-c".to_owned(),
        DNF_CONF_PATH.to_owned(),
        "--noplugins".to_owned(),
    ];
    if let Some(v) = extra.get("mock.releasever").filter(|v| v.truthy()) {
        dnf_argv.push(format!("--releasever={}", v.python_str()));
    }
    dnf_argv.extend(DNF_COMMON_OPTS.iter().map(|o| (*o).to_owned()));

    let kit = StepKit {
        environment: environment.clone(),
        root_environment: root_env.into_iter().collect(),
        dnf_argv,
        dnf_network: !repo_baseurl.starts_with("file:"),
        rpmbuild_target: inputs.arch.clone(),
        spec_path: format!("{TOPDIR}/SPECS/{spec_file}"),
        rpmbuild_timeout: inputs.options.rpmbuild_timeout,
    };
    let unpack_step = kit.step(
        "unpack SRPM",
        vec![
            "rpm".to_owned(),
            "-Uvh".to_owned(),
            "--nodeps".to_owned(),
            srpm_path.clone(),
        ],
        RunAs::Builder,
    );
    let plan = BuildrootPlan {
        task_id: inputs.task_id,
        buildroot_arch,
        target_arch,
        rpmbuild_target: inputs.arch.clone(),
        repo_id: inputs.repo_id,
        tag_name: inputs.tag_name.clone(),
        repo_baseurl,
        mounts,
        dnf_conf,
        repo_file,
        macros_file,
        rpmdb_macros_file,
        root_environment: kit.root_environment.clone(),
        environment,
        init_steps: init_steps(&kit, extra, &inputs.options.install_group)?,
        srpm_path,
        spec_path: kit.spec_path.clone(),
        unpack_step,
        rebuild_srpm_step: kit.rpmbuild_step("rebuild SRPM", &["-bs"], true),
        srpm_requires_query: requires_query(&kit, "query SRPM requires", "*.src.rpm"),
        buildreqs_query: requires_query(
            &kit,
            "query dynamic build requires",
            "*.buildreqs.nosrc.rpm",
        ),
        remove_buildreqs_step: kit.step(
            "remove buildreqs.nosrc.rpm",
            find_argv("*.buildreqs.nosrc.rpm", &["-delete"]),
            RunAs::Builder,
        ),
        package_list: kit.query(
            "list buildroot packages",
            package_list_query(rpmdb_path),
            RunAs::Root,
        ),
        result_dirs: ResultDirs {
            rpms: RPMS_DIR.to_owned(),
            srpms: SRPMS_DIR.to_owned(),
        },
        extra_log_globs: vec!["/var/log/dnf*.log".to_owned()],
        rpmbuild_timeout: inputs.options.rpmbuild_timeout,
        keep_srpm: inputs.options.keep_srpm,
        ignored_extra: ignored_extra(extra),
        kit,
    };
    tracing::debug!(
        task_id = plan.task_id,
        arch = %plan.buildroot_arch,
        repo = %plan.repo_baseurl,
        "planned buildroot"
    );
    Ok(plan)
}

/// `find` over SRPMS/ for files matching `pattern`, then `action`; no shell needed.
fn find_argv(pattern: &str, action: &[&str]) -> Vec<String> {
    [
        "find",
        SRPMS_DIR,
        "-maxdepth",
        "1",
        "-type",
        "f",
        "-name",
        pattern,
    ]
    .iter()
    .chain(action)
    .map(|s| (*s).to_owned())
    .collect()
}

/// A query printing, for every matching package in SRPMS/, a marker line and its requires
/// (`name op version`, the form `rpm -qp --requires` prints). One rpm process prints them
/// all, so the output is in order.
fn requires_query(kit: &StepKit, name: &str, pattern: &str) -> Step {
    let qf = format!("{REQUIRES_MARKER}%{{NAME}}\\n[%{{REQUIRENEVRS}}\\n]");
    let argv = find_argv(pattern, &["-exec", "rpm", "-qp", "--qf", &qf, "{}", "+"]);
    kit.query(name, argv, RunAs::Builder)
}

fn init_steps(
    kit: &StepKit,
    extra: &BTreeMap<String, ExtraValue>,
    install_group: &str,
) -> Result<Vec<Step>> {
    if install_group.is_empty()
        || install_group.starts_with('-')
        || install_group
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(format!(
            "bad install group name: {install_group:?}"
        )));
    }
    let mut mkdir: Vec<String> = ["install", "-d", "-m", "0755", "-o"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    mkdir.push(BUILD_UID.to_string());
    mkdir.push("-g".to_owned());
    mkdir.push(BUILD_GID.to_string());
    mkdir.push(BUILD_HOME.to_owned());
    mkdir.push(TOPDIR.to_owned());
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
        .map(|d| format!("{TOPDIR}/{d}")),
    );
    let mut steps = vec![kit.step("create build directories", mkdir, RunAs::Root)];
    for (action, modules) in module_setup_commands(extra)? {
        let mut argv = kit.dnf_argv.clone();
        argv.push("module".to_owned());
        argv.push(action.clone());
        argv.extend(modules);
        steps.push(kit.dnf_step(&format!("dnf module {action}"), argv));
    }
    let mut install = kit.dnf_argv.clone();
    install.push("install".to_owned());
    install.push(format!("@{install_group}"));
    steps.push(kit.dnf_step(&format!("install @{install_group}"), install));
    steps.push(kit.step(
        "log kernel version",
        vec!["uname".to_owned(), "-r".to_owned()],
        RunAs::Root,
    ));
    Ok(steps)
}

/// mock's `module_setup_commands`: `[[action, "mod1, mod2"], ...]`.
fn module_setup_commands(
    extra: &BTreeMap<String, ExtraValue>,
) -> Result<Vec<(String, Vec<String>)>> {
    let Some(value) = extra.get("mock.module_setup_commands") else {
        return Ok(Vec::new());
    };
    let bad = || {
        Error::invalid(format!(
            "mock.module_setup_commands must be a list of [action, modules] pairs, got {}",
            value.python_repr()
        ))
    };
    let ExtraValue::List(commands) = value else {
        return if value.truthy() {
            Err(bad())
        } else {
            Ok(Vec::new())
        };
    };
    let mut out = Vec::new();
    for command in commands {
        let ExtraValue::List(pair) = command else {
            return Err(bad());
        };
        let [ExtraValue::Str(action), modules] = pair.as_slice() else {
            return Err(bad());
        };
        if action.is_empty() || action.starts_with('-') || action.contains(char::is_whitespace) {
            return Err(bad());
        }
        let modules: Vec<String> = if modules.truthy() {
            modules
                .python_str()
                .trim()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        out.push((action.clone(), modules));
    }
    Ok(out)
}

/// The repo's baseurl inside the container, and the mounts it needs.
fn repo_access(repo: &RepoLocation) -> Result<(String, Vec<Mount>)> {
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
            // Least privilege: the arch dir (repodata, toplink) here; the package directories
            // its pkglist names come from [`repo_package_mounts`] (it reads the pkglist).
            let mounts = vec![Mount {
                host: arch_dir.clone(),
                container: format!("{KOJI_TOPDIR_MOUNT}/{rel}"),
                read_only: true,
            }];
            Ok((baseurl, mounts))
        }
    }
}

/// The package directories a local repo's `pkglist` points to, each mounted read-only at its
/// place under the mounted topdir so the repo's relative `toplink` resolves to them and to
/// nothing else of the topdir. A URL repo needs none.
pub fn repo_package_mounts(repo: &RepoLocation) -> Result<Vec<Mount>> {
    let RepoLocation::Local { arch_dir, topdir } = repo else {
        return Ok(Vec::new());
    };
    Ok(
        crate::core::createrepo::pkglist_package_dirs(topdir, arch_dir)?
            .into_iter()
            .map(|(host, rel)| Mount {
                host,
                container: format!("{KOJI_TOPDIR_MOUNT}/{}", rel.display()),
                read_only: true,
            })
            .collect(),
    )
}

/// A dnf repo id for the tag's repo: `koji-<tag>-<repo_id>`, with characters dnf does not
/// allow in repo ids replaced by `_`.
fn repo_section_name(tag_name: &str, repo_id: i64) -> String {
    let tag: String = tag_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("koji-{tag}-{repo_id}")
}

/// The repo file: genMockConfig's `[build]` section under a descriptive id.
fn repo_file_content(name: &str, baseurl: &str, extra: &BTreeMap<String, ExtraValue>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "[{name}]");
    let _ = writeln!(out, "name={name}");
    let _ = writeln!(out, "baseurl={baseurl}");
    out.push_str("enabled=1\ngpgcheck=0\nskip_if_unavailable=False\n");
    if extra
        .get("mock.yum.module_hotfixes")
        .is_some_and(ExtraValue::truthy)
    {
        out.push_str("module_hotfixes=1\n");
    }
    out
}

/// dnf's main config: genMockConfig's yum.conf `[main]` options, repos only from
/// [`REPOS_DIR`]. `best` (tag `mock.yum.best`) is a main option in dnf, so it goes here
/// (genMockConfig writes it into the repo section).
fn dnf_conf_content(extra: &BTreeMap<String, ExtraValue>) -> Result<String> {
    let mut out = String::from("[main]\n");
    let _ = writeln!(out, "reposdir={REPOS_DIR}");
    out.push_str(
        "cachedir=/var/cache/koji-adjutant/dnf\n\
         debuglevel=1\n\
         retries=20\n\
         obsoletes=1\n\
         gpgcheck=0\n\
         assumeyes=1\n\
         keepcache=1\n\
         install_weak_deps=0\n\
         strict=1\n",
    );
    if let Some(best) = extra.get("mock.yum.best") {
        let n = best.python_int().ok_or_else(|| {
            Error::invalid(format!(
                "mock.yum.best must be an integer, got {}",
                best.python_repr()
            ))
        })?;
        let _ = writeln!(out, "best={n}");
    }
    Ok(out)
}

/// The macros of the buildroot, in genMockConfig's precedence.
fn macros(inputs: &BuildrootInputs, target_arch: &str) -> Result<BTreeMap<String, String>> {
    let opts = &inputs.options;
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    m.insert(
        "%_rpmfilename".to_owned(),
        "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm".to_owned(),
    );
    m.insert("%vendor".to_owned(), opts.vendor.clone());
    m.insert("%packager".to_owned(), opts.packager.clone());
    m.insert("%distribution".to_owned(), opts.distribution.clone());
    for (key, value) in &inputs.build_config.extra {
        if let Some(name) = key.strip_prefix("rpm.macro.") {
            m.insert(format!("%{name}"), value.python_str());
        }
    }
    m.insert("%_topdir".to_owned(), TOPDIR.to_owned());
    m.insert("%_host_cpu".to_owned(), target_arch.to_owned());
    m.insert(
        "%_host".to_owned(),
        format!("{target_arch}-{}", opts.mockhost),
    );
    if let Some(host) = &opts.buildhost {
        m.entry("%_buildhost".to_owned())
            .or_insert_with(|| host.clone());
    }
    for (name, value) in &m {
        check_macro_name(name)?;
        check_macro_value(name, value)?;
    }
    Ok(m)
}

/// mock refuses a macro whose name is empty or not one word.
fn check_macro_name(name: &str) -> Result<()> {
    if name.len() < 2 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(format!("bad rpm macro name: {name:?}")));
    }
    Ok(())
}

/// A value must fit on its one line of the macro file: a newline would start another
/// definition and a trailing backslash would swallow the next one. mock refuses empty values.
fn check_macro_value(name: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(format!(
            "rpm macro {name} has an empty value"
        )));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(Error::invalid(format!(
            "rpm macro {name} has a line break or NUL in its value: {value:?}"
        )));
    }
    if value.ends_with('\\') {
        return Err(Error::invalid(format!(
            "rpm macro {name} ends with a backslash: {value:?}"
        )));
    }
    Ok(())
}

fn macros_content(macros: &BTreeMap<String, String>) -> String {
    let mut out = String::from("# Generated by koji-adjutant\n");
    for (name, value) in macros {
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// The build environment: mock's default `environment`, tag `rpm.env.*` over it, and
/// `HOME` forced to the build user's home afterwards, as mock does.
fn environment(extra: &BTreeMap<String, ExtraValue>) -> Result<Vec<(String, String)>> {
    let mut env: BTreeMap<String, String> = [
        ("TERM", "vt100"),
        ("SHELL", "/bin/bash"),
        ("HOME", BUILD_HOME),
        ("HOSTNAME", "mock"),
        ("PATH", "/usr/bin:/bin:/usr/sbin:/sbin"),
        ("PROMPT_COMMAND", r#"printf "\033]0;<mock-chroot>\007""#),
        ("PS1", r"<mock-chroot> \s-\v\$ "),
        ("LANG", "C.UTF-8"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (key, value) in extra {
        if let Some(name) = key.strip_prefix("rpm.env.") {
            let valid_name = name
                .chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !valid_name {
                return Err(Error::invalid(format!(
                    "bad environment variable name in tag extra {key:?}"
                )));
            }
            let value = value.python_str();
            if value.contains('\0') {
                return Err(Error::invalid(format!("{key} contains a NUL byte")));
            }
            env.insert(name.to_owned(), value);
        }
    }
    env.insert("HOME".to_owned(), BUILD_HOME.to_owned());
    Ok(env.into_iter().collect())
}

/// `mock.*` tag settings that kojid passes to mock but that change nothing here.
fn ignored_extra(extra: &BTreeMap<String, ExtraValue>) -> Vec<String> {
    const HONOURED: [&str; 4] = [
        "mock.yum.module_hotfixes",
        "mock.yum.best",
        "mock.releasever",
        "mock.module_setup_commands",
    ];
    extra
        .iter()
        .filter(|(k, _)| k.starts_with("mock.") && !HONOURED.contains(&k.as_str()))
        .filter(|(k, v)| {
            // dnf4 is what mock would use by default; only another manager is worth a note.
            !(k.as_str() == "mock.package_manager"
                && matches!(v, ExtraValue::Str(s) if s == "dnf" || s == "dnf4"))
        })
        .map(|(k, v)| format!("{k}={}", v.python_repr()))
        .collect()
}

/// Quote `arg` for `bash -c` (mock joins its rpmbuild command unquoted; quoting keeps a
/// spec name with odd characters one argument).
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------------------------
// Query output
// ---------------------------------------------------------------------------------------------

/// The requirements of packages printed by a requires query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequiresQuery {
    /// Names of the packages queried, in output order.
    pub packages: Vec<String>,
    /// Requirements to install, `rpmlib(...)` dropped, duplicates removed, order kept.
    pub requires: Vec<String>,
    /// Whether a package needs `%generate_buildrequires` (rpmlib(DynamicBuildRequires)).
    pub dynamic: bool,
}

/// Parse `rpm -qp --requires` output (or a requires query's, marker lines included): one
/// requirement per line; `rpmlib(...)` entries are rpm features, not packages, so dropped.
pub fn parse_requires(stdout: &str) -> Vec<String> {
    parse_requires_query(stdout).requires
}

/// Parse the output of [`BuildrootPlan::srpm_requires_query`] or `buildreqs_query`.
pub fn parse_requires_query(stdout: &str) -> RequiresQuery {
    let mut out = RequiresQuery::default();
    let mut seen = BTreeSet::new();
    for line in stdout.lines() {
        if let Some(pkg) = line.strip_prefix(REQUIRES_MARKER) {
            out.packages.push(pkg.trim().to_owned());
            continue;
        }
        let req = line.trim();
        if req.is_empty() {
            continue;
        }
        if req.starts_with("rpmlib(") {
            if req.starts_with("rpmlib(DynamicBuildRequires)") {
                out.dynamic = true;
            }
            continue;
        }
        if seen.insert(req.to_owned()) {
            out.requires.push(req.to_owned());
        }
    }
    out
}

/// One installed package of a buildroot, exactly the dict kojid's `getPackageList` sends to
/// `setBuildRootList`/`updateBuildRootList`. `id`, `external_repo` and `location` are only
/// present when kojid's `mapInternalRPMs`/`markExternalRPMs` add them (the caller's job: they
/// need the hub and the repo's `rpmlist.jsonl`/origins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildrootRpm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<i64>,
    pub arch: String,
    /// Hex of the header's SIGMD5.
    pub payloadhash: String,
    pub size: i64,
    pub buildtime: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_repo: Option<BTreeMap<String, ExtraValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<i64>,
}

/// The query that lists a buildroot's packages: the fields kojid's `getPackageList` reads,
/// with `LONGSIZE` as its fallback for `SIZE`. `rpmdb_path` pins the database (see
/// [`BuildrootOptions::rpmdb_path`]).
pub fn package_list_query(rpmdb_path: Option<&str>) -> Vec<String> {
    let mut argv = vec!["rpm".to_owned(), "-qa".to_owned()];
    if let Some(p) = rpmdb_path {
        argv.push("--dbpath".to_owned());
        argv.push(p.to_owned());
    }
    argv.push("--qf".to_owned());
    argv.push(
        "%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{EPOCH}\\t%{ARCH}\\t%{SIGMD5}\\t%{SIZE}\\t%{LONGSIZE}\\t%{BUILDTIME}\\n"
            .to_owned(),
    );
    argv
}

/// Parse [`package_list_query`]'s output, leaving out kojid's skipped packages
/// (`buildsys-build`, `gpg-pubkey`).
pub fn parse_package_list(stdout: &str) -> Result<Vec<BuildrootRpm>> {
    let mut out = Vec::new();
    for (n, line) in stdout.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| Error::Build {
            message: format!("bad package list line {}: {what}: {line:?}", n + 1),
            log: None,
            exit_code: None,
        };
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, version, release, epoch, arch, sigmd5, size, longsize, buildtime] =
            fields.as_slice()
        else {
            return Err(bad("expected 9 tab-separated fields"));
        };
        if SKIPPED_PACKAGES.contains(name) {
            continue;
        }
        let number = |field: &str, what: &str| -> Result<Option<i64>> {
            if field == "(none)" {
                Ok(None)
            } else {
                field.parse().map(Some).map_err(|_| bad(what))
            }
        };
        let payloadhash = if *sigmd5 == "(none)" || sigmd5.is_empty() {
            return Err(bad("no SIGMD5"));
        } else if sigmd5.chars().all(|c| c.is_ascii_hexdigit()) {
            sigmd5.to_ascii_lowercase()
        } else {
            return Err(bad("SIGMD5 is not hex"));
        };
        let size = match number(size, "bad SIZE")? {
            Some(s) => s,
            None => number(longsize, "bad LONGSIZE")?.ok_or_else(|| bad("no SIZE"))?,
        };
        out.push(BuildrootRpm {
            id: None,
            name: (*name).to_owned(),
            version: (*version).to_owned(),
            release: (*release).to_owned(),
            epoch: number(epoch, "bad EPOCH")?,
            arch: (*arch).to_owned(),
            payloadhash,
            size,
            buildtime: number(buildtime, "bad BUILDTIME")?.ok_or_else(|| bad("no BUILDTIME"))?,
            external_repo: None,
            location: None,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Cache key
// ---------------------------------------------------------------------------------------------

/// The canonical text of everything that decides what a buildroot contains, to be hashed
/// with SHA-256 by the caller (`sha256sum`, or a `sha2` dependency if the lead adds one).
///
/// Every value is written as `name <byte length>:<value>\n`, so no value can imitate another
/// field; sets are sorted and de-duplicated, so equal buildroots give equal material.
pub fn cache_key_material(
    image_digest: &str,
    plan: &BuildrootPlan,
    install_set: &[String],
) -> String {
    let mut out = String::from("koji-adjutant buildroot cache key v1\n");
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{name} {}:{value}", value.len());
    };
    field("image", image_digest);
    field("repo_id", &plan.repo_id.to_string());
    field("tag", &plan.tag_name);
    field("buildroot_arch", &plan.buildroot_arch);
    field("target_arch", &plan.target_arch);
    field("repo_baseurl", &plan.repo_baseurl);
    field("dnf_conf", &plan.dnf_conf.content);
    field("repo_file", &plan.repo_file.content);
    field("macros", &plan.macros_file.content);
    if let Some(f) = &plan.rpmdb_macros_file {
        field("rpmdb_macros", &f.content);
    }
    for step in &plan.init_steps {
        field("init_step", &step.argv.join("\0"));
    }
    for (k, v) in &plan.environment {
        field("env", &format!("{k}={v}"));
    }
    let install: BTreeSet<&String> = install_set.iter().collect();
    for item in install {
        field("install", item);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// kojid's result
// ---------------------------------------------------------------------------------------------

/// kojid's `koji.pathinfo.taskrelpath(task_id)`, where a task's files are uploaded.
pub fn task_upload_path(task_id: i64) -> String {
    format!("tasks/{}/{task_id}", task_id.rem_euclid(10000))
}

/// The files of a result directory, sorted as `BuildArchTask.handler` sorts them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultFiles {
    pub rpms: Vec<String>,
    pub srpms: Vec<String>,
    pub logs: Vec<String>,
    pub unexpected: Vec<String>,
}

/// Sort result file names like kojid: `.src.rpm` are SRPMs, other `.rpm` are RPMs, logs are
/// logs. kojid's log test is `f[-4:] in (".log")`, a substring test on the string ".log"
/// (the parentheses make no tuple); mirrored, oddities included.
pub fn classify_result_files<S: AsRef<str>>(names: &[S]) -> ResultFiles {
    let mut out = ResultFiles::default();
    for name in names {
        let f = name.as_ref();
        let tail_start = f.char_indices().rev().nth(3).map(|(i, _)| i).unwrap_or(0);
        let tail = f.get(tail_start..).unwrap_or(f);
        if ".log".contains(tail) {
            out.logs.push(f.to_owned());
        } else if f.ends_with(".src.rpm") {
            out.srpms.push(f.to_owned());
        } else if f.ends_with(".rpm") {
            out.rpms.push(f.to_owned());
        } else {
            out.unexpected.push(f.to_owned());
        }
    }
    out
}

/// The dict `BuildArchTask.handler` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KojidResult {
    pub rpms: Vec<String>,
    pub srpms: Vec<String>,
    pub logs: Vec<String>,
    pub brootid: i64,
}

/// Build kojid's result: every path is `"<upload_path>/<file name>"`; SRPMs are listed only
/// with `keep_srpm`, and then there must be exactly one (kojid raises BuildError otherwise).
/// `logs` are the uploaded log names (root.log, build.log, ..., `noarch_rpmdiff.json` when
/// noarch RPMs were built).
pub fn kojid_result<S: AsRef<str>>(
    upload_path: &str,
    task_id: i64,
    rpm_files: &[S],
    srpm_files: &[S],
    log_files: &[S],
    brootid: i64,
    keep_srpm: bool,
) -> Result<KojidResult> {
    let path = |f: &S| format!("{upload_path}/{}", f.as_ref());
    let srpms = if keep_srpm {
        match srpm_files {
            [] => {
                return Err(Error::Build {
                    message: format!("no srpm files found for task {task_id}"),
                    log: None,
                    exit_code: None,
                })
            }
            [one] => vec![path(one)],
            many => {
                let names: Vec<&str> = many.iter().map(AsRef::as_ref).collect();
                return Err(Error::Build {
                    message: format!("multiple srpm files found for task {task_id}: {names:?}"),
                    log: None,
                    exit_code: None,
                });
            }
        }
    } else {
        Vec::new()
    };
    Ok(KojidResult {
        rpms: rpm_files.iter().map(path).collect(),
        srpms,
        logs: log_files.iter().map(path).collect(),
        brootid,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // --- fixtures -------------------------------------------------------------------------

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "koji-adjutant-buildroot-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const SPEC: &str = "Name: tiny\nVersion: 1.0\nRelease: 3\nEpoch: 2\nSummary: t\n\
        License: MIT\nVendor: Acme\nPackager: Pat\nBuildArch: noarch\n\
        BuildRequires: make >= 1.0\n%description\nt\n%files\n";

    /// Build `tiny.spec` with the host's rpmbuild in `mode` (-bs or -bb) and return the
    /// package, or None when rpmbuild is not installed.
    fn build_rpm(dir: &TempDir, mode: &str) -> Option<PathBuf> {
        if Command::new("rpmbuild").arg("--version").output().is_err() {
            eprintln!("rpmbuild not installed: skipping");
            return None;
        }
        let spec = dir.0.join("tiny.spec");
        std::fs::write(&spec, SPEC).unwrap();
        let top = dir.0.join("top");
        let out = Command::new("rpmbuild")
            .arg(mode)
            .arg("--nodeps")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sub = if mode == "-bs" {
            "SRPMS"
        } else {
            "RPMS/noarch"
        };
        let found = std::fs::read_dir(top.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "rpm"));
        Some(found.unwrap())
    }

    fn config(extra: &[(&str, ExtraValue)]) -> BuildConfig {
        BuildConfig {
            id: 5,
            name: "f40-build".to_owned(),
            arches: Some("x86_64 i686 aarch64".to_owned()),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    fn s(v: &str) -> ExtraValue {
        ExtraValue::Str(v.to_owned())
    }

    fn inputs(extra: &[(&str, ExtraValue)]) -> BuildrootInputs {
        BuildrootInputs {
            task_id: 123456,
            arch: "x86_64".to_owned(),
            buildroot_arch: None,
            srpm: PathBuf::from("/work/tasks/1/tiny-1.0-3.src.rpm"),
            repo: RepoLocation::from_topdir(Path::new("/mnt/koji"), "f40-build", 77, "x86_64"),
            repo_id: 77,
            tag_name: "f40-build".to_owned(),
            build_config: config(extra),
            options: BuildrootOptions::default(),
            image_arches: vec!["x86_64".to_owned()],
        }
    }

    fn srpm_info() -> SrpmInfo {
        SrpmInfo {
            name: "tiny".to_owned(),
            version: "1.0".to_owned(),
            release: "3".to_owned(),
            epoch: Some(2),
            lead_name: "tiny-2:1.0-3".to_owned(),
            spec_file: Some("tiny.spec".to_owned()),
            vendor: None,
            packager: None,
            distribution: None,
        }
    }

    fn plan_for(inputs: &BuildrootInputs) -> BuildrootPlan {
        plan_with_srpm(inputs, &srpm_info()).unwrap()
    }

    fn invalid_message(r: Result<BuildrootPlan>) -> String {
        match r {
            Err(Error::InvalidSpec(m)) => m,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    fn env_get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    // --- repo and dnf config --------------------------------------------------------------

    #[test]
    fn local_repo_file_points_into_the_mounted_topdir() {
        let plan = plan_for(&inputs(&[]));
        assert_eq!(
            plan.repo_file.dest,
            "/etc/koji-adjutant/yum.repos.d/koji.repo"
        );
        assert_eq!(
            plan.repo_file.content,
            "[koji-f40-build-77]\nname=koji-f40-build-77\n\
             baseurl=file:///mnt/koji/repos/f40-build/77/x86_64\n\
             enabled=1\ngpgcheck=0\nskip_if_unavailable=False\n"
        );
        assert_eq!(
            plan.mounts[0],
            Mount {
                host: PathBuf::from("/mnt/koji/repos/f40-build/77/x86_64"),
                container: "/mnt/koji/repos/f40-build/77/x86_64".to_owned(),
                read_only: true
            }
        );
        assert!(plan.init_steps.iter().all(|s| !s.network));
    }

    #[test]
    fn local_repo_on_another_topdir_is_mounted_at_mnt_koji() {
        let mut i = inputs(&[]);
        i.repo = RepoLocation::from_topdir(Path::new("/srv/kojidata"), "f40-build", 77, "x86_64");
        let plan = plan_for(&i);
        assert_eq!(
            plan.repo_baseurl,
            "file:///mnt/koji/repos/f40-build/77/x86_64"
        );
        assert_eq!(
            plan.mounts[0].host,
            PathBuf::from("/srv/kojidata/repos/f40-build/77/x86_64")
        );
        assert_eq!(
            plan.mounts[0].container,
            "/mnt/koji/repos/f40-build/77/x86_64"
        );
    }

    #[test]
    fn local_repo_outside_topdir_is_rejected() {
        let mut i = inputs(&[]);
        i.repo = RepoLocation::Local {
            arch_dir: PathBuf::from("/elsewhere/repos/x/1/x86_64"),
            topdir: PathBuf::from("/mnt/koji"),
        };
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("not inside"));
        i.repo = RepoLocation::Local {
            arch_dir: PathBuf::from("/mnt/koji/repos/../../etc"),
            topdir: PathBuf::from("/mnt/koji"),
        };
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("bad repo dir"));
    }

    #[test]
    fn url_repo_file_has_the_url_and_module_hotfixes_when_the_tag_says() {
        let mut i = inputs(&[("mock.yum.module_hotfixes", ExtraValue::Int(1))]);
        i.repo =
            RepoLocation::from_topurl("https://koji.example/kojifiles/", "f40-build", 77, "x86_64");
        let plan = plan_for(&i);
        assert_eq!(
            plan.repo_file.content,
            "[koji-f40-build-77]\nname=koji-f40-build-77\n\
             baseurl=https://koji.example/kojifiles/repos/f40-build/77/x86_64\n\
             enabled=1\ngpgcheck=0\nskip_if_unavailable=False\nmodule_hotfixes=1\n"
        );
        // Only the SRPM is mounted; dnf steps need the network, nothing else does.
        assert_eq!(plan.mounts.len(), 1);
        let net: Vec<&str> = plan
            .init_steps
            .iter()
            .filter(|s| s.network)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(net, ["install @build"]);
        assert!(plan.install_step(&["gcc".to_owned()]).unwrap().network);
        assert!(!plan.package_list.network);
    }

    #[test]
    fn file_urls_must_be_local_repos() {
        let mut i = inputs(&[]);
        i.repo = RepoLocation::Url("file:///mnt/koji/repos/f40-build/77/x86_64".to_owned());
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("RepoLocation::Local"));
        i.repo = RepoLocation::Url("https://x/a b".to_owned());
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("bad repo URL"));
    }

    #[test]
    fn module_hotfixes_follows_python_truthiness() {
        for (value, expected) in [
            (ExtraValue::Bool(false), false),
            (ExtraValue::Int(0), false),
            (s(""), false),
            (s("0"), true),
            (ExtraValue::Bool(true), true),
        ] {
            let plan = plan_for(&inputs(&[("mock.yum.module_hotfixes", value.clone())]));
            assert_eq!(
                plan.repo_file.content.contains("module_hotfixes=1"),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn repo_id_is_sanitised_for_dnf() {
        let mut i = inputs(&[]);
        i.tag_name = "f40+build x".to_owned();
        i.build_config.name = i.tag_name.clone();
        let plan = plan_for(&i);
        assert!(plan
            .repo_file
            .content
            .starts_with("[koji-f40_build_x-77]\n"));
    }

    #[test]
    fn dnf_conf_reads_repos_only_from_its_own_dir() {
        let plan = plan_for(&inputs(&[("mock.yum.best", s("1"))]));
        let conf = &plan.dnf_conf.content;
        assert_eq!(plan.dnf_conf.dest, "/etc/koji-adjutant/dnf.conf");
        assert!(conf.starts_with("[main]\nreposdir=/etc/koji-adjutant/yum.repos.d\n"));
        for line in ["install_weak_deps=0", "gpgcheck=0", "strict=1", "best=1"] {
            assert!(
                conf.lines().any(|l| l == line),
                "{line} missing from {conf}"
            );
        }
        assert_eq!(
            &plan.dnf_argv()[..4],
            ["dnf", "-c", "/etc/koji-adjutant/dnf.conf", "--noplugins"]
        );
        let plain = plan_for(&inputs(&[]));
        assert!(!plain.dnf_conf.content.contains("best="));
    }

    #[test]
    fn unparsable_best_is_invalid() {
        let i = inputs(&[("mock.yum.best", s("yes"))]);
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("mock.yum.best"));
    }

    #[test]
    fn releasever_from_the_tag_goes_to_every_dnf_call() {
        let plan = plan_for(&inputs(&[("mock.releasever", ExtraValue::Int(40))]));
        assert!(plan.dnf_argv().contains(&"--releasever=40".to_owned()));
        let install = plan.install_step(&["make".to_owned()]).unwrap();
        assert!(install.argv.contains(&"--releasever=40".to_owned()));
        let plain = plan_for(&inputs(&[]));
        assert!(!plain
            .dnf_argv()
            .iter()
            .any(|a| a.starts_with("--releasever")));
    }

    // --- macros -----------------------------------------------------------------------------

    #[test]
    fn macros_file_has_kojid_macros_and_tag_macros() {
        let mut i = inputs(&[
            ("rpm.macro.dist", s(".fc40")),
            ("rpm.macro.fedora", ExtraValue::Int(40)),
            ("rpm.macro.with_foo", ExtraValue::Bool(true)),
        ]);
        i.options.vendor = "Fedora Project".to_owned();
        i.options.packager = "Fedora Project".to_owned();
        i.options.distribution = "Fedora Project".to_owned();
        let plan = plan_for(&i);
        assert_eq!(plan.macros_file.dest, "/builddir/.rpmmacros");
        assert_eq!((plan.macros_file.uid, plan.macros_file.gid), (1000, 135));
        assert_eq!(
            plan.macros_file.content,
            "# Generated by koji-adjutant\n\
             %_host x86_64-koji-linux-gnu\n\
             %_host_cpu x86_64\n\
             %_rpmfilename %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm\n\
             %_topdir /builddir/build\n\
             %dist .fc40\n\
             %distribution Fedora Project\n\
             %fedora 40\n\
             %packager Fedora Project\n\
             %vendor Fedora Project\n\
             %with_foo True\n"
        );
    }

    #[test]
    fn tag_macros_override_options_but_not_topdir_or_host() {
        let plan = plan_for(&inputs(&[
            ("rpm.macro.vendor", s("Tag Vendor")),
            ("rpm.macro._topdir", s("/tmp/elsewhere")),
            ("rpm.macro._host_cpu", s("ppc")),
        ]));
        let c = &plan.macros_file.content;
        assert!(c.contains("\n%vendor Tag Vendor\n"));
        assert!(c.contains("\n%_topdir /builddir/build\n"));
        assert!(c.contains("\n%_host_cpu x86_64\n"));
    }

    #[test]
    fn buildhost_is_set_unless_the_tag_sets_it() {
        let mut i = inputs(&[]);
        i.options.buildhost = Some("builder1.example.com".to_owned());
        assert!(plan_for(&i)
            .macros_file
            .content
            .contains("\n%_buildhost builder1.example.com\n"));
        i.build_config
            .extra
            .insert("rpm.macro._buildhost".to_owned(), s("reproducible"));
        let c = plan_for(&i).macros_file.content;
        assert!(c.contains("\n%_buildhost reproducible\n"));
        assert!(!c.contains("builder1"));
        assert!(!plan_for(&inputs(&[]))
            .macros_file
            .content
            .contains("_buildhost"));
    }

    #[test]
    fn macro_values_that_would_break_the_file_are_rejected() {
        for bad in ["two\nlines", "cr\r", "nul\0", "continues\\", ""] {
            let i = inputs(&[("rpm.macro.dist", s(bad))]);
            let msg = invalid_message(plan_with_srpm(&i, &srpm_info()));
            assert!(msg.contains("%dist"), "{bad:?}: {msg}");
        }
        let mut i = inputs(&[]);
        i.options.vendor = "Evil\n%_topdir /".to_owned();
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("%vendor"));
        let i = inputs(&[("rpm.macro.two words", s("x"))]);
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("macro name"));
    }

    #[test]
    fn armhfp_buildroot_uses_armv7hl_as_host_cpu() {
        let mut i = inputs(&[]);
        i.arch = "armhfp".to_owned();
        i.image_arches = vec!["armv7l".to_owned()];
        i.repo = RepoLocation::from_topdir(Path::new("/mnt/koji"), "f40-build", 77, "armhfp");
        let plan = plan_for(&i);
        assert_eq!(plan.buildroot_arch, "armhfp");
        assert_eq!(plan.target_arch, "armv7hl");
        assert_eq!(plan.rpmbuild_target, "armhfp");
        assert!(plan
            .macros_file
            .content
            .contains("\n%_host armv7hl-koji-linux-gnu\n"));
    }

    #[test]
    fn rpmdb_pin_adds_a_system_macro_file_and_query_option() {
        let mut i = inputs(&[]);
        i.options.rpmdb_path = Some("/var/lib/rpm".to_owned());
        let plan = plan_for(&i);
        let pin = plan.rpmdb_macros_file.as_ref().unwrap();
        assert_eq!(pin.dest, "/etc/rpm/macros.zz-koji-adjutant-dbpath");
        assert_eq!(pin.content, "%_dbpath /var/lib/rpm\n");
        assert_eq!(plan.files().len(), 4);
        assert_eq!(&plan.package_list.argv[2..4], ["--dbpath", "/var/lib/rpm"]);
        let plain = plan_for(&inputs(&[]));
        assert!(plain.rpmdb_macros_file.is_none());
        assert!(!plain.package_list.argv.contains(&"--dbpath".to_owned()));
    }

    // --- environment ------------------------------------------------------------------------

    #[test]
    fn environment_is_mocks_plus_tag_env_with_home_fixed() {
        let plan = plan_for(&inputs(&[
            ("rpm.env.FOO", s("bar")),
            ("rpm.env.LANG", s("en_US.UTF-8")),
            ("rpm.env.HOME", s("/tmp")),
            ("rpm.env.FLAG", ExtraValue::Bool(false)),
        ]));
        let env = &plan.environment;
        assert_eq!(env_get(env, "FOO"), Some("bar"));
        assert_eq!(env_get(env, "FLAG"), Some("False"));
        assert_eq!(env_get(env, "LANG"), Some("en_US.UTF-8"));
        assert_eq!(env_get(env, "HOME"), Some("/builddir"));
        assert_eq!(env_get(env, "PATH"), Some("/usr/bin:/bin:/usr/sbin:/sbin"));
        assert_eq!(env_get(env, "HOSTNAME"), Some("mock"));
        let root = &plan.root_environment;
        assert_eq!(env_get(root, "HOME"), Some("/root"));
        assert_eq!(env_get(root, "LC_MESSAGES"), Some("C.UTF-8"));
        assert_eq!(env_get(root, "FOO"), Some("bar"));
        assert_eq!(plan.build_step(false).env, plan.environment);
        assert_eq!(plan.init_steps[0].env, plan.root_environment);
    }

    #[test]
    fn default_environment_has_c_utf8() {
        let plan = plan_for(&inputs(&[]));
        assert_eq!(env_get(&plan.environment, "LANG"), Some("C.UTF-8"));
        assert_eq!(env_get(&plan.environment, "FOO"), None);
    }

    #[test]
    fn bad_env_names_are_rejected() {
        for name in ["rpm.env.", "rpm.env.A=B", "rpm.env.1X", "rpm.env.A B"] {
            let i = inputs(&[(name, s("x"))]);
            assert!(
                invalid_message(plan_with_srpm(&i, &srpm_info())).contains("environment"),
                "{name}"
            );
        }
    }

    // --- steps ------------------------------------------------------------------------------

    #[test]
    fn init_steps_make_dirs_then_install_the_group_then_log_the_kernel() {
        let plan = plan_for(&inputs(&[]));
        let names: Vec<&str> = plan.init_steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "create build directories",
                "install @build",
                "log kernel version"
            ]
        );
        let mkdir = &plan.init_steps[0];
        assert_eq!(
            &mkdir.argv[..8],
            ["install", "-d", "-m", "0755", "-o", "1000", "-g", "135"]
        );
        for dir in [
            "SOURCES",
            "SPECS",
            "BUILD",
            "BUILDROOT",
            "RPMS",
            "SRPMS",
            "originals",
        ] {
            assert!(
                mkdir.argv.contains(&format!("/builddir/build/{dir}")),
                "{dir}"
            );
        }
        let install = &plan.init_steps[1];
        assert_eq!(install.argv.last().unwrap(), "@build");
        assert_eq!(&install.argv[..plan.dnf_argv().len()], plan.dnf_argv());
        assert!(plan.dnf_argv().contains(&"--allowerasing".to_owned()));
        assert!(plan
            .init_steps
            .iter()
            .all(|s| s.user == RunAs::Root && s.log == LogTarget::RootLog));
    }

    #[test]
    fn install_group_and_module_commands_come_from_options_and_tag() {
        let mut i = inputs(&[(
            "mock.module_setup_commands",
            ExtraValue::List(vec![
                ExtraValue::List(vec![s("enable"), s("nodejs:18, postgresql:13")]),
                ExtraValue::List(vec![s("disable"), s("python39")]),
            ]),
        )]);
        i.options.install_group = "srpm-build".to_owned();
        let plan = plan_for(&i);
        let names: Vec<&str> = plan.init_steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "create build directories",
                "dnf module enable",
                "dnf module disable",
                "install @srpm-build",
                "log kernel version"
            ]
        );
        let n = plan.dnf_argv().len();
        assert_eq!(
            &plan.init_steps[1].argv[n..],
            ["module", "enable", "nodejs:18", "postgresql:13"]
        );
        let bad = inputs(&[("mock.module_setup_commands", s("enable nodejs"))]);
        assert!(invalid_message(plan_with_srpm(&bad, &srpm_info())).contains("module_setup"));
    }

    #[test]
    fn build_step_runs_rpmbuild_as_mockbuild_offline_with_the_timeout() {
        let mut i = inputs(&[]);
        i.options.rpmbuild_timeout = 7200;
        let plan = plan_for(&i);
        let build = plan.build_step(false);
        assert_eq!(build.user, RunAs::Builder);
        assert_eq!(build.user.podman_user(), "1000:135");
        assert_eq!(
            build.argv,
            [
                "bash",
                "--login",
                "-c",
                "/usr/bin/rpmbuild -bb --noclean --target x86_64 --nodeps \
                 /builddir/build/SPECS/tiny.spec"
            ]
        );
        assert!(!build.network);
        assert_eq!(build.timeout_secs, Some(7200));
        assert_eq!(build.log, LogTarget::BuildLog);
        assert_eq!(build.workdir, "/builddir");
        assert_eq!(build.ok_exit_codes, [0]);
    }

    #[test]
    fn srpm_is_rebuilt_in_the_buildroot_like_mock() {
        let plan = plan_for(&inputs(&[]));
        assert_eq!(
            plan.srpm_path,
            "/builddir/build/originals/tiny-1.0-3.src.rpm"
        );
        assert_eq!(
            plan.mounts.last().unwrap(),
            &Mount {
                host: PathBuf::from("/work/tasks/1/tiny-1.0-3.src.rpm"),
                container: plan.srpm_path.clone(),
                read_only: true
            }
        );
        assert_eq!(
            plan.unpack_step.argv,
            [
                "rpm",
                "-Uvh",
                "--nodeps",
                "/builddir/build/originals/tiny-1.0-3.src.rpm"
            ]
        );
        assert_eq!(plan.unpack_step.user, RunAs::Builder);
        assert_eq!(
            plan.rebuild_srpm_step.argv[3],
            "/usr/bin/rpmbuild -bs --noclean --target x86_64 --nodeps \
             /builddir/build/SPECS/tiny.spec"
        );
        assert_eq!(plan.rebuild_srpm_step.user, RunAs::Builder);
        assert!(!plan.rebuild_srpm_step.network);
        let q = &plan.srpm_requires_query;
        assert!(q.capture_stdout);
        assert_eq!(
            &q.argv[..8],
            [
                "find",
                "/builddir/build/SRPMS",
                "-maxdepth",
                "1",
                "-type",
                "f",
                "-name",
                "*.src.rpm"
            ]
        );
        assert_eq!(plan.result_dirs.rpms, "/builddir/build/RPMS");
        assert_eq!(plan.result_dirs.srpms, "/builddir/build/SRPMS");
    }

    #[test]
    fn dynamic_buildrequires_steps_follow_mock() {
        let plan = plan_for(&inputs(&[]));
        let first = plan.dynamic_buildrequires_step(true);
        assert_eq!(
            first.argv[3],
            "/usr/bin/rpmbuild -br --noclean --target x86_64 --nodeps /builddir/build/SPECS/tiny.spec"
        );
        assert_eq!(first.ok_exit_codes, [0, 11]);
        assert!(plan.dynamic_buildrequires_step(false).argv[3].contains("-br --noprep --noclean"));
        assert_eq!(
            plan.build_step(true).argv[3],
            "/usr/bin/rpmbuild -ba --noprep --noclean --target x86_64 /builddir/build/SPECS/tiny.spec"
        );
        assert_eq!(
            plan.remove_buildreqs_step.argv[7..],
            ["*.buildreqs.nosrc.rpm", "-delete"]
        );
    }

    #[test]
    fn install_step_installs_the_requirements_after_a_double_dash() {
        let plan = plan_for(&inputs(&[]));
        assert!(plan.install_step(&[]).is_none());
        let step = plan
            .install_step(&["make >= 1.0".to_owned(), "(a or b)".to_owned()])
            .unwrap();
        let n = plan.dnf_argv().len();
        assert_eq!(
            &step.argv[n..],
            ["install", "--", "make >= 1.0", "(a or b)"]
        );
        assert_eq!(step.user, RunAs::Root);
        assert!(!step.network);
    }

    #[test]
    fn odd_spec_names_are_quoted_for_bash() {
        let mut info = srpm_info();
        info.spec_file = Some("it's a.spec".to_owned());
        let plan = plan_with_srpm(&inputs(&[]), &info).unwrap();
        assert!(plan.build_step(false).argv[3].ends_with(r"'/builddir/build/SPECS/it'\''s a.spec'"));
        info.spec_file = Some("../x.spec".to_owned());
        assert!(invalid_message(plan_with_srpm(&inputs(&[]), &info)).contains("spec"));
        info.spec_file = None;
        assert!(invalid_message(plan_with_srpm(&inputs(&[]), &info)).contains("no spec file"));
    }

    #[test]
    fn noarch_task_builds_with_target_noarch_on_a_concrete_buildroot() {
        let mut i = inputs(&[]);
        i.arch = "noarch".to_owned();
        let plan = plan_for(&i);
        assert_eq!(plan.buildroot_arch, "x86_64");
        assert_eq!(plan.rpmbuild_target, "noarch");
        assert!(plan.build_step(false).argv[3].contains("--target noarch"));
        assert!(plan.macros_file.content.contains("%_host_cpu x86_64\n"));
        i.buildroot_arch = Some("aarch64".to_owned());
        assert!(matches!(
            plan_with_srpm(&i, &srpm_info()),
            Err(Error::Build { .. })
        ));
    }

    #[test]
    fn tag_name_must_match_the_build_config() {
        let mut i = inputs(&[]);
        i.build_config.name = "other".to_owned();
        assert!(invalid_message(plan_with_srpm(&i, &srpm_info())).contains("mismatch"));
    }

    #[test]
    fn ignored_mock_settings_are_reported() {
        let plan = plan_for(&inputs(&[
            ("mock.new_chroot", ExtraValue::Int(0)),
            ("mock.package_manager", s("dnf")),
            ("mock.yum.best", ExtraValue::Int(1)),
            ("rpm.macro.dist", s(".x")),
        ]));
        assert_eq!(plan.ignored_extra, ["mock.new_chroot=0"]);
        let plan = plan_for(&inputs(&[("mock.package_manager", s("dnf5"))]));
        assert_eq!(plan.ignored_extra, ["mock.package_manager='dnf5'"]);
    }

    // --- arches -----------------------------------------------------------------------------

    #[test]
    fn canon_arch_matches_koji() {
        for (arch, canon) in [
            ("i686", "i386"),
            ("i386", "i386"),
            ("athlon", "i386"),
            ("ia32e", "x86_64"),
            ("x86_64", "x86_64"),
            ("ppc64le", "ppc64le"),
            ("ppc64p7", "ppc64"),
            ("sparc64v", "sparc64"),
            ("sparcv9", "sparc"),
            ("alphaev6", "alpha"),
            ("armv7hl", "armhfp"),
            ("armv7l", "arm"),
            ("aarch64", "aarch64"),
            ("noarch", "noarch"),
            ("i8086", "i8086"),
        ] {
            assert_eq!(canon_arch(arch), canon, "{arch}");
        }
    }

    #[test]
    fn validate_arch_uses_the_compat_table() {
        let x86 = vec!["x86_64".to_owned()];
        assert!(validate_arch("x86_64", &x86).is_ok());
        assert!(validate_arch("noarch", &x86).is_ok());
        assert!(validate_arch("noarch", &[]).is_ok());
        let err = validate_arch("i686", &x86).unwrap_err();
        assert_eq!(err.arch, "i686");
        assert_eq!(
            err.to_string(),
            "the task image (x86_64) cannot build arch i686"
        );
        assert!(matches!(Error::from(err), Error::Build { .. }));
        assert!(validate_arch("aarch64", &x86).is_err());
        let both = vec!["x86_64".to_owned(), "i686".to_owned()];
        assert!(validate_arch("i586", &both).is_ok());
        let arm = vec!["armv7l".to_owned()];
        assert!(validate_arch("armhfp", &arm).is_ok());
        assert!(validate_arch("armv7hl", &arm).is_ok());
    }

    #[test]
    fn noarch_buildroot_arch_is_common_to_image_and_tag() {
        let img = vec!["x86_64".to_owned(), "i686".to_owned()];
        assert_eq!(
            choose_noarch_arch(&img, Some("i686 x86_64"), None).unwrap(),
            "x86_64"
        );
        assert_eq!(
            choose_noarch_arch(&img, Some("i686 x86_64"), Some("i686")).unwrap(),
            "i386"
        );
        assert_eq!(
            choose_noarch_arch(&img, Some("i686 aarch64"), None).unwrap(),
            "i386"
        );
        assert!(choose_noarch_arch(&img, Some("aarch64 s390x"), None).is_err());
        assert!(choose_noarch_arch(&img, None, None).is_err());
    }

    // --- SRPM header ------------------------------------------------------------------------

    #[test]
    fn a_real_srpm_is_read() {
        let dir = TempDir::new();
        let Some(srpm) = build_rpm(&dir, "-bs") else {
            return;
        };
        let info = read_srpm(&srpm).unwrap();
        assert_eq!(
            (
                info.name.as_str(),
                info.version.as_str(),
                info.release.as_str(),
                info.epoch
            ),
            ("tiny", "1.0", "3", Some(2))
        );
        assert_eq!(info.spec_file.as_deref(), Some("tiny.spec"));
        assert_eq!(info.vendor.as_deref(), Some("Acme"));
        assert_eq!(info.packager.as_deref(), Some("Pat"));
        assert!(info.lead_name.starts_with("tiny-"));
        // No Distribution tag: kojid's sanity check would refuse to keep this SRPM.
        assert!(
            matches!(info.sanity_check(), Err(Error::Build { message, .. })
            if message == "The build system failed to set the distribution tag")
        );

        let mut i = inputs(&[]);
        i.srpm = srpm.clone();
        let plan = plan(&i).unwrap();
        assert_eq!(plan.spec_path, "/builddir/build/SPECS/tiny.spec");
        assert_eq!(plan.mounts.last().unwrap().host, srpm);
    }

    #[test]
    fn a_binary_rpm_is_refused() {
        let dir = TempDir::new();
        let Some(rpm) = build_rpm(&dir, "-bb") else {
            return;
        };
        let err = read_srpm(&rpm).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidSpec(m) if m.ends_with("is a binary RPM, not a source RPM")),
            "{err:?}"
        );
    }

    #[test]
    fn a_text_file_is_not_an_rpm() {
        let dir = TempDir::new();
        let path = dir.0.join("notes.src.rpm");
        std::fs::write(&path, "this is not an rpm, it is just text long enough to fill a lead of ninety-six bytes.......").unwrap();
        let err = read_srpm(&path).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidSpec(m) if m.ends_with("is not an RPM file")),
            "{err:?}"
        );
        std::fs::write(&path, "short").unwrap();
        assert!(
            matches!(read_srpm(&path), Err(Error::InvalidSpec(m)) if m.ends_with("is not an RPM file"))
        );
    }

    #[test]
    fn a_missing_file_is_unreadable() {
        let err = read_srpm(Path::new("/nonexistent/x.src.rpm")).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidSpec(m) if m.starts_with("cannot read SRPM /nonexistent/x.src.rpm")),
            "{err:?}"
        );
    }

    #[test]
    fn a_truncated_srpm_is_invalid_not_a_panic() {
        let dir = TempDir::new();
        let Some(srpm) = build_rpm(&dir, "-bs") else {
            return;
        };
        let bytes = std::fs::read(&srpm).unwrap();
        let cut = dir.0.join("cut.src.rpm");
        for len in [96, 100, 112, 300, 1000] {
            std::fs::write(&cut, &bytes[..len.min(bytes.len() - 1)]).unwrap();
            let err = read_srpm(&cut).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidSpec(m) if m.contains("is not a valid RPM")),
                "{len}: {err:?}"
            );
        }
        // A corrupted index offset must be caught by the bounds checks.
        let mut evil = bytes.clone();
        let sig_count = u32::from_be_bytes(evil[104..108].try_into().unwrap()) as usize;
        let sig_size = u32::from_be_bytes(evil[108..112].try_into().unwrap()) as usize;
        let sig_len = sig_count * 16 + sig_size;
        let main = 96 + 16 + sig_len + (8 - sig_len % 8) % 8;
        let count = u32::from_be_bytes(evil[main + 8..main + 12].try_into().unwrap()) as usize;
        for e in 0..count {
            let at = main + 16 + e * 16;
            evil[at + 8..at + 12].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
        }
        std::fs::write(&cut, &evil).unwrap();
        assert!(
            matches!(read_srpm(&cut), Err(Error::InvalidSpec(m)) if m.contains("is not a valid RPM"))
        );
    }

    #[test]
    fn sanity_check_passes_with_all_three_tags() {
        let mut info = srpm_info();
        info.vendor = Some("Koji".to_owned());
        info.packager = Some("Koji".to_owned());
        info.distribution = Some("Koji".to_owned());
        assert!(info.sanity_check().is_ok());
        info.packager = Some(String::new());
        assert!(
            matches!(info.sanity_check(), Err(Error::Build { message, .. }) if message.contains("packager"))
        );
    }

    // --- query output -----------------------------------------------------------------------

    #[test]
    fn requires_drop_rpmlib_and_detect_dynamic_buildrequires() {
        let out = "@@KOJI-ADJUTANT-PKG tiny\n(tinydep or tinyalt)\nmake >= 1.0\n\
                   rpmlib(CompressedFileNames) <= 3.0.4-1\nmake >= 1.0\n\
                   rpmlib(RichDependencies) <= 4.12.0-1\n\n";
        let q = parse_requires_query(out);
        assert_eq!(q.packages, ["tiny"]);
        assert_eq!(q.requires, ["(tinydep or tinyalt)", "make >= 1.0"]);
        assert!(!q.dynamic);
        assert_eq!(parse_requires(out), q.requires);
        let dynamic =
            parse_requires_query("rpmlib(DynamicBuildRequires) <= 4.15.0-1\npython3-devel\n");
        assert!(dynamic.dynamic);
        assert_eq!(dynamic.requires, ["python3-devel"]);
        assert!(dynamic.packages.is_empty());
    }

    #[test]
    fn package_list_matches_kojids_fields() {
        let q = package_list_query(None);
        assert_eq!(&q[..3], ["rpm", "-qa", "--qf"]);
        assert!(q[3].contains("%{SIGMD5}") && q[3].contains("%{EPOCH}"));
        let out = "bash\t5.2.26\t1.fc40\t(none)\tx86_64\tDEE9ADADF7B9BA214E3940B1D496B952\t8123456\t(none)\t1700000000\n\
                   gpg-pubkey\ta15b79cc\t63d04c2c\t(none)\t(none)\t(none)\t0\t(none)\t1674595372\n\
                   perl-libs\t5.38.2\t506.fc40\t4\tx86_64\t00112233445566778899aabbccddeeff\t(none)\t5000000000\t1700000001\n";
        let rpms = parse_package_list(out).unwrap();
        assert_eq!(rpms.len(), 2);
        assert_eq!(
            rpms[0],
            BuildrootRpm {
                id: None,
                name: "bash".to_owned(),
                version: "5.2.26".to_owned(),
                release: "1.fc40".to_owned(),
                epoch: None,
                arch: "x86_64".to_owned(),
                payloadhash: "dee9adadf7b9ba214e3940b1d496b952".to_owned(),
                size: 8123456,
                buildtime: 1700000000,
                external_repo: None,
                location: None,
            }
        );
        assert_eq!(rpms[1].epoch, Some(4));
        assert_eq!(rpms[1].size, 5_000_000_000);
    }

    #[test]
    fn bad_package_list_lines_are_errors() {
        for bad in [
            "bash\t5\t1\n",
            "bash\t5\t1\tx\tx86_64\tabcd\t1\t(none)\t1\n",
            "bash\t5\t1\t(none)\tx86_64\t(none)\t1\t(none)\t1\n",
            "bash\t5\t1\t(none)\tx86_64\tzz\t1\t(none)\t1\n",
            "bash\t5\t1\t(none)\tx86_64\tabcd\t(none)\t(none)\t1\n",
        ] {
            assert!(
                matches!(parse_package_list(bad), Err(Error::Build { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(parse_package_list("\n").unwrap(), []);
    }

    // --- cache key --------------------------------------------------------------------------

    #[test]
    fn cache_key_material_is_stable_and_order_insensitive_for_the_install_set() {
        let plan = plan_for(&inputs(&[]));
        let a = cache_key_material("sha256:aa", &plan, &["@build".to_owned(), "gcc".to_owned()]);
        let b = cache_key_material(
            "sha256:aa",
            &plan_for(&inputs(&[])),
            &["gcc".to_owned(), "@build".to_owned(), "gcc".to_owned()],
        );
        assert_eq!(a, b);
        assert!(a.starts_with("koji-adjutant buildroot cache key v1\nimage 9:sha256:aa\n"));
    }

    #[test]
    fn cache_key_material_changes_with_every_input() {
        let base_inputs = inputs(&[]);
        let install = vec!["@build".to_owned()];
        let base = cache_key_material("sha256:aa", &plan_for(&base_inputs), &install);
        let mut variants: Vec<(&str, String)> = Vec::new();
        variants.push((
            "image",
            cache_key_material("sha256:bb", &plan_for(&base_inputs), &install),
        ));
        variants.push((
            "install set",
            cache_key_material(
                "sha256:aa",
                &plan_for(&base_inputs),
                &["@build".to_owned(), "gcc".to_owned()],
            ),
        ));
        let mut i = base_inputs.clone();
        i.repo_id = 78;
        variants.push((
            "repo id",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        let mut i = base_inputs.clone();
        i.arch = "aarch64".to_owned();
        i.image_arches = vec!["aarch64".to_owned()];
        variants.push((
            "arch",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        let mut i = base_inputs.clone();
        i.repo = RepoLocation::Url("https://koji.example/repos/f40-build/77/x86_64".to_owned());
        variants.push((
            "location",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        let i = inputs(&[("rpm.macro.dist", s(".fc40"))]);
        variants.push((
            "macros",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        let i = inputs(&[("mock.yum.module_hotfixes", ExtraValue::Bool(true))]);
        variants.push((
            "repo file",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        let i = inputs(&[("rpm.env.FOO", s("1"))]);
        variants.push((
            "environment",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        let i = inputs(&[("mock.releasever", s("40"))]);
        variants.push((
            "releasever",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        let mut i = base_inputs.clone();
        i.options.rpmdb_path = Some("/var/lib/rpm".to_owned());
        variants.push((
            "rpmdb pin",
            cache_key_material("sha256:aa", &plan_for(&i), &install),
        ));
        for (what, material) in &variants {
            assert_ne!(material, &base, "material ignores {what}");
        }
        // A value cannot imitate the next field: lengths delimit them.
        let tricky =
            cache_key_material("sha256:aa\nrepo_id 2:77", &plan_for(&base_inputs), &install);
        assert_ne!(tricky, base);
    }

    // --- kojid's result ---------------------------------------------------------------------

    #[test]
    fn kojid_result_has_kojids_shape() {
        assert_eq!(task_upload_path(123456), "tasks/3456/123456");
        assert_eq!(task_upload_path(42), "tasks/42/42");
        let up = task_upload_path(123456);
        let r = kojid_result(
            &up,
            123456,
            &["tiny-1.0-3.noarch.rpm"],
            &["tiny-1.0-3.src.rpm"],
            &["root.log", "build.log", "noarch_rpmdiff.json"],
            991,
            true,
        )
        .unwrap();
        assert_eq!(
            r,
            KojidResult {
                rpms: vec!["tasks/3456/123456/tiny-1.0-3.noarch.rpm".to_owned()],
                srpms: vec!["tasks/3456/123456/tiny-1.0-3.src.rpm".to_owned()],
                logs: vec![
                    "tasks/3456/123456/root.log".to_owned(),
                    "tasks/3456/123456/build.log".to_owned(),
                    "tasks/3456/123456/noarch_rpmdiff.json".to_owned()
                ],
                brootid: 991,
            }
        );
        let no_keep =
            kojid_result(&up, 1, &["a.rpm"], &["a.src.rpm"], &["root.log"], 1, false).unwrap();
        assert!(no_keep.srpms.is_empty());
    }

    #[test]
    fn kept_srpm_must_be_exactly_one() {
        let none: [&str; 0] = [];
        assert!(matches!(
            kojid_result("tasks/1/1", 1, &none, &none, &none, 1, true),
            Err(Error::Build { message, .. }) if message == "no srpm files found for task 1"
        ));
        assert!(matches!(
            kojid_result("tasks/1/1", 1, &[], &["a.src.rpm", "b.src.rpm"], &[], 1, true),
            Err(Error::Build { message, .. }) if message.starts_with("multiple srpm files found for task 1")
        ));
    }

    #[test]
    fn result_files_are_sorted_like_kojid() {
        let files = classify_result_files(&[
            "build.log",
            "tiny-1.0-3.src.rpm",
            "tiny-1.0-3.noarch.rpm",
            "tiny-debuginfo-1.0-3.x86_64.rpm",
            "weird.txt",
            "log",
        ]);
        assert_eq!(files.logs, ["build.log", "log"]);
        assert_eq!(files.srpms, ["tiny-1.0-3.src.rpm"]);
        assert_eq!(
            files.rpms,
            ["tiny-1.0-3.noarch.rpm", "tiny-debuginfo-1.0-3.x86_64.rpm"]
        );
        assert_eq!(files.unexpected, ["weird.txt"]);
    }

    // --- extra values -----------------------------------------------------------------------

    #[test]
    fn extra_values_render_like_python_str() {
        assert_eq!(ExtraValue::Bool(true).python_str(), "True");
        assert_eq!(ExtraValue::Null.python_str(), "None");
        assert_eq!(ExtraValue::Int(-3).python_str(), "-3");
        assert_eq!(ExtraValue::Float(1.0).python_str(), "1.0");
        assert_eq!(ExtraValue::Float(0.5).python_str(), "0.5");
        assert_eq!(s("x y").python_str(), "x y");
        assert_eq!(
            ExtraValue::List(vec![s("a'b"), ExtraValue::Int(1)]).python_str(),
            r"['a\'b', 1]"
        );
    }

    #[test]
    fn extra_values_deserialize_from_any_self_describing_value() {
        use serde::de::value::{
            BoolDeserializer, Error as DeError, I64Deserializer, StrDeserializer, UnitDeserializer,
        };
        assert_eq!(
            ExtraValue::deserialize(BoolDeserializer::<DeError>::new(true)).unwrap(),
            ExtraValue::Bool(true)
        );
        assert_eq!(
            ExtraValue::deserialize(I64Deserializer::<DeError>::new(7)).unwrap(),
            ExtraValue::Int(7)
        );
        assert_eq!(
            ExtraValue::deserialize(StrDeserializer::<DeError>::new("x")).unwrap(),
            s("x")
        );
        assert_eq!(
            ExtraValue::deserialize(UnitDeserializer::<DeError>::new()).unwrap(),
            ExtraValue::Null
        );
    }

    #[test]
    fn options_default_like_kojid() {
        let o = BuildrootOptions::default();
        assert_eq!(
            (
                o.vendor.as_str(),
                o.packager.as_str(),
                o.distribution.as_str()
            ),
            ("Koji", "Koji", "Koji")
        );
        assert_eq!(o.mockhost, "koji-linux-gnu");
        assert_eq!(o.rpmbuild_timeout, 86400);
        assert_eq!(o.install_group, "build");
        assert!(!o.keep_srpm);
    }
}
