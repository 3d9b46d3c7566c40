//! The one RPM header reader of the crate: the input SRPM before anything runs, the rebuilt
//! SRPM's BuildRequires, and every result file before kojid gets it.
//!
//! Everything here reads files a build may have crafted, so every offset and count is checked
//! against the bytes actually present, sizes are bounded by rpm's own limits before anything
//! is allocated, and nothing panics.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::core::error::{Error, Result};

const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
const LEAD_SIZE: usize = 96;
const LEAD_TYPE_BINARY: u16 = 0;
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
const TAG_ARCH: u32 = 1022;
const TAG_OLDFILENAMES: u32 = 1027;
const TAG_SOURCERPM: u32 = 1044;
const TAG_REQUIREFLAGS: u32 = 1048;
const TAG_REQUIRENAME: u32 = 1049;
const TAG_REQUIREVERSION: u32 = 1050;
const TAG_SOURCEPACKAGE: u32 = 1106;
const TAG_BASENAMES: u32 = 1117;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

const SENSE_LESS: u32 = 1 << 1;
const SENSE_GREATER: u32 = 1 << 2;
const SENSE_EQUAL: u32 = 1 << 3;
const SENSE_RPMLIB: u32 = 1 << 24;

/// Source or binary, from the lead and the header (`SOURCEPACKAGE` / `SOURCERPM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    Source,
    Binary,
}

/// One requirement as rpm stores it: `REQUIRENAME`, `REQUIREFLAGS`, `REQUIREVERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub flags: u32,
    pub version: String,
}

impl Dependency {
    /// rpm's own features (`rpmlib(...)`), not packages.
    pub fn is_rpmlib(&self) -> bool {
        self.flags & SENSE_RPMLIB != 0 || self.name.starts_with("rpmlib(")
    }

    /// As `rpm -q --requires` prints it: `name`, or `name <op> version`.
    pub fn display(&self) -> String {
        let mut op = String::new();
        if self.flags & SENSE_LESS != 0 {
            op.push('<');
        }
        if self.flags & SENSE_GREATER != 0 {
            op.push('>');
        }
        if self.flags & SENSE_EQUAL != 0 {
            op.push('=');
        }
        if op.is_empty() || self.version.is_empty() {
            self.name.clone()
        } else {
            format!("{} {op} {}", self.name, self.version)
        }
    }
}

/// What the crate needs from a package's lead and main header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub kind: PackageKind,
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<i64>,
    /// The header's ARCH (a source package's is the arch it was built on, as rpm keeps it).
    pub arch: String,
    /// The spec's file name among a source package's files (the first `*.spec`, as mock
    /// takes it).
    pub spec_file: Option<String>,
    pub vendor: Option<String>,
    pub packager: Option<String>,
    pub distribution: Option<String>,
    pub requires: Vec<Dependency>,
}

impl Package {
    /// The file name rpm gives the package under koji-adjutant's `%_rpmfilename`
    /// (`name-version-release.arch.rpm`, `.src.rpm` for sources).
    pub fn file_name(&self) -> String {
        let arch = match self.kind {
            PackageKind::Source => "src",
            PackageKind::Binary => &self.arch,
        };
        format!("{}-{}-{}.{arch}.rpm", self.name, self.version, self.release)
    }

    /// Whether the package needs `%generate_buildrequires` (`rpmlib(DynamicBuildRequires)`).
    pub fn dynamic_buildrequires(&self) -> bool {
        self.requires
            .iter()
            .any(|d| d.name == "rpmlib(DynamicBuildRequires)")
    }
}

/// A package file that is not a well-formed RPM; `what` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPackage(pub String);

/// Read and check a package file: lead magic, header magic and bounds, and the main header's
/// fields. The kind comes from the lead and must agree with the header.
pub fn read_package(path: &Path) -> std::result::Result<Package, BadPackage> {
    let mut file = File::open(path).map_err(|e| BadPackage(format!("cannot be read: {e}")))?;
    read_package_from(&mut file)
}

