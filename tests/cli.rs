//! The CLI end to end: help on every command, and bad uploads each giving a specific error and a
//! non-zero exit (never a panic).

mod common;

use common::lorafuse;

#[test]
fn every_command_has_help() {
    for cmd in [
        "embed",
        "train",
        "predict",
        "eval",
        "fuse",
        "bench",
        "bench-speed",
    ] {
        let (ok, out, _) = lorafuse(&[cmd, "--help"]);
        assert!(ok && out.contains("Usage"), "{cmd} --help");
    }
}

#[test]
fn bad_uploads_fail_with_specific_errors() {
    let dir = std::env::temp_dir().join(format!("lorafuse-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "noheader.csv",
            b"great movie,positive\nawful,negative\n",
            "column",
        ),
        ("empty.csv", b"", "empty"),
        (
            "oneclass.csv",
            b"text,label\ngood,pos\nfine,pos\n",
            "at least two classes",
        ),
        (
            "badutf8.csv",
            b"text,label\ngood,pos\n\xff\xfe,neg\n",
            "UTF-8",
        ),
        (
            "blank_text.csv",
            b"text,label\n,pos\n\"\",neg\n",
            "no usable rows",
        ),
        (
            "notobject.jsonl",
            b"[1,2]\n\"just a string\"\n",
            "no usable rows",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = dir.join("out");
        let (ok, _, err) = lorafuse(&[
            "train",
            "--task",
            "t",
            "--data",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!ok, "{name} should fail");
        assert!(
            err.to_lowercase().contains(&want.to_lowercase()),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{name} panicked: {err}");
    }
    // Unknown column chosen by the user.
    let p = dir.join("ok.csv");
    std::fs::write(&p, b"text,label\ngood,pos\nbad,neg\n").unwrap();
    let (ok, _, err) = lorafuse(&[
        "train",
        "--task",
        "t",
        "--data",
        p.to_str().unwrap(),
        "--out",
        "x",
        "--label-column",
        "sentiment",
    ]);
    assert!(!ok && err.contains("sentiment"), "{err}");
    // A missing adapter folder.
    let (ok, _, err) = lorafuse(&[
        "predict",
        "--adapter",
        dir.join("nope").to_str().unwrap(),
        "--text",
        "hi",
    ]);
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

/// `lorafuse embed … | head -c 0`: the reader has gone before the vector is written. The CLI must
/// end quietly (exit 0, no panic), as Unix tools do.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lorafuse"))
        .args(["embed", "--text", "Hello world"])
        .env("LORAFUSE_MODEL_DIR", common::model_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    // Close the read end at once: the model takes far longer to load than this.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("waits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

/// train → predict → eval → fuse → predict --fused, on tiny data (a smoke test of the CLI paths;
/// the numbers are not the point).
#[test]
fn train_fuse_and_predict_all_tasks() {
    let dir = std::env::temp_dir().join(format!("lorafuse-cli-fuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Task b: other rows, other label names.
    let (a, b) = common::two_task_csvs(&dir);
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    for (task, data) in [("a", &a), ("b", &b)] {
        let (ok, out, err) = lorafuse(&[
            "train",
            "--task",
            task,
            "--data",
            &p(data),
            "--epochs",
            "1",
            "--train-all-below",
            "0",
            "--out",
            &p(&dir.join(task)),
        ]);
        assert!(ok, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(report["lora"]["accuracy"].is_number());
    }
    let (ok, out, err) = lorafuse(&[
        "predict",
        "--adapter",
        &p(&dir.join("b")),
        "--text",
        "a wonderful film",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(["up", "down"].contains(&v["label"].as_str().unwrap()));
    let (ok, out, err) = lorafuse(&["eval", "--adapter", &p(&dir.join("a")), "--data", &p(&a)]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["metrics"]["n"], 40);

    // `lorafuse fuse` over both adapters, 2 epochs, with `extra` flags, into `out`.
    let fuse = |extra: &[&str], out: &std::path::Path| {
        let adapters = format!("{},{}", p(&dir.join("a")), p(&dir.join("b")));
        let data = format!("a={},b={}", p(&a), p(&b));
        let out = p(out);
        let mut args = vec!["fuse", "--adapters", &adapters, "--data", &data];
        args.extend_from_slice(&["--epochs", "2", "--out", &out]);
        // The split the adapters trained with (held-out rows for the gate).
        args.extend_from_slice(&["--train-all-below", "0"]);
        args.extend_from_slice(extra);
        lorafuse(&args)
    };
    let fused = dir.join("fused");
    let (ok, _, err) = fuse(&[], &fused);
    assert!(ok, "{err}");
    let (ok, out, err) = lorafuse(&[
        "predict",
        "--fused",
        &p(&fused),
        "--text",
        "a wonderful film",
        "--text",
        "dull and slow",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("encoder passes per text: 3.0"), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let tasks = l["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 2);
        for t in tasks {
            let att: Vec<f64> = t["attention"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert!((att.iter().sum::<f64>() - 1.0).abs() < 1e-4);
            assert!(t["single"]["label"].is_string() && t["hybrid"]["label"].is_string());
        }
    }
    // The shared option: one fusion for both tasks; the manifest says so, and both tasks'
    // hybrids read the same attention for the same text.
    let shared = dir.join("fused-shared");
    let (ok, _, err) = fuse(&["--shared"], &shared);
    assert!(ok, "{err}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared.join("fusion_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["shared"], true);
    let (ok, out, err) = lorafuse(&[
        "predict",
        "--fused",
        &p(&shared),
        "--text",
        "a wonderful film",
    ]);
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let tasks = line["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["hybrid"]["label"].is_string()));
    assert_eq!(tasks[0]["attention"], tasks[1]["attention"]);
    // A fused folder whose adapter was swapped is refused.
    std::fs::copy(
        dir.join("a/adapter_model.safetensors"),
        fused.join("adapters/b/adapter_model.safetensors"),
    )
    .unwrap();
    let (ok, _, err) = lorafuse(&["predict", "--fused", &p(&fused), "--text", "x"]);
    assert!(
        !ok && (err.contains("does not match") || err.contains("adapter")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `bench` end to end on two tiny tasks, one seed, a few steps: the JSON has the documented
/// schema, and the printed table equals the JSON (mean over one seed, in %).
#[test]
fn bench_smoke_json_schema_and_table_agree() {
    let dir = std::env::temp_dir().join(format!("lorafuse-cli-bench-{}", std::process::id()));
    for (task, file) in [
        ("sent", "e2e_sentiment.csv"),
        ("subj", "e2e_subjectivity.csv"),
    ] {
        let text =
            String::from_utf8(common::read(&common::fixture(&format!("data/{file}")))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let t = dir.join(task);
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(
            t.join("train.csv"),
            format!("{}\n{}\n", lines[0], lines[1..31].join("\n")),
        )
        .unwrap();
        std::fs::write(
            t.join("test.csv"),
            format!("{}\n{}\n", lines[0], lines[31..].join("\n")),
        )
        .unwrap();
    }
    let json = dir.join("bench.json");
    let (ok, out, err) = lorafuse(&[
        "bench",
        "--tasks",
        "sent,subj",
        "--data-dir",
        dir.to_str().unwrap(),
        "--train-per-task",
        "20",
        "--test-per-task",
        "10",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--fusion-epochs",
        "2",
        "--train-all-below",
        "0",
        "--out",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&common::read(&json)).unwrap();
    for key in [
        "args",
        "lora",
        "train",
        "overlap_removed",
        "results",
        "times",
        "encoder_passes_per_text",
        "wall_seconds",
    ] {
        assert!(v.get(key).is_some(), "JSON lacks {key}");
    }
    assert_eq!(
        v["encoder_passes_per_text"].as_f64(),
        Some(3.0),
        "K + 1 passes"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one result per task and seed");
    for r in results {
        assert_eq!(
            (
                r["train_rows"].as_u64(),
                r["dev_rows"].as_u64(),
                r["test_rows"].as_u64()
            ),
            (Some(18), Some(2), Some(10))
        );
        for m in ["frozen", "lora", "hybrid"] {
            for split in ["dev", "test"] {
                let acc = r[m][split]["accuracy"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&acc), "{m} {split}");
            }
            assert!(
                r[m]["temperature"].as_f64().unwrap() > 0.0,
                "{m}: dev-fitted temperature"
            );
            for c in ["test_calibration", "test_calibration_scaled"] {
                let ece = r[m][c]["ece"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&ece), "{m} {c}");
                assert!(r[m][c]["brier"].as_f64().unwrap() >= 0.0, "{m} {c}");
            }
            let (lo, hi) = (
                r[m]["test_accuracy_interval"][0].as_f64().unwrap(),
                r[m]["test_accuracy_interval"][1].as_f64().unwrap(),
            );
            assert!(
                lo <= r[m]["test"]["accuracy"].as_f64().unwrap()
                    && hi >= r[m]["test"]["accuracy"].as_f64().unwrap()
            );
        }
        // The printed row for this task: "| task | accuracy | frozen | lora | hybrid | …".
        let task = r["task"].as_str().unwrap();
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("| {task} |")))
            .unwrap_or_else(|| panic!("no table row for {task} in:\n{out}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (i, m) in ["frozen", "lora", "hybrid"].iter().enumerate() {
            let want = format!(
                "{:.2} ± 0.00",
                100.0 * r[*m]["test"]["accuracy"].as_f64().unwrap()
            );
            assert_eq!(cells[3 + i], want, "{task} {m}: table {row:?} vs JSON");
        }
    }
    for r in results {
        let p = &r["hybrid_vs_lora"];
        assert!(p["p_value"].as_f64().unwrap() <= 1.0 && p["n"].as_u64() == Some(10));
    }
    assert!(
        out.contains("Hybrid − LoRA on test, paired over 2 task × seed runs"),
        "{out}"
    );
    let times = v["times"].as_array().unwrap();
    assert_eq!(times.len(), 1);
    assert!(times[0]["fusion_seconds"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).ok();
}
