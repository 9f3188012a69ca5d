//! Running evaluations: error capture, repeats, concurrency, retries, timeouts, recorded metrics,
//! and usage and traces collected from agent runs (FunctionModel and TestModel agents).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use steadfast_core::{
    Agent, FunctionModel, Message, ModelResponse, RequestPart, TestModel, Tool, ToolCtx, ToolError,
};
use steadfast_evals::{
    Case, Dataset, EqualsExpected, EvaluateOptions, Evaluator, EvaluatorContext, EvaluatorResult,
    HasMatchingSpan, SpanKind, SpanQuery, ToolCalled, evaluator_fn,
};

type Err = Box<dyn std::error::Error + Send + Sync>;

fn quiet() -> EvaluateOptions {
    EvaluateOptions::new().progress(false)
}

fn numbers() -> Dataset<i64, i64> {
    Dataset::new("numbers")
        .case(Case::new("one", 1).expected_output(2))
        .case(Case::new("two", 2).expected_output(4))
        .case(Case::new("three", 3).expected_output(6))
        .evaluator(EqualsExpected::default())
}

#[tokio::test]
async fn task_errors_and_panics_are_captured_per_case() {
    let report = numbers()
        .evaluate(
            |n: i64| async move {
                match n {
                    2 => Err::<i64, Err>("the service is down".into()),
                    3 => panic!("boom at three"),
                    n => Ok(n * 2),
                }
            },
            quiet(),
        )
        .await;
    assert_eq!(report.cases.len(), 1);
    assert_eq!(report.cases[0].name, "one");
    assert_eq!(report.cases[0].assertion("EqualsExpected"), Some(true));
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.failure("two").unwrap().error, "the service is down");
    assert_eq!(
        report.failure("three").unwrap().error,
        "panicked: boom at three"
    );
    assert!(!report.all_passed());
}

struct Broken;

impl Evaluator<i64, i64> for Broken {
    fn evaluate_sync(&self, ctx: &EvaluatorContext<i64, i64>) -> EvaluatorResult {
        if ctx.inputs == 2 {
            panic!("evaluator panicked on two");
        }
        Err("cannot judge".into())
    }
}

#[tokio::test]
async fn evaluator_errors_and_panics_are_captured_and_the_other_results_stand() {
    let report = numbers()
        .evaluator(Broken)
        .evaluate(|n: i64| async move { Ok::<_, Err>(n * 2) }, quiet())
        .await;
    assert!(report.failures.is_empty());
    for c in &report.cases {
        assert_eq!(c.assertion("EqualsExpected"), Some(true), "{}", c.name);
        assert_eq!(c.evaluator_failures.len(), 1);
        assert_eq!(c.evaluator_failures[0].name, "Broken");
    }
    assert_eq!(
        report.case("one").unwrap().evaluator_failures[0].error,
        "cannot judge"
    );
    assert_eq!(
        report.case("two").unwrap().evaluator_failures[0].error,
        "panicked: evaluator panicked on two"
    );
}

#[tokio::test]
async fn an_evaluator_implementing_nothing_says_so() {
    struct Empty;
    impl Evaluator<i64, i64> for Empty {}
    let report = numbers()
        .evaluator(Empty)
        .evaluate(|n: i64| async move { Ok::<_, Err>(n) }, quiet())
        .await;
    assert!(
        report.cases[0].evaluator_failures[0]
            .error
            .contains("implements neither")
    );
}

#[tokio::test]
async fn repeat_runs_each_case_n_times_and_averages_per_case_first() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let report = Dataset::<i64, i64>::new("r")
        .case(Case::new("a", 1))
        .case(Case::new("b", 2))
        .evaluate(
            move |n: i64| {
                let k = c.fetch_add(1, Ordering::SeqCst) as i64;
                async move {
                    steadfast_evals::set_metric("value", (n * 10 + k % 3) as f64);
                    Ok::<_, Err>(n)
                }
            },
            quiet().repeat(3).max_concurrency(1),
        )
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let names: Vec<&str> = report.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "a [1/3]", "a [2/3]", "a [3/3]", "b [1/3]", "b [2/3]", "b [3/3]"
        ]
    );
    assert!(report.cases.iter().all(|c| c.repeat.unwrap().count == 3));
    assert_eq!(report.cases[4].source_case_name, "b");
    // a: 10, 11, 12 → 11; b: 20, 21, 22 → 21; mean of the cases: 16.
    let avg = report.averages().unwrap();
    assert_eq!(avg.metrics["value"], 16.0);
    let groups = report.case_groups();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1].1.metrics["value"], 21.0);
}

