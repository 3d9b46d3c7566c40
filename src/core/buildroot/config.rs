//! What decides a buildroot: the hub's build config (tag extra), kojid's options, and the
//! files and environments made from them as kojid's `genMockConfig` and mock make them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};

use super::{BUILD_HOME, REPOS_DIR, TOPDIR};

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

    pub(crate) fn python_repr(&self) -> String {
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

/// The tag extra, inherited, as the hub returns it in `getBuildConfig`.
pub type Extra = BTreeMap<String, ExtraValue>;

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
    pub extra: Extra,
}

/// Where a buildroot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildrootMode {
    /// mock's bootstrap model: the root starts empty and every package in it is installed
    /// from the tag's repo by the bootstrap image's dnf (`dnf --installroot`).
    Tag,
    /// The image itself is the buildroot and the install group is installed over it; the
    /// image's own RPMs stay in the root. Not what mock does; an explicit opt-in.
    Image,
}

impl BuildrootMode {
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "tag" => Ok(BuildrootMode::Tag),
            "image" => Ok(BuildrootMode::Image),
            other => Err(Error::invalid(format!(
                "buildroot_mode must be \"tag\" or \"image\", not {other:?}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BuildrootMode::Tag => "tag",
            BuildrootMode::Image => "image",
        }
    }
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
    /// Image mode only: pin rpm's database to this path for the build's rpm and rpmbuild.
    /// Needed when the image is not RPM-based (Debian's rpm keeps its database in `~/.rpmdb`).
    pub rpmdb_path: Option<String>,
    /// kojid's `yum_proxy`: dnf's `proxy` for the buildroot repo (used when it is a URL).
    pub yum_proxy: Option<String>,
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
            yum_proxy: None,
        }
    }
}

/// Where the buildroot's repo (one arch of a Koji tag repo) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// On a local (NFS) Koji topdir. `arch_dir` must be inside `topdir`: the repo reaches its
    /// packages through `toplink`, a relative symlink up to `topdir`.
    Local { arch_dir: PathBuf, topdir: PathBuf },
    /// The full URL of the arch repo, as dnf's `baseurl`.
    Url(String),
}

