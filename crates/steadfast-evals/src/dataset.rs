//! Cases and datasets, and their YAML and JSON files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EvalError;
use crate::evaluator::{Evaluator, EvaluatorRegistry, EvaluatorSpec};

/// One case: named inputs for the task, with an optional expected output, optional metadata,
/// and evaluators of its own (on top of the dataset's).
pub struct Case<I, O = Value, M = ()> {
    /// A unique name (the row of the report).
    pub name: String,
    /// What the task gets.
    pub inputs: I,
    /// Facts about the case, for evaluators (difficulty, category, ...).
    pub metadata: Option<M>,
    /// What the task should return, for evaluators such as [`crate::EqualsExpected`].
    pub expected_output: Option<O>,
    /// Evaluators for this case only.
    pub evaluators: Vec<Arc<dyn Evaluator<I, O, M>>>,
}

impl<I: Clone, O: Clone, M: Clone> Clone for Case<I, O, M> {
    fn clone(&self) -> Self {
        Case {
            name: self.name.clone(),
            inputs: self.inputs.clone(),
            metadata: self.metadata.clone(),
            expected_output: self.expected_output.clone(),
            evaluators: self.evaluators.clone(),
        }
    }
}

impl<I: std::fmt::Debug, O: std::fmt::Debug, M: std::fmt::Debug> std::fmt::Debug for Case<I, O, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("metadata", &self.metadata)
            .field("expected_output", &self.expected_output)
            .field(
                "evaluators",
                &self.evaluators.iter().map(|e| e.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<I, O, M> Case<I, O, M> {
    /// A case named `name` with `inputs`.
    pub fn new(name: impl Into<String>, inputs: I) -> Self {
        Case {
            name: name.into(),
            inputs,
            metadata: None,
            expected_output: None,
            evaluators: Vec::new(),
        }
    }

    /// With an expected output.
    pub fn expected_output(mut self, expected: O) -> Self {
        self.expected_output = Some(expected);
        self
    }

    /// With metadata.
    pub fn metadata(mut self, metadata: M) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// With an evaluator for this case only.
    pub fn evaluator(mut self, e: impl Evaluator<I, O, M> + 'static) -> Self {
        self.evaluators.push(Arc::new(e));
        self
    }
}

/// Named cases and the evaluators that judge every one of them.
///
/// `I` is the task's input type, `O` its output type and `M` the cases' metadata type.
///
/// ```
/// use steadfast_evals::{Case, Dataset, EqualsExpected, EvaluateOptions};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let dataset = Dataset::<String, String>::new("shout")
///     .case(Case::new("hi", "hi".to_string()).expected_output("HI".to_string()))
///     .evaluator(EqualsExpected::default());
/// let report = dataset
///     .evaluate(|s: String| async move { Ok::<_, std::convert::Infallible>(s.to_uppercase()) }, EvaluateOptions::new().progress(false))
///     .await;
/// assert!(report.all_passed());
/// # });
/// ```
pub struct Dataset<I, O = Value, M = ()> {
    /// The dataset's name (the default name of its reports).
    pub name: Option<String>,
    /// The cases.
    pub cases: Vec<Case<I, O, M>>,
    /// Evaluators for every case.
    pub evaluators: Vec<Arc<dyn Evaluator<I, O, M>>>,
}

impl<I: Clone, O: Clone, M: Clone> Clone for Dataset<I, O, M> {
    fn clone(&self) -> Self {
        Dataset {
            name: self.name.clone(),
            cases: self.cases.clone(),
            evaluators: self.evaluators.clone(),
        }
    }
}

impl<I, O, M> Default for Dataset<I, O, M> {
    fn default() -> Self {
        Dataset {
            name: None,
            cases: Vec::new(),
            evaluators: Vec::new(),
        }
    }
}

impl<I, O, M> Dataset<I, O, M> {
    /// An empty dataset named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Dataset {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// With a case.
    pub fn case(mut self, case: Case<I, O, M>) -> Self {
        self.cases.push(case);
        self
    }

    /// Add a case.
    pub fn add_case(&mut self, case: Case<I, O, M>) {
        self.cases.push(case);
    }

    /// With an evaluator for every case.
    pub fn evaluator(mut self, e: impl Evaluator<I, O, M> + 'static) -> Self {
        self.evaluators.push(Arc::new(e));
        self
    }

    /// Add an evaluator for every case.
    pub fn add_evaluator(&mut self, e: Arc<dyn Evaluator<I, O, M>>) {
        self.evaluators.push(e);
    }

    /// Fails on empty or repeated case names.
    pub fn validate(&self) -> Result<(), EvalError> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.cases {
            if c.name.trim().is_empty() {
                return Err(EvalError::Dataset("a case has an empty name".into()));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(EvalError::Dataset(format!(
                    "two cases are named `{}`",
                    c.name
                )));
            }
        }
        Ok(())
    }
}

/// The format of a dataset file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file's extension names.
    pub fn of_path(path: &Path) -> Result<Format, EvalError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("json") => Ok(Format::Json),
            _ => Err(EvalError::Dataset(format!(
                "{}: a dataset file ends in .yaml, .yml or .json",
                path.display()
            ))),
        }
    }
}

