//! The workflow's durable primitives besides steps: journaled values (`now`, `random`,
//! `uuid`), durable `sleep`, the mailbox's `recv`, and child workflows.

use super::*;

impl WorkflowCtx {
    /// Journal a value computed once (a clock reading, a random number, a wake-up time).
    fn value<T, C>(
        &self,
        short: &str,
        kind: StepKind,
        input: Value,
        compute: C,
    ) -> impl Future<Output = Result<T, WorkflowError>> + Send + 'static + use<T, C>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        C: FnOnce() -> T + Send + 'static,
    {
        let spec = StepSpec {
            kind,
            name: short.to_string(),
            input_hash: hash_of(&input),
            legacy_hash: None,
            input: StepInput::Value(input),
            policy: StepPolicy::default(),
        };
        let mut compute = Some(compute);
        self.execute(short.into(), spec, move |_| {
            let v = compute.take().map(|f| f());
            async move {
                match v {
                    Some(v) => Attempt::Ok(v),
                    None => Attempt::Failed(StepError::fatal("value computed twice")),
                }
            }
        })
    }

    /// The current time in milliseconds since the Unix epoch, journaled: a replay sees the same
    /// reading.
    pub fn now(
        &self,
    ) -> impl Future<Output = Result<Millis, WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            return futures::future::Either::Left(decode_remote(
                self.remote_call("now", || RemoteOp::Now),
            ));
        }
        futures::future::Either::Right(self.value("now", StepKind::Value, Value::Null, now_millis))
    }

    /// A random 64-bit number, journaled.
    pub fn random(
        &self,
    ) -> impl Future<Output = Result<u64, WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            return futures::future::Either::Left(decode_remote(
                self.remote_call("random", || RemoteOp::Random),
            ));
        }
        futures::future::Either::Right(self.value(
            "random",
            StepKind::Value,
            Value::Null,
            random_u64,
        ))
    }

    /// A random (v4) UUID, journaled.
    pub fn uuid(
        &self,
    ) -> impl Future<Output = Result<String, WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            let a = decode_remote::<u64>(self.remote_call("uuid", || RemoteOp::Random));
            let b = decode_remote::<u64>(self.remote_call("uuid", || RemoteOp::Random));
            return futures::future::Either::Left(
                async move { Ok(format_uuid(a.await?, b.await?)) },
            );
        }
        futures::future::Either::Right(self.value("uuid", StepKind::Value, Value::Null, || {
            format_uuid(random_u64(), random_u64())
        }))
    }

    /// Sleep durably: the wake-up time is journaled, so the sleep survives restarts. A sleep
    /// longer than the worker's suspend threshold drops the workflow from memory until it is due.
    pub fn sleep(
        &self,
        d: Duration,
    ) -> impl Future<Output = Result<(), WorkflowError>> + Send + 'static + use<> {
        if self.run.remote.is_some() {
            let call = self.remote_call("sleep", || RemoteOp::Sleep(d));
            return futures::future::Either::Left(async move {
                decode_remote::<Value>(call).await.map(|_| ())
            });
        }
        let ms = d.as_millis() as i64;
        let wake = self.value("sleep", StepKind::Sleep, Value::from(ms), move || {
            now_millis() + ms
        });
        let run = self.run.clone();
        futures::future::Either::Right(async move {
            let wake_at = wake.await?;
            wait_until(&run, wake_at).await;
            Ok(())
        })
    }

    /// Receive the next message on `topic` from this workflow's mailbox (filled by
    /// `Engine::send`), waiting at most `timeout` (`None`: forever). `Ok(None)` means the
    /// timeout passed. The receipt is journaled, so a replay gets the same message.
    pub fn recv<T: DeserializeOwned + Send + 'static>(
        &self,
        topic: &str,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Option<T>, WorkflowError>> + Send + 'static + use<T> {
        if self.run.remote.is_some() {
            let call = self.remote_call(Short("recv__", topic), || RemoteOp::Recv {
                topic: topic.to_string(),
                timeout,
            });
            return futures::future::Either::Left(async move {
                match decode_recv(decode_remote::<Value>(call).await?) {
                    Some(v) => Ok(Some(serde_json::from_value(v)?)),
                    None => Ok(None),
                }
            });
        }
        let deadline = timeout.map(|t| {
            let ms = t.as_millis() as i64;
            self.value(
                "recv_deadline",
                StepKind::Value,
                Value::from(ms),
                move || now_millis() + ms,
            )
        });
        let (position, step_id) = self.ns.alloc(Short("recv__", topic));
        let ctx = self.clone();
        let topic = topic.to_string();
        futures::future::Either::Right(async move {
            let deadline = match deadline {
                Some(d) => Some(d.await?),
                None => None,
            };
            let spec = StepSpec {
                kind: StepKind::Recv,
                name: topic.clone(),
                input_hash: hash_of(&topic),
                legacy_hash: None,
                input: StepInput::None,
                policy: StepPolicy::default(),
            };
            let run = ctx.run.clone();
            let span = step_span(&run, &spec, &step_id);
            loop {
                if let Some(r) = ctx
                    .replay::<Option<T>>(&spec, &position, &step_id, &span)
                    .inspect_err(|e| record_step_error(&span, e))?
                {
                    return r;
                }
                if run.cancel.load(Ordering::SeqCst) {
                    return Err(WorkflowError::Cancelled(run.id.clone()));
                }
                let message = {
                    let _g = InFlight::new(&run);
                    run.store.next_message(&run.id, &topic).await?
                };
                let due = deadline.is_some_and(|d| now_millis() >= d);
                if message.is_some() || due {
                    let _g = InFlight::new(&run);
                    let consume = message.as_ref().map(|m| m.seq);
                    let payload = message.map(|m| m.payload);
                    let record = StepRecord {
                        position: position.clone(),
                        step_id: step_id.clone(),
                        kind: StepKind::Recv,
                        name: topic.clone(),
                        input_hash: spec.input_hash.clone(),
                        input: None,
                        output: Ok(Json::encode(&payload)?),
                        attempts: 1,
                        started_at: now_millis(),
                        duration_us: 0,
                        seq: 0,
                    };
                    let report = ctx.report(&record);
                    ctx.commit(record, consume).await?;
                    ctx.committed(report);
                    run.executed.fetch_add(1, Ordering::Relaxed);
                    if !span.is_disabled() {
                        span.record(STEADFAST_REPLAYED, false);
                        span.record(STEADFAST_STEP_ATTEMPT, 1_i64);
                    }
                    return match payload {
                        Some(v) => Ok(Some(serde_json::from_value(v)?)),
                        None => Ok(None),
                    };
                }
                // Nothing yet: wait in memory briefly when the deadline is near, else suspend
                // until a message (or the deadline) wakes the workflow.
                match deadline {
                    Some(d) if d - now_millis() <= run.suspend_threshold.as_millis() as i64 => {
                        let _g = InFlight::new(&run);
                        let left = (d - now_millis()).clamp(0, 50) as u64;
                        tokio::time::sleep(Duration::from_millis(left)).await;
                    }
                    _ => {
                        run.request_suspend(deadline, Some(&topic));
                        futures::future::pending::<()>().await;
                    }
                }
            }
        })
    }

    /// Start child workflow `W` with id `child_id` (idempotently) and wait for its output. The
    /// child runs on any worker that registers `W`; the parent holds no memory while it waits.
    pub fn child<W: Workflow>(
        &self,
        child_id: &str,
        input: W::Input,
    ) -> impl Future<Output = Result<W::Output, WorkflowError>> + Send + 'static + use<W> {
        let child_id = child_id.to_string();
        let input = serde_json::to_value(&input).unwrap_or(Value::Null);
        if self.run.remote.is_some() {
            let call = self.remote_call(Short("child__", W::NAME), || RemoteOp::Child {
                workflow: W::NAME.to_string(),
                id: child_id,
                input,
            });
            return futures::future::Either::Left(decode_remote(call));
        }
        let store = self.run.store.clone();
        let parent = self.run.id.clone();
        let start_input =
            serde_json::json!({ "id": child_id, "workflow": W::NAME, "input": input });
        let start = self.execute(
            Short("start_child__", W::NAME),
            StepSpec {
                kind: StepKind::Child,
                name: W::NAME.to_string(),
                input_hash: hash_of(&start_input),
                legacy_hash: None,
                input: StepInput::Value(start_input),
                policy: StepPolicy::default(),
            },
            {
                let child_id = child_id.clone();
                move |_| {
                    let store = store.clone();
                    let new = NewWorkflow {
                        id: child_id.clone(),
                        name: W::NAME.to_string(),
                        input: input.clone(),
                        parent_id: Some(parent.clone()),
                    };
                    async move {
                        match store.create_workflow(new).await {
                            Ok(_) => Attempt::Ok(()),
                            Err(e) => Attempt::Failed(StepError::retryable(e)),
                        }
                    }
                }
            },
        );
        let (position, step_id) = self.ns.alloc(Short("child__", W::NAME));
        let ctx = self.clone();
        futures::future::Either::Right(async move {
            let () = start.await?;
            let spec = StepSpec {
                kind: StepKind::Child,
                name: W::NAME.to_string(),
                input_hash: hash_of(&child_id),
                legacy_hash: None,
                // The record's input (the child's id) is encoded when it is committed.
                input: StepInput::None,
                policy: StepPolicy::default(),
            };
            let run = ctx.run.clone();
            let span = step_span(&run, &spec, &step_id);
            loop {
                if let Some(r) = ctx
                    .replay::<W::Output>(&spec, &position, &step_id, &span)
                    .inspect_err(|e| record_step_error(&span, e))?
                {
                    return r;
                }
                let record = {
                    let _g = InFlight::new(&run);
                    run.store.get_workflow(&child_id).await?
                };
                let Some(record) = record else {
                    return Err(WorkflowError::Config(format!(
                        "child workflow `{child_id}` does not exist"
                    )));
                };
                if !record.status.is_terminal() {
                    // The child's completion wakes this workflow; the timer is a safety net.
                    run.request_suspend(Some(now_millis() + CHILD_POLL_MS), None);
                    futures::future::pending::<()>().await;
                    continue;
                }
                let output = match record.status {
                    WorkflowStatus::Completed => {
                        Ok(record.output.as_ref().map_or_else(Json::null, Json::from))
                    }
                    status => Err(StepFailure {
                        message: format!(
                            "child workflow `{child_id}` {status}: {}",
                            error_text(record.output.as_ref())
                        ),
                        retryable: false,
                    }),
                };
                let _g = InFlight::new(&run);
                let step = StepRecord {
                    position: position.clone(),
                    step_id: step_id.clone(),
                    kind: StepKind::Child,
                    name: W::NAME.to_string(),
                    input_hash: spec.input_hash.clone(),
                    input: Some(Json::encode(&child_id)?),
                    output,
                    attempts: 1,
                    started_at: now_millis(),
                    duration_us: 0,
                    seq: 0,
                };
                let report = ctx.report(&step);
                let output = step.output.clone();
                ctx.commit(step, None).await?;
                ctx.committed(report);
                run.executed.fetch_add(1, Ordering::Relaxed);
                if !span.is_disabled() {
                    span.record(STEADFAST_REPLAYED, false);
                    span.record(STEADFAST_STEP_ATTEMPT, 1_i64);
                    if let Err(f) = &output {
                        span.record(OTEL_STATUS_CODE, "error");
                        span.record(OTEL_STATUS_DESCRIPTION, redact_secrets(&f.message));
                    }
                }
                return match output {
                    Ok(v) => Ok(v.decode()?),
                    Err(f) => Err(WorkflowError::StepFailed {
                        step: step_id,
                        message: f.message,
                        attempts: 1,
                    }),
                };
            }
        })
    }
}

/// How often a parent waiting on a child re-checks it, should the child's wake-up be missed.
const CHILD_POLL_MS: i64 = 5_000;

/// Wait until `wake_at`: in memory when it is near, else by suspending the run.
async fn wait_until(run: &RunShared, wake_at: Millis) {
    loop {
        let left = wake_at - now_millis();
        if left <= 0 {
            return;
        }
        if left <= run.suspend_threshold.as_millis() as i64 {
            let _g = InFlight::new(run);
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
            return;
        }
        run.request_suspend(Some(wake_at), None);
        futures::future::pending::<()>().await;
    }
}

/// A v4 UUID from two random numbers.
fn format_uuid(a: u64, b: u64) -> String {
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
