//! The dashboard in a real browser: Debian's headless Chromium driven through chromedriver.
//! Screenshots of the main pages go to target/screenshots/. Ignored unless asked for with
//! `--include-ignored` (CI does, after installing them); then a missing chromedriver fails it.

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

const DRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn screenshot(client: &fantoccini::Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium: apt-get install chromium chromium-driver, run with --include-ignored"]
async fn a_user_walks_through_the_dashboard() {
    assert!(
        std::path::Path::new(DRIVER).exists(),
        "{DRIVER} is missing: apt-get install chromium chromium-driver"
    );
    // fantoccini's rustls and reqwest's bring one crypto provider each; say which to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = TestApp::spawn().await;
    let token = callgrade_app::admin::issue_admin_token(&app.state.app, false)
        .await
        .unwrap()
        .unwrap();
    let port = free_port();
    let _driver = Driver(
        Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({
        "binary": "/usr/bin/chromium",
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())],
    }));
    let mut client = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = client.expect("chromedriver answers");
    let base = app.base.clone();

    // Sign in.
    c.goto(&format!("{base}/")).await.unwrap();
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(&token)
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/login'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let signed_in = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action='/projects']"))
        .await;
    assert!(
        signed_in.is_ok(),
        "not signed in: {}",
        c.source().await.unwrap()
    );

    // Create a project; the key is shown once.
    c.find(Locator::Css("input[name=name]"))
        .await
        .unwrap()
        .send_keys("browser")
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/projects'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let key = c
        .wait()
        .for_element(Locator::Id("api-key"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(key.starts_with("cg_"));
    screenshot(&c, "project-created").await;

    // Create an agent on the project page.
    let project = app.store.authenticate(&key).await.unwrap().unwrap().project;
    c.goto(&format!("{base}/projects/{}/setup", project.id))
        .await
        .unwrap();
    screenshot(&c, "project-empty").await;
    c.find(Locator::Css("form[action$='/agents'] input[name=name]"))
        .await
        .unwrap()
        .send_keys("support-bot")
        .await
        .unwrap();
    c.find(Locator::Css("form[action$='/agents'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=name][value='support-bot']"))
        .await
        .unwrap();
    let agent = app
        .store
        .list_agents(project.id)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(c.source().await.unwrap().contains("support-bot"));

    // A call through the webhook, and a rejected delivery.
    app.send(&key, &seed_two_calls(agent.id)).await;
    app.send(&key, &json!({"agent_id": "oops", "calls": []}))
        .await;
    app.settle().await;

    // The landing page: the overview of the calls, with the refused delivery.
    c.goto(&format!("{base}/projects/{}", project.id))
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("overview-cards"))
        .await
        .unwrap();
    assert!(c.source().await.unwrap().contains("refused in this range"));
    screenshot(&c, "overview").await;

    // Find it in the list, open it, see its latency and metrics.
    c.goto(&format!("{base}/projects/{}/calls", project.id))
        .await
        .unwrap();
    screenshot(&c, "calls").await;
    c.find(Locator::LinkText("0199e72d-795e-7ffe-b9b9-d3b08a3a11ae"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("timeline")).await.unwrap();
    let detail = c.source().await.unwrap();
    assert!(
        detail.contains("latency 1.43 s"),
        "latency shown in the timeline"
    );
    let metrics = c
        .find(Locator::Id("metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("agent_latency") && metrics.contains("1.43"),
        "{metrics}"
    );
    screenshot(&c, "call-detail").await;

    // The timeline as laid out by the browser: the overlap (11.5 to 12.0 s of a 40 s call) sits
    // where the times say, at 960 px for 40 s right of the 80 px lane names.
    let (_, receipt) = status_and_json(
        app.send(&key, &batch(agent.id, vec![timeline_call("timeline")]))
            .await,
    )
    .await;
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap().to_owned();
    app.settle().await;
    c.goto(&format!("{base}/projects/{}/calls/{call_id}", project.id))
        .await
        .unwrap();
    let svg = c
        .wait()
        .for_element(Locator::Css("#timeline svg"))
        .await
        .unwrap();
    let pps: f64 = svg
        .attr("data-px-per-second")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!((pps - 24.0).abs() < 1e-9, "{pps}");
    let (svg_x, ..) = svg.rectangle().await.unwrap();
    let (x, _, width, _) = c
        .find(Locator::Css("#timeline rect.overlap"))
        .await
        .unwrap()
        .rectangle()
        .await
        .unwrap();
    let (want_x, want_width) = (80.0 + 11.5 * 24.0, 0.5 * 24.0);
    assert!(
        (x - svg_x - want_x).abs() <= 2.0 && (width - want_width).abs() <= 2.0,
        "overlap at x {} width {width}, expected {want_x} and {want_width}",
        x - svg_x
    );
    screenshot(&c, "call-timeline").await;
    // A click on the caller's bar goes to its transcript row.
    c.find(Locator::Css("#timeline a[href='#msg-5'] rect.bar"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let target = c
        .execute(
            "return document.querySelector(':target')?.id ?? null",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(target, json!("msg-5"));

    // The rejected delivery with its error.
    c.goto(&format!("{base}/projects/{}/deliveries", project.id))
        .await
        .unwrap();
    c.find(Locator::LinkText("Failures only"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let log = c
        .wait()
        .for_element(Locator::Id("deliveries"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("400") && log.contains("agent_id"), "{log}");
    screenshot(&c, "deliveries-failures").await;

    // Today's calls, so the charts have a point to draw.
    let now = chrono::Utc::now();
    for (i, gap) in [0.8, 2.4].iter().enumerate() {
        app.send(&key, &json!({"agent_id": agent.id, "calls": [{
            "id": format!("today-{i}"),
            "startedAt": (now - chrono::TimeDelta::seconds(60)).to_rfc3339(), "endedAt": now.to_rfc3339(),
            "messages": [{"role": "user", "content": "Hi", "start_time": 1.0, "end_time": 2.0},
                         {"role": "bot", "content": "Hello!", "start_time": 2.0 + gap, "end_time": 4.0 + gap}]
        }]})).await;
    }
    app.settle().await;
    c.goto(&format!("{base}/projects/{}/metrics", project.id))
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("charts")).await.unwrap();
    // The pointer on today's p50 point reads its value out: the median of 0.8 s and 2.4 s.
    let point = c
        .find(Locator::Css("figure.chart circle.point"))
        .await
        .unwrap();
    c.execute(
        "arguments[0].dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))",
        vec![serde_json::to_value(&point).unwrap()],
    )
    .await
    .unwrap();
    let readout = c
        .find(Locator::Css("figure.chart .readout"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        readout.starts_with("p50, ") && readout.ends_with(": 1.600"),
        "{readout}"
    );
    screenshot(&c, "metrics").await;

    // The distribution of a numeric metric: today's calls' latencies, 0.8 s and 2.4 s, fall in
    // the first and the last bin.
    c.goto(&format!(
        "{base}/projects/{}/metrics?distribution=agent_latency",
        project.id
    ))
    .await
    .unwrap();
    let bars = c
        .find_all(Locator::Css("#distribution rect.point title"))
        .await
        .unwrap();
    let mut titles = Vec::new();
    for bar in bars {
        titles.push(bar.html(true).await.unwrap());
    }
    assert_eq!(titles.len(), 5, "{titles:?}");
    assert_eq!(titles[0], "0.8–1.12: 1 call", "{titles:?}");
    assert_eq!(titles[4], "2.08–2.4: 1 call", "{titles:?}");
    assert!(
        titles[1..4].iter().all(|t| t.ends_with(": 0 calls")),
        "{titles:?}"
    );
    c.execute(
        "document.getElementById('distribution').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    screenshot(&c, "distribution").await;

    c.close().await.unwrap();
}
