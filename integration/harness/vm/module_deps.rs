//! The kernel modules a scenario needs and their dependencies, in load order, from `modules.dep`.
//!
//! Debian's linux-image package ships no `modules.dep` (its postinst runs depmod), and this machine has
//! no kmod, so busybox's `depmod -b` writes one into the unpacked package and this reads it.

use std::collections::{BTreeMap, BTreeSet};

/// `modules.dep`: module path (relative to /lib/modules/<version>) -> the paths it needs.
#[derive(Debug, Default)]
pub struct ModuleDeps {
    deps: BTreeMap<String, Vec<String>>,
}

impl ModuleDeps {
    pub fn parse(text: &str) -> ModuleDeps {
        let mut deps = BTreeMap::new();
        for line in text.lines() {
            let Some((module, needs)) = line.split_once(':') else {
                continue;
            };
            deps.insert(
                module.trim().to_owned(),
                needs.split_whitespace().map(str::to_owned).collect(),
            );
        }
        ModuleDeps { deps }
    }

    /// The path of module `name` (`8021q`, `veth`; a `-` and `_` in names are the same module).
    pub fn path_of(&self, name: &str) -> Option<&str> {
        let want = name.replace('-', "_");
        self.deps.keys().map(String::as_str).find(|path| {
            let file = path.rsplit('/').next().unwrap_or(path);
            let stem = file.split(".ko").next().unwrap_or(file);
            stem.replace('-', "_") == want
        })
    }

    /// `names` and everything they need, each after its dependencies (the order `insmod` needs).
    /// Panics on a name the kernel does not have as a module, since the scenario would fail later and
    /// less clearly.
    pub fn load_order(&self, names: &[&str]) -> Vec<String> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let path = self.path_of(name).unwrap_or_else(|| {
                panic!("kernel module {name} is not in modules.dep; is it built in or renamed in this kernel?")
            });
            self.visit(path, &mut seen, &mut order);
        }
        order
    }

    fn visit(&self, path: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(path.to_owned()) {
            return;
        }
        for dep in self.deps.get(path).into_iter().flatten() {
            self.visit(dep, seen, order);
        }
        order.push(path.to_owned());
    }

    /// A `modules.dep` holding only `paths`, for busybox's modprobe inside the VM.
    pub fn subset_text(&self, paths: &[String]) -> String {
        paths
            .iter()
            .map(|p| {
                let needs = self.deps.get(p).map(|d| d.join(" ")).unwrap_or_default();
                format!("{p}: {needs}\n")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::ModuleDeps;

    const DEP: &str = "\
kernel/net/8021q/8021q.ko: kernel/net/802/mrp.ko kernel/net/802/garp.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/mrp.ko:
kernel/net/802/garp.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/drivers/net/veth.ko:
";

    #[test]
    fn dependencies_load_before_the_modules_that_need_them() {
        let order = ModuleDeps::parse(DEP).load_order(&["8021q", "bridge", "veth"]);
        let pos = |m: &str| order.iter().position(|p| p.ends_with(m)).unwrap();
        assert_eq!(order.len(), 7, "{order:?}");
        assert!(pos("/llc.ko") < pos("/stp.ko"));
        assert!(pos("/stp.ko") < pos("/garp.ko"));
        assert!(pos("/garp.ko") < pos("/8021q.ko"));
        assert!(pos("/mrp.ko") < pos("/8021q.ko"));
        assert!(pos("/stp.ko") < pos("/bridge.ko"));
    }

    #[test]
    fn dash_and_underscore_name_the_same_module() {
        let deps = ModuleDeps::parse("kernel/drivers/net/nf_foo-bar.ko:\n");
        assert_eq!(
            deps.path_of("nf-foo_bar"),
            Some("kernel/drivers/net/nf_foo-bar.ko")
        );
    }

    #[test]
    #[should_panic(expected = "not in modules.dep")]
    fn a_missing_module_is_an_error() {
        ModuleDeps::parse(DEP).load_order(&["wireguard"]);
    }
}
