//! Backup and restore as an operator runs them: `revocast-publisher export` against
//! a real nats-server, `import` of the file into a publisher on a new nats-server,
//! and the same records read back; bad files are refused whole, with line numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use revocast_core::http::{CutoffRequest, Revocation};
use revocast_publisher::backup::{BackupLine, parse_line};
use revocast_testkit::NatsServer;

use crate::common::{Http, config, now, start, within};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revocast-publisher"));
    for (key, _) in std::env::vars() {
        if key.starts_with("REVOCAST_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

async fn run(mut cmd: Command) -> Output {
    within("the command", async {
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    })
    .await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `export` of the publisher at `nats`, verified with `key`, into `out`.
async fn export(nats: &NatsServer, key: &str, out: &std::path::Path) -> Output {
    let mut cmd = bin();
    cmd.args(["export", "--nats", &nats.url(), "--publisher-key", key])
        .arg("--out")
        .arg(out);
    run(cmd).await
}

async fn import(url: &str, file: &std::path::Path) -> Output {
    let mut cmd = bin();
    cmd.arg("import")
        .arg(file)
        .env("REVOCAST_URL", url)
        .env("REVOCAST_ADMIN_TOKEN", "tok");
    run(cmd).await
}

/// The records of an export file, without what a restore renews (the header's
/// version and time, each record's `revoked_at`).
fn records(file: &std::path::Path) -> (Vec<Revocation>, Vec<CutoffRequest>) {
    let mut revocations = Vec::new();
    let mut cutoffs = Vec::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        match parse_line(line).unwrap() {
            BackupLine::Revocation(r) => revocations.push(r),
            BackupLine::Cutoff(c) => cutoffs.push(c),
            BackupLine::Header(_) => {}
        }
    }
    (revocations, cutoffs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_restores_onto_a_new_nats_and_reads_back_the_same() {
    let old_nats = NatsServer::start();
    let old = start(config(&old_nats)).await;
    let http = Http::new(old.url());
    let exp = now() + 3600;
    for (jti, sub, reason) in [
        ("bk-1", Some("alice"), Some("stolen laptop")),
        ("bk-2", None, None),
        ("bk-3", Some("bob"), Some("quote \" and, comma")),
    ] {
        let revocation = Revocation {
            jti: jti.into(),
            exp: Some(exp),
            sub: sub.map(Into::into),
            reason: reason.map(Into::into),
        };
        let (status, body) = http
            .post(
                "/v1/revocations",
                serde_json::to_value(&revocation).unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = http
        .post(
            "/v1/cutoffs",
            serde_json::json!({"sub": "mallory", "not_before": now() - 60}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http
        .post(
            "/v1/cutoffs",
            serde_json::json!({"not_before": now() - 120}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.jsonl");
    let out = export(&old_nats, &old.public_key().to_string(), &file).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("at version 5: 3 revocations, 2 cutoffs"),
        "{}",
        text(&out.stderr)
    );
    let (revocations, cutoffs) = records(&file);
    assert_eq!(
        revocations
            .iter()
            .map(|r| r.jti.as_str())
            .collect::<Vec<_>>(),
        ["bk-1", "bk-2", "bk-3"]
    );
    assert_eq!(
        revocations[2].reason.as_deref(),
        Some("quote \" and, comma")
    );
    assert_eq!(cutoffs.len(), 2);
    assert_eq!(cutoffs[0].sub.as_deref(), Some("mallory"));
    assert_eq!(cutoffs[1].sub, None);

    // A new NATS and a publisher with a new key: the export restores into it.
    let new_nats = NatsServer::start();
    let new = start(config(&new_nats)).await;
    let out = import(&new.url(), &file).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("accepted 5 lines (3 revoked, 0 already revoked, 0 already expired, 2 cutoffs set), rejected 0"),
        "{stdout}"
    );
    let restored = Http::new(new.url());
    let (status, body) = restored.get_admin("/v1/revocations/bk-3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reason"], "quote \" and, comma");
    let (_, stats) = restored.get("/v1/stats").await;
    assert_eq!(stats["filter"]["subject_cutoffs"], 1, "{stats}");
    assert!(stats["filter"]["global_cutoff"].is_u64(), "{stats}");

    // Read back from the new NATS: the same records and cutoffs.
    let again = dir.path().join("again.jsonl");
    let out = export(&new_nats, &new.public_key().to_string(), &again).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(records(&again), (revocations, cutoffs));

    // An export that cannot be written leaves nothing behind and says where.
    let nowhere = dir.path().join("no-such-dir/default.jsonl");
    let out = export(&new_nats, &new.public_key().to_string(), &nowhere).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&nowhere.display().to_string()),
        "{}",
        text(&out.stderr)
    );
    assert!(!nowhere.exists());

    // The old publisher's key does not verify what the new one wrote.
    let out = export(&new_nats, &old.public_key().to_string(), &again).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not verify with this publisher's key"),
        "{}",
        text(&out.stderr)
    );
    new.shutdown().await.unwrap();
    old.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_export_is_refused_whole_with_line_numbers() {
    let nats = NatsServer::start();
    let publisher = start(config(&nats)).await;
    let exp = now() + 3600;
    let header = format!(
        "{{\"revocast_export\":1,\"namespace\":\"default\",\"version\":3,\"exported_at\":{},\"revocations\":3,\"cutoffs\":1}}",
        now()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("damaged.jsonl");
    std::fs::write(
        &file,
        format!(
            "{header}\n\
             {{\"jti\":\"ok-1\",\"exp\":{exp},\"revoked_at\":1}}\n\
             {{\"jti\":\"ok-2\",\"ex\n\
             {{\"jti\":\"\",\"exp\":{exp}}}\n\
             {{\"cutoff\":{{\"sub\":\"eve\"}}}}\n"
        ),
    )
    .unwrap();
    let out = import(&publisher.url(), &file).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let name = file.display().to_string();
    for expected in [
        format!("{name}:3: bad JSON line"),
        format!("{name}:4: jti is empty"),
        format!("{name}:5: bad cutoff line: missing field `not_before`"),
        "nothing imported: 3 of 5 lines".to_owned(),
        "an export is restored whole".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing reached the publisher, not even the good line.
    let http = Http::new(publisher.url());
    assert_eq!(http.get("/v1/revocations/ok-1").await.0, 404);
    let (_, stats) = http.get("/v1/stats").await;
    assert_eq!(stats["version"], 0, "{stats}");

    // An export from a newer build says what to do.
    std::fs::write(
        &file,
        header.replace("\"revocast_export\":1", "\"revocast_export\":2"),
    )
    .unwrap();
    let out = import(&publisher.url(), &file).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(":1: export format 2 is not the one this build reads (1): import it with the release that wrote it"),
        "{}",
        text(&out.stderr)
    );

    // A plain revocation file with --strict: the same all-or-nothing rule.
    std::fs::write(
        &file,
        format!("{{\"jti\":\"s-1\",\"exp\":{exp}}}\nnot json\n"),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.arg("import")
        .arg(&file)
        .arg("--strict")
        .env("REVOCAST_URL", publisher.url())
        .env("REVOCAST_ADMIN_TOKEN", "tok");
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{name}:2: bad JSON line")),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("(--strict)"));
    assert_eq!(http.get("/v1/revocations/s-1").await.0, 404);
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_a_namespace_nobody_wrote_says_so() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("none.jsonl");
    let key =
        revocast_core::PublicKey(revocast_core::signing_key_from_seed([7; 32]).verifying_key());
    let out = export(&nats, &key.to_string(), &file).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("namespace default has no stream REVOCAST_default"),
        "{}",
        text(&out.stderr)
    );
    assert!(!file.exists());
    // NATS not there at all: said as such, not as an empty namespace.
    let mut cmd = bin();
    cmd.args([
        "export",
        "--nats",
        &format!("nats://127.0.0.1:{}", crate::common::free_port()),
        "--publisher-key",
        &key.to_string(),
    ]);
    let out = run(cmd).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("open stream REVOCAST_default"), "{stderr}");
    assert!(!stderr.contains("has no stream"), "{stderr}");
    // A key that is not one.
    let out = export(&nats, "not-a-key", &file).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--publisher-key"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_without_exp_is_exported_without_exp() {
    // Stored in every live bucket, it must be restored into every live bucket: an export
    // with one `exp` would let a token of that jti with an earlier `exp` pass.
    let nats = NatsServer::start();
    let publisher = start(config(&nats)).await;
    let http = Http::new(publisher.url());
    for body in [
        serde_json::json!({"jti": "everywhere"}),
        serde_json::json!({"jti": "once", "exp": now() + 3600}),
    ] {
        let (status, answer) = http.post("/v1/revocations", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.jsonl");
    let out = export(&nats, &publisher.public_key().to_string(), &file).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (revocations, _) = records(&file);
    let exp_of = |jti: &str| {
        revocations
            .iter()
            .find(|r| r.jti == jti)
            .unwrap_or_else(|| panic!("{jti} exported: {revocations:?}"))
            .exp
    };
    assert_eq!(exp_of("everywhere"), None, "{revocations:?}");
    assert!(exp_of("once").is_some(), "{revocations:?}");
}
