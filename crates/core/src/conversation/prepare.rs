//! Preparation: one pass over the transcript, shared by every metric.

use super::*;

// ---------------------------------------------------------------------------------------------
// Preparation: one pass over the transcript, shared by every metric.

/// One agent or user message, with usable times.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    /// Index in the conversation's messages.
    pub(super) idx: usize,
    pub(super) bot: bool,
    pub(super) start: Option<f64>,
    pub(super) end: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RoleCounts {
    pub(super) rows: usize,
    /// Rows with both a start and an end.
    pub(super) timed: usize,
    pub(super) with_start: usize,
    pub(super) with_end: usize,
}

pub(super) struct Prepared<'a> {
    pub(super) messages: &'a [Message],
    pub(super) ended_reason: &'a str,
    pub(super) audio: Option<&'a crate::AudioTimeline>,
    pub(super) trace: Option<&'a crate::TraceBreakdown>,
    pub(super) duration: Result<f64, String>,
    /// Agent and user messages, in order.
    pub(super) rows: Vec<Row>,
    pub(super) bot: RoleCounts,
    pub(super) user: RoleCounts,
    /// Unions of the timed intervals: sorted, disjoint, not clipped to the call.
    pub(super) bot_union: Vec<(f64, f64)>,
    pub(super) user_union: Vec<(f64, f64)>,
    pub(super) speech_union: Vec<(f64, f64)>,
    /// Data-quality remarks that concern every time-based metric.
    pub(super) data_warnings: Vec<String>,
}

impl<'a> Prepared<'a> {
    pub(super) fn new(conv: &Conversation<'a>) -> Self {
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
            audio: conv.audio,
            trace: conv.trace,
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

    pub(super) fn counts(&self, bot: bool) -> RoleCounts {
        if bot {
            self.bot
        } else {
            self.user
        }
    }

    pub(super) fn union(&self, bot: bool) -> &[(f64, f64)] {
        if bot {
            &self.bot_union
        } else {
            &self.user_union
        }
    }

    /// There are agent/user messages and not one of them carries a time.
    pub(super) fn no_times(&self) -> bool {
        !self.rows.is_empty()
            && self
                .rows
                .iter()
                .all(|r| r.start.is_none() && r.end.is_none())
    }

    /// The data-quality warnings plus the metric's own.
    pub(super) fn warnings(&self, extra: impl IntoIterator<Item = Option<String>>) -> Vec<String> {
        let mut w = self.data_warnings.clone();
        w.extend(extra.into_iter().flatten());
        w
    }

    pub(super) fn content(&self, idx: usize) -> &'a str {
        &self.messages[idx].content
    }
}

pub(super) const NO_TIMES: &str = "no message has start and end times";

pub(super) fn role_name(bot: bool) -> &'static str {
    if bot {
        "agent"
    } else {
        "user"
    }
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub(super) fn more(total: usize, shown: usize) -> String {
    if total > shown {
        format!(" and {} more", total - shown)
    } else {
        String::new()
    }
}

pub(super) fn index_list(idx: &[usize]) -> String {
    idx.iter()
        .take(EXAMPLES)
        .map(|i| format!("messages[{i}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "2 of 5 agent messages lack start or end times and were left out", when some (not all) do.
pub(super) fn partial_warning(total: usize, with: usize, who: &str, lack: &str) -> Option<String> {
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
pub(super) fn r6(x: f64) -> f64 {
    let y = (x * 1e6).round() / 1e6;
    if y == 0.0 {
        0.0
    } else {
        y
    }
}

/// Sorts intervals by start and merges overlapping or touching ones; returns how many intervals
/// started strictly inside the union built so far (overlapping rows).
pub(super) fn union_in_place(v: &mut Vec<(f64, f64)>) -> usize {
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
pub(super) fn covered(union: &[(f64, f64)], lo: f64, hi: f64) -> f64 {
    union
        .iter()
        .map(|&(s, e)| (e.min(hi) - s.max(lo)).max(0.0))
        .sum()
}

/// A union with the running total of its lengths, so that the part of a window it covers costs
/// two binary searches instead of a pass over the union.
pub(super) struct Coverage<'u> {
    union: &'u [(f64, f64)],
    /// `before[k]`: the total length of `union[..k]`.
    before: Vec<f64>,
}

impl<'u> Coverage<'u> {
    pub(super) fn new(union: &'u [(f64, f64)]) -> Self {
        let mut before = Vec::with_capacity(union.len() + 1);
        before.push(0.0);
        for &(s, e) in union {
            before.push(before[before.len() - 1] + (e - s));
        }
        Self { union, before }
    }

    /// [`covered`]`(union, lo, hi)`: the same number when the window meets at most two parts,
    /// which it measures alone; the parts in between come from the running total, so over more
    /// parts the sum may differ by rounding.
    pub(super) fn within(&self, lo: f64, hi: f64) -> f64 {
        let first = self.union.partition_point(|&(_, e)| e <= lo);
        let end = self.union.partition_point(|&(s, _)| s < hi);
        if first >= end {
            return 0.0;
        }
        let part = |k: usize| {
            let (s, e) = self.union[k];
            (e.min(hi) - s.max(lo)).max(0.0)
        };
        let last = end - 1;
        if first == last {
            return part(first);
        }
        part(first) + (self.before[last] - self.before[first + 1]) + part(last)
    }
}

pub(super) fn union_length(union: &[(f64, f64)]) -> f64 {
    union.iter().map(|&(s, e)| e - s).sum()
}