/// [`read_package`] on an open file (for files opened without following symlinks).
pub fn read_package_from(file: &mut File) -> std::result::Result<Package, BadPackage> {
    let lead = read_lead(file)?;
    let corrupt = |what: &str| BadPackage(format!("is not a valid RPM: {what}"));
    // The signature header follows the lead, padded to 8 bytes; skip it.
    let (sig_count, sig_size) = read_header_intro(file).map_err(|m| corrupt(&m))?;
    let sig_len = u64::from(sig_count) * 16 + u64::from(sig_size);
    let padding = (8 - sig_len % 8) % 8;
    let skip = i64::try_from(sig_len + padding).map_err(|_| corrupt("signature too large"))?;
    file.seek(SeekFrom::Current(skip))
        .map_err(|e| BadPackage(format!("cannot be read: {e}")))?;
    let (count, size) = read_header_intro(file).map_err(|m| corrupt(&m))?;
    // Check the sizes against the file before allocating them: a corrupt header must not
    // make us allocate hundreds of megabytes only to hit the end of the file.
    let wanted = u64::from(count) * 16 + u64::from(size);
    let available = file
        .metadata()
        .and_then(|m| Ok(m.len().saturating_sub(file.stream_position()?)))
        .map_err(|e| BadPackage(format!("cannot be read: {e}")))?;
    if wanted > available {
        return Err(corrupt("truncated header"));
    }
    let mut index = vec![0u8; count as usize * 16];
    let mut store = vec![0u8; size as usize];
    file.read_exact(&mut index)
        .and_then(|()| file.read_exact(&mut store))
        .map_err(|_| corrupt("truncated header"))?;
    let header = Header { index, store };
    package_from_header(&header, lead).map_err(|m| corrupt(&m))
}

/// Read the task's input SRPM: any problem is an `InvalidSpec` naming the file, raised
/// before anything runs.
pub fn read_srpm(path: &Path) -> Result<Package> {
    let shown = path.display();
    let package = read_package(path).map_err(|BadPackage(what)| {
        match what.strip_prefix("cannot be read: ") {
            Some(cause) => Error::invalid(format!("cannot read SRPM {shown}: {cause}")),
            None => Error::invalid(format!("{shown} {what}")),
        }
    })?;
    if package.kind != PackageKind::Source {
        return Err(Error::invalid(format!(
            "{shown} is a binary RPM, not a source RPM"
        )));
    }
    Ok(package)
}

fn read_lead(file: &mut File) -> std::result::Result<u16, BadPackage> {
    let mut lead = [0u8; LEAD_SIZE];
    let mut filled = 0;
    while filled < LEAD_SIZE {
        match file.read(lead.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BadPackage(format!("cannot be read: {e}"))),
        }
    }
    if filled < LEAD_SIZE || lead.get(0..4) != Some(&LEAD_MAGIC[..]) {
        return Err(BadPackage("is not an RPM file".to_owned()));
    }
    Ok(be16(&lead, 6).unwrap_or(u16::MAX))
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

    fn int32s(&self, tag: u32) -> std::result::Result<Option<Vec<u32>>, String> {
        let Some(entry) = self.entry(tag) else {
            return Ok(None);
        };
        if entry.kind != TYPE_INT32 {
            return Err(format!("tag {tag} is not an int32"));
        }
        let len = (entry.count as usize)
            .checked_mul(4)
            .ok_or_else(|| format!("tag {tag} is too large"))?;
        let bytes = entry
            .offset
            .checked_add(len)
            .and_then(|end| self.store.get(entry.offset..end))
            .ok_or_else(|| format!("tag {tag} points outside the header"))?;
        Ok(Some(
            bytes.chunks_exact(4).filter_map(|c| be32(c, 0)).collect(),
        ))
    }

    fn int32(&self, tag: u32) -> std::result::Result<Option<i64>, String> {
        match self.int32s(tag)? {
            None => Ok(None),
            Some(values) => values
                .first()
                .map(|v| Some(i64::from(*v)))
                .ok_or_else(|| format!("tag {tag} is empty")),
        }
    }

    fn requires(&self) -> std::result::Result<Vec<Dependency>, String> {
        let names = self.strings(TAG_REQUIRENAME)?.unwrap_or_default();
        let flags = self.int32s(TAG_REQUIREFLAGS)?.unwrap_or_default();
        let versions = self.strings(TAG_REQUIREVERSION)?.unwrap_or_default();
        if flags.len() != names.len() || versions.len() != names.len() {
            return Err("requirement tags disagree in length".to_owned());
        }
        Ok(names
            .into_iter()
            .zip(flags)
            .zip(versions)
            .map(|((name, flags), version)| Dependency {
                name,
                flags,
                version,
            })
            .collect())
    }
}

