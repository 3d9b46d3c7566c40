//! BuildRequires as the package manager may see them.
//!
//! `dnf builddep` resolves a build requirement as a provide or a file path, nothing else.
//! `dnf install`, which installs them here, also takes an argument ending in `.rpm` as a
//! package *file* (whose scriptlets then run as root), a URL as a file to download, `@x` as a
//! group or module, `-x` as an option and a glob as every matching package. A spec controls
//! its BuildRequires, so each one is checked against those readings before it becomes an
//! argument, and one that names anything but a provide or an absolute file path fails the
//! build, naming it, before anything is installed.

use std::collections::BTreeSet;

use crate::core::error::{Error, Result};

use super::header::Dependency;

/// Why a requirement is not a provide or a file path, or `None` when it is one.
fn refusal(req: &str) -> Option<&'static str> {
    let lower = req.to_ascii_lowercase();
    if req.trim().is_empty() {
        return Some("it is empty");
    }
    if req.chars().any(char::is_control) {
        return Some("it contains control characters");
    }
    if lower.contains("://") {
        return Some("it names a URL");
    }
    if req.starts_with('-') {
        return Some("it would be read as an option");
    }
    if req.starts_with('@') {
        return Some("it names a group or module");
    }
    if req.contains(['*', '?', '[']) {
        return Some("it is a glob");
    }
    if req.starts_with('(') {
        // A rich dependency: one expression for libsolv, never a file.
        return if req.ends_with(')') {
            None
        } else {
            Some("it is an unbalanced rich dependency")
        };
    }
    // `name`, `name op version`: split off the version, which may hold anything but spaces.
    let name = req.split(' ').next().unwrap_or(req);
    let rest: Vec<&str> = req.split(' ').skip(1).collect();
    match rest.as_slice() {
        [] => {}
        [op, version] if matches!(*op, "<" | "<=" | "=" | ">=" | ">") && !version.is_empty() => {}
        _ => return Some("it is not a name with an optional version"),
    }
    if name.to_ascii_lowercase().ends_with(".rpm") {
        return Some("it names a package file");
    }
    if !name.starts_with('/') {
        // `golang(example.com/x)` is a provide; `builddir/x` is a relative path.
        let before_paren = name.split('(').next().unwrap_or(name);
        if before_paren.contains('/') {
            return Some("it is a relative path");
        }
    }
    None
}

/// The requirements of `deps` to install, as dnf arguments: `rpmlib(...)` features dropped,
/// duplicates removed, order kept. A requirement dnf could read as anything but a provide or
/// an absolute file path is a `BuildError` naming it and `source` (the package it came from).
pub fn install_arguments(deps: &[Dependency], source: &str, log: &str) -> Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dep in deps.iter().filter(|d| !d.is_rpmlib()) {
        let req = dep.display();
        if let Some(why) = refusal(&req) {
            return Err(Error::Build {
                message: format!(
                    "BuildRequires: {req} (of {source}) is refused: {why}; a build requirement \
                     must be a package name, a provide or an absolute file path (as dnf \
                     builddep reads it). Nothing was installed; see {log}"
                ),
                log: None,
                exit_code: None,
            });
        }
        if seen.insert(req.clone()) {
            out.push(req);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, flags: u32, version: &str) -> Dependency {
        Dependency {
            name: name.to_owned(),
            flags,
            version: version.to_owned(),
        }
    }

    fn plain(name: &str) -> Dependency {
        dep(name, 0, "")
    }

    #[test]
    fn provides_files_versions_and_rich_deps_pass_in_order_without_duplicates() {
        let deps = [
            dep("make", 12, "4.0"),
            plain("gcc"),
            plain("/usr/bin/tar"),
            plain("(foo or bar)"),
            plain("pkgconfig(glib-2.0)"),
            plain("golang(github.com/pkg/errors)"),
            plain("perl(Foo::Bar)"),
            plain("font(:lang=en)"),
            dep("rpmlib(CompressedFileNames)", (1 << 24) | 10, "3.0.4-1"),
            plain("gcc"),
        ];
        assert_eq!(
            install_arguments(&deps, "x.src.rpm", "root.log").unwrap(),
            [
                "make >= 4.0",
                "gcc",
                "/usr/bin/tar",
                "(foo or bar)",
                "pkgconfig(glib-2.0)",
                "golang(github.com/pkg/errors)",
                "perl(Foo::Bar)",
                "font(:lang=en)"
            ]
        );
    }

    #[test]
    fn package_files_urls_groups_options_globs_and_relative_paths_are_refused() {
        for (req, why) in [
            ("/builddir/build/SOURCES/evil.rpm", "package file"),
            ("builddir/build/SOURCES/evil.rpm", "package file"),
            ("evil.RPM", "package file"),
            ("file:///builddir/build/SOURCES/evil.rpm", "URL"),
            ("https://example.org/x", "URL"),
            ("@buildsys-build", "group"),
            ("@nodejs:20", "group"),
            ("--installroot=/", "option"),
            ("-y", "option"),
            ("gcc*", "glob"),
            ("/usr/bin/?", "glob"),
            ("builddir/build/SOURCES/script", "relative path"),
            ("(foo or bar", "unbalanced"),
            ("a\nb", "control"),
            ("", "empty"),
        ] {
            let err = install_arguments(&[plain(req)], "evil-1-1.src.rpm", "root.log").unwrap_err();
            let Error::Build { message, .. } = &err else {
                panic!("{req:?}: {err:?}");
            };
            assert!(message.contains(why), "{req:?}: {message}");
            assert!(message.contains("evil-1-1.src.rpm"), "{message}");
        }
        // A versioned requirement is checked on its name, and the version must be one word.
        assert!(install_arguments(&[dep("x.rpm", 8, "1")], "s", "root.log").is_err());
        assert!(install_arguments(&[dep("x", 8, "1 extra")], "s", "root.log").is_err());
        // One bad requirement refuses them all.
        assert!(install_arguments(&[plain("gcc"), plain("@x")], "s", "root.log").is_err());
    }
}
