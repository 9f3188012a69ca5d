//! The in-memory store: plain maps behind one mutex, for fast unit tests.
//!
//! [`MemoryStore`] keeps everything in the process and loses it when dropped. It follows the
//! [`Store`] contract exactly as the durable stores do (it passes the same conformance kit), so
//! engine tests that run on it mean the same thing on SQLite or PostgreSQL.
//!
//! Rules it shares with the other stores, beyond what the trait says:
//! - `wake_at` is set only while a workflow is suspended; `owner` and `lease_expires_at` only
//!   while it runs.
//! - A terminal transition (finish, or cancellation of a pending or suspended workflow) wakes a
//!   suspended parent. A workflow with cancellation requested that suspends is cancelled.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::store::{
    AttemptRecord, Claim, Created, LeaseState, ListFilter, MailMessage, Millis, NewWorkflow,
    Outcome, StepRecord, Store, StoreError, StoreFuture, WorkflowRecord, WorkflowStatus,
    WorkflowSummary, now_millis,
};

/// An in-memory [`Store`], for tests. Cheap to create; shares nothing between instances.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still consistent per call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create `new` (pending, or running under `claimed = (owner, lease)`), or report the
    /// existing workflow with its id.
    fn create(
        &self,
        new: NewWorkflow,
        claimed: Option<(&str, Duration)>,
    ) -> (Created, Option<Claim>) {
        let mut state = self.lock();
        if let Some(existing) = state.workflows.get(&new.id) {
            return (Created::Existing(existing.record.clone()), None);
        }
        let now = now_millis();
        let record = WorkflowRecord {
            id: new.id.clone(),
            name: new.name,
            input: new.input,
            status: match claimed {
                Some(_) => WorkflowStatus::Running,
                None => WorkflowStatus::Pending,
            },
            output: None,
            owner: claimed.map(|(owner, _)| owner.to_owned()),
            lease_expires_at: claimed.map(|(_, lease)| lease_until(now, lease)),
            wake_at: None,
            cancel_requested: false,
            parent_id: new.parent_id,
            created_at: now,
            updated_at: now,
        };
        let claim = claimed.map(|_| Claim {
            record: record.clone(),
        });
        let created = state.order.len();
        state.order.push(new.id.clone());
        state.workflows.insert(
            new.id,
            Entry {
                record,
                created,
                journal: Vec::new(),
                positions: HashSet::new(),
                attempts: Vec::new(),
                mailbox: Vec::new(),
            },
        );
        (Created::New, claim)
    }
}

#[derive(Debug, Default)]
struct State {
    workflows: HashMap<String, Entry>,
    /// Ids in creation order.
    order: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    record: WorkflowRecord,
    /// Index in `State::order`, the tie-breaker for "newest first".
    created: usize,
    journal: Vec<StepRecord>,
    positions: HashSet<String>,
    attempts: Vec<AttemptRecord>,
    mailbox: Vec<(MailMessage, bool)>,
}

/// The output stored for a workflow cancelled while it was not running.
fn cancelled_output() -> Value {
    serde_json::json!({ "error": "cancelled" })
}

fn lease_until(now: Millis, lease: Duration) -> Millis {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

impl State {
    fn entry_mut(&mut self, id: &str) -> Result<&mut Entry, StoreError> {
        self.workflows
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))
    }

    /// The workflow, if `owner` holds its lease.
    fn leased(&mut self, id: &str, owner: &str) -> Result<&mut Entry, StoreError> {
        let entry = self.entry_mut(id)?;
        if entry.record.status != WorkflowStatus::Running
            || entry.record.owner.as_deref() != Some(owner)
        {
            return Err(StoreError::LeaseLost(id.to_owned()));
        }
        Ok(entry)
    }

    /// Wake a suspended workflow: it becomes pending.
    fn wake(&mut self, id: &str, now: Millis) {
        if let Some(entry) = self.workflows.get_mut(id)
            && entry.record.status == WorkflowStatus::Suspended
        {
            entry.record.status = WorkflowStatus::Pending;
            entry.record.wake_at = None;
            entry.record.updated_at = now;
        }
    }

    /// Make a workflow terminal and wake its parent.
    fn terminate(&mut self, id: &str, status: WorkflowStatus, output: Value, now: Millis) {
        let parent = match self.workflows.get_mut(id) {
            Some(entry) => {
                let r = &mut entry.record;
                r.status = status;
                r.output = Some(output);
                r.owner = None;
                r.lease_expires_at = None;
                r.wake_at = None;
                r.updated_at = now;
                r.parent_id.clone()
            }
            None => None,
        };
        if let Some(parent) = parent {
            self.wake(&parent, now);
        }
    }

    fn runnable(record: &WorkflowRecord, now: Millis, dead_owners: &[String]) -> bool {
        match record.status {
            WorkflowStatus::Pending => true,
            WorkflowStatus::Suspended => record.wake_at.is_some_and(|w| w <= now),
            WorkflowStatus::Running => {
                record.lease_expires_at.is_none_or(|l| l <= now)
                    || record
                        .owner
                        .as_ref()
                        .is_some_and(|o| dead_owners.contains(o))
            }
            _ => false,
        }
    }
}

