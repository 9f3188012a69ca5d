//! The client: start Steadfast workflows on Temporal by id, watch them, message them, and
//! re-attach after a lost connection.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use steadfast_durable::Workflow;
use temporalio_client::errors::{WorkflowGetResultError, WorkflowStartError};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowExecutionStatus,
    WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHandle,
    WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use crate::bridge::{DispatchInput, Dispatcher, Mail};
use crate::{TemporalConfig, TemporalError, connect};

/// A connection to Temporal for starting and watching Steadfast workflows.
#[derive(Clone)]
pub struct TemporalClient {
    pub(crate) client: Client,
    config: TemporalConfig,
}

impl std::fmt::Debug for TemporalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalClient")
            .field("address", &self.config.address)
            .field("task_queue", &self.config.task_queue)
            .finish_non_exhaustive()
    }
}

/// Where a workflow is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemporalStatus {
    /// Running. `task_failure` holds the error of its newest workflow task when that task
    /// failed (a non-determinism error, a step no worker registers): the workflow waits for a
    /// worker with the right code.
    Running {
        /// The newest workflow task failure, if the newest task failed.
        task_failure: Option<String>,
    },
    /// Finished with an output.
    Completed,
    /// Failed, with its error.
    Failed(String),
    /// Cancelled.
    Cancelled,
    /// Terminated from outside.
    Terminated,
    /// Timed out.
    TimedOut,
    /// Continued as new (the newest run of the chain is elsewhere).
    ContinuedAsNew,
}

/// The size of a workflow run's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySize {
    /// Events in the run's history.
    pub events: usize,
    /// The history's JSON export, in bytes.
    pub json_bytes: usize,
}

impl TemporalClient {
    /// Connect to the server in `config`.
    pub async fn connect(config: TemporalConfig) -> Result<Self, TemporalError> {
        let client = connect(&config).await?;
        Ok(TemporalClient { client, config })
    }

    /// The configuration.
    pub fn config(&self) -> &TemporalConfig {
        &self.config
    }

    /// Start workflow `W` with id `id`, or attach to the workflow already running (or finished)
    /// under that id: the same id never runs twice.
    pub async fn start<W: Workflow>(
        &self,
        id: &str,
        input: W::Input,
    ) -> Result<TemporalHandle<W>, TemporalError> {
        let input = DispatchInput {
            workflow: W::NAME.to_string(),
            input: serde_json::to_value(&input).map_err(|e| TemporalError::Serde(e.to_string()))?,
            ..Default::default()
        };
        let size = serde_json::to_vec(&input).map_or(0, |b| b.len());
        if size > self.config.payload_limit {
            return Err(TemporalError::Payload(format!(
                "the input of workflow `{}` is {size} bytes, over the payload limit of {} bytes",
                W::NAME,
                self.config.payload_limit
            )));
        }
        // The Steadfast name, for listings that read no history (`TemporalClient::list`).
        let mut memo = temporalio_common::MemoValues::new();
        memo.insert(crate::inspect::MEMO_WORKFLOW, W::NAME.to_string());
        let opts = WorkflowStartOptions::new(self.config.task_queue.clone(), id.to_string())
            .memo(memo)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .task_timeout(self.config.workflow_task_timeout)
            .build();
        match self
            .client
            .start_workflow(Dispatcher::run, input, opts)
            .await
        {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(self.handle(id)),
            Err(e) => Err(TemporalError::Rpc(e.to_string())),
        }
    }

    /// A handle on workflow `id`, for a client that did not start it (or lost its connection).
    pub fn handle<W: Workflow>(&self, id: &str) -> TemporalHandle<W> {
        TemporalHandle {
            client: self.clone(),
            id: id.to_string(),
            _w: PhantomData,
        }
    }

    pub(crate) fn raw(&self, id: &str) -> WorkflowHandle<Client, Dispatcher> {
        self.client.get_workflow_handle::<Dispatcher>(id)
    }

    /// Put `payload` in the mailbox of workflow `id` under `topic` (a signal): a `recv` on the
    /// topic gets it, now or later.
    pub async fn send(
        &self,
        id: &str,
        topic: &str,
        payload: impl Serialize,
    ) -> Result<(), TemporalError> {
        let mail = mail(topic, payload)?;
        self.raw(id)
            .signal(Dispatcher::send, mail, WorkflowSignalOptions::default())
            .await
            .map_err(|e| TemporalError::Rpc(e.to_string()))
    }

    /// Deliver `payload` to workflow `id` while it waits on `topic` (an update with a
    /// validator): refused, with the reason, when nothing waits for it, so an approval given
    /// twice or too early is an error rather than a stray message.
    pub async fn deliver(
        &self,
        id: &str,
        topic: &str,
        payload: impl Serialize,
    ) -> Result<(), TemporalError> {
        let mail = mail(topic, payload)?;
        self.raw(id)
            .execute_update(
                Dispatcher::deliver,
                mail,
                WorkflowExecuteUpdateOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| TemporalError::Rejected(e.to_string()))
    }
}

fn mail(topic: &str, payload: impl Serialize) -> Result<Mail, TemporalError> {
    Ok(Mail {
        topic: topic.to_string(),
        payload: serde_json::to_value(payload).map_err(|e| TemporalError::Serde(e.to_string()))?,
    })
}

