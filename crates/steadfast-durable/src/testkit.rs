//! The [`Store`] conformance kit (feature `test-kit`).
//!
//! Every store implementation runs these cases against fresh, empty stores. Each case is a
//! public async function taking the store by value, so a test file can run them one by one as
//! separate `#[tokio::test]`s; [`run_all`] runs them all in a row. The cases spawn tasks and
//! need a multi-threaded tokio runtime (`#[tokio::test(flavor = "multi_thread")]`).
//!
//! A failing case panics with a message naming what the store did wrong.
//!
//! To get one test per case without listing them, use [`store_kit_cases!`](crate::store_kit_cases)
//! with a macro of your own that receives the case names:
//!
//! ```ignore
//! macro_rules! sqlite_cases {
//!     ($($case:ident),* $(,)?) => {$(
//!         #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//!         async fn $case() {
//!             let db = TempDb::new(stringify!($case));
//!             steadfast_durable::testkit::$case(db.open()).await;
//!         }
//!     )*};
//! }
//! steadfast_durable::store_kit_cases!(sqlite_cases);
//! ```
//!
//! Beyond the trait's own documentation, the kit holds stores to these rules:
//! - `wake_at` is set only while a workflow is suspended; `owner` and `lease_expires_at` only
//!   while it runs. Claims take workflows oldest first.
//! - Fencing is by owner: a worker whose lease expired keeps it until another worker claims the
//!   workflow. Methods on a missing workflow fail with `NotFound` (reads return nothing).
//! - Journal `seq` and mailbox `seq` increase per workflow.
//! - A step's input and output come back as the very JSON text committed (spaces, key order and
//!   number spelling included), so a loaded record equals the committed one.
//! - A workflow that finishes, or is cancelled while pending or suspended, wakes its suspended
//!   parent. A running workflow with cancellation requested that suspends is cancelled.
//! - Cancelling a pending or suspended workflow stores an output (the engine's is
//!   `{"error": "cancelled"}`).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::json::Json;
use crate::store::{
    AttemptRecord, Created, ListFilter, NewWorkflow, Outcome, StepFailure, StepKind, StepRecord,
    Store, StoreError, WorkflowRecord, WorkflowStatus, now_millis,
};

mod leases;
mod records;
mod wakeups;

pub use leases::{
    claim_filters, claim_is_exclusive, concurrent_writers, dead_owner_takeover,
    expired_lease_recovery, lease_renewal_and_fencing, start_claimed,
};
pub use records::{
    attempts, create_is_idempotent, duplicate_step, get_and_list, journal_round_trip,
};
pub use wakeups::{
    cancellation, finish_wakes_parent, mailbox, message_during_run_wakes, send_wakes_suspended,
    timers,
};

/// Calls `$callback! { case, case, ... }` with the name of every kit case, so that a test file
/// can generate one test per case. See the [module docs](crate::testkit).
#[macro_export]
macro_rules! store_kit_cases {
    ($callback:ident) => {
        $callback! {
            create_is_idempotent,
            get_and_list,
            claim_is_exclusive,
            claim_filters,
            lease_renewal_and_fencing,
            expired_lease_recovery,
            dead_owner_takeover,
            start_claimed,
            journal_round_trip,
            duplicate_step,
            timers,
            mailbox,
            send_wakes_suspended,
            message_during_run_wakes,
            cancellation,
            finish_wakes_parent,
            concurrent_writers,
            attempts,
        }
    };
}

/// Run every case, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    macro_rules! run_each {
        ($($case:ident),* $(,)?) => {$(
            $case(make().await).await;
        )*};
    }
    store_kit_cases!(run_each);
}

const NAME: &str = "kit_workflow";
const LONG: Duration = Duration::from_secs(60);
/// How long a case waits for something that must happen eventually.
const PATIENCE: Duration = Duration::from_secs(5);

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn new_wf(id: &str, name: &str) -> NewWorkflow {
    NewWorkflow {
        id: id.to_owned(),
        name: name.to_owned(),
        input: json!({ "id": id }),
        parent_id: None,
    }
}

/// A step's output, as a store must return it: `output`'s text.
fn ok(output: Value) -> Result<Json, StepFailure> {
    Ok(Json::from(output))
}

fn step(position: &str, output: Value) -> StepRecord {
    StepRecord {
        position: position.to_owned(),
        step_id: format!("step#{position}"),
        kind: StepKind::Step,
        name: "kit_step".to_owned(),
        input_hash: format!("hash-{position}"),
        input: Some(Json::from(json!({ "position": position }))),
        output: ok(output),
        attempts: 1,
        started_at: 1_700_000_000_000,
        duration_us: 42,
        seq: 0,
    }
}

async fn create<S: Store>(store: &S, id: &str, name: &str) {
    let created = store.create_workflow(new_wf(id, name)).await;
    assert_eq!(created, Ok(Created::New), "create_workflow(`{id}`)");
}

async fn get<S: Store>(store: &S, id: &str) -> WorkflowRecord {
    match store.get_workflow(id).await {
        Ok(Some(r)) => r,
        other => panic!("get_workflow(`{id}`) returned {other:?}"),
    }
}

/// Claim with `NAME` and no dead owners; the ids claimed, sorted.
async fn claim_ids<S: Store>(store: &S, owner: &str, limit: usize, lease: Duration) -> Vec<String> {
    let claims = store
        .claim(owner, &names(&[NAME]), limit, lease, &[])
        .await
        .unwrap_or_else(|e| panic!("claim by `{owner}` failed: {e}"));
    for c in &claims {
        assert_eq!(c.record.status, WorkflowStatus::Running, "claimed record");
        assert_eq!(c.record.owner.as_deref(), Some(owner), "claimed record");
        assert!(c.record.lease_expires_at.is_some(), "claim sets a lease");
    }
    let mut ids: Vec<String> = claims.into_iter().map(|c| c.record.id).collect();
    ids.sort();
    ids
}

/// Create `id` and claim it for `owner` with a long lease.
async fn create_running<S: Store>(store: &S, id: &str, owner: &str) {
    create(store, id, NAME).await;
    let claimed = store
        .claim(owner, &names(&[NAME]), 1, LONG, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "claim of fresh `{id}`");
    assert_eq!(claimed[0].record.id, id, "claim of fresh `{id}`");
}

/// Poll `claim` until it returns `id` (panics after `PATIENCE`).
async fn claim_eventually<S: Store>(store: &S, owner: &str, id: &str) {
    let start = Instant::now();
    loop {
        let got = claim_ids(store, owner, 10, LONG).await;
        if got.iter().any(|g| g == id) {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "`{id}` never became claimable; last claim returned {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_lease_lost<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::LeaseLost(_)))
}

#[cfg(test)]
mod tests {
    use crate::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_store_passes_the_kit() {
        super::run_all(|| async { MemoryStore::new() }).await;
    }
}
