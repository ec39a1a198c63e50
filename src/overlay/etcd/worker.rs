//! The etcd side of the store, on its own thread with a current-thread tokio runtime (the client is
//! async; the control plane's thread stays synchronous). It keeps a mirror of the keys under the
//! prefix (a full list, then a watch of `hosts/` and `records/` resumed from the last seen revision; a
//! re-list after a compaction). Other hosts' block claims are not watched: they are read when they matter
//! (a claim lost its compare, the reclaim of a dead host, `cluster status`, `forget`) and every repair
//! period, and this host's own from its transactions. The mirror holds the hosts, the blocks and this
//! host's records: other hosts' records go to the plane and nowhere else.
//! this host's liveness key on a lease kept alive, this host's records and block claims equal to what the
//! plane asks, and reclaims blocks of hosts gone longer than the grace whose blocks hold no record.
//! A call that fails alone (a timeout under load) is retried on the same session after a pause; only a
//! lost connection, keep-alive stream or watch, or calls failing for a whole lease TTL, end the session;
//! the next session keeps the lease (and the liveness key on it) while etcd still has it.
//! An outage only delays.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender as StdSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    LeaseGrantOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchStream,
};
use ipnetwork::IpNetwork;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::sync::mpsc::UnboundedReceiver;

use super::config::EtcdConfig;
use super::layout::{BlockValue, HostValue, Key, Layout};
use crate::overlay::agreement::ClaimRef;
use crate::overlay::store::WatchEvents;
use crate::state::overlay::now_ms;

/// One key as the mirror holds it (and as an event carries it to the plane).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// In the mirror, only this host's records and the blocks keep their value (`sync_own` compares
    /// them); another host's record is not in it at all (`Worker::mirror_put_parsed`): the plane's
    /// table has it parsed, and a second copy of every host's records per host was O(hosts²) over a
    /// cluster.
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// A block key's holder, decoded once when the key arrives: the tick's scans compare it instead of
    /// parsing every block's JSON again (with a thousand hosts that was most of each tick).
    pub holder: Option<IpAddr>,
}

impl Stored {
    fn new(layout: &Layout, key: &str, value: &[u8], mod_revision: i64) -> Stored {
        let holder = if layout.is_block(key) {
            serde_json::from_slice::<BlockValue>(value)
                .ok()
                .map(|v| v.host)
        } else {
            None
        };
        Stored {
            value: value.to_vec(),
            mod_revision,
            holder,
        }
    }

    /// What the mirror keeps of this key: the value only where this worker reads it.
    /// `own_records`: [`Layout::records_of`] this host.
    fn mirrored(&self, layout: &Layout, own_records: &str, key: &str) -> Stored {
        let keep_value = layout.is_block(key) || key.starts_with(own_records);
        Stored {
            value: if keep_value {
                self.value.clone()
            } else {
                Vec::new()
            },
            mod_revision: self.mod_revision,
            holder: self.holder,
        }
    }
}

/// What the worker tells the plane.
#[derive(Debug)]
pub enum Event {
    /// The whole prefix at `revision` (at start and after a compaction): replaces what the plane had.
    Snapshot {
        revision: i64,
        keys: BTreeMap<String, Stored>,
    },
    Put {
        key: String,
        /// The key as the worker parsed it (the plane does not parse every delivered key again).
        parsed: Option<Key>,
        stored: Stored,
    },
    Delete {
        key: String,
        revision: i64,
    },
    /// The block claims under `scope` (every block, or one network's) as a read found them at
    /// `revision`: they replace what the plane had under it (a block missing from them is gone).
    Blocks {
        scope: String,
        revision: i64,
        keys: BTreeMap<String, Stored>,
    },
    /// The store confirmed this host's claim of the block.
    Confirmed(ClaimRef),
    /// Another host holds the block this host claims.
    Taken {
        claim: ClaimRef,
        holder: IpAddr,
    },
    /// Whether etcd answered the last call.
    Reachable(bool),
}

/// What the plane asks of the worker.
#[derive(Debug)]
pub enum Command {
    /// This host's records (endpoints and usable claims), by key: the store is made equal to them.
    Publish(BTreeMap<String, Vec<u8>>),
    /// Claims to create (pending, or taken unconfirmed).
    Propose(Vec<ClaimRef>),
    Forget {
        host: IpAddr,
        reply: StdSender<Result<usize, String>>,
    },
    /// Read every block claim now (`cluster status`); answered once the plane's events hold them.
    ReadBlocks { reply: StdSender<()> },
}

/// What the watch delivered, by kind of key: `cluster status --json` shows it (`sync.watchEvents`), so
/// what each host receives is observable.
#[derive(Debug, Default)]
pub struct WatchCounts {
    hosts: AtomicU64,
    blocks: AtomicU64,
    records: AtomicU64,
}

impl WatchCounts {
    pub fn get(&self) -> WatchEvents {
        WatchEvents {
            hosts: self.hosts.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }

    fn count(&self, key: Option<&Key>) {
        let counter = match key {
            Some(Key::Host(_)) => &self.hosts,
            Some(Key::Block { .. }) => &self.blocks,
            Some(_) => &self.records,
            None => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Worker {
    cfg: EtcdConfig,
    layout: Layout,
    me: IpAddr,
    /// [`Layout::records_of`] this host, made once: every delivered key is compared with it.
    own_records: String,
    grace: Duration,
    events: StdSender<Event>,
    wake: UnixDatagram,
    commands: UnboundedReceiver<Command>,
    mirror: BTreeMap<String, Stored>,
    /// The mirror's block keys this host holds, and the hosts whose liveness key it has: kept as keys
    /// come and go, so a tick's work is this host's own keys, not a scan of every host's.
    held: BTreeSet<String>,
    alive: HashSet<IpAddr>,
    /// Events wait in the channel for a wake-up at the next tick (see `apply_watch`).
    wake_due: bool,
    revision: i64,
    wanted: BTreeMap<String, Vec<u8>>,
    proposals: Vec<ClaimRef>,
    /// Hosts with blocks but no liveness key, since when this worker saw them so.
    absent_since: HashMap<IpAddr, Instant>,
    /// Hosts whose liveness key went while this worker watched, since when: their blocks may not be
    /// in the mirror yet (claims are not watched), so the reclaim reads the blocks once they are due.
    departed: HashMap<IpAddr, Instant>,
    /// Hosts gone longer than the grace for which the blocks were read since (one read per host, not one
    /// per reclaim pass while its used blocks stay), with their endpoint addresses as read then.
    read_for: BTreeMap<IpAddr, Vec<IpAddr>>,
    /// Every block claim is read at least this often (the plane's repair period), so the view of other
    /// hosts' blocks is eventually complete without watching them.
    view_every: Duration,
    counts: Arc<WatchCounts>,
    /// Draws for the retry and reconnect pauses, seeded per worker.
    rng: StdRng,
    reachable: Option<bool>,
    started_at_ms: u64,
    /// Which of the configured members this session talks to.
    endpoint: usize,
    /// The lease this host's liveness key was last put on: a new session keeps it alive instead of
    /// taking a new one (and putting the key again, one delivery to every host) while etcd still has it.
    lease_id: Option<i64>,
    /// The lease ID of a grant sent whose answer did not come (its deadline passed): etcd may still
    /// apply it, so the next attempt asks for the same ID (`grant_id`, `lease_exists`).
    granting: Option<i64>,
    regrants: Regrants,
    /// No renewal was answered for a renewal period and a call's deadline, and etcd answered nothing
    /// since: a tick that made no call neither takes etcd for reachable nor counts as its answer.
    silent: bool,
}

/// A stable index below `n` derived from the host's address.
fn host_spread(me: IpAddr, n: usize) -> usize {
    let sum: usize = match me {
        IpAddr::V4(v4) => v4.octets().iter().map(|b| usize::from(*b)).sum(),
        IpAddr::V6(v6) => v6.octets().iter().map(|b| usize::from(*b)).sum(),
    };
    sum % n.max(1)
}

type Fallible<T> = Result<T, etcd_client::Error>;

/// A tick: keep-alives and retries run at least this often.
const TICK: Duration = Duration::from_millis(500);

/// How long one call may take before the client gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Compare-and-swaps per transaction: etcd refuses more than 128 operations in one (`--max-txn-ops`).
const TXN_OPS: usize = 64;

/// The largest list or watch response taken: what etcd sends at most (`math.MaxInt32`). The client's
/// default, 4 MiB, is less than a large cluster's prefix or the catch-up of a watch resumed after a busy
/// outage; either comes as one message, and failed every session: the host never caught up.
const MAX_MESSAGE: usize = i32::MAX as usize;

/// How long a connection may be silent before tetherd pings etcd. etcd closes a connection ("too many
/// pings") whose pings come less than 5 s apart (its `--grpc-keepalive-min-time`) three times without
/// etcd sending anything between; at 2 s every idle connection whose renewals came less often than every
/// 8 s (a lease TTL of 25 s or more) was closed within seconds of going quiet.
const PING_EVERY: Duration = Duration::from_secs(10);

/// How a range read is served. A linearizable read waits until the member has applied everything the
/// cluster committed before it (under load etcd fails those with "waiting for the applied index took too
/// long"); a serializable one answers from the member's own state, possibly behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// A read whose answer is acted on: the list a session starts from, the blocks read after a lost
    /// compare (the next pick must see the winner), before a reclaim or `forget` (their deletes must
    /// see every block of the host).
    Linearizable,
    /// A read only completing the view, where a stale answer is corrected by the next one: the periodic
    /// read of every block, `cluster status` and `inspect`.
    Serializable,
}

/// When a session's periodic reads are due (`Worker::periodic_reads`).
struct PeriodicReads {
    last_reclaim: Instant,
    reclaim_every: Duration,
    next_view: Instant,
}

/// See [`Worker::next_view_in`].
const VIEW_HOSTS_PER_PERIOD: usize = 100;

/// Reclaims of dead hosts' blocks run at most this often (and at least four times per grace): each pass
/// looks at every block holder, which on every tick of a thousand hosts adds up.
const RECLAIM_EVERY: Duration = Duration::from_secs(5);

/// How far a watch response proves the stream delivered: a later session's watch resumes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivered {
    /// Every event up to this revision.
    Through(i64),
    /// Nothing. The created response's header is the store's revision when the watch was made, while
    /// the events from the start revision on (etcd's catch-up of a watch that starts in the past) come
    /// after it: a session failing in between resumed after that header and skipped them for good.
    Nothing,
}

impl Delivered {
    fn of(resp: &etcd_client::WatchResponse) -> Delivered {
        let newest = resp
            .events()
            .iter()
            .filter_map(|e| Some(e.kv()?.mod_revision()))
            .max();
        Delivered::classify(
            resp.created(),
            resp.canceled(),
            newest,
            resp.header().map(|h| h.revision()),
        )
    }

    /// Events: the newest one's revision (a revision's events come in one response, in order). No
    /// events: only a progress notification (etcd sends it to a watcher it has caught up) vouches for
    /// its header; not the created response, not a cancel.
    fn classify(
        created: bool,
        canceled: bool,
        newest_event: Option<i64>,
        header: Option<i64>,
    ) -> Delivered {
        match (newest_event, header) {
            (Some(rev), _) => Delivered::Through(rev),
            (None, Some(rev)) if !created && !canceled => Delivered::Through(rev),
            _ => Delivered::Nothing,
        }
    }
}

/// etcd-client's error text for a keep-alive that etcd answered with TTL 0: the lease is unknown (expired or
/// revoked). The words are the client's own (`Error::LeaseKeepAliveError`, from its `keep_alive`), not
/// etcd's; `integration/cluster_store.rs` pins them against a real etcd, so a client that words it otherwise
/// fails there and not in an outage.
pub const LEASE_NOT_FOUND: &str = "lease not found";
/// etcd-client's error text (`Error::WatchError`) for a keep-alive stream etcd ended before its first answer.
const NO_LEASE_KEEPER: &str = "failed to create lease keeper";

/// What a failed call says, parsed from the client's error at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// etcd (or the call's deadline) refused this one call: "request timed out", "waiting for the
    /// applied index took too long", too many requests, a leader change. The connection, the lease and
    /// the watch are still there.
    Call,
    /// The lease named in a put is unknown to etcd (expired, revoked): it must be replaced.
    LeaseGone,
    /// Anything else (transport, a stream ended, bad arguments): the session is over.
    Session,
}

impl Failure {
    fn of(e: &etcd_client::Error) -> Failure {
        match e {
            etcd_client::Error::GRpcStatus(status) => Failure::of_code(i32::from(status.code())),
            // A keep-alive stream opened again for a lease that expired meanwhile.
            etcd_client::Error::LeaseKeepAliveError(m) if m.contains(LEASE_NOT_FOUND) => {
                Failure::LeaseGone
            }
            _ => Failure::Session,
        }
    }

