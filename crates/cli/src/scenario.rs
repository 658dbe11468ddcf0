//! `callgrade scenario`: test cases for an agent, stored directly in the database.

use anyhow::anyhow;
use callgrade_app::runs::AgentConnector;
use callgrade_app::{App, AppError, AppSettings};
use callgrade_core::{Persona, ScenarioDraft, Trait};
use callgrade_store::Scenario;
use clap::Subcommand;
use std::process::ExitCode;

use crate::admin::find_project;
use crate::output::Output;
use crate::DbArgs;

#[derive(Subcommand)]
pub enum ScenarioCommand {
    /// Create a scenario for an agent.
    Create {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// The agent's id.
        #[arg(long)]
        agent: i64,
        #[arg(long)]
        name: String,
        /// inbound: the tester calls the agent; outbound: the agent calls the tester.
        #[arg(long, value_parser = ["inbound", "outbound"])]
        direction: String,
        /// The tester's number: the call's from_phone_number (inbound) or to_phone_number
        /// (outbound). Phone matching needs it.
        #[arg(long)]
        tester_phone_number: Option<String>,
        /// What the simulated caller does.
        #[arg(long, default_value = "")]
        instructions: String,
        /// What a successful call achieves.
        #[arg(long, default_value = "")]
        expected_outcome: String,
        /// A tag (repeat for several).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The simulated caller's name (a persona); see also --language and --trait.
        #[arg(long)]
        persona: Option<String>,
        /// The language the simulated caller speaks.
        #[arg(long, default_value = "en", requires = "persona")]
        language: String,
        /// A trait of the caller: impatient, confused, interrupts, off_topic, angry, terse,
        /// verbose, elderly (repeat for several).
        #[arg(long = "trait", requires = "persona", value_parser = parse_trait)]
        traits: Vec<Trait>,
        /// What the simulated caller says first (else its LLM opens).
        #[arg(long)]
        first_message: Option<String>,
        /// Caller and agent turns together before the conversation stops (default 30).
        #[arg(long)]
        max_turns: Option<u32>,
        /// Seconds before the conversation stops (default 600).
        #[arg(long)]
        max_seconds: Option<u32>,
        /// Run and report it, but never let it gate a result.
        #[arg(long)]
        quarantined: bool,
    },
    /// Create or update scenarios from a TOML file (`[[scenarios]]` tables, each a scenario
    /// as `scenario create` takes it, plus `tool_mocks`), matched by agent and name, and set
    /// agents' connectors (`[[agents]]` tables: `id` and `connector`). Nothing is written when
    /// any scenario has a problem.
    Apply {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// The agent of scenarios that name none (`agent_id`).
        #[arg(long)]
        agent: Option<i64>,
        /// The TOML file, or - for standard input.
        file: std::path::PathBuf,
    },
    /// Draft a scenario from a stored call through the simulator endpoint, and print it as
    /// TOML to review and `scenario apply`.
    FromCall {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// Our call id (as in the calls list).
        call_id: String,
        /// The simulator endpoint when the project has none.
        #[arg(long, env = "CALLGRADE_SIMULATOR_BASE_URL")]
        simulator_base_url: Option<String>,
        #[arg(long, env = "CALLGRADE_SIMULATOR_MODEL")]
        simulator_model: Option<String>,
        #[arg(long, env = "CALLGRADE_SIMULATOR_API_KEY", hide_env_values = true)]
        simulator_api_key: Option<String>,
    },
    /// List a project's scenarios.
    List {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// Only this agent's.
        #[arg(long)]
        agent: Option<i64>,
    },
    /// Show one scenario.
    Show {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// The scenario's id.
        id: i64,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

/// `[[agents]]` (id and connector; `connector = "none"` removes one) and `[[scenarios]]`
/// tables; a scenario's `agent_id` defaults to `--agent`.
fn parse_scenarios_file(
    text: &str,
    agent: Option<i64>,
) -> anyhow::Result<(Vec<AgentConnector>, Vec<ScenarioDraft>)> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        agents: Vec<AgentTable>,
        #[serde(default)]
        scenarios: Vec<toml::Table>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AgentTable {
        id: i64,
        connector: toml::Value,
    }
    let file: File = toml::from_str(text)?;
    let agents = file
        .agents
        .into_iter()
        .map(|a| {
            let connector = match a.connector {
                toml::Value::String(s) if s == "none" => None,
                other => Some(serde_json::to_value(other)?),
            };
            Ok(AgentConnector {
                agent_id: a.id,
                connector,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let scenarios = file
        .scenarios
        .into_iter()
        .enumerate()
        .map(|(i, mut table)| {
            if let (false, Some(agent)) = (table.contains_key("agent_id"), agent) {
                table.insert("agent_id".into(), toml::Value::Integer(agent));
            }
            if !table.contains_key("agent_id") {
                anyhow::bail!("scenarios[{i}]: give agent_id, or --agent for all");
            }
            table.try_into().map_err(|e| anyhow!("scenarios[{i}]: {e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((agents, scenarios))
}

fn parse_trait(s: &str) -> Result<Trait, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        "must be one of impatient, confused, interrupts, off_topic, angry, terse, verbose, elderly"
            .to_owned()
    })
}

fn describe(s: &Scenario) -> String {
    format!(
        "Scenario {} {:?} (agent {}, {}, tester {})\n  tags: {}\n  instructions: {}\n  expected outcome: {}",
        s.id,
        s.name,
        s.agent_id,
        s.direction.as_str(),
        s.tester_phone_number.as_deref().unwrap_or("none"),
        if s.tags.is_empty() { "-".into() } else { s.tags.join(", ") },
        s.instructions,
        s.expected_outcome_prompt
    )
}

pub async fn run(db: &DbArgs, cmd: ScenarioCommand, out: &Output) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    match cmd {
        ScenarioCommand::Create {
            project,
            agent,
            name,
            direction,
            tester_phone_number,
            instructions,
            expected_outcome,
            tags,
            persona,
            language,
            traits,
            first_message,
            max_turns,
            max_seconds,
            quarantined,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let draft = ScenarioDraft {
                agent_id: agent,
                name,
                instructions,
                expected_outcome_prompt: expected_outcome,
                tags,
                direction,
                tester_phone_number,
                persona: persona.map(|name| Persona {
                    name,
                    language,
                    traits,
                    description: String::new(),
                    voice: None,
                }),
                first_message,
                tool_mocks: Vec::new(),
                unmatched_tool_result: None,
                max_turns,
                max_seconds,
                quarantined,
            };
            let app = App::new(store.clone(), AppSettings::default());
            let scenario = callgrade_app::runs::create_scenario(&app, project.id, draft)
                .await
                .map_err(|e| match e {
                    // Each problem names its flag: `tester_phone_number` is `--tester-phone-number`.
                    AppError::Invalid(errors) => {
                        let lines: Vec<String> = errors
                            .iter()
                            .map(|e| format!("--{}: {}", e.path.replace('_', "-"), e.message))
                            .collect();
                        anyhow!("{}", lines.join("; "))
                    }
                    other => anyhow!(other),
                })?;
            out.print(&scenario, || format!("Created {}", describe(&scenario)));
        }
        ScenarioCommand::Apply {
            project,
            agent,
            file,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).map_err(|e| anyhow!("{}: {e}", file.display()))?
            };
            let (agents, drafts) = parse_scenarios_file(&text, agent)
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let app = App::new(store.clone(), AppSettings::default());
            let summary = callgrade_app::runs::apply_scenarios(&app, project.id, &agents, drafts)
                .await
                .map_err(|e| anyhow!("{}", e.problems().join("; ")))?;
            out.print(&summary, || {
                format!(
                    "created: {}\nupdated: {}\nunchanged: {}",
                    list(&summary.created),
                    list(&summary.updated),
                    list(&summary.unchanged)
                )
            });
        }
        ScenarioCommand::FromCall {
            project,
            call_id,
            simulator_base_url,
            simulator_model,
            simulator_api_key,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let mut settings = AppSettings::default();
            settings.simulation.default_base_url = simulator_base_url;
            settings.simulation.default_model = simulator_model;
            settings.simulation.default_api_key = simulator_api_key;
            let app = App::new(store.clone(), settings);
            let draft = callgrade_app::simulation::draft_from_call(&app, project.id, &call_id)
                .await
                .map_err(|e| anyhow!("{}", e.problems().join("; ")))?;
            out.print(&draft, || {
                let file = serde_json::json!({ "scenarios": [&draft] });
                let toml = toml::to_string(&file).unwrap_or_else(|e| format!("# {e}"));
                format!("# Drafted from call {call_id}: review it, then `callgrade scenario apply`.\n{toml}")
            });
        }
        ScenarioCommand::List { project, agent } => {
            let project = find_project(store.as_ref(), &project).await?;
            let scenarios = store.list_scenarios(project.id, agent).await?;
            let value = serde_json::json!({ "scenarios": scenarios });
            out.print(&value, || {
                if scenarios.is_empty() {
                    return "No scenarios yet. Create one: callgrade scenario create --help".into();
                }
                let mut text = format!(
                    "{:<6} {:<6} {:<9} {:<16} {:<24} TAGS",
                    "ID", "AGENT", "DIRECTION", "TESTER", "NAME"
                );
                for s in &scenarios {
                    text.push_str(&format!(
                        "\n{:<6} {:<6} {:<9} {:<16} {:<24} {}",
                        s.id,
                        s.agent_id,
                        s.direction.as_str(),
                        s.tester_phone_number.as_deref().unwrap_or("-"),
                        s.name,
                        s.tags.join(",")
                    ));
                }
                text
            });
        }
        ScenarioCommand::Show { project, id } => {
            let project = find_project(store.as_ref(), &project).await?;
            let scenario = store
                .scenario(project.id, id)
                .await?
                .ok_or_else(|| anyhow!("no scenario {id} in project {:?}", project.name))?;
            out.print(&scenario, || describe(&scenario));
        }
    }
    Ok(ExitCode::SUCCESS)
}
