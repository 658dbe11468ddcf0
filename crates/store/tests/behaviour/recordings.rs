//! Recordings: one per call, replaced by a new one, only for a call of the project, stored with
//! a new call in its write (not with a resend), and their timeline read into what evaluation sees.

use super::*;
use callgrade_core::{AnalysedRecording, AudioTimeline, Detector, Span};

fn audio(key: &str, agent_end: u64) -> AnalysedRecording {
    AnalysedRecording {
        object_key: key.to_owned(),
        content_type: "audio/wav".into(),
        size_bytes: 4_044,
        sample_rate: 8_000,
        channels: 2,
        duration_ms: 2_000,
        agent_channel: 1,
        origin: "simulation".into(),
        timeline: AudioTimeline {
            frame_ms: 20,
            detector: Detector::default(),
            duration_ms: 2_000,
            caller: vec![Span {
                start_ms: 0,
                end_ms: 400,
            }],
            agent: vec![Span {
                start_ms: 700,
                end_ms: agent_end,
            }],
            clipped: [0.0, 0.0],
        },
        envelope: [vec![0, 200, 0], vec![0, 0, 180]],
        bucket_ms: 50,
    }
}

fn recording(project_id: i64, call_id: &str, agent_end: u64) -> StoredRecording {
    StoredRecording {
        call_id: call_id.to_owned(),
        project_id,
        audio: audio(&format!("{project_id}/{call_id}"), agent_end),
        created_at: t0(),
    }
}

/// Sends one call with a recording.
async fn send_recorded(
    store: &dyn Store,
    project_id: i64,
    agent_id: i64,
    call: Value,
    recording: AnalysedRecording,
) -> IngestOutcome {
    let body = json!({"agent_id": agent_id, "calls": [call]});
    let mut batch = validate_batch(&body, &Limits::default()).unwrap();
    batch.calls[0].recording = Some(Box::new(recording));
    let delivery = delivery(project_id, &body.to_string());
    store.ingest(batch, delivery).await.unwrap()
}

pub(super) async fn story_recordings(store: &dyn Store) {
    let (project, _) = store.create_project("recorded").await.unwrap();
    let (other, _) = store.create_project("elsewhere").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("a"))
        .await
        .unwrap();
    let receipt = send_one(store, project.id, t0(), Some(agent.id), call("rec-1")).await;
    let id = receipt.call_id.clone();
    assert_eq!(store.recording(project.id, &id).await.unwrap(), None);

    // Only a call of the project takes a recording.
    assert!(!store
        .put_recording(&recording(other.id, &id, 1_500))
        .await
        .unwrap());
    assert!(!store
        .put_recording(&recording(project.id, "no-such-call", 1_500))
        .await
        .unwrap());
    assert_eq!(store.recording(other.id, &id).await.unwrap(), None);

    let first = recording(project.id, &id, 1_500);
    assert!(store.put_recording(&first).await.unwrap());
    assert_eq!(
        store.recording(project.id, &id).await.unwrap().as_ref(),
        Some(&first)
    );
    // A new recording replaces the old.
    let second = recording(project.id, &id, 1_900);
    assert!(store.put_recording(&second).await.unwrap());
    assert_eq!(
        store.recording(project.id, &id).await.unwrap(),
        Some(second.clone())
    );

    // Evaluation reads the timeline with the call.
    let inputs = store.evaluation_inputs(project.id, &[id]).await.unwrap();
    assert_eq!(inputs[0].call.audio.as_ref(), Some(&second.audio.timeline));

    // A call ingested with its recording has it from the same write: its first evaluation
    // sees the audio.
    let recorded = accepted(
        send_recorded(
            store,
            project.id,
            agent.id,
            call("rec-2"),
            audio("k2", 1_200),
        )
        .await,
    );
    let id2 = recorded.calls[0].call_id.clone();
    let stored = store.recording(project.id, &id2).await.unwrap().unwrap();
    assert_eq!(
        (stored.audio.object_key.as_str(), stored.project_id),
        ("k2", project.id)
    );
    assert_eq!(stored.audio, audio("k2", 1_200));
    // A resend is a duplicate: the first recording stays.
    let again = accepted(
        send_recorded(
            store,
            project.id,
            agent.id,
            call("rec-2"),
            audio("k3", 1_300),
        )
        .await,
    );
    assert_eq!(again.duplicates, 1);
    assert_eq!(
        store
            .recording(project.id, &id2)
            .await
            .unwrap()
            .unwrap()
            .audio
            .object_key,
        "k2"
    );
    // A refused call stores no recording.
    let changed = with(call("rec-2"), "endedReason", json!("other"));
    rejected(send_recorded(store, project.id, agent.id, changed, audio("k4", 1_300)).await);
    assert_eq!(
        store
            .recording(project.id, &id2)
            .await
            .unwrap()
            .unwrap()
            .audio
            .object_key,
        "k2"
    );
}
