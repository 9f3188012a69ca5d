//! Every built-in evaluator, custom evaluators (trait impls and closures), the LLM judge played
//! by a FunctionModel, and building evaluators from their written form.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steadfast_core::{FunctionModel, Message, ModelResponse, RequestPart};
use steadfast_evals::{
    Contains, Equals, EqualsExpected, EvalValue, EvaluationReason, Evaluator, EvaluatorContext,
    EvaluatorOutput, EvaluatorRegistry, EvaluatorResult, EvaluatorSpec, HasMatchingSpan,
    IsInstance, LLMJudge, MatchesSchema, MaxDuration, OutputItem, Span, SpanKind, SpanQuery,
    ToolCalled, Trace, async_evaluator_fn, evaluator_fn,
};

type Ctx<O> = EvaluatorContext<String, O>;

fn ctx<O>(output: O) -> Ctx<O> {
    EvaluatorContext::new("case", "input".to_string(), output)
}

async fn eval<O, E: Evaluator<String, O>>(e: &E, c: &Ctx<O>) -> Vec<OutputItem> {
    e.evaluate(c)
        .await
        .expect("the evaluator works")
        .items()
        .to_vec()
}

async fn verdict<O, E: Evaluator<String, O>>(e: &E, c: &Ctx<O>) -> (bool, Option<String>) {
    let items = eval(e, c).await;
    assert_eq!(items.len(), 1, "{items:?}");
    match &items[0].value {
        EvalValue::Assertion(b) => (*b, items[0].reason.clone()),
        other => panic!("not an assertion: {other:?}"),
    }
}

#[tokio::test]
async fn equals_expected_compares_as_json_and_skips_cases_without_expectation() {
    let e = EqualsExpected::default();
    assert_eq!(
        verdict(
            &e,
            &ctx(json!({"a": 1})).with_expected_output(json!({"a": 1.0}))
        )
        .await,
        (true, None)
    );
    let (pass, why) = verdict(
        &e,
        &ctx("Kyoto".to_string()).with_expected_output("Tokyo".to_string()),
    )
    .await;
    assert!(!pass);
    assert_eq!(why.as_deref(), Some("expected Tokyo, got Kyoto"));
    assert!(eval(&e, &ctx(1)).await.is_empty());
    assert_eq!(Evaluator::<String, i32>::name(&e), "EqualsExpected");
}

#[tokio::test]
async fn equals_compares_with_a_fixed_value() {
    assert!(verdict(&Equals::new(42), &ctx(42.0)).await.0);
    assert!(!verdict(&Equals::new("yes"), &ctx("no".to_string())).await.0);
    assert!(verdict(&Equals::new(vec![1, 2]), &ctx(vec![1, 2])).await.0);
}

#[tokio::test]
async fn contains_handles_strings_lists_maps_and_case() {
    let s = |t: &str| ctx(t.to_string());
    assert!(verdict(&Contains::new("pot"), &s("a potato")).await.0);
    let (pass, why) = verdict(&Contains::new("Potato"), &s("a potato")).await;
    assert!(!pass);
    assert_eq!(
        why.as_deref(),
        Some("\"a potato\" does not contain \"Potato\"")
    );
    assert!(
        verdict(&Contains::new("Potato").case_insensitive(), &s("a potato"))
            .await
            .0
    );
    assert!(verdict(&Contains::new(2), &ctx(vec![1, 2, 3])).await.0);
    assert!(!verdict(&Contains::new(5), &ctx(vec![1, 2, 3])).await.0);
    let map = ctx(json!({"city": "Paris", "country": "France"}));
    assert!(verdict(&Contains::new("city"), &map).await.0);
    assert!(
        verdict(&Contains::new(json!({"city": "Paris"})), &map)
            .await
            .0
    );
    assert_eq!(
        verdict(&Contains::new(json!({"city": "Lyon"})), &map).await,
        (false, Some("`city` is \"Paris\", not \"Lyon\"".to_string()))
    );
    assert!(
        verdict(&Contains::new("4").as_strings(), &ctx(1234))
            .await
            .0
    );
    let (pass, why) = verdict(&Contains::new(4), &ctx(1234)).await;
    assert!(!pass && why.unwrap().contains("use as_strings"));
}

#[tokio::test]
async fn is_instance_checks_the_json_type() {
    assert!(
        verdict(&IsInstance::new("string"), &ctx("x".to_string()))
            .await
            .0
    );
    assert!(verdict(&IsInstance::new("number"), &ctx(3)).await.0);
    assert!(verdict(&IsInstance::new("integer"), &ctx(3)).await.0);
    assert_eq!(
        verdict(&IsInstance::new("object"), &ctx(vec![1])).await,
        (false, Some("the output is a array, not a object".into()))
    );
}

