//! `tether hook`: an OCI runtime hook (runtime-spec `config.md` "POSIX-platform Hooks"). Installed as a
//! `createRuntime` (or the deprecated `prestart`) and a `poststop` hook, it reads the container's state
//! on stdin, takes its networks, ports, address, MAC, aliases and name from its arguments or the
//! container's `tether.*` annotations, and attaches the container's namespace (`/proc/<pid>/ns/net`) to
//! those networks or detaches it again. Runtimes refuse to start a container whose createRuntime hook
//! fails, so every failure leaves nothing behind and exits non-zero with a message on stderr.

mod args;
mod attach;
mod bundle_config;
mod container_files;
mod detach;
mod endpoint_ops;
mod error;
mod hosts_file;
mod network_mode;
mod resolv_conf;
mod rootfs_file;
mod settings;
mod stage;
mod state;
mod usage;

#[cfg(test)]
mod tests;

use std::io::Read;

use crate::endpoint::Endpoints;

pub use args::HookArgs;
pub use bundle_config::BundleConfig;
pub use endpoint_ops::EndpointOps;
pub use error::HookError;
pub use network_mode::NetworkMode;
pub use settings::HookSettings;
pub use stage::Stage;
pub use state::OciState;
pub use usage::USAGE;

/// Where plugins and `nft` are looked for when the runtime gives the hook no PATH: runc and crun pass a
/// hook exactly the `env` of its config.json entry, often without PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the hook: `args` are the words after `tether hook`, `stdin` carries the OCI state.
pub fn run(args: &[String], stdin: impl Read) -> Result<(), HookError> {
    let args = HookArgs::parse(args)?;
    if args.help {
        return Err(HookError::HelpRequested);
    }
    if std::env::var_os("PATH").is_none_or(|p| p.is_empty()) {
        // Single-threaded here, before anything spawns: setting the environment is sound.
        std::env::set_var("PATH", DEFAULT_PATH);
    }
    let state = OciState::read(stdin)?;
    run_with(&Endpoints::from_env(), args, &state)
}

/// [`run`] with the state already read and the endpoint operations given (tests pass a fake).
pub fn run_with(ops: &impl EndpointOps, args: HookArgs, state: &OciState) -> Result<(), HookError> {
    let stage = Stage::choose(args.stage, &state.status)?;
    let config = match state.bundle.as_os_str().is_empty() {
        true => None,
        false => BundleConfig::load(&state.bundle)?,
    };
    // The state's annotations are the config's, per the spec; a runtime that leaves them out of the
    // state still has them in config.json.
    let mut annotations = config
        .as_ref()
        .map(|c| c.annotations.clone())
        .unwrap_or_default();
    annotations.extend(state.annotations.clone());
    let mut settings = HookSettings::from_annotations(&annotations)?.overridden_by(args.settings);
    // The name tetherd's DNS serves; without one the container is known by its id.
    settings.name.get_or_insert_with(|| state.id.clone());
    tracing::debug!(container = %state.id, %stage, ?settings, "tether hook");
    match stage {
        Stage::Attach => {
            let container = attach::Container {
                id: state.id.clone(),
                pid: state.live_pid(),
            };
            let made = attach::attach_container(ops, &container, &settings)?;
            if let (Some(config), false) = (&config, made.is_empty()) {
                container_files::write_container_files(
                    &state.bundle,
                    config,
                    &made,
                    own_names(config, &settings, &state.id),
                );
            }
            Ok(())
        }
        Stage::Detach => detach::detach_container(ops, &state.id, &settings),
    }
}

/// The names the container's own addresses get in its /etc/hosts: hostname, name, aliases.
fn own_names(config: &BundleConfig, settings: &HookSettings, id: &str) -> Vec<String> {
    config
        .hostname
        .iter()
        .cloned()
        .chain(std::iter::once(
            settings.name.clone().unwrap_or_else(|| id.to_string()),
        ))
        .chain(settings.aliases.iter().flatten().cloned())
        .collect()
}