/// A started workflow: its status, its result, its history's size.
pub struct TemporalHandle<W> {
    client: TemporalClient,
    id: String,
    _w: PhantomData<fn() -> W>,
}

impl<W> std::fmt::Debug for TemporalHandle<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl<W: Workflow> TemporalHandle<W> {
    /// The workflow id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The status of the newest run, with the newest workflow task failure while it runs.
    pub async fn status(&self) -> Result<TemporalStatus, TemporalError> {
        let h = self.client.raw(&self.id);
        let d = h
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(|e| TemporalError::Rpc(e.to_string()))?;
        Ok(match d.status() {
            WorkflowExecutionStatus::Running | WorkflowExecutionStatus::Unspecified => {
                TemporalStatus::Running {
                    task_failure: self.task_failure().await?,
                }
            }
            WorkflowExecutionStatus::Completed => TemporalStatus::Completed,
            WorkflowExecutionStatus::Failed => TemporalStatus::Failed(self.failure().await),
            WorkflowExecutionStatus::Canceled => TemporalStatus::Cancelled,
            WorkflowExecutionStatus::Terminated => TemporalStatus::Terminated,
            WorkflowExecutionStatus::TimedOut => TemporalStatus::TimedOut,
            WorkflowExecutionStatus::ContinuedAsNew => TemporalStatus::ContinuedAsNew,
            _ => TemporalStatus::Running { task_failure: None },
        })
    }

    /// The failure of the newest workflow task, if the newest task failed.
    async fn task_failure(&self) -> Result<Option<String>, TemporalError> {
        let events = self.events().await?;
        let mut failure = None;
        for e in events {
            match e.attributes {
                Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
                    failure = a.failure.map(|f| self.explain(f.message));
                }
                Some(Attributes::WorkflowTaskCompletedEventAttributes(_)) => failure = None,
                _ => {}
            }
        }
        Ok(failure)
    }

    /// Temporal's own non-determinism errors (a step renamed or moved: Temporal compares activity
    /// types and ids before Steadfast sees the step) in Steadfast's words.
    fn explain(&self, message: String) -> String {
        if message.contains("[TMPRL1100]") && !message.contains("non-determinism in workflow") {
            format!(
                "non-determinism in workflow `{}`: {message}. The workflow's code changed while \
                 it was running; restore the old code to finish it, or start a new workflow id",
                self.id
            )
        } else {
            message
        }
    }

    async fn failure(&self) -> String {
        match self.result().await {
            Err(TemporalError::Workflow { message, .. }) => message,
            Err(e) => e.to_string(),
            Ok(_) => "no failure recorded".to_string(),
        }
    }

    async fn events(
        &self,
    ) -> Result<
        Vec<temporalio_common::protos::temporal::api::history::v1::HistoryEvent>,
        TemporalError,
    > {
        self.client
            .raw(&self.id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await
            .map_err(|e| TemporalError::Rpc(e.to_string()))
    }

    /// The activity types the newest run scheduled, in order (its steps' pinned names).
    pub async fn activity_types(&self) -> Result<Vec<String>, TemporalError> {
        Ok(self
            .events()
            .await?
            .into_iter()
            .filter_map(|e| match e.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    a.activity_type.map(|t| t.name)
                }
                _ => None,
            })
            .collect())
    }

    /// The size of the newest run's history.
    pub async fn history_size(&self) -> Result<HistorySize, TemporalError> {
        let events = self.events().await?.len();
        let json = self
            .client
            .raw(&self.id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await
            .map_err(|e| TemporalError::Rpc(e.to_string()))?;
        Ok(HistorySize {
            events,
            json_bytes: json.len(),
        })
    }

    /// Wait for the output, following continue-as-new runs. A lost connection (a server
    /// restart, say) does not end the wait: the handle re-attaches by id until the server
    /// answers again, for up to the config's `reattach_timeout`.
    pub async fn result(&self) -> Result<W::Output, TemporalError> {
        let deadline = tokio::time::Instant::now() + self.client.config.reattach_timeout;
        loop {
            let h = self.client.raw(&self.id);
            match h.get_result(WorkflowGetResultOptions::default()).await {
                Ok(v) => return decode::<W>(&self.id, v),
                Err(WorkflowGetResultError::Failed(f)) => {
                    let mut failure = f.failure();
                    while let Some(c) = failure.cause.as_deref() {
                        failure = c;
                    }
                    return Err(TemporalError::Workflow {
                        id: self.id.clone(),
                        message: failure.message.clone(),
                    });
                }
                Err(
                    e @ (WorkflowGetResultError::Cancelled { .. }
                    | WorkflowGetResultError::Terminated { .. }
                    | WorkflowGetResultError::TimedOut),
                ) => {
                    return Err(TemporalError::Workflow {
                        id: self.id.clone(),
                        message: e.to_string(),
                    });
                }
                Err(e) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(TemporalError::Rpc(format!(
                            "waiting for workflow `{}`: {e}",
                            self.id
                        )));
                    }
                    tracing::warn!(
                        target: "steadfast::temporal",
                        workflow_id = %self.id,
                        "lost the server while waiting for the result ({e}); re-attaching"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}

fn decode<W: Workflow>(id: &str, v: Value) -> Result<W::Output, TemporalError> {
    serde_json::from_value(v).map_err(|e| {
        TemporalError::Serde(format!(
            "the output of workflow `{id}` does not decode: {e}"
        ))
    })
}
