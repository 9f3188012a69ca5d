//! The real-receiver scenario: export to a running Arize Phoenix (started by `.ci/phoenix.sh`),
//! then read the spans back over its REST API and check names, attributes, nesting, replay marks
//! and token counts.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use steadfast_durable::Engine;
use steadfast_otel::{Config, Protocol};

use super::*;

/// The receiver's address from `var`, or `None` with a SKIP line. Under `CI=true` a missing
/// receiver is a failure: CI must start one.
pub fn receiver(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().trim_end_matches('/').to_string()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{var} is not set, but CI=true: start Phoenix with `eval \"$(bash .ci/phoenix.sh)\"`"
            );
            println!(
                "SKIP: {var} is not set (start Phoenix with `eval \"$(bash .ci/phoenix.sh)\"`)"
            );
            None
        }
    }
}

/// One span as Phoenix gives it back.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent: Option<String>,
    pub name: String,
    pub duration: Duration,
    pub attrs: HashMap<String, Value>,
    pub status_code: Option<String>,
}

impl Span {
    pub fn str(&self, k: &str) -> Option<&str> {
        self.attrs.get(k).and_then(Value::as_str)
    }
    pub fn int(&self, k: &str) -> Option<i64> {
        self.attrs.get(k).and_then(Value::as_i64)
    }
    pub fn bool(&self, k: &str) -> Option<bool> {
        self.attrs.get(k).and_then(Value::as_bool)
    }
}

fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("string_value").filter(|x| !x.is_null()) {
        return s.clone();
    }
    if let Some(b) = v.get("bool_value").filter(|x| !x.is_null()) {
        return b.clone();
    }
    if let Some(i) = v.get("int_value").filter(|x| !x.is_null()) {
        return match i {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("double_value").filter(|x| !x.is_null()) {
        return match d {
            Value::String(s) => s.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
            other => other.clone(),
        };
    }
    if let Some(a) = v.get("array_value").filter(|x| !x.is_null()) {
        let items = a
            .get("values")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        return Value::Array(items.iter().map(any_value).collect());
    }
    Value::Null
}

fn nanos(v: Option<&Value>) -> u128 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().map(u128::from).unwrap_or(0),
        _ => 0,
    }
}

fn parse_span(v: &Value) -> Span {
    let attrs = v
        .get("attributes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|kv| {
                    let k = kv.get("key")?.as_str()?.to_string();
                    Some((k, any_value(kv.get("value")?)))
                })
                .collect()
        })
        .unwrap_or_default();
    let start = nanos(v.get("start_time_unix_nano"));
    let end = nanos(v.get("end_time_unix_nano"));
    let status_code = v
        .get("status")
        .and_then(|s| s.get("code"))
        .map(|c| c.to_string());
    Span {
        trace_id: v["trace_id"].as_str().unwrap_or_default().to_string(),
        span_id: v["span_id"].as_str().unwrap_or_default().to_string(),
        parent: v
            .get("parent_span_id")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        name: v["name"].as_str().unwrap_or_default().to_string(),
        duration: Duration::from_nanos(end.saturating_sub(start) as u64),
        attrs,
        status_code,
    }
}

/// Polls Phoenix until project `project` holds at least `want` spans (and no more arrive for a
/// moment), or a minute passes.
pub async fn fetch_spans(base: &str, project: &str, want: usize) -> Vec<Span> {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/projects/{project}/spans/otlpv1?limit=1000");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    loop {
        let mut spans = Vec::new();
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
            && let Ok(body) = r.json::<Value>().await
        {
            spans = body["data"]
                .as_array()
                .map(|d| d.iter().map(parse_span).collect())
                .unwrap_or_default();
        }
        if spans.len() >= want && spans.len() == last {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "Phoenix has {} spans in project {project} after 60 s; expected {want}",
            spans.len()
        );
        last = spans.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A project name of its own for each test run.
pub fn unique_project(tag: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("steadfast-{tag}-{}-{t}", std::process::id())
}

fn one<'a>(spans: &'a [Span], pred: impl Fn(&Span) -> bool, what: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pred(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {what}, found {}: {found:#?}",
        found.len()
    );
    found[0]
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| {
            s.parent.as_deref() == Some(parent.span_id.as_str()) && s.trace_id == parent.trace_id
        })
        .collect()
}

