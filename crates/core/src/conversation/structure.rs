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
    let (pairs, orphans) = pair_tool_calls(msgs);
    if pairs.is_empty() {
        return BuiltinOutcome::not_computable(
            "the agent made no function call".to_owned(),
            Vec::new(),
        );
    }
    let mut ok = 0usize;
    let mut list = Vec::with_capacity(pairs.len());
    for &(ci, result_idx) in &pairs {
        let call = &msgs[ci];
        let (success, reason) = tool_outcome(msgs, result_idx);
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
    let warning = (orphans > 0).then(|| {
        format!(
            "{orphans} function_call_result row{} match{} no function_call",
            plural(orphans),
            if orphans == 1 { "es" } else { "" }
        )
    });
    let total = pairs.len();
    BuiltinOutcome::number(
        ok as f64 / total as f64,
        format!("{ok} of {total} function call{} succeeded.", plural(total)),
        json!({ "calls": list, "succeeded": ok, "total": total }),
        warning.into_iter().collect(),
    )
}

/// Each function_call's message index with its result's, if any, and how many results match no
/// call.
pub(super) fn pair_tool_calls(msgs: &[Message]) -> (Vec<(usize, Option<usize>)>, usize) {
    let calls: Vec<usize> = (0..msgs.len())
        .filter(|&i| msgs[i].role == Role::FunctionCall)
        .collect();
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
    let orphans = used.iter().filter(|u| !**u).count();
    let pairs = calls
        .iter()
        .zip(paired)
        .map(|(&ci, r)| (ci, r.map(|r| results[r])))
        .collect();
    (pairs, orphans)
}

