//! Starting tetherd on demand from a plugin: detached (double fork + `setsid`, so it is nobody's child and
//! has no terminal), stdio to `<run_dir>/tetherd.log`, and the plugin's environment (the `TETHER_*` paths)
//! so a test's tetherd serves that test's directories only.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("tetherd not found next to {}, in PATH or at TETHER_DAEMON_BIN; install it beside the plugins", exe.display())]
    NotFound { exe: PathBuf },
    #[error("opening tetherd log {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {}: {source}", binary.display())]
    Start {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the tetherd binary is: `TETHER_DAEMON_BIN`, else beside the running plugin, else in PATH.
pub fn daemon_binary() -> Result<PathBuf, SpawnError> {
    if let Some(p) = std::env::var_os("TETHER_DAEMON_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let beside = exe.with_file_name("tetherd");
    if beside.is_file() {
        return Ok(beside);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("tetherd"))
        .find(|p| p.is_file())
        .ok_or(SpawnError::NotFound { exe })
}

/// Starts tetherd for `run_dir` and returns at once; the daemon sorts out races itself (pid lock).
pub fn spawn_detached(run_dir: &Path) -> Result<(), SpawnError> {
    let binary = daemon_binary()?;
    std::fs::create_dir_all(run_dir).map_err(|source| SpawnError::Log {
        path: run_dir.to_path_buf(),
        source,
    })?;
    let log_path = super::log_path(run_dir);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| SpawnError::Log {
            path: log_path.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| SpawnError::Log {
        path: log_path,
        source,
    })?;
    let mut cmd = Command::new(&binary);
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    for var in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
    ] {
        cmd.env_remove(var);
    }
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, fork, _exit.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Second fork: the intermediate exits at once, so the daemon is re-parented to init (or the
            // nearest subreaper) and can never become the plugin's zombie or get its signals.
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let mut intermediate = cmd.spawn().map_err(|source| SpawnError::Start {
        binary: binary.clone(),
        source,
    })?;
    let _ = intermediate.wait();
    tracing::debug!(binary = %binary.display(), "tetherd started");
    Ok(())
}
