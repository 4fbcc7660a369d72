//! Group commit: the write transactions of many guests share one SQLite commit (one fsync).
//!
//! Why: with `synchronous=FULL` every commit writes its pages to the WAL and fsyncs it while
//! holding the file's write lock, so concurrent writers to one file queue behind each other's
//! fsyncs (measured in docs/benchmarks.md: the commit was half of the time an order held the
//! lock). Databases group commits for this reason; this does it in the host, below the guest's
//! view.
//!
//! How: this process's writers to one file take turns at a FIFO gate ([`Writer::enter`]).
//! A guest's `BEGIN IMMEDIATE`/`EXCLUSIVE` joins the open *group*: one transaction on the
//! host's own writer connection, begun by the first member; the guest's transaction is a
//! savepoint in it, and its statements run on that connection. The guest's `COMMIT` releases
//! the savepoint and then:
//! - if nobody is waiting at the gate, commits the group right away (one fsync) and answers;
//! - otherwise hands its turn to the next waiter, which joins the same group, and answers only
//!   once the group is committed; a flusher queued at the gate behind the waiters of that
//!   moment commits it.
//!
//! What a guest can observe is what SQLite promises for its own transaction:
//! - atomicity: a `ROLLBACK`, a dropped connection or a failed statement undoes only its own
//!   savepoint, never another member's work;
//! - isolation: members run one after the other (serializable, as with one writer at a time);
//!   readers on other connections see a member's writes only once the group is committed,
//!   which is before that member's `COMMIT` answers;
//! - durability: `COMMIT` answers success only after the group's commit (and its fsync);
//!   if the group's commit fails, every member's `COMMIT` fails and nothing of it is kept.
//!   A member sees the writes of earlier members of its group, which are not durable yet: so
//!   no end of its transaction answers before the group is committed (`COMMIT`, `ROLLBACK`, the
//!   end of a transaction that only read, its connection dropped), and each fails with the
//!   group, `ROLLBACK` too: no answer of a guest can rest on a write that is then lost. A
//!   member that joined a group with no released member saw only durable data: its
//!   `ROLLBACK` answers at once.
//!
//! What a member may not do, because it would change the shared connection or the group rather
//! than its own transaction (refused with "not authorized", checked by SQLite's authorizer when
//! the statement is prepared): set a pragma, create TEMP objects, attach a database, use the
//! host's savepoint name, or end the transaction in a form [`super::Control`] does not recognise.
//! A database whose schema can roll a whole transaction back (`ON CONFLICT ROLLBACK`,
//! `RAISE(ROLLBACK)` in a trigger) commits each transaction alone: such a rollback in a group
//! would undo the members before it. The same from a statement's own `OR ROLLBACK`, or an I/O
//! error or a full disk in the middle of a member, fails the group: the members before it get
//! an error from their `COMMIT` (as from a failed commit) and nothing of theirs is kept.
//!
//! The cost: a member's `COMMIT` answers once the members that queued behind it are done, so a
//! transaction that holds the write turn long (waiting on the network inside a transaction)
//! delays the answers of the members before it, as it delays the start of those after it. It is
//! bounded: a member that holds the turn past the database's `write_turn_deadline_ms` is
//! aborted by a watchdog ([`Writer::abort`]): its savepoint is rolled back, the turn handed on
//! (the members before it commit, those behind it go in), and every statement it sends fails
//! until it ends the transaction.
//!
//! SQLite's own rules still decide across processes: the group's `BEGIN IMMEDIATE` waits for
//! another process's writer (up to 5 s, then "database is locked", as before), and a writer of
//! this process that is not a member (a deferred `BEGIN` that writes later, an autocommit
//! write, a connection with TEMP objects or pragmas of its own) commits the open group before
//! it writes on its own connection.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use super::{execute_on, io_err, SqlError, SqlOutput, SqlValue, BUSY_WAIT};

