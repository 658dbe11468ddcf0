//! Who talks over whom: interruption counts and the interruption score.

use super::*;

// ---------------------------------------------------------------------------------------------
// 4–6. interruptions

pub(super) struct Interruptions {
    /// Messages of the interrupter's role whose preceding agent/user message is the other role's.
    pub(super) candidates: usize,
    /// Candidates with the times needed (the preceding message's end, this message's start).
    pub(super) checked: usize,
    /// (interrupted message, interrupting message, overlap seconds)
    pub(super) events: Vec<(usize, usize, f64)>,
    /// Overlaps that were backchannels, hence not interruptions.
    pub(super) backchannels: Vec<(usize, usize, f64)>,
}

/// Messages of one role (`by_bot`) that start while the preceding message, of the other role, is
/// still going.
pub(super) fn interruptions(p: &Prepared, cfg: &BuiltinConfig, by_bot: bool) -> Interruptions {
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
pub(super) fn interruptions_checked(
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

pub(super) fn interruption_count(
    p: &Prepared,
    cfg: &BuiltinConfig,
    by_bot: bool,
) -> BuiltinOutcome {
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

pub(super) fn interruption_score(p: &Prepared, cfg: &BuiltinConfig) -> BuiltinOutcome {
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
