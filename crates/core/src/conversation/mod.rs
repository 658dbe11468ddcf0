//! Deterministic ("builtin") conversation metrics: pure functions of one call's transcript.
//!
//! Every metric is defined precisely in `docs/metrics.md`; this module is its implementation.
//! Message times are offsets in seconds from the call's start ([`Message::start_offset`],
//! [`Message::end_offset`]), whatever form the sender used. Messages are taken in the order
//! received; "preceding" always means earlier in that order.
//!
//! [`compute_all_builtins`] prepares the speech intervals once and shares them between all
//! metrics. A metric that cannot be computed says why ([`BuiltinOutcome::not_computable`]) and
//! never makes a number up.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{Message, Role};

/// Absorbs floating-point rounding in threshold comparisons (times are at best milliseconds).
const EPS: f64 = 1e-9;
/// A message time further than this outside `[0, duration]` earns a data-quality warning.
const OUTSIDE_SLACK_SECONDS: f64 = 1.0;
/// How many message indices a warning quotes at most.
const EXAMPLES: usize = 3;

/// The call a metric is computed on.
#[derive(Debug, Clone, Copy)]
pub struct Conversation<'a> {
    /// `endedAt − startedAt`, in seconds, `>= 0`.
    pub duration_seconds: f64,
    /// The transcript, in the order received.
    pub messages: &'a [Message],
    pub ended_reason: &'a str,
}

/// Knobs of the builtin metrics. Every field has a default, so a partial TOML/JSON object works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuiltinConfig {
    /// Overlap (seconds) needed for an overlapping message to count as an interruption.
    pub min_overlap_seconds: f64,
    /// `silence_detected` is true when the longest silence is at least this long (seconds).
    pub silence_threshold_seconds: f64,
    /// A user message after which the agent stays silent longer than this (seconds) is an
    /// infrastructure issue.
    pub infrastructure_silence_seconds: f64,
    /// Token-set Jaccard similarity from which an agent message repeats an earlier one.
    pub repetition_similarity: f64,
    /// Which statistic is the `agent_latency` value: `p50`, `avg`, `p90`, `p95`, `p99`, `max`
    /// or `count`.
    pub latency_statistic: String,
    /// Short acknowledgements that are not barge-ins, compared after normalisation.
    pub backchannels: Vec<String>,
}

/// The default `backchannels`.
const DEFAULT_BACKCHANNELS: [&str; 16] = [
    "uh-huh", "uh huh", "mm-hmm", "mhm", "mm", "okay", "ok", "yeah", "yes", "yep", "right", "sure",
    "got it", "i see", "alright", "hmm",
];

impl Default for BuiltinConfig {
    fn default() -> Self {
        Self {
            min_overlap_seconds: 0.2,
            silence_threshold_seconds: 10.0,
            infrastructure_silence_seconds: 10.0,
            repetition_similarity: 0.8,
            latency_statistic: "p50".to_owned(),
            backchannels: DEFAULT_BACKCHANNELS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl BuiltinConfig {
    /// Every problem with the configuration, each as one sentence naming the field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        for (field, v) in [
            ("min_overlap_seconds", self.min_overlap_seconds),
            ("silence_threshold_seconds", self.silence_threshold_seconds),
            (
                "infrastructure_silence_seconds",
                self.infrastructure_silence_seconds,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                errors.push(format!("{field} must be a number of seconds >= 0, got {v}"));
            }
        }
        let r = self.repetition_similarity;
        if !(r > 0.0 && r <= 1.0) {
            errors.push(format!("repetition_similarity must be in (0, 1], got {r}"));
        }
        if Stat::parse(&self.latency_statistic).is_none() {
            errors.push(format!(
                "latency_statistic must be one of {}, got {:?}",
                Stat::ALLOWED,
                self.latency_statistic
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A metric's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// The result of one builtin metric on one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuiltinOutcome {
    /// `None` when the metric is not computable for this call.
    pub value: Option<MetricValue>,
    /// Why, when `value` is `None`.
    pub not_computable: Option<String>,
    /// One human sentence.
    pub explanation: String,
    /// The evidence (samples, events, intermediate values); an object.
    pub details: Value,
    /// Data-quality remarks (times outside the call, rows without times, …).
    pub warnings: Vec<String>,
}

impl BuiltinOutcome {
    fn value(
        value: MetricValue,
        explanation: String,
        details: Value,
        warnings: Vec<String>,
    ) -> Self {
        Self {
            value: Some(value),
            not_computable: None,
            explanation,
            details,
            warnings,
        }
    }

    fn number(v: f64, explanation: String, details: Value, warnings: Vec<String>) -> Self {
        Self::value(MetricValue::Number(r6(v)), explanation, details, warnings)
    }

    fn count(n: usize, explanation: String, details: Value, warnings: Vec<String>) -> Self {
        Self::value(
            MetricValue::Number(n as f64),
            explanation,
            details,
            warnings,
        )
    }

    fn not_computable(reason: String, warnings: Vec<String>) -> Self {
        Self {
            value: None,
            explanation: format!("Not computable: {reason}."),
            not_computable: Some(reason),
            details: Value::Object(Map::new()),
            warnings,
        }
    }
}

/// The kind of value a metric produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinOutput {
    Numeric,
    Binary,
    /// A number from 0 to 5.
    Score,
    Text,
}

impl BuiltinOutput {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Numeric => "numeric",
            Self::Binary => "binary",
            Self::Score => "score",
            Self::Text => "text",
        }
    }
}

/// The builtin metrics, one variant each. `as_str` is the key used in metric configs, in
/// scripts' `metrics` map and in docs/metrics.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinKey {
    CallDuration,
    TimeToFirstWord,
    AgentLatency,
    AgentInterruptingUser,
    UserInterruptingAgent,
    InterruptionScore,
    TalkRatio,
    UserTalkRatio,
    LongestSilence,
    SilenceDetected,
    InfrastructureIssues,
    AgentWordsPerMinute,
    UserWordsPerMinute,
    Turns,
    ToolCalls,
    ToolCallSuccess,
    UnnecessaryRepetition,
    EndReason,
}

impl BuiltinKey {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallDuration => "call_duration",
            Self::TimeToFirstWord => "time_to_first_word",
            Self::AgentLatency => "agent_latency",
            Self::AgentInterruptingUser => "agent_interrupting_user",
            Self::UserInterruptingAgent => "user_interrupting_agent",
            Self::InterruptionScore => "interruption_score",
            Self::TalkRatio => "talk_ratio",
            Self::UserTalkRatio => "user_talk_ratio",
            Self::LongestSilence => "longest_silence",
            Self::SilenceDetected => "silence_detected",
            Self::InfrastructureIssues => "infrastructure_issues",
            Self::AgentWordsPerMinute => "agent_words_per_minute",
            Self::UserWordsPerMinute => "user_words_per_minute",
            Self::Turns => "turns",
            Self::ToolCalls => "tool_calls",
            Self::ToolCallSuccess => "tool_call_success",
            Self::UnnecessaryRepetition => "unnecessary_repetition",
            Self::EndReason => "end_reason",
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        BUILTIN_METRICS
            .iter()
            .map(|m| m.key)
            .find(|k| k.as_str() == key)
    }

