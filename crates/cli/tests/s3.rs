//! Recordings in an S3-compatible bucket: `callgrade serve --recordings-url s3://…` against a
//! local S3 server (moto), a call's `recording_url` fetched into the bucket under its prefix,
//! and served back whole and by range, after a restart too.

use axum::Router;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Server, BIN};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moto_server` from `CALLGRADE_TEST_MOTO_SERVER` or the PATH, on a free port of 127.0.0.1.
async fn moto() -> (Killed, String) {
    let program =
        std::env::var("CALLGRADE_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {program:?} ({e}): install moto (pip install 'moto[server]') or set \
                 CALLGRADE_TEST_MOTO_SERVER"
            )
        });
    let child = Killed(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(&endpoint).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not start on {endpoint}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, endpoint)
}

fn serve(data: &Path, endpoint: &str) -> Server {
    Server::spawn(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(["--recordings-url", "s3://calls/recordings"])
            .args(["--allow-fetch-from", "127.0.0.1"])
            .env("AWS_ENDPOINT", endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1"),
    )
}

fn run_json(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .arg("--json")
        .env_remove("CALLGRADE_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an S3-compatible server: moto_server on the PATH (pip install 'moto[server]') or CALLGRADE_TEST_MOTO_SERVER, run with --include-ignored"]
async fn recordings_are_kept_in_an_s3_bucket() {
    let (_moto, endpoint) = moto().await;
    let client = reqwest::Client::new();
    let made = client
        .put(format!("{endpoint}/calls"))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{made:?}");

    let wav = callgrade_audio::wav_bytes(
        &callgrade_audio::Pcm {
            sample_rate: 8_000,
            channels: vec![vec![4_000; 8_000], vec![0; 8_000]],
        },
        callgrade_audio::WavEncoding::Pcm16,
    );
    let files = {
        let wav = wav.clone();
        Router::new().route(
            "/call.wav",
            axum::routing::get(move || {
                let wav = wav.clone();
                async move { wav }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let recording_url = format!("http://{}/call.wav", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, files).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let project = run_json(dir.path(), &["project", "create", "bucketed"]);
    let agent = run_json(
        dir.path(),
        &["agent", "create", "--project", "bucketed", "--name", "bot"],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    let server = serve(dir.path(), &endpoint);
    let base = server.base.clone();
    let body = json!({"agent_id": agent["id"], "calls": [{
        "id": "in-a-bucket", "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z",
        "recording_url": recording_url,
    }]});
    let r = client
        .post(format!(
            "{base}/test_framework/custom-provider-transcript-webhook"
        ))
        .header("X-CEKURA-API-KEY", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let receipt: Value = r.json().await.unwrap();
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap().to_owned();

    let get = |base: &str, range: Option<&str>| {
        let mut request = client
            .get(format!("{base}/api/v1/calls/{call_id}/recording"))
            .bearer_auth(&key);
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        request.send()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(&base, None).await.unwrap();
        if r.status() == 200 {
            assert_eq!(r.bytes().await.unwrap(), wav);
            break;
        }
        assert!(Instant::now() < deadline, "no recording: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The object is in the bucket, under the prefix.
    let listing = client
        .get(format!("{endpoint}/calls?list-type=2"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(listing.matches("<Key>recordings/").count(), 1, "{listing}");

    // Served from the bucket by range, by a new process too.
    drop(server);
    let server = serve(dir.path(), &endpoint);
    let base = server.base.clone();
    let part = get(&base, Some("bytes=8-15")).await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), wav[8..16]);
}