fn child<'a>(spans: &'a [Span], parent: &Span, name: &str) -> &'a Span {
    let c: Vec<&Span> = children(spans, parent)
        .into_iter()
        .filter(|s| s.name == name)
        .collect();
    assert_eq!(
        c.len(),
        1,
        "`{}` should have one child `{name}`: {c:#?}",
        parent.name
    );
    c[0]
}

fn check_chat(s: &Span, model: &str, (input, output, cost): (u64, u64, f64)) {
    assert_eq!(s.name, format!("chat {model}"));
    assert_eq!(s.str(semconv::GEN_AI_OPERATION_NAME), Some("chat"));
    assert_eq!(s.str(semconv::GEN_AI_PROVIDER_NAME), Some("function"));
    assert_eq!(s.str(semconv::GEN_AI_REQUEST_MODEL), Some(model));
    assert_eq!(s.str(semconv::GEN_AI_RESPONSE_MODEL), Some(model));
    assert_eq!(
        s.int(semconv::GEN_AI_USAGE_INPUT_TOKENS),
        Some(input as i64)
    );
    assert_eq!(
        s.int(semconv::GEN_AI_USAGE_OUTPUT_TOKENS),
        Some(output as i64)
    );
    let c = s
        .attrs
        .get(semconv::OPERATION_COST)
        .and_then(Value::as_f64)
        .unwrap_or(-1.0);
    assert!((c - cost).abs() < 1e-12, "cost {c} != {cost}");
    let reasons = s
        .str(semconv::GEN_AI_RESPONSE_FINISH_REASONS)
        .unwrap_or_default();
    assert!(
        reasons == r#"["tool_call"]"# || reasons == r#"["stop"]"#,
        "{reasons}"
    );
}

use steadfast_otel::semconv;

