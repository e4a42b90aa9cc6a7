//! The report's JSON Schema (docs/bench.schema.json) and a validator for the part of JSON Schema
//! it uses: `type` (one or a list), `properties`, `required`, `additionalProperties` (false or a
//! schema), `items` (one schema, or `prefixItems` for fixed-length tuples), `enum`, `const`,
//! `minimum`. Any other keyword in the schema is an error, so the schema cannot silently ask
//! for more than is checked.

use serde_json::Value;

pub const SCHEMA: &str = include_str!("../../../docs/bench.schema.json");

/// Every place where `doc` breaks `schema`, as `path: what`.
pub fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errors = vec![];
    check(schema, doc, "$", &mut errors);
    errors
}

/// Validates a report against the bundled schema.
pub fn validate_report(doc: &Value) -> Vec<String> {
    match serde_json::from_str(SCHEMA) {
        Ok(schema) => validate(&schema, doc),
        Err(e) => vec![format!("the bundled schema is not JSON: {e}")],
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_u64() || v.is_i64(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn check(s: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(s) = s.as_object() else {
        if s != &Value::Bool(true) {
            errors.push(format!("{path}: schema is not an object"));
        }
        return;
    };
    for (k, rule) in s {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" => {}
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !types.iter().any(|t| type_ok(t, v)) {
                    errors.push(format!("{path}: expected {}, found {v}", types.join(" or ")));
                    return;
                }
            }
            "enum" => {
                if !rule.as_array().is_some_and(|a| a.contains(v)) {
                    errors.push(format!("{path}: {v} is not one of {rule}"));
                }
            }
            "const" => {
                if rule != v {
                    errors.push(format!("{path}: expected {rule}, found {v}"));
                }
            }
            "minimum" => {
                if let (Some(min), Some(x)) = (rule.as_f64(), v.as_f64()) {
                    if x < min {
                        errors.push(format!("{path}: {x} is below the minimum {min}"));
                    }
                }
            }
            "required" => {
                if let Some(obj) = v.as_object() {
                    for name in rule.as_array().into_iter().flatten().filter_map(Value::as_str) {
                        if !obj.contains_key(name) {
                            errors.push(format!("{path}: missing `{name}`"));
                        }
                    }
                }
            }
            "properties" => {
                if let (Some(obj), Some(props)) = (v.as_object(), rule.as_object()) {
                    for (name, sub) in props {
                        if let Some(x) = obj.get(name) {
                            check(sub, x, &format!("{path}.{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(obj) = v.as_object() {
                    let known = s.get("properties").and_then(Value::as_object);
                    for (name, x) in obj.iter().filter(|(n, _)| !known.is_some_and(|p| p.contains_key(*n))) {
                        match rule {
                            Value::Bool(false) => errors.push(format!("{path}: unexpected `{name}`")),
                            sub => check(sub, x, &format!("{path}.{name}"), errors),
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    let skip = s.get("prefixItems").and_then(Value::as_array).map_or(0, Vec::len);
                    for (i, x) in a.iter().enumerate().skip(skip) {
                        match rule {
                            Value::Bool(false) => errors.push(format!("{path}[{i}]: more items than the tuple's")),
                            sub => check(sub, x, &format!("{path}[{i}]"), errors),
                        }
                    }
                }
            }
            "prefixItems" => {
                if let (Some(a), Some(subs)) = (v.as_array(), rule.as_array()) {
                    if a.len() < subs.len() {
                        errors.push(format!("{path}: {} items, the tuple has {}", a.len(), subs.len()));
                    }
                    for (i, (sub, x)) in subs.iter().zip(a).enumerate() {
                        check(sub, x, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            other => errors.push(format!("{path}: the validator does not support the keyword `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_breaks_a_schema() {
        let s = json!({"type": "object", "required": ["a"], "additionalProperties": false,
            "properties": {"a": {"type": "integer", "minimum": 1}, "b": {"type": "array", "items": {"enum": ["x", "y"]}},
                           "t": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "items": false}}});
        assert!(validate(&s, &json!({"a": 2, "b": ["x"], "t": ["n", 1.5]})).is_empty());
        let e = validate(&s, &json!({"a": 0, "b": ["z"], "c": 1, "t": ["n", 1, 2]}));
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(validate(&s, &json!({"b": []}))[0].contains("missing `a`"));
        assert!(!validate(&json!({"type": "string", "pattern": "x"}), &json!("x")).is_empty(), "unknown keywords are errors");
    }

    #[test]
    fn the_bundled_schema_parses_and_uses_only_supported_keywords() {
        let s: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(s["properties"]["schema"]["const"], super::super::SCHEMA_VERSION);
        // An empty object breaks it only by what is missing, not by unsupported keywords.
        let e = validate(&s, &json!({}));
        assert!(e.iter().all(|m| m.contains("missing")), "{e:?}");
    }
}
