/// The most characters a name has once trimmed.
pub const NAME_MAX_CHARS: usize = 100;

/// A project or agent name: trimmed, 1–100 characters, no control characters.
pub fn parse_name(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(format!("must be at most {NAME_MAX_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(name.to_owned())
}

/// A project name must also not look like an id, since commands take "NAME_OR_ID".
pub fn parse_project_name(s: &str) -> Result<String, String> {
    let name = parse_name(s)?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must not be only digits (it would read as a project id)".into());
    }
    Ok(name)
}

/// The JSON Schema of what [`parse_name`] accepts, built from the same character predicates:
/// whitespace around the name, then 1–100 characters without control characters that start
/// and end with something other than whitespace.
#[cfg(feature = "openapi")]
pub fn name_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let space = char_class(char::is_whitespace);
    let control = char_class(char::is_control);
    let inner = NAME_MAX_CHARS - 2;
    let pattern = format!(
        "^[{space}]*(?:[^{control}{space}]|[^{control}{space}][^{control}]{{0,{inner}}}[^{control}{space}])[{space}]*$"
    );
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .pattern(Some(pattern))
        .description(Some(format!(
            "1–{NAME_MAX_CHARS} characters once trimmed, no control characters"
        )))
        .build()
}

/// Every character a predicate holds for, as the inside of a regex class (`\uXXXX` ranges).
/// Whitespace and control characters all lie in the Basic Multilingual Plane.
#[cfg(feature = "openapi")]
pub(crate) fn char_class(holds: fn(char) -> bool) -> String {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in (0..=0xFFFF)
        .filter_map(char::from_u32)
        .filter(|&c| holds(c))
    {
        match ranges.last_mut() {
            Some((_, end)) if *end as u32 + 1 == c as u32 => *end = c,
            _ => ranges.push((c, c)),
        }
    }
    let escape = |c: char| format!("\\u{:04x}", c as u32);
    ranges
        .iter()
        .map(|&(start, end)| {
            if start == end {
                escape(start)
            } else {
                format!("{}-{}", escape(start), escape(end))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("  staging ").unwrap(), "staging");
        assert!(parse_name(" ").is_err());
        assert!(parse_name(&"a".repeat(101)).is_err());
        assert!(parse_name("a\nb").is_err());
        assert!(parse_project_name("123").is_err());
        assert!(parse_project_name("prod-2").is_ok());
    }

    /// What `name_schema` relies on to spell its classes with `\uXXXX` escapes.
    #[test]
    fn whitespace_and_control_characters_are_all_in_the_bmp() {
        let beyond = (0x1_0000..=0x10_FFFF).filter_map(char::from_u32);
        assert!(beyond
            .into_iter()
            .all(|c| !c.is_whitespace() && !c.is_control()));
    }
}
