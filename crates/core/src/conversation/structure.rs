//! The shape of the conversation: turns, tool calls, repetition, the end reason.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use super::*;

// ---------------------------------------------------------------------------------------------
// 14. turns

pub(super) fn turns(p: &Prepared) -> BuiltinOutcome {
    let mut n = 0usize;
    let mut last: Option<bool> = None;
    for r in &p.rows {
        if last != Some(r.bot) {
            n += 1;
            last = Some(r.bot);
        }
    }
    BuiltinOutcome::count(
        n,
        format!(
            "{n} turn{} (runs of consecutive messages by the same speaker) in {} agent and user messages.",
            plural(n),
            p.rows.len()
        ),
        json!({ "agent_messages": p.bot.rows, "user_messages": p.user.rows }),
        Vec::new(),
    )
}

// ---------------------------------------------------------------------------------------------
// 15–16. tool calls

pub(super) fn tool_calls(p: &Prepared) -> BuiltinOutcome {
    let calls: Vec<Value> = p
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::FunctionCall)
        .map(|(i, m)| json!({ "message": i, "name": tool_name(m) }))
        .collect();
    let n = calls.len();
    BuiltinOutcome::count(
        n,
        format!("The agent made {n} function call{}.", plural(n)),
        json!({ "calls": calls }),
        Vec::new(),
    )
}

pub(super) fn data_field<'v>(m: &'v Message, key: &str) -> Option<&'v Value> {
    m.data.as_ref()?.as_object()?.get(key)
}

