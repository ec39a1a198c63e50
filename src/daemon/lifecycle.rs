//! tetherd's life: take the pid lock, open the control socket, start the services, feed them the records
//! (at start, on every notify, and when a look at the records directory, made after inotify reports a
//! change there, finds one nobody notified), and exit once nothing needs serving for the idle grace. At
//! rest it wakes only for the check for gone namespaces: every other timer is armed when something is due.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::config::DaemonConfig;
use super::error::DaemonError;
use super::namespace_watch::NamespaceWatch;
use super::periodic_timer::PeriodicTimer;
use super::pid_lock::PidLock;
use super::records::{RecordSnapshot, RecordsFingerprint};
use super::records_watch::RecordsWatch;
use super::service::{RecordChange, Service, ServiceContext};
use super::socket_park::{self, SharedPark};
use crate::client::protocol::{Reply, Request};
use crate::endpoint::Held;
use crate::netns::NsWorker;
use crate::resolver_sockets::ResolverSockets;
use crate::state::attachment::attachments_root;

/// How long after inotify reports a change the records directory is looked at: by then the plugin that
/// made it has notified, its record is refreshed, and the look finds nothing new (a full reload per ADD
/// otherwise). Also the poll's period where there is no inotify.
const LOOK_DELAY: Duration = Duration::from_millis(500);
/// How long a second tetherd waits for an exiting one to release the pid lock.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// While a check for gone namespaces keeps an otherwise idle tetherd up, how often it asks whether the
/// check has ended.
const BUSY_RECHECK: Duration = Duration::from_millis(100);
/// A control connection that sends nothing for this long is dropped.
const CONTROL_IDLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub config: DaemonConfig,
}

impl DaemonOptions {
    /// Paths from the environment (`paths::*`), config from `config_path`.
    pub fn from_env(config_path: &Path) -> Result<DaemonOptions, DaemonError> {
        Ok(DaemonOptions {
            state_dir: crate::paths::state_dir(),
            run_dir: crate::paths::run_dir(),
            config: DaemonConfig::load(config_path)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Nothing needed serving for the idle grace.
    Idle,
    /// Asked to stop over the control socket.
    Stopped,
    /// Another tetherd serves this run directory.
    AlreadyRunning,
}

/// A request, where to answer it, and the resolver sockets it carried (see `RecordChange`).
struct Pending {
    request: Request,
    reply: oneshot::Sender<Reply>,
    resolver_sockets: Option<ResolverSockets>,
}

/// Runs tetherd in the calling thread until it exits.
pub fn run(opts: DaemonOptions, services: Vec<Box<dyn Service>>) -> Result<Exit, DaemonError> {
    std::fs::create_dir_all(&opts.run_dir).map_err(|source| DaemonError::RunDir {
        path: opts.run_dir.clone(),
        source,
    })?;
    let Some(lock) = wait_for_lock(&opts.run_dir)? else {
        return Ok(Exit::AlreadyRunning);
    };
    let socket_path = crate::client::socket_path(&opts.run_dir);
    let std_listener = bind_control_socket(&socket_path)?;
    let ns_worker = NsWorker::start().map_err(|source| DaemonError::Worker { source })?;
    let watch =
        NamespaceWatch::start(&opts.state_dir).map_err(|source| DaemonError::Worker { source })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Runtime { source })?;
    let ctx = ServiceContext {
        state_dir: opts.state_dir.clone(),
        run_dir: opts.run_dir.clone(),
        config: opts.config.clone(),
        ns_worker,
    };
    let local = tokio::task::LocalSet::new();
    // The daemon runs as a task of its own, not as the future the set runs until: that future is polled
    // again whenever any task of the set wakes, and a resolver query would poll the daemon's whole select.
    let daemon = local.spawn_local(async move {
        let listener =
            UnixListener::from_std(std_listener).map_err(|source| DaemonError::Socket {
                path: socket_path.clone(),
                source,
            })?;
        let (tx, rx) = mpsc::channel::<Pending>(256);
        let sockets = Rc::new(SharedPark::default());
        tokio::task::spawn_local(accept_loop(listener, tx, sockets.clone()));
        let releaser = sockets.clone();
        tokio::task::spawn_local(async move { releaser.release_when_due().await });
        let records_watch = RecordsWatch::start(&attachments_root(&ctx.state_dir))
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no inotify for the records directory; polling it instead")
            })
            .ok();
        let mut daemon = Daemon {
            ctx,
            services,
            records: RecordSnapshot::default(),
            fingerprint: RecordsFingerprint::default(),
            watch,
            records_watch,
        };
        daemon.start().await?;
        let exit = daemon.serve(rx).await;
        // Unlink first: a plugin arriving now finds no socket and starts a fresh tetherd, which waits for
        // our pid lock (see wait_for_lock) instead of talking to a daemon that is going away.
        let _ = std::fs::remove_file(&socket_path);
        daemon.stop().await;
        Ok::<Exit, DaemonError>(exit)
    });
    let exit = local
        .block_on(&runtime, daemon)
        .unwrap_or_else(|joined| std::panic::resume_unwind(joined.into_panic()))?;
    drop(lock);
    Ok(exit)
}

