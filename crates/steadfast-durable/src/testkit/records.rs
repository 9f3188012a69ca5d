//! Kit cases: creating, reading and listing workflows; the journal and attempts.

use super::*;

/// Creating an existing id reports it and changes nothing.
pub async fn create_is_idempotent<S: Store>(store: S) {
    let first = NewWorkflow {
        id: "wf".into(),
        name: NAME.into(),
        input: json!({ "n": 1, "s": "ünïcode ✓", "list": [1, 2.5, null, true] }),
        parent_id: None,
    };
    assert_eq!(store.create_workflow(first.clone()).await, Ok(Created::New));
    let original = get(&store, "wf").await;
    assert_eq!(original.id, "wf");
    assert_eq!(original.name, NAME);
    assert_eq!(original.input, first.input, "input round-trips");
    assert_eq!(original.status, WorkflowStatus::Pending);
    assert_eq!(original.output, None);
    assert_eq!(original.owner, None);
    assert_eq!(original.lease_expires_at, None);
    assert_eq!(original.wake_at, None);
    assert!(!original.cancel_requested);
    assert_eq!(original.parent_id, None);
    assert!(original.created_at > 0 && original.updated_at >= original.created_at);

    let again = NewWorkflow {
        name: "other".into(),
        input: json!("different"),
        parent_id: Some("p".into()),
        ..first
    };
    match store.create_workflow(again).await {
        Ok(Created::Existing(r)) => assert_eq!(r, original, "Existing reports the stored record"),
        other => panic!("second create returned {other:?}, expected Existing"),
    }
    assert_eq!(
        get(&store, "wf").await,
        original,
        "second create changed nothing"
    );
    assert_eq!(
        store
            .list_workflows(ListFilter::default())
            .await
            .map(|l| l.len()),
        Ok(1)
    );
    assert_eq!(store.get_workflow("missing").await, Ok(None));
}

/// `get_workflow` and `list_workflows`: newest first, status filter, limit, step counts.
pub async fn get_and_list<S: Store>(store: S) {
    for i in 0..5 {
        create(&store, &format!("wf{i}"), NAME).await;
        // Distinct creation times, so that "newest first" is unambiguous.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let all = store
        .list_workflows(ListFilter::default())
        .await
        .expect("list");
    let ids: Vec<&str> = all.iter().map(|s| s.record.id.as_str()).collect();
    assert_eq!(ids, ["wf4", "wf3", "wf2", "wf1", "wf0"], "newest first");
    assert!(all.iter().all(|s| s.steps == 0));

    // Claim the two oldest, journal three steps in one.
    assert_eq!(
        claim_ids(&store, "w", 2, LONG).await,
        ["wf0", "wf1"],
        "oldest claimed first"
    );
    for p in ["0", "1", "2"] {
        store
            .commit_step("wf1", "w", step(p, json!(p)), None)
            .await
            .expect("commit");
    }

    let limited = store
        .list_workflows(ListFilter {
            status: None,
            limit: Some(2),
        })
        .await
        .expect("list");
    let ids: Vec<&str> = limited.iter().map(|s| s.record.id.as_str()).collect();
    assert_eq!(ids, ["wf4", "wf3"], "limit keeps the newest");

    let running = store
        .list_workflows(ListFilter {
            status: Some(WorkflowStatus::Running),
            limit: None,
        })
        .await
        .expect("list");
    let ids: Vec<&str> = running.iter().map(|s| s.record.id.as_str()).collect();
    assert_eq!(ids, ["wf1", "wf0"], "status filter");
    assert_eq!(running[0].steps, 3, "step count of wf1");
    assert_eq!(running[1].steps, 0, "step count of wf0");
    assert_eq!(
        running[0].record,
        get(&store, "wf1").await,
        "summary holds the record"
    );

    let pending = store
        .list_workflows(ListFilter {
            status: Some(WorkflowStatus::Pending),
            limit: Some(1),
        })
        .await
        .expect("list");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].record.id, "wf4");
    let none = store
        .list_workflows(ListFilter {
            status: Some(WorkflowStatus::Completed),
            limit: None,
        })
        .await
        .expect("list");
    assert!(none.is_empty(), "no completed workflows: {none:?}");
}

