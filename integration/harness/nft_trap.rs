//! Proof that a program never runs `nft` (nor `ping`, which the demo once needed): it runs in a private mount
//! namespace where every real copy of them is covered by a trap that writes its arguments to a log and
//! fails, with the trap's directory first in PATH too. A program that spawned one by any name or path would
//! fail and leave a line in the log.

use std::path::{Path, PathBuf};

use super::scratch_dir::ScratchDir;

/// The trapped programs and where Debian has them (merged /usr: /sbin is /usr/sbin, /bin is /usr/bin).
const TRAPPED: &[(&str, &[&str])] = &[
    ("nft", &["/usr/sbin/nft", "/usr/bin/nft"]),
    ("ping", &["/usr/bin/ping", "/usr/sbin/ping"]),
];

pub struct NftTrap {
    dir: ScratchDir,
}

impl NftTrap {
    pub fn new(label: &str) -> NftTrap {
        let dir = ScratchDir::new(&format!("tt-nfttrap-{label}-{}", std::process::id()));
        let log = dir.path().join("calls.log");
        for (name, _) in TRAPPED {
            write_script(
                &dir.sub("bin").join(name),
                &format!(
                    "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 1\n",
                    log.display()
                ),
            );
        }
        NftTrap { dir }
    }

    /// PATH for programs under the trap: the trap first.
    pub fn path_env(&self) -> String {
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.bin().display())
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// A script that runs `program` with its arguments under the trap (stdin, stdout and the environment
    /// pass through, PATH excepted).
    pub fn wrap(&self, program: &Path) -> PathBuf {
        let binds: String = TRAPPED
            .iter()
            .flat_map(|(name, real)| real.iter().map(move |p| (self.bin().join(name), p)))
            .filter(|(_, p)| Path::new(p).exists())
            .map(|(trap, p)| format!("mount --bind '{}' {p} && ", trap.display()))
            .collect();
        let name = program.file_name().unwrap().to_string_lossy();
        let wrapper = self.dir.sub("wrapped").join(name.as_ref());
        write_script(
            &wrapper,
            &format!(
                "#!/bin/sh\nexport PATH='{}'\nexec unshare -m sh -c \"{binds}exec '{}' \\\"\\$@\\\"\" sh \"$@\"\n",
                self.path_env(),
                program.display()
            ),
        );
        wrapper
    }

    /// Every nft invocation seen, one per line; empty when nft never ran.
    pub fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }

    /// Fails the test unless the trap works: nft run through a wrapper must be caught.
    pub fn assert_armed(&self) {
        let probe = self.wrap(Path::new("/usr/sbin/nft"));
        let out = std::process::Command::new(&probe)
            .args(["list", "ruleset"])
            .output()
            .expect("running the trap probe");
        assert!(!out.status.success(), "the nft trap let nft run");
        assert!(
            self.calls().contains("nft list ruleset"),
            "the nft trap did not record a call: {:?}",
            self.calls()
        );
        std::fs::remove_file(self.dir.path().join("calls.log")).unwrap();
    }
}

/// Writes an executable script. The script itself is written by `install`, a child of its own, never by
/// this process: a fork by another test thread while this process held the file open for writing would
/// keep it open in that child until its exec, and running the script then fails with ETXTBSY ("Text file
/// busy"; seen in CI).
fn write_script(path: &Path, body: &str) {
    let draft = path.with_extension("draft");
    std::fs::write(&draft, body).unwrap_or_else(|e| panic!("writing {}: {e}", draft.display()));
    let status = std::process::Command::new("install")
        .args(["-m", "0755"])
        .arg(&draft)
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("running install for {}: {e}", path.display()));
    assert!(status.success(), "install {} failed", path.display());
    std::fs::remove_file(&draft).unwrap();
}
