//! Kit cases: timers, mailboxes, cancellation, and children waking parents.

use super::*;

/// Suspension with timers: due timers are claimable, future ones only when due; `next_wake`.
pub async fn timers<S: Store>(store: S) {
    create_running(&store, "past", "w").await;
    store
        .finish(
            "past",
            "w",
            Outcome::Suspended {
                wake_at: Some(now_millis() - 1_000),
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    let r = get(&store, "past").await;
    assert_eq!(r.status, WorkflowStatus::Suspended);
    assert_eq!(
        (r.owner, r.lease_expires_at),
        (None, None),
        "suspension releases the lease"
    );
    assert_eq!(
        claim_ids(&store, "w2", 10, LONG).await,
        ["past"],
        "due timer claimable"
    );
    assert_eq!(
        get(&store, "past").await.wake_at,
        None,
        "wake_at cleared by the claim"
    );

    let wake_at = now_millis() + 400;
    create_running(&store, "future", "w").await;
    store
        .finish(
            "future",
            "w",
            Outcome::Suspended {
                wake_at: Some(wake_at),
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    assert_eq!(get(&store, "future").await.wake_at, Some(wake_at));
    create_running(&store, "forever", "w").await;
    store
        .finish(
            "forever",
            "w",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    assert!(
        claim_ids(&store, "w2", 10, LONG).await.is_empty(),
        "timer claimable before due"
    );

    // next_wake: the earliest among the given names.
    create(&store, "other", "other_name").await;
    let claimed = store
        .claim("w", &names(&["other_name"]), 1, LONG, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    store
        .finish(
            "other",
            "w",
            Outcome::Suspended {
                wake_at: Some(wake_at - 300),
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    assert_eq!(store.next_wake(&names(&[NAME])).await, Ok(Some(wake_at)));
    assert_eq!(
        store.next_wake(&names(&["other_name"])).await,
        Ok(Some(wake_at - 300))
    );
    assert_eq!(
        store.next_wake(&names(&[NAME, "other_name"])).await,
        Ok(Some(wake_at - 300))
    );
    assert_eq!(store.next_wake(&names(&["nobody"])).await, Ok(None));

    claim_eventually(&store, "w2", "future").await;
    assert!(now_millis() >= wake_at, "claimed before its wake-up time");
    assert_eq!(
        store.next_wake(&names(&[NAME])).await,
        Ok(None),
        "only `forever` left, no timer"
    );
    assert_eq!(
        get(&store, "forever").await.status,
        WorkflowStatus::Suspended
    );
    assert!(
        claim_ids(&store, "w2", 10, LONG).await.is_empty(),
        "suspended without a timer was claimed"
    );
}

/// Mailboxes: increasing seq, oldest unconsumed per topic, consumption atomic with the step.
pub async fn mailbox<S: Store>(store: S) {
    create_running(&store, "wf", "w").await;
    let s1 = store
        .send("wf", "answers", json!({ "n": 1 }))
        .await
        .expect("send");
    let s2 = store.send("wf", "other", json!("x")).await.expect("send");
    let s3 = store
        .send("wf", "answers", json!({ "n": 3 }))
        .await
        .expect("send");
    assert!(s1 < s2 && s2 < s3, "seq must increase: {s1}, {s2}, {s3}");
    let r = store.send("missing", "answers", json!(0)).await;
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "send to missing: {r:?}"
    );

    let m = store
        .next_message("wf", "answers")
        .await
        .expect("next")
        .expect("a message");
    assert_eq!(
        (m.seq, m.topic.as_str(), &m.payload),
        (s1, "answers", &json!({ "n": 1 }))
    );
    assert_eq!(
        store
            .next_message("wf", "answers")
            .await
            .expect("next")
            .map(|m| m.seq),
        Some(s1),
        "reading does not consume"
    );
    assert_eq!(store.next_message("wf", "nothing").await, Ok(None));
    assert_eq!(store.next_message("missing", "answers").await, Ok(None));

    store
        .commit_step("wf", "w", step("0", json!("got 1")), Some(s1))
        .await
        .expect("commit with consume");
    let m = store
        .next_message("wf", "answers")
        .await
        .expect("next")
        .expect("a message");
    assert_eq!(
        (m.seq, &m.payload),
        (s3, &json!({ "n": 3 })),
        "consumed message skipped"
    );

    // A failing commit consumes nothing.
    let r = store
        .commit_step("wf", "w", step("0", json!("dup")), Some(s3))
        .await;
    assert!(matches!(r, Err(StoreError::DuplicateStep { .. })), "{r:?}");
    let r = store
        .commit_step("wf", "x", step("1", json!("fenced")), Some(s3))
        .await;
    assert!(is_lease_lost(&r), "{r:?}");
    assert_eq!(
        store
            .next_message("wf", "answers")
            .await
            .expect("next")
            .map(|m| m.seq),
        Some(s3),
        "failed commit consumed"
    );
    // Consuming a message that is gone fails and writes no step.
    let r = store
        .commit_step("wf", "w", step("1", json!("again")), Some(s1))
        .await;
    assert!(r.is_err(), "consuming a consumed message must fail: {r:?}");
    assert_eq!(
        store.load_journal("wf").await.expect("journal").len(),
        1,
        "failed consume wrote a step"
    );

    store
        .commit_step("wf", "w", step("1", json!("got 3")), Some(s3))
        .await
        .expect("commit");
    assert_eq!(store.next_message("wf", "answers").await, Ok(None));
    let m = store
        .next_message("wf", "other")
        .await
        .expect("next")
        .expect("other topic untouched");
    assert_eq!(m.seq, s2);
}

/// A message to a suspended workflow makes it claimable before its timer.
pub async fn send_wakes_suspended<S: Store>(store: S) {
    create_running(&store, "wf", "w").await;
    store
        .finish(
            "wf",
            "w",
            Outcome::Suspended {
                wake_at: Some(now_millis() + 3_600_000),
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    create_running(&store, "none", "w").await;
    store
        .finish(
            "none",
            "w",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    assert!(claim_ids(&store, "w2", 10, LONG).await.is_empty());

    store.send("wf", "signal", json!(1)).await.expect("send");
    store.send("none", "signal", json!(2)).await.expect("send");
    let r = get(&store, "wf").await;
    assert_eq!(
        r.status,
        WorkflowStatus::Pending,
        "a message wakes the workflow"
    );
    assert_eq!(r.wake_at, None);
    assert_eq!(
        store.next_wake(&names(&[NAME])).await,
        Ok(None),
        "woken timers are gone"
    );
    assert_eq!(claim_ids(&store, "w2", 10, LONG).await, ["none", "wf"]);
    // A message to a pending workflow leaves it pending.
    create(&store, "p", NAME).await;
    store.send("p", "signal", json!(3)).await.expect("send");
    assert_eq!(get(&store, "p").await.status, WorkflowStatus::Pending);
}

/// A workflow that suspends while its mailbox holds an unconsumed message stays pending.
pub async fn message_during_run_wakes<S: Store>(store: S) {
    create_running(&store, "wf", "w").await;
    // The workflow looked at its mailbox and found nothing; then a message arrives.
    assert_eq!(store.next_message("wf", "t").await, Ok(None));
    let seq = store.send("wf", "t", json!("late")).await.expect("send");
    let r = get(&store, "wf").await;
    assert_eq!(
        (r.status, r.owner.as_deref()),
        (WorkflowStatus::Running, Some("w")),
        "send must not touch a running workflow's lease"
    );
    store
        .finish(
            "wf",
            "w",
            Outcome::Suspended {
                wake_at: Some(now_millis() + 3_600_000),
                waiting_on: vec!["t".into()],
            },
        )
        .await
        .expect("suspend");
    let r = get(&store, "wf").await;
    assert_eq!(
        r.status,
        WorkflowStatus::Pending,
        "the unconsumed message must wake it"
    );
    assert_eq!(
        (r.owner, r.lease_expires_at),
        (None, None),
        "the lease is released"
    );
    assert_eq!(claim_ids(&store, "w", 10, LONG).await, ["wf"]);

    // Still unconsumed: suspending again leaves it pending again.
    store
        .finish(
            "wf",
            "w",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec!["t".into()],
            },
        )
        .await
        .expect("suspend");
    assert_eq!(get(&store, "wf").await.status, WorkflowStatus::Pending);
    assert_eq!(claim_ids(&store, "w", 10, LONG).await, ["wf"]);

    // Waiting on another topic, the unconsumed message does not wake it (no busy loop: the
    // message waits for its own `recv`).
    store
        .finish(
            "wf",
            "w",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec!["other".into()],
            },
        )
        .await
        .expect("suspend");
    assert_eq!(get(&store, "wf").await.status, WorkflowStatus::Suspended);
    assert!(claim_ids(&store, "w", 10, LONG).await.is_empty());
    store.send("wf", "other", json!(1)).await.expect("send");
    assert_eq!(claim_ids(&store, "w", 10, LONG).await, ["wf"]);

    // Consumed: the workflow sleeps.
    store
        .commit_step("wf", "w", step("0", json!("late")), Some(seq))
        .await
        .expect("commit");
    store
        .finish(
            "wf",
            "w",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    assert_eq!(get(&store, "wf").await.status, WorkflowStatus::Suspended);
    assert!(claim_ids(&store, "w", 10, LONG).await.is_empty());
}

/// Cancellation: pending and suspended at once, running through renew and get.
pub async fn cancellation<S: Store>(store: S) {
    create(&store, "pending", NAME).await;
    assert_eq!(
        store.request_cancel("pending").await,
        Ok(WorkflowStatus::Cancelled)
    );
    let r = get(&store, "pending").await;
    assert_eq!(r.status, WorkflowStatus::Cancelled);
    assert!(
        r.status.is_terminal() && r.cancel_requested && r.output.is_some(),
        "{r:?}"
    );

    create_running(&store, "suspended", "w").await;
    store
        .finish(
            "suspended",
            "w",
            Outcome::Suspended {
                wake_at: Some(now_millis() + 60_000),
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    assert_eq!(
        store.request_cancel("suspended").await,
        Ok(WorkflowStatus::Cancelled)
    );
    let r = get(&store, "suspended").await;
    assert_eq!((r.status, r.wake_at), (WorkflowStatus::Cancelled, None));
    assert_eq!(store.next_wake(&names(&[NAME])).await, Ok(None));
    assert!(
        claim_ids(&store, "w", 10, LONG).await.is_empty(),
        "cancelled workflows claimable"
    );

    create_running(&store, "running", "w").await;
    let states = store
        .renew("w", &names(&["running"]), LONG)
        .await
        .expect("renew");
    assert!(states[0].held && !states[0].cancel_requested);
    assert_eq!(
        store.request_cancel("running").await,
        Ok(WorkflowStatus::Running)
    );
    let r = get(&store, "running").await;
    assert_eq!(
        (r.status, r.cancel_requested),
        (WorkflowStatus::Running, true)
    );
    assert_eq!(r.owner.as_deref(), Some("w"), "cancel keeps the lease");
    let states = store
        .renew("w", &names(&["running"]), LONG)
        .await
        .expect("renew");
    assert!(
        states[0].held && states[0].cancel_requested,
        "renew reports the request: {states:?}"
    );
    store
        .finish(
            "running",
            "w",
            Outcome::Finished {
                status: WorkflowStatus::Cancelled,
                output: json!("stopped"),
            },
        )
        .await
        .expect("finish");
    let r = get(&store, "running").await;
    assert_eq!(
        (r.status, r.output),
        (WorkflowStatus::Cancelled, Some(json!("stopped")))
    );

    // A running workflow asked to cancel that suspends anyway is cancelled.
    create_running(&store, "stubborn", "w").await;
    assert_eq!(
        store.request_cancel("stubborn").await,
        Ok(WorkflowStatus::Running)
    );
    store
        .finish(
            "stubborn",
            "w",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    assert_eq!(
        get(&store, "stubborn").await.status,
        WorkflowStatus::Cancelled
    );

    // Terminal workflows stay as they are.
    create_running(&store, "done", "w").await;
    store
        .finish(
            "done",
            "w",
            Outcome::Finished {
                status: WorkflowStatus::Completed,
                output: json!(1),
            },
        )
        .await
        .expect("finish");
    assert_eq!(
        store.request_cancel("done").await,
        Ok(WorkflowStatus::Completed)
    );
    assert_eq!(get(&store, "done").await.output, Some(json!(1)));
    let r = store.request_cancel("missing").await;
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "cancel of missing: {r:?}"
    );
}

/// Finishing stores status and output, releases the lease, and wakes a suspended parent.
pub async fn finish_wakes_parent<S: Store>(store: S) {
    create_running(&store, "parent", "w").await;
    store
        .commit_step("parent", "w", step("0", json!("spawned")), None)
        .await
        .expect("commit");
    let child = NewWorkflow {
        parent_id: Some("parent".into()),
        ..new_wf("child", "child_wf")
    };
    assert_eq!(store.create_workflow(child).await, Ok(Created::New));
    assert_eq!(
        get(&store, "child").await.parent_id.as_deref(),
        Some("parent")
    );
    store
        .finish(
            "parent",
            "w",
            Outcome::Suspended {
                wake_at: Some(now_millis() + 3_600_000),
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend parent");
    let child_names = names(&["child_wf"]);
    let claimed = store
        .claim("c", &child_names, 1, LONG, &[])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(
        claim_ids(&store, "w", 10, LONG).await.is_empty(),
        "parent claimable too early"
    );

    let output = json!({ "answer": "potato", "cost": 0.25 });
    store
        .finish(
            "child",
            "c",
            Outcome::Finished {
                status: WorkflowStatus::Completed,
                output: output.clone(),
            },
        )
        .await
        .expect("finish child");
    let r = get(&store, "child").await;
    assert_eq!(
        (r.status, r.output.as_ref()),
        (WorkflowStatus::Completed, Some(&output))
    );
    assert_eq!(
        (r.owner, r.lease_expires_at, r.wake_at),
        (None, None, None),
        "lease released"
    );
    assert!(
        store
            .claim("c", &child_names, 1, LONG, &[])
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(store.running_owners().await, Ok(vec![]));

    assert_eq!(
        get(&store, "parent").await.status,
        WorkflowStatus::Pending,
        "parent woken"
    );
    assert_eq!(claim_ids(&store, "w", 10, LONG).await, ["parent"]);

    // Failed children wake their parent too; a non-terminal "finish" is refused.
    store
        .finish(
            "parent",
            "w",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec![],
            },
        )
        .await
        .expect("suspend");
    let child2 = NewWorkflow {
        parent_id: Some("parent".into()),
        ..new_wf("child2", "child_wf")
    };
    assert_eq!(store.create_workflow(child2).await, Ok(Created::New));
    assert_eq!(
        store
            .claim("c", &child_names, 1, LONG, &[])
            .await
            .expect("claim")
            .len(),
        1
    );
    let r = store
        .finish(
            "child2",
            "c",
            Outcome::Finished {
                status: WorkflowStatus::Running,
                output: json!(0),
            },
        )
        .await;
    assert!(
        r.is_err(),
        "finish with a non-terminal status must fail: {r:?}"
    );
    assert_eq!(get(&store, "child2").await.status, WorkflowStatus::Running);
    store
        .finish(
            "child2",
            "c",
            Outcome::Finished {
                status: WorkflowStatus::Failed,
                output: json!({ "error": "x" }),
            },
        )
        .await
        .expect("finish child2");
    assert_eq!(get(&store, "child2").await.status, WorkflowStatus::Failed);
    assert_eq!(
        claim_ids(&store, "w", 10, LONG).await,
        ["parent"],
        "failed child wakes parent"
    );
}
