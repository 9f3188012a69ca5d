//! Kit cases: claims, leases, fencing, recovery, and concurrent writers.

use super::*;

/// Two owners claiming from many tasks at once never get the same workflow.
pub async fn claim_is_exclusive<S: Store>(store: S) {
    const N: usize = 60;
    let store = Arc::new(store);
    for i in 0..N {
        create(&*store, &format!("wf{i:02}"), NAME).await;
    }
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        let owner = if t % 2 == 0 { "owner-a" } else { "owner-b" };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut empty = 0;
            while empty < 3 {
                let ids = claim_ids(&*store, owner, 3, LONG).await;
                assert!(ids.len() <= 3, "claim returned more than its limit");
                assert!(
                    got.len() <= N,
                    "one task claimed more than {N} times: {got:?}"
                );
                if ids.is_empty() {
                    empty += 1;
                    tokio::task::yield_now().await;
                }
                got.extend(ids.into_iter().map(|id| (id, owner)));
            }
            got
        }));
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for task in tasks {
        for (id, owner) in task.await.expect("claim task") {
            if let Some(first) = seen.insert(id.clone(), owner) {
                panic!("`{id}` was claimed twice: by `{first}` and by `{owner}`");
            }
        }
    }
    assert_eq!(seen.len(), N, "every workflow claimed once");
    for (id, owner) in &seen {
        let r = get(&*store, id).await;
        assert_eq!(r.owner.as_deref(), Some(*owner), "owner of `{id}`");
        assert_eq!(r.status, WorkflowStatus::Running);
    }
}

/// Claims respect the names filter and the limit, and skip what is not runnable.
pub async fn claim_filters<S: Store>(store: S) {
    for i in 0..4 {
        create(&store, &format!("a{i}"), "alpha").await;
        create(&store, &format!("b{i}"), "beta").await;
    }
    create(&store, "g0", "gamma").await;
    let alpha = names(&["alpha"]);
    let claims = store.claim("w", &alpha, 3, LONG, &[]).await.expect("claim");
    let mut ids: Vec<String> = claims.iter().map(|c| c.record.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["a0", "a1", "a2"], "names filter and limit");
    let now = now_millis();
    for c in &claims {
        let lease = c.record.lease_expires_at.expect("lease");
        assert!(
            lease >= now + 50_000,
            "lease of 60 s reaches {lease}, now {now}"
        );
        assert_eq!(
            c.record,
            get(&store, &c.record.id).await,
            "claim returns the stored record"
        );
    }
    assert!(
        store
            .claim("w", &alpha, 0, LONG, &[])
            .await
            .expect("claim")
            .is_empty(),
        "limit 0"
    );

    // Running with a live lease: not claimable, even by its own owner.
    let claims = store
        .claim("x", &alpha, 10, LONG, &[])
        .await
        .expect("claim");
    let ids: Vec<&str> = claims.iter().map(|c| c.record.id.as_str()).collect();
    assert_eq!(ids, ["a3"]);
    assert!(
        store
            .claim("w", &alpha, 10, LONG, &[])
            .await
            .expect("claim")
            .is_empty()
    );

    let two = names(&["beta", "gamma"]);
    let claims = store.claim("w", &two, 10, LONG, &[]).await.expect("claim");
    let mut ids: Vec<String> = claims.iter().map(|c| c.record.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["b0", "b1", "b2", "b3", "g0"], "several names");
    assert!(
        store
            .claim("w", &names(&["nothing"]), 10, LONG, &[])
            .await
            .expect("claim")
            .is_empty()
    );

    // Finished workflows are never claimable.
    store
        .finish(
            "a0",
            "w",
            Outcome::Finished {
                status: WorkflowStatus::Completed,
                output: json!(1),
            },
        )
        .await
        .expect("finish");
    assert!(
        store
            .claim("z", &alpha, 10, LONG, &["w".into(), "x".into()])
            .await
            .expect("claim")
            .iter()
            .all(|c| c.record.id != "a0"),
        "a completed workflow was claimed"
    );
}

