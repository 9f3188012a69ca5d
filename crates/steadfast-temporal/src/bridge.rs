//! The dispatcher workflow: one registered Temporal workflow type that runs any Steadfast
//! workflow by name.
//!
//! A Steadfast workflow's future is `Send` and talks to a [`WorkflowCtx`]; Temporal's workflow
//! context is `!Send` and lives on the workflow's task. The two meet in [`CallQueue`]: each
//! effect the workflow asks for (a step, a timer, a message) is queued in program order, and the
//! dispatcher's poll loop turns queued calls into Temporal commands and hands their results back,
//! all within the workflow task's own polls, so the whole run stays deterministic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use futures::future::{BoxFuture, LocalBoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_durable::{RemoteCall, RemoteEngine, RemoteOp, WorkflowCtx, WorkflowError};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, ContinueAsNewOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

use crate::steps::{self, Outcome};
use crate::worker::WorkerShared;

/// The pinned type name of the dispatcher workflow.
pub const WORKFLOW_TYPE: &str = "steadfast";
/// The pinned name of the signal that fills a workflow's mailbox.
pub const SEND_SIGNAL: &str = "steadfast.send";
/// The pinned name of the update that delivers a message to a workflow waiting for it.
pub const DELIVER_UPDATE: &str = "steadfast.deliver";

/// The input of the dispatcher: which Steadfast workflow, its input, and what a previous run
/// (before a continue-as-new) already answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DispatchInput {
    /// The registered name of the Steadfast workflow.
    pub workflow: String,
    /// Its input.
    pub input: Value,
    /// The answers of the runs before a continue-as-new, by step id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<Carried>,
    /// Messages received but not yet consumed when the previous run continued as new.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub inbox: HashMap<String, VecDeque<Value>>,
}

/// One answered effect, carried into the next run by a continue-as-new.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Carried {
    /// The step id.
    pub step_id: String,
    /// A step's input hash, checked when the step is answered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The answer, or the error message of a failed step.
    pub value: Result<Value, String>,
}

/// A message for a workflow's mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mail {
    /// The topic `recv` waits on.
    pub topic: String,
    /// The message.
    pub payload: Value,
}

/// The one Temporal workflow type: it runs the Steadfast workflow its input names.
#[workflow]
#[derive(Default)]
pub struct Dispatcher {
    shared: Option<Arc<WorkerShared>>,
    inbox: HashMap<String, VecDeque<Value>>,
    waiting: HashMap<String, usize>,
}

