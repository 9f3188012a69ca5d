//! The engine: a store plus the client operations (start, wait, send, cancel, inspect).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::ctx::error_text;
use crate::ends::{End, LocalEnds};
use crate::error::WorkflowError;
use crate::store::{
    AttemptRecord, Created, ListFilter, NewWorkflow, StepRecord, Store, WorkflowRecord,
    WorkflowStatus, WorkflowSummary,
};
use crate::worker::{self, WorkerBuilder, WorkerShared};
use crate::workflow::Workflow;

/// A durable engine over a [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    /// The workers started from this engine (or its clones) in this process.
    local: Arc<Mutex<Vec<Weak<WorkerShared>>>>,
    /// The ends of their runs that handles wait for.
    ends: LocalEnds,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// A workflow's whole history: its record, its journal and its failed attempts.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// The workflow.
    pub workflow: WorkflowRecord,
    /// The journal, in commit order.
    pub steps: Vec<StepRecord>,
    /// Failed attempts (retries).
    pub attempts: Vec<AttemptRecord>,
}

impl Engine {
    /// An engine over `store`.
    pub fn new(store: impl Store) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// An engine over a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Engine {
            store,
            wake: Arc::new(Notify::new()),
            changed: Arc::new(Notify::new()),
            local: Arc::default(),
            ends: LocalEnds::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub(crate) fn notify_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Whether a handle of this process waits for workflow `id` to end.
    pub(crate) fn awaited(&self, id: &str) -> bool {
        self.ends.awaited(id)
    }

    /// A local run of workflow `id` ended for good, as the store has recorded: the handles of
    /// this process that wait for it get `end` without reading the store. Call before
    /// [`Engine::notify_changed`].
    pub(crate) fn ended(&self, id: &str, end: End) {
        self.ends.ended(id, end);
    }

    /// Make `worker` one of this engine's local workers.
    pub(crate) fn add_local(&self, worker: &Arc<WorkerShared>) {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.retain(|w| w.strong_count() > 0);
        local.push(Arc::downgrade(worker));
    }

    /// Whether a worker of this engine in this process is running workflow `id`.
    fn runs_locally(&self, id: &str) -> bool {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.iter().filter_map(Weak::upgrade).any(|w| w.runs(id))
    }

    /// A slot, reserved for the caller, of a local worker that runs workflows named `name`.
    fn local_worker(&self, name: &str) -> Option<worker::Slot> {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local
            .iter()
            .filter_map(Weak::upgrade)
            .find_map(|w| (w.serves(name) && !w.stopped()).then(|| worker::Slot::reserve(w))?)
    }

