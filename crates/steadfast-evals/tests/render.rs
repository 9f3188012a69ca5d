//! Snapshot tests of the rendered tables: a report, its failures, repeats, a baseline diff, a
//! comparison, and the JSON export they all start from.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use steadfast_core::{Agent, FunctionModel, ModelResponse, Usage};
use steadfast_evals::{
    Case, Dataset, EqualsExpected, EvaluateOptions, EvaluationReport, EvaluatorContext,
    EvaluatorOutput, RenderOptions, StepClock, evaluator_fn, render_comparison,
};

type Err = Box<dyn std::error::Error + Send + Sync>;

/// Capital cities, answered by a "model" that knows some of them.
fn dataset() -> Dataset<String, String> {
    Dataset::new("capitals")
        .case(Case::new("France", "France".to_string()).expected_output("Paris".to_string()))
        .case(Case::new("Japan", "Japan".to_string()).expected_output("Tokyo".to_string()))
        .case(Case::new("Peru", "Peru".to_string()).expected_output("Lima".to_string()))
        .evaluator(EqualsExpected::default())
        .evaluator(evaluator_fn(
            "length",
            |ctx: &EvaluatorContext<String, String>| ctx.output.len() as f64,
        ))
        .evaluator(evaluator_fn(
            "kind",
            |ctx: &EvaluatorContext<String, String>| {
                EvaluatorOutput::new().label(
                    "kind",
                    if ctx.output.contains(' ') {
                        "sentence"
                    } else {
                        "word"
                    },
                )
            },
        ))
}

async fn run(
    knows: &'static [(&'static str, &'static str)],
    name: &str,
    options: EvaluateOptions,
) -> EvaluationReport {
    let model = FunctionModel::new(move |messages, _p| {
        let prompt = format!("{messages:?}");
        let answer = knows
            .iter()
            .find(|(country, _)| prompt.contains(country))
            .map(|(_, city)| city.to_string())
            .unwrap_or_else(|| "I do not know".to_string());
        Ok(ModelResponse {
            usage: Usage {
                input_tokens: 100,
                output_tokens: answer.split(' ').count() as u64,
                cost_usd: 0.0005,
                ..Default::default()
            },
            ..ModelResponse::text(answer)
        })
    });
    let agent = Agent::<(), String>::builder("geographer")
        .model(model)
        .build()
        .unwrap();
    dataset()
        .evaluate(
            move |country: String| {
                let agent = agent.clone();
                async move {
                    if country == "Peru" && name == "broken" {
                        return Err::<String, Err>("the model is unreachable".into());
                    }
                    let r = agent.run_in(&steadfast_evals::scope(), country, ()).await?;
                    steadfast_evals::increment_metric("retries", 0.0);
                    Ok(r.output)
                }
            },
            options.name(name).progress(false).max_concurrency(1),
        )
        .await
}

const GOOD: &[(&str, &str)] = &[("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima")];
const WEAK: &[(&str, &str)] = &[("France", "Paris"), ("Japan", "Kyoto")];

#[tokio::test]
async fn table_with_assertions_scores_labels_metrics_usage_and_averages() {
    let report = run(WEAK, "weak", EvaluateOptions::new()).await;
    let expected = "                                        Evaluation Summary: weak
┏━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┓
┃ Case ID  ┃ length ┃          kind          ┃ retries ┃ EqualsExpected ┃ Requests ┃ Tokens ┃   Cost    ┃
┡━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━┩
│ France   │      5 │ word                   │       0 │       ✔        │        1 │    101 │ $0.000500 │
│ Japan    │      5 │ word                   │       0 │       ✗        │        1 │    101 │ $0.000500 │
│ Peru     │     13 │ sentence               │       0 │       ✗        │        1 │    104 │ $0.000500 │
├──────────┼────────┼────────────────────────┼─────────┼────────────────┼──────────┼────────┼───────────┤
│ Averages │   7.67 │ word 67%, sentence 33% │       0 │      33%       │        1 │    102 │ $0.000500 │
└──────────┴────────┴────────────────────────┴─────────┴────────────────┴──────────┴────────┴───────────┘
";
    let actual = report.render(&RenderOptions::without_durations());
    assert_eq!(actual, expected, "\n{actual}");
}

#[tokio::test]
async fn durations_come_from_the_clock_and_failures_get_their_own_table() {
    let clock = Arc::new(StepClock::new(Duration::from_millis(250)));
    let report = run(GOOD, "broken", EvaluateOptions::new().clock(clock)).await;
    let opts = RenderOptions {
        include_input: true,
        include_output: true,
        include_total_duration: true,
        include_usage: false,
        ..Default::default()
    };
    let expected = "                                    Evaluation Summary: broken
┏━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━┓
┃ Case ID  ┃ Inputs ┃ Outputs ┃ length ┃   kind    ┃ retries ┃ EqualsExpected ┃ Duration ┃ Total ┃
┡━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━┩
│ France   │ France │ Paris   │      5 │ word      │       0 │       ✔        │    1.00s │ 1.75s │
│ Japan    │ Japan  │ Tokyo   │      5 │ word      │       0 │       ✔        │    1.00s │ 1.75s │
├──────────┼────────┼─────────┼────────┼───────────┼─────────┼────────────────┼──────────┼───────┤
│ Averages │        │         │      5 │ word 100% │       0 │      100%      │    1.00s │ 1.75s │
└──────────┴────────┴─────────┴────────┴───────────┴─────────┴────────────────┴──────────┴───────┘

                 Case Failures
┏━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━┓
┃ Case ID ┃ Inputs ┃          Error           ┃
┡━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━┩
│ Peru    │ Peru   │ the model is unreachable │
└─────────┴────────┴──────────────────────────┘
";
    let actual = report.render(&opts);
    assert_eq!(actual, expected, "\n{actual}");
}