/// A dnf repo id for the tag's repo: `koji-<tag>-<repo_id>`, with characters dnf does not
/// allow in repo ids replaced by `_`.
pub(crate) fn repo_section_name(tag_name: &str, repo_id: i64) -> String {
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
pub(crate) fn repo_file_content(name: &str, baseurl: &str, extra: &Extra) -> String {
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
/// (genMockConfig writes it into the repo section). `cachedir` and `logdir` are inside the
/// installroot (dnf puts them there whatever the config says), where mock has them too.
pub(crate) fn dnf_conf_content(extra: &Extra, yum_proxy: Option<&str>) -> Result<String> {
    let mut out = String::from("[main]\n");
    let _ = writeln!(out, "reposdir={REPOS_DIR}");
    out.push_str(
        "cachedir=/var/cache/dnf\n\
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
    if let Some(proxy) = yum_proxy {
        let scheme_ok = [
            "http://",
            "https://",
            "socks5://",
            "socks5h://",
            "socks4://",
        ]
        .iter()
        .any(|s| proxy.starts_with(s));
        if !scheme_ok || proxy.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(format!(
                "yum_proxy must be an http(s) or socks URL without spaces, not {proxy:?}"
            )));
        }
        let _ = writeln!(out, "proxy={proxy}");
    }
    Ok(out)
}

/// The macros of the buildroot, in genMockConfig's precedence: kojid's options, then tag
/// `rpm.macro.*`, then what neither may override (`%_topdir`, `%_host_cpu`, `%_host`);
/// `%_buildhost` unless the tag sets it.
pub(crate) fn macros(
    opts: &BuildrootOptions,
    extra: &Extra,
    target_arch: &str,
) -> Result<BTreeMap<String, String>> {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    m.insert(
        "%_rpmfilename".to_owned(),
        "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm".to_owned(),
    );
    m.insert("%vendor".to_owned(), opts.vendor.clone());
    m.insert("%packager".to_owned(), opts.packager.clone());
    m.insert("%distribution".to_owned(), opts.distribution.clone());
    for (key, value) in extra {
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
pub(crate) fn check_macro_value(name: &str, value: &str) -> Result<()> {
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

pub(crate) fn macros_content(macros: &BTreeMap<String, String>) -> String {
    let mut out = String::from("# Generated by koji-adjutant\n");
    for (name, value) in macros {
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// The environment of build steps: mock's default `environment`, tag `rpm.env.*` over it,
/// and `HOME` forced to the build user's home afterwards, as mock does.
pub(crate) fn build_environment(extra: &Extra) -> Result<Vec<(String, String)>> {
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

/// The fixed environment of root steps (the package manager). Nothing of the tag's
/// `rpm.env.*` reaches it: a `PYTHONPATH` or `LD_PRELOAD` set for builds must never run in
/// a process that installs packages as root.
pub(crate) fn root_environment() -> Vec<(String, String)> {
    [
        ("HOME", "/root"),
        ("PATH", "/usr/bin:/bin:/usr/sbin:/sbin"),
        ("LANG", "C.UTF-8"),
        ("LC_MESSAGES", "C.UTF-8"),
        ("TERM", "vt100"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// mock's `module_setup_commands`: `[[action, "mod1, mod2"], ...]`. Every word becomes an
/// operand of a root command, so none may look like an option.
pub(crate) fn module_setup_commands(extra: &Extra) -> Result<Vec<(String, Vec<String>)>> {
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
    let plain_word = |w: &str| {
        !w.is_empty()
            && !w.starts_with('-')
            && !w.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    let mut out = Vec::new();
    for command in commands {
        let ExtraValue::List(pair) = command else {
            return Err(bad());
        };
        let [ExtraValue::Str(action), modules] = pair.as_slice() else {
            return Err(bad());
        };
        if !plain_word(action) {
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
        if let Some(m) = modules.iter().find(|m| !plain_word(m)) {
            return Err(Error::invalid(format!(
                "mock.module_setup_commands: module {m:?} is not a module name"
            )));
        }
        out.push((action.clone(), modules));
    }
    Ok(out)
}

/// Tag settings that ask for what is not done here; the task is refused (another builder,
/// with mock, can do it) rather than built without it:
/// - `mock.package_manager` other than dnf (dnf4): the bootstrap image's dnf4 installs roots;
/// - `mock.forcearch`: emulated builds (qemu-user-static) are not made in containers here;
/// - mock's sign plugin (`mock.plugin_conf.sign_enable`): it runs a signing command with the
///   builder's keys after the build, which has no place in an isolated build.
pub(crate) fn refused_extra(extra: &Extra) -> Result<()> {
    let refuse = |why: String| Err(Error::Refused(format!("tag setting {why}")));
    match extra.get("mock.package_manager") {
        None => {}
        Some(ExtraValue::Str(s)) if s == "dnf" || s == "dnf4" => {}
        Some(other) => {
            return refuse(format!(
                "mock.package_manager={}: koji-adjutant installs buildroots with the bootstrap image's dnf (dnf4) only",
                other.python_repr()
            ))
        }
    }
    if let Some(arch) = extra.get("mock.forcearch") {
        return refuse(format!(
            "mock.forcearch={}: emulated builds are not made in containers by koji-adjutant",
            arch.python_repr()
        ));
    }
    if extra
        .get("mock.plugin_conf.sign_enable")
        .is_some_and(ExtraValue::truthy)
    {
        return refuse(
            "mock.plugin_conf.sign_enable: koji-adjutant does not run mock's sign plugin (a signing command with the builder's keys); sign with Koji's own signing instead".to_owned(),
        );
    }
    Ok(())
}

/// `mock.*` tag settings that kojid passes to mock but that change nothing here.
pub(crate) fn ignored_extra(extra: &Extra) -> Vec<String> {
    const HONOURED: [&str; 6] = [
        "mock.yum.module_hotfixes",
        "mock.yum.best",
        "mock.releasever",
        "mock.module_setup_commands",
        "mock.bootstrap_image",
        "mock.use_bootstrap_image",
    ];
    extra
        .iter()
        // mock.package_manager is dnf4 here (anything else is refused)
        .filter(|(k, _)| {
            k.starts_with("mock.")
                && !HONOURED.contains(&k.as_str())
                && *k != "mock.package_manager"
        })
        .map(|(k, v)| format!("{k}={}", v.python_repr()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ExtraValue {
        ExtraValue::Str(v.to_owned())
    }

    fn extra(items: &[(&str, ExtraValue)]) -> Extra {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

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

    #[test]
    fn modes_parse() {
        assert_eq!(BuildrootMode::parse("tag").unwrap(), BuildrootMode::Tag);
        assert_eq!(BuildrootMode::parse("image").unwrap(), BuildrootMode::Image);
        assert!(BuildrootMode::parse("mock").is_err());
    }

    #[test]
    fn repo_file_has_the_url_and_module_hotfixes_when_the_tag_says() {
        let on = repo_file_content(
            "koji-t-1",
            "http://h/r",
            &extra(&[("mock.yum.module_hotfixes", ExtraValue::Int(1))]),
        );
        assert!(on.contains("baseurl=http://h/r\n") && on.contains("module_hotfixes=1\n"));
        for falsy in [
            ExtraValue::Int(0),
            s(""),
            ExtraValue::Null,
            ExtraValue::Bool(false),
        ] {
            let off = repo_file_content(
                "koji-t-1",
                "http://h/r",
                &extra(&[("mock.yum.module_hotfixes", falsy)]),
            );
            assert!(!off.contains("module_hotfixes"));
        }
        assert!(repo_file_content("x", "u", &Extra::new()).contains("gpgcheck=0\n"));
    }

    #[test]
    fn repo_id_is_sanitised_for_dnf() {
        assert_eq!(repo_section_name("f40 build/x", 7), "koji-f40_build_x-7");
        assert_eq!(repo_section_name("f40-build", 77), "koji-f40-build-77");
    }

    #[test]
    fn dnf_conf_reads_repos_only_from_its_own_dir_and_best_must_be_an_integer() {
        let conf = dnf_conf_content(&Extra::new(), None).unwrap();
        assert!(conf.starts_with("[main]\n"));
        assert!(conf.contains(&format!("reposdir={REPOS_DIR}\n")));
        assert!(conf.contains("install_weak_deps=0\n") && conf.contains("gpgcheck=0\n"));
        assert!(!conf.contains("best=") && !conf.contains("proxy="));
        let best = dnf_conf_content(&extra(&[("mock.yum.best", s("0"))]), None).unwrap();
        assert!(best.contains("best=0\n"));
        assert!(dnf_conf_content(&extra(&[("mock.yum.best", s("maybe"))]), None).is_err());
        let proxied = dnf_conf_content(&Extra::new(), Some("http://proxy.example:3128")).unwrap();
        assert!(proxied.ends_with("proxy=http://proxy.example:3128\n"));
        for bad in [
            "proxy.example:3128",
            "http://p\nreposdir=/tmp",
            "http://a b",
        ] {
            assert!(
                dnf_conf_content(&Extra::new(), Some(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn macros_have_kojid_values_tag_overrides_and_fixed_ones() {
        let opts = BuildrootOptions {
            vendor: "V".into(),
            buildhost: Some("builder.example.org".into()),
            ..Default::default()
        };
        let m = macros(
            &opts,
            &extra(&[
                ("rpm.macro.dist", s(".fc40")),
                ("rpm.macro.fedora", ExtraValue::Int(40)),
                ("rpm.macro.vendor", s("Tag Vendor")),
                ("rpm.macro._topdir", s("/elsewhere")),
                ("rpm.macro._host_cpu", s("sparc")),
            ]),
            "x86_64",
        )
        .unwrap();
        assert_eq!(m["%dist"], ".fc40");
        assert_eq!(m["%fedora"], "40");
        assert_eq!(m["%vendor"], "Tag Vendor");
        assert_eq!(m["%_topdir"], TOPDIR);
        assert_eq!(m["%_host_cpu"], "x86_64");
        assert_eq!(m["%_host"], "x86_64-koji-linux-gnu");
        assert_eq!(m["%_buildhost"], "builder.example.org");
        assert_eq!(
            m["%_rpmfilename"],
            "%%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm"
        );
        let tagged = macros(
            &opts,
            &extra(&[("rpm.macro._buildhost", s("tag-host"))]),
            "x86_64",
        )
        .unwrap();
        assert_eq!(tagged["%_buildhost"], "tag-host");
        let content = macros_content(&m);
        assert!(content.contains("\n%dist .fc40\n"));
    }

    #[test]
    fn macro_values_that_would_break_the_file_are_rejected() {
        let opts = BuildrootOptions::default();
        for bad in ["a\nb", "x\\", "", "nul\0"] {
            assert!(
                macros(&opts, &extra(&[("rpm.macro.dist", s(bad))]), "x86_64").is_err(),
                "{bad:?}"
            );
        }
        assert!(macros(&opts, &extra(&[("rpm.macro.a b", s("x"))]), "x86_64").is_err());
    }

    #[test]
    fn build_environment_is_mocks_plus_tag_env_with_home_fixed() {
        let env = build_environment(&extra(&[
            ("rpm.env.FOO", s("bar")),
            ("rpm.env.HOME", s("/elsewhere")),
            ("rpm.env.LANG", s("en_US.UTF-8")),
        ]))
        .unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("FOO"), Some("bar"));
        assert_eq!(get("HOME"), Some(BUILD_HOME));
        assert_eq!(get("LANG"), Some("en_US.UTF-8"));
        assert_eq!(get("TERM"), Some("vt100"));
        for bad in ["rpm.env.1X", "rpm.env.A-B", "rpm.env."] {
            assert!(
                build_environment(&extra(&[(bad, s("x"))])).is_err(),
                "{bad}"
            );
        }
        assert!(build_environment(&extra(&[("rpm.env.X", s("a\0b"))])).is_err());
    }

    #[test]
    fn root_environment_is_fixed_whatever_the_tag_sets() {
        let env = root_environment();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["HOME", "PATH", "LANG", "LC_MESSAGES", "TERM"]);
        assert!(!env
            .iter()
            .any(|(k, _)| k == "LD_PRELOAD" || k == "PYTHONPATH"));
    }

    #[test]
    fn module_setup_commands_refuse_option_shaped_words() {
        let cmd = |action: &str, modules: &str| {
            extra(&[(
                "mock.module_setup_commands",
                ExtraValue::List(vec![ExtraValue::List(vec![s(action), s(modules)])]),
            )])
        };
        assert_eq!(
            module_setup_commands(&cmd("enable", "nodejs:20, perl:5.36")).unwrap(),
            vec![(
                "enable".to_owned(),
                vec!["nodejs:20".to_owned(), "perl:5.36".to_owned()]
            )]
        );
        assert!(module_setup_commands(&cmd("--setopt=x", "a")).is_err());
        assert!(module_setup_commands(&cmd("enable", "a, --installroot=/")).is_err());
        assert!(module_setup_commands(&cmd("enable", "a b")).is_err());
        assert!(module_setup_commands(&extra(&[("mock.module_setup_commands", s("x"))])).is_err());
        assert!(
            module_setup_commands(&extra(&[("mock.module_setup_commands", s(""))]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn ignored_mock_settings_are_reported() {
        let ignored = ignored_extra(&extra(&[
            ("mock.new_chroot", ExtraValue::Int(0)),
            ("mock.package_manager", s("dnf")),
            ("mock.yum.best", ExtraValue::Int(1)),
            ("mock.bootstrap_image", s("fedora:40")),
            ("rpm.macro.dist", s(".x")),
        ]));
        assert_eq!(ignored, vec!["mock.new_chroot=0".to_owned()]);
        assert!(ignored_extra(&extra(&[("mock.package_manager", s("dnf5"))])).is_empty());
    }

    #[test]
    fn what_is_not_done_here_is_refused() {
        for ok in [
            extra(&[]),
            extra(&[("mock.package_manager", s("dnf"))]),
            extra(&[("mock.package_manager", s("dnf4"))]),
            extra(&[("mock.plugin_conf.sign_enable", ExtraValue::Bool(false))]),
        ] {
            assert!(refused_extra(&ok).is_ok(), "{ok:?}");
        }
        for (bad, why) in [
            (
                extra(&[("mock.package_manager", s("dnf5"))]),
                "mock.package_manager='dnf5'",
            ),
            (extra(&[("mock.package_manager", s("yum"))]), "dnf4"),
            (
                extra(&[("mock.forcearch", s("armv7hl"))]),
                "mock.forcearch='armv7hl'",
            ),
            (
                extra(&[("mock.plugin_conf.sign_enable", ExtraValue::Bool(true))]),
                "sign plugin",
            ),
        ] {
            match refused_extra(&bad) {
                Err(Error::Refused(message)) => assert!(message.contains(why), "{message}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