fn package_from_header(header: &Header, lead_kind: u16) -> std::result::Result<Package, String> {
    let kind = match (lead_kind, header.has(TAG_SOURCEPACKAGE)) {
        (LEAD_TYPE_SOURCE, true) => PackageKind::Source,
        (LEAD_TYPE_SOURCE, false) if !header.has(TAG_SOURCERPM) => PackageKind::Source,
        (LEAD_TYPE_BINARY, false) => PackageKind::Binary,
        (LEAD_TYPE_SOURCE, false) => return Err("the header is a binary package's".to_owned()),
        (LEAD_TYPE_BINARY, true) => return Err("the header is a source package's".to_owned()),
        (other, _) => return Err(format!("unknown package type {other} in the lead")),
    };
    let required = |tag: u32, what: &str| {
        header
            .string(tag)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("no {what} in the header"))
    };
    let spec_file = if kind == PackageKind::Source {
        let files = match header.strings(TAG_BASENAMES)? {
            Some(files) => files,
            None => header.strings(TAG_OLDFILENAMES)?.unwrap_or_default(),
        };
        files
            .into_iter()
            .map(|f| f.rsplit('/').next().unwrap_or_default().to_owned())
            .find(|f| f.ends_with(".spec"))
    } else {
        None
    };
    Ok(Package {
        kind,
        name: required(TAG_NAME, "name")?,
        version: required(TAG_VERSION, "version")?,
        release: required(TAG_RELEASE, "release")?,
        epoch: header.int32(TAG_EPOCH)?,
        arch: header.string(TAG_ARCH)?.unwrap_or_default(),
        spec_file,
        vendor: header.string(TAG_VENDOR)?,
        packager: header.string(TAG_PACKAGER)?,
        distribution: header.string(TAG_DISTRIBUTION)?,
        requires: header.requires()?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "koji-adjutant-header-{}-{}",
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
        BuildRequires: make >= 1.0\nBuildRequires: (tinydep or tinyalt)\n\
        BuildRequires: /usr/bin/tar\n%description\nt\n%files\n";

    /// Build `tiny.spec` with the host's rpmbuild in `mode` (-bs or -bb) and return the
    /// package, or None when rpmbuild is not installed (cargo test on a laptop).
    pub(crate) fn build_rpm(dir: &TempDir, mode: &str) -> Option<PathBuf> {
        if Command::new("rpmbuild").arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "CI needs rpmbuild");
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

    #[test]
    fn a_real_srpm_is_read_with_its_buildrequires() {
        let dir = TempDir::new();
        let Some(srpm) = build_rpm(&dir, "-bs") else {
            return;
        };
        let info = read_srpm(&srpm).unwrap();
        assert_eq!(info.kind, PackageKind::Source);
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
        assert_eq!(info.file_name(), "tiny-1.0-3.src.rpm");
        let shown: Vec<String> = info
            .requires
            .iter()
            .filter(|d| !d.is_rpmlib())
            .map(Dependency::display)
            .collect();
        assert_eq!(
            shown,
            ["(tinydep or tinyalt)", "/usr/bin/tar", "make >= 1.0"]
        );
        assert!(info.requires.iter().any(Dependency::is_rpmlib));
        assert!(!info.dynamic_buildrequires());
    }

    #[test]
    fn a_binary_rpm_is_read_and_refused_as_an_srpm() {
        let dir = TempDir::new();
        let Some(rpm) = build_rpm(&dir, "-bb") else {
            return;
        };
        let pkg = read_package(&rpm).unwrap();
        assert_eq!(pkg.kind, PackageKind::Binary);
        assert_eq!(pkg.arch, "noarch");
        assert_eq!(pkg.file_name(), "tiny-1.0-3.noarch.rpm");
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
    fn a_truncated_or_corrupt_package_is_invalid_not_a_panic() {
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
        // Corrupted index offsets and counts must be caught by the bounds checks.
        let sig_count = u32::from_be_bytes(bytes[104..108].try_into().unwrap()) as usize;
        let sig_size = u32::from_be_bytes(bytes[108..112].try_into().unwrap()) as usize;
        let sig_len = sig_count * 16 + sig_size;
        let main = 96 + 16 + sig_len + (8 - sig_len % 8) % 8;
        let count = u32::from_be_bytes(bytes[main + 8..main + 12].try_into().unwrap()) as usize;
        for field in [8, 12] {
            let mut evil = bytes.clone();
            for e in 0..count {
                let at = main + 16 + e * 16 + field;
                evil[at..at + 4].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
            }
            std::fs::write(&cut, &evil).unwrap();
            assert!(
                matches!(read_srpm(&cut), Err(Error::InvalidSpec(m)) if m.contains("is not a valid RPM")),
                "field {field}"
            );
        }
    }

    #[test]
    fn dependencies_display_like_rpm() {
        let dep = |name: &str, flags: u32, version: &str| Dependency {
            name: name.to_owned(),
            flags,
            version: version.to_owned(),
        };
        assert_eq!(
            dep("make", SENSE_GREATER | SENSE_EQUAL, "4").display(),
            "make >= 4"
        );
        assert_eq!(dep("a", SENSE_LESS, "2").display(), "a < 2");
        assert_eq!(dep("a", SENSE_EQUAL, "1:2-3").display(), "a = 1:2-3");
        assert_eq!(dep("a", 0, "").display(), "a");
        assert_eq!(dep("a", SENSE_EQUAL, "").display(), "a");
        assert!(dep("rpmlib(X)", SENSE_RPMLIB | SENSE_LESS | SENSE_EQUAL, "1").is_rpmlib());
    }
}
