//! Each effect of a Steadfast workflow as Temporal commands: steps as activities, `sleep` as a
//! timer, `recv` as the mailbox the `steadfast.send` signal fills, child workflows as child
//! workflows.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures::future::LocalBoxFuture;
use serde_json::{Value, json};
use steadfast_core::StepPolicy;
use steadfast_durable::{RemoteCall, RemoteOp, RemoteStep, WorkflowError};
use temporalio_common::RetryPolicy;
use temporalio_common::error::IncomingError;
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ChildWorkflowOptions, TimeoutType, TimerResult,
    WorkflowContext,
};

use crate::activities::{FATAL, StepActivity, StepTask};
use crate::bridge::{DispatchInput, Dispatcher};
use crate::worker::WorkerShared;

/// How one effect ended.
pub(crate) enum Outcome {
    /// Its answer.
    Value(Value),
    /// An error for the workflow to see (a failed step, say).
    Error(WorkflowError),
    /// The workflow task must fail with this message: the code does not match the history, or
    /// the worker cannot run it.
    TaskFailure(String),
}

/// How often a step is scheduled again because the worker that held it went away.
const MAX_REISSUES: u32 = 20;

/// Start `call` on Temporal.
pub(crate) fn perform<'a>(
    ctx: &'a WorkflowContext<Dispatcher>,
    shared: Arc<WorkerShared>,
    call: RemoteCall,
) -> LocalBoxFuture<'a, Outcome> {
    let step_id = call.step_id.clone();
    match call.op {
        RemoteOp::Step(step) => Box::pin(run_step(ctx, shared, step_id, step)),
        RemoteOp::Sleep(d) => Box::pin(async move {
            match ctx.timer(d).await {
                TimerResult::Fired => Outcome::Value(Value::Null),
                TimerResult::Cancelled => {
                    Outcome::Error(WorkflowError::Cancelled(ctx.workflow_id().to_string()))
                }
            }
        }),
        RemoteOp::Now => {
            let ms = ctx
                .workflow_time()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            Box::pin(std::future::ready(Outcome::Value(json!(ms))))
        }
        RemoteOp::Random => {
            let r: u64 = ctx.random();
            Box::pin(std::future::ready(Outcome::Value(json!(r))))
        }
        RemoteOp::Recv { topic, timeout } => Box::pin(recv(ctx, topic, timeout)),
        RemoteOp::Child {
            workflow,
            id,
            input,
        } => Box::pin(child(ctx, workflow, id, input)),
    }
}

/// A step as an activity on this process's activity queue, where its body is.
async fn run_step(
    ctx: &WorkflowContext<Dispatcher>,
    shared: Arc<WorkerShared>,
    step_id: String,
    step: RemoteStep,
) -> Outcome {
    if !shared.step_names.contains(&step.name) {
        return Outcome::TaskFailure(format!(
            "step `{}` is not registered on this Temporal worker: register its agent with \
             `.agent(&agent)` or the step with `.step(\"{}\")` on the worker builder",
            step.name, step.name
        ));
    }
    let key = format!("{}/{step_id}", ctx.run_id());
    let task = StepTask {
        key: key.clone(),
        step_id: step_id.clone(),
        input: step.input.clone(),
    };
    let size = serde_json::to_vec(&task).map_or(0, |b| b.len());
    if size > shared.payload_limit {
        return Outcome::Error(WorkflowError::StepFailed {
            step: step_id,
            message: format!(
                "the input of step `{}` is {size} bytes, over the payload limit of {} bytes",
                step.name, shared.payload_limit
            ),
            attempts: 0,
        });
    }
    let RemoteStep {
        name,
        input_hash,
        policy,
        body,
        ..
    } = step;
    shared
        .bodies
        .insert(key.clone(), name.clone(), input_hash.clone(), body);
    let mut reissue = 0;
    loop {
        let opts = activity_options(&shared, &policy, &step_id, reissue);
        let result = ctx
            .execute_activity(StepActivity::named(&name), task.clone(), opts)
            .await;
        match result {
            Ok(done) => {
                shared.bodies.remove(&key);
                if done.hash != input_hash {
                    return Outcome::TaskFailure(
                        WorkflowError::NonDeterminism {
                            workflow_id: ctx.workflow_id().to_string(),
                            position: step_id.clone(),
                            expected: format!("`{name}` (id {step_id}, input {})", done.hash),
                            actual: format!("`{name}` (id {step_id}, input {input_hash})"),
                        }
                        .to_string(),
                    );
                }
                return Outcome::Value(done.output);
            }
            Err(e) if worker_lost(&e) && reissue < MAX_REISSUES => {
                // The process that held the body is gone; this one holds it now.
                reissue += 1;
                tracing::warn!(
                    target: "steadfast::temporal",
                    workflow_id = ctx.workflow_id(),
                    step = %step_id,
                    reissue,
                    "step was not picked up by its worker; scheduling it on this one"
                );
            }
            Err(ActivityExecutionError::Cancelled(_)) => {
                shared.bodies.remove(&key);
                return Outcome::Error(WorkflowError::Cancelled(ctx.workflow_id().to_string()));
            }
            Err(e) => {
                shared.bodies.remove(&key);
                let (message, fatal) = failure_message(&e);
                let attempts = if fatal {
                    1
                } else {
                    policy.retry.max_attempts.max(1)
                };
                return Outcome::Error(WorkflowError::StepFailed {
                    step: step_id,
                    message,
                    attempts,
                });
            }
        }
    }
}