impl Store for MemoryStore {
    fn create_workflow(&self, new: NewWorkflow) -> StoreFuture<'_, Created> {
        Box::pin(async move { Ok(self.create(new, None).0) })
    }

    fn start_claimed<'a>(
        &'a self,
        new: NewWorkflow,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, (Created, Option<Claim>)> {
        Box::pin(async move { Ok(self.create(new, Some((owner, lease)))) })
    }

    fn get_workflow<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<WorkflowRecord>> {
        Box::pin(async move { Ok(self.lock().workflows.get(id).map(|e| e.record.clone())) })
    }

    fn list_workflows(&self, filter: ListFilter) -> StoreFuture<'_, Vec<WorkflowSummary>> {
        Box::pin(async move {
            let state = self.lock();
            let mut entries: Vec<&Entry> = state
                .workflows
                .values()
                .filter(|e| filter.status.is_none_or(|s| e.record.status == s))
                .collect();
            entries.sort_by(|a, b| {
                (b.record.created_at, b.created).cmp(&(a.record.created_at, a.created))
            });
            Ok(entries
                .into_iter()
                .take(filter.limit.unwrap_or(usize::MAX))
                .map(|e| WorkflowSummary {
                    record: e.record.clone(),
                    steps: e.journal.len() as u64,
                })
                .collect())
        })
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        names: &'a [String],
        limit: usize,
        lease: Duration,
        dead_owners: &'a [String],
    ) -> StoreFuture<'a, Vec<Claim>> {
        Box::pin(async move {
            let mut state = self.lock();
            let now = now_millis();
            let state = &mut *state;
            let mut claims = Vec::new();
            for id in &state.order {
                if claims.len() >= limit {
                    break;
                }
                let Some(entry) = state.workflows.get_mut(id) else {
                    continue;
                };
                let r = &mut entry.record;
                if !names.contains(&r.name) || !State::runnable(r, now, dead_owners) {
                    continue;
                }
                r.status = WorkflowStatus::Running;
                r.owner = Some(owner.to_owned());
                r.lease_expires_at = Some(lease_until(now, lease));
                r.wake_at = None;
                r.updated_at = now;
                claims.push(Claim { record: r.clone() });
            }
            Ok(claims)
        })
    }

    fn running_owners(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let state = self.lock();
            let mut owners: Vec<String> = state
                .workflows
                .values()
                .filter(|e| e.record.status == WorkflowStatus::Running)
                .filter_map(|e| e.record.owner.clone())
                .collect();
            owners.sort();
            owners.dedup();
            Ok(owners)
        })
    }

    fn renew<'a>(
        &'a self,
        owner: &'a str,
        ids: &'a [String],
        lease: Duration,
    ) -> StoreFuture<'a, Vec<LeaseState>> {
        Box::pin(async move {
            let mut state = self.lock();
            let now = now_millis();
            Ok(ids
                .iter()
                .map(|id| match state.leased(id, owner) {
                    Ok(entry) => {
                        entry.record.lease_expires_at = Some(lease_until(now, lease));
                        LeaseState {
                            id: id.clone(),
                            held: true,
                            cancel_requested: entry.record.cancel_requested,
                        }
                    }
                    Err(_) => LeaseState {
                        id: id.clone(),
                        held: false,
                        cancel_requested: state
                            .workflows
                            .get(id)
                            .is_some_and(|e| e.record.cancel_requested),
                    },
                })
                .collect())
        })
    }

    fn load_journal<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<StepRecord>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .workflows
                .get(id)
                .map(|e| e.journal.clone())
                .unwrap_or_default())
        })
    }

    fn commit_step<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        step: StepRecord,
        consume: Option<i64>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            let entry = state.leased(id, owner)?;
            if entry.positions.contains(&step.position) {
                return Err(StoreError::DuplicateStep {
                    workflow_id: id.to_owned(),
                    position: step.position.clone(),
                });
            }
            if let Some(seq) = consume {
                match entry
                    .mailbox
                    .iter_mut()
                    .find(|(m, consumed)| m.seq == seq && !consumed)
                {
                    Some((_, consumed)) => *consumed = true,
                    None => return Err(unknown_message(id, seq)),
                }
            }
            let mut step = step;
            step.seq = entry.journal.last().map_or(0, |s| s.seq) + 1;
            entry.positions.insert(step.position.clone());
            entry.journal.push(step);
            Ok(())
        })
    }

    fn record_attempt<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        attempt: AttemptRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            state.leased(id, owner)?.attempts.push(attempt);
            Ok(())
        })
    }

    fn load_attempts<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<AttemptRecord>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .workflows
                .get(id)
                .map(|e| e.attempts.clone())
                .unwrap_or_default())
        })
    }

    fn finish<'a>(&'a self, id: &'a str, owner: &'a str, outcome: Outcome) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            let now = now_millis();
            let entry = state.leased(id, owner)?;
            match outcome {
                Outcome::Finished { status, output } => {
                    if !status.is_terminal() {
                        return Err(not_terminal(id, status));
                    }
                    state.terminate(id, status, output, now);
                }
                Outcome::Suspended { .. } if entry.record.cancel_requested => {
                    state.terminate(id, WorkflowStatus::Cancelled, cancelled_output(), now);
                }
                Outcome::Suspended {
                    wake_at,
                    waiting_on,
                } => {
                    let r = &mut entry.record;
                    r.owner = None;
                    r.lease_expires_at = None;
                    r.updated_at = now;
                    if entry
                        .mailbox
                        .iter()
                        .any(|(m, consumed)| !consumed && waiting_on.contains(&m.topic))
                    {
                        r.status = WorkflowStatus::Pending;
                        r.wake_at = None;
                    } else {
                        r.status = WorkflowStatus::Suspended;
                        r.wake_at = wake_at;
                    }
                }
            }
            Ok(())
        })
    }

    fn send<'a>(&'a self, id: &'a str, topic: &'a str, payload: Value) -> StoreFuture<'a, i64> {
        Box::pin(async move {
            let mut state = self.lock();
            let now = now_millis();
            let entry = state.entry_mut(id)?;
            let seq = entry.mailbox.last().map_or(0, |(m, _)| m.seq) + 1;
            entry.mailbox.push((
                MailMessage {
                    seq,
                    topic: topic.to_owned(),
                    payload,
                },
                false,
            ));
            state.wake(id, now);
            Ok(seq)
        })
    }

    fn next_message<'a>(
        &'a self,
        id: &'a str,
        topic: &'a str,
    ) -> StoreFuture<'a, Option<MailMessage>> {
        Box::pin(async move {
            let state = self.lock();
            Ok(state.workflows.get(id).and_then(|e| {
                e.mailbox
                    .iter()
                    .find(|(m, consumed)| !consumed && m.topic == topic)
                    .map(|(m, _)| m.clone())
            }))
        })
    }

    fn request_cancel<'a>(&'a self, id: &'a str) -> StoreFuture<'a, WorkflowStatus> {
        Box::pin(async move {
            let mut state = self.lock();
            let now = now_millis();
            let entry = state.entry_mut(id)?;
            let status = entry.record.status;
            if status.is_terminal() {
                return Ok(status);
            }
            entry.record.cancel_requested = true;
            entry.record.updated_at = now;
            if status == WorkflowStatus::Running {
                return Ok(status);
            }
            state.terminate(id, WorkflowStatus::Cancelled, cancelled_output(), now);
            Ok(WorkflowStatus::Cancelled)
        })
    }

    fn next_wake<'a>(&'a self, names: &'a [String]) -> StoreFuture<'a, Option<Millis>> {
        Box::pin(async move {
            let state = self.lock();
            Ok(state
                .workflows
                .values()
                .filter(|e| {
                    e.record.status == WorkflowStatus::Suspended && names.contains(&e.record.name)
                })
                .filter_map(|e| e.record.wake_at)
                .min())
        })
    }
}

fn unknown_message(id: &str, seq: i64) -> StoreError {
    StoreError::Backend(format!(
        "message {seq} of workflow `{id}` does not exist or was consumed already"
    ))
}

fn not_terminal(id: &str, status: WorkflowStatus) -> StoreError {
    StoreError::Backend(format!(
        "cannot finish workflow `{id}` with non-terminal status `{status}`"
    ))
}
