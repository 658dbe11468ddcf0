//! How much is said: talk ratios, silence, infrastructure issues, words per minute.

use super::*;

// ---------------------------------------------------------------------------------------------
// 7–8. talk ratios

/// Seconds the role speaks inside the call, and that as a share of the call.
pub(super) fn share(p: &Prepared, bot: bool) -> Result<(f64, f64), String> {
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

pub(super) fn talk_ratio(p: &Prepared, bot: bool) -> BuiltinOutcome {
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

pub(super) struct Silence {
    pub(super) seconds: f64,
    pub(super) start: f64,
    pub(super) end: f64,
}

pub(super) fn longest_silence(p: &Prepared) -> Result<(Silence, Option<String>), String> {
    let d = p.duration.clone()?;
    let timed = p.bot.timed + p.user.timed;
    if !p.rows.is_empty() && timed == 0 {
        return Err(if p.no_times() {
            NO_TIMES.to_owned()
        } else {
            "no agent or user message has both start and end times".to_owned()
        });
    }
    // The first of the longest stretches.
    let mut best = Silence {
        seconds: 0.0,
        start: 0.0,
        end: 0.0,
    };
    for (start, end) in silent_stretches(p, d) {
        if end - start > best.seconds {
            best = Silence {
                seconds: end - start,
                start,
                end,
            };
        }
    }
    let warning = partial_warning(p.rows.len(), timed, "agent and user", "start or end times")
        .map(|w| format!("{w}, so a silence may be shorter than measured"));
    Ok((best, warning))
}

/// The stretches of `[0, d]` in which no timed agent or user message is going, in order (the
/// last may be empty).
pub(super) fn silent_stretches(p: &Prepared, d: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut cursor = 0.0f64;
    for &(s, e) in &p.speech_union {
        let (s, e) = (s.clamp(0.0, d), e.clamp(0.0, d));
        if s > cursor {
            out.push((cursor, s));
        }
        cursor = cursor.max(e);
    }
    out.push((cursor, d));
    out
}

pub(super) fn longest_silence_outcome(p: &Prepared) -> BuiltinOutcome {
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

pub(super) fn silence_detected(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
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

pub(super) fn infrastructure_issues(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
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
    let agent = AgentSpeech::new(p);
    let speech = Coverage::new(&p.speech_union);
    let mut issues = Vec::new();
    let mut checked = 0usize;
    for u in p.rows.iter().filter(|r| !r.bot) {
        let Some(e) = u.end else { continue };
        checked += 1;
        let answer = agent.next_from(e);
        let until = answer.unwrap_or(d);
        if until <= e {
            continue;
        }
        // Time nobody speaks between the two: user speech in between pauses the clock.
        let silent = (until - e) - speech.within(e, until);
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

/// When the agent speaks, arranged so that its next speech after a moment is two binary searches
/// away rather than a pass over every agent message.
struct AgentSpeech<'p> {
    /// The union of the agent's timed messages.
    timed: &'p [(f64, f64)],
    /// Sorted starts of the agent messages that have a start and no end.
    open_starts: Vec<f64>,
}

impl<'p> AgentSpeech<'p> {
    fn new(p: &'p Prepared) -> Self {
        let mut open_starts: Vec<f64> = p
            .rows
            .iter()
            .filter(|r| r.bot && r.end.is_none())
            .filter_map(|r| r.start)
            .collect();
        open_starts.sort_unstable_by(f64::total_cmp);
        Self {
            timed: &p.bot_union,
            open_starts,
        }
    }

    /// The agent's next speech at or after `t`: `t` itself while a timed agent message is going
    /// (`start ≤ t < end`), else the earliest start after `t` of a timed message or at or after
    /// `t` of one with only a start. A part of the union holds `t` in `[start, end)` exactly
    /// when one of its messages does, and its start is the earliest of its messages'.
    fn next_from(&self, t: f64) -> Option<f64> {
        let later = self.timed.partition_point(|&(s, _)| s <= t);
        let timed = match later.checked_sub(1).map(|k| self.timed[k]) {
            Some((_, end)) if t < end => Some(t),
            _ => self.timed.get(later).map(|&(s, _)| s),
        };
        let open = self
            .open_starts
            .get(self.open_starts.partition_point(|&s| s < t))
            .copied();
        timed.into_iter().chain(open).min_by(f64::total_cmp)
    }
}

// ---------------------------------------------------------------------------------------------
// 12–13. words per minute

pub(super) fn words_per_minute(p: &Prepared, bot: bool) -> BuiltinOutcome {
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