    /// gRPC status codes (etcd's rpctypes map its timeouts and leader changes to Unavailable, a missing
    /// lease to NotFound; the client's own deadline is Cancelled or DeadlineExceeded).
    fn of_code(code: i32) -> Failure {
        const CANCELLED: i32 = 1;
        const UNKNOWN: i32 = 2;
        const DEADLINE_EXCEEDED: i32 = 4;
        const NOT_FOUND: i32 = 5;
        const RESOURCE_EXHAUSTED: i32 = 8;
        const ABORTED: i32 = 10;
        const UNAVAILABLE: i32 = 14;
        match code {
            NOT_FOUND => Failure::LeaseGone,
            CANCELLED | UNKNOWN | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED | ABORTED
            | UNAVAILABLE => Failure::Call,
            _ => Failure::Session,
        }
    }
}

/// Whether a failed call's error is etcd's own answer (a status it sent), not the client's: its deadline
/// passed, the connection broke or could not be made. tonic keeps the cause of a status it made itself.
fn answered(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => std::error::Error::source(status).is_none(),
        // A renewal answered with TTL 0.
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains(LEASE_NOT_FOUND),
        // A keep-alive stream etcd ended (its trailers came) before answering its first renewal.
        etcd_client::Error::WatchError(m) => m == NO_LEASE_KEEPER,
        _ => false,
    }
}

/// What the session does after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Keep the connection, lease and watch; try the work again after this pause.
    Retry(Duration),
    /// Replace the lease (and put the liveness key on the new one), on the same connection.
    NewLease,
    /// End the session: reconnect (the next member), a new lease, the watch resumed.
    End,
}

/// The first pause after a failed call; it doubles per failure in a row, up to [`retry_cap`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause under a lease shorter than this.
const RETRY_MAX: Duration = Duration::from_secs(4);

/// The longest pause between a session's retries while etcd keeps refusing its calls: a lease TTL.
/// With one member a session is kept through failing calls, and a fleet of 1000 retrying every 4 s
/// at most (250 calls a second, most of them writes) held a lagging etcd at its 5000-entry limit
/// ("too many requests") in session 18's runs; etcd that refuses for that long refuses the renewals
/// too, so the lease lapses after a TTL whatever the host does, and a retry sooner than that only
/// queues one more proposal behind the backlog. Renewals are not paused (`Worker::renew`).
fn retry_cap(lease_ttl: Duration) -> Duration {
    lease_ttl.max(RETRY_MAX)
}

/// One call failing does not end the session (a reconnect costs a new lease and a watch etcd must catch
/// up, and under load a storm of them made a 500-host run 7x slower); calls failing for `end_after` (as
/// long as the lease lives, when another member may answer: `Worker::end_after`) do.
/// A lease etcd says it does not know is replaced on the session however long calls failed before: etcd
/// answered, so the connection works, and ending it only added a reconnect and a watch to catch up (most
/// sessions a 500-host run ended were that: their lease had expired while etcd was saturated).
/// The pause doubles per failure in a row up to `cap` ([`retry_cap`]).
fn verdict(
    failure: Failure,
    in_a_row: u32,
    failing_for: Duration,
    end_after: Duration,
    cap: Duration,
) -> Verdict {
    match failure {
        Failure::Session => Verdict::End,
        Failure::LeaseGone => Verdict::NewLease,
        _ if failing_for >= end_after => Verdict::End,
        Failure::Call => {
            let doubled = RETRY_FIRST.saturating_mul(1 << in_a_row.saturating_sub(1).min(16));
            Verdict::Retry(doubled.min(cap))
        }
    }
}

/// A pause drawn from `[base / 2, base * 3 / 2]` by `draw`. Hundreds of workers failing at once (etcd
/// saturated fails them all together) then come back spread over a whole `base` instead of in lock
/// step, none sooner than half of it, and on average after `base`: a saturated etcd gets no more
/// retries than without the jitter.
fn jittered(base: Duration, draw: u64) -> Duration {
    let spread = base.as_nanos() as u64;
    base / 2 + Duration::from_nanos(draw % (spread + 1))
}

/// The failures in a row of one session's calls, and when the work may be tried again.
#[derive(Debug)]
struct Calls {
    in_a_row: u32,
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// The longest pause ([`retry_cap`] of the session's lease TTL).
    cap: Duration,
    /// Each worker draws its own pauses (seeded from the OS, so differently on every host).
    rng: StdRng,
}

impl Calls {
    fn new(lease_ttl: Duration) -> Calls {
        Calls {
            in_a_row: 0,
            failing_since: None,
            retry_at: None,
            cap: retry_cap(lease_ttl),
            rng: rand::make_rng::<StdRng>(),
        }
    }

    /// For a step the session cannot go on without: waits out the retry pause, or gives the error back
    /// when the session must end.
    async fn pause_or_end(&mut self, e: etcd_client::Error, end_after: Duration) -> Fallible<()> {
        match self.failed(Failure::of(&e), end_after) {
            Verdict::Retry(pause) => {
                tracing::debug!(error = %e, ?pause, "an etcd call of the session's setup failed; retrying");
                tokio::time::sleep(pause).await;
                Ok(())
            }
            // Only a lease call says so: the setup's loop takes a new lease after a tick.
            Verdict::NewLease => {
                tokio::time::sleep(TICK).await;
                Ok(())
            }
            Verdict::End => Err(e),
        }
    }

    fn due(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn succeeded(&mut self) {
        self.in_a_row = 0;
        self.failing_since = None;
        self.retry_at = None;
    }

    /// Counts a failure; the verdict says what the session does about it (`end_after`:
    /// `Worker::end_after`).
    fn failed(&mut self, failure: Failure, end_after: Duration) -> Verdict {
        let now = Instant::now();
        self.in_a_row += 1;
        let since = *self.failing_since.get_or_insert(now);
        match verdict(failure, self.in_a_row, now - since, end_after, self.cap) {
            Verdict::Retry(base) => {
                let pause = jittered(base, self.rng.next_u64());
                self.retry_at = Some(now + pause);
                Verdict::Retry(pause)
            }
            v => v,
        }
    }
}

/// This host's lease and its keep-alive stream.
struct Lease {
    id: i64,
    /// While the keep-alive stream runs: etcd ends it when a renewal fails, and a lease that lapsed has
    /// none until the next is granted.
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// The next answer on the lease's keep-alive stream; never, without one.
async fn next_renewal(
    stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Fallible<Option<etcd_client::LeaseKeepAliveResponse>> {
    match stream {
        Some((_, alive)) => alive.message().await,
        None => std::future::pending().await,
    }
}

/// What the liveness key needs, from whether the lease is known alive and whether the key is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Fine,
    /// The key went (deleted by someone) while the lease lives: put it back on the same lease.
    PutKey,
    /// The lease expired or was revoked: a new one, and the key on it.
    NewLease,
}

impl Liveness {
    fn of(lease_alive: bool, key_present: bool) -> Liveness {
        match (lease_alive, key_present) {
            (false, _) => Liveness::NewLease,
            (true, false) => Liveness::PutKey,
            (true, true) => Liveness::Fine,
        }
    }
}

/// The lease ID a grant asks for: the one of a grant whose answer never came (etcd may have applied
/// it), else a new draw. etcd takes any positive ID not in use; a draw colliding with a live lease is
/// refused as "already exists" like a late grant of this host's own, which two draws of 63 bits make
/// practically impossible.
fn grant_id(unanswered: Option<i64>, draw: u64) -> i64 {
    unanswered.unwrap_or_else(|| 1 + (draw >> 1) as i64 % (i64::MAX - 1))
}

/// Whether a grant failed because etcd has a lease of that ID: this host's earlier grant, applied after
/// its answer's deadline (etcd: FailedPrecondition, "etcdserver: lease already exists").
fn lease_exists(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            lease_exists_status(i32::from(status.code()), status.message())
        }
        _ => false,
    }
}

fn lease_exists_status(code: i32, message: &str) -> bool {
    const FAILED_PRECONDITION: i32 = 9;
    code == FAILED_PRECONDITION && message.contains("lease already exists")
}

/// The lease a host resumes when its lease `expired`: the one it granted last, unless that is the
/// expired one (then a new grant). A grant whose liveness put failed (etcd busy) is resumed by the next
/// attempt instead of left beside a second grant to expire.
fn lease_to_resume(kept: Option<i64>, expired: i64) -> Option<i64> {
    kept.filter(|id| *id != expired)
}

/// The longest pause before a new lease, in lease TTLs.
const REGRANT_MAX_TTLS: u32 = 4;

/// The pause before a new lease after one lapsed while etcd answered nothing, jittered: a whole fleet
/// finds its leases gone when etcd comes back, and grants spread over a second instead of arriving at once.
const REGRANT_AFTER_OUTAGE: Duration = Duration::from_secs(1);

/// What came of the current lease's renewals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Renewal {
    /// The last one was answered.
    #[default]
    Answered,
    /// etcd answered the last one with a refusal, or ended the keep-alive stream.
    Refused,
    /// None answered since the grant, or the last one got no answer at all (the call's deadline, a
    /// broken connection).
    Unanswered,
}

/// Why a lease lapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lapse {
    /// Its renewals were answered: the host was cut off too briefly to see it, or etcd lost it.
    Lost,
    /// etcd answered but did not renew it: it lags.
    Refused,
    /// etcd answered nothing while it expired: stopped, unreachable, the connection broken.
    Unreachable,
}

impl Lapse {
    /// `heard`: etcd answered some other call while the renewals went unanswered, before the lease
    /// expired (a lagging etcd still serves the watch and some calls; a stopped one serves nothing).
    fn of(renewal: Renewal, heard: bool) -> Lapse {
        match (renewal, heard) {
            (Renewal::Answered, _) => Lapse::Lost,
            (Renewal::Refused, _) | (Renewal::Unanswered, true) => Lapse::Refused,
            (Renewal::Unanswered, false) => Lapse::Unreachable,
        }
    }
}

/// The pause before granting a new lease after `refused_in_a_row` leases in a row lapsed while etcd
/// refused their renewals: none after a lease lost otherwise (the host was cut off, etcd lost it), then
/// one TTL, two, four at most, each jittered (`jittered`).
fn regrant_pause(refused_in_a_row: u32, ttl: Duration, draw: u64) -> Duration {
    match refused_in_a_row {
        0 => Duration::ZERO,
        n => {
            let ttls = (1u32 << (n - 1).min(REGRANT_MAX_TTLS.ilog2())).min(REGRANT_MAX_TTLS);
            jittered(ttl.saturating_mul(ttls), draw)
        }
    }
}

