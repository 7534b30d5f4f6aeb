//! JSON Schema → Gemini's `Schema` (an OpenAPI 3.0 subset).
//!
//! Gemini rejects a request whose schema holds any key outside its `Schema` message with a 400
//! ("Invalid JSON payload received. Unknown name \"additionalProperties\" ..."), and OpenAI
//! callers routinely send such keys (`additionalProperties`, `$schema`, `strict`, Pydantic's
//! `$defs` / `$ref` / `title`, `const`, `oneOf`, `["string", "null"]` types). Rather than fail
//! the call, the schema is rewritten to what Gemini accepts, keeping every constraint it can
//! express: `$ref`s to `$defs` / `definitions` are inlined, nullable unions become `nullable`,
//! `const` becomes a one-value `enum`, `oneOf` becomes `anyOf`, everything else unknown is
//! dropped.

use serde_json::{Map, Value, json};

/// The keys of Gemini's `Schema`.
const KEPT: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// The `format`s Gemini accepts (any other is a 400).
const FORMATS: &[&str] = &["enum", "date-time", "int32", "int64", "float", "double"];

/// How deep `$ref`s are followed, so that a recursive schema terminates.
const MAX_DEPTH: usize = 24;

/// A function's `parameters`, cleaned; `None` for a function without parameters (Gemini
/// rejects an `OBJECT` schema with empty `properties`).
pub fn function_parameters(schema: &Value) -> Option<Value> {
    let cleaned = response_schema(schema)?;
    let has_properties = cleaned.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
    let is_object = cleaned.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("object"));
    (has_properties || !is_object).then_some(cleaned)
}

/// A `response_format.json_schema.schema`, cleaned; `None` if it is not a schema object.
pub fn response_schema(schema: &Value) -> Option<Value> {
    let root = schema.as_object()?;
    let defs = Defs { defs: root.get("$defs").and_then(Value::as_object), definitions: root.get("definitions").and_then(Value::as_object) };
    Some(clean(schema, &defs, 0))
}

/// Definitions a `$ref` may point at.
struct Defs<'a> {
    defs: Option<&'a Map<String, Value>>,
    definitions: Option<&'a Map<String, Value>>,
}

impl<'a> Defs<'a> {
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        if let Some(name) = reference.strip_prefix("#/$defs/") {
            return self.defs?.get(name);
        }
        self.definitions?.get(reference.strip_prefix("#/definitions/")?)
    }
}

fn clean(node: &Value, defs: &Defs<'_>, depth: usize) -> Value {
    let Some(obj) = node.as_object() else { return json!({}) };
    if depth > MAX_DEPTH {
        return json!({ "type": "object" });
    }
    if let Some(target) = obj.get("$ref").and_then(Value::as_str).and_then(|r| defs.resolve(r)) {
        return merged(target, obj, defs, depth);
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if let [single] = all.as_slice() {
            return merged(single, obj, defs, depth);
        }
    }
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "type" => set_type(value, &mut out),
            "properties" => set_properties(value, defs, depth, &mut out),
            "items" => {
                let item = if let Value::Array(tuple) = value { tuple.first().cloned().unwrap_or_default() } else { value.clone() };
                out.insert("items".into(), clean(&item, defs, depth + 1));
            }
            "anyOf" | "oneOf" => set_any_of(value, defs, depth, &mut out),
            "enum" => set_enum(value, &mut out),
            "const" if value.is_string() => {
                out.insert("enum".into(), json!([value]));
            }
            "format" if value.as_str().is_some_and(|f| FORMATS.contains(&f)) => {
                out.insert(key.clone(), value.clone());
            }
            "format" | "const" => {}
            k if KEPT.contains(&k) => {
                out.entry(k.to_owned()).or_insert_with(|| value.clone());
            }
            _ => {} // additionalProperties, $schema, strict, $id, examples, ...
        }
    }
    if out.contains_key("enum") && !out.contains_key("type") {
        out.insert("type".into(), json!("string"));
    }
    keep_known_required(&mut out);
    Value::Object(out)
}

/// A referenced (or single `allOf`) schema with the referring node's own annotations on top.
fn merged(target: &Value, referrer: &Map<String, Value>, defs: &Defs<'_>, depth: usize) -> Value {
    let mut base = clean(target, defs, depth + 1);
    if let Value::Object(base) = &mut base {
        for key in ["description", "title", "default", "nullable"] {
            if let Some(v) = referrer.get(key) {
                base.insert(key.to_owned(), v.clone());
            }
        }
    }
    base
}

/// `"type": ["string", "null"]` → `"type": "string", "nullable": true`.
fn set_type(value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::String(_) => {
            out.insert("type".into(), value.clone());
        }
        Value::Array(types) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            if names.contains(&"null") {
                out.insert("nullable".into(), json!(true));
            }
            if let Some(first) = names.iter().find(|t| **t != "null") {
                out.insert("type".into(), json!(first));
            }
        }
        _ => {}
    }
}

/// Cleans each property; an empty `properties` is dropped (Gemini rejects it).
fn set_properties(value: &Value, defs: &Defs<'_>, depth: usize, out: &mut Map<String, Value>) {
    let Some(props) = value.as_object() else { return };
    if props.is_empty() {
        return;
    }
    let cleaned: Map<String, Value> = props.iter().map(|(k, v)| (k.clone(), clean(v, defs, depth + 1))).collect();
    out.insert("properties".into(), Value::Object(cleaned));
}

/// `anyOf` / `oneOf`; a union with `null` (Pydantic's `Optional[X]`) becomes `X` made nullable.
fn set_any_of(value: &Value, defs: &Defs<'_>, depth: usize, out: &mut Map<String, Value>) {
    let Some(options) = value.as_array() else { return };
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    let non_null: Vec<&Value> = options.iter().filter(|v| !is_null(v)).collect();
    let nullable = non_null.len() < options.len();
    if let [single] = non_null.as_slice() {
        if let Value::Object(inner) = clean(single, defs, depth + 1) {
            for (k, v) in inner {
                out.entry(k).or_insert(v);
            }
        }
    } else if !non_null.is_empty() {
        out.insert("anyOf".into(), Value::Array(non_null.iter().map(|v| clean(v, defs, depth + 1)).collect()));
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
}

/// Gemini's `enum` holds strings only; a non-string enum is dropped (the type still constrains).
fn set_enum(value: &Value, out: &mut Map<String, Value>) {
    let Some(values) = value.as_array() else { return };
    if values.iter().all(Value::is_string) && !values.is_empty() {
        out.insert("enum".into(), value.clone());
    }
}

/// `required` may name only defined properties (Gemini rejects others).
fn keep_known_required(out: &mut Map<String, Value>) {
    let Some(Value::Array(required)) = out.get("required") else { return };
    let known: Vec<Value> = match out.get("properties").and_then(Value::as_object) {
        Some(props) => required.iter().filter(|r| r.as_str().is_some_and(|name| props.contains_key(name))).cloned().collect(),
        None => Vec::new(),
    };
    if known.is_empty() {
        out.remove("required");
    } else {
        out.insert("required".into(), Value::Array(known));
    }
}