/// A step policy as activity options.
fn activity_options(
    shared: &WorkerShared,
    policy: &StepPolicy,
    step_id: &str,
    reissue: u32,
) -> ActivityOptions {
    let r = &policy.retry;
    let retry = RetryPolicy::builder()
        .initial_interval(r.initial_interval)
        .backoff_coefficient(r.backoff_coefficient.max(1.0))
        .maximum_interval(r.max_interval.max(r.initial_interval))
        .maximum_attempts(r.max_attempts.max(1))
        .non_retryable_error_types([FATAL])
        .build();
    let activity_id = if reissue == 0 {
        step_id.to_string()
    } else {
        format!("{step_id}~{reissue}")
    };
    ActivityOptions::with_start_to_close_timeout(
        policy.timeout.unwrap_or(shared.config.default_step_timeout),
    )
    .activity_id(activity_id)
    .task_queue(shared.activity_queue.clone())
    .schedule_to_start_timeout(shared.config.schedule_to_start_timeout)
    .heartbeat_timeout(shared.config.heartbeat_timeout)
    .retry_policy(retry)
    .build()
}

/// Whether the step timed out waiting for a worker: the process that scheduled it (and holds its
/// body) is gone.
fn worker_lost(e: &ActivityExecutionError) -> bool {
    let mut cause = e.cause();
    while let Some(c) = cause {
        match c {
            IncomingError::Timeout(t) => return t.timeout_type() == TimeoutType::ScheduleToStart,
            IncomingError::Activity(a) => cause = a.cause(),
            _ => return false,
        }
    }
    false
}

/// The innermost message of a failed step, and whether it was a non-retryable failure.
fn failure_message(e: &ActivityExecutionError) -> (String, bool) {
    let Some(mut f) = e.failure() else {
        return (e.to_string(), true);
    };
    while let Some(c) = f.cause.as_deref() {
        f = c;
    }
    let fatal = matches!(
        &f.failure_info,
        Some(temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo::ApplicationFailureInfo(a))
            if a.non_retryable || a.r#type == FATAL
    );
    (f.message.clone(), fatal)
}

/// `recv`: wait for the mailbox, or for the timeout's timer.
async fn recv(
    ctx: &WorkflowContext<Dispatcher>,
    topic: String,
    timeout: Option<Duration>,
) -> Outcome {
    ctx.state_mut(|s| s.wait_on(&topic, 1));
    let waited: Result<bool, ()> = {
        let t = topic.clone();
        let has = move |s: &Dispatcher| s.has(&t);
        match timeout {
            None => ctx.wait_condition(has).await.map(|()| true).map_err(|_| ()),
            Some(d) => {
                let wait = ctx.wait_condition(has);
                let timer = ctx.timer(d);
                futures::pin_mut!(wait, timer);
                // Biased to the message: one that came with the timer still counts.
                match futures::future::select(wait, timer).await {
                    futures::future::Either::Left((r, _)) => r.map(|()| true).map_err(|_| ()),
                    futures::future::Either::Right((TimerResult::Fired, _)) => Ok(false),
                    futures::future::Either::Right((TimerResult::Cancelled, _)) => Err(()),
                }
            }
        }
    };
    let Ok(arrived) = waited else {
        ctx.state_mut(|s| s.wait_on(&topic, -1));
        return Outcome::Error(WorkflowError::Cancelled(ctx.workflow_id().to_string()));
    };
    let message = ctx.state_mut(|s| {
        s.wait_on(&topic, -1);
        if arrived { s.take(&topic) } else { None }
    });
    Outcome::Value(match message {
        Some(v) => Value::Array(vec![v]),
        None => Value::Null,
    })
}

/// A child workflow as a Temporal child workflow of the same dispatcher type.
async fn child(
    ctx: &WorkflowContext<Dispatcher>,
    workflow: String,
    id: String,
    input: Value,
) -> Outcome {
    let input = DispatchInput {
        workflow,
        input,
        ..Default::default()
    };
    let started = ctx
        .start_child_workflow(
            Dispatcher::run,
            input,
            ChildWorkflowOptions::workflow_id(id.clone()),
        )
        .await;
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Error(WorkflowError::Remote {
                id,
                message: e.to_string(),
            });
        }
    };
    match started.result().await {
        Ok(v) => Outcome::Value(v),
        Err(e) => {
            let message = e
                .failure()
                .map(|mut f| {
                    while let Some(c) = f.cause.as_deref() {
                        f = c;
                    }
                    f.message.clone()
                })
                .unwrap_or_else(|| e.to_string());
            Outcome::Error(WorkflowError::Remote { id, message })
        }
    }
}

/// The non-determinism error of a call whose carried answer was for another input.
pub(crate) fn non_determinism(workflow_id: &str, call: &RemoteCall, recorded: &str) -> String {
    let (name, now) = match &call.op {
        RemoteOp::Step(s) => (s.name.as_str(), s.input_hash.as_str()),
        _ => ("(not a step)", "none"),
    };
    WorkflowError::NonDeterminism {
        workflow_id: workflow_id.to_string(),
        position: call.step_id.clone(),
        expected: format!("`{name}` (id {}, input {recorded})", call.step_id),
        actual: format!("`{name}` (id {}, input {now})", call.step_id),
    }
    .to_string()
}