/// The savepoint a member's transaction is, inside the group's transaction.
const SAVEPOINT: &str = "spin_host_member";

/// How a group's commit ended, as every member's `COMMIT` answers it.
type Outcome = Option<Result<(), SqlError>>;

/// This process's writers to one database file: the gate, and the writer connection that runs
/// every group.
pub(super) struct Writer {
    gate: Arc<Semaphore>,
    /// Tasks queued at the gate (a member commits the group itself when there are none).
    waiting: AtomicUsize,
    /// A member's statement is being prepared or run: the authorizer applies its limits.
    guest: Arc<AtomicBool>,
    /// How long a member may hold the turn before it is aborted.
    deadline: Duration,
    /// The id of the next turn given out.
    next_turn: AtomicU64,
    shared: Mutex<Shared>,
}

/// Used only by the holder of the gate's turn (and by the watchdog that aborts it).
#[derive(Default)]
struct Shared {
    /// The turn given out now: its id and the gate's permit. A turn whose id is not here was
    /// aborted: it may do nothing any more.
    holder: Option<Holder>,
    conn: Option<Connection>,
    group: Option<Group>,
    /// The current member's savepoint is open.
    member: bool,
    /// The schema can roll a whole transaction back, as of `schema_version`.
    rollback_in_schema: Option<(i64, bool)>,
}

/// The turn given out now.
struct Holder {
    id: u64,
    _permit: OwnedSemaphorePermit,
    /// Aborts the member past its deadline; cancelled when the turn is given back.
    watchdog: Option<AbortHandle>,
}

/// The open group: a transaction on the writer connection.
struct Group {
    /// Told the outcome of the group's commit.
    done: watch::Sender<Outcome>,
    /// Members whose savepoint is released (waiting for the group's commit).
    members: usize,
    /// A flusher is queued at the gate for this group.
    flusher: bool,
    /// Each member commits alone (the schema can roll a whole transaction back).
    solo: bool,
}

/// A writer's turn at the gate. Given back (dropped) while a group is open, it queues a flusher
/// for the group's released members (so a group never waits for a writer that may not come),
/// after undoing a member left open (a guest cancelled mid-way) and rolling back a group that
/// has no released member. A turn the watchdog aborted was given back then: dropping it does
/// nothing.
pub(super) struct Turn {
    writer: Arc<Writer>,
    id: u64,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let writer = self.writer.clone();
        let mut shared = writer.lock();
        if !shared.holds(self.id) {
            return;
        }
        if shared.member {
            shared.rollback_member();
        }
        writer.hand_on(shared);
    }
}

/// Counts a task queued at the gate for as long as it waits, even if it is cancelled.
struct Waiting<'w>(&'w AtomicUsize);

impl<'w> Waiting<'w> {
    fn new(count: &'w AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Queues at the gate behind the writers waiting now, then commits the group if it is still
/// open. It waits without a deadline: members are waiting for it.
async fn flush_later(writer: Arc<Writer>) {
    let permit = {
        let _waiting = Waiting::new(&writer.waiting);
        writer.gate.clone().acquire_owned().await
    };
    if let Ok(permit) = permit {
        let turn = writer.grant(permit);
        let _ = Writer::commit_now(turn).await;
    }
}

/// Aborts member turn `id` if it still holds the turn when its deadline passes (on the
/// blocking pool: it may wait for a statement of the member to finish).
async fn watch_turn(writer: Arc<Writer>, id: u64) {
    tokio::time::sleep(writer.deadline).await;
    // Past its deadline a member is aborted only once it holds someone up: a writer queued at
    // the gate, or released members waiting for the group's commit. A long transaction alone on
    // the file (a migration copying a large table at start-up) runs on.
    while !writer.holds_anyone_up() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tokio::task::spawn_blocking(move || writer.abort(id)).await;
}

/// What a statement run for a member did.
pub(super) struct Ran {
    pub out: Result<SqlOutput, SqlError>,
    /// `last_insert_rowid` and `changes` after the statement, if it changed rows.
    pub changed: Option<(i64, u64)>,
    /// SQLite ended the whole transaction (an error that rolls back, `RAISE(ROLLBACK)`): the
    /// member is no longer in a transaction, and the group failed.
    pub ended: bool,
}

/// What a member's statement may not do (see the module comment); anything else is allowed.
fn member_may(action: &AuthAction<'_>) -> bool {
    match action {
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            pragma_value.is_none()
                || READ_ONLY_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str())
        }
        AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::Transaction { .. } => false,
        AuthAction::Savepoint { savepoint_name, .. } => {
            !savepoint_name.eq_ignore_ascii_case(SAVEPOINT)
        }
        _ => true,
    }
}

