use super::*;
use proptest::prelude::*;
use serde_json::json;

/// What `find` reports, as (kind, matched text).
fn hits(text: &str) -> Vec<(Entity, &str)> {
    find(text)
        .into_iter()
        .filter_map(|f| Some((f.entity, text.get(f.range)?)))
        .collect()
}

fn only(text: &str, entity: Entity) -> Vec<&str> {
    hits(text)
        .into_iter()
        .filter(|(e, _)| *e == entity)
        .map(|(_, s)| s)
        .collect()
}

fn mask(text: &str) -> String {
    Redactor::new(Replacement::Mask)
        .text(text, &mut Counts::default())
        .into_owned()
}

const KEY: [u8; 32] = [0xAB; 32];

fn hashed(key: [u8; 32], text: &str) -> String {
    Redactor::new(Replacement::Hash { key })
        .text(text, &mut Counts::default())
        .into_owned()
}

// --- one kind at a time -------------------------------------------------------------------

#[test]
fn emails() {
    assert_eq!(
        only("write to jane.doe@example.com.", Entity::Email),
        ["jane.doe@example.com"]
    );
    assert_eq!(
        only("x@y.io, z@w.org", Entity::Email),
        ["x@y.io", "z@w.org"]
    );
    for not in ["@team", "me@localhost", "a@b.c", "v@1.2.3.4", "meet @ 10"] {
        assert!(
            only(not, Entity::Email).is_empty(),
            "{not}: {:?}",
            hits(not)
        );
    }
}

#[test]
fn phones() {
    for (text, phone) in [
        ("call me back on +1 (415) 555-0134", "+1 (415) 555-0134"),
        ("(555) 123-4567 ok", "(555) 123-4567"),
        ("555-123-4567", "555-123-4567"),
        ("555.123.4567", "555.123.4567"),
        ("+44 20 7946 0958", "+44 20 7946 0958"),
        ("020 7946 0958", "020 7946 0958"),
        ("+14155550134", "+14155550134"),
        ("1-800-555-0199", "1-800-555-0199"),
    ] {
        assert_eq!(only(text, Entity::Phone), [phone], "{text}");
    }
    for not in [
        "order 1029384756",
        "ts 17171717171717",
        "2026-12-01",
        "10:30:00",
        "$1,234.56",
        "1.2.3",
        "192.168.100.200",
        "call_8f3a2b",
        "id 5551234567x",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "x555-123-4567",
        "555-123-4567-89",
        "555-123.4567",
        "+0100",
        "12+4155550134",
        "555-0134",
        "ZIP 94103-1234",
    ] {
        assert!(
            only(not, Entity::Phone).is_empty(),
            "{not}: {:?}",
            hits(not)
        );
    }
}

#[test]
fn cards() {
    for text in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "3782 822463 10005",
    ] {
        assert_eq!(only(text, Entity::Card), [text]);
    }
    assert_eq!(
        only(
            "Sure, my card is 4242 4242 4242 4242, expiry 04/27",
            Entity::Card
        ),
        ["4242 4242 4242 4242"]
    );
    assert_eq!(
        only("ids 4111111111111111,4242424242424242", Entity::Card),
        ["4111111111111111", "4242424242424242"]
    );
    assert_eq!(
        only("4242 4242 4242 4242 12 months", Entity::Card),
        ["4242 4242 4242 4242"],
        "16 digits win over a longer Luhn-valid reading"
    );
    for not in [
        "4111 1111 1111 1112",
        "4111 1111-1111 1111",
        "4111  1111 1111 1111",
        "41111 111 1111 1111",
        "x4111111111111111",
        "4111111111111111-2",
        "1717171717171",
    ] {
        assert!(only(not, Entity::Card).is_empty(), "{not}: {:?}", hits(not));
    }
}

#[test]
fn social_security_numbers() {
    assert_eq!(only("SSN 123-45-6789", Entity::Ssn), ["123-45-6789"]);
    assert_eq!(only("123 45 6789", Entity::Ssn), ["123 45 6789"]);
    assert_eq!(
        only("my social security number is 234567890", Entity::Ssn),
        ["234567890"]
    );
    for not in [
        "000-12-3456",
        "666-12-3456",
        "950-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123-45 6789",
        "order 234567890",
        "ssn: unknown, the order was 234567890",
    ] {
        assert!(only(not, Entity::Ssn).is_empty(), "{not}: {:?}", hits(not));
    }
}