    /// Build a worker that runs workflows of this engine.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(self.clone())
    }

    /// Start workflow `W` as `id`. Idempotent: if `id` exists already (running or finished), it
    /// is not started again, and the handle refers to it.
    ///
    /// When a worker of this engine runs `W` and has a slot free, the workflow is created
    /// already leased to that worker ([`Store::start_claimed`]) and starts on it at once;
    /// otherwise it is created pending, and whichever worker claims it first runs it.
    pub async fn start<W: Workflow>(
        &self,
        id: &str,
        input: W::Input,
    ) -> Result<WorkflowHandle<W>, WorkflowError> {
        let new = NewWorkflow {
            id: id.to_string(),
            name: W::NAME.to_string(),
            input: serde_json::to_value(input)?,
            parent_id: None,
        };
        // With a local worker for it, the workflow is created already claimed by that worker
        // and handed to it: no second write, no wait for its next claim.
        // The slot goes back if nothing is claimed, on an error, or if this future is dropped.
        let (created, claim) = match self.local_worker(W::NAME) {
            Some(mut slot) => {
                slot.claiming(id);
                let w = slot.worker().clone();
                let started = self.store.start_claimed(new, w.id(), w.lease()).await;
                slot.settled();
                let (created, claim) = started?;
                (created, claim.map(|c| (slot, c)))
            }
            None => (self.store.create_workflow(new).await?, None),
        };
        if let Created::Existing(rec) = &created
            && rec.name != W::NAME
        {
            return Err(WorkflowError::Config(format!(
                "workflow id `{id}` is taken by a `{}` workflow, not `{}`",
                rec.name,
                W::NAME
            )));
        }
        match claim {
            // Created by this call and leased to this worker since: no step can be journaled
            // yet, so the run does not read the journal.
            Some((slot, claim)) => slot.run(claim, created == Created::New),
            None => self.wake.notify_one(),
        }
        Ok(self.handle(id))
    }

    /// A handle to workflow `id` (it need not exist yet).
    pub fn handle<W: Workflow>(&self, id: &str) -> WorkflowHandle<W> {
        WorkflowHandle {
            engine: self.clone(),
            id: id.to_string(),
            _w: PhantomData,
        }
    }

    /// Put a message on `topic` in workflow `id`'s mailbox, waking it if it waits.
    pub async fn send(
        &self,
        id: &str,
        topic: &str,
        payload: impl Serialize,
    ) -> Result<(), WorkflowError> {
        if self.store.get_workflow(id).await?.is_none() {
            return Err(WorkflowError::Config(format!("no workflow `{id}`")));
        }
        self.store
            .send(id, topic, serde_json::to_value(payload)?)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Cancel workflow `id`: at once if it is not running, else at its next step.
    pub async fn cancel(&self, id: &str) -> Result<WorkflowStatus, WorkflowError> {
        let s = self.store.request_cancel(id).await?;
        self.wake.notify_one();
        self.changed.notify_waiters();
        Ok(s)
    }

    /// Workflows, newest first.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<WorkflowSummary>, WorkflowError> {
        Ok(self.store.list_workflows(filter).await?)
    }

    /// The history of workflow `id`.
    pub async fn history(&self, id: &str) -> Result<History, WorkflowError> {
        let workflow = self
            .store
            .get_workflow(id)
            .await?
            .ok_or_else(|| WorkflowError::Config(format!("no workflow `{id}`")))?;
        Ok(History {
            workflow,
            steps: self.store.load_journal(id).await?,
            attempts: self.store.load_attempts(id).await?,
        })
    }

    /// Wait for workflow `id` to end: its status and output.
    async fn wait_end(&self, id: &str) -> Result<(WorkflowStatus, Option<Value>), WorkflowError> {
        let waiting = self.ends.wait(id);
        loop {
            let changed = self.changed.notified();
            // A run in a worker of this process hands its end over, and notifies when it ends
            // (or suspends); until then the store could only say that it runs.
            if let Some((status, output)) = waiting.take() {
                return Ok((status, Some(output)));
            }
            if !self.runs_locally(id) {
                // A local run hands its end over before it leaves its worker's list.
                if let Some((status, output)) = waiting.take() {
                    return Ok((status, Some(output)));
                }
                let rec = self
                    .store
                    .get_workflow(id)
                    .await?
                    .ok_or_else(|| WorkflowError::Config(format!("no workflow `{id}`")))?;
                if rec.status.is_terminal() {
                    return Ok((rec.status, rec.output));
                }
            }
            // Woken at once by a local worker; polled for workers in other processes.
            let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
        }
    }
}

/// A typed handle to one workflow.
pub struct WorkflowHandle<W> {
    engine: Engine,
    id: String,
    _w: PhantomData<fn() -> W>,
}

impl<W> Clone for WorkflowHandle<W> {
    fn clone(&self) -> Self {
        WorkflowHandle {
            engine: self.engine.clone(),
            id: self.id.clone(),
            _w: PhantomData,
        }
    }
}

impl<W: Workflow> WorkflowHandle<W> {
    /// The workflow id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current status, or `None` if no such workflow exists.
    pub async fn status(&self) -> Result<Option<WorkflowStatus>, WorkflowError> {
        Ok(self
            .engine
            .store
            .get_workflow(&self.id)
            .await?
            .map(|r| r.status))
    }

    /// Wait for the workflow to finish and return its output. Some worker must be running it:
    /// a worker of this process hands the output over when the run ends (the store has it by
    /// then); a workflow that runs elsewhere is read from the store, which is polled.
    pub async fn result(&self) -> Result<W::Output, WorkflowError> {
        let (status, output) = self.engine.wait_end(&self.id).await?;
        match status {
            WorkflowStatus::Completed => Ok(serde_json::from_value(
                output.unwrap_or(serde_json::Value::Null),
            )?),
            WorkflowStatus::Cancelled => Err(WorkflowError::Cancelled(self.id.clone())),
            _ => Err(WorkflowError::Remote {
                id: self.id.clone(),
                message: error_text(output.as_ref()),
            }),
        }
    }
}