/// A city and its population.
#[derive(Serialize, Deserialize, JsonSchema)]
struct City {
    name: String,
    population: u64,
}

#[tokio::test]
async fn matches_schema_checks_the_output_against_a_type_or_a_schema() {
    let e = MatchesSchema::of::<City>();
    assert!(
        verdict(&e, &ctx(json!({"name": "Lima", "population": 10_000_000})))
            .await
            .0
    );
    let (pass, why) = verdict(&e, &ctx(json!({"name": "Lima", "population": -3}))).await;
    assert!(!pass);
    assert!(why.unwrap().contains("$.population"));
    // An agent that answers in text: parse it first.
    let text = MatchesSchema::of::<City>().parsing_strings();
    assert!(
        verdict(
            &text,
            &ctx(r#"{"name": "Lima", "population": 1}"#.to_string())
        )
        .await
        .0
    );
    let (pass, why) = verdict(&text, &ctx("Lima has ten million people".to_string())).await;
    assert!(!pass && why.unwrap().starts_with("the output is not JSON"));
    let enumerated = MatchesSchema::new(json!({"enum": ["yes", "no"]}));
    assert!(!verdict(&enumerated, &ctx("maybe".to_string())).await.0);
}

#[tokio::test]
async fn max_duration_checks_the_task_duration() {
    let e = MaxDuration::new(Duration::from_millis(500));
    assert!(
        verdict(&e, &ctx(1).with_duration(Duration::from_millis(499)))
            .await
            .0
    );
    let (pass, why) = verdict(&e, &ctx(1).with_duration(Duration::from_millis(1500))).await;
    assert!(!pass);
    assert_eq!(why.as_deref(), Some("took 1.500s, more than 0.5s"));
}

fn span(id: usize, parent: Option<usize>, kind: SpanKind, name: &str, attrs: Value) -> Span {
    Span {
        id,
        parent,
        kind,
        name: name.into(),
        start: id as f64,
        duration: 1.0,
        attributes: serde_json::from_value(attrs).unwrap(),
        error: None,
    }
}

fn game_trace() -> Trace {
    Trace {
        spans: vec![
            span(
                0,
                None,
                SpanKind::AgentRun,
                "agent__questioner",
                json!({"agent": "questioner"}),
            ),
            span(
                1,
                Some(0),
                SpanKind::ModelRequest,
                "agent__questioner__model_request",
                json!({"agent": "questioner", "model": "m"}),
            ),
            span(
                2,
                Some(0),
                SpanKind::ToolCall,
                "agent__questioner__tool__ask_question",
                json!({"agent": "questioner", "tool": "ask_question", "args": {"question": "Is it alive?"}}),
            ),
            span(
                3,
                Some(2),
                SpanKind::AgentRun,
                "agent__answerer",
                json!({"agent": "answerer"}),
            ),
            span(
                4,
                Some(0),
                SpanKind::ToolCall,
                "agent__questioner__tool__ask_question",
                json!({"agent": "questioner", "tool": "ask_question", "args": {"question": "Is it a potato?"}}),
            ),
        ],
    }
}

#[tokio::test]
async fn tool_called_counts_the_calls_in_the_trace() {
    let c = ctx(1).with_trace(game_trace());
    assert_eq!(
        verdict(&ToolCalled::new("ask_question"), &c).await,
        (
            true,
            Some("`ask_question` called 2 times; wanted at least 1".into())
        )
    );
    assert!(!verdict(&ToolCalled::new("search"), &c).await.0);
    assert!(
        !verdict(&ToolCalled::between("ask_question", 0, 1), &c)
            .await
            .0
    );
    assert_eq!(
        Evaluator::<String, i32>::name(&ToolCalled::new("ask_question")),
        "ToolCalled(ask_question)"
    );
}

#[tokio::test]
async fn has_matching_span_queries_names_attributes_and_the_tree() {
    let c = ctx(1).with_trace(game_trace());
    let yes = |q: SpanQuery| HasMatchingSpan::new(q);
    assert!(
        verdict(&yes(SpanQuery::name("agent__answerer")), &c)
            .await
            .0
    );
    assert!(
        verdict(
            &yes(SpanQuery::tool("ask_question")
                .with_attribute("args", json!({"question": "Is it a potato?"}))),
            &c
        )
        .await
        .0
    );
    assert!(
        verdict(
            &yes(SpanQuery::agent_run("answerer").with_ancestor(SpanQuery::tool("ask_question"))),
            &c
        )
        .await
        .0
    );
    assert!(
        verdict(
            &yes(SpanQuery::agent_run("questioner")
                .with_descendant(SpanQuery::agent_run("answerer"))),
            &c
        )
        .await
        .0
    );
    assert!(
        !verdict(
            &yes(SpanQuery::agent_run("questioner")
                .with_ancestor(SpanQuery::kind(SpanKind::ToolCall))),
            &c
        )
        .await
        .0
    );
    assert!(
        !verdict(&yes(SpanQuery::model_request().with_error(true)), &c)
            .await
            .0
    );
    let q = SpanQuery {
        name_contains: Some("tool__ask".into()),
        no_child_has: Some(Box::new(SpanQuery::kind(SpanKind::AgentRun))),
        min_depth: Some(1),
        ..Default::default()
    };
    // The second question has no answerer run under it.
    assert_eq!(c.trace.find(&q).map(|s| s.id).collect::<Vec<_>>(), [4]);
    let (pass, why) = verdict(&yes(SpanQuery::name("nope")), &c).await;
    assert_eq!(
        (pass, why.as_deref()),
        (false, Some("no span matches among 5 spans"))
    );
}

/// A custom evaluator written as a trait impl, returning several named values.
struct Shape;

impl Evaluator<String, String> for Shape {
    fn evaluate_sync(&self, ctx: &Ctx<String>) -> EvaluatorResult {
        Ok(EvaluatorOutput::new()
            .assertion("short", ctx.output.len() < 10)
            .with_reason(format!("{} characters", ctx.output.len()))
            .score("words", ctx.output.split_whitespace().count() as f64)
            .label(
                "case",
                if ctx.output == ctx.output.to_uppercase() {
                    "upper"
                } else {
                    "mixed"
                },
            ))
    }
}

/// An async custom evaluator.
struct AsksService;

impl Evaluator<String, String> for AsksService {
    fn evaluate<'a>(&'a self, ctx: &'a Ctx<String>) -> BoxFuture<'a, EvaluatorResult> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(EvaluationReason::new(ctx.output.len() as f64, "looked it up").into())
        })
    }
}