#[test]
fn ibans() {
    assert_eq!(
        only("IBAN DE89 3704 0044 0532 0130 00.", Entity::Iban),
        ["DE89 3704 0044 0532 0130 00"]
    );
    assert_eq!(
        only("GB82WEST12345698765432", Entity::Iban),
        ["GB82WEST12345698765432"]
    );
    for not in [
        "DE89 3704 0044 0532 0130 01",
        "DE89 3704 0044 0532 0130",
        "xDE89370400440532013000",
    ] {
        assert!(only(not, Entity::Iban).is_empty(), "{not}: {:?}", hits(not));
    }
}

#[test]
fn ip_addresses() {
    assert_eq!(
        only("from 203.0.113.45:443", Entity::IpAddress),
        ["203.0.113.45"]
    );
    assert_eq!(only("at fe80::1.", Entity::IpAddress), ["fe80::1"]);
    for not in ["1.2.3.4.5", "version 1.2.3.4", "10:30:00", "std::mem"] {
        assert!(hits(not).is_empty(), "{not}: {:?}", hits(not));
    }
}

#[test]
fn dates_of_birth_need_context() {
    assert_eq!(
        only("I was born on 14 March 1985", Entity::DateOfBirth),
        ["14 March 1985"]
    );
    assert_eq!(mask("DOB: 1985-03-14"), "DOB: <DOB>");
    for not in [
        "The appointment is on 2026-12-01 at 10:30",
        "I was born in Ohio. We meet on 2026-12-01",
        "born in 1985, moved on 2001-02-03",
    ] {
        assert!(hits(not).is_empty(), "{not}: {:?}", hits(not));
    }
}

#[test]
fn overlaps_keep_the_validated_reading() {
    // A phone reading of the first digits loses to the card that covers them.
    assert_eq!(
        hits("+44 7946 0958 4111 1111 1111 1111"),
        [
            (Entity::Phone, "+44 7946 0958"),
            (Entity::Card, "4111 1111 1111 1111")
        ]
    );
    // An email whose local part holds a phone shape is one email.
    assert_eq!(
        hits("555-123-4567@example.com"),
        [(Entity::Email, "555-123-4567@example.com")]
    );
}

#[test]
fn redaction_reaches_a_fixed_point() {
    // Found by the property tests: a token can free a neighbour the old value touched.
    for (text, once) in [
        (
            "4111 1111 1111 1111+1 (415) 555-013414 March 1985",
            "<CARD><PHONE> March 1985",
        ),
        ("fe80::110.0.0.1", "<IP>"),
        ("4111111111111111::1", "<CARD><IP>"),
    ] {
        assert_eq!(mask(text), once, "{text}");
        assert_eq!(mask(&mask(text)), once, "{text}");
    }
}

#[test]
fn multibyte_text_is_fine() {
    let text = "é4111 1111 1111 1111😀 jane@example.com中文";
    assert_eq!(
        hits(text),
        [
            (Entity::Card, "4111 1111 1111 1111"),
            (Entity::Email, "jane@example.com")
        ]
    );
}

// --- the labelled corpus -------------------------------------------------------------------

#[derive(Default)]
struct Score {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Score {
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        1.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

#[test]
fn corpus_precision_and_recall() {
    let mut scores: BTreeMap<Entity, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut cases = 0;
    for (n, line) in include_str!("corpus.tsv").lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        cases += 1;
        let (expected, text) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("line {}: no tab", n + 1));
        let mut want: Vec<(Entity, &str)> = match expected {
            "-" => Vec::new(),
            list => list
                .split('|')
                .map(|item| {
                    let (kind, value) = item
                        .split_once('=')
                        .unwrap_or_else(|| panic!("line {}: {item:?}", n + 1));
                    let kind = Entity::parse(kind)
                        .unwrap_or_else(|| panic!("line {}: kind {kind:?}", n + 1));
                    assert!(
                        text.contains(value),
                        "line {}: {value:?} not in text",
                        n + 1
                    );
                    (kind, value)
                })
                .collect(),
        };
        for (entity, value) in hits(text) {
            let score = scores.entry(entity).or_default();
            match want.iter().position(|w| *w == (entity, value)) {
                Some(k) => {
                    want.swap_remove(k);
                    score.tp += 1;
                }
                None => {
                    score.fp += 1;
                    misses.push(format!(
                        "line {}: extra {entity:?} {value:?} in {text:?}",
                        n + 1
                    ));
                }
            }
        }
        for (entity, value) in want {
            scores.entry(entity).or_default().fn_ += 1;
            misses.push(format!(
                "line {}: missed {entity:?} {value:?} in {text:?}",
                n + 1
            ));
        }
    }
    assert!(cases >= 200, "the corpus has {cases} cases");