/// Renewal extends a lease; another worker's writes fail with `LeaseLost`.
pub async fn lease_renewal_and_fencing<S: Store>(store: S) {
    create(&store, "wf", NAME).await;
    assert_eq!(
        claim_ids(&store, "a", 1, Duration::from_millis(300)).await,
        ["wf"]
    );
    let before = get(&store, "wf").await.lease_expires_at.expect("lease");

    let ids = names(&["wf", "missing"]);
    let states = store.renew("a", &ids, LONG).await.expect("renew");
    assert_eq!(states.len(), 2, "one state per id");
    assert_eq!(states[0].id, "wf");
    assert!(states[0].held, "owner renews its lease");
    assert!(!states[0].cancel_requested);
    assert_eq!(states[1].id, "missing");
    assert!(!states[1].held, "no lease on a missing workflow");
    let after = get(&store, "wf").await.lease_expires_at.expect("lease");
    assert!(
        after >= before + 50_000,
        "renewed lease {after} not extended past {before}"
    );

    let other = store
        .renew("b", &names(&["wf"]), LONG)
        .await
        .expect("renew");
    assert!(!other[0].held, "a non-owner does not hold the lease");
    assert_eq!(
        get(&store, "wf").await.lease_expires_at,
        Some(after),
        "non-owner renew changed the lease"
    );

    // The original lease would have expired by now; the renewed one keeps others out.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        claim_ids(&store, "b", 10, LONG).await.is_empty(),
        "renewed lease was taken over"
    );

    let r = store
        .commit_step("wf", "b", step("0", json!(0)), None)
        .await;
    assert!(is_lease_lost(&r), "commit by non-owner: {r:?}");
    let attempt = AttemptRecord {
        position: "0".into(),
        step_id: "s".into(),
        attempt: 1,
        error: "e".into(),
        at: 1,
    };
    let r = store.record_attempt("wf", "b", attempt.clone()).await;
    assert!(is_lease_lost(&r), "record_attempt by non-owner: {r:?}");
    let done = Outcome::Finished {
        status: WorkflowStatus::Completed,
        output: json!("x"),
    };
    let r = store.finish("wf", "b", done.clone()).await;
    assert!(is_lease_lost(&r), "finish by non-owner: {r:?}");
    assert!(
        store.load_journal("wf").await.expect("journal").is_empty(),
        "fenced commit wrote"
    );
    assert!(
        store
            .load_attempts("wf")
            .await
            .expect("attempts")
            .is_empty(),
        "fenced attempt wrote"
    );
    assert_eq!(get(&store, "wf").await.status, WorkflowStatus::Running);

    // Missing workflows.
    let r = store
        .commit_step("missing", "a", step("0", json!(0)), None)
        .await;
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "commit on missing: {r:?}"
    );
    let r = store.finish("missing", "a", done.clone()).await;
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "finish on missing: {r:?}"
    );
    let r = store.record_attempt("missing", "a", attempt).await;
    assert!(
        matches!(r, Err(StoreError::NotFound(_))),
        "record_attempt on missing: {r:?}"
    );

    // The owner still writes; after finishing it holds nothing.
    store
        .commit_step("wf", "a", step("0", json!(0)), None)
        .await
        .expect("owner commit");
    store.finish("wf", "a", done).await.expect("owner finish");
    let r = store
        .commit_step("wf", "a", step("1", json!(1)), None)
        .await;
    assert!(is_lease_lost(&r), "commit after finish: {r:?}");
    let states = store
        .renew("a", &names(&["wf"]), LONG)
        .await
        .expect("renew");
    assert!(!states[0].held, "lease held after finish");
}