struct Daemon {
    ctx: ServiceContext,
    services: Vec<Box<dyn Service>>,
    records: RecordSnapshot,
    fingerprint: RecordsFingerprint,
    /// Releases attachments whose container's namespace is gone.
    watch: NamespaceWatch,
    /// Says when the records directory may have changed; none: it is polled.
    records_watch: Option<RecordsWatch>,
}

impl Daemon {
    async fn start(&mut self) -> Result<(), DaemonError> {
        for service in &mut self.services {
            service
                .start(&self.ctx)
                .await
                .map_err(|message| DaemonError::Service {
                    service: service.name().to_string(),
                    message,
                })?;
            tracing::info!(service = service.name(), "service started");
        }
        self.reload().await;
        Ok(())
    }

    /// Looks at the records directory and reloads if it changed since the last look; whether inotify
    /// watches it (else the caller polls). The watch is renewed first, so a change after the look is seen.
    async fn look(&mut self) -> bool {
        let watched = self.records_watch.as_ref().is_some_and(RecordsWatch::sync);
        if RecordsFingerprint::read(&self.ctx.state_dir) != self.fingerprint {
            self.reload().await;
        }
        watched
    }

    async fn reload(&mut self) {
        self.fingerprint = RecordsFingerprint::read(&self.ctx.state_dir);
        self.records = RecordSnapshot::load(&self.ctx.state_dir);
        for service in &self.services {
            let extra = service.extra_records(&self.ctx);
            self.records.extend(extra);
        }
        tracing::debug!(records = self.records.len(), "records loaded");
        for service in &mut self.services {
            service.on_records_changed(&self.records, &self.ctx).await;
        }
        trim_heap();
    }

    /// Only the named records changed (every plugin notify names its record).
    async fn refresh(&mut self, targets: &[RecordChange]) {
        // Taken first: a change nobody notified that lands after this is still seen by the next poll.
        self.fingerprint = RecordsFingerprint::read(&self.ctx.state_dir);
        for t in targets {
            let a = &t.attachment;
            self.records
                .refresh_one(&self.ctx.state_dir, &t.network, &a.container_id, &a.ifname);
        }
        for service in &mut self.services {
            service
                .on_records_refreshed(&self.records, targets, &self.ctx)
                .await;
        }
    }

    fn needed(&self) -> bool {
        self.services.iter().any(|s| s.needed(&self.records))
    }

    fn status(&self) -> serde_json::Value {
        let services: serde_json::Map<String, serde_json::Value> = self
            .services
            .iter()
            .map(|s| (s.name().to_string(), s.status()))
            .collect();
        serde_json::json!({
            "pid": std::process::id(),
            "records": self.records.len(),
            "namespaceChecks": self.watch.checks_done(),
            "services": services,
        })
    }