/// When this host may grant its next lease. A lease that lapsed while etcd refused its renewals (its
/// applied index over a second behind its commits), or left them unanswered while it answered other calls,
/// lapsed because etcd lags, and a new lease granted
/// at once lapses the same way: one grant, one liveness put and one revoke more for a lagging etcd to
/// apply, the put and the delete each delivered to every host (at 1000 hosts about 80 ms of etcd CPU per
/// lapse). A thousand hosts doing that every TTL kept etcd lagging after the load that made it lag was
/// gone. So each such lapse in a row lengthens the pause before the next grant ([`regrant_pause`]);
/// a lease whose renewals were answered for two TTLs ends the series. A lease that lapsed while etcd
/// answered nothing at all (an outage longer than the TTL) says nothing about etcd's lag: the next grant
/// goes as soon as etcd answers again ([`REGRANT_AFTER_OUTAGE`]), and the series is left as it was.
#[derive(Debug, Default)]
struct Regrants {
    renewal: Renewal,
    /// When the current lease was last known alive (granted, or a renewal answered): etcd expires it a
    /// TTL later.
    alive_at: Option<Instant>,
    /// etcd answered another call while the renewals were not answered, before the lease expired.
    heard: bool,
    refused_in_a_row: u32,
    /// Since when every renewal of the current lease was answered.
    healthy_since: Option<Instant>,
    /// The last lease counted as lapsed: a lapse is seen again by retries and by more than one path.
    lapsed: Option<i64>,
    not_before: Option<Instant>,
}

impl Regrants {
    fn granted(&mut self) {
        self.renewal = Renewal::Unanswered;
        self.alive_at = Some(Instant::now());
        self.heard = false;
        self.healthy_since = None;
    }

    fn renewed(&mut self, ttl: Duration) {
        self.renewal = Renewal::Answered;
        self.alive_at = Some(Instant::now());
        self.heard = false;
        self.not_before = None;
        let since = *self.healthy_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= ttl.saturating_mul(2) {
            self.refused_in_a_row = 0;
        }
    }

    /// etcd refused a renewal (it answered, but not within its wait for the applied index).
    fn refusal(&mut self) {
        self.renewal = Renewal::Refused;
        self.healthy_since = None;
    }

    /// A renewal got no answer at all (its deadline passed, the connection broke).
    fn unanswered(&mut self) {
        if self.renewal == Renewal::Answered {
            self.renewal = Renewal::Unanswered;
            self.heard = false;
        }
        self.healthy_since = None;
    }

    /// Whether the lease was last known alive longer than `limit` ago.
    fn overdue(&self, limit: Duration) -> bool {
        self.alive_at.is_some_and(|at| at.elapsed() > limit)
    }

    /// etcd answered a call (or sent a watch response): while the renewals are not answered and the
    /// lease has not expired yet, that says etcd lags rather than is gone.
    fn heard_from_etcd(&mut self, ttl: Duration) {
        if self.renewal != Renewal::Answered && self.alive_at.is_some_and(|at| at.elapsed() < ttl) {
            self.heard = true;
        }
    }

    /// Lease `id` is gone (expired, revoked): sets when the next grant may go.
    fn lapsed(&mut self, id: i64, ttl: Duration, draw: u64) {
        if self.lapsed == Some(id) {
            return;
        }
        self.lapsed = Some(id);
        let pause = match Lapse::of(self.renewal, self.heard) {
            Lapse::Lost => {
                self.refused_in_a_row = 0;
                Duration::ZERO
            }
            Lapse::Refused => {
                self.refused_in_a_row += 1;
                regrant_pause(self.refused_in_a_row, ttl, draw)
            }
            Lapse::Unreachable => jittered(REGRANT_AFTER_OUTAGE, draw),
        };
        self.not_before = Some(Instant::now() + pause);
    }

    /// How long the next grant must still wait.
    fn wait(&self) -> Duration {
        self.not_before.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: EtcdConfig,
        me: IpAddr,
        grace: Duration,
        view_every: Duration,
        counts: Arc<WatchCounts>,
        events: StdSender<Event>,
        wake: UnixDatagram,
        commands: UnboundedReceiver<Command>,
    ) -> Worker {
        let cfg_len = cfg.endpoints.len();
        let layout = Layout::new(&cfg.prefix);
        Worker {
            own_records: layout.records_of(me),
            layout,
            cfg,
            me,
            grace,
            events,
            wake,
            commands,
            mirror: BTreeMap::new(),
            held: BTreeSet::new(),
            alive: HashSet::new(),
            wake_due: false,
            revision: 0,
            wanted: BTreeMap::new(),
            proposals: Vec::new(),
            absent_since: HashMap::new(),
            departed: HashMap::new(),
            read_for: BTreeMap::new(),
            view_every,
            counts,
            rng: rand::make_rng::<StdRng>(),
            reachable: None,
            started_at_ms: now_ms(),
            // Hosts spread over the members from the start, so losing one moves only some of them.
            endpoint: host_spread(me, cfg_len),
            lease_id: None,
            granting: None,
            regrants: Regrants::default(),
            silent: false,
        }
    }

    /// How long calls may keep failing before the session ends ([`verdict`]): a lease TTL, after
    /// which another member may answer. With one member there is none: a new session would ask the
    /// same etcd again, and under load each cost it a reconnect and a watch to catch up (1100-1350
    /// sessions ended a minute at 1000 hosts while etcd lagged), so only a lost connection ends it.
    fn end_after(&self) -> Duration {
        match self.cfg.endpoints.len() {
            1 => Duration::MAX,
            _ => self.cfg.lease_ttl,
        }
    }

    fn send(&mut self, event: Event) {
        self.queue(event);
        self.wake_plane();
    }

