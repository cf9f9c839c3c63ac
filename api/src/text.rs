//! [`Text`]: a JSON string field that takes only a JSON string. poem-openapi's
//! `String` also takes a number or a boolean (`false` arrives as `"false"`), which
//! the document, `type: string`, says is refused. Request bodies use `Text`.

use std::{borrow::Cow, ops::Deref};

use poem_openapi::{
    registry::MetaSchemaRef,
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

/// A string from a JSON body, and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.0
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(text) => Ok(Self(text)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strings_are_text() {
        let parse = |v: Value| Text::parse_from_json(Some(v)).ok();
        assert_eq!(parse(Value::from("ada")), Some(Text("ada".into())));
        assert_eq!(parse(Value::from(false)), None);
        assert_eq!(parse(Value::from(12)), None);
        assert_eq!(parse(Value::Null), None);
        // poem-openapi's own String is lenient: the reason for this type.
        assert_eq!(
            String::parse_from_json(Some(Value::from(false)))
                .ok()
                .as_deref(),
            Some("false")
        );
    }
}
