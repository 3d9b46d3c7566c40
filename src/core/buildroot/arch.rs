//! Arches: Koji's canonical names, what a bootstrap image builds, and the buildroot arch of a
//! noarch task.

use std::collections::BTreeSet;
use std::fmt;

use crate::core::error::Error;

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
/// Narrower than rpm's `arch_compat` on purpose: the bootstrap's dnf installs the buildroot for
/// its own arch (no `--forcearch`), and the build container runs without a 32-bit
/// personality, so an i686 buildroot on an x86_64 builder, which mock makes with
/// `setarch`/`--forcearch`, is not made here.
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

/// An arch this builder's image cannot build is refused, so the hub offers the task to a
/// builder that can (kojid's `find_arch` fails a noarch task no arch of the host can build;
/// here another builder, with another image, may).
impl From<UnsupportedArch> for Error {
    fn from(e: UnsupportedArch) -> Self {
        Error::Refused(e.to_string())
    }
}

/// Check that an image running `image_arches` can build `arch` (noarch always can).
pub fn check_buildable(arch: &str, image_arches: &[String]) -> Result<(), UnsupportedArch> {
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

/// The arches an image of architecture `arch` (Go/OCI names or `uname -m`) builds.
pub fn image_arches_from(arch: &str) -> Vec<String> {
    let machine = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i686",
        "arm" => "armv7hl",
        other => other,
    };
    image_buildable_arches(machine)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn check_buildable_uses_the_compat_table() {
        let x86 = vec!["x86_64".to_owned()];
        assert!(check_buildable("x86_64", &x86).is_ok());
        assert!(check_buildable("noarch", &x86).is_ok());
        assert!(check_buildable("noarch", &[]).is_ok());
        let err = check_buildable("i686", &x86).unwrap_err();
        assert_eq!(err.arch, "i686");
        assert_eq!(
            err.to_string(),
            "the task image (x86_64) cannot build arch i686"
        );
        assert!(matches!(Error::from(err), Error::Refused(_)));
        assert!(check_buildable("aarch64", &x86).is_err());
        let both = vec!["x86_64".to_owned(), "i686".to_owned()];
        assert!(check_buildable("i586", &both).is_ok());
        let arm = vec!["armv7l".to_owned()];
        assert!(check_buildable("armhfp", &arm).is_ok());
        assert!(check_buildable("armv7hl", &arm).is_ok());
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

    #[test]
    fn oci_arch_names_map_to_rpm_arches() {
        assert_eq!(image_arches_from("amd64"), ["x86_64", "amd64", "ia32e"]);
        assert_eq!(image_arches_from("arm64"), ["aarch64"]);
        assert_eq!(image_arches_from("s390x"), ["s390x"]);
    }
}
