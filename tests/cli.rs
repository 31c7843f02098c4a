//! The CLI end to end: help on every command, and bad uploads each giving a specific error and a
//! non-zero exit (never a panic).

mod common;

use std::process::Command;

fn lorafuse(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lorafuse"))
        .args(args)
        .env("LORAFUSE_MODEL_DIR", common::model_dir())
        .output()
        .expect("runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_command_has_help() {
    for cmd in ["embed", "train", "predict", "eval", "bench-speed"] {
        let (ok, out, _) = lorafuse(&[cmd, "--help"]);
        assert!(ok && out.contains("Usage"), "{cmd} --help");
    }
}

#[test]
fn bad_uploads_fail_with_specific_errors() {
    let dir = std::env::temp_dir().join(format!("lorafuse-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        ("noheader.csv", b"great movie,positive\nawful,negative\n", "column"),
        ("empty.csv", b"", "empty"),
        ("oneclass.csv", b"text,label\ngood,pos\nfine,pos\n", "at least two classes"),
        ("badutf8.csv", b"text,label\ngood,pos\n\xff\xfe,neg\n", "UTF-8"),
        ("blank_text.csv", b"text,label\n,pos\n\"\",neg\n", "no usable rows"),
        ("notobject.jsonl", b"[1,2]\n\"just a string\"\n", "no usable rows"),
    ];
    for (name, bytes, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = dir.join("out");
        let (ok, _, err) = lorafuse(&["train", "--task", "t", "--data", p.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(!ok, "{name} should fail");
        assert!(err.to_lowercase().contains(&want.to_lowercase()), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name} panicked: {err}");
    }
    // Unknown column chosen by the user.
    let p = dir.join("ok.csv");
    std::fs::write(&p, b"text,label\ngood,pos\nbad,neg\n").unwrap();
    let (ok, _, err) = lorafuse(&["train", "--task", "t", "--data", p.to_str().unwrap(), "--out", "x", "--label-column", "sentiment"]);
    assert!(!ok && err.contains("sentiment"), "{err}");
    // A missing adapter folder.
    let (ok, _, err) = lorafuse(&["predict", "--adapter", dir.join("nope").to_str().unwrap(), "--text", "hi"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn embed_prints_a_normalised_vector() {
    let (ok, out, err) = lorafuse(&["embed", "--text", "Hello world"]);
    assert!(ok, "{err}");
    let v: Vec<f32> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v.len(), 384);
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
    let fx = common::json("minilm/encoder.json");
    let want = common::floats(&fx["sentences"][0]["sentence_embedding"]);
    assert!(common::max_abs_diff(&v, &want) < 1e-4);
}