#[tokio::test]
async fn two_level_averages_do_not_overweight_a_case_with_more_successful_runs() {
    // Case a succeeds 3 times with 1.0; case b fails twice and succeeds once with 0.0.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let report = Dataset::<i64, i64>::new("r")
        .case(Case::new("a", 1))
        .case(Case::new("b", 0))
        .evaluator(evaluator_fn("value", |ctx: &EvaluatorContext<i64, i64>| {
            ctx.output as f64
        }))
        .evaluate(
            move |n: i64| {
                let k = s.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 && k < 5 {
                        Err::<i64, Err>("flaky".into())
                    } else {
                        Ok(n)
                    }
                }
            },
            quiet().repeat(3).max_concurrency(1),
        )
        .await;
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.averages().unwrap().scores["value"], 0.5);
}

async fn concurrency_peak(options: EvaluateOptions, cases: usize) -> usize {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut ds = Dataset::<usize, usize>::new("c");
    for i in 0..cases {
        ds.add_case(Case::new(format!("case {i}"), i));
    }
    let (r, p) = (running.clone(), peak.clone());
    let report = ds
        .evaluate(
            move |i: usize| {
                let (r, p) = (r.clone(), p.clone());
                async move {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    r.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Err>(i)
                }
            },
            options,
        )
        .await;
    assert_eq!(report.cases.len(), cases);
    // The report keeps the case order whatever order the runs finished in.
    for (i, c) in report.cases.iter().enumerate() {
        assert_eq!(c.name, format!("case {i}"));
    }
    peak.load(Ordering::SeqCst)
}

#[tokio::test]
async fn max_concurrency_bounds_the_runs_in_flight() {
    assert_eq!(concurrency_peak(quiet().max_concurrency(3), 10).await, 3);
    assert_eq!(concurrency_peak(quiet().max_concurrency(1), 4).await, 1);
    // Unbounded: every case at once.
    assert_eq!(concurrency_peak(quiet(), 8).await, 8);
    // 0 means 1, and never hangs.
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        concurrency_peak(quiet().max_concurrency(0), 3),
    )
    .await;
    assert_eq!(r.unwrap(), 1);
}

#[tokio::test]
async fn flaky_tasks_are_retried_and_attempts_are_reported() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let policy =
        steadfast_core::RetryPolicy::attempts(3).with_initial_interval(Duration::from_millis(1));
    let report = Dataset::<i64, i64>::new("flaky")
        .case(Case::new("x", 7))
        .evaluate(
            move |n: i64| {
                let k = a.fetch_add(1, Ordering::SeqCst);
                async move {
                    // Metrics of failed attempts are dropped with them.
                    steadfast_evals::increment_metric("attempt_metric", 1.0);
                    if k < 2 {
                        Err::<i64, Err>(format!("attempt {} failed", k + 1).into())
                    } else {
                        Ok(n)
                    }
                }
            },
            quiet().retry_task(policy),
        )
        .await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(report.cases[0].attempts, 3);
    assert_eq!(report.cases[0].metrics["attempt_metric"], 1.0);

    // Out of attempts: the last error is reported with the count.
    let report = Dataset::<i64, i64>::new("down")
        .case(Case::new("x", 7))
        .evaluate(
            |_n: i64| async move { Err::<i64, Err>("still down".into()) },
            quiet().retry_task(policy),
        )
        .await;
    let f = &report.failures[0];
    assert_eq!((f.error.as_str(), f.attempts), ("still down", 3));
}

