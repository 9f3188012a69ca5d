//! Typed output: how the model's final answer becomes a Rust value.

use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{OutputMode, OutputSchema, ToolDefinition};
use crate::schema;

/// The name of the output tool in tool output mode.
pub const OUTPUT_TOOL_NAME: &str = "final_result";

/// How output of type `O` is requested and parsed.
pub struct OutputSpec<O> {
    pub(crate) mode: OutputMode,
    schema: Value,
    wrapped: bool,
    description: Option<String>,
    name: String,
    _o: PhantomData<fn() -> O>,
}

impl<O> Clone for OutputSpec<O> {
    fn clone(&self) -> Self {
        OutputSpec {
            mode: self.mode,
            schema: self.schema.clone(),
            wrapped: self.wrapped,
            description: self.description.clone(),
            name: self.name.clone(),
            _o: PhantomData,
        }
    }
}

impl<O: DeserializeOwned + JsonSchema> OutputSpec<O> {
    /// The default spec for `O`: plain text for `String`, tool output for everything else.
    pub fn new() -> Self {
        let mut raw = schema::schema_of::<O>();
        let mode = if schema::is_plain_string_schema(&raw) {
            OutputMode::Text
        } else {
            OutputMode::Tool
        };
        let description = schema::take_description(&mut raw);
        let wrapped = !schema::is_object_schema(&raw);
        let schema = if wrapped {
            schema::wrap_response(raw)
        } else {
            raw
        };
        let name = std::any::type_name::<O>()
            .rsplit("::")
            .next()
            .unwrap_or("output")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>();
        OutputSpec {
            mode,
            schema,
            wrapped,
            description,
            name: if name.is_empty() {
                "output".into()
            } else {
                name
            },
            _o: PhantomData,
        }
    }

    /// The same spec in another mode. Text mode needs an `O` that deserializes from a string.
    pub fn with_mode(mut self, mode: OutputMode) -> Self {
        self.mode = mode;
        self
    }

    /// The output tool, in tool mode.
    pub(crate) fn output_tool(&self) -> Option<ToolDefinition> {
        (self.mode == OutputMode::Tool).then(|| ToolDefinition {
            name: OUTPUT_TOOL_NAME.to_string(),
            description: Some(
                self.description
                    .clone()
                    .unwrap_or_else(|| "The final response which ends this conversation".into()),
            ),
            parameters: self.schema.clone(),
            strict: None,
        })
    }

    /// The response schema, in native mode.
    pub(crate) fn native_schema(&self) -> Option<OutputSchema> {
        (self.mode == OutputMode::Native).then(|| OutputSchema {
            name: self.name.clone(),
            description: self.description.clone(),
            schema: self.schema.clone(),
            strict: Some(true),
        })
    }

    /// Parse the output tool's arguments.
    pub(crate) fn parse_tool_args(&self, args: &str) -> Result<O, String> {
        let text = if args.trim().is_empty() { "{}" } else { args };
        let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        self.decode(v)
    }

    /// Parse text: as JSON in native mode, as a string in text mode.
    pub(crate) fn parse_text(&self, text: &str) -> Result<O, String> {
        match self.mode {
            OutputMode::Text => serde_json::from_value(Value::String(text.to_string()))
                .map_err(|e| format!("invalid output: {e}")),
            _ => {
                let body = strip_fences(text);
                let v: Value =
                    serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
                self.decode(v)
            }
        }
    }

    fn decode(&self, v: Value) -> Result<O, String> {
        let v = if self.wrapped {
            match v {
                Value::Object(mut m) if m.contains_key("response") => {
                    m.remove("response").unwrap_or(Value::Null)
                }
                other => other,
            }
        } else {
            v
        };
        serde_json::from_value(v).map_err(|e| format!("output does not match the schema: {e}"))
    }
}

impl<O: DeserializeOwned + JsonSchema> Default for OutputSpec<O> {
    fn default() -> Self {
        Self::new()
    }
}

fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        if let Some(body) = rest.strip_suffix("```") {
            return body.trim();
        }
    }
    t
}
