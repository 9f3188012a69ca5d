//! Parent/child links hold when futures interleave in one task: parallel tool calls of one
//! response (each running a nested agent), and parallel workflow branches (each running an agent
//! whose tool runs a nested agent). The models sleep, so the branches really interleave.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast_core::{
    Agent, FunctionModel, Message, ModelResponse, RequestPart, ResponsePart, Tool, ToolCtx,
};
use steadfast_durable::{Engine, MemoryStore, Workflow, WorkflowCtx, WorkflowError};
use steadfast_otel::opentelemetry::trace::SpanId;
use steadfast_otel::opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use steadfast_otel::semconv;
use tracing_subscriber::layer::SubscriberExt;

/// Look up.
#[derive(Deserialize, JsonSchema)]
struct Lookup {
    /// The query.
    query: String,
}

fn returns(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter_map(Message::as_request)
        .flat_map(|r| r.parts.iter())
        .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
        .count()
}

fn searcher() -> Agent<(), String> {
    let model = FunctionModel::new_async(|m: Vec<Message>, _| async move {
        tokio::time::sleep(Duration::from_millis(3 + (m.len() as u64 % 3))).await;
        Ok(ModelResponse::text("found"))
    })
    .named("search-model");
    Agent::builder("searcher").model(model).build().unwrap()
}

/// Asks for `lookup` twice in one response, then answers.
fn planner() -> Agent<(), String> {
    let model = FunctionModel::new_async(|m: Vec<Message>, _| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(if returns(&m) == 0 {
            ModelResponse {
                parts: vec![
                    ResponsePart::tool_call(
                        "lookup",
                        json!({ "query": "a" }).to_string(),
                        "call_a",
                    ),
                    ResponsePart::tool_call(
                        "lookup",
                        json!({ "query": "b" }).to_string(),
                        "call_b",
                    ),
                ],
                ..Default::default()
            }
        } else {
            ModelResponse::text("done")
        })
    })
    .named("plan-model");
    let searcher = searcher();
    Agent::builder("planner")
        .model(model)
        .tool(Tool::new("lookup", move |ctx: ToolCtx<()>, a: Lookup| {
            let searcher = searcher.clone();
            async move { Ok(searcher.run_in(&ctx, a.query, ()).await?.output) }
        }))
        .build()
        .unwrap()
}

struct TwoBranches;

impl Workflow for TwoBranches {
    const NAME: &'static str = "two-branches";
    type Input = ();
    type Output = Vec<String>;

    async fn run(&self, ctx: &WorkflowCtx, _: ()) -> Result<Vec<String>, WorkflowError> {
        let agent = planner();
        let (a, b) = (ctx.branch("a"), ctx.branch("b"));
        let runs = ctx
            .join_all([agent.run_in(&a, "one", ()), agent.run_in(&b, "two", ())])
            .await;
        runs.into_iter().map(|r| Ok(r?.output)).collect()
    }
}

fn capture<F: std::future::Future<Output = ()>>(f: F) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    {
        let layer = steadfast_otel::tracing_layer(&provider);
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f);
    }
    exporter.get_finished_spans().unwrap()
}

fn by_id(spans: &[SpanData], id: SpanId) -> Option<&SpanData> {
    spans.iter().find(|s| s.span_context.span_id() == id)
}

fn parent<'a>(spans: &'a [SpanData], s: &SpanData) -> Option<&'a SpanData> {
    by_id(spans, s.parent_span_id)
}

fn children<'a>(spans: &'a [SpanData], s: &SpanData) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|c| c.parent_span_id == s.span_context.span_id())
        .collect()
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Each tool span holds exactly one nested agent, which holds exactly one model request.
fn check_tools(spans: &[SpanData], tools: &[&SpanData]) {
    let mut ids: Vec<String> = tools
        .iter()
        .filter_map(|t| attr(t, semconv::GEN_AI_TOOL_CALL_ID))
        .collect();
    ids.sort();
    assert_eq!(ids, ["call_a", "call_b"]);
    for t in tools {
        let kids = children(spans, t);
        assert_eq!(kids.len(), 1, "{}: {kids:#?}", t.name);
        assert_eq!(kids[0].name, "invoke_agent searcher");
        let chats: Vec<_> = children(spans, kids[0])
            .into_iter()
            .flat_map(|c| {
                if c.name.starts_with("step ") {
                    children(spans, c)
                } else {
                    vec![c]
                }
            })
            .filter(|c| c.name == "chat search-model")
            .collect();
        assert_eq!(chats.len(), 1, "{chats:#?}");
    }
}

#[test]
fn parallel_tool_calls_keep_their_nested_agents() {
    let spans = capture(async {
        assert_eq!(planner().run("go", ()).await.unwrap().output, "done");
    });
    let root = spans
        .iter()
        .find(|s| s.name == "invoke_agent planner")
        .unwrap();
    let tools: Vec<&SpanData> = children(&spans, root)
        .into_iter()
        .filter(|s| s.name == "execute_tool lookup")
        .collect();
    assert_eq!(tools.len(), 2);
    check_tools(&spans, &tools);
    assert_eq!(
        spans.len(),
        1 + 2 + 2 * 3,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

#[test]
fn parallel_workflow_branches_keep_their_steps() {
    let spans = capture(async {
        let engine = Engine::new(MemoryStore::new());
        let worker = engine.worker().workflow(TwoBranches).start();
        let out = engine
            .start::<TwoBranches>("wf-branches", ())
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
        assert_eq!(out, ["done", "done"]);
        worker.shutdown().await;
    });
    // Every step sits under the spans of its own namespace: its nearest ancestor step (if any)
    // is its namespace's owner, and its agent's other steps share its branch.
    let steps: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("step "))
        .collect();
    assert!(steps.len() >= 2 * (2 + 2 + 2), "{}", steps.len());
    for s in &steps {
        let id = attr(s, semconv::STEADFAST_STEP_ID).unwrap();
        let mut up = parent(&spans, s);
        while let Some(p) = up {
            if let Some(pid) = attr(p, semconv::STEADFAST_STEP_ID) {
                assert!(
                    id.starts_with(&format!("{pid}/")),
                    "step {id} sits under step {pid}"
                );
                break;
            }
            up = parent(&spans, p);
        }
        let agent = parent(&spans, s).unwrap();
        assert!(agent.name.starts_with("invoke_agent"), "{}", agent.name);
        let branch = id.split('/').next().unwrap().to_string();
        for sibling in children(&spans, agent) {
            let sid = attr(sibling, semconv::STEADFAST_STEP_ID).unwrap();
            assert_eq!(sid.split('/').next().unwrap(), branch, "{sid} next to {id}");
        }
    }
    let agents: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "invoke_agent planner")
        .collect();
    assert_eq!(agents.len(), 2);
    for a in &agents {
        let tools: Vec<&SpanData> = children(&spans, a)
            .into_iter()
            .filter(|s| attr(s, semconv::STEADFAST_STEP_KIND).as_deref() == Some("tool"))
            .flat_map(|step| children(&spans, step))
            .collect();
        assert_eq!(tools.len(), 2, "two tool calls per branch");
        check_tools(&spans, &tools);
        let wf = parent(&spans, a).unwrap();
        assert_eq!(wf.name, "workflow two-branches");
    }
}