    let mut all = Score::default();
    eprintln!(
        "{cases} cases\n{:<14} {:>4} {:>4} {:>4} {:>9} {:>7}",
        "entity", "tp", "fp", "fn", "precision", "recall"
    );
    for (entity, s) in &scores {
        eprintln!(
            "{:<14} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
            entity.as_str(),
            s.tp,
            s.fp,
            s.fn_,
            s.precision(),
            s.recall()
        );
        all.tp += s.tp;
        all.fp += s.fp;
        all.fn_ += s.fn_;
    }
    eprintln!(
        "{:<14} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
        "overall",
        all.tp,
        all.fp,
        all.fn_,
        all.precision(),
        all.recall()
    );
    for m in &misses {
        eprintln!("{m}");
    }
    for e in [Entity::Card, Entity::Iban, Entity::Ssn] {
        let s = scores.get(&e).expect("the corpus has every kind");
        assert!(s.tp > 0 && s.recall() == 1.0, "{e:?} recall {}", s.recall());
    }
    assert!(all.precision() >= 0.95, "precision {}", all.precision());
    assert!(all.recall() >= 0.9, "recall {}", all.recall());
}

// --- the redactor --------------------------------------------------------------------------

#[test]
fn masks_with_typed_tokens() {
    let r = Redactor::new(Replacement::Mask);
    let mut counts = Counts::default();
    let out = r.text(
        "card 4242 4242 4242 4242, mail jane@example.com, call +1 (415) 555-0134, SSN \
         123-45-6789, IBAN GB82 WEST 1234 5698 7654 32 from 10.0.0.1, born 14 March 1985",
        &mut counts,
    );
    assert_eq!(
        out,
        "card <CARD>, mail <EMAIL>, call <PHONE>, SSN <SSN>, IBAN <IBAN> from <IP>, born <DOB>"
    );
    assert_eq!(counts.total(), 7);
    assert!(Entity::ALL.iter().all(|&e| counts.get(e) == 1));
}

#[test]
fn hash_tokens_are_stable_across_spellings_and_keyed() {
    let token = |text: &str| hashed(KEY, text);
    let card = token("4111 1111 1111 1111");
    assert!(card.starts_with("<CARD:") && card.ends_with('>'), "{card}");
    let hex = &card["<CARD:".len()..card.len() - 1];
    assert!(
        hex.len() == 8 && hex.bytes().all(|c| c.is_ascii_hexdigit()),
        "{card}"
    );
    assert_eq!(token("4111-1111-1111-1111"), card);
    assert_eq!(token("4111111111111111"), card);
    assert_ne!(token("4242 4242 4242 4242"), card);
    assert_ne!(hashed([7; 32], "4111 1111 1111 1111"), card);

    assert_eq!(token("Jane.Doe@Example.com"), token("jane.doe@example.com"));
    assert_eq!(token("+1 (415) 555-0134"), token("+1-415-555-0134"));
    assert_eq!(token("123-45-6789"), token("123 45 6789"));
    assert_eq!(
        token("DE89 3704 0044 0532 0130 00"),
        token("DE89370400440532013000")
    );
    assert_eq!(
        token("born 14 March 1985").replace("born ", ""),
        token("DOB 1985-03-14").replace("DOB ", "")
    );

    let r = Redactor::new(Replacement::Hash { key: KEY });
    assert_eq!(r.token(Entity::Card, "4111 1111 1111 1111"), card);
    assert_eq!(
        Redactor::new(Replacement::Mask).token(Entity::Phone, "+14155550134"),
        "<PHONE>"
    );
}

