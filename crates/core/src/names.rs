/// A project or agent name: trimmed, 1–100 characters, no control characters.
pub fn parse_name(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
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
}
