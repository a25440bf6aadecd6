//! A time budget for queries whose cost a client chooses (SCIM filters), so that one tenant's
//! expensive filter cannot hold pool connections for long. PostgreSQL enforces it with
//! `statement_timeout`, set for the budgeted transaction only. SQLite has no timeout that diesel
//! reaches, so budgeted SQL calls `idgate_within_budget()` on the rows it scans: on SQLite a
//! function of each connection that turns false once this thread's deadline has passed (the
//! query then ends quickly, its rows are thrown away and the budget error returned); on
//! PostgreSQL an immutable `true` (migration 000008), which the planner folds away.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;

use super::{DbConnection, StoreError};

/// How long a budgeted query may run.
pub const QUERY_BUDGET: Duration = Duration::from_secs(3);

/// How many budgeted queries one workspace may run at once in this process: of the pool's ten
/// connections, one workspace's costly filters hold at most three, for at most the budget each.
pub const PER_WORKSPACE: usize = 3;

/// Budgeted queries running now, by workspace.
static RUNNING: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// The SQL a budgeted query adds to the conditions on the rows it scans.
pub const WITHIN_BUDGET: &str = "idgate_within_budget()";

thread_local! {
    /// The deadline of the budgeted query running on this thread, if any.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

diesel::define_sql_function! {
    /// True while the current budgeted query (if any) is within its budget.
    fn idgate_within_budget() -> Bool;
}

fn within_deadline() -> bool {
    DEADLINE.with(|deadline| deadline.get().is_none_or(|at| Instant::now() < at))
}

/// Registers `idgate_within_budget()` on a new SQLite connection.
pub(super) fn register(conn: &mut diesel::SqliteConnection) -> diesel::QueryResult<()> {
    idgate_within_budget_utils::register_nondeterministic_impl(conn, within_deadline)
}

/// Clears the thread's deadline however the query ends.
struct Deadline;

impl Deadline {
    fn start(budget: Duration) -> Deadline {
        DEADLINE.with(|deadline| deadline.set(Some(Instant::now() + budget)));
        Deadline
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        DEADLINE.with(|deadline| deadline.set(None));
    }
}

/// A place among a workspace's [`PER_WORKSPACE`] budgeted queries, given back when dropped.
struct Place<'a> {
    workspace_id: &'a str,
}

impl<'a> Place<'a> {
    fn take(workspace_id: &'a str) -> Option<Place<'a>> {
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = running
            .get_or_insert_with(HashMap::new)
            .entry(workspace_id.to_owned())
            .or_default();
        if *count >= PER_WORKSPACE {
            return None;
        }
        *count += 1;
        Some(Place { workspace_id })
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(running) = running.as_mut()
            && let Some(count) = running.get_mut(self.workspace_id)
        {
            *count -= 1;
            if *count == 0 {
                running.remove(self.workspace_id);
            }
        }
    }
}

/// Runs `work`, a read of `workspace_id`'s data whose SQL calls [`WITHIN_BUDGET`], within
/// `budget`: past it the answer is [`StoreError::OverBudget`], and while the workspace already
/// runs [`PER_WORKSPACE`] such reads, [`StoreError::CostlyQueriesRunning`].
pub fn within<T, E>(
    conn: &mut DbConnection,
    workspace_id: &str,
    budget: Duration,
    work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError> + From<diesel::result::Error>,
{
    let Some(_place) = Place::take(workspace_id) else {
        return Err(StoreError::CostlyQueriesRunning.into());
    };
    match conn {
        DbConnection::Sqlite(_) => {
            let _deadline = Deadline::start(budget);
            let outcome = work(conn);
            if !within_deadline() {
                return Err(StoreError::OverBudget.into());
            }
            outcome
        }
        // SET LOCAL holds for the transaction, so the timeout ends with it.
        DbConnection::Postgres(_) => conn.transaction(|conn| {
            conn.batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                budget.as_millis()
            ))?;
            work(conn)
        }),
    }
}
