//! An initramfs (cpio newc, gzip) staged in a directory: busybox-static with its applet links, real
//! binaries with the shared libraries `ldd` names, kernel modules, files, and `/init`.

use super::host_command::{find_tool, run};
use super::kernel_package::KernelPackage;
use super::module_deps::ModuleDeps;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Initramfs {
    root: PathBuf,
}

/// Where the scenario finds the ordered list of modules to insmod (paths under /lib/modules/<release>).
pub const MODULE_LIST: &str = "etc/tether-vm/modules";

impl Initramfs {
    /// Stages into `root` (emptied first) the skeleton and busybox with one link per applet.
    pub fn new(root: &Path) -> Initramfs {
        let _ = std::fs::remove_dir_all(root);
        for dir in [
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "etc",
            "lib",
            "lib64",
            "var/lib",
            "opt/cni/bin",
        ] {
            mkdir(&root.join(dir));
        }
        symlink("../run", root.join("var/run")).expect("var/run link in a fresh tree");
        let fs = Initramfs {
            root: root.to_owned(),
        };
        fs.add_busybox();
        // The kernel opens /dev/console for init before anything can mount devtmpfs.
        fs.mknod("dev/console", "600", "5", "1");
        fs.mknod("dev/null", "666", "1", "3");
        fs
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn add_busybox(&self) {
        let busybox = find_tool(&["/bin/busybox", "/usr/bin/busybox"], "busybox-static");
        let staged = self.root.join("bin/busybox");
        copy(&busybox, &staged);
        // The installed binary, not the copy just written: another test thread's fork between our write and
        // its exec may still hold the copy open for writing (exec then fails with ETXTBSY).
        let list = run(
            Command::new(&busybox).arg("--list"),
            "listing busybox applets",
            "install busybox-static (the dynamic busybox needs libraries the VM does not have)",
        );
        for applet in list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            let _ = symlink("busybox", self.root.join("bin").join(applet));
        }
        // The kernel's module autoloader runs /sbin/modprobe.
        let _ = std::fs::remove_file(self.root.join("sbin/modprobe"));
        symlink("../bin/busybox", self.root.join("sbin/modprobe")).expect("sbin/modprobe link");
    }