/// Pragmas that take an argument and only read.
pub(super) const READ_ONLY_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

impl Writer {
    /// A file's writers; a group member may hold the turn for `deadline`.
    pub(super) fn new(deadline: Duration) -> Arc<Self> {
        Arc::new(Writer {
            gate: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            guest: Arc::new(AtomicBool::new(false)),
            deadline,
            next_turn: AtomicU64::new(1),
            shared: Mutex::new(Shared::default()),
        })
    }

    /// The error of every statement of a member aborted past its deadline.
    fn aborted(&self) -> SqlError {
        SqlError::Io(format!(
            "the transaction was aborted: it held the write turn longer than {} ms (write_turn_deadline_ms); it was rolled back",
            self.deadline.as_millis()
        ))
    }

    /// Makes `permit` the turn given out now.
    fn grant(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Turn {
        let id = self.next_turn.fetch_add(1, Ordering::SeqCst);
        self.lock().holder = Some(Holder {
            id,
            _permit: permit,
            watchdog: None,
        });
        Turn {
            writer: self.clone(),
            id,
        }
    }

    /// Gives the turn back: an open group with released members gets a flusher queued at the
    /// gate (or, with no runtime left, is committed here); then the next waiter goes in.
    fn hand_on(self: &Arc<Self>, mut shared: MutexGuard<'_, Shared>) {
        let holder = shared.holder.take();
        if let Some(watchdog) = holder.as_ref().and_then(|h| h.watchdog.as_ref()) {
            watchdog.abort();
        }
        shared.end_if_empty();
        let flush = match shared.group.as_mut() {
            Some(group) if !group.flusher => {
                group.flusher = true;
                true
            }
            _ => false,
        };
        drop(shared);
        if flush {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn(flush_later(self.clone()))),
                // No runtime (the host is shutting down): commit here rather than leave it open.
                Err(_) => drop(self.commit_group()),
            }
        }
        drop(holder);
    }

    /// The watchdog: member turn `id` still holds the turn past its deadline. Its savepoint is
    /// rolled back and the turn handed on, so the group's released members commit and the
    /// writers behind it go in; its own statements fail from now on.
    fn abort(self: &Arc<Self>, id: u64) {
        let mut shared = self.lock();
        if !shared.member || !shared.holds(id) {
            return;
        }
        eprintln!(
            "spin-host: sqlite: a transaction held the write turn longer than {} ms and was aborted (write_turn_deadline_ms)",
            self.deadline.as_millis()
        );
        shared.rollback_member();
        self.hand_on(shared);
    }

    /// Whether a writer is queued at the gate or released members wait for the open group.
    /// Never blocks (it is asked from an async task): while a statement holds the state, the
    /// answer waits for the next look.
    fn holds_anyone_up(&self) -> bool {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let shared = match self.shared.try_lock() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        shared.group.as_ref().is_some_and(|g| g.members > 0)
    }

    /// Tasks queued at the gate now.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (as a parked task) for this file's turn to write, up to [`BUSY_WAIT`] like the
    /// busy handler; then the statement fails the way SQLite's busy timeout makes it fail.
    pub(super) async fn enter(self: &Arc<Self>) -> Result<Turn, SqlError> {
        let permit = {
            let _waiting = Waiting::new(&self.waiting);
            tokio::time::timeout(BUSY_WAIT, self.gate.clone().acquire_owned()).await
        };
        match permit {
            Ok(Ok(permit)) => Ok(self.grant(permit)),
            _ => Err(SqlError::Io("database is locked".into())),
        }
    }

    /// For a writer that is not a member: commits the open group (if any) first, so this
    /// writer's own connection can take SQLite's write lock. The turn is handed back.
    pub(super) async fn flushed(turn: Turn) -> Turn {
        if turn.writer.lock().group.is_none() {
            return turn;
        }
        let writer = turn.writer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _ = writer.commit_group();
            turn
        });
        match task.await {
            Ok(turn) => turn,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The writer connection, opened on first use with the member authorizer.
    fn connection(
        &self,
        open: impl FnOnce() -> Result<Connection, SqlError>,
    ) -> Result<Connection, SqlError> {
        let conn = tokio::task::block_in_place(open)?;
        conn.set_prepared_statement_cache_capacity(256);
        // A member's savepoint journal stays in memory instead of spilling to a temp file;
        // members cannot create TEMP objects here.
        conn.execute_batch("PRAGMA temp_store = MEMORY")
            .map_err(io_err)?;
        let guest = self.guest.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            match !guest.load(Ordering::SeqCst) || member_may(&ctx.action) {
                true => Authorization::Allow,
                false => Authorization::Deny,
            }
        }));
        Ok(conn)
    }

    /// A member's `BEGIN`: joins the open group, or begins one (waiting, on the blocking pool,
    /// for another process's writer if it must), then opens the member's savepoint and starts
    /// the watchdog of its deadline. The turn is moved to the blocking pool and back, so a guest
    /// cancelled meanwhile leaves nothing open.
    pub(super) async fn begin(
        turn: Turn,
        open: impl FnOnce() -> Result<Connection, SqlError>,
    ) -> Result<Turn, SqlError> {
        let writer = turn.writer.clone();
        let must_wait = {
            let mut shared = writer.lock();
            if shared.conn.is_none() {
                shared.conn = Some(writer.connection(open)?);
            }
            shared.group.is_none() && !shared.begin_without_waiting()?
        };
        let turn = match must_wait {
            false => turn,
            true => {
                let task = tokio::task::spawn_blocking(move || {
                    let began = turn.writer.lock().begin_waiting();
                    began.map(|()| turn)
                });
                task.await
                    .map_err(|e| SqlError::Io(format!("BEGIN did not finish: {e}")))??
            }
        };
        let mut shared = writer.lock();
        let conn = shared.conn.as_ref().ok_or(SqlError::InvalidConnection)?;
        if let Err(e) = conn.execute_batch(&format!("SAVEPOINT {SAVEPOINT}")) {
            shared.end_if_empty();
            return Err(io_err(e));
        }
        shared.member = true;
        let watchdog = tokio::spawn(watch_turn(writer.clone(), turn.id));
        if let Some(holder) = shared.holder.as_mut() {
            holder.watchdog = Some(watchdog.abort_handle());
        }
        drop(shared);
        Ok(turn)
    }

    /// Runs one of a member's statements on the writer connection.
    pub(super) fn run(turn: &Turn, sql: &str, params: &[SqlValue]) -> Ran {
        let writer = &turn.writer;
        let mut shared = writer.lock();
        if !shared.holds(turn.id) {
            return Ran {
                out: Err(writer.aborted()),
                changed: None,
                ended: false,
            };
        }
        let Some(conn) = shared.conn.as_ref() else {
            return Ran {
                out: Err(SqlError::InvalidConnection),
                changed: None,
                ended: true,
            };
        };
        let before = conn.total_changes();
        writer.guest.store(true, Ordering::SeqCst);
        let out = execute_on(conn, sql, params);
        writer.guest.store(false, Ordering::SeqCst);
        let changed =
            (conn.total_changes() != before).then(|| (conn.last_insert_rowid(), conn.changes()));
        let ended = conn.is_autocommit();
        if ended {
            shared.member = false;
            let why =
                "the transaction was rolled back by a statement of another in its commit group";
            shared.fail(SqlError::Io(why.into()));
        }
        Ran {
            out,
            changed,
            ended,
        }
    }

    /// A member's `COMMIT`: releases its savepoint, then waits for the group's commit
    /// ([`Writer::settle`]).
    pub(super) async fn commit(turn: Turn) -> Result<(), SqlError> {
        let (outcome, solo) = {
            let mut shared = turn.writer.lock();
            if !shared.holds(turn.id) {
                return Err(turn.writer.aborted());
            }
            let released = match shared.conn.as_ref() {
                Some(conn) => conn.execute_batch(&format!("RELEASE {SAVEPOINT}")),
                None => return Err(SqlError::InvalidConnection),
            };
            if let Err(e) = released {
                shared.rollback_member();
                return Err(io_err(e));
            }
            shared.member = false;
            let group = shared.group.as_mut().ok_or(SqlError::InvalidConnection)?;
            group.members += 1;
            (group.done.subscribe(), group.solo)
        };
        Writer::settle(turn, outcome, solo).await
    }

    /// A member's `ROLLBACK` (or its connection dropped inside the transaction): undoes its
    /// savepoint only; a group with no other member is rolled back, releasing the file. If the
    /// group has released members, this transaction may have read their writes, which are not
    /// durable yet: it answers once the group is committed, and fails if the group fails, as
    /// their `COMMIT`s do.
    pub(super) async fn rollback(turn: Turn) -> Result<(), SqlError> {
        let saw = {
            let mut shared = turn.writer.lock();
            if !shared.holds(turn.id) {
                return Err(turn.writer.aborted());
            }
            let released = shared.group.as_ref().filter(|g| g.members > 0);
            let saw = released.map(|g| (g.done.subscribe(), g.solo));
            shared.rollback_member();
            saw
        };
        match saw {
            None => Ok(()),
            Some((outcome, solo)) => Writer::settle(turn, outcome, solo).await,
        }
    }

    /// The end of a member's transaction when nobody waits for its answer (its guest went
    /// away): undoes its savepoint only, without waiting for the group.
    pub(super) fn rollback_now(turn: Turn) {
        let mut shared = turn.writer.lock();
        if shared.holds(turn.id) {
            shared.rollback_member();
        }
    }

    /// Waits for the outcome of the group a member's transaction ended in: commits the group
    /// now if nobody is waiting at the gate (or the group is solo), or hands the turn on and
    /// waits for the group's commit.
    async fn settle(
        turn: Turn,
        mut outcome: watch::Receiver<Outcome>,
        solo: bool,
    ) -> Result<(), SqlError> {
        let told = outcome.borrow().clone();
        if let Some(done) = told {
            return done;
        }
        if solo || turn.writer.waiting.load(Ordering::SeqCst) == 0 {
            return Writer::commit_now(turn).await;
        }
        drop(turn);
        let told = match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            Err(_) => None,
        };
        told.unwrap_or_else(|| {
            Err(SqlError::Io(
                "the commit group ended without an outcome".into(),
            ))
        })
    }

    /// Commits the open group on the blocking pool (the commit fsyncs) and gives the turn back
    /// there; the outcome, as the members are told it.
    async fn commit_now(turn: Turn) -> Result<(), SqlError> {
        let writer = turn.writer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let outcome = writer.commit_group();
            drop(turn);
            outcome
        });
        task.await
            .map_err(|e| SqlError::Io(format!("COMMIT did not finish: {e}")))?
    }

    /// Commits the open group, telling its members how it went.
    fn commit_group(&self) -> Result<(), SqlError> {
        let mut shared = self.lock();
        let Some(conn) = shared.conn.as_ref() else {
            return Err(SqlError::InvalidConnection);
        };
        if shared.group.is_none() {
            return Ok(());
        }
        let outcome = conn.execute_batch("COMMIT").map_err(io_err);
        if outcome.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        if let Some(group) = shared.group.take() {
            group.done.send_replace(Some(outcome.clone()));
        }
        outcome
    }
}

