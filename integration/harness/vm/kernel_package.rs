//! Debian's current amd64 kernel, fetched with `apt-get download` and unpacked with `dpkg -x` (nothing is
//! installed), cached under cargo's target dir by package name and version so later runs reuse it.

use super::host_command::{find_tool, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage whose dependency names the current kernel (`linux-image-6.1.0-NN-amd64`).
const METAPACKAGE: &str = "linux-image-amd64";

const APT_HINT: &str =
    "the VM tests fetch Debian's kernel with apt: run `apt-get update` first (.ci/run does)";

/// An unpacked kernel package: `root` holds `boot/vmlinuz-<release>` and `lib/modules/<release>`.
#[derive(Debug, Clone)]
pub struct KernelPackage {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub root: PathBuf,
}

impl KernelPackage {
    /// The candidate kernel of apt's lists (or the `linux-image-*` package named by `TETHER_VM_KERNEL`,
    /// e.g. one from bookworm-backports), from the cache when this version was unpacked before.
    pub fn fetch(cache_dir: &Path) -> KernelPackage {
        let package =
            std::env::var("TETHER_VM_KERNEL").unwrap_or_else(|_| current_kernel_package());
        assert!(
            package.starts_with("linux-image-"),
            "TETHER_VM_KERNEL={package}: name a linux-image-<release> package"
        );
        let version = candidate_version(&package);
        let release = package
            .strip_prefix("linux-image-")
            .expect("checked above")
            .to_owned();
        let root = cache_dir.join(format!("{package}_{version}"));
        // Tests of one binary run on threads of one process, and the private directory below is named
        // by process: one fetch at a time here, and the next finds the first one's tree ready.
        static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
        if !root.join(READY_MARKER).exists() {
            unpack(&package, &version, &root, &release);
        }
        KernelPackage { release, root }
    }

    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// Written last, so a run killed while unpacking never leaves a cache entry that looks complete.
const READY_MARKER: &str = ".tether-ready";

/// `linux-image-amd64`'s dependency, e.g. `linux-image-6.1.0-56-amd64`; it changes with each kernel ABI bump,
/// so it is looked up on every run.
fn current_kernel_package() -> String {
    let show = run(
        Command::new("apt-cache").args(["show", "--no-all-versions", METAPACKAGE]),
        "looking up Debian's kernel",
        APT_HINT,
    );
    field(&show, "Depends")
        .and_then(|deps| {
            deps.split(',')
                .map(|d| d.split_whitespace().next().unwrap_or(""))
                .find(|d| d.starts_with("linux-image-") && d.ends_with("-amd64"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            panic!("{METAPACKAGE} names no linux-image-*-amd64 dependency:\n{show}\n{APT_HINT}")
        })
}

fn candidate_version(package: &str) -> String {
    let show = run(
        Command::new("apt-cache").args(["show", "--no-all-versions", package]),
        &format!("looking up the version of {package}"),
        APT_HINT,
    );
    field(&show, "Version")
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("apt-cache show {package} gave no Version:\n{show}\n{APT_HINT}"))
}

/// The value of the first `Name: value` line of a Debian control stanza.
fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

/// Downloads and unpacks into a private directory, then renames it into place: two test runs racing on
/// an empty cache each do the work once and neither sees a half-unpacked tree.
fn unpack(package: &str, version: &str, root: &Path, release: &str) {
    let parent = root.parent().expect("cache entry has a parent");
    let work = parent.join(format!(".partial-{}-{}", std::process::id(), package));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("creating {}: {e}", work.display()));
    // apt-get download drops to the _apt user and only warns when it cannot write here as that user.
    run(
        Command::new("apt-get")
            .args(["download", "-q", &format!("{package}={version}")])
            .current_dir(&work),
        &format!("downloading {package} {version}"),
        APT_HINT,
    );
    let deb = std::fs::read_dir(&work)
        .unwrap_or_else(|e| panic!("reading {}: {e}", work.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| {
            panic!(
                "apt-get download {package} left no .deb in {}",
                work.display()
            )
        });
    let tree = work.join("tree");
    run(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&tree),
        &format!("unpacking {}", deb.display()),
        "dpkg comes with every Debian system",
    );
    std::fs::remove_file(&deb).unwrap_or_else(|e| panic!("removing {}: {e}", deb.display()));
    // The package has no modules.dep (its postinst runs depmod); busybox's depmod writes one.
    let busybox = find_tool(&["/bin/busybox", "/usr/bin/busybox"], "busybox-static");
    run(
        Command::new(busybox)
            .arg("depmod")
            .arg("-b")
            .arg(&tree)
            .arg(release),
        &format!("generating modules.dep for {release}"),
        "install busybox-static",
    );
    std::fs::write(tree.join(READY_MARKER), format!("{package} {version}\n"))
        .unwrap_or_else(|e| panic!("writing the cache marker in {}: {e}", tree.display()));
    if std::fs::rename(&tree, root).is_err() {
        // Another run finished first; its tree is as good as ours.
        assert!(
            root.join(READY_MARKER).exists(),
            "cannot move the unpacked kernel to {}; remove that directory and rerun",
            root.display()
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn control_fields_are_read_by_exact_name() {
        let stanza = "Package: linux-image-amd64\nPre-Depends: x\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\nVersion: 6.1.192-2\n";
        assert_eq!(
            field(stanza, "Depends"),
            Some("linux-image-6.1.0-56-amd64 (= 6.1.192-2)")
        );
        assert_eq!(field(stanza, "Version"), Some("6.1.192-2"));
        assert_eq!(field(stanza, "Provides"), None);
    }
}