impl Dispatcher {
    pub(crate) fn new(shared: Arc<WorkerShared>) -> Self {
        Dispatcher {
            shared: Some(shared),
            inbox: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// Take the next message on `topic`.
    pub(crate) fn take(&mut self, topic: &str) -> Option<Value> {
        self.inbox.get_mut(topic).and_then(VecDeque::pop_front)
    }

    /// Whether a message waits on `topic`.
    pub(crate) fn has(&self, topic: &str) -> bool {
        self.inbox.get(topic).is_some_and(|q| !q.is_empty())
    }

    /// Count a receiver waiting on `topic` (`by` = 1) or one that is done (`by` = -1).
    pub(crate) fn wait_on(&mut self, topic: &str, by: isize) {
        let n = self.waiting.entry(topic.to_string()).or_default();
        *n = n.saturating_add_signed(by);
        if *n == 0 {
            self.waiting.remove(topic);
        }
    }
}

#[workflow_methods]
impl Dispatcher {
    /// Run the Steadfast workflow named in `input`.
    #[run(name = WORKFLOW_TYPE)]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: DispatchInput,
    ) -> WorkflowResult<Value> {
        drive(ctx, input).await
    }

    /// Put a message in the mailbox.
    #[signal(name = SEND_SIGNAL)]
    pub fn send(&mut self, _ctx: &mut SyncWorkflowContext<Self>, mail: Mail) {
        self.inbox
            .entry(mail.topic)
            .or_default()
            .push_back(mail.payload);
    }

    /// Accept a delivery only while the workflow waits on its topic: an approval sent when
    /// nothing asks for one is refused, and a refused update leaves no trace in the history.
    #[update_validator(deliver)]
    fn validate_deliver(
        &self,
        _ctx: &WorkflowContextView,
        mail: &Mail,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if !self.waiting.contains_key(&mail.topic) {
            return Err(format!(
                "the workflow is not waiting for a message on `{}`",
                mail.topic
            )
            .into());
        }
        if self.has(&mail.topic) {
            return Err(format!(
                "a message on `{}` is already waiting to be read",
                mail.topic
            )
            .into());
        }
        Ok(())
    }

    /// Deliver a message to a workflow that waits for it (see the validator).
    #[update(name = DELIVER_UPDATE)]
    pub fn deliver(&mut self, _ctx: &mut SyncWorkflowContext<Self>, mail: Mail) -> bool {
        self.inbox
            .entry(mail.topic)
            .or_default()
            .push_back(mail.payload);
        true
    }
}

/// How a run of the dispatcher ends.
enum Stop {
    Done(Result<Value, WorkflowError>),
    TaskFailure(String),
    ContinueAsNew,
}

async fn drive(ctx: &WorkflowContext<Dispatcher>, input: DispatchInput) -> WorkflowResult<Value> {
    let Some(shared) = ctx.state(|s| s.shared.clone()) else {
        return fail_task(ctx, "the dispatcher was created without its worker".into()).await;
    };
    if !input.inbox.is_empty() {
        let carried = input.inbox.clone();
        ctx.state_mut(move |s| {
            for (topic, mut q) in carried {
                let mine = s.inbox.entry(topic).or_default();
                q.extend(mine.drain(..));
                *mine = q;
            }
        });
    }
    let queue = CallQueue::default();
    let wf_ctx = WorkflowCtx::remote(
        ctx.workflow_id(),
        &input.workflow,
        shared.deps.clone(),
        Arc::new(queue.clone()),
    );
    let Some(mut fut) = shared
        .workflows
        .run(&input.workflow, wf_ctx, input.input.clone())
    else {
        let names = shared.workflows.names().join(", ");
        return fail_task(
            ctx,
            format!(
                "no Steadfast workflow named `{}` is registered on this worker (it has: {names})",
                input.workflow
            ),
        )
        .await;
    };
    let mut carried: HashMap<String, Carried> = input
        .carried
        .iter()
        .map(|c| (c.step_id.clone(), c.clone()))
        .collect();
    let mut journal: Vec<Carried> = input.carried.clone();
    let mut running: Vec<(u64, String, Option<String>, LocalBoxFuture<'_, Outcome>)> = Vec::new();
    let stop = std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                return Poll::Ready(Stop::Done(r));
            }
            let calls = queue.take();
            let mut progressed = !calls.is_empty();
            if !calls.is_empty()
                && running.is_empty()
                && carried.is_empty()
                && (ctx.continue_as_new_suggested()
                    || ctx.history_length() as usize >= shared.history_limit)
            {
                return Poll::Ready(Stop::ContinueAsNew);
            }
            for (id, call) in calls {
                let hash = match &call.op {
                    RemoteOp::Step(s) => Some(s.input_hash.clone()),
                    _ => None,
                };
                if let Some(c) = carried.remove(&call.step_id) {
                    if c.hash != hash {
                        return Poll::Ready(Stop::TaskFailure(steps::non_determinism(
                            ctx.workflow_id(),
                            &call,
                            c.hash.as_deref().unwrap_or("none"),
                        )));
                    }
                    queue.complete(
                        id,
                        c.value.map_err(|m| WorkflowError::StepFailed {
                            step: c.step_id,
                            message: m,
                            attempts: 1,
                        }),
                    );
                    continue;
                }
                let step_id = call.step_id.clone();
                running.push((id, step_id, hash, steps::perform(ctx, shared.clone(), call)));
            }
            let mut i = 0;
            while i < running.len() {
                let Poll::Ready(outcome) = running[i].3.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let (id, step_id, hash, _) = running.remove(i);
                progressed = true;
                match outcome {
                    Outcome::Value(v) => {
                        journal.push(Carried {
                            step_id,
                            hash,
                            value: Ok(v.clone()),
                        });
                        queue.complete(id, Ok(v));
                    }
                    Outcome::Error(e) => {
                        if let WorkflowError::StepFailed { message, .. } = &e {
                            journal.push(Carried {
                                step_id,
                                hash,
                                value: Err(message.clone()),
                            });
                        }
                        queue.complete(id, Err(e));
                    }
                    Outcome::TaskFailure(m) => return Poll::Ready(Stop::TaskFailure(m)),
                }
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;
    drop(running);
    drop(fut);
    match stop {
        Stop::Done(Ok(v)) => {
            let size = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
            if size > shared.payload_limit {
                return Err(ApplicationFailure::non_retryable(format!(
                    "the output of workflow `{}` is {size} bytes, over the payload limit of {} bytes",
                    input.workflow, shared.payload_limit
                ))
                .into());
            }
            Ok(v)
        }
        Stop::Done(Err(e @ WorkflowError::NonDeterminism { .. })) => {
            fail_task(ctx, e.to_string()).await
        }
        Stop::Done(Err(WorkflowError::Cancelled(_))) => Err(WorkflowTermination::cancelled()),
        Stop::Done(Err(e)) => Err(ApplicationFailure::builder(e.to_string())
            .type_name("steadfast.WorkflowFailed".to_string())
            .non_retryable(true)
            .build()
            .into()),
        Stop::TaskFailure(m) => fail_task(ctx, m).await,
        Stop::ContinueAsNew => {
            let inbox = ctx.state(|s| s.inbox.clone());
            tracing::info!(
                target: "steadfast::temporal",
                workflow_id = ctx.workflow_id(),
                carried = journal.len(),
                history_events = ctx.history_length(),
                "continuing as new"
            );
            let next = DispatchInput {
                workflow: input.workflow,
                input: input.input,
                carried: journal,
                inbox,
            };
            match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
                Err(t) => Err(t),
                Ok(never) => match never {},
            }
        }
    }
}

/// Fail the workflow task with `message`, logged; the workflow stays open, so a worker with the
/// right code can finish it.
async fn fail_task(ctx: &WorkflowContext<Dispatcher>, message: String) -> WorkflowResult<Value> {
    tracing::error!(
        target: "steadfast::temporal",
        workflow_id = ctx.workflow_id(),
        "workflow task failed: {message}"
    );
    ctx.force_task_fail(message);
    std::future::pending().await
}

/// The calls a workflow has made, and their answers: the meeting point of the workflow's `Send`
/// future and the dispatcher's `!Send` context.
#[derive(Clone, Default)]
pub(crate) struct CallQueue {
    inner: Arc<Mutex<QueueState>>,
}

#[derive(Default)]
struct QueueState {
    next: u64,
    calls: Vec<(u64, RemoteCall)>,
    done: HashMap<u64, Result<Value, WorkflowError>>,
    wakers: HashMap<u64, Waker>,
}

impl CallQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calls queued since the last take, in the order they were made.
    fn take(&self) -> Vec<(u64, RemoteCall)> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Answer call `id`.
    fn complete(&self, id: u64, result: Result<Value, WorkflowError>) {
        let waker = {
            let mut st = self.lock();
            st.done.insert(id, result);
            st.wakers.remove(&id)
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl RemoteEngine for CallQueue {
    fn call(&self, call: RemoteCall) -> BoxFuture<'static, Result<Value, WorkflowError>> {
        let queue = self.clone();
        let mut call = Some(call);
        let mut id = None;
        Box::pin(std::future::poll_fn(move |cx| {
            let mut st = queue.lock();
            // Queued on the first poll: calls reach Temporal in the order the workflow awaits
            // them, which its code fixes.
            if let Some(c) = call.take() {
                let n = st.next;
                st.next += 1;
                st.calls.push((n, c));
                id = Some(n);
            }
            let Some(n) = id else {
                return Poll::Ready(Err(WorkflowError::Config(
                    "call polled after its end".into(),
                )));
            };
            if let Some(r) = st.done.remove(&n) {
                return Poll::Ready(r);
            }
            st.wakers.insert(n, cx.waker().clone());
            Poll::Pending
        }))
    }
}