    /// The catalogue entry.
    pub fn metric(self) -> &'static BuiltinMetric {
        BUILTIN_METRICS
            .iter()
            .find(|m| m.key == self)
            .expect("every key is in the catalogue")
    }
}

/// One entry of the builtin catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BuiltinMetric {
    pub key: BuiltinKey,
    pub name: &'static str,
    pub output: BuiltinOutput,
    pub unit: Option<&'static str>,
    pub description: &'static str,
}

const fn metric(
    key: BuiltinKey,
    name: &'static str,
    output: BuiltinOutput,
    unit: Option<&'static str>,
    description: &'static str,
) -> BuiltinMetric {
    BuiltinMetric {
        key,
        name,
        output,
        unit,
        description,
    }
}

const SECONDS: Option<&str> = Some("s");
const WPM: Option<&str> = Some("words/min");

/// The builtin metrics, in catalogue order.
pub const BUILTIN_METRICS: &[BuiltinMetric] = &[
    metric(BuiltinKey::CallDuration, "Call duration", BuiltinOutput::Numeric, SECONDS,
        "The call's duration: endedAt − startedAt."),
    metric(BuiltinKey::TimeToFirstWord, "Time to first word", BuiltinOutput::Numeric, SECONDS,
        "When the agent first spoke: the earliest start time of an agent message."),
    metric(BuiltinKey::AgentLatency, "Agent latency", BuiltinOutput::Numeric, SECONDS,
        "How long the agent takes to answer: agent start − user end at each user→agent handoff (p50 by default)."),
    metric(BuiltinKey::AgentInterruptingUser, "Agent interrupting user", BuiltinOutput::Numeric, None,
        "Agent messages that start while the preceding user message is still going (by at least min_overlap_seconds), backchannels excepted."),
    metric(BuiltinKey::UserInterruptingAgent, "User interrupting agent", BuiltinOutput::Numeric, None,
        "User messages that start while the preceding agent message is still going (by at least min_overlap_seconds), backchannels excepted."),
    metric(BuiltinKey::InterruptionScore, "Interruption score", BuiltinOutput::Score, None,
        "5 × (1 − interruptions / agent and user messages), from 0 to 5; 5 means no interruption."),
    metric(BuiltinKey::TalkRatio, "Talk ratio", BuiltinOutput::Numeric, None,
        "The agent's share of the call: seconds the agent speaks / call duration."),
    metric(BuiltinKey::UserTalkRatio, "User talk ratio", BuiltinOutput::Numeric, None,
        "The user's share of the call: seconds the user speaks / call duration."),
    metric(BuiltinKey::LongestSilence, "Longest silence", BuiltinOutput::Numeric, SECONDS,
        "The longest stretch of the call during which neither the agent nor the user speaks."),
    metric(BuiltinKey::SilenceDetected, "Silence detected", BuiltinOutput::Binary, None,
        "Whether the longest silence reaches silence_threshold_seconds."),
    metric(BuiltinKey::InfrastructureIssues, "Infrastructure issues", BuiltinOutput::Numeric, None,
        "User messages after which the agent stays silent for more than infrastructure_silence_seconds."),
    metric(BuiltinKey::AgentWordsPerMinute, "Agent words per minute", BuiltinOutput::Numeric, WPM,
        "The agent's speaking rate: words / minutes the agent speaks."),
    metric(BuiltinKey::UserWordsPerMinute, "User words per minute", BuiltinOutput::Numeric, WPM,
        "The user's speaking rate: words / minutes the user speaks."),
    metric(BuiltinKey::Turns, "Turns", BuiltinOutput::Numeric, None,
        "Number of speaker turns: maximal runs of consecutive agent or user messages."),
    metric(BuiltinKey::ToolCalls, "Tool calls", BuiltinOutput::Numeric, None,
        "Number of function calls the agent made."),
    metric(BuiltinKey::ToolCallSuccess, "Tool call success", BuiltinOutput::Numeric, None,
        "Fraction of function calls whose result arrived and reports no error."),
    metric(BuiltinKey::UnnecessaryRepetition, "Unnecessary repetition", BuiltinOutput::Numeric, None,
        "Agent messages that repeat an earlier agent message verbatim or nearly."),
    metric(BuiltinKey::EndReason, "End reason", BuiltinOutput::Text, None,
        "Why the call ended, as the sender reported it (endedReason)."),
];

/// The catalogue entry of a key.
pub fn builtin_metric(key: &str) -> Option<&'static BuiltinMetric> {
    BuiltinKey::parse(key).map(BuiltinKey::metric)
}

/// Computes one builtin metric; `None` for an unknown key.
pub fn compute_builtin(
    key: &str,
    conv: &Conversation,
    cfg: &BuiltinConfig,
) -> Option<BuiltinOutcome> {
    Some(compute_one(BuiltinKey::parse(key)?, conv, cfg))
}