/// The whole scenario over `protocol` to `endpoint`; spans are read back from `phoenix`.
pub async fn export_and_read_back(phoenix: &str, endpoint: &str, protocol: Protocol, tag: &str) {
    let project = unique_project(tag);
    let mut config = Config::default()
        .with_endpoint(endpoint, protocol)
        .with_resource_attribute("openinference.project.name", project.clone());
    config.metrics = false; // Phoenix takes traces only
    config.service_name = format!("steadfast-otel-test-{tag}");
    let guard = steadfast_otel::init_with(config).expect("init");

    // 1. A plain run: an agent with a tool that runs a nested agent.
    let plain = planner().run(PROMPT, ()).await.expect("plain run");

    // 2. A durable workflow on SQLite, interrupted (worker shut down while it waits for a
    //    message) and resumed by a new worker, which replays the agent's steps.
    let path = temp_db(tag);
    let engine = Engine::new(steadfast_sqlite::SqliteStore::open(&path).expect("sqlite"));
    let wf_id = format!("{project}-wf");
    let (out, published) = interrupted_research(&engine, &wf_id).await;
    assert!(out.starts_with(FINAL_ANSWER));
    assert_eq!(published, 1);
    let history = engine.history(&wf_id).await.expect("history");
    super::remove_db(&path);

    tokio::task::spawn_blocking(move || {
        guard.flush().expect("flush");
        drop(guard);
    })
    .await
    .unwrap();

    // 6 spans for the plain run, 12 for the first execution, 7 for the resumed one.
    let spans = fetch_spans(phoenix, &project, 25).await;
    assert_eq!(
        spans.len(),
        25,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );

    // --- the plain run: invoke_agent > chat, execute_tool > invoke_agent > chat, chat
    let root = one(
        &spans,
        |s| s.name == "invoke_agent planner" && s.parent.is_none(),
        "plain root",
    );
    assert_eq!(
        root.str(semconv::GEN_AI_OPERATION_NAME),
        Some("invoke_agent")
    );
    assert_eq!(root.str(semconv::GEN_AI_AGENT_NAME), Some("planner"));
    let kids = children(&spans, root);
    let mut names: Vec<&str> = kids.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["chat plan-model", "chat plan-model", "execute_tool lookup"]
    );
    for c in kids.iter().filter(|s| s.name.starts_with("chat")) {
        check_chat(c, "plan-model", PLANNER_USAGE);
    }
    let tool = child(&spans, root, "execute_tool lookup");
    assert_eq!(
        tool.str(semconv::GEN_AI_OPERATION_NAME),
        Some("execute_tool")
    );
    assert_eq!(tool.str(semconv::GEN_AI_TOOL_NAME), Some("lookup"));
    assert_eq!(tool.str(semconv::GEN_AI_TOOL_CALL_ID), Some("call_1"));
    let nested = child(&spans, tool, "invoke_agent searcher");
    check_chat(
        child(&spans, nested, "chat search-model"),
        "search-model",
        SEARCHER_USAGE,
    );
    // Token counts on the spans equal the usage the models reported.
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let sum = |k: &str| -> i64 {
        trace
            .iter()
            .filter(|s| s.name.starts_with("chat "))
            .filter_map(|s| s.int(k))
            .sum()
    };
    assert_eq!(
        sum(semconv::GEN_AI_USAGE_INPUT_TOKENS),
        plain.usage.input_tokens as i64
    );
    assert_eq!(
        sum(semconv::GEN_AI_USAGE_OUTPUT_TOKENS),
        plain.usage.output_tokens as i64
    );
    assert_eq!(
        root.int(semconv::GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS),
        Some(plain.usage.input_tokens as i64)
    );
    assert_eq!(root.int(semconv::STEADFAST_REQUESTS), Some(3));

    // --- the workflow: two executions, each its own trace
    let wfs: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "workflow research")
        .collect();
    assert_eq!(wfs.len(), 2);
    for w in &wfs {
        assert!(w.parent.is_none());
        assert_eq!(w.str(semconv::STEADFAST_WORKFLOW_ID), Some(wf_id.as_str()));
        assert_eq!(w.str(semconv::STEADFAST_WORKFLOW_NAME), Some("research"));
        assert_eq!(
            w.int(semconv::GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS),
            Some(230)
        );
    }
    let first = one(
        &spans,
        |s| {
            s.name == "workflow research"
                && s.str(semconv::STEADFAST_WORKFLOW_STATUS) == Some("suspended")
        },
        "suspended execution",
    );
    let second = one(
        &spans,
        |s| {
            s.name == "workflow research"
                && s.str(semconv::STEADFAST_WORKFLOW_STATUS) == Some("completed")
        },
        "completed execution",
    );
    assert_ne!(first.trace_id, second.trace_id);

    // First execution: every step ran (replayed = false); chat spans live inside their steps.
    let agent1 = child(&spans, first, "invoke_agent planner");
    let steps1 = children(&spans, agent1);
    assert_eq!(steps1.len(), 3, "{steps1:#?}");
    for s in &steps1 {
        assert_eq!(s.bool(semconv::STEADFAST_REPLAYED), Some(false), "{s:#?}");
        assert_eq!(s.int(semconv::STEADFAST_STEP_ATTEMPT), Some(1));
    }
    let mr1 = child(&spans, agent1, "step planner#1/model_request#1");
    assert_eq!(mr1.str(semconv::STEADFAST_STEP_KIND), Some("model_request"));
    assert_eq!(
        mr1.str(semconv::STEADFAST_STEP_NAME),
        Some("agent__planner__model_request")
    );
    check_chat(
        child(&spans, mr1, "chat plan-model"),
        "plan-model",
        PLANNER_USAGE,
    );
    let tool_step = child(&spans, agent1, "step planner#1/tool__lookup#1");
    assert_eq!(tool_step.str(semconv::STEADFAST_STEP_KIND), Some("tool"));
    let tool1 = child(&spans, tool_step, "execute_tool lookup");
    let nested1 = child(&spans, tool1, "invoke_agent searcher");
    let nested_step = child(
        &spans,
        nested1,
        "step planner#1/tool__lookup#1/searcher#1/model_request#1",
    );
    check_chat(
        child(&spans, nested_step, "chat search-model"),
        "search-model",
        SEARCHER_USAGE,
    );
    let recv1 = child(&spans, first, "step recv__go#1");
    assert_eq!(
        recv1.bool(semconv::STEADFAST_REPLAYED),
        None,
        "the wait never finished"
    );

    // Second execution: the agent's steps are replayed, in microseconds, with no model calls.
    let agent2 = child(&spans, second, "invoke_agent planner");
    let steps2 = children(&spans, agent2);
    assert_eq!(steps2.len(), 3, "{steps2:#?}");
    for s in &steps2 {
        assert_eq!(s.bool(semconv::STEADFAST_REPLAYED), Some(true), "{s:#?}");
        assert!(
            children(&spans, s).is_empty(),
            "a replayed step calls nothing: {s:#?}"
        );
        assert!(
            s.duration < Duration::from_millis(50),
            "replay took {:?}",
            s.duration
        );
    }
    assert_eq!(
        agent2.int(semconv::GEN_AI_AGGREGATED_USAGE_INPUT_TOKENS),
        Some(230)
    );
    let recv2 = child(&spans, second, "step recv__go#1");
    assert_eq!(recv2.bool(semconv::STEADFAST_REPLAYED), Some(false));
    let publish = child(&spans, second, "step publish#1");
    assert_eq!(publish.bool(semconv::STEADFAST_REPLAYED), Some(false));
    assert_eq!(second.int(semconv::STEADFAST_STEPS_REPLAYED), Some(3));
    assert_eq!(first.int(semconv::STEADFAST_STEPS_REPLAYED), Some(0));

    // Token counts of the workflow's chat spans equal the usage journaled from the model.
    let wf_traces = [first.trace_id.as_str(), second.trace_id.as_str()];
    let chats: Vec<&Span> = spans
        .iter()
        .filter(|s| wf_traces.contains(&s.trace_id.as_str()) && s.name.starts_with("chat "))
        .collect();
    assert_eq!(chats.len(), 3, "one chat span per request actually sent");
    let journaled: (i64, i64) = history
        .steps
        .iter()
        .filter(|s| s.kind == steadfast_durable::StepKind::ModelRequest)
        .filter_map(|s| s.output.as_ref().ok().map(|o| o.to_value()))
        .map(|o| {
            (
                o["usage"]["input_tokens"].as_i64().unwrap_or(0),
                o["usage"]["output_tokens"].as_i64().unwrap_or(0),
            )
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let on_spans = chats.iter().fold((0, 0), |a, s| {
        (
            a.0 + s.int(semconv::GEN_AI_USAGE_INPUT_TOKENS).unwrap_or(0),
            a.1 + s.int(semconv::GEN_AI_USAGE_OUTPUT_TOKENS).unwrap_or(0),
        )
    });
    assert_eq!(on_spans, journaled);
    assert_eq!(on_spans, (230, 46));

    // Content is off by default: no prompt, arguments or completion reached the receiver.
    for s in &spans {
        for v in s.attrs.values() {
            let t = v.to_string();
            for marker in [PROMPT, TOOL_QUERY, SEARCH_ANSWER, FINAL_ANSWER] {
                assert!(!t.contains(marker), "content leaked into {}: {t}", s.name);
            }
        }
    }
    println!(
        "{} spans read back from Phoenix project {project}",
        spans.len()
    );
}
