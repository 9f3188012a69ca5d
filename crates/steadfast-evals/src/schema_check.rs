//! A small JSON Schema validator for [`crate::MatchesSchema`]: the keywords that schemas derived
//! from Rust types use (`type`, `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `prefixItems`, lengths and bounds, `anyOf`/`oneOf`/`allOf`/
//! `not`, and local `$ref`s). `pattern` and `format` are not checked.

use serde_json::Value;

use crate::json::{json_eq, type_name};

/// The ways `value` breaks `schema`, each with the JSON path where it happens. Empty: it is valid.
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, value, "$", &mut errors, 0);
    errors
}

fn resolve<'a>(root: &'a Value, r: &str) -> Option<&'a Value> {
    let path = r.strip_prefix('#')?;
    if path.is_empty() {
        return Some(root);
    }
    root.pointer(path)
}

fn type_ok(expected: &str, v: &Value) -> bool {
    let actual = type_name(v);
    expected == actual
        || (expected == "number" && actual == "integer")
        || (expected == "integer" && v.as_f64().is_some_and(|f| f.fract() == 0.0))
}

fn check(
    root: &Value,
    schema: &Value,
    v: &Value,
    path: &str,
    errors: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        errors.push(format!("{path}: schema nests too deeply"));
        return;
    }
    let s = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errors.push(format!("{path}: no value is allowed here"));
            return;
        }
        Value::Object(s) => s,
        _ => return,
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        match resolve(root, r) {
            Some(target) => check(root, target, v, path, errors, depth + 1),
            None => errors.push(format!("{path}: cannot resolve $ref {r}")),
        }
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => {
            errors.push(format!("{path}: expected {t}, got {}", type_name(v)));
            return;
        }
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, v)) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            errors.push(format!(
                "{path}: expected {}, got {}",
                names.join(" or "),
                type_name(v)
            ));
            return;
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.iter().any(|o| json_eq(o, v))
    {
        errors.push(format!(
            "{path}: {v} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Some(c) = s.get("const")
        && !json_eq(c, v)
    {
        errors.push(format!("{path}: expected {c}, got {v}"));
    }
    match v {
        Value::Object(obj) => {
            let props = s.get("properties").and_then(Value::as_object);
            if let Some(Value::Array(req)) = s.get("required") {
                for r in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        errors.push(format!("{path}: missing required property `{r}`"));
                    }
                }
            }
            for (k, val) in obj {
                let sub = format!("{path}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => check(root, ps, val, &sub, errors, depth + 1),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            errors.push(format!("{path}: unexpected property `{k}`"))
                        }
                        Some(extra @ Value::Object(_)) => {
                            check(root, extra, val, &sub, errors, depth + 1)
                        }
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            let prefix = s.get("prefixItems").and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let sub = format!("{path}[{i}]");
                match prefix.and_then(|p| p.get(i)) {
                    Some(ps) => check(root, ps, item, &sub, errors, depth + 1),
                    None => {
                        if let Some(is) = s.get("items") {
                            check(root, is, item, &sub, errors, depth + 1);
                        }
                    }
                }
            }
            if let Some(n) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < n
            {
                errors.push(format!("{path}: {} items, fewer than {n}", items.len()));
            }
            if let Some(n) = s.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > n
            {
                errors.push(format!("{path}: {} items, more than {n}", items.len()));
            }
        }
        Value::String(text) => {
            let len = text.chars().count() as u64;
            if let Some(n) = s.get("minLength").and_then(Value::as_u64)
                && len < n
            {
                errors.push(format!("{path}: shorter than {n} characters"));
            }
            if let Some(n) = s.get("maxLength").and_then(Value::as_u64)
                && len > n
            {
                errors.push(format!("{path}: longer than {n} characters"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let bound = |k: &str| s.get(k).and_then(Value::as_f64);
            if bound("minimum").is_some_and(|m| x < m) {
                errors.push(format!("{path}: {x} is below the minimum {}", s["minimum"]));
            }
            if bound("maximum").is_some_and(|m| x > m) {
                errors.push(format!("{path}: {x} is above the maximum {}", s["maximum"]));
            }
            if bound("exclusiveMinimum").is_some_and(|m| x <= m) {
                errors.push(format!(
                    "{path}: {x} is not above {}",
                    s["exclusiveMinimum"]
                ));
            }
            if bound("exclusiveMaximum").is_some_and(|m| x >= m) {
                errors.push(format!(
                    "{path}: {x} is not below {}",
                    s["exclusiveMaximum"]
                ));
            }
        }
        _ => {}
    }
    let passes = |sub: &Value| {
        let mut e = Vec::new();
        check(root, sub, v, path, &mut e, depth + 1);
        e.is_empty()
    };
    if let Some(Value::Array(all)) = s.get("allOf") {
        for sub in all {
            check(root, sub, v, path, errors, depth + 1);
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf")
        && !any.iter().any(passes)
    {
        errors.push(format!(
            "{path}: matches none of the allowed shapes (anyOf)"
        ));
    }
    if let Some(Value::Array(one)) = s.get("oneOf") {
        let n = one.iter().filter(|sub| passes(sub)).count();
        if n != 1 {
            errors.push(format!(
                "{path}: matches {n} of the oneOf shapes, not exactly one"
            ));
        }
    }
    if let Some(not) = s.get("not")
        && passes(not)
    {
        errors.push(format!("{path}: matches a shape it must not (not)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_the_common_keywords() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
                "pet": {"$ref": "#/$defs/Pet"}
            },
            "required": ["name"],
            "additionalProperties": false,
            "$defs": {"Pet": {"type": ["string", "null"]}}
        });
        assert!(
            validate(
                &schema,
                &json!({"name": "x", "age": 3, "tags": ["a"], "pet": null})
            )
            .is_empty()
        );
        let errs = validate(
            &schema,
            &json!({"age": -1.5, "tags": ["c"], "pet": 3, "extra": 1}),
        );
        let text = errs.join("\n");
        for want in [
            "missing required property `name`",
            "$.age: expected integer",
            "$.tags[0]",
            "$.pet: expected string or null",
            "unexpected property `extra`",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
