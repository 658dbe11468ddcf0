//! Built-in judge metrics: prompts we wrote, with their output types.

use callgrade_core::OutputType;

pub const SYSTEM_PROMPT: &str = "You evaluate phone conversations between a voice AI agent \
    (\"Agent\") and a caller (\"User\"). Judge only from the transcript and the context given. \
    Answer with the JSON object the schema describes: a verdict and a short explanation that \
    quotes the transcript where it matters.";

pub struct Template {
    pub name: &'static str,
    pub output: OutputType,
    pub enum_values: &'static [&'static str],
    pub prompt: &'static str,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "expected_outcome",
        output: OutputType::Enum,
        enum_values: &["pass", "review_required", "fail"],
        prompt: "A test caller followed these instructions:\n{{scenario.instructions}}\n\n\
            The expected outcome of the call is:\n{{scenario.expected_outcome_prompt}}\n\n\
            Transcript:\n{{transcript}}\n\
            Did the call reach the expected outcome? Answer \"pass\" when it clearly did, \
            \"fail\" when it clearly did not, and \"review_required\" when the transcript does \
            not allow a confident decision.",
    },
    Template {
        name: "instruction_following",
        output: OutputType::Score,
        enum_values: &[],
        prompt: "The agent was given these instructions (its prompt):\n{{agent.description}}\n\n\
            Transcript:\n{{transcript}}\n\
            List every deviation of the agent from its instructions in `deviations`, each with \
            a severity (low, medium, high). Then score instruction following from 0 (ignored \
            its instructions) to 5 (followed them completely).",
    },
    Template {
        name: "relevancy",
        output: OutputType::Score,
        enum_values: &[],
        prompt: "Transcript:\n{{transcript}}\n\
            Score from 0 to 5 how relevant the agent's replies are to what the user said and \
            asked: 5 when every reply addresses the user's last turn, 0 when the agent keeps \
            answering something else.",
    },
    Template {
        name: "response_consistency",
        output: OutputType::Score,
        enum_values: &[],
        prompt: "Transcript:\n{{transcript}}\n\
            Score from 0 to 5 how consistent the agent is with itself and with facts stated in \
            the call (names, amounts, dates, tool results): 5 with no contradiction, 0 when it \
            contradicts itself or the tool results repeatedly.",
    },
    Template {
        name: "sentiment",
        output: OutputType::Enum,
        enum_values: &["positive", "neutral", "negative"],
        prompt: "Transcript:\n{{transcript}}\n\
            What is the user's overall sentiment by the end of the call: positive, neutral or \
            negative?",
    },
    Template {
        name: "voicemail_detection",
        output: OutputType::Binary,
        enum_values: &[],
        prompt: "Transcript:\n{{transcript}}\n\
            Did the call reach a voicemail box or an answering machine instead of a person? \
            Verdict true if it did.",
    },
    Template {
        name: "appropriate_call_termination",
        output: OutputType::Binary,
        enum_values: &[],
        prompt:
            "The call ended with reason \"{{call_end_reason}}\".\nTranscript:\n{{transcript}}\n\
            Did the call end appropriately: the user's need was handled or clearly could not \
            be, the agent closed politely, and the agent did not hang up on the user or leave \
            them waiting? Verdict true if it did.",
    },
];

pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}