    async fn serve(&mut self, mut requests: mpsc::Receiver<Pending>) -> Exit {
        let grace = self.ctx.config.idle_grace();
        let mut idle_since: Option<Instant> = None;
        // When the records directory is next looked at: once, LOOK_DELAY after inotify's report of a
        // change, or every LOOK_DELAY without inotify. Else never.
        let mut look_at = (!self.look().await).then(|| Instant::now() + LOOK_DELAY);
        // When to ask again whether the check for gone namespaces has finished (it keeps tetherd up).
        let mut busy_until: Option<Instant> = None;
        // Not the runtime's interval, which would wake it three times per tick (see PeriodicTimer).
        let mut gone_tick = PeriodicTimer::start(self.ctx.config.gone_check());
        loop {
            let wake = [look_at, idle_since.map(|since| since + grace), busy_until]
                .into_iter()
                .flatten()
                .min();
            let records_changed = async {
                match &self.records_watch {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = records_changed => {
                    if let Err(e) = changed {
                        tracing::warn!(error = %e, "reading inotify failed; polling the records directory instead");
                        self.records_watch = None;
                    }
                    look_at.get_or_insert_with(|| Instant::now() + LOOK_DELAY);
                }
                _ = sleep_until(wake) => {
                    if look_at.is_some_and(|at| at <= Instant::now()) {
                        look_at = (!self.look().await).then(|| Instant::now() + LOOK_DELAY);
                    }
                }
                pending = requests.recv() => {
                    let Some(pending) = pending else { return Exit::Stopped };
                    // Many plugins notify at once under load: one reload answers every change queued so far.
                    let mut batch = vec![pending];
                    while let Ok(more) = requests.try_recv() {
                        batch.push(more);
                    }
                    if let Some(exit) = self.answer(batch).await {
                        return exit;
                    }
                }
                _ = gone_tick.tick() => self.check_gone(),
            }
            let serving = self.needed() || self.ctx.config.stay;
            (idle_since, busy_until) = match idle_step(
                serving,
                self.watch.busy(),
                idle_since,
                Instant::now(),
                grace,
            ) {
                IdleStep::Serving => (None, None),
                IdleStep::CheckUnderWay { recheck_at } => (None, Some(recheck_at)),
                IdleStep::Idle { since } => (Some(since), None),
                IdleStep::Exit => {
                    tracing::info!("nothing to serve; exiting");
                    return Exit::Idle;
                }
            };
        }
    }

    /// Answers a batch of requests, the record changes among them with one refresh (or reload); an exit
    /// when one asked to stop.
    async fn answer(&mut self, batch: Vec<Pending>) -> Option<Exit> {
        let mut changed = Vec::new();
        let mut targets = Vec::new();
        let mut full_reload = false;
        for Pending {
            request,
            reply,
            resolver_sockets,
        } in batch
        {
            match request {
                Request::Changed {
                    network,
                    attachment,
                } => {
                    tracing::debug!(?network, ?attachment, "records changed");
                    match (network, attachment) {
                        (Some(net), Some(a)) => {
                            let change = RecordChange::new(net, a);
                            change.resolver_sockets.set(resolver_sockets);
                            targets.push(change);
                        }
                        _ => full_reload = true,
                    }
                    changed.push(reply);
                }
                Request::Status => {
                    let _ = reply.send(Reply {
                        status: Some(self.status()),
                        ..Reply::ok()
                    });
                }
                Request::Service { service, command } => {
                    let answer = match self.services.iter_mut().find(|s| s.name() == service) {
                        Some(s) => s.command(&command),
                        None => Err(format!("tetherd runs no service {service:?}")),
                    };
                    let _ = reply.send(match answer {
                        Ok(v) => Reply {
                            status: Some(v),
                            ..Reply::ok()
                        },
                        Err(e) => Reply::error(e),
                    });
                }
                Request::Stop => {
                    let _ = reply.send(Reply::ok());
                    return Some(Exit::Stopped);
                }
                // serve_connection answers it; nothing to do here.
                Request::Park => {
                    let _ = reply.send(Reply::ok());
                }
            }
        }
        if full_reload {
            self.reload().await;
        } else if !targets.is_empty() {
            self.refresh(&targets).await;
        }
        for reply in changed {
            let _ = reply.send(Reply::ok());
        }
        None
    }

    /// Hands the services the namespaces whose release failed, and the check thread what is held now.
    fn check_gone(&mut self) {
        let gone = self.watch.take_unreleased();
        if !gone.is_empty() {
            for service in &mut self.services {
                service.on_namespaces_gone(&gone);
            }
        }
        let held = self.records.iter().filter_map(Held::of_record).collect();
        self.watch.check(held);
    }

    async fn stop(&mut self) {
        for service in &mut self.services {
            service.stop().await;
        }
    }
}

/// Where the idle clock stands after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdleStep {
    /// Something needs serving: the clock is stopped.
    Serving,
    /// Only a check for gone namespaces keeps tetherd up (a release under way ends in DELs that notify
    /// it, to be answered). Nothing wakes tetherd when the check ends, so it asks again then.
    CheckUnderWay { recheck_at: Instant },
    /// Nothing to serve since then.
    Idle { since: Instant },
    /// Nothing to serve for the whole grace.
    Exit,
}