#[test]
fn kept_values_stay() {
    let r = Redactor::new(Replacement::Mask).keeping(["+14155550134".to_string()]);
    let mut counts = Counts::default();
    let out = r.text(
        "from +14155550134, i.e. +1 (415) 555-0134 or (415) 555-0134, to +1 212 555 0187",
        &mut counts,
    );
    assert_eq!(
        out,
        "from +14155550134, i.e. +1 (415) 555-0134 or (415) 555-0134, to <PHONE>"
    );
    assert_eq!(counts.get(Entity::Phone), 1);
    let uk = Redactor::new(Replacement::Mask).keeping(["+44 20 7946 0958".to_string()]);
    assert!(matches!(
        uk.text("ring 020 7946 0958", &mut Counts::default()),
        Cow::Borrowed(_)
    ));
}

#[test]
fn clean_text_is_borrowed() {
    let r = Redactor::new(Replacement::Hash { key: KEY });
    let mut counts = Counts::default();
    for clean in [
        "",
        "Hello, how can I help you today?",
        "Your order number is 1029384756, arriving 2026-12-01 at 10:30 for $1,299.99",
    ] {
        assert!(
            matches!(r.text(clean, &mut counts), Cow::Borrowed(_)),
            "{clean}"
        );
    }
    assert!(counts.is_empty());
}

#[test]
fn json_walks_values_not_keys_or_numbers() {
    let r = Redactor::new(Replacement::Mask);
    let mut counts = Counts::default();
    let mut value = json!({
        "jane@example.com": "key stays",
        "messages": [
            {"role": "user", "text": "my card is 4111 1111 1111 1111"},
            {"role": "tool", "args": {"email": "bob@example.org", "n": 4111111111111111_u64}},
        ],
        "meta": {"caller": ["+1 (415) 555-0134", 17], "dob": "1985-03-14", "ts": 1717171717171_u64},
        "dateOfBirth": {"value": "03/14/1985"},
        "ssn": "234567890",
        "appointment": "2026-12-01",
    });
    r.json(&mut value, &mut counts);
    assert_eq!(
        value,
        json!({
            "jane@example.com": "key stays",
            "messages": [
                {"role": "user", "text": "my card is <CARD>"},
                {"role": "tool", "args": {"email": "<EMAIL>", "n": 4111111111111111_u64}},
            ],
            "meta": {"caller": ["<PHONE>", 17], "dob": "<DOB>", "ts": 1717171717171_u64},
            "dateOfBirth": {"value": "<DOB>"},
            "ssn": "<SSN>",
            "appointment": "2026-12-01",
        })
    );
    assert_eq!(
        serde_json::to_value(&counts).expect("counts serialise"),
        json!({"email": 1, "phone": 1, "card": 1, "ssn": 1, "date_of_birth": 2})
    );
}

#[test]
fn json_text_valid_and_truncated() {
    let r = Redactor::new(Replacement::Mask);
    let mut counts = Counts::default();
    let body = r#"{ "calls": [ { "messages": [ { "text": "email jane@example.com" } ] } ] }"#;
    assert_eq!(
        r.json_text(body, &mut counts),
        r#"{"calls":[{"messages":[{"text":"email <EMAIL>"}]}]}"#
    );
    // Nothing found: the body comes back as it was, spacing and all.
    let clean = r#"{ "text": "hello", "n": 12345678901234567890123 }"#;
    assert_eq!(r.json_text(clean, &mut counts), clean);

    let mut counts = Counts::default();
    let truncated = "{\"messages\":[{\"text\":\"card 4111 1111 1111 1111\\n4242424242424242\\u00e9\
                     jane@example.com\\tSSN 123-45-6789\"},{\"text\":\"call +1 (415) 555-01";
    let out = r.json_text(truncated, &mut counts);
    assert_eq!(
        out,
        "{\"messages\":[{\"text\":\"card <CARD>\\n<CARD>\\u00e9<EMAIL>\\tSSN <SSN>\"},\
         {\"text\":\"call <PHONE>",
        "a cut-off phone of 8+ digits still reads as one"
    );
    assert!(
        find(&out).is_empty(),
        "nothing left to find: {:?}",
        find(&out)
    );
    assert_eq!(counts.total(), 5);
}

#[test]
fn debug_hides_key_and_kept_values() {
    let r = Redactor::new(Replacement::Hash { key: KEY }).keeping(["+14155550134".to_string()]);
    let shown = format!("{r:?} {r:#?} {:?}", Replacement::Hash { key: KEY });
    assert!(
        !shown.contains("171") && !shown.contains("ab") && !shown.contains("AB"),
        "{shown}"
    );
    assert!(!shown.contains("4155550134"), "{shown}");
    assert!(shown.contains("Hash"), "{shown}");
}