/// An expired lease lets another worker claim; the first one's writes then fail.
pub async fn expired_lease_recovery<S: Store>(store: S) {
    const LEASE: Duration = Duration::from_millis(150);
    create(&store, "wf", NAME).await;
    let start = Instant::now();
    assert_eq!(claim_ids(&store, "a", 1, LEASE).await, ["wf"]);
    store
        .commit_step("wf", "a", step("0", json!("a")), None)
        .await
        .expect("commit");
    assert!(
        claim_ids(&store, "b", 1, LONG).await.is_empty(),
        "live lease taken over"
    );
    claim_eventually(&store, "b", "wf").await;
    // Leases are kept in whole milliseconds of the wall clock: the claim's instant is rounded
    // down, so the expiry may come up to a millisecond before `LEASE` on the monotonic clock.
    assert!(
        start.elapsed() + Duration::from_millis(1) >= LEASE,
        "taken over after {:?}, before the lease expired",
        start.elapsed()
    );
    assert_eq!(get(&store, "wf").await.owner.as_deref(), Some("b"));
    assert_eq!(store.running_owners().await, Ok(vec!["b".to_owned()]));

    let r = store
        .commit_step("wf", "a", step("1", json!("a")), None)
        .await;
    assert!(is_lease_lost(&r), "commit by the expired owner: {r:?}");
    let states = store
        .renew("a", &names(&["wf"]), LONG)
        .await
        .expect("renew");
    assert!(!states[0].held, "expired owner renewed a taken-over lease");
    let r = store
        .finish(
            "wf",
            "a",
            Outcome::Suspended {
                wake_at: None,
                waiting_on: vec![],
            },
        )
        .await;
    assert!(is_lease_lost(&r), "finish by the expired owner: {r:?}");

    store
        .commit_step("wf", "b", step("1", json!("b")), None)
        .await
        .expect("new owner commits");
    let journal = store.load_journal("wf").await.expect("journal");
    let outputs: Vec<_> = journal.iter().map(|s| s.output.clone()).collect();
    assert_eq!(
        outputs,
        [ok(json!("a")), ok(json!("b"))],
        "journal keeps both owners' steps"
    );
}

/// A running workflow whose owner is dead is claimable at once.
pub async fn dead_owner_takeover<S: Store>(store: S) {
    create_running(&store, "wf1", "dead").await;
    create_running(&store, "wf2", "alive").await;
    let mut owners = store.running_owners().await.expect("owners");
    owners.sort();
    assert_eq!(owners, ["alive", "dead"], "running_owners");

    let n = names(&[NAME]);
    let claims = store
        .claim("new", &n, 10, LONG, &names(&["gone"]))
        .await
        .expect("claim");
    assert!(claims.is_empty(), "live leases taken over: {claims:?}");
    let claims = store
        .claim("new", &n, 10, LONG, &names(&["dead", "gone"]))
        .await
        .expect("claim");
    let ids: Vec<&str> = claims.iter().map(|c| c.record.id.as_str()).collect();
    assert_eq!(ids, ["wf1"], "only the dead owner's workflow");
    assert_eq!(claims[0].record.owner.as_deref(), Some("new"));

    let mut owners = store.running_owners().await.expect("owners");
    owners.sort();
    assert_eq!(owners, ["alive", "new"], "running_owners after takeover");
    let r = store
        .commit_step("wf1", "dead", step("0", json!(0)), None)
        .await;
    assert!(is_lease_lost(&r), "commit by the dead owner: {r:?}");
    store
        .commit_step("wf1", "new", step("0", json!(0)), None)
        .await
        .expect("commit");
    store
        .finish(
            "wf1",
            "new",
            Outcome::Finished {
                status: WorkflowStatus::Failed,
                output: json!("boom"),
            },
        )
        .await
        .expect("finish");
    assert_eq!(store.running_owners().await, Ok(vec!["alive".to_owned()]));
}

