//! Script metrics in Rhai, sandboxed: no file or network access, no imports, no eval, and hard
//! limits on operations, sizes, call depth and wall time, all set in [`ScriptLimits`]. A runaway or
//! failing script yields an error result; it never blocks or crashes a worker.

use callgrade_core::EvaluationInput;
use callgrade_core::Role;
use rhai::{Dynamic, Engine, Scope};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every limit a script runs under, in one place.
#[derive(Debug, Clone, Copy)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    pub wall_time: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_operations: 2_000_000,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 10_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            wall_time: Duration::from_secs(2),
        }
    }
}

/// What a script set.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptOutcome {
    /// `result`, or `None` when the script left it unset.
    pub value: Option<Value>,
    pub explanation: String,
    pub operations: u64,
}

/// The `data` a script receives: the keys Cekura's Python metrics get, where they make sense.
pub fn script_data(input: &EvaluationInput, builtins: &Map<String, Value>) -> Value {
    let call = &input.call;
    let messages: Vec<Value> = call
        .messages
        .iter()
        .map(|m| {
            json!({
                "role": m.role.as_str(),
                "content": m.content,
                "start_time": m.start_offset,
                "end_time": m.end_offset,
                "data": m.data,
            })
        })
        .collect();
    let transcript: String = call
        .messages
        .iter()
        .filter(|m| matches!(m.role, Role::Bot | Role::User))
        .map(|m| {
            let who = if m.role == Role::Bot { "Agent" } else { "User" };
            format!("{who}: {}\n", m.content)
        })
        .collect();
    json!({
        "call_id": call.call_id,
        "transcript": transcript,
        "messages": messages,
        "transcript_object": messages,
        "duration": call.duration_seconds,
        "call_end_reason": call.ended_reason,
        "ended_reason": call.ended_reason,
        "metadata": call.metadata,
        "started_at": call.started_at.to_rfc3339(),
        "ended_at": call.ended_at.to_rfc3339(),
        "from_phone_number": call.from_phone_number,
        "to_phone_number": call.to_phone_number,
        "agent": input.agent.as_ref().map(|a| json!({"id": a.id, "name": a.name, "description": a.description})),
        "scenario": input.scenario.as_ref().map(|s| json!({
            "id": s.id, "name": s.name, "instructions": s.instructions,
            "expected_outcome_prompt": s.expected_outcome_prompt,
        })),
        "is_test_call": input.is_test_call(),
        "metrics": builtins,
    })
}

fn engine(limits: ScriptLimits, started: Instant, operations: Arc<AtomicU64>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits.max_operations)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_modules(0);
    engine.disable_symbol("eval");
    // print and debug go nowhere: the worker's output is not the script's.
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    let wall = limits.wall_time;
    engine.on_progress(move |count| {
        operations.store(count, Ordering::Relaxed);
        (started.elapsed() > wall).then(|| Dynamic::from("wall time exceeded"))
    });
    engine
}

/// Whether a script compiles; the error names its line and column.
pub fn compile_check(source: &str) -> Result<(), String> {
    let engine = engine(ScriptLimits::default(), Instant::now(), Arc::default());
    engine.compile(source).map(drop).map_err(|e| {
        let at = e.1;
        match (at.line(), at.position()) {
            (Some(line), Some(column)) => {
                format!("does not compile: {} (line {line}, column {column})", e.0)
            }
            _ => format!("does not compile: {}", e.0),
        }
    })
}

/// Runs a script on a blocking thread, so a slow one never stalls the async workers.
pub async fn run_script(
    source: &str,
    data: Value,
    limits: ScriptLimits,
) -> Result<ScriptOutcome, String> {
    let source = source.to_owned();
    tokio::task::spawn_blocking(move || run_script_blocking(&source, data, limits))
        .await
        .map_err(|e| format!("the script thread failed: {e}"))?
}

pub fn run_script_blocking(
    source: &str,
    data: Value,
    limits: ScriptLimits,
) -> Result<ScriptOutcome, String> {
    let started = Instant::now();
    let operations = Arc::new(AtomicU64::new(0));
    let engine = engine(limits, started, operations.clone());
    let data = rhai::serde::to_dynamic(data).map_err(|e| e.to_string())?;
    let mut scope = Scope::new();
    scope.push("data", data);
    scope.push("result", Dynamic::UNIT);
    scope.push("explanation", String::new());
    let ast = engine
        .compile(source)
        .map_err(|e| format!("does not compile: {e}"))?;
    engine
        .run_ast_with_scope(&mut scope, &ast)
        .map_err(|e| match *e {
            rhai::EvalAltResult::ErrorTerminated(..) => format!(
                "stopped after {} ms: the wall-time limit is {} ms",
                started.elapsed().as_millis(),
                limits.wall_time.as_millis()
            ),
            other => other.to_string(),
        })?;
    let result = scope
        .get_value::<Dynamic>("result")
        .unwrap_or(Dynamic::UNIT);
    let value = if result.is_unit() {
        None
    } else {
        Some(rhai::serde::from_dynamic::<Value>(&result).map_err(|e| e.to_string())?)
    };
    let explanation = scope
        .get_value::<Dynamic>("explanation")
        .map(|d| d.to_string())
        .unwrap_or_default();
    Ok(ScriptOutcome {
        value,
        explanation,
        operations: operations.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ScriptLimits {
        ScriptLimits {
            wall_time: Duration::from_millis(300),
            ..ScriptLimits::default()
        }
    }

    #[test]
    fn sets_result_and_explanation() {
        let data =
            json!({"transcript": "Agent: hello\nUser: refund please\n", "metrics": {"turns": 2}});
        let out = run_script_blocking(
            r#"
            let asked = data.transcript.contains("refund");
            result = asked && data.metrics.turns >= 2;
            explanation = if asked { "the caller asked for a refund" } else { "no refund" };
            "#,
            data,
            limits(),
        )
        .unwrap();
        assert_eq!(out.value, Some(json!(true)));
        assert_eq!(out.explanation, "the caller asked for a refund");
    }

    #[test]
    fn unset_result_is_none() {
        let out = run_script_blocking("let x = 1;", json!({}), limits()).unwrap();
        assert_eq!(out.value, None);
    }

    #[test]
    fn runaway_scripts_are_stopped() {
        let err = run_script_blocking("loop { }", json!({}), limits()).unwrap_err();
        assert!(err.contains("operations") || err.contains("wall"), "{err}");
        let slow = ScriptLimits {
            max_operations: 0, // unlimited operations: only the wall clock stops it
            wall_time: Duration::from_millis(100),
            ..ScriptLimits::default()
        };
        let started = Instant::now();
        let err = run_script_blocking("loop { }", json!({}), slow).unwrap_err();
        assert!(err.contains("wall-time"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn sandbox_limits_hold() {
        let big = run_script_blocking(r#"let s = "x"; loop { s += s; }"#, json!({}), limits());
        assert!(big.is_err());
        let deep = run_script_blocking("fn f(n) { f(n + 1) } f(0);", json!({}), limits());
        assert!(
            deep.is_err(),
            "unbounded recursion stops at the call-depth limit"
        );
        let import = run_script_blocking(r#"import "os" as os;"#, json!({}), limits());
        assert!(import.is_err());
        let eval = run_script_blocking(r#"eval("1")"#, json!({}), limits());
        assert!(eval.is_err());
        let syntax = run_script_blocking("result = ;", json!({}), limits()).unwrap_err();
        assert!(syntax.contains("does not compile"));
    }
}