#[tokio::test]
async fn custom_evaluators_as_trait_impls_and_closures() {
    let c = ctx("HELLO THERE".to_string());
    let items = eval(&Shape, &c).await;
    assert_eq!(
        items,
        vec![
            OutputItem {
                name: Some("short".into()),
                value: EvalValue::Assertion(false),
                reason: Some("11 characters".into())
            },
            OutputItem {
                name: Some("words".into()),
                value: EvalValue::Score(2.0),
                reason: None
            },
            OutputItem {
                name: Some("case".into()),
                value: EvalValue::Label("upper".into()),
                reason: None
            },
        ]
    );
    assert_eq!(Evaluator::<String, String>::name(&Shape), "Shape");
    let items = eval(&AsksService, &c).await;
    assert_eq!(
        (items[0].value.clone(), items[0].reason.as_deref()),
        (EvalValue::Score(11.0), Some("looked it up"))
    );

    let label = evaluator_fn("first", |c: &Ctx<String>| {
        c.output.split(' ').next().unwrap_or("").to_string()
    });
    assert_eq!(
        eval(&label, &c).await[0].value,
        EvalValue::Label("HELLO".into())
    );
    let fallible = evaluator_fn("parse", |c: &Ctx<String>| c.output.parse::<f64>());
    assert!(fallible.evaluate(&c).await.is_err());
    let map = evaluator_fn("many", |_c: &Ctx<String>| {
        BTreeMap::from([("a", 1.0), ("b", 2.0)])
    });
    assert_eq!(eval(&map, &c).await.len(), 2);
    let slow = async_evaluator_fn("slow", |c: Ctx<String>| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        c.output.is_empty()
    });
    assert_eq!(eval(&slow, &c).await[0].value, EvalValue::Assertion(false));
    assert_eq!(Evaluator::<String, String>::name(&slow), "slow");
}

/// A judge model that passes outputs mentioning a vegetable, and remembers the prompts.
fn judge_model(prompts: Arc<Mutex<Vec<String>>>) -> FunctionModel {
    FunctionModel::new(move |messages: &[Message], _p| {
        let prompt = messages
            .iter()
            .filter_map(Message::as_request)
            .flat_map(|r| &r.parts)
            .find_map(|p| match p {
                RequestPart::UserPrompt { content } => Some(content.clone()),
                _ => None,
            })
            .unwrap_or_default();
        prompts.lock().unwrap().push(prompt.clone());
        let output = prompt.split("<Output>").nth(1).and_then(|o| o.split("</Output>").next()).unwrap_or("");
        let pass = output.contains("potato");
        Ok(ModelResponse::tool_call(
            "final_result",
            json!({"reason": if pass { "It names a potato." } else { "No vegetable is named." }, "pass": pass, "score": if pass { 0.9 } else { 0.1 }}),
        ))
    })
    .named("judge-model")
}