/// Many tasks commit steps at once: every journal ends complete and in order.
pub async fn concurrent_writers<S: Store>(store: S) {
    const WORKFLOWS: usize = 8;
    const STEPS: usize = 50;
    let store = Arc::new(store);
    for w in 0..WORKFLOWS {
        create_running(&*store, &format!("wf{w}"), "w").await;
    }
    create_running(&*store, "shared", "w").await;
    let mut tasks = Vec::new();
    for w in 0..WORKFLOWS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("wf{w}");
            for s in 0..STEPS {
                let position = s.to_string();
                store
                    .commit_step(&id, "w", step(&position, json!({ "w": w, "s": s })), None)
                    .await
                    .unwrap_or_else(|e| panic!("commit {id}/{position}: {e}"));
                // Parallel branches of one workflow, committing into their own namespaces.
                let branch = format!("{w}/{s}");
                store
                    .commit_step("shared", "w", step(&branch, json!(branch)), None)
                    .await
                    .unwrap_or_else(|e| panic!("commit shared/{branch}: {e}"));
            }
        }));
    }
    // Readers alongside the writers.
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let journal = store.load_journal("wf0").await.expect("journal");
                for (i, s) in journal.iter().enumerate() {
                    assert_eq!(s.position, i.to_string(), "a reader saw a gap");
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for task in tasks {
        task.await.expect("writer task");
    }
    reader.await.expect("reader task");

    for w in 0..WORKFLOWS {
        let journal = store
            .load_journal(&format!("wf{w}"))
            .await
            .expect("journal");
        let positions: Vec<String> = journal.iter().map(|s| s.position.clone()).collect();
        let want: Vec<String> = (0..STEPS).map(|s| s.to_string()).collect();
        assert_eq!(positions, want, "journal of wf{w} complete and in order");
        assert!(
            journal.windows(2).all(|p| p[0].seq < p[1].seq),
            "seq increases"
        );
        for (s, rec) in journal.iter().enumerate() {
            assert_eq!(rec.output, ok(json!({ "w": w, "s": s })));
        }
    }
    let shared = store.load_journal("shared").await.expect("journal");
    assert_eq!(shared.len(), WORKFLOWS * STEPS, "shared journal complete");
    assert!(
        shared.windows(2).all(|p| p[0].seq < p[1].seq),
        "seq increases"
    );
    let unique: HashSet<&str> = shared.iter().map(|s| s.position.as_str()).collect();
    assert_eq!(unique.len(), WORKFLOWS * STEPS);
    // Each branch's own steps appear in its program order.
    for w in 0..WORKFLOWS {
        let prefix = format!("{w}/");
        let order: Vec<usize> = shared
            .iter()
            .filter_map(|s| s.position.strip_prefix(&prefix)?.parse().ok())
            .collect();
        assert_eq!(order, (0..STEPS).collect::<Vec<_>>(), "branch {w} in order");
    }
    let summaries = store
        .list_workflows(ListFilter::default())
        .await
        .expect("list");
    for s in summaries {
        let want = if s.record.id == "shared" {
            WORKFLOWS * STEPS
        } else {
            STEPS
        };
        assert_eq!(s.steps, want as u64, "step count of {}", s.record.id);
    }
}

/// `start_claimed` creates a workflow running under the caller's lease (or, by the trait's
/// default, pending), reports an existing one without claiming it, and fences like `claim`.
pub async fn start_claimed<S: Store>(store: S) {
    let (created, claim) = store
        .start_claimed(new_wf("sc", NAME), "a", LONG)
        .await
        .expect("start_claimed");
    assert_eq!(created, Created::New, "start_claimed of a new id");
    let Some(claim) = claim else {
        // The trait's default: a pending workflow, for a worker's claim.
        assert_eq!(get(&store, "sc").await.status, WorkflowStatus::Pending);
        return;
    };
    let r = get(&store, "sc").await;
    assert_eq!(claim.record, r, "the claim is the stored record");
    assert_eq!(r.status, WorkflowStatus::Running);
    assert_eq!(r.owner.as_deref(), Some("a"));
    assert_eq!(r.input, json!({ "id": "sc" }));
    let lease = r.lease_expires_at.expect("a lease");
    assert!(
        lease >= now_millis() + LONG.as_millis() as i64 - 5_000,
        "lease {lease} is not about {LONG:?} long"
    );
    // Held: nobody else claims it, and the owner's writes are fenced as after `claim`.
    assert!(
        claim_ids(&store, "b", 10, LONG).await.is_empty(),
        "taken over"
    );
    let r = store
        .commit_step("sc", "b", step("0", json!(0)), None)
        .await;
    assert!(is_lease_lost(&r), "commit by non-owner: {r:?}");
    store
        .commit_step("sc", "a", step("0", json!(0)), None)
        .await
        .expect("commit by the owner");
    // An existing workflow is reported as it is, and not claimed.
    let (again, claim) = store
        .start_claimed(new_wf("sc", NAME), "b", LONG)
        .await
        .expect("start_claimed again");
    assert!(claim.is_none(), "an existing workflow was claimed again");
    match again {
        Created::Existing(e) => {
            assert_eq!(e.owner.as_deref(), Some("a"), "existing record");
            assert_eq!(e.status, WorkflowStatus::Running, "existing record");
        }
        Created::New => panic!("start_claimed of an existing id created it again"),
    }
    let done = Outcome::Finished {
        status: WorkflowStatus::Completed,
        output: json!("done"),
    };
    store.finish("sc", "a", done).await.expect("finish");
    let r = get(&store, "sc").await;
    assert_eq!(r.status, WorkflowStatus::Completed);
    assert_eq!(r.owner, None, "a finished workflow has no owner");
    let journal = store.load_journal("sc").await.expect("journal");
    assert_eq!(journal.len(), 1, "the owner's step is in the journal");
}