pub(super) fn tool_name(m: &Message) -> Option<&str> {
    data_field(m, "name")
        .and_then(Value::as_str)
        .or_else(|| {
            data_field(m, "function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
        })
        .or_else(|| Some(m.content.trim()).filter(|s| !s.is_empty()))
}

/// `data.id`, when it is a non-empty string or a number.
pub(super) fn tool_id(m: &Message) -> Option<&Value> {
    data_field(m, "id").filter(|v| match v {
        Value::String(s) => !s.is_empty(),
        Value::Number(_) => true,
        _ => false,
    })
}

/// An id as text: a string as is, a number in its JSON form. Ids match when their texts are
/// equal, so `"7"` matches `7`.
pub(super) fn id_text(id: &Value) -> Cow<'_, str> {
    match id {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Whether a value reports something: not null, false, "" or an empty array/object.
pub(super) fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

/// A value for a reason: a string as is, an object's `message`, else compact JSON; cut short.
pub(super) fn brief(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message").and_then(Value::as_str) {
            Some(m) => m.to_owned(),
            None => v.to_string(),
        },
        other => other.to_string(),
    };
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// The error a function_call_result reports, if any.
pub(super) fn result_error(result: &Message) -> Option<String> {
    let data = result.data.as_ref()?.as_object()?;
    let nested = data.get("result").and_then(Value::as_object);
    if let Some(e) = data.get("error").filter(|v| is_set(v)) {
        return Some(format!("error: {}", brief(e)));
    }
    if let Some(e) = nested.and_then(|r| r.get("error")).filter(|v| is_set(v)) {
        return Some(format!("result.error: {}", brief(e)));
    }
    for (path, obj) in [("status", Some(data)), ("result.status", nested)] {
        if let Some(Value::String(s)) = obj.and_then(|o| o.get("status")) {
            let s = s.trim();
            if s.eq_ignore_ascii_case("error") || s.eq_ignore_ascii_case("failed") {
                return Some(format!("{path} is {s:?}"));
            }
        }
    }
    for (path, obj) in [("success", Some(data)), ("result.success", nested)] {
        if let Some(Value::Bool(false)) = obj.and_then(|o| o.get("success")) {
            return Some(format!("{path} is false"));
        }
    }
    None
}

pub(super) fn tool_call_success(p: &Prepared) -> BuiltinOutcome {
    let msgs = p.messages;
    let calls: Vec<usize> = (0..msgs.len())
        .filter(|&i| msgs[i].role == Role::FunctionCall)
        .collect();
    if calls.is_empty() {
        return BuiltinOutcome::not_computable(
            "the agent made no function call".to_owned(),
            Vec::new(),
        );
    }
    let results: Vec<usize> = (0..msgs.len())
        .filter(|&i| msgs[i].role == Role::FunctionCallResult)
        .collect();
    let mut used = vec![false; results.len()];
    let mut paired: Vec<Option<usize>> = vec![None; calls.len()];
    // First by id, when both rows have one: each id's results wait in order, taken from the front.
    let mut results_by_id: HashMap<Cow<str>, VecDeque<usize>> = HashMap::new();
    let (mut with_id, mut without_id) = (Vec::new(), Vec::new());
    for (r, &ri) in results.iter().enumerate() {
        match tool_id(&msgs[ri]) {
            Some(id) => {
                results_by_id.entry(id_text(id)).or_default().push_back(r);
                with_id.push(r);
            }
            None => without_id.push(r),
        }
    }
    for (c, &ci) in calls.iter().enumerate() {
        let Some(id) = tool_id(&msgs[ci]) else {
            continue;
        };
        if let Some(r) = results_by_id
            .get_mut(id_text(id).as_ref())
            .and_then(VecDeque::pop_front)
        {
            used[r] = true;
            paired[c] = Some(r);
        }
    }
    // Then by position: the next unused result after the call, unless both have (different) ids.
    let (mut with_id, mut without_id) = (Unpaired::new(with_id), Unpaired::new(without_id));
    for (c, &ci) in calls.iter().enumerate() {
        if paired[c].is_some() {
            continue;
        }
        let mut next = without_id.first_after(ci, &results, &used);
        if tool_id(&msgs[ci]).is_none() {
            next = next
                .into_iter()
                .chain(with_id.first_after(ci, &results, &used))
                .min();
        }
        if let Some(r) = next {
            used[r] = true;
            paired[c] = Some(r);
        }
    }

    let mut ok = 0usize;
    let mut list = Vec::with_capacity(calls.len());
    for (c, &ci) in calls.iter().enumerate() {
        let call = &msgs[ci];
        let (success, reason, result_idx) = match paired[c] {
            None => (false, Some("no result".to_owned()), None),
            Some(r) => {
                let err = result_error(&msgs[results[r]]);
                (err.is_none(), err, Some(results[r]))
            }
        };
        ok += usize::from(success);
        list.push(json!({
            "message": ci,
            "name": tool_name(call),
            "id": tool_id(call),
            "result_message": result_idx,
            "ok": success,
            "reason": reason,
        }));
    }
    let orphans = used.iter().filter(|u| !**u).count();
    let warning = (orphans > 0).then(|| {
        format!(
            "{orphans} function_call_result row{} match{} no function_call",
            plural(orphans),
            if orphans == 1 { "es" } else { "" }
        )
    });
    let total = calls.len();
    BuiltinOutcome::number(
        ok as f64 / total as f64,
        format!("{ok} of {total} function call{} succeeded.", plural(total)),
        json!({ "calls": list, "succeeded": ok, "total": total }),
        warning.into_iter().collect(),
    )
}

/// Results of one kind (with an id, or without), in order, for pairing by position. Calls ask in
/// order, so the cursor only moves on: what it passes is paired already or lies before every
/// call still to come.
struct Unpaired {
    results: Vec<usize>,
    cursor: usize,
}

impl Unpaired {
    fn new(results: Vec<usize>) -> Self {
        Self { results, cursor: 0 }
    }

    /// The first of these results not yet `used` whose message comes after message `call`.
    fn first_after(&mut self, call: usize, positions: &[usize], used: &[bool]) -> Option<usize> {
        while let Some(&r) = self.results.get(self.cursor) {
            if !used[r] && positions[r] > call {
                return Some(r);
            }
            self.cursor += 1;
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// 17. unnecessary_repetition

/// Jaccard similarity of two sorted, deduplicated lists.
pub(super) fn jaccard<T: Ord>(a: &[T], b: &[T]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// An id per token (a byte range of `text`): equal texts get equal ids (the index of the
/// first token with that text). Open addressing on a hash, each hit confirmed on the text.
pub(super) fn intern(text: &[u8], tokens: &[Span]) -> Vec<u32> {
    let mask = (tokens.len() * 2).next_power_of_two().max(8) - 1;
    // (hash, index of the first token with this text + 1); 0 marks an empty slot.
    let mut table: Vec<(u64, u32)> = vec![(0, 0); mask + 1];
    let mut ids = Vec::with_capacity(tokens.len());
    for (i, &(s, e)) in tokens.iter().enumerate() {
        let t = &text[s..e];
        let h = fnv1a(t);
        let mut slot = (h as usize) & mask;
        loop {
            let (sh, first) = table[slot];
            if first == 0 {
                table[slot] = (h, i as u32 + 1);
                ids.push(i as u32);
                break;
            }
            let (fs, fe) = tokens[first as usize - 1];
            if sh == h && &text[fs..fe] == t {
                ids.push(first - 1);
                break;
            }
            slot = (slot + 1) & mask;
        }
    }
    ids
}

/// A half-open range `[start, end)` of indices.
pub(super) type Span = (usize, usize);

/// 64-bit FNV-1a.
pub(super) fn fnv1a(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(super) fn unnecessary_repetition(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
    // The normalised texts of agent messages with at least 4 words, in one UTF-8 buffer.
    let mut text: Vec<u8> = Vec::with_capacity(
        p.rows
            .iter()
            .filter(|r| r.bot)
            .map(|r| p.content(r.idx).len() + 1)
            .sum(),
    );
    // (message index, byte range of its text in `text`, range of its tokens in `tokens`)
    let mut texts: Vec<(usize, Span, Span)> = Vec::new();
    // Byte ranges of the tokens in `text`.
    let mut tokens: Vec<Span> = Vec::with_capacity(text.capacity() / 4);
    for r in p.rows.iter().filter(|r| r.bot) {
        let (text_start, token_start) = (text.len(), tokens.len());
        normalise_append(p.content(r.idx), &mut text, |s, e| tokens.push((s, e)));
        if tokens.len() - token_start < 4 {
            text.truncate(text_start);
            tokens.truncate(token_start);
            continue;
        }
        texts.push((r.idx, (text_start, text.len()), (token_start, tokens.len())));
    }
    let mut pairs = Vec::new();
    if texts.len() > 1 {
        let ids = intern(&text, &tokens);
        // Each message's token set: sorted, deduplicated ids, in one flat list.
        let mut sets: Vec<u32> = Vec::with_capacity(ids.len());
        let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(texts.len());
        for &(_, _, (a, b)) in &texts {
            let start = sets.len();
            sets.extend_from_slice(&ids[a..b]);
            sets[start..].sort_unstable();
            let mut w = start;
            for k in start..sets.len() {
                if k == start || sets[k] != sets[w - 1] {
                    sets[w] = sets[k];
                    w += 1;
                }
            }
            sets.truncate(w);
            bounds.push((start, w));
        }
        let threshold = cfg.repetition_similarity - EPS;
        let set = |k: usize| &sets[bounds[k].0..bounds[k].1];
        for j in 1..texts.len() {
            let mut best: Option<(usize, f64)> = None;
            for i in 0..j {
                let (la, lb) = (set(i).len(), set(j).len());
                // The similarity is at most the smaller set's size over the larger's.
                if (la.min(lb) as f64) < threshold * la.max(lb) as f64 {
                    continue;
                }
                let sim = jaccard(set(i), set(j));
                if sim >= threshold && best.is_none_or(|(_, b)| sim > b) {
                    best = Some((i, sim));
                }
            }
            if let Some((i, sim)) = best {
                let slice = |k: usize| &text[texts[k].1 .0..texts[k].1 .1];
                pairs.push(json!({
                    "message": texts[j].0,
                    "repeats": texts[i].0,
                    "similarity": r6(sim),
                    "verbatim": slice(i) == slice(j),
                }));
            }
        }
    }
    let n = pairs.len();
    BuiltinOutcome::count(
        n,
        format!(
            "{n} agent message{} repeat{} an earlier agent message (similarity ≥ {}).",
            plural(n),
            if n == 1 { "s" } else { "" },
            cfg.repetition_similarity
        ),
        json!({ "repetitions": pairs, "compared_messages": texts.len() }),
        Vec::new(),
    )
}

// ---------------------------------------------------------------------------------------------
// 18. end_reason

pub(super) fn end_reason(p: &Prepared) -> BuiltinOutcome {
    let reason = p.ended_reason.trim();
    if reason.is_empty() {
        return BuiltinOutcome::not_computable(
            "the call has no ended reason".to_owned(),
            Vec::new(),
        );
    }
    BuiltinOutcome::value(
        MetricValue::Text(reason.to_owned()),
        format!("The call ended with reason {reason:?}."),
        Value::Object(Map::new()),
        Vec::new(),
    )
}
