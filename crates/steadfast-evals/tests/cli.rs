//! The `eval` command runner: a dataset file, a registered task, models compared, a baseline,
//! saved reports, JSON output, exit codes.

use std::path::PathBuf;

use serde_json::{Value, json};
use steadfast_evals::cli::{EvalArgs, TaskParams, TaskRegistry, run_with, save_path};
use steadfast_evals::{EvaluationReport, Evaluator, EvaluatorContext, EvaluatorResult};

struct Even;

impl Evaluator<i64, i64> for Even {
    fn evaluate_sync(&self, ctx: &EvaluatorContext<i64, i64>) -> EvaluatorResult {
        Ok((ctx.output % 2 == 0).into())
    }
}

fn registry() -> TaskRegistry {
    let mut r = TaskRegistry::with_standard_tasks();
    r.task("double", |n: i64, p: TaskParams| async move {
        // The "sloppy" model gets 3 wrong.
        let sloppy = p.model.as_deref() == Some("sloppy");
        Ok::<_, std::convert::Infallible>(if sloppy && n == 3 { 7 } else { n * 2 })
    })
    .describe("doubles a number")
    .evaluator(Even);
    r.evaluator("Positive", |_args| {
        Ok(steadfast_evals::evaluator_fn(
            "Positive",
            |c: &EvaluatorContext<i64, i64>| c.output > 0,
        ))
    });
    r
}

fn setup(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("steadfast-evals-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("numbers.yaml"),
        "name: numbers
cases:
  - {name: one, inputs: 1, expected_output: 2}
  - {name: three, inputs: 3, expected_output: 6}
evaluators: [EqualsExpected, Positive]
",
    )
    .unwrap();
    dir
}

async fn eval(dir: &std::path::Path, args: &str) -> (String, steadfast_evals::cli::CliOutcome) {
    let mut args = EvalArgs::parse(
        args.split_whitespace()
            .map(|a| a.replace("DIR", &dir.display().to_string())),
    )
    .unwrap();
    args.no_progress = true;
    let mut out = Vec::new();
    let outcome = run_with(&args, &registry(), &mut out).await.unwrap();
    (String::from_utf8(out).unwrap(), outcome)
}

#[tokio::test]
async fn runs_a_dataset_file_with_a_registered_task() {
    let dir = setup("run");
    let (text, outcome) = eval(
        &dir,
        "DIR/numbers.yaml --task double --no-durations --include-output --strict",
    )
    .await;
    let expected = "               Evaluation Summary: double
┏━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━┓
┃ Case ID  ┃ Outputs ┃ EqualsExpected ┃ Positive ┃ Even ┃
┡━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━┩
│ one      │ 2       │       ✔        │    ✔     │  ✔   │
│ three    │ 6       │       ✔        │    ✔     │  ✔   │
├──────────┼─────────┼────────────────┼──────────┼──────┤
│ Averages │         │      100%      │   100%   │ 100% │
└──────────┴─────────┴────────────────┴──────────┴──────┘

";
    assert_eq!(text, expected, "\n{text}");
    assert_eq!(outcome.exit_code, 0);
    assert_eq!(outcome.reports[0].metadata["task"], json!("double"));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn compares_models_diffs_against_a_baseline_and_saves_reports() {
    let dir = setup("models");
    let (text, outcome) = eval(&dir, "DIR/numbers.yaml --task double --models careful,sloppy --no-durations --save DIR/report.json --strict").await;
    assert_eq!(outcome.reports.len(), 2);
    assert_eq!(
        outcome.exit_code, 1,
        "sloppy fails an assertion under --strict"
    );
    assert!(text.contains("Evaluation Summary: careful"));
    assert!(text.contains("Evaluation Summary: sloppy"));
    assert!(text.contains("Comparison (averages per case)"));
    let comparison = text.split("Comparison (averages per case)").nth(1).unwrap();
    assert!(
        comparison.contains("│ sloppy     │   2/2 │      50%       │ 50%  │   100%   │"),
        "{comparison}"
    );
    let saved = dir.join("report-careful.json");
    assert_eq!(save_path(&dir.join("report.json"), "careful"), saved);
    let careful = EvaluationReport::load(&saved).unwrap();
    assert_eq!(careful.metadata["model"], json!("careful"));

    let args = format!(
        "DIR/numbers.yaml --task double --models sloppy --baseline {} --no-durations",
        saved.display()
    );
    let (text, _) = eval(&dir, &args).await;
    let diff = text
        .split("Evaluation Diff: careful → sloppy")
        .nth(1)
        .expect("a diff table");
    assert!(
        diff.contains("│ three    │      ✔→✗       │    ✔     │   ✔→✗    │"),
        "{diff}"
    );
    assert!(
        diff.contains("│ Averages │    100%→50%    │   100%   │ 100%→50% │"),
        "{diff}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn json_output_and_standard_tasks() {
    let dir = setup("json");
    let (text, outcome) = eval(&dir, "DIR/numbers.yaml --task echo --json").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["name"], json!("echo"));
    // echo returns the inputs: 1 is not 2.
    assert_eq!(v["cases"][0]["assertions"][0]["value"], json!(false));
    assert_eq!(outcome.exit_code, 0, "not strict");

    let (text, outcome) = eval(&dir, "DIR/numbers.yaml --task prompt --no-durations").await;
    assert_eq!(outcome.reports[0].failures.len(), 2);
    assert!(text.contains("the prompt task needs a model"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn usage_errors_name_the_problem() {
    let dir = setup("usage");
    let err = EvalArgs::parse(["x.yaml", "--frobnicate"])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("unknown option --frobnicate"), "{err}");
    let err = EvalArgs::parse(["--repeat", "many"])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("--repeat: `many` is not a number"), "{err}");
    let args = EvalArgs::parse([dir.join("numbers.yaml").display().to_string()]).unwrap();
    let err = run_with(&args, &registry(), &mut Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "which task? pass --task NAME; registered: double, echo, prompt"
    );
    let mut out = Vec::new();
    run_with(&EvalArgs::parse(["--list"]).unwrap(), &registry(), &mut out)
        .await
        .unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("double           doubles a number")
    );
    let args = EvalArgs::parse([
        "--repeat=2",
        "--param",
        "k=v",
        "--models=a,b",
        "--model",
        "c",
        "d.yaml",
    ])
    .unwrap();
    assert_eq!(
        (args.repeat, args.models.len(), args.params["k"].as_str()),
        (2, 3, "v")
    );
    std::fs::remove_dir_all(&dir).ok();
}
