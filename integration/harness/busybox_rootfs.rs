//! A container root filesystem made of Debian's busybox-static: the binary and one symlink per applet.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's busybox-static installs here (package `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// Fills `dir` with `bin/busybox`, its applets, an empty `etc` and `www/index.html` holding `page`.
/// Panics with the package to install when busybox is missing or not static (a dynamic one would not
/// run inside a rootfs without its libraries).
pub fn make(dir: &Path, page: &str) -> PathBuf {
    let file = Command::new("file")
        .args(["-L", BUSYBOX])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        Path::new(BUSYBOX).exists() && (file.is_empty() || file.contains("statically linked")),
        "{BUSYBOX} missing or not static ({file}); install Debian's busybox-static"
    );
    let bin = dir.join("bin");
    for sub in [&bin, &dir.join("etc"), &dir.join("www"), &dir.join("tmp")] {
        std::fs::create_dir_all(sub).unwrap_or_else(|e| panic!("creating {}: {e}", sub.display()));
    }
    std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copying busybox into the rootfs");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("running busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
    std::fs::write(dir.join("www/index.html"), page).expect("writing index.html");
    dir.to_path_buf()
}