    /// Queues an event without waking the plane: a watch response's events go with one wake-up.
    fn queue(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn wake_plane(&mut self) {
        self.wake_due = false;
        let _ = self.wake.send(&[1]);
    }

    /// Puts `key` in the mirror, keeping `held` and `alive` with it.
    fn mirror_put(&mut self, key: String, stored: Stored) {
        let parsed = self.layout.parse(&key);
        self.mirror_put_parsed(key, parsed.as_ref(), stored);
    }

    /// [`Worker::mirror_put`] of a key already parsed. Another host's record is not kept (the plane's
    /// table has it; the reclaim reads a gone host's records from etcd): at 1000 hosts those were
    /// 10 000 keys and revisions in every host's mirror, about 0.2 kB each.
    fn mirror_put_parsed(&mut self, key: String, parsed: Option<&Key>, stored: Stored) {
        if self.layout.is_record(&key) && !key.starts_with(&self.own_records) {
            return;
        }
        match parsed {
            Some(Key::Host(h)) => {
                self.alive.insert(*h);
                self.departed.remove(h);
            }
            Some(Key::Block { .. }) if self.holds(&stored) => {
                self.held.insert(key.clone());
            }
            Some(Key::Block { .. }) => {
                self.held.remove(&key);
            }
            _ => {}
        }
        self.mirror.insert(key, stored);
    }

    fn mirror_remove(&mut self, key: &str) {
        if self.mirror.remove(key).is_none() {
            return;
        }
        self.held.remove(key);
        if let Some(Key::Host(h)) = self.layout.parse(key) {
            self.alive.remove(&h);
            if h != self.me {
                self.departed.insert(h, Instant::now());
            }
        }
    }

    fn set_reachable(&mut self, up: bool) {
        if self.reachable != Some(up) {
            if up {
                tracing::info!(endpoints = ?self.cfg.endpoints, "etcd reachable");
            } else {
                tracing::warn!(endpoints = ?self.cfg.endpoints, "etcd unreachable; ADD and DEL go on inside owned blocks, new blocks wait");
            }
            self.reachable = Some(up);
            self.send(Event::Reachable(up));
        }
    }

    /// Runs until the plane drops its command sender.
    pub fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the etcd store's runtime");
                return;
            }
        };
        // The host in every line: a bench runs many workers in one process.
        let _span = tracing::info_span!("etcd", host = %self.me).entered();
        runtime.block_on(async move {
            loop {
                match self.session().await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, seen = self.revision, "etcd session ended");
                        self.set_reachable(false);
                    }
                }
                // The next member at once; a second round of all of them after a pause. Meanwhile the
                // plane's commands are still taken (an outage must not block it).
                self.endpoint = (self.endpoint + 1) % self.cfg.endpoints.len();
                let base = if self.endpoint == host_spread(self.me, self.cfg.endpoints.len()) {
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(50)
                };
                // Jittered: a member going away ends every host's session at once.
                let pause = jittered(base, self.rng.next_u64());
                let until = tokio::time::Instant::now() + pause;
                loop {
                    tokio::select! {
                        cmd = self.commands.recv() => match cmd {
                            Some(cmd) => self.take_offline(cmd),
                            None => return,
                        },
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
            }
        });
    }

    /// A command while etcd is out of reach: kept for the next session.
    fn take_offline(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(w) => self.wanted = w,
            Command::Propose(p) => self.proposals = p,
            Command::Forget { reply, .. } => {
                let _ = reply.send(Err("etcd is unreachable; try again when it answers".into()));
            }
            // The plane shows what it has.
            Command::ReadBlocks { reply } => {
                let _ = reply.send(());
            }
        }
    }

    async fn connect(&self) -> Fallible<Client> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(CALL_TIMEOUT)
            // A member that leaves pings unanswered for half a lease (2 s at least) is gone; one busy
            // for 2 s is not (ending the session then cost a new lease and a catch-up).
            .with_keep_alive(
                PING_EVERY,
                (self.cfg.lease_ttl / 2).max(Duration::from_secs(2)),
            );
        if let Some(tls) = &self.cfg.tls {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| {
                    etcd_client::Error::InvalidArgs(format!("reading {}: {e}", p.display()))
                })
            };
            let mut t =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
            if let Some((cert, key)) = &tls.client {
                t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(t);
        }
        // One member per session, the next on failure: a dead member is left at once instead of
        // being retried by the channel while calls time out.
        let endpoint = &self.cfg.endpoints[self.endpoint];
        Client::connect([endpoint], Some(options)).await
    }

    /// One connection: list, liveness, watch, and the loop until the connection, the lease's keep-alive
    /// stream or the watch is gone, or calls kept failing for a lease's lifetime (`Err`), or the plane
    /// is gone (`Ok`). A call that fails alone is tried again on this connection after a pause.
    async fn session(&mut self) -> Fallible<()> {
        let mut client = self.connect().await?;
        let ttl = self.cfg.lease_ttl;
        let mut calls = Calls::new(ttl);
        let (mut lease, mut lease_alive, mut watch) = self.open(&mut client, &mut calls).await?;
        let first = self.sync_own(&mut client).await;
        self.settle(&mut calls, first, &mut lease_alive)?;
        let mut tick = tokio::time::interval(TICK);
        let mut last_keep = Instant::now();
        let mut reads = PeriodicReads {
            last_reclaim: Instant::now(),
            reclaim_every: (self.grace / 4).clamp(TICK, RECLAIM_EVERY),
            // The list read every block; the next read comes a jittered period later, so a fleet
            // started together does not read together.
            next_view: Instant::now() + self.next_view_in(),
        };
        loop {
            tokio::select! {
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else {
                        // The plane stops: give the liveness key up at once.
                        if lease_alive {
                            let _ = client.lease_revoke(lease.id).await;
                        }
                        return Ok(());
                    };
                    if calls.due() {
                        let done = self.handle(&mut client, cmd).await;
                        self.settle(&mut calls, done, &mut lease_alive)?;
                    } else {
                        // Calls are failing: the next due tick syncs.
                        self.take_offline(cmd);
                    }
                }
                msg = watch.message() => {
                    let Some(resp) = msg? else {
                        return Err(etcd_client::Error::WatchError("watch stream ended".into()));
                    };
                    if resp.compact_revision() > 0 || resp.canceled() {
                        tracing::warn!(compacted = resp.compact_revision(), seen = self.revision,
                            "etcd watch cancelled (history compacted); listing everything again");
                        while let Err(e) = self.relist(&mut client).await {
                            calls.pause_or_end(e, self.end_after()).await?;
                        }
                        watch = self.watch_retrying(&mut client, &mut calls).await?;
                        let done = self.sync_own(&mut client).await;
                        self.settle(&mut calls, done, &mut lease_alive)?;
                        continue;
                    }
                    self.answer_seen();
                    self.apply_watch(&resp);
                    if let Delivered::Through(rev) = Delivered::of(&resp) {
                        self.revision = self.revision.max(rev);
                    }
                }
                ka = next_renewal(&mut lease.stream), if lease.stream.is_some() => {
                    match ka {
                        Ok(Some(r)) if r.ttl() > 0 => self.renewal_answered(),
                        Ok(Some(_)) => {
                            self.answer_seen();
                            tracing::warn!(lease = lease.id, "this host's etcd lease expired; taking a new one");
                            lease_alive = false;
                            let done = self.keep_liveness(&mut client, &mut lease, &mut lease_alive).await;
                            self.settle(&mut calls, done, &mut lease_alive)?;
                        }
                        // etcd ends the keep-alive stream when one renewal fails ("waiting for the
                        // applied index took too long"): the lease lives on, the stream is opened
                        // again for it on this connection (`keep_liveness`).
                        Ok(None) => self.keep_alive_ended(&mut lease),
                        Err(e) => {
                            lease.stream = None;
                            self.renewal_failed(&e);
                            self.settle(&mut calls, Err(e), &mut lease_alive)?;
                        }
                    }
                }
                _ = tick.tick() => {
                    if self.wake_due {
                        self.wake_plane();
                    }
                    self.renew(&mut client, &mut lease, &mut lease_alive, &mut calls, &mut last_keep).await?;
                    if !calls.due() {
                        continue;
                    }
                    let mut done = self.keep_liveness(&mut client, &mut lease, &mut lease_alive).await;
                    if done.is_ok() {
                        done = self.sync_own(&mut client).await;
                    }
                    if done.is_ok() {
                        done = self.periodic_reads(&mut client, &mut reads).await;
                    }
                    self.settle(&mut calls, done, &mut lease_alive)?;
                }
            }
        }
    }

    /// The lease's renewal, every third of its TTL whatever the calls' pause: on its keep-alive stream,
    /// or, while calls wait out a pause (which grows to a TTL, [`retry_cap`]), by opening again the
    /// stream etcd ended; one renewal answered ends the pause (etcd answers renewals only with its
    /// applied index caught up). With calls due, the tick's `keep_liveness` opens it at once instead.
    async fn renew(
        &mut self,
        client: &mut Client,
        lease: &mut Lease,
        lease_alive: &mut bool,
        calls: &mut Calls,
        last_keep: &mut Instant,
    ) -> Fallible<()> {
        if last_keep.elapsed() < self.cfg.lease_ttl / 3 {
            return Ok(());
        }
        self.note_silence(*lease_alive && lease.stream.is_some());
        if let Some((keeper, _)) = &mut lease.stream {
            if let Err(e) = keeper.keep_alive().await {
                tracing::debug!(error = %e, "the etcd keep-alive stream is closed; opening it again");
                lease.stream = None;
            }
            *last_keep = Instant::now();
        } else if *lease_alive && !calls.due() {
            *last_keep = Instant::now();
            let done = self.reopen_keep_alive(client, lease).await;
            self.settle(calls, done, lease_alive)?;
        }
        Ok(())
    }

    /// A session's setup: the first list, the lease with the liveness key, the watch. Its calls too are
    /// retried on this connection: under load a list or a lease grant times out like any call, and a
    /// new session would only ask etcd for the same again. A new lease that must wait its re-grant pause
    /// is left to the session's ticks (whether the lease is alive is returned): the watch and this
    /// host's records do not wait for it.
    async fn open(
        &mut self,
        client: &mut Client,
        calls: &mut Calls,
    ) -> Fallible<(Lease, bool, WatchStream)> {
        let end_after = self.end_after();
        // The first session lists everything; a later one resumes the watch after the last revision it
        // saw (a compaction since then cancels it, and the session's loop lists again).
        if self.revision == 0 {
            while let Err(e) = self.relist(client).await {
                self.failed_call(&e);
                calls.pause_or_end(e, end_after).await?;
            }
        }
        let lease = loop {
            match self.resume_lease(client).await {
                Ok(lease) => break lease,
                Err(e) => {
                    self.failed_call(&e);
                    calls.pause_or_end(e, end_after).await?
                }
            }
        };
        let (lease, alive) = match lease {
            Some(lease) => (lease, true),
            None => (self.lapsed_lease(), false),
        };
        // etcd answered the lease's call.
        self.silent = false;
        self.set_reachable(true);
        let watch = self.watch_retrying(client, calls).await?;
        Ok((lease, alive, watch))
    }

    /// The lease that lapsed last, kept without a stream while the next grant waits: the tick's
    /// `keep_liveness` grants it when due.
    fn lapsed_lease(&self) -> Lease {
        Lease {
            id: self.regrants.lapsed.unwrap_or(0),
            stream: None,
        }
    }

    /// A failed call's error as evidence for the next grant's pause: etcd's own answer says it serves.
    fn failed_call(&mut self, e: &etcd_client::Error) {
        if answered(e) {
            self.answer_seen();
        }
    }

    /// At a renewal of a live lease (`renewing`): no renewal answered for a renewal period and a call's
    /// deadline means etcd is not answering, which the plane must know before the pings end the
    /// connection (a lease can lapse first), so that it holds the liveness deletes etcd sends when it
    /// answers again (`EtcdStore::host_gone`).
    fn note_silence(&mut self, renewing: bool) {
        if renewing && self.regrants.overdue(self.cfg.lease_ttl / 3 + CALL_TIMEOUT) {
            self.silent = true;
            self.set_reachable(false);
        }
    }

    /// etcd answered something (a watch response, a renewal, an error status of its own): the silence
    /// is over, and while renewals go unanswered that is evidence of lag, not of an outage.
    fn answer_seen(&mut self) {
        self.silent = false;
        self.regrants.heard_from_etcd(self.cfg.lease_ttl);
    }

    fn renewal_answered(&mut self) {
        self.regrants.renewed(self.cfg.lease_ttl);
        self.answer_seen();
        self.set_reachable(true);
    }

    /// A renewal failed: refused by etcd, or not answered at all.
    fn renewal_failed(&mut self, e: &etcd_client::Error) {
        match (Failure::of(e), answered(e)) {
            (Failure::LeaseGone, _) => {}
            (_, true) => self.regrants.refusal(),
            (_, false) => self.regrants.unanswered(),
        }
    }

    /// What a call's result means for the session: `Err` ends it; a failed call alone is retried later
    /// on this connection, a lease etcd no longer knows is replaced.
    fn settle(
        &mut self,
        calls: &mut Calls,
        done: Fallible<()>,
        lease_alive: &mut bool,
    ) -> Fallible<()> {
        let e = match done {
            Ok(()) => {
                calls.succeeded();
                // A tick may have made no call at all: only an answer ends a silence.
                if !self.silent {
                    self.regrants.heard_from_etcd(self.cfg.lease_ttl);
                    self.set_reachable(true);
                }
                return Ok(());
            }
            Err(e) => e,
        };
        self.failed_call(&e);
        match calls.failed(Failure::of(&e), self.end_after()) {
            Verdict::Retry(pause) => {
                if calls.in_a_row == 1 {
                    tracing::info!(error = %e, ?pause, "an etcd call failed; the session stays, retrying");
                } else {
                    tracing::debug!(error = %e, in_a_row = calls.in_a_row, ?pause, "an etcd call failed again; retrying");
                    self.set_reachable(false);
                }
                Ok(())
            }
            Verdict::NewLease => {
                tracing::warn!(error = %e, "etcd no longer knows this host's lease; taking a new one");
                *lease_alive = false;
                Ok(())
            }
            Verdict::End => Err(e),
        }
    }

    /// Keeps the liveness key on a live lease: put back on the same lease when only the key went, a new
    /// lease when the old one expired; a keep-alive stream etcd ended is opened again for the same lease.
    async fn keep_liveness(
        &mut self,
        client: &mut Client,
        lease: &mut Lease,
        lease_alive: &mut bool,
    ) -> Fallible<()> {
        match Liveness::of(*lease_alive, self.alive.contains(&self.me)) {
            Liveness::Fine => {}
            Liveness::PutKey => {
                tracing::info!(
                    lease = lease.id,
                    "this host's liveness key is gone; putting it back on its lease"
                );
                self.put_liveness(client, lease.id).await?;
            }
            Liveness::NewLease => {
                let draw = self.rng.next_u64();
                self.regrants.lapsed(lease.id, self.cfg.lease_ttl, draw);
                if !self.regrants.wait().is_zero() {
                    // No renewals of a lease etcd no longer has; the tick asks again, and the
                    // session goes on meanwhile (watch, records).
                    lease.stream = None;
                    return Ok(());
                }
                self.lease_id = lease_to_resume(self.lease_id, lease.id);
                match self.resume_lease(client).await? {
                    Some(new) => {
                        *lease = new;
                        *lease_alive = true;
                    }
                    // The lease it resumed had lapsed too: its pause is the one waited now.
                    None => *lease = self.lapsed_lease(),
                }
                return Ok(());
            }
        }
        self.reopen_keep_alive(client, lease).await
    }

    /// Opens the keep-alive stream again for the same lease if etcd ended it (its first renewal is
    /// sent and answered inside).
    async fn reopen_keep_alive(&mut self, client: &mut Client, lease: &mut Lease) -> Fallible<()> {
        if lease.stream.is_none() {
            lease.stream = Some(self.keep_alive(client, lease.id).await?);
            tracing::debug!(
                lease = lease.id,
                "etcd keep-alive stream opened again on the same lease"
            );
        }
        Ok(())
    }

    async fn handle(&mut self, client: &mut Client, cmd: Command) -> Fallible<()> {
        match cmd {
            Command::Publish(w) => {
                self.wanted = w;
                self.sync_own(client).await
            }
            Command::Propose(p) => {
                self.proposals = p;
                self.sync_own(client).await
            }
            Command::Forget { host, reply } => {
                let result = self.forget(client, host).await;
                let (answer, failed) = match result {
                    Ok(r) => (r, None),
                    Err(e) => (Err(format!("etcd: {e}")), Some(e)),
                };
                let _ = reply.send(answer);
                match failed {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            }
            Command::ReadBlocks { reply } => {
                let done = self
                    .read_blocks(client, self.layout.blocks_root(), Read::Serializable)
                    .await;
                // Answered either way: the plane shows what it has.
                let _ = reply.send(());
                done
            }
        }
    }

    /// The reclaim pass and the read of every block, each when it is due.
    async fn periodic_reads(
        &mut self,
        client: &mut Client,
        due: &mut PeriodicReads,
    ) -> Fallible<()> {
        if due.last_reclaim.elapsed() >= due.reclaim_every {
            due.last_reclaim = Instant::now();
            self.reclaim(client).await?;
        }
        if Instant::now() >= due.next_view {
            due.next_view = Instant::now() + self.next_view_in();
            self.read_blocks(client, self.layout.blocks_root(), Read::Serializable)
                .await?;
        }
        Ok(())
    }

    /// When the periodic read of every block comes next: about every `view_every`, and for every hundred
    /// hosts up one `view_every` more, so the fleet's reads cost etcd the same however large it is (each
    /// read returns every host's blocks: N reads of N keys per period was what kept a saturated etcd
    /// saturated at 500 hosts). Claims that matter are read when they do (a lost compare, a reclaim,
    /// status); this read only completes the view eventually.
    fn next_view_in(&mut self) -> Duration {
        let hundreds = (self.alive.len() / VIEW_HOSTS_PER_PERIOD).max(1) as u32;
        jittered(
            self.view_every.saturating_mul(hundreds),
            self.rng.next_u64(),
        )
    }

    /// Every key under `prefix`, with etcd's revision at the read.
    async fn list(
        &self,
        client: &mut Client,
        prefix: String,
        read: Read,
    ) -> Fallible<(i64, BTreeMap<String, Stored>)> {
        let options = match read {
            Read::Linearizable => GetOptions::new().with_prefix(),
            Read::Serializable => GetOptions::new().with_prefix().with_serializable(),
        };
        let resp = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(prefix, Some(options))
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let keys = resp
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let stored = Stored::new(&self.layout, &key, kv.value(), kv.mod_revision());
                (key, stored)
            })
            .collect();
        Ok((revision, keys))
    }

    /// Reads the block claims under `scope` (every block, or one network's): the mirror's blocks under it
    /// become what etcd has, and so do the plane's (`Event::Blocks`).
    async fn read_blocks(
        &mut self,
        client: &mut Client,
        scope: String,
        read: Read,
    ) -> Fallible<()> {
        let (revision, keys) = self.list(client, scope.clone(), read).await?;
        let gone: Vec<String> = self
            .under(&scope)
            .filter(|(k, _)| !keys.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.mirror_remove(&key);
        }
        for (key, stored) in &keys {
            self.mirror_put(key.clone(), stored.clone());
        }
        self.send(Event::Blocks {
            scope,
            revision,
            keys,
        });
        Ok(())
    }

    async fn relist(&mut self, client: &mut Client) -> Fallible<()> {
        let (revision, keys) = self
            .list(client, self.layout.root(), Read::Linearizable)
            .await?;
        self.mirror.clear();
        self.held.clear();
        self.alive.clear();
        for (k, s) in &keys {
            let kept = s.mirrored(&self.layout, &self.own_records, k);
            self.mirror_put(k.clone(), kept);
        }
        self.revision = revision;
        self.send(Event::Snapshot { revision, keys });
        Ok(())
    }

    async fn watch(&mut self, client: &mut Client) -> Fallible<WatchStream> {
        tracing::debug!(from = self.revision + 1, "etcd watch starting");
        client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(
                self.layout.watched().0,
                Some(
                    WatchOptions::new()
                        .with_range(self.layout.watched().1)
                        .with_start_revision(self.revision + 1)
                        .with_progress_notify(),
                ),
            )
            .await
    }

    /// A watch, its creation retried on this connection like any call.
    async fn watch_retrying(
        &mut self,
        client: &mut Client,
        calls: &mut Calls,
    ) -> Fallible<WatchStream> {
        loop {
            match self.watch(client).await {
                Ok(w) => return Ok(w),
                Err(e) => calls.pause_or_end(e, self.end_after()).await?,
            }
        }
    }

    /// Takes in a watch response's events. The plane is woken at once unless all of them are other
    /// hosts' block keys: those only feed its peer-claims pass, which runs at most once a second, so
    /// they wait for the next tick (a fleet claiming blocks does not wake every host per claim).
    fn apply_watch(&mut self, resp: &etcd_client::WatchResponse) {
        let mut urgent = false;
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let put = event.event_type() == EventType::Put;
            urgent |= self.apply_event(put, key, kv.value(), kv.mod_revision());
        }
        if urgent {
            self.wake_plane();
            self.wake_due = false;
        } else if !resp.events().is_empty() {
            self.wake_due = true;
        }
    }

    /// One watched put or delete into the mirror and the plane's queue; whether the plane must wake
    /// for it now (anything but another host's block).
    fn apply_event(&mut self, put: bool, key: String, value: &[u8], mod_revision: i64) -> bool {
        let parsed = self.layout.parse(&key);
        self.counts.count(parsed.as_ref());
        let block = self.layout.is_block(&key);
        // The mirror may hold this host's own write already (`written`), later than the event.
        let behind = self.newer_in_mirror(&key, mod_revision);
        if put {
            let stored = Stored::new(&self.layout, &key, value, mod_revision);
            let urgent = !block || self.holds(&stored);
            if !behind {
                let kept = stored.mirrored(&self.layout, &self.own_records, &key);
                self.mirror_put_parsed(key.clone(), parsed.as_ref(), kept);
            }
            self.queue(Event::Put {
                key,
                parsed,
                stored,
            });
            urgent
        } else {
            let urgent = !block || self.held.contains(&key);
            if !behind {
                self.mirror_remove(&key);
            }
            self.queue(Event::Delete {
                key,
                revision: mod_revision,
            });
            urgent
        }
    }

    /// etcd ended the keep-alive stream, which it does when it refuses a renewal.
    fn keep_alive_ended(&mut self, lease: &mut Lease) {
        lease.stream = None;
        self.regrants.refusal();
    }

    /// A keep-alive stream for lease `id`, its first renewal answered; a renewal etcd refused, answered
    /// or left unanswered is counted for the next grant's pause.
    async fn keep_alive(
        &mut self,
        client: &mut Client,
        id: i64,
    ) -> Fallible<(LeaseKeeper, LeaseKeepAliveStream)> {
        match client.lease_keep_alive(id).await {
            Ok(stream) => {
                self.renewal_answered();
                Ok(stream)
            }
            Err(e) => {
                self.renewal_failed(&e);
                Err(e)
            }
        }
    }

    /// The previous session's lease kept alive on this connection, if etcd still has it: the liveness
    /// key stays on it as it is (no put, no delivery to every host; if someone deleted the key, the
    /// resumed watch says so and the tick puts it back). Only a lease etcd no longer knows is replaced;
    /// `None` while the new one waits its pause ([`Regrants`]).
    async fn resume_lease(&mut self, client: &mut Client) -> Fallible<Option<Lease>> {
        if let Some(id) = self.lease_id {
            // The first keep-alive is sent and answered inside: a ttl of 0 is "lease not found".
            match self.keep_alive(client, id).await {
                Ok(stream) => {
                    tracing::info!(lease = id, "etcd session resumed on this host's lease");
                    return Ok(Some(Lease {
                        id,
                        stream: Some(stream),
                    }));
                }
                Err(e) if Failure::of(&e) == Failure::LeaseGone => {
                    tracing::info!(
                        lease = id,
                        "this host's etcd lease expired between sessions; taking a new one"
                    );
                    let draw = self.rng.next_u64();
                    self.regrants.lapsed(id, self.cfg.lease_ttl, draw);
                    self.lease_id = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.liveness(client).await
    }

    /// Grants a lease and puts this host's liveness key on it. The lease's ID is this host's choice,
    /// so a grant re-sent after its deadline passed finds the one etcd applied late instead of granting
    /// a second (the first, kept alive by no one, expired 10 s later: one more revoke etcd had to
    /// commit while saturated, each of a storm's lost grants). `None` while the grant must wait: the
    /// session goes on without it (its records are not on the lease).
    async fn liveness(&mut self, client: &mut Client) -> Fallible<Option<Lease>> {
        let wait = self.regrants.wait();
        if !wait.is_zero() {
            tracing::info!(
                ?wait,
                refused_in_a_row = self.regrants.refused_in_a_row,
                "this host's last lease lapsed; the next grant waits"
            );
            return Ok(None);
        }
        let ttl = self.cfg.lease_ttl.as_secs() as i64;
        let id = grant_id(self.granting, self.rng.next_u64());
        self.granting = Some(id);
        match client
            .lease_grant(ttl, Some(LeaseGrantOptions::new().with_id(id)))
            .await
        {
            Ok(_) => {}
            Err(e) if lease_exists(&e) => {
                tracing::debug!(
                    lease = id,
                    "an earlier grant of this lease was applied late"
                );
            }
            Err(e) => return Err(e),
        }
        self.granting = None;
        self.regrants.granted();
        tracing::debug!(lease = id, "etcd lease granted");
        // Kept at once: if the put or the keep-alive stream fails, the next attempt resumes this lease
        // (`lease_to_resume`; the tick puts the key on it) instead of granting another.
        self.lease_id = Some(id);
        self.put_liveness(client, id).await?;
        let stream = self.keep_alive(client, id).await?;
        Ok(Some(Lease {
            id,
            stream: Some(stream),
        }))
    }

    async fn put_liveness(&mut self, client: &mut Client, lease: i64) -> Fallible<()> {
        let value = serde_json::to_vec(&HostValue {
            host: self.me,
            started_at_ms: self.started_at_ms,
        })
        .expect("serializes");
        let resp = client
            .put(
                self.layout.host(self.me),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        self.liveness_written(&value, resp.header().map_or(0, |h| h.revision()));
        Ok(())
    }

    /// This host's liveness key as its put wrote it at `revision`, taken into the mirror as the watch
    /// would bring it: present from now on, not only when the watch (seconds behind under load) brings
    /// the put, and a delete older than it (the previous lease's expiry, still on its way) no longer
    /// takes it out (`apply_event`). Before, that stale delete made the next tick put the key again:
    /// one more write delivered to every host per lease lost, 141 of them in a 500-host run.
    fn liveness_written(&mut self, value: &[u8], revision: i64) {
        let key = self.layout.host(self.me);
        let stored = Stored::new(&self.layout, &key, value, revision);
        self.mirror_put(key, stored);
    }

    /// Makes this host's records and claims in the store equal to what the plane asked: endpoint records
    /// put with compare-and-swap on the mirrored mod revision, claims created with `version == 0`,
    /// records and claims no longer wanted deleted (a block only while it is still ours).
    async fn sync_own(&mut self, client: &mut Client) -> Fallible<()> {
        let mine = self.layout.records_of(self.me);
        let (claims, records) = self.unsynced();
        for claim in &claims {
            self.create_claim(client, claim).await?;
        }
        self.write_records(client, &records).await?;
        // A proposal's block is ours before the claims file says so: not stale.
        let proposed: BTreeSet<String> = self
            .proposals
            .iter()
            .map(|c| self.layout.block(&c.network, c.block))
            .collect();
        // Only this host's records and the blocks it holds are looked at, not every host's keys.
        let held = self
            .held
            .iter()
            .filter_map(|k| Some((k, self.mirror.get(k)?)));
        let stale: Vec<(String, Stored)> = self
            .under(&mine)
            .chain(held)
            .filter(|(k, _)| !self.wanted.contains_key(*k) && !proposed.contains(*k))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        for (key, stored) in stale {
            // Only our own copy goes: compare the mod revision we saw.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    stored.mod_revision,
                )])
                .and_then([TxnOp::delete(key.clone(), None)])
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = client.txn(txn).await?;
            if resp.succeeded() {
                tracing::info!(%key, "removed this host's record from etcd (gone from its state)");
                // A block's delete does not come back by the watch.
                self.mirror_remove(&key);
            } else {
                self.absorb_current(&[key.as_str()], &current_kvs(&resp));
            }
        }
        for claim in self.proposals.clone() {
            let key = self.layout.block(&claim.network, claim.block);
            if self.mirror.get(&key).is_some_and(|s| self.holds(s)) {
                // Created by this host already (its confirmation may not have reached the plane).
                self.send(Event::Confirmed(claim));
                continue;
            }
            self.create_claim(client, &claim).await?;
        }
        Ok(())
    }

    /// What the plane wants that the mirror does not hold as wanted: block claims to create, and records
    /// to put with the mod revision each is compared with (0: absent).
    #[allow(clippy::type_complexity)]
    fn unsynced(&self) -> (Vec<ClaimRef>, Vec<(String, Vec<u8>, i64)>) {
        let mut claims = Vec::new();
        let mut records = Vec::new();
        for (key, value) in &self.wanted {
            let held = self.mirror.get(key);
            if held.is_some_and(|s| &s.value == value) {
                continue;
            }
            match self.layout.parse(key) {
                Some(Key::Block { .. }) if held.is_some_and(|s| self.holds(s)) => {}
                Some(Key::Block { network, block }) => {
                    let claimed_at_ms =
                        serde_json::from_slice::<BlockValue>(value).map_or(0, |v| v.claimed_at_ms);
                    claims.push(ClaimRef {
                        network,
                        block,
                        claimed_at_ms,
                    });
                }
                Some(
                    Key::Endpoint { .. }
                    | Key::Service { .. }
                    | Key::Generation { .. }
                    | Key::Rotation(_)
                    | Key::MeshCounts { .. },
                ) => {
                    let expected = held.map_or(0, |s| s.mod_revision);
                    records.push((key.clone(), value.clone(), expected));
                }
                _ => {}
            }
        }
        (claims, records)
    }

    /// Records a transaction put at `revision`, taken into the mirror as the watch would bring them.
    /// Without this the mirror learned them only from the watch, seconds late under load, and every
    /// sync until then put them again with the old compare: a transaction that failed and read them back.
    fn written(&mut self, records: &[(String, Vec<u8>, i64)], revision: i64) {
        for (key, value, _) in records {
            let stored = Stored::new(&self.layout, key, value, revision);
            let kept = stored.mirrored(&self.layout, &self.own_records, key);
            self.mirror_put(key.clone(), kept);
        }
    }

    /// Whether the mirror holds `key` at a later revision than an event's (this host's own write, taken
    /// in by `written`): a watch behind it must not move it back.
    fn newer_in_mirror(&self, key: &str, revision: i64) -> bool {
        self.mirror
            .get(key)
            .is_some_and(|s| s.mod_revision > revision)
    }

    /// This host's own keys as a failed compare-and-swap read them: the mirror takes their current value
    /// and revision (or loses them, if the store has none), as if the watch had brought them.
    fn absorb_current(&mut self, keys: &[&str], current: &[(String, Vec<u8>, i64)]) {
        for key in keys {
            match current.iter().find(|(k, _, _)| k == key) {
                Some((k, value, rev)) => {
                    let stored = Stored::new(&self.layout, k, value, *rev);
                    let kept = stored.mirrored(&self.layout, &self.own_records, k);
                    self.mirror_put(k.clone(), kept);
                }
                None => self.mirror_remove(key),
            }
        }
    }

    /// Puts records with compare-and-swap on the revision the mirror has for each.
    async fn write_records(
        &mut self,
        client: &mut Client,
        endpoints: &[(String, Vec<u8>, i64)],
    ) -> Fallible<()> {
        // One transaction (one round trip, one commit) per batch of records instead of one per record.
        for batch in endpoints.chunks(TXN_OPS) {
            let txn = Txn::new()
                .when(
                    batch
                        .iter()
                        .map(|(k, _, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev))
                        .collect::<Vec<_>>(),
                )
                .and_then(
                    batch
                        .iter()
                        .map(|(k, v, _)| TxnOp::put(k.clone(), v.clone(), None))
                        .collect::<Vec<_>>(),
                )
                .or_else(
                    batch
                        .iter()
                        .map(|(k, _, _)| TxnOp::get(k.clone(), None))
                        .collect::<Vec<_>>(),
                );
            let resp = client.txn(txn).await?;
            if resp.succeeded() {
                self.written(batch, resp.header().map_or(0, |h| h.revision()));
            } else {
                // The mirror was behind (the watch may never bring what it missed): take the keys as
                // they are now, so the next tick compares against them instead of failing again.
                tracing::debug!(
                    records = batch.len(),
                    "records changed under us; re-read, retrying on the next tick"
                );
                let keys: Vec<&str> = batch.iter().map(|(k, _, _)| k.as_str()).collect();
                self.absorb_current(&keys, &current_kvs(&resp));
            }
        }
        Ok(())
    }

    /// Whether a block key's value names this host.
    fn holds(&self, stored: &Stored) -> bool {
        stored.holder == Some(self.me)
    }

    /// The mirrored keys under `prefix`, by a range of the sorted mirror.
    fn under<'a>(&'a self, prefix: &str) -> impl Iterator<Item = (&'a String, &'a Stored)> + 'a {
        let prefix = prefix.to_string();
        self.mirror
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }

    /// `version == 0`: the block is this host's only if no one holds it; otherwise the holder is told.
    async fn create_claim(&mut self, client: &mut Client, claim: &ClaimRef) -> Fallible<()> {
        let key = self.layout.block(&claim.network, claim.block);
        let value = serde_json::to_vec(&BlockValue {
            host: self.me,
            claimed_at_ms: claim.claimed_at_ms,
        })
        .expect("serializes");
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), value.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = client.txn(txn).await?;
        if resp.succeeded() {
            tracing::info!(network = %claim.network, block = %claim.block, "address block claimed in etcd");
            // Own blocks are known from here (block keys are not watched), at the put's revision.
            let revision = resp.header().map_or(0, |h| h.revision());
            let stored = Stored::new(&self.layout, &key, &value, revision);
            self.mirror_put(key, stored);
            self.send(Event::Confirmed(claim.clone()));
            return Ok(());
        }
        // The failed transaction read the key back: the mirror takes it as it is.
        self.absorb_current(&[key.as_str()], &current_kvs(&resp));
        let holder = self.mirror.get(&key).and_then(|s| s.holder);
        match holder {
            Some(h) if h == self.me => self.send(Event::Confirmed(claim.clone())),
            Some(holder) => {
                self.send(Event::Taken {
                    claim: claim.clone(),
                    holder,
                });
                // This host's view of the network's blocks was behind: read it, so the next pick (from
                // the peer claims the plane writes) avoids what is taken.
                self.read_blocks(
                    client,
                    self.layout.blocks_of(&claim.network),
                    Read::Linearizable,
                )
                .await?;
            }
            None => {}
        }
        Ok(())
    }

    /// The holders of the mirrored blocks (from the cached block values: no key is parsed).
    fn holders(&self) -> BTreeSet<IpAddr> {
        self.under(&self.layout.blocks_root())
            .filter_map(|(_, s)| s.holder)
            .collect()
    }

    /// Blocks of hosts whose liveness key has been gone for the grace, and which hold no record of that
    /// host, are deleted (compare-and-delete: every host may try, one succeeds).
    async fn reclaim(&mut self, client: &mut Client) -> Fallible<()> {
        // Holders without liveness, and hosts seen leaving (whose blocks this worker may not have
        // read yet); liveness by one lookup per host.
        let absent: BTreeSet<IpAddr> = self
            .holders()
            .into_iter()
            .chain(self.departed.keys().copied())
            .filter(|h| !self.alive.contains(h))
            .collect();
        self.absent_since.retain(|h, _| absent.contains(h));
        for h in &absent {
            let since = self.departed.get(h).copied().unwrap_or_else(Instant::now);
            self.absent_since.entry(*h).or_insert(since);
        }
        let gone_long: BTreeSet<IpAddr> = self
            .absent_since
            .iter()
            .filter(|(_, since)| since.elapsed() >= self.grace)
            .map(|(h, _)| *h)
            .collect();
        self.read_for.retain(|h, _| gone_long.contains(h));
        let unread: Vec<IpAddr> = gone_long
            .iter()
            .filter(|h| !self.read_for.contains_key(h))
            .copied()
            .collect();
        if !unread.is_empty() {
            // Claims are not watched and the mirror keeps no other host's records: both are read
            // once a host is due, not on every pass while its used blocks stay.
            self.read_blocks(client, self.layout.blocks_root(), Read::Linearizable)
                .await?;
            for h in unread {
                let ips = self.endpoints_of(client, h).await?;
                self.read_for.insert(h, ips);
            }
            let holders = self.holders();
            self.departed.retain(|h, _| holders.contains(h));
        }
        let blocks: Vec<(String, i64, IpAddr, IpNetwork)> = self
            .under(&self.layout.blocks_root())
            .filter_map(|(k, s)| {
                let holder = s.holder.filter(|h| gone_long.contains(h))?;
                match self.layout.parse(k) {
                    Some(Key::Block { block, .. }) => {
                        Some((k.clone(), s.mod_revision, holder, block))
                    }
                    _ => None,
                }
            })
            .collect();
        for (key, rev, holder, block) in blocks {
            let empty = !self
                .read_for
                .get(&holder)
                .is_some_and(|ips| ips.iter().any(|ip| block.contains(*ip)));
            if !empty {
                continue;
            }
            if self.delete_block(client, &key, rev).await? {
                tracing::info!(%holder, %block, "host gone longer than the grace and its block is empty; block released");
            }
        }
        Ok(())
    }

    /// The addresses of `host`'s endpoint records, read from etcd (keys only).
    async fn endpoints_of(&self, client: &mut Client, host: IpAddr) -> Fallible<Vec<IpAddr>> {
        let resp = client
            .get(
                self.layout.records_of(host),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| match self.layout.parse(kv.key_str().ok()?) {
                Some(Key::Endpoint { ip, .. }) => Some(ip),
                _ => None,
            })
            .collect())
    }

    /// Deletes another host's block if it is still at `rev`; the mirror and the plane drop it (the watch
    /// does not carry blocks). Whether it was deleted.
    async fn delete_block(&mut self, client: &mut Client, key: &str, rev: i64) -> Fallible<bool> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key, None)]);
        let resp = client.txn(txn).await?;
        if resp.succeeded() {
            self.mirror_remove(key);
            self.send(Event::Delete {
                key: key.to_string(),
                revision: resp.header().map_or(rev, |h| h.revision()),
            });
        }
        Ok(resp.succeeded())
    }

    /// Deletes every block and record of `host`; refused while its liveness key exists.
    async fn forget(
        &mut self,
        client: &mut Client,
        host: IpAddr,
    ) -> Fallible<Result<usize, String>> {
        if self.alive.contains(&host) {
            return Ok(Err(format!(
                "{host} is up (its liveness key exists); stop its tetherd first"
            )));
        }
        let mut n = 0;
        // Claims are not watched: the mirror has them as of the last read.
        self.read_blocks(client, self.layout.blocks_root(), Read::Linearizable)
            .await?;
        let blocks: Vec<(String, i64)> = self
            .under(&self.layout.blocks_root())
            .filter(|(_, s)| s.holder == Some(host))
            .map(|(k, s)| (k.clone(), s.mod_revision))
            .collect();
        for (key, rev) in blocks {
            if self.delete_block(client, &key, rev).await? {
                n += 1;
            }
        }
        let resp = client
            .delete(
                self.layout.records_of(host),
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            )
            .await?;
        n += resp.deleted() as usize;
        Ok(Ok(n))
    }
}

