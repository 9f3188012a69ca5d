//! JSON Schemas derived from Rust types, shaped the way model providers accept them.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// The JSON Schema of `T`, with subschemas inlined and the `$schema` key removed.
///
/// Doc comments on the type and its fields become `description`s.
pub fn schema_of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
        })
        .into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
    }
    value
}

/// Whether the schema describes an object (so it can be a tool's parameters as it is).
pub fn is_object_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
}

/// Whether the schema is a plain, unconstrained string (so plain text is the output).
pub fn is_plain_string_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("string")
        && schema.get("enum").is_none()
        && schema.get("const").is_none()
        && schema.get("format").is_none()
        && schema.get("pattern").is_none()
}

/// Takes the root `description` out of a schema (it describes the tool, not the arguments).
pub fn take_description(schema: &mut Value) -> Option<String> {
    let map = schema.as_object_mut()?;
    map.remove("title");
    map.remove("description")
        .and_then(|d| d.as_str().map(str::to_string))
}

/// Wrap a non-object schema as `{"response": schema}`, the shape providers require for tools
/// and JSON-schema response formats.
pub fn wrap_response(schema: Value) -> Value {
    let mut props = Map::new();
    props.insert("response".into(), schema);
    serde_json::json!({
        "type": "object",
        "properties": props,
        "required": ["response"],
        "additionalProperties": false,
    })
}

/// A value that satisfies `schema`, for [`crate::TestModel`]. `seed` varies strings and numbers.
pub fn example_value(schema: &Value, seed: u64) -> Value {
    example_at(schema, schema, seed, 0)
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str)
        && let Some(path) = r.strip_prefix("#/")
    {
        let mut cur = root;
        for seg in path.split('/') {
            match cur.get(seg) {
                Some(next) => cur = next,
                None => return schema,
            }
        }
        return cur;
    }
    schema
}

fn example_at(root: &Value, schema: &Value, seed: u64, depth: usize) -> Value {
    let schema = resolve(root, schema);
    if depth > 8 {
        return Value::Null;
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.is_empty()
    {
        return options[(seed as usize) % options.len()].clone();
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(options)) = schema.get(key)
            && let Some(first) = options
                .iter()
                .find(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .or(options.first())
        {
            return example_at(root, first, seed, depth + 1);
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (name, sub) in props {
                    if required.contains(&name.as_str()) {
                        out.insert(name.clone(), example_at(root, sub, seed, depth + 1));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1);
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(min);
            let n = min.min(max).max(if max > 0 { 1 } else { 0 });
            let item = schema.get("items").cloned().unwrap_or(Value::Null);
            Value::Array(
                (0..n)
                    .map(|i| example_at(root, &item, seed + i, depth + 1))
                    .collect(),
            )
        }
        "integer" => {
            let min = schema.get("minimum").and_then(Value::as_i64).unwrap_or(0);
            Value::from(min.max(0) + (seed % 3) as i64)
        }
        "number" => {
            let min = schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
            Value::from(min.max(0.0) + (seed % 3) as f64)
        }
        "boolean" => Value::Bool(seed.is_multiple_of(2)),
        "null" => Value::Null,
        _ => Value::String(["a", "b", "c"][(seed % 3) as usize].to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where to go.
    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Trip {
        /// The city.
        city: String,
        nights: u32,
        stops: Vec<Stop>,
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Stop {
        name: String,
        kind: Kind,
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    enum Kind {
        Museum,
        Park,
    }

    #[test]
    fn doc_comments_become_descriptions_and_examples_deserialize() {
        let mut s = schema_of::<Trip>();
        assert!(is_object_schema(&s));
        assert_eq!(s["properties"]["city"]["description"], "The city.");
        assert!(s.to_string().find("$ref").is_none(), "{s}");
        for seed in 0..5 {
            let v = example_value(&s, seed);
            serde_json::from_value::<Trip>(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        assert_eq!(take_description(&mut s).as_deref(), Some("Where to go."));
        assert!(is_plain_string_schema(&schema_of::<String>()));
        assert!(!is_plain_string_schema(&schema_of::<Kind>()));
    }
}