#[tokio::test]
async fn llm_judge_reports_the_verdict_with_reason_and_optionally_the_score() {
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let judge = LLMJudge::new("The answer names a vegetable.")
        .with_model(Arc::new(judge_model(prompts.clone())));
    let c = ctx("It is a potato".to_string()).with_expected_output("potato".to_string());
    assert_eq!(
        verdict(&judge, &c).await,
        (true, Some("It names a potato.".into()))
    );
    assert_eq!(
        *prompts.lock().unwrap().last().unwrap(),
        "<Output>\nIt is a potato\n</Output>\n<Rubric>\nThe answer names a vegetable.\n</Rubric>"
    );

    let judge = judge
        .clone()
        .include_input()
        .include_expected_output()
        .with_score()
        .named("vegetable");
    let items = eval(
        &judge,
        &ctx("a car".to_string()).with_expected_output("potato".to_string()),
    )
    .await;
    assert_eq!(items[0].name.as_deref(), Some("vegetable"));
    assert_eq!(items[0].value, EvalValue::Assertion(false));
    assert_eq!(items[1].name.as_deref(), Some("vegetable_score"));
    assert_eq!(items[1].value, EvalValue::Score(0.1));
    assert_eq!(items[1].reason.as_deref(), Some("No vegetable is named."));
    assert_eq!(
        *prompts.lock().unwrap().last().unwrap(),
        "<Input>\ninput\n</Input>\n<Output>\na car\n</Output>\n<ExpectedOutput>\npotato\n</ExpectedOutput>\n<Rubric>\nThe answer names a vegetable.\n</Rubric>"
    );

    let score_only = LLMJudge::new("x")
        .with_model(Arc::new(judge_model(prompts)))
        .score_only();
    let items = eval(&score_only, &c).await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].name.as_deref(), &items[0].value),
        (Some("LLMJudge_score"), &EvalValue::Score(0.9))
    );
}

#[tokio::test]
async fn a_judge_that_cannot_run_is_an_error_of_the_evaluator() {
    let judge = LLMJudge::new("anything").model("nowhere:model");
    let err = Evaluator::<String, String>::evaluate(&judge, &ctx("x".to_string()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no provider resolver is installed"),
        "{err}"
    );
}

#[test]
fn evaluators_are_written_by_name_and_built_back_from_the_registry() {
    let registry = EvaluatorRegistry::<String, Value>::with_builtins();
    let cases: Vec<(Box<dyn Evaluator<String, Value>>, Value)> = vec![
        (Box::new(EqualsExpected::default()), json!("EqualsExpected")),
        (
            Box::new(MaxDuration::new(Duration::from_secs(2))),
            json!({"MaxDuration": 2.0}),
        ),
        (
            Box::new(ToolCalled::new("ask_question")),
            json!({"ToolCalled": "ask_question"}),
        ),
        (
            Box::new(Contains::new("potato").case_insensitive()),
            json!({"Contains": {"value": "potato", "case_sensitive": false}}),
        ),
        (
            Box::new(LLMJudge::new("polite").model("openai:gpt-4.1")),
            json!({"LLMJudge": {"rubric": "polite", "model": "openai:gpt-4.1", "include_input": false, "include_expected_output": false, "assertion": {"include_reason": true}}}),
        ),
        (
            Box::new(HasMatchingSpan::new(SpanQuery::tool("search"))),
            json!({"HasMatchingSpan": {"query": {"kind": "tool_call", "has_attributes": {"tool": "search"}}}}),
        ),
    ];
    for (e, written) in cases {
        let spec = e.spec();
        assert_eq!(serde_json::to_value(&spec).unwrap(), written);
        let back: EvaluatorSpec = serde_json::from_value(written).unwrap();
        let rebuilt = registry.build(&back).unwrap();
        assert_eq!(rebuilt.spec(), spec);
    }
    // Positional forms.
    let e = registry
        .build(&serde_json::from_value(json!({"Contains": "x"})).unwrap())
        .unwrap();
    assert_eq!(
        e.spec(),
        EvaluatorSpec::with_args("Contains", &json!({"value": "x"}))
    );
    let e = registry
        .build(&serde_json::from_value(json!({"LLMJudge": "be brief"})).unwrap())
        .unwrap();
    assert_eq!(e.name(), "LLMJudge");
    // Errors name the problem.
    let err = registry
        .build(&EvaluatorSpec::bare("Nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("unknown evaluator `Nope`; known: Contains, Equals, EqualsExpected"),
        "{err}"
    );
    let err = registry
        .build(&serde_json::from_value(json!({"MaxDuration": {"secs": 1}})).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown field `secs`"), "{err}");
    assert!(serde_json::from_value::<EvaluatorSpec>(json!({"A": 1, "B": 2})).is_err());
}