    /// Copies the executable `src` to `dest` (a path inside the tree) and every library `ldd` lists for it,
    /// at the same absolute paths. Debug symbols are stripped when `strip` exists: they are most of a debug
    /// build's size and the kernel unpacks the initramfs slowly under TCG.
    pub fn add_binary(&self, src: &Path, dest: &str) {
        let staged = self.root.join(dest.trim_start_matches('/'));
        mkdir(staged.parent().expect("dest names a file"));
        let _ = std::fs::remove_file(&staged);
        let stripped = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&staged)
            .arg(src)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            copy(src, &staged);
        }
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", staged.display()));
        for lib in shared_libraries(src) {
            let inside = self
                .root
                .join(lib.strip_prefix("/").expect("ldd paths are absolute"));
            if !inside.exists() {
                mkdir(inside.parent().expect("a library path names a file"));
                copy(&lib, &inside);
            }
        }
    }

    /// `modules` and their dependencies from `kernel`, with a `modules.dep` for them and the load order
    /// in [`MODULE_LIST`].
    pub fn add_modules(&self, kernel: &KernelPackage, modules: &[&str]) {
        let src_dir = kernel.modules_dir();
        let dep_path = src_dir.join("modules.dep");
        let text = std::fs::read_to_string(&dep_path).unwrap_or_else(|e| {
            panic!(
                "reading {}: {e}; remove the kernel cache entry and rerun",
                dep_path.display()
            )
        });
        let deps = ModuleDeps::parse(&text);
        let order = deps.load_order(modules);
        let dst_dir = self.root.join("lib/modules").join(&kernel.release);
        for rel in &order {
            let dst = dst_dir.join(uncompressed_name(rel));
            mkdir(dst.parent().expect("module path names a file"));
            stage_module(&src_dir.join(rel), &dst);
        }
        let staged: Vec<&str> = order.iter().map(|rel| uncompressed_name(rel)).collect();
        let dep_text = deps.subset_text(&order).replace(".ko.xz", ".ko");
        self.add_file(
            format!("lib/modules/{}/modules.dep", kernel.release),
            &dep_text,
        );
        self.add_file(MODULE_LIST, &(staged.join("\n") + "\n"));
    }

    /// Writes `contents` at `dest` inside the tree.
    pub fn add_file(&self, dest: impl AsRef<Path>, contents: &str) {
        let path = self.root.join(dest.as_ref());
        mkdir(path.parent().expect("dest names a file"));
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Copies the host file `src` to `dest` inside the tree, if it exists; returns whether it did.
    pub fn add_host_file_if_present(&self, src: &Path, dest: &str) -> bool {
        if !src.exists() {
            return false;
        }
        let path = self.root.join(dest);
        mkdir(path.parent().expect("dest names a file"));
        copy(src, &path);
        true
    }

    /// `/init` (PID 1), executable.
    pub fn set_init(&self, script: &str) {
        self.add_file("init", script);
        std::fs::set_permissions(
            self.root.join("init"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod /init");
    }

    /// Packs the tree into `out` (cpio newc, gzip -1: the kernel's unpacking speed matters more than size).
    pub fn pack(&self, out: &Path) {
        find_tool(&["/usr/bin/cpio", "/bin/cpio"], "cpio");
        run(
            Command::new("sh")
                .arg("-c")
                .arg("find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > \"$0\"")
                .arg(out)
                .current_dir(&self.root),
            "packing the initramfs",
            "install cpio and gzip",
        );
    }

    fn mknod(&self, dest: &str, mode: &str, major: &str, minor: &str) {
        run(
            Command::new("mknod")
                .args(["-m", mode])
                .arg(self.root.join(dest))
                .args(["c", major, minor]),
            &format!("creating /{dest} in the initramfs"),
            "the VM tests run as root",
        );
    }
}

/// Newer Debian kernels (6.12 in bookworm-backports) ship `.ko.xz` modules; busybox's insmod hands the file to
/// the kernel as it is, which rejects it ("Invalid ELF header magic"), so they are staged uncompressed.
fn uncompressed_name(rel: &str) -> &str {
    rel.strip_suffix(".xz").unwrap_or(rel)
}

fn stage_module(src: &Path, dst: &Path) {
    let name = src.display().to_string();
    if name.ends_with(".ko") {
        copy(src, dst);
        return;
    }
    assert!(
        name.ends_with(".ko.xz"),
        "kernel module {name}: only .ko and .ko.xz are handled; add this compression to harness/vm/initramfs.rs"
    );
    let busybox = find_tool(&["/bin/busybox", "/usr/bin/busybox"], "busybox-static");
    let out =
        std::fs::File::create(dst).unwrap_or_else(|e| panic!("creating {}: {e}", dst.display()));
    let status = Command::new(busybox)
        .args(["unxz", "-c"])
        .arg(src)
        .stdout(out)
        .status()
        .unwrap_or_else(|e| panic!("running busybox unxz on {name}: {e}"));
    assert!(status.success(), "busybox unxz {name} failed ({status})");
}

/// The absolute library paths `ldd` prints for `binary` (`name => /path (addr)` and the loader's own line).
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = run(
        Command::new("ldd").arg(binary),
        &format!("listing the libraries of {}", binary.display()),
        "ldd comes with libc-bin",
    );
    parse_ldd(&out)
}

fn parse_ldd(out: &str) -> Vec<PathBuf> {
    out.lines()
        .filter_map(|line| {
            let target = line.split_once("=>").map_or(line, |(_, t)| t);
            let path = target.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn mkdir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
}

/// Copies file contents (following symlinks: /lib64/ld-linux is a link on the host).
fn copy(src: &Path, dst: &Path) {
    std::fs::copy(src, dst)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", src.display(), dst.display()));
}

#[cfg(test)]
mod tests {
    use super::{parse_ldd, uncompressed_name};
    use std::path::PathBuf;

    #[test]
    fn compressed_modules_are_staged_under_their_plain_name() {
        assert_eq!(
            uncompressed_name("kernel/net/8021q/8021q.ko.xz"),
            "kernel/net/8021q/8021q.ko"
        );
        assert_eq!(
            uncompressed_name("kernel/drivers/net/veth.ko"),
            "kernel/drivers/net/veth.ko"
        );
    }

    #[test]
    fn ldd_lines_give_the_resolved_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x7f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(out),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }
}
