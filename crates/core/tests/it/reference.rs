//! The second implementation: `docs/reference/revocast_reader.py`, a replica written
//! in Python (standard library only, XXH3 included) from `docs/FORMAT.md` alone, loads
//! the golden reference snapshot, applies the golden delta after it, and must answer
//! exactly as this crate's filter does: for 10,050 members, 100,000 tokens that are
//! not, tokens without `exp`, and tokens that cutoffs catch. Equal answers on the
//! false positives too show that both set and test the same bits.
//!
//! It needs `python3` (set `REVOCAST_PYTHON` to use another interpreter).
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use revocast_core::{Filter, Lookup, Probe};

use crate::common::verifier;
use crate::golden::{golden, reference_member};

const EXP: u64 = 1_767_225_600;

fn python() -> PathBuf {
    let python = std::env::var_os("REVOCAST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    match Command::new(&python).arg("--version").output() {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{} not found: the reference reader test needs Python 3 (Debian/Ubuntu: \
             `sudo apt-get install -y python3`, or set REVOCAST_PYTHON to an interpreter)",
            python.display()
        ),
    }
}

fn name(lookup: Lookup) -> &'static str {
    match lookup {
        Lookup::Clear => "clear",
        Lookup::FilterHit => "filter_hit",
        Lookup::SubjectCutoff => "subject_cutoff",
        Lookup::GlobalCutoff => "global_cutoff",
        Lookup::SessionCutoff => "session_cutoff",
    }
}

/// A check: `jti`, `exp`, `sub`, `iat`, `sid`.
type Check = (
    String,
    Option<u64>,
    Option<String>,
    Option<u64>,
    Option<String>,
);

fn checks() -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    // Members: the snapshot's 10,000 and the delta's 50 (the last in its own bucket).
    for i in 0..10_050 {
        let (jti, exp) = reference_member(i);
        let exp = if i == 10_049 { EXP + 5 * 3600 } else { exp };
        out.push((jti, Some(exp), None, None, None));
    }
    // Tokens that are not members, in the members' buckets and around them.
    for i in 0..100_000u64 {
        let jti = format!("0b5c1d2e-{:04x}-4bbb-8ccc-{:012x}", i % 65_536, i);
        out.push((
            jti,
            Some(EXP - 3600 + (i * 53) % (7 * 3600)),
            None,
            None,
            None,
        ));
    }
    // Without `exp` (every bucket is searched), with subjects and issue times that
    // the cutoffs catch or not, and jtis from 1 to 256 bytes (every XXH3 length class).
    for i in 0..300u64 {
        let (member, exp) = reference_member(i * 31);
        out.push((member, None, None, None, None));
        out.push((
            "x".repeat(1 + i as usize % 256),
            Some(exp),
            None,
            None,
            None,
        ));
        let sub = ["mallory", "trent", "alice"][i as usize % 3].to_owned();
        let iat = EXP - 7_200 + i * 30;
        out.push((
            format!("cut-{i}"),
            Some(exp),
            Some(sub.clone()),
            Some(iat),
            None,
        ));
        out.push((format!("old-{i}"), Some(EXP + i), Some(sub), None, None));
        // Lifetimes around the namespace's bound (a day plus the leeway).
        let lifetime = 86_400 + 300 - 150 + i;
        out.push((
            format!("long-{i}"),
            Some(exp),
            None,
            Some(exp - lifetime),
            None,
        ));
        // Sessions: logged out in the snapshot (s-1), in the delta (s-2), or not.
        let sid = ["s-1", "s-2", "s-3"][i as usize % 3].to_owned();
        out.push((
            format!("sess-{i}"),
            Some(exp),
            Some("bob".into()),
            Some(iat),
            Some(sid),
        ));
    }
    out
}

#[test]
fn the_python_reference_reader_answers_exactly_as_the_filter() {
    let python = python();
    // One verifier, as one replica: it follows the snapshot's key chain to the key
    // that signs both vectors.
    let verifier = verifier();
    let snapshot = verifier
        .decode_snapshot(golden("reference_snapshot.bin"))
        .unwrap();
    let mut filter = Filter::from_state(snapshot.state).unwrap();
    filter
        .apply(
            &verifier
                .decode_delta(golden("reference_delta.bin"))
                .unwrap(),
        )
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let snapshot_path = dir.path().join("snapshot.bin");
    let delta_path = dir.path().join("delta.bin");
    std::fs::write(&snapshot_path, golden("reference_snapshot.bin")).unwrap();
    std::fs::write(&delta_path, golden("reference_delta.bin")).unwrap();
    let checks = checks();
    let mut input = String::new();
    let field = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for (jti, exp, sub, iat, sid) in &checks {
        input.push_str(&format!(
            "{jti}\t{}\t{}\t{}\t{}\n",
            field(*exp),
            sub.as_deref().unwrap_or(""),
            field(*iat),
            sid.as_deref().unwrap_or("")
        ));
    }

    let reader = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/reference/revocast_reader.py"
    );
    let selftest = Command::new(&python)
        .args([reader, "--selftest"])
        .output()
        .unwrap();
    assert!(
        selftest.status.success(),
        "the reader's worked examples: {}",
        String::from_utf8_lossy(&selftest.stderr)
    );
    let mut child = Command::new(&python)
        .arg(reader)
        .arg(&snapshot_path)
        .arg(&delta_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the reference reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(answers.len(), checks.len());

    let mut mismatches = Vec::new();
    let mut false_positives = 0;
    let mut sessions_cut = 0;
    for (i, ((jti, exp, sub, iat, sid), python)) in checks.iter().zip(&answers).enumerate() {
        let rust = name(filter.lookup(&Probe {
            jti,
            exp: *exp,
            sub: sub.as_deref(),
            iat: *iat,
            sid: sid.as_deref(),
        }));
        if rust != *python {
            mismatches.push(format!(
                "{jti} {exp:?} {sub:?} {iat:?} {sid:?}: rust {rust}, python {python}"
            ));
        }
        if rust == "session_cutoff" {
            sessions_cut += 1;
        }
        if (10_050..110_050).contains(&i) && rust == "filter_hit" {
            false_positives += 1;
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ, first: {:?}",
        mismatches.len(),
        checks.len(),
        &mismatches[..mismatches.len().min(5)]
    );
    // Every member is found, and the non-members' hits are the false positives the
    // target rate allows, found identically by both.
    assert!(answers[..10_050].iter().all(|a| *a != "clear"));
    assert!(
        (20..200).contains(&sessions_cut),
        "{sessions_cut} tokens caught by session cutoffs"
    );
    assert!(
        (1..200).contains(&false_positives),
        "{false_positives} false positives in 100,000"
    );
}