/// The journal keeps commit order and every field of every kind of step.
pub async fn journal_round_trip<S: Store>(store: S) {
    create_running(&store, "wf", "w").await;
    create_running(&store, "other", "w").await;
    let kinds = [
        StepKind::ModelRequest,
        StepKind::Tool,
        StepKind::Step,
        StepKind::Sleep,
        StepKind::Value,
        StepKind::Recv,
        StepKind::Child,
    ];
    let outputs: Vec<Result<Json, StepFailure>> = vec![
        ok(json!({ "text": "héllo ✓", "usage": { "input_tokens": 12, "cost": 0.000_15 } })),
        ok(json!([1, -2, 3.25, u64::MAX, i64::MIN, "x", null, false])),
        Ok(Json::null()),
        ok(json!(1_700_000_123_456_i64)),
        // Text as a model may write it: the store keeps it as it is, spaces and key order.
        Ok(
            Json::from_string(r#"{ "z": "a \"quoted\"\nline",  "a": [ 1.50, -0e0 ] }"#.into())
                .expect("JSON"),
        ),
        Err(StepFailure {
            message: "tool exploded".into(),
            retryable: false,
        }),
        Err(StepFailure {
            message: "503 after 5 attempts".into(),
            retryable: true,
        }),
    ];
    // Positions in an order that sorts differently as text: the journal keeps commit order.
    let positions = ["0", "10", "2", "1/0", "1/1", "b#3/0", "9"];
    let mut written = Vec::new();
    for (i, ((kind, output), position)) in kinds.iter().zip(outputs).zip(positions).enumerate() {
        let record = StepRecord {
            position: position.to_owned(),
            step_id: format!("agent#1/{}#{i}", kind.as_str()),
            kind: *kind,
            name: format!("agent__a__{}", kind.as_str()),
            input_hash: format!("{:016x}", 0xdead_beef_u64 + i as u64),
            input: match kind {
                StepKind::ModelRequest => None,
                StepKind::Value => Some(Json::null()),
                _ => Some(Json::from(
                    json!({ "args": [i, "ä"], "nested": { "k": i } }),
                )),
            },
            output,
            attempts: i as u32 + 1,
            started_at: 1_700_000_000_000 + i as i64,
            duration_us: if i == 0 { 0 } else { 1_000_000 * i as i64 + 7 },
            seq: 999, // ignored by the store
        };
        store
            .commit_step("wf", "w", record.clone(), None)
            .await
            .expect("commit");
        written.push(record);
        if i == 2 {
            store
                .commit_step("other", "w", step("0", json!("other")), None)
                .await
                .expect("commit");
        }
    }
    let journal = store.load_journal("wf").await.expect("journal");
    assert_eq!(journal.len(), written.len(), "journal length");
    let mut last_seq = i64::MIN;
    for (got, want) in journal.iter().zip(&written) {
        assert!(
            got.seq > last_seq,
            "seq must increase in commit order: {journal:?}"
        );
        last_seq = got.seq;
        let got = StepRecord {
            seq: want.seq,
            ..got.clone()
        };
        assert_eq!(&got, want, "step round-trips");
    }
    let other = store.load_journal("other").await.expect("journal");
    assert_eq!(other.len(), 1, "journals are per workflow");
    assert!(
        store
            .load_journal("missing")
            .await
            .expect("journal")
            .is_empty()
    );
}

/// Committing a position twice fails with `DuplicateStep` and keeps the first.
pub async fn duplicate_step<S: Store>(store: S) {
    create_running(&store, "wf", "w").await;
    store
        .commit_step("wf", "w", step("0", json!("first")), None)
        .await
        .expect("commit");
    let r = store
        .commit_step("wf", "w", step("0", json!("second")), None)
        .await;
    assert_eq!(
        r,
        Err(StoreError::DuplicateStep {
            workflow_id: "wf".into(),
            position: "0".into()
        }),
        "second commit of position 0"
    );
    store
        .commit_step("wf", "w", step("1", json!("next")), None)
        .await
        .expect("commit after duplicate");
    let journal = store.load_journal("wf").await.expect("journal");
    let outputs: Vec<_> = journal
        .iter()
        .map(|s| (s.position.as_str(), s.output.clone()))
        .collect();
    assert_eq!(
        outputs,
        [("0", ok(json!("first"))), ("1", ok(json!("next")))]
    );
}

/// Failed attempts are recorded (fenced) and loaded in order.
pub async fn attempts<S: Store>(store: S) {
    create_running(&store, "wf", "w").await;
    create_running(&store, "other", "w").await;
    let records: Vec<AttemptRecord> = (1..=3)
        .map(|n| AttemptRecord {
            position: if n < 3 { "0".into() } else { "1/0".into() },
            step_id: format!("agent#1/model_request#{n}"),
            attempt: n,
            error: format!("HTTP 503: overloaded ({n}) ✗"),
            at: 1_700_000_000_000 + n as i64,
        })
        .collect();
    for r in &records {
        store
            .record_attempt("wf", "w", r.clone())
            .await
            .expect("record_attempt");
    }
    // The same attempt again (a replay after a crash) is kept as history too.
    store
        .record_attempt("wf", "w", records[0].clone())
        .await
        .expect("record_attempt again");
    let loaded = store.load_attempts("wf").await.expect("load_attempts");
    let mut want = records.clone();
    want.push(records[0].clone());
    assert_eq!(loaded, want, "attempts round-trip in order");
    assert!(
        store.load_attempts("other").await.expect("load").is_empty(),
        "attempts are per workflow"
    );
    assert!(
        store
            .load_attempts("missing")
            .await
            .expect("load")
            .is_empty()
    );
    let r = store
        .record_attempt("wf", "intruder", records[0].clone())
        .await;
    assert!(is_lease_lost(&r), "{r:?}");
    assert_eq!(store.load_attempts("wf").await.expect("load").len(), 4);
    assert!(
        store.load_journal("wf").await.expect("journal").is_empty(),
        "attempts are not steps"
    );
}