/// The schema file written next to a dataset file: `cases.yaml` → `cases_schema.json`.
pub fn schema_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("dataset");
    path.with_file_name(format!("{stem}_schema.json"))
}

#[derive(Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(
        serialize = "I: Serialize, O: Serialize, M: Serialize",
        deserialize = "I: DeserializeOwned, O: DeserializeOwned, M: DeserializeOwned"
    )
)]
struct CaseFile<I, O, M> {
    name: String,
    inputs: I,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<M>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected_output: Option<O>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evaluators: Vec<EvaluatorSpec>,
}

#[derive(Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(
        serialize = "I: Serialize, O: Serialize, M: Serialize",
        deserialize = "I: DeserializeOwned, O: DeserializeOwned, M: DeserializeOwned"
    )
)]
struct DatasetFile<I, O, M> {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    cases: Vec<CaseFile<I, O, M>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evaluators: Vec<EvaluatorSpec>,
}

impl<I, O, M> Dataset<I, O, M>
where
    I: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static,
    O: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static,
{
    /// Load a `.yaml`/`.yml`/`.json` file whose evaluators are built-in ones.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, EvalError> {
        Self::from_file_with(path, &EvaluatorRegistry::with_builtins())
    }

    /// Load a file whose evaluators `registry` knows.
    pub fn from_file_with(
        path: impl AsRef<Path>,
        registry: &EvaluatorRegistry<I, O, M>,
    ) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let format = Format::of_path(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_text(&text, format, registry).map_err(|e| match e {
            EvalError::Dataset(m) => EvalError::Dataset(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parse a dataset from YAML or JSON text.
    pub fn from_text(
        text: &str,
        format: Format,
        registry: &EvaluatorRegistry<I, O, M>,
    ) -> Result<Self, EvalError> {
        let file: DatasetFile<I, O, M> = match format {
            Format::Yaml => {
                serde_norway::from_str(text).map_err(|e| EvalError::Dataset(e.to_string()))?
            }
            Format::Json => {
                serde_json::from_str(text).map_err(|e| EvalError::Dataset(e.to_string()))?
            }
        };
        type Evaluators<I, O, M> = Vec<Arc<dyn Evaluator<I, O, M>>>;
        let build = |specs: &[EvaluatorSpec]| -> Result<Evaluators<I, O, M>, EvalError> {
            specs.iter().map(|s| registry.build(s)).collect()
        };
        let mut ds = Dataset {
            name: file.name,
            cases: Vec::new(),
            evaluators: build(&file.evaluators)?,
        };
        for c in file.cases {
            ds.cases.push(Case {
                evaluators: build(&c.evaluators)?,
                name: c.name,
                inputs: c.inputs,
                metadata: c.metadata,
                expected_output: c.expected_output,
            });
        }
        ds.validate()?;
        Ok(ds)
    }

    /// The dataset as YAML or JSON text; `schema_ref` names the schema file, when there is one.
    pub fn to_text(&self, format: Format, schema_ref: Option<&str>) -> Result<String, EvalError> {
        let specs =
            |evs: &[Arc<dyn Evaluator<I, O, M>>]| evs.iter().map(|e| e.spec()).collect::<Vec<_>>();
        let file = DatasetFile {
            schema: match format {
                Format::Json => schema_ref.map(str::to_string),
                Format::Yaml => None,
            },
            name: self.name.clone(),
            cases: self
                .cases
                .iter()
                .map(|c| CaseFile {
                    name: c.name.clone(),
                    inputs: c.inputs.clone(),
                    metadata: c.metadata.clone(),
                    expected_output: c.expected_output.clone(),
                    evaluators: specs(&c.evaluators),
                })
                .collect(),
            evaluators: specs(&self.evaluators),
        };
        Ok(match format {
            Format::Json => {
                serde_json::to_string_pretty(&file)
                    .map_err(|e| EvalError::Dataset(e.to_string()))?
                    + "\n"
            }
            Format::Yaml => {
                let body = serde_norway::to_string(&file)
                    .map_err(|e| EvalError::Dataset(e.to_string()))?;
                match schema_ref {
                    Some(s) => format!("# yaml-language-server: $schema={s}\n{body}"),
                    None => body,
                }
            }
        })
    }

    /// Write the dataset to a `.yaml`/`.yml`/`.json` file, and its JSON Schema next to it
    /// (`cases.yaml` → `cases_schema.json`), which the file references so editors complete and
    /// check it. Evaluators are written by name and arguments; custom ones must be registered
    /// under the same name to load the file again.
    pub fn to_file(&self, path: impl AsRef<Path>) -> Result<(), EvalError> {
        self.to_file_with(path, &EvaluatorRegistry::with_builtins())
    }

    /// [`Dataset::to_file`], with the evaluators of `registry` in the schema.
    pub fn to_file_with(
        &self,
        path: impl AsRef<Path>,
        registry: &EvaluatorRegistry<I, O, M>,
    ) -> Result<(), EvalError> {
        let path = path.as_ref();
        let format = Format::of_path(path)?;
        let schema_file = schema_path(path);
        let schema_name = schema_file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("dataset_schema.json")
            .to_string();
        let write = |p: &Path, text: String| {
            std::fs::write(p, text).map_err(|e| EvalError::Io {
                path: p.display().to_string(),
                source: e,
            })
        };
        let schema =
            serde_json::to_string_pretty(&Self::json_schema_with(registry)).unwrap_or_default();
        write(&schema_file, schema + "\n")?;
        write(path, self.to_text(format, Some(&schema_name))?)
    }

    /// The JSON Schema of this dataset's files, with the built-in evaluators.
    pub fn json_schema() -> Value {
        Self::json_schema_with(&EvaluatorRegistry::with_builtins())
    }

    /// The JSON Schema of this dataset's files, with the evaluators of `registry`.
    pub fn json_schema_with(registry: &EvaluatorRegistry<I, O, M>) -> Value {
        use steadfast_core::schema::schema_of;
        let evaluator = registry.spec_schema();
        let evaluators = serde_json::json!({ "type": "array", "items": evaluator });
        let case = serde_json::json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "A unique name for the case." },
                "inputs": schema_of::<I>(),
                "metadata": schema_of::<M>(),
                "expected_output": schema_of::<O>(),
                "evaluators": evaluators,
            },
            "required": ["name", "inputs"],
            "additionalProperties": false,
        });
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Steadfast evaluation dataset",
            "type": "object",
            "properties": {
                "$schema": { "type": "string" },
                "name": { "type": "string" },
                "cases": { "type": "array", "items": case },
                "evaluators": evaluators,
            },
            "required": ["cases"],
            "additionalProperties": false,
        })
    }
}