#[tokio::test]
async fn slow_tasks_time_out() {
    let report = Dataset::<u64, u64>::new("slow")
        .case(Case::new("fast", 0))
        .case(Case::new("slow", 500))
        .evaluate(
            |ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Err>(ms)
            },
            quiet().task_timeout(Duration::from_millis(50)),
        )
        .await;
    assert_eq!(report.cases.len(), 1);
    assert_eq!(
        report.failure("slow").unwrap().error,
        "timed out after 50.0ms"
    );
}

#[tokio::test]
async fn tasks_record_metrics_and_attributes_and_evaluators_see_them() {
    let report = Dataset::<String, usize>::new("words")
        .case(Case::new("short", "a b".to_string()))
        .case(Case::new("long", "a b c d e".to_string()))
        .evaluator(evaluator_fn(
            "few_words",
            |ctx: &EvaluatorContext<String, usize>| ctx.metrics["words"] < 4.0,
        ))
        .evaluate(
            |s: String| async move {
                for _ in s.split_whitespace() {
                    steadfast_evals::increment_metric("words", 1.0);
                }
                steadfast_evals::set_attribute("first", s.split_whitespace().next());
                Ok::<_, Err>(s.len())
            },
            quiet(),
        )
        .await;
    let short = report.case("short").unwrap();
    assert_eq!(short.metrics["words"], 2.0);
    assert_eq!(short.attributes["first"], json!("a"));
    assert_eq!(short.assertion("few_words"), Some(true));
    assert_eq!(
        report.case("long").unwrap().assertion("few_words"),
        Some(false)
    );
    // Outside an evaluation the functions do nothing.
    steadfast_evals::increment_metric("words", 1.0);
    assert!(!steadfast_evals::in_eval());
}

#[derive(Deserialize, JsonSchema)]
struct Ask {
    question: String,
}

/// A questioner whose `ask` tool runs a nested answerer agent, both played by FunctionModels.
fn agents() -> Agent<(), String> {
    let answerer = Agent::<(), String>::builder("answerer")
        .model(FunctionModel::new(|_m, _p| Ok(ModelResponse::text("yes"))).named("answer-model"))
        .build()
        .unwrap();
    let ask = Tool::new("ask", move |ctx: ToolCtx<()>, a: Ask| {
        let answerer = answerer.clone();
        async move {
            let r = answerer
                .run_in(&ctx, a.question, ())
                .await
                .map_err(ToolError::from)?;
            Ok(r.output)
        }
    });
    let questioner = FunctionModel::new(|messages: &[Message], _p| {
        let answered = messages
            .iter()
            .filter_map(Message::as_request)
            .flat_map(|r| &r.parts)
            .filter(|p| matches!(p, RequestPart::ToolReturn { .. }))
            .count();
        Ok(if answered < 2 {
            ModelResponse::tool_call(
                "ask",
                json!({ "question": format!("question {}", answered + 1) }),
            )
        } else {
            ModelResponse::text("potato")
        })
    })
    .named("question-model");
    Agent::<(), String>::builder("questioner")
        .model(questioner)
        .tool(ask)
        .build()
        .unwrap()
}