/// Whether a call succeeded, and why not: no result, or the error its result reports.
pub(super) fn tool_outcome(msgs: &[Message], result: Option<usize>) -> (bool, Option<String>) {
    match result {
        None => (false, Some("no result".to_owned())),
        Some(r) => {
            let err = result_error(&msgs[r]);
            (err.is_none(), err)
        }
    }
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
/// first token with that text). std's hasher is keyed per map, so no transcript can make its
/// tokens collide.
pub(super) fn intern(text: &[u8], tokens: &[Span]) -> Vec<u32> {
    let mut first_with: HashMap<&[u8], u32> = HashMap::with_capacity(tokens.len());
    (0..tokens.len() as u32)
        .map(|i| {
            let (s, e) = tokens[i as usize];
            *first_with.entry(&text[s..e]).or_insert(i)
        })
        .collect()
}

/// A half-open range `[start, end)` of indices.
pub(super) type Span = (usize, usize);

/// The messages' token sets, each sorted and deduplicated, in one flat list. Tokens are numbered
/// rarest first (by how many messages use them, then by first use), so a set begins with its
/// rarest tokens.
pub(super) struct TokenSets {
    tokens: Vec<u32>,
    bounds: Vec<Span>,
    /// How many distinct tokens there are: the numbers are `0..distinct`.
    distinct: usize,
}

impl TokenSets {
    /// `messages`: each message's range in `tokens`, byte ranges of `text`.
    pub(super) fn new(text: &[u8], tokens: &[Span], messages: impl Iterator<Item = Span>) -> Self {
        let ids = intern(text, tokens);
        let mut sets: Vec<u32> = Vec::with_capacity(ids.len());
        let mut bounds: Vec<Span> = Vec::new();
        let mut messages_using = vec![0u32; ids.len()];
        // The last message that used each id, to keep one copy per message.
        let mut last_use = vec![usize::MAX; ids.len()];
        for (m, (a, b)) in messages.enumerate() {
            let start = sets.len();
            for &id in &ids[a..b] {
                if last_use[id as usize] != m {
                    last_use[id as usize] = m;
                    messages_using[id as usize] += 1;
                    sets.push(id);
                }
            }
            bounds.push((start, sets.len()));
        }
        // An id is the index of the first token with its text.
        let mut rarest_first: Vec<u32> = (0..ids.len() as u32)
            .filter(|&i| ids[i as usize] == i)
            .collect();
        rarest_first.sort_unstable_by_key(|&id| (messages_using[id as usize], id));
        let mut number = vec![0u32; ids.len()];
        for (n, &id) in rarest_first.iter().enumerate() {
            number[id as usize] = n as u32;
        }
        for &(a, b) in &bounds {
            let set = &mut sets[a..b];
            set.iter_mut().for_each(|id| *id = number[*id as usize]);
            set.sort_unstable();
        }
        Self {
            tokens: sets,
            bounds,
            distinct: rarest_first.len(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.bounds.len()
    }

    pub(super) fn get(&self, k: usize) -> &[u32] {
        &self.tokens[self.bounds[k].0..self.bounds[k].1]
    }
}

/// How many earlier messages a message is compared with at most (docs/metrics.md).
pub(super) const REPETITION_CANDIDATES: usize = 64;

/// The length of a set's prefix (its rarest tokens) such that any two sets at least `threshold`
/// (> 0) similar share a token of their prefixes: they share at least ⌈threshold × len⌉ tokens
/// of each set, and the rarest of those lies within both prefixes.
pub(super) fn prefix_len(len: usize, threshold: f64) -> usize {
    let shared = (threshold * len as f64 - EPS).ceil().max(1.0) as usize;
    len + 1 - shared.min(len)
}

/// For each message that repeats an earlier one: (message, the earlier message most similar to
/// it, their similarity), the earliest on a tie. Exact when the set equals an earlier one's, and
/// whenever a message has at most [`REPETITION_CANDIDATES`] candidates: the earlier messages with
/// a token of its prefix in theirs. Beyond that only the first so many are compared, rarest token
/// first and under each the most recent first, which bounds the work on a long call of
/// near-identical messages.
pub(super) fn earlier_repeats(sets: &TokenSets, threshold: f64) -> Vec<(usize, (usize, f64))> {
    let mut repeats = Vec::new();
    // The first message with each set: an equal set is as similar as can be (1), and a later
    // equal set never wins a tie against it, so only the first is indexed.
    let mut first_with: HashMap<&[u32], usize> = HashMap::with_capacity(sets.len());
    // Under each token, the messages that have it among their prefix tokens, in order.
    let mut by_prefix_token: Vec<Vec<u32>> = vec![Vec::new(); sets.distinct];
    // The message each one was last compared with, to compare a pair once.
    let mut compared_with = vec![usize::MAX; sets.len()];
    for j in 0..sets.len() {
        let x = sets.get(j);
        let first = *first_with.entry(x).or_insert(j);
        if first != j {
            repeats.push((j, (first, 1.0)));
            continue;
        }
        let prefix = &x[..prefix_len(x.len(), threshold)];
        let mut best: Option<(usize, f64)> = None;
        let mut compared = 0;
        let candidates = prefix
            .iter()
            .flat_map(|&t| by_prefix_token[t as usize].iter().rev());
        for &i in candidates {
            let i = i as usize;
            if compared_with[i] == j {
                continue;
            }
            compared_with[i] = j;
            let y = sets.get(i);
            // The similarity is at most the smaller set's size over the larger's.
            let (small, large) = (x.len().min(y.len()), x.len().max(y.len()));
            let sim = (small as f64 >= threshold * large as f64).then(|| jaccard(x, y));
            if let Some(sim) = sim.filter(|&s| s >= threshold) {
                if best.is_none_or(|(bi, b)| sim > b || (sim == b && i < bi)) {
                    best = Some((i, sim));
                }
            }
            compared += 1;
            if compared == REPETITION_CANDIDATES {
                break;
            }
        }
        if let Some(found) = best {
            repeats.push((j, found));
        }
        for &t in prefix {
            by_prefix_token[t as usize].push(j as u32);
        }
    }
    repeats
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
        let sets = TokenSets::new(&text, &tokens, texts.iter().map(|t| t.2));
        let slice = |k: usize| &text[texts[k].1 .0..texts[k].1 .1];
        for (j, (i, sim)) in earlier_repeats(&sets, cfg.repetition_similarity - EPS) {
            pairs.push(json!({
                "message": texts[j].0,
                "repeats": texts[i].0,
                "similarity": r6(sim),
                "verbatim": slice(i) == slice(j),
            }));
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
