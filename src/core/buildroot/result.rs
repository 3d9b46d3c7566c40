//! What a build hands kojid: result packages checked by their headers, and the dict kojid's
//! `BuildArchTask.handler` returns.

use std::path::Path;

use serde::Serialize;

use crate::core::error::{Error, Result};

use super::header::{read_package, Package, PackageKind};

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
                // As Python prints kojid's list.
                let names: Vec<String> = many.iter().map(|n| format!("'{}'", n.as_ref())).collect();
                return Err(Error::Build {
                    message: format!(
                        "multiple srpm files found for task {task_id}: [{}]",
                        names.join(", ")
                    ),
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

/// Check a result file taken out of the build container: a well-formed RPM of the expected
/// kind whose file name is the one rpm gives it (`%_rpmfilename`), so a build cannot hand
/// kojid a file dressed up as another package. A failure is a `BuildError`.
pub fn check_result_package(path: &Path, kind: PackageKind, log: &Path) -> Result<Package> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |why: String| Error::Build {
        message: format!("result file {name} is refused: {why}"),
        log: Some(log.to_path_buf()),
        exit_code: None,
    };
    let package = read_package(path).map_err(|e| bad(format!("it {}", e.0)))?;
    if package.kind != kind {
        let what = match package.kind {
            PackageKind::Source => "a source package",
            PackageKind::Binary => "a binary package",
        };
        return Err(bad(format!("it is {what}")));
    }
    let expected = package.file_name();
    if name != expected {
        return Err(bad(format!("its header says it is {expected}")));
    }
    Ok(package)
}

#[cfg(test)]
mod tests {
    use super::super::header::tests::{build_rpm, TempDir};
    use super::*;

    #[test]
    fn kojid_result_has_kojids_shape() {
        assert_eq!(crate::core::task::upload_path(123456), "tasks/3456/123456");
        assert_eq!(crate::core::task::upload_path(42), "tasks/42/42");
        let up = crate::core::task::upload_path(123456);
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
            Err(Error::Build { message, .. }) if message == "multiple srpm files found for task 1: ['a.src.rpm', 'b.src.rpm']"
        ));
    }

    #[test]
    fn result_packages_are_checked_by_header_kind_and_name() {
        let dir = TempDir::new();
        let (Some(rpm), Some(srpm)) = (build_rpm(&dir, "-bb"), build_rpm(&dir, "-bs")) else {
            return;
        };
        let log = dir.0.join("build.log");
        assert_eq!(
            check_result_package(&rpm, PackageKind::Binary, &log)
                .unwrap()
                .name,
            "tiny"
        );
        assert!(check_result_package(&srpm, PackageKind::Source, &log).is_ok());
        let err = check_result_package(&rpm, PackageKind::Source, &log).unwrap_err();
        assert!(err.to_string().contains("is a binary package"), "{err}");
        let renamed = dir.0.join("other-9-9.noarch.rpm");
        std::fs::copy(&rpm, &renamed).unwrap();
        let err = check_result_package(&renamed, PackageKind::Binary, &log).unwrap_err();
        assert!(
            err.to_string()
                .contains("its header says it is tiny-1.0-3.noarch.rpm"),
            "{err}"
        );
        let junk = dir.0.join("junk-1-1.noarch.rpm");
        std::fs::write(&junk, b"not an rpm").unwrap();
        let err = check_result_package(&junk, PackageKind::Binary, &log).unwrap_err();
        assert!(
            matches!(err, Error::Build { .. }) && err.to_string().contains("not an RPM"),
            "{err}"
        );
    }
}