#[tokio::test]
async fn usage_and_trace_are_collected_from_agent_runs_inside_the_task() {
    let agent = agents();
    let report = Dataset::<String, String>::new("game")
        .case(Case::new("potato", "start".to_string()).expected_output("potato".to_string()))
        .evaluator(EqualsExpected::default())
        .evaluator(ToolCalled::between("ask", 2, 2))
        .evaluator(
            HasMatchingSpan::new(
                SpanQuery::agent_run("answerer").with_ancestor(SpanQuery::tool("ask")),
            )
            .named("nested answerer"),
        )
        .evaluator(HasMatchingSpan::new(SpanQuery::tool("search")).named("searched"))
        .evaluate(
            move |prompt: String| {
                let agent = agent.clone();
                async move {
                    let r = agent.run_in(&steadfast_evals::scope(), prompt, ()).await?;
                    Ok::<_, Err>(r.output)
                }
            },
            quiet(),
        )
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let c = &report.cases[0];
    // 3 questioner requests and 2 answerer requests; 2 tool calls.
    assert_eq!(c.usage.requests, 5);
    assert_eq!(c.usage.tool_calls, 2);
    assert!(c.usage.input_tokens > 0 && c.usage.output_tokens > 0);
    assert_eq!(c.assertion("EqualsExpected"), Some(true));
    assert_eq!(c.assertion("ToolCalled(ask)"), Some(true));
    assert_eq!(c.assertion("nested answerer"), Some(true));
    assert_eq!(c.assertion("searched"), Some(false));
    let t = &c.trace;
    assert_eq!(t.of_kind(SpanKind::AgentRun).count(), 3);
    assert_eq!(t.of_kind(SpanKind::ModelRequest).count(), 5);
    let names: Vec<&str> = t.spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names[..4],
        [
            "agent__questioner",
            "agent__questioner__model_request",
            "agent__questioner__tool__ask",
            "agent__answerer"
        ]
    );
    let call = t.tool_calls("ask").next().unwrap();
    assert_eq!(call.attributes["args"], json!({"question": "question 1"}));
    assert_eq!(call.attributes["result"], json!("yes"));
    let answer_request = t
        .spans
        .iter()
        .find(|s| s.name == "agent__answerer__model_request")
        .unwrap();
    assert_eq!(answer_request.attr_str("model"), Some("answer-model"));
    assert_eq!(t.depth(answer_request.id), 3);
}

#[tokio::test]
async fn a_plain_run_is_recorded_by_itself_and_so_is_agent_task() {
    let agent = Agent::<(), String>::builder("tester")
        .model(TestModel::new())
        .build()
        .unwrap();
    let a = agent.clone();
    let report = Dataset::<String, String>::new("plain")
        .case(Case::new("hello", "hello".to_string()))
        .evaluate(
            move |p: String| {
                let a = a.clone();
                async move { Ok::<_, Err>(a.run(p, ()).await?.output) }
            },
            quiet(),
        )
        .await;
    let c = &report.cases[0];
    assert_eq!(c.usage.requests, 1);
    assert_eq!(c.trace.spans[0].name, "agent__tester");
    assert_eq!(c.trace.spans[1].name, "agent__tester__model_request");

    let report = Dataset::<String, String>::new("agent task")
        .case(Case::new("hello", "hello".to_string()))
        .evaluate(steadfast_evals::agent_task(agent), quiet())
        .await;
    assert_eq!(report.cases[0].usage.requests, 1);
    assert_eq!(report.cases[0].output, json!("success (no tool calls)"));
}

#[tokio::test]
async fn custom_spans_nest_the_runs_inside_them() {
    let agent = Agent::<(), String>::builder("inner")
        .model(TestModel::new())
        .build()
        .unwrap();
    let report = Dataset::<String, String>::new("spans")
        .case(Case::new("x", "x".to_string()))
        .evaluator(HasMatchingSpan::new(
            SpanQuery::agent_run("inner").with_ancestor(SpanQuery::name("phase 1")),
        ))
        .evaluate(
            move |p: String| {
                let agent = agent.clone();
                async move {
                    steadfast_evals::record_span("started", Default::default());
                    let out = steadfast_evals::in_span("phase 1", async {
                        agent
                            .run_in(&steadfast_evals::scope(), p, ())
                            .await
                            .map(|r| r.output)
                    })
                    .await?;
                    Ok::<_, Err>(out)
                }
            },
            quiet(),
        )
        .await;
    let c = &report.cases[0];
    assert_eq!(c.assertion("HasMatchingSpan"), Some(true), "{:#?}", c.trace);
    assert_eq!(c.trace.spans[0].kind, SpanKind::Custom);
}