fn idle_step(
    serving: bool,
    checking: bool,
    idle_since: Option<Instant>,
    now: Instant,
    grace: Duration,
) -> IdleStep {
    if serving {
        return IdleStep::Serving;
    }
    if checking {
        return IdleStep::CheckUnderWay {
            recheck_at: now + BUSY_RECHECK,
        };
    }
    let since = idle_since.unwrap_or(now);
    if now.duration_since(since) >= grace {
        IdleStep::Exit
    } else {
        IdleStep::Idle { since }
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The pid lock, waiting a little for a tetherd that is exiting; `None` when a live one answers.
fn wait_for_lock(run_dir: &Path) -> Result<Option<PidLock>, DaemonError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        if let Some(lock) = PidLock::acquire(&super::pid_path(run_dir))? {
            return Ok(Some(lock));
        }
        if crate::client::notify::answers(run_dir) || Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Binds the socket root-only: the umask is narrowed around bind so the file never exists with wider
/// permissions, then the mode is set explicitly in case the umask was ignored.
fn bind_control_socket(path: &Path) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    let err = |source| DaemonError::Socket {
        path: path.to_path_buf(),
        source,
    };
    // We hold the pid lock: a socket file left here belongs to a dead tetherd.
    let _ = std::fs::remove_file(path);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

async fn accept_loop(
    listener: UnixListener,
    requests: mpsc::Sender<Pending>,
    sockets: Rc<SharedPark>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::task::spawn_local(serve_connection(
                    stream,
                    requests.clone(),
                    sockets.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a control connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: UnixStream,
    requests: mpsc::Sender<Pending>,
    sockets: Rc<SharedPark>,
) {
    // The first request may carry a plugin's nf_tables socket (SCM_RIGHTS), which a plain read would drop.
    let mut first = vec![0u8; 4096];
    let (len, mut passed) =
        match tokio::time::timeout(CONTROL_IDLE, receive_with_descriptors(&stream, &mut first))
            .await
        {
            Ok(Ok(got)) => got,
            _ => return,
        };
    first.truncate(len);
    // A plugin's ADD may hand over the resolver's sockets it made in the container; the rest are nf_tables
    // sockets to park.
    let mut resolver_sockets = ResolverSockets::take_from(&mut passed);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(std::io::Cursor::new(first).chain(read)).lines();
    loop {
        let line = match tokio::time::timeout(CONTROL_IDLE, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            _ => break,
        };
        let reply = match serde_json::from_str::<Request>(&line) {
            // Answered here: it only hands over a socket.
            Ok(Request::Park) => Reply {
                parked: sockets.park(std::mem::take(&mut passed)),
                ..Reply::ok()
            },
            Ok(request) => {
                let parks = matches!(request, Request::Changed { .. }) && !passed.is_empty();
                let (tx, rx) = oneshot::channel();
                let pending = Pending {
                    request,
                    reply: tx,
                    resolver_sockets: resolver_sockets.take(),
                };
                if requests.send(pending).await.is_err() {
                    break;
                }
                match rx.await {
                    Ok(reply) if parks => Reply {
                        parked: sockets.park(std::mem::take(&mut passed)),
                        ..reply
                    },
                    Ok(reply) => reply,
                    Err(_) => break,
                }
            }
            Err(e) => Reply::error(format!("bad control request: {e}")),
        };
        let mut out = serde_json::to_vec(&reply).expect("a reply serializes");
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            break;
        }
    }
    // Descriptors nobody asked to keep: released off this thread all the same.
    socket_park::release(passed);
}

/// One read of `stream` into `buf`, with the descriptors it carried.
async fn receive_with_descriptors(
    stream: &UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || {
            receive_once(stream.as_raw_fd(), buf)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn receive_once(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel installed these descriptors in this process for this message alone.
            fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
        }
    }
    Ok((msg.bytes, fds))
}

/// Hands the heap freed by a reload (parsed JSON, the old index) back to the kernel: glibc keeps it
/// otherwise, and a long-lived daemon's RSS would be its worst moment.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory at the top and in the middle of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_clock_runs_only_while_nothing_is_served_or_checked_and_a_check_is_asked_after_again(
    ) {
        let (t0, grace) = (Instant::now(), Duration::from_secs(2));
        assert_eq!(
            idle_step(true, true, Some(t0), t0, grace),
            IdleStep::Serving
        );
        assert_eq!(
            idle_step(false, false, None, t0, grace),
            IdleStep::Idle { since: t0 }
        );
        let later = t0 + grace / 2;
        assert_eq!(
            idle_step(false, false, Some(t0), later, grace),
            IdleStep::Idle { since: t0 }
        );
        assert_eq!(
            idle_step(false, false, Some(t0), t0 + grace, grace),
            IdleStep::Exit
        );
        // A check under way stops the clock and is asked about again soon: nothing else would wake
        // tetherd, and the clock would never start.
        assert_eq!(
            idle_step(false, true, Some(t0), later, grace),
            IdleStep::CheckUnderWay {
                recheck_at: later + BUSY_RECHECK
            }
        );
    }
}