#[test]
fn counts_serialise_as_an_object_of_seen_kinds() {
    let mut a = Counts::default();
    a.add(Entity::Email);
    a.add(Entity::Email);
    a.add(Entity::Card);
    assert_eq!(
        serde_json::to_string(&a).expect("serialise"),
        r#"{"email":2,"card":1}"#
    );
    let mut b: Counts =
        serde_json::from_str(r#"{"card":2,"phone":0,"ip_address":1}"#).expect("deserialise");
    assert_eq!(b.get(Entity::Phone), 0);
    b.merge(&a);
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        [
            (Entity::Email, 2),
            (Entity::Card, 3),
            (Entity::IpAddress, 1)
        ]
    );
    assert_eq!(b.total(), 6);
    assert!(!b.is_empty() && Counts::default().is_empty());
    let zero: Counts = serde_json::from_str(r#"{"email":0}"#).expect("deserialise");
    assert_eq!(zero, Counts::default());
}

#[test]
fn entity_names_match_serde() {
    for e in Entity::ALL {
        assert_eq!(
            serde_json::to_value(e).expect("serialise"),
            json!(e.as_str())
        );
        assert_eq!(Entity::parse(e.as_str()), Some(e));
        assert!(!e.token_name().is_empty());
    }
}

#[test]
fn pathological_inputs_stay_fast() {
    let inputs = [
        "a@".repeat(50_000),
        "1 ".repeat(50_000),
        "1-".repeat(50_000),
        "+1 ".repeat(30_000),
        "7".repeat(100_000),
        "ab.".repeat(30_000) + "@x.com",
        "born 1985-03-14 ".repeat(5_000),
        "DE89 ".repeat(20_000),
        "f:".repeat(50_000),
        "\\n4".repeat(30_000),
    ];
    let started = std::time::Instant::now();
    for input in &inputs {
        let _ = find(input);
    }
    // Generous, for a loaded debug build; a quadratic scan would take minutes.
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

// --- properties ----------------------------------------------------------------------------

/// Text built from PII, near-PII and the separators between them, so the generator often
/// lands on edges (adjacent values, glued separators, multi-byte neighbours).
fn piecey() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("4111 1111 1111 1111".to_string()),
        Just("4242424242424242".to_string()),
        Just("DE89 3704 0044 0532 0130 00".to_string()),
        Just("GB82WEST12345698765432".to_string()),
        Just("123-45-6789".to_string()),
        Just("jane@example.com".to_string()),
        Just("+1 (415) 555-0134".to_string()),
        Just("020 7946 0958".to_string()),
        Just("10.0.0.1".to_string()),
        Just("fe80::1".to_string()),
        Just("born ".to_string()),
        Just("SSN ".to_string()),
        Just("14 March 1985".to_string()),
        Just("1985-03-14".to_string()),
        Just("<CARD>".to_string()),
        Just("\\n".to_string()),
        Just("é".to_string()),
        Just("😀".to_string()),
        "[ .:,/@_+()<>-]{1,2}",
        "[0-9]{1,5}",
        "[a-zA-Z]{1,4}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|p| p.concat())
}

fn check_findings(s: &str) -> Result<(), TestCaseError> {
    let found = find(s);
    let mut last = 0;
    for f in &found {
        prop_assert!(f.range.start < f.range.end, "{f:?}");
        prop_assert!(last <= f.range.start, "overlap or disorder: {found:?}");
        prop_assert!(s.is_char_boundary(f.range.start) && s.is_char_boundary(f.range.end));
        last = f.range.end;
    }
    for replacement in [Replacement::Mask, Replacement::Hash { key: KEY }] {
        let r = Redactor::new(replacement);
        let once = r.text(s, &mut Counts::default()).into_owned();
        let left = find(&once);
        prop_assert!(
            left.iter()
                .all(|f| !matches!(f.entity, Entity::Card | Entity::Iban | Entity::Ssn)),
            "{once:?} still holds {left:?}"
        );
        let twice = r.text(&once, &mut Counts::default()).into_owned();
        prop_assert_eq!(&twice, &once);
        let _ = r.json_text(s, &mut Counts::default());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_is_safe(s in any::<String>()) {
        check_findings(&s)?;
    }

    #[test]
    fn pii_shaped_text_is_safe(s in piecey()) {
        check_findings(&s)?;
    }
}
