//! The buildroot of a buildArch task, made as kojid's `BuildRoot` makes it with mock.
//!
//! # What kojid and mock do, and how koji-adjutant mirrors it
//!
//! Facts read from koji 1.35.3 (`koji/__init__.py` `genMockConfig`, `builder/kojid`
//! `BuildRoot._writeMockConfig`/`init`/`build`/`getPackageList`, `BuildArchTask.handler`,
//! `koji/tasks.py` `find_arch`) and mock 6.x (`backend.py` `Commands.build`,
//! `rebuild_installed_srpm`, `rebuild_package`; `buildroot.py` `_setup_dirs`,
//! `_make_build_user`, `_prepare_rpm_macros`; the bootstrap chroot):
//!
//! * mock's **bootstrap model**: the buildroot starts empty; a bootstrap root (from
//!   `bootstrap_image`) provides the package manager, which installs the tag's install group
//!   (`@build`) into it with `--installroot`, from the tag's repo only. Every package in the
//!   buildroot comes from that repo, so kojid's `setBuildRootList` lists all of them. Here the
//!   bootstrap is a container of the bootstrap image whose `dnf --installroot` writes into the
//!   build container's root filesystem (see [`plan`]).
//! * kojid runs `mock --no-clean --target <task arch> --rebuild <srpm>`. mock does not build
//!   the SRPM it is given: as the build user it unpacks it (`rpm -Uvh --nodeps`), rebuilds a
//!   new SRPM from the spec inside the buildroot (`rpmbuild -bs --target <arch> --nodeps`),
//!   installs the BuildRequires of that *rebuilt* SRPM as root (repeating until the package
//!   set is stable, at most 10 times), then runs `rpmbuild -bb --target <arch> --nodeps` on the
//!   spec. The SRPM kojid uploads when `keep_srpm` is the rebuilt one. The same here.
//! * Specs with `%generate_buildrequires` (rpmlib(DynamicBuildRequires)) get mock's loop:
//!   `rpmbuild -br` (exit 0 or 11), install the requires of `SRPMS/*.buildreqs.nosrc.rpm`,
//!   repeat with `--noprep` until stable (at most 10), then build with `-ba --noprep`.
//! * rpmbuild runs as `bash --login -c '<command>'` as the build user with the network off,
//!   and with `--noclean`. Macros go to the build user's `~/.rpmmacros`, one `%name value`
//!   line each, like mock's `_prepare_rpm_macros`.
//!
//! # Decisions
//!
//! * **Two containers per task**, never one with both powers: the build container has the
//!   buildroot as its root filesystem and no capabilities at all (empty bounding set), no
//!   network, only the SRPM mounted; the bootstrap container holds the capabilities an install
//!   needs, the Koji repo (read-only, or a network for a URL repo) and the build container's
//!   root at [`INSTALL_ROOT`]. Root steps never see a build's environment.
//! * **No process outlives its step**: each step ends by killing every other process of its
//!   user in its container (see [`plan::STEP_REAPER`]); the containers' main processes are
//!   podman's catatonit pausing as `nobody`, which the build user cannot signal. A warm build
//!   whose cached root needs nothing installed is the build container's main process instead
//!   ([`plan::LEAD_WRAPPER`], which reaps the same way): its container ends before anything
//!   else happens to its root.
//! * **BuildRequires are provides and file paths only** ([`requires`]): a requirement dnf would
//!   read as a package file, URL, group, option or glob fails the build before any install.
//! * **Results and logs never cross a path the container can write**: results come out of
//!   podman's archive endpoint as a tar of which only regular files are taken
//!   ([`crate::core::archive`]), into the task's result directory, which no container mounts;
//!   every RPM's header is checked ([`header`]) before kojid gets it; logs are written there
//!   by the host's own sinks.
//! * Hermetic package manager: `dnf -c /etc/koji-adjutant/dnf.conf --installroot=/br
//!   --setopt=reposdir=/etc/koji-adjutant/yum.repos.d --noplugins ...` in the bootstrap
//!   container reads only the Koji repo; repo files of the buildroot's packages are never read.
//! * **The cache** ([`cache`]) keeps installed roots as images, keyed by what they are made
//!   of: the bootstrap image's ID, the repo's `repomd.xml` digest, the group and the config.
//! * An image builds only its own arch family (see [`arch::check_buildable`]).
//! * For a noarch task kojid picks a random arch common to host and tag; the plan picks
//!   deterministically so equal tasks share a buildroot cache.

pub mod arch;
pub mod cache;
pub mod config;
pub mod header;
pub mod kept;
pub mod pkglist;
pub mod plan;
pub mod requires;
pub mod result;

pub use config::{BuildConfig, BuildrootMode, BuildrootOptions, ExtraValue, RepoLocation};
pub use pkglist::BuildrootRpm;
pub use plan::{BuildArchRequest, BuildrootPlan, Checkout, Input, LogTarget, Product, RunAs, Step};

/// The unprivileged build user (mock's `chrootuser`).
pub const BUILD_USER: &str = "mockbuild";
/// uid of [`BUILD_USER`].
pub const BUILD_UID: u32 = 1000;
/// gid of [`BUILD_USER`]'s group `mock`.
pub const BUILD_GID: u32 = 135;
/// uid (and gid) of the containers' main processes: catatonit pausing as `nobody`, which no
/// step's user can signal.
pub const PAUSE_UID: u32 = 65534;
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
/// Where the bootstrap container sees the build container's root filesystem.
pub const INSTALL_ROOT: &str = "/br";
/// dnf's main config for every package manager step (in the bootstrap container).
pub const DNF_CONF_PATH: &str = "/etc/koji-adjutant/dnf.conf";
/// The only directory dnf reads repo files from (in the bootstrap container).
pub const REPOS_DIR: &str = "/etc/koji-adjutant/yum.repos.d";
/// The Koji repo file, inside [`REPOS_DIR`].
pub const REPO_FILE_PATH: &str = "/etc/koji-adjutant/yum.repos.d/koji.repo";
/// Image mode: the system macro file that pins rpm's database location (see
/// [`BuildrootOptions::rpmdb_path`]); `/etc/rpm/macros.*` is read after the distribution's
/// own macro files by every rpm, so it wins over both Debian's and Fedora's defaults.
pub const RPMDB_MACROS_PATH: &str = "/etc/rpm/macros.zz-koji-adjutant-dbpath";
/// Where a local Koji topdir's repo is mounted read-only in the bootstrap container.
pub const KOJI_TOPDIR_MOUNT: &str = "/mnt/koji";
/// rpmbuild's path in the buildroot (mock's `rpmbuild_command`).
pub const RPMBUILD: &str = "/usr/bin/rpmbuild";

/// mock's `static_buildrequires_max_loops` and `dynamic_buildrequires_max_loops` defaults.
pub const MAX_BUILDREQUIRES_LOOPS: u32 = 10;