/// Computes one builtin metric.
pub fn compute_one(key: BuiltinKey, conv: &Conversation, cfg: &BuiltinConfig) -> BuiltinOutcome {
    compute_prepared(key, &Prepared::new(conv), cfg)
}

/// Computes every builtin metric, in catalogue order, preparing the transcript once.
pub fn compute_all_builtins(
    conv: &Conversation,
    cfg: &BuiltinConfig,
) -> Vec<(BuiltinKey, BuiltinOutcome)> {
    let prepared = Prepared::new(conv);
    BUILTIN_METRICS
        .iter()
        .map(|m| (m.key, compute_prepared(m.key, &prepared, cfg)))
        .collect()
}

fn compute_prepared(key: BuiltinKey, p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
    match key {
        BuiltinKey::CallDuration => call_duration(p),
        BuiltinKey::TimeToFirstWord => time_to_first_word(p),
        BuiltinKey::AgentLatency => agent_latency(p, cfg),
        BuiltinKey::AgentInterruptingUser => interruption_count(p, cfg, true),
        BuiltinKey::UserInterruptingAgent => interruption_count(p, cfg, false),
        BuiltinKey::InterruptionScore => interruption_score(p, cfg),
        BuiltinKey::TalkRatio => talk_ratio(p, true),
        BuiltinKey::UserTalkRatio => talk_ratio(p, false),
        BuiltinKey::LongestSilence => longest_silence_outcome(p),
        BuiltinKey::SilenceDetected => silence_detected(p, cfg),
        BuiltinKey::InfrastructureIssues => infrastructure_issues(p, cfg),
        BuiltinKey::AgentWordsPerMinute => words_per_minute(p, true),
        BuiltinKey::UserWordsPerMinute => words_per_minute(p, false),
        BuiltinKey::Turns => turns(p),
        BuiltinKey::ToolCalls => tool_calls(p),
        BuiltinKey::ToolCallSuccess => tool_call_success(p),
        BuiltinKey::UnnecessaryRepetition => unnecessary_repetition(p, cfg),
        BuiltinKey::EndReason => end_reason(p),
    }
}

// ---------------------------------------------------------------------------------------------
// Preparation: one pass over the transcript, shared by every metric.

/// One agent or user message, with usable times.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Index in the conversation's messages.
    idx: usize,
    bot: bool,
    start: Option<f64>,
    end: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RoleCounts {
    rows: usize,
    /// Rows with both a start and an end.
    timed: usize,
    with_start: usize,
    with_end: usize,
}

struct Prepared<'a> {
    messages: &'a [Message],
    ended_reason: &'a str,
    duration: Result<f64, String>,
    /// Agent and user messages, in order.
    rows: Vec<Row>,
    bot: RoleCounts,
    user: RoleCounts,
    /// Unions of the timed intervals: sorted, disjoint, not clipped to the call.
    bot_union: Vec<(f64, f64)>,
    user_union: Vec<(f64, f64)>,
    speech_union: Vec<(f64, f64)>,
    /// Data-quality remarks that concern every time-based metric.
    data_warnings: Vec<String>,
}

impl<'a> Prepared<'a> {
    fn new(conv: &Conversation<'a>) -> Self {
        let d = conv.duration_seconds;
        let duration = if d.is_finite() && d >= 0.0 {
            Ok(d)
        } else {
            Err(format!("the call's duration is invalid ({d} s)"))
        };
        let mut rows = Vec::with_capacity(conv.messages.len());
        let mut bot = RoleCounts::default();
        let mut user = RoleCounts::default();
        let mut bot_union = Vec::new();
        let mut user_union = Vec::new();
        let mut outside: Vec<String> = Vec::new();
        let mut outside_count = 0usize;
        let mut reversed: Vec<usize> = Vec::new();

        for (idx, m) in conv.messages.iter().enumerate() {
            let mut start = m.start_offset.filter(|t| t.is_finite());
            let mut end = m.end_offset.filter(|t| t.is_finite());
            if let Ok(d) = duration {
                for (field, t) in [("start", start), ("end", end)] {
                    if let Some(t) =
                        t.filter(|t| *t < -OUTSIDE_SLACK_SECONDS || *t > d + OUTSIDE_SLACK_SECONDS)
                    {
                        outside_count += 1;
                        if outside.len() < EXAMPLES {
                            outside.push(format!("messages[{idx}] {field} at {t:.3} s"));
                        }
                    }
                }
            }
            if let (Some(s), Some(e)) = (start, end) {
                if e < s {
                    reversed.push(idx);
                    start = None;
                    end = None;
                }
            }
            let is_bot = match m.role {
                Role::Bot => true,
                Role::User => false,
                Role::System | Role::FunctionCall | Role::FunctionCallResult => continue,
            };
            let counts = if is_bot { &mut bot } else { &mut user };
            counts.rows += 1;
            counts.with_start += usize::from(start.is_some());
            counts.with_end += usize::from(end.is_some());
            if let (Some(s), Some(e)) = (start, end) {
                counts.timed += 1;
                if is_bot {
                    bot_union.push((s, e));
                } else {
                    user_union.push((s, e));
                }
            }
            rows.push(Row {
                idx,
                bot: is_bot,
                start,
                end,
            });
        }

        let bot_overlaps = union_in_place(&mut bot_union);
        let user_overlaps = union_in_place(&mut user_union);
        let mut speech_union = Vec::with_capacity(bot_union.len() + user_union.len());
        speech_union.extend_from_slice(&bot_union);
        speech_union.extend_from_slice(&user_union);
        union_in_place(&mut speech_union);

        let mut data_warnings = Vec::new();
        if outside_count > 0 {
            let d = duration.as_ref().copied().unwrap_or(0.0);
            data_warnings.push(format!(
                "{outside_count} message time{} lie{} more than {OUTSIDE_SLACK_SECONDS} s outside the call (0 to {d:.3} s): {}{}",
                plural(outside_count),
                if outside_count == 1 { "s" } else { "" },
                outside.join(", "),
                more(outside_count, outside.len()),
            ));
        }
        if !reversed.is_empty() {
            data_warnings.push(format!(
                "{} message{} end{} before {} start{}: {}{}; {} times were ignored",
                reversed.len(),
                plural(reversed.len()),
                if reversed.len() == 1 { "s" } else { "" },
                if reversed.len() == 1 { "its" } else { "their" },
                if reversed.len() == 1 { "" } else { "s" },
                index_list(&reversed),
                more(reversed.len(), reversed.len().min(EXAMPLES)),
                if reversed.len() == 1 { "its" } else { "their" },
            ));
        }

        for (n, who) in [(bot_overlaps, "agent"), (user_overlaps, "user")] {
            if n > 0 {
                data_warnings.push(format!(
                    "{n} {who} message{} overlap{} another {who} message in time; the shared time is counted once",
                    plural(n),
                    if n == 1 { "s" } else { "" },
                ));
            }
        }

        Self {
            messages: conv.messages,
            ended_reason: conv.ended_reason,
            duration,
            rows,
            bot,
            user,
            bot_union,
            user_union,
            speech_union,
            data_warnings,
        }
    }

