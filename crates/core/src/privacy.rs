//! A project's redaction policy and what it does to a call before the call is stored: the
//! detectors are [`crate::redact`]'s; this decides which parts of a call they see.

use serde::{Deserialize, Serialize};

use crate::redact::{Counts, Redactor, Replacement};
use crate::NewCall;

/// How found values are replaced, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RedactionMode {
    /// Calls are stored as sent.
    #[default]
    Off,
    /// Typed tokens: `<EMAIL>`, `<PHONE>`, `<CARD>`, `<SSN>`, `<IBAN>`, `<IP>`, `<DOB>`.
    Mask,
    /// Keyed hashes (`<EMAIL:1a2b3c4d>`): one value, one token, across calls.
    Hash,
}

/// What becomes of the call's `from`/`to` numbers, which run matching reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PhoneNumbers {
    /// Kept as sent, in their fields and wherever the same number appears in the call.
    #[default]
    Keep,
    /// Left out: such calls match runs by `run_id` only.
    Drop,
}

/// A project's redaction policy, as the API reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RedactionPolicy {
    pub mode: RedactionMode,
    pub phone_numbers: PhoneNumbers,
}

impl RedactionPolicy {
    /// The redactor for this policy (`key`: the project's hash key), or `None` when off.
    pub fn redactor(self, key: Option<[u8; 32]>) -> Option<Redactor> {
        match (self.mode, key) {
            (RedactionMode::Off, _) => None,
            (RedactionMode::Mask, _) | (RedactionMode::Hash, None) => {
                Some(Redactor::new(Replacement::Mask))
            }
            (RedactionMode::Hash, Some(key)) => Some(Redactor::new(Replacement::Hash { key })),
        }
    }
}

/// Redacts what a call carries of its conversation: each message's text and tool data, the
/// metadata's values (and those an amendment adds) and the raw object as received. The `from`/`to` numbers are kept (and
/// left alone elsewhere in the call) or dropped, as the policy says. What was found, by kind.
pub fn redact_call(call: &mut NewCall, redactor: &Redactor, policy: RedactionPolicy) -> Counts {
    let numbers: Vec<String> = [&call.from_phone_number, &call.to_phone_number]
        .into_iter()
        .flatten()
        .map(|n| n.as_str().to_owned())
        .collect();
    let kept;
    let redactor = match policy.phone_numbers {
        PhoneNumbers::Keep => {
            kept = redactor.clone().keeping(numbers);
            &kept
        }
        PhoneNumbers::Drop => {
            call.from_phone_number = None;
            call.to_phone_number = None;
            redactor
        }
    };
    let mut counts = Counts::default();
    for message in &mut call.messages {
        if let std::borrow::Cow::Owned(text) = redactor.text(&message.content, &mut counts) {
            message.content = text;
        }
        if let Some(data) = message.data.as_mut() {
            redactor.json(data, &mut counts);
        }
    }
    // The amendment (Retell's analysis, arriving later) is metadata the stored call gains.
    for value in call
        .metadata
        .values_mut()
        .chain(call.amendment.values_mut())
    {
        redactor.json(value, &mut counts);
    }
    // The raw object repeats the messages and metadata: its findings are the same ones, so
    // they are not counted twice.
    redactor.json(&mut call.raw, &mut Counts::default());
    call.redactions = counts.clone();
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Entity;
    use serde_json::json;

    #[test]
    fn a_policy_reads_with_defaults_and_refuses_what_it_does_not_know() {
        let p: RedactionPolicy = serde_json::from_value(json!({"mode": "mask"})).unwrap();
        assert_eq!(
            (p.mode, p.phone_numbers),
            (RedactionMode::Mask, PhoneNumbers::Keep)
        );
        for bad in [
            json!({"mode": "scramble"}),
            json!({"phone_numbers": "hash"}),
            json!({"x": 1}),
        ] {
            assert!(serde_json::from_value::<RedactionPolicy>(bad).is_err());
        }
        assert!(RedactionPolicy::default().redactor(None).is_none());
    }

    fn call() -> NewCall {
        let body = json!({"agent_id": 1, "calls": [{
            "id": "c1", "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:30Z",
            "from_phone_number": "+14155550134",
            "messages": [
                {"role": "user", "content": "I'm jane.doe@example.com, call me on +1 415 555 0134 or +44 20 7946 0958"},
                {"role": "function_call", "content": "charge", "data": {"card": "4111 1111 1111 1111"}}
            ],
            "metadata": {"note": "card 4242424242424242", "ticket": 1029384756}
        }]});
        let limits = crate::Limits::default();
        crate::validate_batch_owned(body, &limits)
            .unwrap()
            .calls
            .remove(0)
    }

    #[test]
    fn a_call_loses_what_the_detectors_find_but_keeps_its_own_numbers() {
        let redactor = Redactor::new(Replacement::Mask);
        let mut c = call();
        let counts = redact_call(&mut c, &redactor, RedactionPolicy::default());
        assert_eq!(
            c.messages[0].content,
            "I'm <EMAIL>, call me on +1 415 555 0134 or <PHONE>"
        );
        assert_eq!(c.messages[1].data, Some(json!({"card": "<CARD>"})));
        assert_eq!(c.metadata["note"], "card <CARD>");
        assert_eq!(c.metadata["ticket"], 1029384756, "numbers are not text");
        let raw = c.raw.to_string();
        assert!(!raw.contains("jane.doe") && !raw.contains("4111") && !raw.contains("4242"));
        assert!(
            raw.contains("+14155550134"),
            "the kept number stays in the raw object"
        );
        assert_eq!(
            c.from_phone_number.as_ref().unwrap().as_str(),
            "+14155550134"
        );
        assert_eq!(
            (
                counts.get(Entity::Email),
                counts.get(Entity::Phone),
                counts.get(Entity::Card)
            ),
            (1, 1, 2)
        );
        assert_eq!(c.redactions, counts);

        let mut amended = call();
        amended.amendment.insert(
            "call_analysis".into(),
            json!({"summary": "reach me at x@example.com"}),
        );
        redact_call(&mut amended, &redactor, RedactionPolicy::default());
        assert_eq!(
            amended.amendment["call_analysis"]["summary"],
            "reach me at <EMAIL>"
        );
    }

    #[test]
    fn dropped_numbers_leave_the_call_entirely() {
        let redactor = Redactor::new(Replacement::Mask);
        let mut c = call();
        let policy = RedactionPolicy {
            mode: RedactionMode::Mask,
            phone_numbers: PhoneNumbers::Drop,
        };
        let counts = redact_call(&mut c, &redactor, policy);
        assert!(c.from_phone_number.is_none());
        assert!(!c.raw.to_string().contains("555"));
        assert_eq!(
            counts.get(Entity::Phone),
            2,
            "the raw from_phone_number is not counted"
        );
    }
}
