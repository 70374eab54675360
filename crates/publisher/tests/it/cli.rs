//! The binary as operators use it: keygen, clear errors for bad flags, and the thin
//! API clients (revoke, cutoff, stats, import).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use revocast_core::{PublicKey, signing_key_from_file};
use revocast_testkit::NatsServer;

use crate::common::{Http, config, now, start};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revocast-publisher"));
    // Keep the environment from leaking into what is tested.
    for (key, _) in std::env::vars() {
        if key.starts_with("REVOCAST_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs a command that must finish (they all stop on their own) on a blocking thread.
async fn run(mut cmd: Command) -> Output {
    crate::common::within("the command", async {
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    })
    .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn keygen_writes_a_private_key_and_prints_the_public_key_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/signing.key");
    let mut cmd = bin();
    cmd.arg("keygen").arg("--out").arg(&path);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let printed: PublicKey = last.parse().unwrap();
    let key = signing_key_from_file(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(printed, PublicKey(key.verifying_key()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites.
    let mut cmd = bin();
    cmd.arg("keygen").arg("--out").arg(&path);
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("exists"),
        "{}",
        text(&out.stderr)
    );
    // The env var works as the flag does.
    let other = dir.path().join("other.key");
    let mut cmd = bin();
    cmd.arg("keygen").env("REVOCAST_KEYGEN_OUT", &other);
    assert!(run(cmd).await.status.success());
    assert!(other.exists());
}

/// Arguments, environment, and what stderr must say.
type BadFlags = (Vec<String>, Vec<(&'static str, &'static str)>, &'static str);

#[tokio::test]
async fn bad_flags_give_clear_errors() {
    let dead_nats = format!("nats://127.0.0.1:{}", crate::common::free_port());
    let cases: Vec<BadFlags> = vec![
        (
            vec!["serve".into(), "--listen".into(), "nowhere".into()],
            vec![],
            "invalid value 'nowhere' for '--listen",
        ),
        (
            vec![
                "serve".into(),
                "--heartbeat-interval".into(),
                "5 parsecs".into(),
            ],
            vec![],
            "unknown unit",
        ),
        (
            vec!["serve".into(), "--namespace".into(), "a.b".into()],
            vec![],
            "invalid namespace",
        ),
        (
            vec!["serve".into(), "--target-fpr".into(), "2".into()],
            vec![],
            "target_fpr must be in (0, 0.5)",
        ),
        (
            vec!["serve".into(), "--stream-replicas".into(), "0".into()],
            vec![],
            "stream replicas must be 1 to 5",
        ),
        (
            vec!["serve".into()],
            vec![("REVOCAST_BUCKET_WIDTH", "0s")],
            "bucket_width must be at least 1 second",
        ),
        (
            vec!["serve".into(), "--nats-user".into(), "me".into()],
            vec![],
            "NATS user and password go together",
        ),
        (
            vec![
                "serve".into(),
                "--listen".into(),
                "0.0.0.0:0".into(),
                "--nats".into(),
                dead_nats.clone(),
            ],
            vec![],
            "refusing to listen on 0.0.0.0",
        ),
        (
            vec![
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--nats".into(),
                dead_nats.clone(),
                "--jwt-verify-key".into(),
                "/no/such/key.pem".into(),
            ],
            vec![],
            "no such file",
        ),
        (
            vec![
                "serve".into(),
                "--nats".into(),
                "nats://127.0.0.1:port".into(),
            ],
            vec![],
            "invalid NATS URL",
        ),
        (
            vec!["serve".into(), "--oauth-client".into(), "app-1".into()],
            vec![],
            "expected ID:SECRET",
        ),
        (
            vec!["serve".into()],
            vec![("REVOCAST_OAUTH_CLIENTS", "app-1:s1,app-2:")],
            "\"app-2\" has an empty secret",
        ),
        (
            vec!["serve".into(), "--oauth-client".into(), "app-1:s1".into()],
            vec![],
            "OAuth clients need a token verification key",
        ),
        (
            vec![
                "serve".into(),
                "--public-url".into(),
                "revocast.example.com".into(),
            ],
            vec![],
            "must start with http:// or https://",
        ),
        (
            vec![
                "serve".into(),
                "--trust-issuer".into(),
                "https://idp.example".into(),
            ],
            vec![],
            "--trust-audience",
        ),
        (
            vec!["serve".into()],
            vec![
                ("REVOCAST_TRUST_ISSUER", "idp.example"),
                ("REVOCAST_TRUST_AUDIENCES", "rp"),
            ],
            "trusted issuer \"idp.example\": must start with http:// or https://",
        ),
        (
            vec!["serve".into(), "--ssf-token".into(), "t".into()],
            vec![],
            "--trust-issuer",
        ),
        (
            vec![
                "serve".into(),
                "--trust-config".into(),
                "/no/such/trust.json".into(),
            ],
            vec![],
            "cannot read the trusted issuers file /no/such/trust.json",
        ),
        (
            vec!["serve".into(), "--wat".into()],
            vec![],
            "unexpected argument '--wat'",
        ),
        (
            vec![
                "revoke".into(),
                "--jti".into(),
                "a".into(),
                "--exp".into(),
                "soon".into(),
            ],
            vec![],
            "is not unix seconds",
        ),
        (
            vec!["import".into(), "/no/such/file.csv".into()],
            vec![],
            "/no/such/file.csv",
        ),
        (
            vec!["stats".into(), "--url".into(), "127.0.0.1:1".into()],
            vec![],
            "use http://host:port",
        ),
        (
            vec!["stats".into(), "--url".into(), "http://127.0.0.1:1".into()],
            vec![],
            "cannot reach",
        ),
    ];
    for (args, env, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = bin();
        cmd.args(&args).current_dir(dir.path());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = run(cmd).await;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            !dir.path().join("revocast-data").exists(),
            "{args:?}: nothing is created before the configuration is accepted"
        );
        assert!(
            stderr.contains(want),
            "{args:?}: expected {want:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_cutoff_stats_and_import_through_the_cli() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let url = publisher.url();
    let http = Http::new(url.clone());
    let api = |args: &[&str]| {
        let mut cmd = bin();
        cmd.args(args)
            .env("REVOCAST_URL", &url)
            .env("REVOCAST_ADMIN_TOKEN", "tok");
        cmd
    };

    let out = run(api(&[
        "revoke", "--jti", "cli-1", "--exp", "+1h", "--reason", "by hand",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["version"], 1);
    let out = run(api(&["cutoff", "--sub", "eve", "--not-before", "-5m"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(api(&["stats"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["version"], 2);
    assert_eq!(stats["filter"]["subject_cutoffs"], 1);
    // The wrong token is refused with the API's message.
    let mut cmd = api(&["revoke", "--jti", "x", "--exp", "+1h"]);
    cmd.env("REVOCAST_ADMIN_TOKEN", "wrong");
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    // Import: good lines are revoked, bad lines reported by number, none aborts.
    let dir = tempfile::tempdir().unwrap();
    let exp = now() + 3600;
    let csv = dir.path().join("revoked.csv");
    std::fs::write(
        &csv,
        format!(
            "jti,exp,sub,reason\n\
             imp-1,{exp}\n\
             imp-2,{exp},bob,\"lost, phone\"\n\
             ,{exp}\n\
             imp-3,tomorrow\n\
             imp-4,{far}\n\
             cli-1,{exp}\n\
             imp-5,1000\n\
             imp-6,{exp},,stolen\n",
            far = exp * 1000
        ),
    )
    .unwrap();
    let out = run(api(&["import", csv.to_str().unwrap(), "--batch-size", "3"])).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "some lines rejected: {stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(
            "accepted 5 lines (3 revoked, 1 already revoked, 1 already expired), rejected 3"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("line 4: jti is empty"), "{stdout}");
    assert!(
        stdout.contains("line 5: exp \"tomorrow\" is not unix seconds"),
        "{stdout}"
    );
    assert!(stdout.contains("line 6: exp_too_far"), "{stdout}");
    for jti in ["imp-1", "imp-2", "imp-6"] {
        assert_eq!(
            http.get(&format!("/v1/revocations/{jti}")).await.0,
            200,
            "{jti}"
        );
    }
    let (_, body) = http.get_admin("/v1/revocations/imp-2").await;
    assert_eq!(body["reason"], "lost, phone");

    let jsonl = dir.path().join("revoked.jsonl");
    std::fs::write(
        &jsonl,
        format!("{{\"jti\":\"j-1\",\"exp\":{exp}}}\nnot json\n\n{{\"jti\":\"j-2\",\"exp\":{exp},\"sub\":\"s\"}}\n"),
    )
    .unwrap();
    let out = run(api(&["import", jsonl.to_str().unwrap()])).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("accepted 2 lines (2 revoked"), "{stdout}");
    assert!(stdout.contains("line 2: bad JSON line"), "{stdout}");
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, format!("{{\"jti\":\"g-1\",\"exp\":{exp}}}\n")).unwrap();
    let out = run(api(&["import", good.to_str().unwrap()])).await;
    assert!(out.status.success(), "{}", text(&out.stdout));
    publisher.shutdown().await.unwrap();
}

/// Logs written to a pipe (a file, a log collector) are plain text: no ANSI colour
/// codes unless stderr is a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let dead_nats = format!("nats://127.0.0.1:{}", crate::common::free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--nats", &dead_nats, "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("REVOCAST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // The publisher waits for NATS; its first lines are enough.
    let rx = crate::common::stderr_lines(&mut child);
    let mut seen = Vec::new();
    let started = tokio::task::block_in_place(|| {
        while let Ok(line) = rx.recv_timeout(crate::common::DEADLINE) {
            let done = line.contains("revocast publisher starting");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let text = seen.join("\n");
    assert!(started, "no start line logged: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in piped logs: {text:?}"
    );
}