#[tokio::test]
async fn diff_against_a_baseline_has_a_change_column_per_figure() {
    let baseline = run(WEAK, "weak", EvaluateOptions::new()).await;
    let better = run(GOOD, "good", EvaluateOptions::new()).await;
    let expected = "                                                      Evaluation Diff: weak → good
┏━━━━━━━━━━┳━━━━━━━━┳━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━┳━━━━━━━━┳━━━━┳━━━━━━━━━━━┳━━━┓
┃ Case ID  ┃ length ┃ Δ  ┃               kind               ┃ retries ┃ Δ ┃ EqualsExpected ┃ Requests ┃ Δ ┃ Tokens ┃ Δ  ┃   Cost    ┃ Δ ┃
┡━━━━━━━━━━╇━━━━━━━━╇━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━╇━━━━━━━━╇━━━━╇━━━━━━━━━━━╇━━━┩
│ France   │      5 │  = │ word                             │       0 │ = │       ✔        │        1 │ = │    101 │  = │ $0.000500 │ = │
│ Japan    │      5 │  = │ word                             │       0 │ = │      ✗→✔       │        1 │ = │    101 │  = │ $0.000500 │ = │
│ Peru     │      4 │ -9 │ sentence→word                    │       0 │ = │      ✗→✔       │        1 │ = │    101 │ -3 │ $0.000500 │ = │
├──────────┼────────┼────┼──────────────────────────────────┼─────────┼───┼────────────────┼──────────┼───┼────────┼────┼───────────┼───┤
│ Averages │   4.67 │ -3 │ word 67%, sentence 33%→word 100% │       0 │ = │    33%→100%    │        1 │ = │    101 │ -1 │ $0.000500 │ = │
└──────────┴────────┴────┴──────────────────────────────────┴─────────┴───┴────────────────┴──────────┴───┴────────┴────┴───────────┴───┘
";
    let actual = better.render_diff(&baseline, &RenderOptions::without_durations());
    assert_eq!(actual, expected, "\n{actual}");
}

#[tokio::test]
async fn repeats_render_per_run_or_aggregated_per_case() {
    let report = run(WEAK, "weak", EvaluateOptions::new().repeat(2)).await;
    let opts = RenderOptions {
        include_usage: false,
        ..RenderOptions::without_durations()
    };
    let expected = "                          Evaluation Summary: weak
┏━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━┓
┃ Case ID      ┃ length ┃          kind          ┃ retries ┃ EqualsExpected ┃
┡━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━┩
│ France [1/2] │      5 │ word                   │       0 │       ✔        │
│ France [2/2] │      5 │ word                   │       0 │       ✔        │
│ Japan [1/2]  │      5 │ word                   │       0 │       ✗        │
│ Japan [2/2]  │      5 │ word                   │       0 │       ✗        │
│ Peru [1/2]   │     13 │ sentence               │       0 │       ✗        │
│ Peru [2/2]   │     13 │ sentence               │       0 │       ✗        │
├──────────────┼────────┼────────────────────────┼─────────┼────────────────┤
│ Averages     │   7.67 │ word 67%, sentence 33% │       0 │      33%       │
└──────────────┴────────┴────────────────────────┴─────────┴────────────────┘
";
    let actual = report.render(&opts);
    assert_eq!(actual, expected, "\n{actual}");
    let expected = "                        Evaluation Summary: weak
┏━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━┓
┃ Case ID  ┃ length ┃          kind          ┃ retries ┃ EqualsExpected ┃
┡━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━┩
│ France   │      5 │ word 100%              │       0 │      100%      │
│ Japan    │      5 │ word 100%              │       0 │       0%       │
│ Peru     │     13 │ sentence 100%          │       0 │       0%       │
├──────────┼────────┼────────────────────────┼─────────┼────────────────┤
│ Averages │   7.67 │ word 67%, sentence 33% │       0 │      33%       │
└──────────┴────────┴────────────────────────┴─────────┴────────────────┘
";
    let actual = report.render(&RenderOptions {
        aggregate_repeats: true,
        ..opts
    });
    assert_eq!(actual, expected, "\n{actual}");
}

