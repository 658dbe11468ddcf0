use serde::Serialize;

/// A phone number as the contract defines it: `+` then digits, 15 characters at most
/// (the `+` included, which is stricter than E.164 by one digit; we follow the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

/// The schema of what [`PhoneNumber::parse`] accepts.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for PhoneNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^\\+[0-9]{{1,{}}}$", Self::MAX_CHARS - 1)))
            .description(Some(format!(
                "+ then digits, {} characters at most",
                Self::MAX_CHARS
            )))
            .examples(["+14155551234"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for PhoneNumber {}

impl PhoneNumber {
    pub const MAX_CHARS: usize = 15;

    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(digits) = s.strip_prefix('+') else {
            return Err(format!(
                "must start with + followed by digits, e.g. \"+14155551234\" (got {s:?})"
            ));
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "must be + followed by digits only, no spaces, dashes or brackets (got {s:?})"
            ));
        }
        if s.len() > Self::MAX_CHARS {
            return Err(format!(
                "must be at most {} characters including the + (got {})",
                Self::MAX_CHARS,
                s.len()
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_numbers() {
        assert!(PhoneNumber::parse("+14155551234").is_ok());
        assert!(PhoneNumber::parse("+12345678901234").is_ok()); // 15 chars
    }

    #[test]
    fn rejects_bad_numbers() {
        for bad in [
            "14155551234",
            "+",
            "+1 415 555",
            "+1-415",
            "+123456789012345",
            "",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
