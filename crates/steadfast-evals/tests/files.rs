//! Datasets in YAML and JSON files, with their generated JSON Schema.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steadfast_evals::{
    Case, Contains, Dataset, EqualsExpected, EvaluateOptions, Evaluator, EvaluatorContext,
    EvaluatorRegistry, EvaluatorResult, EvaluatorSpec, Format, LLMJudge, MaxDuration, from_args,
    schema_check,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Yes,
    No,
}

/// How hard a case is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Meta {
    /// 1 (easy) to 3 (hard).
    difficulty: u8,
}

/// A custom evaluator with an argument, registered under a name for files.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnswerIs {
    answer: Answer,
}

impl Evaluator<String, Answer, Meta> for AnswerIs {
    fn evaluate_sync(&self, ctx: &EvaluatorContext<String, Answer, Meta>) -> EvaluatorResult {
        Ok((ctx.output == self.answer).into())
    }

    fn spec(&self) -> EvaluatorSpec {
        EvaluatorSpec::with_args("AnswerIs", self)
    }
}

fn registry() -> EvaluatorRegistry<String, Answer, Meta> {
    let mut r = EvaluatorRegistry::with_builtins();
    r.register("AnswerIs", |args| {
        from_args::<AnswerIs>(args, Some("answer"))
    });
    r
}

fn dataset() -> Dataset<String, Answer, Meta> {
    Dataset::new("yes or no")
        .case(
            Case::new("sky", "Is the sky blue?".to_string())
                .expected_output(Answer::Yes)
                .metadata(Meta { difficulty: 1 }),
        )
        .case(
            Case::new("fish", "Can fish fly?".to_string())
                .expected_output(Answer::No)
                .metadata(Meta { difficulty: 2 })
                .evaluator(AnswerIs { answer: Answer::No })
                .evaluator(MaxDuration::new(Duration::from_secs(2))),
        )
        .evaluator(EqualsExpected::default())
        .evaluator(Contains::new("y").as_strings())
        .evaluator(LLMJudge::new("The answer is right").model("openai:gpt-4.1-mini"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("steadfast-evals-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn specs<I, O, M>(ds: &Dataset<I, O, M>) -> Vec<Vec<Value>> {
    std::iter::once(&ds.evaluators)
        .chain(ds.cases.iter().map(|c| &c.evaluators))
        .map(|evs| {
            evs.iter()
                .map(|e| serde_json::to_value(e.spec()).unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn yaml_files_round_trip_and_reference_their_schema() {
    let dir = temp_dir("yaml");
    let path = dir.join("questions.yaml");
    let ds = dataset();
    ds.to_file_with(&path, &registry()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let expected = "\
# yaml-language-server: $schema=questions_schema.json
name: yes or no
cases:
- name: sky
  inputs: Is the sky blue?
  metadata:
    difficulty: 1
  expected_output: yes
- name: fish
  inputs: Can fish fly?
  metadata:
    difficulty: 2
  expected_output: no
  evaluators:
  - AnswerIs:
      answer: no
  - MaxDuration: 2.0
evaluators:
- EqualsExpected
- Contains:
    as_strings: true
    value: y
- LLMJudge:
    assertion:
      include_reason: true
    include_expected_output: false
    include_input: false
    model: openai:gpt-4.1-mini
    rubric: The answer is right
";
    assert_eq!(text, expected);
    let back = Dataset::<String, Answer, Meta>::from_file_with(&path, &registry()).unwrap();
    assert_eq!(back.name.as_deref(), Some("yes or no"));
    assert_eq!(back.cases[1].metadata, Some(Meta { difficulty: 2 }));
    assert_eq!(back.cases[1].expected_output, Some(Answer::No));
    assert_eq!(specs(&back), specs(&ds));

    // The file validates against the schema written next to it.
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("questions_schema.json")).unwrap())
            .unwrap();
    let as_json: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(
        schema_check::validate(&schema, &as_json),
        Vec::<String>::new()
    );
    // And the schema catches mistakes.
    let mut wrong = as_json.clone();
    wrong["cases"][0]["expected_output"] = json!("maybe");
    wrong["cases"][1]["metadata"] = json!({"difficulty": "hard"});
    wrong["evaluators"][0] = json!("NoSuchEvaluator");
    let errors = schema_check::validate(&schema, &wrong).join("\n");
    assert!(errors.contains("$.cases[0].expected_output"), "{errors}");
    assert!(
        errors.contains("$.cases[1].metadata.difficulty: expected integer"),
        "{errors}"
    );
    assert!(errors.contains("$.evaluators[0]"), "{errors}");
    assert_eq!(
        schema["properties"]["cases"]["items"]["properties"]["metadata"]["properties"]["difficulty"]
            ["description"],
        json!("1 (easy) to 3 (hard).")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn json_files_round_trip_with_a_schema_key() {
    let dir = temp_dir("json");
    let path = dir.join("questions.json");
    dataset().to_file_with(&path, &registry()).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["$schema"], json!("questions_schema.json"));
    assert_eq!(v["cases"][1]["evaluators"][1], json!({"MaxDuration": 2.0}));
    assert!(dir.join("questions_schema.json").exists());
    let back = Dataset::<String, Answer, Meta>::from_file_with(&path, &registry()).unwrap();
    assert_eq!(specs(&back), specs(&dataset()));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_hand_written_file_loads_and_runs() {
    let yaml = "
name: capitals
cases:
  - name: France
    inputs: France
    expected_output: Paris
  - name: Peru
    inputs: Peru
    expected_output: Lima
    evaluators:
      - {Contains: {value: li, case_sensitive: false}}
evaluators:
  - EqualsExpected
  - {IsInstance: string}
  - {MaxDuration: 10}
";
    let ds = Dataset::<String, String>::from_text(
        yaml,
        Format::Yaml,
        &EvaluatorRegistry::with_builtins(),
    )
    .unwrap();
    let report = ds
        .evaluate(
            |c: String| async move {
                Ok::<_, std::convert::Infallible>(if c == "France" {
                    "Paris".to_string()
                } else {
                    "Lima".to_string()
                })
            },
            EvaluateOptions::new().progress(false),
        )
        .await;
    assert!(
        report.all_passed(),
        "{}",
        report.render(&Default::default())
    );
    assert_eq!(report.case("Peru").unwrap().assertions.len(), 4);
}

#[test]
fn bad_files_say_what_is_wrong() {
    let reg = EvaluatorRegistry::<String, String>::with_builtins();
    let load = |yaml: &str| {
        Dataset::<String, String>::from_text(yaml, Format::Yaml, &reg)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(
        load("cases:\n- {name: a, inputs: x}\n- {name: a, inputs: y}\n")
            .contains("two cases are named `a`")
    );
    assert!(
        load("cases:\n- {name: a, inputs: x}\nevaluators: [Polite]\n")
            .contains("unknown evaluator `Polite`")
    );
    assert!(load("cases:\n- {name: a, input: x}\n").contains("unknown field `input`"));
    assert!(load("cases:\n- {name: a, inputs: [1, 2]}\n").contains("invalid type"));
    let err = Dataset::<String, String>::from_file("cases.txt")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("a dataset file ends in .yaml, .yml or .json"),
        "{err}"
    );
}