    fn counts(&self, bot: bool) -> RoleCounts {
        if bot {
            self.bot
        } else {
            self.user
        }
    }

    fn union(&self, bot: bool) -> &[(f64, f64)] {
        if bot {
            &self.bot_union
        } else {
            &self.user_union
        }
    }

    /// There are agent/user messages and not one of them carries a time.
    fn no_times(&self) -> bool {
        !self.rows.is_empty()
            && self
                .rows
                .iter()
                .all(|r| r.start.is_none() && r.end.is_none())
    }

    /// The data-quality warnings plus the metric's own.
    fn warnings(&self, extra: impl IntoIterator<Item = Option<String>>) -> Vec<String> {
        let mut w = self.data_warnings.clone();
        w.extend(extra.into_iter().flatten());
        w
    }

    fn content(&self, idx: usize) -> &'a str {
        &self.messages[idx].content
    }
}

const NO_TIMES: &str = "no message has start and end times";

fn role_name(bot: bool) -> &'static str {
    if bot {
        "agent"
    } else {
        "user"
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn more(total: usize, shown: usize) -> String {
    if total > shown {
        format!(" and {} more", total - shown)
    } else {
        String::new()
    }
}

fn index_list(idx: &[usize]) -> String {
    idx.iter()
        .take(EXAMPLES)
        .map(|i| format!("messages[{i}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "2 of 5 agent messages lack start or end times and were left out", when some (not all) do.
fn partial_warning(total: usize, with: usize, who: &str, lack: &str) -> Option<String> {
    let missing = total - with;
    (missing > 0 && with > 0).then(|| {
        format!(
            "{missing} of {total} {who} message{} lack{} {lack} and {} left out",
            plural(total),
            if missing == 1 { "s" } else { "" },
            if missing == 1 { "was" } else { "were" },
        )
    })
}

/// Rounds to 6 decimal places (microseconds for times), without a negative zero.
fn r6(x: f64) -> f64 {
    let y = (x * 1e6).round() / 1e6;
    if y == 0.0 {
        0.0
    } else {
        y
    }
}

/// Sorts intervals by start and merges overlapping or touching ones; returns how many intervals
/// started strictly inside the union built so far (overlapping rows).
fn union_in_place(v: &mut Vec<(f64, f64)>) -> usize {
    v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut w = 0;
    let mut overlapping = 0;
    for i in 0..v.len() {
        let (s, e) = v[i];
        if w > 0 && s <= v[w - 1].1 {
            overlapping += usize::from(s < v[w - 1].1 - EPS);
            if e > v[w - 1].1 {
                v[w - 1].1 = e;
            }
        } else {
            v[w] = (s, e);
            w += 1;
        }
    }
    v.truncate(w);
    overlapping
}

/// Total length of a union's parts inside `[lo, hi]`.
fn covered(union: &[(f64, f64)], lo: f64, hi: f64) -> f64 {
    union
        .iter()
        .map(|&(s, e)| (e.min(hi) - s.max(lo)).max(0.0))
        .sum()
}

fn union_length(union: &[(f64, f64)]) -> f64 {
    union.iter().map(|&(s, e)| e - s).sum()
}

// ---------------------------------------------------------------------------------------------
// Text normalisation: lowercase, punctuation (anything neither alphanumeric nor whitespace)
// removed, split on whitespace; tokens left empty are dropped.

fn raw_tokens(s: &str) -> impl Iterator<Item = &str> + Clone {
    s.split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
}

fn token_chars(t: &str) -> impl Iterator<Item = char> + '_ {
    t.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
}

/// Whether two texts are equal once normalised (no allocation).
fn normalised_eq(a: &str, b: &str) -> bool {
    let mut ta = raw_tokens(a);
    let mut tb = raw_tokens(b);
    loop {
        match (ta.next(), tb.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if token_chars(x).eq(token_chars(y)) => {}
            _ => return false,
        }
    }
}

/// A short utterance (at most 3 words after normalisation) whose normalised text is one of the
/// backchannels.
fn is_backchannel(text: &str, backchannels: &[String]) -> bool {
    let words = raw_tokens(text).take(4).count();
    words > 0 && words <= 3 && backchannels.iter().any(|b| normalised_eq(text, b))
}

/// Appends the normalised tokens of `text` to `out` (UTF-8), separated by single spaces, and
/// reports each token's byte range in `out`. Same normalisation as [`raw_tokens`] +
/// [`token_chars`].
fn normalise_append(text: &str, out: &mut Vec<u8>, mut on_token: impl FnMut(usize, usize)) {
    // Whether a token is open, where it starts in `out`, and whether one was written already.
    let (mut open, mut start, mut any) = (false, 0usize, false);
    if text.is_ascii() {
        for &b in text.as_bytes() {
            if b.is_ascii_alphanumeric() {
                if !open {
                    if any {
                        out.push(b' ');
                    }
                    (open, start, any) = (true, out.len(), true);
                }
                out.push(b.to_ascii_lowercase());
            } else if open && matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
                on_token(start, out.len());
                open = false;
            }
        }
    } else {
        let mut buf = [0u8; 4];
        for c in text.chars() {
            if c.is_alphanumeric() {
                if !open {
                    if any {
                        out.push(b' ');
                    }
                    (open, start, any) = (true, out.len(), true);
                }
                for l in c.to_lowercase() {
                    out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
                }
            } else if open && c.is_whitespace() {
                on_token(start, out.len());
                open = false;
            }
        }
    }
    if open {
        on_token(start, out.len());
    }
}

/// Whitespace-separated tokens, as `str::split_whitespace` counts them.
fn word_count(s: &str) -> usize {
    if !s.is_ascii() {
        return s.split_whitespace().count();
    }
    let mut n = 0;
    let mut in_word = false;
    for &b in s.as_bytes() {
        // The ASCII characters with the Unicode White_Space property.
        let space = matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ');
        n += usize::from(!space && !in_word);
        in_word = !space;
    }
    n
}

// ---------------------------------------------------------------------------------------------
// 1. call_duration

fn call_duration(p: &Prepared) -> BuiltinOutcome {
    match &p.duration {
        Ok(d) => BuiltinOutcome::number(
            *d,
            format!("The call lasted {d:.2} s."),
            json!({ "seconds": r6(*d) }),
            Vec::new(),
        ),
        Err(e) => BuiltinOutcome::not_computable(e.clone(), Vec::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. time_to_first_word

fn time_to_first_word(p: &Prepared) -> BuiltinOutcome {
    let first = p
        .rows
        .iter()
        .filter(|r| r.bot)
        .filter_map(|r| Some((r.start?, r.idx)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let Some((t, idx)) = first else {
        let reason = if p.bot.rows == 0 {
            "the agent never spoke (no bot message)"
        } else if p.no_times() {
            NO_TIMES
        } else {
            "no agent message has a start time"
        };
        return BuiltinOutcome::not_computable(reason.to_owned(), p.warnings([]));
    };
    BuiltinOutcome::number(
        t,
        format!("The agent first spoke {t:.2} s after the call started (messages[{idx}])."),
        json!({ "agent_message": idx, "start": r6(t) }),
        p.warnings([partial_warning(
            p.bot.rows,
            p.bot.with_start,
            "agent",
            "a start time",
        )]),
    )
}

// ---------------------------------------------------------------------------------------------
// 3. agent_latency

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    Avg,
    P50,
    P90,
    P95,
    P99,
    Max,
    Count,
}

impl Stat {
    const ALLOWED: &'static str = "p50, avg, p90, p95, p99, max, count";

    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "avg" => Self::Avg,
            "p50" => Self::P50,
            "p90" => Self::P90,
            "p95" => Self::P95,
            "p99" => Self::P99,
            "max" => Self::Max,
            "count" => Self::Count,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Avg => "average",
            Self::P50 => "median (p50)",
            Self::P90 => "90th percentile",
            Self::P95 => "95th percentile",
            Self::P99 => "99th percentile",
            Self::Max => "maximum",
            Self::Count => "number",
        }
    }
}

/// Percentile `q` (0–100) of sorted, non-empty samples, by linear interpolation between the
/// closest ranks (numpy's default): rank `h = (n − 1)·q/100`, value
/// `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let h = (n - 1) as f64 * q / 100.0;
    let lo = (h.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn agent_latency(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
    let Some(stat) = Stat::parse(&cfg.latency_statistic) else {
        return BuiltinOutcome::not_computable(
            format!(
                "latency_statistic {:?} is not one of {}",
                cfg.latency_statistic,
                Stat::ALLOWED
            ),
            p.warnings([]),
        );
    };
    let mut handoffs = 0usize;
    let mut samples: Vec<(usize, usize, f64)> = Vec::new();
    let mut overlaps: Vec<Value> = Vec::new();
    for w in p.rows.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        if prev.bot || !cur.bot {
            continue;
        }
        handoffs += 1;
        let (Some(user_end), Some(agent_start)) = (prev.end, cur.start) else {
            continue;
        };
        let latency = agent_start - user_end;
        if latency >= 0.0 {
            samples.push((prev.idx, cur.idx, latency));
        } else {
            overlaps.push(json!({
                "user_message": prev.idx, "agent_message": cur.idx, "overlap": r6(-latency)
            }));
        }
    }
    let timed = samples.len() + overlaps.len();
    if timed == 0 {
        let reason = if handoffs == 0 {
            "no user→agent handoff (no agent message follows a user message)".to_owned()
        } else if p.no_times() {
            NO_TIMES.to_owned()
        } else {
            format!(
                "none of the {handoffs} user→agent handoff{} has both the user's end time and the agent's start time",
                plural(handoffs)
            )
        };
        return BuiltinOutcome::not_computable(reason, p.warnings([]));
    }
    let untimed = handoffs - timed;
    let untimed_warning = (untimed > 0).then(|| {
        format!(
            "{untimed} of {handoffs} user→agent handoffs lack the user's end or the agent's start time and were left out"
        )
    });
    if samples.is_empty() && stat != Stat::Count {
        return BuiltinOutcome::not_computable(
            format!(
                "in all {timed} timed user→agent handoff{} the agent started before the user finished (overlaps, counted by agent_interrupting_user), so there is no latency sample",
                plural(timed)
            ),
            p.warnings([untimed_warning]),
        );
    }

    let mut sorted: Vec<f64> = samples.iter().map(|s| s.2).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let n = sorted.len();
    let stats = (!sorted.is_empty()).then(|| {
        let avg = sorted.iter().sum::<f64>() / n as f64;
        [
            avg,
            percentile(&sorted, 50.0),
            percentile(&sorted, 90.0),
            percentile(&sorted, 95.0),
            percentile(&sorted, 99.0),
            sorted[n - 1],
        ]
    });
    let value = match (stat, stats) {
        (Stat::Count, _) => n as f64,
        (Stat::Avg, Some(s)) => s[0],
        (Stat::P50, Some(s)) => s[1],
        (Stat::P90, Some(s)) => s[2],
        (Stat::P95, Some(s)) => s[3],
        (Stat::P99, Some(s)) => s[4],
        (Stat::Max, Some(s)) => s[5],
        (_, None) => unreachable!("no samples is handled above"),
    };
    let opt = |i: usize| stats.map(|s| r6(s[i]));
    let details = json!({
        "statistic": format!("{stat:?}").to_ascii_lowercase(),
        "avg": opt(0), "p50": opt(1), "p90": opt(2), "p95": opt(3), "p99": opt(4), "max": opt(5),
        "count": n,
        "samples": samples.iter().map(|&(u, a, l)| json!({
            "user_message": u, "agent_message": a, "latency": r6(l)
        })).collect::<Vec<_>>(),
        "overlaps": overlaps,
        "handoffs": handoffs,
        "untimed_handoffs": untimed,
    });
    let explanation = if stat == Stat::Count {
        format!(
            "{n} user→agent handoff{} with a measurable latency.",
            plural(n)
        )
    } else {
        format!(
            "The {} of {n} agent response latenc{} is {value:.2} s.",
            stat.describe(),
            if n == 1 { "y" } else { "ies" }
        )
    };
    BuiltinOutcome::number(value, explanation, details, p.warnings([untimed_warning]))
}

// ---------------------------------------------------------------------------------------------
// 4–6. interruptions

struct Interruptions {
    /// Messages of the interrupter's role whose preceding agent/user message is the other role's.
    candidates: usize,
    /// Candidates with the times needed (the preceding message's end, this message's start).
    checked: usize,
    /// (interrupted message, interrupting message, overlap seconds)
    events: Vec<(usize, usize, f64)>,
    /// Overlaps that were backchannels, hence not interruptions.
    backchannels: Vec<(usize, usize, f64)>,
}

/// Messages of one role (`by_bot`) that start while the preceding message, of the other role, is
/// still going.
fn interruptions(p: &Prepared, cfg: &BuiltinConfig, by_bot: bool) -> Interruptions {
    let mut out = Interruptions {
        candidates: 0,
        checked: 0,
        events: Vec::new(),
        backchannels: Vec::new(),
    };
    for w in p.rows.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        if cur.bot != by_bot || prev.bot == by_bot {
            continue;
        }
        out.candidates += 1;
        let (Some(prev_end), Some(cur_start)) = (prev.end, cur.start) else {
            continue;
        };
        out.checked += 1;
        // Simultaneous speech: from the later start to the earlier end, using the times known.
        let hi = cur.end.map_or(prev_end, |e| e.min(prev_end));
        let lo = prev.start.map_or(cur_start, |s| s.max(cur_start));
        let overlap = hi - lo;
        let starts_later = prev.start.is_none_or(|s| cur_start >= s);
        if starts_later && overlap > EPS && overlap >= cfg.min_overlap_seconds - EPS {
            let event = (prev.idx, cur.idx, overlap);
            if is_backchannel(p.content(cur.idx), &cfg.backchannels) {
                out.backchannels.push(event);
            } else {
                out.events.push(event);
            }
        }
    }
    out
}

/// The interruption count, or why it is not computable, with a warning for unchecked handoffs.
fn interruptions_checked(
    p: &Prepared,
    cfg: &BuiltinConfig,
    by_bot: bool,
) -> Result<(Interruptions, Option<String>), String> {
    if p.no_times() {
        return Err(NO_TIMES.to_owned());
    }
    let i = interruptions(p, cfg, by_bot);
    let (from, to) = if by_bot {
        ("user", "agent")
    } else {
        ("agent", "user")
    };
    if i.candidates > 0 && i.checked == 0 {
        return Err(format!(
            "none of the {} {from}→{to} handoff{} has both the {from}'s end time and the {to}'s start time",
            i.candidates,
            plural(i.candidates)
        ));
    }
    let unchecked = i.candidates - i.checked;
    let warning = (unchecked > 0).then(|| {
        format!(
            "{unchecked} of {} {from}→{to} handoffs lack the {from}'s end or the {to}'s start time and were not checked",
            i.candidates
        )
    });
    Ok((i, warning))
}

fn interruption_count(p: &Prepared, cfg: &BuiltinConfig, by_bot: bool) -> BuiltinOutcome {
    let (i, warning) = match interruptions_checked(p, cfg, by_bot) {
        Ok(x) => x,
        Err(reason) => return BuiltinOutcome::not_computable(reason, p.warnings([])),
    };
    let (interrupted_key, interrupter_key) = if by_bot {
        ("user_message", "agent_message")
    } else {
        ("agent_message", "user_message")
    };
    let list = |events: &[(usize, usize, f64)]| -> Vec<Value> {
        events
            .iter()
            .map(|&(a, b, o)| {
                let mut m = Map::new();
                m.insert(interrupted_key.to_owned(), json!(a));
                m.insert(interrupter_key.to_owned(), json!(b));
                m.insert("overlap".to_owned(), json!(r6(o)));
                Value::Object(m)
            })
            .collect()
    };
    let n = i.events.len();
    let (who, whom) = if by_bot {
        ("agent", "user")
    } else {
        ("user", "agent")
    };
    let explanation = format!(
        "The {who} started speaking while the {whom} was still talking (by at least {} s) {n} time{}{}.",
        cfg.min_overlap_seconds,
        plural(n),
        match i.backchannels.len() {
            0 => String::new(),
            b => format!("; {b} overlapping backchannel{} not counted", plural(b)),
        }
    );
    let details = json!({
        "interruptions": list(&i.events),
        "backchannels_ignored": list(&i.backchannels),
        "handoffs": i.candidates,
        "checked": i.checked,
        "min_overlap_seconds": cfg.min_overlap_seconds,
    });
    BuiltinOutcome::count(n, explanation, details, p.warnings([warning]))
}

fn interruption_score(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
    let turns = p.rows.len();
    if turns == 0 {
        return BuiltinOutcome::not_computable(
            "the call has no agent or user message".to_owned(),
            p.warnings([]),
        );
    }
    let agent = interruptions_checked(p, cfg, true);
    let user = interruptions_checked(p, cfg, false);
    let ((a, wa), (u, wu)) = match (agent, user) {
        (Ok(a), Ok(u)) => (a, u),
        (Err(reason), _) | (_, Err(reason)) => {
            return BuiltinOutcome::not_computable(reason, p.warnings([]))
        }
    };
    let interruptions = a.events.len() + u.events.len();
    let score = (5.0 * (1.0 - interruptions as f64 / turns as f64)).clamp(0.0, 5.0);
    BuiltinOutcome::number(
        score,
        format!(
            "{interruptions} interruption{} in {turns} agent and user messages: 5 × (1 − {interruptions}/{turns}) = {score:.2}.",
            plural(interruptions)
        ),
        json!({
            "agent_interrupting_user": a.events.len(),
            "user_interrupting_agent": u.events.len(),
            "messages": turns,
        }),
        p.warnings([wa, wu]),
    )
}

// ---------------------------------------------------------------------------------------------
// 7–8. talk ratios

/// Seconds the role speaks inside the call, and that as a share of the call.
fn share(p: &Prepared, bot: bool) -> Result<(f64, f64), String> {
    let d = p.duration.clone()?;
    if p.no_times() {
        return Err(NO_TIMES.to_owned());
    }
    let c = p.counts(bot);
    if c.rows > 0 && c.timed == 0 {
        return Err(format!(
            "none of the {} {} message{} has both start and end times",
            c.rows,
            role_name(bot),
            plural(c.rows)
        ));
    }
    if d <= 0.0 {
        return Err("the call has zero duration".to_owned());
    }
    let seconds = covered(p.union(bot), 0.0, d);
    Ok((seconds, seconds / d))
}

fn talk_ratio(p: &Prepared, bot: bool) -> BuiltinOutcome {
    let mine = share(p, bot);
    let (seconds, ratio) = match mine {
        Ok(x) => x,
        Err(reason) => return BuiltinOutcome::not_computable(reason, p.warnings([])),
    };
    let other = share(p, !bot).ok();
    let (agent, user) = if bot {
        (Some((seconds, ratio)), other)
    } else {
        (other, Some((seconds, ratio)))
    };
    let d = p.duration.as_ref().copied().unwrap_or(0.0);
    let details = json!({
        "agent_seconds": agent.map(|x| r6(x.0)),
        "agent_share": agent.map(|x| r6(x.1)),
        "user_seconds": user.map(|x| r6(x.0)),
        "user_share": user.map(|x| r6(x.1)),
        "call_seconds": r6(d),
    });
    let c = p.counts(bot);
    BuiltinOutcome::number(
        ratio,
        format!(
            "The {} spoke {seconds:.2} s of the {d:.2} s call ({:.1} %).",
            role_name(bot),
            ratio * 100.0
        ),
        details,
        p.warnings([partial_warning(
            c.rows,
            c.timed,
            role_name(bot),
            "start or end times",
        )]),
    )
}

// ---------------------------------------------------------------------------------------------
// 9–10. silence

struct Silence {
    seconds: f64,
    start: f64,
    end: f64,
}

fn longest_silence(p: &Prepared) -> Result<(Silence, Option<String>), String> {
    let d = p.duration.clone()?;
    let timed = p.bot.timed + p.user.timed;
    if !p.rows.is_empty() && timed == 0 {
        return Err(if p.no_times() {
            NO_TIMES.to_owned()
        } else {
            "no agent or user message has both start and end times".to_owned()
        });
    }
    let mut best = Silence {
        seconds: 0.0,
        start: 0.0,
        end: 0.0,
    };
    let mut consider = |start: f64, end: f64| {
        if end - start > best.seconds {
            best = Silence {
                seconds: end - start,
                start,
                end,
            };
        }
    };
    let mut cursor = 0.0f64;
    for &(s, e) in &p.speech_union {
        let (s, e) = (s.clamp(0.0, d), e.clamp(0.0, d));
        if s > cursor {
            consider(cursor, s);
        }
        cursor = cursor.max(e);
    }
    consider(cursor, d);
    let warning = partial_warning(p.rows.len(), timed, "agent and user", "start or end times")
        .map(|w| format!("{w}, so a silence may be shorter than measured"));
    Ok((best, warning))
}

fn longest_silence_outcome(p: &Prepared) -> BuiltinOutcome {
    match longest_silence(p) {
        Ok((s, warning)) => BuiltinOutcome::number(
            s.seconds,
            format!(
                "Nobody spoke for {:.2} s, from {:.2} s to {:.2} s.",
                s.seconds, s.start, s.end
            ),
            json!({ "start": r6(s.start), "end": r6(s.end) }),
            p.warnings([warning]),
        ),
        Err(reason) => BuiltinOutcome::not_computable(reason, p.warnings([])),
    }
}

fn silence_detected(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
    match longest_silence(p) {
        Ok((s, warning)) => {
            let detected = s.seconds >= cfg.silence_threshold_seconds - EPS;
            BuiltinOutcome::value(
                MetricValue::Bool(detected),
                format!(
                    "The longest silence, {:.2} s, is {} the {} s threshold.",
                    s.seconds,
                    if detected { "at or above" } else { "below" },
                    cfg.silence_threshold_seconds
                ),
                json!({
                    "longest_silence": r6(s.seconds),
                    "start": r6(s.start),
                    "end": r6(s.end),
                    "threshold_seconds": cfg.silence_threshold_seconds,
                }),
                p.warnings([warning]),
            )
        }
        Err(reason) => BuiltinOutcome::not_computable(reason, p.warnings([])),
    }
}

// ---------------------------------------------------------------------------------------------
// 11. infrastructure_issues

fn infrastructure_issues(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
    let d = match &p.duration {
        Ok(d) => *d,
        Err(e) => return BuiltinOutcome::not_computable(e.clone(), p.warnings([])),
    };
    if p.no_times() {
        return BuiltinOutcome::not_computable(NO_TIMES.to_owned(), p.warnings([]));
    }
    if p.user.rows > 0 && p.user.with_end == 0 {
        return BuiltinOutcome::not_computable(
            "no user message has an end time".to_owned(),
            p.warnings([]),
        );
    }
    if p.bot.rows > 0 && p.bot.with_start == 0 {
        return BuiltinOutcome::not_computable(
            "no agent message has a start time, so the agent's answers cannot be placed".to_owned(),
            p.warnings([]),
        );
    }
    let limit = cfg.infrastructure_silence_seconds;
    let mut issues = Vec::new();
    let mut checked = 0usize;
    for u in p.rows.iter().filter(|r| !r.bot) {
        let Some(e) = u.end else { continue };
        checked += 1;
        // The agent's next speech at or after the user's end: a bot message still going at `e`
        // counts from `e`; a bot message with only a start counts if it starts at or after `e`.
        let answer = p
            .rows
            .iter()
            .filter(|r| r.bot)
            .filter_map(|r| match (r.start, r.end) {
                (Some(s), Some(be)) if be > e => Some(s.max(e)),
                (Some(s), None) if s >= e => Some(s),
                _ => None,
            })
            .min_by(f64::total_cmp);
        let until = answer.unwrap_or(d);
        if until <= e {
            continue;
        }
        // Time nobody speaks between the two: user speech in between pauses the clock.
        let silent = (until - e) - covered(&p.speech_union, e, until);
        if silent > limit + EPS {
            issues.push(json!({
                "user_message": u.idx,
                "user_end": r6(e),
                "agent_answer_at": answer.map(r6),
                "silent_seconds": r6(silent),
            }));
        }
    }
    let n = issues.len();
    let details = json!({
        "issues": issues,
        "checked_user_messages": checked,
        "threshold_seconds": limit,
    });
    BuiltinOutcome::count(
        n,
        format!(
            "The agent stayed silent for more than {limit} s after {n} of {checked} user message{}.",
            plural(checked)
        ),
        details,
        p.warnings([
            partial_warning(p.user.rows, p.user.with_end, "user", "an end time"),
            partial_warning(p.bot.rows, p.bot.with_start, "agent", "a start time"),
        ]),
    )
}

// ---------------------------------------------------------------------------------------------
// 12–13. words per minute

fn words_per_minute(p: &Prepared, bot: bool) -> BuiltinOutcome {
    let c = p.counts(bot);
    let who = role_name(bot);
    let fail = |reason: String| BuiltinOutcome::not_computable(reason, p.warnings([]));
    if c.rows == 0 {
        return fail(format!("the {who} never spoke (no {who} message)"));
    }
    if c.timed == 0 {
        return fail(if p.no_times() {
            NO_TIMES.to_owned()
        } else {
            format!(
                "none of the {} {who} message{} has both start and end times",
                c.rows,
                plural(c.rows)
            )
        });
    }
    let seconds = union_length(p.union(bot));
    if seconds <= 0.0 {
        return fail(format!("the {who}'s timed messages last 0 s in total"));
    }
    let words: usize = p
        .rows
        .iter()
        .filter(|r| r.bot == bot && r.start.is_some() && r.end.is_some())
        .map(|r| word_count(p.content(r.idx)))
        .sum();
    let wpm = words as f64 * 60.0 / seconds;
    BuiltinOutcome::number(
        wpm,
        format!(
            "The {who} said {words} word{} in {seconds:.2} s of speech: {wpm:.1} words per minute.",
            plural(words)
        ),
        json!({ "words": words, "speaking_seconds": r6(seconds), "messages": c.timed }),
        p.warnings([partial_warning(c.rows, c.timed, who, "start or end times")]),
    )
}

// ---------------------------------------------------------------------------------------------
// 14. turns

fn turns(p: &Prepared) -> BuiltinOutcome {
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

fn tool_calls(p: &Prepared) -> BuiltinOutcome {
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

fn data_field<'v>(m: &'v Message, key: &str) -> Option<&'v Value> {
    m.data.as_ref()?.as_object()?.get(key)
}

fn tool_name(m: &Message) -> Option<&str> {
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
fn tool_id(m: &Message) -> Option<&Value> {
    data_field(m, "id").filter(|v| match v {
        Value::String(s) => !s.is_empty(),
        Value::Number(_) => true,
        _ => false,
    })
}

/// Ids match when equal as JSON, or when one is a string holding the other number's digits.
fn ids_match(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::Number(n)) | (Value::Number(n), Value::String(x)) => {
            *x == n.to_string()
        }
        _ => a == b,
    }
}

/// Whether a value reports something: not null, false, "" or an empty array/object.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

/// A value for a reason: a string as is, an object's `message`, else compact JSON; cut short.
fn brief(v: &Value) -> String {
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
fn result_error(result: &Message) -> Option<String> {
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

fn tool_call_success(p: &Prepared) -> BuiltinOutcome {
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
    // First by id, when both rows have one.
    for (c, &ci) in calls.iter().enumerate() {
        let Some(id) = tool_id(&msgs[ci]) else {
            continue;
        };
        if let Some(r) = (0..results.len())
            .find(|&r| !used[r] && tool_id(&msgs[results[r]]).is_some_and(|rid| ids_match(id, rid)))
        {
            used[r] = true;
            paired[c] = Some(r);
        }
    }
    // Then by position: the next unused result after the call, unless both have (different) ids.
    for (c, &ci) in calls.iter().enumerate() {
        if paired[c].is_some() {
            continue;
        }
        let call_id = tool_id(&msgs[ci]);
        if let Some(r) = (0..results.len()).find(|&r| {
            !used[r]
                && results[r] > ci
                && !(call_id.is_some() && tool_id(&msgs[results[r]]).is_some())
        }) {
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

// ---------------------------------------------------------------------------------------------
// 17. unnecessary_repetition

/// Jaccard similarity of two sorted, deduplicated lists.
fn jaccard<T: Ord>(a: &[T], b: &[T]) -> f64 {
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
fn intern(text: &[u8], tokens: &[Span]) -> Vec<u32> {
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
type Span = (usize, usize);

/// 64-bit FNV-1a.
fn fnv1a(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn unnecessary_repetition(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
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

fn end_reason(p: &Prepared) -> BuiltinOutcome {
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

#[cfg(test)]
mod tests;