#[tokio::test]
async fn comparison_puts_experiments_side_by_side() {
    let a = run(GOOD, "good", EvaluateOptions::new()).await;
    let b = run(WEAK, "weak", EvaluateOptions::new()).await;
    let c = run(GOOD, "broken", EvaluateOptions::new()).await;
    let expected = "                                          Comparison (averages per case)
┏━━━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┓
┃ Experiment ┃ Cases ┃ length ┃          kind          ┃ retries ┃ EqualsExpected ┃ Requests ┃ Tokens ┃   Cost    ┃
┡━━━━━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━┩
│ good       │   3/3 │   4.67 │ word 100%              │       0 │      100%      │        1 │    101 │ $0.000500 │
│ weak       │   3/3 │   7.67 │ word 67%, sentence 33% │       0 │      33%       │        1 │    102 │ $0.000500 │
│ broken     │   2/3 │   5.00 │ word 100%              │       0 │      100%      │        1 │    101 │ $0.000500 │
└────────────┴───────┴────────┴────────────────────────┴─────────┴────────────────┴──────────┴────────┴───────────┘
";
    let actual = render_comparison(&[&a, &b, &c], &RenderOptions::without_durations());
    assert_eq!(actual, expected, "\n{actual}");
}

#[tokio::test]
async fn reports_round_trip_through_json_and_render_the_same() {
    let clock = Arc::new(StepClock::new(Duration::from_millis(10)));
    let report = run(
        WEAK,
        "weak",
        EvaluateOptions::new()
            .clock(clock)
            .metadata("model", "function"),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("steadfast-evals-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weak.json");
    report.save(&path).unwrap();
    let back = EvaluationReport::load(&path).unwrap();
    assert_eq!(back, report);
    assert_eq!(
        back.render(&RenderOptions::default()),
        report.render(&RenderOptions::default())
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["metadata"]["model"], json!("function"));
    assert_eq!(
        v["cases"][0]["assertions"][0],
        json!({"name": "EqualsExpected", "value": true, "source": "EqualsExpected"})
    );
    assert_eq!(
        v["cases"][1]["assertions"][0]["reason"],
        json!("expected Tokyo, got Kyoto")
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn hand_made(name: &str, cases: serde_json::Value) -> EvaluationReport {
    EvaluationReport::from_json(&json!({"name": name, "cases": cases}).to_string()).unwrap()
}

fn case(name: &str, quality: f64, ok: bool, tone: &str, secs: f64, cost: f64) -> serde_json::Value {
    json!({
        "name": name, "source_case_name": name, "inputs": name, "output": null,
        "scores": [{"name": "quality", "value": quality, "source": "Quality"}],
        "assertions": [{"name": "ok", "value": ok, "source": "Ok"}],
        "labels": [{"name": "tone", "value": tone, "source": "Tone"}],
        "usage": {"requests": 2, "input_tokens": 1000, "output_tokens": 234, "cost_usd": cost},
        "task_duration": secs, "total_duration": secs
    })
}

#[test]
fn diff_marks_new_and_removed_cases_and_shows_duration_and_cost_changes() {
    let old = hand_made(
        "v1",
        json!([
            case("a", 0.5, true, "formal", 1.0, 0.0123),
            case("b", 0.8, false, "casual", 2.0, 0.0123),
            case("gone", 0.1, true, "formal", 1.0, 0.0123)
        ]),
    );
    let new = hand_made(
        "v2",
        json!([
            case("a", 0.75, true, "formal", 0.5, 0.0123),
            case("b", 0.8, true, "formal", 3.0, 0.0246),
            case("fresh", 1.0, true, "casual", 0.0004, 0.0)
        ]),
    );
    let opts = RenderOptions {
        include_removed_cases: true,
        ..Default::default()
    };
    let expected = "                                                         Evaluation Diff: v1 → v2
┏━━━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┳━━━┳━━━━━━━━┳━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━┓
┃ Case ID        ┃ quality ┃   Δ   ┃          tone          ┃    ok    ┃ Requests ┃ Δ ┃ Tokens ┃ Δ ┃  Cost   ┃    Δ     ┃ Duration ┃  Δ   ┃
┡━━━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━╇━━━━━━━━╇━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━┩
│ a              │    0.75 │ +0.25 │ formal                 │    ✔     │        2 │ = │  1,234 │ = │ $0.0123 │        = │  500.0ms │ -50% │
│ b              │    0.80 │     = │ casual→formal          │   ✗→✔    │        2 │ = │  1,234 │ = │ $0.0246 │ +$0.0123 │    3.00s │ +50% │
│ fresh (new)    │    1.00 │       │ casual                 │    ✔     │        2 │   │  1,234 │   │      $0 │          │    400µs │      │
│ gone (removed) │         │       │                        │          │          │   │        │   │         │          │          │      │
├────────────────┼─────────┼───────┼────────────────────────┼──────────┼──────────┼───┼────────┼───┼─────────┼──────────┼──────────┼──────┤
│ Averages       │    0.85 │ +0.38 │ formal 67%, casual 33% │ 67%→100% │        2 │ = │  1,234 │ = │ $0.0123 │        = │    1.17s │ -12% │
└────────────────┴─────────┴───────┴────────────────────────┴──────────┴──────────┴───┴────────┴───┴─────────┴──────────┴──────────┴──────┘
";
    let actual = new.render_diff(&old, &opts);
    assert_eq!(actual, expected, "\n{actual}");
}
