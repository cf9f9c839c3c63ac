//! Checks a JSON response against the app's own OpenAPI document: the operation
//! exists, it declares the status, and the body fits the declared schema (types,
//! required properties, arrays, `$ref`s).

use serde_json::Value;

/// The spec served at `/api/openapi.json`.
pub struct Spec(pub Value);

impl Spec {
    /// Panics unless `body` is a documented response of `method path` with `status`.
    pub fn assert_response(&self, method: &str, path: &str, status: u16, body: &Value) {
        let operation = &self.0["paths"][path][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} does not document status {status}"
        );
        let content = &response["content"];
        let Some(schema) = content
            .as_object()
            .and_then(|c| c.values().next())
            .map(|m| &m["schema"])
        else {
            assert!(
                body.is_null(),
                "{method} {path} {status} documents no body but got {body}"
            );
            return;
        };
        if let Err(problem) = self.check(schema, body, "$") {
            panic!("{method} {path} {status}: {problem}\nbody: {body}");
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                &self.0["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            return all.iter().try_for_each(|s| self.check(s, value, at));
        }
        if let Some(any) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            return if any.iter().any(|s| self.check(s, value, at).is_ok()) {
                Ok(())
            } else {
                Err(format!("{at}: matches no alternative"))
            };
        }
        if value.is_null() {
            return Ok(()); // optional fields are absent or null
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => {
                let object = value
                    .as_object()
                    .ok_or(format!("{at}: expected an object"))?;
                for required in schema["required"].as_array().into_iter().flatten() {
                    let key = required.as_str().unwrap_or_default();
                    if !object.contains_key(key) {
                        return Err(format!("{at}: missing required `{key}`"));
                    }
                }
                if let Some(properties) = schema["properties"].as_object() {
                    for (key, property) in properties {
                        if let Some(v) = object.get(key) {
                            self.check(property, v, &format!("{at}.{key}"))?;
                        }
                    }
                    if let Some(extra) = object.keys().find(|k| !properties.contains_key(*k)) {
                        return Err(format!("{at}: undocumented property `{extra}`"));
                    }
                }
                Ok(())
            }
            Some("array") => {
                let items = value.as_array().ok_or(format!("{at}: expected an array"))?;
                items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, v)| self.check(&schema["items"], v, &format!("{at}[{i}]")))
            }
            Some("string") => value
                .is_string()
                .then_some(())
                .ok_or(format!("{at}: expected a string")),
            Some("integer") => value
                .is_i64()
                .then_some(())
                .ok_or(format!("{at}: expected an integer")),
            Some("number") => value
                .is_number()
                .then_some(())
                .ok_or(format!("{at}: expected a number")),
            Some("boolean") => value
                .is_boolean()
                .then_some(())
                .ok_or(format!("{at}: expected a boolean")),
            _ => Ok(()),
        }
    }
}
