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

// The engine's parts: preparing a transcript once, the metrics by theme, and their evidence.
mod audio;
mod evidence;
mod interruptions;
mod prepare;
mod speech;
mod structure;
mod text;
mod timing;
mod traced;

pub use self::evidence::{evidence, Evidence, Interruption, Latency, ToolCall};
use self::{interruptions::*, prepare::*, speech::*, structure::*, text::*, timing::*};

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
    /// The speech in the call's stereo recording, when it has one.
    pub audio: Option<&'a crate::AudioTimeline>,
    /// The stages of its turns, from the spans with its `trace_id`, when it has them.
    pub trace: Option<&'a crate::TraceBreakdown>,
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
    /// The metric means nothing for this conversation; `not_computable` says why.
    pub not_applicable: bool,
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
            not_applicable: false,
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
            not_applicable: false,
        }
    }

    /// For a metric of speech timing on a written conversation.
    pub fn not_applicable_to_text(key: BuiltinKey) -> Self {
        let reason = format!(
            "{} measures speech, and this is a text conversation (channel \"text\")",
            key.as_str()
        );
        Self {
            explanation: format!("Not applicable: {reason}."),
            not_applicable: true,
            ..Self::not_computable(reason, Vec::new())
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
    AudioLatency,
    AudioTimeToFirstAudio,
    AudioAgentInterruptingCaller,
    AudioCallerInterruptingAgent,
    AudioAgentStopTime,
    AudioTalkRatio,
    AudioSpeechShare,
    AudioCallShare,
    AudioLongestSilence,
    AudioAgentSpeakingRate,
    AudioTranscriptLatencyGap,
    TraceSttLatency,
    TraceLlmTtft,
    TraceTtsTtfb,
    TraceToolTime,
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
            Self::AudioLatency => "audio_latency",
            Self::AudioTimeToFirstAudio => "audio_time_to_first_audio",
            Self::AudioAgentInterruptingCaller => "audio_agent_interrupting_caller",
            Self::AudioCallerInterruptingAgent => "audio_caller_interrupting_agent",
            Self::AudioAgentStopTime => "audio_agent_stop_time",
            Self::AudioTalkRatio => "audio_talk_ratio",
            Self::AudioSpeechShare => "audio_speech_share",
            Self::AudioCallShare => "audio_call_share",
            Self::AudioLongestSilence => "audio_longest_silence",
            Self::AudioAgentSpeakingRate => "audio_agent_speaking_rate",
            Self::AudioTranscriptLatencyGap => "audio_transcript_latency_gap",
            Self::TraceSttLatency => "trace_stt_latency",
            Self::TraceLlmTtft => "trace_llm_ttft",
            Self::TraceTtsTtfb => "trace_tts_ttfb",
            Self::TraceToolTime => "trace_tool_time",
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
    metric(BuiltinKey::AudioLatency, "Audio latency", BuiltinOutput::Numeric, SECONDS,
        "Latency at the caller's ear, from the stereo recording: caller speech end → next agent speech start (p50)."),
    metric(BuiltinKey::AudioTimeToFirstAudio, "Time to first audio", BuiltinOutput::Numeric, SECONDS,
        "When the caller first hears the agent: the recording's first agent speech."),
    metric(BuiltinKey::AudioAgentInterruptingCaller, "Audio: agent interrupting caller", BuiltinOutput::Numeric, None,
        "Agent speech starting while the caller speaks (overlap of at least min_overlap_seconds), from the recording."),
    metric(BuiltinKey::AudioCallerInterruptingAgent, "Audio: caller interrupting agent", BuiltinOutput::Numeric, None,
        "Caller speech starting while the agent speaks (overlap of at least min_overlap_seconds), from the recording."),
    metric(BuiltinKey::AudioAgentStopTime, "Agent stop time after barge-in", BuiltinOutput::Numeric, SECONDS,
        "How fast the agent yields: caller speech start during agent speech → that agent speech's end (p50)."),
    metric(BuiltinKey::AudioTalkRatio, "Audio talk ratio", BuiltinOutput::Numeric, None,
        "Agent speech / caller speech in the recording."),
    metric(BuiltinKey::AudioSpeechShare, "Audio speech share", BuiltinOutput::Numeric, None,
        "Agent speech / (agent + caller speech) in the recording, from 0 to 1."),
    metric(BuiltinKey::AudioCallShare, "Audio call share", BuiltinOutput::Numeric, None,
        "Agent speech / the recording's duration, from 0 to 1."),
    metric(BuiltinKey::AudioLongestSilence, "Audio longest silence", BuiltinOutput::Numeric, SECONDS,
        "The longest stretch of the recording in which neither side speaks."),
    metric(BuiltinKey::AudioAgentSpeakingRate, "Audio agent speaking rate", BuiltinOutput::Numeric, WPM,
        "Words of the transcript's agent messages / minutes of agent speech in the recording."),
    metric(BuiltinKey::AudioTranscriptLatencyGap, "Transcript vs audio latency", BuiltinOutput::Numeric, SECONDS,
        "Median over paired turns of (latency heard in the recording − latency in the transcript's times)."),
    metric(BuiltinKey::TraceSttLatency, "Trace: speech to text", BuiltinOutput::Numeric, SECONDS,
        "Speech-to-text time per agent turn, from the call's OpenTelemetry trace (p50)."),
    metric(BuiltinKey::TraceLlmTtft, "Trace: LLM time to first token", BuiltinOutput::Numeric, SECONDS,
        "The LLM's (or speech-to-speech model's) time to first token per agent turn, from the call's trace (p50)."),
    metric(BuiltinKey::TraceTtsTtfb, "Trace: TTS time to first byte", BuiltinOutput::Numeric, SECONDS,
        "Text-to-speech time to first byte per agent turn, from the call's trace (p50)."),
    metric(BuiltinKey::TraceToolTime, "Trace: tool time", BuiltinOutput::Numeric, SECONDS,
        "Time spent in tool calls per agent turn that made one, from the call's trace (p50)."),
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

impl BuiltinKey {
    /// Whether the metric reads speech timing (overlaps, silences, speaking rate), which a
    /// written conversation does not have.
    pub fn measures_speech(self) -> bool {
        use BuiltinKey::*;
        matches!(
            self,
            AgentInterruptingUser
                | UserInterruptingAgent
                | InterruptionScore
                | TalkRatio
                | UserTalkRatio
                | LongestSilence
                | SilenceDetected
                | InfrastructureIssues
                | AgentWordsPerMinute
                | UserWordsPerMinute
        ) || self.needs_recording()
    }

    /// Whether the metric is computed from the call's stereo recording (and is not applicable
    /// to a call without one).
    pub fn needs_recording(self) -> bool {
        use BuiltinKey::*;
        matches!(
            self,
            AudioLatency
                | AudioTimeToFirstAudio
                | AudioAgentInterruptingCaller
                | AudioCallerInterruptingAgent
                | AudioAgentStopTime
                | AudioTalkRatio
                | AudioSpeechShare
                | AudioCallShare
                | AudioLongestSilence
                | AudioAgentSpeakingRate
                | AudioTranscriptLatencyGap
        )
    }

    /// Whether the metric is read from the call's OpenTelemetry trace (and is not applicable to
    /// a call without one).
    pub fn needs_trace(self) -> bool {
        use BuiltinKey::*;
        matches!(
            self,
            TraceSttLatency | TraceLlmTtft | TraceTtsTtfb | TraceToolTime
        )
    }
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
        BuiltinKey::AudioLatency => recorded(p, audio::latency),
        BuiltinKey::AudioTimeToFirstAudio => recorded(p, audio::time_to_first_audio),
        BuiltinKey::AudioAgentInterruptingCaller => {
            recorded(p, |t| audio::interruptions(t, cfg, true))
        }
        BuiltinKey::AudioCallerInterruptingAgent => {
            recorded(p, |t| audio::interruptions(t, cfg, false))
        }
        BuiltinKey::AudioAgentStopTime => recorded(p, audio::stop_time),
        BuiltinKey::AudioTalkRatio => recorded(p, |t| audio::share(t, audio::Portion::Caller)),
        BuiltinKey::AudioSpeechShare => recorded(p, |t| audio::share(t, audio::Portion::Speech)),
        BuiltinKey::AudioCallShare => recorded(p, |t| audio::share(t, audio::Portion::Call)),
        BuiltinKey::AudioLongestSilence => recorded(p, audio::longest_silence),
        BuiltinKey::AudioAgentSpeakingRate => recorded(p, |t| audio::speaking_rate(p, t)),
        BuiltinKey::AudioTranscriptLatencyGap => recorded(p, |t| audio::transcript_gap(p, t)),
        BuiltinKey::TraceSttLatency => traced(p, traced::Stage::Stt),
        BuiltinKey::TraceLlmTtft => traced(p, traced::Stage::LlmTtft),
        BuiltinKey::TraceTtsTtfb => traced(p, traced::Stage::TtsTtfb),
        BuiltinKey::TraceToolTime => traced(p, traced::Stage::Tool),
    }
}

/// A trace metric: not applicable without a trace.
fn traced(p: &Prepared, stage: traced::Stage) -> BuiltinOutcome {
    match p.trace {
        Some(t) => traced::stage(t, stage),
        None => traced::not_applicable(),
    }
}

/// An audio metric: not applicable without a recording.
fn recorded(
    p: &Prepared,
    metric: impl FnOnce(&crate::AudioTimeline) -> BuiltinOutcome,
) -> BuiltinOutcome {
    match p.audio {
        Some(t) => metric(t),
        None => audio::not_applicable(),
    }
}

#[cfg(test)]
mod tests;