/// The keys a transaction's `get` operations read.
fn current_kvs(resp: &etcd_client::TxnResponse) -> Vec<(String, Vec<u8>, i64)> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .flat_map(|g| {
            g.kvs()
                .iter()
                .map(|kv| {
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    (key, kv.value().to_vec(), kv.mod_revision())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(me: IpAddr) -> Worker {
        let cfg = EtcdConfig::from_store_section(
            &serde_json::json!({"etcd": {"endpoints": ["http://192.0.2.1:2379"]}}),
        )
        .unwrap();
        let (events, _) = std::sync::mpsc::channel();
        let (wake, _) = UnixDatagram::pair().unwrap();
        let (_, commands) = tokio::sync::mpsc::unbounded_channel();
        Worker::new(
            cfg,
            me,
            Duration::from_secs(30),
            Duration::from_secs(30),
            Arc::new(WatchCounts::default()),
            events,
            wake,
            commands,
        )
    }

    #[test]
    fn one_timed_out_call_keeps_the_session_and_only_a_lease_long_failure_or_a_lost_connection_ends_it(
    ) {
        let ttl = Duration::from_secs(10);
        // etcd's timeouts ("request timed out", "waiting for the applied index took too long") and
        // leader changes are Unavailable (14); the client's own deadline Cancelled (1) or
        // DeadlineExceeded (4); too many requests ResourceExhausted (8).
        for code in [14, 1, 4, 8] {
            assert_eq!(Failure::of_code(code), Failure::Call, "code {code}");
        }
        // "requested lease not found": NotFound (5). Bad arguments, auth: the session is wrong.
        assert_eq!(Failure::of_code(5), Failure::LeaseGone);
        for code in [3, 7, 16] {
            assert_eq!(Failure::of_code(code), Failure::Session, "code {code}");
        }
        let stream_gone = etcd_client::Error::WatchError("watch stream ended".into());
        assert_eq!(Failure::of(&stream_gone), Failure::Session);
        let expired = etcd_client::Error::LeaseKeepAliveError(LEASE_NOT_FOUND.into());
        assert_eq!(Failure::of(&expired), Failure::LeaseGone);
        // A failed call is retried on the same session, with a growing pause.
        let cap = retry_cap(ttl);
        let first = verdict(Failure::Call, 1, Duration::ZERO, ttl, cap);
        let third = verdict(Failure::Call, 3, Duration::from_secs(1), ttl, cap);
        let many = verdict(Failure::Call, 30, Duration::from_secs(9), ttl, cap);
        assert_eq!(first, Verdict::Retry(RETRY_FIRST));
        assert_eq!(third, Verdict::Retry(RETRY_FIRST * 4));
        assert_eq!(many, Verdict::Retry(cap));
        // Failing for as long as the lease lives: the lease is gone anyway, another member may answer.
        assert_eq!(
            verdict(Failure::Call, 5, ttl, ttl, cap),
            Verdict::End,
            "calls failing for a whole lease TTL"
        );
        assert_eq!(
            verdict(Failure::Session, 1, Duration::ZERO, ttl, cap),
            Verdict::End
        );
        assert_eq!(
            verdict(Failure::LeaseGone, 1, Duration::ZERO, ttl, cap),
            Verdict::NewLease
        );
        // Even after calls failed for a whole TTL (which is how a lease expires): etcd answered.
        assert_eq!(
            verdict(Failure::LeaseGone, 9, ttl, ttl, cap),
            Verdict::NewLease
        );
        // The counter: a success resets it, a failure schedules the retry (jittered: see below).
        let mut calls = Calls::new(ttl);
        assert!(calls.due());
        let within = |v: Verdict, base: Duration| match v {
            Verdict::Retry(p) => base / 2 <= p && p <= base * 3 / 2,
            _ => false,
        };
        assert!(within(calls.failed(Failure::Call, ttl), RETRY_FIRST));
        assert!(!calls.due(), "the retry waits for its pause");
        assert!(within(calls.failed(Failure::Call, ttl), RETRY_FIRST * 2));
        calls.succeeded();
        assert!(calls.due());
        assert_eq!(calls.in_a_row, 0);
    }

    #[test]
    fn retry_pauses_are_jittered_around_the_backoff_spread_over_it_and_average_it() {
        for base in [
            RETRY_FIRST,
            RETRY_FIRST * 4,
            RETRY_MAX,
            Duration::from_millis(50),
        ] {
            assert_eq!(jittered(base, 0), base / 2, "the shortest pause is half");
            assert_eq!(jittered(base, base.as_nanos() as u64), base * 3 / 2);
            for draw in [1, 7, 1 << 20, u64::MAX / 3, u64::MAX] {
                let p = jittered(base, draw);
                assert!(base / 2 <= p && p <= base * 3 / 2, "{p:?} for {base:?}");
            }
        }
        // 500 workers failing together: their pauses spread over the whole interval, in lock step no
        // more (every tenth of it holds some of them, none holds a fifth of them), and they average the
        // backoff (no more retries than without jitter).
        let mut rng = rand::make_rng::<StdRng>();
        let base = RETRY_MAX;
        let mut bins = [0usize; 10];
        let mut total = Duration::ZERO;
        for _ in 0..500 {
            let p = jittered(base, rng.next_u64());
            total += p;
            let bin = ((p - base / 2).as_nanos() * 10 / base.as_nanos()).min(9) as usize;
            bins[bin] += 1;
        }
        assert!(bins.iter().all(|n| *n > 0 && *n < 100), "{bins:?}");
        let mean = total / 500;
        assert!(base * 9 / 10 < mean && mean < base * 11 / 10, "{mean:?}");
        // Two workers' Calls draw differently (each seeds its own).
        let pauses: BTreeSet<Duration> = (0..8)
            .map(
                |_| match Calls::new(RETRY_MAX).failed(Failure::Call, RETRY_MAX * 4) {
                    Verdict::Retry(p) => p,
                    v => panic!("{v:?}"),
                },
            )
            .collect();
        assert!(pauses.len() > 1, "{pauses:?}");
    }

    #[test]
    fn a_lease_lapsed_while_etcd_refused_renewals_is_replaced_after_a_growing_pause_and_one_lost_otherwise_at_once(
    ) {
        let ttl = Duration::from_secs(30);
        let slack = Duration::from_millis(500);
        let mut r = Regrants::default();
        // Granted, renewed, then lost without a refusal (the host was cut off): replaced at once.
        r.granted();
        r.renewed(ttl);
        r.lapsed(1, ttl, 7);
        assert_eq!(r.wait(), Duration::ZERO);
        // Renewed, then etcd refused a renewal and the lease lapsed: half a TTL at least.
        r.granted();
        r.renewed(ttl);
        r.refusal();
        r.lapsed(2, ttl, 0);
        let first = r.wait();
        assert!(ttl / 2 - slack < first && first <= ttl / 2, "{first:?}");
        // The same lapse seen again (a retry, another path) does not lengthen it.
        r.lapsed(2, ttl, 0);
        assert!(r.wait() <= first);
        // Granted and never renewed while etcd answered other calls, lapsed: each such lapse in a row
        // doubles the base, up to four TTLs, also when a renewal was answered in between (the lease was
        // not healthy for two TTLs).
        for (id, ttls) in [(3, 2), (4, 4), (5, 4), (6, 4)] {
            let base = ttl * ttls;
            r.granted();
            r.heard_from_etcd(ttl);
            if id == 4 {
                r.renewed(ttl);
                r.refusal();
            }
            // The longest jitter draw: one and a half times the base.
            r.lapsed(id, ttl, base.as_nanos() as u64);
            let wait = r.wait();
            assert!(
                base * 3 / 2 - slack < wait && wait <= base * 3 / 2,
                "lapse {id}: {wait:?}"
            );
            assert_eq!(regrant_pause(r.refused_in_a_row, ttl, 0), base / 2);
        }
        // An answered renewal lets the waiting grant go now; the series goes on until a lease is
        // healthy for two TTLs.
        r.granted();
        r.renewed(ttl);
        assert_eq!(r.wait(), Duration::ZERO);
        assert_eq!(r.refused_in_a_row, 5);
        r.healthy_since = Some(Instant::now() - ttl * 2);
        r.renewed(ttl);
        assert_eq!(r.refused_in_a_row, 0);
        r.refusal();
        r.lapsed(7, ttl, 0);
        assert!(r.wait() <= ttl / 2 && ttl / 2 - slack < r.wait());
    }

    #[test]
    fn a_lease_that_lapsed_while_etcd_answered_nothing_is_replaced_within_a_second_and_the_refusal_series_stays(
    ) {
        let ttl = Duration::from_secs(30);
        let mut r = Regrants::default();
        // A lagging etcd: two lapses with refused renewals.
        for id in [1, 2] {
            r.granted();
            r.renewed(ttl);
            r.refusal();
            r.lapsed(id, ttl, 0);
        }
        assert_eq!(r.refused_in_a_row, 2);
        // Then an outage longer than the lease: renewed, then every renewal got no answer (deadline,
        // broken connection) and nothing else was answered before the lease expired.
        r.granted();
        r.renewed(ttl);
        r.unanswered();
        r.unanswered();
        r.lapsed(3, ttl, u64::MAX);
        assert!(
            r.wait() <= REGRANT_AFTER_OUTAGE * 3 / 2,
            "waited like a refusal: {:?}",
            r.wait()
        );
        assert_eq!(
            r.refused_in_a_row, 2,
            "an outage neither counts nor ends the series"
        );
        // A renewal period and a call's deadline without an answer: etcd is taken for unreachable.
        r.renewed(ttl);
        assert!(!r.overdue(ttl / 3 + CALL_TIMEOUT));
        r.alive_at = Some(Instant::now() - ttl / 3 - CALL_TIMEOUT - Duration::from_millis(1));
        assert!(r.overdue(ttl / 3 + CALL_TIMEOUT));
        // Answers after the lease expired (etcd back, the watch catching up) do not make it a refusal.
        r.granted();
        r.renewed(ttl);
        r.unanswered();
        r.alive_at = Some(Instant::now() - ttl - Duration::from_secs(1));
        r.heard_from_etcd(ttl);
        r.lapsed(4, ttl, u64::MAX);
        assert!(r.wait() <= REGRANT_AFTER_OUTAGE * 3 / 2, "{:?}", r.wait());
        // Renewals unanswered while etcd still answered the watch and other calls: it lags, the pause
        // grows as for a refusal.
        r.granted();
        r.renewed(ttl);
        r.unanswered();
        r.heard_from_etcd(ttl);
        r.lapsed(5, ttl, 0);
        assert_eq!(r.refused_in_a_row, 3);
        assert!(
            r.wait() + Duration::from_secs(1) > ttl * 2,
            "{:?}",
            r.wait()
        );
        // A refusal stays a refusal whatever came after it.
        r.granted();
        r.renewed(ttl);
        r.refusal();
        r.unanswered();
        r.lapsed(6, ttl, 0);
        assert_eq!(r.refused_in_a_row, 4);
    }

    #[test]
    fn a_lapse_is_etcds_refusal_only_if_etcd_answered_and_a_renewal_is_refused_only_by_etcds_own_answer(
    ) {
        assert_eq!(Lapse::of(Renewal::Answered, false), Lapse::Lost);
        assert_eq!(Lapse::of(Renewal::Answered, true), Lapse::Lost);
        assert_eq!(Lapse::of(Renewal::Refused, false), Lapse::Refused);
        assert_eq!(Lapse::of(Renewal::Unanswered, true), Lapse::Refused);
        assert_eq!(Lapse::of(Renewal::Unanswered, false), Lapse::Unreachable);
        // etcd's own statuses (no cause kept by the client): answers.
        let lagging = etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
            "etcdserver: request timed out, waiting for the applied index took too long",
        ));
        assert!(answered(&lagging));
        let gone = etcd_client::Error::LeaseKeepAliveError(LEASE_NOT_FOUND.into());
        assert!(answered(&gone));
        // The call's own deadline and a broken connection, as tonic makes them (the cause kept): none.
        let deadline = etcd_client::Error::GRpcStatus(tonic::Status::from_error(Box::new(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "Timeout expired"),
        )));
        assert_eq!(Failure::of(&deadline), Failure::Call);
        assert!(
            !answered(&deadline),
            "the client's deadline counted as etcd's refusal"
        );
        let broken = etcd_client::Error::GRpcStatus(tonic::Status::from_error(Box::new(
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stream closed"),
        )));
        assert!(!answered(&broken));
        let unsent = etcd_client::Error::LeaseKeepAliveError("channel closed".into());
        assert!(!answered(&unsent));
        // How a worker counts them: etcd's refusal is one, the deadline is not.
        let mut w = worker("192.0.2.7".parse().unwrap());
        let ttl = w.cfg.lease_ttl;
        w.regrants.granted();
        w.regrants.renewed(ttl);
        w.renewal_failed(&deadline);
        assert_eq!(w.regrants.renewal, Renewal::Unanswered);
        w.renewal_failed(&lagging);
        assert_eq!(w.regrants.renewal, Renewal::Refused);
    }

    #[test]
    fn renewals_unanswered_past_their_period_and_a_calls_deadline_take_etcd_for_unreachable_until_it_answers(
    ) {
        let mut w = worker("192.0.2.7".parse().unwrap());
        let ttl = w.cfg.lease_ttl;
        let mut calls = Calls::new(ttl);
        w.renewal_answered();
        w.note_silence(true);
        assert_eq!(w.reachable, Some(true), "a renewal was just answered");
        w.regrants.alive_at = Some(Instant::now() - ttl / 3 - CALL_TIMEOUT - TICK);
        // Not while the lease is not kept alive (it lapsed, the next grant waits).
        w.note_silence(false);
        assert_eq!(w.reachable, Some(true));
        w.note_silence(true);
        assert_eq!(w.reachable, Some(false));
        // A tick that made no call ends in `settle(Ok)`: that is no answer from etcd.
        w.settle(&mut calls, Ok(()), &mut true).unwrap();
        assert_eq!(
            w.reachable,
            Some(false),
            "a tick without a call took etcd for back"
        );
        // A watch response (or any answer) is.
        w.answer_seen();
        w.settle(&mut calls, Ok(()), &mut true).unwrap();
        assert_eq!(w.reachable, Some(true));
    }

    #[test]
    fn with_one_member_failing_calls_never_end_the_session_and_with_more_a_lease_ttl_does() {
        let one = worker("10.0.0.1".parse().unwrap());
        assert_eq!(one.end_after(), Duration::MAX);
        let ttl = one.cfg.lease_ttl;
        assert_eq!(
            verdict(
                Failure::Call,
                99,
                Duration::from_secs(3600),
                one.end_after(),
                retry_cap(ttl)
            ),
            Verdict::Retry(ttl)
        );
        let cfg = EtcdConfig::from_store_section(&serde_json::json!({"etcd": {
            "endpoints": ["http://192.0.2.1:2379", "http://192.0.2.2:2379"]}}))
        .unwrap();
        let mut two = worker("10.0.0.1".parse().unwrap());
        two.cfg = cfg;
        assert_eq!(two.end_after(), two.cfg.lease_ttl);
        assert_eq!(
            verdict(
                Failure::Call,
                5,
                two.cfg.lease_ttl,
                two.end_after(),
                retry_cap(two.cfg.lease_ttl)
            ),
            Verdict::End
        );
    }

    #[test]
    fn calls_etcd_keeps_refusing_wait_longer_and_longer_up_to_a_lease_ttl_and_one_answer_ends_the_series(
    ) {
        // One member (the session is never ended by failing calls), a 30 s lease: the pauses double
        // from 250 ms past the 4 s they stopped at before, up to the TTL, and stay there.
        let ttl = Duration::from_secs(30);
        let mut calls = Calls::new(ttl);
        let pause = |v: Verdict| match v {
            Verdict::Retry(p) => p,
            v => panic!("{v:?}"),
        };
        let mut pauses = Vec::new();
        for _ in 0..12 {
            pauses.push(pause(calls.failed(Failure::Call, Duration::MAX)));
        }
        let bases: Vec<Duration> = (0..12u32)
            .map(|i| (RETRY_FIRST * (1 << i)).min(ttl))
            .collect();
        for (p, base) in pauses.iter().zip(&bases) {
            assert!(*base / 2 <= *p && *p <= *base * 3 / 2, "{p:?} for {base:?}");
        }
        assert_eq!(
            bases[7..],
            [ttl; 5],
            "the eighth refusal in a row waits a TTL"
        );
        // A fleet at the cap retries about once a TTL, not every 4 s: each of the last five waits
        // half a TTL at least.
        assert!(pauses[7..].iter().all(|p| *p >= ttl / 2), "{pauses:?}");
        // One answered call (a renewal counts: etcd answers those only with its applied index caught
        // up) ends the series: the next failure waits the first pause again.
        calls.succeeded();
        assert!(calls.due());
        let again = pause(calls.failed(Failure::Call, Duration::MAX));
        assert!(again <= RETRY_FIRST * 3 / 2, "{again:?}");
        // A lease shorter than 4 s keeps the 4 s cap.
        let short = Duration::from_secs(2);
        assert_eq!(retry_cap(short), RETRY_MAX);
        assert_eq!(
            verdict(
                Failure::Call,
                20,
                Duration::ZERO,
                Duration::MAX,
                retry_cap(short)
            ),
            Verdict::Retry(RETRY_MAX)
        );
    }

    #[test]
    fn the_liveness_key_goes_back_on_its_lease_and_only_an_expired_lease_is_replaced() {
        assert_eq!(Liveness::of(true, true), Liveness::Fine);
        // Someone deleted the key: the lease still lives, so no second lease is granted.
        assert_eq!(Liveness::of(true, false), Liveness::PutKey);
        // The keep-alive said ttl 0, or a put said the lease is unknown: a new one, key or not.
        assert_eq!(Liveness::of(false, true), Liveness::NewLease);
        assert_eq!(Liveness::of(false, false), Liveness::NewLease);
    }

    #[test]
    fn a_failed_compare_and_swap_takes_the_keys_current_revision_so_the_next_one_succeeds() {
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        let mut w = worker(me);
        let net = "ov";
        let changed = w.layout.endpoint(me, net, "10.0.0.2".parse().unwrap());
        let gone = w.layout.endpoint(me, net, "10.0.0.3".parse().unwrap());
        let untouched = w.layout.endpoint(me, net, "10.0.0.4".parse().unwrap());
        for key in [&changed, &gone, &untouched] {
            w.mirror_put(key.clone(), Stored::new(&w.layout, key, b"old", 5));
        }
        // The watch missed a write at revision 9 and a delete: the compare on revision 5 fails, and
        // the failed transaction's gets read what is there now.
        w.absorb_current(
            &[changed.as_str(), gone.as_str()],
            &[(changed.clone(), b"theirs".to_vec(), 9)],
        );
        assert_eq!(w.mirror[&changed].mod_revision, 9, "compared next at 9");
        assert_eq!(w.mirror[&changed].value, b"theirs");
        assert!(!w.mirror.contains_key(&gone), "created next (revision 0)");
        assert_eq!(w.mirror[&untouched].mod_revision, 5);
    }

    #[test]
    fn records_a_transaction_wrote_are_not_put_again_while_the_watch_has_not_brought_them() {
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        let mut w = worker(me);
        let first = w.layout.endpoint(me, "ov", "10.0.0.2".parse().unwrap());
        let second = w.layout.endpoint(me, "ov", "10.0.0.3".parse().unwrap());
        w.wanted = BTreeMap::from([
            (first.clone(), b"a".to_vec()),
            (second.clone(), b"b".to_vec()),
        ]);
        let (claims, records) = w.unsynced();
        assert!(claims.is_empty());
        assert_eq!(
            records
                .iter()
                .map(|(k, _, rev)| (k.as_str(), *rev))
                .collect::<Vec<_>>(),
            [(first.as_str(), 0), (second.as_str(), 0)],
            "both created (compared with revision 0)"
        );
        // The transaction succeeded at revision 12; the watch has not brought the puts yet.
        w.written(&records, 12);
        assert!(
            w.unsynced().1.is_empty(),
            "the next sync puts them again with a stale compare"
        );
        // One changes: compared with the revision the transaction gave it.
        w.wanted.insert(first.clone(), b"a2".to_vec());
        assert_eq!(w.unsynced().1, [(first.clone(), b"a2".to_vec(), 12)]);
        // A watch behind the mirror leaves it as it is: an older put, an older delete.
        w.apply_event(true, second.clone(), b"old", 11);
        w.apply_event(false, second.clone(), b"", 11);
        assert_eq!(w.mirror[&second].mod_revision, 12);
        assert!(w.unsynced().1.iter().all(|(k, _, _)| k != &second));
        // A later one moves it.
        w.apply_event(false, second.clone(), b"", 13);
        assert!(!w.mirror.contains_key(&second));
    }

    #[test]
    fn the_mirror_keeps_hosts_blocks_and_this_hosts_records_and_hands_other_hosts_records_to_the_plane_only(
    ) {
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let mut w = worker(me);
        let (events, plane) = std::sync::mpsc::channel();
        w.events = events;
        let theirs = w.layout.endpoint(other, "ov", "10.0.1.2".parse().unwrap());
        let their_service = w.layout.service(other, "ov", "web");
        let mine = w.layout.endpoint(me, "ov", "10.0.0.2".parse().unwrap());
        let host = w.layout.host(other);
        let block = w.layout.block("ov", "10.0.1.0/26".parse().unwrap());
        let block_value =
            serde_json::to_vec(&serde_json::json!({"host": other, "claimedAtMs": 1})).unwrap();
        for (key, value) in [
            (&theirs, b"{}".to_vec()),
            (&their_service, b"{}".to_vec()),
            (&mine, b"{}".to_vec()),
            (&host, b"{}".to_vec()),
        ] {
            w.apply_event(true, key.clone(), &value, 20);
        }
        w.mirror_put(
            block.clone(),
            Stored::new(&w.layout, &block, &block_value, 21),
        );
        assert!(!w.mirror.contains_key(&theirs) && !w.mirror.contains_key(&their_service));
        for key in [&mine, &host, &block] {
            assert!(w.mirror.contains_key(key), "{key}");
        }
        assert_eq!(w.holders(), BTreeSet::from([other]));
        assert!(w.alive.contains(&other));
        // The plane got every put, its delete too.
        w.apply_event(false, theirs.clone(), b"", 22);
        let delivered: Vec<String> = plane
            .try_iter()
            .map(|e| match e {
                Event::Put { key, .. } | Event::Delete { key, .. } => key,
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            delivered,
            [&theirs, &their_service, &mine, &host, &theirs].map(|k| k.clone())
        );
        // A list (a relist after a compaction) keeps the same ones.
        let listed = BTreeMap::from([
            (theirs.clone(), Stored::new(&w.layout, &theirs, b"{}", 30)),
            (mine.clone(), Stored::new(&w.layout, &mine, b"{}", 30)),
        ]);
        w.mirror.clear();
        for (k, s) in &listed {
            w.mirror_put(k.clone(), s.mirrored(&w.layout, &w.own_records, k));
        }
        assert_eq!(w.mirror.keys().collect::<Vec<_>>(), [&mine]);
    }

    #[test]
    fn a_grant_whose_answer_never_came_is_asked_again_by_its_id_and_found_granted_not_granted_twice(
    ) {
        // A grant's first attempt draws an ID (positive: etcd allocates one itself for 0).
        for draw in [0, 1, 7, u64::MAX, u64::MAX / 2, 1 << 63] {
            let id = grant_id(None, draw);
            assert!(id > 0, "{draw}: {id}");
        }
        assert_ne!(grant_id(None, 12345), grant_id(None, 67890));
        // Its deadline passed: the next attempt asks for the same lease.
        let first = grant_id(None, 42);
        assert_eq!(grant_id(Some(first), 99), first);
        // etcd applied the first late: the second is refused as existing, which means granted.
        assert!(lease_exists_status(9, "etcdserver: lease already exists"));
        assert!(!lease_exists_status(9, "etcdserver: something else"));
        assert!(!lease_exists_status(14, "etcdserver: lease already exists"));
        let late = etcd_client::Error::LeaseKeepAliveError("lease already exists".into());
        assert!(
            !lease_exists(&late),
            "only etcd's answer to a grant says so"
        );
    }

    #[test]
    fn a_host_whose_lease_expired_resumes_the_lease_it_granted_last_unless_that_is_the_expired_one()
    {
        // A grant went through, its liveness put did not: the next attempt resumes that grant.
        assert_eq!(lease_to_resume(Some(8), 5), Some(8));
        // The lease kept is the one that expired: a new grant.
        assert_eq!(lease_to_resume(Some(5), 5), None);
        assert_eq!(lease_to_resume(None, 5), None);
    }

    #[test]
    fn a_liveness_put_is_known_written_and_an_older_delete_on_its_way_does_not_make_the_next_tick_put_it_again(
    ) {
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        let mut w = worker(me);
        let key = w.layout.host(me);
        // The previous lease expired at revision 40 (its key deleted then); the new lease's put went
        // through at 50, and the watch, behind, has brought neither yet.
        w.liveness_written(b"{}", 50);
        assert_eq!(Liveness::of(true, w.alive.contains(&me)), Liveness::Fine);
        w.apply_event(false, key.clone(), b"", 40);
        assert_eq!(
            Liveness::of(true, w.alive.contains(&me)),
            Liveness::Fine,
            "the expired lease's delete, older than the put, made the next tick put the key again"
        );
        // The put itself arriving changes nothing; a later delete (someone removed the key) still counts.
        w.apply_event(true, key.clone(), b"{}", 50);
        assert!(w.alive.contains(&me));
        w.apply_event(false, key, b"", 51);
        assert_eq!(Liveness::of(true, w.alive.contains(&me)), Liveness::PutKey);
    }

    #[test]
    fn a_watch_resumes_after_its_events_or_a_progress_notification_never_after_the_created_headers_revision(
    ) {
        // Watching from 488 while the store is at 3025: the created response comes first, the catch-up
        // (488..=3025) after it. A session failing in between must resume at 488, not at 3026.
        assert_eq!(
            Delivered::classify(true, false, None, Some(3025)),
            Delivered::Nothing
        );
        // A catch-up response: its header is the store's revision, its events older ones.
        assert_eq!(
            Delivered::classify(false, false, Some(1200), Some(3025)),
            Delivered::Through(1200)
        );
        // A progress notification: everything up to its header was sent.
        assert_eq!(
            Delivered::classify(false, false, None, Some(3030)),
            Delivered::Through(3030)
        );
        assert_eq!(
            Delivered::classify(false, true, None, Some(3030)),
            Delivered::Nothing
        );
    }
}