impl Shared {
    /// Whether turn `id` is the one given out now (not aborted).
    fn holds(&self, id: u64) -> bool {
        self.holder.as_ref().is_some_and(|h| h.id == id)
    }

    /// `BEGIN IMMEDIATE` on the writer connection if no other process holds the lock; `false`
    /// when one does (then [`Shared::begin_waiting`]).
    fn begin_without_waiting(&mut self) -> Result<bool, SqlError> {
        let conn = self.conn.as_ref().ok_or(SqlError::InvalidConnection)?;
        conn.busy_handler(None).map_err(io_err)?;
        let began = conn.execute_batch("BEGIN IMMEDIATE");
        conn.busy_handler(Some(super::busy_wait)).map_err(io_err)?;
        match began.map_err(io_err) {
            Ok(()) => {
                self.open_group()?;
                Ok(true)
            }
            Err(SqlError::Io(e)) if e.contains("locked") || e.contains("busy") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `BEGIN IMMEDIATE`, waiting for another process's writer as the busy handler does.
    fn begin_waiting(&mut self) -> Result<(), SqlError> {
        if self.group.is_some() {
            return Ok(());
        }
        let conn = self.conn.as_ref().ok_or(SqlError::InvalidConnection)?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(io_err)?;
        self.open_group()
    }

    /// Opens the group the writer connection's new transaction is.
    fn open_group(&mut self) -> Result<(), SqlError> {
        let solo = self.schema_can_roll_back();
        let solo = solo.inspect_err(|_| self.fail(SqlError::Io("rolled back".into())))?;
        self.group = Some(Group {
            done: watch::channel(None).0,
            members: 0,
            flusher: false,
            solo,
        });
        Ok(())
    }

    /// Whether a constraint or trigger of the schema can roll a whole transaction back; read
    /// again when the schema changed.
    fn schema_can_roll_back(&mut self) -> Result<bool, SqlError> {
        let conn = self.conn.as_ref().ok_or(SqlError::InvalidConnection)?;
        let version: i64 = conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .map_err(io_err)?;
        if let Some((seen, can)) = self.rollback_in_schema {
            if seen == version {
                return Ok(can);
            }
        }
        let sql = "SELECT count(*) FROM sqlite_schema WHERE upper(sql) LIKE '%ROLLBACK%'";
        let count: i64 = conn.query_row(sql, [], |r| r.get(0)).map_err(io_err)?;
        self.rollback_in_schema = Some((version, count > 0));
        Ok(count > 0)
    }

    /// Undoes the current member's savepoint; ends a group that has no member left.
    fn rollback_member(&mut self) {
        if let Some(conn) = self.conn.as_ref() {
            if self.member && !conn.is_autocommit() {
                let sql = format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}");
                if conn.execute_batch(&sql).is_err() {
                    self.member = false;
                    let why = "the commit group could not undo a member's transaction";
                    self.fail(SqlError::Io(why.into()));
                    return;
                }
            }
        }
        self.member = false;
        self.end_if_empty();
    }

    /// Rolls back a group that no member waits on (nothing of it was answered).
    fn end_if_empty(&mut self) {
        if self.group.as_ref().is_some_and(|g| g.members == 0) {
            self.fail(SqlError::Io("rolled back".into()));
        }
    }

    /// Ends the group without committing: its members' `COMMIT`s fail with `why`.
    fn fail(&mut self, why: SqlError) {
        if let Some(conn) = self.conn.as_ref() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        if let Some(group) = self.group.take() {
            group.done.send_replace(Some(Err(why)));
        }
    }
}
