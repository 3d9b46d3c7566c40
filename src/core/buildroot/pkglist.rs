//! A buildroot's package list: the query kojid's `getPackageList` amounts to and its parser.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};

use super::config::ExtraValue;

/// Packages kojid's `getPackageList` leaves out of a buildroot's package list.
const SKIPPED_PACKAGES: [&str; 2] = ["buildsys-build", "gpg-pubkey"];

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

/// An installed package as a lockfile records it (mock's buildroot_lock: `rpms` items, but
/// `url`, the package's place in the repo, which the caller knows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockedRpm {
    pub name: String,
    /// As mock writes it: a string, or null.
    pub epoch: Option<String>,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub sigmd5: String,
    pub license: String,
    /// The last 8 characters of `%{SIGPGP:pgpsig}` (the signing key), or null.
    pub signature: Option<String>,
}

/// One line of [`package_list_query`]: the hub's fields and the lockfile's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledRpm {
    pub rpm: BuildrootRpm,
    pub license: String,
    pub signature: Option<String>,
}

impl InstalledRpm {
    pub fn locked(&self) -> LockedRpm {
        LockedRpm {
            name: self.rpm.name.clone(),
            epoch: self.rpm.epoch.map(|e| e.to_string()),
            version: self.rpm.version.clone(),
            release: self.rpm.release.clone(),
            arch: self.rpm.arch.clone(),
            sigmd5: self.rpm.payloadhash.clone(),
            license: self.license.clone(),
            signature: self.signature.clone(),
        }
    }
}

/// The query that lists a buildroot's packages: the fields kojid's `getPackageList` reads,
/// with `LONGSIZE` as its fallback for `SIZE`, then the license and signature a lockfile
/// records. `rpmdb_path` pins the database (see [`BuildrootOptions::rpmdb_path`]).
pub fn package_list_query(rpmdb_path: Option<&str>) -> Vec<String> {
    let mut argv = vec!["rpm".to_owned(), "-qa".to_owned()];
    if let Some(p) = rpmdb_path {
        argv.push("--dbpath".to_owned());
        argv.push(p.to_owned());
    }
    argv.push("--qf".to_owned());
    argv.push(
        "%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{EPOCH}\\t%{ARCH}\\t%{SIGMD5}\\t%{SIZE}\\t%{LONGSIZE}\\t%{BUILDTIME}\\t%{LICENSE}\\t%{SIGPGP:pgpsig}\\n"
            .to_owned(),
    );
    argv
}

/// Parse [`package_list_query`]'s output, leaving out kojid's skipped packages
/// (`buildsys-build`, `gpg-pubkey`).
pub fn parse_package_list(stdout: &str) -> Result<Vec<InstalledRpm>> {
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
        let [name, version, release, epoch, arch, sigmd5, size, longsize, buildtime, license, sigpgp] =
            fields.as_slice()
        else {
            return Err(bad("expected 11 tab-separated fields"));
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
        let rpm = BuildrootRpm {
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
        };
        let signature = match *sigpgp {
            "(none)" | "" => None,
            text => {
                let tail: String = text.chars().rev().take(8).collect();
                Some(tail.chars().rev().collect())
            }
        };
        out.push(InstalledRpm {
            rpm,
            license: if *license == "(none)" {
                String::new()
            } else {
                (*license).to_owned()
            },
            signature,
        });
    }
    Ok(out)
}

impl BuildrootRpm {
    /// `name-epoch:version-release.arch@payloadhash`: one package exactly.
    pub fn nevra_key(&self) -> String {
        format!(
            "{}-{}:{}-{}.{}@{}",
            self.name,
            self.epoch.unwrap_or(0),
            self.version,
            self.release,
            self.arch,
            self.payloadhash
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_list_matches_kojids_fields_and_keeps_the_lockfiles() {
        let q = package_list_query(None);
        assert_eq!(&q[..3], ["rpm", "-qa", "--qf"]);
        assert!(q[3].contains("%{SIGMD5}") && q[3].contains("%{EPOCH}"));
        assert!(q[3].contains("%{LICENSE}") && q[3].contains("%{SIGPGP:pgpsig}"));
        let out = "bash\t5.2.26\t1.fc40\t(none)\tx86_64\tDEE9ADADF7B9BA214E3940B1D496B952\t8123456\t(none)\t1700000000\tGPL-3.0-or-later\tRSA/SHA256, Mon 01 Jan 2024, Key ID 8f2d5e9b1c3a4d7f\n\
                   gpg-pubkey\ta15b79cc\t63d04c2c\t(none)\t(none)\t(none)\t0\t(none)\t1674595372\tpubkey\t(none)\n\
                   perl-libs\t5.38.2\t506.fc40\t4\tx86_64\t00112233445566778899aabbccddeeff\t(none)\t5000000000\t1700000001\t(none)\t(none)\n";
        let rpms = parse_package_list(out).unwrap();
        assert_eq!(rpms.len(), 2);
        assert_eq!(
            rpms[0].rpm,
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
        assert_eq!(rpms[1].rpm.epoch, Some(4));
        assert_eq!(rpms[1].rpm.size, 5_000_000_000);
        let locked = rpms[0].locked();
        assert_eq!(
            (
                locked.license.as_str(),
                locked.signature.as_deref(),
                locked.epoch
            ),
            ("GPL-3.0-or-later", Some("1c3a4d7f"), None)
        );
        assert_eq!(locked.sigmd5, "dee9adadf7b9ba214e3940b1d496b952");
        let unsigned = rpms[1].locked();
        assert_eq!((unsigned.license.as_str(), unsigned.signature), ("", None));
        assert_eq!(unsigned.epoch.as_deref(), Some("4"));
    }

    #[test]
    fn bad_package_list_lines_are_errors() {
        for bad in [
            "bash\t5\t1\n",
            "bash\t5\t1\tx\tx86_64\tabcd\t1\t(none)\t1\tMIT\t(none)\n",
            "bash\t5\t1\t(none)\tx86_64\t(none)\t1\t(none)\t1\tMIT\t(none)\n",
            "bash\t5\t1\t(none)\tx86_64\tzz\t1\t(none)\t1\tMIT\t(none)\n",
            "bash\t5\t1\t(none)\tx86_64\tabcd\t(none)\t(none)\t1\tMIT\t(none)\n",
            "bash\t5\t1\t(none)\tx86_64\tabcd\t1\t(none)\t1\n",
        ] {
            assert!(
                matches!(parse_package_list(bad), Err(Error::Build { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(parse_package_list("\n").unwrap(), []);
    }
}