#[tokio::test]
async fn model_errors_inside_the_task_fail_the_case_with_the_trace_kept() {
    let agent = Agent::<(), String>::builder("failing")
        .model(FunctionModel::new(|_m, _p| {
            Err(steadfast_core::ModelError::Function {
                message: "quota exhausted".into(),
                retryable: false,
            })
        }))
        .build()
        .unwrap();
    let report = Dataset::<String, String>::new("errors")
        .case(Case::new("x", "x".to_string()))
        .evaluate(steadfast_evals::agent_task(agent), quiet())
        .await;
    let f = &report.failures[0];
    assert_eq!(f.error, "quota exhausted");
    let request = f.trace.of_kind(SpanKind::ModelRequest).next().unwrap();
    assert_eq!(request.error.as_deref(), Some("quota exhausted"));
}

#[tokio::test]
async fn evaluator_retries_recover_flaky_evaluators() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let flaky = evaluator_fn("flaky", move |_ctx: &EvaluatorContext<i64, i64>| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Err::<bool, Err>("once".into())
        } else {
            Ok(true)
        }
    });
    let report = Dataset::<i64, i64>::new("e")
        .case(Case::new("x", 1))
        .evaluator(flaky)
        .evaluate(
            |n: i64| async move { Ok::<_, Err>(n) },
            quiet().retry_evaluators(
                steadfast_core::RetryPolicy::attempts(2)
                    .with_initial_interval(Duration::from_millis(1)),
            ),
        )
        .await;
    assert_eq!(report.cases[0].assertion("flaky"), Some(true));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn case_evaluators_add_to_the_dataset_evaluators_and_names_stay_unique() {
    let report = Dataset::<i64, i64>::new("e")
        .case(
            Case::new("x", 1)
                .evaluator(evaluator_fn("check", |_c: &EvaluatorContext<i64, i64>| {
                    false
                })),
        )
        .case(Case::new("y", 2))
        .evaluator(evaluator_fn("check", |_c: &EvaluatorContext<i64, i64>| {
            true
        }))
        .evaluate(|n: i64| async move { Ok::<_, Err>(n) }, quiet())
        .await;
    let x = report.case("x").unwrap();
    assert_eq!(x.assertion("check"), Some(true));
    assert_eq!(x.assertion("check_2"), Some(false));
    assert_eq!(report.case("y").unwrap().assertions.len(), 1);
}

#[tokio::test]
async fn a_scope_made_outside_the_task_records_each_case_separately() {
    let agent = agents();
    let scope = steadfast_evals::scope();
    let report = Dataset::<String, String>::new("shared scope")
        .case(Case::new("a", "start".to_string()))
        .case(Case::new("b", "start".to_string()))
        .evaluate(
            |prompt: String| {
                let (agent, scope) = (agent.clone(), scope.clone());
                async move { Ok::<_, Err>(agent.run_in(&scope, prompt, ()).await?.output) }
            },
            quiet(),
        )
        .await;
    for c in &report.cases {
        assert_eq!((c.usage.requests, c.usage.tool_calls), (5, 2), "{}", c.name);
        assert_eq!(c.trace.spans.len(), 10, "{}", c.name);
    }
}

#[tokio::test]
async fn evaluations_can_run_on_a_spawned_task() {
    let handle = tokio::spawn(async {
        numbers()
            .evaluate(
                |n: i64| async move { Ok::<_, Err>(n * 2) },
                quiet().max_concurrency(2),
            )
            .await
    });
    assert!(handle.await.unwrap().all_passed());
}

#[tokio::test]
async fn plain_runs_inside_the_task_are_recorded_with_no_code() {
    let agent = agents();
    let report = Dataset::<String, String>::new("game")
        .case(Case::new("potato", "start".to_string()).expected_output("potato".to_string()))
        .evaluator(ToolCalled::between("ask", 2, 2))
        .evaluate(
            move |prompt: String| {
                let agent = agent.clone();
                // A plain run: no scope passed, nothing recorded by hand.
                async move { Ok::<_, Err>(agent.run(prompt, ()).await?.output) }
            },
            quiet(),
        )
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let c = &report.cases[0];
    assert_eq!(
        c.usage.requests, 5,
        "the nested answerer's requests are included"
    );
    assert_eq!(c.usage.tool_calls, 2);
    assert_eq!(c.assertion("ToolCalled(ask)"), Some(true));
    assert_eq!(c.trace.of_kind(SpanKind::ModelRequest).count(), 5);
}
